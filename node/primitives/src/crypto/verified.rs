//! Memory of checks already made, so that the same bytes are not checked twice.
//!
//! - [`Verified`]: transactions whose signature passed, keyed by the transaction's hash and
//!   holding the signature's bytes. The admission stage fills it; a block's import skips the
//!   signature check of every transaction found in it with the same signature bytes
//!   (`docs/exec.md`, "Verify once").
//! - The public keys that passed rule 1 (decodes, not of small order), so that a sender's key
//!   is decompressed for that rule once, not for every transaction it sends.
//!
//! Both hold only what passed: a failure is never remembered, so nothing an attacker sends can
//! make a later check skip anything. Both are bounded and forget in insertion order; forgetting
//! costs only the check being made again.

use crate::types::{Hash, Transaction};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

const SHARDS: usize = 16;

fn shard_of(bytes: &[u8; 32]) -> usize {
    // Hashes are uniform; a key's first byte is too (a point's y coordinate).
    bytes[0] as usize % SHARDS
}

#[derive(Default)]
struct Shard {
    signatures: HashMap<Hash, [u8; 64]>,
    order: VecDeque<Hash>,
}

/// Transactions whose signature passed, by hash, with the signature that passed.
///
/// A hit needs the same hash *and* the same 64 signature bytes. The hash covers the whole signed
/// body (chain, branch, sender key, nonce, recipient, amounts, payload), so a hit is a check of
/// exactly the bytes checked before: the check is a pure function of them and cannot answer
/// differently. A known body under another signature misses and is checked.
pub struct Verified {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verified({} entries, {} hits, {} misses)", self.len(), self.hits(), self.misses())
    }
}

impl Verified {
    /// A set of at most `capacity` transactions (at least one per shard).
    pub fn new(capacity: usize) -> Verified {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Verified {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, hash: &Hash) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while holding a shard leaves it consistent (each step is one map operation).
        self.shards[shard_of(&hash.0)].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers that `tx`'s signature passed. Call it only with a transaction whose check passed.
    pub fn insert(&self, tx: &Transaction) {
        let hash = tx.hash();
        let mut shard = self.shard(&hash);
        if shard.signatures.insert(hash, tx.signature.0).is_none() {
            shard.order.push_back(hash);
            while shard.order.len() > self.per_shard {
                if let Some(old) = shard.order.pop_front() {
                    shard.signatures.remove(&old);
                }
            }
        }
    }

    /// Whether `tx` — its hash and its signature bytes — passed before.
    pub fn contains(&self, tx: &Transaction) -> bool {
        let hash = tx.hash();
        let hit = self.shard(&hash).signatures.get(&hash) == Some(&tx.signature.0);
        if hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).order.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks skipped: lookups that found the transaction.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that did not find it (the check was made).
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

/// Public keys that passed rule 1, at most `KEYS_PER_SHARD` × 16 of them (1 MiB); a full shard
/// is emptied and fills again.
const KEYS_PER_SHARD: usize = 2048;

fn good_keys() -> &'static [Mutex<HashSet<[u8; 32]>>] {
    static KEYS: OnceLock<Vec<Mutex<HashSet<[u8; 32]>>>> = OnceLock::new();
    KEYS.get_or_init(|| (0..SHARDS).map(|_| Mutex::new(HashSet::new())).collect())
}

/// Whether `key` passed rule 1 before.
pub(super) fn key_known_good(key: &[u8; 32]) -> bool {
    good_keys()[shard_of(key)].lock().unwrap_or_else(|e| e.into_inner()).contains(key)
}

/// Remembers that `key` passed rule 1.
pub(super) fn remember_good_key(key: &[u8; 32]) {
    let mut shard = good_keys()[shard_of(key)].lock().unwrap_or_else(|e| e.into_inner());
    if shard.len() >= KEYS_PER_SHARD {
        shard.clear();
    }
    shard.insert(*key);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{test_tx, Keypair};
    use crate::types::{Payload, Signature};

    fn tx(key: &Keypair, nonce: u64) -> Transaction {
        test_tx(key, "t", nonce, Keypair::from_seed("to").address(), 1, 1, Payload::Transfer)
    }

    #[test]
    fn a_hit_needs_the_same_hash_and_the_same_signature() {
        let key = Keypair::from_seed("v");
        let set = Verified::new(64);
        let a = tx(&key, 1);
        assert!(!set.contains(&a));
        set.insert(&a);
        assert!(set.contains(&a));
        // The same body under other signature bytes (a forged one, or another valid encoding).
        let mut forged = Transaction::new(a.body.clone(), Signature([7; 64]));
        assert_eq!(forged.hash(), a.hash());
        assert!(!set.contains(&forged));
        forged = Transaction::new(a.body.clone(), a.signature);
        assert!(set.contains(&forged));
        assert!(!set.contains(&tx(&key, 2)));
        assert_eq!((set.hits(), set.misses()), (2, 3));
    }

    #[test]
    fn the_set_is_bounded_and_forgets_the_oldest_first() {
        let key = Keypair::from_seed("b");
        let set = Verified::new(SHARDS * 4);
        let txs: Vec<Transaction> = (0..400).map(|n| tx(&key, n)).collect();
        for t in &txs {
            set.insert(t);
            set.insert(t); // twice: counted once
        }
        assert!(set.len() <= SHARDS * 4, "{}", set.len());
        assert!(set.contains(&txs[399]));
        assert!(!set.contains(&txs[0]));
    }
}
