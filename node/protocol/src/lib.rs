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

use aergo_primitives::types::{merkle_root, Block, BlockHeader, Hash, Signature, Transaction, MAX_TX_BYTES};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

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
/// Most bytes of transactions a producer puts in one block: the block must fit
/// [`MAX_BLOCK_BYTES`] with its header, signature and framing.
pub const MAX_BLOCK_TX_BYTES: usize = MAX_BLOCK_BYTES - 64 * 1024;
/// Most transactions a compact block may name: a full block of the smallest transactions.
pub const MAX_COMPACT_TXS: usize = MAX_BLOCK_BYTES / 64;
/// Most transactions one `Transactions` request asks for (the request stays far under
/// [`MAX_SYNC_REQUEST_BYTES`]); a block missing more is fetched whole.
pub const MAX_ASKED_TXS: usize = 8192;
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
    /// Transactions of block `block` by their places in it: those a compact block named that the
    /// asking node's pool did not hold. Sent only to a peer that gossiped the compact block (so
    /// one that speaks it); answered with `Transactions` in the order asked, or `Refused`.
    Transactions {
        block: Hash,
        indices: Vec<u32>,
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
    /// Encoded transactions, in the order a `Transactions` request asked for them.
    Transactions(Vec<serde_bytes::ByteBuf>),
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

/// A block on gossip by its transactions' hashes (`docs/consensus.md`, "Compact blocks"): the
/// header, the hashes in block order and the producer's signature, borsh-encoded, on the
/// chain's compact-blocks topic. A node fills it from its pool and asks the peer it came from
/// for the rest ([`SyncRequest::Transactions`]).
#[derive(Clone, Debug, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub struct CompactBlock {
    pub header: BlockHeader,
    pub tx_hashes: Vec<Hash>,
    pub signature: Signature,
}

impl CompactBlock {
    pub fn of(block: &Block) -> CompactBlock {
        CompactBlock {
            header: block.header.clone(),
            tx_hashes: block.transactions.iter().map(Transaction::hash).collect(),
            signature: block.signature,
        }
    }

    /// The block's hash (its header's).
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    pub fn encode(&self) -> Vec<u8> {
        aergo_primitives::types::to_vec_exact(self)
    }
}

/// A gossiped compact block. Its hashes must give the header's transactions root: a block that
/// a peer fills from them can then hold only the transactions the producer signed for.
pub fn decode_gossip_compact(bytes: &[u8]) -> Result<CompactBlock, WireError> {
    const WHAT: &str = "gossiped compact block";
    within(WHAT, bytes, MAX_BLOCK_BYTES)?;
    let compact: CompactBlock = borsh::from_slice(bytes).map_err(|e| WireError::undecodable(WHAT, e))?;
    if compact.tx_hashes.len() > MAX_COMPACT_TXS {
        return Err(WireError::undecodable(
            WHAT,
            format!("{} transactions (at most {MAX_COMPACT_TXS})", compact.tx_hashes.len()),
        ));
    }
    if merkle_root(&compact.tx_hashes) != compact.header.tx_root {
        return Err(WireError::undecodable(WHAT, "its transaction hashes do not give its transactions root"));
    }
    Ok(compact)
}

/// A compact block being filled: the transactions found so far, by place.
#[derive(Clone, Debug)]
pub struct Filling {
    pub compact: CompactBlock,
    /// Shared with the pool they were found in (a lookup under the pool's lock copies a pointer,
    /// not the transaction); a place costs a pointer until it is filled (a hostile block may
    /// name many).
    txs: Vec<Option<Arc<Transaction>>>,
}

impl Filling {
    /// Fills what `lookup` (the pool) holds of the block's transactions, each looked up by hash.
    pub fn new(compact: CompactBlock, mut lookup: impl FnMut(&Hash) -> Option<Arc<Transaction>>) -> Filling {
        let txs = compact.tx_hashes.iter().map(&mut lookup).collect();
        Filling { compact, txs }
    }

