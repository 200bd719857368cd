//! Agent settings: every command-line flag is also a key of the TOML file given with `--config`; a flag
//! given on the command line wins over the file, the file over the defaults.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// The node's JSON-RPC URL.
    pub node: String,
    /// Where Horde reaches the agent.
    pub listen: SocketAddr,
    /// File holding the read token Horde presents (one line; at least 16 characters): telemetry,
    /// history, metrics, the audit log. Reread when it changes.
    pub token_file: PathBuf,
    /// File holding the admin token (also the actions); none: no actions on this box. Reread when
    /// it changes.
    pub admin_token_file: Option<PathBuf>,
    /// Directory of the audit log of actions.
    pub audit: PathBuf,
    /// The commands actions run.
    pub actions: ActionsConfig,
    /// The root the box's settings files live under (`/` on the box): `apply-settings` and
    /// `revert-settings` write there, as the console's Setup does.
    pub settings_root: PathBuf,
    /// Directory of the durable sample spool.
    pub spool: PathBuf,
    /// Directory of the box's service logs (`NAME.log`, rotated `NAME.log.1`, `.2`): `/v1/logs`.
    pub log_dir: PathBuf,
    /// The kernel's log device (`/v1/logs?source=system`).
    pub kmsg: PathBuf,
    /// Time between samples.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// The node's identity key (`<data_dir>/node.key`); answers to `/v1/*` are signed with it.
    pub key_file: PathBuf,
    /// The node's data directory: its filesystem is reported as the data partition. Default: what the
    /// node says in `node_info`.
    pub data_dir: Option<PathBuf>,
    /// Process name to look for when the node's RPC does not answer.
    pub node_process_name: String,
    /// Timeout of each RPC call to the node.
    #[serde(with = "humantime_serde")]
    pub node_timeout: Duration,
    /// Spool size cap in bytes (oldest samples go first).
    pub spool_max_bytes: u64,
    /// Spool age cap.
    #[serde(with = "humantime_serde")]
    pub spool_max_age: Duration,
    pub health: HealthConfig,
    pub limits: LimitsConfig,
    pub support: SupportConfig,
    pub update: crate::update::UpdateConfig,
    /// The TLS certificate and key the agent serves HTTPS with (PEM; both made at the first start
    /// when neither exists).
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// Plain HTTP instead of HTTPS.
    pub plain_http: bool,
}

/// What `GET /v1/support-bundle` puts in besides the logs, the node's answers and the telemetry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SupportConfig {
    /// Configuration files, with the values of secret-named keys redacted (files named `*.key`,
    /// `*.token`, `*.pem` or `*keystore*` are never read).
    pub config_files: Vec<PathBuf>,
    /// The command whose output is the bundle's RAUC status (empty: none on this box).
    pub rauc_status: Vec<String>,
    /// The newest bytes kept of each log file.
    pub max_log_bytes: u64,
}

