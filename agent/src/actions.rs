//! Actions Horde asks the box for (`POST /v1/actions/{name}`, admin token): each is recorded in the
//! audit log ([`crate::audit`]) before its answer goes out, one runs at a time, and a request id seen
//! before is answered with its record without acting again. Design: `docs/agent.md`.
//!
//! - `restart-node`, `reboot`: the commands `[actions]` names (on the box `aergo-ctl restart node`
//!   and `reboot`), run with a time limit; `reboot` answers `accepted` first and runs a second
//!   later.
//! - `restart-agent`: answers `accepted`, then the agent stops serving and exits; its supervisor
//!   (the box's `inittab`) starts it again.
//! - `apply-settings {settings}`, `revert-settings`: the console's own code (`aergo-settings`:
//!   checked, written atomically, the files before kept as last good), then the node restarted.
//!   Tokens in the settings are not kept in the audit log.
//! - `install-update {url, sha256?, allow_downgrade?, reboot_at?}`: answers `accepted`, then
//!   [`crate::update`] downloads, checks, installs and reboots; how it ended is a second record
//!   (`<request_id>/outcome`). `cancel-update`: stops a download, a check or a wait for the reboot
//!   (an installed slot is then not booted).

use crate::audit::AuditEntry;
use crate::auth::Caller;
use crate::http::{json_error, signed_json, AppState, ClientAddr};
use aergo_primitives::clock::now_ms;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use bytes::Bytes;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Every action the API names.
pub const NAMES: [&str; 7] = [
    "restart-node",
    "restart-agent",
    "reboot",
    "apply-settings",
    "revert-settings",
    "install-update",
    "cancel-update",
];
/// How long an action's command may run.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    request_id: String,
    #[serde(default)]
    args: serde_json::Map<String, serde_json::Value>,
}

fn valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

/// Runs `argv` with [`COMMAND_LIMIT`]; `Ok` with what it printed last, or why it failed.
pub(crate) async fn run_command(argv: &[String]) -> Result<String, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("no command is configured for this action on this box".into());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).kill_on_drop(true).stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(COMMAND_LIMIT, cmd.output())
        .await
        .map_err(|_| format!("{program} did not finish within {} s", COMMAND_LIMIT.as_secs()))?
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let tail = |b: &[u8]| {
        let text = String::from_utf8_lossy(b);
        let text = text.trim();
        text[text.len().saturating_sub(400)..].to_string()
    };
    if out.status.success() {
        Ok(tail(&out.stdout))
    } else {
        Err(format!("{program} exited with {}: {}", out.status, tail(&out.stderr)))
    }
}

fn answer(state: &AppState, entry: &AuditEntry, replayed: bool) -> Response {
    let mut value = serde_json::to_value(entry).unwrap_or_default();
    value["replayed"] = replayed.into();
    let body = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
    let signature = state.sign(&body);
    let mut r = signed_json(state, body, signature);
    if entry.result == "failed" {
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    } else if entry.result == "accepted" {
        *r.status_mut() = StatusCode::ACCEPTED;
    }
    r
}

