use super::store::{contract_address, Buffered, MemHost};
use super::*;
use crate::types::Address;

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

#[test]
fn unsupported_sql_is_refused_with_its_position() {
    let cases = [
        ("CREATE TABLE t (a INTEGER PRIMARY KEY, b REAL);", "line 1, column 40", "type REAL"),
        ("CREATE TABLE t (a INTEGER);", "line 1", "PRIMARY KEY"),
        ("CREATE TABLE t (a INTEGER PRIMARY KEY);\nDROP TABLE t;", "line 2, column 1", "unsupported: DROP TABLE"),
        (
            "CREATE TABLE t (a INTEGER PRIMARY KEY);\nCREATE FUNCTION f() RETURNS INTEGER AS $$\nBEGIN\n  RETURN nosuch + 1;\nEND $$;",
            "line 4, column 10",
            "no column or variable named nosuch",
        ),
        ("CREATE TABLE t (a INTEGER PRIMARY KEY);\nCREATE FUNCTION f() RETURNS INTEGER AS $$ SELECT a FROM t UNION SELECT a FROM t $$;", "line 2", "UNION"),
        ("CREATE TABLE t (a INTEGER PRIMARY KEY, b INTEGER CHECK (b > 1.5e3));", "line 1", "floating-point"),
        ("CREATE TABLE t (a INTEGER PRIMARY KEY);\nCREATE FUNCTION f() RETURNS VOID AS $$\nBEGIN\n  IF 1 THEN\n  END;\nEND $$;", "line 5", "expected END IF"),
    ];
    for (sql, at, what) in cases {
        let e = compile(sql).err().unwrap_or_else(|| panic!("{sql} compiled")).to_string();
        assert!(e.contains(at) && e.contains(what), "{sql}\n→ {e}");
    }
}