impl Default for SupportConfig {
    fn default() -> Self {
        SupportConfig {
            config_files: [
                "/etc/aergo/node.toml",
                "/boot/provision.toml",
                "/etc/aergo/ntp-servers",
                "/run/aergo/chrony.conf",
                "/etc/os-release",
                "/proc/cmdline",
            ]
            .into_iter()
            .map(PathBuf::from)
            .collect(),
            rauc_status: ["rauc", "status", "--detailed", "--output-format=json"].map(String::from).to_vec(),
            max_log_bytes: 4 << 20,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Fewer free bytes than this share of the data filesystem: degraded (a fifth of it: down).
    pub disk_free_min_pct: f64,
    /// Less available memory than this share: degraded (a third of it: down).
    pub memory_available_min_pct: f64,
    /// Fewer peers than this: degraded (not applied on a single-producer chain).
    pub min_peers: u32,
    /// The last block is fresh while younger than this many block intervals.
    pub block_age_max_intervals: u32,
    /// The finalized height must rise within this many block intervals.
    pub finality_stall_intervals: u32,
    /// Largest tolerated difference between wall-clock and monotonic time over one interval.
    #[serde(with = "humantime_serde")]
    pub clock_jump_max: Duration,
    /// An unsynchronized clock (no NTP server has set it) is degraded: on the appliance, where
    /// chrony runs; off where nothing synchronizes the clock (development machines).
    pub clock_sync_required: bool,
}

/// The commands (program and arguments) the actions run on this box; an empty one: the action
/// answers that it is not configured here.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ActionsConfig {
    pub restart_node: Vec<String>,
    pub reboot: Vec<String>,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        ActionsConfig {
            restart_node: vec!["aergo-ctl".into(), "restart".into(), "node".into()],
            reboot: vec!["reboot".into()],
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Open connections at most; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Requests per second per client address (0: no limit), with this burst.
    pub rate_per_s: u32,
    pub rate_burst: u32,
    /// Largest request head (request line and headers) in bytes.
    pub max_header_bytes: usize,
    /// Largest request body in bytes (an action's).
    pub max_body_bytes: usize,
    /// A client must send its request head within this time.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A request must be answered within this time.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Most samples one `history` answer carries.
    pub max_history: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            node: "http://127.0.0.1:7845".into(),
            listen: SocketAddr::from(([0, 0, 0, 0], 7850)),
            token_file: PathBuf::from("/etc/aergo/agent.token"),
            admin_token_file: None,
            audit: PathBuf::from("/var/lib/aergo/agent-audit"),
            actions: ActionsConfig::default(),
            settings_root: PathBuf::from("/"),
            spool: PathBuf::from("/var/lib/aergo/agent-spool"),
            log_dir: PathBuf::from("/var/log/aergo"),
            kmsg: PathBuf::from("/dev/kmsg"),
            interval: Duration::from_secs(1),
            key_file: PathBuf::from("/var/lib/aergo/node/node.key"),
            data_dir: None,
            node_process_name: "aergo-node".into(),
            node_timeout: Duration::from_millis(2000),
            spool_max_bytes: 256 << 20,
            spool_max_age: Duration::from_secs(12 * 3600),
            health: HealthConfig::default(),
            limits: LimitsConfig::default(),
            support: SupportConfig::default(),
            update: crate::update::UpdateConfig::default(),
            tls_cert: PathBuf::from("/var/lib/aergo/agent-tls/cert.pem"),
            tls_key: PathBuf::from("/var/lib/aergo/agent-tls/key.pem"),
            plain_http: false,
        }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            disk_free_min_pct: 10.0,
            memory_available_min_pct: 10.0,
            min_peers: 1,
            block_age_max_intervals: 3,
            finality_stall_intervals: 30,
            clock_jump_max: Duration::from_secs(2),
            clock_sync_required: false,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 256,
            rate_per_s: 50,
            rate_burst: 100,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_history: 1000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.display().to_string(), reason: e.to_string() })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.interval < Duration::from_millis(100) {
            return bad("interval must be at least 100ms");
        }
        if !(self.node.starts_with("http://") || self.node.starts_with("https://")) {
            return bad("node must be an http:// or https:// URL");
        }
        if self.spool_max_bytes < 1 << 20 {
            return bad("spool_max_bytes must be at least 1 MiB");
        }
        if self.limits.max_connections == 0 || self.limits.max_history == 0 {
            return bad("limits.max_connections and limits.max_history must be positive");
        }
        if self.update.check_interval < Duration::from_secs(1) {
            return bad("update.check_interval must be at least 1s");
        }
        if let Some(c) = &self.update.channel {
            if !(c.starts_with("http://") || c.starts_with("https://")) {
                return bad("update.channel must be an http:// or https:// URL");
            }
        }
        if self.support.max_log_bytes < 4096 {
            return bad("support.max_log_bytes must be at least 4096");
        }
        if self.limits.rate_per_s > 0 && self.limits.rate_burst == 0 {
            return bad("limits.rate_burst must be positive when rate_per_s is set");
        }
        Ok(())
    }

    /// Reads the bearer token: one line, at least 16 characters, no whitespace inside.
    pub fn read_token(&self) -> Result<String, ConfigError> {
        crate::auth::read_token_file(&self.token_file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_equals_the_defaults() {
        let text = include_str!("../agent.example.toml");
        let parsed: AgentConfig = toml::from_str(text).unwrap();
        assert_eq!(parsed, AgentConfig::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<AgentConfig>("intervall = \"1s\"").is_err());
        let c: AgentConfig = toml::from_str("interval = \"10ms\"").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("interval"));
        let c: AgentConfig = toml::from_str("node = \"127.0.0.1:7845\"").unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn short_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = AgentConfig { token_file: dir.path().join("t"), ..AgentConfig::default() };
        std::fs::write(&c.token_file, "short\n").unwrap();
        assert!(c.read_token().is_err());
        std::fs::write(&c.token_file, "0123456789abcdef0123\n").unwrap();
        assert_eq!(c.read_token().unwrap(), "0123456789abcdef0123");
        c.token_file = dir.path().join("missing");
        assert!(c.read_token().is_err());
    }
}
