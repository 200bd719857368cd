//! Block execution: applies a block's transactions, in order, to the state.
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

use crate::storage::state::{account_key, HEAD_KEY};
use crate::storage::{StateError, StateStore};
use crate::types::{Account, Address, Amount, Hash, Payload, Receipt, ReceiptStatus, Transaction};
use std::collections::{BTreeMap, HashMap};

/// Reads state as of the parent block.
pub trait StateView {
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
}

/// What executing a block produced.
#[derive(Debug, Default)]
pub struct ExecOutput {
    /// Transactions that made it into the block, in order.
    pub included: Vec<Transaction>,
    pub receipts: Vec<Receipt>,
    /// State writes (key → new value, `None` = delete), sorted by key.
    pub changes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Transactions left out in [`Mode::Build`], with the reason.
    pub dropped: Vec<(Hash, String)>,
}

/// Account cache over a [`StateView`] holding this block's writes.
struct Overlay<'a, V: StateView> {
    view: &'a V,
    accounts: HashMap<Address, Account>,
}

impl<V: StateView> Overlay<'_, V> {
    fn get(&mut self, address: &Address) -> Result<Account, StateError> {
        if let Some(a) = self.accounts.get(address) {
            return Ok(*a);
        }
        let a = self.view.account(address)?;
        self.accounts.insert(*address, a);
        Ok(a)
    }

    fn set(&mut self, address: Address, account: Account) {
        self.accounts.insert(address, account);
    }
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

/// Executes `txs` in order on top of `view`.
pub fn execute_block<V: StateView>(
    view: &V,
    ctx: &BlockContext,
    txs: Vec<Transaction>,
    mode: Mode,
) -> Result<ExecOutput, ExecError> {
    let mut overlay = Overlay { view, accounts: HashMap::new() };
    let mut out = ExecOutput::default();
    let mut fees: Amount = 0;
    for (index, tx) in txs.into_iter().enumerate() {
        let hash = tx.hash();
        let from = tx.sender();
        let mut sender = overlay.get(&from)?;
        if let Err(reason) = validity(&tx, &ctx.chain_id, &sender) {
            match mode {
                Mode::Build => {
                    out.dropped.push((hash, reason));
                    continue;
                }
                Mode::Verify => return Err(ExecError::InvalidTx { index, hash, reason }),
            }
        }
        sender.balance -= tx.body.fee;
        sender.nonce += 1;
        fees = fees.saturating_add(tx.body.fee);
        let status = match tx.body.payload {
            Payload::Transfer => {
                transfer(&mut overlay, from, &mut sender, tx.body.recipient, tx.body.amount)?
            }
        };
        overlay.set(from, sender);
        out.receipts.push(Receipt { tx_hash: hash, status, fee: tx.body.fee });
        out.included.push(tx);
    }
    if fees > 0 {
        let mut producer = overlay.get(&ctx.producer)?;
        producer.balance = producer.balance.saturating_add(fees);
        overlay.set(ctx.producer, producer);
    }
    for (address, account) in overlay.accounts {
        out.changes.insert(account_key(&address), Some(borsh::to_vec(&account).unwrap_or_default()));
    }
    out.changes
        .insert(HEAD_KEY.to_vec(), Some(borsh::to_vec(&(ctx.height, ctx.timestamp_ms)).unwrap_or_default()));
    Ok(out)
}

fn transfer<V: StateView>(
    overlay: &mut Overlay<'_, V>,
    from: Address,
    sender: &mut Account,
    to: Address,
    amount: Amount,
) -> Result<ReceiptStatus, StateError> {
    if sender.balance < amount {
        return Ok(ReceiptStatus::Failed(format!(
            "balance too low: {} after the fee, the transfer needs {amount}",
            sender.balance
        )));
    }
    if to == from {
        return Ok(ReceiptStatus::Success);
    }
    let mut recipient = overlay.get(&to)?;
    let Some(credited) = recipient.balance.checked_add(amount) else {
        return Ok(ReceiptStatus::Failed("recipient balance would overflow".into()));
    };
    sender.balance -= amount;
    recipient.balance = credited;
    overlay.set(to, recipient);
    Ok(ReceiptStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::types::{TxBody, ENCODING_VERSION};

    struct MapView(HashMap<Address, Account>);
    impl StateView for MapView {
        fn account(&self, a: &Address) -> Result<Account, StateError> {
            Ok(self.0.get(a).copied().unwrap_or_default())
        }
    }

    fn tx(key: &Keypair, nonce: u64, to: Address, amount: u128, fee: u128) -> Transaction {
        key.sign_tx(TxBody {
            version: ENCODING_VERSION,
            chain_id: "c".into(),
            nonce,
            sender: key.public(),
            recipient: to,
            amount,
            fee,
            payload: Payload::Transfer,
        })
    }

    fn account_in(out: &ExecOutput, a: &Address) -> Account {
        out.changes
            .get(&account_key(a))
            .and_then(|v| v.as_ref())
            .map(|v| borsh::from_slice(v).unwrap())
            .unwrap_or_default()
    }

    #[test]
    fn transfers_fees_and_failures() {
        let alice = Keypair::from_seed("alice");
        let bob = Keypair::from_seed("bob").address();
        let producer = Keypair::from_seed("bp").address();
        let view = MapView([(alice.address(), Account { balance: 100, nonce: 0 })].into());
        let ctx = BlockContext { chain_id: "c".into(), height: 1, timestamp_ms: 5, producer };
        let txs = vec![
            tx(&alice, 0, bob, 50, 1), // ok: alice 49
            tx(&alice, 1, bob, 60, 1), // fails: 48 < 60, pays fee
            tx(&alice, 5, bob, 1, 1),  // bad nonce: dropped
            tx(&alice, 2, bob, 48, 0), // ok: alice 0
        ];
        let out = execute_block(&view, &ctx, txs.clone(), Mode::Build).unwrap();
        assert_eq!(out.included.len(), 3);
        assert_eq!(out.dropped.len(), 1);
        assert_eq!(out.receipts[0].status, ReceiptStatus::Success);
        assert!(matches!(out.receipts[1].status, ReceiptStatus::Failed(_)));
        assert_eq!(account_in(&out, &alice.address()), Account { balance: 0, nonce: 3 });
        assert_eq!(account_in(&out, &bob), Account { balance: 98, nonce: 0 });
        assert_eq!(account_in(&out, &producer), Account { balance: 2, nonce: 0 });
        let err = execute_block(&view, &ctx, txs, Mode::Verify).unwrap_err();
        assert!(matches!(err, ExecError::InvalidTx { index: 2, .. }));
    }
}
