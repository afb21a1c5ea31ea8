//! The operator console in a real headless Chromium: sign in, numbers that match `/metrics`,
//! French and English, replaying dead letters with the mouse and with the keyboard, tables that
//! fit their panels at 1,280 and 1,400 px, a narrow window, chart labels, and screenshots
//! (printed paths under `target/console/`); finding a record and following its deliveries in EN
//! and FR, as an admin and as a viewer, with screenshots under `target/console-screenshots/`.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;

use crate::support::browser::{Browser, ENTER, TAB};
use crate::support::*;

/// A birth registration that breaks its schema.
fn invalid_body() -> String {
    record("birth-registration-1.1-invalid.json").to_string()
}

/// The number shown in a cell ("1,234" → 1234; "–" → 0).
fn number(text: &str) -> f64 {
    let digits: String = text.chars().filter(|c| c.is_ascii_digit()).collect();
    digits.parse().unwrap_or(0.0)
}

async fn cell(browser: &Browser, row: &str, field: &str) -> f64 {
    let element = browser.find(&format!("{row} td[data-field=\"{field}\"]")).await;
    number(&browser.text(&element).await)
}

/// Waits until the page shows data generated after `after_ms`.
async fn refreshed(browser: &Browser, after_ms: i64) {
    browser.click(&browser.find("#refresh").await).await;
    browser
        .wait_until(
            &format!("return Number(document.body.dataset.generated || 0) > {after_ms};"),
            Duration::from_secs(10),
        )
        .await;
}

/// Writes a line to the test run's own output: straight to stderr, past the test harness's
/// capture (which keeps `println!` of passing tests), so CI logs show where the screenshots are.
fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The admin listener's base URL.
fn admin_base(gw: &TestGateway) -> String {
    format!("http://{}", gw.gateway.as_ref().unwrap().admin_addr)
}

/// Signs in on the console's form with the admin token and waits for the first overview.
async fn sign_in(browser: &Browser, gw: &TestGateway) {
    browser.goto(&format!("{}/console", admin_base(gw))).await;
    browser.type_into(&browser.find("#token").await, "test-admin-token").await;
    browser.click(&browser.find("#sign-in").await).await;
    browser.wait_until("return !!document.body.dataset.generated;", Duration::from_secs(10)).await;
}

/// Switches the console to `lang` with its toggle, if it is not in it already.
async fn speak(browser: &Browser, lang: &str) {
    if browser.execute("return document.documentElement.lang;", json!([])).await != lang {
        browser.click(&browser.find("#lang-toggle").await).await;
    }
    assert_eq!(browser.execute("return document.documentElement.lang;", json!([])).await, lang);
}

/// Sends `body` to the partner API as `key` (none: no credentials at all).
async fn send(gw: &TestGateway, key: Option<&str>, path: &str, body: String) -> StatusCode {
    let request = gw.client.post(path).json_bytes(body);
    match key {
        Some(key) => request.bearer(key),
        None => request,
    }
    .send()
    .await
    .status
}

/// A gateway that has seen every kind of row the console shows, with a browser signed in: the
/// longest names and titles of the shipped configuration, valid dry runs, unauthenticated
/// callers and an unknown record type (both counted as `unknown`), several rejection reasons,
/// dead letters with a short error ("HTTP 400", the child benefit refuses everything) and a
/// long one (Ottawa's system is down: a transport error, then "gave up after 2 attempts"),
/// and a circuit breaker that opened.
async fn busy_console() -> (TestGateway, Browser) {
    let gw = Setup::new().delivery("max_attempts = 2").start_without("ottawa-city").await;
    gw.recipient("cra-child-benefit").respond(400);
    let birth = record("birth-registration-1.1.json").to_string();
    let (on, nt) = (gw.key("on-vital-stats").to_owned(), gw.key("nt-vital-stats").to_owned());
    for _ in 0..3 {
        assert_eq!(send(&gw, Some(&on), "/v1/records/birth-registration", birth.clone()).await, 202);
    }
    assert_eq!(send(&gw, Some(&on), "/v1/records/birth-registration", invalid_body()).await, 422);
    assert_eq!(send(&gw, Some(&nt), "/v1/validate/birth-registration", birth.clone()).await, 200);
    assert_eq!(send(&gw, Some(&nt), "/v1/records/no-such-type", birth.clone()).await, 404);
    assert_eq!(send(&gw, None, "/v1/records/birth-registration", birth.clone()).await, 401);
    assert_eq!(send(&gw, None, "/v1/records/no-such-type", birth).await, 401);
    let browser = Browser::start().await;
    sign_in(&browser, &gw).await;
    browser
        .wait_until(
            "return document.getElementById('dead-letters').textContent.includes('gave up');",
            Duration::from_secs(20),
        )
        .await;
    (gw, browser)
}

