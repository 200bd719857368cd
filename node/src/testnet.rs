//! `aergo-node testnet`: the files for an N-producer network, one directory per node.
//!
//! ```text
//! DIR/genesis.toml      N producers (bp_count = N), the faucet and the producers funded;
//!                       with --consensus raft: N Raft voters (their node keys) instead
//! DIR/faucet.key        the funded account's key (plain)
//! DIR/nodeK/config.toml runnable with `aergo-node run --config`; p2p on, every other node a bootstrap peer
//! DIR/nodeK/producer.key, DIR/nodeK/node.key (the p2p identity, so peer ids are known up front;
//!                       under Raft also the key that signs the node's blocks: no producer.key)
//! DIR/nodes.json        [{"config", "rpc", "p2p", "address", "peer_id"}]
//! ```
//! On loopback the ports are free ones picked by the system; on other hosts they are 7845 (RPC) and
//! 7846 (p2p); with a base port B, node K has RPC B+2K and p2p B+2K+1.

use crate::node::{now_ms, write_atomic, NODE_KEY_FILE};
use aergo_config::genesis::{
    ConsensusKind, ConsensusParams, Genesis, GenesisBalance, GenesisProducer, RaftParams, RaftVoter,
};
use aergo_config::NodeConfig;
use aergo_primitives::crypto::{KeyFile, Keypair};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

/// One node of a testnet, as `nodes.json` lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TestnetNode {
    pub config: PathBuf,
    pub rpc: String,
    pub p2p: String,
    /// The producer's account address (under Raft: the node key's).
    pub address: String,
    pub peer_id: String,
}

#[derive(Clone, Debug)]
pub struct TestnetOptions {
    pub nodes: usize,
    pub out: PathBuf,
    /// One host per node; all loopback when empty.
    pub hosts: Vec<IpAddr>,
    pub block_interval_ms: u64,
    /// Chain id.
    pub chain_id: String,
    /// Fixed ports instead of free ones: node K gets RPC `base + 2K` and p2p `base + 2K + 1` (for
    /// hosts this machine cannot bind, e.g. in network namespaces).
    pub base_port: Option<u16>,
    /// DPoS (N producers) or Raft (N voters).
    pub consensus: ConsensusKind,
    /// Raft: only the first K nodes are voters, the others full nodes (all are voters when
    /// unset). Refused under DPoS.
    pub voters: Option<usize>,
}

/// Where picked ports start: below the kernel's range of ports for outgoing connections.
const PICKED_PORTS_FROM: u16 = 10_000;

/// A free port on `host`, held by the returned listener. Picked at random below the kernel's
/// range for outgoing connections (`ip_local_port_range`): a port the kernel hands out for a
/// bind to port 0 comes from that range too, and between this pick and the node's own bind an
/// outgoing connection of any process (another node dialling its peers) could take it — a
/// node that then failed with "address already in use". Falls back to the kernel's choice
/// when that range leaves no room below it.
fn free_port(host: IpAddr) -> std::io::Result<(TcpListener, u16)> {
    use std::hash::{BuildHasher, Hasher};
    let outgoing_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    if outgoing_from > PICKED_PORTS_FROM + 1_000 {
        let random = std::collections::hash_map::RandomState::new();
        let span = u64::from(outgoing_from - PICKED_PORTS_FROM);
        for attempt in 0u64..64 {
            let mut h = random.build_hasher();
            h.write_u64(attempt);
            let port = PICKED_PORTS_FROM + (h.finish() % span) as u16;
            if let Ok(l) = TcpListener::bind(SocketAddr::new(host, port)) {
                return Ok((l, port));
            }
        }
    }
    let l = TcpListener::bind(SocketAddr::new(host, 0))?;
    let port = l.local_addr()?.port();
    Ok((l, port))
}

