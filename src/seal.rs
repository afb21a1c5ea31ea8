//! Envelope encryption of stored bodies: the primitive the store's key ring
//! (`store::keys`) seals and opens every stored body with.
//!
//! A body is sealed with AES-256-GCM (ring) under a [`DataKey`]. The plan is one data key per
//! agreement and period, so that destroying a key destroys exactly the bodies past their
//! retention (crypto-shredding). Each data key is kept only wrapped (encrypted) under the
//! deployment's [`KeyEncryptionKey`], so rotating that key re-wraps the data keys and never
//! re-encrypts a body.
//!
//! What a ciphertext belongs to is bound as associated data: the data key's id, the record id
//! and the delivery (or none, for the record's own body). A delivery is named by its identity,
//! the recipient of that record (the pair its idempotency key carries), not by its row id: the
//! database assigns the row id at insert, and bodies are sealed before, outside the store's
//! single writer. A ciphertext copied into another row, or opened under another key, does not
//! open. A wrapped key is bound to its own id and
//! to the id of the key that wrapped it in the same way.
//!
//! Nonces are 96 random bits from the operating system per seal. With random nonces NIST SP
//! 800-38D allows 2^32 seals per key. A key per agreement per day stays below that up to
//! about 49,000 records a second for that agreement.
//!
//! Layout of a sealed body: `1` (format version), 12 bytes of nonce, the ciphertext, the
//! 16-byte tag.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Bytes of an AES-256 key.
pub const KEY_LEN: usize = 32;
/// The format version byte every sealed body and wrapped key starts with.
const VERSION: u8 = 1;

/// Why sealing or opening failed. Never says more than that: a wrong key, a moved row and
/// tampering look the same to anyone probing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("a key must be {KEY_LEN} bytes, or {} hexadecimal digits", KEY_LEN * 2)]
    KeyLength,
    #[error("the operating system's random generator failed")]
    Random,
    #[error("the ciphertext does not open under this key for this row")]
    Open,
}

/// What a sealed body belongs to, bound as associated data.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub record_id: &'a str,
    /// The recipient whose projected body this is; `None` for the record as posted.
    pub recipient: Option<&'a str>,
}

impl Binding<'_> {
    fn aad(&self, key_id: &str) -> Vec<u8> {
        // A recipient id is never empty, so the record's own body cannot pass for a delivery's.
        let delivery = self.recipient.unwrap_or("");
        format!("passerelle:body:v1\0{key_id}\0{}\0{delivery}", self.record_id).into_bytes()
    }
}

/// A key that encrypts under a name, as both kinds of key do.
struct NamedKey {
    id: String,
    key: LessSafeKey,
}

impl NamedKey {
    fn new(id: String, bytes: &[u8; KEY_LEN]) -> Self {
        // 32 bytes is always a valid AES-256 key.
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte AES-256 key"); // invariant: KEY_LEN
        NamedKey { id, key: LessSafeKey::new(unbound) }
    }

    fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| SealError::Random)?;
        // Sealed where it lies: the plaintext is copied once, into its place after the header.
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out[1 + NONCE_LEN..])
            .map_err(|_| SealError::Open)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let (&version, rest) = sealed.split_first().ok_or(SealError::Open)?;
        if version != VERSION || rest.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SealError::Open);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut body = ciphertext.to_vec();
        let plain_len = self.key.open_in_place(nonce, Aad::from(aad), &mut body).map_err(|_| SealError::Open)?.len();
        body.truncate(plain_len);
        Ok(body)
    }
}

/// A data key: seals the bodies of one agreement and period.
pub struct DataKey {
    named: NamedKey,
    bytes: [u8; KEY_LEN],
}

impl DataKey {
    /// A new random data key named `id`.
    pub fn generate(id: impl Into<String>) -> Result<DataKey, SealError> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new().fill(&mut bytes).map_err(|_| SealError::Random)?;
        Ok(DataKey { named: NamedKey::new(id.into(), &bytes), bytes })
    }

    pub fn id(&self) -> &str {
        &self.named.id
    }

    /// `body`, sealed for the row `binding` names.
    pub fn seal(&self, body: &[u8], binding: &Binding<'_>) -> Result<Vec<u8>, SealError> {
        self.named.seal(body, &binding.aad(&self.named.id))
    }

    /// The body sealed for the row `binding` names, if it was sealed under this key for it.
    pub fn open(&self, sealed: &[u8], binding: &Binding<'_>) -> Result<Vec<u8>, SealError> {
        self.named.open(sealed, &binding.aad(&self.named.id))
    }
}

