//! Moving a producer key between boxes without signing a slot twice: `aergo-node key export` and
//! `key import` carry the key (an encrypted keystore) together with its slashing-protection record,
//! the last slot the key signed, in one interchange file (`docs/fleet.md`, "Producer keys move
//! safely"). The node never signs a slot at or below the record in its data directory
//! (`last_signed_slot`), so a key imported with its record cannot sign again what it signed on the
//! box it came from.
//!
//! ```json
//! {
//!   "format": "aergo-producer-key/1",
//!   "chain_id": "aergo-fleet",
//!   "genesis_hash": "9f…",
//!   "address": "aergo1…",
//!   "keystore": { … the encrypted key file … },
//!   "slashing_protection": { "last_signed_slot": 1733370000, "exported_at_ms": 1733370001234 }
//! }
//! ```

use crate::node::SIGNED_SLOT_FILE;
use aergo_config::genesis::Genesis;
use aergo_config::NodeConfig;
use aergo_primitives::crypto::{KeyFile, Keypair, KeystoreError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The interchange file's `format`.
pub const FORMAT: &str = "aergo-producer-key/1";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interchange {
    pub format: String,
    pub chain_id: String,
    /// The genesis block's hash (hex) of the chain the record is for.
    pub genesis_hash: String,
    pub address: String,
    /// The key, encrypted with the export's passphrase (the key file format).
    pub keystore: serde_json::Value,
    pub slashing_protection: SlashingProtection,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SlashingProtection {
    /// The highest slot the key signed a block for; the node never signs at or below it.
    pub last_signed_slot: u64,
    pub exported_at_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyMoveError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    Key(#[from] KeystoreError),
    #[error("{0}")]
    Chain(String),
    #[error("{path} is not a producer key interchange file: {reason}")]
    Format { path: String, reason: String },
    #[error(
        "the file is for chain {file} (genesis {file_hash}), this node is on {node} (genesis {node_hash})"
    )]
    OtherChain { file: String, file_hash: String, node: String, node_hash: String },
    #[error("{path} holds another producer key ({existing}); move it away first")]
    OtherKey { path: String, existing: String },
    #[error("the node is running on {0}: stop it first, so that the record it carries is final")]
    NodeRunning(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyMoveError + '_ {
    move |source| KeyMoveError::Io { path: path.display().to_string(), source }
}

/// The slot record in a data directory (0 when there is none).
pub fn read_signed_slot(data_dir: &Path) -> Result<u64, KeyMoveError> {
    let path = data_dir.join(SIGNED_SLOT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| KeyMoveError::Format {
            path: path.display().to_string(),
            reason: format!("{:?} is not a slot number", text.trim()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io(&path)(e)),
    }
}

/// The chain id and genesis block hash of a stopped node's data directory. Opening the state store
/// takes its lock: a running node holds it, and its record would be out of date at once.
fn chain_of(config: &NodeConfig) -> Result<(String, String), KeyMoveError> {
    let genesis = Genesis::load(&config.genesis_path()).map_err(|e| KeyMoveError::Chain(e.to_string()))?;
    let state = config.data_dir.join("state");
    if !state.exists() {
        return Err(KeyMoveError::Chain(format!("{} holds no chain yet", config.data_dir.display())));
    }
    let store = aergo_storage::StateStore::open(&state).map_err(|e| {
        if e.to_string().to_lowercase().contains("lock") {
            KeyMoveError::NodeRunning(config.data_dir.display().to_string())
        } else {
            KeyMoveError::Chain(e.to_string())
        }
    })?;
    let hash = store.genesis_hash().map_err(|e| KeyMoveError::Chain(e.to_string()))?;
    Ok((genesis.chain_id, hash.map(|h| hex::encode(h.0)).unwrap_or_default()))
}

/// The producer key of a node's config (decrypted with its password file when encrypted).
fn producer_key(config: &NodeConfig) -> Result<Keypair, KeyMoveError> {
    let file = KeyFile::read(&config.key_path())?;
    let password = match &config.producer.password_file {
        Some(p) => {
            Some(std::fs::read_to_string(p).map_err(io(p))?.trim_end_matches(['\n', '\r']).to_string())
        }
        None => None,
    };
    Ok(file.unlock(password.as_deref())?)
}

/// `aergo-node key export`: the stopped node's producer key, encrypted with `passphrase`, and its
/// record, written to `out` (mode 0600, never over an existing file).
pub fn export(config: &NodeConfig, passphrase: &str, out: &Path) -> Result<Interchange, KeyMoveError> {
    let (chain_id, genesis_hash) = chain_of(config)?;
    let key = producer_key(config)?;
    let scratch = tempfile::tempdir().map_err(io(out))?;
    let encrypted = scratch.path().join("key.json");
    KeyFile::write_encrypted(&encrypted, &key, passphrase)?;
    let keystore: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&encrypted).map_err(io(&encrypted))?).map_err(|e| {
            KeyMoveError::Format { path: encrypted.display().to_string(), reason: e.to_string() }
        })?;
    let file = Interchange {
        format: FORMAT.into(),
        chain_id,
        genesis_hash,
        address: key.address().to_string(),
        keystore,
        slashing_protection: SlashingProtection {
            last_signed_slot: read_signed_slot(&config.data_dir)?,
            exported_at_ms: aergo_primitives::clock::now_ms(),
        },
    };
    if out.exists() {
        return Err(KeyMoveError::Io {
            path: out.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "refusing to overwrite it"),
        });
    }
    let text = serde_json::to_vec_pretty(&file)
        .map_err(|e| KeyMoveError::Format { path: out.display().to_string(), reason: e.to_string() })?;
    aergo_primitives::file::write_atomic_mode(out, &text, 0o600).map_err(io(out))?;
    Ok(file)
}

