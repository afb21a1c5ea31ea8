//! The `passerelle` command: parse the command line, run, map errors to an exit code.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: allocation and freeing were ~12 % of the gateway's CPU
/// samples under load (perf, cpu-clock; request/response at 64 connections). See the commit
/// that chose it for the measurement.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = passerelle::cli::Cli::parse();
    match passerelle::cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
