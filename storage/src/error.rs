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
    /// A read of one instance's rows found more than [`crate::MAX_SCAN_ROWS`]: it fails
    /// rather than return part of them (a partial history or inbox would be taken for all).
    #[error(
        "instance {instance_id} has more than {max_rows} rows in table {table}: a read \
         returns at most MAX_SCAN_ROWS and fails rather than return part of them"
    )]
    TooManyRows {
        table: &'static str,
        instance_id: String,
        max_rows: usize,
    },
    /// A page larger than [`crate::MAX_SCAN_ROWS`] was asked for: the caller pages wrongly.
    #[error("a page of {requested} rows was asked for; a read returns at most {max_rows}")]
    PageTooLarge { requested: usize, max_rows: usize },
    /// The data directory was created with another shard count, which is fixed for the
    /// cluster's life (the shard of every instance depends on it).
    #[error(
        "the data directory {path} was created with {stored} shard(s) but the node was \
         started with --shards {asked}; the shard count is fixed when a cluster is created: \
         start it with --shards {stored}"
    )]
    ShardCountMismatch {
        path: String,
        stored: u32,
        asked: u32,
    },
}

impl From<Error> for endure_engine::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::Corruption { .. } => endure_engine::Error::Corruption(error.to_string()),
            Error::Rocks(_)
            | Error::TooManyRows { .. }
            | Error::PageTooLarge { .. }
            | Error::ShardCountMismatch { .. } => endure_engine::Error::Storage(error.to_string()),
        }
    }
}
