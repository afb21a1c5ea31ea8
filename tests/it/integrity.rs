//! What the gateway reads back is what was written, or an error that says so: a stored hash of
//! the wrong length is not zero-filled, a status the code does not know is not taken for
//! `queued`, and hex is two digits a byte, nothing else.

use http::Method;

use crate::support::*;

/// Found in review: `decode_hex("+f")` returned `[15]` (a sign accepted as a digit), so an API
/// key hash written `+f...` was taken for `0f...`.
#[test]
fn hex_is_two_digits_a_byte_and_nothing_else() {
    use passerelle::digest::decode_hex;
    assert_eq!(decode_hex("0f"), Some(vec![15]));
    for bad in ["+f", "-1", " f", "f", "0x0f", "g0"] {
        assert_eq!(decode_hex(bad), None, "{bad:?}");
    }
    let setup = Setup::new();
    setup.write(&std::collections::HashMap::new());
    let keys = setup.config_dir().join("api-keys.toml");
    let text = std::fs::read_to_string(&keys).unwrap();
    let first = text.lines().nth(1).unwrap();
    let (partner, _) = first.split_once(" = ").unwrap();
    std::fs::write(&keys, format!("{text}\n").replace(first, &format!("{partner} = [\"+f{}\"]", "0".repeat(62))))
        .unwrap();
    let (code, out) = cli(&["check", "--config", setup.main_config().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("64 hexadecimal characters"), "{out}");
}

/// Found in review: a delivery whose stored status the code does not know was listed as
/// `queued`, hiding a damaged row from operators.
#[tokio::test]
async fn a_delivery_with_an_unknown_status_is_an_error_not_queued() {
    let gw = Setup::new().start().await;
    let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(r.status, 202);
    // Once the delivery is settled, no worker writes its row again.
    let settled = || -> i64 {
        gw.db()
            .query_row(
                "SELECT COUNT(*) FROM deliveries WHERE recipient = 'ottawa-city' AND status = 'delivered'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while settled() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    gw.db().execute_batch("UPDATE deliveries SET status = 'lost' WHERE recipient = 'ottawa-city'").unwrap();
    let list = gw.admin.send(Method::GET, "/admin/v1/deliveries", &[("authorization", "Bearer test-admin-token")], "");
    list.await.problem(503, "store-unavailable");
    let id = r.json()["record_id"].as_str().unwrap().to_owned();
    gw.client.get(&format!("/v1/records/{id}"), gw.key("on-vital-stats")).await.problem(503, "store-unavailable");
}

/// Found in review: a stored hash of the wrong length was zero-filled, so `audit verify` would
/// report a mismatch on a made-up value instead of the damage itself.
#[tokio::test]
async fn a_stored_hash_of_the_wrong_length_is_an_error_not_zero_filled() {
    let gw = Setup::new().start().await;
    let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(r.status, 202);
    let setup = gw.stop().await;
    let db = rusqlite::Connection::open(setup.data_dir().join("passerelle.sqlite")).unwrap();
    db.execute_batch("UPDATE audit_log SET hash = x'00' WHERE seq = 1").unwrap();
    let out = std::process::Command::new(binary())
        .args(["audit", "verify", "--config", setup.main_config().to_str().unwrap()])
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("32"), "the error names the length: {said}");
}
