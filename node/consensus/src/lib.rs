//! DPoS consensus: the slot schedule (`aergo_chain::schedule`), finality and fork choice, and the chain thread
//! ([`Driver`]) that owns the [`Chain`] and applies them — producing in this node's slots, importing
//! blocks from peers, switching forks, and syncing; and what keeps a producer from signing a slot
//! twice (the slot record, doppelganger protection, the clock gate). Design: `docs/consensus.md`.
//! It never touches a socket (it speaks to peers through [`NetCommand`]) and never serves the RPC.
//!
//! ```text
//!  net task ──Inbound──► Driver (one OS thread) ──► Chain (block log + state store)
//!      ▲                    │  produce in own slots, import, fork choice, LIB, sync requests
//!      └────NetCommand──────┘
//! ```
//! Every change to the chain happens on this one thread, so a block is either wholly applied or not
//! at all, and readers (RPC, the net task's sync answers) see the store's committed state.

pub mod raft;

pub use aergo_chain::view::ConsensusInfo;

use aergo_chain::schedule::{Schedule, ScheduleError};
use aergo_chain::view::{ChainView, PoolHandle, Status};
use aergo_chain::{Chain, CommittedBlock};
use aergo_net::{Inbound, NetCommand, Penalty, Verdict};
use aergo_primitives::clock::now_ms;
use aergo_primitives::crypto::{self, Keypair};
use aergo_primitives::types::{
    Block, BlockHeader, Equivocation, Hash, Payload, PublicKey, Signature, TxBody,
};
use libp2p::PeerId;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Blocks whose parent is unknown, kept while it is fetched.
const MAX_ORPHANS: usize = 512;
/// Blocks asked for per sync request.
const SYNC_BATCH: u32 = 128;
/// How long a sync request may take before another peer is asked.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// A node this many blocks behind its best peer says it is syncing (and does not produce).
const SYNC_GAP: u64 = 3;

/// Index, in `producers` (oldest first: the blocks above the LIB on one branch), of the newest block
/// that `quorum` distinct producers have produced or built on.
pub fn final_index(producers: &[PublicKey], quorum: usize) -> Option<usize> {
    let mut seen = HashSet::new();
    for (i, p) in producers.iter().enumerate().rev() {
        seen.insert(*p);
        if seen.len() >= quorum {
            return Some(i);
        }
    }
    None
}

/// A branch fork choice may switch to: its score (distinct producers, height), the height of the
/// stored block it leaves from, and its blocks, oldest first.
type Candidate = ((usize, u64), u64, Vec<Arc<Block>>);

fn distinct(producers: impl IntoIterator<Item = PublicKey>) -> usize {
    producers.into_iter().collect::<HashSet<_>>().len()
}

/// The chain thread's settings.
pub struct DriverConfig {
    pub key: Option<Keypair>,
    /// Produce blocks without transactions (always on with more than one producer).
    pub empty_blocks: bool,
    /// How far a gossiped block's timestamp may be ahead of this node's clock.
    pub max_clock_drift_ms: u64,
    /// `<data_dir>/last_signed_slot`.
    pub signed_slot_file: PathBuf,
    /// Produce only while the kernel says the clock is synchronized (`producer.require_clock_sync`).
    pub require_clock_sync: bool,
    /// Slots to listen for another signer of this key before producing, after a start that follows
    /// more than this many slots without signing (`producer.doppelganger_slots`; 0: never).
    pub doppelganger_slots: u64,
    /// Test-only fault injection: sign two different blocks in each own slot.
    #[cfg(feature = "test-hooks")]
    pub equivocate: bool,
}

/// Why a received block was refused before it touched the state.
#[derive(Debug, thiserror::Error)]
pub enum StatelessError {
    #[error("chain id {0:?}")]
    WrongChain(String),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("producer signature: {0}")]
    Signature(String),
}

impl StatelessError {
    /// A stable machine-readable name (logs, peer penalties).
    pub fn reason(&self) -> &'static str {
        match self {
            StatelessError::WrongChain(_) => "wrong_chain_id",
            StatelessError::Schedule(e) => e.reason(),
            StatelessError::Signature(_) => "bad_producer_signature",
        }
    }
}

/// The chain thread.
pub struct Driver {
    chain: Chain,
    schedule: Schedule,
    config: DriverConfig,
    /// What the chain thread publishes (head, side blocks, finality) for the RPC and the network.
    view: Arc<ChainView>,
    /// The pool the producer selects from and tells about committed blocks.
    pool: Arc<PoolHandle>,
    inbox: std::sync::mpsc::Receiver<Inbound>,
    net: Option<tokio::sync::mpsc::Sender<NetCommand>>,
    stop: Arc<AtomicBool>,
    lib: (u64, Hash),
    orphans: HashMap<Hash, Vec<Arc<Block>>>,
    orphan_order: VecDeque<(Hash, Hash)>,
    peers: HashMap<PeerId, Status>,
    sync: Option<(PeerId, Instant)>,
    last_signed_slot: u64,
    /// The last slot the production check looked at (for counting missed slots).
    last_seen_slot: Option<u64>,
    /// Why production is stopped (the producer set cannot be read), while it is.
    halted: Option<String>,
    last_head_change: Instant,
    /// The first block seen per (producer, slot) above the LIB, to catch a second one.
    signed: HashMap<(PublicKey, u64), (BlockHeader, Signature)>,
    reported: HashSet<PublicKey>,
    /// A block of this key in this slot or later that this process did not sign was signed by
    /// another box with the same key: above the slot record at start, and recent (a few slots
    /// before the start or later). Older blocks of the key are history, no live signer: a node
    /// signs only the current slot, so they cannot make it sign a slot twice.
    watch_from_slot: u64,
    /// No production up to this slot: listening for another signer of the key (0: none).
    listen_until_slot: u64,
    /// Blocks this process signed (the newest [`OWN_BLOCKS`]).
    own_blocks: VecDeque<Hash>,
    /// Another box signs with this producer's key: production stops for good (until a restart).
    doppelganger: Option<String>,
    /// When this node last said that peers' blocks are ahead of its unsynchronized clock.
    clock_behind_said: Option<Instant>,
}

