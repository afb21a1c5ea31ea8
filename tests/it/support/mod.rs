//! Shared test helpers: a real gateway on 127.0.0.1 port 0, its configuration in a temporary
//! directory, mock recipients, a small HTTP client (`client`), readers of what the gateway
//! answered and audited, and of whether an answer is the one its OpenAPI document describes
//! (`contract`).

pub mod browser;
mod client;
mod contract;
pub mod mock;
pub mod oidc;
pub mod raw;
pub mod tls;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use client::{TestClient, TestRequest, TestResponse, tls_config};
pub use contract::{answer_schema, assert_documented, follow, partner_document, resolve, validator};
use http::{Method, StatusCode};
pub use mock::MockRecipient;
use passerelle::audit::export::{Line, parse_line};
use passerelle::audit::{AuditEntry, AuditEvent};
use passerelle::gateway::Gateway;
use serde_json::Value;

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A record from `tests/data/records`.
pub fn record(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(repo().join("tests/data/records").join(name)).unwrap()).unwrap()
}

/// The (pointer, keyword) pairs of a 422's violations, in the order the answer lists them.
pub fn violations(doc: &Value) -> Vec<(String, String)> {
    doc["violations"].as_array().unwrap().iter().map(pointer_and_keyword).collect()
}

fn pointer_and_keyword(violation: &Value) -> (String, String) {
    (violation["pointer"].as_str().unwrap().to_owned(), violation["keyword"].as_str().unwrap().to_owned())
}

/// What `birth-registration-1.1-invalid.json` breaks, sorted: the (pointer, keyword) pairs of
/// `birth-registration-1.1-invalid.expected.json`, the one list of them every test reads.
pub fn invalid_birth_violations() -> Vec<(String, String)> {
    let listed = record("birth-registration-1.1-invalid.expected.json");
    let mut expected: Vec<_> = listed.as_array().unwrap().iter().map(pointer_and_keyword).collect();
    expected.sort();
    expected
}

/// Asserts that `doc`, the 422 answer to `birth-registration-1.1-invalid.json`, lists every one
/// of [`invalid_birth_violations`] and nothing else.
pub fn assert_invalid_birth_violations(doc: &Value) {
    let mut found = violations(doc);
    found.sort();
    assert_eq!(found, invalid_birth_violations(), "{doc}");
}

/// The demo partners that receive records, with what the shipped configuration says of their
/// delivery: an endpoint, or for the city its mailbox. Tests give each one a mock endpoint (the
/// city too, so every recipient is pushed to) unless a test keeps the city's mailbox
/// ([`Setup::pull`]).
pub const RECIPIENTS: [(&str, &str); 4] = [
    ("esdc-sin-registry", "endpoint = \"http://127.0.0.1:18101/inbox\""),
    ("cra-child-benefit", "endpoint = \"http://127.0.0.1:18102/inbox\""),
    ("on-health-plan", "endpoint = \"http://127.0.0.1:18103/inbox\""),
    ("ottawa-city", "mode = \"pull\""),
];

/// Every demo partner.
pub const PARTNERS: [&str; 6] =
    ["on-vital-stats", "nt-vital-stats", "esdc-sin-registry", "cra-child-benefit", "on-health-plan", "ottawa-city"];

/// A configuration written into a temporary directory: the shipped partners and agreements,
/// recipients pointed at mocks, test-friendly timings, and one API key per partner.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub keys: HashMap<String, String>,
    /// Lines added to `[delivery]` (overriding the defaults below).
    delivery: Vec<String>,
    limits: Vec<String>,
    audit: Vec<String>,
    retention: Vec<String>,
    tls: Vec<String>,
    listen: Vec<String>,
    store: Vec<String>,
    telemetry: Vec<String>,
    /// Lines of `[admin]` besides the bootstrap token file.
    admin: Vec<String>,
    /// Text replacements applied to the shipped partners file.
    partners_edits: Vec<(String, String)>,
    /// Recipients left to take their records from their mailbox, as shipped.
    pulled: Vec<String>,
    /// A schemas directory in place of the repository's.
    schemas: Option<PathBuf>,
}

