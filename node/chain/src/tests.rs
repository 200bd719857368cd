const TOKEN: &str = include_str!("../../../examples/contracts/token.sql");

use super::*;
use aergo_config::genesis::{ConsensusParams, GenesisBalance, GenesisProducer};
use aergo_primitives::types::{Payload, ReceiptStatus};

fn genesis(bp: &Keypair, rich: &Keypair) -> Genesis {
    Genesis {
        chain_id: "test".into(),
        timestamp_ms: 1_000,
        consensus: ConsensusParams::default(),
        balances: vec![GenesisBalance { address: rich.address(), amount: 1_000_000 }],
        producers: vec![GenesisProducer { public_key: hex::encode(bp.public().0) }],
        access: None,
    }
}

fn transfer(key: &Keypair, nonce: u64, to: Address, amount: u128) -> Transaction {
    aergo_primitives::crypto::test_tx(key, "test", nonce, to, amount, 1, Payload::Transfer)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn produce_read_old_heights_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (bp, alice, bob) = (Keypair::from_seed("bp"), Keypair::from_seed("alice"), Keypair::from_seed("bob"));
    let g = genesis(&bp, &alice);
    let (mut chain, report) = Chain::open(dir.path(), &g, LogOptions::default()).unwrap();
    assert!(report.created);
    let b1 = chain.produce(&bp, vec![transfer(&alice, 0, bob.address(), 100)], 2_000).unwrap();
    assert_eq!(b1.block.header.height, 1);
    let b2 = chain
        .produce(
            &bp,
            vec![transfer(&alice, 1, bob.address(), 50), transfer(&alice, 1, bob.address(), 7)],
            3_000,
        )
        .unwrap();
    assert_eq!(b2.block.transactions.len(), 1, "the duplicate nonce is left out");
    assert_eq!(b2.dropped.len(), 1);
    let store = chain.store();
    assert_eq!(store.account_at(&bob.address(), 0).unwrap().balance, 0);
    assert_eq!(store.account_at(&bob.address(), 1).unwrap().balance, 100);
    assert_eq!(store.account_at(&bob.address(), 2).unwrap().balance, 150);
    assert_eq!(
        store.account_at(&alice.address(), 2).unwrap(),
        Account { balance: 1_000_000 - 152, nonce: 2 }
    );
    assert_eq!(store.account_at(&bp.address(), 2).unwrap().balance, 2, "fees went to the producer");
    assert!(matches!(store.account_at(&bob.address(), 3), Err(StateError::HeightUnavailable { .. })));
    for h in 0..=2 {
        let meta = store.block_meta(h).unwrap().unwrap();
        assert_eq!(store.root_at(h).unwrap(), meta.header.state_root, "stored root at {h}");
    }
    let head = chain.head();
    drop((chain, store));
    let (chain, report) = Chain::open(dir.path(), &g, LogOptions::default()).unwrap();
    assert!(!report.created && report.replayed == 0);
    assert_eq!(chain.head(), head);
    let block = read_block(&chain.store(), &chain.log_reader(), 2).unwrap().unwrap();
    assert_eq!(block.hash(), b2.block.hash());
}

#[test]
fn a_logged_but_uncommitted_block_is_replayed_once() {
    let dir = tempfile::tempdir().unwrap();
    let (bp, alice, bob) = (Keypair::from_seed("bp"), Keypair::from_seed("alice"), Keypair::from_seed("bob"));
    let g = genesis(&bp, &alice);
    let (mut chain, _) = Chain::open(dir.path(), &g, LogOptions::default()).unwrap();
    chain.produce(&bp, vec![transfer(&alice, 0, bob.address(), 10)], 2_000).unwrap();
    drop(chain);
    let snapshot = dir.path().join("state-at-1");
    copy_dir(&dir.path().join("state"), &snapshot);
    let (mut chain, _) = Chain::open(dir.path(), &g, LogOptions::default()).unwrap();
    let b2 = chain.produce(&bp, vec![transfer(&alice, 1, bob.address(), 20)], 3_000).unwrap();
    let head = chain.head();
    drop(chain);
    // The state as it was before block 2's batch: block 2 is in the log only, as after a crash there.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    std::fs::rename(&snapshot, dir.path().join("state")).unwrap();
    let (chain, report) = Chain::open(dir.path(), &g, LogOptions::default()).unwrap();
    assert_eq!(report.replayed, 1);
    assert_eq!(chain.head(), head);
    assert_eq!(chain.store().account(&bob.address()).unwrap().balance, 30);
    assert_eq!(chain.store().tx_location(&b2.block.transactions[0].hash()).unwrap().unwrap().height, 2);
    drop(chain);
    let (_, report) = Chain::open(dir.path(), &g, LogOptions::default()).unwrap();
    assert_eq!(report.replayed, 0, "nothing is replayed twice");
}

#[test]
fn another_genesis_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (bp, alice) = (Keypair::from_seed("bp"), Keypair::from_seed("alice"));
    drop(Chain::open(dir.path(), &genesis(&bp, &alice), LogOptions::default()).unwrap());
    let other = genesis(&bp, &Keypair::from_seed("mallory"));
    assert!(matches!(
        Chain::open(dir.path(), &other, LogOptions::default()),
        Err(ChainError::GenesisMismatch { .. })
    ));
}

#[test]
fn a_private_repositorys_block_with_a_sender_who_may_not_write_is_refused() {
    use aergo_config::genesis::{AccessParams, GenesisMember};
    use aergo_primitives::types::{MemberRole, RepoAdmin};
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (bp, alice, bob) = (Keypair::from_seed("bp"), Keypair::from_seed("alice"), Keypair::from_seed("bob"));
    let mut g = genesis(&bp, &alice);
    g.balances.push(GenesisBalance { address: bob.address(), amount: 1_000 });
    g.access = Some(AccessParams {
        private: true,
        members: vec![
            GenesisMember { address: alice.address(), role: MemberRole::Admin },
            GenesisMember { address: bob.address(), role: MemberRole::Write },
        ],
        nodes: vec![],
    });
    let (mut producer, _) = Chain::open(a.path(), &g, LogOptions::default()).unwrap();
    let (mut follower, _) = Chain::open(b.path(), &g, LogOptions::default()).unwrap();
    // The admin takes bob's role away.
    let remove = aergo_primitives::crypto::test_tx(
        &alice,
        "test",
        0,
        alice.address(),
        0,
        1,
        Payload::RepoAdmin(RepoAdmin::RemoveMember { member: bob.address() }),
    );
    let first = producer.produce(&bp, vec![remove], 2_000).unwrap();
    assert_eq!(first.receipts[0].status, ReceiptStatus::Success, "{:?}", first.receipts[0]);
    follower.import((*first.block).clone()).unwrap();
    // An honest builder leaves bob's transfer out and says why.
    let bobs = transfer(&bob, 0, alice.address(), 5);
    let (honest, out, _) = producer.build(&bp, vec![bobs.clone()], 3_000).unwrap();
    assert!(honest.transactions.is_empty());
    assert!(
        out.dropped.iter().any(|(h, why)| *h == bobs.hash() && why.contains("may not write")),
        "{:?}",
        out.dropped
    );
    // A producer that breaks the rule: its block is refused by the verifier, by the parent state.
    let (broken, _, _) = producer.build_by(&bp, vec![bobs.clone()], 3_000, false).unwrap();
    assert_eq!(broken.transactions.len(), 1);
    let refused = follower.import(broken);
    assert!(
        matches!(&refused, Err(ChainError::InvalidBlock { reason, .. }) if reason.contains("may not write to this private repository")),
        "{:?}",
        refused.err()
    );
    assert_eq!(follower.head(), producer.head(), "the refused block changed the follower");
}

#[test]
fn imported_blocks_are_checked() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (bp, alice, bob) = (Keypair::from_seed("bp"), Keypair::from_seed("alice"), Keypair::from_seed("bob"));
    let g = genesis(&bp, &alice);
    let (mut producer, _) = Chain::open(a.path(), &g, LogOptions::default()).unwrap();
    let (mut follower, _) = Chain::open(b.path(), &g, LogOptions::default()).unwrap();
    let block =
        (*producer.produce(&bp, vec![transfer(&alice, 0, bob.address(), 10)], 2_000).unwrap().block).clone();
    let mut forged = block.clone();
    forged.header.state_root = Hash::ZERO;
    assert!(matches!(follower.import(forged), Err(ChainError::InvalidBlock { .. })));
    let mut stranger = block.clone();
    stranger.signature = Keypair::from_seed("x").sign(&stranger.hash());
    assert!(matches!(follower.import(stranger), Err(ChainError::InvalidBlock { .. })));
    // Signed by its producer, roots of transactions and receipts right, but a state root that
    // executing it does not give: refused for that, and the follower takes the real block after.
    let mut wrong_root = block.clone();
    wrong_root.header.state_root = Hash::ZERO;
    wrong_root.signature = bp.sign(&wrong_root.hash());
    let refused = follower.import(wrong_root);
    assert!(
        matches!(&refused, Err(ChainError::InvalidBlock { reason, .. }) if reason.starts_with("state root")),
        "{:?}",
        refused.err()
    );
    follower.import(block).unwrap();
    assert_eq!(follower.head(), producer.head());
}

/// Verify once (`docs/exec.md`): a transaction whose signature passed at admission is not checked
/// again inside a block — but only with the very signature bytes that passed. A block carrying a
/// known transaction's body under other signature bytes is checked, and refused.
#[test]
fn a_block_skips_the_signature_checks_admission_made_but_not_a_known_hash_under_another_signature() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (bp, alice, bob) = (Keypair::from_seed("bp"), Keypair::from_seed("alice"), Keypair::from_seed("bob"));
    let g = genesis(&bp, &alice);
    let (mut producer, _) = Chain::open(a.path(), &g, LogOptions::default()).unwrap();
    let (mut follower, _) = Chain::open(b.path(), &g, LogOptions::default()).unwrap();
    let verified = Arc::new(crypto::Verified::new(1024));
    follower.set_verified(verified.clone());
    let txs: Vec<Transaction> = (0..3).map(|n| transfer(&alice, n, bob.address(), 10)).collect();
    // The follower's admission checked the first two.
    for tx in &txs[..2] {
        assert!(crypto::verify_tx(tx).is_ok());
        verified.insert(tx);
    }
    let block = (*producer.produce(&bp, txs.clone(), 2_000).unwrap().block).clone();
    // The same block with the first transaction's signature bytes changed: the block's hash and
    // the producer's signature still hold (the transactions root is over the signed bodies'
    // hashes), so only the transaction's own check can refuse it.
    let mut forged = block.clone();
    forged.transactions[0] = Transaction::new(txs[0].body.clone(), Signature([9; 64]));
    assert_eq!(forged.hash(), block.hash());
    assert_eq!(forged.transactions[0].hash(), txs[0].hash());
    let refused = follower.import(forged);
    assert!(
        matches!(&refused, Err(ChainError::InvalidBlock { reason, .. })
            if reason.contains(&txs[0].hash().to_string()) && reason.contains("signature")),
        "{:?}",
        refused.err()
    );
    assert_eq!(follower.head().height, 0);
    let times = follower.stage_times();
    let skipped_before = times.signatures_skipped.load(Ordering::Relaxed);
    follower.import(block).unwrap();
    assert_eq!(follower.head(), producer.head());
    assert_eq!(times.signatures_skipped.load(Ordering::Relaxed) - skipped_before, 2, "two checks skipped");
    // A follower that remembers nothing checks all of them, as before.
    let c = tempfile::tempdir().unwrap();
    let (mut plain, _) = Chain::open(c.path(), &g, LogOptions::default()).unwrap();
    let mut forged = read_block(&producer.store(), &producer.log_reader(), 1).unwrap().unwrap();
    forged.transactions[2] = Transaction::new(txs[2].body.clone(), Signature([9; 64]));
    assert!(matches!(plain.import(forged), Err(ChainError::InvalidBlock { .. })));
    assert_eq!(plain.stage_times().signatures_skipped.load(Ordering::Relaxed), 0);
}

