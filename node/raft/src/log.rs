//! The Raft log of one repository, durable in RocksDB (`<repo>/raft/`).
//!
//! Keys: `hs` the hard state (term, vote, commit), `cs` the conf state (voters, learners, and the
//! outgoing voters of a joint configuration), `sm` the metadata of the last snapshot (index, term,
//! conf state), `sd` its data (what the application restores from), `e` + index (8 bytes BE) an
//! entry. All values are raft-rs's protobuf messages. Every write is one synced batch: a vote, a
//! term or an entry is on disk before Raft acts on it (before a message that depends on it is
//! sent), so that `kill -9` or a power loss never lets a node vote twice in a term or forget an
//! entry it acknowledged.
//!
//! The entries after the snapshot are kept in memory too (the application compacts the log as it
//! applies, so they stay few); reads are served from there.

use parking_lot::RwLock;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use rocksdb::{Options, WriteBatch, WriteOptions, DB};
use std::path::Path;
use std::sync::Arc;

const KEY_HARD: &[u8] = b"hs";
const KEY_CONF: &[u8] = b"cs";
const KEY_SNAP_META: &[u8] = b"sm";
const KEY_SNAP_DATA: &[u8] = b"sd";
const KEY_APPLIED: &[u8] = b"ap";

#[cfg(test)]
pub(crate) fn tests_entry_key(index: u64) -> [u8; 9] {
    entry_key(index)
}

fn entry_key(index: u64) -> [u8; 9] {
    let mut k = [b'e'; 9];
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("the Raft log at {path}: {source}")]
    Db { path: String, source: rocksdb::Error },
    #[error("the Raft log at {path} is damaged: {what}")]
    Corrupt { path: String, what: String },
    #[error("the Raft log: {0}")]
    Write(#[from] rocksdb::Error),
    #[error("the Raft log is already initialized; the voters of a running group change by ConfChangeV2")]
    Initialized,
    #[error("a snapshot at {snapshot} is older than the log's first index {first}")]
    StaleSnapshot { snapshot: u64, first: u64 },
}

struct Core {
    hard: HardState,
    conf: ConfState,
    snap: SnapshotMetadata,
    snap_data: Vec<u8>,
    /// Entries `snap.index + 1 ..`, in order.
    entries: Vec<Entry>,
}

impl Core {
    fn first_index(&self) -> u64 {
        self.snap.index + 1
    }

    fn last_index(&self) -> u64 {
        self.entries.last().map_or(self.snap.index, |e| e.index)
    }
}

/// The durable Raft log (see the module's notes). Clones share it.
#[derive(Clone)]
pub struct RaftLog {
    db: Arc<DB>,
    core: Arc<RwLock<Core>>,
    /// Raft asked for a snapshot the last one cannot be (its configuration lacks the member it
    /// is for): the application should compact at what it has applied.
    wanted: Arc<std::sync::atomic::AtomicBool>,
}

fn decode<M: protobuf::Message>(path: &Path, what: &str, bytes: &[u8]) -> Result<M, LogError> {
    M::parse_from_bytes(bytes)
        .map_err(|e| LogError::Corrupt { path: path.display().to_string(), what: format!("{what}: {e}") })
}

fn encode<M: protobuf::Message>(m: &M) -> Vec<u8> {
    m.write_to_bytes().expect("raft's messages always encode")
}

