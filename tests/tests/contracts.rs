//! AergoSQL contracts through the real node and the `aergo` CLI: each example is deployed, called,
//! made to fail (the failed call changes nothing and the CLI exits 2), and read at an earlier height.

use aergo_tests::{binary, cli_code_json as cli, cli_json, wait_for, workspace, NodeProcess};
use anyhow::Context;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn example(name: &str) -> PathBuf {
    workspace().join("examples/contracts").join(name)
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
    // The transfer's event, with its arguments named as the contract declares them
    // (`docs/dapps.md`): the first event of its block.
    assert_eq!(
        r["events"],
        json!([{"index": 0, "contract": token, "name": "transfer",
                "args": {"sender": me, "recipient": bob, "amount": 250}}]),
        "{r}"
    );
    let text = Command::new(binary("aergo"))
        .args(["--rpc", &dev.node.rpc, "receipt", r["tx_hash"].as_str().unwrap_or_default()])
        .output()?;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!(
            "event transfer(amount: 250, recipient: \"{bob}\", sender: \"{me}\") of {token} #0"
        )),
        "{text}"
    );
    // estimate_gas: what the next transfer would do, nothing kept; then sent, it does exactly that.
    let estimate = |args: &[&str]| {
        let mut a =
            vec!["contract", "call", "--key", dev.key.as_str(), "--estimate", token.as_str(), "transfer"];
        a.extend_from_slice(args);
        cli(&dev.node.rpc, &a)
    };
    let before = dev.query(&token, &["--function", "balance_of", "--arg", bob])?;
    let (code, e) = estimate(&[bob, "50"])?;
    assert_eq!((code, e["status"].as_str()), (0, Some("success")), "{e}");
    assert_eq!(e["events"][0]["args"]["amount"], 50, "{e}");
    assert_eq!(dev.query(&token, &["--function", "balance_of", "--arg", bob])?, before, "nothing kept");
    let (code, failing) = estimate(&[bob, "0"])?;
    assert_eq!((code, failing["error"].as_str()), (2, Some("amount must be positive, not 0")), "{failing}");
    let (code, r) = dev.call(&token, "transfer", &[bob, "50"])?;
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["fee"], e["fee"], "the estimate's fee is the one paid: {e} {r}");
    // A failing call: exit status 2, the error in the receipt, the gas paid, no rows changed.
    let (code, r) = dev.call(&token, "transfer", &[bob, "0"])?;
    assert_eq!(code, 2, "{r}");
    assert_eq!(r["error"], "amount must be positive, not 0");
    assert!(r["fee"].as_str().unwrap_or("0") != "0", "{r}");
    assert_eq!(r["events"], Value::Null, "it failed before emitting: {r}");
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
    assert_eq!(
        c["events"],
        json!([{"name": "transfer", "params": ["sender TEXT", "recipient TEXT", "amount INTEGER"]}])
    );
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

