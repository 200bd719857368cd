//! Sparse Merkle proofs of the state, checked with no node (`docs/dapps.md`, "State proofs").
//!
//! The node keeps its state in a Jellyfish Merkle tree (the `jmt` crate, hashed with blake3) and
//! serves that tree's proofs as bytes. This module reads and checks those bytes from the format
//! the page documents, with code of its own, so that a client (the CLI, the JavaScript client,
//! a bridge) needs neither the tree's crate nor a node; a storage test checks that both agree.

use std::fmt;

/// The hash of an empty subtree: these 32 ASCII bytes.
pub const EMPTY_SUBTREE: [u8; 32] = *b"SPARSE_MERKLE_PLACEHOLDER_HASH__";
const LEAF_DOMAIN: &[u8] = b"JMT::LeafNode";
const INTERNAL_DOMAIN: &[u8] = b"JMT::IntrnalNode";
/// A proof has at most one sibling per bit of a key hash.
pub const MAX_SIBLINGS: usize = 256;

/// A leaf of the tree: its key's hash and its value's hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub key_hash: [u8; 32],
    pub value_hash: [u8; 32],
}

impl Leaf {
    pub fn hash(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(LEAF_DOMAIN);
        h.update(&self.key_hash);
        h.update(&self.value_hash);
        *h.finalize().as_bytes()
    }
}

/// A sibling on the way from the leaf (or the empty place) to the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sibling {
    Empty,
    Internal { left: [u8; 32], right: [u8; 32] },
    Leaf(Leaf),
}

impl Sibling {
    pub fn hash(&self) -> [u8; 32] {
        match self {
            Sibling::Empty => EMPTY_SUBTREE,
            Sibling::Internal { left, right } => internal(left, right),
            Sibling::Leaf(leaf) => leaf.hash(),
        }
    }
}

fn internal(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(INTERNAL_DOMAIN);
    h.update(left);
    h.update(right);
    *h.finalize().as_bytes()
}

/// Why a proof does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProofError {
    /// The bytes are not a proof (truncated, a bad tag, trailing bytes, too many siblings).
    Malformed(String),
    /// The proof is of another key, or says the key is present when it was claimed absent (or
    /// the other way round), or of another value.
    Mismatch(String),
    /// The proof does not lead to the root.
    Root { computed: [u8; 32], expected: [u8; 32] },
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProofError::Malformed(why) => write!(f, "the proof's bytes are malformed: {why}"),
            ProofError::Mismatch(why) => f.write_str(why),
            ProofError::Root { computed, expected } => write!(
                f,
                "the proof leads to the root {}, not to the header's state root {}",
                hex::encode(computed),
                hex::encode(expected)
            ),
        }
    }
}

impl std::error::Error for ProofError {}

/// A sparse Merkle proof: the leaf found where the key would be (if any) and the siblings from
/// that place up to the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SparseProof {
    pub leaf: Option<Leaf>,
    pub siblings: Vec<Sibling>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ProofError> {
        let end = self.at + N;
        let slice = self.bytes.get(self.at..end).ok_or_else(|| {
            ProofError::Malformed(format!("it ends at byte {} inside {what}", self.bytes.len()))
        })?;
        self.at = end;
        Ok(slice.try_into().expect("N bytes"))
    }

    fn leaf(&mut self) -> Result<Leaf, ProofError> {
        Ok(Leaf { key_hash: self.take::<32>("a key hash")?, value_hash: self.take::<32>("a value hash")? })
    }
}

impl SparseProof {
    /// Reads a proof from its bytes (the layout of `docs/dapps.md`); nothing may follow it.
    pub fn decode(bytes: &[u8]) -> Result<SparseProof, ProofError> {
        let mut r = Reader { bytes, at: 0 };
        let leaf = match r.take::<1>("the leaf's tag")?[0] {
            0 => None,
            1 => Some(r.leaf()?),
            t => return Err(ProofError::Malformed(format!("the leaf's tag is {t}, not 0 or 1"))),
        };
        let count = u32::from_le_bytes(r.take::<4>("the sibling count")?) as usize;
        if count > MAX_SIBLINGS {
            return Err(ProofError::Malformed(format!("{count} siblings, more than {MAX_SIBLINGS}")));
        }
        let mut siblings = Vec::with_capacity(count);
        for i in 0..count {
            siblings.push(match r.take::<1>("a sibling's tag")?[0] {
                0 => Sibling::Empty,
                1 => Sibling::Internal {
                    left: r.take::<32>("a left child")?,
                    right: r.take::<32>("a right child")?,
                },
                2 => Sibling::Leaf(r.leaf()?),
                t => return Err(ProofError::Malformed(format!("sibling {i}'s tag is {t}, not 0, 1 or 2"))),
            });
        }
        if r.at != bytes.len() {
            return Err(ProofError::Malformed(format!(
                "{} bytes follow the last sibling",
                bytes.len() - r.at
            )));
        }
        Ok(SparseProof { leaf, siblings })
    }

