//! `passerelle deliveries`: list dead or retrying deliveries and replay them, through the running
//! gateway's admin API (so the replay wakes its workers and is audited like any other).

use std::process::ExitCode;

use clap::Subcommand;
use http::Method;
use serde_json::Value;

use super::admin_api::{AdminArgs, AdminClient};

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries by status (default: dead).
    ///
    /// One line per delivery: id, record, recipient, status, attempts and the last error. Asks
    /// the running gateway's admin API, with PASSERELLE_ADMIN_TOKEN or the configured token.
    #[command(after_long_help = "Examples:\n  \
                                 passerelle deliveries list\n  \
                                 passerelle deliveries list --status retrying --recipient ottawa-city")]
    List {
        /// Which deliveries: dead, retrying, queued or delivered.
        #[arg(long, default_value = "dead", value_parser = ["dead", "retrying", "queued", "delivered"])]
        status: String,
        /// Only this recipient's deliveries (a partner id).
        #[arg(long, value_name = "PARTNER")]
        recipient: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Re-send dead deliveries: one by id, or every dead delivery of one recipient.
    ///
    /// Only that recipient receives them again, the stored projection as it was accepted; each
    /// replay is audited. Goes through the running gateway's admin API, so its workers pick the
    /// deliveries up at once.
    #[command(after_long_help = "Examples:\n  \
                                 passerelle deliveries replay 42\n  \
                                 passerelle deliveries replay --recipient ottawa-city")]
    Replay {
        /// The delivery id (from `deliveries list`).
        #[arg(required_unless_present = "recipient")]
        id: Option<i64>,
        /// Replay every dead delivery of this recipient instead (a partner id).
        #[arg(long, value_name = "PARTNER", conflicts_with = "id")]
        recipient: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

pub fn run(command: DeliveriesCommand) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async move {
        match command {
            DeliveriesCommand::List { status, recipient, admin } => {
                let client = AdminClient::new(&admin)?;
                // Columns as wide as what they can hold: ids of any size, a UUID, the longest
                // partner id of the configuration, the longest status.
                let recipient_width =
                    client.partner_ids.iter().map(|p| p.chars().count()).max().unwrap_or(0).max("recipient".len());
                let line = |id: &str, record: &str, recipient: &str, status: &str, attempts: &str, error: &str| {
                    format!(
                        "{id:>10}  {record:<36}  {recipient:<recipient_width$}  {status:<9}  {attempts:>8}  {error}"
                    )
                };
                let mut after = 0i64;
                let mut total = 0;
                println!("{}", line("id", "record", "recipient", "status", "attempts", "last error").trim_end());
                loop {
                    let mut path = format!("/admin/v1/deliveries?status={status}&limit=1000&after={after}");
                    if let Some(r) = &recipient {
                        path.push_str(&format!("&recipient={r}"));
                    }
                    let (code, body) = client.call(Method::GET, &path).await?;
                    anyhow::ensure!(code == 200, "the admin API answered {code}: {body}");
                    let list = body["deliveries"].as_array().cloned().unwrap_or_default();
                    for d in &list {
                        // A JSON number does not pad itself: format it as text first.
                        let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                        let row = line(
                            &text(&d["id"]),
                            &text(&d["record_id"]),
                            &text(&d["recipient"]),
                            &text(&d["status"]),
                            &text(&d["attempts"]),
                            d["last_error"].as_str().unwrap_or(""),
                        );
                        println!("{}", row.trim_end());
                    }
                    total += list.len();
                    match body["next_after"].as_i64() {
                        Some(next) => after = next,
                        None => break,
                    }
                }
                println!("{total} deliveries.");
                Ok(ExitCode::SUCCESS)
            }
            DeliveriesCommand::Replay { id, recipient, admin } => {
                let client = AdminClient::new(&admin)?;
                let path = match (id, &recipient) {
                    (Some(id), None) => format!("/admin/v1/deliveries/{id}/replay"),
                    (None, Some(r)) => format!("/admin/v1/recipients/{r}/replay"),
                    _ => anyhow::bail!("give a delivery id or --recipient"),
                };
                // One call does the whole replay, so there is no count to show, only that it is
                // still going; on standard error, and only when that is a terminal.
                let spinner = indicatif::ProgressBar::new_spinner().with_finish(indicatif::ProgressFinish::AndClear);
                spinner.set_message(match (id, &recipient) {
                    (Some(id), _) => format!("Replaying delivery {id}..."),
                    (_, Some(r)) => format!("Replaying every dead delivery of {r}..."),
                    _ => "Replaying...".to_owned(),
                });
                spinner.enable_steady_tick(std::time::Duration::from_millis(100));
                let (code, body) = client.call(Method::POST, &path).await?;
                spinner.finish_and_clear();
                match code {
                    200 => {
                        println!("{} deliveries replayed.", body["replayed"]);
                        for d in body["deliveries"].as_array().into_iter().flatten() {
                            println!("  {:>8}  {}", d["id"], d["outcome"].as_str().unwrap_or(""));
                        }
                        Ok(ExitCode::SUCCESS)
                    }
                    _ => {
                        println!(
                            "Not replayed ({code}): {}",
                            body["detail"].as_str().map_or_else(|| body.to_string(), str::to_owned)
                        );
                        for d in body["deliveries"].as_array().into_iter().flatten() {
                            println!("  {:>8}  {}", d["id"], d["outcome"].as_str().unwrap_or(""));
                        }
                        Ok(ExitCode::FAILURE)
                    }
                }
            }
        }
    })
}
