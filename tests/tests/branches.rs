//! Branch and tag records through the real node and the `aergo` CLI (`docs/branches.md`): made on
//! `main` at final blocks, listed and shown, names unique by git's rule, bad input refused with a
//! clear error and nothing recorded.

use aergo_tests::{binary, cli_code_json as cli, cli_json, wait_for, NodeProcess};
use jsonrpsee::core::client::SubscriptionClientT;
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::WsClientBuilder;
use std::process::Command;
use std::time::Duration;

#[test]
fn branches_and_tags_are_recorded_on_main_with_unique_names() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::start_dev(dir.path(), &[])?;
    let rpc = node.rpc.clone();
    let key = dir.path().join("dev.key").display().to_string();
    let me = cli_json(&rpc, &["account", "show", &key])?["address"].as_str().unwrap_or_default().to_string();
    let (code, v) = cli(&rpc, &["branch", "list"])?;
    assert_eq!((code, v.clone()), (0, serde_json::json!([])), "{v}");

    // A branch of main at its last final block (a devnet's blocks are final at once).
    let lib = cli_json(&rpc, &["block"])?["header"]["height"].as_u64().unwrap_or(0);
    let (code, v) = cli(&rpc, &["branch", "create", "feature", "--from", "main", "--key", &key, "--wait"])?;
    assert_eq!((code, v["receipt"]["status"].as_str()), (0, Some("success")), "{v}");
    let created_at = v["receipt"]["block_height"].as_u64().unwrap_or(0);
    let b = cli_json(&rpc, &["branch", "show", "feature"])?;
    assert_eq!(b["parent"], "main");
    assert_eq!(b["creator"], me.as_str());
    assert_eq!(b["producers"], serde_json::json!([me]), "the creator alone produces by default");
    assert_eq!(b["created_at"].as_u64(), Some(created_at));
    let base = b["base_height"].as_u64().unwrap_or(u64::MAX);
    assert!(base >= lib && base < created_at, "base {base}, final {lib} when asked, made at {created_at}");
    let block = cli_json(&rpc, &["block", &base.to_string()])?;
    assert_eq!(b["base_hash"], block["hash"], "the base names its block");
    assert_eq!(cli_json(&rpc, &["branch", "list"])?.as_array().map(Vec::len), Some(1));
    let text = Command::new(binary("aergo")).args(["--rpc", &rpc, "branch", "list"]).output()?;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("branch feature") && text.contains(&format!("from main@{base}")), "{text}");

    // Taken names, by git's rule for names with slashes: the transaction fails, its fee is paid,
    // nothing is recorded.
    for (name, taken) in [("feature", "feature"), ("feature/x", "feature")] {
        let (code, v) = cli(&rpc, &["branch", "create", name, "--key", &key, "--wait"])?;
        assert_eq!(code, 2, "{v}");
        let err = v["receipt"]["error"].as_str().unwrap_or_default();
        assert_eq!(err, format!("branch name {name:?} is taken by {taken:?}"), "{v}");
    }
    assert_eq!(cli_json(&rpc, &["branch", "list"])?.as_array().map(Vec::len), Some(1));

    // Refused before anything is signed or sent: a bad name, a base that is not final, a REF that
    // names nothing; and an unknown branch to show.
    let (code, v) = cli(&rpc, &["branch", "create", "Bad", "--key", &key])?;
    assert_ne!(code, 0);
    assert!(v.as_str().unwrap_or_default().contains("is not 1 to 63 of a-z"), "{v}");
    let (code, v) = cli(&rpc, &["branch", "create", "later", "--from", "main@99999", "--key", &key])?;
    assert_ne!(code, 0);
    assert!(v.as_str().unwrap_or_default().contains("height 99999 is not final"), "{v}");
    let (code, v) = cli(&rpc, &["branch", "create", "x", "--from", "nosuch", "--key", &key])?;
    assert_ne!(code, 0);
    assert!(v.as_str().unwrap_or_default().contains("is neither a branch, BRANCH@HEIGHT nor a tag"), "{v}");
    let (code, v) = cli(&rpc, &["branch", "show", "nosuch"])?;
    assert_ne!(code, 0);
    assert!(
        v.as_str().unwrap_or_default().contains("on this chain") && v.to_string().contains("nosuch"),
        "{v}"
    );

    // Tags: one per final block name, immutable, resolvable as a REF.
    let (code, v) = cli(&rpc, &["tag", "create", "v1", "main@2", "--key", &key, "--wait"])?;
    assert_eq!((code, v["receipt"]["status"].as_str()), (0, Some("success")), "{v}");
    let tags = cli_json(&rpc, &["tag", "list"])?;
    assert_eq!(tags[0]["name"], "v1");
    assert_eq!(tags[0]["height"], 2);
    assert_eq!(tags[0]["hash"], cli_json(&rpc, &["block", "2"])?["hash"], "{tags}");
    let (code, v) = cli(&rpc, &["tag", "create", "v1", "main", "--key", &key, "--wait"])?;
    assert_eq!(code, 2, "{v}");
    assert_eq!(v["receipt"]["error"], "tag name \"v1\" is taken by \"v1\"", "{v}");
    let (code, v) = cli(&rpc, &["branch", "create", "release", "--from", "v1", "--key", &key, "--wait"])?;
    assert_eq!(code, 0, "{v}");
    assert_eq!(cli_json(&rpc, &["branch", "show", "release"])?["base_height"], 2);

    // A transaction signed for a branch this node does not hold is refused, with what to do: it
    // can never run on main.
    let to = me.as_str();
    let before = cli_json(&rpc, &["balance", to])?;
    for nonce in [None, Some("0")] {
        let mut args = vec!["send", "--branch", "feature", "--to", to, "--amount", "1", "--key", &key];
        args.extend(nonce.map(|n| ["--nonce", n]).into_iter().flatten());
        let (code, v) = cli(&rpc, &args)?;
        assert_ne!(code, 0);
        let said = v.to_string();
        assert!(said.contains("is not tracked by this node (aergo branch track feature)"), "{v}");
    }
    let (code, v) = cli(&rpc, &["send", "--branch", "No Such", "--to", to, "--amount", "1", "--key", &key])?;
    assert_ne!(code, 0);
    assert!(v.to_string().contains("--branch"), "{v}");
    let after = cli_json(&rpc, &["balance", to])?;
    assert_eq!(
        (&after["nonce"], &after["pending_nonce"]),
        (&before["nonce"], &before["pending_nonce"]),
        "nothing was sent"
    );
    node.stop()
}

