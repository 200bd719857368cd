//! A box joins a chain from its `provision.toml` alone, as first boot does it: `aergo-console
//! provision` writes the node's config from the file (p2p on, a bootstrap peer given by address
//! only, the producer key imported from an encrypted keystore whose passphrase file is then
//! deleted), and the node started from that config finds the bootstrap peer, produces in the
//! imported key's slots and finalizes with it. Bad files are refused with the setting named and
//! change nothing; a genesis that makes another block than `genesis_hash` leaves no chain behind.

use aergo_api::AergoApiClient;
use aergo_config::NodeConfig;
use aergo_node::testnet::{write_testnet, TestnetNode, TestnetOptions};
use aergo_primitives::crypto::KeyFile;
use aergo_tests::{binary, node_command, wait_for, NodeProcess};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PASSPHRASE: &str = "correct horse battery staple";

/// An `nodes`-producer testnet on loopback ports with 1 s slots, written to `out`.
fn testnet(nodes: usize, out: PathBuf) -> TestnetOptions {
    TestnetOptions {
        nodes,
        out,
        hosts: vec![],
        block_interval_ms: 1000,
        chain_id: "aergo-fleet".into(),
        base_port: None,
        voters: None,
        consensus: Default::default(),
    }
}

/// A one-producer testnet in `dir/net` that fills every slot, its config changed by `change`.
fn single_producer(
    dir: &Path,
    change: impl FnOnce(&mut NodeConfig),
) -> anyhow::Result<(TestnetNode, NodeConfig)> {
    let node = write_testnet(&testnet(1, dir.join("net")))?.remove(0);
    let mut config = NodeConfig::load(&node.config)?;
    config.producer.empty_blocks = true;
    change(&mut config);
    std::fs::write(&node.config, config.to_toml()?)?;
    Ok((node, config))
}

/// `aergo-node key export --config CONFIG --out OUT --passphrase-file PASS`.
fn key_export(config: &Path, out: &Path, pass: &Path) -> anyhow::Result<(bool, String, String)> {
    let a = |p: &Path| p.to_str().unwrap_or_default().to_string();
    node_command(&["key", "export", "--config", &a(config), "--out", &a(out), "--passphrase-file", &a(pass)])
}

/// `aergo-node key import --data-dir DIR --in FILE --passphrase-file PASS`.
fn key_import(data_dir: &Path, input: &Path, pass: &Path) -> anyhow::Result<(bool, String, String)> {
    let a = |p: &Path| p.to_str().unwrap_or_default().to_string();
    node_command(&[
        "key",
        "import",
        "--data-dir",
        &a(data_dir),
        "--in",
        &a(input),
        "--passphrase-file",
        &a(pass),
    ])
}

/// A path as a command-line argument.
fn arg(p: &Path) -> String {
    p.to_str().unwrap_or_default().to_string()
}

/// [`single_producer`] started, with an RPC client of it.
fn running_producer(dir: &Path) -> anyhow::Result<(TestnetNode, NodeConfig, NodeProcess, HttpClient)> {
    let (node, config) = single_producer(dir, |_| {})?;
    let process = start(&node)?;
    let client = HttpClientBuilder::default().build(&process.rpc)?;
    Ok((node, config, process, client))
}

/// A node config in `data_dir` that joins the network through `bootstrap`, on loopback ports.
fn peer_config(mut config: NodeConfig, bootstrap: &str) -> anyhow::Result<NodeConfig> {
    config.rpc.listen = "127.0.0.1:0".parse()?;
    config.p2p.enabled = true;
    config.p2p.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    config.p2p.bootstrap = vec![bootstrap.to_string()];
    Ok(config)
}

/// Writes `config` as `DIR/config.toml` (DIR its data directory) and runs a node on it.
fn run_in_data_dir(config: &NodeConfig) -> anyhow::Result<NodeProcess> {
    let file = config.data_dir.join("config.toml");
    std::fs::create_dir_all(&config.data_dir)?;
    std::fs::write(&file, config.to_toml()?)?;
    NodeProcess::start(&config.data_dir, &["run", "--config", file.to_str().unwrap_or_default()])
}

fn start(n: &TestnetNode) -> anyhow::Result<NodeProcess> {
    let dir = n.config.parent().expect("node directory");
    NodeProcess::start(dir, &["run", "--config", n.config.to_str().unwrap_or_default()])
}

