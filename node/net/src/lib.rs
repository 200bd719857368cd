//! The p2p layer: one libp2p [`Swarm`] on a tokio task (see `docs/consensus.md`). It owns the
//! sockets, peer scores and bans, the bootstrap dialling and the answers to sync requests (read
//! from the chain's view); it never writes the chain and never decides about blocks: what peers
//! send goes to the chain thread as [`Inbound`], and the bytes' meaning is `aergo-protocol`'s.
//!
//! ```text
//!   NetCommand (publish, request blocks, verdicts, penalties) ──► net task ──► peers
//!   peers ──► net task ──► Inbound (blocks, sync batches, statuses) ──► chain thread
//!                 └─ answers sync requests itself from the store and the block log
//! ```
//! Transport: TCP + Noise + Yamux. Behaviours: gossipsub (blocks, transactions; messages signed by
//! the sender's peer key and held until the application validated them), request-response with CBOR
//! (`/aergo/sync/1`: status, blocks by height range, block by hash, snapshot parts, the genesis;
//! `/aergo/branch-sync/1`: the same about a branch this node holds, `docs/branches.md`),
//! identify, ping, Kademlia,
//! connection limits and a block list. A peer's misbehaviour costs points ([`Penalty`]); at
//! [`BAN_POINTS`] it is disconnected and refused for [`BAN_TIME`].

mod batch;
mod compact;
#[cfg(feature = "test-hooks")]
pub mod probe;
pub mod snapshot;

use aergo_chain::view::{ChainView, PoolHandle};
use aergo_primitives::types::{Block, Hash, Transaction};
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId, TopicHash};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, identity, kad, noise, ping, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Sync requests a peer may make per second; each one beyond costs it points.
pub const MAX_REQUESTS_PER_SEC: u32 = 50;
/// Points at which a peer is banned.
pub const BAN_POINTS: u32 = 100;
/// How long a banned peer stays refused.
pub const BAN_TIME: Duration = Duration::from_secs(600);
/// Sync answers read from the block log or the state at once, off the net task (each up to
/// [`MAX_SYNC_RESPONSE_BYTES`]); more wait for their turn.
const ANSWERS_IN_FLIGHT: usize = 4;
/// How often each peer is asked for its status.
const STATUS_INTERVAL: Duration = Duration::from_secs(2);
/// How often unconnected bootstrap peers are dialled again.
const REDIAL_INTERVAL: Duration = Duration::from_secs(3);

/// What a peer did wrong, and what it costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Penalty {
    /// An invalid block or transaction (bad signature, wrong producer or slot, bad state root).
    Invalid,
    /// Undecodable or oversized bytes.
    Malformed,
    /// A block from the future, a stale duplicate, more requests than allowed.
    Annoying,
}

impl Penalty {
    pub fn points(self) -> u32 {
        match self {
            Penalty::Invalid => 50,
            Penalty::Malformed => 50,
            Penalty::Annoying => 10,
        }
    }
}

pub use aergo_protocol::{
    Answer, BranchRequest, Status, SyncRequest, SyncResponse, MAX_BLOCK_BYTES, MAX_BLOCK_TX_BYTES,
    MAX_SYNC_BLOCKS, MAX_SYNC_REQUEST_BYTES, MAX_SYNC_RESPONSE_BYTES,
};

/// What the net task tells the chain thread.
#[derive(Debug)]
pub enum Inbound {
    /// A gossiped block; the chain thread answers with [`NetCommand::Verdict`].
    GossipBlock {
        block: Box<Block>,
        from: PeerId,
        id: MessageId,
    },
    /// Blocks a peer sent in answer to a request.
    Blocks {
        from: PeerId,
        blocks: Vec<Block>,
    },
    Status {
        peer: PeerId,
        status: Status,
    },
    /// A request to `peer` failed or was answered with nothing useful.
    RequestFailed {
        peer: PeerId,
    },
    PeerGone(PeerId),
    /// A Raft message from a peer (its bytes as sent; the chain thread decodes and checks them).
    Raft {
        from: PeerId,
        message: Vec<u8>,
    },
    /// A Raft message to `peer` could not be delivered.
    RaftUnreachable {
        peer: PeerId,
    },
}

/// What the node asks of the net task.
#[derive(Debug)]
pub enum NetCommand {
    /// A block of ours: gossiped compact on `main` and whole on a public branch's topic, announced
    /// to the members of a private branch.
    PublishBlock(Arc<Block>),
    PublishTx(Vec<u8>),
    RequestBlocks {
        peer: PeerId,
        from: u64,
        count: u32,
    },
    RequestBlock {
        peer: PeerId,
        hash: Hash,
    },
    Verdict {
        id: MessageId,
        from: PeerId,
        acceptance: Verdict,
    },
    Penalize {
        peer: PeerId,
        penalty: Penalty,
        reason: String,
    },
    /// Sends a Raft message to a voter (dialling it at its known addresses if need be).
    Raft {
        peer: PeerId,
        message: Vec<u8>,
    },
    /// Where a peer can be dialled (a voter added to a Raft chain).
    KnowAddress {
        peer: PeerId,
        address: Multiaddr,
    },
    /// Sends a transaction to a producer's pool; its answer comes back on `reply`.
    Forward {
        peer: PeerId,
        tx: Vec<u8>,
        reply: ForwardReply,
    },
    /// The answer to a peer's request, computed off the net task.
    Respond {
        channel: request_response::ResponseChannel<SyncResponse>,
        response: SyncResponse,
    },
    /// Starts carrying a branch this node holds: its topics are subscribed, peers are asked for
    /// their status of it, its sync requests are answered from its view.
    OpenBranch(BranchLink),
    /// Stops carrying a branch (unsubscribes; its requests are refused again).
    CloseBranch {
        name: String,
    },
    /// A command of a branch's chain thread or pool: a publication goes on the branch's topic, a
    /// request (blocks, a block, a forwarded transaction) and its answer on `branch-sync`.
    OnBranch {
        branch: String,
        command: Box<NetCommand>,
    },
}

/// What the net task needs of a branch this node holds.
pub struct BranchLink {
    pub name: String,
    /// What its sync requests are answered from.
    pub view: Arc<ChainView>,
    /// Where its gossiped and forwarded transactions go.
    pub pool: Arc<PoolHandle>,
    /// Its chain thread.
    pub inbound: std::sync::mpsc::Sender<Inbound>,
    /// A private branch's member nodes (`None`: a public branch). A private branch has no
    /// topics: its blocks are announced to the connected members on `branch-sync`
    /// ([`SyncRequest::NewBlock`]) and its transactions sent to them (`SubmitTx`), and
    /// `branch-sync` answers only its members (anyone else is told the branch is not held).
    pub members: Option<std::collections::HashSet<PeerId>>,
}

impl std::fmt::Debug for BranchLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BranchLink").field("name", &self.name).finish_non_exhaustive()
    }
}

/// A held branch on the net task: its link and its two topics (not subscribed for a private
/// branch).
struct HeldBranch {
    link: BranchLink,
    blocks: IdentTopic,
    txs: IdentTopic,
}

impl HeldBranch {
    /// Whether `peer` may learn of the branch: anyone for a public branch, members only for a
    /// private one.
    fn may_see(&self, peer: &PeerId) -> bool {
        self.link.members.as_ref().is_none_or(|m| m.contains(peer))
    }
}

/// Where a producer's answer to a forwarded transaction goes.
pub type ForwardReply = tokio::sync::oneshot::Sender<Result<aergo_api::SendTxResult, String>>;

/// The chain thread's judgement of a gossiped block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: relay it.
    Accept,
    /// Invalid: drop it and count it against the sender.
    Reject,
    /// Not for relaying (late, known, or for a branch we do not follow), but not wrong.
    Ignore,
}

/// A connected peer, as RPC shows it.
#[derive(Clone, Debug)]
pub struct PeerEntry {
    pub address: String,
    pub status: Option<Status>,
}

