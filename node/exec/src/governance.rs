//! Staking, voting and block-producer candidates: the state the DPoS election reads.
//!
//! State keys (values borsh):
//! - `stake/<address>` → [`Stake`]: the locked amount and the height it last changed;
//! - `vote/<address>` → `Vec<PublicKey>`: the candidates the account votes for;
//! - `cand/<public key>` → [`Candidate`]: p2p address and the stake voting for it;
//! - `sys/candidates` → `Vec<PublicKey>`: every registered candidate, in registration order;
//! - `sys/jailed` → `Vec<PublicKey>`: producers caught signing two blocks for one slot, never elected
//!   again;
//! - the branch and tag records (`sys/branch/…`, `sys/tag/…`: [`super::branches`]).
//!
//! Every voter's whole stake counts for each candidate it lists (as in aergo). The votes of a
//! candidate are kept up to date as stakes and votes change, so the election reads one record per
//! candidate. [`elect`] picks the producer set from the state at a height; see
//! the consensus schedule (`aergo_chain::schedule::Schedule`) for which height.

use super::{Accounts, ExecError};
use aergo_primitives::types::{Account, Address, Amount, PublicKey, Transaction};
use borsh::{BorshDeserialize, BorshSerialize};

pub const CANDIDATES_KEY: &[u8] = b"sys/candidates";
pub const JAILED_KEY: &[u8] = b"sys/jailed";
/// Longest p2p address a candidate may register.
pub const MAX_P2P_ADDRESS: usize = 256;
/// The voters of a chain agreed by Raft (`docs/repositories.md`): a `Vec<RaftVoterRecord>`,
/// written at genesis and changed by `raft_admin` transactions. Absent on a DPoS chain.
pub const RAFT_VOTERS_KEY: &[u8] = b"sys/raft/voters";
/// Most voters of a Raft chain.
pub const MAX_RAFT_VOTERS: usize = 64;

