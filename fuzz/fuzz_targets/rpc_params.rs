//! JSON-RPC parameters under libFuzzer: any bytes as the JSON a client sends, through what the
//! server does with parameters before any state is read: the request types of `aergo-api`, address
//! and hash parsing, amounts, transaction hex, and contract arguments as AergoSQL values. Every path
//! must return or refuse; a request that parses must survive its own round trip. Seeds:
//! `corpus/rpc_params/`.
#![no_main]

use aergo_api::{amount_string, QueryRequest};
use aergo_primitives::types::{Address, Hash, Transaction};
use aergo_primitives::value::json::{from_json, to_json};
use aergo_primitives::value::Value;
use serde_json::Value as Json;

fn strings(j: &Json, out: &mut Vec<String>) {
    match j {
        Json::String(s) => out.push(s.clone()),
        Json::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Json::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<Json>(data) else { return };
    if let Ok(request) = serde_json::from_value::<QueryRequest>(json.clone()) {
        let again = serde_json::to_value(&request).expect("a request serializes");
        assert_eq!(serde_json::from_value::<QueryRequest>(again).ok().as_ref(), Some(&request));
        for arg in &request.args {
            if let Ok(value) = from_json(arg) {
                // Decimals go out as exact strings (and a string comes in as text): the rest round-trips.
                let shown = to_json(&value);
                if !matches!(value, Value::Dec(_)) {
                    assert_eq!(from_json(&shown).as_ref(), Ok(&value), "argument {arg}");
                }
            }
        }
    }
    let mut texts = Vec::new();
    strings(&json, &mut texts);
    for text in texts.iter().take(64) {
        if let Ok(address) = Address::parse(text) {
            assert_eq!(Address::parse(&address.to_string()).ok(), Some(address));
        }
        if let Ok(hash) = Hash::from_hex(text) {
            assert_eq!(Hash::from_hex(&hash.to_hex()).ok(), Some(hash));
        }
        if let Ok(amount) = amount_string::parse(text) {
            assert_eq!(amount_string::parse(&amount.to_string()), Ok(amount));
        }
        if let Ok(bytes) = hex::decode(text) {
            let _ = Transaction::decode(&bytes);
        }
    }
});