/// The state of the p2p layer that the rest of the node reads.
#[derive(Debug, Default)]
pub struct NetState {
    pub peer_id: String,
    pub listen: RwLock<Vec<String>>,
    pub peers: RwLock<BTreeMap<PeerId, PeerEntry>>,
    /// Blocks and transactions this node published, and the gossip payload bytes it sent.
    pub gossip_blocks_out: std::sync::atomic::AtomicU64,
    pub gossip_txs_out: std::sync::atomic::AtomicU64,
    pub gossip_bytes_out: std::sync::atomic::AtomicU64,
    /// Gossip payload bytes received, per topic.
    pub gossip_blocks_in: std::sync::atomic::AtomicU64,
    pub gossip_txs_in: std::sync::atomic::AtomicU64,
    pub banned_total: std::sync::atomic::AtomicU64,
    /// Gossip messages received and published, per topic (every topic a message came on).
    pub topics: RwLock<BTreeMap<String, aergo_api::TopicCounts>>,
    /// Blocks of private branches announced to member peers on `branch-sync`.
    pub private_announced: std::sync::atomic::AtomicU64,
    /// Compact blocks received on gossip, transactions they named that the pool did not hold,
    /// fills that fell back to asking for the whole block, and the bytes of the transactions
    /// and whole blocks fetched for them.
    pub compact_blocks_in: std::sync::atomic::AtomicU64,
    pub compact_txs_missing: std::sync::atomic::AtomicU64,
    pub compact_fallbacks: std::sync::atomic::AtomicU64,
    pub compact_fill_bytes_in: std::sync::atomic::AtomicU64,
    /// Connections refused right after the handshake because the peer is not on a private
    /// repository's allowlist (`docs/repositories.md`).
    pub refused_total: std::sync::atomic::AtomicU64,
    /// The bootstrap addresses and whether they are reached (for `node_info` and the console).
    pub bootstrap: RwLock<Vec<aergo_api::BootstrapView>>,
}

impl NetState {
    /// Counts a gossip message on `topic`: the topic's name is copied only the first time.
    fn count_topic(&self, topic: &str, count: impl FnOnce(&mut aergo_api::TopicCounts)) {
        let mut topics = self.topics.write();
        match topics.get_mut(topic) {
            Some(counts) => count(counts),
            None => count(topics.entry(topic.to_string()).or_default()),
        }
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: libp2p::connection_limits::Behaviour,
    blocked: libp2p::allow_block_list::Behaviour<libp2p::allow_block_list::BlockedPeers>,
    /// A private repository's node allowlist (off elsewhere).
    allowed: libp2p::swarm::behaviour::toggle::Toggle<
        libp2p::allow_block_list::Behaviour<libp2p::allow_block_list::AllowedPeers>,
    >,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
    branch_sync: request_response::Behaviour<BranchSyncCodec>,
    raft: request_response::Behaviour<RaftCodec>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
}

/// The p2p settings (`[p2p]` in the node's config).
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and whenever they are not connected (`/ip4/…/tcp/…`, with
    /// `/p2p/<id>` when the peer's id is known; without, the id is learnt when the dial succeeds).
    pub bootstrap: Vec<Multiaddr>,
    /// The address peers are told to dial this node at (NAT, port forwarding).
    pub external: Option<Multiaddr>,
    pub max_peers: u32,
    /// Peers whose addresses are known up front (a Raft chain's voters): dialled when a message
    /// is for them.
    pub known: Vec<(PeerId, Multiaddr)>,
    /// A private repository's allowlist: the node keys that may connect, read again every
    /// second; every other peer is refused right after the handshake, and one taken off is
    /// disconnected. `None`: anyone may connect.
    pub allowlist: Option<Allowlist>,
}

/// The node keys a private repository lets connect (its state's allowlist and voters).
#[derive(Clone)]
pub struct Allowlist(pub Arc<dyn Fn() -> Vec<aergo_primitives::types::PublicKey> + Send + Sync>);

impl std::fmt::Debug for Allowlist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Allowlist")
    }
}

/// How often the allowlist is read again.
const ALLOWLIST_EVERY: Duration = Duration::from_secs(1);

/// A bootstrap address and what the node knows of the peer there.
#[derive(Clone, Debug)]
struct Bootstrap {
    addr: Multiaddr,
    /// The peer's id: from the address's `/p2p/` part, or learnt from the first connection.
    peer: Option<PeerId>,
    /// The id was given in the address: a peer answering with another one is refused.
    pinned: bool,
    /// Failed dials in a row (logged at the first and then every [`DIAL_LOG_EVERY`]).
    failures: u32,
    /// The address turned out to be this node's own.
    is_self: bool,
    last_error: Option<String>,
}

/// How often a failing bootstrap address is logged again, in failed dials (about a minute).
const DIAL_LOG_EVERY: u32 = 20;

/// The libp2p identity for the node's ed25519 identity key.
pub fn identity_of(secret: [u8; 32]) -> identity::Keypair {
    let mut bytes = secret;
    identity::Keypair::ed25519_from_bytes(&mut bytes)
        .unwrap_or_else(|_| identity::Keypair::generate_ed25519())
}

pub fn peer_id_of(secret: [u8; 32]) -> PeerId {
    identity_of(secret).public().to_peer_id()
}

/// The ed25519 identity key a peer id carries (ed25519 ids embed their key), when it does.
pub fn public_of_peer(peer: &PeerId) -> Option<aergo_primitives::types::PublicKey> {
    let key = identity::PublicKey::try_decode_protobuf(peer.as_ref().digest()).ok()?;
    let ed = key.try_into_ed25519().ok()?;
    Some(aergo_primitives::types::PublicKey(ed.to_bytes()))
}

/// The peer id of the node whose identity key has the public key `key` (`None`: not a valid
/// ed25519 point).
pub fn peer_id_of_public(key: &aergo_primitives::types::PublicKey) -> Option<PeerId> {
    let public = identity::ed25519::PublicKey::try_from_bytes(&key.0).ok()?;
    Some(identity::PublicKey::from(public).to_peer_id())
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("p2p: {0}")]
    Setup(String),
    #[error("p2p cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
}

/// A running net task.
pub struct Net {
    pub state: Arc<NetState>,
    pub commands: mpsc::Sender<NetCommand>,
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Net {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn topics(chain_id: &str) -> (IdentTopic, IdentTopic) {
    (IdentTopic::new(format!("/aergo/{chain_id}/blocks")), IdentTopic::new(format!("/aergo/{chain_id}/txs")))
}

/// The topic of `main`'s compact blocks (`docs/consensus.md`, "Compact blocks"): a topic of its
/// own, so that a node of an earlier version (subscribed to whole blocks only) never receives
/// bytes it cannot decode; it catches up by sync.
fn compact_topic(chain_id: &str) -> IdentTopic {
    IdentTopic::new(format!("/aergo/{chain_id}/cblocks"))
}

/// Why a gossiped transaction can never run on `view`'s chain: signed for another chain id or
/// another branch than the topic's. `None`: it is for this one.
fn foreign(view: &ChainView, tx: &Transaction) -> Option<String> {
    if tx.body.chain_id != view.chain_id {
        Some(format!("a transaction for chain {:?} on the topic of {:?}", tx.body.chain_id, view.chain_id))
    } else if tx.body.branch != view.branch {
        Some(format!("a transaction for branch {:?} on the topic of {:?}", tx.body.branch, view.branch))
    } else {
        None
    }
}

/// The topic of `main`'s transactions in batches (`docs/consensus.md`, "Transaction batches on
/// gossip"): a topic of its own for the same reason.
fn batch_topic(chain_id: &str) -> IdentTopic {
    IdentTopic::new(format!("/aergo/{chain_id}/txbatch"))
}

/// Starts the swarm: listens, dials the bootstrap peers, and runs until [`Net::shutdown`].
pub async fn start(
    config: NetConfig,
    secret: [u8; 32],
    view: Arc<ChainView>,
    pool: Arc<PoolHandle>,
    inbound: std::sync::mpsc::Sender<Inbound>,
    commands: mpsc::Sender<NetCommand>,
    rx: mpsc::Receiver<NetCommand>,
) -> Result<Net, NetError> {
    let key = identity_of(secret);
    let local = key.public().to_peer_id();
    let setup = |e: &dyn std::fmt::Display| NetError::Setup(e.to_string());
    let mut swarm = build_swarm(key, config.max_peers, MAX_BLOCK_BYTES + 4096, config.allowlist.is_some())?;
    let (blocks_topic, txs_topic) = topics(&view.chain_id);
    swarm.behaviour_mut().gossipsub.subscribe(&blocks_topic).map_err(|e| setup(&e))?;
    swarm.behaviour_mut().gossipsub.subscribe(&txs_topic).map_err(|e| setup(&e))?;
    let cblocks_topic = compact_topic(&view.chain_id);
    swarm.behaviour_mut().gossipsub.subscribe(&cblocks_topic).map_err(|e| setup(&e))?;
    let txbatch_topic = batch_topic(&view.chain_id);
    swarm.behaviour_mut().gossipsub.subscribe(&txbatch_topic).map_err(|e| setup(&e))?;
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen { addr: addr.to_string(), reason: e.to_string() })?;
    }
    let state = Arc::new(NetState { peer_id: local.to_string(), ..NetState::default() });
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut task = NetTask {
        swarm,
        view,
        pool,
        state: state.clone(),
        inbound,
        blocks_topic,
        txs_topic,
        cblocks_topic,
        txbatch_topic,
        batcher: batch::TxBatcher::default(),
        filling: HashMap::new(),
        published: std::collections::VecDeque::new(),
        bootstrap: config
            .bootstrap
            .iter()
            .filter(|a| peer_of(a) != Some(local))
            .map(|a| Bootstrap {
                addr: a.clone(),
                peer: peer_of(a),
                pinned: peer_of(a).is_some(),
                failures: 0,
                is_self: false,
                last_error: None,
            })
            .collect(),
        dialing: HashMap::new(),
        points: HashMap::new(),
        banned: HashMap::new(),
        pending: HashMap::new(),
        verdicts: commands.clone(),
        answering: Arc::new(tokio::sync::Semaphore::new(ANSWERS_IN_FLIGHT)),
        requests: HashMap::new(),
        forwarded: HashMap::new(),
        branches: HashMap::new(),
        branch_topics: HashMap::new(),
        branch_pending: HashMap::new(),
        branch_forwarded: HashMap::new(),
        allowlist: config.allowlist.clone(),
        allowed: std::collections::HashSet::new(),
    };
    // Before the first connection: who may connect.
    task.sync_allowlist();
    for b in &task.bootstrap {
        if let Some(peer) = b.peer {
            task.swarm.behaviour_mut().kad.add_address(&peer, b.addr.clone());
        }
    }
    for (peer, addr) in &config.known {
        if *peer != local {
            task.swarm.add_peer_address(*peer, addr.clone());
            task.swarm.behaviour_mut().kad.add_address(peer, addr.clone());
        }
    }
    if let Some(external) = config.external {
        tracing::info!(address = %external, "p2p external address announced to peers");
        task.swarm.add_external_address(external);
    }
    let handle = tokio::spawn(async move { task.run(rx, stop_rx).await });
    Ok(Net { state, commands, task: handle, stop })
}

