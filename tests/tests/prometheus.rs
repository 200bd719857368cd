//! A real Prometheus (the distribution's package) scrapes the agent with the bearer token: the target is
//! up and `aergo_chain_height` rises, seen through Prometheus's own HTTP API.

use aergo_tests::{http_get, wait_for, AgentProcess, NodeProcess};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One instant-vector value of `query`, if Prometheus has one.
fn query(prom: &str, query: &str) -> Option<f64> {
    let q = aergo_image::check::percent_encode(query);
    let a = http_get(&format!("{prom}/api/v1/query?query={q}"), None).ok()?;
    let v = a.json().ok()?;
    v["data"]["result"].as_array()?.first()?["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_scrapes_the_agent_with_its_token() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::start_dev(&dir.path().join("node"), &["--empty-blocks"])?;
    let agent = AgentProcess::start(&node.rpc, &node.data_dir, &dir.path().join("agent"), &[])?;
    let target = agent.url.trim_start_matches("http://");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: aergo\n    \
             authorization:\n      credentials_file: {}\n    static_configs:\n      - targets: ['{target}']\n",
            agent.dir.join("token").display()
        ),
    )?;
    let port = free_port()?;
    let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!("prometheus (package prometheus, installed by scripts/deps.sh): {e}")
            })?,
    );
    let prom = format!("http://127.0.0.1:{port}");
    let log = || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    wait_for(Duration::from_secs(60), "prometheus ready", || {
        http_get(&format!("{prom}/-/ready"), None).ok().filter(|a| a.status == 200)
    })
    .map_err(|e| anyhow::anyhow!("{e}; prometheus log:\n{}", log()))?;
    wait_for(Duration::from_secs(60), "the agent target up", || {
        query(&prom, "up{job=\"aergo\"}").filter(|v| *v == 1.0)
    })
    .map_err(|e| anyhow::anyhow!("{e}; prometheus log:\n{}\nagent log:\n{}", log(), agent.log()))?;
    let first = wait_for(Duration::from_secs(30), "a scraped height", || query(&prom, "aergo_chain_height"))?;
    let later = wait_for(Duration::from_secs(30), "the scraped height rising", || {
        query(&prom, "aergo_chain_height").filter(|h| *h > first)
    })?;
    assert!(later > first);
    assert_eq!(query(&prom, "aergo_health_check_status{check=\"node_rpc\"}"), Some(0.0));
    assert!(query(&prom, "node_memory_total_bytes").unwrap_or(0.0) > 0.0);
    Ok(())
}
