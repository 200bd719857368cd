//! Chain types and their canonical binary encoding.
//!
//! Everything that is hashed or signed is encoded with borsh (deterministic, length-prefixed, no maps),
//! never JSON. Each top-level object starts with a `version` byte so that the format can evolve; decoders
//! refuse versions they do not know and trailing bytes.
//!
//! - [`Address`]: 20 bytes of `blake3("aergo/address" ‖ ed25519 public key)`, shown as bech32m
//!   (`aergo1…`) so that a mistyped address fails its checksum.
//! - [`Transaction`]: a signed [`TxBody`]; its hash is the hash of the body (so a re-encoded signature
//!   cannot change a transaction's identity). A body names its branch: version 1 is a body for
//!   `main` (it does not carry the name), version 2 carries a branch's name after the chain id.
//! - [`Block`]: a [`BlockHeader`] (hash = blake3 of its encoding), the transactions and the producer's
//!   signature over the header hash.
//! - [`Receipt`]: what executing a transaction did.

mod address;
mod merkle;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use std::fmt;

pub use address::{contract_address, Address, AddressError};
pub use merkle::merkle_root;

/// `value` in borsh, in a vector of exactly its length. `borsh::to_vec` reserves 1 KiB for every
/// value, and a block's change set holds tens of thousands of small ones (an account is 24 bytes).
///
/// Writing borsh into a `Vec` fails only for a collection of more than `u32::MAX` elements, which no
/// chain object can hold (a block, a row and a transaction are bounded far below that): this feeds
/// hashes and state, so an impossible failure panics rather than hashing an empty vector.
pub fn to_vec_exact<T: BorshSerialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(borsh::object_length(value).unwrap_or(0));
    value
        .serialize(&mut out)
        .expect("borsh encodes every chain object: no collection exceeds u32::MAX elements");
    out
}

/// The prefix of every contract's keys in the chain state (AergoSQL code and rows). The state store
/// keeps the keys under it in key order, so that a contract can scan its rows.
pub const SQL_PREFIX: &[u8] = b"sql/";

/// The encoding version every object below is written with.
pub const ENCODING_VERSION: u8 = 1;
/// The branch every chain has: the one its elected producers make (`docs/branches.md`).
pub const MAIN_BRANCH: &str = "main";
/// The encoding version of a transaction body for a branch other than `main`: version 1 with the
/// branch's name after the chain id.
pub const BRANCH_TX_VERSION: u8 = 2;
/// Largest encoded transaction accepted anywhere (RPC, mempool, blocks).
pub const MAX_TX_BYTES: usize = 64 * 1024;
/// Longest chain id.
pub const MAX_CHAIN_ID_LEN: usize = 64;

/// Amounts are integers of the smallest unit. They travel as decimal strings in JSON.
pub type Amount = u128;

/// Why bytes could not be decoded into a chain object.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{what} is {len} bytes, more than the limit of {max}")]
    TooLarge { what: &'static str, len: usize, max: usize },
    #[error("{what} has encoding version {found}, this node understands version {ENCODING_VERSION}")]
    Version { what: &'static str, found: u8 },
    #[error("{what} is malformed: {source}")]
    Malformed {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("chain id is {0} bytes, more than the limit of {MAX_CHAIN_ID_LEN}")]
    ChainIdTooLong(usize),
}

/// A blake3 hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, BorshSerialize, BorshDeserialize)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub const ZERO: Hash = Hash([0; 32]);

    /// Hash of `bytes` under a domain tag, so that hashes of different kinds of object never collide.
    pub fn domain(domain: &str, bytes: &[u8]) -> Hash {
        let mut hasher = blake3::Hasher::new();
        hasher.update(domain.as_bytes());
        hasher.update(&[0]);
        hasher.update(bytes);
        Hash(*hasher.finalize().as_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Result<Hash, String> {
        let text = text.strip_prefix("0x").unwrap_or(text);
        let bytes = hex::decode(text).map_err(|e| format!("hash {text:?} is not hex: {e}"))?;
        let arr: [u8; 32] =
            bytes.try_into().map_err(|_| format!("hash {text:?} is not 32 bytes (64 hex digits)"))?;
        Ok(Hash(arr))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", &self.to_hex()[..16])
    }
}

impl std::str::FromStr for Hash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hash::from_hex(s)
    }
}

impl Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        Hash::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// An ed25519 public key (32 bytes, compressed Edwards point).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn address(&self) -> Address {
        Address::from_public_key(self)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.0))
    }
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex::encode(&self.0[..8]))
    }
}

