//! Access sets: which rows a function may read and write, for the execution pipeline's dependency
//! analysis and for `get_contract`.
//!
//! Per function and table: either *keys* — each a primary key whose every column comes from a
//! parameter, `sender()` or a literal, so a call's concrete rows follow from its arguments and
//! sender — or the *whole table* (a scan, an index range, a key computed from a row or a variable,
//! INSERT … SELECT). A write to a row also writes its index entries; those entries carry the row's
//! key, so two calls writing different rows never write the same entry. A UNIQUE index is read as a
//! whole by every insert or update that may change it. Native coins moved by `transfer_native` touch
//! the contract's account (and the recipient's).

use super::ir::{
    Access, Body, Builtin, ConflictAction, Contract, Expr, Function, InsertSource, Select, Stmt,
};
use super::value::{encode_key, encode_text_key, Value};
use std::collections::BTreeMap;

/// Where one key column's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyPart {
    Param(usize),
    Sender,
    Const(Value),
}

/// What a function touches in one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableAccess {
    Keys(Vec<Vec<KeyPart>>),
    Whole,
}

impl TableAccess {
    fn add(&mut self, other: TableAccess) {
        match (&mut *self, other) {
            (TableAccess::Whole, _) => {}
            (_, TableAccess::Whole) => *self = TableAccess::Whole,
            (TableAccess::Keys(a), TableAccess::Keys(b)) => {
                for k in b {
                    if !a.contains(&k) {
                        a.push(k);
                    }
                }
            }
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FunctionAccess {
    pub reads: BTreeMap<usize, TableAccess>,
    pub writes: BTreeMap<usize, TableAccess>,
    /// Moves native coins out of the contract's account.
    pub native: bool,
}

fn note(map: &mut BTreeMap<usize, TableAccess>, table: usize, a: TableAccess) {
    match map.get_mut(&table) {
        Some(x) => x.add(a),
        None => {
            map.insert(table, a);
        }
    }
}

/// Whether `e` is known before the call runs: a parameter, `sender()` or a literal.
fn key_part(e: &Expr, params: usize) -> Option<KeyPart> {
    match e {
        Expr::Var(i) if *i < params => Some(KeyPart::Param(*i)),
        Expr::Func(Builtin::Sender, _) => Some(KeyPart::Sender),
        Expr::Const(v) => Some(KeyPart::Const(v.clone())),
        Expr::Jit(j) => key_part(&j.fallback, params),
        _ => None,
    }
}

fn access_of(access: &Access, params: usize) -> TableAccess {
    match access {
        Access::Point(keys) => match keys.iter().map(|k| key_part(k, params)).collect::<Option<Vec<_>>>() {
            Some(parts) => TableAccess::Keys(vec![parts]),
            None => TableAccess::Whole,
        },
        _ => TableAccess::Whole,
    }
}

struct Walker<'c> {
    contract: &'c Contract,
    params: usize,
    out: FunctionAccess,
}

impl Walker<'_> {
    fn expr(&mut self, e: &Expr) {
        e.walk(0, &mut |x, _| match x {
            Expr::Func(Builtin::TransferNative, _) => self.out.native = true,
            x => {
                if let Some(q) = x.subquery() {
                    self.select_reads(q)
                }
            }
        });
    }

    /// Reads of a query, its compound arms and its subqueries.
    fn select_reads(&mut self, q: &Select) {
        let (params, reads) = (self.params, &mut self.out.reads);
        q.each_query(&mut |s| {
            for src in &s.from {
                note(reads, src.table, access_of(&src.access, params));
            }
        });
    }

    fn select(&mut self, q: &Select) {
        self.select_reads(q);
    }

    fn unique_reads(&mut self, table: usize) {
        let t = &self.contract.tables[table];
        if t.indexes.iter().any(|&ix| self.contract.indexes[ix].unique) {
            note(&mut self.out.reads, table, TableAccess::Whole);
        }
    }

    fn stmts(&mut self, stmts: &[Stmt]) {
        for s in stmts {
            match s {
                Stmt::Assign(_, e) | Stmt::Raise(e) | Stmt::Perform(e) => self.expr(e),
                Stmt::Return(e) => e.iter().for_each(|e| self.expr(e)),
                Stmt::Emit(_, args) => args.iter().for_each(|e| self.expr(e)),
                Stmt::If { branches, otherwise } => {
                    for (c, b) in branches {
                        self.expr(c);
                        self.stmts(b);
                    }
                    self.stmts(otherwise);
                }
                Stmt::SelectInto(q, _) => self.select(q),
                Stmt::Insert(i) => {
                    let t = &self.contract.tables[i.table];
                    let a = match &i.source {
                        InsertSource::Values(rows) => {
                            let mut keys = Vec::new();
                            for r in rows {
                                r.iter().for_each(|e| self.expr(e));
                                let parts: Option<Vec<KeyPart>> =
                                    t.pk.iter()
                                        .map(|c| {
                                            i.columns
                                                .iter()
                                                .position(|x| x == c)
                                                .and_then(|p| key_part(&r[p], self.params))
                                        })
                                        .collect();
                                match parts {
                                    Some(p) => keys.push(p),
                                    None => {
                                        keys.clear();
                                        break;
                                    }
                                }
                            }
                            if keys.is_empty() {
                                TableAccess::Whole
                            } else {
                                TableAccess::Keys(keys)
                            }
                        }
                        InsertSource::Query(q) => {
                            self.select(q);
                            TableAccess::Whole
                        }
                    };
                    // The key is read (does the row exist?) and, on conflict, updated.
                    note(&mut self.out.reads, i.table, a.clone());
                    note(&mut self.out.writes, i.table, a);
                    self.unique_reads(i.table);
                    if let Some(oc) = &i.on_conflict {
                        if let ConflictAction::Update { sets, filter } = &oc.action {
                            sets.iter().for_each(|(_, e)| self.expr(e));
                            filter.iter().for_each(|e| self.expr(e));
                        }
                    }
                }
                Stmt::Update(u) => {
                    let a = access_of(&u.access, self.params);
                    note(&mut self.out.reads, u.table, a.clone());
                    note(&mut self.out.writes, u.table, a);
                    self.unique_reads(u.table);
                    u.sets.iter().for_each(|(_, e)| self.expr(e));
                    u.filter.iter().for_each(|e| self.expr(e));
                }
                Stmt::Delete(d) => {
                    let a = access_of(&d.access, self.params);
                    note(&mut self.out.reads, d.table, a.clone());
                    note(&mut self.out.writes, d.table, a);
                    d.filter.iter().for_each(|e| self.expr(e));
                }
            }
        }
    }
}

/// The access set of `f`.
pub fn function_access(contract: &Contract, f: &Function) -> FunctionAccess {
    let mut w = Walker { contract, params: f.params.len(), out: FunctionAccess::default() };
    match &f.body {
        Body::Query(q) => w.select(q),
        Body::Block(stmts) => w.stmts(stmts),
    }
    w.out
}

/// The concrete primary keys (encoded as in the row keys) of a call, per table; `None` for a table
/// the call may touch as a whole.
pub fn call_keys(access: &TableAccess, args: &[Value], sender: &str) -> Option<Vec<Vec<u8>>> {
    let TableAccess::Keys(keys) = access else { return None };
    let mut out = Vec::with_capacity(keys.len());
    for parts in keys {
        let mut k = Vec::with_capacity(64);
        for p in parts {
            match p {
                KeyPart::Param(i) => encode_key(&mut k, args.get(*i).unwrap_or(&Value::Null)),
                KeyPart::Sender => encode_text_key(&mut k, sender),
                KeyPart::Const(v) => encode_key(&mut k, v),
            }
        }
        out.push(k);
    }
    Some(out)
}

/// `table[pk = …]` / `table (whole)` for people.
pub fn describe(contract: &Contract, f: &Function, table: usize, a: &TableAccess) -> String {
    let t = &contract.tables[table];
    match a {
        TableAccess::Whole => format!("{} (whole table)", t.name),
        TableAccess::Keys(keys) => {
            let shown: Vec<String> = keys
                .iter()
                .map(|parts| {
                    let cols: Vec<String> = t
                        .pk
                        .iter()
                        .zip(parts)
                        .map(|(c, p)| {
                            let v = match p {
                                KeyPart::Param(i) => f.params.get(*i).map_or("?".into(), |(n, _)| n.clone()),
                                KeyPart::Sender => "sender()".into(),
                                KeyPart::Const(v) => format!("{v}"),
                            };
                            format!("{} = {v}", t.columns[*c].name)
                        })
                        .collect();
                    format!("{}[{}]", t.name, cols.join(", "))
                })
                .collect();
            shown.join(", ")
        }
    }
}

/// Whether a query reads some table whole (a scan of all its rows), in itself or in a subquery:
/// what makes it *heavy* for the query threads (`docs/aergosql.md`, "Queries on a public RPC").
/// Lookups by primary key and index prefixes are bounded by their keys and make it light.
pub fn scans_a_table(q: &Select) -> bool {
    let mut found = false;
    q.each_query(&mut |s| {
        // An index scan with no key fixed (an ordered scan) reads the whole index; a query runs
        // its first table through `ordered_access` when it has one.
        let accesses = s.from.iter().enumerate().map(|(i, src)| match (&s.ordered_access, i) {
            (Some(a), 0) => a,
            _ => &src.access,
        });
        found |= accesses.into_iter().any(|a| match a {
            Access::Scan => true,
            Access::Index(_, keys) => keys.is_empty(),
            Access::Point(_) => false,
        });
    });
    found
}

/// Whether a function may read or write some table whole (see [`scans_a_table`]).
pub fn function_is_heavy(a: &FunctionAccess) -> bool {
    a.reads.values().chain(a.writes.values()).any(|t| *t == TableAccess::Whole)
}
