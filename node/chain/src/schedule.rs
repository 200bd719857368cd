//! Slots, epochs and who produces in them.
//!
//! The producer set of a block at height `h` is that of its epoch `(h - 1) / epoch_blocks`. Epoch 0
//! has the genesis producers. Epoch `e > 0` has the set elected ([`governance::elect`]) from the
//! state at height `e · epoch_blocks − epoch_blocks / 2`: half an epoch before the epoch starts, a
//! height that is final long before its first block is produced, so every node computes the same
//! set from the same state.

use aergo_config::genesis::Genesis;
use aergo_exec::governance::{self, RecordError, Records};
use aergo_primitives::types::{Address, BlockHeader, PublicKey};
use aergo_storage::StateStore;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// Why a block's slot or producer is wrong, or why the producer set of a height is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("timestamp {0} is not the start of a slot")]
    NotSlotStart(u64),
    #[error("slot {0} is not after its parent's")]
    NotAfterParent(u64),
    #[error("slot {slot} belongs to producer {expected}, not {got}")]
    WrongProducer { slot: u64, expected: Address, got: Address },
    #[error("the producer set is empty")]
    NoProducers,
    #[error("block producer {got} is not a Raft voter of this chain")]
    NotVoter { got: Address },
    /// The governance records the election reads could not be read or decoded: a fault of this
    /// node's state, not of any block. Nothing is elected (the genesis producers would be wrong).
    #[error("cannot elect the producers of epoch {epoch} from the state at height {height}: {source}")]
    Election { epoch: u64, height: u64, source: RecordError },
}

