//! The partners file: each partner, its delivery endpoint and rate limit, how its certificates
//! and API keys are recognised. Read once per load.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::model::{Contact, Jurisdiction, Language, Partner};
use super::raw;
use super::sources::{Sources, is_slug, problem, resolve};
use crate::delivery::LEASE_MARGIN;
use crate::delivery::batch::{BatchSettings, MAX_BATCH_BYTES, MAX_BATCH_RECORDS, MAX_BATCH_WAIT};
use crate::delivery::nats::{self, NatsAuth, NatsCredentials, NatsEndpoint, SubjectTemplate};
use crate::delivery::{DeliveryEndpoint, DeliveryMode, DeliverySettings};
use crate::ids::PartnerId;
use crate::problem::Problem;
use crate::rate_limit::RateLimit;

/// What the partners file gives: the partners, how their certificates are recognised, and the
/// API key hashes it lists inline.
#[derive(Default)]
pub(super) struct PartnersFile {
    pub(super) partners: Vec<Partner>,
    pub(super) certificates: crate::tls::CertIndex,
    /// `(partner, SHA-256 hex)` pairs, checked with the API keys file's (see [`api_keys`]).
    pub(super) inline_keys: Vec<(String, String)>,
    /// Each push or NATS recipient's TLS client configuration.
    pub(super) recipient_tls: BTreeMap<PartnerId, Arc<rustls::ClientConfig>>,
    /// The credentials file of each NATS recipient that names one.
    pub(super) nats_credentials: BTreeMap<PartnerId, NatsCredentials>,
}

/// The partners file, read once, or `None` when it cannot be read or parsed (that problem is
/// reported).
pub(super) fn load(
    files: &Sources,
    file: &Path,
    delivery: &DeliverySettings,
    max_body_bytes: usize,
    problems: &mut Vec<Problem>,
) -> Option<PartnersFile> {
    let raw = files.read_toml::<raw::RawPartners>(file, problems)?;
    let inline_keys =
        raw.partners.iter().flat_map(|p| p.api_key_sha256.iter().map(|hex| (p.id.clone(), hex.clone()))).collect();
    let base = file.parent().unwrap_or(Path::new("."));
    let mut seen = BTreeSet::new();
    let mut partners = Vec::new();
    let mut recipient_tls = BTreeMap::new();
    let mut nats_credentials = BTreeMap::new();
    for p in &raw.partners {
        if !id_is_free(file, p, &mut seen, problems) {
            continue;
        }
        let jurisdiction = match p.jurisdiction.as_str() {
            "federal" => Jurisdiction::Federal,
            "provincial" => Jurisdiction::Provincial,
            "territorial" => Jurisdiction::Territorial,
            "municipal" => Jurisdiction::Municipal,
            other => {
                problems.push(problem(
                    file,
                    format!("partner `{}`: jurisdiction `{other}` is not one of federal, provincial, territorial, municipal", p.id),
                    None,
                ));
                continue;
            }
        };
        let delivery = channel(file, p, problems).and_then(|d| {
            let recipient = Recipient { files, file, base, partner: p, raw: d, delivery, max_body_bytes };
            match mode(file, p, d, problems)? {
                Mode::Pull => Some(DeliveryMode::Pull),
                Mode::Push => {
                    let (endpoint, tls) = recipient.push(problems)?;
                    recipient_tls.insert(PartnerId::from(p.id.as_str()), tls);
                    Some(DeliveryMode::Push(endpoint))
                }
                Mode::Nats => {
                    let (endpoint, tls, credentials) = recipient.nats(problems)?;
                    recipient_tls.insert(PartnerId::from(p.id.as_str()), tls);
                    nats_credentials.extend(credentials.map(|c| (PartnerId::from(p.id.as_str()), c)));
                    Some(DeliveryMode::Nats(endpoint))
                }
            }
        });
        let rate_limit = p.rate_limit.as_ref().and_then(|r| {
            if r.per_second.is_finite() && r.per_second > 0.0 {
                Some(RateLimit { per_second: r.per_second, burst: r.burst.unwrap_or(r.per_second).max(1.0) })
            } else {
                problems.push(problem(
                    file,
                    format!("partner `{}`: rate_limit.per_second must be above 0", p.id),
                    None,
                ));
                None
            }
        });
        partners.push(Partner {
            id: Arc::from(p.id.as_str()),
            name_en: p.name_en.clone(),
            name_fr: p.name_fr.clone(),
            jurisdiction,
            region: p.region.clone(),
            delivery,
            notify: p.notify.is_some(),
            rate_limit,
            contacts: contacts(file, p, problems),
        });
    }
    let certificates = certificates(file, &raw, &partners, problems);
    Some(PartnersFile { partners, certificates, inline_keys, recipient_tls, nats_credentials })
}

