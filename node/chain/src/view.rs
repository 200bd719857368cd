//! The narrow handles the node's parts get instead of one shared struct of everything:
//!
//! - [`ChainView`]: what the chain thread (`aergo_consensus::Driver`, which owns the
//!   [`crate::Chain`]) publishes and the RPC server and the network read: the chain's
//!   identity, the store and the block log to read state and blocks from, the head, the blocks of
//!   other branches, finality figures, the schedule and the stage counters. Only the chain thread
//!   writes its locks; readers never block it for longer than a copy.
//! - [`PoolHandle`]: the way into the pool (the admission stage, then gossip to the producers) and
//!   the pool itself for the producer's selection.
//! - [`NodeFacts`]: what `node_info` says about this node, fixed at start.

use crate::schedule::Schedule;
use aergo_config::genesis::Genesis;
use aergo_mempool::admission::{Admission, StageStats};
use aergo_mempool::Mempool;
use aergo_primitives::types::{Address, Block, Hash, PublicKey};
use aergo_storage::{Head, LogReader, StateStore};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

/// Most gossiped blocks waiting for the chain thread (see [`ChainView::import`]).
pub const IMPORT_QUEUE: u64 = 256;

/// The chain as readers see it. Written by the chain thread only.
pub struct ChainView {
    pub chain_id: String,
    pub genesis: Genesis,
    pub genesis_hash: Hash,
    pub store: Arc<StateStore>,
    pub reader: LogReader,
    head: RwLock<Head>,
    /// Blocks above the LIB that are not on the stored chain (other branches), by hash.
    pub side: RwLock<HashMap<Hash, Arc<Block>>>,
    /// Finality, sync and fork figures from the chain thread.
    pub consensus: RwLock<ConsensusInfo>,
    /// The slot clock and the producer sets (shares its election cache with the chain's).
    pub schedule: Schedule,
    /// New best blocks, for `subscribe_blocks`.
    pub blocks: tokio::sync::broadcast::Sender<Arc<Block>>,
    /// Verify / execute / commit counters of the chain thread.
    pub stage_times: Arc<crate::StageTimes>,
    /// Block production counters.
    pub production: ProductionStats,
    /// The import stage's queue: gossiped blocks handed to the chain thread and not yet handled.
    /// Bounded at [`IMPORT_QUEUE`]: past it the net ignores new gossip blocks (not forwarded, the
    /// peer not penalized; sync fetches what was missed) instead of letting memory grow.
    pub import: Arc<StageStats>,
    /// This node's producer key, which peers are told in [`ChainView::status`].
    pub producer_key: Option<PublicKey>,
    /// The height this node's history starts at: 0, or the height of the snapshot it started from.
    pub base_height: u64,
    /// `main`, or the branch this is the view of.
    pub branch: String,
    /// A branch's base height and its parent's view, which holds the blocks at or below the base.
    pub parent: Option<(u64, Arc<ChainView>)>,
}

impl ChainView {
    /// A view of `chain` as it is now.
    pub fn of(
        chain: &crate::Chain,
        producer_key: Option<PublicKey>,
    ) -> Result<ChainView, aergo_storage::StateError> {
        let (blocks, _) = tokio::sync::broadcast::channel(256);
        Ok(ChainView {
            chain_id: chain.genesis().chain_id.clone(),
            genesis: chain.genesis().clone(),
            genesis_hash: chain.store().genesis_hash()?.unwrap_or(Hash::ZERO),
            store: chain.store(),
            reader: chain.log_reader(),
            head: RwLock::new(chain.head()),
            side: RwLock::new(HashMap::new()),
            consensus: RwLock::new(ConsensusInfo::default()),
            schedule: chain.schedule().clone(),
            blocks,
            stage_times: chain.stage_times(),
            production: ProductionStats::default(),
            import: Arc::default(),
            producer_key,
            base_height: chain.store().base()?.map_or(0, |(h, _)| h),
            branch: chain.branch().to_string(),
            parent: None,
        })
    }

    /// A view of a branch's chain, whose blocks at or below `base` are `parent`'s.
    pub fn of_branch(
        chain: &crate::Chain,
        producer_key: Option<PublicKey>,
        base: u64,
        parent: Arc<ChainView>,
    ) -> Result<ChainView, aergo_storage::StateError> {
        let mut view = ChainView::of(chain, producer_key)?;
        view.base_height = parent.base_height;
        view.parent = Some((base, parent));
        Ok(view)
    }

    /// A committed block of this chain by height (a branch's blocks at or below its base are its
    /// parent's).
    pub fn read_block(&self, height: u64) -> Result<Option<Block>, crate::ChainError> {
        match &self.parent {
            Some((base, parent)) if height <= *base => parent.read_block(height),
            _ => crate::read_block(&self.store, &self.reader, height),
        }
    }

