//! `aergo-bench branch`: what a branch's copy-on-write store costs (`docs/branches.md`).
//!
//! For each state size: `main` gets that many accounts (in blocks of 50 000), made final and
//! compacted; then
//! - creating a branch at the final head is timed (it should not grow with the state);
//! - the branch commits `--blocks` blocks that change 1 % of the accounts each;
//! - `--reads` random accounts are read at the branch's head and at `main`'s head, through one
//!   reader each (as a block's execution reads), best of `--rounds`: the ratio is what reading
//!   through a branch costs (the design's bound: 20 % slower at most).
//!
//! Every value read on the branch is checked against what it must be (the branch's write, else
//! `main`'s at the base).

use aergo_primitives::types::{
    to_vec_exact, Account, Address, Block, BlockHeader, Hash, PublicKey, Signature,
};
use aergo_storage::state::{account_key, decode_account, StateOptions, StateStore};
use aergo_storage::{ChangeSet, RecordPos};
use anyhow::bail;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

pub struct BranchOpts {
    pub accounts: Vec<usize>,
    pub blocks: usize,
    pub reads: usize,
    pub rounds: usize,
    pub dir: Option<PathBuf>,
}

pub(crate) fn address(i: usize) -> Address {
    let mut a = [0u8; 20];
    a[..8].copy_from_slice(&(i as u64).to_be_bytes());
    a[8..16].copy_from_slice(&(i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    Address(a)
}

pub(crate) fn account(balance: u128, nonce: u64) -> Vec<u8> {
    to_vec_exact(&Account { balance, nonce })
}

/// Commits `changes` as block `height` over `prev`; returns its hash.
pub(crate) fn commit(
    store: &StateStore,
    height: u64,
    prev: Hash,
    changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
) -> anyhow::Result<Hash> {
    let set = ChangeSet::from_unsorted(changes);
    let prepared = store.prepare(height, &set)?;
    let header = BlockHeader {
        version: aergo_primitives::types::ENCODING_VERSION,
        chain_id: "aergo-bench".into(),
        branch: aergo_primitives::types::MAIN_BRANCH.into(),
        height,
        prev_hash: prev,
        timestamp_ms: 1_000 * height,
        producer: PublicKey([0; 32]),
        tx_root: Hash::ZERO,
        state_root: prepared.root,
        receipts_root: Hash::ZERO,
    };
    let block = Block { header, transactions: Vec::new(), signature: Signature([0; 64]) };
    store.commit(&prepared, &block, RecordPos { segment: 0, offset: height, len: 1 }, &[])?;
    Ok(block.hash())
}

struct Row {
    accounts: usize,
    create_ms: f64,
    branch_reads_s: f64,
    main_reads_s: f64,
    reopen_ms: f64,
}

pub fn run(opts: BranchOpts) -> anyhow::Result<()> {
    println!(
        "branch: a branch over main's state of N accounts; {} branch blocks changing 1 % each; {} random reads (best of {})",
        opts.blocks, opts.reads, opts.rounds
    );
    let mut rows = Vec::new();
    for &n in &opts.accounts {
        let work = super::scratch(opts.dir.clone())?;
        let main = Arc::new(StateStore::open(&work.path().join("main"))?);
        let mut prev = Hash::ZERO;
        let mut height = 0u64;
        for (b, chunk) in (0..n).collect::<Vec<_>>().chunks(50_000).enumerate() {
            let changes =
                chunk.iter().map(|&i| (account_key(&address(i)), Some(account(1_000_000, 0)))).collect();
            prev = commit(&main, b as u64, prev, changes)?;
            height = b as u64;
        }
        main.set_finalized(height, prev)?;
        main.compact()?;
        let base = height;

        let open = || {
            StateStore::open_branch(&work.path().join("branch"), StateOptions::default(), main.clone(), base)
        };
        let started = Instant::now();
        let branch = open()?;
        let create_ms = started.elapsed().as_secs_f64() * 1000.0;
        if branch.root_at(base)? != main.root_at(base)? {
            bail!("the branch's root at its base is not main's");
        }
        // The branch's blocks: 1 % of the accounts each, balances it alone has.
        let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
        let mut written = std::collections::HashMap::new();
        let mut bprev = prev;
        for b in 1..=opts.blocks as u64 {
            let mut changes = Vec::new();
            for _ in 0..(n / 100).max(1) {
                let i = rng.gen_range(0..n);
                let balance = rng.gen_range(0..1_000_000u128);
                written.insert(i, balance);
                changes.push((account_key(&address(i)), Some(account(balance, b))));
            }
            bprev = commit(&branch, base + b, bprev, changes)?;
        }
        let _ = bprev;
        let top = base + opts.blocks as u64;
        let picks: Vec<usize> = (0..opts.reads).map(|_| rng.gen_range(0..n)).collect();
        let time_reads = |store: &StateStore, at: u64, check: bool| -> anyhow::Result<f64> {
            let mut best = f64::MAX;
            for _ in 0..opts.rounds {
                let started = Instant::now();
                let mut reader = store.reader_at(at)?;
                for &i in &picks {
                    let v = reader.get(&account_key(&address(i)))?;
                    if check {
                        let want = written.get(&i).copied().unwrap_or(1_000_000);
                        let got: Account = decode_account(v)?;
                        if got.balance != want {
                            bail!("account {i} reads {} on the branch, not {want}", got.balance);
                        }
                    }
                }
                best = best.min(started.elapsed().as_secs_f64());
            }
            Ok(best)
        };
        let branch_reads_s = time_reads(&branch, top, true)?;
        let main_reads_s = time_reads(&main, base, false)?;
        drop(branch);
        let started = Instant::now();
        let branch = open()?;
        let reopen_ms = started.elapsed().as_secs_f64() * 1000.0;
        drop(branch);
        rows.push(Row { accounts: n, create_ms, branch_reads_s, main_reads_s, reopen_ms });
    }
    println!(
        "| accounts | create branch | reopen branch | reads on main | reads on branch | branch vs main |"
    );
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.1} ms | {:.1} ms | {:.0} ns/read | {:.0} ns/read | {:.2}× |",
            r.accounts,
            r.create_ms,
            r.reopen_ms,
            r.main_reads_s * 1e9 / opts.reads as f64,
            r.branch_reads_s * 1e9 / opts.reads as f64,
            r.branch_reads_s / r.main_reads_s
        );
    }
    Ok(())
}