/// What a transaction does. Tags are part of the encoding: new kinds are appended, never reordered.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Payload {
    /// Move `amount` from the sender to the recipient.
    Transfer,
    /// Lock `amount` of the sender's balance as stake (it weighs on the sender's votes).
    Stake,
    /// Return `amount` of stake to the balance, once the lock period since the last stake change is over.
    Unstake,
    /// Replace the sender's votes: its whole stake counts for each candidate listed.
    Vote { candidates: Vec<PublicKey> },
    /// Register the sender's key as a block-producer candidate reachable at `p2p_address` (a multiaddr).
    RegisterBp { p2p_address: String },
    /// Evidence that a producer signed two different blocks for one slot: it is left out of every
    /// producer set elected after this transaction.
    ReportEquivocation(Box<Equivocation>),
    /// Deploy an AergoSQL contract (`amount` goes to the contract's account). Its address is
    /// [`contract_address`] of the sender and the transaction's nonce.
    Deploy { sql: String },
    /// Call a contract's function (`amount` goes to the contract's account; `value()` in SQL).
    Call { contract: Address, function: String, args: Vec<crate::value::Value> },
    /// Make a branch of the branch this transaction is on, at its block `base_height`
    /// (`docs/branches.md`); no `producers`: the sender alone. `mergers` may merge it besides
    /// the sender.
    CreateBranch { name: String, base_height: u64, producers: Vec<PublicKey>, mergers: Vec<Address> },
    /// Name the block at `height` of the branch this transaction is on, for good.
    CreateTag { name: String, height: u64 },
    /// Bring branch `source` into the branch this transaction is on (`docs/branches.md`): its
    /// transactions after the merge base up to its final block `upto` (whose hash is
    /// `upto_hash`), by `strategy`. A merge opens the block it is in.
    Merge { source: String, strategy: MergeStrategy, upto: u64, upto_hash: Hash },
    /// Change who agrees on a chain agreed by Raft (`docs/repositories.md`, "Membership"): sent
    /// by a voter (its node key); the voter set in the state changes with the block, and the
    /// leader then moves Raft's configuration to it by joint consensus.
    RaftAdmin(RaftAdmin),
    /// Change who may read, write and take part in a private repository (`docs/repositories.md`,
    /// "Access control"): sent by an admin member.
    RepoAdmin(RepoAdmin),
    /// Make a *private* branch of the branch this transaction is on (`docs/branches.md`,
    /// "Private branches"): as `CreateBranch`, and only the nodes whose identity keys are in
    /// `members` hold its blocks.
    CreatePrivateBranch {
        name: String,
        base_height: u64,
        producers: Vec<PublicKey>,
        mergers: Vec<Address>,
        members: Vec<PublicKey>,
    },
    /// Bring the private branch `source` into the branch this transaction is on by replay: the
    /// source's transactions after the merge base up to its block `upto` travel in `carried`
    /// (the nodes of the target cannot read the branch), and run as a replay merge's do.
    MergePrivate { source: String, upto: u64, upto_hash: Hash, carried: Vec<CarriedTx> },
}

/// One transaction of a private branch carried by [`Payload::MergePrivate`]: the source's block
/// height it is in, and its encoding ([`Transaction::encode`]), decoded only when the merge runs
/// (so a transaction never nests inside another as a value).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CarriedTx {
    pub height: u64,
    pub tx: Vec<u8>,
}

/// A member's role in a private repository. Tags are part of the encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub enum MemberRole {
    /// Reads through the RPC.
    Read,
    /// Reads, and sends transactions.
    Write,
    /// Reads, writes, and changes the members and the nodes.
    Admin,
}

impl MemberRole {
    pub fn name(self) -> &'static str {
        match self {
            MemberRole::Read => "read",
            MemberRole::Write => "write",
            MemberRole::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<MemberRole> {
        [MemberRole::Read, MemberRole::Write, MemberRole::Admin].into_iter().find(|r| r.name() == s)
    }

    /// Whether a member with this role may send transactions.
    pub fn may_write(self) -> bool {
        self >= MemberRole::Write
    }
}

impl Serialize for MemberRole {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for MemberRole {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        MemberRole::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("role {text:?}: read, write or admin")))
    }
}

