//! The repositories a node hosts beside its public chain (`docs/repositories.md`, "Hosting").
//!
//! ```text
//!  data_dir/repos/hosted            the names, one a line, in the order added (written atomically)
//!  data_dir/repos/<name>/genesis.toml, repo.toml, state/, blocks/, raft/, branches/
//!        │ RepoHost::open_hosted at start; admin_add_repository / admin_remove_repository later
//!        ▼
//!  ChainRun (as the public chain's: chain thread, pool, swarm, branches, RPC handler)
//!        └─ its methods at /repo/<name> (rpc::listen::Routes)
//! ```
//! Adding checks everything first (name, genesis, settings, chain id, ports) and changes nothing
//! on a refusal; a repository that fails to start is removed again (with the files the attempt
//! made) and the reason is the answer. A hosted repository that cannot open at the node's start
//! stays listed, `stopped` with the reason, and the public chain and the others run.

use crate::node::{ChainRun, NodeError, Shared};
use aergo_config::genesis::Genesis;
use aergo_config::{NodeConfig, RepoSettings};
use aergo_rpc::listen::Routes;
use aergo_rpc::{BoxFuture, Hosted, Hosting};
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use aergo_config::repos::{
    name_problem, read_hosted, repo_config, repos_dir, write_hosted, GENESIS_FILE, HOSTED_FILE, REPOS_DIR,
    SETTINGS_FILE,
};

/// What [`check_new`] found: the parsed genesis and settings, checked against the node.
pub struct NewRepo {
    pub dir: PathBuf,
    pub genesis: Genesis,
    pub settings: Option<(String, RepoSettings)>,
}

/// Checks a repository to add against the node (`node`, whose public chain is `public_chain_id`)
/// and the repositories it already hosts (`hosted`, with their configs): name, genesis, chain id,
/// settings and p2p ports. Nothing is written.
pub fn check_new(
    node: &NodeConfig,
    public_chain_id: &str,
    hosted: &[(String, NodeConfig)],
    name: &str,
    genesis: &str,
    settings: Option<&str>,
) -> Result<NewRepo, String> {
    if let Some(why) = name_problem(name) {
        return Err(why);
    }
    if hosted.iter().any(|(n, _)| n == name) {
        return Err(format!("repository {name:?} is already hosted on this node"));
    }
    let genesis = Genesis::parse(genesis).map_err(|e| format!("genesis: {e}"))?;
    genesis.validate().map_err(|e| format!("genesis: {e}"))?;
    if genesis.chain_id == public_chain_id {
        return Err(format!("genesis: chain id {:?} is this node's public chain's", genesis.chain_id));
    }
    for (other, config) in hosted {
        let theirs = Genesis::load(&config.genesis_path()).map(|g| g.chain_id).unwrap_or_default();
        if theirs == genesis.chain_id {
            return Err(format!("genesis: chain id {:?} is repository {other:?}'s", genesis.chain_id));
        }
    }
    let dir = repos_dir(&node.data_dir).join(name);
    let existing = dir.join(GENESIS_FILE);
    if existing.exists() {
        // A repository removed with its data kept comes back with the same genesis only.
        let kept = Genesis::load(&existing).map_err(|e| e.to_string())?;
        if kept != genesis {
            return Err(format!(
                "{} holds another chain's data (chain id {:?}); remove it or choose another name",
                dir.display(),
                kept.chain_id
            ));
        }
    }
    let settings = match settings {
        Some(text) => {
            let parsed = RepoSettings::parse(text).map_err(|e| format!("settings: {e}"))?;
            let config = parsed.apply(node, &dir);
            config.validate().map_err(|e| format!("settings: {e}"))?;
            if config.p2p.enabled {
                config.p2p.addresses().map_err(|e| format!("settings: {e}"))?;
            }
            let mine = config.p2p.tcp_ports();
            let taken = std::iter::once(("the public chain".to_string(), node.p2p.tcp_ports()))
                .chain(hosted.iter().map(|(n, c)| (format!("repository {n:?}"), c.p2p.tcp_ports())));
            for (who, ports) in taken {
                if let Some(port) = mine.iter().find(|p| ports.contains(p)) {
                    return Err(format!(
                        "settings: p2p port {port} is {who}'s; give the repository its own [p2p] listen port"
                    ));
                }
            }
            Some((text.to_string(), parsed))
        }
        None => None,
    };
    Ok(NewRepo { dir, genesis, settings })
}

