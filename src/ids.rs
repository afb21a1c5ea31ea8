//! Identifiers of the domain: a leaf every other module may use.
//!
//! Ids come from configuration (a partner's `id`, an agreement's `id`) and are shared widely, so
//! they are reference-counted strings: cloning one is a counter increment.

use std::sync::Arc;

/// A partner's id, such as `on-vital-stats`.
pub type PartnerId = Arc<str>;

/// An agreement's id, such as `birth-federal-on`.
pub type AgreementId = Arc<str>;
