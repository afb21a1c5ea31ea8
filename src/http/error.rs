//! Every way a partner API call can fail, and the one place that turns a failure into a
//! `application/problem+json` answer (RFC 9457) in English or French.
//!
//! Handlers return `ApiError`; none of them builds an error response itself. Each variant knows
//! its status, its problem type (`urn:passerelle:problem:<slug>`), its record outcome for the
//! metrics, and its texts. No text includes a submitted value.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::json;

use super::i18n::{Lang, violation_message};
use crate::json::JsonError;
use crate::operators::Permission;
use crate::schema::{Version, Violation, Violations};
use crate::telemetry::RecordOutcome;

/// What is wrong with a request header the gateway reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFault {
    /// Required and absent (`Host` on HTTP/1.1, RFC 9112 §3.2).
    Missing,
    /// Sent more than once where one value is meant: which one counts would be a guess.
    Repeated,
    /// Not in the header's syntax.
    Malformed,
}

/// A failed partner API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request head too large")]
    HeadersTooLarge { limit: usize },
    #[error("no route")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: String },
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("no agreement for this record type")]
    NoAgreement,
    #[error("no agreement in force")]
    NotInForce,
    #[error("schema version not accepted")]
    UnsupportedVersion { accepted: Vec<Version> },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("content encoding not accepted")]
    ContentEncoding,
    #[error("body too large")]
    TooLarge { limit: usize },
    #[error("body not received in time")]
    BodyTimeout,
    #[error("body is not acceptable JSON: {0}")]
    Malformed(JsonError),
    #[error("nesting too deep")]
    TooDeep { limit: usize },
    #[error("record violates its schema")]
    Invalid { violations: Violations },
    /// The record is valid, but its declared translation for a pinned recipient is not valid
    /// under the version the recipient receives: the agreement's translation is at fault.
    #[error("the record's translation from {from} to {to} is invalid")]
    TranslationFailed { recipient: String, from: Version, to: Version, violations: Vec<Violation>, total: usize },
    #[error("invalid idempotency key")]
    InvalidIdempotencyKey,
    #[error("invalid header {header}: {fault:?}")]
    InvalidHeader { header: &'static str, fault: HeaderFault },
    #[error("idempotency key reused with another body")]
    IdempotencyConflict,
    #[error("store unavailable: {0}")]
    StoreUnavailable(String),
    #[error("record not found")]
    RecordNotFound,
    #[error("schema not found")]
    SchemaNotFound,
    #[error("invalid query parameter")]
    BadQuery { parameter: &'static str },
    #[error("the body was cut off")]
    BodyAborted,
    #[error("the responder's answer does not match its schema")]
    UpstreamInvalid,
    #[error("the responder failed")]
    UpstreamError { status: Option<u16> },
    #[error("the responder did not answer in time")]
    UpstreamTimeout,
    #[error("the responder's circuit breaker is open")]
    BreakerOpen { retry_after_secs: u64 },
    #[error("the caller has no mailbox")]
    NoMailbox,
    #[error("too many callers wait on this mailbox")]
    InboxBusy { waiting: usize },
    #[error("deliveries not leased to the caller")]
    NotLeased { ids: Vec<i64> },
    #[error("invalid settlement: {field}")]
    InvalidSettlement { field: &'static str },
}

/// The expected syntax of a header the gateway parses, as a parenthesis for the detail text.
fn syntax(header: &str, lang: Lang) -> &'static str {
    match header {
        "Schema-Version" => lang.pick(
            " (MAJOR.MINOR, digits without leading zeros, such as 1.1)",
            " (MAJEURE.MINEURE, des chiffres sans zéro en tête, par exemple 1.1)",
        ),
        _ => "",
    }
}

/// What an error kind is, whatever its data: its status, problem type, record outcome and title.
struct Row {
    status: StatusCode,
    slug: &'static str,
    outcome: RecordOutcome,
    title: (&'static str, &'static str),
}

/// A request that matched no route: 404, or 405 with the route's methods.
impl From<super::routes::Miss> for ApiError {
    fn from(miss: super::routes::Miss) -> Self {
        match miss {
            super::routes::Miss::NotFound => ApiError::RouteNotFound,
            super::routes::Miss::MethodNotAllowed { allow } => ApiError::MethodNotAllowed { allow },
        }
    }
}

impl ApiError {
    /// The store failed: `503 store-unavailable`, its cause logged and never shown.
    pub fn store(e: crate::store::StoreError) -> Self {
        ApiError::StoreUnavailable(e.to_string())
    }

    /// Everything about this error that does not depend on its data: one row per kind (status,
    /// problem type, record outcome, title in English and French).
    #[rustfmt::skip]
    fn row(&self) -> Row {
        use ApiError::*;
        use RecordOutcome as O;
        use StatusCode as S;
        let row = |status, slug, outcome, en, fr| Row { status, slug, outcome, title: (en, fr) };
        match self {
            RouteNotFound => row(S::NOT_FOUND, "not-found", O::NotFound, "Not found", "Introuvable"),
            MethodNotAllowed { .. } => row(S::METHOD_NOT_ALLOWED, "method-not-allowed", O::NotFound, "Method not allowed", "Méthode non permise"),
            Unauthenticated => row(S::UNAUTHORIZED, "unauthenticated", O::Unauthenticated, "Authentication required", "Authentification requise"),
            RateLimited { .. } => row(S::TOO_MANY_REQUESTS, "rate-limited", O::RateLimited, "Too many requests", "Trop de requêtes"),
            NoAgreement => row(S::NOT_FOUND, "no-agreement", O::NotFound, "No agreement for this record type", "Aucune entente pour ce type d'enregistrement"),
            NotInForce => row(S::FORBIDDEN, "agreement-not-in-force", O::Forbidden, "No agreement in force", "Aucune entente en vigueur"),
            UnsupportedVersion { .. } => row(S::NOT_FOUND, "unsupported-schema-version", O::NotFound, "Schema version not accepted", "Version de schéma non acceptée"),
            UnsupportedMediaType => row(S::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", O::UnsupportedMediaType, "Unsupported media type", "Type de média non pris en charge"),
            ContentEncoding => row(S::UNSUPPORTED_MEDIA_TYPE, "unsupported-content-encoding", O::UnsupportedMediaType, "Content encoding not accepted", "Encodage de contenu non accepté"),
            TooLarge { .. } => row(S::PAYLOAD_TOO_LARGE, "payload-too-large", O::TooLarge, "Record too large", "Enregistrement trop volumineux"),
            BodyTimeout => row(S::REQUEST_TIMEOUT, "body-timeout", O::Malformed, "Body not received in time", "Corps non reçu à temps"),
            Malformed(_) => row(S::BAD_REQUEST, "malformed-json", O::Malformed, "Malformed JSON", "JSON mal formé"),
            BodyAborted => row(S::BAD_REQUEST, "malformed-json", O::Malformed, "Malformed JSON", "JSON mal formé"),
            TooDeep { .. } => row(S::PAYLOAD_TOO_LARGE, "nesting-too-deep", O::Malformed, "Record nested too deeply", "Enregistrement trop imbriqué"),
            Invalid { .. } => row(S::UNPROCESSABLE_ENTITY, "schema-violation", O::Invalid, "The record does not match its schema", "L'enregistrement ne respecte pas son schéma"),
            TranslationFailed { .. } => row(S::UNPROCESSABLE_ENTITY, "translation-failed", O::Invalid, "The record's translation for a recipient is invalid", "La traduction de l'enregistrement pour un destinataire est invalide"),
            InvalidIdempotencyKey => row(S::BAD_REQUEST, "invalid-idempotency-key", O::Malformed, "Invalid Idempotency-Key", "Idempotency-Key invalide"),
            InvalidHeader { .. } => row(S::BAD_REQUEST, "invalid-header", O::Malformed, "Invalid request header", "En-tête de requête invalide"),
            IdempotencyConflict => row(S::CONFLICT, "idempotency-conflict", O::Conflict, "Idempotency-Key already used", "Idempotency-Key déjà utilisée"),
            StoreUnavailable(_) => row(S::SERVICE_UNAVAILABLE, "store-unavailable", O::Unavailable, "Service unavailable", "Service indisponible"),
            RecordNotFound => row(S::NOT_FOUND, "record-not-found", O::NotFound, "Record not found", "Enregistrement introuvable"),
            SchemaNotFound => row(S::NOT_FOUND, "schema-not-found", O::NotFound, "Schema not found", "Schéma introuvable"),
            BadQuery { .. } => row(S::BAD_REQUEST, "invalid-query", O::Malformed, "Invalid query parameter", "Paramètre de requête invalide"),
            HeadersTooLarge { .. } => row(S::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers-too-large", O::TooLarge, "Request headers too large", "En-têtes de requête trop volumineux"),
            UpstreamInvalid => row(S::BAD_GATEWAY, "upstream-invalid", O::Unavailable, "The responder's answer is invalid", "La réponse du répondant est invalide"),
            UpstreamError { .. } => row(S::BAD_GATEWAY, "upstream-error", O::Unavailable, "The responder failed", "Le répondant a échoué"),
            UpstreamTimeout => row(S::GATEWAY_TIMEOUT, "upstream-timeout", O::Unavailable, "The responder did not answer in time", "Le répondant n'a pas répondu à temps"),
            BreakerOpen { .. } => row(S::SERVICE_UNAVAILABLE, "upstream-unavailable", O::Unavailable, "The responder is unavailable", "Le répondant est indisponible"),
            NoMailbox => row(S::NOT_FOUND, "no-mailbox", O::NotFound, "No mailbox", "Aucune boîte de réception"),
            InboxBusy { .. } => row(S::TOO_MANY_REQUESTS, "inbox-busy", O::RateLimited, "Too many callers wait on this mailbox", "Trop d'appelants attendent à cette boîte de réception"),
            NotLeased { .. } => row(S::CONFLICT, "not-leased", O::Conflict, "Deliveries not leased to you", "Livraisons non louées à vous"),
            InvalidSettlement { .. } => row(S::BAD_REQUEST, "invalid-settlement", O::Malformed, "Invalid acknowledgement", "Accusé de réception invalide"),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.row().status
    }

    /// The record outcome counted in `passerelle_records_received_total`.
    pub fn outcome(&self) -> RecordOutcome {
        self.row().outcome
    }

    fn detail(&self, lang: Lang) -> String {
        use ApiError::*;
        let fr = lang == Lang::Fr;
        match self {
            RouteNotFound => lang.pick("No resource exists at this path.", "Aucune ressource n'existe à ce chemin.").into(),
            MethodNotAllowed { allow } => {
                if fr { format!("Cette ressource accepte seulement : {allow}.") } else { format!("This resource only accepts: {allow}.") }
            }
            Unauthenticated => lang
                .pick(
                    "Present a client certificate or an API key (Authorization: Bearer) that belongs to a partner.",
                    "Présentez un certificat client ou une clé d'API (Authorization: Bearer) appartenant à un partenaire.",
                )
                .into(),
            RateLimited { retry_after_secs } => {
                if fr { format!("Limite de débit atteinte; réessayez dans {retry_after_secs} s.") } else { format!("Rate limit reached; retry in {retry_after_secs} s.") }
            }
            NoAgreement => lang
                .pick(
                    "You are party to no agreement that lets you send this record type.",
                    "Vous n'êtes partie à aucune entente qui vous permet d'envoyer ce type d'enregistrement.",
                )
                .into(),
            NotInForce => lang
                .pick(
                    "Your agreements for this record type are not in force now (expired or not yet valid).",
                    "Vos ententes pour ce type d'enregistrement ne sont pas en vigueur maintenant (expirées ou pas encore valides).",
                )
                .into(),
            UnsupportedVersion { accepted } => {
                let list = accepted.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ");
                if fr { format!("Versions acceptées par vos ententes : {list}.") } else { format!("Versions accepted by your agreements: {list}.") }
            }
            UnsupportedMediaType => lang
                .pick("Send the record as Content-Type: application/json (charset utf-8).", "Envoyez l'enregistrement en Content-Type: application/json (charset utf-8).")
                .into(),
            ContentEncoding => lang.pick("Send the record without Content-Encoding.", "Envoyez l'enregistrement sans Content-Encoding.").into(),
            TooLarge { limit } => {
                if fr { format!("Le corps dépasse la limite de {limit} octets.") } else { format!("The body exceeds the limit of {limit} bytes.") }
            }
            BodyTimeout => lang.pick("The body was not received within the time allowed.", "Le corps n'a pas été reçu dans le délai permis.").into(),
            Malformed(e) => match e {
                JsonError::NotUtf8 => lang.pick("The body is not valid UTF-8.", "Le corps n'est pas de l'UTF-8 valide.").into(),
                JsonError::Syntax { line, column } => {
                    if fr { format!("Le corps n'est pas du JSON valide (ligne {line}, colonne {column}).") } else { format!("The body is not valid JSON (line {line}, column {column}).") }
                }
                JsonError::DuplicateKey { line, column } => {
                    if fr { format!("Un objet contient deux fois la même clé (ligne {line}, colonne {column}).") } else { format!("An object has the same key twice (line {line}, column {column}).") }
                }
                JsonError::TooDeep { limit } => TooDeep { limit: *limit }.detail(lang),
            },
            BodyAborted => lang.pick("The body was cut off before its end.", "Le corps a été interrompu avant sa fin.").into(),
            TooDeep { limit } => {
                if fr { format!("Les tableaux et objets sont imbriqués sur plus de {limit} niveaux.") } else { format!("Arrays and objects nest deeper than {limit} levels.") }
            }
            Invalid { violations } => {
                let (n, listed) = (violations.total(), violations.listed().len());
                if listed < n {
                    if fr {
                        format!("{n} violations du schéma; les {listed} premières sont dans « violations ».")
                    } else {
                        format!("{n} schema violations; the first {listed} are listed in \"violations\".")
                    }
                } else if fr {
                    format!("{n} violation(s) du schéma; voir « violations ».")
                } else {
                    format!("{n} schema violation(s); see \"violations\".")
                }
            }
            TranslationFailed { recipient, from, to, total: n, .. } => {
                if fr {
                    format!(
                        "L'enregistrement est valide en version {from}, mais sa traduction vers la version {to}, que \
                         reçoit {recipient}, enfreint le schéma {to} ({n} violation(s), voir « violations »). La \
                         traduction déclarée de l'entente doit être corrigée; rien n'a été conservé."
                    )
                } else {
                    format!(
                        "The record is valid in version {from}, but its translation to version {to}, which \
                         {recipient} receives, breaks the {to} schema ({n} violation(s), see \"violations\"). The \
                         agreement's declared translation must be fixed; nothing was stored."
                    )
                }
            }
            InvalidIdempotencyKey => lang
                .pick(
                    "Idempotency-Key must be sent once, as 1 to 256 visible ASCII characters.",
                    "Idempotency-Key doit être envoyée une seule fois, en 1 à 256 caractères ASCII visibles.",
                )
                .into(),
            InvalidHeader { header, fault } => match (fault, fr) {
                (HeaderFault::Missing, false) => format!("The {header} header is required."),
                (HeaderFault::Missing, true) => format!("L'en-tête {header} est obligatoire."),
                (HeaderFault::Repeated, false) => format!("Send the {header} header once."),
                (HeaderFault::Repeated, true) => format!("Envoyez l'en-tête {header} une seule fois."),
                (HeaderFault::Malformed, false) => format!("The {header} header is not in its syntax{}.", syntax(header, lang)),
                (HeaderFault::Malformed, true) => format!("L'en-tête {header} ne respecte pas sa syntaxe{}.", syntax(header, lang)),
            },
            IdempotencyConflict => lang
                .pick(
                    "This Idempotency-Key was already used with a different body. Use a new key for a new record.",
                    "Cette Idempotency-Key a déjà servi avec un autre corps. Utilisez une nouvelle clé pour un nouvel enregistrement.",
                )
                .into(),
            StoreUnavailable(_) => lang
                .pick(
                    "The record could not be stored and was not accepted. Retry with the same Idempotency-Key.",
                    "L'enregistrement n'a pas pu être stocké et n'a pas été accepté. Réessayez avec la même Idempotency-Key.",
                )
                .into(),
            RecordNotFound => lang.pick("You sent no record with this id.", "Vous n'avez envoyé aucun enregistrement avec cet identifiant.").into(),
            SchemaNotFound => lang.pick("You are party to no agreement using this schema.", "Vous n'êtes partie à aucune entente utilisant ce schéma.").into(),
            BadQuery { parameter } => {
                if fr { format!("Le paramètre « {parameter} » est invalide.") } else { format!("The parameter \"{parameter}\" is invalid.") }
            }
            HeadersTooLarge { limit } => {
                if fr {
                    format!("La ligne de requête et les en-têtes dépassent {limit} octets.")
                } else {
                    format!("The request line and headers exceed {limit} bytes.")
                }
            }
            UpstreamInvalid => lang
                .pick(
                    "The responder answered, but its answer does not match the agreed response schema; nothing of it is returned.",
                    "Le répondant a répondu, mais sa réponse ne respecte pas le schéma convenu; rien n'en est retourné.",
                )
                .into(),
            UpstreamError { status: Some(code) } => {
                if fr { format!("Le répondant a répondu avec le statut {code}.") } else { format!("The responder answered with status {code}.") }
            }
            UpstreamError { status: None } => lang
                .pick("The responder could not be reached.", "Le répondant n'a pas pu être joint.")
                .into(),
            UpstreamTimeout => lang
                .pick("The responder did not answer within the time allowed.", "Le répondant n'a pas répondu dans le délai permis.")
                .into(),
            BreakerOpen { retry_after_secs } => {
                if fr {
                    format!("Le répondant échoue à répétition; les requêtes reprendront dans {retry_after_secs} s.")
                } else {
                    format!("The responder keeps failing; requests resume in {retry_after_secs} s.")
                }
            }
            NoMailbox => lang
                .pick(
                    "You take no records from a mailbox: records reach you at your endpoint, or you receive none.",
                    "Vous ne prenez aucun enregistrement d'une boîte de réception : ils vous parviennent à votre point de terminaison, ou vous n'en recevez pas.",
                )
                .into(),
            InboxBusy { waiting } => {
                if fr {
                    format!("{waiting} appels attendent déjà à votre boîte de réception; réessayez dans 1 s.")
                } else {
                    format!("{waiting} calls already wait on your mailbox; retry in 1 s.")
                }
            }
            NotLeased { ids } => {
                let n = ids.len();
                if fr {
                    format!("{n} des livraisons nommées ne vous sont pas louées sous ce bail (jamais prises, reprises par un autre appel après l'expiration du bail, ou déjà réglées); rien n'a été changé.")
                } else {
                    format!("{n} of the deliveries named are not leased to you under this lease (never taken, taken by another call after the lease expired, or already settled); nothing was changed.")
                }
            }
            InvalidSettlement { field } => {
                if fr {
                    format!("« {field} » est absent ou invalide : envoyez {{\"lease\": …, \"deliveries\": [identifiants]}}, et pour nack un « reason » (1 à 64 caractères a-z, 0-9, -, _, .).")
                } else {
                    format!("\"{field}\" is missing or invalid: send {{\"lease\": …, \"deliveries\": [ids]}}, and for nack a \"reason\" (1 to 64 characters a-z, 0-9, -, _, .).")
                }
            }
        }
    }

    /// The problem document answering this error, for the request at `instance`.
    pub fn to_response(&self, lang: Lang, instance: &str) -> Response<Full<Bytes>> {
        let mut doc = problem(&self.row(), lang, self.detail(lang), instance);
        fn listed(violations: &[Violation], lang: Lang) -> Vec<ListedViolation<'_>> {
            violations
                .iter()
                .map(|v| ListedViolation {
                    keyword: v.keyword,
                    message: violation_message(v, lang),
                    pointer: &v.pointer,
                })
                .collect()
        }
        match self {
            ApiError::Invalid { violations } => {
                // The list stops at `LISTED_VIOLATIONS`, so the answer stays smaller than a
                // request full of mistakes; the total says how many there are.
                doc.violations = Some(listed(violations.listed(), lang));
                doc.violations_total = Some(violations.total());
            }
            ApiError::TranslationFailed { recipient, from, to, violations, total } => {
                doc.translation = Some(TranslationFailure { from: from.to_string(), recipient, to: to.to_string() });
                doc.violations = Some(listed(violations, lang));
                doc.violations_total = Some(*total);
            }
            ApiError::UnsupportedVersion { accepted } => {
                doc.accepted_versions = Some(accepted.iter().map(|v| v.to_string()).collect());
            }
            ApiError::UpstreamError { status: Some(code) } => doc.upstream_status = Some(*code),
            ApiError::InvalidHeader { header, .. } => doc.header = Some(header),
            ApiError::NotLeased { ids } => doc.not_leased = Some(ids),
            _ => {}
        }
        let mut response = respond(self.status(), lang, &doc);
        let headers = response.headers_mut();
        match self {
            ApiError::MethodNotAllowed { allow } => {
                if let Ok(allow) = HeaderValue::from_str(allow) {
                    headers.insert(header::ALLOW, allow);
                }
            }
            ApiError::RateLimited { retry_after_secs } | ApiError::BreakerOpen { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::StoreUnavailable(_) | ApiError::InboxBusy { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::Unauthenticated => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"passerelle\""));
            }
            _ => {}
        }
        response
    }
}

/// A problem document (RFC 9457) of the kind `row`, in `lang`.
fn problem<'a>(row: &Row, lang: Lang, detail: String, instance: &'a str) -> Problem<'a> {
    Problem {
        kind: format!("urn:passerelle:problem:{}", row.slug),
        title: lang.pick(row.title.0, row.title.1),
        status: row.status.as_u16(),
        detail,
        instance,
        ..Problem::default()
    }
}

