//! Wiring a running node: the chain thread, the pool, the p2p layer and the RPC server.
//!
//! ```text
//!  RPC workers ──admit──► Mempool ◄──select / on_block── chain thread (consensus::Driver) ──► Chain
//!       │                                                   ▲      │
//!       │                                        Inbound    │      │ NetCommand
//!       │                                            net task (libp2p) ◄──► peers
//!       └──── reads: StateStore, LogReader, head ◄──────────┴──► broadcast: subscribe_blocks
//! ```
//! The chain thread is an OS thread because a block's work (execution, tree hashing, fsync) is
//! blocking; it produces in this node's slots (`genesis.timestamp_ms + k · block_interval_ms`) and
//! imports the blocks peers send. Shutdown sets a flag the thread checks between blocks, so a block
//! is either wholly committed or not started.

/// Transactions a chain remembers as verified at admission (`docs/exec.md`, "Verify once"): about
/// 20 MiB, several seconds of the highest rate a node takes, far more than a block's way from
/// admission to import.
pub(crate) const VERIFIED_TXS: usize = 131_072;

use aergo_chain::view::{ChainView, NodeFacts, PoolHandle};
use aergo_chain::{Chain, ChainError, OpenReport};
use aergo_config::genesis::{ConsensusParams, Genesis, GenesisBalance, GenesisError, GenesisProducer};
use aergo_config::NodeConfig;
use aergo_consensus::{Driver, DriverConfig};
use aergo_exec::parallel::ParallelExecutor;
use aergo_mempool::admission::Admission;
use aergo_mempool::Mempool;
use aergo_net::{Net, NetCommand, NetConfig};
use aergo_primitives::crypto::{KeyFile, Keypair, KeystoreError};
use aergo_rpc::{self as rpc, RpcError};

use aergo_storage::{LogOptions, StateOptions};
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    State(#[from] aergo_storage::StateError),
    #[error(transparent)]
    Key(#[from] KeystoreError),
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("invalid configuration: {reason}")]
    Config { reason: String },
    #[error("cannot read the password file {path}: {source}")]
    PasswordFile { path: String, source: std::io::Error },
    #[error(
        "{path} holds another chain's genesis; the data directory belongs to another chain, use a fresh one"
    )]
    AnotherChain { path: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the node's background task failed: {0}")]
    Join(String),
    #[error(transparent)]
    Net(#[from] aergo_net::NetError),
    #[error(
        "genesis file {path} makes genesis block {actual}, not {expected} (genesis_hash in the config): \
         this is another chain's genesis"
    )]
    GenesisHash { path: String, expected: String, actual: String },
}

/// Admission threads by default: every core this process may use.
fn default_admission_threads() -> usize {
    aergo_exec::affinity::available_cores().len().max(1)
}

/// A started node. Dropping it does not stop it; call [`RunningNode::shutdown`].
pub struct RunningNode {
    pub view: Arc<ChainView>,
    pub rpc_addr: std::net::SocketAddr,
    rpc: jsonrpsee::server::ServerHandle,
    chain: ChainRun,
    repos: Arc<crate::repos::RepoHost>,
}

/// One chain running in this process, the public chain or a hosted repository
/// (`docs/repositories.md`): its chain thread, pool, swarm, branches and RPC methods.
pub(crate) struct ChainRun {
    pub(crate) view: Arc<ChainView>,
    pool: Arc<PoolHandle>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    net: Option<Net>,
    branches: Option<crate::branches::BranchHost>,
    /// Its RPC methods' handler (the public chain's gets the hosted repositories).
    pub(crate) handler: rpc::RpcHandler,
}

/// What every chain of the process shares: the node's identity key, the execution cores, the
/// `query` threads and the RPC's refusal counters.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) node_key: Keypair,
    pub(crate) cores: Vec<usize>,
    pub(crate) queries: Arc<rpc::queries::QueryPool>,
    pub(crate) refusals: Arc<rpc::listen::Refusals>,
    pub(crate) admin_from: Arc<Vec<std::net::IpAddr>>,
}

pub use aergo_primitives::clock::now_ms;

fn read_password(path: &Path) -> Result<String, NodeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| NodeError::PasswordFile { path: path.display().to_string(), source })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// The node's identity key in its data directory: names the box (the agent signs with it; the p2p
/// identity later). Plain hex, mode 0600, created on first start.
pub const NODE_KEY_FILE: &str = "node.key";

