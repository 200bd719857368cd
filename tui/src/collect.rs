//! Data for the screens, collected off the UI thread.
//!
//! A thread runs a single-threaded tokio runtime with four tasks: the node poller (every second:
//! `chain_info`, `node_info`, `node_metrics`, `peers`, the finalized block's time and any new block
//! headers), the agent poller (every two seconds: `/v1/telemetry` with the bearer token, re-read from
//! its file each time so that a token made by Setup is picked up), the address reader (every ten
//! seconds) and the request handler (block details for the Blocks screen). Every call has a timeout;
//! failures are reported as events and the next round simply tries again.

use crate::app::{Event, NodeSnapshot, Update};
use crate::ops::AuditView;
use aergo_api::AergoApiClient;
use aergo_telemetry::Sample;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::time::Duration;

/// A call to the node or the agent gives up after this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
const NODE_EVERY: Duration = Duration::from_secs(1);
const AGENT_EVERY: Duration = Duration::from_secs(2);
const ADDRESSES_EVERY: Duration = Duration::from_secs(10);
/// Headers fetched when the console starts or falls behind.
const BLOCKS_BACKFILL: u64 = 60;

#[derive(Clone, Debug)]
pub struct Endpoints {
    pub node_url: String,
    pub agent_url: String,
    pub agent_token_file: Option<PathBuf>,
    /// The agent's TLS certificate (PEM), read each time: an `https://` agent is pinned to it.
    pub agent_cert_file: Option<PathBuf>,
}

/// Asks the collector for something on demand.
#[derive(Debug)]
pub enum Request {
    /// A block of the branch the Blocks screen shows, with its transactions.
    Block(String, u64),
    /// Follow another branch's blocks (`main`, or a branch the node holds).
    ShowBranch(String),
}

pub struct Collector {
    requests: tokio::sync::mpsc::UnboundedSender<Request>,
}

impl Collector {
    pub fn request(&self, r: Request) {
        let _ = self.requests.send(r);
    }
}

/// Starts the collector thread. It ends when the event receiver is dropped.
pub fn spawn(endpoints: Endpoints, events: Sender<Event>) -> std::io::Result<Collector> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("collector".into()).spawn(move || {
        runtime.block_on(run(endpoints, events, rx));
    })?;
    Ok(Collector { requests: tx })
}

async fn run(
    endpoints: Endpoints,
    events: Sender<Event>,
    mut requests: tokio::sync::mpsc::UnboundedReceiver<Request>,
) {
    let client = HttpClientBuilder::default()
        .request_timeout(CALL_TIMEOUT)
        .max_response_size(32 << 20)
        .build(&endpoints.node_url)
        .map_err(|e| format!("node URL {}: {e}", endpoints.node_url));
    // The branch whose blocks the Blocks screen shows; the on-demand task switches it.
    let shown = std::sync::Arc::new(std::sync::Mutex::new(MAIN.to_string()));
    let node = {
        let events = events.clone();
        let client = client.clone();
        let shown = shown.clone();
        async move {
            let mut poller =
                NodePoller { last_height: None, lib: None, shown: shown.clone(), shown_last: None };
            let mut tick = tokio::time::interval(NODE_EVERY);
            loop {
                tick.tick().await;
                let updates = match &client {
                    Ok(c) => poller.poll(c).await,
                    Err(e) => vec![Update::Node(Err(e.clone()))],
                };
                for u in updates {
                    if events.send(Event::Update(u)).is_err() {
                        return;
                    }
                }
            }
        }
    };
    let agent = {
        let events = events.clone();
        let endpoints = endpoints.clone();
        async move {
            let mut tick = tokio::time::interval(AGENT_EVERY);
            loop {
                tick.tick().await;
                let endpoints2 = endpoints.clone();
                let polled = tokio::task::spawn_blocking(move || {
                    (fetch_telemetry(&endpoints2), fetch_audit(&endpoints2))
                })
                .await;
                let (telemetry, audit) = polled.unwrap_or_else(|e| {
                    (Err(format!("agent poll failed: {e}")), Err(format!("agent poll failed: {e}")))
                });
                if events.send(Event::Update(Update::Agent(telemetry))).is_err()
                    || events.send(Event::Update(Update::Audit(audit))).is_err()
                {
                    return;
                }
            }
        }
    };
    let addresses = {
        let events = events.clone();
        async move {
            let mut tick = tokio::time::interval(ADDRESSES_EVERY);
            loop {
                tick.tick().await;
                if events.send(Event::Update(Update::Addresses(local_addresses()))).is_err() {
                    return;
                }
            }
        }
    };
    let on_request = {
        let events = events.clone();
        async move {
            while let Some(request) = requests.recv().await {
                let (branch, height) = match request {
                    Request::Block(branch, height) => (branch, height),
                    Request::ShowBranch(branch) => {
                        if let Ok(mut s) = shown.lock() {
                            *s = branch;
                        }
                        continue;
                    }
                };
                let result = match &client {
                    Ok(c) => match c.get_block(Some(height), None, Some(true), branch_param(&branch)).await {
                        Ok(Some(b)) => Ok(Box::new(b)),
                        Ok(None) => Err(format!("the node has no block {height}")),
                        Err(e) => Err(format!("node RPC: {e}")),
                    },
                    Err(e) => Err(e.clone()),
                };
                if events.send(Event::Update(Update::BlockDetail(height, result))).is_err() {
                    return;
                }
            }
        }
    };
    let signals = async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut hup), Ok(mut int)) =
            (signal(SignalKind::terminate()), signal(SignalKind::hangup()), signal(SignalKind::interrupt()))
        else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = hup.recv() => {},
            _ = int.recv() => {},
        }
        let _ = events.send(Event::Shutdown);
    };
    // Each task returns when the UI is gone; the first to notice ends the collector.
    tokio::select! {
        _ = node => {},
        _ = agent => {},
        _ = addresses => {},
        _ = on_request => {},
        _ = signals => {},
    }
}

