//! Chain state in RocksDB: versioned by block height, authenticated by a Jellyfish Merkle tree.
//!
//! Column families:
//! - `jmt_nodes`: tree nodes, `borsh(NodeKey)` → `borsh(Node)`; a node key carries the version
//!   (= block height) that created it, so every past root stays readable.
//! - `jmt_values`: `key hash ‖ !height (u64 BE)` → `1 ‖ value` or `0` (deleted): a key's versions
//!   newest first. A read at height H is a `seek` to `key hash ‖ !H`: the first entry there is the
//!   newest version at or below H (MVCC snapshot reads). A forward seek costs RocksDB less than a
//!   backward one (format 1 stored `key hash ‖ height` and read with `seek_for_prev`: the
//!   execution workers' reads took 12–15 % longer); [`StateStore::open`] rewrites such a store.
//! - `blocks`: `height (BE)` → [`BlockMeta`] (header, log position); `block_hashes`: hash → height.
//! - `txs`: transaction hash → [`TxLocation`] (height, index, receipt).
//! - `meta`: the head, the genesis hash, the last irreversible block (LIB), the store's format
//!   ([`FORMAT`]; a store without one is format 1) and, for a store imported from a snapshot, its
//!   base: the height its history starts at ([`StateStore::base`]).
//! - `undo`: `height (BE)` → [`Undo`]: the keys a block above the LIB wrote, so that it can be rolled
//!   back when the node switches to another fork ([`StateStore::rollback_to`]); dropped once final.
//!   `height (BE) ‖ "o"` → the ordered keys it wrote (below).
//! - `ordered`: contract keys (under [`SQL_PREFIX`]) in key order, versioned like values:
//!   `key ‖ height (u64 BE)` → `1 ‖ value` or `0`. The tree hashes keys, so it cannot list a
//!   contract's rows in order; this family can, at any height ([`StateStore::scan_at`]). Contract
//!   keys are prefix-free, so all versions of a key sit together.
//!
//! A block is committed with one atomic, synced `WriteBatch` holding its tree nodes, values, index
//! entries, receipts and the new head: after a crash the store is at one block boundary or the next.
//!
//! A **branch's** store ([`StateStore::open_branch`], `docs/branches.md`) holds only what the branch
//! wrote, every version above its base height; everything at or below the base (values a branch
//! never wrote, tree nodes it shares, ordered rows, blocks and receipts) is read from the parent's
//! store at the base. Creating one copies nothing.
//! The tree hashes with blake3 (jmt over `Blake3`).

use super::blocklog::RecordPos;
use super::recent::RecentValues;
use super::ChangeSet;
use aergo_primitives::types::SQL_PREFIX;
use aergo_primitives::types::{Account, Address, Block, BlockHeader, Event, Hash, Receipt};
use borsh::{BorshDeserialize, BorshSerialize};
use jmt::storage::{LeafNode, Node, NodeKey, TreeReader, TreeUpdateBatch};
use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, Version};
use rocksdb::{
    ColumnFamilyDescriptor, DBRawIterator, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use std::path::Path;
use std::sync::Arc;

type Tree<'a> = JellyfishMerkleTree<'a, StateStore, Blake3>;

/// blake3 as jmt's hasher.
pub struct Blake3(blake3::Hasher);

impl jmt::SimpleHasher for Blake3 {
    fn new() -> Self {
        Blake3(blake3::Hasher::new())
    }
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    fn finalize(self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

const CF_NODES: &str = "jmt_nodes";
const CF_VALUES: &str = "jmt_values";
const CF_BLOCKS: &str = "blocks";
const CF_BLOCK_HASHES: &str = "block_hashes";
const CF_TXS: &str = "txs";
const CF_META: &str = "meta";
const CF_UNDO: &str = "undo";
const CF_ORDERED: &str = "ordered";
/// Each block's changed state keys: height → borsh `Vec<key>` (`docs/branches.md`, "Diff").
const CF_CHANGED: &str = "changed";
/// Contract events of successful calls: `<contract 20><height 8 BE><tx index 4 BE><event 2 BE>`
/// → borsh `Event` (`docs/dapps.md`, "The event index").
const CF_EVENTS: &str = "events";
/// Every column family of a store.
const CFS: [&str; 10] = [
    CF_NODES,
    CF_VALUES,
    CF_BLOCKS,
    CF_BLOCK_HASHES,
    CF_TXS,
    CF_META,
    CF_UNDO,
    CF_ORDERED,
    CF_CHANGED,
    CF_EVENTS,
];
const KEY_HEAD: &[u8] = b"head";
const KEY_LIB: &[u8] = b"lib";
const KEY_GENESIS: &[u8] = b"genesis_hash";
const KEY_FORMAT: &[u8] = b"format";
const KEY_BASE: &[u8] = b"base";
const KEY_BRANCH_BASE: &[u8] = b"branch_base";
/// The first height whose changed keys `changed` holds (a store made before the index existed
/// starts it at the height after its head then).
const KEY_CHANGED_FROM: &[u8] = b"changed_from";
/// The first height whose events `events` holds (a store made before the index existed starts
/// it at the next block).
const KEY_EVENTS_FROM: &[u8] = b"events_from";

/// Where an event is: its block, its transaction's index in the block, and its index among the
/// transaction's events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventPos {
    pub height: u64,
    pub tx: u32,
    pub event: u16,
}

fn event_key(contract: &Address, pos: EventPos) -> Vec<u8> {
    let mut k = Vec::with_capacity(34);
    k.extend_from_slice(&contract.0);
    k.extend_from_slice(&pos.height.to_be_bytes());
    k.extend_from_slice(&pos.tx.to_be_bytes());
    k.extend_from_slice(&pos.event.to_be_bytes());
    k
}

fn event_pos(key: &[u8]) -> Option<EventPos> {
    let rest = key.get(20..34)?;
    Some(EventPos {
        height: u64::from_be_bytes(rest[..8].try_into().ok()?),
        tx: u32::from_be_bytes(rest[8..12].try_into().ok()?),
        event: u16::from_be_bytes(rest[12..14].try_into().ok()?),
    })
}

/// The layout this code reads and writes: 2, value versions newest first (see the module's notes).
pub const FORMAT: u32 = 2;

pub use aergo_primitives::types::account_key;

/// State key written by every block (height and timestamp), so every height has its own tree root.
pub const HEAD_KEY: &[u8] = b"sys/head";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state database at {path}: {source}")]
    Open { path: String, source: rocksdb::Error },
    #[error("state database: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("state database holds an undecodable {what}: {reason}")]
    Decode { what: &'static str, reason: String },
    #[error("state tree: {0}")]
    Tree(String),
    #[error("height {requested} is above the chain head {head}")]
    HeightUnavailable { requested: u64, head: u64 },
    #[error(
        "history before height {base} is not on this node (it started from a snapshot at {base}); \
         height {requested} was asked for"
    )]
    BeforeBase { requested: u64, base: u64 },
    #[error("cannot roll back to height {target}: height {lib} is final")]
    BelowFinal { target: u64, lib: u64 },
    #[error("cannot roll back height {0}: its undo record is missing")]
    NoUndo(u64),
    #[error("a branch's base must be a final block: height {base} is above the last final block {lib}")]
    BaseNotFinal { base: u64, lib: u64 },
    #[error(
        "the branch store at {path} was made for a base at height {found} ({found_hash}), not {base} ({hash})"
    )]
    OtherBase { path: String, found: u64, found_hash: Hash, base: u64, hash: Hash },
    #[error("{0} is not served for a branch's store")]
    NotForBranch(&'static str),
    #[error(
        "this node's change index starts at height {starts} (the store is older than the index): \
         changes since height {after} are not all recorded"
    )]
    ChangeIndex { after: u64, starts: u64 },
    #[error("this node's event index starts at height {starts}: events below it are not indexed (asked from {from})")]
    EventIndex { from: u64, starts: u64 },
    #[error("more than {max} state keys changed in the range: ask for a narrower one")]
    TooManyChanges { max: usize },
    #[error(
        "state database at {path} has format {found}, and this node reads format {FORMAT}: it was written \
         by a newer release; run that release, or move the directory away to sync the chain again"
    )]
    Format { path: String, found: u32 },
}

