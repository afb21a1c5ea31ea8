//! Receipts bind everything they show: a change to any field of a receipt is detected, offline
//! with the gateway's public key and online against its store, and names the field or says the
//! receipt body does not match its signature. Receipts are signed once per group commit (format
//! 3: a signed tree and an inclusion proof per receipt), `audit verify` checks every stored tree,
//! and receipts of the earlier formats still verify.

use std::path::PathBuf;

use http::StatusCode;
use serde_json::Value;

use crate::support::*;

/// What the offline check says when the signed body was edited.
const BODY_MISMATCH: &str = "the receipt body does not match its signature";

/// A stopped gateway that accepted two birth registrations (four deliveries each), the receipts
/// their sender got, and the gateway's public key in a file, as a sender would hold it.
struct Held {
    setup: Setup,
    receipt: Value,
    /// The second record's receipt.
    other: Value,
    key: PathBuf,
}

async fn held() -> Held {
    let gw = Setup::new().start().await;
    let mut receipts = Vec::new();
    // Together, so that they may share a group commit and its tree.
    let body = record("birth-registration-1.1.json");
    let post = || gw.post_record("on-vital-stats", "birth-registration", &body);
    let (a, b) = tokio::join!(post(), post());
    for r in [a, b] {
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        receipts.push(r.json());
    }
    let setup = gw.stop().await;
    let (code, line) = cli(&["audit", "key", "--config", setup.main_config().to_str().unwrap()]);
    assert_eq!(code, 0, "{line}");
    let key = setup.dir.path().join("gateway.pub");
    std::fs::write(&key, line).unwrap();
    let other = receipts.pop().unwrap();
    let receipt = receipts.pop().unwrap();
    assert_eq!(receipt["deliveries"].as_array().map(Vec::len), Some(4), "{receipt}");
    Held { setup, receipt, other, key }
}

impl Held {
    fn write(&self, receipt: &Value) -> String {
        let file = self.setup.dir.path().join("receipt.json");
        std::fs::write(&file, receipt.to_string()).unwrap();
        file.to_str().unwrap().to_owned()
    }

    /// `verify-receipt` with the public key only: the configuration it is pointed at does not
    /// exist, so nothing but the receipt and the key can be read.
    fn offline(&self, receipt: &Value) -> (i32, String) {
        let absent = self.setup.dir.path().join("absent.toml");
        let file = self.write(receipt);
        cli(&[
            "audit",
            "verify-receipt",
            &file,
            "--key",
            self.key.to_str().unwrap(),
            "--config",
            absent.to_str().unwrap(),
        ])
    }

    /// `verify-receipt` with the gateway's configuration and store.
    fn online(&self, receipt: &Value) -> (i32, String) {
        let file = self.write(receipt);
        cli(&["audit", "verify-receipt", &file, "--config", self.setup.main_config().to_str().unwrap()])
    }

    /// Applies each edit to the receipt in turn: every one must be INVALID offline (saying the body
    /// does not match, or `offline` when the field is named) and online (saying `online`).
    fn each_edit_is_invalid(&self, edits: Vec<Edit>) {
        for Edit { what, edit, offline, online } in edits {
            let mut forged = self.receipt.clone();
            edit(&mut forged);
            assert_ne!(forged, self.receipt, "{what}: the edit changes the receipt");
            let (code, out) = self.offline(&forged);
            assert_eq!(code, 1, "{what}, offline: {out}");
            assert!(out.starts_with("INVALID: ") && out.contains(offline), "{what}, offline: {out}");
            let (code, out) = self.online(&forged);
            assert_eq!(code, 1, "{what}, online: {out}");
            assert!(out.starts_with("INVALID: ") && out.contains(&online), "{what}, online: {out}");
        }
    }
}

/// One edit of a receipt, and what the offline and online checks must say about it.
struct Edit {
    what: String,
    edit: Box<dyn Fn(&mut Value)>,
    offline: &'static str,
    online: String,
}

/// An edit of a field covered by the signature, that online names `field`.
fn edit(what: impl Into<String>, field: &str, edit: impl Fn(&mut Value) + 'static) -> Edit {
    Edit { what: what.into(), edit: Box::new(edit), offline: BODY_MISMATCH, online: format!("field `{field}`") }
}

