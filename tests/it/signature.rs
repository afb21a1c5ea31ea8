//! Signed deliveries: every delivery, pushed, taken from a mailbox or published to NATS
//! JetStream, carries a detached JWS that the keys of `GET /v1/keys` verify over its exact body
//! and its facts; a retry and a replay carry the same bytes; a key rotation leaves earlier
//! signatures verifiable; `passerelle verify-delivery` and the README's Python verifier agree.
//! Tampering with each protected member is in the unit tests of `src/delivery/signature.rs`.

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::stream::StorageType;
use http::{Method, StatusCode};
use passerelle::audit::keys::TrustedKeys;
use passerelle::delivery::signature::{self, ReceivedFacts, VerifiedDelivery};
use serde_json::Value;

use crate::delivery::{post_birth, wait_status};
use crate::nats::{RECIPIENT as NATS_RECIPIENT, SHARED_SERVER, TestStream, header, with_nats_recipient};
use crate::support::*;

const CITY: &str = "ottawa-city";
const TOKEN: &str = "Bearer test-admin-token";

/// Posts a birth registration as the Ontario office; its receipt.
async fn post_receipt(gw: &TestGateway) -> Value {
    let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    r.json()
}

/// The keys as `partner` reads them from `GET /v1/keys`, checked against the OpenAPI document:
/// the JWKS as served, and read.
async fn published_keys(gw: &TestGateway, partner: &str) -> (String, TrustedKeys) {
    let r = gw.client.get("/v1/keys", gw.key(partner)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/jwk-set+json"));
    assert_documented(&partner_document(gw, partner).await, "get", "/v1/keys", &r);
    (r.text(), signature::read_public_keys(&r.text(), "GET /v1/keys").unwrap())
}

/// The key ids of a JWKS, in order.
fn kids(jwks: &str) -> Vec<String> {
    let set: Value = serde_json::from_str(jwks).unwrap();
    set["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

/// Checks a delivery given as a JSON object (a mailbox's, or a batch's record) within `text`,
/// the answer or request it came in, as `recipient` would: the signature over the bytes of its
/// `body` as they stand in `text` (its canonical form), then the signed facts against its members.
pub(crate) fn verify_delivery_object(
    keys: &TrustedKeys,
    delivery: &Value,
    text: &str,
    recipient: &str,
) -> VerifiedDelivery {
    let signature = delivery["signature"].as_str().expect("a signature");
    let body = passerelle::json::to_canonical_vec(&delivery["body"]);
    assert!(text.contains(&format!("\"body\":{}}}", String::from_utf8(body.clone()).unwrap())));
    let verified = signature::verify(signature, &body, keys).unwrap_or_else(|e| panic!("{recipient}: {e}"));
    let told = ReceivedFacts {
        record_id: delivery["record_id"].as_str(),
        agreement: delivery["agreement"].as_str(),
        sender: delivery["sender"].as_str(),
        recipient: Some(recipient),
        schema: delivery["schema"].as_str(),
    };
    verified.matches(&told).unwrap_or_else(|e| panic!("{recipient}: {e}"));
    verified
}

/// Checks a delivery of `body` to `recipient` as its recipient would: the signature with the
/// published keys, then the signed facts against the headers it came with.
fn verify_pushed(keys: &TrustedKeys, received: &mock::Received, recipient: &str) -> VerifiedDelivery {
    let signature = received.header("passerelle-signature").expect("a Passerelle-Signature header");
    let verified = signature::verify(signature, &received.body, keys).unwrap_or_else(|e| panic!("{recipient}: {e}"));
    let told = ReceivedFacts {
        record_id: received.header("passerelle-record-id"),
        agreement: received.header("passerelle-agreement"),
        sender: received.header("passerelle-sender"),
        recipient: Some(recipient),
        schema: received.header("passerelle-schema"),
    };
    verified.matches(&told).unwrap_or_else(|e| panic!("{recipient}: {e}"));
    verified
}

/// The facts every delivery of the record `receipt` acknowledges must sign.
fn assert_facts_of(verified: &VerifiedDelivery, receipt: &Value) {
    assert_eq!(verified.facts.record_id, receipt["record_id"].as_str().unwrap());
    assert_eq!(verified.facts.sender, "on-vital-stats");
    // The health plan is pinned to 1.0: its body, and so its signed schema, is the translation.
    let version = if verified.facts.recipient == "on-health-plan" { "1.0" } else { "1.1" };
    assert_eq!(verified.facts.schema, format!("birth-registration/{version}"));
    assert_eq!(verified.facts.received_at, receipt["received_at"].as_str().unwrap(), "the receipt's time");
    assert_eq!(verified.facts.audit_seq, receipt["audit"]["seq"].as_i64().unwrap(), "the receipt's audit entry");
}

#[tokio::test]
async fn every_pushed_delivery_is_signed_by_the_key_the_partner_api_and_the_admin_listener_publish() {
    let gw = Setup::new().start().await;
    let receipt = post_receipt(&gw).await;
    let (jwks, keys) = published_keys(&gw, CITY).await;
    let key_id = receipt["audit"]["key_id"].as_str().unwrap();
    assert_eq!(kids(&jwks), [key_id], "the audit key, by its key id");
    // The same set for operators, and for a sender.
    let admin = gw.admin.send(Method::GET, "/admin/v1/keys", &[("authorization", TOKEN)], "").await;
    assert_eq!((admin.status, admin.header("content-type")), (StatusCode::OK, Some("application/jwk-set+json")));
    assert_eq!(admin.text(), jwks);
    gw.admin.send(Method::GET, "/admin/v1/keys", &[], "").await.problem(401, "admin-token-required");
    gw.client.send(Method::GET, "/v1/keys", &[], "").await.problem(401, "unauthenticated");
    assert_eq!(published_keys(&gw, "on-vital-stats").await.0, jwks);

    for (recipient, _) in RECIPIENTS {
        let received = gw.recipient(recipient).wait_for(1, Duration::from_secs(10)).await;
        let verified = verify_pushed(&keys, &received[0], recipient);
        assert_eq!(verified.key_id, key_id);
        assert_eq!(verified.facts.recipient, recipient);
        assert_facts_of(&verified, &receipt);
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_delivery_taken_from_the_mailbox_carries_its_signature() {
    let gw = Setup::new().pull(CITY).start_without(CITY).await;
    let receipt = post_receipt(&gw).await;
    let taken = gw.client.get("/v1/inbox?limit=10", gw.key(CITY)).await;
    assert_eq!(taken.status, StatusCode::OK, "{}", taken.text());
    let delivery = taken.json()["deliveries"][0].clone();
    let (jwks, keys) = published_keys(&gw, CITY).await;
    let verified = verify_delivery_object(&keys, &delivery, &taken.text(), CITY);
    assert_facts_of(&verified, &receipt);

    // `passerelle verify-delivery --inbox` takes the delivery as `passerelle inbox --out` writes it.
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys.json");
    std::fs::write(&keys_file, &jwks).unwrap();
    let file = dir.path().join("delivery.json");
    std::fs::write(&file, serde_json::to_string_pretty(&delivery).unwrap()).unwrap();
    let (code, out) =
        cli_env(&["verify-delivery", "--key", path(&keys_file), "--inbox", path(&file), "--recipient", CITY], &[])
            .await;
    assert_eq!(code, 0, "{out}");
    let printed: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(printed["facts"]["record_id"], receipt["record_id"]);
    let mut changed = delivery.clone();
    changed["body"]["parents"][0]["address"]["postal_code"] = "K1A 0B1".into();
    std::fs::write(&file, serde_json::to_string_pretty(&changed).unwrap()).unwrap();
    let (code, out) = cli_env(&["verify-delivery", "--key", path(&keys_file), "--inbox", path(&file)], &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("INVALID: the signature does not match"), "{out}");
    gw.stop().await;
}

#[tokio::test]
async fn a_message_published_to_nats_carries_its_signature() {
    let stream = TestStream::create(SHARED_SERVER, StorageType::Memory).await;
    let gw = with_nats_recipient(Setup::new(), SHARED_SERVER, &stream.subject_template(), "").start().await;
    let receipt = post_receipt(&gw).await;
    stream.wait_for(1, Duration::from_secs(10)).await;
    let message = &stream.messages().await[0];
    // The stream's reader has no API credentials here; the keys are the same for every partner.
    let (_, keys) = published_keys(&gw, CITY).await;
    let signature = header(message, "Passerelle-Signature").expect("a Passerelle-Signature header");
    let verified = signature::verify(signature, &message.payload, &keys).unwrap();
    let told = ReceivedFacts {
        record_id: header(message, "Passerelle-Record-Id"),
        agreement: header(message, "Passerelle-Agreement"),
        sender: header(message, "Passerelle-Sender"),
        recipient: Some(NATS_RECIPIENT),
        schema: header(message, "Passerelle-Schema"),
    };
    verified.matches(&told).unwrap();
    assert_facts_of(&verified, &receipt);
    // The city's push of the same projection is signed for the city, not for its stream.
    let pushed = gw.recipient(CITY).wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(pushed[0].body, message.payload);
    assert_ne!(pushed[0].header("passerelle-signature"), Some(signature));
    gw.stop().await;
}

#[tokio::test]
async fn a_retried_and_a_replayed_delivery_carry_the_same_signature() {
    let gw = Setup::new().start().await;
    let city = gw.recipient(CITY);
    // A 503 (retried), then a 400 (dead), then an operator's replay that is taken.
    city.fail_times(1, 503).respond(400);
    let id = post_birth(&gw).await;
    wait_status(&gw, &id, CITY, "dead").await;
    city.respond(200);
    let dead = gw
        .admin
        .send(
            Method::GET,
            &format!("/admin/v1/deliveries?status=dead&recipient={CITY}"),
            &[("authorization", TOKEN)],
            "",
        )
        .await;
    let delivery_id = dead.json()["deliveries"][0]["id"].as_i64().unwrap();
    let replay = format!("/admin/v1/deliveries/{delivery_id}/replay");
    let r = gw.admin.send(Method::POST, &replay, &[("authorization", TOKEN)], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let received = city.wait_for(3, Duration::from_secs(10)).await;
    let signatures: Vec<&str> = received.iter().map(|r| r.header("passerelle-signature").unwrap()).collect();
    assert_eq!(signatures, [signatures[0]; 3], "the first attempt, the retry and the replay");
    let (_, keys) = published_keys(&gw, CITY).await;
    verify_pushed(&keys, &received[2], CITY);
    gw.stop().await;
}

#[tokio::test]
async fn after_a_key_rotation_both_keys_are_published_and_old_signatures_still_verify() {
    let recipients = mock_recipients().await;
    let gw = Setup::new().start_with(recipients.clone()).await;
    let first = post_receipt(&gw).await;
    let before = gw.recipient(CITY).wait_for(1, Duration::from_secs(10)).await.remove(0);
    let (jwks_before, _) = published_keys(&gw, CITY).await;
    let setup = gw.stop().await;

    // The new key in a file of its own; the old public key trusted, as an operator rotates.
    let old = passerelle::audit::keys::SigningKey::load_or_create(&setup.data_dir().join("audit-signing-key")).unwrap();
    std::fs::write(setup.config_dir().join("old-key.pub"), format!("{}\n", old.public_line())).unwrap();
    let gw = setup
        .audit("signing_key_file = \"../data/audit-signing-key-2\"")
        .audit("trusted_keys = [\"old-key.pub\"]")
        .start_with(recipients)
        .await;
    let second = post_receipt(&gw).await;
    let after = gw.recipient(CITY).wait_for(2, Duration::from_secs(10)).await.remove(1);
    let (jwks_after, keys) = published_keys(&gw, CITY).await;
    let new_id = second["audit"]["key_id"].as_str().unwrap();
    assert_ne!(new_id, old.id());
    assert_eq!(kids(&jwks_before), [old.id()]);
    assert_eq!(kids(&jwks_after), [new_id, old.id()], "the current key first, then the old one");

    let old_delivery = verify_pushed(&keys, &before, CITY);
    assert_eq!(old_delivery.key_id, old.id(), "signed before the rotation, verified with the old key");
    assert_facts_of(&old_delivery, &first);
    let new_delivery = verify_pushed(&keys, &after, CITY);
    assert_eq!(new_delivery.key_id, new_id);
    assert_facts_of(&new_delivery, &second);
    // Without the old key published, the old signature would not verify.
    let mut only_new: Value = serde_json::from_str(&jwks_after).unwrap();
    only_new["keys"].as_array_mut().unwrap().truncate(1);
    let only_new = signature::read_public_keys(&only_new.to_string(), "new key").unwrap();
    let signed_before = before.header("passerelle-signature").unwrap();
    assert_eq!(
        signature::verify(signed_before, &before.body, &only_new),
        Err(signature::DeliverySignatureError::UnknownKey(old.id().to_owned()))
    );
    gw.stop().await;
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A pushed delivery written out as a recipient keeps it: the body, the signature, the key.
struct Kept {
    dir: tempfile::TempDir,
    signature: String,
    record_id: String,
}

impl Kept {
    async fn of(gw: &TestGateway) -> Kept {
        let receipt = post_receipt(gw).await;
        let received = gw.recipient(CITY).wait_for(1, Duration::from_secs(10)).await.remove(0);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("body.json"), &received.body).unwrap();
        std::fs::write(dir.path().join("keys.json"), published_keys(gw, CITY).await.0).unwrap();
        let key = passerelle::audit::keys::SigningKey::load_or_create(&gw.setup.data_dir().join("audit-signing-key"));
        std::fs::write(dir.path().join("gateway.pub"), key.unwrap().public_line()).unwrap();
        Kept {
            dir,
            signature: received.header("passerelle-signature").unwrap().to_owned(),
            record_id: receipt["record_id"].as_str().unwrap().to_owned(),
        }
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// The body with one byte changed: the child's date of birth.
    fn tamper_body(&self) {
        let body = std::fs::read_to_string(self.file("body.json")).unwrap();
        assert!(body.contains("2026-03-28"), "{body}");
        std::fs::write(self.file("body.json"), body.replacen("2026-03-28", "2026-03-29", 1)).unwrap();
    }
}

#[tokio::test]
async fn verify_delivery_accepts_a_good_delivery_and_refuses_a_tampered_one() {
    let gw = Setup::new().start().await;
    let kept = Kept::of(&gw).await;
    let (key, body) = (kept.file("gateway.pub"), kept.file("body.json"));
    let (code, out) =
        cli_env(&["verify-delivery", "--key", &key, &body, &kept.signature, "--record-id", &kept.record_id], &[]).await;
    assert_eq!(code, 0, "{out}");
    let printed: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(printed["valid"], true);
    assert_eq!(printed["facts"]["record_id"], kept.record_id.as_str());
    assert_eq!(printed["facts"]["recipient"], CITY);
    // The JWKS reads as well as the key line, and the signature may be a file.
    std::fs::write(kept.file("signature"), format!("{}\n", kept.signature)).unwrap();
    let (code, out) =
        cli_env(&["verify-delivery", "--key", &kept.file("keys.json"), &body, &kept.file("signature")], &[]).await;
    assert_eq!(code, 0, "{out}");

    // A fact given that is not the signed one.
    let other_id = "019ad0a5-5c00-7c3a-9d2e-6b1f0a4c8e21";
    let (code, out) =
        cli_env(&["verify-delivery", "--key", &key, &body, &kept.signature, "--record-id", other_id], &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with(&format!("INVALID: the signed record_id is \"{}\"", kept.record_id)), "{out}");
    // A body changed by one byte.
    kept.tamper_body();
    let (code, out) = cli_env(&["verify-delivery", "--key", &key, &body, &kept.signature], &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("INVALID: the signature does not match: the body or a signed fact was changed"), "{out}");
    gw.stop().await;
}

/// The Python verifier of the README, between its markers.
fn readme_verifier() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("<!-- verify-delivery.py: begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- verify-delivery.py: end -->").next())
        .expect("the README has the Python verifier between its markers");
    let code = section.split("```python\n").nth(1).and_then(|c| c.split("```").next()).expect("a python block");
    code.to_owned()
}

#[tokio::test]
async fn the_readmes_python_verifier_checks_a_real_delivery() {
    let gw = Setup::new().start().await;
    let kept = Kept::of(&gw).await;
    std::fs::write(kept.file("verify_delivery.py"), readme_verifier()).unwrap();
    let python = |extra: &[&str]| {
        let mut command = std::process::Command::new("python3");
        command.args([
            &kept.file("verify_delivery.py"),
            &kept.file("keys.json"),
            &kept.file("body.json"),
            &kept.signature,
        ]);
        command.args(extra);
        let out = command.output().expect("python3 runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let told =
        [format!("record_id={}", kept.record_id), format!("recipient={CITY}"), "sender=on-vital-stats".to_owned()];
    let told: Vec<&str> = told.iter().map(String::as_str).collect();
    let (code, out, err) = python(&told);
    assert_eq!(code, Some(0), "{out}{err}");
    let facts: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(facts["record_id"], kept.record_id.as_str());
    assert_eq!(facts["schema"], "birth-registration/1.1");

    let (code, _, err) = python(&["sender=nt-vital-stats"]);
    assert_eq!((code, err.trim()), (Some(1), "INVALID: the signed sender is not the one received"));
    kept.tamper_body();
    let (code, _, err) = python(&[]);
    assert_eq!((code, err.trim()), (Some(1), "INVALID: the signature does not match the body and its facts"));
    gw.stop().await;
}

#[tokio::test]
async fn with_signing_off_no_signature_is_sent() {
    let gw = Setup::new().delivery("sign = false").start().await;
    post_birth(&gw).await;
    let received = gw.recipient(CITY).wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received[0].header("passerelle-signature"), None);
    gw.stop().await;
}
