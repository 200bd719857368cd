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
//! - every block writes [`HEAD_KEY`](aergo_storage::state::HEAD_KEY) (height, timestamp), so every
//!   height has a state root of its own.
//!
//! Two engines give byte-identical results: [`execute_block`] (sequential, the reference) and
//! [`parallel::ParallelExecutor`] (the deterministic transaction tree, [`dtt`], run on pinned worker
//! threads). Both go through [`apply_tx`], and both turn per-transaction outcomes into one
//! [`ExecOutput`] with [`assemble`].
//!
//! Also here: staking, voting and producer registration ([`governance`]), contract deploy and call
//! ([`contract`], through the `aergo-sql` engine over the block's state) and read-only contract
//! queries at any height ([`query`]). This crate reads the state through [`StateView`] and returns
//! changes; it never commits, never touches the block log, the pool or the network.

pub mod access;
pub mod affinity;
pub mod branches;
pub mod contract;
pub mod dtt;
pub mod governance;
pub mod members;
pub mod merge;
pub mod parallel;
pub mod query;

pub use aergo_config::genesis::StakingParams;
use aergo_primitives::types::{Account, Address, Amount, Hash, Receipt, ReceiptStatus, Transaction};
use aergo_storage::state::{account_key, decode_account, Entries, HEAD_KEY};
use aergo_storage::{ChangeSet, StateError, StateReader, StateStore};
use std::collections::{BTreeMap, HashMap};

/// Reads state as of the parent block. Shared by worker threads, hence `Sync`.
pub trait StateView: Sync {
    fn account(&self, address: &Address) -> Result<Account, StateError>;
    /// Any other state key (staking and voting records, contract rows).
    fn raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    /// Every contract key under `prefix`, in key order (see [`StateStore::scan_at`]).
    fn scan(&self, _prefix: &[u8]) -> Result<Entries, StateError> {
        Err(StateError::Tree("this state view cannot list contract keys".into()))
    }
    /// A reader for one thread's many reads (the sequential engine's, or one worker's): it
    /// answers as [`Self::account`] and [`Self::raw`] do, having set up once what each of them
    /// sets up anew. By default it calls them.
    fn reader(&self) -> Box<dyn StateRead + '_> {
        Box::new(EachRead(self))
    }
}

/// Reads by one thread through [`StateView::reader`].
pub trait StateRead {
    fn account(&mut self, address: &Address) -> Result<Account, StateError>;
    fn raw(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
}

/// A view's reads one by one: the reader of a view with nothing to set up.
struct EachRead<'a, V: ?Sized>(&'a V);

impl<V: StateView + ?Sized> StateRead for EachRead<'_, V> {
    fn account(&mut self, address: &Address) -> Result<Account, StateError> {
        self.0.account(address)
    }
    fn raw(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.0.raw(key)
    }
}

/// The newest of `layers` (oldest first) that holds `key`: `Some(value)`, `None` if none does.
fn in_layers(layers: &[&ChangeSet], key: &[u8]) -> Option<Option<Vec<u8>>> {
    layers.iter().rev().find_map(|layer| layer.get(key).cloned())
}

/// Reads through one [`StateReader`] (one database iterator), after the changes of blocks not
/// committed yet: the reader of [`StateAt`] and [`StateWithPending`].
struct StoreReader<'a> {
    layers: &'a [&'a ChangeSet],
    store: StateReader<'a>,
}

impl StateRead for StoreReader<'_> {
    fn account(&mut self, address: &Address) -> Result<Account, StateError> {
        decode_account(self.raw(&account_key(address))?)
    }
    fn raw(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match in_layers(self.layers, key) {
            Some(v) => Ok(v),
            None => self.store.get(key),
        }
    }
}

/// A [`StoreReader`] at `height` under `layers`; when the store cannot give one, `view`'s reads
/// one by one (which report what is wrong).
fn store_reader<'a, V: StateView>(
    view: &'a V,
    store: &'a StateStore,
    height: u64,
    layers: &'a [&'a ChangeSet],
) -> Box<dyn StateRead + 'a> {
    match store.reader_at(height) {
        Ok(store) => Box::new(StoreReader { layers, store }),
        Err(_) => Box::new(EachRead(view)),
    }
}

impl StateView for StateStore {
    fn account(&self, address: &Address) -> Result<Account, StateError> {
        StateStore::account(self, address)
    }

    fn raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let head = self.head()?.map_or(0, |h| h.height);
        self.get_at(key, head)
    }

    fn scan(&self, prefix: &[u8]) -> Result<Entries, StateError> {
        let head = self.head()?.map_or(0, |h| h.height);
        self.scan_at(prefix, head)
    }
}