/// The Raft log of a chain agreed by Raft, in its data directory.
pub const RAFT_DIR: &str = "raft";

/// The last slot this node signed a block for (see [`aergo_consensus`]).
pub const SIGNED_SLOT_FILE: &str = "last_signed_slot";

/// Reads the identity key, or creates it when the file does not exist yet.
pub fn load_or_create_node_key(path: &Path) -> Result<Keypair, NodeError> {
    match KeyFile::read(path) {
        Ok(file) => Ok(file.unlock(None)?),
        Err(KeystoreError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate();
            KeyFile::write_plain(path, &key)?;
            tracing::info!(path = %path.display(), key = %hex::encode(key.public().0), "created the node identity key");
            Ok(key)
        }
        Err(e) => Err(e.into()),
    }
}

/// A private repository's node allowlist, read from its state at the head: the nodes of
/// `sys/repo/nodes` and the Raft voters (`docs/repositories.md`, "Access control").
fn allowlist(view: Arc<ChainView>) -> aergo_net::Allowlist {
    aergo_net::Allowlist(Arc::new(move || {
        let head = view.head().height;
        let mut rules = aergo_exec::members::Rules(|k: &[u8]| view.store.get_at(k, head));
        let mut keys: Vec<aergo_primitives::types::PublicKey> = match rules.nodes() {
            Ok(nodes) => nodes.into_iter().map(|n| n.node_key).collect(),
            Err(e) => {
                tracing::error!(error = %e, "the repository's node allowlist cannot be read: none is let in");
                Vec::new()
            }
        };
        let voters = view.store.get_at(aergo_exec::governance::RAFT_VOTERS_KEY, head).ok().flatten();
        if let Some(bytes) = voters {
            let records: Result<Vec<aergo_exec::governance::RaftVoterRecord>, _> =
                aergo_exec::governance::decode_record(aergo_exec::governance::RAFT_VOTERS_KEY, &bytes);
            keys.extend(records.into_iter().flatten().map(|v| v.node_key));
        }
        keys
    }))
}

/// Opens the chain (blocking: recovery may replay blocks).
/// For a node given only its genesis hash (`genesis_from_peers`): takes the genesis file from
/// the bootstrap peers, checked against the hash, and writes it where the config names it.
/// Retries for a minute (the peers may be booting too), then gives up with the reason.
async fn fetch_genesis_if_missing(config: &NodeConfig) -> Result<(), NodeError> {
    let path = config.genesis_path();
    if !config.genesis_from_peers || path.exists() {
        return Ok(());
    }
    let expected = config
        .genesis_hash
        .as_deref()
        .and_then(|h| aergo_primitives::types::Hash::from_hex(h).ok())
        .ok_or_else(|| NodeError::Config { reason: "genesis_from_peers needs genesis_hash".into() })?;
    let addresses = config.p2p.addresses().map_err(|reason| NodeError::Config { reason })?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        tracing::info!(genesis_hash = %expected, "no genesis file: asking the bootstrap peers for it");
        match aergo_net::snapshot::fetch_genesis(
            &addresses.bootstrap,
            expected,
            std::time::Duration::from_secs(10),
        )
        .await
        {
            Ok(genesis) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|source| NodeError::Io { path: dir.display().to_string(), source })?;
                }
                write_atomic(&path, genesis.to_toml().as_bytes())
                    .map_err(|source| NodeError::Io { path: path.display().to_string(), source })?;
                tracing::info!(chain_id = %genesis.chain_id, file = %path.display(), "genesis taken from a peer");
                return Ok(());
            }
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "no genesis from the peers yet; asking again in 5 s");
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
            Err(e) => {
                return Err(NodeError::Config {
                    reason: format!(
                        "genesis_from_peers: {e} (within 60 s); check p2p.bootstrap and genesis_hash"
                    ),
                })
            }
        }
    }
}

/// Whether `data_dir` holds a chain (a state store).
fn holds_chain(data_dir: &Path) -> bool {
    std::fs::read_dir(data_dir.join("state")).is_ok_and(|mut entries| entries.next().is_some())
}