/// Each partner's contacts, by partner id, read from the partners file alone and checked as a
/// full load checks them (ids and contacts; not delivery, certificates or keys), or `None` when
/// the file cannot be read or parsed (that problem is reported).
pub(super) fn contacts_only(
    files: &Sources,
    file: &Path,
    problems: &mut Vec<Problem>,
) -> Option<BTreeMap<PartnerId, Vec<Contact>>> {
    let raw = files.read_toml::<raw::RawPartners>(file, problems)?;
    let mut seen = BTreeSet::new();
    let mut partners = BTreeMap::new();
    for p in &raw.partners {
        if id_is_free(file, p, &mut seen, problems) {
            partners.insert(PartnerId::from(p.id.as_str()), contacts(file, p, problems));
        }
    }
    Some(partners)
}

/// Whether `p`'s id can name a partner: a slug, not the gateway's own, not taken by an earlier
/// partner of the file (`seen`). Each reason it cannot is reported.
fn id_is_free(file: &Path, p: &raw::RawPartner, seen: &mut BTreeSet<String>, problems: &mut Vec<Problem>) -> bool {
    if !is_slug(&p.id) {
        problems.push(problem(file, format!("partner id `{}` must be a slug (a-z, 0-9, -)", p.id), None));
        return false;
    }
    if p.id == crate::audit::notice::SENDER {
        problems.push(problem(
            file,
            format!("partner id `{}` is reserved: the gateway's completion notices are sent under it", p.id),
            Some("give the partner another id"),
        ));
        return false;
    }
    if !seen.insert(p.id.clone()) {
        problems.push(problem(
            file,
            format!("partner id `{}` is defined twice", p.id),
            Some("give each partner its own id"),
        ));
        return false;
    }
    true
}

/// A partner's `[[partner.contact]]` tables, each checked; those with a problem are left out.
/// A problem names a contact by its place in the partner's list (1 for the first), never by
/// its name or address: problems are logged when a reload is refused, and a person's name and
/// address stay out of logs.
fn contacts(file: &Path, p: &raw::RawPartner, problems: &mut Vec<Problem>) -> Vec<Contact> {
    let mut report = |message: String, fix: Option<&str>| {
        problems.push(problem(file, format!("partner `{}`: {message}", p.id), fix));
    };
    let mut contacts: Vec<(usize, Contact)> = Vec::new();
    for (n, c) in (1..).zip(&p.contacts) {
        let mut ok = true;
        if c.name.trim().is_empty() || c.name.chars().any(char::is_control) {
            report(
                format!("contact {n} has an empty name, or a line break or control character in it"),
                Some("write the person's or the team's name on one line"),
            );
            ok = false;
        }
        if !is_email(&c.email) {
            report(
                format!("the email of contact {n} is not one address such as name@example.gc.ca"),
                Some("write the address alone, in ASCII, without a display name, spaces or <>,;\""),
            );
            ok = false;
        }
        let language = match c.lang.as_str() {
            "en" => Some(Language::En),
            "fr" => Some(Language::Fr),
            other => {
                report(format!("contact {n}: lang `{other}` is not one of en, fr"), None);
                None
            }
        };
        if let Some(&(first, _)) = contacts.iter().find(|(_, k)| k.email.eq_ignore_ascii_case(&c.email)) {
            report(format!("contacts {first} and {n} have the same email"), Some("list each person once per partner"));
            ok = false;
        }
        if let (true, Some(language)) = (ok, language) {
            contacts.push((n, Contact { name: c.name.trim().to_owned(), email: c.email.clone(), language }));
        }
    }
    contacts.into_iter().map(|(_, c)| c).collect()
}

