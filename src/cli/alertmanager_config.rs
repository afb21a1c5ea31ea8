//! `passerelle alertmanager-config`: an Alertmanager configuration generated from the partners'
//! contacts, so that a partner's failures reach that partner's team and the contacts live in one
//! place, the partners file.
//!
//! Every alert of `deploy/prometheus/alerts.yml` about one partner carries the label `partner`
//! (the recipient of the deliveries, or the sender of the records refused). The configuration
//! printed routes such an alert to a receiver of that partner's contacts, each e-mailed with the
//! templates of the language they read first (`passerelle.en.*` or `passerelle.fr.*`, in
//! `deploy/alertmanager/templates/`), and every alert, a partner's included, to the gateway's
//! operators. A partner without contacts has no route: its alerts reach the operators alone.
//!
//! The contacts are printed to standard output and nowhere else: never to a log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{Contact, Language};
use crate::ids::PartnerId;

/// The receiver of the gateway's operators: every alert reaches it.
const OPERATORS: &str = "operators";

/// What the configuration is generated from besides the partners file: where the operators are
/// and how e-mail leaves.
#[derive(Debug, clap::Args)]
pub struct AlertmanagerArgs {
    #[arg(long, value_name = "FILE", default_value = super::DEFAULT_CONFIG, help = super::CONFIG_HELP)]
    pub config: PathBuf,
    /// The gateway's operators' address, who receive every alert (repeat for several); the
    /// default is a placeholder.
    #[arg(long = "operator", value_name = "EMAIL", default_value = "passerelle-operators@gateway.example", value_parser = email_address)]
    pub operators: Vec<String>,
    /// The SMTP relay the e-mails leave through, HOST:PORT (STARTTLS is required); the default
    /// is a placeholder.
    #[arg(long, value_name = "HOST:PORT", default_value = "smtp.gateway.example:587", value_parser = smarthost)]
    pub smtp_smarthost: String,
    /// The address the e-mails come from; the default is a placeholder.
    #[arg(long, value_name = "EMAIL", default_value = "passerelle-alerts@gateway.example", value_parser = email_address)]
    pub smtp_from: String,
}

/// Prints the Alertmanager configuration generated from the partners file the configuration at
/// `args.config` names. Only that file and the main one are read (not the TLS material, keys or
/// schemas), so it runs where the configuration is kept, not only where the gateway runs.
pub fn run(args: &AlertmanagerArgs) -> anyhow::Result<ExitCode> {
    let partners = contacts(&args.config)?;
    print!("{}", render(&partners, args));
    Ok(ExitCode::SUCCESS)
}

/// Each partner's contacts, or the problems of the two files read, printed as `check` prints them.
fn contacts(config: &Path) -> anyhow::Result<BTreeMap<PartnerId, Vec<Contact>>> {
    crate::config::contacts(config).map_err(|e| {
        super::check::print_problems(&e.problems);
        anyhow::anyhow!("the partners file of {} has problems", config.display())
    })
}

/// The configuration, as YAML text: written here rather than serialised so that it carries the
/// comments that tell a reader where it comes from. Every value that comes from a file or the
/// command line is a double-quoted scalar, escaped as a JSON string is.
pub fn render(partners: &BTreeMap<PartnerId, Vec<Contact>>, args: &AlertmanagerArgs) -> String {
    let operators = quoted(OPERATORS);
    let mut out = String::from(HEADER);
    out.push_str(&format!(
        "global:\n  smtp_smarthost: {}\n  smtp_from: {}\n  smtp_require_tls: true\n{SMTP_AUTH}\n\n",
        quoted(&args.smtp_smarthost),
        quoted(&args.smtp_from),
    ));
    out.push_str(&format!(
        "templates:\n  - \"templates/*.tmpl\"\n\nroute:\n  receiver: {operators}\n{GROUPING}  routes:\n"
    ));
    let (reached, silent): (Vec<_>, Vec<_>) = partners.iter().partition(|(_, contacts)| !contacts.is_empty());
    for (id, _) in &reached {
        out.push_str(&format!(
            "    - receiver: {}\n      matchers: ['partner=\"{id}\"']\n      continue: true\n",
            quoted(&receiver(id))
        ));
    }
    if !silent.is_empty() {
        let ids: Vec<&str> = silent.iter().map(|(id, _)| &***id).collect();
        out.push_str("    # Without contacts in the partners file, so their alerts reach the operators alone:\n");
        out.push_str(&format!("    # {}.\n", ids.join(", ")));
    }
    out.push_str(&format!(
        "    # Every alert, a partner's included, reaches the operators.\n    - receiver: {operators}\n\n"
    ));

    out.push_str(&format!("receivers:\n  - name: {operators}\n    email_configs:\n"));
    for address in &args.operators {
        out.push_str(&email_config(address, Language::En));
    }
    for (id, contacts) in &reached {
        out.push_str(&format!("  - name: {}\n    email_configs:\n", quoted(&receiver(id))));
        for contact in *contacts {
            out.push_str(&format!("      # {} ({})\n", contact.name, contact.language.code()));
            out.push_str(&email_config(&contact.email, contact.language));
        }
    }
    out
}

/// The receiver of one partner's contacts.
fn receiver(partner: &str) -> String {
    format!("partner-{partner}")
}

/// One `email_configs` entry: to `address`, in `language` first, resolved alerts included.
/// Plain text only (`html: ""`), so no part of the e-mail falls back to Alertmanager's English
/// default template.
fn email_config(address: &str, language: Language) -> String {
    let lang = language.code();
    format!(
        "      - to: {}\n        send_resolved: true\n        headers:\n          Subject: '{{{{ template \"passerelle.{lang}.subject\" . }}}}'\n        html: \"\"\n        text: '{{{{ template \"passerelle.{lang}.text\" . }}}}'\n",
        quoted(address)
    )
}

/// `value` as a YAML double-quoted scalar: a JSON string is one, escapes included.
fn quoted(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

/// An e-mail address given on the command line, checked as the partners file's are.
fn email_address(value: &str) -> Result<String, String> {
    if crate::config::partners::is_email(value) {
        Ok(value.to_owned())
    } else {
        Err("not one address such as name@example.gc.ca".to_owned())
    }
}

/// An SMTP relay given on the command line: a host name or address, a colon, a port.
fn smarthost(value: &str) -> Result<String, String> {
    let well_formed = value.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && host.chars().all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c))
            && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if well_formed { Ok(value.to_owned()) } else { Err("not HOST:PORT, such as smtp.example.gc.ca:587".to_owned()) }
}

const HEADER: &str = "\
# Alertmanager configuration for Passerelle, generated by `passerelle alertmanager-config` from
# the contacts in the partners file: change a contact there and generate this file again, rather
# than editing it. `amtool check-config` checks it; the e-mail templates it names are
# deploy/alertmanager/templates/, copied into templates/ beside this file.
#
# Every Passerelle alert about one partner carries the label `partner`, the partner's id: the
# recipient of the deliveries, or the sender of the records refused
# (deploy/prometheus/alerts.yml). Such an alert goes to that partner's contacts, each in the
# language they read first (both languages are in every e-mail), and to the gateway's
# operators; every other alert goes to the operators alone.
";

const SMTP_AUTH: &str = "  # If the relay asks for an account (the password in a file only Alertmanager reads):
  # smtp_auth_username: \"passerelle-alerts\"
  # smtp_auth_password_file: \"/etc/alertmanager/smtp-password\"";

const GROUPING: &str = "  # One notification per alert and partner; an alert about no partner is grouped by name.
  group_by: [alertname, partner]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
";
