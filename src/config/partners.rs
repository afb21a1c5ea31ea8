//! The partners file: each partner, its delivery endpoint and rate limit, how its certificates
//! and API keys are recognised. Read once per load.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::model::{Jurisdiction, Partner};
use super::raw;
use super::sources::{Sources, is_slug, problem, resolve};
use crate::delivery::{DeliveryEndpoint, DeliveryMode, DeliverySettings};
use crate::ids::PartnerId;
use crate::problem::Problem;
use crate::rate_limit::RateLimit;

/// How much longer than an attempt a delivery's lease must last (the result is recorded after it).
const LEASE_MARGIN: Duration = Duration::from_secs(1);

/// What the partners file gives: the partners, how their certificates are recognised, and the
/// API key hashes it lists inline.
#[derive(Default)]
pub(super) struct PartnersFile {
    pub(super) partners: Vec<Partner>,
    pub(super) certificates: crate::tls::CertIndex,
    /// `(partner, SHA-256 hex)` pairs, checked with the API keys file's (see [`api_keys`]).
    pub(super) inline_keys: Vec<(String, String)>,
    /// Each recipient's TLS client configuration.
    pub(super) recipient_tls: BTreeMap<PartnerId, Arc<rustls::ClientConfig>>,
}

/// The partners file, read once, or `None` when it cannot be read or parsed (that problem is
/// reported).
pub(super) fn load(
    files: &Sources,
    file: &Path,
    delivery: &DeliverySettings,
    problems: &mut Vec<Problem>,
) -> Option<PartnersFile> {
    let raw = files.read_toml::<raw::RawPartners>(file, problems)?;
    let inline_keys =
        raw.partners.iter().flat_map(|p| p.api_key_sha256.iter().map(|hex| (p.id.clone(), hex.clone()))).collect();
    let base = file.parent().unwrap_or(Path::new("."));
    let mut seen = BTreeSet::new();
    let mut partners = Vec::new();
    let mut recipient_tls = BTreeMap::new();
    for p in &raw.partners {
        if !is_slug(&p.id) {
            problems.push(problem(file, format!("partner id `{}` must be a slug (a-z, 0-9, -)", p.id), None));
            continue;
        }
        if p.id == crate::audit::notice::SENDER {
            problems.push(problem(
                file,
                format!("partner id `{}` is reserved: the gateway's completion notices are sent under it", p.id),
                Some("give the partner another id"),
            ));
            continue;
        }
        if !seen.insert(p.id.clone()) {
            problems.push(problem(
                file,
                format!("partner id `{}` is defined twice", p.id),
                Some("give each partner its own id"),
            ));
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
            mode(file, p, d, problems).and_then(|mode| match mode {
                Mode::Pull => Some(DeliveryMode::Pull),
                Mode::Push => {
                    let endpoint = push(files, file, base, p, d, delivery, problems)?;
                    recipient_tls.insert(PartnerId::from(p.id.as_str()), endpoint.1);
                    Some(DeliveryMode::Push(endpoint.0))
                }
            })
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
        });
    }
    let certificates = certificates(file, &raw, &partners, problems);
    Some(PartnersFile { partners, certificates, inline_keys, recipient_tls })
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
            for key in notify.mode.as_ref().map(|_| "mode").into_iter().chain(push_keys(notify)) {
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

/// The keys of a delivery table set that only push delivery uses.
fn push_keys(d: &raw::RawPartnerDelivery) -> impl Iterator<Item = &'static str> {
    let keys = [
        ("endpoint", d.endpoint.is_some()),
        ("ca_file", d.ca_file.is_some()),
        ("client_cert_file", d.client_cert_file.is_some()),
        ("client_key_file", d.client_key_file.is_some()),
        ("bearer_token_env", d.bearer_token_env.is_some()),
        ("timeout_ms", d.timeout_ms.is_some()),
        ("concurrency", d.concurrency.is_some()),
    ];
    keys.into_iter().filter(|(_, set)| *set).map(|(key, _)| key)
}

/// How a recipient takes its records (`[partner.delivery] mode`).
enum Mode {
    Push,
    Pull,
}