/// A voter of a Raft chain, as its state records it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct RaftVoterRecord {
    /// The node's identity key: its p2p peer id and the key its blocks are signed with.
    pub node_key: PublicKey,
    /// Where its p2p layer listens (a multiaddr).
    pub address: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Stake {
    pub amount: Amount,
    /// Height of the block that last changed it (the unstake lock counts from there).
    pub since: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Candidate {
    pub p2p_address: String,
    pub votes: Amount,
    pub registered_at: u64,
}

/// Whether `key` is one of the keys above: what a governance transaction's access set covers
/// ([`super::access::AccessSet::allows_key`]). The block's own `sys/` keys are not.
pub fn is_system_key(key: &[u8]) -> bool {
    key.starts_with(b"stake/")
        || key.starts_with(b"vote/")
        || key.starts_with(b"cand/")
        || key == CANDIDATES_KEY
        || key == JAILED_KEY
        || key == RAFT_VOTERS_KEY
        || super::branches::is_ref_key(key)
        || super::members::is_access_key(key)
}

pub fn stake_key(a: &Address) -> Vec<u8> {
    [b"stake/".as_slice(), &a.0].concat()
}

pub fn vote_key(a: &Address) -> Vec<u8> {
    [b"vote/".as_slice(), &a.0].concat()
}

pub fn candidate_key(k: &PublicKey) -> Vec<u8> {
    [b"cand/".as_slice(), &k.0].concat()
}

/// Why a governance transaction failed (it still pays its fee and uses its nonce). The message is
/// what its receipt says, and receipts are hashed into the block: a message is never reworded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GovernanceFailure {
    #[error("stake amount must be above zero")]
    ZeroStake,
    #[error("balance too low: {balance} after the fee, the stake needs {amount}")]
    StakeAboveBalance { balance: Amount, amount: Amount },
    #[error("unstake of {amount}: the stake is {staked}")]
    UnstakeAboveStake { amount: Amount, staked: Amount },
    #[error("the stake is locked until height {0}")]
    StakeLocked(u64),
    #[error("{count} candidates, at most {max} may be voted for")]
    TooManyVotes { count: usize, max: usize },
    #[error("candidate {0} is listed twice")]
    RepeatedCandidate(Address),
    #[error("{0} is not a registered candidate")]
    NotACandidate(Address),
    #[error("p2p address must be 1 to {MAX_P2P_ADDRESS} bytes")]
    P2pAddressLength,
    #[error("p2p address {0:?} is not a multiaddr")]
    P2pAddressInvalid(String),
    #[error("not evidence of equivocation: {0}")]
    NotEvidence(EvidenceError),
    #[error("{0} was already reported")]
    AlreadyReported(Address),
    #[error("{0}")]
    RefName(String),
    #[error("height {base} is not below this block's height {height}")]
    BaseAhead { base: u64, height: u64 },
    #[error("{count} {what}, at most {max}")]
    TooMany { what: &'static str, count: usize, max: usize },
    #[error("{kind} name {name:?} is taken by {taken:?}")]
    RefTaken { kind: &'static str, name: String, taken: String },
    #[error("{0}")]
    Merge(String),
    #[error("{0}")]
    PrivateBranch(String),
    #[error("this chain is not agreed by Raft")]
    NotRaft,
    #[error("{0} is not a voter: only a voter's node key changes the voters")]
    NotRaftVoter(Address),
    #[error("{0} is a voter already")]
    AlreadyVoter(Address),
    #[error("{0} is not a voter")]
    NotAVoter(Address),
    #[error("the last voter cannot be removed")]
    LastVoter,
    #[error("this repository is not private")]
    NotPrivate,
    #[error("{0} is not an admin member")]
    NotAdmin(Address),
    #[error("the last admin cannot be removed or demoted")]
    LastAdmin,
    #[error("{0} is not a member")]
    NotAMember(Address),
    #[error("the node of {0} is allowed already")]
    NodeAllowed(Address),
    #[error("the node of {0} is not allowed")]
    NodeNotAllowed(Address),
}

impl GovernanceFailure {
    /// A stable machine-readable name.
    pub fn reason(&self) -> &'static str {
        match self {
            GovernanceFailure::ZeroStake => "zero_stake",
            GovernanceFailure::StakeAboveBalance { .. } => "stake_above_balance",
            GovernanceFailure::UnstakeAboveStake { .. } => "unstake_above_stake",
            GovernanceFailure::StakeLocked(_) => "stake_locked",
            GovernanceFailure::TooManyVotes { .. } => "too_many_votes",
            GovernanceFailure::RepeatedCandidate(_) => "repeated_candidate",
            GovernanceFailure::NotACandidate(_) => "not_a_candidate",
            GovernanceFailure::P2pAddressLength => "p2p_address_length",
            GovernanceFailure::P2pAddressInvalid(_) => "p2p_address_invalid",
            GovernanceFailure::NotEvidence(_) => "not_evidence",
            GovernanceFailure::AlreadyReported(_) => "already_reported",
            GovernanceFailure::RefName(_) => "ref_name",
            GovernanceFailure::BaseAhead { .. } => "base_ahead",
            GovernanceFailure::TooMany { .. } => "too_many",
            GovernanceFailure::RefTaken { .. } => "ref_taken",
            GovernanceFailure::Merge(_) => "merge_refused",
            GovernanceFailure::PrivateBranch(_) => "private_branch",
            GovernanceFailure::NotRaft => "not_raft",
            GovernanceFailure::NotRaftVoter(_) => "not_raft_voter",
            GovernanceFailure::AlreadyVoter(_) => "already_voter",
            GovernanceFailure::NotAVoter(_) => "not_a_voter",
            GovernanceFailure::LastVoter => "last_voter",
            GovernanceFailure::NotPrivate => "not_private",
            GovernanceFailure::NotAdmin(_) => "not_admin",
            GovernanceFailure::LastAdmin => "last_admin",
            GovernanceFailure::NotAMember(_) => "not_a_member",
            GovernanceFailure::NodeAllowed(_) => "node_allowed",
            GovernanceFailure::NodeNotAllowed(_) => "node_not_allowed",
        }
    }
}

/// A membership change of a Raft chain: by a voter, to the voter set in the state.
fn raft_admin<A: Accounts>(
    acc: &mut A,
    sender: PublicKey,
    change: &aergo_primitives::types::RaftAdmin,
) -> Result<Result<(), GovernanceFailure>, ExecError> {
    use aergo_primitives::types::RaftAdmin;
    let Some(mut voters) = read::<Vec<RaftVoterRecord>, _>(acc, RAFT_VOTERS_KEY)? else {
        return Ok(Err(GovernanceFailure::NotRaft));
    };
    // A voter's node key, or on a private repository an admin member.
    if !voters.iter().any(|v| v.node_key == sender) && !super::members::is_admin(acc, &sender.address())? {
        return Ok(Err(GovernanceFailure::NotRaftVoter(sender.address())));
    }
    let key = *change.node_key();
    let known = voters.iter().any(|v| v.node_key == key);
    match change {
        RaftAdmin::AddVoter { address, .. } => {
            if address.is_empty() || address.len() > MAX_P2P_ADDRESS {
                return Ok(Err(GovernanceFailure::P2pAddressLength));
            }
            if address.parse::<multiaddr::Multiaddr>().is_err() {
                return Ok(Err(GovernanceFailure::P2pAddressInvalid(address.clone())));
            }
            if known {
                return Ok(Err(GovernanceFailure::AlreadyVoter(key.address())));
            }
            if voters.len() >= MAX_RAFT_VOTERS {
                return Ok(Err(GovernanceFailure::TooMany {
                    what: "voters",
                    count: voters.len() + 1,
                    max: MAX_RAFT_VOTERS,
                }));
            }
            voters.push(RaftVoterRecord { node_key: key, address: address.clone() });
            write(acc, RAFT_VOTERS_KEY.to_vec(), &voters)?;
        }
        RaftAdmin::RemoveVoter { .. } => {
            if !known {
                return Ok(Err(GovernanceFailure::NotAVoter(key.address())));
            }
            if voters.len() == 1 {
                return Ok(Err(GovernanceFailure::LastVoter));
            }
            voters.retain(|v| v.node_key != key);
            write(acc, RAFT_VOTERS_KEY.to_vec(), &voters)?;
        }
        // Nothing changes in the state: the leader acts on the applied transaction.
        RaftAdmin::TransferLeader { .. } if !known => {
            return Ok(Err(GovernanceFailure::NotAVoter(key.address())))
        }
        RaftAdmin::TransferLeader { .. } => {}
    }
    Ok(Ok(()))
}

/// Why a report is not evidence of equivocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("a header of another chain")]
    OtherChain,
    #[error("two different producers")]
    TwoProducers,
    #[error("two different slots")]
    TwoSlots,
    #[error("the same block twice")]
    SameBlock,
    #[error("first signature: {0}")]
    FirstSignature(String),
    #[error("second signature: {0}")]
    SecondSignature(String),
}

