//! The parallel executor: a block's transactions on pinned worker threads, in the order the
//! deterministic transaction tree allows, with the result of executing them one by one.
//!
//! Workers claim transactions in block order, in runs of a few consecutive ones (an atomic
//! counter); each one whose dependencies are done is executed at once, the others are put aside
//! and run as soon as they are ready, oldest first, between claims. So the independent
//! transactions run beside a chain of dependent ones (a hot account) instead of queueing behind
//! it. A transaction reads an account from the last earlier transaction that wrote it — found by
//! walking the tree's `prev` links — or from the parent state. The earliest unfinished transaction
//! always has its dependencies done (they are earlier) and is run by the worker that claimed it
//! next time round, so there is no deadlock, and with no conflicts every worker is always busy. Each worker reads the parent state through its own reader (one database
//! iterator for the block). At the end the calling thread (worker 0, which built the tree first)
//! collects the receipts while the others encode the final values of pieces of the accounts' key
//! space in key order, each piece claimed by whichever worker is free, so that building the
//! block's change set is done in parallel too.
//!
//! When the longest dependency chain is most of the block (more than 4/5 of it), the workers would
//! mostly hand it to one another: such a block runs in order, decided from the tree alone.
//!
//! Each access is checked against the declared set. If a transaction touches anything else, its result
//! and every later one are thrown away and re-executed sequentially on top of the earlier results,
//! which are correct: they could not have depended on the offender. The outcome is never wrong, only
//! slower, and the log says so.

use super::access::{self, AccessSet, BlockContracts, KeyUse};
use super::affinity::{pin_current_thread, pin_current_thread_for_now};
use super::contract::Found;
use super::dtt::{piece_of, Deps, Dtt, DttBuilder, FastMap, PrevLinks};
use super::{
    apply_tx, assemble, collect_outcomes, execute_block, Accounts, BlockContext, ExecError, ExecOutput, Mode,
    Overlay, StateRead, StateView, TxOutcome,
};
use aergo_primitives::types::{Account, Address, Amount, Receipt, Transaction};
use aergo_sql::store::code_key;
use aergo_storage::state::{account_key, Entries, HEAD_KEY};
use aergo_storage::{Change, ChangeSet};
use smallvec::SmallVec;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Below this many transactions a block runs sequentially: starting workers costs more than it saves.
const MIN_PARALLEL_TXS: usize = 64;

/// Blocks at least this large are probed for contention before the whole analysis.
const PROBE_MIN_TXS: usize = 2048;

/// Transactions the probe looks at: the first ones of the block. A hot account shows in a few
/// hundred transactions as in the whole block; the probe's tree is built again with the rest, so
/// its cost (a fifth of a microsecond per transfer) is paid twice by a block that runs in
/// parallel and is all a block that runs in order pays over the sequential engine.
const PROBE_TXS: usize = 512;

/// Signatures per batch check of a block's transactions. The saving per signature grows with the
/// batch (measured here: 1.9× single verification at 128–256, 2.1–2.2× at 1024, 2.3× at 4096, where
/// the multiscalar multiplication switches to Pippenger's method); 1024 keeps the redo of a batch
/// holding a bad signature (one by one, to name it) short. A block with a bad signature is refused
/// whole, so that redo is paid once per bad block.
pub const VERIFY_BATCH: usize = 1024;

/// The batch length [`ParallelExecutor::verify_signatures`] cuts `n` signatures into for
/// `threads` threads: at most [`VERIFY_BATCH`], in a number of batches that is a multiple of
/// `threads`, all of one length but the last. 10 000 signatures on 2 threads are 10 batches of
/// 1000, not 9 of 1024 and one of 784, so neither thread waits out most of a batch at the end.
pub fn verify_batch_len(n: usize, threads: usize) -> usize {
    let batches = n.div_ceil(VERIFY_BATCH).next_multiple_of(threads.max(1));
    n.div_ceil(batches.max(1)).max(1)
}

type Slot = OnceLock<Result<TxOutcome, ExecError>>;

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecStats {
    /// Workers used (1: the block ran in order).
    pub threads: usize,
    /// Longest dependency chain in the block.
    pub critical_path: usize,
    /// Transactions re-executed in order because one broke its declared access set.
    pub reexecuted: usize,
    /// Where the time went (ns): access sets and the tree (one thread), the workers, and merging
    /// their results into the block's output (one thread).
    pub analysis_ns: u64,
    pub run_ns: u64,
    pub merge_ns: u64,
}

#[derive(Clone, Debug)]
pub struct ParallelExecutor {
    cores: Vec<usize>,
    threads: usize,
    min_txs: usize,
}

fn prev_of(prev: &[(Address, Option<u32>)], a: &Address) -> Option<u32> {
    prev.iter().find(|(x, _)| x == a).and_then(|(_, p)| *p)
}

/// Each account's last toucher.
type LastTouchers = FastMap<Address, u32>;

/// Transactions a worker claims at once: consecutive ones, so that the slots and flags it writes
/// share cache lines with its own rather than with another core's (claiming one at a time put two
/// workers' results on one line, and the counter itself moved between cores on every transaction).
const CLAIM: usize = 16;

/// Whether a chain of `critical_path` dependent transactions among `n` is too long to run them in
/// parallel: more than 4/5 of them. Below that the workers run the independent transactions beside
/// the chain (putting aside those that wait); above it the few independent ones do not pay for
/// the workers' handing the chain back and forth.
fn too_long(critical_path: usize, n: usize) -> bool {
    critical_path * 5 > n * 4
}

