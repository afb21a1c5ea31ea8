//! Micro-benchmarks of the hot paths: validation, projection, translation to a pinned version, audit hashing and signing, sealing
//! bodies at rest, signing and verifying a delivery, a request's log line, and the store's group commit (SQLite with
//! bodies sealed and in plaintext, PostgreSQL sealed). `cargo bench --bench hot_paths`; compare
//! ratios within one run.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use passerelle::audit::receipt::{self, Inclusion, StoredReceipt, TreeHead};
use passerelle::audit::{AuditEvent, AuditStamp, GENESIS};
use passerelle::config::Config;
use passerelle::seal::{Binding, DataKey, KeyEncryptionKey};
use passerelle::store::keys::Keks;
use passerelle::store::postgres::{PostgresOptions, PostgresStore};
use passerelle::store::sqlite::{SqliteOptions, SqliteStore};
use passerelle::store::{DisclosureTerms, NewDelivery, NewRecord, Store};

/// The shipped agreements and schemas, on a plaintext listener (no certificates needed).
fn config(dir: &Path) -> Config {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let main = format!(
        "schemas_dir = \"{}\"\npartners_file = \"{}\"\nagreements_dir = \"{}\"\ndata_dir = \"{}\"\n[tls]\ninsecure_plaintext = true\n",
        root.join("schemas").display(),
        root.join("config/partners.toml").display(),
        root.join("config/agreements").display(),
        dir.join("data").display()
    );
    std::fs::write(dir.join("passerelle.toml"), main).unwrap();
    passerelle::config::load(&dir.join("passerelle.toml")).unwrap_or_else(|e| panic!("{:?}", e.problems))
}

fn record(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/records").join(name)).unwrap()
}

fn validation(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let schema =
        config.built.catalog.record_type("birth-registration").unwrap().version("1.1".parse().unwrap()).unwrap();
    let mut group = c.benchmark_group("validation");
    let valid = record("birth-registration-1.1.json");
    // The same record with one number the parser makes a double of, so its text is read again
    // for numbers a double does not hold exactly.
    let with_double = String::from_utf8(valid.clone())
        .unwrap()
        .replacen("\"multiple_birth_order\": 2,", "\"multiple_birth_order\": 2.0,", 1)
        .into_bytes();
    assert_ne!(valid, with_double);
    for (name, body) in [
        ("valid", valid),
        ("valid_with_double", with_double),
        ("invalid", record("birth-registration-1.1-invalid.json")),
    ] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        // What the partner API does: numbers read as written, violations capped.
        group.bench_function(BenchmarkId::new("check_body", name), |b| {
            b.iter(|| schema.check_body(&body, 64).unwrap().violations.total())
        });
        // The value as parsed, every violation built: the partner API's path before issue 18.
        group.bench_function(BenchmarkId::new("parse_strict_and_validate", name), |b| {
            b.iter(|| schema.validate(&passerelle::json::parse_strict(&body, 64).unwrap()).len())
        });
    }
    // A 256 KB address roll, as `benches/load.py`'s large-record scenario posts: parsing it and
    // letting the tree go is most of that scenario's cost.
    let entry = r#"{"address":{"street":"1200 Rue Saint-Laurent","unit":"12","municipality":"Ottawa","province":"ON","postal_code":"K1L 6X2","country":"CA"},"occupants":3}"#;
    let entries = vec![entry; 256 * 1024 / (entry.len() + 2)].join(", ");
    let roll =
        format!(r#"{{"roll_id":"ROLL-2026-000001","municipality":"Ottawa","entries":[{entries}]}}"#).into_bytes();
    group.throughput(Throughput::Bytes(roll.len() as u64));
    group.bench_function("parse_strict/roll_256k", |b| {
        b.iter(|| passerelle::json::parse_strict(&roll, 64).unwrap().as_object().map(|o| o.len()))
    });
    group.finish();
}

