//! `aergo-bench sql`: AergoSQL's interpreter and JIT side by side, with SQLite as the peer.
//!
//! 1. Token transfers: the example token (`examples/contracts/token.sql`) with `--holders` funded
//!    accounts; blocks of `--calls` `transfer` calls between random holders (a few fail and
//!    revert). Each engine runs the same calls on the same in-memory state, each call on a write
//!    buffer that is kept only when it succeeds (as the executor does). SQLite runs the same
//!    statements per call — prepared, a SAVEPOINT per call so that a failed call can be undone, one
//!    transaction per block — on an in-memory database.
//! 2. An expression-heavy scan: `--rows` rows of four integers, one query whose WHERE and aggregate
//!    are arithmetic with CASE over every row. Same data in the contract state and in SQLite.
//!
//! 3. Join-heavy and compound: `--orders` orders of customers in 20 regions; a three-table join
//!    (two primary-key lookups per order) grouped by region, and a four-armed UNION / EXCEPT /
//!    UNION ALL ordered and limited.
//!
//! Every run must give the same answers (balances, scan result); the bench stops otherwise.

use aergo_primitives::types::Address;
use aergo_sql::interp::{CallCtx, Engine, Host};
use aergo_sql::store::{contract_address, row_key, Buffered, MemHost};
use aergo_sql::value::encode_row;
use aergo_sql::{compile, Compiled, EngineKind, Gas, Value};
use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use std::time::Instant;

pub struct SqlOpts {
    pub holders: usize,
    pub calls: usize,
    pub blocks: usize,
    pub rows: usize,
    /// Orders of the join-heavy and compound workloads.
    pub orders: usize,
    pub rounds: usize,
    /// One workload only (`token`, `rows`, `scan`, `shop`), else all of them.
    pub only: Option<String>,
}

const TOKEN: &str = include_str!("../../../examples/contracts/token.sql");

const SCAN_SCHEMA: &str =
    "CREATE TABLE big (k INTEGER PRIMARY KEY, a INTEGER NOT NULL, b INTEGER NOT NULL, c INTEGER NOT NULL);";

const SCAN_QUERY: &str = "SELECT COUNT(*), SUM(CASE WHEN a % 7 = 0 THEN b * 3 - c WHEN a % 7 < 3 THEN (b + c) / 2 ELSE a - b + c * 2 END) \
FROM big WHERE (a * 3 + b * 2 - c) % 11 < 6 AND (CASE WHEN b > c THEN b - c ELSE c - b END) BETWEEN 10 AND 900000 \
AND (a + b + c) % 5 <> 3 AND (a * b) % 13 <> (c % 13)";

fn holder(i: usize) -> String {
    format!("holder{i:06}")
}

/// The calls: (sender, recipient, amount), the same for every engine.
fn workload(holders: usize, n: usize, seed: u64) -> Vec<(usize, usize, i64)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let from = rng.gen_range(0..holders);
            let mut to = rng.gen_range(0..holders);
            if to == from {
                to = (to + 1) % holders;
            }
            // One call in 50 asks for more than anyone has: it fails and reverts.
            let amount = if rng.gen_ratio(1, 50) { 10_000_000 } else { rng.gen_range(1..100) };
            (from, to, amount)
        })
        .collect()
}

fn token_state(holders: usize) -> anyhow::Result<(Compiled, MemHost, Address)> {
    let checked = compile(TOKEN).map_err(|e| anyhow::anyhow!("token: {e}"))?;
    let addr = contract_address(&Address([9; 20]), 0);
    let mut host = MemHost::default();
    for i in 0..holders {
        let row = vec![Value::Text(holder(i)), Value::Int(1_000_000)];
        host.data.insert(row_key(&addr, 0, &row[..1]), encode_row(&row));
        // balances_by_amount entries (index 0): the amount, then the key.
        let mut k = aergo_sql::store::contract_prefix(&addr);
        k.push(b'i');
        k.push(0);
        aergo_sql::value::encode_key(&mut k, &row[1]);
        aergo_sql::value::encode_key(&mut k, &row[0]);
        host.data.insert(k, Vec::new());
    }
    Ok((Compiled::new(checked.contract), host, addr))
}

