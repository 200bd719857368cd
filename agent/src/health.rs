//! Health checks over one sample: each has a status and a reason an operator can act on; the overall
//! status is the worst of them.

use crate::config::HealthConfig;
use aergo_telemetry::{ChainSample, Check, Health, Host, ProcessInfo, SpoolStatus, Status};

/// What the checks look at.
pub struct Input<'a> {
    pub host: &'a Host,
    pub process: Option<&'a ProcessInfo>,
    pub process_name: &'a str,
    pub chain: Option<&'a ChainSample>,
    pub chain_error: Option<&'a str>,
    pub spool: &'a SpoolStatus,
    /// Wall-clock and monotonic time of this sample, in milliseconds.
    pub wall_ms: u64,
    pub mono_ms: u64,
}

/// What the checks remember between samples.
#[derive(Debug, Default)]
pub struct State {
    finalized: Option<(u64, u64)>,
    last_clock: Option<(u64, u64)>,
}

fn check(name: &str, status: Status, reason: impl Into<String>) -> Check {
    Check { name: name.to_string(), status, reason: reason.into() }
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// 2020-01-01: a wall clock before this was never set (a box without a battery-backed RTC).
const SANE_EPOCH_MS: u64 = 1_577_836_800_000;

pub fn evaluate(input: &Input<'_>, cfg: &HealthConfig, state: &mut State) -> Health {
    let mut checks = Vec::new();
    checks.push(match input.process {
        Some(p) => {
            check("node_process", Status::Ok, format!("{} running as pid {}", input.process_name, p.pid))
        }
        None => check("node_process", Status::Down, format!("no {} process is running", input.process_name)),
    });
    checks.push(match (input.chain, input.chain_error) {
        (Some(_), _) => check("node_rpc", Status::Ok, "node RPC answering"),
        (None, e) => check("node_rpc", Status::Down, e.unwrap_or("node RPC not answering")),
    });
    match input.chain {
        Some(c) => {
            let interval = c.block_interval_ms.max(1);
            let limit = interval * cfg.block_age_max_intervals as u64;
            checks.push(if c.last_block_age_ms < limit {
                check("block_fresh", Status::Ok, format!("last block {} old", secs(c.last_block_age_ms)))
            } else {
                check(
                    "block_fresh",
                    Status::Degraded,
                    format!(
                        "last block (height {}) is {} old; expected one within {}",
                        c.height,
                        secs(c.last_block_age_ms),
                        secs(limit)
                    ),
                )
            });
            let stall = interval * cfg.finality_stall_intervals as u64;
            let since = match state.finalized {
                Some((h, at)) if h == c.finalized_height => input.mono_ms.saturating_sub(at),
                _ => {
                    state.finalized = Some((c.finalized_height, input.mono_ms));
                    0
                }
            };
            checks.push(if since <= stall {
                check("finality", Status::Ok, format!("finalized height {}", c.finalized_height))
            } else {
                check(
                    "finality",
                    Status::Degraded,
                    format!("finalized height {} has not advanced for {}", c.finalized_height, secs(since)),
                )
            });
            checks.push(match (&c.producer_blocked, c.role.as_str()) {
                (Some(why), _) => check("producer", Status::Degraded, format!("not producing: {why}")),
                (None, "producer") => check("producer", Status::Ok, "producing in its slots"),
                (None, _) => check("producer", Status::Ok, "a full node: produces no blocks"),
            });
            if let Some(r) = &c.raft {
                checks.push(raft_check(r, input.wall_ms));
            }
            if !c.repositories.is_empty() {
                checks.push(repositories_check(&c.repositories));
            }
            checks.push(if c.producer_count <= 1 && c.peers == 0 {
                check("peers", Status::Ok, "single-producer chain: no peers needed")
            } else if c.peers >= cfg.min_peers {
                check("peers", Status::Ok, format!("{} peers", c.peers))
            } else {
                check(
                    "peers",
                    Status::Degraded,
                    format!("{} peers, fewer than the minimum {}", c.peers, cfg.min_peers),
                )
            });
        }
        None => {
            for name in ["block_fresh", "finality", "producer", "peers"] {
                checks.push(check(name, Status::Down, "unknown: the node RPC is not answering"));
            }
        }
    }
    checks.push(disk_check(input.host, cfg));
    checks.push(memory_check(input.host, cfg));
    checks.push(clock_check(input, cfg, state));
    checks.push(match input.spool.state.as_str() {
        "ok" => check("spool", Status::Ok, format!("{} samples kept", input.spool.samples)),
        _ => check(
            "spool",
            Status::Degraded,
            format!(
                "samples are not being kept ({}): {}",
                input.spool.state,
                input.spool.error.as_deref().unwrap_or("unknown error")
            ),
        ),
    });
    let status = checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok);
    Health { status, checks }
}

