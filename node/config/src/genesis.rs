//! The genesis file (TOML): chain id, initial balances, producers and consensus parameters.
//!
//! ```toml
//! chain_id = "aergo-devnet"
//! timestamp_ms = 1767225600000
//!
//! [consensus]
//! block_interval_ms = 1000
//! bp_count = 1
//! epoch_blocks = 100         # the producer set is elected anew every epoch
//! unstake_lock_blocks = 100
//! max_votes = 0              # 0: bp_count
//! sql_ordered_scans_height = 0   # contract calls read ORDER BY from indexes from this height
//!                                # (absent: never, the rules a chain made before 2026-12-05 has)
//!
//! [[balances]]
//! address = "aergo1…"
//! amount = "1000000000000000000000"
//!
//! [[producers]]
//! public_key = "hex…"
//! ```
//!
//! A chain agreed by Raft (`docs/repositories.md`) says so and lists its first voters (their
//! node keys sign its blocks; `producers` may then be empty):
//!
//! ```toml
//! [consensus]
//! kind = "raft"
//! block_interval_ms = 1000
//!
//! [consensus.raft]
//! propose_on_tx = true     # a block as soon as transactions wait, else one per interval
//! election_ticks = 10      # ticks of 100 ms
//! heartbeat_ticks = 2
//!
//! [[consensus.raft.voters]]
//! node_key = "hex…"        # the voter's node identity key (node.key): its p2p id, its block key
//! address = "/ip4/10.0.0.1/tcp/7846"
//! ```

use aergo_primitives::types::{Address, Amount, PublicKey, MAX_CHAIN_ID_LEN};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error("cannot read genesis file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("genesis file {path} is invalid: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: String,
    /// Timestamp of block 0 in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Absent: the defaults, with the rules switches of a chain made before them (never).
    #[serde(default = "ConsensusParams::as_before_switches")]
    pub consensus: ConsensusParams,
    #[serde(default)]
    pub balances: Vec<GenesisBalance>,
    /// DPoS's first producers (none under Raft, whose voters sign blocks).
    #[serde(default)]
    pub producers: Vec<GenesisProducer>,
    /// A private repository's access rules (`docs/repositories.md`, "Access control"); absent:
    /// a public chain, readable by anyone and writable by any signed transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessParams>,
}

/// `[access]`: a private repository's first members and allowed nodes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessParams {
    /// Must be true: the section makes the repository private.
    pub private: bool,
    #[serde(default)]
    pub members: Vec<GenesisMember>,
    #[serde(default)]
    pub nodes: Vec<GenesisNode>,
}

/// A member of a private repository at genesis.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GenesisMember {
    pub address: Address,
    pub role: aergo_primitives::types::MemberRole,
}

/// A node allowed to connect to a private repository at genesis.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GenesisNode {
    /// The node's identity key (hex): its p2p peer id follows.
    pub node_key: String,
    /// Where it listens (a multiaddr).
    pub address: String,
}

impl GenesisNode {
    pub fn key(&self) -> Result<PublicKey, String> {
        parse_key(&self.node_key).map_err(|e| format!("node key {e}"))
    }
}

/// Most nodes on a private repository's allowlist.
pub const MAX_ALLOWED_NODES: usize = 256;

/// How a chain agrees on its blocks.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConsensusKind {
    /// Delegated proof of stake: elected producers in slots, final at 2/3+1 (`docs/consensus.md`).
    #[default]
    Dpos,
    /// Raft among voter nodes: the leader proposes, a block is final once a majority holds it.
    Raft,
}

impl ConsensusKind {
    pub fn is_dpos(&self) -> bool {
        *self == ConsensusKind::Dpos
    }

    pub fn name(&self) -> &'static str {
        match self {
            ConsensusKind::Dpos => "dpos",
            ConsensusKind::Raft => "raft",
        }
    }
}

/// The Raft settings of a chain (`[consensus.raft]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RaftParams {
    /// Propose a block as soon as transactions wait (one block in flight), not only every
    /// `block_interval_ms`.
    #[serde(default = "yes")]
    pub propose_on_tx: bool,
    /// Ticks of 100 ms without a leader before a follower campaigns (randomized up to twice).
    #[serde(default = "ten")]
    pub election_ticks: u32,
    /// Ticks of 100 ms between a leader's heartbeats.
    #[serde(default = "two")]
    pub heartbeat_ticks: u32,
    /// The founding voters; later changes go through Raft's joint consensus.
    pub voters: Vec<RaftVoter>,
}