/// For a node on a p2p network that starts with no chain: takes a snapshot from the bootstrap
/// peers when their chain is long enough (`p2p.snapshot_after_blocks`). Any failure to find or
/// fetch one leaves the directory without a chain, and the node starts from genesis and syncs
/// block by block, as it would without snapshots.
async fn fetch_snapshot_if_empty(config: &NodeConfig, node_key: &Keypair) -> Result<(), NodeError> {
    let p2p = &config.p2p;
    if !p2p.enabled
        || p2p.snapshot_after_blocks == 0
        || p2p.bootstrap.is_empty()
        || holds_chain(&config.data_dir)
    {
        return Ok(());
    }
    let genesis = Genesis::load(&config.genesis_path())?;
    let addresses = p2p.addresses().map_err(|reason| NodeError::Config { reason })?;
    let opts = aergo_net::snapshot::FetchOptions {
        bootstrap: addresses.bootstrap,
        after_blocks: p2p.snapshot_after_blocks,
        connect_timeout: std::time::Duration::from_secs(20),
        page_timeout: std::time::Duration::from_secs(30),
        // The node's own identity: a private repository's peers refuse any other.
        identity: Some(node_key.secret_bytes()),
    };
    tracing::info!(
        after_blocks = p2p.snapshot_after_blocks,
        "no chain here: asking the bootstrap peers for a snapshot"
    );
    match aergo_net::snapshot::fetch(&opts, &config.data_dir, &genesis).await {
        Ok(aergo_net::snapshot::Fetched::Imported { report, peer, pages, bytes, secs }) => tracing::info!(
            height = report.head.height, state_root = %report.head.state_root, leaves = report.leaves,
            rows = report.rows, %peer, pages, bytes, secs, "snapshot taken from a peer; syncing from there"
        ),
        Ok(aergo_net::snapshot::Fetched::NotNeeded { best_final }) => tracing::info!(
            best_final,
            after_blocks = p2p.snapshot_after_blocks,
            "the peers' chain is short: syncing from genesis"
        ),
        Ok(aergo_net::snapshot::Fetched::NoPeers) => {
            tracing::warn!("no bootstrap peer on this chain answered: starting from genesis")
        }
        Err(e) => tracing::warn!(error = %e, "no snapshot could be taken: starting from genesis"),
    }
    Ok(())
}

pub fn open_chain(config: &NodeConfig) -> Result<(Chain, OpenReport), NodeError> {
    let genesis = Genesis::load(&config.genesis_path())?;
    let opts = LogOptions {
        segment_bytes: config.storage.segment_bytes,
        use_io_uring: config.storage.io_uring,
        verify: config.storage.verify_log_on_start,
    };
    let state = StateOptions { cache_bytes: config.storage.state_cache_mb << 20 };
    let (chain, report) = Chain::open_with(&config.data_dir, &genesis, opts, state)?;
    if let Some(expected) = &config.genesis_hash {
        let actual = chain.store().genesis_hash()?.map(|h| hex::encode(h.0)).unwrap_or_default();
        if !actual.eq_ignore_ascii_case(expected) {
            drop(chain);
            if report.created {
                // The chain was made just now from the wrong genesis: leave nothing behind.
                for dir in ["state", "blocks"] {
                    let path = config.data_dir.join(dir);
                    std::fs::remove_dir_all(&path)
                        .map_err(|source| NodeError::Io { path: path.display().to_string(), source })?;
                }
            }
            return Err(NodeError::GenesisHash {
                path: config.genesis_path().display().to_string(),
                expected: expected.to_lowercase(),
                actual,
            });
        }
    }
    Ok((chain, report))
}

