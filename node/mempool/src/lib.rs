//! The transaction pool: per-account nonce queues in one global admission order.
//!
//! Every admitted transaction gets a `pool_seq`, a number that only grows: the pool order that a
//! producer serializes transactions in (pool-level serialization). Blocks take transactions in that
//! order, except that an account's transactions always go in nonce order: a transaction waits until the
//! one before it from the same sender is taken.
//!
//! Admission checks, against the sender's committed account:
//! nonce not below the committed one (`nonce_too_low`), not more than `max_nonce_gap` ahead
//! (`nonce_gap`), the sender's queued costs plus this one within the balance (`balance_too_low`), sizes
//! and counts within limits (`too_large`, `pool_full`, `account_full`). A transaction with the nonce of
//! one already queued replaces it only when its fee is at least `replace_fee_bump_percent` higher
//! (`replacement_underpriced`). Signatures and chain id are checked before the pool is locked, by the
//! [`admission`] stage in front of the pool (a bounded queue and a thread pool of signature checks).
//!
//! [`PendingState`] runs each admitted transaction on the committed state plus everything before it
//! in pool order, for the speculative receipt `send_tx` answers with in milliseconds.
//!
//! This crate executes through `aergo-exec` on a state view; it never commits, never builds blocks
//! and never talks to the network.

pub mod admission;
mod pending;

pub use aergo_config::MempoolConfig;
pub use pending::{PendingState, Speculative};

use aergo_exec::{BlockContext, StateView};
use aergo_primitives::types::{Account, Address, Amount, Block, Hash, Transaction};

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

/// The pool's maps, keyed by addresses and hashes that senders choose: ahash is keyed at random
/// per map like the standard hasher, and costs a fraction of SipHash on these 20- and 32-byte keys
/// (several lookups per admitted transaction, under the pool's lock).
pub(crate) type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;

/// Why a transaction was refused. `reason()` is the machine-readable name sent in RPC errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error("malformed transaction: {0}")]
    Malformed(String),
    #[error("transaction is {len} bytes, more than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("bad signature: {0}")]
    BadSignature(String),
    #[error("wrong chain id {got:?}; this node runs {expected:?}")]
    WrongChainId { expected: String, got: String },
    #[error("nonce too low: {got}, the account's next nonce is {next}")]
    NonceTooLow { next: u64, got: u64 },
    #[error("nonce gap: {got} is more than {max_gap} ahead of the account's next nonce {next}")]
    NonceGap { next: u64, got: u64, max_gap: u64 },
    #[error("balance too low: {balance} cannot cover {needed} (this and the sender's queued transactions)")]
    BalanceTooLow { balance: Amount, needed: Amount },
    #[error(
        "replacement underpriced: fee {got} must be at least {needed} to replace the queued transaction"
    )]
    ReplacementUnderpriced { needed: Amount, got: Amount },
    #[error("pool full ({count} transactions, {bytes} bytes); retry later")]
    PoolFull { count: usize, bytes: usize },
    #[error("the sender already has {0} transactions queued")]
    AccountFull(usize),
    #[error("node busy; retry later")]
    Busy,
    /// A node that is no producer forwarded it, and the producers refused it.
    #[error("refused by the producer: {0}")]
    RefusedByProducer(String),
    /// A transaction for a branch this node does not run.
    #[error("transaction is for branch {got:?}; this pool is {expected:?}'s")]
    WrongBranch { expected: String, got: String },
    /// A branch's base or a tag's block that is not final yet.
    #[error("height {height} is not final: the last final block is {lib}")]
    NotFinal { height: u64, lib: u64 },
    /// A transaction for a branch this node does not hold or produce (the message says which).
    #[error("{0}")]
    BranchNotHeld(String),
    /// A private repository's transaction from a sender who is no `write` or `admin` member.
    #[error("{0} may not write to this private repository")]
    NotAWriter(aergo_primitives::types::Address),
}