impl ScheduleError {
    /// A stable machine-readable name (logs, refusal reasons).
    pub fn reason(&self) -> &'static str {
        match self {
            ScheduleError::NotSlotStart(_) => "not_slot_start",
            ScheduleError::NotAfterParent(_) => "slot_not_after_parent",
            ScheduleError::WrongProducer { .. } => "wrong_producer",
            ScheduleError::NoProducers => "no_producers",
            ScheduleError::NotVoter { .. } => "not_a_voter",
            ScheduleError::Election { .. } => "election_unreadable",
        }
    }

    /// Whether this node's own state is at fault rather than the block it judged.
    pub fn is_local(&self) -> bool {
        matches!(self, ScheduleError::Election { .. })
    }
}

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
    /// A Raft chain: the voters' node keys sign its blocks, with no slots (`docs/repositories.md`).
    raft: bool,
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
            genesis_producers: Arc::new(genesis.signer_keys()),
            raft: !genesis.consensus.kind.is_dpos(),
            bp_count: genesis.consensus.bp_count.max(1) as usize,
            epoch_blocks: genesis.consensus.epoch_blocks.max(1),
            store: None,
            elected: Arc::default(),
        }
    }

    /// A branch's schedule (`docs/branches.md`): the chain's slot clock, and the fixed producer
    /// set of the branch's record for every height.
    pub fn for_branch(genesis: &Genesis, producers: Vec<PublicKey>) -> Schedule {
        // A branch's producers take slots in turn, whatever agrees on the chain it left.
        Schedule { genesis_producers: Arc::new(producers), raft: false, ..Schedule::from_genesis(genesis) }
    }

    /// Elections from `store` for the epochs after the first.
    pub fn with_store(genesis: &Genesis, store: Arc<StateStore>) -> Schedule {
        Schedule { store: Some(store), ..Schedule::from_genesis(genesis) }
    }

    /// Under Raft: that `header`'s producer is a voter in the parent's state (`voters`, the
    /// stored record of [`aergo_exec::governance::RAFT_VOTERS_KEY`]).
    pub fn check_voter(header: &BlockHeader, voters: Option<&[u8]>) -> Result<(), ScheduleError> {
        let records: Vec<governance::RaftVoterRecord> = match voters {
            Some(bytes) => {
                governance::decode_record(governance::RAFT_VOTERS_KEY, bytes).map_err(|source| {
                    ScheduleError::Election { epoch: 0, height: header.height.saturating_sub(1), source }
                })?
            }
            None => Vec::new(),
        };
        if records.iter().any(|v| v.node_key == header.producer) {
            Ok(())
        } else {
            Err(ScheduleError::NotVoter { got: header.producer.address() })
        }
    }

    /// Whether the chain is agreed by Raft (no slots, no elections).
    pub fn is_raft(&self) -> bool {
        self.raft
    }

    pub fn epoch_of(&self, height: u64) -> u64 {
        height.saturating_sub(1) / self.epoch_blocks
    }

    /// The height whose state elects the producers of `epoch` (none for epoch 0, none under Raft).
    pub fn election_height(&self, epoch: u64) -> Option<u64> {
        (epoch > 0 && !self.raft).then(|| epoch * self.epoch_blocks - self.epoch_blocks / 2)
    }

    /// Forgets elections (after a rollback, which may have changed the state they read).
    pub fn forget_elections(&self) {
        self.elected.lock().clear();
    }

    pub fn interval_ms(&self) -> u64 {
        self.interval
    }

    /// The producers of the blocks at `height` (the set changes only at epoch boundaries). An
    /// election whose records cannot be read is an error, and is not cached: the next call reads
    /// again.
    pub fn producers(&self, height: u64) -> Result<Arc<Vec<PublicKey>>, ScheduleError> {
        let epoch = self.epoch_of(height);
        let (Some(store), Some(at)) = (&self.store, self.election_height(epoch)) else {
            return Ok(self.genesis_producers.clone());
        };
        if let Some(set) = self.elected.lock().get(&epoch) {
            return Ok(set.clone());
        }
        let election = |source| ScheduleError::Election { epoch, height: at, source };
        let head = store
            .head()
            .map_err(|e| election(RecordError::Read { key: "the head".into(), reason: e.to_string() }))?
            .map_or(0, |h| h.height);
        let from = at.min(head);
        let set = Arc::new(
            self.elect(Records(|key: &[u8]| store.get_at(key, from)))
                .map_err(|source| ScheduleError::Election { epoch, height: from, source })?,
        );
        // An election height not reached yet (a node far behind, asked about the future) is not kept.
        if at <= head {
            self.elected.lock().insert(epoch, set.clone());
        }
        Ok(set)
    }

    /// The producer set elected from the governance records of one state.
    fn elect<F, E>(&self, mut records: Records<F>) -> Result<Vec<PublicKey>, RecordError>
    where
        F: FnMut(&[u8]) -> Result<Option<Vec<u8>>, E>,
        E: std::fmt::Display,
    {
        let candidates = records.candidates()?;
        let jailed = records.jailed()?;
        Ok(governance::elect(candidates, &self.genesis_producers, &jailed, self.bp_count))
    }

    /// Distinct producers needed to make a block final: ⌊2n/3⌋ + 1.
    /// The election heights at or below `height` whose epochs produce blocks above it: what a
    /// node that starts at `height` (from a snapshot) must read from state it does not rebuild.
    pub fn elections_needed_after(&self, height: u64) -> Vec<u64> {
        let epoch = self.epoch_of(height + 1);
        [epoch, epoch + 1]
            .into_iter()
            .filter_map(|e| self.election_height(e))
            .filter(|at| *at <= height)
            .collect()
    }

    /// The state keys an election reads, reading them through `read`.
    pub fn election_keys<F, E>(&self, mut read: F) -> Result<Vec<Vec<u8>>, RecordError>
    where
        F: FnMut(&[u8]) -> Result<Option<Vec<u8>>, E>,
        E: std::fmt::Display,
    {
        let mut keys = Vec::new();
        self.elect(Records(|key: &[u8]| {
            keys.push(key.to_vec());
            read(key)
        }))?;
        Ok(keys)
    }

    /// Under Raft, a majority of the voters.
    pub fn quorum(&self, height: u64) -> Result<usize, ScheduleError> {
        let n = self.producers(height)?.len();
        Ok(if self.raft { n / 2 + 1 } else { n * 2 / 3 + 1 })
    }

    /// The slot that contains `timestamp_ms` (slot 0 starts at genesis).
    pub fn slot_at(&self, timestamp_ms: u64) -> u64 {
        timestamp_ms.saturating_sub(self.genesis_ts) / self.interval
    }

    pub fn slot_start(&self, slot: u64) -> u64 {
        self.genesis_ts + slot * self.interval
    }

    /// The producer of `slot` in the producer set `set`.
    pub fn producer_in(set: &[PublicKey], slot: u64) -> Option<PublicKey> {
        (!set.is_empty()).then(|| set[(slot % set.len() as u64) as usize])
    }

    /// The next slot at or after `from_slot` in which `key` produces, in the producer set `set`.
    pub fn next_slot_in(set: &[PublicKey], key: &PublicKey, from_slot: u64) -> Option<u64> {
        let n = set.len() as u64;
        (from_slot..from_slot + n).find(|s| Self::producer_in(set, *s).as_ref() == Some(key))
    }

    /// The producer of `slot` for a block at `height`.
    pub fn producer_of(&self, slot: u64, height: u64) -> Result<Option<PublicKey>, ScheduleError> {
        Ok(Self::producer_in(&self.producers(height)?, slot))
    }

    /// The next slot at or after `from_slot` in which `key` produces a block at `height`.
    pub fn next_slot_of(
        &self,
        key: &PublicKey,
        from_slot: u64,
        height: u64,
    ) -> Result<Option<u64>, ScheduleError> {
        Ok(Self::next_slot_in(&self.producers(height)?, key, from_slot))
    }

    /// Checks that `header` is signed-for-slot by the right producer: its timestamp is the start of a
    /// slot after its parent's, and the producer is that slot's. (The signature is checked by the chain.)
    ///
    /// Under Raft there are no slots: the timestamp must be after the parent's (the slot returned
    /// is the one the timestamp falls in, for display); that the producer is a voter is checked
    /// against the parent's state ([`Schedule::check_voter`]).
    pub fn check(&self, header: &BlockHeader, parent_timestamp_ms: u64) -> Result<u64, ScheduleError> {
        if self.raft {
            let slot = self.slot_at(header.timestamp_ms);
            if header.timestamp_ms <= parent_timestamp_ms || header.timestamp_ms < self.genesis_ts {
                return Err(ScheduleError::NotAfterParent(slot));
            }
            return Ok(slot);
        }
        if header.timestamp_ms < self.genesis_ts
            || (header.timestamp_ms - self.genesis_ts) % self.interval != 0
        {
            return Err(ScheduleError::NotSlotStart(header.timestamp_ms));
        }
        let slot = self.slot_at(header.timestamp_ms);
        if header.timestamp_ms <= parent_timestamp_ms {
            return Err(ScheduleError::NotAfterParent(slot));
        }
        match self.producer_of(slot, header.height)? {
            Some(p) if p == header.producer => Ok(slot),
            Some(p) => Err(ScheduleError::WrongProducer {
                slot,
                expected: p.address(),
                got: header.producer.address(),
            }),
            None => Err(ScheduleError::NoProducers),
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
            access: None,
        };
        (Schedule::from_genesis(&g), keys)
    }

    #[test]
    fn slots_rotate_through_the_producers() {
        let (s, keys) = schedule(4);
        assert_eq!(s.quorum(1), Ok(3));
        assert_eq!(s.slot_at(10_000), 0);
        assert_eq!(s.slot_at(12_999), 2);
        assert_eq!(s.slot_start(3), 13_000);
        for slot in 0..12 {
            assert_eq!(s.producer_of(slot, 1), Ok(Some(keys[slot as usize % 4].public())));
        }
        assert_eq!(s.next_slot_of(&keys[1].public(), 6, 1), Ok(Some(9)));
        assert_eq!(schedule(1).0.quorum(1), Ok(1));
        assert_eq!(schedule(3).0.quorum(1), Ok(3));
        assert_eq!(schedule(21).0.quorum(1), Ok(15));
    }

    #[test]
    fn headers_must_be_on_a_slot_of_their_producer_after_the_parent() {
        let (s, keys) = schedule(4);
        let mut h = BlockHeader {
            version: 1,
            chain_id: "t".into(),
            branch: aergo_primitives::types::MAIN_BRANCH.into(),
            height: 5,
            prev_hash: aergo_primitives::types::Hash::ZERO,
            timestamp_ms: 12_000,
            producer: keys[2].public(),
            tx_root: aergo_primitives::types::Hash::ZERO,
            state_root: aergo_primitives::types::Hash::ZERO,
            receipts_root: aergo_primitives::types::Hash::ZERO,
        };
        assert_eq!(s.check(&h, 11_000), Ok(2));
        assert_eq!(s.check(&h, 12_000), Err(ScheduleError::NotAfterParent(2)));
        h.timestamp_ms = 12_001;
        assert_eq!(s.check(&h, 11_000), Err(ScheduleError::NotSlotStart(12_001)));
        h.timestamp_ms = 13_000;
        let err = s.check(&h, 11_000).unwrap_err();
        assert_eq!(err.reason(), "wrong_producer");
        assert!(err.to_string().contains("belongs to producer"), "{err}");
    }

    /// A damaged or unreadable election record stops the election with the cause; before, it read
    /// as "no candidates" and the genesis producers took every seat, cached for the whole epoch.
    #[test]
    fn an_unreadable_election_is_an_error_and_is_not_cached() {
        use aergo_exec::governance::{candidate_key, Candidate, CANDIDATES_KEY};
        use aergo_primitives::types::{Block, Hash, Signature};
        use aergo_storage::{ChangeSet, RecordPos, StateStore};
        let (genesis_schedule, keys) = schedule(2);
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(StateStore::open(dir.path()).unwrap());
        let commit = |height: u64, changes: Vec<(Vec<u8>, Option<Vec<u8>>)>| {
            let prepared = store.prepare(height, &ChangeSet::from_unsorted(changes)).unwrap();
            let header = BlockHeader {
                version: 1,
                chain_id: "t".into(),
                branch: aergo_primitives::types::MAIN_BRANCH.into(),
                height,
                prev_hash: Hash::ZERO,
                timestamp_ms: 10_000 + height * 1000,
                producer: keys[0].public(),
                tx_root: Hash::ZERO,
                state_root: Hash::ZERO,
                receipts_root: Hash::ZERO,
            };
            let block = Block { header, transactions: vec![], signature: Signature([0; 64]) };
            store.commit(&prepared, &block, RecordPos { segment: 0, offset: 0, len: 0 }, &[]).unwrap();
        };
        let s = Schedule { store: Some(store.clone()), epoch_blocks: 4, ..genesis_schedule };
        // Heights 1..=3: height 2 (epoch 1's election height) lists a candidate whose record is
        // garbage; height 3 repairs it.
        let voted = Keypair::from_seed("voted").public();
        let good = Candidate { p2p_address: "/ip4/127.0.0.1/tcp/1".into(), votes: 50, registered_at: 1 };
        for (height, record) in
            [(0, None), (1, None), (2, Some(vec![0xffu8; 3])), (3, Some(borsh::to_vec(&good).unwrap()))]
        {
            let mut changes: Vec<(Vec<u8>, Option<Vec<u8>>)> =
                vec![(b"sys/head".to_vec(), Some(borsh::to_vec(&(height, 0u64)).unwrap()))];
            if let Some(record) = record {
                changes.push((CANDIDATES_KEY.to_vec(), Some(borsh::to_vec(&vec![voted]).unwrap())));
                changes.push((candidate_key(&voted), Some(record)));
            }
            commit(height, changes);
        }
        let err = s.producers(5).unwrap_err();
        assert!(matches!(err, ScheduleError::Election { epoch: 1, height: 2, .. }), "{err}");
        assert!(err.is_local() && err.to_string().contains("cand/"), "{err}");
        assert!(s.producer_of(5, 5).is_err() && s.quorum(5).is_err());
        // Epoch 0 needs no election.
        assert_eq!(*s.producers(1).unwrap(), keys.iter().map(|k| k.public()).collect::<Vec<_>>());
        // Nothing was cached: once the records read (here: epoch 2, elected at height 6 → the head,
        // 3), the set is the voted candidate and a genesis producer.
        assert_eq!(*s.producers(9).unwrap(), vec![voted, keys[0].public()]);
    }
}