/// Writes a checked repository's files (its directory, genesis, settings). Returns whether the
/// directory was made now (to be removed again if the repository then fails to start).
pub fn write_new(new: &NewRepo) -> Result<bool, String> {
    let made = !new.dir.exists();
    std::fs::create_dir_all(&new.dir).map_err(|e| format!("{}: {e}", new.dir.display()))?;
    let genesis = new.dir.join(GENESIS_FILE);
    if !genesis.exists() {
        crate::node::write_atomic(&genesis, new.genesis.to_toml().as_bytes())
            .map_err(|e| format!("{}: {e}", genesis.display()))?;
    }
    let settings = new.dir.join(SETTINGS_FILE);
    match &new.settings {
        Some((text, _)) => crate::node::write_atomic(&settings, text.as_bytes())
            .map_err(|e| format!("{}: {e}", settings.display()))?,
        None => match std::fs::remove_file(&settings) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", settings.display())),
        },
    }
    Ok(made)
}

/// Whether a running node holds the state store in `data_dir` (RocksDB's lock on `state/LOCK`,
/// an fcntl lock, which another process sees with `F_GETLK`).
pub fn node_running(data_dir: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(file) = std::fs::OpenOptions::new().read(true).write(true).open(data_dir.join("state/LOCK"))
    else {
        return false;
    };
    let mut lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    // SAFETY: `file` is open for the call, and `lock` is a valid flock the call fills in.
    let asked = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) };
    asked == 0 && lock.l_type != libc::F_UNLCK as libc::c_short
}

fn refuse_if_running(node: &NodeConfig) -> Result<(), String> {
    if node_running(&node.data_dir) {
        return Err(format!(
            "the node in {} is running: use `aergo repo add|remove` (its admin RPC), or stop it first",
            node.data_dir.display()
        ));
    }
    Ok(())
}

/// `aergo-node repo add` (the node stopped): checks and writes the repository, and lists it.
pub fn add_offline(
    node: &NodeConfig,
    name: &str,
    genesis: &str,
    settings: Option<&str>,
) -> Result<(), String> {
    refuse_if_running(node)?;
    let public = Genesis::load(&node.genesis_path()).map_err(|e| e.to_string())?;
    let names = read_hosted(&node.data_dir)?;
    let hosted: Vec<(String, NodeConfig)> =
        names.iter().filter_map(|n| repo_config(node, n).ok().map(|c| (n.clone(), c))).collect();
    if names.iter().any(|n| n == name) {
        return Err(format!("repository {name:?} is already hosted on this node"));
    }
    let new = check_new(node, &public.chain_id, &hosted, name, genesis, settings)?;
    write_new(&new)?;
    let mut names = names;
    names.push(name.to_string());
    write_hosted(&node.data_dir, &names)
}

/// `aergo-node repo remove` (the node stopped): forgets the repository, and deletes its data
/// when told to.
pub fn remove_offline(node: &NodeConfig, name: &str, delete_data: bool) -> Result<(), String> {
    refuse_if_running(node)?;
    let mut names = read_hosted(&node.data_dir)?;
    let before = names.len();
    names.retain(|n| n != name);
    if names.len() == before {
        return Err(format!("no repository {name:?} on this node"));
    }
    write_hosted(&node.data_dir, &names)?;
    if delete_data {
        delete_dir(&repos_dir(&node.data_dir).join(name))?;
    }
    Ok(())
}

fn delete_dir(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

/// Starts a repository's chain from an RPC call. Its start holds state that is not `Send` across
/// awaits (a snapshot being restored), so it runs on a blocking thread driving the node's
/// runtime, where its tasks are spawned as the public chain's are.
async fn start_repo(config: NodeConfig, shared: Shared, name: String) -> Result<ChainRun, NodeError> {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(ChainRun::start(&config, &shared, Some(&name))))
        .await
        .map_err(|e| NodeError::Join(e.to_string()))?
}