/// A change of a private repository's members or node allowlist. Tags are part of the encoding.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum RepoAdmin {
    /// Make `member` a member with `role` (or change its role).
    SetMember { member: Address, role: MemberRole },
    /// Take `member`'s role away.
    RemoveMember { member: Address },
    /// Let the node with identity key `node_key`, reachable at `address` (a multiaddr), connect.
    AllowNode { node_key: PublicKey, address: String },
    /// Refuse the node from now on (it is disconnected).
    DenyNode { node_key: PublicKey },
}

impl RepoAdmin {
    pub fn name(&self) -> &'static str {
        match self {
            RepoAdmin::SetMember { .. } => "set_member",
            RepoAdmin::RemoveMember { .. } => "remove_member",
            RepoAdmin::AllowNode { .. } => "allow_node",
            RepoAdmin::DenyNode { .. } => "deny_node",
        }
    }
}

/// A membership change of a Raft chain. Tags are part of the encoding.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum RaftAdmin {
    /// Make the node with identity key `node_key`, reachable at `address` (a multiaddr), a voter.
    AddVoter { node_key: PublicKey, address: String },
    /// Stop counting the node as a voter (it stops when it applies its removal).
    RemoveVoter { node_key: PublicKey },
    /// Ask the leader to hand leadership to this voter.
    TransferLeader { node_key: PublicKey },
}

impl RaftAdmin {
    pub fn name(&self) -> &'static str {
        match self {
            RaftAdmin::AddVoter { .. } => "add_voter",
            RaftAdmin::RemoveVoter { .. } => "remove_voter",
            RaftAdmin::TransferLeader { .. } => "transfer_leader",
        }
    }

    /// The voter the change is about.
    pub fn node_key(&self) -> &PublicKey {
        match self {
            RaftAdmin::AddVoter { node_key, .. }
            | RaftAdmin::RemoveVoter { node_key }
            | RaftAdmin::TransferLeader { node_key } => node_key,
        }
    }
}

/// How a merge brings a branch in (`docs/branches.md`). Tags are part of the encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum MergeStrategy {
    /// Run the source's transactions again on the target, in source order; those that no longer
    /// fit are dropped.
    Replay,
    /// Compare both sides' state changes since the merge base key by key; conflicts go to the
    /// contracts' resolvers.
    ThreeWay,
    /// A three-way merge that keeps the target's value of every conflicting key.
    Ours,
    /// A three-way merge that takes the source's value of every conflicting key.
    Theirs,
}

impl MergeStrategy {
    pub fn name(self) -> &'static str {
        match self {
            MergeStrategy::Replay => "replay",
            MergeStrategy::ThreeWay => "three-way",
            MergeStrategy::Ours => "ours",
            MergeStrategy::Theirs => "theirs",
        }
    }

    pub fn parse(s: &str) -> Option<MergeStrategy> {
        [MergeStrategy::Replay, MergeStrategy::ThreeWay, MergeStrategy::Ours, MergeStrategy::Theirs]
            .into_iter()
            .find(|m| m.name() == s)
    }
}

/// Two signed headers of one producer for one slot.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Equivocation {
    pub first: BlockHeader,
    pub first_signature: Signature,
    pub second: BlockHeader,
    pub second_signature: Signature,
}

impl Payload {
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::Transfer => "transfer",
            Payload::Stake => "stake",
            Payload::Unstake => "unstake",
            Payload::Vote { .. } => "vote",
            Payload::RegisterBp { .. } => "register_bp",
            Payload::ReportEquivocation(_) => "report_equivocation",
            Payload::Deploy { .. } => "deploy",
            Payload::Call { .. } => "call",
            Payload::CreateBranch { .. } => "create_branch",
            Payload::CreateTag { .. } => "create_tag",
            Payload::Merge { .. } => "merge",
            Payload::RaftAdmin(_) => "raft_admin",
            Payload::RepoAdmin(_) => "repo_admin",
            Payload::CreatePrivateBranch { .. } => "create_private_branch",
            Payload::MergePrivate { .. } => "merge_private",
        }
    }

    /// Whether it changes the system records (staking, voting, producers, branches and tags), not
    /// just accounts.
    pub fn is_governance(&self) -> bool {
        !matches!(self, Payload::Transfer | Payload::Deploy { .. } | Payload::Call { .. })
    }

    /// Whether it is a merge (`merge` or `merge_private`): it opens its block, and the
    /// transactions it replays follow it there.
    pub fn is_merge(&self) -> bool {
        matches!(self, Payload::Merge { .. } | Payload::MergePrivate { .. })
    }

    pub fn is_contract(&self) -> bool {
        matches!(self, Payload::Deploy { .. } | Payload::Call { .. })
    }
}