impl ChainRun {
    /// Opens the chain of `config` and starts its pool, swarm, branches and chain thread.
    /// `label` names a hosted repository in the log and the thread's name.
    pub(crate) async fn start(
        config: &NodeConfig,
        shared: &Shared,
        label: Option<&str>,
    ) -> Result<ChainRun, NodeError> {
        let cores = shared.cores.clone();
        fetch_genesis_if_missing(config).await?;
        fetch_snapshot_if_empty(config, &shared.node_key).await?;
        let cfg = config.clone();
        let (mut chain, report) = tokio::task::spawn_blocking(move || open_chain(&cfg))
            .await
            .map_err(|e| NodeError::Join(e.to_string()))??;
        let executor = ParallelExecutor::new(cores.clone());
        tracing::info!(cores = ?cores, threads = executor.threads(), "execution workers pinned to cores");
        chain.set_executor(executor);
        // Verify once: what admission checked is not checked again inside a block.
        let verified = Arc::new(aergo_primitives::crypto::Verified::new(VERIFIED_TXS));
        chain.set_verified(verified.clone());
        let head = chain.head();
        tracing::info!(
            chain_id = %chain.genesis().chain_id, height = head.height, hash = %head.hash,
            created = report.created, replayed = report.replayed,
            io_uring = chain.uses_io_uring(), data_dir = %config.data_dir.display(), repo = ?label,
            "chain opened"
        );
        if let Some((file, offset, removed)) = &report.truncated {
            tracing::warn!(%file, offset, removed, "block log tail repaired");
        }
        let raft = chain.genesis().consensus.raft.clone();
        let node_key = shared.node_key.clone();
        let key = if raft.is_some() {
            // Under Raft the node key signs blocks: a voter is a node, not a producer account.
            if config.producer.enabled {
                tracing::info!("a Raft chain: blocks are signed with the node key, not [producer]'s key");
            }
            Some(node_key.clone())
        } else if config.producer.enabled {
            let file = KeyFile::read(&config.key_path())?;
            let password = match &config.producer.password_file {
                Some(p) => Some(read_password(p)?),
                None => None,
            };
            let key = file.unlock(password.as_deref())?;
            let registered = chain
                .store()
                .get_at(&aergo_exec::governance::candidate_key(&key.public()), head.height)
                .ok()
                .flatten()
                .is_some();
            if !chain.genesis().producer_keys().contains(&key.public()) && !registered {
                tracing::warn!(
                    address = %key.address(),
                    "the producer key is neither a genesis producer nor a registered candidate: \
                     it produces once registered (aergo bp register) and elected"
                );
            }
            Some(key)
        } else {
            None
        };
        let net_channel = config.p2p.enabled.then(|| tokio::sync::mpsc::channel::<NetCommand>(4096));
        let net_commands = net_channel.as_ref().map(|(tx, _)| tx.clone());
        let mempool = Arc::new(Mutex::new(Mempool::new(config.mempool.clone())));
        let speculation = aergo_exec::BlockContext {
            chain_id: chain.genesis().chain_id.clone(),
            branch: aergo_primitives::types::MAIN_BRANCH.into(),
            height: 0,
            timestamp_ms: 0,
            producer: key.as_ref().map_or(aergo_primitives::types::Address([0; 20]), Keypair::address),
            staking: chain.genesis().consensus.staking(),
            sql_ordered_scans_height: chain.genesis().consensus.sql_ordered_scans_height.unwrap_or(u64::MAX),
            replay: false,
        };
        let admission = Admission::start(
            config.admission.threads.unwrap_or_else(default_admission_threads),
            config.admission.queue,
            chain.store(),
            mempool.clone(),
            speculation,
            verified,
        )
        .map_err(|source| NodeError::Io { path: "admission threads".into(), source })?;
        let view = Arc::new(ChainView::of(&chain, key.as_ref().map(Keypair::public))?);
        let gossip = net_commands.clone().map(|net| -> aergo_chain::view::Gossip {
            Box::new(move |bytes| {
                let _ = net.try_send(NetCommand::PublishTx(bytes));
            })
        });
        let pool = Arc::new(PoolHandle::new(mempool, admission, config.mempool.max_txs, gossip));
        let facts = Arc::new(NodeFacts {
            producer: key.as_ref().map(Keypair::address),
            data_dir: config.data_dir.clone(),
            started: Instant::now(),
            io_uring: chain.uses_io_uring(),
            exec_cores: cores,
            node_key: node_key.public(),
            peer_id: config.p2p.enabled.then(|| aergo_net::peer_id_of(node_key.secret_bytes()).to_string()),
        });
        let net_state = Arc::new(std::sync::OnceLock::new());
        let (inbound_tx, inbound_rx) = std::sync::mpsc::channel();
        let net = match net_channel {
            Some((commands, commands_rx)) => {
                let addresses = config.p2p.addresses().map_err(|reason| NodeError::Config { reason })?;
                let net_config = NetConfig {
                    listen: addresses.listen,
                    bootstrap: addresses.bootstrap,
                    external: addresses.external,
                    max_peers: config.p2p.max_peers,
                    known: raft
                        .as_ref()
                        .map(aergo_consensus::raft::RaftDriver::known_addresses)
                        .unwrap_or_default(),
                    allowlist: view.genesis.is_private().then(|| allowlist(view.clone())),
                };
                let net = aergo_net::start(
                    net_config,
                    node_key.secret_bytes(),
                    view.clone(),
                    pool.clone(),
                    inbound_tx.clone(),
                    commands.clone(),
                    commands_rx,
                )
                .await?;
                let _ = net_state.set(net.state.clone());
                Some(net)
            }
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let branches = Arc::new(
            aergo_chain::view::Branches::load(&config.data_dir, &config.branches.track)
                .map_err(|reason| NodeError::Config { reason })?,
        );
        let branch_host = crate::branches::BranchHost::start(
            config,
            view.genesis.clone(),
            key.clone(),
            node_key.public(),
            view.clone(),
            branches.clone(),
            net_commands.clone(),
        )
        .map_err(|source| NodeError::Io { path: "branch watcher thread".into(), source })?;
        // Merges into `main` read their source branches from what this node holds.
        chain.set_merge_sources(Arc::new(aergo_chain::view::HeldBranches {
            main: view.clone(),
            branches: branches.clone(),
        }));
        let driver_config = DriverConfig {
            key,
            empty_blocks: config.producer.empty_blocks,
            max_clock_drift_ms: config.p2p.max_clock_drift_ms,
            signed_slot_file: config.data_dir.join(SIGNED_SLOT_FILE),
            require_clock_sync: config.producer.require_clock_sync,
            doppelganger_slots: config.producer.doppelganger_slots,
            #[cfg(feature = "test-hooks")]
            equivocate: config.producer.equivocate_for_tests,
        };
        #[cfg(feature = "test-hooks")]
        if config.producer.equivocate_for_tests {
            tracing::error!("TEST FAULT: this producer signs two different blocks per slot (producer.equivocate_for_tests)");
        }
        // Without a network nothing else sends to the chain thread; keep the channel open.
        let keep_open = inbound_tx;
        let run: Box<dyn FnOnce() + Send> = if raft.is_some() {
            let driver = aergo_consensus::raft::RaftDriver::new(
                chain,
                node_key.clone(),
                config.data_dir.join(RAFT_DIR),
                view.clone(),
                pool.clone(),
                inbound_rx,
                net_commands.clone(),
                stop.clone(),
            )
            .map_err(|e| NodeError::Config { reason: format!("Raft: {e}") })?;
            Box::new(move || driver.run())
        } else {
            let driver = Driver::new(
                chain,
                driver_config,
                view.clone(),
                pool.clone(),
                inbound_rx,
                net_commands.clone(),
                stop.clone(),
            );
            Box::new(move || driver.run())
        };
        let span = match label {
            Some(name) => tracing::info_span!("repo", name = %name),
            None => tracing::Span::none(),
        };
        let thread = std::thread::Builder::new()
            .name(label.map_or_else(|| "aergo-chain".into(), |n| format!("repo-{n}")))
            .spawn(move || {
                let _keep_open = keep_open;
                span.in_scope(run)
            })
            .map_err(|source| NodeError::Io { path: "chain thread".into(), source })?;
        #[cfg(feature = "test-hooks")]
        if let Some(at) = config.producer.stop_chain_at_for_tests {
            let (view, stop) = (view.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if view.head().height >= at {
                        tracing::error!(
                            height = at,
                            "TEST FAULT: the chain thread stops (producer.stop_chain_at_for_tests)"
                        );
                        stop.store(true, Ordering::SeqCst);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            });
        }
        let handler = rpc::RpcHandler {
            view: view.clone(),
            pool: pool.clone(),
            facts: facts.clone(),
            net: net_state,
            net_commands,
            max_batch: config.rpc.max_batch as usize,
            queries: shared.queries.clone(),
            branches,
            refusals: shared.refusals.clone(),
            hosting: None,
            admin_from: shared.admin_from.clone(),
        };
        Ok(ChainRun { view, pool, stop, thread: Some(thread), net, branches: Some(branch_host), handler })
    }

    /// Whether its chain thread still runs (a chain thread that failed for local reasons ends).
    pub(crate) fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Lets the chain thread finish the block in hand, then stops the branches, the swarm and
    /// the admission threads.
    pub(crate) async fn stop(mut self) -> Result<(), NodeError> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(mut host) = self.branches.take() {
            tokio::task::spawn_blocking(move || host.stop())
                .await
                .map_err(|e| NodeError::Join(e.to_string()))?;
        }
        if let Some(t) = self.thread.take() {
            tokio::task::spawn_blocking(move || t.join())
                .await
                .map_err(|e| NodeError::Join(e.to_string()))?
                .map_err(|_| NodeError::Join("chain thread panicked".into()))?;
        }
        if let Some(net) = self.net.take() {
            net.shutdown().await;
        }
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || pool.admission.stop())
            .await
            .map_err(|e| NodeError::Join(e.to_string()))?;
        Ok(())
    }
}