#[test]
fn rollback_takes_blocks_back_and_another_branch_follows() {
    let dir = tempfile::tempdir().unwrap();
    let (bp, alice, bob) = (Keypair::from_seed("bp"), Keypair::from_seed("alice"), Keypair::from_seed("bob"));
    let g = genesis(&bp, &alice);
    let (mut chain, _) = Chain::open(dir.path(), &g, LogOptions::default()).unwrap();
    let b1 = chain.produce(&bp, vec![transfer(&alice, 0, bob.address(), 100)], 2_000).unwrap();
    let b2 = chain.produce(&bp, vec![transfer(&alice, 1, bob.address(), 50)], 3_000).unwrap();
    let b3 = chain.produce(&bp, vec![transfer(&alice, 2, bob.address(), 25)], 4_000).unwrap();
    let store = chain.store();
    assert_eq!(store.account(&bob.address()).unwrap().balance, 175);
    // Final up to 1: nothing at or below it can be taken back.
    chain.finalize(1, b1.block.hash()).unwrap();
    assert!(matches!(chain.rollback_to(0), Err(ChainError::State(StateError::BelowFinal { .. }))));
    let removed = chain.rollback_to(1).unwrap();
    assert_eq!(removed.iter().map(|b| b.hash()).collect::<Vec<_>>(), vec![b2.block.hash(), b3.block.hash()]);
    assert_eq!(chain.head().hash, b1.block.hash());
    assert_eq!(store.account(&bob.address()).unwrap().balance, 100);
    assert!(store.tx_location(&b2.block.transactions[0].hash()).unwrap().is_none());
    assert!(store.height_of(&b3.block.hash()).unwrap().is_none());
    assert_eq!(store.root_at(1).unwrap(), b1.block.header.state_root);
    // Another branch from 1: the same nonce spent differently, in a later slot.
    let c2 = chain.produce(&bp, vec![transfer(&alice, 1, bob.address(), 7)], 5_000).unwrap();
    assert_eq!(store.account(&bob.address()).unwrap().balance, 107);
    drop((chain, store));
    // Reopened: the branch is what the log and the store hold.
    let (chain, report) = Chain::open(dir.path(), &g, LogOptions::default()).unwrap();
    assert_eq!(report.replayed, 0);
    assert_eq!(chain.head().hash, c2.block.hash());
    assert_eq!(chain.head().height, 2);
    assert_eq!(chain.store().account(&bob.address()).unwrap().balance, 107);
}

/// A transfer signed for `branch`.
fn transfer_on(branch: &str, key: &Keypair, nonce: u64, to: Address, amount: u128) -> Transaction {
    signed_on(branch, key, nonce, to, amount, 1, Payload::Transfer)
}

/// A branch's chain over main's store: its own blocks (version-2 headers naming it) from base + 1,
/// its own producer, transactions for other branches left out, main unchanged and refusing the
/// branch's blocks; reopened as it was; rolled back to its base (its log emptied) and grown again.
#[test]
fn a_branch_chain_grows_over_its_parent_and_rolls_back_to_its_base() {
    let dir = tempfile::tempdir().unwrap();
    let (bp, alice, bob) = (Keypair::from_seed("bp"), Keypair::from_seed("alice"), Keypair::from_seed("bob"));
    let branch_bp = Keypair::from_seed("branch-bp");
    let g = genesis(&bp, &alice);
    let (mut main, _) = Chain::open(dir.path(), &g, LogOptions::default()).unwrap();
    main.produce(&bp, vec![transfer(&alice, 0, bob.address(), 100)], 2_000).unwrap();
    let b2 = main.produce(&bp, vec![transfer(&alice, 1, bob.address(), 50)], 3_000).unwrap();
    let spec = BranchSpec { name: "feature".into(), base_height: 2, producers: vec![branch_bp.public()] };
    let bdir = dir.path().join("branches/feature");
    let open = |main: &Chain| {
        Chain::open_branch(&bdir, &g, &spec, main.store(), LogOptions::default(), StateOptions::default())
    };
    // The base must be final on main.
    assert!(matches!(open(&main), Err(ChainError::State(StateError::BaseNotFinal { .. }))));
    main.finalize(2, b2.block.hash()).unwrap();
    let (mut branch, report) = open(&main).unwrap();
    assert!(report.created);
    assert_eq!((branch.branch(), branch.head().hash), ("feature", b2.block.hash()));

    // Main's transactions are not the branch's, and only the branch's producer signs its slots.
    let on_main = transfer(&alice, 2, bob.address(), 1);
    let f3 = branch
        .produce(
            &branch_bp,
            vec![on_main.clone(), transfer_on("feature", &alice, 2, bob.address(), 30)],
            4_000,
        )
        .unwrap();
    assert_eq!(f3.block.transactions.len(), 1);
    assert_eq!(f3.dropped.len(), 1, "{:?}", f3.dropped);
    assert!(
        f3.dropped[0].1.contains("is for branch \"main\", this block is on \"feature\""),
        "{:?}",
        f3.dropped
    );
    let h = &f3.block.header;
    assert_eq!((h.height, h.prev_hash, h.branch.as_str(), h.version), (3, b2.block.hash(), "feature", 2));
    let (foreign, _, _) = branch.build(&bp, vec![], 5_000).unwrap();
    let err = branch.import(foreign).unwrap_err().to_string();
    assert!(err.contains("slot") && err.contains(&bp.address().to_string()), "main's producer: {err}");
    let f4 =
        branch.produce(&branch_bp, vec![transfer_on("feature", &alice, 3, bob.address(), 4)], 6_000).unwrap();
    let bstore = branch.store();
    assert_eq!(bstore.account(&bob.address()).unwrap().balance, 184);
    assert_eq!(bstore.account_at(&bob.address(), 2).unwrap().balance, 150, "below the base: main's");
    assert_eq!(main.store().account(&bob.address()).unwrap().balance, 150, "main is unchanged");
    // Main refuses a branch's block on top of its own head.
    let err = main.import((*f3.block).clone()).unwrap_err().to_string();
    assert!(err.contains("the block is on branch \"feature\", this chain is \"main\""), "{err}");

    // Reopened: the branch's blocks and state are there.
    let head = branch.head();
    drop((branch, bstore));
    let (mut branch, report) = open(&main).unwrap();
    assert!(!report.created && report.replayed == 0);
    assert_eq!(branch.head(), head);
    let read = read_block(&branch.store(), &branch.log_reader(), 4).unwrap().unwrap();
    assert_eq!(read.hash(), f4.block.hash());

    // Back to the base (nothing of the branch is final): its log is emptied, and it grows again.
    let removed = branch.rollback_to(2).unwrap();
    assert_eq!(removed.len(), 2);
    assert_eq!(branch.head().hash, b2.block.hash());
    assert_eq!(branch.store().account(&bob.address()).unwrap().balance, 150);
    let g3 =
        branch.produce(&branch_bp, vec![transfer_on("feature", &alice, 2, bob.address(), 9)], 7_000).unwrap();
    drop(branch);
    let (branch, _) = open(&main).unwrap();
    assert_eq!(branch.head().hash, g3.block.hash());
    assert_eq!(branch.store().account(&bob.address()).unwrap().balance, 159);
}

fn signed_on(
    branch: &str,
    key: &Keypair,
    nonce: u64,
    to: Address,
    amount: u128,
    fee: u128,
    payload: Payload,
) -> Transaction {
    key.sign_tx(aergo_primitives::types::TxBody {
        version: aergo_primitives::types::TxBody::version_for(branch),
        chain_id: "test".into(),
        branch: branch.into(),
        nonce,
        sender: key.public(),
        recipient: to,
        amount,
        fee,
        payload,
    })
}

/// Opens branch `feature` of `main` at `base_height`, produced by `producer`, in `dir/feature`.
fn open_feature(dir: &Path, g: &Genesis, main: &Chain, producer: &Keypair, base_height: u64) -> Chain {
    let spec = BranchSpec { name: "feature".into(), base_height, producers: vec![producer.public()] };
    let options = (LogOptions::default(), StateOptions::default());
    Chain::open_branch(&dir.join("feature"), g, &spec, main.store(), options.0, options.1).unwrap().0
}

/// Points `main`'s merges at `branch` (as `feature`), final up to `lib`.
fn read_merges_from(main: &mut Chain, branch: &Chain, lib: u64) {
    let source = TestSource { store: branch.store(), reader: branch.log_reader(), lib, lie: false };
    main.set_merge_sources(Arc::new(source));
}

/// `key`'s merge of `feature` into `main` with `nonce`, by `strategy`, up to block `upto` (a
/// replay's fee is 1; a three-way merge's is its gas limit).
fn merge_signed(
    key: &Keypair,
    nonce: u64,
    strategy: aergo_primitives::types::MergeStrategy,
    upto: u64,
    upto_hash: Hash,
) -> Transaction {
    let fee = if strategy == aergo_primitives::types::MergeStrategy::Replay { 1 } else { 1_000_000 };
    let payload = Payload::Merge { source: "feature".into(), strategy, upto, upto_hash };
    signed_on("main", key, nonce, key.address(), 0, fee, payload)
}

/// A branch's blocks as a merge reads them: its chain's store and log, final up to `lib`
/// (a lying source leaves its last transaction out).
struct TestSource {
    store: Arc<StateStore>,
    reader: LogReader,
    lib: u64,
    lie: bool,
}

impl MergeSources for TestSource {
    fn transactions(
        &self,
        source: &str,
        after: u64,
        upto: u64,
        upto_hash: &Hash,
    ) -> Result<Vec<(u64, Transaction)>, SourceError> {
        assert_eq!(source, "feature");
        if upto > self.lib {
            return Err(SourceError::Unavailable(format!("{upto} is not final")));
        }
        let mut out = source_transactions(source, (after, upto, upto_hash), |h| {
            read_block(&self.store, &self.reader, h)
        })?;
        if self.lie {
            out.remove(1);
        }
        Ok(out)
    }

    fn state(&self, source: &str, upto: u64, upto_hash: &Hash) -> Result<Arc<StateStore>, SourceError> {
        if upto > self.lib {
            return Err(SourceError::Unavailable(format!("{upto} is not final")));
        }
        source_state(source, self.store.clone(), upto, upto_hash)
    }
}

fn merge_rows(r: &Receipt) -> Vec<(String, String, String)> {
    let ReceiptStatus::Returned(res) = &r.status else { panic!("a merge receipt with rows: {r:?}") };
    assert_eq!(res.columns, ["tx", "height", "result", "reason"]);
    res.rows
        .iter()
        .map(|row| {
            let text = |v: &aergo_primitives::value::Value| match v {
                aergo_primitives::value::Value::Text(s) => s.clone(),
                aergo_primitives::value::Value::Int(i) => i.to_string(),
                _ => String::new(),
            };
            (text(&row[0]), text(&row[2]), text(&row[3]))
        })
        .collect()
}

