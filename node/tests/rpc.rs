//! The JSON-RPC server from the outside: a devnet node in-process on a loopback port, driven over
//! HTTP and WebSocket with good and bad input.

use aergo_api::{codes, AergoApiClient, BlockTxs, SendTxOutcome};
use aergo_config::NodeConfig;
use aergo_node::node::{prepare_devnet, RunningNode};
use aergo_primitives::crypto::{KeyFile, Keypair};
use aergo_primitives::types::{Payload, Transaction, TxBody, ENCODING_VERSION};
use jsonrpsee::core::client::{ClientT, SubscriptionClientT};
use jsonrpsee::http_client::HttpClientBuilder;
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::WsClientBuilder;
use serde_json::{json, Value};
use std::time::Duration;

async fn start(dir: &std::path::Path) -> (RunningNode, Keypair) {
    let mut config: NodeConfig = prepare_devnet(dir).unwrap();
    config.rpc.listen = "127.0.0.1:0".parse().unwrap();
    config.rpc.max_request_bytes = 256 * 1024;
    config.rpc.max_batch = 50;
    let key = KeyFile::read(&dir.join("dev.key")).unwrap().unlock(None).unwrap();
    (RunningNode::start(config).await.unwrap(), key)
}

fn try_post(url: &str, body: &str) -> Result<(u16, Value), ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut resp = agent.post(url).header("content-type", "application/json").send(body)?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

fn post(url: &str, body: &str) -> (u16, Value) {
    try_post(url, body).unwrap()
}

