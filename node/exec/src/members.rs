//! A private repository's access rules in its state (`docs/repositories.md`, "Access control").
//!
//! State keys (values borsh):
//! - `sys/repo/access` → `true`: present only in a private repository (written at genesis);
//! - `sys/repo/member/<address>` → [`MemberRole`];
//! - `sys/repo/admins` → `u32`: how many members are admins (the last one cannot go);
//! - `sys/repo/nodes` → `Vec<NodeRecord>`: the nodes allowed to connect, besides Raft's voters.
//!
//! They change only by `repo_admin` transactions of an admin member ([`repo_admin`]). Who may
//! write is read from the parent block's state by the chain's verifier (every transaction's
//! sender a `write` or `admin` member) and from the head by the pool.

use super::governance::{read, write, GovernanceFailure};
use super::{Accounts, ExecError};
use aergo_config::genesis::AccessParams;
use aergo_primitives::types::{to_vec_exact, Address, MemberRole, PublicKey, RepoAdmin};
use borsh::{BorshDeserialize, BorshSerialize};

pub const ACCESS_KEY: &[u8] = b"sys/repo/access";
pub const ADMINS_KEY: &[u8] = b"sys/repo/admins";
pub const NODES_KEY: &[u8] = b"sys/repo/nodes";
const MEMBER_PREFIX: &[u8] = b"sys/repo/member/";
/// Most nodes on the allowlist.
pub const MAX_NODES: usize = aergo_config::genesis::MAX_ALLOWED_NODES;

pub fn member_key(a: &Address) -> Vec<u8> {
    [MEMBER_PREFIX, &a.0].concat()
}

/// Whether `key` is one of this module's: a `repo_admin` transaction's access set covers them.
pub fn is_access_key(key: &[u8]) -> bool {
    key.starts_with(b"sys/repo/")
}

/// A node allowed to connect to a private repository.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct NodeRecord {
    /// Its identity key: its p2p peer id follows.
    pub node_key: PublicKey,
    /// Where it listens (a multiaddr).
    pub address: String,
}

/// The state a private repository's genesis writes.
pub fn genesis_changes(access: &AccessParams) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut out = vec![(ACCESS_KEY.to_vec(), Some(to_vec_exact(&true)))];
    for m in &access.members {
        out.push((member_key(&m.address), Some(to_vec_exact(&m.role))));
    }
    let admins = access.members.iter().filter(|m| m.role == MemberRole::Admin).count() as u32;
    out.push((ADMINS_KEY.to_vec(), Some(to_vec_exact(&admins))));
    let nodes: Vec<NodeRecord> = access
        .nodes
        .iter()
        .filter_map(|n| Some(NodeRecord { node_key: n.key().ok()?, address: n.address.clone() }))
        .collect();
    out.push((NODES_KEY.to_vec(), Some(to_vec_exact(&nodes))));
    out
}

/// Why a stored access record cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("access record {key}: {reason}")]
pub struct AccessRecordError {
    pub key: String,
    pub reason: String,
}

/// A private repository's rules as one state holds them, through `raw` (a key's stored bytes).
pub struct Rules<F>(pub F);

impl<F, E> Rules<F>
where
    F: FnMut(&[u8]) -> Result<Option<Vec<u8>>, E>,
    E: std::fmt::Display,
{
    fn get<T: BorshDeserialize>(&mut self, key: &[u8]) -> Result<Option<T>, AccessRecordError> {
        let name = || String::from_utf8_lossy(&key[..key.len().min(16)]).into_owned();
        match (self.0)(key).map_err(|e| AccessRecordError { key: name(), reason: e.to_string() })? {
            None => Ok(None),
            Some(bytes) => borsh::from_slice(&bytes)
                .map(Some)
                .map_err(|e| AccessRecordError { key: name(), reason: e.to_string() }),
        }
    }

    /// Whether the state is a private repository's.
    pub fn private(&mut self) -> Result<bool, AccessRecordError> {
        Ok(self.get::<bool>(ACCESS_KEY)?.unwrap_or(false))
    }

    /// `who`'s role (`None`: not a member).
    pub fn role(&mut self, who: &Address) -> Result<Option<MemberRole>, AccessRecordError> {
        self.get(&member_key(who))
    }

    /// The node allowlist (besides Raft's voters).
    pub fn nodes(&mut self) -> Result<Vec<NodeRecord>, AccessRecordError> {
        Ok(self.get(NODES_KEY)?.unwrap_or_default())
    }
}

