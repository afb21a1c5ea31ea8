//! The relying party's HTTP client: hyper-util over rustls (ring, as everywhere in the gateway),
//! plugged into `openidconnect` through its [`AsyncHttpClient`] trait, so no second HTTP stack
//! (reqwest) comes into the build.
//!
//! It talks only to the configured issuer's endpoints (discovery, JWKS, token), never follows a
//! redirect, caps every answer at [`MAX_ANSWER_BYTES`] and every exchange at [`TIMEOUT`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

/// The largest answer read from the issuer (a discovery document, a JWKS, a token response).
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// How long one exchange with the issuer may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to the issuer failed; never carries a token or a secret.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the request to the issuer could not be built")]
    Request,
    #[error("the issuer did not answer within {}s", TIMEOUT.as_secs())]
    Timeout,
    #[error("the issuer could not be reached: {0}")]
    Connect(String),
    #[error("the issuer's answer could not be read, or was over {MAX_ANSWER_BYTES} bytes")]
    Answer,
}

/// A pooled client to the issuer, trusting the roots it was built with.
#[derive(Clone)]
pub struct IssuerClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for IssuerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssuerClient")
    }
}

impl IssuerClient {
    /// A client verifying the issuer's certificate with `tls` (plain `http` URLs stay plain:
    /// the configuration allows them for a loopback issuer only).
    pub fn new(tls: &Arc<rustls::ClientConfig>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(TIMEOUT));
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((**tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        // A handful of idle connections: sign-ins are rare, and the issuer is one host.
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(2)
            .build(connector);
        IssuerClient { http }
    }

    async fn exchange(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let call = async {
            let response = self.http.request(request).await.map_err(|e| TransportError::Connect(cause(&e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES).collect().await.map_err(|_| TransportError::Answer)?;
            Ok(http::Response::from_parts(parts, body.to_bytes().to_vec()))
        };
        tokio::time::timeout(TIMEOUT, call).await.map_err(|_| TransportError::Timeout)?
    }
}

/// The innermost cause of a client error (hyper-util's own message says only "client error").
fn cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = error;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

impl<'c> AsyncHttpClient<'c> for IssuerClient {
    type Error = TransportError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, TransportError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.exchange(request))
    }
}