/// What a block wrote, to take it back: its tree nodes, its value versions and its transactions.
#[derive(Clone, Debug, Default, BorshSerialize, BorshDeserialize)]
struct Undo {
    nodes: Vec<Vec<u8>>,
    values: Vec<[u8; 40]>,
    txs: Vec<Hash>,
}

/// The chain head as the store knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Head {
    pub height: u64,
    pub hash: Hash,
    pub pos: RecordPos,
    pub state_root: Hash,
    pub timestamp_ms: u64,
}

impl Head {
    /// The head that `block` (whose hash is `hash`, logged at `pos`) makes.
    pub fn of(block: &Block, hash: Hash, pos: RecordPos) -> Head {
        let h = &block.header;
        Head { height: h.height, hash, pos, state_root: h.state_root, timestamp_ms: h.timestamp_ms }
    }
}

/// What the index keeps per block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BlockMeta {
    pub hash: Hash,
    pub header: BlockHeader,
    pub pos: RecordPos,
    pub tx_count: u32,
}

/// Where a transaction was included, and its receipt.
///
/// Encoded as borsh of the first four fields, then, only for a transaction a merge brought in,
/// the merge transaction's hash: the entries of every other transaction (and those written before
/// merges existed) are unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxLocation {
    pub height: u64,
    pub block_hash: Hash,
    pub index: u32,
    pub receipt: Receipt,
    /// The merge transaction that replayed this one from another branch (`docs/branches.md`).
    pub merged_by: Option<Hash>,
}

impl BorshSerialize for TxLocation {
    fn serialize<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        (self.height, self.block_hash, self.index, &self.receipt).serialize(w)?;
        match &self.merged_by {
            Some(h) => h.serialize(w),
            None => Ok(()),
        }
    }
}

impl BorshDeserialize for TxLocation {
    fn deserialize_reader<R: std::io::Read>(r: &mut R) -> std::io::Result<Self> {
        let (height, block_hash, index, receipt) = <(u64, Hash, u32, Receipt)>::deserialize_reader(r)?;
        let mut rest = Vec::new();
        r.read_to_end(&mut rest)?;
        let merged_by = match rest.len() {
            0 => None,
            32 => Some(Hash(rest.try_into().expect("32 bytes"))),
            n => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{n} bytes after a transaction location (0 or 32 expected)"),
                ))
            }
        };
        Ok(TxLocation { height, block_hash, index, receipt, merged_by })
    }
}

/// A block's state changes with their tree nodes computed, ready to commit.
pub struct PreparedState {
    pub height: u64,
    pub root: Hash,
    batch: TreeUpdateBatch,
    /// The contract keys among the changes, for the ordered family.
    ordered: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// The changed keys, the head key aside, encoded as the `changed` family keeps them.
    changed: Vec<u8>,
}

/// Key-ordered `(key, value)` pairs.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Key-ordered `(key, value)` pairs where `None` is a deletion (a branch's own versions).
type Versions = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Tree leaves `(key hash, value)` in key-hash order.
pub type Leaves = Vec<([u8; 32], Vec<u8>)>;

fn tagged(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        Some(bytes) => {
            let mut v = Vec::with_capacity(bytes.len() + 1);
            v.push(1);
            v.extend_from_slice(bytes);
            v
        }
        None => vec![0],
    }
}

fn ordered_key(key: &[u8], height: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 8);
    k.extend_from_slice(key);
    k.extend_from_slice(&height.to_be_bytes());
    k
}

fn ordered_undo_key(height: u64) -> Vec<u8> {
    let mut k = height.to_be_bytes().to_vec();
    k.push(b'o');
    k
}

pub struct StateStore {
    db: DB,
    recent: RecentValues,
    /// For a branch's store: the store it was branched from, and the base height.
    parent: Option<Parent>,
    /// Whether blocks record their changed keys (always, but in `aergo-bench branch`'s
    /// comparison: [`StateStore::set_change_index`]).
    change_index: std::sync::atomic::AtomicBool,
    /// The head as last written: read when the store opens, and set after each write of it
    /// succeeds (a commit, a rollback, a branch's or an import's first head). [`StateStore::head`]
    /// is called on every read through the store's own view (two to three per admitted transfer),
    /// and was a RocksDB lookup each time. Only this store writes its database (RocksDB locks it
    /// to one process, and the head is written nowhere else).
    head: parking_lot::RwLock<Option<Head>>,
}

struct Parent {
    store: Arc<StateStore>,
    base: u64,
    /// Every key the branch has a version of (a rolled-back one may stay: a read of it only
    /// takes the longer way). A read of any other key goes straight to the parent, without a
    /// seek in the branch's own store (which cost 4 to 5 times a read on `main`).
    written: Written,
}

/// A set of key hashes in shards, each behind its own lock that reads take shared.
struct Written {
    shards: Vec<WrittenShard>,
}

type WrittenShard = parking_lot::RwLock<std::collections::HashSet<[u8; 32], ahash::RandomState>>;

impl Written {
    const SHARDS: usize = 64;

    fn new() -> Written {
        Written { shards: (0..Self::SHARDS).map(|_| Default::default()).collect() }
    }

    fn shard(&self, key_hash: &[u8; 32]) -> &WrittenShard {
        &self.shards[key_hash[0] as usize % Self::SHARDS]
    }

    fn contains(&self, key_hash: &KeyHash) -> bool {
        self.shard(&key_hash.0).read().contains(&key_hash.0)
    }

    fn insert(&self, key_hash: [u8; 32]) {
        self.shard(&key_hash).write().insert(key_hash);
    }
}

/// How full the cache of recently written values is ([`StateStore::cache_usage`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheUsage {
    pub values: u64,
    pub bytes: u64,
    pub capacity_bytes: u64,
}

/// How a [`StateStore`] is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateOptions {
    /// Bytes for the newest versions of recently written values ([`RecentValues`]); 0: none.
    pub cache_bytes: u64,
}

impl Default for StateOptions {
    fn default() -> Self {
        StateOptions { cache_bytes: 128 * 1024 * 1024 }
    }
}

fn decode<T: BorshDeserialize>(what: &'static str, bytes: &[u8]) -> Result<T, StateError> {
    borsh::from_slice(bytes).map_err(|e| StateError::Decode { what, reason: e.to_string() })
}

impl PreparedState {
    /// The keys this block changes, the head key aside (what the change index keeps for it).
    pub fn changed_keys(&self) -> Result<Vec<Vec<u8>>, StateError> {
        decode("changed keys", &self.changed)
    }
}

/// A block's changed keys as the `changed` family keeps them: borsh `Vec<Vec<u8>>` in key order,
/// without the head key (every block writes it).
fn changed_record(changes: &ChangeSet) -> Vec<u8> {
    let keys = || changes.iter().map(|(k, _)| k).filter(|k| k.as_slice() != HEAD_KEY);
    let mut out = Vec::with_capacity(4 + keys().map(|k| 4 + k.len()).sum::<usize>());
    out.extend_from_slice(&(keys().count() as u32).to_le_bytes());
    for k in keys() {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
    }
    out
}

fn value_key(key_hash: &KeyHash, version: Version) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(&key_hash.0);
    k[32..].copy_from_slice(&(!version).to_be_bytes());
    k
}

/// A value key of one format as the other: the version's bits complemented (its own inverse).
fn flip_version(key: &[u8; 40]) -> [u8; 40] {
    let mut k = *key;
    for b in &mut k[32..] {
        *b = !*b;
    }
    k
}

/// Whether a value key has the newest-first layout: a complemented height has its top bit set (a
/// height never does).
fn newest_first(key: &[u8; 40]) -> bool {
    key[32] & 0x80 != 0
}

/// The newest version at or below `max_version` of the value under `key_hash`, found with `it`.
fn value_through(
    it: &mut DBRawIterator<'_>,
    max_version: Version,
    key_hash: &KeyHash,
) -> Result<Option<Vec<u8>>, StateError> {
    Ok(version_through(it, max_version, key_hash)?.flatten())
}