/// A branch made on a devnet grows blocks of its own on the node that tracks it: reads name the
/// branch (or a REF), transfers on the branch leave `main` unchanged, its blocks say their branch,
/// blocks at or below the base are main's, a tag names a branch block, and the branch is there
/// again after a clean restart and after `kill -9`.
#[test]
fn a_tracked_branch_produces_its_own_blocks_and_reads_name_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::start_dev(dir.path(), &[])?;
    let rpc = node.rpc.clone();
    let key = dir.path().join("dev.key").display().to_string();
    let me = cli_json(&rpc, &["account", "show", &key])?["address"].as_str().unwrap_or_default().to_string();
    let to = aergo_primitives::crypto::Keypair::from_seed("branch-recipient").address().to_string();

    // The dev key is the node's producer key: the branch's default producer set is its creator.
    let (code, v) = cli(&rpc, &["branch", "create", "feature", "--from", "main", "--key", &key, "--wait"])?;
    assert_eq!(code, 0, "{v}");
    let base = cli_json(&rpc, &["branch", "show", "feature"])?["base_height"].as_u64().unwrap_or(0);
    assert_eq!(cli_json(&rpc, &["branch", "show", "feature"])?["tracked"], false);
    let (code, v) = cli(&rpc, &["--branch", "feature", "balance", &me])?;
    assert_ne!(code, 0);
    assert!(v.to_string().contains("is not tracked by this node (aergo branch track feature)"), "{v}");
    let (code, v) = cli(&rpc, &["--branch", "nosuch", "chain"])?;
    assert_ne!(code, 0);
    assert!(v.to_string().contains("no branch") && v.to_string().contains("nosuch"), "{v}");
    let (code, v) = cli(&rpc, &["branch", "track", "nosuch"])?;
    assert_ne!(code, 0, "{v}");

    // Track it: the node opens it (its record's block is final at once on a devnet).
    let v = cli_json(&rpc, &["branch", "track", "feature"])?;
    assert_eq!(v["tracked"], true, "{v}");
    let info = wait_for(Duration::from_secs(20), "the branch open", || {
        cli_json(&rpc, &["--branch", "feature", "chain"]).ok()
    })?;
    assert_eq!((info["branch"].as_str(), info["height"].as_u64()), (Some("feature"), Some(base)), "{info}");
    let main_at_base = cli_json(&rpc, &["balance", &me, "--height", &base.to_string()])?;
    let on_branch = cli_json(&rpc, &["--branch", "feature", "balance", &me])?;
    assert_eq!(
        (&on_branch["balance"], &on_branch["nonce"]),
        (&main_at_base["balance"], &main_at_base["nonce"])
    );
    let base_block = cli_json(&rpc, &["--branch", "feature", "block", &base.to_string()])?;
    assert_eq!(
        base_block["hash"],
        cli_json(&rpc, &["block", &base.to_string()])?["hash"],
        "the base is main's block"
    );

    // A subscription to the branch's blocks (WebSocket); an unknown branch's is refused.
    let rt = tokio::runtime::Runtime::new()?;
    let ws = rt.block_on(WsClientBuilder::default().build(rpc.replacen("http://", "ws://", 1)))?;
    let mut blocks = rt.block_on(ws.subscribe::<serde_json::Value, _>(
        "subscribe_blocks",
        rpc_params!["feature"],
        "unsubscribe_blocks",
    ))?;
    let refused = rt
        .block_on(ws.subscribe::<serde_json::Value, _>(
            "subscribe_blocks",
            rpc_params!["nosuch"],
            "unsubscribe_blocks",
        ))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(refused.contains("no branch") && refused.contains("nosuch"), "{refused}");

    // Transfers on the branch: included in the branch's blocks, main unaffected.
    let main_before = cli_json(&rpc, &["balance", &to])?["balance"].clone();
    let mut heights = Vec::new();
    for amount in ["1000", "234"] {
        let v = cli_json(
            &rpc,
            &["--branch", "feature", "send", "--to", &to, "--amount", amount, "--key", &key, "--wait"],
        )?;
        assert_eq!(v["receipt"]["status"], "success", "{v}");
        heights.push(v["receipt"]["block_height"].as_u64().unwrap_or(0));
    }
    assert!(heights[0] > base && heights[1] >= heights[0], "{heights:?} above base {base}");
    let head = heights[1];
    let streamed: Vec<(u64, String)> = (0..2)
        .filter_map(|_| {
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), blocks.next()).await })
                .ok()
                .flatten()
        })
        .filter_map(Result::ok)
        .map(|b| {
            (b["height"].as_u64().unwrap_or(0), b["header"]["branch"].as_str().unwrap_or("").to_string())
        })
        .collect();
    assert_eq!(streamed.first(), Some(&(heights[0], "feature".to_string())), "{streamed:?}");
    assert!(streamed.iter().all(|(_, b)| b == "feature"), "only the branch's blocks: {streamed:?}");
    assert_eq!(cli_json(&rpc, &["--branch", "feature", "balance", &to])?["balance"], "1234");
    assert_eq!(cli_json(&rpc, &["balance", &to])?["balance"], main_before, "main is unchanged");
    let block = cli_json(&rpc, &["--branch", "feature", "block", &head.to_string(), "--full"])?;
    assert_eq!(block["header"]["branch"], "feature", "{block}");
    let main_block = cli_json(&rpc, &["block", &head.to_string()]).ok();
    assert_ne!(
        main_block.map(|b| b["hash"].clone()),
        Some(block["hash"].clone()),
        "a branch block is not main's"
    );
    let hash = block["transactions"][0]["hash"].as_str().unwrap_or_default().to_string();
    let receipt = cli_json(&rpc, &["--branch", "feature", "receipt", &hash])?;
    assert_eq!(receipt["block_height"].as_u64(), Some(head));
    let (code, v) = cli(&rpc, &["receipt", &hash])?;
    assert_ne!(code, 0, "main has no such transaction: {v}");
    let info = cli_json(&rpc, &["--branch", "feature", "chain"])?;
    assert_eq!(info["lib_height"].as_u64(), Some(head), "one producer: final at once ({info})");
    let shown = cli_json(&rpc, &["branch", "show", "feature"])?;
    assert_eq!(shown["head_height"].as_u64(), Some(head), "{shown}");
    // `aergo log`: the branch's blocks newest first, then main's from the base down.
    let log = cli_json(&rpc, &["log", "feature", "-n", &(head - base + 2).to_string()])?;
    let log: Vec<(u64, String)> = log
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| {
                    (
                        b["height"].as_u64().unwrap_or(0),
                        b["header"]["branch"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let expected: Vec<(u64, String)> = (base.saturating_sub(1)..=head)
        .rev()
        .map(|h| (h, if h > base { "feature" } else { "main" }.to_string()))
        .collect();
    assert_eq!(log, expected);
    assert_eq!(cli_json(&rpc, &["--branch", "feature", "log", "-n", "1"])?[0]["height"].as_u64(), Some(head));

    // Reads at a REF: BRANCH@HEIGHT, and a tag made on the branch (named feature/…).
    let at_first = cli_json(&rpc, &["balance", &to, "--at", &format!("feature@{}", heights[0])])?;
    assert_eq!(at_first["balance"], "1000", "{at_first}");
    let (code, v) = cli(
        &rpc,
        &["tag", "create", "feature/v1", &format!("feature@{}", heights[0]), "--key", &key, "--wait"],
    )?;
    assert_eq!(code, 0, "{v}");
    assert_eq!(cli_json(&rpc, &["balance", &to, "--at", "feature/v1"])?["balance"], "1000");
    assert_eq!(cli_json(&rpc, &["balance", &to, "--at", &format!("main@{base}")])?["balance"], main_before);

    // A branch of the branch: made on `feature` (so named `feature/…`), it reads `feature` at its
    // base and grows on its own; `feature` is unchanged by it.
    let (code, v) = cli(
        &rpc,
        &[
            "branch",
            "create",
            "feature/sub",
            "--from",
            &format!("feature@{}", heights[0]),
            "--key",
            &key,
            "--wait",
        ],
    )?;
    assert_eq!(code, 0, "{v}");
    let (code, v) = cli(
        &rpc,
        &["branch", "create", "other", "--from", &format!("feature@{}", heights[0]), "--key", &key],
    )?;
    assert_ne!(code, 0, "a branch made on feature is named feature/…: {v}");
    let sub = cli_json(&rpc, &["branch", "track", "feature/sub"])?;
    assert_eq!(
        (&sub["parent"], sub["base_height"].as_u64()),
        (&serde_json::json!("feature"), Some(heights[0])),
        "{sub}"
    );
    wait_for(Duration::from_secs(20), "the branch of the branch open", || {
        cli_json(&rpc, &["--branch", "feature/sub", "chain"]).ok()
    })?;
    assert_eq!(
        cli_json(&rpc, &["--branch", "feature/sub", "balance", &to])?["balance"],
        "1000",
        "feature at the base"
    );
    let v = cli_json(
        &rpc,
        &["--branch", "feature/sub", "send", "--to", &to, "--amount", "1", "--key", &key, "--wait"],
    )?;
    assert_eq!(v["receipt"]["status"], "success", "{v}");
    assert_eq!(cli_json(&rpc, &["--branch", "feature/sub", "balance", &to])?["balance"], "1001");
    assert_eq!(
        cli_json(&rpc, &["--branch", "feature", "balance", &to])?["balance"],
        "1234",
        "feature is unchanged"
    );
    let log = cli_json(&rpc, &["log", "feature/sub", "-n", "3"])?;
    assert_eq!(log[0]["header"]["branch"], "feature/sub", "{log}");
    // The lists name the records made on the branches this node holds too, each once.
    let names = |v: serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|b| b["name"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    assert_eq!(names(cli_json(&rpc, &["branch", "list"])?), ["feature", "feature/sub"]);
    assert_eq!(names(cli_json(&rpc, &["tag", "list"])?), ["feature/v1"]);

    // A clean restart and a kill -9: the branch is tracked again from the data directory, with its
    // blocks and state.
    node.stop()?;
    let node = NodeProcess::start_dev(dir.path(), &[])?;
    let rpc = node.rpc.clone();
    let info = wait_for(Duration::from_secs(20), "the branch open again", || {
        cli_json(&rpc, &["--branch", "feature", "chain"]).ok()
    })?;
    assert!(info["height"].as_u64() >= Some(head), "{info}");
    assert_eq!(cli_json(&rpc, &["--branch", "feature", "balance", &to])?["balance"], "1234");
    let v = cli_json(
        &rpc,
        &["--branch", "feature", "send", "--to", &to, "--amount", "6", "--key", &key, "--wait"],
    )?;
    assert_eq!(v["receipt"]["status"], "success", "{v}");
    node.kill9();
    let node = NodeProcess::start_dev(dir.path(), &[])?;
    let rpc = node.rpc.clone();
    wait_for(Duration::from_secs(20), "the branch open after kill -9", || {
        cli_json(&rpc, &["--branch", "feature", "chain"]).ok()
    })?;
    assert_eq!(
        cli_json(&rpc, &["--branch", "feature", "balance", &to])?["balance"],
        "1240",
        "an acknowledged write survives"
    );
    assert_eq!(cli_json(&rpc, &["balance", &to])?["balance"], main_before);
    node.stop()
}

/// `aergo merge` on a devnet: a branch's transfers since its base run again on `main`; those whose
/// nonce `main` took and those that fail there are dropped with their reasons, the others keep
/// their hashes and say which merge brought them; a second merge with nothing new is refused; a
/// `kill -9` right after a merge is sent leaves it applied once or not at all.
#[test]
fn a_replay_merge_brings_a_branch_into_main_and_drops_what_no_longer_fits() -> anyhow::Result<()> {
    use aergo_primitives::crypto::{KeyFile, Keypair};
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::start_dev(dir.path(), &[])?;
    let rpc = node.rpc.clone();
    let dev = dir.path().join("dev.key").display().to_string();
    let key = |seed: &str| -> anyhow::Result<(String, String)> {
        let k = Keypair::from_seed(seed);
        let path = dir.path().join(format!("{seed}.key"));
        KeyFile::write_plain(&path, &k)?;
        Ok((path.display().to_string(), k.address().to_string()))
    };
    let (alice, alice_addr) = key("merge-alice")?;
    let (bob, bob_addr) = key("merge-bob")?;
    let (carol, carol_addr) = key("merge-carol")?;
    let dave = Keypair::from_seed("merge-dave").address().to_string();
    let erin = Keypair::from_seed("merge-erin").address().to_string();
    let send = |branch: &str, from: &str, to: &str, amount: &str| -> anyhow::Result<serde_json::Value> {
        let v = cli_json(
            &rpc,
            &["--branch", branch, "send", "--to", to, "--amount", amount, "--key", from, "--wait"],
        )?;
        assert_eq!(v["receipt"]["status"], "success", "{v}");
        Ok(v)
    };
    let balance = |branch: &str, who: &str| -> anyhow::Result<String> {
        Ok(cli_json(&rpc, &["--branch", branch, "balance", who])?["balance"]
            .as_str()
            .unwrap_or("")
            .to_string())
    };
    send("main", &dev, &alice_addr, "1000")?;
    send("main", &dev, &bob_addr, "1000")?;
    let token = aergo_tests::workspace().join("examples/contracts/token.sql");
    let v =
        cli_json(&rpc, &["contract", "deploy", token.to_str().unwrap_or_default(), "--key", &dev, "--wait"])?;
    let contract = v["contract"].as_str().unwrap_or("").to_string();

    let (code, v) = cli(&rpc, &["branch", "create", "feature", "--from", "main", "--key", &dev, "--wait"])?;
    assert_eq!(code, 0, "{v}");
    cli_json(&rpc, &["branch", "track", "feature"])?;
    wait_for(Duration::from_secs(20), "the branch open", || {
        cli_json(&rpc, &["--branch", "feature", "chain"]).ok()
    })?;
    let (code, v) = cli(&rpc, &["merge", "feature", "--key", &dev, "--strategy", "sideways"])?;
    assert_ne!(code, 0);
    assert!(v.to_string().contains("replay, three-way, ours or theirs"), "{v}");

    // On the branch: alice and bob pay carol, the dev key pays erin (its nonce on main moved on
    // when it made the branch), carol passes on what bob sent.
    let from_alice = send("feature", &alice, &carol_addr, "100")?["hash"].as_str().unwrap_or("").to_string();
    let from_bob = send("feature", &bob, &carol_addr, "200")?["hash"].as_str().unwrap_or("").to_string();
    let from_dev = send("feature", &dev, &erin, "7")?["hash"].as_str().unwrap_or("").to_string();
    let v = cli_json(
        &rpc,
        &[
            "--branch", "feature", "contract", "call", "--key", &dev, "--wait", &contract, "transfer",
            "somebody", "5",
        ],
    )?;
    assert_eq!(v["receipt"]["status"], "success", "{v}");
    let dev_call = v["hash"].as_str().unwrap_or("").to_string();
    let from_carol = send("feature", &carol, &dave, "250")?["hash"].as_str().unwrap_or("").to_string();
    assert_eq!(balance("feature", &dave)?, "250");
    // On main: bob spends with the nonce his branch transfer used.
    send("main", &bob, &erin, "10")?;

    // `aergo diff`: what differs between main and the branch, with the side that changed it since
    // their merge base (the branch's base).
    let base = cli_json(&rpc, &["branch", "show", "feature"])?["base_height"].as_u64().unwrap_or(0);
    let d = cli_json(&rpc, &["diff", "main", "feature"])?;
    assert_eq!(d["base"], serde_json::json!({"branch": "main", "height": base}), "{d}");
    assert_eq!(d["to"]["branch"], "feature");
    let entries = d["entries"].as_array().cloned().unwrap_or_default();
    let account = |a: &str| entries.iter().find(|e| e["kind"] == "account" && e["address"] == a).cloned();
    let carol_diff = account(&carol_addr).unwrap_or_default();
    assert_eq!(carol_diff["side"], "to", "{d}");
    assert_eq!(carol_diff["from"], serde_json::Value::Null, "{d}");
    assert_eq!(carol_diff["to"], serde_json::json!({"balance": "50", "nonce": 1}), "{d}");
    let bob_diff = account(&bob_addr).unwrap_or_default();
    assert_eq!(bob_diff["side"], "both", "{d}");
    assert_eq!(
        (&bob_diff["from"]["balance"], &bob_diff["to"]["balance"]),
        (&serde_json::json!("990"), &serde_json::json!("800"))
    );
    assert_eq!(account(&dave).map(|e| e["side"].clone()), Some(serde_json::json!("to")), "{d}");
    let row = entries
        .iter()
        .find(|e| e["kind"] == "row" && e["key"] == serde_json::json!(["somebody"]))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (&row["contract"], &row["table"], &row["key"], &row["side"]),
        (
            &serde_json::json!(contract),
            &serde_json::json!("balances"),
            &serde_json::json!(["somebody"]),
            &serde_json::json!("to")
        ),
        "{d}"
    );
    assert_eq!(
        (&row["from"], &row["to"]["amount"]),
        (&serde_json::Value::Null, &serde_json::json!(5)),
        "{d}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "other" && e["key"] == "sys/branch/feature" && e["side"] == "from"),
        "the branch's record is main's change: {d}"
    );
    let text = Command::new(binary("aergo")).args(["--rpc", &rpc, "diff", "main", "feature"]).output()?;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("(merge base main@{base})")), "{text}");
    assert!(text.contains(&format!("+ account {carol_addr}: none → balance 50 nonce 1")), "{text}");
    assert!(
        text.contains(&format!("~ account {bob_addr}: balance 990 nonce 1 → balance 800 nonce 1")),
        "{text}"
    );
    // Two points of one branch: the lower is the base; nothing differs with itself.
    let same = cli_json(&rpc, &["diff", "feature", "feature"])?;
    assert_eq!(same["entries"], serde_json::json!([]), "{same}");
    let (code, v) = cli(&rpc, &["diff", "main", "nosuch"])?;
    assert_ne!(code, 0);
    assert!(v.to_string().contains("nosuch"), "{v}");

    let v = cli_json(&rpc, &["merge", "feature", "--key", &dev, "--wait"])?;
    let receipt = &v["receipt"];
    assert_eq!(receipt["status"], "success", "{v}");
    let merge_hash = v["hash"].as_str().unwrap_or("").to_string();
    let rows = receipt["result"]["rows"].as_array().cloned().unwrap_or_default();
    let row = |hash: &str| rows.iter().find(|r| r[0] == hash).cloned().unwrap_or_default();
    assert_eq!(rows.len(), 5, "every transaction of the branch: {v}");
    assert_eq!(row(&from_alice)[2], "included", "{v}");
    for (hash, reason) in [
        (&from_bob, "nonce 0 but the account's next nonce is 1"),
        (&from_dev, "but the account's next nonce is"),
        (&dev_call, "but the account's next nonce is"),
        (&from_carol, "balance too low: 100 after the fee, the transfer needs 250"),
    ] {
        assert_eq!(row(hash)[2], "dropped", "{v}");
        assert!(row(hash)[3].as_str().unwrap_or("").contains(reason), "{hash}: {v}");
    }
    assert_eq!(balance("main", &carol_addr)?, "100");
    assert_eq!(balance("main", &dave)?, "0");
    assert_eq!(balance("main", &erin)?, "10", "only bob's transfer on main");
    assert_eq!(balance("feature", &carol_addr)?, "50", "the branch is unchanged by the merge");
    let replayed = cli_json(&rpc, &["receipt", &from_alice])?;
    assert_eq!(replayed["merged_by"], merge_hash.as_str(), "{replayed}");
    assert_eq!(replayed["block_height"], receipt["block_height"]);
    let (code, v) = cli(&rpc, &["receipt", &from_bob])?;
    assert_ne!(code, 0, "a dropped transaction is not on main: {v}");

    // Nothing new on the branch: refused, nothing changed but the fee.
    let (code, v) = cli(&rpc, &["merge", "feature", "--key", &dev, "--wait"])?;
    assert_eq!(code, 2, "{v}");
    assert!(v["receipt"]["error"].as_str().unwrap_or("").contains("nothing to merge"), "{v}");
    // Only the creator or its mergers may merge (bob's nonce on main, not alice's, whose next
    // transfer on the branch is merged below).
    let (code, v) = cli(&rpc, &["merge", "feature", "--key", &bob, "--wait"])?;
    assert_eq!(code, 2, "{v}");
    assert!(v["receipt"]["error"].as_str().unwrap_or("").contains("only the creator"), "{v}");

    // kill -9 right after a merge is sent: once restarted, the merge is applied or not, never in
    // part; merging again then brings carol's 1 in exactly once.
    send("feature", &alice, &carol_addr, "1")?;
    let (code, v) = cli(&rpc, &["merge", "feature", "--key", &dev])?;
    assert_eq!(code, 0, "{v}");
    let sent = v["hash"].as_str().unwrap_or("").to_string();
    node.kill9();
    let node = NodeProcess::start_dev(dir.path(), &[])?;
    let rpc = node.rpc.clone();
    wait_for(Duration::from_secs(20), "the branch open after kill -9", || {
        cli_json(&rpc, &["--branch", "feature", "chain"]).ok()
    })?;
    let carol_now = cli_json(&rpc, &["balance", &carol_addr])?["balance"].as_str().unwrap_or("").to_string();
    match cli(&rpc, &["receipt", &sent])? {
        (0, r) => {
            assert_eq!(r["status"], "success", "{r}");
            assert_eq!(carol_now, "101", "the merge applied whole: {r}");
        }
        (_, r) => assert_eq!(carol_now, "100", "the merge not applied at all: {r}"),
    }
    let (code, v) = cli(&rpc, &["merge", "feature", "--key", &dev, "--wait"])?;
    if carol_now == "100" {
        assert_eq!(code, 0, "{v}");
    } else {
        assert!(v["receipt"]["error"].as_str().unwrap_or("").contains("nothing to merge"), "{v}");
    }
    assert_eq!(cli_json(&rpc, &["balance", &carol_addr])?["balance"], "101", "applied exactly once");
    node.stop()?;
    // `aergo-node verify` replays main from genesis to the stored state root, its merges
    // included: it reads their sources from the branches in the data directory.
    let (ok, out, err) =
        aergo_tests::node_command(&["verify", "--data-dir", dir.path().to_str().unwrap_or_default()])?;
    assert!(ok && out.contains("ok"), "{out}{err}");
    Ok(())
}

