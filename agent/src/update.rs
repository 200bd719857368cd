//! Updates over the network (`install-update`, `cancel-update`): the bundle is downloaded to the
//! data partition, checked (`rauc info`: the signature against the image's keyring, the version
//! newer than the running one unless `allow_downgrade`), installed into the other slot (`rauc
//! install`), and the box reboots — at once, at `reboot_at`, and for a producer only when it is not
//! the producer of the current or the next few slots. After the reboot the agent reads where the
//! box came up: the new version (`booted`, then `marked-good` once the health check has marked the
//! slot good) or the old slot again (`rolled-back`). Design: `docs/agent.md`.
//!
//! Why a download first and not RAUC's own HTTP streaming: streaming needs RAUC's NBD helper and
//! the `nbd` kernel module, which the image does not carry; a file on `/data` can be measured for
//! progress, checked against a SHA-256 Horde gives, verified before anything is written to a slot,
//! and the download can be cancelled without touching RAUC. The cost is the bundle's size on the
//! data partition for a while (checked against the free space before it is fetched).
//!
//! The update's state is a JSON file beside the bundle, written atomically at each phase, so that
//! it survives the reboot it asks for and an agent restart.

use aergo_primitives::clock::now_ms;
use aergo_telemetry::UpdateStatus;
use parking_lot::Mutex;
use serde::Deserialize;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The `[update]` settings.
#[derive(Clone, Debug, serde::Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpdateConfig {
    /// Where the bundle is downloaded and the update's state kept (on the data partition).
    pub dir: PathBuf,
    /// The RAUC program (empty: no updates over the network on this box).
    pub rauc: String,
    /// The running release (`VERSION_ID`).
    pub os_release: PathBuf,
    /// The kernel command line (`rauc.slot=`).
    pub cmdline: PathBuf,
    /// Made by the health check once it has marked the booted slot good.
    pub good_marker: PathBuf,
    /// A larger bundle is refused.
    pub max_bundle_bytes: u64,
    /// To connect, and for the server's answer to begin.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    /// For the whole download.
    #[serde(with = "humantime_serde")]
    pub download_timeout: Duration,
    /// A producer reboots only when it is not the producer of the current or the next this many slots.
    pub producer_quiet_slots: u64,
    /// A channel the box follows on its own: the URL of a small JSON document naming the latest
    /// release (`{"version", "url", "sha256"?}`, `url` absolute or relative to the channel's);
    /// none: updates only when Horde asks.
    pub channel: Option<String>,
    /// How often the channel is read (the first time a minute after the agent starts, or sooner
    /// when the interval is shorter).
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            dir: PathBuf::from("/var/lib/aergo/update"),
            rauc: "rauc".into(),
            os_release: PathBuf::from("/etc/os-release"),
            cmdline: PathBuf::from("/proc/cmdline"),
            good_marker: PathBuf::from("/run/aergo/slot-good"),
            max_bundle_bytes: 2 << 30,
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(30),
            download_timeout: Duration::from_secs(1800),
            producer_quiet_slots: 3,
            channel: None,
            check_interval: Duration::from_secs(3600),
        }
    }
}

/// What `install-update` takes.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InstallArgs {
    pub url: String,
    /// The bundle's SHA-256 (hex), when Horde knows it: a different download is refused.
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub allow_downgrade: bool,
    /// Unix seconds: reboot into the new slot not before then (default: at once).
    #[serde(default)]
    pub reboot_at: Option<u64>,
}

impl InstallArgs {
    pub fn parse(args: &serde_json::Map<String, serde_json::Value>) -> Result<InstallArgs, String> {
        let a: InstallArgs =
            serde_json::from_value(serde_json::Value::Object(args.clone())).map_err(|e| {
                format!("install-update takes {{url, sha256?, allow_downgrade?, reboot_at?}}: {e}")
            })?;
        if !(a.url.starts_with("http://") || a.url.starts_with("https://")) || a.url.len() > 2048 {
            return Err("url: an http:// or https:// URL of at most 2048 characters".into());
        }
        if a.url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("url: no spaces or control characters".into());
        }
        if let Some(h) = &a.sha256 {
            if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err("sha256: 64 hex digits".into());
            }
        }
        Ok(a)
    }
}

