//! The branches a node holds besides `main` (`docs/branches.md`).
//!
//! ```text
//!  [branches] track + <data_dir>/branches/tracked ──► Branches (tracked names, why each waits)
//!                                                        │ watcher thread, every 500 ms
//!  main's state at its LIB: the branch's record ─────────┤ record final → open
//!                                                        ▼
//!  <data_dir>/branches/<id>/{state,blocks,BRANCH}  Chain::open_branch over the parent's store
//!        ├─ a pool (admission, one verifier thread) for the branch's transactions
//!        ├─ a chain thread (consensus::Driver) that produces in this node's slots of the
//!        │  branch's producer set (one producer: final at once)
//!        ├─ a ChainView (blocks at or below the base read from the parent's)
//!        └─ NetCommand::OpenBranch: the net task subscribes to the branch's topics, answers
//!           `branch-sync` from the view, and hands peers' blocks and statuses to the chain
//!           thread and their transactions to the pool
//! ```
//! A branch is opened only from a record in its parent's *final* state: the block holding the
//! record is final, and it descends from the base, so the base can never be reorganised away under
//! the branch. A tracked branch that cannot be opened yet says why (`get_branch` shows it as
//! `waiting`); one whose opening failed is tried again every 30 s.

use aergo_chain::view::{BranchHandle, Branches, ChainView, PoolHandle};
use aergo_chain::{BranchSpec, Chain};
use aergo_config::genesis::Genesis;
use aergo_config::NodeConfig;
use aergo_consensus::{Driver, DriverConfig};
use aergo_exec::branches::{branch_key, BranchRecord};
use aergo_exec::governance::Records;
use aergo_mempool::admission::Admission;
use aergo_mempool::Mempool;
use aergo_net::{BranchLink, NetCommand};
use aergo_primitives::crypto::Keypair;
use aergo_primitives::types::{Hash, PublicKey};
use aergo_storage::{LogOptions, StateOptions};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the watcher looks for tracked branches to open.
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// How long after a failed opening the watcher tries again.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// The most a branch's store caches of recently written values.
const BRANCH_CACHE_BYTES: u64 = 64 << 20;

/// What opening a branch needs from the node's config.
struct Settings {
    data_dir: PathBuf,
    genesis: Genesis,
    log: LogOptions,
    state: StateOptions,
    key: Option<Keypair>,
    /// The node's identity key: a private branch is held only by its member nodes.
    identity: aergo_primitives::types::PublicKey,
    mempool: aergo_config::MempoolConfig,
    admission_queue: usize,
    max_clock_drift_ms: u64,
    require_clock_sync: bool,
    doppelganger_slots: u64,
    /// The net task, when the node is on a network.
    net: Option<tokio::sync::mpsc::Sender<NetCommand>>,
}

/// One open branch: its chain thread and its pool.
struct Open {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
    pool: Arc<PoolHandle>,
}

struct Shared {
    settings: Settings,
    main: Arc<ChainView>,
    branches: Arc<Branches>,
    open: Mutex<HashMap<String, Open>>,
    failed: Mutex<HashMap<String, Instant>>,
    stop: AtomicBool,
}

/// The branches this node holds, and the thread that opens tracked ones.
pub struct BranchHost {
    shared: Arc<Shared>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

/// The directory of a branch's chain: the first 16 hex digits of a hash of its name, so that `/`
/// in a name makes no directories.
pub fn branch_dir(data_dir: &Path, name: &str) -> PathBuf {
    let id = Hash::domain("aergo/branch-dir", name.as_bytes()).to_string();
    data_dir.join("branches").join(&id[..16])
}

impl BranchHost {
    /// Starts the watcher over `main`'s view; `branches` holds the tracked names; `net` carries
    /// the branches it opens to peers.
    pub fn start(
        config: &NodeConfig,
        genesis: Genesis,
        key: Option<Keypair>,
        identity: aergo_primitives::types::PublicKey,
        main: Arc<ChainView>,
        branches: Arc<Branches>,
        net: Option<tokio::sync::mpsc::Sender<NetCommand>>,
    ) -> std::io::Result<BranchHost> {
        let settings = Settings {
            data_dir: config.data_dir.clone(),
            genesis,
            log: LogOptions {
                segment_bytes: config.storage.segment_bytes,
                use_io_uring: config.storage.io_uring,
                verify: config.storage.verify_log_on_start,
            },
            state: StateOptions {
                cache_bytes: (config.storage.state_cache_mb << 20).min(BRANCH_CACHE_BYTES),
            },
            key,
            identity,
            mempool: config.mempool.clone(),
            admission_queue: config.admission.queue,
            max_clock_drift_ms: config.p2p.max_clock_drift_ms,
            require_clock_sync: config.producer.require_clock_sync,
            doppelganger_slots: config.producer.doppelganger_slots,
            net,
        };
        let shared = Arc::new(Shared {
            settings,
            main,
            branches,
            open: Mutex::default(),
            failed: Mutex::default(),
            stop: AtomicBool::new(false),
        });
        let watched = shared.clone();
        let watcher = std::thread::Builder::new().name("aergo-branches".into()).spawn(move || {
            while !watched.stop.load(Ordering::SeqCst) {
                watched.open_tracked();
                std::thread::sleep(WATCH_EVERY);
            }
        })?;
        Ok(BranchHost { shared, watcher: Some(watcher) })
    }

