//! Keys and signatures and the encrypted keystore.
//!
//! Transactions and block headers are signed (ed25519-dalek) over their blake3 hash. Verification is
//! consensus-critical: every node must accept exactly the same signatures, whichever way it checks
//! them. The rule, applied by [`verify`] and [`verify_batch`] alike:
//!
//! 1. the public key decodes to a curve point and is not of small order (a small-order key would
//!    let anyone sign for its account), and
//! 2. the signature satisfies the cofactored equation `[8][s]B = [8]R + [8][k]A` with a canonical `s`
//!    — the ZIP-215 rules, checked by `ed25519-zebra` (the Zcash Foundation's implementation).
//!
//! ZIP-215 is chosen because it is the one Ed25519 rule whose batch check agrees with its single
//! check on every input: ed25519-dalek's `verify_strict` (cofactorless) has no batch form that agrees
//! with it — its batch check accepts a signature whose `R` carries a small torsion component about
//! one time in eight, which would let a producer build blocks its followers refuse. Honest signatures
//! (all of ed25519-dalek's) pass both rules; they differ only on crafted edge cases.

mod keystore;
mod verified;

use crate::types::{Address, Hash, PublicKey, Signature, Transaction, TxBody};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

pub use keystore::{KeyFile, KeystoreError};
pub use verified::Verified;

/// Why a signature was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
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

/// A signed block for tests and benchmarks: `key` produced `transactions` at `height` on chain
/// `chain_id`'s `main`. Only its transaction root is computed: its parent hash and its state and
/// receipt roots are fixed values, as nothing executed it.
pub fn test_block(
    key: &Keypair,
    chain_id: &str,
    height: u64,
    transactions: Vec<Transaction>,
) -> crate::types::Block {
    use crate::types::{Block, BlockHeader, Hash};
    let header = BlockHeader {
        version: crate::types::ENCODING_VERSION,
        chain_id: chain_id.into(),
        branch: crate::types::MAIN_BRANCH.into(),
        height,
        prev_hash: Hash([1; 32]),
        timestamp_ms: 1_000 * height,
        producer: key.public(),
        tx_root: Block::compute_tx_root(&transactions),
        state_root: Hash([2; 32]),
        receipts_root: Hash([3; 32]),
    };
    let signature = key.sign(&header.hash());
    Block { header, transactions, signature }
}

/// A signed transaction for tests and benchmarks: `key` sends `payload` on chain `chain_id`.
pub fn test_tx(
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
        branch: crate::types::MAIN_BRANCH.into(),
        nonce,
        sender: key.public(),
        recipient,
        amount,
        fee,
        payload,
    })
}

/// Rule 1: the key decodes and is not of small order. (Both libraries decode points with
/// curve25519-dalek 4, so they agree on which bytes are a point.)
/// A key that passed is remembered (the rule is a pure function of its bytes), so a sender's
/// key is decompressed for it once rather than for every transaction it sends.
fn check_key(key: &PublicKey) -> Result<(), SignatureError> {
    if verified::key_known_good(&key.0) {
        return Ok(());
    }
    let dalek = VerifyingKey::from_bytes(&key.0).map_err(|_| SignatureError::BadPublicKey)?;
    if dalek.is_weak() {
        return Err(SignatureError::BadPublicKey);
    }
    verified::remember_good_key(&key.0);
    Ok(())
}

/// Verifies `signature` by `key` over `message` (the rule in the module docs).
pub fn verify_message(key: &PublicKey, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
    check_key(key)?;
    let key = ed25519_zebra::VerificationKey::try_from(key.0).map_err(|_| SignatureError::BadPublicKey)?;
    let sig = ed25519_zebra::Signature::from_bytes(&signature.0);
    key.verify(&sig, message).map_err(|_| SignatureError::Invalid)
}

/// Verifies `signature` by `key` over `hash`.
pub fn verify(key: &PublicKey, hash: &Hash, signature: &Signature) -> Result<(), SignatureError> {
    verify_message(key, &hash.0, signature)
}

/// Verifies a transaction's signature.
pub fn verify_tx(tx: &Transaction) -> Result<(), SignatureError> {
    verify(&tx.body.sender, &tx.hash(), &tx.signature)
}

/// Verifies many signatures over hashes with one batch check and answers for each, in order. The
/// batch check agrees with [`verify`] on every input (ZIP-215), so the answers are exactly what
/// [`verify`] would give one by one; when the batch fails, each signature is checked alone to name
/// the bad ones. Costs about half of single verification per signature for batches of 64 and more.
pub fn verify_batch(items: &[(&PublicKey, Hash, &Signature)]) -> Vec<Result<(), SignatureError>> {
    let mut out: Vec<Result<(), SignatureError>> = Vec::with_capacity(items.len());
    let mut batch = ed25519_zebra::batch::Verifier::new();
    let mut queued = 0usize;
    for (key, hash, sig) in items {
        match check_key(key) {
            Ok(_) => {
                let sig = ed25519_zebra::Signature::from_bytes(&sig.0);
                batch.queue((ed25519_zebra::VerificationKeyBytes::from(key.0), sig, &hash.0[..]));
                queued += 1;
                out.push(Ok(()));
            }
            Err(e) => out.push(Err(e)),
        }
    }
    if queued == 0 || batch.verify(rand::thread_rng()).is_ok() {
        return out;
    }
    for (answer, (key, hash, sig)) in out.iter_mut().zip(items) {
        if answer.is_ok() {
            *answer = verify(key, hash, sig);
        }
    }
    out
}

