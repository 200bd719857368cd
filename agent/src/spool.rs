//! The durable sample ring: samples that Horde has not fetched yet survive agent restarts, `kill -9` and
//! power loss, within a size and an age cap.
//!
//! A directory of segment files named by their first sequence number (`00000000000000000042.spool`),
//! each an 8-byte magic followed by records:
//!
//! ```text
//! len u32 | crc32c u32 (of seq, ms and payload) | seq u64 | collected_at_ms u64 | payload (len bytes, JSON)
//! ```
//!
//! little-endian. A record is appended with one write and made durable with `fdatasync` before the
//! sample is published, so a sample anyone has seen is in the spool. On open, every segment is scanned;
//! a torn or corrupt tail of the newest segment is cut off (it was never acknowledged), a corrupt record
//! inside an older segment ends that segment's readable part, and a file that is not a segment at all is
//! renamed `*.corrupt` and left for inspection. When the disk is full the append fails, the file is cut
//! back to its last whole record, and the spool reports the error until an append succeeds again.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"AGSPOOL1";
const HEADER: usize = 24;
/// Larger payloads are refused on append and treated as corruption on read.
pub const MAX_RECORD: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("sample of {0} bytes is larger than a spool record may be")]
    TooLarge(usize),
    #[error("sequence {seq} is not above the spool's last ({last})")]
    OutOfOrder { seq: u64, last: u64 },
}

impl SpoolError {
    /// Whether the filesystem is out of space (or quota).
    pub fn is_full(&self) -> bool {
        matches!(self, SpoolError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)))
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    seq: u64,
    offset: u64,
    len: u32,
    ms: u64,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    size: u64,
    entries: Vec<Entry>,
}

/// What `open` found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    pub samples: u64,
    /// Bytes cut from the newest segment's torn tail.
    pub truncated_bytes: u64,
    /// Files renamed `*.corrupt`, and older segments whose tail could not be read.
    pub corrupt: Vec<String>,
}

/// Where to read a run of samples from; taken under the spool's lock, read without it.
#[derive(Debug, Default)]
pub struct ReadPlan {
    parts: Vec<(PathBuf, Vec<Entry>)>,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    max_age_ms: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    current: Option<File>,
    last_seq: u64,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.display().to_string(), source }
}

