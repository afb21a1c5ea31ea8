//! Digests and their hex form: a leaf every other module may use.
//!
//! Hex is the `hex` crate's: two lowercase digits a byte out, two digits a byte in and nothing
//! else (no sign, no whitespace, no odd length).

use ring::digest;

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// The bytes of `s`, exactly two hex digits each, or `None`: no sign (`+f` is not `0f`), no
/// whitespace, no odd length.
pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s).ok()
}
