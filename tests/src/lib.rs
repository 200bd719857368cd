//! Harness for end-to-end tests: runs the real binaries (`aergo-node`, `aergo`) as separate processes,
//! on loopback ports they pick themselves, and cleans up after itself.
//!
//! The binaries come from the same target directory as the test executable; `scripts/test.sh` builds
//! them first (`cargo build --workspace --bins`).

// One polling helper and one HTTP client for all end-to-end tests, shared with `aergo-image test`.
pub use aergo_image::check::{http_get, http_get_bytes, http_post, wait_for, FileServer, HttpAnswer};

use anyhow::{bail, Context};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root of the clone being tested, read when the test runs: `cargo test` sets
/// `CARGO_MANIFEST_DIR` for the test process. The compile-time `env!` value would name the clone the
/// test executable was first built in, and the build cache outside the clone (`scripts/env.sh`) is
/// shared by every clone of the project, where cargo reuses an executable built elsewhere.
pub fn workspace() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.parent().expect("the tests crate sits in the workspace").to_path_buf()
}

/// Path of a workspace binary next to the running test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target directory");
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --workspace --bins` first", path.display());
    path
}

/// A running `aergo-node` process; killed (SIGKILL) when dropped.
pub struct NodeProcess {
    pub child: Child,
    pub rpc: String,
    pub data_dir: PathBuf,
}

impl NodeProcess {
    /// Starts `aergo-node --dev` in `data_dir` with extra arguments; waits until RPC is announced.
    pub fn start_dev(data_dir: &Path, extra: &[&str]) -> anyhow::Result<NodeProcess> {
        let mut args = vec!["--dev", "--data-dir", data_dir.to_str().unwrap_or_default()];
        args.extend_from_slice(&["--rpc-listen", "127.0.0.1:0"]);
        args.extend_from_slice(extra);
        Self::start(data_dir, &args)
    }

    pub fn start(data_dir: &Path, args: &[&str]) -> anyhow::Result<NodeProcess> {
        let mut cmd = Command::new(binary("aergo-node"));
        cmd.args(args);
        Self::start_command(data_dir, cmd)
    }

    /// Starts `aergo-node` inside the network namespace `netns` (`ip netns exec`, which execs it:
    /// the child is the node itself).
    pub fn start_in_netns(netns: &str, data_dir: &Path, args: &[&str]) -> anyhow::Result<NodeProcess> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns]).arg(binary("aergo-node")).args(args);
        Self::start_command(data_dir, cmd)
    }

    /// Starts `cmd` (an `aergo-node` command line the caller prepared) with its log in `data_dir`.
    pub fn start_command(data_dir: &Path, cmd: Command) -> anyhow::Result<NodeProcess> {
        std::fs::create_dir_all(data_dir)?;
        let (child, rpc) =
            spawn_announcing(cmd, "AERGO_RPC=", &data_dir.join("node.log"), Duration::from_secs(60))?;
        Ok(NodeProcess { child, rpc, data_dir: data_dir.to_path_buf() })
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (bounded) for a clean exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("aergo-node exited with {status}");
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("aergo-node did not stop within 30 s of SIGTERM")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("node.log")).unwrap_or_default()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `aergo` CLI with `--rpc` and `--json`; returns the parsed JSON output.
pub fn cli_json(rpc: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(binary("aergo")).arg("--rpc").arg(rpc).arg("--json").args(args).output()?;
    if !out.status.success() {
        bail!("aergo {args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("aergo {args:?} printed no JSON: {}", String::from_utf8_lossy(&out.stdout)))
}

/// `aergo --json ARGS` whatever its exit: the exit code and the parsed output (stderr as a JSON
/// string when it printed no JSON).
pub fn cli_code_json(rpc: &str, args: &[&str]) -> anyhow::Result<(i32, serde_json::Value)> {
    let out = Command::new(binary("aergo")).arg("--rpc").arg(rpc).arg("--json").args(args).output()?;
    let code = out.status.code().unwrap_or(-1);
    match serde_json::from_slice(&out.stdout) {
        Ok(v) => Ok((code, v)),
        Err(_) => Ok((code, serde_json::Value::String(String::from_utf8_lossy(&out.stderr).into_owned()))),
    }
}

/// Runs `aergo-node` to completion with `args`; returns (success, stdout, stderr).
pub fn node_command(args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let out = Command::new(binary("aergo-node")).args(args).env("NO_COLOR", "1").output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `aergo-node repo add NAME --genesis GENESIS [--settings SETTINGS] --data-dir DATA_DIR`, the
/// node stopped; an error with the command's output when it fails.
pub fn repo_add_offline(
    name: &str,
    genesis: &Path,
    settings: Option<&Path>,
    data_dir: &Path,
) -> anyhow::Result<()> {
    let text = |p: &Path| p.to_str().unwrap_or_default().to_string();
    let mut args = vec!["repo".to_string(), "add".into(), name.into(), "--genesis".into(), text(genesis)];
    if let Some(file) = settings {
        args.extend(["--settings".into(), text(file)]);
    }
    args.extend(["--data-dir".into(), text(data_dir)]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = node_command(&args)?;
    anyhow::ensure!(ok, "aergo-node repo add {name}: {out}{err}");
    Ok(())
}

/// Spawns `cmd` (stderr appended to `log`) and waits for the line `PREFIX<value>` it prints on stdout
/// once it serves; returns the child and the value. Kills the child and shows its log when the line
/// does not come within `limit`.
fn spawn_announcing(
    mut cmd: Command,
    prefix: &'static str,
    log: &Path,
    limit: Duration,
) -> anyhow::Result<(Child, String)> {
    let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let name = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .env("RUST_LOG", std::env::var("AERGO_TEST_LOG").unwrap_or_else(|_| "info".into()))
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(value) = line.strip_prefix(prefix) {
                let _ = tx.send(value.to_string());
            }
        }
    });
    match rx.recv_timeout(limit) {
        Ok(value) => Ok((child, value)),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(log).unwrap_or_default();
            bail!("{name} did not start within {limit:?}; its log:\n{text}");
        }
    }
}

/// A running `aergo-agent` beside a node; killed (SIGKILL) when dropped.
pub struct AgentProcess {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The read token.
    pub token: String,
    /// The admin token (actions).
    pub admin_token: String,
    pub dir: PathBuf,
}

impl AgentProcess {
    /// Starts the agent for the node at `rpc` whose data dir is `node_dir`, with its token, spool and
    /// log in `dir` (kept across restarts), on a loopback port of its own choosing, serving plain
    /// HTTP ([`AgentProcess::start_tls`] for HTTPS).
    pub fn start(rpc: &str, node_dir: &Path, dir: &Path, extra: &[&str]) -> anyhow::Result<AgentProcess> {
        let mut args = vec!["--plain-http"];
        args.extend_from_slice(extra);
        Self::start_tls(rpc, node_dir, dir, &args)
    }

    /// [`AgentProcess::start`] serving HTTPS with the certificate in `dir/tls` (made at the first
    /// start), unless `extra` says `--plain-http`.
    pub fn start_tls(rpc: &str, node_dir: &Path, dir: &Path, extra: &[&str]) -> anyhow::Result<AgentProcess> {
        std::fs::create_dir_all(dir)?;
        let token_file = dir.join("token");
        let admin_file = dir.join("admin-token");
        for file in [&token_file, &admin_file] {
            if !file.exists() {
                let out = Command::new(binary("aergo-agent")).arg("gen-token").arg(file).output()?;
                if !out.status.success() {
                    bail!("aergo-agent gen-token failed: {}", String::from_utf8_lossy(&out.stderr));
                }
            }
        }
        let token = std::fs::read_to_string(&token_file)?.trim().to_string();
        let admin_token = std::fs::read_to_string(&admin_file)?.trim().to_string();
        let mut cmd = Command::new(binary("aergo-agent"));
        cmd.args(["--node", rpc, "--listen", "127.0.0.1:0", "--interval", "500ms"])
            .arg("--token-file")
            .arg(&token_file)
            .arg("--admin-token-file")
            .arg(&admin_file)
            .arg("--audit")
            .arg(dir.join("audit"))
            .arg("--spool")
            .arg(dir.join("spool"))
            .arg("--key-file")
            .arg(node_dir.join("node.key"))
            .arg("--tls-cert")
            .arg(dir.join("tls/cert.pem"))
            .arg("--tls-key")
            .arg(dir.join("tls/key.pem"))
            .args(extra);
        let (child, url) =
            spawn_announcing(cmd, "AERGO_AGENT=", &dir.join("agent.log"), Duration::from_secs(30))?;
        Ok(AgentProcess { child, url, token, admin_token, dir: dir.to_path_buf() })
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// `POST /v1/actions/{name}` with the admin token and the JSON `body`.
    pub fn action(&self, name: &str, body: &str) -> anyhow::Result<HttpAnswer> {
        http_post(&format!("{}/v1/actions/{name}", self.url), Some(&self.admin_token), body)
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `promtool check metrics` (from the distribution's prometheus package) on an exposition.
pub fn promtool_check(text: &str) -> anyhow::Result<()> {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("promtool (package prometheus, installed by scripts/deps.sh): {e}"))?;
    use std::io::Write;
    child.stdin.take().context("promtool's stdin")?.write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
