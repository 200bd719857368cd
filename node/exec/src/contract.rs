//! Contract transactions: `deploy {sql}` and `call {contract, function, args}`, run by the AergoSQL
//! engine ([`aergo_sql`]) on the block's state.
//!
//! Gas: a contract transaction's fee is its gas limit (1 unit per gas, capped at
//! [`gas::MAX_CALL_GAS`]); the sender pays the gas used and gets the rest back. A call that fails —
//! RAISE, out of gas, a runtime or constraint error, a refused script — changes nothing (rows,
//! the amount sent, native transfers) except the fee for the gas used and the nonce.
//!
//! The contract's writes and account changes are held in a [`ContractHost`] and handed to the
//! block's state only when the call succeeds. A failure of the state itself (a database error) is
//! not the contract's: it aborts the block like any other state error.

use super::{Accounts, BlockContext, ExecError};
use aergo_primitives::types::{
    Account, Address, Amount, CallResult, Event, Payload, ReceiptStatus, Transaction,
};
use aergo_sql::gas::{self, Gas};
use aergo_sql::interp::Entries;
use aergo_sql::store::{code_key, contract_address, merge};
use aergo_sql::{Compiled, ContractCache, Engine, Host, SqlError, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

/// Largest result a receipt keeps (encoded bytes); larger results are read with `query`.
pub const MAX_RECEIPT_RESULT: usize = 4096;

pub(crate) fn cache() -> &'static ContractCache {
    static CACHE: OnceLock<ContractCache> = OnceLock::new();
    CACHE.get_or_init(ContractCache::default)
}

/// The contract's view of the block state during one call; nothing reaches the block until
/// [`ContractHost::commit`].
struct ContractHost<'a, A: Accounts> {
    acc: &'a mut A,
    contract: Address,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    accounts: HashMap<Address, Account>,
    /// A state failure met during the call (reported as such, never as the contract's error).
    fault: Option<ExecError>,
    /// The events the call emitted, in order.
    events: Vec<Event>,
    /// Under a savepoint: the writes and accounts before it (a call's are a handful), and the
    /// number of events.
    saved: Option<(aergo_sql::store::Writes, HashMap<Address, Account>, usize)>,
}

impl<'a, A: Accounts> ContractHost<'a, A> {
    fn new(acc: &'a mut A, contract: Address, sender: Address, sender_account: Account) -> Self {
        let mut accounts = HashMap::new();
        accounts.insert(sender, sender_account);
        ContractHost {
            acc,
            contract,
            writes: BTreeMap::new(),
            accounts,
            fault: None,
            events: Vec::new(),
            saved: None,
        }
    }

    fn fail(&mut self, e: ExecError) -> SqlError {
        let msg = e.to_string();
        self.fault.get_or_insert(e);
        SqlError::Storage(msg)
    }

    fn account(&mut self, a: &Address) -> Result<Account, SqlError> {
        if let Some(x) = self.accounts.get(a) {
            return Ok(*x);
        }
        match self.acc.get(a) {
            Ok(x) => {
                self.accounts.insert(*a, x);
                Ok(x)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    fn move_native(
        &mut self,
        from: Address,
        to: Address,
        amount: Amount,
        what: &str,
    ) -> Result<(), SqlError> {
        if amount == 0 || from == to {
            return Ok(());
        }
        let mut f = self.account(&from)?;
        if f.balance < amount {
            return Err(SqlError::Runtime(format!("{what}: balance {} is below {amount}", f.balance)));
        }
        let mut t = self.account(&to)?;
        t.balance = t
            .balance
            .checked_add(amount)
            .ok_or_else(|| SqlError::Runtime(format!("{what}: recipient balance would overflow")))?;
        f.balance -= amount;
        self.accounts.insert(from, f);
        self.accounts.insert(to, t);
        Ok(())
    }

    /// Hands the writes to the block; returns the sender's account and the other accounts written.
    fn commit(self, sender: &Address) -> Result<(Account, Vec<(Address, Account)>), ExecError> {
        for (k, v) in self.writes {
            self.acc.set_raw(k, v)?;
        }
        let mut sender_account = None;
        let mut others = Vec::new();
        let mut accounts: Vec<(Address, Account)> = self.accounts.into_iter().collect();
        accounts.sort_unstable_by_key(|(a, _)| *a);
        for (a, acct) in accounts {
            if a == *sender {
                sender_account = Some(acct);
            } else {
                self.acc.set(a, acct)?;
                others.push((a, acct));
            }
        }
        Ok((sender_account.unwrap_or_default(), others))
    }
}

impl<A: Accounts> Host for ContractHost<'_, A> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, SqlError> {
        if let Some(v) = self.writes.get(key) {
            return Ok(v.clone());
        }
        self.acc.get_raw(key).map_err(|e| self.fail(e))
    }

    fn put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), SqlError> {
        self.writes.insert(key, value);
        Ok(())
    }

