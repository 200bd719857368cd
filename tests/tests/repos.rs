//! Several repositories on one node (`docs/repositories.md`, "Hosting") from the outside: a
//! `--dev` node hosts its public chain, a DPoS repository added with `aergo-node repo add` while
//! it is stopped, and a Raft repository added with `aergo repo add` while it runs, each with its
//! own p2p swarm. Under a load of transfers on all three (`send_tx` and `POST …/txs` in turn), each makes a block at least every two
//! block intervals and includes every transfer; `kill -9` of the node and a restart: all three
//! reopen with every included transfer, and go on. The admin methods refuse a client outside
//! `[rpc] admin_from`; an unknown repository is said as such; a repository removed with its data
//! kept comes back where it was; the agent lists each one (telemetry, health, `/metrics`).

use aergo_api::AergoApiClient;
use aergo_primitives::crypto::KeyFile;
use aergo_primitives::types::{Address, Payload, TxBody, ENCODING_VERSION, MAIN_BRANCH};
use aergo_tests::{
    cli_code_json, cli_json, http_get, node_command, promtool_check, wait_for, AgentProcess, NodeProcess,
};
use anyhow::Context;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One chain of the node: its RPC path, its chain id and the key that pays its transfers.
struct Chain {
    name: &'static str,
    url: String,
    chain_id: String,
    payer: PathBuf,
}

impl Chain {
    fn client(&self) -> anyhow::Result<HttpClient> {
        Ok(HttpClientBuilder::default().request_timeout(Duration::from_secs(10)).build(&self.url)?)
    }

    /// A transfer of 1 to `to` with `nonce`, hex, for `send_tx`.
    fn transfer(&self, nonce: u64, to: Address) -> anyhow::Result<String> {
        let key = KeyFile::read(&self.payer)?.unlock(None)?;
        let tx = key.sign_tx(TxBody {
            version: ENCODING_VERSION,
            chain_id: self.chain_id.clone(),
            branch: MAIN_BRANCH.into(),
            nonce,
            sender: key.public(),
            recipient: to,
            amount: 1,
            fee: 1,
            payload: Payload::Transfer,
        });
        Ok(hex::encode(tx.encode()))
    }
}

/// `aergo-node testnet --nodes 1` files for a one-node chain `name-chain` in `dir/name`.
fn one_node_chain(dir: &Path, name: &str, consensus: &str) -> anyhow::Result<PathBuf> {
    let out = dir.join(name);
    let chain_id = format!("{name}-chain");
    let (ok, _, err) = node_command(&[
        "testnet",
        "--nodes",
        "1",
        "--out",
        out.to_str().unwrap_or_default(),
        "--chain-id",
        &chain_id,
        "--consensus",
        consensus,
    ])?;
    anyhow::ensure!(ok, "testnet for {name}: {err}");
    Ok(out)
}

/// The repositories the node lists, by name.
fn listed(rpc: &str) -> anyhow::Result<Vec<Value>> {
    Ok(cli_json(rpc, &["repo", "list"])?.as_array().cloned().unwrap_or_default())
}

fn repo<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter().find(|r| r["name"] == name)
}

/// The account's nonce on a chain (how many of its transfers are included).
fn nonce(rt: &tokio::runtime::Runtime, chain: &Chain, who: &str) -> u64 {
    chain
        .client()
        .ok()
        .and_then(|c| rt.block_on(c.get_account(who.to_string(), None, None)).ok())
        .map_or(0, |a| a.nonce)
}

