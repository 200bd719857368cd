use super::access::{declared, AccessSet};
use super::parallel::ParallelExecutor;
use super::*;
use crate::crypto::Keypair;
use crate::types::Payload;
use proptest::prelude::*;

struct MapView(HashMap<Address, Account>);

impl StateView for MapView {
    fn account(&self, a: &Address) -> Result<Account, StateError> {
        Ok(self.0.get(a).copied().unwrap_or_default())
    }

    fn raw(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(None)
    }
}

fn tx(key: &Keypair, nonce: u64, to: Address, amount: u128, fee: u128) -> Transaction {
    crate::crypto::test_tx(key, "c", nonce, to, amount, fee, Payload::Transfer)
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
        height: 1,
        timestamp_ms: 5,
        producer: Keypair::from_seed("bp").address(),
        staking: crate::exec::StakingParams { unstake_lock_blocks: 3, max_votes: 2 },
    }
}

#[test]
fn transfers_fees_and_failures() {
    let alice = Keypair::from_seed("alice");
    let bob = Keypair::from_seed("bob").address();
    let producer = ctx().producer;
    let view = MapView([(alice.address(), Account { balance: 100, nonce: 0 })].into());
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

/// A block of `n` transfers among `accounts` funded keys. `hot` percent of transfers go between two hot
/// accounts; about one in ten carries a wrong nonce (invalid) and one in ten moves more than the sender
/// has (fails).
fn random_block(seed: u64, accounts: usize, n: usize, hot: u32) -> (MapView, Vec<Transaction>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let keys: Vec<Keypair> = (0..accounts).map(|i| Keypair::from_seed(&format!("acct-{i}"))).collect();
    let view = MapView(keys.iter().map(|k| (k.address(), Account { balance: 1_000, nonce: 0 })).collect());
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
        let amount = if roll == 1 { 5_000 } else { rng.gen_range(0..40) };
        txs.push(tx(&keys[from], nonce, keys[to].address(), amount, rng.gen_range(0..3)));
    }
    (view, txs)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn parallel_equals_sequential(
        seed: u64, accounts in 2usize..40, n in 0usize..300, hot in 0u32..=100, producer_sends: bool
    ) {
        let (view, txs) = random_block(seed, accounts, n, hot);
        // Sometimes the producer is one of the accounts that send and receive.
        let ctx = if producer_sends {
            BlockContext { producer: Keypair::from_seed("acct-0").address(), ..ctx() }
        } else {
            ctx()
        };
        let expected = execute_block(&view, &ctx, txs.clone(), Mode::Build).unwrap();
        for threads in [1, 2, 4, 8] {
            let exec = ParallelExecutor::with_threads(threads, Vec::new()).min_parallel_txs(0);
            let (got, stats) = exec.execute_with(&view, &ctx, txs.clone(), Mode::Build, declared).unwrap();
            prop_assert_eq!(&got, &expected, "threads {}", threads);
            prop_assert_eq!(stats.reexecuted, 0);
        }
    }
}

#[test]
fn a_transaction_that_lies_about_its_access_set_is_caught_and_the_result_stays_right() {
    let (view, txs) = random_block(7, 20, 400, 10);
    let expected = execute_block(&view, &ctx(), txs.clone(), Mode::Build).unwrap();
    let liar = txs[150].hash();
    // The liar declares only its sender, then writes its recipient too.
    let lying = |t: &Transaction| {
        if t.hash() == liar {
            AccessSet { accounts: smallvec::smallvec![t.sender()] }
        } else {
            declared(t)
        }
    };
    let exec = ParallelExecutor::with_threads(2, Vec::new());
    let (got, stats) = exec.execute_with(&view, &ctx(), txs, Mode::Build, lying).unwrap();
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

/// Records, for each read made from an execution worker, the worker's `Cpus_allowed_list`.
struct PinProbe {
    inner: MapView,
    seen: parking_lot::Mutex<Vec<(String, String)>>,
}

impl StateView for PinProbe {
    fn account(&self, a: &Address) -> Result<Account, StateError> {
        let name = std::thread::current().name().unwrap_or_default().to_string();
        if name.starts_with("aergo-exec-") {
            let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
            let cpus = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .unwrap_or_default()
                .trim()
                .to_string();
            self.seen.lock().push((name, cpus));
        }
        self.inner.account(a)
    }

    fn raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.inner.raw(key)
    }
}

#[test]
fn workers_are_pinned_to_their_cores() {
    let cores = affinity::available_cores();
    let (inner, txs) = random_block(3, 30, 300, 0);
    let probe = PinProbe { inner, seen: Default::default() };
    let exec = ParallelExecutor::new(cores.clone());
    exec.execute(&probe, &ctx(), txs, Mode::Build).unwrap();
    let seen = probe.seen.lock();
    if cores.len() < 2 {
        assert!(seen.is_empty(), "one core: the sequential path runs on the caller's thread");
        return;
    }
    assert!(!seen.is_empty());
    for (name, cpus) in seen.iter() {
        let w: usize = name.trim_start_matches("aergo-exec-").parse().unwrap();
        assert_eq!(cpus, &cores[w % cores.len()].to_string(), "{name} runs only on its core");
    }
}

fn gov(key: &Keypair, nonce: u64, amount: u128, payload: Payload) -> Transaction {
    crate::crypto::test_tx(key, "c", nonce, key.address(), amount, 1, payload)
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
    let all: Vec<crate::types::PublicKey> = record(&out, CANDIDATES_KEY).unwrap();
    assert_eq!(all, vec![bp.public()]);
    // The parallel engine runs such a block in order and agrees byte for byte.
    let par =
        ParallelExecutor::with_threads(2, Vec::new()).execute(&view, &ctx(), txs, Mode::Verify).unwrap();
    assert_eq!(par, out);
}

#[test]
fn block_signature_checks_on_workers_equal_single_checks() {
    let keys: Vec<Keypair> = (0..16).map(|i| Keypair::from_seed(&format!("v{i}"))).collect();
    let mut txs: Vec<Transaction> =
        (0..300).map(|i| tx(&keys[i % 16], (i / 16) as u64, keys[(i + 1) % 16].address(), 1, 1)).collect();
    txs[7].signature.0[5] ^= 1;
    txs[150].body.amount = 2; // signed for 1
    txs[299].signature.0[63] |= 0x80;
    let single: Vec<_> = txs.iter().map(crate::crypto::verify_tx).collect();
    assert_eq!(single.iter().filter(|r| r.is_err()).count(), 3);
    for threads in [1, 2, 4, 8] {
        let executor = ParallelExecutor::with_threads(threads, Vec::new()).min_parallel_txs(2);
        assert_eq!(executor.verify_signatures(&txs), single, "{threads} threads");
        assert_eq!(executor.verify_signatures(&txs[..1]), single[..1].to_vec());
        assert!(executor.verify_signatures(&[]).is_empty());
    }
}