/// How recent a gossiped copy of an own block must be to be taken for another box's: well inside
/// gossipsub's duplicate cache (120 s), so that a peer replaying an old block of this node cannot
/// stop it.
const OWN_ECHO_MS: u64 = 60_000;

/// How many of its own block hashes the producer remembers (more than a doppelganger window).
const OWN_BLOCKS: usize = 1024;

impl Driver {
    pub fn new(
        chain: Chain,
        config: DriverConfig,
        view: Arc<ChainView>,
        pool: Arc<PoolHandle>,
        inbox: std::sync::mpsc::Receiver<Inbound>,
        net: Option<tokio::sync::mpsc::Sender<NetCommand>>,
        stop: Arc<AtomicBool>,
    ) -> Driver {
        let schedule = chain.schedule().clone();
        let store = chain.store();
        let genesis_hash = store.genesis_hash().ok().flatten().unwrap_or(Hash::ZERO);
        let lib = store.finalized().ok().flatten().unwrap_or((0, genesis_hash));
        // A damaged record stops production (a guess could sign a slot twice); a missing one is a
        // producer that never signed here.
        let (last_signed_slot, damaged) = match std::fs::read_to_string(&config.signed_slot_file) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(slot) => (slot, None),
                Err(_) => (
                    u64::MAX,
                    Some(format!(
                        "the slashing-protection record {} is damaged ({:?}): fix or import it",
                        config.signed_slot_file.display(),
                        text.trim()
                    )),
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, None),
            Err(e) => (
                u64::MAX,
                Some(format!(
                    "the slashing-protection record {} cannot be read: {e}",
                    config.signed_slot_file.display()
                )),
            ),
        };
        let now_slot = schedule.slot_at(now_ms().max(schedule.slot_start(0)));
        let config_doppelganger_slots = config.doppelganger_slots;
        // Listening needs peers to hear from (a node off the network has none). A restart right
        // after signing here (within the window) needs none: no other box could have taken over
        // in between unseen. A key that never signed here always listens first.
        let recently_signed =
            last_signed_slot > 0 && now_slot <= last_signed_slot.saturating_add(config.doppelganger_slots);
        let listen_until_slot = if config.key.is_some()
            && net.is_some()
            && config.doppelganger_slots > 0
            && damaged.is_none()
            && !recently_signed
        {
            now_slot + config.doppelganger_slots
        } else {
            0
        };
        let mut driver = Driver {
            chain,
            schedule,
            config,
            view,
            pool,
            inbox,
            net,
            stop,
            lib,
            orphans: HashMap::new(),
            orphan_order: VecDeque::new(),
            peers: HashMap::new(),
            sync: None,
            last_signed_slot,
            last_seen_slot: None,
            halted: None,
            last_head_change: Instant::now(),
            signed: HashMap::new(),
            reported: HashSet::new(),
            watch_from_slot: last_signed_slot
                .saturating_add(1)
                .max(now_slot.saturating_sub(config_doppelganger_slots)),
            listen_until_slot,
            own_blocks: VecDeque::new(),
            doppelganger: damaged,
            clock_behind_said: None,
        };
        if listen_until_slot > 0 {
            // The window covers the key's next own slot at least: another box with the key signs
            // only in those, and with 1 s slots and N producers a few slots may hold none of them.
            let me = driver.config.key.as_ref().map(|k| k.public());
            let set = driver.producing_set(driver.chain.head().height + 1);
            if let (Some(me), Some(set)) = (me, set) {
                if let Some(own) = Schedule::next_slot_in(&set, &me, now_slot + 1) {
                    driver.listen_until_slot = driver.listen_until_slot.max(own);
                }
            }
        }
        if driver.listen_until_slot > 0 {
            tracing::info!(
                until_slot = driver.listen_until_slot,
                "listening for another signer of this producer key before producing"
            );
        }
        driver.update_lib();
        driver.publish_info();
        driver
    }

    fn produces_empty(&self, set: &[PublicKey]) -> bool {
        self.config.empty_blocks || set.len() > 1
    }

    /// The producer set of the next block, or `None` with production stopped: an election whose
    /// records cannot be read is never guessed at. Said once per cause, and again on recovery.
    fn producing_set(&mut self, height: u64) -> Option<Arc<Vec<PublicKey>>> {
        match self.schedule.producers(height) {
            Ok(set) => {
                if let Some(cause) = self.halted.take() {
                    tracing::warn!(height, %cause, "block production resumes: the producer set reads again");
                }
                Some(set)
            }
            Err(e) => {
                let cause = e.to_string();
                if self.halted.as_deref() != Some(cause.as_str()) {
                    tracing::error!(height, reason = e.reason(), error = %cause,
                        "block production stopped: the producer set cannot be known");
                    self.halted = Some(cause);
                }
                None
            }
        }
    }

    /// Runs until the stop flag is set.
    pub fn run(mut self) {
        while !self.stop.load(Ordering::SeqCst) {
            self.maybe_produce();
            let wait = self.until_next_own_slot().min(Duration::from_millis(100));
            match self.inbox.recv_timeout(wait) {
                Ok(event) => {
                    self.handle(event);
                    // Drain what queued up meanwhile, but keep the slot clock in view.
                    let started = Instant::now();
                    while started.elapsed() < Duration::from_millis(50) {
                        match self.inbox.try_recv() {
                            Ok(event) => self.handle(event),
                            Err(_) => break,
                        }
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
            }
            self.maybe_sync();
        }
    }

    fn until_next_own_slot(&self) -> Duration {
        let Some(key) = &self.config.key else { return Duration::from_millis(100) };
        let now = now_ms();
        let slot = self.schedule.slot_at(now) + u64::from(now >= self.schedule.slot_start(0));
        let height = self.chain.head().height + 1;
        match self.schedule.next_slot_of(&key.public(), slot, height) {
            Ok(Some(s)) => Duration::from_millis(self.schedule.slot_start(s).saturating_sub(now)),
            Ok(None) | Err(_) => Duration::from_millis(100),
        }
    }

    /// Sends to the net task; a branch's publications and requests go on its own topics and
    /// `branch-sync` (verdicts and penalties are the same for every branch).
    fn send(&self, cmd: NetCommand) {
        if let Some(net) = &self.net {
            let on_branch = matches!(
                cmd,
                NetCommand::PublishBlock(_)
                    | NetCommand::PublishTx(_)
                    | NetCommand::RequestBlocks { .. }
                    | NetCommand::RequestBlock { .. }
            );
            let cmd = if on_branch && self.view.branch != aergo_primitives::types::MAIN_BRANCH {
                NetCommand::OnBranch { branch: self.view.branch.clone(), command: Box::new(cmd) }
            } else {
                cmd
            };
            if net.try_send(cmd).is_err() {
                tracing::debug!("net command queue full; a message was dropped");
            }
        }
    }

    fn penalize(&self, peer: Option<PeerId>, penalty: Penalty, reason: String) {
        if let Some(peer) = peer {
            self.send(NetCommand::Penalize { peer, penalty, reason });
        }
    }

    // ---- production ------------------------------------------------------------------------

    fn maybe_produce(&mut self) {
        let Some(key) = self.config.key.clone() else { return };
        let now = now_ms();
        if now < self.schedule.slot_start(0) {
            return;
        }
        let slot = self.schedule.slot_at(now);
        let head = self.chain.head();
        let height = head.height + 1;
        let me = key.public();
        let Some(set) = self.producing_set(height) else { return };
        let produces_empty = self.produces_empty(&set);
        // Own slots that went by unseen (the thread was busy) are missed.
        if let Some(last) = self.last_seen_slot {
            if produces_empty && slot > last + 1 {
                let missed = (last + 1..slot)
                    .filter(|s| *s > self.last_signed_slot && Schedule::producer_in(&set, *s) == Some(me))
                    .count() as u64;
                if missed > 0 {
                    self.view.production.missed_slots.fetch_add(missed, Ordering::Relaxed);
                    tracing::warn!(missed, "own slots went by while the node was busy");
                }
            }
        }
        let first_look = self.last_seen_slot != Some(slot);
        self.last_seen_slot = Some(slot);
        // A clock that may not be trusted is said at once, not only in an own slot: a node whose
        // clock is behind may hold blocks from later than its own slots and never reach one.
        if first_look && self.doppelganger.is_none() && slot > self.listen_until_slot {
            if let Err(reason) = self.clock_ready() {
                self.block_production(Some(reason));
            }
        }
        if let Some(next) = Schedule::next_slot_in(&set, &me, slot + 1) {
            self.view.production.next_slot_ms.store(self.schedule.slot_start(next), Ordering::Relaxed);
        }
        if slot <= self.last_signed_slot
            || Schedule::producer_in(&set, slot) != Some(me)
            || self.schedule.slot_start(slot) <= head.timestamp_ms
        {
            return;
        }
        let start = self.schedule.slot_start(slot);
        let late = now > start + self.schedule.interval_ms() * 3 / 4;
        let syncing = self.view.consensus.read().syncing;
        if late || syncing {
            if first_look && produces_empty {
                self.view.production.missed_slots.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(slot, late, syncing, "own slot skipped");
            }
            // Not produced: do not look at this slot again.
            self.last_signed_slot = self.last_signed_slot.max(slot);
            // Say why, once nothing more lasting stands in the way: a clock that is not
            // synchronized (which keeps a node behind: its peers' newest blocks are ahead of it),
            // else the catching up itself.
            if syncing && self.doppelganger.is_none() && slot > self.listen_until_slot {
                let reason = self
                    .clock_ready()
                    .err()
                    .unwrap_or_else(|| "catching up with the network (syncing) before producing".to_string());
                self.block_production(Some(reason));
            }
            return;
        }
        if let Some(why) = &self.doppelganger {
            self.block_production(Some(why.clone()));
            return;
        }
        if slot <= self.listen_until_slot {
            self.block_production(Some(format!(
                "listening for another signer of this key until slot {} (doppelganger protection)",
                self.listen_until_slot
            )));
            return;
        }
        if let Err(reason) = self.clock_ready() {
            if first_look && produces_empty {
                self.view.production.missed_slots.fetch_add(1, Ordering::Relaxed);
            }
            self.block_production(Some(reason));
            self.last_signed_slot = self.last_signed_slot.max(slot);
            return;
        }
        self.block_production(None);
        let candidates = block_candidates(&self.pool, &self.view);
        if candidates.is_empty() && !produces_empty {
            return;
        }
        // The slot is recorded before the block is signed: a restart within the slot cannot sign
        // a second block for it.
        if let Err(e) = aergo_primitives::file::write_atomic_mode(
            &self.config.signed_slot_file,
            format!("{slot}\n").as_bytes(),
            0o644,
        ) {
            tracing::error!(error = %e, "cannot record the slot about to be signed; not producing");
            return;
        }
        self.last_signed_slot = slot;
        #[cfg(feature = "test-hooks")]
        let evil = if self.config.equivocate { self.second_block(&key, start) } else { None };
        #[cfg(not(feature = "test-hooks"))]
        let evil: Option<Block> = None;
        let started = Instant::now();
        match self.chain.produce(&key, candidates, start) {
            Ok(done) => {
                let took = started.elapsed();
                let p = &self.view.production;
                p.blocks.fetch_add(1, Ordering::Relaxed);
                p.txs.fetch_add(done.block.transactions.len() as u64, Ordering::Relaxed);
                p.busy_ns.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
                p.last_block_ms.store(took.as_millis() as u64, Ordering::Relaxed);
                for (hash, reason) in &done.dropped {
                    tracing::debug!(%hash, %reason, "left a transaction out of the block");
                }
                {
                    let mut pool = self.pool.mempool.lock();
                    for (hash, _) in &done.dropped {
                        pool.remove(hash);
                    }
                }
                tracing::info!(
                    height = done.block.header.height, slot, hash = %done.block.hash(),
                    txs = done.block.transactions.len(), took_ms = took.as_millis() as u64,
                    "produced block"
                );
                self.send(NetCommand::PublishBlock(done.block.clone()));
                self.remember_own(done.block.hash());
                self.note_signed(&done.block);
                self.committed(done);
                self.update_lib();
                if let Some(evil) = evil {
                    self.remember_own(evil.hash());
                    tracing::warn!(slot, hash = %evil.hash(), "test fault: a second block for the same slot");
                    self.send(NetCommand::PublishBlock(Arc::new(evil)));
                }
            }
            Err(e) => {
                self.view.production.missed_slots.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "block production failed");
            }
        }
    }

    /// Test-only fault: a block for the same slot that differs from the real one (it holds a
    /// zero self-transfer of the producer).
    #[cfg(feature = "test-hooks")]
    fn second_block(&self, key: &Keypair, start: u64) -> Option<Block> {
        let nonce = self.chain.store().account(&key.address()).map(|a| a.nonce).ok()?;
        let tx = self.own_tx(key, nonce, Payload::Transfer);
        self.chain.build(key, vec![tx], start).ok().map(|(block, _, _)| block)
    }

    /// A transaction of this node's producer to itself, without amount or fee.
    fn own_tx(&self, key: &Keypair, nonce: u64, payload: Payload) -> aergo_primitives::types::Transaction {
        key.sign_tx(TxBody {
            version: TxBody::version_for(self.chain.branch()),
            chain_id: self.view.chain_id.clone(),
            branch: self.chain.branch().into(),
            nonce,
            sender: key.public(),
            recipient: key.address(),
            amount: 0,
            fee: 0,
            payload,
        })
    }

    /// Remembers a block's (producer, slot); a second, different block for them is equivocation.
    fn note_signed(&mut self, block: &Block) {
        let h = &block.header;
        let slot = self.schedule.slot_at(h.timestamp_ms);
        match self.signed.get(&(h.producer, slot)) {
            None => {
                self.signed.insert((h.producer, slot), (h.clone(), block.signature));
            }
            Some((first, _)) if first.hash() == h.hash() => {}
            Some((first, first_signature)) => {
                let evidence = Equivocation {
                    first: first.clone(),
                    first_signature: *first_signature,
                    second: h.clone(),
                    second_signature: block.signature,
                };
                self.on_equivocation(evidence);
            }
        }
    }

    /// Keeps the evidence and, on a producer, reports it on chain: the offender is left out of the
    /// next elected sets.
    fn on_equivocation(&mut self, evidence: Equivocation) {
        let offender = evidence.first.producer;
        if !self.reported.insert(offender) {
            return;
        }
        tracing::warn!(
            producer = %offender.address(), slot = self.schedule.slot_at(evidence.first.timestamp_ms),
            first = %evidence.first.hash(), second = %evidence.second.hash(),
            "equivocation: two blocks signed for one slot"
        );
        self.view.consensus.write().equivocations += 1;
        let Some(key) = self.config.key.clone() else { return };
        let store = self.chain.store();
        let account = store.account(&key.address()).unwrap_or_default();
        let mut pool = self.pool.mempool.lock();
        let nonce = pool.pending_nonce(&key.address(), &account);
        let tx = self.own_tx(&key, nonce, Payload::ReportEquivocation(Box::new(evidence)));
        let bytes = tx.encode();
        match pool.admit(tx, bytes.len(), account) {
            Ok(_) => {
                drop(pool);
                self.send(NetCommand::PublishTx(bytes));
                tracing::info!(producer = %offender.address(), "reported the equivocation on chain");
            }
            Err(e) => tracing::warn!(error = %e, "cannot report the equivocation"),
        }
    }

    // ---- blocks from peers -----------------------------------------------------------------

    fn handle(&mut self, event: Inbound) {
        match event {
            Inbound::GossipBlock { block, from, id } => {
                use std::sync::atomic::Ordering::Relaxed;
                let started = std::time::Instant::now();
                let import = self.view.import.clone();
                import.depth.fetch_sub(1, Relaxed);
                let verdict = self.on_block(Arc::new(*block), Some(from), true);
                self.send(NetCommand::Verdict { id, from, acceptance: verdict });
                import.processed.fetch_add(1, Relaxed);
                import.busy_ns.fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
            }
            Inbound::Blocks { from, blocks } => {
                if self.sync.is_some_and(|(p, _)| p == from) {
                    self.sync = None;
                }
                let Some(blocks) = self.import_run(blocks, from) else { return };
                for block in blocks {
                    if self.on_block(Arc::new(block), Some(from), false) == Verdict::Reject {
                        break;
                    }
                }
            }
            Inbound::Status { peer, status } => {
                if status.genesis != self.view.genesis_hash {
                    self.penalize(Some(peer), Penalty::Invalid, "peer is on another chain".into());
                    return;
                }
                self.peers.insert(peer, status);
            }
            Inbound::RequestFailed { peer } => {
                if self.sync.is_some_and(|(p, _)| p == peer) {
                    self.sync = None;
                }
            }
            Inbound::PeerGone(peer) => {
                self.peers.remove(&peer);
                if self.sync.is_some_and(|(p, _)| p == peer) {
                    self.sync = None;
                }
            }
            // A DPoS chain takes no part in Raft: a peer that sends it Raft messages is wrong.
            Inbound::Raft { from, .. } => {
                self.penalize(Some(from), Penalty::Invalid, "a Raft message to a DPoS chain".into())
            }
            Inbound::RaftUnreachable { .. } => {}
        }
        self.publish_info();
    }

    /// Whether the block is already here: on the stored chain, a side branch, or waiting for its parent.
    fn is_known(&self, hash: &Hash) -> bool {
        self.stored_height(hash).is_some()
            || self.view.side.read().contains_key(hash)
            || self.orphan_order.iter().any(|(_, h)| h == hash)
    }

    fn stored_height(&self, hash: &Hash) -> Option<u64> {
        self.chain.store().height_of(hash).ok().flatten()
    }

    /// Checks what needs no state: chain, slot, producer and its signature.
    fn check_stateless(&self, block: &Block) -> Result<(), StatelessError> {
        let h = &block.header;
        if h.chain_id != self.view.chain_id {
            return Err(StatelessError::WrongChain(h.chain_id.clone()));
        }
        // The parent's timestamp is checked on import; here only that the slot is the producer's.
        self.schedule.check(h, 0)?;
        crypto::verify(&h.producer, &block.hash(), &block.signature)
            .map_err(|e| StatelessError::Signature(e.to_string()))?;
        Ok(())
    }

    fn on_block(&mut self, block: Arc<Block>, from: Option<PeerId>, gossip: bool) -> Verdict {
        let mut queue = VecDeque::from([(block, from, gossip)]);
        let mut first = None;
        while let Some((block, from, gossip)) = queue.pop_front() {
            let verdict = self.on_one_block(block.clone(), from, gossip);
            first.get_or_insert(verdict);
            if verdict == Verdict::Accept || (verdict == Verdict::Ignore && self.is_attached(&block.hash())) {
                // Its children that were waiting for it.
                if let Some(children) = self.orphans.remove(&block.hash()) {
                    self.orphan_order.retain(|(parent, _)| *parent != block.hash());
                    queue.extend(children.into_iter().map(|c| (c, None, false)));
                }
            }
        }
        first.unwrap_or(Verdict::Ignore)
    }

    fn is_attached(&self, hash: &Hash) -> bool {
        self.stored_height(hash).is_some() || self.view.side.read().contains_key(hash)
    }

    fn on_one_block(&mut self, block: Arc<Block>, from: Option<PeerId>, gossip: bool) -> Verdict {
        let hash = block.hash();
        let h = &block.header;
        // First what needs no state, also for a block that is here already: a copy with a forged
        // signature has the same hash.
        match self.check_stateless(&block) {
            Ok(()) => {}
            Err(StatelessError::Schedule(e)) if e.is_local() => {
                // This node cannot tell who may produce: neither the block nor its sender is at fault.
                tracing::error!(height = h.height, %hash, error = %e, "cannot judge a block");
                return Verdict::Ignore;
            }
            Err(e) => {
                tracing::warn!(height = h.height, %hash, reason = e.reason(), error = %e, "refused a block");
                self.penalize(from, Penalty::Invalid, format!("block {hash}: {e}"));
                return Verdict::Reject;
            }
        }
        self.watch_for_doppelganger(&block, from, gossip);
        if h.height > self.lib.0 {
            self.note_signed(&block);
        }
        if self.is_known(&hash) {
            return Verdict::Ignore;
        }
        if h.height <= self.lib.0 {
            // At or below the final height and not ours: a branch this node will never take.
            return Verdict::Ignore;
        }
        let now = now_ms();
        if gossip && h.timestamp_ms > now + self.config.max_clock_drift_ms {
            // Too early by this node's clock. Held against the sender only when this node's own
            // clock is synchronized: a box whose clock nothing has set yet (an RTC a second or
            // five behind) would otherwise ban every honest producer and cut itself off for good.
            // The block comes again by sync once its slot is here.
            if own_clock_trusted() {
                self.penalize(from, Penalty::Annoying, format!("block {hash} is from a future slot"));
            } else if self.clock_behind_said.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                self.clock_behind_said = Some(Instant::now());
                tracing::warn!(
                    ahead_ms = h.timestamp_ms - now,
                    %hash,
                    "a peer's block is ahead of this node's clock, which is not synchronized: \
                     the block waits for its slot and the peer is not blamed"
                );
            }
            return Verdict::Ignore;
        }
        // Relayed only inside its slot's window; older blocks are history (sync), not news.
        let in_window = h.timestamp_ms + self.schedule.interval_ms() + self.config.max_clock_drift_ms >= now;
        let relay = if in_window { Verdict::Accept } else { Verdict::Ignore };
        let head = self.chain.head();
        if h.prev_hash == head.hash {
            return match self.chain.import((*block).clone()) {
                Ok(done) => {
                    self.committed(done);
                    self.update_lib();
                    relay
                }
                Err(e) if e.waits() => {
                    tracing::info!(height = h.height, %hash, error = %e, "a block waits: this node cannot judge it yet");
                    Verdict::Ignore
                }
                Err(e) => {
                    tracing::warn!(height = h.height, %hash, error = %e, "refused a block");
                    self.penalize(from, Penalty::Invalid, format!("block {hash}: {e}"));
                    Verdict::Reject
                }
            };
        }
        let parent_height = match self.stored_height(&h.prev_hash) {
            Some(ph) if ph >= self.lib.0 => Some(ph),
            Some(_) => return Verdict::Ignore,
            None => self.view.side.read().get(&h.prev_hash).map(|p| p.header.height),
        };
        match parent_height {
            Some(ph) if ph + 1 == h.height => {
                self.view.side.write().insert(hash, block.clone());
                self.fork_choice();
                relay
            }
            Some(_) => {
                self.penalize(
                    from,
                    Penalty::Invalid,
                    format!("block {hash}: height does not follow its parent"),
                );
                Verdict::Reject
            }
            None => {
                // Its branch is missing here (this node is behind, or the sender is on another
                // branch): fetch the sender's blocks above this node's LIB.
                self.add_orphan(block.clone());
                if let Some(peer) = from {
                    self.request_sync(peer);
                }
                Verdict::Ignore
            }
        }
    }

    /// The leading blocks of a sync answer that extend the head one after another go through the
    /// chain's pipelined run (block N+1 executes while N is written), with what `on_one_block`
    /// does for each; returns the blocks after them, for `on_block` one by one, or `None` when the
    /// run met an invalid block (the peer is penalized, the rest dropped).
    fn import_run(&mut self, mut blocks: Vec<Block>, from: PeerId) -> Option<Vec<Block>> {
        let mut tip = self.chain.head().hash;
        let mut n = 0;
        for b in &blocks {
            let extends = b.header.prev_hash == tip && b.header.height > self.lib.0;
            if !extends || self.check_stateless(b).is_err() || self.is_known(&b.hash()) {
                break;
            }
            tip = b.hash();
            n += 1;
        }
        if n < 2 {
            return Some(blocks);
        }
        let rest = blocks.split_off(n);
        for b in &blocks {
            // A synced block of this key counts as much as a gossiped one: a node that starts
            // behind takes the other box's blocks of its listening window by sync.
            self.watch_for_doppelganger(b, Some(from), false);
            self.note_signed(b);
        }
        let report = self.chain.import_run(blocks);
        let hashes: Vec<Hash> = report.committed.iter().map(|d| d.block.hash()).collect();
        for done in report.committed {
            self.committed(done);
        }
        self.update_lib();
        // Blocks that were waiting for one of these.
        for hash in hashes {
            if let Some(children) = self.orphans.remove(&hash) {
                self.orphan_order.retain(|(parent, _)| *parent != hash);
                for child in children {
                    self.on_block(child, None, false);
                }
            }
        }
        match report.error {
            None => Some(rest),
            Some((_, e)) if e.waits() => {
                tracing::info!(error = %e, "a synced block waits: this node cannot judge it yet");
                None
            }
            Some((_, e)) => {
                tracing::warn!(error = %e, "refused a synced block");
                self.penalize(Some(from), Penalty::Invalid, format!("synced block: {e}"));
                None
            }
        }
    }

    fn add_orphan(&mut self, block: Arc<Block>) {
        let parent = block.header.prev_hash;
        self.orphan_order.push_back((parent, block.hash()));
        self.orphans.entry(parent).or_default().push(block);
        while self.orphan_order.len() > MAX_ORPHANS {
            if let Some((parent, hash)) = self.orphan_order.pop_front() {
                if let Some(list) = self.orphans.get_mut(&parent) {
                    list.retain(|b| b.hash() != hash);
                    if list.is_empty() {
                        self.orphans.remove(&parent);
                    }
                }
            }
        }
    }

    /// After a block became the head: the pool, the readers, the subscribers.
    fn committed(&mut self, done: CommittedBlock) {
        let previous = self.view.head();
        if done.block.header.prev_hash == previous.hash && previous.height > 0 {
            let gap = self.schedule.slot_at(done.block.header.timestamp_ms)
                - self
                    .schedule
                    .slot_at(previous.timestamp_ms)
                    .min(self.schedule.slot_at(done.block.header.timestamp_ms));
            self.view.consensus.write().skipped_slots += gap.saturating_sub(1);
        }
        self.pool.mempool.lock().on_block(&done.block, &done.nonces);
        self.view.set_head(done.head);
        self.last_head_change = Instant::now();
        let _ = self.view.blocks.send(done.block);
    }

    // ---- fork choice and finality ------------------------------------------------------------

    /// The producers of the stored blocks above the LIB, oldest first, with their heights.
    fn canonical_above_lib(&self) -> Vec<(u64, Hash, PublicKey)> {
        self.chain
            .store()
            .block_metas_from(self.lib.0 + 1)
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.header.height, m.hash, m.header.producer))
            .collect()
    }

    /// Follows the branch with the most distinct producers above the LIB (then the higher one; on a
    /// tie, the current one).
    fn fork_choice(&mut self) {
        let head = self.chain.head();
        let canonical = self.canonical_above_lib();
        let current = (distinct(canonical.iter().map(|c| c.2)), head.height);
        let side = self.view.side.read().clone();
        let parents: HashSet<Hash> = side.values().map(|b| b.header.prev_hash).collect();
        let mut best: Option<Candidate> = None;
        for tip in side.values().filter(|b| !parents.contains(&b.hash())) {
            let mut branch = vec![tip.clone()];
            let mut cursor = tip.header.prev_hash;
            while let Some(b) = side.get(&cursor) {
                branch.push(b.clone());
                cursor = b.header.prev_hash;
            }
            let Some(ancestor) = self.stored_height(&cursor).filter(|h| *h >= self.lib.0) else { continue };
            branch.reverse();
            let below = canonical.iter().filter(|c| c.0 <= ancestor).map(|c| c.2);
            let score = (distinct(below.chain(branch.iter().map(|b| b.header.producer))), tip.header.height);
            if score > current && best.as_ref().is_none_or(|(s, _, _)| score > *s) {
                best = Some((score, ancestor, branch));
            }
        }
        if let Some((score, ancestor, branch)) = best {
            tracing::info!(
                from_height = head.height,
                to_height = score.1,
                ancestor,
                producers = score.0,
                "switching to a better branch"
            );
            self.switch(ancestor, branch);
        }
    }

    fn switch(&mut self, ancestor: u64, branch: Vec<Arc<Block>>) {
        let removed = match self.chain.rollback_to(ancestor) {
            Ok(removed) => removed,
            Err(e) => {
                tracing::error!(error = %e, "fork switch: rollback failed");
                return;
            }
        };
        self.view.consensus.write().reorgs += 1;
        self.view.set_head(self.chain.head());
        let store = self.chain.store();
        {
            let mut side = self.view.side.write();
            for b in &removed {
                side.insert(b.hash(), Arc::new(b.clone()));
            }
        }
        // Senders of the abandoned blocks' transactions have lower nonces again.
        let senders: HashMap<_, _> = removed
            .iter()
            .flat_map(|b| b.transactions.iter().map(|t| t.sender()))
            .map(|a| (a, store.account(&a).map(|acc| acc.nonce).unwrap_or(0)))
            .collect();
        self.pool.mempool.lock().on_rollback(&senders);
        let mut failed = false;
        for block in branch {
            self.view.side.write().remove(&block.hash());
            match self.chain.import((*block).clone()) {
                Ok(done) => self.committed(done),
                Err(e) => {
                    tracing::warn!(height = block.header.height, hash = %block.hash(), error = %e,
                        "a block of the better branch is invalid; dropping the branch from it");
                    self.drop_side_descendants(block.hash());
                    failed = true;
                    break;
                }
            }
        }
        // Transactions of the abandoned blocks that the new branch does not hold go back to the pool.
        let mut pool = self.pool.mempool.lock();
        for tx in removed.iter().flat_map(|b| b.transactions.iter()) {
            if store.tx_location(&tx.hash()).ok().flatten().is_none() {
                let account = store.account(&tx.sender()).unwrap_or_default();
                let _ = pool.admit(tx.clone(), tx.encode().len(), account);
            }
        }
        drop(pool);
        self.update_lib();
        if failed {
            self.fork_choice();
        }
    }

    fn drop_side_descendants(&mut self, root: Hash) {
        let mut side = self.view.side.write();
        let mut gone = vec![root];
        while let Some(h) = gone.pop() {
            let children: Vec<Hash> =
                side.values().filter(|b| b.header.prev_hash == h).map(|b| b.hash()).collect();
            for c in children {
                side.remove(&c);
                gone.push(c);
            }
        }
    }

    fn update_lib(&mut self) {
        let canonical = self.canonical_above_lib();
        let Some(&(height, ..)) = canonical.last() else { return };
        let producers: Vec<PublicKey> = canonical.iter().map(|c| c.2).collect();
        // Without a readable producer set nothing becomes final (production has stopped and said why).
        let Ok(quorum) = self.schedule.quorum(height) else { return };
        let Some(i) = final_index(&producers, quorum) else { return };
        let (lib_height, lib_hash, _) = canonical[i];
        if lib_height <= self.lib.0 {
            return;
        }
        if let Err(e) = self.chain.finalize(lib_height, lib_hash) {
            tracing::error!(error = %e, "cannot record the last irreversible block");
            return;
        }
        self.lib = (lib_height, lib_hash);
        self.view.side.write().retain(|_, b| b.header.height > lib_height);
        self.signed.retain(|_, (h, _)| h.height + 64 > lib_height);
        self.orphans.retain(|_, list| {
            list.retain(|b| b.header.height > lib_height);
            !list.is_empty()
        });
        let kept: HashSet<Hash> = self.orphans.values().flatten().map(|b| b.hash()).collect();
        self.orphan_order.retain(|(_, h)| kept.contains(h));
        tracing::debug!(lib_height, %lib_hash, "last irreversible block");
        self.publish_info();
    }

    // ---- sync ------------------------------------------------------------------------------

    fn request_sync(&mut self, peer: PeerId) {
        if self.sync.is_some_and(|(_, at)| at.elapsed() < SYNC_TIMEOUT) {
            return;
        }
        let from = self.lib.0 + 1;
        tracing::debug!(%peer, from, "asking for blocks");
        self.sync = Some((peer, Instant::now()));
        self.send(NetCommand::RequestBlocks { peer, from, count: SYNC_BATCH });
    }

    fn maybe_sync(&mut self) {
        if self.net.is_none() {
            return;
        }
        let head = self.chain.head();
        let best = self
            .peers
            .iter()
            .filter(|(_, s)| !self.is_known(&s.hash))
            .max_by_key(|(_, s)| (s.height, s.lib_height))
            .map(|(p, s)| (*p, s.clone()));
        let Some((peer, status)) = best else { return };
        // Behind, or on another branch that gossip has not brought: ask for the blocks above the LIB.
        let quiet = self.last_head_change.elapsed() > Duration::from_millis(self.schedule.interval_ms());
        if status.height >= head.height + SYNC_GAP || (status.height >= head.height && quiet) {
            self.request_sync(peer);
        }
    }

    /// Publishes the consensus figures for readers.
    fn publish_info(&self) {
        let head = self.chain.head().height;
        let best = self.peers.values().map(|s| s.height).max().unwrap_or(0).max(head);
        let mut info = self.view.consensus.write();
        info.lib_height = self.lib.0;
        info.lib_hash = self.lib.1;
        info.best_known_height = best;
        info.syncing = best >= head + SYNC_GAP;
    }
}