impl RunningNode {
    /// Opens the chain, starts the producer (if enabled), the hosted repositories and the RPC
    /// server.
    pub async fn start(config: NodeConfig) -> Result<RunningNode, NodeError> {
        let cores = config.exec.resolve_cores().map_err(|reason| NodeError::Config { reason })?;
        let shared = Shared {
            node_key: load_or_create_node_key(&config.data_dir.join(NODE_KEY_FILE))?,
            cores,
            queries: Arc::new(
                rpc::queries::QueryPool::start(&config.rpc)
                    .map_err(|source| NodeError::Io { path: "query threads".into(), source })?,
            ),
            refusals: Default::default(),
            admin_from: Arc::new(config.rpc.admin_from.clone()),
        };
        let mut chain = ChainRun::start(&config, &shared, None).await?;
        let routes = Arc::new(rpc::listen::Routes::default());
        let repos = Arc::new(crate::repos::RepoHost::new(
            config.clone(),
            shared,
            routes.clone(),
            chain.view.chain_id.clone(),
        ));
        repos.open_hosted().await;
        chain.handler.hosting = Some(repos.clone());
        let listening =
            rpc::serve(chain.handler.clone(), routes, &config.rpc, config.rpc_tls_paths()).await?;
        let (rpc, rpc_addr) = (listening.handle, listening.addr);
        tracing::info!(
            rpc = %rpc_addr, rpc_tls = ?listening.tls_addr.map(|a| a.to_string()),
            producer = ?chain.handler.facts.producer.map(|a| a.to_string()),
            peer_id = ?chain.handler.facts.peer_id, repositories = repos.count(), "node running"
        );
        Ok(RunningNode { view: chain.view.clone(), rpc_addr, rpc, chain, repos })
    }