/// `local@domain` in ASCII: one `@`, a local part, and a domain of dot-separated labels, with no
/// space, control character or `<>,;:"()[]\{}` anywhere (Alertmanager would read those as a
/// display name, a second address or a template).
pub fn is_email(address: &str) -> bool {
    let plain =
        |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_graphic() && !"<>,;:\"()[]\\@{}".contains(c));
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    address.len() <= 254
        && local.len() <= 64
        && plain(local)
        && plain(domain)
        && domain.contains('.')
        && domain.split('.').all(|label| !label.is_empty())
}

/// The table that says how a partner takes what the gateway sends it: `[partner.delivery]` if
/// it receives records (its completion notices go the same way), else `[partner.notify]` if it
/// asked for notices.
fn channel<'p>(
    file: &Path,
    p: &'p raw::RawPartner,
    problems: &mut Vec<Problem>,
) -> Option<&'p raw::RawPartnerDelivery> {
    match (&p.delivery, &p.notify) {
        (Some(delivery), Some(notify)) => {
            let set = keys(notify).into_iter().filter(|(_, set, _)| *set).map(|(key, _, _)| key);
            for key in notify.mode.as_ref().map(|_| "mode").into_iter().chain(set) {
                problems.push(problem(
                    file,
                    format!("partner `{}`: [partner.notify] `{key}` is not used: a partner that receives records takes its notices the way of its [partner.delivery]", p.id),
                    Some("leave [partner.notify] empty"),
                ));
            }
            Some(delivery)
        }
        (None, Some(notify)) if notify.endpoint.is_none() && notify.mode.as_deref().unwrap_or("push") == "push" => {
            problems.push(problem(
                file,
                format!("partner `{}`: [partner.notify] needs an endpoint to push its completion notices to", p.id),
                Some("set endpoint in [partner.notify], or mode = \"pull\" to take them from its mailbox"),
            ));
            None
        }
        (delivery, notify) => delivery.as_ref().or(notify.as_ref()),
    }
}

/// How a recipient takes its records (`[partner.delivery] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Push,
    Pull,
    Nats,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Push => "push",
            Mode::Pull => "pull",
            Mode::Nats => "nats",
        }
    }

    /// What a recipient of this mode does without a key it does not use.
    fn takes(self) -> &'static str {
        match self {
            Mode::Push => "a push recipient is sent its records at its endpoint",
            Mode::Pull => "a pull recipient takes its records from its mailbox",
            Mode::Nats => "a nats recipient has its records published on its NATS server",
        }
    }
}

/// The `[partner.delivery]` keys besides `mode`: whether each is set, and the modes that use it.
fn keys(d: &raw::RawPartnerDelivery) -> [(&'static str, bool, &'static [Mode]); 13] {
    const PUSH: &[Mode] = &[Mode::Push];
    const NATS: &[Mode] = &[Mode::Nats];
    const BOTH: &[Mode] = &[Mode::Push, Mode::Nats];
    [
        ("endpoint", d.endpoint.is_some(), PUSH),
        ("bearer_token_env", d.bearer_token_env.is_some(), PUSH),
        ("batch", d.batch.is_some(), PUSH),
        ("url", d.url.is_some(), NATS),
        ("subject", d.subject.is_some(), NATS),
        ("creds_file", d.creds_file.is_some(), NATS),
        ("user_env", d.user_env.is_some(), NATS),
        ("password_env", d.password_env.is_some(), NATS),
        ("ca_file", d.ca_file.is_some(), BOTH),
        ("client_cert_file", d.client_cert_file.is_some(), BOTH),
        ("client_key_file", d.client_key_file.is_some(), BOTH),
        ("timeout_ms", d.timeout_ms.is_some(), BOTH),
        ("concurrency", d.concurrency.is_some(), BOTH),
    ]
}

