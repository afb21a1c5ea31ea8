//! The command line explains itself: every command and argument has a description, every
//! `--help` works, and the shell completions know every command.

use clap::CommandFactory;
use passerelle::cli::Cli;

use crate::support::*;

/// Every command below `command`, as the words that reach it (`["audit", "verify"]`), with the
/// command itself; clap's generated `help` commands are left out.
fn commands(command: &clap::Command, path: Vec<String>) -> Vec<(Vec<String>, clap::Command)> {
    let mut found = vec![(path.clone(), command.clone())];
    for sub in command.get_subcommands().filter(|c| c.get_name() != "help") {
        let mut words = path.clone();
        words.push(sub.get_name().to_owned());
        found.extend(commands(sub, words));
    }
    found
}

fn all_commands() -> Vec<(Vec<String>, clap::Command)> {
    let mut cli = Cli::command();
    cli.build();
    commands(&cli, Vec::new())
}

#[test]
fn every_command_and_every_argument_has_a_description() {
    let mut missing = Vec::new();
    for (path, command) in all_commands() {
        let name = format!("passerelle {}", path.join(" "));
        if command.get_about().is_none_or(|a| a.to_string().trim().is_empty()) {
            missing.push(format!("{name}: no about"));
        }
        for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
            if matches!(arg.get_id().as_str(), "help" | "version") {
                continue;
            }
            if arg.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                missing.push(format!("{name}: argument `{}` has no help", arg.get_id()));
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

/// `text` with its line wrapping undone.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn every_help_page_exits_0_and_describes_its_command() {
    for (path, command) in all_commands() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let (code, out) = cli(&args);
        assert_eq!(code, 0, "passerelle {}: {out}", args.join(" "));
        assert!(out.contains("Usage: passerelle"), "{out}");
        // The long description, or the about line when there is no more to say.
        let about = command.get_long_about().or(command.get_about()).map(|a| a.to_string()).unwrap_or_default();
        let first = words(about.split("\n\n").next().unwrap_or_default());
        assert!(!first.is_empty() && words(&out).starts_with(&first), "passerelle {}: {out}", args.join(" "));
        for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                assert!(out.contains(&format!("--{long}")), "passerelle {} does not show --{long}", args.join(" "));
            }
        }
    }
}

#[test]
fn bash_completions_name_every_command() {
    let (code, script) = cli(&["completions", "bash"]);
    assert_eq!(code, 0, "{script}");
    assert!(script.contains("complete -F _passerelle"), "a bash completion script: {script}");
    for (path, _) in all_commands() {
        if let Some(last) = path.last() {
            assert!(script.contains(last.as_str()), "no `{}` in the bash completions", path.join(" "));
        }
    }
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let (code, script) = cli(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {script}");
        assert!(script.contains("backup") && script.contains("verify-receipt"), "{shell}: {script}");
    }
    let (code, _) = cli(&["completions", "cmd"]);
    assert_eq!(code, 2, "an unknown shell is a usage error");
}

/// Found trying the product as a newcomer: the README's commands wrote `audit.jsonl`,
/// `gateway.pub` and `receipt.json` into the working tree, where `git status` then showed them.
/// Every file a README command writes inside the repository lands where git ignores it.
#[test]
fn the_readmes_commands_write_only_where_git_ignores() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut written = Vec::new();
    for block in readme.split("```sh\n").skip(1) {
        let block = block.split("```").next().unwrap();
        for line in block.lines().filter(|l| !l.trim_start().starts_with('#')).map(|l| l.split(" #").next().unwrap()) {
            let words: Vec<&str> = line.split_whitespace().collect();
            for pair in words.windows(2) {
                if matches!(pair[0], "--output" | "-o" | ">") {
                    written.push(pair[1].to_owned());
                }
            }
            if let Some(backup) = line.split("passerelle backup ").nth(1).or(line.split("-- backup ").nth(1)) {
                written.extend(backup.split_whitespace().next().map(str::to_owned));
            }
        }
    }
    assert!(written.iter().any(|w| w.contains("receipt.json")), "{written:?}");
    for path in written.iter().filter(|p| !p.starts_with('/') && !p.starts_with('~') && !p.starts_with('$')) {
        let ignored = std::process::Command::new("git")
            .args(["check-ignore", "-q", "--no-index", path])
            .current_dir(repo())
            .status()
            .unwrap();
        assert!(ignored.success(), "a README command writes {path}, which git does not ignore");
    }
    // And the commands run the release build the first command builds, not a second debug one.
    assert!(!readme.contains("cargo run -- "), "a README command compiles a debug build");
}
