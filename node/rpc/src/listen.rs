//! The RPC's listeners (`docs/rpc.md`, "Listeners, browsers and limits"): the plain one and an
//! optional TLS one serve the same methods; in front of both, the origin check and CORS headers for
//! browsers, and a per-client rate limit (a token bucket per IP address).
//!
//! ```text
//! accept (plain | TLS handshake) ─► Front: Origin allowed? (403) · preflight (204) · bucket empty? (429)
//!                                     ├► POST /txs (binary submission): one token, body read, frames ─► submit_many
//!                                     └► jsonrpsee (HTTP or WebSocket) ─► RateLimited: one token per call (-32011)
//!                                          └► the methods
//! ```

use aergo_api::codes;
use aergo_config::RpcConfig;
use aergo_primitives::types::MemberRole;
use jsonrpsee::server::middleware::rpc::{
    Batch, BatchEntry, BatchEntryErr, MethodResponse, Notification, Request, RpcServiceBuilder, RpcServiceT,
};
use jsonrpsee::server::{
    serve_with_graceful_shutdown, stop_channel, BatchRequestConfig, HttpBody, HttpResponse, Methods, Server,
    ServerConfig, ServerHandle, StopHandle,
};
use jsonrpsee::types::ErrorObjectOwned;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client's address, put in each request's extensions by the listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// What the listeners refused since start (`node_metrics`: `rpc_rate_limited_total`,
/// `rpc_origin_refused_total`).
#[derive(Debug, Default)]
pub struct Refusals {
    /// Requests answered 429 and calls answered -32011 for a client over its rate.
    pub rate_limited: std::sync::atomic::AtomicU64,
    /// Requests from a web page whose origin `[rpc] cors_origins` does not list (403).
    pub origin_refused: std::sync::atomic::AtomicU64,
}

impl Refusals {
    fn count(counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Most clients whose buckets are kept; past it, full buckets (idle clients) are dropped.
const MAX_BUCKETS: usize = 65_536;

/// Per-client token buckets: `per_second` tokens a second, at most `burst` saved.
pub struct RateLimits {
    per_second: f64,
    burst: f64,
    exempt: Vec<IpAddr>,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimits {
    /// The limits `[rpc]` sets, or none when `rate_limit_per_second` is 0.
    pub fn new(config: &RpcConfig) -> Option<Arc<RateLimits>> {
        if config.rate_limit_per_second == 0 {
            return None;
        }
        let per_second = f64::from(config.rate_limit_per_second);
        let burst =
            if config.rate_limit_burst == 0 { per_second } else { f64::from(config.rate_limit_burst) };
        Some(Arc::new(RateLimits {
            per_second,
            burst,
            exempt: config.rate_limit_exempt.clone(),
            buckets: Mutex::new(HashMap::new()),
        }))
    }

    fn applies_to(&self, ip: IpAddr) -> bool {
        !self.exempt.contains(&ip)
    }

    /// Runs `f` on `ip`'s tokens, refilled to now.
    fn with_tokens<R>(&self, ip: IpAddr, f: impl FnOnce(&mut f64) -> R) -> R {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&ip) {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        f(tokens)
    }

    /// Whether `ip` may make a call now (takes nothing).
    pub fn has_room(&self, ip: IpAddr) -> bool {
        !self.applies_to(ip) || self.with_tokens(ip, |t| *t >= 1.0)
    }

    /// Takes a call's token from `ip`'s bucket: false when there is none.
    pub fn take(&self, ip: IpAddr) -> bool {
        !self.applies_to(ip)
            || self.with_tokens(ip, |t| {
                if *t >= 1.0 {
                    *t -= 1.0;
                    true
                } else {
                    false
                }
            })
    }

    fn retry_after_s(&self) -> u64 {
        (1.0 / self.per_second).ceil().max(1.0) as u64
    }

    fn error(&self) -> ErrorObjectOwned {
        ErrorObjectOwned::owned(
            codes::BUSY,
            format!(
                "rate limit: this client may make {} calls a second ([rpc] rate_limit_per_second); try again later",
                self.per_second
            ),
            Some(serde_json::json!({ "limit": "rate" })),
        )
    }
}

/// The JSON-RPC layer of the limit: each call takes a token from its client's bucket; a call
/// without one is answered -32011 (on WebSocket, and for the calls of a batch past the limit).
#[derive(Clone)]
pub struct RateLimited<S> {
    inner: S,
    limits: Option<Arc<RateLimits>>,
    refusals: Arc<Refusals>,
}

impl<S> RateLimited<S> {
    fn refused(&self, extensions: &jsonrpsee::Extensions) -> Option<ErrorObjectOwned> {
        let limits = self.limits.as_ref()?;
        let ip = extensions.get::<ClientIp>()?.0;
        let refused = !limits.take(ip);
        if refused {
            Refusals::count(&self.refusals.rate_limited);
        }
        refused.then(|| limits.error())
    }
}

impl<S> RpcServiceT for RateLimited<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync
        + Clone
        + 'static,
{
    type MethodResponse = MethodResponse;
    type BatchResponse = MethodResponse;
    type NotificationResponse = MethodResponse;

    fn call<'a>(&self, req: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let refused = self.refused(req.extensions());
        let inner = self.inner.clone();
        async move {
            match refused {
                Some(err) => MethodResponse::error(req.id, err),
                None => inner.call(req).await,
            }
        }
    }

    fn batch<'a>(&self, mut batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let ip = batch.extensions().get::<ClientIp>().copied();
        if let (Some(limits), Some(ClientIp(ip))) = (&self.limits, ip) {
            for entry in batch.iter_mut() {
                if let Ok(BatchEntry::Call(req)) = entry {
                    if !limits.take(ip) {
                        Refusals::count(&self.refusals.rate_limited);
                        *entry = Err(BatchEntryErr::new(req.id.clone(), limits.error()));
                    }
                }
            }
        }
        let inner = self.inner.clone();
        async move { inner.batch(batch).await }
    }

    fn notification<'a>(&self, n: Notification<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let inner = self.inner.clone();
        async move { inner.notification(n).await }
    }
}

