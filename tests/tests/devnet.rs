//! The devnet from the outside: the real `aergo-node --dev` and `aergo` binaries, transfers, reads at
//! old heights, `kill -9` in the middle of a burst, restart, and a full replay of the log.

use aergo_api::AergoApiClient;
use aergo_primitives::crypto::{KeyFile, Keypair};
use aergo_primitives::types::{Address, Payload, TxBody, ENCODING_VERSION};
use aergo_tests::{cli_json, node_command, wait_for, NodeProcess};
use jsonrpsee::http_client::HttpClientBuilder;
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn s(v: &serde_json::Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
}

#[test]
fn devnet_transfers_history_and_kill9_recovery() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("node");
    let node = NodeProcess::start_dev(&data, &[])?;
    let rpc = node.rpc.clone();
    let dev_key = data.join("dev.key");
    let dev_key_s = dev_key.to_str().unwrap();

    // A new encrypted account through the CLI.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "correct horse battery\n")?;
    let bob_key = dir.path().join("bob.key");
    let created = cli_json(
        &rpc,
        &["account", "new", "--out", bob_key.to_str().unwrap(), "--password-file", pw.to_str().unwrap()],
    )?;
    let bob = s(&created["address"]);
    assert_eq!(s(&cli_json(&rpc, &["account", "show", bob_key.to_str().unwrap()])?["address"]), bob);

    // Two transfers, each waited for; balances at both heights.
    let send = |amount: &str| {
        cli_json(
            &rpc,
            &["send", "--key", dev_key_s, "--to", &bob, "--amount", amount, "--fee", "1", "--wait"],
        )
    };
    let r1 = send("1000")?;
    let r2 = send("500")?;
    assert_eq!(s(&r1["receipt"]["status"]), "success");
    let (h1, h2) =
        (r1["receipt"]["block_height"].as_u64().unwrap(), r2["receipt"]["block_height"].as_u64().unwrap());
    assert!(h2 > h1);
    let at = |h: u64| cli_json(&rpc, &["balance", &bob, "--height", &h.to_string()]);
    assert_eq!(s(&at(h1)?["balance"]), "1000");
    assert_eq!(s(&at(h2)?["balance"]), "1500");
    assert_eq!(s(&at(h1 - 1)?["balance"]), "0");
    let tx = cli_json(&rpc, &["tx", &s(&r1["hash"])])?;
    assert_eq!((s(&tx["state"]), tx["block_height"].as_u64()), ("included".to_string(), Some(h1)));
    let block = cli_json(&rpc, &["block", &h1.to_string(), "--full"])?;
    assert_eq!(s(&block["transactions"][0]["hash"]), s(&r1["hash"]));

    // Several sends in a row without --wait all land (the nonce counts the pool).
    for _ in 0..3 {
        cli_json(&rpc, &["send", "--key", dev_key_s, "--to", &bob, "--amount", "1"])?;
    }
    wait_for(Duration::from_secs(20), "three more transfers", || {
        let b = cli_json(&rpc, &["balance", &bob]).ok()?;
        (s(&b["balance"]) == "1503").then_some(())
    })?;

    // Bad input gets a clear error, and the node keeps serving.
    let mut chars: Vec<char> = bob.chars().collect();
    chars[12] = if chars[12] == 'q' { 'p' } else { 'q' };
    let typo: String = chars.into_iter().collect();
    let err = cli_json(&rpc, &["send", "--key", dev_key_s, "--to", &typo, "--amount", "1"]).unwrap_err();
    assert!(err.to_string().contains("bech32m") || err.to_string().contains("address"), "{err}");

    // A burst of signed transfers over RPC; kill -9 in the middle of it.
    let dev = KeyFile::read(&dev_key)?.unlock(None)?;
    let rt = tokio::runtime::Runtime::new()?;
    let client = HttpClientBuilder::default().request_timeout(Duration::from_secs(5)).build(&rpc)?;
    let info = rt.block_on(client.chain_info(None))?;
    let mut nonce = rt.block_on(client.get_account(dev.address().to_string(), None, None))?.pending_nonce;
    let mut sent = Vec::new();
    let mut receipts: HashMap<String, (u64, String)> = HashMap::new();
    let burst_start = Instant::now();
    let mut killed_at_height = 0;
    let mut node = Some(node);
    'burst: for round in 0..200 {
        let batch: Vec<_> = (0..25)
            .map(|i| {
                let to: Address = Keypair::from_seed(&format!("r{round}-{i}")).address();
                let tx = dev.sign_tx(TxBody {
                    version: ENCODING_VERSION,
                    chain_id: info.chain_id.clone(),
                    branch: aergo_primitives::types::MAIN_BRANCH.into(),
                    nonce,
                    sender: dev.public(),
                    recipient: to,
                    amount: 7,
                    fee: 1,
                    payload: Payload::Transfer,
                });
                nonce += 1;
                tx
            })
            .collect();
        for tx in batch {
            match rt.block_on(client.send_tx(hex::encode(tx.encode()))) {
                Ok(r) => sent.push(r.hash.to_hex()),
                Err(_) => break 'burst,
            }
        }
        // Record the receipts the node has given so far.
        for h in &sent {
            if receipts.contains_key(h) {
                continue;
            }
            if let Ok(Some(r)) = rt.block_on(client.get_receipt(h.clone(), None)) {
                receipts.insert(h.clone(), (r.block_height, r.block_hash.to_hex()));
            }
        }
        if burst_start.elapsed() > Duration::from_millis(3500) && !receipts.is_empty() {
            killed_at_height = rt.block_on(client.chain_info(None))?.height;
            node.take().unwrap().kill9();
            break;
        }
    }
    assert!(node.is_none(), "the burst ended before the kill");
    eprintln!("killed at height {killed_at_height}: {} sent, {} with receipts", sent.len(), receipts.len());
    assert!(receipts.len() >= 25, "receipts seen before the kill: {}", receipts.len());
    assert!(sent.len() > receipts.len(), "some transactions were still in flight");

    // Restart: every receipt given before the kill is still there, in the same block.
    let node = NodeProcess::start_dev(&data, &[])?;
    let client = HttpClientBuilder::default().request_timeout(Duration::from_secs(5)).build(&node.rpc)?;
    let head = rt.block_on(client.chain_info(None))?.height;
    assert!(head >= killed_at_height, "head {head} fell below {killed_at_height}");
    for (hash, (height, block_hash)) in &receipts {
        let r = rt.block_on(client.get_receipt(hash.clone(), None))?.expect("receipt lost after kill -9");
        assert_eq!((r.block_height, r.block_hash.to_hex()), (*height, block_hash.clone()));
    }
    // The chain continues from the same height.
    let after = cli_json(&node.rpc, &["send", "--key", dev_key_s, "--to", &bob, "--amount", "2", "--wait"])?;
    assert!(after["receipt"]["block_height"].as_u64().unwrap() > head);
    assert_eq!(s(&cli_json(&node.rpc, &["balance", &bob])?["balance"]), "1505");
    node.stop()?;

    // Recomputing the state from the log gives the stored root.
    let (ok, out, err) = node_command(&["verify", "--data-dir", data.to_str().unwrap()])?;
    assert!(ok, "verify failed: {out}{err}");
    assert!(out.trim_end().ends_with("ok"), "{out}");
    Ok(())
}