/// The next block's candidates from the pool, in pool order: at most the chain's
/// `max_block_txs` and [`aergo_net::MAX_BLOCK_TX_BYTES`] of them.
pub(crate) fn block_candidates(
    pool: &PoolHandle,
    view: &ChainView,
) -> Vec<aergo_primitives::types::Transaction> {
    let max_txs = view.genesis.consensus.max_block_txs as usize;
    let selected = pool.mempool.lock().select_within(max_txs, aergo_net::MAX_BLOCK_TX_BYTES);
    selected.into_iter().map(|t| (*t).clone()).collect()
}

/// Whether this node's clock may judge a peer's timing: not while the kernel says it is
/// unsynchronized (an unreadable state is trusted, as before there was a check).
fn own_clock_trusted() -> bool {
    aergo_primitives::clock::kernel_clock().is_none_or(|k| k.synchronized)
}

impl Driver {
    /// Whether this producer's clock may be trusted for its slots: with
    /// `producer.require_clock_sync`, only while the kernel says it is synchronized.
    fn clock_ready(&self) -> Result<(), String> {
        if !self.config.require_clock_sync {
            return Ok(());
        }
        match aergo_primitives::clock::kernel_clock() {
            Some(k) if k.synchronized => Ok(()),
            Some(_) => Err("the system clock is not synchronized (no NTP server has set it yet)".into()),
            None => Err("the kernel's clock state cannot be read (adjtimex refused)".into()),
        }
    }

