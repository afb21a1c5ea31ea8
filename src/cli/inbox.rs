//! `passerelle inbox`: a reference client for a pull recipient. It takes the recipient's
//! deliveries from the gateway (`GET /v1/inbox`, long-polling), hands each one over (a JSON line
//! on standard output, or a file per delivery), and only then acknowledges them
//! (`POST /v1/inbox/ack`). A municipality can run it from behind a firewall that lets no
//! connection in: every call goes out from its side.
//!
//! Delivery is at least once: a delivery handed over whose acknowledgement is lost (a crash, the
//! network) is offered again after its lease, with the same idempotency key. Files are named by
//! that key, so a repeat overwrites the same file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// Where the gateway is and who the recipient is.
#[derive(Debug, clap::Args)]
pub struct InboxArgs {
    /// The gateway's partner API base URL.
    #[arg(long, value_name = "URL")]
    url: String,
    /// CA (PEM) the gateway's certificate must chain to (HTTPS).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The recipient's client certificate (PEM), for mutual TLS.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// The key of that certificate.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Environment variable holding the recipient's API key, used when no certificate is given.
    #[arg(long, value_name = "VAR", default_value = "PASSERELLE_API_KEY")]
    api_key_env: String,
    /// The most deliveries to take per call.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Seconds each call waits for deliveries when none is due.
    #[arg(long, default_value_t = 30)]
    wait: u64,
    /// Write each delivery to `DIR/<idempotency key>.json` (written and synced before it is
    /// acknowledged) instead of printing it.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Take one batch (waiting up to --wait), acknowledge it, and exit.
    #[arg(long)]
    once: bool,
    /// Print what is taken without acknowledging it (each comes back after its lease).
    #[arg(long)]
    no_ack: bool,
}

/// A partner API client for one recipient.
struct Inbox {
    base: String,
    bearer: Option<String>,
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Inbox {
    fn new(args: &InboxArgs) -> anyhow::Result<Inbox> {
        let https = args.url.starts_with("https://");
        if !https && !args.url.starts_with("http://") {
            bail!("--url must be an http(s) URL");
        }
        if https && args.ca.is_none() {
            bail!("an https --url needs --ca, the CA the gateway's certificate chains to");
        }
        let tls = match &args.ca {
            Some(ca) => crate::tls::recipient_client(
                std::slice::from_ref(ca),
                args.cert.as_deref(),
                args.key.as_deref(),
                &crate::tls::disk,
            )?,
            None => crate::tls::plain_client(),
        };
        let bearer = match &args.cert {
            Some(_) => None,
            None => Some(std::env::var(&args.api_key_env).with_context(|| {
                format!("no credentials: give --cert and --key, or set {} to the API key", args.api_key_env)
            })?),
        };
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector);
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Inbox { base: args.url.trim_end_matches('/').to_owned(), bearer, http })
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(key) = &self.bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let body = match body {
            Some(v) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let response = self.http.request(request.body(Full::new(body))?).await.context("the gateway did not answer")?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }
}

/// What to do after an answer that is not 200: wait and go on, or stop.
fn refused(status: StatusCode, problem: &Value) -> anyhow::Result<Duration> {
    let detail = problem["detail"].as_str().unwrap_or("");
    match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => {
            eprintln!("passerelle inbox: {status}: {detail} Trying again.");
            Ok(Duration::from_secs(2))
        }
        _ => bail!("{status}: {}", if detail.is_empty() { "the gateway refused the call" } else { detail }),
    }
}

/// Writes `delivery` to `dir/<idempotency key>.json`, synced, under a temporary name first.
fn write_file(dir: &Path, delivery: &Value) -> anyhow::Result<PathBuf> {
    let key = delivery["idempotency_key"].as_str().context("a delivery without an idempotency key")?;
    // The key is the gateway's `<record id>.<recipient>`; anything else is not used as a name.
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        bail!("an idempotency key that is not a file name");
    }
    let path = dir.join(format!("{key}.json"));
    let partial = dir.join(format!(".{key}.json.partial"));
    let mut file = std::fs::File::create(&partial)?;
    file.write_all(serde_json::to_string_pretty(delivery)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

pub fn run(args: InboxArgs) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async move {
        let inbox = Inbox::new(&args)?;
        if let Some(dir) = &args.out {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut taken_total = 0usize;
        loop {
            let path = format!("/v1/inbox?limit={}&wait={}", args.limit, args.wait);
            let (status, page) = inbox.call(Method::GET, &path, None).await?;
            if status != StatusCode::OK {
                tokio::time::sleep(refused(status, &page)?).await;
                continue;
            }
            let deliveries = page["deliveries"].as_array().cloned().unwrap_or_default();
            let mut ids = Vec::with_capacity(deliveries.len());
            for delivery in &deliveries {
                match &args.out {
                    Some(dir) => {
                        let written = write_file(dir, delivery)?;
                        eprintln!("passerelle inbox: wrote {}", written.display());
                    }
                    None => {
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "{delivery}")?;
                        out.flush()?;
                    }
                }
                ids.extend(delivery["delivery_id"].as_i64());
            }
            taken_total += ids.len();
            if !ids.is_empty() && !args.no_ack {
                let lease = page["lease"]["id"].clone();
                let (status, answer) =
                    inbox.call(Method::POST, "/v1/inbox/ack", Some(json!({"lease": lease, "deliveries": ids}))).await?;
                if status != StatusCode::OK {
                    // Not acknowledged: they come back after their lease, with the same keys.
                    eprintln!(
                        "passerelle inbox: the acknowledgement was refused ({status}: {}); the deliveries will be offered again.",
                        answer["detail"].as_str().unwrap_or("")
                    );
                }
            }
            if args.once {
                eprintln!("passerelle inbox: {taken_total} deliveries taken.");
                return Ok(ExitCode::SUCCESS);
            }
        }
    })
}
