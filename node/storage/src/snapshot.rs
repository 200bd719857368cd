//! Snapshots: the chain's state at one final height as chunks that each prove themselves against
//! that height's state root, so that a new node starts there instead of replaying from genesis.
//! Design, trust and failure cases: `docs/fleet.md` ("Faster joining").
//!
//! ```text
//! file  = "AERGO-SNAPSHOT/1\n" frame*
//! frame = length u32 LE | crc32c(body) u32 LE | body = borsh(Frame)   (body ≤ MAX_FRAME_BYTES)
//! order = Manifest, Block, Headers, Election*, Leaves+, Rows*, End
//! ```
//!
//! [`export`] writes one from a store; [`Importer`] takes the frames in order (from a file through
//! [`FrameReader`], or pages fetched from peers), checks each as it comes, and builds the chain's
//! `state/` and `blocks/` in the data directory's `.importing/`, which it moves into place only
//! once everything is durable and the rebuilt tree's root is the header's ([`settle`] completes
//! the moves after a crash, or clears an import that was not complete).
//!
//! What the caller decides: the final height, and which election records the producer schedule
//! needs (this crate knows nothing of elections: [`ExportPlan`]).

use crate::blocklog::{BlockLog, LogOptions, LogReader};
use crate::state::{Blake3, Head, Leaves, StateError, StateStore};
use crate::LogError;
use aergo_primitives::types::{Block, BlockHeader, Hash, Receipt, SQL_PREFIX};
use borsh::{BorshDeserialize, BorshSerialize};
use jmt::proof::{SparseMerkleProof, SparseMerkleRangeProof};
use jmt::restore::{JellyfishMerkleRestore, StateSnapshotReceiver};
use jmt::storage::{LeafNode, Node, NodeBatch, NodeKey, TreeReader, TreeWriter};
use jmt::{KeyHash, OwnedValue, RootHash, Version};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The first bytes of a snapshot file.
pub const MAGIC: &[u8] = b"AERGO-SNAPSHOT/1\n";
/// The manifest's format number.
pub const FORMAT: u32 = 1;
/// Tree leaves per `Leaves` frame (a frame of 4 096 transfers' accounts is about 300 KiB).
pub const LEAVES_PER_CHUNK: usize = 4096;
/// Contract rows per `Rows` frame.
pub const ROWS_PER_CHUNK: usize = 4096;
/// Most bytes of keys and values in one `Leaves` or `Rows` frame (a page over the network stays
/// well under the sync protocol's 16 MiB response).
pub const PAGE_BYTES: usize = 4 << 20;
/// The largest frame body read or written.
pub const MAX_FRAME_BYTES: u32 = 64 << 20;

/// What the snapshot is of.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Manifest {
    pub format: u32,
    pub chain_id: String,
    pub genesis_hash: Hash,
    pub height: u64,
    pub block_hash: Hash,
    pub state_root: Hash,
}

/// A state record with the proof of its value (or absence) against a height's root.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ProvenRecord {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    /// `borsh(SparseMerkleProof<Blake3>)`.
    pub proof: Vec<u8>,
}

/// One frame of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Frame {
    Manifest(Manifest),
    /// The block at the snapshot's height, encoded, with its receipts.
    Block {
        block: Vec<u8>,
        receipts: Vec<Receipt>,
    },
    /// Consecutive headers ending at the block's parent (empty when no election needs them).
    Headers(Vec<BlockHeader>),
    /// The records an election reads, as of `height`.
    Election {
        height: u64,
        records: Vec<ProvenRecord>,
    },
    /// Tree leaves `(key hash, value)` in key-hash order; `proof` is `borsh(SparseMerkleRangeProof)`
    /// of the last one.
    Leaves {
        entries: Leaves,
        proof: Vec<u8>,
    },
    /// Contract rows `(key, value)` in key order.
    Rows(Vec<(Vec<u8>, Vec<u8>)>),
    End {
        leaves: u64,
        rows: u64,
    },
}