    /// A valid block signed with this producer's key, in a slot above the record this process
    /// started with, that this process did not sign: another box holds the key. Production stops
    /// for good (a second block in a slot would be equivocation, which jails the producer).
    ///
    /// Two boxes with the key and the same pending transactions make the very same block (the
    /// signature is deterministic): no content tells them apart. But gossip never brings this node
    /// a block it has published (gossipsub drops copies of what it sent, for longer than a slot),
    /// so a recent block that comes by gossip and equals one this node made was made by another
    /// box before this one's went out.
    fn watch_for_doppelganger(&mut self, block: &Block, from: Option<PeerId>, gossip: bool) {
        let Some(key) = &self.config.key else { return };
        if self.config.doppelganger_slots == 0 {
            return;
        }
        let h = &block.header;
        let slot = self.schedule.slot_at(h.timestamp_ms);
        if h.producer != key.public() || slot < self.watch_from_slot || self.doppelganger.is_some() {
            return;
        }
        let hash = block.hash();
        let mut same = "";
        if self.own_blocks.contains(&hash) {
            if !(gossip && from.is_some() && h.timestamp_ms + OWN_ECHO_MS >= now_ms()) {
                return;
            }
            same = " (the very block this box made, from the other box before this one's was sent)";
        }
        let from = from.map_or_else(|| "this node's store".to_string(), |p| format!("peer {p}"));
        let why = format!(
            "doppelganger: another box signs with this producer key ({}): block {hash} at height {} slot {slot} from {from}{same}",
            key.address(),
            h.height
        );
        tracing::error!(reason = %why, "production stopped for good: stop the other box, then restart this one");
        self.doppelganger = Some(why.clone());
        self.block_production(Some(why));
    }

