//! The JSON-RPC interface: request and response types, the method list and the generated client.
//!
//! This is the one definition the node serves ([`AergoApiServer`]) and the CLI, agent and console call
//! ([`AergoApiClient`], implemented by jsonrpsee's HTTP and WebSocket clients). Amounts are decimal
//! strings, hashes hex, addresses bech32m.
//!
//! The types alone (without jsonrpsee: `default-features = false`, the feature `rpc` off) serve
//! what only parses requests, such as the JSON-RPC parameter fuzz target.
//!
//! Errors: malformed parameters get `-32602` (invalid params); a refused transaction gets
//! [`codes::TX_REJECTED`] with `data.reason` naming the rule it broke (`bad_signature`, `wrong_chain_id`,
//! `nonce_too_low`, `nonce_gap`, `balance_too_low`, `too_large`, `pool_full`, …); a node that cannot take
//! more work right now answers [`codes::BUSY`].

use aergo_primitives::types::{Address, Hash};
#[cfg(feature = "rpc")]
use jsonrpsee::core::SubscriptionResult;
#[cfg(feature = "rpc")]
use jsonrpsee::proc_macros::rpc;
#[cfg(feature = "rpc")]
use jsonrpsee::types::ErrorObjectOwned;
use serde::{Deserialize, Serialize};

#[cfg(feature = "rpc")]
pub type RpcResult<T> = Result<T, ErrorObjectOwned>;

/// Application error codes (JSON-RPC reserves -32768..-32000 for itself; we use the server range).
pub mod codes {
    /// Not a request this node serves: here, one from a web page whose origin `[rpc] cors_origins`
    /// does not list (HTTP 403).
    pub const INVALID_REQUEST: i32 = -32600;
    pub const INVALID_PARAMS: i32 = -32602;
    pub const INTERNAL: i32 = -32603;
    /// The transaction was refused; `data.reason` says why.
    pub const TX_REJECTED: i32 = -32010;
    /// The node is overloaded, or this client is over its rate limit (`data.limit` = `rate`;
    /// HTTP 429); retry later.
    pub const BUSY: i32 = -32011;
    /// The requested height is above the chain head.
    pub const HEIGHT_UNAVAILABLE: i32 = -32012;
    /// A `query` was stopped at a limit; `data.limit` is `gas` or `deadline`.
    pub const QUERY_LIMIT: i32 = -32013;
    /// Not allowed to this client: an admin method called from outside `[rpc] admin_from`, or
    /// (`docs/repositories.md`) a private repository's request without a member's signature.
    pub const ACCESS_DENIED: i32 = -32020;
}

pub use aergo_primitives::types::amount_string;
pub mod auth;
pub mod frames;
pub mod txjson;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChainInfo {
    pub chain_id: String,
    /// The branch this is of: `main`, or a branch the node holds (`docs/branches.md`).
    #[serde(default = "main_branch")]
    pub branch: String,
    pub genesis_hash: Hash,
    pub height: u64,
    pub best_hash: Hash,
    pub best_timestamp_ms: u64,
    /// Last irreversible block. With one producer every committed block is final.
    pub lib_height: u64,
    pub producer_count: u32,
    pub block_interval_ms: u64,
    pub mempool_txs: u64,
    pub syncing: bool,
    /// Connected peers (0 on a single-producer devnet).
    #[serde(default)]
    pub peers: u32,
    /// The highest block height this node has heard of (its own height when none is higher).
    #[serde(default)]
    pub best_known_height: u64,
    /// How the chain agrees on blocks: `dpos` or `raft` (`docs/repositories.md`).
    #[serde(default = "dpos")]
    pub consensus: String,
    /// This node's Raft member, on a chain agreed by Raft.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft: Option<RaftView>,
}

fn dpos() -> String {
    "dpos".into()
}

