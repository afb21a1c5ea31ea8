//! # Passerelle
//!
//! A gateway through which Canadian governments (federal, provincial, territorial, municipal)
//! share records under data-sharing agreements, so that an event reported once reaches every
//! program that needs it.
//!
//! ## Bird's-eye view
//!
//! A partner system posts a record. The gateway authenticates the partner, finds the agreements
//! in force that let it send that record type, validates the record against the agreed JSON
//! Schema, cuts one projection per recipient down to the fields its agreement allows, and commits
//! the record, its deliveries (with their projected bodies) and an audit entry in one
//! transaction before it answers `202` with a receipt. Delivery workers, one per recipient, then
//! lease due deliveries from the store and POST each stored body (or publish it to the
//! recipient's NATS JetStream stream), retrying with backoff until the recipient has it or the
//! delivery is dead and an operator is told. A pull recipient (one that accepts no connection)
//! leases its due deliveries itself over the partner API instead (`GET /v1/inbox`) and settles
//! them (`ack`, `nack`): the same leases, backoff, dead letters and audit entries, in
//! [`delivery::mailbox`] and [`http::inbox`].
//!
//! ```text
//!  partner ──HTTP──▶ server ─▶ http::partner ─▶ auth ─▶ policy::route ─▶ schema ─▶ policy::project
//!                                                                                      │
//!                                        store (one transaction: record+deliveries+audit) ◀─┘
//!                                                    │ lease: claimed, or taken as it commits
//!                                         delivery::Worker (per recipient) ──HTTP──▶ recipient
//! ```
//!
//! # Layout
//!
//! From the bottom of the module graph up; each module is described in its own `//!` docs.
//!
//! - Leaves: [`ids`] (partner and agreement ids), [`digest`] (SHA-256 and hex), [`problem`] (a
//!   problem found in a file), [`mod@pointer`] (JSON Pointers with `*`), [`random`], [`clock`] and
//!   [`json`] (strict parsing, numbers as written, the canonical serialisation).
//! - [`secrets`]: owner-only files. [`seal`]: envelope encryption of bodies (AES-256-GCM data
//!   keys wrapped under a key-encryption key). [`schema`]: the schema catalog, compiled once, validation
//!   into violations, declared translations between versions ([`schema::translation`]) and views,
//!   the schema of exactly what a recipient receives ([`schema::view`]). [`tls`]: rustls (ring only), certificate identity. [`telemetry`]: the
//!   Prometheus registry, typed events that log and count together, their JSON lines
//!   ([`telemetry::json_lines`]) queued off the request path ([`telemetry::logging`]), W3C trace
//!   context ([`telemetry::trace`]) and its export over OTLP ([`telemetry::otlp`]). [`rate_limit`]:
//!   per-partner token buckets. [`operators`]: named operators, their roles and scopes, and the
//!   directory their credentials resolve through.
//! - [`auth`]: credentials to an [`auth::AuthenticatedPartner`] (a client certificate, one a
//!   trusted proxy forwarded, or an API key). [`policy`]: agreements, who may send what to
//!   whom ([`policy::route`]) and the field projection per recipient, with its view. [`audit`]: the hash chain
//!   (its canonical form is documented there), signing checkpoints and receipts
//!   ([`audit::receipt`]), verification, export, rejection tallies. [`pki`]: the development PKI.
//!   [`oidc`]: OpenID Connect sign-in for people, the gateway as a relying party (authorization
//!   code with PKCE, the ID token verified against the issuer's JWKS).
//! - [`store`]: the [`store::Store`] trait, one group-commit core and two thin engines over it,
//!   SQLite (embedded, one writer thread) and PostgreSQL (several instances, `FOR UPDATE SKIP
//!   LOCKED`), held to one conformance suite; [`store::keys`] seals every body with [`seal`]
//!   before it is written and opens it when it is handed out.
//! - [`delivery`]: per-recipient workers, backoff, circuit breakers, and the hand-over: the
//!   outbound HTTP client ([`delivery::client`]; several records per POST for a recipient that
//!   asks, [`delivery::batch`]), a NATS JetStream publisher ([`delivery::nats`]), or a pull
//!   recipient's mailbox ([`delivery::mailbox`]); every delivery
//!   signed with the audit key, a detached JWS over its body and facts, and the public keys
//!   published as a JWKS ([`delivery::signature`]).
//!   [`upkeep`]: checkpoints, aggregated rejections and the retention purge, as tasks.
//!   [`notices`]: completion notices to senders that asked, each a signed notice
//!   ([`audit::notice`]) committed as a record of the gateway's own with one durable delivery.
//! - [`server`]: listeners, TLS handshakes, connection caps and timeouts, graceful drain; what
//!   becomes of a request body answered before it was read ([`server::body`]), the lingering
//!   close of a connection ([`server::io`]), and HTTP/2 answers written from their connection's
//!   task so that an answer's head and body leave together ([`server::streams`]).
//! - [`config`]: reads the TOML files and builds the parts above from them, reporting every
//!   problem with its file (`passerelle check` prints them); a [`config::Config`] is one
//!   immutable snapshot a reload swaps whole. Each file is read once per load
//!   ([`mod@config::load`]), and the fingerprint is computed from the bytes read; the partners
//!   file, the agreements and the TLS material each have their own module.
//! - [`http`]: the partner and admin APIs over a route table ([`http::routes`]), their shared
//!   state ([`http::state`]), [`http::error`] the one place errors become answers, and
//!   [`http::openapi`] their contract (OpenAPI 3.1). [`http::partner`] only routes and
//!   describes each call; intake (checks 5 to 14), request/response, the caller's records and
//!   discovery each have their own module, and return their answer with a typed outcome. On the
//!   admin side, [`http::access`] answers the access record of a person: every disclosure about
//!   them, found by the digest of one of their identifiers; [`http::investigate`] finds a record
//!   and follows it (its attempt timeline, the entries naming it, its bodies, read only by roles
//!   that may and each read audited as `body.read`), and counts over a range from the store.
//! - [`gateway`]: assembles the parts into a running gateway. [`cli`]: one module per
//!   subcommand.
//!
//! # Dependency rule
//!
//! A module may use the modules of lower layers only, never one of its own layer or above, so
//! the module graph points one way: the leaves know nothing of the gateway, the parts know
//! nothing of the configuration that builds them, and only `http`, `gateway` and `cli` see the
//! whole. `tests/it/architecture.rs` reads this table and fails on any `crate::` path in `src/`
//! (outside unit tests) that breaks it.
//!
//! | layer | modules |
//! |---|---|
//! | 0 | `clock`, `digest`, `ids`, `json`, `pointer`, `problem`, `random` |
//! | 1 | `operators`, `rate_limit`, `schema`, `seal`, `secrets`, `telemetry` |
//! | 2 | `audit`, `oidc`, `pki`, `policy`, `tls` |
//! | 3 | `auth`, `store` |
//! | 4 | `delivery`, `notices`, `upkeep` |
//! | 5 | `server` |
//! | 6 | `config` |
//! | 7 | `http` |
//! | 8 | `gateway` |
//! | 9 | `cli` |
//!
//! Inside a module, the modules side by side use each other in one direction only (in `http`,
//! `partner` routes to `intake`, `requests`, `records`, `discovery` and `inbox`, which share
//! `outcome`, and `inbox` reads bodies and queries as `intake` and `records` do, as `access`,
//! which `admin` routes to, reads its query, and `investigate` too, which also reads the circuit
//! breakers from `console`; in `config`, `load` drives `partners`, `agreements` and `tls`, which share
//! `sources`). The same test fails on any cycle among siblings.
//!
//! # Invariants
//!
//! - **Nothing is acknowledged before it is committed.** The `202` is written only after the
//!   transaction holding the record, its deliveries and its audit entry has been fsynced.
//! - **A rejected record is never stored and never delivered.** Every check runs before the
//!   commit, in the order of the design's table, and the first failure answers.
//! - **A recipient never receives a field outside its list.** Projections are built from the
//!   selected paths, fixed at acceptance and stored; a later configuration never changes them.
//! - **No record value leaves the request.** Logs, metrics labels, error messages and the audit
//!   trail carry identifiers, pointers, keywords and digests, never values.
//! - **A person is found by a digest, never by a value.** The access record keeps, for each
//!   record, the HMAC-SHA-256 under the subject key of each value at its schema's subject
//!   identifier fields, taken before projection; no subject value is stored, logged or audited,
//!   and a lookup digests the identifier it is given as soon as it reads it
//!   ([`audit::subject`]).
//! - **No personal value is written to disk unencrypted.** Every body the store keeps (the
//!   record as posted, each projection) is sealed with AES-256-GCM under a data key per
//!   agreement and day, bound to its row, before it is queued for the writer; data keys are
//!   stored only wrapped under the key-encryption key, which never enters the store
//!   ([`store::keys`]). A purge destroys the data keys no body is left under, so what remains in
//!   free pages cannot be opened; audit entries stay and the chain still verifies. (With
//!   `store.encryption.enabled = false` an operator chooses plaintext, warned at every start.)
//! - **Schema validation does no I/O.** Schemas are compiled at load; `$ref` resolves only inside
//!   the schemas directory.
//! - **Every queue is bounded.** The commit channel, per-recipient concurrency, claim batches and
//!   request bodies all have limits with a documented behaviour when full.
//! - **A request runs under one configuration.** It loads the snapshot once when it starts; a
//!   reload swaps the snapshot only when the new configuration passes every check.
//! - **The audit chain is one chain.** Every append reads the head inside the transaction that
//!   extends it; an accepted record's entry is in the record's own transaction.
//! - **A delivery's signature covers what is delivered.** It is made over the stored body's
//!   exact bytes and the facts fixed at acceptance, never over anything of one attempt, so a
//!   retry or a replay carries the same signature and nothing is re-serialised after signing.
//! - **First attempts leave in acceptance order** (per recipient, on each instance). A worker
//!   takes a delivery as its record commits ([`delivery::handoff`]) only while, as far as its
//!   own claims and this process's commits show, nothing stored for it waits for a claim; what
//!   it takes while every slot is busy waits in line (at most its concurrency) in commit order,
//!   and starts before anything it claims; claims take the oldest due first.
//!   [`delivery::handoff`] lists the store faults it does not cover.
//! - **Identity comes only from credentials.** A client certificate verified against the
//!   partner CAs, a forwarded one only from a configured proxy, or an API key; never a header
//!   or a body field. An operator's: a token (by its digest), or an ID token whose signature,
//!   issuer, audience, expiry and nonce [`oidc`] verified, its groups resolved to grants at
//!   every call.

#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod digest;
pub mod gateway;
pub mod http;
pub mod ids;
pub mod json;
pub mod notices;
pub mod oidc;
pub mod operators;
pub mod pki;
pub mod pointer;
pub mod policy;
pub mod problem;
pub mod random;
pub mod rate_limit;
pub mod schema;
pub mod seal;
pub mod secrets;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod upkeep;