/// `aergo-console provision FILE --root ROOT`: (success, stdout + stderr).
fn provision(root: &Path, file: &Path) -> anyhow::Result<(bool, String)> {
    let out = Command::new(binary("aergo-console"))
        .arg("--root")
        .arg(root)
        .arg("provision")
        .arg(file)
        .env("NO_COLOR", "1")
        .output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// A path the box's config names (`/var/lib/aergo/…`), under the test's root.
fn on_box(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// An address without its `/p2p/<peer id>`: what a provider writes before the box has an id.
fn without_peer_id(addr: &str) -> String {
    addr.split("/p2p/").next().unwrap_or(addr).to_string()
}

#[test]
fn a_box_provisioned_with_a_keystore_and_a_bootstrap_address_joins_and_produces() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let opts = testnet(2, dir.path().join("net"));
    let nodes = write_testnet(&opts)?;
    let mut first = NodeConfig::load(&nodes[0].config)?;
    first.producer.empty_blocks = true;
    std::fs::write(&nodes[0].config, first.to_toml()?)?;
    let p0 = start(&nodes[0])?;
    let rt = tokio::runtime::Runtime::new()?;
    let c0 = HttpClientBuilder::default().build(&nodes[0].rpc)?;
    let genesis_hash = rt.block_on(c0.chain_info(None))?.genesis_hash.to_string();

    // The second producer's key reaches the box as an encrypted keystore with its passphrase file.
    let second = NodeConfig::load(&nodes[1].config)?;
    let key = KeyFile::read(&second.key_path())?.unlock(None)?;
    let root = dir.path().join("box");
    let boot = root.join("boot");
    std::fs::create_dir_all(&boot)?;
    KeyFile::write_encrypted_with(&boot.join("producer.keystore"), &key, PASSPHRASE, 4)?;
    std::fs::copy(second.genesis_path(), boot.join("genesis.toml"))?;
    let bootstrap = without_peer_id(&nodes[0].p2p);
    let provision_toml = |passphrase_file: &str, bootstrap: &str| {
        format!(
            r#"hostname = "box-2"
[node]
role = "producer"
chain = "genesis.toml"
genesis_hash = "{genesis_hash}"
rpc = "loopback"
[p2p]
listen = "/ip4/127.0.0.1/tcp/0"
bootstrap = ["{bootstrap}"]
[producer]
keystore = "producer.keystore"
passphrase_file = "{passphrase_file}"
[time]
servers = ["10.77.0.1", "ntp.example.net"]
[agent]
token = "{}"
"#,
            "ab".repeat(32)
        )
    };
    let file = boot.join("provision.toml");

    // A bootstrap address that is not a multiaddr: refused, the setting named, nothing written.
    std::fs::write(&file, provision_toml("producer.pass", "127.0.0.1:7846"))?;
    let (ok, text) = provision(&root, &file)?;
    assert!(!ok && text.contains("p2p.bootstrap[0]") && text.contains("is not a multiaddr"), "{text}");
    // A wrong passphrase: refused, and the passphrase file stays for another try.
    std::fs::write(boot.join("producer.pass"), "not the passphrase\n")?;
    std::fs::write(&file, provision_toml("producer.pass", &bootstrap))?;
    let (ok, text) = provision(&root, &file)?;
    assert!(!ok && text.contains("producer.keystore") && text.contains("wrong password"), "{text}");
    assert!(boot.join("producer.pass").exists(), "a failed import deleted the passphrase file");
    assert!(!root.join("etc/aergo/settings.toml").exists(), "a failed provisioning applied settings");

    // The right one: imported, the passphrase file gone from the boot partition, p2p on.
    std::fs::write(boot.join("producer.pass"), format!("{PASSPHRASE}\n"))?;
    let (ok, text) = provision(&root, &file)?;
    assert!(ok, "{text}");
    assert!(!boot.join("producer.pass").exists(), "the passphrase file is still on the boot partition");
    let mut config = NodeConfig::load(&root.join("etc/aergo/node.toml"))?;
    assert!(config.p2p.enabled);
    assert_eq!(config.p2p.bootstrap, [bootstrap]);
    assert_eq!(config.genesis_hash.as_deref(), Some(genesis_hash.as_str()));
    // A producer on a network produces only with a synchronized clock; chrony gets the servers.
    assert!(config.producer.require_clock_sync);
    let servers = std::fs::read_to_string(root.join("etc/aergo/ntp-servers"))?;
    assert_eq!(servers, "10.77.0.1\nntp.example.net\n");
    let key_file = on_box(&root, &config.producer.key_file);
    assert_eq!(KeyFile::read(&key_file)?.address(), key.address());
    assert_eq!(
        std::fs::metadata(&key_file).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))?
            & 0o777,
        0o600
    );

    // The box's node, from that config (its box paths under the test's root).
    config.data_dir = on_box(&root, &config.data_dir);
    config.producer.key_file = key_file;
    config.rpc.listen = "127.0.0.1:0".parse()?;
    // Nothing synchronizes this machine's clock (the clock gate has its own test below).
    config.producer.require_clock_sync = false;
    let box_config = root.join("node-under-test.toml");
    std::fs::write(&box_config, config.to_toml()?)?;
    let p1 =
        NodeProcess::start(&config.data_dir, &["run", "--config", box_config.to_str().unwrap_or_default()])?;
    let c1 = HttpClientBuilder::default().build(&p1.rpc)?;
    let lib =
        |c: &jsonrpsee::http_client::HttpClient| rt.block_on(c.chain_info(None)).map_or(0, |i| i.lib_height);
    // Two producers: a block is final only when both build on it, so a rising LIB on both nodes
    // means the box found its bootstrap peer by address and produces in the imported key's slots.
    wait_for(Duration::from_secs(60), "LIB 5 on both nodes", || {
        (lib(&c0) >= 5 && lib(&c1) >= 5).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\nbootstrap node:\n{}\nbox:\n{}", p0.log(), p1.log()))?;
    let log = p1.log();
    assert!(log.contains("connected to bootstrap peer"), "{log}");
    // What the console's Peers screen and the agent show: the bootstrap address, the peer id
    // learnt on connecting, connected.
    let info = rt.block_on(c1.node_info())?;
    let first_peer = nodes[0].peer_id.clone();
    assert_eq!(info.bootstrap.len(), 1, "{:?}", info.bootstrap);
    let b = &info.bootstrap[0];
    assert!(b.connected && b.peer_id.as_deref() == Some(first_peer.as_str()), "{b:?}");
    assert!(!info.p2p_listen.is_empty());
    let final_height = lib(&c0).min(lib(&c1));
    let hash = |c: &jsonrpsee::http_client::HttpClient| {
        rt.block_on(c.get_block(Some(final_height), None, Some(false), None)).ok().flatten().map(|b| b.hash)
    };
    assert_eq!(hash(&c0), hash(&c1), "final block {final_height} differs");
    let produced_by_box = (1..=final_height).any(|h| {
        rt.block_on(c0.get_block(Some(h), None, Some(false), None))
            .ok()
            .flatten()
            .is_some_and(|b| b.header.producer == key.address())
    });
    assert!(produced_by_box, "no final block was produced with the imported key");
    p1.stop()?;
    p0.stop()?;
    Ok(())
}

#[test]
fn a_genesis_hash_that_does_not_match_leaves_no_chain_behind() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let opts = testnet(1, dir.path().join("net"));
    let node = write_testnet(&opts)?.remove(0);
    let mut config = NodeConfig::load(&node.config)?;
    config.genesis_hash = Some("00".repeat(32));
    config.rpc.listen = "127.0.0.1:0".parse()?;
    std::fs::write(&node.config, config.to_toml()?)?;
    let (ok, out, err) = node_command(&["run", "--config", node.config.to_str().unwrap_or_default()])?;
    assert!(!ok, "the node started on another genesis: {out}{err}");
    assert!(err.contains("makes genesis block") && err.contains(&"00".repeat(32)), "{err}");
    let data = &config.data_dir;
    assert!(
        !data.join("state").exists() && !data.join("blocks").exists(),
        "a chain was left behind in {}",
        data.display()
    );
    Ok(())
}

