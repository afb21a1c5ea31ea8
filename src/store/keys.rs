//! Sealed bodies: the store's key ring, which seals every body before it is written and opens
//! it when a delivery is handed out, so no record value reaches the disk in plaintext.
//!
//! Envelope encryption ([`crate::seal`]): each body is sealed under a data key, one per
//! agreement and UTC day (`<agreement>/<YYYY-MM-DD>`, the agreement of the record's first
//! delivery for the record as posted), bound to its row (key id, record id, recipient). Data
//! keys are kept only wrapped under the deployment's key-encryption key (KEK) in the
//! `data_keys` table; the KEK itself never enters the store.
//!
//! - **Sealing** happens in the caller's task, before the write is queued, so the single writer
//!   does no AES work. A day's key is created once, through the writer (`INSERT … ON CONFLICT DO
//!   NOTHING`, then read back), so two instances sharing a PostgreSQL store agree on one key.
//! - **Opening** happens after a claim, in the claiming task. Unwrapped data keys are cached;
//!   the cache forgets a key once its day is over (see [`KeyRing::forget_ended`]), so a key the
//!   purge destroys does not live on in memory.
//! - **Crypto-shredding.** The purge destroys (sets to NULL) a data key whose day ended more than
//!   [`SHRED_GRACE_MS`] ago and under which no body is left. A ciphertext that survives in a free
//!   page, a WAL frame or a dead PostgreSQL row version can then no longer be opened with any key
//!   the store holds. A copy of the wrapped key itself (in a backup taken earlier, or a dead row
//!   version) stays openable with the KEK that wrapped it: rotating the KEK and destroying the
//!   old one ([`rewrap`]) shreds those copies too.
//! - **Rotation** ([`rewrap`]) re-wraps data keys under the current KEK; bodies are never
//!   re-encrypted. The previous KEKs stay configured until no data key is wrapped under them.
//! - **Existing plaintext** ([`seal_plaintext`]) is sealed in place, in bounded batches, each
//!   committed and audited; a row already sealed is never touched again, so the work resumes
//!   where it stopped.
//!
//! A key-management service fits behind [`Kek`]: a KEK is anything that wraps and unwraps a
//! data key under an id; today it is a 32-byte key from a file or the environment.
//!
//! **Invariant:** no body is written to the store unsealed while encryption is on, and every
//! body handed out has been opened under the key its row names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::{ClaimedDelivery, NewRecord, StoreError, StoreErrorKind, StoreFuture};
use crate::seal::{Binding, DataKey, KeyEncryptionKey, SealError};

/// How long after its day ends a data key is kept at least: a record sealed just before
/// midnight may still be waiting in the commit queue when the day ends.
pub const SHRED_GRACE_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// The key-encryption key's file in the data directory when `key_file` is not set.
pub const KEY_FILE: &str = "store.key";
/// Most keys re-wrapped, or bodies sealed, per transaction by the commands that do it in place.
pub const BATCH: usize = 256;

/// Where the key-encryption key comes from (`[store.encryption]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekSource {
    /// A file holding 64 hexadecimal digits (or 32 raw bytes), generated owner-only when absent.
    File(PathBuf),
    /// An environment variable holding 64 hexadecimal digits.
    Env(String),
}

/// `[store.encryption]` resolved: the current KEK and the previous ones still readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionSettings {
    pub key: KekSource,
    /// KEKs that wrapped data keys not yet re-wrapped by `passerelle store rotate-key`.
    pub previous_key_files: Vec<PathBuf>,
}

/// Why a key-encryption key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error("cannot read the store's encryption key {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the store's encryption key {from} is not 64 hexadecimal digits (or 32 bytes)")]
    Format { from: String },
    #[error("the environment variable {0} holding the store's encryption key is not set")]
    Unset(String),
}

/// A key-encryption key: the seam a key-management service would fill.
pub type Kek = KeyEncryptionKey;

impl EncryptionSettings {
    /// Reads the KEKs. With `create`, a missing key file is generated (owner-only), as at the
    /// first start; without, as `check` reads them, a missing file is an error only if it would
    /// not be generated (a previous key must exist).
    pub fn load(&self, create: bool) -> Result<Arc<Keks>, KekError> {
        let current = match &self.key {
            KekSource::File(path) if create => read_or_create(path)?,
            KekSource::File(path) => read_key_file(path)?,
            KekSource::Env(var) => {
                let value = std::env::var(var).map_err(|_| KekError::Unset(var.clone()))?;
                Kek::from_bytes(value.as_bytes()).map_err(|_| KekError::Format { from: format!("in ${var}") })?
            }
        };
        let previous = self.previous_key_files.iter().map(|p| read_key_file(p)).collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Keks { current, previous }))
    }

    /// Whether the key is a file that does not exist yet (generated at the first start).
    pub fn key_file_missing(&self) -> bool {
        matches!(&self.key, KekSource::File(path) if !path.exists())
    }
}

