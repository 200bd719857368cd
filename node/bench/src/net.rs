//! `aergo-bench net`: N producers (`aergo-node run`, release build) on loopback under open-loop load.
//!
//! For each offered rate, transfers are sent at fixed intervals — round-robin over the nodes, each
//! send on its own task, never waiting for earlier answers — for `--secs` seconds. Latencies are
//! measured from the moment a transaction is sent: to the `send_tx` answer with its speculative
//! result, to the block that includes it (as node 0 imports it, through its block subscription), and
//! to that block becoming final (node 0's LIB, polled every 20 ms). A rate passes when the p99 to
//! inclusion stays under two block intervals. Gossip bytes are the payload bytes the nodes received
//! on the transactions and blocks topics, per transaction sent and per block produced.
//!
//! With `--consensus dpos,raft` the same load runs on a DPoS network and then on a Raft network
//! of as many nodes (`docs/repositories.md`), and a last table gives the ratios Raft / DPoS.

use aergo_api::{AergoApiClient, BlockTxs};
use aergo_config::genesis::{ConsensusKind, Genesis, GenesisBalance};
use aergo_config::NodeConfig;
use aergo_node::testnet::{write_testnet, TestnetOptions};
use aergo_primitives::crypto::Keypair;
use aergo_primitives::types::{Hash, Payload, TxBody, ENCODING_VERSION};
use anyhow::Context;
use hdrhistogram::Histogram;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::ws_client::WsClientBuilder;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct NetOpts {
    pub nodes: usize,
    pub rates: Vec<u64>,
    pub secs: u64,
    pub senders: usize,
    /// One network after the other, in this order.
    pub consensus: Vec<ConsensusKind>,
}

/// What one offered rate gave.
#[derive(Clone, Debug)]
struct Row {
    rate: u64,
    sent: u64,
    included: u64,
    /// Included transactions per second of load.
    included_per_s: f64,
    incl_p99: f64,
    fin_p50: f64,
    fin_p99: f64,
    pass: bool,
}

struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Default)]
struct Track {
    sent: HashMap<Hash, Instant>,
    /// Height → send times of its transactions, until final.
    unfinal: BTreeMap<u64, Vec<Instant>>,
    spec: Vec<u64>,
    /// Each speculative answer: when it was sent, to which node, and how long it took (µs).
    answers: Vec<(Instant, usize, u64)>,
    /// When node 0 announced each block.
    blocks_at: Vec<Instant>,
    included: Vec<u64>,
    finalized: Vec<u64>,
    refused: u64,
}

fn hist(us: &[u64]) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds");
    for v in us {
        let _ = h.record((*v).max(1));
    }
    h
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

pub async fn run(opts: NetOpts, node_bin: std::path::PathBuf, tmp: &std::path::Path) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for kind in &opts.consensus {
        let rows = run_one(&opts, *kind, &node_bin, &tmp.join(kind.name())).await?;
        results.push((*kind, rows));
    }
    if let [(a, base), (b, other)] = results.as_slice() {
        println!();
        println!(
            "{} / {} on the same machine in the same run ({} nodes each):",
            b.name(),
            a.name(),
            opts.nodes
        );
        println!("| offered tx/s | included/s {0} / {1} | ratio | inclusion p99 ms {0} / {1} | finality p50 ms {0} / {1} | ratio | finality p99 ms {0} / {1} | ratio |", a.name(), b.name());
        println!("|---|---|---|---|---|---|---|---|");
        for (x, y) in base.iter().zip(other) {
            println!(
                "| {} | {:.0} / {:.0} | {:.2}× | {:.0} / {:.0} | {:.0} / {:.0} | {:.2}× | {:.0} / {:.0} | {:.2}× |",
                x.rate,
                x.included_per_s,
                y.included_per_s,
                y.included_per_s / x.included_per_s.max(1e-9),
                x.incl_p99,
                y.incl_p99,
                x.fin_p50,
                y.fin_p50,
                y.fin_p50 / x.fin_p50.max(1e-9),
                x.fin_p99,
                y.fin_p99,
                y.fin_p99 / x.fin_p99.max(1e-9),
            );
        }
        let best = |rows: &[Row]| rows.iter().filter(|r| r.pass).map(|r| r.rate).max().unwrap_or(0);
        println!(
            "highest rate with every transaction included and p99 inclusion under 2 intervals: {} {} tx/s, {} {} tx/s",
            a.name(),
            best(base),
            b.name(),
            best(other)
        );
    }
    Ok(())
}