fn projection(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let value = passerelle::json::parse_strict(&record("birth-registration-1.1.json"), 64).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let route =
        passerelle::policy::route(&config.built.agreements, "on-vital-stats", "birth-registration", now).unwrap();
    let recipients: Vec<_> = route.agreements.iter().flat_map(|a| a.recipients.iter().cloned()).collect();
    assert_eq!(recipients.len(), 4);
    c.bench_function("projection/four_recipients_canonical", |b| {
        b.iter(|| recipients.iter().map(|r| r.fields.project_canonical(&value).len()).sum::<usize>())
    });
    // The way the spine did it: build the projected document, then serialise it.
    c.bench_function("projection/four_recipients_via_value", |b| {
        b.iter(|| {
            recipients
                .iter()
                .map(|r| passerelle::json::to_canonical_vec(&r.fields.project(&value)).len())
                .sum::<usize>()
        })
    });
}

/// A birth registration sent in 1.1 given to a recipient pinned to 1.0: the copy the
/// translation makes of every record before projecting it.
fn translation(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let value = passerelle::json::parse_strict(&record("birth-registration-1.1.json"), 64).unwrap();
    let catalog = &config.built.catalog;
    let translation =
        catalog.translation("birth-registration", "1.1".parse().unwrap(), "1.0".parse().unwrap()).unwrap();
    c.bench_function("translation/birth_1.1_to_1.0", |b| b.iter(|| translation.apply(&value).unwrap()));
}

fn audit(c: &mut Criterion) {
    let mut event = AuditEvent::new(1_795_000_000_000, "record.accepted", "on-vital-stats", "accepted");
    event.record_id = Some("01a22845-b4d8-76e5-8af9-10c28aa06121".into());
    event.body_digest = Some([7; 32]);
    event.reason = Some("birth-registration/1.1".into());
    c.bench_function("audit/entry_hash", |b| b.iter(|| passerelle::audit::entry_hash(&GENESIS, 42, &event)));
    let dir = tempfile::tempdir().unwrap();
    let key = passerelle::audit::keys::SigningKey::load_or_create(&dir.path().join("key")).unwrap();
    let notary = passerelle::audit::notary::Notary::new(key, Default::default());
    let stamp = AuditStamp { seq: 42, hash: [9; 32] };
    // What intake signs: the stored receipt of a birth registration with four deliveries.
    let deliveries = ["esdc-sin-registry", "cra-child-benefit", "on-health-plan", "ottawa-city"].map(|recipient| {
        passerelle::audit::receipt::ReceiptDelivery { recipient, agreement: "birth-bundle", status: "queued" }
    });
    let stored = passerelle::audit::receipt::Receipt {
        record_id: "01a22845-b4d8-76e5-8af9-10c28aa06121",
        record_type: "birth-registration",
        schema_version: "1.1".into(),
        sender: "on-vital-stats",
        received_at: "2026-11-18T11:06:40.001Z".into(),
        deliveries: deliveries.to_vec(),
    }
    .to_bytes();
    c.bench_function("audit/receipt_signature", |b| {
        b.iter(|| notary.sign_receipt(&stored, &[7; 32], stamp, 1_795_000_000_000))
    });
    // Per record: format 2 signs each receipt; format 3 makes each receipt's leaf and its share
    // of the tree and of the one signature in the writer, then writes its proof in the request.
    let mut group = c.benchmark_group("audit/receipt_per_record");
    group.throughput(Throughput::Elements(1));
    group.bench_function("format2_signature", |b| {
        b.iter(|| notary.sign_receipt(&stored, &[7; 32], stamp, 1_795_000_000_000))
    });
    for n in [1u64, 64, 512] {
        let receipts: Vec<StoredReceipt> = (0..n as i64)
            .map(|i| StoredReceipt {
                receipt: Bytes::from(stored.clone()),
                stamp: AuditStamp { seq: 42 + i, hash: [9; 32] },
                body_digest: Some([7; 32]),
                tree: None,
            })
            .collect();
        group.throughput(Throughput::Elements(n));
        group.bench_function(BenchmarkId::new("format3_tree", n), |b| {
            b.iter(|| {
                let signer = receipt::Signer { signed_at: 1_795_000_000_000, key_id: notary.key.id() };
                let tree = receipt::tree_of_issued(&receipts, signer).unwrap();
                let head = Arc::new(TreeHead::sign(42, &tree, signer.signed_at, &notary.key));
                let sealed: Vec<Vec<u8>> = (receipts.iter().enumerate())
                    .map(|(i, r)| {
                        let inclusion =
                            Inclusion { head: head.clone(), index: i as u64, path: tree.proof(i).unwrap_or_default() };
                        receipt::seal_issued_in_tree(&r.receipt, r.stamp, &[7; 32], &inclusion).unwrap()
                    })
                    .collect();
                sealed
            })
        });
    }
    group.finish();
}

