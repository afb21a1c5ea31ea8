//! `passerelle check`: every configuration problem, grouped by file, with the fix.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, Problem};

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    match config::load(config_path) {
        Ok(config) => {
            println!(
                "{}: OK ({} partners, {} agreements, {} record types)",
                config_path.display(),
                config.partners.len(),
                config.agreements.len(),
                config.catalog.types().count()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            print_problems(&e.problems);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Prints problems grouped by file, to standard output.
pub fn print_problems(problems: &[Problem]) {
    let mut by_file: BTreeMap<&Path, Vec<&Problem>> = BTreeMap::new();
    for p in problems {
        by_file.entry(p.file.as_path()).or_default().push(p);
    }
    for (file, problems) in by_file {
        println!("{}", file.display());
        for p in problems {
            println!("  - {}", p.message);
            if let Some(fix) = &p.fix {
                println!("    fix: {fix}");
            }
        }
    }
    println!("{} problem(s) found.", problems.len());
}