/// What is clipped or sticks out on the page as it is laid out now: every table must fit the
/// panel it is in (no sideways scrolling inside it), and every header, cell, badge and button
/// must lie inside its table's scrolling box and its panel. An empty list is a pass.
const CLIPPED: &str = r#"
const problems = [];
const inside = (r, box) => r.left >= box.left - 0.5 && r.right <= box.right + 0.5;
if (document.documentElement.scrollWidth > document.documentElement.clientWidth) {
  problems.push(`the page scrolls sideways (${document.documentElement.scrollWidth} px in ${document.documentElement.clientWidth})`);
}
for (const table of document.querySelectorAll("main table")) {
  const scroller = table.closest(".scroll"), panel = table.closest("section");
  const box = scroller.getBoundingClientRect(), panelBox = panel.getBoundingClientRect();
  if (table.tBodies[0].rows.length === 0) problems.push(`#${table.id} has no rows to check`);
  if (table.scrollWidth > scroller.clientWidth || scroller.scrollWidth > scroller.clientWidth) {
    problems.push(`#${table.id} is ${table.scrollWidth} px wide in a ${scroller.clientWidth} px panel`);
  }
  for (const el of table.querySelectorAll("th, td, .badge, button")) {
    const r = el.getBoundingClientRect();
    const what = `#${table.id} ${el.tagName.toLowerCase()} "${el.textContent.trim().slice(0, 40)}"`;
    if (!inside(r, box) || !inside(r, panelBox)) {
      problems.push(`${what} is clipped: ${Math.round(r.left)}–${Math.round(r.right)} px, its panel ${Math.round(box.left)}–${Math.round(box.right)}`);
    } else if (el.tagName !== "BUTTON" && el.scrollWidth > el.clientWidth + 1) {
      problems.push(`${what} overflows its cell (${el.scrollWidth} px in ${el.clientWidth})`);
    }
  }
}
return problems;
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_what_metrics_show_and_replays_dead_letters() {
    let gw = Setup::new().start().await;
    // The child benefit refuses everything for now: its deliveries die at once.
    gw.recipient("cra-child-benefit").respond(400);
    for _ in 0..3 {
        let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    }
    let invalid = record("birth-registration-1.1-invalid.json");
    assert_eq!(gw.post_record("on-vital-stats", "birth-registration", &invalid).await.status, 422);
    let r = gw.post_record("on-health-plan", "address-change", &record("address-change-1.0.json")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    // Two valid dry runs: counted apart, neither accepted nor rejected.
    for _ in 0..2 {
        let body = record("address-change-1.0.json").to_string();
        assert_eq!(send(&gw, Some(gw.key("on-health-plan")), "/v1/validate/address-change", body).await, 200);
    }
    gw.recipient("cra-child-benefit").wait_for(4, Duration::from_secs(10)).await;
    gw.recipient("ottawa-city").wait_for(3, Duration::from_secs(10)).await;
    // Traffic goes on while the operator signs in: a territory sends invalid births.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (client, key, stop) = (gw.client.clone(), gw.key("nt-vital-stats").to_owned(), stop.clone());
        tokio::spawn(async move {
            let mut sent = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r =
                    client.post("/v1/records/birth-registration").bearer(&key).json_bytes(invalid_body()).send().await;
                assert!(r.status == 422 || r.status == 429, "{}", r.status);
                sent += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            sent
        })
    };

    let base = format!("http://{}", gw.gateway.as_ref().unwrap().admin_addr);
    let browser = Browser::start().await;
    browser.goto(&format!("{base}/console")).await;
    // A wrong token is refused on the form, in words.
    browser.type_into(&browser.find("#token").await, "not-the-token").await;
    browser.click(&browser.find("#sign-in").await).await;
    browser.wait_until("return !document.getElementById('login-failed').hidden;", Duration::from_secs(10)).await;
    browser.type_into(&browser.find("#token").await, "test-admin-token").await;
    browser.click(&browser.find("#sign-in").await).await;
    browser.wait_until("return !!document.body.dataset.generated;", Duration::from_secs(10)).await;

    // The session cookie: HttpOnly, SameSite=Strict, and not the token itself.
    let cookies = browser.cookies().await;
    let session = cookies.iter().find(|c| c["name"] == "passerelle_console").expect("the session cookie is set");
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["sameSite"], "Strict");
    assert!(!session["value"].as_str().unwrap().contains("test-admin-token"));
    assert_eq!(browser.execute("return document.cookie;", json!([])).await, "", "scripts cannot read the session");

    // The page follows the traffic, then the traffic stops and the backlog gauges settle
    // (they are measured every 2 s); what the page shows must then be what /metrics says.
    let territory = "#senders tr[data-sender=\"nt-vital-stats\"][data-record-type=\"birth-registration\"]";
    refreshed(&browser, now_ms()).await;
    assert!(cell(&browser, territory, "rejected").await > 0.0, "the live traffic shows");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = traffic.await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    refreshed(&browser, now_ms()).await;
    let page = gw.metrics().await;
    let received = |sender: &str, record_type: &str, outcome: &str| {
        metric(
            &page,
            "passerelle_records_received_total",
            &[("sender", sender), ("record_type", record_type), ("outcome", outcome)],
        )
    };
    let row = "#senders tr[data-sender=\"on-vital-stats\"][data-record-type=\"birth-registration\"]";
    assert_eq!(cell(&browser, row, "accepted").await, received("on-vital-stats", "birth-registration", "accepted"));
    assert_eq!(cell(&browser, row, "accepted").await, 3.0);
    assert_eq!(cell(&browser, row, "rejected").await, received("on-vital-stats", "birth-registration", "invalid"));
    assert_eq!(cell(&browser, row, "rejected").await, 1.0);
    let address = "#senders tr[data-sender=\"on-health-plan\"][data-record-type=\"address-change\"]";
    assert_eq!(cell(&browser, address, "accepted").await, received("on-health-plan", "address-change", "accepted"));
    assert_eq!(cell(&browser, address, "accepted").await, 1.0);
    assert_eq!(cell(&browser, address, "validated").await, received("on-health-plan", "address-change", "validated"));
    assert_eq!(cell(&browser, address, "validated").await, 2.0);
    assert_eq!(cell(&browser, address, "rejected").await, 0.0, "a valid dry run is not a rejection");
    let territory_total = metric(&page, "passerelle_records_received_total", &[("sender", "nt-vital-stats")]);
    assert_eq!(territory_total, f64::from(sent), "every request of the traffic is counted");
    assert_eq!(cell(&browser, territory, "rejected").await, territory_total);
    let invalid = metric(&page, "passerelle_records_received_total", &[("outcome", "invalid")]);
    assert_eq!(cell(&browser, "#reasons tr[data-reason=\"invalid\"]", "count").await, invalid);
    for recipient in ["esdc-sin-registry", "cra-child-benefit", "on-health-plan", "ottawa-city"] {
        let row = format!("#recipients tr[data-recipient=\"{recipient}\"]");
        let gauge = |name: &str| metric(&page, name, &[("recipient", recipient)]);
        assert_eq!(cell(&browser, &row, "pending").await, gauge("passerelle_deliveries_pending"), "{recipient}");
        assert_eq!(cell(&browser, &row, "dead").await, gauge("passerelle_deliveries_dead"), "{recipient}");
    }
    let cra = "#flows tr[data-recipient=\"cra-child-benefit\"][data-agreement=\"birth-federal-on\"]";
    let deliveries = |recipient: &str, agreement: &str, outcome: &str| {
        metric(
            &page,
            "passerelle_deliveries_total",
            &[("recipient", recipient), ("agreement", agreement), ("outcome", outcome)],
        )
    };
    assert_eq!(cell(&browser, cra, "dead").await, deliveries("cra-child-benefit", "birth-federal-on", "dead"));
    assert_eq!(cell(&browser, cra, "dead").await, 3.0);
    let ottawa = "#flows tr[data-recipient=\"ottawa-city\"][data-agreement=\"birth-ottawa\"]";
    assert_eq!(cell(&browser, ottawa, "delivered").await, deliveries("ottawa-city", "birth-ottawa", "delivered"));
    let breaker = browser.find("#recipients tr[data-recipient=\"esdc-sin-registry\"] .badge").await;
    assert_eq!(browser.text(&breaker).await, "closed");
    assert_eq!(browser.find_all("#dead-letters button.replay").await.len(), 4);
    assert_ne!(browser.text(&browser.find("#checkpoints").await).await, "…", "the audit panel is filled");
    let headers = browser
        .execute("return [...document.querySelectorAll('th')].map(th => th.textContent).join('|');", json!([]))
        .await;
    assert!(!headers.as_str().unwrap().contains("=>"), "every header is text: {headers}");
    assert!(headers.as_str().unwrap().contains("Duplicates"), "{headers}");
    assert!(headers.as_str().unwrap().contains("Valid dry runs"), "{headers}");

    // The charts' time axis says how much history there is: seconds, on a gateway just started
    // (not "−30 min"); the top of the scale is a peak per minute.
    browser
        .wait_until("return !!document.querySelector('#chart-records text.axis-from');", Duration::from_secs(15))
        .await;
    let axis = browser.text_at("#chart-records text.axis-from").await;
    let held: u64 = axis.strip_prefix('−').and_then(|l| l.strip_suffix(" s")).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!((1..=89).contains(&held), "a gateway up for seconds holds seconds of history, not {axis:?}");
    let peak = browser.text_at("#chart-records text.peak").await;
    assert!(peak.starts_with("peak ") && peak.ends_with("/min"), "{peak:?}");

    let screenshots = repo().join("target/console");
    let wide = screenshots.join("console-1280x800.png");
    browser.screenshot(&wide).await;
    report(&format!("console screenshot: {}", wide.display()));

    // French, and back.
    browser.click(&browser.find("#lang-toggle").await).await;
    assert_eq!(browser.text(&browser.find("#title").await).await, "Console d'exploitation Passerelle");
    assert_eq!(browser.text(&breaker_badge(&browser).await).await, "fermé");
    let french = screenshots.join("console-fr-1280x800.png");
    browser.screenshot(&french).await;
    report(&format!("console screenshot (French): {}", french.display()));
    browser.click(&browser.find("#lang-toggle").await).await;
    assert_eq!(browser.text(&browser.find("#title").await).await, "Passerelle operator console");

    // The child benefit is back; replay one dead letter with the mouse, after confirming.
    gw.recipient("cra-child-benefit").respond(202);
    let buttons = browser.find_all("#dead-letters button.replay").await;
    browser.click(&buttons[0]).await;
    browser.wait_until("return document.getElementById('confirm').open;", Duration::from_secs(5)).await;
    browser.click(&browser.find("#confirm-yes").await).await;
    gw.recipient("cra-child-benefit").wait_for(5, Duration::from_secs(10)).await;
    browser
        .wait_until(
            "return document.querySelectorAll('#dead-letters button.replay').length === 3;",
            Duration::from_secs(10),
        )
        .await;

    // And one with the keyboard only: Enter on the button, Tab from Cancel to Replay, Enter.
    browser.execute("document.querySelector('#dead-letters button.replay').focus();", json!([])).await;
    browser.press(&[ENTER]).await;
    browser.wait_until("return document.getElementById('confirm').open;", Duration::from_secs(5)).await;
    assert_eq!(
        browser.execute("return document.activeElement.id;", json!([])).await,
        "confirm-no",
        "the dialog opens on Cancel, the safe choice"
    );
    browser.press(&[TAB, ENTER]).await;
    gw.recipient("cra-child-benefit").wait_for(6, Duration::from_secs(10)).await;
    browser
        .wait_until(
            "return document.querySelectorAll('#dead-letters button.replay').length === 2;",
            Duration::from_secs(10),
        )
        .await;
    let page = gw.metrics().await;
    let replayed = ["birth-federal-on", "address-change-on"]
        .iter()
        .map(|a| {
            metric(
                &page,
                "passerelle_deliveries_total",
                &[("recipient", "cra-child-benefit"), ("agreement", a), ("outcome", "replayed")],
            )
        })
        .sum::<f64>();
    assert_eq!(replayed, 2.0);

    // A narrow window: the page reflows instead of scrolling sideways.
    browser.set_window(420, 800).await;
    browser
        .wait_until("return document.documentElement.scrollWidth <= window.innerWidth + 1;", Duration::from_secs(5))
        .await;
    let narrow = screenshots.join("console-narrow.png");
    browser.screenshot(&narrow).await;
    report(&format!("console screenshot (narrow): {}", narrow.display()));
    drop(browser);
    gw.stop().await;
}

