use super::access::{declared, AccessSet};
use super::parallel::ParallelExecutor;
use super::*;
use aergo_primitives::crypto::Keypair;
use aergo_primitives::types::Payload;
use proptest::prelude::*;

/// Accounts, and other keys (the governance records) as raw values.
struct MapView(HashMap<Address, Account>, HashMap<Vec<u8>, Vec<u8>>);

impl StateView for MapView {
    fn account(&self, a: &Address) -> Result<Account, StateError> {
        Ok(self.0.get(a).copied().unwrap_or_default())
    }

    fn raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.1.get(key).cloned())
    }
}

fn tx(key: &Keypair, nonce: u64, to: Address, amount: u128, fee: u128) -> Transaction {
    aergo_primitives::crypto::test_tx(key, "c", nonce, to, amount, fee, Payload::Transfer)
}

fn account_in(out: &ExecOutput, a: &Address) -> Account {
    out.changes
        .get(&account_key(a))
        .and_then(|v| v.as_ref())
        .map(|v| borsh::from_slice(v).unwrap())
        .unwrap_or_default()
}

fn ctx() -> BlockContext {
    BlockContext {
        chain_id: "c".into(),
        branch: aergo_primitives::types::MAIN_BRANCH.into(),
        height: 1,
        timestamp_ms: 5,
        producer: Keypair::from_seed("bp").address(),
        staking: crate::StakingParams { unstake_lock_blocks: 3, max_votes: 2 },
        sql_ordered_scans_height: 0,
        replay: false,
    }
}

#[test]
fn transfers_fees_and_failures() {
    let alice = Keypair::from_seed("alice");
    let bob = Keypair::from_seed("bob").address();
    let producer = ctx().producer;
    let view = MapView([(alice.address(), Account { balance: 100, nonce: 0 })].into(), HashMap::new());
    let txs = vec![
        tx(&alice, 0, bob, 50, 1), // ok: alice 49
        tx(&alice, 1, bob, 60, 1), // fails: 48 < 60, pays fee
        tx(&alice, 5, bob, 1, 1),  // bad nonce: dropped
        tx(&alice, 2, bob, 48, 0), // ok: alice 0
    ];
    let out = execute_block(&view, &ctx(), txs.clone(), Mode::Build).unwrap();
    assert_eq!(out.included.len(), 3);
    assert_eq!(out.dropped.len(), 1);
    assert_eq!(out.receipts[0].status, ReceiptStatus::Success);
    assert!(matches!(out.receipts[1].status, ReceiptStatus::Failed(_)));
    assert_eq!(account_in(&out, &alice.address()), Account { balance: 0, nonce: 3 });
    assert_eq!(account_in(&out, &bob), Account { balance: 98, nonce: 0 });
    assert_eq!(account_in(&out, &producer), Account { balance: 2, nonce: 0 });
    let err = execute_block(&view, &ctx(), txs, Mode::Verify).unwrap_err();
    assert!(matches!(err, ExecError::InvalidTx { index: 2, .. }));
}

#[test]
fn invalid_transactions_say_what_blocks_always_said() {
    let key = Keypair::from_seed("v");
    let sender = Account { balance: 5, nonce: 2 };
    let to = Keypair::from_seed("w").address();
    let body = |chain: &str, nonce, fee| {
        aergo_primitives::crypto::test_tx(&key, chain, nonce, to, 1, fee, Payload::Transfer)
    };
    // Signed for a branch: never valid on main (the body carries the branch; `docs/branches.md`).
    let on_branch = {
        let mut b = body("aergo-test", 2, 1).body;
        b.branch = "feature".into();
        b.version = aergo_primitives::types::TxBody::version_for(&b.branch);
        key.sign_tx(b)
    };
    let cases = [
        (on_branch, "transaction is for branch \"feature\", this block is on \"main\"", "wrong_branch"),
        (body("other", 2, 1), "chain id \"other\" is not this chain's \"aergo-test\"", "wrong_chain_id"),
        (body("aergo-test", 3, 1), "nonce 3 but the account's next nonce is 2", "wrong_nonce"),
        (body("aergo-test", 2, 9), "balance 5 cannot pay the fee 9", "cannot_pay_fee"),
    ];
    for (tx, words, reason) in cases {
        let err = validity(&tx, "aergo-test", "main", &sender).unwrap_err();
        assert_eq!((err.to_string().as_str(), err.reason()), (words, reason));
    }
}

#[test]
fn a_missing_outcome_is_an_internal_error_not_an_access_set_violation() {
    // `Undeclared` means "a transaction broke its access set; re-run in order" to the parallel
    // executor. The executor's own lost bookkeeping must not read as that.
    let alice = Keypair::from_seed("alice");
    let bob = Keypair::from_seed("bob").address();
    let view = MapView([(alice.address(), Account { balance: 100, nonce: 0 })].into(), HashMap::new());
    let txs = vec![tx(&alice, 0, bob, 5, 1), tx(&alice, 1, bob, 5, 1)];
    let one = execute_block(&view, &ctx(), txs[..1].to_vec(), Mode::Build).unwrap();
    let mut overlay = Overlay::new(&view);
    let outcome = apply_tx(&txs[0], &ctx(), &mut overlay).unwrap();
    assert_eq!(one.receipts.len(), 1);
    let err = assemble(&view, &ctx(), txs, vec![outcome], Mode::Verify).unwrap_err();
    assert!(matches!(err, ExecError::Internal(ref what) if what.contains("transaction 1")), "{err}");
}

/// A block of `n` transfers among `accounts` funded keys. `hot` percent of transfers go between two hot
/// accounts; about one in ten carries a wrong nonce (invalid) and one in ten moves more than the sender
/// has (fails).
fn random_block(seed: u64, accounts: usize, n: usize, hot: u32) -> (MapView, Vec<Transaction>) {
    random_block_with_governance(seed, accounts, n, hot, 0)
}

