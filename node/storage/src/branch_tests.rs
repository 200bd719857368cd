//! A branch's copy-on-write store (`docs/branches.md`) against a store that replayed the branch's
//! history from genesis: the same values, tree roots, proofs and ordered scans at every height.

use super::changes::{Change, ChangeSet};
use super::state::{StateError, StateOptions, StateStore};
use super::RecordPos;
use aergo_primitives::types::{Block, BlockHeader, Hash, PublicKey, Signature, SQL_PREFIX};
use proptest::prelude::*;
use std::sync::Arc;

/// Commits `changes` as block `height` of branch `on` on top of `prev`; returns the block's hash.
fn commit_on(on: &str, store: &StateStore, height: u64, prev: Hash, changes: &[Change]) -> Hash {
    let set = ChangeSet::from_unsorted(changes.to_vec());
    let prepared = store.prepare(height, &set).unwrap();
    let header = BlockHeader {
        version: aergo_primitives::types::TxBody::version_for(on),
        chain_id: "branch-test".into(),
        branch: on.into(),
        height,
        prev_hash: prev,
        timestamp_ms: 1_000 * (height + 1),
        producer: PublicKey([0; 32]),
        tx_root: Hash::ZERO,
        state_root: prepared.root,
        receipts_root: Hash::ZERO,
    };
    let block = Block { header, transactions: Vec::new(), signature: Signature([0; 64]) };
    let pos = RecordPos { segment: 0, offset: height * 100, len: 1 };
    store.commit(&prepared, &block, pos, &[]).unwrap();
    block.hash()
}

pub(crate) fn commit(store: &StateStore, height: u64, prev: Hash, changes: &[Change]) -> Hash {
    commit_on("main", store, height, prev, changes)
}

/// Commits blocks `from..` with `blocks`' changes, on top of `prev`; returns the last hash.
fn commit_all(on: &str, store: &StateStore, from: u64, mut prev: Hash, blocks: &[Vec<Change>]) -> Hash {
    for (i, changes) in blocks.iter().enumerate() {
        prev = commit_on(on, store, from + i as u64, prev, changes);
    }
    prev
}

fn key(i: u8) -> Vec<u8> {
    // Half accounts, half contract rows (those are kept in key order too).
    if i % 2 == 0 {
        format!("acct/{i:03}").into_bytes()
    } else {
        let mut k = SQL_PREFIX.to_vec();
        k.extend_from_slice(format!("c/t/{i:03}").as_bytes());
        k
    }
}

const KEYS: u8 = 24;

fn block_changes() -> impl Strategy<Value = Vec<Change>> {
    prop::collection::vec(
        (0..KEYS, prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..6))),
        1..6,
    )
    .prop_map(|v| {
        let mut seen = std::collections::BTreeMap::new();
        for (k, val) in v {
            seen.insert(key(k), val);
        }
        seen.into_iter().collect()
    })
}

/// Everything a reader can ask at `height`: each key's value (by a single read and by a reader),
/// the root, the ordered rows (whole and in pages of 1 and 3), a proof of each key checked against
/// the root.
type Everything = (Vec<Option<Vec<u8>>>, Hash, Vec<(Vec<u8>, Vec<u8>)>);

