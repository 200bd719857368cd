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
pub use node::{voters_change, Committed, NodeError, Output, RaftConfig, RaftNode};
pub use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, Message, MessageType};
pub use raft::StateRole;

/// A message's bytes on the wire (raft-rs's protobuf encoding).
pub fn encode_message(m: &Message) -> Vec<u8> {
    protobuf::Message::write_to_bytes(m).expect("raft's messages always encode")
}

/// A message from the wire; a peer's bytes that do not decode are refused with why.
pub fn decode_message(bytes: &[u8]) -> Result<Message, String> {
    <Message as protobuf::Message>::parse_from_bytes(bytes).map_err(|e| e.to_string())
}

/// The Raft id of the voter whose node key is `node_key` (32 bytes): the first 8 bytes of its
/// blake3 hash under a domain string, never 0 (raft-rs's "none").
pub fn raft_id(node_key: &[u8; 32]) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"aergo/raft-id");
    h.update(node_key);
    let id = u64::from_be_bytes(h.finalize().as_bytes()[..8].try_into().unwrap_or([0; 8]));
    id.max(1)
}

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