/// [`random_block`] where `gov` percent of the transactions are stakes, unstakes, votes,
/// registrations and equivocation reports ([`random_governance`]), over a state in which every
/// third account has staked 100 at height 0 and votes for the first account, a registered
/// candidate like the second and third.
fn random_block_with_governance(
    seed: u64,
    accounts: usize,
    n: usize,
    hot: u32,
    gov: u32,
) -> (MapView, Vec<Transaction>) {
    use super::governance::{candidate_key, stake_key, vote_key, Candidate, Stake, CANDIDATES_KEY};
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let keys: Vec<Keypair> = (0..accounts).map(|i| Keypair::from_seed(&format!("acct-{i}"))).collect();
    let mut view = MapView(
        keys.iter().map(|k| (k.address(), Account { balance: 1_000, nonce: 0 })).collect(),
        HashMap::new(),
    );
    if gov > 0 {
        fn enc<T: borsh::BorshSerialize>(v: &T) -> Vec<u8> {
            aergo_primitives::types::to_vec_exact(v)
        }
        let candidates: Vec<_> = keys.iter().take(3).map(Keypair::public).collect();
        let stakers: Vec<&Keypair> = keys.iter().step_by(3).collect();
        for (i, c) in candidates.iter().enumerate() {
            let votes = if i == 0 { 100 * stakers.len() as u128 } else { 0 };
            let record = Candidate { p2p_address: "/ip4/10.0.0.1/tcp/7846".into(), votes, registered_at: 0 };
            view.1.insert(candidate_key(c), enc(&record));
        }
        view.1.insert(CANDIDATES_KEY.to_vec(), enc(&candidates));
        for k in stakers {
            view.1.insert(stake_key(&k.address()), enc(&Stake { amount: 100, since: 0 }));
            view.1.insert(vote_key(&k.address()), enc(&vec![candidates[0]]));
        }
    }
    let mut nonces = vec![0u64; accounts];
    let mut txs = Vec::with_capacity(n);
    for _ in 0..n {
        let (from, to) = if rng.gen_range(0..100) < hot {
            let a = rng.gen_range(0..2.min(accounts));
            (a, (a + 1) % 2.min(accounts))
        } else {
            (rng.gen_range(0..accounts), rng.gen_range(0..accounts))
        };
        let roll = rng.gen_range(0..10);
        let nonce = if roll == 0 { nonces[from] + 1 } else { nonces[from] };
        if roll != 0 {
            nonces[from] += 1;
        }
        if rng.gen_range(0..100) < gov {
            txs.push(random_governance(&mut rng, &keys, from, nonce));
            continue;
        }
        let amount = if roll == 1 { 5_000 } else { rng.gen_range(0..40) };
        txs.push(tx(&keys[from], nonce, keys[to].address(), amount, rng.gen_range(0..3)));
    }
    (view, txs)
}

