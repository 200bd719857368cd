//! `aergo-bench query-flood`: block production, `send_tx` and cheap queries on a release node with
//! and without a flood of expensive joins through the `query` RPC (`docs/aergosql.md`, "Queries on a
//! public RPC").
//!
//! One producer node (empty blocks on, so every 1 s slot should hold a block) with a contract of
//! `rows` rows. Each phase runs `secs` seconds: a transfer every 100 ms (its `send_tx` latency), a
//! point query every 50 ms (its latency), block intervals from the headers of the blocks it
//! produced; the second phase adds `clients` connections sending 5-table joins back to back.

use crate::{bench_tx, funded_chain};
use aergo_api::{codes, AergoApiClient, QueryRequest};
use aergo_primitives::types::Payload;
use jsonrpsee::core::client::{Error as ClientError, SubscriptionClientT};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::rpc_params;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct FloodOpts {
    pub clients: usize,
    pub secs: u64,
    pub rows: usize,
    /// The query RPC as it was before its limits (2026-12-04): a transaction's gas, no deadline
    /// to speak of, as many threads as clients at normal priority; the baseline.
    pub unguarded: bool,
}

const HEAVY: &str = "SELECT COUNT(*) FROM t a, t b, t c, t d, t e WHERE a.v + b.v + c.v + d.v + e.v < 0";
const CHEAP: &str = "SELECT v FROM t WHERE k = 12";