async fn run_one(
    opts: &NetOpts,
    consensus: ConsensusKind,
    node_bin: &std::path::Path,
    tmp: &std::path::Path,
) -> anyhow::Result<Vec<Row>> {
    let out = tmp.join("net");
    let topts = TestnetOptions {
        nodes: opts.nodes,
        out: out.clone(),
        hosts: vec![],
        block_interval_ms: 1000,
        chain_id: "aergo-bench".into(),
        base_port: None,
        voters: None,
        consensus,
    };
    let nodes = write_testnet(&topts)?;
    let senders: Vec<Keypair> =
        (0..opts.senders).map(|i| Keypair::from_seed(&format!("net-bench-{i}"))).collect();
    let gpath = out.join("genesis.toml");
    let mut genesis = Genesis::load(&gpath)?;
    genesis
        .balances
        .extend(senders.iter().map(|k| GenesisBalance { address: k.address(), amount: 10u128.pow(24) }));
    std::fs::write(&gpath, genesis.to_toml())?;
    let mut children = Vec::new();
    for n in &nodes {
        let mut c = NodeConfig::load(&n.config)?;
        c.log.level = "warn".into();
        c.mempool.max_txs = 1_000_000;
        std::fs::write(&n.config, c.to_toml()?)?;
        let log = std::fs::File::create(n.config.with_file_name("node.log"))?;
        children.push(
            Command::new(node_bin)
                .arg("run")
                .arg("--config")
                .arg(&n.config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting aergo-node")?,
        );
    }
    let node_pids: Vec<u32> = children.iter().map(Child::id).collect();
    let _guard = Nodes(children);
    let clients: Vec<HttpClient> = nodes
        .iter()
        .map(|n| HttpClientBuilder::default().request_timeout(Duration::from_secs(30)).build(&n.rpc))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    loop {
        let mut ready = 0;
        for c in &clients {
            if c.chain_info(None).await.is_ok_and(|i| i.lib_height >= 2 && i.peers as usize + 1 == opts.nodes)
            {
                ready += 1;
            }
        }
        if ready == clients.len() {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(90),
            "the network did not finalize within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let interval_ms = genesis.consensus.block_interval_ms;
    let ws_url = nodes[0].rpc.replace("http://", "ws://");
    let ws = WsClientBuilder::default().build(&ws_url).await?;
    let mut blocks = ws.subscribe_blocks(None).await?;
    let track = Arc::new(Mutex::new(Track::default()));
    // Blocks as node 0 imports them: inclusion.
    let t = track.clone();
    let block_task = tokio::spawn(async move {
        while let Some(Ok(b)) = blocks.next().await {
            let now = Instant::now();
            let mut t = t.lock();
            t.blocks_at.push(now);
            if let BlockTxs::Hashes(hashes) = b.transactions {
                let mut times = Vec::new();
                for h in hashes {
                    if let Some(at) = t.sent.remove(&h) {
                        t.included.push(now.duration_since(at).as_micros() as u64);
                        times.push(at);
                    }
                }
                t.unfinal.entry(b.height).or_default().extend(times);
            }
        }
    });
    // Node 0's LIB: finality.
    let (t, c0) = (track.clone(), clients[0].clone());
    let lib_task = tokio::spawn(async move {
        loop {
            if let Ok(info) = c0.chain_info(None).await {
                let now = Instant::now();
                let mut t = t.lock();
                let done: Vec<u64> = t.unfinal.range(..=info.lib_height).map(|(h, _)| *h).collect();
                for h in done {
                    if let Some(times) = t.unfinal.remove(&h) {
                        for at in times {
                            t.finalized.push(now.duration_since(at).as_micros() as u64);
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });

    let metrics_before = gossip_totals(&clients).await;
    let mut nonces = vec![0u64; senders.len()];
    let mut next_sender = 0usize;
    let mut rows = Vec::new();
    let mut results = Vec::new();
    let mut total_sent = 0u64;
    let mut tails = Vec::new();
    for &rate in &opts.rates {
        *track.lock() = Track::default();
        let count = rate * opts.secs;
        let period = Duration::from_secs_f64(1.0 / rate as f64);
        // Signed and encoded before the load starts: the load generator's CPU during the load
        // is sending, not signing (clients are other machines on a real network).
        let mut signed = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let i = next_sender;
            next_sender = (next_sender + 1) % senders.len();
            let key = &senders[i];
            let tx = key.sign_tx(TxBody {
                version: ENCODING_VERSION,
                chain_id: genesis.chain_id.clone(),
                branch: aergo_primitives::types::MAIN_BRANCH.into(),
                nonce: nonces[i],
                sender: key.public(),
                recipient: senders[(i + 1) % senders.len()].address(),
                amount: 1,
                fee: 1,
                payload: Payload::Transfer,
            });
            nonces[i] += 1;
            signed.push((tx.hash(), hex::encode(tx.encode())));
        }
        let cpu_before = cpu_of(&node_pids)?;
        let begin = tokio::time::Instant::now();
        let mut sends = Vec::with_capacity(count as usize);
        for (k, (hash, bytes)) in signed.into_iter().enumerate() {
            tokio::time::sleep_until(begin + period * k as u32).await;
            let (client, t, t_nodes) = (clients[k % clients.len()].clone(), track.clone(), clients.len());
            sends.push(tokio::spawn(async move {
                let at = Instant::now();
                t.lock().sent.insert(hash, at);
                match client.send_tx(bytes).await {
                    Ok(_) => {
                        let us = at.elapsed().as_micros() as u64;
                        let mut t = t.lock();
                        t.spec.push(us);
                        t.answers.push((at, k % t_nodes, us));
                    }
                    Err(_) => {
                        let mut t = t.lock();
                        t.refused += 1;
                        t.sent.remove(&hash);
                    }
                }
            }));
        }
        let offered_for = begin.elapsed();
        for s in sends {
            let _ = s.await;
        }
        // CPU while the load was offered and answered: the nodes', and this load generator's.
        let (load_wall, cpu_after) = (begin.elapsed().as_secs_f64(), cpu_of(&node_pids)?);
        let (nodes_cpu, load_cpu) = (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1);
        total_sent += count;
        // Stragglers: until everything sent is final, or 15 s.
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let settled = {
                let t = track.lock();
                t.sent.is_empty() && t.unfinal.is_empty()
            };
            if settled {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let t = track.lock();
        let (spec, incl, fin) = (hist(&t.spec), hist(&t.included), hist(&t.finalized));
        tails.push(format!("| {rate} | {} |", slow_answers(&t, ms(&spec, 0.99), clients.len())));
        let pass = t.included.len() as u64 + t.refused >= count && ms(&incl, 0.99) < 2.0 * interval_ms as f64;
        results.push(Row {
            rate,
            sent: count,
            included: t.included.len() as u64,
            included_per_s: t.included.len() as f64 / offered_for.as_secs_f64().max(1e-9),
            incl_p99: ms(&incl, 0.99),
            fin_p50: ms(&fin, 0.5),
            fin_p99: ms(&fin, 0.99),
            pass,
        });
        rows.push(format!(
            "| {rate} | {count} | {:.0} | {} | {} | {:.2} / {:.2} | {:.0} / {:.0} | {:.0} / {:.0} | {:.2} / {:.2} | {} |",
            count as f64 / offered_for.as_secs_f64(),
            t.included.len(),
            t.refused,
            ms(&spec, 0.5),
            ms(&spec, 0.99),
            ms(&incl, 0.5),
            ms(&incl, 0.99),
            ms(&fin, 0.5),
            ms(&fin, 0.99),
            nodes_cpu / load_wall,
            load_cpu / load_wall,
            if pass { "yes" } else { "no" }
        ));
    }
    let metrics_after = gossip_totals(&clients).await;
    block_task.abort();
    lib_task.abort();
    let t = metrics_after - metrics_before;
    let (tx_in, block_in, blocks) = (t.tx_in, t.block_in, t.blocks.max(1));
    let (who, quorum) = match consensus {
        ConsensusKind::Dpos => ("DPoS producers", opts.nodes * 2 / 3 + 1),
        ConsensusKind::Raft => ("Raft voters", opts.nodes / 2 + 1),
    };
    println!(
        "aergo-bench net: {} {who} on loopback, {} ms block interval, quorum {quorum}, {} s per rate, {} senders",
        opts.nodes, interval_ms, opts.secs, opts.senders
    );
    println!("| offered tx/s | sent | achieved send rate | included | refused | speculative p50 / p99 ms | inclusion p50 / p99 ms | finality p50 / p99 ms | cores: nodes / load generator | p99 inclusion < 2 slots |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!("Where the slowest 1 % of speculative answers fall: sent how long after node 0 saw the last block, and before it saw the next:");
    println!("| offered tx/s | ms after: 0–50 / 50–200 / 200–500 / 500+ | ms before: 0–50 / 50–200 / 200–500 / 500+ | speculative p99 ms per node |");
    println!("|---|---|---|---|");
    for t in tails {
        println!("{t}");
    }
    println!(
        "gossip payload received, all nodes: {:.0} bytes per transaction sent, {:.0} bytes per block produced ({blocks} blocks)",
        tx_in as f64 / total_sent.max(1) as f64,
        block_in as f64 / blocks as f64
    );
    println!(
        "of that, fetched to fill compact blocks: {:.0} bytes per block; compact blocks received: {}, naming {} transactions a pool did not hold, {} filled from the whole block; signature checks skipped (verified at admission): {}",
        t.fill_in as f64 / blocks as f64,
        t.compact,
        t.missing,
        t.fallbacks,
        t.skipped
    );
    debug_assert!(results.iter().all(|r| r.included <= r.sent));
    Ok(results)
}

/// The answers slower than `p99_ms`, counted by how long after node 0's latest block they were
/// sent (whether the tail follows block import), and the p99 each node gave.
fn slow_answers(t: &Track, p99_ms: f64, nodes: usize) -> String {
    let bucket = |d: Duration| match d.as_millis() {
        0..50 => 0,
        50..200 => 1,
        200..500 => 2,
        _ => 3,
    };
    let (mut after, mut before) = ([0u64; 4], [0u64; 4]);
    let mut blocks = t.blocks_at.clone();
    blocks.sort();
    for (at, _, us) in &t.answers {
        if (*us as f64) / 1000.0 < p99_ms {
            continue;
        }
        let i = blocks.partition_point(|b| b <= at);
        after[if i == 0 { 3 } else { bucket(at.duration_since(blocks[i - 1])) }] += 1;
        before[blocks.get(i).map_or(3, |b| bucket(b.duration_since(*at)))] += 1;
    }
    let per_node: Vec<String> = (0..nodes)
        .map(|n| {
            let us: Vec<u64> = t.answers.iter().filter(|a| a.1 == n).map(|a| a.2).collect();
            format!("{:.2}", ms(&hist(&us), 0.99))
        })
        .collect();
    let join = |b: [u64; 4]| b.map(|n| n.to_string()).join(" / ");
    format!("{} | {} | {}", join(after), join(before), per_node.join(" / "))
}

/// Summed over the nodes: tx-topic bytes in, block-topic bytes in (whole and compact blocks, and
/// what was fetched to fill compact ones), blocks produced, and the compact-block and verify-once
/// counters.
#[derive(Clone, Copy, Default)]
struct Totals {
    tx_in: u64,
    block_in: u64,
    blocks: u64,
    fill_in: u64,
    compact: u64,
    missing: u64,
    fallbacks: u64,
    skipped: u64,
}

impl std::ops::Sub for Totals {
    type Output = Totals;
    fn sub(self, b: Totals) -> Totals {
        Totals {
            tx_in: self.tx_in - b.tx_in,
            block_in: self.block_in - b.block_in,
            blocks: self.blocks - b.blocks,
            fill_in: self.fill_in - b.fill_in,
            compact: self.compact - b.compact,
            missing: self.missing - b.missing,
            fallbacks: self.fallbacks - b.fallbacks,
            skipped: self.skipped - b.skipped,
        }
    }
}

async fn gossip_totals(clients: &[HttpClient]) -> Totals {
    let mut t = Totals::default();
    for c in clients {
        if let Ok(m) = c.node_metrics().await {
            t.tx_in += m.gossip_tx_bytes_in_total;
            t.block_in += m.gossip_block_bytes_in_total + m.compact_fill_bytes_in_total;
            t.blocks += m.blocks_produced_total;
            t.fill_in += m.compact_fill_bytes_in_total;
            t.compact += m.compact_blocks_in_total;
            t.missing += m.compact_txs_missing_total;
            t.fallbacks += m.compact_fallbacks_total;
            t.skipped += m.signatures_skipped_total;
        }
    }
    t
}

/// CPU seconds used so far by the nodes (summed) and by this process.
fn cpu_of(nodes: &[u32]) -> anyhow::Result<(f64, f64)> {
    let mut sum = 0.0;
    for pid in nodes {
        sum += crate::hosting::cpu_seconds(*pid)?;
    }
    Ok((sum, crate::hosting::cpu_seconds(std::process::id())?))
}