fn yes() -> bool {
    true
}
fn ten() -> u32 {
    10
}
fn two() -> u32 {
    2
}

/// A voter: a node, named by its identity key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RaftVoter {
    /// ed25519 public key of the node's identity (`node.key`), hex: its p2p peer id and the key
    /// its blocks are signed with.
    pub node_key: String,
    /// Where its p2p layer listens (`/ip4/…/tcp/…`).
    pub address: String,
}

impl RaftVoter {
    pub fn key(&self) -> Result<PublicKey, String> {
        parse_key(&self.node_key).map_err(|e| format!("node_key {e}"))
    }
}

fn parse_key(text: &str) -> Result<PublicKey, String> {
    let bytes = hex::decode(text).map_err(|e| format!("is not hex: {e}"))?;
    let arr: [u8; 32] = bytes.try_into().map_err(|_| "is not 32 bytes".to_string())?;
    Ok(PublicKey(arr))
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusParams {
    /// Slot length.
    pub block_interval_ms: u64,
    /// Number of elected block producers.
    pub bp_count: u32,
    /// Most transactions in one block.
    pub max_block_txs: u32,
    /// Blocks per epoch: the producer set is elected anew for each epoch (see `consensus::Schedule`).
    pub epoch_blocks: u64,
    /// Blocks a stake stays locked after it last changed.
    pub unstake_lock_blocks: u64,
    /// Most candidates one account may vote for (0: `bp_count`).
    pub max_votes: u32,
    /// From this height contract calls use the SQL rules of 2026-12-05: `ORDER BY` read from an
    /// index or the primary key without a sort, and a `LIMIT` that stops such a read early (less
    /// gas; see docs/aergosql.md). A genesis file without the setting (a chain made before them)
    /// never switches, so that every node replays its blocks with the gas they were made with; a
    /// new genesis has 0. Read-only queries use the new rules at every height.
    #[serde(default = "never", skip_serializing_if = "Option::is_none")]
    pub sql_ordered_scans_height: Option<u64>,
    /// DPoS (absent) or Raft.
    #[serde(skip_serializing_if = "ConsensusKind::is_dpos")]
    pub kind: ConsensusKind,
    /// Raft's settings and first voters (with `kind = "raft"` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raft: Option<RaftParams>,
}

/// `max_block_txs` of a devnet's genesis (`aergo-node --dev`): one producer imports nobody's
/// blocks, and one node takes more than 40 000 transfers/s (`docs/exec.md`), which the chain's
/// default of 20 000 per slot would cap. The byte budget of a block still applies.
pub const DEVNET_MAX_BLOCK_TXS: u32 = 50_000;

/// A switch that never flips (TOML integers stop at i64::MAX: absent rather than a huge height).
fn never() -> Option<u64> {
    None
}

impl Default for ConsensusParams {
    fn default() -> Self {
        ConsensusParams {
            block_interval_ms: 1000,
            bp_count: 1,
            max_block_txs: 20_000,
            epoch_blocks: 100,
            unstake_lock_blocks: 100,
            max_votes: 0,
            sql_ordered_scans_height: Some(0),
            kind: ConsensusKind::Dpos,
            raft: None,
        }
    }
}

impl ConsensusParams {
    /// The defaults of a genesis file that names no switch: switches never flip (an existing
    /// chain keeps the rules its blocks were made with).
    pub fn as_before_switches() -> Self {
        ConsensusParams { sql_ordered_scans_height: never(), ..ConsensusParams::default() }
    }

    pub fn staking(&self) -> StakingParams {
        let max_votes = if self.max_votes == 0 { self.bp_count } else { self.max_votes };
        StakingParams { unstake_lock_blocks: self.unstake_lock_blocks, max_votes: max_votes.max(1) as usize }
    }
}

/// The genesis's staking rules, as execution needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StakingParams {
    /// Blocks a stake stays locked after it last changed.
    pub unstake_lock_blocks: u64,
    /// Most candidates one account may vote for.
    pub max_votes: usize,
}

