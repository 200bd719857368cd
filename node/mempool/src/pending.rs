//! The pool's pending state: the committed state with every pooled transaction applied in pool
//! order — the order this node's next block takes them in. Admission executes each new transaction
//! against it at once (the same [`apply_tx`] rules as blocks), which is the *speculative* result
//! `send_tx` answers with: a producer's pool-level serialization, in milliseconds, before the block.
//!
//! A transaction whose nonce is ahead of its sender's pending nonce cannot run yet: it is `queued`,
//! and runs when the gap closes. A replacement, a fork switch, or a block that is not what this
//! state ran first makes the state stale; it is rebuilt from the pool, in pool order, at the next
//! admission. A block of plain transfers that are exactly the first ones this state ran, in the
//! same order (the block this node built from its pool), leaves it as it is: it already holds their
//! effects, so only the accounts no later transaction wrote are dropped ([`PendingState::advance`]).

use aergo_exec::{apply_tx, AccountWrites, Accounts, BlockContext, ExecError, StateView, TxOutcome};
use aergo_primitives::types::{Account, Address, Hash, Payload, ReceiptStatus, Transaction};
use aergo_storage::state::Entries;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// What executing a transaction on the pending state said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Speculative {
    Success,
    /// It will be included and fail (it pays its fee): the reason.
    Failed(String),
    /// It cannot run yet (a nonce gap, or its fee is not covered before earlier transactions run).
    Queued(String),
}

#[derive(Default)]
pub struct PendingState {
    accounts: crate::FastMap<Address, Account>,
    raw: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The transactions that ran here (applied, failed or not), in the order they ran.
    ran: VecDeque<Ran>,
    /// For each account in `accounts`: how many transactions of `ran` wrote it.
    writers: crate::FastMap<Address, u32>,
    /// Rebuild before the next use.
    pub stale: bool,
}

/// One transaction that ran on the pending state.
struct Ran {
    hash: Hash,
    /// A transfer: it wrote its sender's and its recipient's accounts and nothing else, and its
    /// result depends on nothing of the block but the accounts (contracts and governance read the
    /// height and time, and write other keys).
    plain: bool,
    /// The accounts it wrote (with their values, which only the block's own writes need: kept as
    /// `apply_tx` returned them, inline, so that recording costs no allocation).
    wrote: AccountWrites,
}

struct View<'a, V: StateView> {
    pending: &'a mut PendingState,
    view: &'a V,
}

impl<V: StateView> Accounts for View<'_, V> {
    fn get(&mut self, address: &Address) -> Result<Account, ExecError> {
        if let Some(a) = self.pending.accounts.get(address) {
            return Ok(*a);
        }
        Ok(self.view.account(address)?)
    }

    fn set(&mut self, address: Address, account: Account) -> Result<(), ExecError> {
        self.pending.accounts.insert(address, account);
        Ok(())
    }

    fn get_raw(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError> {
        if let Some(v) = self.pending.raw.get(key) {
            return Ok(v.clone());
        }
        Ok(self.view.raw(key)?)
    }

    fn set_raw(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), ExecError> {
        self.pending.raw.insert(key, value);
        Ok(())
    }

    fn scan_raw(&mut self, prefix: &[u8]) -> Result<Entries, ExecError> {
        let base = self.view.scan(prefix)?;
        let mine = self.pending.raw.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix));
        Ok(aergo_sql::store::merge(base, mine.map(|(k, v)| (k.clone(), v.clone()))))
    }
}

/// The pending state read-only, with one transaction's writes of its own on top (an estimate).
struct Overlay<'a, V: StateView> {
    pending: &'a PendingState,
    view: &'a V,
    accounts: HashMap<Address, Account>,
    raw: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<V: StateView> Accounts for Overlay<'_, V> {
    fn get(&mut self, address: &Address) -> Result<Account, ExecError> {
        if let Some(a) = self.accounts.get(address).or_else(|| self.pending.accounts.get(address)) {
            return Ok(*a);
        }
        Ok(self.view.account(address)?)
    }

    fn set(&mut self, address: Address, account: Account) -> Result<(), ExecError> {
        self.accounts.insert(address, account);
        Ok(())
    }

    fn get_raw(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError> {
        if let Some(v) = self.raw.get(key).or_else(|| self.pending.raw.get(key)) {
            return Ok(v.clone());
        }
        Ok(self.view.raw(key)?)
    }

    fn set_raw(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), ExecError> {
        self.raw.insert(key, value);
        Ok(())
    }

    fn scan_raw(&mut self, prefix: &[u8]) -> Result<Entries, ExecError> {
        let base = self.view.scan(prefix)?;
        let pending = self.pending.raw.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix));
        let base = aergo_sql::store::merge(base, pending.map(|(k, v)| (k.clone(), v.clone())));
        let mine = self.raw.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix));
        Ok(aergo_sql::store::merge(base, mine.map(|(k, v)| (k.clone(), v.clone()))))
    }
}

