//! A small HTTP client for the gateway's listeners: plain HTTP/1.1 or TLS (HTTP/1.1 or HTTP/2),
//! the requests it sends, built step by step, and the answers it reads.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// An answer from the gateway.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    /// The whole answer, or `None` if its body could not be read to the end.
    async fn read(response: http::Response<hyper::body::Incoming>) -> Option<TestResponse> {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some(TestResponse { status, headers, body })
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// Asserts a problem document of `slug` with `status`, and returns it.
    pub fn problem(&self, status: u16, slug: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        assert_eq!(self.header("content-type"), Some("application/problem+json"));
        let doc = self.json();
        assert_eq!(doc["type"], format!("urn:passerelle:problem:{slug}"), "{doc}");
        assert_eq!(doc["status"], status);
        assert!(doc["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(doc["detail"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(doc["instance"].as_str().is_some());
        doc
    }
}

/// An HTTP client bound to one base URL: plain HTTP/1.1, or TLS with a CA and optionally a
/// client certificate.
#[derive(Clone)]
pub struct TestClient {
    pub base: String,
    http: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl TestClient {
    pub fn new(base: String) -> TestClient {
        Self::build(base, passerelle::tls::plain_client(), false, None)
    }

    /// A TLS client trusting `ca_pem`, presenting `client` (certificate and key PEM) if given.
    pub fn tls(base: String, ca_pem: &str, client: Option<(&str, &str)>, http2: bool) -> TestClient {
        Self::build(base, tls_config(ca_pem, client), http2, None)
    }

    /// An HTTP/1.1 client with its own TLS configuration.
    pub fn with_tls(base: String, tls: std::sync::Arc<rustls::ClientConfig>) -> TestClient {
        Self::build(base, tls, false, None)
    }

    /// A plain client whose connections leave from `local` (a loopback address such as 127.0.0.2).
    pub fn from_address(base: String, local: std::net::IpAddr) -> TestClient {
        Self::build(base, passerelle::tls::plain_client(), false, Some(local))
    }

    fn build(
        base: String,
        tls: std::sync::Arc<rustls::ClientConfig>,
        http2: bool,
        local: Option<std::net::IpAddr>,
    ) -> TestClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_local_address(local);
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config((*tls).clone()).https_or_http();
        let connector = if http2 {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        };
        let mut client = HyperClient::builder(TokioExecutor::new());
        client.http2_only(http2);
        TestClient { base, http: client.build(connector) }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> TestResponse {
        let response = tokio::time::timeout(
            Duration::from_secs(30),
            self.http.request(self.http_request(method, path, headers, body)),
        )
        .await
        .expect("the gateway answered within 30 s")
        .expect("the request reached the gateway");
        TestResponse::read(response).await.expect("the answer's body was read")
    }

    /// Like [`TestClient::send`], but a connection failure is `None` instead of a panic.
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Option<TestResponse> {
        let response = self.http.request(self.http_request(method, path, headers, body)).await.ok()?;
        TestResponse::read(response).await
    }

    fn http_request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Request<Full<Bytes>> {
        let request = Request::builder().method(method).uri(format!("{}{path}", self.base));
        let request = headers.iter().fold(request, |request, (name, value)| request.header(*name, *value));
        request.body(Full::new(body.into())).unwrap()
    }

    /// GET with a partner's key.
    pub async fn get(&self, path: &str, key: &str) -> TestResponse {
        self.send(Method::GET, path, &[("authorization", &format!("Bearer {key}"))], "").await
    }

    /// A request to build, then send (see [`TestRequest`]).
    pub fn request(&self, method: Method, path: &str) -> TestRequest {
        TestRequest { client: self.clone(), method, path: path.to_owned(), headers: Vec::new(), body: Bytes::new() }
    }

    /// `POST path`, to build, then send.
    pub fn post(&self, path: &str) -> TestRequest {
        self.request(Method::POST, path)
    }
}

/// A request built step by step, then sent:
/// `gw.post_as("on-vital-stats", BIRTH).header("schema-version", "1.0").json(&record).send().await`.
/// It owns what it needs, so it can be built in one task and sent from another.
#[must_use = "a request does nothing until it is sent"]
pub struct TestRequest {
    client: TestClient,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl TestRequest {
    /// Authenticates with `key` as a bearer token (a partner's API key or the admin token).
    pub fn bearer(self, key: &str) -> Self {
        self.header("authorization", &format!("Bearer {key}"))
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn headers(self, headers: &[(&str, &str)]) -> Self {
        headers.iter().fold(self, |request, (name, value)| request.header(name, value))
    }

    /// `body`, serialised, as `application/json`.
    pub fn json(self, body: &Value) -> Self {
        self.json_bytes(body.to_string())
    }

    /// `bytes` exactly as given (malformed JSON included), as `application/json`.
    pub fn json_bytes(self, bytes: impl Into<Bytes>) -> Self {
        self.header("content-type", "application/json").body(bytes)
    }

    /// `bytes` exactly as given, with no content type but one a header sets.
    pub fn body(mut self, bytes: impl Into<Bytes>) -> Self {
        self.body = bytes.into();
        self
    }

    pub async fn send(self) -> TestResponse {
        let headers: Vec<(&str, &str)> = self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.client.send(self.method, &self.path, &headers, self.body).await
    }

    /// Like [`TestRequest::send`], but a connection failure is `None` instead of a panic.
    pub async fn try_send(self) -> Option<TestResponse> {
        let headers: Vec<(&str, &str)> = self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.client.try_send(self.method, &self.path, &headers, self.body).await
    }
}

/// A rustls client configuration trusting `ca_pem`, with an optional client certificate.
pub fn tls_config(ca_pem: &str, client: Option<(&str, &str)>) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(passerelle::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes()).map(Result::unwrap).collect(),
                rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    std::sync::Arc::new(config)
}
