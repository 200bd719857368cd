//! Branch and tag records (`docs/branches.md`): what `create_branch` and `create_tag` write in the
//! state of the branch they are sent to.
//!
//! State keys (values borsh):
//! - `sys/branch/<name>` → [`BranchRecord`];
//! - `sys/branches` → `Vec<String>`: every branch made on this branch, in the order made (the
//!   name rule reads it; at most [`MAX_REFS`]);
//! - `sys/tag/<name>` → [`TagRecord`]; `sys/tags` → `Vec<String>`, likewise;
//! - `sys/merged/<source>` → [`MergedRecord`]: the last merge of branch `source` into this one
//!   (the next merge's base);
//! - `sys/branch-members/<name>` → `Vec<PublicKey>`: a private branch's member nodes (identity
//!   keys; `create_private_branch`), beside its unchanged record. A branch without it is public.
//!
//! A record names its base or tagged block by height alone: the block at that height on the
//! branch holding the record is fixed once the record's own block is (it descends from it), so
//! the hash is read from the block index, never stored twice.

use super::governance::GovernanceFailure;
use super::{Accounts, ExecError};
use aergo_primitives::refs::{clash, name_problem};
use aergo_primitives::types::{Address, Hash, PublicKey};
use borsh::{BorshDeserialize, BorshSerialize};

pub const BRANCHES_KEY: &[u8] = b"sys/branches";
pub const TAGS_KEY: &[u8] = b"sys/tags";
/// Most branches, and most tags, made on one branch.
pub const MAX_REFS: usize = 4096;
/// Most producers of a branch.
pub const MAX_BRANCH_PRODUCERS: usize = 64;
/// Most accounts besides the creator that may merge a branch.
pub const MAX_MERGERS: usize = 64;
/// Most member nodes of a private branch.
pub const MAX_BRANCH_MEMBERS: usize = 64;

/// Where a private branch's member nodes are kept.
pub fn members_key(name: &str) -> Vec<u8> {
    [b"sys/branch-members/".as_slice(), name.as_bytes()].concat()
}

/// A branch's member nodes: `Some` for a private branch, `None` for a public one (or no branch).
pub fn branch_members<E>(
    mut get: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>, E>,
    name: &str,
) -> Result<Result<Option<Vec<PublicKey>>, String>, E> {
    Ok(match get(&members_key(name))? {
        None => Ok(None),
        Some(bytes) => borsh::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("the member record of {name:?} is damaged: {e}")),
    })
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BranchRecord {
    pub name: String,
    /// The branch it was made on.
    pub parent: String,
    /// Its base: this height of the parent (its first own block is `base_height + 1`).
    pub base_height: u64,
    pub producers: Vec<PublicKey>,
    pub creator: Address,
    /// The parent's height of the block holding the `create_branch` transaction.
    pub created_at: u64,
    /// Who besides the creator may sign a merge of the branch.
    pub mergers: Vec<Address>,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TagRecord {
    pub name: String,
    pub branch: String,
    pub height: u64,
    pub creator: Address,
    /// The branch's height of the block holding the `create_tag` transaction.
    pub created_at: u64,
}

/// The last merge of a branch into the branch whose state holds this record.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct MergedRecord {
    /// The source's block the merge went up to: the next merge's base.
    pub upto: u64,
    pub upto_hash: Hash,
    /// This branch's height of the block holding the merge.
    pub at: u64,
    pub merge_tx: Hash,
}

pub fn merged_key(source: &str) -> Vec<u8> {
    [b"sys/merged/".as_slice(), source.as_bytes()].concat()
}

/// Most transactions one merge replays: a merge of more is refused and names the highest
/// `upto` that fits (the CLI picks it).
pub const MAX_MERGE_TXS: usize = 20_000;