/// What [`import`] did.
#[derive(Debug)]
pub struct Imported {
    pub address: String,
    pub key_file: PathBuf,
    /// The record now in the data directory: the larger of the file's and the one already there.
    pub last_signed_slot: u64,
}

/// `aergo-node key import`: the key of the interchange file `input` into the node's key file, and
/// its record merged into the data directory's (the larger slot wins), for a stopped node on the
/// same chain.
pub fn import(config: &NodeConfig, input: &Path, passphrase: &str) -> Result<Imported, KeyMoveError> {
    let format_err = |reason: String| KeyMoveError::Format { path: input.display().to_string(), reason };
    let bytes = std::fs::read(input).map_err(io(input))?;
    let file: Interchange = serde_json::from_slice(&bytes).map_err(|e| format_err(e.to_string()))?;
    if file.format != FORMAT {
        return Err(format_err(format!("format {:?}, not {FORMAT:?}", file.format)));
    }
    let (chain_id, genesis_hash) = chain_of(config)?;
    if chain_id != file.chain_id || !genesis_hash.eq_ignore_ascii_case(&file.genesis_hash) {
        return Err(KeyMoveError::OtherChain {
            file: file.chain_id,
            file_hash: file.genesis_hash,
            node: chain_id,
            node_hash: genesis_hash,
        });
    }
    let scratch = tempfile::tempdir().map_err(io(input))?;
    let encrypted = scratch.path().join("key.json");
    let text = serde_json::to_vec(&file.keystore).map_err(|e| format_err(e.to_string()))?;
    std::fs::write(&encrypted, text).map_err(io(&encrypted))?;
    let key = KeyFile::read(&encrypted)?.unlock(Some(passphrase))?;
    if key.address().to_string() != file.address {
        return Err(format_err(format!(
            "the keystore's key is {}, the file says {}",
            key.address(),
            file.address
        )));
    }
    let key_path = config.key_path();
    let write_key = match KeyFile::read(&key_path) {
        Ok(existing) if existing.address() == key.address() => false,
        Ok(existing) => {
            return Err(KeyMoveError::OtherKey {
                path: key_path.display().to_string(),
                existing: existing.address().to_string(),
            })
        }
        Err(_) if key_path.exists() => {
            return Err(KeyMoveError::OtherKey {
                path: key_path.display().to_string(),
                existing: "an unreadable key file".into(),
            })
        }
        Err(_) => true,
    };
    // The record first takes the larger slot, then the key is usable: a crash in between leaves
    // a record that only forbids more.
    let local = read_signed_slot(&config.data_dir)?;
    let merged = local.max(file.slashing_protection.last_signed_slot);
    let record = config.data_dir.join(SIGNED_SLOT_FILE);
    aergo_primitives::file::write_atomic_mode(&record, format!("{merged}\n").as_bytes(), 0o644)
        .map_err(io(&record))?;
    if write_key {
        KeyFile::write_plain(&key_path, &key)?;
    }
    Ok(Imported { address: file.address, key_file: key_path, last_signed_slot: merged })
}