/// The recipient's mode; each key set that the mode does not use is a problem.
fn mode(file: &Path, p: &raw::RawPartner, d: &raw::RawPartnerDelivery, problems: &mut Vec<Problem>) -> Option<Mode> {
    let mode = match d.mode.as_deref().unwrap_or("push") {
        "push" => Mode::Push,
        "pull" => Mode::Pull,
        "nats" => Mode::Nats,
        other => {
            problems.push(problem(
                file,
                format!("partner `{}`: delivery mode `{other}` is not one of push, pull, nats", p.id),
                None,
            ));
            return None;
        }
    };
    for (key, _, modes) in keys(d).into_iter().filter(|(_, set, modes)| *set && !modes.contains(&mode)) {
        let owners: Vec<&str> = modes.iter().map(|m| m.name()).collect();
        problems.push(problem(
            file,
            format!("partner `{}`: `{key}` is for {} delivery; {}", p.id, owners.join(" and "), mode.takes()),
            Some(&format!("remove it, or set mode = \"{}\"", owners[0])),
        ));
    }
    Some(mode)
}

/// One `[partner.delivery]` being read, with what reading it needs.
struct Recipient<'a> {
    files: &'a Sources,
    /// The partners file.
    file: &'a Path,
    /// Its directory, which relative paths resolve against.
    base: &'a Path,
    partner: &'a raw::RawPartner,
    raw: &'a raw::RawPartnerDelivery,
    /// The main file's `[delivery]`, which gives the defaults.
    delivery: &'a DeliverySettings,
    /// The main file's `limits.max_body_bytes`: the largest record, so the largest body.
    max_body_bytes: usize,
}

/// The TLS side of a push or NATS recipient: the files it is built from, and the client
/// configuration built.
struct RecipientTls {
    ca_file: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    config: Arc<rustls::ClientConfig>,
}

