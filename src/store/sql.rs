//! SQL both engines run, written once.
//!
//! The schema migrations: each engine creates its own tables (the column types differ), then
//! both create the same indexes and make the same later changes.

/// The indexes of schema version 1, run after the engine's `0001_tables.sql`.
pub(super) const INDEXES: &str = include_str!("migrations/shared/0001_indexes.sql");
/// Schema version 2.
pub(super) const TRACESTATE: &str = include_str!("migrations/shared/0002_tracestate.sql");
