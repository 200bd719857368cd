//! Access sets: what each transaction may read and write, declared before it runs.
//!
//! - A transfer touches its sender and its recipient (both read and written).
//! - A contract call touches its sender, the contract's account when it sends coins with the call,
//!   and the contract state AergoSQL's analysis reports for the function
//!   ([`aergo_sql::access`]): single rows where the primary key follows from the arguments or
//!   `sender()` (`balances[owner = sender()]`), whole tables otherwise. The contract's code is read
//!   by every call. A deploy, or a call whose contract or function is not in the parent state (a
//!   contract deployed earlier in the same block, a missing function), takes the whole contract.
//! - Stake, unstake, vote, register_bp and report_equivocation touch their sender's account and
//!   the governance keys ([`super::governance::is_system_key`]): `stake/<sender>` and
//!   `vote/<sender>`, but also the `cand/<key>` records whose votes they move and the
//!   `sys/candidates` and `sys/jailed` lists, which depend on what earlier ones in the block did.
//!   They hold one exclusive *system* resource, which orders them among themselves and leaves them
//!   independent of every other transaction that does not share an account with them.
//! - A function that moves native coins with `transfer_native` pays an account known only while
//!   it runs: such a call is *opaque*, and a block holding one runs in order.
//!
//! Contract state is scheduled at three levels, like a lock hierarchy: the contract, its tables and
//! their rows. A row is held exclusively and its table and contract shared; a whole table exclusively
//! and its contract shared; a whole contract exclusively. Two calls conflict when they hold the
//! same resource and one of them holds it exclusively ([`super::dtt`]).
//!
//! The parallel executor trusts the declaration for scheduling and checks every access during
//! execution against it ([`AccessSet::allows_account`], [`AccessSet::allows_key`]): anything
//! outside the set is caught and the rest of the block is re-executed in order.

use aergo_primitives::types::{Address, Payload, Transaction};
use aergo_sql::access::{call_keys, TableAccess};
use aergo_sql::store::{code_key, SQL_PREFIX};
use aergo_sql::{Compiled, Value};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;

/// A transaction's part of one contract's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContractAccess {
    pub contract: Address,
    /// The whole contract, exclusively.
    pub whole: bool,
    /// Whole tables (ids), exclusively.
    pub tables: SmallVec<[u8; 2]>,
    /// Single rows: table id and encoded primary key, exclusively.
    pub rows: SmallVec<[(u8, Vec<u8>); 2]>,
    /// The table of each index id, to check index entries against rows and tables.
    pub index_tables: Arc<[u8]>,
}

/// The accounts and contract state a transaction may touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessSet {
    /// Accounts, each read and written. Inline for the common case of two, so building a block's
    /// transfer sets allocates nothing per transaction.
    pub accounts: SmallVec<[Address; 2]>,
    pub contract: Option<Box<ContractAccess>>,
    /// The governance keys, exclusively (the system resource).
    pub system: bool,
    /// Cannot be declared before it runs: the block runs in order.
    pub opaque: bool,
}

/// How a contract key is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyUse {
    Read,
    Write,
    /// Listing every key under a prefix.
    Scan,
}

/// Bytes before a contract key's kind byte: `sql/` + address + `/`.
const CONTRACT_KEY_HEAD: usize = 4 + 20 + 1;

/// The resource id of the governance keys. Contract resource ids are hashes: one equal to this
/// would only add a dependency.
const SYSTEM_RESOURCE: u64 = u64::from_be_bytes(*b"aergosys");

impl AccessSet {
    pub fn accounts(accounts: SmallVec<[Address; 2]>) -> AccessSet {
        AccessSet { accounts, contract: None, system: false, opaque: false }
    }

    pub fn allows_account(&self, a: &Address) -> bool {
        self.accounts.contains(a)
    }

