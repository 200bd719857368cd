//! The JSON-RPC server: [`AergoApiServer`] over a read view of the chain and a submit handle for
//! the pool ([`RpcHandler`]). It never writes the chain and never runs the chain thread: reads come
//! from the view, writes go into the pool.
//!
//! Methods run on tokio's worker threads. Reads go straight to RocksDB and the block log (both safe to
//! share); `send_tx` decodes and verifies outside the pool lock and holds the lock only to admit.

use aergo_api::{
    codes, AccountView, AergoApiServer, BlockTxs, BlockView, BranchView, CandidateView, ChainInfo,
    ContractFunctionView, ContractTableView, ContractView, DiffView, HeaderView, NodeInfo, NodeMetrics,
    PeerView, PointView, ProducersView, QueryRequest, QueryView, RawBlockView, ReceiptView, RpcResult,
    SendTxOutcome, SendTxResult, StageMetrics, StakeView, TagView, TxRejection, TxView,
};
use aergo_chain::view::{BranchHandle, Branches, ChainView, NodeFacts, PoolHandle};
use aergo_config::RpcConfig;
use aergo_mempool::AdmitError;
use aergo_net::NetCommand;
use aergo_primitives::types::{Address, Block, Hash, Payload, Transaction, MAIN_BRANCH, MAX_TX_BYTES};
use jsonrpsee::core::{async_trait, SubscriptionResult};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::PendingSubscriptionSink;
use std::sync::Arc;

/// A key's stored bytes, as the state store reads them.
type StoredRead = Result<Option<Vec<u8>>, aergo_storage::StateError>;

pub use aergo_api::AddRepository;

pub mod diff;
pub mod listen;
pub mod queries;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error(transparent)]
    Listen(#[from] listen::ListenError),
}

fn invalid_params(msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(codes::INVALID_PARAMS, msg.into(), None::<()>)
}

fn internal(err: impl std::fmt::Display) -> ErrorObjectOwned {
    tracing::error!(error = %err, "rpc internal error");
    ErrorObjectOwned::owned(codes::INTERNAL, err.to_string(), None::<()>)
}

fn rejected(err: AdmitError) -> ErrorObjectOwned {
    let code = if matches!(err, AdmitError::Busy) { codes::BUSY } else { codes::TX_REJECTED };
    ErrorObjectOwned::owned(code, err.to_string(), Some(serde_json::json!({ "reason": err.reason() })))
}

fn busy(r: queries::Refused) -> ErrorObjectOwned {
    let queries::Refused::Busy(why) = r;
    ErrorObjectOwned::owned(codes::BUSY, why, Some(serde_json::json!({ "reason": "busy" })))
}

fn parse_hash(text: &str) -> RpcResult<Hash> {
    Hash::from_hex(text).map_err(invalid_params)
}

pub fn query_view(columns: Vec<String>, rows: &[Vec<aergo_sql::Value>]) -> QueryView {
    QueryView {
        columns,
        rows: rows.iter().map(|r| r.iter().map(aergo_sql::json::to_json).collect()).collect(),
    }
}

fn cache_view(usage: aergo_storage::state::CacheUsage) -> aergo_api::StateCacheUsage {
    aergo_api::StateCacheUsage {
        state_cache_values: usage.values,
        state_cache_bytes: usage.bytes,
        state_cache_capacity_bytes: usage.capacity_bytes,
    }
}

pub fn tx_view(tx: &Transaction, location: Option<(u64, Hash, u32)>) -> TxView {
    TxView {
        hash: tx.hash(),
        chain_id: tx.body.chain_id.clone(),
        kind: tx.body.payload.kind().to_string(),
        nonce: tx.body.nonce,
        sender: tx.sender(),
        recipient: tx.body.recipient,
        amount: tx.body.amount,
        fee: tx.body.fee,
        state: if location.is_some() { "included" } else { "pending" }.to_string(),
        block_height: location.map(|l| l.0),
        block_hash: location.map(|l| l.1),
        index: location.map(|l| l.2),
        contract: match &tx.body.payload {
            Payload::Deploy { .. } => Some(aergo_sql::store::contract_address(&tx.sender(), tx.body.nonce)),
            Payload::Call { contract, .. } => Some(*contract),
            _ => None,
        },
        function: match &tx.body.payload {
            Payload::Call { function, .. } => Some(function.clone()),
            _ => None,
        },
    }
}

pub fn block_view(block: &Block, full: bool) -> BlockView {
    let h = &block.header;
    let hash = block.hash();
    let transactions = if full {
        BlockTxs::Full(
            block
                .transactions
                .iter()
                .enumerate()
                .map(|(i, tx)| tx_view(tx, Some((h.height, hash, i as u32))))
                .collect(),
        )
    } else {
        BlockTxs::Hashes(block.transactions.iter().map(Transaction::hash).collect())
    };
    BlockView {
        hash,
        height: h.height,
        header: HeaderView {
            chain_id: h.chain_id.clone(),
            branch: h.branch.clone(),
            height: h.height,
            prev_hash: h.prev_hash,
            timestamp_ms: h.timestamp_ms,
            producer: h.producer.address(),
            tx_root: h.tx_root,
            state_root: h.state_root,
            receipts_root: h.receipts_root,
            tx_count: block.transactions.len() as u32,
            producer_key: Some(hex::encode(h.producer.0)),
        },
        transactions,
    }
}

/// The repositories a node hosts beside its public chain (`docs/repositories.md`), as the
/// public chain's RPC sees them: the node implements it (`aergo_node::repos`).
pub trait Hosting: Send + Sync {
    /// The hosted repositories, by name in the order added, each with its RPC handler and
    /// whether its chain thread still runs.
    fn hosted(&self) -> Vec<Hosted>;
    /// Opens a repository and keeps it across restarts; answers its name, or why not (then
    /// nothing changed).
    fn add(self: Arc<Self>, request: aergo_api::AddRepository) -> BoxFuture<Result<String, String>>;
    /// Stops a repository and forgets it (its data deleted unless `keep_data`).
    fn remove(self: Arc<Self>, name: String, keep_data: bool) -> BoxFuture<Result<(), String>>;
}

/// What [`Hosting::add`] and [`Hosting::remove`] answer with, later.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// One hosted repository, for [`Hosting::hosted`].
pub struct Hosted {
    pub name: String,
    /// Its methods' handler; none when it could not open.
    pub handler: Option<RpcHandler>,
    /// False once its chain thread has ended (it stopped itself: see its log).
    pub running: bool,
    /// Why it could not open.
    pub error: Option<String>,
}

impl Hosted {
    /// As `repositories` lists it.
    pub fn view(&self) -> aergo_api::RepositoryView {
        match &self.handler {
            Some(h) => h.repository_view(&self.name, self.running),
            None => aergo_api::RepositoryView {
                name: self.name.clone(),
                chain_id: String::new(),
                consensus: String::new(),
                height: 0,
                lib_height: 0,
                peers: 0,
                role: "none".into(),
                health: "stopped".into(),
                reason: Some(self.error.clone().unwrap_or_else(|| "it could not open".into())),
                p2p_listen: Vec::new(),
                peers_refused: 0,
            },
        }
    }
}

/// The RPC server's handles: a read view of the chain, the way into the pool, the node's facts,
/// and the p2p layer's state and commands (once it runs; never without a network).
#[derive(Clone)]
pub struct RpcHandler {
    pub view: Arc<ChainView>,
    pub pool: Arc<PoolHandle>,
    pub facts: Arc<NodeFacts>,
    pub net: Arc<std::sync::OnceLock<Arc<aergo_net::NetState>>>,
    pub net_commands: Option<tokio::sync::mpsc::Sender<NetCommand>>,
    /// Most transactions in one `send_txs` call.
    pub max_batch: usize,
    /// Where `query` runs (its own threads, bounded and fair; see [`queries`]).
    pub queries: Arc<queries::QueryPool>,
    /// The branches this node tracks and holds besides `main`.
    pub branches: Arc<Branches>,
    /// What the listeners refused (origins, rate limits), for `node_metrics`.
    pub refusals: Arc<listen::Refusals>,
    /// The hosted repositories: on the public chain's handler only.
    pub hosting: Option<Arc<dyn Hosting>>,
    /// Clients that may call the admin methods (`[rpc] admin_from`).
    pub admin_from: Arc<Vec<std::net::IpAddr>>,
}

/// The chain a request reads or writes: `main`'s, or a held branch's.
struct On {
    view: Arc<ChainView>,
    pool: Arc<PoolHandle>,
}

