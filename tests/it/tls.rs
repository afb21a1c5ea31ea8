//! Mutual TLS: partner identity from client certificates made in the test, every way a
//! certificate can be wrong refused at the right layer and counted, a TLS-terminating proxy's
//! forwarded certificate believed only from the proxy, and TLS to recipients.

use std::collections::HashMap;
use std::time::Duration;

use http::{Method, StatusCode};
use passerelle::pki::{Authority, Issued};

use crate::support::tls::{self, *};
use time::OffsetDateTime;

use crate::support::*;

const BIRTH: &str = "/v1/records/birth-registration";

async fn post(client: &TestClient, extra: &[(&str, &str)]) -> Option<TestResponse> {
    client.post(BIRTH).headers(extra).json(&record("birth-registration-1.1.json")).try_send().await
}

async fn handshake_failures(gw: &TestGateway, reason: &str) -> f64 {
    metric(&gw.metrics().await, "passerelle_tls_handshake_failures_total", &[("reason", reason)])
}

#[tokio::test]
async fn a_partner_certificate_is_enough_to_send() {
    let (gw, pki) = tls_gateway(|s| s).await;
    let cert = pki.ca.client_now("on-vital-stats").unwrap();
    let r = post(&client(&gw, &pki, Some(&cert)), &[]).await.expect("the handshake succeeds");
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.json()["sender"], "on-vital-stats");
    // HTTP/2 is offered by ALPN.
    let port = gw.gateway.as_ref().unwrap().partner_addr.port();
    let h2 =
        TestClient::tls(format!("https://localhost:{port}"), &pki.ca_file, Some((&cert.cert_pem, &cert.key_pem)), true);
    let r = h2.send(Method::GET, "/v1/agreements", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn no_certificate_and_no_key_is_a_401_problem_not_a_failed_handshake() {
    let (gw, pki) = tls_gateway(|s| s).await;
    let r = post(&client(&gw, &pki, None), &[]).await.expect("the handshake succeeds without a certificate");
    r.problem(401, "unauthenticated");
    // An API key still works over TLS.
    let key = format!("Bearer {}", gw.key("on-vital-stats"));
    let r = post(&client(&gw, &pki, None), &[("authorization", &key)]).await.unwrap();
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // Plain HTTP on the TLS port is refused at the TLS layer.
    let plain = TestClient::new(format!("http://{}", gw.gateway.as_ref().unwrap().partner_addr));
    assert!(plain.try_send(Method::GET, "/v1/agreements", &[], "").await.is_none());
    assert!(handshake_failures(&gw, "protocol").await >= 1.0);
}

#[tokio::test]
async fn a_certificate_for_partner_a_cannot_act_as_partner_b() {
    let (gw, pki) = tls_gateway(|s| s).await;
    let a = pki.ca.client_now("on-vital-stats").unwrap();
    let client_a = client(&gw, &pki, Some(&a));
    // B's API key beside A's certificate: refused, not resolved either way.
    let b_key = format!("Bearer {}", gw.key("nt-vital-stats"));
    post(&client_a, &[("authorization", &b_key)]).await.unwrap().problem(401, "unauthenticated");
    // Headers that name B are not identity.
    let r = post(&client_a, &[("passerelle-sender", "nt-vital-stats"), ("x-partner", "nt-vital-stats")]).await.unwrap();
    assert_eq!(r.json()["sender"], "on-vital-stats");
    // B's record is not A's to read.
    let b = pki.ca.client_now("nt-vital-stats").unwrap();
    let b = post(&client(&gw, &pki, Some(&b)), &[]).await.unwrap();
    let b_id = b.json()["record_id"].as_str().unwrap().to_owned();
    client_a.send(Method::GET, &format!("/v1/records/{b_id}"), &[], "").await.problem(404, "record-not-found");
    // A certificate from the partner CA whose names map to no partner.
    let stranger = pki.ca.client_now("yt-vital-stats").unwrap();
    post(&client(&gw, &pki, Some(&stranger)), &[]).await.unwrap().problem(401, "unauthenticated");
    let page = gw.metrics().await;
    assert_eq!(metric(&page, "passerelle_records_received_total", &[("outcome", "unauthenticated")]), 2.0);
}

#[tokio::test]
async fn names_and_pins_rotate_without_downtime() {
    // A pinned key whose certificate names no partner, and a second name, both for one partner.
    let (gw, pki) = tls_gateway(|s| s).await;
    let pinned = pki.ca.client_now("rotation-2027").unwrap();
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(pinned.cert_pem.as_bytes()).unwrap();
    let pin = passerelle::tls::identity(&der).unwrap().spki_sha256;
    let setup = gw.stop().await;
    let hex: String = pin.iter().map(|b| format!("{b:02x}")).collect();
    let setup = setup.edit_partners(
        "cert_names = [\"nt-vital-stats\"]",
        &format!("cert_names = [\"nt-vital-stats\", \"nt-vital-stats-2027\"]\ncert_spki_sha256 = [\"{hex}\"]"),
    );
    let recipients: HashMap<_, _> = HashMap::new();
    let gw = setup.start_with(recipients).await;
    for cert in
        [pki.ca.client_now("nt-vital-stats").unwrap(), pki.ca.client_now("nt-vital-stats-2027").unwrap(), pinned]
    {
        let r = post(&client(&gw, &pki, Some(&cert)), &[]).await.unwrap();
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        assert_eq!(r.json()["sender"], "nt-vital-stats");
    }
}

#[tokio::test]
async fn a_forwarded_certificate_is_believed_only_from_a_trusted_proxy() {
    let setup = Setup::new();
    let ca = Authority::new("Proxy partner CA").unwrap();
    let ca_file = setup.dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem).unwrap();
    let gw = setup
        .tls("insecure_plaintext = true")
        .tls("trusted_proxies = [\"127.0.0.2\"]")
        .tls("client_cert_header = \"x-forwarded-client-cert\"")
        .tls(&format!("client_ca_files = [\"{}\"]", ca_file.display()))
        .start()
        .await;
    let cert = ca.client_now("on-vital-stats").unwrap();
    let escaped: String = cert
        .cert_pem
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let base = format!("http://{}", gw.gateway.as_ref().unwrap().partner_addr);
    let body = record("birth-registration-1.1.json");
    let forwarding =
        |client: &TestClient, cert: &str| client.post(BIRTH).header("x-forwarded-client-cert", cert).json(&body).send();
    // From the proxy's address: the certificate is the caller's identity.
    let proxy = TestClient::from_address(base.clone(), "127.0.0.2".parse().unwrap());
    let r = forwarding(&proxy, &escaped).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.json()["sender"], "on-vital-stats");
    // From anyone else: the header is ignored.
    let other = TestClient::from_address(base.clone(), "127.0.0.3".parse().unwrap());
    forwarding(&other, &escaped).await.problem(401, "unauthenticated");
    // A forwarded certificate from another CA is refused even from the proxy.
    let forged = Authority::new("Forger").unwrap().client_now("on-vital-stats").unwrap();
    let forged: String = forged
        .cert_pem
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    forwarding(&proxy, &forged).await.problem(401, "unauthenticated");
    assert_eq!(gw.count("records"), 1);
}

