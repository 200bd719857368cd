//! `aergo-image test`: the appliance checked from the outside, as the test suite does
//! (`tests/tests/appliance.rs` calls these): the kernel-config check; the image built, booted in QEMU
//! and reached only through the ports QEMU forwards to loopback (agent `/readyz` and telemetry with OS
//! version and slot, node height, SSH, the console on the serial port), a hard reset after which the
//! same chain continues with the same node key; and updates — a signed bundle boots the other slot, a
//! tampered one is refused, a release whose node cannot start is rolled back by the box itself.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where the checks run: the workspace (board files, kernel-config) and the `aergo-image` program.
pub struct Env {
    pub workspace: PathBuf,
    pub program: PathBuf,
}

/// Polls `f` every 100 ms until it gives a value or `limit` passes.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An HTTP answer: status, headers (lower-case names) and body.
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.body)
            .map_err(|e| anyhow::anyhow!("not JSON ({}): {e}: {}", self.status, self.body))
    }
}

/// `text` with everything but letters, digits and `_` percent-encoded (a URL query's value).
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET url` with an optional bearer token; any status is an answer, not an error.
pub fn http_get(url: &str, token: Option<&str>) -> anyhow::Result<HttpAnswer> {
    let (status, headers, body) = http_request(url, token, None)?;
    Ok(HttpAnswer { status, headers, body: String::from_utf8(body)? })
}

/// A GET whose body is bytes (up to 256 MiB): status, headers, body.
pub fn http_get_bytes(url: &str, token: Option<&str>) -> anyhow::Result<RawAnswer> {
    http_request(url, token, None)
}

/// A POST of the JSON `body` with the bearer `token`; any status is an answer.
pub fn http_post(url: &str, token: Option<&str>, body: &str) -> anyhow::Result<HttpAnswer> {
    let (status, headers, body) = http_request(url, token, Some(body))?;
    Ok(HttpAnswer { status, headers, body: String::from_utf8(body)? })
}

pub type RawAnswer = (u16, Vec<(String, String)>, Vec<u8>);

fn http_request(url: &str, token: Option<&str>, body: Option<&str>) -> anyhow::Result<RawAnswer> {
    // An agent serving HTTPS: its certificate is taken as it comes (see `agent_certificate` for
    // checking it against what the agent's signed telemetry says).
    if url.starts_with("https://") {
        use aergo_telemetry::client;
        let a = client::send(&client::Request {
            url,
            token,
            body,
            pin: &client::Pin::Learn,
            timeout: Duration::from_secs(70),
            max_bytes: 256 << 20,
        })?;
        return Ok((a.status, a.headers, a.body));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(70)))
        .build()
        .into();
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut resp = match body {
        None => {
            let mut req = agent.get(url);
            if let Some(a) = &auth {
                req = req.header("authorization", a);
            }
            req.call()?
        }
        Some(body) => {
            let mut req = agent.post(url).header("content-type", "application/json");
            if let Some(a) = &auth {
                req = req.header("authorization", a);
            }
            req.send(body)?
        }
    };
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let body = resp.body_mut().with_config().limit(256 << 20).read_to_vec()?;
    Ok((status, headers, body))
}

/// The SHA-256 fingerprint of the certificate an `https://` agent serves with.
pub fn agent_certificate(url: &str) -> anyhow::Result<String> {
    use aergo_telemetry::client;
    let a = client::send(&client::Request {
        url: &format!("{}/livez", url.trim_end_matches('/')),
        token: None,
        body: None,
        pin: &client::Pin::Learn,
        timeout: Duration::from_secs(30),
        max_bytes: 1 << 10,
    })?;
    a.fingerprint.ok_or_else(|| anyhow::anyhow!("{url} did not answer over TLS"))
}