    /// Resolves once the public chain's thread has ended on its own (it cannot go on: a failed
    /// disk, a Raft log it cannot write; the reason is in the log). A node in that state would
    /// answer RPC and never move, so the binary exits and its supervisor starts it again.
    pub async fn chain_stopped(&self) {
        while self.chain.running() {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    /// Stops accepting RPC, lets each chain thread finish the block in hand, and waits for them.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        let _ = self.rpc.stop();
        self.rpc.clone().stopped().await;
        self.repos.stop_all().await;
        self.chain.stop().await?;
        tracing::info!("node stopped");
        Ok(())
    }
}

/// Prepares `data_dir` for `--dev`: a one-producer genesis whose producer is also the funded dev
/// account, its key in `dev.key` (0600) and `producer.key`. Idempotent: an existing devnet is kept.
/// Settings come from `data_dir/config.toml` when it exists (else the defaults), except the data
/// directory and the producer.
pub fn prepare_devnet(data_dir: &Path) -> Result<NodeConfig, NodeError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| NodeError::Io { path, source }
    };
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let key_path = data_dir.join("dev.key");
    let genesis_path = data_dir.join("genesis.toml");
    let key = if key_path.exists() {
        KeyFile::read(&key_path)?.unlock(None)?
    } else {
        let key = Keypair::generate();
        KeyFile::write_plain(&key_path, &key)?;
        key
    };
    if !genesis_path.exists() {
        let genesis = Genesis {
            chain_id: "aergo-devnet".into(),
            timestamp_ms: now_ms() / 1000 * 1000,
            consensus: ConsensusParams {
                max_block_txs: aergo_config::genesis::DEVNET_MAX_BLOCK_TXS,
                ..ConsensusParams::default()
            },
            balances: vec![GenesisBalance {
                address: key.address(),
                amount: 1_000_000_000u128 * 10u128.pow(18),
            }],
            producers: vec![GenesisProducer { public_key: hex::encode(key.public().0) }],
            access: None,
        };
        write_atomic(&genesis_path, genesis.to_toml().as_bytes()).map_err(io(&genesis_path))?;
    }
    // The directory's own config.toml, when there is one, sets the rest (`[rpc]` for a dApp's
    // CORS origin, say); the devnet's data directory and producer are always these.
    let own = data_dir.join("config.toml");
    let mut config = if own.exists() {
        NodeConfig::load(&own).map_err(|e| NodeError::Config { reason: e.to_string() })?
    } else {
        NodeConfig::default()
    };
    config.data_dir = data_dir.to_path_buf();
    config.producer.enabled = true;
    config.producer.key_file = PathBuf::from("dev.key");
    Ok(config)
}

