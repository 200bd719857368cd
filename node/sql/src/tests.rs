use super::store::{contract_address, Buffered, MemHost};
use super::*;
use aergo_primitives::types::Address;

pub const TOKEN: &str = include_str!("../../../examples/contracts/token.sql");

fn ctx(sender: &str) -> CallCtx {
    CallCtx {
        sender: sender.into(),
        self_address: "contract".into(),
        height: 7,
        time_ms: 7000,
        tx_hash: "ab".into(),
        value: 0,
    }
}

/// Runs a call as the executor does: on a buffer that is dropped when the call fails.
fn call(
    host: &mut MemHost,
    c: &ir::Contract,
    who: &str,
    f: &str,
    args: Vec<Value>,
) -> Result<QueryResult, SqlError> {
    let addr = contract_address(&Address([1; 20]), 0);
    let cx = ctx(who);
    let mut buf = Buffered::new(host);
    let out = Engine::new(c, &addr, &mut buf, &cx, Gas::new(1_000_000)).call(f, args)?;
    buf.commit()?;
    Ok(out)
}

fn deploy(sql: &str, who: &str) -> (ir::Contract, MemHost) {
    let checked = compile(sql).expect("compiles");
    let mut host = MemHost::default();
    let addr = contract_address(&Address([1; 20]), 0);
    let cx = ctx(who);
    Engine::new(&checked.contract, &addr, &mut host, &cx, Gas::new(1_000_000))
        .construct(&checked.constructor)
        .unwrap();
    (checked.contract, host)
}

