//! `GET /v1/support-bundle` (admin token): a tar.gz of what a support engineer asks for first — the
//! box's logs, its configuration with every secret taken out, what the node says about itself and
//! its chain, recent telemetry, the audit log and the RAUC status — streamed as it is written, so a
//! box with large logs never holds the bundle in memory. Design: `docs/agent.md`.
//!
//! Secrets stay out in three ways: files that hold keys or tokens are never read (a name ending in
//! `.key` or `.token`, or holding `keystore`); in a configuration file every value whose key names a
//! secret (`token`, `passphrase`, `secret`, `password`, `private`) is replaced by `<redacted>`; and
//! every byte of the bundle is searched for the secrets the agent knows (its read and admin tokens
//! and the node key, in hex) which are replaced the same way. `manifest.json` lists every file
//! with its size and SHA-256 and what was cut or left out; `manifest.json.sig` signs it with the
//! node key (ed25519 over `"aergo-agent/v1\n" ‖ manifest`, as the other answers), so a bundle passed
//! on can be checked against the box.

use crate::http::{json_error, AppState};
use aergo_api::AergoApiClient;
use aergo_primitives::clock::now_ms;
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

/// Key names whose values are secrets (compared in lower case, as parts of the name).
const SECRET_KEY_PARTS: [&str; 5] = ["token", "passphrase", "secret", "password", "private"];
pub const REDACTED: &str = "<redacted>";
/// Telemetry samples and audit records in a bundle at most.
const HISTORY_SAMPLES: usize = 300;
const AUDIT_RECORDS: usize = 500;
/// Kernel log lines at most.
const KERNEL_LINES: usize = 20_000;

#[derive(Serialize)]
struct FileEntry {
    name: String,
    bytes: u64,
    sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Serialize)]
struct Manifest {
    format: &'static str,
    created_ms: u64,
    agent_version: &'static str,
    node_key: String,
    files: Vec<FileEntry>,
    /// What could not be put in, and why.
    missing: Vec<String>,
}

/// What the bundle is made of that needs the async side (the node's RPC, the agent's own state).
struct Gathered {
    parts: Vec<(String, Vec<u8>)>,
    missing: Vec<String>,
}

/// Whether a configuration key names a secret.
fn secret_key(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|p| name.contains(p))
}

/// A file the bundle never reads, whatever the configuration lists.
pub fn withheld(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    name.ends_with(".key") || name.ends_with(".token") || name.contains("keystore") || name.ends_with(".pem")
}

fn redact_toml(value: &mut toml::Value) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                if secret_key(k) && !v.is_table() {
                    *v = toml::Value::String(REDACTED.into());
                } else {
                    redact_toml(v);
                }
            }
        }
        toml::Value::Array(a) => a.iter_mut().for_each(redact_toml),
        _ => {}
    }
}

/// A configuration file with the values of secret-named keys replaced: as TOML when it is TOML,
/// else line by line (`name = value`, `name: value`, `NAME=value`).
pub fn redact_config(text: &str) -> String {
    if let Ok(mut value) = text.parse::<toml::Table>().map(toml::Value::Table) {
        redact_toml(&mut value);
        if let Ok(out) = toml::to_string(&value) {
            return out;
        }
    }
    text.lines()
        .map(|line| {
            let split = line.find(['=', ':']);
            match split {
                Some(i) if secret_key(line[..i].trim()) => {
                    format!("{}{} {REDACTED}", &line[..i], &line[i..=i])
                }
                _ => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Replaces every occurrence of each secret in `bytes`.
pub fn scrub(bytes: &mut Vec<u8>, secrets: &[Vec<u8>]) {
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        let mut changed = false;
        while i < bytes.len() {
            if bytes[i..].starts_with(secret) {
                out.extend_from_slice(REDACTED.as_bytes());
                i += secret.len();
                changed = true;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        if changed {
            *bytes = out;
        }
    }
}

/// The newest `max` bytes of `path` (from a line start), and whether older ones were cut.
fn tail(path: &Path, max: u64) -> std::io::Result<(Vec<u8>, bool)> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let cut = len > max;
    if cut {
        f.seek(SeekFrom::Start(len - max))?;
    }
    let mut buf = Vec::with_capacity(len.min(max) as usize);
    f.take(max).read_to_end(&mut buf)?;
    if cut {
        if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            buf.drain(..=nl);
        }
    }
    Ok((buf, cut))
}

/// A `Write` that hands 64 KiB chunks to the response body; fails once the client has gone.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 << 10 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn to_json<T: Serialize>(r: Result<T, jsonrpsee::core::ClientError>) -> Result<serde_json::Value, String> {
    r.map_err(|e| e.to_string()).and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()))
}