/// Runs the calls block by block; returns (seconds, failed calls, final balances of a few holders).
fn token_engine(
    kind: EngineKind,
    opts: &SqlOpts,
    calls: &[(usize, usize, i64)],
) -> anyhow::Result<(f64, usize, Vec<i64>)> {
    let (compiled, mut host, addr) = token_state(opts.holders)?;
    let contract = compiled.engine(kind);
    let mut failed = 0;
    let started = Instant::now();
    for (from, to, amount) in calls {
        let ctx = CallCtx {
            sender: holder(*from),
            self_address: addr.to_string(),
            height: 1,
            ..CallCtx::default()
        };
        let mut buf = Buffered::new(&mut host);
        let r = Engine::new(contract, &addr, &mut buf, &ctx, Gas::new(1_000_000))
            .call("transfer", vec![Value::Text(holder(*to)), Value::Int(*amount)]);
        match r {
            Ok(_) => buf.commit().map_err(|e| anyhow::anyhow!("{e}"))?,
            Err(_) => failed += 1,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let mut balances = Vec::new();
    for i in 0..5.min(opts.holders) {
        let raw =
            host.get(&row_key(&addr, 0, &[Value::Text(holder(i))])).map_err(|e| anyhow::anyhow!("{e}"))?;
        let row =
            aergo_sql::value::decode_row(&raw.context("holder row")?).map_err(|e| anyhow::anyhow!("{e}"))?;
        balances.push(if let Value::Int(x) = row[1] { x } else { -1 });
    }
    Ok((secs, failed, balances))
}

fn token_sqlite(opts: &SqlOpts, calls: &[(usize, usize, i64)]) -> anyhow::Result<(f64, usize, Vec<i64>)> {
    let db = rusqlite::Connection::open_in_memory()?;
    db.execute_batch(
        "CREATE TABLE balances (owner TEXT PRIMARY KEY, amount INTEGER NOT NULL CHECK (amount >= 0));
         CREATE INDEX balances_by_amount ON balances (amount);",
    )?;
    {
        let tx = db.unchecked_transaction()?;
        let mut ins = tx.prepare("INSERT INTO balances VALUES (?1, 1000000)")?;
        for i in 0..opts.holders {
            ins.execute([holder(i)])?;
        }
        drop(ins);
        tx.commit()?;
    }
    let mut debit = db.prepare("UPDATE balances SET amount = amount - ?2 WHERE owner = ?1")?;
    let mut exists = db.prepare("SELECT 1 FROM balances WHERE owner = ?1")?;
    let mut credit = db.prepare(
        "INSERT INTO balances VALUES (?1, ?2) ON CONFLICT (owner) DO UPDATE SET amount = balances.amount + excluded.amount",
    )?;
    let mut failed = 0;
    let started = Instant::now();
    for block in calls.chunks(opts.calls) {
        db.execute_batch("BEGIN")?;
        for (from, to, amount) in block {
            db.execute_batch("SAVEPOINT call")?;
            let ok = (|| -> rusqlite::Result<bool> {
                if *amount <= 0 {
                    return Ok(false);
                }
                debit.execute(rusqlite::params![holder(*from), amount])?;
                if !exists.exists([holder(*from)])? {
                    return Ok(false);
                }
                credit.execute(rusqlite::params![holder(*to), amount])?;
                Ok(true)
            })();
            if matches!(ok, Ok(true)) {
                db.execute_batch("RELEASE call")?;
            } else {
                failed += 1;
                db.execute_batch("ROLLBACK TO call; RELEASE call")?;
            }
        }
        db.execute_batch("COMMIT")?;
    }
    let secs = started.elapsed().as_secs_f64();
    let mut balances = Vec::new();
    for i in 0..5.min(opts.holders) {
        balances
            .push(db.query_row("SELECT amount FROM balances WHERE owner = ?1", [holder(i)], |r| r.get(0))?);
    }
    Ok((secs, failed, balances))
}

/// A read-only snapshot of the state in two contiguous arrays (sorted keys, values), the way an
/// SST file or a page cache holds it: what a scan of the scan bench reads, for both engines. (The
/// map-based `MemHost` spends more time chasing its heap nodes than the engines spend on a row;
/// its figure is printed too.)
struct FrozenHost {
    keys: Vec<u8>,
    values: Vec<u8>,
    /// (key end, value end) per entry.
    ends: Vec<(usize, usize)>,
}

impl FrozenHost {
    fn new(m: &MemHost) -> FrozenHost {
        let mut f = FrozenHost { keys: Vec::new(), values: Vec::new(), ends: Vec::new() };
        for (k, v) in &m.data {
            f.keys.extend_from_slice(k);
            f.values.extend_from_slice(v);
            f.ends.push((f.keys.len(), f.values.len()));
        }
        f
    }

    fn entry(&self, i: usize) -> (&[u8], &[u8]) {
        let (ks, vs) = if i == 0 { (0, 0) } else { self.ends[i - 1] };
        let (ke, ve) = self.ends[i];
        (&self.keys[ks..ke], &self.values[vs..ve])
    }

    /// First entry at or after `key` (or after it when `exclusive`).
    fn seek(&self, key: &[u8], exclusive: bool) -> usize {
        let (mut lo, mut hi) = (0, self.ends.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let k = self.entry(mid).0;
            if k < key || (exclusive && k == key) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

impl Host for FrozenHost {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, aergo_sql::SqlError> {
        let i = self.seek(key, false);
        Ok((i < self.ends.len() && self.entry(i).0 == key).then(|| self.entry(i).1.to_vec()))
    }

    fn put(&mut self, _: Vec<u8>, _: Option<Vec<u8>>) -> Result<(), aergo_sql::SqlError> {
        Err(aergo_sql::SqlError::Runtime("read-only snapshot".into()))
    }

    fn scan(&mut self, prefix: &[u8]) -> Result<aergo_sql::interp::Entries, aergo_sql::SqlError> {
        let mut out = Vec::new();
        let mut i = self.seek(prefix, false);
        while i < self.ends.len() && self.entry(i).0.starts_with(prefix) {
            let (k, v) = self.entry(i);
            out.push((k.to_vec(), v.to_vec()));
            i += 1;
        }
        Ok(out)
    }

    fn transfer_native(&mut self, _: &str, _: u128) -> Result<(), aergo_sql::SqlError> {
        Err(aergo_sql::SqlError::Runtime("read-only snapshot".into()))
    }

    fn emit(&mut self, _: &str, _: Vec<aergo_sql::Value>) -> Result<(), aergo_sql::SqlError> {
        Err(aergo_sql::SqlError::Runtime("read-only snapshot".into()))
    }

    /// Read-only: nothing to take back.
    fn savepoint(&mut self) -> bool {
        true
    }

    fn scan_chunk(
        &mut self,
        prefix: &[u8],
        after: Option<&[u8]>,
        max: usize,
        out: &mut aergo_sql::interp::ScanChunk,
    ) -> Result<(), aergo_sql::SqlError> {
        out.clear();
        let mut i = match after {
            Some(a) => self.seek(a, true),
            None => self.seek(prefix, false),
        };
        while i < self.ends.len() && out.len() < max {
            let (k, v) = self.entry(i);
            if !k.starts_with(prefix) {
                break;
            }
            out.push(k, v);
            i += 1;
        }
        out.done = i >= self.ends.len() || !self.entry(i).0.starts_with(prefix);
        Ok(())
    }
}

fn scan_data(rows: usize) -> Vec<[i64; 4]> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    (0..rows as i64)
        .map(|k| [k, rng.gen_range(0..1_000_000), rng.gen_range(0..1_000_000), rng.gen_range(0..1_000_000)])
        .collect()
}

fn scan_engine<H: Host>(
    kind: EngineKind,
    compiled: &Compiled,
    host: &mut H,
    addr: &Address,
    query: &str,
) -> anyhow::Result<(f64, Vec<Value>)> {
    let (secs, rows) = query_engine(kind, compiled, host, addr, query)?;
    Ok((secs, rows.into_iter().next().unwrap_or_default()))
}

fn scan_sqlite(data: &[[i64; 4]], query: &str) -> anyhow::Result<(f64, Vec<Value>)> {
    let db = rusqlite::Connection::open_in_memory()?;
    db.execute_batch(SCAN_SCHEMA)?;
    {
        let tx = db.unchecked_transaction()?;
        let mut ins = tx.prepare("INSERT INTO big VALUES (?1, ?2, ?3, ?4)")?;
        for r in data {
            ins.execute(rusqlite::params![r[0], r[1], r[2], r[3]])?;
        }
        drop(ins);
        tx.commit()?;
    }
    let mut st = db.prepare(query)?;
    let started = Instant::now();
    let (n, sum): (i64, Option<i64>) = st.query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    drop(st);
    Ok((started.elapsed().as_secs_f64(), vec![Value::Int(n), sum.map_or(Value::Null, Value::Int)]))
}

fn best<T: Clone>(runs: &[(f64, T)]) -> (f64, T) {
    let mut b = runs[0].clone();
    for r in runs {
        if r.0 < b.0 {
            b = r.clone();
        }
    }
    b
}

pub fn run(opts: SqlOpts) -> anyhow::Result<()> {
    let all = ["token", "rows", "scan", "shop"];
    if let Some(o) = &opts.only {
        if !all.contains(&o.as_str()) {
            bail!("--only {o}: the workloads are {}", all.join(", "));
        }
    }
    let runs = |w: &str| opts.only.as_deref().is_none_or(|o| o == w);
    if runs("token") {
        token(&opts)?;
    }
    if runs("rows") || runs("scan") {
        scan(&opts, runs("rows"), runs("scan"))?;
    }
    if runs("shop") {
        shop(&opts)?;
    }
    Ok(())
}

fn token(opts: &SqlOpts) -> anyhow::Result<()> {
    let total = opts.calls * opts.blocks;
    let calls = workload(opts.holders, total, 42);
    println!(
        "token transfers: {} holders, {} blocks × {} calls (best of {} rounds)",
        opts.holders, opts.blocks, opts.calls, opts.rounds
    );
    let mut rows: Vec<(&str, f64, usize, Vec<i64>)> = Vec::new();
    for (name, kind) in
        [("interpreter", Some(EngineKind::Interpreter)), ("jit", Some(EngineKind::Jit)), ("sqlite", None)]
    {
        let mut runs = Vec::new();
        for _ in 0..opts.rounds {
            let (secs, failed, balances) = match kind {
                Some(k) => token_engine(k, opts, &calls)?,
                None => token_sqlite(opts, &calls)?,
            };
            runs.push((secs, (failed, balances)));
        }
        let (secs, (failed, balances)) = best(&runs);
        rows.push((name, secs, failed, balances));
    }
    for r in &rows[1..] {
        if (r.2, &r.3) != (rows[0].2, &rows[0].3) {
            bail!(
                "{} disagrees with the interpreter: failed {} vs {}, balances {:?} vs {:?}",
                r.0,
                r.2,
                rows[0].2,
                r.3,
                rows[0].3
            );
        }
    }
    let interp = rows[0].1;
    println!("| engine | calls/s | vs interpreter | failed (reverted) | holder0 balance |");
    println!("|---|---|---|---|---|");
    for (name, secs, failed, balances) in &rows {
        println!(
            "| {name} | {:.0} | {:.2}× | {failed} | {} |",
            total as f64 / secs,
            interp / secs,
            balances.first().copied().unwrap_or(0)
        );
    }

    Ok(())
}

/// Reading rows alone, and the expression-heavy scan, over the same `--rows` rows.
fn scan(opts: &SqlOpts, rows_alone: bool, expressions: bool) -> anyhow::Result<()> {
    let data = scan_data(opts.rows);
    let checked = compile(SCAN_SCHEMA).map_err(|e| anyhow::anyhow!("{e}"))?;
    let compiled = Compiled::new(checked.contract);
    let addr = contract_address(&Address([8; 20]), 0);
    let mut host = MemHost::default();
    for r in &data {
        let row: Vec<Value> = r.iter().map(|x| Value::Int(*x)).collect();
        host.data.insert(row_key(&addr, 0, &row[..1]), encode_row(&row));
    }
    let mut frozen = FrozenHost::new(&host);
    if rows_alone {
        // The same rows with next to no expression work: what reading and decoding rows costs.
        let q = "SELECT COUNT(*), SUM(a) FROM big";
        println!("\nrows alone: `{q}` over {} rows (best of {} rounds)", opts.rows, opts.rounds);
        let (map_secs, _) = scan_engine(EngineKind::Jit, &compiled, &mut host, &addr, q)?;
        scan_table(opts, &compiled, &mut frozen, &addr, &data, q)?;
        println!(
            "(the JIT from the map host, whose heap nodes cost more than a row: {:.0} ms)",
            map_secs * 1000.0
        );
    }
    if expressions {
        println!("\nexpression-heavy scan: {} rows (best of {} rounds)", opts.rows, opts.rounds);
        scan_table(opts, &compiled, &mut frozen, &addr, &data, SCAN_QUERY)?;
    }
    Ok(())
}

/// One query over the scan's rows in each engine and SQLite: a table with ratios.
fn scan_table(
    opts: &SqlOpts,
    compiled: &Compiled,
    frozen: &mut FrozenHost,
    addr: &Address,
    data: &[[i64; 4]],
    query: &str,
) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for (name, kind) in
        [("interpreter", Some(EngineKind::Interpreter)), ("jit", Some(EngineKind::Jit)), ("sqlite", None)]
    {
        let mut runs = Vec::new();
        for _ in 0..opts.rounds {
            runs.push(match kind {
                Some(k) => scan_engine(k, compiled, frozen, addr, query)?,
                None => scan_sqlite(data, query)?,
            });
        }
        let (secs, answer) = best(&runs);
        results.push((name, secs, answer));
    }
    for r in &results[1..] {
        if r.2 != results[0].2 {
            bail!("{} disagrees on the scan: {:?} vs {:?}", r.0, r.2, results[0].2);
        }
    }
    let interp = results[0].1;
    let lite = results[2].1;
    println!("| engine | ms | rows/s | vs interpreter | vs sqlite (speed) | result |");
    println!("|---|---|---|---|---|---|");
    for (name, secs, answer) in &results {
        println!(
            "| {name} | {:.0} | {:.0} | {:.2}× | {:.2}× | {} |",
            secs * 1000.0,
            opts.rows as f64 / secs,
            interp / secs,
            lite / secs,
            answer.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

/// The join-heavy and compound workloads: orders of customers in regions.
const SHOP_SCHEMA: &str = "CREATE TABLE regions (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE customers (id INTEGER PRIMARY KEY, region INTEGER NOT NULL, since INTEGER NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER NOT NULL, amount INTEGER NOT NULL);
CREATE INDEX orders_by_customer ON orders (customer);";

/// Three joined tables (two key lookups per order), grouped.
const JOIN_QUERY: &str = "SELECT r.name, COUNT(*), SUM(o.amount) FROM orders o \
JOIN customers c ON c.id = o.customer JOIN regions r ON r.id = c.region \
WHERE o.amount % 10 < 7 AND c.since < 900 GROUP BY r.name ORDER BY r.name";

/// Four arms of a compound, ordered and limited.
const COMPOUND_QUERY: &str = "SELECT customer FROM orders WHERE amount > 900 \
UNION SELECT id FROM customers WHERE region < 3 \
EXCEPT SELECT customer FROM orders WHERE amount < 20 \
UNION ALL SELECT id FROM customers WHERE since = 7 ORDER BY 1 DESC LIMIT 50";

/// (regions, customers, orders) rows, the same for both databases.
type Shop = (Vec<(i64, String)>, Vec<[i64; 3]>, Vec<[i64; 3]>);

fn shop_data(orders: usize) -> Shop {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let customers = (orders / 10).max(10);
    let regions: Vec<(i64, String)> = (0..20).map(|i| (i, format!("region-{i:02}"))).collect();
    let cs = (0..customers as i64).map(|i| [i, rng.gen_range(0..20), rng.gen_range(0..1000)]).collect();
    let os =
        (0..orders as i64).map(|i| [i, rng.gen_range(0..customers as i64), rng.gen_range(1..1000)]).collect();
    (regions, cs, os)
}

/// The shop in a contract's state (rows and index entries as the engine writes them).
fn shop_host(shop: &Shop, addr: &Address) -> anyhow::Result<(Compiled, MemHost)> {
    let checked = compile(SHOP_SCHEMA).map_err(|e| anyhow::anyhow!("{e}"))?;
    let compiled = Compiled::new(checked.contract);
    let mut host = MemHost::default();
    let (regions, customers, orders) = shop;
    for (id, name) in regions {
        let row = vec![Value::Int(*id), Value::Text(name.clone())];
        host.data.insert(row_key(addr, 0, &row[..1]), encode_row(&row));
    }
    for c in customers {
        let row: Vec<Value> = c.iter().map(|x| Value::Int(*x)).collect();
        host.data.insert(row_key(addr, 1, &row[..1]), encode_row(&row));
    }
    for o in orders {
        let row: Vec<Value> = o.iter().map(|x| Value::Int(*x)).collect();
        host.data.insert(row_key(addr, 2, &row[..1]), encode_row(&row));
        // orders_by_customer (index 0): the customer, then the key.
        let mut k = aergo_sql::store::contract_prefix(addr);
        k.push(b'i');
        k.push(0);
        aergo_sql::value::encode_key(&mut k, &row[1]);
        aergo_sql::value::encode_key(&mut k, &row[0]);
        host.data.insert(k, Vec::new());
    }
    Ok((compiled, host))
}

fn shop_sqlite(shop: &Shop) -> anyhow::Result<rusqlite::Connection> {
    let db = rusqlite::Connection::open_in_memory()?;
    db.execute_batch(SHOP_SCHEMA)?;
    let tx = db.unchecked_transaction()?;
    {
        let (regions, customers, orders) = shop;
        let mut ins = tx.prepare("INSERT INTO regions VALUES (?1, ?2)")?;
        for (id, name) in regions {
            ins.execute(rusqlite::params![id, name])?;
        }
        let mut ins = tx.prepare("INSERT INTO customers VALUES (?1, ?2, ?3)")?;
        for c in customers {
            ins.execute(rusqlite::params![c[0], c[1], c[2]])?;
        }
        let mut ins = tx.prepare("INSERT INTO orders VALUES (?1, ?2, ?3)")?;
        for o in orders {
            ins.execute(rusqlite::params![o[0], o[1], o[2]])?;
        }
    }
    tx.commit()?;
    Ok(db)
}

/// Every row of a query from SQLite, as values.
fn sqlite_all(db: &rusqlite::Connection, query: &str) -> anyhow::Result<(f64, Vec<Vec<Value>>)> {
    let mut st = db.prepare(query)?;
    let n = st.column_count();
    let started = Instant::now();
    let rows = st
        .query_map([], |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Integer(x) => Value::Int(x),
                        rusqlite::types::ValueRef::Text(t) => {
                            Value::Text(String::from_utf8_lossy(t).into_owned())
                        }
                        _ => Value::Null,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((started.elapsed().as_secs_f64(), rows))
}

fn query_engine<H: Host>(
    kind: EngineKind,
    compiled: &Compiled,
    host: &mut H,
    addr: &Address,
    query: &str,
) -> anyhow::Result<(f64, Vec<Vec<Value>>)> {
    let select =
        aergo_sql::check::Checker::for_contract(&aergo_sql::Limits::default(), &compiled.interpreted)
            .check_query(query)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let select = match kind {
        EngineKind::Interpreter => select,
        EngineKind::Jit => {
            aergo_sql::jit::compile_query(&compiled.interpreted, select).map_err(anyhow::Error::msg)?
        }
    };
    let ctx = CallCtx::default();
    let started = Instant::now();
    let r = Engine::new(compiled.engine(kind), addr, host, &ctx, Gas::unlimited())
        .query(&select)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((started.elapsed().as_secs_f64(), r.rows))
}

/// The join-heavy and compound workloads: interpreter, JIT and SQLite, best of `rounds`.
fn shop(opts: &SqlOpts) -> anyhow::Result<()> {
    let data = shop_data(opts.orders);
    let addr = contract_address(&Address([7; 20]), 0);
    let (compiled, host) = shop_host(&data, &addr)?;
    let mut frozen = FrozenHost::new(&host);
    let db = shop_sqlite(&data)?;
    for (name, query) in [("join-heavy", JOIN_QUERY), ("compound", COMPOUND_QUERY)] {
        println!(
            "\n{name}: {} orders, {} customers, 20 regions (best of {} rounds)\n`{query}`",
            data.2.len(),
            data.1.len(),
            opts.rounds
        );
        let mut results = Vec::new();
        for (engine, kind) in
            [("interpreter", Some(EngineKind::Interpreter)), ("jit", Some(EngineKind::Jit)), ("sqlite", None)]
        {
            let mut runs = Vec::new();
            for _ in 0..opts.rounds {
                runs.push(match kind {
                    Some(k) => query_engine(k, &compiled, &mut frozen, &addr, query)?,
                    None => sqlite_all(&db, query)?,
                });
            }
            let (secs, rows) = best(&runs);
            results.push((engine, secs, rows));
        }
        for r in &results[1..] {
            if r.2 != results[0].2 {
                bail!("{} disagrees on {name}: {:?} vs {:?}", r.0, r.2.first(), results[0].2.first());
            }
        }
        let (interp, lite) = (results[0].1, results[2].1);
        println!("| engine | ms | vs interpreter | vs sqlite | rows |");
        println!("|---|---|---|---|---|");
        for (engine, secs, rows) in &results {
            println!(
                "| {engine} | {:.1} | {:.2}× | {:.2}× | {} |",
                secs * 1000.0,
                interp / secs,
                lite / secs,
                rows.len()
            );
        }
    }
    Ok(())
}