struct NodePoller {
    last_height: Option<u64>,
    /// Finalized height and its block's time.
    lib: Option<(u64, u64)>,
    /// The branch the Blocks screen shows, and the one the last blocks sent were of.
    shown: std::sync::Arc<std::sync::Mutex<String>>,
    shown_last: Option<String>,
}

const MAIN: &str = "main";

/// `None` for `main` (the RPC's default), else the branch's name.
fn branch_param(branch: &str) -> Option<String> {
    (branch != MAIN).then(|| branch.to_string())
}

impl NodePoller {
    async fn poll(&mut self, c: &HttpClient) -> Vec<Update> {
        let (chain, info, metrics, peers) =
            tokio::join!(c.chain_info(None), c.node_info(), c.node_metrics(), c.peers());
        let (chain, info, metrics, peers) = match (chain, info, metrics, peers) {
            (Ok(c), Ok(i), Ok(m), Ok(p)) => (c, i, m, p),
            (c, i, m, p) => {
                let e = [c.err(), i.err(), m.err(), p.err()].into_iter().flatten().next();
                return vec![Update::Node(Err(describe_rpc_error(e)))];
            }
        };
        let mut updates = Vec::new();
        // The branches this node holds, for the Blocks screen's `b`.
        if let Ok(branches) = c.get_branches().await {
            let held = branches.into_iter().filter(|b| b.head_height.is_some()).map(|b| b.name).collect();
            updates.push(Update::Branches(held));
        }
        // The hosted repositories (none on a node older than hosting).
        updates.push(Update::Repositories(c.repositories().await.unwrap_or_default()));
        if self.lib.map(|(h, _)| h) != Some(chain.lib_height) {
            if let Ok(Some(b)) = c.get_block(Some(chain.lib_height), None, Some(false), None).await {
                self.lib = Some((chain.lib_height, b.header.timestamp_ms));
            }
        }
        // New headers of the shown branch since the last round (all of them after a restart of
        // the chain, or when another branch is shown).
        let shown = self.shown.lock().map(|s| s.clone()).unwrap_or_else(|_| MAIN.to_string());
        if self.shown_last.as_deref() != Some(shown.as_str()) {
            self.last_height = None;
        }
        let head = if shown == MAIN {
            Some(chain.height)
        } else {
            c.chain_info(Some(shown.clone())).await.ok().map(|i| i.height)
        };
        if let Some(head) = head {
            let from = match self.last_height {
                Some(h) if h <= head => h + 1,
                _ => head.saturating_sub(BLOCKS_BACKFILL - 1),
            }
            .max(head.saturating_sub(BLOCKS_BACKFILL - 1));
            let mut blocks = Vec::new();
            for height in from..=head {
                match c.get_block(Some(height), None, Some(false), branch_param(&shown)).await {
                    Ok(Some(b)) => blocks.push(b),
                    _ => break,
                }
            }
            if let Some(last) = blocks.last() {
                self.last_height = Some(last.height);
            }
            if !blocks.is_empty() || self.shown_last.as_deref() != Some(shown.as_str()) {
                updates.push(Update::Blocks(shown.clone(), blocks));
            }
            self.shown_last = Some(shown);
        }
        let lib_timestamp_ms = self.lib.filter(|(h, _)| *h == chain.lib_height).map(|(_, t)| t);
        updates.insert(
            0,
            Update::Node(Ok(Box::new(NodeSnapshot { chain, info, metrics, peers, lib_timestamp_ms }))),
        );
        updates
    }
}