/// [`value_through`], telling a deletion (`Some(None)`) from no version at all (`None`): a
/// branch's store reads on in its parent only in the second case.
fn version_through(
    it: &mut DBRawIterator<'_>,
    max_version: Version,
    key_hash: &KeyHash,
) -> Result<Option<Option<Vec<u8>>>, StateError> {
    it.seek(value_key(key_hash, max_version));
    if !it.valid() {
        it.status()?;
        return Ok(None);
    }
    match (it.key(), it.value()) {
        (Some(k), Some(v)) if k.len() == 40 && k[..32] == key_hash.0 => match v.split_first() {
            Some((1, rest)) => Ok(Some(Some(rest.to_vec()))),
            Some((0, _)) => Ok(Some(None)),
            _ => Err(StateError::Decode { what: "state value", reason: "bad tag".into() }),
        },
        _ => Ok(None),
    }
}

/// An account from its stored bytes (absent: the empty account).
pub fn decode_account(bytes: Option<Vec<u8>>) -> Result<Account, StateError> {
    match bytes {
        Some(bytes) => decode("account", &bytes),
        None => Ok(Account::default()),
    }
}

/// Values as of one height through one reused iterator ([`StateStore::reader_at`]).
pub struct StateReader<'a> {
    it: DBRawIterator<'a>,
    recent: &'a RecentValues,
    height: u64,
    /// A branch's reader: the parent's reader at the base, for the keys the branch never wrote.
    parent: Option<(Box<StateReader<'a>>, &'a Written)>,
}

impl StateReader<'_> {
    /// The value of `key` as of the reader's height, as [`StateStore::get_at`] gives it.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.get_hash(KeyHash::with::<Blake3>(key))
    }

    fn get_hash(&mut self, key_hash: KeyHash) -> Result<Option<Vec<u8>>, StateError> {
        // A key the branch never wrote is not in its cache either.
        if let Some((parent, written)) = &mut self.parent {
            if !written.contains(&key_hash) {
                return parent.get_hash(key_hash);
            }
        }
        if let Some(value) = self.recent.get(&key_hash, self.height) {
            return Ok(value);
        }
        match version_through(&mut self.it, self.height, &key_hash)? {
            Some(value) => Ok(value),
            None => match &mut self.parent {
                Some((parent, _)) => parent.get_hash(key_hash),
                None => Ok(None),
            },
        }
    }
}

impl StateStore {
    /// Opens (or creates) the store at `path` with the default [`StateOptions`].
    pub fn open(path: &Path) -> Result<StateStore, StateError> {
        StateStore::open_with(path, StateOptions::default())
    }

