//! Where a contract's data lives in the state, and an in-memory host for tests and benchmarks.
//!
//! Keys (all under [`SQL_PREFIX`], which the state store also keeps in key order for scans):
//! - `sql/<address>/c` → the script;
//! - `sql/<address>/r<table id><primary key>` → the row (borsh `Vec<Value>`);
//! - `sql/<address>/i<index id><indexed values><primary key>` → empty.
//!
//! Key parts use [`super::value::encode_key`]: order-preserving and prefix-free, so a table's rows
//! come back from a prefix scan in primary-key order and an index prefix is the rows with those values.

use super::interp::{Entries, Host, ScanChunk};
use super::{SqlError, Value};
use aergo_primitives::types::Address;
use std::collections::BTreeMap;

pub use aergo_primitives::types::SQL_PREFIX;

pub fn contract_prefix(contract: &Address) -> Vec<u8> {
    let mut k = Vec::with_capacity(26);
    k.extend_from_slice(SQL_PREFIX);
    k.extend_from_slice(&contract.0);
    k.push(b'/');
    k
}

pub fn code_key(contract: &Address) -> Vec<u8> {
    let mut k = contract_prefix(contract);
    k.push(b'c');
    k
}

/// The key of a row of table `table` (its id) with primary-key values `pk`.
pub fn row_key(contract: &Address, table: usize, pk: &[super::Value]) -> Vec<u8> {
    let mut k = contract_prefix(contract);
    k.push(b'r');
    k.push(table as u8);
    for v in pk {
        super::value::encode_key(&mut k, v);
    }
    k
}

pub use aergo_primitives::types::contract_address;

/// The table named `table` (as its script spells it, in any case), with its id.
pub fn table_named<'c>(
    contract: &'c super::ir::Contract,
    table: &str,
) -> Result<(usize, &'c super::ir::Table), SqlError> {
    contract
        .tables
        .iter()
        .enumerate()
        .find(|(_, t)| t.name.eq_ignore_ascii_case(table))
        .ok_or_else(|| SqlError::Runtime(format!("the contract has no table {table:?}")))
}

/// The state key of the row of `table` whose primary key is `key` (its values in key order,
/// converted to the key columns' types as an INSERT converts them; for a table without a
/// PRIMARY KEY, its hidden `rowid`). What a row proof is of (`docs/dapps.md`, "State proofs").
pub fn row_state_key(
    contract: &super::ir::Contract,
    address: &Address,
    table: &str,
    key: &[Value],
) -> Result<Vec<u8>, SqlError> {
    let (id, t) = table_named(contract, table)?;
    if key.len() != t.pk.len() {
        let names: Vec<&str> = t.pk.iter().map(|&c| t.columns[c].name.as_str()).collect();
        return Err(SqlError::Runtime(format!(
            "table {} is keyed by {} value(s) ({}), not {}",
            t.name,
            names.len(),
            names.join(", "),
            key.len()
        )));
    }
    let mut values = Vec::with_capacity(key.len());
    for (v, &c) in key.iter().zip(&t.pk) {
        let column = &t.columns[c];
        if v.is_null() {
            return Err(SqlError::Runtime(format!("key column {} cannot be NULL", column.name)));
        }
        values.push(v.clone().coerce(column.ty, &column.name).map_err(|e| SqlError::Runtime(e.to_string()))?);
    }
    Ok(row_key(address, id, &values))
}

/// A stored row of `table` as (column, value) pairs, in the table's column order.
pub fn row_columns(
    contract: &super::ir::Contract,
    table: &str,
    bytes: &[u8],
) -> Result<Vec<(String, Value)>, SqlError> {
    let (_, t) = table_named(contract, table)?;
    let values =
        super::value::decode_row(bytes).map_err(|e| SqlError::Storage(format!("a stored row: {e}")))?;
    if values.len() != t.columns.len() {
        return Err(SqlError::Storage(format!(
            "a stored row of {} has {} values for {} columns",
            t.name,
            values.len(),
            t.columns.len()
        )));
    }
    Ok(t.columns.iter().map(|c| c.name.clone()).zip(values).collect())
}

/// A call's writes by key (`None`: deleted), in key order.
pub type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Writes in the order made, each with the value it replaced (what a rollback puts back).
type Journal = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// A host over a map: for tests, benchmarks and the differential tests.
#[derive(Default, Clone)]
pub struct MemHost {
    pub data: BTreeMap<Vec<u8>, Vec<u8>>,
    pub transfers: Vec<(String, u128)>,
    /// The events emitted, in order: name and arguments.
    pub events: Vec<(String, Vec<Value>)>,
    /// Under a savepoint: each write's key and the value it replaced, and the transfers before.
    journal: Option<(Journal, usize)>,
    /// Under a savepoint: the events before it.
    events_saved: usize,
}

impl Host for MemHost {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, SqlError> {
        Ok(self.data.get(key).cloned())
    }