/// A problem document (RFC 9457) with this API's extension members, serialised straight into
/// bytes. The members are declared in alphabetical order, the order a `serde_json::Value`
/// prints an object's members in: the bytes are the ones the document had when it was built
/// as a `Value` first (which was 6 % of the invalid flood's samples), and a test holds every
/// extension to that order.
#[derive(Debug, Default, serde::Serialize)]
struct Problem<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    accepted_versions: Option<Vec<String>>,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    header: Option<&'static str>,
    instance: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_leased: Option<&'a [i64]>,
    status: u16,
    title: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    translation: Option<TranslationFailure<'a>>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    violations: Option<Vec<ListedViolation<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    violations_total: Option<usize>,
}

/// `translation` of a `translation-failed` problem: which recipient, from and to which version.
#[derive(Debug, serde::Serialize)]
struct TranslationFailure<'a> {
    from: String,
    recipient: &'a str,
    to: String,
}

/// One listed violation: where, which keyword, and the message in the caller's language.
#[derive(Debug, serde::Serialize)]
struct ListedViolation<'a> {
    keyword: &'static str,
    message: String,
    pointer: &'a str,
}

/// `doc` as an answer with `status`, in `lang`.
fn respond(status: StatusCode, lang: Lang, doc: &Problem<'_>) -> Response<Full<Bytes>> {
    // Straight into bytes: `to_string` goes through `Display`, whose adaptor checks each piece
    // for UTF-8. Strings and numbers always serialise.
    let body = serde_json::to_vec(doc).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    headers.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(lang.code()));
    // The text depends on the caller's language: a cache must key on it.
    headers.insert(header::VARY, HeaderValue::from_static("accept-language"));
    response
}

