//! The access record of a person: `GET /admin/v1/access?subject=…` answers every disclosure the
//! gateway made about someone, found by one of their identifiers (a SIN, a registration
//! number, a health card number: the fields the schemas mark `x-passerelle-subject`).
//!
//! Each disclosure is one delivery of a record the person is a subject of: which partner
//! received which fields, under which agreement and for which purpose, who sent it, when it was
//! accepted and delivered, its status, and the audit entries that prove it (the record's
//! acceptance, the delivery's own once delivered). A recipient whose fields exclude the
//! identifier is there too: the subjects are taken from the record before projection. JSON by
//! default; a printable page, self-contained and without script, with `Accept: text/html` or
//! `format=html`; names and texts in English or French.
//!
//! **Invariant:** the identifier asked about is digested under the subject key as soon as it is
//! read and goes nowhere else: not to the store (which is asked by digest), the log line (which
//! names the route template), an error (which names the parameter), the answer or the audit
//! trail. The lookup itself is audited (`access.read`, the operator, how many disclosures),
//! before the answer is sent.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

use super::error::{AdminError, ApiError};
use super::i18n::Lang;
use super::records::{query_count, query_value};
use super::state::State;
use super::{json_response, store_json, text_response};
use crate::audit::{AuditEvent, kind};
use crate::config::Config;
use crate::operators::{Operator, Permission, Target};
use crate::store::{AccessQuery, DeliveryStatus, Disclosure};
use crate::telemetry::events::AccessRead;

/// Most disclosures one answer holds.
pub const MAX_PAGE: u64 = 1000;
/// Disclosures one answer holds when the caller does not say.
const DEFAULT_PAGE: u64 = 500;

/// Whether `Accept` asks for a page to read rather than JSON: `text/html` is acceptable and not
/// ranked below `application/json`.
pub fn wants_page(headers: &HeaderMap) -> bool {
    let accept = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    let quality = |media: &str| {
        accept.split(',').find_map(|part| {
            let mut pieces = part.split(';');
            let found = pieces.next()?.trim().eq_ignore_ascii_case(media);
            let q = pieces.find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()));
            found.then(|| q.unwrap_or(1.0))
        })
    };
    match (quality("text/html"), quality("application/json")) {
        (Some(html), Some(json)) => html > 0.0 && html >= json,
        (Some(html), None) => html > 0.0,
        (None, _) => false,
    }
}

/// `GET /admin/v1/access`: a page of the disclosures about the subject named by the query, as
/// JSON or (`page`, unless `format` says otherwise) as a printable page in `lang`; the lookup is
/// audited with `actor` as its actor.
pub async fn access(
    state: &State,
    query: &str,
    lang: Lang,
    operator: &Operator,
    page: bool,
) -> Result<Response<Full<Bytes>>, AdminError> {
    let actor = &operator.actor();
    let page = match query_value(query, "format")?.as_deref() {
        None => page,
        Some("json") => false,
        Some("html") => true,
        Some(_) => return Err(ApiError::BadQuery { parameter: "format" }.into()),
    };
    let after_id = query_count(query, "after", 0..=i64::MAX as u64)?.map(|n| n as i64);
    let limit = query_count(query, "limit", 1..=MAX_PAGE)?.unwrap_or(DEFAULT_PAGE) as usize;
    let subject = state
        .trail
        .subject_key
        .digest(&query_value(query, "subject")?.ok_or(ApiError::BadQuery { parameter: "subject" })?);
    let mut disclosures =
        state.store.access(AccessQuery { subject, after_id, limit }).await.map_err(ApiError::store)?;
    // An auditor limited to some partners or agreements sees the disclosures they cover; paging
    // goes on through the whole record (`next_after` is taken before the cut).
    let next_after = (disclosures.len() == limit).then(|| disclosures.last().map(|d| d.delivery_id)).flatten();
    if !operator.may_everywhere(Permission::ReadAccess) {
        disclosures.retain(|d| {
            let partners = [d.sender.as_str(), d.recipient.as_str()];
            operator.may_on(Permission::ReadAccess, &Target { partners: &partners, agreement: Some(&d.agreement) })
        });
    }

    let at = crate::clock::now_ms();
    let mut read = AuditEvent::new(at, kind::ACCESS_READ, actor, "read");
    read.count = disclosures.len() as i64;
    let stamps = state.store.append_audit(vec![read]).await.map_err(ApiError::store)?;
    let audit_seq = stamps.first().map_or(0, |s| s.seq);
    AccessRead { actor, disclosures: disclosures.len(), audit_seq }.emit();

    let config = state.config();
    let listed: Vec<DisclosureJson<'_>> = disclosures.iter().map(|d| disclosure(&config, d, lang)).collect();
    let mut response = if page {
        let nonce = crate::digest::to_hex(&crate::random::bytes::<16>());
        printable(&Printable { lang, disclosures: &listed, next_after, at, actor, audit_seq }, &nonce)
    } else {
        let answer = AccessJson { lang: lang.code(), disclosures: &listed, next_after, audit_seq };
        json_response(StatusCode::OK, serde_json::to_vec(&answer).unwrap_or_default())
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(lang.code()));
    // The answer depends on the language and on whether a page was asked for.
    h.insert(header::VARY, HeaderValue::from_static("accept, accept-language"));
    Ok(response)
}

