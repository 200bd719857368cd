//! The block log: append-only segment files of checksummed records.
//!
//! ```text
//! DIR/00000000.seg, DIR/00000001.seg, …   (preallocated, zero-filled; a new one when a record does not fit)
//! record = magic "AEB1" | payload length u32 LE | height u64 LE | crc32c u32 LE | payload
//!          crc32c covers length, height and payload; records follow each other without gaps,
//!          and the first all-zero header marks the end of a segment's data
//! ```
//!
//! Why preallocated: a block must be on disk before it counts, so every append is followed by a data
//! sync. Appending to a growing file makes each sync a metadata (journal) commit as well; overwriting
//! blocks that already exist does not, which about halves the cost per block on ext4. The next segment
//! is zero-filled in a background thread while the current one fills up.
//!
//! Appends go through io_uring as `O_DIRECT` writes flagged `RWF_DSYNC`: the write is issued from the
//! submitting thread and completes only once durable, one system call per block. Direct I/O needs
//! 4 KiB-aligned writes, so the partly filled last 4 KiB block is kept in memory and written again with
//! each append (its committed bytes are rewritten unchanged, so a torn write cannot damage them). Where
//! `O_DIRECT` is refused (tmpfs) io_uring writes through the page cache with a linked `fdatasync`; where
//! io_uring itself is refused (`kernel.io_uring_disabled`, seccomp) the log uses `pwrite` +
//! `fdatasync`, and says so once.
//!
//! Recovery ([`BlockLog::open`]) walks the segments, checking magic, checksums, that heights follow
//! one another and that nothing but zeros follows the data. Records are acknowledged one at a time, in
//! order, so anything wrong at the end of the *last* segment, beyond what the caller committed, is an
//! interrupted append: it is cleared (and logged). Damage anywhere else — in an earlier segment, or in a
//! record the caller had committed — is refused with the file and offset, never dropped silently.
//! Records beyond the committed position are returned so that the caller replays them.

pub use aergo_config::Verify;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: [u8; 4] = *b"AEB1";
const HEADER_LEN: usize = 20;
/// Alignment of direct writes (the largest logical block size in common use).
const ALIGN: u64 = 4096;
/// Largest record accepted on read; anything larger is corruption.
pub const MAX_RECORD_BYTES: u32 = 512 * 1024 * 1024;
const PREPARED_NAME: &str = "next.tmp";

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

#[derive(Clone, Debug)]
pub struct LogOptions {
    /// Size of a segment file (a larger record gets a segment of its own size).
    pub segment_bytes: u64,
    pub use_io_uring: bool,
    pub verify: Verify,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions { segment_bytes: 64 * 1024 * 1024, use_io_uring: true, verify: Verify::Full }
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
    /// An interrupted append that was cleared: `(file, offset, bytes cleared)`.
    pub truncated: Option<(String, u64, u64)>,
    /// Height of the last record in the log.
    pub last_height: Option<u64>,
}

/// How appends reach the disk.
enum Writer {
    /// io_uring, `O_DIRECT` + `RWF_DSYNC` on `direct` (an fd of the active segment).
    UringDirect { ring: Box<io_uring::IoUring>, direct: File },
    /// io_uring through the page cache, write linked to `fdatasync`.
    UringBuffered(Box<io_uring::IoUring>),
    /// `pwrite` + `fdatasync`.
    Plain,
}

/// The writable log. One writer; readers use [`LogReader`].
pub struct BlockLog {
    dir: PathBuf,
    opts: LogOptions,
    active_id: u32,
    active: File,
    active_size: u64,
    /// End of the data in the active segment.
    data_end: u64,
    /// The bytes of the partly filled last aligned block, `[align_down(data_end), data_end)`.
    tail: Vec<u8>,
    next_height: Option<u64>,
    writer: Writer,
    reader: LogReader,
    /// The next segment, zero-filled in the background.
    preparing: Option<Prepared>,
}

enum Prepared {
    Running(u64, std::thread::JoinHandle<std::io::Result<()>>),
    Ready(u64),
}

