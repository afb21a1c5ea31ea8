//! The export format: JSON lines, one entry or checkpoint per line, verifiable offline.
//!
//! The first line is a header (`"type":"passerelle-audit-export"`); then every entry of the
//! range (`"type":"entry"`, every member of the canonical form plus `prev_hash` and `hash`), then
//! the checkpoints that fall in the range (`"type":"checkpoint"`). `passerelle audit verify
//! --file` reads it back with the public keys and checks it without the database.

use serde_json::{Value, json};

use super::{AuditEntry, AuditEvent, Checkpoint};
use crate::digest::{decode_hex, to_hex};

/// The format's name and version, in the header line.
pub const FORMAT: &str = "passerelle-audit-export";
pub const VERSION: u64 = 1;

/// An entry as one export line (and as the admin API lists it).
pub fn entry_json(e: &AuditEntry) -> Value {
    let ev = &e.event;
    let mut v = json!({
        "type": "entry",
        "seq": e.seq,
        "at": crate::clock::rfc3339_ms(ev.at),
        "kind": ev.kind,
        "actor": ev.actor,
        "outcome": ev.outcome,
        "count": ev.count,
        "prev_hash": to_hex(&e.prev_hash),
        "hash": to_hex(&e.hash),
    });
    for (key, value) in [
        ("record_id", &ev.record_id),
        ("agreement", &ev.agreement),
        ("recipient", &ev.recipient),
        ("reason", &ev.reason),
    ] {
        if let Some(x) = value {
            v[key] = json!(x);
        }
    }
    if let Some(d) = &ev.body_digest {
        v["body_digest"] = json!(to_hex(d));
    }
    v
}

/// A checkpoint as one export line.
pub fn checkpoint_json(c: &Checkpoint) -> Value {
    json!({
        "type": "checkpoint",
        "seq": c.seq,
        "hash": to_hex(&c.hash),
        "at": crate::clock::rfc3339_ms(c.at),
        "key_id": c.key_id,
        "signature": to_hex(&c.signature),
    })
}

/// One parsed line of an export.
#[derive(Debug)]
pub enum Line {
    Header,
    Entry(AuditEntry),
    Checkpoint(Checkpoint),
}

fn hash32(v: &Value, key: &str) -> Result<[u8; 32], String> {
    let bytes = v[key]
        .as_str()
        .and_then(decode_hex)
        .filter(|b| b.len() == 32)
        .ok_or(format!("`{key}` is not 64 hex characters"))?;
    let mut out = [0u8; 32];
    out.copy_from_slice(&bytes);
    Ok(out)
}

fn text(v: &Value, key: &str) -> Result<String, String> {
    v[key].as_str().map(str::to_owned).ok_or(format!("`{key}` is missing"))
}

fn time(v: &Value, key: &str) -> Result<i64, String> {
    crate::clock::parse_rfc3339_ms(&text(v, key)?).ok_or(format!("`{key}` is not an RFC 3339 time"))
}

/// Parses one line of an export.
pub fn parse_line(line: &str) -> Result<Line, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let seq = || v["seq"].as_i64().ok_or("`seq` is missing".to_owned());
    match v["type"].as_str() {
        Some(FORMAT) => Ok(Line::Header),
        Some("entry") => {
            let optional = |key: &str| v[key].as_str().map(str::to_owned);
            let event = AuditEvent {
                at: time(&v, "at")?,
                kind: text(&v, "kind")?,
                actor: text(&v, "actor")?,
                record_id: optional("record_id"),
                agreement: optional("agreement"),
                recipient: optional("recipient"),
                body_digest: if v.get("body_digest").is_some() { Some(hash32(&v, "body_digest")?) } else { None },
                outcome: text(&v, "outcome")?,
                reason: optional("reason"),
                count: v["count"].as_i64().ok_or("`count` is missing")?,
            };
            Ok(Line::Entry(AuditEntry {
                seq: seq()?,
                event,
                prev_hash: hash32(&v, "prev_hash")?,
                hash: hash32(&v, "hash")?,
            }))
        }
        Some("checkpoint") => Ok(Line::Checkpoint(Checkpoint {
            seq: seq()?,
            hash: hash32(&v, "hash")?,
            at: time(&v, "at")?,
            key_id: text(&v, "key_id")?,
            signature: v["signature"].as_str().and_then(decode_hex).ok_or("`signature` is not hex")?,
        })),
        _ => Err("`type` is not entry, checkpoint or the header".to_owned()),
    }
}

/// The header line of an export of `from..=to`.
pub fn header(from: Option<i64>, to: Option<i64>) -> Value {
    json!({"type": FORMAT, "version": VERSION, "from": from, "to": to, "exported_at": crate::clock::rfc3339_ms(crate::clock::now_ms())})
}