/// `producer.require_clock_sync`: the node produces only while the kernel says the clock is
/// synchronized. The test asks the kernel itself and checks the node does what that state calls
/// for (on this machine nothing synchronizes the clock: the node must refuse, and say why).
#[test]
fn a_producer_whose_clock_is_not_synchronized_does_not_produce_and_says_why() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (node, _) = single_producer(dir.path(), |c| c.producer.require_clock_sync = true)?;
    let synchronized = aergo_primitives::clock::kernel_clock().is_some_and(|k| k.synchronized);
    let p = start(&node)?;
    let rt = tokio::runtime::Runtime::new()?;
    let client = HttpClientBuilder::default().build(&p.rpc)?;
    let height = || rt.block_on(client.chain_info(None)).map_or(0, |i| i.height);
    if synchronized {
        wait_for(Duration::from_secs(20), "a block from a synchronized producer", || {
            (height() >= 2).then_some(())
        })?;
        assert_eq!(rt.block_on(client.node_metrics())?.producer_blocked, None);
    } else {
        let metrics = || rt.block_on(client.node_metrics()).ok();
        let blocked =
            wait_for(Duration::from_secs(20), "the producer to say why it does not produce", || {
                // (First it listens a few slots for another signer of its key: doppelganger protection.)
                metrics().and_then(|m| m.producer_blocked).filter(|b| b.contains("not synchronized"))
            })?;
        assert!(blocked.contains("the system clock is not synchronized"), "{blocked}");
        // Several slots pass: still no block.
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(height(), 0, "a producer with an unsynchronized clock produced");
        assert!(metrics().is_some_and(|m| m.slots_missed_total >= 2), "its slots are not counted as missed");
        let log = p.log();
        assert!(log.contains("not producing") && log.contains("not synchronized"), "{log}");
    }
    p.stop()?;
    Ok(())
}

