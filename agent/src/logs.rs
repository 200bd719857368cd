//! `GET /v1/logs?source=&after=&since=&limit=` (read token): pages through the box's logs, across
//! their rotation, so that Horde reads them without SSH.
//!
//! Sources: the services' files in the log directory (`/var/log/aergo` on the box) — `node`,
//! `agent`, `time`, `health`, `update`, `rauc`, `ssh`, each `NAME.log` with the copies that
//! `aergo-service` rotates out by renaming (`NAME.log.1`, `NAME.log.2`) — and `system`, the
//! kernel's log (`/dev/kmsg`).
//!
//! A page starts after the cursor `after` (an earlier page's `next`), else at the oldest line kept;
//! `since` (Unix milliseconds) skips lines stamped earlier (a line without a time stamp takes the
//! one before it in the same page). A file cursor is `<inode>-<offset>`: a renamed file keeps its inode, so paging
//! goes on across a rotation; a cursor whose file has been rotated out starts again at the oldest
//! line kept and the page says `gap: true`. A kernel cursor is the record's sequence number. Lines
//! lose their terminal colour codes and are cut at 4 KiB; a page holds at most `limit` lines
//! (≤ 1000) and 1 MiB.

use std::io::{BufRead, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The services whose log files the agent serves.
pub const FILE_SOURCES: [&str; 7] = ["node", "agent", "time", "health", "update", "rauc", "ssh"];
/// Rotated copies `aergo-service` keeps.
const ROTATED: usize = 2;
pub const MAX_LINES: usize = 1000;
const MAX_LINE_BYTES: usize = 4096;
const MAX_PAGE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct LogLine {
    /// Unix milliseconds of the line's time stamp (or of the last stamped line before it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<u64>,
    pub text: String,
    /// The cursor just after this line.
    pub cursor: String,
}

#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct Page {
    pub source: String,
    pub lines: Vec<LogLine>,
    /// Where the next page starts (the last line's cursor, or `after` when nothing was new).
    pub next: String,
    /// More lines are there after this page.
    pub more: bool,
    /// The cursor's file was rotated out: lines between it and this page are gone.
    pub gap: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogsError {
    #[error("unknown log source {0:?}: use one of node, agent, time, health, update, rauc, ssh, system")]
    Source(String),
    #[error("cursor {0:?} is not one this endpoint gave (after= takes a page's next)")]
    Cursor(String),
    #[error("cannot read the log: {0}")]
    Io(String),
}

/// A request for one page.
pub struct Query<'a> {
    pub source: &'a str,
    pub after: Option<&'a str>,
    pub since_ms: Option<u64>,
    pub limit: usize,
}

/// Reads one page of `q.source` (files under `dir`; the kernel's log from `kmsg`).
pub fn page(dir: &Path, kmsg: &Path, q: &Query<'_>) -> Result<Page, LogsError> {
    let limit = q.limit.clamp(1, MAX_LINES);
    if q.source == "system" {
        return kernel_page(kmsg, q, limit);
    }
    if !FILE_SOURCES.contains(&q.source) {
        return Err(LogsError::Source(q.source.to_string()));
    }
    file_page(dir, q, limit)
}

/// The files of `source`, oldest first, with their inodes (missing ones left out).
fn files_of(dir: &Path, source: &str) -> Vec<(PathBuf, u64)> {
    let base = dir.join(format!("{source}.log"));
    let mut paths: Vec<PathBuf> =
        (1..=ROTATED).rev().map(|i| PathBuf::from(format!("{}.{i}", base.display()))).collect();
    paths.push(base);
    paths.into_iter().filter_map(|p| std::fs::metadata(&p).ok().map(|m| (p, m.ino()))).collect()
}

fn parse_file_cursor(cursor: &str) -> Result<(u64, u64), LogsError> {
    let bad = || LogsError::Cursor(cursor.to_string());
    let (ino, off) = cursor.split_once('-').ok_or_else(bad)?;
    Ok((ino.parse().map_err(|_| bad())?, off.parse().map_err(|_| bad())?))
}