/// One governance transaction from `keys[from]`, of a random kind, that may fail: a zero or too
/// large stake, an unstake above the stake or within its lock, a vote for too many candidates, an
/// unregistered one or one twice, a p2p address that is not one, evidence that proves nothing or
/// names a producer already reported.
fn random_governance(rng: &mut impl rand::Rng, keys: &[Keypair], from: usize, nonce: u64) -> Transaction {
    let key = &keys[from];
    // Candidates to vote for and producers to report: the registered three, and others that
    // register in the block or never do.
    let pick = |rng: &mut dyn rand::RngCore| &keys[rand::Rng::gen_range(rng, 0..keys.len().min(6))];
    match rng.gen_range(0..5) {
        0 => {
            let amount = [0, 5_000, rng.gen_range(1..60)][rng.gen_range(0..3)];
            gov(key, nonce, amount, Payload::Stake)
        }
        1 => gov(key, nonce, rng.gen_range(0..150), Payload::Unstake),
        2 => {
            let candidates = (0..rng.gen_range(0..=3)).map(|_| pick(rng).public()).collect();
            gov(key, nonce, 0, Payload::Vote { candidates })
        }
        3 => {
            let p2p_address = if rng.gen_range(0..4) == 0 {
                "not an address".into()
            } else {
                format!("/ip4/10.0.0.{from}/tcp/7846")
            };
            gov(key, nonce, 0, Payload::RegisterBp { p2p_address })
        }
        _ => {
            let producer = pick(rng);
            let header = |height: u64| aergo_primitives::types::BlockHeader {
                version: aergo_primitives::types::ENCODING_VERSION,
                chain_id: "c".into(),
                branch: aergo_primitives::types::MAIN_BRANCH.into(),
                height,
                prev_hash: aergo_primitives::types::Hash::ZERO,
                timestamp_ms: 1_000,
                producer: producer.public(),
                tx_root: aergo_primitives::types::Hash::ZERO,
                state_root: aergo_primitives::types::Hash::ZERO,
                receipts_root: aergo_primitives::types::Hash::ZERO,
            };
            // Two blocks for one slot; or, one time in four, the same block twice.
            let (first, second) = (header(7), header(if rng.gen_range(0..4) == 0 { 7 } else { 8 }));
            let e = aergo_primitives::types::Equivocation {
                first_signature: producer.sign(&first.hash()),
                second_signature: producer.sign(&second.hash()),
                first,
                second,
            };
            gov(key, nonce, 0, Payload::ReportEquivocation(Box::new(e)))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn parallel_equals_sequential(
        seed: u64,
        accounts in 2usize..40,
        n in 0usize..900,
        hot in 0u32..=100,
        gov in prop_oneof![Just(0u32), 1u32..12],
        producer_sends: bool,
    ) {
        let (view, txs) = random_block_with_governance(seed, accounts, n, hot, gov);
        // Sometimes the producer is one of the accounts that send and receive. At height 10 the
        // stakes of height 0 are out of their lock (3 blocks), those of this block in it.
        let ctx = BlockContext { height: 10, ..ctx() };
        let ctx = if producer_sends {
            BlockContext { producer: Keypair::from_seed("acct-0").address(), ..ctx }
        } else {
            ctx
        };
        let expected = execute_block(&view, &ctx, txs.clone(), Mode::Build).unwrap();
        for threads in [1, 2, 4, 8] {
            let exec = ParallelExecutor::with_threads(threads, Vec::new()).min_parallel_txs(0);
            let (got, stats) = exec.execute_with(&view, &ctx, txs.clone(), Mode::Build, declared, &Default::default()).unwrap();
            prop_assert_eq!(&got, &expected, "threads {}", threads);
            prop_assert_eq!(stats.reexecuted, 0);
        }
    }
}

/// A block where `hot` percent of the transfers pay one of `chains` hot accounts from any sender
/// (each hot account's transactions form one chain of dependent ones) and the rest move between
/// random accounts: the hot chains and the independent transactions interleave. One in ten
/// carries a wrong nonce, one in ten moves more than its sender has.
fn hot_chains_block(
    seed: u64,
    accounts: usize,
    n: usize,
    hot: u32,
    chains: usize,
) -> (MapView, Vec<Transaction>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let keys: Vec<Keypair> = (0..accounts).map(|i| Keypair::from_seed(&format!("acct-{i}"))).collect();
    let view = MapView(
        keys.iter().map(|k| (k.address(), Account { balance: 1_000, nonce: 0 })).collect(),
        HashMap::new(),
    );
    let mut nonces = vec![0u64; accounts];
    let mut txs = Vec::with_capacity(n);
    for _ in 0..n {
        let from = rng.gen_range(0..accounts);
        let to =
            if rng.gen_range(0..100) < hot { rng.gen_range(0..chains) } else { rng.gen_range(0..accounts) };
        let roll = rng.gen_range(0..10);
        let nonce = if roll == 0 { nonces[from] + 1 } else { nonces[from] };
        if roll != 0 {
            nonces[from] += 1;
        }
        let amount = if roll == 1 { 5_000 } else { rng.gen_range(0..40) };
        txs.push(tx(&keys[from], nonce, keys[to].address(), amount, rng.gen_range(0..3)));
    }
    (view, txs)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Hot chains beside independent transactions: the workers run the independent ones while
    /// the chains' transactions wait their turn, and the result is the sequential one.
    #[test]
    fn parallel_equals_sequential_with_hot_chains_among_independent_transactions(
        seed: u64,
        accounts in 8usize..400,
        n in 64usize..2_500,
        hot in 0u32..=100,
        chains in 1usize..4,
    ) {
        let (view, txs) = hot_chains_block(seed, accounts, n, hot, chains);
        let expected = execute_block(&view, &ctx(), txs.clone(), Mode::Build).unwrap();
        for threads in [2, 3] {
            let exec = ParallelExecutor::with_threads(threads, Vec::new()).min_parallel_txs(0);
            let (got, stats) = exec.execute_with(&view, &ctx(), txs.clone(), Mode::Build, declared, &Default::default()).unwrap();
            prop_assert_eq!(&got, &expected, "threads {}", threads);
            prop_assert_eq!(stats.reexecuted, 0);
        }
    }
}

/// Half the transfers pay one hot account: the chain is half the block, and the block runs on
/// the workers (the other half runs beside the chain) with the sequential result; a block that is
/// nearly all one chain runs in order.
#[test]
fn a_block_half_of_which_pays_one_account_runs_in_parallel() {
    let (view, txs) = hot_chains_block(21, 2_000, 4_000, 50, 1);
    let expected = execute_block(&view, &ctx(), txs.clone(), Mode::Build).unwrap();
    let (got, stats) = ParallelExecutor::with_threads(2, Vec::new())
        .execute_with(&view, &ctx(), txs, Mode::Build, declared, &Default::default())
        .unwrap();
    assert_eq!(got, expected);
    assert_eq!(stats.threads, 2, "{stats:?}");
    assert!(stats.critical_path > 1_500 && stats.critical_path < 3_000, "{stats:?}");
    let (view, txs) = hot_chains_block(22, 2_000, 4_000, 95, 1);
    let expected = execute_block(&view, &ctx(), txs.clone(), Mode::Build).unwrap();
    let (got, stats) = ParallelExecutor::with_threads(2, Vec::new())
        .execute_with(&view, &ctx(), txs, Mode::Build, declared, &Default::default())
        .unwrap();
    assert_eq!((got, stats.threads), (expected, 1), "{stats:?}");
}

/// A block large enough to be probed and to be built in many pieces while the workers run:
/// the workers start before the tree is complete and the result is the sequential one.
#[test]
fn a_large_block_runs_while_its_tree_is_built() {
    let (view, txs) = random_block(3, 600, 3_000, 0);
    let expected = execute_block(&view, &ctx(), txs.clone(), Mode::Build).unwrap();
    for threads in [2, 3] {
        let (got, stats) = ParallelExecutor::with_threads(threads, Vec::new())
            .execute_with(&view, &ctx(), txs.clone(), Mode::Build, declared, &Default::default())
            .unwrap();
        assert_eq!(got, expected, "threads {threads}");
        assert_eq!((stats.threads, stats.reexecuted), (threads, 0));
        assert!(stats.critical_path > 1 && stats.critical_path < 100, "{stats:?}");
    }
    // A chain longer than the workers gain from, found while building: the block runs in order.
    let (view, txs) = random_block(4, 2, 600, 100);
    let expected = execute_block(&view, &ctx(), txs.clone(), Mode::Build).unwrap();
    let (got, stats) = ParallelExecutor::with_threads(2, Vec::new())
        .execute_with(&view, &ctx(), txs, Mode::Build, declared, &Default::default())
        .unwrap();
    assert_eq!((got, stats.threads), (expected, 1));
}

#[test]
fn a_transaction_that_lies_about_its_access_set_is_caught_and_the_result_stays_right() {
    let (view, txs) = random_block(7, 20, 400, 10);
    let expected = execute_block(&view, &ctx(), txs.clone(), Mode::Build).unwrap();
    let liar = txs[150].hash();
    // The liar declares only its sender, then writes its recipient too.
    let lying = |t: &Transaction| {
        if t.hash() == liar {
            AccessSet::accounts(smallvec::smallvec![t.sender()])
        } else {
            declared(t)
        }
    };
    let exec = ParallelExecutor::with_threads(2, Vec::new());
    let (got, stats) =
        exec.execute_with(&view, &ctx(), txs, Mode::Build, lying, &Default::default()).unwrap();
    assert_eq!(got, expected);
    assert_eq!(stats.reexecuted, 250, "the liar and everything after it ran again, in order");
}

#[test]
fn parallel_and_sequential_reach_the_same_state_root_on_rocksdb() {
    let (view, txs) = random_block(11, 50, 500, 30);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut roots = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let store = StateStore::open(dir.path()).unwrap();
        let out = if i == 0 {
            execute_block(&view, &ctx(), txs.clone(), Mode::Build).unwrap()
        } else {
            ParallelExecutor::with_threads(2, Vec::new())
                .execute(&view, &ctx(), txs.clone(), Mode::Build)
                .unwrap()
        };
        roots.push((store.prepare(0, &out.changes).unwrap().root, out.receipts));
    }
    assert_eq!(roots[0], roots[1]);
}

/// Records, for each read, the reading thread's name and `Cpus_allowed_list`.
struct PinProbe {
    inner: MapView,
    seen: parking_lot::Mutex<Vec<(String, String)>>,
}

impl StateView for PinProbe {
    fn account(&self, a: &Address) -> Result<Account, StateError> {
        let name = std::thread::current().name().unwrap_or_default().to_string();
        self.seen.lock().push((name, affinity::allowed_cpus()));
        self.inner.account(a)
    }

    fn raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.inner.raw(key)
    }
}

