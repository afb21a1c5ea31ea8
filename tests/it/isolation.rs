//! Isolation between partners: whatever a partner puts in paths, headers or bodies, it sees and
//! sends only what its agreements allow.

use http::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_partner_sees_and_sends_only_what_its_agreements_allow() {
    let gw = Setup::new().start().await;
    let a = gw.key("on-vital-stats").to_owned();
    let b = gw.key("nt-vital-stats").to_owned();
    let b_record =
        gw.post_record("nt-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await.json();
    let b_id = b_record["record_id"].as_str().unwrap();

    // Paths: B's record is invisible to A, under any spelling.
    for path in [
        format!("/v1/records/{b_id}"),
        format!("/v1/records/{}", b_id.to_uppercase()),
        format!("/v1/records/{b_id}?sender=nt-vital-stats"),
    ] {
        let r = gw.client.get(&path, &a).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    // Query parameters cannot widen the list.
    let list = gw.client.get("/v1/records?sender=nt-vital-stats&partner=nt-vital-stats", &a).await.json();
    assert!(list["records"].as_array().unwrap().is_empty());
    // Headers naming B change nothing.
    let r = gw
        .client
        .post("/v1/records/birth-registration")
        .bearer(&a)
        .header("passerelle-sender", "nt-vital-stats")
        .header("x-forwarded-client-cert", "Cert=junk")
        .json(&record("birth-registration-1.1.json"))
        .send()
        .await;
    assert_eq!(r.json()["sender"], "on-vital-stats");
    // A body naming B is refused by the schema, not believed.
    let mut body = record("birth-registration-1.1.json");
    body["sender"] = json!("nt-vital-stats");
    let r = gw.client.post("/v1/records/birth-registration").bearer(&a).json(&body).send().await;
    assert_eq!(r.problem(422, "schema-violation")["violations"][0]["pointer"], "/sender");
    // A type with no agreement for A (B's address changes do not exist; sin-validation is
    // another partner's request agreement) is not found, whatever the version header says.
    for (path, version) in [
        ("/v1/records/address-change", "1.0"),
        ("/v1/requests/sin-validation", "1.0"),
        ("/v1/validate/address-change", "1.0"),
    ] {
        let r = gw.client.post(path).bearer(&a).header("schema-version", version).json(&json!({})).send().await;
        r.problem(404, "no-agreement");
    }
    // Schemas and agreements of others are not listed or served.
    let agreements = gw.client.get("/v1/agreements", &b).await.json();
    assert_eq!(agreements["agreements"].as_array().unwrap().len(), 1, "only birth-federal-nt");
    gw.client.get("/v1/schemas/address-change/1.0", &b).await.problem(404, "schema-not-found");
}
