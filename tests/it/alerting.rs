//! `passerelle alertmanager-config`: each partner's contacts become a route on the `partner`
//! label and a receiver of exactly their addresses, each in their language; every other alert
//! reaches the operators; and the shipped deploy/alertmanager/alertmanager.yml is what the
//! shipped partners files generate.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// Runs `alertmanager-config` on the main file `main`; returns its exit code, standard output
/// and standard error.
fn generate(main: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(["alertmanager-config", "--config", main.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

/// The receivers Alertmanager sends an alert with `labels` to, walking the route tree as it
/// does: the first-level routes in order, each taken when all its `name="value"` matchers hold,
/// going on past one only with `continue: true`; the root's receiver when none is taken.
fn receivers_for(config: &Value, labels: &[(&str, &str)]) -> Vec<String> {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let root = &config["route"];
    let mut taken = Vec::new();
    for route in root["routes"].as_array().unwrap() {
        let matches = route["matchers"].as_array().into_iter().flatten().all(|m| {
            let (name, value) = m.as_str().unwrap().split_once('=').unwrap();
            labels.get(name).copied().unwrap_or("") == value.trim_matches('"')
        });
        if matches {
            taken.push(route["receiver"].as_str().unwrap().to_owned());
            if route["continue"] != Value::Bool(true) {
                break;
            }
        }
    }
    if taken.is_empty() {
        taken.push(root["receiver"].as_str().unwrap().to_owned());
    }
    taken
}

/// Each e-mail a receiver sends: its address and the language of its templates.
fn emails(config: &Value, receiver: &str) -> Vec<(String, String)> {
    let receiver = config["receivers"].as_array().unwrap().iter().find(|r| r["name"] == receiver);
    let receiver = receiver.unwrap_or_else(|| panic!("no receiver {receiver:?}"));
    let language = |template: &Value| {
        let template = template.as_str().unwrap();
        ["en", "fr"].into_iter().find(|l| template.contains(&format!("\"passerelle.{l}."))).unwrap().to_owned()
    };
    receiver["email_configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            // The subject and the body are in the same language, and no part in Alertmanager's
            // English default HTML.
            assert_eq!(language(&e["headers"]["Subject"]), language(&e["text"]), "{e}");
            assert_eq!(e["html"], "", "{e}");
            assert_eq!(e["send_resolved"], true, "{e}");
            (e["to"].as_str().unwrap().to_owned(), language(&e["text"]))
        })
        .collect()
}

const PARTNERS: &str = r#"
[[partner]]
id = "qc-vital-stats"
name_en = "Quebec Vital Statistics"
name_fr = "Directeur de l'état civil du Québec"
jurisdiction = "provincial"
region = "QC"
[[partner.contact]]
name = "Équipe des échanges"
email = "echanges@etatcivil.example"
lang = "fr"
[[partner.contact]]
name = "Exchange Team (English)"
email = "exchanges@etatcivil.example"
lang = "en"

[[partner]]
id = "yk-health"
name_en = "Yukon Health"
name_fr = "Santé Yukon"
jurisdiction = "territorial"
region = "YT"
[partner.delivery]
mode = "pull"

[[partner]]
id = "gatineau-city"
name_en = "City of Gatineau"
name_fr = "Ville de Gatineau"
jurisdiction = "municipal"
region = "QC-Gatineau"
[partner.delivery]
mode = "pull"
[[partner.contact]]
name = "Service des TI"
email = "ti@gatineau.example"
lang = "fr"
"#;

#[test]
fn each_partner_with_contacts_gets_a_route_to_exactly_its_contacts_and_the_rest_reach_the_operators() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("passerelle.toml");
    // Only the main file and the partners file are read: no TLS material, keys or schemas here.
    std::fs::write(&main, "partners_file = \"partners.toml\"\n").unwrap();
    std::fs::write(dir.path().join("partners.toml"), PARTNERS).unwrap();
    let (code, out, err) =
        generate(&main, &["--operator", "ops@gateway.example", "--operator", "oncall@gateway.example"]);
    assert_eq!(code, 0, "{out}{err}");
    let config: Value = serde_norway::from_str(&out).unwrap_or_else(|e| panic!("not YAML: {e}\n{out}"));

    // One route per partner with contacts, on the one label every partner alert carries.
    let routes = config["route"]["routes"].as_array().unwrap();
    let matched: Vec<&Value> = routes.iter().filter_map(|r| r.get("matchers")).collect();
    assert_eq!(
        matched,
        [&serde_json::json!(["partner=\"gatineau-city\""]), &serde_json::json!(["partner=\"qc-vital-stats\""])]
    );
    let group_by = &config["route"]["group_by"];
    assert_eq!(group_by, &serde_json::json!(["alertname", "partner"]));

    // A partner's alert reaches its team and the operators; a partner without contacts, and an
    // alert about no partner, reach the operators alone.
    let alert = |partner: &str| receivers_for(&config, &[("alertname", "PasserelleDeadLetters"), ("partner", partner)]);
    assert_eq!(alert("qc-vital-stats"), ["partner-qc-vital-stats", "operators"]);
    assert_eq!(alert("gatineau-city"), ["partner-gatineau-city", "operators"]);
    assert_eq!(alert("yk-health"), ["operators"]);
    assert_eq!(receivers_for(&config, &[("alertname", "PasserelleDown")]), ["operators"]);

    // Each receiver e-mails exactly its contacts, each in the language they read first.
    let pair = |to: &str, lang: &str| (to.to_owned(), lang.to_owned());
    assert_eq!(
        emails(&config, "partner-qc-vital-stats"),
        [pair("echanges@etatcivil.example", "fr"), pair("exchanges@etatcivil.example", "en")]
    );
    assert_eq!(emails(&config, "partner-gatineau-city"), [pair("ti@gatineau.example", "fr")]);
    assert_eq!(emails(&config, "operators"), [pair("ops@gateway.example", "en"), pair("oncall@gateway.example", "en")]);
    let names: Vec<&str> =
        config["receivers"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["operators", "partner-gatineau-city", "partner-qc-vital-stats"]);
    assert!(out.contains("# yk-health."), "the partner without contacts is named in a comment: {out}");
}

#[test]
fn the_shipped_alertmanager_configuration_is_what_the_shipped_partners_files_generate() {
    let shipped = std::fs::read_to_string(repo().join("deploy/alertmanager/alertmanager.yml")).unwrap();
    // The compose and Kubernetes examples keep their partners' contacts in step with config/.
    for main in ["config/passerelle.toml", "deploy/compose/passerelle.toml", "deploy/kubernetes/config/passerelle.toml"]
    {
        let (code, out, err) = generate(&repo().join(main), &[]);
        assert_eq!(code, 0, "{main}: {out}{err}");
        assert!(
            out == shipped,
            "deploy/alertmanager/alertmanager.yml is not what {main} generates: run \
             `passerelle alertmanager-config > deploy/alertmanager/alertmanager.yml`"
        );
    }
}

#[test]
fn a_partners_file_with_problems_generates_nothing_and_names_no_contact() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("passerelle.toml");
    std::fs::write(&main, "partners_file = \"partners.toml\"\n").unwrap();
    std::fs::write(
        dir.path().join("partners.toml"),
        PARTNERS.replace("ti@gatineau.example", "Service TI <ti@gatineau.example>"),
    )
    .unwrap();
    let (code, out, err) = generate(&main, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("partner `gatineau-city`: the email of contact 1 is not one address"), "{out}");
    assert!(!out.contains("receivers:"), "no configuration is printed: {out}");
    assert!(!format!("{out}{err}").contains("ti@gatineau"), "the address is not echoed: {out}{err}");

    // An operator's address is checked as a contact's is.
    std::fs::write(dir.path().join("partners.toml"), PARTNERS).unwrap();
    let (code, _, err) = generate(&main, &["--operator", "ops"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not one address"), "{err}");
}