/// What each delivery costs to sign (once per attempt) and a recipient to verify: the city's
/// projection of a birth registration (its smallest body), and a whole 1.3 KB registration.
fn delivery_signature(c: &mut Criterion) {
    use passerelle::delivery::signature::{self, DeliveryFacts};
    let dir = tempfile::tempdir().unwrap();
    let key = passerelle::audit::keys::SigningKey::load_or_create(&dir.path().join("key")).unwrap();
    let mut keys = passerelle::audit::keys::TrustedKeys::default();
    let (id, public) = key.trusted();
    keys.add(id, public);
    let facts = DeliveryFacts {
        record_id: "01a22845-b4d8-76e5-8af9-10c28aa06121".into(),
        agreement: "birth-ottawa".into(),
        sender: "on-vital-stats".into(),
        recipient: "ottawa-city".into(),
        schema: "birth-registration/1.1".into(),
        received_at: "2026-11-18T11:06:40.001Z".into(),
        audit_seq: 1042,
    };
    let city = br#"{"child":{"date_of_birth":"2026-03-28","place_of_birth":{"municipality":"Ottawa"}},"parents":[{"address":{"postal_code":"K1A 0B1"}},{"address":{"postal_code":"K1A 0B1"}}]}"#.to_vec();
    let mut group = c.benchmark_group("delivery/signature");
    for (name, body) in [("city_projection", city), ("whole_registration", record("birth-registration-1.1.json"))] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(BenchmarkId::new("sign", name), |b| b.iter(|| signature::sign(&key, &facts, &body)));
        let signed = signature::sign(&key, &facts, &body);
        group.bench_function(BenchmarkId::new("verify", name), |b| {
            b.iter(|| signature::verify(&signed, &body, &keys).unwrap())
        });
    }
    group.finish();
}

/// One Ed25519 signature of a delivery's signing input (a 600-byte message) by the library
/// that signs (ed25519-dalek, `ours`) and by ring, which signed before: the ratio of the two,
/// measured in one run, is why the signing library changed. The signatures are the same bytes.
fn ed25519_sign(c: &mut Criterion) {
    use ring::signature::Ed25519KeyPair;
    let document = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let ring_pair = Ed25519KeyPair::from_pkcs8(document.as_ref()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, passerelle::digest::to_hex(document.as_ref())).unwrap();
    let ours = passerelle::audit::keys::SigningKey::load_or_create(&path).unwrap();
    let message = vec![b'x'; 600];
    assert_eq!(ours.sign(&message), ring_pair.sign(&message).as_ref());
    let mut group = c.benchmark_group("ed25519/sign");
    group.bench_function("ours", |b| b.iter(|| ours.sign(&message)));
    group.bench_function("ring", |b| b.iter(|| ring_pair.sign(&message)));
    group.finish();
}

fn new_record(n: u64, body: &Bytes) -> NewRecord {
    NewRecord {
        record_id: uuid::Uuid::now_v7().to_string(),
        sender: "on-vital-stats".into(),
        record_type: "birth-registration".into(),
        schema_version: "1.1".into(),
        received_at: 1_795_000_000_000 + n as i64,
        body: body.clone(),
        body_sha256: [1; 32],
        audit_digest: [2; 32],
        idempotency_key: None,
        traceparent: None,
        tracestate: None,
        deliveries: ["esdc-sin-registry", "cra-child-benefit", "on-health-plan", "ottawa-city"]
            .iter()
            .map(|r| NewDelivery {
                recipient: r.to_string(),
                agreement: "birth".into(),
                ordered: false,
                body: body.slice(..body.len() / 2),
                body_digest: [3; 32],
                key_id: None,
                schema_version: None,
                // What intake records of each delivery for the access record.
                terms: Some(Arc::new(DisclosureTerms::new(
                    "Issue a Social Insurance Number at birth and start Canada Child Benefit payments.".into(),
                    ["/registration_number", "/child/given_names", "/child/surname", "/parents/*/address"]
                        .map(String::from)
                        .to_vec(),
                ))),
                taker: None,
            })
            .collect(),
        receipt: Bytes::from_static(b"{\"record_id\":\"x\"}"),
        key_id: None,
        // A registration number and two parents' SINs.
        subjects: vec![[4; 32], [5; 32], [6; 32]],
    }
}