/// Checks a merge of `source` into `target` (the branch whose state `get` reads, as of the
/// block before the merge) signed by `sender`, up to the source's height `upto`, and gives its
/// merge base: the source's base, or the `upto` of its last merge into `target`. The one
/// place these rules live: execution applies the merge with it and the chain asks it which
/// blocks of the source to read. `carried`: the merge is a `merge_private` (a private branch's
/// transactions travel in it); a private branch merges only so, a public one never.
pub fn merge_base<E>(
    mut get: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>, E>,
    target: &str,
    sender: &Address,
    source: &str,
    upto: u64,
    carried: bool,
) -> Result<Result<u64, GovernanceFailure>, E> {
    let refuse = |why: String| Ok(Err(GovernanceFailure::Merge(why)));
    if source == target {
        return refuse(format!("cannot merge {source:?} into {target:?}"));
    }
    let decode_failed = |what: &str, e: std::io::Error| {
        Err(GovernanceFailure::Merge(format!("the {what} record of {source:?} is damaged: {e}")))
    };
    let record: BranchRecord = match get(&branch_key(source))? {
        Some(bytes) => match borsh::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => return Ok(decode_failed("branch", e)),
        },
        None => {
            return refuse(format!(
            "{source:?} is not a branch made on {target:?}: a branch merges into the branch it was made on"
        ))
        }
    };
    if record.creator != *sender && !record.mergers.contains(sender) {
        return refuse(format!("only the creator of {source:?} or its mergers may merge it"));
    }
    match (branch_members(&mut get, source)?, carried) {
        (Err(why), _) => return refuse(why),
        (Ok(Some(_)), false) => {
            return refuse(format!(
                "{source:?} is a private branch: it merges by replay with its transactions carried \
                 (merge_private; aergo merge on a member node)"
            ))
        }
        (Ok(None), true) => {
            return refuse(format!("{source:?} is a public branch: its nodes read it, merge it with merge"))
        }
        (Ok(Some(_)), true) | (Ok(None), false) => {}
    }
    let base = match get(&merged_key(source))? {
        Some(bytes) => match borsh::from_slice::<MergedRecord>(&bytes) {
            Ok(m) => m.upto,
            Err(e) => return Ok(decode_failed("merge", e)),
        },
        None => record.base_height,
    };
    if upto <= base {
        return refuse(format!(
            "{source:?} is merged into {target:?} up to its height {base}: nothing to merge up to {upto}"
        ));
    }
    Ok(Ok(base))
}

/// What a merge transaction writes on the target (its replayed transactions run after it, in
/// the same block: `super::merge`).
#[allow(clippy::too_many_arguments)]
pub fn merge<A: Accounts>(
    acc: &mut A,
    target: &str,
    height: u64,
    sender: &Address,
    merge_tx: Hash,
    source: &str,
    (upto, upto_hash): (u64, Hash),
    carried: bool,
) -> Result<Result<(), GovernanceFailure>, ExecError> {
    if let Err(failure) = merge_base(|k| acc.get_raw(k), target, sender, source, upto, carried)? {
        return Ok(Err(failure));
    }
    let record = MergedRecord { upto, upto_hash, at: height, merge_tx };
    super::governance::write(acc, merged_key(source), &record)?;
    Ok(Ok(()))
}

pub fn branch_key(name: &str) -> Vec<u8> {
    [b"sys/branch/".as_slice(), name.as_bytes()].concat()
}

pub fn tag_key(name: &str) -> Vec<u8> {
    [b"sys/tag/".as_slice(), name.as_bytes()].concat()
}

/// Whether `key` is one of this module's keys (a system key: see `governance::is_system_key`).
pub fn is_ref_key(key: &[u8]) -> bool {
    key.starts_with(b"sys/branch/")
        || key.starts_with(b"sys/tag/")
        || key.starts_with(b"sys/merged/")
        || key.starts_with(b"sys/branch-members/")
        || key == BRANCHES_KEY
        || key == TAGS_KEY
}