/// Writes the testnet's files; refuses a directory that already holds one.
pub fn write_testnet(opts: &TestnetOptions) -> anyhow::Result<Vec<TestnetNode>> {
    anyhow::ensure!(opts.nodes >= 1, "--nodes must be at least 1");
    if let Some(k) = opts.voters {
        anyhow::ensure!(
            opts.consensus == ConsensusKind::Raft,
            "--voters is for a Raft network (--consensus raft); a DPoS network's producers are its --nodes"
        );
        anyhow::ensure!(
            (1..=opts.nodes).contains(&k),
            "--voters {k}: from 1 to the {} nodes (the others are full nodes)",
            opts.nodes
        );
    }
    anyhow::ensure!(
        opts.hosts.is_empty() || opts.hosts.len() == opts.nodes,
        "--hosts lists {} hosts for {} nodes",
        opts.hosts.len(),
        opts.nodes
    );
    anyhow::ensure!(
        !opts.out.join("genesis.toml").exists(),
        "{} already holds a testnet; use a fresh directory",
        opts.out.display()
    );
    std::fs::create_dir_all(&opts.out)?;
    let out = std::fs::canonicalize(&opts.out)?;
    let loopback = IpAddr::from([127, 0, 0, 1]);
    let hosts: Vec<IpAddr> =
        if opts.hosts.is_empty() { vec![loopback; opts.nodes] } else { opts.hosts.clone() };
    // Ports: hold every listener until all are picked so that none is handed out twice.
    let mut held = Vec::new();
    let mut ports = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        if let Some(base) = opts.base_port {
            let rpc = base.checked_add(2 * i as u16 + 1).ok_or_else(|| {
                anyhow::anyhow!("--base-port {base} leaves no room for {} nodes", opts.nodes)
            })?;
            ports.push((rpc - 1, rpc));
        } else if host.is_loopback() {
            let (l1, rpc) = free_port(*host)?;
            let (l2, p2p) = free_port(*host)?;
            held.push(l1);
            held.push(l2);
            ports.push((rpc, p2p));
        } else {
            ports.push((7845, 7846));
        }
    }
    drop(held);

    let faucet = Keypair::generate();
    KeyFile::write_plain(&out.join("faucet.key"), &faucet)?;
    let raft = opts.consensus == ConsensusKind::Raft;
    let identities: Vec<Keypair> = (0..opts.nodes).map(|_| Keypair::generate()).collect();
    // Under Raft a node's identity key signs its blocks.
    let producers: Vec<Keypair> =
        if raft { identities.clone() } else { (0..opts.nodes).map(|_| Keypair::generate()).collect() };
    let unit = 10u128.pow(18);
    let mut balances = vec![GenesisBalance { address: faucet.address(), amount: 1_000_000_000 * unit }];
    balances
        .extend(producers.iter().map(|k| GenesisBalance { address: k.address(), amount: 1_000_000 * unit }));
    let p2p_listen = |i: usize| format!("/ip4/{}/tcp/{}", hosts[i], ports[i].1);
    let consensus = if raft {
        ConsensusParams {
            block_interval_ms: opts.block_interval_ms,
            kind: ConsensusKind::Raft,
            raft: Some(RaftParams {
                propose_on_tx: true,
                election_ticks: 10,
                heartbeat_ticks: 2,
                // The first K nodes vote; the others are full nodes that follow them.
                voters: (0..opts.voters.unwrap_or(opts.nodes))
                    .map(|i| RaftVoter {
                        node_key: hex::encode(identities[i].public().0),
                        address: p2p_listen(i),
                    })
                    .collect(),
            }),
            ..ConsensusParams::default()
        }
    } else {
        ConsensusParams {
            block_interval_ms: opts.block_interval_ms,
            bp_count: opts.nodes as u32,
            ..ConsensusParams::default()
        }
    };
    let genesis = Genesis {
        chain_id: opts.chain_id.clone(),
        timestamp_ms: now_ms() / 1000 * 1000,
        consensus,
        balances,
        producers: if raft {
            Vec::new()
        } else {
            producers.iter().map(|k| GenesisProducer { public_key: hex::encode(k.public().0) }).collect()
        },
        access: None,
    };
    genesis.validate().map_err(|e| anyhow::anyhow!("genesis: {e}"))?;
    let genesis_path = out.join("genesis.toml");
    write_atomic(&genesis_path, genesis.to_toml().as_bytes())?;

    let p2p_addr = |i: usize| {
        let peer = aergo_net::peer_id_of(identities[i].secret_bytes());
        format!("{}/p2p/{peer}", p2p_listen(i))
    };
    let mut nodes = Vec::new();
    for i in 0..opts.nodes {
        let dir = out.join(format!("node{i}"));
        std::fs::create_dir_all(&dir)?;
        if !raft {
            KeyFile::write_plain(&dir.join("producer.key"), &producers[i])?;
        }
        KeyFile::write_plain(&dir.join(NODE_KEY_FILE), &identities[i])?;
        let mut config =
            NodeConfig { data_dir: dir.clone(), genesis: genesis_path.clone(), ..NodeConfig::default() };
        config.rpc.listen = SocketAddr::new(hosts[i], ports[i].0);
        config.producer.enabled = !raft;
        config.producer.key_file = PathBuf::from("producer.key");
        config.p2p.enabled = true;
        config.p2p.listen = vec![p2p_listen(i)];
        config.p2p.bootstrap = (0..opts.nodes).filter(|j| *j != i).map(p2p_addr).collect();
        config.validate().map_err(|e| anyhow::anyhow!("node{i} config: {e}"))?;
        let config_path = dir.join("config.toml");
        write_atomic(&config_path, config.to_toml()?.as_bytes())?;
        nodes.push(TestnetNode {
            config: config_path,
            rpc: format!("http://{}", SocketAddr::new(hosts[i], ports[i].0)),
            p2p: p2p_addr(i),
            address: producers[i].address().to_string(),
            peer_id: aergo_net::peer_id_of(identities[i].secret_bytes()).to_string(),
        });
    }
    write_atomic(&out.join("nodes.json"), serde_json::to_string_pretty(&nodes)?.as_bytes())?;
    Ok(nodes)
}

