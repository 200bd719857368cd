//! Block execution: applies a block's transactions to the state, sequentially or in parallel.
//!
//! Rules of a transfer:
//! - the sender's nonce must equal the transaction's and the sender must be able to pay the fee, else the
//!   transaction is *invalid*: a producer leaves it out of the block ([`Mode::Build`]); a block that
//!   contains one is refused ([`Mode::Verify`]);
//! - a valid transaction always pays its fee and uses its nonce; the transfer itself then succeeds or
//!   fails (balance too low for the amount, recipient overflow) and the receipt says which;
//! - fees go to the producer after the last transaction, so no transaction touches the producer's
//!   account (which keeps transactions independent for the parallel executor);
//! - every block writes [`HEAD_KEY`](crate::storage::state::HEAD_KEY) (height, timestamp), so every
//!   height has a state root of its own.
//!
//! Two engines give byte-identical results: [`execute_block`] (sequential, the reference) and
//! [`parallel::ParallelExecutor`] (the deterministic transaction tree, [`dtt`], run on pinned worker
//! threads). Both go through [`apply_tx`], and both turn per-transaction outcomes into one
//! [`ExecOutput`] with [`assemble`].

pub mod access;
pub mod affinity;
pub mod dtt;
pub mod parallel;

use crate::storage::state::{account_key, HEAD_KEY};
use crate::storage::{StateError, StateStore};
use crate::types::{Account, Address, Amount, Hash, Payload, Receipt, ReceiptStatus, Transaction};
use std::collections::{BTreeMap, HashMap};

/// Reads state as of the parent block. Shared by worker threads, hence `Sync`.
pub trait StateView: Sync {
    fn account(&self, address: &Address) -> Result<Account, StateError>;
}

impl StateView for StateStore {
    fn account(&self, address: &Address) -> Result<Account, StateError> {
        StateStore::account(self, address)
    }
}

/// The block being executed.
#[derive(Clone, Debug)]
pub struct BlockContext {
    pub chain_id: String,
    pub height: u64,
    pub timestamp_ms: u64,
    pub producer: Address,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Building a block: invalid transactions are left out and reported.
    Build,
    /// Checking a received or replayed block: an invalid transaction makes the block invalid.
    Verify,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("transaction {index} ({hash}) is invalid: {reason}")]
    InvalidTx { index: usize, hash: Hash, reason: String },
    /// A transaction touched an account outside its declared access set (the parallel executor
    /// catches this and re-executes in order; it never escapes [`parallel::ParallelExecutor`]).
    #[error("transaction touched {0} outside its declared access set")]
    Undeclared(Address),
}

/// What executing a block produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Transactions that made it into the block, in order.
    pub included: Vec<Transaction>,
    pub receipts: Vec<Receipt>,
    /// State writes (key → new value, `None` = delete), sorted by key.
    pub changes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Transactions left out in [`Mode::Build`], with the reason.
    pub dropped: Vec<(Hash, String)>,
}

/// Account reads and writes as one transaction sees them.
pub trait Accounts {
    fn get(&mut self, address: &Address) -> Result<Account, ExecError>;
    fn set(&mut self, address: Address, account: Account) -> Result<(), ExecError>;
}

/// What one transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxOutcome {
    /// Not includable (nonce, fee, chain id): no effect.
    Invalid(String),
    /// Applied: its receipt and the accounts it wrote, in write order.
    Applied { receipt: Receipt, writes: Vec<(Address, Account)> },
}

/// Why a transaction cannot be included at all (nonce, fee, chain id), checked against current state.
pub fn validity(tx: &Transaction, chain_id: &str, sender: &Account) -> Result<(), String> {
    if tx.body.chain_id != chain_id {
        return Err(format!("chain id {:?} is not this chain's {:?}", tx.body.chain_id, chain_id));
    }
    if tx.body.nonce != sender.nonce {
        return Err(format!("nonce {} but the account's next nonce is {}", tx.body.nonce, sender.nonce));
    }
    if sender.balance < tx.body.fee {
        return Err(format!("balance {} cannot pay the fee {}", sender.balance, tx.body.fee));
    }
    Ok(())
}

/// Applies one transaction through `acc`; the one place the state-transition rules live.
pub fn apply_tx<A: Accounts>(tx: &Transaction, chain_id: &str, acc: &mut A) -> Result<TxOutcome, ExecError> {
    let from = tx.sender();
    let mut sender = acc.get(&from)?;
    if let Err(reason) = validity(tx, chain_id, &sender) {
        return Ok(TxOutcome::Invalid(reason));
    }
    sender.balance -= tx.body.fee;
    sender.nonce += 1;
    let mut writes = Vec::with_capacity(2);
    let status = match tx.body.payload {
        Payload::Transfer => {
            let (to, amount) = (tx.body.recipient, tx.body.amount);
            if sender.balance < amount {
                ReceiptStatus::Failed(format!(
                    "balance too low: {} after the fee, the transfer needs {amount}",
                    sender.balance
                ))
            } else if to == from {
                ReceiptStatus::Success
            } else {
                let mut recipient = acc.get(&to)?;
                match recipient.balance.checked_add(amount) {
                    Some(credited) => {
                        sender.balance -= amount;
                        recipient.balance = credited;
                        acc.set(to, recipient)?;
                        writes.push((to, recipient));
                        ReceiptStatus::Success
                    }
                    None => ReceiptStatus::Failed("recipient balance would overflow".into()),
                }
            }
        }
    };
    acc.set(from, sender)?;
    writes.push((from, sender));
    Ok(TxOutcome::Applied { receipt: Receipt { tx_hash: tx.hash(), status, fee: tx.body.fee }, writes })
}