/// A replay merge of a branch into main: the branch's transactions after its base run again on
/// main in source order; those whose nonce main took, and those that fail there (a balance the
/// dropped ones would have paid), are dropped with their reasons and leave no trace; the
/// merge receipt lists every one; a node with the same source accepts the block and one whose
/// producer left a transaction out does not; refused merges change nothing but the fee; the next
/// merge starts where the last ended; a logged merge block that was never committed is cut off
/// at reopening when its source is not readable yet.
#[test]
fn a_replay_merge_runs_a_branchs_transactions_on_main_and_drops_those_that_no_longer_fit() {
    use aergo_primitives::types::MergeStrategy;
    let dir = tempfile::tempdir().unwrap();
    let k = |s: &str| Keypair::from_seed(s);
    let (bp, alice, bob, carol, dave, frank) =
        (k("bp"), k("alice"), k("bob"), k("carol"), k("dave"), k("frank"));
    let branch_bp = k("branch-bp");
    let g = genesis(&bp, &alice);
    let (mut main, _) = Chain::open(&dir.path().join("main"), &g, LogOptions::default()).unwrap();
    main.produce(
        &bp,
        vec![transfer(&alice, 0, bob.address(), 100), transfer(&alice, 1, carol.address(), 100)],
        2_000,
    )
    .unwrap();
    let record = Payload::CreateBranch {
        name: "feature".into(),
        base_height: 1,
        producers: vec![branch_bp.public()],
        mergers: vec![],
    };
    let b2 =
        main.produce(&bp, vec![signed_on("main", &alice, 2, alice.address(), 0, 1, record)], 3_000).unwrap();
    assert_eq!(b2.receipts[0].status, ReceiptStatus::Success);
    main.finalize(2, b2.block.hash()).unwrap();
    let mut branch = open_feature(dir.path(), &g, &main, &branch_bp, 1);
    let on = |key: &Keypair, nonce, to: &Keypair, amount, fee| {
        signed_on("feature", key, nonce, to.address(), amount, fee, Payload::Transfer)
    };
    let from_bob = on(&bob, 0, &dave, 70, 1);
    let from_carol = on(&carol, 0, &dave, 30, 1);
    let from_alice = on(&alice, 2, &dave, 5, 1);
    let f2 = branch
        .produce(&branch_bp, vec![from_bob.clone(), from_carol.clone(), from_alice.clone()], 4_000)
        .unwrap();
    assert_eq!(f2.block.transactions.len(), 3);
    let from_dave = on(&dave, 0, &frank, 60, 0);
    let f3 = branch.produce(&branch_bp, vec![from_dave.clone()], 5_000).unwrap();
    assert_eq!(f3.receipts[0].status, ReceiptStatus::Success);
    assert_eq!(branch.store().account(&frank.address()).unwrap().balance, 60);
    // Meanwhile on main bob spends with his nonce 0.
    main.produce(&bp, vec![transfer(&bob, 0, frank.address(), 50)], 6_000).unwrap();
    let source = |lie| TestSource { store: branch.store(), reader: branch.log_reader(), lib: 3, lie };
    let merge = |key: &Keypair, nonce, upto, hash| {
        merge_signed(key, nonce, aergo_primitives::types::MergeStrategy::Replay, upto, hash)
    };

    // A follower of main, before the merge.
    let follower_dir = dir.path().join("follower");
    let (mut follower, _) = Chain::open(&follower_dir, &g, LogOptions::default()).unwrap();
    for h in 1..=3 {
        follower.import(read_block(&main.store(), &main.log_reader(), h).unwrap().unwrap()).unwrap();
    }

    // Without a readable source, the merge waits in the pool: the block is built without it
    // (and without its sender's later transactions).
    let m = merge(&alice, 3, 3, f3.block.hash());
    let later = transfer(&alice, 4, frank.address(), 1);
    let (waiting, out, _) =
        main.build(&bp, vec![m.clone(), later, transfer(&carol, 0, frank.address(), 1)], 7_000).unwrap();
    assert_eq!(waiting.transactions.len(), 1, "only carol's transfer: {:?}", out.dropped);

    // A producer whose source leaves the last transaction out makes a block the follower refuses.
    main.set_merge_sources(Arc::new(source(true)));
    let (lying, _, _) = main.build(&bp, vec![m.clone()], 7_000).unwrap();
    follower.set_merge_sources(Arc::new(source(false)));
    let err = follower.import(lying).unwrap_err().to_string();
    assert!(err.contains("the merge replays 1 transactions of \"feature\" here, the block holds 0"), "{err}");

    main.set_merge_sources(Arc::new(source(false)));
    let mb = main.produce(&bp, vec![m.clone(), transfer(&carol, 0, frank.address(), 1)], 7_000).unwrap();
    let hashes: Vec<Hash> = mb.block.transactions.iter().map(Transaction::hash).collect();
    assert_eq!(hashes, [m.hash(), from_carol.hash()], "the merge opens its block alone with what still fits");
    let rows = merge_rows(&mb.receipts[0]);
    assert_eq!(rows.len(), 4);
    assert_eq!((rows[0].0.as_str(), rows[0].1.as_str()), (from_bob.hash().to_hex().as_str(), "dropped"));
    assert!(rows[0].2.contains("nonce 0 but the account's next nonce is 1"), "{rows:?}");
    assert_eq!(
        (rows[1].0.as_str(), rows[1].1.as_str(), rows[1].2.as_str()),
        (from_carol.hash().to_hex().as_str(), "included", "")
    );
    assert!(rows[2].2.contains("nonce 2 but the account's next nonce is 4"), "{rows:?}");
    assert_eq!(rows[3].0, from_dave.hash().to_hex());
    assert!(rows[3].2.contains("balance too low: 30 after the fee, the transfer needs 60"), "{rows:?}");
    let store = main.store();
    assert_eq!(store.account(&dave.address()).unwrap(), Account { balance: 30, nonce: 0 });
    assert_eq!(store.account(&carol.address()).unwrap(), Account { balance: 69, nonce: 1 });
    assert_eq!(store.account(&frank.address()).unwrap().balance, 50, "only bob's transfer on main");
    let loc = store.tx_location(&from_carol.hash()).unwrap().unwrap();
    assert_eq!((loc.height, loc.index, loc.merged_by), (4, 1, Some(m.hash())));
    assert!(store.tx_location(&from_bob.hash()).unwrap().is_none(), "a dropped transaction is not on main");
    assert_eq!(store.tx_location(&m.hash()).unwrap().unwrap().merged_by, None);
    // The follower computes the same block.
    let imported = follower.import((*mb.block).clone()).unwrap();
    assert_eq!(imported.head.state_root, mb.head.state_root);
    assert_eq!(imported.receipts, mb.receipts);

    // Refused merges: into itself, by someone who may not, nothing new, a block that is not the
    // source's. Each pays its fee and changes nothing else.
    let refused = |main: &mut Chain, tx: Transaction, ts: u64, want: &str| {
        let b = main.produce(&bp, vec![tx], ts).unwrap();
        assert_eq!(b.block.transactions.len(), 1);
        match &b.receipts[0].status {
            ReceiptStatus::Failed(why) => assert!(why.contains(want), "{why}"),
            other => panic!("{other:?}"),
        }
    };
    let into_main = signed_on(
        "main",
        &alice,
        4,
        alice.address(),
        0,
        1,
        Payload::Merge {
            source: "main".into(),
            strategy: MergeStrategy::Replay,
            upto: 2,
            upto_hash: b2.block.hash(),
        },
    );
    refused(&mut main, into_main, 8_000, "cannot merge \"main\" into \"main\"");
    refused(
        &mut main,
        merge(&bob, 1, 3, f3.block.hash()),
        9_000,
        "only the creator of \"feature\" or its mergers",
    );
    refused(
        &mut main,
        merge(&alice, 5, 3, f3.block.hash()),
        10_000,
        "merged into \"main\" up to its height 3",
    );
    let f4 = branch.produce(&branch_bp, vec![on(&carol, 1, &frank, 9, 1)], 11_000).unwrap();
    let source4 = TestSource { store: branch.store(), reader: branch.log_reader(), lib: 4, lie: false };
    main.set_merge_sources(Arc::new(source4));
    refused(&mut main, merge(&alice, 6, 4, f3.block.hash()), 12_000, "block 4 of \"feature\" is");
    let three_way = signed_on(
        "main",
        &alice,
        7,
        alice.address(),
        0,
        1,
        Payload::Merge {
            source: "feature".into(),
            strategy: MergeStrategy::ThreeWay,
            upto: 4,
            upto_hash: f4.block.hash(),
        },
    );
    refused(&mut main, three_way, 13_000, "the merge needs more gas than its fee 1 allows");
    assert_eq!(main.store().account(&frank.address()).unwrap().balance, 50);

    // The next merge replays only what came after the last one.
    let m2 = merge(&alice, 8, 4, f4.block.hash());
    let mb2 = main.produce(&bp, vec![m2.clone()], 14_000).unwrap();
    assert_eq!(mb2.block.transactions.len(), 2);
    assert_eq!(merge_rows(&mb2.receipts[0]).len(), 1);
    assert_eq!(main.store().account(&frank.address()).unwrap().balance, 59);

    // A merge block logged but not committed (a crash between the log and the state batch) is
    // cut off when the chain reopens without its source; the chain goes on from its parent.
    let head = main.head();
    let f5 = branch.produce(&branch_bp, vec![on(&carol, 2, &frank, 1, 1)], 15_000).unwrap();
    let source5 = TestSource { store: branch.store(), reader: branch.log_reader(), lib: 5, lie: false };
    main.set_merge_sources(Arc::new(source5));
    let (m3_block, _, _) = main.build(&bp, vec![merge(&alice, 9, 5, f5.block.hash())], 16_000).unwrap();
    assert_eq!(m3_block.transactions.len(), 2);
    main.log.append(m3_block.header.height, &m3_block.encode()).unwrap();
    // The branch's store reads main's, which must be closed to reopen.
    drop((main, branch, store, follower));
    let (main, _) = Chain::open(&dir.path().join("main"), &g, LogOptions::default()).unwrap();
    assert_eq!(main.head(), head, "the uncommitted merge block is gone");
    drop(main);
    let (main, report) = Chain::open(&dir.path().join("main"), &g, LogOptions::default()).unwrap();
    assert_eq!((main.head(), report.replayed), (head, 0), "and stays gone");
}