impl Recipient<'_> {
    fn problem(&self, problems: &mut Vec<Problem>, message: impl std::fmt::Display, fix: Option<&str>) {
        problems.push(problem(self.file, format!("partner `{}`: {message}", self.partner.id), fix));
    }

    /// A push recipient's endpoint and the TLS client configuration toward it.
    fn push(&self, problems: &mut Vec<Problem>) -> Option<(DeliveryEndpoint, Arc<rustls::ClientConfig>)> {
        let d = self.raw;
        let Some(url) = &d.endpoint else {
            self.problem(
                problems,
                "a push recipient needs a delivery endpoint",
                Some("set endpoint in its [partner.delivery], or mode = \"pull\" for a mailbox"),
            );
            return None;
        };
        let url_ok = (url.starts_with("http://") || url.starts_with("https://")) && url.parse::<http::Uri>().is_ok();
        if !url_ok {
            self.problem(problems, format!("delivery endpoint `{url}` is not an http(s) URL"), None);
        }
        let tls = self.tls(url.starts_with("https://").then_some("an HTTPS endpoint"), problems);
        let timeout = self.attempt_timeout(problems);
        let endpoint = DeliveryEndpoint {
            endpoint: url.trim_end_matches('/').to_owned(),
            ca_file: tls.ca_file,
            client_cert_file: tls.cert,
            client_key_file: tls.key,
            bearer_token_env: d.bearer_token_env.clone(),
            timeout,
            concurrency: self.concurrency(),
            batch: self.batch(timeout, problems),
        };
        Some((endpoint, tls.config))
    }

    /// A NATS recipient's server, subject and credentials, and the TLS client configuration
    /// toward its server.
    fn nats(
        &self,
        problems: &mut Vec<Problem>,
    ) -> Option<(NatsEndpoint, Arc<rustls::ClientConfig>, Option<NatsCredentials>)> {
        let d = self.raw;
        let (Some(url), Some(subject)) = (&d.url, &d.subject) else {
            if d.url.is_none() {
                self.problem(
                    problems,
                    "a nats recipient needs its NATS server's url",
                    Some("set url = \"nats://host:4222\" (or tls://) in its [partner.delivery]"),
                );
            }
            if d.subject.is_none() {
                self.problem(
                    problems,
                    "a nats recipient needs the subject its records are published on",
                    Some("set subject in its [partner.delivery], such as subject = \"records.{type}\""),
                );
            }
            return None;
        };
        if let Err(e) = nats::check_url(url) {
            let fix = matches!(e, nats::NatsSetupError::CredentialsInUrl)
                .then_some("remove them from the url; use creds_file, or user_env and password_env");
            self.problem(problems, e, fix);
        }
        let subject = SubjectTemplate::parse(subject).map_err(|e| self.problem(problems, e, None)).ok();
        let auth = self.nats_auth(problems);
        let credentials = match &auth {
            NatsAuth::CredsFile(path) => self.nats_credentials(path, problems),
            _ => None,
        };
        let tls = self.tls(url.starts_with("tls://").then_some("a tls:// NATS server"), problems);
        let endpoint = NatsEndpoint {
            url: url.clone(),
            subject: subject?,
            auth,
            ca_file: tls.ca_file,
            client_cert_file: tls.cert,
            client_key_file: tls.key,
            timeout: self.attempt_timeout(problems),
            concurrency: self.concurrency(),
        };
        Some((endpoint, tls.config, credentials))
    }

    /// How the gateway authenticates to a NATS server: a credentials file, or a user and
    /// password from the environment; never a secret in the file.
    fn nats_auth(&self, problems: &mut Vec<Problem>) -> NatsAuth {
        let d = self.raw;
        match (&d.creds_file, &d.user_env, &d.password_env) {
            (None, None, None) => NatsAuth::None,
            (Some(file), None, None) => NatsAuth::CredsFile(resolve(self.base, Some(file), "")),
            (None, Some(user_env), Some(password_env)) => {
                NatsAuth::UserPassword { user_env: user_env.clone(), password_env: password_env.clone() }
            }
            (Some(_), _, _) => {
                self.problem(problems, "set creds_file, or user_env and password_env, not both", None);
                NatsAuth::None
            }
            (None, _, _) => {
                self.problem(problems, "user_env and password_env go together", None);
                NatsAuth::None
            }
        }
    }

    fn nats_credentials(&self, path: &Path, problems: &mut Vec<Problem>) -> Option<NatsCredentials> {
        let text = match self.files.read(path).map(String::from_utf8) {
            Ok(Ok(text)) => text,
            Ok(Err(_)) => String::new(),
            Err(e) => {
                self.problem(problems, format!("creds_file {} cannot be read: {e}", path.display()), None);
                return None;
            }
        };
        NatsCredentials::parse(&text).map_err(|e| self.problem(problems, e, None)).ok()
    }

    /// The recipient's CAs (its own, or the main file's), the certificate the gateway presents
    /// to it, and the TLS client configuration they make. `secure` names what needs a CA, when
    /// the recipient's URL asks for TLS.
    fn tls(&self, secure: Option<&str>, problems: &mut Vec<Problem>) -> RecipientTls {
        let (d, base, delivery) = (self.raw, self.base, self.delivery);
        let ca_files = match &d.ca_file {
            Some(f) => vec![resolve(base, Some(f), "")],
            None => delivery.ca_files.clone(),
        };
        if let Some(what) = secure
            && ca_files.is_empty()
        {
            self.problem(
                problems,
                format!("{what} needs a CA to verify it"),
                Some("set delivery.ca_files in passerelle.toml or ca_file in the partner's [partner.delivery]"),
            );
        }
        let cert =
            d.client_cert_file.as_deref().map(|f| resolve(base, Some(f), "")).or(delivery.client_cert_file.clone());
        let key = d.client_key_file.as_deref().map(|f| resolve(base, Some(f), "")).or(delivery.client_key_file.clone());
        let config = crate::tls::recipient_client(&ca_files, cert.as_deref(), key.as_deref(), &|f| self.files.read(f))
            .unwrap_or_else(|e| {
                self.problem(problems, e, None);
                crate::tls::plain_client()
            });
        RecipientTls { ca_file: ca_files.first().cloned(), cert, key, config }
    }

    /// Time allowed for one attempt, which the delivery lease must outlast.
    fn attempt_timeout(&self, problems: &mut Vec<Problem>) -> Duration {
        let delivery = self.delivery;
        let timeout = self.raw.timeout_ms.map(Duration::from_millis).unwrap_or(delivery.attempt_timeout);
        // A lease shorter than an attempt lets another worker take the delivery while it is
        // still in flight (a duplicate, and strict order broken): the lease must outlast
        // the attempt and the recording of its result.
        if timeout + LEASE_MARGIN > delivery.lease {
            self.problem(
                problems,
                format!(
                    "its delivery timeout ({} ms) plus {} s must be within delivery.lease_secs ({} s)",
                    timeout.as_millis(),
                    LEASE_MARGIN.as_secs(),
                    delivery.lease.as_secs()
                ),
                Some("lower the partner's delivery.timeout_ms or raise delivery.lease_secs in the main file"),
            );
        }
        timeout
    }

    fn concurrency(&self) -> usize {
        self.raw.concurrency.unwrap_or(self.delivery.concurrency_per_recipient).max(1)
    }

    /// A push recipient's batch delivery, when it asks for one. Its wait comes out of the lease
    /// the batch's first records were claimed under, beside the attempt and its recording.
    fn batch(&self, timeout: Duration, problems: &mut Vec<Problem>) -> Option<BatchSettings> {
        let raw = self.raw.batch.as_ref()?;
        let mut ok = true;
        if !(1..=MAX_BATCH_RECORDS).contains(&raw.max_records) {
            self.problem(
                problems,
                format!("batch.max_records ({}) is not from 1 to {MAX_BATCH_RECORDS}", raw.max_records),
                None,
            );
            ok = false;
        }
        if ok && raw.max_records.saturating_mul(self.max_body_bytes) > MAX_BATCH_BYTES {
            self.problem(
                problems,
                format!(
                    "batch.max_records ({}) records of up to limits.max_body_bytes ({} bytes) each could make a batch of more than {} MiB",
                    raw.max_records,
                    self.max_body_bytes,
                    MAX_BATCH_BYTES / (1024 * 1024)
                ),
                Some("lower batch.max_records, or limits.max_body_bytes in the main file"),
            );
            ok = false;
        }
        let max_wait = Duration::from_millis(raw.max_wait_ms);
        if max_wait > MAX_BATCH_WAIT {
            let limit = MAX_BATCH_WAIT.as_millis();
            self.problem(problems, format!("batch.max_wait_ms ({}) is over {limit}", raw.max_wait_ms), None);
            ok = false;
        }
        if ok && max_wait + timeout + LEASE_MARGIN > self.delivery.lease {
            self.problem(
                problems,
                format!(
                    "its batch.max_wait_ms ({} ms) plus its delivery timeout ({} ms) plus {} s must be within delivery.lease_secs ({} s)",
                    raw.max_wait_ms,
                    timeout.as_millis(),
                    LEASE_MARGIN.as_secs(),
                    self.delivery.lease.as_secs()
                ),
                Some("lower batch.max_wait_ms or the delivery timeout, or raise delivery.lease_secs in the main file"),
            );
            ok = false;
        }
        ok.then_some(BatchSettings { max_records: raw.max_records, max_wait })
    }
}

