//! The shared test vectors (`docs/dapps.md`, "The JavaScript client"): every payload kind from
//! its JSON form, signed by a fixed key; `clients/js/test/vectors.json` must hold exactly these,
//! and the JavaScript client's tests must produce the same bytes from the same JSON.
//! `AERGO_WRITE_VECTORS=1 cargo test -p aergo-api tx_vectors` writes the file.

use super::*;
use aergo_primitives::crypto::Keypair;
use aergo_primitives::types::{to_vec_exact, BlockHeader, Transaction};
use serde_json::json;

fn key() -> Keypair {
    Keypair::from_secret([7; 32])
}

fn other(i: u8) -> Keypair {
    Keypair::from_secret([i; 32])
}

/// One JSON body of every kind (and a branch transaction, and call arguments of every type).
fn bodies() -> Vec<(&'static str, Json)> {
    let k = key();
    let (a, b) = (other(1), other(2));
    let header = |ts: u64| BlockHeader {
        version: 1,
        chain_id: "vectors".into(),
        branch: MAIN_BRANCH.into(),
        height: 9,
        prev_hash: Hash([3; 32]),
        timestamp_ms: ts,
        producer: a.public(),
        tx_root: Hash([4; 32]),
        state_root: Hash([5; 32]),
        receipts_root: Hash([6; 32]),
    };
    let (h1, h2) = (header(9_000), header(9_001));
    let evidence = Equivocation {
        first_signature: a.sign(&h1.hash()),
        second_signature: a.sign(&h2.hash()),
        first: h1,
        second: h2,
    };
    let contract = aergo_primitives::types::contract_address(&k.address(), 3);
    let base = |payload: Json| json!({"chain_id": "aergo-devnet", "nonce": 4, "payload": payload});
    vec![
        (
            "transfer",
            json!({"chain_id": "aergo-devnet", "nonce": 1, "recipient": a.address(), "amount": "1000000000000000000000", "fee": "0", "payload": {"kind": "transfer"}}),
        ),
        ("stake", base(json!({"kind": "stake"}))),
        ("unstake", base(json!({"kind": "unstake"}))),
        (
            "vote",
            base(
                json!({"kind": "vote", "candidates": [hex::encode(a.public().0), hex::encode(b.public().0)]}),
            ),
        ),
        ("register_bp", base(json!({"kind": "register_bp", "p2p_address": "/ip4/10.0.0.1/tcp/7846"}))),
        (
            "report_equivocation",
            base(json!({"kind": "report_equivocation", "evidence": hex::encode(to_vec_exact(&evidence))})),
        ),
        (
            "deploy",
            base(
                json!({"kind": "deploy", "sql": "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT);\n-- ünïcode ✓\n"}),
            ),
        ),
        (
            "call",
            json!({"chain_id": "aergo-devnet", "nonce": 5, "amount": "7", "fee": "2000000", "payload": {"kind": "call", "contract": contract, "function": "transfer", "args": [b.address(), 250]}}),
        ),
        (
            "call_every_argument_type",
            base(
                json!({"kind": "call", "contract": contract, "function": "f", "args": [null, true, false, 0, -1, 9_007_199_254_740_991_i64, {"int": "9223372036854775807"}, {"int": "-9223372036854775808"}, "text ✓", {"dec": "-12.50"}, {"dec": "0.000001"}, {"dec": "170141183460469231731687303715884105727"}, {"bytes": ""}, {"bytes": "00ff10"}]}),
            ),
        ),
        (
            "create_branch",
            base(
                json!({"kind": "create_branch", "name": "feature-x", "base_height": 120, "producers": [hex::encode(a.public().0)], "mergers": [b.address()]}),
            ),
        ),
        ("create_tag", base(json!({"kind": "create_tag", "name": "v1.0", "height": 120}))),
        (
            "merge",
            base(
                json!({"kind": "merge", "source": "feature-x", "strategy": "three-way", "upto": 140, "upto_hash": Hash([9; 32])}),
            ),
        ),
        (
            "raft_add_voter",
            base(
                json!({"kind": "raft_admin", "op": "add_voter", "node_key": hex::encode(b.public().0), "address": "/ip4/10.0.0.4/tcp/7846"}),
            ),
        ),
        (
            "raft_remove_voter",
            base(json!({"kind": "raft_admin", "op": "remove_voter", "node_key": hex::encode(a.public().0)})),
        ),
        (
            "raft_transfer_leader",
            base(
                json!({"kind": "raft_admin", "op": "transfer_leader", "node_key": hex::encode(b.public().0)}),
            ),
        ),
        (
            "repo_set_member",
            base(json!({"kind": "repo_admin", "op": "set_member", "member": b.address(), "role": "write"})),
        ),
        (
            "repo_remove_member",
            base(json!({"kind": "repo_admin", "op": "remove_member", "member": a.address()})),
        ),
        (
            "repo_allow_node",
            base(
                json!({"kind": "repo_admin", "op": "allow_node", "node_key": hex::encode(b.public().0), "address": "/ip4/10.0.0.5/tcp/7850"}),
            ),
        ),
        (
            "repo_deny_node",
            base(json!({"kind": "repo_admin", "op": "deny_node", "node_key": hex::encode(a.public().0)})),
        ),
        (
            "on_a_branch",
            json!({"chain_id": "aergo-devnet", "branch": "feature-x", "nonce": 0, "recipient": b.address(), "amount": "5", "payload": {"kind": "transfer"}}),
        ),
    ]
}

