//! The agent's telemetry schema: one [`Sample`] is what the box has, what the chain does, and whether
//! it is well. This is the JSON of `/v1/telemetry` (see `agent/openapi.yaml`), written by the agent and
//! read by the console and by Horde; add fields, never change or remove them without raising
//! [`SCHEMA_VERSION`].
//!
//! A crate of its own so that a reader of samples (the console) depends on the schema and the node's
//! API types alone, never on the agent's server, collectors or spool. [`client`] is the small
//! HTTP client such a reader uses, pinning the agent's TLS certificate.

pub mod client;

use aergo_api::StageMetrics;
use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    pub schema_version: u32,
    /// Increases by one per sample, also across agent restarts.
    pub seq: u64,
    /// RFC 3339, UTC, milliseconds.
    pub collected_at: String,
    pub collected_at_ms: u64,
    pub interval_ms: u64,
    pub host: Host,
    /// The node's process; `null` when it is not running.
    pub node_process: Option<ProcessInfo>,
    /// What the node's RPC said; `null` when it did not answer (see `chain_error`).
    pub chain: Option<ChainSample>,
    pub chain_error: Option<String>,
    pub health: Health,
    pub agent: AgentSelf,
    /// The last update Horde asked for (`install-update`), from download to marked good or rolled
    /// back; `null` when none was ever asked for on this box.
    #[serde(default)]
    pub update: Option<UpdateStatus>,
    /// The update channel the box follows on its own (`[update] channel`); `null` when none.
    #[serde(default)]
    pub update_channel: Option<ChannelStatus>,
}

/// What the box last read from its update channel.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ChannelStatus {
    pub url: String,
    /// Unix ms of the last read (0: not read yet).
    pub checked_ms: u64,
    /// The version the channel offered then.
    pub offered_version: Option<String>,
    /// Why the last read failed.
    pub error: Option<String>,
}

/// An update over the network, as the agent carries it out (`docs/agent.md`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct UpdateStatus {
    pub request_id: String,
    pub url: String,
    /// `downloading`, `verifying`, `installing`, `waiting` (for `reboot_at`, or for the box not to
    /// be a producer of the coming slots), `rebooting`, `booted`, `marked-good`, `rolled-back`;
    /// or it ended: `refused`, `failed`, `cancelled`.
    pub phase: String,
    /// Of the phase, where it has one (downloading, installing).
    pub progress_pct: Option<u8>,
    /// The bundle's version once read (`rauc info`).
    pub version: Option<String>,
    /// The version and slot the box ran when the update was asked for.
    pub from_version: Option<String>,
    pub from_slot: Option<String>,
    pub allow_downgrade: bool,
    /// Unix seconds of the reboot asked for (`reboot_at`), if not at once.
    pub reboot_at: Option<u64>,
    /// What happened last, in words.
    pub message: String,
    pub started_ms: u64,
    pub updated_ms: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Host {
    pub hostname: String,
    /// `PRETTY_NAME` of `/etc/os-release` (`AERGO OS 0.1.0` on the appliance).
    #[serde(default)]
    pub os: Option<String>,
    /// The root slot the appliance booted (`rauc.slot=` on the kernel command line): `A` or `B`.
    #[serde(default)]
    pub boot_slot: Option<String>,
    pub uptime_s: f64,
    pub boot_time_s: u64,
    pub load: [f64; 3],
    pub cpu: CpuSample,
    pub memory: Memory,
    pub filesystems: Vec<Filesystem>,
    pub disks: Vec<Disk>,
    pub network: Vec<Interface>,
    /// Hardware sensors; empty where there are none (most VMs).
    pub temperatures: Vec<Temperature>,
    /// The system clock's synchronization; `null` from an agent that does not read it.
    #[serde(default)]
    pub clock: Option<ClockSample>,
}