impl Prepared {
    /// Waits for the zero-fill; the size of the ready segment, if it worked.
    fn wait(self) -> Option<u64> {
        match self {
            Prepared::Ready(size) => Some(size),
            Prepared::Running(size, t) => matches!(t.join(), Ok(Ok(()))).then_some(size),
        }
    }
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

fn align_down(x: u64) -> u64 {
    x / ALIGN * ALIGN
}

fn align_up(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Writes `size` zero bytes to a new file at `path` and syncs it.
fn zero_fill(path: &Path, size: u64) -> std::io::Result<()> {
    let file = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
    zero_range(&file, 0, size)?;
    file.sync_all()
}

fn zero_range(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
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

/// What scanning one segment found.
struct SegmentScan {
    records: Vec<(u64, RecordPos)>,
    /// End of the valid data.
    data_end: u64,
    /// The first problem: offset and description.
    fault: Option<(u64, String)>,
}

/// Scans one segment's records; with `payloads`, checks every checksum; with `zero_rest`, checks that
/// only zeros follow the data.
fn scan_segment(
    file: &File,
    id: u32,
    payloads: bool,
    zero_rest: bool,
    prev_height: &mut Option<u64>,
) -> std::io::Result<SegmentScan> {
    let file_len = file.metadata()?.len();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut scan = SegmentScan { records: Vec::new(), data_end: 0, fault: None };
    let mut offset = 0u64;
    let fault = loop {
        if offset + HEADER_LEN as u64 > file_len {
            break None;
        }
        let mut header = [0u8; HEADER_LEN];
        reader.read_exact(&mut header)?;
        if header.iter().all(|&b| b == 0) {
            break None;
        }
        if header[0..4] != MAGIC {
            break Some("bad record magic".to_string());
        }
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let height = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
        if len > MAX_RECORD_BYTES || offset + HEADER_LEN as u64 + len as u64 > file_len {
            break Some(format!("record length {len} runs past the end of the segment"));
        }
        if let Some(prev) = *prev_height {
            if height != prev + 1 {
                break Some(format!("record height {height} does not follow {prev}"));
            }
        }
        if payloads {
            let mut payload = vec![0u8; len as usize];
            reader.read_exact(&mut payload)?;
            if checksum(len, height, &payload) != crc {
                break Some(format!("checksum mismatch in the record for height {height}"));
            }
        } else {
            reader.seek_relative(len as i64)?;
        }
        scan.records.push((height, RecordPos { segment: id, offset, len }));
        *prev_height = Some(height);
        offset += HEADER_LEN as u64 + len as u64;
    };
    scan.data_end = offset;
    if let Some(reason) = fault {
        scan.fault = Some((offset, reason));
    } else if zero_rest && offset < file_len {
        // Only zeros may follow the data.
        let mut buf = vec![0u8; 1 << 20];
        let mut at = offset;
        while at < file_len {
            let n = (file_len - at).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], at)?;
            if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
                scan.fault = Some((
                    offset,
                    format!("stray bytes at offset {} after the end of the data", at + i as u64),
                ));
                break;
            }
            at += n as u64;
        }
    }
    Ok(scan)
}