#[tokio::test]
async fn an_untouched_receipt_is_valid_offline_and_online() {
    let held = held().await;
    let id = held.receipt["record_id"].as_str().unwrap();
    assert_eq!(held.receipt["audit"]["format"], 3, "receipts say which message is signed");
    let (code, out) = held.offline(&held.receipt);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with(&format!("valid: record {id} is audit entry ")), "{out}");
    assert!(out.contains(" of the signed tree of ") && out.trim_end().ends_with("(format 3)"), "{out}");
    let (code, out) = held.online(&held.receipt);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(format 3), and the receipt matches the gateway's record"), "{out}");
    // Member order and whitespace are not what is signed: the same JSON, pretty-printed, holds.
    let file = held.setup.dir.path().join("pretty.json");
    std::fs::write(&file, serde_json::to_string_pretty(&held.receipt).unwrap()).unwrap();
    let (code, out) = cli(&["audit", "verify-receipt", file.to_str().unwrap(), "--key", held.key.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn editing_any_top_level_field_of_a_receipt_makes_it_invalid() {
    let held = held().await;
    let other_id = held.other["record_id"].clone();
    held.each_edit_is_invalid(vec![
        Edit {
            what: "record_id, to one the gateway never issued".into(),
            edit: Box::new(|r| r["record_id"] = "01900000-0000-7000-8000-000000000000".into()),
            offline: BODY_MISMATCH,
            online: "the gateway has no record 01900000-0000-7000-8000-000000000000 (field `record_id`)".into(),
        },
        edit("record_id, to another record's", "record_id", move |r| r["record_id"] = other_id.clone()),
        edit("record_type", "record_type", |r| r["record_type"] = "death-registration".into()),
        edit("schema_version", "schema_version", |r| r["schema_version"] = "1.0".into()),
        edit("sender", "sender", |r| r["sender"] = "nt-vital-stats".into()),
        edit("received_at", "received_at", |r| r["received_at"] = "2020-01-01T00:00:00.000Z".into()),
        edit("a field removed", "sender", |r| drop(r.as_object_mut().unwrap().remove("sender"))),
        edit("a field added", "purpose", |r| r["purpose"] = "child benefits".into()),
    ]);
}

#[tokio::test]
async fn editing_any_delivery_on_a_receipt_makes_it_invalid() {
    let held = held().await;
    let mut edits = Vec::new();
    for i in 0..4 {
        edits.push(edit(format!("delivery {i}'s recipient"), &format!("deliveries[{i}].recipient"), move |r| {
            r["deliveries"][i]["recipient"] = "nt-vital-stats".into()
        }));
        edits.push(edit(format!("delivery {i}'s agreement"), &format!("deliveries[{i}].agreement"), move |r| {
            r["deliveries"][i]["agreement"] = "birth-bundle-forged".into()
        }));
    }
    edits.push(edit("a delivery's status", "deliveries[2].status", |r| {
        r["deliveries"][2]["status"] = "delivered".into()
    }));
    edits.push(edit("a delivery removed", "deliveries", |r| drop(r["deliveries"].as_array_mut().unwrap().remove(1))));
    edits.push(edit("a delivery added", "deliveries", |r| {
        let added = serde_json::json!({"recipient": "nt-vital-stats", "agreement": "birth-bundle", "status": "queued"});
        r["deliveries"].as_array_mut().unwrap().push(added)
    }));
    edits.push(Edit {
        what: "two deliveries swapped".into(),
        edit: Box::new(|r| r["deliveries"].as_array_mut().unwrap().swap(0, 3)),
        offline: BODY_MISMATCH,
        online: "field `deliveries[0].".into(),
    });
    held.each_edit_is_invalid(edits);
}

#[tokio::test]
async fn editing_any_member_of_a_receipts_audit_proof_makes_it_invalid() {
    let held = held().await;
    let audit = |member: &'static str, value: Value| move |r: &mut Value| r["audit"][member] = value.clone();
    let hex = |b: &str| Value::String(b.repeat(32));
    let untrusted = "0000000000000000";
    held.each_edit_is_invalid(vec![
        edit("audit.seq", "audit.seq", audit("seq", Value::from(1))),
        edit("audit.entry_hash", "audit.entry_hash", audit("entry_hash", hex("00"))),
        edit("audit.body_digest", "audit.body_digest", audit("body_digest", hex("01"))),
        // Not recorded anywhere but in the signed receipt: online too, the signature says it.
        Edit {
            what: "audit.signed_at".into(),
            edit: Box::new(audit("signed_at", "2020-01-01T00:00:00.000Z".into())),
            offline: BODY_MISMATCH,
            online: BODY_MISMATCH.into(),
        },
        Edit {
            what: "audit.key_id".into(),
            edit: Box::new(audit("key_id", untrusted.into())),
            offline: "`audit.key_id` names key 0000000000000000, which is not trusted",
            online: "`audit.key_id` names key 0000000000000000, which is not trusted".into(),
        },
        Edit {
            what: "audit.format removed (a downgrade to format 1)".into(),
            edit: Box::new(|r| drop(r["audit"].as_object_mut().unwrap().remove("format"))),
            offline: "as format 1 signs them (`audit.format` absent or 1)",
            online: "as format 1 signs them (`audit.format` absent or 1)".into(),
        },
        Edit {
            what: "audit.format unknown".into(),
            edit: Box::new(audit("format", Value::from(4))),
            offline: "`audit.format` is 4",
            online: "`audit.format` is 4".into(),
        },
        // The receipt's place in its tree: not stored apart, so online the proof says it.
        edit("audit.leaf_index", "audit", audit("leaf_index", Value::from(7))).offline_only(),
        edit("a sibling added to audit.proof", "audit", |r| {
            r["audit"]["proof"].as_array_mut().unwrap().push(Value::String("ab".repeat(32)))
        })
        .offline_only(),
        // The tree head: stored with its commit, so online names it.
        edit("audit.tree.size", "audit.tree", |r| {
            r["audit"]["tree"]["size"] = (r["audit"]["tree"]["size"].as_u64().unwrap() + 1).into()
        }),
        edit("audit.tree.first_seq", "audit.tree", |r| r["audit"]["tree"]["first_seq"] = 1.into()),
        edit("audit.tree.root", "audit.tree", |r| r["audit"]["tree"]["root"] = "00".repeat(32).into()),
        Edit {
            what: "audit.signature".into(),
            edit: Box::new(|r| {
                let s = r["audit"]["signature"].as_str().unwrap();
                let flipped = if s.starts_with('0') { "1" } else { "0" };
                r["audit"]["signature"] = format!("{flipped}{}", &s[1..]).into();
            }),
            offline: BODY_MISMATCH,
            online: BODY_MISMATCH.into(),
        },
        edit("a member added to audit", "audit", audit("note", "added".into())).offline_only(),
    ]);
}

impl Edit {
    /// The store keeps no proof to compare an added `audit` member with: online, the signature
    /// says the body does not match.
    fn offline_only(mut self) -> Edit {
        self.online = BODY_MISMATCH.into();
        self
    }
}

#[tokio::test]
async fn an_old_format_receipt_still_verifies_and_says_what_it_does_not_cover() {
    let held = held().await;
    // A format-1 receipt, as issued before: no `format`, the format-1 message signed by the
    // gateway's own key.
    let key = passerelle::audit::keys::SigningKey::load_or_create(
        &held.setup.data_dir().join(passerelle::audit::keys::SIGNING_KEY_FILE),
    )
    .unwrap();
    let mut old = held.receipt.clone();
    let audit = old["audit"].as_object_mut().unwrap();
    for format_3 in ["format", "leaf_index", "proof", "tree"] {
        audit.remove(format_3);
    }
    let digest = |name: &str| -> [u8; 32] {
        let hex = audit[name].as_str().unwrap();
        (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect::<Vec<_>>().try_into().unwrap()
    };
    let stamp = passerelle::audit::AuditStamp { seq: audit["seq"].as_i64().unwrap(), hash: digest("entry_hash") };
    let message = passerelle::audit::receipt_message_v1(
        held.receipt["record_id"].as_str().unwrap(),
        &digest("body_digest"),
        stamp,
        passerelle::clock::parse_rfc3339_ms(audit["signed_at"].as_str().unwrap()).unwrap(),
        key.id(),
    );
    audit["signature"] = passerelle::digest::to_hex(&key.sign(&message)).into();

    let not_covered = "format 1: the signature covers only `record_id` and the audit proof, \
                       not `deliveries`, `received_at`, `record_type`, `schema_version` or `sender`";
    let (code, out) = held.offline(&old);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("valid: record ") && out.contains(not_covered), "{out}");
    let (code, out) = held.online(&old);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("{not_covered}; those fields match the gateway's record")), "{out}");

    // Offline, a format-1 signature cannot vouch for the sender, and the verdict says so; online,
    // the gateway's record shows the edit.
    let mut edited = old.clone();
    edited["sender"] = "nt-vital-stats".into();
    let (code, out) = held.offline(&edited);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(not_covered), "{out}");
    let (code, out) = held.online(&edited);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("INVALID: field `sender` differs from the gateway's record"), "{out}");
    // What format 1 signs is still bound.
    let mut edited = old.clone();
    edited["audit"]["seq"] = 1.into();
    let (code, out) = held.offline(&edited);
    assert_eq!(code, 1, "{out}");

    // A format-2 receipt, as issued before trees: the whole receipt signed on its own.
    let mut two = old.clone();
    two["audit"]["format"] = 2.into();
    let message = passerelle::audit::receipt_message_v2(&two);
    two["audit"]["signature"] = passerelle::digest::to_hex(&key.sign(&message)).into();
    let (code, out) = held.offline(&two);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("the signature covers every field of the receipt (format 2)"), "{out}");
    let (code, out) = held.online(&two);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(format 2), and the receipt matches the gateway's record"), "{out}");
    let mut edited = two.clone();
    edited["sender"] = "nt-vital-stats".into();
    let (code, out) = held.offline(&edited);
    assert!(code == 1 && out.contains(BODY_MISMATCH), "{out}");
}

