//! `passerelle validate TYPE FILE`: check a record file the way the gateway would.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::http::i18n::{Lang, violation_message};
use crate::schema::{SchemaCatalog, Version};

pub fn run(
    config_path: &Path,
    record_type: &str,
    file: &Path,
    version: Option<&str>,
    fr: bool,
) -> anyhow::Result<ExitCode> {
    let lang = if fr { Lang::Fr } else { Lang::En };
    // Only the schemas are needed: a broken agreement must not stop a schema author.
    let schemas_dir = schemas_dir(config_path)?;
    let catalog = match SchemaCatalog::load(&schemas_dir) {
        Ok(c) => c,
        Err(problems) => {
            super::check::print_problems(&problems);
            return Ok(ExitCode::FAILURE);
        }
    };
    let t = catalog
        .record_type(record_type)
        .with_context(|| format!("no schema for record type `{record_type}` in {}", schemas_dir.display()))?;
    let version = match version {
        Some(v) => v.parse::<Version>().map_err(|_| anyhow::anyhow!("`{v}` is not MAJOR.MINOR"))?,
        None => *t.versions.keys().last().context("the record type has no version")?,
    };
    let schema = t.version(version).with_context(|| format!("`{record_type}` has no version {version}"))?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    // Read as the gateway reads a record: numbers as written, the first violations listed.
    let violations = match schema.check_body(&bytes, 64) {
        Ok(checked) => checked.violations,
        Err(e) => {
            println!("{}: {e}", file.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    if violations.is_empty() {
        println!("{}: {} {version}: {}", file.display(), record_type, lang.pick("valid", "valide"));
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}: {} {version}: {} violation(s)", file.display(), record_type, violations.total());
    for v in violations.listed() {
        println!(
            "  {} [{}] {}",
            if v.pointer.is_empty() { "/" } else { &v.pointer },
            v.keyword,
            violation_message(v, lang)
        );
    }
    Ok(ExitCode::FAILURE)
}

fn schemas_dir(config_path: &Path) -> anyhow::Result<std::path::PathBuf> {
    let text =
        std::fs::read_to_string(config_path).with_context(|| format!("cannot read {}", config_path.display()))?;
    let raw: crate::config::raw::RawMain =
        toml::from_str(&text).with_context(|| format!("{} is not valid", config_path.display()))?;
    let base = std::path::absolute(config_path)?.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(base.join(raw.schemas_dir.as_deref().unwrap_or("../schemas")))
}