/// The state as of one height, read without looking the head up on every read: a block's execution
/// reads its parent's state thousands of times ([`StateStore`]'s own view pays a head lookup per
/// read).
#[derive(Clone, Copy)]
pub struct StateAt<'a> {
    pub store: &'a StateStore,
    pub height: u64,
}

impl StateView for StateAt<'_> {
    fn account(&self, address: &Address) -> Result<Account, StateError> {
        decode_account(self.store.get_at(&account_key(address), self.height)?)
    }

    fn raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.store.get_at(key, self.height)
    }

    fn scan(&self, prefix: &[u8]) -> Result<Entries, StateError> {
        self.store.scan_at(prefix, self.height)
    }

    fn reader(&self) -> Box<dyn StateRead + '_> {
        store_reader(self, self.store, self.height, &[])
    }
}

/// The state after blocks that are executed but still in the commit stage: their changes
/// (`layers`, oldest first) over the store at the last committed `height`. The commit stage writes
/// those blocks meanwhile; reads of the store are pinned to `height`, so they see none of it.
pub struct StateWithPending<'a> {
    pub store: &'a StateStore,
    pub height: u64,
    pub layers: Vec<&'a ChangeSet>,
}

impl StateView for StateWithPending<'_> {
    fn account(&self, address: &Address) -> Result<Account, StateError> {
        decode_account(self.raw(&account_key(address))?)
    }

    fn raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match in_layers(&self.layers, key) {
            Some(v) => Ok(v),
            None => self.store.get_at(key, self.height),
        }
    }

    fn reader(&self) -> Box<dyn StateRead + '_> {
        store_reader(self, self.store, self.height, &self.layers)
    }

    fn scan(&self, prefix: &[u8]) -> Result<Entries, StateError> {
        let mut entries = self.store.scan_at(prefix, self.height)?;
        for layer in &self.layers {
            let mine = layer.with_prefix(prefix);
            entries = aergo_sql::store::merge(entries, mine.map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(entries)
    }
}

/// The block being executed.
#[derive(Clone, Debug)]
pub struct BlockContext {
    pub chain_id: String,
    /// The branch the block is on (`main`, or a branch's name: `docs/branches.md`).
    pub branch: String,
    pub height: u64,
    pub timestamp_ms: u64,
    pub producer: Address,
    pub staking: StakingParams,
    /// Contract calls read `ORDER BY` from indexes from this height (`[consensus]
    /// sql_ordered_scans_height`).
    pub sql_ordered_scans_height: u64,
    /// Running a merge's replayed transactions (`merge`): `branch` is then the source's, and a
    /// transaction that would fail, or a system transaction, is left out with the reason
    /// instead of failing (so it has no effect on the target).
    pub replay: bool,
}

impl BlockContext {
    /// Whether this block's contract calls use ordered scans.
    pub fn sql_ordered_scans(&self) -> bool {
        self.height >= self.sql_ordered_scans_height
    }
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
    Undeclared(String),
    /// The executor's own bookkeeping failed (an outcome missing for a transaction, a worker that
    /// died before the tree was built): a bug or a lost thread, never the transactions' fault.
    #[error("internal execution error: {0}")]
    Internal(String),
}

/// What executing a block produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Transactions that made it into the block, in order.
    pub included: Vec<Transaction>,
    pub receipts: Vec<Receipt>,
    /// State writes (key → new value, `None` = delete), sorted by key.
    pub changes: ChangeSet,
    /// Transactions left out in [`Mode::Build`], with the reason.
    pub dropped: Vec<(Hash, String)>,
}