/// What `create_branch` (and, with `members`, `create_private_branch`) does on branch `on` at
/// block `height`, sent by `creator` (whose key is `creator_key`).
#[allow(clippy::too_many_arguments)]
pub fn create_branch<A: Accounts>(
    acc: &mut A,
    on: &str,
    height: u64,
    creator: Address,
    creator_key: PublicKey,
    name: &str,
    base_height: u64,
    producers: &[PublicKey],
    mergers: &[Address],
    members: Option<&[PublicKey]>,
) -> Result<Result<(), GovernanceFailure>, ExecError> {
    if let Some(why) = name_problem(name, on) {
        return Ok(Err(GovernanceFailure::RefName(why)));
    }
    // The order of these checks is part of the chain's rules: it picks the reason a receipt
    // gives when a transaction has several problems.
    if let Some(members) = members {
        if members.is_empty() {
            return Ok(Err(GovernanceFailure::PrivateBranch(
                "a private branch names at least one member node".into(),
            )));
        }
        if let Some(failure) = too_many("members", members.len(), MAX_BRANCH_MEMBERS) {
            return Ok(Err(failure));
        }
        if let Some(m) = first_repeat(members) {
            return Ok(Err(GovernanceFailure::PrivateBranch(format!(
                "member node {} is listed twice",
                hex::encode(m.0)
            ))));
        }
    }
    // At or below the parent of this block: a base this block descends from (it is final once
    // this block is, which is when nodes start to use the branch).
    if base_height >= height {
        return Ok(Err(GovernanceFailure::BaseAhead { base: base_height, height }));
    }
    let lengths =
        [("producers", producers.len(), MAX_BRANCH_PRODUCERS), ("mergers", mergers.len(), MAX_MERGERS)];
    if let Some(failure) = lengths.into_iter().find_map(|(what, len, max)| too_many(what, len, max)) {
        return Ok(Err(failure));
    }
    if let Some(p) = first_repeat(producers) {
        return Ok(Err(GovernanceFailure::RepeatedCandidate(p.address())));
    }
    let record = BranchRecord {
        name: name.into(),
        parent: on.into(),
        base_height,
        producers: if producers.is_empty() { vec![creator_key] } else { producers.to_vec() },
        creator,
        created_at: height,
        mergers: mergers.to_vec(),
    };
    let made = record_ref(acc, ("branch", "branches", BRANCHES_KEY), name, branch_key(name), &record)?;
    if let (Ok(()), Some(members)) = (&made, members) {
        super::governance::write(acc, members_key(name), &members.to_vec())?;
    }
    Ok(made)
}

/// `what` has `len` entries where at most `max` are allowed.
fn too_many(what: &'static str, len: usize, max: usize) -> Option<GovernanceFailure> {
    (len > max).then_some(GovernanceFailure::TooMany { what, count: len, max })
}

/// The first entry of `items` that an earlier one repeats.
fn first_repeat<T: Ord + Copy>(items: &[T]) -> Option<T> {
    let mut seen = std::collections::BTreeSet::new();
    items.iter().copied().find(|item| !seen.insert(*item))
}

/// Writes `record` under `key` and lists `name` under `list` — (kind, plural, list key) — unless
/// the name clashes with a listed one or the list is full.
fn record_ref<A: Accounts, T: BorshSerialize>(
    acc: &mut A,
    (kind, plural, list): (&'static str, &'static str, &[u8]),
    name: &str,
    key: Vec<u8>,
    record: &T,
) -> Result<Result<(), GovernanceFailure>, ExecError> {
    let mut names: Vec<String> = super::governance::read(acc, list)?.unwrap_or_default();
    if let Some(taken) = clash(name, &names) {
        return Ok(Err(GovernanceFailure::RefTaken { kind, name: name.into(), taken: taken.clone() }));
    }
    if names.len() >= MAX_REFS {
        return Ok(Err(GovernanceFailure::TooMany { what: plural, count: names.len(), max: MAX_REFS }));
    }
    super::governance::write(acc, key, record)?;
    names.push(name.into());
    super::governance::write(acc, list.to_vec(), &names)?;
    Ok(Ok(()))
}

/// What `create_tag` does on branch `on` at block `height`.
pub fn create_tag<A: Accounts>(
    acc: &mut A,
    on: &str,
    height: u64,
    creator: Address,
    name: &str,
    tagged: u64,
) -> Result<Result<(), GovernanceFailure>, ExecError> {
    if let Some(why) = name_problem(name, on) {
        return Ok(Err(GovernanceFailure::RefName(why)));
    }
    if tagged >= height {
        return Ok(Err(GovernanceFailure::BaseAhead { base: tagged, height }));
    }
    let record =
        TagRecord { name: name.into(), branch: on.into(), height: tagged, creator, created_at: height };
    record_ref(acc, ("tag", "tags", TAGS_KEY), name, tag_key(name), &record)
}
