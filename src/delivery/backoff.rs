//! When to try a failed delivery again: exponential backoff with jitter, honouring `Retry-After`.

use std::time::Duration;

use crate::store::AttemptResult;

/// The retry policy of deliveries.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub max_attempts: u32,
    pub max_age: Duration,
}

/// The longest `Retry-After` honoured, so a recipient cannot park a delivery for days.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

impl Backoff {
    /// The delay before the attempt after `attempts` failed ones, given a uniform `jitter` in
    /// [0, 1) and the recipient's `Retry-After`, or `None` when the delivery should be dead
    /// (too many attempts, or the next attempt would come after `max_age`).
    pub fn next_delay(
        &self,
        attempts: u32,
        age: Duration,
        jitter: f64,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let exponent = attempts.saturating_sub(1).min(30);
        let base = self.initial.saturating_mul(1u32 << exponent).min(self.max);
        // Half fixed, half random: retries from many deliveries spread out instead of
        // hitting a recovering recipient together.
        let mut delay = base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        if let Some(after) = retry_after {
            delay = delay.max(after.min(RETRY_AFTER_CAP));
        }
        (age + delay <= self.max_age).then_some(delay)
    }
}

impl Backoff {
    /// What a failed attempt (the `attempt`th, of a delivery `age` old, at `now` unix ms)
    /// records: a retry after the backoff, or `dead` once the policy gives up. Push workers and
    /// pull recipients' `nack` decide the same way.
    pub fn after_failure(&self, failure: Failure, attempt: u32, age: Duration, jitter: f64, now: i64) -> AttemptResult {
        let Failure { status, error, retry_after } = failure;
        match self.next_delay(attempt, age, jitter, retry_after) {
            Some(delay) => AttemptResult::Retry { next_attempt_at: now + delay.as_millis() as i64, status, error },
            None => AttemptResult::Dead { status, error: format!("{error}; gave up after {attempt} attempts") },
        }
    }
}

/// Why an attempt failed, as the retry policy sees it.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The recipient's HTTP status, if it answered.
    pub status: Option<u16>,
    /// A short description (a status, a transport error, a recipient's reason), never a body.
    pub error: String,
    /// The recipient's `Retry-After`, if any.
    pub retry_after: Option<Duration>,
}

/// Parses `Retry-After` as delay-seconds (the HTTP-date form is accepted as "soon").
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let t = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let secs = (t - time::OffsetDateTime::now_utc()).whole_seconds().max(0) as u64;
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Backoff {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            max_attempts: 8,
            max_age: Duration::from_secs(3600),
        }
    }

    #[test]
    fn delays_grow_within_bounds_for_any_jitter() {
        let p = policy();
        for attempts in 1..8 {
            for jitter in [0.0, 0.25, 0.5, 0.999] {
                let d = p.next_delay(attempts, Duration::ZERO, jitter, None).unwrap();
                let base = Duration::from_secs(1u64 << (attempts - 1)).min(p.max);
                assert!(d >= base / 2 && d <= base, "attempt {attempts} jitter {jitter}: {d:?}");
            }
        }
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let p = policy();
        assert_eq!(p.next_delay(1, Duration::ZERO, 0.0, Some(Duration::from_secs(30))), Some(Duration::from_secs(30)));
        assert_eq!(p.next_delay(1, Duration::ZERO, 0.0, Some(Duration::from_secs(99_999))), Some(RETRY_AFTER_CAP));
    }

    #[test]
    fn gives_up_after_max_attempts_or_age() {
        let p = policy();
        assert_eq!(p.next_delay(8, Duration::ZERO, 0.5, None), None);
        assert_eq!(p.next_delay(2, Duration::from_secs(3599), 0.5, None), None);
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
    }
}
