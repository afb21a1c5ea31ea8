//! The gateway on PostgreSQL: the same push path, delivery and audit chain as on SQLite.

use std::time::Duration;

use http::{Method, StatusCode};

use crate::support::*;

/// The test server (see the README): `PASSERELLE_TEST_POSTGRES` or the local one.
fn server() -> String {
    std::env::var("PASSERELLE_TEST_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
}

/// A schema of its own, dropped at the end.
struct Schema(String);

impl Schema {
    async fn create() -> Schema {
        let name = format!("it_{}", uuid::Uuid::now_v7().simple());
        let (client, connection) = tokio_postgres::connect(&server(), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is required for these tests ({}): {e}", server()));
        tokio::spawn(connection);
        client.batch_execute(&format!("CREATE SCHEMA {name}")).await.unwrap();
        Schema(name)
    }

    fn url(&self) -> String {
        format!("{} options='-c search_path={}'", server(), self.0)
    }

    async fn drop_now(self) {
        let (client, connection) = tokio_postgres::connect(&server(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.0)).await.unwrap();
    }
}

#[tokio::test]
async fn the_birth_bundle_goes_through_a_postgresql_store() {
    let schema = Schema::create().await;
    let gw = Setup::new().store(&format!("url = \"{}\"", schema.url())).start().await;
    assert_eq!(gw.admin.send(Method::GET, "/readyz", &[], "").await.status, StatusCode::OK);
    let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let id = r.json()["record_id"].as_str().unwrap().to_owned();
    for recipient in ["esdc-sin-registry", "cra-child-benefit", "on-health-plan", "ottawa-city"] {
        let got = gw.recipient(recipient).wait_for(1, Duration::from_secs(10)).await;
        assert_eq!(got[0].header("passerelle-record-id"), Some(id.as_str()));
    }
    // Idempotency holds in the PostgreSQL transaction too.
    let auth = format!("Bearer {}", gw.key("on-vital-stats"));
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json"), ("idempotency-key", "pg-1")];
    let body = record("birth-registration-1.1.json").to_string();
    let first = gw.client.send(Method::POST, "/v1/records/birth-registration", &headers, body.clone()).await;
    let again = gw.client.send(Method::POST, "/v1/records/birth-registration", &headers, body).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(first.body, again.body);
    let setup = gw.stop().await;
    let (code, out) = cli(&["audit", "verify", "--config", setup.main_config().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("checkpoint signatures verified"), "{out}");
    schema.drop_now().await;
}
