//! The admission stage: signature checks on a pool of threads, then admission to the mempool in
//! batches, behind a bounded queue.
//!
//! ```text
//! RPC handlers ──try_send──► [bounded queue] ──► verifier threads: take up to BATCH jobs,
//!   (decode, chain id)        full → "busy"        one batch signature check (single checks name
//!                                                  the bad ones), read the senders' accounts,
//!                                                  lock the pool once, admit all, answer each
//! ```
//! A full queue answers `busy` at once rather than letting memory grow (back-pressure at the edge).
//! Signatures are checked with [`crypto::verify_txs`]: a ZIP-215 batch check that agrees with the
//! single check blocks are imported with on every input, so the pool never admits what a block
//! would be refused for.

use crate::{AdmitError, Admitted, Mempool};
use aergo_api::StageMetrics;
use aergo_exec::BlockContext;
use aergo_primitives::crypto;
use aergo_primitives::types::Transaction;
use aergo_storage::StateStore;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

/// Most jobs one verifier takes at a time (one pool lock per batch).
const BATCH: usize = 256;

/// At or under this many transactions a second through the stage (both verifiers), the
/// verifiers ask for short time slices.
const LIGHT_RATE: u64 = 1_500;

/// At or over this many, they go back to the default slices. The gap between the two keeps a
/// rate near one of them from switching at every look.
const HEAVY_RATE: u64 = 2_500;

/// How long a verifier counts the stage's transactions before it looks at the rate again.
const RATE_WINDOW: std::time::Duration = std::time::Duration::from_millis(500);

/// Whether a verifier asks the scheduler for short time slices ([`aergo_exec::affinity::prefer_latency`]),
/// from the rate of transactions through the stage.
///
/// A submitter waits for the verifier's answer, and a lightly loaded node answers in a fraction
/// of a millisecond; but a verifier that wakes while the chain imports a block (long stretches of
/// work on the same cores, and on a box of several nodes several imports at once) waits for a
/// core behind it. With short slices the scheduler lets the verifier preempt them, and the answer
/// comes in time. Under load that would preempt the chain at every batch and delay the blocks that
/// include the transactions (measured: `docs/exec.md`, "Short time slices while the stage is
/// lightly loaded"), so above [`HEAVY_RATE`] the verifiers work with the default slices. The rate,
/// not the batch a verifier takes, tells the two apart: two verifiers drain the queue as it fills,
/// so their batches stay small even under load.
struct Slices {
    short: Option<bool>,
    since: Instant,
    processed_then: u64,
}

impl Slices {
    fn new(stats: &StageStats) -> Self {
        Slices { short: None, since: Instant::now(), processed_then: stats.processed.load(Ordering::Relaxed) }
    }

    /// After taking a batch: once a [`RATE_WINDOW`], the rate decides.
    fn look(&mut self, stats: &StageStats) {
        let Some(short) = self.decide(stats.processed.load(Ordering::Relaxed), Instant::now()) else {
            return;
        };
        if let Err(e) = aergo_exec::affinity::prefer_latency(short) {
            tracing::debug!(error = %e, "the admission thread's time slice stays as it was");
        }
    }

    /// With `processed` transactions through the stage so far, at `now`: the slices to switch
    /// to, if the window is over and the rate calls for a change.
    fn decide(&mut self, processed: u64, now: Instant) -> Option<bool> {
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed < RATE_WINDOW {
            return None;
        }
        let rate =
            processed.saturating_sub(self.processed_then) * 1_000 / (elapsed.as_millis().max(1) as u64);
        self.since = now;
        self.processed_then = processed;
        let want = match rate {
            r if r >= HEAVY_RATE => false,
            r if r <= LIGHT_RATE => true,
            _ => return None,
        };
        if self.short == Some(want) {
            return None;
        }
        self.short = Some(want);
        tracing::debug!(rate, short = want, "admission time slices");
        Some(want)
    }
}

/// Counters of one stage, exported by `node_metrics`.
#[derive(Debug, Default)]
pub struct StageStats {
    pub depth: AtomicU64,
    pub processed: AtomicU64,
    pub busy_rejections: AtomicU64,
    pub busy_ns: AtomicU64,
}

