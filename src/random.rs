//! Randomness from the operating system's secure generator (ring): ids, keys, tokens, jitter.
//! A leaf every other module may use.

use std::cell::RefCell;

use ring::rand::SecureRandom;

/// Fills `out` with bytes from the operating system's secure generator.
pub fn fill(out: &mut [u8]) {
    // The system generator only fails if the OS has no entropy source, which we cannot run without.
    ring::rand::SystemRandom::new().fill(out).expect("the operating system's random generator works"); // invariant: no entropy, no gateway
}

/// `N` random bytes.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    fill(&mut out);
    out
}

/// How many bytes of the operating system's generator a thread takes at a time for
/// [`not_secret`].
const POOL: usize = 512;

/// Bytes from the operating system's generator not yet handed out, per thread.
struct Pool {
    bytes: [u8; POOL],
    next: usize,
}

thread_local! {
    static NOT_SECRET: RefCell<Pool> = const { RefCell::new(Pool { bytes: [0; POOL], next: POOL }) };
}

/// `N` random bytes for what is random but not secret (trace and span ids, jitter), taken from a
/// per-thread pool the operating system's generator fills `POOL` bytes at a time, so that a
/// request does not make a system call per id. No byte is handed out twice. Keys, tokens and
/// nonces use [`bytes()`]: a secret never sits in a pool.
pub fn not_secret<const N: usize>() -> [u8; N] {
    const { assert!(N <= POOL) };
    NOT_SECRET.with_borrow_mut(|pool| {
        if pool.next + N > POOL {
            fill(&mut pool.bytes);
            pool.next = 0;
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&pool.bytes[pool.next..pool.next + N]);
        // Handed out once: what is left in the pool is only what no one has yet.
        pool.bytes[pool.next..pool.next + N].fill(0);
        pool.next += N;
        out
    })
}

/// A UUID v7 for an id that only correlates (a request's): its time to the millisecond, then
/// random bits from the [`not_secret`] pool. Unlike `uuid::Uuid::now_v7`, which takes a shared
/// lock and a system call for each, two ids of one millisecond are in no particular order, so
/// ids that something sorts by (a record's) keep `now_v7`.
pub fn correlation_uuid() -> uuid::Uuid {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    uuid::Builder::from_unix_timestamp_millis(millis, &not_secret::<10>()).into_uuid()
}

/// A uniform number in [0, 1), for jitter.
pub fn unit() -> f64 {
    (u64::from_le_bytes(not_secret::<8>()) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_secret_bytes_are_never_handed_out_twice_across_refills() {
        // 3 pools' worth of 24-byte ids (a refill every 21): all distinct, none all zero.
        let ids: Vec<[u8; 24]> = (0..3 * POOL / 24).map(|_| not_secret::<24>()).collect();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        assert!(ids.iter().all(|id| id != &[0; 24]));
        // Mixed sizes straddling a refill still give fresh bytes.
        let (a, b) = (not_secret::<500>(), not_secret::<500>());
        assert_ne!(a, b);
        assert_ne!(a, [0; 500]);
    }

    #[test]
    fn a_correlation_uuid_is_a_v7_of_now() {
        let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        let (a, b) = (correlation_uuid(), correlation_uuid());
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 7);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        let (secs, nanos) = a.get_timestamp().unwrap().to_unix();
        let millis = secs * 1000 + u64::from(nanos) / 1_000_000;
        assert!((before..before + 5_000).contains(&millis), "{millis} vs {before}");
    }

    /// A new thread's pool is filled before its first id, not handed out from a start that
    /// every thread shares (such as the zeroed bytes the pool begins as).
    #[test]
    fn two_threads_do_not_start_from_the_same_bytes() {
        let here = not_secret::<16>();
        let there = std::thread::spawn(not_secret::<16>).join().unwrap();
        assert_ne!(here, there);
    }
}