/// A dry run that passes is `validated`: in the overview it has its own number, and is neither
/// a rejection (no reason, not in the rejected column) nor an accepted record nor a duplicate.
/// (`discovery.rs` checks the metric itself; the unit tests in `console.rs`, the chart.)
#[tokio::test]
async fn the_overview_counts_valid_dry_runs_apart_from_accepted_rejected_and_duplicates() {
    let gw = Setup::new().start().await;
    let (key, body) = (gw.key("nt-vital-stats").to_owned(), record("birth-registration-1.1.json").to_string());
    for _ in 0..3 {
        assert_eq!(send(&gw, Some(&key), "/v1/validate/birth-registration", body.clone()).await, 200);
    }
    let overview = gw.admin.get("/admin/v1/overview", "test-admin-token").await.json();
    let rows = overview["senders"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["sender"], "nt-vital-stats");
    assert_eq!((&rows[0]["validated"], &rows[0]["rejected"]), (&json!(3), &json!(0)), "{rows:?}");
    assert_eq!((&rows[0]["accepted"], &rows[0]["duplicate"]), (&json!(0), &json!(0)), "{rows:?}");
    assert_eq!(overview["rejection_reasons"], json!([]), "no reason, blank or otherwise");
    let page = gw.metrics().await;
    assert_eq!(metric(&page, "passerelle_records_received_total", &[("outcome", "validated")]), 3.0);
    gw.stop().await;
}

