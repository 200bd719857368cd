//! aergo-agent from the outside: a devnet node and the agent as separate processes, every field checked
//! against what the node's RPC and `/proc` say, the signature checked against the node's key, history
//! across an agent `kill -9`, the refusals (token, size, slow clients, rate) and a killed node.

use aergo_api::AergoApiClient;
use aergo_primitives::types::{PublicKey, Signature};
use aergo_tests::{http_get, promtool_check, wait_for, workspace, AgentProcess, NodeProcess};
use jsonrpsee::http_client::HttpClientBuilder;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn telemetry(agent: &AgentProcess) -> anyhow::Result<Value> {
    let answer = http_get(&format!("{}/v1/telemetry", agent.url), Some(&agent.token))?;
    anyhow::ensure!(answer.status == 200, "telemetry answered {}: {}", answer.status, answer.body);
    answer.json()
}

fn meminfo_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn check(health: &Value, name: &str) -> (String, String) {
    let c = health["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap();
    (c["status"].as_str().unwrap().to_string(), c["reason"].as_str().unwrap().to_string())
}

#[test]
fn telemetry_matches_the_node_and_proc_and_is_signed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::start_dev(&dir.path().join("node"), &["--empty-blocks"])?;
    let agent = AgentProcess::start(&node.rpc, &node.data_dir, &dir.path().join("agent"), &[])?;
    let rt = tokio::runtime::Runtime::new()?;
    let client = HttpClientBuilder::default().build(&node.rpc)?;
    let info = rt.block_on(client.node_info())?;
    wait_for(Duration::from_secs(20), "a sample with a block", || {
        telemetry(&agent).ok().filter(|t| t["chain"]["height"].as_u64() >= Some(2))
    })?;

    let before = rt.block_on(client.chain_info(None))?;
    let answer = http_get(&format!("{}/v1/telemetry", agent.url), Some(&agent.token))?;
    let after = rt.block_on(client.chain_info(None))?;
    let t = answer.json()?;

    // The signature: ed25519 by the node's identity key over the domain prefix and the exact body.
    let key_hex = answer.header("x-aergo-node-key").expect("key header");
    assert_eq!(key_hex, info.node_key);
    let key = PublicKey(hex::decode(key_hex)?.try_into().unwrap());
    let sig =
        Signature(hex::decode(answer.header("x-aergo-signature").expect("signature"))?.try_into().unwrap());
    let mut message = aergo_agent::http::SIGNATURE_DOMAIN.to_vec();
    message.extend_from_slice(answer.body.as_bytes());
    aergo_primitives::crypto::verify_message(&key, &message, &sig)?;
    let mut forged = message.clone();
    *forged.last_mut().unwrap() ^= 1;
    assert!(aergo_primitives::crypto::verify_message(&key, &forged, &sig).is_err());

    assert_eq!(t["schema_version"], 1);
    assert!(t["seq"].as_u64().unwrap() >= 2);
    assert!(t["collected_at"].as_str().unwrap().ends_with('Z'));

    // Chain, against the node's own RPC.
    let c = &t["chain"];
    assert_eq!(c["chain_id"], before.chain_id.as_str());
    let height = c["height"].as_u64().unwrap();
    assert!(
        height + 3 >= before.height && height <= after.height,
        "{height} vs {}..{}",
        before.height,
        after.height
    );
    assert_eq!(c["finalized_height"], c["height"]);
    assert_eq!(c["role"], "producer");
    assert_eq!(c["producer_address"], info.producer_address.unwrap().to_string());
    assert_eq!(c["block_interval_ms"], before.block_interval_ms);
    assert!(c["last_block_age_ms"].as_u64().unwrap() < 5_000);
    assert!(c["blocks_produced"].as_u64().unwrap() >= 1);
    assert_eq!(c["slots_missed"].as_u64(), Some(c["slots_missed"].as_u64().unwrap()));
    assert_eq!(c["peers"], 0);
    assert_eq!(c["syncing"], false);
    assert_eq!(c["behind_blocks"], 0);
    let stages: Vec<&str> =
        c["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(stages, ["admission", "produce", "import", "verify", "execute", "commit", "query"]);

    // The node's process, against /proc.
    let p = &t["node_process"];
    assert_eq!(p["pid"], node.child.id());
    assert_eq!(p["pid"], info.pid);
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.child.id()))?;
    let threads: u64 = status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse()?;
    assert!(p["threads"].as_u64().unwrap().abs_diff(threads) <= 4, "{} vs {threads}", p["threads"]);
    let fds = std::fs::read_dir(format!("/proc/{}/fd", node.child.id()))?.count() as u64;
    assert!(p["open_fds"].as_u64().unwrap().abs_diff(fds) <= 8, "{} vs {fds}", p["open_fds"]);
    assert!(p["rss_bytes"].as_u64().unwrap() > 1 << 20);

    // The host, against /proc.
    let h = &t["host"];
    assert_eq!(h["memory"]["total_bytes"], meminfo_kib("MemTotal") * 1024);
    let avail = h["memory"]["available_bytes"].as_u64().unwrap();
    assert!(avail.abs_diff(meminfo_kib("MemAvailable") * 1024) < 512 << 20);
    let cpus = std::fs::read_to_string("/proc/stat")?
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    assert_eq!(h["cpu"]["cores"].as_array().unwrap().len(), cpus);
    let busy = h["cpu"]["busy_pct"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&busy));
    assert_eq!(h["hostname"], std::fs::read_to_string("/proc/sys/kernel/hostname")?.trim());
    let loadavg = std::fs::read_to_string("/proc/loadavg")?;
    let load1: f64 = loadavg.split_whitespace().next().unwrap().parse()?;
    assert!((h["load"][0].as_f64().unwrap() - load1).abs() < 2.0);
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")?.split_whitespace().next().unwrap().parse()?;
    assert!((h["uptime_s"].as_f64().unwrap() - uptime).abs() < 10.0);
    assert!(h["network"].as_array().unwrap().iter().any(|i| i["interface"] == "lo"));
    let data_fs = h["filesystems"].as_array().unwrap().iter().find(|f| f["role"] == "data").expect("data fs");
    let node_dir = node.data_dir.canonicalize()?;
    assert!(node_dir.starts_with(data_fs["mount_point"].as_str().unwrap()));
    let vfs = nix::sys::statvfs::statvfs(data_fs["mount_point"].as_str().unwrap())?;
    assert_eq!(data_fs["size_bytes"], vfs.blocks() * vfs.fragment_size());

    // Health: the node-side checks are fine on a running devnet.
    for name in ["node_process", "node_rpc", "block_fresh", "finality", "producer", "peers", "clock", "spool"]
    {
        assert_eq!(check(&t["health"], name).0, "ok", "{name}: {:?}", check(&t["health"], name));
    }
    // Ready (a sample taken while a loaded machine kept the node from answering in time may say
    // otherwise for a moment).
    wait_for(Duration::from_secs(10), "readyz 200", || {
        http_get(&format!("{}/readyz", agent.url), None).ok().filter(|a| a.status == 200)
    })?;

    // The OpenAPI document names every field the agent sends.
    let openapi = std::fs::read_to_string(workspace().join("agent/openapi.yaml"))?;
    let mut keys = Vec::new();
    collect_keys(&t, &mut keys);
    for key in keys {
        assert!(openapi.contains(&format!(" {key}:")), "agent/openapi.yaml does not describe `{key}`");
    }

    // Prometheus text, and promtool's verdict on it.
    let m = http_get(&format!("{}/metrics", agent.url), Some(&agent.token))?;
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    for name in [
        "aergo_chain_height ",
        "aergo_chain_finalized_height ",
        "aergo_peers ",
        "aergo_mempool_txs ",
        "aergo_state_cache_bytes ",
        "aergo_health_status ",
        "node_cpu_seconds_total{",
        "node_filesystem_avail_bytes{",
        "node_load1 ",
    ] {
        assert!(m.body.contains(name), "{name} missing from /metrics");
    }
    // The node's cache of recent state values: on (128 MiB by default) and holding the blocks'
    // writes, each block's head record at least.
    let gauge = |name: &str| -> f64 {
        m.body.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(-1.0)
    };
    assert!(
        gauge("aergo_state_cache_capacity_bytes ") > 100e6,
        "{}",
        gauge("aergo_state_cache_capacity_bytes ")
    );
    assert!(gauge("aergo_state_cache_values ") > 0.0, "{}", gauge("aergo_state_cache_values "));
    assert!(t["chain"]["state_cache_capacity_bytes"].as_u64() > Some(100_000_000), "{:?}", t["chain"]);
    // The overall status also counts the box's disk and memory, which are the test machine's: it
    // must match what telemetry says, whatever that is.
    let status = m.body.lines().find_map(|l| l.strip_prefix("aergo_health_status ")).unwrap().trim();
    let expected = match t["health"]["status"].as_str().unwrap() {
        "ok" => "0",
        "degraded" => "1",
        _ => "2",
    };
    assert_eq!(status, expected, "aergo_health_status vs telemetry {:?}", t["health"]);
    promtool_check(&m.body)?;
    Ok(())
}