fn transfer(key: &Keypair, chain_id: &str, nonce: u64, amount: u128) -> Transaction {
    key.sign_tx(TxBody {
        version: ENCODING_VERSION,
        chain_id: chain_id.into(),
        branch: aergo_primitives::types::MAIN_BRANCH.into(),
        nonce,
        sender: key.public(),
        recipient: Keypair::from_seed("bob").address(),
        amount,
        fee: 1,
        payload: Payload::Transfer,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_the_right_error_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (node, key) = start(dir.path()).await;
    let url = format!("http://{}", node.rpc_addr);
    let u = url.clone();
    let checks = tokio::task::spawn_blocking(move || {
        let (_, v) = post(&u, "{not json");
        assert_eq!(v["error"]["code"], -32700, "parse error: {v}");
        let (_, v) = post(&u, r#"{"jsonrpc":"2.0","id":1,"method":"no_such_method"}"#);
        assert_eq!(v["error"]["code"], -32601, "{v}");
        let (_, v) =
            post(&u, r#"{"jsonrpc":"2.0","id":1,"method":"get_account","params":{"address":"aergo1nope"}}"#);
        assert_eq!(v["error"]["code"], codes::INVALID_PARAMS, "{v}");
        let (_, v) = post(&u, r#"{"jsonrpc":"2.0","id":1,"method":"get_block","params":{"height":"high"}}"#);
        assert_eq!(v["error"]["code"], codes::INVALID_PARAMS, "{v}");
        let (_, v) = post(&u, r#"{"jsonrpc":"2.0","id":1,"method":"send_tx","params":{"tx":"zz"}}"#);
        assert_eq!(v["error"]["code"], codes::TX_REJECTED, "{v}");
        assert_eq!(v["error"]["data"]["reason"], "malformed", "{v}");
        let (_, v) = post(&u, r#"{"jsonrpc":"2.0","id":1,"method":"send_tx","params":{"tx":"0102"}}"#);
        assert_eq!(v["error"]["data"]["reason"], "malformed", "{v}");
        // Too large a request: refused before parsing.
        let huge = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"send_tx","params":{{"tx":"{}"}}}}"#,
            "00".repeat(200_000)
        );
        // The server answers 413 and may close the connection before the client has sent it all.
        match try_post(&u, &huge) {
            Ok((status, _)) => assert_eq!(status, 413),
            Err(e) => assert!(matches!(e, ureq::Error::Io(_)), "unexpected {e}"),
        }
        // Too large a batch.
        let batch: Vec<Value> =
            (0..51).map(|i| json!({"jsonrpc":"2.0","id":i,"method":"chain_info"})).collect();
        let (_, v) = post(&u, &Value::Array(batch).to_string());
        assert!(v["error"]["code"].is_i64(), "batch over the limit: {v}");
        let batch: Vec<Value> =
            (0..50).map(|i| json!({"jsonrpc":"2.0","id":i,"method":"chain_info"})).collect();
        let (_, v) = post(&u, &Value::Array(batch).to_string());
        assert_eq!(v.as_array().map(Vec::len), Some(50));
    });
    checks.await.unwrap();

    let client = HttpClientBuilder::default().build(&url).unwrap();
    let info = client.chain_info(None).await.unwrap();
    // Wrong chain id and bad signatures are named.
    let err = client.send_tx(hex::encode(transfer(&key, "other-chain", 0, 1).encode())).await.unwrap_err();
    assert!(err.to_string().contains("wrong chain id"), "{err}");
    let mut forged = transfer(&key, &info.chain_id, 0, 1);
    forged.body.amount = 1_000;
    let err = client.send_tx(hex::encode(forged.encode())).await.unwrap_err();
    assert!(err.to_string().contains("bad signature"), "{err}");
    let err = client
        .send_tx(hex::encode(transfer(&key, &info.chain_id, 0, u128::MAX / 2).encode()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("balance too low"), "{err}");
    // Reads above the head are refused with their own code.
    let err = client.get_account(key.address().to_string(), Some(info.height + 100), None).await.unwrap_err();
    assert!(err.to_string().contains("above the chain head"), "{err}");
    // And the node still serves.
    let ok = client.send_tx(hex::encode(transfer(&key, &info.chain_id, 0, 5).encode())).await.unwrap();
    assert_eq!(ok.pool_seq, 1);
    let resent = client.send_tx(hex::encode(transfer(&key, &info.chain_id, 0, 5).encode())).await.unwrap();
    assert_eq!(resent, ok, "resubmission is idempotent");
    let err = client.send_tx(hex::encode(transfer(&key, &info.chain_id, 0, 6).encode())).await.unwrap_err();
    assert!(err.to_string().contains("replacement underpriced"), "{err}");
    // send_txs answers each transaction in order, good or bad.
    let many = vec![
        hex::encode(transfer(&key, &info.chain_id, 1, 5).encode()),
        "zz".to_string(),
        hex::encode(transfer(&key, &info.chain_id, 2, 5).encode()),
        hex::encode(transfer(&key, "other-chain", 3, 5).encode()),
    ];
    let answers = client.send_txs(many).await.unwrap();
    let reasons: Vec<String> = answers
        .iter()
        .map(|a| match a {
            SendTxOutcome::Accepted(r) => format!("seq {}", r.pool_seq),
            SendTxOutcome::Rejected { error } => error.reason.clone(),
        })
        .collect();
    assert_eq!(reasons, ["seq 2", "malformed", "seq 3", "wrong_chain_id"]);
    let too_many = vec!["00".to_string(); 51];
    assert!(client.send_txs(too_many).await.unwrap_err().to_string().contains("limit"));
    let raw: Value = client.request("get_receipt", rpc_params![ok.hash.to_hex()]).await.unwrap();
    assert!(raw.is_null(), "no receipt before the block");
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_arrive_over_websocket_and_read_back_by_height_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    let (node, key) = start(dir.path()).await;
    let ws = WsClientBuilder::default().build(format!("ws://{}", node.rpc_addr)).await.unwrap();
    let mut sub = ws
        .subscribe::<aergo_api::BlockView, _>("subscribe_blocks", rpc_params![], "unsubscribe_blocks")
        .await
        .unwrap();
    let info = ws.chain_info(None).await.unwrap();
    let sent = ws.send_tx(hex::encode(transfer(&key, &info.chain_id, 0, 42).encode())).await.unwrap();
    let block = tokio::time::timeout(Duration::from_secs(10), sub.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(block.transactions, BlockTxs::Hashes(vec![sent.hash]));
    let by_hash = ws.get_block(None, Some(block.hash.to_hex()), Some(true), None).await.unwrap().unwrap();
    let by_height = ws.get_block(Some(block.height), None, Some(true), None).await.unwrap().unwrap();
    assert_eq!(by_hash, by_height);
    let receipt = ws.get_receipt(sent.hash.to_hex(), None).await.unwrap().unwrap();
    assert_eq!((receipt.status.as_str(), receipt.block_height, receipt.fee), ("success", block.height, 1));
    let bob = Keypair::from_seed("bob").address().to_string();
    assert_eq!(ws.get_account(bob.clone(), Some(block.height), None).await.unwrap().balance, 42);
    assert_eq!(ws.get_account(bob, Some(block.height - 1), None).await.unwrap().balance, 0);
    let n = ws.node_info().await.unwrap();
    assert_eq!(n.role, "producer");
    let m = ws.node_metrics().await.unwrap();
    let names: Vec<&str> = m.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["admission", "produce", "import", "verify", "execute", "commit", "query"]);
    assert_eq!((m.stages[0].processed_total, m.stages[1].processed_total), (1, 1));
    // The producer executes and commits its blocks (a received block would also count in verify).
    assert!(m.stages[4].processed_total >= 1 && m.stages[5].processed_total >= 1, "{:?}", m.stages);
    assert!(m.blocks_produced_total >= 1);
    node.shutdown().await.unwrap();
}

/// POSTs `body` with `content_type` (and `headers`) to `url`: the status, the JSON answer, the
/// `Allow` header. `None` when the server closed the connection before reading it all.
fn post_bytes(
    url: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, Value, Option<String>)> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut req = agent.post(url).header("content-type", content_type);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = match req.send(body) {
        Ok(r) => r,
        Err(ureq::Error::Io(_)) => return None,
        Err(e) => panic!("POST {url}: {e}"),
    };
    let allow = resp.headers().get("allow").and_then(|v| v.to_str().ok()).map(str::to_string);
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    Some((status, serde_json::from_str(&text).unwrap_or(Value::String(text)), allow))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_path_answers_what_send_txs_answers_and_refuses_the_same_input() {
    // Two devnets of one genesis and producer key: the same state, two pools.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    prepare_devnet(a.path()).unwrap();
    for f in ["dev.key", "genesis.toml"] {
        std::fs::copy(a.path().join(f), b.path().join(f)).unwrap();
    }
    let (node_a, key) = start(a.path()).await;
    let (node_b, _) = start(b.path()).await;
    let (json_url, bin_url) = (format!("http://{}", node_a.rpc_addr), format!("http://{}", node_b.rpc_addr));
    let chain =
        HttpClientBuilder::default().build(&json_url).unwrap().chain_info(None).await.unwrap().chain_id;
    assert_eq!(
        chain,
        HttpClientBuilder::default().build(&bin_url).unwrap().chain_info(None).await.unwrap().chain_id
    );

    let mut forged = transfer(&key, &chain, 3, 1);
    forged.body.amount = 1_000;
    let txs: Vec<Vec<u8>> = vec![
        transfer(&key, &chain, 0, 5).encode(),
        transfer(&key, &chain, 0, 5).encode(), // the same again
        transfer(&key, &chain, 0, 6).encode(), // a replacement at the same fee
        transfer(&key, &chain, 2, 5).encode(), // a nonce gap
        vec![1, 2],                            // not a transaction
        vec![0; 70_000],                       // over 64 KiB
        transfer(&key, "other-chain", 1, 5).encode(),
        forged.encode(),
        transfer(&key, &chain, 1, u128::MAX / 2).encode(), // more than the balance
        transfer(&key, &chain, 1, 7).encode(),
    ];
    let json_body = json!({"jsonrpc": "2.0", "id": 1, "method": "send_txs",
        "params": [txs.iter().map(hex::encode).collect::<Vec<_>>()]})
    .to_string();
    let (u, v) = (json_url.clone(), bin_url.clone());
    let binary_body = aergo_api::frames::encode(&txs);
    let (by_json, by_binary) = tokio::task::spawn_blocking(move || {
        let (status, by_json) = post(&u, &json_body);
        assert_eq!(status, 200, "{by_json}");
        let (status, by_binary, _) =
            post_bytes(&format!("{v}/txs"), "application/octet-stream", &[], &binary_body).unwrap();
        assert_eq!(status, 200, "{by_binary}");
        (by_json["result"].clone(), by_binary)
    })
    .await
    .unwrap();
    assert_eq!(by_binary, by_json, "the same transactions, the same answers");
    let answers: Vec<SendTxOutcome> = serde_json::from_value(by_binary).unwrap();
    let said: Vec<String> = answers
        .iter()
        .map(|a| match a {
            SendTxOutcome::Accepted(r) => format!("seq {}", r.pool_seq),
            SendTxOutcome::Rejected { error } => error.reason.clone(),
        })
        .collect();
    let expected = [
        "seq 1",
        "seq 1",
        "replacement_underpriced",
        "seq 2",
        "malformed",
        "too_large",
        "wrong_chain_id",
        "bad_signature",
        "balance_too_low",
        "seq 3",
    ];
    assert_eq!(said, expected);
    // What each node holds is the same. Each node includes it in a block of its own slot, so one
    // may have included it already while the other still holds it pending: the transaction is
    // compared, not where it is yet.
    let (ca, cb) = (
        HttpClientBuilder::default().build(&json_url).unwrap(),
        HttpClientBuilder::default().build(&bin_url).unwrap(),
    );
    let held = |t: Option<aergo_api::TxView>| {
        t.map(|mut t| {
            t.state.clear();
            (t.block_height, t.block_hash, t.index) = (None, None, None);
            t
        })
    };
    for a in &answers {
        if let SendTxOutcome::Accepted(r) = a {
            let (ta, tb) = (
                held(ca.get_tx(r.hash.to_hex(), None).await.unwrap()),
                held(cb.get_tx(r.hash.to_hex(), None).await.unwrap()),
            );
            assert!(ta.is_some() && ta == tb, "{:?} / {:?}", ta, tb);
        }
    }

    // The whole request refused, with send_txs' code and message where it has one.
    let (u, v) = (json_url.clone(), format!("{bin_url}/txs"));
    let good = transfer(&key, &chain, 4, 5).encode();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut got = agent.get(&v).call().unwrap();
        assert_eq!(got.status().as_u16(), 405);
        assert_eq!(got.headers().get("allow").and_then(|h| h.to_str().ok()), Some("POST, OPTIONS"));
        let text = got.body_mut().read_to_string().unwrap();
        assert!(text.contains("-32600"), "{text}");
        let (status, e, _) = post_bytes(&v, "application/json", &[], b"[]").unwrap();
        assert_eq!((status, e["error"]["code"].as_i64()), (415, Some(-32600)), "{e}");
        assert!(e["error"]["message"].as_str().unwrap().contains("application/octet-stream"), "{e}");
        let mut cut = aergo_api::frames::encode(std::slice::from_ref(&good));
        cut.extend_from_slice(&100u32.to_le_bytes());
        cut.extend_from_slice(&[1, 2, 3]);
        let (status, e, _) = post_bytes(&v, "application/octet-stream", &[], &cut).unwrap();
        assert_eq!((status, e["error"]["code"].as_i64()), (400, Some(codes::INVALID_PARAMS as i64)), "{e}");
        assert_eq!(e["error"]["message"], "frame 1: 100 bytes announced, 3 left in the body", "{e}");
        let (status, e, _) = post_bytes(&v, "application/octet-stream", &[], &[]).unwrap();
        assert_eq!((status, e["error"]["message"].as_str()), (400, Some("no transactions")), "{e}");
        // More than max_batch (50): the message send_txs gives.
        let many = aergo_api::frames::encode(&vec![good.clone(); 51]);
        let (status, e, _) = post_bytes(&v, "application/octet-stream", &[], &many).unwrap();
        assert_eq!(status, 400, "{e}");
        let json_many = json!({"jsonrpc": "2.0", "id": 1, "method": "send_txs",
            "params": [vec![hex::encode(&good); 51]]});
        let (_, j) = post(&u, &json_many.to_string());
        assert_eq!(e["error"]["code"], j["error"]["code"], "{e} / {j}");
        assert_eq!(e["error"]["message"], j["error"]["message"], "{e} / {j}");
        assert_eq!(e["error"]["message"], "51 transactions, more than the limit of 50");
        // Over max_request_bytes (256 KiB): 413, or the connection closed before all was sent.
        let huge = aergo_api::frames::encode(&[vec![0u8; 300_000]]);
        if let Some((status, e, _)) = post_bytes(&v, "application/octet-stream", &[], &huge) {
            assert_eq!((status, e["error"]["code"].as_i64()), (413, Some(-32600)), "{e}");
        }
        // A signature that does not check.
        let (status, e, _) =
            post_bytes(&v, "application/octet-stream", &[("x-aergo-auth", "nonsense")], &many).unwrap();
        assert_eq!((status, e["error"]["code"].as_i64()), (403, Some(codes::ACCESS_DENIED as i64)), "{e}");
        // And the node still takes transactions.
        let (status, ok, _) =
            post_bytes(&v, "application/octet-stream", &[], &aergo_api::frames::encode(&[good])).unwrap();
        assert_eq!(status, 200, "{ok}");
        assert!(ok[0]["pool_seq"].is_u64(), "{ok}");
    })
    .await
    .unwrap();
    node_a.shutdown().await.unwrap();
    node_b.shutdown().await.unwrap();
}