/// At 1,280 and 1,400 px, in English and in French (whose labels are longer), every table fits
/// its panel: nothing is clipped or hidden behind a sideways scroll. Screenshots of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_fits_its_panel_at_1280_and_1400_px_in_english_and_french() {
    let (gw, browser) = busy_console().await;
    let screenshots = repo().join("target/console");
    // Every language and width is checked (and photographed) before the test says what failed.
    let mut failures = Vec::new();
    for lang in ["en", "fr"] {
        speak(&browser, lang).await;
        for width in [1280u32, 1400] {
            // As an operator sees it (a window 800 px high, with a scroll bar), then all of it
            // at once for the screenshot.
            browser.set_window(width, 800).await;
            let inner = browser.execute("return window.innerWidth;", json!([])).await;
            assert_eq!(inner, width, "the window is {width} px wide");
            let problems = browser.execute(CLIPPED, json!([])).await;
            failures.extend(problems.as_array().unwrap().iter().map(|p| format!("{lang} at {width} px: {p}")));
            let height = browser.execute("return document.documentElement.scrollHeight;", json!([])).await;
            browser.set_window(width, height.as_u64().unwrap() as u32 + 16).await;
            let problems = browser.execute(CLIPPED, json!([])).await;
            failures
                .extend(problems.as_array().unwrap().iter().map(|p| format!("{lang} at {width} px, full height: {p}")));
            let path = screenshots.join(format!("console-{lang}-{width}.png"));
            browser.screenshot(&path).await;
            report(&format!("console screenshot ({lang}, {width} px): {}", path.display()));
        }
    }
    assert!(failures.is_empty(), "clipped or scrolling sideways:\n{}", failures.join("\n"));
    drop(browser);
    gw.stop().await;
}

