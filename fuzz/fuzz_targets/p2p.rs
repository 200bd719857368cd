//! The p2p protocol under libFuzzer: any bytes as a sync request, a sync response, a gossiped block
//! a gossiped compact block and a gossiped transaction, through the functions the node's request-response codec and gossip
//! handler call (`aergo_protocol`). Decoding returns or refuses; what decodes must encode to bytes
//! that decode to the same message; a response is checked against every kind of request, and what
//! `check_response` accepts must keep its promises (no more blocks than asked for, the block asked
//! for by hash is that block, a snapshot page has at most one frame). Seeds: `fuzz/seeds/p2p/` (kept current by a test of aergo-protocol).
#![no_main]

use aergo_primitives::types::Hash;
use aergo_protocol::{
    check_response, decode_gossip_block, decode_gossip_tx, decode_request, decode_response, encode_request,
    encode_response, Answer, SnapshotPart, SyncRequest, MAX_SNAPSHOT_HEAD_FRAMES, MAX_SYNC_BLOCKS,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(request) = decode_request(data) {
        let again = decode_request(&encode_request(&request)).expect("an encoded request decodes");
        assert_eq!(again, request, "a request changed through encode and decode");
    }
    if let Ok(response) = decode_response(data) {
        let again = decode_response(&encode_response(&response)).expect("an encoded response decodes");
        assert_eq!(again, response, "a response changed through encode and decode");
        let some_hash = match &response {
            aergo_protocol::SyncResponse::Block(Some(bytes)) => {
                aergo_primitives::types::Block::decode(bytes).map(|b| b.hash()).unwrap_or(Hash([0; 32]))
            }
            _ => Hash([0; 32]),
        };
        let asks = [
            SyncRequest::Status,
            SyncRequest::Blocks { from: 1, count: 1 },
            SyncRequest::Blocks { from: 1, count: MAX_SYNC_BLOCKS },
            SyncRequest::Block { hash: some_hash },
            SyncRequest::Block { hash: Hash([0; 32]) },
            SyncRequest::Snapshot(SnapshotPart::Head),
            SyncRequest::Genesis,
            SyncRequest::Snapshot(SnapshotPart::Leaves { height: 1, after: None }),
            SyncRequest::Snapshot(SnapshotPart::Rows { height: 1, after: None }),
            SyncRequest::Transactions { block: Hash([0; 32]), indices: vec![0, 3] },
        ];
        for asked in &asks {
            match (asked, check_response(Some(asked), response.clone())) {
                (SyncRequest::Blocks { count, .. }, Ok(Answer::Blocks(blocks))) => {
                    assert!(blocks.len() <= *count as usize, "{} blocks accepted for {count}", blocks.len())
                }
                (SyncRequest::Block { hash }, Ok(Answer::Blocks(blocks))) => {
                    assert_eq!(blocks.len(), 1);
                    assert_eq!(blocks[0].hash(), *hash, "a block accepted for another's hash");
                }
                (SyncRequest::Status, Ok(Answer::Blocks(_))) => panic!("blocks accepted for a status request"),
                (SyncRequest::Snapshot(SnapshotPart::Head), Ok(Answer::Snapshot(frames))) => {
                    assert!(!frames.is_empty() && frames.len() <= MAX_SNAPSHOT_HEAD_FRAMES)
                }
                (SyncRequest::Snapshot(_), Ok(Answer::Snapshot(frames))) => assert!(frames.len() <= 1),
                (SyncRequest::Snapshot(_), Ok(Answer::Blocks(_))) => panic!("blocks accepted for a snapshot part"),
                (SyncRequest::Transactions { indices, .. }, Ok(Answer::Transactions(txs))) => {
                    assert_eq!(txs.len(), indices.len(), "transactions accepted for another count")
                }
                (SyncRequest::Genesis, Ok(Answer::Genesis(text))) => {
                    assert!(text.len() <= aergo_protocol::MAX_GENESIS_BYTES)
                }
                _ => {}
            }
        }
        let _ = check_response(None, response);
    }
    if let Ok(request) = aergo_protocol::decode_branch_request(data) {
        let again = aergo_protocol::decode_branch_request(&aergo_protocol::encode_branch_request(&request))
            .expect("an encoded branch request decodes");
        assert_eq!(again, request, "a branch request changed through encode and decode");
    }
    if let Ok(block) = decode_gossip_block(data) {
        assert_eq!(block.encode(), data, "a gossiped block decoded from bytes it does not encode to");
    }
    if let Ok(compact) = aergo_protocol::decode_gossip_compact(data) {
        assert_eq!(compact.encode(), data, "a compact block decoded from bytes it does not encode to");
        assert_eq!(aergo_primitives::types::merkle_root(&compact.tx_hashes), compact.header.tx_root);
    }
    if let Ok(tx) = decode_gossip_tx(data) {
        assert_eq!(tx.encode(), data, "a gossiped transaction decoded from bytes it does not encode to");
    }
});
