//! `passerelle demo`: the real gateway on the shipped configuration, with local recipients.

use std::path::Path;
use std::process::ExitCode;

pub fn run(_config: &Path, _once: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("demo: written next")
}