    /// Whether the set covers `use_` of key (or scan prefix) `key`: a contract key, or a
    /// governance key.
    pub fn allows_key(&self, key: &[u8], use_: KeyUse) -> bool {
        if self.system && super::governance::is_system_key(key) {
            return true;
        }
        let Some(c) = &self.contract else { return false };
        if key.len() <= CONTRACT_KEY_HEAD
            || !key.starts_with(SQL_PREFIX)
            || key[4..24] != c.contract.0
            || key[24] != b'/'
        {
            return false;
        }
        if c.whole {
            return true;
        }
        let rest = &key[CONTRACT_KEY_HEAD..];
        match (rest[0], use_) {
            // The code: read by every call, written only by a deploy (which holds the whole).
            (b'c', KeyUse::Read) => rest.len() == 1,
            (b'r', _) if rest.len() >= 2 => {
                let t = rest[1];
                c.tables.contains(&t)
                    || (use_ != KeyUse::Scan && c.rows.iter().any(|(rt, pk)| *rt == t && pk[..] == rest[2..]))
            }
            // The next row id of a table without a primary key: every insert reads and writes it,
            // so such inserts hold the whole table.
            (b'n', _) if rest.len() == 2 => c.tables.contains(&rest[1]),
            (b'i', _) if rest.len() >= 2 => {
                let Some(&t) = c.index_tables.get(rest[1] as usize) else { return false };
                // An index entry ends with its row's primary key (prefix-free encoding).
                c.tables.contains(&t)
                    || (use_ != KeyUse::Scan
                        && c.rows
                            .iter()
                            .any(|(rt, pk)| *rt == t && rest.len() > pk.len() + 2 && rest.ends_with(pk)))
            }
            _ => false,
        }
    }

    /// Whether the set holds resources beyond accounts ([`Self::resources`]).
    pub fn has_resources(&self) -> bool {
        self.system || self.contract.is_some()
    }

    /// The system and contract resources to schedule: (resource id, exclusive). Ids hash the
    /// resource; two resources sharing an id only add a dependency, never lose one.
    pub fn resources(&self) -> SmallVec<[(u64, bool); 6]> {
        let mut out = SmallVec::new();
        if self.system {
            out.push((SYSTEM_RESOURCE, true));
        }
        let Some(c) = &self.contract else { return out };
        let id = |level: u8, table: u8, pk: &[u8]| {
            let mut h = rustc_hash::FxHasher::default();
            (level, c.contract.0, table, pk).hash(&mut h);
            h.finish()
        };
        out.push((id(0, 0, &[]), c.whole));
        if c.whole {
            return out;
        }
        for t in &c.tables {
            out.push((id(1, *t, &[]), true));
        }
        for (t, pk) in &c.rows {
            if !c.tables.contains(t) {
                out.push((id(1, *t, &[]), false));
                out.push((id(2, *t, pk), true));
            }
        }
        out
    }
}

/// The declared access set of a transfer or governance transaction; contract transactions need
/// the parent state ([`Analyzer`]) and come back opaque here.
pub fn declared(tx: &Transaction) -> AccessSet {
    let sender = tx.sender();
    let mut accounts = SmallVec::new();
    accounts.push(sender);
    match tx.body.payload {
        Payload::Transfer => {
            if tx.body.recipient != sender {
                accounts.push(tx.body.recipient);
            }
            AccessSet::accounts(accounts)
        }
        _ if tx.body.payload.is_governance() => AccessSet { system: true, ..AccessSet::accounts(accounts) },
        _ => AccessSet { opaque: true, ..AccessSet::accounts(accounts) },
    }
}

/// A contract in the parent state: its compiled form and the table of each index.
type Known = (Arc<Compiled>, Arc<[u8]>);

/// The contracts a block calls, as its parent state has them (`None`: no contract there, or a
/// script the checker refuses). A deployed script never changes, so the workers take a call's
/// compiled contract from here instead of reading, hashing and looking up its script every call.
#[derive(Default)]
pub struct BlockContracts(HashMap<Address, Option<Known>>);

impl BlockContracts {
    /// The compiled contract at `a`, when it is in the parent state.
    pub fn get(&self, a: &Address) -> Option<&Arc<Compiled>> {
        self.0.get(a)?.as_ref().map(|(c, _)| c)
    }
}