    fn put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), SqlError> {
        let old = match value {
            Some(v) => self.data.insert(key.clone(), v),
            None => self.data.remove(&key),
        };
        if let Some((writes, _)) = &mut self.journal {
            writes.push((key, old));
        }
        Ok(())
    }

    fn savepoint(&mut self) -> bool {
        if self.journal.is_some() {
            return false;
        }
        self.journal = Some((Vec::new(), self.transfers.len()));
        self.events_saved = self.events.len();
        true
    }

    fn rollback(&mut self) {
        if let Some((writes, transfers)) = self.journal.take() {
            for (k, old) in writes.into_iter().rev() {
                match old {
                    Some(v) => self.data.insert(k, v),
                    None => self.data.remove(&k),
                };
            }
            self.transfers.truncate(transfers);
            self.events.truncate(self.events_saved);
        }
    }

    fn release(&mut self) {
        self.journal = None;
    }

    fn scan(&mut self, prefix: &[u8]) -> Result<Entries, SqlError> {
        Ok(self
            .data
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn transfer_native(&mut self, to: &str, amount: u128) -> Result<(), SqlError> {
        self.transfers.push((to.to_string(), amount));
        Ok(())
    }

    fn emit(&mut self, name: &str, args: Vec<Value>) -> Result<(), SqlError> {
        self.events.push((name.to_string(), args));
        Ok(())
    }

    fn scan_chunk(
        &mut self,
        prefix: &[u8],
        after: Option<&[u8]>,
        max: usize,
        out: &mut ScanChunk,
    ) -> Result<(), SqlError> {
        use std::ops::Bound;
        out.clear();
        let start = match after {
            Some(a) => Bound::Excluded(a.to_vec()),
            None => Bound::Included(prefix.to_vec()),
        };
        let mut it = self.data.range((start, Bound::Unbounded)).take_while(|(k, _)| k.starts_with(prefix));
        for (k, v) in it.by_ref().take(max) {
            out.push(k, v);
        }
        out.done = it.next().is_none();
        Ok(())
    }
}

/// Writes held back until the call succeeds: a failed call drops them (and its native transfers).
pub struct Buffered<'h, H: Host> {
    pub base: &'h mut H,
    pub writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub transfers: Vec<(String, u128)>,
    pub events: Vec<(String, Vec<Value>)>,
    /// Under a savepoint: the writes and the number of transfers and of events before it.
    saved: Option<(Writes, usize, usize)>,
}

impl<'h, H: Host> Buffered<'h, H> {
    pub fn new(base: &'h mut H) -> Self {
        Buffered { base, writes: BTreeMap::new(), transfers: Vec::new(), events: Vec::new(), saved: None }
    }

    /// Applies the buffered writes, transfers and events to the base.
    pub fn commit(self) -> Result<(), SqlError> {
        for (k, v) in self.writes {
            self.base.put(k, v)?;
        }
        for (to, amount) in self.transfers {
            self.base.transfer_native(&to, amount)?;
        }
        for (name, args) in self.events {
            self.base.emit(&name, args)?;
        }
        Ok(())
    }
}

impl<H: Host> Host for Buffered<'_, H> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, SqlError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }

    fn put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), SqlError> {
        self.writes.insert(key, value);
        Ok(())
    }

    fn scan(&mut self, prefix: &[u8]) -> Result<Entries, SqlError> {
        let base = self.base.scan(prefix)?;
        let mine: Vec<(&Vec<u8>, &Option<Vec<u8>>)> =
            self.writes.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)).collect();
        if mine.is_empty() {
            return Ok(base);
        }
        Ok(merge(base, mine.into_iter().map(|(k, v)| (k.clone(), v.clone()))))
    }

    fn transfer_native(&mut self, to: &str, amount: u128) -> Result<(), SqlError> {
        self.transfers.push((to.to_string(), amount));
        Ok(())
    }

    fn emit(&mut self, name: &str, args: Vec<Value>) -> Result<(), SqlError> {
        self.events.push((name.to_string(), args));
        Ok(())
    }

    fn savepoint(&mut self) -> bool {
        if self.saved.is_some() {
            return false;
        }
        self.saved = Some((self.writes.clone(), self.transfers.len(), self.events.len()));
        true
    }

    fn rollback(&mut self) {
        if let Some((writes, transfers, events)) = self.saved.take() {
            self.writes = writes;
            self.transfers.truncate(transfers);
            self.events.truncate(events);
        }
    }

    fn release(&mut self) {
        self.saved = None;
    }

    /// The base's pages while nothing under `prefix` was written here (a query's copy, the common
    /// case); else the merged listing at once.
    fn scan_chunk(
        &mut self,
        prefix: &[u8],
        after: Option<&[u8]>,
        max: usize,
        out: &mut ScanChunk,
    ) -> Result<(), SqlError> {
        if self.writes.range(prefix.to_vec()..).next().is_none_or(|(k, _)| !k.starts_with(prefix)) {
            return self.base.scan_chunk(prefix, after, max, out);
        }
        out.fill_after(self.scan(prefix)?, after);
        Ok(())
    }
}

/// Merges a sorted base listing with sorted overrides (`None` = deleted).
pub fn merge(base: Entries, overrides: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>) -> Entries {
    let mut out = Vec::with_capacity(base.len());
    let mut base = base.into_iter().peekable();
    for (k, v) in overrides {
        while let Some((bk, _)) = base.peek() {
            if *bk < k {
                out.extend(base.next());
            } else {
                break;
            }
        }
        if base.peek().is_some_and(|(bk, _)| *bk == k) {
            base.next();
        }
        if let Some(v) = v {
            out.push((k, v));
        }
    }
    out.extend(base);
    out
}