/// The signed part of a transaction.
///
/// Its encoding is borsh of the fields in order, except that `branch` is written only in a
/// version-2 body: a version-1 body is for `main`, a version-2 body for the branch it names (never
/// `main`, so that each transaction has one encoding). [`TxBody::version_for`] gives the version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxBody {
    pub version: u8,
    pub chain_id: String,
    /// The branch the transaction is for (`docs/branches.md`): it runs there and nowhere else.
    pub branch: String,
    pub nonce: u64,
    pub sender: PublicKey,
    pub recipient: Address,
    pub amount: Amount,
    pub fee: Amount,
    pub payload: Payload,
}

impl TxBody {
    /// The transaction hash: what the sender signs and what identifies the transaction.
    pub fn hash(&self) -> Hash {
        Hash::domain("aergo/tx", &to_vec_exact(self))
    }

    /// The encoding version of a body for `branch`.
    pub fn version_for(branch: &str) -> u8 {
        if branch == MAIN_BRANCH {
            ENCODING_VERSION
        } else {
            BRANCH_TX_VERSION
        }
    }
}

fn invalid_body(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why)
}

/// The branch of a versioned object (a transaction body or a block header): `main` for version 1,
/// the name that follows the chain id for version 2 (never `main`).
fn read_branch<R: std::io::Read>(what: &str, version: u8, r: &mut R) -> std::io::Result<String> {
    match version {
        ENCODING_VERSION => Ok(MAIN_BRANCH.to_string()),
        BRANCH_TX_VERSION => {
            let branch = String::deserialize_reader(r)?;
            if let Some(why) = crate::refs::name_problem(&branch, MAIN_BRANCH) {
                return Err(invalid_body(format!("a version-2 {what}'s branch: {why}")));
            }
            Ok(branch)
        }
        v => Err(invalid_body(format!("{what} version {v} is unknown"))),
    }
}

impl BorshSerialize for TxBody {
    fn serialize<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        if self.version != TxBody::version_for(&self.branch) {
            return Err(invalid_body(format!(
                "a version-{} transaction body cannot be for branch {:?}",
                self.version, self.branch
            )));
        }
        BorshSerialize::serialize(&self.version, w)?;
        BorshSerialize::serialize(&self.chain_id, w)?;
        if self.version == BRANCH_TX_VERSION {
            BorshSerialize::serialize(&self.branch, w)?;
        }
        BorshSerialize::serialize(&self.nonce, w)?;
        BorshSerialize::serialize(&self.sender, w)?;
        BorshSerialize::serialize(&self.recipient, w)?;
        BorshSerialize::serialize(&self.amount, w)?;
        BorshSerialize::serialize(&self.fee, w)?;
        BorshSerialize::serialize(&self.payload, w)
    }
}

impl BorshDeserialize for TxBody {
    fn deserialize_reader<R: std::io::Read>(r: &mut R) -> std::io::Result<Self> {
        let version = u8::deserialize_reader(r)?;
        let chain_id = String::deserialize_reader(r)?;
        let branch = read_branch("transaction body", version, r)?;
        Ok(TxBody {
            version,
            chain_id,
            branch,
            nonce: u64::deserialize_reader(r)?,
            sender: PublicKey::deserialize_reader(r)?,
            recipient: Address::deserialize_reader(r)?,
            amount: Amount::deserialize_reader(r)?,
            fee: Amount::deserialize_reader(r)?,
            payload: Payload::deserialize_reader(r)?,
        })
    }
}

/// A signed transaction.
///
/// Its hash and sender address are computed once and cached (admission computes them to verify the
/// signature; the pool, the dependency analysis and execution reuse them). The cache is not part of the
/// encoding and plays no part in equality.
#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub struct Transaction {
    pub body: TxBody,
    pub signature: Signature,
    #[borsh(skip)]
    cache: TxCache,
}

#[derive(Clone, Default)]
struct TxCache {
    hash: std::sync::OnceLock<Hash>,
    sender: std::sync::OnceLock<Address>,
}

impl fmt::Debug for TxCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("_")
    }
}

impl PartialEq for Transaction {
    fn eq(&self, other: &Self) -> bool {
        self.body == other.body && self.signature == other.signature
    }
}

impl Eq for Transaction {}

impl Transaction {
    pub fn new(body: TxBody, signature: Signature) -> Transaction {
        Transaction { body, signature, cache: TxCache::default() }
    }