    /// Stops the watcher, then each branch's chain thread (after the block in hand) and pool.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
        let open: Vec<(String, Open)> = self.shared.open.lock().drain().collect();
        for (name, o) in &open {
            o.stop.store(true, Ordering::SeqCst);
            self.shared.branches.remove(name);
            self.shared.tell_net(NetCommand::CloseBranch { name: name.clone() }, false);
        }
        for (name, o) in open {
            if o.thread.join().is_err() {
                tracing::error!(branch = %name, "a branch's chain thread panicked");
            }
            o.pool.admission.stop();
        }
    }
}

impl Drop for BranchHost {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    /// Tells the net task, if the node is on a network: from the watcher thread it waits for
    /// room in the queue (`wait`); on the way out (maybe inside the runtime) it does not.
    fn tell_net(&self, command: NetCommand, wait: bool) {
        if let Some(net) = &self.settings.net {
            let sent = match wait {
                true => net.blocking_send(command).is_ok(),
                false => net.try_send(command).is_ok(),
            };
            if !sent {
                tracing::debug!("the net task has stopped or is full; a branch command was dropped");
            }
        }
    }

    /// Opens every tracked branch whose record is final and that is not open yet.
    fn open_tracked(&self) {
        for name in self.branches.tracked() {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            if self.open.lock().contains_key(&name) {
                continue;
            }
            if self.failed.lock().get(&name).is_some_and(|at| at.elapsed() < RETRY_AFTER) {
                continue;
            }
            match self.final_record(&name) {
                Ok(Ok((record, members, parent))) => match self.open_branch(&record, members, parent) {
                    Ok(()) => {
                        self.failed.lock().remove(&name);
                        self.branches.set_waiting(&name, None);
                    }
                    Err(e) => {
                        tracing::error!(branch = %name, error = %e, "cannot open a tracked branch; trying again in 30 s");
                        self.failed.lock().insert(name.clone(), Instant::now());
                        self.branches.set_waiting(&name, Some(format!("cannot open it: {e}")));
                    }
                },
                Ok(Err(why)) => self.branches.set_waiting(&name, Some(why)),
                Err(e) => self.branches.set_waiting(&name, Some(format!("its record cannot be read: {e}"))),
            }
        }
    }

    /// The branch's record in its parent's final state, with the parent's view; or why it is not
    /// there (yet).
    #[allow(clippy::type_complexity)]
    fn final_record(
        &self,
        name: &str,
    ) -> Result<Result<(BranchRecord, Option<Vec<PublicKey>>, Arc<ChainView>), String>, String> {
        let key = branch_key(name);
        let read = |view: &ChainView, height: u64| {
            let store = &view.store;
            Records(move |k: &[u8]| store.get_at(k, height))
                .get::<BranchRecord>(&key)
                .map_err(|e| e.to_string())
        };
        let mut parents = vec![self.main.clone()];
        parents.extend(
            self.branches.names().iter().filter_map(|n| self.branches.get(n)).map(|h| h.view.clone()),
        );
        for view in &parents {
            let lib = view.consensus.read().lib_height;
            if let Some(record) = read(view, lib)? {
                let store = &view.store;
                let members = aergo_exec::branches::branch_members(|k: &[u8]| store.get_at(k, lib), name)
                    .map_err(|e| e.to_string())??;
                if let Some(members) = &members {
                    if !members.contains(&self.settings.identity) {
                        return Ok(Err(format!(
                            "it is a private branch and this node (node key {}) is not one of its members",
                            hex::encode(self.settings.identity.0)
                        )));
                    }
                }
                return Ok(Ok((record, members, view.clone())));
            }
            if let Some(record) = read(view, view.head().height)? {
                return Ok(Err(format!(
                    "the block holding its record (height {} of {}) is not final yet",
                    record.created_at, view.branch
                )));
            }
        }
        let parent = name.rsplit_once('/').map(|(p, _)| p);
        Ok(Err(match parent {
            Some(p) if self.branches.get(p).is_none() && self.branches.tracking(p).is_none() => {
                format!("no branch {name:?} on main; if it was made on branch {p:?}, track that too")
            }
            _ => format!("no branch {name:?} on this chain yet"),
        }))
    }