/// A Raft member as `chain_info` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RaftView {
    /// This member's Raft id (from its node key).
    pub id: u64,
    /// `leader`, `follower`, `candidate`, `pre-candidate`; `none` on a node that is no voter (yet).
    pub role: String,
    pub term: u64,
    /// The leader's node key (hex), when one is known.
    pub leader: Option<String>,
    /// The node keys (hex) of the voters of the current configuration.
    pub voters: Vec<String>,
    /// The last log index a majority holds, and the last this node applied.
    pub commit_index: u64,
    pub applied_index: u64,
    /// Since when (unix ms) the node has known no leader; 0 while it knows one.
    #[serde(default)]
    pub leaderless_since_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeInfo {
    pub version: String,
    /// The libp2p peer id; `null` until the node joins a network (single-producer devnet).
    pub peer_id: Option<String>,
    /// `producer` or `full`.
    pub role: String,
    pub producer_address: Option<Address>,
    pub data_dir: String,
    pub uptime_s: u64,
    /// Whether the block log writes through io_uring (false: pwrite fallback).
    pub block_log_io_uring: bool,
    /// Cores the execution workers are pinned to (one worker each; one core: sequential).
    pub exec_cores: Vec<usize>,
    /// The node's process id (the agent watches this process).
    #[serde(default)]
    pub pid: u32,
    /// Public half of the node's identity key (`<data_dir>/node.key`), hex: the agent signs its answers
    /// with this key so that Horde can tell which box said what.
    #[serde(default)]
    pub node_key: String,
    /// The p2p addresses the node listens on (empty without p2p).
    #[serde(default)]
    pub p2p_listen: Vec<String>,
    /// The configured bootstrap peers and whether the node reaches them.
    #[serde(default)]
    pub bootstrap: Vec<BootstrapView>,
}

/// A bootstrap address of the node's config and what the node knows of the peer there.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BootstrapView {
    /// As configured (`/ip4/…/tcp/…`, maybe with `/p2p/<peer id>`).
    pub address: String,
    /// The peer there: from the address, or learnt when a dial succeeded.
    pub peer_id: Option<String>,
    pub connected: bool,
    /// Failed dials in a row, and why the last one failed.
    pub failures: u32,
    pub last_error: Option<String>,
    /// The address is this node's own (not dialled).
    #[serde(default)]
    pub is_self: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SendTxResult {
    pub hash: Hash,
    /// Position in this node's pool order (pool-level serialization).
    pub pool_seq: u64,
    /// The transaction's result on this node's pending state (its pool with everything before it
    /// applied): what its receipt will say when this node includes it in its next block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speculative: Option<SpeculativeView>,
    /// The peer id of the producer that answered, when a node that is no producer forwarded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SpeculativeView {
    /// `success`, `failed` (it will be included and fail, paying its fee) or `queued` (it cannot run
    /// yet: a nonce gap).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One transaction's answer in `send_txs`: `{hash, pool_seq}` or `{error: {code, message, reason}}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum SendTxOutcome {
    Accepted(SendTxResult),
    Rejected { error: TxRejection },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TxRejection {
    pub code: i32,
    pub message: String,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TxView {
    pub hash: Hash,
    pub chain_id: String,
    pub kind: String,
    pub nonce: u64,
    pub sender: Address,
    pub recipient: Address,
    #[serde(with = "amount_string")]
    pub amount: u128,
    #[serde(with = "amount_string")]
    pub fee: u128,
    /// `pending` (in the pool) or `included`.
    pub state: String,
    pub block_height: Option<u64>,
    pub block_hash: Option<Hash>,
    pub index: Option<u32>,
    /// Deploy: the new contract's address; call: the contract called.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub contract: Option<Address>,
    /// Call: the function called.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub function: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReceiptView {
    pub tx_hash: Hash,
    /// `success` or `failed`.
    pub status: String,
    pub block_height: u64,
    pub block_hash: Hash,
    pub index: u32,
    #[serde(with = "amount_string")]
    pub fee: u128,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// What a contract function returned; for a merge, one row per transaction of the source
    /// (`tx`, `height`, `result`: `included` or `dropped`, `reason`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub result: Option<QueryView>,
    /// For a transaction of another branch that a merge replayed here: the merge transaction.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub merged_by: Option<Hash>,
    /// The events a contract call emitted (`docs/dapps.md`); those of a failed call are
    /// `reverted`.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub events: Vec<EventView>,
}

/// An event of a receipt: where it is among the block's events (reverted ones are not counted:
/// theirs is `null`), the contract, the declared name, and the arguments by their declared names.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventView {
    pub index: Option<u32>,
    pub contract: Address,
    pub name: String,
    pub args: serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub reverted: bool,
}

/// `get_events`: which events, where.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventFilter {
    pub contract: Address,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// Equality on named arguments (values as in query results).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub args: Option<serde_json::Map<String, serde_json::Value>>,
    /// First block (default: the first the index holds).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub from: Option<u64>,
    /// Last block (default: the head).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub to: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub branch: Option<String>,
}