    pub fn open_with(path: &Path, options: StateOptions) -> Result<StateStore, StateError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_open_files(512);
        opts.set_keep_log_file_num(4);
        let cfs = CFS.into_iter().map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs)
            .map_err(|source| StateError::Open { path: path.display().to_string(), source })?;
        let store = StateStore {
            db,
            recent: RecentValues::new(options.cache_bytes),
            parent: None,
            change_index: std::sync::atomic::AtomicBool::new(true),
            head: parking_lot::RwLock::new(None),
        };
        *store.head.write() = store.read_head()?;
        store.upgrade(path)?;
        let meta_cf = store.cf(CF_META)?;
        for key in [KEY_CHANGED_FROM, KEY_EVENTS_FROM] {
            if store.db.get_cf(meta_cf, key)?.is_none() {
                let from = store.head()?.map_or(0, |h| h.height + 1);
                store.db.put_cf(meta_cf, key, from.to_be_bytes())?;
            }
        }
        Ok(store)
    }

    /// Opens (or creates) a branch's store at `path`, over `parent` at the final height `base`
    /// (`docs/branches.md`). A new store records its base, head and last final block (the base
    /// block, which stays the parent's) in one synced write; nothing of the parent is copied. An
    /// existing store must have been made for the same base block.
    pub fn open_branch(
        path: &Path,
        options: StateOptions,
        parent: Arc<StateStore>,
        base: u64,
    ) -> Result<StateStore, StateError> {
        let lib = parent.finalized()?.map_or(0, |(h, _)| h);
        let meta = parent.block_meta(base)?.ok_or(StateError::HeightUnavailable {
            requested: base,
            head: parent.head()?.map_or(0, |h| h.height),
        })?;
        // A base must never be reorganised away under the branch (the last final block only
        // rises, so a store made at a final base stays valid).
        if base > lib {
            return Err(StateError::BaseNotFinal { base, lib });
        }
        let mut store = StateStore::open_with(path, options)?;
        let meta_cf = store.cf(CF_META)?;
        match store.db.get_cf(meta_cf, KEY_BRANCH_BASE)? {
            Some(bytes) => {
                let (found, found_hash): (u64, Hash) = decode("branch base", &bytes)?;
                if (found, found_hash) != (base, meta.hash) {
                    return Err(StateError::OtherBase {
                        path: path.display().to_string(),
                        found,
                        found_hash,
                        base,
                        hash: meta.hash,
                    });
                }
            }
            None => {
                use aergo_primitives::types::to_vec_exact as to_vec;
                let head = Head {
                    height: base,
                    hash: meta.hash,
                    pos: meta.pos,
                    state_root: meta.header.state_root,
                    timestamp_ms: meta.header.timestamp_ms,
                };
                let genesis = parent.genesis_hash()?.unwrap_or(Hash::ZERO);
                let mut wb = WriteBatch::default();
                wb.put_cf(meta_cf, KEY_HEAD, to_vec(&head));
                wb.put_cf(meta_cf, KEY_LIB, to_vec(&(base, meta.hash)));
                wb.put_cf(meta_cf, KEY_GENESIS, to_vec(&genesis));
                wb.put_cf(meta_cf, KEY_BRANCH_BASE, to_vec(&(base, meta.hash)));
                store.write_synced(wb)?;
                *store.head.write() = Some(head);
            }
        }
        // The keys the branch wrote: its own family holds nothing else.
        let written = Written::new();
        let mut it = store.db.raw_iterator_cf(store.cf(CF_VALUES)?);
        it.seek_to_first();
        while let Some(k) = it.key() {
            if let Some(hash) = k.get(..32).and_then(|h| <[u8; 32]>::try_from(h).ok()) {
                written.insert(hash);
            }
            it.next();
        }
        it.status()?;
        drop(it);
        store.parent = Some(Parent { store: parent, base, written });
        Ok(store)
    }

    /// A branch's base height, and the store it reads at or below it; `None` for `main`'s store.
    pub fn branch_base(&self) -> Option<(u64, &Arc<StateStore>)> {
        self.parent.as_ref().map(|p| (p.base, &p.store))
    }

    /// Writes `wb` atomically and waits until it is on disk.
    fn write_synced(&self, wb: WriteBatch) -> Result<(), StateError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        Ok(self.db.write_opt(wb, &wo)?)
    }

    /// Brings the store to [`FORMAT`]: records it in a new store, rewrites a format-1 store's
    /// values newest first, refuses a newer format.
    fn upgrade(&self, path: &Path) -> Result<(), StateError> {
        let meta = self.cf(CF_META)?;
        let found = match self.db.get_cf(meta, KEY_FORMAT)? {
            Some(bytes) => decode::<u32>("format", &bytes)?,
            // Genesis is committed in one batch with the head: no head, nothing stored yet.
            None if self.head()?.is_none() => 0,
            None => 1,
        };
        match found {
            FORMAT => return Ok(()),
            0 => {}
            1 => {
                tracing::info!(path = %path.display(), "state database: rewriting value versions newest first (format 1 to {FORMAT})");
                let moved = self.rewrite_versions(true)?;
                tracing::info!(versions = moved, "state database: now format {FORMAT}");
            }
            found => return Err(StateError::Format { path: path.display().to_string(), found }),
        }
        let mut wb = WriteBatch::default();
        wb.put_cf(meta, KEY_FORMAT, aergo_primitives::types::to_vec_exact(&FORMAT));
        self.write_synced(wb)?;
        Ok(())
    }

    /// Rewrites every value key (and the keys in the undo records) into the newest-first layout,
    /// or back (`newest_first_wanted` false: tests make format-1 stores with it); returns how many
    /// versions moved. Interrupted, it is simply run again (keys already moved are skipped); the
    /// undo records are rewritten last, then the caller records the format with a synced write,
    /// which makes the unsynced batches before it durable too.
    fn rewrite_versions(&self, newest_first_wanted: bool) -> Result<u64, StateError> {
        const BATCH: usize = 50_000;
        let values = self.cf(CF_VALUES)?;
        let mut moved = 0u64;
        let mut wb = WriteBatch::default();
        let mut it = self.db.raw_iterator_cf(values);
        it.seek_to_first();
        while it.valid() {
            if let (Some(k), Some(v)) = (it.key(), it.value()) {
                let key: [u8; 40] = k.try_into().map_err(|_| StateError::Decode {
                    what: "value key",
                    reason: format!("{} bytes, not 40", k.len()),
                })?;
                if newest_first(&key) != newest_first_wanted {
                    wb.put_cf(values, flip_version(&key), v);
                    wb.delete_cf(values, key);
                    moved += 1;
                }
            }
            if wb.len() >= BATCH {
                self.db.write(std::mem::take(&mut wb))?;
            }
            it.next();
        }
        it.status()?;
        let undo_cf = self.cf(CF_UNDO)?;
        for item in self.db.iterator_cf(undo_cf, IteratorMode::Start) {
            let (k, v) = item?;
            // `height ‖ "o"` records list ordered keys, which have no versions to flip.
            if k.len() != 8 {
                continue;
            }
            let mut undo: Undo = decode("undo record", &v)?;
            for key in &mut undo.values {
                if newest_first(key) != newest_first_wanted {
                    *key = flip_version(key);
                }
            }
            wb.put_cf(undo_cf, k, aergo_primitives::types::to_vec_exact(&undo));
        }
        self.db.write(wb)?;
        Ok(moved)
    }

    /// Turns this store back into format 1, as an older release left it: for the upgrade's tests.
    #[cfg(any(test, feature = "test-support"))]
    pub fn downgrade_to_format_1(&self) -> Result<u64, StateError> {
        let moved = self.rewrite_versions(false)?;
        self.db.delete_cf(self.cf(CF_META)?, KEY_FORMAT)?;
        Ok(moved)
    }

    /// Records `format` as the store's, whatever it holds: for the upgrade's tests.
    #[cfg(any(test, feature = "test-support"))]
    pub fn record_format(&self, format: u32) -> Result<(), StateError> {
        Ok(self.db.put_cf(self.cf(CF_META)?, KEY_FORMAT, aergo_primitives::types::to_vec_exact(&format))?)
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StateError> {
        self.db.cf_handle(name).ok_or_else(|| StateError::Tree(format!("column family {name} is missing")))
    }

    /// Flushes every column family's memtable and compacts it fully, then returns: the state is
    /// then on disk in its most compact form and no background work is pending (benchmarks settle
    /// the store with this before measuring).
    pub fn compact(&self) -> Result<(), StateError> {
        for name in CFS {
            let cf = self.cf(name)?;
            self.db.flush_cf(cf)?;
            self.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// The head: the last block committed (or rolled back to), `None` before genesis.
    pub fn head(&self) -> Result<Option<Head>, StateError> {
        Ok(*self.head.read())
    }

    fn read_head(&self) -> Result<Option<Head>, StateError> {
        match self.db.get_cf(self.cf(CF_META)?, KEY_HEAD)? {
            Some(bytes) => Ok(Some(decode("head", &bytes)?)),
            None => Ok(None),
        }
    }

    pub fn genesis_hash(&self) -> Result<Option<Hash>, StateError> {
        match self.db.get_cf(self.cf(CF_META)?, KEY_GENESIS)? {
            Some(bytes) => Ok(Some(decode("genesis hash", &bytes)?)),
            None => Ok(None),
        }
    }

    /// The value of `key` as of block `height` (inclusive).
    pub fn get_at(&self, key: &[u8], height: u64) -> Result<Option<Vec<u8>>, StateError> {
        let key_hash = KeyHash::with::<Blake3>(key);
        self.value_at(height, key_hash)
    }

    fn value_at(&self, max_version: Version, key_hash: KeyHash) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(p) = &self.parent {
            if max_version <= p.base {
                return p.store.value_at(max_version, key_hash);
            }
        }
        // A key the branch never wrote is not in its cache either.
        if let Some(p) = self.parent.as_ref().filter(|p| !p.written.contains(&key_hash)) {
            return p.store.value_at(p.base, key_hash);
        }
        if let Some(value) = self.recent.get(&key_hash, max_version) {
            return Ok(value);
        }
        let mut it = self.db.raw_iterator_cf(self.cf(CF_VALUES)?);
        match version_through(&mut it, max_version, &key_hash)? {
            Some(value) => Ok(value),
            None => match &self.parent {
                Some(p) => p.store.value_at(p.base, key_hash),
                None => Ok(None),
            },
        }
    }

    /// Values in the cache of recently written ones ([`RecentValues`]).
    pub fn cached_values(&self) -> usize {
        self.recent.len()
    }

    /// The cache of recently written values: entries, the bytes they weigh, and its capacity.
    pub fn cache_usage(&self) -> CacheUsage {
        let (bytes, capacity) = self.recent.weight_and_capacity();
        CacheUsage { values: self.recent.len() as u64, bytes, capacity_bytes: capacity }
    }

    /// A reader of values as of `height` for a thread that makes many reads (a block's execution):
    /// one RocksDB iterator, repositioned for each read. Creating an iterator (gathering the
    /// memtables and every level's files under it) was a quarter of a single read's cost.
    ///
    /// The iterator sees the store as it was when the reader was made, which is all a reader at a
    /// committed height needs: the versions at or below it are written once and never change
    /// while they are readable. Keep a reader for one block's work, not longer: it holds on to the
    /// memtables and files that existed when it was made.
    pub fn reader_at(&self, height: u64) -> Result<StateReader<'_>, StateError> {
        let parent = match &self.parent {
            Some(p) if height <= p.base => return p.store.reader_at(height),
            Some(p) => Some((Box::new(p.store.reader_at(p.base)?), &p.written)),
            None => None,
        };
        Ok(StateReader {
            it: self.db.raw_iterator_cf(self.cf(CF_VALUES)?),
            recent: &self.recent,
            height,
            parent,
        })
    }

    /// An account at `height`; checks the height against the head.
    pub fn account_at(&self, address: &Address, height: u64) -> Result<Account, StateError> {
        let head = self.head()?.map_or(0, |h| h.height);
        if height > head {
            return Err(StateError::HeightUnavailable { requested: height, head });
        }
        decode_account(self.get_at(&account_key(address), height)?)
    }

    /// An account at the head.
    pub fn account(&self, address: &Address) -> Result<Account, StateError> {
        let head = self.head()?.map_or(0, |h| h.height);
        self.account_at(address, head)
    }

    /// Computes the tree for `changes` applied at `height` (on top of `height - 1`), without writing.
    pub fn prepare(&self, height: u64, changes: &ChangeSet) -> Result<PreparedState, StateError> {
        self.prepare_over(height, changes, &[])
    }

    /// [`StateStore::prepare`] on top of blocks prepared but not committed yet (`pending`, oldest
    /// first, the last at `height - 1`): their tree nodes and values are read from them, the rest
    /// from the store. The commit stage writes those blocks meanwhile; a block committed under
    /// the reader's feet changes nothing it reads (a node key and a value version are written
    /// once, with the same bytes).
    pub fn prepare_over(
        &self,
        height: u64,
        changes: &ChangeSet,
        pending: &[&PreparedState],
    ) -> Result<PreparedState, StateError> {
        let reader = Layered { store: self, pending };
        let tree = JellyfishMerkleTree::<'_, Layered<'_>, Blake3>::new(&reader);
        let set = changes.iter().map(|(k, v)| (KeyHash::with::<Blake3>(k), v.clone()));
        let (root, batch) = tree.put_value_set(set, height).map_err(|e| StateError::Tree(e.to_string()))?;
        let ordered = changes.with_prefix(SQL_PREFIX).map(|(k, v)| (k.clone(), v.clone())).collect();
        let changed = match self.change_index.load(std::sync::atomic::Ordering::Relaxed) {
            true => changed_record(changes),
            false => Vec::new(),
        };
        Ok(PreparedState { height, root: Hash(root.0), batch, ordered, changed })
    }

    /// Turns the change index off or on, for `aergo-bench branch` to measure what it costs a
    /// block. With it off, blocks record no changed keys: `aergo diff` and three-way merges over
    /// them would be wrong, so nothing but the benchmark may call this.
    #[cfg(feature = "bench-support")]
    pub fn set_change_index(&self, on: bool) {
        self.change_index.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The first height the change index of this store (not its parent's) holds.
    fn change_index_start(&self) -> Result<u64, StateError> {
        self.index_start(KEY_CHANGED_FROM)
    }

    /// The first height an index of this store (not its parent's) holds: `key` names it.
    fn index_start(&self, key: &[u8]) -> Result<u64, StateError> {
        let recorded = match self.db.get_cf(self.cf(CF_META)?, key)? {
            Some(b) => u64::from_be_bytes(b.as_slice().try_into().map_err(|_| StateError::Decode {
                what: "change index start",
                reason: "not 8 bytes".into(),
            })?),
            None => 0,
        };
        // A store made from a snapshot at H has no record of the changes up to H.
        Ok(recorded.max(self.base()?.map_or(0, |(h, _)| h + 1)))
    }

    /// Every state key written by the blocks `after + 1 ..= upto` of this store's chain (a
    /// branch's own blocks, and its parent's at or below the base), the head key aside; at most
    /// `max` of them. Refused when the change index does not reach back to `after + 1`.
    pub fn changed_keys(
        &self,
        after: u64,
        upto: u64,
        max: usize,
    ) -> Result<std::collections::BTreeSet<Vec<u8>>, StateError> {
        let mut out = std::collections::BTreeSet::new();
        let mut from = after + 1;
        if let Some(p) = &self.parent {
            if after < p.base {
                out = p.store.changed_keys(after, upto.min(p.base), max)?;
            }
            from = from.max(p.base + 1);
        }
        if from > upto {
            return Ok(out);
        }
        let starts = self.change_index_start()?;
        if from < starts {
            return Err(StateError::ChangeIndex { after, starts });
        }
        let mut it = self.db.raw_iterator_cf(self.cf(CF_CHANGED)?);
        it.seek(from.to_be_bytes());
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let height = k.try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX);
            if height > upto {
                break;
            }
            let keys: Vec<Vec<u8>> = decode("changed keys", v)?;
            out.extend(keys);
            if out.len() > max {
                return Err(StateError::TooManyChanges { max });
            }
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// Every contract key under `prefix` (which starts with [`SQL_PREFIX`]) as of block `height`,
    /// in key order: for each key, its newest version at or below the height, unless deleted.
    pub fn scan_at(&self, prefix: &[u8], height: u64) -> Result<Entries, StateError> {
        self.scan_ordered(prefix, None, height, usize::MAX)
    }

    /// Up to `limit` contract keys under `prefix` after the key `after` (or from the first), as of
    /// `height`, in key order: the pages of [`StateStore::scan_at`].
    pub fn scan_ordered(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        height: u64,
        limit: usize,
    ) -> Result<Entries, StateError> {
        match &self.parent {
            Some(p) if height <= p.base => p.store.scan_ordered(prefix, after, height, limit),
            Some(p) => self.scan_over_parent(p, prefix, after, height, limit),
            None => Ok(self
                .scan_versions(prefix, after, height, limit, false)?
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect()),
        }
    }

    /// A branch's ordered scan: its own versions (deletions included) merged over the parent's
    /// rows at the base, in key order, a branch version hiding the parent's. Each round reads a
    /// page of both; where one page was cut short, the round stops at its last key (the other
    /// side may hold keys beyond it that the next round reads).
    fn scan_over_parent(
        &self,
        p: &Parent,
        prefix: &[u8],
        after: Option<&[u8]>,
        height: u64,
        limit: usize,
    ) -> Result<Entries, StateError> {
        let page = limit.clamp(1, 4096);
        let mut out: Entries = Vec::new();
        let mut cursor: Option<Vec<u8>> = after.map(<[u8]>::to_vec);
        loop {
            let own = self.scan_versions(prefix, cursor.as_deref(), height, page, true)?;
            let theirs = p.store.scan_ordered(prefix, cursor.as_deref(), p.base, page)?;
            let own_cut = (own.len() == page).then(|| own[own.len() - 1].0.clone());
            let theirs_cut = (theirs.len() == page).then(|| theirs[theirs.len() - 1].0.clone());
            let bound = match (own_cut, theirs_cut) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let within = |k: &[u8]| bound.as_deref().is_none_or(|b| k <= b);
            let (mut own, mut theirs) = (own.into_iter().peekable(), theirs.into_iter().peekable());
            loop {
                use std::cmp::Ordering::{Equal, Greater, Less};
                let next_own = own.peek().map(|(k, _)| k).filter(|k| within(k));
                let next_theirs = theirs.peek().map(|(k, _)| k).filter(|k| within(k));
                let order = match (next_own, next_theirs) {
                    (None, None) => break,
                    (Some(a), Some(b)) => a.cmp(b),
                    (Some(_), None) => Less,
                    (None, Some(_)) => Greater,
                };
                if order == Equal {
                    theirs.next(); // the branch's version hides the parent's
                }
                if order != Greater {
                    if let Some((k, Some(v))) = own.next() {
                        out.push((k, v));
                    }
                } else if let Some(entry) = theirs.next() {
                    out.push(entry);
                }
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            match bound {
                Some(b) => cursor = Some(b),
                None => return Ok(out),
            }
        }
    }

    /// This store's own contract keys under `prefix` after `after`, each with its newest version at
    /// or below `height` (`None`: deleted); keys with no version at or below it are left out, and
    /// so are deleted keys unless `deleted`. At most `limit` entries.
    fn scan_versions(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        height: u64,
        limit: usize,
        deleted: bool,
    ) -> Result<Versions, StateError> {
        let mut out = Vec::new();
        let mut it = self.db.raw_iterator_cf(self.cf(CF_ORDERED)?);
        match after {
            // Contract keys are prefix-free: `after ‖ u64::MAX` is past every version of `after`
            // (no block has that height) and before the next key.
            Some(after) => it.seek(ordered_key(after, u64::MAX)),
            None => it.seek(prefix),
        }
        // The current key and its newest version at or below the height (`None`: none yet).
        type Current = Option<(Vec<u8>, Option<Option<Vec<u8>>>)>;
        let mut current: Current = None;
        let emit = |out: &mut Versions, c: Current| match c {
            Some((k, Some(Some(v)))) => out.push((k, Some(v))),
            Some((k, Some(None))) if deleted => out.push((k, None)),
            _ => {}
        };
        while it.valid() && out.len() < limit {
            let (Some(k), Some(v)) = (it.key(), it.value()) else { break };
            if !k.starts_with(prefix) {
                break;
            }
            if k.len() < 8 {
                return Err(StateError::Decode {
                    what: "ordered key",
                    reason: "shorter than a height".into(),
                });
            }
            let (key, ver) = k.split_at(k.len() - 8);
            let ver = u64::from_be_bytes(ver.try_into().unwrap_or([0; 8]));
            if current.as_ref().is_some_and(|(ck, _)| ck.as_slice() != key) {
                emit(&mut out, current.take());
            }
            if ver <= height {
                let value = match v.split_first() {
                    Some((1, rest)) => Some(rest.to_vec()),
                    Some((0, _)) => None,
                    _ => return Err(StateError::Decode { what: "ordered value", reason: "bad tag".into() }),
                };
                current = Some((key.to_vec(), Some(value)));
            } else if current.is_none() {
                current = Some((key.to_vec(), None));
            }
            it.next();
        }
        it.status()?;
        if out.len() < limit {
            emit(&mut out, current);
        }
        Ok(out)
    }

    /// Up to `limit` leaves of the state tree at `height` whose key hash is above `after` (or from
    /// the first), in key-hash order: `(key hash, value)` of every key alive at that height.
    pub fn leaves_page(
        &self,
        height: u64,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Leaves, StateError> {
        if self.parent.is_some() {
            // Its own family holds only what the branch wrote; snapshots are of `main`.
            return Err(StateError::NotForBranch("a snapshot's leaves"));
        }
        let mut out = Vec::new();
        let mut it = self.db.raw_iterator_cf(self.cf(CF_VALUES)?);
        // Versions of a key hash are newest first, `hash ‖ !version`: the smallest possible entry
        // of a hash is `hash ‖ !u64::MAX` (all zeros), the largest `hash ‖ !0` (all ones).
        match after {
            Some(after) => {
                it.seek(value_key(&KeyHash(after), 0));
                if it.valid() && it.key().is_some_and(|k| k.len() >= 32 && k[..32] == after) {
                    it.next();
                }
            }
            None => it.seek_to_first(),
        }
        while it.valid() && out.len() < limit {
            let Some(k) = it.key() else { break };
            let hash: [u8; 32] = k
                .get(..32)
                .and_then(|h| h.try_into().ok())
                .ok_or(StateError::Decode { what: "value key", reason: format!("{} bytes", k.len()) })?;
            if let Some(value) = value_through(&mut it, height, &KeyHash(hash))? {
                out.push((hash, value));
            }
            // On to the next key hash.
            it.seek(value_key(&KeyHash(hash), 0));
            if it.valid() && it.key().is_some_and(|k| k.len() >= 32 && k[..32] == hash) {
                it.next();
            }
        }
        it.status()?;
        Ok(out)
    }

    /// The proof that the leaves up to and including `rightmost` (a key hash alive at `height`)
    /// are all the tree's leaves up to it: with them, it gives `height`'s root.
    pub fn range_proof(
        &self,
        height: u64,
        rightmost: [u8; 32],
    ) -> Result<jmt::proof::SparseMerkleRangeProof<Blake3>, StateError> {
        Tree::new(self)
            .get_range_proof(KeyHash(rightmost), height)
            .map_err(|e| StateError::Tree(e.to_string()))
    }

    /// The value of `key` at `height` with the proof of it (or of its absence) against that
    /// height's state root.
    pub fn value_with_proof(
        &self,
        key: &[u8],
        height: u64,
    ) -> Result<(Option<Vec<u8>>, jmt::proof::SparseMerkleProof<Blake3>), StateError> {
        Tree::new(self)
            .get_with_proof(KeyHash::with::<Blake3>(key), height)
            .map_err(|e| StateError::Tree(e.to_string()))
    }

    /// The value of `key` at `height` and the bytes of its proof against that height's state
    /// root, in the layout `docs/dapps.md` documents ([`aergo_primitives::proof::SparseProof`]).
    pub fn proof_bytes(&self, key: &[u8], height: u64) -> Result<(Option<Vec<u8>>, Vec<u8>), StateError> {
        let (value, proof) = self.value_with_proof(key, height)?;
        let bytes = borsh::to_vec(&proof).map_err(|e| StateError::Tree(format!("encoding a proof: {e}")))?;
        Ok((value, bytes))
    }

    /// Writes tree nodes and values a snapshot restore produced (not synced:
    /// [`StateStore::install_base`] makes them durable with its synced batch).
    pub(crate) fn write_restored(&self, batch: &jmt::storage::NodeBatch) -> Result<(), StateError> {
        let mut wb = WriteBatch::default();
        let nodes = self.cf(CF_NODES)?;
        for (key, node) in batch.nodes() {
            wb.put_cf(
                nodes,
                aergo_primitives::types::to_vec_exact(key),
                aergo_primitives::types::to_vec_exact(node),
            );
        }
        let values = self.cf(CF_VALUES)?;
        for ((version, key_hash), value) in batch.values() {
            wb.put_cf(values, value_key(key_hash, *version), tagged(value.as_deref()));
        }
        Ok(self.db.write(wb)?)
    }

    /// Writes values of `keys` as of `height` without tree nodes (the election records a snapshot
    /// carries, proven against that height's root), not synced.
    pub(crate) fn write_values_at(
        &self,
        height: u64,
        entries: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), StateError> {
        let mut wb = WriteBatch::default();
        let values = self.cf(CF_VALUES)?;
        for (key, value) in entries {
            wb.put_cf(values, value_key(&KeyHash::with::<Blake3>(key), height), tagged(Some(value)));
        }
        Ok(self.db.write(wb)?)
    }

    /// Writes contract rows into the ordered family as of `height`, not synced.
    pub(crate) fn write_rows_at(&self, height: u64, rows: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StateError> {
        let mut wb = WriteBatch::default();
        let ordered = self.cf(CF_ORDERED)?;
        for (key, value) in rows {
            wb.put_cf(ordered, ordered_key(key, height), tagged(Some(value)));
        }
        Ok(self.db.write(wb)?)
    }

    /// The value under a key hash at `height`.
    pub(crate) fn value_of_hash(
        &self,
        height: u64,
        key_hash: [u8; 32],
    ) -> Result<Option<Vec<u8>>, StateError> {
        self.value_at(height, KeyHash(key_hash))
    }

    /// Makes an imported state a chain store: block `block` (at `pos` in the block log) is the
    /// head, final, and the base (history starts there), in one synced batch that also makes every
    /// earlier unsynced write of the import durable (they are in the write-ahead log before it).
    pub(crate) fn install_base(
        &self,
        block: &Block,
        pos: RecordPos,
        receipts: &[Receipt],
        genesis_hash: Hash,
    ) -> Result<Head, StateError> {
        let height = block.header.height;
        let hash = block.hash();
        let mut wb = WriteBatch::default();
        self.put_block_index(&mut wb, block, pos, receipts)?;
        let head = Head::of(block, hash, pos);
        let meta_cf = self.cf(CF_META)?;
        use aergo_primitives::types::to_vec_exact as to_vec;
        wb.put_cf(meta_cf, KEY_HEAD, to_vec(&head));
        wb.put_cf(meta_cf, KEY_LIB, to_vec(&(height, hash)));
        wb.put_cf(meta_cf, KEY_BASE, to_vec(&(height, hash)));
        wb.put_cf(meta_cf, KEY_GENESIS, to_vec(&genesis_hash));
        wb.put_cf(meta_cf, KEY_FORMAT, to_vec(&FORMAT));
        self.write_synced(wb)?;
        *self.head.write() = Some(head);
        Ok(head)
    }

    /// The height this store's history starts at and that block's hash, when it was imported from
    /// a snapshot (a store synced from genesis has none).
    pub fn base(&self) -> Result<Option<(u64, Hash)>, StateError> {
        match self.db.get_cf(self.cf(CF_META)?, KEY_BASE)? {
            Some(bytes) => Ok(Some(decode("base", &bytes)?)),
            None => Ok(None),
        }
    }

    /// Refuses a read at `height` below the store's base ([`StateError::BeforeBase`]).
    pub fn check_history(&self, height: u64) -> Result<(), StateError> {
        if let Some(p) = self.parent.as_ref().filter(|p| height <= p.base) {
            return p.store.check_history(height);
        }
        match self.base()? {
            Some((base, _)) if height < base => Err(StateError::BeforeBase { requested: height, base }),
            _ => Ok(()),
        }
    }

    /// The state root at `height` as recomputed from the stored tree.
    pub fn root_at(&self, height: u64) -> Result<Hash, StateError> {
        let tree = Tree::new(self);
        tree.get_root_hash(height).map(|r| Hash(r.0)).map_err(|e| StateError::Tree(e.to_string()))
    }

    /// Commits a block: its state, index entries and receipts, and the new head, in one synced batch.
    pub fn commit(
        &self,
        prepared: &PreparedState,
        block: &Block,
        pos: RecordPos,
        receipts: &[Receipt],
    ) -> Result<Head, StateError> {
        let height = block.header.height;
        if prepared.height != height {
            return Err(StateError::Tree(format!(
                "prepared state is for height {}, block is {height}",
                prepared.height
            )));
        }
        let hash = block.hash();
        let mut wb = WriteBatch::default();
        let mut undo = Undo::default();
        let nodes = self.cf(CF_NODES)?;
        for (key, node) in prepared.batch.node_batch.nodes() {
            let key = aergo_primitives::types::to_vec_exact(key);
            wb.put_cf(nodes, &key, aergo_primitives::types::to_vec_exact(node));
            undo.nodes.push(key);
        }
        let values = self.cf(CF_VALUES)?;
        for ((version, key_hash), value) in prepared.batch.node_batch.values() {
            undo.values.push(value_key(key_hash, *version));
            wb.put_cf(values, value_key(key_hash, *version), tagged(value.as_deref()));
        }
        let ordered = self.cf(CF_ORDERED)?;
        let mut ordered_undo: Vec<Vec<u8>> = Vec::with_capacity(prepared.ordered.len());
        for (key, value) in &prepared.ordered {
            let k = ordered_key(key, height);
            wb.put_cf(ordered, &k, tagged(value.as_deref()));
            ordered_undo.push(k);
        }
        self.put_block_index(&mut wb, block, pos, receipts)?;
        // Empty only with the change index off (a block without changes records a count of 0).
        if !prepared.changed.is_empty() {
            wb.put_cf(self.cf(CF_CHANGED)?, height.to_be_bytes(), &prepared.changed);
        }
        undo.txs.extend(block.transactions.iter().map(|tx| tx.hash()));
        if height > self.finalized()?.map_or(0, |(h, _)| h) {
            wb.put_cf(self.cf(CF_UNDO)?, height.to_be_bytes(), aergo_primitives::types::to_vec_exact(&undo));
            if !ordered_undo.is_empty() {
                wb.put_cf(
                    self.cf(CF_UNDO)?,
                    ordered_undo_key(height),
                    aergo_primitives::types::to_vec_exact(&ordered_undo),
                );
            }
        }
        let head = Head::of(block, hash, pos);
        let meta_cf = self.cf(CF_META)?;
        wb.put_cf(meta_cf, KEY_HEAD, aergo_primitives::types::to_vec_exact(&head));
        if height == 0 {
            wb.put_cf(meta_cf, KEY_GENESIS, aergo_primitives::types::to_vec_exact(&hash));
        }
        // Recorded before the write (see the `recent` module notes), forgotten if it fails.
        let values = prepared.batch.node_batch.values();
        if let Some(p) = &self.parent {
            // Before the write too: a reader must not skip the branch's store for a key in it.
            values.keys().for_each(|(_, key_hash)| p.written.insert(key_hash.0));
        }
        self.recent
            .record(values.iter().map(|((version, key_hash), value)| (*version, key_hash, value.as_deref())));
        if let Err(e) = self.write_synced(wb) {
            self.recent.forget(values.keys().map(|(_, key_hash)| key_hash));
            return Err(e);
        }
        *self.head.write() = Some(head);
        Ok(head)
    }

    /// Puts a block's index entries into `wb`: its meta by height, its height by hash, and each
    /// transaction's location with its receipt.
    fn put_block_index(
        &self,
        wb: &mut WriteBatch,
        block: &Block,
        pos: RecordPos,
        receipts: &[Receipt],
    ) -> Result<(), StateError> {
        let (height, hash) = (block.header.height, block.hash());
        let meta =
            BlockMeta { hash, header: block.header.clone(), pos, tx_count: block.transactions.len() as u32 };
        wb.put_cf(self.cf(CF_BLOCKS)?, height.to_be_bytes(), aergo_primitives::types::to_vec_exact(&meta));
        wb.put_cf(self.cf(CF_BLOCK_HASHES)?, hash.0, height.to_be_bytes());
        let txs = self.cf(CF_TXS)?;
        // A merge opens its block; the transactions of another branch after it are the ones it
        // replayed.
        let merge = block.transactions.first().filter(|tx| tx.body.payload.is_merge()).map(|tx| tx.hash());
        // The locations go into the batch in hash order: RocksDB's memtable inserts a batch's keys
        // one after the other, and a key just after the last one inserted is found from where
        // that one went (the skip list's remembered splice), where a random key is searched from
        // the top. The tree's nodes and values already come sorted (jmt's maps); these, one per
        // transaction, came in block order, random in hash (docs/exec.md). A stable sort: were a
        // hash there twice, the later location would still be the one written.
        let mut locations = Vec::with_capacity(block.transactions.len());
        for (index, (tx, receipt)) in block.transactions.iter().zip(receipts).enumerate() {
            let merged_by = merge.filter(|_| tx.body.branch != block.header.branch);
            let loc = TxLocation {
                height,
                block_hash: hash,
                index: index as u32,
                receipt: receipt.clone(),
                merged_by,
            };
            locations.push((tx.hash().0, aergo_primitives::types::to_vec_exact(&loc)));
            // A successful call's events, by contract (a failed call's are in its receipt only).
            if receipt.status.is_success() {
                for (i, e) in receipt.status.events().iter().enumerate() {
                    let pos = EventPos { height, tx: index as u32, event: i as u16 };
                    wb.put_cf(
                        self.cf(CF_EVENTS)?,
                        event_key(&e.contract, pos),
                        aergo_primitives::types::to_vec_exact(e),
                    );
                }
            }
        }
        locations.sort_by_key(|(hash, _)| *hash);
        for (hash, loc) in &locations {
            wb.put_cf(txs, hash, loc);
        }
        Ok(())
    }

    /// The events of `contract` in blocks `from ..= to` after `after` (a cursor: the last one of
    /// the previous page), in chain order, at most `limit`, those that `keep` keeps. A branch's
    /// events at or below its base are its parent's. Refused below the index's first height.
    pub fn events(
        &self,
        contract: &Address,
        (from, to): (u64, u64),
        after: Option<EventPos>,
        limit: usize,
        keep: &dyn Fn(&Event) -> bool,
    ) -> Result<Vec<(EventPos, Event)>, StateError> {
        let mut out = Vec::new();
        let mut from = from;
        if let Some(p) = &self.parent {
            if from <= p.base {
                out = p.store.events(contract, (from, to.min(p.base)), after, limit, keep)?;
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            from = from.max(p.base + 1);
        }
        if from > to {
            return Ok(out);
        }
        let starts = self.index_start(KEY_EVENTS_FROM)?;
        if from < starts {
            return Err(StateError::EventIndex { from, starts });
        }
        let start = match after.filter(|a| a.height >= from) {
            Some(a) => {
                let mut k = event_key(contract, a);
                k.push(0);
                k
            }
            None => event_key(contract, EventPos { height: from, tx: 0, event: 0 }),
        };
        let mut it = self.db.raw_iterator_cf(self.cf(CF_EVENTS)?);
        it.seek(&start);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&contract.0) {
                break;
            }
            let Some(pos) = event_pos(k) else { break };
            if pos.height > to {
                break;
            }
            let e: Event = decode("event", v)?;
            if keep(&e) {
                out.push((pos, e));
                if out.len() >= limit {
                    break;
                }
            }
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// The last irreversible block `(height, hash)`, once one above genesis was recorded.
    pub fn finalized(&self) -> Result<Option<(u64, Hash)>, StateError> {
        match self.db.get_cf(self.cf(CF_META)?, KEY_LIB)? {
            Some(bytes) => Ok(Some(decode("last irreversible block", &bytes)?)),
            None => Ok(None),
        }
    }

    /// Records that the block at `height` (on the stored chain) is final, and drops the undo records
    /// of it and of the blocks below it. Not synced: after a crash the LIB is found again from the
    /// blocks, and a lower stored LIB only allows less.
    pub fn set_finalized(&self, height: u64, hash: Hash) -> Result<(), StateError> {
        let old = self.finalized()?.map_or(0, |(h, _)| h);
        if height <= old {
            return Ok(());
        }
        let mut wb = WriteBatch::default();
        wb.put_cf(self.cf(CF_META)?, KEY_LIB, aergo_primitives::types::to_vec_exact(&(height, hash)));
        wb.delete_range_cf(self.cf(CF_UNDO)?, old.to_be_bytes(), (height + 1).to_be_bytes());
        self.db.write(wb)?;
        Ok(())
    }

    /// Takes back every block above `target`, newest first, in one synced batch: their tree nodes and
    /// value versions, index entries and receipts; the head becomes the block at `target`. Refused
    /// below the LIB. The block log is cut by the caller afterwards (a crash in between leaves log
    /// records above the head, which open replays: the store is consistent either way).
    pub fn rollback_to(&self, target: u64) -> Result<Head, StateError> {
        let head = self.head()?.ok_or(StateError::HeightUnavailable { requested: target, head: 0 })?;
        if target >= head.height {
            return Ok(head);
        }
        let lib = self.finalized()?.map_or(0, |(h, _)| h);
        if target < lib {
            return Err(StateError::BelowFinal { target, lib });
        }
        let (nodes, values, undo_cf) = (self.cf(CF_NODES)?, self.cf(CF_VALUES)?, self.cf(CF_UNDO)?);
        let (blocks, hashes, txs) = (self.cf(CF_BLOCKS)?, self.cf(CF_BLOCK_HASHES)?, self.cf(CF_TXS)?);
        let mut wb = WriteBatch::default();
        wb.delete_range_cf(self.cf(CF_CHANGED)?, (target + 1).to_be_bytes(), (head.height + 1).to_be_bytes());
        for height in (target + 1..=head.height).rev() {
            let undo: Undo = match self.db.get_cf(undo_cf, height.to_be_bytes())? {
                Some(bytes) => decode("undo record", &bytes)?,
                None => return Err(StateError::NoUndo(height)),
            };
            for key in &undo.nodes {
                wb.delete_cf(nodes, key);
            }
            for key in &undo.values {
                wb.delete_cf(values, key);
            }
            for tx in &undo.txs {
                // Its events leave the index with it.
                if let Some(bytes) = self.db.get_cf(txs, tx.0)? {
                    let loc: TxLocation = decode("transaction location", &bytes)?;
                    if loc.receipt.status.is_success() {
                        for (i, e) in loc.receipt.status.events().iter().enumerate() {
                            let pos = EventPos { height, tx: loc.index, event: i as u16 };
                            wb.delete_cf(self.cf(CF_EVENTS)?, event_key(&e.contract, pos));
                        }
                    }
                }
                wb.delete_cf(txs, tx.0);
            }
            if let Some(bytes) = self.db.get_cf(undo_cf, ordered_undo_key(height))? {
                let keys: Vec<Vec<u8>> = decode("ordered undo record", &bytes)?;
                let ordered = self.cf(CF_ORDERED)?;
                for k in keys {
                    wb.delete_cf(ordered, k);
                }
                wb.delete_cf(undo_cf, ordered_undo_key(height));
            }
            if let Some(meta) = self.block_meta(height)? {
                wb.delete_cf(hashes, meta.hash.0);
            }
            wb.delete_cf(blocks, height.to_be_bytes());
            wb.delete_cf(undo_cf, height.to_be_bytes());
        }
        let meta =
            self.block_meta(target)?.ok_or(StateError::HeightUnavailable { requested: target, head: 0 })?;
        let new_head = Head {
            height: target,
            hash: meta.hash,
            pos: meta.pos,
            state_root: meta.header.state_root,
            timestamp_ms: meta.header.timestamp_ms,
        };
        wb.put_cf(self.cf(CF_META)?, KEY_HEAD, aergo_primitives::types::to_vec_exact(&new_head));
        // Dropped whether or not the write succeeds: without the cache, reads are only slower.
        self.recent.drop_above(target);
        self.write_synced(wb)?;
        *self.head.write() = Some(new_head);
        Ok(new_head)
    }

    pub fn block_meta(&self, height: u64) -> Result<Option<BlockMeta>, StateError> {
        if let Some(p) = self.parent.as_ref().filter(|p| height <= p.base) {
            return p.store.block_meta(height);
        }
        match self.db.get_cf(self.cf(CF_BLOCKS)?, height.to_be_bytes())? {
            Some(bytes) => Ok(Some(decode("block meta", &bytes)?)),
            None => Ok(None),
        }
    }

    /// The height of the block `hash` on this store's chain (for a branch: its own blocks, and
    /// the parent's at or below the base).
    pub fn height_of(&self, hash: &Hash) -> Result<Option<u64>, StateError> {
        match self.db.get_cf(self.cf(CF_BLOCK_HASHES)?, hash.0)? {
            Some(bytes) => {
                let arr: [u8; 8] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| StateError::Decode { what: "block height", reason: "not 8 bytes".into() })?;
                Ok(Some(u64::from_be_bytes(arr)))
            }
            None => match &self.parent {
                Some(p) => Ok(p.store.height_of(hash)?.filter(|h| *h <= p.base)),
                None => Ok(None),
            },
        }
    }

    /// Where a transaction is on this store's chain, with its receipt (for a branch, as
    /// [`StateStore::height_of`]).
    pub fn tx_location(&self, hash: &Hash) -> Result<Option<TxLocation>, StateError> {
        match self.db.get_cf(self.cf(CF_TXS)?, hash.0)? {
            Some(bytes) => Ok(Some(decode("transaction location", &bytes)?)),
            None => match &self.parent {
                Some(p) => Ok(p.store.tx_location(hash)?.filter(|l| l.height <= p.base)),
                None => Ok(None),
            },
        }
    }

    /// Every block's index entry from `from` on, in height order.
    pub fn block_metas_from(&self, from: u64) -> Result<Vec<BlockMeta>, StateError> {
        let mut out = Vec::new();
        let mut from = from;
        if let Some(p) = self.parent.as_ref().filter(|p| from <= p.base) {
            out.extend(p.store.block_metas_from(from)?.into_iter().take_while(|m| m.header.height <= p.base));
            from = p.base + 1;
        }
        let start = from.to_be_bytes();
        let it = self.db.iterator_cf(self.cf(CF_BLOCKS)?, IteratorMode::From(&start, Direction::Forward));
        for item in it {
            let (_, v) = item?;
            out.push(decode("block meta", &v)?);
        }
        Ok(out)
    }
}

/// The root of the tree that `changes` make as the first version (0) of an empty tree: what a
/// genesis block's state root is, computed without a store.
pub fn first_root(changes: &ChangeSet) -> Result<Hash, StateError> {
    struct Empty;
    impl TreeReader for Empty {
        fn get_node_option(&self, _: &NodeKey) -> anyhow::Result<Option<Node>> {
            Ok(None)
        }
        fn get_value_option(&self, _: Version, _: KeyHash) -> anyhow::Result<Option<OwnedValue>> {
            Ok(None)
        }
        fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
            Ok(None)
        }
    }
    let tree = JellyfishMerkleTree::<'_, Empty, Blake3>::new(&Empty);
    let set = changes.iter().map(|(k, v)| (KeyHash::with::<Blake3>(k), v.clone()));
    let (root, _) = tree.put_value_set(set, 0).map_err(|e| StateError::Tree(e.to_string()))?;
    Ok(Hash(root.0))
}

/// The store seen through blocks prepared on top of it and not committed yet (newest last).
struct Layered<'a> {
    store: &'a StateStore,
    pending: &'a [&'a PreparedState],
}

impl TreeReader for Layered<'_> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        for p in self.pending.iter().rev() {
            if let Some(node) = p.batch.node_batch.nodes().get(node_key) {
                return Ok(Some(node.clone()));
            }
        }
        self.store.get_node_option(node_key)
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        for p in self.pending.iter().rev().filter(|p| p.height <= max_version) {
            if let Some(v) = p.batch.node_batch.values().get(&(p.height, key_hash)) {
                return Ok(v.clone());
            }
        }
        self.store.get_value_option(max_version, key_hash)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        self.store.get_rightmost_leaf()
    }
}

impl TreeReader for StateStore {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        // A branch shares every node its parent made at or below the base.
        if let Some(p) = self.parent.as_ref().filter(|p| node_key.version() <= p.base) {
            return p.store.get_node_option(node_key);
        }
        let key = borsh::to_vec(node_key)?;
        match self.db.get_cf(self.cf(CF_NODES)?, key)? {
            Some(bytes) => Ok(Some(borsh::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(self.value_at(max_version, key_hash)?)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        // Only jmt's state-sync restore asks for this, and the node never restores a tree that way.
        anyhow::bail!("the rightmost-leaf lookup (tree restore) is not supported by this store")
    }
}