/// A private branch's merge (`merge_private`, `docs/branches.md` "Private branches") carries
/// the branch's transactions: a node that cannot read the branch (no merge sources at all) runs
/// it to the same block as the producer. A carried entry signed for another branch or whose
/// signature fails is dropped with its reason; carried heights outside the merge's range, a
/// public `merge` of a private branch and a `merge_private` of a public branch are refused and
/// change nothing but the fee.
#[test]
fn a_private_branch_merges_by_the_transactions_it_carries_on_nodes_that_cannot_read_it() {
    use aergo_primitives::types::CarriedTx;
    let dir = tempfile::tempdir().unwrap();
    let k = |s: &str| Keypair::from_seed(s);
    let (bp, alice, bob, dave) = (k("bp"), k("alice"), k("bob"), k("dave"));
    let branch_bp = k("branch-bp");
    let g = genesis(&bp, &alice);
    let (mut main, _) = Chain::open(&dir.path().join("main"), &g, LogOptions::default()).unwrap();
    main.produce(&bp, vec![transfer(&alice, 0, bob.address(), 100)], 2_000).unwrap();
    let private = Payload::CreatePrivateBranch {
        name: "feature".into(),
        base_height: 1,
        producers: vec![branch_bp.public()],
        mergers: vec![],
        members: vec![k("member-node").public()],
    };
    let public =
        Payload::CreateBranch { name: "open".into(), base_height: 1, producers: vec![], mergers: vec![] };
    let no_members = Payload::CreatePrivateBranch {
        name: "lonely".into(),
        base_height: 1,
        producers: vec![],
        mergers: vec![],
        members: vec![],
    };
    let b2 = main
        .produce(
            &bp,
            vec![
                signed_on("main", &alice, 1, alice.address(), 0, 1, private),
                signed_on("main", &alice, 2, alice.address(), 0, 1, public),
                signed_on("main", &alice, 3, alice.address(), 0, 1, no_members),
            ],
            3_000,
        )
        .unwrap();
    assert_eq!(b2.receipts[0].status, ReceiptStatus::Success);
    assert_eq!(b2.receipts[1].status, ReceiptStatus::Success);
    match &b2.receipts[2].status {
        ReceiptStatus::Failed(why) => assert!(why.contains("at least one member node"), "{why}"),
        other => panic!("{other:?}"),
    }
    main.finalize(2, b2.block.hash()).unwrap();
    let mut branch = open_feature(dir.path(), &g, &main, &branch_bp, 1);
    let from_bob = signed_on("feature", &bob, 0, dave.address(), 70, 1, Payload::Transfer);
    let f2 = branch.produce(&branch_bp, vec![from_bob.clone()], 4_000).unwrap();
    assert_eq!(f2.receipts[0].status, ReceiptStatus::Success);
    let from_dave = signed_on("feature", &dave, 0, bob.address(), 20, 1, Payload::Transfer);
    let f3 = branch.produce(&branch_bp, vec![from_dave.clone()], 5_000).unwrap();

    // A node of main that holds no branch and reads none.
    let (mut follower, _) = Chain::open(&dir.path().join("follower"), &g, LogOptions::default()).unwrap();
    for h in 1..=2 {
        follower.import(read_block(&main.store(), &main.log_reader(), h).unwrap().unwrap()).unwrap();
    }
    let carry = |txs: &[(u64, &Transaction)]| -> Vec<CarriedTx> {
        txs.iter().map(|(height, tx)| CarriedTx { height: *height, tx: tx.encode() }).collect()
    };
    let merge_private = |nonce, carried, source: &str| {
        let payload =
            Payload::MergePrivate { source: source.into(), upto: 3, upto_hash: f3.block.hash(), carried };
        signed_on("main", &alice, nonce, alice.address(), 0, 1, payload)
    };
    let refused = |main: &mut Chain, follower: &mut Chain, tx: Transaction, want: &str| {
        let ts = main.head().timestamp_ms + 1_000;
        let b = main.produce(&bp, vec![tx], ts).unwrap();
        assert_eq!(b.block.transactions.len(), 1);
        match &b.receipts[0].status {
            ReceiptStatus::Failed(why) => assert!(why.contains(want), "{why}"),
            other => panic!("{other:?}"),
        }
        follower.import((*b.block).clone()).unwrap();
    };
    let public_merge = signed_on(
        "main",
        &alice,
        4,
        alice.address(),
        0,
        1,
        Payload::Merge {
            source: "feature".into(),
            strategy: aergo_primitives::types::MergeStrategy::Replay,
            upto: 3,
            upto_hash: f3.block.hash(),
        },
    );
    refused(&mut main, &mut follower, public_merge, "\"feature\" is a private branch");
    let of_public = merge_private(5, carry(&[(2, &from_bob)]), "open");
    refused(&mut main, &mut follower, of_public, "\"open\" is a public branch");
    let below_base = merge_private(6, carry(&[(1, &from_bob)]), "feature");
    refused(&mut main, &mut follower, below_base, "heights run from 2 to 3");
    let out_of_order = merge_private(7, carry(&[(3, &from_dave), (2, &from_bob)]), "feature");
    refused(&mut main, &mut follower, out_of_order, "in order");
    let garbage = merge_private(8, vec![CarriedTx { height: 2, tx: vec![1, 2, 3] }], "feature");
    refused(&mut main, &mut follower, garbage, "does not decode");

    // A forged entry (bob's transfer with its amount raised) and one signed for another branch
    // are dropped with their reasons; the rest runs.
    let mut forged = from_bob.clone();
    forged.body.amount = 99;
    let elsewhere = signed_on("other", &bob, 0, dave.address(), 5, 1, Payload::Transfer);
    let m =
        merge_private(9, carry(&[(2, &forged), (2, &elsewhere), (2, &from_bob), (3, &from_dave)]), "feature");
    let mb = main.produce(&bp, vec![m.clone()], main.head().timestamp_ms + 1_000).unwrap();
    let hashes: Vec<Hash> = mb.block.transactions.iter().map(Transaction::hash).collect();
    assert_eq!(hashes, [m.hash(), from_bob.hash(), from_dave.hash()]);
    let rows = merge_rows(&mb.receipts[0]);
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(rows[0].0, forged.hash().to_hex());
    assert!(rows[0].2.contains("signature"), "{rows:?}");
    assert!(rows[1].2.contains("signed for branch \"other\""), "{rows:?}");
    assert_eq!((rows[2].1.as_str(), rows[3].1.as_str()), ("included", "included"), "{rows:?}");
    let store = main.store();
    assert_eq!(store.account(&dave.address()).unwrap().balance, 49, "70 in, 20 and a fee of 1 out");
    assert_eq!(store.tx_location(&from_bob.hash()).unwrap().unwrap().merged_by, Some(m.hash()));
    // The node that reads no branch computes the same block from what the merge carries.
    let imported = follower.import((*mb.block).clone()).unwrap();
    assert_eq!(imported.head.state_root, mb.head.state_root);
    assert_eq!(imported.receipts, mb.receipts);
    // Carried again: nothing new to merge.
    let again = merge_private(10, carry(&[(3, &from_dave)]), "feature");
    refused(&mut main, &mut follower, again, "merged into \"main\" up to its height 3");
    drop(branch);
}

/// A token with a resolver for its balances and a table without one.
const MERGEABLE: &str = "
CREATE TABLE balances (owner TEXT PRIMARY KEY, amount INTEGER NOT NULL CHECK (amount >= 0));
CREATE INDEX balances_by_amount ON balances (amount);
CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
INSERT INTO balances VALUES (sender(), 1000);
CREATE FUNCTION transfer(recipient TEXT, n INTEGER) RETURNS VOID AS $$
BEGIN
  UPDATE balances SET amount = amount - n WHERE owner = sender();
  INSERT INTO balances VALUES (recipient, n)
    ON CONFLICT (owner) DO UPDATE SET amount = balances.amount + excluded.amount;
END $$;
CREATE FUNCTION note(i INTEGER, b TEXT) RETURNS VOID AS $$
BEGIN
  INSERT INTO notes VALUES (i, b) ON CONFLICT (id) DO UPDATE SET body = excluded.body;
END $$;
CREATE FUNCTION on_merge_balances(b_owner TEXT, b_amount INTEGER, o_owner TEXT, o_amount INTEGER,
                                  t_owner TEXT, t_amount INTEGER)
  RETURNS TABLE (owner TEXT, amount INTEGER) AS $$
  SELECT COALESCE(o_owner, t_owner), COALESCE(o_amount, 0) + COALESCE(t_amount, 0) - COALESCE(b_amount, 0)
$$;
";

/// The rows of `sql` on `contract` at the chain's head, as text.
fn rows_of(chain: &Chain, contract: &Address, sql: &str) -> Vec<Vec<String>> {
    let store = chain.store();
    let head = chain.head().height;
    let budget = aergo_sql::gas::Gas::new(1_000_000);
    let r =
        aergo_exec::query::run(&store, contract, head, aergo_exec::query::Request::Sql(sql), budget).unwrap();
    r.rows
        .iter()
        .map(|row| row.iter().map(|v| aergo_primitives::value::json::to_json(v).to_string()).collect())
        .collect()
}

/// A three-way merge of a branch into main: accounts changed on both sides get both changes,
/// rows changed on one side take that side's, a row changed on both sides goes to the
/// contract's resolver, a row of a table without one refuses the whole merge (listing it, state
/// unchanged but the fee); `ours` keeps main's rows; the index follows the merged rows; a
/// follower computing with four threads gets the same state root.
#[test]
fn a_three_way_merge_sums_accounts_resolves_rows_and_refuses_unresolved_conflicts() {
    use aergo_primitives::types::MergeStrategy;
    let dir = tempfile::tempdir().unwrap();
    let k = |s: &str| Keypair::from_seed(s);
    let (bp, alice, dave) = (k("bp"), k("alice"), k("dave"));
    let branch_bp = k("branch-bp");
    let mut g = genesis(&bp, &alice);
    g.balances[0].amount = 1_000_000_000_000;
    let (mut main, _) = Chain::open(&dir.path().join("main"), &g, LogOptions::default()).unwrap();
    let token = aergo_primitives::types::contract_address(&alice.address(), 0);
    let call = |on: &str, nonce: u64, function: &str, args: Vec<aergo_primitives::value::Value>| {
        let payload = Payload::Call { contract: token, function: function.into(), args };
        signed_on(on, &alice, nonce, token, 0, 1_000_000, payload)
    };
    let text = |s: &str| aergo_primitives::value::Value::Text(s.into());
    let int = aergo_primitives::value::Value::Int;
    let deploy =
        signed_on("main", &alice, 0, token, 0, 10_000_000, Payload::Deploy { sql: MERGEABLE.into() });
    let b1 = main.produce(&bp, vec![deploy], 2_000).unwrap();
    assert!(b1.receipts[0].status.is_success(), "{:?}", b1.receipts[0]);
    main.produce(&bp, vec![call("main", 1, "transfer", vec![text("bob"), int(100)])], 3_000).unwrap();
    let record = Payload::CreateBranch {
        name: "feature".into(),
        base_height: 2,
        producers: vec![branch_bp.public()],
        mergers: vec![],
    };
    let b3 =
        main.produce(&bp, vec![signed_on("main", &alice, 2, alice.address(), 0, 1, record)], 4_000).unwrap();
    main.finalize(3, b3.block.hash()).unwrap();
    let mut branch = open_feature(dir.path(), &g, &main, &branch_bp, 2);
    // The branch: 10 tokens to bob, 50 coins to dave, a note.
    let f3 = branch
        .produce(
            &branch_bp,
            vec![
                call("feature", 2, "transfer", vec![text("bob"), int(10)]),
                signed_on("feature", &alice, 3, dave.address(), 50, 1, Payload::Transfer),
                call("feature", 4, "note", vec![int(1), text("theirs")]),
            ],
            5_000,
        )
        .unwrap();
    assert!(f3.receipts.iter().all(|r| r.status.is_success()), "{:?}", f3.receipts);
    // Main meanwhile: 5 tokens to bob, 20 coins to dave, another note.
    let b4 = main
        .produce(
            &bp,
            vec![
                call("main", 3, "transfer", vec![text("bob"), int(5)]),
                signed_on("main", &alice, 4, dave.address(), 20, 1, Payload::Transfer),
                call("main", 5, "note", vec![int(1), text("ours")]),
            ],
            6_000,
        )
        .unwrap();
    assert!(b4.receipts.iter().all(|r| r.status.is_success()), "{:?}", b4.receipts);
    read_merges_from(&mut main, &branch, 3);
    let merge = |nonce, strategy| merge_signed(&alice, nonce, strategy, 3, f3.block.hash());
    let alice_before = main.store().account(&alice.address()).unwrap();

    // notes(1) changed on both sides and has no resolver: refused, nothing changed but the fee.
    let refused = main.produce(&bp, vec![merge(6, MergeStrategy::ThreeWay)], 7_000).unwrap();
    let ReceiptStatus::Failed(why) = &refused.receipts[0].status else { panic!("{:?}", refused.receipts[0]) };
    assert!(why.contains("1 conflict without a resolver") && why.contains("notes(1)"), "{why}");
    let fee = refused.receipts[0].fee;
    assert!(fee > 0 && fee < 1_000_000, "the gas used, not the limit: {fee}");
    assert_eq!(main.store().account(&dave.address()).unwrap().balance, 20);
    assert_eq!(rows_of(&main, &token, "SELECT amount FROM balances WHERE owner = 'bob'"), [["105"]]);
    let alice_now = main.store().account(&alice.address()).unwrap();
    assert_eq!((alice_now.balance, alice_now.nonce), (alice_before.balance - fee, alice_before.nonce + 1));

    // Main writes the same note as the branch: no conflict left; balances go to the resolver.
    main.produce(&bp, vec![call("main", 7, "note", vec![int(1), text("theirs")])], 8_000).unwrap();
    let follower_dir = dir.path().join("follower");
    let (mut follower, _) = Chain::open(&follower_dir, &g, LogOptions::default()).unwrap();
    follower.set_executor(aergo_exec::parallel::ParallelExecutor::with_threads(4, Vec::new()));
    follower.set_merge_sources(Arc::new(TestSource {
        store: branch.store(),
        reader: branch.log_reader(),
        lib: 3,
        lie: false,
    }));
    let merged = main.produce(&bp, vec![merge(8, MergeStrategy::ThreeWay)], 9_000).unwrap();
    let ReceiptStatus::Returned(res) = &merged.receipts[0].status else { panic!("{:?}", merged.receipts[0]) };
    assert_eq!(res.columns, ["kind", "key", "result"]);
    let results: Vec<String> = res.rows.iter().map(|r| format!("{:?} {:?} {:?}", r[0], r[1], r[2])).collect();
    assert!(
        results.iter().any(|r| r.contains("\"row\"")
            && r.contains("balances(\\\"bob\\\")")
            && r.contains("\"resolved\"")),
        "{results:?}"
    );
    assert!(
        results.iter().any(|r| r.contains(&dave.address().to_string()) && r.contains("\"summed\"")),
        "{results:?}"
    );
    // bob: 100 at the base, +5 on main, +10 on the branch; alice's tokens likewise.
    assert_eq!(rows_of(&main, &token, "SELECT amount FROM balances WHERE owner = 'bob'"), [["115"]]);
    assert_eq!(
        rows_of(
            &main,
            &token,
            "SELECT amount FROM balances WHERE owner = ?"
                .replace("?", &format!("'{}'", alice.address()))
                .as_str()
        ),
        [["885"]]
    );
    // The index follows: bob is found by his merged amount, not by either side's.
    assert_eq!(rows_of(&main, &token, "SELECT owner FROM balances WHERE amount = 115"), [["\"bob\""]]);
    assert!(
        rows_of(&main, &token, "SELECT owner FROM balances WHERE amount = 105 OR amount = 110").is_empty()
    );
    assert_eq!(rows_of(&main, &token, "SELECT body FROM notes WHERE id = 1"), [["\"theirs\""]]);
    // dave: 20 on main and 50 on the branch.
    assert_eq!(main.store().account(&dave.address()).unwrap().balance, 70);
    for h in 1..=main.head().height {
        let block = read_block(&main.store(), &main.log_reader(), h).unwrap().unwrap();
        follower.import(block).unwrap();
    }
    assert_eq!(follower.head().state_root, main.head().state_root, "four threads, the same root");

    // `ours`: the next merge starts at the last one's upto; bob's row, changed on both sides
    // again, keeps main's value.
    let f4 = branch
        .produce(&branch_bp, vec![call("feature", 5, "transfer", vec![text("bob"), int(1)])], 10_000)
        .unwrap();
    main.produce(&bp, vec![call("main", 9, "transfer", vec![text("bob"), int(2)])], 11_000).unwrap();
    read_merges_from(&mut main, &branch, 4);
    let ours = main
        .produce(&bp, vec![merge_signed(&alice, 10, MergeStrategy::Ours, 4, f4.block.hash())], 12_000)
        .unwrap();
    assert!(ours.receipts[0].status.is_success(), "{:?}", ours.receipts[0]);
    assert_eq!(rows_of(&main, &token, "SELECT amount FROM balances WHERE owner = 'bob'"), [["117"]]);

    // Both sides spend dave's coins: their sum would be below zero, so the merge is refused.
    let spend = |on: &str, amount| signed_on(on, &dave, 0, alice.address(), amount, 1, Payload::Transfer);
    let f5 = branch.produce(&branch_bp, vec![spend("feature", 45)], 13_000).unwrap();
    main.produce(&bp, vec![spend("main", 60)], 14_000).unwrap();
    read_merges_from(&mut main, &branch, 5);
    let below = main
        .produce(&bp, vec![merge_signed(&alice, 11, MergeStrategy::ThreeWay, 5, f5.block.hash())], 15_000)
        .unwrap();
    let ReceiptStatus::Failed(why) = &below.receipts[0].status else { panic!("{:?}", below.receipts[0]) };
    // dave: 50 at the merge base, 70 − 61 = 9 on main, 50 − 46 = 4 on the branch: 9 − 46.
    assert!(
        why.contains(&format!("account {}: its balance would be 37 below zero", dave.address())),
        "{why}"
    );
    assert_eq!(main.store().account(&dave.address()).unwrap().balance, 9, "nothing merged");
    drop((main, branch, follower));
}

