//! `aergo-node`: the AERGO Chain node daemon.
//!
//! - `aergo-node --dev --data-dir DIR [--rpc-listen ADDR]`: a single-producer local chain (created on
//!   first start, continued after).
//! - `aergo-node init --genesis FILE --data-dir DIR`: creates a chain from a genesis file.
//! - `aergo-node run --config FILE`: runs a node from its config.
//! - `aergo-node testnet --nodes N --out DIR`: the files for an N-producer network (see
//!   `aergo_node::testnet`).
//! - `aergo-node verify --data-dir DIR` (or `--config FILE`): replays the block log from genesis and
//!   compares the state root (the node stopped).
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
    /// Data directory for --dev.
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
        #[arg(long, default_value_t = 20)]
        timeout_secs: u64,
    },
    /// Re-execute the whole block log from genesis in a scratch directory and check that it reaches
    /// the stored state root (the node must be stopped).
    Verify {
        /// The node's data directory. Its genesis is the one `DIR/config.toml` names when that file
        /// exists (as `init` and `testnet` write it), else `DIR/genesis.toml`.
        #[arg(long, required_unless_present = "config", conflicts_with = "config")]
        data_dir: Option<PathBuf>,
        /// The node's config file: the data directory and the genesis it names.
        #[arg(long)]
        config: Option<PathBuf>,
    },
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

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
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
        Some(Command::NetProbe { target, chain_id, attack, timeout_secs }) => {
            init_tracing("warn");
            let report = aergo_net::probe::probe(
                target.clone(),
                chain_id,
                attack,
                std::time::Duration::from_secs(*timeout_secs),
            )
            .await?;
            println!("{}", serde_json::to_string(&report)?);
            return Ok(());
        }
        Some(Command::Testnet { nodes, out, hosts, block_interval_ms, chain_id, base_port }) => {
            let opts = aergo_node::testnet::TestnetOptions {
                nodes: *nodes,
                out: out.clone(),
                hosts: hosts.clone(),
                block_interval_ms: *block_interval_ms,
                chain_id: chain_id.clone(),
                base_port: *base_port,
            };
            let written = aergo_node::testnet::write_testnet(&opts)?;
            for n in &written {
                println!("{}  rpc {}  p2p {}", n.config.display(), n.rpc, n.p2p);
            }
            println!("nodes: {}", out.join("nodes.json").display());
            return Ok(());
        }
        Some(Command::Verify { data_dir, config }) => {
            init_tracing("warn");
            let (data_dir, genesis_path) = verify_paths(data_dir.as_deref(), config.as_deref())?;
            let genesis = Genesis::load(&genesis_path)?;
            let scratch = tempfile::tempdir().context("creating a scratch directory")?;
            let report = verify_by_replay(&data_dir, &genesis, scratch.path())?;
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
            config.producer.empty_blocks = cli.empty_blocks;
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
    println!("AERGO_RPC=http://{}", node.rpc_addr);
    wait_for_signal().await?;
    node.shutdown().await?;
    Ok(())
}