#[tokio::test]
async fn recipients_are_reached_over_verified_tls_with_the_gateways_certificate_and_token() {
    let recipient_ca = Authority::new("Recipient CA").unwrap();
    let server = recipient_ca.server(&["localhost"]).unwrap();
    let gateway_ca = Authority::new("Gateway client CA").unwrap();
    let gateway_cert = gateway_ca.client_now("passerelle-gateway").unwrap();
    let tls_recipient = MockRecipient::start_tls(&server.cert_pem, &server.key_pem, Some(&gateway_ca.cert_pem)).await;
    // An HTTPS endpoint whose certificate is from a CA the gateway was not told to trust.
    let impostor_ca = Authority::new("Impostor CA").unwrap();
    let impostor_cert = impostor_ca.server(&["localhost"]).unwrap();
    let impostor = MockRecipient::start_tls(&impostor_cert.cert_pem, &impostor_cert.key_pem, None).await;

    let setup = Setup::new();
    let dir = setup.dir.path().to_owned();
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).unwrap();
        dir.join(name).display().to_string()
    };
    let ca = write("recipient-ca.pem", &recipient_ca.cert_pem);
    let cert = write("gateway.pem", &gateway_cert.cert_pem);
    let key = write("gateway-key.pem", &gateway_cert.key_pem);
    let setup = setup
        .delivery(&format!("ca_files = [\"{ca}\"]"))
        .delivery(&format!("client_cert_file = \"{cert}\""))
        .delivery(&format!("client_key_file = \"{key}\""))
        .delivery("breaker_failures = 100")
        .edit_partners(
            "endpoint = \"http://127.0.0.1:18103/inbox\"",
            "endpoint = \"http://127.0.0.1:18103/inbox\"\nbearer_token_env = \"PASSERELLE_TEST_OHIP_TOKEN\"",
        );
    let mut endpoints = HashMap::new();
    endpoints.insert("on-health-plan".to_owned(), tls_recipient.https_endpoint());
    endpoints.insert("ottawa-city".to_owned(), impostor.https_endpoint());
    setup.write(&endpoints);
    // The token comes from the gateway's environment: run the real binary with it.
    let gateway = ChildGateway::spawn(&setup.main_config(), &[("PASSERELLE_TEST_OHIP_TOKEN", "s3cr3t-token")]).await;
    let r = gateway
        .client
        .post(BIRTH)
        .bearer(&setup.keys["on-vital-stats"])
        .json(&record("birth-registration-1.1.json"))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let got = tls_recipient.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].header("authorization"), Some("Bearer s3cr3t-token"));
    assert!(got[0].client_names.contains(&"passerelle-gateway".to_owned()), "the gateway presented its certificate");
    // The impostor's certificate is not trusted: nothing reaches it, and the delivery retries.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(impostor.received().is_empty());
    let logs = gateway.logs.lock().unwrap().join("\n");
    assert!(logs.contains("the recipient's certificate is not accepted"), "{logs}");
    assert!(!logs.contains("s3cr3t-token"), "the token is never logged");
    // The gateway's private key was written by the test with mode 644: it says so at start.
    assert!(
        logs.contains("A secret file is readable by others than its owner") && logs.contains("gateway-key.pem"),
        "{logs}"
    );
    gateway.terminate();
}