#[test]
fn blocks_outside_their_producers_slot_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (bp, alice) = (Keypair::from_seed("bp"), Keypair::from_seed("alice"));
    let g = genesis(&bp, &alice);
    let other = tempfile::tempdir().unwrap();
    let (mut producer, _) = Chain::open(other.path(), &g, LogOptions::default()).unwrap();
    let (mut follower, _) = Chain::open(dir.path(), &g, LogOptions::default()).unwrap();
    // A timestamp between slots.
    let b = producer.produce(&bp, vec![], 2_500).unwrap();
    let err = follower.import((*b.block).clone()).unwrap_err().to_string();
    assert!(err.contains("not the start of a slot"), "{err}");
    // Signed by a key that is not the slot's producer.
    let (mut rogue, _) = Chain::open(tempfile::tempdir().unwrap().path(), &g, LogOptions::default()).unwrap();
    let r = rogue.produce(&Keypair::from_seed("rogue"), vec![], 2_000).unwrap();
    let err = follower.import((*r.block).clone()).unwrap_err().to_string();
    assert!(err.contains("belongs to producer"), "{err}");
}

fn contract_tx(key: &Keypair, nonce: u64, fee: u128, amount: u128, payload: Payload) -> Transaction {
    aergo_primitives::crypto::test_tx(key, "test", nonce, Address([0; 20]), amount, fee, payload)
}

fn token_call(key: &Keypair, nonce: u64, contract: Address, to: &Keypair, n: i64) -> Transaction {
    use aergo_sql::Value;
    let args = vec![Value::Text(to.address().to_string()), Value::Int(n)];
    contract_tx(key, nonce, 100_000, 0, Payload::Call { contract, function: "transfer".into(), args })
}

fn balance_at(store: &StateStore, contract: &Address, who: &Keypair, height: u64) -> aergo_sql::Value {
    use aergo_exec::query::{run, Request};
    let sql = format!("SELECT amount FROM balances WHERE owner = '{}'", who.address());
    let r =
        run(store, contract, height, Request::Sql(&sql), aergo_sql::Gas::new(aergo_sql::gas::MAX_CALL_GAS))
            .unwrap();
    r.rows.first().map(|row| row[0].clone()).unwrap_or(aergo_sql::Value::Null)
}

#[test]
fn contracts_deploy_call_revert_query_old_heights_roll_back_and_replay() {
    use aergo_sql::{store::contract_address, Value};
    let dir = tempfile::tempdir().unwrap();
    let (bp, alice, bob) = (Keypair::from_seed("bp"), Keypair::from_seed("alice"), Keypair::from_seed("bob"));
    let g = genesis(&bp, &alice);
    let (mut chain, _) = Chain::open(dir.path(), &g, LogOptions::default()).unwrap();
    let token = TOKEN.to_string();
    let addr = contract_address(&alice.address(), 0);
    let b1 = chain
        .produce(&bp, vec![contract_tx(&alice, 0, 900_000, 10, Payload::Deploy { sql: token })], 2_000)
        .unwrap();
    let r = &b1.receipts[0];
    assert_eq!(r.status, ReceiptStatus::Success, "{r:?}");
    assert!(r.fee > 1_000 && r.fee < 900_000, "deploy pays the gas it used: {}", r.fee);
    let store = chain.store();
    assert_eq!(store.account(&addr).unwrap().balance, 10, "the amount went to the contract");
    assert_eq!(store.account(&alice.address()).unwrap().balance, 1_000_000 - 10 - r.fee);
    let b2 = chain
        .produce(
            &bp,
            vec![
                token_call(&alice, 1, addr, &bob, 300),
                token_call(&bob, 0, addr, &alice, 1), // bob has no coins to pay a fee: left out
                token_call(&alice, 2, addr, &bob, 2_000_000), // fails: CHECK (amount >= 0)
            ],
            3_000,
        )
        .unwrap();
    assert_eq!(b2.block.transactions.len(), 2);
    // The transfer succeeded and said so (the token emits `transfer`).
    assert!(b2.receipts[0].status.is_success(), "{:?}", b2.receipts[0]);
    assert_eq!(b2.receipts[0].status.events().len(), 1);
    let ReceiptStatus::Failed(why) = &b2.receipts[1].status else { panic!("{:?}", b2.receipts[1]) };
    assert!(why.contains("CHECK"), "{why}");
    assert!(b2.receipts[1].fee > 0, "a failed call pays for its gas");
    assert_eq!(balance_at(&store, &addr, &bob, 2), Value::Int(300));
    assert_eq!(balance_at(&store, &addr, &alice, 2), Value::Int(999_700));
    assert_eq!(balance_at(&store, &addr, &bob, 1), Value::Null, "height 1 had no row for bob");
    assert_eq!(balance_at(&store, &addr, &alice, 1), Value::Int(1_000_000));
    // A function query returns a scalar; a scan lists rows in key order.
    let r = aergo_exec::query::run(
        &store,
        &addr,
        2,
        aergo_exec::query::Request::Function("holders", vec![]),
        aergo_sql::Gas::new(aergo_sql::gas::MAX_CALL_GAS),
    )
    .unwrap();
    assert_eq!(r.rows.len(), 2);
    // Another node importing the blocks gets the same state.
    let dir2 = tempfile::tempdir().unwrap();
    let (mut follower, _) = Chain::open(dir2.path(), &g, LogOptions::default()).unwrap();
    follower.import((*b1.block).clone()).unwrap();
    let f2 = follower.import((*b2.block).clone()).unwrap();
    assert_eq!(f2.block.header.state_root, b2.block.header.state_root);
    assert_eq!(balance_at(&follower.store(), &addr, &bob, 2), Value::Int(300));
    // Rolled back, bob's row is gone at the head; a different block follows.
    chain.rollback_to(1).unwrap();
    assert_eq!(balance_at(&store, &addr, &bob, 1), Value::Null);
    let c2 = chain.produce(&bp, vec![token_call(&alice, 1, addr, &bob, 5)], 4_000).unwrap();
    assert!(c2.receipts[0].status.is_success(), "{:?}", c2.receipts[0]);
    assert_eq!(balance_at(&store, &addr, &bob, 2), Value::Int(5));
    drop((chain, store));
    let (chain, _) = Chain::open(dir.path(), &g, LogOptions::default()).unwrap();
    assert_eq!(balance_at(&chain.store(), &addr, &bob, 2), Value::Int(5));
    assert_eq!(balance_at(&chain.store(), &addr, &alice, 2), Value::Int(999_995));
}

/// A chain of blocks that each spend what the block before credited (coins and token rows), with
/// a contract deployed in the first and a whole-table read (`holders()`), through `import_run`:
/// block N+1 executes on N's changes while N is written. Every root and the head match the
/// producer's; reopened, nothing is replayed; a block that does not verify stops the run there
/// with everything before it committed.
#[test]
fn pipelined_runs_import_like_one_block_at_a_time() {
    use aergo_sql::{store::contract_address, Value};
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<Keypair> = (0..6).map(|i| Keypair::from_seed(&format!("k{i}"))).collect();
    let bp = Keypair::from_seed("bp");
    let mut g = genesis(&bp, &keys[0]);
    // Short epochs: elections read the state of heights that are still in the commit queue.
    g.consensus.epoch_blocks = 4;
    let (mut producer, _) = Chain::open(dir.path(), &g, LogOptions::default()).unwrap();
    let token = contract_address(&keys[0].address(), 0);
    let mut nonces = [0u64; 6];
    let mut next = |i: usize| {
        nonces[i] += 1;
        nonces[i] - 1
    };
    let mut blocks = Vec::new();
    let deploy = contract_tx(&keys[0], next(0), 900_000, 0, Payload::Deploy { sql: TOKEN.to_string() });
    let funds = transfer(&keys[0], next(0), keys[1].address(), 200_000);
    blocks.push(producer.produce(&bp, vec![deploy, funds], 2_000).unwrap());
    for k in 1..14u64 {
        // Key `a` received coins and tokens in the block before; it passes some to `b`.
        let (a, b) = (1 + (k as usize - 1) % 5, 1 + k as usize % 5);
        let mut txs = vec![
            transfer(&keys[a], next(a), keys[b].address(), 20_000 - k as u128 * 100),
            token_call(&keys[0], next(0), token, &keys[a], 50),
        ];
        if k > 1 {
            txs.push(token_call(&keys[a], next(a), token, &keys[b], 10 + k as i64));
        }
        if k % 4 == 0 {
            let holders = Payload::Call { contract: token, function: "holders".into(), args: vec![] };
            txs.push(contract_tx(&keys[a], next(a), 100_000, 0, holders));
        }
        let done = producer.produce(&bp, txs, 2_000 + k * 1_000).unwrap();
        assert!(done.receipts.iter().all(|r| r.status.is_success()), "{k}: {:?}", done.receipts);
        blocks.push(done);
    }
    let blocks: Vec<Block> = blocks.iter().map(|d| (*d.block).clone()).collect();
    for threads in [1, 2] {
        let dir2 = tempfile::tempdir().unwrap();
        let (mut follower, _) = Chain::open(dir2.path(), &g, LogOptions::default()).unwrap();
        follower.set_executor(ParallelExecutor::with_threads(threads, Vec::new()).min_parallel_txs(2));
        let report = follower.import_run(blocks.clone());
        assert!(report.error.is_none(), "{:?}", report.error);
        assert_eq!(report.committed.len(), blocks.len());
        assert_eq!(follower.head(), producer.head());
        for (i, done) in report.committed.iter().enumerate() {
            assert_eq!(done.block.hash(), blocks[i].hash());
            assert_eq!(done.head.height, i as u64 + 1);
            let meta = follower.store().block_meta(i as u64 + 1).unwrap().unwrap();
            assert_eq!(follower.store().root_at(i as u64 + 1).unwrap(), meta.header.state_root);
        }
        for h in [3, 9, 14] {
            for key in &keys[1..] {
                assert_eq!(
                    balance_at(&follower.store(), &token, key, h),
                    balance_at(&producer.store(), &token, key, h),
                    "height {h}"
                );
            }
        }
        assert_eq!(follower.stage_times().commit_queue.load(Ordering::Relaxed), 0);
        // Execution ran ahead of the commit stage (an fsync takes far longer than these blocks).
        let overlapped = follower.stage_times().overlapped_blocks.load(Ordering::Relaxed);
        assert!(overlapped >= 4, "{overlapped} blocks executed over pending ones");
        let head = follower.head();
        drop(follower);
        let (follower, report) = Chain::open(dir2.path(), &g, LogOptions::default()).unwrap();
        assert_eq!((follower.head(), report.replayed), (head, 0));
    }

    // A forged block in the middle: the ones before it are committed, the run stops there.
    let dir3 = tempfile::tempdir().unwrap();
    let (mut follower, _) = Chain::open(dir3.path(), &g, LogOptions::default()).unwrap();
    let mut forged = blocks.clone();
    forged[6].header.state_root = Hash::ZERO;
    let report = follower.import_run(forged);
    let (at, e) = report.error.expect("refused");
    assert_eq!((at, report.committed.len(), follower.head().height), (6, 6, 6));
    assert!(matches!(e, ChainError::InvalidBlock { height: 7, .. }), "{e}");
    assert_eq!(
        balance_at(&follower.store(), &token, &keys[0], 6),
        balance_at(&producer.store(), &token, &keys[0], 6)
    );
    // The rest follows from there.
    let report = follower.import_run(blocks[6..].to_vec());
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(follower.head(), producer.head());
    assert_ne!(balance_at(&follower.store(), &token, &keys[2], 14), Value::Null);
}