/// Asks the node for what it says about itself (each call bounded by the agent's node timeout).
async fn gather(state: &AppState) -> Gathered {
    let mut parts = Vec::new();
    let mut missing = Vec::new();
    let pretty = |v: serde_json::Value| serde_json::to_vec_pretty(&v).unwrap_or_default();
    match jsonrpsee::http_client::HttpClientBuilder::default()
        .request_timeout(state.node_timeout)
        .max_response_size(16 << 20)
        .build(&state.node_url)
    {
        Ok(client) => {
            let (info, chain, metrics, peers) = tokio::join!(
                client.node_info(),
                client.chain_info(None),
                client.node_metrics(),
                client.peers()
            );
            let mut put = |name: &str, r: Result<serde_json::Value, String>| match r {
                Ok(v) => parts.push((format!("node/{name}.json"), pretty(v))),
                Err(e) => missing.push(format!("node/{name}.json: {e}")),
            };
            put("node_info", to_json(info));
            put("chain_info", to_json(chain));
            put("node_metrics", to_json(metrics));
            put("peers", to_json(peers));
        }
        Err(e) => missing.push(format!("node/*: the node's URL {}: {e}", state.node_url)),
    }
    // Telemetry: the latest sample and the ones before it.
    let latest = state.latest.read().clone();
    parts.push(("telemetry/latest.json".into(), latest.json.to_vec()));
    let plan = {
        let spool = state.spool.lock();
        spool.plan(spool.last_seq().saturating_sub(HISTORY_SAMPLES as u64), HISTORY_SAMPLES)
    };
    match tokio::task::spawn_blocking(move || plan.read()).await {
        Ok(Ok(samples)) => {
            let mut out = Vec::new();
            for (_, payload) in samples {
                out.extend_from_slice(&payload);
                out.push(b'\n');
            }
            parts.push(("telemetry/history.jsonl".into(), out));
        }
        Ok(Err(e)) => missing.push(format!("telemetry/history.jsonl: {e}")),
        Err(e) => missing.push(format!("telemetry/history.jsonl: {e}")),
    }
    // The audit log's newest records.
    {
        let audit = state.audit.lock().await;
        let since = audit.last_seq().saturating_sub(AUDIT_RECORDS as u64);
        match audit.since(since, AUDIT_RECORDS) {
            Ok((entries, _)) => {
                let mut out = Vec::new();
                for e in entries {
                    out.extend(serde_json::to_vec(&e).unwrap_or_default());
                    out.push(b'\n');
                }
                parts.push(("audit.jsonl".into(), out));
            }
            Err(e) => missing.push(format!("audit.jsonl: {e}")),
        }
    }
    // The RAUC status, from the configured command.
    match crate::actions::run_command(&state.support.rauc_status).await {
        Ok(out) => parts.push(("rauc-status.json".into(), out.into_bytes())),
        Err(e) => missing.push(format!("rauc-status.json: {e}")),
    }
    Gathered { parts, missing }
}

/// One file of the bundle, under `aergo-support/`.
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
    created_ms: u64,
) -> std::io::Result<()> {
    let mut head = tar::Header::new_gnu();
    head.set_size(bytes.len() as u64);
    head.set_mode(0o644);
    head.set_mtime(created_ms / 1000);
    head.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut head, format!("aergo-support/{name}"), bytes)
}