/// The origins browsers may call from.
#[derive(Debug)]
pub enum Origins {
    Any,
    Listed(Vec<String>),
}

impl Origins {
    fn new(list: &[String]) -> Origins {
        if list.iter().any(|o| o == "*") {
            Origins::Any
        } else {
            Origins::Listed(list.iter().map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect())
        }
    }

    fn allows(&self, origin: &str) -> bool {
        match self {
            Origins::Any => true,
            Origins::Listed(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }
}

/// What the listener checks before jsonrpsee sees a request.
struct Guard {
    /// Largest request body (`[rpc] max_request_bytes`), for the bodies read here.
    max_request_bytes: usize,
    origins: Origins,
    limits: Option<Arc<RateLimits>>,
    refusals: Arc<Refusals>,
}

fn json_error(status: u16, err: &ErrorObjectOwned) -> http::Response<HttpBody> {
    let body = serde_json::json!({ "jsonrpc": "2.0", "error": err, "id": null }).to_string();
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(HttpBody::from(body))
        .expect("a static response")
}

fn allow_origin(resp: &mut http::Response<HttpBody>, origin: &http::HeaderValue) {
    let h = resp.headers_mut();
    h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.append(http::header::VARY, http::HeaderValue::from_static("origin"));
}

/// The role of a member's key in a private repository (`None`: not a member), read from its
/// state at the head.
pub type Members = Arc<dyn Fn(&aergo_primitives::types::PublicKey) -> Option<MemberRole> + Send + Sync>;

/// The member a request to a private repository was signed by, in the request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub key: aergo_primitives::types::PublicKey,
    pub role: MemberRole,
}

/// A hosted repository's methods, its `POST /repo/<name>/txs` and, for a private one, who its
/// members are.
#[derive(Clone)]
struct Route {
    methods: Methods,
    binary: Option<Arc<dyn BinaryTxs>>,
    members: Option<Members>,
}

/// The hosted repositories' methods by name, served at `/repo/<name>` beside the public
/// chain's at `/` (`docs/repositories.md`). The node adds and removes them while it runs.
#[derive(Default)]
pub struct Routes {
    repos: parking_lot::RwLock<HashMap<String, Route>>,
}

impl Routes {
    /// Serves `methods` at `/repo/<name>` and `binary` at `/repo/<name>/txs`; with `members`,
    /// only to requests signed by one (`X-Aergo-Auth`).
    pub fn insert(
        &self,
        name: &str,
        methods: impl Into<Methods>,
        binary: Option<Arc<dyn BinaryTxs>>,
        members: Option<Members>,
    ) {
        self.repos.write().insert(name.to_string(), Route { methods: methods.into(), binary, members });
    }