/// Declares access sets for one block against its parent state. The block's contracts are loaded
/// (and compiled, if the cache lacks them) once, up front; declaring is then read-only, so the
/// executor declares a block's sets on several threads.
pub struct Analyzer<'v, V: super::StateView> {
    view: &'v V,
    contracts: BlockContracts,
}

fn load<V: super::StateView>(view: &V, a: &Address) -> Option<Known> {
    let code = view.raw(&code_key(a)).ok().flatten()?;
    let code = String::from_utf8(code).ok()?;
    let c = super::contract::cache().get(&code).ok()?;
    let ix: Arc<[u8]> = c.interpreted.indexes.iter().map(|i| i.table as u8).collect();
    Some((c, ix))
}

impl<'v, V: super::StateView> Analyzer<'v, V> {
    /// An analyzer for `txs`, with the contracts they call loaded.
    pub fn new(view: &'v V, txs: &[Transaction]) -> Self {
        let mut contracts = HashMap::new();
        for tx in txs {
            if let Payload::Call { contract, .. } = &tx.body.payload {
                contracts.entry(*contract).or_insert_with(|| load(view, contract));
            }
        }
        Analyzer { view, contracts: BlockContracts(contracts) }
    }

    /// The block's contracts, loaded from the parent state.
    pub fn contracts(&self) -> &BlockContracts {
        &self.contracts
    }

    fn contract(&self, a: &Address) -> Option<Known> {
        match self.contracts.0.get(a) {
            Some(c) => c.clone(),
            None => load(self.view, a),
        }
    }

    /// The declared access set of `tx`.
    pub fn declared(&self, tx: &Transaction) -> AccessSet {
        let mut set = declared(tx);
        let sender = tx.sender();
        let (contract, function, args) = match &tx.body.payload {
            Payload::Deploy { .. } => {
                let contract = aergo_sql::store::contract_address(&sender, tx.body.nonce);
                (contract, None, &[][..])
            }
            Payload::Call { contract, function, args } => (*contract, Some(function), &args[..]),
            _ => return set,
        };
        set.opaque = false;
        if tx.body.amount > 0 && contract != sender {
            set.accounts.push(contract);
        }
        let whole = |index_tables| ContractAccess {
            contract,
            whole: true,
            tables: SmallVec::new(),
            rows: SmallVec::new(),
            index_tables,
        };
        let Some(function) = function else {
            set.contract = Some(Box::new(whole(Arc::from([]))));
            return set;
        };
        let Some((compiled, index_tables)) = self.contract(&contract) else {
            set.contract = Some(Box::new(whole(Arc::from([]))));
            return set;
        };
        let (Some(access), Some(f)) =
            (compiled.function_access(function), compiled.interpreted.function(function))
        else {
            set.contract = Some(Box::new(whole(index_tables)));
            return set;
        };
        if access.native {
            set.opaque = true;
            return set;
        }
        // Keys from the arguments as the call will see them (converted like CAST).
        let args: Vec<Value> = args
            .iter()
            .zip(&f.params)
            .map(|(v, (_, ty))| aergo_sql::interp::cast(v.clone(), *ty).unwrap_or(Value::Null))
            .collect();
        let who = sender.to_string();
        let mut c = ContractAccess {
            contract,
            whole: false,
            tables: SmallVec::new(),
            rows: SmallVec::new(),
            index_tables,
        };
        for (table, a) in access.reads.iter().chain(&access.writes) {
            let t = *table as u8;
            match call_keys(a, &args, &who) {
                Some(keys) if matches!(a, TableAccess::Keys(_)) => {
                    for k in keys {
                        if !c.rows.iter().any(|(rt, pk)| *rt == t && *pk == k) {
                            c.rows.push((t, k));
                        }
                    }
                }
                _ => {
                    if !c.tables.contains(&t) {
                        c.tables.push(t);
                    }
                }
            }
        }
        set.contract = Some(Box::new(c));
        set
    }
}
