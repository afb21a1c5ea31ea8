//! `passerelle demo`: the real gateway on the shipped configuration, with local recipients.
//!
//! It generates the demo partners' API keys into the data directory (hashes in
//! `api-keys.toml`, which the configuration reads; the keys themselves in
//! `demo-credentials.toml`, owner-only, so later runs print the same ones), starts one small
//! HTTP server per recipient on the loopback port its delivery endpoint names, starts the
//! gateway, sends a few birth bundles and an address change, and prints each receipt and what
//! each recipient received.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::auth;
use crate::config::{self, raw::RawMain};
use crate::gateway::Gateway;

/// What the demo recipients received: (recipient, path, body).
/// What the demo recipients received: recipient, path, the `Passerelle-Schema` it came as, body.
type Inbox = Arc<Mutex<Vec<(String, String, String, Bytes)>>>;

pub fn run(config_path: &Path, once: bool) -> anyhow::Result<ExitCode> {
    let credentials = prepare_credentials(config_path)?;
    let (data_dir, ids) = super::dev_pki::partners_and_data_dir(config_path)?;
    let (pki, _) = crate::pki::write_dev_pki(&data_dir, &ids.iter().map(String::as_str).collect::<Vec<_>>())?;
    let config = match config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            super::check::print_problems(&e.problems);
            anyhow::bail!("the demo configuration has problems");
        }
    };
    let _logging = crate::telemetry::logging::init(crate::telemetry::logging::LogFormat::Text, "warn", None)?;
    let recipients: Vec<(String, String)> = config
        .recipients()
        .filter_map(|p| Some((p.id.to_string(), p.delivery.as_ref()?.endpoint()?.endpoint.clone())))
        .collect();
    // Recipients that take their records from their mailbox: nothing is started for them.
    let pulled: Vec<String> = config
        .recipients()
        .filter(|p| p.delivery.as_ref().is_some_and(|d| d.endpoint().is_none()))
        .map(|p| p.id.to_string())
        .collect();
    super::runtime()?.block_on(async move {
        let inbox: Inbox = Arc::default();
        for (id, endpoint) in &recipients {
            start_recipient(id.clone(), endpoint, inbox.clone()).await?;
        }
        let data_dir = config.settings.data_dir.clone();
        let admin_token_file = config.settings.admin.token_file.clone();
        let tls = config.built.partner_tls.is_some();
        let pins: Vec<(String, String, String)> = config
            .built
            .agreements
            .iter()
            .flat_map(|a| a.recipients.iter().filter_map(move |r| Some((a.id.to_string(), r.partner.to_string(), r.version?.to_string()))))
            .collect();
        let encryption = config.settings.store.encryption.clone();
        let key_generated = encryption.as_ref().is_some_and(|e| e.key_file_missing());
        let gateway = Gateway::start(config).await.context("the gateway could not start")?;
        let port = gateway.partner_addr.port();
        let base = if tls { format!("https://localhost:{port}") } else { format!("http://127.0.0.1:{port}") };
        let partners = PartnerClients { pki: pki.clone(), credentials: credentials.clone(), tls };
        println!("Passerelle demo: partner API {base}, admin http://{}", gateway.admin_addr);
        println!("Data directory: {} (credentials in demo-credentials.toml)", data_dir.display());
        match encryption.as_ref().map(|e| &e.key) {
            Some(crate::store::keys::KekSource::File(path)) => println!(
                "Bodies are sealed at rest (AES-256-GCM) under the key-encryption key {}{} (owner-only); \
                 without it the store's bodies cannot be read.\n",
                path.display(),
                if key_generated { ", generated now" } else { "" }
            ),
            Some(crate::store::keys::KekSource::Env(var)) => {
                println!("Bodies are sealed at rest (AES-256-GCM) under the key-encryption key in ${var}.\n")
            }
            None => println!("Bodies are stored in plaintext: store.encryption.enabled is false.\n"),
        }
        println!("Demo partners' API keys (for Authorization: Bearer ...):");
        for (partner, key) in &credentials {
            println!("  {partner:<20} {key}");
        }
        println!();

        if tls {
            println!("Each partner connects with its client certificate from {} (mutual TLS).\n", pki.dir.display());
        }
        let (mut expected, mut waiting) = (0, BTreeMap::<&str, usize>::new());
        for (i, (sender, record_type, record)) in demo_records().into_iter().enumerate() {
            let (status, body) = partners
                .post(
                    sender,
                    &format!("{base}/v1/records/{record_type}"),
                    Some(&format!("demo-{}-{i}", crate::clock::now_ms())),
                    record.to_string(),
                )
                .await?;
            let receipt: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            println!("{sender} sent {record_type}: {status}");
            println!("{}\n", serde_json::to_string_pretty(&receipt)?);
            if status == StatusCode::ACCEPTED {
                for delivery in receipt["deliveries"].as_array().into_iter().flatten() {
                    match pulled.iter().find(|p| delivery["recipient"] == p.as_str()) {
                        Some(p) => *waiting.entry(p).or_default() += 1,
                        None => expected += 1,
                    }
                }
            }
        }

        // Request/response: the health plan checks a SIN with the federal registry.
        let question =
            json!({"sin": JULIE_SIN, "given_names": ["Julie"], "surname": "Tremblay", "date_of_birth": "1992-03-14"});
        let (status, body) = partners
            .post("on-health-plan", &format!("{base}/v1/requests/sin-validation"), None, question.to_string())
            .await?;
        println!("on-health-plan asked esdc-sin-registry (sin-validation): {status}");
        println!("{}\n", String::from_utf8_lossy(&body));

        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while inbox.lock().map(|i| i.len()).unwrap_or(0) < expected && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let received = inbox.lock().map(|i| i.clone()).unwrap_or_default();
        println!("What each recipient received ({} of {expected} deliveries):", received.len());
        let mut by_recipient: BTreeMap<&str, Vec<(&str, &str, &Bytes)>> = BTreeMap::new();
        for (recipient, path, schema, body) in &received {
            by_recipient.entry(recipient).or_default().push((path, schema, body));
        }
        for (recipient, items) in by_recipient {
            println!("  {recipient}:");
            for (path, schema, body) in items {
                println!("    POST {path}  [{schema}]  {}", String::from_utf8_lossy(body));
            }
        }
        for (agreement, recipient, version) in &pins {
            println!(
                "\n{recipient} is pinned to version {version} in agreement {agreement}: the records sent in a newer \
                 version reach it translated (schemas/<type>/<from>-to-{version}.toml), as the [...] above show."
            );
        }
        let sender_key = credentials.get("on-vital-stats").map(String::as_str).unwrap_or("");
        let client_cert = pki.client_cert("on-vital-stats");
        let client_key = pki.client_key("on-vital-stats");
        println!("\nTry it:");
        if tls {
            println!(
                "  curl -s --cacert {} --cert {} --key {} {base}/v1/records | head -c 600",
                pki.ca_cert.display(),
                client_cert.display(),
                client_key.display()
            );
        }
        println!(
            "  curl -s {}-H 'Authorization: Bearer {sender_key}' {base}/v1/agreements | head -c 600\n  \
             curl -s http://{}/metrics | grep passerelle_deliveries_total\n  \
             passerelle audit verify --config {}",
            if tls { format!("--cacert {} ", pki.ca_cert.display()) } else { String::new() },
            gateway.admin_addr,
            config_path.display()
        );
        for (recipient, n) in &waiting {
            println!("\n{recipient} takes its records from its mailbox (mode = \"pull\"): {n} deliveries wait for it. Take them:");
            if tls {
                println!(
                    "  passerelle inbox --url {base} --ca {} --cert {} --key {} --once",
                    pki.ca_cert.display(),
                    pki.client_cert(recipient).display(),
                    pki.client_key(recipient).display()
                );
            } else {
                let key = credentials.get(*recipient).map(String::as_str).unwrap_or("");
                println!("  PASSERELLE_API_KEY={key} passerelle inbox --url {base} --once");
            }
        }
        println!("\nOperators:");
        println!("  the console: http://{}/console", gateway.admin_addr);
        println!(
            "  what was disclosed about Julie Tremblay: passerelle access {JULIE_SIN} --config {}",
            config_path.display()
        );
        match &admin_token_file {
            Some(file) => println!("  sign in with the admin token in {}", file.display()),
            None => println!("  (no admin token is configured: set admin.token_file to sign in)"),
        }
        if once {
            gateway.shutdown().await;
            return Ok(ExitCode::SUCCESS);
        }
        println!("\nThe gateway keeps running; press Ctrl-C to stop it.");
        super::serve::wait_for_signal().await;
        gateway.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// The demo's partner systems: each connects with its own client certificate over mutual TLS
/// (or, on a plaintext configuration, with its API key).
struct PartnerClients {
    pki: crate::pki::DevPkiFiles,
    credentials: BTreeMap<String, String>,
    tls: bool,
}

impl PartnerClients {
    async fn post(
        &self,
        partner: &str,
        url: &str,
        idempotency_key: Option<&str>,
        body: String,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut request = Request::builder().method(Method::POST).uri(url).header("content-type", "application/json");
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let request = if self.tls {
            request
        } else {
            let key = self.credentials.get(partner).context("the demo partner has a key")?;
            request.header("authorization", format!("Bearer {key}"))
        }
        .body(Full::new(Bytes::from(body)))?;
        let response = if self.tls {
            let tls = crate::tls::recipient_client(
                std::slice::from_ref(&self.pki.ca_cert),
                Some(&self.pki.client_cert(partner)),
                Some(&self.pki.client_key(partner)),
                &crate::tls::disk,
            )?;
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config((*tls).clone())
                .https_only()
                .enable_http1()
                .build();
            Client::builder(TokioExecutor::new()).build(connector).request(request).await?
        } else {
            let client: Client<HttpConnector, Full<Bytes>> =
                Client::builder(TokioExecutor::new()).build(HttpConnector::new());
            client.request(request).await?
        };
        let status = response.status();
        Ok((status, response.into_body().collect().await?.to_bytes()))
    }
}

/// Makes sure every partner has a demo API key; returns them by partner.
fn prepare_credentials(config_path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(config_path).with_context(|| format!("cannot read {}", config_path.display()))?;
    let main: RawMain = toml::from_str(&text).with_context(|| format!("{} is not valid", config_path.display()))?;
    let base = std::path::absolute(config_path)?.parent().map(Path::to_path_buf).unwrap_or_default();
    let data_dir = base.join(main.data_dir.as_deref().unwrap_or("../data"));
    let keys_file = main
        .api_keys_file
        .as_deref()
        .map(|f| base.join(f))
        .context("the demo needs `api_keys_file` in the configuration")?;
    let partners_file = base.join(main.partners_file.as_deref().unwrap_or("partners.toml"));
    let partners: config::raw::RawPartners = toml::from_str(&std::fs::read_to_string(&partners_file)?)?;

    let credentials_file = data_dir.join("demo-credentials.toml");
    let mut credentials: BTreeMap<String, String> = std::fs::read_to_string(&credentials_file)
        .ok()
        .and_then(|t| toml::from_str::<BTreeMap<String, BTreeMap<String, String>>>(&t).ok())
        .and_then(|mut t| t.remove("keys"))
        .unwrap_or_default();
    for p in &partners.partners {
        credentials.entry(p.id.clone()).or_insert_with(auth::generate_api_key);
    }
    let mut plain = String::from("# Demo API keys. Local development only; never commit.\n[keys]\n");
    let mut hashed = String::from("# SHA-256 of each partner's API key, written by `passerelle demo`.\n[keys]\n");
    for (partner, key) in &credentials {
        plain.push_str(&format!("{partner} = \"{key}\"\n"));
        hashed.push_str(&format!("{partner} = [\"{}\"]\n", auth::api_key_hash_hex(key)));
    }
    crate::secrets::write_private(&credentials_file, plain.as_bytes())?;
    crate::secrets::write_private(&keys_file, hashed.as_bytes())?;
    if let Some(token_file) = main.admin.token_file.as_deref().map(|f| base.join(f))
        && !token_file.exists()
    {
        crate::secrets::write_private(&token_file, crate::digest::to_hex(&crate::random::bytes::<24>()).as_bytes())?;
    }
    Ok(credentials)
}

/// Starts a recipient that records and acknowledges every POST, on `endpoint`'s port.
async fn start_recipient(id: String, endpoint: &str, inbox: Inbox) -> anyhow::Result<()> {
    let uri: http::Uri = endpoint.parse()?;
    let host = uri.host().context("the endpoint has a host")?;
    let addr: SocketAddr = format!("{host}:{}", uri.port_u16().unwrap_or(80))
        .parse()
        .context("demo recipients listen on an IP address")?;
    let listener =
        TcpListener::bind(addr).await.with_context(|| format!("the demo recipient {id} cannot listen on {addr}"))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (id, inbox) = (id.clone(), inbox.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let (id, inbox) = (id.clone(), inbox.clone());
                    async move {
                        let path = req.uri().path().to_owned();
                        let schema = req
                            .headers()
                            .get("passerelle-schema")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        // The registry answers SIN validation requests; every other call is a delivery.
                        let answer = if path.ends_with("/sin-validation") {
                            Bytes::from(sin_answer(&body).to_string())
                        } else {
                            if let Ok(mut i) = inbox.lock() {
                                i.push((id, path, schema, body));
                            }
                            Bytes::from_static(b"{\"received\":true}")
                        };
                        Ok::<_, Infallible>(Response::new(Full::new(answer)))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}

/// The demo registry's answer to a SIN validation: a made-up rule, so both outcomes show.
fn sin_answer(request: &[u8]) -> Value {
    let request: Value = serde_json::from_slice(request).unwrap_or(Value::Null);
    let sin = request["sin"].as_str().unwrap_or("");
    // The Luhn check digit, as real SINs have.
    let luhn = sin.len() == 9
        && sin
            .bytes()
            .rev()
            .enumerate()
            .map(|(i, b)| {
                let d = u32::from(b.wrapping_sub(b'0'));
                if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d }
            })
            .sum::<u32>()
            % 10
            == 0;
    json!({
        "sin_status": if luhn { "valid" } else { "invalid" },
        "name_match": if luhn { "full" } else { "none" },
        "date_of_birth_match": luhn,
        "checked_at": crate::clock::rfc3339_ms(crate::clock::now_ms()),
        "registry_reference": format!("ESDC-{}", &crate::digest::to_hex(&crate::random::bytes::<4>())),
    })
}

/// The SIN of Julie Tremblay, a fictional mother: it passes the Luhn check.
const JULIE_SIN: &str = "046454286";

/// Three births in Ontario and one address change: fictional people. Julie Tremblay, the first
/// child's mother, gives her SIN with the birth (a parent's SIN is optional) and again with her
/// address change, so her access record (`passerelle access 046454286`) holds both records'
/// deliveries.
fn demo_records() -> Vec<(&'static str, &'static str, Value)> {
    let births = [
        (
            "ON-2026-004217",
            "Amélie",
            "Tremblay",
            "F",
            "2026-11-20",
            "Ottawa",
            "K1N 5T5",
            "Julie",
            "Tremblay",
            "Marc",
            "Gagnon",
        ),
        (
            "ON-2026-004218",
            "Liam",
            "Okafor",
            "M",
            "2026-11-21",
            "Ottawa",
            "K2P 1L4",
            "Adaeze",
            "Okafor",
            "Samuel",
            "Okafor",
        ),
        (
            "ON-2026-004219",
            "Noor",
            "Haddad",
            "X",
            "2026-11-22",
            "Ottawa",
            "K1S 3W8",
            "Rania",
            "Haddad",
            "Karim",
            "Haddad",
        ),
    ];
    let mut records = Vec::new();
    for (number, given, surname, sex, dob, city, postal, mother_given, mother_surname, father_given, father_surname) in
        births
    {
        let address = json!({"street": "120 Rue Principale", "municipality": city, "province": "ON", "postal_code": postal, "country": "CA"});
        records.push((
            "on-vital-stats",
            "birth-registration",
            json!({
                "registration_number": number,
                "registered_at": format!("{dob}T16:30:00Z"),
                "child": {
                    "given_names": [given],
                    "surname": surname,
                    "date_of_birth": dob,
                    "sex_at_birth": sex,
                    "place_of_birth": {"facility_name": "The Ottawa Hospital, Civic Campus", "municipality": city, "province": "ON"}
                },
                "parents": [
                    {"role": "mother", "given_names": [mother_given], "surname": mother_surname, "date_of_birth": "1992-03-14", "address": address, "preferred_language": "fr"},
                    {"role": "father", "given_names": [father_given], "surname": father_surname, "date_of_birth": "1990-07-02", "address": address}
                ],
                "sin_application": true
            }),
        ));
    }
    records[0].2["parents"][0]["sin"] = json!(JULIE_SIN);
    records.push((
        "on-health-plan",
        "address-change",
        json!({
            "change_id": "AC-2026-00001234",
            "effective_date": "2026-12-01",
            "person": {"given_names": ["Julie"], "surname": "Tremblay", "date_of_birth": "1992-03-14", "sin": JULIE_SIN},
            "previous_address": {"street": "120 Rue Principale", "municipality": "Ottawa", "province": "ON", "postal_code": "K1N 5T5"},
            "new_address": {"street": "45 Avenue des Érables", "unit": "3", "municipality": "Ottawa", "province": "ON", "postal_code": "K1L 6X2"},
            "reported_at": "2026-11-25T14:05:00Z"
        }),
    ));
    records
}