/// Account reads and writes as one transaction sees them.
pub trait Accounts {
    fn get(&mut self, address: &Address) -> Result<Account, ExecError>;
    fn set(&mut self, address: Address, account: Account) -> Result<(), ExecError>;
    /// Other keys: system keys (staking, voting) and contract state.
    fn get_raw(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError>;
    fn set_raw(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), ExecError>;
    /// Contract keys under `prefix` in key order, with this block's writes so far.
    fn scan_raw(&mut self, prefix: &[u8]) -> Result<Entries, ExecError>;
    /// The contract at `address`, compiled. By default its script is read with [`Self::get_raw`]
    /// and found in the process's cache by hash; a view that already holds the block's contracts
    /// answers from them (a contract's script never changes once deployed).
    fn contract(&mut self, address: &Address) -> Result<contract::Found, ExecError> {
        contract::load(self, address)
    }
}

/// Records the system-key writes a transaction makes through an [`Accounts`].
struct Recording<'a, A: Accounts> {
    inner: &'a mut A,
    raw: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl<A: Accounts> Accounts for Recording<'_, A> {
    fn get(&mut self, address: &Address) -> Result<Account, ExecError> {
        self.inner.get(address)
    }
    fn set(&mut self, address: Address, account: Account) -> Result<(), ExecError> {
        self.inner.set(address, account)
    }
    fn get_raw(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError> {
        self.inner.get_raw(key)
    }
    fn set_raw(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), ExecError> {
        self.raw.push((key.clone(), value.clone()));
        self.inner.set_raw(key, value)
    }
    fn scan_raw(&mut self, prefix: &[u8]) -> Result<Entries, ExecError> {
        self.inner.scan_raw(prefix)
    }
    fn contract(&mut self, address: &Address) -> Result<contract::Found, ExecError> {
        self.inner.contract(address)
    }
}

/// What one transaction did.
// `Applied` is nearly every outcome and carries its writes inline; boxing it would bring back
// the allocation per transaction that inline writes save the parallel executor's workers.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxOutcome {
    /// Not includable (nonce, fee, chain id): no effect.
    Invalid(String),
    /// Applied: its receipt, the accounts it wrote, in write order, and the other keys it wrote.
    Applied { receipt: Receipt, writes: AccountWrites, system: Vec<(Vec<u8>, Option<Vec<u8>>)> },
}

/// The accounts one transaction wrote, in write order: inline, as a transaction writes one or
/// two (the parallel executor's workers then allocate nothing per transaction).
pub type AccountWrites = smallvec::SmallVec<[(Address, Account); 2]>;

/// Why a transaction cannot be included at all. A producer leaves it out with this reason; a block
/// holding one is refused with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalidity {
    #[error("chain id {got:?} is not this chain's {chain:?}")]
    WrongChain { got: String, chain: String },
    #[error("nonce {got} but the account's next nonce is {next}")]
    WrongNonce { got: u64, next: u64 },
    #[error("balance {balance} cannot pay the fee {fee}")]
    CannotPayFee { balance: Amount, fee: Amount },
    #[error("transaction is for branch {got:?}, this block is on {branch:?}")]
    WrongBranch { got: String, branch: String },
}

impl Invalidity {
    /// A stable machine-readable name.
    pub fn reason(&self) -> &'static str {
        match self {
            Invalidity::WrongChain { .. } => "wrong_chain_id",
            Invalidity::WrongNonce { .. } => "wrong_nonce",
            Invalidity::CannotPayFee { .. } => "cannot_pay_fee",
            Invalidity::WrongBranch { .. } => "wrong_branch",
        }
    }
}

/// Why a transaction cannot be included at all (chain id, branch, nonce, fee), checked against
/// current state.
pub fn validity(tx: &Transaction, chain_id: &str, branch: &str, sender: &Account) -> Result<(), Invalidity> {
    if tx.body.chain_id != chain_id {
        return Err(Invalidity::WrongChain { got: tx.body.chain_id.clone(), chain: chain_id.to_string() });
    }
    // A transaction runs on the branch it names and nowhere else (`docs/branches.md`), so it
    // cannot be replayed from one branch onto another.
    if tx.body.branch != branch {
        return Err(Invalidity::WrongBranch { got: tx.body.branch.clone(), branch: branch.into() });
    }
    if tx.body.nonce != sender.nonce {
        return Err(Invalidity::WrongNonce { got: tx.body.nonce, next: sender.nonce });
    }
    if sender.balance < tx.body.fee {
        return Err(Invalidity::CannotPayFee { balance: sender.balance, fee: tx.body.fee });
    }
    Ok(())
}