#[test]
fn init_and_run_from_a_genesis_file_and_config() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let bp = Keypair::generate();
    let alice = Keypair::generate();
    let genesis = format!(
        "chain_id = \"aergo-test-1\"\ntimestamp_ms = 1700000000000\n\n[consensus]\nblock_interval_ms = 1000\n\n\
         [[balances]]\naddress = \"{}\"\namount = \"5000\"\n\n[[producers]]\npublic_key = \"{}\"\n",
        alice.address(),
        hex::encode(bp.public().0)
    );
    let gfile = dir.path().join("genesis.toml");
    std::fs::write(&gfile, genesis)?;
    let data = dir.path().join("data");
    let (ok, out, err) =
        node_command(&["init", "--genesis", gfile.to_str().unwrap(), "--data-dir", data.to_str().unwrap()])?;
    assert!(ok && out.contains("created"), "{out}{err}");
    // A full node (no producer key) from the written config, on a free port.
    let config = data.join("config.toml");
    let text = std::fs::read_to_string(&config)?.replace("127.0.0.1:7845", "127.0.0.1:0");
    std::fs::write(&config, text)?;
    let node = NodeProcess::start(&data, &["run", "--config", config.to_str().unwrap()])?;
    let info = cli_json(&node.rpc, &["chain"])?;
    assert_eq!((info["chain_id"].as_str(), info["height"].as_u64()), (Some("aergo-test-1"), Some(0)));
    let bal = cli_json(&node.rpc, &["balance", &alice.address().to_string()])?;
    assert_eq!(bal["balance"], "5000");
    assert_eq!(cli_json(&node.rpc, &["node"])?["role"], "full");
    node.stop()?;

    // Bad configs and genesis files are refused with the file named.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "data_dir = 5\n")?;
    let (ok, _, err) = node_command(&["run", "--config", bad.to_str().unwrap()])?;
    assert!(!ok && err.contains("bad.toml"), "{err}");
    std::fs::write(&bad, format!("data_dir = {:?}\n[rpc]\nlisten = \"127.0.0.1:0\"\ncolour = 1\n", data))?;
    let (ok, _, err) = node_command(&["run", "--config", bad.to_str().unwrap()])?;
    assert!(!ok && err.contains("colour"), "{err}");
    let other = dir.path().join("other.toml");
    std::fs::write(&other, std::fs::read_to_string(&gfile)?.replace("5000", "6000"))?;
    let (ok, _, err) =
        node_command(&["init", "--genesis", other.to_str().unwrap(), "--data-dir", data.to_str().unwrap()])?;
    assert!(!ok && err.contains("another chain"), "{err}");
    Ok(())
}

