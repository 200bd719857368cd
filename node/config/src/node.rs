//! Node configuration (TOML). Every setting has a default; `config.example.toml` at the crate root
//! documents each one and is checked against [`NodeConfig`] by a test.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path} is invalid: {reason}")]
    Invalid { path: String, reason: String },
    /// TOML holds text only: a path that is not UTF-8 (possible on Linux) cannot be written.
    #[error("the config cannot be written as TOML: {0} (are all paths UTF-8?)")]
    Write(#[from] toml::ser::Error),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Where the chain lives: `state/`, `blocks/`, keys. Relative paths are relative to the config file.
    pub data_dir: PathBuf,
    /// The genesis file; relative to `data_dir` when not absolute.
    pub genesis: PathBuf,
    /// The hash of the genesis block this node must be on (hex), when the operator knows it: the
    /// node refuses to start, and leaves no chain behind, when the genesis file makes another one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub genesis_hash: Option<String>,
    /// When the genesis file is absent: take it from the bootstrap peers, checked against
    /// `genesis_hash`, and write it there (once; the file is used from then on).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub genesis_from_peers: bool,
    pub rpc: RpcConfig,
    pub producer: ProducerConfig,
    pub mempool: MempoolConfig,
    pub storage: StorageConfig,
    pub exec: ExecConfig,
    pub admission: AdmissionConfig,
    pub log: LogConfig,
    pub p2p: P2pConfig,
    pub branches: BranchesConfig,
}

/// The branches this node holds besides `main` (`docs/branches.md`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BranchesConfig {
    /// Branch names; `aergo branch track NAME` adds more, kept in `<data_dir>/branches/tracked`.
    pub track: Vec<String>,
}

/// A hosted repository's own settings (`data_dir/repos/<name>/repo.toml`,
/// `docs/repositories.md`): the sections of a node's config a repository has for itself. The
/// data directory, genesis, `[rpc]`, `[exec]` and `[log]` are the node's; naming them here is an
/// error that says so.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RepoSettings {
    pub p2p: P2pConfig,
    pub producer: ProducerConfig,
    pub mempool: MempoolConfig,
    pub admission: AdmissionConfig,
    pub storage: StorageConfig,
    pub branches: BranchesConfig,
}

impl Default for RepoSettings {
    fn default() -> Self {
        RepoSettings {
            p2p: P2pConfig::default(),
            producer: ProducerConfig::default(),
            mempool: MempoolConfig::default(),
            // A hosted repository is usually small: one verifier thread unless told otherwise.
            admission: AdmissionConfig { threads: Some(1), ..AdmissionConfig::default() },
            storage: StorageConfig::default(),
            branches: BranchesConfig::default(),
        }
    }
}