fn collect_keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                collect_keys(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_keys(i, out)),
        _ => {}
    }
}

#[test]
fn history_survives_an_agent_kill_and_a_torn_spool() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::start_dev(&dir.path().join("node"), &["--empty-blocks"])?;
    let agent_dir = dir.path().join("agent");
    let agent = AgentProcess::start(&node.rpc, &node.data_dir, &agent_dir, &[])?;
    let seen = wait_for(Duration::from_secs(20), "five samples", || {
        telemetry(&agent).ok().and_then(|t| t["seq"].as_u64()).filter(|s| *s >= 5)
    })?;
    agent.kill9();
    // A crash in the middle of an append leaves a torn record behind: cut on restart.
    let seg = std::fs::read_dir(agent_dir.join("spool"))?
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "spool"))
        .max()
        .unwrap();
    std::fs::OpenOptions::new().append(true).open(&seg)?.write_all(&[0x55; 37])?;

    let agent = AgentProcess::start(&node.rpc, &node.data_dir, &agent_dir, &[])?;
    let t = telemetry(&agent)?;
    assert!(t["seq"].as_u64().unwrap() > seen, "seq continues after a restart");
    let h = http_get(&format!("{}/v1/telemetry/history?since=0&limit=1000", agent.url), Some(&agent.token))?;
    assert_eq!(h.status, 200);
    assert!(h.header("x-aergo-signature").is_some());
    let h = h.json()?;
    let seqs: Vec<u64> =
        h["samples"].as_array().unwrap().iter().map(|s| s["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs[0], 1);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "no gaps: {seqs:?}");
    assert!(seqs.contains(&seen) && *seqs.last().unwrap() > seen);
    assert_eq!(h["oldest_seq"], 1);
    assert!(agent.log().contains("truncated_bytes=37"), "{}", agent.log());
    // Paging: `since` is exclusive, `more` says whether to ask again.
    let page = http_get(&format!("{}/v1/telemetry/history?since=2&limit=2", agent.url), Some(&agent.token))?
        .json()?;
    let page_seqs: Vec<u64> =
        page["samples"].as_array().unwrap().iter().map(|s| s["seq"].as_u64().unwrap()).collect();
    assert_eq!(page_seqs, [3, 4]);
    assert_eq!(page["more"], true);
    let bad = http_get(&format!("{}/v1/telemetry/history?since=abc", agent.url), Some(&agent.token))?;
    assert_eq!(bad.status, 400);
    let bad = http_get(&format!("{}/v1/telemetry/history?limit=0", agent.url), Some(&agent.token))?;
    assert_eq!(bad.status, 400);
    Ok(())
}

fn raw_request(url: &str, request: &[u8]) -> anyhow::Result<String> {
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    // The server may answer and close before all of an oversized request is written.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn refusals_and_a_killed_node() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::start_dev(&dir.path().join("node"), &["--empty-blocks"])?;
    let agent = AgentProcess::start(
        &node.rpc,
        &node.data_dir,
        &dir.path().join("agent"),
        &["--header-timeout", "1s", "--rate-per-s", "20"],
    )?;
    let url = &agent.url;

    // Tokens.
    for token in [None, Some("wrong-token-0123456789"), Some("")] {
        for path in ["/v1/telemetry", "/v1/telemetry/history", "/metrics"] {
            let a = http_get(&format!("{url}{path}"), token)?;
            assert_eq!(a.status, 401, "{path} with {token:?}");
            assert!(a.header("www-authenticate").unwrap().starts_with("Bearer"));
        }
    }
    let almost = format!("{}x", &agent.token[..agent.token.len() - 1]);
    assert_eq!(http_get(&format!("{url}/v1/telemetry"), Some(&almost))?.status, 401);
    assert_eq!(http_get(&format!("{url}/livez"), None)?.status, 200);
    assert_eq!(http_get(&format!("{url}/nothing"), Some(&agent.token))?.status, 404);

    // Oversized head and body.
    let big_header = format!("GET /livez HTTP/1.1\r\nHost: x\r\nX-Junk: {}\r\n\r\n", "a".repeat(64 << 10));
    let answer = raw_request(url, big_header.as_bytes())?;
    assert!(answer.starts_with("HTTP/1.1 431"), "oversized head: {answer:?}");
    let big_body = format!(
        "POST /v1/telemetry HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 10000000\r\n\r\n",
        agent.token
    );
    let answer = raw_request(url, big_body.as_bytes())?;
    assert!(answer.starts_with("HTTP/1.1 413"), "oversized body: {answer:?}");

    // A slow client that never finishes its head is cut off, and others are served meanwhile.
    let addr = url.strip_prefix("http://").unwrap();
    let mut slow = TcpStream::connect(addr)?;
    slow.write_all(b"GET /v1/telemetry HTTP/1.1\r\nHost: x\r\n")?;
    slow.set_read_timeout(Some(Duration::from_secs(10)))?;
    let started = Instant::now();
    assert_eq!(http_get(&format!("{url}/livez"), None)?.status, 200);
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(8), "the slow client was dropped after {waited:?}");
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));

    // Garbage is answered with 400, and the agent keeps serving.
    let answer = raw_request(url, b"\x16\x03\x01\x02\x00garbage\r\n\r\n")?;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert_eq!(http_get(&format!("{url}/livez"), None)?.status, 200);

    // Rate limit: 20/s with a burst of 100 (the default burst), per client address.
    let mut limited = 0;
    for _ in 0..200 {
        let a = http_get(&format!("{url}/livez"), None)?;
        if a.status == 429 {
            assert_eq!(a.header("retry-after"), Some("1"));
            limited += 1;
        }
    }
    assert!(limited > 0, "no 429 in 200 quick requests");
    std::thread::sleep(Duration::from_millis(1500));

    // The node dies: health says down with the reason, and the agent keeps answering.
    let node_pid = node.child.id();
    node.kill9();
    let t = wait_for(Duration::from_secs(20), "health down without the node", || {
        telemetry(&agent).ok().filter(|t| t["health"]["status"] == "down" && t["chain"].is_null())
    })?;
    assert!(t["chain"].is_null());
    assert!(t["chain_error"].as_str().unwrap().contains("not answering"));
    assert!(t["node_process"].is_null());
    let (status, reason) = check(&t["health"], "node_process");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("down", "no aergo-node process is running"),
        "pid {node_pid}"
    );
    let (status, reason) = check(&t["health"], "node_rpc");
    assert_eq!(status, "down");
    assert!(reason.contains(&format!("node RPC at {}", aergo_tests_rpc_base(url, &t))), "{reason}");
    assert_eq!(http_get(&format!("{url}/readyz"), None)?.status, 503);
    let m = http_get(&format!("{url}/metrics"), Some(&agent.token))?;
    assert!(m.body.contains("aergo_health_status 2") && m.body.contains("aergo_node_up 0"));
    Ok(())
}