fn everything_at(store: &StateStore, height: u64) -> Everything {
    let root = store.root_at(height).unwrap();
    let mut reader = store.reader_at(height).unwrap();
    let mut values = Vec::new();
    for i in 0..KEYS {
        let k = key(i);
        let v = store.get_at(&k, height).unwrap();
        assert_eq!(reader.get(&k).unwrap(), v, "a reader and a read disagree on key {i} at {height}");
        let (proven, proof) = store.value_with_proof(&k, height).unwrap();
        assert_eq!(proven, v, "the proof's value of key {i} at {height}");
        proof
            .verify(jmt::RootHash(root.0), jmt::KeyHash::with::<super::state::Blake3>(&k), v.as_deref())
            .unwrap_or_else(|e| panic!("the proof of key {i} at {height} does not verify: {e}"));
        let (_, bytes) = store.proof_bytes(&k, height).unwrap();
        aergo_primitives::proof::SparseProof::decode(&bytes)
            .and_then(|p| p.verify(&root.0, &k, v.as_deref()))
            .unwrap_or_else(|e| panic!("the documented check of key {i}'s proof at {height} fails: {e}"));
        values.push(v);
    }
    let rows = store.scan_at(SQL_PREFIX, height).unwrap();
    for page in [1, 3] {
        let mut paged = Vec::new();
        loop {
            let after = paged.last().map(|(k, _): &(Vec<u8>, Vec<u8>)| k.clone());
            let got = store.scan_ordered(SQL_PREFIX, after.as_deref(), height, page).unwrap();
            let n = got.len();
            paged.extend(got);
            if n < page {
                break;
            }
        }
        assert_eq!(paged, rows, "ordered rows at {height} in pages of {page}");
    }
    (values, root, rows)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Main runs `before` blocks, the branch is made at a final `base` among them, main goes on
    /// with `after` blocks, the branch with `own`: the branch reads at every height exactly what a
    /// store that replayed main up to the base and then the branch's blocks reads, and main is
    /// untouched by the branch.
    #[test]
    fn a_branch_reads_as_a_replay_of_its_history(
        before in prop::collection::vec(block_changes(), 1..6),
        base_pick in any::<prop::sample::Index>(),
        after in prop::collection::vec(block_changes(), 0..4),
        own in prop::collection::vec(block_changes(), 1..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let main = Arc::new(StateStore::open(&dir.path().join("main")).unwrap());
        let base = base_pick.index(before.len()) as u64;
        let mut hashes = Vec::new();
        let mut prev = Hash::ZERO;
        for (h, c) in before.iter().enumerate() {
            prev = commit(&main, h as u64, prev, c);
            hashes.push(prev);
        }
        main.set_finalized(base, hashes[base as usize]).unwrap();
        let main_top = commit_all("main", &main, before.len() as u64, prev, &after);
        let main_height = (before.len() + after.len()) as u64 - 1;
        let main_reads: Vec<_> = (0..=main_height).map(|h| everything_at(&main, h)).collect();

        let branch = StateStore::open_branch(
            &dir.path().join("branch"), StateOptions::default(), main.clone(), base).unwrap();
        prop_assert_eq!(branch.head().unwrap().unwrap().height, base);
        prop_assert_eq!(branch.root_at(base).unwrap(), main.root_at(base).unwrap());
        let top = commit_all("feature", &branch, base + 1, hashes[base as usize], &own);
        let branch_height = base + own.len() as u64;

        // The replay: main's blocks up to the base, then the branch's, on a store of its own.
        let replay = StateStore::open(&dir.path().join("replay")).unwrap();
        let replayed = commit_all("main", &replay, 0, Hash::ZERO, &before[..=base as usize]);
        prop_assert_eq!(replayed, hashes[base as usize]);
        let replay_top = commit_all("feature", &replay, base + 1, replayed, &own);
        prop_assert_eq!(top, replay_top, "the same blocks, the same state roots");
        for h in 0..=branch_height {
            prop_assert_eq!(everything_at(&branch, h), everything_at(&replay, h), "height {}", h);
            let meta = branch.block_meta(h).unwrap().unwrap();
            prop_assert_eq!(Some(h), branch.height_of(&meta.hash).unwrap());
        }
        prop_assert_eq!(branch.block_metas_from(0).unwrap().len() as u64, branch_height + 1);
        // The change index: the keys each range of blocks wrote, the same through the branch
        // (its own heights, the parent's at or below the base) as on the replay.
        let history: Vec<&Vec<Change>> = before[..=base as usize].iter().chain(&own).collect();
        for a in 0..branch_height {
            for b in a + 1..=branch_height {
                let want: std::collections::BTreeSet<Vec<u8>> = history[(a + 1) as usize..=b as usize]
                    .iter()
                    .flat_map(|c| c.iter().map(|(k, _)| k.clone()))
                    .collect();
                prop_assert_eq!(&branch.changed_keys(a, b, usize::MAX).unwrap(), &want, "({}, {}]", a, b);
                prop_assert_eq!(&replay.changed_keys(a, b, usize::MAX).unwrap(), &want, "({}, {}]", a, b);
            }
        }
        // Main's blocks above the base are not the branch's.
        if main_height > base {
            let above = main.block_meta(base + 1).unwrap().unwrap().hash;
            prop_assert_eq!(branch.height_of(&above).unwrap(), None);
        }
        // Main is as it was.
        for h in 0..=main_height {
            prop_assert_eq!(&everything_at(&main, h), &main_reads[h as usize], "main at {}", h);
        }
        prop_assert_eq!(main.head().unwrap().unwrap().hash, main_top);

        // Reopened (the parent's store as before): the same reads.
        drop(branch);
        let branch = StateStore::open_branch(
            &dir.path().join("branch"), StateOptions { cache_bytes: 0 }, main.clone(), base).unwrap();
        for h in 0..=branch_height {
            prop_assert_eq!(everything_at(&branch, h), everything_at(&replay, h), "reopened, height {}", h);
        }
    }
}

/// A branch's blocks above its base roll back like `main`'s; the base itself does not.
#[test]
fn a_branch_rolls_back_to_its_base_and_no_further() {
    let dir = tempfile::tempdir().unwrap();
    let main = Arc::new(StateStore::open(&dir.path().join("main")).unwrap());
    let a = vec![(key(0), Some(vec![1])), (key(1), Some(vec![1]))];
    let g = commit(&main, 0, Hash::ZERO, &a);
    main.set_finalized(0, g).unwrap();
    let branch =
        StateStore::open_branch(&dir.path().join("b"), StateOptions::default(), main.clone(), 0).unwrap();
    commit_on("feature", &branch, 1, g, &[(key(0), None), (key(3), Some(vec![3]))]);
    assert_eq!(branch.get_at(&key(0), 1).unwrap(), None, "deleted on the branch");
    assert_eq!(branch.get_at(&key(1), 1).unwrap(), Some(vec![1]), "the parent's, never written");
    assert_eq!(branch.scan_at(SQL_PREFIX, 1).unwrap(), vec![(key(1), vec![1]), (key(3), vec![3])]);
    branch.rollback_to(0).unwrap();
    assert_eq!(branch.head().unwrap().unwrap().hash, g);
    assert_eq!(branch.get_at(&key(0), 0).unwrap(), Some(vec![1]));
    let other = commit_on("feature", &branch, 1, g, &[(key(5), Some(vec![5]))]);
    assert_eq!(branch.get_at(&key(0), 1).unwrap(), Some(vec![1]), "the rolled-back deletion is gone");
    assert_eq!(branch.get_at(&key(3), 1).unwrap(), None, "the rolled-back row is gone");
    assert_eq!(branch.head().unwrap().unwrap().hash, other);
    assert_eq!(branch.rollback_to(0).unwrap().hash, g, "back at the base, the parent's block");
    assert_eq!(main.head().unwrap().unwrap().hash, g, "main never moved");
}

/// A base that is not final is refused, and so is a directory made for another base.
#[test]
fn a_branch_base_must_be_final_and_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let main = Arc::new(StateStore::open(&dir.path().join("main")).unwrap());
    let g = commit(&main, 0, Hash::ZERO, &[(key(0), Some(vec![1]))]);
    let one = commit(&main, 1, g, &[(key(0), Some(vec![2]))]);
    main.set_finalized(0, g).unwrap();
    let err = StateStore::open_branch(&dir.path().join("b"), StateOptions::default(), main.clone(), 1)
        .err()
        .expect("a base above the LIB");
    assert!(matches!(err, StateError::BaseNotFinal { base: 1, lib: 0 }), "{err}");
    assert!(!dir.path().join("b").exists(), "refused before anything was made");
    let b = StateStore::open_branch(&dir.path().join("b"), StateOptions::default(), main.clone(), 0).unwrap();
    assert_eq!(b.get_at(&key(0), 0).unwrap(), Some(vec![1]));
    drop(b);
    main.set_finalized(1, one).unwrap();
    let err = StateStore::open_branch(&dir.path().join("b"), StateOptions::default(), main.clone(), 1)
        .err()
        .expect("a directory made for base 0");
    assert!(err.to_string().contains("was made for a base at height 0"), "{err}");
    assert_eq!(main.leaves_page(0, None, 10).unwrap().len(), 1, "main serves its leaves");
    let b = StateStore::open_branch(&dir.path().join("b"), StateOptions::default(), main, 0).unwrap();
    assert!(matches!(b.leaves_page(0, None, 10), Err(StateError::NotForBranch(_))));
}

