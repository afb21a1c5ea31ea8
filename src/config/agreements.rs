//! Agreements: one file each, checked against the partners, the schema catalog and each other,
//! and built into the [`Agreement`]s [`crate::policy`] routes by.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::model::Partner;
use super::raw;
use super::sources::{Sources, is_slug, problem};
use crate::delivery::DeliveryMode;
use crate::pointer::FieldPointer;
use crate::policy::{Agreement, AgreementRecipient, Conflict, DisclosureTerms, FieldList, Mode};
use crate::problem::Problem;
use crate::schema::{RecordType, SchemaCatalog, Version};

/// Every `<id>.toml` in the agreements directory, checked against the partners and schemas,
/// then against each other ([`crate::policy::conflicts`]).
pub(super) fn load(
    files: &Sources,
    dir: &Path,
    partners: &[Partner],
    partners_known: bool,
    catalog: &SchemaCatalog,
    problems: &mut Vec<Problem>,
) -> Vec<Agreement> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(problem(dir, format!("the agreements directory cannot be read: {e}"), None));
            return Vec::new();
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();

    let partner_ids: BTreeMap<&str, &Partner> = partners.iter().map(|p| (&*p.id, p)).collect();
    let mut agreements: Vec<Agreement> = Vec::new();
    let mut ids: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in paths {
        let Some(raw) = files.read_toml::<raw::RawAgreement>(&file, problems) else {
            continue;
        };
        if let Some(first) = ids.get(&raw.id) {
            problems.push(problem(
                &file,
                format!("agreement id `{}` is already used by {}", raw.id, first.display()),
                Some("give each agreement its own id"),
            ));
            continue;
        }
        ids.insert(raw.id.clone(), file.clone());
        if let Some(agreement) = check_agreement(&file, raw, &partner_ids, partners_known, catalog, problems) {
            agreements.push(agreement);
        }
    }

    for conflict in crate::policy::conflicts(&agreements) {
        let (message, fix) = match conflict {
            Conflict::RecipientTwice { recipient, earlier, later } => (
                format!(
                    "recipient `{recipient}` also appears in agreement `{}` for the same sender `{}` and type `{}` while both are in force",
                    earlier.id, earlier.sender, earlier.record_type
                ),
                (later, Some("keep the recipient in one agreement, or make the validity periods not overlap")),
            ),
            Conflict::RequestNotAlone { earlier, later } => (
                format!(
                    "agreements `{}` and `{}` are both in force for `{}` sending `{}`, and one is a request agreement, which must be the only one",
                    earlier.id, later.id, earlier.sender, earlier.record_type
                ),
                (later, None),
            ),
        };
        problems.push(problem(&fix.0.file, message, fix.1));
    }
    agreements
}

