//! The block log: append-only segment files of checksummed records.
//!
//! ```text
//! DIR/00000000.seg, DIR/00000001.seg, …   (a new segment once the active one passes `segment_bytes`)
//! record = magic "AEB1" | payload length u32 LE | height u64 LE | crc32c u32 LE | payload
//!          crc32c covers length, height and payload
//! ```
//!
//! Appends go through io_uring: a write linked to an `fdatasync`, submitted together, so a block is on
//! disk before [`BlockLog::append`] returns (one sync per block, never per transaction). Where io_uring
//! is not allowed (`kernel.io_uring_disabled`, seccomp) the same records are written with `pwrite` +
//! `fdatasync`, and the log says so once.
//!
//! Recovery ([`BlockLog::open`]) walks the segments, checking magic, checksums and that heights follow
//! one another. A damaged record at the very end of the last segment, beyond what the caller has
//! committed, is what a crash in the middle of an append leaves: it is cut off. Damage anywhere else —
//! or in a record the caller had already committed — is refused with the file and offset, never dropped
//! silently. Records beyond the committed position are returned so that the caller replays them.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: [u8; 4] = *b"AEB1";
const HEADER_LEN: usize = 20;
/// Largest record accepted on read; anything larger is corruption.
pub const MAX_RECORD_BYTES: u32 = 512 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("block log i/o on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("block log {path} is corrupt at offset {offset}: {reason}")]
    Corrupt { path: String, offset: u64, reason: String },
    #[error(
        "block log {path} is damaged at offset {offset} in the committed block at height {height}: {reason}; \
         restore the data directory from a backup or resync"
    )]
    CommittedDamaged { path: String, offset: u64, height: u64, reason: String },
    #[error(
        "block log in {dir} ends before the committed block at height {height}; it was truncated or replaced"
    )]
    Missing { dir: String, height: u64 },
    #[error("block log in {dir}: segment {missing:08}.seg is missing")]
    SegmentGap { dir: String, missing: u32 },
    #[error("block log append: height {got} does not follow {expected}")]
    Height { expected: u64, got: u64 },
}

/// Where a record lives.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, borsh::BorshSerialize, borsh::BorshDeserialize,
)]
pub struct RecordPos {
    pub segment: u32,
    pub offset: u64,
    /// Payload length.
    pub len: u32,
}

impl RecordPos {
    /// Position just past this record.
    fn end(&self) -> (u32, u64) {
        (self.segment, self.offset + HEADER_LEN as u64 + self.len as u64)
    }
}

/// How much of the log to verify on open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Verify {
    /// Every checksum of every segment (reads the whole log once).
    #[default]
    Full,
    /// Checksums from the last committed record on; headers only before it.
    Tail,
}

#[derive(Clone, Debug)]
pub struct LogOptions {
    pub segment_bytes: u64,
    pub use_io_uring: bool,
    pub verify: Verify,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions { segment_bytes: 256 * 1024 * 1024, use_io_uring: true, verify: Verify::Full }
    }
}

/// What the caller had committed (from its index), so that open can tell torn from damaged.
#[derive(Clone, Copy, Debug)]
pub struct Committed {
    pub height: u64,
    pub pos: RecordPos,
}

/// What open found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Records after the committed one, in order: `(height, position)`.
    pub uncommitted: Vec<(u64, RecordPos)>,
    /// A torn tail that was cut off: `(file, offset, bytes removed)`.
    pub truncated: Option<(String, u64, u64)>,
    /// Height of the last record in the log.
    pub last_height: Option<u64>,
}

enum Writer {
    Uring(Box<io_uring::IoUring>),
    Plain,
}

/// The writable log. One writer; readers use [`LogReader`].
pub struct BlockLog {
    dir: PathBuf,
    opts: LogOptions,
    active_id: u32,
    active: File,
    active_len: u64,
    next_height: Option<u64>,
    writer: Writer,
    reader: LogReader,
}

fn segment_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:08}.seg"))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io { path: path.display().to_string(), source }
}

fn checksum(len: u32, height: u64, payload: &[u8]) -> u32 {
    let mut crc = crc32c::crc32c(&len.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &height.to_le_bytes());
    crc32c::crc32c_append(crc, payload)
}