fn crc(seq: u64, ms: u64, payload: &[u8]) -> u32 {
    let c = crc32c::crc32c(&seq.to_le_bytes());
    let c = crc32c::crc32c_append(c, &ms.to_le_bytes());
    crc32c::crc32c_append(c, payload)
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Reads a segment's records; returns them and the length of the readable prefix.
fn scan(path: &Path) -> Result<Option<(Vec<Entry>, u64)>, SpoolError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut r = BufReader::with_capacity(256 << 10, file);
    let mut magic = [0u8; 8];
    if r.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Ok(None);
    }
    let mut entries = Vec::new();
    let mut offset = MAGIC.len() as u64;
    let mut header = [0u8; HEADER];
    let mut payload = Vec::new();
    let mut last = 0u64;
    loop {
        if r.read_exact(&mut header).is_err() {
            break;
        }
        let len = u32::from_le_bytes(header[0..4].try_into().unwrap_or_default());
        let sum = u32::from_le_bytes(header[4..8].try_into().unwrap_or_default());
        let seq = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
        let ms = u64::from_le_bytes(header[16..24].try_into().unwrap_or_default());
        if len as usize > MAX_RECORD || seq <= last {
            break;
        }
        payload.resize(len as usize, 0);
        if r.read_exact(&mut payload).is_err() || crc(seq, ms, &payload) != sum {
            break;
        }
        entries.push(Entry { seq, offset, len, ms });
        offset += (HEADER + len as usize) as u64;
        last = seq;
    }
    Ok(Some((entries, offset)))
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, recovering from whatever a crash left.
    pub fn open(dir: &Path, max_bytes: u64, max_age_ms: u64) -> Result<(Spool, Recovery), SpoolError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let path = entry.map_err(io_err(dir))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("spool") {
                continue;
            }
            match path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<u64>().ok()) {
                Some(first) => names.push((first, path)),
                None => continue,
            }
        }
        names.sort();
        let mut recovery = Recovery::default();
        let mut segments = VecDeque::new();
        let mut last_seq = 0u64;
        let count = names.len();
        for (i, (_, path)) in names.into_iter().enumerate() {
            let newest = i + 1 == count;
            let Some((mut entries, good)) = scan(&path)? else {
                let aside = path.with_extension("corrupt");
                std::fs::rename(&path, &aside).map_err(io_err(&path))?;
                recovery.corrupt.push(aside.display().to_string());
                continue;
            };
            entries.retain(|e| e.seq > last_seq);
            let size = std::fs::metadata(&path).map_err(io_err(&path))?.len();
            if good < size {
                if newest {
                    let f = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
                    f.set_len(good).map_err(io_err(&path))?;
                    f.sync_all().map_err(io_err(&path))?;
                    recovery.truncated_bytes = size - good;
                } else {
                    recovery.corrupt.push(format!("{} (after byte {good})", path.display()));
                }
            }
            if let Some(e) = entries.last() {
                last_seq = e.seq;
            }
            recovery.samples += entries.len() as u64;
            segments.push_back(Segment { path, size: good, entries });
        }
        let segment_bytes = (max_bytes / 16).max(64 << 10);
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            max_age_ms,
            segment_bytes,
            segments,
            current: None,
            last_seq,
        };
        if let Some(seg) = spool.segments.back() {
            if seg.size < spool.segment_bytes {
                let f = OpenOptions::new().append(true).open(&seg.path).map_err(io_err(&seg.path))?;
                spool.current = Some(f);
            }
        }
        Ok((spool, recovery))
    }

    /// The sequence number of the newest sample kept (0: none ever).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn oldest_seq(&self) -> Option<u64> {
        self.segments.iter().find_map(|s| s.entries.first()).map(|e| e.seq)
    }

    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    pub fn samples(&self) -> u64 {
        self.segments.iter().map(|s| s.entries.len() as u64).sum()
    }

    fn start_segment(&mut self, first_seq: u64) -> Result<(), SpoolError> {
        let path = self.dir.join(format!("{first_seq:020}.spool"));
        let mut f =
            OpenOptions::new().create(true).truncate(true).write(true).open(&path).map_err(io_err(&path))?;
        let written = f.write_all(MAGIC).and_then(|_| f.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&path);
            return Err(io_err(&path)(e));
        }
        sync_dir(&self.dir)?;
        let f = OpenOptions::new().append(true).open(&path).map_err(io_err(&path))?;
        self.segments.push_back(Segment { path, size: MAGIC.len() as u64, entries: Vec::new() });
        self.current = Some(f);
        Ok(())
    }

    /// Appends one sample durably. On error nothing of it stays in the spool.
    pub fn append(&mut self, seq: u64, ms: u64, payload: &[u8]) -> Result<(), SpoolError> {
        if payload.len() > MAX_RECORD {
            return Err(SpoolError::TooLarge(payload.len()));
        }
        if seq <= self.last_seq {
            return Err(SpoolError::OutOfOrder { seq, last: self.last_seq });
        }
        let rotate = match (&self.current, self.segments.back()) {
            (Some(_), Some(seg)) => seg.size >= self.segment_bytes,
            _ => true,
        };
        if rotate {
            self.current = None;
            self.start_segment(seq)?;
        }
        let (Some(file), Some(seg)) = (self.current.as_mut(), self.segments.back_mut()) else {
            unreachable!("a segment was just started");
        };
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc(seq, ms, payload).to_le_bytes());
        record.extend_from_slice(&seq.to_le_bytes());
        record.extend_from_slice(&ms.to_le_bytes());
        record.extend_from_slice(payload);
        if let Err(e) = file.write_all(&record).and_then(|_| file.sync_data()) {
            // Cut back to the last whole record so that a later append does not follow garbage.
            let _ = file.set_len(seg.size);
            let path = seg.path.clone();
            self.current = None;
            if let Ok(f) = OpenOptions::new().append(true).open(&path) {
                self.current = Some(f);
            }
            return Err(io_err(&path)(e));
        }
        seg.entries.push(Entry { seq, offset: seg.size, len: payload.len() as u32, ms });
        seg.size += record.len() as u64;
        self.last_seq = seq;
        self.enforce_caps(ms)?;
        Ok(())
    }

    /// Drops the oldest segments while the spool is over its size or age cap (never the current one).
    fn enforce_caps(&mut self, now_ms: u64) -> Result<(), SpoolError> {
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let newest_ms = oldest.entries.last().map(|e| e.ms).unwrap_or(0);
            let too_old = now_ms.saturating_sub(newest_ms) > self.max_age_ms;
            if !(self.bytes() > self.max_bytes || too_old) {
                break;
            }
            let seg = self.segments.pop_front().expect("more than one segment");
            std::fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
        }
        Ok(())
    }

    /// Plans reading up to `limit` samples with `seq > since`, oldest first.
    pub fn plan(&self, since: u64, limit: usize) -> ReadPlan {
        let mut plan = ReadPlan::default();
        let mut left = limit;
        for seg in &self.segments {
            if left == 0 {
                break;
            }
            if seg.entries.last().is_none_or(|e| e.seq <= since) {
                continue;
            }
            let start = seg.entries.partition_point(|e| e.seq <= since);
            let take: Vec<Entry> = seg.entries[start..].iter().take(left).copied().collect();
            left -= take.len();
            plan.parts.push((seg.path.clone(), take));
        }
        plan
    }
}

