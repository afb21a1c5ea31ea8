//! Sign-in through OpenID Connect: a real provider on loopback (`oidc-provider`, run by Node),
//! people signed in through it in Chromium, each role's allowed and refused calls made from the
//! signed-in page (403 problem documents in English and French), their acts audited under their
//! name, a person whose groups map to no role refused, a tampered or replayed callback refused,
//! a reload that removes a group's mapping applied at the next call, and `check` on bad
//! `[admin.oidc]` entries.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use crate::support::oidc::*;
use crate::support::*;

/// The test provider's groups, mapped to roles (its `staff` group is mapped to none).
const GROUPS: &str = r#"
[[admin.oidc.group]]
group = "passerelle-viewers"
role = "viewer"

[[admin.oidc.group]]
group = "passerelle-operators"
role = "operator"

[[admin.oidc.group]]
group = "passerelle-auditors"
role = "auditor"
"#;

/// A gateway on a known admin port, signing people in through a test provider that knows its
/// redirect URL.
async fn gateway_with_provider(groups: &str) -> (TestGateway, TestProvider, String) {
    let port = free_port();
    let console = format!("http://127.0.0.1:{port}");
    let redirect = format!("{console}/console/oidc/callback");
    let provider = TestProvider::start(&redirect);
    let setup = Setup::new().edit_listen(&format!("admin = \"127.0.0.1:{port}\"")).admin(&admin_oidc(
        &provider.issuer,
        &redirect,
        groups,
    ));
    write_secret(&setup.config_dir());
    (setup.start().await, provider, console)
}

