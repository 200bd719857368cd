use super::*;
use crate::crypto::{verify_tx, Keypair};
use proptest::prelude::*;

fn body(key: &Keypair, nonce: u64, amount: u128, fee: u128, chain_id: String) -> TxBody {
    TxBody {
        version: ENCODING_VERSION,
        chain_id,
        branch: crate::types::MAIN_BRANCH.into(),
        nonce,
        sender: key.public(),
        recipient: Keypair::from_seed("r").address(),
        amount,
        fee,
        payload: Payload::Transfer,
    }
}

proptest! {
    #[test]
    fn transaction_encode_decode_is_identity(
        seed in "[a-z]{1,8}", nonce: u64, amount: u128, fee: u128, chain_id in "[a-z0-9-]{1,64}"
    ) {
        let key = Keypair::from_seed(&seed);
        let tx = key.sign_tx(body(&key, nonce, amount, fee, chain_id));
        let bytes = tx.encode();
        let back = Transaction::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &tx);
        prop_assert_eq!(back.hash(), tx.hash());
        prop_assert!(verify_tx(&back).is_ok());
    }

    #[test]
    fn block_encode_decode_is_identity(height: u64, ts: u64, n in 0usize..5, on_branch: bool) {
        let key = Keypair::from_seed("bp");
        let txs: Vec<Transaction> =
            (0..n).map(|i| key.sign_tx(body(&key, i as u64, 1, 1, "c".into()))).collect();
        let branch = if on_branch { "feature/x" } else { MAIN_BRANCH };
        let header = BlockHeader {
            version: TxBody::version_for(branch),
            chain_id: "c".into(),
            branch: branch.into(),
            height,
            prev_hash: Hash::domain("p", &height.to_le_bytes()),
            timestamp_ms: ts,
            producer: key.public(),
            tx_root: Block::compute_tx_root(&txs),
            state_root: Hash::ZERO,
            receipts_root: Hash::ZERO,
        };
        let signature = key.sign(&header.hash());
        let block = Block { header, transactions: txs, signature };
        prop_assert_eq!(Block::decode(&block.encode()).unwrap(), block);
    }

    #[test]
    fn address_text_roundtrip(bytes: [u8; 20]) {
        let a = Address(bytes);
        prop_assert_eq!(Address::parse(&a.to_string()).unwrap(), a);
    }

    #[test]
    fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Transaction::decode(&bytes);
        let _ = Block::decode(&bytes);
    }
}

#[test]
fn tampered_transactions_are_rejected() {
    let key = Keypair::from_seed("a");
    let tx = key.sign_tx(body(&key, 0, 5, 1, "c".into()));
    let mut changed = tx.clone();
    changed.body.amount = 6;
    assert!(verify_tx(&changed).is_err());
    let mut bytes = tx.encode();
    bytes.push(0);
    assert!(matches!(Transaction::decode(&bytes), Err(DecodeError::Malformed { .. })), "trailing bytes");
    let mut bytes = tx.encode();
    bytes[0] = 9;
    assert!(matches!(Transaction::decode(&bytes), Err(DecodeError::Version { found: 9, .. })));
    let big = vec![ENCODING_VERSION; MAX_TX_BYTES + 1];
    assert!(matches!(Transaction::decode(&big), Err(DecodeError::TooLarge { .. })));
}

#[test]
fn mistyped_addresses_are_rejected() {
    let a = Keypair::from_seed("x").address().to_string();
    assert!(a.starts_with("aergo1"));
    // Change one character of the data part: the checksum must catch it.
    let mut chars: Vec<char> = a.chars().collect();
    let i = 10;
    chars[i] = if chars[i] == 'q' { 'p' } else { 'q' };
    let typo: String = chars.into_iter().collect();
    assert!(Address::parse(&typo).is_err());
    assert!(Address::parse(&a[..a.len() - 1]).is_err());
    assert!(Address::parse(&a.replace("aergo1", "other1")).is_err());
    // Same data with a bech32 (not bech32m) checksum is refused.
    let data = Keypair::from_seed("x").address().0;
    let bech32 = bech32::encode::<bech32::Bech32>(bech32::Hrp::parse("aergo").unwrap(), &data).unwrap();
    assert!(Address::parse(&bech32).is_err());
}