#[tokio::test]
async fn a_new_crl_takes_effect_on_reload_and_a_broken_configuration_is_refused() {
    let (gw, pki) = tls_gateway(|s| s).await;
    let cert = pki.ca.client_now("on-vital-stats").unwrap();
    assert_eq!(post(&client(&gw, &pki, Some(&cert)), &[]).await.unwrap().status, StatusCode::ACCEPTED);
    // Revoke it in the CRL file the configuration names, then reload.
    let crl = pki.ca.crl(&[&pki.revoked.serial, &cert.serial]).unwrap();
    std::fs::write(gw.setup.dir.path().join("crl.pem"), crl).unwrap();
    let token = [("authorization", "Bearer test-admin-token")];
    let r = gw.admin.send(Method::POST, "/admin/v1/reload", &token, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(post(&client(&gw, &pki, Some(&cert)), &[]).await.is_none_or(|r| r.status != StatusCode::ACCEPTED));
    assert_eq!(handshake_failures(&gw, "revoked").await, 1.0);
    // A configuration that fails its checks is refused; the one in force stays.
    let partners = gw.setup.config_dir().join("partners.toml");
    let good = std::fs::read_to_string(&partners).unwrap();
    std::fs::write(&partners, good.replace("jurisdiction = \"federal\"", "jurisdiction = \"imperial\"")).unwrap();
    let r = gw.admin.send(Method::POST, "/admin/v1/reload", &token, "").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().contains("imperial"), "{}", r.text());
    let other = pki.ca.client_now("on-vital-stats").unwrap();
    assert_eq!(post(&client(&gw, &pki, Some(&other)), &[]).await.unwrap().status, StatusCode::ACCEPTED);
    let page = gw.metrics().await;
    assert_eq!(metric(&page, "passerelle_config_reloads_total", &[("outcome", "applied")]), 1.0);
    assert_eq!(metric(&page, "passerelle_config_reloads_total", &[("outcome", "refused")]), 1.0);
    assert_eq!(gw.audited("config.loaded", |e| e.outcome == "reloaded").await, 1);
}

