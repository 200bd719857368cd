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
use jsonrpsee::http_client::HttpClientBuilder;
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
    }
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
    let genesis_hash = rt.block_on(c0.chain_info())?.genesis_hash.to_string();

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
    let box_config = root.join("node-under-test.toml");
    std::fs::write(&box_config, config.to_toml()?)?;
    let p1 =
        NodeProcess::start(&config.data_dir, &["run", "--config", box_config.to_str().unwrap_or_default()])?;
    let c1 = HttpClientBuilder::default().build(&p1.rpc)?;
    let lib =
        |c: &jsonrpsee::http_client::HttpClient| rt.block_on(c.chain_info()).map_or(0, |i| i.lib_height);
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
        rt.block_on(c.get_block(Some(final_height), None, Some(false))).ok().flatten().map(|b| b.hash)
    };
    assert_eq!(hash(&c0), hash(&c1), "final block {final_height} differs");
    let produced_by_box = (1..=final_height).any(|h| {
        rt.block_on(c0.get_block(Some(h), None, Some(false)))
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
