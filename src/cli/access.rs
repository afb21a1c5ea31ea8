//! `passerelle access SUBJECT`: the access record of a person, from the running gateway's admin
//! API (`GET /admin/v1/access`, every page of it), as a table to read or as JSON.
//!
//! The identifier goes to the gateway once per page, in the query of a call to the admin API,
//! and is printed nowhere. Given as `-`, it is read from standard input, so that it stays out of
//! the shell's history and the process list.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;
use http::Method;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use super::admin_api::{AdminArgs, AdminClient};
use crate::http::access::{MAX_PAGE, status_text};
use crate::http::i18n::Lang;
use crate::store::DeliveryStatus;

/// What `passerelle access` takes.
#[derive(Debug, clap::Args)]
pub struct AccessArgs {
    /// The identifier, written as the records hold it (a SIN as nine digits, a registration
    /// number as ON-2026-004217), or `-` to read it from standard input.
    subject: String,
    /// The language of the names, titles and table: en or fr.
    #[arg(long, default_value = "en", value_parser = ["en", "fr"])]
    lang: String,
    /// Print the disclosures as JSON (the admin API's, every page together) instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

pub fn run(args: AccessArgs) -> anyhow::Result<ExitCode> {
    let subject = if args.subject == "-" {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the identifier from standard input")?;
        line
    } else {
        args.subject.clone()
    };
    anyhow::ensure!(!subject.trim().is_empty(), "give the identifier to look up");
    let lang = if args.lang == "fr" { Lang::Fr } else { Lang::En };
    super::runtime()?.block_on(async move {
        let client = AdminClient::new(&args.admin)?;
        let subject = utf8_percent_encode(subject.trim(), NON_ALPHANUMERIC).to_string();
        let mut disclosures: Vec<Value> = Vec::new();
        let mut after: Option<i64> = None;
        loop {
            let mut path = format!("/admin/v1/access?subject={subject}&limit={MAX_PAGE}");
            if let Some(after) = after {
                path.push_str(&format!("&after={after}"));
            }
            let (code, body) = client.call_with(Method::GET, &path, &[("accept-language", lang.code())]).await?;
            anyhow::ensure!(code == 200, "the admin API answered {code}: {body}");
            disclosures.extend(body["disclosures"].as_array().into_iter().flatten().cloned());
            match body["next_after"].as_i64() {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&json!({"lang": lang.code(), "disclosures": disclosures}))?);
        } else {
            print_table(&client, &disclosures, lang);
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// One line per disclosure (when, who received it, under which agreement, its status, when it
/// arrived, its audit entries), then what was sent, the fields received and the purpose.
fn print_table(client: &AdminClient, disclosures: &[Value], lang: Lang) {
    let t = |en: &'static str, fr: &'static str| lang.pick(en, fr);
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    // Columns as wide as what they can hold: a time to the millisecond, the longest partner id
    // of the configuration, the longest agreement answered, the longest status.
    let recipient_width = client
        .partner_ids
        .iter()
        .map(|p| p.chars().count())
        .max()
        .unwrap_or(0)
        .max(t("recipient", "destinataire").len());
    let agreement_width = disclosures
        .iter()
        .map(|d| text(&d["agreement"]["id"]).chars().count())
        .max()
        .unwrap_or(0)
        .max(t("agreement", "entente").len());
    let status_width = DeliveryStatus::ALL.iter().map(|s| status_text(*s, lang).chars().count()).max().unwrap_or(0);
    let line = |accepted: &str, recipient: &str, agreement: &str, status: &str, delivered: &str, audit: &str| {
        format!(
            "{accepted:<24}  {recipient:<recipient_width$}  {agreement:<agreement_width$}  {status:<status_width$}  \
             {delivered:<24}  {audit}"
        )
    };
    let head = line(
        t("accepted", "acceptée"),
        t("recipient", "destinataire"),
        t("agreement", "entente"),
        t("status", "état"),
        t("delivered", "livrée"),
        t("audit entries", "entrées d'audit"),
    );
    println!("{}", head.trim_end());
    for d in disclosures {
        let status = text(&d["status"])
            .parse::<DeliveryStatus>()
            .map_or_else(|_| text(&d["status"]), |s| status_text(s, lang).to_owned());
        let mut audit = format!("#{}", d["accepted_seq"]);
        if let Some(seq) = d["delivered_seq"].as_i64() {
            audit.push_str(&format!(" #{seq}"));
        }
        let row = line(
            &text(&d["accepted_at"]),
            &text(&d["recipient"]["id"]),
            &text(&d["agreement"]["id"]),
            &status,
            d["delivered_at"].as_str().unwrap_or("-"),
            &audit,
        );
        println!("{}", row.trim_end());
        println!(
            "    {} {} {}, {} {}, {} {}",
            text(&d["record_type"]),
            text(&d["received_version"]),
            t("as received", "telle que reçue"),
            t("record", "enregistrement"),
            text(&d["record_id"]),
            t("from", "de"),
            text(&d["sender"]["id"]),
        );
        let fields: Vec<String> = d["fields"].as_array().into_iter().flatten().map(text).collect();
        println!(
            "    {} {}",
            t("fields:", "champs :"),
            if fields.is_empty() { "-".to_owned() } else { fields.join(", ") }
        );
        if let Some(purpose) = d["agreement"]["purpose"].as_str() {
            println!("    {} {purpose}", t("purpose:", "fin :"));
        }
    }
    match (disclosures.len(), lang) {
        (0, _) => println!(
            "{}",
            t(
                "No disclosure is recorded for this identifier.",
                "Aucune communication n'est consignée pour cet identifiant."
            )
        ),
        (n, Lang::En) => println!("{n} disclosures."),
        (n, Lang::Fr) => println!("{n} communications."),
    }
}
