//! AergoSQL contracts through the real node and the `aergo` CLI: each example is deployed, called,
//! made to fail (the failed call changes nothing and the CLI exits 2), and read at an earlier height.

use aergo_tests::{binary, cli_json, wait_for, workspace, NodeProcess};
use anyhow::Context;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn example(name: &str) -> PathBuf {
    workspace().join("examples/contracts").join(name)
}

/// `aergo --json ARGS`: exit code and parsed output (stderr when it printed no JSON).
fn cli(rpc: &str, args: &[&str]) -> anyhow::Result<(i32, Value)> {
    let out = Command::new(binary("aergo")).arg("--rpc").arg(rpc).arg("--json").args(args).output()?;
    let code = out.status.code().unwrap_or(-1);
    match serde_json::from_slice(&out.stdout) {
        Ok(v) => Ok((code, v)),
        Err(_) => Ok((code, Value::String(String::from_utf8_lossy(&out.stderr).into_owned()))),
    }
}

struct Dev {
    node: NodeProcess,
    key: String,
    _dir: tempfile::TempDir,
}

impl Dev {
    fn start() -> anyhow::Result<Dev> {
        let dir = tempfile::tempdir()?;
        let node = NodeProcess::start_dev(dir.path(), &[])?;
        let key = dir.path().join("dev.key").display().to_string();
        Ok(Dev { node, key, _dir: dir })
    }

    fn deploy(&self, file: &str) -> anyhow::Result<(String, u64)> {
        let path = example(file).display().to_string();
        let v = cli_json(&self.node.rpc, &["contract", "deploy", &path, "--key", &self.key, "--wait"])?;
        let contract = v["contract"].as_str().context("no contract address")?.to_string();
        assert_eq!(v["receipt"]["status"], "success", "{v}");
        Ok((contract, v["receipt"]["block_height"].as_u64().unwrap_or(0)))
    }

    /// A call with --wait: (exit code, receipt).
    fn call(&self, contract: &str, function: &str, args: &[&str]) -> anyhow::Result<(i32, Value)> {
        let mut a = vec!["contract", "call", "--key", &self.key, "--wait", contract, function];
        a.extend_from_slice(args);
        let (code, v) = cli(&self.node.rpc, &a)?;
        Ok((code, v["receipt"].clone()))
    }

    fn query(&self, contract: &str, extra: &[&str]) -> anyhow::Result<Value> {
        let mut a = vec!["query", contract];
        a.extend_from_slice(extra);
        cli_json(&self.node.rpc, &a)
    }
}