impl Setup {
    pub fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("config/agreements")).unwrap();
        for entry in std::fs::read_dir(repo().join("config/agreements")).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.path().join("config/agreements").join(path.file_name().unwrap())).unwrap();
        }
        let keys: HashMap<String, String> =
            PARTNERS.iter().map(|p| (p.to_string(), passerelle::auth::generate_api_key())).collect();
        Setup {
            dir,
            keys,
            delivery: Vec::new(),
            limits: Vec::new(),
            audit: Vec::new(),
            retention: Vec::new(),
            tls: Vec::new(),
            listen: Vec::new(),
            store: Vec::new(),
            telemetry: Vec::new(),
            admin: Vec::new(),
            partners_edits: Vec::new(),
            pulled: Vec::new(),
            schemas: None,
        }
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn main_config(&self) -> PathBuf {
        self.config_dir().join("passerelle.toml")
    }

    /// Reads the schemas (and translations) from `dir` instead of the repository's.
    pub fn schemas(mut self, dir: &Path) -> Self {
        self.schemas = Some(dir.to_path_buf());
        self
    }

    /// Leaves `recipient` taking its records from its mailbox, as the shipped configuration has
    /// it (no mock is started for it).
    pub fn pull(mut self, recipient: &str) -> Self {
        self.pulled.push(recipient.to_owned());
        self
    }

    pub fn delivery(mut self, line: &str) -> Self {
        self.delivery.push(line.to_owned());
        self
    }

    pub fn audit(mut self, line: &str) -> Self {
        self.audit.push(line.to_owned());
        self
    }

    /// A line of `[store]`, in place of an earlier line setting the same key.
    pub fn store(mut self, line: &str) -> Self {
        let key = |l: &str| l.split('=').next().unwrap_or("").trim().to_owned();
        self.store.retain(|l| key(l) != key(line));
        self.store.push(line.to_owned());
        self
    }

    /// A line of `[telemetry]`.
    pub fn telemetry(mut self, line: &str) -> Self {
        self.telemetry.push(line.to_owned());
        self
    }

    /// A line of `[admin]` (after `token_file`, so a table such as `[admin.oidc]` may follow).
    pub fn admin(mut self, line: &str) -> Self {
        self.admin.push(line.to_owned());
        self
    }

    /// An operators file with `toml`, named by `[admin] operators_file`.
    pub fn operators(self, toml: &str) -> Self {
        std::fs::write(self.config_dir().join("operators.toml"), toml).unwrap();
        self.admin("operators_file = \"operators.toml\"")
    }

    /// A line of `[listen]` (`admin = ...` or `partner = ...` in place of port 0).
    pub fn edit_listen(mut self, line: &str) -> Self {
        self.listen.push(line.to_owned());
        self
    }

    /// Replaces `from` with `to` in the partners file.
    pub fn edit_partners(mut self, from: &str, to: &str) -> Self {
        self.partners_edits.push((from.to_owned(), to.to_owned()));
        self
    }

    /// A line of `[tls]` (the default is `insecure_plaintext = true`, for plain-HTTP tests).
    pub fn tls(mut self, line: &str) -> Self {
        self.tls.push(line.to_owned());
        self
    }

    pub fn retention(mut self, line: &str) -> Self {
        self.retention.push(line.to_owned());
        self
    }

    pub fn limits(mut self, line: &str) -> Self {
        self.limits.push(line.to_owned());
        self
    }

    /// Adds or replaces an agreement file.
    pub fn agreement(self, id: &str, toml: &str) -> Self {
        std::fs::write(self.config_dir().join("agreements").join(format!("{id}.toml")), toml).unwrap();
        self
    }

    /// Writes the files, pointing each recipient at `endpoints[partner]`.
    pub fn write(&self, endpoints: &HashMap<String, String>) {
        let mut partners = std::fs::read_to_string(repo().join("config/partners.toml")).unwrap();
        for (from, to) in &self.partners_edits {
            assert!(partners.contains(from.as_str()), "the partners file has no {from:?}");
            partners = partners.replace(from, to);
        }
        for (id, shipped) in RECIPIENTS {
            if self.pulled.iter().any(|p| p == id) {
                continue;
            }
            let endpoint = endpoints.get(id).cloned().unwrap_or_else(|| "http://127.0.0.1:9/closed".to_owned());
            // Only in this partner's own entry: another partner a test gives the same line keeps it.
            let entry = partners.find(&format!("id = \"{id}\"")).unwrap_or_else(|| panic!("no partner {id}"));
            let at = entry + partners[entry..].find(shipped).unwrap_or_else(|| panic!("{id} has no {shipped:?}"));
            partners.replace_range(at..at + shipped.len(), &format!("endpoint = \"{endpoint}\""));
        }
        std::fs::write(self.config_dir().join("partners.toml"), partners).unwrap();
        let mut keys = String::from("[keys]\n");
        for (partner, key) in &self.keys {
            keys.push_str(&format!("{partner} = [\"{}\"]\n", passerelle::auth::api_key_hash_hex(key)));
        }
        std::fs::write(self.config_dir().join("api-keys.toml"), keys).unwrap();
        let main = format!(
            r#"data_dir = "../data"
schemas_dir = "{schemas}"
api_keys_file = "api-keys.toml"
[listen]
{listen}
[limits]
{limits}
[delivery]
{delivery}
[store]
{store}
[tls]
{tls}
[audit]
{audit}
[retention]
{retention}
[telemetry]
{telemetry}
[log]
level = "info"
[admin]
token_file = "admin-token"
{admin}
"#,
            schemas = self.schemas.clone().unwrap_or_else(|| repo().join("schemas")).display(),
            limits = self.limits.join("\n"),
            delivery = with_defaults(
                &self.delivery,
                &[
                    "initial_backoff_ms = 100",
                    "max_backoff_ms = 1000",
                    "poll_interval_ms = 100",
                    "attempt_timeout_ms = 10000"
                ]
            ),
            audit = self.audit.join("\n"),
            listen = with_defaults(&self.listen, &["partner = \"127.0.0.1:0\"", "admin = \"127.0.0.1:0\""]),
            store = self.store.join("\n"),
            tls = if self.tls.is_empty() { "insecure_plaintext = true".to_owned() } else { self.tls.join("\n") },
            retention = self.retention.join("\n"),
            telemetry = self.telemetry.join("\n"),
            admin = self.admin.join("\n"),
        );
        std::fs::write(self.main_config(), main).unwrap();
        std::fs::write(self.config_dir().join("admin-token"), "test-admin-token\n").unwrap();
    }

    /// Writes the files, pointing each recipient at its mock in `recipients` (absent ones at a
    /// closed port): for a gateway the test runs as a child process.
    pub fn write_for(&self, recipients: &HashMap<String, MockRecipient>) {
        self.write(&recipients.iter().map(|(id, m)| (id.clone(), m.endpoint())).collect());
    }

    /// Starts mock recipients for the four demo recipients and a gateway on them.
    pub async fn start(self) -> TestGateway {
        self.start_with(mock_recipients().await).await
    }

    /// Starts mock recipients for the demo recipients but `absent`, which points at a closed port,
    /// and a gateway on them.
    pub async fn start_without(self, absent: &str) -> TestGateway {
        let mut recipients = mock_recipients().await;
        recipients.remove(absent).expect("a demo recipient");
        self.start_with(recipients).await
    }

    /// Starts a gateway on the given mock recipients (absent ones point at a closed port).
    pub async fn start_with(self, recipients: HashMap<String, MockRecipient>) -> TestGateway {
        let endpoints = recipients.iter().map(|(id, m)| (id.clone(), m.endpoint())).collect();
        self.start_on(recipients, &endpoints).await
    }

    /// Starts a gateway delivering to `endpoints` (HTTPS ones among them), served by `recipients`.
    pub async fn start_on(
        self,
        recipients: HashMap<String, MockRecipient>,
        endpoints: &HashMap<String, String>,
    ) -> TestGateway {
        self.write(endpoints);
        let config =
            passerelle::config::load(&self.main_config()).unwrap_or_else(|e| panic!("test config: {:?}", e.problems));
        let gateway = Gateway::start(config).await.unwrap();
        let client = TestClient::new(format!("http://{}", gateway.partner_addr));
        let admin = TestClient::new(format!("http://{}", gateway.admin_addr));
        TestGateway { gateway: Some(gateway), setup: self, recipients, client, admin }
    }
}