    /// Whether `name` was served.
    pub fn remove(&self, name: &str) -> bool {
        self.repos.write().remove(name).is_some()
    }

    fn get(&self, name: &str) -> Option<Route> {
        self.repos.read().get(name).cloned()
    }
}

/// The one answer to a request a private repository does not take, whatever it asked.
fn access_denied() -> http::Response<HttpBody> {
    let err = ErrorObjectOwned::owned(codes::ACCESS_DENIED, "access denied", None::<()>);
    json_error(403, &err)
}

/// Who signed a request (`X-Aergo-Auth`, checked), in its extensions: on a private repository
/// a member; on the public chain anyone who signs, which is what a private branch's reads ask
/// (`docs/branches.md`, "Private branches").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signer(pub aergo_primitives::types::PublicKey);

/// The public chain's `POST /txs` (`docs/rpc.md`, "Binary submission"): the body of a request
/// already read and its extensions (its client, its signer); answers the JSON of what
/// `send_txs` would answer for the same transactions, or the error that refuses them all.
pub trait BinaryTxs: Send + Sync {
    fn submit(
        &self,
        extensions: http::Extensions,
        body: hyper::body::Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<String, ErrorObjectOwned>> + Send + '_>>;
}

/// The path of binary submission.
pub const TXS_PATH: &str = "/txs";

/// `POST /txs` (or `/repo/<repo>/txs`) past the origin check: the size it announces; on a
/// private repository (`members`) a member's signature, before anything else is looked at; the
/// method, the content type, one token of the bucket, the body (capped) and its signature when it
/// has one; then the frames go to `binary`.
async fn binary_txs(
    req: http::Request<HttpBody>,
    binary: Arc<dyn BinaryTxs>,
    guard: Arc<Guard>,
    ip: IpAddr,
    repo: &str,
    members: Option<Members>,
) -> HttpResponse<HttpBody> {
    use http_body_util::BodyExt;
    let refuse = |status: u16, code: i32, message: String| {
        json_error(status, &ErrorObjectOwned::owned(code, message, None::<()>))
    };
    let max = guard.max_request_bytes;
    let too_large = || refusal(Refused::TooLarge, max);
    let announced =
        req.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    let denied = |why: String| {
        tracing::debug!(%ip, %why, repo, "rpc: a POST of transactions refused");
        access_denied()
    };
    // A private repository's: the member's signature is checked first, so that whoever is not
    // one gets the one "access denied" whatever else is wrong with the request.
    let (req, checked) = match &members {
        Some(members) => match authenticate(req, repo, members, max).await {
            Ok(req) => (req, true),
            Err(Refused::TooLarge) => return too_large(),
            Err(Refused::Denied(why)) => return denied(why),
        },
        None => (req, false),
    };
    if req.method() != http::Method::POST {
        let mut resp = refuse(
            405,
            codes::INVALID_REQUEST,
            format!("{} takes transactions by POST, not {}", TXS_PATH, req.method()),
        );
        resp.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("POST, OPTIONS"));
        return resp;
    }
    let content_type = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let octets = content_type
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/octet-stream"));
    if !octets {
        return refuse(
            415,
            codes::INVALID_REQUEST,
            format!(
                "{} takes application/octet-stream (length-prefixed borsh transactions), not {}",
                TXS_PATH,
                content_type.unwrap_or("a body without a content type")
            ),
        );
    }
    if let Some(limits) = &guard.limits {
        if !limits.take(ip) {
            Refusals::count(&guard.refusals.rate_limited);
            let mut resp = json_error(429, &limits.error());
            resp.headers_mut().insert(http::header::RETRY_AFTER, limits.retry_after_s().into());
            return resp;
        }
    }
    let req = match checked {
        true => req,
        false => match signed(req, repo, max).await {
            Ok(req) => req,
            Err(Refused::TooLarge) => return too_large(),
            Err(Refused::Denied(why)) => return denied(why),
        },
    };
    let (parts, body) = req.into_parts();
    let body = match http_body_util::Limited::new(body, max).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(e) => return refuse(400, codes::INVALID_REQUEST, format!("reading the body: {e}")),
    };
    match binary.submit(parts.extensions, body).await {
        Ok(json) => http::Response::builder()
            .status(200)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(HttpBody::from(json))
            .expect("a static response"),
        Err(err) => json_error(status_of(&err), &err),
    }
}

