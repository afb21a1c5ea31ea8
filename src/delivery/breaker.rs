//! A circuit breaker per recipient: a recipient that keeps failing is paused and probed, not
//! hammered.
//!
//! Closed: everything goes; `threshold` consecutive failures open it. Open: nothing goes until
//! `open_for` has passed. Half-open: exactly one probe goes; its success closes the breaker, its
//! failure opens it again. Delivery workers and request/response calls share one breaker per
//! recipient, so either side's failures protect the other.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::telemetry::Metrics;
use crate::telemetry::events::BreakerChanged;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// What the breaker allows right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead, as many as the concurrency cap allows.
    Go,
    /// Send exactly one probe; report its outcome with [`Breaker::record`].
    Probe,
    /// Wait this long before asking again.
    Wait(Duration),
}

/// One recipient's breaker.
pub struct Breaker {
    recipient: String,
    threshold: u32,
    open_for: Duration,
    phase: Mutex<Phase>,
    metrics: Metrics,
}

impl Breaker {
    /// Whether this breaker already runs with these settings (a reload keeps it, and its state,
    /// only then).
    pub fn has_settings(&self, threshold: u32, open_for: Duration) -> bool {
        self.threshold == threshold && self.open_for == open_for
    }

    pub fn new(recipient: &str, threshold: u32, open_for: Duration, metrics: Metrics) -> Self {
        metrics.breaker_state.with_label_values(&[recipient]).set(0);
        Breaker {
            recipient: recipient.to_owned(),
            threshold: threshold.max(1),
            open_for,
            phase: Mutex::new(Phase::Closed { failures: 0 }),
            metrics,
        }
    }

    /// Whether everything goes (closed), without moving an open breaker on.
    pub fn is_closed(&self) -> bool {
        self.phase.lock().is_ok_and(|phase| matches!(*phase, Phase::Closed { .. }))
    }

    /// Whether an attempt may go now.
    pub fn admit(&self) -> Admission {
        let Ok(mut phase) = self.phase.lock() else { return Admission::Go };
        match *phase {
            Phase::Closed { .. } => Admission::Go,
            Phase::Open { until } => {
                let now = Instant::now();
                if now < until {
                    return Admission::Wait(until - now);
                }
                *phase = Phase::HalfOpen { probing: true };
                self.changed(1, 0);
                Admission::Probe
            }
            Phase::HalfOpen { probing: false } => {
                *phase = Phase::HalfOpen { probing: true };
                Admission::Probe
            }
            // A probe is out: the others wait for its outcome.
            Phase::HalfOpen { probing: true } => Admission::Wait(Duration::from_millis(100).min(self.open_for)),
        }
    }

    /// Reports an attempt's outcome: `true` when the recipient answered in a way that shows it is
    /// up (any status but 408, 425, 429 and 5xx).
    pub fn record(&self, healthy: bool) {
        let Ok(mut phase) = self.phase.lock() else { return };
        match (*phase, healthy) {
            (Phase::Closed { failures }, true) => {
                if failures > 0 {
                    *phase = Phase::Closed { failures: 0 };
                }
            }
            (Phase::HalfOpen { .. }, true) | (Phase::Open { .. }, true) => {
                *phase = Phase::Closed { failures: 0 };
                self.changed(0, 0);
            }
            (Phase::Closed { failures }, false) => {
                let failures = failures + 1;
                if failures >= self.threshold {
                    *phase = Phase::Open { until: Instant::now() + self.open_for };
                    self.changed(2, failures);
                } else {
                    *phase = Phase::Closed { failures };
                }
            }
            (Phase::HalfOpen { .. }, false) => {
                *phase = Phase::Open { until: Instant::now() + self.open_for };
                self.changed(2, self.threshold);
            }
            // Late results of attempts sent before the breaker opened change nothing.
            (Phase::Open { .. }, false) => {}
        }
    }

    /// Whether a probe is out (or was just granted).
    pub fn is_probing(&self) -> bool {
        self.phase.lock().is_ok_and(|p| *p == Phase::HalfOpen { probing: true })
    }

    /// Gives back a probe that found nothing to send, so the next attempt can be the probe.
    pub fn cancel_probe(&self) {
        if let Ok(mut phase) = self.phase.lock()
            && *phase == (Phase::HalfOpen { probing: true })
        {
            *phase = Phase::HalfOpen { probing: false };
        }
    }

    /// Seconds until the breaker lets a probe through (for `Retry-After`).
    pub fn retry_after_secs(&self) -> u64 {
        match self.phase.lock().map(|p| *p) {
            Ok(Phase::Open { until }) => until.saturating_duration_since(Instant::now()).as_secs().max(1),
            _ => 1,
        }
    }

    fn changed(&self, state: i64, failures: u32) {
        BreakerChanged { recipient: &self.recipient, state, failures }.emit(&self.metrics);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_probes_once_then_closes() {
        let b = Breaker::new("r", 3, Duration::from_millis(50), Metrics::new());
        for _ in 0..2 {
            b.record(false);
            assert_eq!(b.admit(), Admission::Go);
        }
        b.record(false);
        assert!(matches!(b.admit(), Admission::Wait(_)), "open after three failures");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.admit(), Admission::Probe);
        assert!(matches!(b.admit(), Admission::Wait(_)), "one probe at a time");
        b.record(false);
        assert!(matches!(b.admit(), Admission::Wait(_)), "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.admit(), Admission::Probe);
        b.record(true);
        assert_eq!(b.admit(), Admission::Go, "a good probe closes it");
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breaker::new("r", 2, Duration::from_secs(60), Metrics::new());
        b.record(false);
        b.record(true);
        b.record(false);
        assert_eq!(b.admit(), Admission::Go);
    }
}