/// A failed admin API call: the admin API's own errors, or one it shares with the partner API
/// (no route, another method, a missing `Host`, a bad query parameter, the store).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Shared(#[from] ApiError),
    #[error("the admin token is required")]
    TokenRequired,
    #[error("a state-changing call from another origin")]
    CrossOrigin,
    #[error("delivery not found")]
    DeliveryNotFound,
    #[error("record not found")]
    RecordNotFound,
    /// The body asked for was deleted after its retention; its metadata stays.
    #[error("the body was purged")]
    BodyPurged,
    /// The operator's roles do not hold the permission the call needs (`scoped`: they hold it,
    /// but not over what the call acts on).
    #[error("the operator may not: it needs {}", .needs.as_str())]
    Forbidden { needs: Permission, scoped: bool },
    /// A reload whose configuration has problems: the old one stays in force.
    #[error("the new configuration has {} problem(s)", .0.len())]
    ReloadRefused(Vec<crate::problem::Problem>),
}

impl AdminError {
    #[rustfmt::skip]
    fn row(&self) -> Option<Row> {
        use RecordOutcome as O;
        use StatusCode as S;
        let row = |status, slug, outcome, en, fr| Some(Row { status, slug, outcome, title: (en, fr) });
        match self {
            AdminError::TokenRequired => row(S::UNAUTHORIZED, "admin-token-required", O::Unauthenticated, "Admin token required", "Jeton d'administration requis"),
            AdminError::CrossOrigin => row(S::FORBIDDEN, "cross-origin", O::Forbidden, "Refused: another origin", "Refusé : autre origine"),
            AdminError::DeliveryNotFound => row(S::NOT_FOUND, "delivery-not-found", O::NotFound, "Delivery not found", "Livraison introuvable"),
            AdminError::RecordNotFound => row(S::NOT_FOUND, "record-not-found", O::NotFound, "Record not found", "Enregistrement introuvable"),
            AdminError::BodyPurged => row(S::GONE, "body-purged", O::NotFound, "Body purged", "Contenu purgé"),
            AdminError::Forbidden { .. } => row(S::FORBIDDEN, "operator-forbidden", O::Forbidden, "Not allowed for your role", "Non permis à votre rôle"),
            AdminError::Shared(_) | AdminError::ReloadRefused(_) => None,
        }
    }

