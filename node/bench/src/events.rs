//! `aergo-bench events`: what contract events cost (`docs/dapps.md`).
//!
//! Two chains, one with the example token and one with the same token without its `EMIT` line,
//! each get the same `--blocks` blocks of `--txs` token transfers (every holder pays the next one
//! once per block, so the blocks commit one after the other); each block is produced (executed,
//! the state tree computed, committed with its receipts and, for the first chain, its events in
//! the index). Then `get_events`' storage read, `StateStore::events`, is timed on the first chain
//! over all its events: pages of 1 000 by block range, and a filter on an argument that matches
//! one event in a thousand.

use super::{funded_chain, scratch, token_call, TOKEN};
use aergo_chain::Chain;
use aergo_primitives::types::{Address, Event, Transaction};
use aergo_storage::LogOptions;
use anyhow::{bail, ensure};
use std::path::PathBuf;
use std::time::Instant;

pub struct EventsOpts {
    pub txs: usize,
    pub blocks: usize,
    pub queries: usize,
    pub dir: Option<PathBuf>,
}

/// One chain of the comparison: the time of each produced block, the chain, the contract.
fn produce(
    script: &str,
    opts: &EventsOpts,
    dir: &std::path::Path,
) -> anyhow::Result<(Vec<f64>, Chain, Address)> {
    let (keys, bp, genesis) = funded_chain("events", opts.txs + 1);
    let (mut chain, _) = Chain::open(dir, &genesis, LogOptions::default())?;
    let contract = super::token_setup_with(&mut chain, &bp, &keys, script)?;
    let holders = &keys[1..];
    let mut ts = chain.head().timestamp_ms;
    let mut times = Vec::with_capacity(opts.blocks);
    for b in 0..opts.blocks {
        let txs: Vec<Transaction> = (0..holders.len())
            .map(|i| token_call(&holders[i], b as u64, contract, &holders[(i + 1) % holders.len()], 1))
            .collect();
        ts += 1_000;
        let started = Instant::now();
        let done = chain.produce(&bp, txs, ts)?;
        times.push(started.elapsed().as_secs_f64());
        if done.receipts.len() != holders.len() || done.receipts.iter().any(|r| !r.status.is_success()) {
            bail!(
                "block {b}: {} receipts, first failure {:?}",
                done.receipts.len(),
                done.receipts.iter().find(|r| !r.status.is_success())
            );
        }
    }
    Ok((times, chain, contract))
}

pub fn run(opts: EventsOpts) -> anyhow::Result<()> {
    let silent = TOKEN.replace("  EMIT transfer(sender(), recipient, n);\n", "");
    ensure!(silent != TOKEN, "the example token no longer emits where this benchmark expects");
    let work = scratch(opts.dir.clone())?;
    let (with, chain, contract) = produce(TOKEN, &opts, &work.path().join("with"))?;
    let (without, quiet, _) = produce(&silent, &opts, &work.path().join("without"))?;
    drop(quiet);
    let mean = |t: &[f64]| t.iter().sum::<f64>() / t.len() as f64;
    let (w, wo) = (mean(&with), mean(&without));
    println!(
        "events: {} blocks of {} token transfers, each produced (executed, state tree, committed), with the transfer event and without (mean per block)",
        opts.blocks, opts.txs
    );
    println!("| transfers per block | with events | without | with vs without |");
    println!("|---|---|---|---|");
    println!("| {} | {:.1} ms | {:.1} ms | {:.3}× |", opts.txs, w * 1e3, wo * 1e3, w / wo);

    let store = chain.store();
    let head = chain.head().height;
    let first = head - opts.blocks as u64 + 1;
    let total = opts.blocks * opts.txs;
    let all = |_: &Event| true;
    let counted = store.events(&contract, (first, head), None, usize::MAX, &all)?.len();
    ensure!(counted == total, "the index holds {counted} of {total} events");
    let mut rng_state = 7u64;
    let mut next = move || {
        rng_state = rng_state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        rng_state >> 33
    };
    let mut range_s = Vec::new();
    for _ in 0..opts.queries {
        let h = first + next() % opts.blocks as u64;
        let started = Instant::now();
        let page = store.events(&contract, (h, head), None, 1_000, &all)?;
        range_s.push(started.elapsed().as_secs_f64());
        ensure!(page.len() == 1_000.min((head - h + 1) as usize * opts.txs), "a page of {}", page.len());
    }
    // One holder in a thousand: the events paying it, over the whole range.
    let target = aergo_sql::Value::Text(funded_chain("events", opts.txs + 1).0[1].address().to_string());
    let by_arg = |e: &Event| e.args.get(1) == Some(&target);
    let mut arg_s = Vec::new();
    let mut found = 0;
    for _ in 0..opts.queries.min(5) {
        let started = Instant::now();
        found = store.events(&contract, (first, head), None, 1_000, &by_arg)?.len();
        arg_s.push(started.elapsed().as_secs_f64());
    }
    ensure!(found == opts.blocks.min(1_000), "{found} events for one recipient over {} blocks", opts.blocks);
    println!("get_events over {total} events (the index read, one thread): a page of 1 000 from a random block; the events of one recipient over all blocks");
    println!("| events indexed | page of 1 000 by range (mean of {}) | by argument, whole range ({} matches; mean of {}) |", opts.queries, found, arg_s.len());
    println!("|---|---|---|");
    println!("| {total} | {:.2} ms | {:.1} ms |", mean(&range_s) * 1e3, mean(&arg_s) * 1e3);
    Ok(())
}