impl AdmitError {
    /// Whether the transaction itself is wrong (not merely unwelcome now): a peer that relays it
    /// is at fault.
    pub fn is_invalid(&self) -> bool {
        matches!(
            self,
            AdmitError::Malformed(_)
                | AdmitError::TooLarge { .. }
                | AdmitError::BadSignature(_)
                | AdmitError::WrongChainId { .. }
                | AdmitError::WrongBranch { .. }
        )
    }

    pub fn reason(&self) -> &'static str {
        match self {
            AdmitError::Malformed(_) => "malformed",
            AdmitError::TooLarge { .. } => "too_large",
            AdmitError::BadSignature(_) => "bad_signature",
            AdmitError::WrongChainId { .. } => "wrong_chain_id",
            AdmitError::NonceTooLow { .. } => "nonce_too_low",
            AdmitError::NonceGap { .. } => "nonce_gap",
            AdmitError::BalanceTooLow { .. } => "balance_too_low",
            AdmitError::ReplacementUnderpriced { .. } => "replacement_underpriced",
            AdmitError::PoolFull { .. } => "pool_full",
            AdmitError::AccountFull(_) => "account_full",
            AdmitError::Busy => "busy",
            AdmitError::RefusedByProducer(_) => "refused_by_producer",
            AdmitError::NotFinal { .. } => "not_final",
            AdmitError::WrongBranch { .. } => "wrong_branch",
            AdmitError::BranchNotHeld(_) => "branch_not_held",
            AdmitError::NotAWriter(_) => "not_a_writer",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    pub hash: Hash,
    pub pool_seq: u64,
    /// Its result on the pool's pending state (set by the admission stage).
    pub speculative: Option<Speculative>,
}

#[derive(Clone)]
struct Entry {
    tx: Arc<Transaction>,
    hash: Hash,
    seq: u64,
    bytes: usize,
    /// Its result on the pending state, once it ran there (`None`: not yet).
    spec: Option<Speculative>,
}

#[derive(Default)]
struct Queue {
    /// The committed nonce as last seen.
    base_nonce: u64,
    txs: BTreeMap<u64, Entry>,
    /// What the queued transactions may cost the sender together, kept as they come and go: a
    /// sum on each admission was a walk over up to `max_per_account` (10 000) entries. It never
    /// saturates: each admission checked that the sum with it is within the sender's balance.
    cost: Amount,
}

impl Queue {
    fn queued_cost(&self) -> Amount {
        debug_assert_eq!(self.cost, self.txs.values().map(|e| e.tx.cost()).sum::<Amount>());
        self.cost
    }

    fn insert(&mut self, nonce: u64, entry: Entry) -> Option<Entry> {
        self.cost = self.cost.saturating_add(entry.tx.cost());
        let old = self.txs.insert(nonce, entry);
        if let Some(old) = &old {
            self.cost = self.cost.saturating_sub(old.tx.cost());
        }
        old
    }

    fn remove(&mut self, nonce: &u64) -> Option<Entry> {
        let old = self.txs.remove(nonce);
        if let Some(old) = &old {
            self.cost = self.cost.saturating_sub(old.tx.cost());
        }
        old
    }