    fn scan(&mut self, prefix: &[u8]) -> Result<Entries, SqlError> {
        let base = self.acc.scan_raw(prefix).map_err(|e| self.fail(e))?;
        let mine = self.writes.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix));
        Ok(merge(base, mine.map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>()))
    }

    fn transfer_native(&mut self, to: &str, amount: u128) -> Result<(), SqlError> {
        let to =
            Address::parse(to).map_err(|e| SqlError::Runtime(format!("transfer_native to {to:?}: {e}")))?;
        self.move_native(self.contract, to, amount, "transfer_native")
    }

    fn emit(&mut self, name: &str, args: Vec<Value>) -> Result<(), SqlError> {
        self.events.push(Event { contract: self.contract, name: name.to_string(), args });
        Ok(())
    }

    fn savepoint(&mut self) -> bool {
        if self.saved.is_some() {
            return false;
        }
        self.saved = Some((self.writes.clone(), self.accounts.clone(), self.events.len()));
        true
    }

    fn rollback(&mut self) {
        if let Some((writes, accounts, events)) = self.saved.take() {
            self.writes = writes;
            self.accounts = accounts;
            self.events.truncate(events);
        }
    }

    fn release(&mut self) {
        self.saved = None;
    }
}

/// What a contract transaction did: its status, the gas it used, the accounts it wrote besides the
/// sender. The sender's account (fee taken) is updated in place, less the value sent.
pub struct Applied {
    pub status: ReceiptStatus,
    pub gas_used: u64,
    pub accounts: Vec<(Address, Account)>,
}

