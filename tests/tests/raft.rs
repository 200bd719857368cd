//! A chain agreed by Raft (`docs/repositories.md`) from the outside: `aergo-node testnet
//! --consensus raft` files, real `aergo-node run` processes talking libp2p. Three voters: every
//! block is final once applied, a transfer sent to a follower is included, a leader killed with
//! SIGKILL is replaced within 5 s with no final block lost or changed, and restarted it catches up.
//! Five voters split 2 | 3 by network namespaces: the majority goes on, the minority makes nothing
//! final and knows no leader (its agent's health says "no quorum"), and healed, every node
//! converges on the same blocks. Membership under
//! a steady load of transfers: a fourth node follows the voters as a full node (block sync), is
//! added by a voter's `aergo raft add-voter` and joins by a Raft snapshot, a voter is removed and
//! goes on as a full node, and leadership is handed to the new node; no transfer is lost.

mod common;

use aergo_api::{AergoApiClient, RaftView};
use aergo_config::genesis::ConsensusKind;
use aergo_node::testnet::TestnetOptions;
use aergo_primitives::crypto::{KeyFile, Keypair};
use aergo_primitives::types::{Address, Payload, TxBody, ENCODING_VERSION};
use aergo_tests::{cli_json, http_get, promtool_check, wait_for, AgentProcess};
use common::{data_dir, start, SplitNet, Testnet};
use jsonrpsee::http_client::HttpClientBuilder;
use std::time::{Duration, Instant};

/// The bound on electing a new leader after the old one is killed (`docs/repositories.md`).
const NEW_LEADER_WITHIN: Duration = Duration::from_secs(5);

fn raft(net: &Testnet, i: usize) -> Option<RaftView> {
    net.info(i)?.raft
}

fn height(net: &Testnet, i: usize) -> u64 {
    net.info(i).map_or(0, |c| c.height)
}

/// The node the live nodes agree is the leader (it says so itself), with its term.
fn leader(net: &Testnet, live: &[usize]) -> Option<(usize, u64)> {
    let views: Vec<(usize, RaftView)> = live.iter().filter_map(|i| Some((*i, raft(net, *i)?))).collect();
    let (i, lead) = views.iter().find(|(_, v)| v.role == "leader")?;
    let key = hex::encode(node_key(net, *i)?.public().0);
    views.iter().all(|(_, v)| v.leader.as_deref() == Some(key.as_str())).then_some((*i, lead.term))
}

/// The node key of node `i` (under Raft, the key its blocks are signed with).
fn node_key(net: &Testnet, i: usize) -> Option<Keypair> {
    KeyFile::read(&data_dir(&net.nodes[i]).join("node.key")).ok()?.unlock(None).ok()
}

/// A transfer of `amount` from the faucet with `nonce`, hex, for `send_tx`.
fn transfer(net: &Testnet, chain_id: &str, nonce: u64, to: Address, amount: u128) -> anyhow::Result<String> {
    let faucet = KeyFile::read(&net._dir.path().join("net/faucet.key"))?.unlock(None)?;
    let tx = faucet.sign_tx(TxBody {
        version: ENCODING_VERSION,
        chain_id: chain_id.into(),
        branch: aergo_primitives::types::MAIN_BRANCH.into(),
        nonce,
        sender: faucet.public(),
        recipient: to,
        amount,
        fee: 1,
        payload: Payload::Transfer,
    });
    Ok(hex::encode(tx.encode()))
}

