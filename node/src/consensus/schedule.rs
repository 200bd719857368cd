//! Slots, epochs and who produces in them.
//!
//! The producer set of a block at height `h` is that of its epoch `(h - 1) / epoch_blocks`. Epoch 0
//! has the genesis producers. Epoch `e > 0` has the set elected ([`governance::elect`]) from the
//! state at height `e · epoch_blocks − epoch_blocks / 2`: half an epoch before the epoch starts, a
//! height that is final long before its first block is produced, so every node computes the same
//! set from the same state.

use aergo_config::genesis::Genesis;
use aergo_exec::governance::{self, Candidate, CANDIDATES_KEY, JAILED_KEY};
use aergo_primitives::types::{BlockHeader, PublicKey};
use aergo_storage::StateStore;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// The slot clock and the producer sets of a chain. Clones share the election cache.
#[derive(Clone)]
pub struct Schedule {
    genesis_ts: u64,
    interval: u64,
    genesis_producers: Arc<Vec<PublicKey>>,
    bp_count: usize,
    epoch_blocks: u64,
    store: Option<Arc<StateStore>>,
    elected: Arc<Mutex<HashMap<u64, Arc<Vec<PublicKey>>>>>,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedule")
            .field("interval", &self.interval)
            .field("epoch_blocks", &self.epoch_blocks)
            .finish()
    }
}

impl Schedule {
    /// The genesis producers for every epoch (no state to elect from).
    pub fn from_genesis(genesis: &Genesis) -> Schedule {
        Schedule {
            genesis_ts: genesis.timestamp_ms,
            interval: genesis.consensus.block_interval_ms.max(1),
            genesis_producers: Arc::new(genesis.producer_keys()),
            bp_count: genesis.consensus.bp_count.max(1) as usize,
            epoch_blocks: genesis.consensus.epoch_blocks.max(1),
            store: None,
            elected: Arc::default(),
        }
    }

    /// Elections from `store` for the epochs after the first.
    pub fn with_store(genesis: &Genesis, store: Arc<StateStore>) -> Schedule {
        Schedule { store: Some(store), ..Schedule::from_genesis(genesis) }
    }

    pub fn epoch_of(&self, height: u64) -> u64 {
        height.saturating_sub(1) / self.epoch_blocks
    }

    /// The height whose state elects the producers of `epoch` (none for epoch 0).
    pub fn election_height(&self, epoch: u64) -> Option<u64> {
        (epoch > 0).then(|| epoch * self.epoch_blocks - self.epoch_blocks / 2)
    }

    /// Forgets elections (after a rollback, which may have changed the state they read).
    pub fn forget_elections(&self) {
        self.elected.lock().clear();
    }

    pub fn interval_ms(&self) -> u64 {
        self.interval
    }

    /// The producers of the blocks at `height` (the set changes only at epoch boundaries).
    pub fn producers(&self, height: u64) -> Arc<Vec<PublicKey>> {
        let epoch = self.epoch_of(height);
        let (Some(store), Some(at)) = (&self.store, self.election_height(epoch)) else {
            return self.genesis_producers.clone();
        };
        if let Some(set) = self.elected.lock().get(&epoch) {
            return set.clone();
        }
        let head = store.head().ok().flatten().map_or(0, |h| h.height);
        let set = Arc::new(self.elect_at(store, at.min(head)));
        // An election height not reached yet (a node far behind, asked about the future) is not kept.
        if at <= head {
            self.elected.lock().insert(epoch, set.clone());
        }
        set
    }

    fn elect_at(&self, store: &StateStore, height: u64) -> Vec<PublicKey> {
        let read = |key: &[u8]| store.get_at(key, height).ok().flatten();
        let keys: Vec<PublicKey> =
            read(CANDIDATES_KEY).and_then(|b| borsh::from_slice(&b).ok()).unwrap_or_default();
        let candidates: Vec<(PublicKey, Candidate)> = keys
            .into_iter()
            .filter_map(|k| {
                let c = read(&governance::candidate_key(&k)).and_then(|b| borsh::from_slice(&b).ok())?;
                Some((k, c))
            })
            .collect();
        let jailed: Vec<PublicKey> =
            read(JAILED_KEY).and_then(|b| borsh::from_slice(&b).ok()).unwrap_or_default();
        governance::elect(candidates, &self.genesis_producers, &jailed, self.bp_count)
    }

    /// Distinct producers needed to make a block final: ⌊2n/3⌋ + 1.
    pub fn quorum(&self, height: u64) -> usize {
        self.producers(height).len() * 2 / 3 + 1
    }