pub async fn action(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Extension(caller): Extension<Caller>,
    client: Option<Extension<ClientAddr>>,
    body: Result<axum::Json<ActionRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if !NAMES.contains(&name.as_str()) {
        return json_error(
            StatusCode::NOT_FOUND,
            &format!("no action {name:?}; the actions are {}", NAMES.join(", ")),
        );
    }
    let request = match body {
        Ok(axum::Json(r)) => r,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("the body must be {{\"request_id\": \"…\", \"args\": {{…}}}}: {}", e.body_text()),
            )
        }
    };
    if !valid_request_id(&request.request_id) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "request_id: 1 to 128 characters of letters, digits, '-', '_', '.' and ':'",
        );
    }
    let mut install = None;
    let settings = if name == "apply-settings" {
        match settings_of(&request.args) {
            Ok(s) => Some(s),
            Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
        }
    } else if name == "install-update" {
        match crate::update::InstallArgs::parse(&request.args) {
            Ok(a) => install = Some(a),
            Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
        }
        None
    } else {
        if !request.args.is_empty() {
            return json_error(StatusCode::BAD_REQUEST, &format!("{name} takes no arguments"));
        }
        None
    };
    // Tokens in the arguments are not kept in the audit log.
    let mut request = request;
    if let Some(agent) = request.args.get_mut("settings").and_then(|s| s.get_mut("agent")) {
        for key in ["token", "admin_token"] {
            if let Some(v) = agent.get_mut(key) {
                *v = serde_json::Value::String("<redacted>".into());
            }
        }
    }
    if request.args.get("settings").is_some_and(serde_json::Value::is_string) {
        request.args.insert(
            "settings".into(),
            serde_json::Value::String("<TOML, not kept: it may hold tokens>".into()),
        );
    }
    let client = client.map(|Extension(ClientAddr(a))| a.ip().to_string()).unwrap_or_default();
    // On a task of its own: a request that times out (or a client that goes away) does not stop an
    // action half way; its record is there for the retry.
    let work = tokio::spawn(perform(state, name, request, settings, install, caller, client));
    work.await
        .unwrap_or_else(|e| json_error(StatusCode::INTERNAL_SERVER_ERROR, &format!("the action failed: {e}")))
}

async fn perform(
    state: Arc<AppState>,
    name: String,
    request: ActionRequest,
    settings: Option<aergo_settings::Settings>,
    install: Option<crate::update::InstallArgs>,
    caller: Caller,
    client: String,
) -> Response {
    // One action at a time; the id is checked under the same lock, so a retry racing the first
    // attempt waits for it and gets its record.
    let mut audit = state.audit.lock().await;
    if let Some(done) = audit.find(&request.request_id) {
        let done = done.clone();
        if done.action != name {
            return json_error(
                StatusCode::CONFLICT,
                &format!("request_id {:?} was used for {}", request.request_id, done.action),
            );
        }
        return answer(&state, &done, true);
    }
    let deferred = matches!(name.as_str(), "restart-agent" | "reboot");
    let (result, message) = match name.as_str() {
        "restart-node" => match run_command(&state.actions.restart_node).await {
            Ok(out) => ("ok", if out.is_empty() { "the node was restarted".to_string() } else { out }),
            Err(e) => ("failed", e),
        },
        "apply-settings" | "revert-settings" => {
            let root = state.settings_root.clone();
            let done = tokio::task::spawn_blocking(move || change_settings(&root, settings))
                .await
                .unwrap_or_else(|e| Err(format!("the settings task failed: {e}")));
            match done {
                // The node reads its config when it starts.
                Ok(what) => match run_command(&state.actions.restart_node).await {
                    Ok(_) => ("ok", format!("{what}; the node was restarted")),
                    Err(e) => ("failed", format!("{what}, but the node was not restarted: {e}")),
                },
                Err(e) => ("failed", e),
            }
        }
        "install-update" => match install.as_ref().map(|a| state.updates.begin(&request.request_id, a)) {
            Some(Ok(())) => {
                ("accepted", "the update is under way: see `update` in the telemetry".to_string())
            }
            Some(Err(e)) => ("failed", e),
            None => ("failed", "no arguments".to_string()),
        },
        "cancel-update" => match state.updates.cancel().await {
            Ok(m) => ("ok", m),
            Err(e) => ("failed", e),
        },
        "reboot" if state.actions.reboot.is_empty() => {
            ("failed", "no command is configured for this action on this box".to_string())
        }
        "reboot" => ("accepted", "the box reboots in a second".to_string()),
        _ => ("accepted", "the agent restarts after this answer".to_string()),
    };
    let entry = AuditEntry {
        seq: 0,
        at_ms: now_ms(),
        request_id: request.request_id,
        action: name.clone(),
        args: serde_json::Value::Object(request.args),
        token: caller.scope.as_str().into(),
        token_fingerprint: caller.fingerprint,
        client,
        result: result.into(),
        message,
    };
    let entry = match audit.append(entry) {
        Ok(e) => e,
        Err(e) => {
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("the action cannot be recorded, so it was not done: {e}"),
            )
        }
    };
    drop(audit);
    crate::metrics::count_action(&name, &entry.result);
    tracing::info!(action = %name, request_id = %entry.request_id, result = %entry.result,
        token = %entry.token_fingerprint, client = %entry.client, "action");
    if let (Some(args), "accepted") = (install, entry.result.as_str()) {
        tokio::spawn(update_outcome(state.clone(), args, entry.clone()));
    }
    if deferred && entry.result == "accepted" {
        let state = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if name == "reboot" {
                if let Err(e) = run_command(&state.actions.reboot).await {
                    tracing::error!(error = %e, "reboot failed");
                }
            } else {
                state.restart.notify_one();
            }
        });
    }
    answer(&state, &entry, false)
}

