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
//! lease due deliveries from the store and POST each stored body, retrying with backoff until the
//! recipient has it or the delivery is dead and an operator is told.
//!
//! ```text
//!  partner ──HTTP──▶ server ─▶ http::partner ─▶ auth ─▶ policy::route ─▶ schema ─▶ policy::project
//!                                                                                      │
//!                                        store (one transaction: record+deliveries+audit) ◀─┘
//!                                                    │ lease
//!                                         delivery::Worker (per recipient) ──HTTP──▶ recipient
//! ```
//!
//! # Layout
//!
//! - [`config`]: the TOML files in two phases (raw serde structs, then a checked [`config::Config`]
//!   snapshot); every problem is reported with its file. `passerelle check` prints them.
//! - [`schema`]: the schema catalog, compiled once at load; validation into violations.
//! - [`policy`]: agreements in force for a sender and type; field projection per recipient.
//! - [`auth`]: credentials to an [`auth::AuthenticatedPartner`]: a client certificate (or one a
//!   trusted proxy forwarded) or an API key, the same partner either way.
//! - [`tls`]: rustls (ring only) for the partner listener and recipients; certificate identity.
//! - [`pki`]: the development PKI (`passerelle dev-pki`, the demo, the tests).
//! - [`rate_limit`]: per-partner token buckets.
//! - [`json`]: strict parsing (duplicate keys, depth) and the canonical serialisation.
//! - [`http`]: the partner and admin APIs; [`http::error`] is the one place errors become answers;
//!   [`http::openapi`] is their contract (OpenAPI 3.1), served on both listeners.
//! - [`server`]: listeners, TLS handshakes, connection caps and timeouts, graceful drain; what
//!   becomes of a request body answered before it was read ([`server::body`]) and the lingering
//!   close of a connection ([`server::io`]).
//! - [`store`]: the [`store::Store`] trait and its two engines, SQLite (embedded, one writer
//!   thread with group commit) and PostgreSQL (several instances, `FOR UPDATE SKIP LOCKED`),
//!   held to one conformance suite.
//! - [`delivery`]: per-recipient workers, backoff, circuit breakers, the outbound client.
//! - [`audit`]: the hash chain (its canonical form is documented there), signatures of
//!   checkpoints and receipts ([`audit::notary`]), verification, export, aggregated rejections.
//! - [`retention`]: purging bodies after their retention; the trail stays.
//! - [`receipt`]: what a sender gets back, signed over every field it shows, and checking it
//!   (offline with the public key, or online against the store).
//! - [`telemetry`]: the Prometheus registry and typed events that log and count together; W3C
//!   trace context for every hop ([`telemetry::trace`]) and its export over OTLP
//!   ([`telemetry::otlp`]).
//! - [`gateway`]: assembles the parts into a running gateway.
//! - [`cli`]: one module per subcommand.
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
//! - **Schema validation does no I/O.** Schemas are compiled at load; `$ref` resolves only inside
//!   the schemas directory.
//! - **Every queue is bounded.** The commit channel, per-recipient concurrency, claim batches and
//!   request bodies all have limits with a documented behaviour when full.
//! - **A request runs under one configuration.** It loads the snapshot once when it starts; a
//!   reload swaps the snapshot only when the new configuration passes every check.
//! - **The audit chain is one chain.** Every append reads the head inside the transaction that
//!   extends it; an accepted record's entry is in the record's own transaction.
//! - **Identity comes only from credentials.** A client certificate verified against the
//!   partner CAs, a forwarded one only from a configured proxy, or an API key; never a header
//!   or a body field.

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
pub mod pki;
pub mod pointer;
pub mod policy;
pub mod problem;
pub mod random;
pub mod rate_limit;
pub mod schema;
pub mod secrets;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod upkeep;