/// Claimed transactions a worker may hold put aside, waiting for their dependencies, before it
/// stops claiming more and waits for the oldest of them. Whichever transaction is the earliest
/// unfinished one of the block has its dependencies done (they are earlier), and its worker runs
/// it next time round (it is that worker's oldest put-aside one, or runs as it is claimed): so the
/// block always advances.
const MAX_DEFERRED: usize = 256;

/// Transactions per published piece of the tree.
const TREE_CHUNK: usize = 256;

/// Pieces of the address space per worker whose final values are encoded one at a time, by
/// whichever worker is free next. The calling thread collects the receipts first, so an even share
/// each would leave it working alone at the end.
const PIECES_PER_WORKER: usize = 4;

/// The deterministic transaction tree of a block, built by the executor's own thread while the
/// workers already run the transactions it covers: chunk `c` holds the access sets, links and
/// dependencies of transactions `c·TREE_CHUNK ..`, published once (a worker waits for its
/// transaction's chunk). Declaring a transfer's set and building its node cost about a tenth of
/// its execution, so the builder stays ahead and the analysis no longer runs before the workers
/// start.
struct Tree {
    chunks: Vec<OnceLock<Chunk>>,
    /// Each account's last toucher, once the whole tree is built: for the final values, in one
    /// map per piece of the address space ([`piece_of`]).
    last: OnceLock<Vec<LastTouchers>>,
    /// The block is to run in order after all (a set that cannot be declared, a chain too long
    /// for the workers, a worker that panicked): every thread stops as soon as it sees it.
    abort: AtomicBool,
    critical_path: AtomicUsize,
}

/// One published part of the tree: each transaction's declared set and its node.
struct Chunk {
    sets: Vec<AccessSet>,
    nodes: Vec<(PrevLinks, Deps)>,
}

impl Tree {
    fn new(n: usize) -> Tree {
        Tree {
            chunks: (0..n.div_ceil(TREE_CHUNK)).map(|_| OnceLock::new()).collect(),
            last: OnceLock::new(),
            abort: AtomicBool::new(false),
            critical_path: AtomicUsize::new(0),
        }
    }

    /// Transaction `i`'s declared set and node, once published.
    fn node(&self, i: usize) -> Option<(&AccessSet, &(PrevLinks, Deps))> {
        let chunk = self.chunks.get(i / TREE_CHUNK)?.get()?;
        Some((chunk.sets.get(i % TREE_CHUNK)?, chunk.nodes.get(i % TREE_CHUNK)?))
    }

    /// Stops the run: the block is to run in order; `critical_path` is what the stats report.
    fn abort_in_order(&self, critical_path: usize) {
        self.critical_path.store(critical_path, Ordering::Relaxed);
        self.abort.store(true, Ordering::Release);
    }

    fn aborted(&self) -> bool {
        self.abort.load(Ordering::Acquire)
    }

    /// Waits until `ready` holds; `false` when the run was aborted meanwhile.
    fn wait(&self, ready: impl Fn() -> bool) -> bool {
        let mut spins = 0u32;
        while !ready() {
            if self.aborted() {
                return false;
            }
            spins += 1;
            if spins < 128 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        true
    }

    /// Builds the tree chunk by chunk, with the last touchers in `pieces` maps: the sets of the
    /// first transactions are `declared` (those declared beforehand: the probe's, or the whole
    /// block's), the rest are declared here by `access`. Aborts the run on a set that cannot be
    /// declared (the block runs in order), and when the longest chain grows past what the
    /// workers gain from ([`too_long`], judged from the 512th transaction on).
    fn build(
        &self,
        txs: &[Transaction],
        access: impl Fn(&Transaction) -> AccessSet,
        declared: Vec<AccessSet>,
        pieces: usize,
    ) {
        let n = txs.len();
        let mut b = DttBuilder::with_pieces(n, pieces);
        let mut declared = declared.into_iter();
        for (c, part) in txs.chunks(TREE_CHUNK).enumerate() {
            if self.aborted() {
                return;
            }
            let mut sets: Vec<AccessSet> = declared.by_ref().take(part.len()).collect();
            sets.extend(part[sets.len()..].iter().map(&access));
            if sets.iter().any(|s| s.opaque) {
                return self.abort_in_order(n);
            }
            let nodes: Vec<(PrevLinks, Deps)> = sets.iter().map(|s| b.push(s)).collect();
            let built = (c + 1) * TREE_CHUNK;
            if built >= 2 * TREE_CHUNK && too_long(b.critical_path(), built.min(n)) {
                return self.abort_in_order(b.critical_path());
            }
            let _ = self.chunks[c].set(Chunk { sets, nodes });
        }
        self.critical_path.store(b.critical_path(), Ordering::Relaxed);
        let _ = self.last.set(b.finish());
    }
}

/// Sets the tree's abort flag if the thread holding it unwinds (a panicking worker or builder), so
/// that no other thread waits for it forever.
struct AbortOnPanic<'t>(&'t Tree);

impl Drop for AbortOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.abort.store(true, Ordering::Release);
        }
    }
}