/// Reads a key-encryption key file.
pub fn read_key_file(path: &Path) -> Result<Kek, KekError> {
    let bytes = std::fs::read(path).map_err(|source| KekError::Io { path: path.display().to_string(), source })?;
    Kek::from_bytes(&bytes).map_err(|_| KekError::Format { from: path.display().to_string() })
}

fn read_or_create(path: &Path) -> Result<Kek, KekError> {
    let bytes = crate::secrets::load_or_create(path, crate::seal::KEY_LEN)
        .map_err(|source| KekError::Io { path: path.display().to_string(), source })?;
    Kek::from_bytes(&bytes).map_err(|_| KekError::Format { from: path.display().to_string() })
}

/// The KEKs a store is opened with.
pub struct Keks {
    pub current: Kek,
    pub previous: Vec<Kek>,
}

impl std::fmt::Debug for Keks {
    /// Ids only: the keys themselves are never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let previous: Vec<&str> = self.previous.iter().map(Kek::id).collect();
        f.debug_struct("Keks").field("current", &self.current.id()).field("previous", &previous).finish()
    }
}

impl Keks {
    fn by_id(&self, id: &str) -> Option<&Kek> {
        std::iter::once(&self.current).chain(&self.previous).find(|k| k.id() == id)
    }
}

/// A data key as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub id: String,
    pub kek_id: String,
    /// `None` once destroyed.
    pub wrapped: Option<Vec<u8>>,
}

/// A data key to add, wrapped.
#[derive(Debug, Clone)]
pub struct NewDataKey {
    pub key: StoredKey,
    pub created_at: i64,
    /// Unix ms from which nothing more is sealed under it.
    pub not_after: i64,
}

/// A body sealed in place by [`seal_plaintext`]: which row, its sealed bytes and key.
#[derive(Debug, Clone)]
pub struct SealedBody {
    pub row: BodyRow,
    pub sealed: Vec<u8>,
    pub key_id: String,
}

/// Which row a stored body is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRow {
    Record { record_id: String },
    Delivery { id: i64, record_id: String, recipient: String },
}

/// A body still stored in plaintext, and the agreement whose key will seal it.
#[derive(Debug, Clone)]
pub struct PlainBody {
    pub row: BodyRow,
    pub body: Vec<u8>,
    pub agreement: String,
}

/// A data key re-wrapped under the current KEK, replacing the wrapping under `from`.
#[derive(Debug, Clone)]
pub struct RewrappedKey {
    pub id: String,
    pub from: String,
    pub to: String,
    pub wrapped: Vec<u8>,
}

/// What the store holds in keys and plaintext: for the start's checks and the commands' progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyCensus {
    /// Live data keys per KEK id.
    pub live_by_kek: Vec<(String, u64)>,
    pub destroyed: u64,
    /// Bodies still stored in plaintext.
    pub plain_records: u64,
    pub plain_deliveries: u64,
}

impl KeyCensus {
    pub fn plain(&self) -> u64 {
        self.plain_records + self.plain_deliveries
    }

    /// Live data keys wrapped under another KEK than `kek_id`.
    pub fn wrapped_elsewhere(&self, kek_id: &str) -> u64 {
        self.live_by_kek.iter().filter(|(k, _)| k != kek_id).map(|(_, n)| n).sum()
    }
}

/// What an engine gives the key ring: its reads and writes of keys and bodies. Each engine's
/// methods are one call into the shared reads (`read`) or the shared writer (`writer`).
pub trait KeySource: Send + Sync {
    fn stored_key(&self, id: String) -> StoreFuture<'_, Option<StoredKey>>;
    /// Adds the key unless one has its id; the key stored under that id either way.
    fn add_key(&self, key: NewDataKey) -> StoreFuture<'_, StoredKey>;
    fn plain_bodies(&self, limit: usize) -> StoreFuture<'_, Vec<PlainBody>>;
    /// Writes sealed bodies over rows still plaintext, audited; how many rows changed.
    fn write_sealed(&self, bodies: Vec<SealedBody>, at: i64) -> StoreFuture<'_, u64>;
    fn keys_wrapped_elsewhere(&self, kek_id: String, limit: usize) -> StoreFuture<'_, Vec<StoredKey>>;
    /// Replaces the wrappings of keys still wrapped as read, audited; how many changed.
    fn write_rewrapped(&self, keys: Vec<RewrappedKey>, at: i64) -> StoreFuture<'_, u64>;
    fn key_census(&self) -> StoreFuture<'_, KeyCensus>;
}