/// `aergo-node key export|import`: a producer key moves to another node with the last slot it
/// signed, and the new node signs nothing at or below it. Export refuses a running node (its record
/// would be stale at once); import refuses a wrong passphrase and another chain's file.
#[test]
fn a_producer_key_moves_with_its_record_and_never_signs_a_slot_twice() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (node, config) = single_producer(dir.path(), |_| {})?;
    let pass = dir.path().join("pass");
    std::fs::write(&pass, format!("{PASSPHRASE}\n"))?;
    let out = dir.path().join("producer-key.json");
    let export = |config: &Path| key_export(config, &out, &pass);

    let p = start(&node)?;
    let rt = tokio::runtime::Runtime::new()?;
    let client = HttpClientBuilder::default().build(&p.rpc)?;
    wait_for(Duration::from_secs(20), "3 blocks", || {
        rt.block_on(client.chain_info(None)).ok().filter(|i| i.height >= 3).map(|_| ())
    })?;
    let (ok, _, err) = export(&node.config)?;
    assert!(!ok && err.contains("the node is running"), "export of a running node: {err}");
    p.stop()?;
    let (ok, stdout, err) = export(&node.config)?;
    assert!(ok, "{err}");
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    assert_eq!(file["format"], "aergo-producer-key/1");
    let signed = file["slashing_protection"]["last_signed_slot"].as_u64().unwrap_or_default();
    assert!(signed > 0 && stdout.contains(&format!("last signed slot {signed}")), "{stdout}");
    assert_eq!(file["keystore"]["kind"], "encrypted", "{}", file["keystore"]);
    assert!(
        !file.to_string().contains(&hex_secret(&config)?),
        "the exported file holds the secret key in clear"
    );

    // The second node: the same chain, no key yet. The record is raised a few slots into the future
    // (as if the key had signed them on the first box): the node must wait them out.
    let second = dir.path().join("second");
    let (ok, _, err) =
        node_command(&["init", "--genesis", &arg(&config.genesis_path()), "--data-dir", &arg(&second)])?;
    assert!(ok, "{err}");
    let genesis = aergo_config::genesis::Genesis::load(&config.genesis_path())?;
    let interval = genesis.consensus.block_interval_ms;
    let slot_now = (aergo_primitives::clock::now_ms() - genesis.timestamp_ms) / interval;
    let raised = slot_now + 6;
    let mut edited = file.clone();
    edited["slashing_protection"]["last_signed_slot"] = raised.into();
    let moved = dir.path().join("moved.json");
    std::fs::write(&moved, serde_json::to_vec(&edited)?)?;
    let import = |pass: &Path| key_import(&second, &moved, pass);
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not the passphrase\n")?;
    let (ok, _, err) = import(&wrong)?;
    assert!(!ok && err.contains("wrong password"), "{err}");
    let (ok, stdout, err) = import(&pass)?;
    assert!(ok, "{err}");
    assert!(stdout.contains(&format!("no slot at or below {raised}")), "{stdout}");
    assert_eq!(std::fs::read_to_string(second.join("last_signed_slot"))?.trim(), raised.to_string());

    // Another chain's node refuses the file.
    let other = write_testnet(&TestnetOptions {
        chain_id: "another".into(),
        ..testnet(1, dir.path().join("other"))
    })?;
    let (ok, _, err) = node_command(&[
        "init",
        "--genesis",
        &arg(&NodeConfig::load(&other[0].config)?.genesis_path()),
        "--data-dir",
        &arg(&dir.path().join("third")),
    ])?;
    assert!(ok, "{err}");
    let (ok, _, err) = node_command(&[
        "key",
        "import",
        "--data-dir",
        &arg(&dir.path().join("third")),
        "--in",
        &arg(&moved),
        "--passphrase-file",
        &arg(&pass),
    ])?;
    assert!(
        !ok && err.contains("the file is for chain aergo-fleet") && err.contains("this node is on another"),
        "{err}"
    );

    // Run the second node as the producer: its first block is in a slot above the record.
    let mut second_config = NodeConfig::load(&second.join("config.toml"))?;
    second_config.producer.enabled = true;
    second_config.producer.empty_blocks = true;
    second_config.rpc.listen = "127.0.0.1:0".parse()?;
    std::fs::write(second.join("config.toml"), second_config.to_toml()?)?;
    let p2 = NodeProcess::start(&second, &["run", "--config", &arg(&second.join("config.toml"))])?;
    let c2 = HttpClientBuilder::default().build(&p2.rpc)?;
    let first = wait_for(Duration::from_secs(30), "the second node's first block", || {
        rt.block_on(c2.get_block(Some(1), None, Some(false), None)).ok().flatten()
    })?;
    let first_slot = (first.header.timestamp_ms - genesis.timestamp_ms) / interval;
    assert!(first_slot > raised, "signed slot {first_slot}, at or below the imported record {raised}");
    p2.stop()?;
    Ok(())
}

/// The producer key's secret in hex, to check it never appears in clear in an export.
fn hex_secret(config: &NodeConfig) -> anyhow::Result<String> {
    let key = KeyFile::read(&config.key_path())?.unlock(None)?;
    Ok(hex::encode(key.secret_bytes()))
}