#[derive(Default)]
struct Phase {
    send_ms: Vec<f64>,
    query_ms: Vec<f64>,
    intervals_ms: Vec<f64>,
    missed: u64,
    blocks: usize,
    heavy: u64,
    stopped: u64,
    busy: u64,
    other: u64,
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

pub async fn run(opts: FloodOpts, node_bin: PathBuf, dir: &Path) -> anyhow::Result<()> {
    let (keys, bp, mut genesis) = funded_chain("flood", 2);
    genesis.timestamp_ms = aergo_node::node::now_ms() / 1000 * 1000;
    let unguarded = if opts.unguarded {
        format!(
            "query_gas = 50000000\nquery_timeout_ms = 600000\nquery_threads = {}\nquery_nice = 0\nquery_queue = 1024\nquery_per_connection = 1024\n",
            opts.clients + 1
        )
    } else {
        String::new()
    };
    let cpath = crate::init_node(&node_bin, dir, &genesis, &bp, &unguarded, "empty_blocks = true\n")?;
    let (mut child, url) = crate::run_node(&node_bin, &cpath)?;
    let pid = child.id();
    let result = measure(&opts, &keys, &url).await;
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
    result
}

async fn measure(
    opts: &FloodOpts,
    keys: &[aergo_primitives::crypto::Keypair],
    url: &str,
) -> anyhow::Result<()> {
    let url = url.to_string();
    let client = HttpClientBuilder::default().request_timeout(Duration::from_secs(30)).build(&url)?;
    // The contract: `rows` rows of (k, k % 7).
    let values: Vec<String> = (0..opts.rows).map(|k| format!("({k}, {})", k % 7)).collect();
    let sql = format!(
        "CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER);\nINSERT INTO t VALUES {};\n",
        values.join(", ")
    );
    let deployer = &keys[0];
    let deploy = bench_tx(deployer, 0, deployer.address(), 0, 20_000_000, Payload::Deploy { sql });
    let contract = aergo_primitives::types::contract_address(&deployer.address(), 0);
    client.send_tx(hex::encode(deploy.encode())).await?;
    let t0 = Instant::now();
    loop {
        if let Some(r) = client.get_receipt(deploy.hash().to_string(), None).await? {
            anyhow::ensure!(r.status == "success", "deploy failed: {:?}", r.error);
            break;
        }
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(30), "the deploy was not included");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Block timestamps, as the node produces them.
    let ws = jsonrpsee::ws_client::WsClientBuilder::default().build(url.replace("http://", "ws://")).await?;
    let mut sub = ws
        .subscribe::<aergo_api::BlockView, _>("subscribe_blocks", rpc_params![], "unsubscribe_blocks")
        .await?;
    let stamps: Arc<parking_lot::Mutex<Vec<u64>>> = Arc::default();
    let collector = {
        let stamps = stamps.clone();
        tokio::spawn(async move {
            while let Some(Ok(b)) = sub.next().await {
                stamps.lock().push(b.header.timestamp_ms);
            }
        })
    };
    let sender = &keys[1];
    let mut nonce = 0u64;
    let mut phases = Vec::new();
    for flood in [false, true] {
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
        let flooders: Vec<_> = (0..if flood { opts.clients } else { 0 })
            .map(|_| {
                let (stop, counts, url) = (stop.clone(), counts.clone(), url.clone());
                tokio::spawn(async move {
                    // One connection per client.
                    let c: HttpClient = HttpClientBuilder::default()
                        .request_timeout(Duration::from_secs(60))
                        .max_concurrent_requests(1)
                        .build(&url)?;
                    while !stop.load(Relaxed) {
                        let req = QueryRequest {
                            contract,
                            sql: Some(HEAVY.into()),
                            function: None,
                            args: vec![],
                            height: None,
                            branch: None,
                        };
                        let slot = match c.query(req).await {
                            Err(ClientError::Call(e)) if e.code() == codes::QUERY_LIMIT => 1,
                            Err(ClientError::Call(e)) if e.code() == codes::BUSY => 2,
                            _ => 3,
                        };
                        counts[0].fetch_add(1, Relaxed);
                        counts[slot].fetch_add(1, Relaxed);
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        let before = client.node_metrics().await?;
        let from = stamps.lock().len();
        let mut phase = Phase::default();
        let started = Instant::now();
        let mut last_send = Instant::now() - Duration::from_secs(1);
        while started.elapsed() < Duration::from_secs(opts.secs) {
            let t = Instant::now();
            let req = QueryRequest {
                contract,
                sql: Some(CHEAP.into()),
                function: None,
                args: vec![],
                height: None,
                branch: None,
            };
            let r = client.query(req).await?;
            phase.query_ms.push(t.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(r.rows.len() == 1, "the point query's answer: {r:?}");
            if last_send.elapsed() >= Duration::from_millis(100) {
                let tx = bench_tx(sender, nonce, sender.address(), 1, 0, Payload::Transfer);
                nonce += 1;
                let t = Instant::now();
                client.send_tx(hex::encode(tx.encode())).await?;
                phase.send_ms.push(t.elapsed().as_secs_f64() * 1e3);
                last_send = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, Relaxed);
        for f in flooders {
            f.await??;
        }
        let after = client.node_metrics().await?;
        phase.missed = after.slots_missed_total - before.slots_missed_total;
        let s = stamps.lock()[from..].to_vec();
        phase.blocks = s.len();
        phase.intervals_ms = s.windows(2).map(|w| w[1].saturating_sub(w[0]) as f64).collect();
        let c = &counts;
        (phase.heavy, phase.stopped, phase.busy, phase.other) =
            (c[0].load(Relaxed), c[1].load(Relaxed), c[2].load(Relaxed), c[3].load(Relaxed));
        phases.push(phase);
    }
    collector.abort();
    let [mut quiet, mut flood]: [Phase; 2] = phases.try_into().map_err(|_| anyhow::anyhow!("two phases"))?;
    println!(
        "query flood: {} clients sending 5-table joins over {} rows, {} s per phase (release node, {})",
        opts.clients,
        opts.rows,
        opts.secs,
        if opts.unguarded {
            "unguarded: 50 000 000 gas, no deadline, a thread per client at normal priority"
        } else {
            "[rpc] query defaults"
        }
    );
    println!("| measure | without flood | with flood | with / without |");
    println!("|---|---|---|---|");
    let row = |name: &str, a: f64, b: f64, unit: &str| {
        println!("| {name} | {a:.1}{unit} | {b:.1}{unit} | {:.2} |", b / a);
    };
    row("send_tx p50", pct(&mut quiet.send_ms, 0.5), pct(&mut flood.send_ms, 0.5), " ms");
    row("send_tx p99", pct(&mut quiet.send_ms, 0.99), pct(&mut flood.send_ms, 0.99), " ms");
    row("point query p50", pct(&mut quiet.query_ms, 0.5), pct(&mut flood.query_ms, 0.5), " ms");
    row("point query p99", pct(&mut quiet.query_ms, 0.99), pct(&mut flood.query_ms, 0.99), " ms");
    row("block interval p50", pct(&mut quiet.intervals_ms, 0.5), pct(&mut flood.intervals_ms, 0.5), " ms");
    row("block interval p99", pct(&mut quiet.intervals_ms, 0.99), pct(&mut flood.intervals_ms, 0.99), " ms");
    row("block interval max", pct(&mut quiet.intervals_ms, 1.0), pct(&mut flood.intervals_ms, 1.0), " ms");
    println!("| blocks | {} | {} | |", quiet.blocks, flood.blocks);
    println!("| slots missed | {} | {} | |", quiet.missed, flood.missed);
    println!(
        "| expensive queries answered | – | {} ({} stopped at a limit, {} busy, {} other) | |",
        flood.heavy, flood.stopped, flood.busy, flood.other
    );
    Ok(())
}