/// A stored body as read, still sealed under `key_id` if it has one; `body` is `None` once
/// purged.
pub struct StoredBody {
    pub record_id: String,
    /// The recipient of a delivery's body; `None` for the record's own.
    pub recipient: Option<String>,
    pub body: Option<Vec<u8>>,
    pub key_id: Option<String>,
}

/// A claimed delivery whose body may still be sealed under `key_id`.
pub struct SealedClaim {
    pub delivery: ClaimedDelivery,
    pub key_id: Option<String>,
}

/// The store's keys: the KEKs (if encryption is on) and the data keys unwrapped so far.
pub struct KeyRing {
    keks: Option<Arc<Keks>>,
    /// Unwrapped data keys by id, with the end of their day.
    open: Mutex<HashMap<String, (Arc<DataKey>, i64)>>,
}

impl KeyRing {
    pub fn new(keks: Option<Arc<Keks>>) -> Self {
        KeyRing { keks, open: Mutex::new(HashMap::new()) }
    }

    /// A ring that stores bodies in plaintext (`[store.encryption] enabled = false`).
    pub fn plaintext() -> Self {
        KeyRing::new(None)
    }

    pub fn kek_id(&self) -> Option<&str> {
        self.keks.as_ref().map(|k| k.current.id())
    }

    fn keks(&self) -> Result<&Keks, StoreError> {
        self.keks.as_deref().ok_or_else(|| {
            StoreError::new(StoreErrorKind::Failed, "a body is sealed but the store has no encryption key configured")
        })
    }

    fn cached(&self, id: &str) -> Option<Arc<DataKey>> {
        self.open.lock().ok()?.get(id).map(|(key, _)| key.clone())
    }

    fn unwrap_stored(&self, stored: &StoredKey) -> Result<Arc<DataKey>, StoreError> {
        let wrapped = stored.wrapped.as_deref().ok_or_else(|| {
            StoreError::corrupt(format!("data key {} was destroyed but a body is still sealed under it", stored.id))
        })?;
        let kek = self.keks()?.by_id(&stored.kek_id).ok_or_else(|| {
            StoreError::new(
                StoreErrorKind::Failed,
                format!(
                    "data key {} is wrapped under {}, which is not configured (add it to \
                     store.encryption.previous_key_files)",
                    stored.id, stored.kek_id
                ),
            )
        })?;
        let key = kek.unwrap(&stored.id, wrapped).map_err(|e| seal_failed(&stored.id, e))?;
        let key = Arc::new(key);
        if let Ok(mut open) = self.open.lock() {
            open.insert(stored.id.clone(), (key.clone(), day_end(&stored.id)));
        }
        Ok(key)
    }

    /// The data key `id`, to open a body with.
    async fn key(&self, source: &dyn KeySource, id: &str) -> Result<Arc<DataKey>, StoreError> {
        if let Some(key) = self.cached(id) {
            return Ok(key);
        }
        let stored = source
            .stored_key(id.to_owned())
            .await?
            .ok_or_else(|| StoreError::corrupt(format!("a body is sealed under data key {id}, which is not stored")))?;
        self.unwrap_stored(&stored)
    }

    /// The data key of `agreement` for the day of `at`, created if it is the day's first body.
    async fn sealing_key(&self, source: &dyn KeySource, agreement: &str, at: i64) -> Result<Arc<DataKey>, StoreError> {
        let id = key_id(agreement, at);
        if let Some(key) = self.cached(&id) {
            return Ok(key);
        }
        let kek = &self.keks()?.current;
        let fresh = DataKey::generate(id.clone()).map_err(|e| seal_failed(&id, e))?;
        let wrapped = kek.wrap(&fresh).map_err(|e| seal_failed(&id, e))?;
        let key = StoredKey { id: id.clone(), kek_id: kek.id().to_owned(), wrapped: Some(wrapped) };
        let stored = source.add_key(NewDataKey { key, created_at: at, not_after: day_end(&id) }).await?;
        // Another instance may have created the day's key first: its key is the one to use.
        self.unwrap_stored(&stored)
    }