    /// The proof's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + 65 * (self.siblings.len() + 1));
        match &self.leaf {
            None => out.push(0),
            Some(l) => {
                out.push(1);
                out.extend_from_slice(&l.key_hash);
                out.extend_from_slice(&l.value_hash);
            }
        }
        out.extend_from_slice(&(self.siblings.len() as u32).to_le_bytes());
        for s in &self.siblings {
            match s {
                Sibling::Empty => out.push(0),
                Sibling::Internal { left, right } => {
                    out.push(1);
                    out.extend_from_slice(left);
                    out.extend_from_slice(right);
                }
                Sibling::Leaf(l) => {
                    out.push(2);
                    out.extend_from_slice(&l.key_hash);
                    out.extend_from_slice(&l.value_hash);
                }
            }
        }
        out
    }

    /// Checks that `key` has `value` (`None`: that it is absent) in the tree whose root is `root`.
    pub fn verify(&self, root: &[u8; 32], key: &[u8], value: Option<&[u8]>) -> Result<(), ProofError> {
        if self.siblings.len() > MAX_SIBLINGS {
            return Err(ProofError::Malformed(format!("more than {MAX_SIBLINGS} siblings")));
        }
        let key_hash = *blake3::hash(key).as_bytes();
        match (value, &self.leaf) {
            (Some(value), Some(leaf)) => {
                if leaf.key_hash != key_hash {
                    return Err(ProofError::Mismatch(
                        "the proof is of another key (its leaf's key hash differs)".into(),
                    ));
                }
                if leaf.value_hash != *blake3::hash(value).as_bytes() {
                    return Err(ProofError::Mismatch(
                        "the value is not the one the proof's leaf holds".into(),
                    ));
                }
            }
            (Some(_), None) => {
                return Err(ProofError::Mismatch(
                    "the proof says the key is absent, but a value was claimed".into(),
                ));
            }
            (None, Some(leaf)) => {
                if leaf.key_hash == key_hash {
                    return Err(ProofError::Mismatch(
                        "the proof says the key is present, but it was claimed absent".into(),
                    ));
                }
                if common_prefix_bits(&key_hash, &leaf.key_hash) < self.siblings.len() {
                    return Err(ProofError::Mismatch(
                        "the proof's leaf is not in the subtree where the key would be".into(),
                    ));
                }
            }
            (None, None) => {}
        }
        let mut h = self.leaf.as_ref().map_or(EMPTY_SUBTREE, Leaf::hash);
        let n = self.siblings.len();
        for (i, sibling) in self.siblings.iter().enumerate() {
            let s = sibling.hash();
            h = if bit(&key_hash, n - 1 - i) { internal(&s, &h) } else { internal(&h, &s) };
        }
        if h != *root {
            return Err(ProofError::Root { computed: h, expected: *root });
        }
        Ok(())
    }
}

/// Bit `i` of `hash`, bit 0 being the most significant bit of byte 0.
fn bit(hash: &[u8; 32], i: usize) -> bool {
    (hash[i / 8] >> (7 - i % 8)) & 1 == 1
}

fn common_prefix_bits(a: &[u8; 32], b: &[u8; 32]) -> usize {
    (0..256).take_while(|&i| bit(a, i) == bit(b, i)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(key: &[u8], value: &[u8]) -> Leaf {
        Leaf { key_hash: *blake3::hash(key).as_bytes(), value_hash: *blake3::hash(value).as_bytes() }
    }

    #[test]
    fn a_one_leaf_tree_proves_its_key_and_the_absence_of_others() {
        let l = leaf(b"k", b"v");
        let proof = SparseProof { leaf: Some(l), siblings: Vec::new() };
        let root = l.hash();
        proof.verify(&root, b"k", Some(b"v")).unwrap();
        assert!(matches!(proof.verify(&root, b"k", Some(b"w")), Err(ProofError::Mismatch(_))));
        assert!(matches!(proof.verify(&root, b"k", None), Err(ProofError::Mismatch(_))));
        proof.verify(&root, b"other", None).unwrap();
        let bytes = proof.encode();
        assert_eq!(SparseProof::decode(&bytes).unwrap(), proof);
    }

    #[test]
    fn malformed_bytes_are_refused_with_why() {
        let proof = SparseProof {
            leaf: None,
            siblings: vec![
                Sibling::Empty,
                Sibling::Leaf(leaf(b"a", b"b")),
                Sibling::Internal { left: [1; 32], right: [2; 32] },
            ],
        };
        let bytes = proof.encode();
        assert_eq!(SparseProof::decode(&bytes).unwrap(), proof);
        for cut in 0..bytes.len() {
            assert!(matches!(SparseProof::decode(&bytes[..cut]), Err(ProofError::Malformed(_))), "{cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(SparseProof::decode(&longer).unwrap_err().to_string().contains("follow the last sibling"));
        let mut too_many = vec![0];
        too_many.extend_from_slice(&257u32.to_le_bytes());
        assert!(SparseProof::decode(&too_many).unwrap_err().to_string().contains("more than 256"));
        assert!(SparseProof::decode(&[7]).unwrap_err().to_string().contains("tag is 7"));
    }

    #[test]
    fn bits_count_from_the_most_significant_bit_of_the_first_byte() {
        let mut h = [0u8; 32];
        h[0] = 0b1000_0000;
        h[1] = 0b0000_0001;
        assert!(bit(&h, 0) && !bit(&h, 1) && bit(&h, 15) && !bit(&h, 14));
        assert_eq!(common_prefix_bits(&h, &[0; 32]), 0);
        assert_eq!(common_prefix_bits(&[0; 32], &[0; 32]), 256);
    }
}