/// A flood of expensive joins through `query` from several clients: each is stopped at its limit
/// (gas or deadline) or answered busy, with a message that says which; meanwhile the node makes a
/// block every slot, and cheap queries and `send_tx` from another client are all answered. The
/// latencies are printed here; `aergo-bench query-flood` measures them as a benchmark.
#[test]
fn a_flood_of_expensive_queries_is_stopped_and_blocks_and_cheap_reads_go_on() -> anyhow::Result<()> {
    use aergo_api::{codes, AergoApiClient, QueryRequest};
    use aergo_primitives::crypto::KeyFile;
    use aergo_primitives::types::{Address, Payload, TxBody, ENCODING_VERSION};
    use jsonrpsee::core::client::Error as ClientError;
    use jsonrpsee::http_client::HttpClientBuilder;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    const FLOOD: Duration = Duration::from_secs(12);
    const CLIENTS: usize = 6;
    let dev = Dev::start()?;
    let script = dev._dir.path().join("wide.sql");
    let rows: Vec<String> = (0..100).map(|k| format!("({k}, {})", k % 7)).collect();
    std::fs::write(
        &script,
        format!(
            "CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER);\nINSERT INTO t VALUES {};\n",
            rows.join(", ")
        ),
    )?;
    let v = cli_json(
        &dev.node.rpc,
        &["contract", "deploy", script.to_str().unwrap_or_default(), "--key", &dev.key, "--wait"],
    )?;
    let contract: Address = v["contract"].as_str().context("no contract")?.parse()?;
    let request = |sql: &str| QueryRequest {
        contract,
        sql: Some(sql.to_string()),
        function: None,
        args: Vec::new(),
        height: None,
        branch: None,
    };
    let heavy = "SELECT COUNT(*) FROM t a, t b, t c, t d, t e WHERE a.v + b.v + c.v + d.v + e.v < 0";
    let cheap = "SELECT v FROM t WHERE k = 12";
    let rt = tokio::runtime::Runtime::new()?;
    let client =
        HttpClientBuilder::default().request_timeout(Duration::from_secs(30)).build(&dev.node.rpc)?;
    let key = KeyFile::read(std::path::Path::new(&dev.key))?.unlock(None)?;
    let chain_id = rt.block_on(client.chain_info(None))?.chain_id;
    let mut nonce = rt.block_on(client.get_account(key.address().to_string(), None, None))?.pending_nonce;
    let mut transfer = || {
        let tx = key.sign_tx(TxBody {
            version: ENCODING_VERSION,
            chain_id: chain_id.clone(),
            branch: aergo_primitives::types::MAIN_BRANCH.into(),
            nonce,
            sender: key.public(),
            recipient: key.address(),
            amount: 1,
            fee: 0,
            payload: Payload::Transfer,
        });
        nonce += 1;
        hex::encode(tx.encode())
    };
    // Blocks come while there are transactions: keep some coming, before and during the flood.
    let metrics_before = {
        for _ in 0..3 {
            rt.block_on(client.send_tx(transfer()))?;
            std::thread::sleep(Duration::from_millis(400));
        }
        rt.block_on(client.node_metrics())?
    };
    let height_before = rt.block_on(client.chain_info(None))?.height;

    let stop = Arc::new(AtomicBool::new(false));
    /// Each expensive query's answer: rows, or the error's code and message.
    type Answer = Result<(), (i32, String)>;
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let flooders: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, answers, rpc, req) =
                (stop.clone(), answers.clone(), dev.node.rpc.clone(), request(heavy));
            std::thread::spawn(move || -> anyhow::Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                let client =
                    HttpClientBuilder::default().request_timeout(Duration::from_secs(30)).build(&rpc)?;
                while !stop.load(Ordering::Relaxed) {
                    let a = match rt.block_on(client.query(req.clone())) {
                        Ok(_) => Ok(()),
                        Err(ClientError::Call(e)) => Err((e.code(), e.message().to_string())),
                        Err(e) => Err((0, e.to_string())),
                    };
                    answers.lock().unwrap_or_else(|e| e.into_inner()).push(a);
                }
                Ok(())
            })
        })
        .collect();
    let (mut cheap_ms, mut send_ms) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let mut last_send = Instant::now();
    while started.elapsed() < FLOOD {
        let t = Instant::now();
        let r = rt.block_on(client.query(request(cheap)))?;
        cheap_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.rows, vec![vec![json!(5)]], "the cheap query's answer");
        if last_send.elapsed() >= Duration::from_millis(250) {
            let t = Instant::now();
            rt.block_on(client.send_tx(transfer()))?;
            send_ms.push(t.elapsed().as_secs_f64() * 1e3);
            last_send = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.join().map_err(|_| anyhow::anyhow!("a flooding client panicked"))??;
    }
    let metrics_during = rt.block_on(client.node_metrics())?;
    let height_after = rt.block_on(client.chain_info(None))?.height;
    let answers = std::mem::take(&mut *answers.lock().unwrap_or_else(|e| e.into_inner()));
    let stopped = answers.iter().filter(|a| matches!(a, Err((c, _)) if *c == codes::QUERY_LIMIT)).count();
    let busy = answers.iter().filter(|a| matches!(a, Err((c, _)) if *c == codes::BUSY)).count();
    for a in &answers {
        match a {
            Err((c, m)) if *c == codes::QUERY_LIMIT => {
                assert!(m.contains("[rpc] query_gas") || m.contains("[rpc] query_timeout_ms"), "{m}")
            }
            Err((c, m)) if *c == codes::BUSY => assert!(m.contains("[rpc] query_"), "{m}"),
            other => panic!("an expensive join was answered {other:?}"),
        }
    }
    let p99 = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[(v.len() * 99 / 100).min(v.len() - 1)]
    };
    eprintln!(
        "flood of {CLIENTS} clients for {FLOOD:?}: {} expensive queries ({stopped} stopped at a limit, {busy} busy); \
         cheap query p99 {:.1} ms over {}, send_tx p99 {:.1} ms over {}; height {height_before} -> {height_after}",
        answers.len(),
        p99(&mut cheap_ms),
        cheap_ms.len(),
        p99(&mut send_ms),
        send_ms.len()
    );
    assert!(stopped >= CLIENTS, "{stopped} of {} stopped at a limit", answers.len());
    // A block every slot: the heights advanced with the clock and the producer missed none.
    assert!(
        height_after >= height_before + FLOOD.as_secs() - 2,
        "{height_before} -> {height_after} in {FLOOD:?}"
    );
    assert_eq!(
        metrics_during.slots_missed_total, metrics_before.slots_missed_total,
        "slots missed in the flood"
    );
    let q = metrics_during.queries;
    assert!(q.queries_stopped_total >= stopped as u64 && q.queries_run_total >= stopped as u64, "{q:?}");
    assert!(q.queries_rejected_total >= busy as u64, "{q:?}");
    assert!(metrics_during.stages.iter().any(|s| s.name == "query"), "no query stage in node_metrics");
    dev.node.stop()
}

