//! `passerelle dev-pki`: a development CA, a localhost server certificate and one client
//! certificate per partner, written into the data directory (what the demo and the shipped
//! configuration use). Existing files are kept.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::raw::{RawMain, RawPartners};

/// Reads the data directory and the partner ids straight from the files: the full
/// configuration cannot load before its certificates exist.
pub fn partners_and_data_dir(config_path: &Path) -> anyhow::Result<(std::path::PathBuf, Vec<String>)> {
    let text =
        std::fs::read_to_string(config_path).with_context(|| format!("cannot read {}", config_path.display()))?;
    let main: RawMain = toml::from_str(&text).with_context(|| format!("{} is not valid", config_path.display()))?;
    let base = std::path::absolute(config_path)?.parent().map(Path::to_path_buf).unwrap_or_default();
    let data_dir = crate::config::normalize(&base.join(main.data_dir.as_deref().unwrap_or("../data")));
    let partners_file = base.join(main.partners_file.as_deref().unwrap_or("partners.toml"));
    let partners: RawPartners = toml::from_str(&std::fs::read_to_string(&partners_file)?)
        .with_context(|| format!("{} is not valid", partners_file.display()))?;
    Ok((data_dir, partners.partners.into_iter().map(|p| p.id).collect()))
}

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let (data_dir, partners) = partners_and_data_dir(config_path)?;
    let ids: Vec<&str> = partners.iter().map(String::as_str).collect();
    let (files, created) = crate::pki::write_dev_pki(&data_dir, &ids)?;
    println!("{} development PKI in {}", if created { "Wrote the" } else { "Kept the existing" }, files.dir.display());
    println!("  partner CA            {}", files.ca_cert.display());
    println!("  CRL                   {}", files.crl.display());
    println!("  server (localhost)    {}", files.server_cert.display());
    for id in &ids {
        println!("  client {id:<15} {}", files.client_cert(id).display());
    }
    println!("Never use these outside development: the CA's key is beside them.");
    Ok(ExitCode::SUCCESS)
}
