//! The chain thread of a chain agreed by Raft (`docs/repositories.md`, "Consensus per
//! repository"): [`RaftDriver`] owns the [`Chain`] and one [`RaftNode`].
//!
//! ```text
//!  net task ──Inbound::Raft──► RaftDriver (one OS thread) ──tick / step / propose──► RaftNode
//!      ▲                           │  ready(): messages → NetCommand::Raft
//!      └──NetCommand::Raft─────────┘           committed blocks → check, execute, commit, final
//! ```
//! The leader builds a block from its pool (as a DPoS producer does), signs it with the node key
//! and proposes its bytes; it proposes the next only once every entry of its log is applied (one
//! block in flight, always on the newest head). Every member applies committed entries in log
//! order: a block is checked (height, parent, a voter's signature, re-execution) and committed,
//! and is final at once. The leader commits its own block without executing it again. A block
//! that fails its checks is skipped by every member alike and logged.
//!
//! A member that gets a Raft snapshot (it is new, or too far behind the leader's compacted log)
//! takes the blocks up to the snapshot's height by the sync protocol, checks the snapshot's
//! block hash, and then applies the log from there.

use crate::block_candidates;
use aergo_chain::view::{ChainView, PoolHandle, Status};
use aergo_chain::{Chain, CommittedBlock};
use aergo_config::genesis::RaftParams;
use aergo_exec::governance::{self, RaftVoterRecord, RAFT_VOTERS_KEY};
use aergo_exec::ExecOutput;
use aergo_net::{Inbound, NetCommand, Penalty, Verdict};
use aergo_primitives::clock::now_ms;
use aergo_primitives::crypto::Keypair;
use aergo_primitives::types::{Block, Hash, Payload, PublicKey, RaftAdmin};
use aergo_raft::{Committed, RaftConfig, RaftLog, RaftNode, StateRole};
use libp2p::PeerId;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Raft's clock: one tick every 100 ms (election and heartbeat settings are in ticks).
pub const TICK: Duration = Duration::from_millis(100);
/// Applied entries kept in the log before it is compacted into a snapshot.
const COMPACT_EVERY: u64 = 1024;
/// Blocks asked for per catch-up request.
const CATCH_UP_BATCH: u32 = 128;
/// How long a catch-up request may take before another voter is asked.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the Raft chain thread cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RaftStartError {
    #[error(transparent)]
    Log(#[from] aergo_raft::LogError),
    #[error(transparent)]
    Node(#[from] aergo_raft::NodeError),
    #[error("the genesis lists no Raft settings (consensus.kind is not \"raft\")")]
    NotRaft,
    #[error("voter {0} has a node key that is no ed25519 public key")]
    BadVoterKey(String),
    #[error("cannot make the Raft log's directory {path}: {source}")]
    Dir { path: String, source: std::io::Error },
}

/// The snapshot data of a Raft chain: the height and hash of the last applied block (the state
/// itself is the chain's, taken by block sync).
#[derive(Clone, Copy, Debug, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
struct SnapshotData {
    height: u64,
    hash: [u8; 32],
}

impl SnapshotData {
    fn decode(bytes: &[u8]) -> Option<SnapshotData> {
        borsh::from_slice(bytes).ok()
    }

    fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).unwrap_or_default()
    }
}

/// Whether applying a block failed for the block's own sake (every member judges it alike), not
/// for this node's (its disk or state).
fn is_block_fault(e: &aergo_chain::ChainError) -> bool {
    matches!(
        e,
        aergo_chain::ChainError::InvalidBlock { .. }
            | aergo_chain::ChainError::Exec(aergo_exec::ExecError::InvalidTx { .. })
    )
}

/// A voter as the thread knows it.
#[derive(Clone, Debug)]
struct Voter {
    key: PublicKey,
    peer: PeerId,
}

/// The block this leader built and proposed, kept to commit without executing it again.
struct Built {
    hash: Hash,
    block: Block,
    out: ExecOutput,
    prepared: aergo_storage::PreparedState,
}