/// Whether the system clock is synchronized, and to what.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ClockSample {
    /// The NTP daemon (chrony) says the clock is synchronized; without one, the kernel's state.
    pub synchronized: bool,
    /// Where the figures come from: `chrony` (its tracking report) or `kernel` (`adjtimex`).
    pub source: String,
    /// How far the system clock is from NTP time, in seconds (positive: ahead); chrony only.
    pub offset_seconds: Option<f64>,
    /// NTP stratum of this box (its server's plus one); chrony only.
    pub stratum: Option<u32>,
    /// The server the clock follows (address or name); chrony only.
    pub server: Option<String>,
    /// The kernel's estimate of the clock's error, in seconds.
    pub est_error_seconds: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuSample {
    /// Share of all cores busy over the last interval, 0–100.
    pub busy_pct: f64,
    pub cores: Vec<CoreSample>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CoreSample {
    pub cpu: u32,
    /// Over the last interval, 0–100.
    pub busy_pct: f64,
    pub user_pct: f64,
    pub system_pct: f64,
    pub iowait_pct: f64,
    /// Cumulative seconds per mode since boot (`/proc/stat`).
    pub seconds: CpuSeconds,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuSeconds {
    pub user: f64,
    pub nice: f64,
    pub system: f64,
    pub idle: f64,
    pub iowait: f64,
    pub irq: f64,
    pub softirq: f64,
    pub steal: f64,
}

impl CpuSeconds {
    pub fn total(&self) -> f64 {
        self.user + self.nice + self.system + self.idle + self.iowait + self.irq + self.softirq + self.steal
    }

    pub fn idle_total(&self) -> f64 {
        self.idle + self.iowait
    }

    pub fn modes(&self) -> [(&'static str, f64); 8] {
        [
            ("user", self.user),
            ("nice", self.nice),
            ("system", self.system),
            ("idle", self.idle),
            ("iowait", self.iowait),
            ("irq", self.irq),
            ("softirq", self.softirq),
            ("steal", self.steal),
        ]
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Memory {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub free_bytes: u64,
    pub buffers_bytes: u64,
    pub cached_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_free_bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Filesystem {
    pub mount_point: String,
    pub device: String,
    pub fs_type: String,
    pub size_bytes: u64,
    pub free_bytes: u64,
    /// Free to unprivileged users.
    pub avail_bytes: u64,
    pub read_only: bool,
    /// `data` for the filesystem holding the node's data directory, `root` for `/`.
    pub role: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Disk {
    pub device: String,
    pub read_bytes_total: u64,
    pub written_bytes_total: u64,
    pub reads_completed_total: u64,
    pub writes_completed_total: u64,
    pub io_time_ms_total: u64,
    pub read_bytes_per_s: f64,
    pub write_bytes_per_s: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Interface {
    pub interface: String,
    pub rx_bytes_total: u64,
    pub tx_bytes_total: u64,
    pub rx_packets_total: u64,
    pub tx_packets_total: u64,
    pub rx_errors_total: u64,
    pub tx_errors_total: u64,
    pub rx_dropped_total: u64,
    pub tx_dropped_total: u64,
    pub rx_bytes_per_s: f64,
    pub tx_bytes_per_s: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Temperature {
    pub sensor: String,
    pub celsius: f64,
    pub critical_celsius: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcessInfo {
    pub pid: u32,
    /// Share of one core over the last interval (200 = two cores busy).
    pub cpu_pct: f64,
    pub cpu_seconds_total: f64,
    pub rss_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub threads: u64,
    /// Unix seconds.
    pub start_time_s: u64,
}

fn dpos() -> String {
    "dpos".into()
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ChainSample {
    pub chain_id: String,
    pub role: String,
    pub producer_address: Option<String>,
    pub node_version: String,
    pub peer_id: Option<String>,
    pub height: u64,
    pub best_hash: String,
    pub best_timestamp_ms: u64,
    /// Age of the best block at collection time.
    pub last_block_age_ms: u64,
    pub finalized_height: u64,
    /// Block producers (DPoS) or voters (Raft).
    pub producer_count: u32,
    /// How the chain agrees on blocks: `dpos` or `raft`.
    #[serde(default = "dpos")]
    pub consensus: String,
    /// This node's Raft member, on a chain agreed by Raft.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft: Option<aergo_api::RaftView>,
    pub block_interval_ms: u64,
    /// Only for a producer.
    pub blocks_produced: Option<u64>,
    /// Why this producer does not produce although its slots come (its clock is not synchronized,
    /// its key signs elsewhere); `null` while it produces and on a full node.
    #[serde(default)]
    pub producer_blocked: Option<String>,
    pub slots_missed: Option<u64>,
    pub peers: u32,
    /// The connected peers (id, address, best height).
    #[serde(default)]
    pub peer_list: Vec<aergo_api::PeerView>,
    /// The configured bootstrap addresses and whether the node reaches them.
    #[serde(default)]
    pub bootstrap: Vec<aergo_api::BootstrapView>,
    pub mempool_txs: u64,
    pub mempool_bytes: u64,
    pub syncing: bool,
    pub best_known_height: u64,
    pub behind_blocks: u64,
    /// The node's pipeline stages (queue depth, throughput, busy time).
    pub stages: Vec<StageMetrics>,
    /// The node's cache of recently written state values (`state_cache_*`).
    #[serde(flatten)]
    pub state_cache: aergo_api::StateCacheUsage,
    /// The node's `query` threads (`queries_*`, `query_threads`).
    #[serde(flatten)]
    pub queries: aergo_api::QueryUsage,
    /// The repositories the node hosts beside its public chain (`docs/repositories.md`).
    #[serde(default)]
    pub repositories: Vec<aergo_api::RepositoryView>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Degraded,
    Down,
}

impl Status {
    /// The value of the `aergo_health_status` metric: 0 ok, 1 degraded, 2 down.
    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Degraded => "degraded",
            Status::Down => "down",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Health {
    /// The worst of the checks.
    pub status: Status,
    pub checks: Vec<Check>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AgentSelf {
    pub version: String,
    pub cpu_pct: f64,
    pub rss_bytes: u64,
    pub spool: SpoolStatus,
    /// SHA-256 (hex) of the certificate the agent serves HTTPS with; `null` when it serves plain
    /// HTTP. Part of the body the node key signs: Horde pins it (see [`client`]).
    #[serde(default)]
    pub tls_fingerprint: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SpoolStatus {
    /// `ok`, or `full` / `error` when samples can no longer be kept (they are still served live).
    pub state: String,
    pub error: Option<String>,
    pub bytes: u64,
    pub samples: u64,
    pub oldest_seq: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_cache_fields_sit_in_the_chain_object_and_may_be_absent() {
        let usage = aergo_api::StateCacheUsage {
            state_cache_values: 3,
            state_cache_bytes: 400,
            state_cache_capacity_bytes: 1 << 20,
        };
        let chain = ChainSample { height: 9, state_cache: usage, ..ChainSample::default() };
        let mut json = serde_json::to_value(&chain).unwrap();
        assert_eq!(json["state_cache_bytes"], 400, "flat, as the OpenAPI document has it");
        assert_eq!(serde_json::from_value::<ChainSample>(json.clone()).unwrap(), chain);
        // A sample spooled by an agent that did not know them reads as an empty cache.
        for key in ["state_cache_values", "state_cache_bytes", "state_cache_capacity_bytes"] {
            json.as_object_mut().unwrap().remove(key);
        }
        let old: ChainSample = serde_json::from_value(json).unwrap();
        assert_eq!((old.height, old.state_cache), (9, Default::default()));
    }
}