/// In French, no English word is left on the page: not the `unknown` of an unauthenticated
/// sender or an unknown record type, not a breaker state, a rejection reason or a chart label.
/// Only what is marked `lang="en"` may be English (the gateway's own error messages, and the
/// "English" toggle).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_french_console_shows_no_english_word() {
    let (gw, browser) = busy_console().await;
    speak(&browser, "fr").await;
    let english = browser
        .execute(
            r##"
const words = new Set(["unknown", "peak", "pending", "now", "updated", "per minute"]);
for (const [key, en] of Object.entries(TEXT.en)) if (typeof en === "string" && en !== TEXT.fr[key]) words.add(en);
const untranslated = Object.keys(TEXT.en).filter((key) => !(key in TEXT.fr)).map((key) => `TEXT.fr has no ${key}`);
const escape = (w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const found = (text) => [...words].filter((w) => new RegExp(`(^|[^\\p{L}])${escape(w)}($|[^\\p{L}])`, "iu").test(text));
const shown = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  const el = walker.currentNode.parentElement, text = walker.currentNode.textContent.trim();
  if (text && el.getClientRects().length > 0 && el.closest("[lang]").lang !== "en") shown.push(text);
}
for (const el of document.querySelectorAll("[aria-label]")) if (el.closest("[lang]").lang !== "en") shown.push(el.getAttribute("aria-label"));
const hits = shown.flatMap((text) => found(text).map((w) => `"${w}" in "${text}"`));
const raw = [...document.querySelectorAll("#reasons tr[data-reason]")]
  .filter((tr) => tr.cells[0].textContent === tr.dataset.reason).map((tr) => `reason ${tr.dataset.reason} untranslated`);
return [...untranslated, ...hits, ...raw];
"##,
            json!([]),
        )
        .await;
    assert_eq!(english, json!([]), "English left on the French page");
    let unknown = "#senders tr[data-sender=\"unknown\"][data-record-type=\"birth-registration\"]";
    assert_eq!(browser.text(&browser.find(&format!("{unknown} td")).await).await, "inconnu (non authentifié)");
    drop(browser);
    gw.stop().await;
}