/// A page of events and where the next one starts (`None`: the range is done).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventPage {
    pub events: Vec<EventEntry>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next: Option<String>,
}

/// An indexed event: its block, transaction and place in the transaction's events, the
/// contract, the declared name and the arguments by their declared names.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventEntry {
    pub block_height: u64,
    pub tx_hash: Hash,
    pub tx_index: u32,
    pub event_index: u16,
    pub contract: Address,
    pub name: String,
    pub args: serde_json::Map<String, serde_json::Value>,
}

/// `estimate_gas`: what a transaction would do if sent now.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EstimateView {
    /// `success` or `failed`.
    pub status: String,
    /// What it would pay: a contract call's gas used (its fee is the limit).
    #[serde(with = "amount_string")]
    pub fee: u128,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub result: Option<QueryView>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub events: Vec<EventView>,
}

/// A declared event of a contract: `name`, `params` as `name TYPE`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContractEventView {
    pub name: String,
    pub params: Vec<String>,
}

/// Rows from a contract: `{"columns": [...], "rows": [[...]]}`; values as in [`aergo_primitives::value::json`].
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueryView {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// `get_contract`: a contract's schema, functions and their access sets, and its script.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContractView {
    pub address: Address,
    pub height: u64,
    /// blake3 of the script (the JIT cache key).
    pub code_hash: Hash,
    pub tables: Vec<ContractTableView>,
    pub functions: Vec<ContractFunctionView>,
    /// The events it declares (`CREATE EVENT`): part of its interface.
    #[serde(default)]
    pub events: Vec<ContractEventView>,
    pub script: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContractTableView {
    pub name: String,
    /// `name TYPE [NOT NULL]`.
    pub columns: Vec<String>,
    pub primary_key: Vec<String>,
    /// `name (cols)`, `UNIQUE` first when unique.
    pub indexes: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContractFunctionView {
    pub name: String,
    pub params: Vec<String>,
    pub returns: String,
    /// Rows it may read and write: `table[col = param]` (known from the call's arguments or
    /// sender) or `table (whole table)`.
    pub reads: Vec<String>,
    pub writes: Vec<String>,
    /// Whether it may move native coins out of the contract's account.
    pub moves_native: bool,
}

/// `query`: a read-only SELECT (`sql`) or a function call (`function`, `args`) on a contract at a
/// height (default: the head). A function that changes rows runs, but its changes are discarded.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueryRequest {
    pub contract: Address,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sql: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub function: Option<String>,
    #[serde(default)]
    pub args: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub height: Option<u64>,
    /// The branch to read (default `main`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub branch: Option<String>,
}

fn main_branch() -> String {
    "main".into()
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HeaderView {
    pub chain_id: String,
    /// The branch the block is on.
    #[serde(default = "main_branch")]
    pub branch: String,
    pub height: u64,
    pub prev_hash: Hash,
    pub timestamp_ms: u64,
    pub producer: Address,
    pub tx_root: Hash,
    pub state_root: Hash,
    pub receipts_root: Hash,
    pub tx_count: u32,
    /// The producer's public key (hex): with it the header can be hashed again, as a proof's
    /// verifier does (`docs/dapps.md`, "State proofs").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_key: Option<String>,
}

impl HeaderView {
    /// The header as the chain hashes it; needs `producer_key`, which must be `producer`'s key.
    pub fn block_header(&self) -> Result<aergo_primitives::types::BlockHeader, String> {
        use aergo_primitives::types::{BlockHeader, PublicKey, TxBody};
        let text = self.producer_key.as_deref().ok_or("the header has no producer_key")?;
        let key: [u8; 32] = hex::decode(text)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("producer_key {text:?} is not 32 bytes of hex"))?;
        let producer = PublicKey(key);
        if producer.address() != self.producer {
            return Err(format!("producer_key is not the key of the producer {}", self.producer));
        }
        Ok(BlockHeader {
            version: TxBody::version_for(&self.branch),
            chain_id: self.chain_id.clone(),
            branch: self.branch.clone(),
            height: self.height,
            prev_hash: self.prev_hash,
            timestamp_ms: self.timestamp_ms,
            producer,
            tx_root: self.tx_root,
            state_root: self.state_root,
            receipts_root: self.receipts_root,
        })
    }
}

/// A block's hash and header: what a proof is against, and what `aergo --json block` prints
/// (with more fields, which this ignores).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProvenBlock {
    pub hash: Hash,
    pub header: HeaderView,
}

