//! Mock recipient systems: real HTTP servers on 127.0.0.1 that record what they receive, and
//! the check that what a recipient received is what its view (the JSON Schema the gateway
//! serves it of what it receives) says it receives.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// One request a recipient received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The names in the client certificate the gateway presented (TLS mocks only).
    pub client_names: Vec<String>,
    /// The HTTP version the request came in.
    pub version: http::Version,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("recipient received JSON")
    }
    /// The agreement and the schema (`type/version`) the gateway sent this body under.
    pub fn delivered_as(&self) -> (String, String) {
        let header = |name| self.header(name).unwrap_or_else(|| panic!("no {name} header")).to_owned();
        (header("passerelle-agreement"), header("passerelle-schema"))
    }
}

impl super::TestGateway {
    /// The view `partner` reads, with its own key, of what it receives under `agreement` in
    /// `schema` (`type/version`): `GET /v1/schemas/{type}/{version}/views/{agreement}`.
    pub async fn view(&self, partner: &str, agreement: &str, schema: &str) -> serde_json::Value {
        let path = format!("/v1/schemas/{schema}/views/{agreement}");
        let r = self.client.get(&path, self.key(partner)).await;
        assert_eq!(r.status, StatusCode::OK, "{partner}: GET {path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/schema+json"));
        r.json()
    }

    /// Asserts that `body`, delivered to `partner` under `agreement` in `schema`, is valid under
    /// the view the gateway serves `partner` (formats checked too).
    pub async fn assert_in_view(&self, partner: &str, agreement: &str, schema: &str, body: &serde_json::Value) {
        let view = self.view(partner, agreement, schema).await;
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&view)
            .unwrap_or_else(|e| panic!("the view of {agreement} {schema} for {partner} compiles: {e}"));
        let errors: Vec<String> =
            validator.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(
            errors.is_empty(),
            "{partner} received under {agreement} {schema} a body its view refuses: {errors:?}\n{body}"
        );
    }

    /// Asserts that every body `partner`'s mock has received is valid under its view, and
    /// returns how many it checked.
    pub async fn assert_received_in_view(&self, partner: &str) -> usize {
        let received = self.recipient(partner).received();
        for r in &received {
            let (agreement, schema) = r.delivered_as();
            self.assert_in_view(partner, &agreement, &schema, &r.json()).await;
        }
        received.len()
    }
}