    /// The places still empty, in order.
    pub fn missing(&self) -> Vec<u32> {
        self.txs.iter().enumerate().filter(|(_, t)| t.is_none()).map(|(i, _)| i as u32).collect()
    }

    /// Puts a peer's answer to `Transactions { indices }` in place. Every transaction must be
    /// the one the block names at its place (its hash): anything else — fewer, more, another
    /// transaction, an index out of the block — refuses the whole answer and changes nothing.
    pub fn fill(&mut self, indices: &[u32], answer: Vec<Transaction>) -> Result<(), String> {
        if answer.len() != indices.len() {
            return Err(format!("{} transactions for a request of {}", answer.len(), indices.len()));
        }
        for (&i, tx) in indices.iter().zip(&answer) {
            match self.compact.tx_hashes.get(i as usize) {
                Some(h) if *h == tx.hash() => {}
                Some(h) => return Err(format!("transaction {} where the block has {h} at {i}", tx.hash())),
                None => return Err(format!("place {i} is outside the block's {}", self.txs.len())),
            }
        }
        for (&i, tx) in indices.iter().zip(answer) {
            self.txs[i as usize] = Some(Arc::new(tx));
        }
        Ok(())
    }

    /// The whole block, once every place is filled.
    pub fn block(self) -> Result<Block, Box<Filling>> {
        if self.txs.iter().any(Option::is_none) {
            return Err(Box::new(self));
        }
        let CompactBlock { header, signature, .. } = self.compact;
        // The pool still holds most of them: copied here, outside its lock.
        let transactions = self
            .txs
            .into_iter()
            .flatten()
            .map(|t| Arc::try_unwrap(t).unwrap_or_else(|t| (*t).clone()))
            .collect();
        Ok(Block { header, signature, transactions })
    }
}

/// A gossiped (or forwarded) transaction.
pub fn decode_gossip_tx(bytes: &[u8]) -> Result<Transaction, WireError> {
    within("transaction", bytes, MAX_TX_BYTES)?;
    Transaction::decode(bytes).map_err(|e| WireError::undecodable("transaction", e))
}

/// Most transactions in one gossiped batch (`docs/consensus.md`, "Transaction batches on
/// gossip").
pub const MAX_BATCH_TXS: usize = 512;
/// Most bytes of one gossiped batch, its framing included (four transactions of the largest
/// size fit).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// What one transaction adds to a batch besides its own bytes (its length).
pub const BATCH_FRAMING_BYTES: usize = 4;

/// A node's own transactions in one gossip message, each its own encoding: borsh
/// `Vec<Vec<u8>>` (a `u32` count, then each transaction's `u32` length and bytes). The caller
/// keeps within [`MAX_BATCH_TXS`] and [`MAX_BATCH_BYTES`].
pub fn encode_tx_batch(txs: &[Vec<u8>]) -> Vec<u8> {
    aergo_primitives::types::to_vec_exact(&txs)
}

