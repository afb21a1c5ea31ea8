//! Rejected records, tallied per sender, reason and minute, then audited as one entry each.
//!
//! A flood of bad requests must not become a flood of durable writes, yet the trail must show
//! that it happened. The tally is keyed by labels that come only from configuration (the sender
//! or `unknown`) and a fixed set of reasons, and holds at most the current and previous minutes,
//! so it is bounded whatever partners send.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{AuditEvent, kind};
use crate::telemetry::RecordOutcome;

const MINUTE_MS: i64 = 60_000;

/// Counts of rejections not yet written to the trail.
#[derive(Default)]
pub struct RejectionTally {
    counts: Mutex<BTreeMap<(i64, String, RecordOutcome), i64>>,
}

impl RejectionTally {
    /// Counts one rejection of `sender`'s record for `reason` (a record outcome) at `now` (ms).
    pub fn count(&self, sender: &str, reason: RecordOutcome, now: i64) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry((now - now.rem_euclid(MINUTE_MS), sender.to_owned(), reason)).or_default() += 1;
        }
    }

    /// Removes and returns the tallies of minutes that ended before `now`, or all of them.
    pub fn take(&self, now: Option<i64>) -> Vec<AuditEvent> {
        let Ok(mut counts) = self.counts.lock() else { return Vec::new() };
        let current = now.map(|n| n - n.rem_euclid(MINUTE_MS));
        let done: Vec<_> =
            counts.keys().filter(|(minute, _, _)| current.is_none_or(|c| *minute < c)).cloned().collect();
        done.into_iter()
            .filter_map(|key| {
                let n = counts.remove(&key)?;
                let (minute, sender, reason) = key;
                let mut e = AuditEvent::new(minute, kind::RECORDS_REJECTED, &sender, reason.as_str());
                e.count = n;
                e.reason = Some(format!("minute starting {}", crate::clock::rfc3339_ms(minute)));
                Some(e)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_tallied_per_sender_reason_and_minute() {
        let t = RejectionTally::default();
        let m = 1_800_000_000_000 - 1_800_000_000_000 % MINUTE_MS;
        for _ in 0..3 {
            t.count("p", RecordOutcome::Invalid, m + 10);
        }
        t.count("p", RecordOutcome::Malformed, m + 20);
        t.count("unknown", RecordOutcome::Unauthenticated, m + MINUTE_MS + 5);
        let done = t.take(Some(m + MINUTE_MS + 10));
        assert_eq!(done.len(), 2, "only the finished minute");
        assert!(done.iter().any(|e| e.actor == "p" && e.outcome == "invalid" && e.count == 3));
        let rest = t.take(None);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].at, m + MINUTE_MS);
        assert!(t.take(None).is_empty());
    }
}
