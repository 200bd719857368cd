//! The HTTP API Horde polls (axum on hyper, see `agent/openapi.yaml`).
//!
//! Every connection is served by hyper directly so that the limits hold at the socket: a semaphore caps
//! open connections, a client must send its request head within `header_timeout` and in at most
//! `max_header_bytes`, and HTTP/2 streams per connection are capped. Inside, per request: a per-client
//! token-bucket rate limit (429), the bearer token compared in constant time with the read and the
//! admin token ([`crate::auth`]) on everything but `/livez` and `/readyz` (none or an unknown one:
//! 401; a read token on an admin path: 403), a body cap (413) and a request timeout (408). Answers to `/v1/*` carry
//! `X-Aergo-Signature`, an ed25519 signature by the node's identity key over
//! `"aergo-agent/v1\n" ‖ body`, and `X-Aergo-Node-Key`, the public key.

use crate::audit::Audit;
use crate::auth::{Scope, Tokens};
use crate::config::{ActionsConfig, LimitsConfig};
use crate::spool::Spool;
use aergo_primitives::crypto::Keypair;
use aergo_telemetry::Status;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use tower::ServiceExt;

/// Prefix of every signed body: a signature over an agent answer can never pass for anything else.
pub const SIGNATURE_DOMAIN: &[u8] = b"aergo-agent/v1\n";

/// `X-Aergo-Signature` for `body`: ed25519 by `key` over [`SIGNATURE_DOMAIN`] ‖ body, hex.
pub fn sign_body(key: &Keypair, body: &[u8]) -> HeaderValue {
    let mut message = Vec::with_capacity(SIGNATURE_DOMAIN.len() + body.len());
    message.extend_from_slice(SIGNATURE_DOMAIN);
    message.extend_from_slice(body);
    HeaderValue::from_str(&hex::encode(key.sign_message(&message).0)).expect("hex is a valid header")
}

/// The latest sample, serialized, signed and rendered once when it is published.
pub struct Published {
    pub seq: u64,
    pub status: Status,
    pub json: Bytes,
    pub signature: HeaderValue,
    pub metrics: Bytes,
}

pub struct AppState {
    pub latest: RwLock<Arc<Published>>,
    pub spool: Arc<Mutex<Spool>>,
    pub tokens: Arc<Tokens>,
    pub audit: tokio::sync::Mutex<Audit>,
    pub actions: ActionsConfig,
    /// Where the box's settings files live (`/` on the box).
    pub settings_root: std::path::PathBuf,
    /// The service logs' directory and the kernel's log device (`/v1/logs`).
    pub log_dir: std::path::PathBuf,
    pub kmsg: std::path::PathBuf,
    /// Notified when `restart-agent` was answered: the agent stops serving and exits.
    pub restart: tokio::sync::Notify,
    pub key: Keypair,
    pub key_header: HeaderValue,
    pub limits: LimitsConfig,
    /// The node's RPC, for what a support bundle asks it.
    pub node_url: String,
    pub node_timeout: std::time::Duration,
    pub support: crate::config::SupportConfig,
    /// One support bundle at a time.
    pub support_running: Arc<tokio::sync::Semaphore>,
    /// Updates over the network.
    pub updates: Arc<crate::update::Updates>,
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl AppState {
    pub fn new(
        first: Published,
        spool: Arc<Mutex<Spool>>,
        tokens: Arc<Tokens>,
        audit: Audit,
        actions: ActionsConfig,
        key: Keypair,
        limits: LimitsConfig,
    ) -> AppState {
        let limiter = NonZeroU32::new(limits.rate_per_s).map(|rate| {
            let burst = NonZeroU32::new(limits.rate_burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        let key_header = HeaderValue::from_str(&hex::encode(key.public().0)).expect("hex is a valid header");
        AppState {
            latest: RwLock::new(Arc::new(first)),
            spool,
            tokens,
            audit: tokio::sync::Mutex::new(audit),
            actions,
            settings_root: std::path::PathBuf::from("/"),
            log_dir: std::path::PathBuf::from("/var/log/aergo"),
            kmsg: std::path::PathBuf::from("/dev/kmsg"),
            restart: tokio::sync::Notify::new(),
            key,
            key_header,
            limits,
            node_url: "http://127.0.0.1:7845".into(),
            node_timeout: std::time::Duration::from_secs(2),
            support: crate::config::SupportConfig::default(),
            support_running: Arc::new(tokio::sync::Semaphore::new(1)),
            updates: Arc::new(crate::update::Updates::disabled()),
            limiter,
        }
    }

    pub fn sign(&self, body: &[u8]) -> HeaderValue {
        sign_body(&self.key, body)
    }

    /// Forgets rate-limit state of clients that have been quiet (bounds its memory).
    pub fn prune_limiter(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// The peer address of the connection a request came on.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub(crate) fn signed_json(state: &AppState, body: Bytes, signature: HeaderValue) -> Response {
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-aergo-signature", signature);
    h.insert("x-aergo-node-key", state.key_header.clone());
    r
}

async fn telemetry(State(state): State<Arc<AppState>>) -> Response {
    let p = state.latest.read().clone();
    signed_json(&state, p.json.clone(), p.signature.clone())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    since: Option<u64>,
    limit: Option<usize>,
}

async fn history(
    State(state): State<Arc<AppState>>,
    params: Result<Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "query parameters: since (sample seq, answers start after it) and limit (positive integer)",
        );
    };
    let since = params.since.unwrap_or(0);
    let max = state.limits.max_history;
    let limit = params.limit.unwrap_or(100);
    if limit == 0 {
        return json_error(StatusCode::BAD_REQUEST, "limit must be positive");
    }
    let limit = limit.min(max);
    let (plan, oldest, latest) = {
        let spool = state.spool.lock();
        // One more than asked, to tell whether there is more.
        (spool.plan(since, limit + 1), spool.oldest_seq(), spool.last_seq())
    };
    let read = tokio::task::spawn_blocking(move || plan.read()).await;
    let mut samples = match read {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let more = samples.len() > limit;
    samples.truncate(limit);
    let mut raw = Vec::with_capacity(samples.len());
    for (_, payload) in samples {
        match String::from_utf8(payload).ok().and_then(|t| serde_json::value::RawValue::from_string(t).ok()) {
            Some(v) => raw.push(v),
            None => return json_error(StatusCode::INTERNAL_SERVER_ERROR, "a spooled sample is not JSON"),
        }
    }
    #[derive(serde::Serialize)]
    struct HistoryBody {
        schema_version: u32,
        oldest_seq: Option<u64>,
        latest_seq: u64,
        more: bool,
        samples: Vec<Box<serde_json::value::RawValue>>,
    }
    let body = HistoryBody {
        schema_version: aergo_telemetry::SCHEMA_VERSION,
        oldest_seq: oldest,
        latest_seq: latest,
        more,
        samples: raw,
    };
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let signature = state.sign(&body);
    signed_json(&state, body, signature)
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let p = state.latest.read().clone();
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], p.metrics.clone()).into_response()
}

async fn livez() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "ok\n").into_response()
}