#[test]
fn token_contract_through_the_node_and_cli() -> anyhow::Result<()> {
    let dev = Dev::start()?;
    let me = cli_json(&dev.node.rpc, &["account", "show", &dev.key])?["address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (token, deployed_at) = dev.deploy("token.sql")?;
    let bob = "aergo1qqqsyqcyq5rqwzqfpg9scrgwpugpzysn8xa4k6";
    let (code, r) = dev.call(&token, "transfer", &[bob, "250"])?;
    assert_eq!((code, r["status"].as_str()), (0, Some("success")), "{r}");
    let after_first = r["block_height"].as_u64().unwrap_or(0);
    let (code, r) = dev.call(&token, "transfer", &[bob, "50"])?;
    assert_eq!(code, 0, "{r}");
    // A failing call: exit status 2, the error in the receipt, the gas paid, no rows changed.
    let (code, r) = dev.call(&token, "transfer", &[bob, "0"])?;
    assert_eq!(code, 2, "{r}");
    assert_eq!(r["error"], "amount must be positive, not 0");
    assert!(r["fee"].as_str().unwrap_or("0") != "0", "{r}");
    let (code, r) = dev.call(&token, "transfer", &[bob, "5000000"])?;
    assert_eq!(code, 2);
    assert!(r["error"].as_str().unwrap_or_default().contains("CHECK"), "{r}");
    // Function and SELECT queries, now and at earlier heights.
    let q = dev.query(&token, &["--function", "balance_of", "--arg", bob])?;
    assert_eq!(q, json!({"columns": ["balance_of"], "rows": [[300]]}));
    let sql = "SELECT owner, amount FROM balances ORDER BY amount DESC".to_string();
    let q = dev.query(&token, &[&sql])?;
    assert_eq!(q["rows"], json!([[me, 999_700], [bob, 300]]));
    let at = after_first.to_string();
    let q = dev.query(&token, &[&sql, "--height", &at])?;
    assert_eq!(q["rows"], json!([[me, 999_750], [bob, 250]]));
    let before = (deployed_at - 1).to_string();
    let (code, err) = cli(&dev.node.rpc, &["query", &token, &sql, "--height", &before])?;
    assert_ne!(code, 0);
    assert!(err.as_str().unwrap_or_default().contains("no contract"), "{err}");
    // Bad SQL: refused with line and column, nothing runs.
    let (code, err) = cli(&dev.node.rpc, &["query", &token, "SELECT nosuch FROM balances"])?;
    assert_ne!(code, 0);
    assert!(err.as_str().unwrap_or_default().contains("line 1, column 8"), "{err}");
    let (code, err) = cli(&dev.node.rpc, &["query", &token, "DELETE FROM balances"])?;
    assert_ne!(code, 0);
    assert!(err.as_str().unwrap_or_default().contains("one SELECT"), "{err}");
    // The contract as the node describes it: schema, access sets, script.
    let c = cli_json(&dev.node.rpc, &["contract", "show", &token])?;
    assert_eq!(c["tables"][0]["primary_key"], json!(["owner"]));
    let transfer = c["functions"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "transfer"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(transfer["writes"], json!(["balances[owner = sender()], balances[owner = recipient]"]), "{c}");
    assert!(c["script"].as_str().unwrap_or_default().contains("CREATE TABLE balances"));
    // Text output is a table.
    let out = Command::new(binary("aergo")).args(["--rpc", &dev.node.rpc, "query", &token, &sql]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().next().unwrap_or_default().starts_with("owner"), "{text}");
    assert!(text.contains("(2 rows)"), "{text}");
    dev.node.stop()
}

#[test]
fn registry_and_voting_contracts_through_the_node_and_cli() -> anyhow::Result<()> {
    let dev = Dev::start()?;
    let (reg, _) = dev.deploy("registry.sql")?;
    let (code, r) = dev.call(&reg, "register", &["alice.aergo", "https://alice.example"])?;
    assert_eq!(code, 0, "{r}");
    let registered_at = r["block_height"].as_u64().unwrap_or(0);
    let (code, r) = dev.call(&reg, "register", &["alice.aergo", "x"])?;
    assert_eq!((code, r["error"].as_str()), (2, Some("name alice.aergo is taken")));
    let (code, _) = dev.call(&reg, "set_target", &["alice.aergo", "https://new.example"])?;
    assert_eq!(code, 0);
    let q = dev.query(&reg, &["--function", "resolve", "--arg", "alice.aergo"])?;
    assert_eq!(q["rows"], json!([["https://new.example"]]));
    let q = dev.query(
        &reg,
        &["--function", "resolve", "--arg", "alice.aergo", "--height", &registered_at.to_string()],
    )?;
    assert_eq!(q["rows"], json!([["https://alice.example"]]));

    let (vote, _) = dev.deploy("voting.sql")?;
    let (code, r) = dev.call(&vote, "propose", &["more blocks", "1000"])?;
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        r["result"],
        json!({"columns": ["propose"], "rows": [[1]]}),
        "the receipt carries the return value"
    );
    let (code, _) = dev.call(&vote, "vote", &["1", "true"])?;
    assert_eq!(code, 0);
    let (code, r) = dev.call(&vote, "vote", &["2", "true"])?;
    assert_eq!((code, r["error"].as_str()), (2, Some("no proposal 2")));
    let q = dev.query(&vote, &["--function", "tally"])?;
    assert_eq!(q["rows"], json!([[1, "more blocks", 1, 0, true]]));
    // A script the language refuses never reaches the chain: the CLI names the line and column.
    let bad = dev._dir.path().join("bad.sql");
    std::fs::write(
        &bad,
        "CREATE TABLE t (a INTEGER PRIMARY KEY);\nCREATE TRIGGER x AFTER INSERT ON t EXECUTE FUNCTION f();\n",
    )?;
    let (code, err) =
        cli(&dev.node.rpc, &["contract", "deploy", bad.to_str().unwrap_or_default(), "--key", &dev.key])?;
    assert_ne!(code, 0);
    assert!(err.as_str().unwrap_or_default().contains("line 2, column 1"), "{err}");
    wait_for(Duration::from_secs(5), "the node still answering", || {
        dev.query(&vote, &["--function", "tally"]).ok()
    })?;
    dev.node.stop()
}
