//! `passerelle demo` runs the real gateway on the shipped configuration and shows every delivery.

use std::process::Command;

use crate::support::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn the_demo_delivers_every_record_to_every_recipient() {
    // The shipped configuration, moved to free ports so the test runs beside anything else.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(config.join("agreements")).unwrap();
    for entry in std::fs::read_dir(repo().join("config/agreements")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, config.join("agreements").join(path.file_name().unwrap())).unwrap();
    }
    let mut partners = std::fs::read_to_string(repo().join("config/partners.toml")).unwrap();
    for (_, shipped) in RECIPIENTS.iter().filter(|(_, shipped)| shipped.starts_with("endpoint")) {
        partners = partners.replace(shipped, &format!("endpoint = \"http://127.0.0.1:{}/inbox\"", free_port()));
    }
    std::fs::write(config.join("partners.toml"), partners).unwrap();
    let main = std::fs::read_to_string(repo().join("config/passerelle.toml"))
        .unwrap()
        .replace("127.0.0.1:8443", "127.0.0.1:0")
        .replace("127.0.0.1:9090", "127.0.0.1:0")
        .replace("schemas_dir = \"../schemas\"", &format!("schemas_dir = \"{}\"", repo().join("schemas").display()));
    std::fs::write(config.join("passerelle.toml"), main).unwrap();

    let out = Command::new(binary())
        .args(["demo", "--once", "--config", config.join("passerelle.toml").to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.matches("202 Accepted").count(), 4, "{stdout}");
    assert!(stdout.contains("(10 of 10 deliveries)"), "{stdout}");
    // The health plan is pinned to birth-registration 1.0: the 1.1 births reach it translated.
    assert!(stdout.contains("on-health-plan is pinned to version 1.0 in agreement birth-ohip"), "{stdout}");
    let ohip = stdout.split("  on-health-plan:").nth(1).unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(ohip.lines().filter(|l| l.contains("[birth-registration/1.0]")).count(), 3, "{stdout}");
    assert!(stdout.contains("[birth-registration/1.1]"), "the others receive what was sent: {stdout}");
    // Bodies are sealed at rest under a key the demo generated into its data directory.
    let key_line =
        stdout.lines().find(|l| l.starts_with("Bodies are sealed at rest")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(key_line.contains("store.key, generated now (owner-only)"), "{key_line}");
    // The city takes its four from its mailbox, and is shown the command that does it.
    assert!(
        stdout.contains("ottawa-city takes its records from its mailbox (mode = \"pull\"): 4 deliveries wait for it"),
        "{stdout}"
    );
    let command = stdout
        .lines()
        .find(|l| l.contains("passerelle inbox --url https://localhost:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(command.contains("ottawa-city.pem") && command.ends_with("--once"), "{command}");
    assert!(stdout.contains("on-health-plan asked esdc-sin-registry (sin-validation): 200 OK"), "{stdout}");
    assert!(stdout.contains(r#""sin_status":"valid""#), "{stdout}");
    // A newcomer is told where the operators' side is and how to sign in.
    let console = stdout.lines().find(|l| l.contains("/console")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(console.contains("http://127.0.0.1:"), "{console}");
    let token_file = dir.path().join("data/admin-token");
    assert!(stdout.contains(&format!("admin token in {}", token_file.display())), "{stdout}");
    assert!(stdout.contains("what was disclosed about Julie Tremblay: passerelle access 046454286"), "{stdout}");
    assert!(token_file.exists());
    // Standard error is a pipe here: no colour codes in the log lines.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains('\u{1b}'), "ANSI escapes in a log written to a pipe: {stderr:?}");
    // What the demo did verifies.
    let (code, out) = cli(&["audit", "verify", "--config", config.join("passerelle.toml").to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    // The keys are printed and kept, hashed for the gateway, in the data directory.
    let data = dir.path().join("data");
    let credentials = std::fs::read_to_string(data.join("demo-credentials.toml")).unwrap();
    let key = credentials.lines().find(|l| l.starts_with("on-vital-stats")).unwrap().split('"').nth(1).unwrap();
    assert!(stdout.contains(key));
    let hashes = std::fs::read_to_string(data.join("api-keys.toml")).unwrap();
    assert!(hashes.contains(&passerelle::auth::api_key_hash_hex(key)));
    assert!(!hashes.contains(key), "only hashes go where the configuration reads them");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("demo-credentials.toml")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "credentials are readable by the owner only");
    }
}