/// What the mock answers.
#[derive(Debug, Clone)]
struct Behaviour {
    /// Answers to give first, in order, before `then`.
    script: VecDeque<(u16, Option<&'static str>)>,
    status: u16,
    delay: Duration,
    /// Extra header on every answer.
    header: Option<(&'static str, String)>,
    body: Bytes,
    /// Statuses to answer the records of batches with, one per record in the order they come,
    /// before 200 (a batch answered 2xx as a whole only).
    per_record: VecDeque<u16>,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    /// Accepted requests by Idempotency-Key, to count duplicates the way a real recipient would.
    seen_keys: HashMap<String, usize>,
    duplicates: usize,
    /// TCP connections accepted.
    connections: usize,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: usize,
    most_in_flight: usize,
}

/// A recipient system that records every request and answers as told.
#[derive(Clone)]
pub struct MockRecipient {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    behaviour: Arc<Mutex<Behaviour>>,
    notify: Arc<tokio::sync::Notify>,
}

impl MockRecipient {
    /// Starts a recipient that answers 200.
    pub async fn start() -> MockRecipient {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener)
    }

    /// Starts an HTTPS recipient with `cert`/`key` (PEM), asking the gateway for a client
    /// certificate issued by `client_ca` when given.
    pub async fn start_tls(cert: &str, key: &str, client_ca: Option<&str>) -> MockRecipient {
        Self::start_tls_offering(cert, key, client_ca, &[b"h2", b"http/1.1"]).await
    }

    /// Starts an HTTPS recipient with `cert`/`key` (PEM) that offers only HTTP/1.1.
    pub async fn start_tls_http1(cert: &str, key: &str) -> MockRecipient {
        Self::start_tls_offering(cert, key, None, &[b"http/1.1"]).await
    }

    /// Starts an HTTPS recipient offering the ALPN `protocols`.
    async fn start_tls_offering(cert: &str, key: &str, client_ca: Option<&str>, protocols: &[&[u8]]) -> MockRecipient {
        use rustls_pki_types::pem::PemObject;
        let chain = rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes()).map(Result::unwrap).collect();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(passerelle::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
                    roots.add(c.unwrap()).unwrap();
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    passerelle::tls::provider(),
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve_with(listener, Some(Arc::new(config)))
    }

    /// Starts a recipient on a given listener (to bring one "back" on the same port).
    pub fn serve(listener: TcpListener) -> MockRecipient {
        Self::serve_with(listener, None)
    }

    fn serve_with(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> MockRecipient {
        let mock = MockRecipient {
            addr: listener.local_addr().unwrap(),
            state: Arc::default(),
            behaviour: Arc::new(Mutex::new(Behaviour {
                script: VecDeque::new(),
                status: 200,
                delay: Duration::ZERO,
                header: None,
                body: Bytes::from_static(b"{}"),
                per_record: VecDeque::new(),
            })),
            notify: Arc::default(),
        };
        let m = mock.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                m.state.lock().unwrap().connections += 1;
                let (m, tls) = (m.clone(), tls.clone());
                tokio::spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let service = service_fn(move |req| {
                                let m = m.clone();
                                async move { Ok::<_, Infallible>(m.answer(req, Vec::new()).await) }
                            });
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(config) => {
                            let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(stream).await else {
                                return;
                            };
                            let names = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(passerelle::tls::identity)
                                .map(|i| i.names)
                                .unwrap_or_default();
                            let service = service_fn(move |req| {
                                let (m, names) = (m.clone(), names.clone());
                                async move { Ok::<_, Infallible>(m.answer(req, names).await) }
                            });
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        mock
    }

    /// The base URL to configure as the partner's delivery endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}/inbox", self.addr)
    }

    /// The HTTPS base URL (for mocks started with [`MockRecipient::start_tls`]).
    pub fn https_endpoint(&self) -> String {
        format!("https://localhost:{}/inbox", self.addr.port())
    }

    /// Answer `status` the next `times` requests, then as before.
    pub fn fail_times(&self, times: usize, status: u16) -> &Self {
        let mut b = self.behaviour.lock().unwrap();
        for _ in 0..times {
            b.script.push_back((status, None));
        }
        self
    }

    /// Answer `status` from now on.
    pub fn respond(&self, status: u16) -> &Self {
        self.behaviour.lock().unwrap().status = status;
        self
    }

    /// Answer `status` with `body` from now on.
    pub fn respond_with(&self, status: u16, body: &str) -> &Self {
        let mut b = self.behaviour.lock().unwrap();
        b.status = status;
        b.body = Bytes::from(body.to_owned());
        self
    }

    /// The most requests it was answering at once.
    pub fn most_in_flight(&self) -> usize {
        self.state.lock().unwrap().most_in_flight
    }

    /// Wait this long before answering.
    pub fn delay(&self, delay: Duration) -> &Self {
        self.behaviour.lock().unwrap().delay = delay;
        self
    }

    /// Answer the next records of batches with `statuses`, one per record, then 200.
    pub fn answer_records(&self, statuses: &[u16]) -> &Self {
        self.behaviour.lock().unwrap().per_record.extend(statuses);
        self
    }

    /// Add a header to every answer.
    pub fn with_header(&self, name: &'static str, value: &str) -> &Self {
        self.behaviour.lock().unwrap().header = Some((name, value.to_owned()));
        self
    }

    async fn answer(&self, req: Request<Incoming>, client_names: Vec<String>) -> Response<Full<Bytes>> {
        {
            let mut s = self.state.lock().unwrap();
            s.in_flight += 1;
            s.most_in_flight = s.most_in_flight.max(s.in_flight);
        }
        let (delay, status, header, mut answer) = {
            let mut b = self.behaviour.lock().unwrap();
            let status = b.script.pop_front().map(|(s, _)| s).unwrap_or(b.status);
            (b.delay, status, b.header.clone(), b.body.clone())
        };
        let path = req.uri().path().to_owned();
        let version = req.version();
        let headers = req.headers().clone();
        let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        let batch = headers.get("content-type").is_some_and(|t| t == passerelle::delivery::batch::CONTENT_TYPE);
        if batch && (200..300).contains(&status) {
            answer = self.answer_batch(&body);
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        {
            let mut s = self.state.lock().unwrap();
            let received = Received { path, headers, body, client_names, version };
            if (200..300).contains(&status)
                && let Some(key) = received.header("idempotency-key").map(str::to_owned)
            {
                let count = s.seen_keys.entry(key).or_default();
                *count += 1;
                if *count > 1 {
                    s.duplicates += 1;
                }
            }
            s.received.push(received);
            s.in_flight -= 1;
        }
        self.notify.notify_waiters();
        let mut response = Response::new(Full::new(answer));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        if let Some((name, value)) = header {
            response.headers_mut().insert(name, value.parse().unwrap());
        }
        response
    }

    /// The per-record answer to a batch: each record's scripted status, or 200.
    fn answer_batch(&self, body: &[u8]) -> Bytes {
        let batch: serde_json::Value = serde_json::from_slice(body).expect("a batch is JSON");
        let mut b = self.behaviour.lock().unwrap();
        let results: Vec<serde_json::Value> = batch["records"]
            .as_array()
            .expect("a batch has records")
            .iter()
            .map(|r| {
                let status = b.per_record.pop_front().unwrap_or(200);
                serde_json::json!({"idempotency_key": r["idempotency_key"], "status": status})
            })
            .collect();
        Bytes::from(serde_json::json!({ "results": results }).to_string())
    }

    /// Every request received so far, answered or not.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// Requests that repeated an Idempotency-Key this mock had already accepted.
    pub fn duplicates(&self) -> usize {
        self.state.lock().unwrap().duplicates
    }

    /// Waits until `count` requests have arrived, or panics after `timeout`.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let n = self.received().len();
                panic!("recipient {} got {n} of {count} requests within {timeout:?}", self.addr);
            }
        }
    }
}