impl ReadPlan {
    /// Reads the planned samples: `(seq, payload)`. A segment deleted by the age or size cap since
    /// the plan was made ends the run early (those samples are gone anyway).
    pub fn read(self) -> Result<Vec<(u64, Vec<u8>)>, SpoolError> {
        let mut out = Vec::new();
        for (path, entries) in self.parts {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path)(e)),
            };
            for e in entries {
                let mut buf = vec![0u8; HEADER + e.len as usize];
                file.read_exact_at(&mut buf, e.offset).map_err(io_err(&path))?;
                let payload = buf.split_off(HEADER);
                let sum = u32::from_le_bytes(buf[4..8].try_into().unwrap_or_default());
                if crc(e.seq, e.ms, &payload) != sum {
                    return Err(io_err(&path)(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("record {} changed on disk", e.seq),
                    )));
                }
                out.push((e.seq, payload));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(seq: u64) -> Vec<u8> {
        format!("{{\"seq\":{seq},\"pad\":\"{}\"}}", "x".repeat(200)).into_bytes()
    }

    fn read_all(spool: &Spool) -> Vec<u64> {
        spool.plan(0, usize::MAX).read().unwrap().into_iter().map(|(s, _)| s).collect()
    }

    #[test]
    fn appends_survive_reopen_and_history_pages() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, rec) = Spool::open(dir.path(), 1 << 20, u64::MAX).unwrap();
        assert_eq!(rec, Recovery::default());
        for seq in 1..=50 {
            s.append(seq, 1000 + seq, &payload(seq)).unwrap();
        }
        drop(s);
        let (s, rec) = Spool::open(dir.path(), 1 << 20, u64::MAX).unwrap();
        assert_eq!(rec.samples, 50);
        assert_eq!(s.last_seq(), 50);
        let page = s.plan(10, 5).read().unwrap();
        assert_eq!(page.iter().map(|p| p.0).collect::<Vec<_>>(), vec![11, 12, 13, 14, 15]);
        assert_eq!(page[0].1, payload(11));
        assert!(s.plan(50, 10).read().unwrap().is_empty());
        assert!(matches!(
            Spool::open(dir.path(), 1 << 20, u64::MAX).unwrap().0.append(50, 0, b"{}"),
            Err(SpoolError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn torn_tail_is_cut_and_appending_continues() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 1 << 20, u64::MAX).unwrap();
        for seq in 1..=3 {
            s.append(seq, seq, &payload(seq)).unwrap();
        }
        let path = s.segments.back().unwrap().path.clone();
        drop(s);
        // A crash in the middle of the fourth record: header and half the payload.
        let full = std::fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        let p = payload(4);
        f.write_all(&(p.len() as u32).to_le_bytes()).unwrap();
        f.write_all(&crc(4, 4, &p).to_le_bytes()).unwrap();
        f.write_all(&4u64.to_le_bytes()).unwrap();
        f.write_all(&4u64.to_le_bytes()).unwrap();
        f.write_all(&p[..p.len() / 2]).unwrap();
        drop(f);
        let (mut s, rec) = Spool::open(dir.path(), 1 << 20, u64::MAX).unwrap();
        assert_eq!(rec.samples, 3);
        assert_eq!(rec.truncated_bytes, (HEADER + p.len() / 2) as u64);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), full);
        s.append(4, 4, &p).unwrap();
        assert_eq!(read_all(&s), vec![1, 2, 3, 4]);
    }

    #[test]
    fn flipped_bits_end_the_readable_part() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 1 << 20, u64::MAX).unwrap();
        for seq in 1..=5 {
            s.append(seq, seq, &payload(seq)).unwrap();
        }
        let path = s.segments.back().unwrap().path.clone();
        drop(s);
        let mut bytes = std::fs::read(&path).unwrap();
        let third = MAGIC.len() + 2 * (HEADER + payload(1).len()) + HEADER + 10;
        bytes[third] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
        let (s, rec) = Spool::open(dir.path(), 1 << 20, u64::MAX).unwrap();
        assert_eq!(read_all(&s), vec![1, 2]);
        assert!(rec.truncated_bytes > 0);
    }

    #[test]
    fn a_foreign_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("00000000000000000001.spool"), b"not a spool").unwrap();
        let (mut s, rec) = Spool::open(dir.path(), 1 << 20, u64::MAX).unwrap();
        assert_eq!(rec.corrupt.len(), 1);
        assert!(dir.path().join("00000000000000000001.corrupt").exists());
        s.append(1, 1, b"{}").unwrap();
        assert_eq!(read_all(&s), vec![1]);
    }

    #[test]
    fn size_and_age_caps_drop_the_oldest_segments() {
        let dir = tempfile::tempdir().unwrap();
        // 1 MiB cap → 64 KiB segments; each record ~260 bytes.
        let (mut s, _) = Spool::open(dir.path(), 1 << 20, u64::MAX).unwrap();
        for seq in 1..=10_000 {
            s.append(seq, seq, &payload(seq)).unwrap();
        }
        assert!(s.bytes() <= (1 << 20) + (64 << 10), "{}", s.bytes());
        let kept = read_all(&s);
        assert_eq!(*kept.last().unwrap(), 10_000);
        assert!(kept.windows(2).all(|w| w[1] == w[0] + 1));
        assert!(kept[0] > 1);
        assert_eq!(s.oldest_seq(), Some(kept[0]));

        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 64 << 20, 1_000).unwrap();
        for seq in 1..=2_000 {
            s.append(seq, seq * 10, &payload(seq)).unwrap();
        }
        // Segments are 4 MiB here, so everything sits in one segment and stays; the age cap acts on
        // whole segments.
        assert_eq!(s.oldest_seq(), Some(1));
        let (mut s, _) = Spool::open(dir.path(), 1 << 20, 1_000).unwrap();
        for seq in 2_001..=6_000 {
            s.append(seq, seq * 10, &payload(seq)).unwrap();
        }
        // A segment goes once its newest sample is older than 1 s (100 samples); segments hold about
        // 270 samples, so what is kept starts at most one segment before the last 100 samples.
        let oldest = s.oldest_seq().unwrap();
        assert!((5_600..=5_900).contains(&oldest), "oldest {oldest}");
    }
}
