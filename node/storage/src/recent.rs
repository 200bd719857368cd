//! The newest committed version of recently written state values, in memory in front of RocksDB.
//!
//! A block's execution reads its parent's state: mostly accounts and rows that the last blocks
//! wrote. Each such read was a RocksDB seek (memtables, then the levels' files, the block cache),
//! 60 % of both engines' time on transfers. This cache answers them from a hash table.
//!
//! What an entry means: `key hash → (height, value)` is the newest version of the value that the
//! store has committed, written at `height` (`None`: deleted then). A read at height `h ≥ height`
//! is answered by it — no version exists between `height` and the head. A read below `height`
//! (an older snapshot, a block executed on top of a parent older than the newest write) goes to
//! RocksDB. A value that is not in the cache (never written since the store was opened, or
//! evicted) goes to RocksDB too; reads never fill the cache, so it can only hold newest versions:
//!
//! - [`StateStore::commit`](super::StateStore::commit) records the block's values *before* its
//!   batch is written and forgets them if the write fails. A reader at the parent height meanwhile
//!   sees an entry above its height and reads RocksDB; nobody reads at the new height before the
//!   new head is written.
//! - [`StateStore::rollback_to`](super::StateStore::rollback_to) drops every entry above its
//!   target: those versions are gone, and the next block at those heights may not write the same
//!   keys.
//!
//! Bounded by weight (bytes, [`ENTRY_OVERHEAD`] per entry plus the value); `quick_cache` evicts.
//! Reads do not mark entries as used (see [`RecentValues::get`]), so what stays is what was written
//! last. Capacity 0 turns it off.

use jmt::{KeyHash, Version};
use quick_cache::sync::Cache;
use quick_cache::{OptionsBuilder, Weighter};
use std::sync::Arc;

/// What an entry costs besides its value's bytes: the key, the height, the pointer and the
/// table's own slot, roughly.
pub const ENTRY_OVERHEAD: u64 = 96;

/// Each shard has a lock that every read takes (shared): more shards, fewer reads of one lock
/// from two cores at once. Fewer are used for a small capacity.
const SHARDS: usize = 64;

#[derive(Clone)]
struct Entry {
    version: Version,
    value: Option<Arc<[u8]>>,
}

#[derive(Clone)]
struct Bytes;

impl Weighter<[u8; 32], Entry> for Bytes {
    fn weight(&self, _key: &[u8; 32], entry: &Entry) -> u64 {
        ENTRY_OVERHEAD + entry.value.as_ref().map_or(0, |v| v.len() as u64)
    }
}

type Table = Cache<[u8; 32], Entry, Bytes, ahash::RandomState>;

/// See the module notes.
pub struct RecentValues {
    table: Option<Table>,
}

impl RecentValues {
    /// A cache of about `bytes` (0: none).
    pub fn new(bytes: u64) -> RecentValues {
        let items = (bytes / (ENTRY_OVERHEAD + 32)).max(16) as usize;
        let options = OptionsBuilder::new()
            .estimated_items_capacity(items)
            .weight_capacity(bytes)
            .shards(SHARDS)
            .build();
        let table = match options {
            Ok(options) if bytes > 0 => {
                Some(Cache::with_options(options, Bytes, Default::default(), Default::default()))
            }
            _ => None,
        };
        RecentValues { table }
    }

    /// The value of `key_hash` as of `height`, if the cache knows it: `Some(None)` when it was
    /// deleted, `None` when RocksDB must be asked.
    pub fn get(&self, key_hash: &KeyHash, height: Version) -> Option<Option<Vec<u8>>> {
        // A peek: it does not mark the entry as used, which would write to it on every read from
        // every core (the line moving between the execution workers' caches). What stays is then
        // what was written last, which is what this cache is for.
        let entry = self.table.as_ref()?.peek(&key_hash.0)?;
        (entry.version <= height).then(|| entry.value.map(|v| v.to_vec()))
    }

    /// Records values written at their versions (a block about to be committed).
    pub fn record<'a>(&self, values: impl IntoIterator<Item = (Version, &'a KeyHash, Option<&'a [u8]>)>) {
        if let Some(table) = &self.table {
            for (version, key_hash, value) in values {
                table.insert(key_hash.0, Entry { version, value: value.map(Arc::from) });
            }
        }
    }

    /// Forgets `keys` (their write failed).
    pub fn forget<'a>(&self, keys: impl IntoIterator<Item = &'a KeyHash>) {
        if let Some(table) = &self.table {
            for key_hash in keys {
                table.remove(&key_hash.0);
            }
        }
    }

    /// Drops every version above `height` (rolled back).
    pub fn drop_above(&self, height: Version) {
        if let Some(table) = &self.table {
            table.retain(|_, entry| entry.version <= height);
        }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.table.as_ref().map_or(0, |t| t.len())
    }

    /// Bytes the entries held now weigh (values and per-entry overhead), and the most they may.
    pub fn weight_and_capacity(&self) -> (u64, u64) {
        self.table.as_ref().map_or((0, 0), |t| (t.weight(), t.capacity()))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kh(n: u8) -> KeyHash {
        KeyHash([n; 32])
    }

    #[test]
    fn an_entry_answers_at_and_above_its_height_only() {
        let cache = RecentValues::new(1 << 20);
        cache.record([(5, &kh(1), Some(&b"five"[..])), (5, &kh(2), None)]);
        assert_eq!(cache.get(&kh(1), 5), Some(Some(b"five".to_vec())));
        assert_eq!(cache.get(&kh(1), 9), Some(Some(b"five".to_vec())));
        assert_eq!(cache.get(&kh(1), 4), None, "an older snapshot reads the store");
        assert_eq!(cache.get(&kh(2), 7), Some(None), "a delete is remembered");
        assert_eq!(cache.get(&kh(3), 7), None, "never written: the store");
        cache.record([(6, &kh(1), Some(&b"six"[..]))]);
        assert_eq!(cache.get(&kh(1), 5), None);
        assert_eq!(cache.get(&kh(1), 6), Some(Some(b"six".to_vec())));
        cache.drop_above(5);
        assert_eq!(cache.get(&kh(1), 6), None, "the rolled-back version is gone");
        assert_eq!(cache.get(&kh(2), 6), Some(None), "versions at or below the target stay");
        cache.forget([&kh(2)]);
        assert_eq!(cache.get(&kh(2), 6), None);
    }

    #[test]
    fn it_stays_within_its_bytes_and_capacity_zero_holds_nothing() {
        let cache = RecentValues::new(64 * 1024);
        let keys: Vec<KeyHash> = (0..10_000u32)
            .map(|i| {
                let mut k = [0u8; 32];
                k[..4].copy_from_slice(&i.to_le_bytes());
                KeyHash(k)
            })
            .collect();
        cache.record(keys.iter().map(|k| (1, k, Some(&[7u8; 24][..]))));
        let most = (64 * 1024 / (ENTRY_OVERHEAD + 24)) as usize;
        assert!(cache.len() <= most + most / 8, "{} entries in 64 KiB", cache.len());
        assert!(cache.len() > most / 2, "{} entries in 64 KiB", cache.len());
        let off = RecentValues::new(0);
        off.record(keys.iter().map(|k| (1, k, None)));
        assert!(off.is_empty());
        assert_eq!(off.get(&keys[0], 1), None);
    }
}