/// The key the benchmark's stores sign their receipt trees with, as a gateway's do.
fn receipt_key() -> Arc<passerelle::audit::keys::SigningKey> {
    Arc::new(passerelle::audit::keys::SigningKey::generate().unwrap())
}

/// The key-encryption key the benchmark's stores seal under.
fn keks() -> Arc<Keks> {
    Arc::new(Keks { current: KeyEncryptionKey::from_bytes(&[7; 32]).unwrap(), previous: vec![] })
}

/// Sealing a record's bodies at rest (the record as posted and four projections, as intake
/// does), and opening one projection (as a claim does).
fn sealing(c: &mut Criterion) {
    let body = record("birth-registration-1.1.json");
    let half = &body[..body.len() / 2];
    let key = DataKey::generate("birth/2026-12-03").unwrap();
    let record_id = "019ad0a5-5c00-7c3a-9d2e-6b1f0a4c8e21";
    let recipients = ["esdc-sin-registry", "cra-child-benefit", "on-health-plan", "ottawa-city"];
    c.bench_function("seal/record_and_four_projections", |b| {
        b.iter(|| {
            let mut sealed = vec![key.seal(&body, &Binding { record_id, recipient: None }).unwrap()];
            for r in recipients {
                sealed.push(key.seal(half, &Binding { record_id, recipient: Some(r) }).unwrap());
            }
            sealed
        })
    });
    let one = Binding { record_id, recipient: Some("ottawa-city") };
    let sealed = key.seal(half, &one).unwrap();
    c.bench_function("seal/open_one_projection", |b| b.iter(|| key.open(&sealed, &one).unwrap()));
}

/// A PostgreSQL store in a schema of its own on the test server (see the README's Tests
/// section), so both engines are measured in one run; the schema is dropped afterwards.
async fn postgres_store() -> (Arc<dyn Store>, String) {
    let server = std::env::var("PASSERELLE_TEST_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned());
    let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("the store benchmark needs PostgreSQL ({server}): {e}"));
    tokio::spawn(connection);
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    let mut config: tokio_postgres::Config = server.parse().unwrap();
    config.options(format!("-c search_path={schema}"));
    let options = PostgresOptions {
        config,
        pool_size: 8,
        queue: 4096,
        max_batch: 512,
        commit_timeout: Duration::from_secs(30),
        linger: Duration::ZERO,
        tls: None,
        encryption: Some(keks()),
        receipts: Some(receipt_key()),
    };
    (Arc::new(PostgresStore::open(options, passerelle::telemetry::Metrics::new()).await.unwrap()), schema)
}