/// The swarm every AERGO node runs (and the probe, with a larger gossip limit to send what a node
/// must refuse).
fn build_swarm(
    key: identity::Keypair,
    max_peers: u32,
    max_transmit: usize,
    allowlist: bool,
) -> Result<Swarm<Behaviour>, NetError> {
    let setup = |e: &dyn std::fmt::Display| NetError::Setup(e.to_string());
    let gossip_config = gossipsub::ConfigBuilder::default()
        .max_transmit_size(max_transmit)
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .heartbeat_interval(Duration::from_millis(700))
        .message_id_fn(|m: &gossipsub::Message| MessageId::from(blake3::hash(&m.data).as_bytes().to_vec()))
        .duplicate_cache_time(Duration::from_secs(120))
        .build()
        .map_err(|e| setup(&e))?;
    Ok(libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| setup(&e))?
        .with_behaviour(|key| {
            let limits = libp2p::connection_limits::ConnectionLimits::default()
                .with_max_established(Some(max_peers))
                .with_max_established_per_peer(Some(2))
                .with_max_pending_incoming(Some(max_peers));
            let gossipsub =
                gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossip_config)
                    .map_err(std::io::Error::other)?;
            let sync = request_response::Behaviour::with_codec(
                SyncCodec,
                [(StreamProtocol::new(aergo_protocol::SYNC_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
            );
            let branch_sync = request_response::Behaviour::with_codec(
                BranchSyncCodec,
                [(StreamProtocol::new(aergo_protocol::BRANCH_SYNC_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
            );
            let raft = request_response::Behaviour::with_codec(
                RaftCodec,
                [(StreamProtocol::new(aergo_protocol::RAFT_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(5))
                    .with_max_concurrent_streams(1024),
            );
            let mut kad = kad::Behaviour::with_config(
                key.public().to_peer_id(),
                kad::store::MemoryStore::new(key.public().to_peer_id()),
                kad::Config::new(StreamProtocol::new("/aergo/kad/1")),
            );
            kad.set_mode(Some(kad::Mode::Server));
            Ok(Behaviour {
                limits: libp2p::connection_limits::Behaviour::new(limits),
                blocked: Default::default(),
                allowed: allowlist.then(Default::default).into(),
                gossipsub,
                sync,
                branch_sync,
                raft,
                identify: identify::Behaviour::new(identify::Config::new("/aergo/1".into(), key.public())),
                ping: ping::Behaviour::new(ping::Config::new()),
                kad,
            })
        })
        .map_err(|e| setup(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build())
}

/// A part of a snapshot of this node's state at a final height, as frames.
fn snapshot_part(
    view: &ChainView,
    part: aergo_protocol::SnapshotPart,
) -> Result<Vec<serde_bytes::ByteBuf>, aergo_chain::ChainError> {
    use aergo_protocol::SnapshotPart;
    use aergo_storage::snapshot::{self, SnapshotError};
    let final_height = view.store.finalized()?.map_or(0, |(h, _)| h);
    let not_final = |height: u64| {
        aergo_chain::ChainError::Snapshot(SnapshotError::Export(format!(
            "height {height} is not final here (final: {final_height})"
        )))
    };
    let frames = match part {
        SnapshotPart::Head => {
            aergo_chain::snapshot::head_frames(&view.store, &view.reader, &view.schedule, &view.genesis)?
        }
        SnapshotPart::Leaves { height, after } => {
            if height > final_height {
                return Err(not_final(height));
            }
            snapshot::leaves_frame(&view.store, height, after.map(|h| h.0))?.into_iter().collect()
        }
        SnapshotPart::Rows { height, after } => {
            if height > final_height {
                return Err(not_final(height));
            }
            snapshot::rows_frame(&view.store, height, after.as_ref().map(|a| a.as_slice()))?
                .into_iter()
                .collect()
        }
    };
    Ok(frames.iter().map(|f| serde_bytes::ByteBuf::from(aergo_primitives::types::to_vec_exact(f))).collect())
}

/// The `/p2p/<id>` part of an address.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

struct NetTask {
    swarm: Swarm<Behaviour>,
    /// A private repository's allowlist, and the peers it lets connect now.
    allowlist: Option<Allowlist>,
    allowed: std::collections::HashSet<PeerId>,
    /// The status this node tells peers, and the blocks it serves them.
    view: Arc<ChainView>,
    /// Where gossiped and forwarded transactions go.
    pool: Arc<PoolHandle>,
    state: Arc<NetState>,
    inbound: std::sync::mpsc::Sender<Inbound>,
    blocks_topic: IdentTopic,
    txs_topic: IdentTopic,
    /// `main`'s compact blocks, and those being filled, by block hash.
    cblocks_topic: IdentTopic,
    /// `main`'s transactions in batches, and this node's own waiting to go out.
    txbatch_topic: IdentTopic,
    batcher: batch::TxBatcher,
    filling: HashMap<Hash, compact::Fill>,
    /// The last blocks this node published on `main`, for peers filling them: a block of ours
    /// may not be on our chain (it lost a fork race, or a test's equivocation).
    published: std::collections::VecDeque<Arc<Block>>,
    bootstrap: Vec<Bootstrap>,
    /// Dials to bootstrap addresses in flight: the entry each one is for.
    dialing: HashMap<libp2p::swarm::ConnectionId, usize>,
    points: HashMap<PeerId, u32>,
    banned: HashMap<PeerId, Instant>,
    /// What each outbound request asked for.
    pending: HashMap<request_response::OutboundRequestId, SyncRequest>,
    /// The command queue, for verdicts that come back from admission tasks.
    verdicts: mpsc::Sender<NetCommand>,
    /// Answers being read off the net task (blocks, snapshot parts): at most
    /// [`ANSWERS_IN_FLIGHT`] at once.
    answering: Arc<tokio::sync::Semaphore>,
    /// Sync requests per peer in the current one-second window.
    requests: HashMap<PeerId, (Instant, u32)>,
    /// Where the answers to forwarded transactions go.
    forwarded: HashMap<request_response::OutboundRequestId, ForwardReply>,
    /// The branches this node holds besides `main`, by name, and their topics.
    branches: HashMap<String, HeldBranch>,
    /// Which branch a subscribed topic is of, and whether it is its blocks' topic.
    branch_topics: HashMap<TopicHash, (String, bool)>,
    /// What each outbound `branch-sync` request asked for, and of which branch (request ids
    /// are per behaviour: these never mix with `pending`'s).
    branch_pending: HashMap<request_response::OutboundRequestId, (String, SyncRequest)>,
    /// Where the answers to transactions forwarded on `branch-sync` go.
    branch_forwarded: HashMap<request_response::OutboundRequestId, ForwardReply>,
}

impl NetTask {
    async fn run(
        &mut self,
        mut commands: mpsc::Receiver<NetCommand>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut status_tick = tokio::time::interval(STATUS_INTERVAL);
        let mut dial_tick = tokio::time::interval(REDIAL_INTERVAL);
        let mut kad_tick = tokio::time::interval(Duration::from_secs(30));
        let mut allow_tick = tokio::time::interval(ALLOWLIST_EVERY);
        let mut fill_tick = tokio::time::interval(compact::FILL_TIMEOUT / 4);
        // One timer for the batch of own transactions, moved when a new batch starts (not a new
        // timer per event of this loop).
        let flush = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(flush);
        let mut armed = None;
        loop {
            let due = self.batcher.due();
            if let Some(at) = due.filter(|at| armed != Some(*at)) {
                flush.as_mut().reset(at);
                armed = Some(at);
            }
            tokio::select! {
                _ = stop.changed() => break,
                _ = &mut flush, if due.is_some() => {
                    let batch = self.batcher.take();
                    self.publish_txs(batch);
                }
                _ = allow_tick.tick(), if self.allowlist.is_some() => self.sync_allowlist(),
                Some(cmd) = commands.recv() => self.command(cmd),
                event = self.swarm.select_next_some() => self.event(event),
                _ = status_tick.tick() => self.ask_status(),
                _ = fill_tick.tick(), if !self.filling.is_empty() => self.sweep_fills(),
                _ = dial_tick.tick() => self.redial(),
                _ = kad_tick.tick() => { let _ = self.swarm.behaviour_mut().kad.bootstrap(); }
            }
        }
    }

    /// Brings the swarm's allowlist to what the repository's state says: new keys may connect,
    /// peers taken off are disconnected (libp2p closes their connections).
    fn sync_allowlist(&mut self) {
        let Some(list) = &self.allowlist else { return };
        let want: std::collections::HashSet<PeerId> =
            (list.0)().iter().filter_map(peer_id_of_public).collect();
        let Some(allowed) = self.swarm.behaviour_mut().allowed.as_mut() else { return };
        for peer in want.difference(&self.allowed) {
            allowed.allow_peer(*peer);
        }
        for peer in self.allowed.difference(&want) {
            tracing::info!(%peer, "taken off the repository's allowlist: disconnected");
            allowed.disallow_peer(*peer);
        }
        self.allowed = want;
    }

    fn redial(&mut self) {
        let now = Instant::now();
        let lifted: Vec<PeerId> =
            self.banned.iter().filter(|(_, until)| **until <= now).map(|(p, _)| *p).collect();
        for peer in lifted {
            self.banned.remove(&peer);
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            tracing::info!(%peer, "ban lifted");
        }
        self.publish_bootstrap();
        for i in 0..self.bootstrap.len() {
            let b = &self.bootstrap[i];
            let due = match b.peer {
                _ if b.is_self => false,
                Some(peer) => !self.swarm.is_connected(&peer) && !self.banned.contains_key(&peer),
                None => true,
            };
            if !due || self.dialing.values().any(|j| *j == i) {
                continue;
            }
            let opts = libp2p::swarm::dial_opts::DialOpts::from(b.addr.clone());
            let id = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => {
                    self.dialing.insert(id, i);
                }
                Err(e) => self.dial_failed(i, &e),
            }
        }
    }

    /// What `node_info` shows of the bootstrap peers.
    fn publish_bootstrap(&self) {
        let view = self
            .bootstrap
            .iter()
            .map(|b| aergo_api::BootstrapView {
                address: b.addr.to_string(),
                peer_id: b.peer.map(|p| p.to_string()),
                connected: b.peer.is_some_and(|p| self.swarm.is_connected(&p)),
                failures: b.failures,
                last_error: b.last_error.clone(),
                is_self: b.is_self,
            })
            .collect();
        *self.state.bootstrap.write() = view;
    }

    /// A dial to bootstrap entry `i` failed: logged at the first failure and then about once a minute.
    fn dial_failed(&mut self, i: usize, error: &libp2p::swarm::DialError) {
        let b = &mut self.bootstrap[i];
        if let libp2p::swarm::DialError::LocalPeerId { .. } = error {
            tracing::info!(address = %b.addr, "bootstrap address is this node's own: not dialled again");
            b.is_self = true;
            self.publish_bootstrap();
            return;
        }
        b.failures += 1;
        b.last_error = Some(error.to_string());
        if b.failures % DIAL_LOG_EVERY == 1 {
            tracing::warn!(address = %b.addr, failures = b.failures, %error, "cannot reach bootstrap peer; dialling again");
        }
        self.publish_bootstrap();
    }

    /// Counts a request from `peer` in the current second; true beyond the allowance.
    fn flooding(&mut self, peer: PeerId) -> bool {
        let now = Instant::now();
        let (since, count) = self.requests.entry(peer).or_insert((now, 0));
        if now.duration_since(*since) >= Duration::from_secs(1) {
            *since = now;
            *count = 0;
        }
        *count += 1;
        *count > MAX_REQUESTS_PER_SEC
    }

    fn ask_status(&mut self) {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            self.request(peer, SyncRequest::Status);
            self.ask_branch_status(peer);
        }
    }

    /// Asks `peer` for its status of each branch this node holds.
    fn ask_branch_status(&mut self, peer: PeerId) {
        // A member of a private branch asks only its members.
        let names: Vec<String> =
            self.branches.iter().filter(|(_, h)| h.may_see(&peer)).map(|(n, _)| n.clone()).collect();
        for branch in names {
            self.branch_request(peer, branch, SyncRequest::Status);
        }
    }

    fn request(&mut self, peer: PeerId, req: SyncRequest) {
        let id = self.swarm.behaviour_mut().sync.send_request(&peer, req.clone());
        self.pending.insert(id, req);
    }

    fn branch_request(&mut self, peer: PeerId, branch: String, request: SyncRequest) {
        let asked = BranchRequest { branch, request };
        let id = self.swarm.behaviour_mut().branch_sync.send_request(&peer, asked.clone());
        self.branch_pending.insert(id, (asked.branch, asked.request));
    }

    fn penalize(&mut self, peer: PeerId, penalty: Penalty, reason: &str) {
        let points = self.points.entry(peer).or_default();
        *points += penalty.points();
        tracing::warn!(%peer, ?penalty, points = *points, %reason, "peer penalized");
        if *points >= BAN_POINTS {
            self.points.remove(&peer);
            self.banned.insert(peer, Instant::now() + BAN_TIME);
            self.swarm.behaviour_mut().blocked.block_peer(peer);
            let _ = self.swarm.disconnect_peer_id(peer);
            self.state.banned_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(%peer, "peer banned for {} s", BAN_TIME.as_secs());
        }
    }

    /// Publishes a batch of this node's transactions on `txbatch`, and each of them on `txs` as
    /// well while a peer of an earlier version (on `txs`, not on `txbatch`) is connected.
    fn publish_txs(&mut self, batch: Vec<Vec<u8>>) {
        use std::sync::atomic::Ordering::Relaxed;
        if batch.is_empty() {
            return;
        }
        let (txs, batches) = (self.txs_topic.hash(), self.txbatch_topic.hash());
        let legacy = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .any(|(_, topics)| topics.contains(&&txs) && !topics.contains(&&batches));
        let n = batch.len() as u64;
        let topic = self.txbatch_topic.clone();
        if self.publish(topic, aergo_protocol::encode_tx_batch(&batch)) {
            self.state.gossip_txs_out.fetch_add(n, Relaxed);
        }
        if legacy {
            for bytes in batch {
                let topic = self.txs_topic.clone();
                self.publish(topic, bytes);
            }
        }
    }

    /// Publishes on a topic; counts the bytes sent. False when nobody could be sent it.
    fn publish(&mut self, topic: IdentTopic, bytes: Vec<u8>) -> bool {
        let n = bytes.len() as u64;
        let hash = topic.hash();
        match self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            Ok(_) => {
                self.state.gossip_bytes_out.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                self.state.count_topic(hash.as_str(), |c| c.messages_out += 1);
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "not gossiped");
                false
            }
        }
    }

    fn command(&mut self, cmd: NetCommand) {
        use std::sync::atomic::Ordering::Relaxed;
        match cmd {
            NetCommand::PublishBlock(block) => {
                let topic = self.cblocks_topic.clone();
                if self.publish(topic, compact::compact_bytes(&block)) {
                    self.state.gossip_blocks_out.fetch_add(1, Relaxed);
                }
                self.published.push_back(block);
                if self.published.len() > compact::PUBLISHED_KEPT {
                    self.published.pop_front();
                }
            }
            NetCommand::PublishTx(bytes) => {
                for batch in self.batcher.push(bytes, tokio::time::Instant::now()) {
                    self.publish_txs(batch);
                }
            }
            NetCommand::RequestBlocks { peer, from, count } => {
                self.request(peer, SyncRequest::Blocks { from, count: count.min(MAX_SYNC_BLOCKS) })
            }
            NetCommand::RequestBlock { peer, hash } => self.request(peer, SyncRequest::Block { hash }),
            NetCommand::Verdict { id, from, acceptance } => {
                let acceptance = match acceptance {
                    Verdict::Accept => MessageAcceptance::Accept,
                    Verdict::Reject => MessageAcceptance::Reject,
                    Verdict::Ignore => MessageAcceptance::Ignore,
                };
                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&id, &from, acceptance);
            }
            NetCommand::Penalize { peer, penalty, reason } => self.penalize(peer, penalty, &reason),
            NetCommand::Raft { peer, message } => {
                self.swarm.behaviour_mut().raft.send_request(&peer, message);
            }
            NetCommand::KnowAddress { peer, address } => {
                if peer != *self.swarm.local_peer_id() {
                    self.swarm.add_peer_address(peer, address.clone());
                    self.swarm.behaviour_mut().kad.add_address(&peer, address);
                }
            }
            NetCommand::Forward { peer, tx, reply } => {
                let request = SyncRequest::SubmitTx { tx: serde_bytes::ByteBuf::from(tx) };
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.forwarded.insert(id, reply);
            }
            NetCommand::Respond { channel, response } => {
                let _ = self.swarm.behaviour_mut().sync.send_response(channel, response);
            }
            NetCommand::OpenBranch(link) => self.open_branch(link),
            NetCommand::CloseBranch { name } => self.close_branch(&name),
            NetCommand::OnBranch { branch, command } => self.on_branch(branch, *command),
        }
    }

    fn open_branch(&mut self, link: BranchLink) {
        let (blocks, txs) = aergo_protocol::branch_topics(&self.view.chain_id, &link.name);
        let (blocks, txs) = (IdentTopic::new(blocks), IdentTopic::new(txs));
        let name = link.name.clone();
        // A topic is open to whoever subscribes to its name: a private branch has none.
        let private = link.members.is_some();
        if !private {
            for topic in [&blocks, &txs] {
                if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(topic) {
                    tracing::error!(branch = %name, error = %e, "cannot subscribe to a branch's topic");
                }
            }
            self.branch_topics.insert(blocks.hash(), (name.clone(), true));
            self.branch_topics.insert(txs.hash(), (name.clone(), false));
        }
        let held = HeldBranch { link, blocks, txs };
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().filter(|p| held.may_see(p)).collect();
        self.branches.insert(name.clone(), held);
        tracing::info!(branch = %name, private, "p2p carries a branch");
        for peer in peers {
            self.branch_request(peer, name.clone(), SyncRequest::Status);
        }
    }

    fn close_branch(&mut self, name: &str) {
        if let Some(held) = self.branches.remove(name) {
            if held.link.members.is_none() {
                for topic in [&held.blocks, &held.txs] {
                    self.swarm.behaviour_mut().gossipsub.unsubscribe(topic);
                    self.branch_topics.remove(&topic.hash());
                }
            }
            tracing::info!(branch = %name, "p2p no longer carries a branch");
        }
    }

    /// A private branch's new block or transaction goes to its connected members on
    /// `branch-sync` (fire and forget: their answers are not waited for).
    fn send_to_members(
        &mut self,
        branch: &str,
        members: &std::collections::HashSet<PeerId>,
        request: SyncRequest,
    ) -> usize {
        let peers: Vec<PeerId> =
            self.swarm.connected_peers().copied().filter(|p| members.contains(p)).collect();
        for peer in &peers {
            let asked = BranchRequest { branch: branch.to_string(), request: request.clone() };
            // Not in `branch_pending`: the answer is dropped when it comes.
            self.swarm.behaviour_mut().branch_sync.send_request(peer, asked);
        }
        peers.len()
    }

    /// A branch's chain thread or pool asks: on its topics and on `branch-sync`. A branch that is
    /// no longer held drops the command (a forwarded transaction is answered so).
    fn on_branch(&mut self, branch: String, command: NetCommand) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(held) = self.branches.get(&branch) else {
            if let NetCommand::Forward { reply, .. } = command {
                let _ = reply.send(Err(format!("this node no longer holds branch {branch:?}")));
            }
            return;
        };
        if let Some(members) = held.link.members.clone() {
            match command {
                NetCommand::PublishBlock(block) => {
                    let hash = block.hash();
                    let sent = self.send_to_members(&branch, &members, SyncRequest::NewBlock { hash });
                    self.state.private_announced.fetch_add(sent as u64, Relaxed);
                    return;
                }
                NetCommand::PublishTx(bytes) => {
                    let tx = serde_bytes::ByteBuf::from(bytes);
                    self.send_to_members(&branch, &members, SyncRequest::SubmitTx { tx });
                    return;
                }
                other => return self.on_branch_request(branch, other),
            }
        }
        match command {
            NetCommand::PublishBlock(block) => {
                let topic = held.blocks.clone();
                if self.publish(topic, block.encode()) {
                    self.state.gossip_blocks_out.fetch_add(1, Relaxed);
                }
            }
            NetCommand::PublishTx(bytes) => {
                let topic = held.txs.clone();
                if self.publish(topic, bytes) {
                    self.state.gossip_txs_out.fetch_add(1, Relaxed);
                }
            }
            other => self.on_branch_request(branch, other),
        }
    }

    /// A branch's request (blocks, a block, a forwarded transaction, an answer) on `branch-sync`.
    fn on_branch_request(&mut self, branch: String, command: NetCommand) {
        match command {
            NetCommand::RequestBlocks { peer, from, count } => self.branch_request(
                peer,
                branch,
                SyncRequest::Blocks { from, count: count.min(MAX_SYNC_BLOCKS) },
            ),
            NetCommand::RequestBlock { peer, hash } => {
                self.branch_request(peer, branch, SyncRequest::Block { hash })
            }
            NetCommand::Forward { peer, tx, reply } => {
                let request = BranchRequest {
                    branch,
                    request: SyncRequest::SubmitTx { tx: serde_bytes::ByteBuf::from(tx) },
                };
                let id = self.swarm.behaviour_mut().branch_sync.send_request(&peer, request);
                self.branch_forwarded.insert(id, reply);
            }
            NetCommand::Respond { channel, response } => {
                let _ = self.swarm.behaviour_mut().branch_sync.send_response(channel, response);
            }
            // Verdicts and penalties are the same for every branch.
            other => self.command(other),
        }
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, peer_id = %self.state.peer_id, "p2p listening");
                self.state.listen.write().push(address.to_string());
            }
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, connection_id, .. } => {
                if let Some(i) = self.dialing.remove(&connection_id) {
                    let b = &mut self.bootstrap[i];
                    if b.peer != Some(peer_id) || b.failures > 0 {
                        tracing::info!(address = %b.addr, peer = %peer_id, "connected to bootstrap peer");
                    }
                    if !b.pinned {
                        b.peer = Some(peer_id);
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&peer_id, endpoint.get_remote_address().clone());
                    }
                    self.bootstrap[i].failures = 0;
                    self.bootstrap[i].last_error = None;
                    self.publish_bootstrap();
                }
                let address = endpoint.get_remote_address().to_string();
                tracing::debug!(peer = %peer_id, %address, "peer connected");
                self.state.peers.write().entry(peer_id).or_insert(PeerEntry { address, status: None });
                self.request(peer_id, SyncRequest::Status);
                self.ask_branch_status(peer_id);
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error: libp2p::swarm::ListenError::Denied { cause },
                ..
            } if cause.downcast_ref::<libp2p::allow_block_list::NotAllowed>().is_some() => {
                self.state.refused_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(address = %send_back_addr, "a peer not on the repository's allowlist refused");
            }
            SwarmEvent::OutgoingConnectionError { connection_id, error, .. } => {
                if let Some(i) = self.dialing.remove(&connection_id) {
                    self.dial_failed(i, &error);
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                tracing::debug!(peer = %peer_id, "peer disconnected");
                self.requests.remove(&peer_id);
                self.state.peers.write().remove(&peer_id);
                let _ = self.inbound.send(Inbound::PeerGone(peer_id));
                for held in self.branches.values() {
                    let _ = held.link.inbound.send(Inbound::PeerGone(peer_id));
                }
                self.publish_bootstrap();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                for addr in info.listen_addrs {
                    if is_dialable(&addr) {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.gossip(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                peer,
                message,
                ..
            })) => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let response = if self.flooding(peer) {
                        self.penalize(peer, Penalty::Annoying, "more sync requests than allowed");
                        SyncResponse::Refused(format!("more than {MAX_REQUESTS_PER_SEC} requests per second"))
                    } else if let SyncRequest::SubmitTx { tx } = request {
                        self.submit_for(peer, tx.into_vec(), channel, None);
                        return;
                    } else {
                        return self.answer_main(request, channel);
                    };
                    let _ = self.swarm.behaviour_mut().sync.send_response(channel, response);
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = self.forwarded.remove(&request_id) {
                        let _ = reply.send(forward_answer(peer, response));
                        return;
                    }
                    let asked = self.pending.remove(&request_id);
                    let response = match &asked {
                        Some(a) => match self.fill_answered(peer, request_id, a, response) {
                            Some(response) => response,
                            None => return,
                        },
                        None => response,
                    };
                    let inbound = self.inbound.clone();
                    self.answered(peer, asked, response, &inbound, true);
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::BranchSync(event)) => self.branch_sync(event),
            SwarmEvent::Behaviour(BehaviourEvent::Raft(event)) => self.raft(event),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::InboundFailure {
                peer,
                error: request_response::InboundFailure::Io(e),
                ..
            })) => {
                let reason =
                    match e.get_ref().and_then(|inner| inner.downcast_ref::<aergo_protocol::WireError>()) {
                        Some(wire) => wire.to_string(),
                        None => format!("sync request: {e}"),
                    };
                self.penalize(peer, Penalty::Malformed, &reason)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            })) => {
                if let Some(reply) = self.forwarded.remove(&request_id) {
                    let _ = reply.send(Err(format!("forwarding to {peer} failed: {error}")));
                    return;
                }
                let asked = self.pending.remove(&request_id);
                if asked.as_ref().is_some_and(|a| self.fill_failed(request_id, a)) {
                    return;
                }
                if !matches!(asked, Some(SyncRequest::Status)) {
                    tracing::debug!(%peer, %error, "sync request failed");
                    let _ = self.inbound.send(Inbound::RequestFailed { peer });
                }
            }
            _ => {}
        }
    }

    /// Raft's messages: each one goes to the chain thread, which judges it (a peer that is not a
    /// voter is refused there); the answer is only an acknowledgement of delivery.
    fn raft(&mut self, event: request_response::Event<Vec<u8>, ()>) {
        match event {
            request_response::Event::Message {
                peer,
                message: request_response::Message::Request { request, channel, .. },
                ..
            } => {
                let _ = self.inbound.send(Inbound::Raft { from: peer, message: request });
                let _ = self.swarm.behaviour_mut().raft.send_response(channel, ());
            }
            request_response::Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "a Raft message was not delivered");
                let _ = self.inbound.send(Inbound::RaftUnreachable { peer });
            }
            // A message cut short is the network's doing (not counted); a bad length is the peer's.
            request_response::Event::InboundFailure {
                peer,
                error: request_response::InboundFailure::Io(e),
                ..
            } if e.kind() == std::io::ErrorKind::InvalidData => {
                self.penalize(peer, Penalty::Malformed, &format!("raft message: {e}"))
            }
            _ => {}
        }
    }

    fn gossip(&mut self, from: PeerId, id: MessageId, message: gossipsub::Message) {
        use std::sync::atomic::Ordering::Relaxed;
        let topic = message.topic.clone();
        let bytes_in = message.data.len() as u64;
        self.state.count_topic(topic.as_str(), |c| {
            c.messages_in += 1;
            c.bytes_in += bytes_in;
        });
        if topic == self.cblocks_topic.hash() {
            return self.compact_block(from, id, &message.data);
        }
        if topic == self.txbatch_topic.hash() {
            self.state.gossip_txs_in.fetch_add(bytes_in, Relaxed);
            return self.tx_batch(from, id, &message.data);
        }
        let (branch, is_blocks) = if topic == self.blocks_topic.hash() {
            (None, true)
        } else if topic == self.txs_topic.hash() {
            (None, false)
        } else if let Some((name, is_blocks)) = self.branch_topics.get(&topic) {
            (Some(name.clone()), *is_blocks)
        } else {
            self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                &id,
                &from,
                MessageAcceptance::Ignore,
            );
            return;
        };
        let (view, pool, inbound) = match &branch {
            None => (self.view.clone(), self.pool.clone(), self.inbound.clone()),
            Some(name) => {
                let link = &self.branches[name].link;
                (link.view.clone(), link.pool.clone(), link.inbound.clone())
            }
        };
        if is_blocks {
            self.state.gossip_blocks_in.fetch_add(message.data.len() as u64, Relaxed);
            let block = aergo_protocol::decode_gossip_block(&message.data)
                .map_err(|e| e.to_string())
                .and_then(|block| match block.header.branch == view.branch {
                    true => Ok(block),
                    false => Err(format!(
                        "a block of branch {:?} on the topic of {:?}",
                        block.header.branch, view.branch
                    )),
                });
            match block {
                Ok(block) => {
                    if compact::import_full(&view) {
                        return self.validate(&id, &from, MessageAcceptance::Ignore);
                    }
                    compact::deliver(&view, &inbound, block, from, id);
                }
                Err(reason) => {
                    self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                        &id,
                        &from,
                        MessageAcceptance::Reject,
                    );
                    self.penalize(from, Penalty::Malformed, &reason);
                }
            }
            return;
        }
        self.state.gossip_txs_in.fetch_add(message.data.len() as u64, Relaxed);
        let tx = aergo_protocol::decode_gossip_tx(&message.data)
            .map_err(|e| (Penalty::Malformed, format!("gossiped {e}")));
        let tx = tx.and_then(|tx| match foreign(&view, &tx) {
            Some(why) => Err((Penalty::Invalid, why)),
            None => Ok(tx),
        });
        match tx {
            Ok(tx) => {
                // Admission checks the signature on its threads; the verdict follows its answer.
                let len = message.data.len();
                let verdicts = self.verdict_sender();
                tokio::spawn(async move {
                    let acceptance = match pool.admission.submit(tx, len).await {
                        Ok(_) => Verdict::Accept,
                        Err(e) if e.is_invalid() => {
                            let reason = format!("gossiped transaction: {e}");
                            let _ = verdicts
                                .send(NetCommand::Penalize { peer: from, penalty: Penalty::Invalid, reason })
                                .await;
                            Verdict::Reject
                        }
                        Err(_) => Verdict::Ignore,
                    };
                    let _ = verdicts.send(NetCommand::Verdict { id, from, acceptance }).await;
                });
            }
            Err((penalty, reason)) => {
                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                    &id,
                    &from,
                    MessageAcceptance::Reject,
                );
                self.penalize(from, penalty, &reason);
            }
        }
    }

    /// A batch of a peer's transactions on `main`: all admitted in one go off the net task; the
    /// verdict follows the answers (`docs/consensus.md`, "Transaction batches on gossip").
    fn tx_batch(&mut self, from: PeerId, id: MessageId, data: &[u8]) {
        // Signed for another chain or branch: it can never run here, and the batch is refused.
        let txs = aergo_protocol::decode_tx_batch(data)
            .map_err(|e| (Penalty::Malformed, e.to_string()))
            .and_then(|txs| match txs.iter().find_map(|(tx, _)| foreign(&self.view, tx)) {
                Some(why) => Err((Penalty::Invalid, format!("gossiped transaction batch: {why}"))),
                None => Ok(txs),
            });
        let txs = match txs {
            Ok(txs) => txs,
            Err((penalty, reason)) => {
                self.validate(&id, &from, MessageAcceptance::Reject);
                return self.penalize(from, penalty, &reason);
            }
        };
        let (pool, verdicts) = (self.pool.clone(), self.verdict_sender());
        tokio::spawn(async move {
            let answers = pool.admission.submit_many(txs).await;
            let acceptance = match answers.iter().find_map(|a| a.as_ref().err().filter(|e| e.is_invalid())) {
                Some(e) => {
                    let reason = format!("gossiped transaction batch: {e}");
                    let _ = verdicts
                        .send(NetCommand::Penalize { peer: from, penalty: Penalty::Invalid, reason })
                        .await;
                    Verdict::Reject
                }
                None if answers.iter().any(Result::is_ok) => Verdict::Accept,
                None => Verdict::Ignore,
            };
            let _ = verdicts.send(NetCommand::Verdict { id, from, acceptance }).await;
        });
    }

    /// A transaction forwarded to this producer: admitted (signature, pool, speculative run) off the
    /// net task, gossiped, and answered like `send_tx`. `branch`: forwarded on `branch-sync` for
    /// that branch (it must be signed for it), else `main`'s.
    fn submit_for(
        &mut self,
        peer: PeerId,
        bytes: Vec<u8>,
        channel: request_response::ResponseChannel<SyncResponse>,
        branch: Option<String>,
    ) {
        let pool = match &branch {
            None => self.pool.clone(),
            Some(name) => match self.branches.get(name) {
                Some(held) => held.link.pool.clone(),
                None => {
                    let refused = not_held(name);
                    return self.respond(branch, channel, refused);
                }
            },
        };
        let expected = branch.clone().unwrap_or_else(|| aergo_primitives::types::MAIN_BRANCH.to_string());
        let tx = match aergo_protocol::decode_gossip_tx(&bytes) {
            Ok(tx) if tx.body.chain_id != self.view.chain_id => {
                return self.respond(branch, channel, SyncResponse::Refused("wrong chain id".into()))
            }
            Ok(tx) if tx.body.branch != expected => {
                let reason =
                    format!("a transaction for branch {:?} forwarded as one of {expected:?}", tx.body.branch);
                return self.respond(branch, channel, SyncResponse::Refused(reason));
            }
            Ok(tx) => tx,
            Err(e) => {
                self.penalize(peer, Penalty::Malformed, &format!("forwarded {e}"));
                return self.respond(branch, channel, SyncResponse::Refused(e.to_string()));
            }
        };
        let back = self.verdicts.clone();
        tokio::spawn(async move {
            let response = match pool.admission.submit(tx, bytes.len()).await {
                Ok(admitted) => {
                    pool.gossip_tx(bytes);
                    SyncResponse::Submitted(admitted.into())
                }
                Err(e) => SyncResponse::Refused(format!("{}: {e}", e.reason())),
            };
            let respond = NetCommand::Respond { channel, response };
            let command = match branch {
                None => respond,
                Some(branch) => NetCommand::OnBranch { branch, command: Box::new(respond) },
            };
            let _ = back.send(command).await;
        });
    }

    /// Answers a request on `sync` (`branch` `None`) or on `branch-sync`.
    fn respond(
        &mut self,
        branch: Option<String>,
        channel: request_response::ResponseChannel<SyncResponse>,
        response: SyncResponse,
    ) {
        let behaviour = self.swarm.behaviour_mut();
        let _ = match branch {
            None => behaviour.sync.send_response(channel, response),
            Some(_) => behaviour.branch_sync.send_response(channel, response),
        };
    }

    /// A request, a response or a failure on `branch-sync`.
    fn branch_sync(&mut self, event: request_response::Event<BranchRequest, SyncResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let BranchRequest { branch, request } = request;
                    if self.flooding(peer) {
                        self.penalize(peer, Penalty::Annoying, "more sync requests than allowed");
                        let refused = SyncResponse::Refused(format!(
                            "more than {MAX_REQUESTS_PER_SEC} requests per second"
                        ));
                        return self.respond(Some(branch), channel, refused);
                    }
                    // A private branch is not held for anyone but its members: the same answer
                    // as for a branch this node does not hold, so nothing is learnt of it.
                    let seen = self.branches.get(&branch).is_some_and(|h| h.may_see(&peer));
                    if !seen {
                        return self.respond(Some(branch.clone()), channel, not_held(&branch));
                    }
                    if let SyncRequest::SubmitTx { tx } = request {
                        return self.submit_for(peer, tx.into_vec(), channel, Some(branch));
                    }
                    if let SyncRequest::NewBlock { hash } = request {
                        let private = self.branches.get(&branch).is_some_and(|h| h.link.members.is_some());
                        if !private {
                            let refused =
                                SyncResponse::Refused("a public branch's blocks travel by gossip".into());
                            return self.respond(Some(branch), channel, refused);
                        }
                        let known =
                            self.branches[&branch].link.view.store.height_of(&hash).ok().flatten().is_some();
                        self.respond(Some(branch.clone()), channel, SyncResponse::Block(None));
                        if !known {
                            self.branch_request(peer, branch, SyncRequest::Block { hash });
                        }
                        return;
                    }
                    let response = match self.branches.get(&branch) {
                        // Not a penalty: the peer may hold branches this node does not.
                        None => not_held(&branch),
                        Some(_) if matches!(request, SyncRequest::Snapshot(_) | SyncRequest::Genesis) => {
                            SyncResponse::Refused(
                                "snapshots and the genesis are served on /aergo/sync/1".into(),
                            )
                        }
                        Some(held) => {
                            let view = held.link.view.clone();
                            return self.answer_soon(view, request, channel, Some(branch));
                        }
                    };
                    self.respond(Some(branch), channel, response);
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = self.branch_forwarded.remove(&request_id) {
                        let _ = reply.send(forward_answer(peer, response));
                        return;
                    }
                    let Some((branch, asked)) = self.branch_pending.remove(&request_id) else { return };
                    let Some(inbound) = self.branches.get(&branch).map(|h| h.link.inbound.clone()) else {
                        return;
                    };
                    self.answered(peer, Some(asked), response, &inbound, false);
                }
            },
            request_response::Event::InboundFailure {
                peer,
                error: request_response::InboundFailure::Io(e),
                ..
            } => {
                let reason =
                    match e.get_ref().and_then(|inner| inner.downcast_ref::<aergo_protocol::WireError>()) {
                        Some(wire) => wire.to_string(),
                        None => format!("branch sync request: {e}"),
                    };
                self.penalize(peer, Penalty::Malformed, &reason)
            }
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                if let Some(reply) = self.branch_forwarded.remove(&request_id) {
                    let _ = reply.send(Err(format!("forwarding to {peer} failed: {error}")));
                    return;
                }
                // A peer without branches does not speak the protocol: its status stays unknown.
                let Some((branch, asked)) = self.branch_pending.remove(&request_id) else { return };
                if !matches!(asked, SyncRequest::Status) {
                    tracing::debug!(%peer, %branch, %error, "branch sync request failed");
                    if let Some(held) = self.branches.get(&branch) {
                        let _ = held.link.inbound.send(Inbound::RequestFailed { peer });
                    }
                }
            }
            _ => {}
        }
    }

    /// Answers a sync request from `view` (`main`'s, or the held `branch`'s): what is in memory
    /// (a status, the genesis) at once; what reads the block log or the state (blocks, a block
    /// by hash, transactions of a block, a snapshot part) on a blocking thread, so that the net
    /// task goes on with gossip and other peers meanwhile, the answer sent back through the
    /// command queue.
    fn answer_soon(
        &mut self,
        view: Arc<ChainView>,
        request: SyncRequest,
        channel: request_response::ResponseChannel<SyncResponse>,
        branch: Option<String>,
    ) {
        if matches!(request, SyncRequest::Status | SyncRequest::Genesis) {
            let response = answer(&view, request);
            return self.respond(branch, channel, response);
        }
        let (back, permits) = (self.verdicts.clone(), self.answering.clone());
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else { return };
            let response = tokio::task::spawn_blocking(move || answer(&view, request))
                .await
                .unwrap_or_else(|e| SyncResponse::Refused(format!("answering failed: {e}")));
            let respond = NetCommand::Respond { channel, response };
            let command = match branch {
                None => respond,
                Some(branch) => NetCommand::OnBranch { branch, command: Box::new(respond) },
            };
            let _ = back.send(command).await;
        });
    }

    fn verdict_sender(&self) -> mpsc::Sender<NetCommand> {
        self.verdicts.clone()
    }

    /// A peer's answer to a sync request of `main` (`is_main`, the status kept for `peers`) or
    /// of a branch, for the chain thread behind `inbound`.
    fn answered(
        &mut self,
        peer: PeerId,
        asked: Option<SyncRequest>,
        response: SyncResponse,
        inbound: &std::sync::mpsc::Sender<Inbound>,
        is_main: bool,
    ) {
        let status_request = matches!(asked, Some(SyncRequest::Status));
        match aergo_protocol::check_response(asked.as_ref(), response) {
            Ok(Answer::Status(status)) => {
                if is_main {
                    if let Some(entry) = self.state.peers.write().get_mut(&peer) {
                        entry.status = Some(status.clone());
                    }
                }
                let _ = inbound.send(Inbound::Status { peer, status });
            }
            Ok(Answer::Blocks(blocks)) => {
                let _ = inbound.send(Inbound::Blocks { from: peer, blocks });
            }
            // A status request answered otherwise (or refused: the peer does not hold the branch)
            // only leaves the peer's status unknown.
            Ok(Answer::Nothing) | Ok(Answer::Refused(_)) if status_request => {}
            Ok(Answer::Refused(reason)) => {
                tracing::debug!(%peer, %reason, "sync request refused");
                let _ = inbound.send(Inbound::RequestFailed { peer });
            }
            // This node asks for snapshots only before it runs (`snapshot::fetch`).
            // Transactions are asked for by the compact-block fills, which take their answers first.
            Ok(Answer::Nothing)
            | Ok(Answer::Snapshot(_))
            | Ok(Answer::Genesis(_))
            | Ok(Answer::Transactions(_)) => {
                let _ = inbound.send(Inbound::RequestFailed { peer });
            }
            Err(reason) => {
                self.penalize(peer, Penalty::Malformed, &reason);
                let _ = inbound.send(Inbound::RequestFailed { peer });
            }
        }
    }
}