    /// Refuses a height below [`ChainView::base_height`] (an error that says why).
    pub fn check_history(&self, height: u64) -> Result<(), aergo_storage::StateError> {
        if height < self.base_height {
            return Err(aergo_storage::StateError::BeforeBase { requested: height, base: self.base_height });
        }
        Ok(())
    }

    pub fn head(&self) -> Head {
        *self.head.read()
    }

    pub fn set_head(&self, head: Head) {
        *self.head.write() = head;
    }

    /// What this node tells peers about its chain.
    pub fn status(&self) -> Status {
        let head = self.head();
        let info = self.consensus.read();
        Status {
            genesis: self.genesis_hash,
            height: head.height,
            hash: head.hash,
            lib_height: info.lib_height,
            lib_hash: info.lib_hash,
            producer: self.producer_key.map(|k| hex::encode(k.0)),
        }
    }

    /// A block of another branch that this node holds.
    pub fn side_block(&self, hash: &Hash) -> Option<Block> {
        self.side.read().get(hash).map(|b| (**b).clone())
    }
}

/// What the chain thread tells readers about consensus.
#[derive(Clone, Debug, Default)]
pub struct ConsensusInfo {
    pub lib_height: u64,
    pub lib_hash: Hash,
    pub syncing: bool,
    pub best_known_height: u64,
    /// Slots of the best chain that have no block, since this node started.
    pub skipped_slots: u64,
    /// Fork switches since this node started.
    pub reorgs: u64,
    /// Producers this node caught signing two blocks for one slot.
    pub equivocations: u64,
    /// This node's Raft member (a chain agreed by Raft).
    pub raft: Option<aergo_api::RaftView>,
}

/// What a node tells its peers about its chain (the p2p protocol's type).
pub use aergo_protocol::Status;

/// Counters of the block-production stage.
#[derive(Debug, Default)]
pub struct ProductionStats {
    pub blocks: AtomicU64,
    pub txs: AtomicU64,
    pub busy_ns: AtomicU64,
    pub last_block_ms: AtomicU64,
    /// Slots that passed while the producer was busy with an earlier block, or whose block failed.
    pub missed_slots: AtomicU64,
    /// Start of the next slot this producer will fill (unix ms); 0 before the loop starts.
    pub next_slot_ms: AtomicU64,
    /// Why this producer does not produce although it could (its clock is not synchronized, its
    /// key signs elsewhere); `None` while it produces.
    pub blocked: parking_lot::RwLock<Option<String>>,
}

/// The way into the pool.
pub struct PoolHandle {
    pub mempool: Arc<Mutex<Mempool>>,
    /// Signature checks on a thread pool, then admission to the pool.
    pub admission: Admission,
    /// Most transactions the pool holds.
    pub capacity: usize,
    /// Hands an admitted transaction's bytes to the p2p layer; `None` without a network.
    gossip: Option<Gossip>,
}

/// Publishes a transaction's bytes to the other producers.
pub type Gossip = Box<dyn Fn(Vec<u8>) + Send + Sync>;

impl PoolHandle {
    pub fn new(
        mempool: Arc<Mutex<Mempool>>,
        admission: Admission,
        capacity: usize,
        gossip: Option<Gossip>,
    ) -> PoolHandle {
        PoolHandle { mempool, admission, capacity, gossip }
    }

    /// Hands a transaction that this node admitted to the p2p layer, for the other producers.
    pub fn gossip_tx(&self, bytes: Vec<u8>) {
        if let Some(gossip) = &self.gossip {
            gossip(bytes);
        }
    }
}

/// The branches this node tracks and holds besides `main` (`docs/branches.md`), by name: what
/// the RPC reads a branch through. The node opens a tracked branch once the block holding its
/// record is final, and says meanwhile why it waits.
#[derive(Default)]
pub struct Branches {
    held: RwLock<std::collections::BTreeMap<String, Arc<BranchHandle>>>,
    /// Tracked branches (`[branches] track` and `track_branch`), with why each is not held yet.
    tracked: RwLock<std::collections::BTreeMap<String, Option<String>>>,
    /// Where `track_branch` keeps its names across restarts (`<data_dir>/branches/tracked`).
    file: Option<PathBuf>,
}

/// One held branch: its view and its pool.
pub struct BranchHandle {
    pub view: Arc<ChainView>,
    pub pool: Arc<PoolHandle>,
    /// Whether this node produces the branch's blocks (its producer key is in the branch's set).
    pub producing: bool,
    /// A private branch's readers (its creator and mergers): the RPC serves its reads only to a
    /// request one of them signed. `None`: a public branch, read by anyone.
    pub readers: Option<Vec<aergo_primitives::types::Address>>,
}

/// The file `track_branch` keeps its names in, one per line.
pub const TRACKED_FILE: &str = "branches/tracked";