fn describe_rpc_error(e: Option<jsonrpsee::core::client::Error>) -> String {
    use jsonrpsee::core::client::Error;
    match e {
        Some(Error::RequestTimeout) => format!("no answer within {} s", CALL_TIMEOUT.as_secs()),
        Some(Error::Transport(t)) => {
            let text = t.to_string();
            let mut source = t.source();
            let mut deepest = None;
            while let Some(s) = source {
                deepest = Some(s.to_string());
                source = s.source();
            }
            // The innermost cause says what happened ("Connection refused"); the layers above it
            // repeat the URL the screen already shows.
            deepest.unwrap_or(text)
        }
        Some(e) => e.to_string(),
        None => "unknown error".into(),
    }
}

/// How many of the newest audit records the Operations screen shows.
pub const AUDIT_SHOWN: u64 = 8;

/// The newest [`AUDIT_SHOWN`] records of the agent's audit log, newest first.
fn fetch_audit(endpoints: &Endpoints) -> Result<Vec<AuditView>, String> {
    #[derive(serde::Deserialize)]
    struct Page {
        latest_seq: u64,
        entries: Vec<AuditView>,
    }
    let latest: Page = serde_json::from_str(&agent_get(endpoints, "/v1/audit?since=0&limit=1")?)
        .map_err(|e| format!("unexpected audit log: {e}"))?;
    let since = latest.latest_seq.saturating_sub(AUDIT_SHOWN);
    let page: Page =
        serde_json::from_str(&agent_get(endpoints, &format!("/v1/audit?since={since}&limit={AUDIT_SHOWN}"))?)
            .map_err(|e| format!("unexpected audit log: {e}"))?;
    Ok(page.entries.into_iter().rev().collect())
}

fn fetch_telemetry(endpoints: &Endpoints) -> Result<Box<Sample>, String> {
    serde_json::from_str(&agent_get(endpoints, "/v1/telemetry")?)
        .map(Box::new)
        .map_err(|e| format!("unexpected telemetry: {e}"))
}

/// The body of the agent's answer to `GET path` with the token, or why there is none. An
/// `https://` agent is pinned to the certificate in its file on this box.
fn agent_get(endpoints: &Endpoints, path: &str) -> Result<String, String> {
    use aergo_telemetry::client;
    let url = format!("{}{path}", endpoints.agent_url.trim_end_matches('/'));
    let token = match &endpoints.agent_token_file {
        Some(path) => {
            Some(std::fs::read_to_string(path).map_err(|e| format!("token file {}: {e}", path.display()))?)
        }
        None => None,
    };
    let pin = if url.starts_with("https://") {
        let file = endpoints.agent_cert_file.as_ref().ok_or("no agent certificate to pin (--agent-cert)")?;
        let pem = std::fs::read_to_string(file)
            .map_err(|e| format!("agent certificate {}: {e}", file.display()))?;
        client::Pin::Fingerprint(
            client::pem_fingerprint(&pem)
                .ok_or_else(|| format!("{}: no certificate in it", file.display()))?,
        )
    } else {
        client::Pin::Learn
    };
    let answer = client::send(&client::Request {
        url: &url,
        token: token.as_deref().map(str::trim),
        body: None,
        pin: &pin,
        timeout: CALL_TIMEOUT,
        max_bytes: 8 << 20,
    })
    .map_err(|e| e.to_string())?;
    let (status, body) = (answer.status, answer.text());
    match status {
        200 => Ok(body),
        401 => Err("the agent refused the token (401): check --agent-token-file".into()),
        s => Err(format!("the agent answered HTTP {s}")),
    }
}

/// The box's addresses, `interface address/prefix`, loopback left out.
pub fn local_addresses() -> Vec<String> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    let mut out = Vec::new();
    for a in addrs {
        let (Some(addr), Some(mask)) = (a.address, a.netmask) else { continue };
        let (ip, prefix): (std::net::IpAddr, u32) =
            if let (Some(v4), Some(m4)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
                (v4.ip().into(), m4.ip().to_bits().count_ones())
            } else if let (Some(v6), Some(m6)) = (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
                (v6.ip().into(), m6.ip().to_bits().count_ones())
            } else {
                continue;
            };
        if ip.is_loopback() {
            continue;
        }
        if let std::net::IpAddr::V6(v6) = ip {
            // Link-local addresses are noise on a status screen.
            if v6.segments()[0] & 0xffc0 == 0xfe80 {
                continue;
            }
        }
        out.push(format!("{} {ip}/{prefix}", a.interface_name));
    }
    out.sort();
    out.dedup();
    out
}