/// One proven state entry: its state key, its value (absent: null) and the sparse Merkle proof,
/// all hex (`docs/dapps.md`, "State proofs").
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProofEntry {
    pub key: String,
    pub value: Option<String>,
    pub proof: String,
}

/// An account as a proof's value decodes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProvenAccount {
    #[serde(with = "amount_string")]
    pub balance: u128,
    pub nonce: u64,
}

/// What a proof is of.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ProofSubject {
    /// An account (`account` null when absent).
    Account { address: Address, account: Option<ProvenAccount> },
    /// A contract row by its table and primary key (`row` null when absent).
    Row {
        contract: Address,
        table: String,
        key: Vec<serde_json::Value>,
        row: Option<serde_json::Map<String, serde_json::Value>>,
    },
}

/// `get_account_proof` / `get_row_proof`: the proof document `aergo verify-proof` checks.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StateProofView {
    #[serde(flatten)]
    pub subject: ProofSubject,
    pub height: u64,
    pub block: ProvenBlock,
    pub entries: Vec<ProofEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum BlockTxs {
    Full(Vec<TxView>),
    Hashes(Vec<Hash>),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlockView {
    pub hash: Hash,
    pub height: u64,
    pub header: HeaderView,
    pub transactions: BlockTxs,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountView {
    pub address: Address,
    #[serde(with = "amount_string")]
    pub balance: u128,
    /// Committed nonce at `height`.
    pub nonce: u64,
    /// The nonce the next transaction should use: the committed one plus this sender's transactions
    /// waiting in the pool (only when reading at the head).
    pub pending_nonce: u64,
    pub height: u64,
}

/// The producer set: who produces the blocks at `height`, and the candidates at the head.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProducersView {
    pub height: u64,
    pub epoch: u64,
    pub epoch_blocks: u64,
    /// First height of the next epoch.
    pub next_epoch_height: u64,
    /// The producers of `height`, in slot order.
    pub producers: Vec<Address>,
    /// The next epoch's producers, once the state that elects them exists (else empty).
    pub next_producers: Vec<Address>,
    pub candidates: Vec<CandidateView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CandidateView {
    pub address: Address,
    pub public_key: String,
    pub p2p_address: String,
    #[serde(with = "amount_string")]
    pub votes: u128,
    pub registered_at: u64,
}

/// An account's stake and votes at the head.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StakeView {
    pub address: Address,
    #[serde(with = "amount_string")]
    pub staked: u128,
    /// Height of the last stake change; unstaking is possible from `unlocks_at`.
    pub since: u64,
    pub unlocks_at: u64,
    pub votes: Vec<Address>,
}

/// A branch's record (`docs/branches.md`), as `main`'s state at the head holds it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BranchView {
    pub name: String,
    /// The branch it was made on.
    pub parent: String,
    /// Its base: this height of the parent, whose block is `base_hash`.
    pub base_height: u64,
    pub base_hash: Option<Hash>,
    pub producers: Vec<Address>,
    pub creator: Address,
    /// The parent's height of the block holding the `create_branch` transaction.
    pub created_at: u64,
    /// Who besides the creator may merge it.
    pub mergers: Vec<Address>,
    /// Whether the block holding the record is final (from then on nodes use the branch).
    pub final_record: bool,
    /// Whether this node tracks the branch (`[branches] track`, `track_branch`).
    #[serde(default)]
    pub tracked: bool,
    /// The branch's head and last final height on this node, once it holds the branch.
    #[serde(default)]
    pub head_height: Option<u64>,
    #[serde(default)]
    pub lib_height: Option<u64>,
    /// Why this node tracks the branch but does not hold it yet (its record is not final, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// The height of this branch its last merge into its parent went up to (the next merge's
    /// base), if it was ever merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_upto: Option<u64>,
    /// A private branch's member nodes (identity keys, hex); absent for a public branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
}

