//! A fleet of boxes on one virtual L2 network that the check makes (`docs/fleet.md`, "Tests"): a
//! network namespace with a bridge (10.77.0.1/24: the check's own producer process, its NTP server
//! and Prometheus) and one tap per box, QEMU running in the namespace with the box's NIC on its
//! tap. One image is built and flashed onto every box, each with its own provisioning written onto
//! its boot partition (`aergo-image provision`), as a node provider does it. The check reaches the
//! boxes only over that network: their JSON-RPC, agent and SSH at their addresses.
//!
//! [`fleet`] is the check of the test suite and `aergo-image test`; [`boot_benchmark`] times a
//! three-box network from power-on to its first final block (`aergo-image bench-boot`).

use crate::check::{self, field, http_get, rpc_call, wait_for, Env, Vm};
use aergo_primitives::crypto::KeyFile;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bridge's address: the check's producer process, NTP server and Prometheus.
pub const BRIDGE_IP: &str = "10.77.0.1";
/// The agent's bearer token on every box.
const TOKEN: &str = "f1ee7f1ee7f1ee7f1ee7f1ee7f1ee7f1ee7f1ee7f1ee7f1ee7f1ee7f1ee7f1ee";
const PASSPHRASE: &str = "a fleet of boxes";
const BOOT_LIMIT: Duration = Duration::from_secs(300);

/// Box `i`'s address (box 1 is 10.77.0.11).
pub fn box_ip(i: usize) -> String {
    format!("10.77.0.{}", 10 + i)
}

/// Box `i`'s p2p address, as a provider writes it before the box has a peer id.
fn box_peer(i: usize) -> String {
    format!("/ip4/{}/tcp/7846", box_ip(i))
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    crate::tools::run(Command::new("ip").args(args)).map(|_| ())
}