fn encode_header(height: u64, payload: &[u8]) -> [u8; HEADER_LEN] {
    let len = payload.len() as u32;
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..16].copy_from_slice(&height.to_le_bytes());
    h[16..20].copy_from_slice(&checksum(len, height, payload).to_le_bytes());
    h
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

fn list_segments(dir: &Path) -> Result<Vec<u32>, LogError> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".seg") {
            if let Ok(id) = stem.parse::<u32>() {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    for (expected, id) in ids.iter().enumerate() {
        if *id != expected as u32 {
            return Err(LogError::SegmentGap { dir: dir.display().to_string(), missing: expected as u32 });
        }
    }
    Ok(ids)
}

/// A problem found while scanning one record.
enum ScanFault {
    /// The record runs past the end of the file or its checksum fails with nothing after it.
    Tail(String),
    /// Anything else.
    Damage(String),
}

impl BlockLog {
    /// Opens (or creates) the log in `dir`. `committed` is the last record the caller's index knows.
    pub fn open(
        dir: &Path,
        opts: LogOptions,
        committed: Option<Committed>,
    ) -> Result<(BlockLog, Recovery), LogError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut ids = list_segments(dir)?;
        if ids.is_empty() {
            File::create(segment_path(dir, 0)).map_err(io_err(dir))?;
            sync_dir(dir)?;
            ids.push(0);
        }
        let committed_end = committed.map(|c| c.pos.end());
        let mut recovery = Recovery::default();
        let mut prev_height: Option<u64> = None;
        let last_id = *ids.last().unwrap_or(&0);
        let mut seen_committed = committed.is_none();

        for &id in &ids {
            let path = segment_path(dir, id);
            let full = opts.verify == Verify::Full || committed.is_none_or(|c| id >= c.pos.segment);
            let mut file = OpenOptions::new().read(true).write(true).open(&path).map_err(io_err(&path))?;
            let file_len = file.metadata().map_err(io_err(&path))?.len();
            let mut offset = 0u64;
            let mut reader = std::io::BufReader::with_capacity(1 << 20, &mut file);
            while offset < file_len {
                let scanned = scan_record(&mut reader, offset, file_len, full, prev_height);
                match scanned {
                    Ok((height, len)) => {
                        let pos = RecordPos { segment: id, offset, len };
                        if committed.is_none() {
                            recovery.uncommitted.push((height, pos));
                        } else if let Some(c) = committed {
                            if c.pos == pos {
                                if c.height != height {
                                    return Err(LogError::Corrupt {
                                        path: path.display().to_string(),
                                        offset,
                                        reason: format!(
                                            "index says height {}, record says {height}",
                                            c.height
                                        ),
                                    });
                                }
                                seen_committed = true;
                            } else if committed_end.is_some_and(|end| (id, offset) >= end) {
                                recovery.uncommitted.push((height, pos));
                            }
                        }
                        prev_height = Some(height);
                        offset += HEADER_LEN as u64 + len as u64;
                    }
                    Err(fault) => {
                        let (reason, tail) = match fault {
                            ScanFault::Tail(r) => (r, true),
                            ScanFault::Damage(r) => (r, false),
                        };
                        let path_s = path.display().to_string();
                        let beyond_committed = committed_end.is_none_or(|end| (id, offset) >= end);
                        if !beyond_committed {
                            return Err(LogError::CommittedDamaged {
                                path: path_s,
                                offset,
                                height: prev_height.map_or(0, |h| h + 1),
                                reason,
                            });
                        }
                        if !(tail && id == last_id) {
                            return Err(LogError::Corrupt { path: path_s, offset, reason });
                        }
                        drop(reader);
                        tracing::warn!(file = %path_s, offset, removed = file_len - offset, %reason,
                            "block log: cutting off a torn record left by an interrupted append");
                        file.set_len(offset).map_err(io_err(&path))?;
                        file.sync_all().map_err(io_err(&path))?;
                        recovery.truncated = Some((path_s, offset, file_len - offset));
                        break;
                    }
                }
            }
        }
        if !seen_committed {
            let height = committed.map_or(0, |c| c.height);
            return Err(LogError::Missing { dir: dir.display().to_string(), height });
        }
        recovery.last_height = prev_height;

        let active_path = segment_path(dir, last_id);
        let active =
            OpenOptions::new().read(true).write(true).open(&active_path).map_err(io_err(&active_path))?;
        let active_len = active.metadata().map_err(io_err(&active_path))?.len();
        let writer = if opts.use_io_uring {
            match io_uring::IoUring::new(8) {
                Ok(ring) => Writer::Uring(Box::new(ring)),
                Err(e) => {
                    tracing::warn!(error = %e, "io_uring is not available; the block log uses pwrite + fdatasync");
                    Writer::Plain
                }
            }
        } else {
            Writer::Plain
        };
        let log = BlockLog {
            dir: dir.to_path_buf(),
            opts,
            active_id: last_id,
            active,
            active_len,
            next_height: prev_height.map(|h| h + 1),
            writer,
            reader: LogReader::new(dir),
        };
        Ok((log, recovery))
    }

    /// Whether appends go through io_uring.
    pub fn uses_io_uring(&self) -> bool {
        matches!(self.writer, Writer::Uring(_))
    }

    pub fn reader(&self) -> LogReader {
        self.reader.clone()
    }

    /// Appends one record and makes it durable before returning.
    pub fn append(&mut self, height: u64, payload: &[u8]) -> Result<RecordPos, LogError> {
        if let Some(expected) = self.next_height {
            if height != expected {
                return Err(LogError::Height { expected, got: height });
            }
        }
        if self.active_len > 0
            && self.active_len + (HEADER_LEN + payload.len()) as u64 > self.opts.segment_bytes
        {
            self.roll()?;
        }
        let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
        buf.extend_from_slice(&encode_header(height, payload));
        buf.extend_from_slice(payload);
        let offset = self.active_len;
        let path = segment_path(&self.dir, self.active_id);
        match &mut self.writer {
            Writer::Uring(ring) => {
                uring_write_sync(ring, &self.active, &buf, offset).map_err(io_err(&path))?
            }
            Writer::Plain => {
                self.active.write_all_at(&buf, offset).map_err(io_err(&path))?;
                self.active.sync_data().map_err(io_err(&path))?;
            }
        }
        self.active_len += buf.len() as u64;
        self.next_height = Some(height + 1);
        Ok(RecordPos { segment: self.active_id, offset, len: payload.len() as u32 })
    }

    fn roll(&mut self) -> Result<(), LogError> {
        let id = self.active_id + 1;
        let path = segment_path(&self.dir, id);
        let file =
            OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(io_err(&path))?;
        sync_dir(&self.dir)?;
        self.active = file;
        self.active_id = id;
        self.active_len = 0;
        Ok(())
    }
}