/// How long a Raft member may know no leader before it says so: past an election (1–2 s) and a
/// second try.
const RAFT_LEADERLESS_MS: u64 = 5_000;

/// A Raft member: degraded while it has known no leader for longer than an election takes (a
/// majority of the voters is out of its reach: nothing becomes final on its side).
fn raft_check(r: &aergo_api::RaftView, now_ms: u64) -> Check {
    let leaderless = now_ms.saturating_sub(r.leaderless_since_ms);
    match (&r.leader, r.role.as_str()) {
        (_, "full") => check("raft", Status::Ok, "full node: not a voter, it follows the voters' blocks"),
        (_, "leader") => check("raft", Status::Ok, format!("leader, term {}", r.term)),
        (Some(l), role) => {
            check("raft", Status::Ok, format!("{role}, term {}, leader {}", r.term, &l[..l.len().min(16)]))
        }
        (None, _) if r.leaderless_since_ms > 0 && leaderless > RAFT_LEADERLESS_MS => check(
            "raft",
            Status::Degraded,
            format!(
                "no leader for {}: no quorum (a majority of the {} voters is out of reach)",
                secs(leaderless),
                r.voters.len()
            ),
        ),
        (None, role) => check("raft", Status::Ok, format!("{role}, term {}: electing a leader", r.term)),
    }
}

/// The hosted repositories: degraded while one is not `ok` (each says why).
fn repositories_check(repos: &[aergo_api::RepositoryView]) -> Check {
    let bad: Vec<String> = repos
        .iter()
        .filter(|r| r.health != "ok")
        .map(|r| match &r.reason {
            Some(why) => format!("{}: {} ({why})", r.name, r.health),
            None => format!("{}: {}", r.name, r.health),
        })
        .collect();
    if bad.is_empty() {
        check("repositories", Status::Ok, format!("{} hosted, all ok", repos.len()))
    } else {
        check("repositories", Status::Degraded, bad.join("; "))
    }
}

fn disk_check(host: &Host, cfg: &HealthConfig) -> Check {
    let fs = host
        .filesystems
        .iter()
        .find(|f| f.role.as_deref() == Some("data"))
        .or_else(|| host.filesystems.iter().find(|f| f.role.as_deref() == Some("root")));
    let Some(fs) = fs else {
        return check("disk_free", Status::Degraded, "the data filesystem was not found");
    };
    if fs.size_bytes == 0 {
        return check("disk_free", Status::Degraded, format!("{} reports a size of 0", fs.mount_point));
    }
    let pct = fs.avail_bytes as f64 / fs.size_bytes as f64 * 100.0;
    let text = format!("{pct:.1}% free on {} ({} MiB)", fs.mount_point, fs.avail_bytes >> 20);
    if pct < cfg.disk_free_min_pct / 5.0 {
        check("disk_free", Status::Down, format!("{text}; below {:.1}%", cfg.disk_free_min_pct / 5.0))
    } else if pct < cfg.disk_free_min_pct {
        check("disk_free", Status::Degraded, format!("{text}; below {:.1}%", cfg.disk_free_min_pct))
    } else {
        check("disk_free", Status::Ok, text)
    }
}

fn memory_check(host: &Host, cfg: &HealthConfig) -> Check {
    let m = &host.memory;
    if m.total_bytes == 0 {
        return check("memory", Status::Degraded, "memory size unknown");
    }
    let pct = m.available_bytes as f64 / m.total_bytes as f64 * 100.0;
    let text =
        format!("{pct:.1}% available ({} MiB of {} MiB)", m.available_bytes >> 20, m.total_bytes >> 20);
    if pct < cfg.memory_available_min_pct / 3.0 {
        check("memory", Status::Down, format!("{text}; below {:.1}%", cfg.memory_available_min_pct / 3.0))
    } else if pct < cfg.memory_available_min_pct {
        check("memory", Status::Degraded, format!("{text}; below {:.1}%", cfg.memory_available_min_pct))
    } else {
        check("memory", Status::Ok, text)
    }
}

