//! Randomness from the operating system's secure generator (ring): ids, keys, tokens, jitter.
//! A leaf every other module may use.

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

/// A uniform number in [0, 1), for jitter.
pub fn unit() -> f64 {
    (u64::from_le_bytes(bytes::<8>()) >> 11) as f64 / (1u64 << 53) as f64
}
