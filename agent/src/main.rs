//! `aergo-agent`: telemetry for Horde. `aergo-agent --help` lists the flags; every flag is also a key
//! of the `--config` TOML file (`agent/agent.example.toml`).

use aergo_agent::config::AgentConfig;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "aergo-agent", version, about = "Resource, chain and health telemetry for Horde")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML file with the same settings as these flags (flags win).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The node's JSON-RPC URL.
    #[arg(long)]
    node: Option<String>,
    /// Address to serve Horde on (default 0.0.0.0:7850).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// File holding the read token (telemetry, history, metrics, audit).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// File holding the admin token (also the actions).
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Directory of the audit log of actions.
    #[arg(long)]
    audit: Option<PathBuf>,
    /// The root the box's settings files live under (default /).
    #[arg(long)]
    settings_root: Option<PathBuf>,
    /// Directory of the durable sample spool.
    #[arg(long)]
    spool: Option<PathBuf>,
    /// Directory of the box's service logs, served at /v1/logs (default /var/log/aergo).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Time between samples (`1s`, `500ms`).
    #[arg(long, value_parser = humantime::parse_duration)]
    interval: Option<Duration>,
    /// The node's identity key file (`<node data dir>/node.key`).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// The node's data directory (default: as the node reports it).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Requests per second per client address (0: unlimited).
    #[arg(long)]
    rate_per_s: Option<u32>,
    /// Time a client has to send its request head (`5s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    header_timeout: Option<Duration>,
    /// An unsynchronized system clock makes the `clock` check degraded (the appliance, where
    /// chrony runs).
    #[arg(long)]
    require_clock_sync: bool,
    /// The TLS certificate (PEM; made with its key at the first start when neither exists).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM).
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP instead of HTTPS (only where the network is trusted: provision.toml
    /// `[agent] plain_http = true`, development machines, tests).
    #[arg(long)]
    plain_http: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Writes a new random bearer token to FILE (mode 0600) and prints it once.
    GenToken { file: PathBuf },
    /// Checks an update bundle as install-update does before installing it: its signature (`rauc
    /// info`, against the system's keyring) and its version, newer than the running one
    /// (`/etc/os-release` VERSION_ID) unless --allow-downgrade. Exit 0 with the version, else 1 and
    /// why (the box's USB update service runs it).
    CheckBundle {
        file: PathBuf,
        #[arg(long)]
        allow_downgrade: bool,
        #[arg(long, default_value = "rauc")]
        rauc: String,
        #[arg(long, default_value = "/etc/os-release")]
        os_release: PathBuf,
    },
}

fn gen_token(file: &std::path::Path) -> anyhow::Result<()> {
    use rand::RngCore;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    writeln!(f, "{token}")?;
    f.sync_all()?;
    println!("{token}");
    Ok(())
}

/// The error and its causes, each once (many errors already include their source in their message).
fn describe(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text = format!("{text}: {c}");
        }
    }
    text
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

fn check_bundle(file: &Path, allow_downgrade: bool, rauc: &str, os_release: &Path) -> std::process::ExitCode {
    use aergo_agent::update;
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        eprintln!("error: cannot start the runtime");
        return std::process::ExitCode::from(1);
    };
    let checked = runtime.block_on(update::bundle_info(rauc, file)).and_then(|info| {
        let running = update::running_version(os_release);
        update::version_allowed(&info.version, running.as_deref(), allow_downgrade).map(|()| info.version)
    });
    match checked {
        Ok(version) => {
            println!("{version}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::from(1)
        }
    }
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none())
        .init();
    let cli = Cli::parse();
    if let Some(Command::GenToken { file }) = &cli.command {
        return match gen_token(file) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}", describe(&e));
                std::process::ExitCode::from(1)
            }
        };
    }
    if let Some(Command::CheckBundle { file, allow_downgrade, rauc, os_release }) = &cli.command {
        return check_bundle(file, *allow_downgrade, rauc, os_release);
    }
    let mut config = match &cli.config {
        Some(path) => match AgentConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::from(2);
            }
        },
        None => AgentConfig::default(),
    };
    if let Some(v) = cli.node {
        config.node = v;
    }
    if let Some(v) = cli.listen {
        config.listen = v;
    }
    if let Some(v) = cli.token_file {
        config.token_file = v;
    }
    if let Some(v) = cli.spool {
        config.spool = v;
    }
    if let Some(v) = cli.admin_token_file {
        config.admin_token_file = Some(v);
    }
    if let Some(v) = cli.audit {
        config.audit = v;
    }
    if let Some(v) = cli.settings_root {
        config.settings_root = v;
    }
    if let Some(v) = cli.tls_cert {
        config.tls_cert = v;
    }
    if let Some(v) = cli.tls_key {
        config.tls_key = v;
    }
    if cli.plain_http {
        config.plain_http = true;
    }
    if let Some(v) = cli.log_dir {
        config.log_dir = v;
    }
    if let Some(v) = cli.interval {
        config.interval = v;
    }
    if let Some(v) = cli.key_file {
        config.key_file = v;
    }
    if let Some(v) = cli.data_dir {
        config.data_dir = Some(v);
    }
    if let Some(v) = cli.rate_per_s {
        config.limits.rate_per_s = v;
    }
    if cli.require_clock_sync {
        config.health.clock_sync_required = true;
    }
    if let Some(v) = cli.header_timeout {
        config.limits.header_timeout = v;
    }
    // Two workers: sampling and a few dozen pollers need no more, and the agent stays small.
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(aergo_agent::run(config, wait_for_signal())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            std::process::ExitCode::from(1)
        }
    }
}
