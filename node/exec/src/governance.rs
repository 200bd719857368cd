//! Staking, voting and block-producer candidates: the state the DPoS election reads.
//!
//! State keys (values borsh):
//! - `stake/<address>` → [`Stake`]: the locked amount and the height it last changed;
//! - `vote/<address>` → `Vec<PublicKey>`: the candidates the account votes for;
//! - `cand/<public key>` → [`Candidate`]: p2p address and the stake voting for it;
//! - `sys/candidates` → `Vec<PublicKey>`: every registered candidate, in registration order;
//! - `sys/jailed` → `Vec<PublicKey>`: producers caught signing two blocks for one slot, never elected
//!   again.
//!
//! Every voter's whole stake counts for each candidate it lists (as in aergo). The votes of a
//! candidate are kept up to date as stakes and votes change, so the election reads one record per
//! candidate. [`elect`] picks the producer set from the state at a height; see
//! the consensus schedule (`aergo_node::consensus::Schedule`) for which height.

use super::{Accounts, ExecError};
use aergo_primitives::types::{Account, Address, Amount, PublicKey, Transaction};
use borsh::{BorshDeserialize, BorshSerialize};

pub const CANDIDATES_KEY: &[u8] = b"sys/candidates";
pub const JAILED_KEY: &[u8] = b"sys/jailed";
/// Longest p2p address a candidate may register.
pub const MAX_P2P_ADDRESS: usize = 256;

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

/// Staking parameters (from the genesis).
#[derive(Clone, Copy, Debug)]
pub struct Rules<'a> {
    pub chain_id: &'a str,
    pub height: u64,
    pub unstake_lock_blocks: u64,
    pub max_votes: usize,
}

fn read<T: BorshDeserialize, A: Accounts>(acc: &mut A, key: &[u8]) -> Result<Option<T>, ExecError> {
    match acc.get_raw(key)? {
        Some(bytes) => borsh::from_slice(&bytes).map(Some).map_err(|e| {
            ExecError::State(aergo_storage::StateError::Decode {
                what: "governance record",
                reason: e.to_string(),
            })
        }),
        None => Ok(None),
    }
}

fn write<T: BorshSerialize, A: Accounts>(acc: &mut A, key: Vec<u8>, value: &T) -> Result<(), ExecError> {
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
/// `Err(reason)` inside `Ok` is a failed transaction (the fee is still paid).
pub fn apply<A: Accounts>(
    tx: &Transaction,
    sender: &mut Account,
    rules: Rules<'_>,
    acc: &mut A,
) -> Result<Result<(), String>, ExecError> {
    use aergo_primitives::types::Payload;
    let from = tx.sender();
    match &tx.body.payload {
        Payload::Transfer | Payload::Deploy { .. } | Payload::Call { .. } => Ok(Ok(())),
        Payload::Stake => {
            let amount = tx.body.amount;
            if amount == 0 {
                return Ok(Err("stake amount must be above zero".into()));
            }
            if sender.balance < amount {
                return Ok(Err(format!(
                    "balance too low: {} after the fee, the stake needs {amount}",
                    sender.balance
                )));
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
                return Ok(Err(format!("unstake of {amount}: the stake is {}", stake.amount)));
            }
            let free_at = stake.since.saturating_add(rules.unstake_lock_blocks);
            if rules.height < free_at {
                return Ok(Err(format!("the stake is locked until height {free_at}")));
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
                return Ok(Err(format!(
                    "{} candidates, at most {} may be voted for",
                    candidates.len(),
                    rules.max_votes
                )));
            }
            let mut seen = std::collections::BTreeSet::new();
            for c in candidates {
                if !seen.insert(*c) {
                    return Ok(Err(format!("candidate {} is listed twice", c.address())));
                }
                if read::<Candidate, _>(acc, &candidate_key(c))?.is_none() {
                    return Ok(Err(format!("{} is not a registered candidate", c.address())));
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
                return Ok(Err(format!("p2p address must be 1 to {MAX_P2P_ADDRESS} bytes")));
            }
            if p2p_address.parse::<multiaddr::Multiaddr>().is_err() {
                return Ok(Err(format!("p2p address {p2p_address:?} is not a multiaddr")));
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
                return Ok(Err(format!("not evidence of equivocation: {reason}")));
            }
            let mut jailed: Vec<PublicKey> = read(acc, JAILED_KEY)?.unwrap_or_default();
            if jailed.contains(&e.first.producer) {
                return Ok(Err(format!("{} was already reported", e.first.producer.address())));
            }
            jailed.push(e.first.producer);
            write(acc, JAILED_KEY.to_vec(), &jailed)?;
            Ok(Ok(()))
        }
    }
}

/// Whether `e` proves that one producer signed two different blocks for one slot of this chain.
pub fn check_equivocation(e: &aergo_primitives::types::Equivocation, chain_id: &str) -> Result<(), String> {
    let (a, b) = (&e.first, &e.second);
    if a.chain_id != chain_id || b.chain_id != chain_id {
        return Err("a header of another chain".into());
    }
    if a.producer != b.producer {
        return Err("two different producers".into());
    }
    if a.timestamp_ms != b.timestamp_ms {
        return Err("two different slots".into());
    }
    if a.hash() == b.hash() {
        return Err("the same block twice".into());
    }
    aergo_primitives::crypto::verify(&a.producer, &a.hash(), &e.first_signature)
        .map_err(|e| format!("first signature: {e}"))?;
    aergo_primitives::crypto::verify(&b.producer, &b.hash(), &e.second_signature)
        .map_err(|e| format!("second signature: {e}"))?;
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