impl PendingState {
    /// Executes `tx` on the pending state without keeping anything of it (`estimate_gas`).
    pub fn estimate<V: StateView>(
        &self,
        tx: &Transaction,
        ctx: &BlockContext,
        view: &V,
    ) -> Result<TxOutcome, ExecError> {
        let mut o = Overlay { pending: self, view, accounts: HashMap::new(), raw: BTreeMap::new() };
        apply_tx(tx, ctx, &mut o)
    }

    /// Executes `tx` on the pending state; its effects stay when it ran.
    pub fn apply<V: StateView>(&mut self, tx: &Transaction, ctx: &BlockContext, view: &V) -> Speculative {
        let mut v = View { pending: self, view };
        match apply_tx(tx, ctx, &mut v) {
            Ok(TxOutcome::Applied { receipt, writes, system }) => {
                for (a, _) in &writes {
                    *self.writers.entry(*a).or_default() += 1;
                }
                let plain = matches!(tx.body.payload, Payload::Transfer) && system.is_empty();
                self.ran.push_back(Ran { hash: receipt.tx_hash, plain, wrote: writes });
                Self::speculative(receipt.status)
            }
            Ok(TxOutcome::Invalid(reason)) => Speculative::Queued(reason),
            Err(e) => Speculative::Queued(format!("state read failed: {e}")),
        }
    }

    fn speculative(status: ReceiptStatus) -> Speculative {
        match status {
            ReceiptStatus::Success | ReceiptStatus::Returned(_) | ReceiptStatus::Emitted { .. } => {
                Speculative::Success
            }
            ReceiptStatus::Failed(reason) | ReceiptStatus::Reverted { error: reason, .. } => {
                Speculative::Failed(reason)
            }
        }
    }

    /// After a committed block with transactions `included` (in block order), whose fees went to
    /// `producer`: true when this state still holds the committed state plus the
    /// transactions that ran here after them, and so needs no rebuild.
    ///
    /// That holds when the block's transactions are plain transfers and exactly the first ones
    /// that ran here, in the same order: the block ran them on the same committed state (its
    /// parent is the head this state was built on; a fork switch makes it stale), so this state
    /// already holds what the block wrote, and the transactions after them ran on top of it. The
    /// accounts only the block's transactions wrote now hold their committed values, and are
    /// dropped, so that this state holds what the pool's transactions wrote and no more. The
    /// block also paid its fees to `producer` after its last transaction: when a later
    /// transaction wrote that account here, its value here lacks them, and the state must be
    /// rebuilt; otherwise the account is dropped too. False leaves the state to be rebuilt.
    pub fn advance(&mut self, included: &[Transaction], producer: &Address) -> bool {
        if self.stale || included.len() > self.ran.len() {
            return false;
        }
        if !included.iter().zip(&self.ran).all(|(tx, ran)| ran.plain && ran.hash == tx.hash()) {
            return false;
        }
        for ran in self.ran.drain(..included.len()) {
            for (a, _) in &ran.wrote {
                if let Some(n) = self.writers.get_mut(a) {
                    *n -= 1;
                    if *n == 0 {
                        self.writers.remove(a);
                        self.accounts.remove(a);
                    }
                }
            }
        }
        if self.writers.contains_key(producer) {
            return false;
        }
        self.accounts.remove(producer);
        true
    }

    /// An account as this state holds it (tests compare two states).
    #[cfg(test)]
    pub(crate) fn account<V: StateView>(&self, address: &Address, view: &V) -> Account {
        self.accounts.get(address).copied().unwrap_or_else(|| view.account(address).unwrap())
    }

    /// How many transactions ran here, and how many accounts this state holds (tests).
    #[cfg(test)]
    pub(crate) fn sizes(&self) -> (usize, usize) {
        (self.ran.len(), self.accounts.len())
    }

    /// Starts again from the committed state.
    pub fn clear(&mut self) {
        self.accounts.clear();
        self.raw.clear();
        self.ran.clear();
        self.writers.clear();
        self.stale = false;
    }
}