    pub fn hash(&self) -> Hash {
        *self.cache.hash.get_or_init(|| self.body.hash())
    }

    pub fn sender(&self) -> Address {
        *self.cache.sender.get_or_init(|| self.body.sender.address())
    }

    /// The most the sender can lose: amount plus fee (saturating; balances are far below `u128::MAX`).
    pub fn cost(&self) -> Amount {
        self.body.amount.saturating_add(self.body.fee)
    }

    pub fn encode(&self) -> Vec<u8> {
        to_vec_exact(self)
    }

    /// Decodes a transaction, refusing oversized input, unknown versions and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Transaction, DecodeError> {
        if bytes.len() > MAX_TX_BYTES {
            return Err(DecodeError::TooLarge { what: "transaction", len: bytes.len(), max: MAX_TX_BYTES });
        }
        if let Some(&v) = bytes.first() {
            if v != ENCODING_VERSION && v != BRANCH_TX_VERSION {
                return Err(DecodeError::Version { what: "transaction", found: v });
            }
        }
        let tx: Transaction = borsh::from_slice(bytes)
            .map_err(|source| DecodeError::Malformed { what: "transaction", source })?;
        if tx.body.chain_id.len() > MAX_CHAIN_ID_LEN {
            return Err(DecodeError::ChainIdTooLong(tx.body.chain_id.len()));
        }
        Ok(tx)
    }
}

/// A block header. Its hash is the block's identity; the producer signs it.
///
/// Its encoding is borsh of the fields in order, except that `branch` is written only in a
/// version-2 header (a branch's block, `docs/branches.md`): a version-1 header is `main`'s, so
/// `main`'s blocks and hashes are what they always were. [`TxBody::version_for`] gives the version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    pub version: u8,
    pub chain_id: String,
    /// The branch the block is on.
    pub branch: String,
    pub height: u64,
    pub prev_hash: Hash,
    pub timestamp_ms: u64,
    pub producer: PublicKey,
    pub tx_root: Hash,
    pub state_root: Hash,
    pub receipts_root: Hash,
}

impl BlockHeader {
    pub fn hash(&self) -> Hash {
        Hash::domain("aergo/block", &to_vec_exact(self))
    }
}

impl BorshSerialize for BlockHeader {
    fn serialize<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        if self.version != TxBody::version_for(&self.branch) {
            return Err(invalid_body(format!(
                "a version-{} block header cannot be for branch {:?}",
                self.version, self.branch
            )));
        }
        BorshSerialize::serialize(&self.version, w)?;
        BorshSerialize::serialize(&self.chain_id, w)?;
        if self.version == BRANCH_TX_VERSION {
            BorshSerialize::serialize(&self.branch, w)?;
        }
        BorshSerialize::serialize(&self.height, w)?;
        BorshSerialize::serialize(&self.prev_hash, w)?;
        BorshSerialize::serialize(&self.timestamp_ms, w)?;
        BorshSerialize::serialize(&self.producer, w)?;
        BorshSerialize::serialize(&self.tx_root, w)?;
        BorshSerialize::serialize(&self.state_root, w)?;
        BorshSerialize::serialize(&self.receipts_root, w)
    }
}

impl BorshDeserialize for BlockHeader {
    fn deserialize_reader<R: std::io::Read>(r: &mut R) -> std::io::Result<Self> {
        let version = u8::deserialize_reader(r)?;
        let chain_id = String::deserialize_reader(r)?;
        let branch = read_branch("block header", version, r)?;
        Ok(BlockHeader {
            version,
            chain_id,
            branch,
            height: u64::deserialize_reader(r)?,
            prev_hash: Hash::deserialize_reader(r)?,
            timestamp_ms: u64::deserialize_reader(r)?,
            producer: PublicKey::deserialize_reader(r)?,
            tx_root: Hash::deserialize_reader(r)?,
            state_root: Hash::deserialize_reader(r)?,
            receipts_root: Hash::deserialize_reader(r)?,
        })
    }
}

/// A block: header, transactions in execution order, producer signature over the header hash.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Block {
    pub header: BlockHeader,
    pub transactions: Vec<Transaction>,
    pub signature: Signature,
}