/// Applies one transaction through `acc`; the one place the state-transition rules live.
pub fn apply_tx<A: Accounts>(
    tx: &Transaction,
    ctx: &BlockContext,
    acc: &mut A,
) -> Result<TxOutcome, ExecError> {
    let from = tx.sender();
    let mut sender = acc.get(&from)?;
    if let Err(invalid) = validity(tx, &ctx.chain_id, &ctx.branch, &sender) {
        return Ok(TxOutcome::Invalid(invalid.to_string()));
    }
    if ctx.replay && tx.body.payload.is_governance() {
        return Ok(TxOutcome::Invalid(format!(
            "a {} transaction is not replayed by a merge",
            tx.body.payload.kind()
        )));
    }
    sender.balance -= tx.body.fee;
    sender.nonce += 1;
    let mut fee = tx.body.fee;
    let mut writes = AccountWrites::new();
    let mut system = Vec::new();
    let status = match tx.body.payload {
        _ if tx.body.payload.is_contract() => {
            let mut rec = Recording { inner: acc, raw: Vec::new() };
            let applied = contract::apply(tx, ctx, &mut sender, &mut rec)?;
            system = rec.raw;
            // The fee is the gas limit: the sender pays the gas used and gets the rest back.
            fee = (applied.gas_used as Amount).min(tx.body.fee);
            sender.balance = sender.balance.saturating_add(tx.body.fee - fee);
            writes.extend(applied.accounts);
            applied.status
        }
        _ if tx.body.payload.is_governance() => {
            let rules = governance::Rules {
                chain_id: &ctx.chain_id,
                branch: &ctx.branch,
                height: ctx.height,
                unstake_lock_blocks: ctx.staking.unstake_lock_blocks,
                max_votes: ctx.staking.max_votes,
            };
            let mut rec = Recording { inner: acc, raw: Vec::new() };
            let result = governance::apply(tx, &mut sender, rules, &mut rec)?;
            system = rec.raw;
            match result {
                Ok(()) => ReceiptStatus::Success,
                Err(failure) => ReceiptStatus::Failed(failure.to_string()),
            }
        }
        _ => {
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
    if ctx.replay {
        if let Some(why) = status.error() {
            // Nothing of it was written yet: the accounts and rows of a failed transaction are
            // never set, and the sender's fee and nonce are set just below.
            return Ok(TxOutcome::Invalid(why.to_string()));
        }
    }
    acc.set(from, sender)?;
    writes.push((from, sender));
    Ok(TxOutcome::Applied { receipt: Receipt { tx_hash: tx.hash(), status, fee }, writes, system })
}

/// Account cache over a [`StateView`] holding a block's writes so far.
pub(crate) struct Overlay<'a, V: StateView> {
    view: &'a V,
    reader: Box<dyn StateRead + 'a>,
    accounts: dtt::FastMap<Address, Account>,
    /// Other keys read or written so far; ordered, so that contract scans can merge them.
    raw: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Contracts called so far, compiled (a deployed script never changes, so each is read and
    /// hashed once per block rather than once per call).
    contracts: HashMap<Address, std::sync::Arc<aergo_sql::Compiled>>,
}

impl<'a, V: StateView> Overlay<'a, V> {
    pub(crate) fn new(view: &'a V) -> Self {
        Overlay::with_capacity(view, 0)
    }

    /// An overlay with room for `accounts` accounts: a block's transactions touch about two each,
    /// and growing the map as they run rehashed it several times into fresh pages.
    pub(crate) fn with_capacity(view: &'a V, accounts: usize) -> Self {
        Overlay {
            view,
            reader: view.reader(),
            accounts: dtt::FastMap::with_capacity_and_hasher(accounts, Default::default()),
            raw: BTreeMap::new(),
            contracts: HashMap::new(),
        }
    }

    pub(crate) fn apply_writes(
        &mut self,
        writes: &[(Address, Account)],
        system: &[(Vec<u8>, Option<Vec<u8>>)],
    ) {
        for (a, acct) in writes {
            self.accounts.insert(*a, *acct);
        }
        for (k, v) in system {
            self.raw.insert(k.clone(), v.clone());
        }
    }
}

impl<V: StateView> Accounts for Overlay<'_, V> {
    fn get(&mut self, address: &Address) -> Result<Account, ExecError> {
        if let Some(a) = self.accounts.get(address) {
            return Ok(*a);
        }
        let a = self.reader.account(address)?;
        self.accounts.insert(*address, a);
        Ok(a)
    }

    fn set(&mut self, address: Address, account: Account) -> Result<(), ExecError> {
        self.accounts.insert(address, account);
        Ok(())
    }

    fn get_raw(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError> {
        if let Some(v) = self.raw.get(key) {
            return Ok(v.clone());
        }
        let v = self.reader.raw(key)?;
        self.raw.insert(key.to_vec(), v.clone());
        Ok(v)
    }

    fn set_raw(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), ExecError> {
        self.raw.insert(key, value);
        Ok(())
    }

    fn scan_raw(&mut self, prefix: &[u8]) -> Result<Entries, ExecError> {
        let base = self.view.scan(prefix)?;
        let mine = self.raw.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix));
        Ok(aergo_sql::store::merge(base, mine.map(|(k, v)| (k.clone(), v.clone()))))
    }

    fn contract(&mut self, address: &Address) -> Result<contract::Found, ExecError> {
        if let Some(c) = self.contracts.get(address) {
            return Ok(contract::Found::Ready(c.clone()));
        }
        let found = contract::load(self, address)?;
        if let contract::Found::Ready(c) = &found {
            self.contracts.insert(*address, c.clone());
        }
        Ok(found)
    }
}