/// Runs a deploy or call for `tx`, whose sender (fee and nonce already taken) is `sender`.
pub fn apply<A: Accounts>(
    tx: &Transaction,
    ctx: &BlockContext,
    sender: &mut Account,
    acc: &mut A,
) -> Result<Applied, ExecError> {
    let from = tx.sender();
    let limit = u64::try_from(tx.body.fee).unwrap_or(u64::MAX);
    let mut gas = Gas::new(limit);
    let failed = |gas: &Gas, e: String| Applied {
        status: ReceiptStatus::Failed(e),
        gas_used: gas.used,
        accounts: Vec::new(),
    };
    let (contract, run): (Address, Run<'_>) = match &tx.body.payload {
        Payload::Deploy { sql } => {
            let addr = contract_address(&from, tx.body.nonce);
            if let Err(e) = gas.charge(gas::CALL + gas::DEPLOY_BYTE * sql.len() as u64) {
                return Ok(failed(&gas, e.to_string()));
            }
            if acc.get_raw(&code_key(&addr))?.is_some() {
                return Ok(failed(&gas, format!("a contract already exists at {addr}")));
            }
            (addr, Run::Construct(sql))
        }
        Payload::Call { contract, function, args } => match acc.contract(contract)? {
            Found::Missing => {
                gas.charge(gas::CALL.min(gas.limit)).ok();
                return Ok(failed(&gas, format!("no contract at {contract}")));
            }
            Found::Refused(e) => return Ok(failed(&gas, format!("contract refused: {e}"))),
            Found::Ready(c) => (*contract, Run::Call(c, function, args)),
        },
        _ => return Ok(failed(&gas, "not a contract transaction".into())),
    };
    let (compiled, constructor) = match &run {
        // Deploy: checked and JIT-compiled now, and kept for the calls that follow.
        Run::Construct(sql) => match aergo_sql::compile(sql) {
            Ok(c) => {
                let compiled = Arc::new(aergo_sql::Compiled::new(c.contract));
                cache().put(sql, compiled.clone());
                (compiled, c.constructor)
            }
            Err(e) => return Ok(failed(&gas, format!("contract refused: {e}"))),
        },
        Run::Call(c, ..) => (c.clone(), Vec::new()),
    };
    let cctx = aergo_sql::CallCtx {
        sender: from.to_string(),
        self_address: contract.to_string(),
        height: ctx.height,
        time_ms: ctx.timestamp_ms,
        tx_hash: tx.hash().to_hex(),
        value: tx.body.amount,
    };
    let mut host = ContractHost::new(acc, contract, from, *sender);
    if let Run::Construct(sql) = &run {
        host.put(code_key(&contract), Some(sql.as_bytes().to_vec())).ok();
    }
    let outcome = match host.move_native(from, contract, tx.body.amount, "the amount sent with the call") {
        Err(e) => Err(e),
        Ok(()) => {
            let mut engine =
                Engine::new(compiled.engine(aergo_sql::default_engine()), &contract, &mut host, &cctx, gas)
                    .ordered_scans(ctx.sql_ordered_scans());
            let r = match &run {
                Run::Construct(_) => engine.construct(&constructor).map(|()| None),
                Run::Call(_, function, args) => engine.call(function, args.to_vec()).map(Some),
            };
            gas = engine.gas;
            r
        }
    };
    if let Some(fault) = host.fault.take() {
        return Err(fault);
    }
    // A successful call's events go with its receipt; a failed call's too, marked reverted.
    let events = std::mem::take(&mut host.events);
    match outcome {
        Ok(result) => {
            let (s, accounts) = host.commit(&from)?;
            *sender = s;
            let status = match result {
                Some(r) if !r.columns.is_empty() => {
                    let res = CallResult { columns: r.columns, rows: r.rows };
                    if borsh::to_vec(&res).map_or(usize::MAX, |b| b.len()) <= MAX_RECEIPT_RESULT {
                        ReceiptStatus::Returned(res)
                    } else {
                        ReceiptStatus::Success
                    }
                }
                _ => ReceiptStatus::Success,
            };
            Ok(Applied { status: status.with_events(events), gas_used: gas.used, accounts })
        }
        Err(e) => {
            let applied = failed(&gas, e.to_string());
            Ok(Applied { status: applied.status.with_events(events), ..applied })
        }
    }
}

enum Run<'t> {
    Construct(&'t str),
    Call(Arc<Compiled>, &'t String, &'t Vec<Value>),
}

/// A contract as a call finds it in the state.
pub enum Found {
    Missing,
    /// Its script no longer passes the checker (it did at deploy): every call fails, with why.
    Refused(SqlError),
    Ready(Arc<Compiled>),
}

/// Reads the script at `contract` through `acc` and compiles it through the process's cache (by
/// code hash: a script is checked and compiled once, then each call hashes it to find it).
pub fn load<A: Accounts + ?Sized>(acc: &mut A, contract: &Address) -> Result<Found, ExecError> {
    let Some(code) = acc.get_raw(&code_key(contract))? else { return Ok(Found::Missing) };
    let code = String::from_utf8(code).map_err(|_| {
        ExecError::State(aergo_storage::StateError::Decode {
            what: "contract code",
            reason: "not UTF-8".into(),
        })
    })?;
    Ok(match cache().get(&code) {
        Ok(c) => Found::Ready(c),
        Err(e) => Found::Refused(e),
    })
}