/// The system records of `view`'s state at its head.
/// A branch's member nodes from the state of `parent` (the branch it was made on) at its head:
/// `None` for a public branch.
fn branch_members(
    parent: &ChainView,
    name: &str,
) -> RpcResult<Option<Vec<aergo_primitives::types::PublicKey>>> {
    let (store, head) = (&parent.store, parent.head().height);
    aergo_exec::branches::branch_members(|k: &[u8]| store.get_at(k, head), name)
        .map_err(internal)?
        .map_err(internal)
}

fn records_at_head(
    view: &ChainView,
) -> aergo_exec::governance::Records<impl FnMut(&[u8]) -> StoredRead + '_> {
    let (store, head) = (&view.store, view.head().height);
    aergo_exec::governance::Records(move |key: &[u8]| store.get_at(key, head))
}

/// `height`, or the head of `view`; an error above the head or before its history.
/// The block a proof at `height` is against: its hash and header.
fn proven_block(view: &ChainView, height: u64) -> RpcResult<aergo_api::ProvenBlock> {
    let block = view
        .read_block(height)
        .map_err(internal)?
        .ok_or_else(|| internal(format!("block {height} is not in the block log")))?;
    let b = block_view(&block, false);
    Ok(aergo_api::ProvenBlock { hash: b.hash, header: b.header })
}

fn proof_entry(key: &[u8], value: Option<&[u8]>, proof: &[u8]) -> aergo_api::ProofEntry {
    aergo_api::ProofEntry { key: hex::encode(key), value: value.map(hex::encode), proof: hex::encode(proof) }
}

fn height_or_head(view: &ChainView, height: Option<u64>) -> RpcResult<u64> {
    let head = view.head().height;
    let at = height.unwrap_or(head);
    if at > head {
        return Err(ErrorObjectOwned::owned(
            codes::HEIGHT_UNAVAILABLE,
            format!("height {at} is above the chain head {head}"),
            None::<()>,
        ));
    }
    view.check_history(at)
        .map_err(|e| ErrorObjectOwned::owned(codes::HEIGHT_UNAVAILABLE, e.to_string(), None::<()>))?;
    Ok(at)
}

/// The block at `height` (`None` above the head); a height whose history was pruned is refused.
fn block_at(view: &ChainView, height: u64) -> RpcResult<Option<aergo_primitives::types::Block>> {
    if height <= view.head().height {
        view.check_history(height)
            .map_err(|e| ErrorObjectOwned::owned(codes::HEIGHT_UNAVAILABLE, e.to_string(), None::<()>))?;
    }
    view.read_block(height).map_err(internal)
}

/// How long a chain with transactions waiting may go without a block before it is `stalled`,
/// in block intervals.
const STALLED_INTERVALS: u64 = 10;
/// How long a Raft member may know no leader before it says `no quorum`.
const NO_QUORUM_MS: u64 = 5_000;

impl RpcHandler {
    /// The methods this handler serves, for a listener's route.
    pub fn into_rpc_methods(self) -> jsonrpsee::Methods {
        self.into_rpc().into()
    }

    /// A hosted repository as `repositories` lists it: its head, finality, peers, this node's
    /// role and its health.
    pub fn repository_view(&self, name: &str, running: bool) -> aergo_api::RepositoryView {
        let view = &self.view;
        let head = view.head();
        let consensus = view.consensus.read().clone();
        let now = aergo_primitives::clock::now_ms();
        let waiting = self.pool.mempool.lock().len();
        let role = match &consensus.raft {
            Some(r) => r.role.clone(),
            None if self.facts.producer.is_some() => "producer".into(),
            None => "full".into(),
        };
        let interval = view.genesis.consensus.block_interval_ms.max(1);
        let (health, reason) = if !running {
            ("stopped", Some("its chain thread has stopped: see the node's log".to_string()))
        } else if let Some(since) = consensus.raft.as_ref().map(|r| r.leaderless_since_ms).filter(|s| *s > 0)
        {
            if now.saturating_sub(since) >= NO_QUORUM_MS {
                let secs = now.saturating_sub(since) / 1000;
                ("no quorum", Some(format!("no Raft leader for {secs} s")))
            } else {
                ("ok", None)
            }
        } else if consensus.syncing {
            let behind = consensus.best_known_height.saturating_sub(head.height);
            ("syncing", Some(format!("{behind} blocks behind its peers")))
        } else if waiting > 0 && now.saturating_sub(head.timestamp_ms) > STALLED_INTERVALS * interval {
            let secs = now.saturating_sub(head.timestamp_ms) / 1000;
            ("stalled", Some(format!("{waiting} transactions wait and no block for {secs} s")))
        } else {
            ("ok", None)
        };
        let net = self.net.get();
        aergo_api::RepositoryView {
            name: name.to_string(),
            chain_id: view.chain_id.clone(),
            consensus: view.genesis.consensus.kind.name().into(),
            height: head.height,
            lib_height: consensus.lib_height,
            peers: net.map_or(0, |n| n.peers.read().len() as u32),
            role,
            health: health.into(),
            reason,
            p2p_listen: net.map(|n| n.listen.read().clone()).unwrap_or_default(),
            peers_refused: net.map_or(0, |n| n.refused_total.load(std::sync::atomic::Ordering::Relaxed)),
        }
    }

    /// Refuses an admin method to a client outside `[rpc] admin_from`.
    fn check_admin(&self, ext: &jsonrpsee::Extensions) -> RpcResult<()> {
        let ip = ext.get::<listen::ClientIp>().map(|c| c.0);
        match ip {
            Some(ip) if self.admin_from.contains(&ip) => Ok(()),
            _ => Err(ErrorObjectOwned::owned(
                codes::ACCESS_DENIED,
                format!(
                    "access denied: admin methods are only for clients in [rpc] admin_from{}",
                    ip.map(|ip| format!(" ({ip} is not)")).unwrap_or_default()
                ),
                None::<()>,
            )),
        }
    }

    /// The chain a read is on, the height it reads (default the head), and the contract's
    /// script and compiled form there; an unknown contract is invalid params.
    fn contract_at(
        &self,
        contract: &Address,
        height: Option<u64>,
        branch: Option<&str>,
        ext: &jsonrpsee::Extensions,
    ) -> RpcResult<(Arc<ChainView>, u64, String, Arc<aergo_sql::Compiled>)> {
        let view = self.on(Some(ext), branch)?.view;
        let at = height_or_head(&view, height)?;
        let (script, compiled) = aergo_exec::query::load(&view.store, contract, at).map_err(|e| match e {
            aergo_sql::SqlError::Storage(e) => internal(e),
            e => invalid_params(e.to_string()),
        })?;
        Ok((view, at, script, compiled))
    }

    /// The chain named by a request's `branch` (default `main`); an unknown branch or one this
    /// node does not hold is invalid params that says which.
    /// A private branch is read only by a request its creator or one of its mergers signed
    /// (`signer`, from `X-Aergo-Auth`); anyone else is answered as for a branch this node does
    /// not hold (`docs/branches.md`, "Private branches").
    fn on(&self, ext: Option<&jsonrpsee::Extensions>, branch: Option<&str>) -> RpcResult<On> {
        match branch {
            None | Some(MAIN_BRANCH) => Ok(On { view: self.view.clone(), pool: self.pool.clone() }),
            Some(name) => {
                let held = self.held_for(ext, name).map_err(invalid_params)?;
                Ok(On { view: held.view.clone(), pool: held.pool.clone() })
            }
        }
    }

    /// [`Self::held`] for a request: a private branch is held only for a request its creator or
    /// one of its mergers signed (`X-Aergo-Auth`); anyone else is answered as for a branch this
    /// node does not track.
    fn held_for(&self, ext: Option<&jsonrpsee::Extensions>, name: &str) -> Result<Arc<BranchHandle>, String> {
        let held = self.held(name)?;
        if let Some(readers) = &held.readers {
            let signer = ext.and_then(|e| e.get::<listen::Signer>()).map(|s| s.0.address());
            if !signer.is_some_and(|a| readers.contains(&a)) {
                return Err(format!(
                    "branch {name:?} is not tracked by this node (aergo branch track {name})"
                ));
            }
        }
        Ok(held)
    }

    /// A branch this node holds, or why not: unknown, not tracked, or tracked and waiting.
    fn held(&self, name: &str) -> Result<Arc<BranchHandle>, String> {
        if let Some(h) = self.branches.get(name) {
            return Ok(h);
        }
        if let Some(Some(why)) = self.branches.tracking(name) {
            return Err(format!("branch {name:?} is tracked by this node but not open yet: {why}"));
        }
        match self.find_branch(name) {
            Ok(Some(_)) => {
                Err(format!("branch {name:?} is not tracked by this node (aergo branch track {name})"))
            }
            Ok(None) => Err(format!("no branch {name:?} on this chain")),
            Err(e) => Err(format!("branch {name:?}: {e}")),
        }
    }

