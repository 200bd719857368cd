//! aergo-agent: reports the box's resources, the chain and health to Horde. Design: `docs/agent.md`.
//!
//! ```text
//!  tick ─► collect (host: procfs/sysinfo · chain: node RPC) ─► health ─► Sample{seq}
//!            ─► spool.append (fdatasync) ─► publish: JSON + signature + metrics text, rendered once
//!  HTTP (hyper + axum): /v1/telemetry, /v1/telemetry/history (from the spool), /metrics, /livez, /readyz
//! ```
//!
//! Collection runs on its own task and never on the request path; a request only clones the published
//! bytes (or reads the spool for history).

pub mod actions;
pub mod audit;
pub mod auth;
pub mod collect;
pub mod config;
pub mod health;
pub mod http;
pub mod logs;
pub mod metrics;

pub mod spool;
pub mod support;
pub mod tls;
pub mod update;

use crate::collect::chain::ChainCollector;
use crate::collect::host::{find_process, HostCollector};
use crate::config::AgentConfig;
use crate::http::{AppState, Published};
use crate::spool::Spool;
use aergo_primitives::crypto::{KeyFile, Keypair};
use aergo_telemetry::{AgentSelf, Sample, SpoolStatus, SCHEMA_VERSION};
use anyhow::Context;
use bytes::Bytes;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Everything the sampling loop keeps between samples.
struct Sampler {
    config: AgentConfig,
    host: Arc<Mutex<HostCollector>>,
    chain: ChainCollector,
    health: health::State,
    spool: Arc<Mutex<Spool>>,
    spool_status: SpoolStatus,
    next_seq: u64,
    started: Instant,
    last_at: Option<Instant>,
    updates: Arc<update::Updates>,
    tls_fingerprint: Option<String>,
}

impl Sampler {
    async fn sample(&mut self) -> anyhow::Result<Sample> {
        let now = Instant::now();
        let elapsed = self.last_at.map(|t| now.duration_since(t).as_secs_f64()).unwrap_or(0.0);
        self.last_at = Some(now);
        let wall_ms = now_ms();
        let mono_ms = self.started.elapsed().as_millis() as u64;
        let reading = self.chain.collect(wall_ms).await;
        let info = self.chain.last_info.clone();
        let data_dir: Option<PathBuf> =
            self.config.data_dir.clone().or_else(|| info.as_ref().map(|i| PathBuf::from(&i.data_dir)));
        let known_pid = info.as_ref().map(|i| i.pid).filter(|p| *p != 0);
        let name = self.config.node_process_name.clone();
        let host = self.host.clone();
        let (host_sample, process, me) = tokio::task::spawn_blocking(move || {
            let mut h = host.lock();
            let sample = h.collect(data_dir.as_deref())?;
            // The pid the node last gave, or (node restarted, RPC down) the process of that name that
            // holds the data directory open.
            let process =
                known_pid.and_then(|pid| h.process(pid, elapsed, sample.boot_time_s)).or_else(|| {
                    find_process(&name, data_dir.as_deref())
                        .and_then(|pid| h.process(pid, elapsed, sample.boot_time_s))
                });
            let me = h.process(std::process::id(), elapsed, sample.boot_time_s);
            anyhow::Ok((sample, process, me))
        })
        .await??;
        let seq = self.next_seq;
        self.next_seq += 1;
        let spool = {
            let s = self.spool.lock();
            SpoolStatus {
                bytes: s.bytes(),
                samples: s.samples(),
                oldest_seq: s.oldest_seq(),
                ..self.spool_status.clone()
            }
        };
        let health = health::evaluate(
            &health::Input {
                host: &host_sample,
                process: process.as_ref(),
                process_name: &self.config.node_process_name,
                chain: reading.chain.as_ref(),
                chain_error: reading.error.as_deref(),
                spool: &spool,
                wall_ms,
                mono_ms,
            },
            &self.config.health,
            &mut self.health,
        );
        Ok(Sample {
            schema_version: SCHEMA_VERSION,
            seq,
            collected_at: humantime::format_rfc3339_millis(
                UNIX_EPOCH + std::time::Duration::from_millis(wall_ms),
            )
            .to_string(),
            collected_at_ms: wall_ms,
            interval_ms: self.config.interval.as_millis() as u64,
            host: host_sample,
            node_process: process,
            chain: reading.chain,
            chain_error: reading.error,
            health,
            agent: AgentSelf {
                version: env!("CARGO_PKG_VERSION").to_string(),
                cpu_pct: me.as_ref().map(|m| m.cpu_pct).unwrap_or(0.0),
                rss_bytes: me.as_ref().map(|m| m.rss_bytes).unwrap_or(0),
                spool,
                tls_fingerprint: self.tls_fingerprint.clone(),
            },
            update: self.updates.status(),
            update_channel: self.updates.channel_status(),
        })
    }

