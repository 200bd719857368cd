//! The Logs screen's data: the node's and the agent's log files, followed as they grow.
//!
//! A tailer thread per file reads what was appended every 250 ms and sends whole lines to the event
//! loop. It starts with the last 64 KiB, reopens the file when it is replaced (rotation: the inode
//! changes) or shrinks (truncation), and reports a missing or unreadable file once per change of error.
//! The view keeps the newest [`MAX_LINES`] lines; filtering by level and searching are done on draw.

use crate::app::{Event, Update};
use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

/// Lines kept in memory for both sources together.
pub const MAX_LINES: usize = 5000;
/// How much of an existing file is read at start.
const START_BYTES: u64 = 64 * 1024;
/// A line longer than this is cut (a log line that long is a bug elsewhere, not something to keep).
const MAX_LINE_BYTES: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogSource {
    Node,
    Agent,
}

impl LogSource {
    pub fn name(self) -> &'static str {
        match self {
            LogSource::Node => "node",
            LogSource::Agent => "agent",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }

    /// The next filter in the cycle the `l` key steps through.
    pub fn next_filter(self) -> Level {
        match self {
            Level::Trace => Level::Debug,
            Level::Debug => Level::Info,
            Level::Info => Level::Warn,
            Level::Warn => Level::Error,
            Level::Error => Level::Trace,
        }
    }

    /// The level of a `tracing` fmt line (`2026-… INFO target: message`); lines without one (a panic
    /// message, a continuation) count as INFO so that they are not hidden by the default filter.
    pub fn of_line(line: &str) -> Level {
        let head: String = line.chars().take(48).collect();
        for (word, level) in [
            ("ERROR", Level::Error),
            ("WARN", Level::Warn),
            ("INFO", Level::Info),
            ("DEBUG", Level::Debug),
            ("TRACE", Level::Trace),
        ] {
            if head.split_whitespace().any(|w| w == word) {
                return level;
            }
        }
        Level::Info
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub source: LogSource,
    pub level: Level,
    pub text: String,
}

/// Which sources the Logs screen shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    Both,
    Only(LogSource),
}

pub struct LogView {
    lines: VecDeque<LogLine>,
    pub shown: Shown,
    pub min_level: Level,
    /// Follow mode: stay at the newest line.
    pub follow: bool,
    /// Lines scrolled up from the newest (only without follow).
    pub scroll: usize,
    pub search: String,
    /// The search text is being typed.
    pub editing_search: bool,
    pub errors: Vec<(LogSource, String)>,
    pub paths: Vec<(LogSource, PathBuf)>,
}

impl Default for LogView {
    fn default() -> Self {
        LogView {
            lines: VecDeque::new(),
            shown: Shown::Both,
            min_level: Level::Info,
            follow: true,
            scroll: 0,
            search: String::new(),
            editing_search: false,
            errors: Vec::new(),
            paths: Vec::new(),
        }
    }
}

impl LogView {
    pub fn push(&mut self, source: LogSource, lines: Vec<String>) {
        self.errors.retain(|(s, _)| *s != source);
        for text in lines {
            let level = Level::of_line(&text);
            self.lines.push_back(LogLine { source, level, text });
            if !self.follow {
                // Keep the same lines on screen while new ones arrive below.
                self.scroll += 1;
            }
        }
        while self.lines.len() > MAX_LINES {
            self.lines.pop_front();
        }
    }

    pub fn set_error(&mut self, source: LogSource, error: String) {
        self.errors.retain(|(s, _)| *s != source);
        self.errors.push((source, error));
    }

    /// The lines that pass the source, level and search filters, oldest first.
    pub fn visible(&self) -> Vec<&LogLine> {
        let needle = self.search.to_lowercase();
        self.lines
            .iter()
            .filter(|l| match self.shown {
                Shown::Both => true,
                Shown::Only(s) => l.source == s,
            })
            .filter(|l| l.level >= self.min_level)
            .filter(|l| needle.is_empty() || l.text.to_lowercase().contains(&needle))
            .collect()
    }

    pub fn total(&self) -> usize {
        self.lines.len()
    }
}

/// Removes terminal escape sequences (colours) and control characters from a log line.
pub fn clean_line(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte (0x40..=0x7e).
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&d) {
                        break;
                    }
                }
            }
            continue;
        }
        if c == '\t' {
            out.push_str("    ");
        } else if !c.is_control() {
            out.push(c);
        }
    }
    out
}