/// A tag: an immutable name for a block of a branch.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TagView {
    pub name: String,
    pub branch: String,
    pub height: u64,
    pub hash: Option<Hash>,
    pub creator: Address,
    /// The branch's height of the block holding the `create_tag` transaction.
    pub created_at: u64,
}

/// One pipeline stage's counters.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StageMetrics {
    pub name: String,
    pub queue_depth: u64,
    pub queue_capacity: u64,
    pub processed_total: u64,
    /// Work refused because the stage's queue was full (`busy` answers).
    pub busy_rejections_total: u64,
    /// Time the stage's threads spent working, in milliseconds.
    pub busy_ms_total: u64,
}

/// A block as it is encoded (`get_raw_block`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RawBlockView {
    pub hash: Hash,
    pub height: u64,
    /// Hex of the block's encoding.
    pub block: String,
}

/// Gossip messages of one topic, since start.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicCounts {
    pub messages_in: u64,
    pub bytes_in: u64,
    pub messages_out: u64,
}

/// What the node's pipeline is doing (for the agent's metrics).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeMetrics {
    /// `admission` (signature checks and pool admission) and `produce` (block building, execution
    /// and commit; its queue is the pool).
    pub stages: Vec<StageMetrics>,
    pub mempool_txs: u64,
    pub mempool_bytes: u64,
    pub blocks_produced_total: u64,
    /// Slots this producer should have filled but did not (it was still busy, or production failed).
    #[serde(default)]
    pub slots_missed_total: u64,
    /// Why this producer does not produce although its slots come (`the system clock is not
    /// synchronized …`); `null` while it produces, and on a full node.
    #[serde(default)]
    pub producer_blocked: Option<String>,
    /// Slots of the best chain that hold no block (their producer was down or late), counted as this
    /// node applied blocks since it started.
    #[serde(default)]
    pub slots_skipped_total: u64,
    /// Times this node switched to another branch.
    #[serde(default)]
    pub reorgs_total: u64,
    /// Peers banned for misbehaviour since start.
    #[serde(default)]
    pub peers_banned_total: u64,
    /// Producers this node caught signing two blocks for one slot.
    #[serde(default)]
    pub equivocations_total: u64,
    /// Gossip payload bytes: sent, and received on the blocks and the transactions topics.
    #[serde(default)]
    pub gossip_bytes_out_total: u64,
    #[serde(default)]
    pub gossip_block_bytes_in_total: u64,
    #[serde(default)]
    pub gossip_tx_bytes_in_total: u64,
    /// Gossip messages per topic (every topic one came on or went out on): a private branch
    /// has no topic, so its name is never here.
    #[serde(default)]
    pub gossip_topics: std::collections::BTreeMap<String, TopicCounts>,
    /// Announcements of private branches' blocks sent to their member nodes.
    #[serde(default)]
    pub private_block_announcements_total: u64,
    /// Transactions of imported blocks whose signature check was skipped: the same bytes had
    /// passed at admission (`docs/exec.md`, "Verify once").
    #[serde(default)]
    pub signatures_skipped_total: u64,
    /// Compact blocks received on gossip (`docs/consensus.md`, "Compact blocks"), the
    /// transactions they named that the pool did not hold, fills that fell back to asking for the
    /// whole block, and the bytes fetched to fill them (transactions and whole blocks).
    #[serde(default)]
    pub compact_blocks_in_total: u64,
    #[serde(default)]
    pub compact_txs_missing_total: u64,
    #[serde(default)]
    pub compact_fallbacks_total: u64,
    #[serde(default)]
    pub compact_fill_bytes_in_total: u64,
    pub last_block_ms: u64,
    /// When this producer's next slot begins (unix ms); `null` on a full node.
    #[serde(default)]
    pub next_slot_ms: Option<u64>,
    #[serde(flatten)]
    pub state_cache: StateCacheUsage,
    #[serde(flatten)]
    pub queries: QueryUsage,
    /// Requests and calls refused for a client over its rate (`[rpc] rate_limit_per_second`).
    #[serde(default)]
    pub rpc_rate_limited_total: u64,
    /// Requests refused for a web page's origin (`[rpc] cors_origins`).
    #[serde(default)]
    pub rpc_origin_refused_total: u64,
}