/// What one handshake failure added to `passerelle_tls_handshake_failures_total`: every reason
/// that went up, by how much.
async fn counted(gw: &TestGateway, provoke: impl std::future::Future<Output = ()>) -> Vec<(String, f64)> {
    let before = gw.metrics().await;
    provoke.await;
    // The failure is counted when the gateway's side of the handshake ends.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = gw.metrics().await;
    let series = |page: &str| -> Vec<(String, f64)> {
        page.lines()
            .filter_map(|l| l.strip_prefix("passerelle_tls_handshake_failures_total{reason=\""))
            .filter_map(|l| l.split_once("\"} "))
            .map(|(reason, v)| (reason.to_owned(), v.parse().unwrap()))
            .collect()
    };
    let before = series(&before);
    series(&after)
        .into_iter()
        .map(|(reason, v)| {
            let was = before.iter().find(|(r, _)| *r == reason).map_or(0.0, |(_, v)| *v);
            (reason, v - was)
        })
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

/// A way to make one handshake fail.
type Provocation = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// A TLS client presenting `chain` (DER) with `key`, trusting `pki`'s CA.
fn der_client(gw: &TestGateway, pki: &Pki, chain: Vec<Vec<u8>>, key: &str) -> TestClient {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pki.ca_file.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(passerelle::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            chain.into_iter().map(rustls_pki_types::CertificateDer::from).collect(),
            rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap();
    TestClient::with_tls(tls::base(gw), std::sync::Arc::new(config))
}

fn der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
}

/// Held-out hostile requests: the README named reasons the metric did not use. Each reason the
/// README's Security section names is provoked here and counted under exactly that name.
#[tokio::test]
async fn each_handshake_failure_is_counted_under_the_reason_the_readme_names() {
    let (gw, pki) = tls_gateway(|s| s.tls("handshake_timeout_ms = 300")).await;
    let addr = gw.gateway.as_ref().unwrap().partner_addr;
    let attempt = |client: TestClient| async move {
        assert!(post(&client, &[]).await.is_none_or(|r| r.status != StatusCode::ACCEPTED));
    };
    let long_ago = OffsetDateTime::now_utc() - time::Duration::days(400);
    let later = OffsetDateTime::now_utc() + time::Duration::days(30);
    let expired = pki.ca.client("on-vital-stats", long_ago, long_ago + time::Duration::days(30)).unwrap();
    let not_yet = pki.ca.client("on-vital-stats", later, later + time::Duration::days(30)).unwrap();
    let other_ca = Authority::new("Another CA").unwrap().client_now("on-vital-stats").unwrap();
    let own = Authority::new("on-vital-stats").unwrap();
    let ca_as_client = Issued { cert_pem: own.cert_pem.clone(), key_pem: own.key_pem.clone(), serial: vec![] };
    let good = pki.ca.client_now("on-vital-stats").unwrap();
    let mut forged = der(&good.cert_pem);
    let last = forged.len() - 1;
    forged[last] ^= 0x01; // the last byte of the signature
    let cases: Vec<(&str, Provocation)> = vec![
        ("expired", Box::pin(attempt(client(&gw, &pki, Some(&expired))))),
        ("not_yet_valid", Box::pin(attempt(client(&gw, &pki, Some(&not_yet))))),
        ("revoked", Box::pin(attempt(client(&gw, &pki, Some(&pki.revoked))))),
        ("unknown_issuer", Box::pin(attempt(client(&gw, &pki, Some(&other_ca))))),
        ("bad_signature", Box::pin(attempt(der_client(&gw, &pki, vec![forged], &good.key_pem)))),
        ("invalid_certificate", Box::pin(attempt(client(&gw, &pki, Some(&ca_as_client))))),
        // A client that does not trust the gateway's certificate ends the handshake with an alert.
        (
            "alert_received",
            Box::pin(attempt(TestClient::tls(
                tls::base(&gw),
                &Authority::new("Elsewhere").unwrap().cert_pem,
                None,
                false,
            ))),
        ),
        // A TLS 1.2 ClientHello offering only a suite the gateway does not speak (RSA key exchange).
        (
            "incompatible",
            Box::pin(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut hello = vec![0x01, 0x00, 0x00, 0x00, 0x03, 0x03];
                hello.extend_from_slice(&[7u8; 32]);
                hello.extend_from_slice(&[0x00, 0x00, 0x02, 0x00, 0x2f, 0x01, 0x00]);
                let length = (hello.len() - 4) as u32;
                hello[1..4].copy_from_slice(&length.to_be_bytes()[1..]);
                let mut record = vec![0x16, 0x03, 0x01];
                record.extend_from_slice(&(hello.len() as u16).to_be_bytes());
                record.extend_from_slice(&hello);
                let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                stream.write_all(&record).await.unwrap();
                let mut answer = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer)).await;
            }),
        ),
        ("protocol", Box::pin(attempt(TestClient::new(format!("http://{addr}"))))),
        (
            "timeout",
            Box::pin(async move {
                let _idle = tokio::net::TcpStream::connect(addr).await.unwrap();
                tokio::time::sleep(Duration::from_millis(600)).await;
            }),
        ),
        (
            "closed",
            Box::pin(async move {
                use tokio::io::AsyncWriteExt;
                let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                stream.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
                drop(stream);
            }),
        ),
    ];
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for (reason, provoke) in cases {
        assert_eq!(counted(&gw, provoke).await, vec![(reason.to_owned(), 1.0)], "{reason}");
        assert!(readme.contains(&format!("`{reason}`")), "the README names `{reason}`");
    }
    assert_eq!(gw.count("records"), 0);
}