/// Staking parameters (from the genesis).
#[derive(Clone, Copy, Debug)]
pub struct Rules<'a> {
    pub chain_id: &'a str,
    /// The branch the block is on.
    pub branch: &'a str,
    pub height: u64,
    pub unstake_lock_blocks: u64,
    pub max_votes: usize,
}

pub(crate) fn read<T: BorshDeserialize, A: Accounts>(
    acc: &mut A,
    key: &[u8],
) -> Result<Option<T>, ExecError> {
    match acc.get_raw(key)? {
        Some(bytes) => decode_record(key, &bytes).map(Some).map_err(|e| {
            ExecError::State(aergo_storage::StateError::Decode {
                what: "governance record",
                reason: e.to_string(),
            })
        }),
        None => Ok(None),
    }
}

/// Why a governance record could not be had. Execution, the election and the RPC read the records
/// through this module alone, and none of them takes an unreadable or damaged record for "none":
/// an empty candidate list read from a failing disk would elect the genesis producers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read governance record {key}: {reason}")]
    Read { key: String, reason: String },
    #[error("governance record {key} is damaged: {reason}")]
    Damaged { key: String, reason: String },
}

/// A state key as an operator reads it: its text prefix, and the rest in hex where it is binary.
fn key_name(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if text.bytes().all(|b| b.is_ascii_graphic()) => text.to_string(),
        _ => match key.iter().position(|b| *b == b'/') {
            Some(i) => format!("{}{}", String::from_utf8_lossy(&key[..=i]), hex::encode(&key[i + 1..])),
            None => hex::encode(key),
        },
    }
}

