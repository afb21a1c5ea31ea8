//! `passerelle check`: every configuration problem, grouped by file, with the fix; and with
//! `--explain AGREEMENT`, what each recipient of an agreement receives and where each of its
//! fields comes from, in English then in French.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use crate::config;
use crate::http::i18n::Lang;
use crate::pointer::FieldPointer;
use crate::policy::{Agreement, AgreementRecipient};
use crate::problem::Problem;
use crate::schema::{SchemaCatalog, Version};

pub fn run(config_path: &Path, explain: Option<&str>) -> anyhow::Result<ExitCode> {
    match config::load(config_path) {
        Ok(config) => {
            let explained = match explain {
                None => None,
                Some(id) => match config.built.agreements.iter().find(|a| &*a.id == id) {
                    Some(agreement) => Some(agreement),
                    None => {
                        let known: Vec<&str> = config.built.agreements.iter().map(|a| &*a.id).collect();
                        eprintln!(
                            "error: {}: no agreement `{id}`; its agreements are {}.",
                            config_path.display(),
                            known.join(", ")
                        );
                        eprintln!(
                            "erreur : {} : aucune entente `{id}` ; ses ententes sont {}.",
                            config_path.display(),
                            known.join(", ")
                        );
                        return Ok(ExitCode::FAILURE);
                    }
                },
            };
            println!(
                "{}: OK ({} partners, {} agreements, {} record types)",
                config_path.display(),
                config.settings.partners.len(),
                config.built.agreements.len(),
                config.built.catalog.types().count()
            );
            if let Some(agreement) = explained {
                for lang in [Lang::En, Lang::Fr] {
                    println!();
                    print!("{}", explanation(&config.built.catalog, agreement, lang));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            print_problems(&e.problems);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Prints problems grouped by file (paths relative to the current directory when under it), each
/// with its fix when there is one, then a count, to standard output:
///
/// ```text
/// config/agreements/birth-ottawa.toml
///   - recipient `gatineau-city` is not a partner in the partners file
///     fix: add the partner or correct the id
///
/// 1 problem in 1 file.
/// ```
pub fn print_problems(problems: &[Problem]) {
    let mut by_file: BTreeMap<&Path, Vec<&Problem>> = BTreeMap::new();
    for p in problems {
        by_file.entry(p.file.as_path()).or_default().push(p);
    }
    let here = std::env::current_dir().ok();
    for (file, problems) in &by_file {
        let shown = here.as_deref().and_then(|here| file.strip_prefix(here).ok()).unwrap_or(file);
        println!("{}", shown.display());
        for p in problems {
            println!("  - {}", p.message);
            if let Some(fix) = &p.fix {
                println!("    fix: {fix}");
            }
        }
        println!();
    }
    println!("{} in {}.", count(problems.len(), "problem"), count(by_file.len(), "file"));
}

/// What `check --explain` prints for `agreement` in `lang`: per recipient, the version it
/// receives, then each field it receives with the fields of each accepted version it comes from,
/// then where its views are served:
///
/// ```text
/// Agreement birth-ottawa: Births for City of Ottawa service planning
///   on-vital-stats sends birth-registration in 1.0, 1.1.
///   ottawa-city receives each record in the version it was sent in, 3 fields:
///     /child/date_of_birth
///       sent in 1.0: /child/date_of_birth
///       sent in 1.1: /child/date_of_birth
///     ...
///     view of 1.1: GET /v1/schemas/birth-registration/1.1/views/birth-ottawa
/// ```
fn explanation(catalog: &SchemaCatalog, agreement: &Agreement, lang: Lang) -> String {
    let fr = lang == Lang::Fr;
    // French sets a space before a colon.
    let colon = lang.pick(":", " :");
    let versions = list(&agreement.versions);
    let (id, record_type, sender) = (&*agreement.id, &*agreement.record_type, &*agreement.sender);
    let mut out = String::new();
    let title = lang.pick(&agreement.title_en, &agreement.title_fr);
    let _ = writeln!(out, "{} {id}{colon} {title}", lang.pick("Agreement", "Entente"));
    let _ = if fr {
        writeln!(out, "  {sender} envoie {record_type} en {versions}.")
    } else {
        writeln!(out, "  {sender} sends {record_type} in {versions}.")
    };
    for recipient in &agreement.recipients {
        let (partner, n) = (&*recipient.partner, recipient.fields.pointers().len());
        let _ = match (recipient.version, fr) {
            (Some(pin), false) => writeln!(out, "  {partner} receives version {pin} (pinned), {n} fields:"),
            (Some(pin), true) => writeln!(out, "  {partner} reçoit la version {pin} (fixée), {n} champs :"),
            (None, false) => {
                writeln!(out, "  {partner} receives each record in the version it was sent in, {n} fields:")
            }
            (None, true) => {
                writeln!(out, "  {partner} reçoit chaque dossier dans la version de son envoi, {n} champs :")
            }
        };
        for field in recipient.fields.pointers() {
            let _ = writeln!(out, "    {field}");
            for &sent in &agreement.versions {
                let from = sources(catalog, agreement, recipient, sent, field, lang);
                let _ = writeln!(out, "      {} {sent}{colon} {from}", lang.pick("sent in", "envoyé en"));
            }
        }
        for version in recipient.versions_received(&agreement.versions) {
            let href = format!("/v1/schemas/{record_type}/{version}/views/{id}");
            let _ = writeln!(out, "    {} {version}{colon} GET {href}", lang.pick("view of", "vue de"));
        }
    }
    if let Some(fields) = &agreement.response_fields {
        let answered: Vec<String> = fields.pointers().iter().map(ToString::to_string).collect();
        let _ = if fr {
            writeln!(out, "  {sender} reçoit en réponse{colon} {}.", answered.join(", "))
        } else {
            writeln!(out, "  {sender} is answered with{colon} {}.", answered.join(", "))
        };
    }
    out
}

/// The fields of a record sent in `sent` that `recipient`'s `field` comes from: the same field
/// when it receives that version, else those the declared translation takes it from.
fn sources(
    catalog: &SchemaCatalog,
    agreement: &Agreement,
    recipient: &AgreementRecipient,
    sent: Version,
    field: &FieldPointer,
    lang: Lang,
) -> String {
    let received = recipient.receives(sent);
    if received == sent {
        return field.to_string();
    }
    let translation = catalog.translation(&agreement.record_type, sent, received);
    let source = catalog.record_type(&agreement.record_type).and_then(|t| t.version(sent));
    let (Some(translation), Some(source)) = (translation, source) else {
        return lang.pick("no translation", "aucune traduction").to_owned();
    };
    let found = translation.sources_of(field, source.dereferenced());
    if found.is_empty() {
        return lang.pick("nothing (never sent)", "rien (jamais envoyé)").to_owned();
    }
    let named: Vec<&str> = found
        .iter()
        .map(|s| if s == "(a constant)" { lang.pick("(a constant)", "(une constante)") } else { s.as_str() })
        .collect();
    let through = lang.pick("translated", "traduit");
    format!("{} ({through} {sent} \u{2192} {received})", named.join(", "))
}

/// `1.0, 1.1`.
fn list(versions: &[Version]) -> String {
    versions.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// `1 problem`, `3 problems`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}