/// The HTTP status of a refusal of `POST /txs`: 403 for access, 500 for the node's own failure,
/// 400 for what the request got wrong.
fn status_of(err: &ErrorObjectOwned) -> u16 {
    match err.code() {
        codes::ACCESS_DENIED => 403,
        c if c == jsonrpsee::types::error::INTERNAL_ERROR_CODE => 500,
        _ => 400,
    }
}

/// The answer to a refused signed request: 413 for a body over `max` bytes, else the one
/// "access denied".
fn refusal(why: Refused, max: usize) -> http::Response<HttpBody> {
    match why {
        Refused::TooLarge => json_error(
            413,
            &ErrorObjectOwned::owned(
                codes::INVALID_REQUEST,
                format!("a request body over the limit of {max} bytes"),
                None::<()>,
            ),
        ),
        Refused::Denied(_) => access_denied(),
    }
}

/// Why a signed request was refused: a body over the limit (413, whoever signed it), or
/// anything else (for the log: the client is told only "access denied").
#[derive(Debug)]
enum Refused {
    TooLarge,
    Denied(String),
}

impl From<String> for Refused {
    fn from(why: String) -> Refused {
        Refused::Denied(why)
    }
}

impl From<&str> for Refused {
    fn from(why: &str) -> Refused {
        Refused::Denied(why.to_string())
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::TooLarge => f.write_str("a body over the limit"),
            Refused::Denied(why) => f.write_str(why),
        }
    }
}

/// Checks a private repository's request: signed (`X-Aergo-Auth`) over its body by a member.
/// Answers the request to pass on (its body read) with the member in its extensions, or why not
/// (for the log; the client is told only "access denied").
async fn authenticate(
    req: http::Request<HttpBody>,
    repo: &str,
    members: &Members,
    max_bytes: usize,
) -> Result<http::Request<HttpBody>, Refused> {
    let mut req = signed(req, repo, max_bytes).await?;
    let key = req.extensions().get::<Signer>().map(|s| s.0).ok_or("no X-Aergo-Auth header")?;
    let role = members(&key).ok_or_else(|| format!("{} is not a member", key.address()))?;
    req.extensions_mut().insert(Member { key, role });
    Ok(req)
}

/// Checks a request's `X-Aergo-Auth` (over its body, for `repo`: `""` on the public chain) and
/// puts its [`Signer`] in the request's extensions; a request without the header passes as it
/// is.
async fn signed(
    req: http::Request<HttpBody>,
    repo: &str,
    max_bytes: usize,
) -> Result<http::Request<HttpBody>, Refused> {
    use http_body_util::BodyExt;
    if req.headers().get(aergo_api::auth::HEADER).is_none() {
        return Ok(req);
    }
    let header = req
        .headers()
        .get(aergo_api::auth::HEADER)
        .ok_or("no X-Aergo-Auth header")?
        .to_str()
        .map_err(|_| "X-Aergo-Auth is not text")?
        .to_string();
    let (mut parts, body) = req.into_parts();
    let bytes = match http_body_util::Limited::new(body, max_bytes).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(Refused::TooLarge),
        Err(e) => return Err(Refused::Denied(format!("reading the body: {e}"))),
    };
    let key = aergo_api::auth::check(&header, repo, aergo_primitives::clock::now_ms(), &bytes)?;
    parts.extensions.insert(Signer(key));
    Ok(http::Request::from_parts(parts, HttpBody::from(bytes.to_vec())))
}