/// The deployment's key-encryption key: wraps data keys, never touches a body.
pub struct KeyEncryptionKey {
    named: NamedKey,
}

impl KeyEncryptionKey {
    /// Reads a key as a file or an environment variable holds it: 32 raw bytes, or 64
    /// hexadecimal digits (surrounding whitespace ignored). Its id is derived from the key, so
    /// the id a wrapped key names tells which key unwraps it without revealing the key.
    pub fn from_bytes(bytes: &[u8]) -> Result<KeyEncryptionKey, SealError> {
        let key: [u8; KEY_LEN] = match bytes.try_into() {
            Ok(raw) => raw,
            Err(_) => {
                let text = std::str::from_utf8(bytes).map_err(|_| SealError::KeyLength)?.trim();
                crate::digest::decode_hex(text).and_then(|v| v.try_into().ok()).ok_or(SealError::KeyLength)?
            }
        };
        let digest = crate::digest::sha256(&[b"passerelle:kek-id:v1\0".as_slice(), &key].concat());
        let id = format!("kek-{}", &crate::digest::to_hex(&digest)[..16]);
        Ok(KeyEncryptionKey { named: NamedKey::new(id, &key) })
    }

    pub fn id(&self) -> &str {
        &self.named.id
    }

    fn aad(&self, data_key_id: &str) -> Vec<u8> {
        format!("passerelle:data-key:v1\0{}\0{data_key_id}", self.named.id).into_bytes()
    }

    /// `key`, wrapped: what the store keeps instead of the key.
    pub fn wrap(&self, key: &DataKey) -> Result<Vec<u8>, SealError> {
        self.named.seal(&key.bytes, &self.aad(key.id()))
    }