/// Writes `buf` at `offset` and `fdatasync`s, as one linked io_uring submission.
fn uring_write_sync(
    ring: &mut io_uring::IoUring,
    file: &File,
    buf: &[u8],
    offset: u64,
) -> std::io::Result<()> {
    use io_uring::{opcode, squeue, types};
    let fd = types::Fd(file.as_raw_fd());
    let mut written = 0usize;
    while written < buf.len() {
        let rest = &buf[written..];
        let write = opcode::Write::new(fd, rest.as_ptr(), rest.len() as u32)
            .offset(offset + written as u64)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(1);
        let sync = opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build().user_data(2);
        // SAFETY: `rest` outlives the submission: we wait for both completions below before returning
        // or touching the buffer again, and the entries reference only `rest` and an open fd.
        unsafe {
            let mut sq = ring.submission();
            sq.push(&write).map_err(|_| std::io::Error::other("io_uring submission queue full"))?;
            sq.push(&sync).map_err(|_| std::io::Error::other("io_uring submission queue full"))?;
        }
        ring.submit_and_wait(2)?;
        let mut write_res = None;
        let mut sync_res = None;
        for cqe in ring.completion() {
            match cqe.user_data() {
                1 => write_res = Some(cqe.result()),
                _ => sync_res = Some(cqe.result()),
            }
        }
        let n = write_res.ok_or_else(|| std::io::Error::other("io_uring lost a write completion"))?;
        if n < 0 {
            return Err(std::io::Error::from_raw_os_error(-n));
        }
        written += n as usize;
        match sync_res {
            Some(r) if r < 0 && r != -libc::ECANCELED => return Err(std::io::Error::from_raw_os_error(-r)),
            // A short write cancels the linked sync; the loop writes the rest and syncs again.
            _ => {}
        }
    }
    Ok(())
}