fn check_agreement(
    file: &Path,
    raw: raw::RawAgreement,
    partners: &BTreeMap<&str, &Partner>,
    partners_known: bool,
    catalog: &SchemaCatalog,
    problems: &mut Vec<Problem>,
) -> Option<Agreement> {
    let before = problems.len();
    let mut report = |message: String, fix: Option<&str>| problems.push(problem(file, message, fix));

    if !is_slug(&raw.id) {
        report(format!("agreement id `{}` must be a slug (a-z, 0-9, -)", raw.id), None);
    }
    if file.file_stem().and_then(|s| s.to_str()) != Some(raw.id.as_str()) {
        report(format!("agreement `{}` must be in a file named `{}.toml`", raw.id, raw.id), None);
    }
    if partners_known && !partners.contains_key(raw.sender.as_str()) {
        report(
            format!("sender `{}` is not a partner in the partners file", raw.sender),
            Some("add the partner or correct the id"),
        );
    }
    let mode = match raw.mode.as_deref().unwrap_or("push") {
        "push" => Mode::Push,
        "request" => Mode::Request,
        other => {
            report(format!("mode `{other}` is not `push` or `request`"), None);
            Mode::Push
        }
    };
    let valid_from = parse_instant(&raw.valid_from).map_err(|e| report(format!("valid_from: {e}"), None)).ok();
    let valid_until = raw
        .valid_until
        .as_deref()
        .map(|t| parse_instant(t).map_err(|e| report(format!("valid_until: {e}"), None)).ok())
        .unwrap_or(None);
    if let (Some(from), Some(until)) = (valid_from, valid_until)
        && until <= from
    {
        report(
            format!(
                "valid_until ({}) is not after valid_from ({})",
                raw.valid_until.as_deref().unwrap_or(""),
                raw.valid_from
            ),
            Some("valid_until is exclusive and must come after valid_from"),
        );
    }

    let record_type = catalog.record_type(&raw.record_type);
    if record_type.is_none() && !catalog.is_broken(&raw.record_type) {
        report(format!("record type `{}` has no schema in the schemas directory", raw.record_type), None);
    }
    if raw.versions.is_empty() {
        report("versions lists no schema version".to_owned(), None);
    }
    let mut versions = Vec::new();
    for v in &raw.versions {
        match v.parse::<Version>() {
            Ok(version) => {
                if let Some(t) = record_type {
                    match t.version(version) {
                        None if catalog.is_broken(&raw.record_type) => {}
                        None => report(format!("schema `{}` version {v} does not exist", raw.record_type), None),
                        Some(s) if mode == Mode::Request && s.response.is_none() => report(
                            format!(
                                "request agreement: schema `{}` version {v} has no response schema ({v}.response.json)",
                                raw.record_type
                            ),
                            None,
                        ),
                        Some(_) => {}
                    }
                }
                versions.push(version);
            }
            Err(_) => report(format!("version `{v}` is not MAJOR.MINOR"), None),
        }
    }
    versions.sort();
    versions.dedup();
    let mut sunset = BTreeMap::new();
    for (v, t) in &raw.sunset {
        match (v.parse::<Version>(), parse_instant(t)) {
            (Ok(version), Ok(at)) if versions.contains(&version) => {
                sunset.insert(version, at);
            }
            (Ok(_), Ok(_)) => report(format!("sunset names version {v}, which is not in versions"), None),
            (Err(_), _) => report(format!("sunset version `{v}` is not MAJOR.MINOR"), None),
            (_, Err(e)) => report(format!("sunset for {v}: {e}"), None),
        }
    }

    let mut recipients = Vec::new();
    if raw.recipients.is_empty() {
        report("the agreement has no recipient".to_owned(), None);
    }
    if mode == Mode::Request && raw.recipients.len() > 1 {
        report("a request agreement has exactly one recipient (the responder)".to_owned(), None);
    }
    let mut seen = BTreeSet::new();
    for r in raw.recipients {
        match partners.get(r.partner.as_str()) {
            None if !partners_known => {}
            None => report(
                format!("recipient `{}` is not a partner in the partners file", r.partner),
                Some("add the partner or correct the id"),
            ),
            Some(p) if p.delivery.is_none() => report(
                format!("recipient `{}` has no delivery endpoint in the partners file", r.partner),
                Some("add a [partner.delivery] table with its endpoint"),
            ),
            // A responder answers while the sender waits: the gateway must be able to call it.
            Some(p) if mode == Mode::Request && p.delivery.as_ref().is_some_and(|d| d.endpoint().is_none()) => report(
                format!(
                    "responder `{}` {}; a request agreement needs an endpoint the gateway calls",
                    r.partner,
                    match p.delivery {
                        Some(DeliveryMode::Nats(_)) => "has its records published on NATS (mode = \"nats\")",
                        _ => "takes its records from a mailbox (mode = \"pull\")",
                    }
                ),
                Some("give the responder a push endpoint, or make the agreement mode = \"push\""),
            ),
            Some(_) => {}
        }
        if r.partner == raw.sender {
            report(format!("the sender `{}` is also a recipient", r.partner), None);
        }
        if !seen.insert(r.partner.clone()) {
            report(format!("recipient `{}` is listed twice", r.partner), None);
        }
        let fields = parse_fields(&r.fields, &format!("recipient `{}`", r.partner), &mut report);
        let pinned = r.version.as_deref().and_then(|v| match v.parse::<Version>() {
            Ok(version) if record_type.is_none_or(|t| t.version(version).is_some()) => Some(version),
            Ok(_) => {
                report(
                    format!("recipient `{}`: schema `{}` version {v} does not exist", r.partner, raw.record_type),
                    Some("pin a version the schemas directory holds"),
                );
                None
            }
            Err(_) => {
                report(format!("recipient `{}`: version `{v}` is not MAJOR.MINOR", r.partner), None);
                None
            }
        });
        if let Some(t) = record_type {
            // A pinned recipient's fields are in its version's terms; another receives each
            // accepted version as sent, so its fields must hold in every one.
            let received: Vec<Version> = pinned.map_or_else(|| versions.clone(), |v| vec![v]);
            for field in fields.pointers() {
                for version in &received {
                    if let Some(s) = t.version(*version)
                        && !s.can_produce(field)
                    {
                        report(
                            format!(
                                "recipient `{}`: field `{field}` cannot be produced by schema `{}` version {version}",
                                r.partner, raw.record_type
                            ),
                            Some(if pinned.is_some() {
                                "correct the pointer: a pinned recipient's fields are in its version's terms"
                            } else {
                                "correct the pointer, or drop the version from versions"
                            }),
                        );
                    }
                }
            }
        }
        if let (Some(t), Some(pin)) = (record_type, pinned) {
            check_translations(raw.id.as_str(), &r, t, pin, &versions, &fields, catalog, &mut report);
        }
        let accept_loss = r
            .accept_loss
            .iter()
            .filter_map(|p| match p.parse::<FieldPointer>() {
                Ok(pointer) => Some(pointer),
                Err(_) => {
                    report(format!("recipient `{}`: accept_loss `{p}` is not a JSON Pointer", r.partner), None);
                    None
                }
            })
            .collect();
        let terms = Arc::new(DisclosureTerms::new(
            raw.purpose.clone(),
            fields.pointers().iter().map(ToString::to_string).collect(),
        ));
        recipients.push(AgreementRecipient {
            partner: Arc::from(r.partner.as_str()),
            fields,
            terms,
            ordered: r.ordered,
            version: pinned,
            accept_loss,
        });
    }

    let response_fields = match mode {
        Mode::Request => {
            if raw.response_fields.is_empty() {
                report("a request agreement needs response_fields".to_owned(), None);
            }
            let fields = parse_fields(&raw.response_fields, "response_fields", &mut report);
            if let Some(t) = record_type {
                for field in fields.pointers() {
                    for version in &versions {
                        if let Some(response) = t.version(*version).and_then(|s| s.response.as_ref())
                            && !response.can_produce(field)
                        {
                            report(
                                format!(
                                    "response field `{field}` cannot be produced by the response schema of `{}` version {version}",
                                    raw.record_type
                                ),
                                None,
                            );
                        }
                    }
                }
            }
            Some(fields)
        }
        Mode::Push => {
            if !raw.response_fields.is_empty() {
                report("response_fields only applies to mode = \"request\"".to_owned(), None);
            }
            None
        }
    };

    if problems.len() > before {
        return None;
    }
    Some(Agreement {
        id: Arc::from(raw.id.as_str()),
        title_en: raw.title_en,
        title_fr: raw.title_fr,
        sender: Arc::from(raw.sender.as_str()),
        record_type: Arc::from(raw.record_type.as_str()),
        versions,
        sunset,
        purpose: raw.purpose,
        valid_from: valid_from?,
        valid_until,
        mode,
        recipients,
        response_fields,
        file: file.to_path_buf(),
    })
}