/// Reads `DIR/nodes.json`.
pub fn read_nodes(dir: &Path) -> anyhow::Result<Vec<TestnetNode>> {
    let text = std::fs::read_to_string(dir.join("nodes.json"))?;
    Ok(serde_json::from_str(&text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_runnable_configs_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let opts = TestnetOptions {
            nodes: 4,
            out: dir.path().join("net"),
            hosts: vec![],
            block_interval_ms: 1000,
            chain_id: "aergo-testnet".into(),
            base_port: None,
            voters: None,
            consensus: ConsensusKind::Dpos,
        };
        let nodes = write_testnet(&opts).unwrap();
        assert_eq!(nodes.len(), 4);
        assert_eq!(read_nodes(&opts.out).unwrap(), nodes);
        let genesis = Genesis::load(&opts.out.join("genesis.toml")).unwrap();
        assert_eq!(genesis.producers.len(), 4);
        assert_eq!(genesis.consensus.bp_count, 4);
        for (i, n) in nodes.iter().enumerate() {
            let c = NodeConfig::load(&n.config).unwrap();
            assert!(c.p2p.enabled && c.producer.enabled);
            assert_eq!(c.p2p.bootstrap.len(), 3);
            assert!(!c.p2p.bootstrap.contains(&n.p2p));
            assert!(n.p2p.ends_with(&n.peer_id));
            assert_eq!(n.rpc, format!("http://{}", c.rpc.listen));
            let key = KeyFile::read(&c.data_dir.join("node.key")).unwrap().unlock(None).unwrap();
            assert_eq!(aergo_net::peer_id_of(key.secret_bytes()).to_string(), n.peer_id, "node {i}");
        }
        let again = write_testnet(&opts).err().unwrap().to_string();
        assert!(again.contains("already holds a testnet"), "{again}");
    }

    #[test]
    fn a_raft_testnet_names_its_voters_by_node_key() {
        let dir = tempfile::tempdir().unwrap();
        let opts = TestnetOptions {
            nodes: 3,
            out: dir.path().join("net"),
            hosts: vec![],
            block_interval_ms: 1000,
            chain_id: "aergo-raft".into(),
            base_port: None,
            voters: None,
            consensus: ConsensusKind::Raft,
        };
        let nodes = write_testnet(&opts).unwrap();
        let genesis = Genesis::load(&opts.out.join("genesis.toml")).unwrap();
        assert!(genesis.producers.is_empty());
        let raft = genesis.consensus.raft.as_ref().unwrap();
        assert_eq!(raft.voters.len(), 3);
        // Fewer voters than nodes: the rest are full nodes; none, or DPoS with voters: refused.
        for (voters, consensus, ok) in [
            (Some(2), ConsensusKind::Raft, true),
            (Some(0), ConsensusKind::Raft, false),
            (Some(4), ConsensusKind::Raft, false),
            (Some(2), ConsensusKind::Dpos, false),
        ] {
            let other = tempfile::tempdir().unwrap();
            let o = TestnetOptions { out: other.path().join("net"), voters, consensus, ..opts.clone() };
            match write_testnet(&o) {
                Ok(_) => {
                    assert!(ok, "{voters:?} {consensus:?} was written");
                    let g = Genesis::load(&o.out.join("genesis.toml")).unwrap();
                    assert_eq!(g.consensus.raft.unwrap().voters.len(), 2);
                }
                Err(e) => assert!(!ok && e.to_string().contains("--voters"), "{e}"),
            }
        }
        for (n, v) in nodes.iter().zip(&raft.voters) {
            let c = NodeConfig::load(&n.config).unwrap();
            let key = KeyFile::read(&c.data_dir.join("node.key")).unwrap().unlock(None).unwrap();
            assert_eq!(v.node_key, hex::encode(key.public().0));
            assert_eq!(n.address, key.address().to_string());
            assert!(n.p2p.starts_with(&v.address), "{} vs {}", n.p2p, v.address);
            assert!(!c.producer.enabled && !c.data_dir.join("producer.key").exists());
        }
    }
}