impl RaftLog {
    /// Opens (or creates, empty) the log in `path`.
    pub fn open(path: &Path) -> Result<RaftLog, LogError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        let db = DB::open(&opts, path)
            .map_err(|source| LogError::Db { path: path.display().to_string(), source })?;
        let get =
            |k: &[u8]| db.get(k).map_err(|source| LogError::Db { path: path.display().to_string(), source });
        let hard = get(KEY_HARD)?.map(|b| decode(path, "hard state", &b)).transpose()?.unwrap_or_default();
        let conf = get(KEY_CONF)?.map(|b| decode(path, "conf state", &b)).transpose()?.unwrap_or_default();
        let snap: SnapshotMetadata = get(KEY_SNAP_META)?
            .map(|b| decode(path, "snapshot metadata", &b))
            .transpose()?
            .unwrap_or_default();
        let snap_data = get(KEY_SNAP_DATA)?.unwrap_or_default();
        let mut entries: Vec<Entry> = Vec::new();
        for item in db.prefix_iterator(b"e") {
            let (k, v) = item.map_err(|source| LogError::Db { path: path.display().to_string(), source })?;
            if k.first() != Some(&b'e') {
                break;
            }
            let e: Entry = decode(path, "an entry", &v)?;
            let expected = entries.last().map_or(snap.index + 1, |l| l.index + 1);
            if e.index <= snap.index {
                continue; // left over from a compaction cut short: the snapshot covers it
            }
            if e.index != expected {
                return Err(LogError::Corrupt {
                    path: path.display().to_string(),
                    what: format!("entry {} follows entry {}", e.index, expected - 1),
                });
            }
            entries.push(e);
        }
        Ok(RaftLog {
            db: Arc::new(db),
            core: Arc::new(RwLock::new(Core { hard, conf, snap, snap_data, entries })),
            wanted: Arc::default(),
        })
    }

    fn write(&self, batch: WriteBatch) -> Result<(), LogError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }

    /// Whether the log has a configuration (a founding member's, or one a snapshot brought).
    pub fn initialized(&self) -> bool {
        let c = self.core.read();
        !c.conf.voters.is_empty() || !c.conf.learners.is_empty()
    }

    /// Makes this log a founding member's: the group's first voters, as a snapshot at index 1 (so
    /// that a member added later always starts from a snapshot, never from a log that misses the
    /// founding configuration).
    pub fn initialize(&self, voters: &[u64]) -> Result<(), LogError> {
        if self.initialized() || self.core.read().last_index() > 0 {
            return Err(LogError::Initialized);
        }
        let conf = ConfState { voters: voters.to_vec(), ..Default::default() };
        let mut snap = SnapshotMetadata { index: 1, term: 1, ..Default::default() };
        snap.set_conf_state(conf.clone());
        let hard = HardState { term: 1, commit: 1, ..Default::default() };
        let mut b = WriteBatch::default();
        b.put(KEY_CONF, encode(&conf));
        b.put(KEY_SNAP_META, encode(&snap));
        b.put(KEY_HARD, encode(&hard));
        self.write(b)?;
        let mut c = self.core.write();
        (c.conf, c.snap, c.hard) = (conf, snap, hard);
        Ok(())
    }

    /// Appends `entries` (replacing any it conflicts with) and records `hard`, in one synced batch.
    pub fn persist(&self, entries: &[Entry], hard: Option<&HardState>) -> Result<(), LogError> {
        if entries.is_empty() && hard.is_none() {
            return Ok(());
        }
        let mut b = WriteBatch::default();
        let mut c = self.core.write();
        if let Some(first) = entries.first() {
            assert!(
                first.index >= c.first_index() && first.index <= c.last_index() + 1,
                "raft appended entry {} to a log of {}..={}",
                first.index,
                c.first_index(),
                c.last_index()
            );
            for stale in first.index..=c.last_index() {
                b.delete(entry_key(stale));
            }
            for e in entries {
                b.put(entry_key(e.index), encode(e));
            }
        }
        if let Some(h) = hard {
            b.put(KEY_HARD, encode(h));
        }
        self.write(b)?;
        if let Some(first) = entries.first() {
            let keep = (first.index - c.first_index()) as usize;
            c.entries.truncate(keep);
            c.entries.extend_from_slice(entries);
        }
        if let Some(h) = hard {
            c.hard = h.clone();
        }
        Ok(())
    }

    /// Records a new commit index (a `LightReady`'s).
    pub fn set_commit(&self, commit: u64) -> Result<(), LogError> {
        let mut hard = self.core.read().hard.clone();
        hard.commit = commit;
        self.persist(&[], Some(&hard))
    }

    /// Records the configuration a committed `ConfChangeV2` gave.
    pub fn set_conf_state(&self, conf: &ConfState) -> Result<(), LogError> {
        let mut b = WriteBatch::default();
        b.put(KEY_CONF, encode(conf));
        self.write(b)?;
        self.core.write().conf = conf.clone();
        Ok(())
    }

    /// Replaces the log by a snapshot the leader sent (its entries all dropped).
    pub fn apply_snapshot(&self, snapshot: &Snapshot) -> Result<(), LogError> {
        let meta = snapshot.get_metadata();
        let mut c = self.core.write();
        if meta.index < c.first_index() && c.last_index() > 0 {
            return Err(LogError::StaleSnapshot { snapshot: meta.index, first: c.first_index() });
        }
        let mut hard = c.hard.clone();
        hard.term = hard.term.max(meta.term);
        hard.commit = meta.index;
        let mut b = WriteBatch::default();
        for i in c.first_index()..=c.last_index() {
            b.delete(entry_key(i));
        }
        b.put(KEY_SNAP_META, encode(meta));
        b.put(KEY_SNAP_DATA, snapshot.get_data());
        b.put(KEY_CONF, encode(meta.get_conf_state()));
        b.put(KEY_HARD, encode(&hard));
        self.write(b)?;
        c.entries.clear();
        c.snap = meta.clone();
        c.snap_data = snapshot.get_data().to_vec();
        c.conf = meta.get_conf_state().clone();
        c.hard = hard;
        Ok(())
    }

    /// The application has applied up to `index` and `data` restores that state: it becomes the
    /// snapshot a lagging or new member is sent, and the entries up to it are dropped.
    pub fn compact(&self, index: u64, data: Vec<u8>) -> Result<(), LogError> {
        let mut c = self.core.write();
        if index <= c.snap.index {
            return Ok(());
        }
        assert!(index <= c.hard.commit, "compacting to {index} past the commit index {}", c.hard.commit);
        let term = c.entries[(index - c.first_index()) as usize].term;
        let mut meta = SnapshotMetadata { index, term, ..Default::default() };
        meta.set_conf_state(c.conf.clone());
        let mut b = WriteBatch::default();
        for i in c.first_index()..=index {
            b.delete(entry_key(i));
        }
        b.put(KEY_SNAP_META, encode(&meta));
        b.put(KEY_SNAP_DATA, &data);
        self.write(b)?;
        let drop = (index - c.first_index() + 1) as usize;
        c.entries.drain(..drop);
        c.snap = meta;
        c.snap_data = data;
        Ok(())
    }

    /// Records that the application has applied up to `index`. Not synced: after a crash the
    /// application is handed the entries after an older index again and must skip what it holds
    /// (a block already in its chain), which it can tell.
    pub fn set_applied(&self, index: u64) -> Result<(), LogError> {
        self.db.put(KEY_APPLIED, index.to_be_bytes())?;
        Ok(())
    }

    /// The last index [`RaftLog::set_applied`] recorded (0: none).
    pub fn applied(&self) -> u64 {
        match self.db.get(KEY_APPLIED) {
            Ok(Some(v)) if v.len() == 8 => u64::from_be_bytes(v[..].try_into().unwrap_or([0; 8])),
            _ => 0,
        }
    }

    /// Whether Raft wanted a newer snapshot than the last one since this was last asked.
    pub fn snapshot_wanted(&self) -> bool {
        self.wanted.swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// The last snapshot: its index and the data the application gave for it.
    pub fn snapshot_data(&self) -> (u64, Vec<u8>) {
        let c = self.core.read();
        (c.snap.index, c.snap_data.clone())
    }

    pub fn hard_state(&self) -> HardState {
        self.core.read().hard.clone()
    }

    pub fn conf_state(&self) -> ConfState {
        self.core.read().conf.clone()
    }
}

impl Storage for RaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let c = self.core.read();
        Ok(RaftState { hard_state: c.hard.clone(), conf_state: c.conf.clone() })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let c = self.core.read();
        if low < c.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > c.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let (lo, hi) = ((low - c.first_index()) as usize, (high - c.first_index()) as usize);
        let mut out = c.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let c = self.core.read();
        if idx == c.snap.index {
            return Ok(c.snap.term);
        }
        if idx < c.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > c.last_index() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(c.entries[(idx - c.first_index()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.core.read().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.core.read().last_index())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let c = self.core.read();
        let conf = c.snap.get_conf_state();
        let knows = |ids: &[u64]| ids.contains(&to);
        let names_to = knows(&conf.voters)
            || knows(&conf.learners)
            || knows(&conf.voters_outgoing)
            || knows(&conf.learners_next);
        // A member added after the last snapshot must get one whose configuration names it.
        if c.snap.index < request_index || !names_to {
            self.wanted.store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        let mut s = Snapshot::default();
        s.set_metadata(c.snap.clone());
        s.set_data(c.snap_data.clone().into());
        Ok(s)
    }
}