#[test]
fn workers_are_pinned_to_their_cores() {
    let cores = affinity::available_cores();
    let (inner, txs) = random_block(3, 300, 3000, 0);
    let probe = PinProbe { inner, seen: Default::default() };
    let exec = ParallelExecutor::new(cores.clone());
    let caller = std::thread::current().name().unwrap_or_default().to_string();
    let before = affinity::allowed_cpus();
    // The workers that read while pinned to their core; every read is checked to be where its
    // thread belongs.
    let pinned = |seen: &[(String, String)]| {
        let mut workers = std::collections::BTreeSet::new();
        for (name, cpus) in seen {
            if *name == caller {
                // Worker 0 while the block runs (pinned to the first core); its own reads before
                // and after (the producer's fees) where it ran before.
                assert!(*cpus == cores[0].to_string() || *cpus == before, "{name} on {cpus}");
                if *cpus == cores[0].to_string() && cpus != &before {
                    workers.insert(0);
                }
                continue;
            }
            let w: usize = name.trim_start_matches("aergo-exec-").parse().unwrap();
            assert_eq!(cpus, &cores[w % cores.len()].to_string(), "{name} runs only on its core");
            workers.insert(w);
        }
        workers
    };
    // Which worker takes which part of a block depends on when each wakes up: on a busy machine
    // one may find nothing left, so the block runs again until each has read (at most 50 times).
    for _ in 0..50 {
        exec.execute(&probe, &ctx(), txs.clone(), Mode::Build).unwrap();
        assert_eq!(affinity::allowed_cpus(), before, "the calling thread has its cores back");
        if cores.len() < 2 || pinned(&probe.seen.lock()).len() == cores.len() {
            break;
        }
    }
    let seen = probe.seen.lock();
    if cores.len() < 2 {
        assert!(seen.iter().all(|(name, _)| *name == caller), "one core: all on the caller's thread");
        return;
    }
    let workers = pinned(&seen);
    assert_eq!(workers.len(), cores.len(), "every worker, the caller too, read pinned: {workers:?}");
}

fn gov(key: &Keypair, nonce: u64, amount: u128, payload: Payload) -> Transaction {
    aergo_primitives::crypto::test_tx(key, "c", nonce, key.address(), amount, 1, payload)
}

/// The failed receipts of a block: each one's index and why.
fn failures(out: &ExecOutput) -> Vec<(usize, String)> {
    out.receipts
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match &r.status {
            ReceiptStatus::Failed(why) => Some((i, why.clone())),
            _ => None,
        })
        .collect()
}

fn record<T: borsh::BorshDeserialize>(out: &ExecOutput, key: &[u8]) -> Option<T> {
    out.changes.get(key).and_then(|v| v.as_ref()).map(|v| borsh::from_slice(v).unwrap())
}

#[test]
fn staking_voting_and_registration_keep_candidate_votes_in_step() {
    use super::governance::*;
    let (alice, bob, bp) =
        (Keypair::from_seed("alice"), Keypair::from_seed("bob"), Keypair::from_seed("cand"));
    let view = MapView(
        [alice.address(), bob.address(), bp.address()]
            .into_iter()
            .map(|a| (a, Account { balance: 1_000, nonce: 0 }))
            .collect(),
        HashMap::new(),
    );
    let txs = vec![
        gov(&bp, 0, 0, Payload::RegisterBp { p2p_address: "/ip4/10.0.0.1/tcp/7846".into() }),
        gov(&alice, 0, 300, Payload::Stake),
        gov(&alice, 1, 0, Payload::Vote { candidates: vec![bp.public()] }),
        gov(&bob, 0, 0, Payload::Vote { candidates: vec![alice.public()] }),
        gov(&alice, 2, 50, Payload::Stake),
        gov(&alice, 3, 10, Payload::Unstake),
        gov(&bob, 1, 5_000, Payload::Stake),
        gov(&bp, 1, 0, Payload::RegisterBp { p2p_address: "not an address".into() }),
        gov(&alice, 4, 0, Payload::Vote { candidates: vec![bp.public(), bp.public()] }),
    ];
    let out = execute_block(&view, &ctx(), txs.clone(), Mode::Verify).unwrap();
    let failed: Vec<usize> = out
        .receipts
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.status, ReceiptStatus::Failed(_)))
        .map(|(i, _)| i)
        .collect();
    // Bob votes for a non-candidate, unstakes within the lock, stakes more than he has; a bad
    // address; a candidate listed twice.
    assert_eq!(failed, vec![3, 5, 6, 7, 8], "{:?}", out.receipts);
    let cand: Candidate = record(&out, &candidate_key(&bp.public())).unwrap();
    assert_eq!(cand.votes, 350);
    let stake: Stake = record(&out, &stake_key(&alice.address())).unwrap();
    assert_eq!(stake, Stake { amount: 350, since: 1 });
    assert_eq!(account_in(&out, &alice.address()).balance, 1_000 - 350 - 5);
    let all: Vec<aergo_primitives::types::PublicKey> = record(&out, CANDIDATES_KEY).unwrap();
    assert_eq!(all, vec![bp.public()]);
    // The parallel engine agrees byte for byte: the system resource orders these transactions
    // among themselves, whichever worker runs each.
    for threads in [2, 4] {
        let (par, stats) = ParallelExecutor::with_threads(threads, Vec::new())
            .min_parallel_txs(0)
            .execute_stats(&view, &ctx(), txs.clone(), Mode::Verify)
            .unwrap();
        assert_eq!(par, out);
        assert_eq!((stats.critical_path, stats.reexecuted), (txs.len(), 0), "{stats:?}");
    }
}

