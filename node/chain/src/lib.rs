//! The chain: the block log and the state store kept in step, the slot schedule ([`schedule`]) that
//! says who produces which block, and the read view ([`view`]) the chain thread publishes.
//!
//! This crate owns the order in which a block becomes durable. It never speaks to peers, never
//! chooses between forks and never decides when to produce: that is consensus (`aergo-consensus`),
//! which owns the [`Chain`] and calls it.
//!
//! Commit order for a block: execute → compute the state tree → append the block to the log (fsynced)
//! → one synced RocksDB batch with state, index, receipts and head. A crash between the two leaves a
//! block in the log that the store does not have; [`Chain::open`] replays exactly those blocks (the
//! store's head says where to start, so nothing is applied twice). A torn record at the log's end is cut
//! off; damage elsewhere stops the node with the file and offset.
//!
//! A run of blocks (sync, recovery, a replay) goes through two stages with a bounded queue
//! between them ([`Chain::import_run`]): the chain thread verifies and executes block N+1 while the
//! commit thread writes block N. Block N+1 executes on block N's changes held in memory over the
//! store at the last committed height ([`aergo_exec::StateWithPending`]), and its state tree is
//! computed over N's prepared tree nodes ([`StateStore::prepare_over`]). A block is reported as
//! committed only once both its log record and its state batch are synced, as on the one-block path.
//!
//! ```text
//!  blocks ─► verify + execute + tree (chain thread) ─► [commit queue, 2] ─► log append + state batch
//!                  ▲ reads: store at the durable height + the changes of blocks in the queue   (aergo-commit)
//!                  └──────────────────────────── confirmations (durable head) ◄─────────────────┘
//! ```

pub mod schedule;
pub mod snapshot;
pub mod view;

use crate::schedule::Schedule;
use aergo_config::genesis::Genesis;
use aergo_exec::parallel::ParallelExecutor;
use aergo_exec::{BlockContext, ExecError, ExecOutput, Mode};
use aergo_primitives::crypto::{self, Keypair};
use aergo_primitives::types::{
    Account, Address, Block, BlockHeader, Hash, Receipt, Signature, Transaction, ENCODING_VERSION,
};
use aergo_storage::blocklog::{Committed, Recovery};
use aergo_storage::state::account_key;
use aergo_storage::{BlockLog, Head, LogError, LogOptions, LogReader, StateError, StateOptions, StateStore};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(
        "data directory belongs to another chain (genesis {stored}, the genesis file gives {given}); \
         use a fresh --data-dir"
    )]
    GenesisMismatch { stored: Hash, given: Hash },
    #[error("block at height {height} is invalid: {reason}")]
    InvalidBlock { height: u64, reason: String },
    #[error("block record at height {height} cannot be decoded: {reason}")]
    Decode { height: u64, reason: String },
    #[error("commit stage: {0}")]
    CommitStage(String),
    #[error(transparent)]
    Schedule(crate::schedule::ScheduleError),
    #[error(transparent)]
    Snapshot(#[from] aergo_storage::snapshot::SnapshotError),
    /// A merge whose source this node cannot read now (it does not hold the branch, or the
    /// merged block is not final here yet): the block is not judged, it waits.
    #[error("merge source unavailable: {0}")]
    MergeUnavailable(String),
}

impl ChainError {
    /// Whether the block was not judged: this node cannot check it now (a merge whose source it
    /// does not hold), which is no fault of the block or of the peer that sent it.
    pub fn waits(&self) -> bool {
        matches!(self, ChainError::MergeUnavailable(_))
    }
}

/// Where a chain reads the source branch of a merge (`docs/branches.md`): the node gives the
/// chains the branches it holds ([`view::HeldBranches`]).
pub trait MergeSources: Send + Sync {
    /// The transactions of branch `source` in its blocks `after + 1 ..= upto`, in order, each
    /// with its block's height, once its block `upto` is final here; that block must be
    /// `upto_hash`.
    fn transactions(
        &self,
        source: &str,
        after: u64,
        upto: u64,
        upto_hash: &Hash,
    ) -> Result<Vec<(u64, Transaction)>, SourceError>;

    /// Branch `source`'s store, once its block `upto` is final here and is `upto_hash` (what a
    /// three-way merge compares).
    fn state(&self, source: &str, upto: u64, upto_hash: &Hash) -> Result<Arc<StateStore>, SourceError>;
}

/// Branch `source`'s `store` if its block `upto` is `upto_hash`: what a [`MergeSources::state`]
/// gives once it knows the block is final.
pub fn source_state(
    source: &str,
    store: Arc<StateStore>,
    upto: u64,
    upto_hash: &Hash,
) -> Result<Arc<StateStore>, SourceError> {
    let meta = store
        .block_meta(upto)
        .map_err(|e| SourceError::Unavailable(format!("block {upto} of {source:?}: {e}")))?
        .ok_or_else(|| SourceError::Unavailable(format!("block {upto} of {source:?} is not on this node")))?;
    if meta.hash != *upto_hash {
        return Err(SourceError::Refused(format!(
            "block {upto} of {source:?} is {}, the merge names {upto_hash}",
            meta.hash
        )));
    }
    Ok(store)
}

/// The transactions of `source`'s blocks `after + 1 ..= upto` through `read` (a block by
/// height), checking that block `upto` is `upto_hash`: what a [`MergeSources`] gives once it
/// knows the blocks are there and final.
pub fn source_transactions(
    source: &str,
    (after, upto, upto_hash): (u64, u64, &Hash),
    read: impl Fn(u64) -> Result<Option<Block>, ChainError>,
) -> Result<Vec<(u64, Transaction)>, SourceError> {
    let mut out = Vec::new();
    for height in after + 1..=upto {
        let block = read(height)
            .map_err(|e| SourceError::Unavailable(format!("block {height} of {source:?}: {e}")))?
            .ok_or_else(|| {
                SourceError::Unavailable(format!("block {height} of {source:?} is not on this node"))
            })?;
        if height == upto && block.hash() != *upto_hash {
            return Err(SourceError::Refused(format!(
                "block {upto} of {source:?} is {}, the merge names {upto_hash}",
                block.hash()
            )));
        }
        out.extend(block.transactions.into_iter().map(|tx| (height, tx)));
    }
    Ok(out)
}

/// Why [`MergeSources::transactions`] gives no transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// The merge cannot be what it says (its `upto` block is not the source's block of that
    /// height): the merge fails, on every node alike.
    Refused(String),
    /// This node cannot read them now: the merge waits.
    Unavailable(String),
}

