//! `aergo-bench hosting`: what one more hosted repository costs an idle node
//! (`docs/repositories.md`, "Benchmarks"): a one-producer node (release build) hosting 0, 1, 4 …
//! repositories, each a one-node chain of its own (a DPoS producer, or a Raft voter that is the
//! node itself); after it settles, its CPU time over a window and its resident memory.

use super::{funded_chain, init_node, run_node, scratch, sibling_binary};
use aergo_config::genesis::{
    ConsensusKind, ConsensusParams, Genesis, GenesisProducer, RaftParams, RaftVoter,
};
use aergo_primitives::crypto::{KeyFile, Keypair};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// User and system CPU time of `pid`, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

/// User and system CPU time, in seconds, of a `/proc/…/stat` text.
pub(crate) fn stat_cpu_seconds(stat: &str) -> anyhow::Result<f64> {
    // Fields after the command name (which may hold spaces) : state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').context("/proc/pid/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).context("a stat field");
    Ok((ticks(11)? + ticks(12)?) / USER_HZ)
}

fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    Ok(kib / 1024.0)
}

/// A one-node repository `name` of `kind` for the node whose identity is `node_key`: its genesis
/// and settings files in `dir`.
fn repo_files(dir: &Path, name: &str, kind: &str, node_key: &Keypair) -> anyhow::Result<(PathBuf, PathBuf)> {
    let producer = Keypair::from_seed(&format!("{name}-bp"));
    let (consensus, producers, settings) = match kind {
        "dpos" => {
            let key = dir.join(format!("{name}.key"));
            KeyFile::write_plain(&key, &producer)?;
            (
                ConsensusParams::default(),
                vec![GenesisProducer { public_key: hex::encode(producer.public().0) }],
                format!("[producer]\nenabled = true\nkey_file = {:?}\n", key.display().to_string()),
            )
        }
        "raft" => (
            ConsensusParams {
                kind: ConsensusKind::Raft,
                raft: Some(RaftParams {
                    propose_on_tx: true,
                    election_ticks: 10,
                    heartbeat_ticks: 2,
                    voters: vec![RaftVoter {
                        node_key: hex::encode(node_key.public().0),
                        address: "/ip4/127.0.0.1/tcp/1".into(),
                    }],
                }),
                ..ConsensusParams::default()
            },
            Vec::new(),
            String::new(),
        ),
        other => bail!("--kind {other}: dpos or raft"),
    };
    let genesis = Genesis {
        chain_id: format!("bench-{name}"),
        timestamp_ms: 0,
        consensus,
        balances: vec![],
        producers,
        access: None,
    };
    let (g, s) = (dir.join(format!("{name}.genesis.toml")), dir.join(format!("{name}.repo.toml")));
    std::fs::write(&g, genesis.to_toml())?;
    std::fs::write(&s, settings)?;
    Ok((g, s))
}

/// One measurement: CPU (percent of one core) and RSS (MiB) of a node hosting `count`
/// repositories of `kind`.
fn measure(
    node_bin: &Path,
    kind: &str,
    count: usize,
    settle: Duration,
    window: Duration,
) -> anyhow::Result<(f64, f64)> {
    let dir = scratch(None)?;
    let (_, bp, genesis) = funded_chain("hosting", 2);
    let cpath = init_node(node_bin, dir.path(), &genesis, &bp, "", "")?;
    let node_key = Keypair::generate();
    KeyFile::write_plain(&dir.path().join("node/node.key"), &node_key)?;
    for i in 0..count {
        let name = format!("r{i}");
        let (g, s) = repo_files(dir.path(), &name, kind, &node_key)?;
        let ok = Command::new(node_bin)
            .args(["repo", "add", &name, "--genesis"])
            .arg(&g)
            .arg("--settings")
            .arg(&s)
            .arg("--config")
            .arg(&cpath)
            .stdout(Stdio::null())
            .status()?
            .success();
        if !ok {
            bail!("aergo-node repo add {name} failed");
        }
    }
    let (mut child, _url) = run_node(node_bin, &cpath)?;
    std::thread::sleep(settle);
    let before = cpu_seconds(child.id())?;
    std::thread::sleep(window);
    let cpu = (cpu_seconds(child.id())? - before) / window.as_secs_f64() * 100.0;
    let rss = rss_mib(child.id())?;
    let _ = child.kill();
    let _ = child.wait();
    Ok((cpu, rss))
}

pub fn run(kinds: &[String], counts: &[usize], settle_secs: u64, secs: u64) -> anyhow::Result<()> {
    let node_bin = sibling_binary("aergo-node")?;
    let (settle, window) = (Duration::from_secs(settle_secs), Duration::from_secs(secs));
    println!(
        "idle node hosting N one-node repositories; CPU over {secs} s after {settle_secs} s, RSS at the end"
    );
    println!("| kind | repositories | CPU % of a core | RSS MiB | CPU per repository | RSS per repository |");
    println!("|---|---|---|---|---|---|");
    for kind in kinds {
        let mut base = None;
        for &count in counts {
            let (cpu, rss) = measure(&node_bin, kind, count, settle, window)?;
            let (cpu0, rss0) = *base.get_or_insert((cpu, rss));
            let per = |now: f64, zero: f64| {
                if count == 0 {
                    "–".to_string()
                } else {
                    format!("{:+.2}", (now - zero) / count as f64)
                }
            };
            println!(
                "| {kind} | {count} | {cpu:.2} | {rss:.1} | {} % | {} MiB |",
                per(cpu, cpu0),
                per(rss, rss0)
            );
        }
    }
    Ok(())
}
