//! Batch delivery: several records in one POST to a recipient that asks for it (`batch =
//! { max_records, max_wait_ms }`), each with its own idempotency key and signature, and the
//! recipient's answer per record. Also one delivery as a JSON object, the same in a batch and
//! in a pull recipient's mailbox page.
//!
//! # The format (for recipients)
//!
//! `POST {endpoint}` (the base URL itself: the records may be of several types) with
//! `Content-Type: application/vnd.passerelle.batch+json` and the gateway's credentials, carrying
//!
//! ```text
//! {"records":[{"delivery_id":7,"record_id":"…","agreement":"…","sender":"…","schema":"type/1.1",
//!   "idempotency_key":"…","traceparent":"…","attempts":0,"signature":"…","body":{…}}, …]}
//! ```
//!
//! Each record's members are what a single POST sends in its headers, and `body` is the stored
//! projected record, byte for byte: `signature` covers those exact bytes, as it covers a single
//! POST's body. The recipient answers `200` with one result per record:
//!
//! ```text
//! {"results":[{"idempotency_key":"…","status":200},{"idempotency_key":"…","status":503,"retry_after":5}, …]}
//! ```
//!
//! A record's `status` is read as a single POST's would be: 2xx delivered; 408, 425, 429 and
//! 5xx retried (after `retry_after` seconds at least, when given); any other status dead. A
//! record the answer does not name is retried. Any answer but a 2xx is the answer for every
//! record of the batch (a 503 retries them all; a 400 makes them all dead), as are a timeout
//! and a connection failure; so is a 2xx whose body is not such a list (they are retried: the
//! idempotency keys make that harmless).

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::idempotency_key;
use crate::store::ClaimedDelivery;

/// The content type of a batch.
pub const CONTENT_TYPE: &str = "application/vnd.passerelle.batch+json";

/// The most records one batch may carry.
pub const MAX_BATCH_RECORDS: usize = 1000;

/// The longest a worker may wait to fill a batch.
pub const MAX_BATCH_WAIT: Duration = Duration::from_secs(10);

/// The most bytes of bodies one batch may hold, judged at its worst (every record as large as
/// `limits.max_body_bytes` lets it be): a batch's bodies are in memory while it is claimed and
/// sent, and in one POST.
pub const MAX_BATCH_BYTES: usize = 128 * 1024 * 1024;

/// The bytes of an answer read per record of the batch (an answer entry is under 200 bytes).
const ANSWER_BYTES_PER_RECORD: usize = 512;

/// How a recipient takes several records per POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Records per POST at most.
    pub max_records: usize,
    /// How long the worker waits for more records when fewer than `max_records` are due.
    pub max_wait: Duration,
}

/// One delivery's members besides its body: what a single POST sends in its headers.
#[derive(Serialize)]
struct Envelope<'a> {
    delivery_id: i64,
    record_id: &'a str,
    agreement: &'a str,
    sender: &'a str,
    schema: String,
    idempotency_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracestate: Option<&'a str>,
    attempts: u32,
    /// The detached JWS a single POST sends as `Passerelle-Signature`, over the bytes of `body`.
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<&'a str>,
}

/// Writes delivery `d` as a JSON object: its envelope (with `traceparent`, the trace context it
/// is sent under), then `"body"` with the stored bytes unchanged (canonical JSON written at
/// acceptance, so they are a JSON value as they stand, and what `signature` covers).
pub fn write_delivery(d: &ClaimedDelivery, signature: Option<&str>, traceparent: Option<&str>, out: &mut Vec<u8>) {
    let envelope = Envelope {
        delivery_id: d.id,
        record_id: &d.record_id,
        agreement: &d.agreement,
        sender: &d.sender,
        schema: format!("{}/{}", d.record_type, d.schema_version),
        idempotency_key: idempotency_key(d),
        traceparent,
        tracestate: d.tracestate.as_deref(),
        attempts: d.attempts,
        signature,
    };
    let start = out.len();
    if serde_json::to_writer(&mut *out, &envelope).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"{");
    } else {
        out.pop();
        out.push(b',');
    }
    out.extend_from_slice(b"\"body\":");
    out.extend_from_slice(if d.body.is_empty() { b"null" } else { &d.body });
    out.push(b'}');
}

/// One record of a batch to send: the delivery, its signature and the trace context it goes as.
pub struct BatchRecord<'a> {
    pub delivery: &'a ClaimedDelivery,
    pub signature: Option<&'a str>,
    pub traceparent: &'a str,
}

