use super::*;
use crate::genesis::{ConsensusParams, GenesisBalance, GenesisProducer};
use crate::types::{Payload, TxBody};

fn genesis(bp: &Keypair, rich: &Keypair) -> Genesis {
    Genesis {
        chain_id: "test".into(),
        timestamp_ms: 1_000,
        consensus: ConsensusParams::default(),
        balances: vec![GenesisBalance { address: rich.address(), amount: 1_000_000 }],
        producers: vec![GenesisProducer { public_key: hex::encode(bp.public().0) }],
    }
}

fn transfer(key: &Keypair, nonce: u64, to: Address, amount: u128) -> Transaction {
    key.sign_tx(TxBody {
        version: ENCODING_VERSION,
        chain_id: "test".into(),
        nonce,
        sender: key.public(),
        recipient: to,
        amount,
        fee: 1,
        payload: Payload::Transfer,
    })
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
    follower.import(block).unwrap();
    assert_eq!(follower.head(), producer.head());
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
