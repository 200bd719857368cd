//! `aergo-bench import`: a follower importing a run of blocks (sync, replay), one block at a time
//! (verify, execute, commit, then the next) vs the pipelined run (`Chain::import_run`: block N+1
//! verified and executed while N is written), on the same blocks into fresh data directories, with
//! the node's default execution cores. Both must end at the producer's head.

use aergo_chain::Chain;
use aergo_exec::parallel::ParallelExecutor;
use aergo_primitives::crypto::Keypair;
use aergo_primitives::types::{Block, Payload, Transaction, TxBody, ENCODING_VERSION};
use aergo_storage::LogOptions;
use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

pub struct ImportOpts {
    pub accounts: usize,
    pub blocks: usize,
    pub txs: usize,
    pub rounds: usize,
    pub dir: Option<PathBuf>,
}

pub(crate) fn executor() -> anyhow::Result<ParallelExecutor> {
    let cores = aergo_config::ExecConfig::default().resolve_cores().map_err(anyhow::Error::msg)?;
    Ok(ParallelExecutor::new(cores))
}

/// `n` signed transfers between random accounts of `keys` (`nonces`: each account's next nonce).
pub(crate) fn random_transfers(
    rng: &mut impl Rng,
    keys: &[Keypair],
    nonces: &mut [u64],
    chain_id: &str,
    n: usize,
) -> Vec<Transaction> {
    (0..n)
        .map(|_| {
            let from = rng.gen_range(0..keys.len());
            let to = rng.gen_range(0..keys.len());
            nonces[from] += 1;
            keys[from].sign_tx(TxBody {
                version: ENCODING_VERSION,
                chain_id: chain_id.to_string(),
                branch: aergo_primitives::types::MAIN_BRANCH.into(),
                nonce: nonces[from] - 1,
                sender: keys[from].public(),
                recipient: keys[to].address(),
                amount: rng.gen_range(1..1000),
                fee: 1,
                payload: Payload::Transfer,
            })
        })
        .collect()
}

/// Per-block stage times of one import (ms): verify, execute (with the tree), commit.
fn stages(chain: &Chain) -> [f64; 3] {
    let t = chain.stage_times();
    let blocks = t.committed_blocks.load(Relaxed).max(1) as f64;
    [&t.verify_ns, &t.execute_ns, &t.commit_ns].map(|ns| ns.load(Relaxed) as f64 / 1e6 / blocks)
}

pub fn run(opts: ImportOpts) -> anyhow::Result<()> {
    let (keys, bp, genesis) = super::funded_chain("import", opts.accounts);
    // The producer's chain: blocks of random transfers, each block spending from accounts the
    // earlier ones wrote.
    let source = super::scratch(opts.dir.clone())?;
    let (mut producer, _) = Chain::open(source.path(), &genesis, LogOptions::default())?;
    producer.set_executor(executor()?);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut nonces = vec![0u64; keys.len()];
    let mut blocks: Vec<Block> = Vec::with_capacity(opts.blocks);
    for b in 0..opts.blocks {
        let txs = random_transfers(&mut rng, &keys, &mut nonces, &genesis.chain_id, opts.txs);
        let done = producer.produce(&bp, txs, 1_000 * (b as u64 + 1))?;
        if done.block.transactions.len() != opts.txs {
            bail!("block {b} left transactions out: {:?}", done.dropped.first());
        }
        blocks.push((*done.block).clone());
    }
    let target = producer.head();
    drop(producer);

    println!(
        "import: {} blocks of {} transfers ({} accounts) into a fresh data directory, RocksDB + block log on {}, execution cores {:?}",
        opts.blocks,
        opts.txs,
        opts.accounts,
        opts.dir.as_deref().map_or("/var/tmp".into(), |d| d.display().to_string()),
        executor()?.cores()
    );
    let mut times = [Vec::new(), Vec::new()];
    let mut per_stage = [[0f64; 3]; 2];
    for round in 0..opts.rounds.max(1) {
        // Alternate which path goes first (page cache, disk state).
        for which in [round % 2, 1 - round % 2] {
            let dir = super::scratch(opts.dir.clone())?;
            let (mut chain, _) = Chain::open(dir.path(), &genesis, LogOptions::default())?;
            chain.set_executor(executor()?);
            let run = blocks.clone();
            let started = Instant::now();
            if which == 0 {
                for block in run {
                    chain.import(block).context("one-at-a-time import")?;
                }
            } else {
                let report = chain.import_run(run);
                if let Some((at, e)) = report.error {
                    bail!("pipelined import stopped at block {at}: {e}");
                }
            }
            times[which].push(started.elapsed().as_secs_f64());
            if chain.head() != target {
                bail!("the import did not end at the producer's head");
            }
            per_stage[which] = stages(&chain);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let txs = (opts.blocks * opts.txs) as f64;
    let (one, piped) = (median(&mut times[0]), median(&mut times[1]));
    println!("| import | blocks/s | tx/s | verify ms/block | execute ms/block | commit ms/block | vs one at a time |");
    println!("|---|---|---|---|---|---|---|");
    for (name, t, s) in [("one block at a time", one, per_stage[0]), ("pipelined run", piped, per_stage[1])] {
        println!(
            "| {name} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2}× |",
            opts.blocks as f64 / t,
            txs / t,
            s[0],
            s[1],
            s[2],
            one / t
        );
    }
    println!(
        "(median of {} rounds; both runs end at the producer's head {})",
        opts.rounds.max(1),
        target.hash
    );
    Ok(())
}
