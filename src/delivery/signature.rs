//! Signed deliveries: a detached JWS over each delivery's exact body bytes and the facts a
//! recipient relies on, made with the gateway's Ed25519 key; its verification; and the public
//! keys published as a JWKS (`GET /v1/keys`, `GET /admin/v1/keys`).
//!
//! Every delivery, pushed ([`super::client`]), published to NATS JetStream ([`super::nats`]) or
//! taken from a mailbox (`crate::http::inbox`), carries one: the `Passerelle-Signature` header,
//! or the inbox delivery's `signature` member. Request/response calls are not deliveries and
//! carry none. `[delivery] sign = false` turns signing off (to measure what it costs).
//!
//! # The format (to verify with another program)
//!
//! A JWS (RFC 7515) in compact serialisation with a detached, unencoded payload (RFC 7797):
//!
//! ```text
//! BASE64URL(protected header) ".." BASE64URL(Ed25519 signature)
//! ```
//!
//! where BASE64URL is base64url without padding, and the signature is Ed25519 over
//!
//! ```text
//! ASCII(BASE64URL(protected header)) || "." || the body bytes exactly as delivered
//! ```
//!
//! The protected header is a JSON object, written with its keys sorted and no whitespace:
//!
//! | member | value |
//! |---|---|
//! | `alg` | `"EdDSA"` (Ed25519) |
//! | `b64` | `false`: the payload is the body's bytes, not their base64url |
//! | `crit` | `["b64","passerelle"]`: a verifier must understand both |
//! | `kid` | the signing key's id: the first 8 bytes of the SHA-256 of its raw public key, in hex (the `kid` of the JWKS, the id of `passerelle audit key`) |
//! | `passerelle` | the delivery's facts, below |
//!
//! | fact | value |
//! |---|---|
//! | `record_id` | the record's id (header `Passerelle-Record-Id`) |
//! | `agreement` | the agreement it is delivered under (`Passerelle-Agreement`) |
//! | `sender` | the partner that sent it (`Passerelle-Sender`) |
//! | `recipient` | the partner it is delivered to: the recipient itself |
//! | `schema` | `record-type/MAJOR.MINOR` (`Passerelle-Schema`) |
//! | `received_at` | when the gateway accepted the record, RFC 3339 UTC with milliseconds (the sender's receipt's `received_at`) |
//! | `audit_seq` | the seq of the audit entry that accepted the record (the receipt's `audit.seq`) |
//!
//! Nothing about one attempt is signed (no attempt count, no send time, no trace context), so a
//! retried or replayed delivery carries the same signature byte for byte (Ed25519 is
//! deterministic), as long as the gateway's key is the same; after a key rotation a replay is
//! signed by the new key. The messages of receipts and checkpoints begin `passerelle:`, a JWS
//! signing input begins `eyJ`, so a signature made for one never verifies as another.
//!
//! A recipient checks the signature with the key its `kid` names, then compares the signed
//! facts with what it was told (the headers, or the inbox delivery's members): a fact is signed
//! so that it can be compared, and an unmatched one proves nothing.
//!
//! **Invariant:** a signature covers the exact bytes delivered; nothing is re-serialised between
//! signing and sending.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::keys::{KeyError, SignatureError, SigningKey, TrustedKeys, key_id};
use crate::audit::notary::Notary;
use crate::store::ClaimedDelivery;

/// The HTTP (and NATS) header that carries a delivery's signature.
pub const HEADER: &str = "Passerelle-Signature";

/// The JWS algorithm: Ed25519 (RFC 8037).
const ALGORITHM: &str = "EdDSA";

/// The header parameter holding the delivery's facts, listed in `crit`.
const FACTS: &str = "passerelle";

/// The largest protected header read, decoded: a real one is under 400 bytes.
const MAX_HEADER_BYTES: usize = 4096;

/// The deepest nesting a protected header is read with (it has two levels).
const MAX_HEADER_DEPTH: usize = 4;

/// What a delivery's signature says about it: the `passerelle` member of its protected header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryFacts {
    pub record_id: String,
    pub agreement: String,
    pub sender: String,
    pub recipient: String,
    /// `record-type/MAJOR.MINOR`.
    pub schema: String,
    /// RFC 3339 UTC with milliseconds.
    pub received_at: String,
    pub audit_seq: i64,
}