/// `aergo-node init`: creates the chain in `data_dir` from `genesis_file`, then copies the genesis there
/// and writes a default `config.toml`. A directory that already holds another chain is left untouched.
pub fn init(genesis_file: &Path, data_dir: &Path) -> Result<(PathBuf, OpenReport), NodeError> {
    let mut report = None;
    let config_path = with_node_files(genesis_file, data_dir, |config, _| {
        let (_chain, opened) = open_chain(config)?;
        report = Some(opened);
        Ok(())
    })?;
    Ok((config_path, report.unwrap_or_default()))
}

/// `aergo-node snapshot import --in FILE --genesis G --data-dir D`: builds D's chain from the
/// snapshot in FILE (checked against G, see `aergo_chain::snapshot`), then writes `D/genesis.toml`
/// and `D/config.toml` as [`init`] does. Returns the config's path and what was imported.
pub fn import_snapshot(
    input: &Path,
    genesis_file: &Path,
    data_dir: &Path,
) -> Result<(PathBuf, aergo_storage::snapshot::ImportReport), NodeError> {
    let mut report = None;
    let config_path = with_node_files(genesis_file, data_dir, |_, genesis| {
        let file = std::fs::File::open(input)
            .map_err(|source| NodeError::Io { path: input.display().to_string(), source })?;
        report = Some(aergo_chain::snapshot::import(std::io::BufReader::new(file), data_dir, genesis)?);
        Ok(())
    })?;
    let report = report.ok_or_else(|| NodeError::Config { reason: "the import did not run".into() })?;
    Ok((config_path, report))
}

/// Checks that `data_dir` is free for the chain of `genesis_file`, runs `make` (which creates the
/// chain there), then writes the genesis and a default config beside it unless present.
fn with_node_files(
    genesis_file: &Path,
    data_dir: &Path,
    make: impl FnOnce(&NodeConfig, &Genesis) -> Result<(), NodeError>,
) -> Result<PathBuf, NodeError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| NodeError::Io { path, source }
    };
    let genesis = Genesis::load(genesis_file)?;
    let target = data_dir.join("genesis.toml");
    if target.exists() && Genesis::load(&target)? != genesis {
        return Err(NodeError::AnotherChain { path: target.display().to_string() });
    }
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let source = std::fs::canonicalize(genesis_file).map_err(io(genesis_file))?;
    let config = NodeConfig { data_dir: data_dir.to_path_buf(), genesis: source, ..NodeConfig::default() };
    make(&config, &genesis)?;
    if !target.exists() {
        write_atomic(&target, genesis.to_toml().as_bytes()).map_err(io(&target))?;
    }
    let config_path = data_dir.join("config.toml");
    if !config_path.exists() {
        let abs = std::fs::canonicalize(data_dir).map_err(io(data_dir))?;
        let text = NodeConfig { data_dir: abs, ..NodeConfig::default() }
            .to_toml()
            .map_err(|e| NodeError::Config { reason: e.to_string() })?;
        write_atomic(&config_path, text.as_bytes()).map_err(io(&config_path))?;
    }
    Ok(config_path)
}

/// Writes a file so that readers see the old or the new contents, never a mix, even after a crash.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    aergo_primitives::file::write_atomic_mode(path, contents, 0o644)
}
