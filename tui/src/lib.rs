//! `aergo-console`: the operator console on the appliance's screen (tty1, the serial port, or SSH).
//!
//! # Bird's-eye view
//! One event loop owns an [`app::App`]; everything that happens arrives as an [`app::Event`]:
//!
//! ```text
//!  input thread (crossterm keys, resizes) ──┐
//!  collector (tokio, own thread): node RPC  ├──► mpsc ──► App::handle(event) ──► Vec<Effect>
//!     every 1 s, agent /v1/telemetry every  │                │                      │
//!     2 s, block details on request, IPs    │                ▼                      ▼
//!  log tailers (one thread per log file) ───┤        terminal.draw(ui::draw)   collector / ops runner
//!  ticker (1 s, for ages) ──────────────────┘        (reads &App, changes nothing)
//! ```
//!
//! - [`app`]: the state of every screen and the only place it changes (`App::handle`).
//! - [`collect`]: talks to the node (the RPC client of `aergo_api`) and the agent (HTTP with the
//!   bearer token) off the UI thread, with timeouts; a slow or dead service shows as unreachable and is
//!   retried, the screen never waits for it.
//! - [`logs`]: follows the node's and the agent's log files (rotation and truncation included).
//! - [`setup`]: the settings a box is configured with (the same shape as the appliance's
//!   `provision.toml`), the files they turn into under `--root`, atomic apply with a kept last good copy,
//!   revert, and the key/token material the Setup screen creates.
//! - [`ops`]: restart node or agent, reboot, shut down — commands from `<root>/etc/aergo/console.toml`.
//! - [`ui`]: drawing, one module per screen; monochrome-safe (every state is also spelled out).
//!
//! Drawing is a pure function of the state, so screens are tested by drawing fixture states into
//! ratatui's `TestBackend` (see `tests/snapshots.rs`).

pub mod app;
pub mod collect;
pub mod fixture;
pub mod logs;
pub mod ops;
pub mod setup;
pub mod ui;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