/// The source of a merge in the benchmark: the branch chain's blocks.
struct BranchBlocks {
    store: Arc<StateStore>,
    reader: aergo_storage::LogReader,
}

impl aergo_chain::MergeSources for BranchBlocks {
    fn transactions(
        &self,
        source: &str,
        after: u64,
        upto: u64,
        upto_hash: &Hash,
    ) -> Result<Vec<(u64, aergo_primitives::types::Transaction)>, aergo_chain::SourceError> {
        aergo_chain::source_transactions(source, (after, upto, upto_hash), |h| {
            aergo_chain::read_block(&self.store, &self.reader, h)
        })
    }

    fn state(
        &self,
        source: &str,
        upto: u64,
        upto_hash: &Hash,
    ) -> Result<Arc<StateStore>, aergo_chain::SourceError> {
        aergo_chain::source_state(source, self.store.clone(), upto, upto_hash)
    }
}

/// `aergo-bench branch --merge-txs N`: a replay merge of a branch's `n` transfers (from `n`
/// senders, so the executor can run them side by side) into `main`, against the same transfers
/// signed for `main` built as an ordinary block on the same head. Both are built (executed, the
/// state tree computed), not committed, with two execution threads; best of `rounds`.
pub fn merge(n: usize, rounds: usize, dir: Option<PathBuf>) -> anyhow::Result<()> {
    use aergo_chain::{BranchSpec, Chain};
    use aergo_config::genesis::{ConsensusParams, Genesis, GenesisBalance, GenesisProducer};
    use aergo_exec::merge::MAX_RESULT_ROWS;
    use aergo_primitives::crypto::Keypair;
    use aergo_primitives::types::{MergeStrategy, Payload, TxBody};
    let work = super::scratch(dir)?;
    let bp = Keypair::from_seed("merge-bench-bp");
    let senders: Vec<Keypair> = (0..n).map(|i| Keypair::from_seed(&format!("merge-bench-{i}"))).collect();
    let genesis = Genesis {
        chain_id: "aergo-bench".into(),
        timestamp_ms: 1_000,
        consensus: ConsensusParams::default(),
        balances: std::iter::once(&bp)
            .chain(&senders)
            .map(|k| GenesisBalance { address: k.address(), amount: 10u128.pow(24) })
            .collect(),
        producers: vec![GenesisProducer { public_key: hex::encode(bp.public().0) }],
        access: None,
    };
    let sign_amount =
        |key: &Keypair, branch: &str, nonce: u64, to: Address, amount: u128, payload: Payload| {
            key.sign_tx(TxBody {
                version: TxBody::version_for(branch),
                chain_id: genesis.chain_id.clone(),
                branch: branch.into(),
                nonce,
                sender: key.public(),
                recipient: to,
                amount,
                fee: 1,
                payload,
            })
        };
    let sign = |key: &Keypair, branch: &str, nonce: u64, to: Address, payload: Payload| {
        sign_amount(key, branch, nonce, to, 1, payload)
    };
    let executor = || aergo_exec::parallel::ParallelExecutor::with_threads(2, Vec::new());
    let log = aergo_storage::LogOptions::default();
    let (mut main, _) = Chain::open(&work.path().join("main"), &genesis, log.clone())?;
    main.set_executor(executor());
    let record =
        Payload::CreateBranch { name: "bench".into(), base_height: 0, producers: vec![], mergers: vec![] };
    let b1 = main.produce(&bp, vec![sign(&bp, "main", 0, bp.address(), record)], 2_000)?;
    if !b1.receipts[0].status.is_success() {
        bail!("create_branch failed: {:?}", b1.receipts[0].status);
    }
    main.finalize(1, b1.block.hash())?;
    let spec = BranchSpec { name: "bench".into(), base_height: 0, producers: vec![bp.public()] };
    let (mut branch, _) = Chain::open_branch(
        &work.path().join("bench"),
        &genesis,
        &spec,
        main.store(),
        log,
        StateOptions::default(),
    )?;
    branch.set_executor(executor());
    let to = |i: usize| address(1_000_000 + i);
    let on_branch: Vec<_> =
        senders.iter().enumerate().map(|(i, k)| sign(k, "bench", 0, to(i), Payload::Transfer)).collect();
    let f2 = branch.produce(&bp, on_branch, 3_000)?;
    if f2.block.transactions.len() != n {
        bail!("the branch block holds {} of {n} transfers", f2.block.transactions.len());
    }
    main.set_merge_sources(Arc::new(BranchBlocks { store: branch.store(), reader: branch.log_reader() }));
    let on_main: Vec<_> =
        senders.iter().enumerate().map(|(i, k)| sign(k, "main", 0, to(i), Payload::Transfer)).collect();
    let merge = sign(
        &bp,
        "main",
        1,
        bp.address(),
        Payload::Merge {
            source: "bench".into(),
            strategy: MergeStrategy::Replay,
            upto: f2.block.header.height,
            upto_hash: f2.block.hash(),
        },
    );
    let (mut plain_s, mut merge_s) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        let started = Instant::now();
        let (block, _, _) = main.build(&bp, on_main.clone(), 4_000)?;
        plain_s = plain_s.min(started.elapsed().as_secs_f64());
        if block.transactions.len() != n {
            bail!("the ordinary block holds {} of {n} transfers", block.transactions.len());
        }
        let started = Instant::now();
        let (block, _, _) = main.build(&bp, vec![merge.clone()], 4_000)?;
        merge_s = merge_s.min(started.elapsed().as_secs_f64());
        if block.transactions.len() != n + 1 {
            bail!(
                "the merge block holds {} transactions, not the merge and {n} transfers",
                block.transactions.len()
            );
        }
    }
    println!("merge: {n} transfers of a branch replayed into main vs the same transfers as an ordinary block (built: executed and the state tree computed, 2 threads, best of {rounds})");
    println!("| transfers | ordinary block | replay merge | merge vs ordinary |");
    println!("|---|---|---|---|");
    println!("| {n} | {:.1} ms | {:.1} ms | {:.2}× |", plain_s * 1e3, merge_s * 1e3, merge_s / plain_s);

    // Three-way: main commits the same senders' transfers of another amount to other
    // recipients, so both sides changed the senders differently (summed), and each side its
    // own recipients.
    let elsewhere: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(i, k)| sign_amount(k, "main", 0, address(2_000_000 + i), 2, Payload::Transfer))
        .collect();
    let b2 = main.produce(&bp, elsewhere, 4_000)?;
    if b2.block.transactions.len() != n {
        bail!("main's block holds {} of {n} transfers", b2.block.transactions.len());
    }
    let three_way = bp.sign_tx(TxBody {
        version: TxBody::version_for("main"),
        chain_id: genesis.chain_id.clone(),
        branch: "main".into(),
        nonce: 1,
        sender: bp.public(),
        recipient: bp.address(),
        amount: 0,
        fee: 1_000_000_000,
        payload: Payload::Merge {
            source: "bench".into(),
            strategy: MergeStrategy::ThreeWay,
            upto: f2.block.header.height,
            upto_hash: f2.block.hash(),
        },
    });
    let mut three_s = f64::MAX;
    let mut keys = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        let (block, out, _) = main.build(&bp, vec![three_way.clone()], 5_000)?;
        three_s = three_s.min(started.elapsed().as_secs_f64());
        match (&block.transactions.len(), &out.receipts[0].status) {
            (1, aergo_primitives::types::ReceiptStatus::Returned(r)) => {
                // One row per key merged; past the receipt's limit a last row counts the rest.
                let more = match r.rows.last().and_then(|row| row.get(1)) {
                    Some(aergo_primitives::value::Value::Text(t)) if r.rows.len() > MAX_RESULT_ROWS => {
                        t.split(' ').next().and_then(|n| n.parse::<usize>().ok()).unwrap_or(0)
                    }
                    _ => 0,
                };
                keys = r.rows.len().min(MAX_RESULT_ROWS) + more;
            }
            (_, other) => bail!("the three-way merge did not go through: {other:?}"),
        }
    }
    println!("three-way: both sides changed {n} senders' accounts, each side {n} recipients of its own (built, best of {rounds})");
    println!("| keys changed per side | keys merged | three-way merge | per key merged |");
    println!("|---|---|---|---|");
    println!(
        "| {} | {keys} | {:.1} ms | {:.1} µs |",
        2 * n,
        three_s * 1e3,
        three_s * 1e6 / keys.max(1) as f64
    );
    Ok(())
}

