//! `passerelle check`: every configuration problem, grouped by file, with the fix.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use crate::config;
use crate::problem::Problem;

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    match config::load(config_path) {
        Ok(config) => {
            println!(
                "{}: OK ({} partners, {} agreements, {} record types)",
                config_path.display(),
                config.settings.partners.len(),
                config.built.agreements.len(),
                config.built.catalog.types().count()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            print_problems(&e.problems);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Prints problems grouped by file (paths relative to the current directory when under it), each
/// with its fix when there is one, then a count, to standard output:
///
/// ```text
/// config/agreements/birth-ottawa.toml
///   - recipient `gatineau-city` is not a partner in the partners file
///     fix: add the partner or correct the id
///
/// 1 problem in 1 file.
/// ```
pub fn print_problems(problems: &[Problem]) {
    let mut by_file: BTreeMap<&Path, Vec<&Problem>> = BTreeMap::new();
    for p in problems {
        by_file.entry(p.file.as_path()).or_default().push(p);
    }
    let here = std::env::current_dir().ok();
    for (file, problems) in &by_file {
        let shown = here.as_deref().and_then(|here| file.strip_prefix(here).ok()).unwrap_or(file);
        println!("{}", shown.display());
        for p in problems {
            println!("  - {}", p.message);
            if let Some(fix) = &p.fix {
                println!("    fix: {fix}");
            }
        }
        println!();
    }
    println!("{} in {}.", count(problems.len(), "problem"), count(by_file.len(), "file"));
}

/// `1 problem`, `3 problems`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}