impl Frame {
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Manifest(_) => "manifest",
            Frame::Block { .. } => "block",
            Frame::Headers(_) => "headers",
            Frame::Election { .. } => "election",
            Frame::Leaves { .. } => "leaves",
            Frame::Rows(_) => "rows",
            Frame::End { .. } => "end",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("not an AERGO snapshot: it does not start with \"AERGO-SNAPSHOT/1\"")]
    NotSnapshot,
    #[error("snapshot frame {frame} ({what}): {reason}")]
    Refused { frame: u64, what: &'static str, reason: String },
    #[error("snapshot is cut short: it ends after frame {0} without its end frame")]
    Truncated(u64),
    #[error("data directory {0} is not empty: import a snapshot into a new directory")]
    NotEmpty(String),
    #[error("cannot export: {0}")]
    Export(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Log(#[from] LogError),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io { path: path.display().to_string(), source }
}

/// Writes frames after the magic line.
pub struct FrameWriter<W: Write> {
    out: W,
    frames: u64,
    bytes: u64,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(mut out: W) -> std::io::Result<FrameWriter<W>> {
        out.write_all(MAGIC)?;
        Ok(FrameWriter { out, frames: 0, bytes: MAGIC.len() as u64 })
    }

    pub fn write(&mut self, frame: &Frame) -> std::io::Result<()> {
        let body = aergo_primitives::types::to_vec_exact(frame);
        let len = u32::try_from(body.len()).ok().filter(|l| *l <= MAX_FRAME_BYTES).ok_or_else(|| {
            std::io::Error::other(format!(
                "a {} frame of {} bytes is over the limit",
                frame.name(),
                body.len()
            ))
        })?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&crc32c::crc32c(&body).to_le_bytes())?;
        self.out.write_all(&body)?;
        self.frames += 1;
        self.bytes += 8 + body.len() as u64;
        Ok(())
    }

    /// The output, flushed.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads frames, checking the magic line, each frame's length and checksum, and that the input
/// ends only after a whole frame.
pub struct FrameReader<R: Read> {
    input: R,
    frames: u64,
}

/// Reads as much of `buf` as the input has; returns how much.
fn read_full<R: Read>(input: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl<R: Read> FrameReader<R> {
    pub fn new(mut input: R) -> Result<FrameReader<R>, SnapshotError> {
        let mut magic = vec![0u8; MAGIC.len()];
        let n = read_full(&mut input, &mut magic).map_err(io(Path::new("input")))?;
        if n != MAGIC.len() || magic != MAGIC {
            return Err(SnapshotError::NotSnapshot);
        }
        Ok(FrameReader { input, frames: 0 })
    }

    /// How many frames were read.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The next frame; `None` at the end of the input.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SnapshotError> {
        let index = self.frames + 1;
        let refused = |reason: String| SnapshotError::Refused { frame: index, what: "frame", reason };
        let mut header = [0u8; 8];
        match read_full(&mut self.input, &mut header).map_err(io(Path::new("input")))? {
            0 => return Ok(None),
            8 => {}
            _ => return Err(SnapshotError::Truncated(self.frames)),
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_FRAME_BYTES {
            return Err(refused(format!("length {len} is over the limit of {MAX_FRAME_BYTES} bytes")));
        }
        let mut body = vec![0u8; len as usize];
        if read_full(&mut self.input, &mut body).map_err(io(Path::new("input")))? != body.len() {
            return Err(SnapshotError::Truncated(self.frames));
        }
        if crc32c::crc32c(&body) != crc {
            return Err(refused("checksum does not match: the file is damaged".into()));
        }
        let frame = Frame::try_from_slice(&body).map_err(|e| refused(format!("cannot be decoded: {e}")))?;
        self.frames = index;
        Ok(Some(frame))
    }
}

/// What to export: decided by the caller, which knows the chain's rules.
#[derive(Clone, Debug)]
pub struct ExportPlan {
    /// A final height.
    pub height: u64,
    /// The lowest header to include (the oldest election height in `elections`, else `height`).
    pub headers_from: u64,
    /// Per election height, the keys the election reads.
    pub elections: Vec<(u64, Vec<Vec<u8>>)>,
}

/// What [`export`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportReport {
    pub height: u64,
    pub leaves: u64,
    pub rows: u64,
    pub frames: u64,
    pub bytes: u64,
}

/// The frames that open the snapshot `plan` describes: manifest, block, headers, elections.
pub fn head_frames(
    store: &StateStore,
    reader: &LogReader,
    chain_id: &str,
    plan: &ExportPlan,
) -> Result<Vec<Frame>, SnapshotError> {
    let height = plan.height;
    let missing = |what: String| SnapshotError::Export(what);
    store.check_history(height)?;
    let meta = store.block_meta(height)?.ok_or_else(|| missing(format!("no block at height {height}")))?;
    let genesis_hash = store.genesis_hash()?.ok_or_else(|| missing("the store has no genesis".into()))?;
    let (_, block_bytes) = reader.read(meta.pos)?;
    let block = Block::decode(&block_bytes).map_err(|e| missing(format!("block {height}: {e}")))?;
    let mut receipts = Vec::with_capacity(block.transactions.len());
    for tx in &block.transactions {
        let loc = store
            .tx_location(&tx.hash())?
            .ok_or_else(|| missing(format!("the receipt of {} in block {height}", tx.hash())))?;
        receipts.push(loc.receipt);
    }
    let mut headers = Vec::new();
    for h in plan.headers_from..height {
        store.check_history(h)?;
        let m = store.block_meta(h)?.ok_or_else(|| missing(format!("no header at height {h}")))?;
        headers.push(m.header);
    }
    let mut frames = vec![
        Frame::Manifest(Manifest {
            format: FORMAT,
            chain_id: chain_id.to_string(),
            genesis_hash,
            height,
            block_hash: meta.hash,
            state_root: meta.header.state_root,
        }),
        Frame::Block { block: block_bytes, receipts },
        Frame::Headers(headers),
    ];
    for (at, keys) in &plan.elections {
        store.check_history(*at)?;
        let mut records = Vec::with_capacity(keys.len());
        for key in keys {
            let (value, proof) = store.value_with_proof(key, *at)?;
            records.push(ProvenRecord {
                key: key.clone(),
                value,
                proof: aergo_primitives::types::to_vec_exact(&proof),
            });
        }
        frames.push(Frame::Election { height: *at, records });
    }
    Ok(frames)
}

/// Cuts `items` to [`PAGE_BYTES`] (keeping at least one).
fn within_page<K>(items: &mut Vec<(K, Vec<u8>)>, key_len: impl Fn(&K) -> usize) {
    let mut total = 0;
    let over = items.iter().position(|(k, v)| {
        total += key_len(k) + v.len();
        total > PAGE_BYTES
    });
    if let Some(at) = over {
        items.truncate(at.max(1));
    }
}

/// The `Leaves` frame of the leaves after `after` (from the first when `None`) at `height`, with
/// its range proof; `None` past the last leaf.
pub fn leaves_frame(
    store: &StateStore,
    height: u64,
    after: Option<[u8; 32]>,
) -> Result<Option<Frame>, SnapshotError> {
    store.check_history(height)?;
    let mut entries = store.leaves_page(height, after, LEAVES_PER_CHUNK)?;
    within_page(&mut entries, |_| 32);
    let Some(last) = entries.last().map(|e| e.0) else { return Ok(None) };
    let proof = store.range_proof(height, last)?;
    Ok(Some(Frame::Leaves { entries, proof: aergo_primitives::types::to_vec_exact(&proof) }))
}

/// The `Rows` frame of the contract rows after the key `after` at `height`; `None` past the last.
pub fn rows_frame(
    store: &StateStore,
    height: u64,
    after: Option<&[u8]>,
) -> Result<Option<Frame>, SnapshotError> {
    store.check_history(height)?;
    let mut rows = store.scan_ordered(SQL_PREFIX, after, height, ROWS_PER_CHUNK)?;
    within_page(&mut rows, Vec::len);
    Ok((!rows.is_empty()).then_some(Frame::Rows(rows)))
}

/// Writes the snapshot `plan` describes from `store` and the block log read by `reader`.
pub fn export<W: Write>(
    store: &StateStore,
    reader: &LogReader,
    chain_id: &str,
    plan: &ExportPlan,
    out: W,
) -> Result<(ExportReport, W), SnapshotError> {
    let out_err = |e: std::io::Error| SnapshotError::Io { path: "output".into(), source: e };
    let mut w = FrameWriter::new(out).map_err(out_err)?;
    for frame in head_frames(store, reader, chain_id, plan)? {
        w.write(&frame).map_err(out_err)?;
    }
    let height = plan.height;
    let mut report = ExportReport { height, ..ExportReport::default() };
    let mut after = None;
    while let Some(frame) = leaves_frame(store, height, after)? {
        if let Frame::Leaves { entries, .. } = &frame {
            report.leaves += entries.len() as u64;
            after = entries.last().map(|e| e.0);
        }
        w.write(&frame).map_err(out_err)?;
    }
    let mut after: Option<Vec<u8>> = None;
    while let Some(frame) = rows_frame(store, height, after.as_deref())? {
        if let Frame::Rows(rows) = &frame {
            report.rows += rows.len() as u64;
            after = rows.last().map(|r| r.0.clone());
        }
        w.write(&frame).map_err(out_err)?;
    }
    w.write(&Frame::End { leaves: report.leaves, rows: report.rows }).map_err(out_err)?;
    report.frames = w.frames;
    report.bytes = w.bytes;
    let out = w.finish().map_err(out_err)?;
    Ok((report, out))
}

/// The store as jmt's restore sees it: a fresh tree (no rightmost leaf to resume from) written
/// through [`StateStore::write_restored`].
struct RestoreTarget(Arc<StateStore>);

impl TreeReader for RestoreTarget {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        self.0.get_node_option(node_key)
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        self.0.get_value_option(max_version, key_hash)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        // Imports always start from an empty directory: nothing to resume.
        Ok(None)
    }
}

impl TreeWriter for RestoreTarget {
    fn write_node_batch(&self, batch: &NodeBatch) -> anyhow::Result<()> {
        Ok(self.0.write_restored(batch)?)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Manifest,
    Block,
    Headers,
    Elections,
    Leaves,
    Rows,
    Done,
}

/// An election's records as a snapshot gives them: `(height, [(key, value or absent)])`.
pub type ElectionRecords = (u64, Vec<(Vec<u8>, Option<Vec<u8>>)>);

/// What an import produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportReport {
    pub head: Head,
    pub leaves: u64,
    pub rows: u64,
    /// Election records written below the snapshot's height, per height.
    pub elections: Vec<(u64, usize)>,
}

/// Builds a data directory from snapshot frames given in order (see the module comment).
pub struct Importer {
    target: PathBuf,
    work: PathBuf,
    chain_id: String,
    genesis_hash: Hash,
    store: Option<Arc<StateStore>>,
    stage: Stage,
    frames: u64,
    manifest: Option<Manifest>,
    block: Option<(Block, Vec<u8>, Vec<Receipt>)>,
    /// State roots by height, of the block and the headers (authenticated by the block's hash).
    roots: BTreeMap<u64, Hash>,
    elections: Vec<ElectionRecords>,
    restore: Option<JellyfishMerkleRestore<Blake3>>,
    last_leaf: Option<[u8; 32]>,
    leaves: u64,
    last_row: Option<Vec<u8>>,
    rows: u64,
    check: Option<Check>,
}

/// A check the caller runs on the elections before the state is taken ([`Importer::with_check`]).
pub type Check = Box<dyn Fn(&Importer) -> Result<(), String> + Send>;

/// Where an import works, inside the data directory (same file system: its parts move into place
/// by rename).
pub const WORK_DIR: &str = ".importing";
/// Written into [`WORK_DIR`] once an import is complete and durable: from then on it is moved
/// into place, by [`settle`] if a crash interrupts the moves.
const COMPLETE: &str = "COMPLETE";
/// The parts of a data directory an import makes, in the order they are moved into place.
const PARTS: [&str; 2] = ["blocks", "state"];

/// Whether `dir` is absent or an empty directory.
fn vacant(dir: &Path) -> Result<bool, SnapshotError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io(dir)(e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io(dir))
}