/// Writes the bundle: the gathered parts, the logs, the configuration, then the manifest and its
/// signature. Runs on a blocking thread; every file's bytes are scrubbed of the known secrets.
fn write_bundle(
    state: &AppState,
    gathered: Gathered,
    out: impl Write,
    secrets: &[Vec<u8>],
) -> std::io::Result<()> {
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let created_ms = now_ms();
    let mut files = Vec::new();
    let mut missing = gathered.missing;
    let mut add = |tar: &mut tar::Builder<_>, name: &str, mut bytes: Vec<u8>, note: Option<String>| {
        scrub(&mut bytes, secrets);
        files.push(FileEntry {
            name: name.to_string(),
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
            note,
        });
        append(tar, name, &bytes, created_ms)
    };
    for (name, bytes) in gathered.parts {
        add(&mut tar, &name, bytes, None)?;
    }
    // The services' logs with their rotated copies, newest bytes of each.
    for source in crate::logs::FILE_SOURCES {
        for suffix in ["", ".1", ".2"] {
            let path = state.log_dir.join(format!("{source}.log{suffix}"));
            match tail(&path, state.support.max_log_bytes) {
                Ok((bytes, cut)) => {
                    let note = cut.then(|| format!("the newest {} bytes only", state.support.max_log_bytes));
                    add(&mut tar, &format!("logs/{source}.log{suffix}"), bytes, note)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => missing.push(format!("logs/{source}.log{suffix}: {e}")),
            }
        }
    }
    // The kernel's log, paged through as /v1/logs does.
    let mut kernel = Vec::new();
    let mut after: Option<String> = None;
    let mut lines = 0;
    loop {
        let q = crate::logs::Query {
            source: "system",
            after: after.as_deref(),
            since_ms: None,
            limit: crate::logs::MAX_LINES,
        };
        match crate::logs::page(&state.log_dir, &state.kmsg, &q) {
            Ok(page) => {
                for l in &page.lines {
                    kernel.extend_from_slice(l.text.as_bytes());
                    kernel.push(b'\n');
                }
                lines += page.lines.len();
                if !page.more || page.lines.is_empty() || lines >= KERNEL_LINES {
                    break;
                }
                after = Some(page.next);
            }
            Err(e) => {
                missing.push(format!("logs/kernel.log: {e}"));
                break;
            }
        }
    }
    if !kernel.is_empty() {
        add(&mut tar, "logs/kernel.log", kernel, None)?;
    }
    // The configuration, redacted; files that hold keys or tokens are never read.
    for path in &state.support.config_files {
        let name = format!("config{}", path.display());
        if withheld(path) {
            missing.push(format!("{name}: withheld (it may hold a key or a token)"));
            continue;
        }
        match std::fs::read(path) {
            Ok(bytes) if bytes.len() > 1 << 20 => {
                missing.push(format!("{name}: larger than 1 MiB, left out"))
            }
            Ok(bytes) => {
                let text = redact_config(&String::from_utf8_lossy(&bytes));
                add(&mut tar, &name, text.into_bytes(), Some("secret values redacted".into()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing.push(format!("{name}: not on this box"))
            }
            Err(e) => missing.push(format!("{name}: {e}")),
        }
    }
    let manifest = Manifest {
        format: "aergo-support-bundle/1",
        created_ms,
        agent_version: env!("CARGO_PKG_VERSION"),
        node_key: hex::encode(state.key.public().0),
        files,
        missing,
    };
    let mut body = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    scrub(&mut body, secrets);
    let signature = state.sign(&body);
    append(&mut tar, "manifest.json", &body, created_ms)?;
    append(&mut tar, "manifest.json.sig", signature.as_bytes(), created_ms)?;
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    let mut out = gz.finish()?;
    out.flush()
}

/// The permit to make a bundle (one at a time: a bundle reads every log on the box).
pub fn permit(state: &AppState) -> Option<tokio::sync::OwnedSemaphorePermit> {
    state.support_running.clone().try_acquire_owned().ok()
}

/// The answer while another bundle is being made.
pub fn busy() -> Response {
    let mut r = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        "a support bundle is being made; try again when it is done",
    );
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    r
}

/// `GET /v1/support-bundle`: streams the bundle.
pub async fn bundle(state: Arc<AppState>, permit: tokio::sync::OwnedSemaphorePermit) -> Response {
    let gathered = gather(&state).await;
    let mut secrets: Vec<Vec<u8>> = state.tokens.secrets().into_iter().map(String::into_bytes).collect();
    let secret = state.key.secret_bytes();
    secrets.push(hex::encode(secret).into_bytes());
    secrets.push(hex::encode_upper(secret).into_bytes());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let writer_state = state.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let out = ChannelWriter { tx: tx.clone(), buf: Vec::new() };
        if let Err(e) = write_bundle(&writer_state, gathered, out, &secrets) {
            tracing::warn!(error = %e, "support bundle not finished");
            // The body ends with an error: the client sees a cut transfer, not a short bundle.
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let name = format!("aergo-support-{}.tar.gz", now_ms() / 1000);
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/gzip"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert("x-aergo-node-key", state.key_header.clone());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_redacted_by_key_name_and_by_value() {
        let toml = "[agent]\ntoken = \"0123456789abcdef0123\"\nadmin_token = \"x\"\nlisten = \"0.0.0.0:7850\"\n\n[producer]\npassphrase_file = \"/boot/pass\"\nkeystore = \"/boot/k.json\"\n";
        let out = redact_config(toml);
        assert!(!out.contains("0123456789abcdef0123") && !out.contains("/boot/pass"), "{out}");
        assert!(out.contains("0.0.0.0:7850") && out.contains("/boot/k.json"), "{out}");
        let plain = redact_config("SERVER=ntp.example\nAPI_TOKEN=abc\n not toml at all [");
        assert!(plain.contains("SERVER=ntp.example") && plain.contains("API_TOKEN= <redacted>"), "{plain}");
        let mut bytes = b"Bearer 0123456789abcdef0123 and 0123456789abcdef0123.".to_vec();
        scrub(&mut bytes, &[b"0123456789abcdef0123".to_vec()]);
        assert_eq!(bytes, b"Bearer <redacted> and <redacted>.");
        assert!(withheld(Path::new("/var/lib/aergo/node/node.key")));
        assert!(withheld(Path::new("/etc/aergo/agent-admin.token")));
        assert!(!withheld(Path::new("/etc/aergo/node.toml")));
    }

    #[test]
    fn a_long_log_keeps_its_newest_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.log");
        let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, &text).unwrap();
        let (bytes, cut) = tail(&p, 100).unwrap();
        assert!(cut);
        let t = String::from_utf8(bytes).unwrap();
        assert!(t.starts_with("line ") && t.ends_with("line 999\n"), "{t}");
        let (all, cut) = tail(&p, 1 << 20).unwrap();
        assert!(!cut && all.len() == text.len());
    }
}
