use super::*;
use aergo_exec::{execute_block, Mode};
use aergo_primitives::crypto::Keypair;
use aergo_primitives::types::{Block, Payload, MAIN_BRANCH};
use aergo_storage::state::{account_key, decode_account};
use aergo_storage::StateError;
use proptest::prelude::*;

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
    pool.on_block(&block_of(&Keypair::from_seed("p"), vec![t0]), &[(a.address(), 1)].into());
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

/// A block of `txs` by `producer` (its header's other fields do not matter to the pool).
fn block_of(producer: &Keypair, txs: Vec<Transaction>) -> Block {
    aergo_primitives::crypto::test_block(producer, "c", 1, txs)
}

/// The committed state of these tests: accounts in a map, set from a block's changes.
#[derive(Default)]
struct Committed(HashMap<Address, Account>);

impl StateView for Committed {
    fn account(&self, address: &Address) -> Result<Account, StateError> {
        Ok(self.0.get(address).copied().unwrap_or_default())
    }
    fn raw(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(None)
    }
}

/// `senders` and the two producers, each with `balance`; `sink` has nothing.
struct World {
    senders: Vec<Keypair>,
    us: Keypair,
    other: Keypair,
    state: Committed,
    height: u64,
}

impl World {
    fn new(senders: usize, balance: u128) -> World {
        let senders: Vec<Keypair> = (0..senders).map(|i| Keypair::from_seed(&format!("s{i}"))).collect();
        let (us, other) = (Keypair::from_seed("p"), Keypair::from_seed("q"));
        let mut state = Committed::default();
        for k in senders.iter().chain([&us, &other]) {
            state.0.insert(k.address(), Account { balance, nonce: 0 });
        }
        World { senders, us, other, state, height: 0 }
    }

    /// Every account a transaction or a block's fees can touch.
    fn addresses(&self) -> Vec<Address> {
        let mut all: Vec<Address> =
            self.senders.iter().chain([&self.us, &self.other]).map(|k| k.address()).collect();
        all.push(Keypair::from_seed("sink").address());
        all
    }

    /// The next block's context, as this node (`us`) runs admitted transactions in.
    fn ctx(&self, producer: &Keypair) -> BlockContext {
        BlockContext {
            chain_id: "c".into(),
            branch: MAIN_BRANCH.into(),
            height: self.height + 1,
            timestamp_ms: 1_000 * (self.height + 1),
            producer: producer.address(),
            staking: Default::default(),
            sql_ordered_scans_height: 0,
            replay: false,
        }
    }

    /// Executes `txs` as a block by `producer` on the committed state and commits it; returns the
    /// block (what it included) and the senders' nonces after it.
    fn commit(&mut self, producer: &Keypair, txs: Vec<Transaction>) -> (Block, HashMap<Address, u64>) {
        let out = execute_block(&self.state, &self.ctx(producer), txs, Mode::Build).unwrap();
        for address in self.addresses() {
            if let Some(value) = out.changes.get(&account_key(&address)) {
                self.state.0.insert(address, decode_account(value.clone()).unwrap());
            }
        }
        self.height += 1;
        let nonces = out.included.iter().map(|t| (t.sender(), self.state.0[&t.sender()].nonce)).collect();
        (block_of(producer, out.included), nonces)
    }
}

fn transfer(key: &Keypair, nonce: u64, to: Address, amount: u128, fee: u128) -> Transaction {
    aergo_primitives::crypto::test_tx(key, "c", nonce, to, amount, fee, Payload::Transfer)
}

#[test]
fn the_block_built_from_the_pool_leaves_the_pending_state_as_it_is() {
    let mut w = World::new(2, 1_000);
    let (a, b) = (w.senders[0].clone(), w.senders[1].clone());
    let mut pool = Mempool::new(MempoolConfig::default());
    let ctx = w.ctx(&w.us);
    for t in [
        transfer(&a, 0, b.address(), 10, 1),
        transfer(&b, 0, a.address(), 20, 1),
        transfer(&a, 1, b.address(), 30, 1),
    ] {
        let committed = w.state.account(&t.sender()).unwrap();
        let hash = pool.admit(t, 100, committed).unwrap().hash;
        assert_eq!(pool.speculate(&hash, &ctx, &w.state), Some(Speculative::Success));
    }
    // Our block takes the first two: the third ran on top of them, and stays.
    let taken = pool.select(2).iter().map(|t| (**t).clone()).collect();
    let (block, nonces) = w.commit(&w.us.clone(), taken);
    pool.on_block(&block, &nonces);
    assert!(!pool.pending.stale, "the pending state ran exactly this block first");
    // What a's second transfer wrote is held, and nothing of the block's own.
    assert_eq!(pool.pending.sizes(), (1, 2));
    // a: 1 000 - 11 - 31 + 20; b: 1 000 - 21 + 10 + 30. The producer got 2 in fees, which the
    // pending state reads from the committed state.
    let ctx = w.ctx(&w.us);
    assert_eq!(pool.pending_account(&a.address(), &ctx, &w.state), Account { balance: 978, nonce: 2 });
    assert_eq!(pool.pending_account(&b.address(), &ctx, &w.state), Account { balance: 1_019, nonce: 1 });
    assert_eq!(pool.pending_account(&w.us.address(), &ctx, &w.state).balance, 1_002);
    assert!(!pool.pending.stale);
}

