//! A real OpenID provider for the sign-in tests: `tests/oidc/provider.mjs` (panva's
//! `oidc-provider`, which `.ci/setup` installs with `npm ci`) run by Node on 127.0.0.1, its test
//! accounts, and signing a person in through it in Chromium.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::browser::Browser;
use super::repo;

/// The client the gateway is registered as at the test provider.
pub const CLIENT_ID: &str = "passerelle-console";
pub const CLIENT_SECRET: &str = "test-client-secret-not-for-production";

/// The test provider, stopped when dropped.
pub struct TestProvider {
    child: Child,
    /// The issuer URL (`http://127.0.0.1:<port>`).
    pub issuer: String,
}

impl TestProvider {
    /// Starts the provider with the gateway's `redirect_url` registered, and waits until it says
    /// it is ready.
    pub fn start(redirect_url: &str) -> TestProvider {
        let dir = repo().join("tests/oidc");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "the OpenID tests need oidc-provider in tests/oidc/node_modules: run .ci/setup (npm ci)"
        );
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .env("OIDC_REDIRECT_URL", redirect_url)
            .env("OIDC_CLIENT_ID", CLIENT_ID)
            .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs (Node 20 or later)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(issuer) = line.strip_prefix("issuer ") {
                    let _ = tx.send(issuer.to_owned());
                }
            }
        });
        let issuer = rx.recv_timeout(Duration::from_secs(30)).expect("the OpenID provider started within 30 s");
        TestProvider { child, issuer }
    }
}

impl Drop for TestProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on 127.0.0.1, for a listener whose URL must be known before it starts (the
/// redirect URL the provider registers).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `[admin.oidc]` for the test provider, with the client secret in `secret_file`, then `groups`
/// (`[[admin.oidc.group]]` tables).
pub fn admin_oidc(issuer: &str, redirect_url: &str, groups: &str) -> String {
    format!(
        "[admin.oidc]\nissuer = \"{issuer}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret_file = \"oidc-secret\"\n\
         redirect_url = \"{redirect_url}\"\n{groups}"
    )
}

/// Writes the client secret where [`admin_oidc`] names it.
pub fn write_secret(config_dir: &std::path::Path) {
    std::fs::write(config_dir.join("oidc-secret"), format!("{CLIENT_SECRET}\n")).unwrap();
}

/// Opens the console of the admin listener at `admin` (its base URL) in a fresh Chromium, follows "Sign in with" to the provider
/// and signs in there as `person`; returns the browser wherever that led.
pub async fn sign_in(admin: &str, person: &str) -> Browser {
    let browser = Browser::start().await;
    browser.goto(&format!("{admin}/console")).await;
    let offer = browser.find("#oidc-sign-in").await;
    browser.click(&offer).await;
    let login = browser.find("input[name=login]").await;
    browser.type_into(&login, person).await;
    let password = browser.find("input[name=password]").await;
    browser.type_into(&password, "any password").await;
    let submit = browser.find("button[type=submit]").await;
    browser.click(&submit).await;
    browser
        .wait_until(
            "return location.pathname === '/console' || document.getElementById('refused') !== null",
            Duration::from_secs(15),
        )
        .await;
    browser
}

/// An admin call made by the page itself (a synchronous XHR, so the browser sends its own
/// session cookie and origin): the status, the `Content-Language` and the body as JSON.
pub async fn call_from_page(browser: &Browser, method: &str, path: &str, lang: &str) -> (u16, String, Value) {
    let script = "const x = new XMLHttpRequest(); x.open(arguments[0], arguments[1], false); \
                  x.setRequestHeader('Accept-Language', arguments[2]); x.send(); \
                  return [x.status, x.getResponseHeader('content-language') || '', x.responseText];";
    let answer = browser.execute(script, json!([method, path, lang])).await;
    let status = answer[0].as_u64().unwrap() as u16;
    let body = serde_json::from_str(answer[2].as_str().unwrap()).unwrap_or(Value::Null);
    (status, answer[1].as_str().unwrap().to_owned(), body)
}