    fn open_branch(
        &self,
        record: &BranchRecord,
        members: Option<Vec<PublicKey>>,
        parent: Arc<ChainView>,
    ) -> Result<(), String> {
        let s = &self.settings;
        let name = &record.name;
        let dir = branch_dir(&s.data_dir, name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let about = dir.join("BRANCH");
        if !about.exists() {
            let text = format!(
                "# The chain of a branch (docs/branches.md); written when this node first opened it.\n\
                 name = {name:?}\nparent = {:?}\nbase_height = {}\n",
                record.parent, record.base_height
            );
            aergo_primitives::file::write_atomic_mode(&about, text.as_bytes(), 0o644)
                .map_err(|e| format!("{}: {e}", about.display()))?;
        }
        let spec = BranchSpec {
            name: name.clone(),
            base_height: record.base_height,
            producers: record.producers.clone(),
        };
        let (mut chain, report) =
            Chain::open_branch(&dir, &s.genesis, &spec, parent.store.clone(), s.log.clone(), s.state)
                .map_err(|e| e.to_string())?;
        // Merges of the branches made on this one read them from what this node holds.
        chain.set_merge_sources(Arc::new(aergo_chain::view::HeldBranches {
            main: self.main.clone(),
            branches: self.branches.clone(),
        }));
        let key = s.key.clone().filter(|k| record.producers.contains(&k.public()));
        let producing = key.is_some();
        let mempool = Arc::new(Mutex::new(Mempool::new(s.mempool.clone())));
        let speculation = aergo_exec::BlockContext {
            chain_id: s.genesis.chain_id.clone(),
            branch: name.clone(),
            height: 0,
            timestamp_ms: 0,
            producer: key.as_ref().map_or(aergo_primitives::types::Address([0; 20]), Keypair::address),
            staking: s.genesis.consensus.staking(),
            sql_ordered_scans_height: s.genesis.consensus.sql_ordered_scans_height.unwrap_or(u64::MAX),
            replay: false,
        };
        // A branch takes fewer transactions than main: a smaller verify-once set.
        let verified = Arc::new(aergo_primitives::crypto::Verified::new(crate::node::VERIFIED_TXS / 4));
        chain.set_verified(verified.clone());
        let admission =
            Admission::start(1, s.admission_queue, chain.store(), mempool.clone(), speculation, verified)
                .map_err(|e| format!("admission thread: {e}"))?;
        let view = Arc::new(
            ChainView::of_branch(&chain, key.as_ref().map(Keypair::public), record.base_height, parent)
                .map_err(|e| e.to_string())?,
        );
        // Admitted transactions go to the branch's producers on its topic.
        let gossip = s.net.clone().map(|net| -> aergo_chain::view::Gossip {
            let branch = name.clone();
            Box::new(move |bytes| {
                let command = Box::new(NetCommand::PublishTx(bytes));
                let _ = net.try_send(NetCommand::OnBranch { branch: branch.clone(), command });
            })
        });
        let pool = Arc::new(PoolHandle::new(mempool, admission, s.mempool.max_txs, gossip));
        let stop = Arc::new(AtomicBool::new(false));
        let driver_config = DriverConfig {
            key,
            empty_blocks: false,
            max_clock_drift_ms: s.max_clock_drift_ms,
            signed_slot_file: dir.join(crate::node::SIGNED_SLOT_FILE),
            require_clock_sync: s.require_clock_sync,
            doppelganger_slots: s.doppelganger_slots,
            #[cfg(feature = "test-hooks")]
            equivocate: false,
        };
        let head = chain.head();
        // The net task sends the branch's blocks and statuses from peers (without a network
        // nothing does; the channel stays open).
        let (inbox, inbox_rx) = std::sync::mpsc::channel();
        let driver = Driver::new(
            chain,
            driver_config,
            view.clone(),
            pool.clone(),
            inbox_rx,
            s.net.clone(),
            stop.clone(),
        );
        let private = members.is_some();
        let members = members.map(|m| m.iter().filter_map(aergo_net::peer_id_of_public).collect());
        let link = BranchLink {
            name: name.clone(),
            view: view.clone(),
            pool: pool.clone(),
            inbound: inbox.clone(),
            members,
        };
        let thread = std::thread::Builder::new()
            .name(format!("aergo-branch-{}", name.chars().take(20).collect::<String>()))
            .spawn(move || {
                let _inbox = inbox;
                driver.run()
            })
            .map_err(|e| format!("chain thread: {e}"))?;
        self.tell_net(NetCommand::OpenBranch(link), true);
        self.open.lock().insert(name.clone(), Open { stop, thread, pool: pool.clone() });
        let readers = private.then(|| [vec![record.creator], record.mergers.clone()].concat());
        self.branches.insert(name.clone(), Arc::new(BranchHandle { view, pool, producing, readers }));
        tracing::info!(
            branch = %name, parent = %record.parent, base = record.base_height, height = head.height,
            created = report.created, replayed = report.replayed, producing, private, dir = %dir.display(),
            "branch opened"
        );
        Ok(())
    }
}

/// The branches in a stopped node's data directory, as the merge sources of `aergo-node verify`:
/// each opened the first time a merge names it, over its parent's store (`main`'s, given, or a
/// branch's, opened the same way), from the `BRANCH` file its directory holds.
pub struct StoredBranches {
    data_dir: std::path::PathBuf,
    main: Arc<aergo_storage::StateStore>,
    open: Mutex<HashMap<String, StoredBranch>>,
}

/// A branch's store and block log, opened.
type StoredBranch = (Arc<aergo_storage::StateStore>, Arc<aergo_storage::LogReader>);

impl StoredBranches {
    pub fn sources(
        data_dir: &std::path::Path,
        main: Arc<aergo_storage::StateStore>,
    ) -> Arc<dyn aergo_chain::MergeSources> {
        Arc::new(StoredBranches { data_dir: data_dir.to_path_buf(), main, open: Mutex::default() })
    }