/// A small HTTP server of the files in one directory (`GET /NAME`), on a loopback port: what a
/// provider's update server is to a box (QEMU's user network reaches it at 10.0.2.2). Stops when
/// dropped.
pub struct FileServer {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FileServer {
    pub fn start(dir: &Path) -> anyhow::Result<FileServer> {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (dir, flag) = (dir.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let dir = dir.clone();
                        std::thread::spawn(move || {
                            let _ = serve_one(stream, &dir);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        Ok(FileServer { port, stop, thread: Some(thread) })
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(mut stream: std::net::TcpStream, dir: &Path) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    serve_request(&mut stream, dir)
}

/// Standard input and output as one stream (`aergo-image http-stdio`).
pub struct Stdio;

impl std::io::Read for Stdio {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::io::stdin().read(buf)
    }
}

impl std::io::Write for Stdio {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

/// Answers one `GET /NAME` on `stream` with the file `dir/NAME` (a plain name), else 404.
pub fn serve_request(stream: &mut (impl std::io::Read + std::io::Write), dir: &Path) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        if stream.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let name = head.split_whitespace().nth(1).unwrap_or_default().trim_start_matches('/').to_string();
    let file = (!name.is_empty() && !name.contains('/') && !name.starts_with('.'))
        .then(|| std::fs::File::open(dir.join(&name)).ok())
        .flatten();
    match file {
        Some(mut f) => {
            let len = f.metadata()?.len();
            write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n")?;
            std::io::copy(&mut f, stream)?;
        }
        None => write!(stream, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?,
    }
    stream.flush()
}

/// The kernel-config check passes on the fragments, and names an option that does not survive.
pub fn kernel_config(env: &Env) -> anyhow::Result<()> {
    let check = env.workspace.join("kernel-config/check.sh");
    let out = Command::new(&check).output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("requested options survived"), "{text}");

    let dir = tempfile::tempdir()?;
    let bogus = dir.path().join("bogus.config");
    std::fs::write(&bogus, "CONFIG_AERGO_DOES_NOT_EXIST=y\nCONFIG_NO_HZ_FULL=y\n")?;
    let out = Command::new(&check).arg(&bogus).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("bogus.config: requested 'CONFIG_AERGO_DOES_NOT_EXIST=y', got '<absent>'"),
        "{text}"
    );
    assert!(!text.contains("CONFIG_NO_HZ_FULL"), "options that survive are not named: {text}");
    Ok(())
}

/// A QEMU run of the image, stopped when dropped.
pub struct Vm {
    pub(crate) pidfile: PathBuf,
    pub(crate) monitor: PathBuf,
    pub(crate) serial: PathBuf,
    /// The node's JSON-RPC URL and the agent's base URL, as the test reaches them.
    pub rpc: String,
    pub agent: String,
    pub(crate) ssh_host: String,
    pub(crate) ssh_port: String,
    pub(crate) ssh_key: PathBuf,
}

impl Vm {
    pub fn serial_text(&self) -> String {
        let bytes = std::fs::read(&self.serial).unwrap_or_default();
        String::from_utf8_lossy(&bytes).to_string()
    }

    /// Sends `command` to the QEMU monitor (`system_reset`, `stop`, `cont`, `quit`).
    pub fn monitor(&self, command: &str) -> anyhow::Result<()> {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&self.monitor)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        s.write_all(format!("{command}\n").as_bytes())?;
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    }

    /// `ssh` to the box as root with the provisioned key, without host key checks.
    fn ssh_command(&self, command: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-p", &self.ssh_port, "-i"])
            .arg(&self.ssh_key)
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
            ])
            .args(["-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"])
            .arg(format!("root@{}", self.ssh_host))
            .arg(command);
        cmd
    }

    /// Runs `command` on the box over SSH (key login as root).
    pub fn ssh(&self, command: &str) -> anyhow::Result<String> {
        let out = self.ssh_command(command).output()?;
        anyhow::ensure!(out.status.success(), "ssh {command:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// Runs `command` on the box over SSH with `input` on its standard input.
    pub fn ssh_with_input(&self, command: &str, input: &str) -> anyhow::Result<String> {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = self
            .ssh_command(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child.stdin.take().ok_or_else(|| anyhow::anyhow!("no stdin"))?.write_all(input.as_bytes())?;
        let out = child.wait_with_output()?;
        anyhow::ensure!(out.status.success(), "ssh {command:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    pub fn rpc(&self, method: &str) -> anyhow::Result<Value> {
        rpc_call(&self.rpc, method, json!([]))
    }
}

/// One JSON-RPC call to `url`: its result, or an error with the node's error message.
pub fn rpc_call(url: &str, method: &str, params: Value) -> anyhow::Result<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))).build().into();
    let mut resp = agent.post(url).header("content-type", "application/json").send(body)?;
    let v: Value = serde_json::from_str(&resp.body_mut().read_to_string()?)?;
    if let Some(e) = v.get("error") {
        anyhow::bail!("{method}: {}", e["message"].as_str().unwrap_or_default());
    }
    Ok(v["result"].clone())
}

