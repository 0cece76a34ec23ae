//! Storage errors.

/// Why a storage operation failed. Every variant stops the state machine: the caller never
/// retries a failed write or works on from a record it could not read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// RocksDB reported an error (I/O, fsync, a failed open).
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// Stored bytes do not decode: the data directory is corrupt.
    #[error("corrupt record in table {table}: {reason}")]
    Corruption { table: &'static str, reason: String },
}

impl From<Error> for endure_engine::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::Corruption { .. } => endure_engine::Error::Corruption(error.to_string()),
            Error::Rocks(_) => endure_engine::Error::Storage(error.to_string()),
        }
    }
}
