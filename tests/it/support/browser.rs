//! A real headless Chromium driven through ChromeDriver's W3C WebDriver protocol (plain JSON over
//! HTTP on loopback), for the console test. Debian's `chromium` and `chromium-driver`
//! (`.ci/setup` installs them); a fresh profile per browser; nothing leaves 127.0.0.1.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};

use super::TestClient;

/// The key WebDriver names element references by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    client: TestClient,
    session: String,
    _profile: tempfile::TempDir,
}

/// A WebDriver key code (`Keys.ENTER`, `Keys.TAB`).
pub const ENTER: &str = "\u{E007}";
pub const TAB: &str = "\u{E004}";

impl Browser {
    /// Starts ChromeDriver on a free loopback port and a headless Chromium session.
    pub async fn start() -> Browser {
        let chromium = std::env::var("PASSERELLE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let chromedriver =
            std::env::var("PASSERELLE_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned());
        assert!(
            std::path::Path::new(&chromium).exists() && std::path::Path::new(&chromedriver).exists(),
            "the console test needs Debian's chromium and chromium-driver ({chromium}, {chromedriver}): run .ci/setup"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(&chromedriver)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".to_owned()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let client = TestClient::new(format!("http://127.0.0.1:{port}"));
        for _ in 0..100 {
            if let Some(r) = client.try_send(Method::GET, "/status", &[], "").await
                && r.json()["value"]["ready"] == true
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--disable-dev-shm-usage", "--no-first-run", "--window-size=1280,800",
                         format!("--user-data-dir={}", profile.path().display())],
            }
        }}});
        let r = client
            .send(Method::POST, "/session", &[("content-type", "application/json")], capabilities.to_string())
            .await;
        let session = r.json()["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("ChromeDriver did not start a session: {}", r.text()))
            .to_owned();
        Browser { driver, client, session, _profile: profile }
    }

    async fn call(&self, method: Method, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = if method == Method::GET { String::new() } else { body.to_string() };
        let r = self.client.send(method, &path, &[("content-type", "application/json")], body).await;
        let value = r.json()["value"].clone();
        assert!(r.status.is_success(), "WebDriver {path}: {value}");
        value
    }

    pub async fn goto(&self, url: &str) {
        self.call(Method::POST, "/url", json!({"url": url})).await;
    }

    /// The elements matching `css` (possibly none).
    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let found = self.call(Method::POST, "/elements", json!({"using": "css selector", "value": css})).await;
        found.as_array().unwrap().iter().map(|e| e[ELEMENT].as_str().unwrap().to_owned()).collect()
    }

    /// The first element matching `css`, waiting up to 10 s for it to appear.
    pub async fn find(&self, css: &str) -> String {
        for _ in 0..100 {
            if let Some(e) = self.find_all(css).await.into_iter().next() {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no element matches {css}")
    }

    pub async fn click(&self, element: &str) {
        self.call(Method::POST, &format!("/element/{element}/click"), json!({})).await;
    }

    pub async fn type_into(&self, element: &str, text: &str) {
        self.call(Method::POST, &format!("/element/{element}/value"), json!({"text": text})).await;
    }

    pub async fn text(&self, element: &str) -> String {
        self.call(Method::GET, &format!("/element/{element}/text"), json!({})).await.as_str().unwrap().to_owned()
    }

    /// The text of the first element matching `css`, found and read in one step in the page,
    /// waiting up to 10 s for one: for what the page redraws on its own (the charts), where an
    /// element found, then read, may already be replaced.
    pub async fn text_at(&self, css: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let script = "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;";
            if let Some(text) = self.execute(script, json!([css])).await.as_str() {
                return text.to_owned();
            }
            assert!(std::time::Instant::now() < deadline, "no element matches {css}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Presses keys on the focused element, as a person at the keyboard would.
    pub async fn press(&self, keys: &[&str]) {
        let actions: Vec<Value> = keys
            .iter()
            .flat_map(|k| [json!({"type": "keyDown", "value": k}), json!({"type": "keyUp", "value": k})])
            .collect();
        self.call(
            Method::POST,
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await;
    }

    /// Runs `script` (a function body; `arguments` available) in the page and returns its value.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.call(Method::POST, "/execute/sync", json!({"script": script, "args": args})).await
    }

    /// Waits up to `timeout` for `script` to return true.
    pub async fn wait_until(&self, script: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            // A page still loading may not have the elements yet: an error means "not yet".
            let path = format!("/session/{}/execute/sync", self.session);
            let body = json!({"script": script, "args": []}).to_string();
            let r = self.client.send(Method::POST, &path, &[("content-type", "application/json")], body).await;
            if r.status.is_success() && r.json()["value"] == true {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the page never satisfied: {script}")
    }

    pub async fn cookies(&self) -> Vec<Value> {
        self.call(Method::GET, "/cookie", json!({})).await.as_array().unwrap().clone()
    }

    pub async fn set_window(&self, width: u32, height: u32) {
        self.call(Method::POST, "/window/rect", json!({"width": width, "height": height})).await;
    }

    /// Saves a PNG screenshot of the page to `path`.
    pub async fn screenshot(&self, path: &std::path::Path) {
        let png = self.call(Method::GET, "/screenshot", json!({})).await;
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, base64_decode(png.as_str().unwrap())).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium; then the driver goes.
        let url = format!("/session/{}", self.session);
        let client = self.client.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(client.try_send(Method::DELETE, &url, &[], ""))
        })
        .join();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (as WebDriver sends screenshots), without a crate for one call.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}