/// The charts' time axis says how much history they hold (two minutes of samples: "−2 min";
/// the full history: "−30 min"), and the top of each scale is labelled as a peak per minute
/// (the backlog's as a peak of pending deliveries), so a reader does not take it for a total.
/// Histories of known length drawn by the page itself, in both languages; the console test
/// above checks the live page (a gateway up for seconds: "−8 s").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_say_how_far_back_they_go_and_label_the_peak_per_minute() {
    let gw = Setup::new().start().await;
    let browser = Browser::start().await;
    sign_in(&browser, &gw).await;
    // Histories of 10-second points ending now, drawn by the page's own render().
    let labels = r##"
const o = structuredClone(last), now = o.generated_at_ms;
const history = (n, value) => Array.from({ length: n }, (_, i) => ({
  from: now - (n - i) * 10000, at: now - (n - i - 1) * 10000,
  accepted: value(i), rejected: 3, delivered: 1, retry: 0, dead: 0, pending: i,
}));
const drawn = (chart) => {
  render({ ...o, chart });
  return ["#chart-records text.axis-from", "#chart-records text.peak", "#chart-deliveries text.peak-count",
          "#chart-records text.axis-now"].map((css) => document.querySelector(css).textContent);
};
const result = [drawn(history(12, (i) => (i === 5 ? 12.5 : 1))), drawn(history(180, () => 2))];
render(last);
return result;
"##;
    assert_eq!(
        browser.execute(labels, json!([])).await,
        json!([
            ["−2 min", "peak 12.5/min", "peak 11 pending", "now"],
            ["−30 min", "peak 3/min", "peak 179 pending", "now"]
        ])
    );
    speak(&browser, "fr").await;
    assert_eq!(
        browser.execute(labels, json!([])).await,
        json!([
            ["−2 min", "pointe 12,5/min", "pointe 11 en attente", "maintenant"],
            ["−30 min", "pointe 3/min", "pointe 179 en attente", "maintenant"]
        ])
    );
    drop(browser);
    gw.stop().await;
}

async fn breaker_badge(browser: &Browser) -> String {
    browser.find("#recipients tr[data-recipient=\"esdc-sin-registry\"] .badge").await
}