/// The guestbook example through the node and the CLI: a table without a primary key (its hidden
/// rowid), an index with a DESC column serving `ORDER BY at DESC LIMIT n`, a UNION and avg.
#[test]
fn guestbook_contract_with_a_keyless_table_and_a_desc_index() -> anyhow::Result<()> {
    let dev = Dev::start()?;
    let (book, _) = dev.deploy("guestbook.sql")?;
    for (message, stars) in [("hello", "4"), ("nice book", "3"), ("again", "5")] {
        let (code, r) = dev.call(&book, "sign", &[message, stars])?;
        assert_eq!((code, r["status"].as_str()), (0, Some("success")), "{r}");
    }
    let (code, r) = dev.call(&book, "sign", &["", "5"])?;
    assert_eq!(code, 2, "an empty message fails its CHECK: {r}");
    let q = dev.query(&book, &["--function", "latest", "--arg", "2"])?;
    assert_eq!(q["columns"], json!(["author", "message", "at"]));
    let messages: Vec<&str> =
        q["rows"].as_array().context("rows")?.iter().filter_map(|r| r[1].as_str()).collect();
    assert_eq!(messages, ["again", "nice book"], "{q}");
    let q = dev.query(&book, &["SELECT rowid, message FROM entries ORDER BY rowid"])?;
    assert_eq!(q["rows"], json!([[1, "welcome"], [2, "hello"], [3, "nice book"], [4, "again"]]));
    let q = dev.query(&book, &["SELECT * FROM entries WHERE rowid = 2"])?;
    assert_eq!(q["columns"], json!(["author", "message", "rating", "at"]), "SELECT * leaves rowid out");
    let q = dev.query(&book, &["--function", "average_rating"])?;
    assert_eq!(q["rows"], json!([["4.250000"]]));
    let q =
        dev.query(&book, &["SELECT rating FROM entries WHERE rating > 3 EXCEPT SELECT 5 ORDER BY 1 DESC"])?;
    assert_eq!(q["rows"], json!([[4]]));
    let q = dev.query(&book, &["--function", "people"])?;
    assert_eq!(q["rows"].as_array().map(Vec::len), Some(1), "one account signed and hosts: {q}");
    let c = cli_json(&dev.node.rpc, &["contract", "show", &book])?;
    let entries = &c["tables"][0];
    assert_eq!(entries["primary_key"], json!(["rowid"]));
    assert!(entries["columns"].to_string().contains("rowid INTEGER NOT NULL (hidden"), "{entries}");
    assert!(entries["indexes"].to_string().contains("entries_newest (at DESC)"), "{entries}");
    dev.node.stop()
}