/// The change index follows the chain: a rollback takes its blocks' entries with it, the block
/// made again in their place has its own; a range with more keys than asked for is refused.
#[test]
fn the_change_index_follows_rollbacks_and_refuses_too_many_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let v = |s: &str| Some(s.as_bytes().to_vec());
    let b0 = commit(&store, 0, Hash::ZERO, &[(key(0), v("a"))]);
    let b1 = commit(&store, 1, b0, &[(key(1), v("b")), (key(2), v("c"))]);
    commit(&store, 2, b1, &[(key(3), v("d"))]);
    let all = store.changed_keys(0, 2, 10).unwrap();
    assert_eq!(all, [key(1), key(2), key(3)].into_iter().collect(), "in key order, each once");
    assert_eq!(store.changed_keys(0, 0, 10).unwrap().len(), 0, "an empty range");
    let err = store.changed_keys(0, 2, 2).unwrap_err().to_string();
    assert!(err.contains("more than 2 state keys changed"), "{err}");
    store.rollback_to(1).unwrap();
    assert_eq!(store.changed_keys(1, 2, 10).unwrap().len(), 0, "block 2's entry went with it");
    commit(&store, 2, b1, &[(key(4), v("e"))]);
    let again: Vec<Vec<u8>> = store.changed_keys(1, 2, 10).unwrap().into_iter().collect();
    assert_eq!(again, [key(4)]);
}