#[tokio::test]
async fn a_changed_stored_receipt_is_named_online_while_the_receipt_still_verifies() {
    let held = held().await;
    let conn = rusqlite::Connection::open(held.setup.data_dir().join("passerelle.sqlite")).unwrap();
    let changed = conn
        .execute(
            "UPDATE records SET receipt = CAST(replace(CAST(receipt AS TEXT), '\"on-vital-stats\"', '\"nt-vital-stats\"') AS BLOB)
             WHERE record_id = ?1",
            [held.receipt["record_id"].as_str().unwrap()],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let (code, out) = held.offline(&held.receipt);
    assert_eq!(code, 0, "the sender's receipt is intact: {out}");
    let (code, out) = held.online(&held.receipt);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("INVALID: field `sender` differs from the gateway's record, yet the receipt's signature holds"),
        "{out}"
    );
    // The stored receipt no longer makes the tree its commit signed.
    let (code, out) = cli(&["audit", "verify", "--config", held.setup.main_config().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("the stored receipts do not make its signed root"), "{out}");
}

/// Records posted together through the gateway share group commits: each commit signs one tree,
/// every receipt verifies offline by its proof, `audit verify` checks every stored tree, and
/// fails, naming the tree, once a stored root is altered.
#[tokio::test]
async fn concurrent_records_are_signed_once_per_commit_and_audit_verify_checks_every_tree() {
    let gw = Setup::new().start().await;
    let body = record("birth-registration-1.1.json");
    let posts = (0..16).map(|_| gw.post_record("on-vital-stats", "birth-registration", &body));
    let receipts: Vec<Value> = futures_util::future::join_all(posts)
        .await
        .into_iter()
        .map(|r| {
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
            r.json()
        })
        .collect();
    let setup = gw.stop().await;
    let (code, line) = cli(&["audit", "key", "--config", setup.main_config().to_str().unwrap()]);
    assert_eq!(code, 0, "{line}");
    let key = setup.dir.path().join("gateway.pub");
    std::fs::write(&key, line).unwrap();

    let mut trees: Vec<(Value, Value)> = Vec::new();
    for (i, receipt) in receipts.iter().enumerate() {
        let audit = &receipt["audit"];
        assert_eq!(audit["format"], 3, "{receipt}");
        let (tree, signature) = (audit["tree"].clone(), audit["signature"].clone());
        match trees.iter().find(|(t, _)| *t == tree) {
            Some((_, same)) => assert_eq!(*same, signature, "one signature per tree"),
            None => trees.push((tree, signature)),
        }
        let file = setup.dir.path().join(format!("receipt-{i}.json"));
        std::fs::write(&file, receipt.to_string()).unwrap();
        let (code, out) = cli(&["audit", "verify-receipt", file.to_str().unwrap(), "--key", key.to_str().unwrap()]);
        assert_eq!(code, 0, "receipt {i}: {out}");
        assert!(out.trim_end().ends_with("(format 3)"), "{out}");
    }
    let size: u64 = trees.iter().map(|(t, _)| t["size"].as_u64().unwrap()).sum();
    assert_eq!(size, 16, "every receipt is in one tree: {trees:?}");

    let config = setup.main_config();
    let (code, out) = cli(&["audit", "verify", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("; {} signed receipt trees verified", trees.len())), "{out}");

    let first_seq = trees[0].0["first_seq"].as_i64().unwrap();
    let conn = rusqlite::Connection::open(setup.data_dir().join("passerelle.sqlite")).unwrap();
    let changed =
        conn.execute("UPDATE receipt_trees SET root = zeroblob(32) WHERE first_seq = ?1", [first_seq]).unwrap();
    assert_eq!(changed, 1);
    let (code, out) = cli(&["audit", "verify", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with(&format!("FAILED: the signed receipt tree from entry {first_seq}: its head's signature")),
        "{out}"
    );
}
