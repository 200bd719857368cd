//! The RPC as a web page and a crowd of clients see it (`docs/rpc.md`, "Listeners, browsers and
//! limits"): CORS for the listed origin and a refusal for any other, the same methods over TLS
//! (HTTPS and a WebSocket upgrade), and a per-client rate limit that answers HTTP 429 and -32011
//! to the client over it while other clients are served. Clients are told apart by their source
//! address: 127.0.0.2 … 127.0.0.5 are all loopback on Linux.

use aergo_tests::NodeProcess;
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const ALLOWED: &str = "http://app.test:8080";

/// An HTTP answer: status, headers (lower-case names), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

fn parse(raw: &[u8]) -> anyhow::Result<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
    let mut lines = head.lines();
    let status =
        lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).context("status")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect::<Vec<_>>();
    // Chunked bodies (jsonrpsee answers with a length; a chunked one would be one chunk here).
    let body = if headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")) {
        body.split("\r\n").nth(1).unwrap_or_default().to_string()
    } else {
        body.to_string()
    };
    Ok(Answer { status, headers, body })
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, request: String) -> anyhow::Result<Answer> {
    s.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .context("no answer within 10 s")??;
    parse(&raw)
}

fn request(method: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut r = format!(
        "{method} / HTTP/1.1\r\nHost: node\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        r.push_str("Content-Type: application/json\r\n");
    }
    for (n, v) in headers {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r
}

async fn connect(from: IpAddr, to: SocketAddr) -> anyhow::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    Ok(socket.connect(to).await?)
}

/// One plain HTTP request from `from`.
async fn http(
    from: [u8; 4],
    to: SocketAddr,
    method: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<Answer> {
    exchange(connect(IpAddr::from(from), to).await?, request(method, headers, body)).await
}

fn call(method: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": []}).to_string()
}

fn tls_client(cert_pem: &str) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())?)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The TLS listener's address, from the node's "node running" log line.
fn tls_addr(node: &NodeProcess) -> anyhow::Result<SocketAddr> {
    let log = node.log();
    let at = log.find("rpc_tls=Some(\"").context("no rpc_tls in the log")? + "rpc_tls=Some(\"".len();
    let end = log[at..].find('"').context("rpc_tls")?;
    Ok(log[at..at + end].parse()?)
}

fn write_tls_files(dir: &std::path::Path) -> anyhow::Result<String> {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])?;
    params.subject_alt_names.push(rcgen::SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    std::fs::create_dir_all(dir.join("tls"))?;
    std::fs::write(dir.join("tls/cert.pem"), cert.pem())?;
    std::fs::write(dir.join("tls/key.pem"), key.serialize_pem())?;
    Ok(cert.pem())
}

