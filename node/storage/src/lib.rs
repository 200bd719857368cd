//! Durable storage: the block log (blocks, append-only, io_uring) and the state store (RocksDB,
//! versioned by height, authenticated by a Jellyfish Merkle tree). Design and recovery: `docs/storage.md`.
//!
//! # Bird's-eye view
//! - [`BlockLog`] appends encoded blocks to segment files and makes each durable before the commit
//!   goes on (io_uring `O_DIRECT` + `RWF_DSYNC`, or `pwrite` + `fdatasync` where io_uring is refused);
//!   [`LogReader`] reads them back by position. On open it verifies checksums and cuts a torn tail.
//! - [`StateStore`] keeps every key's value per height in RocksDB under a Jellyfish Merkle root, with
//!   the block index, the transaction index and receipts, and the head, written in one synced batch
//!   per block ([`StateStore::commit`]); [`RecentValues`](recent::RecentValues) caches the newest
//!   versions of recently written values in front of it.
//! - A block's writes arrive as one [`ChangeSet`] (sorted keys, `None` for a delete).
//! - [`snapshot`] writes the state at one height as self-proving chunks and builds a data directory
//!   from them (a node that starts there needs no replay from genesis).
//!
//! This crate knows the chain's types and encodings and nothing of execution, contracts, the pool or
//! the network: keys are bytes, except that it keeps those under [`aergo_primitives::types::SQL_PREFIX`]
//! in key order so contracts can scan them.

pub mod blocklog;
pub mod changes;
pub mod recent;
pub mod snapshot;
pub mod state;

#[cfg(test)]
mod branch_tests;
#[cfg(test)]
mod proof_tests;

pub use blocklog::{BlockLog, LogError, LogOptions, LogReader, RecordPos, Verify};
pub use changes::{Change, ChangeSet};
pub use state::{
    account_key, BlockMeta, Head, PreparedState, StateError, StateOptions, StateReader, StateStore,
    TxLocation,
};