impl RepoSettings {
    /// Parses `repo.toml`'s text; a field a repository cannot set is named in the error.
    pub fn parse(text: &str) -> Result<RepoSettings, String> {
        const NODE_ONLY: [&str; 7] =
            ["data_dir", "genesis", "genesis_hash", "genesis_from_peers", "rpc", "exec", "log"];
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        if let Some(k) = table.keys().find(|k| NODE_ONLY.contains(&k.as_str())) {
            return Err(format!(
                "`{k}` is the node's, not a repository's: a repository has [p2p], [producer], \
                 [mempool], [admission], [storage] and [branches]"
            ));
        }
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The config a repository in `dir` runs with: the node's, with this repository's data
    /// directory, genesis (`dir/genesis.toml`) and sections.
    pub fn apply(&self, node: &NodeConfig, dir: &Path) -> NodeConfig {
        NodeConfig {
            data_dir: dir.to_path_buf(),
            genesis: PathBuf::from("genesis.toml"),
            genesis_hash: None,
            genesis_from_peers: false,
            p2p: self.p2p.clone(),
            producer: self.producer.clone(),
            mempool: self.mempool.clone(),
            admission: self.admission.clone(),
            storage: self.storage.clone(),
            branches: self.branches.clone(),
            ..node.clone()
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("/var/lib/aergo"),
            genesis: PathBuf::from("genesis.toml"),
            genesis_hash: None,
            genesis_from_peers: false,
            rpc: RpcConfig::default(),
            producer: ProducerConfig::default(),
            mempool: MempoolConfig::default(),
            storage: StorageConfig::default(),
            exec: ExecConfig::default(),
            admission: AdmissionConfig::default(),
            log: LogConfig::default(),
            p2p: P2pConfig::default(),
            branches: BranchesConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RpcConfig {
    /// Address of the JSON-RPC server (HTTP and WebSocket on one port).
    pub listen: SocketAddr,
    /// Largest request body in bytes (a JSON-RPC batch counts as one request).
    pub max_request_bytes: u32,
    /// Largest response body in bytes.
    pub max_response_bytes: u32,
    /// Most open connections; more are refused.
    pub max_connections: u32,
    /// Most calls in one JSON-RPC batch.
    pub max_batch: u32,
    /// Most WebSocket subscriptions per connection.
    pub max_subscriptions_per_connection: u32,
    /// Gas one `query` may use (reads are charged as in a transaction); at most 50 000 000.
    pub query_gas: u64,
    /// Wall-clock time one `query` may run, in milliseconds; the engine stops at its next check.
    pub query_timeout_ms: u64,
    /// Threads that run queries (0: half the cores, at least 2). They run at a lower CPU priority
    /// (`query_nice`) than block production, which never waits for them.
    pub query_threads: u32,
    /// Queries waiting for a thread; past it (or after `query_queue_ms` waiting) the answer is busy.
    pub query_queue: u32,
    pub query_queue_ms: u64,
    /// Queries one connection may have running or waiting at a time.
    pub query_per_connection: u32,
    /// Nice value of the query threads (0 to 19).
    pub query_nice: i32,
    /// Origins (`scheme://host[:port]`, or `*` for any) whose web pages may call the RPC from a
    /// browser. A request that carries an `Origin` header not listed is refused (HTTP 403), so a
    /// page on another site cannot use a node it reaches; requests without one (the CLI, curl,
    /// servers) are served as always. Default none.
    pub cors_origins: Vec<String>,
    /// Calls per second one client (IP address) may make, and how many at once above that rate
    /// (a token bucket); 0: no limit. Past it: HTTP 429, or error -32011 for each call over.
    pub rate_limit_per_second: u32,
    /// The bucket's size (0: one second's worth).
    pub rate_limit_burst: u32,
    /// Clients the limit never applies to (the box's own console and agent: loopback).
    pub rate_limit_exempt: Vec<std::net::IpAddr>,
    /// Clients that may call the admin methods (`admin_add_repository`,
    /// `admin_remove_repository`): the box itself by default. Others get -32020.
    pub admin_from: Vec<std::net::IpAddr>,
    /// A second listener serving the same RPC over TLS (https:// and wss://).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RpcTlsConfig>,
}

/// `[rpc.tls]`: where the TLS listener listens and its certificate chain and key (PEM; relative
/// to `data_dir` when not absolute).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RpcTlsConfig {
    pub listen: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl RpcConfig {
    /// Query threads: as configured, or half the cores and at least 2.
    pub fn query_thread_count(&self) -> usize {
        match self.query_threads {
            0 => (std::thread::available_parallelism().map_or(2, |n| n.get()) / 2).max(2),
            n => n as usize,
        }
    }
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7845)),
            max_request_bytes: 16 * 1024 * 1024,
            max_response_bytes: 32 * 1024 * 1024,
            max_connections: 256,
            max_batch: 2_000,
            max_subscriptions_per_connection: 16,
            query_gas: 5_000_000,
            query_timeout_ms: 1_000,
            query_threads: 0,
            query_queue: 64,
            query_queue_ms: 1_000,
            query_per_connection: 8,
            query_nice: 10,
            cors_origins: Vec::new(),
            rate_limit_per_second: 0,
            rate_limit_burst: 0,
            rate_limit_exempt: vec![
                std::net::IpAddr::from([127, 0, 0, 1]),
                std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ],
            admin_from: vec![
                std::net::IpAddr::from([127, 0, 0, 1]),
                std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ],
            tls: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerConfig {
    /// Produce blocks in this key's slots (a genesis producer, or a candidate once elected).
    pub enabled: bool,
    /// The producer's key file, relative to `data_dir` when not absolute.
    pub key_file: PathBuf,
    /// File holding the key file's password, when it is encrypted.
    pub password_file: Option<PathBuf>,
    /// Produce a block every slot even without transactions.
    pub empty_blocks: bool,
    /// Produce only while the kernel says the system clock is synchronized (an NTP daemon such as
    /// chrony has set it): a producer whose clock is off makes blocks that peers refuse. On by
    /// default on the appliance (Setup writes it); off for development machines without NTP.
    pub require_clock_sync: bool,
    /// Doppelganger protection: after a start that follows more than this many slots without
    /// signing, listen this many slots for blocks signed with this key elsewhere before producing;
    /// one seen stops production (two boxes with one key would sign a slot twice and be jailed).
    /// 0 turns it off.
    pub doppelganger_slots: u64,
    /// Test-only fault injection: sign two different blocks in each own slot, so that the network's
    /// equivocation handling can be tested. Only in builds with the `test-hooks` feature: elsewhere
    /// the key is unknown and the config refused.
    #[cfg(feature = "test-hooks")]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub equivocate_for_tests: bool,
    /// Test-only fault injection: the chain thread stops by itself once the head reaches this
    /// height, as it does when it cannot go on (a failed disk, a Raft log it cannot write), so
    /// that what the process does then can be tested. Only with the `test-hooks` feature.
    #[cfg(feature = "test-hooks")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_chain_at_for_tests: Option<u64>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            enabled: false,
            key_file: PathBuf::from("producer.key"),
            password_file: None,
            empty_blocks: false,
            require_clock_sync: false,
            doppelganger_slots: 3,
            #[cfg(feature = "test-hooks")]
            equivocate_for_tests: false,
            #[cfg(feature = "test-hooks")]
            stop_chain_at_for_tests: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct P2pConfig {
    /// Join a p2p network (off: a node on its own, as a one-producer devnet is).
    pub enabled: bool,
    /// Multiaddrs to listen on.
    pub listen: Vec<String>,
    /// Peers to dial at start and whenever they are not connected: `/ip4/ADDR/tcp/PORT`, with
    /// `/p2p/PEER_ID` when the peer's id is known (then a peer answering with another id is refused).
    pub bootstrap: Vec<String>,
    /// The address peers are told to dial this node at, when it is not one it listens on (NAT, port
    /// forwarding): `/ip4/ADDR/tcp/PORT` or `/dns4/NAME/tcp/PORT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_address: Option<String>,
    /// Most connected peers.
    pub max_peers: u32,
    /// How far ahead of this node's clock a gossiped block's slot may be.
    pub max_clock_drift_ms: u64,
    /// A node that starts with no chain takes a snapshot from its bootstrap peers when their final
    /// height is at least this, instead of replaying every block from genesis (0: never).
    #[serde(default = "default_snapshot_after_blocks")]
    pub snapshot_after_blocks: u64,
}

fn default_snapshot_after_blocks() -> u64 {
    10_000
}

impl Default for P2pConfig {
    fn default() -> Self {
        P2pConfig {
            enabled: false,
            listen: vec!["/ip4/0.0.0.0/tcp/7846".into()],
            bootstrap: Vec::new(),
            external_address: None,
            max_peers: 50,
            max_clock_drift_ms: 500,
            snapshot_after_blocks: default_snapshot_after_blocks(),
        }
    }
}

/// The parsed addresses of a [`P2pConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct P2pAddresses {
    pub listen: Vec<multiaddr::Multiaddr>,
    pub bootstrap: Vec<multiaddr::Multiaddr>,
    pub external: Option<multiaddr::Multiaddr>,
}

/// A multiaddr of TCP over IPv4, IPv6 or DNS: what the node listens on, dials and announces.
/// `key` names the setting in the error (`p2p.bootstrap[1]`).
pub fn parse_tcp_multiaddr(key: &str, text: &str) -> Result<multiaddr::Multiaddr, String> {
    use multiaddr::Protocol;
    let addr: multiaddr::Multiaddr =
        text.trim().parse().map_err(|e| format!("{key}: {text:?} is not a multiaddr: {e}"))?;
    let mut parts = addr.iter();
    let host = matches!(
        parts.next(),
        Some(Protocol::Ip4(_) | Protocol::Ip6(_) | Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_))
    );
    let tcp = matches!(parts.next(), Some(Protocol::Tcp(_)));
    let rest_ok = parts.all(|p| matches!(p, Protocol::P2p(_)));
    if !(host && tcp && rest_ok) {
        return Err(format!(
            "{key}: {text:?} is not a TCP address: write /ip4/ADDR/tcp/PORT (or /ip6/…, /dns4/NAME/…), \
             optionally followed by /p2p/PEER_ID"
        ));
    }
    Ok(addr)
}

impl P2pConfig {
    /// The listen, bootstrap and external addresses, parsed; an error names the setting.
    pub fn addresses(&self) -> Result<P2pAddresses, String> {
        let parse = |what: &str, list: &[String]| -> Result<Vec<multiaddr::Multiaddr>, String> {
            list.iter()
                .enumerate()
                .map(|(i, a)| parse_tcp_multiaddr(&format!("p2p.{what}[{i}]"), a))
                .collect()
        };
        let listen = parse("listen", &self.listen)?;
        for (i, l) in listen.iter().enumerate() {
            if l.iter().any(|p| matches!(p, multiaddr::Protocol::P2p(_))) {
                return Err(format!(
                    "p2p.listen[{i}]: {l} names a peer id: a listen address is a host and a port only"
                ));
            }
        }
        let bootstrap = parse("bootstrap", &self.bootstrap)?;
        let external = self
            .external_address
            .as_deref()
            .map(|a| parse_tcp_multiaddr("p2p.external_address", a))
            .transpose()?;
        Ok(P2pAddresses { listen, bootstrap, external })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolConfig {
    /// Most transactions in the pool.
    pub max_txs: usize,
    /// Most encoded bytes in the pool.
    pub max_bytes: usize,
    /// Most transactions from one sender.
    pub max_per_account: usize,
    /// How far ahead of the committed nonce a transaction may be.
    pub max_nonce_gap: u64,
    /// Fee increase (percent) needed to replace a queued transaction with the same nonce.
    pub replace_fee_bump_percent: u32,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_txs: 200_000,
            max_bytes: 256 * 1024 * 1024,
            max_per_account: 10_000,
            max_nonce_gap: 10_000,
            replace_fee_bump_percent: 10,
        }
    }
}

/// How much of the log to verify on open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Verify {
    /// Every checksum of every segment (reads the whole log once).
    #[default]
    Full,
    /// Checksums from the segment of the last committed record on; headers only before it.
    Tail,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Size at which the block log starts a new segment file.
    pub segment_bytes: u64,
    /// Write the block log through io_uring (falls back to pwrite by itself where io_uring is refused).
    pub io_uring: bool,
    /// `full`: verify every block-log checksum at start; `tail`: only from the last committed block on.
    pub verify_log_on_start: Verify,
    /// MiB of memory for the newest versions of recently written state values, in front of the
    /// state database (0: none; reads are then all database reads).
    pub state_cache_mb: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            segment_bytes: 64 * 1024 * 1024,
            io_uring: true,
            verify_log_on_start: Verify::Full,
            state_cache_mb: 128,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionConfig {
    /// Signature-checking threads (unset: one per core).
    pub threads: Option<usize>,
    /// Transactions waiting for admission; when full, `send_tx` answers "busy".
    pub queue: usize,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig { threads: None, queue: 20_000 }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ExecConfig {
    /// Cores the execution workers are pinned to, one worker each, e.g. `"2-7"` or `"1,3"`.
    /// Unset: every core this process may use but the first. One core: sequential execution.
    pub cores: Option<String>,
}

impl ExecConfig {
    pub fn resolve_cores(&self) -> Result<Vec<usize>, String> {
        match &self.cores {
            Some(spec) => crate::cores::parse_cores(spec),
            None => Ok(crate::cores::default_cores()),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `aergo_consensus=debug,info`. `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into() }
    }
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        let mut config: NodeConfig = toml::from_str(&text)
            .map_err(|e| ConfigError::Invalid { path: path.display().to_string(), reason: e.to_string() })?;
        if config.data_dir.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            config.data_dir = base.join(&config.data_dir);
        }
        config
            .validate()
            .map_err(|reason| ConfigError::Invalid { path: path.display().to_string(), reason })?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.storage.segment_bytes < 4096 {
            return Err("storage.segment_bytes must be at least 4096".into());
        }
        if self.storage.state_cache_mb > 1 << 20 {
            return Err("storage.state_cache_mb must be at most 1048576 (1 TiB)".into());
        }
        self.exec.resolve_cores().map_err(|e| format!("exec.cores: {e}"))?;
        for (i, name) in self.branches.track.iter().enumerate() {
            if let Some(why) =
                aergo_primitives::refs::name_problem(name, aergo_primitives::types::MAIN_BRANCH)
            {
                return Err(format!("branches.track[{i}]: {name:?}: {why}"));
            }
        }
        if let Some(hash) = &self.genesis_hash {
            if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("genesis_hash {hash:?} is not a block hash: 64 hexadecimal digits"));
            }
        }
        if self.genesis_from_peers
            && (self.genesis_hash.is_none() || !self.p2p.enabled || self.p2p.bootstrap.is_empty())
        {
            return Err(
                "genesis_from_peers needs genesis_hash, p2p.enabled and p2p.bootstrap: the genesis is \
                        taken from the bootstrap peers and checked against the hash"
                    .into(),
            );
        }
        let q = &self.rpc;
        if q.query_gas == 0 || q.query_gas > 50_000_000 {
            return Err("rpc.query_gas must be 1 to 50000000 (the most a transaction may use)".into());
        }
        if q.query_timeout_ms == 0 || q.query_timeout_ms > 600_000 {
            return Err("rpc.query_timeout_ms must be 1 to 600000".into());
        }
        if q.query_threads > 256 || q.query_queue == 0 || q.query_per_connection == 0 {
            return Err("rpc.query_threads must be at most 256, rpc.query_queue and rpc.query_per_connection at least 1".into());
        }
        if !(0..=19).contains(&q.query_nice) {
            return Err("rpc.query_nice must be 0 to 19".into());
        }
        if self.rpc.max_batch == 0 || self.rpc.max_connections == 0 {
            return Err("rpc.max_batch and rpc.max_connections must be at least 1".into());
        }
        for origin in &self.rpc.cors_origins {
            if let Some(why) = origin_problem(origin) {
                return Err(format!("rpc.cors_origins: {origin:?}: {why}"));
            }
        }
        if let Some(tls) = &self.rpc.tls {
            if tls.listen == self.rpc.listen && tls.listen.port() != 0 {
                return Err("rpc.tls.listen must differ from rpc.listen".into());
            }
        }
        if self.p2p.enabled {
            self.p2p.addresses()?;
            if self.p2p.max_peers == 0 {
                return Err("p2p.max_peers must be at least 1".into());
            }
        }
        Ok(())
    }

    pub fn to_toml(&self) -> Result<String, ConfigError> {
        Ok(toml::to_string_pretty(self)?)
    }

    fn in_data_dir(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.data_dir.join(p)
        }
    }

    pub fn genesis_path(&self) -> PathBuf {
        self.in_data_dir(&self.genesis)
    }

    pub fn key_path(&self) -> PathBuf {
        self.in_data_dir(&self.producer.key_file)
    }

    /// The RPC's TLS certificate and key files, resolved against `data_dir`.
    pub fn rpc_tls_paths(&self) -> Option<(PathBuf, PathBuf)> {
        self.rpc.tls.as_ref().map(|t| (self.in_data_dir(&t.cert_file), self.in_data_dir(&t.key_file)))
    }
}

/// Why `origin` is not an origin a browser sends (`scheme://host[:port]`, nothing after), if it
/// is not; `*` is any origin.
pub fn origin_problem(origin: &str) -> Option<&'static str> {
    if origin == "*" {
        return None;
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Some("not scheme://host[:port]");
    };
    if scheme != "http" && scheme != "https" {
        return Some("the scheme must be http or https");
    }
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ', '@']) {
        return Some("an origin is scheme://host[:port] with no path, query, user or trailing slash");
    }
    if !rest.is_ascii() || rest.chars().any(|c| c.is_ascii_control()) {
        return Some("not ASCII");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for ok in ["*", "https://app.example", "http://localhost:3000", "http://127.0.0.1:8080"] {
            assert_eq!(origin_problem(ok), None, "{ok}");
        }
        for bad in ["app.example", "ftp://x", "https://app.example/", "https://a/b", "https://", "http://u@h"]
        {
            assert!(origin_problem(bad).is_some(), "{bad}");
        }
        let mut c = NodeConfig::default();
        c.rpc.cors_origins = vec!["https://ok.example".into(), "https://bad.example/path".into()];
        assert!(c.validate().unwrap_err().contains("rpc.cors_origins: \"https://bad.example/path\""));
        let text = "[rpc]\nrate_limit_per_second = 50\n[rpc.tls]\nlisten = \"0.0.0.0:7846\"\ncert_file = \"c.pem\"\nkey_file = \"/k.pem\"\n";
        let c: NodeConfig = toml::from_str(text).unwrap();
        let (cert, key) = c.rpc_tls_paths().unwrap();
        assert_eq!((cert, key), (c.data_dir.join("c.pem"), PathBuf::from("/k.pem")));
        assert_eq!(c.rpc.rate_limit_exempt.len(), 2, "loopback stays exempt by default");
    }

    #[test]
    fn example_config_parses_to_the_defaults() {
        let text = include_str!("../../config.example.toml");
        let parsed: NodeConfig = toml::from_str(text).unwrap();
        assert_eq!(parsed, NodeConfig::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<NodeConfig>("colour = 1").is_err());
        assert!(toml::from_str::<NodeConfig>("[rpc]\nlisten = \"nowhere\"").is_err());
        let c: NodeConfig = toml::from_str("[storage]\nsegment_bytes = 10").unwrap();
        assert!(c.validate().is_err());
        let c: NodeConfig = toml::from_str("[storage]\nstate_cache_mb = 99999999").unwrap();
        assert!(c.validate().unwrap_err().contains("state_cache_mb"));
        let c: NodeConfig = toml::from_str("[branches]\ntrack = [\"ok\", \"Bad Name\"]").unwrap();
        assert!(c.validate().unwrap_err().starts_with("branches.track[1]: \"Bad Name\""));
    }

    #[test]
    fn p2p_addresses_are_checked_and_errors_name_the_setting() {
        let p2p = |toml_text: &str| toml::from_str::<NodeConfig>(toml_text).unwrap().p2p.addresses();
        let ok = p2p(
            "[p2p]\nbootstrap = [\"/ip4/10.0.0.1/tcp/7846\", \"/dns4/box1.example/tcp/7846/p2p/12D3KooWLebXpVqwmgSYtdmHykdcJGXa78M2WigewjW4496GfCQg\"]\nexternal_address = \"/ip4/203.0.113.7/tcp/7846\"",
        )
        .unwrap();
        assert_eq!(ok.bootstrap.len(), 2, "a bootstrap address needs no peer id");
        assert_eq!(ok.external.unwrap().to_string(), "/ip4/203.0.113.7/tcp/7846");
        let e = p2p("[p2p]\nbootstrap = [\"/ip4/10.0.0.1/tcp/7846\", \"/ip4/10.0.0.2/tcp\"]").unwrap_err();
        assert!(e.starts_with("p2p.bootstrap[1]: \"/ip4/10.0.0.2/tcp\" is not a multiaddr"), "{e}");
        let e = p2p("[p2p]\nbootstrap = [\"/ip4/10.0.0.2/udp/7846\"]").unwrap_err();
        assert!(e.contains("p2p.bootstrap[0]") && e.contains("is not a TCP address"), "{e}");
        let e = p2p("[p2p]\nlisten = [\"10.0.0.1:7846\"]").unwrap_err();
        assert!(e.starts_with("p2p.listen[0]"), "{e}");
        let e = p2p("[p2p]\nexternal_address = \"/ip4/1.2.3.4\"").unwrap_err();
        assert!(e.starts_with("p2p.external_address"), "{e}");
    }

    #[test]
    fn a_config_that_toml_cannot_hold_is_an_error_not_an_empty_file() {
        use std::os::unix::ffi::OsStrExt;
        let text = NodeConfig::default().to_toml().unwrap();
        assert_eq!(toml::from_str::<NodeConfig>(&text).unwrap(), NodeConfig::default());
        let bad = std::ffi::OsStr::from_bytes(b"/var/lib/\xff");
        let config = NodeConfig { data_dir: PathBuf::from(bad), ..NodeConfig::default() };
        assert!(matches!(config.to_toml(), Err(ConfigError::Write(_))));
    }
}