    /// `main`'s view, then those of the branches this node holds, by name.
    fn views(&self) -> Vec<Arc<ChainView>> {
        let held =
            self.branches.names().into_iter().filter_map(|n| self.branches.get(&n)).map(|h| h.view.clone());
        std::iter::once(self.view.clone()).chain(held).collect()
    }

    /// A branch's record: on `main` at the head, else on a held branch (a branch made on a
    /// branch) at its head.
    fn find_branch(&self, name: &str) -> Result<Option<aergo_exec::branches::BranchRecord>, String> {
        Ok(self.find_record(&aergo_exec::branches::branch_key(name))?.map(|(r, _)| r))
    }

    /// A branch or tag record under `key`: in `main`'s state at the head, else in a held
    /// branch's (records made on a branch live in its state), with the view it was found in.
    fn find_record<T: borsh::BorshDeserialize>(
        &self,
        key: &[u8],
    ) -> Result<Option<(T, Arc<ChainView>)>, String> {
        for view in self.views() {
            let found = records_at_head(&view).get::<T>(key).map_err(|e| e.to_string())?;
            if let Some(r) = found {
                return Ok(Some((r, view)));
            }
        }
        Ok(None)
    }

    /// The records `list` reads from `main`'s state and then each held branch's, each name once
    /// (a branch's state holds its parent's records up to its base too), with the view it was
    /// found in.
    fn records_everywhere<T>(
        &self,
        list: impl Fn(&ChainView) -> Result<Vec<T>, aergo_exec::governance::RecordError>,
        name: impl Fn(&T) -> &str,
    ) -> RpcResult<Vec<(T, Arc<ChainView>)>> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for view in self.views() {
            for r in list(&view).map_err(internal)? {
                if seen.insert(name(&r).to_string()) {
                    out.push((r, view.clone()));
                }
            }
        }
        Ok(out)
    }

    /// Decodes one hex-encoded transaction and checks its chain id.
    fn decode(&self, hex_tx: &str) -> Result<(Transaction, usize), AdmitError> {
        let text = hex_tx.strip_prefix("0x").unwrap_or(hex_tx);
        if text.len() > 2 * MAX_TX_BYTES {
            return Err(AdmitError::TooLarge { len: text.len() / 2, max: MAX_TX_BYTES });
        }
        let bytes = hex::decode(text).map_err(|e| AdmitError::Malformed(format!("not hex: {e}")))?;
        self.decode_bytes(&bytes)
    }

    /// A transaction from its borsh bytes (hex-decoded by `send_tx`/`send_txs`, a frame of
    /// `POST /txs`), with what the node checks before admission.
    fn decode_bytes(&self, bytes: &[u8]) -> Result<(Transaction, usize), AdmitError> {
        if bytes.len() > MAX_TX_BYTES {
            return Err(AdmitError::TooLarge { len: bytes.len(), max: MAX_TX_BYTES });
        }
        let tx = Transaction::decode(bytes).map_err(|e| match e {
            aergo_primitives::types::DecodeError::TooLarge { len, max, .. } => {
                AdmitError::TooLarge { len, max }
            }
            other => AdmitError::Malformed(other.to_string()),
        })?;
        if tx.body.chain_id != self.view.chain_id {
            return Err(AdmitError::WrongChainId {
                expected: self.view.chain_id.clone(),
                got: tx.body.chain_id,
            });
        }
        // A branch's base and a tagged block are final blocks (`docs/branches.md`); the chain's
        // rule is only that they are below the block holding the record, so say it here.
        if let Payload::CreateBranch { base_height: height, .. } | Payload::CreateTag { height, .. } =
            &tx.body.payload
        {
            // The record goes on the branch the transaction is for: its last final block.
            let lib = match self.branches.get(&tx.body.branch) {
                Some(held) => held.view.consensus.read().lib_height,
                None => self.view.consensus.read().lib_height,
            };
            if *height > lib {
                return Err(AdmitError::NotFinal { height: *height, lib });
            }
        }
        Ok((tx, bytes.len()))
    }

    /// On a node that does not produce the chain `view` is of (`main`, or a held branch): hands
    /// the transaction to the producers of the current and the next slot among the connected
    /// peers (known by the producer key their status names: a node's branch producer key is its
    /// producer key), and answers with the first one's answer (their pool position and
    /// speculative result). `None` when no such producer is connected or none answered.
    async fn forward(&self, tx: &Transaction, view: &ChainView) -> Option<Result<SendTxResult, AdmitError>> {
        let net = self.net.get()?;
        let commands = self.net_commands.as_ref()?;
        let schedule = &view.schedule;
        let height = view.head().height + 1;
        let slot = schedule.slot_at(aergo_primitives::clock::now_ms());
        let mut keys: Vec<String> = Vec::new();
        for s in [slot, slot + 1] {
            if let Ok(Some(k)) = schedule.producer_of(s, height).map(|k| k.map(|k| hex::encode(k.0))) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        let peers: Vec<libp2p::PeerId> = {
            let peers = net.peers.read();
            keys.iter()
                .filter_map(|k| {
                    peers
                        .iter()
                        .find(|(_, p)| p.status.as_ref().and_then(|s| s.producer.as_ref()) == Some(k))
                        .map(|(id, _)| *id)
                })
                .collect()
        };
        if peers.is_empty() {
            return None;
        }
        let bytes = tx.encode();
        let mut answers = Vec::new();
        for peer in peers {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let mut command = NetCommand::Forward { peer, tx: bytes.clone(), reply };
            if view.branch != MAIN_BRANCH {
                command = NetCommand::OnBranch { branch: view.branch.clone(), command: Box::new(command) };
            }
            if commands.send(command).await.is_ok() {
                answers.push(answer);
            }
        }
        let mut refused = None;
        for answer in answers {
            match tokio::time::timeout(std::time::Duration::from_secs(5), answer).await {
                Ok(Ok(Ok(result))) => return Some(Ok(result)),
                Ok(Ok(Err(reason))) => refused = Some(reason),
                _ => {}
            }
        }
        refused.map(|reason| Err(AdmitError::RefusedByProducer(reason)))
    }

    /// A receipt's events with their arguments named by the contract's declaration, and each
    /// one's place among its block's events (counting the successful calls' events of the
    /// transactions before it).
    fn event_views(
        &self,
        view: &ChainView,
        loc: &aergo_storage::state::TxLocation,
    ) -> Result<Vec<aergo_api::EventView>, String> {
        let events = loc.receipt.status.events();
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let reverted = !loc.receipt.status.is_success();
        let mut first = 0u32;
        if !reverted {
            let block = view.read_block(loc.height).map_err(|e| e.to_string())?;
            for tx in block.iter().flat_map(|b| b.transactions.iter().take(loc.index as usize)) {
                if let Some(l) = view.store.tx_location(&tx.hash()).map_err(|e| e.to_string())? {
                    if l.receipt.status.is_success() {
                        first += l.receipt.status.events().len() as u32;
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            let args = named_args(view, e, loc.height);
            out.push(aergo_api::EventView {
                index: (!reverted).then_some(first + i as u32),
                contract: e.contract,
                name: e.name.clone(),
                args,
                reverted,
            });
        }
        Ok(out)
    }

    /// A page of `filter`'s events up to block `upto` (the head for `get_events`, the last final
    /// block for `subscribe_events`).
    async fn events_page(
        &self,
        view: Arc<ChainView>,
        filter: &aergo_api::EventFilter,
        upto: u64,
    ) -> RpcResult<aergo_api::EventPage> {
        let head = view.head().height;
        let to = filter.to.unwrap_or(upto).min(upto);
        let from = filter.from.unwrap_or(view.base_height.max(1));
        if from > to {
            return Err(invalid_params(format!("from {from} is above to {to}")));
        }
        let limit = filter.limit.unwrap_or(100).clamp(1, 1_000) as usize;
        let after = match &filter.after {
            None => None,
            Some(c) => Some(
                parse_cursor(c)
                    .ok_or_else(|| invalid_params(format!("after {c:?}: not a cursor of get_events")))?,
            ),
        };
        let wanted: Vec<(String, aergo_sql::Value)> = filter
            .args
            .iter()
            .flatten()
            .map(|(k, v)| aergo_sql::json::from_json(v).map(|v| (k.clone(), v)).map_err(invalid_params))
            .collect::<RpcResult<_>>()?;
        let contract = filter.contract;
        let name = filter.name.clone();
        let page = tokio::task::spawn_blocking(
            move || -> Result<aergo_api::EventPage, aergo_storage::StateError> {
                // The contract's declarations (at the head: scripts never change) name the arguments.
                let declared = aergo_exec::query::load(&view.store, &contract, head)
                    .ok()
                    .map(|(_, c)| c.interpreted.events.clone());
                let names = |e: &aergo_primitives::types::Event| -> Vec<String> {
                    let d = declared.iter().flatten().find(|d| d.name == e.name);
                    (0..e.args.len())
                        .map(|j| {
                            d.and_then(|d| d.params.get(j))
                                .map_or_else(|| format!("arg{j}"), |(n, _)| n.clone())
                        })
                        .collect()
                };
                let keep = |e: &aergo_primitives::types::Event| {
                    name.as_ref().is_none_or(|n| *n == e.name)
                        && wanted.iter().all(|(k, v)| {
                            names(e)
                                .iter()
                                .position(|n| n == k)
                                .and_then(|j| e.args.get(j))
                                .is_some_and(|a| a == v)
                        })
                };
                let found = view.store.events(&contract, (from, to), after, limit + 1, &keep)?;
                let more = found.len() > limit;
                let mut blocks: std::collections::HashMap<u64, Option<aergo_primitives::types::Block>> =
                    Default::default();
                let mut events = Vec::with_capacity(found.len().min(limit));
                for (pos, e) in found.into_iter().take(limit) {
                    let block = blocks
                        .entry(pos.height)
                        .or_insert_with(|| view.read_block(pos.height).ok().flatten());
                    let tx_hash = block
                        .as_ref()
                        .and_then(|b| b.transactions.get(pos.tx as usize))
                        .map_or(Hash::ZERO, |t| t.hash());
                    let args =
                        names(&e).into_iter().zip(e.args.iter().map(aergo_sql::json::to_json)).collect();
                    events.push(aergo_api::EventEntry {
                        block_height: pos.height,
                        tx_hash,
                        tx_index: pos.tx,
                        event_index: pos.event,
                        contract: e.contract,
                        name: e.name,
                        args,
                    });
                }
                let next = more
                    .then(|| {
                        events.last().map(|e| format!("{}:{}:{}", e.block_height, e.tx_index, e.event_index))
                    })
                    .flatten();
                Ok(aergo_api::EventPage { events, next })
            },
        )
        .await
        .map_err(internal)?;
        page.map_err(|e| match e {
            aergo_storage::StateError::EventIndex { .. } => invalid_params(e.to_string()),
            e => internal(e),
        })
    }

    /// The branch a transaction goes to when it is not `main`'s: one this node holds (else
    /// refused: it can run nowhere else).
    fn branch_for(
        &self,
        ext: &jsonrpsee::Extensions,
        tx: &Transaction,
    ) -> Result<Option<Arc<BranchHandle>>, AdmitError> {
        let branch = &tx.body.branch;
        if branch == MAIN_BRANCH {
            return Ok(None);
        }
        self.held_for(Some(ext), branch).map(Some).map_err(AdmitError::BranchNotHeld)
    }

    fn branch_view(&self, r: aergo_exec::branches::BranchRecord) -> RpcResult<BranchView> {
        // The base and the record are on the parent: `main`, or a branch this node holds.
        let parent = match self.branches.get(&r.parent) {
            Some(held) => held.view.clone(),
            None => self.view.clone(),
        };
        let base_hash = parent.store.block_meta(r.base_height).map_err(internal)?.map(|m| m.hash);
        let lib = parent.consensus.read().lib_height;
        let held = self.branches.get(&r.name);
        let tracking = self.branches.tracking(&r.name);
        let members = branch_members(&parent, &r.name)?.map(|m| m.iter().map(|k| hex::encode(k.0)).collect());
        let merged_upto = records_at_head(&parent)
            .get::<aergo_exec::branches::MergedRecord>(&aergo_exec::branches::merged_key(&r.name))
            .map_err(internal)?
            .map(|m| m.upto);
        Ok(BranchView {
            members,
            merged_upto,
            tracked: tracking.is_some(),
            head_height: held.as_ref().map(|h| h.view.head().height),
            lib_height: held.as_ref().map(|h| h.view.consensus.read().lib_height),
            waiting: tracking.flatten(),
            final_record: lib >= r.created_at,
            name: r.name,
            parent: r.parent,
            base_height: r.base_height,
            base_hash,
            producers: r.producers.iter().map(|k| k.address()).collect(),
            creator: r.creator,
            created_at: r.created_at,
            mergers: r.mergers,
        })
    }

    fn tag_view(&self, r: aergo_exec::branches::TagRecord, on: &ChainView) -> RpcResult<TagView> {
        let hash = on.store.block_meta(r.height).map_err(internal)?.map(|m| m.hash);
        Ok(TagView {
            name: r.name,
            branch: r.branch,
            height: r.height,
            hash,
            creator: r.creator,
            created_at: r.created_at,
        })
    }

    /// `send_txs` and `POST /txs`: each decoded transaction (or why it was not) admitted to its
    /// pool, `main`'s in one batch, and answered in order.
    async fn submit_many(
        &self,
        ext: &jsonrpsee::Extensions,
        txs: Vec<Result<(Transaction, usize), AdmitError>>,
    ) -> Vec<SendTxOutcome> {
        // Each slot: an index into `main`'s batch, or an answer already known (refused, or a
        // branch's transaction, which goes to its own pool one at a time).
        let mut slots: Vec<Result<usize, Result<aergo_mempool::Admitted, AdmitError>>> =
            Vec::with_capacity(txs.len());
        let mut decoded = Vec::with_capacity(txs.len());
        for decoded_tx in txs {
            match decoded_tx.and_then(|d| self.branch_for(ext, &d.0).map(|held| (d, held))) {
                Ok((d, None)) => {
                    slots.push(Ok(decoded.len()));
                    decoded.push(d);
                }
                Ok(((tx, bytes), Some(held))) => slots.push(Err(self.admit_to(&held.pool, tx, bytes).await)),
                Err(e) => slots.push(Err(Err(e))),
            }
        }
        let encoded: Vec<Vec<u8>> = match &self.net_commands {
            Some(_) => decoded.iter().map(|(tx, _)| tx.encode()).collect(),
            None => Vec::new(),
        };
        let answers = self.pool.admission.submit_many(decoded).await;
        for (bytes, answer) in encoded.into_iter().zip(&answers) {
            if answer.is_ok() {
                self.pool.gossip_tx(bytes);
            }
        }
        let outcome = |r: Result<aergo_mempool::Admitted, AdmitError>| match r {
            Ok(a) => SendTxOutcome::Accepted(a.into()),
            Err(e) => SendTxOutcome::Rejected {
                error: TxRejection {
                    code: if matches!(e, AdmitError::Busy) { codes::BUSY } else { codes::TX_REJECTED },
                    message: e.to_string(),
                    reason: e.reason().to_string(),
                },
            },
        };
        let mut answers = answers.into_iter();
        slots
            .into_iter()
            .map(|slot| match slot {
                Ok(_) => outcome(answers.next().unwrap_or(Err(AdmitError::Busy))),
                Err(known) => outcome(known),
            })
            .collect()
    }

    async fn admit(&self, ext: &jsonrpsee::Extensions, hex_tx: &str) -> Result<SendTxResult, AdmitError> {
        let (tx, bytes) = self.decode(hex_tx)?;
        // A branch's transaction: forwarded to its producers by a node that does not produce it,
        // else (or when none answers) admitted to the branch's pool and gossiped on its topic.
        if let Some(held) = self.branch_for(ext, &tx)? {
            if !held.producing {
                if let Some(answer) = self.forward(&tx, &held.view).await {
                    return answer;
                }
            }
            return Ok(self.admit_to(&held.pool, tx, bytes).await?.into());
        }
        if self.facts.producer.is_none() {
            if let Some(answer) = self.forward(&tx, &self.view).await {
                return answer;
            }
        }
        Ok(self.admit_to(&self.pool, tx, bytes).await?.into())
    }

    /// Admits `tx` to `pool` and, on a network, gossips it on that pool's topic.
    async fn admit_to(
        &self,
        pool: &PoolHandle,
        tx: Transaction,
        bytes: usize,
    ) -> Result<aergo_mempool::Admitted, AdmitError> {
        let encoded = self.net_commands.as_ref().map(|_| tx.encode());
        let admitted = pool.admission.submit(tx, bytes).await?;
        if let Some(encoded) = encoded {
            pool.gossip_tx(encoded);
        }
        Ok(admitted)
    }
}

#[async_trait]
impl AergoApiServer for RpcHandler {
    async fn repositories(&self, ext: &jsonrpsee::Extensions) -> RpcResult<Vec<aergo_api::RepositoryView>> {
        let Some(hosting) = &self.hosting else { return Ok(Vec::new()) };
        // A private repository is not named to whoever asks: only to the box's own clients.
        let admin = self.check_admin(ext).is_ok();
        Ok(hosting
            .hosted()
            .iter()
            .filter(|h| admin || !h.handler.as_ref().is_some_and(|r| r.view.genesis.is_private()))
            .map(Hosted::view)
            .collect())
    }

    async fn admin_add_repository(
        &self,
        ext: &jsonrpsee::Extensions,
        request: aergo_api::AddRepository,
    ) -> RpcResult<aergo_api::RepositoryView> {
        self.check_admin(ext)?;
        let hosting = self.hosting.as_ref().ok_or_else(|| {
            invalid_params("repositories are added on the node's own path (/), not a repository's")
        })?;
        let name = hosting.clone().add(request).await.map_err(invalid_params)?;
        hosting
            .hosted()
            .iter()
            .find(|h| h.name == name)
            .map(Hosted::view)
            .ok_or_else(|| internal(format!("repository {name:?} was added but is not hosted")))
    }

    async fn admin_remove_repository(
        &self,
        ext: &jsonrpsee::Extensions,
        name: String,
        keep_data: Option<bool>,
    ) -> RpcResult<()> {
        self.check_admin(ext)?;
        let hosting = self.hosting.as_ref().ok_or_else(|| {
            invalid_params("repositories are removed on the node's own path (/), not a repository's")
        })?;
        hosting.clone().remove(name, keep_data.unwrap_or(true)).await.map_err(invalid_params)
    }

    async fn chain_info(&self, ext: &jsonrpsee::Extensions, branch: Option<String>) -> RpcResult<ChainInfo> {
        let On { view, pool } = self.on(Some(ext), branch.as_deref())?;
        let head = view.head();
        let consensus = view.consensus.read().clone();
        let on_main = view.branch == MAIN_BRANCH;
        let mempool_txs = pool.mempool.lock().len() as u64;
        Ok(ChainInfo {
            chain_id: view.chain_id.clone(),
            branch: view.branch.clone(),
            genesis_hash: view.genesis_hash,
            height: head.height,
            best_hash: head.hash,
            best_timestamp_ms: head.timestamp_ms,
            lib_height: consensus.lib_height,
            producer_count: if on_main && view.genesis.consensus.kind.is_dpos() {
                view.genesis.producers.len() as u32
            } else if let Some(raft) = &consensus.raft {
                raft.voters.len() as u32
            } else {
                view.schedule.producers(head.height + 1).map_or(0, |s| s.len() as u32)
            },
            block_interval_ms: view.genesis.consensus.block_interval_ms,
            mempool_txs,
            syncing: consensus.syncing,
            // A branch's blocks do not travel between nodes yet.
            peers: if on_main { self.net.get().map_or(0, |n| n.peers.read().len() as u32) } else { 0 },
            best_known_height: consensus.best_known_height.max(head.height),
            consensus: view.genesis.consensus.kind.name().into(),
            raft: consensus.raft,
        })
    }

    async fn node_info(&self) -> RpcResult<NodeInfo> {
        Ok(NodeInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            peer_id: self.facts.peer_id.clone(),
            role: if self.facts.producer.is_some() { "producer" } else { "full" }.to_string(),
            producer_address: self.facts.producer,
            data_dir: self.facts.data_dir.display().to_string(),
            uptime_s: self.facts.started.elapsed().as_secs(),
            block_log_io_uring: self.facts.io_uring,
            exec_cores: self.facts.exec_cores.clone(),
            pid: std::process::id(),
            node_key: hex::encode(self.facts.node_key.0),
            p2p_listen: self.net.get().map(|n| n.listen.read().clone()).unwrap_or_default(),
            bootstrap: self.net.get().map(|n| n.bootstrap.read().clone()).unwrap_or_default(),
        })
    }

    async fn node_metrics(&self) -> RpcResult<NodeMetrics> {
        use std::sync::atomic::Ordering::Relaxed;
        let (mempool_txs, mempool_bytes) = {
            let pool = self.pool.mempool.lock();
            (pool.len() as u64, pool.bytes() as u64)
        };
        let p = &self.view.production;
        let produce = StageMetrics {
            name: "produce".into(),
            queue_depth: mempool_txs,
            queue_capacity: self.pool.capacity as u64,
            processed_total: p.txs.load(Relaxed),
            busy_rejections_total: 0,
            busy_ms_total: p.busy_ns.load(Relaxed) / 1_000_000,
        };
        let admission =
            self.pool.admission.stats.snapshot("admission", self.pool.admission.capacity() as u64);
        let import = self.view.import.snapshot("import", aergo_chain::view::IMPORT_QUEUE);
        // Verification and execution run back to back on the chain thread; commit has a queue
        // in a pipelined run of blocks (sync), empty otherwise.
        let t = &self.view.stage_times;
        let sequential =
            |name: &str, processed: &std::sync::atomic::AtomicU64, ns: &std::sync::atomic::AtomicU64| {
                StageMetrics {
                    name: name.into(),
                    queue_depth: 0,
                    queue_capacity: 0,
                    processed_total: processed.load(Relaxed),
                    busy_rejections_total: 0,
                    busy_ms_total: ns.load(Relaxed) / 1_000_000,
                }
            };
        let chain_stages = [
            sequential("verify", &t.verified_txs, &t.verify_ns),
            sequential("execute", &t.executed_txs, &t.execute_ns),
            StageMetrics {
                queue_depth: t.commit_queue.load(Relaxed),
                queue_capacity: aergo_chain::COMMIT_QUEUE as u64,
                ..sequential("commit", &t.committed_blocks, &t.commit_ns)
            },
        ];
        let (depth, capacity, busy_ms) = self.queries.stage();
        let queries = self.queries.usage();
        let query = StageMetrics {
            name: "query".into(),
            queue_depth: depth,
            queue_capacity: capacity,
            processed_total: queries.queries_run_total,
            busy_rejections_total: queries.queries_rejected_total,
            busy_ms_total: busy_ms,
        };
        Ok(NodeMetrics {
            stages: [vec![admission, produce, import], chain_stages.to_vec(), vec![query]].concat(),
            queries,
            mempool_txs,
            mempool_bytes,
            blocks_produced_total: p.blocks.load(Relaxed),
            slots_missed_total: p.missed_slots.load(Relaxed),
            producer_blocked: p.blocked.read().clone(),
            slots_skipped_total: self.view.consensus.read().skipped_slots,
            reorgs_total: self.view.consensus.read().reorgs,
            equivocations_total: self.view.consensus.read().equivocations,
            gossip_bytes_out_total: self.net.get().map_or(0, |n| n.gossip_bytes_out.load(Relaxed)),
            gossip_block_bytes_in_total: self.net.get().map_or(0, |n| n.gossip_blocks_in.load(Relaxed)),
            gossip_tx_bytes_in_total: self.net.get().map_or(0, |n| n.gossip_txs_in.load(Relaxed)),
            gossip_topics: self.net.get().map(|n| n.topics.read().clone()).unwrap_or_default(),
            private_block_announcements_total: self
                .net
                .get()
                .map_or(0, |n| n.private_announced.load(Relaxed)),
            peers_banned_total: self.net.get().map_or(0, |n| n.banned_total.load(Relaxed)),
            signatures_skipped_total: t.signatures_skipped.load(Relaxed),
            compact_blocks_in_total: self.net.get().map_or(0, |n| n.compact_blocks_in.load(Relaxed)),
            compact_txs_missing_total: self.net.get().map_or(0, |n| n.compact_txs_missing.load(Relaxed)),
            compact_fallbacks_total: self.net.get().map_or(0, |n| n.compact_fallbacks.load(Relaxed)),
            compact_fill_bytes_in_total: self.net.get().map_or(0, |n| n.compact_fill_bytes_in.load(Relaxed)),
            last_block_ms: p.last_block_ms.load(Relaxed),
            next_slot_ms: Some(p.next_slot_ms.load(Relaxed))
                .filter(|ms| *ms > 0 && self.facts.producer.is_some()),
            state_cache: cache_view(self.view.store.cache_usage()),
            rpc_rate_limited_total: self.refusals.rate_limited.load(Relaxed),
            rpc_origin_refused_total: self.refusals.origin_refused.load(Relaxed),
        })
    }

    async fn peers(&self) -> RpcResult<Vec<PeerView>> {
        let Some(net) = self.net.get() else { return Ok(Vec::new()) };
        let peers = net.peers.read();
        Ok(peers
            .iter()
            .map(|(id, p)| PeerView {
                peer_id: id.to_string(),
                address: p.address.clone(),
                best_height: p.status.as_ref().map_or(0, |s| s.height),
            })
            .collect())
    }

    async fn send_tx(&self, ext: &jsonrpsee::Extensions, tx: String) -> RpcResult<SendTxResult> {
        read_only(ext)?;
        self.admit(ext, &tx).await.map_err(rejected)
    }

    async fn send_txs(&self, ext: &jsonrpsee::Extensions, txs: Vec<String>) -> RpcResult<Vec<SendTxOutcome>> {
        read_only(ext)?;
        if txs.len() > self.max_batch {
            return Err(invalid_params(format!(
                "{} transactions, more than the limit of {}",
                txs.len(),
                self.max_batch
            )));
        }
        Ok(self.submit_many(ext, txs.iter().map(|t| self.decode(t)).collect()).await)
    }

    async fn get_tx(
        &self,
        ext: &jsonrpsee::Extensions,
        hash: String,
        branch: Option<String>,
    ) -> RpcResult<Option<TxView>> {
        let hash = parse_hash(&hash)?;
        let On { view, pool } = self.on(Some(ext), branch.as_deref())?;
        if let Some(tx) = pool.mempool.lock().get(&hash) {
            return Ok(Some(tx_view(&tx, None)));
        }
        let Some(loc) = view.store.tx_location(&hash).map_err(internal)? else { return Ok(None) };
        let block = view.read_block(loc.height).map_err(internal)?;
        Ok(block
            .and_then(|b| b.transactions.get(loc.index as usize).cloned())
            .map(|tx| tx_view(&tx, Some((loc.height, loc.block_hash, loc.index)))))
    }

    async fn get_receipt(
        &self,
        ext: &jsonrpsee::Extensions,
        hash: String,
        branch: Option<String>,
    ) -> RpcResult<Option<ReceiptView>> {
        let hash = parse_hash(&hash)?;
        let view = self.on(Some(ext), branch.as_deref())?.view;
        let Some(loc) = view.store.tx_location(&hash).map_err(internal)? else { return Ok(None) };
        let status = &loc.receipt.status;
        let events = self.event_views(&view, &loc).map_err(internal)?;
        Ok(Some(ReceiptView {
            tx_hash: hash,
            status: if status.is_success() { "success" } else { "failed" }.to_string(),
            block_height: loc.height,
            block_hash: loc.block_hash,
            index: loc.index,
            fee: loc.receipt.fee,
            error: status.error().map(str::to_string),
            result: status.result().map(|r| query_view(r.columns.clone(), &r.rows)),
            merged_by: loc.merged_by,
            events,
        }))
    }

    async fn get_contract(
        &self,
        ext: &jsonrpsee::Extensions,
        address: String,
        height: Option<u64>,
        branch: Option<String>,
    ) -> RpcResult<ContractView> {
        use aergo_sql::access::{describe, function_access};
        let address = Address::parse(&address).map_err(|e| invalid_params(e.to_string()))?;
        let (_, at, script, compiled) = self.contract_at(&address, height, branch.as_deref(), ext)?;
        let c = &compiled.interpreted;
        let tables = c
            .tables
            .iter()
            .map(|t| ContractTableView {
                name: t.name.clone(),
                columns: t
                    .columns
                    .iter()
                    .map(|col| {
                        format!(
                            "{} {}{}{}",
                            col.name,
                            col.ty,
                            if col.not_null { " NOT NULL" } else { "" },
                            if col.hidden { " (hidden: the table has no PRIMARY KEY)" } else { "" }
                        )
                    })
                    .collect(),
                primary_key: t.pk.iter().map(|&i| t.columns[i].name.clone()).collect(),
                indexes: t
                    .indexes
                    .iter()
                    .map(|&ix| {
                        let idx = &c.indexes[ix];
                        let cols: Vec<String> = idx
                            .columns
                            .iter()
                            .zip(&idx.desc)
                            .map(|(&i, &d)| format!("{}{}", t.columns[i].name, if d { " DESC" } else { "" }))
                            .collect();
                        format!(
                            "{}{} ({})",
                            if idx.unique { "UNIQUE " } else { "" },
                            idx.name,
                            cols.join(", ")
                        )
                    })
                    .collect(),
            })
            .collect();
        let functions = c
            .functions
            .iter()
            .map(|f| {
                let a = function_access(c, f);
                ContractFunctionView {
                    name: f.name.clone(),
                    params: f.params.iter().map(|(n, t)| format!("{n} {t}")).collect(),
                    returns: match &f.returns {
                        aergo_sql::ir::Returns::Void => "VOID".into(),
                        aergo_sql::ir::Returns::Scalar(t) => t.to_string(),
                        aergo_sql::ir::Returns::Rows => "TABLE".into(),
                    },
                    reads: a.reads.iter().map(|(t, x)| describe(c, f, *t, x)).collect(),
                    writes: a.writes.iter().map(|(t, x)| describe(c, f, *t, x)).collect(),
                    moves_native: a.native,
                }
            })
            .collect();
        let events = c
            .events
            .iter()
            .map(|e| aergo_api::ContractEventView {
                name: e.name.clone(),
                params: e.params.iter().map(|(n, t)| format!("{n} {t}")).collect(),
            })
            .collect();
        let code_hash = Hash(*blake3::hash(script.as_bytes()).as_bytes());
        Ok(ContractView { address, height: at, code_hash, tables, functions, events, script })
    }

    async fn query(&self, ext: &jsonrpsee::Extensions, request: QueryRequest) -> RpcResult<QueryView> {
        use aergo_sql::SqlError;
        let view = self.on(Some(ext), request.branch.as_deref())?.view;
        let at = height_or_head(&view, request.height)?;
        let args = request
            .args
            .iter()
            .map(aergo_sql::json::from_json)
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid_params)?;
        if request.sql.is_some() == request.function.is_some() {
            return Err(invalid_params("give either sql or function"));
        }
        let conn = ext.get::<jsonrpsee::ConnectionId>().map_or(0, |c| c.0);
        let pool = self.queries.clone();
        let (answer, answered) = tokio::sync::oneshot::channel();
        let answer = Arc::new(parking_lot::Mutex::new(Some(answer)));
        let busy_answer = answer.clone();
        let heavy = {
            use aergo_exec::query::{is_heavy, Request};
            let req = match (&request.sql, &request.function) {
                (Some(sql), _) => Request::Sql(sql),
                (_, f) => Request::Function(f.as_deref().unwrap_or_default(), Vec::new()),
            };
            is_heavy(&view.store, &request.contract, at, &req)
        };
        let work = Box::new(move || {
            use aergo_exec::query::{run, Request};
            let req = match (&request.sql, &request.function) {
                (Some(sql), None) => Request::Sql(sql),
                (None, Some(f)) => Request::Function(f, args),
                _ => return,
            };
            // The deadline counts from when the query starts, not from when it was queued.
            let budget = aergo_sql::Gas::new(pool.gas).with_deadline(pool.timeout);
            let result = run(&view.store, &request.contract, at, req, budget);
            if matches!(result, Err(SqlError::OutOfGas(_) | SqlError::Deadline(_))) {
                pool.count_stopped();
            }
            if let Some(a) = answer.lock().take() {
                let _ = a.send(Ok(result));
            }
        });
        let on_busy = Box::new(move |r: queries::Refused| {
            if let Some(a) = busy_answer.lock().take() {
                let _ = a.send(Err(r));
            }
        });
        let _abandon_if_dropped = self.queries.submit(conn, heavy, work, on_busy).map_err(busy)?;
        let result = match answered.await {
            Ok(Ok(result)) => result,
            Ok(Err(refused)) => return Err(busy(refused)),
            Err(_) => return Err(internal("the query thread ended without an answer")),
        };
        match result {
            Ok(r) => Ok(query_view(r.columns, &r.rows)),
            Err(SqlError::OutOfGas(limit)) => Err(ErrorObjectOwned::owned(
                codes::QUERY_LIMIT,
                format!("the query used all of its {limit} gas ([rpc] query_gas): narrow it with WHERE on a key or an index, or LIMIT"),
                Some(serde_json::json!({ "limit": "gas" })),
            )),
            Err(SqlError::Deadline(ms)) => Err(ErrorObjectOwned::owned(
                codes::QUERY_LIMIT,
                format!("the query ran {ms} ms, its deadline ([rpc] query_timeout_ms), and was stopped"),
                Some(serde_json::json!({ "limit": "deadline" })),
            )),
            Err(SqlError::Storage(e)) => Err(internal(e)),
            Err(e) => Err(invalid_params(e.to_string())),
        }
    }

    async fn get_raw_block(
        &self,
        ext: &jsonrpsee::Extensions,
        height: Option<u64>,
        branch: Option<String>,
    ) -> RpcResult<Option<RawBlockView>> {
        let view = self.on(Some(ext), branch.as_deref())?.view;
        let height = height.unwrap_or_else(|| view.head().height);
        let block = block_at(&view, height)?;
        Ok(block.map(|b| RawBlockView { hash: b.hash(), height, block: hex::encode(b.encode()) }))
    }

    async fn get_block(
        &self,
        ext: &jsonrpsee::Extensions,
        height: Option<u64>,
        hash: Option<String>,
        full: Option<bool>,
        branch: Option<String>,
    ) -> RpcResult<Option<BlockView>> {
        let view = self.on(Some(ext), branch.as_deref())?.view;
        let height = match (height, hash) {
            (Some(_), Some(_)) => return Err(invalid_params("give height or hash, not both")),
            (Some(h), None) => h,
            (None, Some(text)) => {
                let hash = parse_hash(&text)?;
                match view.store.height_of(&hash).map_err(internal)? {
                    Some(h) => h,
                    None => return Ok(None),
                }
            }
            (None, None) => view.head().height,
        };
        let block = block_at(&view, height)?;
        Ok(block.map(|b| block_view(&b, full.unwrap_or(false))))
    }

    async fn get_account(
        &self,
        ext: &jsonrpsee::Extensions,
        address: String,
        height: Option<u64>,
        branch: Option<String>,
    ) -> RpcResult<AccountView> {
        let address = Address::parse(&address).map_err(|e| invalid_params(e.to_string()))?;
        let On { view, pool } = self.on(Some(ext), branch.as_deref())?;
        let head = view.head().height;
        let at = height_or_head(&view, height)?;
        let account = view.store.account_at(&address, at).map_err(internal)?;
        let pending_nonce =
            if at == head { pool.mempool.lock().pending_nonce(&address, &account) } else { account.nonce };
        Ok(AccountView { address, balance: account.balance, nonce: account.nonce, pending_nonce, height: at })
    }

    async fn producers(&self, height: Option<u64>) -> RpcResult<ProducersView> {
        use aergo_exec::governance::Records;
        let schedule = &self.view.schedule;
        let head = self.view.head().height;
        let height = height.unwrap_or(head + 1).max(1);
        let epoch = schedule.epoch_of(height);
        let epoch_blocks = self.view.genesis.consensus.epoch_blocks;
        let next_epoch_height = (epoch + 1) * epoch_blocks + 1;
        let addresses = |keys: &[aergo_primitives::types::PublicKey]| {
            keys.iter().map(|k| k.address()).collect::<Vec<_>>()
        };
        let next_known = schedule.election_height(epoch + 1).is_some_and(|h| h <= head);
        let store = &self.view.store;
        let candidates = Records(|key: &[u8]| store.get_at(key, head))
            .candidates()
            .map_err(internal)?
            .into_iter()
            .map(|(k, c)| CandidateView {
                address: k.address(),
                public_key: hex::encode(k.0),
                p2p_address: c.p2p_address,
                votes: c.votes,
                registered_at: c.registered_at,
            })
            .collect();
        Ok(ProducersView {
            height,
            epoch,
            epoch_blocks,
            next_epoch_height,
            producers: addresses(&schedule.producers(height).map_err(internal)?),
            next_producers: if next_known {
                addresses(&schedule.producers(next_epoch_height).map_err(internal)?)
            } else {
                Vec::new()
            },
            candidates,
        })
    }

    async fn get_stake(&self, address: String) -> RpcResult<StakeView> {
        use aergo_exec::governance::Records;
        let address = Address::parse(&address).map_err(|e| invalid_params(e.to_string()))?;
        let head = self.view.head().height;
        let store = &self.view.store;
        let mut records = Records(|key: &[u8]| store.get_at(key, head));
        let stake = records.stake(&address).map_err(internal)?.unwrap_or_default();
        let votes = records.votes(&address).map_err(internal)?;
        Ok(StakeView {
            address,
            staked: stake.amount,
            since: stake.since,
            unlocks_at: stake.since + self.view.genesis.consensus.unstake_lock_blocks,
            votes: votes.iter().map(|k| k.address()).collect(),
        })
    }

    async fn get_branches(&self) -> RpcResult<Vec<BranchView>> {
        let records = self.records_everywhere(|v| records_at_head(v).branches(), |r| &r.name)?;
        records.into_iter().map(|(r, _)| self.branch_view(r)).collect()
    }

    async fn get_branch(&self, name: String) -> RpcResult<BranchView> {
        let record = self
            .find_branch(&name)
            .map_err(internal)?
            .ok_or_else(|| invalid_params(format!("no branch {name:?} on this chain")))?;
        self.branch_view(record)
    }

    async fn track_branch(&self, name: String) -> RpcResult<BranchView> {
        if let Some(why) = aergo_primitives::refs::name_problem(&name, MAIN_BRANCH) {
            return Err(invalid_params(format!("branch {name:?}: {why}")));
        }
        let record = self
            .find_branch(&name)
            .map_err(internal)?
            .ok_or_else(|| invalid_params(format!("no branch {name:?} on this chain")))?;
        let parent = match self.branches.get(&record.parent) {
            Some(held) => held.view.clone(),
            None => self.view.clone(),
        };
        if let Some(members) = branch_members(&parent, &name)? {
            if !members.contains(&self.facts.node_key) {
                return Err(invalid_params(format!(
                    "branch {name:?} is private: this node (node key {}) is not one of its members, \
                     so it cannot hold it",
                    hex::encode(self.facts.node_key.0)
                )));
            }
        }
        self.branches.track(&name).map_err(|e| internal(format!("cannot keep the tracked branch: {e}")))?;
        tracing::info!(branch = %name, "tracking a branch");
        self.branch_view(record)
    }

    async fn get_tags(&self) -> RpcResult<Vec<TagView>> {
        let records = self.records_everywhere(|v| records_at_head(v).tags(), |r| &r.name)?;
        records.into_iter().map(|(r, on)| self.tag_view(r, &on)).collect()
    }

    async fn diff(
        &self,
        ext: &jsonrpsee::Extensions,
        from: PointView,
        to: PointView,
        limit: Option<u32>,
    ) -> RpcResult<DiffView> {
        let point = |p: &PointView| -> RpcResult<diff::Point> {
            let view = self.on(Some(ext), Some(&p.branch))?.view;
            let height = height_or_head(&view, Some(p.height))?;
            Ok(diff::Point { view, height })
        };
        let (a, b) = (point(&from)?, point(&to)?);
        let limit = limit.map_or(1_000, |l| l as usize).min(diff::MAX_ENTRIES);
        tokio::task::spawn_blocking(move || diff::diff(&a, &b, limit)).await.map_err(internal)?.map_err(|e| {
            match e {
                aergo_storage::StateError::ChangeIndex { .. }
                | aergo_storage::StateError::TooManyChanges { .. } => invalid_params(e.to_string()),
                e => internal(e),
            }
        })
    }

    async fn get_account_proof(
        &self,
        ext: &jsonrpsee::Extensions,
        address: String,
        height: Option<u64>,
        branch: Option<String>,
    ) -> RpcResult<aergo_api::StateProofView> {
        let address = Address::parse(&address).map_err(|e| invalid_params(e.to_string()))?;
        let view = self.on(Some(ext), branch.as_deref())?.view;
        let at = height_or_head(&view, height)?;
        let block = proven_block(&view, at)?;
        let key = aergo_storage::account_key(&address);
        let (value, proof) = view.store.proof_bytes(&key, at).map_err(internal)?;
        let account = match &value {
            Some(bytes) => {
                let a = aergo_storage::state::decode_account(Some(bytes.clone())).map_err(internal)?;
                Some(aergo_api::ProvenAccount { balance: a.balance, nonce: a.nonce })
            }
            None => None,
        };
        Ok(aergo_api::StateProofView {
            subject: aergo_api::ProofSubject::Account { address, account },
            height: at,
            block,
            entries: vec![proof_entry(&key, value.as_deref(), &proof)],
        })
    }

    async fn get_row_proof(
        &self,
        ext: &jsonrpsee::Extensions,
        contract: String,
        table: String,
        key: Vec<serde_json::Value>,
        height: Option<u64>,
        branch: Option<String>,
    ) -> RpcResult<aergo_api::StateProofView> {
        use aergo_sql::store::{code_key, row_columns, row_state_key};
        let contract = Address::parse(&contract).map_err(|e| invalid_params(e.to_string()))?;
        let (view, at, _, compiled) = self.contract_at(&contract, height, branch.as_deref(), ext)?;
        let values = key
            .iter()
            .map(aergo_sql::json::from_json)
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid_params)?;
        let ir = &compiled.interpreted;
        let row_key =
            row_state_key(ir, &contract, &table, &values).map_err(|e| invalid_params(e.to_string()))?;
        let block = proven_block(&view, at)?;
        let code_key = code_key(&contract);
        let (code, code_proof) = view.store.proof_bytes(&code_key, at).map_err(internal)?;
        let (value, proof) = view.store.proof_bytes(&row_key, at).map_err(internal)?;
        let row = match &value {
            Some(bytes) => Some(
                row_columns(ir, &table, bytes)
                    .map_err(internal)?
                    .into_iter()
                    .map(|(c, v)| (c, aergo_sql::json::to_json(&v)))
                    .collect(),
            ),
            None => None,
        };
        Ok(aergo_api::StateProofView {
            subject: aergo_api::ProofSubject::Row { contract, table, key, row },
            height: at,
            block,
            entries: vec![
                proof_entry(&code_key, code.as_deref(), &code_proof),
                proof_entry(&row_key, value.as_deref(), &proof),
            ],
        })
    }

    async fn get_events(
        &self,
        ext: &jsonrpsee::Extensions,
        filter: aergo_api::EventFilter,
    ) -> RpcResult<aergo_api::EventPage> {
        let view = self.on(Some(ext), filter.branch.as_deref())?.view;
        let head = view.head().height;
        self.events_page(view, &filter, head).await
    }

    async fn subscribe_events(
        &self,
        pending: PendingSubscriptionSink,
        filter: aergo_api::EventFilter,
    ) -> SubscriptionResult {
        let view = match self.on(None, filter.branch.as_deref()) {
            Ok(on) => on.view,
            Err(e) => {
                pending.reject(e).await;
                return Ok(());
            }
        };
        // A bad filter is refused before the subscription starts.
        let mut filter = filter;
        if let (Some(from), Some(to)) = (filter.from, filter.to) {
            if from > to {
                pending.reject(invalid_params(format!("from {from} is above to {to}"))).await;
                return Ok(());
            }
        }
        let head = view.head().height;
        let probe = aergo_api::EventFilter {
            limit: Some(1),
            to: Some(filter.to.unwrap_or(head).max(filter.from.unwrap_or(0))),
            ..filter.clone()
        };
        if let Err(e) = self.events_page(view.clone(), &probe, u64::MAX).await {
            pending.reject(e).await;
            return Ok(());
        }
        let mut rx = view.blocks.subscribe();
        let sink = pending.accept().await?;
        filter.limit = Some(1_000);
        let end = filter.to;
        loop {
            let lib = view.consensus.read().lib_height;
            let upto = end.map_or(lib, |t| t.min(lib));
            if filter.from.unwrap_or(0) <= upto {
                loop {
                    let page = match self.events_page(view.clone(), &filter, upto).await {
                        Ok(page) => page,
                        Err(e) => {
                            tracing::debug!(error = %e.message(), "event subscription ended");
                            return Ok(());
                        }
                    };
                    for e in &page.events {
                        if sink.send(serde_json::value::to_raw_value(e)?).await.is_err() {
                            return Ok(());
                        }
                        filter.after = Some(format!("{}:{}:{}", e.block_height, e.tx_index, e.event_index));
                    }
                    if page.next.is_none() {
                        break;
                    }
                }
                // Everything up to `upto` was sent: the next pass starts above it (the cursor
                // still orders events within a block).
                filter.from = Some(upto + 1);
            }
            if end.is_some_and(|t| lib >= t) {
                break;
            }
            tokio::select! {
                _ = sink.closed() => break,
                _ = rx.recv() => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
        }
        Ok(())
    }

    async fn estimate_gas(
        &self,
        ext: &jsonrpsee::Extensions,
        tx: String,
    ) -> RpcResult<aergo_api::EstimateView> {
        let (tx, _) = self.decode(&tx).map_err(|e| invalid_params(e.to_string()))?;
        let (view, pool) = match self.branch_for(ext, &tx).map_err(|e| invalid_params(e.to_string()))? {
            Some(held) => (held.view.clone(), held.pool.clone()),
            None => (self.view.clone(), self.pool.clone()),
        };
        let outcome = tokio::task::spawn_blocking(move || {
            let ctx = pool.admission.next_context(&view.store);
            let outcome = pool.mempool.lock().estimate(&tx, &ctx, &*view.store);
            (outcome, view)
        })
        .await
        .map_err(internal)?;
        let (outcome, view) = outcome;
        let receipt = match outcome.map_err(internal)? {
            aergo_exec::TxOutcome::Applied { receipt, .. } => receipt,
            aergo_exec::TxOutcome::Invalid(why) => {
                return Err(invalid_params(format!("the transaction would not be admitted now: {why}")))
            }
        };
        let status = &receipt.status;
        let head = view.head().height;
        let events = status
            .events()
            .iter()
            .map(|e| aergo_api::EventView {
                index: None,
                contract: e.contract,
                name: e.name.clone(),
                args: named_args(&view, e, head),
                reverted: !status.is_success(),
            })
            .collect();
        Ok(aergo_api::EstimateView {
            status: if status.is_success() { "success" } else { "failed" }.to_string(),
            fee: receipt.fee,
            error: status.error().map(str::to_string),
            result: status.result().map(|r| query_view(r.columns.clone(), &r.rows)),
            events,
        })
    }

    async fn get_tag(&self, name: String) -> RpcResult<TagView> {
        let (record, on) = self
            .find_record::<aergo_exec::branches::TagRecord>(&aergo_exec::branches::tag_key(&name))
            .map_err(internal)?
            .ok_or_else(|| invalid_params(format!("no tag {name:?} on this chain")))?;
        self.tag_view(record, &on)
    }

    async fn subscribe_blocks(
        &self,
        pending: PendingSubscriptionSink,
        branch: Option<String>,
    ) -> SubscriptionResult {
        let view = match self.on(None, branch.as_deref()) {
            Ok(on) => on.view,
            Err(e) => {
                pending.reject(e).await;
                return Ok(());
            }
        };
        let mut rx = view.blocks.subscribe();
        let sink = pending.accept().await?;
        loop {
            tokio::select! {
                _ = sink.closed() => break,
                next = rx.recv() => match next {
                    Ok(block) => {
                        let msg = serde_json::value::to_raw_value(&block_view(&block, false))?;
                        if sink.send(msg).await.is_err() {
                            break;
                        }
                    }
                    // A slow subscriber misses blocks rather than holding memory; it can fetch them.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "block subscriber lagged");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        Ok(())
    }
}

impl listen::BinaryTxs for RpcHandler {
    fn submit(
        &self,
        ext: jsonrpsee::Extensions,
        body: hyper::body::Bytes,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, ErrorObjectOwned>> + Send + '_>>
    {
        Box::pin(async move {
            read_only(&ext)?;
            let frames =
                aergo_api::frames::split(&body, self.max_batch).map_err(|e| invalid_params(e.to_string()))?;
            let txs = frames.into_iter().map(|frame| self.decode_bytes(frame)).collect();
            let answers = self.submit_many(&ext, txs).await;
            serde_json::to_string(&answers).map_err(internal)
        })
    }
}

/// Starts the JSON-RPC listeners (`listen`): the plain one and, with `[rpc.tls]`, the TLS one
/// (`tls_files`: its certificate and key, resolved against the data directory).
pub async fn serve(
    handler: RpcHandler,
    routes: Arc<listen::Routes>,
    config: &RpcConfig,
    tls_files: Option<(std::path::PathBuf, std::path::PathBuf)>,
) -> Result<listen::Listening, RpcError> {
    let refusals = handler.refusals.clone();
    let binary: Arc<dyn listen::BinaryTxs> = Arc::new(handler.clone());
    Ok(listen::serve(handler.into_rpc().into(), Some(binary), routes, config, tls_files, refusals).await?)
}

/// Refuses a write from a private repository's `read` member (`docs/repositories.md`).
fn read_only(ext: &jsonrpsee::Extensions) -> RpcResult<()> {
    match ext.get::<listen::Member>() {
        Some(m) if !m.role.may_write() => Err(ErrorObjectOwned::owned(
            codes::ACCESS_DENIED,
            "read-only member: a read member cannot send transactions",
            None::<()>,
        )),
        _ => Ok(()),
    }
}

/// A `get_events` cursor: `height:tx:event`.
fn parse_cursor(c: &str) -> Option<aergo_storage::state::EventPos> {
    let mut parts = c.split(':');
    let pos = aergo_storage::state::EventPos {
        height: parts.next()?.parse().ok()?,
        tx: parts.next()?.parse().ok()?,
        event: parts.next()?.parse().ok()?,
    };
    parts.next().is_none().then_some(pos)
}

/// An event's arguments by the names its contract declares (its script at `height`; `argN` for
/// an argument it does not name).
fn named_args(
    view: &ChainView,
    e: &aergo_primitives::types::Event,
    height: u64,
) -> serde_json::Map<String, serde_json::Value> {
    let declared = aergo_exec::query::load(&view.store, &e.contract, height)
        .ok()
        .and_then(|(_, c)| c.interpreted.events.iter().find(|d| d.name == e.name).cloned());
    e.args
        .iter()
        .enumerate()
        .map(|(j, v)| {
            let name = declared
                .as_ref()
                .and_then(|d| d.params.get(j))
                .map_or_else(|| format!("arg{j}"), |(n, _)| n.clone());
            (name, aergo_sql::json::to_json(v))
        })
        .collect()
}