/// The event index (`docs/dapps.md`): the token's transfers are found by contract, by range, by
/// argument and page by page, with their transactions; a failed call's events are not indexed;
/// after `kill -9` and a restart every event of a block that had a receipt is still there.
#[test]
fn token_events_are_indexed_paged_filtered_and_survive_kill_9() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::start_dev(dir.path(), &[])?;
    let key = dir.path().join("dev.key").display().to_string();
    let dev = Dev { node, key, _dir: tempfile::tempdir()? };
    let (token, _) = dev.deploy("token.sql")?;
    let (bob, carol) = ("aergo1qqqsyqcyq5rqwzqfpg9scrgwpugpzysn8xa4k6", "carol");
    let mut sent = Vec::new();
    for (to, n) in [(bob, "10"), (carol, "20"), (bob, "30"), (carol, "40"), (bob, "50")] {
        let (code, r) = dev.call(&token, "transfer", &[to, n])?;
        assert_eq!(code, 0, "{r}");
        sent.push((
            r["tx_hash"].as_str().unwrap_or_default().to_string(),
            r["block_height"].as_u64().unwrap_or(0),
        ));
    }
    let (code, _) = dev.call(&token, "transfer", &[bob, "0"])?;
    assert_eq!(code, 2);
    let events = |rpc: &str, extra: &[&str]| -> anyhow::Result<Vec<Value>> {
        let mut a = vec!["events", token.as_str()];
        a.extend_from_slice(extra);
        Ok(cli_json(rpc, &a)?.as_array().cloned().unwrap_or_default())
    };
    let all = events(&dev.node.rpc, &[])?;
    let amounts: Vec<i64> = all.iter().map(|e| e["args"]["amount"].as_i64().unwrap_or(-1)).collect();
    assert_eq!(amounts, [10, 20, 30, 40, 50], "{all:?}");
    for (e, (hash, height)) in all.iter().zip(&sent) {
        assert_eq!((e["tx_hash"].as_str(), e["block_height"].as_u64()), (Some(hash.as_str()), Some(*height)));
        assert_eq!(e["name"], "transfer");
    }
    let to_bob = events(&dev.node.rpc, &["--arg", &format!("recipient={bob}")])?;
    let amounts: Vec<i64> = to_bob.iter().map(|e| e["args"]["amount"].as_i64().unwrap_or(-1)).collect();
    assert_eq!(amounts, [10, 30, 50]);
    let by_amount = events(&dev.node.rpc, &["--arg", "amount=40"])?;
    assert_eq!(by_amount.len(), 1);
    assert_eq!(by_amount[0]["args"]["recipient"], carol);
    let (h2, h4) = (sent[1].1.to_string(), sent[3].1.to_string());
    let middle = events(&dev.node.rpc, &["--from", &h2, "--to", &h4])?;
    assert!(
        middle.len() >= 3 && middle.iter().all(|e| e["args"]["amount"] != 10 && e["args"]["amount"] != 50)
    );
    assert!(events(&dev.node.rpc, &["--name", "approval"])?.is_empty());
    // Pages of two through the RPC: the cursor continues without a gap or a repeat.
    let rt = tokio::runtime::Runtime::new()?;
    let client = jsonrpsee::http_client::HttpClientBuilder::default().build(&dev.node.rpc)?;
    let mut filter = aergo_api::EventFilter {
        contract: token.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?,
        name: None,
        args: None,
        from: None,
        to: None,
        limit: Some(2),
        after: None,
        branch: None,
    };
    let mut paged = Vec::new();
    loop {
        use aergo_api::AergoApiClient;
        let page = rt.block_on(client.get_events(filter.clone()))?;
        paged.extend(page.events.iter().map(|e| e.tx_hash.to_string()));
        match page.next {
            Some(next) => filter.after = Some(next),
            None => break,
        }
    }
    let hashes: Vec<String> = sent.iter().map(|(h, _)| h.clone()).collect();
    assert_eq!(paged, hashes);
    let (code, err) = cli(&dev.node.rpc, &["events", &token, "--from", "9", "--to", "3"])?;
    assert_ne!(code, 0);
    assert!(err.to_string().contains("above to"), "{err}");

    // subscribe_events from the first block: the five final ones first, then two new transfers
    // as their blocks become final; each once, in order.
    use jsonrpsee::core::client::SubscriptionClientT;
    let ws_url = dev.node.rpc.replacen("http://", "ws://", 1);
    let ws = rt.block_on(jsonrpsee::ws_client::WsClientBuilder::default().build(&ws_url))?;
    let from_start = aergo_api::EventFilter { from: Some(1), limit: None, after: None, ..filter.clone() };
    let mut sub = rt.block_on(ws.subscribe::<Value, _>(
        "subscribe_events",
        jsonrpsee::rpc_params![from_start],
        "unsubscribe_events",
    ))?;
    let next = |sub: &mut jsonrpsee::core::client::Subscription<Value>| -> anyhow::Result<Value> {
        let got = rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), sub.next()).await });
        Ok(got.map_err(|_| anyhow::anyhow!("no event within 20 s"))?.context("subscription ended")??)
    };
    for (hash, _) in &sent {
        assert_eq!(next(&mut sub)?["tx_hash"].as_str(), Some(hash.as_str()));
    }
    for n in ["60", "70"] {
        let (code, r) = dev.call(&token, "transfer", &[carol, n])?;
        assert_eq!(code, 0, "{r}");
        let e = next(&mut sub)?;
        assert_eq!(
            (e["tx_hash"].clone(), e["args"]["amount"].to_string()),
            (r["tx_hash"].clone(), n.to_string())
        );
    }
    // A bad filter is refused when subscribing.
    let bad = aergo_api::EventFilter { from: Some(9), to: Some(3), after: None, ..filter.clone() };
    let refused = rt.block_on(ws.subscribe::<Value, _>(
        "subscribe_events",
        jsonrpsee::rpc_params![bad],
        "unsubscribe_events",
    ));
    assert!(refused.is_err());
    drop(sub);
    let all = events(&dev.node.rpc, &[])?;
    assert_eq!(all.len(), 7);
    // `aergo events --follow`: the seven, then a new one as its block comes; each once.
    let mut follow = Command::new(binary("aergo"))
        .args(["--rpc", &dev.node.rpc, "events", &token, "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().context("stdout")?;
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = || lines.recv_timeout(Duration::from_secs(20));
    for e in &all {
        let l = line()?;
        assert!(l.contains(e["tx_hash"].as_str().unwrap_or("?")), "{l}");
    }
    let (code, r) = dev.call(&token, "transfer", &[carol, "75"])?;
    assert_eq!(code, 0, "{r}");
    let l = line()?;
    assert!(l.contains(r["tx_hash"].as_str().unwrap_or("?")) && l.contains("amount: 75"), "{l}");
    assert!(lines.recv_timeout(Duration::from_secs(2)).is_err(), "nothing twice");
    follow.kill()?;
    follow.wait()?;
    let all = events(&dev.node.rpc, &[])?;
    assert_eq!(all.len(), 8);

    // kill -9 right after the last receipt: every indexed event is there after the restart, and
    // a subscription resumed after the last one seen gets only what is new.
    let Dev { node, key, _dir } = dev;
    node.kill9();
    let node = NodeProcess::start_dev(dir.path(), &[])?;
    let again = events(&node.rpc, &[])?;
    assert_eq!(again, all);
    let cursor = all.last().map(|e| format!("{}:{}:{}", e["block_height"], e["tx_index"], e["event_index"]));
    let ws = rt.block_on(
        jsonrpsee::ws_client::WsClientBuilder::default().build(node.rpc.replacen("http://", "ws://", 1)),
    )?;
    let resumed = aergo_api::EventFilter { after: cursor, ..filter.clone() };
    let mut sub = rt.block_on(ws.subscribe::<Value, _>(
        "subscribe_events",
        jsonrpsee::rpc_params![resumed],
        "unsubscribe_events",
    ))?;
    let v =
        cli_json(&node.rpc, &["contract", "call", "--key", &key, "--wait", &token, "transfer", bob, "80"])?;
    let e = next(&mut sub)?;
    assert_eq!(e["tx_hash"], v["hash"], "only the new one: {e}");
    node.stop()
}

/// State proofs (`docs/dapps.md`, "State proofs"): an account's and a token row's values at
/// several heights, present and absent, proven by the node and checked by `aergo verify-proof`
/// with no node against a header from `aergo --json block`; a changed byte in the proof, the
/// value, the key, the document's header or the trusted header fails, naming the check.
#[test]
fn state_proofs_verify_offline_and_fail_on_any_changed_byte() -> anyhow::Result<()> {
    let dev = Dev::start()?;
    let rpc = dev.node.rpc.clone();
    let me =
        cli_json(&rpc, &["account", "show", &dev.key])?["address"].as_str().unwrap_or_default().to_string();
    let (token, deployed_at) = dev.deploy("token.sql")?;
    let bob = "aergo1qqqsyqcyq5rqwzqfpg9scrgwpugpzysn8xa4k6";
    let nobody = aergo_primitives::types::Address([9; 20]).to_string();
    let (_, r) = dev.call(&token, "transfer", &[bob, "250"])?;
    let first = r["block_height"].as_u64().context("height")?;
    let (_, r) = dev.call(&token, "transfer", &[bob, "50"])?;
    let second = r["block_height"].as_u64().context("height")?;
    let dir = tempfile::tempdir()?;
    let write = |name: &str, v: &Value| -> anyhow::Result<String> {
        let path = dir.path().join(name);
        std::fs::write(&path, serde_json::to_vec_pretty(v)?)?;
        Ok(path.display().to_string())
    };
    // (exit code, answer) of verify-proof for a document and a header.
    let verify = |doc: &Value, header: &Value| -> anyhow::Result<(i32, Value)> {
        let (d, h) = (write("doc.json", doc)?, write("header.json", header)?);
        cli(&rpc, &["verify-proof", &d, "--header", &h])
    };
    let header_at = |h: u64| cli_json(&rpc, &["block", &h.to_string()]);
    let mut checked = 0;
    for h in [deployed_at, first, second] {
        let header = header_at(h)?;
        let at = h.to_string();
        // My account: present, its balance as `aergo balance` says at that height.
        let doc = cli_json(&rpc, &["proof", "account", &me, "--height", &at])?;
        let balance = cli_json(&rpc, &["balance", &me, "--height", &at])?;
        assert_eq!(doc["account"]["balance"], balance["balance"], "{doc}");
        let (code, v) = verify(&doc, &header)?;
        assert_eq!(code, 0, "{v}");
        assert!(
            v["what"].as_str().unwrap_or_default().contains(&format!("nonce {}", balance["nonce"])),
            "{v}"
        );
        // An account that never existed: proven absent.
        let doc = cli_json(&rpc, &["proof", "account", &nobody, "--height", &at])?;
        assert_eq!(doc["account"], Value::Null, "{doc}");
        let (code, v) = verify(&doc, &header)?;
        assert_eq!(code, 0, "{v}");
        assert!(v["what"].as_str().unwrap_or_default().ends_with("is absent"), "{v}");
        // Bob's token row: absent before the first transfer, then 250, then 300.
        let doc = cli_json(&rpc, &["proof", "row", &token, "balances", bob, "--height", &at])?;
        let expected = match h {
            h if h == deployed_at => Value::Null,
            h if h == first => json!({"owner": bob, "amount": 250}),
            _ => json!({"owner": bob, "amount": 300}),
        };
        assert_eq!(doc["row"], expected, "{doc}");
        let (code, v) = verify(&doc, &header)?;
        assert_eq!(code, 0, "{v}");
        // A proof checked against another height's header fails.
        let other = header_at(if h == second { first } else { second })?;
        let (code, v) = verify(&doc, &other)?;
        assert_eq!((code, v["check"].as_str()), (1, Some("the block")), "{v}");
        checked += 1;
    }
    assert_eq!(checked, 3);

    // One changed byte anywhere fails verification, naming the check.
    let header = header_at(second)?;
    let doc = cli_json(&rpc, &["proof", "row", &token, "balances", bob, "--height", &second.to_string()])?;
    let flip = |hex: &str, byte: usize| -> String {
        let mut b: Vec<u8> =
            (0..hex.len() / 2).filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect();
        b[byte] ^= 0x01;
        b.iter().map(|x| format!("{x:02x}")).collect()
    };
    let mut failures = std::collections::BTreeMap::<String, usize>::new();
    let mut tamper = |path: &[&str], byte: usize| -> anyhow::Result<()> {
        let mut d = doc.clone();
        let mut slot = &mut d;
        for p in path {
            slot = match p.parse::<usize>() {
                Ok(i) => &mut slot[i],
                Err(_) => &mut slot[*p],
            };
        }
        let text = slot.as_str().context("a hex field")?.to_string();
        *slot = Value::String(flip(&text, byte % (text.len() / 2)));
        let (code, v) = verify(&d, &header)?;
        assert_eq!(code, 1, "{path:?} byte {byte} changed still verifies: {v}");
        *failures.entry(v["check"].as_str().unwrap_or_default().to_string()).or_default() += 1;
        Ok(())
    };
    for byte in (0..2_000).step_by(97) {
        tamper(&["entries", "1", "proof"], byte)?;
        tamper(&["entries", "0", "proof"], byte)?;
    }
    for byte in 0..4 {
        tamper(&["entries", "1", "value"], byte)?;
        tamper(&["entries", "1", "key"], byte * 9)?;
        tamper(&["entries", "0", "value"], byte * 101)?;
    }
    assert!(failures.contains_key("the proof") && failures.contains_key("the state key"), "{failures:?}");
    // The decoded row, the document's header and the trusted header.
    let mut d = doc.clone();
    d["row"]["amount"] = json!(301);
    assert_eq!(verify(&d, &header)?.1["check"], "the value");
    let mut d = doc.clone();
    d["block"]["header"]["timestamp_ms"] =
        json!(d["block"]["header"]["timestamp_ms"].as_u64().unwrap_or(0) + 1);
    assert_eq!(verify(&d, &header)?.1["check"], "the block");
    for field in ["state_root", "prev_hash", "tx_root"] {
        let mut t = header.clone();
        let text = t["header"][field].as_str().unwrap_or_default().to_string();
        t["header"][field] = Value::String(flip(&text, 7));
        let (code, v) = verify(&doc, &t)?;
        assert_eq!((code, v["check"].as_str()), (1, Some("the trusted header")), "{field}: {v}");
    }
    let mut t = header.clone();
    t["hash"] = Value::String(flip(t["hash"].as_str().unwrap_or_default(), 0));
    assert_eq!(verify(&doc, &t)?.1["check"], "the trusted header");
    // Text output, the inline header form, and bad requests.
    let d = write("doc.json", &doc)?;
    let out = Command::new(binary("aergo"))
        .args(["verify-proof", &d, "--header", &serde_json::to_string(&header)?])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.starts_with("verified: row [\"") && text.contains("\"amount\":300"),
        "{text}"
    );
    let (code, err) = cli(&rpc, &["proof", "row", &token, "nosuch", bob])?;
    assert_eq!(code, 1);
    assert!(err.as_str().unwrap_or_default().contains("no table \"nosuch\""), "{err}");
    let before = (deployed_at - 1).to_string();
    let (code, err) = cli(&rpc, &["proof", "row", &token, "balances", bob, "--height", &before])?;
    assert_eq!(code, 1);
    assert!(err.as_str().unwrap_or_default().contains("no contract"), "{err}");
    let (code, err) = cli(&rpc, &["proof", "account", &me, "--height", "999999"])?;
    assert_eq!(code, 1);
    assert!(err.as_str().unwrap_or_default().contains("above the chain head"), "{err}");
    dev.node.stop()
}