impl Default for StakingParams {
    fn default() -> Self {
        StakingParams { unstake_lock_blocks: 100, max_votes: 1 }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GenesisBalance {
    pub address: Address,
    #[serde(with = "aergo_primitives::types::amount_string")]
    pub amount: Amount,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GenesisProducer {
    /// ed25519 public key, hex.
    pub public_key: String,
}

impl GenesisProducer {
    pub fn key(&self) -> Result<PublicKey, String> {
        parse_key(&self.public_key).map_err(|e| format!("producer key {e}"))
    }
}

impl Genesis {
    pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| GenesisError::Read { path: path.display().to_string(), source })?;
        Genesis::parse(&text)
            .map_err(|reason| GenesisError::Invalid { path: path.display().to_string(), reason })
    }

    pub fn parse(text: &str) -> Result<Genesis, String> {
        let genesis: Genesis = toml::from_str(text).map_err(|e| e.to_string())?;
        genesis.validate()?;
        Ok(genesis)
    }

    pub fn to_toml(&self) -> String {
        // Strings, integers and lists of tables with no paths or maps keyed by non-strings: TOML can
        // write every genesis (the round-trip test below covers each field).
        toml::to_string_pretty(self).expect("a genesis is plain strings, integers and tables")
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.chain_id.is_empty() || self.chain_id.len() > MAX_CHAIN_ID_LEN {
            return Err(format!("chain_id must be 1 to {MAX_CHAIN_ID_LEN} bytes"));
        }
        if self.consensus.block_interval_ms < 100 {
            return Err("consensus.block_interval_ms must be at least 100".into());
        }
        if self.consensus.max_block_txs == 0 {
            return Err("consensus.max_block_txs must be at least 1".into());
        }
        if self.consensus.epoch_blocks < 4 {
            return Err("consensus.epoch_blocks must be at least 4".into());
        }
        if self.consensus.bp_count == 0 {
            return Err("consensus.bp_count must be at least 1".into());
        }
        match (self.consensus.kind, &self.consensus.raft) {
            (ConsensusKind::Dpos, Some(_)) => {
                return Err("[consensus.raft] is given but consensus.kind is not \"raft\"".into())
            }
            (ConsensusKind::Raft, None) => {
                return Err("consensus.kind = \"raft\" needs [consensus.raft] with its voters".into())
            }
            (ConsensusKind::Raft, Some(raft)) => {
                if raft.voters.is_empty() {
                    return Err("consensus.raft needs at least one voter".into());
                }
                if raft.election_ticks <= raft.heartbeat_ticks || raft.heartbeat_ticks == 0 {
                    return Err(
                        "consensus.raft.election_ticks must exceed heartbeat_ticks, which must be at least 1"
                            .into(),
                    );
                }
                let mut keys = std::collections::BTreeSet::new();
                for (i, v) in raft.voters.iter().enumerate() {
                    let key = v.key().map_err(|e| format!("consensus.raft.voters[{i}]: {e}"))?;
                    if !keys.insert(key.0) {
                        return Err(format!("consensus.raft.voters[{i}]: the node key is listed twice"));
                    }
                    if !v.address.starts_with('/') {
                        return Err(format!(
                            "consensus.raft.voters[{i}]: address {:?} is not a multiaddress (/ip4/…/tcp/…)",
                            v.address
                        ));
                    }
                }
            }
            (ConsensusKind::Dpos, None) => {}
        }
        if self.producers.is_empty() && self.consensus.kind.is_dpos() {
            return Err("at least one producer is required".into());
        }
        for (i, p) in self.producers.iter().enumerate() {
            p.key().map_err(|e| format!("producers[{i}]: {e}"))?;
        }
        if let Some(access) = &self.access {
            if !access.private {
                return Err("[access] private must be true (leave the section out for a public chain)".into());
            }
            if !access.members.iter().any(|m| m.role == aergo_primitives::types::MemberRole::Admin) {
                return Err("[access] needs at least one member with role \"admin\"".into());
            }
            let mut members = std::collections::BTreeSet::new();
            for (i, m) in access.members.iter().enumerate() {
                if !members.insert(m.address) {
                    return Err(format!("access.members[{i}]: {} is listed twice", m.address));
                }
            }
            if access.nodes.len() > MAX_ALLOWED_NODES {
                return Err(format!("access.nodes: at most {MAX_ALLOWED_NODES}"));
            }
            let mut nodes = std::collections::BTreeSet::new();
            for (i, n) in access.nodes.iter().enumerate() {
                let key = n.key().map_err(|e| format!("access.nodes[{i}]: {e}"))?;
                if !nodes.insert(key.0) {
                    return Err(format!("access.nodes[{i}]: the node key is listed twice"));
                }
                if !n.address.starts_with('/') {
                    return Err(format!(
                        "access.nodes[{i}]: address {:?} is not a multiaddress (/ip4/…/tcp/…)",
                        n.address
                    ));
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for b in &self.balances {
            if !seen.insert(b.address) {
                return Err(format!("balance for {} is listed twice", b.address));
            }
        }
        Ok(())
    }

    /// Whether this is a private repository (`[access]`).
    pub fn is_private(&self) -> bool {
        self.access.as_ref().is_some_and(|a| a.private)
    }

    pub fn producer_keys(&self) -> Vec<PublicKey> {
        self.producers.iter().filter_map(|p| p.key().ok()).collect()
    }

    /// The founding voters' node keys (Raft; empty under DPoS).
    pub fn voter_keys(&self) -> Vec<PublicKey> {
        let voters = self.consensus.raft.as_ref().map(|r| r.voters.as_slice()).unwrap_or_default();
        voters.iter().filter_map(|v| v.key().ok()).collect()
    }

    /// Who signs the first blocks: the DPoS producers, or the Raft voters.
    pub fn signer_keys(&self) -> Vec<PublicKey> {
        match self.consensus.kind {
            ConsensusKind::Dpos => self.producer_keys(),
            ConsensusKind::Raft => self.voter_keys(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aergo_primitives::crypto::Keypair;

    fn sample() -> Genesis {
        let key = Keypair::from_seed("bp");
        Genesis {
            chain_id: "test".into(),
            timestamp_ms: 1,
            consensus: ConsensusParams::default(),
            balances: vec![GenesisBalance { address: key.address(), amount: 10u128.pow(30) }],
            producers: vec![GenesisProducer { public_key: hex::encode(key.public().0) }],
            access: None,
        }
    }

    #[test]
    fn toml_roundtrip() {
        let g = sample();
        assert_eq!(Genesis::parse(&g.to_toml()).unwrap(), g);
        assert!(g.to_toml().contains("amount = \"1000000000000000000000000000000\""));
    }

    /// A new genesis switches the ordered-scan rules on at once; a file made before the switch
    /// existed (with or without a `[consensus]` table) never switches them.
    #[test]
    fn a_genesis_without_the_switch_keeps_the_earlier_sql_rules() {
        let g = sample();
        assert!(g.to_toml().contains("sql_ordered_scans_height = 0"));
        let old = g.to_toml().replace("sql_ordered_scans_height = 0\n", "");
        let parsed = Genesis::parse(&old).unwrap();
        assert_eq!(parsed.consensus.sql_ordered_scans_height, None);
        // Written back (as `init` does), it stays without the switch.
        assert_eq!(Genesis::parse(&parsed.to_toml()).unwrap(), parsed);
        let start = old.find("[consensus]").unwrap();
        let end = start + old[start..].find("\n\n").unwrap();
        let bare = format!("{}{}", &old[..start], &old[end..]);
        assert!(!bare.contains("[consensus]"), "{bare}");
        assert_eq!(Genesis::parse(&bare).unwrap().consensus.sql_ordered_scans_height, None);
    }

    /// A Raft genesis round-trips, needs no producers, and is refused with the field named when
    /// it is inconsistent; a DPoS genesis's text does not change.
    #[test]
    fn a_private_genesis_names_its_admins_and_nodes_and_refuses_what_makes_no_sense() {
        use aergo_primitives::types::MemberRole;
        let member = |seed: &str, role| GenesisMember { address: Keypair::from_seed(seed).address(), role };
        let access = AccessParams {
            private: true,
            members: vec![member("admin", MemberRole::Admin), member("reader", MemberRole::Read)],
            nodes: vec![GenesisNode {
                node_key: hex::encode(Keypair::from_seed("node").public().0),
                address: "/ip4/10.0.0.2/tcp/7946".into(),
            }],
        };
        let g = Genesis { access: Some(access), ..sample() };
        let text = g.to_toml();
        assert!(text.contains("[access]") && text.contains("role = \"admin\""), "{text}");
        assert_eq!(Genesis::parse(&text).unwrap(), g);
        assert!(g.is_private() && !sample().is_private());
        assert!(!sample().to_toml().contains("access"), "a public genesis is written as before");
        let bad = |f: &dyn Fn(&mut AccessParams)| {
            let mut g = g.clone();
            f(g.access.as_mut().unwrap());
            g.validate().unwrap_err()
        };
        assert!(bad(&|a| a.private = false).contains("private must be true"));
        assert!(bad(&|a| a.members.retain(|m| m.role != MemberRole::Admin)).contains("at least one member"));
        assert!(bad(&|a| a.members[1].address = a.members[0].address).contains("listed twice"));
        assert!(bad(&|a| a.nodes[0].node_key = "zz".into()).contains("access.nodes[0]"));
        assert!(bad(&|a| a.nodes[0].address = "10.0.0.2:7946".into()).contains("not a multiaddress"));
        let typo = text.replace("role = \"read\"", "role = \"reader\"");
        assert!(Genesis::parse(&typo).unwrap_err().contains("read, write or admin"), "{typo}");
    }

    #[test]
    fn a_raft_genesis_lists_its_voters() {
        let voters: Vec<RaftVoter> = (0..3)
            .map(|i| RaftVoter {
                node_key: hex::encode(Keypair::from_seed(&format!("v{i}")).public().0),
                address: format!("/ip4/127.0.0.1/tcp/{}", 7900 + i),
            })
            .collect();
        let raft = RaftParams { propose_on_tx: true, election_ticks: 10, heartbeat_ticks: 2, voters };
        let g = Genesis {
            consensus: ConsensusParams {
                kind: ConsensusKind::Raft,
                raft: Some(raft.clone()),
                ..ConsensusParams::default()
            },
            producers: vec![],
            access: None,
            ..sample()
        };
        let text = g.to_toml();
        assert!(text.contains("kind = \"raft\"") && text.contains("[[consensus.raft.voters]]"), "{text}");
        assert_eq!(Genesis::parse(&text).unwrap(), g);
        assert_eq!(g.voter_keys().len(), 3);
        assert_eq!(g.signer_keys(), g.voter_keys());
        assert!(!sample().to_toml().contains("kind"), "a DPoS genesis is written as before");
        assert!(sample().voter_keys().is_empty());
        let bad = |f: &dyn Fn(&mut Genesis)| {
            let mut g = g.clone();
            f(&mut g);
            g.validate().unwrap_err()
        };
        assert!(bad(&|g| g.consensus.raft = None).contains("needs [consensus.raft]"));
        assert!(bad(&|g| g.consensus.kind = ConsensusKind::Dpos).contains("not \"raft\""));
        assert!(bad(&|g| g.consensus.raft.as_mut().unwrap().voters.clear()).contains("at least one voter"));
        assert!(bad(&|g| g.consensus.raft.as_mut().unwrap().voters[1].node_key = "zz".into())
            .contains("voters[1]: node_key is not hex"));
        assert!(bad(&|g| {
            let v = g.consensus.raft.as_mut().unwrap();
            v.voters[2].node_key = v.voters[0].node_key.clone();
        })
        .contains("listed twice"));
        assert!(bad(&|g| g.consensus.raft.as_mut().unwrap().voters[0].address = "1.2.3.4:5".into())
            .contains("not a multiaddress"));
        assert!(bad(&|g| g.consensus.raft.as_mut().unwrap().election_ticks = 2).contains("election_ticks"));
        assert!(Genesis::parse(&text.replace("kind = \"raft\"", "kind = \"pow\"")).is_err());
    }

    #[test]
    fn rejects_bad_files() {
        let mut g = sample();
        g.producers.clear();
        assert!(g.validate().unwrap_err().contains("producer"));
        assert!(Genesis::parse("chain_id = 5").is_err());
        let text = sample().to_toml().replace("aergo1", "aergo2");
        assert!(Genesis::parse(&text).is_err());
    }
}