    fn branch(
        &self,
        name: &str,
    ) -> Result<(Arc<aergo_storage::StateStore>, Arc<aergo_storage::LogReader>), aergo_chain::SourceError>
    {
        use aergo_chain::SourceError::Unavailable;
        if let Some(found) = self.open.lock().get(name) {
            return Ok(found.clone());
        }
        let dir = branch_dir(&self.data_dir, name);
        let about = dir.join("BRANCH");
        let text = std::fs::read_to_string(&about).map_err(|e| {
            Unavailable(format!("branch {name:?} is not in this data directory ({}: {e})", about.display()))
        })?;
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.trim_start().strip_prefix('=')))
                .map(|v| v.trim().trim_matches('"').to_string())
                .ok_or_else(|| Unavailable(format!("{}: no {key}", about.display())))
        };
        let parent = field("parent")?;
        let base: u64 = field("base_height")?
            .parse()
            .map_err(|_| Unavailable(format!("{}: base_height is not a height", about.display())))?;
        let parent_store = if parent == aergo_primitives::types::MAIN_BRANCH {
            self.main.clone()
        } else {
            self.branch(&parent)?.0
        };
        let store = aergo_storage::StateStore::open_branch(
            &dir.join("state"),
            aergo_storage::StateOptions::default(),
            parent_store,
            base,
        )
        .map_err(|e| Unavailable(format!("branch {name:?}: {e}")))?;
        let found = (Arc::new(store), Arc::new(aergo_storage::LogReader::new(&dir.join("blocks"))));
        self.open.lock().insert(name.to_string(), found.clone());
        Ok(found)
    }
}

impl aergo_chain::MergeSources for StoredBranches {
    fn transactions(
        &self,
        source: &str,
        after: u64,
        upto: u64,
        upto_hash: &aergo_primitives::types::Hash,
    ) -> Result<Vec<(u64, aergo_primitives::types::Transaction)>, aergo_chain::SourceError> {
        let (store, reader) = self.branch(source)?;
        aergo_chain::source_transactions(source, (after, upto, upto_hash), |h| {
            aergo_chain::read_block(&store, &reader, h)
        })
    }

    fn state(
        &self,
        source: &str,
        upto: u64,
        upto_hash: &aergo_primitives::types::Hash,
    ) -> Result<Arc<aergo_storage::StateStore>, aergo_chain::SourceError> {
        aergo_chain::source_state(source, self.branch(source)?.0, upto, upto_hash)
    }
}