/// A channel's document: the release the box should run.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ChannelRelease {
    pub version: String,
    pub url: String,
    #[serde(default)]
    pub sha256: Option<String>,
}

/// The release `text` (a channel's document read from `channel`) offers, with its URL made
/// absolute; checked as `install-update` checks its arguments.
pub fn parse_channel(channel: &str, text: &str) -> Result<(ChannelRelease, InstallArgs), String> {
    let mut release: ChannelRelease = serde_json::from_str(text)
        .map_err(|e| format!("not a channel document ({{\"version\", \"url\", \"sha256\"?}}): {e}"))?;
    if !(release.url.starts_with("http://") || release.url.starts_with("https://")) {
        let base = channel.rsplit_once('/').map_or(channel, |(b, _)| b);
        release.url = format!("{base}/{}", release.url.trim_start_matches('/'));
    }
    let mut args = serde_json::Map::new();
    args.insert("url".into(), release.url.clone().into());
    if let Some(h) = &release.sha256 {
        args.insert("sha256".into(), h.clone().into());
    }
    let install = InstallArgs::parse(&args)?;
    semver::Version::parse(&release.version).map_err(|e| format!("version {:?}: {e}", release.version))?;
    Ok((release, install))
}

/// Phases in which the update is under way (one at a time).
const ACTIVE: [&str; 5] = ["downloading", "verifying", "installing", "waiting", "rebooting"];

pub struct Updates {
    pub config: UpdateConfig,
    status: Mutex<Option<UpdateStatus>>,
    cancel: Arc<AtomicBool>,
    channel: Mutex<Option<aergo_telemetry::ChannelStatus>>,
}