    fn detail(&self, lang: Lang) -> String {
        use AdminError::*;
        match self {
            TokenRequired => lang
                .pick("Present the admin token as Authorization: Bearer.", "Présentez le jeton d'administration en Authorization: Bearer.")
                .into(),
            CrossOrigin => lang
                .pick(
                    "State-changing admin calls must come from the admin listener's own origin.",
                    "Les appels d'administration qui modifient l'état doivent venir de l'origine de l'écouteur d'administration.",
                )
                .into(),
            DeliveryNotFound => lang.pick("No delivery has this id.", "Aucune livraison n'a cet identifiant.").into(),
            RecordNotFound => lang.pick("No record has this id.", "Aucun enregistrement n'a cet identifiant.").into(),
            BodyPurged => lang
                .pick(
                    "The body was deleted after its retention period; its metadata and audit entries remain.",
                    "Le contenu a été supprimé après sa durée de conservation; ses métadonnées et ses entrées d'audit demeurent.",
                )
                .into(),
            Forbidden { needs, scoped } => {
                let roles = needs.roles().map(|r| r.as_str()).collect::<Vec<_>>().join(", ");
                let needs = needs.as_str();
                match (scoped, lang) {
                    (false, Lang::En) => format!("This call needs the permission `{needs}`, which only these roles hold: {roles}."),
                    (false, Lang::Fr) => format!("Cet appel exige la permission « {needs} », que seuls ces rôles détiennent : {roles}."),
                    (true, Lang::En) => format!("Your grant of `{needs}` is limited to other partners or agreements than the ones this call acts on."),
                    (true, Lang::Fr) => format!("Votre permission « {needs} » est limitée à d'autres partenaires ou ententes que ceux que cet appel touche."),
                }
            }
            Shared(_) | ReloadRefused(_) => String::new(),
        }
    }