/// The `query` RPC's threads: flattened into `node_metrics` and the agent's chain sample as
/// `queries_*`; absent (an older node or agent) reads as 0.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct QueryUsage {
    /// Queries run to the end (answered with rows or an error) since start.
    pub queries_run_total: u64,
    /// Queries answered busy: the queue was full, the connection over its share, or one waited
    /// longer than `[rpc] query_queue_ms`.
    pub queries_rejected_total: u64,
    /// Queries stopped at their gas (`[rpc] query_gas`) or deadline (`[rpc] query_timeout_ms`).
    pub queries_stopped_total: u64,
    pub queries_running: u64,
    pub queries_waiting: u64,
    pub query_threads: u64,
}

/// The state store's cache of recently written values, which block execution reads before
/// RocksDB. Flattened into `node_metrics` and the agent's chain sample as `state_cache_*`; absent
/// (an older node, a sample spooled by an older agent) reads as 0.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct StateCacheUsage {
    /// Entries held.
    pub state_cache_values: u64,
    /// Bytes they weigh.
    pub state_cache_bytes: u64,
    /// The most it may hold (`[storage] state_cache_mb`); 0 when the cache is off.
    pub state_cache_capacity_bytes: u64,
}

/// A repository this node hosts beside the public chain (`docs/repositories.md`), as
/// `repositories` lists it. Its methods are served at `/repo/<name>`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepositoryView {
    pub name: String,
    pub chain_id: String,
    /// `dpos` or `raft`.
    pub consensus: String,
    pub height: u64,
    /// The last final block.
    pub lib_height: u64,
    /// Connected peers of the repository's own swarm (0 without one).
    pub peers: u32,
    /// This node in the repository: `leader`, `follower`, `candidate`, `pre-candidate`, `none`
    /// (Raft); `producer` or `full` (DPoS).
    pub role: String,
    /// `ok`, `syncing`, `no quorum`, `stalled` or `stopped`.
    pub health: String,
    /// Why, when `health` is not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The repository's p2p listen addresses (none without a swarm).
    #[serde(default)]
    pub p2p_listen: Vec<String>,
    /// Connections its swarm refused because the peer is not on a private repository's
    /// allowlist, since the node started.
    #[serde(default)]
    pub peers_refused: u64,
}

/// `admin_add_repository`'s request: the repository's name, its genesis and its settings
/// (`repo.toml`), as TOML text.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AddRepository {
    pub name: String,
    pub genesis: String,
    #[serde(default)]
    pub settings: Option<String>,
}

/// A connected peer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerView {
    pub peer_id: String,
    /// The peer's address as a multiaddr.
    pub address: String,
    /// The best height the peer has announced.
    pub best_height: u64,
}

/// The node's JSON-RPC methods. Named parameters (`{"height": 5}`) and positional ones both work.
#[cfg(feature = "rpc")]
#[rpc(server, client)]
pub trait AergoApi {
    /// The head and finality of `main`, or of a branch this node holds.
    #[method(name = "chain_info", with_extensions)]
    async fn chain_info(&self, branch: Option<String>) -> RpcResult<ChainInfo>;

    #[method(name = "node_info")]
    async fn node_info(&self) -> RpcResult<NodeInfo>;

    #[method(name = "node_metrics")]
    async fn node_metrics(&self) -> RpcResult<NodeMetrics>;

    /// The peers this node is connected to (none until it joins a p2p network).
    #[method(name = "peers")]
    async fn peers(&self) -> RpcResult<Vec<PeerView>>;

    /// Submits a borsh-encoded signed transaction, hex.
    #[method(name = "send_tx", with_extensions)]
    async fn send_tx(&self, tx: String) -> RpcResult<SendTxResult>;

    /// Submits many transactions in one call (up to `[rpc] max_batch`); answers each, in order.
    /// Faster than a JSON-RPC batch of `send_tx`, whose calls the server runs one after another.
    #[method(name = "send_txs", with_extensions)]
    async fn send_txs(&self, txs: Vec<String>) -> RpcResult<Vec<SendTxOutcome>>;

    #[method(name = "get_tx", with_extensions)]
    async fn get_tx(&self, hash: String, branch: Option<String>) -> RpcResult<Option<TxView>>;