fn is_merge(tx: &Transaction) -> bool {
    tx.body.payload.is_merge()
}

/// Time and work per stage of block processing, since the chain was opened: signature checks of
/// received blocks, execution (with the state tree), and commit (block log append + state batch).
/// Verification and execution run on the chain thread; commit runs there for a single block and on
/// the commit thread, behind a queue of [`COMMIT_QUEUE`] blocks, for a run of blocks.
#[derive(Debug, Default)]
pub struct StageTimes {
    pub verified_txs: AtomicU64,
    pub verify_ns: AtomicU64,
    /// Transactions of checked blocks whose signature had passed at admission (not checked again).
    pub signatures_skipped: AtomicU64,
    pub executed_txs: AtomicU64,
    pub execute_ns: AtomicU64,
    pub committed_blocks: AtomicU64,
    pub commit_ns: AtomicU64,
    /// Blocks executed and waiting in the commit queue.
    pub commit_queue: AtomicU64,
    /// Blocks executed while an earlier block was still being committed (pipelined runs).
    pub overlapped_blocks: AtomicU64,
}

/// Blocks a run may have executed ahead of the commit stage, waiting in its queue (one more is
/// being written). Each holds its changes and tree nodes in memory until it is durable.
pub const COMMIT_QUEUE: usize = 2;

/// The part of the chain that checks a block against a parent (shared by the one-block path and
/// the pipelined run, where the log belongs to the commit thread).
struct Verifier<'c> {
    genesis: &'c Genesis,
    branch: &'c str,
    store: &'c StateStore,
    executor: &'c ParallelExecutor,
    schedule: &'c Schedule,
    times: &'c StageTimes,
    merges: Option<&'c dyn MergeSources>,
    verified: Option<&'c crypto::Verified>,
}

/// A block verified and executed, with its tree prepared: what the commit stage writes.
#[derive(Clone)]
struct Staged {
    block: Arc<Block>,
    prepared: Arc<aergo_storage::PreparedState>,
    out: Arc<ExecOutput>,
}

/// The state of a pipelined run on the chain thread.
struct Run {
    /// Blocks sent to the commit stage and not confirmed yet, oldest first.
    inflight: std::collections::VecDeque<Staged>,
    /// The head as committed (log and state synced).
    durable: Head,
    report: RunReport,
}

impl Run {
    /// The commit stage's answer for the oldest block in flight.
    fn confirmed(&mut self, r: Result<Head, ChainError>) {
        match (r, self.inflight.pop_front()) {
            (Ok(h), Some(s)) => {
                self.durable = h;
                self.report.committed.push(CommittedBlock {
                    head: h,
                    nonces: nonces_after(&s.block.transactions, &s.out.changes),
                    receipts: s.out.receipts.clone(),
                    block: s.block,
                    dropped: Vec::new(),
                });
            }
            (Err(e), _) => {
                let at = self.report.committed.len();
                self.report.error.get_or_insert((at, e));
            }
            (Ok(_), None) => {}
        }
    }
}

/// What [`Chain::import_run`] did: the blocks now durable, in order, and why it stopped early.
#[derive(Debug)]
pub struct RunReport {
    pub committed: Vec<CommittedBlock>,
    /// The first failure: a block that is invalid (index in the run), or the commit stage's.
    pub error: Option<(usize, ChainError)>,
}

fn add(counter: &AtomicU64, since: Instant) {
    counter.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
}

/// A committed block with what it did.
#[derive(Clone, Debug)]
pub struct CommittedBlock {
    pub block: Arc<Block>,
    /// The head once this block was committed.
    pub head: Head,
    pub receipts: Vec<Receipt>,
    /// Senders' nonces after the block.
    pub nonces: HashMap<Address, u64>,
    /// Transactions the builder left out, with the reason.
    pub dropped: Vec<(Hash, String)>,
}

/// What [`Chain::open`] did to get to a consistent state.
#[derive(Debug, Default)]
pub struct OpenReport {
    pub created: bool,
    pub replayed: u64,
    pub truncated: Option<(String, u64, u64)>,
}

pub struct Chain {
    genesis: Genesis,
    /// `main`, or the branch this chain is (`docs/branches.md`).
    branch: String,
    store: Arc<StateStore>,
    log: BlockLog,
    head: Head,
    executor: ParallelExecutor,
    schedule: Schedule,
    times: Arc<StageTimes>,
    merges: Option<Arc<dyn MergeSources>>,
    /// Transactions whose signature passed at admission: not checked again inside a block.
    verified: Option<Arc<crypto::Verified>>,
}

/// The state genesis writes: its balances and the head record.
fn genesis_changes(genesis: &Genesis) -> aergo_storage::ChangeSet {
    let mut changes = Vec::with_capacity(genesis.balances.len() + 1);
    for b in &genesis.balances {
        let account = Account { balance: b.amount, nonce: 0 };
        changes.push((account_key(&b.address), Some(aergo_primitives::types::to_vec_exact(&account))));
    }
    changes.push((
        aergo_storage::state::HEAD_KEY.to_vec(),
        Some(aergo_primitives::types::to_vec_exact(&(0u64, genesis.timestamp_ms))),
    ));
    if let Some(raft) = &genesis.consensus.raft {
        let voters: Vec<aergo_exec::governance::RaftVoterRecord> = raft
            .voters
            .iter()
            .filter_map(|v| {
                Some(aergo_exec::governance::RaftVoterRecord {
                    node_key: v.key().ok()?,
                    address: v.address.clone(),
                })
            })
            .collect();
        changes.push((
            aergo_exec::governance::RAFT_VOTERS_KEY.to_vec(),
            Some(aergo_primitives::types::to_vec_exact(&voters)),
        ));
    }
    if let Some(access) = &genesis.access {
        changes.extend(aergo_exec::members::genesis_changes(access));
    }
    aergo_storage::ChangeSet::from_unsorted(changes)
}

/// The genesis block over a state with root `state_root`.
fn genesis_with_root(genesis: &Genesis, state_root: Hash) -> Block {
    let producer =
        genesis.signer_keys().first().copied().unwrap_or(aergo_primitives::types::PublicKey([0; 32]));
    let header = BlockHeader {
        version: ENCODING_VERSION,
        chain_id: genesis.chain_id.clone(),
        branch: aergo_primitives::types::MAIN_BRANCH.into(),
        height: 0,
        prev_hash: Hash::ZERO,
        timestamp_ms: genesis.timestamp_ms,
        producer,
        tx_root: Hash::ZERO,
        state_root,
        receipts_root: Hash::ZERO,
    };
    Block { header, transactions: Vec::new(), signature: Signature([0; 64]) }
}