/// Doppelganger protection: a producer key started on a second node while the first still signs
/// with it. The second listens before producing, sees blocks of its key that it did not sign,
/// refuses to produce and says why; the first goes on and no slot is signed twice. Once the first
/// is stopped and its key exported with its record, the second imports it, restarts and takes
/// over, signing only slots above the record.
#[test]
fn a_key_in_use_elsewhere_is_refused_and_taken_over_only_with_its_record() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (first, config, pa, ca) = running_producer(dir.path())?;
    let rt = tokio::runtime::Runtime::new()?;
    wait_for(Duration::from_secs(20), "2 blocks on the first node", || {
        rt.block_on(ca.chain_info(None)).ok().filter(|i| i.height >= 2).map(|_| ())
    })?;

    // The second node: the same chain and the same key (copied, without its record), on the network.
    let second = dir.path().join("second");
    let (ok, _, err) =
        node_command(&["init", "--genesis", &arg(&config.genesis_path()), "--data-dir", &arg(&second)])?;
    assert!(ok, "{err}");
    std::fs::copy(config.key_path(), second.join("producer.key"))?;
    let mut sc = peer_config(NodeConfig::load(&second.join("config.toml"))?, &first.p2p)?;
    sc.data_dir = second.clone();
    sc.producer.enabled = true;
    sc.producer.empty_blocks = true;
    sc.producer.key_file = "producer.key".into();
    let pb = run_in_data_dir(&sc)?;
    let cb = HttpClientBuilder::default().build(&pb.rpc)?;
    let blocked =
        wait_for(Duration::from_secs(30), "the second node to see its key signing elsewhere", || {
            rt.block_on(cb.node_metrics())
                .ok()
                .and_then(|m| m.producer_blocked)
                .filter(|b| b.contains("doppelganger:"))
        })
        .map_err(|e| anyhow::anyhow!("{e}\nsecond:\n{}", pb.log()))?;
    assert!(blocked.contains("another box signs with this producer key"), "{blocked}");
    // It keeps following the chain without producing; the first goes on; nothing signed twice.
    let height_a = rt.block_on(ca.chain_info(None))?.height;
    wait_for(Duration::from_secs(20), "the first node to go on", || {
        rt.block_on(ca.chain_info(None)).ok().filter(|i| i.height >= height_a + 3).map(|_| ())
    })
    .map_err(|e| anyhow::anyhow!("{e}\nfirst:\n{}\nsecond:\n{}", pa.log(), pb.log()))?;
    let mb = rt.block_on(cb.node_metrics())?;
    assert_eq!(mb.blocks_produced_total, 0, "the doppelganger produced");
    assert_eq!(mb.equivocations_total, 0);
    assert_eq!(rt.block_on(ca.node_metrics())?.equivocations_total, 0);
    let log = pb.log();
    assert!(log.contains("production stopped for good"), "{log}");

    // The first box is shut down; its key moves with its record; the second takes over.
    pa.stop()?;
    pb.stop()?;
    let pass = dir.path().join("pass");
    std::fs::write(&pass, format!("{PASSPHRASE}\n"))?;
    let moved = dir.path().join("moved.json");
    let (ok, _, err) = key_export(&first.config, &moved, &pass)?;
    assert!(ok, "{err}");
    let (ok, _, err) = key_import(&second, &moved, &pass)?;
    assert!(ok, "{err}");
    let record: u64 = std::fs::read_to_string(second.join("last_signed_slot"))?.trim().parse()?;
    let pb = NodeProcess::start(&second, &["run", "--config", &arg(&second.join("config.toml"))])?;
    let cb = HttpClientBuilder::default().build(&pb.rpc)?;
    let before = rt.block_on(cb.chain_info(None))?.height;
    let genesis = aergo_config::genesis::Genesis::load(&config.genesis_path())?;
    let block = wait_for(Duration::from_secs(30), "a block from the second node", || {
        rt.block_on(cb.get_block(Some(before + 1), None, Some(false), None)).ok().flatten()
    })
    .map_err(|e| anyhow::anyhow!("{e}\nsecond:\n{}", pb.log()))?;
    let slot = (block.header.timestamp_ms - genesis.timestamp_ms) / genesis.consensus.block_interval_ms;
    assert!(slot > record, "the second node signed slot {slot}, at or below the record {record}");
    assert_eq!(rt.block_on(cb.node_metrics())?.producer_blocked, None);
    pb.stop()?;
    Ok(())
}

