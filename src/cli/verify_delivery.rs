//! `passerelle verify-delivery`: checks a delivery's signature offline, as a recipient would,
//! with nothing but the gateway's public key, the body as received and its signature
//! ([`crate::delivery::signature`] holds the format and the checks).
//!
//! Prints the signed facts as one JSON line when the signature holds (and every fact given on
//! the command line matches), or `INVALID:` and why, with exit status 1.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::audit::keys::TrustedKeys;
use crate::delivery::signature::{self, ReceivedFacts};

/// What to check, and against what.
#[derive(Debug, clap::Args)]
pub struct VerifyDeliveryArgs {
    /// The body exactly as received (the HTTP request body or the NATS message payload); with
    /// --inbox, one delivery as `GET /v1/inbox` or `passerelle inbox` gives it.
    body: PathBuf,
    /// The signature (the `Passerelle-Signature` header's value), or a file holding it; with
    /// --inbox, taken from the delivery.
    #[arg(required_unless_present = "inbox", conflicts_with = "inbox")]
    signature: Option<String>,
    /// The gateway's public keys: a JWKS (`GET /v1/keys`) or `ed25519 <key-id> <hex>` lines
    /// (`passerelle audit key`); may be given several times.
    #[arg(long = "key", value_name = "FILE", required = true)]
    keys: Vec<PathBuf>,
    /// BODY is a delivery taken from a mailbox: its `body` is checked in its canonical form (the
    /// bytes the gateway sent), its `signature` is the one checked, and its `record_id`,
    /// `agreement`, `sender` and `schema` must be the signed ones.
    #[arg(long)]
    inbox: bool,
    /// The record id the delivery came with (`Passerelle-Record-Id`): it must be the signed one.
    #[arg(long, value_name = "ID")]
    record_id: Option<String>,
    /// The agreement it came with (`Passerelle-Agreement`): it must be the signed one.
    #[arg(long, value_name = "ID")]
    agreement: Option<String>,
    /// The sender it came with (`Passerelle-Sender`): it must be the signed one.
    #[arg(long, value_name = "ID")]
    sender: Option<String>,
    /// Your own partner id: the delivery must have been signed for you.
    #[arg(long, value_name = "ID")]
    recipient: Option<String>,
    /// The schema it came with (`Passerelle-Schema`, `type/MAJOR.MINOR`): it must be the signed one.
    #[arg(long, value_name = "TYPE/VERSION")]
    schema: Option<String>,
}

/// The largest file read: a body is at most the gateway's body limit (1 MiB by default).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    let size = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.len();
    if size > MAX_FILE_BYTES {
        bail!("{} is larger than {MAX_FILE_BYTES} bytes", path.display());
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The keys of every --key file.
fn keys(files: &[PathBuf]) -> anyhow::Result<TrustedKeys> {
    let mut keys = TrustedKeys::default();
    for file in files {
        let text = String::from_utf8(read(file)?).with_context(|| format!("{} is not text", file.display()))?;
        for (id, public) in signature::read_public_keys(&text, &file.display().to_string())?.iter() {
            keys.add(id.to_owned(), public.to_vec());
        }
    }
    Ok(keys)
}

pub fn run(args: VerifyDeliveryArgs) -> anyhow::Result<ExitCode> {
    let keys = keys(&args.keys)?;
    let file = read(&args.body)?;
    // An inbox delivery carries its body as a JSON value, the canonical bytes that were signed,
    // and its facts and signature as members.
    let (body, signature, from_inbox) = if args.inbox {
        let delivery = crate::json::parse_strict(&file, 256)
            .with_context(|| format!("{} is not one inbox delivery (JSON)", args.body.display()))?;
        let Some(signature) = delivery.get("signature").and_then(Value::as_str).map(str::to_owned) else {
            println!("INVALID: the delivery carries no signature");
            return Ok(ExitCode::FAILURE);
        };
        let body = delivery.get("body").map(crate::json::to_canonical_vec).unwrap_or_default();
        (body, signature, Some(delivery))
    } else {
        // Exactly as received: a byte added or changed is a body that was not signed.
        let given = args.signature.unwrap_or_default();
        let signature = if Path::new(&given).is_file() {
            String::from_utf8(read(Path::new(&given))?).context("the signature file is not text")?
        } else {
            given
        };
        (file, signature, None)
    };
    let member = |name: &str| from_inbox.as_ref().and_then(|d| d.get(name)).and_then(Value::as_str);
    let told = ReceivedFacts {
        record_id: args.record_id.as_deref().or(member("record_id")),
        agreement: args.agreement.as_deref().or(member("agreement")),
        sender: args.sender.as_deref().or(member("sender")),
        recipient: args.recipient.as_deref(),
        schema: args.schema.as_deref().or(member("schema")),
    };
    match signature::verify(&signature, &body, &keys).and_then(|v| v.matches(&told).map(|()| v)) {
        Ok(verified) => {
            println!("{}", json!({"valid": true, "key_id": verified.key_id, "facts": verified.facts}));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("INVALID: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