/// Ready when the node answers and is not down.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let status = state.latest.read().status;
    let code = if status == Status::Down { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (code, [(header::CONTENT_TYPE, "text/plain")], format!("{}\n", status.as_str())).into_response()
}

/// Lets the request through when its bearer token has scope `needed` (the caller goes into the
/// request's extensions for the handler).
async fn authorize(state: &AppState, mut request: Request, next: Next, needed: Scope) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    match state.tokens.caller(presented) {
        None => {
            let mut r = json_error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"aergo-agent\""));
            r
        }
        Some(caller) if caller.scope < needed => json_error(
            StatusCode::FORBIDDEN,
            if state.tokens.has_admin() {
                "this needs the admin token"
            } else {
                "this needs the admin token, and none is configured on this box (--admin-token-file)"
            },
        ),
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
    }
}

async fn require_read(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    authorize(&state, request, next, Scope::Read).await
}

async fn require_admin(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    authorize(&state, request, next, Scope::Admin).await
}

async fn rate_limit(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let (Some(limiter), Some(ClientAddr(addr))) =
        (&state.limiter, request.extensions().get::<ClientAddr>())
    {
        if limiter.check_key(&addr.ip()).is_err() {
            let mut r = json_error(StatusCode::TOO_MANY_REQUESTS, "too many requests from this address");
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
    }
    next.run(request).await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsParams {
    source: String,
    after: Option<String>,
    since: Option<u64>,
    limit: Option<usize>,
}

/// `GET /v1/logs?source=&after=&since=&limit=`: a page of a log (see [`crate::logs`]).
async fn logs(
    State(state): State<Arc<AppState>>,
    params: Result<Query<LogsParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(p)) = params else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "query parameters: source (node, agent, time, health, update, rauc, ssh, system), after \
             (a page's next), since (Unix ms), limit (1-1000)",
        );
    };
    let (dir, kmsg) = (state.log_dir.clone(), state.kmsg.clone());
    let read = tokio::task::spawn_blocking(move || {
        crate::logs::page(
            &dir,
            &kmsg,
            &crate::logs::Query {
                source: &p.source,
                after: p.after.as_deref(),
                since_ms: p.since,
                limit: p.limit.unwrap_or(200),
            },
        )
    })
    .await;
    match read {
        Ok(Ok(page)) => {
            let body = Bytes::from(serde_json::to_vec(&page).unwrap_or_default());
            let signature = state.sign(&body);
            signed_json(&state, body, signature)
        }
        Ok(Err(e @ (crate::logs::LogsError::Source(_) | crate::logs::LogsError::Cursor(_)))) => {
            json_error(StatusCode::BAD_REQUEST, &e.to_string())
        }
        Ok(Err(e)) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "no such endpoint")
}

pub fn router(state: Arc<AppState>) -> Router {
    let protected = Router::new()
        .route("/v1/telemetry", get(telemetry))
        .route("/v1/telemetry/history", get(history))
        .route("/metrics", get(metrics))
        .route("/v1/audit", get(crate::actions::audit))
        .route("/v1/logs", get(logs))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_read));
    let admin = Router::new()
        .route("/v1/actions/{name}", post(crate::actions::action))
        .route("/v1/support-bundle", get(crate::actions::support_bundle))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin));
    let open = Router::new().route("/livez", get(livez)).route("/readyz", get(readyz));
    Router::new()
        .merge(protected)
        .merge(admin)
        .merge(open)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(state.limits.max_body_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.limits.request_timeout,
        ))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves; over TLS when `tls` is given (the
/// handshake must be done within the request-head timeout).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: LimitsConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = &mut shutdown => return,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let limits = limits.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(stream, peer, router, &limits).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => serve_connection(tls_stream, peer, router, &limits).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake not done in time"),
                    }
                }
            }
        });
    }
}

/// Serves one connection (plain or TLS) with the limits.
async fn serve_connection<I>(io: I, peer: SocketAddr, router: Router, limits: &LimitsConfig)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ClientAddr(peer));
        router.clone().oneshot(req)
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(64);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(16)
        .max_header_list_size(limits.max_header_bytes as u32)
        .keep_alive_interval(Some(std::time::Duration::from_secs(30)));
    if let Err(e) = builder.serve_connection(TokioIo::new(io), service).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
