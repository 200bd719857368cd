//! `aergo-bench proof`: state proofs at a state of N accounts (`docs/dapps.md`, "State proofs").
//!
//! `main` gets N accounts (in blocks of 50 000), then 10 blocks changing 1 % of them each, and is
//! compacted. Then, for `--proofs` random present accounts and as many absent ones: the proof's
//! generation (`StateStore::proof_bytes`, as `get_account_proof` calls it) beside a plain read of
//! the same key (`get_at`), the proof's size in bytes (and the document's, hex in JSON with the
//! header), and the check (`SparseProof::decode` + `verify`, as `aergo verify-proof` does it).
//! Every proof is checked; a failure stops the bench.

use super::branch::{account, address, commit};
use aergo_primitives::proof::SparseProof;
use aergo_storage::state::{account_key, StateStore};
use anyhow::bail;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::time::Instant;

pub struct ProofOpts {
    pub accounts: Vec<usize>,
    pub proofs: usize,
    pub dir: Option<PathBuf>,
}

#[derive(Default)]
struct Side {
    read_us: f64,
    prove_us: f64,
    verify_us: f64,
    bytes_mean: f64,
    bytes_max: usize,
    siblings_mean: f64,
}

fn measure(store: &StateStore, height: u64, keys: &[Vec<u8>], present: bool) -> anyhow::Result<Side> {
    let root = store.root_at(height)?.0;
    let started = Instant::now();
    for k in keys {
        std::hint::black_box(store.get_at(k, height)?);
    }
    let read_us = started.elapsed().as_secs_f64() * 1e6 / keys.len() as f64;
    let started = Instant::now();
    let proofs = keys.iter().map(|k| store.proof_bytes(k, height)).collect::<Result<Vec<_>, _>>()?;
    let prove_us = started.elapsed().as_secs_f64() * 1e6 / keys.len() as f64;
    let started = Instant::now();
    let mut siblings = 0usize;
    for (k, (value, bytes)) in keys.iter().zip(&proofs) {
        if value.is_some() != present {
            bail!("key {} is {}", hex::encode(k), if present { "absent" } else { "present" });
        }
        let proof = SparseProof::decode(bytes)?;
        proof.verify(&root, k, value.as_deref())?;
        siblings += proof.siblings.len();
    }
    let verify_us = started.elapsed().as_secs_f64() * 1e6 / keys.len() as f64;
    let sizes: Vec<usize> = proofs.iter().map(|(_, b)| b.len()).collect();
    Ok(Side {
        read_us,
        prove_us,
        verify_us,
        bytes_mean: sizes.iter().sum::<usize>() as f64 / sizes.len() as f64,
        bytes_max: sizes.iter().copied().max().unwrap_or(0),
        siblings_mean: siblings as f64 / keys.len() as f64,
    })
}

pub fn run(opts: ProofOpts) -> anyhow::Result<()> {
    println!(
        "proof: account proofs over a state of N accounts (then 10 blocks changing 1 % each, compacted); {} present and {} absent keys, one thread",
        opts.proofs, opts.proofs
    );
    let mut rows = Vec::new();
    for &n in &opts.accounts {
        let work = super::scratch(opts.dir.clone())?;
        let store = StateStore::open(&work.path().join("state"))?;
        let mut prev = aergo_primitives::types::Hash::ZERO;
        let mut height = 0u64;
        for chunk in (0..n).collect::<Vec<_>>().chunks(50_000) {
            let changes =
                chunk.iter().map(|&i| (account_key(&address(i)), Some(account(1_000_000, 0)))).collect();
            prev = commit(&store, height, prev, changes)?;
            height += 1;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
        for b in 0..10u64 {
            let changes = (0..(n / 100).max(1))
                .map(|_| (account_key(&address(rng.gen_range(0..n))), Some(account(rng.gen(), b + 1))))
                .collect();
            prev = commit(&store, height, prev, changes)?;
            height += 1;
        }
        let head = height - 1;
        store.set_finalized(head, prev)?;
        store.compact()?;
        let present: Vec<Vec<u8>> =
            (0..opts.proofs).map(|_| account_key(&address(rng.gen_range(0..n)))).collect();
        let absent: Vec<Vec<u8>> =
            (0..opts.proofs).map(|_| account_key(&address(n + rng.gen_range(0..n)))).collect();
        // Warm the caches once (both sides read the same keys), then measure.
        measure(&store, head, &present, true)?;
        let p = measure(&store, head, &present, true)?;
        let a = measure(&store, head, &absent, false)?;
        rows.push((n, p, a));
    }
    println!();
    println!("| accounts | key | read | proof generated | vs read | proof size (mean / max) | siblings | document (JSON) | verified |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (n, p, a) in &rows {
        for (what, s) in [("present", p), ("absent", a)] {
            // The document: the proof and the value in hex, the key, the header (about 700 bytes).
            let doc =
                2.0 * s.bytes_mean + 2.0 * 25.0 + if what == "present" { 2.0 * 24.0 } else { 0.0 } + 700.0;
            println!(
                "| {n} | {what} | {:.1} µs | {:.1} µs | {:.1}× | {:.0} / {} B | {:.1} | ≈{:.1} KB | {:.1} µs |",
                s.read_us,
                s.prove_us,
                s.prove_us / s.read_us,
                s.bytes_mean,
                s.bytes_max,
                s.siblings_mean,
                doc / 1000.0,
                s.verify_us
            );
        }
    }
    Ok(())
}