#[test]
fn cors_tls_and_per_client_rate_limits_seen_from_outside() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cert = write_tls_files(dir.path())?;
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "[rpc]\ncors_origins = [\"{ALLOWED}\"]\nrate_limit_per_second = 5\nrate_limit_burst = 10\n\
             rate_limit_exempt = [\"127.0.0.5\"]\n\n[rpc.tls]\nlisten = \"127.0.0.1:0\"\n\
             cert_file = \"tls/cert.pem\"\nkey_file = \"tls/key.pem\"\n"
        ),
    )?;
    let node = NodeProcess::start_dev(dir.path(), &[])?;
    let plain: SocketAddr = node.rpc.trim_start_matches("http://").parse()?;
    let tls = tls_addr(&node)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        // CORS, from the exempt client so that the limit stays out of it.
        let exempt = [127, 0, 0, 5];
        let a = http(exempt, plain, "POST", &[("Origin", ALLOWED)], &call("chain_info")).await?;
        assert_eq!((a.status, a.header("access-control-allow-origin")), (200, Some(ALLOWED)), "{}", a.body);
        assert_eq!(a.json()["result"]["chain_id"], "aergo-devnet", "{}", a.body);
        assert!(a.header("vary").unwrap_or_default().contains("origin"));
        let preflight = [
            ("Origin", ALLOWED),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ];
        let a = http(exempt, plain, "OPTIONS", &preflight, "").await?;
        assert_eq!((a.status, a.header("access-control-allow-origin")), (204, Some(ALLOWED)));
        assert!(a.header("access-control-allow-methods").unwrap_or_default().contains("POST"));
        assert!(a.header("access-control-allow-headers").unwrap_or_default().contains("content-type"));
        for method in ["POST", "OPTIONS"] {
            let a =
                http(exempt, plain, method, &[("Origin", "http://evil.test")], &call("chain_info")).await?;
            assert_eq!(a.status, 403, "{method}: {}", a.body);
            assert_eq!(a.header("access-control-allow-origin"), None);
            assert_eq!(a.json()["error"]["code"], -32600, "{}", a.body);
            assert!(a.body.contains("cors_origins"), "{}", a.body);
        }
        let a = http(exempt, plain, "POST", &[], &call("chain_info")).await?;
        assert_eq!((a.status, a.header("access-control-allow-origin")), (200, None), "no Origin: a CLI");

        // TLS: the same methods and CORS over HTTPS, a WebSocket upgrade, plain HTTP refused.
        let connector = tls_client(&cert)?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        let stream = connector.connect(name.clone(), connect(IpAddr::from(exempt), tls).await?).await?;
        let a = exchange(stream, request("POST", &[("Origin", ALLOWED)], &call("chain_info"))).await?;
        assert_eq!((a.status, a.header("access-control-allow-origin")), (200, Some(ALLOWED)), "{}", a.body);
        assert_eq!(a.json()["result"]["chain_id"], "aergo-devnet");
        let mut stream = connector.connect(name, connect(IpAddr::from(exempt), tls).await?).await?;
        stream
            .write_all(
                b"GET / HTTP/1.1\r\nHost: node\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .await?;
        let mut head = vec![0u8; 256];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut head)).await??;
        let head = String::from_utf8_lossy(&head[..n]);
        assert!(head.starts_with("HTTP/1.1 101"), "a wss:// upgrade: {head}");
        let refused = http(exempt, tls, "POST", &[], &call("chain_info")).await;
        assert!(
            refused.is_err() || refused.as_ref().is_ok_and(|a| a.status != 200),
            "plain HTTP on the TLS port"
        );

        // The rate limit: 127.0.0.2 floods and is refused (429, Retry-After, -32011) once its
        // burst of 10 is spent; 127.0.0.3 is served meanwhile; the exempt client never refused.
        let (mut served, mut limited) = (0, 0);
        for _ in 0..30 {
            let a = http([127, 0, 0, 2], plain, "POST", &[], &call("chain_info")).await?;
            match a.status {
                200 => served += 1,
                429 => {
                    limited += 1;
                    assert_eq!(a.json()["error"]["code"], -32011, "{}", a.body);
                    assert_eq!(a.json()["error"]["data"]["limit"], "rate");
                    assert!(a.header("retry-after").is_some());
                }
                s => bail!("status {s}: {}", a.body),
            }
        }
        assert!((10..=13).contains(&served) && limited >= 17, "{served} served, {limited} limited");
        let a = http([127, 0, 0, 3], plain, "POST", &[], &call("chain_info")).await?;
        assert_eq!(a.status, 200, "another client is served: {}", a.body);
        for _ in 0..30 {
            assert_eq!(http(exempt, plain, "POST", &[], &call("chain_info")).await?.status, 200);
        }
        // A batch past the limit: the calls within it are served, those past it get -32011.
        let batch: Vec<Value> = (0..20)
            .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "chain_info", "params": []}))
            .collect();
        let a = http([127, 0, 0, 4], plain, "POST", &[], &Value::Array(batch).to_string()).await?;
        assert_eq!(a.status, 200, "{}", a.body);
        let answers = a.json().as_array().cloned().unwrap_or_default();
        let over = answers.iter().filter(|r| r["error"]["code"] == -32011).count();
        let ok = answers.iter().filter(|r| r["result"]["chain_id"] == "aergo-devnet").count();
        assert_eq!(answers.len(), 20, "{}", a.body);
        assert!((10..=11).contains(&ok) && ok + over == 20, "{ok} served, {over} over the limit");
        anyhow::Ok(())
    })?;
    // On WebSocket (from 127.0.0.1, which this config does not exempt): calls past the burst get
    // -32011 on the same connection, which stays open and is served again once tokens return.
    rt.block_on(async {
        use aergo_api::AergoApiClient;
        let url = node.rpc.replace("http://", "ws://");
        let ws = jsonrpsee::ws_client::WsClientBuilder::default().build(&url).await?;
        let (mut served, mut limited) = (0, 0);
        for _ in 0..30 {
            match ws.chain_info(None).await {
                Ok(_) => served += 1,
                Err(jsonrpsee::core::client::Error::Call(e)) if e.code() == -32011 => limited += 1,
                Err(e) => bail!("{e}"),
            }
        }
        assert!((10..=13).contains(&served) && limited >= 17, "{served} served, {limited} limited");
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        ws.chain_info(None).await.context("served again after the refill")?;
        anyhow::Ok(())
    })?;
    // What was refused is counted in node_metrics: the two refused origins, and every 429 and
    // -32011 above (the HTTP flood, the batch's calls past the limit, the WebSocket flood).
    let metrics = rt.block_on(http([127, 0, 0, 5], plain, "POST", &[], &call("node_metrics")))?.json();
    assert_eq!(metrics["result"]["rpc_origin_refused_total"], 2, "{metrics}");
    let limited = metrics["result"]["rpc_rate_limited_total"].as_u64().unwrap_or(0);
    assert!(limited >= 17 + 9 + 17, "{limited} refusals counted: {metrics}");
    node.stop()
}

/// A TLS section whose files are missing or not PEM stops the node at start with what is wrong.
#[test]
fn a_bad_tls_certificate_stops_the_node_with_why() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("tls"))?;
    std::fs::write(dir.path().join("tls/cert.pem"), "not a certificate")?;
    std::fs::write(dir.path().join("tls/key.pem"), "not a key")?;
    std::fs::write(
        dir.path().join("config.toml"),
        "[rpc.tls]\nlisten = \"127.0.0.1:0\"\ncert_file = \"tls/cert.pem\"\nkey_file = \"tls/key.pem\"\n",
    )?;
    let out = std::process::Command::new(aergo_tests::binary("aergo-node"))
        .args(["--dev", "--data-dir", dir.path().to_str().unwrap_or_default(), "--rpc-listen", "127.0.0.1:0"])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("[rpc.tls]: cert_file") && err.contains("tls/cert.pem"), "{err}");
    std::fs::write(dir.path().join("config.toml"), "[rpc]\ncors_origins = [\"app.test\"]\n")?;
    let out = std::process::Command::new(aergo_tests::binary("aergo-node"))
        .args(["--dev", "--data-dir", dir.path().to_str().unwrap_or_default(), "--rpc-listen", "127.0.0.1:0"])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("rpc.cors_origins: \"app.test\""), "{err}");
    Ok(())
}