/// A store that cannot answer, or cannot audit the lookup: nothing is answered unaudited.
/// The answer as JSON (the admin OpenAPI document's `AccessRecord`).
#[derive(Serialize)]
struct AccessJson<'a> {
    lang: &'static str,
    disclosures: &'a [DisclosureJson<'a>],
    /// The last delivery id of a full page: ask `after` it for the next one.
    next_after: Option<i64>,
    /// The seq of this lookup's own `access.read` entry.
    audit_seq: i64,
}

/// A partner as the answer names it: its id, and its name in the answer's language while the
/// configuration still has it.
#[derive(Serialize)]
struct PartyJson<'a> {
    id: &'a str,
    name: Option<&'a str>,
}

#[derive(Serialize)]
struct AgreementJson<'a> {
    id: &'a str,
    /// Its title in the answer's language, while the configuration still has it.
    title: Option<&'a str>,
    /// Its purpose as it read when the record was accepted.
    purpose: Option<&'a str>,
}

#[derive(Serialize)]
struct DisclosureJson<'a> {
    delivery_id: i64,
    record_id: &'a str,
    record_type: &'a str,
    schema_version: &'a str,
    sender: PartyJson<'a>,
    recipient: PartyJson<'a>,
    agreement: AgreementJson<'a>,
    /// The version the recipient received the record in.
    received_version: &'a str,
    /// The fields the recipient received: pointers, never values.
    fields: Option<&'a [String]>,
    accepted_at: String,
    accepted_seq: i64,
    #[serde(serialize_with = "label")]
    status: DeliveryStatus,
    delivered_at: Option<String>,
    delivered_seq: Option<i64>,
}

/// One disclosure as the answer shows it, its partners and agreement named from `config`.
fn disclosure<'a>(config: &'a Config, d: &'a Disclosure, lang: Lang) -> DisclosureJson<'a> {
    let party = |id: &'a str| PartyJson {
        id,
        name: config.partner(id).map(|p| lang.pick(p.name_en.as_str(), p.name_fr.as_str())),
    };
    let agreement = config.built.agreements.iter().find(|a| *a.id == *d.agreement);
    DisclosureJson {
        delivery_id: d.delivery_id,
        record_id: &d.record_id,
        record_type: &d.record_type,
        schema_version: &d.schema_version,
        sender: party(&d.sender),
        recipient: party(&d.recipient),
        agreement: AgreementJson {
            id: &d.agreement,
            title: agreement.map(|a| lang.pick(a.title_en.as_str(), a.title_fr.as_str())),
            purpose: d.terms.as_ref().map(|t| t.purpose()),
        },
        received_version: &d.received_version,
        fields: d.terms.as_ref().map(|t| t.fields()),
        accepted_at: store_json::time(d.accepted_at),
        accepted_seq: d.accepted_seq,
        status: d.status,
        delivered_at: d.delivered_at.map(store_json::time),
        delivered_seq: d.delivered_seq,
    }
}