/// Serves a repository's methods at `/repo/<name>`; a private one's only to its members, whose
/// roles are read from its state at the head.
fn serve(routes: &Routes, name: &str, run: &ChainRun) {
    let members: Option<aergo_rpc::listen::Members> = run.view.genesis.is_private().then(|| {
        let view = run.view.clone();
        Arc::new(move |key: &aergo_primitives::types::PublicKey| {
            let head = view.head().height;
            let mut rules = aergo_exec::members::Rules(|k: &[u8]| view.store.get_at(k, head));
            rules.role(&key.address()).ok().flatten()
        }) as aergo_rpc::listen::Members
    });
    let binary: Arc<dyn aergo_rpc::listen::BinaryTxs> = Arc::new(run.handler.clone());
    routes.insert(name, run.handler.clone().into_rpc_methods(), Some(binary), members);
}

/// A hosted repository in the running node.
enum Slot {
    Running {
        config: Box<NodeConfig>,
        run: Box<ChainRun>,
    },
    /// It could not open at start: why.
    Failed {
        config: Option<Box<NodeConfig>>,
        reason: String,
    },
}

/// The running node's hosted repositories ([`Hosting`] for the public chain's RPC).
pub struct RepoHost {
    node: NodeConfig,
    shared: Shared,
    routes: Arc<Routes>,
    public_chain_id: String,
    slots: Mutex<Vec<(String, Slot)>>,
    /// One add or remove at a time (each awaits a chain's start or stop).
    changing: tokio::sync::Mutex<()>,
}

impl RepoHost {
    pub(crate) fn new(
        node: NodeConfig,
        shared: Shared,
        routes: Arc<Routes>,
        public_chain_id: String,
    ) -> RepoHost {
        RepoHost {
            node,
            shared,
            routes,
            public_chain_id,
            slots: Mutex::new(Vec::new()),
            changing: Default::default(),
        }
    }

    /// How many repositories are hosted.
    pub fn count(&self) -> usize {
        self.slots.lock().len()
    }

