//! Named operators and their roles: each role's allowed and refused calls (403 problem documents
//! in English and French), grants limited to some partners, the operator's name on every act the
//! audit trail records, and the operators file's checks.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::Value;

use crate::support::*;

/// One operator per role, each with its own token, and one operator limited to the city.
const OPERATORS: &str = r#"
[[operator]]
name = "vera.viewer"
roles = ["viewer"]
token_sha256 = ["{viewer}"]

[[operator]]
name = "omar.operator"
roles = ["operator"]
token_sha256 = ["{operator}"]

[[operator]]
name = "aude.auditor"
roles = ["auditor"]
token_sha256 = ["{auditor}"]

[[operator]]
name = "adam.admin"
roles = ["admin"]
token_sha256 = ["{admin}"]

[[operator]]
name = "olivia.ottawa"
token_sha256 = ["{ottawa}"]

[[operator.grant]]
role = "operator"
partners = ["ottawa-city"]
"#;

fn token(name: &str) -> String {
    format!("{name}-token-0123456789abcdef")
}

fn operators_file() -> String {
    let mut text = OPERATORS.to_owned();
    for name in ["viewer", "operator", "auditor", "admin", "ottawa"] {
        let digest = passerelle::digest::to_hex(&passerelle::digest::sha256(token(name).as_bytes()));
        text = text.replace(&format!("{{{name}}}"), &digest);
    }
    text
}

async fn call(gw: &TestGateway, who: &str, method: Method, path: &str, lang: &str) -> TestResponse {
    let bearer = format!("Bearer {}", token(who));
    gw.admin.send(method, path, &[("authorization", &bearer), ("accept-language", lang)], "").await
}