impl Default for Setup {
    fn default() -> Self {
        Self::new()
    }
}

/// `lines`, plus each default whose key `lines` does not set.
fn with_defaults(lines: &[String], defaults: &[&str]) -> String {
    let key = |l: &str| l.split('=').next().unwrap_or("").trim().to_owned();
    let mut all: Vec<String> = lines.to_vec();
    for d in defaults {
        if !lines.iter().any(|l| key(l) == key(d)) {
            all.push(d.to_string());
        }
    }
    all.join("\n")
}

/// A mock recipient for each of the four demo recipients, by partner id.
pub async fn mock_recipients() -> HashMap<String, MockRecipient> {
    let mut recipients = HashMap::new();
    for (id, _) in RECIPIENTS {
        recipients.insert(id.to_owned(), MockRecipient::start().await);
    }
    recipients
}

/// A running gateway with its mocks.
pub struct TestGateway {
    pub gateway: Option<Gateway>,
    pub setup: Setup,
    pub recipients: HashMap<String, MockRecipient>,
    pub client: TestClient,
    pub admin: TestClient,
}

impl TestGateway {
    pub fn key(&self, partner: &str) -> &str {
        &self.setup.keys[partner]
    }

    pub fn recipient(&self, id: &str) -> &MockRecipient {
        &self.recipients[id]
    }