/// [`verify_batch`] over transactions.
pub fn verify_txs<'a>(txs: impl IntoIterator<Item = &'a Transaction>) -> Vec<Result<(), SignatureError>> {
    let items: Vec<(&PublicKey, Hash, &Signature)> =
        txs.into_iter().map(|tx| (&tx.body.sender, tx.hash(), &tx.signature)).collect();
    verify_batch(&items)
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

    /// A signature whose `R` carries a small torsion component: `R = [r]B + T`, `s = r + k·a`. The
    /// cofactorless equation fails (`[s]B − [k]A = [r]B ≠ R`), the cofactored one holds.
    fn torsion_signature(message: &[u8], torsion: usize) -> (PublicKey, Signature) {
        use curve25519_dalek::{constants, scalar::Scalar, traits::IsIdentity};
        use sha2::Digest;
        let a = Scalar::random(&mut rand::rngs::OsRng);
        let big_a = constants::ED25519_BASEPOINT_POINT * a;
        let r = Scalar::random(&mut rand::rngs::OsRng);
        let t = constants::EIGHT_TORSION[torsion];
        let big_r = constants::ED25519_BASEPOINT_POINT * r + t;
        let (rb, ab) = (big_r.compress().to_bytes(), big_a.compress().to_bytes());
        let k =
            Scalar::from_hash(sha2::Sha512::new().chain_update(rb).chain_update(ab).chain_update(message));
        let s = r + k * a;
        assert_eq!(t.is_identity(), torsion == 0);
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&rb);
        sig[32..].copy_from_slice(s.as_bytes());
        (PublicKey(ab), Signature(sig))
    }

    #[test]
    fn batch_and_single_verification_agree_on_torsion_signatures() {
        let hash = Hash::domain("t", b"torsion");
        let honest = Keypair::generate();
        let honest_sig = honest.sign(&hash);
        let honest_key = honest.public();
        for round in 0..64 {
            let (key, sig) = torsion_signature(&hash.0, 1 + round % 7);
            // The cofactorless rules (ed25519-dalek's `verify` and `verify_strict`) refuse it; a
            // cofactorless batch check would accept it whenever the random weight of T is 0 mod 8.
            let dalek = VerifyingKey::from_bytes(&key.0).unwrap();
            let dalek_sig = ed25519_dalek::Signature::from_bytes(&sig.0);
            assert!(dalek.verify_strict(&hash.0, &dalek_sig).is_err());
            assert!(ed25519_dalek::Verifier::verify(&dalek, &hash.0, &dalek_sig).is_err());
            // Our rule: single and batch give the same answer, alone and among honest signatures.
            let single = verify(&key, &hash, &sig);
            assert_eq!(single, Ok(()), "cofactored equation holds");
            let batch = verify_batch(&[(&honest_key, hash, &honest_sig), (&key, hash, &sig)]);
            assert_eq!(batch, vec![Ok(()), single.clone()]);
            assert_eq!(verify_batch(&[(&key, hash, &sig)]), vec![single]);
        }
    }

    #[test]
    fn small_order_keys_are_refused_by_both_paths() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        let hash = Hash::domain("t", b"weak");
        for t in EIGHT_TORSION {
            let key = PublicKey(t.compress().to_bytes());
            // With a small-order key, R = identity and s = 0 satisfy the cofactored equation.
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&curve25519_dalek::EdwardsPoint::default().compress().to_bytes());
            let sig = Signature(sig);
            assert_eq!(verify(&key, &hash, &sig), Err(SignatureError::BadPublicKey));
            assert_eq!(verify_batch(&[(&key, hash, &sig)]), vec![Err(SignatureError::BadPublicKey)]);
        }
        // Bytes that are no curve point at all.
        let off_curve = (2u8..)
            .map(|b| [b; 32])
            .find(|b| curve25519_dalek::edwards::CompressedEdwardsY(*b).decompress().is_none())
            .unwrap();
        let key = PublicKey(off_curve);
        assert_eq!(verify(&key, &hash, &Signature([0; 64])), Err(SignatureError::BadPublicKey));
        assert_eq!(
            verify_batch(&[(&key, hash, &Signature([0; 64]))]),
            vec![Err(SignatureError::BadPublicKey)]
        );
    }

    #[test]
    fn a_batch_names_each_bad_signature() {
        let keys: Vec<Keypair> = (0..40).map(|i| Keypair::from_seed(&format!("k{i}"))).collect();
        let hashes: Vec<Hash> = (0..40).map(|i| Hash::domain("t", &[i as u8])).collect();
        let mut sigs: Vec<Signature> = keys.iter().zip(&hashes).map(|(k, h)| k.sign(h)).collect();
        let publics: Vec<PublicKey> = keys.iter().map(|k| k.public()).collect();
        sigs[3].0[10] ^= 1; // corrupted R
        sigs[17] = keys[18].sign(&hashes[17]); // signed by another key
        sigs[30].0[63] |= 0x80; // non-canonical s
        let items: Vec<_> = (0..40).map(|i| (&publics[i], hashes[i], &sigs[i])).collect();
        let answers = verify_batch(&items);
        for (i, a) in answers.iter().enumerate() {
            assert_eq!(a.is_err(), [3, 17, 30].contains(&i), "signature {i}: {a:?}");
            assert_eq!(*a, verify(&publics[i], &hashes[i], &sigs[i]));
        }
        let good: Vec<_> =
            items.iter().enumerate().filter(|(i, _)| ![3, 17, 30].contains(i)).map(|(_, x)| *x).collect();
        assert!(verify_batch(&good).iter().all(Result::is_ok));
        assert!(verify_batch(&[]).is_empty());
    }

    #[test]
    fn secret_roundtrip() {
        let key = Keypair::generate();
        let again = Keypair::from_secret(key.secret_bytes());
        assert_eq!(key.public(), again.public());
    }
}