impl DeliveryFacts {
    /// The facts of a claimed delivery: everything fixed at acceptance, nothing of the attempt.
    pub fn of(d: &ClaimedDelivery) -> Self {
        DeliveryFacts {
            record_id: d.record_id.clone(),
            agreement: d.agreement.clone(),
            sender: d.sender.clone(),
            recipient: d.recipient.clone(),
            schema: format!("{}/{}", d.record_type, d.schema_version),
            received_at: crate::clock::rfc3339_ms(d.received_at),
            audit_seq: d.audit_seq,
        }
    }
}

/// The protected header of a signature by `key_id` over `facts`, serialised canonically (keys
/// sorted, no whitespace), so the same delivery always has the same header. Written member by
/// member in that order rather than built as a JSON value first: the same bytes as
/// `json::to_canonical_vec` of the object (a test compares the two), once per attempt.
fn protected_header(key_id: &str, facts: &DeliveryFacts) -> Vec<u8> {
    use crate::json::write_string;
    let mut out = Vec::with_capacity(384);
    out.extend_from_slice(br#"{"alg":"#);
    write_string(ALGORITHM, &mut out);
    out.extend_from_slice(br#","b64":false,"crit":["b64","#);
    write_string(FACTS, &mut out);
    out.extend_from_slice(br#"],"kid":"#);
    write_string(key_id, &mut out);
    out.push(b',');
    write_string(FACTS, &mut out);
    out.extend_from_slice(br#":{"agreement":"#);
    write_string(&facts.agreement, &mut out);
    out.extend_from_slice(br#","audit_seq":"#);
    out.extend_from_slice(facts.audit_seq.to_string().as_bytes());
    for (name, value) in [
        ("received_at", &facts.received_at),
        ("recipient", &facts.recipient),
        ("record_id", &facts.record_id),
        ("schema", &facts.schema),
        ("sender", &facts.sender),
    ] {
        out.push(b',');
        write_string(name, &mut out);
        out.push(b':');
        write_string(value, &mut out);
    }
    out.extend_from_slice(b"}}");
    out
}

/// `ASCII(BASE64URL(header)) || '.' || body`: what the signature covers (RFC 7797, section 3).
fn signing_input(encoded_header: &str, body: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(encoded_header.len() + 1 + body.len());
    input.extend_from_slice(encoded_header.as_bytes());
    input.push(b'.');
    input.extend_from_slice(body);
    input
}

/// The detached JWS of a delivery of `body` with `facts`, signed by `key`.
pub fn sign(key: &SigningKey, facts: &DeliveryFacts, body: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(protected_header(key.id(), facts));
    let signature = key.sign(&signing_input(&header, body));
    format!("{header}..{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The signature of the claimed delivery `d`, over its stored body.
pub fn sign_delivery(key: &SigningKey, d: &ClaimedDelivery) -> String {
    sign(key, &DeliveryFacts::of(d), &d.body)
}

/// Why a delivery's signature is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliverySignatureError {
    #[error("not a detached JWS in compact form (`<protected header>..<signature>`)")]
    NotDetached,
    #[error("the protected header is not base64url-encoded JSON without duplicate keys")]
    Header,
    #[error("the algorithm is {0:?}, not EdDSA")]
    Algorithm(String),
    #[error("the header does not say `b64: false` with `crit` [\"b64\", \"passerelle\"] (RFC 7797)")]
    NotUnencoded,
    #[error("`crit` names {0:?}, which a Passerelle delivery signature does not use")]
    UnknownCritical(String),
    #[error("the header names no key (`kid`)")]
    NoKey,
    #[error("signed by key {0}, which is not among the keys given")]
    UnknownKey(String),
    #[error("the signature is not base64url-encoded Ed25519")]
    SignatureEncoding,
    #[error("the signature does not match: the body or a signed fact was changed, or key {0} did not sign it")]
    Invalid(String),
    #[error("the signed facts (`passerelle`) are missing or incomplete")]
    Facts,
    #[error("the signed {fact} is {signed:?}, but the delivery says {received:?}")]
    Mismatch { fact: &'static str, signed: String, received: String },
}

/// A signature that holds: who signed, and what it says about the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDelivery {
    pub key_id: String,
    pub facts: DeliveryFacts,
}

/// What a recipient was told about a delivery besides its signature: its headers, or the
/// members of an inbox delivery. `None` is not compared.
#[derive(Debug, Clone, Default)]
pub struct ReceivedFacts<'a> {
    pub record_id: Option<&'a str>,
    pub agreement: Option<&'a str>,
    pub sender: Option<&'a str>,
    pub recipient: Option<&'a str>,
    pub schema: Option<&'a str>,
}

impl VerifiedDelivery {
    /// Whether the signed facts are what the delivery says; the first that differs is named.
    pub fn matches(&self, received: &ReceivedFacts<'_>) -> Result<(), DeliverySignatureError> {
        let f = &self.facts;
        for (fact, signed, told) in [
            ("record_id", &f.record_id, received.record_id),
            ("agreement", &f.agreement, received.agreement),
            ("sender", &f.sender, received.sender),
            ("recipient", &f.recipient, received.recipient),
            ("schema", &f.schema, received.schema),
        ] {
            if let Some(told) = told
                && told != signed
            {
                return Err(DeliverySignatureError::Mismatch {
                    fact,
                    signed: signed.clone(),
                    received: told.to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// Checks the detached JWS `signature` of a delivery of `body` with `keys`: its form, `alg`,
/// `b64` and `crit`, its `kid`, then the signature over the header and the exact body bytes.
/// Returns the signed facts, for the caller to compare with what it was told
/// ([`VerifiedDelivery::matches`]).
pub fn verify(signature: &str, body: &[u8], keys: &TrustedKeys) -> Result<VerifiedDelivery, DeliverySignatureError> {
    use DeliverySignatureError as E;
    let mut parts = signature.trim().split('.');
    let (Some(encoded_header), Some(""), Some(encoded_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(E::NotDetached);
    };
    if encoded_header.len() > MAX_HEADER_BYTES * 4 / 3 + 4 {
        return Err(E::Header);
    }
    let header = URL_SAFE_NO_PAD.decode(encoded_header).map_err(|_| E::Header)?;
    let header = crate::json::parse_strict(&header, MAX_HEADER_DEPTH).map_err(|_| E::Header)?;
    let Value::Object(header) = header else { return Err(E::Header) };
    match header.get("alg") {
        Some(Value::String(alg)) if alg == ALGORITHM => {}
        Some(Value::String(alg)) => return Err(E::Algorithm(alg.chars().take(32).collect())),
        _ => return Err(E::Algorithm(String::new())),
    }
    let Some(Value::Array(critical)) = header.get("crit") else { return Err(E::NotUnencoded) };
    let mut named = Vec::with_capacity(critical.len());
    for name in critical {
        match name.as_str() {
            Some(n @ ("b64" | FACTS)) if !named.contains(&n) => named.push(n),
            Some(n @ ("b64" | FACTS)) => return Err(E::UnknownCritical(format!("{n} twice"))),
            Some(other) => return Err(E::UnknownCritical(other.chars().take(32).collect())),
            None => return Err(E::NotUnencoded),
        }
    }
    if named.len() != 2 || header.get("b64") != Some(&Value::Bool(false)) {
        return Err(E::NotUnencoded);
    }
    let Some(Value::String(kid)) = header.get("kid") else { return Err(E::NoKey) };
    let kid: String = kid.chars().take(64).collect();
    let signature_bytes = URL_SAFE_NO_PAD.decode(encoded_signature).map_err(|_| E::SignatureEncoding)?;
    if signature_bytes.len() != 64 {
        return Err(E::SignatureEncoding);
    }
    keys.verify(&kid, &signing_input(encoded_header, body), &signature_bytes).map_err(|e| match e {
        SignatureError::UnknownKey => E::UnknownKey(kid.clone()),
        SignatureError::Invalid => E::Invalid(kid.clone()),
    })?;
    let facts = header.get(FACTS).cloned().ok_or(E::Facts)?;
    let facts: DeliveryFacts = serde_json::from_value(facts).map_err(|_| E::Facts)?;
    Ok(VerifiedDelivery { key_id: kid, facts })
}

/// A JSON Web Key Set (RFC 7517) of Ed25519 public keys (RFC 8037), in the order given.
pub fn jwks<'a>(keys: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Value {
    let keys: Vec<Value> = keys
        .into_iter()
        .map(|(id, public)| {
            json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(public), "kid": id, "alg": ALGORITHM, "use": "sig"})
        })
        .collect();
    json!({ "keys": keys })
}

/// The keys the gateway publishes: the one it signs with now first, then every other key it
/// trusts (`[audit] trusted_keys`: earlier keys after a rotation, other instances' keys), so a
/// delivery signed before a rotation or by another instance still verifies.
pub fn published_keys(notary: &Notary) -> Value {
    let current = (notary.key.id(), notary.key.public_key());
    jwks(std::iter::once(current).chain(notary.trusted.iter().filter(|(id, _)| *id != notary.key.id())))
}

/// Reads public keys from a file's `text`: a JWKS (what `GET /v1/keys` answers; keys other than
/// Ed25519 are skipped), or `ed25519 <key-id> <hex>` lines (what `passerelle audit key` prints).
pub fn read_public_keys(text: &str, path: &str) -> Result<TrustedKeys, KeyError> {
    let mut keys = TrustedKeys::default();
    if !text.trim_start().starts_with('{') {
        keys.add_lines(text, path)?;
    } else {
        let format = |what| KeyError::Format { path: path.to_owned(), what };
        let set = crate::json::parse_strict(text.as_bytes(), 8).map_err(|_| format("not JSON"))?;
        let listed = set.get("keys").and_then(Value::as_array).ok_or(format("a JWKS has a `keys` array"))?;
        for jwk in listed {
            if jwk.get("kty").and_then(Value::as_str) != Some("OKP")
                || jwk.get("crv").and_then(Value::as_str) != Some("Ed25519")
            {
                continue;
            }
            let public = jwk
                .get("x")
                .and_then(Value::as_str)
                .and_then(|x| URL_SAFE_NO_PAD.decode(x).ok())
                .filter(|x| x.len() == 32)
                .ok_or(format("an Ed25519 key's `x` is 32 bytes in base64url"))?;
            let id = key_id(&public);
            if jwk.get("kid").and_then(Value::as_str).is_some_and(|kid| kid != id) {
                return Err(format("a key's `kid` is not its key id"));
            }
            keys.add(id, public);
        }
    }
    if keys.is_empty() {
        return Err(KeyError::Format { path: path.to_owned(), what: "no Ed25519 public key in it" });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dir: &std::path::Path, name: &str) -> SigningKey {
        SigningKey::load_or_create(&dir.join(name)).unwrap()
    }

    fn facts() -> DeliveryFacts {
        DeliveryFacts {
            record_id: "019ad0a5-5c00-7c3a-9d2e-6b1f0a4c8e21".into(),
            agreement: "birth-ottawa".into(),
            sender: "on-vital-stats".into(),
            recipient: "ottawa-city".into(),
            schema: "birth-registration/1.1".into(),
            received_at: "2026-11-29T17:00:00.000Z".into(),
            audit_seq: 42,
        }
    }

    const BODY: &[u8] = br#"{"child":{"date_of_birth":"2026-11-28"}}"#;

    fn trusting(keys: &[&SigningKey]) -> TrustedKeys {
        let mut trusted = TrustedKeys::default();
        for k in keys {
            let (id, public) = k.trusted();
            trusted.add(id, public);
        }
        trusted
    }

    /// The signature `signature` with its protected header changed by `edit`.
    fn with_header(signature: &str, edit: impl FnOnce(&mut Value)) -> String {
        let (header, rest) = signature.split_once('.').unwrap();
        let mut header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        edit(&mut header);
        format!("{}.{rest}", URL_SAFE_NO_PAD.encode(crate::json::to_canonical_vec(&header)))
    }

    #[test]
    fn the_protected_header_is_documented_exactly() {
        let text = String::from_utf8(protected_header("0123456789abcdef", &facts())).unwrap();
        assert_eq!(
            text,
            r#"{"alg":"EdDSA","b64":false,"crit":["b64","passerelle"],"kid":"0123456789abcdef","passerelle":{"agreement":"birth-ottawa","audit_seq":42,"received_at":"2026-11-29T17:00:00.000Z","recipient":"ottawa-city","record_id":"019ad0a5-5c00-7c3a-9d2e-6b1f0a4c8e21","schema":"birth-registration/1.1","sender":"on-vital-stats"}}"#
        );
    }

    /// The header written member by member is the canonical form of the header as a JSON
    /// value, whatever the facts hold (escapes, non-ASCII, negative and large numbers).
    #[test]
    fn the_protected_header_is_the_canonical_form_of_its_object() {
        let as_value = |key_id: &str, facts: &DeliveryFacts| {
            crate::json::to_canonical_vec(&json!({
                "alg": ALGORITHM,
                "b64": false,
                "crit": ["b64", FACTS],
                "kid": key_id,
                FACTS: facts,
            }))
        };
        let odd = DeliveryFacts {
            record_id: "quote \" back\\slash".into(),
            agreement: "tab\tnew\nline\u{1}".into(),
            sender: "Québec 🍁".into(),
            recipient: String::new(),
            schema: "\u{7f}\u{2028}".into(),
            received_at: "</script>".into(),
            audit_seq: i64::MIN,
        };
        for (key_id, facts) in
            [("0123456789abcdef", facts()), ("k\"", odd.clone()), ("", DeliveryFacts { audit_seq: i64::MAX, ..odd })]
        {
            assert_eq!(
                String::from_utf8(protected_header(key_id, &facts)).unwrap(),
                String::from_utf8(as_value(key_id, &facts)).unwrap()
            );
        }
    }

    #[test]
    fn a_signature_verifies_and_is_the_same_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let key = key(dir.path(), "a");
        let signature = sign(&key, &facts(), BODY);
        assert_eq!(signature, sign(&key, &facts(), BODY), "deterministic: a replay carries the same bytes");
        let (header, rest) = signature.split_once("..").unwrap();
        assert!(!header.contains('=') && !rest.contains('='), "base64url without padding");
        let verified = verify(&signature, BODY, &trusting(&[&key])).unwrap();
        assert_eq!(verified, VerifiedDelivery { key_id: key.id().to_owned(), facts: facts() });
        // The signature is plain Ed25519 over header '.' body, as documented.
        let message = [header.as_bytes(), b".", BODY].concat();
        let raw = URL_SAFE_NO_PAD.decode(rest).unwrap();
        assert_eq!(trusting(&[&key]).verify(key.id(), &message, &raw), Ok(()));
    }

    #[test]
    fn a_changed_body_or_any_changed_protected_member_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (key(dir.path(), "a"), key(dir.path(), "b"));
        let keys = trusting(&[&a, &b]);
        let signature = sign(&a, &facts(), BODY);
        let invalid = Err(DeliverySignatureError::Invalid(a.id().to_owned()));
        assert_eq!(verify(&signature, br#"{"child":{"date_of_birth":"2026-11-29"}}"#, &keys), invalid);
        assert_eq!(verify(&signature, &[BODY, b" "].concat(), &keys), invalid, "one byte more");
        let facts_changed: [(&str, Value); 7] = [
            ("record_id", "019ad0a5-5c00-7c3a-9d2e-6b1f0a4c8e22".into()),
            ("agreement", "birth-bundle".into()),
            ("sender", "nt-vital-stats".into()),
            ("recipient", "on-health-plan".into()),
            ("schema", "birth-registration/1.0".into()),
            ("received_at", "2026-11-29T17:00:00.001Z".into()),
            ("audit_seq", 43.into()),
        ];
        for (fact, value) in facts_changed {
            let tampered = with_header(&signature, |h| h[FACTS][fact] = value);
            assert_eq!(verify(&tampered, BODY, &keys), invalid, "{fact}");
        }
        let tampered = with_header(&signature, |h| h[FACTS]["extra"] = "x".into());
        assert_eq!(verify(&tampered, BODY, &keys), invalid, "a fact added");
        let tampered = with_header(&signature, |h| h["kid"] = b.id().into());
        assert_eq!(verify(&tampered, BODY, &keys), Err(DeliverySignatureError::Invalid(b.id().to_owned())));
        let tampered = with_header(&signature, |h| h["kid"] = "0000000000000000".into());
        assert_eq!(verify(&tampered, BODY, &keys), Err(DeliverySignatureError::UnknownKey("0000000000000000".into())));
        for alg in ["none", "HS256", "ES256", "Ed25519"] {
            let tampered = with_header(&signature, |h| h["alg"] = alg.into());
            assert_eq!(verify(&tampered, BODY, &keys), Err(DeliverySignatureError::Algorithm(alg.into())));
        }
        let tampered = with_header(&signature, |h| h["b64"] = true.into());
        assert_eq!(verify(&tampered, BODY, &keys), Err(DeliverySignatureError::NotUnencoded));
        let tampered = with_header(&signature, |h| h["crit"] = serde_json::json!(["b64"]));
        assert_eq!(verify(&tampered, BODY, &keys), Err(DeliverySignatureError::NotUnencoded));
        let tampered = with_header(&signature, |h| h["crit"] = serde_json::json!(["b64", "passerelle", "exp"]));
        assert_eq!(verify(&tampered, BODY, &keys), Err(DeliverySignatureError::UnknownCritical("exp".into())));
        // Signed by a key the verifier was not given.
        assert_eq!(verify(&signature, BODY, &trusting(&[&b])), Err(DeliverySignatureError::UnknownKey(a.id().into())));
    }

    #[test]
    fn only_a_detached_compact_jws_with_one_header_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let a = key(dir.path(), "a");
        let keys = trusting(&[&a]);
        let signature = sign(&a, &facts(), BODY);
        let (header, sig) = signature.split_once("..").unwrap();
        let attached = format!("{header}.{}.{sig}", URL_SAFE_NO_PAD.encode(BODY));
        for refused in [attached.as_str(), header, "", "..", &format!("{signature}."), &format!("{header}=..{sig}")] {
            assert!(verify(refused, BODY, &keys).is_err(), "{refused}");
        }
        // A header with a member twice would mean one thing to one parser and another to the next.
        let doubled = String::from_utf8(protected_header(a.id(), &facts())).unwrap().replacen(
            r#""alg":"EdDSA","#,
            r#""alg":"EdDSA","alg":"EdDSA","#,
            1,
        );
        let doubled = URL_SAFE_NO_PAD.encode(doubled);
        let resigned = format!("{doubled}..{}", URL_SAFE_NO_PAD.encode(a.sign(&signing_input(&doubled, BODY))));
        assert_eq!(verify(&resigned, BODY, &keys), Err(DeliverySignatureError::Header));
    }

    #[test]
    fn the_signed_facts_are_compared_with_what_the_delivery_says() {
        let dir = tempfile::tempdir().unwrap();
        let a = key(dir.path(), "a");
        let verified = verify(&sign(&a, &facts(), BODY), BODY, &trusting(&[&a])).unwrap();
        let told = ReceivedFacts {
            record_id: Some("019ad0a5-5c00-7c3a-9d2e-6b1f0a4c8e21"),
            agreement: Some("birth-ottawa"),
            sender: Some("on-vital-stats"),
            recipient: Some("ottawa-city"),
            schema: Some("birth-registration/1.1"),
        };
        assert_eq!(verified.matches(&told), Ok(()));
        assert_eq!(verified.matches(&ReceivedFacts::default()), Ok(()), "nothing told, nothing compared");
        let other = ReceivedFacts { sender: Some("nt-vital-stats"), ..told };
        assert_eq!(
            verified.matches(&other),
            Err(DeliverySignatureError::Mismatch {
                fact: "sender",
                signed: "on-vital-stats".into(),
                received: "nt-vital-stats".into()
            })
        );
    }

    #[test]
    fn the_published_keys_read_back_as_the_trusted_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (key(dir.path(), "a"), key(dir.path(), "b"));
        let notary = Notary::new(key(dir.path(), "b"), trusting(&[&a]));
        let set = published_keys(&notary);
        let ids: Vec<&str> = set["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
        assert_eq!(ids, [b.id(), a.id()], "the current key first, each once");
        assert_eq!(set["keys"][0]["kty"], "OKP");
        assert_eq!(set["keys"][0]["crv"], "Ed25519");
        assert_eq!(set["keys"][0]["alg"], "EdDSA");
        let read = read_public_keys(&set.to_string(), "keys.json").unwrap();
        assert_eq!(read.ids().collect::<Vec<_>>().len(), 2);
        let signature = sign(&a, &facts(), BODY);
        assert_eq!(verify(&signature, BODY, &read).unwrap().key_id, a.id());
        // The line format reads too; a JWKS whose kid lies about its key does not.
        assert!(read_public_keys(&a.public_line(), "a.pub").is_ok());
        let lying = set.to_string().replace(a.id(), "0123456789abcdef");
        assert!(read_public_keys(&lying, "keys.json").is_err());
        assert!(read_public_keys(r#"{"keys":[]}"#, "keys.json").is_err(), "no key is an error");
    }
}
