//! `aergo-node`: the AERGO Chain node daemon.
//!
//! - `aergo-node --dev --data-dir DIR [--rpc-listen ADDR]`: a single-producer local chain (created on
//!   first start, continued after; `DIR/config.toml`, when present, gives its other settings, such
//!   as `[rpc] cors_origins` for a web app under development).
//! - `aergo-node init --genesis FILE --data-dir DIR`: creates a chain from a genesis file.
//! - `aergo-node run --config FILE`: runs a node from its config.
//! - `aergo-node testnet --nodes N [--consensus raft] --out DIR`: the files for an N-producer
//!   (or N-voter Raft) network (see `aergo_node::testnet`).
//! - `aergo-node verify --data-dir DIR` (or `--config FILE`): replays the block log from genesis and
//!   compares the state root (the node stopped).
//! - `aergo-node key export|import`: moves a producer key with the last slot it signed (the node
//!   stopped; see `aergo_node::producer_key`).
//! - `aergo-node snapshot export|import`: the state at the last final height, to start a node there
//!   instead of replaying from genesis (see `aergo_chain::snapshot`).
//!
//! Once serving, it prints `AERGO_RPC=http://ADDR` on stdout (useful with `--rpc-listen 127.0.0.1:0`).

use aergo_chain::verify_by_replay;
use aergo_config::genesis::Genesis;
use aergo_config::NodeConfig;
use aergo_node::node::{init, prepare_devnet, RunningNode};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "aergo-node", version, about = "The AERGO Chain node")]
struct Cli {
    /// Run a single-producer local devnet in --data-dir.
    #[arg(long)]
    dev: bool,
    /// Data directory for --dev (its config.toml, when present, gives the settings other than the
    /// producer's).
    #[arg(long, default_value = "./aergo-devnet")]
    data_dir: PathBuf,
    /// JSON-RPC listen address (overrides the config).
    #[arg(long)]
    rpc_listen: Option<SocketAddr>,
    /// With --dev: produce a block every slot even without transactions.
    #[arg(long)]
    empty_blocks: bool,
    /// Block-log segment size in bytes (overrides the config).
    #[arg(long)]
    segment_bytes: Option<u64>,
    /// Write the block log with pwrite instead of io_uring.
    #[arg(long)]
    no_io_uring: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Create a chain in DIR from a genesis file, and a default config.toml beside it.
    Init {
        #[arg(long)]
        genesis: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Run a node from a config file.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Write the genesis, keys and a config per node for an N-producer network, and DIR/nodes.json.
    Testnet {
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        #[arg(long)]
        out: PathBuf,
        /// One IPv4/IPv6 address per node (default: all on 127.0.0.1 with free ports).
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<std::net::IpAddr>,
        #[arg(long, default_value_t = 1000)]
        block_interval_ms: u64,
        #[arg(long, default_value = "aergo-testnet")]
        chain_id: String,
        /// Fixed ports: node K gets RPC BASE+2K and p2p BASE+2K+1 (default: free loopback ports).
        #[arg(long)]
        base_port: Option<u16>,
        /// `dpos` (N producers) or `raft` (N voters, blocks signed with the node keys).
        #[arg(long, default_value = "dpos", value_parser = ["dpos", "raft"])]
        consensus: String,
        /// Raft: only the first K nodes vote; the others are full nodes that follow them.
        #[arg(long)]
        voters: Option<usize>,
    },
    /// Connect to a node as a misbehaving peer, send what it must refuse, and print (JSON) whether it
    /// cut and banned the probe (test builds only: the `test-hooks` feature).
    #[cfg(feature = "test-hooks")]
    #[command(hide = true)]
    NetProbe {
        /// The node's p2p address, with /p2p/<peer id>.
        #[arg(long)]
        target: aergo_net::probe::Multiaddr,
        #[arg(long)]
        chain_id: String,
        #[arg(long, value_delimiter = ',', required = true)]
        attack: Vec<aergo_net::probe::Attack>,
        /// The branch `branch-sync` asks about.
        #[arg(long)]
        branch: Option<String>,
        #[arg(long, default_value_t = 20)]
        timeout_secs: u64,
    },
    /// Move a producer key between nodes with its slashing-protection record (the node stopped).
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Write the state at the last final height to a file, or start a data directory from one, so that
    /// a new node does not replay the chain from genesis (the node stopped).
    Snapshot {
        #[command(subcommand)]
        action: SnapshotAction,
    },
    /// The repositories this node hosts beside its public chain (`docs/repositories.md`), with
    /// the node stopped; a running node takes them by `aergo repo add|remove` (its admin RPC).
    Repo {
        #[command(subcommand)]
        action: RepoAction,
    },
    /// Re-execute the whole block log from genesis in a scratch directory and check that it reaches
    /// the stored state root (the node must be stopped).
    Verify {
        /// The genesis is the one `DIR/config.toml` names when that file exists (as `init` and
        /// `testnet` write it), else `DIR/genesis.toml`.
        #[command(flatten)]
        node: NodeDir,
    },
}

/// Which node a command works on: its data directory or its config file.
#[derive(clap::Args)]
struct NodeDir {
    /// The node's data directory (with its `config.toml`, or for `verify` and `snapshot export` a
    /// `--dev` node's `genesis.toml`), or --config.
    #[arg(long, required_unless_present = "config", conflicts_with = "config")]
    data_dir: Option<PathBuf>,
    /// The node's config file.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum RepoAction {
    /// Host a repository: its genesis and its settings (`repo.toml`) are copied into
    /// DATA_DIR/repos/NAME, and it opens at the node's next start.
    Add {
        name: String,
        #[arg(long)]
        genesis: PathBuf,
        /// The repository's settings ([p2p], [producer], [mempool], [admission], [storage],
        /// [branches]); without them it has no p2p swarm.
        #[arg(long)]
        settings: Option<PathBuf>,
        #[command(flatten)]
        node: NodeDir,
    },
    /// Stop hosting a repository; its data stays unless --delete-data.
    Remove {
        name: String,
        #[arg(long)]
        delete_data: bool,
        #[command(flatten)]
        node: NodeDir,
    },
    /// The hosted repositories, in the order added.
    List {
        #[command(flatten)]
        node: NodeDir,
    },
}

#[derive(Subcommand)]
enum KeyAction {
    /// Write the producer key, encrypted with the passphrase, and the last slot it signed to FILE.
    Export {
        #[command(flatten)]
        node: NodeDir,
        #[arg(long)]
        out: PathBuf,
        /// File whose first line is the passphrase that encrypts the exported key.
        #[arg(long)]
        passphrase_file: PathBuf,
    },
    /// Install the key of an exported FILE as this node's producer key, and take its record: the
    /// node never signs a slot at or below the last one the key signed elsewhere.
    Import {
        #[command(flatten)]
        node: NodeDir,
        #[arg(long = "in")]
        input: PathBuf,
        #[arg(long)]
        passphrase_file: PathBuf,
    },
}

#[derive(Subcommand)]
enum SnapshotAction {
    /// Write the state at the last final height, the block there and what the producer schedule
    /// needs above it to FILE.
    Export {
        #[command(flatten)]
        node: NodeDir,
        #[arg(long)]
        out: PathBuf,
    },
    /// Build a node's chain from FILE, checked against the genesis and the snapshot's state root;
    /// the data directory must hold no chain yet.
    Import {
        #[arg(long = "in")]
        input: PathBuf,
        /// The data directory to create, with --genesis (genesis.toml and config.toml are written
        /// beside the chain as `init` does); or --config: the data directory and genesis it names.
        #[arg(long, requires = "genesis", required_unless_present = "config", conflicts_with = "config")]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        genesis: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// The node config for `repo`: as [`node_config`], or for a `--dev` data directory (no
/// `config.toml`) the defaults there.
fn repo_node_config(node: &NodeDir) -> anyhow::Result<NodeConfig> {
    match (&node.config, &node.data_dir) {
        (None, Some(dir)) if !dir.join("config.toml").exists() => {
            anyhow::ensure!(
                dir.join("genesis.toml").exists(),
                "{} holds no node (no config.toml or genesis.toml)",
                dir.display()
            );
            Ok(NodeConfig { data_dir: dir.clone(), ..NodeConfig::default() })
        }
        _ => node_config(node.data_dir.as_deref(), node.config.as_deref()),
    }
}

/// The node config of `--config FILE`, or of `DIR/config.toml` for `--data-dir DIR`.
fn node_config(data_dir: Option<&Path>, config: Option<&Path>) -> anyhow::Result<NodeConfig> {
    match (config, data_dir) {
        (Some(file), _) => Ok(NodeConfig::load(file)?),
        (None, Some(dir)) => {
            let file = dir.join("config.toml");
            anyhow::ensure!(file.exists(), "{} has no config.toml: give --config", dir.display());
            let mut config = NodeConfig::load(&file)?;
            config.data_dir = dir.to_path_buf();
            Ok(config)
        }
        (None, None) => anyhow::bail!("give --data-dir or --config"),
    }
}

fn passphrase(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let first = text.lines().next().unwrap_or_default().to_string();
    anyhow::ensure!(first.len() >= 8, "{}: a passphrase of at least 8 characters", path.display());
    Ok(first)
}

/// The data directory and genesis file `verify` replays: those of the config file, given or found in
/// the data directory, else the data directory's own `genesis.toml` (a `--dev` node's).
fn verify_paths(data_dir: Option<&Path>, config: Option<&Path>) -> anyhow::Result<(PathBuf, PathBuf)> {
    let config_path = match (config, data_dir) {
        (Some(file), _) => Some(file.to_path_buf()),
        (None, Some(dir)) => Some(dir.join("config.toml")).filter(|f| f.exists()),
        (None, None) => anyhow::bail!("verify needs --data-dir or --config"),
    };
    match (config_path, data_dir) {
        (Some(file), given) => {
            let config = NodeConfig::load(&file)?;
            // The data directory named on the command line wins over the one the config names (a
            // copy of a node's directory can be verified where it lies).
            let dir = given.map_or_else(|| config.data_dir.clone(), Path::to_path_buf);
            Ok((dir, config.genesis_path()))
        }
        (None, Some(dir)) => Ok((dir.to_path_buf(), dir.join("genesis.toml"))),
        (None, None) => anyhow::bail!("verify needs --data-dir or --config"),
    }
}

/// Writes the snapshot to `out` through a temporary file beside it, synced, then renamed: a
/// reader never sees part of a snapshot under the final name.
fn export_snapshot(
    data_dir: &Path,
    genesis: &Genesis,
    out: &Path,
) -> anyhow::Result<aergo_storage::snapshot::ExportReport> {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = out.with_file_name(format!(".{name}.partial"));
    let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let written = aergo_chain::snapshot::export(data_dir, genesis, std::io::BufWriter::new(file));
    let (report, writer) = match written {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
    };
    let file = writer.into_inner().map_err(|e| anyhow::anyhow!("writing {}: {e}", tmp.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
    Ok(report)
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// SIGTERM and SIGINT, handled from when this is made (before the node announces its RPC): a
/// signal that comes between the announcement and the wait for it still stops the node cleanly.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// mimalloc: the node allocates small objects on many threads at once (RPC workers, admission,
/// execution workers); glibc's arenas contend there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    aergo_node::alloc::tune();
    let cli = Cli::parse();
    let mut config = match &cli.command {
        Some(Command::Init { genesis, data_dir }) => {
            init_tracing("info");
            let (config_path, report) = init(genesis, data_dir)?;
            println!(
                "chain {} in {} (config: {})",
                if report.created { "created" } else { "already present" },
                data_dir.display(),
                config_path.display()
            );
            return Ok(());
        }
        Some(Command::Run { config }) => NodeConfig::load(config)?,
        #[cfg(feature = "test-hooks")]
        Some(Command::NetProbe { target, chain_id, attack, branch, timeout_secs }) => {
            init_tracing("warn");
            let report = aergo_net::probe::probe(
                target.clone(),
                chain_id,
                attack,
                branch.as_deref(),
                std::time::Duration::from_secs(*timeout_secs),
            )
            .await?;
            println!("{}", serde_json::to_string(&report)?);
            return Ok(());
        }
        Some(Command::Testnet {
            nodes,
            out,
            hosts,
            block_interval_ms,
            chain_id,
            base_port,
            consensus,
            voters,
        }) => {
            let opts = aergo_node::testnet::TestnetOptions {
                nodes: *nodes,
                out: out.clone(),
                hosts: hosts.clone(),
                block_interval_ms: *block_interval_ms,
                chain_id: chain_id.clone(),
                base_port: *base_port,
                consensus: if consensus == "raft" {
                    aergo_config::genesis::ConsensusKind::Raft
                } else {
                    aergo_config::genesis::ConsensusKind::Dpos
                },
                voters: *voters,
            };
            let written = aergo_node::testnet::write_testnet(&opts)?;
            for n in &written {
                println!("{}  rpc {}  p2p {}", n.config.display(), n.rpc, n.p2p);
            }
            println!("nodes: {}", out.join("nodes.json").display());
            return Ok(());
        }
        Some(Command::Key { action: KeyAction::Export { node, out, passphrase_file } }) => {
            let config = node_config(node.data_dir.as_deref(), node.config.as_deref())?;
            let file = aergo_node::producer_key::export(&config, &passphrase(passphrase_file)?, out)?;
            println!(
                "exported {} with last signed slot {} to {}",
                file.address,
                file.slashing_protection.last_signed_slot,
                out.display()
            );
            return Ok(());
        }
        Some(Command::Key { action: KeyAction::Import { node, input, passphrase_file } }) => {
            let config = node_config(node.data_dir.as_deref(), node.config.as_deref())?;
            let done = aergo_node::producer_key::import(&config, input, &passphrase(passphrase_file)?)?;
            println!(
                "imported {} into {}; this node signs no slot at or below {}",
                done.address,
                done.key_file.display(),
                done.last_signed_slot
            );
            return Ok(());
        }
        Some(Command::Snapshot { action: SnapshotAction::Export { node, out } }) => {
            init_tracing("warn");
            let (data_dir, genesis_path) = verify_paths(node.data_dir.as_deref(), node.config.as_deref())?;
            let genesis = Genesis::load(&genesis_path)?;
            let started = std::time::Instant::now();
            let report = export_snapshot(&data_dir, &genesis, out)?;
            println!(
                "snapshot at height {}: {} state entries, {} contract rows, {} bytes in {} ({:.1} s)",
                report.height,
                report.leaves,
                report.rows,
                report.bytes,
                out.display(),
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        Some(Command::Snapshot { action: SnapshotAction::Import { input, data_dir, genesis, config } }) => {
            init_tracing("warn");
            let started = std::time::Instant::now();
            let (dir, report) = match (config, data_dir, genesis) {
                (Some(file), _, _) => {
                    let config = NodeConfig::load(file)?;
                    let genesis = Genesis::load(&config.genesis_path())?;
                    let reader = std::io::BufReader::new(
                        std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?,
                    );
                    let report = aergo_chain::snapshot::import(reader, &config.data_dir, &genesis)?;
                    (config.data_dir.clone(), report)
                }
                (None, Some(dir), Some(genesis)) => {
                    let (config_path, report) = aergo_node::node::import_snapshot(input, genesis, dir)?;
                    println!("config: {}", config_path.display());
                    (dir.clone(), report)
                }
                _ => anyhow::bail!("give --config, or --data-dir with --genesis"),
            };
            println!(
                "imported height {} (block {}, state root {}): {} state entries, {} contract rows into {} ({:.1} s)",
                report.head.height,
                report.head.hash,
                report.head.state_root,
                report.leaves,
                report.rows,
                dir.display(),
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        Some(Command::Repo { action }) => {
            let read = |path: &Path| {
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
            };
            match action {
                RepoAction::Add { name, genesis, settings, node } => {
                    let config = repo_node_config(node)?;
                    let settings = settings.as_deref().map(read).transpose()?;
                    aergo_node::repos::add_offline(&config, name, &read(genesis)?, settings.as_deref())
                        .map_err(|e| anyhow::anyhow!(e))?;
                    println!("repository {name} added; it opens at the node's next start");
                }
                RepoAction::Remove { name, delete_data, node } => {
                    let config = repo_node_config(node)?;
                    aergo_node::repos::remove_offline(&config, name, *delete_data)
                        .map_err(|e| anyhow::anyhow!(e))?;
                    println!(
                        "repository {name} removed{}",
                        if *delete_data { " and its data deleted" } else { "" }
                    );
                }
                RepoAction::List { node } => {
                    let config = repo_node_config(node)?;
                    for name in
                        aergo_node::repos::read_hosted(&config.data_dir).map_err(|e| anyhow::anyhow!(e))?
                    {
                        let chain_id = aergo_node::repos::repo_config(&config, &name)
                            .and_then(|c| Genesis::load(&c.genesis_path()).map_err(|e| e.to_string()))
                            .map_or_else(|e| format!("(cannot open: {e})"), |g| g.chain_id);
                        println!("{name}\t{chain_id}");
                    }
                }
            }
            return Ok(());
        }
        Some(Command::Verify { node }) => {
            init_tracing("warn");
            let (data_dir, genesis_path) = verify_paths(node.data_dir.as_deref(), node.config.as_deref())?;
            let genesis = Genesis::load(&genesis_path)?;
            let scratch = tempfile::tempdir().context("creating a scratch directory")?;
            let branches = |main| aergo_node::branches::StoredBranches::sources(&data_dir, main);
            let report = verify_by_replay(&data_dir, &genesis, scratch.path(), Some(&branches))?;
            println!(
                "height {}\nreplayed state root {}\nstored state root   {}",
                report.height, report.replayed_root, report.stored_root
            );
            if report.replayed_root != report.stored_root {
                anyhow::bail!("state roots differ at height {}", report.height);
            }
            println!("ok");
            return Ok(());
        }
        None if cli.dev => {
            let mut config = prepare_devnet(&cli.data_dir)?;
            config.producer.empty_blocks |= cli.empty_blocks;
            config
        }
        None => anyhow::bail!("nothing to do: use --dev, `init` or `run` (see --help)"),
    };
    init_tracing(&config.log.level);
    if let Some(addr) = cli.rpc_listen {
        config.rpc.listen = addr;
    }
    if let Some(bytes) = cli.segment_bytes {
        config.storage.segment_bytes = bytes;
    }
    if cli.no_io_uring {
        config.storage.io_uring = false;
    }
    config.validate().map_err(|e| anyhow::anyhow!("invalid settings: {e}"))?;
    let node = RunningNode::start(config).await?;
    // Before the announcement: whoever reads it may stop the node at once.
    let signals = Signals::install()?;
    println!("AERGO_RPC=http://{}", node.rpc_addr);
    let chain_stopped = tokio::select! {
        _ = signals.wait() => false,
        _ = node.chain_stopped() => true,
    };
    if chain_stopped {
        tracing::error!("the chain thread has stopped (why is logged above): the node stops, for its supervisor to start it again");
    }
    node.shutdown().await?;
    if chain_stopped {
        anyhow::bail!("the chain thread stopped: see the log above for why");
    }
    Ok(())
}