fn genesis_block(
    genesis: &Genesis,
    store: &StateStore,
) -> Result<(Block, aergo_storage::PreparedState), ChainError> {
    let prepared = store.prepare(0, &genesis_changes(genesis))?;
    Ok((genesis_with_root(genesis, prepared.root), prepared))
}

/// The hash of the genesis block `genesis` makes (no data directory needed).
pub fn genesis_hash(genesis: &Genesis) -> Result<Hash, ChainError> {
    let root = aergo_storage::state::first_root(&genesis_changes(genesis))?;
    Ok(genesis_with_root(genesis, root).hash())
}

impl Chain {
    /// Opens the chain in `data_dir` (`state/` and `blocks/`), creating it from `genesis` when empty and
    /// replaying logged blocks the store has not committed.
    pub fn open(
        data_dir: &Path,
        genesis: &Genesis,
        log_opts: LogOptions,
    ) -> Result<(Chain, OpenReport), ChainError> {
        Chain::open_with(data_dir, genesis, log_opts, StateOptions::default())
    }

    /// [`Chain::open`] with the state store's options given.
    pub fn open_with(
        data_dir: &Path,
        genesis: &Genesis,
        log_opts: LogOptions,
        state_opts: StateOptions,
    ) -> Result<(Chain, OpenReport), ChainError> {
        if aergo_storage::snapshot::settle(data_dir)? {
            tracing::info!(dir = %data_dir.display(), "a snapshot import was completed and put in place");
        }
        let store = Arc::new(StateStore::open_with(&data_dir.join("state"), state_opts)?);
        let committed = store.head()?.map(|h| Committed { height: h.height, pos: h.pos });
        let (mut log, recovery) = BlockLog::open(&data_dir.join("blocks"), log_opts, committed)?;
        let mut report = OpenReport { truncated: recovery.truncated.clone(), ..OpenReport::default() };

        let (expected_genesis, _) = genesis_block(genesis, &store)?;
        let head = match store.head()? {
            Some(head) => {
                let stored = store.genesis_hash()?.unwrap_or(Hash::ZERO);
                if stored != expected_genesis.hash() {
                    return Err(ChainError::GenesisMismatch { stored, given: expected_genesis.hash() });
                }
                head
            }
            None => {
                let (block, prepared) = genesis_block(genesis, &store)?;
                let pos = if let Some((0, pos)) = recovery.uncommitted.first().copied() {
                    // Genesis was logged but not committed: keep the record.
                    pos
                } else {
                    log.append(0, &block.encode())?
                };
                report.created = true;
                store.commit(&prepared, &block, pos, &[])?
            }
        };
        let executor = ParallelExecutor::with_threads(1, Vec::new());
        let schedule = Schedule::with_store(genesis, store.clone());
        let times = Arc::new(StageTimes::default());
        let branch = aergo_primitives::types::MAIN_BRANCH.to_string();
        let mut chain = Chain {
            genesis: genesis.clone(),
            branch,
            store,
            log,
            head,
            executor,
            schedule,
            times,
            merges: None,
            verified: None,
        };
        chain.replay(&recovery, &mut report)?;
        Ok((chain, report))
    }

    /// Opens branch `spec.name`'s chain in `dir` (`state/` and `blocks/`) over its parent's store
    /// `parent` (`docs/branches.md`). The branch's store holds only what its own blocks wrote and
    /// reads everything else from the parent at the base; its log holds its own blocks, the first
    /// of them base + 1. Created empty when `dir` is; logged blocks the store has not committed are
    /// replayed as on `main`. The base must be final on the parent.
    pub fn open_branch(
        dir: &Path,
        genesis: &Genesis,
        spec: &BranchSpec,
        parent: Arc<StateStore>,
        log_opts: LogOptions,
        state_opts: StateOptions,
    ) -> Result<(Chain, OpenReport), ChainError> {
        let store =
            Arc::new(StateStore::open_branch(&dir.join("state"), state_opts, parent, spec.base_height)?);
        let head = store.head()?.ok_or_else(|| ChainError::InvalidBlock {
            height: spec.base_height,
            reason: "the branch's store has no head".into(),
        })?;
        // Until its first block the branch's head is the parent's base block, which is not in
        // the branch's log.
        let committed =
            (head.height > spec.base_height).then_some(Committed { height: head.height, pos: head.pos });
        let (log, recovery) = BlockLog::open(&dir.join("blocks"), log_opts, committed)?;
        let created = committed.is_none() && recovery.uncommitted.is_empty();
        let mut report =
            OpenReport { truncated: recovery.truncated.clone(), created, ..OpenReport::default() };
        let schedule = Schedule::for_branch(genesis, spec.producers.clone());
        let mut chain = Chain {
            genesis: genesis.clone(),
            branch: spec.name.clone(),
            store,
            log,
            head,
            executor: ParallelExecutor::with_threads(1, Vec::new()),
            schedule,
            times: Arc::new(StageTimes::default()),
            merges: None,
            verified: None,
        };
        chain.replay(&recovery, &mut report)?;
        Ok((chain, report))
    }