async fn wait_dead(gw: &TestGateway, recipient: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page =
            call(gw, "admin", Method::GET, &format!("/admin/v1/deliveries?status=dead&recipient={recipient}"), "en")
                .await
                .json();
        let dead = page["deliveries"].as_array().unwrap().clone();
        if dead.len() >= n {
            return dead;
        }
        assert!(Instant::now() < deadline, "{recipient} never had {n} dead deliveries");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn each_role_may_do_its_calls_and_is_refused_the_others_in_english_and_french() {
    let gw = Setup::new().operators(&operators_file()).start().await;
    // Who may call what: the issue's table, call by call.
    let calls: [(Method, &str, [bool; 4]); 11] = [
        //                                               viewer operator auditor admin
        (Method::GET, "/admin/v1/whoami", [true, true, true, true]),
        (Method::GET, "/admin/v1/overview", [true, true, true, true]),
        (Method::GET, "/admin/v1/deliveries", [true, true, true, true]),
        (Method::POST, "/admin/v1/recipients/ottawa-city/replay", [false, true, false, true]),
        (Method::POST, "/admin/v1/reload", [false, true, false, true]),
        (Method::GET, "/admin/v1/audit", [false, false, true, true]),
        (Method::GET, "/admin/v1/operators", [false, false, false, true]),
        (Method::GET, "/admin/v1/access?subject=046454286", [false, false, true, true]),
        (Method::GET, "/admin/v1/keys", [true, true, true, true]),
        (Method::GET, "/admin/v1/records", [true, true, true, true]),
        (Method::GET, "/admin/v1/stats?range=24h", [true, true, true, true]),
    ];
    for (method, path, allowed) in calls {
        for (who, allowed) in ["viewer", "operator", "auditor", "admin"].into_iter().zip(allowed) {
            let r = call(&gw, who, method.clone(), path, "en").await;
            if allowed {
                assert!(r.status.is_success(), "{who} {method} {path}: {} {}", r.status, r.text());
            } else {
                let doc = r.problem(403, "operator-forbidden");
                assert_eq!(r.header("content-language"), Some("en"));
                let detail = doc["detail"].as_str().unwrap();
                assert!(detail.contains("only these roles hold"), "{who} {path}: {detail}");
            }
        }
    }
    // The refusal names the permission and the roles that hold it, in the caller's language.
    let fr = call(&gw, "viewer", Method::POST, "/admin/v1/reload", "fr-CA").await;
    let doc = fr.problem(403, "operator-forbidden");
    assert_eq!(fr.header("content-language"), Some("fr"));
    assert_eq!(doc["title"], "Non permis à votre rôle");
    assert_eq!(
        doc["detail"],
        "Cet appel exige la permission « reload », que seuls ces rôles détiennent : operator, admin."
    );
    let en = call(&gw, "operator", Method::GET, "/admin/v1/audit", "en").await.problem(403, "operator-forbidden");
    assert_eq!(en["title"], "Not allowed for your role");
    assert_eq!(
        en["detail"],
        "This call needs the permission `read-audit`, which only these roles hold: auditor, admin."
    );

    // Who am I: the name, the roles and what they allow.
    let me = call(&gw, "auditor", Method::GET, "/admin/v1/whoami", "en").await.json();
    assert_eq!(me["name"], "aude.auditor");
    assert_eq!(me["credential"], "token");
    assert_eq!(me["roles"], serde_json::json!(["auditor"]));
    assert_eq!(me["permissions"], serde_json::json!(["view", "read-audit", "read-bodies", "read-access"]));
    // The list of operators names them and their grants, never a token or its digest.
    let list = call(&gw, "admin", Method::GET, "/admin/v1/operators", "en").await;
    let text = list.text();
    assert!(text.contains("olivia.ottawa") && text.contains("ottawa-city"), "{text}");
    for name in ["viewer", "operator", "auditor", "admin", "ottawa"] {
        let digest = passerelle::digest::to_hex(&passerelle::digest::sha256(token(name).as_bytes()));
        assert!(!text.contains(&digest) && !text.contains(&token(name)), "{name}'s token is in the list");
    }
    assert_eq!(list.json()["bootstrap_token"], true);
    // A token nobody holds is not signed in.
    call(&gw, "nobody", Method::GET, "/admin/v1/whoami", "en").await.problem(401, "admin-token-required");
}

#[tokio::test]
async fn a_grant_limited_to_one_partner_replays_only_that_partners_deliveries() {
    let gw = Setup::new().operators(&operators_file()).start().await;
    gw.recipient("ottawa-city").respond(400);
    gw.recipient("esdc-sin-registry").respond(400);
    let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let city = wait_dead(&gw, "ottawa-city", 1).await[0]["id"].as_i64().unwrap();
    let esdc = wait_dead(&gw, "esdc-sin-registry", 1).await[0]["id"].as_i64().unwrap();
    gw.recipient("ottawa-city").respond(200);
    gw.recipient("esdc-sin-registry").respond(200);

    // Another partner's delivery, or a whole other recipient: refused, saying why.
    let doc = call(&gw, "ottawa", Method::POST, &format!("/admin/v1/deliveries/{esdc}/replay"), "en")
        .await
        .problem(403, "operator-forbidden");
    assert!(doc["detail"].as_str().unwrap().contains("limited to other partners"), "{doc}");
    call(&gw, "ottawa", Method::POST, "/admin/v1/recipients/esdc-sin-registry/replay", "fr")
        .await
        .problem(403, "operator-forbidden");
    // A call on the whole gateway: refused to a limited grant.
    call(&gw, "ottawa", Method::POST, "/admin/v1/reload", "en").await.problem(403, "operator-forbidden");
    // Its own partner's: allowed, and the city receives the record again.
    let ok = call(&gw, "ottawa", Method::POST, &format!("/admin/v1/deliveries/{city}/replay"), "en").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    gw.recipient("ottawa-city").wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(gw.recipient("esdc-sin-registry").received().len(), 1, "esdc was not replayed");

    // The lists it sees hold its partners' deliveries only (the sender, Ontario's registrar, is
    // not one of them)...
    let seen = call(&gw, "ottawa", Method::GET, "/admin/v1/deliveries", "en").await.json();
    let recipients: Vec<&str> =
        seen["deliveries"].as_array().unwrap().iter().map(|d| d["recipient"].as_str().unwrap()).collect();
    assert_eq!(recipients, ["ottawa-city"]);
    // ...while a viewer over the whole gateway sees all four.
    let all = call(&gw, "viewer", Method::GET, "/admin/v1/deliveries", "en").await.json();
    assert_eq!(all["deliveries"].as_array().unwrap().len(), 4);

    // The console's overview is cut the same way: its partner's rows only, and no gateway-wide
    // totals (charts, rejection reasons).
    let ids = |doc: &Value, list: &str, key: &str| -> Vec<String> {
        doc[list].as_array().unwrap().iter().map(|r| r[key].as_str().unwrap().to_owned()).collect()
    };
    let seen = call(&gw, "ottawa", Method::GET, "/admin/v1/overview", "en").await.json();
    assert_eq!(seen["scope"], "limited");
    assert_eq!(ids(&seen, "recipients", "recipient"), ["ottawa-city"]);
    assert_eq!(ids(&seen, "partners", "id"), ["ottawa-city"]);
    assert!(ids(&seen, "deliveries", "recipient").iter().all(|r| r == "ottawa-city"), "{seen}");
    assert!(!ids(&seen, "deliveries", "recipient").is_empty(), "{seen}");
    assert!(seen["senders"].as_array().unwrap().is_empty(), "the sender is not its partner: {seen}");
    assert!(seen["chart"].as_array().unwrap().is_empty() && seen["rejection_reasons"].as_array().unwrap().is_empty());
    let all = call(&gw, "viewer", Method::GET, "/admin/v1/overview", "en").await.json();
    assert_eq!(all["scope"], "whole");
    assert!(ids(&all, "recipients", "recipient").len() > 1 && !all["senders"].as_array().unwrap().is_empty(), "{all}");
}

#[tokio::test]
async fn every_change_and_every_read_of_the_audit_trail_is_audited_under_the_operators_name() {
    let gw = Setup::new().operators(&operators_file()).start().await;
    gw.recipient("ottawa-city").respond(400);
    gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    let city = wait_dead(&gw, "ottawa-city", 1).await[0]["id"].as_i64().unwrap();
    gw.recipient("ottawa-city").respond(200);
    let replay = call(&gw, "operator", Method::POST, &format!("/admin/v1/deliveries/{city}/replay"), "en").await;
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(call(&gw, "operator", Method::POST, "/admin/v1/reload", "en").await.status, StatusCode::OK);
    let page = call(&gw, "auditor", Method::GET, "/admin/v1/audit?limit=5", "en").await;
    assert_eq!(page.status, StatusCode::OK);
    // A refused call changes nothing and is not audited as done.
    call(&gw, "viewer", Method::POST, "/admin/v1/reload", "en").await.problem(403, "operator-forbidden");

    let entries = gw.audit_entries().await;
    let by = |kind: &str| -> Vec<String> {
        entries.iter().filter(|e| e.event.kind == kind).map(|e| e.event.actor.clone()).collect()
    };
    assert_eq!(by("delivery.replayed"), ["operator:omar.operator"]);
    assert_eq!(by("config.loaded"), ["gateway", "operator:omar.operator"]);
    let reads: Vec<_> = entries.iter().filter(|e| e.event.kind == "audit.read").collect();
    assert_eq!(reads[0].event.actor, "operator:aude.auditor");
    assert_eq!(reads[0].event.count, 5);
    assert_eq!(reads[0].event.reason.as_deref(), Some("seq 1 to 5"));
    // The test's own reads, with the bootstrap token, are there too, under its name.
    assert!(reads[1..].iter().all(|e| e.event.actor == "operator:bootstrap-admin"));
}

#[tokio::test]
async fn the_bootstrap_token_is_an_admin_and_a_console_session_resolves_to_the_operator() {
    let gw = Setup::new().operators(&operators_file()).start().await;
    let me = gw.admin.get("/admin/v1/whoami", "test-admin-token").await.json();
    assert_eq!((me["name"].as_str(), me["credential"].as_str()), (Some("bootstrap-admin"), Some("bootstrap-token")));
    assert_eq!(me["roles"], serde_json::json!(["admin"]));

    // Signing in to the console with an operator's own token: the session is that operator.
    let origin = format!("http://{}", gw.gateway.as_ref().unwrap().admin_addr);
    let form = format!("token={}", token("viewer"));
    let login = gw
        .admin
        .send(
            Method::POST,
            "/console/login",
            &[("content-type", "application/x-www-form-urlencoded"), ("origin", &origin)],
            form,
        )
        .await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    let cookie = login.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let me = gw.admin.send(Method::GET, "/admin/v1/whoami", &[("cookie", &cookie)], "").await.json();
    assert_eq!(me["name"], "vera.viewer");
    let refused =
        gw.admin.send(Method::GET, "/admin/v1/audit", &[("cookie", &cookie), ("accept-language", "fr")], "").await;
    refused.problem(403, "operator-forbidden");

    // Removing the operator (a reload) ends their session at once.
    std::fs::write(gw.setup.config_dir().join("operators.toml"), "").unwrap();
    assert_eq!(
        gw.admin
            .send(Method::POST, "/admin/v1/reload", &[("authorization", "Bearer test-admin-token")], "")
            .await
            .status,
        StatusCode::OK
    );
    gw.admin
        .send(Method::GET, "/admin/v1/whoami", &[("cookie", &cookie)], "")
        .await
        .problem(401, "admin-token-required");
}

#[test]
fn check_refuses_an_operators_file_with_problems() {
    let setup = Setup::new().operators(
        r#"
[[operator]]
name = "Bad Name"
roles = ["viewer"]

[[operator]]
name = "ana"
roles = ["root"]
token_sha256 = ["abc"]

[[operator]]
name = "ana"
roles = ["viewer"]

[[operator]]
name = "ben"

[[operator]]
name = "carl"
[[operator.grant]]
role = "operator"
partners = ["atlantis"]
agreements = ["birth-esdc"]
"#,
    );
    setup.write(&Default::default());
    let problems: Vec<String> = passerelle::config::load(&setup.main_config())
        .expect_err("the operators file has problems")
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect();
    let all = problems.join("\n");
    for expected in [
        "operator name `Bad Name` must be",
        "operator `ana`: `root` is not a role (viewer, operator, auditor, admin)",
        "operator `ana`: token_sha256 `abc` is not 64 hex digits",
        "operator `ana`: is defined twice",
        "operator `ben`: holds no role",
        "operator `carl`: grant of `operator` names partner `atlantis`, which the partners file does not define",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    assert!(problems.iter().all(|p| p.contains("operators.toml")), "{all}");
}

#[tokio::test]
async fn the_shared_token_warns_at_every_start_while_it_is_in_force() {
    let warning = |logs: &[String]| {
        logs.iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with("The shared admin token is in force")))
            .map(|l| l["level"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    let setup = Setup::new().operators(&operators_file());
    setup.write_for(&mock_recipients().await);

    // With the token file: one warning per start.
    let gateway = ChildGateway::spawn(&setup.main_config(), &[]).await;
    assert_eq!(warning(&gateway.logs.lock().unwrap()), ["WARN"]);
    let viewer = gateway.admin.get("/admin/v1/whoami", &token("viewer")).await.json();
    assert_eq!(viewer["name"], "vera.viewer");
    gateway.terminate();

    // The operators file alone: no warning, and the old token no longer opens anything.
    edit_file(&setup.main_config(), "token_file = \"admin-token\"", "");
    let gateway = ChildGateway::spawn(&setup.main_config(), &[]).await;
    assert!(warning(&gateway.logs.lock().unwrap()).is_empty(), "{:?}", gateway.logs.lock().unwrap());
    gateway.admin.get("/admin/v1/whoami", "test-admin-token").await.problem(401, "admin-token-required");
    assert_eq!(gateway.admin.get("/admin/v1/whoami", &token("admin")).await.json()["name"], "adam.admin");
    gateway.terminate();
}