/// `aergo-bench branch --merge-txs N`, last table: what the change index (`aergo diff`, three-way
/// merges) costs a block. Two fresh stores commit the same `blocks` blocks of `2n + 1` changed
/// accounts each (a block of `n` transfers changes its senders, its recipients and the
/// producer), one with the index and one without ([`StateStore::set_change_index`]); the time
/// per block is prepare (the state tree) and commit, best of `rounds` over the whole sequence.
pub fn change_index(n: usize, blocks: usize, rounds: usize, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let keys = 2 * n + 1;
    let block_changes = |b: usize| -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        (0..keys)
            .map(|i| (account_key(&address(b * keys + i)), Some(account(1_000 + i as u128, b as u64))))
            .collect()
    };
    let record_bytes: usize = 4 + block_changes(0).iter().map(|(k, _)| 4 + k.len()).sum::<usize>();
    let mut best = [f64::MAX, f64::MAX];
    for _ in 0..rounds {
        for (slot, on) in [(0, true), (1, false)] {
            let work = super::scratch(dir.clone())?;
            let store = StateStore::open(&work.path().join("state"))?;
            store.set_change_index(on);
            let mut prev = Hash::ZERO;
            let started = Instant::now();
            for b in 0..blocks {
                prev = commit(&store, b as u64, prev, block_changes(b))?;
            }
            best[slot] = best[slot].min(started.elapsed().as_secs_f64() / blocks as f64);
            // With the index, every block's keys are there to read back.
            let recorded = store.changed_keys(0, blocks as u64 - 1, usize::MAX);
            match (on, recorded) {
                (true, Ok(k)) if k.len() == (blocks - 1) * keys => {}
                (true, other) => {
                    bail!("the change index does not hold the blocks' keys: {:?}", other.map(|k| k.len()))
                }
                (false, _) => {}
            }
        }
    }
    println!("change index: {blocks} blocks of {keys} changed accounts each (a block of {n} transfers), prepared and committed, with and without the index (best of {rounds})");
    println!("| keys per block | index record | per block with index | without | with vs without |");
    println!("|---|---|---|---|---|");
    println!(
        "| {keys} | {:.0} KiB | {:.1} ms | {:.1} ms | {:.3}× |",
        record_bytes as f64 / 1024.0,
        best[0] * 1e3,
        best[1] * 1e3,
        best[0] / best[1]
    );
    Ok(())
}
