//! Binary Merkle root over a list of hashes (transactions, receipts), blake3 with domain separation
//! between leaves and inner nodes so that a leaf can never pass for a node (second-preimage safety).
//! An odd node at the end of a level is carried up unchanged.

use super::Hash;

pub fn merkle_root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Hash::ZERO;
    }
    let mut level: Vec<Hash> = leaves.iter().map(|leaf| Hash::domain("aergo/merkle-leaf", &leaf.0)).collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => {
                    let mut buf = [0u8; 64];
                    buf[..32].copy_from_slice(&left.0);
                    buf[32..].copy_from_slice(&right.0);
                    Hash::domain("aergo/merkle-node", &buf)
                }
                [single] => *single,
                _ => unreachable!("chunks(2) yields one or two items"),
            })
            .collect();
    }
    level[0]
}