/// The value of `a` as left by transaction `at` or the nearest earlier one that wrote it; `Ok(None)`
/// when no transaction up to `at` wrote it. `Err` when an earlier transaction failed (its result is
/// discarded anyway).
fn resolve(a: &Address, mut at: Option<u32>, slots: &[Slot], tree: &Tree) -> Result<Option<Account>, ()> {
    while let Some(j) = at {
        let j = j as usize;
        match slots[j].get() {
            Some(Ok(TxOutcome::Applied { writes, .. })) => {
                if let Some((_, acct)) = writes.iter().rev().find(|(x, _)| x == a) {
                    return Ok(Some(*acct));
                }
            }
            Some(Ok(TxOutcome::Invalid(_))) => {}
            Some(Err(_)) | None => return Err(()),
        }
        let (_, (links, _)) = tree.node(j).ok_or(())?;
        at = prev_of(links, a);
    }
    Ok(None)
}

fn encode_account(a: &Address, acct: &Account) -> Change {
    (account_key(a), Some(aergo_primitives::types::to_vec_exact(acct)))
}

/// Contract and governance keys written by the block's transactions so far: per key, (transaction,
/// value) for each writer that finished. A transaction reads the value of the latest writer before
/// it; the tree guarantees that every earlier writer of a key it declared has finished, and
/// undeclared keys are refused, so that value is final. Sharded by key hash so that the workers'
/// point reads and publications rarely meet on one lock; a scan (a whole-table access, rare) visits
/// every shard.
struct MvMemory {
    shards: Vec<parking_lot::RwLock<MvShard>>,
}

type MvShard = FastMap<Vec<u8>, SmallVec<[(u32, Option<Vec<u8>>); 1]>>;

const MV_SHARDS: usize = 64;

impl MvMemory {
    /// A map sized for about `keys` keys, so that the workers publishing into it do not grow
    /// (rehash) its shards as they go: growing them was a tenth of a worker's time in a block of
    /// token transfers.
    fn with_capacity(keys: usize) -> MvMemory {
        // An eighth more than an even share: the shards' loads vary by a few percent.
        let per = keys.div_ceil(MV_SHARDS) * 9 / 8;
        let shard = || parking_lot::RwLock::new(MvShard::with_capacity_and_hasher(per, Default::default()));
        MvMemory { shards: (0..MV_SHARDS).map(|_| shard()).collect() }
    }

    /// About how many keys `set` lets a transaction write: each row and its entry in every index
    /// of its table (the old one deleted, the new one written); a whole table or contract, a
    /// few; a governance transaction, its stake or vote and the candidates whose votes it moves.
    fn expected_writes(set: &AccessSet) -> usize {
        let system = 4 * usize::from(set.system);
        let Some(c) = &set.contract else { return system };
        let indexes = |t: u8| c.index_tables.iter().filter(|x| **x == t).count();
        let rows: usize = c.rows.iter().map(|(t, _)| 1 + 2 * indexes(*t)).sum();
        system + rows + 8 * (c.tables.len() + usize::from(c.whole))
    }

    fn shard(&self, key: &[u8]) -> &parking_lot::RwLock<MvShard> {
        use std::hash::BuildHasher;
        // Middle bits: the shard's own table takes its bucket from the hash's low bits and its
        // control tags from the top seven, so a shard chosen by either would hold keys that all
        // look alike there (the top bits made every probe compare keys: 10 % of a worker's time).
        &self.shards[(rustc_hash::FxBuildHasher.hash_one(key) >> 32) as usize % MV_SHARDS]
    }

    /// Each key's versions are kept in transaction order, so that finding a version is a binary
    /// search: a hot row or key has a version per transaction that writes it (thousands in a
    /// block), and scanning them on every read and write made a hot contract row quadratic.
    fn publish(&self, i: u32, writes: Vec<Change>) {
        for (k, v) in writes {
            let mut shard = self.shard(&k).write();
            let e = shard.entry(k).or_default();
            match e.binary_search_by_key(&i, |(j, _)| *j) {
                Ok(at) => e[at].1 = v,
                // Mostly at the end: a key's writers finish in about block order.
                Err(at) => e.insert(at, (i, v)),
            }
        }
    }

    /// The writes of each transaction before `upto`, given back to their outcomes (the in-order
    /// re-execution and [`assemble`] need them).
    fn restore(&self, outcomes: &mut [TxOutcome], upto: usize) {
        for shard in &self.shards {
            for (k, vs) in shard.read().iter() {
                for (j, v) in vs {
                    if let Some(TxOutcome::Applied { system, .. }) = outcomes.get_mut(*j as usize) {
                        if (*j as usize) < upto {
                            system.push((k.clone(), v.clone()));
                        }
                    }
                }
            }
        }
    }

    fn latest_before(versions: &[(u32, Option<Vec<u8>>)], i: u32) -> Option<&Option<Vec<u8>>> {
        let before = versions.partition_point(|(j, _)| *j < i);
        before.checked_sub(1).map(|at| &versions[at].1)
    }

    /// `Some(value)` when a transaction before `i` wrote `key`.
    fn read(&self, key: &[u8], i: u32) -> Option<Option<Vec<u8>>> {
        let shard = self.shard(key).read();
        shard.get(key).and_then(|vs| Self::latest_before(vs, i)).cloned()
    }