/// Finishes or clears what an import left in `data_dir`: a complete import is moved into place, an
/// incomplete one removed. Returns whether an import was moved into place. Run before the chain
/// opens the directory.
pub fn settle(data_dir: &Path) -> Result<bool, SnapshotError> {
    let work = data_dir.join(WORK_DIR);
    if !work.exists() {
        return Ok(false);
    }
    if !work.join(COMPLETE).exists() {
        std::fs::remove_dir_all(&work).map_err(io(&work))?;
        tracing::info!(dir = %work.display(), "removed what an interrupted snapshot import left");
        return Ok(false);
    }
    for part in PARTS {
        let (from, to) = (work.join(part), data_dir.join(part));
        if !from.exists() {
            continue;
        }
        if !vacant(&to)? {
            return Err(SnapshotError::NotEmpty(to.display().to_string()));
        }
        match std::fs::remove_dir(&to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&to)(e)),
        }
        std::fs::rename(&from, &to).map_err(io(&to))?;
        sync_dir(data_dir)?;
    }
    std::fs::remove_dir_all(&work).map_err(io(&work))?;
    sync_dir(data_dir)?;
    Ok(true)
}

impl Importer {
    /// Starts an import into the data directory `target` (which may hold other files, such as
    /// the node's config and keys, but no chain: `state/` and `blocks/` absent or empty) for the
    /// chain `chain_id` whose genesis block hashes to `genesis_hash`. Works in
    /// `target/.importing`.
    pub fn new(target: &Path, chain_id: &str, genesis_hash: Hash) -> Result<Importer, SnapshotError> {
        settle(target)?;
        for part in PARTS {
            if !vacant(&target.join(part))? {
                return Err(SnapshotError::NotEmpty(target.display().to_string()));
            }
        }
        let work = target.join(WORK_DIR);
        std::fs::create_dir_all(&work).map_err(io(&work))?;
        let store = StateStore::open_with(&work.join("state"), crate::StateOptions { cache_bytes: 0 })?;
        Ok(Importer {
            target: target.to_path_buf(),
            work,
            chain_id: chain_id.to_string(),
            genesis_hash,
            store: Some(Arc::new(store)),
            stage: Stage::Manifest,
            frames: 0,
            manifest: None,
            block: None,
            roots: BTreeMap::new(),
            elections: Vec::new(),
            restore: None,
            last_leaf: None,
            leaves: 0,
            last_row: None,
            rows: 0,
            check: None,
        })
    }