fn clock_check(input: &Input<'_>, cfg: &HealthConfig, state: &mut State) -> Check {
    let previous = state.last_clock.replace((input.wall_ms, input.mono_ms));
    if input.wall_ms < SANE_EPOCH_MS {
        return check("clock", Status::Down, "the wall clock is not set (before 2020)");
    }
    if let Some((wall0, mono0)) = previous {
        let jump = (input.wall_ms as i64 - wall0 as i64) - (input.mono_ms as i64 - mono0 as i64);
        if jump.unsigned_abs() > cfg.clock_jump_max.as_millis() as u64 {
            return check(
                "clock",
                Status::Degraded,
                format!("the wall clock jumped by {:+.1} s since the last sample", jump as f64 / 1000.0),
            );
        }
    }
    if let Some(c) = input.chain {
        let ahead = c.best_timestamp_ms.saturating_sub(input.wall_ms);
        if ahead > 2 * c.block_interval_ms.max(1000) {
            return check(
                "clock",
                Status::Degraded,
                format!("the best block is {} ahead of this box's clock: is the clock behind?", secs(ahead)),
            );
        }
    }
    match &input.host.clock {
        Some(c) if c.synchronized => {
            let server = c.server.as_deref().map(|s| format!(" to {s}")).unwrap_or_default();
            let offset =
                c.offset_seconds.map(|o| format!(", offset {:+.1} ms", o * 1000.0)).unwrap_or_default();
            check("clock", Status::Ok, format!("wall clock steady, synchronized{server}{offset}"))
        }
        Some(c) if cfg.clock_sync_required => check(
            "clock",
            Status::Degraded,
            format!("the clock is not synchronized ({}): no NTP server has set it yet", c.source),
        ),
        _ => check("clock", Status::Ok, "wall clock steady"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aergo_telemetry::{Filesystem, Memory};

    const NOW: u64 = 1_800_000_000_000;

    fn host(avail_pct: u64, mem_pct: u64) -> Host {
        Host {
            memory: Memory { total_bytes: 100 << 20, available_bytes: mem_pct << 20, ..Memory::default() },
            filesystems: vec![Filesystem {
                mount_point: "/data".into(),
                size_bytes: 100 << 20,
                avail_bytes: avail_pct << 20,
                role: Some("data".into()),
                ..Filesystem::default()
            }],
            ..Host::default()
        }
    }

    fn chain(age_ms: u64, lib: u64) -> ChainSample {
        ChainSample {
            height: lib,
            finalized_height: lib,
            block_interval_ms: 1000,
            last_block_age_ms: age_ms,
            best_timestamp_ms: NOW - age_ms,
            producer_count: 1,
            ..ChainSample::default()
        }
    }

    fn spool_ok() -> SpoolStatus {
        SpoolStatus { state: "ok".into(), ..SpoolStatus::default() }
    }

    /// A sample of a running node answering its RPC, at `NOW`.
    fn running<'a>(
        host: &'a Host,
        chain: &'a ChainSample,
        process: &'a ProcessInfo,
        spool: &'a SpoolStatus,
        mono_ms: u64,
    ) -> Input<'a> {
        Input {
            host,
            process: Some(process),
            process_name: "aergo-node",
            chain: Some(chain),
            chain_error: None,
            spool,
            wall_ms: NOW,
            mono_ms,
        }
    }

    fn status_of<'a>(h: &'a Health, name: &str) -> &'a Check {
        h.checks.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn healthy_box() {
        let (h, c, s, p) =
            (host(50, 50), chain(200, 5), spool_ok(), ProcessInfo { pid: 7, ..Default::default() });
        let input = running(&h, &c, &p, &s, 10);
        let health = evaluate(&input, &HealthConfig::default(), &mut State::default());
        assert_eq!(health.status, Status::Ok, "{health:?}");
        assert_eq!(health.checks.len(), 10);
    }

    /// A Raft member: fine while it knows a leader or has just lost one; degraded once it has
    /// known none for longer than an election takes (no quorum on its side).
    #[test]
    fn a_raft_member_without_a_leader_is_degraded_after_an_election() {
        let (h, s, p) = (host(50, 50), spool_ok(), ProcessInfo { pid: 7, ..Default::default() });
        let view = |role: &str, leader: Option<&str>, leaderless_ms: u64| aergo_api::RaftView {
            id: 1,
            role: role.into(),
            term: 4,
            leader: leader.map(String::from),
            voters: vec!["a".repeat(64), "b".repeat(64), "c".repeat(64)],
            commit_index: 9,
            applied_index: 9,
            leaderless_since_ms: if leader.is_some() { 0 } else { NOW - leaderless_ms },
        };
        let cases = [
            (view("follower", Some(&"b".repeat(64)), 0), Status::Ok, "follower, term 4, leader bbbb"),
            (view("leader", Some(&"a".repeat(64)), 0), Status::Ok, "leader, term 4"),
            (view("follower", None, 1_500), Status::Ok, "electing a leader"),
            (
                view("follower", None, 12_000),
                Status::Degraded,
                "no leader for 12.0 s: no quorum (a majority of the 3 voters",
            ),
            (view("full", None, 60_000), Status::Ok, "full node"),
        ];
        for (raft, status, said) in cases {
            let c = ChainSample { consensus: "raft".into(), raft: Some(raft), ..chain(200, 5) };
            let health =
                evaluate(&running(&h, &c, &p, &s, 10), &HealthConfig::default(), &mut State::default());
            let got = status_of(&health, "raft");
            assert_eq!(got.status, status, "{got:?}");
            assert!(got.reason.contains(said), "{:?} does not say {said:?}", got.reason);
            assert_eq!(health.status, status);
        }
    }

    /// Hosted repositories: one check for all; degraded while one is not ok, naming it and why.
    #[test]
    fn a_hosted_repository_that_is_not_ok_degrades_the_box_and_says_which() {
        let (h, s, p) = (host(50, 50), spool_ok(), ProcessInfo { pid: 7, ..Default::default() });
        let repo = |name: &str, health: &str, reason: Option<&str>| aergo_api::RepositoryView {
            name: name.into(),
            chain_id: format!("{name}-chain"),
            consensus: "raft".into(),
            height: 10,
            lib_height: 10,
            peers: 2,
            role: "follower".into(),
            health: health.into(),
            reason: reason.map(String::from),
            p2p_listen: Vec::new(),
            peers_refused: 0,
        };
        let cases = [
            (vec![], None, Status::Ok),
            (vec![repo("acme", "ok", None), repo("lab", "ok", None)], Some("2 hosted, all ok"), Status::Ok),
            (
                vec![repo("acme", "no quorum", Some("no Raft leader for 9 s")), repo("lab", "ok", None)],
                Some("acme: no quorum (no Raft leader for 9 s)"),
                Status::Degraded,
            ),
        ];
        for (repositories, said, status) in cases {
            let c = ChainSample { repositories, ..chain(200, 5) };
            let health =
                evaluate(&running(&h, &c, &p, &s, 10), &HealthConfig::default(), &mut State::default());
            assert_eq!(health.status, status, "{health:?}");
            match said {
                None => assert!(health.checks.iter().all(|c| c.name != "repositories")),
                Some(said) => {
                    let got = status_of(&health, "repositories");
                    assert!(got.reason.contains(said), "{:?} does not say {said:?}", got.reason);
                }
            }
        }
    }

    #[test]
    fn node_down_says_why() {
        let (h, s) = (host(50, 50), spool_ok());
        let input = Input {
            host: &h,
            process: None,
            process_name: "aergo-node",
            chain: None,
            chain_error: Some("node RPC not answering: connection refused"),
            spool: &s,
            wall_ms: NOW,
            mono_ms: 0,
        };
        let health = evaluate(&input, &HealthConfig::default(), &mut State::default());
        assert_eq!(health.status, Status::Down);
        assert_eq!(status_of(&health, "node_process").reason, "no aergo-node process is running");
        assert!(status_of(&health, "node_rpc").reason.contains("connection refused"));
    }

    #[test]
    fn stale_block_low_disk_low_memory_and_stalled_finality() {
        let cfg = HealthConfig::default();
        let mut state = State::default();
        let (s, p) = (spool_ok(), ProcessInfo::default());
        let (h, c) = (host(5, 5), chain(3500, 9));
        let mk = |h, c, mono| Input {
            host: h,
            process: Some(&p),
            process_name: "n",
            chain: Some(c),
            chain_error: None,
            spool: &s,
            wall_ms: NOW + mono,
            mono_ms: mono,
        };
        let health = evaluate(&mk(&h, &c, 0), &cfg, &mut state);
        assert_eq!(status_of(&health, "block_fresh").status, Status::Degraded);
        assert!(status_of(&health, "block_fresh").reason.contains("3.5 s old"));
        assert_eq!(status_of(&health, "disk_free").status, Status::Degraded);
        assert_eq!(status_of(&health, "memory").status, Status::Degraded);
        assert_eq!(status_of(&health, "finality").status, Status::Ok);
        let health = evaluate(&mk(&h, &c, 31_000), &cfg, &mut state);
        assert_eq!(status_of(&health, "finality").status, Status::Degraded);
        let h2 = host(1, 1);
        let health = evaluate(&mk(&h2, &chain(100, 10), 32_000), &cfg, &mut state);
        assert_eq!(status_of(&health, "finality").status, Status::Ok);
        assert_eq!(status_of(&health, "disk_free").status, Status::Down);
        assert_eq!(status_of(&health, "memory").status, Status::Down);
    }

    #[test]
    fn clock_jumps_and_unset_clocks() {
        let cfg = HealthConfig::default();
        let mut state = State::default();
        let (h, s) = (host(50, 50), spool_ok());
        let mk = |wall, mono| Input {
            host: &h,
            process: None,
            process_name: "n",
            chain: None,
            chain_error: None,
            spool: &s,
            wall_ms: wall,
            mono_ms: mono,
        };
        assert_eq!(status_of(&evaluate(&mk(NOW, 0), &cfg, &mut state), "clock").status, Status::Ok);
        let jumped = evaluate(&mk(NOW + 11_000, 1_000), &cfg, &mut state);
        assert!(status_of(&jumped, "clock").reason.contains("+10.0 s"), "{jumped:?}");
        assert_eq!(status_of(&evaluate(&mk(5_000, 2_000), &cfg, &mut state), "clock").status, Status::Down);
    }

    #[test]
    fn peers_and_spool() {
        let cfg = HealthConfig { min_peers: 2, ..HealthConfig::default() };
        let (h, p) = (host(50, 50), ProcessInfo::default());
        let mut c = chain(100, 1);
        c.producer_count = 3;
        c.peers = 1;
        let s = SpoolStatus {
            state: "full".into(),
            error: Some("No space left on device".into()),
            ..Default::default()
        };
        let input = Input {
            host: &h,
            process: Some(&p),
            process_name: "n",
            chain: Some(&c),
            chain_error: None,
            spool: &s,
            wall_ms: NOW,
            mono_ms: 0,
        };
        let health = evaluate(&input, &cfg, &mut State::default());
        assert_eq!(status_of(&health, "peers").status, Status::Degraded);
        assert!(status_of(&health, "spool").reason.contains("No space"));
        assert_eq!(health.status, Status::Degraded);
    }

    #[test]
    fn an_unsynchronized_clock_is_degraded_where_sync_is_required() {
        let (mut h, c, s, p) =
            (host(50, 50), chain(200, 5), spool_ok(), ProcessInfo { pid: 7, ..Default::default() });
        h.clock = Some(aergo_telemetry::ClockSample {
            synchronized: false,
            source: "chrony".into(),
            ..Default::default()
        });
        let input = |h| running(h, &c, &p, &s, 0);
        let relaxed = HealthConfig::default();
        let health = evaluate(&input(&h), &relaxed, &mut State::default());
        assert_eq!(status_of(&health, "clock").status, Status::Ok);
        let strict = HealthConfig { clock_sync_required: true, ..HealthConfig::default() };
        let health = evaluate(&input(&h), &strict, &mut State::default());
        let clock = status_of(&health, "clock");
        assert_eq!(clock.status, Status::Degraded);
        assert!(clock.reason.contains("not synchronized"), "{}", clock.reason);
        let mut h = h.clone();
        h.clock = Some(aergo_telemetry::ClockSample {
            synchronized: true,
            source: "chrony".into(),
            offset_seconds: Some(0.0004),
            server: Some("10.77.0.1".into()),
            ..Default::default()
        });
        let health = evaluate(&input(&h), &strict, &mut State::default());
        let clock = status_of(&health, "clock");
        assert_eq!(clock.status, Status::Ok);
        assert!(clock.reason.contains("synchronized to 10.77.0.1, offset +0.4 ms"), "{}", clock.reason);
    }
}
