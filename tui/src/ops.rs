//! The Operations screen: restart the node or the agent, reboot, shut down.
//!
//! What each operation runs comes from `<root>/etc/aergo/console.toml`, so that the console does not
//! hard-code the appliance's service manager and tests can substitute harmless commands:
//!
//! ```toml
//! [commands]
//! restart_node = ["/usr/sbin/aergo-ctl", "restart", "node"]
//! restart_agent = ["/usr/sbin/aergo-ctl", "restart", "agent"]
//! reboot = ["/sbin/reboot"]
//! poweroff = ["/sbin/poweroff"]
//! ```
//!
//! Commands run on their own thread with a time limit; their result (exit status and the last line of
//! output) comes back as an event.

use crate::app::{Event, Update};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// An operation needs this long at most before it is reported as hanging (it keeps running).
const OP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    RestartNode,
    RestartAgent,
    Reboot,
    PowerOff,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::RestartNode, Op::RestartAgent, Op::Reboot, Op::PowerOff];

    pub fn label(self) -> &'static str {
        match self {
            Op::RestartNode => "Restart the node",
            Op::RestartAgent => "Restart the agent",
            Op::Reboot => "Reboot the box",
            Op::PowerOff => "Shut the box down",
        }
    }

    /// What the confirmation says will happen.
    pub fn consequence(self) -> &'static str {
        match self {
            Op::RestartNode => "The node stops producing and serving RPC for a few seconds.",
            Op::RestartAgent => "Horde sees no telemetry for a few seconds; no samples are lost.",
            Op::Reboot => "Everything stops until the box is back (about a minute).",
            Op::PowerOff => "The box stays off until someone powers it on at the machine.",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is invalid: {reason}")]
    Invalid { path: String, reason: String },
}

/// `<root>/etc/aergo/console.toml`; every part optional.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    pub commands: Commands,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Commands {
    pub restart_node: Vec<String>,
    pub restart_agent: Vec<String>,
    pub reboot: Vec<String>,
    pub poweroff: Vec<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
        ConsoleConfig {
            commands: Commands {
                restart_node: argv(&["/usr/sbin/aergo-ctl", "restart", "node"]),
                restart_agent: argv(&["/usr/sbin/aergo-ctl", "restart", "agent"]),
                reboot: argv(&["/sbin/reboot"]),
                poweroff: argv(&["/sbin/poweroff"]),
            },
        }
    }
}

impl Default for Commands {
    fn default() -> Self {
        ConsoleConfig::default().commands
    }
}

impl ConsoleConfig {
    pub fn path(root: &Path) -> PathBuf {
        root.join("etc/aergo/console.toml")
    }

    /// Reads the file under `root`; a missing file gives the defaults.
    pub fn load(root: &Path) -> Result<ConsoleConfig, ConsoleConfigError> {
        let path = Self::path(root);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ConsoleConfig::default()),
            Err(source) => return Err(ConsoleConfigError::Read { path: path.display().to_string(), source }),
        };
        let config: ConsoleConfig = toml::from_str(&text).map_err(|e| ConsoleConfigError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        for (name, argv) in config.commands.all() {
            if argv.is_empty() {
                return Err(ConsoleConfigError::Invalid {
                    path: path.display().to_string(),
                    reason: format!("commands.{name} is empty"),
                });
            }
        }
        Ok(config)
    }

    pub fn command(&self, op: Op) -> &[String] {
        match op {
            Op::RestartNode => &self.commands.restart_node,
            Op::RestartAgent => &self.commands.restart_agent,
            Op::Reboot => &self.commands.reboot,
            Op::PowerOff => &self.commands.poweroff,
        }
    }
}

impl Commands {
    fn all(&self) -> [(&'static str, &Vec<String>); 4] {
        [
            ("restart_node", &self.restart_node),
            ("restart_agent", &self.restart_agent),
            ("reboot", &self.reboot),
            ("poweroff", &self.poweroff),
        ]
    }
}

/// One record of the agent's audit log (an action Horde asked for), as the Operations screen shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct AuditView {
    pub seq: u64,
    pub at_ms: u64,
    pub action: String,
    pub result: String,
    pub token_fingerprint: String,
    pub client: String,
    pub message: String,
}

/// The Operations screen's state.
#[derive(Debug, Default)]
pub struct OpsState {
    pub selected: usize,
    /// Waiting for `y` to confirm.
    pub confirming: Option<Op>,
    pub running: Option<Op>,
    pub last: Option<(Op, Result<String, String>)>,
    /// The newest records of the agent's audit log (newest first), or why they cannot be read.
    pub audit: Option<Result<Vec<AuditView>, String>>,
}

/// Runs `argv` for `op` on its own thread and reports [`Update::OpFinished`].
pub fn run(op: Op, argv: Vec<String>, events: Sender<Event>) {
    let spawned = std::thread::Builder::new().name("operation".into()).spawn({
        let events = events.clone();
        move || {
            let result = run_command(&argv);
            let _ = events.send(Event::Update(Update::OpFinished(op, result)));
        }
    });
    if let Err(e) = spawned {
        let _ =
            events.send(Event::Update(Update::OpFinished(op, Err(format!("cannot start a thread: {e}")))));
    }
}

fn run_command(argv: &[String]) -> Result<String, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("no command configured".into());
    };
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > OP_TIMEOUT => {
                return Err(format!("{program} is still running after {} s", OP_TIMEOUT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    }
    let output = child.wait_with_output().map_err(|e| format!("reading {program}'s output: {e}"))?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).lines().last().unwrap_or_default().trim().to_string();
    let last = [text(&output.stderr), text(&output.stdout)].into_iter().find(|t| !t.is_empty());
    if output.status.success() {
        Ok(last.unwrap_or_else(|| "done".into()))
    } else {
        Err(format!(
            "{program} failed ({}){}",
            output.status,
            last.map(|l| format!(": {l}")).unwrap_or_default()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_overrides_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ConsoleConfig::load(dir.path()).unwrap(), ConsoleConfig::default());
        std::fs::create_dir_all(dir.path().join("etc/aergo")).unwrap();
        std::fs::write(ConsoleConfig::path(dir.path()), "[commands]\nreboot = [\"/bin/true\"]\n").unwrap();
        let c = ConsoleConfig::load(dir.path()).unwrap();
        assert_eq!(c.command(Op::Reboot), ["/bin/true"]);
        assert_eq!(c.command(Op::PowerOff), ["/sbin/poweroff"]);
        std::fs::write(ConsoleConfig::path(dir.path()), "[commands]\nreboot = []\n").unwrap();
        assert!(ConsoleConfig::load(dir.path())
            .unwrap_err()
            .to_string()
            .contains("commands.reboot is empty"));
        std::fs::write(ConsoleConfig::path(dir.path()), "colour = 1\n").unwrap();
        assert!(ConsoleConfig::load(dir.path()).is_err());
    }

    #[test]
    fn commands_report_success_failure_and_absence() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(run_command(&argv(&["sh", "-c", "echo restarted"])), Ok("restarted".into()));
        let e = run_command(&argv(&["sh", "-c", "echo nope >&2; exit 3"])).unwrap_err();
        assert!(e.contains("exit status: 3") && e.ends_with("nope"), "{e}");
        assert!(run_command(&argv(&["/nonexistent/aergo-ctl"])).unwrap_err().contains("cannot run"));
    }
}