impl Vm {
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pidfile).ok()?.trim().parse().ok()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

pub(crate) fn field(out: &str, name: &str) -> anyhow::Result<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("{name}= missing from:\n{out}"))
}

impl Env {
    pub(crate) fn aergo_image(&self, args: &[&str], extra: &[&Path]) -> anyhow::Result<String> {
        let out = Command::new(&self.program).current_dir(&self.workspace).args(args).args(extra).output()?;
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        anyhow::ensure!(out.status.success(), "aergo-image {args:?} failed:\n{text}");
        Ok(text)
    }
}

/// Builds an image into `dir/name`; returns the qcow2 and the root slot image.
pub(crate) fn build_image(
    env: &Env,
    dir: &Path,
    name: &str,
    version: &str,
    extra: &[&str],
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let out = dir.join(name);
    // The suite's binaries are test builds (the `test-hooks` feature, see scripts/test.sh).
    let mut args = vec!["build", "--allow-test-hooks", "--os-version", version];
    args.extend_from_slice(extra);
    let text = env.aergo_image(&[args.as_slice(), &["--out"]].concat(), &[&out])?;
    Ok((PathBuf::from(field(&text, "QCOW2")?), out.join("rootfs.squashfs")))
}

/// An SSH key pair in `dir/ssh_key` (what [`Vm::ssh`] logs in with); returns the public half.
pub(crate) fn ssh_key_pair(dir: &Path) -> anyhow::Result<String> {
    let key = dir.join("ssh_key");
    let status =
        Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).status()?;
    anyhow::ensure!(status.success(), "ssh-keygen failed");
    Ok(std::fs::read_to_string(key.with_extension("pub"))?.trim().to_string())
}

/// A provision.toml for a devnet producer with `token`, and an SSH key pair whose public half is
/// authorized (the private key is `dir/ssh_key`).
fn provision_file(dir: &Path, token: &str) -> anyhow::Result<PathBuf> {
    provision_file_with(dir, token, None)
}

/// [`provision_file`] with an admin token for the agent's actions too.
fn provision_file_with(dir: &Path, token: &str, admin: Option<&str>) -> anyhow::Result<PathBuf> {
    let public = ssh_key_pair(dir)?;
    let provision = dir.join("provision.toml");
    let admin = admin.map(|a| format!("admin_token = \"{a}\"\n")).unwrap_or_default();
    std::fs::write(
        &provision,
        format!(
            "hostname = \"aergo-qemu\"\n[network]\ndhcp = true\n[node]\nrole = \"producer\"\nchain = \"devnet\"\n[agent]\ntoken = \"{token}\"\n{admin}[ssh]\nauthorized_keys = [\"{public}\"]\n"
        ),
    )?;
    Ok(provision)
}

fn start_vm(env: &Env, dir: &Path, qcow2: &Path, drives: &[&Path]) -> anyhow::Result<Vm> {
    start_vm_serving(env, dir, qcow2, drives, None)
}

/// [`start_vm`], with `served`'s files at [`crate::qemu::GUEST_HTTP`] for the box.
fn start_vm_serving(
    env: &Env,
    dir: &Path,
    qcow2: &Path,
    drives: &[&Path],
    served: Option<&Path>,
) -> anyhow::Result<Vm> {
    let (serial, pidfile, monitor) = (dir.join("serial.log"), dir.join("qemu.pid"), dir.join("monitor.sock"));
    let mut extra: Vec<&Path> = vec![Path::new("--image"), qcow2, Path::new("--serial-log"), &serial];
    extra.extend([Path::new("--pidfile"), &pidfile, Path::new("--monitor"), &monitor]);
    for d in drives {
        extra.extend([Path::new("--drive"), *d]);
    }
    if let Some(s) = served {
        extra.extend([Path::new("--guest-http"), s]);
    }
    let text = env.aergo_image(&["run", "--detach", "--memory-mib", "1536"], &extra)?;
    Ok(Vm {
        pidfile,
        monitor,
        serial,
        rpc: field(&text, "AERGO_RPC")?,
        agent: field(&text, "AERGO_AGENT")?,
        ssh_host: "127.0.0.1".into(),
        ssh_port: field(&text, "AERGO_SSH_PORT")?,
        ssh_key: dir.join("ssh_key"),
    })
}

