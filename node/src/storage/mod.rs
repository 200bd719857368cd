//! Durable storage: the block log (blocks, append-only, io_uring) and the state store (RocksDB,
//! versioned by height, authenticated by a Jellyfish Merkle tree).

pub mod blocklog;
pub mod changes;
pub mod recent;
pub mod state;

pub use blocklog::{BlockLog, LogError, LogOptions, LogReader, RecordPos, Verify};
pub use changes::{Change, ChangeSet};
pub use state::{
    account_key, BlockMeta, Head, PreparedState, StateError, StateOptions, StateReader, StateStore,
    TxLocation,
};