/// The body of a batch: `{"records":[…]}`.
pub fn body(records: &[BatchRecord<'_>]) -> Vec<u8> {
    let size: usize = records.iter().map(|r| r.delivery.body.len() + 1024).sum();
    let mut out = Vec::with_capacity(size + 16);
    out.extend_from_slice(b"{\"records\":[");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_delivery(r.delivery, r.signature, Some(r.traceparent), &mut out);
    }
    out.extend_from_slice(b"]}");
    out
}

/// The most bytes of a recipient's answer to a batch of `records` that are read.
pub fn answer_limit(records: usize) -> usize {
    4096 + records * ANSWER_BYTES_PER_RECORD
}

/// A recipient's 2xx answer to a batch.
#[derive(Deserialize)]
struct Answer {
    results: Vec<RecordAnswer>,
}

/// The recipient's answer for one record.
#[derive(Deserialize)]
struct RecordAnswer {
    idempotency_key: String,
    status: u16,
    /// Seconds to wait before a retry, for a status that is retried.
    retry_after: Option<u64>,
}

/// What the recipient answered for one record of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    pub status: u16,
    /// How long to wait before a retry, when the recipient said.
    pub retry_after: Option<Duration>,
}

/// Each record's answer, in the order of `records`, from a recipient's 2xx answer `bytes`:
/// `None` for a record the answer does not name, and `None` as a whole when the answer is not a
/// list of results.
pub fn answers(records: &[BatchRecord<'_>], bytes: &[u8]) -> Option<Vec<Option<Answered>>> {
    let answer: Answer = serde_json::from_slice(bytes).ok()?;
    let mut by_key: HashMap<String, (u16, Option<u64>)> = HashMap::with_capacity(answer.results.len());
    for r in answer.results {
        // A key answered twice counts as its first answer.
        by_key.entry(r.idempotency_key).or_insert((r.status, r.retry_after));
    }
    let answer = |d: &ClaimedDelivery| {
        by_key
            .get(&idempotency_key(d))
            .map(|&(status, retry_after)| Answered { status, retry_after: retry_after.map(Duration::from_secs) })
    };
    Some(records.iter().map(|r| answer(r.delivery)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: i64, record_id: &str) -> ClaimedDelivery {
        ClaimedDelivery {
            id,
            record_id: record_id.to_owned(),
            recipient: "r".to_owned(),
            agreement: "a".to_owned(),
            sender: "s".to_owned(),
            record_type: "t".to_owned(),
            schema_version: "1.0".to_owned(),
            traceparent: None,
            tracestate: None,
            body: bytes::Bytes::from_static(br#"{"b":1,"a":"x"}"#),
            body_digest: [0; 32],
            attempts: 0,
            created_at: 0,
            received_at: 0,
            audit_seq: 1,
        }
    }

    #[test]
    fn a_batch_carries_each_body_byte_for_byte_with_its_own_key() {
        let (one, two) = (delivery(1, "r1"), delivery(2, "r2"));
        let records = [
            BatchRecord { delivery: &one, signature: Some("s1"), traceparent: "tp1" },
            BatchRecord { delivery: &two, signature: None, traceparent: "tp2" },
        ];
        let bytes = body(&records);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert_eq!(text.matches(r#""body":{"b":1,"a":"x"}"#).count(), 2, "{text}");
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let records = value["records"].as_array().unwrap();
        assert_eq!(records[0]["idempotency_key"], "r1.r");
        assert_eq!(records[0]["signature"], "s1");
        assert_eq!(records[1]["traceparent"], "tp2");
        assert!(records[1].get("signature").is_none());
    }

    #[test]
    fn each_record_gets_its_own_answer_and_an_unnamed_one_none() {
        let claimed = [delivery(1, "r1"), delivery(2, "r2"), delivery(3, "r3"), delivery(4, "r4")];
        let batch: Vec<BatchRecord> =
            claimed.iter().map(|d| BatchRecord { delivery: d, signature: None, traceparent: "tp" }).collect();
        let answer = br#"{"results":[{"idempotency_key":"r2.r","status":400},
            {"idempotency_key":"r1.r","status":200},{"idempotency_key":"r3.r","status":503,"retry_after":7},
            {"idempotency_key":"r1.r","status":500}]}"#;
        let got = answers(&batch, answer).unwrap();
        let answered = |status, retry_after| Some(Answered { status, retry_after });
        assert_eq!(got, [answered(200, None), answered(400, None), answered(503, Some(Duration::from_secs(7))), None]);
        assert!(answers(&batch, b"{\"ok\":true}").is_none());
        assert!(answers(&batch, b"not json").is_none());
    }
}