/// The Raft chain thread (see the module's notes).
pub struct RaftDriver {
    chain: Chain,
    key: Keypair,
    node: RaftNode,
    params: RaftParams,
    interval: Duration,
    view: Arc<ChainView>,
    pool: Arc<PoolHandle>,
    inbox: std::sync::mpsc::Receiver<Inbound>,
    net: Option<tokio::sync::mpsc::Sender<NetCommand>>,
    stop: Arc<AtomicBool>,
    /// Every member this node has known (founding voters, voters in the state, senders of
    /// messages): where to send a member's messages.
    voters: HashMap<u64, Voter>,
    /// The voters the chain's state names (Raft's configuration follows it).
    state_voters: Vec<u64>,
    /// A configuration change proposed and not applied yet (when), so it is not proposed twice.
    conf_proposed: Option<Instant>,
    built: Option<Built>,
    /// The last Raft index applied to the chain (or skipped).
    applied: u64,
    /// Committed entries waiting for the chain to catch up to a snapshot.
    waiting: VecDeque<Committed>,
    /// A snapshot's block this chain must reach by sync before applying the log again.
    catch_up: Option<SnapshotData>,
    catch_up_asked: Option<(PeerId, Instant)>,
    peers: HashMap<PeerId, Status>,
    last_block_at: Instant,
    leaderless_since: Option<u64>,
}

