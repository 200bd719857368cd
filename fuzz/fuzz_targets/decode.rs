//! Transaction and block decoding under libFuzzer: any bytes through `Transaction::decode` and
//! `Block::decode`, which gossip, RPC and the block log all go through. Decoding returns or refuses;
//! what decodes must encode back to exactly the same bytes (one encoding per object: a second one
//! would give one transaction two hashes), and hashing and signature checks of what decodes must
//! not panic. Seeds: `corpus/decode/`.
#![no_main]

use aergo_primitives::types::{Block, Transaction};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = Transaction::decode(data) {
        assert_eq!(tx.encode(), data, "a transaction decoded from bytes it does not encode to");
        let _ = tx.hash();
        let _ = aergo_primitives::crypto::verify_tx(&tx);
    }
    if let Ok(block) = Block::decode(data) {
        assert_eq!(block.encode(), data, "a block decoded from bytes it does not encode to");
        let _ = block.hash();
        let _ = Block::compute_tx_root(&block.transactions);
    }
});