    fn pending_nonce(&self) -> u64 {
        let mut n = self.base_nonce;
        while self.txs.contains_key(&n) {
            n += 1;
        }
        n
    }
}

pub struct Mempool {
    config: MempoolConfig,
    queues: FastMap<Address, Queue>,
    by_hash: FastMap<Hash, (Address, u64)>,
    next_seq: u64,
    bytes: usize,
    pending: PendingState,
}

impl Mempool {
    pub fn new(config: MempoolConfig) -> Mempool {
        Mempool {
            config,
            queues: FastMap::default(),
            by_hash: FastMap::default(),
            next_seq: 1,
            bytes: 0,
            pending: PendingState::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn get(&self, hash: &Hash) -> Option<Arc<Transaction>> {
        let (addr, nonce) = self.by_hash.get(hash)?;
        self.queues.get(addr)?.txs.get(nonce).map(|e| e.tx.clone())
    }

    /// The nonce the sender's next transaction should carry, given its committed account.
    pub fn pending_nonce(&self, address: &Address, committed: &Account) -> u64 {
        match self.queues.get(address) {
            Some(q) => {
                let mut q_nonce = committed.nonce.max(q.base_nonce);
                while q.txs.contains_key(&q_nonce) {
                    q_nonce += 1;
                }
                q_nonce
            }
            None => committed.nonce,
        }
    }

    /// Admits a transaction whose signature and chain id were already checked. `committed` is the
    /// sender's account at the head.
    pub fn admit(
        &mut self,
        tx: Transaction,
        bytes: usize,
        committed: Account,
    ) -> Result<Admitted, AdmitError> {
        let hash = tx.hash();
        if let Some((addr, nonce)) = self.by_hash.get(&hash) {
            // Resubmitting the same transaction is harmless: answer with its place.
            if let Some(e) = self.queues.get(addr).and_then(|q| q.txs.get(nonce)) {
                return Ok(Admitted { hash, pool_seq: e.seq, speculative: None });
            }
        }
        let sender = tx.sender();
        let nonce = tx.body.nonce;
        let queue = self.queues.entry(sender).or_default();
        queue.base_nonce = queue.base_nonce.max(committed.nonce);
        // Entries below the committed nonce are stale (included meanwhile); drop them now.
        let stale: Vec<u64> = queue.txs.range(..queue.base_nonce).map(|(n, _)| *n).collect();
        for n in stale {
            if let Some(e) = queue.remove(&n) {
                self.by_hash.remove(&e.hash);
                self.bytes -= e.bytes;
            }
        }
        if nonce < queue.base_nonce {
            return Err(AdmitError::NonceTooLow { next: queue.base_nonce, got: nonce });
        }
        if nonce - queue.base_nonce > self.config.max_nonce_gap {
            return Err(AdmitError::NonceGap {
                next: queue.pending_nonce(),
                got: nonce,
                max_gap: self.config.max_nonce_gap,
            });
        }
        let replacing = queue.txs.get(&nonce).cloned();
        if let Some(old) = &replacing {
            let needed =
                old.tx.body.fee.saturating_mul(100 + self.config.replace_fee_bump_percent as u128) / 100;
            let needed = needed.max(old.tx.body.fee + 1);
            if tx.body.fee < needed {
                return Err(AdmitError::ReplacementUnderpriced { needed, got: tx.body.fee });
            }
        } else {
            if queue.txs.len() >= self.config.max_per_account {
                return Err(AdmitError::AccountFull(queue.txs.len()));
            }
            if self.by_hash.len() >= self.config.max_txs || self.bytes + bytes > self.config.max_bytes {
                return Err(AdmitError::PoolFull { count: self.by_hash.len(), bytes: self.bytes });
            }
        }
        let others = queue.queued_cost().saturating_sub(replacing.as_ref().map_or(0, |e| e.tx.cost()));
        let needed = others.saturating_add(tx.cost());
        if needed > committed.balance {
            return Err(AdmitError::BalanceTooLow { balance: committed.balance, needed });
        }
        if let Some(old) = replacing {
            self.by_hash.remove(&old.hash);
            self.bytes -= old.bytes;
            // The replaced transaction may have run on the pending state.
            self.pending.stale = true;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        queue.insert(nonce, Entry { tx: Arc::new(tx), hash, seq, bytes, spec: None });
        self.by_hash.insert(hash, (sender, nonce));
        self.bytes += bytes;
        Ok(Admitted { hash, pool_seq: seq, speculative: None })
    }

    /// After a fork switch took blocks back: the senders' committed nonces went down, so their queues
    /// start lower again (transactions of the abandoned blocks can be admitted again).
    pub fn on_rollback(&mut self, committed_nonces: &HashMap<Address, u64>) {
        self.pending.stale = true;
        for (address, nonce) in committed_nonces {
            if let Some(q) = self.queues.get_mut(address) {
                q.base_nonce = q.base_nonce.min(*nonce);
            }
        }
    }

    /// Up to `max` transactions in pool order, each sender's in nonce order from its committed nonce.
    pub fn select(&self, max: usize) -> Vec<Arc<Transaction>> {
        self.select_within(max, usize::MAX)
    }

    /// [`Mempool::select`] for a block: also at most `max_bytes` of encoded transactions (a block
    /// must fit the largest message a peer takes). It stops at the first transaction that does
    /// not fit, so that no sender's later nonce goes in without the earlier one.
    pub fn select_within(&self, max: usize, max_bytes: usize) -> Vec<Arc<Transaction>> {
        let mut room = max_bytes;
        // Min-heap of (seq, sender, nonce) over each sender's next ready transaction.
        let mut heap: BinaryHeap<std::cmp::Reverse<(u64, Address, u64)>> = BinaryHeap::new();
        for (addr, q) in &self.queues {
            if let Some(e) = q.txs.get(&q.base_nonce) {
                heap.push(std::cmp::Reverse((e.seq, *addr, q.base_nonce)));
            }
        }
        let mut out = Vec::with_capacity(max.min(self.len()));
        while out.len() < max {
            let Some(std::cmp::Reverse((_, addr, nonce))) = heap.pop() else { break };
            let Some(q) = self.queues.get(&addr) else { continue };
            if let Some(e) = q.txs.get(&nonce) {
                if e.bytes > room {
                    break;
                }
                room -= e.bytes;
                out.push(e.tx.clone());
            }
            if let Some(next) = q.txs.get(&(nonce + 1)) {
                heap.push(std::cmp::Reverse((next.seq, addr, nonce + 1)));
            }
        }
        out
    }

    /// Runs the transaction `hash` (admitted just now) on the pending state, and after it the
    /// sender's next ones that were waiting for it; returns its result. A stale pending state is
    /// rebuilt first, from the committed state (`view`) and the whole pool in pool order.
    pub fn speculate<V: StateView>(
        &mut self,
        hash: &Hash,
        ctx: &BlockContext,
        view: &V,
    ) -> Option<Speculative> {
        let (sender, nonce) = *self.by_hash.get(hash)?;
        // Submitted again: it ran already.
        if let Some(spec) = self.queues.get(&sender)?.txs.get(&nonce)?.spec.clone() {
            if !self.pending.stale {
                return Some(spec);
            }
        }
        if self.pending.stale {
            self.rebuild_pending(ctx, view);
        } else {
            let mut n = nonce;
            while let Some(e) = self.queues.get_mut(&sender).and_then(|q| q.txs.get_mut(&n)) {
                if n != nonce && !matches!(e.spec, Some(Speculative::Queued(_)) | None) {
                    break;
                }
                let result = self.pending.apply(&e.tx, ctx, view);
                let ran = !matches!(result, Speculative::Queued(_));
                e.spec = Some(result);
                if !ran {
                    break;
                }
                n += 1;
            }
        }
        self.queues.get(&sender)?.txs.get(&nonce)?.spec.clone()
    }

    /// Runs `tx` on the pending state (rebuilt first when stale) and keeps nothing of it: what it
    /// would do if it were admitted now (`estimate_gas`).
    pub fn estimate<V: StateView>(
        &mut self,
        tx: &Transaction,
        ctx: &BlockContext,
        view: &V,
    ) -> Result<aergo_exec::TxOutcome, aergo_exec::ExecError> {
        if self.pending.stale {
            self.rebuild_pending(ctx, view);
        }
        self.pending.estimate(tx, ctx, view)
    }

    /// An account on the pending state, rebuilt first when stale (tests compare pools).
    #[cfg(test)]
    fn pending_account<V: StateView>(&mut self, address: &Address, ctx: &BlockContext, view: &V) -> Account {
        if self.pending.stale {
            self.rebuild_pending(ctx, view);
        }
        self.pending.account(address, view)
    }

    fn rebuild_pending<V: StateView>(&mut self, ctx: &BlockContext, view: &V) {
        self.pending.clear();
        for q in self.queues.values_mut() {
            for e in q.txs.values_mut() {
                e.spec = None;
            }
        }
        for tx in self.select(usize::MAX) {
            let result = self.pending.apply(&tx, ctx, view);
            let hash = tx.hash();
            if let Some((a, n)) = self.by_hash.get(&hash).copied() {
                if let Some(e) = self.queues.get_mut(&a).and_then(|q| q.txs.get_mut(&n)) {
                    e.spec = Some(result);
                }
            }
        }
        for q in self.queues.values_mut() {
            for e in q.txs.values_mut() {
                e.spec.get_or_insert_with(|| Speculative::Queued("waits for an earlier nonce".into()));
            }
        }
    }

    /// After a committed block: drops what it included and every transaction now below its
    /// sender's nonce. The pending state stays as it is when it ran the block's transactions first
    /// ([`PendingState::advance`]: the block this node built from its pool); otherwise it is rebuilt
    /// at the next admission.
    pub fn on_block(&mut self, block: &Block, committed_nonces: &HashMap<Address, u64>) {
        // A transaction caches its hash: reading it twice costs no hashing.
        let kept = self.pending.advance(&block.transactions, &block.header.producer.address());
        for tx in &block.transactions {
            self.drop_entry(&tx.hash());
        }
        let mut dropped_stale = false;
        for (addr, nonce) in committed_nonces {
            if let Some(q) = self.queues.get_mut(addr) {
                q.base_nonce = q.base_nonce.max(*nonce);
                let stale: Vec<u64> = q.txs.range(..q.base_nonce).map(|(n, _)| *n).collect();
                for n in stale {
                    if let Some(e) = q.remove(&n) {
                        self.by_hash.remove(&e.hash);
                        self.bytes -= e.bytes;
                        // It may have run on the pending state.
                        dropped_stale = true;
                    }
                }
            }
        }
        self.queues.retain(|_, q| !q.txs.is_empty());
        if !kept || dropped_stale {
            self.pending.stale = true;
        }
    }

    /// Removes one transaction (found invalid by the block builder).
    pub fn remove(&mut self, hash: &Hash) {
        self.pending.stale = true;
        self.drop_entry(hash);
    }

    /// Takes one transaction out of the pool, leaving the pending state as it is.
    fn drop_entry(&mut self, hash: &Hash) {
        if let Some((addr, nonce)) = self.by_hash.remove(hash) {
            if let Some(q) = self.queues.get_mut(&addr) {
                if let Some(e) = q.remove(&nonce) {
                    self.bytes -= e.bytes;
                }
            }
        }
    }
}

/// The RPC's view of a speculative result.
impl From<&Speculative> for aergo_api::SpeculativeView {
    fn from(s: &Speculative) -> Self {
        use Speculative::*;
        match s {
            Success => aergo_api::SpeculativeView { status: "success".into(), error: None },
            Failed(e) => aergo_api::SpeculativeView { status: "failed".into(), error: Some(e.clone()) },
            Queued(e) => aergo_api::SpeculativeView { status: "queued".into(), error: Some(e.clone()) },
        }
    }
}

/// What `send_tx` answers (over RPC, or to a peer that forwarded the transaction) once the pool
/// admitted it.
impl From<Admitted> for aergo_api::SendTxResult {
    fn from(a: Admitted) -> Self {
        aergo_api::SendTxResult {
            hash: a.hash,
            pool_seq: a.pool_seq,
            speculative: a.speculative.as_ref().map(Into::into),
            answered_by: None,
        }
    }
}

#[cfg(test)]
mod tests;