/// Without a session the console is a sign-in form and the overview is refused; the form
/// refuses a cross-site post; the page defaults to French for a French browser; the page's
/// script and style run under a nonce-only CSP.
#[tokio::test]
async fn the_console_needs_a_session_and_speaks_the_browsers_language() {
    let gw = Setup::new().start().await;
    let login = gw.admin.send(Method::GET, "/console", &[("accept-language", "fr-CA,fr;q=0.9")], "").await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.text().contains("<html lang=\"fr\">"));
    assert!(login.text().contains("name=\"token\""));
    let csp = login.header("content-security-policy").unwrap().to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'nonce-"), "{csp}");
    assert_eq!(login.header("x-frame-options"), Some("DENY"));
    let overview = gw.admin.send(Method::GET, "/admin/v1/overview", &[], "").await;
    assert_eq!(overview.status, StatusCode::UNAUTHORIZED);
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let cross = gw
        .admin
        .send(Method::POST, "/console/login", &[form[0], ("origin", "http://evil.example")], "token=test-admin-token")
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert!(cross.header("set-cookie").is_none());
    let ok = gw.admin.send(Method::POST, "/console/login", &form, "token=test-admin-token").await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let cookie = ok.header("set-cookie").unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();
    let overview = gw.admin.send(Method::GET, "/admin/v1/overview", &[("cookie", &session)], "").await;
    assert_eq!(overview.status, StatusCode::OK);
    assert_eq!(overview.json()["store"], "sqlite");
    // A signed-in POST from another origin is still refused.
    let replay = gw
        .admin
        .send(
            Method::POST,
            "/admin/v1/recipients/ottawa-city/replay",
            &[("cookie", &session), ("origin", "http://evil.example")],
            "",
        )
        .await;
    assert_eq!(replay.status, StatusCode::FORBIDDEN);
    assert_eq!(overview.header("cache-control"), Some("no-store"));
    // Rotating the admin token (a reload) ends the sessions opened with the old one.
    let second = gw.admin.send(Method::POST, "/console/login", &form, "token=test-admin-token").await;
    let rotated = second.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    std::fs::write(gw.setup.config_dir().join("admin-token"), "a-new-admin-token\n").unwrap();
    let reload = gw.admin.send(Method::POST, "/admin/v1/reload", &[("cookie", &rotated)], "").await;
    assert_eq!(reload.status, StatusCode::OK, "{}", reload.text());
    let after = gw.admin.send(Method::GET, "/admin/v1/overview", &[("cookie", &rotated)], "").await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "a session does not outlive its token");
    // Guessing is slowed down: ten wrong tokens a minute, then 429 with Retry-After.
    for _ in 0..10 {
        let wrong = gw.admin.send(Method::POST, "/console/login", &form, "token=guess").await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    }
    let limited = gw.admin.send(Method::POST, "/console/login", &form, "token=a-new-admin-token").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.header("retry-after").is_some());
    let out = gw.admin.send(Method::POST, "/console/logout", &[("cookie", &session)], "").await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let overview = gw.admin.send(Method::GET, "/admin/v1/overview", &[("cookie", &session)], "").await;
    assert_eq!(overview.status, StatusCode::UNAUTHORIZED, "a signed-out session is gone");
    gw.stop().await;
}

/// Record values the investigation pages must not show unless a body is asked for.
const RECORD_VALUES: [&str; 5] = ["QC-2026-018355", "Gagnon-Okafor", "Sainte-Justine", "Lorimier", "H2H 2B4"];

/// Moves the console to the view of `hash`.
async fn go(browser: &Browser, hash: &str) {
    browser.execute("location.hash = arguments[0];", json!([hash])).await;
}

/// Saves a screenshot 1,280 px wide of the whole page to `target/console-screenshots/<name>.png`,
/// and says where in the test's output.
async fn screenshot_1280(browser: &Browser, name: &str) {
    let height = browser.execute("return document.documentElement.scrollHeight;", json!([])).await;
    browser.set_window(1280, height.as_u64().unwrap_or(800).clamp(800, 4000) as u32 + 16).await;
    let path = repo().join("target/console-screenshots").join(format!("{name}.png"));
    browser.screenshot(&path).await;
    browser.set_window(1280, 800).await;
    report(&format!("console screenshot ({name}, 1280 px): {}", path.display()));
}

