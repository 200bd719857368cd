//! `aergo-agent-bench`: the agent's cost and latency, measured from the outside.
//!
//! Starts a devnet `aergo-node --empty-blocks` and `aergo-agent --interval 1s` (the binaries next to
//! this one) in a temporary directory, then
//! 1. idle: the agent's CPU (from `/proc/PID/stat` over `--idle-secs`) as a share of one core, and its
//!    RSS (`VmRSS`) and peak RSS (`VmHWM`);
//! 2. load: `--pollers` threads (50) each asking `/v1/telemetry` and `/metrics` in turn, `--requests`
//!    times in all per poller, with keep-alive, and prints p50/p99/max latency per endpoint.
//!
//! Prints a Markdown table.

use hdrhistogram::Histogram;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    exe.parent().expect("bin dir").join(name)
}

/// Starts `bin args…` and returns it with the value of the `PREFIX=` line it prints.
fn start(bin: &str, args: &[&str], prefix: &str, log: &Path) -> anyhow::Result<(Killed, String)> {
    let mut child = Command::new(sibling(bin))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .spawn()?;
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let prefix = prefix.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(v) = line.strip_prefix(&prefix) {
                let _ = tx.send(v.to_string());
            }
        }
    });
    let value =
        rx.recv_timeout(Duration::from_secs(60)).map_err(|_| anyhow::anyhow!("{bin} did not start"))?;
    Ok((Killed(child), value))
}

fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap_or(0) + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    Ok(ticks as f64 / procfs::ticks_per_second() as f64)
}

fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = s.lines().find(|l| l.starts_with(field)).ok_or_else(|| anyhow::anyhow!("{field}"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let idle_secs = arg("--idle-secs", 30);
    let pollers = arg("--pollers", 50) as usize;
    let requests = arg("--requests", 400) as usize;
    let dir = tempfile::tempdir()?;
    let node_dir = dir.path().join("node");
    let (_node, rpc) = start(
        "aergo-node",
        &[
            "--dev",
            "--empty-blocks",
            "--data-dir",
            node_dir.to_str().unwrap_or_default(),
            "--rpc-listen",
            "127.0.0.1:0",
        ],
        "AERGO_RPC=",
        &dir.path().join("node.log"),
    )?;
    let token_file = dir.path().join("token");
    let token = hex::encode(rand::random::<[u8; 32]>());
    std::fs::write(&token_file, &token)?;
    let (agent, url) = start(
        "aergo-agent",
        &[
            "--node",
            &rpc,
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "1s",
            "--rate-per-s",
            "0",
            "--token-file",
            token_file.to_str().unwrap_or_default(),
            "--spool",
            dir.path().join("spool").to_str().unwrap_or_default(),
            "--key-file",
            node_dir.join("node.key").to_str().unwrap_or_default(),
        ],
        "AERGO_AGENT=",
        &dir.path().join("agent.log"),
    )?;
    let pid = agent.0.id();
    // Let it settle (first samples, page cache), then measure idle cost.
    std::thread::sleep(Duration::from_secs(3));
    let (cpu0, t0) = (cpu_seconds(pid)?, Instant::now());
    std::thread::sleep(Duration::from_secs(idle_secs));
    let idle_cpu = (cpu_seconds(pid)? - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    let (rss, hwm) = (status_kib(pid, "VmRSS:")?, status_kib(pid, "VmHWM:")?);

    // Load: pollers with keep-alive connections.
    let started = Instant::now();
    let cpu_load0 = cpu_seconds(pid)?;
    let threads: Vec<_> = (0..pollers)
        .map(|_| {
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || -> anyhow::Result<(Histogram<u64>, Histogram<u64>)> {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(30)))
                    .build()
                    .into();
                let mut tel = Histogram::<u64>::new(3)?;
                let mut met = Histogram::<u64>::new(3)?;
                for i in 0..requests {
                    let (path, h) =
                        if i % 2 == 0 { ("/v1/telemetry", &mut tel) } else { ("/metrics", &mut met) };
                    let t = Instant::now();
                    let mut r = agent
                        .get(format!("{url}{path}"))
                        .header("authorization", &format!("Bearer {token}"))
                        .call()?;
                    let _ = r.body_mut().read_to_vec()?;
                    h.record(t.elapsed().as_micros() as u64)?;
                }
                Ok((tel, met))
            })
        })
        .collect();
    let mut tel = Histogram::<u64>::new(3)?;
    let mut met = Histogram::<u64>::new(3)?;
    for t in threads {
        let (a, b) = t.join().map_err(|_| anyhow::anyhow!("poller panicked"))??;
        tel.add(a)?;
        met.add(b)?;
    }
    let wall = started.elapsed().as_secs_f64();
    let load_cpu = (cpu_seconds(pid)? - cpu_load0) / wall * 100.0;
    let load_hwm = status_kib(pid, "VmHWM:")?;
    let total = (pollers * requests) as f64;

    println!("aergo-agent at a 1 s interval, idle {idle_secs} s; then {pollers} pollers × {requests} requests, keep-alive\n");
    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!("| idle CPU, share of one core | {idle_cpu:.2} % | < 1 % |");
    println!(
        "| idle RSS / peak RSS | {:.1} MiB / {:.1} MiB | < 20 MiB |",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!("| peak RSS after the load | {:.1} MiB | |", load_hwm as f64 / 1024.0);
    println!("| requests/s under load ({pollers} pollers) | {:.0} | |", total / wall);
    println!("| agent CPU under load | {load_cpu:.0} % of one core | |");
    for (name, h) in [("/v1/telemetry", &tel), ("/metrics", &met)] {
        println!(
            "| {name} latency p50 / p99 / max | {:.2} / {:.2} / {:.2} ms | |",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        );
    }
    Ok(())
}