fn file_page(dir: &Path, q: &Query<'_>, limit: usize) -> Result<Page, LogsError> {
    let files = files_of(dir, q.source);
    // Where to start: the file holding the cursor's inode, at its offset.
    let (mut index, mut offset, mut gap) = (0, 0, false);
    if let Some(after) = q.after {
        let (ino, off) = parse_file_cursor(after)?;
        match files.iter().position(|(_, i)| *i == ino) {
            Some(i) => (index, offset) = (i, off),
            None => gap = true,
        }
    }
    let mut lines = Vec::new();
    let mut bytes = 0;
    let mut last_time = None;
    let mut next = q.after.unwrap_or_default().to_string();
    let mut more = false;
    'files: for (path, ino) in files.iter().skip(index) {
        let mut file = match std::fs::File::open(path) {
            Ok(f) => f,
            // Rotated away between the listing and the open: its lines are in the next name.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(LogsError::Io(format!("{}: {e}", path.display()))),
        };
        let len = file.metadata().map_err(|e| LogsError::Io(e.to_string()))?.len();
        // A file shorter than the cursor was truncated: read it from its start.
        let start = if offset <= len { offset } else { 0 };
        file.seek(SeekFrom::Start(start)).map_err(|e| LogsError::Io(e.to_string()))?;
        let mut reader = std::io::BufReader::new(file.take(len - start));
        let mut pos = start;
        let mut raw = Vec::new();
        loop {
            raw.clear();
            let n = reader.read_until(b'\n', &mut raw).map_err(|e| LogsError::Io(e.to_string()))?;
            // A last line still being written (no newline yet) waits for the next page.
            if n == 0 || raw.last() != Some(&b'\n') {
                break;
            }
            pos += n as u64;
            let text = clean(&raw);
            if let Some(t) = time_of(&text) {
                last_time = Some(t);
            }
            if q.since_ms.is_some_and(|since| last_time.is_none_or(|t| t < since)) {
                next = format!("{ino}-{pos}");
                continue;
            }
            if lines.len() == limit || bytes + text.len() > MAX_PAGE_BYTES {
                more = true;
                break 'files;
            }
            bytes += text.len();
            next = format!("{ino}-{pos}");
            lines.push(LogLine { time_ms: last_time, text, cursor: next.clone() });
        }
        offset = 0;
    }
    Ok(Page { source: q.source.to_string(), lines, next, more, gap })
}

/// Without terminal colour codes, as text, cut at [`MAX_LINE_BYTES`].
fn clean(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.trim_end_matches(['\n', '\r']).chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            // CSI: parameters up to a final byte in @..~.
            chars.next();
            for d in chars.by_ref() {
                if ('@'..='~').contains(&d) {
                    break;
                }
            }
            continue;
        }
        if out.len() + c.len_utf8() > MAX_LINE_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

/// The Unix milliseconds of an RFC 3339 time stamp that starts the line (`2026-12-05T07:47:09.95Z`,
/// `2026-12-05T07:47:09+00:00`), if any.
pub fn time_of(line: &str) -> Option<u64> {
    let stamp = line.split_whitespace().next()?;
    let b = stamp.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| stamp.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &stamp[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        let ms: String = frac[..digits].chars().chain("000".chars()).take(3).collect();
        millis = ms.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = (rest.get(1..3)?.parse::<i64>().ok()?, rest.get(4..6)?.parse::<i64>().ok()?);
            sign * (h * 3600 + m * 60)
        }
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    u64::try_from(secs * 1000 + millis).ok()
}

/// One page of the kernel's log: `/dev/kmsg` records (`prio,seq,usec,flags;text`), each its own
/// read; the cursor is the record's sequence number.
fn kernel_page(kmsg: &Path, q: &Query<'_>, limit: usize) -> Result<Page, LogsError> {
    let after: Option<u64> = match q.after {
        Some(c) => Some(c.parse().map_err(|_| LogsError::Cursor(c.to_string()))?),
        None => None,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(kmsg)
        .map_err(|e| LogsError::Io(format!("{}: {e}", kmsg.display())))?;
    let boot_ms = boot_time_ms();
    let mut lines = Vec::new();
    let mut bytes = 0;
    let mut next = q.after.unwrap_or_default().to_string();
    let mut more = false;
    let mut gap = false;
    let mut first = true;
    let mut buf = vec![0u8; 8192];
    let mut file = file;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // The oldest records were overwritten while reading: go on with what is there.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                gap = true;
                continue;
            }
            Err(e) => return Err(LogsError::Io(e.to_string())),
        };
        let record = String::from_utf8_lossy(&buf[..n]);
        let Some((head, text)) = record.split_once(';') else { continue };
        let mut fields = head.split(',');
        let (_prio, seq, usec) = (fields.next(), fields.next(), fields.next());
        let (Some(seq), Some(usec)) =
            (seq.and_then(|s| s.parse::<u64>().ok()), usec.and_then(|u| u.parse::<u64>().ok()))
        else {
            continue;
        };
        if first {
            // The cursor's record is older than the oldest kept: some were overwritten.
            gap |= after.is_some_and(|a| a + 1 < seq);
            first = false;
        }
        if after.is_some_and(|a| seq <= a) {
            continue;
        }
        let time_ms = boot_ms.map(|b| b + usec / 1000);
        if q.since_ms.is_some_and(|since| time_ms.is_none_or(|t| t < since)) {
            next = seq.to_string();
            continue;
        }
        // The message is the first line; continuation lines (" KEY=value") are dropped.
        let text = clean(text.lines().next().unwrap_or_default().as_bytes());
        if lines.len() == limit || bytes + text.len() > MAX_PAGE_BYTES {
            more = true;
            break;
        }
        bytes += text.len();
        next = seq.to_string();
        lines.push(LogLine { time_ms, text, cursor: next.clone() });
    }
    Ok(Page { source: "system".into(), lines, next, more, gap })
}