#[test]
fn one_node_hosts_a_dpos_and_a_raft_repository_beside_its_chain_under_load_and_after_kill_9(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let lab = one_node_chain(dir.path(), "lab", "dpos")?;
    let acme = one_node_chain(dir.path(), "acme", "raft")?;
    // The node's identity key is the Raft repository's one voter.
    let dev = dir.path().join("dev");
    std::fs::create_dir_all(&dev)?;
    std::fs::copy(acme.join("node0/node.key"), dev.join("node.key"))?;
    // Each repository has its own swarm (on a port of its own choosing).
    let swarm = "[p2p]\nenabled = true\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n";
    let lab_settings = dir.path().join("lab.toml");
    std::fs::write(
        &lab_settings,
        format!("{swarm}[producer]\nenabled = true\nkey_file = {:?}\n", lab.join("node0/producer.key")),
    )?;
    let acme_settings = dir.path().join("acme.toml");
    std::fs::write(&acme_settings, swarm)?;

    // The dev chain is made at first start; then the DPoS repository is added with the node stopped.
    let node = NodeProcess::start_dev(&dev, &[])?;
    node.stop()?;
    let path = |p: &Path| p.to_str().unwrap_or_default().to_string();
    // `repo add lab` with its genesis and settings (both commands take them alike).
    let (lab_genesis, lab_settings) = (path(&lab.join("genesis.toml")), path(&lab_settings));
    let add_lab = ["repo", "add", "lab", "--genesis", &lab_genesis, "--settings", &lab_settings];
    let (ok, out, err) = node_command(&[&add_lab[..], &["--data-dir", &path(&dev)]].concat())?;
    assert!(ok, "repo add: {out}{err}");
    // A name already hosted, a bad name and a genesis of a hosted chain are refused offline.
    for (name, why) in
        [("lab", "already hosted"), ("Lab", "repository name"), ("lab2", "is repository \"lab\"'s")]
    {
        let (ok, _, err) =
            node_command(&["repo", "add", name, "--genesis", &lab_genesis, "--data-dir", &path(&dev)])?;
        assert!(!ok && err.contains(why), "repo add {name}: {err}");
    }

    let mut node = NodeProcess::start_dev(&dev, &[])?;
    let rpc = node.rpc.clone();
    // While it runs, the offline command says to use the RPC.
    let (ok, _, err) = node_command(&["repo", "remove", "lab", "--data-dir", &path(&dev)])?;
    assert!(!ok && err.contains("is running"), "repo remove while running: {err}");
    let list = listed(&rpc)?;
    let lab_view = repo(&list, "lab").with_context(|| format!("lab is not listed: {list:?}"))?;
    assert_eq!(lab_view["consensus"], "dpos", "{lab_view}");
    assert_eq!(lab_view["role"], "producer", "{lab_view}");
    assert!(
        lab_view["p2p_listen"].as_array().is_some_and(|a| !a.is_empty()),
        "lab has its swarm: {lab_view}"
    );

    // The admin methods are for [rpc] admin_from (loopback 127.0.0.1 and ::1 by default) only.
    let addr = rpc.trim_start_matches("http://");
    let genesis_text = std::fs::read_to_string(acme.join("genesis.toml"))?;
    let add = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "admin_add_repository",
        "params": { "request": { "name": "acme", "genesis": genesis_text } }
    })
    .to_string();
    let (_, refused) = post_path([127, 0, 0, 2], addr, "/", None, &add)?;
    assert_eq!(refused["error"]["code"], -32020, "{refused}");
    assert!(listed(&rpc)?.iter().all(|r| r["name"] != "acme"));
    // From the box itself: the Raft repository opens while the node runs.
    let added = cli_json(
        &rpc,
        &[
            "repo",
            "add",
            "acme",
            "--genesis",
            &path(&acme.join("genesis.toml")),
            "--settings",
            &path(&acme_settings),
        ],
    )?;
    assert_eq!(added["consensus"], "raft", "{added}");
    wait_for(Duration::from_secs(20), "the acme repository's voter to lead", || {
        repo(&listed(&rpc).ok()?, "acme").filter(|r| r["role"] == "leader" && r["health"] == "ok").cloned()
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", node.log()))?;
    let (code, again) =
        cli_code_json(&rpc, &["repo", "add", "acme", "--genesis", &path(&acme.join("genesis.toml"))])?;
    assert!(code != 0 && again.to_string().contains("already hosted"), "{again}");
    let (code, unknown) = cli_code_json(&rpc, &["--repo", "nope", "chain"])?;
    assert!(code != 0 && unknown.to_string().contains("no repository \\\"nope\\\""), "{unknown}");

    let chains = [
        Chain {
            name: "public",
            url: rpc.clone(),
            chain_id: "aergo-devnet".into(),
            payer: dev.join("dev.key"),
        },
        Chain {
            name: "lab",
            url: format!("{rpc}/repo/lab"),
            chain_id: "lab-chain".into(),
            payer: lab.join("faucet.key"),
        },
        Chain {
            name: "acme",
            url: format!("{rpc}/repo/acme"),
            chain_id: "acme-chain".into(),
            payer: acme.join("faucet.key"),
        },
    ];
    let payers: Vec<String> = chains
        .iter()
        .map(|c| Ok(KeyFile::read(&c.payer)?.unlock(None)?.address().to_string()))
        .collect::<anyhow::Result<_>>()?;
    let rt = tokio::runtime::Runtime::new()?;

    // A load on all three at once: a transfer to each every 50 ms for 8 s.
    let to = Address([7; 20]);
    let start_heights: Vec<u64> = chains
        .iter()
        .map(|c| Ok(rt.block_on(c.client()?.chain_info(None))?.height))
        .collect::<anyhow::Result<_>>()?;
    let clients: Vec<HttpClient> = chains.iter().map(Chain::client).collect::<anyhow::Result<_>>()?;
    let began = Instant::now();
    let mut sent = 0u64;
    let addr = rpc.trim_start_matches("http://").to_string();
    while began.elapsed() < Duration::from_secs(8) {
        for (c, client) in chains.iter().zip(&clients) {
            let tx = c.transfer(sent, to)?;
            if sent % 2 == 0 {
                rt.block_on(client.send_tx(tx)).with_context(|| format!("send_tx on {}", c.name))?;
            } else {
                // Every other one by binary submission: `/txs`, `/repo/<name>/txs`.
                let path = format!("{}/txs", c.url.trim_start_matches(&rpc));
                let (status, answer) = post_txs(&addr, &path, None, &[hex::decode(tx)?])?;
                assert_eq!(status, 200, "POST {path}: {answer}");
                assert!(answer[0]["pool_seq"].is_u64(), "POST {path}: {answer}");
            }
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    for (c, payer) in chains.iter().zip(&payers) {
        wait_for(Duration::from_secs(30), &format!("every transfer included on {}", c.name), || {
            (nonce(&rt, c, payer) == sent).then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", node.log()))?;
    }
    // Each chain kept its pace: no two blocks of the load further apart than two intervals.
    for (c, from) in chains.iter().zip(&start_heights) {
        let client = c.client()?;
        let head = rt.block_on(client.chain_info(None))?;
        let mut last: Option<u64> = None;
        let mut widest = 0u64;
        for h in from + 1..=head.height {
            let block =
                rt.block_on(client.get_block(Some(h), None, Some(false), None))?.context("a block")?;
            if block.header.tx_count == 0 {
                continue;
            }
            if let Some(prev) = last {
                widest = widest.max(block.header.timestamp_ms - prev);
            }
            last = Some(block.header.timestamp_ms);
        }
        assert!(
            widest <= 2 * head.block_interval_ms,
            "{}: {widest} ms between two blocks of the load (interval {} ms)",
            c.name,
            head.block_interval_ms
        );
        eprintln!("{}: {} blocks for the load, widest gap {widest} ms", c.name, head.height - from);
    }

    // kill -9 and a restart: all three reopen with every included transfer, and go on.
    let heights: Vec<u64> = chains
        .iter()
        .map(|c| Ok(rt.block_on(c.client()?.chain_info(None))?.height))
        .collect::<anyhow::Result<_>>()?;
    node.kill9();
    node = NodeProcess::start_dev(&dev, &[])?;
    let rpc = node.rpc.clone();
    let chains: Vec<Chain> = chains
        .into_iter()
        .map(|c| Chain {
            url: c.url.replacen(c.url.split("/repo/").next().unwrap_or_default(), &rpc, 1),
            ..c
        })
        .collect();
    for ((c, payer), height) in chains.iter().zip(&payers).zip(&heights) {
        let info = rt.block_on(c.client()?.chain_info(None))?;
        assert!(
            info.height >= *height,
            "{}: height {} after the restart, {height} before",
            c.name,
            info.height
        );
        assert_eq!(nonce(&rt, c, payer), sent, "{}: every included transfer is kept", c.name);
        let hash = rt.block_on(c.client()?.send_tx(c.transfer(sent, to)?))?.hash;
        wait_for(Duration::from_secs(30), &format!("a new transfer on {} after the restart", c.name), || {
            rt.block_on(c.client().ok()?.get_receipt(hash.to_string(), None)).ok().flatten()
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", node.log()))?;
    }
    let list = listed(&rpc)?;
    for name in ["lab", "acme"] {
        let r = repo(&list, name).with_context(|| format!("{name} after the restart: {list:?}"))?;
        assert_eq!(r["health"], "ok", "{r}");
    }

    // The agent lists each repository: telemetry, a health check and /metrics.
    let agent = AgentProcess::start(&rpc, &dev, &dir.path().join("agent"), &[])?;
    let telemetry = wait_for(Duration::from_secs(30), "the agent to see both repositories", || {
        let answer = http_get(&format!("{}/v1/telemetry", agent.url), Some(&agent.token)).ok()?;
        let v: Value = serde_json::from_str(&answer.body).ok()?;
        (v["chain"]["repositories"].as_array()?.len() == 2).then_some(v)
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", agent.log()))?;
    let checks = telemetry["health"]["checks"].as_array().cloned().unwrap_or_default();
    let check = checks.iter().find(|c| c["name"] == "repositories").context("a repositories check")?;
    assert_eq!(check["status"], "ok", "{check}");
    let metrics = http_get(&format!("{}/metrics", agent.url), Some(&agent.token))?;
    for line in ["aergo_repo_up{repo=\"acme\"} 1", "aergo_repo_up{repo=\"lab\"} 1"] {
        assert!(metrics.body.contains(line), "{line} missing:\n{}", metrics.body);
    }
    promtool_check(&metrics.body)?;

    // Removed with its data kept: its path answers no more, the others run; added again, it
    // comes back where it was.
    let lab_height = rt.block_on(chains[1].client()?.chain_info(None))?.height;
    cli_json(&rpc, &["repo", "remove", "lab"])?;
    let (code, gone) = cli_code_json(&rpc, &["--repo", "lab", "chain"])?;
    assert!(code != 0 && gone.to_string().contains("no repository"), "{gone}");
    assert!(dev.join("repos/lab/state").exists(), "the data is kept");
    assert_eq!(
        std::fs::read_to_string(dev.join("repos/hosted"))?.lines().collect::<Vec<_>>(),
        ["acme"],
        "the hosted list"
    );
    let readded = cli_json(&rpc, &add_lab)?;
    assert!(readded["height"].as_u64().unwrap_or(0) >= lab_height, "{readded}");
    let acme_height = rt.block_on(chains[2].client()?.chain_info(None))?.height;
    wait_for(Duration::from_secs(10), "acme to go on meanwhile", || {
        let h = rt.block_on(chains[2].client().ok()?.chain_info(None)).ok()?.height;
        (h > acme_height).then_some(())
    })?;
    node.stop()?;
    Ok(())
}

/// A raw JSON-RPC POST to `path` of `addr` from `from`, with `X-Aergo-Auth` when given: the
/// status and the body.
fn post_path(
    from: [u8; 4],
    addr: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> anyhow::Result<(u16, Value)> {
    post_raw(from, addr, path, "application/json", auth, body.as_bytes())
}

/// Transactions by `POST <path>` (`/txs`, `/repo/<name>/txs`): the frames of `txs`, with
/// `X-Aergo-Auth` when given.
fn post_txs(addr: &str, path: &str, auth: Option<&str>, txs: &[Vec<u8>]) -> anyhow::Result<(u16, Value)> {
    post_raw([127, 0, 0, 1], addr, path, "application/octet-stream", auth, &aergo_api::frames::encode(txs))
}

/// A raw POST of `body` as `content_type`.
fn post_raw(
    from: [u8; 4],
    addr: &str,
    path: &str,
    content_type: &str,
    auth: Option<&str>,
    body: &[u8],
) -> anyhow::Result<(u16, Value)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let to: std::net::SocketAddr = addr.parse()?;
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(std::net::SocketAddr::from((from, 0)))?;
        let mut s = socket.connect(to).await?;
        let auth = auth.map(|a| format!("X-Aergo-Auth: {a}\r\n")).unwrap_or_default();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: node\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
             {auth}Content-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(request.as_bytes()).await?;
        s.write_all(body).await?;
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await??;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).context("status")?;
        let (_, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
        Ok((status, serde_json::from_str(body.trim()).with_context(|| format!("not JSON: {body}"))?))
    })
}

#[test]
fn a_private_repository_answers_its_members_only_and_takes_writes_from_its_writers() -> anyhow::Result<()> {
    use aergo_primitives::crypto::Keypair;
    let dir = tempfile::tempdir()?;
    let vault = one_node_chain(dir.path(), "vault", "raft")?;
    // Its genesis made private: the faucet is the admin; a reader; a future writer with funds.
    let key_file = |name: &str, key: &Keypair| -> anyhow::Result<PathBuf> {
        let path = dir.path().join(format!("{name}.key"));
        KeyFile::write_plain(&path, key)?;
        Ok(path)
    };
    let admin = KeyFile::read(&vault.join("faucet.key"))?.unlock(None)?;
    let (reader, writer, stranger) = (Keypair::generate(), Keypair::generate(), Keypair::generate());
    let (reader_file, writer_file) = (key_file("reader", &reader)?, key_file("writer", &writer)?);
    let genesis_path = vault.join("genesis.toml");
    let mut genesis = std::fs::read_to_string(&genesis_path)?;
    genesis.push_str(&format!(
        "\n[[balances]]\naddress = \"{}\"\namount = \"1000000\"\n\n[access]\nprivate = true\n\n\
         [[access.members]]\naddress = \"{}\"\nrole = \"admin\"\n\n[[access.members]]\naddress = \"{}\"\nrole = \"read\"\n",
        writer.address(),
        admin.address(),
        reader.address()
    ));
    std::fs::write(&genesis_path, genesis)?;

    let dev = dir.path().join("dev");
    std::fs::create_dir_all(&dev)?;
    std::fs::copy(vault.join("node0/node.key"), dev.join("node.key"))?;
    NodeProcess::start_dev(&dev, &[])?.stop()?;
    let path = |p: &Path| p.to_str().unwrap_or_default().to_string();
    aergo_tests::repo_add_offline("vault", &genesis_path, None, &dev)?;
    let node = NodeProcess::start_dev(&dev, &[])?;
    let rpc = node.rpc.clone();
    let addr = rpc.trim_start_matches("http://").to_string();
    wait_for(Duration::from_secs(20), "the vault's voter to lead", || {
        repo(&listed(&rpc).ok()?, "vault").filter(|r| r["role"] == "leader").cloned()
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", node.log()))?;

    // Unsigned, stale, badly signed and non-member requests: one answer, whatever they ask.
    let call = |method: &str, params: Value| {
        serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string()
    };
    let asks = [
        call("chain_info", serde_json::json!([])),
        call("get_account", serde_json::json!([admin.address().to_string()])),
        call("get_account", serde_json::json!([stranger.address().to_string()])),
        call("get_contract", serde_json::json!([Address([9; 20]).to_string()])),
    ];
    let now = aergo_primitives::clock::now_ms();
    let mut answers = Vec::new();
    for body in &asks {
        let signed =
            |key: &Keypair, ms: u64| aergo_api::auth::header_value(key, "vault", ms, body.as_bytes());
        let forged = signed(&reader, now).replacen(
            &hex::encode(reader.public().0),
            &hex::encode(stranger.public().0),
            1,
        );
        for auth in [None, Some(signed(&stranger, now)), Some(signed(&reader, now - 120_000)), Some(forged)] {
            answers.push(post_path([127, 0, 0, 1], &addr, "/repo/vault", auth.as_deref(), body)?);
        }
    }
    let denied = &answers[0];
    assert_eq!(denied.0, 403, "{denied:?}");
    assert_eq!(denied.1["error"]["code"], -32020, "{denied:?}");
    assert!(answers.iter().all(|a| a == denied), "every refusal is the same answer: {answers:?}");
    // A member reads; the same request signed by it passes.
    let body = &asks[1];
    let signed = aergo_api::auth::header_value(&reader, "vault", now, body.as_bytes());
    let (status, read) = post_path([127, 0, 0, 1], &addr, "/repo/vault", Some(&signed), body)?;
    assert_eq!(status, 200, "{read}");
    assert!(read["result"]["balance"].as_str().is_some(), "{read}");
    // The private repository is not named to a client off the box; the public chain stays open.
    let (_, list) =
        post_path([127, 0, 0, 2], &addr, "/", None, &call("repositories", serde_json::json!([])))?;
    assert_eq!(list["result"], serde_json::json!([]), "{list}");
    let (status, public) =
        post_path([127, 0, 0, 2], &addr, "/", None, &call("chain_info", serde_json::json!([])))?;
    assert_eq!((status, &public["result"]["chain_id"]), (200, &Value::from("aergo-devnet")), "{public}");

    // The CLI signs with --member-key (a read member reads) or with a transaction's --key.
    let member_key = path(&reader_file);
    let info = cli_json(&rpc, &["--repo", "vault", "--member-key", &member_key, "chain"])?;
    assert_eq!(info["chain_id"], "vault-chain", "{info}");
    let (code, unsigned) = cli_code_json(&rpc, &["--repo", "vault", "chain"])?;
    assert!(code != 0 && unsigned.to_string().contains("access denied"), "{unsigned}");
    let to = Address([3; 20]).to_string();
    let send = |key: &str| -> anyhow::Result<(i32, Value)> {
        cli_code_json(
            &rpc,
            &[
                "--repo", "vault", "send", "--key", key, "--to", &to, "--amount", "5", "--fee", "1",
                "--nonce", "0", "--wait",
            ],
        )
    };
    let (code, read_only) = send(&member_key)?;
    assert!(code != 0 && read_only.to_string().contains("read-only member"), "{read_only}");
    // Not a member yet: its own signature is refused; sent through the admin, the pool refuses it.
    let (code, not_member) = send(&path(&writer_file))?;
    assert!(code != 0 && not_member.to_string().contains("access denied"), "{not_member}");
    let admin_file = path(&vault.join("faucet.key"));
    let (code, not_writer) = cli_code_json(
        &rpc,
        &[
            "--repo",
            "vault",
            "--member-key",
            &admin_file,
            "send",
            "--key",
            &path(&writer_file),
            "--to",
            &to,
            "--amount",
            "5",
            "--fee",
            "1",
            "--nonce",
            "0",
        ],
    )?;
    assert!(code != 0 && not_writer.to_string().contains("not_a_writer"), "{not_writer}");
    // An admin makes it a writer; the same transaction then goes through.
    let member_set = |key: &str, who: &str, role: &str| {
        cli_code_json(&rpc, &["--repo", "vault", "repo", "member", "set", "--key", key, "--wait", who, role])
    };
    let (_, made) = member_set(&admin_file, &writer.address().to_string(), "write")?;
    assert_eq!(made["receipt"]["status"], "success", "{made}");
    let (code, sent) = send(&path(&writer_file))?;
    assert_eq!(code, 0, "{sent}");
    assert_eq!(sent["receipt"]["status"], "success", "{sent}");
    // Binary submission (`POST /repo/vault/txs`) takes the same rules: members only, writes from
    // writers.
    let next = writer.sign_tx(TxBody {
        version: ENCODING_VERSION,
        chain_id: "vault-chain".into(),
        branch: MAIN_BRANCH.into(),
        nonce: 1,
        sender: writer.public(),
        recipient: Address([3; 20]),
        amount: 5,
        fee: 1,
        payload: Payload::Transfer,
    });
    let frames = vec![next.encode()];
    let body = aergo_api::frames::encode(&frames);
    let now = aergo_primitives::clock::now_ms();
    let auth = |key: &Keypair| aergo_api::auth::header_value(key, "vault", now, &body);
    for who in [None, Some(auth(&stranger))] {
        let (status, e) = post_txs(&addr, "/repo/vault/txs", who.as_deref(), &frames)?;
        assert_eq!((status, &e), (denied.0, &denied.1), "the one refusal of a non-member");
        // Whatever else is wrong: a non-member is not told it (the signature is checked first).
        let (status, e) =
            post_raw([127, 0, 0, 1], &addr, "/repo/vault/txs", "text/plain", who.as_deref(), &body)?;
        assert_eq!((status, &e), (denied.0, &denied.1), "a non-member's wrong content type");
    }
    // A member is told.
    let (status, e) =
        post_raw([127, 0, 0, 1], &addr, "/repo/vault/txs", "text/plain", Some(&auth(&reader)), &body)?;
    assert_eq!(status, 415, "{e}");
    let (status, e) = post_txs(&addr, "/repo/vault/txs", Some(&auth(&reader)), &frames)?;
    assert_eq!(status, 403, "{e}");
    assert!(e.to_string().contains("read-only member"), "{e}");
    let (status, ok) = post_txs(&addr, "/repo/vault/txs", Some(&auth(&writer)), &frames)?;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok[0]["hash"], serde_json::to_value(next.hash())?, "{ok}");
    // A read member cannot change the members.
    let (_, refused) = member_set(&member_key, &stranger.address().to_string(), "admin")?;
    assert!(refused.to_string().contains("read-only member"), "{refused}");
    node.stop()?;
    Ok(())
}

/// A free TCP port on loopback (bound, then released for the node to take).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[test]
fn a_private_repositorys_swarm_refuses_nodes_off_its_allowlist_and_disconnects_a_denied_one(
) -> anyhow::Result<()> {
    use aergo_primitives::crypto::Keypair;
    let dir = tempfile::tempdir()?;
    let guild = one_node_chain(dir.path(), "guild", "dpos")?;
    let (key_a, key_b) = (Keypair::generate(), Keypair::generate());
    let (port_a, port_b) = (free_port()?, free_port()?);
    let admin_file = guild.join("faucet.key");
    let admin = KeyFile::read(&admin_file)?.unlock(None)?;
    let genesis_path = guild.join("genesis.toml");
    let mut genesis = std::fs::read_to_string(&genesis_path)?;
    genesis.push_str(&format!(
        "\n[access]\nprivate = true\n\n[[access.members]]\naddress = \"{}\"\nrole = \"admin\"\n\n\
         [[access.nodes]]\nnode_key = \"{}\"\naddress = \"/ip4/127.0.0.1/tcp/{port_a}\"\n\n\
         [[access.nodes]]\nnode_key = \"{}\"\naddress = \"/ip4/127.0.0.1/tcp/{port_b}\"\n",
        admin.address(),
        hex::encode(key_a.public().0),
        hex::encode(key_b.public().0),
    ));
    std::fs::write(&genesis_path, genesis)?;
    let path = |p: &Path| p.to_str().unwrap_or_default().to_string();
    // Box A produces the repository's blocks; box B follows it through A's swarm.
    let settings_a = format!(
        "[p2p]\nenabled = true\nlisten = [\"/ip4/127.0.0.1/tcp/{port_a}\"]\n[producer]\nenabled = true\nkey_file = {:?}\n",
        path(&guild.join("node0/producer.key"))
    );
    let settings_b = format!(
        "[p2p]\nenabled = true\nlisten = [\"/ip4/127.0.0.1/tcp/{port_b}\"]\nbootstrap = [\"/ip4/127.0.0.1/tcp/{port_a}\"]\n"
    );
    let mut boxes = Vec::new();
    for (name, key, settings) in [("a", &key_a, settings_a), ("b", &key_b, settings_b)] {
        let dev = dir.path().join(name);
        std::fs::create_dir_all(&dev)?;
        KeyFile::write_plain(&dev.join("node.key"), key)?;
        NodeProcess::start_dev(&dev, &[])?.stop()?;
        let settings_file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&settings_file, settings)?;
        aergo_tests::repo_add_offline("guild", &genesis_path, Some(&settings_file), &dev)?;
        boxes.push(NodeProcess::start_dev(&dev, &[])?);
    }
    let (rpc_a, rpc_b) = (boxes[0].rpc.clone(), boxes[1].rpc.clone());
    let guild_of = |rpc: &str| listed(rpc).ok().and_then(|l| repo(&l, "guild").cloned());
    wait_for(Duration::from_secs(30), "box B to connect to box A in the repository", || {
        guild_of(&rpc_a).filter(|r| r["peers"] == 1)
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}\n{}", boxes[0].log(), boxes[1].log()))?;
    let to = Address([4; 20]).to_string();
    let send = |nonce: &str| {
        cli_json(
            &rpc_a,
            &[
                "--repo",
                "guild",
                "send",
                "--key",
                &path(&admin_file),
                "--to",
                &to,
                "--amount",
                "1",
                "--nonce",
                nonce,
                "--wait",
            ],
        )
    };
    let first = send("0")?;
    let height = first["receipt"]["block_height"].as_u64().context("a block height")?;
    wait_for(Duration::from_secs(30), "box B to hold the block", || {
        guild_of(&rpc_b).filter(|r| r["height"].as_u64() >= Some(height))
    })?;

    // A node off the allowlist is refused right after the handshake, and counted.
    let node_info =
        serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": "node_info", "params": [] }).to_string();
    let auth = aergo_api::auth::header_value(
        &admin,
        "guild",
        aergo_primitives::clock::now_ms(),
        node_info.as_bytes(),
    );
    let (_, info) = post_path(
        [127, 0, 0, 1],
        rpc_a.trim_start_matches("http://"),
        "/repo/guild",
        Some(&auth),
        &node_info,
    )?;
    let peer_a = info["result"]["peer_id"].as_str().context("box A's peer id in the repository")?.to_string();
    let (ok, out, err) = node_command(&[
        "net-probe",
        "--target",
        &format!("/ip4/127.0.0.1/tcp/{port_a}/p2p/{peer_a}"),
        "--chain-id",
        "guild-chain",
        "--attack",
        "connect",
        "--timeout-secs",
        "10",
    ])?;
    assert!(ok, "net-probe: {out}{err}");
    let report: Value = serde_json::from_str(out.trim())?;
    assert_eq!(report["refused"], true, "{report}");
    let refused = guild_of(&rpc_a).and_then(|r| r["peers_refused"].as_u64()).unwrap_or(0);
    assert!(refused >= 1, "box A counts the refusal: {refused}");

    // The admin denies box B: box A disconnects it, and it gets no new block.
    let denied = cli_json(
        &rpc_a,
        &[
            "--repo",
            "guild",
            "repo",
            "node",
            "deny",
            "--key",
            &path(&admin_file),
            "--wait",
            &hex::encode(key_b.public().0),
        ],
    )?;
    assert_eq!(denied["receipt"]["status"], "success", "{denied}");
    wait_for(Duration::from_secs(10), "box A to drop box B", || guild_of(&rpc_a).filter(|r| r["peers"] == 0))
        .map_err(|e| anyhow::anyhow!("{e}\n{}", boxes[0].log()))?;
    let held = guild_of(&rpc_b).and_then(|r| r["height"].as_u64()).unwrap_or(0);
    let later = send("2")?;
    let later_height = later["receipt"]["block_height"].as_u64().unwrap_or(0);
    std::thread::sleep(Duration::from_secs(3));
    let now_b = guild_of(&rpc_b).and_then(|r| r["height"].as_u64()).unwrap_or(0);
    assert!(
        now_b < later_height && now_b <= held + 1,
        "box B got blocks after its denial: {now_b} (A at {later_height})"
    );
    assert_eq!(guild_of(&rpc_a).map(|r| r["peers"].clone()), Some(Value::from(0)), "box B stays out");
    Ok(())
}

/// A chain thread that stops on its own (`producer.stop_chain_at_for_tests`, as a failed disk or
/// an unwritable Raft log makes it stop): a hosted repository's is listed `stopped` and the node
/// goes on; the public chain's makes the node exit with an error, for its supervisor to start it
/// again, rather than answer RPC and never move.
#[test]
fn a_stopped_repository_is_listed_stopped_and_a_stopped_public_chain_ends_the_node() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let lab = one_node_chain(dir.path(), "lab", "dpos")?;
    let path = |p: &Path| p.to_str().unwrap_or_default().to_string();
    let dev = dir.path().join("dev");
    std::fs::create_dir_all(&dev)?;
    // The public chain stops at height 12; the repository at 3.
    std::fs::write(
        dev.join("config.toml"),
        "[producer]\nempty_blocks = true\nstop_chain_at_for_tests = 12\n",
    )?;
    NodeProcess::start_dev(&dev, &[])?.stop().ok();
    let settings = dir.path().join("lab.toml");
    std::fs::write(
        &settings,
        format!(
            "[producer]\nenabled = true\nempty_blocks = true\nkey_file = {:?}\nstop_chain_at_for_tests = 3\n",
            path(&lab.join("node0/producer.key"))
        ),
    )?;
    aergo_tests::repo_add_offline("lab", &lab.join("genesis.toml"), Some(&settings), &dev)?;
    let mut node = NodeProcess::start_dev(&dev, &[])?;
    let rpc = node.rpc.clone();
    let stopped = wait_for(Duration::from_secs(30), "the repository listed stopped", || {
        listed(&rpc).ok().and_then(|l| repo(&l, "lab").cloned()).filter(|r| r["health"] == "stopped")
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", node.log()))?;
    assert!(stopped["height"].as_u64() >= Some(3), "{stopped}");
    assert!(node.child.try_wait()?.is_none(), "the node ended with its repository");
    // The public chain's thread stops: the node exits, with an error and why.
    let status =
        wait_for(Duration::from_secs(60), "the node to exit", || node.child.try_wait().ok().flatten())
            .map_err(|e| anyhow::anyhow!("{e}\n{}", node.log()))?;
    assert!(!status.success(), "the node exited with success");
    let log = node.log();
    assert!(log.contains("the chain thread has stopped"), "{log}");
    Ok(())
}