/// Answers a sync request from a chain's view: the store and the block log (read-only, safe beside
/// the writer); a branch's blocks at or below its base are its parent's.
fn answer(view: &ChainView, request: SyncRequest) -> SyncResponse {
    match request {
        SyncRequest::Status => SyncResponse::Status(view.status()),
        SyncRequest::Blocks { from, count } => {
            let head = view.head().height;
            let mut out = Vec::new();
            let mut bytes = 0usize;
            let count = u64::from(count.min(MAX_SYNC_BLOCKS));
            if count == 0 || from == 0 {
                return SyncResponse::Blocks(Vec::new());
            }
            if let Err(e) = view.check_history(from) {
                return SyncResponse::Refused(e.to_string());
            }
            for height in from..=head.min(from.saturating_add(count - 1)) {
                match view.read_block(height) {
                    Ok(Some(block)) => {
                        let encoded = block.encode();
                        bytes += encoded.len();
                        if bytes > MAX_SYNC_RESPONSE_BYTES && !out.is_empty() {
                            break;
                        }
                        out.push(serde_bytes::ByteBuf::from(encoded));
                    }
                    // A rollback raced this read: answer what was read.
                    Ok(None) => break,
                    Err(e) => return SyncResponse::Refused(e.to_string()),
                }
            }
            SyncResponse::Blocks(out)
        }
        // Handled by `submit_for`, off the net task.
        SyncRequest::SubmitTx { .. } => SyncResponse::Refused("not here".into()),
        SyncRequest::NewBlock { .. } => {
            SyncResponse::Refused("only a private branch's members announce blocks, on branch-sync".into())
        }
        SyncRequest::Genesis => SyncResponse::Genesis(view.genesis.to_toml()),
        SyncRequest::Snapshot(part) => match snapshot_part(view, part) {
            Ok(frames) => SyncResponse::Snapshot(frames),
            Err(e) => SyncResponse::Refused(e.to_string()),
        },
        SyncRequest::Block { hash } => {
            SyncResponse::Block(block_by_hash(view, &hash).map(|b| serde_bytes::ByteBuf::from(b.encode())))
        }
        SyncRequest::Transactions { block, .. } => match block_by_hash(view, &block) {
            Some(found) => answer_from(&found, request),
            None => SyncResponse::Refused(format!("this node does not have block {block}")),
        },
    }
}

