//! The p2p protocol's messages: what peers send each other, how it is encoded, how big it may be,
//! and what a peer's answer must be to count as one.
//!
//! Two kinds of message travel between nodes (`docs/consensus.md`, "Network"):
//! - **gossip** (gossipsub topics `aergo/<chain>/blocks` and `.../txs`): one borsh-encoded block or
//!   transaction per message, decoded by [`decode_gossip_block`] and [`decode_gossip_tx`];
//! - **sync** (request-response protocol [`SYNC_PROTOCOL`]): a [`SyncRequest`] answered by a
//!   [`SyncResponse`], each one CBOR document on its own stream ([`encode_request`],
//!   [`decode_request`], [`encode_response`], [`decode_response`]). [`check_response`] says what an
//!   answer to a request means, or why it is malformed (more blocks than asked for, a block that is
//!   not the one asked for, bytes that are no block).
//!
//! This crate owns the bytes and their meaning; it never opens a socket (that is `aergo-net`, whose
//! request-response codec calls the functions here, so the fuzz target `p2p` exercises exactly
//! what a node does with a peer's bytes) and knows no store.

use aergo_primitives::types::{Block, Hash, Transaction, MAX_TX_BYTES};
use serde::{Deserialize, Serialize};

/// The sync protocol's name on the wire.
pub const SYNC_PROTOCOL: &str = "/aergo/sync/1";
/// The sync protocol of the branches a node holds besides `main` (`docs/branches.md`, "Between
/// nodes"): each request names its branch ([`BranchRequest`]); the answers are [`SyncResponse`]s.
pub const BRANCH_SYNC_PROTOCOL: &str = "/aergo/branch-sync/1";
/// Raft's messages between the voters of a chain agreed by Raft (`docs/repositories.md`): each
/// request is one raft-rs message (its protobuf bytes, opaque here), answered with nothing.
pub const RAFT_PROTOCOL: &str = "/aergo/raft/1";
/// Largest Raft message: entries up to the append limit, and always at least one whole block.
pub const MAX_RAFT_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Longest branch name on the wire (the chain's naming rule allows 63 characters).
pub const MAX_BRANCH_NAME: usize = 63;
/// Largest gossip message: one block.
pub const MAX_BLOCK_BYTES: usize = 8 * 1024 * 1024;
/// Largest sync response: the blocks themselves; a response may add [`RESPONSE_FRAMING_BYTES`].
pub const MAX_SYNC_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// What the CBOR framing of a sync response may add to its blocks.
pub const RESPONSE_FRAMING_BYTES: usize = 64 * 1024;
/// Largest sync request: a forwarded transaction and its framing (the others are a few bytes).
pub const MAX_SYNC_REQUEST_BYTES: usize = MAX_TX_BYTES + 4096;
/// Most blocks in one sync response.
pub const MAX_SYNC_BLOCKS: u32 = 256;

/// What a node tells its peers about its chain (the answer to [`SyncRequest::Status`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub genesis: Hash,
    pub height: u64,
    pub hash: Hash,
    pub lib_height: u64,
    pub lib_hash: Hash,
    /// The producer key the node produces with, if it is a producer (hex).
    #[serde(default)]
    pub producer: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    Status,
    /// A transaction for the producer's pool (from a node that is no producer); answered with the
    /// producer's `send_tx` answer.
    SubmitTx {
        tx: serde_bytes::ByteBuf,
    },
    /// Blocks of the peer's best chain from height `from`, at most `count`.
    Blocks {
        from: u64,
        count: u32,
    },
    Block {
        hash: Hash,
    },
    /// A part of a snapshot of the peer's state (for a node that starts empty).
    Snapshot(SnapshotPart),
    /// The peer's genesis, as a genesis file (for a node provisioned with only its hash).
    Genesis,
    /// A member node of a private branch made a block (on `branch-sync` only, between its
    /// members: a private branch's blocks are never gossiped). The receiver fetches it with
    /// `Block { hash }`; the answer is `Block(None)`.
    NewBlock {
        hash: Hash,
    },
}

