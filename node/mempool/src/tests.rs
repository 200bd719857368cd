use super::*;
use aergo_primitives::crypto::Keypair;
use aergo_primitives::types::Payload;

fn tx(key: &Keypair, nonce: u64, amount: u128, fee: u128) -> Transaction {
    aergo_primitives::crypto::test_tx(
        key,
        "c",
        nonce,
        Keypair::from_seed("sink").address(),
        amount,
        fee,
        Payload::Transfer,
    )
}

fn rich() -> Account {
    Account { balance: 1_000_000, nonce: 0 }
}

#[test]
fn pool_order_respects_nonces() {
    let (a, b) = (Keypair::from_seed("a"), Keypair::from_seed("b"));
    let mut pool = Mempool::new(MempoolConfig::default());
    // a1 arrives before a0: it must still come after a0.
    let s_a1 = pool.admit(tx(&a, 1, 1, 1), 100, rich()).unwrap().pool_seq;
    let s_b0 = pool.admit(tx(&b, 0, 1, 1), 100, rich()).unwrap().pool_seq;
    let s_a0 = pool.admit(tx(&a, 0, 1, 1), 100, rich()).unwrap().pool_seq;
    assert!(s_a1 < s_b0 && s_b0 < s_a0);
    let order: Vec<(Address, u64)> = pool.select(10).iter().map(|t| (t.sender(), t.body.nonce)).collect();
    assert_eq!(order, vec![(b.address(), 0), (a.address(), 0), (a.address(), 1)]);
    assert_eq!(pool.select(2).len(), 2);
    assert_eq!(pool.pending_nonce(&a.address(), &rich()), 2);
}

#[test]
fn a_block_takes_what_fits_its_bytes_and_no_later_nonce_past_a_gap() {
    let (a, b) = (Keypair::from_seed("a"), Keypair::from_seed("b"));
    let mut pool = Mempool::new(MempoolConfig::default());
    pool.admit(tx(&a, 0, 1, 1), 100, rich()).unwrap();
    pool.admit(tx(&b, 0, 1, 1), 300, rich()).unwrap();
    pool.admit(tx(&a, 1, 1, 1), 100, rich()).unwrap();
    assert_eq!(pool.select_within(10, 500).len(), 3);
    // b0 (300 bytes) does not fit after a0: nothing after it goes in either.
    let taken: Vec<(Address, u64)> =
        pool.select_within(10, 399).iter().map(|t| (t.sender(), t.body.nonce)).collect();
    assert_eq!(taken, vec![(a.address(), 0)]);
    assert!(pool.select_within(10, 99).is_empty());
    assert_eq!(pool.select_within(2, usize::MAX).len(), 2);
}

#[test]
fn gaps_wait_and_stale_entries_go() {
    let a = Keypair::from_seed("a");
    let mut pool = Mempool::new(MempoolConfig::default());
    pool.admit(tx(&a, 2, 1, 1), 100, rich()).unwrap();
    assert!(pool.select(10).is_empty(), "nonce 2 waits for 0 and 1");
    let t0 = tx(&a, 0, 1, 1);
    pool.admit(t0.clone(), 100, rich()).unwrap();
    assert_eq!(pool.select(10).len(), 1);
    pool.on_block(&[t0], &[(a.address(), 1)].into());
    assert_eq!(pool.len(), 1);
    assert_eq!(pool.pending_nonce(&a.address(), &Account { balance: 10, nonce: 1 }), 1);
}

#[test]
fn rejection_reasons() {
    let a = Keypair::from_seed("a");
    let config =
        MempoolConfig { max_txs: 3, max_per_account: 2, max_nonce_gap: 5, ..MempoolConfig::default() };
    let mut pool = Mempool::new(config);
    let at_nonce_3 = Account { balance: 100, nonce: 3 };
    assert_eq!(pool.admit(tx(&a, 2, 1, 1), 10, at_nonce_3).unwrap_err().reason(), "nonce_too_low");
    assert_eq!(pool.admit(tx(&a, 9, 1, 1), 10, at_nonce_3).unwrap_err().reason(), "nonce_gap");
    assert_eq!(pool.admit(tx(&a, 3, 100, 1), 10, at_nonce_3).unwrap_err().reason(), "balance_too_low");
    pool.admit(tx(&a, 3, 50, 1), 10, at_nonce_3).unwrap();
    // The queued 51 counts: another 50 does not fit in 100.
    assert_eq!(pool.admit(tx(&a, 4, 50, 1), 10, at_nonce_3).unwrap_err().reason(), "balance_too_low");
    pool.admit(tx(&a, 4, 10, 1), 10, at_nonce_3).unwrap();
    assert_eq!(pool.admit(tx(&a, 5, 1, 1), 10, at_nonce_3).unwrap_err().reason(), "account_full");
    for (i, seed) in ["b", "c"].iter().enumerate() {
        let r = pool.admit(tx(&Keypair::from_seed(seed), 0, 1, 1), 10, rich());
        if i == 0 {
            r.unwrap();
        } else {
            assert_eq!(r.unwrap_err().reason(), "pool_full");
        }
    }
}

#[test]
fn replacement_needs_a_fee_bump() {
    let a = Keypair::from_seed("a");
    let mut pool = Mempool::new(MempoolConfig::default());
    let first = pool.admit(tx(&a, 0, 1, 100), 10, rich()).unwrap();
    // Same transaction again: same answer.
    assert_eq!(pool.admit(tx(&a, 0, 1, 100), 10, rich()).unwrap(), first);
    assert_eq!(pool.admit(tx(&a, 0, 2, 105), 10, rich()).unwrap_err().reason(), "replacement_underpriced");
    let second = pool.admit(tx(&a, 0, 2, 110), 10, rich()).unwrap();
    assert!(second.pool_seq > first.pool_seq);
    assert_eq!(pool.len(), 1);
    assert!(pool.get(&first.hash).is_none());
    assert_eq!(pool.select(5)[0].body.amount, 2);
    assert_eq!(pool.bytes(), 10);
}