/// Group commit of 1, 64 and 512 concurrent records (four deliveries each), SQLite and
/// PostgreSQL in the same run: compare the ratio, not the absolute times.
fn group_commit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = |name: &str, encryption: Option<Arc<Keks>>| -> Arc<dyn Store> {
        let options = SqliteOptions {
            path: dir.path().join(name),
            queue: 4096,
            max_batch: 512,
            commit_timeout: Duration::from_secs(30),
            linger: Duration::ZERO,
            encryption,
            receipts: Some(receipt_key()),
        };
        runtime.block_on(async { Arc::new(SqliteStore::open(options, passerelle::telemetry::Metrics::new()).unwrap()) })
    };
    let (sealed, plain) = (sqlite("sealed.sqlite", Some(keks())), sqlite("plain.sqlite", None));
    let (postgres, schema) = runtime.block_on(postgres_store());
    let body = Bytes::from(record("birth-registration-1.1.json"));
    let mut group = c.benchmark_group("store_group_commit");
    group.sample_size(20);
    for (engine, store) in [("sqlite", &sealed), ("sqlite-plaintext", &plain), ("postgres", &postgres)] {
        for n in [1u64, 64, 512] {
            group.throughput(Throughput::Elements(n));
            group.bench_function(BenchmarkId::new(engine, n), |b| {
                b.iter_batched(
                    || (0..n).map(|i| new_record(i, &body)).collect::<Vec<_>>(),
                    |records| {
                        runtime.block_on(async {
                            let commits: Vec<_> = records
                                .into_iter()
                                .map(|r| {
                                    let store = store.clone();
                                    tokio::spawn(async move { store.commit_record(r).await.unwrap() })
                                })
                                .collect();
                            for c in commits {
                                c.await.unwrap();
                            }
                        })
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    group.finish();
    runtime.block_on(async {
        let server = std::env::var("PASSERELLE_TEST_POSTGRES")
            .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned());
        let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
    });
}

/// A pipe whose other end a thread reads and discards, like standard error read by journald or a
/// container runtime: each `write` to it is a real system call.
fn drained_pipe() -> std::io::PipeWriter {
    use std::io::Read;
    let (mut reader, writer) = std::io::pipe().unwrap();
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 1 << 16];
        while reader.read(&mut buffer).is_ok_and(|n| n > 0) {}
    });
    writer
}

/// The cost, to the request's task, of its one log line (`Request served.` as JSON, and its
/// metrics): tracing-subscriber's JSON format written in place, one `write` per line as before,
/// or queued for the writer thread that batches them ([`passerelle::telemetry::logging`]); and
/// what the gateway installs, the same line from [`passerelle::telemetry::json_lines`], queued.
fn log_line(c: &mut Criterion) {
    use passerelle::telemetry::events::{RecordCall, RequestServed};
    use passerelle::telemetry::{Metrics, RecordOutcome};
    use tracing_subscriber::layer::SubscriberExt;

    let metrics = Metrics::new();
    let peer = "127.0.0.1:50000".parse().unwrap();
    let line = || RequestServed {
        listener: "partner",
        method: "POST",
        route: "/v1/records/{record_type}",
        metric_route: Some("submit"),
        status: 202,
        latency: Duration::from_micros(812),
        peer,
        partner: Some("on-vital-stats"),
        request_id: "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        record: Some(RecordCall {
            sender: "on-vital-stats",
            record_type: "birth-registration",
            outcome: RecordOutcome::Accepted,
            record_id: Some("0195f3a2-7c1e-7d2b-9a41-3c5e8f0b6d12"),
            violations: &[],
        }),
    };
    let json =
        || tracing_subscriber::fmt::layer().json().flatten_event(true).with_current_span(false).with_span_list(false);
    let mut group = c.benchmark_group("log_line");
    group.throughput(Throughput::Elements(1));

    let direct = tracing_subscriber::registry().with(json().with_writer(std::sync::Mutex::new(drained_pipe())));
    tracing::subscriber::with_default(direct, || {
        group.bench_function("written_in_place", |b| b.iter(|| line().emit(&metrics)));
    });
    let (queued, guard) = passerelle::telemetry::logging::line_writer(drained_pipe());
    tracing::subscriber::with_default(tracing_subscriber::registry().with(json().with_writer(queued)), || {
        group.bench_function("queued_and_batched", |b| b.iter(|| line().emit(&metrics)));
    });
    drop(guard);
    // What the gateway installs: the same queue, the line written by our own JSON format.
    let (queued, guard) = passerelle::telemetry::logging::line_writer(drained_pipe());
    let ours = tracing_subscriber::fmt::layer()
        .event_format(passerelle::telemetry::json_lines::JsonLines)
        .with_writer(queued)
        .with_ansi(false);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(ours), || {
        group.bench_function("queued_json_lines", |b| b.iter(|| line().emit(&metrics)));
    });
    drop(guard);
    group.finish();
}

criterion_group!(
    benches,
    validation,
    projection,
    translation,
    audit,
    sealing,
    delivery_signature,
    ed25519_sign,
    log_line,
    group_commit
);
criterion_main!(benches);
