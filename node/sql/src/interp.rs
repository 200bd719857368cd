//! The reference engine: runs checked contracts over a [`Host`] (the contract's keys), charging gas.
//!
//! Queries are evaluated row by row: the joined rows of FROM (each table read through its access
//! path), WHERE, grouping and aggregates, HAVING, the output, DISTINCT, ORDER BY (stable, NULLs
//! first), OFFSET/LIMIT. Changes check types, NOT NULL, CHECK, the primary key and UNIQUE indexes,
//! and keep index entries in step with rows. The engine itself never buffers: callers run a call on
//! a host that drops its writes when the call fails ([`super::store::Buffered`], the executor's host).

use super::gas::{self, Gas};
use super::ir::{
    Access, AggFunc, Body, Builtin, Cmp, Compound, ConflictAction, Contract, Expr, Function, Insert,
    InsertSource, JoinKind, OrderKey, Returns, Select, SetOp, Stmt, Table,
};
use super::jit::{BodyOutcome, HostStep, Input, JitBody, JitExpr, Outcome};
use super::store::contract_prefix;
use super::value::{
    arith, compare, decode_row, decode_row_into_masked, encode_key, encode_key_dir, encode_row, key_part_len,
    sort_cmp, Decimal, Type, Value,
};
use super::{Limits, SqlError};
use aergo_primitives::types::Address;
use std::cmp::Ordering;
use std::collections::HashMap;

/// Key-ordered entries of a prefix scan.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

#[cfg(test)]
thread_local! {
    /// Calls a compiled body answered on this thread (tests check the native path is taken).
    pub(crate) static NATIVE_BODIES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Entries a streamed scan reads at a time.
pub const SCAN_CHUNK: usize = 4096;

/// A run of scanned entries in one buffer (no allocation per entry; reused between chunks).
#[derive(Default)]
pub struct ScanChunk {
    buf: Vec<u8>,
    /// (key start, key end = value start, value end) in `buf`.
    spans: Vec<(usize, usize, usize)>,
    /// No entries after these.
    pub done: bool,
}

impl ScanChunk {
    pub fn clear(&mut self) {
        self.buf.clear();
        self.spans.clear();
        self.done = false;
    }

    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        let a = self.buf.len();
        self.buf.extend_from_slice(key);
        let b = self.buf.len();
        self.buf.extend_from_slice(value);
        self.spans.push((a, b, self.buf.len()));
    }

    /// The entries of a whole listing after key `after` (all when `None`), as the last chunk.
    pub fn fill_after(&mut self, listing: Entries, after: Option<&[u8]>) {
        self.clear();
        for (k, v) in listing {
            if after.is_none_or(|a| k.as_slice() > a) {
                self.push(&k, &v);
            }
        }
        self.done = true;
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn key(&self, i: usize) -> &[u8] {
        let (a, b, _) = self.spans[i];
        &self.buf[a..b]
    }

    pub fn value(&self, i: usize) -> &[u8] {
        let (_, b, c) = self.spans[i];
        &self.buf[b..c]
    }
}

/// The contract's view of the chain state.
pub trait Host {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, SqlError>;
    fn put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), SqlError>;
    /// Every entry under `prefix`, in key order.
    fn scan(&mut self, prefix: &[u8]) -> Result<Entries, SqlError>;
    /// Moves `amount` of the native coin from the contract's account to `to` (an address).
    fn transfer_native(&mut self, to: &str, amount: u128) -> Result<(), SqlError>;

    /// Records an event the call emitted (`EMIT`): kept in order beside the call's writes, and
    /// taken back with them by [`Host::rollback`]. A host whose calls may not emit (a merge
    /// resolver) refuses.
    fn emit(&mut self, name: &str, args: Vec<Value>) -> Result<(), SqlError>;

    /// Starts keeping what [`Host::rollback`] needs to take back every write and native transfer
    /// from here on (one level). A compiled function body runs under a savepoint, so that a call
    /// it hands back to the interpreter starts again from the same state. `false`: this host
    /// cannot (such calls run interpreted).
    fn savepoint(&mut self) -> bool {
        false
    }

    /// Takes back everything since [`Host::savepoint`] and ends it.
    fn rollback(&mut self) {}

    /// Keeps everything since [`Host::savepoint`] and ends it.
    fn release(&mut self) {}

    /// Up to `max` entries under `prefix` after key `after` (all of them from the start when
    /// `None`), in key order, into `out`; `out.done` when none follow. The default lists the whole
    /// prefix at once.
    fn scan_chunk(
        &mut self,
        prefix: &[u8],
        after: Option<&[u8]>,
        _max: usize,
        out: &mut ScanChunk,
    ) -> Result<(), SqlError> {
        out.fill_after(self.scan(prefix)?, after);
        Ok(())
    }
}

/// What the built-in functions report.
#[derive(Clone, Debug, Default)]
pub struct CallCtx {
    pub sender: String,
    pub self_address: String,
    pub height: u64,
    pub time_ms: u64,
    pub tx_hash: String,
    pub value: u128,
}

/// Rows with their column names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// Variables: the rows of enclosing queries, for correlated subqueries.
struct Env<'r> {
    row: &'r [Value],
    aggs: &'r [Value],
    outer: Option<&'r Env<'r>>,
}

impl<'r> Env<'r> {
    fn col(&self, up: usize, slot: usize) -> Result<&Value, SqlError> {
        let mut e = self;
        for _ in 0..up {
            e = e.outer.ok_or_else(|| SqlError::Runtime("outer column out of scope".into()))?;
        }
        e.row.get(slot).ok_or_else(|| SqlError::Runtime("column out of range".into()))
    }
}

const EMPTY: Env<'static> = Env { row: &[], aggs: &[], outer: None };

/// What receives the rows of a query's nested loop.
type RowSink<'a, 's, H> = dyn FnMut(&mut Engine<'a, H>, &[Value]) -> Result<(), SqlError> + 's;

enum Flow {
    Next,
    Return(Value),
}

pub struct Engine<'a, H: Host> {
    contract: &'a Contract,
    host: &'a mut H,
    pub gas: Gas,
    ctx: &'a CallCtx,
    prefix: Vec<u8>,
    limits: Limits,
    /// Set by a query whose rows come in its ORDER BY once it holds OFFSET + LIMIT rows: the
    /// nested loop stops (and the query clears it).
    halt: bool,
    /// The ordered-scan rules ([`Select::sorted`]); on unless a contract call's block is below
    /// `[consensus] sql_ordered_scans_height`.
    ordered: bool,
    /// Events emitted so far by this call (at most [`gas::MAX_EVENTS_PER_CALL`]).
    events: usize,
}

fn int_value(a: u128) -> Value {
    match i64::try_from(a) {
        Ok(i) => Value::Int(i),
        Err(_) => Value::Dec(Decimal { units: a as i128, scale: 0 }),
    }
}

impl<'a, H: Host> Engine<'a, H> {
    pub fn new(
        contract: &'a Contract,
        address: &Address,
        host: &'a mut H,
        ctx: &'a CallCtx,
        gas: Gas,
    ) -> Self {
        Engine {
            contract,
            host,
            gas,
            ctx,
            prefix: contract_prefix(address),
            limits: Limits::default(),
            halt: false,
            ordered: true,
            events: 0,
        }
    }

    /// Whether queries read `ORDER BY` from indexes (see [`Select::sorted`]).
    pub fn ordered_scans(mut self, on: bool) -> Self {
        self.ordered = on;
        self
    }