#[test]
fn a_reader_answers_as_single_reads_at_every_height_and_under_pending_blocks() {
    use aergo_exec::{StateAt, StateView, StateWithPending};
    use aergo_storage::state::HEAD_KEY;
    use aergo_storage::ChangeSet;
    let dir = tempfile::tempdir().unwrap();
    let (bp, alice) = (Keypair::from_seed("bp"), Keypair::from_seed("alice"));
    let others: Vec<Keypair> = (0..6).map(|i| Keypair::from_seed(&format!("other-{i}"))).collect();
    let g = genesis(&bp, &alice);
    let (mut chain, _) = Chain::open(dir.path(), &g, LogOptions::default()).unwrap();
    let mut nonce = 0;
    for (h, to) in others.iter().enumerate() {
        let txs = (0..=h).map(|k| transfer(&alice, nonce + k as u64, to.address(), 10 + h as u128)).collect();
        nonce += h as u64 + 1;
        chain.produce(&bp, txs, 2_000 + 1_000 * h as u64).unwrap();
    }
    let store = chain.store();
    let head = chain.head().height;
    let mut addresses: Vec<Address> = others.iter().map(|k| k.address()).collect();
    addresses.extend([alice.address(), bp.address(), Keypair::from_seed("nobody").address()]);
    // A reader made before more blocks are committed keeps answering at its own height.
    let early = StateAt { store: &store, height: 2 };
    let mut early_reader = early.reader();
    chain.produce(&bp, vec![transfer(&alice, nonce, others[0].address(), 1)], 9_000).unwrap();
    for h in 0..=head {
        let view = StateAt { store: &store, height: h };
        let mut reader = view.reader();
        // Every key twice, the second pass backwards: the one iterator moves both ways.
        for a in addresses.iter().chain(addresses.iter().rev()) {
            assert_eq!(reader.account(a).unwrap(), store.account_at(a, h).unwrap(), "{a} at {h}");
            assert_eq!(reader.raw(HEAD_KEY).unwrap(), store.get_at(HEAD_KEY, h).unwrap(), "head key at {h}");
        }
    }
    for a in &addresses {
        assert_eq!(
            early_reader.account(a).unwrap(),
            store.account_at(a, 2).unwrap(),
            "{a} at 2, early reader"
        );
    }
    // Blocks not committed yet: their changes are read first, newest last.
    let rich = Account { balance: 7, nonce: 3 };
    let older = ChangeSet::from_unsorted(vec![
        (account_key(&others[0].address()), Some(borsh::to_vec(&rich).unwrap())),
        (account_key(&others[1].address()), None),
    ]);
    let newer = ChangeSet::from_unsorted(vec![(
        account_key(&others[0].address()),
        Some(borsh::to_vec(&Account { balance: 8, nonce: 4 }).unwrap()),
    )]);
    let view = StateWithPending { store: &store, height: 3, layers: vec![&older, &newer] };
    let mut reader = view.reader();
    assert_eq!(reader.account(&others[0].address()).unwrap(), Account { balance: 8, nonce: 4 });
    assert_eq!(reader.account(&others[1].address()).unwrap(), Account::default(), "deleted in a layer");
    for a in &addresses {
        assert_eq!(reader.account(a).unwrap(), view.account(a).unwrap(), "{a} under pending blocks");
    }
}

#[test]
fn a_format_1_store_is_rewritten_newest_first_and_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (bp, alice, bob) = (Keypair::from_seed("bp"), Keypair::from_seed("alice"), Keypair::from_seed("bob"));
    let g = genesis(&bp, &alice);
    let (mut chain, _) = Chain::open(dir.path(), &g, LogOptions::default()).unwrap();
    for n in 0..4u64 {
        chain
            .produce(&bp, vec![transfer(&alice, n, bob.address(), 10 + n as u128)], 2_000 + 1_000 * n)
            .unwrap();
    }
    let who = [alice.address(), bob.address(), bp.address()];
    let before: Vec<Account> = (0..=4)
        .flat_map(|h| who.iter().map(move |a| (a, h)))
        .map(|(a, h)| chain.store().account_at(a, h).unwrap())
        .collect();
    let head = chain.head();
    drop(chain);
    // As an older release left it: versions oldest first (undo records too), no format record.
    let state_dir = dir.path().join("state");
    {
        let store = StateStore::open(&state_dir).unwrap();
        assert!(store.downgrade_to_format_1().unwrap() > 0);
        assert_ne!(
            store.account_at(&bob.address(), 4).unwrap(),
            before[4 * 3 + 1],
            "read as format 2, it is wrong"
        );
    }
    let (mut chain, report) = Chain::open(dir.path(), &g, LogOptions::default()).unwrap();
    assert_eq!((report.replayed, chain.head()), (0, head));
    let after: Vec<Account> = (0..=4)
        .flat_map(|h| who.iter().map(move |a| (a, h)))
        .map(|(a, h)| chain.store().account_at(a, h).unwrap())
        .collect();
    assert_eq!(after, before, "every account at every height reads as before");
    // The undo records were rewritten too: blocks above the LIB still roll back.
    chain.rollback_to(2).unwrap();
    assert_eq!(chain.store().account(&bob.address()).unwrap(), before[2 * 3 + 1]);
    let b3 = chain.produce(&bp, vec![transfer(&alice, 2, bob.address(), 1)], 9_000).unwrap();
    assert_eq!(b3.block.header.height, 3);
    assert_eq!(chain.store().account(&bob.address()).unwrap().balance, before[2 * 3 + 1].balance + 1);
    drop(chain);
    // Opening again finds format 2 and changes nothing.
    {
        let store = StateStore::open(&state_dir).unwrap();
        assert_eq!(store.account(&bob.address()).unwrap().balance, before[2 * 3 + 1].balance + 1);
        store.record_format(aergo_storage::state::FORMAT + 1).unwrap();
    }
    let err = StateStore::open(&state_dir).err().expect("a newer format is refused");
    assert!(matches!(err, StateError::Format { found: 3, .. }), "{err}");
    assert!(err.to_string().contains("newer release"), "{err}");
}

#[test]
fn recently_written_values_answer_as_the_database_does_across_a_rollback() {
    use aergo_exec::{StateAt, StateView};
    let dir = tempfile::tempdir().unwrap();
    let (bp, alice) = (Keypair::from_seed("bp"), Keypair::from_seed("alice"));
    let others: Vec<Keypair> = (0..4).map(|i| Keypair::from_seed(&format!("other-{i}"))).collect();
    let g = genesis(&bp, &alice);
    let (mut chain, _) = Chain::open(dir.path(), &g, LogOptions::default()).unwrap();
    for n in 0..3u64 {
        chain
            .produce(&bp, vec![transfer(&alice, n, others[n as usize].address(), 10)], 2_000 + 1_000 * n)
            .unwrap();
    }
    let store = chain.store();
    assert!(store.cached_values() > 0, "commits filled the cache");
    let usage = store.cache_usage();
    let (values, bytes, capacity) = (usage.values, usage.bytes, usage.capacity_bytes);
    assert_eq!(values, store.cached_values() as u64);
    assert!(bytes > values * 32 && bytes <= capacity, "{values} values, {bytes} of {capacity} bytes");
    assert!(capacity >= StateOptions::default().cache_bytes * 9 / 10, "{capacity}");
    // Block 3 pays others[3]; it is rolled back and the other branch's block 3 pays others[0]:
    // others[3]'s cached version at 3 must not answer for the new block 3.
    chain.produce(&bp, vec![transfer(&alice, 3, others[3].address(), 99)], 6_000).unwrap();
    assert_eq!(store.account(&others[3].address()).unwrap().balance, 99);
    chain.rollback_to(2).unwrap();
    chain.produce(&bp, vec![transfer(&alice, 3, others[0].address(), 5)], 7_000).unwrap();
    assert_eq!(store.account(&others[3].address()).unwrap().balance, 0);
    let mut who: Vec<Address> = others.iter().map(|k| k.address()).collect();
    who.extend([alice.address(), bp.address()]);
    let head = chain.head().height;
    type Read = (u64, Address, Account, Account, Option<Vec<u8>>);
    let read = |store: &StateStore| -> Vec<Read> {
        let mut out = Vec::new();
        for h in 0..=head {
            let view = StateAt { store, height: h };
            let mut reader = view.reader();
            for a in &who {
                let head_key = reader.raw(aergo_storage::state::HEAD_KEY).unwrap();
                out.push((h, *a, store.account_at(a, h).unwrap(), reader.account(a).unwrap(), head_key));
            }
        }
        out
    };
    let cached = read(&store);
    drop((chain, store));
    let uncached = StateStore::open_with(&dir.path().join("state"), StateOptions { cache_bytes: 0 }).unwrap();
    assert_eq!(uncached.cache_usage(), Default::default());
    for (with, without) in cached.iter().zip(read(&uncached)) {
        assert_eq!(with, &without, "account {} and the head key at {}", with.1, with.0);
    }
}

/// Frames of a snapshot, to tamper with.
fn frames_of(bytes: &[u8]) -> Vec<aergo_storage::snapshot::Frame> {
    let mut reader = aergo_storage::snapshot::FrameReader::new(bytes).unwrap();
    std::iter::from_fn(|| reader.next_frame().unwrap()).collect()
}

fn file_of(frames: &[aergo_storage::snapshot::Frame]) -> Vec<u8> {
    let mut w = aergo_storage::snapshot::FrameWriter::new(Vec::new()).unwrap();
    for f in frames {
        w.write(f).unwrap();
    }
    w.finish().unwrap()
}