/// Whether `sender` may send transactions to the repository `rules` reads: anyone on a public
/// one, a `write` or `admin` member on a private one.
pub fn may_write<F, E>(rules: &mut Rules<F>, sender: &Address) -> Result<bool, AccessRecordError>
where
    F: FnMut(&[u8]) -> Result<Option<Vec<u8>>, E>,
    E: std::fmt::Display,
{
    Ok(!rules.private()? || rules.role(sender)?.is_some_and(MemberRole::may_write))
}

/// Whether `sender` is an admin member of a private repository (read during execution).
pub(crate) fn is_admin<A: Accounts>(acc: &mut A, sender: &Address) -> Result<bool, ExecError> {
    Ok(read::<MemberRole, _>(acc, &member_key(sender))? == Some(MemberRole::Admin))
}

/// A `repo_admin` transaction: by an admin member of a private repository.
pub(crate) fn repo_admin<A: Accounts>(
    acc: &mut A,
    sender: &Address,
    change: &RepoAdmin,
) -> Result<Result<(), GovernanceFailure>, ExecError> {
    if read::<bool, _>(acc, ACCESS_KEY)? != Some(true) {
        return Ok(Err(GovernanceFailure::NotPrivate));
    }
    if !is_admin(acc, sender)? {
        return Ok(Err(GovernanceFailure::NotAdmin(*sender)));
    }
    let admins: u32 = read(acc, ADMINS_KEY)?.unwrap_or(0);
    match change {
        RepoAdmin::SetMember { member, role } => {
            let was = read::<MemberRole, _>(acc, &member_key(member))?;
            let admins = match (was == Some(MemberRole::Admin), *role == MemberRole::Admin) {
                (true, false) if admins <= 1 => return Ok(Err(GovernanceFailure::LastAdmin)),
                (true, false) => admins - 1,
                (false, true) => admins + 1,
                _ => admins,
            };
            write(acc, member_key(member), role)?;
            write(acc, ADMINS_KEY.to_vec(), &admins)?;
        }
        RepoAdmin::RemoveMember { member } => {
            let Some(was) = read::<MemberRole, _>(acc, &member_key(member))? else {
                return Ok(Err(GovernanceFailure::NotAMember(*member)));
            };
            if was == MemberRole::Admin {
                if admins <= 1 {
                    return Ok(Err(GovernanceFailure::LastAdmin));
                }
                write(acc, ADMINS_KEY.to_vec(), &(admins - 1))?;
            }
            acc.set_raw(member_key(member), None)?;
        }
        RepoAdmin::AllowNode { node_key, address } => {
            if address.is_empty() || address.len() > super::governance::MAX_P2P_ADDRESS {
                return Ok(Err(GovernanceFailure::P2pAddressLength));
            }
            if address.parse::<multiaddr::Multiaddr>().is_err() {
                return Ok(Err(GovernanceFailure::P2pAddressInvalid(address.clone())));
            }
            let mut nodes: Vec<NodeRecord> = read(acc, NODES_KEY)?.unwrap_or_default();
            if nodes.iter().any(|n| n.node_key == *node_key) {
                return Ok(Err(GovernanceFailure::NodeAllowed(node_key.address())));
            }
            if nodes.len() >= MAX_NODES {
                return Ok(Err(GovernanceFailure::TooMany {
                    what: "allowed nodes",
                    count: nodes.len() + 1,
                    max: MAX_NODES,
                }));
            }
            nodes.push(NodeRecord { node_key: *node_key, address: address.clone() });
            write(acc, NODES_KEY.to_vec(), &nodes)?;
        }
        RepoAdmin::DenyNode { node_key } => {
            let mut nodes: Vec<NodeRecord> = read(acc, NODES_KEY)?.unwrap_or_default();
            let before = nodes.len();
            nodes.retain(|n| n.node_key != *node_key);
            if nodes.len() == before {
                return Ok(Err(GovernanceFailure::NodeNotAllowed(node_key.address())));
            }
            write(acc, NODES_KEY.to_vec(), &nodes)?;
        }
    }
    Ok(Ok(()))
}