/// An update the box's channel offers: recorded as an `install-update` by `channel` (no token,
/// no client) and carried out as one Horde asked for.
pub async fn channel_update(state: Arc<AppState>, args: crate::update::InstallArgs) {
    let at_ms = now_ms();
    let request_id = format!("channel-{at_ms}");
    if let Err(e) = state.updates.begin(&request_id, &args) {
        tracing::warn!(error = %e, "channel update not started");
        return;
    }
    let mut record = serde_json::Map::new();
    record.insert("url".into(), args.url.clone().into());
    let entry = AuditEntry {
        seq: 0,
        at_ms,
        request_id,
        action: "install-update".into(),
        args: serde_json::Value::Object(record),
        token: "channel".into(),
        token_fingerprint: String::new(),
        client: state.updates.config.channel.clone().unwrap_or_default(),
        result: "accepted".into(),
        message: "a newer release on the box's update channel".into(),
    };
    let appended = state.audit.lock().await.append(entry);
    match appended {
        Ok(entry) => {
            crate::metrics::count_action("install-update", "accepted");
            update_outcome(state, args, entry).await;
        }
        Err(e) => tracing::error!(error = %e, "the channel's update cannot be recorded"),
    }
}

/// Runs an accepted `install-update` and records how it ended in the audit log (as
/// `<request_id>/outcome`): refused (the version, the signature), failed, cancelled, or rebooting.
async fn update_outcome(state: Arc<AppState>, args: crate::update::InstallArgs, accepted: AuditEntry) {
    let probe = crate::update::NodeProbe { url: state.node_url.clone(), timeout: state.node_timeout };
    let result = state.updates.clone().run(args, state.actions.reboot.clone(), probe).await;
    let phase = state.updates.status().map(|s| s.phase).unwrap_or_default();
    let (result, message) = match result {
        Ok(m) => ("ok".to_string(), m),
        Err(m) => (if phase == "refused" || phase == "cancelled" { phase } else { "failed".into() }, m),
    };
    let entry = AuditEntry {
        seq: 0,
        at_ms: now_ms(),
        request_id: format!("{}/outcome", accepted.request_id),
        result,
        message,
        ..accepted
    };
    let appended = state.audit.lock().await.append(entry);
    match appended {
        Ok(e) => {
            crate::metrics::count_action("install-update", &e.result);
            tracing::info!(request_id = %e.request_id, result = %e.result, message = %e.message, "update outcome");
        }
        Err(e) => tracing::error!(error = %e, "the update's outcome cannot be recorded"),
    }
}