    /// The block's writes before `i` under `prefix`, in key order.
    fn scan(&self, prefix: &[u8], i: u32) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let shard = shard.read();
            out.extend(
                shard
                    .iter()
                    .filter(|(k, _)| k.starts_with(prefix))
                    .filter_map(|(k, vs)| Self::latest_before(vs, i).map(|v| (k.clone(), v.clone()))),
            );
        }
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The final value of every key written (by its last writer in block order), gathered from
    /// the shards on `threads` threads; unsorted.
    fn finals(self, threads: usize) -> Vec<Change> {
        if self.shards.iter().all(|s| s.read().is_empty()) {
            return Vec::new();
        }
        let mut parts: Vec<Vec<parking_lot::RwLock<MvShard>>> =
            (0..threads.max(1)).map(|_| Vec::new()).collect();
        let n = parts.len();
        for (i, shard) in self.shards.into_iter().enumerate() {
            parts[i % n].push(shard);
        }
        let runs: Vec<Vec<Change>> = std::thread::scope(|s| {
            let handles: Vec<_> = parts
                .into_iter()
                .map(|part| {
                    s.spawn(move || {
                        let mut run: Vec<Change> =
                            Vec::with_capacity(part.iter().map(|s| s.read().len()).sum());
                        run.extend(
                            part.into_iter()
                                .flat_map(|shard| shard.into_inner().into_iter())
                                .filter_map(|(k, vs)| vs.into_iter().next_back().map(|(_, v)| (k, v))),
                        );
                        run
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
        });
        runs.into_iter().flatten().collect()
    }
}

/// One transaction's view of the state while it runs on a worker.
struct Local<'a, V: StateView> {
    view: &'a V,
    /// The worker's reader of the parent state, kept across its transactions.
    reader: &'a mut dyn StateRead,
    index: u32,
    set: &'a AccessSet,
    prev: &'a [(Address, Option<u32>)],
    tree: &'a Tree,
    slots: &'a [Slot],
    mv: &'a MvMemory,
    contracts: &'a BlockContracts,
    writes: SmallVec<[(Address, Account); 2]>,
    raw: Vec<Change>,
}

impl<V: StateView> Local<'_, V> {
    fn check(&self, key: &[u8], use_: KeyUse) -> Result<(), ExecError> {
        if self.set.allows_key(key, use_) {
            Ok(())
        } else {
            Err(ExecError::Undeclared(format!("key {} ({use_:?})", hex::encode(key))))
        }
    }
}

impl<V: StateView> Accounts for Local<'_, V> {
    fn get(&mut self, a: &Address) -> Result<Account, ExecError> {
        if !self.set.allows_account(a) {
            return Err(ExecError::Undeclared(format!("account {a}")));
        }
        if let Some((_, acct)) = self.writes.iter().rev().find(|(x, _)| x == a) {
            return Ok(*acct);
        }
        match resolve(a, prev_of(self.prev, a), self.slots, self.tree) {
            Ok(Some(acct)) => Ok(acct),
            Ok(None) => Ok(self.reader.account(a)?),
            Err(()) => Err(ExecError::Undeclared(format!("account {a} (an earlier transaction failed)"))),
        }
    }

    fn set(&mut self, a: Address, account: Account) -> Result<(), ExecError> {
        if !self.set.allows_account(&a) {
            return Err(ExecError::Undeclared(format!("account {a}")));
        }
        self.writes.push((a, account));
        Ok(())
    }

    fn get_raw(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError> {
        self.check(key, KeyUse::Read)?;
        if let Some((_, v)) = self.raw.iter().rev().find(|(k, _)| k == key) {
            return Ok(v.clone());
        }
        match self.mv.read(key, self.index) {
            Some(v) => Ok(v),
            None => Ok(self.reader.raw(key)?),
        }
    }

    fn set_raw(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), ExecError> {
        self.check(&key, KeyUse::Write)?;
        self.raw.push((key, value));
        Ok(())
    }

    fn scan_raw(&mut self, prefix: &[u8]) -> Result<Entries, ExecError> {
        self.check(prefix, KeyUse::Scan)?;
        let base = self.view.scan(prefix)?;
        let mut block = self.mv.scan(prefix, self.index);
        for (k, v) in self.raw.iter().filter(|(k, _)| k.starts_with(prefix)) {
            match block.binary_search_by(|(x, _)| x.as_slice().cmp(k)) {
                Ok(p) => block[p].1 = v.clone(),
                Err(p) => block.insert(p, (k.clone(), v.clone())),
            }
        }
        Ok(aergo_sql::store::merge(base, block))
    }

    fn contract(&mut self, a: &Address) -> Result<Found, ExecError> {
        let Some(c) = self.contracts.get(a) else { return super::contract::load(self, a) };
        // The script is not read, but the call still reads it: the same check.
        self.check(&code_key(a), KeyUse::Read)?;
        Ok(Found::Ready(c.clone()))
    }
}

/// The final value of every account of one piece of the address space that the block's
/// transactions wrote, but the producer's (its fees come last), encoded in key order: the last
/// toucher of each (in `last`) or the nearest earlier writer left it. `None` when the run was
/// aborted meanwhile. `room`: how many changes to make room for.
fn encode_piece(
    last: &LastTouchers,
    producer: &Address,
    slots: &[Slot],
    done: &[AtomicBool],
    tree: &Tree,
    room: usize,
) -> Option<Vec<Change>> {
    let mut finals: Vec<(Address, Account)> = Vec::with_capacity(last.len());
    for (a, &i) in last {
        if a == producer {
            continue;
        }
        if !tree.wait(|| done[i as usize].load(Ordering::Acquire)) {
            return None;
        }
        // `Err`: an earlier transaction failed, and the block is re-run or refused: no result.
        if let Ok(Some(acct)) = resolve(a, Some(i), slots, tree) {
            finals.push((*a, acct));
        }
    }
    finals.sort_unstable_by_key(|(a, _)| a.0);
    let mut changes = Vec::with_capacity(room.max(finals.len()));
    changes.extend(finals.iter().map(|(a, acct)| encode_account(a, acct)));
    Some(changes)
}

/// The receipts of a block in which every transaction applied, and their fees: collected by the
/// calling thread while the other workers encode final values. `None` if some transaction did
/// not apply (invalid, failed, or outside its set): the merge sorts that out.
fn collect_receipts(slots: &[Slot], done: &[AtomicBool], tree: &Tree) -> Collected {
    let mut receipts = Vec::with_capacity(slots.len());
    let mut fees: Amount = 0;
    for (slot, done) in slots.iter().zip(done) {
        if !tree.wait(|| done.load(Ordering::Acquire)) {
            return None;
        }
        let Some(Ok(TxOutcome::Applied { receipt, .. })) = slot.get() else { return None };
        fees = fees.saturating_add(receipt.fee);
        receipts.push(receipt.clone());
    }
    Some((receipts, fees))
}

/// What every worker of one block reads and writes.
#[derive(Clone, Copy)]
struct Shared<'a> {
    txs: &'a [Transaction],
    tree: &'a Tree,
    slots: &'a [Slot],
    done: &'a [AtomicBool],
    /// The next transaction to claim.
    next: &'a AtomicUsize,
    mv: &'a MvMemory,
    contracts: &'a BlockContracts,
    /// Each piece's final values, encoded, and the next piece to claim.
    encoded: &'a [OnceLock<Vec<Change>>],
    next_piece: &'a AtomicUsize,
}