#[test]
fn merkle_roots() {
    let h = |i: u8| Hash::domain("leaf", &[i]);
    assert_eq!(merkle_root(&[]), Hash::ZERO);
    let one = merkle_root(&[h(1)]);
    assert_ne!(one, h(1), "a single leaf is still domain-separated");
    let two = merkle_root(&[h(1), h(2)]);
    assert_ne!(two, merkle_root(&[h(2), h(1)]), "order matters");
    let three = merkle_root(&[h(1), h(2), h(3)]);
    assert_ne!(three, two);
    assert_ne!(merkle_root(&[h(1), h(2), h(3), h(3)]), three, "duplicating the odd leaf changes the root");
    // Deterministic.
    assert_eq!(merkle_root(&[h(1), h(2), h(3)]), three);
}

#[test]
fn amounts_travel_as_strings() {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct W {
        #[serde(with = "crate::types::amount_string")]
        a: u128,
    }
    let json = serde_json::to_string(&W { a: u128::MAX }).unwrap();
    assert_eq!(json, format!("{{\"a\":\"{}\"}}", u128::MAX));
    assert_eq!(serde_json::from_str::<W>(&json).unwrap().a, u128::MAX);
    assert!(serde_json::from_str::<W>("{\"a\":\"-1\"}").is_err());
    assert!(serde_json::from_str::<W>("{\"a\":\"1.5\"}").is_err());
}

#[test]
fn exact_encoding_is_borsh_in_a_vector_of_its_length() {
    let account = Account { balance: 12_345, nonce: 7 };
    let row = vec![crate::value::Value::Int(5), crate::value::Value::Text("holder".into())];
    for (exact, reference) in [
        (to_vec_exact(&account), borsh::to_vec(&account).unwrap()),
        (to_vec_exact(&(3u64, 4u64)), borsh::to_vec(&(3u64, 4u64)).unwrap()),
        (to_vec_exact(&row), borsh::to_vec(&row).unwrap()),
    ] {
        assert_eq!(exact, reference);
        assert_eq!(exact.capacity(), exact.len(), "no room reserved beyond the value");
    }
}

/// The decoding fuzz target's seeds (`fuzz/seeds/decode/`) are encodings of today's transactions
/// and blocks: a transfer, a contract call and a block holding both. Run with
/// `AERGO_WRITE_FUZZ_SEEDS=1` to write them after a deliberate change of the encoding.
#[test]
fn fuzz_seeds_are_current_encodings() {
    let key = Keypair::from_seed("fuzz");
    let transfer = key.sign_tx(body(&key, 7, 1_000, 1, "aergo-fuzz".into()));
    let call = key.sign_tx(TxBody {
        payload: Payload::Call {
            contract: Keypair::from_seed("contract").address(),
            function: "transfer".into(),
            args: vec![crate::value::Value::Text("bob".into()), crate::value::Value::Int(5)],
        },
        ..body(&key, 8, 0, 50_000, "aergo-fuzz".into())
    });
    let header = BlockHeader {
        version: ENCODING_VERSION,
        chain_id: "aergo-fuzz".into(),
        branch: MAIN_BRANCH.into(),
        height: 9,
        prev_hash: Hash([1; 32]),
        timestamp_ms: 1_700_000_000_000,
        producer: key.public(),
        tx_root: Block::compute_tx_root(&[transfer.clone(), call.clone()]),
        state_root: Hash([2; 32]),
        receipts_root: Hash([3; 32]),
    };
    let signature = key.sign(&header.hash());
    let block = Block { header, transactions: vec![transfer.clone(), call.clone()], signature };
    let seeds =
        [("transfer.bin", transfer.encode()), ("call.bin", call.encode()), ("block.bin", block.encode())];
    // At run time: the executable may have been built in another clone (scripts/env.sh).
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let dir = std::path::Path::new(&manifest).join("../../fuzz/seeds/decode");
    crate::file::check_fuzz_seeds(&dir, &seeds);
}

