//! Configuration: loaded in two phases, checked as a whole, then held as one immutable snapshot.
//!
//! Phase one ([`raw`]) parses the TOML files into structs that mirror them. Phase two ([`fn@load`], in [`mod@load`])
//! resolves paths against the file that names them, builds the parts (TLS in [`tls`], partners
//! and their credentials in [`partners`], agreements in [`agreements`], the schema catalog),
//! checks them against each other, and either returns a [`Config`] ([`model`]) or every
//! [`crate::problem::Problem`] found, each with its file. `passerelle check` prints those
//! problems and starts nothing; `serve` refuses to start on them; a reload swaps the whole `Config`.
//!
//! [`contacts()`] reads only the main file and the partners file, for what is generated from
//! the partners' contacts (`passerelle alertmanager-config`) where the rest is not at hand.
//!
//! Every file is read once per load, through one reader that keeps the bytes, and the
//! configuration's fingerprint is computed from those bytes.
//!
//! **Invariant:** a `Config` that exists has passed every check; nothing downstream re-validates.

pub mod agreements;
pub mod load;
pub mod model;
pub mod oidc;
pub mod operators;
pub mod partners;
pub mod raw;
pub mod sources;
pub mod tls;

pub use load::{LoadError, contacts, load};
pub use model::*;
pub use sources::normalize;