/// Sends `tx` to node `via` and waits for its receipt on every node of `on`.
fn send_and_see(net: &Testnet, via: usize, tx: String, on: &[usize]) -> anyhow::Result<()> {
    let sent = net.rt.block_on(net.clients[via].send_tx(tx))?;
    for i in on {
        wait_for(Duration::from_secs(30), &format!("the receipt on node {i}"), || {
            net.rt.block_on(net.clients[*i].get_receipt(sent.hash.to_string(), None)).ok().flatten()
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", net.logs()))?;
    }
    Ok(())
}

fn balance(net: &Testnet, i: usize, who: Address) -> u128 {
    net.rt.block_on(net.clients[i].get_account(who.to_string(), None, None)).map_or(0, |a| a.balance)
}

#[test]
fn three_voters_make_every_block_final_and_replace_a_killed_leader() -> anyhow::Result<()> {
    let mut net = Testnet::with(3, |o| TestnetOptions { consensus: ConsensusKind::Raft, ..o })?;
    let all = [0, 1, 2];
    net.wait_lib(&all, 3, Duration::from_secs(60))?;
    for i in all {
        let info = net.info(i).expect("chain_info");
        assert_eq!(info.consensus, "raft");
        assert_eq!(info.producer_count, 3, "node {i}: three voters");
        // Every block is final once applied: the final height is the head's.
        assert!(info.lib_height >= info.height, "node {i}: {} final of {}", info.lib_height, info.height);
        assert_eq!(raft(&net, i).expect("raft view").voters.len(), 3);
    }
    let (old, term) = wait_for(Duration::from_secs(10), "one leader", || leader(&net, &all))?;

    // A node outside the group that speaks Raft as the leader of a far later term is not heard:
    // the members keep their term and leader.
    let follower = (old + 1) % 3;
    let out = std::process::Command::new(aergo_tests::binary("aergo-node"))
        .args(["net-probe", "--target", &net.nodes[follower].p2p, "--chain-id", "aergo-testnet"])
        .args(["--attack", "raft-hijack"])
        .output()?;
    anyhow::ensure!(out.status.success(), "net-probe failed: {}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_secs(1));
    let view = raft(&net, follower).expect("raft view");
    assert_eq!(view.term, term, "a non-member moved node {follower} to another term: {view:?}");
    assert_eq!(leader(&net, &all), Some((old, term)));

    // A transfer sent to a follower reaches the leader's pool by gossip and every node applies it.
    let to = Address([7; 20]);
    send_and_see(&net, follower, transfer(&net, "aergo-testnet", 0, to, 1_000)?, &all)?;
    for i in all {
        assert_eq!(balance(&net, i, to), 1_000, "node {i}");
    }
    net.assert_final_agree(&all);
    let before = net.lib(0);
    let finals: Vec<Option<String>> = (1..=before).map(|h| net.block_hash(0, h)).collect();

    // kill -9 the leader: the two others elect a new one within the bound.
    net.procs[old].take().expect("the leader's process").kill9();
    let killed = Instant::now();
    let live: Vec<usize> = all.into_iter().filter(|i| *i != old).collect();
    let (new, new_term) = wait_for(NEW_LEADER_WITHIN + Duration::from_secs(5), "a new leader", || {
        leader(&net, &live).filter(|(i, _)| *i != old)
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", net.logs()))?;
    let took = killed.elapsed();
    assert!(took <= NEW_LEADER_WITHIN, "a new leader took {took:?}");
    assert!(new_term > term);
    eprintln!("new leader (node {new}, term {new_term}) {} ms after the kill", took.as_millis());
    // It goes on: blocks become final with two of three, and a transfer is applied.
    let lib = net.lib(new);
    net.wait_lib(&live, lib + 3, Duration::from_secs(30))?;
    send_and_see(&net, live[0], transfer(&net, "aergo-testnet", 1, to, 2_000)?, &live)?;

    // Restarted, the old leader catches up from the log; no final block was lost or changed.
    net.procs[old] = Some(start(&net.nodes[old])?);
    let target = height(&net, new);
    wait_for(Duration::from_secs(60), "the restarted node to catch up", || {
        (height(&net, old) >= target).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", net.logs()))?;
    assert_eq!(balance(&net, old, to), 3_000);
    net.assert_final_agree(&all);
    for i in all {
        for (h, hash) in finals.iter().enumerate() {
            assert_eq!(&net.block_hash(i, h as u64 + 1), hash, "node {i}: final block {} changed", h + 1);
        }
    }
    for p in net.procs.iter_mut().filter_map(Option::take) {
        p.stop()?;
    }
    Ok(())
}

#[test]
fn five_voters_split_two_three_the_majority_goes_on_and_all_converge() -> anyhow::Result<()> {
    let split = SplitNet::new(214)?;
    let half = |i: usize| usize::from(i >= 2);
    let net =
        Testnet::split(&split, 5, half, 27_300, |o| TestnetOptions { consensus: ConsensusKind::Raft, ..o })?;
    let all = [0, 1, 2, 3, 4];
    let (minority, majority) = ([0, 1], [2, 3, 4]);
    net.wait_lib(&all, 3, Duration::from_secs(90))?;
    wait_for(Duration::from_secs(10), "one leader", || leader(&net, &all))?;

    // Cut: the minority cannot commit (two of five); its leader, if it had it, steps down.
    split.set_link(false)?;
    wait_for(Duration::from_secs(10), "a leader on the majority side", || leader(&net, &majority))
        .map_err(|e| anyhow::anyhow!("{e}\n{}", net.logs()))?;
    std::thread::sleep(Duration::from_secs(3));
    let frozen: Vec<u64> = minority.iter().map(|i| net.lib(*i)).collect();
    let majority_from = net.lib(2);
    for _ in 0..6 {
        std::thread::sleep(Duration::from_secs(1));
        for (k, i) in minority.iter().enumerate() {
            assert_eq!(net.lib(*i), frozen[k], "minority node {i} made a block final\n{}", net.logs());
            assert_eq!(height(&net, *i), frozen[k], "minority node {i} applied a block");
        }
    }
    for i in minority {
        let view = raft(&net, i).expect("raft view");
        assert_ne!(view.role, "leader", "minority node {i} still leads");
        assert!(view.leader.is_none() && view.leaderless_since_ms > 0, "node {i}: {view:?}");
    }
    // What an operator sees on a minority box: the agent's health says there is no quorum.
    let agent_dir = net._dir.path().join("agent0");
    let agent = AgentProcess::start(&net.nodes[0].rpc, data_dir(&net.nodes[0]), &agent_dir, &[])?;
    let raft_check = |want: &str| {
        let answer = http_get(&format!("{}/v1/telemetry", agent.url), Some(&agent.token)).ok()?;
        let t: serde_json::Value = serde_json::from_str(&answer.body).ok()?;
        let checks = t["health"]["checks"].as_array()?.clone();
        let raft = checks.into_iter().find(|c| c["name"] == "raft")?;
        (raft["status"] == want && t["chain"]["consensus"] == "raft").then_some(raft)
    };
    let degraded =
        wait_for(Duration::from_secs(20), "the agent to report no quorum", || raft_check("degraded"))
            .map_err(|e| anyhow::anyhow!("{e}\n{}", agent.log()))?;
    assert!(degraded["reason"].as_str().unwrap_or_default().contains("no quorum"), "{degraded}");
    let metrics = http_get(&format!("{}/metrics", agent.url), Some(&agent.token))?;
    assert!(metrics.body.contains("aergo_raft_has_leader 0"), "{}", metrics.body);
    assert!(metrics.body.contains("aergo_raft_voters 5"), "{}", metrics.body);
    promtool_check(&metrics.body)?;
    net.wait_lib(&majority, majority_from + 3, Duration::from_secs(20))?;
    let to = Address([9; 20]);
    send_and_see(&net, 3, transfer(&net, "aergo-testnet", 0, to, 500)?, &majority)?;

    // Heal: the minority takes the majority's log; everyone agrees on every block.
    split.set_link(true)?;
    let target = height(&net, 2);
    wait_for(Duration::from_secs(60), "the minority to catch up", || {
        minority.iter().all(|i| height(&net, *i) >= target).then_some(())
    })
    .map_err(|e| {
        let full: Vec<String> = net
            .procs
            .iter()
            .flatten()
            .take(3)
            .map(|p| p.log().lines().filter(|l| !l.contains("block final")).collect::<Vec<_>>().join("\n"))
            .collect();
        anyhow::anyhow!("{e}\n{}", full.join("\n-----\n"))
    })?;
    wait_for(Duration::from_secs(10), "one leader for all", || leader(&net, &all))?;
    net.assert_final_agree(&all);
    for i in all {
        assert_eq!(balance(&net, i, to), 500, "node {i}");
    }
    wait_for(Duration::from_secs(20), "the agent to see a leader again", || raft_check("ok"))?;
    drop(agent);
    for p in net.procs.into_iter().flatten() {
        p.stop()?;
    }
    Ok(())
}

#[test]
fn membership_changes_under_load_and_a_new_voter_joins_by_snapshot() -> anyhow::Result<()> {
    use aergo_config::genesis::Genesis;
    // Four nodes' files; the genesis names the first three voters: the fourth joins later.
    let mut net = Testnet::with_files(
        4,
        |o| TestnetOptions { consensus: ConsensusKind::Raft, ..o },
        |dir| {
            let path = dir.join("genesis.toml");
            let mut g = Genesis::load(&path)?;
            g.consensus.raft.as_mut().expect("raft").voters.truncate(3);
            std::fs::write(&path, g.to_toml())?;
            Ok(())
        },
        |i| i < 3,
    )?;
    let founders = [0, 1, 2];
    net.wait_lib(&founders, 3, Duration::from_secs(60))?;
    let keys: Vec<String> =
        (0..4).map(|i| hex::encode(node_key(&net, i).expect("node key").public().0)).collect();
    let key_file = |i: usize| data_dir(&net.nodes[i]).join("node.key").display().to_string();

    // A steady load: transfers of 1 to one account through node 1, one every 40 ms.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let so_far = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let to = Address([5; 20]);
    let load = {
        let (stop, so_far, rpc) = (stop.clone(), so_far.clone(), net.nodes[1].rpc.clone());
        let txs: Vec<String> =
            (0..1500).map(|n| transfer(&net, "aergo-testnet", n, to, 1)).collect::<Result<_, _>>()?;
        std::thread::spawn(move || -> anyhow::Result<u64> {
            let rt = tokio::runtime::Runtime::new()?;
            let client = HttpClientBuilder::default().build(&rpc)?;
            let mut sent = 0;
            for tx in txs {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                rt.block_on(client.send_tx(tx))?;
                sent += 1;
                so_far.store(sent, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(40));
            }
            Ok(sent)
        })
    };

    // The fourth node runs, no voter: a full node, it follows the voters' blocks by sync.
    net.procs[3] = Some(start(&net.nodes[3])?);
    wait_for(Duration::from_secs(20), "node 3 to answer", || raft(&net, 3).filter(|v| v.role == "full"))?;
    let target = height(&net, 0);
    wait_for(Duration::from_secs(30), "full node 3 to follow the voters", || {
        (height(&net, 3) >= target).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", net.logs()))?;
    net.assert_final_agree(&[0, 3]);
    let added = cli_json(
        &net.nodes[0].rpc,
        &["raft", "add-voter", "--key", &key_file(0), "--wait", &keys[3], &net.nodes[3].p2p],
    )?;
    assert_eq!(added["receipt"]["status"], "success", "{added}");
    let all = [0, 1, 2, 3];
    wait_for(Duration::from_secs(30), "four voters everywhere, node 3 following", || {
        let views: Vec<RaftView> = all.iter().filter_map(|i| raft(&net, *i)).collect();
        (views.len() == 4 && views.iter().all(|v| v.voters.len() == 4) && views[3].role == "follower")
            .then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", net.logs()))?;
    let target = height(&net, 0);
    wait_for(Duration::from_secs(30), "node 3 to catch up", || (height(&net, 3) >= target).then_some(()))
        .map_err(|e| anyhow::anyhow!("{e}\n{}", net.logs()))?;
    let log = net.procs[3].as_ref().map(|p| p.log()).unwrap_or_default();
    assert!(log.contains("Raft snapshot: "), "node 3 did not join by snapshot:\n{log}");
    net.assert_final_agree(&all);

    // Voter 2 is removed: the others go on with three; it goes on as a full node.
    let removed =
        cli_json(&net.nodes[0].rpc, &["raft", "remove-voter", "--key", &key_file(0), "--wait", &keys[2]])?;
    assert_eq!(removed["receipt"]["status"], "success", "{removed}");
    let rest = [0, 1, 3];
    wait_for(Duration::from_secs(30), "three voters, node 2 out", || {
        let gone = raft(&net, 2).is_some_and(|v| v.role == "full");
        (gone && rest.iter().all(|i| raft(&net, *i).is_some_and(|v| v.voters.len() == 3))).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", net.logs()))?;
    let lib = net.lib(0);
    net.wait_lib(&rest, lib + 3, Duration::from_secs(30))?;

    // Leadership to the new node.
    let moved =
        cli_json(&net.nodes[1].rpc, &["raft", "transfer-leader", "--key", &key_file(1), "--wait", &keys[3]])?;
    assert_eq!(moved["receipt"]["status"], "success", "{moved}");
    wait_for(Duration::from_secs(15), "node 3 to lead", || leader(&net, &rest).filter(|(i, _)| *i == 3))
        .map_err(|e| anyhow::anyhow!("{e}\n{}", net.logs()))?;

    // No transfer of the load was lost. The load runs until it has sent at least 50 (on a busy
    // machine a forwarded send_tx takes longer, and the changes above may be over sooner).
    wait_for(Duration::from_secs(30), "the load to send 50 transfers", || {
        (so_far.load(std::sync::atomic::Ordering::SeqCst) >= 50).then_some(())
    })?;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = load.join().map_err(|_| anyhow::anyhow!("the load thread panicked"))??;
    assert!(sent >= 50, "only {sent} transfers were sent");
    wait_for(Duration::from_secs(30), "every transfer applied", || {
        rest.iter().all(|i| balance(&net, *i, to) == u128::from(sent)).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}: {:?}\n{}", rest.map(|i| balance(&net, i, to)), net.logs()))?;
    net.assert_final_agree(&rest);
    wait_for(Duration::from_secs(30), "the removed voter to follow as a full node", || {
        (balance(&net, 2, to) == u128::from(sent)).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}: {}\n{}", balance(&net, 2, to), net.logs()))?;
    for p in net.procs.iter_mut().filter_map(Option::take) {
        p.stop()?;
    }
    Ok(())
}