/// When the system booted, in Unix milliseconds (the kernel log's times count from it).
fn boot_time_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    Some(btime * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q<'a>(source: &'a str, after: Option<&'a str>, since_ms: Option<u64>, limit: usize) -> Query<'a> {
        Query { source, after, since_ms, limit }
    }

    #[test]
    fn pages_go_on_across_a_rotation_and_a_lost_file_is_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let log = d.join("node.log");
        let kmsg = d.join("kmsg");
        std::fs::write(
            &log,
            "2026-12-05T07:00:00.000Z \u{1b}[32m INFO\u{1b}[0m one\n2026-12-05T07:00:01Z two\n  continued\n",
        )
        .unwrap();
        let p = page(d, &kmsg, &q("node", None, None, 2)).unwrap();
        assert_eq!(
            p.lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            ["2026-12-05T07:00:00.000Z  INFO one", "2026-12-05T07:00:01Z two"]
        );
        assert!(p.more && !p.gap);
        assert_eq!(p.lines[0].time_ms, Some(1_796_454_000_000));
        // Rotated (renamed) and a new file started: the next page goes on in the renamed file,
        // then the new one. A line still being written waits.
        std::fs::rename(&log, d.join("node.log.1")).unwrap();
        std::fs::write(&log, "2026-12-05T08:00:00+01:00 three\npartial").unwrap();
        let p2 = page(d, &kmsg, &q("node", Some(&p.next), None, 10)).unwrap();
        assert_eq!(
            p2.lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            ["  continued", "2026-12-05T08:00:00+01:00 three"]
        );
        // Unstamped, and the page starts on it: no time (the stamp before it is on the last page).
        assert_eq!(p2.lines[0].time_ms, None);
        assert_eq!(p2.lines[1].time_ms, Some(1_796_454_000_000));
        assert!(!p2.more);
        // Nothing new: the same cursor again.
        let p3 = page(d, &kmsg, &q("node", Some(&p2.next), None, 10)).unwrap();
        assert!(p3.lines.is_empty() && p3.next == p2.next);
        // since= skips older lines.
        let p4 = page(d, &kmsg, &q("node", None, Some(1_796_454_000_500), 10)).unwrap();
        assert_eq!(p4.lines.len(), 2, "{p4:?}");
        // The cursor's file rotated out of the kept copies: from the oldest kept, with a gap.
        std::fs::remove_file(d.join("node.log.1")).unwrap();
        let p5 = page(d, &kmsg, &q("node", Some(&p.next), None, 10)).unwrap();
        assert!(p5.gap && p5.lines.len() == 1);
        // Bad input: a clear error.
        assert!(matches!(page(d, &kmsg, &q("nginx", None, None, 1)), Err(LogsError::Source(_))));
        assert!(matches!(page(d, &kmsg, &q("node", Some("x"), None, 1)), Err(LogsError::Cursor(_))));
        assert!(matches!(page(d, &kmsg, &q("system", Some("x"), None, 1)), Err(LogsError::Cursor(_))));
    }

    #[test]
    fn time_stamps_are_read() {
        assert_eq!(time_of("1970-01-01T00:00:01Z x"), Some(1000));
        assert_eq!(time_of("2026-12-05T07:00:00.5Z"), Some(1_796_454_000_500));
        assert_eq!(time_of("2026-12-05T09:00:00+02:00"), Some(1_796_454_000_000));
        assert_eq!(time_of("firewall: loaded"), None);
        assert_eq!(time_of("2026-13-05T07:00:00Z"), None);
    }

    #[test]
    fn long_lines_are_cut_and_colours_dropped() {
        let long = "x".repeat(10_000);
        assert_eq!(clean(long.as_bytes()).len(), MAX_LINE_BYTES);
        assert_eq!(clean(b"\x1b[2mdim\x1b[0m plain\r\n"), "dim plain");
    }
}
