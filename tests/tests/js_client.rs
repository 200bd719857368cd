//! The JavaScript client (`clients/js`, `docs/dapps.md`) from the outside: its own tests run with
//! Node.js (the shared vectors the Rust encoding writes, then deploy, call, events and a
//! subscription against a devnet), and a real browser (the distribution's headless Chromium)
//! loading a page from another origin that uses the client's bundle to deploy the token, call it
//! and show its events; a page from an origin the node does not list is refused.

use aergo_tests::{workspace, NodeProcess};
use anyhow::{bail, Context};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// `npm ci` and the build, once for this test binary.
fn built() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let dir = workspace().join("clients/js");
    let done = BUILT.get_or_init(|| {
        for args in [&["ci", "--no-audit", "--no-fund"][..], &["run", "build"][..]] {
            let out =
                Command::new("npm").args(args).current_dir(&dir).output().map_err(|e| format!("npm: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "npm {args:?} failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(())
    });
    done.clone().map_err(anyhow::Error::msg)?;
    Ok(dir)
}

fn dev_secret(data_dir: &Path) -> anyhow::Result<String> {
    let key: Value = serde_json::from_slice(&std::fs::read(data_dir.join("dev.key"))?)?;
    Ok(key["secret_key"].as_str().context("a plain dev key")?.to_string())
}

#[test]
fn the_js_client_matches_the_rust_encoding_and_works_against_a_devnet() -> anyhow::Result<()> {
    let js = built()?;
    let dir = tempfile::tempdir()?;
    // Beside its devnet the node hosts a private repository "vault" (one producer, the faucet
    // its admin), for the client's member-signed requests and repo_admin transactions.
    let data = dir.path().join("node");
    std::fs::create_dir_all(&data)?;
    NodeProcess::start_dev(&data, &[])?.stop()?;
    let vault = dir.path().join("vault");
    let arg = |p: &Path| p.to_str().unwrap_or_default().to_string();
    let (ok, _, err) = aergo_tests::node_command(&[
        "testnet",
        "--nodes",
        "1",
        "--out",
        &arg(&vault),
        "--chain-id",
        "vault-chain",
    ])?;
    anyhow::ensure!(ok, "testnet: {err}");
    let admin_file = vault.join("faucet.key");
    let admin = aergo_primitives::crypto::KeyFile::read(&admin_file)?.unlock(None)?;
    let genesis = vault.join("genesis.toml");
    let mut text = std::fs::read_to_string(&genesis)?;
    text.push_str(&format!(
        "\n[access]\nprivate = true\n\n[[access.members]]\naddress = \"{}\"\nrole = \"admin\"\n",
        admin.address()
    ));
    std::fs::write(&genesis, text)?;
    let settings = vault.join("repo.toml");
    std::fs::write(
        &settings,
        format!("[producer]\nenabled = true\nkey_file = {:?}\n", arg(&vault.join("node0/producer.key"))),
    )?;
    aergo_tests::repo_add_offline("vault", &genesis, Some(&settings), &data)?;
    let node = NodeProcess::start_dev(&data, &[])?;
    let out = Command::new("node")
        .args(["--experimental-websocket", "--test", "--test-reporter=tap", "test/"])
        .current_dir(&js)
        .env("AERGO_RPC", &node.rpc)
        .env("AERGO_PRIVATE_REPO", "vault")
        .env("AERGO_PRIVATE_ADMIN", hex::encode(admin.secret_bytes()))
        .env("AERGO_DEV_KEY", data.join("dev.key"))
        .env("AERGO_EXAMPLES", workspace().join("examples"))
        .output()?;
    let tap = String::from_utf8_lossy(&out.stdout);
    let count = |what: &str| -> usize {
        tap.lines()
            .find_map(|l| l.strip_prefix(&format!("# {what} ")))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(usize::MAX)
    };
    assert!(out.status.success(), "{tap}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!((count("fail"), count("skipped")), (0, 0), "every test ran, none failed:\n{tap}");
    // The vectors (one per kind and more), the key test, the refusals, request signing, and the
    // devnet and private repository tests.
    assert!(count("pass") >= 25 && count("pass") != usize::MAX, "{tap}");
    node.stop()
}

/// A static file server for the test page, on 127.0.0.1 (its own origin), until dropped.
struct PageServer {
    origin: String,
    stop: Arc<AtomicBool>,
}

impl PageServer {
    fn start(files: Vec<(&'static str, &'static str, Vec<u8>)>) -> anyhow::Result<PageServer> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let origin = format!("http://{}", listener.local_addr()?);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !stopped.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok((mut sock, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = sock.set_nonblocking(false);
                let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 4096];
                let n = sock.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .split('?')
                    .next()
                    .unwrap_or("/")
                    .to_string();
                let answer = match files.iter().find(|(p, _, _)| *p == path) {
                    Some((_, mime, body)) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: {mime}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(body);
                        r
                    }
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
                    }
                };
                let _ = sock.write_all(&answer);
            }
        });
        Ok(PageServer { origin, stop })
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn chromium() -> anyhow::Result<PathBuf> {
    let path = PathBuf::from("/usr/bin/chromium");
    if !path.exists() {
        bail!("no /usr/bin/chromium: scripts/deps.sh installs Debian's chromium");
    }
    Ok(path)
}