/// A chain with coins, a contract and elections every 4 blocks, exported at a final height and
/// imported elsewhere: the imported node has the same state and rows, takes the blocks above the
/// snapshot as the producer made them, reopens, and says that history below it is absent. Every
/// kind of damage is refused, naming the frame, and leaves nothing behind.
#[test]
fn a_snapshot_starts_a_node_at_a_final_height_and_damage_is_refused() {
    use aergo_sql::store::contract_address;
    use aergo_storage::snapshot::{Frame, SnapshotError};
    let dir = tempfile::tempdir().unwrap();
    let (bp, alice) = (Keypair::from_seed("bp"), Keypair::from_seed("alice"));
    let mut g = genesis(&bp, &alice);
    g.consensus.epoch_blocks = 4;
    let (mut chain, _) = Chain::open(dir.path(), &g, LogOptions::default()).unwrap();
    let addr = contract_address(&alice.address(), 0);
    let mut blocks = Vec::new();
    let deploy = contract_tx(&alice, 0, 900_000, 10, Payload::Deploy { sql: TOKEN.to_string() });
    blocks.push(chain.produce(&bp, vec![deploy], 2_000).unwrap().block);
    for i in 1..30u64 {
        let friend = Keypair::from_seed(&format!("friend{i}"));
        let txs = vec![
            transfer(&alice, 2 * i - 1, friend.address(), 1_000 + u128::from(i)),
            token_call(&alice, 2 * i, addr, &friend, i as i64),
        ];
        let b = chain.produce(&bp, txs, 2_000 + i * 1_000).unwrap();
        assert!(b.receipts.iter().all(|r| r.status.is_success()), "{:?}", b.receipts);
        blocks.push(b.block);
    }
    let final_height = 25;
    chain.finalize(final_height, blocks[24].hash()).unwrap();
    let store = chain.store();
    let (report, bytes) =
        snapshot::export_from(&store, &chain.log_reader(), chain.schedule(), &g, Vec::new()).unwrap();
    assert_eq!(report.height, final_height);
    assert!(report.leaves > 30 && report.rows > 20, "{report:?}");
    let frames = frames_of(&bytes);
    assert!(frames.iter().any(|f| matches!(f, Frame::Election { .. })), "elections every 4 blocks");

    let target = tempfile::tempdir().unwrap();
    let data = target.path().join("node");
    let imported = snapshot::import(bytes.as_slice(), &data, &g).unwrap();
    assert_eq!(imported.head.height, final_height);
    assert_eq!(imported.head.state_root, blocks[24].header.state_root);
    assert!(!data.join(".importing").exists());
    let (mut copy, report) = Chain::open(&data, &g, LogOptions::default()).unwrap();
    assert!(!report.created && report.replayed == 0, "{report:?}");
    let copied = copy.store();
    assert_eq!(
        copied.account_at(&alice.address(), 25).unwrap(),
        store.account_at(&alice.address(), 25).unwrap()
    );
    let prefix = aergo_sql::store::contract_prefix(&addr);
    assert_eq!(copied.scan_at(&prefix, 25).unwrap(), store.scan_at(&prefix, 25).unwrap());
    assert_eq!(balance_at(&copied, &addr, &Keypair::from_seed("friend7"), 25), aergo_sql::Value::Int(7));
    let err = copied.check_history(24).unwrap_err().to_string();
    assert!(err.contains("history before height 25 is not on this node"), "{err}");
    // The blocks above the snapshot (two more elections among them) verify and give the same roots.
    for b in &blocks[25..] {
        let done = copy.import((**b).clone()).unwrap();
        assert_eq!(done.head.state_root, b.header.state_root);
    }
    drop((copy, copied));
    let (copy, report) = Chain::open(&data, &g, LogOptions::default()).unwrap();
    assert_eq!((report.replayed, copy.head().height), (0, 30));
    drop(copy);
    let err = verify_by_replay(&data, &g, &target.path().join("scratch"), None).unwrap_err().to_string();
    assert!(err.contains("snapshot at 25"), "{err}");

    // Damage. Each attempt leaves neither the target nor the work directory.
    let refused = |file: &[u8], genesis: &Genesis| {
        let target = tempfile::tempdir().unwrap();
        let data = target.path().join("node");
        let err = snapshot::import(file, &data, genesis).unwrap_err();
        assert!(!data.join("state").exists() && !data.join(".importing").exists(), "{err}");
        err.to_string()
    };
    let leaves_at = frames.iter().position(|f| matches!(f, Frame::Leaves { .. })).unwrap();
    // A flipped byte in the middle of the file: the frame's checksum.
    let mut flipped = bytes.clone();
    let mid = bytes.len() / 2;
    flipped[mid] ^= 1;
    let err = refused(&flipped, &g);
    assert!(err.contains("checksum does not match") || err.contains("cannot be decoded"), "{err}");
    // Cut short.
    assert!(refused(&bytes[..bytes.len() - 10], &g).contains("cut short"));
    assert!(refused(&bytes[..bytes.len() / 3], &g).contains("cut short"));
    // A leaf's value changed, checksum recomputed: the range proof.
    let mut forged = frames.clone();
    if let Frame::Leaves { entries, .. } = &mut forged[leaves_at] {
        entries[3].1.push(0);
    }
    let err = refused(&file_of(&forged), &g);
    assert!(err.contains(&format!("snapshot frame {} (leaves)", leaves_at + 1)), "{err}");
    assert!(err.contains("does not prove against the state root"), "{err}");
    // A leaf left out.
    let mut forged = frames.clone();
    if let Frame::Leaves { entries, .. } = &mut forged[leaves_at] {
        entries.remove(5);
    }
    assert!(refused(&file_of(&forged), &g).contains("does not prove"));
    // A row whose value is not the tree's; rows out of order.
    let rows_at = frames.iter().position(|f| matches!(f, Frame::Rows(_))).unwrap();
    let mut forged = frames.clone();
    if let Frame::Rows(rows) = &mut forged[rows_at] {
        rows[0].1 = b"forged".to_vec();
    }
    assert!(refused(&file_of(&forged), &g).contains("is not the state tree's"));
    let mut forged = frames.clone();
    if let Frame::Rows(rows) = &mut forged[rows_at] {
        rows.swap(0, 1);
    }
    assert!(refused(&file_of(&forged), &g).contains("not in key order"));
    // An election left out, or one of its records.
    let election_at = frames.iter().position(|f| matches!(f, Frame::Election { .. })).unwrap();
    let mut forged = frames.clone();
    forged.remove(election_at);
    assert!(refused(&file_of(&forged), &g).contains("is missing"));
    let mut forged = frames.clone();
    if let Frame::Election { records, .. } = &mut forged[election_at] {
        records[0].value = Some(vec![1, 2, 3]);
    }
    assert!(refused(&file_of(&forged), &g).contains("does not match the state root"));
    // Frames out of order; the end's counts; another chain's genesis.
    let mut forged = frames.clone();
    forged.swap(0, 1);
    assert!(refused(&file_of(&forged), &g).contains("out of order"));
    let mut forged = frames.clone();
    if let Some(Frame::End { leaves, .. }) = forged.last_mut() {
        *leaves += 1;
    }
    assert!(refused(&file_of(&forged), &g).contains("counts"));
    let mut other = g.clone();
    other.timestamp_ms += 1;
    let err = refused(&bytes, &other);
    assert!(err.contains("snapshot frame 1 (manifest)") && err.contains("genesis"), "{err}");
    assert!(refused(b"not a snapshot", &g).contains("not an AERGO snapshot"));
    // A target that holds something; what an interrupted import left is cleared.
    let err = snapshot::import(bytes.as_slice(), dir.path(), &g).unwrap_err();
    assert!(matches!(err, ChainError::Snapshot(SnapshotError::NotEmpty(_))), "{err}");
    let target = tempfile::tempdir().unwrap();
    let data = target.path().join("node");
    std::fs::create_dir_all(data.join(".importing/state")).unwrap();
    std::fs::write(data.join(".importing/state/junk"), b"x").unwrap();
    std::fs::write(data.join("config.toml"), b"# the node's own files stay").unwrap();
    snapshot::import(bytes.as_slice(), &data, &g).unwrap();
    assert!(!data.join(".importing").exists() && data.join("config.toml").exists());
    // A complete import whose moves a crash interrupted is put in place when the chain opens.
    let crashed = tempfile::tempdir().unwrap();
    let data = crashed.path().join("node");
    snapshot::import(bytes.as_slice(), &data, &g).unwrap();
    std::fs::create_dir_all(data.join(".importing")).unwrap();
    std::fs::rename(data.join("state"), data.join(".importing/state")).unwrap();
    std::fs::write(data.join(".importing/COMPLETE"), b"").unwrap();
    let (reopened, _) = Chain::open(&data, &g, LogOptions::default()).unwrap();
    assert_eq!(reopened.head().height, final_height);
}

/// One change a side of a random three-way merge makes: coins from payer `from` to account
/// `to`, or (`from` = None) tokens from alice to holder `to`.
#[derive(Clone, Debug)]
struct RandomChange {
    from: Option<usize>,
    to: usize,
    amount: u128,
}

fn random_changes() -> impl proptest::strategy::Strategy<Value = Vec<RandomChange>> {
    use proptest::prelude::*;
    proptest::collection::vec(
        (proptest::option::of(0..4usize), 0..5usize, 1..40u128).prop_map(|(from, to, amount)| RandomChange {
            from,
            to,
            amount,
        }),
        0..12,
    )
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 8, ..Default::default() })]

    /// A three-way merge of random changes on both sides (coins between accounts, tokens to
    /// holders) gives every account its main balance plus the branch's change since the base,
    /// every token holder main's amount plus the branch's change (the resolver sums), nonces the
    /// higher side's; and followers computing with 1, 2 and 4 threads reach the same state root.
    #[test]
    fn three_way_merges_of_random_changes_sum_both_sides_on_any_thread_count(
        ours in random_changes(),
        theirs in random_changes(),
    ) {
        three_way_of_random_changes(&ours, &theirs);
    }
}

/// Both sides making the very same changes (found by the property test above): a payer's
/// account identical on both sides still pays twice (two transactions, one on each branch), and
/// a token row identical on both sides still goes to the resolver, which sums both transfers.
#[test]
fn identical_changes_on_both_sides_still_add_up() {
    let same =
        [RandomChange { from: None, to: 0, amount: 5 }, RandomChange { from: Some(0), to: 0, amount: 9 }];
    three_way_of_random_changes(&same, &same);
}

/// `main` with `script` deployed by alice at height 1 (alice's nonce then 2), and branch
/// `feature` made on it at base 1 (final), produced by `branch_bp` (alice's nonce there: 1).
fn contract_and_feature(
    dir: &Path,
    g: &Genesis,
    [bp, alice, branch_bp]: [&Keypair; 3],
    script: &str,
) -> (Chain, Chain, Address) {
    let (mut main, _) = Chain::open(&dir.join("main"), g, LogOptions::default()).unwrap();
    let contract = aergo_primitives::types::contract_address(&alice.address(), 0);
    let deploy = signed_on("main", alice, 0, contract, 0, 10_000_000, Payload::Deploy { sql: script.into() });
    let record = Payload::CreateBranch {
        name: "feature".into(),
        base_height: 1,
        producers: vec![branch_bp.public()],
        mergers: vec![],
    };
    let b1 = main.produce(bp, vec![deploy], 2_000).unwrap();
    assert!(b1.receipts[0].status.is_success(), "{:?}", b1.receipts[0]);
    let b2 =
        main.produce(bp, vec![signed_on("main", alice, 1, alice.address(), 0, 1, record)], 3_000).unwrap();
    main.finalize(2, b2.block.hash()).unwrap();
    let branch = open_feature(dir, g, &main, branch_bp, 1);
    (main, branch, contract)
}