/// `aergo merge --strategy three-way` on a devnet: the token's balances changed on both sides
/// go through its resolver (`on_merge_balances`: both sides' changes added), coins changed on
/// both sides are summed; the guestbook, whose rows both sides added under the same row id and
/// which has no resolver, refuses the merge and names the row, changing nothing; `ours` then
/// keeps main's row.
#[test]
fn a_three_way_merge_resolves_the_tokens_rows_and_refuses_a_conflict_without_a_resolver() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::start_dev(dir.path(), &[])?;
    let rpc = node.rpc.clone();
    let dev = dir.path().join("dev.key").display().to_string();
    let me = cli_json(&rpc, &["account", "show", &dev])?["address"].as_str().unwrap_or_default().to_string();
    let erin = aergo_primitives::crypto::Keypair::from_seed("three-way-erin").address().to_string();
    let examples = aergo_tests::workspace().join("examples/contracts");
    let deploy = |file: &str| -> anyhow::Result<String> {
        let path = examples.join(file);
        let v = cli_json(
            &rpc,
            &["contract", "deploy", path.to_str().unwrap_or_default(), "--key", &dev, "--wait"],
        )?;
        Ok(v["contract"].as_str().unwrap_or("").to_string())
    };
    let token = deploy("token.sql")?;
    let book = deploy("guestbook.sql")?;
    let call = |branch: &str, contract: &str, function: &str, args: &[&str]| -> anyhow::Result<()> {
        let mut a = vec!["--branch", branch, "contract", "call", "--key", &dev, "--wait", contract, function];
        a.extend_from_slice(args);
        let v = cli_json(&rpc, &a)?;
        anyhow::ensure!(v["receipt"]["status"] == "success", "{v}");
        Ok(())
    };
    let tokens_of = |branch: &str, who: &str| -> anyhow::Result<serde_json::Value> {
        let v =
            cli_json(&rpc, &["--branch", branch, "query", &token, "--function", "balance_of", "--arg", who])?;
        Ok(v["rows"][0][0].clone())
    };
    let send = |branch: &str, to: &str, amount: &str| -> anyhow::Result<()> {
        let v = cli_json(
            &rpc,
            &["--branch", branch, "send", "--to", to, "--amount", amount, "--key", &dev, "--wait"],
        )?;
        anyhow::ensure!(v["receipt"]["status"] == "success", "{v}");
        Ok(())
    };
    for name in ["feature", "other"] {
        let (code, v) = cli(&rpc, &["branch", "create", name, "--from", "main", "--key", &dev, "--wait"])?;
        assert_eq!(code, 0, "{v}");
        cli_json(&rpc, &["branch", "track", name])?;
        wait_for(Duration::from_secs(20), "the branch open", || {
            cli_json(&rpc, &["--branch", name, "chain"]).ok()
        })?;
    }

    // The token and coins on both sides of `feature`.
    call("feature", &token, "transfer", &["somebody", "10"])?;
    send("feature", &erin, "7")?;
    call("main", &token, "transfer", &["somebody", "3"])?;
    send("main", &erin, "5")?;
    let v = cli_json(&rpc, &["merge", "feature", "--strategy", "three-way", "--key", &dev, "--wait"])?;
    assert_eq!(v["receipt"]["status"], "success", "{v}");
    let rows = v["receipt"]["result"]["rows"].as_array().cloned().unwrap_or_default();
    assert!(
        rows.iter().any(|r| r[0] == "row"
            && r[1].as_str().unwrap_or("").contains("balances(\"somebody\")")
            && r[2] == "resolved"),
        "{v}"
    );
    assert!(rows.iter().any(|r| r[0] == "account" && r[1] == erin.as_str() && r[2] == "summed"), "{v}");
    // By hand: somebody 3 on main + 10 on the branch; the deployer 1000000 − 13; erin 5 + 7.
    assert_eq!(tokens_of("main", "somebody")?, 13);
    assert_eq!(tokens_of("main", &me)?, 1_000_000 - 13);
    assert_eq!(cli_json(&rpc, &["balance", &erin])?["balance"], "12");
    assert_eq!(tokens_of("feature", "somebody")?, 10, "the branch is unchanged");

    // The guestbook on both sides of `other`: both signed under row id 2, no resolver.
    call("other", &book, "sign", &["from the branch", "5"])?;
    call("main", &book, "sign", &["from main", "4"])?;
    let latest = |branch: &str| -> anyhow::Result<serde_json::Value> {
        Ok(cli_json(&rpc, &["--branch", branch, "query", &book, "--function", "latest", "--arg", "1"])?
            ["rows"][0][1]
            .clone())
    };
    let (code, v) = cli(&rpc, &["merge", "other", "--strategy", "three-way", "--key", &dev, "--wait"])?;
    assert_eq!(code, 2, "{v}");
    let error = v["receipt"]["error"].as_str().unwrap_or("");
    assert!(
        error.contains("1 conflict without a resolver") && error.contains(&format!("{book} entries(2)")),
        "{v}"
    );
    assert_eq!(latest("main")?, "from main", "nothing changed");
    let v = cli_json(&rpc, &["merge", "other", "--strategy", "ours", "--key", &dev, "--wait"])?;
    assert_eq!(v["receipt"]["status"], "success", "{v}");
    assert_eq!(latest("main")?, "from main", "ours keeps main's row");
    node.stop()?;
    // `aergo-node verify` replays main from genesis to the stored state root, its merges
    // included: it reads their sources from the branches in the data directory.
    let (ok, out, err) =
        aergo_tests::node_command(&["verify", "--data-dir", dir.path().to_str().unwrap_or_default()])?;
    assert!(ok && out.contains("ok"), "{out}{err}");
    Ok(())
}
