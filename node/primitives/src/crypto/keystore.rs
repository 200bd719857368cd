//! Key files.
//!
//! Two kinds, told apart by the `kind` field of a small JSON document:
//! - `encrypted`: the secret key sealed with XChaCha20-Poly1305 under a key derived from the password by
//!   scrypt (N = 2^15, r = 8, p = 1 by default). The address is stored in clear so that a file can be
//!   identified without the password.
//! - `plain`: the secret in hex, for the devnet's `dev.key` only (written with mode 0600).

use super::Keypair;
use crate::types::Address;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("cannot read key file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot write key file {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("key file {path} is not a valid AERGO key file: {reason}")]
    Format { path: String, reason: String },
    #[error("wrong password for key file {path} (or the file was altered)")]
    WrongPassword { path: String },
    #[error("key file {path} is encrypted; give a password (prompt, --password-file or AERGO_PASSWORD)")]
    PasswordNeeded { path: String },
    #[error("key file {path} already exists; refusing to overwrite a key")]
    Exists { path: String },
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum KeyDoc {
    Plain { address: Address, secret_key: String },
    Encrypted { address: Address, kdf: ScryptParams, nonce: String, ciphertext: String },
}

#[derive(Serialize, Deserialize, Clone, Copy)]
struct ScryptParams {
    log_n: u8,
    r: u32,
    p: u32,
    #[serde(with = "hex_array")]
    salt: [u8; 16],
}

mod hex_array {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(text).map_err(serde::de::Error::custom)?;
        bytes.try_into().map_err(|_| serde::de::Error::custom("salt must be 16 bytes"))
    }
}

/// A key file as read from disk, before any password is applied.
pub struct KeyFile {
    path: String,
    doc: KeyDoc,
}

fn derive_key(params: &ScryptParams, password: &str) -> Result<[u8; 32], KeystoreError> {
    let p = scrypt::Params::new(params.log_n, params.r, params.p, 32)
        .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    let mut out = [0u8; 32];
    scrypt::scrypt(password.as_bytes(), &params.salt, &p, &mut out)
        .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    Ok(out)
}

fn write_private(path: &Path, contents: &[u8], overwrite: bool) -> Result<(), KeystoreError> {
    if !overwrite && path.exists() {
        return Err(KeystoreError::Exists { path: path.display().to_string() });
    }
    crate::file::write_atomic_mode(path, contents, 0o600)
        .map_err(|source| KeystoreError::Write { path: path.display().to_string(), source })
}

impl KeyFile {
    pub fn read(path: &Path) -> Result<KeyFile, KeystoreError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| KeystoreError::Read { path: path.display().to_string(), source })?;
        let doc: KeyDoc = serde_json::from_str(&text)
            .map_err(|e| KeystoreError::Format { path: path.display().to_string(), reason: e.to_string() })?;
        Ok(KeyFile { path: path.display().to_string(), doc })
    }

    pub fn address(&self) -> Address {
        match &self.doc {
            KeyDoc::Plain { address, .. } | KeyDoc::Encrypted { address, .. } => *address,
        }
    }

    pub fn is_encrypted(&self) -> bool {
        matches!(self.doc, KeyDoc::Encrypted { .. })
    }

    /// Opens the key; `password` is needed for encrypted files only.
    pub fn unlock(&self, password: Option<&str>) -> Result<Keypair, KeystoreError> {
        let format =
            |reason: &str| KeystoreError::Format { path: self.path.clone(), reason: reason.to_string() };
        let key = match &self.doc {
            KeyDoc::Plain { secret_key, .. } => {
                let bytes = hex::decode(secret_key).map_err(|_| format("secret_key is not hex"))?;
                let secret: [u8; 32] = bytes.try_into().map_err(|_| format("secret_key is not 32 bytes"))?;
                Keypair::from_secret(secret)
            }
            KeyDoc::Encrypted { kdf, nonce, ciphertext, .. } => {
                let password =
                    password.ok_or_else(|| KeystoreError::PasswordNeeded { path: self.path.clone() })?;
                let key = derive_key(kdf, password)?;
                let nonce = hex::decode(nonce).map_err(|_| format("nonce is not hex"))?;
                if nonce.len() != 24 {
                    return Err(format("nonce is not 24 bytes"));
                }
                let ciphertext = hex::decode(ciphertext).map_err(|_| format("ciphertext is not hex"))?;
                let cipher = XChaCha20Poly1305::new(&key.into());
                let plain = cipher
                    .decrypt(XNonce::from_slice(&nonce), ciphertext.as_slice())
                    .map_err(|_| KeystoreError::WrongPassword { path: self.path.clone() })?;
                let secret: [u8; 32] = plain.try_into().map_err(|_| format("sealed key is not 32 bytes"))?;
                Keypair::from_secret(secret)
            }
        };
        if key.address() != self.address() {
            return Err(format("the key does not match the address recorded in the file"));
        }
        Ok(key)
    }

    /// Writes `key` encrypted under `password`. Refuses to overwrite an existing file.
    pub fn write_encrypted(path: &Path, key: &Keypair, password: &str) -> Result<(), KeystoreError> {
        Self::write_encrypted_with(path, key, password, 15)
    }

    /// As [`KeyFile::write_encrypted`] with a chosen scrypt cost (tests use a low one).
    pub fn write_encrypted_with(
        path: &Path,
        key: &Keypair,
        password: &str,
        log_n: u8,
    ) -> Result<(), KeystoreError> {
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let kdf = ScryptParams { log_n, r: 8, p: 1, salt };
        let sealing = derive_key(&kdf, password)?;
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new(&sealing.into());
        let ciphertext = cipher
            .encrypt(XNonce::from_slice(&nonce), key.secret_bytes().as_slice())
            .map_err(|_| KeystoreError::Kdf("encryption failed".to_string()))?;
        let doc = KeyDoc::Encrypted {
            address: key.address(),
            kdf,
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        };
        let json = serde_json::to_vec_pretty(&doc).expect("a key document is strings and an address");
        write_private(path, &json, false)
    }

    /// Writes `key` unencrypted (mode 0600): the devnet key and the node identity key only.
    pub fn write_plain(path: &Path, key: &Keypair) -> Result<(), KeystoreError> {
        let doc = KeyDoc::Plain { address: key.address(), secret_key: hex::encode(key.secret_bytes()) };
        let json = serde_json::to_vec_pretty(&doc).expect("a key document is strings and an address");
        write_private(path, &json, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_roundtrip_and_wrong_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        let key = Keypair::generate();
        KeyFile::write_encrypted_with(&path, &key, "hunter2", 4).unwrap();
        let file = KeyFile::read(&path).unwrap();
        assert!(file.is_encrypted());
        assert_eq!(file.address(), key.address());
        assert_eq!(file.unlock(Some("hunter2")).unwrap().public(), key.public());
        assert!(matches!(file.unlock(Some("hunter3")), Err(KeystoreError::WrongPassword { .. })));
        assert!(matches!(file.unlock(None), Err(KeystoreError::PasswordNeeded { .. })));
        assert!(matches!(
            KeyFile::write_encrypted_with(&path, &key, "x", 4),
            Err(KeystoreError::Exists { .. })
        ));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn plain_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev.key");
        let key = Keypair::generate();
        KeyFile::write_plain(&path, &key).unwrap();
        let file = KeyFile::read(&path).unwrap();
        assert!(!file.is_encrypted());
        assert_eq!(file.unlock(None).unwrap().address(), key.address());
    }

    #[test]
    fn garbage_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(KeyFile::read(&path), Err(KeystoreError::Format { .. })));
    }
}