/// What `check` proves for a recipient pinned to `pin`: for every other version the agreement
/// accepts, a declared translation exists, produces every field the recipient selects, and
/// drops nothing the recipient may receive unless `accept_loss` says so.
#[allow(clippy::too_many_arguments)]
fn check_translations(
    agreement: &str,
    r: &raw::RawRecipient,
    t: &RecordType,
    pin: Version,
    versions: &[Version],
    fields: &FieldList,
    catalog: &SchemaCatalog,
    report: &mut impl FnMut(String, Option<&str>),
) {
    let Some(target) = t.version(pin) else { return };
    for &sent in versions.iter().filter(|v| **v != pin) {
        let Some(source) = t.version(sent) else { continue };
        let who = format!("agreement `{agreement}`, recipient `{}` (pinned to {pin})", r.partner);
        let Some(translation) = catalog.translation(&t.name, sent, pin) else {
            report(
                format!("{who}: records sent in {sent} have no translation to {pin}"),
                Some(&format!("add schemas/{}/{sent}-to-{pin}.toml, or drop {sent} from versions", t.name)),
            );
            continue;
        };
        for field in translation.unproduced(fields.pointers(), source.dereferenced()) {
            report(
                format!(
                    "{who}: field `{field}` of {pin} is produced by nothing in the translation from {sent}: version \
                     {sent} has no such field and no rule writes it"
                ),
                Some("add a map, join, split or constant rule for it, or drop the field"),
            );
        }
        let accepted: Vec<Vec<crate::pointer::Segment>> = r
            .accept_loss
            .iter()
            .filter_map(|p| p.parse::<FieldPointer>().ok())
            .map(|p| p.segments().to_vec())
            .collect();
        for lost in translation.losses(fields.pointers(), source.dereferenced(), target.dereferenced()) {
            let Ok(pointer) = lost.parse::<FieldPointer>() else { continue };
            if accepted.iter().any(|a| pointer.segments().starts_with(a)) {
                continue;
            }
            report(
                format!(
                    "{who}: the translation from {sent} drops `{lost}`, which the recipient may receive in {sent} \
                     and {pin} has no place for"
                ),
                Some(&format!("map it to a field of {pin}, or accept the loss: accept_loss = [\"{lost}\"]")),
            );
        }
    }
}

fn parse_fields(fields: &[String], whose: &str, report: &mut impl FnMut(String, Option<&str>)) -> FieldList {
    let mut pointers = Vec::new();
    if fields.is_empty() {
        report(format!("{whose}: fields is empty"), None);
    }
    for f in fields {
        match f.parse::<FieldPointer>() {
            Ok(p) => pointers.push(p),
            Err(e) => report(
                format!("{whose}: field `{f}`: {e}"),
                Some("fields are JSON Pointers such as /child/date_of_birth; * selects every array element"),
            ),
        }
    }
    FieldList::new(pointers)
}

fn parse_instant(text: &str) -> Result<OffsetDateTime, String> {
    let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| format!("`{text}` is not an RFC 3339 date-time"))?;
    if t.offset() != time::UtcOffset::UTC {
        return Err(format!("`{text}` must be in UTC (end it with `Z`)"));
    }
    Ok(t)
}
