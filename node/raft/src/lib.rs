//! Raft for private repositories (`docs/repositories.md`, "Consensus per repository").
//!
//! ```text
//!  chain thread ──tick (100 ms)──► RaftNode ──ready()──► Output { messages → transport,
//!       │  propose(block bytes)      │                          committed → apply (execute, commit,
//!       │  step(message from peer)   │                          final at once), snapshot → restore }
//!       │                            ▼
//!       └─ compact(index, data)   RaftLog: entries, hard state, conf state and the last snapshot
//!                                  in RocksDB (synced before a vote or an append is acknowledged)
//! ```
//! The library is tikv's raft-rs (`raft`): a state machine the caller drives, with joint
//! consensus (`ConfChangeV2`), leader transfer, pre-vote and check-quorum. This crate adds the
//! durable log and one `ready` step that persists, applies configuration changes and hands the
//! caller what to send and what to apply, in the order Raft requires.

pub mod log;
pub mod node;

pub use log::{LogError, RaftLog};
pub use node::{Committed, NodeError, Output, RaftConfig, RaftNode};
pub use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, Message};
pub use raft::StateRole;

/// Bridges raft-rs's slog records to `tracing` (debug level and below go to `trace`).
pub(crate) fn logger(id: u64) -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!("raft_id" => id))
}

struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => tracing::error!(target: "raft", "{}", record.msg()),
            slog::Level::Warning => tracing::warn!(target: "raft", "{}", record.msg()),
            slog::Level::Info => tracing::debug!(target: "raft", "{}", record.msg()),
            _ => tracing::trace!(target: "raft", "{}", record.msg()),
        }
        Ok(())
    }
}
