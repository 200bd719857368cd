//! The console's state and the one function that changes it, [`App::handle`].
//!
//! Events come from the input thread, the collector, the log tailers and the ticker; handling one may
//! ask for side effects ([`Effect`]) that the event loop carries out (fetch a block, run an operation,
//! quit). Nothing here blocks or touches the network.

use crate::logs::{LogSource, LogView, Shown};
use crate::ops::{ConsoleConfig, Op, OpsState};
use crate::setup::flow::SetupState;
use aergo_api::{BlockView, ChainInfo, NodeInfo, NodeMetrics, PeerView};
use aergo_telemetry::Sample;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::collections::VecDeque;
use std::path::PathBuf;

/// Recent blocks kept for the Blocks screen and the rate sparklines.
pub const MAX_BLOCKS: usize = 300;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Dashboard,
    Blocks,
    Peers,
    Logs,
    Setup,
    Operations,
}

impl Tab {
    pub const ALL: [Tab; 6] =
        [Tab::Dashboard, Tab::Blocks, Tab::Peers, Tab::Logs, Tab::Setup, Tab::Operations];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Dashboard => "Dashboard",
            Tab::Blocks => "Blocks",
            Tab::Peers => "Peers",
            Tab::Logs => "Logs",
            Tab::Setup => "Setup",
            Tab::Operations => "Operations",
        }
    }

    fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

/// Everything the collector learns from the node in one round.
#[derive(Clone, Debug)]
pub struct NodeSnapshot {
    pub chain: ChainInfo,
    pub info: NodeInfo,
    pub metrics: NodeMetrics,
    pub peers: Vec<PeerView>,
    /// Timestamp of the finalized block, for its age.
    pub lib_timestamp_ms: Option<u64>,
}

/// The last value from a service, and whether it is answering now.
#[derive(Clone, Debug)]
pub struct Remote<T> {
    pub value: Option<T>,
    pub error: Option<String>,
    pub updated_ms: u64,
    /// When the current run of failures began.
    pub failing_since_ms: Option<u64>,
}

impl<T> Default for Remote<T> {
    fn default() -> Self {
        Remote { value: None, error: None, updated_ms: 0, failing_since_ms: None }
    }
}

impl<T> Remote<T> {
    pub fn set(&mut self, result: Result<T, String>, now_ms: u64) {
        match result {
            Ok(v) => {
                self.value = Some(v);
                self.error = None;
                self.updated_ms = now_ms;
                self.failing_since_ms = None;
            }
            Err(e) => {
                self.error = Some(e);
                self.failing_since_ms.get_or_insert(now_ms);
            }
        }
    }

    /// Answering now.
    pub fn up(&self) -> bool {
        self.value.is_some() && self.error.is_none()
    }
}

#[derive(Debug)]
pub enum Update {
    Node(Result<Box<NodeSnapshot>, String>),
    /// New blocks (headers only) of a branch, oldest first.
    Blocks(String, Vec<BlockView>),
    /// The branches the node holds besides `main`.
    Branches(Vec<String>),
    /// The repositories the node hosts beside its public chain.
    Repositories(Vec<aergo_api::RepositoryView>),
    BlockDetail(u64, Result<Box<BlockView>, String>),
    Agent(Result<Box<Sample>, String>),
    /// The newest records of the agent's audit log, newest first.
    Audit(Result<Vec<crate::ops::AuditView>, String>),
    Addresses(Vec<String>),
    Log(LogSource, Vec<String>),
    LogError(LogSource, String),
    OpFinished(Op, Result<String, String>),
}

#[derive(Debug)]
pub enum Event {
    Key(KeyEvent),
    Resize,
    /// The clock moved (for ages); carries the time in ms.
    Tick(u64),
    Update(Update),
    /// SIGTERM, SIGHUP or SIGINT.
    Shutdown,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    Quit,
    FetchBlock(u64),
    /// Show another branch's blocks.
    ShowBranch(String),
    RunOp(Op),
}

/// Fixed facts of this console run.
#[derive(Clone, Debug)]
pub struct Settings {
    pub node_url: String,
    pub agent_url: String,
    pub kiosk: bool,
    /// Colours on; off on a serial console or with `NO_COLOR`.
    pub color: bool,
    pub root: PathBuf,
}

pub struct App {
    pub settings: Settings,
    /// `<root>/etc/aergo/console.toml`: what the operations run.
    pub console: ConsoleConfig,
    pub tab: Tab,
    pub now_ms: u64,
    pub node: Remote<NodeSnapshot>,
    pub agent: Remote<Sample>,
    pub addresses: Vec<String>,
    /// Recent blocks, oldest first.
    pub blocks: VecDeque<BlockView>,
    /// Selected block as an offset from the newest (0 = newest); `None` follows the newest.
    pub block_selected: Option<usize>,
    pub block_detail: Option<(u64, Result<BlockView, String>)>,
    /// The branch whose blocks the Blocks screen shows (`main` by default; `b` cycles).
    pub shown_branch: String,
    /// The branches the node holds besides `main`.
    pub held_branches: Vec<String>,
    /// The repositories the node hosts beside its public chain (`docs/repositories.md`).
    pub repositories: Vec<aergo_api::RepositoryView>,
    pub logs: LogView,
    pub setup: SetupState,
    pub ops: OpsState,
    pub locked: bool,
    /// A short note for the status line (why a key did nothing, and the like).
    pub note: Option<String>,
}