/// Membership changes of a Raft chain: only a voter changes the voters; a voter is added once,
/// removed only while it is one and never the last; the address must be a multiaddr; on a chain
/// without voters (DPoS) the change is refused. The parallel engine agrees.
#[test]
fn raft_admin_changes_the_voters_in_the_state_by_a_voter_only() {
    use super::governance::*;
    use aergo_primitives::types::RaftAdmin;
    let (v1, v2, outsider, new) = (
        Keypair::from_seed("v1"),
        Keypair::from_seed("v2"),
        Keypair::from_seed("outsider"),
        Keypair::from_seed("new"),
    );
    let rec =
        |k: &Keypair| RaftVoterRecord { node_key: k.public(), address: "/ip4/10.0.0.1/tcp/7846".into() };
    let accounts = [&v1, &v2, &outsider].map(|k| (k.address(), Account { balance: 1_000, nonce: 0 }));
    let mut view = MapView(accounts.iter().cloned().collect(), HashMap::new());
    let dpos = MapView(accounts.into_iter().collect(), HashMap::new());
    view.1.insert(RAFT_VOTERS_KEY.to_vec(), aergo_primitives::types::to_vec_exact(&vec![rec(&v1), rec(&v2)]));
    let add = |k: &Keypair, address: &str| {
        Payload::RaftAdmin(RaftAdmin::AddVoter { node_key: k.public(), address: address.into() })
    };
    let remove = |k: &Keypair| Payload::RaftAdmin(RaftAdmin::RemoveVoter { node_key: k.public() });
    let transfer = |k: &Keypair| Payload::RaftAdmin(RaftAdmin::TransferLeader { node_key: k.public() });
    let txs = vec![
        gov(&outsider, 0, 0, add(&outsider, "/ip4/10.0.0.9/tcp/7846")), // 0: not a voter
        gov(&v1, 0, 0, add(&new, "10.0.0.5:7846")),                     // 1: not a multiaddr
        gov(&v1, 1, 0, add(&new, "/ip4/10.0.0.5/tcp/7846")),            // 2
        gov(&v2, 0, 0, add(&new, "/ip4/10.0.0.5/tcp/7846")),            // 3: a voter already
        gov(&v2, 1, 0, transfer(&outsider)),                            // 4: not a voter
        gov(&v2, 2, 0, transfer(&new)),                                 // 5
        gov(&v2, 3, 0, remove(&v1)),                                    // 6
        gov(&v2, 4, 0, remove(&v1)),                                    // 7: not a voter any more
        gov(&v1, 2, 0, remove(&v2)),                                    // 8: v1 is no voter now
        gov(&v2, 5, 0, remove(&new)),                                   // 9
        gov(&v2, 6, 0, remove(&v2)),                                    // 10: the last
    ];
    let out = execute_block(&view, &ctx(), txs.clone(), Mode::Verify).unwrap();
    let reasons = failures(&out);
    let failed: Vec<usize> = reasons.iter().map(|(i, _)| *i).collect();
    assert_eq!(failed, vec![0, 1, 3, 4, 7, 8, 10], "{reasons:?}");
    let said = |i: usize| reasons.iter().find(|(j, _)| *j == i).map(|(_, w)| w.clone()).unwrap_or_default();
    assert!(said(0).contains("is not a voter: only a voter's node key"), "{}", said(0));
    assert!(said(1).contains("not a multiaddr"), "{}", said(1));
    assert!(said(3).contains("a voter already"), "{}", said(3));
    assert!(said(10).contains("last voter"), "{}", said(10));
    let voters: Vec<RaftVoterRecord> = record(&out, RAFT_VOTERS_KEY).unwrap();
    assert_eq!(voters, vec![rec(&v2)]);
    for threads in [2, 4] {
        let (par, _) = ParallelExecutor::with_threads(threads, Vec::new())
            .min_parallel_txs(0)
            .execute_stats(&view, &ctx(), txs.clone(), Mode::Verify)
            .unwrap();
        assert_eq!(par, out);
    }
    // A chain without voters in its state is no Raft chain.
    let out = execute_block(&dpos, &ctx(), vec![gov(&v1, 0, 0, remove(&v2))], Mode::Verify).unwrap();
    assert!(matches!(&out.receipts[0].status, ReceiptStatus::Failed(w) if w.contains("not agreed by Raft")));
}

/// A private repository's rules: only an admin changes the members and the nodes; the last
/// admin cannot be removed or demoted; a non-member cannot be removed; a node is allowed once
/// and denied only while allowed; on a public chain the change is refused. The parallel engine
/// agrees.
#[test]
fn repo_admin_changes_members_and_nodes_by_an_admin_only() {
    use super::members::*;
    use aergo_primitives::types::{MemberRole, RepoAdmin};
    let (admin, writer, outsider, node) = (
        Keypair::from_seed("admin"),
        Keypair::from_seed("writer"),
        Keypair::from_seed("outsider"),
        Keypair::from_seed("node"),
    );
    let accounts = [&admin, &writer, &outsider].map(|k| (k.address(), Account { balance: 1_000, nonce: 0 }));
    let public = MapView(accounts.iter().cloned().collect(), HashMap::new());
    let mut view = MapView(accounts.into_iter().collect(), HashMap::new());
    let access = aergo_config::genesis::AccessParams {
        private: true,
        members: vec![aergo_config::genesis::GenesisMember {
            address: admin.address(),
            role: MemberRole::Admin,
        }],
        nodes: vec![],
    };
    for (k, v) in genesis_changes(&access) {
        view.1.insert(k, v.unwrap());
    }
    let set = |k: &Keypair, role| Payload::RepoAdmin(RepoAdmin::SetMember { member: k.address(), role });
    let remove = |k: &Keypair| Payload::RepoAdmin(RepoAdmin::RemoveMember { member: k.address() });
    let allow = |address: &str| {
        Payload::RepoAdmin(RepoAdmin::AllowNode { node_key: node.public(), address: address.into() })
    };
    let deny = || Payload::RepoAdmin(RepoAdmin::DenyNode { node_key: node.public() });
    let txs = vec![
        gov(&outsider, 0, 0, set(&outsider, MemberRole::Admin)), // 0: not an admin
        gov(&admin, 0, 0, set(&admin, MemberRole::Write)),       // 1: the last admin
        gov(&admin, 1, 0, set(&writer, MemberRole::Write)),      // 2
        gov(&writer, 0, 0, set(&outsider, MemberRole::Read)),    // 3: a writer is no admin
        gov(&admin, 2, 0, remove(&outsider)),                    // 4: not a member
        gov(&admin, 3, 0, allow("10.0.0.5:7846")),               // 5: not a multiaddr
        gov(&admin, 4, 0, allow("/ip4/10.0.0.5/tcp/7946")),      // 6
        gov(&admin, 5, 0, allow("/ip4/10.0.0.5/tcp/7946")),      // 7: allowed already
        gov(&admin, 6, 0, set(&writer, MemberRole::Admin)),      // 8
        gov(&writer, 1, 0, remove(&admin)),                      // 9: two admins: fine
        gov(&writer, 2, 0, deny()),                              // 10
        gov(&writer, 3, 0, deny()),                              // 11: not allowed
        gov(&writer, 4, 0, remove(&writer)),                     // 12: the last admin
    ];
    let out = execute_block(&view, &ctx(), txs.clone(), Mode::Verify).unwrap();
    let reasons = failures(&out);
    let failed: Vec<usize> = reasons.iter().map(|(i, _)| *i).collect();
    assert_eq!(failed, vec![0, 1, 3, 4, 5, 7, 11, 12], "{reasons:?}");
    let said = |i: usize| reasons.iter().find(|(j, _)| *j == i).map(|(_, w)| w.clone()).unwrap_or_default();
    assert!(said(0).contains("is not an admin member"), "{}", said(0));
    assert!(said(1).contains("last admin"), "{}", said(1));
    assert!(said(4).contains("is not a member"), "{}", said(4));
    assert!(said(7).contains("allowed already"), "{}", said(7));
    assert!(said(11).contains("is not allowed"), "{}", said(11));
    let role = |k: &Keypair| record::<MemberRole>(&out, &member_key(&k.address()));
    assert_eq!((role(&writer), role(&admin)), (Some(MemberRole::Admin), None));
    assert_eq!(record::<u32>(&out, ADMINS_KEY), Some(1));
    assert_eq!(record::<Vec<NodeRecord>>(&out, NODES_KEY), Some(vec![]));
    for threads in [2, 4] {
        let (par, _) = ParallelExecutor::with_threads(threads, Vec::new())
            .min_parallel_txs(0)
            .execute_stats(&view, &ctx(), txs.clone(), Mode::Verify)
            .unwrap();
        assert_eq!(par, out);
    }
    let out =
        execute_block(&public, &ctx(), vec![gov(&admin, 0, 0, set(&writer, MemberRole::Read))], Mode::Verify)
            .unwrap();
    assert!(matches!(&out.receipts[0].status, ReceiptStatus::Failed(w) if w.contains("not private")));
}