/// A new node starts from a snapshot instead of replaying the chain: the producer's chain (with
/// transfers) exported at its final height by `aergo-node snapshot export`, imported into a new
/// data directory by `snapshot import`, and the node started there as a follower syncs the blocks
/// above the snapshot from the producer over p2p, holds the same state and blocks, and says that
/// the history below is not on it. A damaged snapshot and a directory that holds a chain are
/// refused and change nothing. A third node started on an empty directory fetches the snapshot
/// from its bootstrap peer over p2p by itself.
#[test]
fn a_node_started_from_a_snapshot_syncs_the_rest_from_its_peer() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (node, config, p, client) = running_producer(dir.path())?;
    let rt = tokio::runtime::Runtime::new()?;
    let bob = aergo_primitives::crypto::Keypair::from_seed("bob").address().to_string();
    for amount in ["1000", "2000", "3000"] {
        let sent = aergo_tests::cli_json(
            &p.rpc,
            &[
                "send",
                "--key",
                &arg(&config.key_path()),
                "--to",
                &bob,
                "--amount",
                amount,
                "--fee",
                "1",
                "--wait",
            ],
        )?;
        assert_eq!(sent["receipt"]["status"], "success", "{sent}");
    }
    wait_for(Duration::from_secs(30), "10 blocks", || {
        rt.block_on(client.chain_info(None)).ok().filter(|i| i.lib_height >= 10).map(|_| ())
    })?;
    p.stop()?;

    let snapshot = dir.path().join("chain.snapshot");
    let (ok, stdout, err) =
        node_command(&["snapshot", "export", "--config", &arg(&node.config), "--out", &arg(&snapshot)])?;
    assert!(ok, "{err}");
    let height: u64 = stdout
        .split("snapshot at height ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|h| h.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no height in {stdout:?}"))?;
    assert!(height >= 10, "{stdout}");

    // Refusals first: a damaged file, a directory that holds a chain.
    let second = dir.path().join("second");
    let genesis = arg(&config.genesis_path());
    let import = |file: &Path, data_dir: &Path| {
        node_command(&[
            "snapshot",
            "import",
            "--in",
            &arg(file),
            "--genesis",
            &genesis,
            "--data-dir",
            &arg(data_dir),
        ])
    };
    let mut bytes = std::fs::read(&snapshot)?;
    let at = bytes.len() - 100;
    bytes[at] ^= 0x40;
    let damaged = dir.path().join("damaged.snapshot");
    std::fs::write(&damaged, &bytes)?;
    let (ok, _, err) = import(&damaged, &second)?;
    assert!(!ok && err.contains("snapshot frame") && err.contains("damaged"), "{err}");
    assert!(!second.join("state").exists() && !second.join(".importing").exists());
    let (ok, _, err) = import(&snapshot, &config.data_dir)?;
    assert!(!ok && err.contains("is not empty"), "{err}");

    let (ok, stdout, err) = import(&snapshot, &second)?;
    assert!(ok, "{err}");
    assert!(stdout.contains(&format!("imported height {height}")), "{stdout}");
    let (ok, _, err) = node_command(&["verify", "--data-dir", &arg(&second)])?;
    assert!(!ok && err.contains(&format!("snapshot at {height}")), "{err}");

    // The producer goes on; the new node follows it over p2p from the snapshot's height.
    let p = start(&node)?;
    let f = run_in_data_dir(&peer_config(NodeConfig::load(&second.join("config.toml"))?, &node.p2p)?)?;
    let fc = HttpClientBuilder::default().build(&f.rpc)?;
    let target = height + 5;
    wait_for(Duration::from_secs(60), "the follower past the snapshot", || {
        rt.block_on(fc.chain_info(None)).ok().filter(|i| i.height >= target).map(|_| ())
    })?;
    for h in [height, height + 1, target] {
        let mine = rt.block_on(fc.get_block(Some(h), None, Some(false), None))?.map(|b| b.hash);
        let theirs = rt.block_on(client.get_block(Some(h), None, Some(false), None))?.map(|b| b.hash);
        assert!(mine.is_some() && mine == theirs, "block {h}: {mine:?} vs {theirs:?}");
    }
    let at_target =
        |c: &jsonrpsee::http_client::HttpClient| rt.block_on(c.get_account(bob.clone(), Some(target), None));
    assert_eq!(at_target(&fc)?.balance, 6000);
    assert_eq!(at_target(&client)?.balance, 6000);
    let below = rt.block_on(fc.get_account(bob.clone(), Some(height - 1), None)).unwrap_err().to_string();
    assert!(below.contains(&format!("history before height {height} is not on this node")), "{below}");
    let below = rt.block_on(fc.get_block(Some(1), None, Some(false), None)).unwrap_err().to_string();
    assert!(below.contains("started from a snapshot"), "{below}");

    // A third node starts with an empty data directory and the producer as its bootstrap peer: the
    // chain is longer than its `snapshot_after_blocks`, so it takes a snapshot over p2p (page by
    // page, each checked) and syncs on from there.
    let third = dir.path().join("third");
    let empty =
        NodeConfig { data_dir: third.clone(), genesis: config.genesis_path(), ..NodeConfig::default() };
    let mut empty = peer_config(empty, &node.p2p)?;
    empty.p2p.snapshot_after_blocks = 5;
    let t = run_in_data_dir(&empty)?;
    let tc = HttpClientBuilder::default().build(&t.rpc)?;
    let head = rt.block_on(client.chain_info(None))?.height;
    wait_for(Duration::from_secs(60), "the third node at the producer's height", || {
        rt.block_on(tc.chain_info(None)).ok().filter(|i| i.height >= head).map(|_| ())
    })?;
    let log = t.log();
    assert!(log.contains("snapshot taken from a peer"), "{log}");
    let mine = rt.block_on(tc.get_block(Some(head), None, Some(false), None))?.map(|b| b.hash);
    let theirs = rt.block_on(client.get_block(Some(head), None, Some(false), None))?.map(|b| b.hash);
    assert!(mine.is_some() && mine == theirs);
    assert_eq!(rt.block_on(tc.get_account(bob.clone(), Some(head), None))?.balance, 6000);
    let below = rt.block_on(tc.get_block(Some(1), None, Some(false), None)).unwrap_err().to_string();
    assert!(below.contains("started from a snapshot"), "{below}");
    t.stop()?;
    f.stop()?;
    p.stop()?;
    Ok(())
}

