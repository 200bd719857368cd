//! The pool's pending state: the committed state with every pooled transaction applied in pool
//! order — the order this node's next block takes them in. Admission executes each new transaction
//! against it at once (the same [`apply_tx`] rules as blocks), which is the *speculative* result
//! `send_tx` answers with: a producer's pool-level serialization, in milliseconds, before the block.
//!
//! A transaction whose nonce is ahead of its sender's pending nonce cannot run yet: it is `queued`,
//! and runs when the gap closes. A replacement, or a new committed block, makes the state stale; it is
//! rebuilt from the pool, in pool order, at the next admission.

use aergo_exec::{apply_tx, Accounts, BlockContext, ExecError, StateView, TxOutcome};
use aergo_primitives::types::{Account, Address, ReceiptStatus, Transaction};
use aergo_storage::state::Entries;
use std::collections::{BTreeMap, HashMap};

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
    accounts: HashMap<Address, Account>,
    raw: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Rebuild before the next use.
    pub stale: bool,
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
            Ok(TxOutcome::Applied { receipt, .. }) => match receipt.status {
                ReceiptStatus::Success | ReceiptStatus::Returned(_) | ReceiptStatus::Emitted { .. } => {
                    Speculative::Success
                }
                ReceiptStatus::Failed(reason) | ReceiptStatus::Reverted { error: reason, .. } => {
                    Speculative::Failed(reason)
                }
            },
            Ok(TxOutcome::Invalid(reason)) => Speculative::Queued(reason),
            Err(e) => Speculative::Queued(format!("state read failed: {e}")),
        }
    }

    /// Starts again from the committed state.
    pub fn clear(&mut self) {
        self.accounts.clear();
        self.raw.clear();
        self.stale = false;
    }
}