/// Which repository a request's path names: `None` for the public chain (any path not under
/// `/repo/`), else the name (`/repo/acme`, `/repo/acme/`).
fn repo_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/repo/")?;
    Some(rest.strip_suffix('/').unwrap_or(rest))
}

/// The repository whose binary submission a path names (`/repo/acme/txs`).
fn repo_txs_of(path: &str) -> Option<&str> {
    path.strip_prefix("/repo/")?.strip_suffix(TXS_PATH).filter(|name| !name.is_empty() && !name.contains('/'))
}

/// Builds the service that runs a repository's methods.
type Make<S> = Arc<dyn Fn(Methods) -> S + Send + Sync>;

/// One connection's front: the origin check, preflights, the 429 of an empty bucket, the
/// client's address for the calls, the repository a path names, CORS headers on the answer.
#[derive(Clone)]
struct Front<S> {
    inner: S,
    routes: Arc<Routes>,
    make: Make<S>,
    ip: IpAddr,
    guard: Arc<Guard>,
    /// `POST /txs` on the public chain's path, when the node serves it.
    binary: Option<Arc<dyn BinaryTxs>>,
}

impl<S> tower::Service<http::Request<hyper::body::Incoming>> for Front<S>
where
    S: tower::Service<http::Request<HttpBody>, Response = HttpResponse<HttpBody>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse<HttpBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<hyper::body::Incoming>) -> Self::Future {
        let origin = req.headers().get(http::header::ORIGIN).cloned();
        if let Some(o) = &origin {
            if !o.to_str().is_ok_and(|o| self.guard.origins.allows(o)) {
                let err = ErrorObjectOwned::owned(
                    codes::INVALID_REQUEST,
                    format!(
                        "origin {} may not call this node from a browser ([rpc] cors_origins)",
                        String::from_utf8_lossy(o.as_bytes())
                    ),
                    None::<()>,
                );
                Refusals::count(&self.guard.refusals.origin_refused);
                return Box::pin(std::future::ready(Ok(json_error(403, &err))));
            }
        }
        if let (Some(o), &http::Method::OPTIONS) = (&origin, req.method()) {
            let mut resp = http::Response::builder()
                .status(204)
                .header(http::header::ACCESS_CONTROL_ALLOW_METHODS, "POST, GET, OPTIONS")
                .header(
                    http::header::ACCESS_CONTROL_ALLOW_HEADERS,
                    "content-type, authorization, x-aergo-auth",
                )
                .header(http::header::ACCESS_CONTROL_MAX_AGE, "600")
                .body(HttpBody::empty())
                .expect("a static response");
            allow_origin(&mut resp, o);
            return Box::pin(std::future::ready(Ok(resp)));
        }
        if let Some(limits) = &self.guard.limits {
            if !limits.has_room(self.ip) {
                Refusals::count(&self.guard.refusals.rate_limited);
                let mut resp = json_error(429, &limits.error());
                resp.headers_mut().insert(http::header::RETRY_AFTER, limits.retry_after_s().into());
                if let Some(o) = &origin {
                    allow_origin(&mut resp, o);
                }
                return Box::pin(std::future::ready(Ok(resp)));
            }
        }
        req.extensions_mut().insert(ClientIp(self.ip));
        let req = req.map(HttpBody::new);
        let binary = match (req.uri().path(), repo_txs_of(req.uri().path())) {
            (TXS_PATH, _) => self.binary.clone().map(|b| (b, String::new(), None)),
            (_, Some(name)) => match self.routes.get(name) {
                Some(Route { binary: Some(b), members, .. }) => Some((b, name.to_string(), members)),
                _ => None,
            },
            _ => None,
        };
        if let Some((binary, repo, members)) = binary {
            let (guard, ip) = (self.guard.clone(), self.ip);
            return Box::pin(async move {
                let mut resp = binary_txs(req, binary, guard, ip, &repo, members).await;
                if let Some(o) = &origin {
                    allow_origin(&mut resp, o);
                }
                Ok(resp)
            });
        }
        if req.headers().contains_key(aergo_api::auth::HEADER) {
            // A signed request to a public route: the signature is checked before the call
            // (a bad one is refused), and the signer reads what it may (a private branch).
            let route = match repo_of(req.uri().path()) {
                None => Some((String::new(), None)),
                Some(name) => match self.routes.get(name) {
                    Some(Route { methods, members: None, .. }) => Some((name.to_string(), Some(methods))),
                    _ => None,
                },
            };
            if let Some((repo, methods)) = route {
                let (inner, make, max, ip) =
                    (self.inner.clone(), self.make.clone(), self.guard.max_request_bytes, self.ip);
                return Box::pin(async move {
                    let mut resp = match signed(req, &repo, max).await {
                        Ok(req) => match methods {
                            None => inner.clone().call(req).await?,
                            Some(methods) => make(methods).call(req).await?,
                        },
                        Err(why) => {
                            tracing::debug!(%ip, %why, "rpc: a signed request refused");
                            refusal(why, max)
                        }
                    };
                    if let Some(o) = &origin {
                        allow_origin(&mut resp, o);
                    }
                    Ok(resp)
                });
            }
        }
        let answer = match repo_of(req.uri().path()) {
            None => self.inner.call(req),
            Some(name) => match self.routes.get(name) {
                Some(Route { methods, members: None, .. }) => (self.make)(methods).call(req),
                Some(Route { methods, members: Some(members), .. }) => {
                    let (make, name, max) =
                        (self.make.clone(), name.to_string(), self.guard.max_request_bytes);
                    let ip = self.ip;
                    return Box::pin(async move {
                        let mut resp = match authenticate(req, &name, &members, max).await {
                            Ok(req) => make(methods).call(req).await?,
                            Err(why) => {
                                tracing::debug!(repo = %name, %ip, %why, "rpc: a private repository's request refused");
                                refusal(why, max)
                            }
                        };
                        if let Some(o) = &origin {
                            allow_origin(&mut resp, o);
                        }
                        Ok(resp)
                    });
                }
                None => {
                    let err = ErrorObjectOwned::owned(
                        codes::INVALID_PARAMS,
                        format!("no repository {name:?} on this node"),
                        None::<()>,
                    );
                    let mut resp = json_error(404, &err);
                    if let Some(o) = &origin {
                        allow_origin(&mut resp, o);
                    }
                    return Box::pin(std::future::ready(Ok(resp)));
                }
            },
        };
        Box::pin(async move {
            let mut resp = answer.await?;
            if let Some(o) = &origin {
                allow_origin(&mut resp, o);
            }
            Ok(resp)
        })
    }
}