    fn remember_own(&mut self, hash: Hash) {
        if self.own_blocks.len() >= OWN_BLOCKS {
            self.own_blocks.pop_front();
        }
        self.own_blocks.push_back(hash);
    }

    /// Records why production stops (`Some`) or that it goes on (`None`); logs each change once.
    fn block_production(&self, reason: Option<String>) {
        let mut blocked = self.view.production.blocked.write();
        if *blocked == reason {
            return;
        }
        match &reason {
            Some(why) => tracing::warn!(reason = %why, "not producing"),
            None => tracing::info!("producing again"),
        }
        *blocked = reason;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aergo_primitives::crypto::Keypair;

    #[test]
    fn finality_needs_a_quorum_of_distinct_producers() {
        let k: Vec<PublicKey> = (0..4).map(|i| Keypair::from_seed(&format!("p{i}")).public()).collect();
        // One producer: every block is final.
        assert_eq!(final_index(&[k[0], k[0]], 1), Some(1));
        // Four producers, quorum 3: the block two distinct producers built on.
        assert_eq!(final_index(&[k[0], k[1], k[2]], 3), Some(0));
        assert_eq!(final_index(&[k[0], k[1], k[2], k[3]], 3), Some(1));
        // The same producer twice does not count twice.
        assert_eq!(final_index(&[k[0], k[1], k[1]], 3), None);
        assert_eq!(final_index(&[k[0], k[1]], 3), None);
        assert_eq!(final_index(&[], 1), None);
    }
}