/// Staking and voting in a large block of transfers: declared (the sender and the system
/// resource), so the block runs on the workers with the sequential result. One that leaves the
/// system resource out of its set is caught at its first governance key.
#[test]
fn a_block_of_transfers_with_a_vote_runs_on_the_workers() {
    let (mut view, mut txs) = random_block(5, 600, 3_000, 0);
    let keys = ["staker", "voter", "candidate"].map(Keypair::from_seed);
    let [staker, voter, candidate] = &keys;
    for k in &keys {
        view.0.insert(k.address(), Account { balance: 1_000, nonce: 0 });
    }
    txs.insert(2_500, gov(voter, 1, 0, Payload::Vote { candidates: vec![candidate.public()] }));
    txs.insert(2_000, gov(voter, 0, 200, Payload::Stake));
    txs.insert(1_000, gov(staker, 0, 300, Payload::Stake));
    let reg = Payload::RegisterBp { p2p_address: "/ip4/10.0.0.7/tcp/7846".into() };
    txs.insert(10, gov(candidate, 0, 0, reg));
    let expected = execute_block(&view, &ctx(), txs.clone(), Mode::Build).unwrap();
    for t in txs.iter().filter(|t| t.body.payload.is_governance()) {
        let r = expected.receipts.iter().find(|r| r.tx_hash == t.hash()).unwrap();
        assert!(r.status.is_success(), "{}: {:?}", t.body.payload.kind(), r.status);
    }
    let cand: super::governance::Candidate =
        record(&expected, &super::governance::candidate_key(&candidate.public())).unwrap();
    assert_eq!(cand.votes, 200, "the voter's stake counts for its candidate");
    for threads in [2, 3] {
        let (got, stats) = ParallelExecutor::with_threads(threads, Vec::new())
            .execute_with(&view, &ctx(), txs.clone(), Mode::Build, declared, &Default::default())
            .unwrap();
        assert_eq!(got, expected, "threads {threads}");
        assert_eq!((stats.threads, stats.reexecuted), (threads, 0), "{stats:?}");
    }
    // The vote, declared without the system resource: caught, and it and the rest run again.
    let vote = txs.iter().position(|t| matches!(t.body.payload, Payload::Vote { .. })).unwrap();
    let lying = |t: &Transaction| AccessSet { system: false, ..declared(t) };
    let only_the_vote = |t: &Transaction| if t.hash() == txs[vote].hash() { lying(t) } else { declared(t) };
    let (got, stats) = ParallelExecutor::with_threads(2, Vec::new())
        .execute_with(&view, &ctx(), txs.clone(), Mode::Build, only_the_vote, &Default::default())
        .unwrap();
    assert_eq!(got, expected);
    assert_eq!(stats.reexecuted, txs.len() - vote, "{stats:?}");
}

#[test]
fn block_signature_checks_on_workers_equal_single_checks() {
    let keys: Vec<Keypair> = (0..16).map(|i| Keypair::from_seed(&format!("v{i}"))).collect();
    let mut txs: Vec<Transaction> =
        (0..300).map(|i| tx(&keys[i % 16], (i / 16) as u64, keys[(i + 1) % 16].address(), 1, 1)).collect();
    txs[7].signature.0[5] ^= 1;
    txs[150].body.amount = 2; // signed for 1
    txs[299].signature.0[63] |= 0x80;
    let single: Vec<_> = txs.iter().map(aergo_primitives::crypto::verify_tx).collect();
    assert_eq!(single.iter().filter(|r| r.is_err()).count(), 3);
    for threads in [1, 2, 4, 8] {
        let executor = ParallelExecutor::with_threads(threads, Vec::new()).min_parallel_txs(2);
        assert_eq!(executor.verify_signatures(&txs), single, "{threads} threads");
        assert_eq!(executor.verify_signatures(&txs[..1]), single[..1].to_vec());
        assert!(executor.verify_signatures(&[]).is_empty());
    }
}

#[test]
fn signature_batches_are_even_per_thread_and_never_above_the_batch_size() {
    use crate::parallel::{verify_batch_len, VERIFY_BATCH};
    assert_eq!(verify_batch_len(10_000, 2), 1000);
    assert_eq!(verify_batch_len(10_000, 1), 1000);
    assert_eq!(verify_batch_len(2048, 2), VERIFY_BATCH);
    assert_eq!(verify_batch_len(3000, 2), 750);
    assert_eq!(verify_batch_len(1, 8), 1);
    assert_eq!(verify_batch_len(0, 2), 1);
    for n in [1, 2, 300, 1023, 1024, 1025, 4097, 10_000, 65_537] {
        for threads in 1..=8 {
            let len = verify_batch_len(n, threads);
            assert!((1..=VERIFY_BATCH).contains(&len), "{n} on {threads}: {len}");
            let batches = n.div_ceil(len);
            // Every thread gets the same count of batches (but for the shortest blocks).
            assert!(batches % threads == 0 || n < threads * VERIFY_BATCH, "{n} on {threads}: {batches}");
        }
    }
}

/// The state as a sorted map of raw keys (accounts included): serves contract reads and scans.
#[derive(Clone, Default)]
struct RawView(std::collections::BTreeMap<Vec<u8>, Vec<u8>>);

impl StateView for RawView {
    fn account(&self, a: &Address) -> Result<Account, StateError> {
        Ok(self.0.get(&account_key(a)).map(|v| borsh::from_slice(v).unwrap()).unwrap_or_default())
    }