impl StageStats {
    pub fn snapshot(&self, name: &str, capacity: u64) -> StageMetrics {
        StageMetrics {
            name: name.to_string(),
            queue_depth: self.depth.load(Ordering::Relaxed),
            queue_capacity: capacity,
            processed_total: self.processed.load(Ordering::Relaxed),
            busy_rejections_total: self.busy_rejections.load(Ordering::Relaxed),
            busy_ms_total: self.busy_ns.load(Ordering::Relaxed) / 1_000_000,
        }
    }
}

struct Job {
    tx: Transaction,
    bytes: usize,
    reply: tokio::sync::oneshot::Sender<Result<Admitted, AdmitError>>,
}

/// Handle to the admission stage. [`Admission::stop`] ends its threads (they hold the state store,
/// which must be closed before the process exits).
pub struct Admission {
    queue: SyncSender<Job>,
    capacity: usize,
    /// The branch whose pool this is: a transaction for any other is refused.
    branch: String,
    /// The chain's context for running transactions on the pending state.
    ctx: BlockContext,
    pub stats: Arc<StageStats>,
    stopping: Arc<AtomicBool>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// Dropped without [`Admission::stop`] (an error path, a test): the verifier threads still stop and
/// are waited for, so none outlives the state store it reads (a thread still in RocksDB while the
/// process exits crashes it: "pure virtual method called").
impl Drop for Admission {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Admission {
    /// Starts `threads` verifier threads behind a queue of `capacity` transactions. `ctx` names the
    /// chain (id, staking rules, this node as producer) for running admitted transactions on the
    /// pool's pending state; height and time are filled in per batch.
    pub fn start(
        threads: usize,
        capacity: usize,
        store: Arc<StateStore>,
        mempool: Arc<Mutex<Mempool>>,
        ctx: BlockContext,
        verified: Arc<crypto::Verified>,
    ) -> std::io::Result<Admission> {
        let (queue, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let branch = ctx.branch.clone();
        let stats = Arc::new(StageStats::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let (rx, store, mempool, stats, stopping, ctx, verified) = (
                rx.clone(),
                store.clone(),
                mempool.clone(),
                stats.clone(),
                stopping.clone(),
                ctx.clone(),
                verified.clone(),
            );
            let stage = Stage { store, mempool, stats, stopping, ctx, verified };
            handles.push(
                std::thread::Builder::new().name(format!("aergo-admit-{i}")).spawn(move || stage.run(&rx))?,
            );
        }
        Ok(Admission { queue, capacity, branch, ctx, stats, stopping, threads: Mutex::new(handles) })
    }

    /// The context of the next block on `store`'s head, now: what admission runs transactions in.
    pub fn next_context(&self, store: &StateStore) -> BlockContext {
        let head = store.head().ok().flatten();
        BlockContext {
            height: head.map_or(1, |h| h.height + 1),
            timestamp_ms: aergo_primitives::clock::now_ms(),
            ..self.ctx.clone()
        }
    }

    /// Stops the verifier threads after the jobs in hand and waits for them.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The branch whose pool this is.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// Refuses a transaction for another branch than this pool's (from the RPC, gossip and
    /// forwarding alike).
    pub fn check_branch(&self, tx: &Transaction) -> Result<(), AdmitError> {
        if tx.body.branch == self.branch {
            return Ok(());
        }
        Err(AdmitError::WrongBranch { expected: self.branch.clone(), got: tx.body.branch.clone() })
    }

    /// Queues many decoded transactions at once (a `send_txs` call): they reach the verifiers
    /// together and are answered together, in order. Those that do not fit in the queue are `busy`.
    pub async fn submit_many(&self, txs: Vec<(Transaction, usize)>) -> Vec<Result<Admitted, AdmitError>> {
        let mut answers = Vec::with_capacity(txs.len());
        for (tx, bytes) in txs {
            if let Err(e) = self.check_branch(&tx) {
                answers.push(Err(e));
                continue;
            }
            let (reply, answer) = tokio::sync::oneshot::channel();
            match self.queue.try_send(Job { tx, bytes, reply }) {
                Ok(()) => {
                    self.stats.depth.fetch_add(1, Ordering::Relaxed);
                    answers.push(Ok(answer));
                }
                Err(_) => {
                    self.stats.busy_rejections.fetch_add(1, Ordering::Relaxed);
                    answers.push(Err(AdmitError::Busy));
                }
            }
        }
        let mut out = Vec::with_capacity(answers.len());
        for answer in answers {
            out.push(match answer {
                Ok(a) => a.await.unwrap_or(Err(AdmitError::Busy)),
                Err(e) => Err(e),
            });
        }
        out
    }

    /// Queues a decoded transaction for verification and admission; `busy` when the queue is full.
    pub async fn submit(&self, tx: Transaction, bytes: usize) -> Result<Admitted, AdmitError> {
        self.check_branch(&tx)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        match self.queue.try_send(Job { tx, bytes, reply }) {
            Ok(()) => {
                self.stats.depth.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.busy_rejections.fetch_add(1, Ordering::Relaxed);
                return Err(AdmitError::Busy);
            }
        }
        answer.await.unwrap_or(Err(AdmitError::Busy))
    }
}

/// What one verifier thread works with.
struct Stage {
    store: Arc<StateStore>,
    mempool: Arc<Mutex<Mempool>>,
    stats: Arc<StageStats>,
    stopping: Arc<AtomicBool>,
    ctx: BlockContext,
    /// Where each transaction whose signature passed is remembered, so that the chain does not
    /// check it again inside a block.
    verified: Arc<crypto::Verified>,
}

impl Stage {
    fn run(&self, rx: &Mutex<Receiver<Job>>) {
        let Stage { store, mempool, stats, stopping, ctx, verified } = self;
        verify_loop(rx, store, mempool, stats, stopping, ctx, verified)
    }
}

fn verify_loop(
    rx: &Mutex<Receiver<Job>>,
    store: &StateStore,
    mempool: &Mutex<Mempool>,
    stats: &StageStats,
    stopping: &AtomicBool,
    ctx: &BlockContext,
    verified: &crypto::Verified,
) {
    let mut slices = Slices::new(stats);
    loop {
        let mut jobs = Vec::with_capacity(BATCH);
        {
            let rx = rx.lock();
            if stopping.load(Ordering::SeqCst) {
                return;
            }
            match rx.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(job) => jobs.push(job),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while jobs.len() < BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        stats.depth.fetch_sub(jobs.len() as u64, Ordering::Relaxed);
        slices.look(stats);
        let started = Instant::now();
        let mut checked = Vec::with_capacity(jobs.len());
        let verdicts = crypto::verify_txs(jobs.iter().map(|j| &j.tx));
        // A private repository takes transactions from its writers only (`docs/repositories.md`).
        let at = store.head().ok().flatten().map_or(0, |h| h.height);
        let mut rules = aergo_exec::members::Rules(|k: &[u8]| store.get_at(k, at));
        let private = rules.private().unwrap_or(false);
        for (job, verdict) in jobs.into_iter().zip(verdicts) {
            if let Err(e) = verdict {
                let _ = job.reply.send(Err(AdmitError::BadSignature(e.to_string())));
                continue;
            }
            verified.insert(&job.tx);
            let sender = job.tx.sender();
            if private && !aergo_exec::members::may_write(&mut rules, &sender).unwrap_or(false) {
                let _ = job.reply.send(Err(AdmitError::NotAWriter(sender)));
                continue;
            }
            match store.account(&sender) {
                Ok(account) => checked.push((job, account)),
                Err(e) => {
                    let _ = job.reply.send(Err(AdmitError::Malformed(format!("state read failed: {e}"))));
                }
            }
        }
        let n = checked.len() as u64;
        // The next block's context, for running each admitted transaction on the pending state.
        let head = store.head().ok().flatten();
        let ctx = BlockContext {
            height: head.map_or(1, |h| h.height + 1),
            timestamp_ms: aergo_primitives::clock::now_ms(),
            ..ctx.clone()
        };
        let waited = Instant::now();
        let answers: Vec<_> = {
            let mut pool = mempool.lock();
            let held = Instant::now();
            let answers: Vec<_> = checked
                .into_iter()
                .map(|(job, account)| {
                    let result = pool.admit(job.tx, job.bytes, account).map(|mut a| {
                        a.speculative = pool.speculate(&a.hash, &ctx, store);
                        a
                    });
                    (job.reply, result)
                })
                .collect();
            let (wait, hold) = (held.duration_since(waited), held.elapsed());
            if wait.as_micros() > 1000 || hold.as_micros() > 1000 {
                tracing::debug!(
                    txs = answers.len(),
                    wait_us = wait.as_micros() as u64,
                    hold_us = hold.as_micros() as u64,
                    "a slow admission batch"
                );
            }
            answers
        };
        for (reply, result) in answers {
            let _ = reply.send(result);
        }
        stats.processed.fetch_add(n, Ordering::Relaxed);
        stats.busy_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MempoolConfig;
    use aergo_primitives::crypto::Keypair;
    use aergo_primitives::types::Payload;
    use std::time::Duration;

    #[test]
    fn the_stage_asks_for_short_slices_while_lightly_loaded_only() {
        let stats = StageStats::default();
        let t0 = Instant::now();
        let mut slices = Slices::new(&stats);
        slices.since = t0;
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Within the first window nothing is decided; after it, 1 000/s is light.
        assert_eq!(slices.decide(300, at(300)), None);
        assert_eq!(slices.decide(500, at(500)), Some(true));
        // Light again: no call to make.
        assert_eq!(slices.decide(1_000, at(1_000)), None);
        // 5 000/s: the default slices again, once.
        assert_eq!(slices.decide(3_500, at(1_500)), Some(false));
        assert_eq!(slices.decide(6_000, at(2_000)), None);
        // 2 000/s, between the two thresholds: stays as it is.
        assert_eq!(slices.decide(7_000, at(2_500)), None);
        assert_eq!(slices.short, Some(false));
        // Idle for a while (a verifier sleeps on an empty queue): light.
        assert_eq!(slices.decide(7_010, at(12_500)), Some(true));
        // 1 500/s is light, 2 500/s is heavy.
        assert_eq!(slices.decide(7_760, at(13_000)), None);
        assert_eq!(slices.decide(9_010, at(13_500)), Some(false));
    }

    fn tx(key: &Keypair, nonce: u64) -> Transaction {
        aergo_primitives::crypto::test_tx(key, "c", nonce, key.address(), 0, 0, Payload::Transfer)
    }

    fn key_address() -> aergo_primitives::types::Address {
        Keypair::from_seed("bp").address()
    }

    // Holding the pool's lock across awaits is the point: it keeps the verifier busy.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_answers_busy_and_bad_signatures_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(StateStore::open(dir.path()).unwrap());
        let pool = Arc::new(Mutex::new(Mempool::new(MempoolConfig::default())));
        let ctx = BlockContext {
            chain_id: "c".into(),
            branch: aergo_primitives::types::MAIN_BRANCH.into(),
            height: 1,
            timestamp_ms: 0,
            producer: key_address(),
            staking: Default::default(),
            sql_ordered_scans_height: 0,
            replay: false,
        };
        let admission = Arc::new(
            Admission::start(1, 1, store, pool.clone(), ctx, Arc::new(crypto::Verified::new(64))).unwrap(),
        );
        let key = Keypair::from_seed("k");

        // Hold the pool: the verifier takes the first job and waits for the lock.
        let guard = pool.lock();
        // A is queued on the first poll; the wait for its answer is abandoned after 50 ms.
        let a = tokio::time::timeout(Duration::from_millis(50), admission.submit(tx(&key, 0), 100)).await;
        assert!(a.is_err(), "A cannot be answered while the pool is held");
        let deadline = Instant::now() + Duration::from_secs(10);
        while admission.stats.depth.load(Ordering::Relaxed) != 0 {
            assert!(Instant::now() < deadline, "the verifier never took A");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A is with the verifier; B fills the queue of one; C is refused at once.
        let b = tokio::spawn({
            let (adm, t) = (admission.clone(), tx(&key, 1));
            async move { adm.submit(t, 100).await }
        });
        while admission.stats.depth.load(Ordering::Relaxed) != 1 {
            assert!(Instant::now() < deadline, "B never reached the queue");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(admission.submit(tx(&key, 2), 100).await, Err(AdmitError::Busy));
        assert_eq!(admission.stats.busy_rejections.load(Ordering::Relaxed), 1);
        drop(guard);
        // Both queued transactions are admitted once the pool is free.
        let b = b.await.unwrap().unwrap();
        assert_eq!(b.pool_seq, 2, "A was admitted first");
        assert_eq!(pool.lock().len(), 2);

        let mut forged = tx(&key, 3);
        forged.body.amount = 5;
        let err = admission.submit(forged, 100).await.unwrap_err();
        assert_eq!(err.reason(), "bad_signature");
    }
}
