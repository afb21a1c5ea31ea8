//! The operator console: one self-contained page on the admin listener (`GET /console`), its
//! login, and the overview it polls (`GET /admin/v1/overview`).
//!
//! The page is `console.html`, compiled in: no build step, nothing fetched from elsewhere, its
//! script and style allowed by a per-response CSP nonce. Signing in with the admin token sets a
//! session cookie (`HttpOnly`, `SameSite=Strict`, never the token itself); the session then
//! stands for the bearer token on every admin call, and state-changing calls still need a
//! same-origin request (see [`super::admin`]).
//!
//! Every number the page shows comes from the gateway's own Prometheus counters and gauges, so
//! the console and `/metrics` cannot disagree. A sampler keeps the counters' totals every
//! [`SAMPLE_EVERY`] for `HISTORY`; rates per minute and the charts are computed from those
//! samples. The history is bounded and holds no record values (labels come from configuration).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::core::Collector;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::config::Config;
use crate::operators::{Directory, Operator, Permission, Target};
use crate::telemetry::{Metrics, RecordOutcome};

/// The session cookie's name.
pub const COOKIE: &str = "passerelle_console";
/// How long a console session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Sessions held at once; signing in beyond it ends the oldest.
const MAX_SESSIONS: usize = 64;
/// How often the sampler reads the counters.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// The shortest window a rate per minute is computed over.
const MIN_RATE_WINDOW: Duration = Duration::from_secs(30);
/// How far back the charts go.
const HISTORY: Duration = Duration::from_secs(30 * 60);

const PAGE: &str = include_str!("console.html");
const LOGIN: &str = include_str!("console-login.html");

/// The console's state: who is signed in, and the counters sampled for rates and charts.
pub struct Console {
    pub sessions: Sessions,
    pub history: Arc<History>,
}

/// Signed-in console sessions, by the SHA-256 of their cookie (the cookie itself is not kept).
/// Each remembers how its operator signed in, not what they may do: the operator is resolved
/// again through the configuration in force at every request, so a reload that removes an
/// operator, their token or their group's grants ends or narrows their sessions at once.
#[derive(Default)]
pub struct Sessions {
    by_digest: Mutex<HashMap<[u8; 32], Session>>,
    /// Recent failed sign-ins, to slow down guessing (see [`Sessions::may_try`]).
    failures: Mutex<VecDeque<Instant>>,
}

/// Failed sign-ins allowed per minute, for the whole listener.
const MAX_FAILURES_PER_MINUTE: usize = 10;

struct Session {
    expires: Instant,
    identity: Identity,
}

/// How a session's operator signed in.
#[derive(Debug, Clone)]
pub enum Identity {
    /// With a token (an operator's own or the bootstrap token): its SHA-256.
    Token([u8; 32]),
    /// Through the OpenID provider: the name and groups its ID token gave.
    SignIn { name: String, groups: Vec<String> },
}

impl Sessions {
    /// Starts a session for `identity` and returns the cookie value that stands for it.
    pub fn start(&self, identity: Identity) -> String {
        let secret: [u8; 32] = crate::random::bytes();
        let cookie: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut sessions = self.by_digest.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(digest(&cookie), Session { expires: now + SESSION_TTL, identity });
        cookie
    }

    /// The operator of the live session the request's `Cookie` header carries, as `directory`
    /// (the configuration in force) resolves them now.
    pub fn operator(&self, cookie_header: Option<&str>, directory: &Directory) -> Option<Operator> {
        let value = cookie_header.and_then(session_cookie)?;
        let identity = {
            let sessions = self.by_digest.lock().unwrap_or_else(|e| e.into_inner());
            let session = sessions.get(&digest(value)).filter(|s| s.expires > Instant::now())?;
            session.identity.clone()
        };
        match identity {
            Identity::Token(token) => directory.by_token_digest(&token),
            Identity::SignIn { name, groups } => directory.by_sign_in(&name, &groups),
        }
    }

