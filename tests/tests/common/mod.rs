//! What the multi-node tests share: a testnet of `aergo-node run` processes, and two network
//! namespaces with a link the test can cut.
#![allow(dead_code)]

use aergo_api::AergoApiClient;
use aergo_node::testnet::{write_testnet, TestnetNode, TestnetOptions};
use aergo_tests::{wait_for, NodeProcess};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use std::path::Path;
use std::time::Duration;

/// The files of an `nodes`-producer testnet on loopback ports, 1 s slots, in `out`.
pub fn loopback(nodes: usize, out: std::path::PathBuf) -> TestnetOptions {
    TestnetOptions {
        nodes,
        out,
        hosts: vec![],
        block_interval_ms: 1000,
        chain_id: "aergo-testnet".into(),
        base_port: None,
        voters: None,
        consensus: Default::default(),
    }
}

pub struct Testnet {
    pub _dir: tempfile::TempDir,
    pub nodes: Vec<TestnetNode>,
    pub procs: Vec<Option<NodeProcess>>,
    pub clients: Vec<HttpClient>,
    pub rt: tokio::runtime::Runtime,
}

pub fn data_dir(n: &TestnetNode) -> &Path {
    n.config.parent().expect("node directory")
}

pub fn start(n: &TestnetNode) -> anyhow::Result<NodeProcess> {
    NodeProcess::start(data_dir(n), &["run", "--config", n.config.to_str().unwrap_or_default()])
}

impl Testnet {
    pub fn new(count: usize) -> anyhow::Result<Testnet> {
        Testnet::with(count, |opts| opts)
    }

    /// A testnet of `count` nodes on loopback whose options `adjust` may change.
    pub fn with(
        count: usize,
        adjust: impl FnOnce(TestnetOptions) -> TestnetOptions,
    ) -> anyhow::Result<Testnet> {
        Testnet::with_files(count, adjust, |_| Ok(()), |_| true)
    }