impl BlockLog {
    /// Opens (or creates) the log in `dir`. `committed` is the last record the caller's index knows.
    pub fn open(
        dir: &Path,
        opts: LogOptions,
        committed: Option<Committed>,
    ) -> Result<(BlockLog, Recovery), LogError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let _ = std::fs::remove_file(dir.join(PREPARED_NAME));
        let mut ids = list_segments(dir)?;
        if ids.is_empty() {
            let path = segment_path(dir, 0);
            let tmp = dir.join(PREPARED_NAME);
            zero_fill(&tmp, align_up(opts.segment_bytes)).map_err(io_err(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
            sync_dir(dir)?;
            ids.push(0);
        }
        let committed_end = committed.map(|c| c.pos.end());
        let mut recovery = Recovery::default();
        let mut prev_height: Option<u64> = None;
        let last_id = *ids.last().unwrap_or(&0);
        let mut seen_committed = committed.is_none();
        let mut last_data_end = 0;

        for &id in &ids {
            let path = segment_path(dir, id);
            let path_s = path.display().to_string();
            let is_last = id == last_id;
            let payloads = opts.verify == Verify::Full || committed.is_none_or(|c| id >= c.pos.segment);
            let file = OpenOptions::new().read(true).write(true).open(&path).map_err(io_err(&path))?;
            let scan =
                scan_segment(&file, id, payloads, is_last || opts.verify == Verify::Full, &mut prev_height)
                    .map_err(io_err(&path))?;
            for &(height, pos) in &scan.records {
                match committed {
                    None => recovery.uncommitted.push((height, pos)),
                    Some(c) if c.pos == pos => {
                        if c.height != height {
                            return Err(LogError::Corrupt {
                                path: path_s,
                                offset: pos.offset,
                                reason: format!("index says height {}, record says {height}", c.height),
                            });
                        }
                        seen_committed = true;
                    }
                    Some(_) => {
                        if committed_end.is_some_and(|end| (id, pos.offset) >= end) {
                            recovery.uncommitted.push((height, pos));
                        }
                    }
                }
            }
            if let Some((offset, reason)) = scan.fault {
                if committed_end.is_some_and(|end| (id, offset) < end) {
                    let height = prev_height.map_or(0, |h| h + 1);
                    return Err(LogError::CommittedDamaged { path: path_s, offset, height, reason });
                }
                if !is_last {
                    return Err(LogError::Corrupt { path: path_s, offset, reason });
                }
                // An interrupted append: nothing after `offset` was ever acknowledged.
                let size = file.metadata().map_err(io_err(&path))?.len();
                tracing::warn!(file = %path_s, offset, cleared = size - offset, %reason,
                    "block log: clearing a torn record left by an interrupted append");
                zero_range(&file, offset, size).and_then(|_| file.sync_all()).map_err(io_err(&path))?;
                recovery.truncated = Some((path_s, offset, size - offset));
            }
            if is_last {
                last_data_end = scan.data_end;
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
        let active_size = active.metadata().map_err(io_err(&active_path))?.len();
        let writer = Self::make_writer(&opts, &active_path)?;
        let mut log = BlockLog {
            dir: dir.to_path_buf(),
            opts,
            active_id: last_id,
            active,
            active_size,
            data_end: last_data_end,
            tail: Vec::new(),
            next_height: prev_height.map(|h| h + 1),
            writer,
            reader: LogReader::new(dir),
            preparing: None,
        };
        log.load_tail().map_err(io_err(&active_path))?;
        log.prepare_next(log.opts.segment_bytes);
        Ok((log, recovery))
    }

    fn make_writer(opts: &LogOptions, active_path: &Path) -> Result<Writer, LogError> {
        if !opts.use_io_uring {
            return Ok(Writer::Plain);
        }
        let ring = match io_uring::IoUring::new(8) {
            Ok(ring) => Box::new(ring),
            Err(e) => {
                tracing::warn!(error = %e, "io_uring is not available; the block log uses pwrite + fdatasync");
                return Ok(Writer::Plain);
            }
        };
        match OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(active_path) {
            Ok(direct) => Ok(Writer::UringDirect { ring, direct }),
            Err(e) => {
                tracing::warn!(error = %e, "O_DIRECT is refused here; io_uring writes go through the page cache");
                Ok(Writer::UringBuffered(ring))
            }
        }
    }

    fn load_tail(&mut self) -> std::io::Result<()> {
        let start = align_down(self.data_end);
        self.tail = vec![0u8; (self.data_end - start) as usize];
        self.active.read_exact_at(&mut self.tail, start)
    }

    /// Starts zero-filling the next segment in the background.
    fn prepare_next(&mut self, size: u64) {
        let size = align_up(size.max(self.opts.segment_bytes));
        let path = self.dir.join(PREPARED_NAME);
        let spawned =
            std::thread::Builder::new().name("aergo-log-prep".into()).spawn(move || zero_fill(&path, size));
        self.preparing = spawned.ok().map(|t| Prepared::Running(size, t));
    }

    /// Waits until the next segment is prepared, so that no background I/O runs (for benchmarks).
    pub fn settle(&mut self) {
        if let Some(size) = self.preparing.take().and_then(Prepared::wait) {
            self.preparing = Some(Prepared::Ready(size));
        }
    }

    /// How appends reach the disk: `io_uring+O_DIRECT`, `io_uring`, or `pwrite`.
    pub fn write_path(&self) -> &'static str {
        match self.writer {
            Writer::UringDirect { .. } => "io_uring+O_DIRECT",
            Writer::UringBuffered(_) => "io_uring",
            Writer::Plain => "pwrite",
        }
    }

    /// Whether appends go through io_uring.
    pub fn uses_io_uring(&self) -> bool {
        !matches!(self.writer, Writer::Plain)
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
        let record_len = (HEADER_LEN + payload.len()) as u64;
        if self.data_end + record_len > self.active_size {
            self.roll(record_len)?;
        }
        let offset = self.data_end;
        let path = segment_path(&self.dir, self.active_id);
        let header = encode_header(height, payload);
        match &mut self.writer {
            Writer::UringDirect { ring, direct } => {
                let start = align_down(offset);
                let mut buf = AlignedBuf::new(align_up(offset + record_len) - start);
                let bytes = buf.as_mut_slice();
                bytes[..self.tail.len()].copy_from_slice(&self.tail);
                let at = self.tail.len();
                bytes[at..at + HEADER_LEN].copy_from_slice(&header);
                bytes[at + HEADER_LEN..at + record_len as usize].copy_from_slice(payload);
                uring_direct_write(ring, direct, buf.as_slice(), start).map_err(io_err(&path))?;
                let end = offset + record_len;
                let tail_start = (align_down(end) - start) as usize;
                self.tail = buf.as_slice()[tail_start..(end - start) as usize].to_vec();
            }
            Writer::UringBuffered(ring) => {
                let mut buf = Vec::with_capacity(record_len as usize);
                buf.extend_from_slice(&header);
                buf.extend_from_slice(payload);
                uring_write_sync(ring, &self.active, &buf, offset).map_err(io_err(&path))?;
            }
            Writer::Plain => {
                let mut buf = Vec::with_capacity(record_len as usize);
                buf.extend_from_slice(&header);
                buf.extend_from_slice(payload);
                self.active.write_all_at(&buf, offset).map_err(io_err(&path))?;
                self.active.sync_data().map_err(io_err(&path))?;
            }
        }
        self.data_end += record_len;
        self.next_height = Some(height + 1);
        Ok(RecordPos { segment: self.active_id, offset, len: payload.len() as u32 })
    }

    /// Cuts the log after the record at `pos` (of block `height`): the records after it are removed
    /// and the next append is `height + 1`. Used when the node switches to another fork, after the
    /// state store was rolled back to `height`. Later segments go first, newest first, then the tail
    /// of `pos`'s segment is zeroed: a crash at any point leaves a log that is a prefix of the old one,
    /// still longer than the store's head, whose extra records open hands back for replay.
    pub fn truncate_after(&mut self, pos: RecordPos, height: u64) -> Result<(), LogError> {
        let (segment, end) = pos.end();
        if segment > self.active_id || (segment == self.active_id && end > self.data_end) {
            return Err(LogError::Corrupt {
                path: segment_path(&self.dir, segment).display().to_string(),
                offset: pos.offset,
                reason: "truncation point is beyond the end of the log".into(),
            });
        }
        self.cut(segment, end)?;
        self.next_height = Some(height + 1);
        Ok(())
    }

    /// Removes every record, in the order [`BlockLog::truncate_after`] does: a branch's log taken
    /// back to the branch's base, whose block is its parent's (`docs/branches.md`). The next
    /// append may be of any height.
    pub fn clear(&mut self) -> Result<(), LogError> {
        self.cut(0, 0)?;
        self.next_height = None;
        Ok(())
    }

    /// Cuts the log at byte `end` of segment `segment`.
    fn cut(&mut self, segment: u32, end: u64) -> Result<(), LogError> {
        for id in (segment + 1..=self.active_id).rev() {
            let path = segment_path(&self.dir, id);
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        }
        sync_dir(&self.dir)?;
        self.reader.forget_from(segment + 1);
        let path = segment_path(&self.dir, segment);
        if segment != self.active_id {
            self.activate(segment)?;
            // The records' end in that segment is not tracked: clear to the segment's end.
            self.data_end = self.active_size;
        }
        zero_range(&self.active, end, self.data_end)
            .and_then(|_| self.active.sync_data())
            .map_err(io_err(&path))?;
        self.data_end = end;
        self.load_tail().map_err(io_err(&path))?;
        Ok(())
    }

    /// Makes segment `id` the one appends go to (its file, size and direct-I/O descriptor).
    fn activate(&mut self, id: u32) -> Result<(), LogError> {
        let path = segment_path(&self.dir, id);
        self.active = OpenOptions::new().read(true).write(true).open(&path).map_err(io_err(&path))?;
        self.active_size = self.active.metadata().map_err(io_err(&path))?.len();
        if let Writer::UringDirect { direct, .. } = &mut self.writer {
            *direct = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(&path)
                .map_err(io_err(&path))?;
        }
        self.active_id = id;
        Ok(())
    }

    /// Moves to a new segment big enough for a record of `needed` bytes.
    fn roll(&mut self, needed: u64) -> Result<(), LogError> {
        let id = self.active_id + 1;
        let path = segment_path(&self.dir, id);
        let tmp = self.dir.join(PREPARED_NAME);
        let size = align_up(needed.max(self.opts.segment_bytes));
        let prepared = self.preparing.take().and_then(Prepared::wait).is_some_and(|ready| ready >= size);
        if !prepared {
            zero_fill(&tmp, size).map_err(io_err(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(&self.dir)?;
        self.activate(id)?;
        self.data_end = 0;
        self.tail.clear();
        self.prepare_next(self.opts.segment_bytes);
        Ok(())
    }
}

impl Drop for BlockLog {
    fn drop(&mut self) {
        // Let a zero-fill in progress finish so that it does not race a later open of the same dir.
        if let Some(p) = self.preparing.take() {
            p.wait();
        }
    }
}

/// A zeroed, 4 KiB-aligned buffer for direct I/O.
struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    fn new(len: u64) -> AlignedBuf {
        let len = (len as usize).max(ALIGN as usize);
        let layout = std::alloc::Layout::from_size_align(len, ALIGN as usize)
            .unwrap_or_else(|_| std::alloc::Layout::new::<u8>());
        // SAFETY: the layout has a non-zero size; a null result is handled by handle_alloc_error.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = std::ptr::NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, layout }
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to `layout.size()` initialised (zeroed) bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// One direct write of `buf` (aligned) at `offset` (aligned), durable on completion (`RWF_DSYNC`).
fn uring_direct_write(
    ring: &mut io_uring::IoUring,
    file: &File,
    buf: &[u8],
    offset: u64,
) -> std::io::Result<()> {
    use io_uring::{opcode, types};
    let write = opcode::Write::new(types::Fd(file.as_raw_fd()), buf.as_ptr(), buf.len() as u32)
        .offset(offset)
        .rw_flags(libc::RWF_DSYNC)
        .build()
        .user_data(1);
    // SAFETY: `buf` outlives the submission: its completion is reaped below before returning, and the
    // entry references only `buf` and an open fd.
    unsafe {
        ring.submission()
            .push(&write)
            .map_err(|_| std::io::Error::other("io_uring submission queue full"))?;
    }
    ring.submit_and_wait(1)?;
    let cqe = ring.completion().next().ok_or_else(|| std::io::Error::other("io_uring lost a completion"))?;
    let n = cqe.result();
    if n < 0 {
        return Err(std::io::Error::from_raw_os_error(-n));
    }
    if n as usize != buf.len() {
        return Err(std::io::Error::other(format!("short direct write: {n} of {} bytes", buf.len())));
    }
    Ok(())
}

/// Writes `buf` at `offset` durably through the page cache: an io_uring write linked to an
/// `fdatasync`, one system call. A short write cancels the linked sync; the loop writes the rest and
/// syncs again.
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
        // SAFETY: `rest` outlives the submission: both completions are reaped below before returning or
        // touching the buffer again, and the entries reference only `rest` and an open fd.
        unsafe {
            let mut sq = ring.submission();
            sq.push(&write).map_err(|_| std::io::Error::other("io_uring submission queue full"))?;
            sq.push(&sync).map_err(|_| std::io::Error::other("io_uring submission queue full"))?;
        }
        ring.submit_and_wait(2)?;
        let (mut write_res, mut sync_res) = (None, None);
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
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "io_uring wrote nothing"));
        }
        written += n as usize;
        match sync_res {
            Some(r) if r < 0 && r != -libc::ECANCELED => return Err(std::io::Error::from_raw_os_error(-r)),
            _ => {}
        }
    }
    Ok(())
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

    /// Drops the open files of segment `from` and later (they were removed by a truncation).
    fn forget_from(&self, from: u32) {
        self.files.lock().retain(|id, _| *id < from);
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