    #[method(name = "get_receipt", with_extensions)]
    async fn get_receipt(&self, hash: String, branch: Option<String>) -> RpcResult<Option<ReceiptView>>;

    /// Reads a contract at a height: a SELECT over its tables, or one of its functions.
    /// Errors: unknown contract or bad SQL → invalid params (with line and column); a height above
    /// the head → [`codes::HEIGHT_UNAVAILABLE`].
    #[method(name = "query", with_extensions)]
    async fn query(&self, request: QueryRequest) -> RpcResult<QueryView>;

    /// A contract's tables, functions (with their access sets) and script, at a height.
    #[method(name = "get_contract", with_extensions)]
    async fn get_contract(
        &self,
        address: String,
        height: Option<u64>,
        branch: Option<String>,
    ) -> RpcResult<ContractView>;

    /// A block's encoding (hex of `Block::encode`) by height (the head when absent), for tools
    /// that re-check or carry it: `aergo merge` of a private branch takes its transactions so.
    #[method(name = "get_raw_block", with_extensions)]
    async fn get_raw_block(
        &self,
        height: Option<u64>,
        branch: Option<String>,
    ) -> RpcResult<Option<RawBlockView>>;

    /// A block by height or hash (the head when both are absent).
    #[method(name = "get_block", with_extensions)]
    async fn get_block(
        &self,
        height: Option<u64>,
        hash: Option<String>,
        full: Option<bool>,
        branch: Option<String>,
    ) -> RpcResult<Option<BlockView>>;

    /// Every read takes a branch (default `main`): an unknown branch, or one this node does not
    /// track, is invalid params that says which (`docs/branches.md`).
    #[method(name = "get_account", with_extensions)]
    async fn get_account(
        &self,
        address: String,
        height: Option<u64>,
        branch: Option<String>,
    ) -> RpcResult<AccountView>;

    /// The producer set of `height` (default: the next block) and the registered candidates.
    #[method(name = "producers")]
    async fn producers(&self, height: Option<u64>) -> RpcResult<ProducersView>;

    /// An account's stake and the candidates it votes for.
    #[method(name = "get_stake")]
    async fn get_stake(&self, address: String) -> RpcResult<StakeView>;

    /// The branches made on `main`, in the order made, then those made on the branches this node
    /// holds (`docs/branches.md`).
    #[method(name = "get_branches")]
    async fn get_branches(&self) -> RpcResult<Vec<BranchView>>;

    /// One branch's record; an unknown name is invalid params.
    #[method(name = "get_branch")]
    async fn get_branch(&self, name: String) -> RpcResult<BranchView>;

    /// Makes this node hold a branch from now on (kept across restarts in the data directory's
    /// `branches/tracked`, beside `[branches] track`); answers with the branch's record. The node
    /// opens the branch once the block holding its record is final.
    #[method(name = "track_branch")]
    async fn track_branch(&self, name: String) -> RpcResult<BranchView>;

    /// The tags made on `main`, in the order made, then those made on the branches this node holds.
    #[method(name = "get_tags")]
    async fn get_tags(&self) -> RpcResult<Vec<TagView>>;

    /// What differs between two points (`docs/branches.md`, "Diff"): the accounts, contract rows
    /// and other state keys whose values differ, with the merge base; at most `limit` entries
    /// (default 1 000, at most 10 000).
    #[method(name = "diff", with_extensions)]
    async fn diff(&self, from: PointView, to: PointView, limit: Option<u32>) -> RpcResult<DiffView>;

    /// A contract's events in a range of blocks, from the event index (`docs/dapps.md`):
    /// `name` and `args` (equality on named arguments) filter them; a page of at most `limit`
    /// (default 100, at most 1 000), continued with `after` = the last page's `next`.
    #[method(name = "get_events", with_extensions)]
    async fn get_events(&self, filter: EventFilter) -> RpcResult<EventPage>;

    /// Runs a signed transaction (hex, as `send_tx` takes it; the signature is not checked) on the
    /// pending state of the chain it is for and keeps nothing: what it would do if sent now —
    /// the fee it would pay (a contract call's: the gas used), its result, its events
    /// (`docs/dapps.md`). A transaction that would not be admitted: invalid params, with why.
    #[method(name = "estimate_gas", with_extensions)]
    async fn estimate_gas(&self, tx: String) -> RpcResult<EstimateView>;