/// A node given only the genesis hash (`genesis_from_peers`, what `chain = "peer"` provisions) takes
/// the genesis file from its bootstrap peer, checks that it makes that block, writes it and syncs;
/// given a hash no peer is on, it waits and says so, and writes nothing.
#[test]
fn a_node_given_only_the_genesis_hash_takes_the_genesis_from_its_peer() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (node, config, p, client) = running_producer(dir.path())?;
    let rt = tokio::runtime::Runtime::new()?;
    let genesis_hash = rt.block_on(client.chain_info(None))?.genesis_hash.to_string();
    let follower = |name: &str, hash: String| {
        let data_dir = dir.path().join(name);
        let c = NodeConfig {
            data_dir,
            genesis_hash: Some(hash),
            genesis_from_peers: true,
            ..NodeConfig::default()
        };
        peer_config(c, &node.p2p)
    };

    let c = follower("follower", genesis_hash)?;
    let data = c.data_dir.clone();
    let f = run_in_data_dir(&c)?;
    let fc = HttpClientBuilder::default().build(&f.rpc)?;
    wait_for(Duration::from_secs(30), "the follower at height 3", || {
        rt.block_on(fc.chain_info(None)).ok().filter(|i| i.height >= 3).map(|_| ())
    })?;
    let taken = aergo_config::genesis::Genesis::load(&data.join("genesis.toml"))?;
    assert_eq!(taken, aergo_config::genesis::Genesis::load(&config.genesis_path())?);
    assert!(f.log().contains("genesis taken from a peer"), "{}", f.log());
    f.stop()?;

    // A hash no peer is on: the node waits for it, says why, and writes no genesis and no chain.
    let c = follower("wrong", "ab".repeat(32))?;
    let wrong = c.data_dir.clone();
    std::fs::create_dir_all(&wrong)?;
    std::fs::write(wrong.join("config.toml"), c.to_toml()?)?;
    let log = wrong.join("node.log");
    let mut child = Command::new(binary("aergo-node"))
        .args(["run", "--config", &arg(&wrong.join("config.toml"))])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let waited = wait_for(Duration::from_secs(30), "the node to say it waits for the genesis", || {
        std::fs::read_to_string(&log).ok().filter(|t| t.contains("no genesis from the peers yet")).map(|_| ())
    });
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log)?;
    waited?;
    assert!(text.contains(&format!("no bootstrap peer on genesis {}", "ab".repeat(32))), "{text}");
    assert!(!wrong.join("genesis.toml").exists() && !wrong.join("state").exists());
    p.stop()?;
    Ok(())
}

/// `aergo --rpc RPC --json ARGS…` with the box's keys directory: (exit code, stdout or stderr).
fn cli_on_box(keys_dir: &Path, rpc: &str, args: &[&str]) -> anyhow::Result<(bool, String)> {
    let out = Command::new(aergo_tests::binary("aergo"))
        .arg("--rpc")
        .arg(rpc)
        .arg("--json")
        .args(args)
        .env("AERGO_KEYS_DIR", keys_dir)
        .env_remove("AERGO_MEMBER_KEY")
        .output()?;
    let text = if out.status.success() { &out.stdout } else { &out.stderr };
    Ok((out.status.success(), String::from_utf8_lossy(text).into_owned()))
}