/// Answers a request about `block` (a `Block` or `Transactions` request naming it) from the
/// block itself.
fn answer_from(block: &Block, request: SyncRequest) -> SyncResponse {
    let indices = match request {
        SyncRequest::Transactions { indices, .. } => indices,
        _ => return SyncResponse::Block(Some(serde_bytes::ByteBuf::from(block.encode()))),
    };
    if indices.len() > aergo_protocol::MAX_ASKED_TXS {
        return SyncResponse::Refused(format!(
            "{} transactions asked for (at most {})",
            indices.len(),
            aergo_protocol::MAX_ASKED_TXS
        ));
    }
    let mut txs = Vec::with_capacity(indices.len());
    for i in indices {
        match block.transactions.get(i as usize) {
            Some(tx) => txs.push(serde_bytes::ByteBuf::from(tx.encode())),
            None => {
                return SyncResponse::Refused(format!(
                    "block {} has {} transactions: there is none at {i}",
                    block.hash(),
                    block.transactions.len()
                ))
            }
        }
    }
    SyncResponse::Transactions(txs)
}

/// A block this node holds, by hash: on its chain or a side branch.
fn block_by_hash(view: &ChainView, hash: &Hash) -> Option<Block> {
    view.store
        .height_of(hash)
        .ok()
        .flatten()
        .and_then(|h| view.read_block(h).ok().flatten())
        .filter(|b| b.hash() == *hash)
        .or_else(|| view.side_block(hash))
}