/// `aergo tx sign` / `aergo tx send` (`docs/dapps.md`): a transfer signed with the node filling in
/// the chain id and nonce; the token deployed and called from bodies signed `--offline` with no
/// node reachable, then sent; an estimate of a signed file; bad bodies and files refused with why.
#[test]
fn transactions_signed_from_json_offline_then_sent() -> anyhow::Result<()> {
    let dev = Dev::start()?;
    let rpc = dev.node.rpc.clone();
    let dir = tempfile::tempdir()?;
    let path = |name: &str| dir.path().join(name).display().to_string();
    let write = |name: &str, v: &Value| -> anyhow::Result<String> {
        std::fs::write(dir.path().join(name), serde_json::to_vec_pretty(v)?)?;
        Ok(path(name))
    };
    let aergo = |args: &[&str]| Command::new(binary("aergo")).args(args).output();
    let me =
        cli_json(&rpc, &["account", "show", &dev.key])?["address"].as_str().unwrap_or_default().to_string();
    let carol = aergo_primitives::types::Address([7; 20]).to_string();

    // Online: chain_id and nonce from the node.
    let body = write(
        "transfer.json",
        &json!({"recipient": carol, "amount": "1234", "payload": {"kind": "transfer"}}),
    )?;
    let out = aergo(&["--rpc", &rpc, "tx", "sign", &body, "--key", &dev.key])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let signed: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(signed["body"]["chain_id"], "aergo-devnet", "{signed}");
    assert_eq!(signed["body"]["sender"].as_str().map(str::len), Some(64));
    let file = write("transfer.signed.json", &signed)?;
    let (code, sent) = cli(&rpc, &["tx", "send", &file, "--wait"])?;
    assert_eq!((code, sent["receipt"]["status"].as_str()), (0, Some("success")), "{sent}");
    assert_eq!(sent["hash"], signed["hash"]);
    assert_eq!(cli_json(&rpc, &["balance", &carol])?["balance"], "1234");
    // Sent again: the node refuses it (its nonce is spent), saying why.
    let (code, again) = cli(&rpc, &["tx", "send", &file])?;
    assert_ne!(code, 0);
    assert!(again.as_str().unwrap_or_default().contains("nonce"), "{again}");

    // Offline, against an address where no node listens: the token's deploy and a call.
    let nonce = cli_json(&rpc, &["balance", &me])?["nonce"].as_u64().context("nonce")?;
    let sql = std::fs::read_to_string(example("token.sql"))?;
    // Signed with --rpc at a port where nothing listens: no node is asked.
    let sign_offline = |body: &str, out: &str| -> anyhow::Result<()> {
        let args =
            ["--rpc", "http://127.0.0.1:9", "tx", "sign", "--offline", body, "--key", &dev.key, "--out", out];
        let done = aergo(&args)?;
        anyhow::ensure!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
        Ok(())
    };
    let deploy = write(
        "deploy.json",
        &json!({"chain_id": "aergo-devnet", "nonce": nonce, "fee": "2000000", "payload": {"kind": "deploy", "sql": sql}}),
    )?;
    sign_offline(&deploy, &path("deploy.tx"))?;
    let token = aergo_primitives::types::contract_address(&me.parse()?, nonce).to_string();
    let call = write(
        "call.json",
        &json!({"chain_id": "aergo-devnet", "nonce": nonce + 1, "fee": "2000000",
                "payload": {"kind": "call", "contract": token, "function": "transfer", "args": [carol, 77]}}),
    )?;
    sign_offline(&call, &path("call.tx"))?;
    let (code, d) = cli(&rpc, &["tx", "send", &path("deploy.tx"), "--wait"])?;
    assert_eq!((code, d["contract"].as_str()), (0, Some(token.as_str())), "{d}");
    // The call as one line of hex, estimated first, then sent.
    let call_tx: Value = serde_json::from_slice(&std::fs::read(dir.path().join("call.tx"))?)?;
    std::fs::write(dir.path().join("call.hex"), format!("{}\n", call_tx["tx"].as_str().unwrap_or_default()))?;
    let (code, e) = cli(&rpc, &["tx", "send", &path("call.hex"), "--estimate"])?;
    assert_eq!((code, e["status"].as_str()), (0, Some("success")), "{e}");
    let (code, r) = cli(&rpc, &["tx", "send", &path("call.hex"), "--wait"])?;
    assert_eq!((code, r["receipt"]["events"][0]["args"]["amount"].as_i64()), (0, Some(77)), "{r}");
    assert_eq!(r["receipt"]["fee"], e["fee"]);

    // Refusals: offline without a nonce, an unknown field, an inexact argument, a bad file.
    let refused = |args: &[&str], expected: &str| -> anyhow::Result<()> {
        let out = aergo(args)?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(expected), "{args:?}: {err}");
        Ok(())
    };
    let no_nonce =
        write("no_nonce.json", &json!({"chain_id": "aergo-devnet", "payload": {"kind": "transfer"}}))?;
    refused(
        &["tx", "sign", "--offline", &no_nonce, "--key", &dev.key],
        "nonce is missing (--offline: give it in the body)",
    )?;
    let unknown = write(
        "unknown.json",
        &json!({"chain_id": "c", "nonce": 1, "colour": "red", "payload": {"kind": "transfer"}}),
    )?;
    refused(&["tx", "sign", "--offline", &unknown, "--key", &dev.key], "unknown field `colour`")?;
    let inexact = write(
        "inexact.json",
        &json!({"chain_id": "c", "nonce": 1, "payload": {"kind": "call", "contract": token, "function": "f", "args": [0.1]}}),
    )?;
    refused(&["tx", "sign", "--offline", &inexact, "--key", &dev.key], "args[0]: 0.1 is not an integer")?;
    std::fs::write(dir.path().join("junk.tx"), "zz not a transaction")?;
    refused(&["--rpc", &rpc, "tx", "send", &path("junk.tx")], "neither a signed transaction file")?;
    std::fs::write(dir.path().join("short.tx"), "0102")?;
    refused(&["--rpc", &rpc, "tx", "send", &path("short.tx")], "not a transaction")?;
    refused(&["--rpc", &rpc, "tx"], "give a transaction hash")?;
    dev.node.stop()
}