    /// `POST path` as `partner` (its API key as the bearer token), to build, then send.
    pub fn post_as(&self, partner: &str, path: &str) -> TestRequest {
        self.client.post(path).bearer(self.key(partner))
    }

    /// Posts `body` as `partner` to `POST /v1/records/{type}`.
    pub async fn post_record(&self, partner: &str, record_type: &str, body: &Value) -> TestResponse {
        self.post_as(partner, &format!("/v1/records/{record_type}")).json(body).send().await
    }

    /// The metrics page.
    pub async fn metrics(&self) -> String {
        let r = self.admin.send(Method::GET, "/metrics", &[], "").await;
        assert_eq!(r.status, StatusCode::OK);
        r.text()
    }

    /// Every entry of the audit trail, as the admin API lists them (`GET /admin/v1/audit`, page
    /// by page) and read back with the export's own parser: what the store holds, in order,
    /// without a test knowing its columns.
    pub async fn audit_entries(&self) -> Vec<AuditEntry> {
        let mut entries: Vec<AuditEntry> = Vec::new();
        loop {
            let after = entries.last().map_or(0, |e| e.seq);
            let page = self.admin.get(&format!("/admin/v1/audit?after={after}&limit=1000"), "test-admin-token").await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.text());
            let lines = page.json()["entries"].as_array().unwrap().clone();
            let last_page = lines.len() < 1000;
            for line in lines {
                match parse_line(&line.to_string()) {
                    Ok(Line::Entry(entry)) => entries.push(entry),
                    other => panic!("not an entry ({other:?}): {line}"),
                }
            }
            // Each read is itself audited, so the page after the last is never empty: a short
            // page is the end.
            if last_page {
                return entries;
            }
        }
    }

    /// How many entries of `kind` the audit trail holds that `select` picks.
    pub async fn audited(&self, kind: &str, select: impl Fn(&AuditEvent) -> bool) -> usize {
        self.audit_entries().await.iter().filter(|e| e.event.kind == kind && select(&e.event)).count()
    }

    /// Asserts that no record or delivery was stored and, given time to arrive, that no recipient
    /// received anything: what a refused request leaves behind.
    pub async fn assert_nothing_stored_or_delivered(&self) {
        assert_eq!(self.count("records"), 0, "a rejected record was stored");
        assert_eq!(self.count("deliveries"), 0);
        tokio::time::sleep(Duration::from_millis(300)).await;
        for (id, m) in &self.recipients {
            assert!(m.received().is_empty(), "{id} received a rejected record");
        }
    }

    /// Opens the gateway's SQLite file directly.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.setup.data_dir().join("passerelle.sqlite")).unwrap()
    }

    /// Rows in a table.
    pub fn count(&self, table: &str) -> i64 {
        self.db().query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap()
    }

    pub async fn stop(mut self) -> Setup {
        if let Some(g) = self.gateway.take() {
            g.shutdown().await;
        }
        self.setup
    }
}

