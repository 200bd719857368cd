//! State proofs (`docs/dapps.md`, "State proofs"): the documented check
//! ([`aergo_primitives::proof`], written from the page) accepts exactly what the tree's own check
//! accepts, for present and absent keys at several heights, and a changed byte anywhere in a
//! proof, a value or a root fails it.

use super::branch_tests::commit;
use super::state::{account_key, Blake3, StateStore};
use aergo_primitives::proof::{ProofError, SparseProof};
use aergo_primitives::types::{Address, Hash};

fn address(i: u32) -> Address {
    let mut a = [0u8; 20];
    a[..4].copy_from_slice(&i.to_be_bytes());
    Address(a)
}

/// Heights 0..=4: 3 000 accounts at 0, then each block changes 400, deletes 50 and adds 100.
fn store() -> (tempfile::TempDir, StateStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let mut prev = Hash::ZERO;
    let mut next = 0u32;
    for height in 0..5u64 {
        let mut changes = Vec::new();
        let fresh = if height == 0 { 3_000 } else { 100 };
        for _ in 0..fresh {
            changes.push((account_key(&address(next)), Some(format!("v{next}@{height}").into_bytes())));
            next += 1;
        }
        if height > 0 {
            for i in 0..400u32 {
                let a = (i * 7 + height as u32 * 13) % 3_000;
                changes.push((account_key(&address(a)), Some(format!("v{a}@{height}").into_bytes())));
            }
            for i in 0..50u32 {
                let a = (i * 31 + height as u32 * 101) % 3_000 + 3_000 * (i % 2);
                changes.push((account_key(&address(a)), None));
            }
        }
        changes.sort();
        changes.dedup_by(|a, b| a.0 == b.0);
        prev = commit(&store, height, prev, &changes);
    }
    (dir, store)
}

fn documented(store: &StateStore, key: &[u8], height: u64) -> (Option<Vec<u8>>, Vec<u8>, [u8; 32]) {
    let (value, bytes) = store.proof_bytes(key, height).unwrap();
    (value, bytes, store.root_at(height).unwrap().0)
}

#[test]
fn both_checks_agree_on_present_and_absent_keys_at_every_height() {
    let (_dir, store) = store();
    let (mut present, mut absent) = (0, 0);
    for height in 0..5u64 {
        for i in (0..3_600u32).step_by(7) {
            let key = account_key(&address(i));
            let (value, bytes, root) = documented(&store, &key, height);
            assert_eq!(value, store.get_at(&key, height).unwrap());
            let proof = SparseProof::decode(&bytes).unwrap();
            proof.verify(&root, &key, value.as_deref()).unwrap_or_else(|e| panic!("{i} at {height}: {e}"));
            let (_, theirs) = store.value_with_proof(&key, height).unwrap();
            theirs.verify(jmt::RootHash(root), jmt::KeyHash::with::<Blake3>(&key), value.as_deref()).unwrap();
            // The opposite claim fails both.
            let wrong: Option<&[u8]> = if value.is_some() { None } else { Some(b"x") };
            assert!(proof.verify(&root, &key, wrong).is_err());
            assert!(theirs.verify(jmt::RootHash(root), jmt::KeyHash::with::<Blake3>(&key), wrong).is_err());
            // Against another height's root (which differs), it fails.
            let other = store.root_at((height + 1) % 5).unwrap().0;
            assert!(matches!(proof.verify(&other, &key, value.as_deref()), Err(ProofError::Root { .. })));
            if value.is_some() {
                present += 1;
            } else {
                absent += 1;
            }
        }
    }
    assert!(present > 1_000 && absent > 100, "{present} present, {absent} absent");
}

#[test]
fn a_changed_byte_anywhere_fails_the_check() {
    let (_dir, store) = store();
    let height = 3;
    let mut cases = 0;
    for i in [5u32, 3_550, 3_599, 9_999] {
        let key = account_key(&address(i));
        let (value, bytes, root) = documented(&store, &key, height);
        SparseProof::decode(&bytes).unwrap().verify(&root, &key, value.as_deref()).unwrap();
        let check = |bytes: &[u8], root: &[u8; 32], key: &[u8], value: Option<&[u8]>| {
            SparseProof::decode(bytes).and_then(|p| p.verify(root, key, value))
        };
        for at in 0..bytes.len() {
            for flip in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[at] ^= flip;
                assert!(
                    check(&b, &root, &key, value.as_deref()).is_err(),
                    "proof byte {at} ^ {flip:#x} of {i}"
                );
            }
        }
        for at in 0..32 {
            let mut r = root;
            r[at] ^= 1;
            assert!(check(&bytes, &r, &key, value.as_deref()).is_err(), "root byte {at} of {i}");
        }
        for at in 0..key.len() {
            let mut k = key.clone();
            k[at] ^= 1;
            assert!(check(&bytes, &root, &k, value.as_deref()).is_err(), "key byte {at} of {i}");
        }
        if let Some(v) = &value {
            for at in 0..v.len() {
                let mut v = v.clone();
                v[at] ^= 1;
                assert!(check(&bytes, &root, &key, Some(&v)).is_err(), "value byte {at} of {i}");
            }
        }
        cases += 1;
    }
    assert_eq!(cases, 4);
}