const BOOT_LIMIT: Duration = Duration::from_secs(300);

/// Build, first boot with provisioning, agent/RPC/SSH/serial checks, then a hard reset.
pub fn boot_and_hard_reset(env: &Env) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let token = "5a".repeat(32);
    let provision = provision_file(dir.path(), &token)?;
    let (qcow2, _) = build_image(
        env,
        dir.path(),
        "image",
        "0.1.0-test",
        &["--serial-console", "--provision", provision.to_str().unwrap_or_default()],
    )?;
    // Flashed onto a disk larger than the image: the data partition grows to the end at first boot.
    let status = Command::new("qemu-img").arg("resize").arg("-q").arg(&qcow2).arg("4G").status()?;
    anyhow::ensure!(status.success(), "qemu-img resize failed");
    let vm = start_vm(env, dir.path(), &qcow2, &[])?;
    let boot_limit = BOOT_LIMIT;

    // The agent answers and is ready; the node produces blocks.
    wait_for(boot_limit, "the agent's /readyz through the forwarded port", || {
        http_get(&format!("{}/readyz", vm.agent), None).ok().filter(|a| a.status == 200)
    })
    .map_err(|e| anyhow::anyhow!("{e}\nserial:\n{}", vm.serial_text()))?;
    let first = wait_for(boot_limit, "a height of at least 3", || {
        vm.rpc("chain_info").ok().and_then(|c| c["height"].as_u64()).filter(|h| *h >= 3)
    })?;
    let key = vm.rpc("node_info")?["node_key"].as_str().unwrap_or_default().to_string();
    assert_eq!(key.len(), 64);
    // Long enough up that the new boot's node is younger.
    std::thread::sleep(Duration::from_secs(5));

    // The agent reports the OS version and the booted slot, with the provisioned hostname and token.
    let telemetry = http_get(&format!("{}/v1/telemetry", vm.agent), Some(&token))?;
    assert_eq!(telemetry.status, 200, "{}", telemetry.body);
    let t = telemetry.json()?;
    assert_eq!(t["host"]["boot_slot"], "A");
    assert!(t["host"]["os"].as_str().unwrap_or_default().starts_with("AERGO OS "), "{}", t["host"]);
    // chrony runs (the time service, before the node) and the agent reads it. This box has no NTP
    // server to reach (QEMU's user network): not synchronized, and a devnet producer needs none.
    let clock = wait_for(Duration::from_secs(60), "the agent to read chrony", || {
        let t = vm.telemetry(&token)?;
        (t["host"]["clock"]["source"] == "chrony").then(|| t["host"]["clock"].clone())
    })?;
    assert_eq!(clock["synchronized"], false, "{clock}");
    assert_eq!(t["host"]["hostname"], "aergo-qemu");
    assert_eq!(http_get(&format!("{}/v1/telemetry", vm.agent), Some("wrong"))?.status, 401);

    // First boot applied provision.toml; the console's first screen is on the serial port.
    let serial_text = vm.serial_text();
    assert!(serial_text.contains("aergo: applied /boot/provision.toml"), "{}", vm.boot_lines());
    assert!(serial_text.contains("aergo: firewall: nftables policy loaded"), "{}", vm.boot_lines());
    // A devnet box is on no network: its p2p port stays closed.
    assert!(serial_text.contains("p2p off (no p2p port open)"), "{}", vm.boot_lines());
    // The ports come from `aergo-console p2p-ports`: it ran on the box and answered.
    assert!(!serial_text.contains("p2p ports unknown"), "{}", vm.boot_lines());
    assert!(
        serial_text.contains("Dashboard") && serial_text.contains("AERGO"),
        "no console on the serial port"
    );

    // SSH with the provisioned key (passwords are refused); aergo-ctl, as the console's Operations use it.
    let status = wait_for(Duration::from_secs(60), "an SSH login with the provisioned key", || {
        vm.ssh("aergo-ctl status").ok()
    })?;
    assert!(status.contains("node running") && status.contains("agent running"), "{status}");
    assert!(status.contains("firewall running"), "{status}");
    assert!(vm.ssh("cat /etc/os-release")?.contains("AERGO OS"));
    // A repository added while the node runs: the firewall's watch opens its p2p port (the node's
    // own start loaded the ports of the settings it started with).
    vm.ssh(
        "aergo-node testnet --nodes 1 --out /tmp/lab --chain-id lab --base-port 7860 > /dev/null \
         && printf '[p2p]\\nenabled = true\\nlisten = [\"/ip4/0.0.0.0/tcp/7860\"]\\n' > /tmp/lab/repo.toml \
         && aergo repo add lab --genesis /tmp/lab/genesis.toml --settings /tmp/lab/repo.toml",
    )?;
    wait_for(
        Duration::from_secs(30),
        "the firewall to open the port of a repository added at run time",
        || {
            vm.ssh("nft list chain inet aergo input")
                .ok()
                .filter(|rules| rules.contains("tcp dport 7860 accept"))
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}\n{}", vm.ssh("cat /var/log/aergo/firewall.log").unwrap_or_default()))?;
    assert!(serial_text.contains("aergo: data partition grown from 512 MiB to "), "{}", vm.boot_lines());
    assert!(serial_text.contains("aergo: data file system grown to "), "{}", vm.boot_lines());
    let data_kib = data_size_kib(&vm.ssh("df -k /data")?)?;
    assert!(data_kib > 2_900_000, "/data has {data_kib} KiB on a 4 GiB disk");

    // Power loss: the same chain continues, with the same node key.
    let uptime = vm.rpc("node_info")?["uptime_s"].as_u64().unwrap_or(0);
    vm.monitor("system_reset")?;
    wait_for(boot_limit, "the node of the new boot to answer", || {
        vm.rpc("node_info").ok().filter(|i| i["uptime_s"].as_u64().is_some_and(|u| u < uptime))
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", vm.what_it_is_doing()))?;
    let after = wait_for(boot_limit, "the chain to go on past its height before the reset", || {
        vm.rpc("chain_info").ok().and_then(|c| c["height"].as_u64()).filter(|h| *h > first)
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", vm.what_it_is_doing()))?;
    assert!(after > first);
    // From the second boot on, the cores but the first are reserved, and the node executes on them.
    let cmdline = vm.ssh("cat /proc/cmdline /sys/devices/system/cpu/isolated")?;
    assert!(cmdline.contains("isolcpus=1 nohz_full=1 rcu_nocbs=1"), "{cmdline}");
    assert_eq!(vm.rpc("node_info")?["exec_cores"], json!([1]));
    assert_eq!(vm.rpc("node_info")?["node_key"].as_str().unwrap_or_default(), key, "the node key changed");
    // Grown once: the second boot leaves the partition as it is.
    assert_eq!(vm.serial_text().matches("aergo: data partition grown").count(), 1, "{}", vm.boot_lines());
    assert_eq!(data_size_kib(&vm.ssh("df -k /data")?)?, data_kib);
    let _ = vm.monitor("quit");
    Ok(())
}

/// The size column of `df -k`'s one file system.
fn data_size_kib(df: &str) -> anyhow::Result<u64> {
    df.lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no size in df's output:\n{df}"))
}

impl Vm {
    pub fn telemetry(&self, token: &str) -> Option<Value> {
        http_get(&format!("{}/v1/telemetry", self.agent), Some(token))
            .ok()
            .filter(|a| a.status == 200)?
            .json()
            .ok()
    }

    /// The last lines of the box's own logs of `sources`, read through its agent (`/v1/logs`), for
    /// the message of a failed check.
    pub fn agent_logs(&self, token: &str, sources: &[&str]) -> String {
        let mut out = String::new();
        for source in sources {
            let url = format!("{}/v1/logs?source={source}&limit=1000", self.agent);
            let page = http_get(&url, Some(token)).and_then(|a| a.json());
            let lines: Vec<String> = match &page {
                Ok(p) => p["lines"]
                    .as_array()
                    .map(|l| l.iter().filter_map(|l| l["text"].as_str().map(str::to_string)).collect())
                    .unwrap_or_default(),
                Err(e) => vec![format!("(not readable through the agent: {e})")],
            };
            out.push_str(&format!("--- {source} log (last lines) ---\n"));
            for line in lines.iter().skip(lines.len().saturating_sub(30)) {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Pulls the USB stick `old` and plugs in `file` as `new` (monitor hot-plug on the xHCI bus).
    fn swap_stick(&self, old: &str, new: &str, file: &Path) -> anyhow::Result<()> {
        self.monitor(&format!("device_del {old}"))?;
        std::thread::sleep(Duration::from_secs(2));
        self.plug_stick(new, file)
    }

    /// Plugs in `file` as the USB stick `new`.
    fn plug_stick(&self, new: &str, file: &Path) -> anyhow::Result<()> {
        self.monitor(&format!(
            "drive_add 0 if=none,id=drive-{new},format=raw,readonly=on,file={}",
            file.display()
        ))?;
        self.monitor(&format!("device_add usb-storage,bus=xhci.0,drive=drive-{new},id={new}"))?;
        Ok(())
    }

    pub fn wait_serial(&self, text: &str, count: usize, limit: Duration) -> anyhow::Result<()> {
        wait_for(limit, &format!("{count}× {text:?} on the serial port"), || {
            (self.serial_text().matches(text).count() >= count).then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}\nserial (boot lines):\n{}", self.boot_lines()))
    }

    /// For a check that timed out: the serial console's last lines, and, when SSH answers, the
    /// services' state and the node's log, so that a failure says where the box was.
    pub fn what_it_is_doing(&self) -> String {
        let serial = self.serial_text();
        let lines: Vec<&str> = serial.split(['\n', '\r']).filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        let box_side = self
            .ssh("aergo-ctl status; uptime; tail -n 40 /var/log/aergo/node.log 2>&1; true")
            .unwrap_or_else(|e| format!("(no SSH: {e})"));
        format!("the serial console's last lines:\n{tail}\n--- on the box:\n{box_side}")
    }

    /// The lines the box writes about itself (kernel command lines and `aergo:` messages).
    pub fn boot_lines(&self) -> String {
        let text = self.serial_text();
        text.split(['\n', '\r'])
            .filter_map(|l| l.find("aergo: ").or_else(|| l.find("Command line: ")).map(|i| &l[i..]))
            .map(|l| l.chars().take(160).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// How a release under test is broken.
#[derive(Clone, Copy)]
enum Broken {
    /// The node exits at once: the slot boots but never becomes healthy.
    Node,
    /// The root's init exits: the kernel panics before any service runs.
    Init,
}

/// A copy of `rootfs` broken as `how` says.
fn broken_rootfs(dir: &Path, rootfs: &Path, how: Broken) -> anyhow::Result<PathBuf> {
    let name = match how {
        Broken::Node => "broken-node",
        Broken::Init => "broken-init",
    };
    let tree = dir.join(format!("{name}-tree"));
    let out = dir.join(format!("{name}.squashfs"));
    let status =
        Command::new("unsquashfs").args(["-q", "-no-progress", "-d"]).arg(&tree).arg(rootfs).status()?;
    anyhow::ensure!(status.success(), "unsquashfs failed");
    let (file, script) = match how {
        Broken::Node => {
            ("usr/bin/aergo-node", "#!/bin/sh\necho 'this node is broken on purpose' >&2\nexit 1\n")
        }
        // The line goes to the serial console through the UART's transmit buffer, which nothing
        // drains once the kernel panics: wait before exiting so that it is out (a panic at once
        // lost it on a loaded CI machine).
        Broken::Init => {
            ("sbin/init", "#!/bin/sh\necho 'this init is broken on purpose'\n/bin/busybox sleep 3\nexit 1\n")
        }
    };
    // Replace the file itself, never what a link points to (sbin/init links to BusyBox).
    let path = tree.join(file);
    std::fs::remove_file(&path)?;
    std::fs::write(&path, script)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let status = Command::new("mksquashfs")
        .arg(&tree)
        .arg(&out)
        .args(["-comp", "xz", "-all-root", "-noappend", "-quiet", "-no-progress"])
        .status()?;
    anyhow::ensure!(status.success(), "mksquashfs failed");
    Ok(out)
}

/// Updates told by Horde through the agent (`install-update`, bundles the test serves on its side
/// of the network) and from USB media: the running version again refused, a signed update into
/// slot B reported through the reboot, a tampered bundle refused, a release whose node cannot
/// start rolled back (and telemetry says so), a release whose init cannot start left by GRUB.
pub fn update_tamper_rollback(env: &Env) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let token = "6b".repeat(32);
    let admin = "7c".repeat(32);
    let provision = provision_file_with(d, &token, Some(&admin))?;
    // The running system, and the release it is updated to (both signed by the development key).
    let (qcow2, rootfs_a) = build_image(
        env,
        d,
        "a",
        "0.1.0-a",
        &[
            "--serial-console",
            "--kernel-args",
            "aergo.health_deadline=90",
            "--provision",
            provision.to_str().unwrap_or_default(),
        ],
    )?;
    let (_, rootfs_b) = build_image(env, d, "b", "0.1.0-b", &[])?;
    // What the provider's update server holds: served to the box at crate::qemu::GUEST_HTTP.
    let served = d.join("served");
    std::fs::create_dir_all(&served)?;
    let bundle = |rootfs: &Path, version: &str| -> anyhow::Result<(PathBuf, PathBuf)> {
        let text = env.aergo_image(
            &["bundle", "--bundle-version", version, "--rootfs"],
            &[rootfs, Path::new("--out"), &d.join(version)],
        )?;
        let bundle = PathBuf::from(field(&text, "BUNDLE")?);
        std::fs::copy(&bundle, served.join(format!("aergo-os-{version}.raucb")))?;
        Ok((bundle, PathBuf::from(field(&text, "MEDIA")?)))
    };
    bundle(&rootfs_a, "0.1.0-a")?;
    let (good_bundle, _) = bundle(&rootfs_b, "0.1.0-b")?;
    // A tampered copy: one byte of the image changed after signing.
    let mut bytes = std::fs::read(&good_bundle)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    let tampered = d.join("tampered.raucb");
    std::fs::write(&tampered, bytes)?;
    let tampered_media = d.join("tampered-media.img");
    env.aergo_image(&["media", "--bundle"], &[&tampered, Path::new("--out"), &tampered_media])?;
    // Correctly signed releases whose node cannot start (served), and whose init cannot (a stick).
    bundle(&broken_rootfs(d, &rootfs_b, Broken::Node)?, "0.1.0-broken")?;
    let (_, panic_media) = bundle(&broken_rootfs(d, &rootfs_b, Broken::Init)?, "0.1.0-panic")?;

    let vm = start_vm_serving(env, d, &qcow2, &[], Some(&served))?;
    wait_for(BOOT_LIMIT * 2, "the box to run 0.1.0-a from slot A", || {
        vm.telemetry(&token)
            .filter(|t| t["host"]["boot_slot"] == "A" && t["chain"]["height"].as_u64() > Some(1))
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", vm.boot_lines()))?;
    let install = |id: &str, version: &str| -> anyhow::Result<HttpAnswer> {
        let url = format!("{}/aergo-os-{version}.raucb", crate::qemu::GUEST_HTTP);
        let body = serde_json::json!({"request_id": id, "args": {"url": url}});
        http_post(&format!("{}/v1/actions/install-update", vm.agent), Some(&admin), &body.to_string())
    };
    let outcome = |id: &str| {
        wait_for(BOOT_LIMIT, &format!("the outcome of {id} in the audit log"), || {
            let a = http_get(&format!("{}/v1/audit", vm.agent), Some(&token)).ok()?.json().ok()?;
            a["entries"].as_array()?.iter().find(|e| e["request_id"] == format!("{id}/outcome")).cloned()
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", vm.agent_logs(&token, &["agent"])))
    };
    let update_phase = |phase: &str, limit: Duration| {
        wait_for(limit, &format!("the update to be {phase}"), || {
            vm.telemetry(&token).filter(|t| t["update"]["phase"] == phase)
        })
        .map_err(|e| {
            anyhow::anyhow!("{e}\n{}\n{}", vm.boot_lines(), vm.agent_logs(&token, &["agent", "health"]))
        })
    };

    // A newer signed release: installed into B, the box reboots into it, and says so.
    let started = Instant::now();
    assert_eq!(install("u-b", "0.1.0-b")?.status, 202);
    let on_b = wait_for(BOOT_LIMIT * 2, "the box to run 0.1.0-b from slot B", || {
        vm.telemetry(&token)
            .filter(|t| t["host"]["boot_slot"] == "B" && t["host"]["os"] == "AERGO OS 0.1.0-b")
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", vm.boot_lines()))?;
    let to_new_slot = started.elapsed();
    assert_eq!(outcome("u-b")?["result"], "ok");
    let good = update_phase("marked-good", BOOT_LIMIT)?;
    assert_eq!(good["update"]["version"], "0.1.0-b");
    assert_eq!(good["update"]["from_slot"], "A");
    println!("update: from install-update to the box on the new slot: {to_new_slot:.0?} (TCG)");
    let height_b = on_b["chain"]["height"].as_u64().unwrap_or(0);
    wait_for(BOOT_LIMIT, "the chain to go on in slot B", || {
        vm.rpc("chain_info").ok().and_then(|c| c["height"].as_u64()).filter(|h| *h > height_b + 2)
    })?;

    // The older release, signed all the same: downloaded, checked, refused with the reason in the
    // audit log; nothing installed, no reboot.
    let a = install("u-older", "0.1.0-a")?;
    anyhow::ensure!(a.status == 202, "install-update answered {}: {}", a.status, a.body);
    let older = outcome("u-older")?;
    assert_eq!(older["result"], "refused", "{older}");
    let why = older["message"].as_str().unwrap_or_default();
    assert!(why.contains("0.1.0-a is not newer than the running 0.1.0-b"), "{older}");

    // A tampered bundle on a stick is refused and nothing changes.
    vm.plug_stick("usb1", &tampered_media)?;
    vm.wait_serial("aergo: update refused: tampered.raucb", 1, Duration::from_secs(120))?;
    std::thread::sleep(Duration::from_secs(10));
    let t = vm
        .telemetry(&token)
        .ok_or_else(|| anyhow::anyhow!("the agent stopped answering after a refused update"))?;
    assert_eq!(t["host"]["boot_slot"], "B");
    assert_eq!(
        vm.serial_text().matches("Command line: ").count(),
        2,
        "the box rebooted:\n{}",
        vm.boot_lines()
    );

    // A signed release whose node cannot start, told by Horde: installed into A, booted, not
    // healthy within the deadline, marked bad — the box is back on B by itself, and its telemetry
    // says the update was rolled back.
    assert_eq!(install("u-broken", "0.1.0-broken")?.status, 202);
    vm.wait_serial("aergo: system ready (slot A)", 2, BOOT_LIMIT * 2)?;
    vm.wait_serial("aergo: system ready (slot B)", 2, BOOT_LIMIT * 2)
        .map_err(|e| anyhow::anyhow!("{e}\n{}", vm.agent_logs(&token, &["health", "rauc", "system"])))?;
    let back = wait_for(BOOT_LIMIT, "the agent on slot B again", || {
        vm.telemetry(&token).filter(|t| t["host"]["boot_slot"] == "B")
    })?;
    assert_eq!(back["host"]["os"], "AERGO OS 0.1.0-b");
    let rolled = update_phase("rolled-back", BOOT_LIMIT)?;
    assert_eq!(rolled["update"]["version"], "0.1.0-broken");
    let height_back = wait_for(BOOT_LIMIT, "the chain to go on after the rollback", || {
        vm.rpc("chain_info").ok().and_then(|c| c["height"].as_u64()).filter(|h| *h > height_b + 2)
    })?;

    // A signed bundle whose init cannot start: the kernel panics before the health service could
    // run, reboots itself (panic=10), and GRUB, finding slot A tried, boots B.
    vm.swap_stick("usb1", "usb2", &panic_media)?;
    vm.wait_serial("aergo: installing update aergo-os-0.1.0-panic.raucb", 1, Duration::from_secs(120))?;
    vm.wait_serial("Kernel panic", 1, BOOT_LIMIT)?;
    vm.wait_serial("aergo: system ready (slot B)", 3, BOOT_LIMIT * 2)?;
    assert_eq!(vm.serial_text().matches("aergo: system ready (slot A)").count(), 2, "{}", vm.boot_lines());
    assert!(vm.serial_text().contains("this init is broken on purpose"));
    let back = wait_for(BOOT_LIMIT, "the agent on slot B after the panic", || {
        vm.telemetry(&token).filter(|t| t["host"]["boot_slot"] == "B")
    })?;
    assert_eq!(back["host"]["os"], "AERGO OS 0.1.0-b");
    wait_for(BOOT_LIMIT, "the chain to go on after the panic", || {
        vm.rpc("chain_info").ok().and_then(|c| c["height"].as_u64()).filter(|h| *h > height_back + 2)
    })?;
    let _ = vm.monitor("quit");
    Ok(())
}