/// Opens `url` in headless Chromium; the page's result.
fn open(js: &Path, url: &str) -> anyhow::Result<Value> {
    let out =
        Command::new("node").arg("browser/open.mjs").arg(url).arg(chromium()?).current_dir(js).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("the browser failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_str(stdout.trim()).with_context(|| format!("the page's result: {stdout}"))
}

#[test]
fn a_browser_page_from_another_origin_deploys_the_token_calls_it_and_shows_its_events() -> anyhow::Result<()>
{
    let js = built()?;
    let files = || -> anyhow::Result<Vec<(&'static str, &'static str, Vec<u8>)>> {
        Ok(vec![
            ("/", "text/html", std::fs::read(js.join("browser/index.html"))?),
            ("/aergo.js", "text/javascript", std::fs::read(js.join("dist/aergo.js"))?),
            ("/token.sql", "text/plain", std::fs::read(workspace().join("examples/contracts/token.sql"))?),
        ])
    };
    let allowed = PageServer::start(files()?)?;
    let other = PageServer::start(files()?)?;
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("config.toml"),
        format!("[rpc]\ncors_origins = [\"{}\"]\n", allowed.origin),
    )?;
    let node = NodeProcess::start_dev(dir.path(), &[])?;
    let secret = dev_secret(dir.path())?;

    let page = open(&js, &format!("{}/?rpc={}&key={secret}", allowed.origin, node.rpc))?;
    assert_eq!(page["ok"], true, "{page}");
    assert_eq!(page["status"], "success", "{page}");
    let bob = page["bob"].as_str().unwrap_or_default();
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["events"][0]["name"], "transfer");
    assert_eq!(page["events"][0]["args"]["recipient"], bob);
    assert_eq!(page["events"][0]["args"]["amount"], 42);
    assert_eq!(
        page["live"]["tx_hash"], page["events"][0]["tx_hash"],
        "the live event is the same one: {page}"
    );
    let shown = page["shown"][0].as_str().unwrap_or_default();
    assert!(shown.starts_with("transfer(") && shown.contains("amount: 42"), "the page lists it: {page}");
    // The node has the contract the page deployed, with the page's transfer.
    let token = page["token"].as_str().unwrap_or_default();
    let q = aergo_tests::cli_json(&node.rpc, &["query", token, "--function", "balance_of", "--arg", bob])?;
    assert_eq!(q["rows"], serde_json::json!([[42]]));

    // The same page from an origin the node does not list: the browser gets no answer it may read.
    let refused = open(&js, &format!("{}/?rpc={}&key={secret}", other.origin, node.rpc))?;
    assert_eq!(refused["ok"], false, "{refused}");
    assert!(refused["error"].as_str().unwrap_or_default().contains("Failed to fetch"), "{refused}");
    node.stop()
}