impl Block {
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    pub fn encode(&self) -> Vec<u8> {
        to_vec_exact(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Block, DecodeError> {
        if let Some(&v) = bytes.first() {
            if v != ENCODING_VERSION && v != BRANCH_TX_VERSION {
                return Err(DecodeError::Version { what: "block", found: v });
            }
        }
        borsh::from_slice(bytes).map_err(|source| DecodeError::Malformed { what: "block", source })
    }

    /// The Merkle root over the transaction hashes, in block order.
    pub fn compute_tx_root(transactions: &[Transaction]) -> Hash {
        let leaves: Vec<Hash> = transactions.iter().map(Transaction::hash).collect();
        merkle_root(&leaves)
    }
}

/// How a transaction ended. A failed transaction still pays its fee and uses its nonce.
///
/// The last two variants are those of contract calls that emitted events (`docs/dapps.md`):
/// every receipt without events keeps the encoding it always had (and every block its
/// receipts root).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ReceiptStatus {
    Success,
    Failed(String),
    /// A contract call that succeeded and returned rows (a scalar function: one row, one column).
    Returned(CallResult),
    /// A contract call that succeeded and emitted events, with what it returned, if anything.
    Emitted {
        result: Option<CallResult>,
        events: Vec<Event>,
    },
    /// A contract call that failed after emitting events: they are not part of the state (never
    /// indexed) but kept, so that a wallet can show what was attempted.
    Reverted {
        error: String,
        events: Vec<Event>,
    },
}

impl ReceiptStatus {
    pub fn is_success(&self) -> bool {
        !matches!(self, ReceiptStatus::Failed(_) | ReceiptStatus::Reverted { .. })
    }

    /// Why the transaction failed.
    pub fn error(&self) -> Option<&str> {
        match self {
            ReceiptStatus::Failed(e) | ReceiptStatus::Reverted { error: e, .. } => Some(e),
            _ => None,
        }
    }

    /// What a contract function returned.
    pub fn result(&self) -> Option<&CallResult> {
        match self {
            ReceiptStatus::Returned(r) | ReceiptStatus::Emitted { result: Some(r), .. } => Some(r),
            _ => None,
        }
    }

    /// The events the call emitted (reverted ones too: see [`ReceiptStatus::is_success`]).
    pub fn events(&self) -> &[Event] {
        match self {
            ReceiptStatus::Emitted { events, .. } | ReceiptStatus::Reverted { events, .. } => events,
            _ => &[],
        }
    }

    /// The status of a call that ended as `self` and emitted `events`.
    pub fn with_events(self, events: Vec<Event>) -> ReceiptStatus {
        if events.is_empty() {
            return self;
        }
        match self {
            ReceiptStatus::Success => ReceiptStatus::Emitted { result: None, events },
            ReceiptStatus::Returned(r) => ReceiptStatus::Emitted { result: Some(r), events },
            ReceiptStatus::Failed(error) => ReceiptStatus::Reverted { error, events },
            other => other,
        }
    }
}

/// An event a contract call emitted (`EMIT name(args)`, `docs/dapps.md`): the contract, the
/// declared event's name, and its arguments in declaration order, converted to their types.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Event {
    pub contract: Address,
    pub name: String,
    pub args: Vec<crate::value::Value>,
}

/// What a contract function returned.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CallResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<crate::value::Value>>,
}

/// The result of one transaction in a block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Receipt {
    pub tx_hash: Hash,
    pub status: ReceiptStatus,
    pub fee: Amount,
}

impl Receipt {
    pub fn hash(&self) -> Hash {
        Hash::domain("aergo/receipt", &to_vec_exact(self))
    }

    pub fn compute_root(receipts: &[Receipt]) -> Hash {
        let leaves: Vec<Hash> = receipts.iter().map(Receipt::hash).collect();
        merkle_root(&leaves)
    }
}

/// Key of an account in the state: `acct/` and the address's 20 bytes.
pub fn account_key(address: &Address) -> Vec<u8> {
    let mut k = Vec::with_capacity(25);
    k.extend_from_slice(b"acct/");
    k.extend_from_slice(&address.0);
    k
}

/// An account's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Account {
    pub balance: Amount,
    pub nonce: u64,
}

#[cfg(test)]
mod tests;

/// `u128` amounts as decimal strings (numbers are accepted on input when they fit a JSON integer).
pub mod amount_string {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) => parse(&t).map_err(de::Error::custom),
            Raw::Number(n) => Ok(n as u128),
        }
    }

    /// Parses a non-negative decimal integer of the smallest unit.
    pub fn parse(text: &str) -> Result<u128, String> {
        let t = text.trim().replace('_', "");
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("amount {text:?} is not a non-negative whole number of the smallest unit"));
        }
        t.parse::<u128>().map_err(|_| format!("amount {text:?} is too large"))
    }
}