/// Takes a block's outcomes one by one, in block order (`outcome(i, tx)` gives transaction `i`'s):
/// each receipt into the output, each transaction into `included` (or, invalid, into `dropped`
/// with the reason in [`Mode::Build`]; in [`Mode::Verify`] an invalid transaction refuses the
/// block); hands each applied transaction's writes to `writes`. Returns the output and the fees.
///
/// The outcomes are not gathered into a list first: the sequential engine streams them as it
/// executes, so an outcome can be as large as its inline writes without a block's worth of them
/// going through memory twice. When every transaction applied (as in every block a follower
/// accepts) the block's transactions become `included` as they are: moving them one by one is
/// megabytes of copying into fresh pages.
pub(crate) fn collect_outcomes(
    txs: Vec<Transaction>,
    mode: Mode,
    mut outcome: impl FnMut(usize, &Transaction) -> Result<TxOutcome, ExecError>,
    mut writes: impl FnMut(AccountWrites, Vec<(Vec<u8>, Option<Vec<u8>>)>),
) -> Result<(ExecOutput, Amount), ExecError> {
    let mut out = ExecOutput::default();
    let mut fees: Amount = 0;
    let mut left_out = Vec::new();
    out.receipts.reserve(txs.len());
    for (index, tx) in txs.iter().enumerate() {
        match outcome(index, tx)? {
            TxOutcome::Invalid(reason) => match mode {
                Mode::Build => {
                    out.dropped.push((tx.hash(), reason));
                    left_out.push(index);
                }
                Mode::Verify => return Err(ExecError::InvalidTx { index, hash: tx.hash(), reason }),
            },
            TxOutcome::Applied { receipt, writes: w, system } => {
                writes(w, system);
                fees = fees.saturating_add(receipt.fee);
                out.receipts.push(receipt);
            }
        }
    }
    out.included = if left_out.is_empty() {
        txs
    } else {
        let mut left_out = left_out.into_iter().peekable();
        let mut included = Vec::with_capacity(txs.len());
        for (index, tx) in txs.into_iter().enumerate() {
            if left_out.next_if_eq(&index).is_none() {
                included.push(tx);
            }
        }
        included
    };
    Ok((out, fees))
}

/// Executes or takes a block's outcomes ([`collect_outcomes`]) and turns them into the block's
/// output: receipts in order, the final value of every written account, the producer's fees,
/// the head key.
fn assemble_with<V: StateView>(
    view: &V,
    ctx: &BlockContext,
    txs: Vec<Transaction>,
    mode: Mode,
    outcome: impl FnMut(usize, &Transaction) -> Result<TxOutcome, ExecError>,
) -> Result<ExecOutput, ExecError> {
    let mut finals: dtt::FastMap<Address, Account> =
        dtt::FastMap::with_capacity_and_hasher(txs.len() * 2, Default::default());
    let mut system_finals: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
    let (mut out, fees) = collect_outcomes(txs, mode, outcome, |writes, system| {
        for (a, acct) in writes {
            finals.insert(a, acct);
        }
        system_finals.extend(system);
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
        finals
            .into_iter()
            .map(|(a, acct)| (account_key(&a), Some(aergo_primitives::types::to_vec_exact(&acct)))),
    );
    changes.extend(system_finals);
    changes.push((
        HEAD_KEY.to_vec(),
        Some(aergo_primitives::types::to_vec_exact(&(ctx.height, ctx.timestamp_ms))),
    ));
    out.changes = ChangeSet::from_unsorted(changes);
    Ok(out)
}

/// Turns per-transaction outcomes (in block order) into the block's output, as
/// [`execute_block`] would have.
pub fn assemble<V: StateView>(
    view: &V,
    ctx: &BlockContext,
    txs: Vec<Transaction>,
    outcomes: Vec<TxOutcome>,
    mode: Mode,
) -> Result<ExecOutput, ExecError> {
    let mut outcomes = outcomes.into_iter();
    assemble_with(view, ctx, txs, mode, |index, _| {
        outcomes.next().ok_or(ExecError::Internal(format!("no outcome for transaction {index}")))
    })
}

/// Executes `txs` in order on top of `view`: the sequential reference engine.
pub fn execute_block<V: StateView>(
    view: &V,
    ctx: &BlockContext,
    txs: Vec<Transaction>,
    mode: Mode,
) -> Result<ExecOutput, ExecError> {
    let mut overlay = Overlay::with_capacity(view, txs.len() * 2);
    assemble_with(view, ctx, txs, mode, |_, tx| apply_tx(tx, ctx, &mut overlay))
}

#[cfg(test)]
mod tests;