    fn raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.0.get(key).cloned())
    }

    fn scan(&self, prefix: &[u8]) -> Result<Entries, StateError> {
        Ok(self
            .0
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl RawView {
    fn apply(&mut self, out: &ExecOutput) {
        for (k, v) in &out.changes {
            match v {
                Some(v) => self.0.insert(k.clone(), v.clone()),
                None => self.0.remove(k),
            };
        }
    }
}

const TOKEN: &str = include_str!("../../../examples/contracts/token.sql");
const GAS: u128 = 200_000;

fn call(
    key: &Keypair,
    nonce: u64,
    contract: Address,
    function: &str,
    args: Vec<aergo_sql::Value>,
) -> Transaction {
    let payload = Payload::Call { contract, function: function.into(), args };
    aergo_primitives::crypto::test_tx(key, "c", nonce, contract, 0, GAS, payload)
}

/// Deploys `sql` from `deployer` (nonce 0) into `view`; the contract's address.
fn deploy(view: &mut RawView, deployer: &Keypair, sql: &str) -> Address {
    let payload = Payload::Deploy { sql: sql.into() };
    let tx = aergo_primitives::crypto::test_tx(deployer, "c", 0, deployer.address(), 0, 2_000_000, payload);
    let out = execute_block(&*view, &ctx(), vec![tx], Mode::Verify).unwrap();
    assert!(out.receipts[0].status.is_success(), "{:?}", out.receipts[0].status);
    view.apply(&out);
    aergo_sql::store::contract_address(&deployer.address(), 0)
}

/// A deployed token whose deployer gave each of `holders` keys 1 000 tokens; every key has coins
/// for gas. Returns the state, the contract, the keys and their next nonces.
fn token_state(holders: usize) -> (RawView, Address, Vec<Keypair>, Vec<u64>) {
    use aergo_sql::Value;
    let deployer = Keypair::from_seed("deployer");
    let keys: Vec<Keypair> = (0..holders).map(|i| Keypair::from_seed(&format!("holder-{i}"))).collect();
    let mut view = RawView::default();
    for k in keys.iter().chain([&deployer]) {
        let acct = Account { balance: 10u128.pow(12), nonce: 0 };
        view.0.insert(account_key(&k.address()), borsh::to_vec(&acct).unwrap());
    }
    let contract = deploy(&mut view, &deployer, TOKEN);
    let gifts: Vec<Transaction> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            call(
                &deployer,
                1 + i as u64,
                contract,
                "transfer",
                vec![Value::Text(k.address().to_string()), Value::Int(1000)],
            )
        })
        .collect();
    let out = execute_block(&view, &ctx(), gifts, Mode::Verify).unwrap();
    assert!(out.receipts.iter().all(|r| r.status.is_success()));
    view.apply(&out);
    (view, contract, keys, vec![0; holders])
}

/// A block of contract transactions over the token: transfers among holders (`hot` percent pay
/// holder 0), failing ones (amount 0 raises, too large breaks the CHECK), bad nonces, whole-table
/// reads (`holders`), point reads, an unknown function, plain coin transfers, and a second token
/// deployed and called in the same block.
fn contract_block(
    seed: u64,
    n: usize,
    hot: u32,
    state: &(RawView, Address, Vec<Keypair>, Vec<u64>),
) -> Vec<Transaction> {
    use aergo_sql::Value;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (_, contract, keys, nonces) = state;
    let mut nonces = nonces.clone();
    let mut txs = Vec::with_capacity(n);
    let mut second: Option<Address> = None;
    for _ in 0..n {
        let from = rng.gen_range(0..keys.len());
        let to = if rng.gen_range(0..100) < hot { 0 } else { rng.gen_range(0..keys.len()) };
        let roll = rng.gen_range(0..40);
        let nonce = if roll == 0 { nonces[from] + 3 } else { nonces[from] };
        let who = Value::Text(keys[to].address().to_string());
        let t = match roll {
            1 => call(&keys[from], nonce, *contract, "holders", vec![]),
            2 => call(&keys[from], nonce, *contract, "balance_of", vec![who]),
            3 => call(&keys[from], nonce, *contract, "no_such_function", vec![]),
            4 => tx(&keys[from], nonce, keys[to].address(), 5, 1),
            5 if second.is_none() => {
                second = Some(aergo_sql::store::contract_address(&keys[from].address(), nonce));
                aergo_primitives::crypto::test_tx(
                    &keys[from],
                    "c",
                    nonce,
                    keys[from].address(),
                    0,
                    2_000_000,
                    Payload::Deploy { sql: TOKEN.into() },
                )
            }
            6 if second.is_some() => {
                call(&keys[from], nonce, second.unwrap(), "transfer", vec![who, Value::Int(1)])
            }
            7 => call(&keys[from], nonce, *contract, "transfer", vec![who, Value::Int(0)]),
            8 => call(&keys[from], nonce, *contract, "transfer", vec![who, Value::Int(5_000)]),
            // An argument that converts (CAST) to the parameter's type.
            9 => call(&keys[from], nonce, *contract, "transfer", vec![who, Value::Text("7".into())]),
            _ => call(&keys[from], nonce, *contract, "transfer", vec![who, Value::Int(rng.gen_range(1..60))]),
        };
        if roll != 0 {
            nonces[from] += 1;
        }
        txs.push(t);
    }
    txs
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn contract_blocks_run_in_parallel_with_the_sequential_result(seed: u64, n in 0usize..160, hot in 0u32..=100) {
        static STATE: std::sync::OnceLock<(RawView, Address, Vec<Keypair>, Vec<u64>)> = std::sync::OnceLock::new();
        let state = STATE.get_or_init(|| token_state(24));
        let txs = contract_block(seed, n, hot, state);
        let expected = execute_block(&state.0, &ctx(), txs.clone(), Mode::Build).unwrap();
        for threads in [1, 2, 4, 8] {
            let exec = ParallelExecutor::with_threads(threads, Vec::new()).min_parallel_txs(0);
            let (got, stats) = exec.execute_stats(&state.0, &ctx(), txs.clone(), Mode::Build).unwrap();
            prop_assert_eq!(&got, &expected, "threads {}", threads);
            prop_assert_eq!(stats.reexecuted, 0, "every access was declared");
        }
    }
}