/// Pool-level serialization: the producer answers each transaction at once with its place in the
/// pool order and its result on the pending state; the receipts of the block that includes them say
/// the same.
#[test]
fn send_tx_answers_with_the_speculative_result_that_the_receipt_confirms() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::start_dev(dir.path(), &[])?;
    let dev = KeyFile::read(&dir.path().join("dev.key"))?.unlock(None)?;
    let rt = tokio::runtime::Runtime::new()?;
    let client = HttpClientBuilder::default().build(&node.rpc)?;
    let chain_id = rt.block_on(client.chain_info(None))?.chain_id;
    let poor = Keypair::generate();
    let sign = |key: &Keypair, nonce: u64, to: Address, amount: u128, fee: u128| {
        hex::encode(
            key.sign_tx(TxBody {
                version: ENCODING_VERSION,
                chain_id: chain_id.clone(),
                branch: aergo_primitives::types::MAIN_BRANCH.into(),
                nonce,
                sender: key.public(),
                recipient: to,
                amount,
                fee,
                payload: Payload::Transfer,
            })
            .encode(),
        )
    };
    // Funds for `poor`, then two of its transfers: the first spends almost all of it, so the second
    // (admissible: its fee is covered by the balance the pool sees) fails on the pending state.
    let nonce = rt.block_on(client.get_account(dev.address().to_string(), None, None))?.pending_nonce;
    let started = Instant::now();
    let fund = rt.block_on(client.send_tx(sign(&dev, nonce, poor.address(), 1_000, 0)))?;
    let answered_in = started.elapsed();
    // (The pool admits against committed balances: `poor` spends once its funds are in a block.)
    wait_for(Duration::from_secs(30), "the funds in a block", || {
        rt.block_on(client.get_receipt(fund.hash.to_string(), None)).ok().flatten()
    })?;
    let spend = rt.block_on(client.send_tx(sign(&poor, 0, dev.address(), 900, 10)))?;
    let over = rt.block_on(client.send_tx(sign(&poor, 1, dev.address(), 500, 10)));
    let answers = [&fund, &spend];
    for a in answers {
        assert_eq!(a.speculative.as_ref().map(|s| s.status.as_str()), Some("success"), "{a:?}");
    }
    assert!(fund.pool_seq < spend.pool_seq);
    // The pool refuses what the sender's committed balance cannot cover with its queued ones.
    assert!(over.unwrap_err().to_string().contains("balance too low"));
    // A nonce gap cannot run yet: queued.
    let gap = rt.block_on(client.send_tx(sign(&dev, nonce + 5, dev.address(), 1, 0)))?;
    assert_eq!(gap.speculative.as_ref().map(|s| s.status.as_str()), Some("queued"), "{gap:?}");
    // A vote for a key that is no candidate will be included and fail: so the answer says.
    let vote = dev.sign_tx(TxBody {
        version: ENCODING_VERSION,
        chain_id: chain_id.clone(),
        branch: aergo_primitives::types::MAIN_BRANCH.into(),
        nonce: nonce + 1,
        sender: dev.public(),
        recipient: dev.address(),
        amount: 0,
        fee: 0,
        payload: Payload::Vote { candidates: vec![poor.public()] },
    });
    let failing = rt.block_on(client.send_tx(hex::encode(vote.encode())))?;
    let failing_spec = failing.speculative.clone().expect("speculative result");
    assert_eq!(failing_spec.status, "failed", "{failing:?}");
    assert!(failing_spec.error.as_deref().unwrap_or_default().contains("not a registered candidate"));
    assert!(answered_in < Duration::from_secs(1), "send_tx took {answered_in:?}");

    // The receipts, once included, agree with what was answered.
    for (sent, status) in [(&fund, "success"), (&spend, "success"), (&failing, "failed")] {
        let r = wait_for(Duration::from_secs(30), "a receipt", || {
            rt.block_on(client.get_receipt(sent.hash.to_string(), None)).ok().flatten()
        })?;
        assert_eq!(r.status, status, "{r:?}");
        assert_eq!(r.error, sent.speculative.as_ref().and_then(|s| s.error.clone()), "{r:?}");
    }
    node.stop()?;
    Ok(())
}
