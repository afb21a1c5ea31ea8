//! `passerelle check --explain AGREEMENT`: what each recipient of an agreement receives, field by
//! field, and which field of each accepted version it comes from, in English then in French.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use crate::support::*;
use crate::views::{pinned_ohip, schemas_with_translation};

/// `passerelle check --config main --explain agreement`: the exit code, standard output and
/// standard error.
fn explain(main: &Path, agreement: &str) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(["check", "--config", main.to_str().unwrap(), "--explain", agreement])
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.code().unwrap(), text(&out.stdout), text(&out.stderr))
}

/// The shipped partners and agreements, with test settings.
fn shipped() -> Setup {
    let setup = Setup::new();
    setup.write(&HashMap::new());
    setup
}

#[test]
fn each_recipients_fields_and_where_they_come_from_in_english_then_french() {
    let setup = shipped();
    let (code, out, err) = explain(&setup.main_config(), "birth-federal-on");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": OK (6 partners, 6 agreements, 3 record types)"), "{out}");
    let english = out.find("Agreement birth-federal-on: Ontario birth registrations for federal programs\n").unwrap();
    let french = out
        .find("Entente birth-federal-on : Enregistrements de naissance de l'Ontario pour les programmes fédéraux\n")
        .unwrap();
    assert!(english < french, "{out}");
    let (en, fr) = (&out[english..french], &out[french..]);
    assert!(en.contains("  on-vital-stats sends birth-registration in 1.0, 1.1.\n"), "{en}");
    assert!(fr.contains("  on-vital-stats envoie birth-registration en 1.0, 1.1.\n"), "{fr}");
    // Each recipient, unpinned: every field comes from the same field of each version sent.
    for (partner, fields) in [("esdc-sin-registry", 10), ("cra-child-benefit", 8)] {
        assert!(
            en.contains(&format!("  {partner} receives each record in the version it was sent in, {fields} fields:\n")),
            "{en}"
        );
        assert!(
            fr.contains(&format!(
                "  {partner} reçoit chaque dossier dans la version de son envoi, {fields} champs :\n"
            ))
        );
    }
    assert!(
        en.contains("    /parents/*/role\n      sent in 1.0: /parents/*/role\n      sent in 1.1: /parents/*/role\n")
    );
    assert!(fr.contains(
        "    /parents/*/role\n      envoyé en 1.0 : /parents/*/role\n      envoyé en 1.1 : /parents/*/role\n"
    ));
    // Where each view is served.
    assert!(en.contains("    view of 1.1: GET /v1/schemas/birth-registration/1.1/views/birth-federal-on\n"), "{en}");
    assert!(fr.contains("    vue de 1.0 : GET /v1/schemas/birth-registration/1.0/views/birth-federal-on\n"), "{fr}");

    // A request agreement also says what its sender is answered with.
    let (code, out, _) = explain(&setup.main_config(), "sin-validation-ohip");
    assert_eq!(code, 0);
    assert!(
        out.contains(
            "  on-health-plan is answered with: /sin_status, /name_match, /date_of_birth_match, /checked_at.\n"
        )
    );
    assert!(out.contains("  on-health-plan reçoit en réponse : /sin_status,"), "{out}");
}

#[test]
fn a_pinned_recipients_fields_come_through_the_translation() {
    let schemas = tempfile::tempdir().unwrap();
    // Records sent in 1.1 reach the health plan in 1.0, their sex at birth said as undetermined.
    schemas_with_translation(schemas.path(), "[[constant]]\nto = \"/child/sex_at_birth\"\nvalue = \"U\"\n");
    let setup = Setup::new();
    pinned_ohip(&setup, schemas.path(), &HashMap::new());
    let (code, out, err) = explain(&setup.main_config(), "birth-ohip");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("  on-health-plan receives version 1.0 (pinned), 7 fields:\n"), "{out}");
    assert!(out.contains("  on-health-plan reçoit la version 1.0 (fixée), 7 champs :\n"), "{out}");
    assert!(
        out.contains(
            "    /child/sex_at_birth\n      sent in 1.0: /child/sex_at_birth\n      \
             sent in 1.1: /child/sex_at_birth, (a constant) (translated 1.1 → 1.0)\n"
        ),
        "{out}"
    );
    assert!(out.contains("      envoyé en 1.1 : /child/sex_at_birth, (une constante) (traduit 1.1 → 1.0)\n"), "{out}");
    // Only the pinned version has a view.
    assert!(out.contains("    view of 1.0: GET /v1/schemas/birth-registration/1.0/views/birth-ohip\n"), "{out}");
    assert!(!out.contains("views/birth-ohip\n    view of 1.1"), "{out}");
    assert!(!out.contains("/1.1/views/birth-ohip"), "{out}");
}

#[test]
fn an_unknown_agreement_is_an_error_in_both_languages() {
    let setup = shipped();
    let (code, out, err) = explain(&setup.main_config(), "birth-gatineau");
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("error: ") && err.contains("no agreement `birth-gatineau`; its agreements are address-change-on,"),
        "{err}"
    );
    assert!(err.contains("erreur : ") && err.contains("aucune entente `birth-gatineau`"), "{err}");
    // A configuration with problems is reported as ever, and nothing is explained.
    edit_file(
        &setup.config_dir().join("agreements/birth-ottawa.toml"),
        "partner = \"ottawa-city\"",
        "partner = \"gatineau-city\"",
    );
    let (code, out, _) = explain(&setup.main_config(), "birth-ottawa");
    assert_eq!(code, 1);
    assert!(out.contains("recipient `gatineau-city` is not a partner"), "{out}");
    assert!(!out.contains("Agreement birth-ottawa"), "{out}");
}