fn scan_record(
    reader: &mut impl Read,
    offset: u64,
    file_len: u64,
    verify: bool,
    prev_height: Option<u64>,
) -> Result<(u64, u32), ScanFault> {
    let remaining = file_len - offset;
    if remaining < HEADER_LEN as u64 {
        return Err(ScanFault::Tail(format!("{remaining} bytes left, less than a record header")));
    }
    let mut header = [0u8; HEADER_LEN];
    reader.read_exact(&mut header).map_err(|e| ScanFault::Damage(format!("read failed: {e}")))?;
    if header[0..4] != MAGIC {
        // Zeros or garbage at the very end (a torn header) look like this too; only at the end is it a tail.
        let msg = "bad record magic".to_string();
        return Err(if header.iter().all(|&b| b == 0) {
            ScanFault::Tail(msg)
        } else {
            ScanFault::Damage(msg)
        });
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let height = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
    let crc = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
    if len > MAX_RECORD_BYTES {
        return Err(ScanFault::Damage(format!("record length {len} is over the limit")));
    }
    let end = offset + HEADER_LEN as u64 + len as u64;
    if end > file_len {
        return Err(ScanFault::Tail(format!("record of {len} bytes runs past the end of the file")));
    }
    let at_end = end == file_len;
    if verify {
        let mut payload = vec![0u8; len as usize];
        reader.read_exact(&mut payload).map_err(|e| ScanFault::Damage(format!("read failed: {e}")))?;
        if checksum(len, height, &payload) != crc {
            let msg = format!("checksum mismatch in the record for height {height}");
            return Err(if at_end { ScanFault::Tail(msg) } else { ScanFault::Damage(msg) });
        }
    } else {
        std::io::copy(&mut reader.take(len as u64), &mut std::io::sink())
            .map_err(|e| ScanFault::Damage(format!("read failed: {e}")))?;
    }
    if let Some(prev) = prev_height {
        if height != prev + 1 {
            return Err(ScanFault::Damage(format!("record height {height} does not follow {prev}")));
        }
    }
    Ok((height, len))
}

/// Reads records by position; cheap to clone and safe to share between threads.
#[derive(Clone)]
pub struct LogReader {
    dir: PathBuf,
    files: Arc<Mutex<HashMap<u32, Arc<File>>>>,
}

impl LogReader {
    /// A reader over the log in `dir` (no recovery is run; use [`BlockLog::open`] for that).
    pub fn new(dir: &Path) -> LogReader {
        LogReader { dir: dir.to_path_buf(), files: Arc::default() }
    }

    fn file(&self, segment: u32) -> Result<Arc<File>, LogError> {
        let mut files = self.files.lock();
        if let Some(f) = files.get(&segment) {
            return Ok(f.clone());
        }
        let path = segment_path(&self.dir, segment);
        let f = Arc::new(File::open(&path).map_err(io_err(&path))?);
        files.insert(segment, f.clone());
        Ok(f)
    }

    /// Reads and verifies the record at `pos`, returning its height and payload.
    pub fn read(&self, pos: RecordPos) -> Result<(u64, Vec<u8>), LogError> {
        let file = self.file(pos.segment)?;
        let path = segment_path(&self.dir, pos.segment);
        let mut buf = vec![0u8; HEADER_LEN + pos.len as usize];
        file.read_exact_at(&mut buf, pos.offset).map_err(io_err(&path))?;
        let corrupt = |reason: String| LogError::Corrupt {
            path: path.display().to_string(),
            offset: pos.offset,
            reason,
        };
        if buf[0..4] != MAGIC {
            return Err(corrupt("bad record magic".into()));
        }
        let len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if len != pos.len {
            return Err(corrupt(format!("record length {len}, index says {}", pos.len)));
        }
        let height = u64::from_le_bytes(buf[8..16].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes([buf[16], buf[17], buf[18], buf[19]]);
        let payload = buf.split_off(HEADER_LEN);
        if checksum(len, height, &payload) != crc {
            return Err(corrupt(format!("checksum mismatch in the record for height {height}")));
        }
        Ok((height, payload))
    }
}

#[cfg(test)]
mod tests;