/// The running listeners.
pub struct Listening {
    pub handle: ServerHandle,
    pub addr: SocketAddr,
    /// The TLS listener's address, when `[rpc.tls]` is set.
    pub tls_addr: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen for JSON-RPC on {addr}: {source}; choose another address with --rpc-listen or [rpc] listen")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("[rpc.tls]: {0}")]
    Tls(String),
}

/// The TLS configuration from PEM files: the certificate chain and its key.
fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, ListenError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let fail = |what: String| ListenError::Tls(what);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| fail(format!("cert_file {}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(format!("cert_file {}: not a PEM certificate chain: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(fail(format!("cert_file {}: no certificate in it", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| fail(format!("key_file {}: not a PEM private key: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| fail(format!("the certificate and the key do not make a pair: {e}")))?;
    // HTTP/1.1 only: browsers open WebSockets over it, and JSON-RPC gains nothing from h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Starts the listeners: `config.listen`, and `config.tls` with `tls_files` (its certificate and
/// key resolved against the data directory).
pub async fn serve(
    methods: Methods,
    binary: Option<Arc<dyn BinaryTxs>>,
    routes: Arc<Routes>,
    config: &RpcConfig,
    tls_files: Option<(PathBuf, PathBuf)>,
    refusals: Arc<Refusals>,
) -> Result<Listening, ListenError> {
    let server_config = ServerConfig::builder()
        .max_request_body_size(config.max_request_bytes)
        .max_response_body_size(config.max_response_bytes)
        .max_connections(config.max_connections)
        .max_subscriptions_per_connection(config.max_subscriptions_per_connection)
        .set_batch_request_config(BatchRequestConfig::Limit(config.max_batch))
        .build();
    let limits = RateLimits::new(config);
    let rpc_middleware = RpcServiceBuilder::new().layer(RateLimitLayer(limits.clone(), refusals.clone()));
    let builder =
        Server::builder().set_config(server_config).set_rpc_middleware(rpc_middleware).to_service_builder();
    let guard = Arc::new(Guard {
        max_request_bytes: config.max_request_bytes as usize,
        origins: Origins::new(&config.cors_origins),
        limits,
        refusals,
    });
    let connections = Arc::new(tokio::sync::Semaphore::new(config.max_connections as usize));
    let (stop, handle) = stop_channel();
    let bind = |addr: SocketAddr| async move {
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|source| ListenError::Bind { addr, source })?;
        let local = listener.local_addr().map_err(|source| ListenError::Bind { addr, source })?;
        Ok::<_, ListenError>((listener, local))
    };
    let tls = match (&config.tls, tls_files) {
        (Some(t), Some((cert, key))) => Some((t.listen, tls_acceptor(&cert, &key)?)),
        _ => None,
    };
    let (plain, addr) = bind(config.listen).await?;
    let tls_addr = match tls {
        Some((listen, acceptor)) => {
            let (listener, local) = bind(listen).await?;
            let accept = Accept {
                listener,
                tls: Some(acceptor),
                builder: builder.clone(),
                methods: methods.clone(),
                routes: routes.clone(),
                stop: stop.clone(),
                guard: guard.clone(),
                connections: connections.clone(),
                binary: binary.clone(),
            };
            tokio::spawn(accept.run());
            Some(local)
        }
        None => None,
    };
    let accept =
        Accept { listener: plain, tls: None, builder, methods, routes, stop, guard, connections, binary };
    tokio::spawn(accept.run());
    Ok(Listening { handle, addr, tls_addr })
}

/// The RPC middleware's layer: [`RateLimited`] around the methods.
#[derive(Clone)]
pub struct RateLimitLayer(Option<Arc<RateLimits>>, Arc<Refusals>);

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;
    fn layer(&self, inner: S) -> RateLimited<S> {
        RateLimited { inner, limits: self.0.clone(), refusals: self.1.clone() }
    }
}

type Layers = tower::layer::util::Stack<RateLimitLayer, tower::layer::util::Identity>;
type Builder = jsonrpsee::server::TowerServiceBuilder<Layers, tower::layer::util::Identity>;

/// One listener's accept loop.
struct Accept {
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    builder: Builder,
    methods: Methods,
    routes: Arc<Routes>,
    stop: StopHandle,
    guard: Arc<Guard>,
    connections: Arc<tokio::sync::Semaphore>,
    binary: Option<Arc<dyn BinaryTxs>>,
}

/// How long a TLS handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(10);

impl Accept {
    async fn run(self) {
        loop {
            let (sock, remote) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of descriptors, say: wait a little rather than spin.
                        tracing::warn!(error = %e, "rpc: accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = self.stop.clone().shutdown() => break,
            };
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                tracing::debug!(%remote, "rpc: too many connections; one refused");
                continue;
            };
            let _ = sock.set_nodelay(true);
            let (builder, stop) = (self.builder.clone(), self.stop.clone());
            let svc = Front {
                inner: self.builder.clone().build(self.methods.clone(), self.stop.clone()),
                routes: self.routes.clone(),
                make: Arc::new(move |methods| builder.clone().build(methods, stop.clone())),
                ip: remote.ip(),
                guard: self.guard.clone(),
                binary: self.binary.clone(),
            };
            let stopped = self.stop.clone().shutdown();
            let tls = self.tls.clone();
            tokio::spawn(async move {
                let served = match tls {
                    None => serve_with_graceful_shutdown(sock, svc, stopped).await,
                    Some(acceptor) => match tokio::time::timeout(HANDSHAKE, acceptor.accept(sock)).await {
                        Ok(Ok(stream)) => serve_with_graceful_shutdown(stream, svc, stopped).await,
                        Ok(Err(e)) => Err(format!("TLS handshake: {e}").into()),
                        Err(_) => Err("TLS handshake: timed out".into()),
                    },
                };
                if let Err(e) = served {
                    tracing::debug!(%remote, error = %e, "rpc connection ended");
                }
                drop(permit);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_chain_a_repository_or_its_binary_submission() {
        assert_eq!(repo_of("/"), None);
        assert_eq!(repo_of("/txs"), None);
        assert_eq!(repo_of("/repo/acme/"), Some("acme"));
        assert_eq!(repo_txs_of("/repo/acme/txs"), Some("acme"));
        assert_eq!(repo_txs_of("/repo/txs/txs"), Some("txs"));
        for not in ["/txs", "/repo/txs", "/repo//txs", "/repo/a/b/txs", "/repo/acme/txs/", "/repo/acme"] {
            assert_eq!(repo_txs_of(not), None, "{not}");
        }
    }

    #[tokio::test]
    async fn a_signed_body_over_the_limit_is_too_large_whatever_it_announced() {
        // No Content-Length (a chunked body is read up to the limit): 413, not "access denied".
        let stream = futures::stream::iter((0..3).map(|_| {
            Ok::<_, std::io::Error>(hyper::body::Frame::data(hyper::body::Bytes::from(vec![0u8; 400])))
        }));
        let req = http::Request::builder()
            .header(aergo_api::auth::HEADER, "nonsense")
            .body(HttpBody::new(http_body_util::StreamBody::new(stream)))
            .unwrap();
        let refused = signed(req, "", 1_000).await.unwrap_err();
        assert!(matches!(refused, Refused::TooLarge), "{refused}");
        assert_eq!(refusal(refused, 1_000).status(), 413);
        // Within the limit, a bad signature is denied.
        let req = http::Request::builder()
            .header(aergo_api::auth::HEADER, "nonsense")
            .body(HttpBody::from(vec![0u8; 10]))
            .unwrap();
        assert!(matches!(signed(req, "", 1_000).await.unwrap_err(), Refused::Denied(_)));
    }

    #[test]
    fn a_refusal_of_post_txs_has_the_status_of_whose_fault_it_is() {
        let err = |code: i32| ErrorObjectOwned::owned(code, "x", None::<()>);
        assert_eq!(status_of(&err(codes::ACCESS_DENIED)), 403);
        assert_eq!(status_of(&err(jsonrpsee::types::error::INTERNAL_ERROR_CODE)), 500);
        assert_eq!(status_of(&err(jsonrpsee::types::error::INVALID_PARAMS_CODE)), 400);
        assert_eq!(refusal(Refused::TooLarge, 10).status(), 413);
        assert_eq!(refusal(Refused::Denied("no".into()), 10).status(), 403);
    }

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate_and_exempts_whom_it_is_told() {
        let config = RpcConfig {
            rate_limit_per_second: 20,
            rate_limit_burst: 5,
            rate_limit_exempt: vec![IpAddr::from([10, 0, 0, 9])],
            ..RpcConfig::default()
        };
        let limits = RateLimits::new(&config).unwrap();
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        assert_eq!((0..5).filter(|_| limits.take(a)).count(), 5);
        assert!(!limits.has_room(a) && !limits.take(a), "the burst is spent");
        assert!(limits.take(b), "another client has its own bucket");
        assert!((0..100).all(|_| limits.take(IpAddr::from([10, 0, 0, 9]))), "exempt");
        std::thread::sleep(Duration::from_millis(120));
        assert!(limits.take(a), "20 a second: a token back within 50 ms");
        assert!(RateLimits::new(&RpcConfig::default()).is_none(), "off by default");
        let origins = Origins::new(&["https://App.example/".to_string()]);
        assert!(origins.allows("https://app.example") && !origins.allows("https://app.example:444"));
        assert!(Origins::new(&["*".to_string()]).allows("http://anything"));
    }
}