/// The node URL as the agent reports it in its reasons (the part before " not answering").
fn aergo_tests_rpc_base(_agent_url: &str, t: &Value) -> String {
    let e = t["chain_error"].as_str().unwrap_or_default();
    e.trim_start_matches("node RPC at ").split(' ').next().unwrap_or_default().to_string()
}

/// The spool on a tiny tmpfs: when it fills, the agent says so in health and keeps serving the latest
/// samples; when space comes back (the tmpfs grows), samples are kept again. Needs root (mount).
#[test]
fn a_full_disk_stops_the_spool_not_the_agent() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::start_dev(&dir.path().join("node"), &["--empty-blocks"])?;
    let agent_dir = dir.path().join("agent");
    let spool = agent_dir.join("spool");
    std::fs::create_dir_all(&spool)?;
    let mount = |args: &[&str]| -> anyhow::Result<()> {
        let out = std::process::Command::new("mount").args(args).output()?;
        anyhow::ensure!(out.status.success(), "mount {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    };
    let spool_str = spool.to_str().unwrap();
    mount(&["-t", "tmpfs", "-o", "size=96k", "aergo-test-spool", spool_str])?;
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(spool.clone());
    let agent = AgentProcess::start(&node.rpc, &node.data_dir, &agent_dir, &[])?;
    let full = wait_for(Duration::from_secs(60), "the spool to fill", || {
        telemetry(&agent).ok().filter(|t| t["agent"]["spool"]["state"] == "full")
    })?;
    let (status, reason) = check(&full["health"], "spool");
    assert_eq!(status, "degraded");
    assert!(reason.contains("No space left"), "{reason}");
    // Still serving, still sampling.
    let seq = full["seq"].as_u64().unwrap();
    wait_for(Duration::from_secs(10), "sampling to go on", || {
        telemetry(&agent).ok().filter(|t| t["seq"].as_u64() > Some(seq + 2))
    })?;
    let h = http_get(&format!("{}/v1/telemetry/history?since=0&limit=1000", agent.url), Some(&agent.token))?;
    assert_eq!(h.status, 200);
    let kept = h.json()?["samples"].as_array().unwrap().len();
    assert!(kept > 5);
    // Space comes back.
    mount(&["-o", "remount,size=4m", spool_str])?;
    wait_for(Duration::from_secs(20), "the spool to recover", || {
        telemetry(&agent).ok().filter(|t| {
            t["agent"]["spool"]["state"] == "ok"
                && t["health"]["checks"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["name"] == "spool" && c["status"] == "ok"))
        })
    })?;
    let h = http_get(&format!("{}/v1/telemetry/history?since=0&limit=1000", agent.url), Some(&agent.token))?;
    let seqs: Vec<u64> =
        h.json()?["samples"].as_array().unwrap().iter().map(|s| s["seq"].as_u64().unwrap()).collect();
    assert!(seqs.len() > kept && seqs.windows(2).all(|w| w[0] < w[1]));
    drop(agent);
    Ok(())
}

/// Kills the process whose pid is in a file when dropped (the node a supervising loop started).
struct KillPidFile(std::path::PathBuf);

impl Drop for KillPidFile {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0).ok().and_then(|t| t.trim().parse::<i32>().ok()) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

fn node_pid(data: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(data.join("pid")).ok()?.trim().parse().ok()
}