    /// `main`, or the branch this chain is.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    fn replay(&mut self, recovery: &Recovery, report: &mut OpenReport) -> Result<(), ChainError> {
        let reader = self.log.reader();
        for &(height, pos) in &recovery.uncommitted {
            if height <= self.head.height {
                continue;
            }
            let (_, bytes) = reader.read(pos)?;
            let block =
                Block::decode(&bytes).map_err(|e| ChainError::Decode { height, reason: e.to_string() })?;
            let (out, prepared) = match self.check_block(&block) {
                // A merge reads its source branch, which opens over this chain once it is open:
                // not yet. The block was never reported committed (that waits for the state
                // batch), so it and the records after it are cut off the log; the producer
                // builds it again, a follower fetches it again.
                Err(ChainError::MergeUnavailable(why)) => {
                    tracing::warn!(
                        height, %why,
                        "a logged merge block the state had not committed is cut off the log with what follows it"
                    );
                    self.cut_log_after_head()?;
                    break;
                }
                r => r?,
            };
            self.head = self.store.commit(&prepared, &block, pos, &out.receipts)?;
            report.replayed += 1;
            tracing::info!(height, "replayed a logged block the state had not committed");
        }
        Ok(())
    }

    pub fn head(&self) -> Head {
        self.head
    }

    /// Where merges into this chain read their source branch (without it, a block with a merge
    /// waits: [`ChainError::MergeUnavailable`]).
    pub fn set_merge_sources(&mut self, sources: Arc<dyn MergeSources>) {
        self.merges = Some(sources);
    }

    /// Shares the set of transactions whose signature passed at admission: a block's transaction
    /// found in it with the same signature bytes is not checked again (`docs/exec.md`).
    pub fn set_verified(&mut self, verified: Arc<crypto::Verified>) {
        self.verified = Some(verified);
    }

    /// Sets the execution engine (default: sequential) for the blocks that follow.
    pub fn set_executor(&mut self, executor: ParallelExecutor) {
        self.executor = executor;
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    pub fn store(&self) -> Arc<StateStore> {
        self.store.clone()
    }

    pub fn log_reader(&self) -> LogReader {
        self.log.reader()
    }

    pub fn uses_io_uring(&self) -> bool {
        self.log.uses_io_uring()
    }

    /// The state the next block executes on: the head's.
    fn parent_state(&self) -> aergo_exec::StateAt<'_> {
        aergo_exec::StateAt { store: self.store.as_ref(), height: self.head.height }
    }

    fn context(&self, height: u64, timestamp_ms: u64, producer: Address) -> BlockContext {
        BlockContext {
            chain_id: self.genesis.chain_id.clone(),
            branch: self.branch.clone(),
            height,
            timestamp_ms,
            producer,
            staking: self.genesis.consensus.staking(),
            sql_ordered_scans_height: self.genesis.consensus.sql_ordered_scans_height.unwrap_or(u64::MAX),
            replay: false,
        }
    }

    fn verifier(&self) -> Verifier<'_> {
        Verifier {
            genesis: &self.genesis,
            branch: &self.branch,
            store: &self.store,
            executor: &self.executor,
            schedule: &self.schedule,
            times: &self.times,
            merges: self.merges.as_deref(),
            verified: self.verified.as_deref(),
        }
    }

    /// Verifies a block against the head and re-executes it; returns what it did and its state.
    fn check_block(&self, block: &Block) -> Result<(ExecOutput, aergo_storage::PreparedState), ChainError> {
        self.verifier().check(block, &self.head, &self.parent_state(), &[])
    }

    /// Builds, signs and commits the next block from `candidates` (in pool order). Invalid candidates
    /// are left out and reported in `dropped`.
    pub fn produce(
        &mut self,
        key: &Keypair,
        candidates: Vec<Transaction>,
        timestamp_ms: u64,
    ) -> Result<CommittedBlock, ChainError> {
        let started = Instant::now();
        let (block, out, prepared) = self.build(key, candidates, timestamp_ms)?;
        add(&self.times.execute_ns, started);
        self.times.executed_txs.fetch_add(block.transactions.len() as u64, Ordering::Relaxed);
        self.commit_built(block, out, prepared)
    }

    /// Commits a block [`Chain::build`] made on the current head, without executing it again
    /// (a Raft leader's block, once a majority holds it). Refused when the head moved since.
    pub fn commit_built(
        &mut self,
        block: Block,
        out: ExecOutput,
        prepared: aergo_storage::PreparedState,
    ) -> Result<CommittedBlock, ChainError> {
        let h = &block.header;
        if h.prev_hash != self.head.hash || h.height != self.head.height + 1 {
            return Err(ChainError::InvalidBlock {
                height: h.height,
                reason: format!("built on {} but the head is now {}", h.prev_hash, self.head.hash),
            });
        }
        self.commit(&block, prepared, &out.receipts)?;
        let nonces = nonces_after(&block.transactions, &out.changes);
        Ok(CommittedBlock {
            block: Arc::new(block),
            head: self.head,
            receipts: out.receipts,
            nonces,
            dropped: out.dropped,
        })
    }

    /// Builds and signs the next block without committing it (`out.included` is moved into the block).
    pub fn build(
        &self,
        key: &Keypair,
        candidates: Vec<Transaction>,
        timestamp_ms: u64,
    ) -> Result<(Block, ExecOutput, aergo_storage::PreparedState), ChainError> {
        self.build_by(key, candidates, timestamp_ms, true)
    }

    /// [`Chain::build`]; without `writer_rule` a private repository's block keeps a sender who
    /// may not write (the tests' rule breaker, for the verifier's side of the rule).
    fn build_by(
        &self,
        key: &Keypair,
        candidates: Vec<Transaction>,
        timestamp_ms: u64,
        writer_rule: bool,
    ) -> Result<(Block, ExecOutput, aergo_storage::PreparedState), ChainError> {
        let height = self.head.height + 1;
        let timestamp_ms = timestamp_ms.max(self.head.timestamp_ms + 1);
        let ctx = self.context(height, timestamp_ms, key.address());
        let view = self.parent_state();
        let verifier = self.verifier();
        let mut out = if writer_rule {
            verifier.build_output(&view, &ctx, candidates)?
        } else {
            verifier.build_output_of(&view, &ctx, candidates)?
        };
        let prepared = self.store.prepare(height, &out.changes)?;
        let header = BlockHeader {
            version: aergo_primitives::types::TxBody::version_for(&self.branch),
            chain_id: self.genesis.chain_id.clone(),
            branch: self.branch.clone(),
            height,
            prev_hash: self.head.hash,
            timestamp_ms,
            producer: key.public(),
            tx_root: Block::compute_tx_root(&out.included),
            state_root: prepared.root,
            receipts_root: Receipt::compute_root(&out.receipts),
        };
        let signature = key.sign(&header.hash());
        // The block owns the transactions; `out` keeps receipts and changes.
        let block = Block { header, transactions: std::mem::take(&mut out.included), signature };
        Ok((block, out, prepared))
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Takes back the blocks above `height` (a fork switch): the state store first, in one atomic
    /// batch, then the block log. Returns the blocks taken back, oldest first. Refused below the LIB.
    pub fn rollback_to(&mut self, height: u64) -> Result<Vec<Block>, ChainError> {
        let reader = self.log.reader();
        let mut removed = Vec::new();
        for h in height + 1..=self.head.height {
            let block = read_block(&self.store, &reader, h)?
                .ok_or(ChainError::InvalidBlock { height: h, reason: "missing from the index".into() })?;
            removed.push(block);
        }
        self.head = self.store.rollback_to(height)?;
        self.schedule.forget_elections();
        self.cut_log_after_head()?;
        Ok(removed)
    }

    /// Cuts the log's records above the head off.
    fn cut_log_after_head(&mut self) -> Result<(), ChainError> {
        let head = self.head;
        if self.store.branch_base().is_some_and(|(base, _)| base == head.height) {
            // Back to a branch's base: that block is the parent's, none of the log's.
            self.log.clear()?;
        } else {
            self.log.truncate_after(head.pos, head.height)?;
        }
        Ok(())
    }

    /// Records the block at `height` of the stored chain as final (its undo records are dropped).
    pub fn finalize(&mut self, height: u64, hash: Hash) -> Result<(), ChainError> {
        Ok(self.store.set_finalized(height, hash)?)
    }

    /// Verifies and commits a block produced elsewhere.
    pub fn import(&mut self, block: Block) -> Result<CommittedBlock, ChainError> {
        let (out, prepared) = self.check_block(&block)?;
        self.commit(&block, prepared, &out.receipts)?;
        let nonces = nonces_after(&block.transactions, &out.changes);
        Ok(CommittedBlock {
            block: Arc::new(block),
            head: self.head,
            receipts: out.receipts,
            nonces,
            dropped: Vec::new(),
        })
    }

    /// The commit stage, inline: the block to the log (synced), then its state in one synced batch.
    fn commit(
        &mut self,
        block: &Block,
        prepared: aergo_storage::PreparedState,
        receipts: &[Receipt],
    ) -> Result<(), ChainError> {
        self.head = commit_block(&mut self.log, &self.store, &self.times, block, &prepared, receipts)?;
        Ok(())
    }

    /// Verifies, executes and commits a run of blocks, each the child of the one before (the first
    /// of the head), with execution and commit overlapped (see the module comment). Stops at the
    /// first invalid block or commit failure; every block before it is committed and reported,
    /// and the head is the last of them.
    pub fn import_run(&mut self, blocks: Vec<Block>) -> RunReport {
        let Chain { genesis, branch, store, log, head, executor, schedule, times, merges, verified } = self;
        let (merges, verified) = (merges.as_deref(), verified.as_deref());
        let verifier = Verifier { genesis, branch, store, executor, schedule, times, merges, verified };
        let store: &StateStore = store;
        let times: &StageTimes = times;
        let mut run = Run {
            inflight: std::collections::VecDeque::new(),
            durable: *head,
            report: RunReport { committed: Vec::with_capacity(blocks.len()), error: None },
        };
        std::thread::scope(|s| {
            let (queue, commits) = std::sync::mpsc::sync_channel::<Staged>(COMMIT_QUEUE);
            let (confirm, confirmations) = std::sync::mpsc::channel::<Result<Head, ChainError>>();
            let committer =
                std::thread::Builder::new().name("aergo-commit".into()).spawn_scoped(s, move || {
                    for staged in commits {
                        times.commit_queue.fetch_sub(1, Ordering::Relaxed);
                        let r = commit_block(
                            log,
                            store,
                            times,
                            &staged.block,
                            &staged.prepared,
                            &staged.out.receipts,
                        );
                        let failed = r.is_err();
                        if confirm.send(r).is_err() || failed {
                            break;
                        }
                    }
                    // Whatever is left in the queue is not written: it leaves the gauge.
                    times.commit_queue.store(0, Ordering::Relaxed);
                });
            let committer = match committer {
                Ok(c) => c,
                Err(e) => {
                    run.report.error =
                        Some((0, ChainError::CommitStage(format!("cannot start the commit thread: {e}"))));
                    return;
                }
            };
            let mut tip = run.durable;
            for (i, block) in blocks.into_iter().enumerate() {
                while let Ok(r) = confirmations.try_recv() {
                    run.confirmed(r);
                }
                if run.report.error.is_some() {
                    break;
                }
                // A block's producer set is elected from the state of an earlier height; when that
                // height is still in the queue, let the queue drain first.
                let epoch = schedule.epoch_of(block.header.height);
                if schedule.election_height(epoch).is_some_and(|at| at > run.durable.height) {
                    while !run.inflight.is_empty() && run.report.error.is_none() {
                        match confirmations.recv() {
                            Ok(r) => run.confirmed(r),
                            Err(_) => break,
                        }
                    }
                }
                if !run.inflight.is_empty() {
                    times.overlapped_blocks.fetch_add(1, Ordering::Relaxed);
                }
                let checked = {
                    let view = aergo_exec::StateWithPending {
                        store,
                        height: run.durable.height,
                        layers: run.inflight.iter().map(|s| &s.out.changes).collect(),
                    };
                    let pending: Vec<&aergo_storage::PreparedState> =
                        run.inflight.iter().map(|s| s.prepared.as_ref()).collect();
                    verifier.check(&block, &tip, &view, &pending)
                };
                match checked {
                    Ok((out, prepared)) => {
                        tip = Head {
                            height: block.header.height,
                            hash: block.hash(),
                            pos: tip.pos,
                            state_root: prepared.root,
                            timestamp_ms: block.header.timestamp_ms,
                        };
                        let staged = Staged {
                            block: Arc::new(block),
                            prepared: Arc::new(prepared),
                            out: Arc::new(out),
                        };
                        times.commit_queue.fetch_add(1, Ordering::Relaxed);
                        if queue.send(staged.clone()).is_err() {
                            // The commit stage stopped; its error is among the confirmations.
                            break;
                        }
                        run.inflight.push_back(staged);
                    }
                    Err(e) => {
                        run.report.error = Some((i, e));
                        break;
                    }
                }
            }
            drop(queue);
            for r in confirmations.iter() {
                run.confirmed(r);
            }
            if committer.join().is_err() {
                let at = run.report.committed.len();
                run.report
                    .error
                    .get_or_insert((at, ChainError::CommitStage("the commit thread panicked".into())));
            }
        });
        *head = run.durable;
        run.report
    }

    /// The stage counters (shared: readers see them live).
    pub fn stage_times(&self) -> Arc<StageTimes> {
        self.times.clone()
    }
}

