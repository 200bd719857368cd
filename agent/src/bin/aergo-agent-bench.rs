//! `aergo-agent-bench`: the agent's cost and latency, measured from the outside.
//!
//! Starts a devnet `aergo-node --empty-blocks` and `aergo-agent --interval 1s` (the binaries next to
//! this one) in a temporary directory, then
//! 1. idle: the agent's CPU (from `/proc/PID/stat` over `--idle-secs`) as a share of one core, and its
//!    RSS (`VmRSS`) and peak RSS (`VmHWM`);
//! 2. load: `--pollers` threads (50) each asking `/v1/telemetry` and `/metrics` in turn, `--requests`
//!    times in all per poller, with keep-alive, and prints p50/p99 latency per endpoint.
//!
//! Once with the agent serving HTTPS (its default) and once plain HTTP; prints a Markdown table of
//! both side by side with their ratio.

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

/// What one run measures.
struct Run {
    idle_cpu: f64,
    rss_kib: u64,
    hwm_kib: u64,
    load_hwm_kib: u64,
    rate: f64,
    load_cpu: f64,
    tel: Histogram<u64>,
    met: Histogram<u64>,
}

/// Starts a node and an agent (over HTTPS, or plain HTTP with `plain`), measures it idle, then
/// under `pollers` keep-alive pollers.
fn measure(plain: bool, idle_secs: u64, pollers: usize, requests: usize) -> anyhow::Result<Run> {
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
    let (cert, key) = (dir.path().join("tls/cert.pem"), dir.path().join("tls/key.pem"));
    let mut args = vec![
        "--node".to_string(),
        rpc,
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--interval".into(),
        "1s".into(),
        "--rate-per-s".into(),
        "0".into(),
        "--token-file".into(),
        token_file.display().to_string(),
        "--spool".into(),
        dir.path().join("spool").display().to_string(),
        "--key-file".into(),
        node_dir.join("node.key").display().to_string(),
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
    ];
    if plain {
        args.push("--plain-http".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (agent, url) = start("aergo-agent", &args, "AERGO_AGENT=", &dir.path().join("agent.log"))?;
    let pid = agent.0.id();
    // Let it settle (first samples, page cache), then measure idle cost.
    std::thread::sleep(Duration::from_secs(3));
    let (cpu0, t0) = (cpu_seconds(pid)?, Instant::now());
    std::thread::sleep(Duration::from_secs(idle_secs));
    let idle_cpu = (cpu_seconds(pid)? - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    let (rss_kib, hwm_kib) = (status_kib(pid, "VmRSS:")?, status_kib(pid, "VmHWM:")?);

    // Load: pollers with keep-alive connections (over TLS: one handshake per poller; the
    // certificate is not checked here, this measures cost, not trust).
    let started = Instant::now();
    let cpu_load0 = cpu_seconds(pid)?;
    let threads: Vec<_> = (0..pollers)
        .map(|_| {
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || -> anyhow::Result<(Histogram<u64>, Histogram<u64>)> {
                let tls = ureq::tls::TlsConfig::builder().disable_verification(true).build();
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(30)))
                    .tls_config(tls)
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
    let load_hwm_kib = status_kib(pid, "VmHWM:")?;
    let rate = (pollers * requests) as f64 / wall;
    Ok(Run { idle_cpu, rss_kib, hwm_kib, load_hwm_kib, rate, load_cpu, tel, met })
}

fn main() -> anyhow::Result<()> {
    let idle_secs = arg("--idle-secs", 30);
    let pollers = arg("--pollers", 50) as usize;
    let requests = arg("--requests", 400) as usize;
    let tls = measure(false, idle_secs, pollers, requests)?;
    let plain = measure(true, idle_secs, pollers, requests)?;
    let mib = |k: u64| k as f64 / 1024.0;
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "aergo-agent at a 1 s interval, idle {idle_secs} s; then {pollers} pollers × {requests} requests, keep-alive; \
         HTTPS (rustls) beside plain HTTP\n"
    );
    println!("| measure | HTTPS | plain HTTP | HTTPS / plain | target |");
    println!("|---|---|---|---|---|");
    let row = |name: &str, a: f64, b: f64, unit: &str, target: &str| {
        let ratio = if b > 0.0 { format!("{:.2}", a / b) } else { "-".into() };
        println!("| {name} | {a:.2} {unit} | {b:.2} {unit} | {ratio} | {target} |");
    };
    row("idle CPU, share of one core", tls.idle_cpu, plain.idle_cpu, "%", "< 1 %");
    row("idle RSS", mib(tls.rss_kib), mib(plain.rss_kib), "MiB", "< 20 MiB");
    row("idle peak RSS", mib(tls.hwm_kib), mib(plain.hwm_kib), "MiB", "");
    row("peak RSS after the load", mib(tls.load_hwm_kib), mib(plain.load_hwm_kib), "MiB", "");
    row(&format!("requests/s ({pollers} pollers)"), tls.rate, plain.rate, "", "");
    row("agent CPU under load, % of one core", tls.load_cpu, plain.load_cpu, "%", "");
    for (name, a, b) in [("/v1/telemetry", &tls.tel, &plain.tel), ("/metrics", &tls.met, &plain.met)] {
        row(&format!("{name} p50"), ms(a, 0.5), ms(b, 0.5), "ms", "");
        row(&format!("{name} p99"), ms(a, 0.99), ms(b, 0.99), "ms", "");
    }
    Ok(())
}