    /// `record` with every body sealed (and the key of each named), if encryption is on.
    pub async fn seal(&self, source: &dyn KeySource, mut record: NewRecord) -> Result<NewRecord, StoreError> {
        if self.keks.is_none() {
            return Ok(record);
        }
        let scope = record.deliveries.first().map_or_else(|| record.sender.clone(), |d| d.agreement.clone());
        let key = self.sealing_key(source, &scope, record.received_at).await?;
        let binding = Binding { record_id: &record.record_id, recipient: None };
        record.body = Bytes::from(key.seal(&record.body, &binding).map_err(|e| seal_failed(key.id(), e))?);
        record.key_id = Some(key.id().to_owned());
        for d in &mut record.deliveries {
            let key = if d.agreement == scope {
                key.clone()
            } else {
                self.sealing_key(source, &d.agreement, record.received_at).await?
            };
            let binding = Binding { record_id: &record.record_id, recipient: Some(&d.recipient) };
            d.body = Bytes::from(key.seal(&d.body, &binding).map_err(|e| seal_failed(key.id(), e))?);
            d.key_id = Some(key.id().to_owned());
        }
        Ok(record)
    }

    /// The claimed deliveries with their bodies opened.
    pub async fn open(
        &self,
        source: &dyn KeySource,
        claims: Vec<SealedClaim>,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let mut opened = Vec::with_capacity(claims.len());
        for SealedClaim { mut delivery, key_id } in claims {
            if let Some(id) = key_id {
                let key = self.key(source, &id).await?;
                let binding = Binding { record_id: &delivery.record_id, recipient: Some(&delivery.recipient) };
                let plain = key.open(&delivery.body, &binding).map_err(|e| {
                    StoreError::corrupt(format!("the body of delivery {} does not open: {e}", delivery.id))
                })?;
                delivery.body = Bytes::from(plain);
            }
            opened.push(delivery);
        }
        Ok(opened)
    }

    /// A stored body opened, or `None` once purged.
    pub async fn open_body(&self, source: &dyn KeySource, stored: StoredBody) -> Result<Option<Bytes>, StoreError> {
        let Some(body) = stored.body else { return Ok(None) };
        let Some(id) = stored.key_id else { return Ok(Some(Bytes::from(body))) };
        let key = self.key(source, &id).await?;
        let binding = Binding { record_id: &stored.record_id, recipient: stored.recipient.as_deref() };
        let plain = key
            .open(&body, &binding)
            .map_err(|e| StoreError::corrupt(format!("a body of record {} does not open: {e}", stored.record_id)))?;
        Ok(Some(Bytes::from(plain)))
    }

    /// Drops from memory the data keys whose day ended before `before`: the purge may destroy
    /// them, and a key needed again is read back from the store.
    pub fn forget_ended(&self, before: i64) {
        if let Ok(mut open) = self.open.lock() {
            open.retain(|_, (_, not_after)| *not_after >= before);
        }
    }

    /// Checks at open that every live data key unwraps under a configured KEK, so a wrong key
    /// fails the start rather than the first delivery. Returns the census.
    pub async fn check(&self, source: &dyn KeySource) -> Result<KeyCensus, StoreError> {
        let census = source.key_census().await?;
        let Some(keks) = &self.keks else { return Ok(census) };
        for (kek_id, _) in &census.live_by_kek {
            if keks.by_id(kek_id).is_none() {
                return Err(StoreError::new(
                    StoreErrorKind::Failed,
                    format!(
                        "the store holds data keys wrapped under {kek_id}, but the configured key is {} \
                         (add the key {kek_id} to store.encryption.previous_key_files, or configure it as the key)",
                        keks.current.id()
                    ),
                ));
            }
        }
        Ok(census)
    }
}

/// The [`super::Store`] methods of an engine that holds its [`KeyRing`] as `keys` and is its
/// own [`KeySource`]: the same in both engines, written once.
macro_rules! key_methods {
    () => {
        fn check_keys(&self) -> StoreFuture<'_, KeyCensus> {
            Box::pin(self.keys.check(self))
        }

        fn seal_plaintext(&self) -> StoreFuture<'_, SealProgress> {
            Box::pin(keys::seal_plaintext(&self.keys, self))
        }

        fn rewrap_keys(&self) -> StoreFuture<'_, RewrapProgress> {
            Box::pin(keys::rewrap(&self.keys, self))
        }
    };
}
pub(super) use key_methods;