/// A delivery's status as the store labels it (`queued`, `retrying`, `delivered`, `dead`).
fn label<S: serde::Serializer>(status: &DeliveryStatus, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(status.as_str())
}

/// What the printable page shows.
struct Printable<'a> {
    lang: Lang,
    disclosures: &'a [DisclosureJson<'a>],
    next_after: Option<i64>,
    /// Unix ms of the lookup.
    at: i64,
    actor: &'a str,
    audit_seq: i64,
}

/// The page's style: print-first, landscape, nothing loaded from anywhere.
const STYLE: &str = "\
@page { size: A4 landscape; margin: 12mm; }
body { font: 10pt/1.35 system-ui, sans-serif; color: #000; background: #fff; margin: 1.5em; }
h1 { font-size: 15pt; margin: 0 0 .3em; }
p { margin: .3em 0; max-width: 60em; }
table { border-collapse: collapse; width: 100%; margin-top: 1em; }
th, td { border: 1px solid #777; padding: .25em .4em; text-align: left; vertical-align: top; }
th { background: #eee; }
thead { display: table-header-group; }
tr { break-inside: avoid; }
code { font-size: 9pt; }
ul { margin: 0; padding-left: 1.1em; }
.small { font-size: 8.5pt; color: #333; }
@media print { body { margin: 0; } }
";

/// The printable page.
fn printable(p: &Printable<'_>, nonce: &str) -> Response<Full<Bytes>> {
    let lang = p.lang;
    let t = |en: &'static str, fr: &'static str| lang.pick(en, fr);
    let mut rows = String::new();
    for d in p.disclosures {
        let party = |party: &PartyJson<'_>| match party.name {
            Some(name) => format!("{}<br><span class=\"small\">{}</span>", escape(name), escape(party.id)),
            None => escape(party.id),
        };
        let fields = match d.fields {
            Some(fields) => {
                let items: String = fields.iter().map(|f| format!("<li><code>{}</code></li>", escape(f))).collect();
                format!("<ul>{items}</ul>")
            }
            None => t("not recorded", "non consignés").to_owned(),
        };
        let title = d.agreement.title.map(|title| format!("{}<br>", escape(title))).unwrap_or_default();
        // Purposes are written in one language, as the agreement gives them.
        let purpose = d.agreement.purpose.map(|p| format!("<br><span lang=\"en\">{}</span>", escape(p)));
        let delivered_seq = d.delivered_seq.map(|seq| format!("<br>{} #{seq}", t("delivered", "livraison")));
        rows.push_str(&format!(
            "<tr><td>{accepted}</td><td>{sender}</td><td>{record_type} {version}<br><span class=\"small\">{record_id}</span></td>\
             <td>{recipient}</td><td>{title}<span class=\"small\">{agreement}</span>{purpose}</td><td>{fields}</td>\
             <td>{status}</td><td>{delivered}</td><td>{accepted_label} #{accepted_seq}{delivered_seq}</td></tr>\n",
            accepted = escape(&d.accepted_at),
            sender = party(&d.sender),
            record_type = escape(d.record_type),
            version = escape(d.received_version),
            record_id = escape(d.record_id),
            recipient = party(&d.recipient),
            agreement = escape(d.agreement.id),
            purpose = purpose.unwrap_or_default(),
            status = status_text(d.status, lang),
            delivered = d.delivered_at.as_deref().map(escape).unwrap_or_default(),
            accepted_label = t("acceptance", "acceptation"),
            accepted_seq = d.accepted_seq,
            delivered_seq = delivered_seq.unwrap_or_default(),
        ));
    }
    let count = p.disclosures.len();
    let summary = match (count, lang) {
        (0, _) => t(
            "No disclosure is recorded for this identifier (or its records are past the access record's retention).",
            "Aucune communication n'est consignée pour cet identifiant (ou ses enregistrements ont dépassé la durée de conservation du registre).",
        )
        .to_owned(),
        (n, Lang::En) => format!("{n} disclosure(s), oldest first."),
        (n, Lang::Fr) => format!("{n} communication(s), de la plus ancienne à la plus récente."),
    };
    let more = p.next_after.map(|after| match lang {
        Lang::En => format!("<p>More disclosures follow: ask for the next page with <code>after={after}</code>.</p>"),
        Lang::Fr => format!(
            "<p>D'autres communications suivent : demandez la page suivante avec <code>after={after}</code>.</p>"
        ),
    });
    let generated = match lang {
        Lang::En => format!(
            "Produced {} for {}. This lookup is itself recorded in the audit trail (entry #{}).",
            store_json::time(p.at),
            escape(p.actor),
            p.audit_seq
        ),
        Lang::Fr => format!(
            "Produit le {} pour {}. Cette consultation est elle-même consignée dans la piste d'audit (entrée n° {}).",
            store_json::time(p.at),
            escape(p.actor),
            p.audit_seq
        ),
    };
    let head = [
        t("Accepted", "Accepté"),
        t("Sender", "Expéditeur"),
        t("Record", "Enregistrement"),
        t("Recipient", "Destinataire"),
        t("Agreement and purpose", "Entente et fin"),
        t("Fields received", "Champs reçus"),
        t("Status", "État"),
        t("Delivered", "Livré"),
        t("Audit entries", "Entrées d'audit"),
    ]
    .map(|h| format!("<th>{h}</th>"))
    .concat();
    let body = format!(
        "<!doctype html>\n<html lang=\"{code}\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n\
         <style nonce=\"{nonce}\">{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n<p>{intro}</p>\n<p>{summary}</p>\n\
         <table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}</tbody>\n</table>\n{more}<p class=\"small\">{generated}</p>\n\
         </body>\n</html>\n",
        code = lang.code(),
        title = t("Access record of a person", "Registre des communications concernant une personne"),
        intro = t(
            "Every delivery of a record this person is a subject of: which partner received which fields, under \
             which agreement and for which purpose, and when. The identifier looked up is neither shown nor kept.",
            "Chaque livraison d'un enregistrement dont cette personne est un sujet : quel partenaire a reçu quels \
             champs, en vertu de quelle entente, à quelle fin et quand. L'identifiant recherché n'est ni affiché ni \
             conservé.",
        ),
        more = more.unwrap_or_default(),
    );
    let mut response = text_response(StatusCode::OK, "text/html; charset=utf-8", body);
    let h = response.headers_mut();
    // No script at all; the one style element runs by its nonce; nothing is fetched or framed.
    let csp = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// A delivery's status as the page (and `passerelle access`) says it.
pub fn status_text(status: DeliveryStatus, lang: Lang) -> &'static str {
    match status {
        DeliveryStatus::Queued => lang.pick("queued", "en attente"),
        DeliveryStatus::Retrying => lang.pick("retrying", "nouvel essai prévu"),
        DeliveryStatus::Delivered => lang.pick("delivered", "livrée"),
        DeliveryStatus::Dead => lang.pick("failed (dead letter)", "en échec (lettre morte)"),
    }
}

/// `text` as HTML text or the content of a double-quoted attribute (the page has no other kind).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_given_when_html_is_acceptable_and_not_ranked_below_json() {
        let accept = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
            wants_page(&headers)
        };
        assert!(accept("text/html"));
        assert!(accept("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"));
        assert!(accept("application/json;q=0.5, text/html"));
        assert!(!accept("application/json"));
        assert!(!accept("application/json, text/html;q=0.9"));
        assert!(!accept("text/html;q=0"));
        assert!(!accept("*/*"));
        assert!(!wants_page(&HeaderMap::new()));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">Ville d'Ottawa & co</a>"),
            "&lt;a href=&quot;x&quot;&gt;Ville d'Ottawa &amp; co&lt;/a&gt;"
        );
    }
}