/// A request about one branch (on [`BRANCH_SYNC_PROTOCOL`]). A node answers from the branch's
/// chain if it holds the branch and refuses otherwise; snapshots and the genesis are `main`'s
/// business and refused here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchRequest {
    pub branch: String,
    pub request: SyncRequest,
}

/// The gossipsub topics of a branch's blocks and transactions.
pub fn branch_topics(chain_id: &str, branch: &str) -> (String, String) {
    (format!("/aergo/{chain_id}/b/{branch}/blocks"), format!("/aergo/{chain_id}/b/{branch}/txs"))
}

/// Which part of a snapshot (frames as `aergo_storage::snapshot` encodes them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotPart {
    /// The opening frames (manifest, block, headers, elections) at the peer's last final height.
    Head,
    /// The next state-tree leaves at `height` after the key hash `after` (from the first: `None`).
    Leaves { height: u64, after: Option<Hash> },
    /// The next contract rows at `height` after the key `after`.
    Rows { height: u64, after: Option<serde_bytes::ByteBuf> },
}

/// The largest genesis file a node takes from a peer.
pub const MAX_GENESIS_BYTES: usize = 4 * 1024 * 1024;

/// Most frames in an answer to [`SnapshotPart::Head`] (manifest, block, headers, two elections).
pub const MAX_SNAPSHOT_HEAD_FRAMES: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    Status(Status),
    /// Encoded blocks, in height order.
    Blocks(Vec<serde_bytes::ByteBuf>),
    Block(Option<serde_bytes::ByteBuf>),
    Submitted(aergo_api::SendTxResult),
    Refused(String),
    /// Snapshot frames: the opening ones, or one page (none past the end).
    Snapshot(Vec<serde_bytes::ByteBuf>),
    /// The genesis file's text (TOML).
    Genesis(String),
}

/// Why a peer's bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{what} of {len} bytes is over the limit of {limit}")]
    Oversized { what: &'static str, len: usize, limit: usize },
    #[error("{what}: {reason}")]
    Undecodable { what: &'static str, reason: String },
}

impl WireError {
    fn undecodable(what: &'static str, reason: impl std::fmt::Display) -> WireError {
        WireError::Undecodable { what, reason: reason.to_string() }
    }
}

fn within(what: &'static str, bytes: &[u8], limit: usize) -> Result<(), WireError> {
    if bytes.len() > limit {
        return Err(WireError::Oversized { what, len: bytes.len(), limit });
    }
    Ok(())
}

/// A gossiped block.
pub fn decode_gossip_block(bytes: &[u8]) -> Result<Block, WireError> {
    within("gossiped block", bytes, MAX_BLOCK_BYTES)?;
    Block::decode(bytes).map_err(|e| WireError::undecodable("gossiped block", e))
}

/// A gossiped (or forwarded) transaction.
pub fn decode_gossip_tx(bytes: &[u8]) -> Result<Transaction, WireError> {
    within("transaction", bytes, MAX_TX_BYTES)?;
    Transaction::decode(bytes).map_err(|e| WireError::undecodable("transaction", e))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain types into a vector cannot fail but for memory: that aborts anyway.
    cbor4ii::serde::to_vec(Vec::new(), value).expect("a sync message serializes into memory")
}

pub fn encode_request(request: &SyncRequest) -> Vec<u8> {
    encode(request)
}

pub fn encode_response(response: &SyncResponse) -> Vec<u8> {
    encode(response)
}

/// A sync request's bytes (the whole stream, which the codec reads up to one byte past the limit).
pub fn decode_request(bytes: &[u8]) -> Result<SyncRequest, WireError> {
    within("sync request", bytes, MAX_SYNC_REQUEST_BYTES)?;
    cbor4ii::serde::from_slice(bytes).map_err(|e| WireError::undecodable("sync request", e))
}

pub fn encode_branch_request(request: &BranchRequest) -> Vec<u8> {
    encode(request)
}

/// A branch sync request's bytes: a sync request and a branch name of at most
/// [`MAX_BRANCH_NAME`] bytes.
pub fn decode_branch_request(bytes: &[u8]) -> Result<BranchRequest, WireError> {
    within("branch sync request", bytes, MAX_SYNC_REQUEST_BYTES + MAX_BRANCH_NAME + 16)?;
    let request: BranchRequest =
        cbor4ii::serde::from_slice(bytes).map_err(|e| WireError::undecodable("branch sync request", e))?;
    if request.branch.is_empty() || request.branch.len() > MAX_BRANCH_NAME {
        return Err(WireError::undecodable(
            "branch sync request",
            format!("a branch name of {} bytes (1 to {MAX_BRANCH_NAME})", request.branch.len()),
        ));
    }
    Ok(request)
}

/// A sync response's bytes.
pub fn decode_response(bytes: &[u8]) -> Result<SyncResponse, WireError> {
    within("sync response", bytes, MAX_SYNC_RESPONSE_BYTES + RESPONSE_FRAMING_BYTES)?;
    cbor4ii::serde::from_slice(bytes).map_err(|e| WireError::undecodable("sync response", e))
}

/// What a response to one of this node's requests means.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Status(Status),
    /// Blocks that decode, at most as many as asked for, or the one block asked for.
    Blocks(Vec<Block>),
    /// The peer refused, with its reason.
    Refused(String),
    /// Snapshot frames, as many as the request allows (not decoded here).
    Snapshot(Vec<Vec<u8>>),
    /// A genesis file's text, within [`MAX_GENESIS_BYTES`] (not parsed here).
    Genesis(String),
    /// Nothing useful (a missing block, an answer of another kind).
    Nothing,
}