/// Certificate names and SPKI pins, each claimed by one partner. Only entries of partners that
/// were loaded count (a malformed one is reported once, by [`load`]).
fn certificates(
    partners_file: &Path,
    raw: &raw::RawPartners,
    partners: &[Partner],
    problems: &mut Vec<Problem>,
) -> crate::tls::CertIndex {
    let mut index = crate::tls::CertIndex::default();
    for p in raw.partners.iter().filter(|p| partners.iter().any(|k| *k.id == *p.id)) {
        let id: PartnerId = Arc::from(p.id.as_str());
        for name in &p.cert_names {
            if let Some(other) = index.add_name(name, id.clone()).filter(|o| *o != id) {
                problems.push(problem(
                    partners_file,
                    format!("certificate name `{name}` is claimed by `{other}` and `{}`", p.id),
                    None,
                ));
            }
        }
        for pin in &p.cert_spki_sha256 {
            match crate::digest::decode_hex(pin.trim()).filter(|b| b.len() == 32) {
                Some(bytes) => {
                    let mut pin32 = [0u8; 32];
                    pin32.copy_from_slice(&bytes);
                    if let Some(other) = index.add_pin(pin32, id.clone()).filter(|o| *o != id) {
                        problems.push(problem(
                            partners_file,
                            format!("an SPKI pin is claimed by `{other}` and `{}`", p.id),
                            None,
                        ));
                    }
                }
                None => problems.push(problem(
                    partners_file,
                    format!("partner `{}`: cert_spki_sha256 entries are 64 hex characters", p.id),
                    None,
                )),
            }
        }
    }
    index
}