/// Scoped tokens and actions: no token is 401 everywhere but the probes; the read token reads and
/// gets 403 on an action; the admin token restarts the node (run under a loop that starts it again,
/// as the box's inittab does), whose height goes on rising; a retried request id is answered from
/// the audit log without acting again; the audit log and its entry survive `kill -9` of the agent;
/// a token file rewritten is in force within seconds; `restart-agent` answers, then the agent exits.
#[test]
fn scoped_tokens_actions_and_their_audit_log() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("node");
    std::fs::create_dir_all(&data)?;
    let port = aergo_image::qemu::free_port()?;
    let script = format!(
        "while :; do {node} --dev --data-dir {d} --empty-blocks --rpc-listen 127.0.0.1:{port} & \
         echo $! > {d}/pid; wait $!; sleep 0.2; done",
        node = aergo_tests::binary("aergo-node").display(),
        d = data.display()
    );
    let _node_left = KillPidFile(data.join("pid"));
    let mut loop_cmd = std::process::Command::new("sh");
    loop_cmd.args(["-c", &script]);
    let node = NodeProcess::start_command(&data, loop_cmd)?;
    let rt = tokio::runtime::Runtime::new()?;
    let client = HttpClientBuilder::default().build(&node.rpc)?;
    let height = |least: u64| {
        wait_for(Duration::from_secs(30), &format!("height {least}"), || {
            rt.block_on(client.chain_info(None)).ok().map(|i| i.height).filter(|h| *h >= least)
        })
    };
    height(2)?;
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir)?;
    let config = agent_dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[actions]\nrestart_node = [\"sh\", \"-c\", \"kill $(cat {}/pid)\"]\nreboot = []\n",
            data.display()
        ),
    )?;
    let extra = ["--config", config.to_str().unwrap_or_default()];
    let agent = AgentProcess::start(&node.rpc, &node.data_dir, &agent_dir, &extra)?;
    let url = |path: &str| format!("{}{path}", agent.url);
    let action = |name: &str, token: Option<&str>, body: &str| {
        aergo_tests::http_post(&url(&format!("/v1/actions/{name}")), token, body)
    };
    let (read, admin) = (agent.token.clone(), agent.admin_token.clone());

    // 401 without a token (or with an unknown one), 403 for the read token on an action.
    for path in ["/v1/telemetry", "/v1/telemetry/history", "/metrics", "/v1/audit"] {
        assert_eq!(http_get(&url(path), None)?.status, 401, "{path}");
        assert_eq!(http_get(&url(path), Some("not-a-token-at-all-0000"))?.status, 401, "{path}");
        assert_eq!(http_get(&url(path), Some(&read))?.status, 200, "{path}");
        assert_eq!(http_get(&url(path), Some(&admin))?.status, 200, "{path}");
    }
    assert_eq!(http_get(&url("/livez"), None)?.status, 200);
    let body = r#"{"request_id": "r-1"}"#;
    assert_eq!(action("restart-node", None, body)?.status, 401);
    let denied = action("restart-node", Some(&read), body)?;
    assert_eq!(denied.status, 403);
    assert!(denied.body.contains("admin token"), "{}", denied.body);

    // Refusals that do nothing.
    let untouched = node_pid(&data);
    assert_eq!(action("format-disk", Some(&admin), body)?.status, 404);
    let no_url = action("install-update", Some(&admin), body)?;
    assert!(no_url.status == 400 && no_url.body.contains("url"), "{}", no_url.body);
    assert_eq!(action("restart-node", Some(&admin), "{not json")?.status, 400);
    assert_eq!(action("restart-node", Some(&admin), r#"{"request_id": "a b"}"#)?.status, 400);
    assert_eq!(action("restart-node", Some(&admin), r#"{"request_id": "x", "args": {"y": 1}}"#)?.status, 400);
    let big = format!(r#"{{"request_id": "big", "args": {{"x": "{}"}}}}"#, "a".repeat(100_000));
    assert_eq!(action("restart-node", Some(&admin), &big)?.status, 413);
    assert_eq!(node_pid(&data), untouched, "a refused action restarted the node");

    // The node restarted by the admin token; its height goes on.
    let before = node_pid(&data);
    let done = action("restart-node", Some(&admin), body)?;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.header("x-aergo-signature").is_some());
    let entry = done.json()?;
    assert_eq!((entry["result"].as_str(), entry["replayed"].as_bool()), (Some("ok"), Some(false)), "{entry}");
    let after = wait_for(Duration::from_secs(20), "the node started again", || {
        node_pid(&data).filter(|p| Some(*p) != before)
    })?;
    let h = rt.block_on(client.chain_info(None)).map(|i| i.height).unwrap_or(0);
    height(h + 2)?;
    // The same request again: its record, nothing done; another action under the same id: 409.
    let again = action("restart-node", Some(&admin), body)?.json()?;
    assert_eq!((again["seq"].clone(), again["replayed"].as_bool()), (entry["seq"].clone(), Some(true)));
    assert_eq!(node_pid(&data), Some(after));
    assert_eq!(action("restart-agent", Some(&admin), body)?.status, 409);
    wait_for(Duration::from_secs(5), "the action in the metrics", || {
        http_get(&url("/metrics"), Some(&read))
            .ok()
            .filter(|m| m.body.contains(r#"aergo_agent_actions_total{action="restart-node",result="ok"} 1"#))
    })?;

    // The audit log survives kill -9 of the agent; it names the token by fingerprint only.
    agent.kill9();
    let mut agent = AgentProcess::start(&node.rpc, &node.data_dir, &agent_dir, &extra)?;
    let base = agent.url.clone();
    let url = |path: &str| format!("{base}{path}");
    let audit = http_get(&url("/v1/audit?since=0"), Some(&read))?.json()?;
    let entries = audit["entries"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 1, "{audit}");
    let e = &entries[0];
    assert_eq!(
        (e["action"].as_str(), e["token"].as_str(), e["client"].as_str()),
        (Some("restart-node"), Some("admin"), Some("127.0.0.1"))
    );
    let fp = e["token_fingerprint"].as_str().unwrap_or_default();
    assert!(fp.len() == 16 && !admin.contains(fp) && !audit.to_string().contains(&admin), "{audit}");

    // Rotation: the read token's file rewritten; the old token stops working within seconds.
    let rotated = "rotated-read-token-0123456789abcdef";
    std::fs::write(agent_dir.join("token"), format!("{rotated}\n"))?;
    wait_for(Duration::from_secs(10), "the rotated token in force", || {
        let old = http_get(&url("/v1/telemetry"), Some(&read)).ok()?.status;
        let new = http_get(&url("/v1/telemetry"), Some(rotated)).ok()?.status;
        (old == 401 && new == 200).then_some(())
    })?;
    assert!(agent.log().contains("the read token was replaced"), "{}", agent.log());

    // restart-agent: answered, then the agent exits (its supervisor starts it again on a box).
    let answer =
        aergo_tests::http_post(&url("/v1/actions/restart-agent"), Some(&admin), r#"{"request_id": "r-2"}"#)?;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let exited =
        wait_for(Duration::from_secs(10), "the agent to exit", || agent.child.try_wait().ok().flatten())?;
    assert!(exited.success(), "{exited}");
    Ok(())
}

/// `apply-settings` and `revert-settings` from Horde write the box's files with the console's own
/// code (under a test root here, `/` on the box): checked (bad settings change nothing), applied
/// with the files before kept as last good, reverted to them; tokens in the settings never reach
/// the audit log.
#[test]
fn settings_are_applied_and_reverted_by_horde() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::start_dev(&dir.path().join("node"), &["--empty-blocks"])?;
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("boot"))?;
    std::fs::copy(node.data_dir.join("genesis.toml"), root.join("boot/genesis.toml"))?;
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir)?;
    let config = agent_dir.join("agent.toml");
    std::fs::write(&config, "[actions]\nrestart_node = [\"true\"]\nreboot = []\n")?;
    let root_arg = root.display().to_string();
    let extra = ["--config", config.to_str().unwrap_or_default(), "--settings-root", &root_arg];
    let agent = AgentProcess::start(&node.rpc, &node.data_dir, &agent_dir, &extra)?;
    let apply = |id: &str, hostname: &str| {
        let body = serde_json::json!({
            "request_id": id,
            "args": { "settings": {
                "hostname": hostname,
                "node": { "role": "full", "chain": "/boot/genesis.toml", "rpc": "loopback" },
                "agent": { "token": "secret-read-token-0123456789abcdef0123" },
            }},
        });
        agent.action("apply-settings", &body.to_string())
    };
    let hostname = || std::fs::read_to_string(root.join("etc/hostname")).unwrap_or_default();

    let bad = apply("s-0", "-not-a-hostname-")?;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("hostname"), "{}", bad.body);
    assert!(!root.join("etc").exists(), "refused settings wrote files");

    let first = apply("s-1", "box-a")?;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(hostname(), "box-a\n");
    let node_toml = aergo_config::NodeConfig::load(&root.join("etc/aergo/node.toml"))?;
    assert!(!node_toml.producer.enabled);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/aergo/agent.token"))?.trim(),
        "secret-read-token-0123456789abcdef0123"
    );
    assert_eq!(apply("s-2", "box-b")?.status, 200);
    assert_eq!(hostname(), "box-b\n");

    let reverted = agent.action("revert-settings", r#"{"request_id": "s-3"}"#)?;
    assert_eq!(reverted.status, 200, "{}", reverted.body);
    assert_eq!(hostname(), "box-a\n");

    let audit = http_get(&format!("{}/v1/audit?since=0", agent.url), Some(&agent.token))?;
    assert!(!audit.body.contains("secret-read-token"), "a token reached the audit log: {}", audit.body);
    let entries = audit.json()?["entries"].as_array().cloned().unwrap_or_default();
    let actions: Vec<&str> = entries.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["apply-settings", "apply-settings", "revert-settings"]);
    assert_eq!(entries[0]["args"]["settings"]["agent"]["token"], "<redacted>");
    Ok(())
}

/// `GET /v1/logs`: the node's and the agent's own logs paged with the read token, across a
/// rotation (the node's file renamed, as `aergo-service` does), `since`, and the kernel's log.
#[test]
fn logs_are_paged_for_the_read_token_across_a_rotation() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::start_dev(&dir.path().join("node"), &["--empty-blocks"])?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    // The box's layout: NAME.log in one directory (here links to where the test's processes log).
    std::os::unix::fs::symlink(node.data_dir.join("node.log"), logs.join("node.log"))?;
    let agent_dir = dir.path().join("agent");
    std::os::unix::fs::symlink(agent_dir.join("agent.log"), logs.join("agent.log"))?;
    let agent = AgentProcess::start(
        &node.rpc,
        &node.data_dir,
        &agent_dir,
        &["--log-dir", logs.to_str().unwrap_or_default()],
    )?;
    let get = |query: &str, token: Option<&str>| {
        aergo_tests::http_get(&format!("{}/v1/logs?{query}", agent.url), token)
    };
    let read = Some(agent.token.as_str());
    let produced = |p: &serde_json::Value| {
        p["lines"].as_array().map_or(0, |l| {
            l.iter().filter(|l| l["text"].as_str().unwrap_or_default().contains("produced block")).count()
        })
    };
    let first = wait_for(Duration::from_secs(30), "node log lines with three blocks", || {
        let p = get("source=node&limit=1000", read).ok()?.json().ok()?;
        (produced(&p) >= 3).then_some(p)
    })?;
    let lines = first["lines"].as_array().cloned().unwrap_or_default();
    assert!(lines.iter().all(|l| !l["text"].as_str().unwrap_or_default().contains('\u{1b}')));
    assert!(lines.iter().any(|l| l["time_ms"].as_u64().is_some()), "{first}");

    // Paging: three lines at a time, each page after the last one's cursor, the same lines.
    let mut paged = Vec::new();
    let mut after = String::new();
    for _ in 0..200 {
        let q = if after.is_empty() {
            "source=node&limit=3".to_string()
        } else {
            format!("source=node&limit=3&after={after}")
        };
        let p = get(&q, read)?.json()?;
        paged.extend(p["lines"].as_array().cloned().unwrap_or_default());
        after = p["next"].as_str().unwrap_or_default().to_string();
        if paged.len() >= lines.len() {
            break;
        }
    }
    assert_eq!(
        paged[..lines.len()].iter().map(|l| &l["text"]).collect::<Vec<_>>(),
        lines.iter().map(|l| &l["text"]).collect::<Vec<_>>()
    );

    // Rotated under the reader: the next page goes on in the renamed file, then the new one.
    let before_rotation = get(&format!("source=node&after={after}&limit=1000"), read)?.json()?;
    let cursor = before_rotation["next"].as_str().unwrap_or_default().to_string();
    let target = node.data_dir.join("node.log");
    std::fs::rename(&target, logs.join("node.log.1"))?;
    std::fs::remove_file(logs.join("node.log"))?;
    std::fs::write(logs.join("node.log"), "2099-01-01T00:00:00Z after the rotation\n")?;
    let p = get(&format!("source=node&after={cursor}&limit=1000"), read)?.json()?;
    let texts: Vec<&str> =
        p["lines"].as_array().into_iter().flatten().filter_map(|l| l["text"].as_str()).collect();
    assert_eq!(texts.last(), Some(&"2099-01-01T00:00:00Z after the rotation"), "{p}");
    assert_eq!(p["gap"], false);
    // since= (Unix ms): only the line stamped at or after it.
    let p = get("source=node&since=4070908800000", read)?.json()?;
    assert_eq!(p["lines"].as_array().map(Vec::len), Some(1), "{p}");

    // The agent's own log; the kernel's where this machine lets it be read.
    let p = get("source=agent", read)?.json()?;
    assert!(!p["lines"].as_array().is_some_and(Vec::is_empty), "{p}");
    let kernel = get("source=system&limit=5", read)?;
    if std::fs::File::open("/dev/kmsg").is_ok() {
        assert_eq!(kernel.status, 200, "{}", kernel.body);
        assert_eq!(kernel.json()?["lines"].as_array().map(Vec::len), Some(5), "{}", kernel.body);
    } else {
        assert_eq!(kernel.status, 500, "{}", kernel.body);
    }

    // Bad requests: clear errors; no token: 401.
    assert_eq!(get("source=node", None)?.status, 401);
    let bad = get("source=nginx", read)?;
    assert!(bad.status == 400 && bad.body.contains("unknown log source"), "{}", bad.body);
    let bad = get("source=node&after=yesterday", read)?;
    assert!(bad.status == 400 && bad.body.contains("cursor"), "{}", bad.body);
    assert_eq!(get("source=node&limit=lots", read)?.status, 400);
    Ok(())
}