fn mode(file: &Path, p: &raw::RawPartner, d: &raw::RawPartnerDelivery, problems: &mut Vec<Problem>) -> Option<Mode> {
    match d.mode.as_deref().unwrap_or("push") {
        "push" => Some(Mode::Push),
        "pull" => {
            for key in push_keys(d) {
                problems.push(problem(
                    file,
                    format!("partner `{}`: `{key}` is for push delivery; a pull recipient takes its records from its mailbox", p.id),
                    Some("remove it, or set mode = \"push\""),
                ));
            }
            Some(Mode::Pull)
        }
        other => {
            problems.push(problem(
                file,
                format!("partner `{}`: delivery mode `{other}` is not one of push, pull", p.id),
                None,
            ));
            None
        }
    }
}

/// A push recipient's endpoint and the TLS client configuration toward it.
fn push(
    files: &Sources,
    file: &Path,
    base: &Path,
    p: &raw::RawPartner,
    d: &raw::RawPartnerDelivery,
    delivery: &DeliverySettings,
    problems: &mut Vec<Problem>,
) -> Option<(DeliveryEndpoint, Arc<rustls::ClientConfig>)> {
    let Some(url) = &d.endpoint else {
        problems.push(problem(
            file,
            format!("partner `{}`: a push recipient needs a delivery endpoint", p.id),
            Some("set endpoint in its [partner.delivery], or mode = \"pull\" for a mailbox"),
        ));
        return None;
    };
    let url_ok = (url.starts_with("http://") || url.starts_with("https://")) && url.parse::<http::Uri>().is_ok();
    if !url_ok {
        problems.push(problem(
            file,
            format!("partner `{}`: delivery endpoint `{}` is not an http(s) URL", p.id, url),
            None,
        ));
    }
    let ca_files = match &d.ca_file {
        Some(f) => vec![resolve(base, Some(f), "")],
        None => delivery.ca_files.clone(),
    };
    if url.starts_with("https://") && ca_files.is_empty() {
        problems.push(problem(
            file,
            format!("partner `{}`: an HTTPS endpoint needs a CA to verify it", p.id),
            Some("set delivery.ca_files in passerelle.toml or ca_file in the partner's [partner.delivery]"),
        ));
    }
    let cert = d.client_cert_file.as_deref().map(|f| resolve(base, Some(f), "")).or(delivery.client_cert_file.clone());
    let key = d.client_key_file.as_deref().map(|f| resolve(base, Some(f), "")).or(delivery.client_key_file.clone());
    let tls = crate::tls::recipient_client(&ca_files, cert.as_deref(), key.as_deref(), &|f| files.read(f))
        .unwrap_or_else(|e| {
            problems.push(problem(file, format!("partner `{}`: {e}", p.id), None));
            crate::tls::plain_client()
        });
    let timeout = d.timeout_ms.map(Duration::from_millis).unwrap_or(delivery.attempt_timeout);
    // A lease shorter than an attempt lets another worker take the delivery while it is
    // still in flight (a duplicate, and strict order broken): the lease must outlast
    // the attempt and the recording of its result.
    if timeout + LEASE_MARGIN > delivery.lease {
        problems.push(problem(
            file,
            format!(
                "partner `{}`: its delivery timeout ({} ms) plus {} s must be within delivery.lease_secs ({} s)",
                p.id,
                timeout.as_millis(),
                LEASE_MARGIN.as_secs(),
                delivery.lease.as_secs()
            ),
            Some("lower the partner's delivery.timeout_ms or raise delivery.lease_secs in the main file"),
        ));
    }
    let endpoint = DeliveryEndpoint {
        endpoint: url.trim_end_matches('/').to_owned(),
        ca_file: ca_files.first().cloned(),
        client_cert_file: cert,
        client_key_file: key,
        bearer_token_env: d.bearer_token_env.clone(),
        timeout,
        concurrency: d.concurrency.unwrap_or(delivery.concurrency_per_recipient).max(1),
    };
    Some((endpoint, tls))
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