/// A gossiped batch: 1 to [`MAX_BATCH_TXS`] transactions in at most [`MAX_BATCH_BYTES`], each
/// decoding as a transaction of at most `MAX_TX_BYTES`. Each comes with its encoded length.
pub fn decode_tx_batch(bytes: &[u8]) -> Result<Vec<(Transaction, usize)>, WireError> {
    const WHAT: &str = "gossiped transaction batch";
    within(WHAT, bytes, MAX_BATCH_BYTES)?;
    // The count is read first: a hostile count is refused before anything is allocated for it.
    let count = bytes.get(..4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize);
    match count {
        None => return Err(WireError::undecodable(WHAT, "shorter than its count")),
        Some(0) => return Err(WireError::undecodable(WHAT, "no transactions")),
        Some(n) if n > MAX_BATCH_TXS => {
            return Err(WireError::undecodable(WHAT, format!("{n} transactions (at most {MAX_BATCH_TXS})")))
        }
        Some(_) => {}
    }
    // All of the bytes must be used (borsh refuses trailing bytes).
    let frames: Vec<Vec<u8>> = borsh::from_slice(bytes).map_err(|e| WireError::undecodable(WHAT, e))?;
    frames
        .into_iter()
        .enumerate()
        .map(|(i, frame)| {
            let len = frame.len();
            decode_gossip_tx(&frame)
                .map(|tx| (tx, len))
                .map_err(|e| WireError::undecodable(WHAT, format!("transaction {i}: {e}")))
        })
        .collect()
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
    /// The transactions asked for, decoded, as many as asked (not yet matched to the block).
    Transactions(Vec<Transaction>),
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
        (Some(SyncRequest::Transactions { indices, .. }), SyncResponse::Transactions(encoded)) => {
            if encoded.len() != indices.len() {
                return Err(format!("{} transactions for a request of {}", encoded.len(), indices.len()));
            }
            let mut txs = Vec::with_capacity(encoded.len());
            for bytes in encoded {
                txs.push(decode_gossip_tx(&bytes).map_err(|e| format!("asked-for {e}"))?);
            }
            Ok(Answer::Transactions(txs))
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
    fn a_transaction_batch_round_trips_and_anything_else_is_refused_with_the_reason() {
        use aergo_primitives::crypto::{test_tx, Keypair};
        use aergo_primitives::types::Payload;
        let key = Keypair::from_seed("batch");
        let txs: Vec<Transaction> =
            (0..3).map(|n| test_tx(&key, "c", n, key.address(), 1, 1, Payload::Transfer)).collect();
        let encoded: Vec<Vec<u8>> = txs.iter().map(Transaction::encode).collect();
        let batch = encode_tx_batch(&encoded);
        assert_eq!(batch.len(), 4 + encoded.iter().map(|t| BATCH_FRAMING_BYTES + t.len()).sum::<usize>());
        let back = decode_tx_batch(&batch).unwrap();
        assert_eq!(back.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(), txs);
        assert_eq!(
            back.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
            encoded.iter().map(Vec::len).collect::<Vec<_>>()
        );

        let refused = |bytes: &[u8]| decode_tx_batch(bytes).unwrap_err().to_string();
        assert!(refused(&[1, 0]).contains("shorter than its count"));
        assert!(refused(&encode_tx_batch(&[])).contains("no transactions"));
        // A hostile count is refused before anything is read for it.
        assert!(refused(&u32::MAX.to_le_bytes()).contains("at most 512"));
        let many = vec![encoded[0].clone(); MAX_BATCH_TXS + 1];
        assert!(refused(&encode_tx_batch(&many)).contains("513 transactions"));
        // A count larger than what follows, trailing bytes, a frame that is no transaction.
        let mut short = batch.clone();
        short[0] = 4;
        assert!(refused(&short).starts_with("gossiped transaction batch: "));
        let mut trailing = batch.clone();
        trailing.push(0);
        assert!(refused(&trailing).starts_with("gossiped transaction batch: "));
        let junk = encode_tx_batch(&[encoded[0].clone(), vec![1, 2, 3]]);
        assert!(refused(&junk).contains("transaction 1: "), "{}", refused(&junk));
        let big = vec![0u8; MAX_BATCH_BYTES + 1];
        assert!(matches!(decode_tx_batch(&big), Err(WireError::Oversized { .. })));
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

    fn compact_and_txs() -> (Block, CompactBlock) {
        use aergo_primitives::crypto::{test_block, test_tx, Keypair};
        use aergo_primitives::types::Payload;
        let key = Keypair::from_seed("p");
        let transactions: Vec<Transaction> =
            (0..6).map(|n| test_tx(&key, "c", n, key.address(), n as u128, 1, Payload::Transfer)).collect();
        let block = test_block(&key, "c", 3, transactions);
        let compact = CompactBlock::of(&block);
        (block, compact)
    }

    #[test]
    fn a_compact_block_round_trips_and_its_hashes_must_give_the_root() {
        let (block, compact) = compact_and_txs();
        assert_eq!(compact.hash(), block.hash());
        let bytes = compact.encode();
        assert_eq!(decode_gossip_compact(&bytes).unwrap(), compact);
        assert!(bytes.len() * 2 < block.encode().len(), "{} vs {}", bytes.len(), block.encode().len());
        // A hash swapped, one left out, one added: the root no longer matches.
        for change in 0..3 {
            let mut bad = compact.clone();
            match change {
                0 => bad.tx_hashes[2] = Hash([7; 32]),
                1 => {
                    bad.tx_hashes.pop();
                }
                _ => bad.tx_hashes.push(Hash([7; 32])),
            }
            let e = decode_gossip_compact(&bad.encode()).unwrap_err();
            assert!(e.to_string().contains("transactions root"), "{e}");
        }
        assert!(decode_gossip_compact(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_gossip_compact(&block.encode()).is_err());
    }

    #[test]
    fn a_compact_block_fills_from_the_pool_and_only_with_the_transactions_it_names() {
        let (block, compact) = compact_and_txs();
        let pool: std::collections::HashMap<Hash, Arc<Transaction>> =
            block.transactions.iter().step_by(2).map(|t| (t.hash(), Arc::new(t.clone()))).collect();
        let mut filling = Filling::new(compact.clone(), |h| pool.get(h).cloned());
        assert_eq!(filling.missing(), vec![1, 3, 5]);
        let answer =
            |places: &[usize]| places.iter().map(|&i| block.transactions[i].clone()).collect::<Vec<_>>();
        // Too few, too many, another transaction in a place, a place outside the block: refused,
        // nothing changes.
        assert!(filling
            .fill(&[1, 3, 5], answer(&[1, 3]))
            .unwrap_err()
            .contains("2 transactions for a request of 3"));
        assert!(filling.fill(&[1, 3], answer(&[1, 3, 5])).is_err());
        let e = filling.fill(&[1, 3, 5], answer(&[1, 4, 5])).unwrap_err();
        assert!(e.contains(&block.transactions[4].hash().to_string()), "{e}");
        assert!(filling.fill(&[9], answer(&[1])).unwrap_err().contains("outside the block"));
        assert_eq!(filling.missing(), vec![1, 3, 5]);
        // The right ones, in two answers.
        let mut filling = *filling.block().unwrap_err();
        filling.fill(&[3], answer(&[3])).unwrap();
        filling.fill(&[1, 5], answer(&[1, 5])).unwrap();
        assert!(filling.missing().is_empty());
        assert_eq!(filling.block().unwrap(), block);
        // Nothing in the pool: every place asked for.
        assert_eq!(Filling::new(compact, |_| None).missing(), (0..6).collect::<Vec<u32>>());
    }

    #[test]
    fn an_answer_of_transactions_must_be_as_many_as_asked_and_decode() {
        let (block, _) = compact_and_txs();
        let asked = SyncRequest::Transactions { block: block.hash(), indices: vec![0, 2] };
        let encoded = |places: &[usize]| {
            SyncResponse::Transactions(
                places.iter().map(|&i| serde_bytes::ByteBuf::from(block.transactions[i].encode())).collect(),
            )
        };
        assert_eq!(
            check_response(Some(&asked), encoded(&[0, 2])),
            Ok(Answer::Transactions(vec![block.transactions[0].clone(), block.transactions[2].clone()]))
        );
        assert!(check_response(Some(&asked), encoded(&[0]))
            .unwrap_err()
            .contains("1 transactions for a request of 2"));
        let junk = SyncResponse::Transactions(vec![serde_bytes::ByteBuf::from(vec![1]); 2]);
        assert!(check_response(Some(&asked), junk).unwrap_err().starts_with("asked-for"));
        let r = SyncRequest::Transactions { block: Hash([4; 32]), indices: vec![1, 70_000] };
        assert_eq!(decode_request(&encode_request(&r)).unwrap(), r);
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
                "req-transactions.cbor",
                encode_request(&SyncRequest::Transactions { block: hash, indices: vec![0, 7] }),
            ),
            ("resp-transactions.cbor", encode_response(&SyncResponse::Transactions(vec![buf(tx.clone())]))),
            ("gossip-compact.bin", CompactBlock::of(&Block::decode(&block).unwrap()).encode()),
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