    /// The slot that contains `timestamp_ms` (slot 0 starts at genesis).
    pub fn slot_at(&self, timestamp_ms: u64) -> u64 {
        timestamp_ms.saturating_sub(self.genesis_ts) / self.interval
    }

    pub fn slot_start(&self, slot: u64) -> u64 {
        self.genesis_ts + slot * self.interval
    }

    /// The producer of `slot` for a block at `height`.
    pub fn producer_of(&self, slot: u64, height: u64) -> Option<PublicKey> {
        let set = self.producers(height);
        (!set.is_empty()).then(|| set[(slot % set.len() as u64) as usize])
    }

    /// The next slot at or after `from_slot` in which `key` produces a block at `height`.
    pub fn next_slot_of(&self, key: &PublicKey, from_slot: u64, height: u64) -> Option<u64> {
        let n = self.producers(height).len() as u64;
        (from_slot..from_slot + n).find(|s| self.producer_of(*s, height).as_ref() == Some(key))
    }

    /// Checks that `header` is signed-for-slot by the right producer: its timestamp is the start of a
    /// slot after its parent's, and the producer is that slot's. (The signature is checked by the chain.)
    pub fn check(&self, header: &BlockHeader, parent_timestamp_ms: u64) -> Result<u64, String> {
        if header.timestamp_ms < self.genesis_ts
            || (header.timestamp_ms - self.genesis_ts) % self.interval != 0
        {
            return Err(format!("timestamp {} is not the start of a slot", header.timestamp_ms));
        }
        let slot = self.slot_at(header.timestamp_ms);
        if header.timestamp_ms <= parent_timestamp_ms {
            return Err(format!("slot {slot} is not after its parent's"));
        }
        match self.producer_of(slot, header.height) {
            Some(p) if p == header.producer => Ok(slot),
            Some(p) => Err(format!(
                "slot {slot} belongs to producer {}, not {}",
                p.address(),
                header.producer.address()
            )),
            None => Err("the producer set is empty".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aergo_config::genesis::{ConsensusParams, GenesisProducer};
    use aergo_primitives::crypto::Keypair;

    fn schedule(n: usize) -> (Schedule, Vec<Keypair>) {
        let keys: Vec<_> = (0..n).map(|i| Keypair::from_seed(&format!("bp{i}"))).collect();
        let g = Genesis {
            chain_id: "t".into(),
            timestamp_ms: 10_000,
            consensus: ConsensusParams { bp_count: n as u32, ..ConsensusParams::default() },
            balances: vec![],
            producers: keys
                .iter()
                .map(|k| GenesisProducer { public_key: hex::encode(k.public().0) })
                .collect(),
        };
        (Schedule::from_genesis(&g), keys)
    }

    #[test]
    fn slots_rotate_through_the_producers() {
        let (s, keys) = schedule(4);
        assert_eq!(s.quorum(1), 3);
        assert_eq!(s.slot_at(10_000), 0);
        assert_eq!(s.slot_at(12_999), 2);
        assert_eq!(s.slot_start(3), 13_000);
        for slot in 0..12 {
            assert_eq!(s.producer_of(slot, 1), Some(keys[slot as usize % 4].public()));
        }
        assert_eq!(s.next_slot_of(&keys[1].public(), 6, 1), Some(9));
        assert_eq!(schedule(1).0.quorum(1), 1);
        assert_eq!(schedule(3).0.quorum(1), 3);
        assert_eq!(schedule(21).0.quorum(1), 15);
    }

    #[test]
    fn headers_must_be_on_a_slot_of_their_producer_after_the_parent() {
        let (s, keys) = schedule(4);
        let mut h = BlockHeader {
            version: 1,
            chain_id: "t".into(),
            height: 5,
            prev_hash: aergo_primitives::types::Hash::ZERO,
            timestamp_ms: 12_000,
            producer: keys[2].public(),
            tx_root: aergo_primitives::types::Hash::ZERO,
            state_root: aergo_primitives::types::Hash::ZERO,
            receipts_root: aergo_primitives::types::Hash::ZERO,
        };
        assert_eq!(s.check(&h, 11_000), Ok(2));
        assert!(s.check(&h, 12_000).unwrap_err().contains("not after"));
        h.timestamp_ms = 12_001;
        assert!(s.check(&h, 11_000).unwrap_err().contains("start of a slot"));
        h.timestamp_ms = 13_000;
        assert!(s.check(&h, 11_000).unwrap_err().contains("belongs to producer"));
    }
}