    fn row_prefix(&self, table: usize) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.push(b'r');
        k.push(table as u8);
        k
    }

    fn index_prefix(&self, index: usize) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.push(b'i');
        k.push(index as u8);
        k
    }

    fn pk_bytes(&self, table: &Table, row: &[Value]) -> Vec<u8> {
        let mut k = Vec::new();
        for &c in &table.pk {
            encode_key(&mut k, &row[c]);
        }
        k
    }

    fn index_key(&self, ix: usize, row: &[Value], pk: &[u8]) -> Vec<u8> {
        let mut k = self.index_prefix(ix);
        let idx = &self.contract.indexes[ix];
        for (&c, &desc) in idx.columns.iter().zip(&idx.desc) {
            encode_key_dir(&mut k, &row[c], desc);
        }
        k.extend_from_slice(pk);
        k
    }

    /// The primary key an entry of index `ix` ends with: `rest` is the entry after its first
    /// `fixed` column values (the scanned prefix).
    fn index_entry_pk<'k>(&self, ix: usize, fixed: usize, rest: &'k [u8]) -> Result<&'k [u8], SqlError> {
        let idx = &self.contract.indexes[ix];
        let mut rest = rest;
        for &desc in &idx.desc[fixed.min(idx.desc.len())..] {
            let n = key_part_len(rest, desc)
                .ok_or_else(|| SqlError::Storage(format!("undecodable entry of index {}", idx.name)))?;
            rest = &rest[n..];
        }
        Ok(rest)
    }

    // ---- calls ----

    /// Runs the constructor statements of a deploy.
    pub fn construct(&mut self, stmts: &[Stmt]) -> Result<(), SqlError> {
        self.gas.charge(gas::CALL)?;
        let mut vars = Vec::new();
        self.block(stmts, &mut vars, &[])?;
        Ok(())
    }

    /// Calls `function` with `args` (coerced to the parameter types).
    pub fn call(&mut self, function: &str, args: Vec<Value>) -> Result<QueryResult, SqlError> {
        self.gas.charge(gas::CALL)?;
        let contract = self.contract;
        let f: &Function = contract
            .function(function)
            .ok_or_else(|| SqlError::Runtime(format!("the contract has no function {function}")))?;
        if args.len() != f.params.len() {
            return Err(SqlError::Runtime(format!(
                "{function} takes {} arguments ({}), not {}",
                f.params.len(),
                f.params.iter().map(|(n, t)| format!("{n} {t}")).collect::<Vec<_>>().join(", "),
                args.len()
            )));
        }
        let mut vars = Vec::with_capacity(f.vars.len());
        for (v, (name, ty)) in args.into_iter().zip(&f.params) {
            // Arguments convert like CAST (a command line gives "300" for an INTEGER parameter).
            vars.push(cast(v, *ty).map_err(|e| SqlError::Runtime(format!("argument {name}: {e}")))?);
        }
        vars.resize(f.vars.len(), Value::Null);
        match &f.body {
            Body::Query(q) => {
                let rows = self.select(q, &EMPTY, &vars)?;
                match &f.returns {
                    Returns::Rows => {
                        let declared = f.columns.len() == q.columns.len();
                        let columns = if declared { f.columns.clone() } else { q.columns.clone() };
                        Ok(QueryResult { columns, rows })
                    }
                    Returns::Scalar(ty) => {
                        let v =
                            rows.into_iter().next().and_then(|r| r.into_iter().next()).unwrap_or(Value::Null);
                        Ok(QueryResult {
                            columns: vec![f.name.clone()],
                            rows: vec![vec![v.coerce(*ty, &f.name)?]],
                        })
                    }
                    Returns::Void => Ok(QueryResult::default()),
                }
            }
            Body::Block(stmts) => {
                if let Some(j) = &f.jit {
                    if let Some(result) = self.run_body(f, j, &vars) {
                        return Ok(result);
                    }
                }
                self.interpret_body(f, stmts, vars)
            }
        }
    }

    /// A compiled body on the frame; `None` hands the call to the interpreter (an error on the
    /// way, a RAISE, not enough gas, or a host that cannot take writes back). On a hand-back the
    /// gas and the host are as they were before the body started, so the interpreter runs the
    /// call from the same state.
    fn run_body(&mut self, f: &Function, j: &JitBody, vars: &[Value]) -> Option<QueryResult> {
        let writes = !j.host_stmts.is_empty();
        if writes && !self.host.savepoint() {
            return None;
        }
        let (before, events_before) = (self.gas, self.events);
        let mut ints: smallvec::SmallVec<[i64; 16]> = smallvec::SmallVec::with_capacity(vars.len());
        let mut nulls: smallvec::SmallVec<[u8; 16]> = smallvec::SmallVec::with_capacity(vars.len());
        for v in vars {
            let (i, n) = match v {
                Value::Int(i) => (*i, 0),
                Value::Bool(b) => (*b as i64, 0),
                _ => (0, 1),
            };
            ints.push(i);
            nulls.push(n);
        }
        // The engine's copy of the frame, for the statements it runs (none: no copy).
        let mut frame = if writes { vars.to_vec() } else { Vec::new() };
        let mut returned = None;
        let outcome = {
            let (engine, frame, returned) = (&mut *self, &mut frame, &mut returned);
            let mut step = |i: usize, values: &mut [i64], nulls: &mut [u8], nodes: u64| {
                engine.host_step(&f.vars, j.host_stmts.get(i), frame, values, nulls, nodes, returned)
            };
            j.run(&mut ints, &mut nulls, &mut step)
        };
        let result = match outcome {
            BodyOutcome::Value(v, nodes) => self
                .gas
                .charge(nodes)
                .ok()
                .map(|()| QueryResult { columns: vec![f.name.clone()], rows: vec![vec![v]] }),
            BodyOutcome::Returned(nodes) | BodyOutcome::Done(nodes) => {
                match (self.gas.charge(nodes), &f.returns, returned) {
                    (Err(_), _, _) => None,
                    (Ok(()), Returns::Scalar(ty), Some(v)) => v
                        .coerce(*ty, &f.name)
                        .ok()
                        .map(|v| QueryResult { columns: vec![f.name.clone()], rows: vec![vec![v]] }),
                    (Ok(()), Returns::Scalar(_), None) => None,
                    (Ok(()), _, _) => Some(QueryResult::default()),
                }
            }
            BodyOutcome::HandBack => None,
        };
        if result.is_none() {
            self.gas = before;
            self.events = events_before;
        }
        #[cfg(test)]
        if result.is_some() {
            NATIVE_BODIES.with(|c| c.set(c.get() + 1));
        }
        if writes {
            match result {
                Some(_) => self.host.release(),
                None => self.host.rollback(),
            }
        }
        result
    }

    /// One statement a compiled body hands to the engine: charges the nodes the native code ran,
    /// takes the frame's integer slots from it, runs the statement, and gives the slots back.
    #[allow(clippy::too_many_arguments)]
    fn host_step(
        &mut self,
        types: &[Type],
        stmt: Option<&Stmt>,
        frame: &mut Vec<Value>,
        values: &mut [i64],
        nulls: &mut [u8],
        nodes: u64,
        returned: &mut Option<Value>,
    ) -> HostStep {
        let Some(stmt) = stmt else { return HostStep::HandBack };
        if self.gas.charge(nodes).is_err() || frame.len() != values.len() {
            return HostStep::HandBack;
        }
        for (i, ty) in types.iter().enumerate() {
            frame[i] = match (ty, nulls[i]) {
                (Type::Int | Type::Bool, 1..) => Value::Null,
                (Type::Int, 0) => Value::Int(values[i]),
                (Type::Bool, 0) => Value::Bool(values[i] != 0),
                _ => continue,
            };
        }
        match self.block(std::slice::from_ref(stmt), frame, types) {
            Ok(Flow::Next) => {}
            Ok(Flow::Return(v)) => {
                *returned = Some(v);
                return HostStep::Returned;
            }
            Err(_) => return HostStep::HandBack,
        }
        for (i, ty) in types.iter().enumerate() {
            if matches!(ty, Type::Int | Type::Bool) {
                (values[i], nulls[i]) = match &frame[i] {
                    Value::Int(x) => (*x, 0),
                    Value::Bool(b) => (*b as i64, 0),
                    Value::Null => (0, 1),
                    _ => return HostStep::HandBack,
                };
            }
        }
        HostStep::Next
    }

    /// `EMIT`: the arguments, converted to the declared types, go to the host; charged per event
    /// and per byte of the encoded arguments.
    fn emit(&mut self, id: usize, args: &[Expr], vars: &[Value]) -> Result<(), SqlError> {
        let contract = self.contract;
        let decl = contract.events.get(id).ok_or_else(|| SqlError::Runtime(format!("no event {id}")))?;
        let mut values = Vec::with_capacity(args.len());
        for (e, (name, ty)) in args.iter().zip(&decl.params) {
            let v = self.eval(e, &EMPTY, vars)?;
            values.push(v.coerce(*ty, &format!("{}.{name}", decl.name))?);
        }
        let bytes = aergo_primitives::value::encode_row(&values).len();
        self.gas.charge(gas::EVENT + (bytes as u64).div_ceil(gas::EVENT_BYTES_PER_GAS))?;
        if bytes > gas::MAX_EVENT_BYTES {
            return Err(SqlError::Limit(format!(
                "event {} has {bytes} bytes of arguments, the limit is {}",
                decl.name,
                gas::MAX_EVENT_BYTES
            )));
        }
        if self.events >= gas::MAX_EVENTS_PER_CALL {
            return Err(SqlError::Limit(format!(
                "more than {} events in one call",
                gas::MAX_EVENTS_PER_CALL
            )));
        }
        self.events += 1;
        self.host.emit(&decl.name, values)
    }

    fn interpret_body(
        &mut self,
        f: &Function,
        stmts: &[Stmt],
        mut vars: Vec<Value>,
    ) -> Result<QueryResult, SqlError> {
        match (self.block(stmts, &mut vars, &f.vars)?, &f.returns) {
            (Flow::Return(v), Returns::Scalar(ty)) => {
                Ok(QueryResult { columns: vec![f.name.clone()], rows: vec![vec![v.coerce(*ty, &f.name)?]] })
            }
            (_, Returns::Scalar(_)) => Err(SqlError::Runtime(format!("{} ended without RETURN", f.name))),
            _ => Ok(QueryResult::default()),
        }
    }

    /// Runs a checked ad-hoc query.
    pub fn query(&mut self, q: &Select) -> Result<QueryResult, SqlError> {
        self.gas.charge(gas::CALL)?;
        let rows = self.select(q, &EMPTY, &[])?;
        Ok(QueryResult { columns: q.columns.clone(), rows })
    }

    fn block(&mut self, stmts: &[Stmt], vars: &mut Vec<Value>, types: &[Type]) -> Result<Flow, SqlError> {
        for s in stmts {
            self.gas.charge(gas::STATEMENT)?;
            match s {
                Stmt::Assign(slot, e) => {
                    let v = self.eval(e, &EMPTY, vars)?;
                    vars[*slot] = match types.get(*slot) {
                        Some(t) => v.coerce(*t, "variable")?,
                        None => v,
                    };
                }
                Stmt::If { branches, otherwise } => {
                    let mut taken = None;
                    for (cond, body) in branches {
                        if self.eval(cond, &EMPTY, vars)?.truth()? == Some(true) {
                            taken = Some(body);
                            break;
                        }
                    }
                    if let Flow::Return(v) = self.block(taken.unwrap_or(otherwise), vars, types)? {
                        return Ok(Flow::Return(v));
                    }
                }
                Stmt::Return(e) => {
                    let v = match e {
                        Some(e) => self.eval(e, &EMPTY, vars)?,
                        None => Value::Null,
                    };
                    return Ok(Flow::Return(v));
                }
                Stmt::Raise(msg) => {
                    let m = self.eval(msg, &EMPTY, vars)?;
                    return Err(SqlError::Raised(m.to_string()));
                }
                Stmt::Perform(e) => {
                    self.eval(e, &EMPTY, vars)?;
                }
                Stmt::Emit(id, args) => self.emit(*id, args, vars)?,
                Stmt::SelectInto(q, slots) => {
                    let rows = self.select(q, &EMPTY, vars)?;
                    let first = rows.into_iter().next();
                    for (i, slot) in slots.iter().enumerate() {
                        let v = first.as_ref().map_or(Value::Null, |r| r[i].clone());
                        vars[*slot] = match types.get(*slot) {
                            Some(t) => v.coerce(*t, "variable")?,
                            None => v,
                        };
                    }
                }
                Stmt::Insert(i) => self.insert(i, vars)?,
                Stmt::Update(u) => {
                    let table = &self.contract.tables[u.table];
                    let rows = self.fetch(u.table, &u.access, &EMPTY, vars)?;
                    for old in rows {
                        let env = Env { row: &old, aggs: &[], outer: None };
                        if let Some(f) = &u.filter {
                            if self.eval(f, &env, vars)?.truth()? != Some(true) {
                                continue;
                            }
                        }
                        let mut new = old.clone();
                        for (col, e) in &u.sets {
                            new[*col] = self.eval(e, &env, vars)?;
                        }
                        self.replace_row(table, u.table, &old, new)?;
                    }
                }
                Stmt::Delete(d) => {
                    let table = &self.contract.tables[d.table];
                    let rows = self.fetch(d.table, &d.access, &EMPTY, vars)?;
                    for old in rows {
                        if let Some(f) = &d.filter {
                            let env = Env { row: &old, aggs: &[], outer: None };
                            if self.eval(f, &env, vars)?.truth()? != Some(true) {
                                continue;
                            }
                        }
                        self.delete_row(table, &old)?;
                    }
                }
            }
        }
        Ok(Flow::Next)
    }

    // ---- reads ----

    fn read_row(&mut self, key: &[u8]) -> Result<Option<Vec<Value>>, SqlError> {
        self.gas.charge(gas::SEEK)?;
        match self.host.get(key)? {
            Some(bytes) => {
                self.gas.charge(gas::ROW_READ + bytes.len() as u64 / gas::READ_BYTES_PER_GAS)?;
                Ok(Some(decode_row(&bytes)?))
            }
            None => Ok(None),
        }
    }

    /// Key values coerced to the columns' types; `None` when one cannot equal any stored value.
    #[allow(clippy::too_many_arguments)]
    fn key_values(
        &mut self,
        table: &Table,
        cols: &[usize],
        desc: &[bool],
        exprs: &[Expr],
        env: &Env<'_>,
        vars: &[Value],
    ) -> Result<Option<Vec<u8>>, SqlError> {
        let mut k = Vec::new();
        for (i, (c, e)) in cols.iter().zip(exprs).enumerate() {
            let v = self.eval(e, env, vars)?;
            let col = &table.columns[*c];
            let v = match v.clone().coerce(col.ty, &col.name) {
                Ok(Value::Null) | Err(_) => return Ok(None),
                Ok(x) => {
                    // A decimal key rounded by coercion no longer equals the value looked up.
                    if compare(&x, &v).map(|o| o != Ordering::Equal).unwrap_or(true) {
                        return Ok(None);
                    }
                    x
                }
            };
            encode_key_dir(&mut k, &v, desc.get(i).copied().unwrap_or(false));
        }
        Ok(Some(k))
    }

    /// The rows of `table` that the access path selects (before any filter).
    fn fetch(
        &mut self,
        table_id: usize,
        access: &Access,
        env: &Env<'_>,
        vars: &[Value],
    ) -> Result<Vec<Vec<Value>>, SqlError> {
        let contract = self.contract;
        let table = &contract.tables[table_id];
        match access {
            Access::Scan => {
                self.gas.charge(gas::SEEK)?;
                let prefix = self.row_prefix(table_id);
                let entries = self.host.scan(&prefix)?;
                let mut out = Vec::with_capacity(entries.len());
                for (_, v) in entries {
                    self.gas.charge(gas::ROW_READ + v.len() as u64 / gas::READ_BYTES_PER_GAS)?;
                    out.push(decode_row(&v)?);
                }
                Ok(out)
            }
            Access::Point(keys) => {
                let Some(pk) = self.key_values(table, &table.pk, &[], keys, env, vars)? else {
                    return Ok(Vec::new());
                };
                let mut key = self.row_prefix(table_id);
                key.extend_from_slice(&pk);
                Ok(self.read_row(&key)?.into_iter().collect())
            }
            Access::Index(ix, keys) => {
                let Some(prefix) = self.index_scan_prefix(table, *ix, keys, env, vars)? else {
                    return Ok(Vec::new());
                };
                self.gas.charge(gas::SEEK)?;
                let entries = self.host.scan(&prefix)?;
                let mut out = Vec::with_capacity(entries.len());
                for (k, _) in entries {
                    self.gas.charge(gas::ROW_READ)?;
                    let mut key = self.row_prefix(table_id);
                    key.extend_from_slice(self.index_entry_pk(*ix, keys.len(), &k[prefix.len()..])?);
                    match self.read_row(&key)? {
                        Some(r) => out.push(r),
                        None => {
                            return Err(SqlError::Storage(format!(
                                "index {} points at a missing row",
                                contract.indexes[*ix].name
                            )))
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    /// The key prefix of the entries of index `ix` whose leading columns equal `keys`; `None`
    /// when a key cannot equal a stored value.
    fn index_scan_prefix(
        &mut self,
        table: &Table,
        ix: usize,
        keys: &[Expr],
        env: &Env<'_>,
        vars: &[Value],
    ) -> Result<Option<Vec<u8>>, SqlError> {
        let idx = &self.contract.indexes[ix];
        let Some(vals) = self.key_values(table, &idx.columns, &idx.desc, keys, env, vars)? else {
            return Ok(None);
        };
        let mut prefix = self.index_prefix(ix);
        prefix.extend_from_slice(&vals);
        Ok(Some(prefix))
    }

    fn limit_rows(&self, n: usize) -> Result<(), SqlError> {
        if n > self.limits.result_rows.max(1) * 100 {
            return Err(SqlError::Limit(format!(
                "a query step holds more than {} rows",
                self.limits.result_rows * 100
            )));
        }
        Ok(())
    }

    /// Calls `sink` with every joined row of FROM that passes WHERE, in order: a nested loop over
    /// the sources, each read through its access path; full scans stream in chunks, decoded into
    /// one row buffer (no row is materialized unless the query keeps it).
    fn each_row(
        &mut self,
        q: &Select,
        outer: &Env<'_>,
        vars: &[Value],
        sink: &mut RowSink<'a, '_, H>,
    ) -> Result<(), SqlError> {
        if let Some(c) = &q.compound {
            for r in self.compound_rows(c, outer, vars)? {
                sink(self, &r)?;
                if self.halt {
                    break;
                }
            }
            return Ok(());
        }
        let mut row = vec![Value::Null; q.width];
        if q.from.is_empty() {
            if let Some(f) = &q.filter {
                let env = Env { row: &row, aggs: &[], outer: Some(outer) };
                if self.eval(f, &env, vars)?.truth()? != Some(true) {
                    return Ok(());
                }
            }
            return sink(self, &row);
        }
        self.join_from(q, 0, &mut row, outer, vars, sink)
    }

    /// The rows of a compound query, its arms combined left to right.
    fn compound_rows(
        &mut self,
        c: &Compound,
        outer: &Env<'_>,
        vars: &[Value],
    ) -> Result<Vec<Vec<Value>>, SqlError> {
        fn distinct_sorted(mut rows: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
            rows.sort_by(|a, b| cmp_rows(a, b));
            rows.dedup_by(|a, b| cmp_rows(a, b) == Ordering::Equal);
            rows
        }
        let mut acc = self.select(&c.first, outer, vars)?;
        for (op, arm) in &c.rest {
            let rows = self.select(arm, outer, vars)?;
            self.gas.charge(gas::SORT_ROW * (acc.len() + rows.len()) as u64)?;
            acc = match op {
                SetOp::UnionAll => {
                    acc.extend(rows);
                    acc
                }
                SetOp::Union => {
                    acc.extend(rows);
                    distinct_sorted(acc)
                }
                SetOp::Intersect | SetOp::Except => {
                    let other = distinct_sorted(rows);
                    let keep = *op == SetOp::Intersect;
                    distinct_sorted(
                        acc.into_iter()
                            .filter(|r| other.binary_search_by(|o| cmp_rows(o, r)).is_ok() == keep)
                            .collect(),
                    )
                }
            };
            self.limit_rows(acc.len())?;
        }
        Ok(acc)
    }

    /// Source `i` of the nested loop; past the last source, WHERE and the sink.
    fn join_from(
        &mut self,
        q: &Select,
        i: usize,
        row: &mut Vec<Value>,
        outer: &Env<'_>,
        vars: &[Value],
        sink: &mut RowSink<'a, '_, H>,
    ) -> Result<(), SqlError> {
        let Some(src) = q.from.get(i) else {
            if let Some(f) = &q.filter {
                let env = Env { row, aggs: &[], outer: Some(outer) };
                if self.eval(f, &env, vars)?.truth()? != Some(true) {
                    return Ok(());
                }
            }
            return sink(self, row);
        };
        let ncols = self.contract.tables[src.table].columns.len();
        let range = src.offset..src.offset + ncols;
        // The first table through its ordered scan, under the ordered-scan rules.
        let access = match (&q.ordered_access, i) {
            (Some(a), 0) if self.ordered => a,
            _ => &src.access,
        };
        let mut matched = false;
        // One candidate in place: ON, then the next source or (last) WHERE and the sink.
        let mut visit = |this: &mut Self, row: &mut Vec<Value>| -> Result<(), SqlError> {
            if let Some(on) = &src.on {
                let env = Env { row, aggs: &[], outer: Some(outer) };
                if this.eval(on, &env, vars)?.truth()? != Some(true) {
                    return Ok(());
                }
            }
            matched = true;
            this.join_from(q, i + 1, row, outer, vars, sink)
        };
        match access {
            Access::Scan => {
                self.gas.charge(gas::SEEK)?;
                let prefix = self.row_prefix(src.table);
                let mut chunk = ScanChunk::default();
                let mut after: Option<Vec<u8>> = None;
                loop {
                    self.host.scan_chunk(&prefix, after.as_deref(), SCAN_CHUNK, &mut chunk)?;
                    for e in 0..chunk.len() {
                        let value = chunk.value(e);
                        self.gas.charge(gas::ROW_READ + value.len() as u64 / gas::READ_BYTES_PER_GAS)?;
                        decode_row_into_masked(value, &mut row[range.clone()], q.needed.get(range.clone()))?;
                        visit(self, row)?;
                        if self.halt {
                            return Ok(());
                        }
                    }
                    if chunk.done || chunk.is_empty() {
                        break;
                    }
                    after = Some(chunk.key(chunk.len() - 1).to_vec());
                }
            }
            // An index prefix, streamed in index order (a LIMIT on an ordered scan stops early).
            Access::Index(ix, keys) => {
                let contract = self.contract;
                let table = &contract.tables[src.table];
                let prefix = {
                    let env = Env { row, aggs: &[], outer: Some(outer) };
                    self.index_scan_prefix(table, *ix, keys, &env, vars)?
                };
                if let Some(prefix) = prefix {
                    self.gas.charge(gas::SEEK)?;
                    let mut chunk = ScanChunk::default();
                    let mut after: Option<Vec<u8>> = None;
                    let mut key = self.row_prefix(src.table);
                    let key_len = key.len();
                    'chunks: loop {
                        self.host.scan_chunk(&prefix, after.as_deref(), SCAN_CHUNK, &mut chunk)?;
                        for e in 0..chunk.len() {
                            self.gas.charge(gas::ROW_READ)?;
                            key.truncate(key_len);
                            key.extend_from_slice(self.index_entry_pk(
                                *ix,
                                keys.len(),
                                &chunk.key(e)[prefix.len()..],
                            )?);
                            let Some(cand) = self.read_row(&key)? else {
                                return Err(SqlError::Storage(format!(
                                    "index {} points at a missing row",
                                    self.contract.indexes[*ix].name
                                )));
                            };
                            row[range.clone()].clone_from_slice(&cand);
                            visit(self, row)?;
                            if self.halt {
                                return Ok(());
                            }
                        }
                        if chunk.done || chunk.is_empty() {
                            break 'chunks;
                        }
                        after = Some(chunk.key(chunk.len() - 1).to_vec());
                    }
                }
            }
            access => {
                let candidates = {
                    let env = Env { row, aggs: &[], outer: Some(outer) };
                    self.fetch(src.table, access, &env, vars)?
                };
                for cand in candidates {
                    row[range.clone()].clone_from_slice(&cand);
                    visit(self, row)?;
                    if self.halt {
                        return Ok(());
                    }
                }
            }
        }
        if !matched && src.join == JoinKind::Left {
            for v in &mut row[range.clone()] {
                *v = Value::Null;
            }
            self.join_from(q, i + 1, row, outer, vars, sink)?;
        }
        Ok(())
    }

    fn select(&mut self, q: &Select, outer: &Env<'_>, vars: &[Value]) -> Result<Vec<Vec<Value>>, SqlError> {
        let sorted = q.sorted && self.ordered;
        // Rows that come in ORDER BY order (an ordered index scan, the primary key): the loop
        // stops once it holds OFFSET + LIMIT of them, which are known first. (Under the earlier
        // rules LIMIT and OFFSET are read after the rows, as they always were.)
        let mut early = None;
        if sorted && !q.grouped && !q.distinct && q.limit.is_some() {
            early = Some(self.limit_offset(q, vars)?);
        }
        let stop_at = early.map(|(limit, offset)| offset.saturating_add(limit));
        // (output row, sort keys)
        let mut out: Vec<(Vec<Value>, Vec<Value>)> = Vec::new();
        let emit = |this: &mut Self,
                    env: &Env<'_>,
                    out: &mut Vec<(Vec<Value>, Vec<Value>)>|
         -> Result<(), SqlError> {
            let mut row = Vec::with_capacity(q.projection.len());
            for e in &q.projection {
                row.push(this.eval(e, env, vars)?);
            }
            let mut keys = Vec::with_capacity(q.order_by.len());
            for (k, _) in &q.order_by {
                keys.push(match k {
                    OrderKey::Output(i) => row[*i].clone(),
                    OrderKey::Expr(e) => this.eval(e, env, vars)?,
                });
            }
            out.push((row, keys));
            this.limit_rows(out.len())
        };
        if q.grouped {
            // Groups in key order (as SQLite's sorter gives them), each with its first row.
            let mut index: HashMap<Vec<Value>, usize> = HashMap::new();
            let mut groups: Vec<(Vec<Value>, Vec<Value>, Vec<Acc>)> = Vec::new();
            let new_accs = || q.aggregates.iter().map(|_| Acc::default()).collect::<Vec<Acc>>();
            self.each_row(q, outer, vars, &mut |this, row| {
                this.gas.charge(gas::SORT_ROW)?;
                let env = Env { row, aggs: &[], outer: Some(outer) };
                let gi = if q.group_by.is_empty() {
                    if groups.is_empty() {
                        groups.push((Vec::new(), row.to_vec(), new_accs()));
                    }
                    0
                } else {
                    let mut key = Vec::with_capacity(q.group_by.len());
                    for g in &q.group_by {
                        key.push(this.eval(g, &env, vars)?);
                    }
                    match index.get(&key) {
                        Some(&i) => i,
                        None => {
                            index.insert(key.clone(), groups.len());
                            groups.push((key, row.to_vec(), new_accs()));
                            this.limit_rows(groups.len())?;
                            groups.len() - 1
                        }
                    }
                };
                for (ai, a) in q.aggregates.iter().enumerate() {
                    let acc = &mut groups[gi].2[ai];
                    match &a.arg {
                        // A column of this query's row (most aggregates): read in place, for
                        // the gas of evaluating it.
                        Some(Expr::Col { up: 0, slot }) => match row.get(*slot) {
                            Some(v) => {
                                this.gas.charge(gas::NODE)?;
                                acc.add_ref(a.func, a.distinct, v)?
                            }
                            None => return Err(SqlError::Runtime("column out of range".into())),
                        },
                        Some(e) => acc.add(a.func, a.distinct, Some(this.eval(e, &env, vars)?))?,
                        None => acc.count += 1, // COUNT(*)
                    }
                }
                Ok(())
            })?;
            if groups.is_empty() && q.group_by.is_empty() {
                groups.push((Vec::new(), vec![Value::Null; q.width], new_accs()));
            }
            groups.sort_by(|a, b| cmp_rows(&a.0, &b.0));
            for (_, rep, accs) in groups {
                let aggs: Vec<Value> = accs
                    .into_iter()
                    .zip(&q.aggregates)
                    .map(|(acc, a)| acc.finish(a.func))
                    .collect::<Result<_, _>>()?;
                let env = Env { row: &rep, aggs: &aggs, outer: Some(outer) };
                if let Some(h) = &q.having {
                    if self.eval(h, &env, vars)?.truth()? != Some(true) {
                        continue;
                    }
                }
                emit(self, &env, &mut out)?;
            }
        } else if stop_at != Some(0) {
            let result = self.each_row(q, outer, vars, &mut |this, row| {
                let env = Env { row, aggs: &[], outer: Some(outer) };
                emit(this, &env, &mut out)?;
                if stop_at.is_some_and(|n| out.len() >= n) {
                    this.halt = true;
                }
                Ok(())
            });
            self.halt = false;
            result?;
        }
        if q.distinct {
            let mut seen = std::collections::HashSet::new();
            out.retain(|(r, _)| seen.insert(r.clone()));
        }
        if !q.order_by.is_empty() && !sorted {
            self.gas.charge(gas::SORT_ROW * out.len() as u64)?;
            let dirs: Vec<bool> = q.order_by.iter().map(|(_, d)| *d).collect();
            out.sort_by(|a, b| {
                for (i, desc) in dirs.iter().enumerate() {
                    let o = sort_cmp(&a.1[i], &b.1[i]);
                    let o = if *desc { o.reverse() } else { o };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                Ordering::Equal
            });
        }
        let (limit, offset) = match early {
            Some(lo) => lo,
            None => self.limit_offset(q, vars)?,
        };
        let rows: Vec<Vec<Value>> = out.into_iter().skip(offset).take(limit).map(|(r, _)| r).collect();
        if rows.len() > self.limits.result_rows {
            return Err(SqlError::Limit(format!(
                "the query returns more than {} rows (add a LIMIT)",
                self.limits.result_rows
            )));
        }
        Ok(rows)
    }

    /// LIMIT (none: all) and OFFSET (none: 0).
    fn limit_offset(&mut self, q: &Select, vars: &[Value]) -> Result<(usize, usize), SqlError> {
        let offset = match &q.offset {
            Some(e) => self.count_arg(e, vars, "OFFSET")?,
            None => 0,
        };
        let limit = match &q.limit {
            Some(e) => self.count_arg(e, vars, "LIMIT")?,
            None => usize::MAX,
        };
        Ok((limit, offset))
    }

    fn count_arg(&mut self, e: &Expr, vars: &[Value], what: &str) -> Result<usize, SqlError> {
        match self.eval(e, &EMPTY, vars)? {
            Value::Int(i) if i >= 0 => Ok(i as usize),
            Value::Null => Ok(usize::MAX),
            Value::Int(_) => Ok(usize::MAX), // SQLite: a negative LIMIT means none
            other => Err(SqlError::Runtime(format!("{what} must be an integer, not {}", other.type_name()))),
        }
    }

    // ---- writes ----

    /// Types, NOT NULL, CHECK and the row-size limit.
    fn validate(&mut self, table: &Table, row: Vec<Value>) -> Result<Vec<Value>, SqlError> {
        let mut out = Vec::with_capacity(row.len());
        let mut size = 0;
        for (v, col) in row.into_iter().zip(&table.columns) {
            let v = v.coerce(col.ty, &format!("{}.{}", table.name, col.name))?;
            if col.not_null && v.is_null() {
                return Err(SqlError::Runtime(format!(
                    "NULL in column {}.{} (NOT NULL)",
                    table.name, col.name
                )));
            }
            size += v.size();
            out.push(v);
        }
        if size > self.limits.row_bytes {
            return Err(SqlError::Limit(format!(
                "a row of {} is {size} bytes, the limit is {}",
                table.name, self.limits.row_bytes
            )));
        }
        for (check, text) in &table.checks {
            let env = Env { row: &out, aggs: &[], outer: None };
            if self.eval(check, &env, &[])?.truth()? == Some(false) {
                return Err(SqlError::Runtime(format!("CHECK ({text}) fails for a row of {}", table.name)));
            }
        }
        Ok(out)
    }

    /// The row (other than `except`) that already holds this row's values of unique index `ix`.
    fn unique_holder(
        &mut self,
        ix: usize,
        row: &[Value],
        except: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, SqlError> {
        let idx = &self.contract.indexes[ix];
        if idx.columns.iter().any(|&c| row[c].is_null()) {
            return Ok(None);
        }
        let mut prefix = self.index_prefix(ix);
        for (&c, &desc) in idx.columns.iter().zip(&idx.desc) {
            encode_key_dir(&mut prefix, &row[c], desc);
        }
        self.gas.charge(gas::SEEK)?;
        for (k, _) in self.host.scan(&prefix)? {
            let pk = k[prefix.len()..].to_vec();
            if Some(pk.as_slice()) != except {
                return Ok(Some(pk));
            }
        }
        Ok(None)
    }

    fn write_row(&mut self, table_id: usize, pk: &[u8], row: &[Value]) -> Result<(), SqlError> {
        let mut key = self.row_prefix(table_id);
        key.extend_from_slice(pk);
        let bytes = encode_row(row);
        self.gas.charge(gas::ROW_WRITE + bytes.len() as u64 / gas::WRITE_BYTES_PER_GAS)?;
        self.host.put(key, Some(bytes))
    }

    /// The key of table `table_id`'s next row id (a table without a primary key).
    fn rowid_key(&self, table_id: usize) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.push(b'n');
        k.push(table_id as u8);
        k
    }

    /// The next row id of `table_id` (1 for a table that never had a row).
    fn next_rowid(&mut self, table_id: usize) -> Result<i64, SqlError> {
        self.gas.charge(gas::SEEK)?;
        let key = self.rowid_key(table_id);
        match self.host.get(&key)? {
            None => Ok(1),
            Some(b) => Ok(i64::from_le_bytes(
                b.as_slice()
                    .try_into()
                    .map_err(|_| SqlError::Storage("undecodable row id counter".into()))?,
            )),
        }
    }

    fn insert(&mut self, ins: &Insert, vars: &[Value]) -> Result<(), SqlError> {
        let contract = self.contract;
        let table = &contract.tables[ins.table];
        // A table without a primary key: the row id the next written row takes (read once).
        let mut rowid: Option<(i64, bool)> = None;
        let sources: Vec<Vec<Value>> = match &ins.source {
            InsertSource::Values(rows) => {
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    let mut vals = Vec::with_capacity(r.len());
                    for e in r {
                        vals.push(self.eval(e, &EMPTY, vars)?);
                    }
                    out.push(vals);
                }
                out
            }
            InsertSource::Query(q) => self.select(q, &EMPTY, vars)?,
        };
        for src in sources {
            let mut row = vec![Value::Null; table.columns.len()];
            let mut given = vec![false; table.columns.len()];
            for (v, &c) in src.into_iter().zip(&ins.columns) {
                row[c] = v;
                given[c] = true;
            }
            for (c, col) in table.columns.iter().enumerate() {
                if !given[c] {
                    if let Some(d) = &col.default {
                        row[c] = self.eval(d, &EMPTY, vars)?;
                    }
                }
            }
            if let Some(rc) = table.rowid {
                let next = match rowid {
                    Some((n, _)) => n,
                    None => self.next_rowid(ins.table)?,
                };
                rowid = Some((next, rowid.is_some_and(|r| r.1)));
                row[rc] = Value::Int(next);
            }
            let row = self.validate(table, row)?;
            let pk = self.pk_bytes(table, &row);
            let mut key = self.row_prefix(ins.table);
            key.extend_from_slice(&pk);
            // The conflicting row, if any: by primary key, then by each unique index.
            let mut conflict: Option<(Vec<u8>, Option<usize>)> = None;
            if self.read_row(&key)?.is_some() {
                conflict = Some((pk.clone(), None));
            } else {
                for &ix in &table.indexes {
                    if contract.indexes[ix].unique {
                        if let Some(holder) = self.unique_holder(ix, &row, None)? {
                            conflict = Some((holder, Some(ix)));
                            break;
                        }
                    }
                }
            }
            let Some((holder, arbiter)) = conflict else {
                self.write_row(ins.table, &pk, &row)?;
                if let Some((n, _)) = rowid {
                    let next = n.checked_add(1).ok_or_else(|| {
                        SqlError::Runtime(format!("table {} has used every row id", table.name))
                    })?;
                    rowid = Some((next, true));
                }
                for &ix in &table.indexes {
                    let k = self.index_key(ix, &row, &pk);
                    self.gas.charge(gas::INDEX_WRITE)?;
                    self.host.put(k, Some(Vec::new()))?;
                }
                continue;
            };
            let handled = ins.on_conflict.as_ref().filter(|oc| oc.index == arbiter);
            let Some(oc) = handled else {
                return Err(SqlError::Runtime(match arbiter {
                    None => format!("duplicate primary key in {}", table.name),
                    Some(ix) => {
                        format!("duplicate value for UNIQUE ({}) in {}", self.index_columns(ix), table.name)
                    }
                }));
            };
            match &oc.action {
                ConflictAction::Nothing => {}
                ConflictAction::Update { sets, filter } => {
                    let mut hkey = self.row_prefix(ins.table);
                    hkey.extend_from_slice(&holder);
                    let old = self
                        .read_row(&hkey)?
                        .ok_or_else(|| SqlError::Storage("conflicting row vanished".into()))?;
                    let mut both = old.clone();
                    both.extend(row.iter().cloned());
                    let env = Env { row: &both, aggs: &[], outer: None };
                    if let Some(f) = filter {
                        if self.eval(f, &env, vars)?.truth()? != Some(true) {
                            continue;
                        }
                    }
                    let mut new = old.clone();
                    for (col, e) in sets {
                        new[*col] = self.eval(e, &env, vars)?;
                    }
                    self.replace_row(table, ins.table, &old, new)?;
                }
            }
        }
        if let Some((next, true)) = rowid {
            let key = self.rowid_key(ins.table);
            self.gas.charge(gas::ROW_WRITE + 1)?;
            self.host.put(key, Some(next.to_le_bytes().to_vec()))?;
        }
        Ok(())
    }

    fn index_columns(&self, ix: usize) -> String {
        let idx = &self.contract.indexes[ix];
        let t = &self.contract.tables[idx.table];
        idx.columns.iter().map(|&c| t.columns[c].name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Replaces `old` by `new` (same primary key): validation, uniqueness, index entries.
    fn replace_row(
        &mut self,
        table: &Table,
        table_id: usize,
        old: &[Value],
        new: Vec<Value>,
    ) -> Result<(), SqlError> {
        let new = self.validate(table, new)?;
        let pk = self.pk_bytes(table, old);
        for &ix in &table.indexes {
            let cols = &self.contract.indexes[ix].columns;
            if cols.iter().all(|&c| old[c] == new[c]) {
                continue;
            }
            if self.contract.indexes[ix].unique && self.unique_holder(ix, &new, Some(&pk))?.is_some() {
                return Err(SqlError::Runtime(format!(
                    "duplicate value for UNIQUE ({}) in {}",
                    self.index_columns(ix),
                    table.name
                )));
            }
            let (ok, nk) = (self.index_key(ix, old, &pk), self.index_key(ix, &new, &pk));
            self.gas.charge(2 * gas::INDEX_WRITE)?;
            self.host.put(ok, None)?;
            self.host.put(nk, Some(Vec::new()))?;
        }
        self.write_row(table_id, &pk, &new)
    }

    /// Makes the row of table `table_id` that is `old` now (`None`: there is none) become `new`
    /// (`None`: deleted), with a statement's checks: the row's types and CHECK constraints,
    /// uniqueness and its index entries. `old` and `new` have one primary key. What a three-way
    /// merge writes for each row it merged (`docs/branches.md`).
    pub fn put_row(
        &mut self,
        table_id: usize,
        old: Option<Vec<Value>>,
        new: Option<Vec<Value>>,
    ) -> Result<(), SqlError> {
        let contract = self.contract;
        let table = contract
            .tables
            .get(table_id)
            .ok_or_else(|| SqlError::Runtime(format!("the contract has no table {table_id}")))?;
        if let Some(n) = new.as_ref().filter(|n| n.len() != table.columns.len()) {
            return Err(SqlError::Runtime(format!(
                "a row of {} has {} columns, not {}",
                table.name,
                table.columns.len(),
                n.len()
            )));
        }
        match (old, new) {
            (None, None) => Ok(()),
            (Some(old), None) => self.delete_row(table, &old),
            (Some(old), Some(new)) => {
                if self.pk_bytes(table, &old) != self.pk_bytes(table, &new) {
                    return Err(SqlError::Runtime(format!(
                        "the row of {} would change its primary key",
                        table.name
                    )));
                }
                self.replace_row(table, table_id, &old, new)
            }
            (None, Some(new)) => {
                let new = self.validate(table, new)?;
                let pk = self.pk_bytes(table, &new);
                for &ix in &table.indexes {
                    if contract.indexes[ix].unique && self.unique_holder(ix, &new, Some(&pk))?.is_some() {
                        return Err(SqlError::Runtime(format!(
                            "duplicate value for UNIQUE ({}) in {}",
                            self.index_columns(ix),
                            table.name
                        )));
                    }
                }
                self.write_row(table_id, &pk, &new)?;
                for &ix in &table.indexes {
                    let k = self.index_key(ix, &new, &pk);
                    self.gas.charge(gas::INDEX_WRITE)?;
                    self.host.put(k, Some(Vec::new()))?;
                }
                Ok(())
            }
        }
    }

    fn delete_row(&mut self, table: &Table, old: &[Value]) -> Result<(), SqlError> {
        let table_id = self.contract.tables.iter().position(|t| std::ptr::eq(t, table)).unwrap_or(0);
        let pk = self.pk_bytes(table, old);
        for &ix in &table.indexes {
            let k = self.index_key(ix, old, &pk);
            self.gas.charge(gas::INDEX_WRITE)?;
            self.host.put(k, None)?;
        }
        let mut key = self.row_prefix(table_id);
        key.extend_from_slice(&pk);
        self.gas.charge(gas::ROW_WRITE)?;
        self.host.put(key, None)
    }

    // ---- expressions ----

    fn eval(&mut self, e: &Expr, env: &Env<'_>, vars: &[Value]) -> Result<Value, SqlError> {
        if let Expr::Jit(j) = e {
            return self.eval_jit(j, env, vars);
        }
        self.gas.charge(gas::NODE)?;
        Ok(match e {
            Expr::Const(v) => v.clone(),
            Expr::Col { up, slot } => env.col(*up, *slot)?.clone(),
            Expr::Var(i) => vars.get(*i).cloned().unwrap_or(Value::Null),
            Expr::Agg(i) => env.aggs.get(*i).cloned().unwrap_or(Value::Null),
            Expr::Neg(x) => match self.eval(x, env, vars)? {
                Value::Null => Value::Null,
                v => arith(super::value::Arith::Sub, &Value::Int(0), &v)?,
            },
            Expr::Not(x) => match self.eval(x, env, vars)?.truth()? {
                None => Value::Null,
                Some(b) => Value::Bool(!b),
            },
            Expr::Arith(op, a, b) => {
                let (a, b) = (self.eval(a, env, vars)?, self.eval(b, env, vars)?);
                arith(*op, &a, &b)?
            }
            Expr::Cmp(op, a, b) => {
                let (a, b) = (self.eval(a, env, vars)?, self.eval(b, env, vars)?);
                cmp_values(*op, &a, &b)?
            }
            Expr::And(a, b) => {
                let x = self.eval(a, env, vars)?.truth()?;
                if x == Some(false) {
                    return Ok(Value::Bool(false));
                }
                match (x, self.eval(b, env, vars)?.truth()?) {
                    (_, Some(false)) => Value::Bool(false),
                    (Some(true), Some(true)) => Value::Bool(true),
                    _ => Value::Null,
                }
            }
            Expr::Or(a, b) => {
                let x = self.eval(a, env, vars)?.truth()?;
                if x == Some(true) {
                    return Ok(Value::Bool(true));
                }
                match (x, self.eval(b, env, vars)?.truth()?) {
                    (_, Some(true)) => Value::Bool(true),
                    (Some(false), Some(false)) => Value::Bool(false),
                    _ => Value::Null,
                }
            }
            Expr::Concat(a, b) => {
                let (a, b) = (self.eval(a, env, vars)?, self.eval(b, env, vars)?);
                if a.is_null() || b.is_null() {
                    Value::Null
                } else {
                    Value::Text(format!("{}{}", text_of(&a)?, text_of(&b)?))
                }
            }
            Expr::IsNull(x, negated) => Value::Bool(self.eval(x, env, vars)?.is_null() != *negated),
            Expr::InList(x, list, negated) => {
                let v = self.eval(x, env, vars)?;
                let mut items = Vec::with_capacity(list.len());
                for i in list {
                    items.push(self.eval(i, env, vars)?);
                }
                in_values(&v, items.iter(), *negated)?
            }
            Expr::InQuery(x, q, negated) => {
                let v = self.eval(x, env, vars)?;
                let rows = self.select(q, env, vars)?;
                in_values(&v, rows.iter().map(|r| &r[0]), *negated)?
            }
            Expr::Quantified(op, x, q, all) => {
                let v = self.eval(x, env, vars)?;
                let rows = self.select(q, env, vars)?;
                let mut unknown = false;
                for r in &rows {
                    match cmp_values(*op, &v, &r[0])?.truth()? {
                        // ANY: one true decides; ALL: one false decides.
                        Some(b) if b != *all => return Ok(Value::Bool(b)),
                        None => unknown = true,
                        Some(_) => {}
                    }
                }
                if unknown {
                    Value::Null
                } else {
                    Value::Bool(*all)
                }
            }
            Expr::Exists(q, negated) => {
                let rows = self.select(q, env, vars)?;
                Value::Bool(rows.is_empty() == *negated)
            }
            Expr::Subquery(q) => {
                let rows = self.select(q, env, vars)?;
                rows.into_iter().next().and_then(|r| r.into_iter().next()).unwrap_or(Value::Null)
            }
            Expr::Case { operand, whens, otherwise } => {
                let base = match operand {
                    Some(o) => Some(self.eval(o, env, vars)?),
                    None => None,
                };
                for (w, then) in whens {
                    let hit = match &base {
                        Some(b) => {
                            let w = self.eval(w, env, vars)?;
                            cmp_values(Cmp::Eq, b, &w)?.truth()? == Some(true)
                        }
                        None => self.eval(w, env, vars)?.truth()? == Some(true),
                    };
                    if hit {
                        return self.eval(then, env, vars);
                    }
                }
                match otherwise {
                    Some(o) => self.eval(o, env, vars)?,
                    None => Value::Null,
                }
            }
            Expr::Cast(x, ty) => cast(self.eval(x, env, vars)?, *ty)?,
            Expr::Func(f, args) => self.builtin(*f, args, env, vars)?,
            Expr::Jit(j) => self.eval_jit(j, env, vars)?,
        })
    }

    /// Runs compiled code; hands the subtree to the interpreter when the code says so (an error on
    /// the way) or when its gas would run out, so that both fail at the same node.
    fn eval_jit(&mut self, j: &JitExpr, env: &Env<'_>, vars: &[Value]) -> Result<Value, SqlError> {
        let mut ints: smallvec::SmallVec<[i64; 16]> = smallvec::SmallVec::with_capacity(j.inputs.len());
        let mut nulls: smallvec::SmallVec<[u8; 16]> = smallvec::SmallVec::with_capacity(j.inputs.len());
        for input in &j.inputs {
            let v = match input {
                Input::Col(slot) => env.col(0, *slot)?,
                Input::Var(i) => vars.get(*i).unwrap_or(&Value::Null),
            };
            match v {
                Value::Int(i) => {
                    ints.push(*i);
                    nulls.push(0);
                }
                Value::Bool(b) => {
                    ints.push(*b as i64);
                    nulls.push(0);
                }
                Value::Null => {
                    ints.push(0);
                    nulls.push(1);
                }
                _ => return self.eval(&j.fallback, env, vars),
            }
        }
        if let Outcome::Value(v, nodes) = j.run(&ints, &nulls) {
            let before = self.gas;
            if self.gas.charge(nodes).is_ok() {
                return Ok(v);
            }
            self.gas = before;
        }
        self.eval(&j.fallback, env, vars)
    }

    fn builtin(
        &mut self,
        f: Builtin,
        args: &[Expr],
        env: &Env<'_>,
        vars: &[Value],
    ) -> Result<Value, SqlError> {
        match f {
            Builtin::Sender => return Ok(Value::Text(self.ctx.sender.clone())),
            Builtin::SelfAddress => return Ok(Value::Text(self.ctx.self_address.clone())),
            Builtin::BlockHeight => return Ok(int_value(self.ctx.height as u128)),
            Builtin::BlockTime => return Ok(int_value((self.ctx.time_ms / 1000) as u128)),
            Builtin::TxHash => return Ok(Value::Text(self.ctx.tx_hash.clone())),
            Builtin::CallValue => return Ok(int_value(self.ctx.value)),
            Builtin::Coalesce => {
                for a in args {
                    let v = self.eval(a, env, vars)?;
                    if !v.is_null() {
                        return Ok(v);
                    }
                }
                return Ok(Value::Null);
            }
            _ => {}
        }
        let mut v = Vec::with_capacity(args.len());
        for a in args {
            v.push(self.eval(a, env, vars)?);
        }
        if f == Builtin::Nullif {
            return Ok(if cmp_values(Cmp::Eq, &v[0], &v[1])?.truth()? == Some(true) {
                Value::Null
            } else {
                v[0].clone()
            });
        }
        if v.iter().any(Value::is_null) {
            return Ok(Value::Null);
        }
        Ok(match f {
            Builtin::TransferNative => {
                let to = text_arg(&v[0], "transfer_native recipient")?;
                let amount = match &v[1] {
                    Value::Int(i) if *i >= 0 => *i as u128,
                    Value::Dec(d) if d.units >= 0 && d.scale == 0 => d.units as u128,
                    other => {
                        return Err(SqlError::Runtime(format!(
                            "transfer_native amount must be a non-negative integer, not {other}"
                        )))
                    }
                };
                self.gas.charge(gas::ROW_WRITE * 2)?;
                self.host.transfer_native(&to, amount)?;
                Value::Bool(true)
            }
            Builtin::Length => match &v[0] {
                Value::Bytes(b) => Value::Int(b.len() as i64),
                other => Value::Int(text_of(other)?.chars().count() as i64),
            },
            Builtin::Lower => Value::Text(text_arg(&v[0], "lower")?.to_ascii_lowercase()),
            Builtin::Upper => Value::Text(text_arg(&v[0], "upper")?.to_ascii_uppercase()),
            Builtin::Trim => Value::Text(text_arg(&v[0], "trim")?.trim_matches(' ').to_string()),
            Builtin::Ltrim => Value::Text(text_arg(&v[0], "ltrim")?.trim_start_matches(' ').to_string()),
            Builtin::Rtrim => Value::Text(text_arg(&v[0], "rtrim")?.trim_end_matches(' ').to_string()),
            Builtin::Replace => {
                let (s, from, to) =
                    (text_arg(&v[0], "replace")?, text_arg(&v[1], "replace")?, text_arg(&v[2], "replace")?);
                self.gas.charge(s.len() as u64 / 16)?;
                if from.is_empty() {
                    Value::Text(s)
                } else {
                    Value::Text(s.replace(&from, &to))
                }
            }
            Builtin::Instr => {
                let (s, sub) = (text_arg(&v[0], "instr")?, text_arg(&v[1], "instr")?);
                Value::Int(s.find(&sub).map_or(0, |i| s[..i].chars().count() as i64 + 1))
            }
            Builtin::Substr => {
                let s: Vec<char> = text_arg(&v[0], "substr")?.chars().collect();
                let start = int_arg(&v[1], "substr start")?;
                let len = match v.get(2) {
                    Some(l) => Some(int_arg(l, "substr length")?),
                    None => None,
                };
                Value::Text(substr(&s, start, len)?)
            }
            Builtin::Abs => match &v[0] {
                Value::Int(i) => Value::Int(
                    i.checked_abs().ok_or_else(|| SqlError::Runtime("integer overflow in abs".into()))?,
                ),
                Value::Dec(d) => Value::Dec(Decimal { units: d.units.abs(), scale: d.scale }),
                other => return Err(SqlError::Runtime(format!("abs of {}", other.type_name()))),
            },
            _ => Value::Null,
        })
    }
}

/// SQLite's substr on characters (1-based; a negative start counts from the end).
fn substr(s: &[char], start: i64, len: Option<i64>) -> Result<String, SqlError> {
    let n = s.len() as i64;
    let mut p1 = start;
    let mut p2 = len.unwrap_or(i64::MAX / 2);
    if p2 < 0 {
        return Err(SqlError::Runtime("substr length must not be negative".into()));
    }
    if p1 < 0 {
        p1 += n;
        if p1 < 0 {
            p2 = (p2 + p1).max(0);
            p1 = 0;
        }
    } else if p1 > 0 {
        p1 -= 1;
    } else if p2 > 0 {
        p2 -= 1;
    }
    let from = p1.min(n) as usize;
    let to = (p1.saturating_add(p2)).min(n).max(p1.min(n)) as usize;
    Ok(s[from..to].iter().collect())
}

fn text_of(v: &Value) -> Result<String, SqlError> {
    match v {
        Value::Text(s) => Ok(s.clone()),
        Value::Int(_) | Value::Dec(_) => Ok(v.to_string()),
        Value::Bool(b) => Ok(if *b { "1" } else { "0" }.to_string()),
        other => Err(SqlError::Runtime(format!("{} used as text", other.type_name()))),
    }
}

fn text_arg(v: &Value, what: &str) -> Result<String, SqlError> {
    match v {
        Value::Text(s) => Ok(s.clone()),
        other => Err(SqlError::Runtime(format!("{what} needs TEXT, not {}", other.type_name()))),
    }
}

fn int_arg(v: &Value, what: &str) -> Result<i64, SqlError> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(SqlError::Runtime(format!("{what} needs INTEGER, not {}", other.type_name()))),
    }
}

fn cmp_values(op: Cmp, a: &Value, b: &Value) -> Result<Value, SqlError> {
    if a.is_null() || b.is_null() {
        return Ok(Value::Null);
    }
    let o = compare(a, b)?;
    Ok(Value::Bool(match op {
        Cmp::Eq => o == Ordering::Equal,
        Cmp::Ne => o != Ordering::Equal,
        Cmp::Lt => o == Ordering::Less,
        Cmp::Le => o != Ordering::Greater,
        Cmp::Gt => o == Ordering::Greater,
        Cmp::Ge => o != Ordering::Less,
    }))
}

fn in_values<'v>(
    v: &Value,
    items: impl Iterator<Item = &'v Value>,
    negated: bool,
) -> Result<Value, SqlError> {
    let mut items = items.peekable();
    if v.is_null() {
        // NULL IN (nothing) is false and NULL NOT IN (nothing) true: with no member there is nothing
        // for the unknown value to be unknown against (SQL, SQLite and PostgreSQL agree). Against
        // any member it is unknown.
        return Ok(if items.peek().is_none() { Value::Bool(negated) } else { Value::Null });
    }
    let mut saw_null = false;
    for i in items {
        if i.is_null() {
            saw_null = true;
        } else if compare(v, i)? == Ordering::Equal {
            return Ok(Value::Bool(!negated));
        }
    }
    Ok(if saw_null { Value::Null } else { Value::Bool(negated) })
}

fn cmp_rows(a: &[Value], b: &[Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = sort_cmp(x, y);
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

pub fn cast(v: Value, ty: Type) -> Result<Value, SqlError> {
    let bad = |v: &Value| SqlError::Runtime(format!("cannot cast {} {v} to {ty}", v.type_name()));
    Ok(match (ty, v) {
        (_, Value::Null) => Value::Null,
        (Type::Text, Value::Bytes(b)) => Value::Text(
            String::from_utf8(b).map_err(|_| SqlError::Runtime("bytes are not UTF-8 text".into()))?,
        ),
        (Type::Text, Value::Bool(b)) => Value::Text(if b { "true" } else { "false" }.into()),
        (Type::Text, v) => Value::Text(v.to_string()),
        (Type::Int, Value::Text(s)) => {
            let t = s.trim();
            match t.parse::<i64>() {
                Ok(i) => Value::Int(i),
                Err(_) => match Decimal::parse(t) {
                    Some(d) => cast(Value::Dec(d), Type::Int)?,
                    None => return Err(bad(&Value::Text(s))),
                },
            }
        }
        (Type::Int, Value::Dec(d)) => {
            // Toward zero, as SQLite does (PostgreSQL rounds).
            let div = 10i128.pow(d.scale as u32);
            Value::Int(
                i64::try_from(d.units / div)
                    .map_err(|_| SqlError::Runtime("integer overflow in CAST".into()))?,
            )
        }
        (Type::Int, Value::Bool(b)) => Value::Int(b as i64),
        (Type::Int, Value::Int(i)) => Value::Int(i),
        (Type::Dec(p, s), Value::Text(t)) => match Decimal::parse(t.trim()) {
            Some(d) => Value::Dec(d).coerce(Type::Dec(p, s), "CAST")?,
            None => return Err(bad(&Value::Text(t))),
        },
        (Type::Dec(..), v @ (Value::Int(_) | Value::Dec(_))) => v.coerce(ty, "CAST")?,
        (Type::Bool, Value::Text(t)) => match t.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" => Value::Bool(true),
            "false" | "f" | "0" | "no" => Value::Bool(false),
            _ => return Err(bad(&Value::Text(t))),
        },
        (Type::Bool, Value::Int(i)) => Value::Bool(i != 0),
        (Type::Bool, Value::Bool(b)) => Value::Bool(b),
        (Type::Bytes, Value::Text(t)) => Value::Bytes(t.into_bytes()),
        (Type::Bytes, Value::Bytes(b)) => Value::Bytes(b),
        (_, v) => return Err(bad(&v)),
    })
}

/// An aggregate's running state.
#[derive(Default)]
struct Acc {
    count: i64,
    value: Option<Value>,
    seen: Option<std::collections::HashSet<Value>>,
    /// `avg`: the exact sum so far (i128 units at the largest scale seen).
    sum: Option<Decimal>,
}

fn avg_overflow() -> SqlError {
    SqlError::Runtime("integer overflow in avg".into())
}

impl Acc {
    /// [`Acc::add`] of a value read in place: integers and counts without a copy.
    fn add_ref(&mut self, func: AggFunc, distinct: bool, v: &Value) -> Result<(), SqlError> {
        if !distinct {
            match v {
                Value::Null => return Ok(()),
                _ if func == AggFunc::Count => {
                    self.count += 1;
                    return Ok(());
                }
                Value::Int(y) if self.int_in_place(func, *y)? => {
                    self.count += 1;
                    return Ok(());
                }
                _ => {}
            }
        }
        self.add(func, distinct, Some(v.clone()))
    }

    /// An integer SUM, MIN or MAX over an integer so far, updated in place; false when it is not
    /// one (nothing changed then).
    fn int_in_place(&mut self, func: AggFunc, y: i64) -> Result<bool, SqlError> {
        let Some(Value::Int(x)) = &mut self.value else { return Ok(false) };
        *x = match func {
            AggFunc::Sum => {
                x.checked_add(y).ok_or_else(|| SqlError::Runtime("integer overflow in +".into()))?
            }
            AggFunc::Min => (*x).min(y),
            AggFunc::Max => (*x).max(y),
            AggFunc::Count | AggFunc::Avg => return Ok(false),
        };
        Ok(true)
    }

    fn add(&mut self, func: AggFunc, distinct: bool, v: Option<Value>) -> Result<(), SqlError> {
        let Some(v) = v else {
            self.count += 1; // COUNT(*)
            return Ok(());
        };
        if v.is_null() {
            return Ok(());
        }
        if distinct && !self.seen.get_or_insert_with(Default::default).insert(v.clone()) {
            return Ok(());
        }
        self.count += 1;
        // Integers (most sums and extremes): in place, without moving values around.
        if let Value::Int(y) = v {
            if self.int_in_place(func, y)? {
                return Ok(());
            }
        }
        if func == AggFunc::Avg {
            let d = match &v {
                Value::Int(i) => Decimal { units: *i as i128, scale: 0 },
                Value::Dec(d) => *d,
                other => return Err(SqlError::Runtime(format!("avg of {}", other.type_name()))),
            };
            let sum = self.sum.unwrap_or(Decimal { units: 0, scale: d.scale });
            let scale = sum.scale.max(d.scale);
            let (a, b) = (sum.rescale(scale)?, d.rescale(scale)?);
            let units = a.units.checked_add(b.units).ok_or_else(avg_overflow)?;
            self.sum = Some(Decimal { units, scale });
            return Ok(());
        }
        self.value = Some(match (func, self.value.take()) {
            (_, None) => v,
            (AggFunc::Count | AggFunc::Avg, Some(x)) => x,
            (AggFunc::Sum, Some(x)) => arith(super::value::Arith::Add, &x, &v)?,
            (AggFunc::Min, Some(x)) => {
                if compare(&v, &x)? == Ordering::Less {
                    v
                } else {
                    x
                }
            }
            (AggFunc::Max, Some(x)) => {
                if compare(&v, &x)? == Ordering::Greater {
                    v
                } else {
                    x
                }
            }
        });
        Ok(())
    }

    fn finish(self, func: AggFunc) -> Result<Value, SqlError> {
        Ok(match func {
            AggFunc::Count => Value::Int(self.count),
            AggFunc::Avg => match self.sum {
                None => Value::Null,
                Some(sum) => {
                    // sum / count at the result scale, rounded half away from zero.
                    let scale = sum.scale.max(super::ir::AVG_MIN_SCALE);
                    let num = sum.rescale(scale).map_err(|_| avg_overflow())?.units;
                    let n = self.count as i128;
                    let (q, r) = (num / n, num % n);
                    let units = if r.abs() * 2 >= n { q + num.signum() } else { q };
                    let d = Decimal { units, scale };
                    if !d.fits(super::value::MAX_DECIMAL_PRECISION) {
                        return Err(avg_overflow());
                    }
                    Value::Dec(d)
                }
            },
            _ => self.value.unwrap_or(Value::Null),
        })
    }
}