/// Decodes a stored governance record.
pub fn decode_record<T: BorshDeserialize>(key: &[u8], bytes: &[u8]) -> Result<T, RecordError> {
    borsh::from_slice(bytes).map_err(|e| RecordError::Damaged { key: key_name(key), reason: e.to_string() })
}

/// The governance records of one state, through `get`: a key's stored bytes (the state store at a
/// height, for the election and the RPC).
pub struct Records<F>(pub F);

impl<F, E> Records<F>
where
    F: FnMut(&[u8]) -> Result<Option<Vec<u8>>, E>,
    E: std::fmt::Display,
{
    /// One record, `None` when the key holds nothing.
    pub fn get<T: BorshDeserialize>(&mut self, key: &[u8]) -> Result<Option<T>, RecordError> {
        match (self.0)(key).map_err(|e| RecordError::Read { key: key_name(key), reason: e.to_string() })? {
            Some(bytes) => decode_record(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Every registered candidate with its record, in registration order. A listed candidate
    /// without a record is damage, not an absence.
    pub fn candidates(&mut self) -> Result<Vec<(PublicKey, Candidate)>, RecordError> {
        let keys: Vec<PublicKey> = self.get(CANDIDATES_KEY)?.unwrap_or_default();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let key = candidate_key(&k);
            match self.get::<Candidate>(&key)? {
                Some(c) => out.push((k, c)),
                None => {
                    return Err(RecordError::Damaged {
                        key: key_name(&key),
                        reason: "listed in sys/candidates but missing".into(),
                    })
                }
            }
        }
        Ok(out)
    }

    /// The producers caught equivocating.
    pub fn jailed(&mut self) -> Result<Vec<PublicKey>, RecordError> {
        Ok(self.get(JAILED_KEY)?.unwrap_or_default())
    }

    pub fn stake(&mut self, a: &Address) -> Result<Option<Stake>, RecordError> {
        self.get(&stake_key(a))
    }

    /// The candidates `a` votes for (none when it never voted).
    pub fn votes(&mut self, a: &Address) -> Result<Vec<PublicKey>, RecordError> {
        Ok(self.get(&vote_key(a))?.unwrap_or_default())
    }

    /// Every branch made on this branch, in the order made.
    pub fn branches(&mut self) -> Result<Vec<super::branches::BranchRecord>, RecordError> {
        let names: Vec<String> = self.get(super::branches::BRANCHES_KEY)?.unwrap_or_default();
        names.iter().map(|n| self.listed(&super::branches::branch_key(n), "sys/branches")).collect()
    }

    /// Every tag made on this branch, in the order made.
    pub fn tags(&mut self) -> Result<Vec<super::branches::TagRecord>, RecordError> {
        let names: Vec<String> = self.get(super::branches::TAGS_KEY)?.unwrap_or_default();
        names.iter().map(|n| self.listed(&super::branches::tag_key(n), "sys/tags")).collect()
    }

    /// A record its list names: missing is damage, not an absence.
    fn listed<T: BorshDeserialize>(&mut self, key: &[u8], list: &str) -> Result<T, RecordError> {
        self.get(key)?.ok_or_else(|| RecordError::Damaged {
            key: key_name(key),
            reason: format!("listed in {list} but missing"),
        })
    }
}

pub(crate) fn write<T: BorshSerialize, A: Accounts>(
    acc: &mut A,
    key: Vec<u8>,
    value: &T,
) -> Result<(), ExecError> {
    acc.set_raw(key, Some(aergo_primitives::types::to_vec_exact(value)))
}

/// Adds `delta` (or subtracts, when `add` is false) to the votes of `candidates`.
fn shift_votes<A: Accounts>(
    acc: &mut A,
    candidates: &[PublicKey],
    delta: Amount,
    add: bool,
) -> Result<(), ExecError> {
    for c in candidates {
        if let Some(mut cand) = read::<Candidate, _>(acc, &candidate_key(c))? {
            cand.votes =
                if add { cand.votes.saturating_add(delta) } else { cand.votes.saturating_sub(delta) };
            write(acc, candidate_key(c), &cand)?;
        }
    }
    Ok(())
}

/// Applies a governance payload for `tx`, whose sender (fee and nonce already taken) is `sender`.
/// A [`GovernanceFailure`] inside `Ok` is a failed transaction (the fee is still paid).
pub fn apply<A: Accounts>(
    tx: &Transaction,
    sender: &mut Account,
    rules: Rules<'_>,
    acc: &mut A,
) -> Result<Result<(), GovernanceFailure>, ExecError> {
    use aergo_primitives::types::Payload;
    let from = tx.sender();
    match &tx.body.payload {
        Payload::Transfer | Payload::Deploy { .. } | Payload::Call { .. } => Ok(Ok(())),
        Payload::Stake => {
            let amount = tx.body.amount;
            if amount == 0 {
                return Ok(Err(GovernanceFailure::ZeroStake));
            }
            if sender.balance < amount {
                return Ok(Err(GovernanceFailure::StakeAboveBalance { balance: sender.balance, amount }));
            }
            sender.balance -= amount;
            let mut stake = read::<Stake, _>(acc, &stake_key(&from))?.unwrap_or_default();
            stake.amount = stake.amount.saturating_add(amount);
            stake.since = rules.height;
            write(acc, stake_key(&from), &stake)?;
            let votes: Vec<PublicKey> = read(acc, &vote_key(&from))?.unwrap_or_default();
            shift_votes(acc, &votes, amount, true)?;
            Ok(Ok(()))
        }
        Payload::Unstake => {
            let amount = tx.body.amount;
            let mut stake = read::<Stake, _>(acc, &stake_key(&from))?.unwrap_or_default();
            if amount == 0 || stake.amount < amount {
                return Ok(Err(GovernanceFailure::UnstakeAboveStake { amount, staked: stake.amount }));
            }
            let free_at = stake.since.saturating_add(rules.unstake_lock_blocks);
            if rules.height < free_at {
                return Ok(Err(GovernanceFailure::StakeLocked(free_at)));
            }
            stake.amount -= amount;
            stake.since = rules.height;
            sender.balance = sender.balance.saturating_add(amount);
            write(acc, stake_key(&from), &stake)?;
            let votes: Vec<PublicKey> = read(acc, &vote_key(&from))?.unwrap_or_default();
            shift_votes(acc, &votes, amount, false)?;
            Ok(Ok(()))
        }
        Payload::Vote { candidates } => {
            if candidates.len() > rules.max_votes {
                return Ok(Err(GovernanceFailure::TooManyVotes {
                    count: candidates.len(),
                    max: rules.max_votes,
                }));
            }
            let mut seen = std::collections::BTreeSet::new();
            for c in candidates {
                if !seen.insert(*c) {
                    return Ok(Err(GovernanceFailure::RepeatedCandidate(c.address())));
                }
                if read::<Candidate, _>(acc, &candidate_key(c))?.is_none() {
                    return Ok(Err(GovernanceFailure::NotACandidate(c.address())));
                }
            }
            let stake = read::<Stake, _>(acc, &stake_key(&from))?.unwrap_or_default().amount;
            let old: Vec<PublicKey> = read(acc, &vote_key(&from))?.unwrap_or_default();
            shift_votes(acc, &old, stake, false)?;
            shift_votes(acc, candidates, stake, true)?;
            write(acc, vote_key(&from), candidates)?;
            Ok(Ok(()))
        }
        Payload::RegisterBp { p2p_address } => {
            if p2p_address.is_empty() || p2p_address.len() > MAX_P2P_ADDRESS {
                return Ok(Err(GovernanceFailure::P2pAddressLength));
            }
            if p2p_address.parse::<multiaddr::Multiaddr>().is_err() {
                return Ok(Err(GovernanceFailure::P2pAddressInvalid(p2p_address.clone())));
            }
            let key = tx.body.sender;
            match read::<Candidate, _>(acc, &candidate_key(&key))? {
                Some(mut cand) => {
                    cand.p2p_address = p2p_address.clone();
                    write(acc, candidate_key(&key), &cand)?;
                }
                None => {
                    let cand =
                        Candidate { p2p_address: p2p_address.clone(), votes: 0, registered_at: rules.height };
                    write(acc, candidate_key(&key), &cand)?;
                    let mut all: Vec<PublicKey> = read(acc, CANDIDATES_KEY)?.unwrap_or_default();
                    all.push(key);
                    write(acc, CANDIDATES_KEY.to_vec(), &all)?;
                }
            }
            Ok(Ok(()))
        }
        Payload::ReportEquivocation(e) => {
            if let Err(reason) = check_equivocation(e, rules.chain_id) {
                return Ok(Err(GovernanceFailure::NotEvidence(reason)));
            }
            let mut jailed: Vec<PublicKey> = read(acc, JAILED_KEY)?.unwrap_or_default();
            if jailed.contains(&e.first.producer) {
                return Ok(Err(GovernanceFailure::AlreadyReported(e.first.producer.address())));
            }
            jailed.push(e.first.producer);
            write(acc, JAILED_KEY.to_vec(), &jailed)?;
            Ok(Ok(()))
        }
        Payload::CreateBranch { name, base_height, producers, mergers }
        | Payload::CreatePrivateBranch { name, base_height, producers, mergers, .. } => {
            let members = match &tx.body.payload {
                Payload::CreatePrivateBranch { members, .. } => Some(members.as_slice()),
                _ => None,
            };
            super::branches::create_branch(
                acc,
                rules.branch,
                rules.height,
                from,
                tx.body.sender,
                name,
                *base_height,
                producers,
                mergers,
                members,
            )
        }
        Payload::RaftAdmin(change) => raft_admin(acc, tx.body.sender, change),
        Payload::RepoAdmin(change) => super::members::repo_admin(acc, &from, change),
        Payload::CreateTag { name, height } => {
            super::branches::create_tag(acc, rules.branch, rules.height, from, name, *height)
        }
        Payload::Merge { source, upto, upto_hash, .. }
        | Payload::MergePrivate { source, upto, upto_hash, .. } => super::branches::merge(
            acc,
            rules.branch,
            rules.height,
            &from,
            tx.hash(),
            source,
            (*upto, *upto_hash),
            matches!(tx.body.payload, Payload::MergePrivate { .. }),
        ),
    }
}

/// Whether `e` proves that one producer signed two different blocks for one slot of this chain.
pub fn check_equivocation(
    e: &aergo_primitives::types::Equivocation,
    chain_id: &str,
) -> Result<(), EvidenceError> {
    let (a, b) = (&e.first, &e.second);
    if a.chain_id != chain_id || b.chain_id != chain_id {
        return Err(EvidenceError::OtherChain);
    }
    if a.producer != b.producer {
        return Err(EvidenceError::TwoProducers);
    }
    if a.timestamp_ms != b.timestamp_ms {
        return Err(EvidenceError::TwoSlots);
    }
    if a.hash() == b.hash() {
        return Err(EvidenceError::SameBlock);
    }
    aergo_primitives::crypto::verify(&a.producer, &a.hash(), &e.first_signature)
        .map_err(|e| EvidenceError::FirstSignature(e.to_string()))?;
    aergo_primitives::crypto::verify(&b.producer, &b.hash(), &e.second_signature)
        .map_err(|e| EvidenceError::SecondSignature(e.to_string()))?;
    Ok(())
}

/// The producer set from `candidates` (key, record): the `bp_count` with the most votes (ties: the
/// smaller key), then — while seats are left — the genesis producers, in genesis order; never a
/// jailed one.
pub fn elect(
    candidates: Vec<(PublicKey, Candidate)>,
    genesis: &[PublicKey],
    jailed: &[PublicKey],
    bp_count: usize,
) -> Vec<PublicKey> {
    let mut voted: Vec<(PublicKey, Amount)> = candidates
        .into_iter()
        .filter(|(k, c)| c.votes > 0 && !jailed.contains(k))
        .map(|(k, c)| (k, c.votes))
        .collect();
    voted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut set: Vec<PublicKey> = voted.into_iter().take(bp_count).map(|(k, _)| k).collect();
    for g in genesis {
        if set.len() >= bp_count {
            break;
        }
        if !set.contains(g) && !jailed.contains(g) {
            set.push(*g);
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use aergo_primitives::crypto::Keypair;

    /// Failures are receipts' words, hashed into every block: the typed errors say exactly what the
    /// strings they replaced said.
    #[test]
    fn failure_messages_are_the_words_receipts_always_had() {
        let a = Keypair::from_seed("a").public().address();
        let cases = [
            (GovernanceFailure::ZeroStake, "stake amount must be above zero".to_string()),
            (
                GovernanceFailure::StakeAboveBalance { balance: 5, amount: 9 },
                "balance too low: 5 after the fee, the stake needs 9".into(),
            ),
            (
                GovernanceFailure::UnstakeAboveStake { amount: 7, staked: 3 },
                "unstake of 7: the stake is 3".into(),
            ),
            (GovernanceFailure::StakeLocked(120), "the stake is locked until height 120".into()),
            (
                GovernanceFailure::TooManyVotes { count: 3, max: 1 },
                "3 candidates, at most 1 may be voted for".into(),
            ),
            (GovernanceFailure::RepeatedCandidate(a), format!("candidate {a} is listed twice")),
            (GovernanceFailure::NotACandidate(a), format!("{a} is not a registered candidate")),
            (GovernanceFailure::P2pAddressLength, "p2p address must be 1 to 256 bytes".into()),
            (GovernanceFailure::P2pAddressInvalid("x".into()), "p2p address \"x\" is not a multiaddr".into()),
            (
                GovernanceFailure::NotEvidence(EvidenceError::SameBlock),
                "not evidence of equivocation: the same block twice".into(),
            ),
            (GovernanceFailure::AlreadyReported(a), format!("{a} was already reported")),
        ];
        for (failure, words) in cases {
            assert_eq!(failure.to_string(), words, "{}", failure.reason());
        }
    }

    #[test]
    fn unreadable_and_damaged_records_are_errors_never_empty_lists() {
        let k = Keypair::from_seed("cand").public();
        let list = borsh::to_vec(&vec![k]).unwrap();
        // A read error: an error naming the key.
        let mut failing = Records(|_: &[u8]| Err::<Option<Vec<u8>>, _>("input/output error"));
        let err = failing.candidates().unwrap_err();
        assert_eq!(
            err,
            RecordError::Read { key: "sys/candidates".into(), reason: "input/output error".into() }
        );
        // Bytes that do not decode.
        let mut garbage = Records(|_: &[u8]| Ok::<_, String>(Some(vec![0xff; 3])));
        assert!(matches!(garbage.candidates(), Err(RecordError::Damaged { .. })));
        assert!(matches!(garbage.jailed(), Err(RecordError::Damaged { .. })));
        // A listed candidate whose record is missing.
        let mut missing =
            Records(|key: &[u8]| Ok::<_, String>((key == CANDIDATES_KEY).then(|| list.clone())));
        let err = missing.candidates().unwrap_err();
        assert!(err.to_string().contains("cand/") && err.to_string().contains("missing"), "{err}");
        // Nothing stored at all: no candidates, nobody jailed.
        let mut empty = Records(|_: &[u8]| Ok::<_, String>(None));
        assert_eq!((empty.candidates().unwrap(), empty.jailed().unwrap()), (vec![], vec![]));
    }

    #[test]
    fn the_most_voted_candidates_take_the_seats_then_genesis_fills() {
        let k: Vec<PublicKey> = (0..6).map(|i| Keypair::from_seed(&format!("k{i}")).public()).collect();
        let cand = |votes| Candidate { p2p_address: "/ip4/127.0.0.1/tcp/1".into(), votes, registered_at: 1 };
        let genesis = [k[0], k[1], k[2], k[3]];
        // Nobody voted: the genesis set.
        assert_eq!(elect(vec![(k[4], cand(0))], &genesis, &[], 4), genesis.to_vec());
        // One voted candidate takes a seat; genesis fills the rest in order.
        assert_eq!(elect(vec![(k[4], cand(10))], &genesis, &[], 4), vec![k[4], k[0], k[1], k[2]]);
        // More votes first; a voted genesis producer is not listed twice.
        let set = elect(vec![(k[4], cand(10)), (k[5], cand(30)), (k[2], cand(20))], &genesis, &[], 4);
        assert_eq!(set, vec![k[5], k[2], k[4], k[0]]);
        // Jailed: neither elected nor filled in.
        let set = elect(vec![(k[4], cand(10)), (k[5], cand(30))], &genesis, &[k[5], k[1]], 4);
        assert_eq!(set, vec![k[4], k[0], k[2], k[3]]);
    }
}