/// Checks a peer's response against the request it answers (`None`: a request this node no
/// longer knows about). `Err` is a malformed answer: the peer is penalized.
pub fn check_response(asked: Option<&SyncRequest>, response: SyncResponse) -> Result<Answer, String> {
    match (asked, response) {
        (Some(SyncRequest::Status), SyncResponse::Status(status)) => Ok(Answer::Status(status)),
        (Some(SyncRequest::Blocks { count, .. }), SyncResponse::Blocks(encoded)) => {
            if encoded.len() > *count as usize || encoded.len() > MAX_SYNC_BLOCKS as usize {
                return Err(format!("{} blocks for a request of {count}", encoded.len()));
            }
            let mut blocks = Vec::with_capacity(encoded.len());
            for bytes in encoded {
                blocks.push(Block::decode(&bytes).map_err(|e| format!("sync block: {e}"))?);
            }
            Ok(Answer::Blocks(blocks))
        }
        (Some(SyncRequest::Block { hash }), SyncResponse::Block(Some(bytes))) => {
            match Block::decode(&bytes) {
                Ok(b) if b.hash() == *hash => Ok(Answer::Blocks(vec![b])),
                _ => Err("asked-for block does not match its hash".into()),
            }
        }
        (Some(SyncRequest::Snapshot(part)), SyncResponse::Snapshot(frames)) => {
            let most = match part {
                SnapshotPart::Head => MAX_SNAPSHOT_HEAD_FRAMES,
                SnapshotPart::Leaves { .. } | SnapshotPart::Rows { .. } => 1,
            };
            if frames.len() > most || (matches!(part, SnapshotPart::Head) && frames.is_empty()) {
                return Err(format!("{} snapshot frames for a request of at most {most}", frames.len()));
            }
            Ok(Answer::Snapshot(frames.into_iter().map(|f| f.into_vec()).collect()))
        }
        (Some(SyncRequest::Genesis), SyncResponse::Genesis(text)) => {
            if text.len() > MAX_GENESIS_BYTES {
                return Err(format!("a genesis file of {} bytes (at most {MAX_GENESIS_BYTES})", text.len()));
            }
            Ok(Answer::Genesis(text))
        }
        (_, SyncResponse::Refused(reason)) => Ok(Answer::Refused(reason)),
        _ => Ok(Answer::Nothing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<SyncRequest> {
        vec![
            SyncRequest::Status,
            SyncRequest::SubmitTx { tx: serde_bytes::ByteBuf::from(vec![1, 2, 3]) },
            SyncRequest::Blocks { from: 7, count: 3 },
            SyncRequest::Block { hash: Hash([9; 32]) },
            SyncRequest::Snapshot(SnapshotPart::Head),
            SyncRequest::Genesis,
            SyncRequest::NewBlock { hash: Hash([4; 32]) },
            SyncRequest::Snapshot(SnapshotPart::Leaves { height: 9, after: Some(Hash([3; 32])) }),
            SyncRequest::Snapshot(SnapshotPart::Rows {
                height: 9,
                after: Some(serde_bytes::ByteBuf::from(b"sql/x".to_vec())),
            }),
        ]
    }

    #[test]
    fn requests_round_trip_and_the_wire_form_is_stable() {
        for r in samples() {
            assert_eq!(decode_request(&encode_request(&r)).unwrap(), r);
        }
        // The bytes older nodes send (libp2p's CBOR codec over the same serde types): a change here
        // is a protocol change and needs a new protocol name.
        assert_eq!(encode_request(&SyncRequest::Status), b"\x66Status");
        assert_eq!(
            encode_request(&SyncRequest::Blocks { from: 7, count: 3 }),
            b"\xa1\x66Blocks\xa2\x64from\x07\x65count\x03"
        );
    }

    #[test]
    fn branch_requests_round_trip_and_name_a_branch() {
        for r in samples() {
            let asked = BranchRequest { branch: "feature/x".into(), request: r };
            assert_eq!(decode_branch_request(&encode_branch_request(&asked)).unwrap(), asked);
        }
        for name in [String::new(), "x".repeat(MAX_BRANCH_NAME + 1)] {
            let bytes = encode_branch_request(&BranchRequest { branch: name, request: SyncRequest::Status });
            let e = decode_branch_request(&bytes).unwrap_err();
            assert!(e.to_string().contains("a branch name of"), "{e}");
        }
        // A plain sync request is not a branch request.
        assert!(decode_branch_request(&encode_request(&SyncRequest::Status)).is_err());
        assert_eq!(
            branch_topics("c", "f/x"),
            ("/aergo/c/b/f/x/blocks".to_string(), "/aergo/c/b/f/x/txs".to_string())
        );
    }

    #[test]
    fn oversized_and_garbage_are_refused_with_the_reason() {
        let big = vec![0u8; MAX_SYNC_REQUEST_BYTES + 1];
        assert!(matches!(decode_request(&big), Err(WireError::Oversized { .. })));
        let e = decode_request(b"\xff\x00").unwrap_err();
        assert!(e.to_string().starts_with("sync request: "), "{e}");
        assert!(matches!(decode_gossip_tx(&[0; 4]), Err(WireError::Undecodable { .. })));
    }

    #[test]
    fn a_response_must_answer_the_request() {
        let blocks = SyncRequest::Blocks { from: 1, count: 1 };
        let two = SyncResponse::Blocks(vec![serde_bytes::ByteBuf::new(), serde_bytes::ByteBuf::new()]);
        assert!(check_response(Some(&blocks), two).unwrap_err().contains("2 blocks for a request of 1"));
        let junk = SyncResponse::Blocks(vec![serde_bytes::ByteBuf::from(vec![1, 2])]);
        assert!(check_response(Some(&blocks), junk).unwrap_err().starts_with("sync block"));
        let one = SyncRequest::Block { hash: Hash([1; 32]) };
        assert!(check_response(Some(&one), SyncResponse::Block(Some(serde_bytes::ByteBuf::from(vec![0]))))
            .is_err());
        assert_eq!(check_response(Some(&one), SyncResponse::Block(None)), Ok(Answer::Nothing));
        assert_eq!(
            check_response(None, SyncResponse::Refused("busy".into())),
            Ok(Answer::Refused("busy".into()))
        );
        let page = SyncRequest::Snapshot(SnapshotPart::Leaves { height: 3, after: None });
        let frames = |n: usize| SyncResponse::Snapshot(vec![serde_bytes::ByteBuf::from(vec![0]); n]);
        assert!(check_response(Some(&page), frames(2)).unwrap_err().contains("2 snapshot frames"));
        assert_eq!(check_response(Some(&page), frames(0)), Ok(Answer::Snapshot(vec![])));
        let head = SyncRequest::Snapshot(SnapshotPart::Head);
        assert!(check_response(Some(&head), frames(0)).is_err());
        assert!(check_response(Some(&head), frames(MAX_SNAPSHOT_HEAD_FRAMES + 1)).is_err());
        let big = SyncResponse::Genesis("x".repeat(MAX_GENESIS_BYTES + 1));
        assert!(check_response(Some(&SyncRequest::Genesis), big).unwrap_err().contains("a genesis file of"));
    }

    /// The p2p fuzz target's seeds (`fuzz/seeds/p2p/`) are today's encodings of each message;
    /// `AERGO_WRITE_FUZZ_SEEDS=1 cargo test -p aergo-protocol` rewrites them after a protocol change.
    #[test]
    fn fuzz_seeds_are_current_encodings() {
        // At run time: the executable may have been built in another clone (scripts/env.sh).
        let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        let root = std::path::Path::new(&manifest).join("../../fuzz/seeds");
        let block = std::fs::read(root.join("decode/block.bin")).unwrap();
        let tx = std::fs::read(root.join("decode/transfer.bin")).unwrap();
        let hash = Block::decode(&block).unwrap().hash();
        let status = Status {
            genesis: Hash([1; 32]),
            height: 9,
            hash,
            lib_height: 7,
            lib_hash: Hash([2; 32]),
            producer: Some("02ab".into()),
        };
        let buf = serde_bytes::ByteBuf::from;
        let seeds = vec![
            ("req-status.cbor", encode_request(&SyncRequest::Status)),
            ("req-blocks.cbor", encode_request(&SyncRequest::Blocks { from: 9, count: 1 })),
            ("req-block.cbor", encode_request(&SyncRequest::Block { hash })),
            ("req-submit.cbor", encode_request(&SyncRequest::SubmitTx { tx: buf(tx.clone()) })),
            ("resp-status.cbor", encode_response(&SyncResponse::Status(status))),
            ("resp-blocks.cbor", encode_response(&SyncResponse::Blocks(vec![buf(block.clone())]))),
            ("resp-block.cbor", encode_response(&SyncResponse::Block(Some(buf(block.clone()))))),
            ("resp-refused.cbor", encode_response(&SyncResponse::Refused("busy".into()))),
            (
                "req-snapshot-leaves.cbor",
                encode_request(&SyncRequest::Snapshot(SnapshotPart::Leaves { height: 9, after: Some(hash) })),
            ),
            ("resp-snapshot.cbor", encode_response(&SyncResponse::Snapshot(vec![buf(vec![7; 40])]))),
            ("req-genesis.cbor", encode_request(&SyncRequest::Genesis)),
            (
                "req-branch-blocks.cbor",
                encode_branch_request(&BranchRequest {
                    branch: "feature".into(),
                    request: SyncRequest::Blocks { from: 9, count: 1 },
                }),
            ),
            ("resp-genesis.cbor", encode_response(&SyncResponse::Genesis("chain_id = \"x\"\n".into()))),
            (
                "resp-submitted.cbor",
                encode_response(&SyncResponse::Submitted(aergo_api::SendTxResult {
                    hash: Transaction::decode(&tx).unwrap().hash(),
                    pool_seq: 3,
                    speculative: None,
                    answered_by: None,
                })),
            ),
        ];
        aergo_primitives::file::check_fuzz_seeds(&root.join("p2p"), &seeds);
    }
}