    /// Runs `check` once the headers and elections are in, before the first leaves: an error
    /// refuses the snapshot.
    pub fn with_check(mut self, check: Check) -> Importer {
        self.check = Some(check);
        self
    }

    /// Gives up: removes what the import wrote.
    pub fn abort(mut self) {
        self.restore = None;
        self.store = None;
        let _ = std::fs::remove_dir_all(&self.work);
    }

    /// Leaves and rows taken so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.leaves, self.rows)
    }

    /// The manifest, once its frame was accepted.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// The election records accepted so far: `(height, [(key, value)])`.
    pub fn elections(&self) -> &[ElectionRecords] {
        &self.elections
    }

    /// The header (or the block's) at `height`, when the snapshot carries it.
    pub fn state_root_at(&self, height: u64) -> Option<Hash> {
        self.roots.get(&height).copied()
    }

    fn store(&self) -> Result<&Arc<StateStore>, SnapshotError> {
        self.store.as_ref().ok_or(SnapshotError::Export("the import was already finished".into()))
    }

    /// Checks and takes the next frame.
    pub fn add(&mut self, frame: Frame) -> Result<(), SnapshotError> {
        self.frames += 1;
        let index = self.frames;
        let what = frame.name();
        let refuse = |reason: String| SnapshotError::Refused { frame: index, what, reason };
        let stage = match &frame {
            Frame::Manifest(_) => Stage::Manifest,
            Frame::Block { .. } => Stage::Block,
            Frame::Headers(_) => Stage::Headers,
            Frame::Election { .. } => Stage::Elections,
            Frame::Leaves { .. } => Stage::Leaves,
            Frame::Rows(_) => Stage::Rows,
            Frame::End { .. } => Stage::Done,
        };
        let expected_next = match self.stage {
            Stage::Manifest | Stage::Block | Stage::Headers => stage == self.stage,
            Stage::Elections => matches!(stage, Stage::Elections | Stage::Leaves),
            Stage::Leaves => matches!(stage, Stage::Leaves | Stage::Rows | Stage::Done),
            Stage::Rows => matches!(stage, Stage::Rows | Stage::Done),
            Stage::Done => false,
        };
        if !expected_next {
            return Err(refuse(format!("out of order (expected what follows the {:?} stage)", self.stage)));
        }
        if self.stage == Stage::Elections && stage == Stage::Leaves {
            if let Some(check) = &self.check {
                check(self).map_err(|reason| SnapshotError::Refused {
                    frame: index,
                    what: "election",
                    reason,
                })?;
            }
        }
        // Leaving the leaves: the tree is complete (jmt freezes its right edge).
        if self.stage == Stage::Leaves && stage != Stage::Leaves {
            if let Some(restore) = self.restore.take() {
                restore.finish().map_err(|e| refuse(format!("completing the tree: {e}")))?;
            }
        }
        match frame {
            Frame::Manifest(m) => {
                if m.format != FORMAT {
                    return Err(refuse(format!("format {} (this node reads format {FORMAT})", m.format)));
                }
                if m.chain_id != self.chain_id {
                    return Err(refuse(format!(
                        "the snapshot is of chain {:?}, this node's is {:?}",
                        m.chain_id, self.chain_id
                    )));
                }
                if m.genesis_hash != self.genesis_hash {
                    return Err(refuse(format!(
                        "the snapshot's genesis is {}, this node's genesis file gives {}",
                        m.genesis_hash, self.genesis_hash
                    )));
                }
                if m.height == 0 {
                    return Err(refuse("a snapshot at genesis: start from the genesis file instead".into()));
                }
                self.manifest = Some(m);
                self.stage = Stage::Block;
            }
            Frame::Block { block: bytes, receipts } => {
                let m = self.manifest.as_ref().ok_or_else(|| refuse("no manifest".into()))?;
                let block = Block::decode(&bytes).map_err(|e| refuse(format!("cannot be decoded: {e}")))?;
                let h = &block.header;
                if block.hash() != m.block_hash || h.height != m.height || h.state_root != m.state_root {
                    return Err(refuse(format!(
                        "block {} at height {} does not match the manifest's {} at {}",
                        block.hash(),
                        h.height,
                        m.block_hash,
                        m.height
                    )));
                }
                if receipts.len() != block.transactions.len()
                    || receipts.iter().zip(&block.transactions).any(|(r, tx)| r.tx_hash != tx.hash())
                    || Receipt::compute_root(&receipts) != h.receipts_root
                {
                    return Err(refuse("the receipts are not the block's".into()));
                }
                if Block::compute_tx_root(&block.transactions) != h.tx_root {
                    return Err(refuse("the transactions root does not match".into()));
                }
                self.roots.insert(h.height, h.state_root);
                self.block = Some((block, bytes, receipts));
                self.stage = Stage::Headers;
            }
            Frame::Headers(headers) => {
                let (block, _, _) = self.block.as_ref().ok_or_else(|| refuse("no block".into()))?;
                let mut child_prev = block.header.prev_hash;
                let mut child_height = block.header.height;
                for header in headers.iter().rev() {
                    if header.height + 1 != child_height || header.hash() != child_prev {
                        return Err(refuse(format!(
                            "header at height {} is not the parent of the one at {child_height}",
                            header.height
                        )));
                    }
                    self.roots.insert(header.height, header.state_root);
                    child_prev = header.prev_hash;
                    child_height = header.height;
                }
                self.stage = Stage::Elections;
            }
            Frame::Election { height, records } => {
                let root = self
                    .roots
                    .get(&height)
                    .copied()
                    .ok_or_else(|| refuse(format!("no header at election height {height}")))?;
                let mut accepted = Vec::with_capacity(records.len());
                for r in records {
                    let proof = SparseMerkleProof::<Blake3>::try_from_slice(&r.proof)
                        .map_err(|e| refuse(format!("proof cannot be decoded: {e}")))?;
                    proof
                        .verify(RootHash(root.0), KeyHash::with::<Blake3>(&r.key), r.value.as_deref())
                        .map_err(|e| {
                            refuse(format!(
                                "record {} does not match the state root at height {height}: {e}",
                                hex::encode(&r.key)
                            ))
                        })?;
                    accepted.push((r.key, r.value));
                }
                self.elections.push((height, accepted));
                self.stage = Stage::Elections;
            }
            Frame::Leaves { entries, proof } => {
                let m = self.manifest.clone().ok_or_else(|| refuse("no manifest".into()))?;
                if entries.is_empty() {
                    return Err(refuse("an empty chunk".into()));
                }
                if let (Some(last), Some(first)) = (self.last_leaf, entries.first()) {
                    if first.0 <= last {
                        return Err(refuse("leaves are not in key-hash order".into()));
                    }
                }
                let proof = SparseMerkleRangeProof::<Blake3>::try_from_slice(&proof)
                    .map_err(|e| refuse(format!("range proof cannot be decoded: {e}")))?;
                if self.restore.is_none() {
                    let target = Arc::new(RestoreTarget(self.store()?.clone()));
                    self.restore = Some(
                        JellyfishMerkleRestore::new(target, m.height, RootHash(m.state_root.0))
                            .map_err(|e| refuse(format!("starting the tree: {e}")))?,
                    );
                }
                self.last_leaf = entries.last().map(|e| e.0);
                self.leaves += entries.len() as u64;
                let chunk = entries.into_iter().map(|(k, v)| (KeyHash(k), v)).collect();
                let restore = self.restore.as_mut().ok_or_else(|| refuse("no tree".into()))?;
                restore.add_chunk(chunk, proof).map_err(|e| {
                    refuse(format!("does not prove against the state root {}: {e}", m.state_root))
                })?;
                self.stage = Stage::Leaves;
            }
            Frame::Rows(rows) => {
                let height =
                    self.manifest.as_ref().map(|m| m.height).ok_or_else(|| refuse("no manifest".into()))?;
                let store = self.store()?.clone();
                for (key, value) in &rows {
                    if !key.starts_with(SQL_PREFIX) {
                        return Err(refuse(format!("row key {} is not a contract key", hex::encode(key))));
                    }
                    if self.last_row.as_ref().is_some_and(|last| key <= last) {
                        return Err(refuse("rows are not in key order".into()));
                    }
                    let in_tree = store.value_of_hash(height, KeyHash::with::<Blake3>(key).0)?;
                    if in_tree.as_ref() != Some(value) {
                        return Err(refuse(format!("row {} is not the state tree's", hex::encode(key))));
                    }
                    self.last_row = Some(key.clone());
                }
                store.write_rows_at(height, &rows)?;
                self.rows += rows.len() as u64;
                self.stage = Stage::Rows;
            }
            Frame::End { leaves, rows } => {
                if self.leaves == 0 {
                    return Err(refuse("the snapshot has no state".into()));
                }
                if (leaves, rows) != (self.leaves, self.rows) {
                    return Err(refuse(format!(
                        "it counts {leaves} leaves and {rows} rows, the snapshot held {} and {}",
                        self.leaves, self.rows
                    )));
                }
                self.stage = Stage::Done;
            }
        }
        Ok(())
    }

    /// Completes the import once the end frame was taken: writes the election records, the block
    /// to a new block log, the head, the LIB and the base; checks the root; moves the directory
    /// into place. Returns the head.
    pub fn finish(mut self) -> Result<ImportReport, SnapshotError> {
        let work = self.work.clone();
        let done = self.complete();
        if done.is_err() {
            let _ = std::fs::remove_dir_all(&work);
        }
        done
    }

    fn complete(&mut self) -> Result<ImportReport, SnapshotError> {
        if self.stage != Stage::Done {
            return Err(SnapshotError::Truncated(self.frames));
        }
        let store =
            self.store.take().ok_or(SnapshotError::Export("the import was already finished".into()))?;
        let (block, bytes, receipts) = self.block.take().ok_or(SnapshotError::Refused {
            frame: 2,
            what: "block",
            reason: "missing".into(),
        })?;
        let height = block.header.height;
        let mut elections = Vec::new();
        for (at, records) in &self.elections {
            let present: Vec<(Vec<u8>, Vec<u8>)> =
                records.iter().filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))).collect();
            if *at < height {
                store.write_values_at(*at, &present)?;
            }
            elections.push((*at, records.len()));
        }
        let blocks_dir = self.work.join("blocks");
        let pos = {
            let (mut log, _) = BlockLog::open(&blocks_dir, LogOptions::default(), None)?;
            log.append(height, &bytes)?
        };
        let head = store.install_base(&block, pos, &receipts, self.genesis_hash)?;
        let root = store.root_at(height)?;
        if root != block.header.state_root {
            return Err(SnapshotError::Refused {
                frame: self.frames,
                what: "end",
                reason: format!(
                    "the rebuilt tree's root {root} is not the header's {}",
                    block.header.state_root
                ),
            });
        }
        drop(store);
        let complete = self.work.join(COMPLETE);
        std::fs::write(&complete, b"")
            .and_then(|()| std::fs::File::open(&complete)?.sync_all())
            .map_err(io(&complete))?;
        sync_dir(&self.work)?;
        settle(&self.target)?;
        Ok(ImportReport { head, leaves: self.leaves, rows: self.rows, elections })
    }
}

/// Imports a snapshot read from `input` into `target` (see [`Importer`]).
pub fn import<R: Read>(input: R, mut importer: Importer) -> Result<ImportReport, SnapshotError> {
    let mut reader = match FrameReader::new(input) {
        Ok(reader) => reader,
        Err(e) => {
            importer.abort();
            return Err(e);
        }
    };
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) => {
                if let Err(e) = importer.add(frame) {
                    importer.abort();
                    return Err(e);
                }
            }
            Ok(None) => return importer.finish(),
            Err(e) => {
                importer.abort();
                return Err(e);
            }
        }
    }
}