    /// As [`Testnet::with`], with `edit` run on the written files (the network's directory)
    /// before any node starts, and only the nodes `starts` says started.
    pub fn with_files(
        count: usize,
        adjust: impl FnOnce(TestnetOptions) -> TestnetOptions,
        edit: impl FnOnce(&Path) -> anyhow::Result<()>,
        starts: impl Fn(usize) -> bool,
    ) -> anyhow::Result<Testnet> {
        let dir = tempfile::tempdir()?;
        let opts = adjust(loopback(count, dir.path().join("net")));
        let nodes = write_testnet(&opts)?;
        edit(&opts.out)?;
        let procs = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| if starts(i) { start(n).map(Some) } else { Ok(None) })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let clients = nodes
            .iter()
            .map(|n| HttpClientBuilder::default().build(&n.rpc))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Testnet { _dir: dir, nodes, procs, clients, rt: tokio::runtime::Runtime::new()? })
    }

    /// A testnet of `count` nodes across the two halves of `split` (node `i` in half
    /// `half(i)`, fixed ports from `base_port`), each node's RPC on its half's link from the
    /// test's namespace so that the test watches both halves; `adjust` may change the options.
    pub fn split(
        split: &SplitNet,
        count: usize,
        half: impl Fn(usize) -> usize,
        base_port: u16,
        adjust: impl FnOnce(TestnetOptions) -> TestnetOptions,
    ) -> anyhow::Result<Testnet> {
        let dir = tempfile::tempdir()?;
        let opts = adjust(TestnetOptions {
            hosts: (0..count).map(|i| split.p2p(half(i)).parse()).collect::<Result<_, _>>()?,
            base_port: Some(base_port),
            voters: None,
            ..loopback(count, dir.path().join("net"))
        });
        let mut nodes = write_testnet(&opts)?;
        for (i, n) in nodes.iter_mut().enumerate() {
            let mut c = aergo_config::NodeConfig::load(&n.config)?;
            c.rpc.listen = format!("{}:{}", split.rpc(half(i)), c.rpc.listen.port()).parse()?;
            std::fs::write(&n.config, c.to_toml()?)?;
            n.rpc = format!("http://{}", c.rpc.listen);
        }
        let mut procs = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let config = n.config.to_str().unwrap_or_default();
            procs.push(Some(NodeProcess::start_in_netns(
                &split.names[half(i)],
                data_dir(n),
                &["run", "--config", config],
            )?));
        }
        let clients = nodes
            .iter()
            .map(|n| HttpClientBuilder::default().build(&n.rpc))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Testnet { _dir: dir, nodes, procs, clients, rt: tokio::runtime::Runtime::new()? })
    }

    pub fn info(&self, i: usize) -> Option<aergo_api::ChainInfo> {
        self.rt.block_on(self.clients[i].chain_info(None)).ok()
    }

    pub fn block_hash(&self, i: usize, height: u64) -> Option<String> {
        let b = self.rt.block_on(self.clients[i].get_block(Some(height), None, Some(false), None)).ok()??;
        Some(b.hash.to_string())
    }

    pub fn lib(&self, i: usize) -> u64 {
        self.info(i).map_or(0, |c| c.lib_height)
    }

    /// Waits until every live node's LIB is at least `height`.
    pub fn wait_lib(&self, live: &[usize], height: u64, limit: Duration) -> anyhow::Result<()> {
        wait_for(limit, &format!("LIB {height} on nodes {live:?}"), || {
            live.iter().all(|i| self.lib(*i) >= height).then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", self.logs()))
    }

    /// Every final block is the same block on every live node.
    pub fn assert_final_agree(&self, live: &[usize]) {
        let lib = live.iter().map(|i| self.lib(*i)).min().unwrap_or(0);
        assert!(lib > 0);
        for h in 1..=lib {
            let hashes: Vec<Option<String>> = live.iter().map(|i| self.block_hash(*i, h)).collect();
            assert!(hashes[0].is_some(), "node {} has no block {h}", live[0]);
            assert!(hashes.iter().all(|x| *x == hashes[0]), "final block {h} differs: {hashes:?}");
        }
    }

    pub fn logs(&self) -> String {
        self.procs
            .iter()
            .flatten()
            .map(|p| {
                let log = p.log();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                format!(
                    "--- {}\n{}",
                    p.data_dir.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Two network namespaces made by the test, joined by a link it can cut, each reachable from the
/// test's own namespace for RPC. Subnet `10.S.0.0/16`: p2p at 10.S.0.1 and 10.S.0.2, RPC at
/// 10.S.1.2 and 10.S.2.2.
pub struct SplitNet {
    pub names: [String; 2],
    subnet: u8,
}

pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip").args(args).output()?;
    anyhow::ensure!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

impl SplitNet {
    /// The p2p address of half `h` (0 or 1).
    pub fn p2p(&self, h: usize) -> String {
        format!("10.{}.0.{}", self.subnet, h + 1)
    }

    /// The RPC address of half `h`, reachable from the test.
    pub fn rpc(&self, h: usize) -> String {
        format!("10.{}.{}.2", self.subnet, h + 1)
    }

    pub fn new(subnet: u8) -> anyhow::Result<SplitNet> {
        let id = std::process::id() % 100_000;
        let net = SplitNet { names: [format!("aergo{id}a{subnet}"), format!("aergo{id}b{subnet}")], subnet };
        let [a, b] = [net.names[0].as_str(), net.names[1].as_str()];
        for ns in [a, b] {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        // The link between the halves.
        ip(&["-n", a, "link", "add", "split0", "type", "veth", "peer", "name", "split1", "netns", b])?;
        ip(&["-n", a, "addr", "add", &format!("{}/24", net.p2p(0)), "dev", "split0"])?;
        ip(&["-n", b, "addr", "add", &format!("{}/24", net.p2p(1)), "dev", "split1"])?;
        // RPC links from here.
        for (i, ns) in [a, b].iter().enumerate() {
            let (here, there) = (format!("ag{id}r{i}s{subnet}"), "rpc0".to_string());
            ip(&["link", "add", &here, "type", "veth", "peer", "name", &there, "netns", ns])?;
            ip(&["addr", "add", &format!("10.{subnet}.{}.1/24", i + 1), "dev", &here])?;
            ip(&["link", "set", &here, "up"])?;
            ip(&["-n", ns, "addr", "add", &format!("{}/24", net.rpc(i)), "dev", &there])?;
            ip(&["-n", ns, "link", "set", &there, "up"])?;
        }
        net.set_link(true)?;
        Ok(net)
    }

    /// Connects (true) or cuts (false) the link between the halves.
    pub fn set_link(&self, up: bool) -> anyhow::Result<()> {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.names[0], "link", "set", "split0", state])?;
        ip(&["-n", &self.names[1], "link", "set", "split1", state])
    }
}

impl Drop for SplitNet {
    fn drop(&mut self) {
        for ns in &self.names {
            // Deleting a namespace removes its ends of the veth pairs, and with them ours.
            let _ = std::process::Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