    /// An account's value at `height` (default the head) with its sparse Merkle proof against
    /// the state root of that height's block header, which the answer carries
    /// (`docs/dapps.md`, "State proofs"); an absent account is proven absent.
    #[method(name = "get_account_proof", with_extensions)]
    async fn get_account_proof(
        &self,
        address: String,
        height: Option<u64>,
        branch: Option<String>,
    ) -> RpcResult<StateProofView>;

    /// A contract row by table and primary-key values (JSON, in key order), proven as
    /// `get_account_proof` proves an account, with the contract's script proven beside it.
    #[method(name = "get_row_proof", with_extensions)]
    async fn get_row_proof(
        &self,
        contract: String,
        table: String,
        key: Vec<serde_json::Value>,
        height: Option<u64>,
        branch: Option<String>,
    ) -> RpcResult<StateProofView>;

    /// One tag; an unknown name is invalid params.
    #[method(name = "get_tag")]
    async fn get_tag(&self, name: String) -> RpcResult<TagView>;

    /// A contract's events of final blocks (WebSocket only; `docs/dapps.md`): with `from` (or
    /// `after`), those already final first, then each as its block becomes final, each once and
    /// in chain order; with `to`, it ends there. Nothing streamed is ever taken back.
    #[subscription(name = "subscribe_events", unsubscribe = "unsubscribe_events", item = EventEntry)]
    async fn subscribe_events(&self, filter: EventFilter) -> SubscriptionResult;

    /// The repositories this node hosts beside the public chain (`docs/repositories.md`); each
    /// one's methods are at `/repo/<name>`. Empty on a repository's own path; private ones only
    /// for clients of `[rpc] admin_from`.
    #[method(name = "repositories", with_extensions)]
    async fn repositories(&self) -> RpcResult<Vec<RepositoryView>>;

    /// Opens a repository on the running node and keeps it across restarts (in
    /// `data_dir/repos/hosted`); nothing else stops. Only for clients of `[rpc] admin_from`.
    #[method(name = "admin_add_repository", with_extensions)]
    async fn admin_add_repository(&self, request: AddRepository) -> RpcResult<RepositoryView>;

    /// Stops a hosted repository (after the block in hand) and forgets it; its data directory
    /// is kept unless `keep_data` is false. Only for clients of `[rpc] admin_from`.
    #[method(name = "admin_remove_repository", with_extensions)]
    async fn admin_remove_repository(&self, name: String, keep_data: Option<bool>) -> RpcResult<()>;

    /// New blocks as they are committed (WebSocket only).
    #[subscription(name = "subscribe_blocks", unsubscribe = "unsubscribe_blocks", item = BlockView)]
    async fn subscribe_blocks(&self, branch: Option<String>) -> SubscriptionResult;
}

/// A point of the chain's data: a branch at a height.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PointView {
    pub branch: String,
    pub height: u64,
}

/// An account's state on one side of a diff.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountSide {
    #[serde(with = "amount_string")]
    pub balance: u128,
    pub nonce: u64,
}

/// One key whose value differs between the two points of a diff. `side` says which side changed
/// it since the merge base: `from`, `to` or `both`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DiffEntry {
    /// An account (`null`: it does not exist on that side).
    Account { address: Address, side: String, from: Option<AccountSide>, to: Option<AccountSide> },
    /// A contract row, by table and primary-key values; each side's row as column → value.
    Row {
        contract: Address,
        table: String,
        key: Vec<serde_json::Value>,
        side: String,
        from: Option<serde_json::Map<String, serde_json::Value>>,
        to: Option<serde_json::Map<String, serde_json::Value>>,
    },
    /// A contract that exists on one side only (`deployed_in`: `from` or `to`).
    Contract { contract: Address, side: String, deployed_in: String },
    /// Another state key (staking, votes, producers, branches, tags, merges), by name.
    Other { key: String, side: String },
}

/// `diff`: what differs between two points, with their merge base (`docs/branches.md`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DiffView {
    pub from: PointView,
    pub to: PointView,
    /// Their nearest common ancestor along the chain of bases.
    pub base: PointView,
    /// In state-key order.
    pub entries: Vec<DiffEntry>,
    /// More entries differ than `limit`.
    pub truncated: bool,
}