impl Verifier<'_> {
    /// A three-way merge's input: the source's store, and every key changed since the branch
    /// was made, on the target (up to the block before the merge) and on the source (up to
    /// `upto`).
    fn three_way_input<V: aergo_exec::StateView>(
        &self,
        view: &V,
        ctx: &BlockContext,
        (source, base, upto, upto_hash): (&str, u64, u64, &Hash),
        sources: &dyn MergeSources,
        pending: &[&aergo_storage::PreparedState],
    ) -> Result<aergo_exec::merge::MergeInput, ChainError> {
        use aergo_exec::merge::{MergeInput, ThreeWayInput, MAX_KEYS};
        let fork = view
            .raw(&aergo_exec::branches::branch_key(source))?
            .and_then(|b| borsh::from_slice::<aergo_exec::branches::BranchRecord>(&b).ok())
            .map_or(base, |r| r.base_height);
        let store = match sources.state(source, upto, upto_hash) {
            Ok(store) => store,
            Err(SourceError::Refused(why)) => return Ok(MergeInput::Refused(why)),
            Err(SourceError::Unavailable(why)) => return Err(ChainError::MergeUnavailable(why)),
        };
        let committed = self.store.head()?.map_or(0, |h| h.height).min(ctx.height.saturating_sub(1));
        let keys = self.store.changed_keys(fork, committed, MAX_KEYS).and_then(|mut keys| {
            keys.extend(store.changed_keys(fork, upto, MAX_KEYS)?);
            for p in pending {
                keys.extend(p.changed_keys()?);
            }
            match keys.len() > MAX_KEYS {
                true => Err(StateError::TooManyChanges { max: MAX_KEYS }),
                false => Ok(keys),
            }
        });
        match keys {
            Ok(keys) => Ok(MergeInput::ThreeWay(ThreeWayInput { source: store, base, upto, keys })),
            // The same on every node that holds the source.
            Err(e @ StateError::TooManyChanges { .. }) => Ok(MergeInput::Refused(e.to_string())),
            // This node's index is younger than the branch: another node may judge the block.
            Err(e @ StateError::ChangeIndex { .. }) => Err(ChainError::MergeUnavailable(e.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Executes a received block's transactions; a block with a merge must open with it.
    fn verify_output<V: aergo_exec::StateView>(
        &self,
        view: &V,
        ctx: &BlockContext,
        txs: &[Transaction],
        pending: &[&aergo_storage::PreparedState],
    ) -> Result<ExecOutput, ChainError> {
        let invalid = |reason: String| ChainError::InvalidBlock { height: ctx.height, reason };
        match txs.iter().position(is_merge) {
            None => Ok(self.executor.execute(view, ctx, txs.to_vec(), Mode::Verify)?),
            Some(0) => {
                let input = self.merge_input(view, ctx, &txs[0], pending)?;
                let merge = txs[0].clone();
                Ok(aergo_exec::merge::execute(
                    self.executor,
                    view,
                    ctx,
                    merge,
                    input,
                    &txs[1..],
                    Mode::Verify,
                )?)
            }
            Some(i) => Err(invalid(format!("transaction {i} is a merge: a merge opens its block"))),
        }
    }

    /// Executes `candidates` (in pool order) into a block. A merge opens a block of its own
    /// (the candidates before it wait for the next block, or, when the merge's sender has one
    /// before it, the merge does); a merge whose source this node cannot read now waits in the
    /// pool with its sender's later transactions.
    fn build_output<V: aergo_exec::StateView>(
        &self,
        view: &V,
        ctx: &BlockContext,
        candidates: Vec<Transaction>,
    ) -> Result<ExecOutput, ChainError> {
        if self.genesis.is_private() {
            // A sender whose write role was taken after its transaction was pooled: left out.
            let mut rules = aergo_exec::members::Rules(|k: &[u8]| view.raw(k));
            let mut refused = Vec::new();
            let mut kept = Vec::with_capacity(candidates.len());
            let mut known = std::collections::HashMap::new();
            for tx in candidates {
                let sender = tx.sender();
                let answer = match known.get(&sender) {
                    Some(ok) => Ok(*ok),
                    None => aergo_exec::members::may_write(&mut rules, &sender).inspect(|ok| {
                        known.insert(sender, *ok);
                    }),
                };
                match answer {
                    Ok(true) => kept.push(tx),
                    Ok(false) => {
                        refused.push((tx.hash(), "its sender may not write to this repository".into()))
                    }
                    Err(e) => {
                        return Err(ChainError::InvalidBlock { height: ctx.height, reason: e.to_string() })
                    }
                }
            }
            let mut out = self.build_output_of(view, ctx, kept)?;
            out.dropped.extend(refused);
            return Ok(out);
        }
        self.build_output_of(view, ctx, candidates)
    }

    /// [`Verifier::build_output`] of candidates that may all be sent.
    fn build_output_of<V: aergo_exec::StateView>(
        &self,
        view: &V,
        ctx: &BlockContext,
        mut candidates: Vec<Transaction>,
    ) -> Result<ExecOutput, ChainError> {
        let Some(i) = candidates.iter().position(is_merge) else {
            return Ok(self.executor.execute(view, ctx, candidates, Mode::Build)?);
        };
        let sender = candidates[i].body.sender;
        if i > 0 && candidates[..i].iter().any(|t| t.body.sender == sender) {
            candidates.truncate(i);
            return Ok(self.executor.execute(view, ctx, candidates, Mode::Build)?);
        }
        match self.merge_input(view, ctx, &candidates[i], &[]) {
            Ok(input) => {
                let merge = candidates.swap_remove(i);
                Ok(aergo_exec::merge::execute(self.executor, view, ctx, merge, input, &[], Mode::Build)?)
            }
            Err(ChainError::MergeUnavailable(why)) => {
                tracing::info!(tx = %candidates[i].hash(), %why, "a merge waits for its source");
                candidates.retain(|t| t.body.sender != sender && !is_merge(t));
                Ok(self.executor.execute(view, ctx, candidates, Mode::Build)?)
            }
            Err(e) => Err(e),
        }
    }

    /// What the merge `tx` reads, from the node's branches: for a replay, the source's
    /// transactions after its merge base, each marked when this chain already has it; for a
    /// three-way merge, the source's store and the keys changed on either side since the branch
    /// was made (`pending`: the blocks between the store's head and `view`'s, not committed yet).
    fn merge_input<V: aergo_exec::StateView>(
        &self,
        view: &V,
        ctx: &BlockContext,
        tx: &Transaction,
        pending: &[&aergo_storage::PreparedState],
    ) -> Result<aergo_exec::merge::MergeInput, ChainError> {
        use aergo_exec::branches::{merge_base, MAX_MERGE_TXS};
        use aergo_exec::merge::{MergeInput, SourceTx};
        use aergo_primitives::types::Payload;
        let (source, strategy, upto, upto_hash) = match &tx.body.payload {
            Payload::Merge { source, strategy, upto, upto_hash } => (source, strategy, upto, upto_hash),
            Payload::MergePrivate { source, upto, carried, .. } => {
                let base = match merge_base(|k| view.raw(k), &ctx.branch, &tx.sender(), source, *upto, true)?
                {
                    Ok(base) => base,
                    Err(failure) => return Ok(MergeInput::Refused(failure.to_string())),
                };
                return self.carried_input(ctx, source, base, *upto, carried);
            }
            _ => return Err(ChainError::InvalidBlock { height: ctx.height, reason: "not a merge".into() }),
        };
        let base = match merge_base(|k| view.raw(k), &ctx.branch, &tx.sender(), source, *upto, false)? {
            Ok(base) => base,
            // The merge transaction fails with the same reason when it runs.
            Err(failure) => return Ok(MergeInput::Refused(failure.to_string())),
        };
        let sources = self
            .merges
            .ok_or_else(|| ChainError::MergeUnavailable("this chain reads no other branches".into()))?;
        if *strategy != aergo_primitives::types::MergeStrategy::Replay {
            return self.three_way_input(view, ctx, (source, base, *upto, upto_hash), sources, pending);
        }
        let txs = match sources.transactions(source, base, *upto, upto_hash) {
            Ok(txs) => txs,
            Err(SourceError::Refused(why)) => return Ok(MergeInput::Refused(why)),
            Err(SourceError::Unavailable(why)) => return Err(ChainError::MergeUnavailable(why)),
        };
        if txs.len() > MAX_MERGE_TXS {
            let last_fit = txs[MAX_MERGE_TXS].0.saturating_sub(1);
            return Ok(MergeInput::Refused(format!(
                "the merge would replay {} transactions of {source:?}, at most {MAX_MERGE_TXS} at once: \
                 merge up to its height {last_fit} first",
                txs.len()
            )));
        }
        let mut out = Vec::with_capacity(txs.len());
        for (height, tx) in txs {
            let skip = self
                .store
                .tx_location(&tx.hash())?
                .map(|loc| format!("already applied on {:?} at height {}", ctx.branch, loc.height));
            out.push(SourceTx { height, tx, skip });
        }
        Ok(MergeInput::Replay(out))
    }

    /// What a `merge_private` replays: the transactions it carries (`docs/branches.md`, "Private
    /// branches"), judged alike on every node of the target, none of which reads the branch.
    /// Carried heights out of `base < h <= upto` or out of order refuse the merge; a carried entry
    /// that is not a transaction signed for `source` (or whose signature fails) is skipped and
    /// says why; one this chain already has is skipped as a replay's would be.
    fn carried_input(
        &self,
        ctx: &BlockContext,
        source: &str,
        base: u64,
        upto: u64,
        carried: &[aergo_primitives::types::CarriedTx],
    ) -> Result<aergo_exec::merge::MergeInput, ChainError> {
        use aergo_exec::branches::MAX_MERGE_TXS;
        use aergo_exec::merge::{MergeInput, SourceTx};
        if carried.len() > MAX_MERGE_TXS {
            return Ok(MergeInput::Refused(format!(
                "the merge carries {} transactions, at most {MAX_MERGE_TXS}",
                carried.len()
            )));
        }
        let mut last = base;
        let mut out = Vec::with_capacity(carried.len());
        for (i, c) in carried.iter().enumerate() {
            if c.height <= base || c.height > upto || c.height < last {
                return Ok(MergeInput::Refused(format!(
                    "carried transaction {i} is of {source:?}'s height {}: heights run from {} to {upto}, in order",
                    c.height,
                    base + 1
                )));
            }
            last = c.height;
            let tx = match Transaction::decode(&c.tx) {
                Ok(tx) => tx,
                Err(e) => {
                    return Ok(MergeInput::Refused(format!("carried transaction {i} does not decode: {e}")))
                }
            };
            let skip = if tx.body.branch != source {
                Some(format!("signed for branch {:?}, not {source:?}", tx.body.branch))
            } else if tx.body.chain_id != self.genesis.chain_id {
                Some(format!("signed for chain {:?}", tx.body.chain_id))
            } else if let Err(e) = crypto::verify_tx(&tx) {
                Some(format!("signature: {e}"))
            } else {
                self.store
                    .tx_location(&tx.hash())?
                    .map(|loc| format!("already applied on {:?} at height {}", ctx.branch, loc.height))
            };
            out.push(SourceTx { height: c.height, tx, skip });
        }
        Ok(MergeInput::Replay(out))
    }

    /// Verifies `block` as the child of `parent` and re-executes it on `view` (the parent's
    /// state); `pending` are the prepared trees of blocks between the store and the parent.
    fn check<V: aergo_exec::StateView>(
        &self,
        block: &Block,
        parent: &Head,
        view: &V,
        pending: &[&aergo_storage::PreparedState],
    ) -> Result<(ExecOutput, aergo_storage::PreparedState), ChainError> {
        let h = &block.header;
        let invalid = |reason: String| ChainError::InvalidBlock { height: h.height, reason };
        if h.height != parent.height + 1 {
            return Err(invalid(format!("expected height {}", parent.height + 1)));
        }
        if h.prev_hash != parent.hash {
            return Err(invalid(format!("previous hash {} is not the head {}", h.prev_hash, parent.hash)));
        }
        if h.chain_id != self.genesis.chain_id {
            return Err(invalid(format!("chain id {:?}", h.chain_id)));
        }
        if h.branch != self.branch {
            return Err(invalid(format!(
                "the block is on branch {:?}, this chain is {:?}",
                h.branch, self.branch
            )));
        }
        let judged = |e: crate::schedule::ScheduleError| match e {
            // This node's own state failed it: the block is not judged invalid.
            e if e.is_local() => ChainError::Schedule(e),
            e => invalid(e.to_string()),
        };
        self.schedule.check(h, parent.timestamp_ms).map_err(judged)?;
        if self.schedule.is_raft() {
            let voters = view.raw(aergo_exec::governance::RAFT_VOTERS_KEY)?;
            Schedule::check_voter(h, voters.as_deref()).map_err(judged)?;
        }
        crypto::verify(&h.producer, &block.hash(), &block.signature)
            .map_err(|e| invalid(format!("producer signature: {e}")))?;
        if self.genesis.is_private() {
            // Only members who may write send transactions (`docs/repositories.md`), by the
            // parent block's state.
            // One look-up per sender: a block's senders repeat, and the rule reads the parent's
            // state, which the block does not change while it is checked.
            let mut rules = aergo_exec::members::Rules(|k: &[u8]| view.raw(k));
            let mut known = std::collections::HashMap::new();
            for tx in &block.transactions {
                let sender = tx.sender();
                let ok = match known.get(&sender) {
                    Some(ok) => *ok,
                    None => {
                        let ok = aergo_exec::members::may_write(&mut rules, &sender).map_err(|e| {
                            ChainError::InvalidBlock { height: h.height, reason: e.to_string() }
                        })?;
                        *known.entry(sender).or_insert(ok)
                    }
                };
                if !ok {
                    return Err(invalid(format!(
                        "transaction {}: its sender {sender} may not write to this private repository",
                        tx.hash()
                    )));
                }
            }
        }
        if Block::compute_tx_root(&block.transactions) != h.tx_root {
            return Err(invalid("transactions root does not match".into()));
        }
        let started = Instant::now();
        // Verify once: what passed at admission with the same signature bytes is not checked again.
        let unchecked: Vec<&Transaction> = match self.verified {
            Some(verified) => block.transactions.iter().filter(|tx| !verified.contains(tx)).collect(),
            None => block.transactions.iter().collect(),
        };
        let answers = self.executor.verify_signature_refs(&unchecked);
        if let Some((tx, Err(e))) = unchecked.iter().zip(answers).find(|(_, a)| a.is_err()) {
            return Err(invalid(format!("transaction {}: {e}", tx.hash())));
        }
        add(&self.times.verify_ns, started);
        self.times.verified_txs.fetch_add(block.transactions.len() as u64, Ordering::Relaxed);
        let skipped = block.transactions.len() - unchecked.len();
        self.times.signatures_skipped.fetch_add(skipped as u64, Ordering::Relaxed);
        let started = Instant::now();
        let ctx = BlockContext {
            chain_id: self.genesis.chain_id.clone(),
            branch: self.branch.to_string(),
            height: h.height,
            timestamp_ms: h.timestamp_ms,
            producer: h.producer.address(),
            staking: self.genesis.consensus.staking(),
            sql_ordered_scans_height: self.genesis.consensus.sql_ordered_scans_height.unwrap_or(u64::MAX),
            replay: false,
        };
        let out = self.verify_output(view, &ctx, &block.transactions, pending)?;
        if Receipt::compute_root(&out.receipts) != h.receipts_root {
            return Err(invalid("receipts root does not match".into()));
        }
        let prepared = self.store.prepare_over(h.height, &out.changes, pending)?;
        add(&self.times.execute_ns, started);
        self.times.executed_txs.fetch_add(block.transactions.len() as u64, Ordering::Relaxed);
        if prepared.root != h.state_root {
            return Err(invalid(format!(
                "state root {} but execution gives {}",
                h.state_root, prepared.root
            )));
        }
        Ok((out, prepared))
    }
}

/// The commit stage for one block: its record to the log (synced), then its state in one synced
/// batch; returns the new head.
fn commit_block(
    log: &mut BlockLog,
    store: &StateStore,
    times: &StageTimes,
    block: &Block,
    prepared: &aergo_storage::PreparedState,
    receipts: &[Receipt],
) -> Result<Head, ChainError> {
    let started = Instant::now();
    let pos = log.append(block.header.height, &block.encode())?;
    let head = store.commit(prepared, block, pos, receipts)?;
    add(&times.commit_ns, started);
    times.committed_blocks.fetch_add(1, Ordering::Relaxed);
    Ok(head)
}

fn nonces_after(txs: &[Transaction], changes: &aergo_storage::ChangeSet) -> HashMap<Address, u64> {
    let mut out = HashMap::new();
    for tx in txs {
        let sender = tx.sender();
        if out.contains_key(&sender) {
            continue;
        }
        if let Some(Some(bytes)) = changes.get(&account_key(&sender)) {
            if let Ok(account) = borsh::from_slice::<Account>(bytes) {
                out.insert(sender, account.nonce);
            }
        }
    }
    out
}

/// What [`verify_by_replay`] found.
#[derive(Debug)]
pub struct VerifyReport {
    pub height: u64,
    /// The root the replay computed at `height`.
    pub replayed_root: Hash,
    /// The root the data directory's state store holds at `height`.
    pub stored_root: Hash,
}

/// Re-executes every block of the log in `data_dir` from genesis into a fresh state in `scratch`,
/// checking each block's signature and roots, and compares the final state root with the stored one.
/// The node must not be running (the state store is opened for writing by one process at a time).
///
/// Merge blocks read their source branch through `sources`, given the data directory's store
/// (the branches' stores read it below their bases); without it the replay stops at the first
/// merge block (`merge source unavailable`).
pub fn verify_by_replay(
    data_dir: &Path,
    genesis: &Genesis,
    scratch: &Path,
    sources: Option<&dyn Fn(Arc<StateStore>) -> Arc<dyn MergeSources>>,
) -> Result<VerifyReport, ChainError> {
    let store = Arc::new(StateStore::open(&data_dir.join("state"))?);
    if let Some((base, _)) = store.base()? {
        return Err(ChainError::State(StateError::BeforeBase { requested: 0, base }));
    }
    let reader = LogReader::new(&data_dir.join("blocks"));
    let head = store.head()?.map_or(0, |h| h.height);
    let (mut fresh, _) = Chain::open(scratch, genesis, LogOptions::default())?;
    if let Some(sources) = sources {
        fresh.set_merge_sources(sources(store.clone()));
    }
    // In runs through the pipelined import (execution of a block overlaps the commit of the one
    // before); a run holds at most this many blocks in memory.
    const RUN: u64 = 64;
    let mut from = 1;
    while from <= head {
        let to = (from + RUN - 1).min(head);
        let mut run = Vec::with_capacity((to - from + 1) as usize);
        for height in from..=to {
            run.push(
                read_block(&store, &reader, height)?
                    .ok_or(ChainError::InvalidBlock { height, reason: "missing from the index".into() })?,
            );
        }
        if let Some((_, e)) = fresh.import_run(run).error {
            return Err(e);
        }
        from = to + 1;
    }
    Ok(VerifyReport {
        height: head,
        replayed_root: fresh.head().state_root,
        stored_root: store.root_at(head)?,
    })
}

/// What [`Chain::open_branch`] needs of a branch's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchSpec {
    pub name: String,
    pub base_height: u64,
    pub producers: Vec<aergo_primitives::types::PublicKey>,
}

/// Reads a committed block by height through the index and the log.
pub fn read_block(store: &StateStore, reader: &LogReader, height: u64) -> Result<Option<Block>, ChainError> {
    let Some(meta) = store.block_meta(height)? else { return Ok(None) };
    let (_, bytes) = reader.read(meta.pos)?;
    let block = Block::decode(&bytes).map_err(|e| ChainError::Decode { height, reason: e.to_string() })?;
    Ok(Some(block))
}

#[cfg(test)]
mod tests;