#[test]
fn token_transfers_between_distinct_holders_are_independent() {
    use aergo_sql::Value;
    let state = token_state(8);
    let (view, contract, keys, _) = &state;
    // Four transfers with distinct senders and recipients, then one that pays holder 1 again.
    let pay = |from: usize, to: usize| {
        call(
            &keys[from],
            0,
            *contract,
            "transfer",
            vec![Value::Text(keys[to].address().to_string()), Value::Int(3)],
        )
    };
    let txs = [pay(0, 1), pay(2, 3), pay(4, 5), pay(6, 7), pay(3, 1)];
    let analyzer = access::Analyzer::new(view, &txs);
    let sets: Vec<AccessSet> = txs.iter().map(|t| analyzer.declared(t)).collect();
    let c = sets[0].contract.as_ref().unwrap();
    assert!(!c.whole && c.tables.is_empty() && c.rows.len() == 2, "{c:?}");
    let dtt = dtt::Dtt::build(&sets);
    let deps: Vec<Vec<u32>> = dtt.deps.iter().map(|d| d.to_vec()).collect();
    assert_eq!(deps, vec![vec![], vec![], vec![], vec![], vec![1, 0]]);
    // `holders` reads the whole table: it waits for every transfer before it.
    let all = call(&keys[5], 1, *contract, "holders", vec![]);
    let mut sets2 = sets.clone();
    sets2.push(analyzer.declared(&all));
    assert_eq!(dtt::Dtt::build(&sets2).deps[5].len(), 5);

    // A block of such transfers runs on the workers (not the in-order fallback), same result.
    let big = token_state(64);
    let mut nonces = vec![0u64; 64];
    let txs: Vec<Transaction> = (0..256)
        .map(|i| {
            let from = (i * 7) % 64;
            nonces[from] += 1;
            let to = Value::Text(big.2[(i * 13 + 5) % 64].address().to_string());
            call(&big.2[from], nonces[from] - 1, big.1, "transfer", vec![to, Value::Int(2)])
        })
        .collect();
    let expected = execute_block(&big.0, &ctx(), txs.clone(), Mode::Verify).unwrap();
    assert!(expected.receipts.iter().all(|r| r.status.is_success()));
    let (got, stats) = ParallelExecutor::with_threads(2, Vec::new())
        .execute_stats(&big.0, &ctx(), txs, Mode::Verify)
        .unwrap();
    assert_eq!(got, expected);
    assert_eq!((stats.threads, stats.reexecuted), (2, 0), "{stats:?}");
}

#[test]
fn a_contract_call_that_lies_about_its_rows_is_caught_and_the_result_stays_right() {
    let state = token_state(24);
    let txs = contract_block(5, 150, 10, &state);
    let view = &state.0;
    let expected = execute_block(view, &ctx(), txs.clone(), Mode::Build).unwrap();
    let analyzer = access::Analyzer::new(view, &txs);
    // The 60th transaction (a transfer) declares its sender's row only; it writes the recipient's.
    let liar = (60..150)
        .find(|&i| match &txs[i].body.payload {
            Payload::Call { function, args, .. } => {
                function == "transfer"
                    && matches!(args[1], aergo_sql::Value::Int(1..=59))
                    && args[0] != aergo_sql::Value::Text(txs[i].sender().to_string())
            }
            _ => false,
        })
        .unwrap();
    let liar_hash = txs[liar].hash();
    let lying = |t: &Transaction| {
        let mut s = analyzer.declared(t);
        if t.hash() == liar_hash {
            let c = s.contract.as_mut().unwrap();
            let mut sender_row = Vec::new();
            aergo_sql::value::encode_key(&mut sender_row, &aergo_sql::Value::Text(t.sender().to_string()));
            c.rows.retain(|(_, pk)| *pk == sender_row);
        }
        s
    };
    let exec = ParallelExecutor::with_threads(2, Vec::new()).min_parallel_txs(0);
    let (got, stats) =
        exec.execute_with(view, &ctx(), txs.clone(), Mode::Build, lying, analyzer.contracts()).unwrap();
    assert_eq!(got, expected);
    assert!(stats.reexecuted > 0 && stats.reexecuted <= 150 - liar, "{stats:?}");

    // One that declares no contract state at all: the workers hand it the compiled contract
    // without reading the script, yet the read is checked all the same.
    let no_contract = |t: &Transaction| {
        let mut s = analyzer.declared(t);
        if t.hash() == liar_hash {
            s.contract = None;
        }
        s
    };
    let (got, stats) =
        exec.execute_with(view, &ctx(), txs, Mode::Build, no_contract, analyzer.contracts()).unwrap();
    assert_eq!(got, expected);
    assert_eq!(stats.reexecuted, 150 - liar, "{stats:?}");
}

/// A contract function that pays out native coins with `transfer_native`: its payee is known only
/// while it runs, so its call cannot be declared. A large block holding one far into it (the workers
/// have started on the chunks before it) runs in order, with the sequential result.
#[test]
fn a_block_with_a_transaction_that_cannot_be_declared_runs_in_order() {
    const TIP_JAR: &str = "CREATE FUNCTION pay(payee TEXT, n INTEGER) RETURNS VOID AS $$
BEGIN
  PERFORM transfer_native(payee, n);
END $$;";
    let (accounts, mut txs) = random_block(5, 600, 3_000, 0);
    let mut view = RawView::default();
    for (a, acct) in &accounts.0 {
        view.0.insert(account_key(a), borsh::to_vec(acct).unwrap());
    }
    let owner = Keypair::from_seed("owner");
    view.0.insert(
        account_key(&owner.address()),
        borsh::to_vec(&Account { balance: 10u128.pow(9), nonce: 0 }).unwrap(),
    );
    let jar = deploy(&mut view, &owner, TIP_JAR);
    // The owner funds the jar with the call, which pays a recipient chosen by its argument.
    let payee = aergo_sql::Value::Text(Keypair::from_seed("payee").address().to_string());
    let pay =
        Payload::Call { contract: jar, function: "pay".into(), args: vec![payee, aergo_sql::Value::Int(40)] };
    txs.insert(2_000, aergo_primitives::crypto::test_tx(&owner, "c", 1, jar, 100, GAS, pay));
    let analyzer = access::Analyzer::new(&view, &txs);
    assert!(analyzer.declared(&txs[2_000]).opaque);
    let expected = execute_block(&view, &ctx(), txs.clone(), Mode::Build).unwrap();
    let paid = expected.receipts.iter().find(|r| r.tx_hash == txs[2_000].hash()).unwrap();
    assert!(paid.status.is_success(), "{:?}", paid.status);
    let (got, stats) =
        ParallelExecutor::with_threads(2, Vec::new()).execute_stats(&view, &ctx(), txs, Mode::Build).unwrap();
    assert_eq!(got, expected);
    assert_eq!((stats.threads, stats.reexecuted), (1, 0), "{stats:?}");
}

#[test]
fn large_blocks_are_probed_for_contention_first() {
    for (hot, threads) in [(100, 1), (0, 2)] {
        let (view, txs) = random_block(3, 400, 3000, hot);
        let expected = execute_block(&view, &ctx(), txs.clone(), Mode::Build).unwrap();
        let (got, stats) = ParallelExecutor::with_threads(2, Vec::new())
            .execute_with(&view, &ctx(), txs, Mode::Build, declared, &Default::default())
            .unwrap();
        assert_eq!(got, expected);
        assert_eq!(stats.threads, threads, "hot {hot}: {stats:?}");
        if hot == 100 {
            // Decided on the probe (the block's first transactions), not the whole block.
            assert!(stats.critical_path <= 512, "{stats:?}");
        }
    }
}