/// A network namespace holding the bridge `br0` (10.77.0.1/24) and taps `tap1`…`tapN` on it,
/// deleted (with everything in it) when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(name: &str, taps: usize) -> anyhow::Result<Netns> {
        // A namespace of the same name left by a run that was killed.
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ip(&["netns", "add", name])?;
        let ns = Netns { name: name.to_string() };
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.ip(&["link", "add", "br0", "type", "bridge"])?;
        ns.ip(&["addr", "add", &format!("{BRIDGE_IP}/24"), "dev", "br0"])?;
        ns.ip(&["link", "set", "br0", "up"])?;
        for i in 1..=taps {
            let tap = format!("tap{i}");
            ns.ip(&["tuntap", "add", "dev", &tap, "mode", "tap"])?;
            ns.ip(&["link", "set", &tap, "master", "br0"])?;
            ns.ip(&["link", "set", &tap, "up"])?;
        }
        Ok(ns)
    }

    fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        ip(&[&["-n", self.name.as_str()], args].concat())
    }

    /// Moves the calling thread into the namespace: every socket it opens and every process it
    /// starts from then on is on the fleet's network (and nowhere else).
    pub fn enter(&self) -> anyhow::Result<()> {
        let f = std::fs::File::open(format!("/run/netns/{}", self.name))?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| anyhow::anyhow!("cannot enter network namespace {}: {e}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// A background program of the check, killed when dropped; its output in `log`.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(cmd: &mut Command, log: PathBuf) -> anyhow::Result<Daemon> {
        let out = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {cmd:?}: {e}"))?;
        Ok(Daemon { child, log })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A file for a box's boot partition: its name there and its contents.
type BootFile = (&'static str, Vec<u8>);

/// One producer of the fleet's testnet (from `aergo-node testnet`'s nodes.json).
struct Producer {
    config: PathBuf,
    address: String,
}

/// The fleet's chain and the image its boxes are flashed with.
struct Setup {
    dir: PathBuf,
    /// The built raw image every box is a copy of.
    raw: PathBuf,
    genesis: PathBuf,
    faucet: PathBuf,
    producers: Vec<Producer>,
    ssh_public: String,
}

/// A program beside `aergo-image` (the workspace's binaries are built together).
fn sibling(env: &Env, name: &str) -> PathBuf {
    env.program.parent().map(|d| d.join(name)).unwrap_or_else(|| PathBuf::from(name))
}

/// Builds the image and writes a four-producer testnet: producers 0-2 are boxes 1-3, producer 3 is
/// the check's own process on the bridge.
fn setup(env: &Env, dir: &Path) -> anyhow::Result<Setup> {
    let (qcow2, _) = check::build_image(env, dir, "image", "0.1.0-fleet", &[])?;
    let raw = qcow2.with_extension("img");
    let net = dir.join("net");
    let hosts = [box_ip(1), box_ip(2), box_ip(3), BRIDGE_IP.to_string()].join(",");
    let out = crate::tools::run(
        Command::new(sibling(env, "aergo-node"))
            .args(["testnet", "--nodes", "4", "--chain-id", "aergo-fleet", "--base-port", "7846"])
            .args(["--hosts", &hosts, "--out"])
            .arg(&net),
    )?;
    let nodes: Value = serde_json::from_str(&std::fs::read_to_string(net.join("nodes.json"))?)
        .map_err(|e| anyhow::anyhow!("nodes.json: {e}\n{out}"))?;
    let producers = nodes
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| Producer {
            config: PathBuf::from(n["config"].as_str().unwrap_or_default()),
            address: n["address"].as_str().unwrap_or_default().to_string(),
        })
        .collect::<Vec<_>>();
    anyhow::ensure!(producers.len() == 4, "nodes.json: {nodes}");
    let ssh_public = check::ssh_key_pair(dir)?;
    Ok(Setup {
        dir: dir.to_path_buf(),
        raw,
        genesis: net.join("genesis.toml"),
        faucet: net.join("faucet.key"),
        producers,
        ssh_public,
    })
}

impl Setup {
    /// Starts producer 3 as a process on the bridge (RPC 10.77.0.1:7845, p2p :7846), dialling
    /// box 1. The calling thread must be in the fleet's namespace.
    fn start_process(&self, env: &Env) -> anyhow::Result<Daemon> {
        let config_path = &self.producers[3].config;
        let mut config: toml::Table = toml::from_str(&std::fs::read_to_string(config_path)?)?;
        let table = |config: &toml::Table, name: &str| -> anyhow::Result<toml::Table> {
            config
                .get(name)
                .and_then(|t| t.as_table())
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("{} has no [{name}]", config_path.display()))
        };
        let mut rpc = table(&config, "rpc")?;
        rpc.insert("listen".into(), format!("{BRIDGE_IP}:7845").into());
        let mut p2p = table(&config, "p2p")?;
        p2p.insert("listen".into(), vec![format!("/ip4/{BRIDGE_IP}/tcp/7846")].into());
        p2p.insert("bootstrap".into(), vec![format!("/ip4/{}/tcp/7846", box_ip(1))].into());
        let mut producer = table(&config, "producer")?;
        producer.insert("empty_blocks".into(), true.into());
        config.insert("rpc".into(), rpc.into());
        config.insert("p2p".into(), p2p.into());
        config.insert("producer".into(), producer.into());
        std::fs::write(config_path, toml::to_string(&config)?)?;
        let node = Daemon::start(
            Command::new(sibling(env, "aergo-node")).args(["run", "--config"]).arg(config_path),
            self.dir.join("process.log"),
        )?;
        let rpc = process_rpc();
        wait_for(Duration::from_secs(60), "the check's producer process to answer", || {
            rpc_call(&rpc, "chain_info", json!([])).ok()
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", node.log()))?;
        Ok(node)
    }

    /// Writes box `i`'s provision.toml and the files it names onto a copy of the image.
    fn flash(
        &self,
        env: &Env,
        i: usize,
        provision: &str,
        files: &[(&str, &[u8])],
    ) -> anyhow::Result<PathBuf> {
        let boot = self.dir.join(format!("box{i}"));
        std::fs::create_dir_all(&boot)?;
        std::fs::write(boot.join("provision.toml"), provision)?;
        let disk = boot.join("disk.img");
        let mut args: Vec<PathBuf> = vec![
            "--image".into(),
            self.raw.clone(),
            "--out".into(),
            disk.clone(),
            "--provision".into(),
            boot.join("provision.toml"),
        ];
        for (name, bytes) in files {
            let path = boot.join(name);
            std::fs::write(&path, bytes)?;
            args.extend(["--boot-file".into(), path]);
        }
        let args: Vec<&Path> = args.iter().map(PathBuf::as_path).collect();
        env.aergo_image(&["provision"], &args)?;
        Ok(disk)
    }

    /// Box `i`'s provisioning as the producer `producer` (0-based in the testnet): a static
    /// address, the genesis and the producer's keystore on the boot partition, the bridge as NTP
    /// server; `p2p` the lines of its `[p2p]` section. Returns the provision text and the files.
    fn producer_provision(
        &self,
        i: usize,
        producer: usize,
        genesis_hash: &str,
        p2p: &str,
    ) -> anyhow::Result<(String, Vec<BootFile>)> {
        let key =
            KeyFile::read(&self.producers[producer].config.with_file_name("producer.key"))?.unlock(None)?;
        let keystore = self.dir.join(format!("box{i}-producer.keystore"));
        // A low scrypt cost: the box unlocks it under emulation.
        KeyFile::write_encrypted_with(&keystore, &key, PASSPHRASE, 10)?;
        let provision = self.provision_text(
            i,
            "producer",
            genesis_hash,
            p2p,
            "[producer]\nkeystore = \"producer.keystore\"\npassphrase_file = \"producer.pass\"\n",
        );
        let files = vec![
            ("genesis.toml", std::fs::read(&self.genesis)?),
            ("producer.keystore", std::fs::read(&keystore)?),
            ("producer.pass", format!("{PASSPHRASE}\n").into_bytes()),
        ];
        Ok((provision, files))
    }

    /// Producer box `i` (producer `i - 1`), flashed: `bootstrap` its peer (none for box 1).
    fn flash_producer(
        &self,
        env: &Env,
        i: usize,
        genesis_hash: &str,
        bootstrap: Option<&str>,
    ) -> anyhow::Result<PathBuf> {
        let bootstrap = bootstrap.map(|b| format!("\"{b}\"")).unwrap_or_default();
        let (provision, files) =
            self.producer_provision(i, i - 1, genesis_hash, &format!("bootstrap = [{bootstrap}]\n"))?;
        let files: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        self.flash(env, i, &provision, &files)
    }

    /// Starts the check's producer process, then boxes 1-3 (box 1 the others' bootstrap peer),
    /// box `i`'s RTC starting at `rtc_base(i)`. Returns the process, the genesis hash, the boxes.
    fn start_network<'a>(
        &self,
        env: &Env,
        rtc_base: impl Fn(usize) -> Option<&'a str>,
    ) -> anyhow::Result<(Daemon, String, Vec<FleetBox>)> {
        let process = self.start_process(env)?;
        let genesis_hash = rpc_call(&process_rpc(), "chain_info", json!([]))?["genesis_hash"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut boxes = Vec::new();
        for i in 1..=3 {
            let bootstrap = (i > 1).then(|| box_peer(1));
            let disk = self.flash_producer(env, i, &genesis_hash, bootstrap.as_deref())?;
            boxes.push(self.boot(env, i, &disk, rtc_base(i))?);
        }
        Ok((process, genesis_hash, boxes))
    }

    /// Box `i`'s provision.toml: a static address on the bridge's network, the genesis on the boot
    /// partition, the bridge as NTP server, the fleet's agent token and SSH key; `p2p` and `extra`
    /// are the lines of its `[p2p]` section and more sections.
    fn provision_text(&self, i: usize, role: &str, genesis_hash: &str, p2p: &str, extra: &str) -> String {
        format!(
            r#"hostname = "box-{i}"
[network]
dhcp = false
address = "{ip}/24"
gateway = "{BRIDGE_IP}"
dns = ["{BRIDGE_IP}"]
[node]
role = "{role}"
chain = "genesis.toml"
genesis_hash = "{genesis_hash}"
[p2p]
{p2p}{extra}[time]
servers = ["{BRIDGE_IP}"]
[agent]
token = "{TOKEN}"
[ssh]
authorized_keys = ["{ssh}"]
"#,
            ip = box_ip(i),
            ssh = self.ssh_public,
        )
    }

    /// The other bad provisionings, tried on box 4 while it is in the state a refused file leaves it
    /// in (reachable over SSH, nothing applied) with the box's own first-boot command, `aergo-console
    /// provision FILE --root /data`: a wrong passphrase is refused naming the keystore and keeps the
    /// passphrase file; a genesis whose hash is not the one given is taken by provisioning but refused
    /// by the node, which says why and leaves no chain; an unreachable bootstrap peer leaves a node that
    /// runs and says which address fails and why. The box answers over SSH throughout; afterwards it
    /// is as it was (no settings, no chain), for the provider's good file.
    fn bad_provisionings(s: &Setup, b4: &FleetBox, good: &str, genesis_hash: &str) -> anyhow::Result<()> {
        let apply = |name: &str, text: &str| -> anyhow::Result<String> {
            b4.vm.ssh_with_input(&format!("cat > /boot/{name}"), text)?;
            b4.vm.ssh(&format!("aergo-console provision /boot/{name} --root /data 2>&1; echo exit=$?"))
        };
        let reset = || {
            b4.vm.ssh(
            "aergo-ctl stop node; dir=$(sed -n 's/^data_dir = \"\\(.*\\)\"$/\\1/p' /etc/aergo/node.toml); \
             rm -rf \"$dir\" /data/etc/aergo/settings.toml /data/etc/aergo/node.toml; aergo-ctl start node",
        )
        };
        let node_log = |pattern: &str| {
            b4.vm.ssh(&format!("grep -h '{pattern}' /var/log/aergo/node.log | tail -n 1")).unwrap_or_default()
        };

        // A wrong passphrase for the keystore.
        b4.vm.ssh_with_input("cat > /boot/wrong.pass", "not the passphrase\n")?;
        let wrong_pass =
            good.replace("passphrase_file = \"producer.pass\"", "passphrase_file = \"wrong.pass\"");
        anyhow::ensure!(wrong_pass != good, "the good provision.toml names no passphrase file");
        let out = apply("wrong-pass.toml", &wrong_pass)?;
        assert!(!out.contains("exit=0") && out.contains("producer.keystore"), "{out}");
        let kept =
            b4.vm.ssh("test -e /boot/wrong.pass && test ! -e /data/etc/aergo/settings.toml && echo kept")?;
        assert!(kept.contains("kept"), "a refused keystore changed the box");

        // A genesis whose hash is not the one given.
        let wrong = "00".repeat(32);
        let other_hash = s.provision_text(4, "full", &wrong, "", "");
        let out = apply("wrong-hash.toml", &other_hash)?;
        assert!(out.contains("exit=0"), "{out}");
        let said = wait_for(Duration::from_secs(120), "the node to refuse the genesis", || {
            Some(node_log("makes genesis block")).filter(|l| l.contains(&wrong))
        })?;
        assert!(said.contains(genesis_hash), "{said}");
        let left = b4
            .vm
            .ssh("dir=$(sed -n 's/^data_dir = \"\\(.*\\)\"$/\\1/p' /etc/aergo/node.toml); ls \"$dir\"")?;
        assert!(!left.contains("state") && !left.contains("blocks"), "a chain was left behind: {left}");
        reset()?;

        // A bootstrap address where nothing answers.
        let unreachable = "/ip4/10.77.0.99/tcp/7846";
        let lonely =
            s.provision_text(4, "full", genesis_hash, &format!("bootstrap = [\"{unreachable}\"]\n"), "");
        let out = apply("unreachable.toml", &lonely)?;
        assert!(out.contains("exit=0"), "{out}");
        let view =
            wait_for(Duration::from_secs(180), "the node to say its bootstrap peer does not answer", || {
                let info = rpc_call(&b4.vm.rpc, "node_info", json!([])).ok()?;
                let b = info["bootstrap"].as_array()?.first()?.clone();
                (b["address"] == unreachable && b["connected"] == false && b["failures"].as_u64() >= Some(1))
                    .then_some(b)
            })?;
        assert!(view["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{view}");
        reset()?;
        println!("fleet: bad provisioning said why (wrong passphrase, another genesis, no bootstrap peer); box 4 reachable throughout");
        Ok(())
    }

    /// Boots box `i` from `disk` on `tap{i}` (the calling thread in the namespace).
    fn boot(&self, env: &Env, i: usize, disk: &Path, rtc_base: Option<&str>) -> anyhow::Result<FleetBox> {
        let dir = self.dir.join(format!("box{i}"));
        let (serial, pidfile, monitor) =
            (dir.join("serial.log"), dir.join("qemu.pid"), dir.join("monitor.sock"));
        let mac = format!("52:54:00:77:00:{i:02x}");
        let tap = format!("tap{i}");
        let mut args: Vec<&str> =
            vec!["run", "--detach", "--memory-mib", "1024", "--smp", "1", "--tap", &tap, "--mac", &mac];
        if let Some(base) = rtc_base {
            args.extend(["--rtc-base", base]);
        }
        let started = Instant::now();
        let text = env.aergo_image(
            &args,
            &[
                Path::new("--image"),
                disk,
                Path::new("--serial-log"),
                &serial,
                Path::new("--pidfile"),
                &pidfile,
                Path::new("--monitor"),
                &monitor,
            ],
        )?;
        field(&text, "QEMU_PID")?;
        let ip = box_ip(i);
        Ok(FleetBox {
            vm: Vm {
                pidfile,
                monitor,
                serial,
                rpc: format!("http://{ip}:7845"),
                agent: format!("https://{ip}:7850"),
                ssh_host: ip,
                ssh_port: "22".into(),
                ssh_key: self.dir.join("ssh_key"),
            },
            started,
        })
    }
}

fn process_rpc() -> String {
    format!("http://{BRIDGE_IP}:7845")
}

/// A booted box of the fleet.
pub struct FleetBox {
    pub vm: Vm,
    started: Instant,
}

impl FleetBox {
    fn chain(&self) -> Option<Value> {
        rpc_call(&self.vm.rpc, "chain_info", json!([])).ok()
    }

    fn health_reason(&self, check: &str) -> Option<String> {
        let t = self.vm.telemetry(TOKEN)?;
        t["health"]["checks"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == check)
            .and_then(|c| c["reason"].as_str())
            .map(str::to_string)
    }

    /// The box's clock minus this machine's, read over SSH (the SSH round trip bounds the error).
    fn clock_offset(&self) -> anyhow::Result<f64> {
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64()
        };
        let before = now();
        // BusyBox's date has no sub-second format; its adjtimex prints the kernel's time.
        let text = self.vm.ssh("busybox adjtimex")?;
        let after = now();
        Ok(adjtimex_time(&text)? - (before + after) / 2.0)
    }
}

/// The time in `busybox adjtimex`'s report (`time.tv_usec` holds nanoseconds when the status has
/// `STA_NANO`).
fn adjtimex_time(text: &str) -> anyhow::Result<f64> {
    let value = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.split_once(name).and_then(|(_, v)| v.split_whitespace().next()?.parse().ok()))
    };
    let (Some(status), Some(sec), Some(frac)) =
        (value("status:"), value("time.tv_sec:"), value("time.tv_usec:"))
    else {
        anyhow::bail!("no time in adjtimex's report:\n{text}");
    };
    let scale = if status & 0x2000 != 0 { 1e-9 } else { 1e-6 };
    Ok(sec as f64 + frac as f64 * scale)
}

/// The nodes of the fleet by RPC URL (the boxes and the check's process).
fn lib_of(url: &str) -> u64 {
    rpc_call(url, "chain_info", json!([])).ok().and_then(|c| c["lib_height"].as_u64()).unwrap_or(0)
}

/// Each node's `chain_info`, for a failure's message.
fn chain_infos(urls: &[String]) -> String {
    urls.iter()
        .map(|u| match rpc_call(u, "chain_info", json!([])) {
            Ok(c) => format!("{u}: height {} lib {} peers {}", c["height"], c["lib_height"], c["peers"]),
            Err(e) => format!("{u}: {e}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Each node's peers banned since it started (a box a peer banned stays cut off for minutes).
fn bans(urls: &[String]) -> String {
    urls.iter()
        .map(|u| match rpc_call(u, "node_metrics", json!([])) {
            Ok(m) => format!("{u}: {} peers banned", m["peers_banned_total"]),
            Err(e) => format!("{u}: {e}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn block_hash(url: &str, height: u64) -> Option<String> {
    let b = rpc_call(url, "get_block", json!([height, null, false])).ok()?;
    b["hash"].as_str().map(str::to_string)
}

/// The check's NTP server on the bridge: the distribution's chrony (unpacked for the image, never
/// installed here), serving this machine's clock without touching it (`-x`, `local stratum 8`).
fn ntp_server(dir: &Path) -> anyhow::Result<Daemon> {
    let chronyd = crate::tools::unpacked("chrony")?.join("usr/sbin/chronyd");
    let conf = dir.join("chrony-server.conf");
    std::fs::write(
        &conf,
        format!(
            "local stratum 8\nallow 10.77.0.0/24\nbindaddress {BRIDGE_IP}\ncmdport 0\npidfile {}\n",
            dir.join("chronyd.pid").display()
        ),
    )?;
    Daemon::start(
        Command::new(chronyd).args(["-x", "-d", "-u", "root", "-f"]).arg(&conf),
        dir.join("chronyd.log"),
    )
}

/// Prometheus on the bridge, scraping the agents of `boxes` (number, the agent's certificate
/// file) over HTTPS with the fleet's token: each box's self-signed certificate is its own trust
/// root, checked under the name every agent certificate holds (`aergo-agent`), as a provider
/// pins its boxes.
fn prometheus(dir: &Path, boxes: &[(usize, PathBuf)]) -> anyhow::Result<(Daemon, String)> {
    let token = dir.join("prometheus-token");
    std::fs::write(&token, TOKEN)?;
    let mut config_text =
        "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\nscrape_configs:\n".to_string();
    for (i, cert) in boxes {
        config_text.push_str(&format!(
            "  - job_name: box{i}\n    scheme: https\n    tls_config:\n      ca_file: {}\n      server_name: aergo-agent\n    \
             authorization:\n      credentials_file: {}\n    static_configs:\n      - targets: ['{}:7850']\n",
            cert.display(),
            token.display(),
            box_ip(*i)
        ));
    }
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, config_text)?;
    let daemon = Daemon::start(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address={BRIDGE_IP}:9090"))
            .arg("--log.level=warn"),
        dir.join("prometheus.log"),
    )?;
    Ok((daemon, format!("http://{BRIDGE_IP}:9090")))
}

/// The values of a Prometheus instant query, by the `instance` label.
fn prometheus_query(url: &str, query: &str) -> Vec<(String, f64)> {
    let q = check::percent_encode(query);
    let Ok(answer) = http_get(&format!("{url}/api/v1/query?query={q}"), None) else {
        return Vec::new();
    };
    let Ok(v) = answer.json() else {
        return Vec::new();
    };
    v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let value = r["value"][1].as_str()?.parse().ok()?;
            Some((r["metric"]["instance"].as_str().unwrap_or_default().to_string(), value))
        })
        .collect()
}

/// Runs `body` on a thread of its own inside a new namespace `aergo-fleet-<pid>` with `taps` taps.
fn in_fleet_namespace<T: Send>(
    taps: usize,
    body: impl FnOnce(&Netns) -> anyhow::Result<T> + Send,
) -> anyhow::Result<T> {
    let ns = Netns::create(&format!("aergo-fleet-{}", std::process::id()), taps)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter()?;
            body(&ns)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the fleet check panicked"))?
    })
}

/// The fleet check: three boxes and a producer process on one network; the clock of a box whose
/// RTC is 5 s off synchronized by the check's NTP server before its node produces; peers, a rising
/// LIB and identical final blocks everywhere; a transfer sent to box 3 final on all; Prometheus
/// scraping the three agents; a power cut of box 2 (finality goes on at 3 of 4; it comes back,
/// syncs and produces); and a fourth box, a full node on an empty disk, that takes a snapshot from
/// its peers and serves the producers' state.
pub fn fleet(env: &Env) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let s = setup(env, d)?;
    in_fleet_namespace(4, |_ns| fleet_body(env, &s))
}

fn fleet_body(env: &Env, s: &Setup) -> anyhow::Result<()> {
    let d = &s.dir;
    // Box 3's RTC is 5 s behind; nothing serves time on the network yet.
    let skewed = chrono_like_utc(-5);
    let (process, genesis_hash, boxes) = s.start_network(env, |i| (i == 3).then_some(skewed.as_str()))?;
    let box1_peer = box_peer(1);
    let logs = |boxes: &[FleetBox]| {
        let mut text = format!("process log (tail):\n{}\n", tail(&process.log(), 30));
        for (i, b) in boxes.iter().enumerate() {
            text.push_str(&format!("box {}:\n{}\n", i + 1, b.vm.boot_lines()));
        }
        text
    };

    // Box 3 comes up with its clock 5 s behind, and no producer box produces before its clock is
    // synchronized: they say so.
    let b3 = &boxes[2];
    wait_for(BOOT_LIMIT, "SSH on box 3", || b3.vm.ssh("true").ok())
        .map_err(|e| anyhow::anyhow!("{e}\n{}", logs(&boxes)))?;
    let offset = b3.clock_offset()?;
    // The RTC's 5 s, and what the emulated clock loses while the machine is busy booting.
    assert!((-30.0..-3.5).contains(&offset), "box 3's clock is {offset:+.3} s off, not 5 s or more behind");
    let mut said = None;
    wait_for(BOOT_LIMIT, "box 3's producer to say it waits for the clock", || {
        said = b3.health_reason("producer");
        said.clone().filter(|r| r.contains("clock"))
    })
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}\nits producer check said {said:?}\nbox 3's node log:\n{}\n{}",
            b3.vm.ssh("tail -n 30 /var/log/aergo/node.log").unwrap_or_else(|e| e.to_string()),
            logs(&boxes)
        )
    })?;
    let t = b3.vm.telemetry(TOKEN).ok_or_else(|| anyhow::anyhow!("no telemetry from box 3"))?;
    assert_eq!(t["host"]["clock"]["synchronized"], false, "{}", t["host"]["clock"]);

    // The NTP server starts: every box synchronizes to it, box 3's clock is stepped.
    let ntp = ntp_server(d)?;
    for (i, b) in boxes.iter().enumerate() {
        // The boxes found no server for their first polls: chrony polls again within 64 s
        // (`maxpoll 6`).
        wait_for(
            Duration::from_secs(240),
            &format!("box {}'s clock synchronized to the bridge", i + 1),
            || {
                b.vm.telemetry(TOKEN).filter(|t| {
                    t["host"]["clock"]["synchronized"] == true && t["host"]["clock"]["server"] == BRIDGE_IP
                })
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}\nNTP server:\n{}", ntp.log()))?;
    }
    let offset = b3.clock_offset()?;
    assert!(offset.abs() < 1.0, "box 3's clock is still {offset:+.3} s off after synchronizing");
    let t = b3.vm.telemetry(TOKEN).ok_or_else(|| anyhow::anyhow!("no telemetry from box 3"))?;
    let reported = t["host"]["clock"]["offset_seconds"].as_f64().unwrap_or(f64::MAX);
    assert!(reported.abs() < 0.5, "box 3 reports an offset of {reported} s");

    // Four producers: every node sees three peers, the LIB rises everywhere, final blocks agree.
    let urls: Vec<String> = boxes.iter().map(|b| b.vm.rpc.clone()).chain([process_rpc()]).collect();
    wait_for(BOOT_LIMIT, "3 peers and a LIB of 3 on every node", || {
        urls.iter()
            .all(|u| {
                rpc_call(u, "chain_info", json!([]))
                    .is_ok_and(|c| c["peers"] == 3 && c["lib_height"].as_u64().unwrap_or(0) >= 3)
            })
            .then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}\n{}", chain_infos(&urls), logs(&boxes)))?;
    let lib = lib_of(&urls[0]);
    wait_for(Duration::from_secs(120), "the LIB to rise on every node", || {
        urls.iter().all(|u| lib_of(u) >= lib + 3).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", logs(&boxes)))?;
    let final_height = urls.iter().map(|u| lib_of(u)).min().unwrap_or(0);
    let hashes: Vec<Option<String>> = urls.iter().map(|u| block_hash(u, final_height)).collect();
    assert!(
        hashes[0].is_some() && hashes.iter().all(|h| *h == hashes[0]),
        "final block {final_height}: {hashes:?}"
    );
    for b in &boxes {
        let t = b.vm.telemetry(TOKEN).ok_or_else(|| anyhow::anyhow!("no telemetry"))?;
        assert_eq!(t["chain"]["peers"], 3, "{}", t["chain"]);
    }

    // A transfer sent to box 3 is included and final on every node.
    let sent = crate::tools::run(
        Command::new(sibling(env, "aergo"))
            .args(["--json", "send", "--rpc", &boxes[2].vm.rpc, "--key"])
            .arg(&s.faucet)
            .args(["--to", &s.producers[0].address, "--amount", "1000", "--wait"]),
    )?;
    let sent: Value = serde_json::from_str(&sent)?;
    let tx = sent["hash"].as_str().unwrap_or_default().to_string();
    let included = sent["receipt"]["block_height"].as_u64().unwrap_or(0);
    assert!(included > 0 && sent["receipt"]["status"] == "success", "{sent}");
    wait_for(Duration::from_secs(120), "the transfer final on every node", || {
        urls.iter()
            .all(|u| {
                lib_of(u) >= included
                    && rpc_call(u, "get_receipt", json!([tx])).is_ok_and(|r| {
                        r["block_height"] == included && r["block_hash"] == sent["receipt"]["block_hash"]
                    })
            })
            .then_some(())
    })?;

    // Each agent serves HTTPS with the certificate its box made; the fingerprint its node key signs
    // in telemetry is the one it serves with. Prometheus pins each box's certificate, scrapes the
    // three agents and sees three heights.
    let mut certs = Vec::new();
    for (i, b) in boxes.iter().enumerate() {
        let pem = b.vm.ssh("cat /var/lib/aergo/agent-tls/cert.pem")?;
        let file = d.join(format!("agent-cert-{}.pem", i + 1));
        std::fs::write(&file, &pem)?;
        let served = check::agent_certificate(&b.vm.agent)?;
        let t = b.vm.telemetry(TOKEN).ok_or_else(|| anyhow::anyhow!("box {} telemetry", i + 1))?;
        assert_eq!(t["agent"]["tls_fingerprint"].as_str(), Some(served.as_str()), "box {}", i + 1);
        assert_eq!(aergo_telemetry::client::pem_fingerprint(&pem), Some(served), "box {}", i + 1);
        certs.push((i + 1, file));
    }
    let (prom, prom_url) = prometheus(d, &certs)?;
    wait_for(Duration::from_secs(120), "Prometheus to scrape three heights", || {
        let heights = prometheus_query(&prom_url, "aergo_chain_height");
        (heights.len() == 3 && heights.iter().all(|(_, h)| *h >= included as f64)).then_some(heights)
    })
    .map_err(|e| anyhow::anyhow!("{e}\nprometheus:\n{}", prom.log()))?;
    drop(prom);

    // A power cut of box 2, held off: finality goes on with three of four.
    let b2 = &boxes[1];
    b2.vm.monitor("system_reset")?;
    b2.vm.monitor("stop")?;
    let cut = lib_of(&urls[0]);
    let alive = [&urls[0], &urls[2], &urls[3]];
    wait_for(Duration::from_secs(120), "finality to go on without box 2", || {
        alive.iter().all(|u| lib_of(u) >= cut + 4).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", logs(&boxes)))?;
    // Power back: box 2 boots, syncs and produces again.
    b2.vm.monitor("cont")?;
    let back = lib_of(&urls[0]);
    wait_for(BOOT_LIMIT, "box 2 to sync past the blocks it missed", || {
        (lib_of(&b2.vm.rpc) > back).then_some(())
    })
    .map_err(|e| {
        // What tells why first (a report may keep only the start): every node's figures, box 2's
        // boots and its node's log.
        anyhow::anyhow!(
            "{e} (LIB {back} when it was powered back)\n{}\n{}\nbox 2's boots:\n{}\nbox 2's node log:\n{}\n{}",
            chain_infos(&urls),
            bans(&urls),
            b2.vm.boot_lines(),
            b2.vm.ssh("tail -n 40 /var/log/aergo/node.log").unwrap_or_else(|e| e.to_string()),
            logs(&boxes)
        )
    })?;
    let box2_address = s.producers[1].address.clone();
    wait_for(BOOT_LIMIT, "box 2 to produce a final block again", || {
        let lib = lib_of(&urls[0]);
        (back + 1..=lib)
            .any(|h| {
                rpc_call(&urls[0], "get_block", json!([h, null, false]))
                    .is_ok_and(|b| b["header"]["producer"] == box2_address.as_str())
            })
            .then_some(())
    })
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}\nbox 2's producer check: {:?}\n{}\nbox 2's node log:\n{}\n{}",
            b2.health_reason("producer"),
            chain_infos(&urls),
            b2.vm.ssh("tail -n 60 /var/log/aergo/node.log").unwrap_or_else(|e| e.to_string()),
            logs(&boxes)
        )
    })?;

    // Box 3 leaves (this machine runs three boxes at a time): box 1, box 2 and the process keep
    // finality. A fourth box joins as a second box for box 2's producer key, with an empty disk.
    boxes[2].vm.monitor("quit")?;
    let target = lib_of(&urls[0]);
    assert!(target > 20, "the chain is too short for a snapshot: {target}");
    let (provision, files) = s.producer_provision(
        4,
        1,
        &genesis_hash,
        &format!("bootstrap = [\"{box1_peer}\"]\nsnapshot_after_blocks = 20\n"),
    )?;
    let files: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    // First flashed with a listen address that is not a multiaddr: provisioning refuses the file,
    // says why on the serial console, and the box is still reachable over SSH (its network and
    // keys are applied for that) — no boot loop. The provider fixes the file over SSH and reboots.
    let bad = provision.replace("[p2p]\n", "[p2p]\nlisten = \"0.0.0.0:7846\"\n");
    let disk = s.flash(env, 4, &bad, &files)?;
    let b4 = s.boot(env, 4, &disk, None)?;
    b4.vm.wait_serial("aergo: provision.toml was not applied: ", 1, BOOT_LIMIT)?;
    let said = b4.vm.serial_text();
    assert!(said.contains("p2p.listen") && said.contains("is not a multiaddr"), "{}", b4.vm.boot_lines());
    let status = wait_for(Duration::from_secs(120), "SSH on the box whose provisioning was refused", || {
        b4.vm.ssh("aergo-ctl status; cat /run/aergo/provision.log").ok()
    })?;
    assert!(status.contains("was not applied; so that the box can be reached"), "{status}");
    Setup::bad_provisionings(s, &b4, &provision, &genesis_hash)?;
    let fix = b4.vm.ssh_with_input(
        "cat > /boot/provision.toml && sync && { (sleep 1; reboot) >/dev/null 2>&1 & }",
        &provision,
    )?;
    drop(fix);
    // From here the box boots with the good file: the time to join is counted from the reboot.
    let rebooted = Instant::now();
    b4.vm.wait_serial("aergo: applied /boot/provision.toml", 1, BOOT_LIMIT)?;
    let b4_log = || b4.vm.ssh("tail -n 40 /var/log/aergo/node.log").unwrap_or_else(|e| e.to_string());
    let state_root = |url: &str, height: u64| {
        rpc_call(url, "get_block", json!([height, null, false]))
            .ok()
            .and_then(|b| b["header"]["state_root"].as_str().map(str::to_string))
    };
    // Box 4 takes a snapshot from its peers: final at the producers' final height of its power-on
    // or later, with their state root.
    let (served, root) = wait_for(BOOT_LIMIT, "box 4 to serve the producers' final state", || {
        let h = lib_of(&b4.vm.rpc);
        let root = state_root(&b4.vm.rpc, h)?;
        (h >= target && state_root(&urls[0], h).as_ref() == Some(&root)).then_some((h, root))
    })
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}\n{}\nbox 4:\n{}\nbox 4's node log:\n{}",
            chain_infos(&[b4.vm.rpc.clone(), urls[0].clone()]),
            b4.vm.boot_lines(),
            b4_log()
        )
    })?;
    let joined = rebooted.elapsed();
    for u in [&urls[0], &urls[1], &urls[3]] {
        assert_eq!(state_root(u, served).as_ref(), Some(&root), "{u} at {served}");
    }
    // It started from the snapshot: the first blocks are not on it.
    let early = rpc_call(&b4.vm.rpc, "get_block", json!([1, null, false]));
    assert!(
        early.as_ref().is_err_and(|e| e.to_string().contains("not on this node")),
        "box 4 has block 1: {early:?}"
    );
    println!(
        "fleet: box 4 took a snapshot and served final height {served}'s state {joined:.0?} after its reboot with a good provision.toml"
    );

    // Box 4 holds box 2's key while box 2 still signs with it: it refuses to produce and says why.
    wait_for(Duration::from_secs(120), "box 4 to refuse to produce: another box signs with its key", || {
        b4.health_reason("producer").filter(|r| r.contains("another box signs"))
    })
    .map_err(|e| anyhow::anyhow!("{e}\nbox 4's node log:\n{}", b4_log()))?;
    // The key moves: box 2's node held stopped, the key exported with its slashing record, box 2
    // shut down; box 4's node stopped, the key imported with the record, started again.
    let b2 = &boxes[1];
    let pass = format!("echo '{PASSPHRASE}' > /run/key.pass && ");
    b2.vm.ssh("aergo-ctl stop node")?;
    b2.vm.ssh(&format!(
        "{pass}aergo-node key export --config /etc/aergo/node.toml --out /data/producer-key.json \
         --passphrase-file /run/key.pass; rm -f /run/key.pass"
    ))?;
    let exported = b2.vm.ssh("cat /data/producer-key.json")?;
    let record = serde_json::from_str::<Value>(&exported)?["slashing_protection"]["last_signed_slot"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no slashing record in the export: {exported}"))?;
    b2.vm.monitor("quit")?;
    b4.vm.ssh("aergo-ctl stop node")?;
    b4.vm.ssh_with_input("cat > /data/producer-key.json", &exported)?;
    b4.vm.ssh(&format!(
        "{pass}aergo-node key import --config /etc/aergo/node.toml --in /data/producer-key.json \
         --passphrase-file /run/key.pass; status=$?; rm -f /run/key.pass; aergo-ctl start node; exit $status"
    ))?;
    // Box 4 takes over: a final block of box 2's key, from a slot above the record, and no
    // equivocation anywhere (nothing to jail).
    let genesis_ms = rpc_call(&process_rpc(), "get_block", json!([0, null, false]))?["header"]
        ["timestamp_ms"]
        .as_u64()
        .unwrap_or_default();
    let producer1 = s.producers[1].address.clone();
    let moved_at = lib_of(&urls[0]);
    let live = [urls[0].clone(), urls[3].clone(), b4.vm.rpc.clone()];
    let (height, slot) = wait_for(BOOT_LIMIT, "box 4 to produce a final block with the moved key", || {
        let lib = lib_of(&urls[0]);
        (moved_at + 1..=lib).find_map(|h| {
            let b = rpc_call(&urls[0], "get_block", json!([h, null, false])).ok()?;
            let ts = b["header"]["timestamp_ms"].as_u64()?;
            (b["header"]["producer"] == producer1.as_str())
                .then_some((h, ts.saturating_sub(genesis_ms) / 1000))
        })
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}\nbox 4's node log:\n{}", chain_infos(&live), b4_log()))?;
    assert!(
        slot > record,
        "block {height} of the moved key is in slot {slot}, at or below the record {record}"
    );
    for u in &live {
        let m = rpc_call(u, "node_metrics", json!([]))?;
        assert_eq!(m["equivocations_total"], 0, "{u}: {m}");
    }
    println!(
        "fleet: the key moved with its record (slot {record}); box 4 signed slot {slot} at height {height}"
    );
    for b in [&boxes[0], &b4] {
        let _ = b.vm.monitor("quit");
    }
    drop(ntp);
    drop(process);
    Ok(())
}

/// `offset_s` seconds from now in UTC, as QEMU's `-rtc base=` takes it.
fn chrono_like_utc(offset_s: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()
        as i64
        + offset_s;
    let (days, secs) = (now.div_euclid(86_400), now.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What [`boot_benchmark`] measures for one box: seconds from QEMU's start.
pub struct BootTimes {
    pub box_number: usize,
    /// The kernel's first line on the serial port (firmware and GRUB before it).
    pub kernel: f64,
    /// `aergo: system ready` (the kernel, provisioning, services).
    pub ready: f64,
    /// The node's first peer.
    pub peer: f64,
    /// The first final block on this box.
    pub first_final: f64,
}

/// Boots a three-box network (and the check's producer process, with the NTP server up from the
/// start) and times each box from power-on to its first final block.
pub fn boot_benchmark(env: &Env) -> anyhow::Result<Vec<BootTimes>> {
    let tmp = tempfile::tempdir()?;
    let s = setup(env, tmp.path())?;
    in_fleet_namespace(3, |_ns| {
        let _ntp = ntp_server(&s.dir)?;
        let (process, _, boxes) = s.start_network(env, |_| None)?;
        let mut times: Vec<[Option<f64>; 4]> = vec![[None; 4]; boxes.len()];
        let deadline = Instant::now() + BOOT_LIMIT * 2;
        while times.iter().any(|t| t.iter().any(Option::is_none)) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "no first final block on every box in {:?}\nprocess:\n{}",
                BOOT_LIMIT * 2,
                tail(&process.log(), 30)
            );
            for (b, t) in boxes.iter().zip(times.iter_mut()) {
                let at = b.started.elapsed().as_secs_f64();
                if t[0].is_none() && b.vm.serial_text().contains("Linux version") {
                    t[0] = Some(at);
                }
                if t[1].is_none() && b.vm.serial_text().contains("aergo: system ready") {
                    t[1] = Some(at);
                }
                if t[1].is_some() && (t[2].is_none() || t[3].is_none()) {
                    if let Some(c) = b.chain() {
                        if t[2].is_none() && c["peers"].as_u64().unwrap_or(0) > 0 {
                            t[2] = Some(at);
                        }
                        if t[3].is_none() && c["lib_height"].as_u64().unwrap_or(0) > 0 {
                            t[3] = Some(at);
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for b in &boxes {
            let _ = b.vm.monitor("quit");
        }
        Ok(times
            .iter()
            .enumerate()
            .map(|(i, t)| BootTimes {
                box_number: i + 1,
                kernel: t[0].unwrap_or_default(),
                ready: t[1].unwrap_or_default(),
                peer: t[2].unwrap_or_default(),
                first_final: t[3].unwrap_or_default(),
            })
            .collect())
    })
}