/// The API key index: hashes listed inline in the partners file and in the API keys file.
pub(super) fn api_keys(
    files: &Sources,
    inline: &[(String, String)],
    keys_file: Option<&Path>,
    partners_file: &Path,
    partners: &[Partner],
    partners_known: bool,
    problems: &mut Vec<Problem>,
) -> crate::auth::ApiKeyIndex {
    let mut index = crate::auth::ApiKeyIndex::default();
    let known: BTreeSet<&str> = partners.iter().map(|p| &*p.id).collect();
    let mut add = |file: &Path, partner: &str, hex: &str, problems: &mut Vec<Problem>| {
        if !known.contains(partner) {
            if !partners_known {
                return;
            }
            problems.push(problem(file, format!("API keys are listed for unknown partner `{partner}`"), None));
        } else if let Err(e) = index.add_sha256_hex(Arc::from(partner), hex) {
            problems.push(problem(file, format!("partner `{partner}`: {e}"), None));
        }
    };
    for (partner, hex) in inline {
        add(partners_file, partner, hex, problems);
    }
    if let Some(file) = keys_file
        && file.exists()
        && let Some(raw) = files.read_toml::<raw::RawApiKeys>(file, problems)
    {
        for (partner, hashes) in &raw.keys {
            for hex in hashes {
                add(file, partner, hex, problems);
            }
        }
    }
    index
}

#[cfg(test)]
mod tests {
    use super::is_email;

    #[test]
    fn an_email_is_one_plain_address() {
        for address in ["jane.doe@esdc.example", "o'brien+alerts@sub.ottawa.example", "a@b.ca"] {
            assert!(is_email(address), "{address}");
        }
        for address in [
            "",
            "jane.doe",
            "@esdc.example",
            "jane@",
            "jane@localhost",
            "jane@esdc..example",
            "jane@.esdc.example",
            "jane@esdc.example.",
            "jane@doe@esdc.example",
            "Jane Doe <jane@esdc.example>",
            "jane@esdc.example, kim@esdc.example",
            "jane@esdc.example;kim@esdc.example",
            "\"jane\"@esdc.example",
            "rené@esdc.example",
            "jane\n@esdc.example",
            "{{ .x }}@esdc.example",
        ] {
            assert!(!is_email(address), "{address:?}");
        }
    }
}