    /// Whether a sign-in may be tried now; `Err` holds the seconds to wait. After
    /// `MAX_FAILURES_PER_MINUTE` wrong tokens in a minute, sign-ins wait (a page elsewhere that
    /// reaches the listener cannot guess at full speed).
    pub fn may_try(&self) -> Result<(), u64> {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        while failures.front().is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60)) {
            failures.pop_front();
        }
        match failures.front() {
            Some(first) if failures.len() >= MAX_FAILURES_PER_MINUTE => {
                Err(60u64.saturating_sub(now.duration_since(*first).as_secs()).max(1))
            }
            _ => Ok(()),
        }
    }

    /// Counts a wrong token.
    pub fn failed(&self) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_FAILURES_PER_MINUTE {
            failures.pop_front();
        }
        failures.push_back(Instant::now());
    }

    /// Ends the request's session, if any.
    pub fn end(&self, cookie_header: Option<&str>) {
        if let Some(value) = cookie_header.and_then(session_cookie) {
            self.by_digest.lock().unwrap_or_else(|e| e.into_inner()).remove(&digest(value));
        }
    }
}

fn digest(cookie: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, cookie.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The value of our cookie in a `Cookie` header.
fn session_cookie(header: &str) -> Option<&str> {
    header.split(';').find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// The `Set-Cookie` value for a session (or, with `None`, one that clears it). No `Secure`
/// attribute: the admin listener speaks plain HTTP and belongs on loopback or behind a proxy.
pub fn set_cookie(session: Option<&str>) -> String {
    match session {
        Some(value) => {
            format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", SESSION_TTL.as_secs())
        }
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    }
}

/// The counters' totals at one moment.
#[derive(Clone, Default)]
struct Sample {
    at_ms: i64,
    /// (sender, record type, outcome) → records.
    records: BTreeMap<(String, String, String), u64>,
    /// (recipient, agreement, outcome) → delivery attempts and replays.
    deliveries: BTreeMap<(String, String, String), u64>,
    /// recipient → deliveries pending.
    pending: BTreeMap<String, u64>,
}

/// The last `HISTORY` of samples.
#[derive(Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    fn push(&self, sample: Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let keep = (HISTORY.as_secs() / SAMPLE_EVERY.as_secs()) as usize + 1;
        while samples.len() >= keep {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    fn snapshot(&self) -> Vec<Sample> {
        self.samples.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

/// Samples the counters every [`SAMPLE_EVERY`] until shutdown.
pub async fn run_sampler(history: Arc<History>, metrics: Metrics, mut shutdown: watch::Receiver<bool>) {
    loop {
        history.push(sample(&metrics));
        tokio::select! {
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Every series of a metric: its labels (in `names` order) and its value.
fn series(collector: &impl Collector, names: &[&str]) -> Vec<(Vec<String>, f64)> {
    let mut out = Vec::new();
    for family in collector.collect() {
        let kind = family.get_field_type();
        for m in family.get_metric() {
            let labels = names
                .iter()
                .map(|n| {
                    m.get_label().iter().find(|l| l.name() == *n).map(|l| l.value().to_owned()).unwrap_or_default()
                })
                .collect();
            let value = match kind {
                prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
                prometheus::proto::MetricType::GAUGE => m.get_gauge().get_value(),
                _ => continue,
            };
            out.push((labels, value));
        }
    }
    out
}

fn triple(labels: Vec<String>) -> (String, String, String) {
    let mut it = labels.into_iter();
    (it.next().unwrap_or_default(), it.next().unwrap_or_default(), it.next().unwrap_or_default())
}

fn sample(metrics: &Metrics) -> Sample {
    Sample {
        at_ms: crate::clock::now_ms(),
        records: series(&metrics.records_received, &["sender", "record_type", "outcome"])
            .into_iter()
            .map(|(l, v)| (triple(l), v as u64))
            .collect(),
        deliveries: series(&metrics.deliveries, &["recipient", "agreement", "outcome"])
            .into_iter()
            .map(|(l, v)| (triple(l), v as u64))
            .collect(),
        pending: by_recipient(&metrics.deliveries_pending).into_iter().map(|(r, v)| (r, v as u64)).collect(),
    }
}

/// One sender and record type's records, now and at the base of the rates.
#[derive(Default)]
struct SenderTally {
    accepted: u64,
    rejected: u64,
    duplicate: u64,
    /// Dry runs (`POST /v1/validate/{type}`) that passed: nothing was stored, nothing refused.
    validated: u64,
    accepted_then: u64,
    rejected_then: u64,
}

/// A counter's total now, and at the base of the rates (`None` before there is a base).
type Totals = (u64, Option<u64>);

/// Record outcomes that are rejections (not accepted, not a replay, not a dry run that passed).
fn is_rejection(outcome: &str) -> bool {
    RecordOutcome::parse(outcome).is_none_or(RecordOutcome::is_rejection)
}

/// Per minute over the window from `then` to `now` (`None` until two samples exist).
fn per_minute(now_total: u64, then_total: Option<u64>, window_ms: i64) -> Value {
    match then_total {
        // A rate over a few seconds (just after start) says little: none until half a minute.
        Some(then) if window_ms >= MIN_RATE_WINDOW.as_millis() as i64 => json!(rate(then, now_total, window_ms)),
        _ => Value::Null,
    }
}

/// Per minute, to one decimal, from a counter going from `then` to `now` in `window_ms`.
fn rate(then: u64, now: u64, window_ms: i64) -> f64 {
    (now.saturating_sub(then) as f64 * 60_000.0 / window_ms as f64 * 10.0).round() / 10.0
}

/// A per-recipient gauge's values, by recipient.
/// Each recipient's circuit breaker as the console and the statistics name its state.
pub fn breakers(metrics: &Metrics) -> HashMap<String, &'static str> {
    by_recipient(&metrics.breaker_state).into_iter().map(|(recipient, v)| (recipient, breaker_state(v))).collect()
}

/// The breaker gauge's value as a state.
fn breaker_state(value: f64) -> &'static str {
    match value as i64 {
        2 => "open",
        1 => "probing",
        _ => "closed",
    }
}

fn by_recipient(collector: &impl Collector) -> HashMap<String, f64> {
    series(collector, &["recipient"]).into_iter().map(|(mut labels, v)| (labels.swap_remove(0), v)).collect()
}

/// Each sender and record type's records by what became of them, and the rejections by reason
/// (the outcome), from the totals `now` and at the `base` of the rates.
fn tally(now: &Sample, base: Option<&Sample>) -> (BTreeMap<(String, String), SenderTally>, BTreeMap<String, u64>) {
    let mut senders: BTreeMap<(String, String), SenderTally> = BTreeMap::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for ((sender, record_type, outcome), count) in &now.records {
        let then = base.and_then(|b| b.records.get(&(sender.clone(), record_type.clone(), outcome.clone()))).copied();
        let row = senders.entry((sender.clone(), record_type.clone())).or_default();
        match RecordOutcome::parse(outcome) {
            Some(RecordOutcome::Accepted) => {
                row.accepted += count;
                row.accepted_then += then.unwrap_or(0);
            }
            Some(RecordOutcome::Duplicate) => row.duplicate += count,
            // A passing dry run has its own column: it is neither a record stored nor a refusal.
            Some(RecordOutcome::Validated) => row.validated += count,
            // Every other outcome is a refusal (`RecordOutcome::is_rejection`; the unit test
            // `each_outcome_has_one_column` holds the two together), and so is a label this
            // build does not know.
            _ => {
                row.rejected += count;
                row.rejected_then += then.unwrap_or(0);
                *reasons.entry(outcome.clone()).or_default() += count;
            }
        }
    }
    (senders, reasons)
}

/// The charts' points: per minute between consecutive samples. Each point is the rate over
/// `from`..`at`, so the page can say how far back the history goes (the first point's `from`)
/// instead of assuming the full [`HISTORY`].
fn chart(points: &[Sample]) -> Vec<Value> {
    points
        .windows(2)
        // The last point (up to now) only once it spans half a sampling period, so it does not jump.
        .filter(|w| w[1].at_ms - w[0].at_ms >= SAMPLE_EVERY.as_millis() as i64 / 2)
        .map(|w| {
            let dt = w[1].at_ms - w[0].at_ms;
            let records = |s: &Sample, f: &dyn Fn(&str) -> bool| -> u64 {
                s.records.iter().filter(|((_, _, o), _)| f(o)).map(|(_, n)| n).sum()
            };
            let attempts = |s: &Sample, outcome: &str| -> u64 {
                s.deliveries.iter().filter(|((_, _, o), _)| o == outcome).map(|(_, n)| n).sum()
            };
            let rate = |a: u64, b: u64| rate(a, b, dt);
            json!({
                "from": w[0].at_ms,
                "at": w[1].at_ms,
                "accepted": rate(records(&w[0], &|o| o == "accepted"), records(&w[1], &|o| o == "accepted")),
                "rejected": rate(records(&w[0], &is_rejection), records(&w[1], &is_rejection)),
                "delivered": rate(attempts(&w[0], "delivered"), attempts(&w[1], "delivered")),
                "retry": rate(attempts(&w[0], "retry"), attempts(&w[1], "retry")),
                "dead": rate(attempts(&w[0], "dead"), attempts(&w[1], "dead")),
                "pending": w[1].pending.values().sum::<u64>(),
            })
        })
        .collect()
}

/// What the console shows, from the counters as they are now and the sampled history; `store`
/// names the store's engine.
///
/// Cut to `operator`'s scope: an operator whose grants are limited sees the senders, flows,
/// recipients, partners and agreements its grants cover, and neither the gateway-wide charts nor
/// the rejection reasons (totals over every partner).
pub fn overview(metrics: &Metrics, history: &History, store: &str, config: &Config, operator: &Operator) -> Value {
    let whole = operator.may_everywhere(Permission::View);
    let sees = |partners: &[&str], agreement: Option<&str>| {
        whole || operator.may_on(Permission::View, &Target { partners, agreement })
    };
    let now = sample(metrics);
    let history = history.snapshot();
    // The sample about a minute old (or the oldest there is) is the base of the rates.
    let base = history.iter().find(|s| s.at_ms >= now.at_ms - 60_000 - SAMPLE_EVERY.as_millis() as i64 / 2);
    let window = base.map_or(0, |b| now.at_ms - b.at_ms);

    let (senders, reasons) = tally(&now, base);
    let has_base = base.is_some();
    let senders: Vec<Value> = senders
        .into_iter()
        .filter(|((sender, _), _)| sees(&[sender], None))
        .map(|((sender, record_type), t)| {
            json!({
                "sender": sender,
                "record_type": record_type,
                "accepted": t.accepted,
                "rejected": t.rejected,
                "duplicate": t.duplicate,
                "validated": t.validated,
                "accepted_per_minute": per_minute(t.accepted, has_base.then_some(t.accepted_then), window),
                "rejected_per_minute": per_minute(t.rejected, has_base.then_some(t.rejected_then), window),
            })
        })
        .collect();

    // (recipient, agreement) → outcome → (total now, total at the base sample).
    let mut flows: BTreeMap<(String, String), BTreeMap<String, Totals>> = BTreeMap::new();
    for ((recipient, agreement, outcome), count) in &now.deliveries {
        let then = base
            .map(|b| b.deliveries.get(&(recipient.clone(), agreement.clone(), outcome.clone())).copied().unwrap_or(0));
        flows.entry((recipient.clone(), agreement.clone())).or_default().insert(outcome.clone(), (*count, then));
    }
    let deliveries: Vec<Value> = flows
        .into_iter()
        .filter(|((recipient, agreement), _)| sees(&[recipient], Some(agreement)))
        .map(|((recipient, agreement), outcomes)| {
            let mut row = json!({"recipient": recipient, "agreement": agreement});
            for outcome in ["delivered", "retry", "dead", "replayed"] {
                let (total, then) = outcomes.get(outcome).copied().unwrap_or((0, base.map(|_| 0)));
                row[outcome] = json!(total);
                row[format!("{outcome}_per_minute")] = per_minute(total, then, window);
            }
            row
        })
        .collect();

    let oldest = by_recipient(&metrics.delivery_oldest_pending);
    let dead = by_recipient(&metrics.deliveries_dead);
    let breakers = by_recipient(&metrics.breaker_state);
    let recipients: Vec<Value> = config
        .recipients()
        .filter_map(|p| Some((p, p.delivery.as_ref()?)))
        .filter(|(p, _)| sees(&[&p.id], None))
        .map(|(p, delivery)| {
            let id = p.id.to_string();
            json!({
                "recipient": id,
                "name_en": p.name_en,
                "name_fr": p.name_fr,
                // A pull recipient's pending deliveries are its mailbox, and it has no breaker.
                "mode": delivery.as_str(),
                "pending": now.pending.get(&id).copied().unwrap_or(0),
                "oldest_pending_seconds": oldest.get(&id).copied().unwrap_or(0.0),
                "dead": dead.get(&id).copied().unwrap_or(0.0) as u64,
                "breaker": breaker_state(breakers.get(&id).copied().unwrap_or(0.0)),
            })
        })
        .collect();

    // Charts: per minute between consecutive samples, the last one being now.
    let mut points = history;
    points.push(now.clone());
    let chart = if whole { chart(&points) } else { Vec::new() };

    let partners: Vec<Value> = config
        .settings
        .partners
        .values()
        .filter(|p| sees(&[&p.id], None))
        .map(|p| json!({"id": p.id.to_string(), "name_en": p.name_en, "name_fr": p.name_fr}))
        .collect();
    let agreements: Vec<Value> = config
        .built
        .agreements
        .iter()
        .filter(|a| {
            let parties: Vec<&str> =
                std::iter::once(&*a.sender).chain(a.recipients.iter().map(|r| &*r.partner)).collect();
            sees(&parties, Some(&a.id))
        })
        .map(|a| json!({"id": a.id.to_string(), "title_en": a.title_en, "title_fr": a.title_fr}))
        .collect();
    let checkpoint_at = metrics.audit_last_checkpoint.get();
    json!({
        "generated_at_ms": now.at_ms,
        "rate_window_seconds": window / 1000,
        "version": env!("CARGO_PKG_VERSION"),
        "config_fingerprint": config.fingerprint,
        "store": store,
        "partners": partners,
        "agreements": agreements,
        "senders": senders,
        "scope": if whole { "whole" } else { "limited" },
        "rejection_reasons": reasons.into_iter().filter(|_| whole).map(|(reason, count)| json!({"reason": reason, "count": count})).collect::<Vec<_>>(),
        "deliveries": deliveries,
        "recipients": recipients,
        "chart": chart,
        "audit": {
            "last_checkpoint_seq": metrics.audit_last_checkpoint_seq.get(),
            "last_checkpoint_at_ms": (checkpoint_at > 0.0).then_some((checkpoint_at * 1000.0) as i64),
            "checkpoints": metrics.audit_checkpoints.get(),
        },
    })
}

/// The console page, in `lang` until the operator switches, with `nonce` on its script and style.
pub fn page(lang: &str, nonce: &str) -> String {
    PAGE.replace("{{LANG}}", lang).replace("{{NONCE}}", nonce)
}

/// The sign-in page; `failed` shows that the last token was wrong.
pub fn login(lang: &str, nonce: &str, failed: bool) -> String {
    LOGIN
        .replace("{{LANG}}", lang)
        .replace("{{NONCE}}", nonce)
        .replace("{{FAILED}}", if failed { "" } else { "hidden" })
}

/// The `token` field of an `application/x-www-form-urlencoded` body.
pub fn form_token(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let raw = text.split('&').find_map(|pair| pair.strip_prefix("token="))?;
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok().map(|t| t.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(t: &str) -> Identity {
        Identity::Token(crate::digest::sha256(t.as_bytes()))
    }

    #[test]
    fn a_session_is_known_by_its_cookie_only_and_ends() {
        let sessions = Sessions::default();
        let directory = Directory::new(Vec::new(), Some("t"));
        let cookie = sessions.start(token("t"));
        let signed_in = |header: Option<&str>, directory: &Directory| sessions.operator(header, directory);
        let name = signed_in(Some(&format!("other=1; {COOKIE}={cookie}")), &directory).map(|o| o.name);
        assert_eq!(name.as_deref(), Some(crate::operators::BOOTSTRAP));
        assert!(signed_in(Some(&format!("{COOKIE}={}", "0".repeat(64))), &directory).is_none());
        assert!(signed_in(None, &directory).is_none());
        // A rotated or removed token ends the session.
        assert!(signed_in(Some(&format!("{COOKIE}={cookie}")), &Directory::new(Vec::new(), Some("new"))).is_none());
        assert!(signed_in(Some(&format!("{COOKIE}={cookie}")), &Directory::default()).is_none());
        sessions.end(Some(&format!("{COOKIE}={cookie}")));
        assert!(signed_in(Some(&format!("{COOKIE}={cookie}")), &directory).is_none());
    }

    #[test]
    fn wrong_tokens_are_slowed_down() {
        let sessions = Sessions::default();
        for _ in 0..MAX_FAILURES_PER_MINUTE {
            assert!(sessions.may_try().is_ok());
            sessions.failed();
        }
        let wait = sessions.may_try().unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::default();
        let first = sessions.start(token("t"));
        for _ in 0..MAX_SESSIONS {
            sessions.start(token("t"));
        }
        let directory = Directory::new(Vec::new(), Some("t"));
        let oldest = sessions.operator(Some(&format!("{COOKIE}={first}")), &directory);
        assert!(oldest.is_none(), "the oldest session made room");
        assert_eq!(sessions.by_digest.lock().unwrap().len(), MAX_SESSIONS);
    }

    #[test]
    fn the_form_token_is_decoded() {
        assert_eq!(form_token(b"token=abc%2Fd+e&x=1").as_deref(), Some("abc/d e"));
        assert_eq!(form_token(b"x=1"), None);
        assert_eq!(form_token(b"token=%zz"), None);
    }

    #[test]
    fn the_history_is_bounded() {
        let history = History::default();
        for i in 0..1000 {
            history.push(Sample { at_ms: i, ..Default::default() });
        }
        assert_eq!(history.snapshot().len(), (HISTORY.as_secs() / SAMPLE_EVERY.as_secs()) as usize + 1);
    }

    /// A sample at `at_ms` holding `records` as (sender, record type, outcome, total).
    fn records_at(at_ms: i64, records: &[(&str, &str, &str, u64)]) -> Sample {
        Sample {
            at_ms,
            records: records.iter().map(|(s, t, o, n)| ((s.to_string(), t.to_string(), o.to_string()), *n)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn valid_dry_runs_are_counted_apart_never_as_rejections() {
        let now = records_at(
            60_000,
            &[
                ("on-vital-stats", "birth-registration", "validated", 40),
                ("on-vital-stats", "birth-registration", "accepted", 3),
                ("on-vital-stats", "birth-registration", "duplicate", 1),
                ("on-vital-stats", "birth-registration", "invalid", 2),
                // A partner that only sends valid dry runs.
                ("nt-vital-stats", "birth-registration", "validated", 25),
            ],
        );
        let (senders, reasons) = tally(&now, None);
        let on = &senders[&("on-vital-stats".to_owned(), "birth-registration".to_owned())];
        assert_eq!((on.accepted, on.rejected, on.duplicate, on.validated), (3, 2, 1, 40));
        let nt = &senders[&("nt-vital-stats".to_owned(), "birth-registration".to_owned())];
        assert_eq!((nt.accepted, nt.rejected, nt.duplicate, nt.validated), (0, 0, 0, 25));
        assert_eq!(reasons.into_iter().collect::<Vec<_>>(), [("invalid".to_owned(), 2)], "no blank or dry-run reason");
    }

    #[test]
    fn each_outcome_has_one_column() {
        for outcome in RecordOutcome::ALL {
            let (senders, reasons) = tally(&records_at(0, &[("s", "t", outcome.as_str(), 1)]), None);
            let row = &senders[&("s".to_owned(), "t".to_owned())];
            assert_eq!(row.accepted + row.rejected + row.duplicate + row.validated, 1, "{outcome:?}");
            assert_eq!(row.rejected == 1, outcome.is_rejection(), "{outcome:?}");
            assert_eq!(reasons.contains_key(outcome.as_str()), outcome.is_rejection(), "{outcome:?}");
        }
        // A label this build does not know is shown as a refusal rather than hidden.
        let (senders, _) = tally(&records_at(0, &[("s", "t", "from-a-newer-build", 1)]), None);
        assert_eq!(senders[&("s".to_owned(), "t".to_owned())].rejected, 1);
    }

    #[test]
    fn the_chart_says_where_its_history_starts() {
        // Two minutes of samples, then now 4 s after the last one (too short to be a point).
        let samples: Vec<Sample> = (0..=12)
            .map(|i| records_at(1_000_000 + i * 10_000, &[("s", "t", "validated", i as u64 * 5)]))
            .chain([records_at(1_124_000, &[("s", "t", "validated", 60)])])
            .collect();
        let points = chart(&samples);
        assert_eq!(points.len(), 12);
        assert_eq!(points[0]["from"], 1_000_000, "the oldest sample, not now minus the full history");
        assert_eq!(points[11]["at"], 1_120_000);
        // Dry runs are neither accepted nor rejected records.
        assert!(points.iter().all(|p| p["accepted"] == 0.0 && p["rejected"] == 0.0), "{points:?}");
        assert!(chart(&samples[..1]).is_empty(), "one sample is no rate yet");
    }
}