/// A body for a branch carries it (version 2) and signs it: the same transfer on `main` and on a
/// branch are two transactions; `main` keeps version 1 and its bytes; a version-2 body naming
/// `main`, an inconsistent body and an unknown version are refused.
#[test]
fn a_body_names_its_branch_and_main_keeps_version_1() {
    let key = Keypair::from_seed("b");
    let on_main = body(&key, 0, 5, 1, "c".into());
    let mut on_branch = on_main.clone();
    on_branch.branch = "feature/x".into();
    on_branch.version = TxBody::version_for(&on_branch.branch);
    assert_eq!((on_main.version, on_branch.version), (ENCODING_VERSION, BRANCH_TX_VERSION));
    let (a, b) = (key.sign_tx(on_main.clone()), key.sign_tx(on_branch.clone()));
    assert_ne!(a.hash(), b.hash(), "the branch is signed");
    let back = Transaction::decode(&b.encode()).unwrap();
    assert_eq!(back, b);
    assert_eq!(back.body.branch, "feature/x");
    assert!(verify_tx(&back).is_ok());
    // Version 1 is the body as it always was: no branch in its bytes.
    assert_eq!(
        borsh::to_vec(&on_main).unwrap().len() + 4 + "feature/x".len(),
        borsh::to_vec(&on_branch).unwrap().len()
    );
    // A version-2 body that names main: refused (each transaction has one encoding).
    let mut bytes = b.encode();
    let at = 1 + 4 + 1; // version, the chain id's length and its one byte
    assert_eq!(&bytes[at..at + 4], &9u32.to_le_bytes());
    bytes.splice(at..at + 4 + 9, [4u32.to_le_bytes().to_vec(), b"main".to_vec()].concat());
    let err = Transaction::decode(&bytes).unwrap_err().to_string();
    assert!(err.contains("\"main\" is the chain's own branch"), "{err}");
    // A body whose version does not fit its branch cannot be encoded.
    let mut odd = on_main.clone();
    odd.branch = "feature".into();
    assert!(borsh::to_vec(&odd).is_err());
    let mut bytes = a.encode();
    bytes[0] = 3;
    assert!(matches!(Transaction::decode(&bytes), Err(DecodeError::Version { found: 3, .. })));
}

/// A branch's block header carries its branch (version 2) under the producer's signature; `main`'s
/// headers keep version 1 and their bytes; a version-2 header naming `main`, a header whose version
/// does not fit its branch and an unknown version are refused.
#[test]
fn a_header_names_its_branch_and_main_keeps_version_1() {
    let key = Keypair::from_seed("bp");
    let on_main = BlockHeader {
        version: ENCODING_VERSION,
        chain_id: "c".into(),
        branch: MAIN_BRANCH.into(),
        height: 7,
        prev_hash: Hash([1; 32]),
        timestamp_ms: 9,
        producer: key.public(),
        tx_root: Hash::ZERO,
        state_root: Hash([2; 32]),
        receipts_root: Hash::ZERO,
    };
    let on_branch = BlockHeader { version: BRANCH_TX_VERSION, branch: "feature".into(), ..on_main.clone() };
    assert_ne!(on_main.hash(), on_branch.hash(), "the branch is signed");
    let bytes = |h: &BlockHeader| borsh::to_vec(h).unwrap();
    assert_eq!(bytes(&on_main).len() + 4 + "feature".len(), bytes(&on_branch).len());
    let block =
        Block { header: on_branch.clone(), transactions: vec![], signature: key.sign(&on_branch.hash()) };
    assert_eq!(Block::decode(&block.encode()).unwrap().header.branch, "feature");
    // Version 2 naming main: refused.
    let mut named_main = block.encode();
    let at = 1 + 4 + 1;
    named_main.splice(at..at + 4 + 7, [4u32.to_le_bytes().to_vec(), b"main".to_vec()].concat());
    let err = Block::decode(&named_main).unwrap_err().to_string();
    assert!(err.contains("\"main\" is the chain's own branch"), "{err}");
    // Inconsistent version and branch: cannot be encoded.
    let odd = BlockHeader { branch: "feature".into(), ..on_main.clone() };
    assert!(borsh::to_vec(&odd).is_err());
    let mut unknown = block.encode();
    unknown[0] = 3;
    assert!(matches!(Block::decode(&unknown), Err(DecodeError::Version { found: 3, .. })));
}