/// What the calling thread (worker 0) hands back besides the pieces: the receipts and fees, when
/// every transaction applied.
type Collected = Option<(Vec<Receipt>, Amount)>;

impl ParallelExecutor {
    /// One worker per core, pinned to it.
    pub fn new(cores: Vec<usize>) -> ParallelExecutor {
        let threads = cores.len().max(1);
        ParallelExecutor { cores, threads, min_txs: MIN_PARALLEL_TXS }
    }

    /// `threads` workers spread over `cores` (round robin); no pinning when `cores` is empty.
    pub fn with_threads(threads: usize, cores: Vec<usize>) -> ParallelExecutor {
        ParallelExecutor { cores, threads: threads.max(1), min_txs: MIN_PARALLEL_TXS }
    }

    /// Blocks with fewer transactions than this run sequentially (default 64).
    pub fn min_parallel_txs(mut self, n: usize) -> ParallelExecutor {
        self.min_txs = n;
        self
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn cores(&self) -> &[usize] {
        &self.cores
    }

    /// The core worker `w` is pinned to (round robin over the cores); `None` when not pinning.
    fn core_of(&self, w: usize) -> Option<usize> {
        (!self.cores.is_empty()).then(|| self.cores[w % self.cores.len()])
    }

    /// Verifies the signatures of `txs` in batches ([`aergo_primitives::crypto::verify_batch`]) spread over the
    /// workers' cores; one answer per transaction, in order, equal to verifying each alone. Each
    /// thread (this one among them) claims the next batch when it finishes one, so a core the host
    /// slows down does fewer batches instead of holding the others back with a fixed half. The
    /// batches are of equal length ([`verify_batch_len`]), so the threads also finish together.
    pub fn verify_signatures(
        &self,
        txs: &[Transaction],
    ) -> Vec<Result<(), aergo_primitives::crypto::SignatureError>> {
        self.verify_signature_refs(&txs.iter().collect::<Vec<_>>())
    }

    /// [`Self::verify_signatures`] of some transactions (a block's, less those checked before).
    pub fn verify_signature_refs(
        &self,
        txs: &[&Transaction],
    ) -> Vec<Result<(), aergo_primitives::crypto::SignatureError>> {
        if self.threads <= 1 || txs.len() < self.min_txs.max(2) {
            return txs
                .chunks(verify_batch_len(txs.len(), 1))
                .flat_map(|c| aergo_primitives::crypto::verify_txs(c.iter().copied()))
                .collect();
        }
        let batches: Vec<&[&Transaction]> = txs.chunks(verify_batch_len(txs.len(), self.threads)).collect();
        let answers: Vec<OnceLock<Vec<Result<(), aergo_primitives::crypto::SignatureError>>>> =
            batches.iter().map(|_| OnceLock::new()).collect();
        let next = AtomicUsize::new(0);
        let claim = || {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                let Some(batch) = batches.get(b) else { break };
                let _ = answers[b].set(aergo_primitives::crypto::verify_txs(batch.iter().copied()));
            }));
        };
        std::thread::scope(|s| {
            for w in 1..self.threads.min(batches.len()) {
                let core = self.core_of(w);
                let job = move || {
                    if let Some(core) = core {
                        let _ = pin_current_thread(core);
                    }
                    claim()
                };
                // Fewer threads only make it slower: the others claim every batch.
                let _ = std::thread::Builder::new().name(format!("aergo-verify-{w}")).spawn_scoped(s, job);
            }
            let _pinned = self.core_of(0).and_then(|core| pin_current_thread_for_now(core).ok());
            claim();
        });
        // A batch whose thread panicked is checked again here, one signature at a time.
        answers
            .into_iter()
            .zip(batches)
            .flat_map(|(a, batch)| {
                a.into_inner().unwrap_or_else(|| {
                    batch.iter().map(|tx| aergo_primitives::crypto::verify_tx(tx)).collect()
                })
            })
            .collect()
    }

    /// Executes `txs` with the transactions' declared access sets.
    pub fn execute<V: StateView>(
        &self,
        view: &V,
        ctx: &BlockContext,
        txs: Vec<Transaction>,
        mode: Mode,
    ) -> Result<ExecOutput, ExecError> {
        self.execute_stats(view, ctx, txs, mode).map(|(out, _)| out)
    }

    /// [`Self::execute`], with what the run did.
    pub fn execute_stats<V: StateView>(
        &self,
        view: &V,
        ctx: &BlockContext,
        txs: Vec<Transaction>,
        mode: Mode,
    ) -> Result<(ExecOutput, ExecStats), ExecError> {
        if txs.iter().all(|t| !t.body.payload.is_contract()) {
            return self.execute_with(view, ctx, txs, mode, access::declared, &BlockContracts::default());
        }
        let analyzer = access::Analyzer::new(view, &txs);
        self.execute_with(view, ctx, txs, mode, |tx| analyzer.declared(tx), analyzer.contracts())
    }

    /// Executes `txs` with access sets from `access` (tests use a lying one), calling the
    /// `contracts` of the parent state.
    pub fn execute_with<V: StateView, F: Fn(&Transaction) -> AccessSet + Sync>(
        &self,
        view: &V,
        ctx: &BlockContext,
        txs: Vec<Transaction>,
        mode: Mode,
        access: F,
        contracts: &BlockContracts,
    ) -> Result<(ExecOutput, ExecStats), ExecError> {
        let n = txs.len();
        let started = std::time::Instant::now();
        if self.threads <= 1 || n < self.min_txs.max(2) {
            let stats = ExecStats { threads: 1, critical_path: n, ..Default::default() };
            return execute_block(view, ctx, txs, mode).map(|out| (out, stats));
        }
        // A probe first: the first transactions of a large block, declared and analysed alone. A
        // hot account or row shows there as it does in the whole block; such blocks run in order
        // having paid for a small part of the analysis rather than all of it.
        let probe_len = if n >= PROBE_MIN_TXS { PROBE_TXS } else { 0 };
        let probe: Vec<AccessSet> = txs[..probe_len].iter().map(&access).collect();
        if probe_len > 0 && probe.iter().all(|s| !s.opaque) {
            let probe = Dtt::build(&probe).critical_path();
            if too_long(probe, probe_len) {
                let analysis_ns = started.elapsed().as_nanos() as u64;
                let stats = ExecStats { threads: 1, critical_path: probe, analysis_ns, ..Default::default() };
                return execute_block(view, ctx, txs, mode).map(|out| (out, stats));
            }
        }
        // Declaring is independent per transaction. Large blocks with contract calls (whose sets
        // take a microsecond or so each) declare on every core before the workers start; in
        // other blocks the tree's builder declares the sets past the probe's as it goes (a
        // transfer's set costs less than starting a thread, and the workers start on the first
        // chunk meanwhile). The probe's sets are not declared twice.
        let rest = &txs[probe_len..];
        let mut declared = probe;
        if rest.len() >= 1024 && rest.iter().any(|t| t.body.payload.is_contract()) {
            let access = &access;
            declared.extend(std::thread::scope(|s| {
                let parts: Vec<_> = rest
                    .chunks(rest.len().div_ceil(self.threads))
                    .map(|part| {
                        let job = move || part.iter().map(access).collect::<Vec<_>>();
                        (part, std::thread::Builder::new().name("aergo-declare".into()).spawn_scoped(s, job))
                    })
                    .collect();
                parts
                    .into_iter()
                    .flat_map(|(part, h)| match h {
                        Ok(h) => h.join().unwrap_or_default(),
                        Err(_) => part.iter().map(access).collect(),
                    })
                    .collect::<Vec<_>>()
            }));
            if declared.len() != n {
                // A declaring thread panicked: run the block in order.
                let stats = ExecStats { threads: 1, critical_path: n, ..Default::default() };
                return execute_block(view, ctx, txs, mode).map(|out| (out, stats));
            }
        }
        let expected_writes = declared.iter().map(MvMemory::expected_writes).sum();
        let analysis_ns = started.elapsed().as_nanos() as u64;
        let started = std::time::Instant::now();
        let pieces = (self.threads * PIECES_PER_WORKER).min(256);
        let tree = Tree::new(n);
        let slots: Vec<Slot> = (0..n).map(|_| OnceLock::new()).collect();
        let done: Vec<AtomicBool> = (0..n).map(|_| AtomicBool::new(false)).collect();
        let (next, next_piece) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let encoded: Vec<OnceLock<Vec<Change>>> = (0..pieces).map(|_| OnceLock::new()).collect();
        let mv = MvMemory::with_capacity(expected_writes);
        let shared = Shared {
            txs: &txs,
            tree: &tree,
            slots: &slots,
            done: &done,
            next: &next,
            mv: &mv,
            contracts,
            encoded: &encoded,
            next_piece: &next_piece,
        };
        let mut build_ns = 0;
        let collected: Collected = std::thread::scope(|s| {
            let handles: Vec<_> = (1..self.threads)
                .filter_map(|w| {
                    let job = move || self.work(w, self.core_of(w), view, ctx, shared);
                    let spawned =
                        std::thread::Builder::new().name(format!("aergo-exec-{w}")).spawn_scoped(s, job);
                    // Fewer workers only make it slower: the others claim everything.
                    spawned.map_err(|e| tracing::warn!(error = %e, "cannot start an execution worker")).ok()
                })
                .collect();
            // This thread is worker 0, on the first core: it builds the tree while the others run
            // what it has published, then claims transactions too. (A builder beside `threads`
            // workers made one thread more than cores: worker 0 waited up to 2 ms for its core.)
            let _pinned = self.core_of(0).and_then(|core| {
                pin_current_thread_for_now(core)
                    .map_err(|e| tracing::warn!(error = %e, "execution thread not pinned"))
                    .ok()
            });
            let built = std::time::Instant::now();
            {
                let _guard = AbortOnPanic(&tree);
                // Native transfers out of contracts cannot be declared: the builder aborts on
                // them and such blocks (rare) run in order.
                tree.build(&txs, &access, declared, pieces);
            }
            build_ns = built.elapsed().as_nanos() as u64;
            let own = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.work(0, None, view, ctx, shared)
            }));
            for h in handles {
                let _ = h.join();
            }
            own.unwrap_or_default()
        });
        let critical_path = tree.critical_path.load(Ordering::Relaxed);
        if tree.aborted() || tree.last.get().is_none() {
            // Too long a chain for the workers (found while building), or a thread died: in order.
            let stats = ExecStats { threads: 1, critical_path, ..Default::default() };
            return execute_block(view, ctx, txs, mode).map(|out| (out, stats));
        }
        let analysis_ns = analysis_ns + build_ns;
        let run_ns = started.elapsed().as_nanos() as u64;
        let started = std::time::Instant::now();

        let last = tree.last.get().ok_or(ExecError::Internal("the tree".into()))?;
        // The producer's account before its fees: it needs the slots, so first.
        let mut extra: Vec<Change> = Vec::new();
        let producer_last = last[piece_of(&ctx.producer, last.len())].get(&ctx.producer).copied();
        let producer_before = resolve(&ctx.producer, producer_last, &slots, &tree).ok().flatten();
        // First a look without moving anything: where to re-run from, if anywhere (not needed
        // when worker 0 found every transaction applied).
        let mut redo_from = None;
        let mut failed = None;
        if collected.is_none() {
            for (i, slot) in slots.iter().enumerate() {
                match slot.get() {
                    Some(Ok(_)) => {}
                    Some(Err(ExecError::Undeclared(what))) => {
                        tracing::warn!(index = i, tx = %txs[i].hash(), touched = %what,
                            "transaction touched state outside its declared access set; re-executing the rest of the block in order");
                        redo_from = Some(i);
                        break;
                    }
                    Some(Err(_)) => {
                        failed = Some(i);
                        break;
                    }
                    None => {
                        // Every claimed transaction is executed; a missing one means a worker died.
                        redo_from = Some(i);
                        break;
                    }
                }
            }
        }
        let mut stats =
            ExecStats { threads: self.threads, critical_path, analysis_ns, run_ns, ..Default::default() };
        if let Some(v) = redo_from {
            let mut outcomes = Vec::with_capacity(n);
            for slot in slots.into_iter().take(v) {
                match slot.into_inner() {
                    Some(Ok(outcome)) => outcomes.push(outcome),
                    Some(Err(e)) => return Err(e),
                    None => return Err(ExecError::Internal("a transaction before the re-run".into())),
                }
            }
            // The workers moved each transaction's contract writes into the map; give them back.
            mv.restore(&mut outcomes, v);
            let mut overlay = Overlay::new(view);
            for outcome in &outcomes {
                if let TxOutcome::Applied { writes, system, .. } = outcome {
                    overlay.apply_writes(writes, system);
                }
            }
            for tx in &txs[v..] {
                outcomes.push(apply_tx(tx, ctx, &mut overlay)?);
            }
            stats.reexecuted = n - v;
            return assemble(view, ctx, txs, outcomes, mode).map(|out| (out, stats));
        }

        // Everything ran in parallel: the pieces of the accounts, one after another in key order
        // (a piece no worker got to is encoded here); then the map's final values and the block's
        // own, sorted and merged in.
        let mut accounts: Vec<Change> = Vec::new();
        for (p, piece) in encoded.into_iter().enumerate() {
            let piece = match piece.into_inner() {
                Some(piece) => piece,
                None => encode_piece(&last[p], &ctx.producer, &slots, &done, &tree, 0)
                    .ok_or(ExecError::Internal("the final values".into()))?,
            };
            // The first piece has room for the rest.
            if p == 0 {
                accounts = piece;
            } else {
                accounts.extend(piece);
            }
        }
        let mut changes = mv.finals(self.threads);
        if let Some(i) = failed {
            // A state error (the database), not the transaction's: the block cannot be executed.
            if let Some(Some(Err(e))) = slots.into_iter().nth(i).map(OnceLock::into_inner) {
                return Err(e);
            }
            return Err(ExecError::Internal(format!("transaction {i} failed")));
        }
        let (mut out, fees) = match collected {
            Some((receipts, fees)) => (ExecOutput { receipts, included: txs, ..Default::default() }, fees),
            None => {
                // Every slot holds an outcome (checked above): taken in order, not copied into a
                // list first.
                let mut slots = slots.into_iter();
                let outcome =
                    |index: usize, _: &Transaction| match slots.next().and_then(OnceLock::into_inner) {
                        Some(result) => result,
                        None => Err(ExecError::Internal(format!("no outcome for transaction {index}"))),
                    };
                collect_outcomes(txs, mode, outcome, |_, _| {})?
            }
        };
        if fees > 0 || producer_before.is_some() {
            let mut producer = match producer_before {
                Some(acct) => acct,
                None => view.account(&ctx.producer)?,
            };
            producer.balance = producer.balance.saturating_add(fees);
            extra.push(encode_account(&ctx.producer, &producer));
        }
        extra.push((
            HEAD_KEY.to_vec(),
            Some(aergo_primitives::types::to_vec_exact(&(ctx.height, ctx.timestamp_ms))),
        ));
        changes.extend(extra);
        accounts.reserve(changes.len());
        out.changes = ChangeSet::from_sorted_and_unsorted(accounts, changes);
        stats.merge_ns = started.elapsed().as_nanos() as u64;
        Ok((out, stats))
    }

    /// One worker's loop: claim a run of [`CLAIM`] transactions, and for each wait for its place in
    /// the tree and for its dependencies, execute, publish. Once every transaction is claimed and
    /// the tree complete, worker 0 collects the receipts ([`collect_receipts`]); then every worker
    /// claims pieces of the address space and encodes their final values ([`encode_piece`]).
    fn work<V: StateView>(
        &self,
        w: usize,
        core: Option<usize>,
        view: &V,
        ctx: &BlockContext,
        sh: Shared<'_>,
    ) -> Collected {
        let tree = sh.tree;
        let _guard = AbortOnPanic(tree);
        if let Some(core) = core {
            if let Err(e) = pin_current_thread(core) {
                tracing::warn!(error = %e, "execution worker not pinned");
            }
        }
        let mut reader = view.reader();
        // Claimed transactions whose dependencies were not done yet, oldest first.
        let mut deferred: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
        let ready = |i: usize| -> Option<bool> {
            let (_, (_, deps)) = tree.node(i)?;
            Some(deps.iter().all(|&d| sh.done[d as usize].load(Ordering::Acquire)))
        };
        let mut run = |i: usize| {
            let Some((set, (prev, _))) = tree.node(i) else { return };
            let mut local = Local {
                view,
                reader: &mut *reader,
                index: i as u32,
                set,
                prev,
                tree,
                slots: sh.slots,
                mv: sh.mv,
                contracts: sh.contracts,
                writes: SmallVec::new(),
                raw: Vec::new(),
            };
            let mut result = apply_tx(&sh.txs[i], ctx, &mut local);
            if let Ok(TxOutcome::Applied { system, .. }) = &mut result {
                // Moved, not copied: the map is where they are read from and merged.
                if !system.is_empty() {
                    sh.mv.publish(i as u32, std::mem::take(system));
                }
            }
            let _ = sh.slots[i].set(result);
            sh.done[i].store(true, Ordering::Release);
        };
        // Runs the deferred transactions that became ready, oldest first, in one pass (one may
        // make a later one ready; none depends on a later one); how many ran.
        let run_deferred = |deferred: &mut std::collections::VecDeque<usize>, run: &mut dyn FnMut(usize)| {
            let mut ran = 0;
            deferred.retain(|&i| {
                if ready(i) == Some(true) {
                    run(i);
                    ran += 1;
                    false
                } else {
                    true
                }
            });
            ran
        };
        let mut claiming = true;
        loop {
            if tree.aborted() {
                return None;
            }
            run_deferred(&mut deferred, &mut run);
            if claiming && deferred.len() < MAX_DEFERRED {
                let from = sh.next.fetch_add(CLAIM, Ordering::Relaxed);
                if from >= sh.txs.len() {
                    claiming = false;
                    continue;
                }
                for i in from..(from + CLAIM).min(sh.txs.len()) {
                    if !tree.wait(|| tree.node(i).is_some()) {
                        return None;
                    }
                    // A transaction waiting for another is put aside, and the worker goes on
                    // with the next: the independent ones run beside a chain of dependent ones.
                    if ready(i) == Some(true) {
                        run(i);
                    } else {
                        deferred.push_back(i);
                    }
                    // The chain waiting here moves on as soon as its next link is ready here,
                    // not a whole run later (it passes between the workers in short stretches).
                    if deferred.front().is_some_and(|&oldest| ready(oldest) == Some(true)) {
                        run_deferred(&mut deferred, &mut run);
                    }
                }
                continue;
            }
            if deferred.is_empty() {
                break;
            }
            // Nothing to claim (or enough put aside): wait for the oldest one's dependencies.
            let oldest = deferred[0];
            if !tree.wait(|| ready(oldest) == Some(true)) {
                return None;
            }
        }
        drop(reader);
        if !tree.wait(|| tree.last.get().is_some()) {
            return None;
        }
        let last = tree.last.get()?;
        let collected = if w == 0 { collect_receipts(sh.slots, sh.done, tree) } else { None };
        // The first piece is where the others are appended: room for every account, the producer
        // and the block's own keys.
        let room = last.iter().map(|m| m.len()).sum::<usize>() + 2;
        loop {
            let p = sh.next_piece.fetch_add(1, Ordering::Relaxed);
            if p >= last.len() {
                break;
            }
            let piece = encode_piece(
                &last[p],
                &ctx.producer,
                sh.slots,
                sh.done,
                tree,
                if p == 0 { room } else { 0 },
            )?;
            let _ = sh.encoded[p].set(piece);
        }
        collected
    }
}