#[test]
fn another_producers_block_or_fees_to_a_written_account_rebuild_the_pending_state() {
    let mut w = World::new(2, 1_000);
    let (a, b) = (w.senders[0].clone(), w.senders[1].clone());
    let us = w.us.clone();
    let mut pool = Mempool::new(MempoolConfig::default());
    let ctx = w.ctx(&us);
    let ta = transfer(&a, 0, b.address(), 10, 1);
    let tb = transfer(&b, 0, a.address(), 10, 1);
    for t in [ta.clone(), tb.clone()] {
        let hash = pool.admit(t.clone(), 100, w.state.account(&t.sender()).unwrap()).unwrap().hash;
        pool.speculate(&hash, &ctx, &w.state);
    }
    // Not the first of what ran here: rebuilt.
    let (block, nonces) = w.commit(&us, vec![tb]);
    pool.on_block(&block, &nonces);
    assert!(pool.pending.stale);
    let ctx = w.ctx(&us);
    assert_eq!(pool.pending_account(&a.address(), &ctx, &w.state), Account { balance: 999, nonce: 1 });
    // A later transaction pays the producer: its fees are not on the pending state, so rebuilt.
    let pay = transfer(&b, 1, us.address(), 5, 1);
    let hash = pool.admit(pay, 100, w.state.account(&b.address()).unwrap()).unwrap().hash;
    pool.speculate(&hash, &ctx, &w.state);
    let (block, nonces) = w.commit(&us, vec![ta]);
    pool.on_block(&block, &nonces);
    assert!(pool.pending.stale);
    let ctx = w.ctx(&us);
    assert_eq!(pool.pending_account(&us.address(), &ctx, &w.state).balance, 1_000 + 1 + 1 + 5);
}

/// What the tests do to two pools: one keeps its pending state across blocks where it can, the
/// other rebuilds it every time (what every block did before).
#[derive(Clone, Debug)]
enum Step {
    /// `senders[from]` sends its next nonce plus `ahead` (a gap when above 0).
    Send { from: usize, ahead: u64, to: usize, amount: u128, fee: u128 },
    /// `senders[from]` sends its lowest queued nonce again with a fee 20 higher.
    Replace { from: usize },
    /// A block of at most `max` of the pool's transactions: by this node, or by another producer
    /// that takes only the senders in `senders` (a bit mask).
    Block { ours: bool, max: usize, senders: u8 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..4usize, prop_oneof![5 => Just(0u64), 1 => 1..3u64], 0..7usize, 0..400u128, 1..4u128)
            .prop_map(|(from, ahead, to, amount, fee)| Step::Send { from, ahead, to, amount, fee }),
        1 => (0..4usize).prop_map(|from| Step::Replace { from }),
        2 => (any::<bool>(), 0..12usize, any::<u8>()).prop_map(|(ours, max, senders)| Step::Block { ours, max, senders }),
    ]
}

/// A speculative answer without the wording of `queued` (a transaction waiting for an earlier
/// nonce says so in two ways, whether it was found waiting at admission or by a rebuild).
fn answer(s: Option<Speculative>) -> Option<Speculative> {
    s.map(|s| match s {
        Speculative::Queued(_) => Speculative::Queued(String::new()),
        other => other,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever is admitted and whichever blocks come, the pending state kept across blocks
    /// answers as one rebuilt after every block: the same speculative results, the same accounts.
    #[test]
    fn a_kept_pending_state_equals_a_rebuilt_one(steps in proptest::collection::vec(step(), 1..60)) {
        let mut w = World::new(4, 1_000);
        let us = w.us.clone();
        let other = w.other.clone();
        let (mut kept, mut rebuilt) =
            (Mempool::new(MempoolConfig::default()), Mempool::new(MempoolConfig::default()));
        let recipients = w.addresses();
        for step in steps {
            let ctx = w.ctx(&us);
            let t = match step {
                Step::Send { from, ahead, to, amount, fee } => {
                    let key = &w.senders[from];
                    let committed = w.state.account(&key.address()).unwrap();
                    let nonce = kept.pending_nonce(&key.address(), &committed) + ahead;
                    Some(transfer(key, nonce, recipients[to], amount, fee))
                }
                Step::Replace { from } => {
                    let key = &w.senders[from];
                    let old = kept.select(usize::MAX).into_iter().find(|t| t.sender() == key.address());
                    old.map(|o| transfer(key, o.body.nonce, o.body.recipient, o.body.amount, o.body.fee + 20))
                }
                Step::Block { ours, max, senders } => {
                    let mut txs: Vec<Transaction> = kept.select(max).iter().map(|t| (**t).clone()).collect();
                    if !ours {
                        let mask: Vec<Address> = (0..4).filter(|i| senders & (1 << i) != 0).map(|i| w.senders[i].address()).collect();
                        txs.retain(|t| mask.contains(&t.sender()));
                    }
                    let (block, nonces) = w.commit(if ours { &us } else { &other }, txs);
                    kept.on_block(&block, &nonces);
                    rebuilt.on_block(&block, &nonces);
                    rebuilt.pending.stale = true;
                    None
                }
            };
            if let Some(t) = t {
                let committed = w.state.account(&t.sender()).unwrap();
                let (x, y) = (kept.admit(t.clone(), 100, committed), rebuilt.admit(t, 100, committed));
                prop_assert_eq!(&x, &y);
                if let Ok(a) = x {
                    rebuilt.pending.stale = true;
                    prop_assert_eq!(
                        answer(kept.speculate(&a.hash, &ctx, &w.state)),
                        answer(rebuilt.speculate(&a.hash, &ctx, &w.state))
                    );
                }
            }
            let ctx = w.ctx(&us);
            for address in w.addresses() {
                rebuilt.pending.stale = true;
                prop_assert_eq!(
                    kept.pending_account(&address, &ctx, &w.state),
                    rebuilt.pending_account(&address, &ctx, &w.state),
                    "account {:?}", address
                );
            }
        }
    }
}