    /// Opens the repositories `data_dir/repos/hosted` lists. One that fails stays listed as
    /// stopped with the reason; the others and the public chain run.
    pub(crate) async fn open_hosted(&self) {
        let _changing = self.changing.lock().await;
        let names = match read_hosted(&self.node.data_dir) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "the hosted repositories' list cannot be read: none is opened");
                return;
            }
        };
        for name in names {
            let slot = match repo_config(&self.node, &name) {
                Err(reason) => Slot::Failed { config: None, reason },
                Ok(config) => match ChainRun::start(&config, &self.shared, Some(&name)).await {
                    Ok(run) => {
                        serve(&self.routes, &name, &run);
                        tracing::info!(repo = %name, chain_id = %run.view.chain_id, "repository opened");
                        Slot::Running { config: Box::new(config), run: Box::new(run) }
                    }
                    Err(e) => Slot::Failed { config: Some(Box::new(config)), reason: e.to_string() },
                },
            };
            if let Slot::Failed { reason, .. } = &slot {
                tracing::error!(repo = %name, error = %reason, "a hosted repository cannot open; the others run");
            }
            self.slots.lock().push((name, slot));
        }
    }

    /// The configs of the hosted repositories (those that could be read).
    fn configs(&self) -> Vec<(String, NodeConfig)> {
        self.slots
            .lock()
            .iter()
            .filter_map(|(n, s)| match s {
                Slot::Running { config, .. } | Slot::Failed { config: Some(config), .. } => {
                    Some((n.clone(), (**config).clone()))
                }
                Slot::Failed { config: None, .. } => None,
            })
            .collect()
    }

    fn names(&self) -> Vec<String> {
        self.slots.lock().iter().map(|(n, _)| n.clone()).collect()
    }

    async fn add_now(&self, request: aergo_rpc::AddRepository) -> Result<String, String> {
        let _changing = self.changing.lock().await;
        let name = request.name.clone();
        if self.names().contains(&name) {
            return Err(format!("repository {name:?} is already hosted on this node"));
        }
        let new = check_new(
            &self.node,
            &self.public_chain_id,
            &self.configs(),
            &name,
            &request.genesis,
            request.settings.as_deref(),
        )?;
        let made = write_new(&new)?;
        let undo = |why: String| {
            if made {
                if let Err(e) = delete_dir(&new.dir) {
                    tracing::warn!(error = %e, "the failed repository's directory could not be removed");
                }
            }
            why
        };
        let config = repo_config(&self.node, &name).map_err(undo)?;
        let run = start_repo(config.clone(), self.shared.clone(), name.clone())
            .await
            .map_err(|e: NodeError| undo(format!("repository {name:?} cannot start: {e}")))?;
        let mut names = self.names();
        names.push(name.clone());
        if let Err(e) = write_hosted(&self.node.data_dir, &names) {
            let _ = run.stop().await;
            return Err(undo(format!("the hosted list cannot be written: {e}")));
        }
        serve(&self.routes, &name, &run);
        tracing::info!(repo = %name, chain_id = %run.view.chain_id, "repository added");
        self.slots
            .lock()
            .push((name.clone(), Slot::Running { config: Box::new(config), run: Box::new(run) }));
        Ok(name)
    }

    async fn remove_now(&self, name: String, keep_data: bool) -> Result<(), String> {
        let _changing = self.changing.lock().await;
        let names: Vec<String> = self.names().into_iter().filter(|n| *n != name).collect();
        let slot = {
            let mut slots = self.slots.lock();
            let at = slots.iter().position(|(n, _)| *n == name);
            let Some(at) = at else { return Err(format!("no repository {name:?} on this node")) };
            write_hosted(&self.node.data_dir, &names)?;
            slots.remove(at).1
        };
        self.routes.remove(&name);
        if let Slot::Running { run, .. } = slot {
            run.stop().await.map_err(|e| format!("repository {name:?} did not stop cleanly: {e}"))?;
        }
        if !keep_data {
            delete_dir(&repos_dir(&self.node.data_dir).join(&name))?;
        }
        tracing::info!(repo = %name, keep_data, "repository removed");
        Ok(())
    }

    /// Stops every hosted repository (the node is shutting down); they stay listed.
    pub(crate) async fn stop_all(&self) {
        let _changing = self.changing.lock().await;
        let slots: Vec<(String, Slot)> = std::mem::take(&mut *self.slots.lock());
        for (name, slot) in slots {
            self.routes.remove(&name);
            if let Slot::Running { run, .. } = slot {
                if let Err(e) = run.stop().await {
                    tracing::warn!(repo = %name, error = %e, "repository did not stop cleanly");
                }
            }
        }
    }
}

impl Hosting for RepoHost {
    fn hosted(&self) -> Vec<Hosted> {
        self.slots
            .lock()
            .iter()
            .map(|(name, slot)| match slot {
                Slot::Running { run, .. } => Hosted {
                    name: name.clone(),
                    handler: Some(run.handler.clone()),
                    running: run.running(),
                    error: None,
                },
                Slot::Failed { reason, .. } => {
                    Hosted { name: name.clone(), handler: None, running: false, error: Some(reason.clone()) }
                }
            })
            .collect()
    }

    fn add(self: Arc<Self>, request: aergo_rpc::AddRepository) -> BoxFuture<Result<String, String>> {
        Box::pin(async move { self.add_now(request).await })
    }

    fn remove(self: Arc<Self>, name: String, keep_data: bool) -> BoxFuture<Result<(), String>> {
        Box::pin(async move { self.remove_now(name, keep_data).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_the_hosted_list_are_checked() {
        assert!(name_problem("acme").is_none() && name_problem("a-1").is_none());
        for bad in ["", "-a", "Acme", "a_b", "a/b", &"a".repeat(33)] {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_hosted(dir.path()).unwrap(), Vec::<String>::new());
        write_hosted(dir.path(), &["acme".into(), "lab".into()]).unwrap();
        assert_eq!(read_hosted(dir.path()).unwrap(), ["acme", "lab"]);
        std::fs::write(repos_dir(dir.path()).join(HOSTED_FILE), "acme\n../etc\n").unwrap();
        let err = read_hosted(dir.path()).unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }
}
