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
    pub producers: Vec<GenesisProducer>,
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
}

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
        let bytes = hex::decode(&self.public_key).map_err(|e| format!("producer key is not hex: {e}"))?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| "producer key is not 32 bytes".to_string())?;
        Ok(PublicKey(arr))
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
        if self.producers.is_empty() {
            return Err("at least one producer is required".into());
        }
        for (i, p) in self.producers.iter().enumerate() {
            p.key().map_err(|e| format!("producers[{i}]: {e}"))?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for b in &self.balances {
            if !seen.insert(b.address) {
                return Err(format!("balance for {} is listed twice", b.address));
            }
        }
        Ok(())
    }

    pub fn producer_keys(&self) -> Vec<PublicKey> {
        self.producers.iter().filter_map(|p| p.key().ok()).collect()
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
