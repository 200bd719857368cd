//! The multi-node chain from the outside: `aergo-node testnet` files, real `aergo-node run` processes
//! talking libp2p on loopback. Four producers finalize and agree on every final block; one killed with
//! SIGKILL does not stop finality and its slots are counted as skipped; restarted, it syncs and
//! produces again. A transaction sent to one node is gossiped and included by whichever producer's
//! slot comes first. A node that joins late syncs a long chain and reaches the same state root.

mod common;

use aergo_api::AergoApiClient;
use aergo_node::testnet::{write_testnet, TestnetNode};
use aergo_primitives::crypto::KeyFile;
use aergo_primitives::types::{Payload, TxBody, ENCODING_VERSION};
use aergo_tests::{node_command, wait_for, NodeProcess};
use common::{data_dir, loopback, start, SplitNet, Testnet};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use std::time::Duration;

#[test]
fn four_producers_finalize_survive_a_kill_and_resync() -> anyhow::Result<()> {
    let mut net = Testnet::new(4)?;
    let all = [0, 1, 2, 3];
    net.wait_lib(&all, 6, Duration::from_secs(60))?;
    net.assert_final_agree(&all);
    for i in all {
        let info = net.info(i).expect("chain_info");
        assert_eq!(info.peers, 3, "node {i} peers");
        assert!(!info.syncing);
        let peers = net.rt.block_on(net.clients[i].peers())?;
        assert_eq!(peers.len(), 3);
        let node = net.rt.block_on(net.clients[i].node_info())?;
        assert_eq!(node.peer_id.as_deref(), Some(net.nodes[i].peer_id.as_str()));
    }

    // A transfer sent to node 0 reaches the producers by gossip and is included by whoever's slot
    // comes first; every node then has its receipt.
    let faucet = KeyFile::read(&net._dir.path().join("net/faucet.key"))?.unlock(None)?;
    let to: aergo_primitives::types::Address =
        net.nodes[3].address.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let tx = faucet.sign_tx(TxBody {
        version: ENCODING_VERSION,
        chain_id: "aergo-testnet".into(),
        branch: aergo_primitives::types::MAIN_BRANCH.into(),
        nonce: 0,
        sender: faucet.public(),
        recipient: to,
        amount: 12_345,
        fee: 1,
        payload: Payload::Transfer,
    });
    let sent = net.rt.block_on(net.clients[0].send_tx(hex::encode(tx.encode())))?;
    for i in all {
        wait_for(Duration::from_secs(30), &format!("the receipt on node {i}"), || {
            net.rt.block_on(net.clients[i].get_receipt(sent.hash.to_string(), None)).ok().flatten()
        })?;
    }
    // Blocks travel compact (header and transaction hashes), filled from each node's pool; the
    // followers that had the transfer in their pool did not check its signature again.
    // `docs/consensus.md`, "Compact blocks" and "Transaction batches on gossip".
    let mut skipped = 0;
    for i in all {
        let m = net.rt.block_on(net.clients[i].node_metrics())?;
        let topic =
            |t: &str| m.gossip_topics.get(&format!("/aergo/aergo-testnet/{t}")).map_or(0, |c| c.messages_in);
        assert!(topic("cblocks") > 0 && m.compact_blocks_in_total > 0, "node {i}: no compact blocks: {m:?}");
        assert_eq!(topic("blocks"), 0, "node {i} received whole blocks on gossip: {:?}", m.gossip_topics);
        // Transactions travel in batches: node 0's transfer reached the others on `txbatch`, and
        // nothing went one by one on `txs` (every peer speaks batches).
        assert!(i == 0 || topic("txbatch") > 0, "node {i} received no batch: {:?}", m.gossip_topics);
        assert_eq!(topic("txs"), 0, "node {i} received single transactions: {:?}", m.gossip_topics);
        skipped += usize::from(m.signatures_skipped_total >= 1);
    }
    assert!(
        skipped >= 2,
        "the transfer's signature was checked again inside its block on {} followers",
        3 - skipped
    );

    // Kill -9 one producer: 3 of 4 still make the quorum of 3, so finality goes on; its slots are
    // skipped and counted.
    net.procs[3].take().expect("node 3").kill9();
    let lib = net.lib(0);
    let live = [0, 1, 2];
    net.wait_lib(&live, lib + 6, Duration::from_secs(60))?;
    net.assert_final_agree(&live);
    let metrics = net.rt.block_on(net.clients[0].node_metrics())?;
    assert!(metrics.slots_skipped_total >= 1, "no skipped slot counted: {metrics:?}");

    // Restarted, it catches up and produces again (a block of its own becomes final everywhere).
    net.procs[3] = Some(start(&net.nodes[3])?);
    let produced_before = 0;
    wait_for(Duration::from_secs(60), "node 3 to produce again", || {
        let m = net.rt.block_on(net.clients[3].node_metrics()).ok()?;
        (m.blocks_produced_total > produced_before).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", net.logs()))?;
    let lib = net.lib(0);
    net.wait_lib(&all, lib + 4, Duration::from_secs(60))?;
    net.assert_final_agree(&all);
    // Node 3's own address produced one of the final blocks after its restart.
    let producer_of = |h: u64| {
        net.rt
            .block_on(net.clients[0].get_block(Some(h), None, Some(false), None))
            .ok()
            .flatten()
            .map(|b| b.header.producer.to_string())
    };
    let lib_now = net.lib(0);
    assert!(
        (lib..=lib_now).any(|h| producer_of(h).as_deref() == Some(net.nodes[3].address.as_str())),
        "no final block of node 3 between {lib} and {lib_now}"
    );
    for p in net.procs.iter_mut().filter_map(Option::take) {
        p.stop()?;
    }
    Ok(())
}

#[test]
fn a_late_joiner_syncs_a_long_chain_and_matches_state_roots() -> anyhow::Result<()> {
    use aergo_chain::Chain;
    use aergo_config::genesis::Genesis;
    use aergo_config::NodeConfig;
    use aergo_storage::LogOptions;
    const HISTORY: u64 = 1_200;

    // One producer whose chain already holds 1 200 blocks (made here, in past slots), with transfers.
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("net");
    let opts = loopback(1, out.clone());
    let producer = write_testnet(&opts)?.remove(0);
    let genesis_path = out.join("genesis.toml");
    let mut genesis = Genesis::load(&genesis_path)?;
    genesis.timestamp_ms -= (HISTORY + 60) * 1000;
    std::fs::write(&genesis_path, genesis.to_toml())?;
    let config = NodeConfig::load(&producer.config)?;
    let bp = KeyFile::read(&config.key_path())?.unlock(None)?;
    let faucet = KeyFile::read(&out.join("faucet.key"))?.unlock(None)?;
    {
        let (mut chain, _) = Chain::open(&config.data_dir, &genesis, LogOptions::default())?;
        for k in 1..=HISTORY {
            let txs = (0..(k % 3))
                .map(|j| {
                    faucet.sign_tx(TxBody {
                        version: ENCODING_VERSION,
                        chain_id: genesis.chain_id.clone(),
                        branch: aergo_primitives::types::MAIN_BRANCH.into(),
                        nonce: chain.store().account(&faucet.address()).map(|a| a.nonce).unwrap_or(0) + j,
                        sender: faucet.public(),
                        recipient: bp.address(),
                        amount: u128::from(k),
                        fee: 1,
                        payload: Payload::Transfer,
                    })
                })
                .collect();
            chain.produce(&bp, txs, genesis.timestamp_ms + k * 1000)?;
        }
        assert_eq!(chain.head().height, HISTORY);
    }
    let a = start(&producer)?;

    // A full node with an empty data directory and the producer as its bootstrap peer.
    let b_dir = out.join("joiner");
    std::fs::create_dir_all(&b_dir)?;
    let mut b_config = config.clone();
    b_config.data_dir = b_dir.clone();
    b_config.producer.enabled = false;
    b_config.rpc.listen = "127.0.0.1:0".parse()?;
    b_config.p2p.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    b_config.p2p.bootstrap = vec![producer.p2p.clone()];
    std::fs::write(b_dir.join("config.toml"), b_config.to_toml()?)?;
    let b = NodeProcess::start(
        &b_dir,
        &["run", "--config", b_dir.join("config.toml").to_str().unwrap_or_default()],
    )?;

    let rt = tokio::runtime::Runtime::new()?;
    let (ca, cb) =
        (HttpClientBuilder::default().build(&producer.rpc)?, HttpClientBuilder::default().build(&b.rpc)?);
    wait_for(Duration::from_secs(180), "the joiner to sync the history", || {
        let info = rt.block_on(cb.chain_info(None)).ok()?;
        (info.height >= HISTORY).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\njoiner log:\n{}\nproducer log:\n{}", b.log(), a.log()))?;
    for h in [1, HISTORY / 2, HISTORY] {
        let x = rt.block_on(ca.get_block(Some(h), None, Some(false), None))?.expect("producer block");
        let y = rt.block_on(cb.get_block(Some(h), None, Some(false), None))?.expect("joiner block");
        assert_eq!(x.hash, y.hash, "block {h}");
        assert_eq!(x.header.state_root, y.header.state_root, "state root at {h}");
    }
    let balance = |c: &HttpClient| rt.block_on(c.get_account(bp.address().to_string(), Some(HISTORY), None));
    assert_eq!(balance(&ca)?.balance, balance(&cb)?.balance);
    // Caught up, it follows gossip: a transfer sent to the joiner (not a producer) reaches the producer
    // by gossip, and the block that includes it comes back.
    let nonce = rt.block_on(ca.get_account(faucet.address().to_string(), None, None))?.nonce;
    let tx = faucet.sign_tx(TxBody {
        version: ENCODING_VERSION,
        chain_id: genesis.chain_id.clone(),
        branch: aergo_primitives::types::MAIN_BRANCH.into(),
        nonce,
        sender: faucet.public(),
        recipient: bp.address(),
        amount: 1,
        fee: 1,
        payload: Payload::Transfer,
    });
    let sent = rt.block_on(cb.send_tx(hex::encode(tx.encode())))?;
    // The joiner is no producer: it forwarded the transaction to the slot's producer, whose answer
    // (pool position, speculative result) it returned.
    assert_eq!(sent.answered_by.as_deref(), Some(producer.peer_id.as_str()), "{sent:?}");
    assert_eq!(sent.speculative.as_ref().map(|s| s.status.as_str()), Some("success"), "{sent:?}");
    wait_for(Duration::from_secs(30), "the joiner to hold the receipt of its transaction", || {
        rt.block_on(cb.get_receipt(sent.hash.to_string(), None)).ok().flatten()
    })
    .map_err(|e| anyhow::anyhow!("{e}\njoiner log:\n{}\nproducer log:\n{}", b.log(), a.log()))?;
    let info = rt.block_on(cb.chain_info(None))?;
    assert!(!info.syncing && info.height > HISTORY && info.peers == 1, "{info:?}");
    b.stop()?;
    a.stop()?;

    // `verify` of a testnet node: its genesis lies beside the node directories, where the node's
    // config names it, not in the data directory.
    let (ok, out, err) = node_command(&["verify", "--data-dir", data_dir(&producer).to_str().unwrap()])?;
    assert!(ok && out.trim_end().ends_with("ok"), "verify --data-dir: {out}{err}");
    let (ok, out, err) = node_command(&["verify", "--config", producer.config.to_str().unwrap()])?;
    assert!(ok && out.trim_end().ends_with("ok"), "verify --config: {out}{err}");
    Ok(())
}

/// Two network namespaces joined by one veth link (the link the test cuts), and a link from the
/// test's own namespace into each for RPC. Removed when dropped.
#[test]
fn a_partition_finalizes_nothing_new_and_heals() -> anyhow::Result<()> {
    let split = SplitNet::new(213)?;
    let half = |i: usize| i / 2;
    let net = Testnet::split(&split, 4, half, 27_100, |o| o)?;
    let all = [0, 1, 2, 3];
    net.wait_lib(&all, 5, Duration::from_secs(90))?;
    net.assert_final_agree(&all);

    // Cut: each half has two of the four producers, less than the quorum of three.
    split.set_link(false)?;
    std::thread::sleep(Duration::from_secs(3));
    let libs: Vec<u64> = all.iter().map(|i| net.lib(*i)).collect();
    let heights: Vec<u64> = all.iter().map(|i| net.info(*i).map_or(0, |c| c.height)).collect();
    let finals: Vec<Option<String>> = all.iter().map(|i| net.block_hash(*i, libs[*i])).collect();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_secs(1));
        for i in all {
            assert_eq!(
                net.lib(i),
                libs[i],
                "node {i} finalized a block during the partition\n{}",
                net.logs()
            );
        }
    }
    for i in all {
        let now = net.info(i).map_or(0, |c| c.height);
        assert!(now >= heights[i] + 3, "node {i}'s half stopped producing: {} → {now}", heights[i]);
    }

    // Heal: the halves converge on one branch and finality resumes.
    split.set_link(true)?;
    let top = libs.iter().copied().max().unwrap_or(0);
    net.wait_lib(&all, top + 3, Duration::from_secs(120))?;
    net.assert_final_agree(&all);
    // What was final before the cut is still final, unchanged.
    for i in all {
        assert_eq!(net.block_hash(i, libs[i]), finals[i], "node {i}'s final block {} changed", libs[i]);
    }
    let reorgs: u64 = all
        .iter()
        .filter_map(|i| net.rt.block_on(net.clients[*i].node_metrics()).ok())
        .map(|m| m.reorgs_total)
        .sum();
    assert!(reorgs >= 1, "no node switched branch after the heal");
    for p in net.procs.into_iter().flatten() {
        p.stop()?;
    }
    Ok(())
}

/// Runs `aergo-node net-probe` against `target`; returns its JSON report.
fn probe(target: &str, attacks: &str) -> anyhow::Result<serde_json::Value> {
    let out = std::process::Command::new(aergo_tests::binary("aergo-node"))
        .args(["net-probe", "--target", target, "--chain-id", "aergo-testnet", "--attack", attacks])
        .output()?;
    anyhow::ensure!(out.status.success(), "net-probe failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[test]
fn hostile_peers_are_refused_scored_down_and_banned() -> anyhow::Result<()> {
    use aergo_config::NodeConfig;
    let dir = tempfile::tempdir()?;
    let opts = loopback(1, dir.path().join("net"));
    let node = write_testnet(&opts)?.remove(0);
    let mut config = NodeConfig::load(&node.config)?;
    config.producer.empty_blocks = true;
    std::fs::write(&node.config, config.to_toml()?)?;
    let p = start(&node)?;
    let rt = tokio::runtime::Runtime::new()?;
    let client = HttpClientBuilder::default().build(&node.rpc)?;
    let height = |c: &HttpClient| rt.block_on(c.chain_info(None)).map(|i| i.height).unwrap_or(0);
    wait_for(Duration::from_secs(30), "a first block", || (height(&client) >= 1).then_some(()))?;

    // One misdeed each: refused and counted against the sender, not yet enough for a ban.
    let expected = [
        ("malformed", "gossiped block: block is malformed"),
        ("bad-signature", "producer signature"),
        ("wrong-slot", "is not the start of a slot"),
        ("bad-tx", "gossiped transaction: bad signature"),
        ("bad-batch", "gossiped transaction batch: bad signature"),
        ("wrong-chain", "a transaction for chain \"aergo-testnet-other\""),
        ("wrong-chain-batch", "gossiped transaction batch: a transaction for chain"),
        ("compact-lie", "transactions of a compact block"),
    ];
    for (attack, reason) in expected {
        let report = probe(&node.p2p, attack)?;
        assert_eq!(report["sent"].as_array().map(Vec::len), Some(1), "{attack}: {report}");
        assert_eq!(report["disconnected"], false, "{attack}: banned for one misdeed: {report}");
        let id = report["peer_id"].as_str().unwrap_or_default().to_string();
        let log = p.log();
        assert!(
            log.lines().any(|l| l.contains("peer penalized") && l.contains(&id) && l.contains(reason)),
            "{attack}: no penalty for {id} with {reason:?} in the node log:\n{log}"
        );
    }
    // A compact block of transactions nobody has, from a peer that never answers: the node asks
    // it for them, then (after its fill timeout) for the whole block, then gives the block up;
    // silence is not held against the peer.
    let report = probe(&node.p2p, "compact-silent")?;
    assert_eq!(report["disconnected"], false, "{report}");
    let asked: Vec<&str> =
        report["asked"].as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
    assert_eq!(asked, ["transactions 8", "block"], "{report}\n{}", p.log());
    let metrics = rt.block_on(client.node_metrics())?;
    assert!(metrics.compact_blocks_in_total >= 2 && metrics.compact_fallbacks_total >= 1, "{metrics:?}");
    // A peer of an earlier version (on single transactions, not on batches) still hears the
    // node's transactions one by one (`docs/consensus.md`, "Transaction batches on gossip").
    let listener = {
        let target = node.p2p.clone();
        std::thread::spawn(move || probe(&target, "legacy"))
    };
    let faucet = KeyFile::read(&dir.path().join("net/faucet.key"))?.unlock(None)?;
    // One a second while the probe connects and listens (its 8 s start when it is connected).
    for nonce in 0..20 {
        if listener.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1000));
        let tx = faucet.sign_tx(TxBody {
            version: ENCODING_VERSION,
            chain_id: "aergo-testnet".into(),
            branch: aergo_primitives::types::MAIN_BRANCH.into(),
            nonce,
            sender: faucet.public(),
            recipient: faucet.address(),
            amount: 1,
            fee: 1,
            payload: Payload::Transfer,
        });
        rt.block_on(client.send_tx(hex::encode(tx.encode())))?;
    }
    let report = listener.join().map_err(|_| anyhow::anyhow!("the legacy probe panicked"))??;
    assert!(report["txs_heard"].as_u64().unwrap_or(0) >= 1, "{report}\n{}", p.log());
    // Oversized gossip is dropped by the transport's limit; edge-case sync requests (zero blocks, from
    // height 0, from the far future) are answered; the node goes on.
    let report = probe(&node.p2p, "oversized,zero-request")?;
    assert_eq!(report["disconnected"], false, "{report}");
    assert_eq!(report["sent"].as_array().map(Vec::len), Some(2), "{report}");

    // Two misdeeds: banned, cut off, and a new connection refused.
    let report = probe(&node.p2p, "malformed,bad-signature,bad-tx")?;
    assert_eq!(report["disconnected"], true, "{report}\n{}", p.log());
    assert_eq!(report["redial_refused"], true, "{report}");
    // Flooding with sync requests: refused beyond the allowance, then banned.
    let report = probe(&node.p2p, "sync-flood")?;
    assert_eq!(report["disconnected"], true, "{report}\n{}", p.log());
    assert!(p.log().contains("more sync requests than allowed"));
    let metrics = rt.block_on(client.node_metrics())?;
    assert_eq!(metrics.peers_banned_total, 2);
    // Still producing.
    let before = height(&client);
    wait_for(Duration::from_secs(30), "the node to go on producing", || {
        (height(&client) > before + 1).then_some(())
    })?;
    p.stop()?;
    Ok(())
}

/// A 4-producer testnet whose epochs last 10 blocks: its directory, `DIR/net`, and its nodes.
fn short_epochs() -> anyhow::Result<(tempfile::TempDir, std::path::PathBuf, Vec<TestnetNode>)> {
    use aergo_config::genesis::Genesis;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("net");
    let opts = loopback(4, out.clone());
    let nodes = write_testnet(&opts)?;
    let genesis_path = out.join("genesis.toml");
    let mut genesis = Genesis::load(&genesis_path)?;
    genesis.consensus.epoch_blocks = 10;
    std::fs::write(&genesis_path, genesis.to_toml())?;
    Ok((dir, out, nodes))
}

#[test]
fn votes_elect_a_new_producer_at_the_epoch_boundary_on_every_node() -> anyhow::Result<()> {
    use aergo_config::NodeConfig;
    use aergo_primitives::crypto::Keypair;
    use aergo_tests::cli_json;
    let (dir, out, nodes) = short_epochs()?;
    let procs = nodes.iter().map(|n| start(n).map(Some)).collect::<anyhow::Result<Vec<_>>>()?;
    let clients =
        nodes.iter().map(|n| HttpClientBuilder::default().build(&n.rpc)).collect::<Result<Vec<_>, _>>()?;
    let mut net = Testnet { _dir: dir, nodes, procs, clients, rt: tokio::runtime::Runtime::new()? };
    net.wait_lib(&[0, 1, 2, 3], 2, Duration::from_secs(60))?;
    let rpc = net.nodes[0].rpc.clone();
    let faucet_key = out.join("faucet.key");
    let faucet = faucet_key.to_str().unwrap_or_default();

    // A new candidate with funds, running a node of its own that will produce once elected.
    let candidate = Keypair::generate();
    let cand_dir = out.join("candidate");
    std::fs::create_dir_all(&cand_dir)?;
    KeyFile::write_plain(&cand_dir.join("producer.key"), &candidate)?;
    let mut config = NodeConfig::load(&net.nodes[0].config)?;
    config.data_dir = cand_dir.clone();
    config.rpc.listen = "127.0.0.1:0".parse()?;
    config.p2p.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    config.p2p.bootstrap = net.nodes.iter().map(|n| n.p2p.clone()).collect();
    std::fs::write(cand_dir.join("config.toml"), config.to_toml()?)?;
    let cand_node = NodeProcess::start(
        &cand_dir,
        &["run", "--config", cand_dir.join("config.toml").to_str().unwrap_or_default()],
    )?;
    let cand_key = cand_dir.join("producer.key");
    let cand = cand_key.to_str().unwrap_or_default();
    let address = candidate.address().to_string();
    cli_json(&rpc, &["send", "--key", faucet, "--to", &address, "--amount", "1000000", "--wait"])?;
    cli_json(&rpc, &["bp", "register", "--key", cand, "--p2p", "/ip4/127.0.0.1/tcp/1", "--wait"])?;
    cli_json(&rpc, &["stake", "add", "--key", faucet, "--amount", "5000000", "--wait"])?;
    let voted = cli_json(&rpc, &["vote", "--key", faucet, &address, "--wait"])?;
    let voted_at = voted["receipt"]["block_height"].as_u64().unwrap_or(0);
    let list = cli_json(&rpc, &["bp", "list"])?;
    let entry = list["candidates"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["address"] == address.as_str()).cloned());
    assert_eq!(entry.as_ref().map(|e| e["votes"].clone()), Some(serde_json::json!("5000000")), "{list}");
    let stake = cli_json(&rpc, &["stake", "show", net.nodes[0].address.as_str()])?;
    assert_eq!(stake["staked"], "0");

    // The first epoch whose election height follows the vote has the candidate in its set, in place of
    // the last genesis producer; every node computes the same set.
    let epoch_blocks = 10;
    let epoch = (voted_at + epoch_blocks / 2).div_ceil(epoch_blocks);
    let first = epoch * epoch_blocks + 1;
    let sets: Vec<serde_json::Value> = (0..4)
        .map(|i| {
            wait_for(Duration::from_secs(90), &format!("node {i} to elect epoch {epoch}"), || {
                let v = cli_json(&net.nodes[i].rpc, &["bp", "list", "--height", &first.to_string()]).ok()?;
                let head = net.info(i)?.height;
                (head + 1 >= first).then(|| v["producers"].clone())
            })
        })
        .collect::<anyhow::Result<_>>()?;
    assert!(sets.iter().all(|s| *s == sets[0]), "the nodes disagree: {sets:?}");
    let set: Vec<String> = serde_json::from_value(sets[0].clone())?;
    assert_eq!(set.len(), 4);
    assert_eq!(set[0], address, "{set:?}");
    assert!(!set.contains(&net.nodes[3].address), "{set:?}");
    let before: Vec<String> = serde_json::from_value(
        cli_json(&rpc, &["bp", "list", "--height", &(first - 1).to_string()])?["producers"].clone(),
    )?;
    assert!(!before.contains(&address), "elected too early: {before:?}");

    // The candidate's node produces in its slots, and its blocks become final everywhere.
    let produced = wait_for(Duration::from_secs(60), "a final block by the new producer", || {
        let lib = net.lib(0);
        (first..=lib).find(|h| {
            net.rt
                .block_on(net.clients[0].get_block(Some(*h), None, Some(false), None))
                .ok()
                .flatten()
                .is_some_and(|b| b.header.producer.to_string() == address)
        })
    })
    .map_err(|e| anyhow::anyhow!("{e}\ncandidate log:\n{}", cand_node.log()))?;
    net.wait_lib(&[0, 1, 2, 3], produced, Duration::from_secs(30))?;
    net.assert_final_agree(&[0, 1, 2, 3]);
    cand_node.stop()?;
    for p in net.procs.iter_mut().filter_map(Option::take) {
        p.stop()?;
    }
    Ok(())
}

#[test]
fn an_equivocating_producer_is_caught_and_left_out_of_the_next_epoch() -> anyhow::Result<()> {
    use aergo_config::NodeConfig;
    use aergo_tests::cli_json;
    let (dir, _, nodes) = short_epochs()?;
    // Node 3 signs two different blocks in each of its slots (test-only fault injection).
    let mut config = NodeConfig::load(&nodes[3].config)?;
    config.producer.equivocate_for_tests = true;
    std::fs::write(&nodes[3].config, config.to_toml()?)?;
    let procs = nodes.iter().map(|n| start(n).map(Some)).collect::<anyhow::Result<Vec<_>>>()?;
    let clients =
        nodes.iter().map(|n| HttpClientBuilder::default().build(&n.rpc)).collect::<Result<Vec<_>, _>>()?;
    let mut net = Testnet { _dir: dir, nodes, procs, clients, rt: tokio::runtime::Runtime::new()? };
    let offender = net.nodes[3].address.clone();

    // Caught by the others, reported on chain, and left out of the next elected set — the same set
    // on every node.
    let first_without = wait_for(Duration::from_secs(90), "an epoch without the offender", || {
        let v = cli_json(&net.nodes[0].rpc, &["bp", "list"]).ok()?;
        let next: Vec<String> = serde_json::from_value(v["next_producers"].clone()).ok()?;
        (!next.is_empty() && !next.contains(&offender)).then(|| v["next_epoch_height"].as_u64().unwrap_or(0))
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", net.logs()))?;
    let caught: u64 = (0..3)
        .filter_map(|i| net.rt.block_on(net.clients[i].node_metrics()).ok())
        .map(|m| m.equivocations_total)
        .sum();
    assert!(caught >= 1, "no node counted the equivocation");
    let sets: Vec<serde_json::Value> = (0..4)
        .map(|i| {
            cli_json(&net.nodes[i].rpc, &["bp", "list", "--height", &first_without.to_string()])
                .map(|v| v["producers"].clone())
        })
        .collect::<anyhow::Result<_>>()?;
    assert!(sets.iter().all(|s| *s == sets[0]), "{sets:?}");
    let set: Vec<String> = serde_json::from_value(sets[0].clone())?;
    assert_eq!(set.len(), 3);
    assert!(!set.contains(&offender));
    // Finality goes on with the three honest producers, past the start of that epoch.
    net.wait_lib(&[0, 1, 2], first_without + 3, Duration::from_secs(90))?;
    net.assert_final_agree(&[0, 1, 2]);
    let lib = net.lib(0);
    for h in first_without..=lib {
        let b = net
            .rt
            .block_on(net.clients[0].get_block(Some(h), None, Some(false), None))?
            .expect("final block");
        assert_ne!(b.header.producer.to_string(), offender, "block {h} by the excluded producer");
    }
    for p in net.procs.iter_mut().filter_map(Option::take) {
        p.stop()?;
    }
    Ok(())
}

/// A payer (key file `payer.key` beside the network's files, from `seed`) funded on main by the
/// faucet through node 0, final on `nodes`; its key file's path.
fn fund_payer(net: &Testnet, seed: &str, nodes: &[usize]) -> anyhow::Result<String> {
    let dir = net._dir.path().join("net");
    let payer = aergo_primitives::crypto::Keypair::from_seed(seed);
    let payer_key = dir.join("payer.key");
    KeyFile::write_plain(&payer_key, &payer)?;
    let faucet = dir.join("faucet.key").display().to_string();
    let v = aergo_tests::cli_json(
        &net.nodes[0].rpc,
        &["send", "--to", &payer.address().to_string(), "--amount", "100000", "--key", &faucet, "--wait"],
    )?;
    anyhow::ensure!(v["receipt"]["status"] == "success", "{v}");
    net.wait_lib(nodes, v["receipt"]["block_height"].as_u64().unwrap_or(0), Duration::from_secs(30))?;
    Ok(payer_key.display().to_string())
}

/// A branch produced by two nodes (`docs/branches.md`, "Between nodes"): each node produces in its
/// slots of the branch's producer set, the blocks travel on the branch's own topic and sync, and
/// a block is final at 2 of 2. A transfer on the branch sent to one node reaches the other's pool
/// by the branch's gossip. With one node killed the branch finalizes nothing new; restarted, it
/// syncs the branch and both agree again. A replay merge of the branch into `main` then runs on
/// both nodes to the same block (state root included).
#[test]
fn a_branch_of_two_producers_travels_between_nodes_and_merges_on_both() -> anyhow::Result<()> {
    use aergo_tests::{cli_code_json, cli_json};
    let mut net = Testnet::new(2)?;
    let both = [0, 1];
    net.wait_lib(&both, 3, Duration::from_secs(60))?;
    let dir = net._dir.path().join("net");
    let faucet = dir.join("faucet.key").display().to_string();
    let public = |i: usize| -> anyhow::Result<String> {
        let key = KeyFile::read(&data_dir(&net.nodes[i]).join("producer.key"))?.unlock(None)?;
        Ok(hex::encode(key.public().0))
    };
    let (pk0, pk1) = (public(0)?, public(1)?);
    let rpc: Vec<String> = net.nodes.iter().map(|n| n.rpc.clone()).collect();
    // A payer funded on main before the branch is made (the faucet's own nonce on main moves on
    // when it makes the branch, so its branch transactions would not replay).
    let payer_key = fund_payer(&net, "branch-net-payer", &both)?;
    let v = cli_json(
        &rpc[0],
        &["branch", "create", "shared", "--key", &faucet, "--producer", &pk0, "--producer", &pk1, "--wait"],
    )?;
    assert_eq!(v["receipt"]["status"], "success", "{v}");
    for r in &rpc {
        cli_json(r, &["branch", "track", "shared"])?;
    }
    let on_branch = |i: usize, args: &[&str]| {
        let mut all = vec!["--branch", "shared"];
        all.extend_from_slice(args);
        cli_json(&rpc[i], &all)
    };
    let branch_lib = |i: usize| on_branch(i, &["chain"]).ok().and_then(|c| c["lib_height"].as_u64());
    let base = cli_json(&rpc[0], &["branch", "show", "shared"])?["base_height"].as_u64().unwrap_or(0);
    let wait_branch_lib = |net: &Testnet, height: u64, what: &str| {
        wait_for(Duration::from_secs(90), what, || {
            both.iter().all(|i| branch_lib(*i).is_some_and(|l| l >= height)).then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", net.logs()))
    };
    wait_branch_lib(&net, base + 4, "the branch final 4 blocks above its base on both nodes")?;
    let branch_block = |i: usize, h: u64| on_branch(i, &["block", &h.to_string()]).ok();
    let agree = |upto: u64| -> anyhow::Result<()> {
        let mut producers = std::collections::BTreeSet::new();
        for h in base + 1..=upto {
            let (a, b) = (branch_block(0, h), branch_block(1, h));
            let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
            assert!(a["hash"].is_string(), "no block {h} of the branch on node 0: {a}");
            assert_eq!(a["hash"], b["hash"], "final block {h} of the branch differs");
            assert_eq!(a["header"]["branch"], "shared", "{a}");
            producers.insert(a["header"]["producer"].as_str().unwrap_or_default().to_string());
        }
        assert_eq!(producers.len(), 2, "both producers made final blocks of the branch: {producers:?}");
        Ok(())
    };
    agree(base + 4)?;

    // A transfer on the branch sent to node 1 is gossiped on the branch's topic: node 0 holds its
    // receipt too, and main never sees it.
    let alice = aergo_primitives::crypto::Keypair::from_seed("branch-net-alice").address().to_string();
    let v = cli_json(
        &rpc[1],
        &["--branch", "shared", "send", "--to", &alice, "--amount", "4242", "--key", &payer_key, "--wait"],
    )?;
    assert_eq!(v["receipt"]["status"], "success", "{v}");
    let hash = v["hash"].as_str().unwrap_or_default().to_string();
    wait_for(Duration::from_secs(30), "the branch transfer's receipt on node 0", || {
        on_branch(0, &["receipt", &hash]).ok().filter(|r| r["status"] == "success")
    })?;
    for i in both {
        assert_eq!(on_branch(i, &["balance", &alice])?["balance"], "4242");
        assert_eq!(cli_json(&rpc[i], &["balance", &alice])?["balance"], "0", "main is unchanged");
    }

    // One of the two stopped: nothing new of the branch is final (2 of 2 are needed).
    net.procs[1].take().expect("node 1").kill9();
    std::thread::sleep(Duration::from_secs(3));
    let stuck = branch_lib(0).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(branch_lib(0), Some(stuck), "the branch finalized a block with one of its two producers");

    // Restarted, node 1 opens the branch again, syncs it and finality resumes on both.
    net.procs[1] = Some(start(&net.nodes[1])?);
    wait_branch_lib(&net, stuck + 3, "the branch final again on both nodes")?;
    let lib = both.iter().filter_map(|i| branch_lib(*i)).min().unwrap_or(0);
    agree(lib)?;

    // A replay merge into main: both nodes run it to the same block, and alice has her coins on
    // main on both.
    let (code, v) = cli_code_json(&rpc[0], &["merge", "shared", "--key", &faucet, "--wait"])?;
    assert_eq!(code, 0, "{v}\n{}", net.logs());
    assert_eq!(v["receipt"]["status"], "success", "{v}");
    let merged_at = v["receipt"]["block_height"].as_u64().unwrap_or(0);
    net.wait_lib(&both, merged_at, Duration::from_secs(60))?;
    net.assert_final_agree(&both);
    for i in both {
        assert_eq!(cli_json(&rpc[i], &["balance", &alice])?["balance"], "4242", "node {i}: {v}");
        let r = cli_json(&rpc[i], &["receipt", &hash])?;
        assert_eq!(r["merged_by"], v["hash"], "node {i}: {r}");
    }
    for p in net.procs.iter_mut().filter_map(Option::take) {
        p.stop()?;
    }
    Ok(())
}

/// A private branch (`docs/branches.md`, "Private branches") of two member nodes beside a third
/// node of the same chain that is not a member: the branch's blocks reach the members (announced
/// on `branch-sync`, never gossiped) and never the third, whose store holds no branch, whose
/// gossip counters show no topic of the branch, and whose `aergo branch track` is refused; a
/// probe with a non-member identity is answered as for a branch nobody holds. A replay merge
/// made on a member carries the branch's transactions: the third node runs it to the same final
/// blocks as the members and has the merged balance, without ever holding a block of the branch.
#[test]
fn a_private_branch_stays_on_its_members_and_its_merge_publishes_only_the_result() -> anyhow::Result<()> {
    use aergo_tests::{cli_code_json, cli_json};
    let mut net = Testnet::new(3)?;
    let all = [0, 1, 2];
    net.wait_lib(&all, 3, Duration::from_secs(60))?;
    let dir = net._dir.path().join("net");
    let faucet = dir.join("faucet.key").display().to_string();
    let rpc: Vec<String> = net.nodes.iter().map(|n| n.rpc.clone()).collect();
    let producer0 = {
        let key = KeyFile::read(&data_dir(&net.nodes[0]).join("producer.key"))?.unlock(None)?;
        hex::encode(key.public().0)
    };
    let node_key =
        |i: usize| -> anyhow::Result<String> { Ok(net.rt.block_on(net.clients[i].node_info())?.node_key) };
    let (member0, member1, outsider) = (node_key(0)?, node_key(1)?, node_key(2)?);
    let payer_key = fund_payer(&net, "private-branch-payer", &all)?;

    // The branch: produced by node 0, held by nodes 0 and 1.
    let args = [
        "branch",
        "create",
        "secret",
        "--key",
        &faucet,
        "--producer",
        &producer0,
        "--private",
        "--member",
        &member0,
        "--member",
        &member1,
        "--wait",
    ];
    let v = cli_json(&rpc[0], &args)?;
    assert_eq!(v["receipt"]["status"], "success", "{v}");
    net.wait_lib(&all, v["receipt"]["block_height"].as_u64().unwrap_or(0), Duration::from_secs(30))?;
    for r in &rpc[..2] {
        cli_json(r, &["branch", "track", "secret"])?;
    }
    let (code, refused) = cli_code_json(&rpc[2], &["branch", "track", "secret"])?;
    assert_ne!(code, 0, "a non-member tracked the private branch: {refused}");
    assert!(refused.to_string().contains("not one of its members"), "{refused}");
    let shown = cli_json(&rpc[2], &["branch", "show", "secret"])?;
    assert_eq!(shown["tracked"], false, "{shown}");
    let members: Vec<String> = serde_json::from_value(shown["members"].clone())?;
    assert_eq!(members, vec![member0.clone(), member1.clone()], "{shown}");
    assert!(!members.contains(&outsider));

    // A transfer on the branch sent to node 1 (a member that does not produce it) goes to node 0
    // on branch-sync; node 0's block is announced to node 1, which has the receipt.
    // Reads of the branch on a member node are served to its creator (and mergers) only.
    let on_branch = |i: usize, args: &[&str]| {
        let mut all = vec!["--branch", "secret", "--member-key", &faucet];
        all.extend_from_slice(args);
        cli_json(&rpc[i], &all)
    };
    wait_for(Duration::from_secs(30), "the branch open on both members", || {
        (0..2).all(|i| on_branch(i, &["chain"]).is_ok()).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", net.logs()))?;
    let alice = aergo_primitives::crypto::Keypair::from_seed("private-branch-alice").address().to_string();
    let mut sent = Vec::new();
    for amount in ["700", "77"] {
        let v = on_branch(1, &["send", "--to", &alice, "--amount", amount, "--key", &payer_key, "--wait"])
            .map_err(|e| anyhow::anyhow!("{e}\n{}", net.logs()))?;
        assert_eq!(v["receipt"]["status"], "success", "{v}");
        sent.push(v["hash"].as_str().unwrap_or_default().to_string());
    }
    let branch_height = on_branch(0, &["chain"])?["lib_height"].as_u64().unwrap_or(0);
    wait_for(Duration::from_secs(30), "node 1 at the branch's final height", || {
        on_branch(1, &["chain"]).ok()?["lib_height"].as_u64().filter(|h| *h >= branch_height)
    })?;
    for (i, url) in rpc.iter().enumerate().take(2) {
        let refused = |extra: &[&str]| {
            let mut args = vec!["--branch", "secret"];
            args.extend_from_slice(extra);
            args.extend(["balance", alice.as_str()]);
            cli_code_json(url, &args)
        };
        for extra in [&[][..], &["--member-key", payer_key.as_str()][..]] {
            let (code, v) = refused(extra)?;
            assert_ne!(code, 0, "node {i} served the private branch to {extra:?}: {v}");
            assert!(v.to_string().contains("is not tracked by this node"), "node {i}: {v}");
        }
        assert_eq!(on_branch(i, &["balance", &alice])?["balance"], "777", "node {i}");
        let block = on_branch(i, &["block", &branch_height.to_string()])?;
        assert_eq!(block["header"]["branch"], "secret", "node {i}: {block}");
    }

    // The third node: no branch in its store, no topic of the branch in anyone's gossip, reads
    // of the branch refused, and a non-member's branch-sync requests answered "not held".
    assert!(on_branch(2, &["chain"]).is_err(), "the outsider serves the branch");
    let held: Vec<_> = std::fs::read_dir(data_dir(&net.nodes[2]).join("branches"))
        .map(|d| d.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(held.is_empty(), "the outsider's store holds a branch: {held:?}");
    for i in all {
        let m = net.rt.block_on(net.clients[i].node_metrics())?;
        let branch_topics: Vec<&String> =
            m.gossip_topics.keys().filter(|t| t.contains("/b/secret/")).collect();
        assert!(branch_topics.is_empty(), "node {i} gossiped the private branch: {branch_topics:?}");
        let main_blocks = m.gossip_topics.get("/aergo/aergo-testnet/cblocks").map_or(0, |c| c.messages_in);
        assert!(main_blocks > 0, "node {i} counted no gossip of main's blocks: {:?}", m.gossip_topics);
        if i == 0 {
            assert!(m.private_block_announcements_total >= 1, "node 0 announced no block: {m:?}");
        }
    }
    let branch_probe = |target: &str, branch: &str| -> anyhow::Result<Vec<String>> {
        let out = std::process::Command::new(aergo_tests::binary("aergo-node"))
            .args(["net-probe", "--target", target, "--chain-id", "aergo-testnet", "--attack", "branch-sync"])
            .args(["--branch", branch])
            .output()?;
        anyhow::ensure!(out.status.success(), "net-probe: {}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok(serde_json::from_value(report["branch_answers"].clone())?)
    };
    for i in 0..2 {
        let answers = branch_probe(&net.nodes[i].p2p, "secret")?;
        let unknown = branch_probe(&net.nodes[i].p2p, "nothing")?;
        assert_eq!(answers.len(), 3, "{answers:?}");
        for (a, u) in answers.iter().zip(&unknown) {
            assert_eq!(
                a.replace("secret", "X"),
                u.replace("nothing", "X"),
                "member {i} told a non-member more"
            );
            assert!(a.starts_with("refused: this node does not hold branch"), "member {i}: {a}");
        }
    }

    // The merge, made on node 0: every node runs it, to the same final blocks.
    let (code, v) = cli_code_json(&rpc[0], &["merge", "secret", "--key", &faucet, "--wait"])?;
    assert_eq!(code, 0, "{v}\n{}", net.logs());
    assert_eq!(v["receipt"]["status"], "success", "{v}");
    let rows = v["receipt"]["result"]["rows"].as_array().cloned().unwrap_or_default();
    for hash in &sent {
        let row = rows.iter().find(|r| r[0] == hash.as_str()).cloned().unwrap_or_default();
        assert_eq!(row[2], "included", "{v}");
    }
    let merged_at = v["receipt"]["block_height"].as_u64().unwrap_or(0);
    net.wait_lib(&all, merged_at, Duration::from_secs(60))?;
    net.assert_final_agree(&all);
    let merged = cli_json(&rpc[2], &["block", &merged_at.to_string(), "--full"])?;
    assert_eq!(merged["header"]["branch"], "main", "{merged}");
    for i in all {
        assert_eq!(cli_json(&rpc[i], &["balance", &alice])?["balance"], "777", "node {i}");
        for hash in &sent {
            let r = cli_json(&rpc[i], &["receipt", hash])?;
            assert_eq!(r["merged_by"], v["hash"], "node {i}: {r}");
        }
    }
    // Still no branch on the outsider: it ran the merge from what the merge carried.
    assert!(std::fs::read_dir(data_dir(&net.nodes[2]).join("branches"))
        .map(|d| d.flatten().all(|e| !e.path().is_dir()))
        .unwrap_or(true));
    for p in net.procs.iter_mut().filter_map(Option::take) {
        p.stop()?;
    }
    Ok(())
}

/// The branch test of the issue on a 4-producer network (processes on loopback): a branch of three
/// of the producers, every node tracking it (node 3 holds it without producing it: what it is
/// sent it forwards to the branch's producers over `branch-sync`); transfers, a tag and a
/// contract call on it sent to different nodes; a replay merge into `main` that drops exactly the transactions that no longer
/// fit (a nonce `main` took), then a three-way merge of the token whose resolver sums the rows and
/// whose accounts sum both sides; every node at the same final blocks (state roots included) and
/// the balances worked out by hand on each.
#[test]
fn a_branch_on_a_four_producer_network_merges_to_the_same_state_on_every_node() -> anyhow::Result<()> {
    use aergo_primitives::crypto::Keypair;
    use aergo_tests::cli_json;
    let mut net = Testnet::new(4)?;
    let all = [0, 1, 2, 3];
    net.wait_lib(&all, 3, Duration::from_secs(60))?;
    let dir = net._dir.path().join("net");
    let rpc: Vec<String> = net.nodes.iter().map(|n| n.rpc.clone()).collect();
    let faucet = dir.join("faucet.key").display().to_string();
    let faucet_addr = KeyFile::read(&dir.join("faucet.key"))?.address().to_string();
    let key = |seed: &str| -> anyhow::Result<(String, String)> {
        let k = Keypair::from_seed(seed);
        let path = dir.join(format!("{seed}.key"));
        KeyFile::write_plain(&path, &k)?;
        Ok((path.display().to_string(), k.address().to_string()))
    };
    let (p1, p1_addr) = key("net-merge-p1")?;
    let (p2, p2_addr) = key("net-merge-p2")?;
    let [alice, bob, carol, dave, erin] =
        ["alice", "bob", "carol", "dave", "erin"].map(|s| Keypair::from_seed(s).address().to_string());
    let ok = |v: serde_json::Value| -> anyhow::Result<serde_json::Value> {
        anyhow::ensure!(v["receipt"]["status"] == "success", "{v}\n{}", net.logs());
        Ok(v)
    };
    let send = |node: usize, branch: &str, from: &str, to: &str, amount: &str| {
        let args = ["--branch", branch, "send", "--to", to, "--amount", amount, "--key", from, "--wait"];
        cli_json(&rpc[node], &args)
    };
    let height_of = |v: &serde_json::Value| v["receipt"]["block_height"].as_u64().unwrap_or(0);

    // On main: the payers' coins and the token (the faucet holds all of it).
    ok(send(0, "main", &faucet, &p1_addr, "10000")?)?;
    let funded = height_of(&ok(send(0, "main", &faucet, &p2_addr, "10000")?)?);
    let token = aergo_tests::workspace().join("examples/contracts/token.sql");
    let v = ok(cli_json(
        &rpc[0],
        &["contract", "deploy", token.to_str().unwrap_or_default(), "--key", &faucet, "--wait"],
    )?)?;
    let contract = v["contract"].as_str().unwrap_or_default().to_string();
    net.wait_lib(&all, funded.max(height_of(&v)), Duration::from_secs(30))?;

    // The branch of producers 0, 1 and 2, tracked by every node.
    let mut producers = vec!["branch", "create", "shared", "--key", &faucet, "--wait"];
    let keys: Vec<String> = (0..4)
        .map(|i| {
            let k = KeyFile::read(&data_dir(&net.nodes[i]).join("producer.key"))?.unlock(None)?;
            Ok(hex::encode(k.public().0))
        })
        .collect::<anyhow::Result<_>>()?;
    for k in &keys[..3] {
        producers.extend(["--producer", k.as_str()]);
    }
    ok(cli_json(&rpc[0], &producers)?)?;
    for r in &rpc {
        cli_json(r, &["branch", "track", "shared"])?;
    }
    let branch_lib = |i: usize| {
        cli_json(&rpc[i], &["--branch", "shared", "chain"]).ok().and_then(|c| c["lib_height"].as_u64())
    };
    let wait_branch_lib = |height: u64| {
        wait_for(Duration::from_secs(90), &format!("branch LIB {height} on every node"), || {
            all.iter().all(|i| branch_lib(*i).is_some_and(|l| l >= height)).then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", net.logs()))
    };
    let base = cli_json(&rpc[0], &["branch", "show", "shared"])?["base_height"].as_u64().unwrap_or(0);
    wait_branch_lib(base + 3)?;

    // On the branch, through three different nodes: p1 pays alice, p2 pays bob, the faucet pays
    // erin (its nonce on main moved on when it made the branch). On main p2 spends its nonce.
    let from_p1 = ok(send(1, "shared", &p1, &alice, "100")?)?;
    let from_p2 = ok(send(2, "shared", &p2, &bob, "200")?)?;
    let from_faucet = ok(send(3, "shared", &faucet, &erin, "7")?)?;
    // Node 3 does not produce the branch: one of its producers answered.
    let answered_by = from_faucet["answered_by"].as_str().unwrap_or_default();
    assert!(net.nodes[..3].iter().any(|n| n.peer_id == answered_by), "{from_faucet}");
    ok(send(0, "main", &p2, &carol, "50")?)?;
    let last = [&from_p1, &from_p2, &from_faucet].iter().map(|v| height_of(v)).max().unwrap_or(0);
    wait_branch_lib(last)?;
    // A tag on the branch (a transaction on it), read on another node.
    ok(cli_json(
        &rpc[2],
        &["tag", "create", "shared/paid", &format!("shared@{last}"), "--key", &p1, "--wait"],
    )?)?;
    wait_for(Duration::from_secs(30), "the tag on node 3", || {
        cli_json(&rpc[3], &["balance", &alice, "--at", "shared/paid"]).ok().filter(|v| v["balance"] == "100")
    })?;

    // Replay merge: p1's transfer is included; p2's (its nonce taken on main) and the faucet's
    // (likewise) are dropped with their reasons.
    let merge = ok(cli_json(&rpc[0], &["merge", "shared", "--key", &faucet, "--wait"])?)?;
    let rows = merge["receipt"]["result"]["rows"].as_array().cloned().unwrap_or_default();
    let row_of = |v: &serde_json::Value| rows.iter().find(|r| r[0] == v["hash"]).cloned().unwrap_or_default();
    assert_eq!(row_of(&from_p1)[2], "included", "{merge}");
    for dropped in [&from_p2, &from_faucet] {
        assert_eq!(row_of(dropped)[2], "dropped", "{merge}");
        assert!(row_of(dropped)[3].as_str().unwrap_or_default().contains("nonce"), "{merge}");
    }

    // Three-way merge: the token on both sides (the resolver sums), coins on both sides (summed).
    let call = |node: usize, branch: &str, amount: &str| {
        let args = [
            "--branch", branch, "contract", "call", "--key", &faucet, "--wait", &contract, "transfer",
            "somebody", amount,
        ];
        cli_json(&rpc[node], &args)
    };
    let on_branch = height_of(&ok(call(1, "shared", "10")?)?);
    let on_branch = on_branch.max(height_of(&ok(send(2, "shared", &p1, &dave, "7")?)?));
    ok(call(0, "main", "3")?)?;
    ok(send(0, "main", &p1, &dave, "5")?)?;
    wait_branch_lib(on_branch)?;
    let three =
        ok(cli_json(&rpc[3], &["merge", "shared", "--strategy", "three-way", "--key", &faucet, "--wait"])?)?;
    net.wait_lib(&all, height_of(&three), Duration::from_secs(60))?;
    net.assert_final_agree(&all);

    // By hand, on every node: alice 100 (replayed), bob 0 (dropped), carol 50, erin 0 (dropped),
    // dave 5 + 7; somebody 3 + 10 tokens, the faucet 1 000 000 − 13.
    for (i, r) in rpc.iter().enumerate() {
        let coins = |who: &str| cli_json(r, &["balance", who]).map(|v| v["balance"].clone());
        assert_eq!(coins(&alice)?, "100", "node {i}");
        assert_eq!(coins(&bob)?, "0", "node {i}");
        assert_eq!(coins(&carol)?, "50", "node {i}");
        assert_eq!(coins(&erin)?, "0", "node {i}");
        assert_eq!(coins(&dave)?, "12", "node {i}: {three}");
        let tokens = |who: &str| {
            cli_json(r, &["query", &contract, "--function", "balance_of", "--arg", who])
                .map(|v| v["rows"][0][0].clone())
        };
        assert_eq!(tokens("somebody")?, 13, "node {i}: {three}");
        assert_eq!(tokens(&faucet_addr)?, 1_000_000 - 13, "node {i}");
        let receipt = cli_json(r, &["receipt", from_p1["hash"].as_str().unwrap_or_default()])?;
        assert_eq!(receipt["merged_by"], merge["hash"], "node {i}");
    }
    for p in net.procs.iter_mut().filter_map(Option::take) {
        p.stop()?;
    }
    Ok(())
}