fn vectors() -> Json {
    let k = key();
    let transactions: Vec<Json> = bodies()
        .into_iter()
        .map(|(name, json)| {
            let parsed: TxJson =
                serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            let body = parsed.to_body(k.public()).unwrap_or_else(|e| panic!("{name}: {e}"));
            // The JSON written back, every default filled in, is the same body.
            let again = TxJson::of(&body).to_body(k.public()).unwrap();
            assert_eq!(again, body, "{name}: TxJson::of round trip");
            let signed: Transaction = k.sign_tx(body.clone());
            let decoded = Transaction::decode(&signed.encode()).unwrap();
            assert_eq!(decoded, signed, "{name}: decodes to itself");
            json!({
                "name": name,
                "body": json,
                "body_bytes": hex::encode(to_vec_exact(&body)),
                "hash": signed.hash(),
                "signature": hex::encode(signed.signature.0),
                "tx": hex::encode(signed.encode()),
            })
        })
        .collect();
    // A request to a private repository, signed as `X-Aergo-Auth` (crate::auth).
    let (repo, unix_ms) = ("acme", 1_700_000_000_123u64);
    let request = r#"{"jsonrpc":"2.0","id":1,"method":"chain_info","params":{}}"#;
    json!({
        "about": "Shared test vectors (docs/dapps.md): written by `AERGO_WRITE_VECTORS=1 cargo test -p aergo-api tx_vectors`; checked by that test and by clients/js's tests.",
        "key": {"secret": hex::encode([7u8; 32]), "public": hex::encode(k.public().0), "address": k.address()},
        "transactions": transactions,
        "rpc_auth": {
            "repo": repo,
            "unix_ms": unix_ms,
            "body": request,
            "message": crate::auth::message(repo, unix_ms, request.as_bytes()),
            "header": crate::auth::header_value(&k, repo, unix_ms, request.as_bytes()),
        },
    })
}

#[test]
fn tx_vectors_are_current() {
    // The clone's file, read when the test runs: the compile-time `env!` value names the clone
    // this executable was first built in, and the shared build cache (`scripts/env.sh`) lets
    // cargo reuse it in another clone.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")), std::path::PathBuf::from);
    let path = manifest.join("../../clients/js/test/vectors.json");
    let expected = serde_json::to_string_pretty(&vectors()).unwrap() + "\n";
    if std::env::var_os("AERGO_WRITE_VECTORS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == expected,
        "{} is not current: AERGO_WRITE_VECTORS=1 cargo test -p aergo-api tx_vectors",
        path.display()
    );
}

#[test]
fn bad_bodies_are_refused_with_the_field_named() {
    let k = key();
    let body = |j: Json| -> Result<TxBody, String> {
        let parsed: TxJson = serde_json::from_value(j).map_err(|e| e.to_string())?;
        parsed.to_body(k.public())
    };
    let base = json!({"chain_id": "c", "nonce": 1, "payload": {"kind": "transfer"}});
    let with = |k: &str, v: Json| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let call = |args: Json| {
        with("payload", json!({"kind": "call", "contract": key().address(), "function": "f", "args": args}))
    };
    let cases = [
        (with("extra", json!(1)), "unknown field `extra`"),
        (with("payload", json!({"kind": "transfer", "amount": 1})), "unknown field `amount`"),
        (with("payload", json!({"kind": "fly"})), "unknown variant `fly`"),
        (with("amount", json!("1.5")), "amount: a decimal string"),
        (with("recipient", json!("aergo1qqqq")), "not valid bech32m"),
        (with("nonce", Json::Null), "nonce is missing"),
        (with("chain_id", Json::Null), "chain_id is missing"),
        (with("branch", json!("no spaces")), "branch \"no spaces\""),
        (with("sender", json!("00".repeat(32))), "sender is not the signing key"),
        (call(json!([1.5])), "args[0]: 1.5 is not an integer"),
        (call(json!([1, {"dec": "x"}])), "args[1]: \"x\" is not a decimal"),
        (call(json!([{"dec": ".5"}])), "is not a decimal"),
        (call(json!([{"bytes": "0g"}])), "args[0]: \"0g\" is not hex"),
        (call(json!([{"int": "9223372036854775808"}])), "is not a 64-bit integer"),
        (call(json!([[1]])), "args[0]: not an AergoSQL value"),
        (
            with(
                "payload",
                json!({"kind": "merge", "source": "b", "strategy": "both", "upto": 1, "upto_hash": Hash([0; 32])}),
            ),
            "replay, three-way, ours or theirs",
        ),
        (with("payload", json!({"kind": "report_equivocation", "evidence": "00"})), "not encoded evidence"),
        (
            with("payload", json!({"kind": "raft_admin", "op": "add_voter", "node_key": "00".repeat(32)})),
            "add_voter needs the voter's address",
        ),
        (
            with("payload", json!({"kind": "raft_admin", "op": "fire", "node_key": "00".repeat(32)})),
            "add_voter, remove_voter or transfer_leader",
        ),
        (
            with(
                "payload",
                json!({"kind": "raft_admin", "op": "remove_voter", "node_key": "00".repeat(32), "address": "/ip4/1.2.3.4/tcp/1"}),
            ),
            "remove_voter takes no address",
        ),
        (
            with("payload", json!({"kind": "raft_admin", "op": "remove_voter", "node_key": "zz"})),
            "payload.node_key",
        ),
    ];
    for (j, expected) in cases {
        let err = body(j.clone()).expect_err(&j.to_string());
        assert!(err.contains(expected), "{j}: {err:?} does not say {expected:?}");
    }
}
