//! The command line: one module per subcommand.

pub mod audit;
pub mod backup;
pub mod check;
pub mod deliveries;
pub mod demo;
pub mod dev_pki;
pub mod migrate_store;
pub mod serve;
pub mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The shipped configuration, relative to the repository root.
pub const DEFAULT_CONFIG: &str = "config/passerelle.toml";

/// Passerelle: a data-sharing gateway for governments.
#[derive(Debug, Parser)]
#[command(name = "passerelle", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// The main configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Run the gateway on the shipped configuration with local recipient systems, send a few
    /// birth bundles and an address change, and show where everything went.
    Demo {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Exit after the demo records are delivered instead of running on.
        #[arg(long)]
        once: bool,
    },
    /// Check the configuration, agreements and schemas; exit 1 if anything is wrong.
    Check {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Write a development PKI (CA, localhost server certificate, one client certificate per
    /// partner, CRL) into the data directory.
    DevPki {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Copy the SQLite store (records, deliveries, the audit chain) into PostgreSQL and verify
    /// the chain there.
    MigrateStore {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The PostgreSQL connection string to copy into (an empty store).
        #[arg(long)]
        to: String,
        /// CA (PEM) the PostgreSQL server's certificate must chain to: the copy then goes over TLS.
        #[arg(long, value_name = "FILE")]
        to_ca_file: Option<PathBuf>,
    },
    /// Copy the SQLite store to a file while the gateway runs, then verify the copy's audit chain.
    Backup {
        /// The file to write (owner-only); it must not exist yet, unless --force is given.
        dest: PathBuf,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Replace DEST if it exists.
        #[arg(long)]
        force: bool,
        /// Database pages copied per step; the progress bar moves once per step.
        #[arg(long, value_name = "N", default_value_t = backup::PAGES_PER_STEP, value_parser = clap::value_parser!(i32).range(1..))]
        pages_per_step: i32,
    },
    /// The audit trail: keys, verification, export, receipts.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Dead and retrying deliveries: list them, replay them (through the running gateway).
    #[command(subcommand)]
    Deliveries(deliveries::DeliveriesCommand),
    /// Validate a JSON file against a record type's schema.
    Validate {
        /// The record type, such as `birth-registration`.
        record_type: String,
        /// The JSON file.
        file: PathBuf,
        /// The schema version (default: the newest).
        #[arg(long = "schema-version")]
        schema_version: Option<String>,
        /// Use the schemas directory of this configuration.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Answer in French.
        #[arg(long)]
        fr: bool,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => serve::run(&config),
        Command::Demo { config, once } => demo::run(&config, once),
        Command::Check { config } => check::run(&config),
        Command::Audit(command) => audit::run(command),
        Command::DevPki { config } => dev_pki::run(&config),
        Command::MigrateStore { config, to, to_ca_file } => migrate_store::run(&config, &to, to_ca_file.as_deref()),
        Command::Deliveries(command) => deliveries::run(command),
        Command::Backup { dest, config, force, pages_per_step } => backup::run(&config, &dest, force, pages_per_step),
        Command::Validate { record_type, file, schema_version, config, fr } => {
            validate::run(&config, &record_type, &file, schema_version.as_deref(), fr)
        }
    }
}

/// Loads a configuration for a command, printing its problems (grouped by file, with the fix)
/// when it has any.
pub fn load_config(path: &std::path::Path) -> anyhow::Result<crate::config::Config> {
    crate::config::load(path).map_err(|e| {
        check::print_problems(&e.problems);
        anyhow::anyhow!("the configuration {} has problems", path.display())
    })
}

/// A progress bar on standard error for a long operation over `len` things counted in `unit`
/// ("entries", "pages", "rows"). indicatif hides it when standard error is not a terminal, so
/// scripts and logs see only the result lines on standard output.
pub fn progress_bar(len: u64, what: &str, unit: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(len), indicatif::ProgressDrawTarget::stderr());
    let template = format!("{{msg}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{per_sec}}, {{eta}})");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// A multi-threaded runtime for the commands that serve.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("passerelle").build()?)
}