/// A box provisioned to host a private Raft repository (`docs/repositories.md`, "Provisioning a
/// box for a repository"): its `provision.toml` names the repository (genesis on the boot
/// partition, its own p2p port, the other voter's address), the box's identity key (a voter of
/// the genesis) and a member key, each from an encrypted keystore. Started from what
/// provisioning wrote, the box's node hosts the repository and agrees on its blocks with the
/// other voter (two voters: no block is final without both); the CLI on the box signs its
/// requests with the provisioned member key without being told; a transfer sent to the box is
/// applied on both.
#[test]
fn a_box_provisioned_for_a_private_raft_repository_votes_in_it() -> anyhow::Result<()> {
    use aergo_config::genesis::ConsensusKind;
    let dir = tempfile::tempdir()?;
    let path = |p: &Path| p.to_str().unwrap_or_default().to_string();
    let mut opts = testnet(2, dir.path().join("acme"));
    opts.chain_id = "acme-chain".into();
    opts.consensus = ConsensusKind::Raft;
    let voters = write_testnet(&opts)?;
    let admin_file = opts.out.join("faucet.key");
    let admin = KeyFile::read(&admin_file)?.unlock(None)?;
    let genesis_path = opts.out.join("genesis.toml");
    let mut genesis = std::fs::read_to_string(&genesis_path)?;
    genesis.push_str(&format!(
        "\n[access]\nprivate = true\n\n[[access.members]]\naddress = \"{}\"\nrole = \"admin\"\n",
        admin.address()
    ));
    std::fs::write(&genesis_path, genesis)?;
    let listen = |i: usize| -> anyhow::Result<String> {
        Ok(NodeConfig::load(&voters[i].config)?.p2p.listen[0].clone())
    };
    let (listen_a, listen_b) = (listen(0)?, listen(1)?);

    // Box A: a --dev node hosting the repository as the first voter.
    let a_dir = dir.path().join("a");
    std::fs::create_dir_all(&a_dir)?;
    std::fs::copy(opts.out.join("node0/node.key"), a_dir.join("node.key"))?;
    NodeProcess::start_dev(&a_dir, &[])?.stop()?;
    let a_settings = dir.path().join("a-repo.toml");
    std::fs::write(
        &a_settings,
        format!("[p2p]\nenabled = true\nlisten = [\"{listen_a}\"]\nbootstrap = [\"{listen_b}\"]\n"),
    )?;
    aergo_tests::repo_add_offline("acme", &genesis_path, Some(&a_settings), &a_dir)?;
    let box_a = NodeProcess::start_dev(&a_dir, &[])?;

    // The box: its boot partition holds the provision file, the repository's genesis and the
    // keystores of its identity (the second voter's key) and of the admin member.
    let root = dir.path().join("box");
    let boot = root.join("boot");
    std::fs::create_dir_all(&boot)?;
    std::fs::copy(&genesis_path, boot.join("acme-genesis.toml"))?;
    let identity = KeyFile::read(&opts.out.join("node1/node.key"))?.unlock(None)?;
    KeyFile::write_encrypted_with(&boot.join("node.keystore"), &identity, PASSPHRASE, 4)?;
    KeyFile::write_encrypted_with(&boot.join("acme-member.keystore"), &admin, PASSPHRASE, 4)?;
    std::fs::write(boot.join("node.pass"), format!("{PASSPHRASE}\n"))?;
    std::fs::write(boot.join("acme-member.pass"), format!("{PASSPHRASE}\n"))?;
    let provision_toml = |repo_listen: &str| {
        format!(
            r#"hostname = "box-acme"
[node]
role = "producer"
chain = "devnet"
rpc = "loopback"
[identity]
keystore = "node.keystore"
passphrase_file = "node.pass"
[[repositories]]
name = "acme"
genesis = "acme-genesis.toml"
member_keystore = "acme-member.keystore"
member_passphrase_file = "acme-member.pass"
[repositories.p2p]
listen = "{repo_listen}"
bootstrap = ["{listen_a}"]
"#
        )
    };
    let file = boot.join("provision.toml");
    // A listen address that is not a multiaddr: refused naming the setting, nothing written.
    std::fs::write(&file, provision_toml("127.0.0.1:7850"))?;
    let (ok, text) = provision(&root, &file)?;
    assert!(!ok && text.contains("repositories[0].p2p.listen"), "{text}");
    assert!(!root.join("var").exists() && boot.join("node.pass").exists(), "a refused file wrote something");
    std::fs::write(&file, provision_toml(&listen_b))?;
    let (ok, text) = provision(&root, &file)?;
    assert!(ok, "{text}");
    assert!(!boot.join("node.pass").exists() && !boot.join("acme-member.pass").exists());

    // The box's node, from the config provisioning wrote (its box paths under the test's root).
    let mut config = NodeConfig::load(&root.join("etc/aergo/node.toml"))?;
    config.data_dir = on_box(&root, &config.data_dir);
    config.producer.key_file = on_box(&root, &config.producer.key_file);
    config.rpc.listen = "127.0.0.1:0".parse()?;
    let hosted = std::fs::read_to_string(config.data_dir.join("repos/hosted"))?;
    assert_eq!(hosted, "acme\n");
    let box_config = root.join("node-under-test.toml");
    std::fs::write(&box_config, config.to_toml()?)?;
    let box_b = NodeProcess::start(&config.data_dir, &["run", "--config", &path(&box_config)])?;
    let acme_on = |rpc: &str| -> Option<serde_json::Value> {
        aergo_tests::cli_json(rpc, &["repo", "list"])
            .ok()?
            .as_array()?
            .iter()
            .find(|r| r["name"] == "acme")
            .cloned()
    };
    // Two voters: a block is final only when both hold it, so a height past 3 on both means the
    // provisioned box votes with its imported identity.
    wait_for(Duration::from_secs(60), "the repository's blocks on both boxes", || {
        let (a, b) = (acme_on(&box_a.rpc)?, acme_on(&box_b.rpc)?);
        (a["lib_height"].as_u64()? >= 3 && b["lib_height"].as_u64()? >= 3).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\nbox A:\n{}\nbox B:\n{}", box_a.log(), box_b.log()))?;
    // The box came in with its provisioned identity, its snapshot check too.
    let log_a = box_a.log();
    assert!(!log_a.contains("allowlist refused"), "box A refused the provisioned box:\n{log_a}");

    // The CLI on the box signs with the provisioned member key; without it the repository
    // answers nothing.
    let keys = on_box(&root, Path::new("/var/lib/aergo/keys"));
    let (ok, text) = cli_on_box(&keys, &box_b.rpc, &["--repo", "acme", "chain"])?;
    assert!(ok && text.contains("acme-chain"), "{text}");
    let (ok, text) = cli_on_box(dir.path(), &box_b.rpc, &["--repo", "acme", "chain"])?;
    assert!(!ok && text.contains("access denied"), "{text}");
    let to = aergo_primitives::types::Address([7; 20]).to_string();
    let send = [
        "--repo",
        "acme",
        "send",
        "--key",
        &path(&admin_file),
        "--to",
        &to,
        "--amount",
        "5",
        "--nonce",
        "0",
        "--wait",
    ];
    let (ok, text) = cli_on_box(&keys, &box_b.rpc, &send)?;
    assert!(ok, "{text}");
    let sent: serde_json::Value = serde_json::from_str(&text)?;
    let height =
        sent["receipt"]["block_height"].as_u64().ok_or_else(|| anyhow::anyhow!("no height: {sent}"))?;
    let block_hash = |rpc: &str| {
        cli_on_box(&keys, rpc, &["--repo", "acme", "block", &height.to_string()])
            .ok()
            .filter(|(ok, _)| *ok)
            .and_then(|(_, t)| serde_json::from_str::<serde_json::Value>(&t).ok())
            .map(|b| b["hash"].clone())
    };
    wait_for(Duration::from_secs(30), "the transfer's block on box A", || {
        let (a, b) = (block_hash(&box_a.rpc)?, block_hash(&box_b.rpc)?);
        (a == b && a.is_string()).then_some(())
    })?;
    let (ok, text) = cli_on_box(&keys, &box_a.rpc, &["--repo", "acme", "balance", &to])?;
    assert!(ok, "{text}");
    let account: serde_json::Value = serde_json::from_str(&text)?;
    assert_eq!(account["balance"].to_string().trim_matches('"'), "5", "{account}");
    box_b.stop()?;
    box_a.stop()?;
    Ok(())
}