/// `GET /v1/support-bundle`: the admin token only; a tar.gz of the logs, the configuration with
/// every secret taken out, what the node says, telemetry, the audit log; signed manifest; recorded
/// in the audit log. Every token and the node key are searched for in every byte of it.
#[test]
fn a_support_bundle_holds_the_logs_and_the_config_and_no_secret() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::start_dev(&dir.path().join("node"), &["--empty-blocks"])?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    std::os::unix::fs::symlink(node.data_dir.join("node.log"), logs.join("node.log"))?;
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir)?;
    for file in ["token", "admin-token"] {
        let out = std::process::Command::new(aergo_tests::binary("aergo-agent"))
            .arg("gen-token")
            .arg(agent_dir.join(file))
            .output()?;
        anyhow::ensure!(out.status.success(), "gen-token: {}", String::from_utf8_lossy(&out.stderr));
    }
    let token = std::fs::read_to_string(agent_dir.join("token"))?.trim().to_string();
    let admin = std::fs::read_to_string(agent_dir.join("admin-token"))?.trim().to_string();
    // A provision file as a provider writes it (tokens in it), a service log a token slipped into,
    // and a key file named in the configuration by mistake.
    let provision = dir.path().join("provision.toml");
    std::fs::write(
        &provision,
        format!(
            "[node]\nrole = \"full\"\n\n[agent]\ntoken = \"{token}\"\nadmin_token = \"{admin}\"\n\n\
             [producer]\npassphrase = \"correct horse battery staple\"\n"
        ),
    )?;
    std::fs::write(
        logs.join("time.log"),
        format!("2026-12-05T10:00:00Z curl -H 'Authorization: Bearer {admin}'\n"),
    )?;
    // A log larger than the bundle keeps: only its newest bytes, whole lines.
    let big: String = (0..20_000).map(|i| format!("2026-12-05T10:00:00Z health line {i}\n")).collect();
    std::fs::write(logs.join("health.log"), &big)?;
    let config = agent_dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[support]\nconfig_files = [{p:?}, {n:?}, {k:?}, \"/nonexistent/x.toml\"]\nrauc_status = [\"echo\", \"{{\\\"slots\\\": []}}\"]\nmax_log_bytes = 65536\n",
            p = provision.display().to_string(),
            n = node.data_dir.join("config.toml").display().to_string(),
            k = node.data_dir.join("node.key").display().to_string(),
        ),
    )?;
    let agent = AgentProcess::start(
        &node.rpc,
        &node.data_dir,
        &agent_dir,
        &["--config", config.to_str().unwrap_or_default(), "--log-dir", logs.to_str().unwrap_or_default()],
    )?;
    // Blocks in the node's log first (a bundle taken at once could hold none yet).
    wait_for(Duration::from_secs(30), "the node to log a block", || {
        std::fs::read_to_string(node.data_dir.join("node.log")).ok().filter(|l| l.contains("produced block"))
    })?;
    let url = format!("{}/v1/support-bundle", agent.url);
    // A read token may not take the box's logs; no token is unknown.
    assert_eq!(aergo_tests::http_get_bytes(&url, None)?.0, 401);
    assert_eq!(aergo_tests::http_get_bytes(&url, Some(&token))?.0, 403);
    let (status, headers, body) = aergo_tests::http_get_bytes(&url, Some(&admin))?;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(header("content-type"), "application/gzip");
    assert!(header("content-disposition").contains("aergo-support-"), "{headers:?}");

    // Unpacked with the system's tar, as a support engineer would.
    let file = dir.path().join("bundle.tar.gz");
    std::fs::write(&file, &body)?;
    let out_dir = dir.path().join("unpacked");
    std::fs::create_dir_all(&out_dir)?;
    let status = std::process::Command::new("tar").arg("xzf").arg(&file).arg("-C").arg(&out_dir).status()?;
    assert!(status.success(), "tar could not unpack the bundle");
    let root = out_dir.join("aergo-support");
    let read = |name: &str| std::fs::read_to_string(root.join(name)).unwrap_or_default();
    let manifest: Value = serde_json::from_str(&read("manifest.json"))?;
    let names: Vec<String> = manifest["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["name"].as_str().map(String::from))
        .collect();
    for expected in [
        "node/node_info.json",
        "node/chain_info.json",
        "node/node_metrics.json",
        "node/peers.json",
        "telemetry/latest.json",
        "telemetry/history.jsonl",
        "audit.jsonl",
        "rauc-status.json",
        "logs/node.log",
        "logs/time.log",
        "logs/health.log",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} not in {names:?}");
    }
    // Every file is as the manifest says, and the manifest is signed by the node key.
    for f in manifest["files"].as_array().into_iter().flatten() {
        let bytes = std::fs::read(root.join(f["name"].as_str().unwrap_or_default()))?;
        assert_eq!(f["bytes"].as_u64(), Some(bytes.len() as u64), "{f}");
        let digest = <sha2::Sha256 as sha2::Digest>::digest(&bytes);
        assert_eq!(f["sha256"].as_str(), Some(hex::encode(digest).as_str()), "{f}");
    }
    let node_key = manifest["node_key"].as_str().unwrap_or_default().to_string();
    let info: Value = serde_json::from_str(&read("node/node_info.json"))?;
    assert_eq!(info["node_key"].as_str(), Some(node_key.as_str()));
    let mut signed = aergo_agent::http::SIGNATURE_DOMAIN.to_vec();
    signed.extend(std::fs::read(root.join("manifest.json"))?);
    let public = PublicKey(hex::decode(&node_key)?.try_into().map_err(|_| anyhow::anyhow!("key length"))?);
    let signature = Signature(
        hex::decode(read("manifest.json.sig").trim())?
            .try_into()
            .map_err(|_| anyhow::anyhow!("signature length"))?,
    );
    aergo_primitives::crypto::verify_message(&public, &signed, &signature)?;
    // The chain as the node says it, the node's log with its blocks, the configuration redacted.
    let chain: Value = serde_json::from_str(&read("node/chain_info.json"))?;
    assert!(chain["height"].as_u64().is_some(), "{chain}");
    assert!(read("logs/node.log").contains("produced block"));
    let health = read("logs/health.log");
    assert!(health.len() <= 65536 && health.ends_with("health line 19999\n") && health.starts_with("2026-"));
    let provision_copy = read(&format!("config{}", provision.display()));
    assert!(
        provision_copy.contains("role = \"full\"") && provision_copy.contains("<redacted>"),
        "{provision_copy}"
    );
    let missing = manifest["missing"].to_string();
    assert!(missing.contains("node.key: withheld"), "{missing}");
    assert!(missing.contains("/nonexistent/x.toml: not on this box"), "{missing}");
    // No secret anywhere in the bundle: the tokens, the passphrase, the node key in hex.
    let key = aergo_agent::read_key(&node.data_dir.join("node.key"))?;
    let secrets = [
        token.clone(),
        admin.clone(),
        "correct horse battery staple".into(),
        hex::encode(key.secret_bytes()),
    ];
    let mut everything = Vec::new();
    for entry in walk(&root)? {
        everything.extend(std::fs::read(entry)?);
    }
    for secret in &secrets {
        assert!(
            !everything.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a secret ({}…) is in the bundle",
            &secret[..4]
        );
    }
    assert!(read("logs/time.log").contains("Bearer <redacted>"));
    // Taking it is in the audit log, with the admin token's fingerprint.
    let audit = http_get(&format!("{}/v1/audit", agent.url), Some(&token))?.json()?;
    let taken = audit["entries"].as_array().into_iter().flatten().find(|e| e["action"] == "support-bundle");
    let taken = taken.ok_or_else(|| anyhow::anyhow!("no support-bundle record: {audit}"))?;
    assert_eq!(taken["token"], "admin");
    assert_eq!(taken["client"], "127.0.0.1");
    Ok(())
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