    /// The data key named `id` that `wrapped` holds, if this key wrapped it under that name.
    pub fn unwrap(&self, id: &str, wrapped: &[u8]) -> Result<DataKey, SealError> {
        let bytes: [u8; KEY_LEN] = self.named.open(wrapped, &self.aad(id))?.try_into().map_err(|_| SealError::Open)?;
        Ok(DataKey { named: NamedKey::new(id.to_owned(), &bytes), bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = "019ad0a5-5c00-7c3a-9d2e-6b1f0a4c8e21";

    fn body(recipient: Option<&'static str>) -> Binding<'static> {
        Binding { record_id: RECORD, recipient }
    }

    #[test]
    fn a_sealed_body_opens_only_under_its_key_for_its_row() {
        let key = DataKey::generate("birth-ottawa/2026-12-03").unwrap();
        let plain = br#"{"child":{"date_of_birth":"2026-11-28"}}"#;
        let sealed = key.seal(plain, &body(Some("ottawa-city"))).unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"2026-11-28"), "no plaintext in the ciphertext");
        assert_eq!(key.open(&sealed, &body(Some("ottawa-city"))).unwrap(), plain);
        // Moved to another delivery, to the record's own body, or to another record: refused.
        assert_eq!(key.open(&sealed, &body(Some("on-health"))), Err(SealError::Open));
        assert_eq!(key.open(&sealed, &body(None)), Err(SealError::Open));
        let other = Binding { record_id: "019ad0a5-5c00-7c3a-9d2e-6b1f0a4c8e22", recipient: Some("ottawa-city") };
        assert_eq!(key.open(&sealed, &other), Err(SealError::Open));
        // Another key, even under the same name: refused.
        let stranger = DataKey::generate("birth-ottawa/2026-12-03").unwrap();
        assert_eq!(stranger.open(&sealed, &body(Some("ottawa-city"))), Err(SealError::Open));
        // Any byte changed: refused.
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 1;
            assert_eq!(key.open(&tampered, &body(Some("ottawa-city"))), Err(SealError::Open), "byte {i}");
        }
        assert_eq!(key.open(&sealed[..sealed.len() - 1], &body(Some("ottawa-city"))), Err(SealError::Open));
        assert_eq!(key.open(&[], &body(Some("ottawa-city"))), Err(SealError::Open));
    }

    /// The layout the module header gives, as bodies sealed before were written
    /// (`seal_in_place_append_tag`): version, nonce, ciphertext, tag. Opened here by ring alone.
    #[test]
    fn a_sealed_body_is_version_nonce_ciphertext_and_tag() {
        let key = DataKey::generate("birth-ottawa/2026-12-03").unwrap();
        let plain = br#"{"child":{"date_of_birth":"2026-11-28"}}"#;
        let binding = body(Some("ottawa-city"));
        let sealed = key.seal(plain, &binding).unwrap();
        assert_eq!(sealed.len(), 1 + NONCE_LEN + plain.len() + AES_256_GCM.tag_len());
        assert_eq!(sealed[0], VERSION);
        let ring_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key.bytes).unwrap());
        let nonce = Nonce::try_assume_unique_for_key(&sealed[1..1 + NONCE_LEN]).unwrap();
        let mut rest = sealed[1 + NONCE_LEN..].to_vec();
        let aad = binding.aad(key.id());
        assert_eq!(ring_key.open_in_place(nonce, Aad::from(&aad), &mut rest).unwrap(), plain);
    }

    #[test]
    fn each_seal_takes_a_fresh_nonce() {
        let key = DataKey::generate("a/2026-12-03").unwrap();
        let (a, b) = (key.seal(b"same", &body(None)).unwrap(), key.seal(b"same", &body(None)).unwrap());
        assert_ne!(a[1..1 + NONCE_LEN], b[1..1 + NONCE_LEN]);
        assert_ne!(a, b);
    }

    #[test]
    fn a_data_key_unwraps_only_under_its_wrapping_key_and_its_name() {
        let kek = KeyEncryptionKey::from_bytes(&[7u8; KEY_LEN]).unwrap();
        let key = DataKey::generate("birth-ottawa/2026-12-03").unwrap();
        let sealed = key.seal(b"body", &body(Some("ottawa-city"))).unwrap();
        let wrapped = kek.wrap(&key).unwrap();
        assert!(!wrapped.windows(KEY_LEN).any(|w| w == key.bytes), "the key is not in its wrapping");
        let back = kek.unwrap("birth-ottawa/2026-12-03", &wrapped).unwrap();
        assert_eq!(
            back.open(&sealed, &body(Some("ottawa-city"))).unwrap(),
            b"body",
            "the unwrapped key opens the body"
        );
        assert!(kek.unwrap("birth-ottawa/2026-12-04", &wrapped).is_err(), "under another name");
        let other = KeyEncryptionKey::from_bytes(&[8u8; KEY_LEN]).unwrap();
        assert!(other.unwrap("birth-ottawa/2026-12-03", &wrapped).is_err(), "under another wrapping key");
        // Rotation: the same data key wrapped under a new key opens the same bodies.
        let rewrapped = other.wrap(&back).unwrap();
        let again = other.unwrap("birth-ottawa/2026-12-03", &rewrapped).unwrap();
        assert_eq!(again.open(&sealed, &body(Some("ottawa-city"))).unwrap(), b"body");
    }

    #[test]
    fn a_wrapping_key_reads_as_raw_bytes_or_hex_and_its_id_does_not_reveal_it() {
        let raw = KeyEncryptionKey::from_bytes(&[0xab; KEY_LEN]).unwrap();
        let hex = KeyEncryptionKey::from_bytes(format!("  {}\n", "ab".repeat(KEY_LEN)).as_bytes()).unwrap();
        assert_eq!(raw.id(), hex.id(), "the same key read either way");
        assert!(raw.id().starts_with("kek-") && !raw.id().contains("abab"));
        assert_ne!(raw.id(), KeyEncryptionKey::from_bytes(&[0xac; KEY_LEN]).unwrap().id());
        for bad in [&b"short"[..], &[0u8; 31], &[0u8; 33], "zz".repeat(KEY_LEN).as_bytes()] {
            assert_eq!(KeyEncryptionKey::from_bytes(bad).err(), Some(SealError::KeyLength));
        }
    }
}
