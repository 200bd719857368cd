//! `X-Aergo-Auth`: a request to a private repository signed by a member's key
//! (`docs/repositories.md`, "Access control").
//!
//! ```text
//! X-Aergo-Auth: <public key hex>:<unix ms>:<signature hex>
//! signature = ed25519(key, H("aergo/rpc-auth", repo ‖ 0 ‖ unix ms as u64 BE ‖ H("aergo/rpc-body", body)))
//! H(d, x) = blake3(d ‖ 0 ‖ x)
//! ```
//! A WebSocket is signed once, at its upgrade, over the empty body.

use aergo_primitives::crypto::{self, Keypair};
use aergo_primitives::types::{Hash, PublicKey, Signature};

/// The header's name (HTTP header names are case-insensitive).
pub const HEADER: &str = "x-aergo-auth";
/// How far a request's time may be from the node's clock.
pub const MAX_SKEW_MS: u64 = 60_000;

/// What a member signs for a request of `body` to repository `repo` at `unix_ms`.
pub fn message(repo: &str, unix_ms: u64, body: &[u8]) -> Hash {
    let body = Hash::domain("aergo/rpc-body", body);
    let mut bytes = Vec::with_capacity(repo.len() + 41);
    bytes.extend_from_slice(repo.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&unix_ms.to_be_bytes());
    bytes.extend_from_slice(&body.0);
    Hash::domain("aergo/rpc-auth", &bytes)
}

/// The header's value for a request of `body` to `repo`, signed by `key` at `unix_ms`.
pub fn header_value(key: &Keypair, repo: &str, unix_ms: u64, body: &[u8]) -> String {
    let signature = key.sign(&message(repo, unix_ms, body));
    format!("{}:{unix_ms}:{}", hex::encode(key.public().0), hex::encode(signature.0))
}

/// Checks a header's value for a request of `body` to `repo` at the node's `now_ms`: the key
/// that signed it, or why it does not pass.
pub fn check(value: &str, repo: &str, now_ms: u64, body: &[u8]) -> Result<PublicKey, String> {
    let mut parts = value.trim().split(':');
    let (Some(key), Some(ms), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not <key>:<unix ms>:<signature>".into());
    };
    let key: [u8; 32] =
        hex::decode(key).ok().and_then(|b| b.try_into().ok()).ok_or("the key is not 32 bytes of hex")?;
    let ms: u64 = ms.parse().map_err(|_| "the time is not unix milliseconds")?;
    let sig: [u8; 64] = hex::decode(sig)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the signature is not 64 bytes of hex")?;
    if now_ms.abs_diff(ms) > MAX_SKEW_MS {
        return Err(format!("signed at {ms}, more than {MAX_SKEW_MS} ms from the node's clock ({now_ms})"));
    }
    let key = PublicKey(key);
    crypto::verify(&key, &message(repo, ms, body), &Signature(sig)).map_err(|e| format!("signature: {e}"))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_request_passes_for_its_repository_body_and_time_only() {
        let key = Keypair::generate();
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"chain_info"}"#;
        let v = header_value(&key, "acme", 1_000_000, body);
        assert_eq!(check(&v, "acme", 1_030_000, body), Ok(key.public()));
        assert!(check(&v, "lab", 1_000_000, body).is_err(), "another repository");
        assert!(check(&v, "acme", 1_000_000, b"{}").is_err(), "another body");
        assert!(check(&v, "acme", 1_060_001, body).unwrap_err().contains("more than"), "stale");
        for bad in ["", "a:b:c", "x:1:y:z", &v.replacen(':', ";", 1)] {
            assert!(check(bad, "acme", 1_000_000, body).is_err(), "{bad:?}");
        }
    }
}