/// The settings of an `apply-settings` request: `args.settings`, an object in the shape of
/// `provision.toml` (or that file's TOML text), checked as Setup checks them.
fn settings_of(
    args: &serde_json::Map<String, serde_json::Value>,
) -> Result<aergo_settings::Settings, String> {
    if let Some(other) = args.keys().find(|k| k.as_str() != "settings") {
        return Err(format!("apply-settings takes only `settings`, not {other:?}"));
    }
    let settings: aergo_settings::Settings = match args.get("settings") {
        Some(serde_json::Value::String(text)) => {
            toml::from_str(text).map_err(|e| format!("settings: not provision.toml's shape: {e}"))?
        }
        Some(value @ serde_json::Value::Object(_)) => serde_json::from_value(value.clone())
            .map_err(|e| format!("settings: not provision.toml's shape: {e}"))?,
        _ => return Err("apply-settings needs `settings`: the box's settings, as in provision.toml".into()),
    };
    settings.validate().map_err(|e| format!("settings: {e}"))?;
    if settings.agent.tls_cert.is_some() || settings.agent.tls_key.is_some() {
        return Err("settings: a TLS key cannot be sent remotely; use the console or provisioning".into());
    }
    if settings.producer.keystore.is_some() || settings.producer.passphrase_file.is_some() {
        return Err(
            "settings: a producer key cannot be imported remotely; use the console or provisioning".into()
        );
    }
    Ok(settings)
}

/// Applies `settings` under `root` with the console's own code (keeping the last good files), or
/// reverts to them when `settings` is none; says what was done.
fn change_settings(
    root: &std::path::Path,
    settings: Option<aergo_settings::Settings>,
) -> Result<String, String> {
    match settings {
        Some(mut settings) => {
            // A producer keeps the key already on the box.
            if settings.node.role == aergo_settings::Role::Producer
                && settings.node.producer_address.is_none()
            {
                let current = aergo_settings::files::current(root).map_err(|e| e.to_string())?;
                settings.node.producer_address = current.and_then(|c| c.node.producer_address);
            }
            let applied = aergo_settings::apply(root, &settings, &aergo_settings::Material::default())
                .map_err(|e| e.to_string())?;
            Ok(format!("settings applied: {} files written", applied.written.len()))
        }
        None => {
            let restored = aergo_settings::revert(root).map_err(|e| e.to_string())?;
            Ok(format!("settings reverted: {} files restored", restored.len()))
        }
    }
}

/// `GET /v1/support-bundle` (admin): recorded in the audit log (who took the box's logs, from
/// where) before the bundle streams; see [`crate::support`].
pub async fn support_bundle(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    client: Option<Extension<ClientAddr>>,
) -> Response {
    let Some(permit) = crate::support::permit(&state) else {
        return crate::support::busy();
    };
    let at_ms = now_ms();
    let entry = AuditEntry {
        seq: 0,
        at_ms,
        request_id: format!("support-bundle-{at_ms}-{:08x}", rand::random::<u32>()),
        action: "support-bundle".into(),
        args: serde_json::Value::Object(Default::default()),
        token: caller.scope.as_str().into(),
        token_fingerprint: caller.fingerprint,
        client: client.map(|Extension(ClientAddr(a))| a.ip().to_string()).unwrap_or_default(),
        result: "ok".into(),
        message: "support bundle streamed".into(),
    };
    let recorded = state.audit.lock().await.append(entry);
    if let Err(e) = recorded {
        return json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the request cannot be recorded, so no bundle is made: {e}"),
        );
    }
    crate::metrics::count_action("support-bundle", "ok");
    crate::support::bundle(state, permit).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    since: Option<u64>,
    limit: Option<usize>,
}

/// `GET /v1/audit?since=SEQ&limit=N`: the records after `since`, oldest first.
pub async fn audit(
    State(state): State<Arc<AppState>>,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "query parameters: since (record seq) and limit (positive)",
        );
    };
    let limit = params.limit.unwrap_or(100).clamp(1, state.limits.max_history);
    // One look at the log: the page and the latest sequence number agree.
    let (read, last) = {
        let audit = state.audit.lock().await;
        (audit.since(params.since.unwrap_or(0), limit), audit.last_seq())
    };
    let (entries, more) = match read {
        Ok(x) => x,
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let body = serde_json::json!({ "latest_seq": last, "more": more, "entries": entries });
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let signature = state.sign(&body);
    signed_json(&state, body, signature)
}
