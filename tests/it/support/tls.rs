//! A gateway behind real TLS on loopback: a partner CA made in the test, a server certificate
//! for localhost, and clients that trust it.

use passerelle::pki::{Authority, Issued};

use super::{Setup, TestClient, TestGateway};

/// A partner CA, a server certificate for localhost, and the files the gateway reads.
pub struct Pki {
    pub ca: Authority,
    /// The CA certificate, PEM.
    pub ca_file: String,
    /// A client certificate for on-vital-stats that the CRL revokes.
    pub revoked: Issued,
}

/// Writes a PKI beside `setup`'s configuration; returns it and the `[tls]` lines that use it.
pub fn pki(setup: &Setup) -> (Pki, Vec<String>) {
    let ca = Authority::new("Test partner CA").unwrap();
    let server = ca.server(&["localhost", "127.0.0.1"]).unwrap();
    let revoked = ca.client_now("on-vital-stats").unwrap();
    let dir = setup.dir.path();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let ca_file = write("ca.pem", &ca.cert_pem);
    let lines = vec![
        format!("cert_file = \"{}\"", write("server.pem", &server.cert_pem)),
        format!("key_file = \"{}\"", write("server-key.pem", &server.key_pem)),
        format!("client_ca_files = [\"{ca_file}\"]"),
        format!("crl_files = [\"{}\"]", write("crl.pem", &ca.crl(&[&revoked.serial]).unwrap())),
    ];
    (Pki { ca, ca_file: std::fs::read_to_string(&ca_file).unwrap(), revoked }, lines)
}

/// A gateway on the setup `edit` makes, with the partner listener on TLS.
pub async fn tls_gateway(edit: impl FnOnce(Setup) -> Setup) -> (TestGateway, Pki) {
    let setup = edit(Setup::new());
    let (pki, lines) = pki(&setup);
    let setup = lines.iter().fold(setup, |s, l| s.tls(l));
    (setup.start().await, pki)
}

/// An HTTP/1.1 client of the TLS gateway presenting `cert`, if given.
pub fn client(gw: &TestGateway, pki: &Pki, cert: Option<&Issued>) -> TestClient {
    TestClient::tls(base(gw), &pki.ca_file, cert.map(|c| (c.cert_pem.as_str(), c.key_pem.as_str())), false)
}

/// An HTTP/2 client (ALPN `h2`) of the TLS gateway, with no client certificate.
pub fn h2_client(gw: &TestGateway, pki: &Pki) -> TestClient {
    TestClient::tls(base(gw), &pki.ca_file, None, true)
}

/// `https://localhost:<port>` of the partner listener.
pub fn base(gw: &TestGateway) -> String {
    format!("https://localhost:{}", gw.gateway.as_ref().unwrap().partner_addr.port())
}