/// A resolver that raises refuses the merge with its error; nothing changes but the fee.
#[test]
fn a_resolver_that_raises_refuses_the_merge_and_changes_nothing_but_the_fee() {
    use aergo_primitives::types::MergeStrategy;
    use aergo_primitives::value::Value;
    let script = format!(
        "{MERGEABLE}
CREATE FUNCTION on_merge_notes(b_id INTEGER, b_body TEXT, o_id INTEGER, o_body TEXT, t_id INTEGER,
                               t_body TEXT) RETURNS TABLE (id INTEGER, body TEXT) AS $$
BEGIN
  RAISE EXCEPTION 'notes % and % do not merge', o_body, t_body;
END $$;"
    );
    let dir = tempfile::tempdir().unwrap();
    let k = |s: &str| Keypair::from_seed(s);
    let (bp, alice, branch_bp) = (k("bp"), k("alice"), k("branch-bp"));
    let mut g = genesis(&bp, &alice);
    g.balances[0].amount = 1_000_000_000_000;
    let (mut main, mut branch, notes) =
        contract_and_feature(dir.path(), &g, [&bp, &alice, &branch_bp], &script);
    let note = |on: &str, nonce: u64, body: &str| {
        let args = vec![Value::Int(1), Value::Text(body.into())];
        signed_on(
            on,
            &alice,
            nonce,
            notes,
            0,
            1_000_000,
            Payload::Call { contract: notes, function: "note".into(), args },
        )
    };
    let f = branch.produce(&branch_bp, vec![note("feature", 1, "theirs")], 4_000).unwrap();
    assert!(f.receipts[0].status.is_success(), "{:?}", f.receipts[0]);
    main.produce(&bp, vec![note("main", 2, "ours")], 5_000).unwrap();
    read_merges_from(&mut main, &branch, 2);
    let before = main.store().account(&alice.address()).unwrap();
    let refused = main
        .produce(&bp, vec![merge_signed(&alice, 3, MergeStrategy::ThreeWay, 2, f.block.hash())], 6_000)
        .unwrap();
    let ReceiptStatus::Failed(why) = &refused.receipts[0].status else { panic!("{:?}", refused.receipts[0]) };
    assert!(
        why.contains("on_merge_notes for") && why.contains("notes ours and theirs do not merge"),
        "{why}"
    );
    assert_eq!(rows_of(&main, &notes, "SELECT body FROM notes WHERE id = 1"), [["\"ours\""]]);
    let after = main.store().account(&alice.address()).unwrap();
    let fee = refused.receipts[0].fee;
    assert_eq!((after.balance, after.nonce), (before.balance - fee, before.nonce + 1));
}

fn three_way_of_random_changes(ours: &[RandomChange], theirs: &[RandomChange]) {
    use aergo_primitives::types::MergeStrategy;
    let dir = tempfile::tempdir().unwrap();
    let k = |s: &str| Keypair::from_seed(s);
    let (bp, alice, branch_bp) = (k("bp"), k("alice"), k("branch-bp"));
    let payers: Vec<Keypair> = (0..4).map(|i| k(&format!("payer-{i}"))).collect();
    let accounts: Vec<Address> = (0..5).map(|i| k(&format!("account-{i}")).address()).collect();
    let holders: Vec<String> = (0..5).map(|i| format!("holder-{i}")).collect();
    let mut g = genesis(&bp, &alice);
    g.balances[0].amount = 1_000_000_000_000;
    g.balances.extend(payers.iter().map(|p| GenesisBalance { address: p.address(), amount: 100_000 }));
    let (mut main, mut branch, token) =
        contract_and_feature(dir.path(), &g, [&bp, &alice, &branch_bp], MERGEABLE);
    // Each side's changes, signed with that side's nonces (alice's nonce on main is 2 after the
    // record; on the branch, 1).
    let side = |on: &str, changes: &[RandomChange], alice_nonce: u64| -> Vec<Transaction> {
        let mut nonces = [0u64; 4];
        let mut alice_nonce = alice_nonce;
        changes
            .iter()
            .map(|c| match c.from {
                Some(p) => {
                    nonces[p] += 1;
                    signed_on(on, &payers[p], nonces[p] - 1, accounts[c.to], c.amount, 1, Payload::Transfer)
                }
                None => {
                    alice_nonce += 1;
                    let args = vec![
                        aergo_primitives::value::Value::Text(holders[c.to].clone()),
                        aergo_primitives::value::Value::Int(c.amount as i64),
                    ];
                    let payload = Payload::Call { contract: token, function: "transfer".into(), args };
                    signed_on(on, &alice, alice_nonce - 1, token, 0, 1_000_000, payload)
                }
            })
            .collect()
    };
    let f = branch.produce(&branch_bp, side("feature", theirs, 1), 4_000).unwrap();
    assert!(f.receipts.iter().all(|r| r.status.is_success()), "{:?}", f.receipts);
    let m = main.produce(&bp, side("main", ours, 2), 5_000).unwrap();
    assert!(m.receipts.iter().all(|r| r.status.is_success()), "{:?}", m.receipts);
    let alice_nonce = main.store().account(&alice.address()).unwrap().nonce;

    // What each side holds before the merge, and the base (main at height 1).
    let tokens = |chain: &Chain, holder: &str| -> i64 {
        let sql = format!("SELECT amount FROM balances WHERE owner = '{holder}'");
        rows_of(chain, &token, &sql).first().map_or(0, |r| r[0].parse().unwrap())
    };
    let base_store = main.store();
    let coins_at = |addr: &Address, height: u64| base_store.account_at(addr, height).unwrap_or_default();
    let mut everyone: Vec<Address> = accounts.clone();
    everyone.extend(payers.iter().map(Keypair::address));
    everyone.extend([bp.address(), branch_bp.address(), alice.address()]);
    let expected: Vec<(Address, u128, u64)> = everyone
        .iter()
        .map(|a| {
            let (o, t, b) = (
                main.store().account(a).unwrap_or_default(),
                branch.store().account(a).unwrap_or_default(),
                coins_at(a, 1),
            );
            (*a, o.balance + t.balance - b.balance, o.nonce.max(t.nonce))
        })
        .collect();
    let alice_tokens = alice.address().to_string();
    let mut token_holders: Vec<&str> = holders.iter().map(String::as_str).collect();
    token_holders.push(&alice_tokens);
    let base_tokens = |holder: &str| if holder == alice_tokens { 1000 } else { 0 };
    let expected_tokens: Vec<i64> =
        token_holders.iter().map(|h| tokens(&main, h) + tokens(&branch, h) - base_tokens(h)).collect();
    let sides: Vec<(i64, i64)> =
        token_holders.iter().map(|h| (tokens(&main, h), tokens(&branch, h))).collect();

    let merge = merge_signed(&alice, alice_nonce, MergeStrategy::ThreeWay, 2, f.block.hash());
    // The branch's block 2 is its first own block: final for the source.
    let source = || TestSource { store: branch.store(), reader: branch.log_reader(), lib: 2, lie: false };
    main.set_merge_sources(Arc::new(source()));
    let merged = main.produce(&bp, vec![merge], 6_000).unwrap();
    let fee = merged.receipts[0].fee;
    assert!(merged.receipts[0].status.is_success(), "{:?}", merged.receipts[0]);
    for (a, balance, nonce) in &expected {
        let now = main.store().account(a).unwrap_or_default();
        let (mut balance, mut nonce) = (*balance, *nonce);
        if *a == alice.address() {
            balance -= fee;
            nonce = nonce.max(alice_nonce + 1);
        }
        if *a == bp.address() {
            balance += fee;
        }
        assert_eq!((now.balance, now.nonce), (balance, nonce), "account {a}");
    }
    if ours.iter().zip(theirs).all(|(o, t)| (o.from, o.to, o.amount) == (t.from, t.to, t.amount))
        && ours.len() == theirs.len()
        && !ours.is_empty()
    {
        // The identical case spelt out: alice's tokens 1000 − 2 × what she sent on each side.
        let sent: i64 = ours.iter().filter(|c| c.from.is_none()).map(|c| c.amount as i64).sum();
        assert_eq!(tokens(&main, &alice_tokens), 1000 - 2 * sent);
    }
    for (h, want) in token_holders.iter().zip(&expected_tokens) {
        assert_eq!(tokens(&main, h), *want, "tokens of {h}: sides {sides:?}, {:?}", merged.receipts[0]);
    }
    for threads in [1, 2, 4] {
        let (mut follower, _) =
            Chain::open(&dir.path().join(format!("follower-{threads}")), &g, LogOptions::default()).unwrap();
        follower.set_executor(aergo_exec::parallel::ParallelExecutor::with_threads(threads, Vec::new()));
        follower.set_merge_sources(Arc::new(source()));
        for h in 1..=main.head().height {
            follower.import(read_block(&main.store(), &main.log_reader(), h).unwrap().unwrap()).unwrap();
        }
        assert_eq!(follower.head().state_root, main.head().state_root, "{threads} threads");
    }
}

/// Contract events in receipts (`docs/dapps.md`): a successful call's receipt carries its
/// events; a failed call's carries those it emitted before failing, reverted, and changes no
/// row; the receipts root covers them (a follower recomputing the block agrees); a receipt
/// without events keeps the bytes it always had.
#[test]
fn receipts_carry_a_calls_events_and_a_failed_calls_reverted_ones() {
    use aergo_primitives::types::{Event, Receipt};
    use aergo_sql::Value;
    let dir = tempfile::tempdir().unwrap();
    let (bp, alice) = (Keypair::from_seed("bp"), Keypair::from_seed("alice"));
    let g = genesis(&bp, &alice);
    let (mut chain, _) = Chain::open(&dir.path().join("a"), &g, LogOptions::default()).unwrap();
    let script = "CREATE TABLE t (k INTEGER PRIMARY KEY);
CREATE EVENT hit (who TEXT, n INTEGER);
CREATE FUNCTION f(n INTEGER) RETURNS VOID AS $$
BEGIN
  EMIT hit(sender(), n);
  IF n > 5 THEN RAISE EXCEPTION 'too big: %', n; END IF;
  INSERT INTO t VALUES (n);
END $$;";
    let contract = aergo_primitives::types::contract_address(&alice.address(), 0);
    let deploy = contract_tx(&alice, 0, 1_000_000, 0, Payload::Deploy { sql: script.into() });
    let call = |nonce, n| {
        let payload = Payload::Call { contract, function: "f".into(), args: vec![Value::Int(n)] };
        contract_tx(&alice, nonce, 100_000, 0, payload)
    };
    let b1 = chain.produce(&bp, vec![deploy], 2_000).unwrap();
    assert!(b1.receipts[0].status.is_success() && b1.receipts[0].status.events().is_empty());
    let b2 = chain.produce(&bp, vec![call(1, 3), call(2, 9)], 3_000).unwrap();
    let hit = |n| Event {
        contract,
        name: "hit".into(),
        args: vec![Value::Text(alice.address().to_string()), Value::Int(n)],
    };
    assert_eq!(b2.receipts[0].status, ReceiptStatus::Emitted { result: None, events: vec![hit(3)] });
    assert_eq!(
        b2.receipts[1].status,
        ReceiptStatus::Reverted { error: "too big: 9".into(), events: vec![hit(9)] }
    );
    assert!(!b2.receipts[1].status.is_success() && b2.receipts[1].fee > 0);
    assert_eq!(rows_of(&chain, &contract, "SELECT k FROM t"), [["3"]], "the failed call wrote nothing");
    let stored = chain.store().tx_location(&b2.receipts[1].tx_hash).unwrap().unwrap();
    assert_eq!(stored.receipt, b2.receipts[1]);
    let (mut follower, _) = Chain::open(&dir.path().join("b"), &g, LogOptions::default()).unwrap();
    for b in [&b1, &b2] {
        follower.import((*b.block).clone()).unwrap();
    }
    assert_eq!(follower.head().state_root, chain.head().state_root);
    // The event index holds the successful call's event only, and loses it with its block.
    let indexed = |c: &Chain| c.store().events(&contract, (1, 10), None, 100, &|_| true).unwrap();
    let found = indexed(&chain);
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].0.height, found[0].0.tx, found[0].1.clone()), (2, 0, hit(3)));
    assert_eq!(indexed(&follower), found, "a follower indexes the same");
    chain.rollback_to(1).unwrap();
    assert!(indexed(&chain).is_empty(), "rolled back with its block");
    let plain = Receipt { tx_hash: Hash([1; 32]), status: ReceiptStatus::Success, fee: 5 };
    let same = Receipt { status: ReceiptStatus::Success.with_events(Vec::new()), ..plain.clone() };
    assert_eq!(aergo_primitives::types::to_vec_exact(&same), aergo_primitives::types::to_vec_exact(&plain));
}