/// `install-update` / `cancel-update` against a devnet node and agent, with RAUC played by a
/// script at the process boundary (`rauc info` reads `version=` from the "bundle", `install`
/// prints progress) and the bundles served by the test over HTTP. The real RAUC and reboot are in
/// the QEMU update test (`aergo_image::check::update_tamper_rollback`).
#[test]
fn updates_over_the_network_are_checked_installed_refused_and_cancelled() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let node = NodeProcess::start_dev(&d.join("node"), &["--empty-blocks"])?;
    let files = d.join("served");
    std::fs::create_dir_all(&files)?;
    let bundle = |name: &str, version: &str, size: usize| -> anyhow::Result<()> {
        let mut body = format!("version={version}\n").into_bytes();
        body.resize(size, b'#');
        std::fs::write(files.join(name), body)?;
        Ok(())
    };
    bundle("older.raucb", "0.1.0-a", 4096)?;
    bundle("newer.raucb", "0.1.0-c", 3 << 20)?;
    bundle("unsigned.raucb", "", 4096)?;
    let server = aergo_tests::FileServer::start(&files)?;
    let served = |name: &str| format!("http://127.0.0.1:{}/{name}", server.port);
    // A port that takes the connection and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let silent_url = format!("http://{}/x.raucb", silent.local_addr()?);

    let rauc = d.join("rauc");
    let calls = d.join("rauc.calls");
    std::fs::write(
        &rauc,
        format!(
            "#!/bin/sh\necho \"$*\" >> {calls}\ncase \"$1\" in\n\
             info) v=$(sed -n 's/^version=//p' \"$3\" | head -n 1)\n  \
             [ -n \"$v\" ] || {{ echo 'signature verification failed: not signed by a key in the keyring' >&2; exit 1; }}\n  \
             echo \"{{\\\"compatible\\\":\\\"aergo-x86_64\\\",\\\"version\\\":\\\"$v\\\"}}\";;\n\
             install) for p in 0 20 40 60 80 100; do echo \"$p% Copying image to rootfs.1\"; sleep 0.6; done;;\n\
             esac\n",
            calls = calls.display()
        ),
    )?;
    std::fs::set_permissions(&rauc, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    std::fs::write(d.join("os-release"), "NAME=\"AERGO OS\"\nVERSION_ID=0.1.0-b\n")?;
    std::fs::write(d.join("cmdline"), "root=PARTLABEL=rootB rauc.slot=B\n")?;
    let reboots = d.join("reboots");
    let agent_dir = d.join("agent");
    std::fs::create_dir_all(&agent_dir)?;
    let config = agent_dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[actions]\nrestart_node = [\"true\"]\nreboot = [\"sh\", \"-c\", \"echo rebooted >> {reboots}\"]\n\n\
             [update]\ndir = \"{dir}\"\nrauc = \"{rauc}\"\nos_release = \"{os}\"\ncmdline = \"{cmdline}\"\n\
             good_marker = \"{good}\"\nconnect_timeout = \"2s\"\nresponse_timeout = \"2s\"\n",
            reboots = reboots.display(),
            dir = d.join("update").display(),
            rauc = rauc.display(),
            os = d.join("os-release").display(),
            cmdline = d.join("cmdline").display(),
            good = d.join("slot-good").display(),
        ),
    )?;
    let extra = ["--config", config.to_str().unwrap_or_default()];
    let mut agent = AgentProcess::start(&node.rpc, &node.data_dir, &agent_dir, &extra)?;
    let install = |agent: &AgentProcess, id: &str, args: serde_json::Value| {
        agent.action("install-update", &serde_json::json!({"request_id": id, "args": args}).to_string())
    };
    // The update as telemetry shows it, once it is for `id` and in one of `phases`.
    let phase = |agent: &AgentProcess, id: &str, phases: &[&str]| {
        wait_for(Duration::from_secs(60), &format!("update {id} to be {phases:?}"), || {
            let t = telemetry(agent).ok()?;
            let u = t["update"].clone();
            (u["request_id"] == id && phases.contains(&u["phase"].as_str()?)).then_some(u)
        })
    };
    let outcome = |agent: &AgentProcess, id: &str| -> anyhow::Result<Value> {
        wait_for(Duration::from_secs(30), &format!("the outcome of {id} in the audit log"), || {
            let a = http_get(&format!("{}/v1/audit", agent.url), Some(&agent.token)).ok()?.json().ok()?;
            a["entries"].as_array()?.iter().find(|e| e["request_id"] == format!("{id}/outcome")).cloned()
        })
    };
    let rauc_calls = || std::fs::read_to_string(&calls).unwrap_or_default();

    // Hostile or wrong requests: refused at once, nothing starts.
    for bad in [
        serde_json::json!({"url": "file:///etc/shadow"}),
        serde_json::json!({"url": "http://x/b.raucb", "sha256": "zz"}),
        serde_json::json!({"url": "http://x/b.raucb", "force": true}),
    ] {
        let a = install(&agent, "u-bad", bad.clone())?;
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
    }
    assert!(telemetry(&agent)?["update"].is_null());

    // A server that never answers: a bounded, clear failure.
    let started = Instant::now();
    assert_eq!(install(&agent, "u-1", serde_json::json!({"url": silent_url}))?.status, 202);
    let failed = phase(&agent, "u-1", &["failed"])?;
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    assert!(failed["message"].as_str().unwrap_or_default().contains("downloading"), "{failed}");
    assert_eq!(outcome(&agent, "u-1")?["result"], "failed");

    // Not signed (rauc info refuses it), and an older version: refused, never installed.
    assert_eq!(install(&agent, "u-2", serde_json::json!({"url": served("unsigned.raucb")}))?.status, 202);
    let refused = phase(&agent, "u-2", &["refused"])?;
    assert!(
        refused["message"].as_str().unwrap_or_default().contains("signature verification failed"),
        "{refused}"
    );
    assert_eq!(install(&agent, "u-3", serde_json::json!({"url": served("older.raucb")}))?.status, 202);
    let older = phase(&agent, "u-3", &["refused"])?;
    assert!(
        older["message"].as_str().unwrap_or_default().contains("not newer than the running 0.1.0-b"),
        "{older}"
    );
    let older_outcome = outcome(&agent, "u-3")?;
    assert_eq!(older_outcome["result"], "refused");
    assert!(older_outcome["message"].as_str().unwrap_or_default().contains("0.1.0-a"), "{older_outcome}");
    // A download that is not what Horde said it is.
    let wrong_sha = serde_json::json!({"url": served("newer.raucb"), "sha256": "00".repeat(32)});
    assert_eq!(install(&agent, "u-4", wrong_sha)?.status, 202);
    let bad_sum = phase(&agent, "u-4", &["failed"])?;
    assert!(bad_sum["message"].as_str().unwrap_or_default().contains("SHA-256"), "{bad_sum}");
    assert!(!rauc_calls().contains("install"), "a refused bundle was installed: {}", rauc_calls());
    assert!(!d.join("update/bundle.raucb").exists() && !d.join("update/bundle.raucb.part").exists());

    // Installed, then waiting for its reboot time; cancelled: the booted slot stays the next one.
    let later = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() + 3600;
    let body = serde_json::json!({"url": served("newer.raucb"), "reboot_at": later});
    assert_eq!(install(&agent, "u-5", body)?.status, 202);
    let waiting = phase(&agent, "u-5", &["waiting"])?;
    assert_eq!(waiting["version"], "0.1.0-c");
    let busy = install(&agent, "u-6", serde_json::json!({"url": served("newer.raucb")}))?;
    assert!(busy.status == 500 && busy.body.contains("under way"), "{}", busy.body);
    let cancel = agent.action("cancel-update", r#"{"request_id": "c-1"}"#)?;
    assert_eq!(cancel.status, 200, "{}", cancel.body);
    phase(&agent, "u-5", &["cancelled"])?;
    assert_eq!(outcome(&agent, "u-5")?["result"], "cancelled");
    assert!(rauc_calls().contains("status mark-active booted"), "{}", rauc_calls());
    assert!(!reboots.exists(), "a cancelled update rebooted");
    let nothing = agent.action("cancel-update", r#"{"request_id": "c-2"}"#)?;
    assert!(nothing.status == 200 && nothing.body.contains("no update is under way"), "{}", nothing.body);

    // The newer bundle: downloaded, checked, installed (progress seen), rebooted into.
    assert_eq!(install(&agent, "u-7", serde_json::json!({"url": served("newer.raucb")}))?.status, 202);
    let installing = phase(&agent, "u-7", &["installing"])?;
    assert!(installing["message"].as_str().is_some(), "{installing}");
    let partway = wait_for(Duration::from_secs(30), "installing progress between 0 and 100 %", || {
        let u = telemetry(&agent).ok()?["update"].clone();
        u["progress_pct"].as_u64().filter(|p| (1..100).contains(p) && u["phase"] == "installing").map(|_| u)
    })?;
    assert!(partway["message"].as_str().unwrap_or_default().contains("Copying"), "{partway}");
    let done = phase(&agent, "u-7", &["rebooting"])?;
    assert_eq!(done["from_version"], "0.1.0-b");
    assert_eq!(done["from_slot"], "B");
    assert_eq!(outcome(&agent, "u-7")?["result"], "ok");
    assert_eq!(std::fs::read_to_string(&reboots)?.lines().count(), 1);
    assert!(rauc_calls().lines().any(|l| l.starts_with("install ")), "{}", rauc_calls());

    // "After the reboot": the agent starts on slot A with 0.1.0-c: booted, then marked good.
    agent.child.kill()?;
    agent.child.wait()?;
    std::fs::write(d.join("os-release"), "NAME=\"AERGO OS\"\nVERSION_ID=0.1.0-c\n")?;
    std::fs::write(d.join("cmdline"), "root=PARTLABEL=rootA rauc.slot=A\n")?;
    agent = AgentProcess::start(&node.rpc, &node.data_dir, &agent_dir, &extra)?;
    phase(&agent, "u-7", &["booted"])?;
    std::fs::write(d.join("slot-good"), "")?;
    let good = phase(&agent, "u-7", &["marked-good"])?;
    assert!(good["message"].as_str().unwrap_or_default().contains("0.1.0-c"), "{good}");

    // A box that follows a channel: a newer release there is installed on its own (as Horde's
    // request would be, recorded with the channel as the asker); an unreadable channel is said in
    // telemetry and changes nothing.
    bundle("newest.raucb", "0.1.0-d", 4096)?;
    std::fs::write(files.join("stable.json"), r#"{"version": "0.1.0-d", "url": "newest.raucb"}"#)?;
    drop(agent);
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&format!("channel = \"{}\"\ncheck_interval = \"1s\"\n", served("stable.json")));
    std::fs::write(&config, text)?;
    let agent = AgentProcess::start(&node.rpc, &node.data_dir, &agent_dir, &extra)?;
    let from_channel = wait_for(Duration::from_secs(60), "the channel's release to be installed", || {
        let u = telemetry(&agent).ok()?["update"].clone();
        (u["request_id"].as_str()?.starts_with("channel-") && u["phase"] == "rebooting").then_some(u)
    })?;
    assert_eq!(from_channel["version"], "0.1.0-d");
    assert_eq!(from_channel["url"], served("newest.raucb"));
    assert_eq!(std::fs::read_to_string(&reboots)?.lines().count(), 2);
    let t = telemetry(&agent)?;
    assert_eq!(t["update_channel"]["offered_version"], "0.1.0-d", "{}", t["update_channel"]);
    let id = from_channel["request_id"].as_str().unwrap_or_default().to_string();
    let asked = outcome(&agent, &id)?;
    assert_eq!((asked["result"].as_str(), asked["token"].as_str()), (Some("ok"), Some("channel")));
    std::fs::write(files.join("stable.json"), "not a channel")?;
    let said = wait_for(Duration::from_secs(30), "the channel's error in telemetry", || {
        let c = telemetry(&agent).ok()?["update_channel"].clone();
        c["error"].as_str().filter(|e| e.contains("not a channel document")).map(|_| c.clone())
    })?;
    assert_eq!(said["url"], served("stable.json"));
    assert_eq!(
        std::fs::read_to_string(&reboots)?.lines().count(),
        2,
        "an unreadable channel rebooted the box"
    );
    drop(silent);
    Ok(())
}

/// HTTPS: the agent makes its certificate at the first start and serves with it (the same one
/// after a restart); the certificate's fingerprint is in the telemetry the node key signs, so a
/// client can learn it once and check it; a client pinned to it gets answers, one pinned to another
/// certificate is refused before it sends its token; plain HTTP to the port gets no answer; a
/// certificate without its key is refused at start, naming the file.
#[test]
fn the_agent_serves_https_with_a_certificate_horde_pins() -> anyhow::Result<()> {
    use aergo_telemetry::client::{self, Pin};
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::start_dev(&dir.path().join("node"), &["--empty-blocks"])?;
    let agent_dir = dir.path().join("agent");
    let agent = AgentProcess::start_tls(&node.rpc, &node.data_dir, &agent_dir, &[])?;
    assert!(agent.url.starts_with("https://"), "{}", agent.url);
    let pem = std::fs::read_to_string(agent_dir.join("tls/cert.pem"))?;
    let pin = client::pem_fingerprint(&pem).ok_or_else(|| anyhow::anyhow!("no certificate in {pem}"))?;
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(agent_dir.join("tls/key.pem"))?.permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let send = |url: &str, pin: &Pin, token: Option<&str>| {
        client::send(&client::Request {
            url,
            token,
            body: None,
            pin,
            timeout: Duration::from_secs(10),
            max_bytes: 16 << 20,
        })
    };
    let telemetry_url = format!("{}/v1/telemetry", agent.url);

    // Trust on first use, checked by the node's signature: the certificate served is the one the
    // signed telemetry names.
    let first = send(&telemetry_url, &Pin::Learn, Some(&agent.token))?;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.fingerprint.as_deref(), Some(pin.as_str()));
    let key =
        PublicKey(hex::decode(first.header("x-aergo-node-key").unwrap_or_default())?.try_into().unwrap());
    let sig =
        Signature(hex::decode(first.header("x-aergo-signature").unwrap_or_default())?.try_into().unwrap());
    let mut signed = aergo_agent::http::SIGNATURE_DOMAIN.to_vec();
    signed.extend_from_slice(&first.body);
    aergo_primitives::crypto::verify_message(&key, &signed, &sig)?;
    let body: Value = serde_json::from_slice(&first.body)?;
    assert_eq!(body["agent"]["tls_fingerprint"].as_str(), Some(pin.as_str()));

    // Pinned: answered. Another pin: refused in the handshake, before the token is sent.
    let pinned = send(&telemetry_url, &Pin::Fingerprint(pin.clone()), Some(&agent.token))?;
    assert_eq!(pinned.status, 200);
    let wrong = send(&telemetry_url, &Pin::Fingerprint("00".repeat(32)), Some(&agent.token));
    let e = wrong.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("is not the pinned"), "{e}");
    // Plain HTTP to the HTTPS port: no HTTP answer.
    let plain = send(&agent.url.replace("https://", "http://"), &Pin::Learn, None);
    assert!(plain.is_err(), "plain HTTP was answered: {:?}", plain.map(|a| a.status));

    // Restarted: the same certificate.
    drop(agent);
    let agent = AgentProcess::start_tls(&node.rpc, &node.data_dir, &agent_dir, &[])?;
    let again = send(&format!("{}/livez", agent.url), &Pin::Fingerprint(pin.clone()), None)?;
    assert_eq!(again.status, 200);
    drop(agent);

    // A certificate whose key is gone: refused at start, naming the file; nothing is made anew.
    std::fs::remove_file(agent_dir.join("tls/key.pem"))?;
    let refused = AgentProcess::start_tls(&node.rpc, &node.data_dir, &agent_dir, &[]);
    let e = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("key.pem") && e.contains("does not"), "{e}");
    assert_eq!(std::fs::read_to_string(agent_dir.join("tls/cert.pem"))?, pem);
    Ok(())
}
