//! Errors of the engine: only storage reads can fail; refusals are [`crate::Outcome`]s.

/// A failure to read the tables. The state machine cannot go on without its state, so the
/// caller stops applying (a corrupt store must never be half-applied).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage layer could not read or decode a record.
    #[error("storage read failed: {0}")]
    Storage(String),
    /// A stored record breaks an invariant the engine relies on.
    #[error("corrupt state: {0}")]
    Corruption(String),
}