fn int(r: QueryResult) -> i64 {
    match &r.rows[0][0] {
        Value::Int(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

#[test]
fn token_transfers_and_reverts() {
    let (c, mut host) = deploy(TOKEN, "alice");
    let bal = |h: &mut MemHost, who: &str| {
        int(call(h, &c, "x", "balance_of", vec![Value::Text(who.into())]).unwrap())
    };
    assert_eq!(bal(&mut host, "alice"), 1_000_000);
    call(&mut host, &c, "alice", "transfer", vec![Value::Text("bob".into()), Value::Int(300)]).unwrap();
    call(&mut host, &c, "alice", "transfer", vec![Value::Text("bob".into()), Value::Int(200)]).unwrap();
    assert_eq!((bal(&mut host, "alice"), bal(&mut host, "bob"), bal(&mut host, "carol")), (999_500, 500, 0));
    let before = host.data.clone();
    let e = call(&mut host, &c, "bob", "transfer", vec![Value::Text("carol".into()), Value::Int(501)])
        .unwrap_err();
    assert!(e.to_string().contains("CHECK"), "{e}");
    let e =
        call(&mut host, &c, "bob", "transfer", vec![Value::Text("carol".into()), Value::Int(0)]).unwrap_err();
    assert_eq!(e, SqlError::Raised("amount must be positive, not 0".into()));
    let e = call(&mut host, &c, "dave", "transfer", vec![Value::Text("carol".into()), Value::Int(1)])
        .unwrap_err();
    assert_eq!(e, SqlError::Raised("no balance".into()));
    assert_eq!(host.data, before, "failed calls change nothing");
    let h = call(&mut host, &c, "x", "holders", vec![]).unwrap();
    assert_eq!(h.columns, vec!["owner", "amount"]);
    assert_eq!(
        h.rows,
        vec![
            vec![Value::Text("alice".into()), Value::Int(999_500)],
            vec![Value::Text("bob".into()), Value::Int(500)]
        ]
    );
}

/// `CREATE EVENT` and `EMIT` (`docs/dapps.md`): the token's transfers emit `transfer` with the
/// arguments converted to their declared types, in both engines, charged per event and per
/// byte; a failed call's events go with its buffer; bad declarations and emissions are refused
/// at deploy with their line and column.
#[test]
fn events_are_declared_emitted_and_charged_alike_in_both_engines() {
    let compiled = Compiled::new(compile(TOKEN).unwrap().contract);
    assert_eq!(
        compiled.interpreted.events,
        vec![ir::EventDecl {
            name: "transfer".into(),
            params: vec![
                ("sender".into(), Type::Text),
                ("recipient".into(), Type::Text),
                ("amount".into(), Type::Int)
            ],
        }]
    );
    let silent = TOKEN.replace("  EMIT transfer(sender(), recipient, n);\n", "");
    assert_ne!(silent, TOKEN);
    let quiet = Compiled::new(compile(&silent).unwrap().contract);
    let addr = contract_address(&Address([1; 20]), 0);
    let (_, base) = deploy(TOKEN, "alice");
    let run = |c: &Compiled, kind: EngineKind, args: Vec<Value>| {
        let mut h = base.clone();
        let cx = ctx("alice");
        let mut buf = Buffered::new(&mut h);
        let mut e = Engine::new(c.engine(kind), &addr, &mut buf, &cx, Gas::new(1_000_000));
        let r = e.call("transfer", args);
        (r.map(|_| ()), e.gas.used, buf.events.clone())
    };
    let args = vec![t("bob"), Value::Int(300)];
    let (r, with, events) = run(&compiled, EngineKind::Interpreter, args.clone());
    r.unwrap();
    let want = vec![("transfer".to_string(), vec![t("alice"), t("bob"), Value::Int(300)])];
    assert_eq!(events, want);
    let (_, without, none) = run(&quiet, EngineKind::Interpreter, args.clone());
    assert!(none.is_empty());
    let bytes = aergo_primitives::value::encode_row(&want[0].1).len() as u64;
    let per_event = gas::STATEMENT + gas::EVENT + bytes.div_ceil(gas::EVENT_BYTES_PER_GAS);
    assert!(with - without >= per_event, "{with} - {without} < {per_event}");
    assert_eq!(
        run(&compiled, EngineKind::Jit, args.clone()),
        (Ok(()), with, events.clone()),
        "the JIT alike"
    );
    // A call that fails after emitting: the event is in the buffer the executor drops (and
    // keeps as reverted), once in both engines (the JIT hands the RAISE back: its attempt's
    // event is taken back and the interpreter's run emits it again).
    let raising = Compiled::new(
        compile(
            "CREATE TABLE t (k INTEGER PRIMARY KEY);\nCREATE EVENT hit (who TEXT, n INTEGER);\n\
             CREATE FUNCTION f(n INTEGER) RETURNS VOID AS $$\nBEGIN\n  EMIT hit(sender(), n);\n\
             IF n > 5 THEN RAISE EXCEPTION 'too big: %', n; END IF;\nEND $$;",
        )
        .unwrap()
        .contract,
    );
    let mut outcomes = Vec::new();
    for kind in [EngineKind::Interpreter, EngineKind::Jit] {
        let mut h = MemHost::default();
        let cx = ctx("alice");
        let mut buf = Buffered::new(&mut h);
        let mut e = Engine::new(raising.engine(kind), &addr, &mut buf, &cx, Gas::new(1_000_000));
        let r = e.call("f", vec![Value::Int(9)]);
        outcomes.push((r.map(|_| ()), e.gas.used, buf.events.clone()));
    }
    assert_eq!(outcomes[0], outcomes[1]);
    assert_eq!(outcomes[0].0, Err(SqlError::Raised("too big: 9".into())));
    assert_eq!(outcomes[0].2, vec![("hit".to_string(), vec![t("alice"), Value::Int(9)])]);

    let refused = |script: &str, want: &str, line: u64| {
        let e = compile(script).unwrap_err();
        match &e {
            SqlError::Compile { line: l, message, .. } if *l == line && message.contains(want) => {}
            _ => panic!("{script}: {e} (wanted line {line}: {want})"),
        }
    };
    let body = |stmt: &str| {
        format!(
            "CREATE TABLE t (k INTEGER PRIMARY KEY);\nCREATE EVENT hit (who TEXT, n INTEGER);\n\
             CREATE FUNCTION f(n INTEGER) RETURNS VOID AS $$\nBEGIN\n  {stmt}\nEND $$;"
        )
    };
    refused(&body("EMIT miss(sender(), n);"), "no event \"miss\" is declared", 5);
    refused(&body("EMIT hit(sender());"), "event hit has 2 arguments, EMIT gives 1", 5);
    refused(&body("EMIT hit(n, n);"), "argument who of event hit is TEXT; this is INTEGER", 5);
    refused(&body("EMIT hit;"), "EMIT needs an event and its arguments", 5);
    refused(
        "CREATE TABLE t (k INTEGER PRIMARY KEY);\nCREATE EVENT e (a TEXT);\nCREATE EVENT e (b TEXT);",
        "event e is declared twice",
        3,
    );
    refused(
        "CREATE TABLE t (k INTEGER PRIMARY KEY);\n\nCREATE EVENT e (a TEXT, a INTEGER);",
        "argument a of event e is listed twice",
        3,
    );
    refused("CREATE TABLE t (k INTEGER PRIMARY KEY);\nCREATE EVENT e (a WIDGET);", "WIDGET", 2);
    refused("CREATE TABLE t (k INTEGER PRIMARY KEY);\nCREATE EVENT e ();", "expected an argument name", 2);
    // A statement after a blanked event keeps its line: an error there names it.
    refused("CREATE EVENT e (a TEXT);\nCREATE TABLE t (k INTEGER PRIMARY KEY);\nCREATE TABEL u;", "", 3);
    // A cast says its type: a TEXT for an INTEGER argument is refused too.
    let c = compile(&body("EMIT hit(sender(), CAST(n AS TEXT));")).unwrap_err();
    assert!(c.to_string().contains("argument n of event hit is INTEGER; this is TEXT"), "{c}");
}

#[test]
fn unsupported_sql_is_refused_with_its_position() {
    let cases = [
        ("CREATE TABLE t (a INTEGER PRIMARY KEY, b REAL);", "line 1, column 40", "type REAL"),
        ("CREATE TABLE t (a INTEGER, rowid INTEGER);", "line 1", "hidden key column is rowid"),
        ("CREATE TABLE t (a DOUBLE PRECISION);", "line 1", "no approximate numbers"),
        ("CREATE TABLE t (a INTEGER PRIMARY KEY);\nCREATE INDEX i ON t (a);\nCREATE TABLE u (x INTEGER, PRIMARY KEY (x DESC));", "line 3", "DESC in a PRIMARY KEY"),
        ("CREATE TABLE t (a INTEGER PRIMARY KEY);\nDROP TABLE t;", "line 2, column 1", "unsupported: DROP TABLE"),
        (
            "CREATE TABLE t (a INTEGER PRIMARY KEY);\nCREATE FUNCTION f() RETURNS INTEGER AS $$\nBEGIN\n  RETURN nosuch + 1;\nEND $$;",
            "line 4, column 10",
            "no column or variable named nosuch",
        ),
        ("CREATE TABLE t (a INTEGER PRIMARY KEY);\nCREATE FUNCTION f() RETURNS INTEGER AS $$ SELECT a FROM t UNION SELECT a FROM t INTERSECT SELECT a FROM t $$;", "line 2", "write (… INTERSECT …)"),
        ("CREATE TABLE t (a INTEGER PRIMARY KEY);\nCREATE FUNCTION f() RETURNS INTEGER AS $$ SELECT a FROM t EXCEPT ALL SELECT a FROM t $$;", "line 2", "EXCEPT ALL"),
        ("CREATE TABLE t (a INTEGER PRIMARY KEY);\nCREATE FUNCTION f() RETURNS INTEGER AS $$ SELECT a FROM t UNION SELECT a, a FROM t $$;", "line 2", "same number of columns"),
        ("CREATE TABLE t (a INTEGER PRIMARY KEY, b INTEGER CHECK (b > 1.5e3));", "line 1", "floating-point"),
        ("CREATE TABLE t (a INTEGER PRIMARY KEY);\nCREATE FUNCTION f() RETURNS VOID AS $$\nBEGIN\n  IF 1 THEN\n  END;\nEND $$;", "line 5", "expected END IF"),
    ];
    for (sql, at, what) in cases {
        let e = compile(sql).err().unwrap_or_else(|| panic!("{sql} compiled")).to_string();
        assert!(e.contains(at) && e.contains(what), "{sql}\n→ {e}");
    }
}

pub const REGISTRY: &str = include_str!("../../../examples/contracts/registry.sql");
pub const VOTING: &str = include_str!("../../../examples/contracts/voting.sql");
pub const GUESTBOOK: &str = include_str!("../../../examples/contracts/guestbook.sql");
/// The fuzz seed with the language's less common parts (compounds, CROSS JOIN, ANY/ALL, …).
const LANGUAGE_SEED: &str = include_str!("../../../fuzz/seeds/sql/language.sql");

fn t(s: &str) -> Value {
    Value::Text(s.into())
}

#[test]
fn registry_example() {
    let (c, mut h) = deploy(REGISTRY, "alice");
    call(&mut h, &c, "alice", "register", vec![t("alice.aergo"), t("https://alice.example")]).unwrap();
    let e = call(&mut h, &c, "bob", "register", vec![t("alice.aergo"), t("x")]).unwrap_err();
    assert_eq!(e, SqlError::Raised("name alice.aergo is taken".into()));
    let e = call(&mut h, &c, "bob", "register", vec![t("ab"), t("x")]).unwrap_err();
    assert!(e.to_string().contains("CHECK"), "{e}");
    let e = call(&mut h, &c, "bob", "set_target", vec![t("alice.aergo"), t("evil")]).unwrap_err();
    assert_eq!(e, SqlError::Raised("you do not own alice.aergo".into()));
    let e = call(&mut h, &c, "bob", "owned", vec![t("alice.aergo")]).unwrap_err();
    assert_eq!(e, SqlError::Raised("name alice.aergo belongs to alice".into()));
    call(&mut h, &c, "alice", "give", vec![t("alice.aergo"), t("bob")]).unwrap();
    call(&mut h, &c, "bob", "set_target", vec![t("alice.aergo"), t("bob-site")]).unwrap();
    assert_eq!(
        call(&mut h, &c, "x", "resolve", vec![t("alice.aergo")]).unwrap().rows,
        vec![vec![t("bob-site")]]
    );
    assert_eq!(call(&mut h, &c, "x", "names_of", vec![t("bob")]).unwrap().rows.len(), 1);
    call(&mut h, &c, "bob", "release", vec![t("alice.aergo")]).unwrap();
    assert_eq!(
        call(&mut h, &c, "x", "resolve", vec![t("alice.aergo")]).unwrap().rows,
        vec![vec![Value::Null]]
    );
    // Released: neither the row nor an index entry is left behind.
    assert!(h.data.is_empty(), "{:?}", h.data.keys().collect::<Vec<_>>());
}

#[test]
fn voting_example() {
    let (c, mut h) = deploy(VOTING, "admin");
    let id = call(&mut h, &c, "admin", "propose", vec![t("more blocks"), Value::Int(10)]).unwrap();
    assert_eq!(id.rows, vec![vec![Value::Int(1)]]);
    let e = call(&mut h, &c, "eve", "propose", vec![t("mine"), Value::Int(10)]).unwrap_err();
    assert_eq!(e, SqlError::Raised("only an admin may propose".into()));
    call(&mut h, &c, "admin", "propose", vec![t("fewer blocks"), Value::Int(10)]).unwrap();
    for (who, p, yes) in [("a", 1, true), ("b", 1, true), ("c", 1, false), ("a", 1, false), ("a", 2, true)] {
        call(&mut h, &c, who, "vote", vec![Value::Int(p), Value::Bool(yes)]).unwrap();
    }
    let e = call(&mut h, &c, "a", "vote", vec![Value::Int(9), Value::Bool(true)]).unwrap_err();
    assert_eq!(e, SqlError::Raised("no proposal 9".into()));
    let tally = call(&mut h, &c, "x", "tally", vec![]).unwrap();
    assert_eq!(tally.columns, vec!["id", "title", "yes_votes", "no_votes", "open"]);
    assert_eq!(
        tally.rows,
        vec![
            vec![Value::Int(1), t("more blocks"), Value::Int(1), Value::Int(2), Value::Bool(true)],
            vec![Value::Int(2), t("fewer blocks"), Value::Int(1), Value::Int(0), Value::Bool(true)],
        ]
    );
}

/// Out of gas at every possible point: both engines stop at the same node, with the same gas used
/// and the same error, and change nothing.
#[test]
fn both_engines_run_out_of_gas_identically() {
    let cases = [
        (VOTING, vec![("propose", vec![t("p"), Value::Int(5)]), ("tally", vec![])]),
        (
            GUESTBOOK,
            vec![
                ("sign", vec![t("hello"), Value::Int(4)]),
                ("latest", vec![Value::Int(2)]),
                ("people", vec![]),
                ("average_rating", vec![]),
            ],
        ),
    ];
    let cases = cases.into_iter().chain([(
        TOKEN,
        vec![("transfer", vec![t("bob"), Value::Int(5)]), ("transfer", vec![t("bob"), Value::Int(0)])],
    )]);
    for (script, calls) in cases {
        let checked = compile(script).unwrap();
        let compiled = Compiled::new(checked.contract);
        let addr = contract_address(&Address([1; 20]), 0);
        let cx = ctx("admin");
        let mut base = MemHost::default();
        Engine::new(&compiled.interpreted, &addr, &mut base, &cx, Gas::new(1_000_000))
            .construct(&checked.constructor)
            .unwrap();
        for (f, args) in calls {
            let mut full = base.clone();
            let needed = Engine::new(&compiled.interpreted, &addr, &mut full, &cx, Gas::new(1_000_000))
                .call(f, args.clone())
                .map(|_| ());
            assert!(needed.is_ok() || f == "transfer");
            for limit in 0..2_000 {
                let mut outcomes = Vec::new();
                for kind in [EngineKind::Interpreter, EngineKind::Jit] {
                    let mut h = base.clone();
                    let mut buf = Buffered::new(&mut h);
                    let mut e = Engine::new(compiled.engine(kind), &addr, &mut buf, &cx, Gas::new(limit));
                    let r = e.call(f, args.clone());
                    let used = e.gas.used;
                    let events = buf.events.clone();
                    if r.is_ok() {
                        buf.commit().unwrap();
                    }
                    outcomes.push((r, used, h.data.len(), events));
                }
                assert_eq!(outcomes[0], outcomes[1], "{f} with gas {limit}");
            }
        }
    }
}

/// Bounded fuzzing on stable Rust: the examples and some hostile seeds, mutated at random (cut,
/// duplicated, spliced with SQL tokens, bytes changed), through [`super::fuzz::fuzz_one`]. No input
/// may panic or take long. (`fuzz/` runs the same step under libFuzzer, coverage-guided.)
#[test]
fn mutated_scripts_never_panic_or_hang() {
    use rand::{Rng, SeedableRng};
    let deep = format!(
        "CREATE TABLE t (a INTEGER PRIMARY KEY CHECK ({}a{} > 0));",
        "(".repeat(200),
        ")".repeat(200)
    );
    let wide = format!(
        "CREATE TABLE t (a INTEGER PRIMARY KEY CHECK (a IN ({})));",
        (0..3000).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
    );
    let ifs = format!(
        "CREATE TABLE t (a INTEGER PRIMARY KEY);\nCREATE FUNCTION f() RETURNS VOID AS $$\nBEGIN\n{}{}END $$;",
        "IF 1 = 1 THEN\n".repeat(60),
        "END IF;\n".repeat(60)
    );
    let seeds =
        [TOKEN, REGISTRY, VOTING, GUESTBOOK, LANGUAGE_SEED, deep.as_str(), wide.as_str(), ifs.as_str()];
    // A seed that no longer compiles would fuzz only the parser.
    for seed in [TOKEN, REGISTRY, VOTING, GUESTBOOK, LANGUAGE_SEED] {
        compile(seed).unwrap_or_else(|e| panic!("a fuzz seed does not compile: {e}\n{seed}"));
    }
    let tokens = [
        "SELECT",
        "FROM",
        "WHERE",
        "(",
        ")",
        ",",
        ";",
        "$$",
        "'",
        "BEGIN",
        "END",
        "IF",
        "THEN",
        "ELSE",
        "CASE",
        "WHEN",
        "NULL",
        "9223372036854775807",
        "-",
        "/",
        "%",
        "||",
        "AND",
        "OR",
        "NOT",
        "IN",
        "EXISTS",
        "JOIN",
        "ON",
        "GROUP BY",
        "ORDER BY",
        "LIMIT",
        "INSERT INTO",
        "VALUES",
        "UPDATE",
        "SET",
        "DELETE",
        "RETURN",
        "RAISE EXCEPTION",
        ":=",
        "DECLARE",
        "PRIMARY KEY",
        "UNIQUE",
        "CHECK",
        "DECIMAL(38, 38)",
        "COUNT(*)",
        "avg(",
        "UNION",
        "UNION ALL",
        "INTERSECT",
        "EXCEPT",
        "CROSS JOIN",
        "ANY",
        "ALL",
        "DESC",
        "ASC",
        "rowid",
        "sender()",
        "transfer_native",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xa3_60);
    let iterations = if cfg!(debug_assertions) { 1_500 } else { 20_000 };
    let mut slowest = std::time::Duration::ZERO;
    for i in 0..iterations {
        let mut s: Vec<u8> = seeds[i % seeds.len()].as_bytes().to_vec();
        for _ in 0..rng.gen_range(1..5) {
            if s.is_empty() {
                break;
            }
            let at = rng.gen_range(0..s.len());
            match rng.gen_range(0..4) {
                0 => {
                    let end = (at + rng.gen_range(1..40)).min(s.len());
                    s.drain(at..end);
                }
                1 => {
                    let end = (at + rng.gen_range(1..60)).min(s.len());
                    let piece = s[at..end].to_vec();
                    let to = rng.gen_range(0..s.len());
                    s.splice(to..to, piece);
                }
                2 => {
                    let t = format!(" {} ", tokens[rng.gen_range(0..tokens.len())]);
                    s.splice(at..at, t.bytes());
                }
                _ => s[at] = rng.gen_range(0x20..0x7f),
            }
        }
        let script = String::from_utf8_lossy(&s);
        let started = std::time::Instant::now();
        super::fuzz::fuzz_one(&script);
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest < std::time::Duration::from_secs(2), "slowest input took {slowest:?}");
}

#[test]
fn access_sets_name_the_rows_a_call_touches() {
    use super::access::{call_keys, describe, function_access, TableAccess};
    let c = compile(TOKEN).unwrap().contract;
    let f = c.function("transfer").unwrap();
    let a = function_access(&c, f);
    let writes: Vec<String> = a.writes.iter().map(|(t, x)| describe(&c, f, *t, x)).collect();
    assert_eq!(writes, vec!["balances[owner = sender()], balances[owner = recipient]"]);
    assert!(!a.native);
    let keys = call_keys(&a.writes[&0], &[Value::Text("bob".into()), Value::Int(5)], "alice").unwrap();
    assert_eq!(keys.len(), 2);
    // A whole-table read: the holders listing scans.
    let h = c.function("holders").unwrap();
    assert_eq!(function_access(&c, h).reads[&0], TableAccess::Whole);
    // The voting contract's propose reads proposals as a whole (MAX(id)) and writes one computed key.
    let v = compile(VOTING).unwrap().contract;
    let p = function_access(&v, v.function("propose").unwrap());
    assert!(p.writes.values().all(|w| *w == TableAccess::Whole), "{p:?}");
}

#[test]
fn limits_are_refused_with_the_limit_named() {
    let big = format!("CREATE TABLE t (a INTEGER PRIMARY KEY);\n-- {}\n", "x".repeat(70 * 1024));
    assert!(compile(&big).unwrap_err().to_string().contains("the limit is 65536"));
    let tables: String = (0..33).map(|i| format!("CREATE TABLE t{i} (a INTEGER PRIMARY KEY);\n")).collect();
    assert!(compile(&tables).unwrap_err().to_string().contains("more than 32 tables"));
    let cols: Vec<String> = (0..65).map(|i| format!("c{i} INTEGER")).collect();
    let wide = format!("CREATE TABLE t (id INTEGER PRIMARY KEY, {});", cols.join(", "));
    assert!(compile(&wide).unwrap_err().to_string().contains("1 to 64 are allowed"));
    let body: String = (0..257).map(|_| "  x := 1;\n").collect();
    let long = format!("CREATE TABLE t (a INTEGER PRIMARY KEY);\nCREATE FUNCTION f() RETURNS VOID AS $$\nDECLARE x INTEGER;\nBEGIN\n{body}END $$;");
    assert!(compile(&long).unwrap_err().to_string().contains("more than 256 statements"));
    let deep = format!(
        "CREATE TABLE t (a INTEGER PRIMARY KEY CHECK ({}a{} > 0));",
        "(1 + ".repeat(40),
        ")".repeat(40)
    );
    let e = compile(&deep).unwrap_err().to_string();
    assert!(e.contains("nested deeper than 32") || e.contains("nesting too deep"), "{e}");
    // A row over 16 KiB and a call over its gas: runtime errors that revert.
    let (c, mut h) = deploy("CREATE TABLE t (a INTEGER PRIMARY KEY, s TEXT);\nCREATE FUNCTION put(s2 TEXT) RETURNS VOID AS $$ BEGIN INSERT INTO t VALUES (1, s2); END $$;", "me");
    let e = call(&mut h, &c, "me", "put", vec![t(&"y".repeat(17 * 1024))]).unwrap_err();
    assert!(e.to_string().contains("limit is 16384"), "{e}");
    let addr = contract_address(&Address([1; 20]), 0);
    let cx = ctx("me");
    let e = Engine::new(&c, &addr, &mut h, &cx, Gas::new(250)).call("put", vec![t("z")]).unwrap_err();
    assert_eq!(e, SqlError::OutOfGas(250));
    assert!(h.data.is_empty());
}

/// A compute-only function is compiled whole; for random arguments and every gas limit it returns
/// what the interpreter returns, fails where it fails, and charges the same gas.
#[test]
fn compiled_function_bodies_match_the_interpreter() {
    let script = "CREATE TABLE t (a INTEGER PRIMARY KEY);
CREATE FUNCTION score(a1 INTEGER, b INTEGER, strict BOOLEAN) RETURNS INTEGER AS $$
DECLARE
  x INTEGER := a1 * 2;
  flag BOOLEAN;
BEGIN
  IF x > b THEN
    x := x - b;
  ELSIF x = b THEN
    RETURN 0;
  ELSE
    x := b - x;
    IF strict AND x > 100 THEN RETURN NULL; END IF;
  END IF;
  flag := x % 2 = 0;
  IF flag THEN RETURN x * 3 + a1 % 7; END IF;
  RETURN CASE WHEN b IS NULL THEN -1 ELSE x / (b - 5) END;
END $$;";
    let compiled = Compiled::new(compile(script).unwrap().contract);
    assert_eq!(compiled.jit_stats.bodies, 1, "{:?}", compiled.jit_stats);
    // The native body itself answers (it is not handing everything back): score(10, 3, NULL):
    // x = 20 - 3 = 17, odd, so 17 / (3 - 5) = -8.
    let body = compiled
        .jit
        .as_ref()
        .and_then(|c| c.function("score"))
        .and_then(|f| f.jit.clone())
        .expect("compiled body");
    assert!(body.host_stmts.is_empty(), "compute only: {body:?}");
    let mut no_host = |_: usize, _: &mut [i64], _: &mut [u8], _: u64| super::jit::HostStep::HandBack;
    match body.run(&mut [10, 3, 0, 0, 0], &mut [0, 0, 1, 1, 1], &mut no_host) {
        super::jit::BodyOutcome::Value(v, nodes) => assert_eq!((v, nodes > 10), (Value::Int(-8), true)),
        other => panic!("not a value: {other:?}"),
    }
    let addr = contract_address(&Address([1; 20]), 0);
    let cx = ctx("me");
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let pick = |rng: &mut rand::rngs::StdRng| match rng.gen_range(0..10) {
        0 => Value::Null,
        1 => Value::Int(i64::MAX),
        2 => Value::Int(5),
        _ => Value::Int(rng.gen_range(-300..300)),
    };
    for _ in 0..3_000 {
        let args =
            vec![pick(&mut rng), pick(&mut rng), if rng.gen() { Value::Bool(true) } else { Value::Null }];
        let limit = if rng.gen_ratio(1, 3) { rng.gen_range(0..300) } else { 1_000_000 };
        let mut outcomes = Vec::new();
        for kind in [EngineKind::Interpreter, EngineKind::Jit] {
            let mut h = MemHost::default();
            let mut e = Engine::new(compiled.engine(kind), &addr, &mut h, &cx, Gas::new(limit));
            let r = e.call("score", args.clone());
            outcomes.push((r, e.gas.used));
        }
        assert_eq!(outcomes[0], outcomes[1], "score{args:?} with gas {limit}");
    }
}

/// Functions whose bodies mix native statements with row statements, SELECT … INTO, TEXT
/// variables, nested IFs, RETURN from inside them, RAISE and constraint failures.
const MIXED: &str =
    "CREATE TABLE acct (id INTEGER PRIMARY KEY, bal INTEGER NOT NULL CHECK (bal >= 0), tag TEXT);
CREATE TABLE log (n INTEGER PRIMARY KEY, who TEXT, amount INTEGER);
CREATE FUNCTION move(a INTEGER, b INTEGER, amt INTEGER, note TEXT) RETURNS INTEGER AS $$
DECLARE
  fee INTEGER := amt / 10;
  have INTEGER;
  seq INTEGER;
  label TEXT;
BEGIN
  IF amt IS NULL OR amt <= 0 THEN RAISE EXCEPTION 'bad amount %', amt; END IF;
  SELECT bal INTO have FROM acct WHERE id = a;
  IF have IS NULL THEN
    INSERT INTO acct VALUES (a, 0, note);
    have := 0;
  END IF;
  IF have < amt + fee THEN
    IF fee > 5 THEN RETURN -1; END IF;
    RAISE EXCEPTION 'short by %', amt + fee - have;
  END IF;
  UPDATE acct SET bal = bal - amt - fee WHERE id = a;
  INSERT INTO acct VALUES (b, amt, note) ON CONFLICT (id) DO UPDATE SET bal = acct.bal + excluded.bal;
  SELECT COALESCE(MAX(n), 0) + 1 INTO seq FROM log;
  label := note || '!';
  INSERT INTO log VALUES (seq, label, amt);
  IF seq % 3 = 0 THEN RETURN seq * 100 + fee; END IF;
  RETURN seq;
END $$;
CREATE FUNCTION mint(x INTEGER, n INTEGER) RETURNS VOID AS $$
BEGIN
  INSERT INTO acct VALUES (x, n, NULL) ON CONFLICT (id) DO UPDATE SET bal = acct.bal + excluded.bal;
  IF n > 1000 THEN RETURN; END IF;
  UPDATE acct SET bal = bal * 2 WHERE id = x;
END $$;
CREATE FUNCTION tag_of(x INTEGER) RETURNS TEXT AS $$
DECLARE t TEXT;
BEGIN
  SELECT tag INTO t FROM acct WHERE id = x;
  IF t IS NULL THEN RETURN 'none'; END IF;
  RETURN t;
END $$;";

#[test]
fn bodies_with_row_statements_run_native_around_engine_statements() {
    use super::jit::{BodyOutcome, HostStep};
    let compiled = Compiled::new(compile(TOKEN).unwrap().contract);
    assert_eq!(compiled.jit_stats.bodies, 1, "{:?}", compiled.jit_stats);
    let transfer = compiled.jit.as_ref().and_then(|c| c.function("transfer")).and_then(|f| f.jit.clone());
    let body = transfer.expect("transfer compiled whole");
    // UPDATE, IF NOT EXISTS (…) THEN RAISE, INSERT … ON CONFLICT and EMIT go to the engine; the
    // IF on `n` and its RAISE are native.
    assert_eq!(body.host_stmts.len(), 4, "{body:?}");
    for (n, null, expect_steps, expect) in [
        (5, 0, vec![0, 1, 2, 3], BodyOutcome::Done(0)),
        (0, 0, vec![], BodyOutcome::HandBack),
        (-3, 0, vec![], BodyOutcome::HandBack),
        // NULL <= 0 is not true: on to the statements.
        (0, 1, vec![0, 1, 2, 3], BodyOutcome::Done(0)),
    ] {
        let mut steps = Vec::new();
        let mut charged = 0;
        let mut record = |i: usize, _: &mut [i64], _: &mut [u8], nodes: u64| {
            steps.push(i);
            charged += nodes;
            HostStep::Next
        };
        let outcome = body.run(&mut [0, n], &mut [0, null], &mut record);
        assert_eq!((outcome, &steps), (expect.clone(), &expect_steps), "n = {n}");
        if !steps.is_empty() {
            // The IF and its condition (3 nodes) were charged with the first host statement.
            assert_eq!(charged, gas::STATEMENT + 3, "n = {n}");
        }
    }
    // A host statement that returns, or fails, ends the body there.
    let mut returns = |_: usize, _: &mut [i64], _: &mut [u8], _: u64| HostStep::Returned;
    assert_eq!(body.run(&mut [0, 5], &mut [0, 0], &mut returns), BodyOutcome::Returned(0));
    let mut fails = |_: usize, _: &mut [i64], _: &mut [u8], _: u64| HostStep::HandBack;
    assert_eq!(body.run(&mut [0, 5], &mut [0, 0], &mut fails), BodyOutcome::HandBack);

    let mixed = Compiled::new(compile(MIXED).unwrap().contract);
    assert_eq!((mixed.jit_stats.bodies, mixed.jit_stats.host_statements), (3, 12), "{:?}", mixed.jit_stats);
}

/// The interpreter and the compiled bodies give the same results, errors, gas and state on a
/// random sequence of calls, with gas limits that run out anywhere (also after some of a call's
/// statements wrote), on a buffered host and straight on the store's map (whose savepoint takes
/// the native attempt's writes back).
#[test]
fn mixed_bodies_match_the_interpreter_call_by_call() {
    use rand::{Rng, SeedableRng};
    let compiled = Compiled::new(compile(MIXED).unwrap().contract);
    let addr = contract_address(&Address([1; 20]), 0);
    let cx = ctx("me");
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let int = |rng: &mut rand::rngs::StdRng| match rng.gen_range(0..12) {
        0 => Value::Null,
        1 => Value::Int(i64::MAX),
        2 => Value::Int(-1),
        _ => Value::Int(rng.gen_range(0..8)),
    };
    let amount = |rng: &mut rand::rngs::StdRng| match rng.gen_range(0..10) {
        0 => Value::Null,
        1 => Value::Int(i64::MAX - 3),
        2 => Value::Int(0),
        _ => Value::Int(rng.gen_range(1..120)),
    };
    let mut state = MemHost::default();
    let (mut native, mut ok) = (0usize, 0usize);
    super::interp::NATIVE_BODIES.with(|c| c.set(0));
    for round in 0..3_000 {
        let (f, args) = match rng.gen_range(0..10) {
            0..=5 => (
                "move",
                vec![
                    int(&mut rng),
                    int(&mut rng),
                    amount(&mut rng),
                    Value::Text(format!("n{}", rng.gen_range(0..3))),
                ],
            ),
            6..=8 => ("mint", vec![int(&mut rng), amount(&mut rng)]),
            _ => ("tag_of", vec![int(&mut rng)]),
        };
        let limit = if rng.gen_ratio(1, 3) { rng.gen_range(0..2_500) } else { 1_000_000 };
        let buffered = round % 2 == 0;
        let mut outcomes = Vec::new();
        for kind in [EngineKind::Interpreter, EngineKind::Jit] {
            let mut h = state.clone();
            let (r, used) = if buffered {
                let mut buf = Buffered::new(&mut h);
                let mut e = Engine::new(compiled.engine(kind), &addr, &mut buf, &cx, Gas::new(limit));
                let r = e.call(f, args.clone());
                let used = e.gas.used;
                if r.is_ok() {
                    buf.commit().unwrap();
                }
                (r, used)
            } else {
                let mut e = Engine::new(compiled.engine(kind), &addr, &mut h, &cx, Gas::new(limit));
                let r = e.call(f, args.clone());
                (r, e.gas.used)
            };
            outcomes.push((r, used, h.data.clone()));
        }
        assert_eq!(outcomes[0], outcomes[1], "round {round}: {f}{args:?} with gas {limit}");
        if outcomes[0].0.is_ok() {
            ok += 1;
        }
        state.data = outcomes.pop().unwrap().2;
        native = super::interp::NATIVE_BODIES.with(|c| c.get());
    }
    eprintln!("mixed bodies: {ok} successful calls, {native} answered natively");
    // Most successful calls were answered by the native bodies, not handed back.
    assert!(ok > 1_000 && native * 10 >= ok * 9, "{native} native of {ok} successful calls");
}

/// Found by the libFuzzer run: a function body that ends right after `DECLARE`, a name and a
/// type stepped past the last token looking for an initial value, and slicing the tokens from
/// there panicked. It is now a compile error naming the missing `;`.
#[test]
fn a_body_cut_short_after_declare_is_an_error_not_a_panic() {
    let script = "-- Proposals\n-- a U Anumb-- \u{1}\0\0\0\0\0\0\u{1} SET achecked.\nCREATE FUNCTION onw(edn TEXT) RETURNS TEXT AS $$\nDECLARE\nER AS $$\n";
    super::fuzz::fuzz_one(script);
    let cut = "CREATE FUNCTION f() RETURNS INT AS $$ DECLARE x INT $$;";
    let e = compile(cut).err().unwrap_or_else(|| panic!("{cut} compiled")).to_string();
    assert!(e.contains("expected ;"), "{e}");
}

/// A query's wall-clock deadline stops both engines at their next check, with an error that names
/// it; without one the same query would run until its gas.
#[test]
fn a_deadline_stops_a_long_query_in_both_engines() {
    let rows: Vec<String> = (0..60).map(|k| format!("({k}, {})", k % 5)).collect();
    let script = format!(
        "CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER);\nINSERT INTO t VALUES {};\n\
         CREATE FUNCTION wide() RETURNS INTEGER AS $$ SELECT COUNT(*) FROM t a, t b, t c, t d WHERE a.v + b.v + c.v + d.v < 0 $$;",
        rows.join(", ")
    );
    let (c, mut h) = deploy(&script, "me");
    let compiled = Compiled::new(c);
    let addr = contract_address(&Address([1; 20]), 0);
    let cx = ctx("me");
    let q = check::Checker::for_contract(&Limits::default(), &compiled.interpreted)
        .check_query("SELECT COUNT(*) FROM t a, t b, t c, t d, t e WHERE a.v + b.v + c.v + d.v + e.v < 0")
        .unwrap();
    for kind in [EngineKind::Interpreter, EngineKind::Jit] {
        let contract = compiled.engine(kind);
        let q = if kind == EngineKind::Jit {
            jit::compile_query(contract, q.clone()).unwrap()
        } else {
            q.clone()
        };
        let budget = Gas::new(gas::MAX_CALL_GAS).with_deadline(std::time::Duration::from_millis(30));
        let started = std::time::Instant::now();
        let e = Engine::new(contract, &addr, &mut h, &cx, budget).query(&q).unwrap_err();
        assert_eq!(e, SqlError::Deadline(30), "{kind:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{kind:?}: {:?}", started.elapsed());
        let budget = Gas::new(gas::MAX_CALL_GAS).with_deadline(std::time::Duration::from_millis(30));
        let e = Engine::new(contract, &addr, &mut h, &cx, budget).call("wide", vec![]).unwrap_err();
        assert_eq!(e, SqlError::Deadline(30), "{kind:?}: a function");
        // The gas limit alone: out of gas, as before.
        let e = Engine::new(contract, &addr, &mut h, &cx, Gas::new(200_000)).query(&q).unwrap_err();
        assert_eq!(e, SqlError::OutOfGas(200_000), "{kind:?}");
    }
}

/// The guestbook: a table without a primary key (hidden rowid), a DESC index that serves
/// `ORDER BY at DESC LIMIT n` (it reads n entries, not the table), an index prefix in order, a
/// UNION and avg — in both engines, with the same gas.
#[test]
fn guestbook_example() {
    let checked = compile(GUESTBOOK).unwrap();
    let compiled = Compiled::new(checked.contract);
    let addr = contract_address(&Address([1; 20]), 0);
    let mut gas_of = Vec::new();
    for kind in [EngineKind::Interpreter, EngineKind::Jit] {
        let c = compiled.engine(kind);
        let mut h = MemHost::default();
        let at = |who: &str, height: u64| CallCtx { height, ..ctx(who) };
        let cx = at("host", 7);
        Engine::new(c, &addr, &mut h, &cx, Gas::new(1_000_000)).construct(&checked.constructor).unwrap();
        fn run(
            c: &ir::Contract,
            h: &mut MemHost,
            who: &str,
            height: u64,
            f: &str,
            args: Vec<Value>,
        ) -> (Result<QueryResult, SqlError>, u64) {
            let cx = CallCtx { height, ..ctx(who) };
            let addr = contract_address(&Address([1; 20]), 0);
            let mut buf = Buffered::new(h);
            let mut e = Engine::new(c, &addr, &mut buf, &cx, Gas::new(10_000_000));
            let out = e.call(f, args);
            let used = e.gas.used;
            if out.is_ok() {
                buf.commit().unwrap();
            }
            (out, used)
        }
        let (n, _) = run(c, &mut h, "alice", 10, "sign", vec![t("hello"), Value::Int(4)]);
        assert_eq!(n.unwrap().rows, vec![vec![Value::Int(2)]]);
        run(c, &mut h, "bob", 11, "sign", vec![t("nice book"), Value::Int(3)]).0.unwrap();
        run(c, &mut h, "alice", 12, "sign", vec![t("again"), Value::Int(5)]).0.unwrap();
        let (e, _) = run(c, &mut h, "eve", 13, "sign", vec![t(""), Value::Int(5)]);
        assert!(e.unwrap_err().to_string().contains("CHECK"), "{kind:?}");
        let (r, _) = run(c, &mut h, "x", 14, "latest", vec![Value::Int(2)]);
        assert_eq!(
            r.unwrap().rows,
            vec![
                vec![t("alice"), t("again"), Value::Int(12)],
                vec![t("bob"), t("nice book"), Value::Int(11)]
            ],
            "{kind:?}"
        );
        let (r, _) = run(c, &mut h, "x", 14, "entries_of", vec![t("alice")]);
        assert_eq!(r.unwrap().rows, vec![vec![t("again"), Value::Int(12)], vec![t("hello"), Value::Int(10)]]);
        let (r, _) = run(c, &mut h, "x", 14, "people", vec![]);
        assert_eq!(r.unwrap().rows, vec![vec![t("alice")], vec![t("bob")], vec![t("host")]]);
        // (5 + 4 + 3 + 5) / 4 = 4.25, at scale 6.
        let (r, _) = run(c, &mut h, "x", 14, "average_rating", vec![]);
        assert_eq!(r.unwrap().rows, vec![vec![Value::Dec(value::Decimal { units: 4_250_000, scale: 6 })]]);
        // The hidden rowid: in signing order, readable by name, not in SELECT *.
        let limits = Limits::default();
        let q = check::Checker::for_contract(&limits, &compiled.interpreted);
        let by_rowid =
            q.check_query("SELECT rowid, author FROM entries ORDER BY rowid DESC LIMIT 2").unwrap();
        let star = q.check_query("SELECT * FROM entries WHERE rowid = 1").unwrap();
        let cx = at("x", 14);
        let mut e = Engine::new(c, &addr, &mut h, &cx, Gas::new(1_000_000));
        assert_eq!(
            e.query(&by_rowid).unwrap().rows,
            vec![vec![Value::Int(4), t("alice")], vec![Value::Int(3), t("bob")]]
        );
        let r = e.query(&star).unwrap();
        assert_eq!(r.columns, vec!["author", "message", "rating", "at"]);
        // 300 more entries: latest(3) reads three index entries and rows; a sort reads them all.
        for i in 0..300 {
            run(c, &mut h, "crowd", 20 + i, "sign", vec![t("hi"), Value::Int(1)]).0.unwrap();
        }
        let (r, ordered) = run(c, &mut h, "x", 400, "latest", vec![Value::Int(3)]);
        assert_eq!(r.unwrap().rows[0][2], Value::Int(319));
        let sorted = q
            .check_query("SELECT author, message, at FROM entries ORDER BY message, at DESC LIMIT 3")
            .unwrap();
        let mut e = Engine::new(c, &addr, &mut h, &cx, Gas::new(10_000_000));
        e.query(&sorted).unwrap();
        assert!(
            ordered * 10 < e.gas.used,
            "{kind:?}: ordered scan {ordered} gas, scan and sort {}",
            e.gas.used
        );
        gas_of.push(ordered);
        // Under the earlier rules (a contract call below `sql_ordered_scans_height`) the same call
        // scans and sorts, as it did before: the same rows, the gas it always cost.
        let cx = at("x", 400);
        let mut e = Engine::new(c, &addr, &mut h, &cx, Gas::new(10_000_000)).ordered_scans(false);
        let rows = e.call("latest", vec![Value::Int(3)]).unwrap().rows;
        assert_eq!(rows[0][2], Value::Int(319));
        assert!(ordered * 10 < e.gas.used, "{kind:?}: the earlier rules charged {}", e.gas.used);
    }
    assert_eq!(gas_of[0], gas_of[1], "the engines charge the same gas");
    // Inserting into a table without a primary key takes its next rowid: the whole table.
    let access = compiled.function_access("sign").unwrap();
    assert!(access::function_is_heavy(access));
}

/// The language fuzz seed runs: deployed, every function answers on both engines (so that the
/// fuzzer starts from working compounds, joins and quantified comparisons, not only from errors).
#[test]
fn the_language_fuzz_seed_runs_on_both_engines() {
    use super::gas::Gas;
    use super::interp::{CallCtx, Engine};
    let checked = compile(LANGUAGE_SEED).unwrap();
    let compiled = Compiled::new(checked.contract);
    let addr = Address([3; 20]);
    let ctx = CallCtx { sender: "seed".into(), ..CallCtx::default() };
    let mut answers = Vec::new();
    for kind in [EngineKind::Interpreter, EngineKind::Jit] {
        let contract = compiled.engine(kind);
        let mut host = MemHost::default();
        Engine::new(contract, &addr, &mut host, &ctx, Gas::new(1_000_000))
            .construct(&checked.constructor)
            .unwrap();
        let mut got = Vec::new();
        for f in &contract.functions {
            let args = vec![Value::Int(1); f.params.len()];
            let mut buf = Buffered::new(&mut host);
            let r = Engine::new(contract, &addr, &mut buf, &ctx, Gas::new(1_000_000))
                .call(&f.name, args)
                .unwrap_or_else(|e| panic!("{}(1): {e}", f.name));
            buf.commit().unwrap();
            got.push(format!("{}: {r:?}", f.name));
        }
        answers.push(got);
    }
    assert_eq!(answers[0], answers[1]);
    let (i, n, t) = (Value::Int, Value::Null, Value::Bool(true));
    let dec = |units| Value::Dec(value::Decimal { units, scale: 6 });
    let expect = [
        "add: QueryResult { columns: [\"add\"], rows: [[Int(2)]] }".to_string(),
        // {1, 3} ∪ {1, 3} − {1} = {3}, and the rowids 1..5 (add made the fifth), DESC, OFFSET 1.
        format!("sets: {:?}", rows(&["v"], vec![vec![i(4)], vec![i(3)], vec![i(3)], vec![i(2)], vec![i(1)]])),
        format!("common: {:?}", rows(&["v"], vec![vec![i(3)]])),
        format!(
            "pairs: {:?}",
            rows(
                &["x", "z"],
                (1..=3).flat_map(|x| [vec![i(x), i(3)], vec![i(x), i(3)], vec![i(x), n.clone()]]).collect()
            )
        ),
        // x > ALL (empty) is true; 2 = ANY (1, NULL, 3, 3, 1) is NULL; NOT IN (10, 30) is true.
        format!(
            "quantified: {:?}",
            rows(
                &["x", "hi", "lo", "n"],
                vec![
                    vec![i(1), t.clone(), t.clone(), t.clone()],
                    vec![i(2), t.clone(), n.clone(), t.clone()],
                    vec![i(3), t.clone(), t.clone(), t.clone()],
                ]
            )
        ),
        // avg skips the NULL w of z = 3; NULL sorts last under DESC.
        format!(
            "averages: {:?}",
            rows(
                &["z", "m", "n"],
                vec![vec![i(3), dec(750_000), i(1)], vec![n.clone(), dec(2_250_000), i(1)]]
            )
        ),
    ];
    assert_eq!(answers[0], expect);
}

fn rows(columns: &[&str], rows: Vec<Vec<Value>>) -> super::interp::QueryResult {
    super::interp::QueryResult { columns: columns.iter().map(|c| c.to_string()).collect(), rows }
}

/// The state key a row proof is of (`docs/dapps.md`, "State proofs"): built from the table's
/// name and key values as the engine builds it, for a keyed table and one with a hidden rowid;
/// the stored row decodes to its named columns.
#[test]
fn row_state_keys_are_the_keys_the_engine_writes() {
    use super::store::{row_columns, row_state_key};
    let addr = contract_address(&Address([1; 20]), 0);
    let (c, mut host) = deploy(TOKEN, "alice");
    call(&mut host, &c, "alice", "transfer", vec![t("bob"), Value::Int(300)]).unwrap();
    let key = row_state_key(&c, &addr, "BALANCES", &[t("bob")]).unwrap();
    let row = row_columns(&c, "balances", &host.data[&key]).unwrap();
    assert_eq!(row, vec![("owner".to_string(), t("bob")), ("amount".to_string(), Value::Int(300))]);
    let absent = row_state_key(&c, &addr, "balances", &[t("carol")]).unwrap();
    assert!(!host.data.contains_key(&absent));
    let err = |r: Result<Vec<u8>, SqlError>| r.unwrap_err().to_string();
    assert!(err(row_state_key(&c, &addr, "nope", &[t("bob")])).contains("no table \"nope\""));
    assert!(err(row_state_key(&c, &addr, "balances", &[])).contains("keyed by 1 value(s) (owner), not 0"));
    assert!(err(row_state_key(&c, &addr, "balances", &[Value::Null])).contains("cannot be NULL"));

    let (g, host) = deploy(GUESTBOOK, "alice");
    let key = row_state_key(&g, &addr, "entries", &[Value::Int(1)]).unwrap();
    let row = row_columns(&g, "entries", &host.data[&key]).unwrap();
    assert_eq!(row[0], ("author".to_string(), t("alice")));
    assert_eq!(row.last().unwrap().1, Value::Int(1), "the hidden rowid is the last column: {row:?}");
    // An integer key given as text converts as an INSERT converts it, or is refused.
    assert!(row_state_key(&g, &addr, "entries", &[t("x")]).is_err());
}