async fn dead_delivery(gw: &TestGateway, recipient: &str) -> i64 {
    gw.recipient(recipient).respond(400);
    let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let path = format!("/admin/v1/deliveries?status=dead&recipient={recipient}");
        if let Some(id) = gw.admin.get(&path, "test-admin-token").await.json()["deliveries"][0]["id"].as_i64() {
            gw.recipient(recipient).respond(200);
            return id;
        }
        assert!(Instant::now() < deadline, "{recipient} never had a dead delivery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_signed_in_through_the_provider_may_do_their_roles_calls_only() {
    let (gw, _provider, console) = gateway_with_provider(GROUPS).await;
    let dead = dead_delivery(&gw, "ottawa-city").await;

    // The sign-in page offers the provider, in both languages.
    let page = gw.admin.send(Method::GET, "/console", &[], "").await.text();
    let issuer = &_provider.issuer;
    assert!(page.contains(&format!("Sign in with {issuer}")), "{page}");
    assert!(page.contains(&format!("Se connecter avec {issuer}")), "{page}");

    // The calls of tests/it/roles.rs, for the three people and their groups' roles.
    let replay = format!("/admin/v1/deliveries/{dead}/replay");
    let calls: [(&str, &str, [bool; 3]); 8] = [
        //                                                  viewer operator auditor
        ("GET", "/admin/v1/whoami", [true, true, true]),
        ("GET", "/admin/v1/overview", [true, true, true]),
        ("GET", "/admin/v1/deliveries", [true, true, true]),
        ("GET", "/admin/v1/keys", [true, true, true]),
        ("GET", "/admin/v1/audit", [false, false, true]),
        ("GET", "/admin/v1/access?subject=046454286", [false, false, true]),
        ("GET", "/admin/v1/operators", [false, false, false]),
        ("POST", &replay, [false, true, false]),
    ];
    for (index, (person, role)) in
        [("vera", "viewer"), ("olivier", "operator"), ("aude", "auditor")].into_iter().enumerate()
    {
        let browser = sign_in(&console, person).await;
        let url = browser.execute("return location.href", serde_json::json!([])).await;
        assert_eq!(url, format!("{console}/console"), "{person} lands on the console");
        browser.find("#fingerprint").await;
        // The browser holds the console session, and no longer the sign-in's binding cookie.
        let cookies = browser.cookies().await;
        assert!(cookies.iter().any(|c| c["name"] == "passerelle_console" && c["httpOnly"] == true), "{cookies:?}");
        assert!(!cookies.iter().any(|c| c["name"] == "passerelle_oidc"), "{cookies:?}");

        let (status, _, me) = call_from_page(&browser, "GET", "/admin/v1/whoami", "en").await;
        assert_eq!(status, 200);
        assert_eq!((me["name"].as_str(), me["credential"].as_str()), (Some(person), Some("openid")));
        assert_eq!(me["roles"], serde_json::json!([role]));

        for (method, path, allowed) in &calls {
            // Refusals in English for one call, in French for the next.
            let lang = if path.len() % 2 == 0 { "en" } else { "fr-CA" };
            let (status, content_language, doc) = call_from_page(&browser, method, path, lang).await;
            if allowed[index] {
                assert!((200..300).contains(&status), "{person} {method} {path}: {status} {doc}");
                continue;
            }
            assert_eq!(status, 403, "{person} {method} {path}: {doc}");
            assert_eq!(doc["type"], "urn:passerelle:problem:operator-forbidden", "{doc}");
            if lang == "en" {
                assert_eq!(
                    (content_language.as_str(), doc["title"].as_str()),
                    ("en", Some("Not allowed for your role"))
                );
            } else {
                assert_eq!((content_language.as_str(), doc["title"].as_str()), ("fr", Some("Non permis à votre rôle")));
            }
        }
        // The same refusal in both languages, word for word as for a token.
        let (_, _, en) = call_from_page(&browser, "POST", "/admin/v1/reload", "en").await;
        let (_, _, fr) = call_from_page(&browser, "POST", "/admin/v1/reload", "fr").await;
        if role == "operator" {
            assert_eq!(en["reloaded"], true, "{en}");
        } else {
            assert_eq!(
                en["detail"],
                "This call needs the permission `reload`, which only these roles hold: operator, admin."
            );
            assert_eq!(
                fr["detail"],
                "Cet appel exige la permission « reload », que seuls ces rôles détiennent : operator, admin."
            );
        }
    }

    // The replay Olivier made from his page is audited under his name, as is Aude's reading of
    // the audit trail.
    gw.recipient("ottawa-city").wait_for(2, Duration::from_secs(5)).await;
    let entries = gw.audit_entries().await;
    let actors = |kind: &str| -> Vec<String> {
        entries.iter().filter(|e| e.event.kind == kind).map(|e| e.event.actor.clone()).collect()
    };
    assert_eq!(actors("delivery.replayed"), ["operator:olivier"]);
    assert!(actors("audit.read").contains(&"operator:aude".to_owned()), "{:?}", actors("audit.read"));
    assert!(actors("config.loaded").contains(&"operator:olivier".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_removes_a_groups_mapping_applies_at_the_next_call() {
    let (gw, _provider, console) = gateway_with_provider(GROUPS).await;
    let browser = sign_in(&console, "olivier").await;
    let (status, _, _) = call_from_page(&browser, "GET", "/admin/v1/deliveries", "en").await;
    assert_eq!(status, 200);

    // The operators' group loses its mapping; the others keep theirs.
    let main = gw.setup.main_config();
    edit_file(
        &main,
        "group = \"passerelle-operators\"\nrole = \"operator\"",
        "group = \"passerelle-operators\"\nrole = \"viewer\"",
    );
    let reload =
        gw.admin.send(Method::POST, "/admin/v1/reload", &[("authorization", "Bearer test-admin-token")], "").await;
    assert_eq!(reload.status, StatusCode::OK, "{}", reload.text());
    // Olivier's session now holds a viewer's grant: a reload is refused to him...
    let (status, _, doc) = call_from_page(&browser, "POST", "/admin/v1/reload", "en").await;
    assert_eq!((status, doc["type"].as_str()), (403, Some("urn:passerelle:problem:operator-forbidden")));

    // ...and without any mapping for his group, he is signed out at his next call.
    let text = std::fs::read_to_string(&main).unwrap();
    let without = text.replace("[[admin.oidc.group]]\ngroup = \"passerelle-operators\"\nrole = \"viewer\"\n", "");
    assert_ne!(text, without);
    std::fs::write(&main, without).unwrap();
    let reload =
        gw.admin.send(Method::POST, "/admin/v1/reload", &[("authorization", "Bearer test-admin-token")], "").await;
    assert_eq!(reload.status, StatusCode::OK, "{}", reload.text());
    let (status, _, doc) = call_from_page(&browser, "GET", "/admin/v1/deliveries", "fr").await;
    assert_eq!((status, doc["type"].as_str()), (401, Some("urn:passerelle:problem:admin-token-required")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_without_a_mapped_group_and_a_tampered_or_replayed_callback_are_refused() {
    let (gw, _provider, console) = gateway_with_provider(GROUPS).await;

    // Nadia is only in `staff`, which maps to no role: a refusal page, in both languages, and
    // no session.
    let browser = sign_in(&console, "nadia").await;
    let reason =
        browser.execute("return document.getElementById('refused').dataset.reason", serde_json::json!([])).await;
    assert_eq!(reason, "no-role");
    let source = browser.execute("return document.documentElement.outerHTML", serde_json::json!([])).await;
    let source = source.as_str().unwrap();
    assert!(source.contains("You are signed in, but you hold no role here"), "{source}");
    assert!(source.contains("Vous êtes connecté, mais vous n'avez aucun rôle ici"), "{source}");
    assert!(!browser.cookies().await.iter().any(|c| c["name"] == "passerelle_console"));
    let (status, _, _) = call_from_page(&browser, "GET", "/admin/v1/whoami", "en").await;
    assert_eq!(status, 401);

    // A callback replayed in the browser that finished it (the console page's referrer is the
    // callback's URL): its sign-in is over.
    let vera = sign_in(&console, "vera").await;
    let callback = vera.execute("return document.referrer", serde_json::json!([])).await;
    let callback = callback.as_str().unwrap().to_owned();
    assert!(callback.starts_with(&format!("{console}/console/oidc/callback?")), "{callback}");
    vera.goto(&callback).await;
    let reason = vera.execute("return document.getElementById('refused').dataset.reason", serde_json::json!([])).await;
    assert_eq!(reason, "not-this-sign-in");
    // The same callback from elsewhere (no binding cookie): refused too.
    let path = callback.trim_start_matches(&console);
    let replayed = gw.admin.send(Method::GET, path, &[], "").await;
    assert_eq!(replayed.status, StatusCode::BAD_REQUEST);
    assert!(replayed.text().contains("data-reason=\"not-this-sign-in\""));

    // A sign-in started here whose callback comes back with another state: refused, and the
    // sign-in is spent (the right state afterwards is refused as well).
    let started = gw.admin.send(Method::GET, "/console/oidc/login", &[], "").await;
    assert_eq!(started.status, StatusCode::SEE_OTHER);
    let location = started.header("location").unwrap().to_owned();
    assert!(location.starts_with(&format!("{}/auth?", _provider.issuer)), "{location}");
    for parameter in ["code_challenge_method=S256", "code_challenge=", "nonce=", "state=", "scope=openid"] {
        assert!(location.contains(parameter), "{parameter} in {location}");
    }
    let set_cookie = started.header("set-cookie").unwrap().to_owned();
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let binding = set_cookie.split(';').next().unwrap().to_owned();
    let state = location.split(['?', '&']).find_map(|p| p.strip_prefix("state=")).unwrap().to_owned();
    let tampered = gw
        .admin
        .send(Method::GET, "/console/oidc/callback?code=forged&state=not-the-state", &[("cookie", &binding)], "")
        .await;
    assert_eq!(tampered.status, StatusCode::BAD_REQUEST);
    assert!(tampered.text().contains("data-reason=\"not-this-sign-in\""));
    let after = gw
        .admin
        .send(Method::GET, &format!("/console/oidc/callback?code=forged&state={state}"), &[("cookie", &binding)], "")
        .await;
    assert_eq!(after.status, StatusCode::BAD_REQUEST);
    // A forged code with the right state and binding: the issuer refuses it, and so does the
    // gateway.
    let started = gw.admin.send(Method::GET, "/console/oidc/login", &[("accept-language", "fr")], "").await;
    let binding = started.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let location = started.header("location").unwrap();
    let state = location.split(['?', '&']).find_map(|p| p.strip_prefix("state=")).unwrap();
    let forged = gw
        .admin
        .send(
            Method::GET,
            &format!("/console/oidc/callback?code=forged&state={state}"),
            &[("cookie", &binding), ("accept-language", "fr")],
            "",
        )
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    let text = forged.text();
    assert!(text.contains("<html lang=\"fr\">") && text.contains("data-reason=\"unverified\""), "{text}");
}

#[test]
fn check_refuses_bad_oidc_entries() {
    let groups = r#"
[[admin.oidc.group]]
group = "ops"
role = "root"

[[admin.oidc.group]]
group = "city"
role = "operator"
partners = ["atlantis"]
"#;
    let oidc = "[admin.oidc]\nissuer = \"http://idp.example.com/realms/x\"\nclient_id = \"passerelle\"\n\
                client_secret_env = \"PASSERELLE_TEST_OIDC_SECRET_NEVER_SET\"\n\
                redirect_url = \"https://admin.example.com/callback\"\n";
    let setup = Setup::new().admin(&format!("{oidc}{groups}"));
    setup.write(&Default::default());
    let problems: Vec<String> = passerelle::config::load(&setup.main_config())
        .expect_err("[admin.oidc] has problems")
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect();
    let all = problems.join("\n");
    for expected in [
        "admin.oidc.issuer `http://idp.example.com/realms/x` is plain http on a host other than loopback",
        "admin.oidc.redirect_url `https://admin.example.com/callback` is not an http(s) URL ending in /console/oidc/callback",
        "admin.oidc.client_secret_env names `PASSERELLE_TEST_OIDC_SECRET_NEVER_SET`, which is not set or empty",
        "admin.oidc group `ops`: `root` is not a role (viewer, operator, auditor, admin)",
        "admin.oidc group `city`: grant of `operator` names partner `atlantis`, which the partners file does not define",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    // The command line says the same.
    let (code, output) = cli(&["check", "--config", setup.main_config().to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(output.contains("is not set or empty"), "{output}");
}