/// A branch this node does not hold, as a sync answer.
fn not_held(branch: &str) -> SyncResponse {
    SyncResponse::Refused(format!("this node does not hold branch {branch:?}"))
}

/// A producer's answer to a forwarded transaction.
fn forward_answer(peer: PeerId, response: SyncResponse) -> Result<aergo_api::SendTxResult, String> {
    match response {
        SyncResponse::Submitted(mut r) => {
            r.answered_by = Some(peer.to_string());
            Ok(r)
        }
        SyncResponse::Refused(reason) => Err(reason),
        _ => Err("the producer answered something else".into()),
    }
}

/// The sync protocol's codec: each request and each response is one CBOR document on its own
/// stream, read to its end (at most one byte past the limit, so that an oversized message is
/// refused as such) and decoded by `aergo_protocol`.
#[derive(Clone, Copy, Default)]
pub struct SyncCodec;

async fn read_capped<T: futures::AsyncRead + Unpin + Send>(
    io: &mut T,
    limit: usize,
) -> std::io::Result<Vec<u8>> {
    use futures::AsyncReadExt;
    let mut bytes = Vec::new();
    io.take(limit as u64 + 1).read_to_end(&mut bytes).await?;
    Ok(bytes)
}

fn invalid(e: aergo_protocol::WireError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<SyncRequest>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let bytes = read_capped(io, MAX_SYNC_REQUEST_BYTES).await?;
        aergo_protocol::decode_request(&bytes).map_err(invalid)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<SyncResponse>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let bytes = read_capped(io, MAX_SYNC_RESPONSE_BYTES + aergo_protocol::RESPONSE_FRAMING_BYTES).await?;
        aergo_protocol::decode_response(&bytes).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: SyncRequest,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        use futures::AsyncWriteExt;
        io.write_all(&aergo_protocol::encode_request(&request)).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: SyncResponse,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        use futures::AsyncWriteExt;
        io.write_all(&aergo_protocol::encode_response(&response)).await
    }
}