/// A transaction's index entry: unchanged bytes for every transaction no merge brought in (as
/// written before merges existed), the merge's hash after them otherwise; anything else is damage.
#[test]
fn a_tx_location_names_its_merge_only_when_it_has_one() {
    use super::state::TxLocation;
    use aergo_primitives::types::{Receipt, ReceiptStatus};
    let receipt = Receipt { tx_hash: Hash([7; 32]), status: ReceiptStatus::Success, fee: 3 };
    let plain = TxLocation {
        height: 9,
        block_hash: Hash([1; 32]),
        index: 2,
        receipt: receipt.clone(),
        merged_by: None,
    };
    let old = borsh::to_vec(&(9u64, Hash([1; 32]), 2u32, receipt)).unwrap();
    assert_eq!(borsh::to_vec(&plain).unwrap(), old);
    assert_eq!(borsh::from_slice::<TxLocation>(&old).unwrap(), plain);
    let merged = TxLocation { merged_by: Some(Hash([5; 32])), ..plain };
    let bytes = borsh::to_vec(&merged).unwrap();
    assert_eq!(bytes.len(), old.len() + 32);
    assert_eq!(borsh::from_slice::<TxLocation>(&bytes).unwrap(), merged);
    let err = borsh::from_slice::<TxLocation>(&bytes[..old.len() + 5]).unwrap_err().to_string();
    assert!(err.contains("5 bytes after a transaction location"), "{err}");
}