/// Follows `path` until `stop` is set, sending [`Update::Log`] and [`Update::LogError`] events.
pub fn spawn_tailer(
    source: LogSource,
    path: PathBuf,
    events: Sender<Event>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(format!("tail-{}", source.name())).spawn(move || {
        let mut tail =
            Tail { path, file: None, inode: 0, pos: 0, partial: Vec::new(), skipping: false, first: true };
        let mut last_error: Option<String> = None;
        while !stop.load(Ordering::Relaxed) {
            match tail.poll() {
                Ok(lines) => {
                    last_error = None;
                    if !lines.is_empty() && events.send(Event::Update(Update::Log(source, lines))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let text = format!("{}: {e}", tail.path.display());
                    if last_error.as_ref() != Some(&text) {
                        last_error = Some(text.clone());
                        if events.send(Event::Update(Update::LogError(source, text))).is_err() {
                            return;
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    })
}

struct Tail {
    path: PathBuf,
    file: Option<std::fs::File>,
    inode: u64,
    pos: u64,
    partial: Vec<u8>,
    skipping: bool,
    /// The first open starts near the end; later ones (rotation) from the beginning.
    first: bool,
}

impl Tail {
    fn poll(&mut self) -> std::io::Result<Vec<String>> {
        let meta = std::fs::metadata(&self.path)?;
        if self.file.is_none() || meta.ino() != self.inode || meta.len() < self.pos {
            let mut file = std::fs::File::open(&self.path)?;
            let start = if self.first { meta.len().saturating_sub(START_BYTES) } else { 0 };
            file.seek(SeekFrom::Start(start))?;
            self.partial.clear();
            // Skip the line the start cut through.
            self.skipping = start > 0;
            self.file = Some(file);
            self.inode = meta.ino();
            self.pos = start;
            self.first = false;
        }
        let mut lines = Vec::new();
        let Some(file) = self.file.as_mut() else { return Ok(lines) };
        let mut buf = Vec::new();
        let read = file.take(1 << 20).read_to_end(&mut buf)?;
        self.pos += read as u64;
        for byte in buf {
            if byte == b'\n' {
                if !self.skipping {
                    lines.push(clean_line(&String::from_utf8_lossy(&self.partial)));
                }
                self.skipping = false;
                self.partial.clear();
            } else if self.partial.len() < MAX_LINE_BYTES {
                self.partial.push(byte);
            }
        }
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_read_from_tracing_lines() {
        assert_eq!(Level::of_line("2026-11-25T10:00:00.1Z  WARN aergo_node: slow"), Level::Warn);
        assert_eq!(Level::of_line("2026-11-25T10:00:00.1Z ERROR aergo_agent: x"), Level::Error);
        assert_eq!(Level::of_line("thread 'main' panicked at"), Level::Info);
        assert_eq!(clean_line("\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m a\tb"), "2026  INFO a    b");
    }

    #[test]
    fn tail_follows_appends_truncation_and_rotation() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.log");
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, "one").unwrap();
        write!(f, "tw").unwrap();
        let mut tail = Tail {
            path: path.clone(),
            file: None,
            inode: 0,
            pos: 0,
            partial: vec![],
            skipping: false,
            first: true,
        };
        assert_eq!(tail.poll().unwrap(), vec!["one"]);
        writeln!(f, "o").unwrap();
        assert_eq!(tail.poll().unwrap(), vec!["two"]);
        // Truncated in place.
        f.set_len(0).unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        writeln!(f, "three").unwrap();
        assert_eq!(tail.poll().unwrap(), vec!["three"]);
        // Rotated: a new file under the same name.
        std::fs::rename(&path, dir.path().join("node.log.1")).unwrap();
        std::fs::write(&path, "four\n").unwrap();
        assert_eq!(tail.poll().unwrap(), vec!["four"]);
        std::fs::remove_file(&path).unwrap();
        assert!(tail.poll().is_err());
    }

    #[test]
    fn view_filters_by_source_level_and_search() {
        let mut v = LogView::default();
        v.push(LogSource::Node, vec!["x  INFO a: produced block".into(), "x DEBUG a: detail".into()]);
        v.push(LogSource::Agent, vec!["x  WARN b: node slow".into()]);
        assert_eq!(v.visible().len(), 2);
        v.min_level = Level::Warn;
        assert_eq!(v.visible().len(), 1);
        v.min_level = Level::Trace;
        v.shown = Shown::Only(LogSource::Node);
        assert_eq!(v.visible().len(), 2);
        v.search = "PRODUCED".into();
        assert_eq!(v.visible().len(), 1);
    }
}
