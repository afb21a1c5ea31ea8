//! The command line: one module per subcommand.
//!
//! Every command and argument carries its own help (`passerelle help COMMAND`, or `--help` for
//! the long form with examples); `passerelle completions SHELL` writes a completion script from
//! the same definitions, so the two never drift apart.

pub mod access;
pub mod admin_api;
pub mod alertmanager_config;
pub mod audit;
pub mod backup;
pub mod check;
pub mod deliveries;
pub mod demo;
pub mod dev_pki;
pub mod inbox;
pub mod migrate_store;
pub mod serve;
pub mod store;
pub mod validate;
pub mod verify_delivery;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// The shipped configuration, relative to the repository root.
pub const DEFAULT_CONFIG: &str = "config/passerelle.toml";

/// The help of every `--config` argument.
pub const CONFIG_HELP: &str = "The main configuration file; the partners, agreements, schemas and data directory are \
                               found from it";

/// The `passerelle` command line; its about line is the package description.
#[derive(Debug, Parser)]
#[command(
    name = "passerelle",
    version,
    about,
    long_about = concat!(
        env!("CARGO_PKG_DESCRIPTION"),
        "\n\n\
                  Partner systems post records; the gateway authenticates them, validates each record \
                  against the agreed JSON Schema, commits it with its audit entry, and delivers to every \
                  recipient only the fields its agreement allows. `serve` runs it; the other commands \
                  check its configuration, look after its store and audit trail, and talk to a running \
                  gateway's admin API."
    ),
    after_long_help = "Examples:\n  \
                       passerelle check                      # lint config/passerelle.toml and what it names\n  \
                       passerelle serve --config /etc/passerelle/passerelle.toml\n  \
                       passerelle audit verify               # every hash, link and checkpoint signature\n  \
                       passerelle help backup                # any command's help"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway until SIGTERM or Ctrl-C.
    ///
    /// Loads and checks the configuration (and refuses to start if `check` would fail), opens the
    /// store, starts one delivery worker per recipient and listens for partners and operators.
    /// SIGHUP reloads the configuration; a configuration with problems is refused and the running
    /// one stays. Logs go to standard error.
    #[command(after_long_help = "Example:\n  passerelle serve --config /etc/passerelle/passerelle.toml")]
    Serve {
        #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG, help = CONFIG_HELP)]
        config: PathBuf,
    },
    /// Run the gateway with local recipients, send demo records and show where they went.
    ///
    /// Writes a development PKI and one API key per demo partner into the data directory, starts
    /// local recipient systems on the ports of the partners file, sends three birth bundles and an
    /// address change over mutual TLS, prints every receipt and what each recipient received, and
    /// keeps running for curl sessions (see the README).
    Demo {
        #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG, help = CONFIG_HELP)]
        config: PathBuf,
        /// Exit after the demo records are delivered instead of running on.
        #[arg(long)]
        once: bool,
    },
    /// Check the configuration, agreements and schemas; exit 1 if anything is wrong.
    ///
    /// Reports every problem, not just the first, grouped by file, each with how to fix it: an
    /// unknown partner, a schema that does not compile, a field an accepted schema version cannot
    /// produce, overlapping agreements, a duplicate id, an unknown key in any file. With
    /// `--explain AGREEMENT`, a clean configuration is followed by what each recipient of that
    /// agreement receives, in English then in French.
    #[command(after_long_help = "Examples:\n  \
                                 passerelle check --config config/passerelle.toml\n  \
                                 passerelle check --explain birth-ottawa")]
    Check {
        #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG, help = CONFIG_HELP)]
        config: PathBuf,
        /// Print, for each recipient of this agreement (its id), the schema version it receives,
        /// each field it receives and the field of each accepted version it comes from (the same
        /// one, or through the declared translation); exit 1 if there is no such agreement.
        #[arg(long, value_name = "AGREEMENT")]
        explain: Option<String>,
    },
    /// Write a development PKI into the data directory (never for production).
    ///
    /// A partner CA, a localhost server certificate, one client certificate per partner of the
    /// partners file, and a CRL, under DATA_DIR/pki. Files that exist are kept.
    DevPki {
        #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG, help = CONFIG_HELP)]
        config: PathBuf,
    },
    /// Copy the SQLite store into an empty PostgreSQL store and verify the audit chain there.
    ///
    /// Records not yet purged (with their bodies), every delivery, the whole audit chain and its
    /// checkpoints are copied in one PostgreSQL transaction; the chain is then verified on
    /// PostgreSQL with this instance's key and the configured trusted keys. Stop the gateway first.
    #[command(after_long_help = "Example:\n  \
                                 passerelle migrate-store --to 'host=db.example user=passerelle dbname=passerelle' \\\n    \
                                 --to-ca-file /etc/passerelle/db-ca.pem")]
    MigrateStore {
        #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG, help = CONFIG_HELP)]
        config: PathBuf,
        /// The PostgreSQL connection string to copy into (an empty store).
        #[arg(long, value_name = "URL")]
        to: String,
        /// CA (PEM) the PostgreSQL server's certificate must chain to: the copy then goes over TLS.
        #[arg(long, value_name = "FILE")]
        to_ca_file: Option<PathBuf>,
    },
    /// Copy the SQLite store to a file while the gateway runs, then verify the copy's audit chain.
    ///
    /// SQLite's online backup API copies one consistent snapshot while records keep arriving. The
    /// copy is owner-only, one self-contained file, written under a temporary name and renamed, so
    /// DEST is never half-written. Its audit chain is verified like `audit verify` does; the exit
    /// status is 1 if it does not hold. The audit signing key, digest secret, subject key and
    /// store key are not copied: back them up apart (README, "Backup and restore"). A PostgreSQL
    /// store is refused: use pg_dump.
    #[command(after_long_help = "Example:\n  passerelle backup /backups/passerelle-$(date +%F).sqlite")]
    Backup {
        /// The file to write (owner-only); it must not exist yet, unless --force is given.
        dest: PathBuf,
        #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG, help = CONFIG_HELP)]
        config: PathBuf,
        /// Replace DEST if it exists.
        #[arg(long)]
        force: bool,
        /// Database pages copied per step; the progress bar moves once per step.
        #[arg(long, value_name = "N", default_value_t = backup::PAGES_PER_STEP, value_parser = clap::value_parser!(i32).range(1..))]
        pages_per_step: i32,
    },
    /// Print an Alertmanager configuration that sends each partner's alerts to its contacts.
    ///
    /// Reads the contacts of the partners file (`[[partner.contact]]`: name, email, lang) and
    /// prints an alertmanager.yml: a route per partner with contacts, matching the `partner` label
    /// every alert about one partner carries, to a receiver that e-mails each contact in the
    /// language they read first (the templates of deploy/alertmanager/templates/, copied beside
    /// it), and every alert to the operators. Only the main file and the partners file are read.
    #[command(after_long_help = "Examples:\n  \
                                 passerelle alertmanager-config > deploy/alertmanager/alertmanager.yml\n  \
                                 passerelle alertmanager-config --config /etc/passerelle/passerelle.toml \\\n    \
                                 --operator passerelle-ops@example.gc.ca --smtp-smarthost smtp.example.gc.ca:587 \\\n    \
                                 --smtp-from passerelle-alerts@example.gc.ca > /etc/alertmanager/alertmanager.yml")]
    AlertmanagerConfig(alertmanager_config::AlertmanagerArgs),
    /// The audit trail: this instance's key, verification, export, receipts.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Dead and retrying deliveries: list them, replay them (through the running gateway).
    #[command(subcommand)]
    Deliveries(deliveries::DeliveriesCommand),
    /// The access record of a person: every disclosure about them (through the running gateway).
    ///
    /// Finds, by one of the person's identifiers (a field a schema marks `x-passerelle-subject`:
    /// a SIN, a registration number, a health card number), every delivery of a record they are
    /// a subject of: which partner received which fields, under which agreement and purpose,
    /// when, its status and its audit entries. Asks the running gateway's admin API (`GET
    /// /admin/v1/access`, every page), with PASSERELLE_ADMIN_TOKEN or the configured token; each
    /// call is audited. Give `-` to read the identifier from standard input, so it stays out of
    /// the shell's history and the process list; it is printed nowhere.
    #[command(after_long_help = "Examples:\n  \
                                 passerelle access 046454286\n  \
                                 passerelle access ON-2026-004217 --lang fr\n  \
                                 printf '%s\\n' \"$SIN\" | passerelle access - --json")]
    Access(access::AccessArgs),
    /// The sealed store's keys: seal plaintext bodies, rotate the key-encryption key.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Take a pull recipient's deliveries from a gateway, hand them over, then acknowledge them.
    ///
    /// A reference client for a recipient whose partners file entry says `mode = "pull"`: it
    /// long-polls `GET /v1/inbox`, prints each delivery as a JSON line (or writes it to
    /// `DIR/<idempotency key>.json`, synced) and only then acknowledges it. Every call goes out from
    /// the recipient's side, so it runs behind a firewall that lets no connection in. Runs until
    /// Ctrl-C, or takes one batch with --once.
    #[command(after_long_help = "Examples:\n  \
                                 passerelle inbox --url https://localhost:8443 --ca data/pki/ca.pem \\\n    \
                                 --cert data/pki/clients/ottawa-city.pem --key data/pki/clients/ottawa-city-key.pem --once\n  \
                                 PASSERELLE_API_KEY=psk_... passerelle inbox --url https://localhost:8443 --ca data/pki/ca.pem --out received/")]
    Inbox(inbox::InboxArgs),
    /// Validate a JSON file against a record type's schema, as the gateway would.
    ///
    /// Prints every violation with its JSON pointer and keyword, never a value from the file.
    /// Only the schemas directory of the configuration is read, so a broken agreement does not get
    /// in a schema author's way. Exits 1 if the file is not valid.
    #[command(after_long_help = "Example:\n  \
                                 passerelle validate birth-registration tests/data/records/birth-registration-1.1.json")]
    Validate {
        /// The record type, such as `birth-registration`.
        record_type: String,
        /// The JSON file to validate.
        file: PathBuf,
        /// The schema version, MAJOR.MINOR (default: the newest).
        #[arg(long = "schema-version", value_name = "VERSION")]
        schema_version: Option<String>,
        #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG, help = CONFIG_HELP)]
        config: PathBuf,
        /// Answer in French.
        #[arg(long)]
        fr: bool,
    },
    /// Check a delivery's signature offline, as its recipient: the body, its signature, the key.
    ///
    /// Every delivery (push, NATS, or taken from a mailbox) carries a detached JWS over its exact
    /// body bytes and its facts (record id, agreement, sender, recipient, schema, acceptance time,
    /// audit seq), made with the gateway's Ed25519 key (README, "Signed deliveries"). Reads the
    /// gateway's public keys (a JWKS from `GET /v1/keys`, or `passerelle audit key` lines), the
    /// body and the signature; prints the signed facts as JSON, or `INVALID:` and why (a changed
    /// body or fact, an unknown key, a fact given here that differs); exits 1 then.
    #[command(after_long_help = "Examples:\n  \
                                 passerelle verify-delivery --key gateway.pub body.json \"$SIGNATURE\" \\\n    \
                                 --record-id 019ad0a5-5c00-7c3a-9d2e-6b1f0a4c8e21 --recipient ottawa-city\n  \
                                 passerelle verify-delivery --key keys.json --inbox received/019ad0a5-5c00-7c3a-9d2e-6b1f0a4c8e21.ottawa-city.json")]
    VerifyDelivery(verify_delivery::VerifyDeliveryArgs),
    /// Print a shell completion script for passerelle to standard output.
    ///
    /// Load it from the shell's start-up file, or install it where the shell looks for
    /// completions.
    #[command(after_long_help = "Examples:\n  \
                                 passerelle completions bash > ~/.local/share/bash-completion/completions/passerelle\n  \
                                 passerelle completions zsh > ~/.zfunc/_passerelle      # with fpath+=~/.zfunc\n  \
                                 passerelle completions fish > ~/.config/fish/completions/passerelle.fish")]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => serve::run(&config),
        Command::Demo { config, once } => demo::run(&config, once),
        Command::Check { config, explain } => check::run(&config, explain.as_deref()),
        Command::AlertmanagerConfig(args) => alertmanager_config::run(&args),
        Command::Audit(command) => audit::run(command),
        Command::DevPki { config } => dev_pki::run(&config),
        Command::MigrateStore { config, to, to_ca_file } => migrate_store::run(&config, &to, to_ca_file.as_deref()),
        Command::Deliveries(command) => deliveries::run(command),
        Command::Access(args) => access::run(args),
        Command::Store(command) => store::run(command),
        Command::Inbox(args) => inbox::run(args),
        Command::VerifyDelivery(args) => verify_delivery::run(args),
        Command::Backup { dest, config, force, pages_per_step } => backup::run(&config, &dest, force, pages_per_step),
        Command::Validate { record_type, file, schema_version, config, fr } => {
            validate::run(&config, &record_type, &file, schema_version.as_deref(), fr)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "passerelle", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        // clap's own checks: no two arguments with one name, defaults that parse, and so on.
        Cli::command().debug_assert();
    }
}
