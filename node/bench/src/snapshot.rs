//! `aergo-bench snapshot`: a new node joining from a snapshot vs replaying the chain from genesis,
//! on one chain of blocks of transfers, measured at each of several heights as the chain grows:
//! export time and size, import time (every chunk checked against the state root, the data
//! directory moved into place), and the replay that `aergo-node verify` and a syncing node do
//! (every block verified, executed and committed, pipelined). The imported and the replayed
//! directories must both end at the producer's state root.

use aergo_chain::{read_block, snapshot, Chain};
use aergo_storage::LogOptions;
use anyhow::{bail, Context};
use rand::SeedableRng;
use std::path::PathBuf;
use std::time::Instant;

pub struct SnapshotOpts {
    pub accounts: usize,
    /// Heights to measure at, ascending.
    pub heights: Vec<usize>,
    pub txs: usize,
    pub dir: Option<PathBuf>,
}

struct Row {
    height: u64,
    leaves: u64,
    bytes: u64,
    export_s: f64,
    import_s: f64,
    replay_s: f64,
    log_bytes: u64,
}

pub fn run(opts: SnapshotOpts) -> anyhow::Result<()> {
    let mut heights = opts.heights.clone();
    heights.sort_unstable();
    let Some(&last) = heights.last() else { bail!("give at least one height") };
    let (keys, bp, genesis) = super::funded_chain("snapshot", opts.accounts);
    let source = super::scratch(opts.dir.clone())?;
    let (mut producer, _) = Chain::open(source.path(), &genesis, LogOptions::default())?;
    producer.set_executor(super::import::executor()?);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut nonces = vec![0u64; keys.len()];
    let mut rows = Vec::new();
    let mut log_bytes = 0u64;
    println!(
        "snapshot: blocks of {} transfers among {} accounts, one producer, data under {}",
        opts.txs,
        opts.accounts,
        opts.dir.as_deref().map_or("/var/tmp".into(), |d| d.display().to_string())
    );
    for b in 1..=last {
        let txs = super::import::random_transfers(&mut rng, &keys, &mut nonces, &genesis.chain_id, opts.txs);
        let done = producer.produce(&bp, txs, 1_000 * b as u64)?;
        log_bytes += done.block.encode().len() as u64;
        if done.block.transactions.len() != opts.txs {
            bail!("block {b} left transactions out: {:?}", done.dropped.first());
        }
        if !heights.contains(&b) {
            continue;
        }
        let head = producer.head();
        producer.finalize(head.height, head.hash)?;
        let store = producer.store();
        let reader = producer.log_reader();

        let work = super::scratch(opts.dir.clone())?;
        let file = work.path().join("chain.snapshot");
        let started = Instant::now();
        let out = std::io::BufWriter::new(std::fs::File::create(&file)?);
        let (report, out) = snapshot::export_from(&store, &reader, producer.schedule(), &genesis, out)?;
        out.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?.sync_all()?;
        let export_s = started.elapsed().as_secs_f64();

        let started = Instant::now();
        let input = std::io::BufReader::new(std::fs::File::open(&file)?);
        let imported = snapshot::import(input, &work.path().join("imported"), &genesis)?;
        let import_s = started.elapsed().as_secs_f64();
        if imported.head.state_root != head.state_root {
            bail!("the import ended at another state root");
        }

        let started = Instant::now();
        let (mut fresh, _) = Chain::open(&work.path().join("replayed"), &genesis, LogOptions::default())?;
        fresh.set_executor(super::import::executor()?);
        const RUN: u64 = 64;
        let mut from = 1;
        while from <= head.height {
            let to = (from + RUN - 1).min(head.height);
            let mut run = Vec::with_capacity((to - from + 1) as usize);
            for h in from..=to {
                run.push(read_block(&store, &reader, h)?.context("a block missing from the producer")?);
            }
            if let Some((at, e)) = fresh.import_run(run).error {
                bail!("replay stopped at block {}: {e}", from + at as u64);
            }
            from = to + 1;
        }
        let replay_s = started.elapsed().as_secs_f64();
        if fresh.head().state_root != head.state_root {
            bail!("the replay ended at another state root");
        }
        rows.push(Row {
            height: head.height,
            leaves: report.leaves,
            bytes: report.bytes,
            export_s,
            import_s,
            replay_s,
            log_bytes,
        });
        eprintln!("measured at height {}", head.height);
    }
    println!(
        "| blocks | transfers | state entries | snapshot | blocks (encoded) | export s | import s | replay from genesis s | replay / import |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.1} MiB | {:.1} MiB | {:.2} | {:.2} | {:.1} | {:.0}× |",
            r.height,
            r.height * opts.txs as u64,
            r.leaves,
            r.bytes as f64 / (1 << 20) as f64,
            r.log_bytes as f64 / (1 << 20) as f64,
            r.export_s,
            r.import_s,
            r.replay_s,
            r.replay_s / r.import_s.max(1e-9)
        );
    }
    println!("(one run per height; imported and replayed directories both end at the producer's state root)");
    Ok(())
}