/// An address-change agreement `id` from `sender` to the city, in force only from `from` to
/// `until` (RFC 3339 dates): an agreement that exists but is not in force now.
pub fn address_agreement(id: &str, sender: &str, from: &str, until: &str) -> String {
    format!(
        r#"
id = "{id}"
title_en = "Not in force"
title_fr = "Pas en vigueur"
sender = "{sender}"
record_type = "address-change"
versions = ["1.0"]
purpose = "Test."
valid_from = "{from}T00:00:00Z"
valid_until = "{until}T00:00:00Z"
[[recipient]]
partner = "ottawa-city"
fields = ["/change_id"]
"#
    )
}

/// Copies the directory `from`, with everything below it, to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() { copy_dir(&path, &target) } else { std::fs::copy(&path, &target).map(|_| ()).unwrap() }
    }
}

/// `bytes` as lowercase hexadecimal, two digits a byte.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Replaces the first `from` in the file at `path` with `to`; `from` must be there.
pub fn edit_file(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// A metric's value from a Prometheus text page: the sum of every series of `name` whose labels
/// include all of `labels`.
pub fn metric(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric_name, rest) = series.split_once('{').unwrap_or((series, ""));
            if metric_name != name {
                return None;
            }
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// The path of the built `passerelle` binary.
pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_passerelle"))
}

/// Runs the `passerelle` binary with `args`; returns its exit code and standard output.
pub fn cli(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(binary()).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs the `passerelle` binary with `args` and the environment variables `env`, off the async
/// runtime (a gateway in this process keeps serving); returns its exit code and its standard
/// output followed by its standard error.
pub async fn cli_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(binary()).args(&args).envs(env).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    })
    .await
    .unwrap()
}

/// The gateway binary running as a child process on a written configuration.
pub struct ChildGateway {
    pub child: std::process::Child,
    pub client: TestClient,
    pub admin: TestClient,
    /// Every log line read so far.
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ChildGateway {
    /// Starts `passerelle serve` on `config` and waits until both listeners are up.
    pub async fn spawn(config: &Path, env: &[(&str, &str)]) -> ChildGateway {
        use std::io::BufRead;
        let mut command = std::process::Command::new(binary());
        command.args(["serve", "--config", config.to_str().unwrap()]);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child =
            command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["message"] == "Listening."
                {
                    let _ = tx.send((
                        v["listener"].as_str().unwrap_or("").to_owned(),
                        v["addr"].as_str().unwrap_or("").to_owned(),
                    ));
                }
                sink.lock().unwrap().push(line);
            }
        });
        let (mut partner, mut admin) = (None, None);
        while partner.is_none() || admin.is_none() {
            let (listener, addr) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .expect("the gateway started within 60 s")
                .unwrap_or_else(|| panic!("the gateway exited: {:?}", logs.lock().unwrap()));
            if listener == "partner" { partner = Some(addr) } else { admin = Some(addr) }
        }
        ChildGateway {
            child,
            client: TestClient::new(format!("http://{}", partner.unwrap())),
            admin: TestClient::new(format!("http://{}", admin.unwrap())),
            logs,
        }
    }

    /// `kill -9`: no shutdown, no final checkpoint, nothing flushed.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(mut self) {
        std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the gateway exited with {status}");
    }
}