/// The id of the data key of `agreement` for the UTC day of `at`.
pub fn key_id(agreement: &str, at: i64) -> String {
    format!("{agreement}/{}", &crate::clock::rfc3339_ms(at)[..10])
}

/// The end (unix ms, exclusive) of the day a data key id names; a day it cannot read is taken
/// as already over, so such a key is never kept for new bodies.
fn day_end(id: &str) -> i64 {
    id.rsplit_once('/')
        .and_then(|(_, day)| crate::clock::parse_rfc3339_ms(&format!("{day}T00:00:00Z")))
        .map_or(0, |start| start + DAY_MS)
}

fn seal_failed(key_id: &str, e: SealError) -> StoreError {
    StoreError::new(StoreErrorKind::Failed, format!("data key {key_id}: {e}"))
}

/// What [`seal_plaintext`] did in one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealProgress {
    pub sealed: u64,
    /// Bodies still in plaintext after this batch.
    pub remaining: u64,
}

/// Seals up to [`BATCH`] bodies stored in plaintext, in one audited transaction. Run it until
/// `remaining` is 0; it can stop and resume at any point.
pub async fn seal_plaintext(ring: &KeyRing, source: &dyn KeySource) -> Result<SealProgress, StoreError> {
    ring.keks()?;
    let now = crate::clock::now_ms();
    let mut sealed = Vec::new();
    for plain in source.plain_bodies(BATCH).await? {
        let key = ring.sealing_key(source, &plain.agreement, now).await?;
        let (record_id, recipient) = match &plain.row {
            BodyRow::Record { record_id } => (record_id.as_str(), None),
            BodyRow::Delivery { record_id, recipient, .. } => (record_id.as_str(), Some(recipient.as_str())),
        };
        let bytes = key.seal(&plain.body, &Binding { record_id, recipient }).map_err(|e| seal_failed(key.id(), e))?;
        sealed.push(SealedBody { row: plain.row, sealed: bytes, key_id: key.id().to_owned() });
    }
    let count = if sealed.is_empty() { 0 } else { source.write_sealed(sealed, now).await? };
    Ok(SealProgress { sealed: count, remaining: source.key_census().await?.plain() })
}

/// What [`rewrap`] did in one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RewrapProgress {
    pub rewrapped: u64,
    /// Live data keys still wrapped under another KEK than the current one.
    pub remaining: u64,
}

/// Re-wraps up to [`BATCH`] data keys under the current KEK, in one audited transaction. The
/// bodies are not touched. Run it until `remaining` is 0; then the previous KEKs can go.
pub async fn rewrap(ring: &KeyRing, source: &dyn KeySource) -> Result<RewrapProgress, StoreError> {
    let keks = ring.keks()?;
    let to = keks.current.id().to_owned();
    let mut rewrapped = Vec::new();
    for stored in source.keys_wrapped_elsewhere(to.clone(), BATCH).await? {
        let key = ring.unwrap_stored(&stored)?;
        let wrapped = keks.current.wrap(&key).map_err(|e| seal_failed(&stored.id, e))?;
        rewrapped.push(RewrappedKey { id: stored.id, from: stored.kek_id, to: to.clone(), wrapped });
    }
    let count =
        if rewrapped.is_empty() { 0 } else { source.write_rewrapped(rewrapped, crate::clock::now_ms()).await? };
    Ok(RewrapProgress { rewrapped: count, remaining: source.key_census().await?.wrapped_elsewhere(&to) })
}

/// The KEKs the store's own tests seal under.
#[cfg(test)]
pub fn test_keks() -> Arc<Keks> {
    Arc::new(Keks { current: Kek::from_bytes(&[0x5a; crate::seal::KEY_LEN]).expect("a 32-byte key"), previous: vec![] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_named_by_agreement_and_utc_day_and_ends_with_it() {
        // 2026-12-03T23:59:59.999Z and the next millisecond.
        let last = 1_796_342_399_999;
        assert_eq!(key_id("birth-ottawa", last), "birth-ottawa/2026-12-03");
        assert_eq!(key_id("birth-ottawa", last + 1), "birth-ottawa/2026-12-04");
        assert_eq!(day_end("birth-ottawa/2026-12-03"), last + 1);
        assert_eq!(day_end("not a key"), 0);
    }
}