    /// The answer to this error, for the request at `instance`.
    pub fn to_response(&self, lang: Lang, instance: &str) -> Response<Full<Bytes>> {
        match self {
            AdminError::Shared(e) => e.to_response(lang, instance),
            // What `POST /admin/v1/reload` has always answered: the problems, each a line.
            AdminError::ReloadRefused(problems) => {
                let body =
                    json!({"reloaded": false, "problems": problems.iter().map(|p| p.to_string()).collect::<Vec<_>>()});
                let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
                *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
                response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response
            }
            own => match own.row() {
                Some(row) => respond(row.status, lang, &problem(&row, lang, own.detail(lang), instance)),
                None => ApiError::RouteNotFound.to_response(lang, instance),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// The violations of the shipped invalid birth registration, as intake finds them.
    fn invalid_birth_registration() -> Violations {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let catalog = crate::schema::SchemaCatalog::load(&root.join("schemas")).unwrap();
        let schema = catalog.record_type("birth-registration").unwrap().version("1.1".parse().unwrap()).unwrap();
        let body = std::fs::read(root.join("tests/data/records/birth-registration-1.1-invalid.json")).unwrap();
        let violations = schema.check_body(&body, 64).unwrap().violations;
        assert!(violations.total() >= 2);
        violations
    }

    /// Every extension member, in both languages: the bytes are compact JSON with the members
    /// in the order a `serde_json::Value` prints them (what the answers were when documents were
    /// built as one), and hold what each error says.
    #[tokio::test]
    async fn problem_documents_are_compact_json_with_members_in_order_in_either_language() {
        use crate::schema::ViolationDetail;
        let violation = |pointer: &str| Violation {
            pointer: pointer.into(),
            keyword: "required",
            detail: ViolationDetail::Required { property: "given_names".into() },
        };
        let version = |v: &str| v.parse::<Version>().unwrap();
        let errors = [
            ApiError::UnsupportedMediaType,
            ApiError::Invalid { violations: invalid_birth_registration() },
            ApiError::TranslationFailed {
                recipient: "cra-child-benefit".into(),
                from: version("1.1"),
                to: version("1.0"),
                violations: vec![violation("/child")],
                total: 3,
            },
            ApiError::UnsupportedVersion { accepted: vec![version("1.0"), version("1.1")] },
            ApiError::UpstreamError { status: Some(502) },
            ApiError::InvalidHeader { header: "Idempotency-Key", fault: HeaderFault::Repeated },
            ApiError::NotLeased { ids: vec![4, 7] },
        ];
        let extensions = [
            &[][..],
            &["violations", "violations_total"],
            &["translation", "violations", "violations_total"],
            &["accepted_versions"],
            &["upstream_status"],
            &["header"],
            &["not_leased"],
        ];
        for lang in [Lang::En, Lang::Fr] {
            for (error, extension) in errors.iter().zip(extensions) {
                let body = error.to_response(lang, "/v1/records/birth-registration").into_body();
                let bytes = http_body_util::BodyExt::collect(body).await.unwrap().to_bytes();
                let doc: Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(serde_json::to_vec(&doc).unwrap(), bytes, "{error:?}");
                let mut members: Vec<&str> = doc.as_object().unwrap().keys().map(String::as_str).collect();
                members.retain(|m| !["type", "title", "status", "detail", "instance"].contains(m));
                assert_eq!(members, extension, "{error:?}");
                assert_eq!(doc["type"], format!("urn:passerelle:problem:{}", error.row().slug));
                assert_eq!(doc["status"], error.status().as_u16());
            }
        }
        let failed = errors[2].to_response(Lang::Fr, "/x").into_body();
        let doc: Value =
            serde_json::from_slice(&http_body_util::BodyExt::collect(failed).await.unwrap().to_bytes()).unwrap();
        assert_eq!(doc["translation"], json!({"recipient": "cra-child-benefit", "from": "1.1", "to": "1.0"}));
        assert_eq!(doc["violations"][0]["pointer"], "/child");
        assert_eq!(doc["violations"][0]["keyword"], "required");
        assert_eq!(doc["violations_total"], 3);
    }
}