impl RaftDriver {
    /// Opens the Raft log in `raft_dir` (a founding voter's is initialized with the genesis
    /// voters) and the member over it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        chain: Chain,
        key: Keypair,
        raft_dir: PathBuf,
        view: Arc<ChainView>,
        pool: Arc<PoolHandle>,
        inbox: std::sync::mpsc::Receiver<Inbound>,
        net: Option<tokio::sync::mpsc::Sender<NetCommand>>,
        stop: Arc<AtomicBool>,
    ) -> Result<RaftDriver, RaftStartError> {
        let genesis = chain.genesis().clone();
        let params = genesis.consensus.raft.clone().ok_or(RaftStartError::NotRaft)?;
        let mut voters = HashMap::new();
        for v in &params.voters {
            let key = v.key().map_err(|_| RaftStartError::BadVoterKey(v.node_key.clone()))?;
            let peer = aergo_net::peer_id_of_public(&key)
                .ok_or_else(|| RaftStartError::BadVoterKey(v.node_key.clone()))?;
            voters.insert(aergo_raft::raft_id(&key.0), Voter { key, peer });
        }
        std::fs::create_dir_all(&raft_dir).map_err(|e| aergo_raft::LogError::Corrupt {
            path: raft_dir.display().to_string(),
            what: e.to_string(),
        })?;
        let log = RaftLog::open(&raft_dir)?;
        let me = aergo_raft::raft_id(&key.public().0);
        if !log.initialized() && voters.contains_key(&me) {
            let mut ids: Vec<u64> = voters.keys().copied().collect();
            ids.sort_unstable();
            log.initialize(&ids)?;
            tracing::info!(raft_id = me, voters = ids.len(), "Raft log initialized with the genesis voters");
        }
        let applied = log.applied();
        let snapshot = SnapshotData::decode(&log.snapshot_data().1);
        let config = RaftConfig {
            election_ticks: params.election_ticks as usize,
            heartbeat_ticks: params.heartbeat_ticks as usize,
            ..RaftConfig::default()
        };
        let node = RaftNode::open(me, log, &config, applied)?;
        let interval = Duration::from_millis(genesis.consensus.block_interval_ms);
        let mut driver = RaftDriver {
            chain,
            key,
            applied: applied.max(node.log().snapshot_data().0),
            node,
            params,
            interval,
            view,
            pool,
            inbox,
            net,
            stop,
            voters,
            state_voters: Vec::new(),
            conf_proposed: None,
            built: None,
            waiting: VecDeque::new(),
            catch_up: None,
            catch_up_asked: None,
            peers: HashMap::new(),
            last_block_at: Instant::now(),
            leaderless_since: Some(now_ms()),
        };
        // A snapshot taken in before a restart whose blocks this chain does not hold yet.
        if let Some(snap) = snapshot.filter(|s| s.height > driver.chain.head().height) {
            driver.catch_up = Some(snap);
        }
        if !driver.voters.contains_key(&me) {
            tracing::info!(
                raft_id = me,
                "this node is no founding voter: a full node, it follows the voters by block sync (until it is added as one)"
            );
        }
        driver.read_state_voters();
        driver.publish_info();
        Ok(driver)
    }

    /// The voters' p2p addresses from the genesis (for the net task to dial).
    pub fn known_addresses(params: &RaftParams) -> Vec<(PeerId, libp2p::Multiaddr)> {
        params
            .voters
            .iter()
            .filter_map(|v| {
                let peer = aergo_net::peer_id_of_public(&v.key().ok()?)?;
                Some((peer, v.address.parse().ok()?))
            })
            .collect()
    }

    /// Runs until the stop flag is set.
    pub fn run(mut self) {
        let mut next_tick = Instant::now() + TICK;
        while !self.stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now >= next_tick {
                self.node.tick();
                next_tick += TICK;
                if next_tick < now {
                    next_tick = now + TICK; // the thread was busy for more than a tick
                }
            }
            self.maybe_propose();
            self.step_ready();
            // A leader that proposes on transactions looks at its pool often; otherwise the tick
            // is the next thing to do.
            let mut wait = next_tick.saturating_duration_since(Instant::now());
            if self.node.is_leader() && self.params.propose_on_tx {
                wait = wait.min(Duration::from_millis(5));
            }
            match self.inbox.recv_timeout(wait) {
                Ok(event) => {
                    self.handle(event);
                    // Drain what queued up meanwhile, but keep Raft's clock in view.
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
            self.step_ready();
            self.maybe_catch_up();
            self.maybe_follow();
        }
    }

    fn send(&self, cmd: NetCommand) {
        if let Some(net) = &self.net {
            if net.try_send(cmd).is_err() {
                tracing::debug!("net command queue full; a message was dropped");
            }
        }
    }

    fn handle(&mut self, event: Inbound) {
        match event {
            Inbound::Raft { from, message } => {
                let message = match aergo_raft::decode_message(&message) {
                    Ok(m) => m,
                    Err(why) => {
                        self.send(NetCommand::Penalize {
                            peer: from,
                            penalty: Penalty::Malformed,
                            reason: format!("raft message does not decode: {why}"),
                        });
                        return;
                    }
                };
                // A message names its sender: it must be the member whose node key the
                // connection authenticated (an ed25519 peer id carries its key).
                let Some(key) = aergo_net::public_of_peer(&from) else { return };
                if aergo_raft::raft_id(&key.0) != message.from {
                    tracing::warn!(%from, claimed = message.from, kind = ?message.get_msg_type(),
                        "a Raft message from a peer that is not the member it names: dropped");
                    self.send(NetCommand::Penalize {
                        peer: from,
                        penalty: Penalty::Invalid,
                        reason: format!("raft message as member {} from a peer that is not it", message.from),
                    });
                    return;
                }
                // Only members speak Raft to a member: a peer outside the group could otherwise
                // start a higher term or append entries as a leader would. A node that is in no
                // group yet (it waits to be added) hears whoever its leader turns out to be; what
                // that brings is checked (blocks by the block rule, a snapshot's block by hash).
                if !self.is_member(message.from) {
                    tracing::debug!(%from, member = message.from, kind = ?message.get_msg_type(),
                        "a Raft message from a node outside the group: dropped");
                    return;
                }
                self.voters.entry(message.from).or_insert(Voter { key, peer: from });
                if message.to != self.node.id() {
                    return;
                }
                if let Err(e) = self.node.step(message) {
                    tracing::debug!(error = %e, "a Raft message was not taken");
                }
            }
            Inbound::RaftUnreachable { peer } => {
                if let Some(key) = aergo_net::public_of_peer(&peer) {
                    self.node.report_unreachable(aergo_raft::raft_id(&key.0));
                }
            }
            // Blocks travel through Raft's log here, never by gossip.
            Inbound::GossipBlock { from, id, .. } => {
                // Counted into the import queue by the net task like any gossiped block.
                self.view.import.depth.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                self.send(NetCommand::Verdict { id, from, acceptance: Verdict::Ignore });
            }
            Inbound::Blocks { from, blocks } => self.on_catch_up_blocks(from, blocks),
            Inbound::Status { peer, status } => {
                if status.genesis == self.view.genesis_hash {
                    self.peers.insert(peer, status);
                }
            }
            Inbound::RequestFailed { peer } | Inbound::PeerGone(peer) => {
                if self.catch_up_asked.is_some_and(|(p, _)| p == peer) {
                    self.catch_up_asked = None;
                }
                if let Inbound::PeerGone(p) = event {
                    self.peers.remove(&p);
                }
            }
        }
    }

    /// Whether `id` may speak Raft to this node: a member of its configuration (voters and
    /// learners, incoming and outgoing during a joint change) or a voter the chain's state names;
    /// anyone while this node belongs to no group yet.
    fn is_member(&self, id: u64) -> bool {
        let conf = self.node.log().conf_state();
        let members: Vec<u64> = [&conf.voters, &conf.learners, &conf.voters_outgoing, &conf.learners_next]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        members.is_empty() || members.contains(&id) || self.state_voters.contains(&id)
    }

    // ---- the leader ------------------------------------------------------------------------

    fn maybe_propose(&mut self) {
        if !self.node.is_leader() || self.catch_up.is_some() {
            return;
        }
        // Every entry of the log applied: the head is the newest the group agreed on.
        if self.node.last_index() > self.applied {
            return;
        }
        self.reconcile_voters();
        if !self.state_voters.contains(&self.node.id()) || !self.node.is_leader() {
            // Removed in the state (the block rule no longer takes this node's blocks): leadership
            // is being handed over.
            return;
        }
        if let Some(lost) = self.built.take() {
            // Applied everything and the proposal was not among it: Raft dropped it (the
            // leadership changed hands meanwhile). Its transactions are still in the pool.
            tracing::info!(hash = %lost.hash, "a proposed block was not committed; building anew");
        }
        let due = self.last_block_at.elapsed() >= self.interval;
        let waiting = self.params.propose_on_tx && !self.pool.mempool.lock().is_empty();
        if !due && !waiting {
            return;
        }
        let candidates = block_candidates(&self.pool, &self.view);
        if candidates.is_empty() && !due {
            return;
        }
        let started = Instant::now();
        match self.chain.build(&self.key, candidates, now_ms()) {
            Ok((block, out, prepared)) => {
                {
                    let mut pool = self.pool.mempool.lock();
                    for (hash, _) in &out.dropped {
                        pool.remove(hash);
                    }
                }
                let hash = block.hash();
                let bytes = block.encode();
                let p = &self.view.production;
                p.busy_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                p.last_block_ms.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                match self.node.propose(bytes) {
                    Ok(()) => {
                        tracing::debug!(height = block.header.height, %hash, txs = block.transactions.len(), "proposed a block");
                        self.last_block_at = Instant::now();
                        self.built = Some(Built { hash, block, out, prepared });
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot propose the block"),
                }
            }
            Err(e) => {
                self.view.production.missed_slots.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "block building failed");
            }
        }
    }

    // ---- Raft's output -----------------------------------------------------------------------

    fn step_ready(&mut self) {
        let out = match self.node.ready() {
            Ok(out) => out,
            Err(e) => {
                // The log could not be written: nothing may be acknowledged; stop taking part.
                tracing::error!(error = %e, "the Raft log failed; this member stops");
                self.stop.store(true, Ordering::SeqCst);
                return;
            }
        };
        for m in out.messages {
            match self.voters.get(&m.to) {
                Some(v) => {
                    let peer = v.peer;
                    self.send(NetCommand::Raft { peer, message: aergo_raft::encode_message(&m) });
                }
                None => tracing::debug!(to = m.to, "a Raft message for an unknown member"),
            }
        }
        if let Some(snapshot) = out.snapshot {
            let index = snapshot.get_metadata().index;
            match SnapshotData::decode(snapshot.get_data()) {
                Some(data) if data.height > self.chain.head().height => {
                    tracing::info!(height = data.height, index, "Raft snapshot: taking its blocks by sync");
                    self.catch_up = Some(data);
                    self.catch_up_asked = None;
                }
                Some(data) => {
                    // A full node that followed the voters holds the block already: the same one.
                    let held = self.chain.store().height_of(&Hash(data.hash)).ok().flatten();
                    if held != Some(data.height) {
                        tracing::error!(
                            height = data.height, expected = %Hash(data.hash),
                            "this chain holds another block at the Raft snapshot's height: this member cannot go on"
                        );
                        self.stop.store(true, Ordering::SeqCst);
                        return;
                    }
                    tracing::info!(
                        height = data.height,
                        index,
                        "Raft snapshot: this chain holds its block already"
                    );
                }
                None if snapshot.get_data().is_empty() => {} // the founding configuration
                None => tracing::error!(index, "a Raft snapshot's data does not decode"),
            }
            self.applied = self.applied.max(index);
            self.waiting.clear();
        }
        if out.committed.iter().any(|c| matches!(c, Committed::Conf { .. })) {
            self.conf_proposed = None;
            tracing::info!(voters = ?self.node.voters(), "Raft configuration changed");
        }
        self.waiting.extend(out.committed);
        if let Some(last) = out.last_committed {
            // Entries with nothing to apply (a new leader's no-op) count as applied in turn.
            self.waiting.push_back(Committed::Data { index: last, term: 0, data: Vec::new() });
        }
        self.apply_waiting();
        if self.node.snapshot_wanted() || self.applied >= self.node.log().snapshot_data().0 + COMPACT_EVERY {
            self.compact();
        }
        self.publish_info();
    }

    fn apply_waiting(&mut self) {
        if self.catch_up.is_some() {
            return;
        }
        while let Some(entry) = self.waiting.pop_front() {
            let index = entry.index();
            if index <= self.applied {
                continue;
            }
            if let Committed::Data { data, .. } = &entry {
                if !data.is_empty() && !self.apply_block(index, data) {
                    self.waiting.push_front(entry);
                    return;
                }
            }
            self.applied = index;
            if let Err(e) = self.node.log().set_applied(index) {
                tracing::warn!(error = %e, "cannot record the applied Raft index");
            }
        }
    }

    /// Applies one committed block; false when the chain is behind it (caught up first).
    fn apply_block(&mut self, index: u64, data: &[u8]) -> bool {
        let block = match Block::decode(data) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(index, error = %e, "a committed Raft entry is no block: skipped");
                return true;
            }
        };
        let hash = block.hash();
        let height = block.header.height;
        let head = self.chain.head();
        if height <= head.height {
            // Applied before a restart (the applied index is recorded after the block).
            let held = self.chain.store().height_of(&hash).ok().flatten();
            if held != Some(height) {
                tracing::warn!(index, height, %hash, "a committed block is below the head and not held: skipped");
            }
            return true;
        }
        if height > head.height + 1 {
            tracing::warn!(index, height, head = head.height, "a committed block is ahead of this chain");
            return true;
        }
        let started = Instant::now();
        let own = self.built.take_if(|b| b.hash == hash);
        let result = match own {
            Some(b) => self.chain.commit_built(b.block, b.out, b.prepared),
            None => self.chain.import(block),
        };
        match result {
            Ok(done) => {
                if done.block.header.producer == self.key.public() {
                    let p = &self.view.production;
                    p.blocks.fetch_add(1, Ordering::Relaxed);
                    p.txs.fetch_add(done.block.transactions.len() as u64, Ordering::Relaxed);
                }
                tracing::info!(
                    height, %hash, txs = done.block.transactions.len(), index,
                    took_ms = started.elapsed().as_millis() as u64, "block final (Raft)"
                );
                self.committed(done);
            }
            Err(e) if is_block_fault(&e) => {
                // The same verdict on every member: the block is skipped by all.
                tracing::warn!(index, height, %hash, error = %e, "a committed block is invalid: skipped");
            }
            Err(e) => {
                // This node could not apply it (its disk, its state): skipping would leave it on
                // another chain than the others. It stops; restarted, it applies the entry again.
                tracing::error!(index, height, %hash, error = %e,
                    "cannot apply a committed block here; this member stops (restart it once the cause is fixed)");
                self.stop.store(true, Ordering::SeqCst);
                return false;
            }
        }
        true
    }

    /// After a block became the head and final: the pool, the readers, the subscribers.
    fn committed(&mut self, done: CommittedBlock) {
        let (height, hash) = (done.head.height, done.head.hash);
        if let Err(e) = self.chain.finalize(height, hash) {
            tracing::error!(error = %e, "cannot record the final block");
        }
        self.pool.mempool.lock().on_block(&done.block, &done.nonces);
        // Final before it is the head: a reader never sees a head above the final height.
        {
            let mut info = self.view.consensus.write();
            info.lib_height = height;
            info.lib_hash = hash;
        }
        self.view.set_head(done.head);
        self.last_block_at = Instant::now();
        let admin: Vec<RaftAdmin> = done
            .block
            .transactions
            .iter()
            .zip(&done.receipts)
            .filter(|(_, r)| r.status.is_success())
            .filter_map(|(tx, _)| match &tx.body.payload {
                Payload::RaftAdmin(a) => Some(a.clone()),
                _ => None,
            })
            .collect();
        let _ = self.view.blocks.send(done.block);
        if !admin.is_empty() {
            self.read_state_voters();
        }
        for change in admin {
            tracing::info!(change = change.name(), node_key = %hex::encode(change.node_key().0), "Raft membership change applied");
            if let RaftAdmin::TransferLeader { node_key } = change {
                if self.node.is_leader() && node_key != self.key.public() {
                    self.node.transfer_leader(aergo_raft::raft_id(&node_key.0));
                }
            }
        }
    }

    /// Reads the voters from the chain's state at the head: whom Raft's configuration must
    /// have, and where they listen.
    fn read_state_voters(&mut self) {
        let head = self.chain.head().height;
        let store = self.chain.store();
        let records: Vec<RaftVoterRecord> = match store.get_at(RAFT_VOTERS_KEY, head) {
            Ok(Some(bytes)) => match governance::decode_record(RAFT_VOTERS_KEY, &bytes) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "the voters in the state cannot be read");
                    return;
                }
            },
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::error!(error = %e, "the voters in the state cannot be read");
                return;
            }
        };
        let mut ids = Vec::new();
        for r in records {
            let id = aergo_raft::raft_id(&r.node_key.0);
            ids.push(id);
            let Some(peer) = aergo_net::peer_id_of_public(&r.node_key) else { continue };
            if let Ok(address) = r.address.parse() {
                self.send(NetCommand::KnowAddress { peer, address });
            }
            self.voters.insert(id, Voter { key: r.node_key, peer });
        }
        ids.sort_unstable();
        self.state_voters = ids;
    }

    /// On the leader: moves Raft's configuration to the voters the state names (one change at a
    /// time, joint consensus when several voters change). A leader the state removed hands
    /// leadership to a remaining voter first.
    fn reconcile_voters(&mut self) {
        if self.state_voters.is_empty() {
            return;
        }
        let me = self.node.id();
        let current = self.node.voters();
        if !self.state_voters.contains(&me) {
            if let Some(next) = self.state_voters.iter().find(|id| current.contains(id)) {
                tracing::info!(to = next, "this leader was removed from the voters: handing leadership over");
                self.node.transfer_leader(*next);
            }
            return;
        }
        if current == self.state_voters {
            self.conf_proposed = None;
            return;
        }
        if self.conf_proposed.is_some_and(|at| at.elapsed() < Duration::from_secs(5)) {
            return;
        }
        let add: Vec<u64> = self.state_voters.iter().filter(|id| !current.contains(id)).copied().collect();
        let remove: Vec<u64> = current.iter().filter(|id| !self.state_voters.contains(id)).copied().collect();
        tracing::info!(?add, ?remove, "proposing the voters the state names");
        match self.node.propose_conf_change(aergo_raft::voters_change(&add, &remove)) {
            Ok(()) => self.conf_proposed = Some(Instant::now()),
            Err(e) => tracing::warn!(error = %e, "cannot propose the configuration change"),
        }
    }

    fn compact(&mut self) {
        if self.catch_up.is_some() || self.applied <= self.node.log().snapshot_data().0 {
            return;
        }
        let head = self.chain.head();
        let data = SnapshotData { height: head.height, hash: head.hash.0 }.encode();
        if let Err(e) = self.node.compact(self.applied, data) {
            tracing::warn!(error = %e, "cannot compact the Raft log");
        }
    }

    // ---- catching up to a snapshot -----------------------------------------------------------

    fn maybe_catch_up(&mut self) {
        let Some(target) = self.catch_up else { return };
        let head = self.chain.head();
        if head.height >= target.height {
            if self.chain.store().height_of(&Hash(target.hash)).ok().flatten() != Some(target.height) {
                tracing::error!(
                    height = target.height, expected = %Hash(target.hash),
                    "the blocks synced do not reach the snapshot's block: this member cannot go on"
                );
                self.stop.store(true, Ordering::SeqCst);
                return;
            }
            tracing::info!(height = head.height, "caught up with the Raft snapshot");
            self.catch_up = None;
            self.catch_up_asked = None;
            self.apply_waiting();
            return;
        }
        if self.catch_up_asked.is_some_and(|(_, at)| at.elapsed() < CATCH_UP_TIMEOUT) {
            return;
        }
        // The leader, else any voter that said it holds the height.
        let leader = self.node.leader().and_then(|l| self.voters.get(&l)).map(|v| v.peer);
        let holder = self
            .peers
            .iter()
            .filter(|(p, s)| s.height >= target.height && self.voters.values().any(|v| v.peer == **p))
            .map(|(p, _)| *p)
            .next();
        let Some(peer) = holder.or(leader) else { return };
        self.catch_up_asked = Some((peer, Instant::now()));
        let count = CATCH_UP_BATCH.min((target.height - head.height) as u32);
        self.send(NetCommand::RequestBlocks { peer, from: head.height + 1, count });
    }

    fn on_catch_up_blocks(&mut self, from: PeerId, blocks: Vec<Block>) {
        if self.catch_up_asked.is_some_and(|(p, _)| p == from) {
            self.catch_up_asked = None;
        }
        // A snapshot's height caps what is taken; a full node takes what its peers hold.
        let until = match self.catch_up {
            Some(target) => target.height,
            None if !self.is_voter() => u64::MAX,
            None => return,
        };
        let head = self.chain.head();
        let run: Vec<Block> = blocks
            .into_iter()
            .filter(|b| b.header.height > head.height && b.header.height <= until)
            .collect();
        if run.is_empty() {
            return;
        }
        let report = self.chain.import_run(run);
        for done in report.committed {
            self.committed(done);
        }
        if let Some((_, e)) = report.error {
            tracing::warn!(%from, error = %e, "a block synced to catch up is invalid");
            self.send(NetCommand::Penalize {
                peer: from,
                penalty: Penalty::Invalid,
                reason: format!("synced block: {e}"),
            });
        }
        self.maybe_catch_up();
        self.maybe_follow();
    }

    // ---- a full node: no voter, it follows the voters by block sync ---------------------------

    /// Whether this node is a voter of the group's configuration.
    fn is_voter(&self) -> bool {
        self.node.voters().contains(&self.node.id())
    }

    /// A node that is no voter (a full node, or one waiting to be added) asks the peer that
    /// holds the most blocks for those after its head, one batch at a time. The blocks are the
    /// voters' final ones; each is checked as a member checks it (a voter of the parent's state
    /// signed it, re-execution), so a peer serving anything else is refused and penalized.
    fn maybe_follow(&mut self) {
        if self.catch_up.is_some() || self.is_voter() {
            return;
        }
        if self.catch_up_asked.is_some_and(|(_, at)| at.elapsed() < CATCH_UP_TIMEOUT) {
            return;
        }
        let head = self.chain.head().height;
        let best = self.peers.iter().filter(|(_, s)| s.height > head).max_by_key(|(_, s)| s.height);
        let Some((&peer, status)) = best else { return };
        let count = CATCH_UP_BATCH.min((status.height - head) as u32);
        self.catch_up_asked = Some((peer, Instant::now()));
        self.send(NetCommand::RequestBlocks { peer, from: head + 1, count });
    }

    // ---- what readers see --------------------------------------------------------------------

    fn publish_info(&mut self) {
        let head = self.chain.head();
        let leader = self.node.leader();
        match leader {
            Some(_) => self.leaderless_since = None,
            None => {
                self.leaderless_since.get_or_insert_with(now_ms);
            }
        }
        let voter = self.is_voter();
        if !voter {
            // A full node waits for no leader of its own: it follows the voters' blocks.
            self.leaderless_since = None;
        }
        let role = match self.node.role() {
            _ if !voter => "full",
            StateRole::Leader => "leader",
            StateRole::Follower => "follower",
            StateRole::Candidate => "candidate",
            StateRole::PreCandidate => "pre-candidate",
        };
        let key_of = |id: &u64| self.voters.get(id).map(|v| hex::encode(v.key.0));
        let raft = aergo_api::RaftView {
            id: self.node.id(),
            role: role.into(),
            term: self.node.term(),
            leader: leader.as_ref().and_then(key_of),
            voters: self.node.voters().iter().filter_map(key_of).collect(),
            commit_index: self.node.commit_index(),
            applied_index: self.applied,
            leaderless_since_ms: self.leaderless_since.unwrap_or(0),
        };
        let best = self.peers.values().map(|s| s.height).max().unwrap_or(0).max(head.height);
        let mut info = self.view.consensus.write();
        info.lib_height = head.height;
        info.lib_hash = head.hash;
        info.best_known_height = best;
        // A full node hears of new blocks by its peers' status (every 2 s): more than a couple
        // of blocks behind them is syncing.
        info.syncing = self.catch_up.is_some() || (!voter && best > head.height + 2);
        info.raft = Some(raft);
    }
}