/// Account cache over a [`StateView`] holding a block's writes so far.
pub(crate) struct Overlay<'a, V: StateView> {
    view: &'a V,
    accounts: HashMap<Address, Account>,
}

impl<'a, V: StateView> Overlay<'a, V> {
    pub(crate) fn new(view: &'a V) -> Self {
        Overlay { view, accounts: HashMap::new() }
    }

    pub(crate) fn apply_writes(&mut self, writes: &[(Address, Account)]) {
        for (a, acct) in writes {
            self.accounts.insert(*a, *acct);
        }
    }
}

impl<V: StateView> Accounts for Overlay<'_, V> {
    fn get(&mut self, address: &Address) -> Result<Account, ExecError> {
        if let Some(a) = self.accounts.get(address) {
            return Ok(*a);
        }
        let a = self.view.account(address)?;
        self.accounts.insert(*address, a);
        Ok(a)
    }

    fn set(&mut self, address: Address, account: Account) -> Result<(), ExecError> {
        self.accounts.insert(address, account);
        Ok(())
    }
}

/// Moves receipts and transactions into `out` (included, or dropped with the reason in
/// [`Mode::Build`]); hands each applied transaction's writes to `writes`, in order; returns the fees.
pub(crate) fn split_outcomes(
    out: &mut ExecOutput,
    txs: Vec<Transaction>,
    outcomes: Vec<TxOutcome>,
    mode: Mode,
    mut writes: impl FnMut(Vec<(Address, Account)>),
) -> Result<Amount, ExecError> {
    let mut fees: Amount = 0;
    for (index, (tx, outcome)) in txs.into_iter().zip(outcomes).enumerate() {
        match outcome {
            TxOutcome::Invalid(reason) => match mode {
                Mode::Build => out.dropped.push((tx.hash(), reason)),
                Mode::Verify => return Err(ExecError::InvalidTx { index, hash: tx.hash(), reason }),
            },
            TxOutcome::Applied { receipt, writes: w } => {
                writes(w);
                fees = fees.saturating_add(receipt.fee);
                out.receipts.push(receipt);
                out.included.push(tx);
            }
        }
    }
    Ok(fees)
}

/// Turns per-transaction outcomes (in block order) into the block's output: receipts in order, the
/// final value of every written account, the producer's fees, the head key.
pub fn assemble<V: StateView>(
    view: &V,
    ctx: &BlockContext,
    txs: Vec<Transaction>,
    outcomes: Vec<TxOutcome>,
    mode: Mode,
) -> Result<ExecOutput, ExecError> {
    let mut out = ExecOutput::default();
    let mut finals: HashMap<Address, Account> = HashMap::with_capacity(outcomes.len() * 2);
    let fees = split_outcomes(&mut out, txs, outcomes, mode, |writes| {
        for (a, acct) in writes {
            finals.insert(a, acct);
        }
    })?;
    if fees > 0 {
        let mut producer = match finals.get(&ctx.producer) {
            Some(a) => *a,
            None => view.account(&ctx.producer)?,
        };
        producer.balance = producer.balance.saturating_add(fees);
        finals.insert(ctx.producer, producer);
    }
    let mut changes: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(finals.len() + 1);
    changes.extend(
        finals.into_iter().map(|(a, acct)| (account_key(&a), Some(borsh::to_vec(&acct).unwrap_or_default()))),
    );
    changes
        .push((HEAD_KEY.to_vec(), Some(borsh::to_vec(&(ctx.height, ctx.timestamp_ms)).unwrap_or_default())));
    // Keys are distinct, so an unstable sort is deterministic; collecting sorted input bulk-builds the map.
    changes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out.changes = changes.into_iter().collect();
    Ok(out)
}

/// Executes `txs` in order on top of `view`: the sequential reference engine.
pub fn execute_block<V: StateView>(
    view: &V,
    ctx: &BlockContext,
    txs: Vec<Transaction>,
    mode: Mode,
) -> Result<ExecOutput, ExecError> {
    let mut overlay = Overlay::new(view);
    let mut outcomes = Vec::with_capacity(txs.len());
    for tx in &txs {
        outcomes.push(apply_tx(tx, &ctx.chain_id, &mut overlay)?);
    }
    assemble(view, ctx, txs, outcomes, mode)
}

#[cfg(test)]
mod tests;