    /// Keeps the sample in the spool (durably), then returns what to publish.
    async fn keep(&mut self, sample: &Sample, state_key: &Keypair) -> Published {
        let json = Bytes::from(serde_json::to_vec(sample).expect("a sample serializes"));
        let spool = self.spool.clone();
        let (seq, ms, payload) = (sample.seq, sample.collected_at_ms, json.clone());
        let result = tokio::task::spawn_blocking(move || spool.lock().append(seq, ms, &payload)).await;
        self.spool_status = match result {
            Ok(Ok(())) => SpoolStatus { state: "ok".into(), ..SpoolStatus::default() },
            Ok(Err(e)) => {
                tracing::error!(seq, error = %e, "sample not kept in the spool");
                let state = if e.is_full() { "full" } else { "error" };
                SpoolStatus { state: state.into(), error: Some(e.to_string()), ..SpoolStatus::default() }
            }
            Err(e) => {
                SpoolStatus { state: "error".into(), error: Some(e.to_string()), ..SpoolStatus::default() }
            }
        };
        let signature = http::sign_body(state_key, &json);
        Published {
            seq: sample.seq,
            status: sample.health.status,
            json,
            signature,
            metrics: Bytes::from(metrics::render(sample)),
        }
    }
}

/// Reads the node's identity key (a plain key file).
pub fn read_key(path: &std::path::Path) -> anyhow::Result<Keypair> {
    let file = KeyFile::read(path)?;
    file.unlock(None)
        .with_context(|| format!("{}: the agent needs the node's plain identity key", path.display()))
}