/// Waits for the investigation view to have loaded `hash` and for `css` to be on the page.
async fn investigated(browser: &Browser, hash: &str, css: &str) {
    let script = format!(
        "return document.getElementById('investigate').dataset.loaded === {hash:?} && !!document.querySelector({css:?});"
    );
    browser.wait_until(&script, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_a_record_and_follows_its_deliveries_in_english_and_french() {
    let gw = Setup::new().start().await;
    gw.recipient("ottawa-city").fail_times(1, 503);
    let id = crate::delivery::post_birth(&gw).await;
    crate::delivery::wait_status(&gw, &id, "ottawa-city", "delivered").await;
    let browser = Browser::start().await;
    browser.set_window(1280, 800).await;
    sign_in(&browser, &gw).await;
    for (lang, retrying, title) in
        [("en", "retrying", "Find records"), ("fr", "nouvel essai prévu", "Trouver des enregistrements")]
    {
        speak(&browser, lang).await;
        // Find the record by its id with the search form.
        go(&browser, "#records").await;
        investigated(&browser, "#records", "#record-search").await;
        assert_eq!(browser.text(&browser.find("#investigate h2").await).await, title);
        browser.type_into(&browser.find("#record-search input[name=\"id\"]").await, &id).await;
        browser.click(&browser.find("#search").await).await;
        browser
            .wait_until("return !!document.querySelector('#records-found tbody tr');", Duration::from_secs(10))
            .await;
        // Open its page: the receipt, each delivery's timeline, the audit entries that name it.
        browser.click(&browser.find(&format!("#records-found a[href=\"#record/{id}\"]")).await).await;
        let city = ".delivery[data-recipient=\"ottawa-city\"]";
        investigated(&browser, &format!("#record/{id}"), &format!("{city} table")).await;
        let attempts = browser.find_all(&format!("{city} tbody tr")).await;
        assert_eq!(attempts.len(), 2, "a failed attempt, then the delivery");
        let first = browser.find(&format!("{city} tbody tr:first-child [data-status]")).await;
        assert_eq!(browser.text(&first).await, retrying);
        assert!(!browser.find_all("#receipt").await.is_empty());
        assert!(!browser.find_all("#record-audit tbody tr").await.is_empty(), "the admin reads the audit trail");
        // The admin may replay and read bodies: the buttons are there; no value is shown.
        assert!(!browser.find_all(&format!("{city} button.replay.recipient")).await.is_empty());
        assert!(!browser.find_all(&format!("{city} button.show-body")).await.is_empty());
        let text = browser.execute("return document.body.innerText;", json!([])).await;
        for value in RECORD_VALUES {
            assert!(!text.as_str().unwrap().contains(value), "{lang}: the page shows {value}");
        }
        screenshot_1280(&browser, &format!("record-{lang}")).await;
        // A body is fetched only on a click, and the read is audited.
        let reads = gw.audited("body.read", |_| true).await;
        assert!(browser.find_all(&format!("{city} pre.body")).await.is_empty());
        browser.click(&browser.find(&format!("{city} button.show-body")).await).await;
        let shown = format!("return !!document.querySelector({:?});", format!("{city} pre.body"));
        browser.wait_until(&shown, Duration::from_secs(10)).await;
        assert_eq!(gw.audited("body.read", |e| e.recipient.as_deref() == Some("ottawa-city")).await, reads + 1);

        // The city's page over the last 24 hours from the store, and the audit trail.
        browser.execute("document.getElementById('range').value = '24h';", json!([])).await;
        go(&browser, "#partner/ottawa-city").await;
        investigated(&browser, "#partner/ottawa-city", "#stats-buckets").await;
        let breaker = browser.find("#stats-breakers .badge").await;
        assert_eq!(browser.text(&breaker).await, if lang == "en" { "closed" } else { "fermé" });
        screenshot_1280(&browser, &format!("partner-{lang}")).await;
        go(&browser, "#audit").await;
        investigated(&browser, "#audit", "#audit-entries tbody tr").await;
        screenshot_1280(&browser, &format!("audit-{lang}")).await;
        go(&browser, "#deliveries?status=retrying").await;
        investigated(&browser, "#deliveries?status=retrying", "#delivery-filters").await;
        go(&browser, "").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_the_timeline_but_no_replay_no_body_and_no_value() {
    let gw = Setup::new().operators(&crate::investigate::operators_file()).start().await;
    gw.recipient("ottawa-city").fail_times(1, 503);
    let id = crate::delivery::post_birth(&gw).await;
    crate::delivery::wait_status(&gw, &id, "ottawa-city", "delivered").await;
    let browser = Browser::start().await;
    browser.set_window(1280, 800).await;
    browser.goto(&format!("{}/console", admin_base(&gw))).await;
    browser.type_into(&browser.find("#token").await, "viewer-token-0123456789abcdef").await;
    browser.click(&browser.find("#sign-in").await).await;
    browser.wait_until("return !!document.body.dataset.generated;", Duration::from_secs(10)).await;
    for lang in ["en", "fr"] {
        speak(&browser, lang).await;
        go(&browser, &format!("#record/{id}")).await;
        let city = ".delivery[data-recipient=\"ottawa-city\"]";
        investigated(&browser, &format!("#record/{id}"), &format!("{city} table")).await;
        assert_eq!(browser.find_all(&format!("{city} tbody tr")).await.len(), 2);
        assert!(browser.find_all("button.replay, button.show-body").await.is_empty(), "{lang}: a viewer may neither");
        assert!(browser.find_all("#record-audit").await.is_empty(), "{lang}: a viewer does not read the trail");
        let text = browser.execute("return document.body.innerText;", json!([])).await;
        for value in RECORD_VALUES {
            assert!(!text.as_str().unwrap().contains(value), "{lang}: the page shows {value}");
        }
        screenshot_1280(&browser, &format!("record-viewer-{lang}")).await;
        go(&browser, "").await;
    }
}
