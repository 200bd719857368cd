//! Keys and signatures (ed25519-dalek) and the encrypted keystore.
//!
//! Transactions and block headers are signed over their blake3 hash. Single verification is strict
//! (`verify_strict`: rejects small-order keys and non-canonical signatures), so every node accepts exactly
//! the same signatures.

mod keystore;

use crate::types::{Address, Hash, PublicKey, Signature, Transaction, TxBody};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

pub use keystore::{KeyFile, KeystoreError};

/// Why a signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("public key is not a valid ed25519 point")]
    BadPublicKey,
    #[error("signature does not verify against the sender's public key")]
    Invalid,
}

/// An ed25519 signing key with its derived address.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({})", self.address())
    }
}

impl Keypair {
    pub fn generate() -> Keypair {
        Keypair { signing: SigningKey::generate(&mut rand::rngs::OsRng) }
    }

    pub fn from_secret(secret: [u8; 32]) -> Keypair {
        Keypair { signing: SigningKey::from_bytes(&secret) }
    }

    /// A key derived from a seed string: for tests and benchmarks only, never for real funds.
    pub fn from_seed(seed: &str) -> Keypair {
        Keypair::from_secret(Hash::domain("aergo/test-seed", seed.as_bytes()).0)
    }

    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    pub fn address(&self) -> Address {
        self.public().address()
    }

    pub fn sign(&self, hash: &Hash) -> Signature {
        Signature(self.signing.sign(&hash.0).to_bytes())
    }

    /// Signs an arbitrary message (the agent's answers). Callers put a domain prefix in `message` so
    /// that a signature made here can never pass for a transaction's or a block's.
    pub fn sign_message(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }

    pub fn sign_tx(&self, body: TxBody) -> Transaction {
        let signature = self.sign(&body.hash());
        Transaction::new(body, signature)
    }
}

/// A signed transaction for tests: `key` sends `payload` on chain `chain_id`.
#[cfg(test)]
pub(crate) fn test_tx(
    key: &Keypair,
    chain_id: &str,
    nonce: u64,
    recipient: crate::types::Address,
    amount: crate::types::Amount,
    fee: crate::types::Amount,
    payload: crate::types::Payload,
) -> Transaction {
    key.sign_tx(TxBody {
        version: crate::types::ENCODING_VERSION,
        chain_id: chain_id.into(),
        nonce,
        sender: key.public(),
        recipient,
        amount,
        fee,
        payload,
    })
}

/// Verifies `signature` by `key` over `hash`.
pub fn verify(key: &PublicKey, hash: &Hash, signature: &Signature) -> Result<(), SignatureError> {
    let key = VerifyingKey::from_bytes(&key.0).map_err(|_| SignatureError::BadPublicKey)?;
    let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(&hash.0, &sig).map_err(|_| SignatureError::Invalid)
}

/// Verifies a [`Keypair::sign_message`] signature.
pub fn verify_message(key: &PublicKey, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
    let key = VerifyingKey::from_bytes(&key.0).map_err(|_| SignatureError::BadPublicKey)?;
    let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(message, &sig).map_err(|_| SignatureError::Invalid)
}

/// Verifies a transaction's signature.
pub fn verify_tx(tx: &Transaction) -> Result<(), SignatureError> {
    verify(&tx.body.sender, &tx.hash(), &tx.signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let key = Keypair::generate();
        let hash = Hash::domain("t", b"hello");
        let sig = key.sign(&hash);
        assert_eq!(verify(&key.public(), &hash, &sig), Ok(()));
        let other = Hash::domain("t", b"hellp");
        assert_eq!(verify(&key.public(), &other, &sig), Err(SignatureError::Invalid));
        let mut bad = sig;
        bad.0[3] ^= 1;
        assert_eq!(verify(&key.public(), &hash, &bad), Err(SignatureError::Invalid));
        assert_eq!(verify(&Keypair::generate().public(), &hash, &sig), Err(SignatureError::Invalid));
    }

    #[test]
    fn secret_roundtrip() {
        let key = Keypair::generate();
        let again = Keypair::from_secret(key.secret_bytes());
        assert_eq!(key.public(), again.public());
    }
}
