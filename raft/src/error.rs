//! The one error type of `endure-raft`.

/// What can go wrong in the Raft storage layer.
///
/// Inside openraft's storage traits every variant becomes a `StorageError`, which stops the
/// node: a failed write or unreadable stored bytes are never retried (DESIGN §7.3).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller opened the DB without one of the column families this crate needs.
    #[error("column family `{0}` is missing: open the DB with it (see LOG_COLUMN_FAMILIES)")]
    MissingColumnFamily(String),

    /// RocksDB refused a read or a write (including a failed fsync).
    #[error("rocksdb: {0}")]
    Rocksdb(#[from] rocksdb::Error),

    /// A failpoint of the chaos suite failed the write (builds with the `chaos` feature).
    #[error("injected failure at {0}")]
    Injected(&'static str),

    /// Stored bytes that do not decode: the data on disk is not what we wrote.
    #[error("corrupt {what}: {reason}")]
    Corruption {
        /// Which record failed to decode (for the operator reading the log).
        what: &'static str,
        /// Why it failed.
        reason: String,
    },

    /// openraft asked to purge entries the state machine had not written after
    /// [`crate::log_store::PURGE_WAIT`]: purging them could lose them.
    #[error("refused to purge the log up to {purge}: the state machine has written only up to {written}")]
    PurgeAheadOfState {
        /// The index openraft asked to purge up to.
        purge: u64,
        /// The state machine's written index.
        written: u64,
    },

    /// Entries handed to one append are not consecutive: writing them would leave a hole.
    #[error("log entries not consecutive: {next} follows {after}")]
    LogGap {
        /// Index of the previous entry in the batch.
        after: u64,
        /// Index of the entry that should have been `after + 1`.
        next: u64,
    },

    /// A value that could not be encoded before writing it (nothing was written).
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// Which record failed to encode.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
}