/// The Raft protocol's codec: a request is one message's bytes after their length (4 bytes,
/// big-endian; at most [`aergo_protocol::MAX_RAFT_MESSAGE_BYTES`]), the response is empty. The
/// length tells a whole message from one cut short: a stream its sender dropped (a request timed
/// out during a partition) ends cleanly after part of it.
#[derive(Clone, Copy, Default)]
pub struct RaftCodec;

impl request_response::Codec for RaftCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        use futures::AsyncReadExt;
        let mut len = [0u8; 4];
        io.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > aergo_protocol::MAX_RAFT_MESSAGE_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a Raft message of {len} bytes (1 to {})", aergo_protocol::MAX_RAFT_MESSAGE_BYTES),
            ));
        }
        let mut bytes = vec![0u8; len];
        io.read_exact(&mut bytes).await?;
        Ok(bytes)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<()>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        read_capped(io, 0).await.map(|_| ())
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        use futures::AsyncWriteExt;
        let len = u32::try_from(request.len()).map_err(std::io::Error::other)?;
        io.write_all(&len.to_be_bytes()).await?;
        io.write_all(&request).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, _: &mut T, _: ()) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}

/// The branch sync protocol's codec: as [`SyncCodec`], with requests that name their branch.
#[derive(Clone, Copy, Default)]
pub struct BranchSyncCodec;

impl request_response::Codec for BranchSyncCodec {
    type Protocol = StreamProtocol;
    type Request = BranchRequest;
    type Response = SyncResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<BranchRequest>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let limit = MAX_SYNC_REQUEST_BYTES + aergo_protocol::MAX_BRANCH_NAME + 16;
        let bytes = read_capped(io, limit).await?;
        aergo_protocol::decode_branch_request(&bytes).map_err(invalid)
    }

    async fn read_response<T>(&mut self, p: &StreamProtocol, io: &mut T) -> std::io::Result<SyncResponse>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        SyncCodec.read_response(p, io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: BranchRequest,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        use futures::AsyncWriteExt;
        io.write_all(&aergo_protocol::encode_branch_request(&request)).await
    }

    async fn write_response<T>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
        response: SyncResponse,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        SyncCodec.write_response(p, io, response).await
    }
}

/// Whether an address announced by a peer is worth dialling (not a wildcard).
fn is_dialable(addr: &Multiaddr) -> bool {
    !addr.iter().any(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => ip.is_unspecified(),
        libp2p::multiaddr::Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}