/// `VERSION_ID` of an os-release file.
pub fn running_version(os_release: &Path) -> Option<String> {
    let text = std::fs::read_to_string(os_release).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_ID="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

fn boot_slot(cmdline: &Path) -> Option<String> {
    let text = std::fs::read_to_string(cmdline).ok()?;
    text.split_whitespace().find_map(|a| a.strip_prefix("rauc.slot=")).map(str::to_string)
}

/// Whether `bundle` may replace `running`: newer by semantic versioning, or `allow_downgrade`.
pub fn version_allowed(bundle: &str, running: Option<&str>, allow_downgrade: bool) -> Result<(), String> {
    if allow_downgrade {
        return Ok(());
    }
    let Some(running) = running else {
        return Err("the running version is unknown (no VERSION_ID in os-release): give allow_downgrade to install anyway".into());
    };
    let parse = |v: &str| {
        semver::Version::parse(v).map_err(|e| format!("version {v:?} is not a semantic version ({e})"))
    };
    let (b, r) = match (parse(bundle), parse(running)) {
        (Ok(b), Ok(r)) => (b, r),
        (Err(e), _) | (_, Err(e)) => {
            return Err(format!("{e}: cannot tell newer from older; give allow_downgrade to install anyway"))
        }
    };
    if b > r {
        Ok(())
    } else {
        Err(format!(
            "the bundle's version {bundle} is not newer than the running {running} (give allow_downgrade to install it anyway)"
        ))
    }
}

/// What `rauc info --output-format=json` says of a bundle that passed its signature check.
#[derive(Debug, Deserialize)]
pub struct BundleInfo {
    #[serde(default)]
    pub compatible: String,
    #[serde(default)]
    pub version: String,
}

/// Runs `rauc info` on `bundle` (the signature is checked against the system's keyring).
pub async fn bundle_info(rauc: &str, bundle: &Path) -> Result<BundleInfo, String> {
    let mut cmd = tokio::process::Command::new(rauc);
    cmd.args(["info", "--output-format=json"])
        .arg(bundle)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .map_err(|_| "rauc info did not finish within 300 s".to_string())?
        .map_err(|e| format!("cannot run {rauc}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim();
        return Err(format!("rauc refused the bundle: {}", &err[err.len().saturating_sub(400)..]));
    }
    // The JSON is the last line (RAUC may log before it).
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or_default();
    serde_json::from_str(json).map_err(|e| format!("rauc info's answer is not understood: {e}"))
}

impl Updates {
    /// Reads the state an earlier agent left and settles what a reboot decided.
    pub fn open(config: UpdateConfig) -> Updates {
        let status = std::fs::read(config.dir.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<UpdateStatus>(&b).ok());
        let channel =
            config.channel.clone().map(|url| aergo_telemetry::ChannelStatus { url, ..Default::default() });
        let u = Updates {
            config,
            status: Mutex::new(status),
            cancel: Arc::new(AtomicBool::new(false)),
            channel: Mutex::new(channel),
        };
        u.settle(true);
        u
    }

    /// No updates over the network (and no state read).
    pub fn disabled() -> Updates {
        let config = UpdateConfig { rauc: String::new(), ..UpdateConfig::default() };
        Updates {
            config,
            status: Mutex::new(None),
            cancel: Arc::new(AtomicBool::new(false)),
            channel: Mutex::new(None),
        }
    }

    pub fn status(&self) -> Option<UpdateStatus> {
        self.settle(false);
        self.status.lock().clone()
    }

    /// The channel the box follows and what it said last.
    pub fn channel_status(&self) -> Option<aergo_telemetry::ChannelStatus> {
        self.channel.lock().clone()
    }

    /// Reads the channel; the release to install now (newer than what runs, not the one the last
    /// update already tried and that failed, was refused, cancelled or rolled back), if any.
    pub fn check_channel(&self) -> Option<InstallArgs> {
        let url = self.config.channel.clone()?;
        let now = now_ms();
        let read = self.fetch_small(&url).and_then(|text| parse_channel(&url, &text));
        let mut channel = self.channel.lock();
        let status = channel.get_or_insert_with(Default::default);
        status.url = url.clone();
        status.checked_ms = now;
        let (release, args) = match read {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(channel = %url, error = %e, "update channel not read");
                status.error = Some(e);
                return None;
            }
        };
        status.error = None;
        status.offered_version = Some(release.version.clone());
        drop(channel);
        let running = running_version(&self.config.os_release);
        if version_allowed(&release.version, running.as_deref(), false).is_err() {
            return None;
        }
        let last = self.status.lock().clone();
        if let Some(s) = last {
            let tried = s.version.as_deref() == Some(release.version.as_str()) || s.url == release.url;
            if ACTIVE.contains(&s.phase.as_str())
                || (tried && ["refused", "failed", "cancelled", "rolled-back"].contains(&s.phase.as_str()))
            {
                return None;
            }
        }
        Some(args)
    }

    /// A small document (a channel's), bounded like a download.
    fn fetch_small(&self, url: &str) -> Result<String, String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(self.config.connect_timeout))
            .timeout_recv_response(Some(self.config.response_timeout))
            .timeout_global(Some(self.config.response_timeout * 2))
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent.get(url).call().map_err(|e| format!("reading {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("reading {url}: the server answered {}", resp.status()));
        }
        resp.body_mut()
            .with_config()
            .limit(64 << 10)
            .read_to_string()
            .map_err(|e| format!("reading {url}: {e}"))
    }

    pub fn available(&self) -> bool {
        !self.config.rauc.is_empty()
    }

    /// After a reboot: on the new version (`booted`, `marked-good` once the health check made its
    /// marker) or back on the old slot (`rolled-back`). At start, a phase the agent was in the middle
    /// of (downloading, verifying, installing, waiting) was cut short by the restart.
    fn settle(&self, at_start: bool) {
        let mut guard = self.status.lock();
        let Some(s) = guard.as_mut() else { return };
        // Between starts only a booted slot's marking can change (read once a sample).
        if !at_start && s.phase != "booted" {
            return;
        }
        let before = s.phase.clone();
        let slot = boot_slot(&self.config.cmdline);
        let version = running_version(&self.config.os_release);
        match s.phase.as_str() {
            "rebooting" | "booted" if at_start || s.phase == "booted" => {
                let on_new = s.version.is_some() && version == s.version && slot != s.from_slot;
                if on_new {
                    if self.config.good_marker.exists() {
                        s.phase = "marked-good".into();
                        s.message = format!(
                            "running {} from slot {}, marked good",
                            version.unwrap_or_default(),
                            slot.unwrap_or_default()
                        );
                    } else {
                        s.phase = "booted".into();
                        s.message = format!(
                            "running {} from slot {}; waiting for the health check",
                            version.unwrap_or_default(),
                            slot.clone().unwrap_or_default()
                        );
                    }
                } else if slot == s.from_slot && at_start {
                    s.phase = "rolled-back".into();
                    s.message = format!(
                        "the new slot did not become healthy (or did not boot): back on slot {} running {}",
                        slot.unwrap_or_default(),
                        version.unwrap_or_default()
                    );
                }
            }
            "downloading" | "verifying" | "installing" | "waiting" if at_start => {
                s.phase = "failed".into();
                s.message = format!("interrupted while {before} by a restart of the agent; ask again");
            }
            _ => {}
        }
        if s.phase != before {
            s.progress_pct = None;
            s.updated_ms = now_ms();
            let copy = s.clone();
            drop(guard);
            self.save(&copy);
        }
    }

    fn save(&self, s: &UpdateStatus) {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.config.dir)?;
            let json = serde_json::to_vec_pretty(s).unwrap_or_default();
            aergo_primitives::file::write_atomic_mode(&self.config.dir.join("state.json"), &json, 0o644)
        };
        if let Err(e) = write() {
            tracing::error!(error = %e, dir = %self.config.dir.display(), "the update's state cannot be kept");
        }
    }

    /// Sets the phase (and message, progress); kept on disk when the phase changes.
    fn set(&self, phase: &str, progress: Option<u8>, message: impl Into<String>) {
        let copy = {
            let mut g = self.status.lock();
            let Some(s) = g.as_mut() else { return };
            let changed = s.phase != phase;
            s.phase = phase.into();
            s.progress_pct = progress;
            s.message = message.into();
            s.updated_ms = now_ms();
            changed.then(|| s.clone())
        };
        if let Some(c) = copy {
            tracing::info!(phase, message = %c.message, "update");
            self.save(&c);
        }
    }

    fn set_version(&self, v: &str) {
        if let Some(s) = self.status.lock().as_mut() {
            s.version = Some(v.to_string());
        }
    }

    /// Begins an update, or says why not (one is under way; updates are off here).
    pub fn begin(&self, request_id: &str, args: &InstallArgs) -> Result<(), String> {
        if !self.available() {
            return Err(
                "updates over the network are not available on this box ([update] rauc is empty)".into()
            );
        }
        let mut g = self.status.lock();
        if let Some(s) = g.as_ref().filter(|s| ACTIVE.contains(&s.phase.as_str())) {
            return Err(format!("update {} is under way ({}); cancel it first", s.request_id, s.phase));
        }
        self.cancel.store(false, Ordering::SeqCst);
        let s = UpdateStatus {
            request_id: request_id.into(),
            url: args.url.clone(),
            phase: "downloading".into(),
            progress_pct: Some(0),
            version: None,
            from_version: running_version(&self.config.os_release),
            from_slot: boot_slot(&self.config.cmdline),
            allow_downgrade: args.allow_downgrade,
            reboot_at: args.reboot_at,
            message: "starting the download".into(),
            started_ms: now_ms(),
            updated_ms: now_ms(),
        };
        *g = Some(s.clone());
        drop(g);
        self.save(&s);
        Ok(())
    }

    /// `cancel-update`: what was done, or why it cannot be.
    pub async fn cancel(&self) -> Result<String, String> {
        let phase = self.status.lock().as_ref().map(|s| s.phase.clone());
        match phase.as_deref() {
            Some("downloading" | "verifying" | "waiting") => {
                self.cancel.store(true, Ordering::SeqCst);
                Ok(format!("the update is being cancelled (it was {})", phase.unwrap_or_default()))
            }
            Some("installing") => Err("the bundle is being written into the other slot; that cannot be cut short — cancel once it is installed (the box then stays on this slot)".into()),
            Some("rebooting") => Err("the box is rebooting into the new slot already".into()),
            _ => Ok("no update is under way".into()),
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Carries the update out; returns the outcome for the audit log (`Ok` once it reboots).
    pub async fn run(
        self: Arc<Self>,
        args: InstallArgs,
        reboot: Vec<String>,
        node: NodeProbe,
    ) -> Result<String, String> {
        let bundle = self.config.dir.join("bundle.raucb");
        let result = self.clone().steps(&args, &bundle, &reboot, &node).await;
        if let Err((phase, message)) = &result {
            let _ = std::fs::remove_file(&bundle);
            let _ = std::fs::remove_file(self.config.dir.join("bundle.raucb.part"));
            self.set(phase, None, message.clone());
        }
        result.map_err(|(_, m)| m)
    }

    async fn steps(
        self: Arc<Self>,
        args: &InstallArgs,
        bundle: &Path,
        reboot: &[String],
        node: &NodeProbe,
    ) -> Result<String, (&'static str, String)> {
        let failed = |m: String| ("failed", m);
        let cancelled = || ("cancelled", "cancelled by cancel-update".to_string());
        // Download.
        let me = self.clone();
        let (url, sha) = (args.url.clone(), args.sha256.clone());
        let part = self.config.dir.join("bundle.raucb.part");
        let target = bundle.to_path_buf();
        tokio::task::spawn_blocking(move || me.download(&url, &part, &target, sha.as_deref()))
            .await
            .map_err(|e| failed(format!("the download task failed: {e}")))?
            .map_err(|e| if self.cancelled() { cancelled() } else { failed(e) })?;
        if self.cancelled() {
            return Err(cancelled());
        }
        // Verify: signature (rauc info) and version.
        self.set("verifying", None, "checking the signature and the version (rauc info)");
        let info = bundle_info(&self.config.rauc, bundle).await.map_err(|e| ("refused", e))?;
        self.set_version(&info.version);
        let running = running_version(&self.config.os_release);
        version_allowed(&info.version, running.as_deref(), args.allow_downgrade)
            .map_err(|e| ("refused", e))?;
        if self.cancelled() {
            return Err(cancelled());
        }
        // Install into the other slot.
        self.set("installing", Some(0), format!("installing {} ({})", info.version, info.compatible));
        self.install(bundle).await.map_err(failed)?;
        let _ = std::fs::remove_file(bundle);
        // Wait for the time asked for, and (a producer) for its own slots to be past.
        let keep_slot = || async {
            // Installed but not rebooted: the booted slot stays the one booted next.
            let _ = crate::actions::run_command(&[
                self.config.rauc.clone(),
                "status".into(),
                "mark-active".into(),
                "booted".into(),
            ])
            .await;
            cancelled()
        };
        if let Some(at) = args.reboot_at {
            loop {
                let now = now_ms() / 1000;
                if now >= at {
                    break;
                }
                if self.cancelled() {
                    return Err(keep_slot().await);
                }
                self.set(
                    "waiting",
                    None,
                    format!("installed {}; rebooting at {at} (in {} s)", info.version, at - now),
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        let mut said = false;
        let waited = std::time::Instant::now();
        loop {
            if self.cancelled() {
                return Err(keep_slot().await);
            }
            match node.producing_soon(self.config.producer_quiet_slots).await {
                Some(why) if waited.elapsed() < Duration::from_secs(600) => {
                    if !said {
                        self.set("waiting", None, format!("installed {}; {why}", info.version));
                        said = true;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => break,
            }
        }
        self.set("rebooting", None, format!("rebooting into {}", info.version));
        crate::actions::run_command(reboot)
            .await
            .map_err(|e| failed(format!("installed {}, but the reboot failed: {e}", info.version)))?;
        Ok(format!("installed {}; the box reboots into it", info.version))
    }

    /// Downloads `url` to `part`, then renames it to `target`; bounded in size and time,
    /// cancellable, checked against `sha256` when given.
    fn download(&self, url: &str, part: &Path, target: &Path, sha256: Option<&str>) -> Result<(), String> {
        use sha2::Digest;
        std::fs::create_dir_all(&self.config.dir)
            .map_err(|e| format!("{}: {e}", self.config.dir.display()))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(self.config.connect_timeout))
            .timeout_recv_response(Some(self.config.response_timeout))
            .timeout_global(Some(self.config.download_timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent.get(url).call().map_err(|e| format!("downloading {url}: {e}"))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("downloading {url}: the server answered {status}"));
        }
        let total: Option<u64> =
            resp.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let max = self.config.max_bundle_bytes;
        if let Some(t) = total {
            if t > max {
                return Err(format!("the bundle is {t} bytes, more than the {max} allowed"));
            }
            let free = nix::sys::statvfs::statvfs(&self.config.dir)
                .map(|s| s.blocks_available().saturating_mul(s.fragment_size()))
                .unwrap_or(u64::MAX);
            // Room for the bundle and 64 MiB more for the node meanwhile.
            if t + (64 << 20) > free {
                return Err(format!(
                    "the bundle is {t} bytes and {} has {free} free",
                    self.config.dir.display()
                ));
            }
        }
        let mut file = std::fs::File::create(part).map_err(|e| format!("{}: {e}", part.display()))?;
        let mut body = resp.body_mut().with_config().limit(max).reader();
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut got: u64 = 0;
        let mut shown = 0;
        loop {
            if self.cancelled() {
                return Err("cancelled".into());
            }
            let n = body.read(&mut buf).map_err(|e| format!("downloading {url}: {e}"))?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n]).map_err(|e| format!("{}: {e}", part.display()))?;
            hasher.update(&buf[..n]);
            got += n as u64;
            if let Some(t) = total.filter(|t| *t > 0) {
                let pct = (got * 100 / t).min(100) as u8;
                if pct != shown {
                    shown = pct;
                    self.set("downloading", Some(pct), format!("{got} of {t} bytes"));
                }
            }
        }
        if total.is_some_and(|t| t != got) {
            return Err(format!("the download ended after {got} of {} bytes", total.unwrap_or_default()));
        }
        file.sync_all().map_err(|e| e.to_string())?;
        let digest = hex::encode(hasher.finalize());
        if let Some(want) = sha256 {
            if !want.eq_ignore_ascii_case(&digest) {
                return Err(format!("the download's SHA-256 is {digest}, not the {want} asked for"));
            }
        }
        std::fs::rename(part, target).map_err(|e| e.to_string())?;
        self.set("downloading", Some(100), format!("{got} bytes, SHA-256 {digest}"));
        Ok(())
    }

    /// `rauc install`, its progress lines (`NN% …`) into the status.
    async fn install(&self, bundle: &Path) -> Result<(), String> {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = tokio::process::Command::new(&self.config.rauc);
        cmd.arg("install")
            .arg(bundle)
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", self.config.rauc))?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let errors = tokio::spawn(async move {
            let mut text = String::new();
            if let Some(e) = stderr {
                let mut lines = tokio::io::BufReader::new(e).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    text.push_str(&l);
                    text.push('\n');
                }
            }
            text
        });
        if let Some(out) = stdout {
            let mut lines = tokio::io::BufReader::new(out).lines();
            let read = async {
                while let Ok(Some(line)) = lines.next_line().await {
                    let t = line.trim();
                    if let Some((pct, what)) = t.split_once('%') {
                        if let Ok(p) = pct.trim().parse::<u8>() {
                            self.set("installing", Some(p.min(100)), what.trim().to_string());
                        }
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(1800), read).await.is_err() {
                return Err("rauc install did not finish within 30 minutes".into());
            }
        }
        let status = child.wait().await.map_err(|e| e.to_string())?;
        let errors = errors.await.unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            let e = errors.trim();
            Err(format!("rauc install failed ({status}): {}", &e[e.len().saturating_sub(400)..]))
        }
    }
}

/// Asks the node whether this box produces soon.
pub struct NodeProbe {
    pub url: String,
    pub timeout: Duration,
}

impl NodeProbe {
    /// Why not to reboot now (`Some`): the box's next own slot begins within `slots` slots. (A slot
    /// the box is in was produced at its start.) `None`: not a producer, not soon, or the node does
    /// not say.
    pub async fn producing_soon(&self, slots: u64) -> Option<String> {
        use aergo_api::AergoApiClient;
        let client = jsonrpsee::http_client::HttpClientBuilder::default()
            .request_timeout(self.timeout)
            .build(&self.url)
            .ok()?;
        let (metrics, info) = tokio::join!(client.node_metrics(), client.chain_info(None));
        let next = metrics.ok()?.next_slot_ms?;
        let info = info.ok()?;
        // The only producer: no one else produces meanwhile, so waiting gains nothing.
        if info.producer_count <= 1 {
            return None;
        }
        let interval = info.block_interval_ms.max(1);
        let now = now_ms();
        (next <= now + slots * interval).then(|| {
            format!("waiting until this producer's next slot is more than {slots} slots away (it begins at {next})")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_newer_version_is_allowed_unless_downgrade_is_asked() {
        assert!(version_allowed("0.1.0-b", Some("0.1.0-a"), false).is_ok());
        assert!(version_allowed("0.1.0-broken", Some("0.1.0-b"), false).is_ok());
        assert!(version_allowed("0.2.0", Some("0.1.9"), false).is_ok());
        let e = version_allowed("0.1.0-a", Some("0.1.0-b"), false).unwrap_err();
        assert!(e.contains("not newer than the running 0.1.0-b"), "{e}");
        assert!(version_allowed("0.1.0", Some("0.1.0"), false).is_err());
        assert!(version_allowed("0.1.0-a", Some("0.1.0-b"), true).is_ok());
        assert!(version_allowed("dev", Some("0.1.0"), false).unwrap_err().contains("allow_downgrade"));
        assert!(version_allowed("0.1.0", None, false).is_err());
    }

    #[test]
    fn install_arguments_are_checked() {
        let parse = |v: serde_json::Value| InstallArgs::parse(v.as_object().unwrap());
        assert!(parse(serde_json::json!({"url": "http://10.0.2.2:8000/b.raucb"})).is_ok());
        assert!(parse(serde_json::json!({"url": "ftp://x/b"})).is_err());
        assert!(parse(serde_json::json!({"url": "http://x/a b"})).is_err());
        assert!(parse(serde_json::json!({"url": "http://x/b", "sha256": "12"})).is_err());
        assert!(parse(serde_json::json!({"url": "http://x/b", "force": true})).is_err());
        assert!(parse(serde_json::json!({})).is_err());
    }

    #[test]
    fn after_a_reboot_the_box_says_where_it_came_up() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("os-release"), "VERSION_ID=0.1.0-b\n").unwrap();
        std::fs::write(d.join("cmdline"), "root=x rauc.slot=B quiet\n").unwrap();
        let config = UpdateConfig {
            dir: d.join("update"),
            os_release: d.join("os-release"),
            cmdline: d.join("cmdline"),
            good_marker: d.join("good"),
            ..UpdateConfig::default()
        };
        let rebooting = |version: &str| UpdateStatus {
            request_id: "r1".into(),
            phase: "rebooting".into(),
            version: Some(version.into()),
            from_version: Some("0.1.0-a".into()),
            from_slot: Some("A".into()),
            ..UpdateStatus::default()
        };
        let u = Updates::open(config.clone());
        u.save(&rebooting("0.1.0-b"));
        let u = Updates::open(config.clone());
        assert_eq!(u.status().unwrap().phase, "booted");
        std::fs::write(d.join("good"), "").unwrap();
        assert_eq!(u.status().unwrap().phase, "marked-good");
        // Back on the old slot: rolled back, and that is kept.
        std::fs::write(d.join("cmdline"), "rauc.slot=A\n").unwrap();
        std::fs::write(d.join("os-release"), "VERSION_ID=0.1.0-a\n").unwrap();
        let u = Updates::open(config.clone());
        u.save(&rebooting("0.1.0-b"));
        let u = Updates::open(config.clone());
        let s = u.status().unwrap();
        assert_eq!(s.phase, "rolled-back", "{s:?}");
        assert_eq!(Updates::open(config.clone()).status().unwrap().phase, "rolled-back");
        // A download cut short by an agent restart is failed, not left "downloading".
        u.save(&UpdateStatus { phase: "downloading".into(), ..rebooting("0.1.0-c") });
        assert_eq!(Updates::open(config).status().unwrap().phase, "failed");
    }
}