/// Runs the agent until `shutdown` resolves. Prints `AERGO_AGENT=http://ADDR` on stdout once serving.
pub async fn run(config: AgentConfig, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    config.validate()?;
    let tokens = Arc::new(auth::Tokens::load(&config.token_file, config.admin_token_file.as_deref())?);
    let audit_dir = config.audit.clone();
    let audit = tokio::task::spawn_blocking(move || audit::Audit::open(&audit_dir))
        .await?
        .with_context(|| format!("opening the audit log in {}", config.audit.display()))?;
    let key = read_key(&config.key_file)?;
    let (dir, max_bytes, max_age) =
        (config.spool.clone(), config.spool_max_bytes, config.spool_max_age.as_millis() as u64);
    let (spool, recovery) =
        tokio::task::spawn_blocking(move || Spool::open(&dir, max_bytes, max_age)).await??;
    tracing::info!(
        spool = %config.spool.display(), samples = recovery.samples, last_seq = spool.last_seq(),
        truncated_bytes = recovery.truncated_bytes, "spool opened"
    );
    for c in &recovery.corrupt {
        tracing::warn!(file = %c, "unreadable spool data set aside");
    }
    let next_seq = spool.last_seq() + 1;
    let spool = Arc::new(Mutex::new(spool));
    // HTTPS unless asked for plain HTTP: the certificate (made at the first start) before anything
    // is served, so that the first sample carries its fingerprint.
    let tls = if config.plain_http {
        None
    } else {
        let (cert, key) = (config.tls_cert.clone(), config.tls_key.clone());
        let hostname =
            nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        Some(tokio::task::spawn_blocking(move || tls::load_or_make(&cert, &key, &hostname)).await??)
    };
    let update_config = config.update.clone();
    let updates = Arc::new(tokio::task::spawn_blocking(move || update::Updates::open(update_config)).await?);
    let mut sampler = Sampler {
        updates: updates.clone(),
        tls_fingerprint: tls.as_ref().map(|t| t.fingerprint.clone()),
        chain: ChainCollector::new(&config.node, config.node_timeout)?,
        host: Arc::new(Mutex::new(HostCollector::new())),
        health: health::State::default(),
        spool: spool.clone(),
        spool_status: SpoolStatus { state: "ok".into(), ..SpoolStatus::default() },
        next_seq,
        started: Instant::now(),
        last_at: None,
        config: config.clone(),
    };
    let first = sampler.sample().await?;
    let published = sampler.keep(&first, &key).await;
    let mut app = AppState::new(
        published,
        spool,
        tokens.clone(),
        audit,
        config.actions.clone(),
        key.clone(),
        config.limits.clone(),
    );
    app.settings_root = config.settings_root.clone();
    app.log_dir = config.log_dir.clone();
    app.kmsg = config.kmsg.clone();
    app.node_url = config.node.clone();
    app.node_timeout = config.node_timeout;
    app.support = config.support.clone();
    app.updates = updates;
    let state = Arc::new(app);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, node = %config.node, interval = ?config.interval, scheme,
        tls_fingerprint = tls.as_ref().map_or("", |t| t.fingerprint.as_str()), "agent serving");
    println!("AERGO_AGENT={scheme}://{addr}");
    if let Some(t) = &tls {
        println!("AERGO_AGENT_TLS_FINGERPRINT={}", t.fingerprint);
    }

    let sampling = {
        let state = state.clone();
        let interval = config.interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                match sampler.sample().await {
                    Ok(sample) => {
                        let published = sampler.keep(&sample, &key).await;
                        *state.latest.write() = Arc::new(published);
                    }
                    Err(e) => tracing::error!(error = %e, "sampling failed"),
                }
            }
        })
    };
    let pruning = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                state.prune_limiter();
            }
        })
    };
    // Token files are reread within 2 s of a change (rotation without a restart).
    let rereading = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            tick.tick().await;
            for line in tokens.refresh() {
                tracing::warn!("{line}");
            }
        }
    });
    // The update channel, when the box follows one: read a minute after the start (sooner with a
    // shorter interval), then every interval; a newer release is installed as if Horde asked.
    let channel = config.update.channel.is_some().then(|| {
        let state = state.clone();
        let every = config.update.check_interval;
        tokio::spawn(async move {
            tokio::time::sleep(every.min(std::time::Duration::from_secs(60))).await;
            loop {
                let updates = state.updates.clone();
                let offered =
                    tokio::task::spawn_blocking(move || updates.check_channel()).await.ok().flatten();
                if let Some(args) = offered {
                    actions::channel_update(state.clone(), args).await;
                }
                tokio::time::sleep(every).await;
            }
        })
    });
    let restart = {
        let state = state.clone();
        async move { state.restart.notified().await }
    };
    let stop = async move {
        tokio::select! {
            _ = shutdown => {}
            _ = restart => tracing::info!("restart-agent: stopping; the supervisor starts the agent again"),
        }
    };
    let acceptor = tls.map(|t| t.acceptor);
    http::serve(listener, http::router(state.clone()), config.limits.clone(), acceptor, stop).await;
    sampling.abort();
    pruning.abort();
    rereading.abort();
    if let Some(c) = channel {
        c.abort();
    }
    tracing::info!("agent stopped");
    Ok(())
}
