//! A corpus of malformed and hostile requests: each gets its status from the check table, and
//! the gateway keeps serving after every one.

use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// Sends raw bytes on a fresh connection; returns the status and the body of the answer.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    // One answer is enough; the connection may stay open.
                    let text = String::from_utf8_lossy(&answer);
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head.lines().find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        });
                        if length.is_some_and(|l| body.len() >= l) {
                            break;
                        }
                    }
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn post(path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!("POST {path} HTTP/1.1\r\nhost: localhost\r\n{headers}content-length: {}\r\n\r\n", body.len())
        .into_bytes();
    r.extend_from_slice(body);
    r
}

#[tokio::test]
async fn every_malformed_request_gets_its_status_and_the_gateway_keeps_serving() {
    let gw = Setup::new().start().await;
    let addr = gw.gateway.as_ref().unwrap().partner_addr;
    let auth = format!("authorization: Bearer {}\r\n", gw.key("on-vital-stats"));
    let json = format!("{auth}content-type: application/json\r\n");
    let birth = "/v1/records/birth-registration";
    let valid = record("birth-registration-1.1.json").to_string();
    let mut big_number = record("birth-registration-1.1.json");
    big_number["registration_number"] = serde_json::json!(1.0e300);
    let corpus: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("invalid UTF-8", post(birth, &json, b"{\"a\": \"\xff\xfe\"}"), 400, "malformed-json"),
        ("truncated JSON", post(birth, &json, &valid.as_bytes()[..valid.len() / 2]), 400, "malformed-json"),
        ("duplicate keys", post(birth, &json, br#"{"child": {}, "child": {}}"#), 400, "malformed-json"),
        // Valid JSON a double cannot hold: a `numberPrecision` violation (issue 18), not a 400.
        ("a number out of range", post(birth, &json, br#"{"registration_number": 1e400}"#), 422, "schema-violation"),
        (
            "a huge number where a string belongs",
            post(birth, &json, big_number.to_string().as_bytes()),
            422,
            "schema-violation",
        ),
        ("a lone surrogate", post(birth, &json, br#"{"registration_number": "\ud800"}"#), 400, "malformed-json"),
        ("a raw NUL byte", post(birth, &json, b"{\"registration_number\": \"a\0b\"}"), 400, "malformed-json"),
        ("an escaped NUL", post(birth, &json, br#"{"registration_number": "\u0000"}"#), 422, "schema-violation"),
        ("an empty body", post(birth, &json, b""), 400, "malformed-json"),
        ("a JSON scalar", post(birth, &json, b"42"), 422, "schema-violation"),
        (
            "a wrong content type",
            post(birth, &format!("{auth}content-type: text/xml\r\n"), valid.as_bytes()),
            415,
            "unsupported-media-type",
        ),
        ("no content type", post(birth, &auth, valid.as_bytes()), 415, "unsupported-media-type"),
        (
            "a content encoding",
            post(birth, &format!("{json}content-encoding: gzip\r\n"), valid.as_bytes()),
            415,
            "unsupported-content-encoding",
        ),
        (
            "an absurd schema version",
            post(birth, &format!("{json}schema-version: 99999999999.1\r\n"), valid.as_bytes()),
            404,
            "unsupported-schema-version",
        ),
        (
            "a schema version that is not MAJOR.MINOR",
            post(birth, &format!("{json}schema-version: 1.1.0\r\n"), valid.as_bytes()),
            400,
            "invalid-header",
        ),
        (
            "an absurd bearer token",
            post(
                birth,
                &format!("authorization: Bearer {}\r\ncontent-type: application/json\r\n", "A".repeat(8000)),
                valid.as_bytes(),
            ),
            401,
            "unauthenticated",
        ),
        (
            "an absurd authorization scheme",
            post(birth, "authorization: Negotiate ***\r\ncontent-type: application/json\r\n", valid.as_bytes()),
            401,
            "unauthenticated",
        ),
        (
            "an absurd language",
            post(birth, &format!("{json}accept-language: ;;;q=zz,*\r\n"), b"{"),
            400,
            "malformed-json",
        ),
        (
            "traversal in {type}",
            post("/v1/records/..%2F..%2Fetc%2Fpasswd", &json, valid.as_bytes()),
            404,
            "no-agreement",
        ),
        ("traversal in the path", post("/v1/records/../../etc/passwd", &json, valid.as_bytes()), 404, "not-found"),
        (
            "traversal in {id}",
            b"GET /v1/records/..%2F..%2Fdata%2Fpasserelle.sqlite HTTP/1.1\r\nhost: x\r\n"
                .iter()
                .chain(auth.as_bytes())
                .chain(b"\r\n")
                .copied()
                .collect(),
            405,
            "method-not-allowed",
        ),
        (
            "a double slash before the path",
            post("//v1/records/birth-registration", &json, valid.as_bytes()),
            404,
            "not-found",
        ),
        ("a trailing slash", post("/v1/records/birth-registration/", &json, valid.as_bytes()), 404, "not-found"),
        ("a type that is a schema path", post("/v1/records/common", &json, valid.as_bytes()), 404, "no-agreement"),
    ];
    for (what, request, status, slug) in corpus {
        let (got, body) = raw(addr, &request).await;
        assert_eq!(got, status, "{what}: {body}");
        let doc: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{what}: not a problem document: {body}"));
        assert_eq!(doc["type"], format!("urn:passerelle:problem:{slug}"), "{what}");
        assert!(!body.contains("passwd") || what.contains("traversal"), "{what}");
        // Still serving.
        let ok = gw.client.get("/v1/agreements", gw.key("on-vital-stats")).await;
        assert_eq!(ok.status, StatusCode::OK, "after {what}");
    }
    assert_eq!(gw.count("records"), 0);
}

/// Request smuggling shapes are refused by the HTTP parser itself (hyper answers 400 and
/// closes), before any handler runs; the gateway keeps serving.
#[tokio::test]
async fn request_smuggling_shapes_are_refused() {
    let gw = Setup::new().start().await;
    let addr = gw.gateway.as_ref().unwrap().partner_addr;
    let auth = format!("authorization: Bearer {}\r\ncontent-type: application/json\r\n", gw.key("on-vital-stats"));
    let shapes: Vec<(&str, String)> = vec![
        (
            "Content-Length and Transfer-Encoding",
            format!(
                "POST /v1/records/birth-registration HTTP/1.1\r\nhost: x\r\n{auth}content-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/agreements HTTP/1.1\r\nhost: x\r\n\r\n"
            ),
        ),
        (
            "two different Content-Lengths",
            format!(
                "POST /v1/records/birth-registration HTTP/1.1\r\nhost: x\r\n{auth}content-length: 2\r\ncontent-length: 40\r\n\r\n{{}}"
            ),
        ),
        (
            "a Content-Length that is not a number",
            format!("POST /v1/records/birth-registration HTTP/1.1\r\nhost: x\r\n{auth}content-length: 2x\r\n\r\n{{}}"),
        ),
        (
            "an obsolete line folding",
            format!(
                "POST /v1/records/birth-registration HTTP/1.1\r\nhost: x\r\n{auth}x-folded: a\r\n b\r\ncontent-length: 2\r\n\r\n{{}}"
            ),
        ),
        (
            "a bad chunk size",
            format!(
                "POST /v1/records/birth-registration HTTP/1.1\r\nhost: x\r\n{auth}transfer-encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
            ),
        ),
    ];
    for (what, request) in shapes {
        let (status, body) = raw(addr, request.as_bytes()).await;
        assert!(status == 400 || status == 0, "{what}: {status} {body}");
        assert_eq!(
            gw.client.get("/v1/agreements", gw.key("on-vital-stats")).await.status,
            StatusCode::OK,
            "after {what}"
        );
    }
    assert_eq!(gw.count("records"), 0);
}

/// Held-out hostile requests: `Schema-Version: 01.1` was taken as 1.1.
#[tokio::test]
async fn a_schema_version_with_leading_zeros_is_refused_not_read_as_another() {
    let gw = Setup::new().start().await;
    let addr = gw.gateway.as_ref().unwrap().partner_addr;
    let json = format!("authorization: Bearer {}\r\ncontent-type: application/json\r\n", gw.key("on-vital-stats"));
    let valid = record("birth-registration-1.1.json").to_string();
    for version in ["01.1", "1.01", "001.1", " 1.1x", "1.", ".1", "+1.1"] {
        let request =
            post("/v1/records/birth-registration", &format!("{json}schema-version: {version}\r\n"), valid.as_bytes());
        let (status, body) = raw(addr, &request).await;
        assert_eq!(status, 400, "{version:?}: {body}");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["type"], "urn:passerelle:problem:invalid-header", "{version:?}");
        assert_eq!(doc["header"], "Schema-Version");
    }
    assert_eq!(gw.count("records"), 0);
    // The canonical spelling is accepted.
    let request = post("/v1/records/birth-registration", &format!("{json}schema-version: 1.1\r\n"), valid.as_bytes());
    assert_eq!(raw(addr, &request).await.0, 202);
}

/// Held-out hostile requests: with two `Schema-Version` or two `Idempotency-Key` headers the
/// gateway silently used one of them.
#[tokio::test]
async fn a_repeated_schema_version_or_idempotency_key_is_refused() {
    let gw = Setup::new().start().await;
    let addr = gw.gateway.as_ref().unwrap().partner_addr;
    let json = format!("authorization: Bearer {}\r\ncontent-type: application/json\r\n", gw.key("on-vital-stats"));
    let valid = record("birth-registration-1.1.json").to_string();
    let birth = "/v1/records/birth-registration";
    let twice = post(birth, &format!("{json}schema-version: 1.1\r\nschema-version: 1.0\r\n"), valid.as_bytes());
    let (status, body) = raw(addr, &twice).await;
    assert_eq!(status, 400, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["type"], "urn:passerelle:problem:invalid-header");
    assert_eq!(doc["header"], "Schema-Version");
    assert!(doc["detail"].as_str().unwrap().contains("once"), "{doc}");
    let twice = post(birth, &format!("{json}idempotency-key: a\r\nidempotency-key: b\r\n"), valid.as_bytes());
    let (status, body) = raw(addr, &twice).await;
    assert_eq!(status, 400, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["type"], "urn:passerelle:problem:invalid-idempotency-key");
    // Also as one comma-joined header, a list is not a key a client meant.
    assert_eq!(gw.count("records"), 0);
}

/// Held-out hostile requests: an HTTP/1.1 request without `Host` was answered 200; RFC 9112
/// §3.2 requires 400. HTTP/1.0 has no such rule.
#[tokio::test]
async fn an_http11_request_without_host_is_400_on_both_listeners() {
    let gw = Setup::new().start().await;
    let partner = gw.gateway.as_ref().unwrap().partner_addr;
    let admin = gw.gateway.as_ref().unwrap().admin_addr;
    let auth = format!("authorization: Bearer {}\r\n", gw.key("on-vital-stats"));
    for (addr, request) in [
        (partner, format!("GET /v1/agreements HTTP/1.1\r\n{auth}\r\n")),
        (partner, format!("GET /v1/agreements HTTP/1.1\r\nhost: a\r\nhost: b\r\n{auth}\r\n")),
        (admin, "GET /healthz HTTP/1.1\r\n\r\n".to_owned()),
        (admin, "GET /admin/v1/overview HTTP/1.1\r\nauthorization: Bearer test-admin-token\r\n\r\n".to_owned()),
    ] {
        let (status, body) = raw(addr, request.as_bytes()).await;
        assert_eq!(status, 400, "{request}: {body}");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["type"], "urn:passerelle:problem:invalid-header");
        assert_eq!(doc["header"], "Host");
    }
    let (status, _) = raw(partner, format!("GET /v1/agreements HTTP/1.0\r\n{auth}\r\n").as_bytes()).await;
    assert_eq!(status, 200, "HTTP/1.0 needs no Host");
}

/// Held-out hostile requests: a control character in `Authorization` or `Idempotency-Key`. HTTP
/// forbids control characters other than a tab in a header value (RFC 9110 §5.5): hyper's
/// parser refuses such a request with a bare 400 and closes, before any handler runs, so the
/// gateway never sees it (nor a value it could echo). What does reach the gateway (a tab, bytes
/// above 0x7F) gets a problem document.
#[tokio::test]
async fn a_control_character_in_a_credential_or_key_is_refused_with_a_problem_where_the_gateway_sees_it() {
    let gw = Setup::new().start().await;
    let addr = gw.gateway.as_ref().unwrap().partner_addr;
    let valid = record("birth-registration-1.1.json").to_string();
    let with = |name: &str, byte: u8| {
        let mut headers = b"content-type: application/json\r\n".to_vec();
        if name == "idempotency-key" {
            headers.extend_from_slice(format!("authorization: Bearer {}\r\n", gw.key("on-vital-stats")).as_bytes());
            headers.extend_from_slice(b"idempotency-key: ab");
        } else {
            headers.extend_from_slice(format!("authorization: Bearer {}", gw.key("on-vital-stats")).as_bytes());
        }
        headers.push(byte);
        headers.extend_from_slice(b"cd\r\n");
        post("/v1/records/birth-registration", &String::from_utf8_lossy(&headers), valid.as_bytes())
            .into_iter()
            .collect::<Vec<u8>>()
    };
    for byte in [0x01u8, 0x08, 0x0b, 0x1f, 0x7f] {
        for name in ["authorization", "idempotency-key"] {
            let (status, body) = raw(addr, &with(name, byte)).await;
            assert_eq!((status, body.as_str()), (400, ""), "{byte:#04x} in {name}: refused by the HTTP parser");
        }
    }
    for (byte, name, status, slug) in
        [(b'\t', "authorization", 401, "unauthenticated"), (b'\t', "idempotency-key", 400, "invalid-idempotency-key")]
    {
        let (got, body) = raw(addr, &with(name, byte)).await;
        assert_eq!(got, status, "{byte:#04x} in {name}: {body}");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["type"], format!("urn:passerelle:problem:{slug}"));
    }
    assert_eq!(gw.count("records"), 0);
}
