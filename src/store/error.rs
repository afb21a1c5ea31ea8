//! Why the store could not do what was asked: a kind that says what went wrong and whether a
//! retry may help, and the engine's own error as the cause (pingora's habit).
//!
//! Each engine turns its errors into a [`StoreError`] in one `From` impl; everything above the
//! store sees only kinds. Every kind answers `503 store-unavailable` at the HTTP edge: nothing is
//! acknowledged that is not stored, whatever the reason.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// What kind of failure a [`StoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The commit queue stayed full until the caller's deadline: nothing was attempted.
    Saturated,
    /// The write was queued but not committed before the caller's deadline; it may still be.
    TimedOut,
    /// The store cannot be reached: no connection, the writer has stopped, the file is gone, or
    /// the store is open read-only.
    Unavailable,
    /// The engine failed the operation (I/O, a full disk, an answer it did not expect); the
    /// transaction was rolled back.
    Failed,
    /// A constraint refused the write; the transaction was rolled back.
    Constraint,
    /// A stored value is not one the code can read (a hash of the wrong length, an unknown
    /// status): the data, not the request, is wrong.
    Corrupt,
    /// The store's schema is not one this program knows: newer, or not a Passerelle store.
    Incompatible,
}

impl StoreErrorKind {
    fn describe(self) -> &'static str {
        match self {
            StoreErrorKind::Saturated => "the store is saturated",
            StoreErrorKind::TimedOut => "the store did not answer in time",
            StoreErrorKind::Unavailable => "the store is unavailable",
            StoreErrorKind::Failed => "the store failed",
            StoreErrorKind::Constraint => "the store refused the write",
            StoreErrorKind::Corrupt => "the store holds a value it cannot read",
            StoreErrorKind::Incompatible => "the store's schema is not this program's",
        }
    }
}

/// Why the store could not do what was asked.
///
/// Cloneable, so one failed group commit can answer every caller in it with the same error (the
/// cause is shared, not copied).
#[derive(Debug, Clone)]
pub struct StoreError {
    kind: StoreErrorKind,
    /// What the store was doing, or what it found; empty when the cause says it all.
    context: Cow<'static, str>,
    /// The engine's error, if the failure came from the engine.
    cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    pub fn new(kind: StoreErrorKind, context: impl Into<Cow<'static, str>>) -> Self {
        StoreError { kind, context: context.into(), cause: None }
    }

    /// The same error, caused by `cause`.
    pub fn caused_by(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }

    /// The same error, saying what the store was doing.
    pub fn with_context(mut self, context: impl Into<Cow<'static, str>>) -> Self {
        self.context = context.into();
        self
    }

    /// A stored value the code cannot read.
    pub fn corrupt(context: impl Into<Cow<'static, str>>) -> Self {
        StoreError::new(StoreErrorKind::Corrupt, context)
    }

    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// Whether the same request may succeed later: a saturated, slow or unreachable store
    /// recovers; a constraint, corrupt data or a foreign schema do not go away by themselves.
    pub fn may_retry(&self) -> bool {
        matches!(self.kind, StoreErrorKind::Saturated | StoreErrorKind::TimedOut | StoreErrorKind::Unavailable)
    }
}

/// The kind, the context, then the causes ("error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer"), so an operator reads why, not only what.
impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut message = self.kind.describe().to_owned();
        if !self.context.is_empty() {
            message = format!("{message}: {}", self.context);
        }
        let mut cause = self.cause.as_deref().map(|c| c as &(dyn std::error::Error + 'static));
        while let Some(c) = cause {
            let text = c.to_string();
            if !message.contains(&text) {
                message = format!("{message}: {text}");
            }
            cause = c.source();
        }
        f.write_str(&message)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|c| c as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_keeps_its_kind_and_its_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left on device");
        let error = StoreError::new(StoreErrorKind::Failed, "").caused_by(io);
        assert_eq!(error.kind(), StoreErrorKind::Failed);
        assert!(!error.may_retry());
        assert_eq!(error.to_string(), "the store failed: no space left on device");
        let source = std::error::Error::source(&error).expect("the cause");
        assert_eq!(source.to_string(), "no space left on device");
        let queue = StoreError::new(StoreErrorKind::Saturated, "the commit queue is full");
        assert!(queue.may_retry());
        assert_eq!(queue.clone().to_string(), "the store is saturated: the commit queue is full");
    }
}