/// The names in the tracked-branches file (none when it does not exist).
fn read_tracked(file: &std::path::Path) -> std::io::Result<Vec<String>> {
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

impl Branches {
    /// The tracked branches: those of the config and those `track_branch` kept in
    /// `<data_dir>/branches/tracked`. A name there that breaks the naming rule is an error.
    pub fn load(data_dir: &std::path::Path, configured: &[String]) -> Result<Branches, String> {
        let file = data_dir.join(TRACKED_FILE);
        let kept = read_tracked(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut tracked = std::collections::BTreeMap::new();
        for name in configured.iter().chain(&kept) {
            if let Some(why) =
                aergo_primitives::refs::name_problem(name, aergo_primitives::types::MAIN_BRANCH)
            {
                return Err(format!("tracked branch {name:?} ({}): {why}", file.display()));
            }
            tracked.insert(name.clone(), Some("opening".to_string()));
        }
        Ok(Branches { held: RwLock::default(), tracked: RwLock::new(tracked), file: Some(file) })
    }

    /// Tracks `name` from now on, kept across restarts (written before it is answered).
    pub fn track(&self, name: &str) -> std::io::Result<()> {
        let mut tracked = self.tracked.write();
        if tracked.contains_key(name) {
            return Ok(());
        }
        if let Some(file) = &self.file {
            let mut kept = read_tracked(file)?;
            kept.push(name.to_string());
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            aergo_primitives::file::write_atomic_mode(
                file,
                format!("{}\n", kept.join("\n")).as_bytes(),
                0o644,
            )?;
        }
        tracked.insert(name.to_string(), Some("opening".to_string()));
        Ok(())
    }

    /// Whether this node tracks `name`, and why it does not hold it yet (`None`: held).
    pub fn tracking(&self, name: &str) -> Option<Option<String>> {
        self.tracked.read().get(name).cloned()
    }

    /// The tracked names, in order.
    pub fn tracked(&self) -> Vec<String> {
        self.tracked.read().keys().cloned().collect()
    }

    /// Says why a tracked branch is not held (`None` once it is).
    pub fn set_waiting(&self, name: &str, why: Option<String>) {
        if let Some(w) = self.tracked.write().get_mut(name) {
            *w = why;
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<BranchHandle>> {
        self.held.read().get(name).cloned()
    }

    pub fn insert(&self, name: String, handle: Arc<BranchHandle>) {
        self.held.write().insert(name, handle);
    }

    pub fn remove(&self, name: &str) -> Option<Arc<BranchHandle>> {
        self.held.write().remove(name)
    }

    /// The held branches' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.held.read().keys().cloned().collect()
    }
}

/// `main` and the branches a node holds, as the sources its chains read merges from.
pub struct HeldBranches {
    pub main: Arc<ChainView>,
    pub branches: Arc<Branches>,
}

impl crate::MergeSources for HeldBranches {
    fn transactions(
        &self,
        source: &str,
        after: u64,
        upto: u64,
        upto_hash: &Hash,
    ) -> Result<Vec<(u64, aergo_primitives::types::Transaction)>, crate::SourceError> {
        let view = self.final_view(source, upto)?;
        crate::source_transactions(source, (after, upto, upto_hash), |h| view.read_block(h))
    }

    fn state(
        &self,
        source: &str,
        upto: u64,
        upto_hash: &Hash,
    ) -> Result<Arc<StateStore>, crate::SourceError> {
        let view = self.final_view(source, upto)?;
        crate::source_state(source, view.store.clone(), upto, upto_hash)
    }
}

impl HeldBranches {
    /// The view of `source` (main or a held branch) if its block `upto` is final here.
    fn final_view(&self, source: &str, upto: u64) -> Result<Arc<ChainView>, crate::SourceError> {
        use crate::SourceError::Unavailable;
        let view = if source == aergo_primitives::types::MAIN_BRANCH {
            self.main.clone()
        } else {
            self.branches.get(source).map(|h| h.view.clone()).ok_or_else(|| {
                Unavailable(format!(
                    "this node does not hold branch {source:?} (aergo branch track {source})"
                ))
            })?
        };
        let lib = view.consensus.read().lib_height;
        if upto > lib {
            return Err(Unavailable(format!(
                "block {upto} of {source:?} is not final on this node (its last final block is {lib})"
            )));
        }
        Ok(view)
    }
}

/// What `node_info` says about this node.
pub struct NodeFacts {
    pub producer: Option<Address>,
    pub data_dir: PathBuf,
    pub started: Instant,
    pub io_uring: bool,
    /// Cores the execution workers are pinned to.
    pub exec_cores: Vec<usize>,
    /// Public half of the node's identity key.
    pub node_key: PublicKey,
    /// The libp2p peer id (from the identity key), when the node is on a network.
    pub peer_id: Option<String>,
}