impl App {
    pub fn new(settings: Settings, console: ConsoleConfig, now_ms: u64) -> App {
        let setup = SetupState::new(settings.root.clone());
        let tab = if setup.first_boot() { Tab::Setup } else { Tab::Dashboard };
        App {
            settings,
            console,
            tab,
            now_ms,
            node: Remote::default(),
            agent: Remote::default(),
            addresses: Vec::new(),
            blocks: VecDeque::new(),
            block_selected: None,
            block_detail: None,
            shown_branch: "main".into(),
            held_branches: Vec::new(),
            repositories: Vec::new(),
            logs: LogView::default(),
            setup,
            ops: OpsState::default(),
            locked: false,
            note: None,
        }
    }

    /// Applies one event; returns what the event loop must do. Whether to redraw is the caller's call
    /// (every event may change what is shown).
    pub fn handle(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => self.key(key),
            Event::Key(_) | Event::Resize => Vec::new(),
            Event::Tick(now) => {
                self.now_ms = now;
                Vec::new()
            }
            Event::Update(u) => {
                self.update(u);
                Vec::new()
            }
            Event::Shutdown => vec![Effect::Quit],
        }
    }

    fn update(&mut self, update: Update) {
        let now = self.now_ms;
        match update {
            Update::Node(r) => self.node.set(r.map(|b| *b), now),
            Update::Agent(r) => self.agent.set(r.map(|b| *b), now),
            Update::Audit(r) => self.ops.audit = Some(r),
            Update::Branches(held) => self.held_branches = held,
            Update::Repositories(list) => self.repositories = list,
            Update::Blocks(branch, _) if branch != self.shown_branch => {}
            Update::Blocks(_, new) => {
                if let Some(first) = new.first() {
                    // A restarted or different chain: forget what no longer follows.
                    while self.blocks.back().is_some_and(|b| b.height >= first.height) {
                        self.blocks.pop_back();
                    }
                }
                let added = new.len();
                self.blocks.extend(new);
                while self.blocks.len() > MAX_BLOCKS {
                    self.blocks.pop_front();
                }
                // Keep the same block selected while new ones arrive.
                if let Some(sel) = self.block_selected.as_mut() {
                    *sel = (*sel + added).min(self.blocks.len().saturating_sub(1));
                }
            }
            Update::BlockDetail(height, r) => self.block_detail = Some((height, r.map(|b| *b))),
            Update::Addresses(a) => self.addresses = a,
            Update::Log(source, lines) => self.logs.push(source, lines),
            Update::LogError(source, e) => self.logs.set_error(source, e),
            Update::OpFinished(op, r) => {
                self.ops.running = None;
                self.ops.last = Some((op, r));
            }
        }
    }

    /// The block the Blocks screen has selected.
    pub fn selected_block(&self) -> Option<&BlockView> {
        let n = self.blocks.len();
        let offset = self.block_selected.unwrap_or(0);
        n.checked_sub(1 + offset).and_then(|i| self.blocks.get(i))
    }

    /// Whether the current screen is taking text, so that letters and digits are not shortcuts.
    fn typing(&self) -> bool {
        (self.tab == Tab::Setup && (self.setup.editing || self.setup.confirm.is_some()))
            || (self.tab == Tab::Logs && self.logs.editing_search)
            || (self.tab == Tab::Operations && self.ops.confirming.is_some())
    }

    fn key(&mut self, key: KeyEvent) -> Vec<Effect> {
        self.note = None;
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if self.locked {
            if key.code == KeyCode::Enter {
                self.locked = false;
            }
            return Vec::new();
        }
        if ctrl && key.code == KeyCode::Char('l') {
            self.locked = true;
            return Vec::new();
        }
        if ctrl && key.code == KeyCode::Char('c') {
            return self.quit();
        }
        if !self.typing() {
            let tab = match key.code {
                KeyCode::F(n @ 1..=6) => Tab::ALL.get(usize::from(n) - 1).copied(),
                KeyCode::Char(c @ '1'..='6') => Tab::ALL.get(c as usize - '1' as usize).copied(),
                KeyCode::Tab => Some(Tab::ALL[(self.tab.index() + 1) % Tab::ALL.len()]),
                KeyCode::BackTab => Some(Tab::ALL[(self.tab.index() + Tab::ALL.len() - 1) % Tab::ALL.len()]),
                _ => None,
            };
            if let Some(tab) = tab {
                // The Setup draft (a generated key, a new token) survives a look at another screen.
                self.tab = tab;
                return Vec::new();
            }
            if key.code == KeyCode::Char('q') {
                return self.quit();
            }
        }
        match self.tab {
            Tab::Dashboard | Tab::Peers => Vec::new(),
            Tab::Blocks => self.blocks_key(key),
            Tab::Logs => {
                self.logs_key(key);
                Vec::new()
            }
            Tab::Setup => {
                self.setup.handle_key(key);
                Vec::new()
            }
            Tab::Operations => self.ops_key(key),
        }
    }

    fn quit(&mut self) -> Vec<Effect> {
        if self.settings.kiosk {
            self.note = Some("this console runs in kiosk mode: it cannot be quit; Ctrl-L locks it".into());
            Vec::new()
        } else {
            vec![Effect::Quit]
        }
    }

    fn blocks_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let last = self.blocks.len().saturating_sub(1);
        let sel = self.block_selected.unwrap_or(0);
        match key.code {
            KeyCode::Up => self.block_selected = Some((sel + 1).min(last)),
            KeyCode::Down if sel == 0 => self.block_selected = None,
            KeyCode::Down => self.block_selected = Some(sel - 1),
            KeyCode::PageUp => self.block_selected = Some((sel + 10).min(last)),
            KeyCode::PageDown => self.block_selected = sel.checked_sub(10).filter(|s| *s > 0),
            KeyCode::Home | KeyCode::Char('f') => self.block_selected = None,
            KeyCode::Enter => {
                if let Some(b) = self.selected_block() {
                    let h = b.height;
                    self.block_detail = None;
                    return vec![Effect::FetchBlock(h)];
                }
            }
            KeyCode::Esc => self.block_detail = None,
            KeyCode::Char('b') => {
                let all: Vec<String> =
                    std::iter::once("main".to_string()).chain(self.held_branches.iter().cloned()).collect();
                if all.len() == 1 {
                    self.note =
                        Some("this node holds no branch besides main (aergo branch track NAME)".into());
                    return Vec::new();
                }
                let at = all.iter().position(|b| *b == self.shown_branch).map_or(0, |i| (i + 1) % all.len());
                self.shown_branch = all[at].clone();
                self.blocks.clear();
                self.block_selected = None;
                self.block_detail = None;
                return vec![Effect::ShowBranch(self.shown_branch.clone())];
            }
            _ => {}
        }
        Vec::new()
    }

    fn logs_key(&mut self, key: KeyEvent) {
        let logs = &mut self.logs;
        if logs.editing_search {
            match key.code {
                KeyCode::Enter | KeyCode::Esc => logs.editing_search = false,
                KeyCode::Backspace => {
                    logs.search.pop();
                }
                KeyCode::Char(c) if logs.search.len() < 200 => logs.search.push(c),
                _ => {}
            }
            return;
        }
        match key.code {
            KeyCode::Char('/') => {
                logs.editing_search = true;
                logs.search.clear();
            }
            KeyCode::Esc => logs.search.clear(),
            KeyCode::Char('f') => {
                logs.follow = !logs.follow;
                logs.scroll = 0;
            }
            KeyCode::Char('l') => logs.min_level = logs.min_level.next_filter(),
            KeyCode::Char('s') => {
                logs.shown = match logs.shown {
                    Shown::Both => Shown::Only(LogSource::Node),
                    Shown::Only(LogSource::Node) => Shown::Only(LogSource::Agent),
                    Shown::Only(LogSource::Agent) => Shown::Both,
                }
            }
            KeyCode::Up => {
                logs.follow = false;
                logs.scroll += 1;
            }
            KeyCode::PageUp => {
                logs.follow = false;
                logs.scroll += 20;
            }
            KeyCode::Down => logs.scroll = logs.scroll.saturating_sub(1),
            KeyCode::PageDown => logs.scroll = logs.scroll.saturating_sub(20),
            KeyCode::End => {
                logs.follow = true;
                logs.scroll = 0;
            }
            _ => {}
        }
    }

    fn ops_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        if let Some(op) = self.ops.confirming.take() {
            if matches!(key.code, KeyCode::Char('y') | KeyCode::Char('Y')) {
                self.ops.running = Some(op);
                self.ops.last = None;
                return vec![Effect::RunOp(op)];
            }
            self.note = Some("cancelled".into());
            return Vec::new();
        }
        match key.code {
            KeyCode::Up => self.ops.selected = self.ops.selected.saturating_sub(1),
            KeyCode::Down => self.ops.selected = (self.ops.selected + 1).min(Op::ALL.len() - 1),
            KeyCode::Enter if self.ops.running.is_some() => {
                self.note = Some("wait for the running operation to finish".into());
            }
            KeyCode::Enter => self.ops.confirming = Op::ALL.get(self.ops.selected).copied(),
            _ => {}
        }
        Vec::new()
    }

    /// Blocks and transactions per second over the last `buckets` seconds (oldest first), from the
    /// recent blocks' timestamps.
    pub fn rates(&self, buckets: usize) -> (Vec<u64>, Vec<u64>) {
        let mut bps = vec![0u64; buckets];
        let mut tps = vec![0u64; buckets];
        let end = self.now_ms / 1000;
        for b in &self.blocks {
            let sec = b.header.timestamp_ms / 1000;
            if sec > end {
                continue;
            }
            let back = (end - sec) as usize;
            if back < buckets {
                bps[buckets - 1 - back] += 1;
                tps[buckets - 1 - back] += u64::from(b.header.tx_count);
            }
        }
        (bps, tps)
    }
}
