//! `aergo verify-proof`: a state proof checked against a trusted header with no node
//! (`docs/dapps.md`, "State proofs": the checks, in the order made here).

use aergo_api::{ProofEntry, ProofSubject, ProvenAccount, ProvenBlock, StateProofView};
use aergo_primitives::proof::SparseProof;
use aergo_primitives::types::{account_key, Account, Hash};
use aergo_sql::store::{code_key, row_columns, row_state_key};

/// Which check failed, and why.
pub struct NotVerified {
    pub check: &'static str,
    pub why: String,
}

fn fail<T>(check: &'static str, why: impl Into<String>) -> Result<T, NotVerified> {
    Err(NotVerified { check, why: why.into() })
}

fn unhex(what: &str, text: &str) -> Result<Vec<u8>, NotVerified> {
    hex::decode(text).or_else(|e| fail("the document", format!("{what} is not hex: {e}")))
}

/// A header's hash computed from its fields, which must be its `hash`.
fn header_hash(block: &ProvenBlock, whose: &'static str) -> Result<Hash, NotVerified> {
    let header = block.header.block_header().or_else(|e| fail(whose, e))?;
    let hash = header.hash();
    if hash != block.hash {
        return fail(whose, format!("its fields hash to {hash}, not to its hash {}", block.hash));
    }
    Ok(hash)
}

/// An entry's key, value and proof, its key checked to be `expected`, its proof checked against
/// `root`; answers the proven value.
fn proven(
    entry: &ProofEntry,
    i: usize,
    expected: &[u8],
    root: &Hash,
) -> Result<Option<Vec<u8>>, NotVerified> {
    let key = unhex("an entry's key", &entry.key)?;
    if key != expected {
        return fail(
            "the state key",
            format!(
                "entry {i} is of key {}, not of {} (the key of what the document claims)",
                entry.key,
                hex::encode(expected)
            ),
        );
    }
    let value = entry.value.as_deref().map(|v| unhex("an entry's value", v)).transpose()?;
    let proof = unhex("an entry's proof", &entry.proof)?;
    SparseProof::decode(&proof)
        .and_then(|p| p.verify(&root.0, &key, value.as_deref()))
        .or_else(|e| fail("the proof", format!("entry {i}: {e}")))?;
    Ok(value)
}

/// Checks `doc` against `trusted`; answers what it verified, in words.
pub fn verify(doc: &StateProofView, trusted: &ProvenBlock) -> Result<String, NotVerified> {
    let hash = header_hash(trusted, "the trusted header")?;
    if doc.block.hash != hash {
        return fail(
            "the block",
            format!("the proof is against block {}, the trusted header is {hash}", doc.block.hash),
        );
    }
    if doc.block.header != trusted.header || doc.height != trusted.header.height {
        return fail("the block", "the document's header or height differs from the trusted header's");
    }
    let root = trusted.header.state_root;
    let at = format!("at height {} (block {hash})", doc.height);
    match &doc.subject {
        ProofSubject::Account { address, account } => {
            let [entry] = doc.entries.as_slice() else {
                return fail(
                    "the document",
                    format!("an account's proof has 1 entry, not {}", doc.entries.len()),
                );
            };
            let value = proven(entry, 0, &account_key(address), &root)?;
            let decoded = match &value {
                Some(bytes) => {
                    let a: Account = borsh::from_slice(bytes)
                        .or_else(|e| fail("the value", format!("the proven account does not decode: {e}")))?;
                    Some(ProvenAccount { balance: a.balance, nonce: a.nonce })
                }
                None => None,
            };
            if &decoded != account {
                return fail("the value", "the document's account is not what the proven value decodes to");
            }
            Ok(match decoded {
                Some(a) => format!("account {address} {at}: balance {} nonce {}", a.balance, a.nonce),
                None => format!("account {address} {at} is absent"),
            })
        }
        ProofSubject::Row { contract, table, key, row } => {
            let [code_entry, row_entry] = doc.entries.as_slice() else {
                return fail(
                    "the document",
                    format!("a row's proof has 2 entries, not {}", doc.entries.len()),
                );
            };
            let Some(script) = proven(code_entry, 0, &code_key(contract), &root)? else {
                return Ok(format!("contract {contract} {at} is absent"));
            };
            let script =
                String::from_utf8(script).or_else(|_| fail("the value", "the proven script is not UTF-8"))?;
            let checked = aergo_sql::compile(&script)
                .or_else(|e| fail("the value", format!("the proven script does not compile: {e}")))?;
            let values = key
                .iter()
                .map(aergo_sql::json::from_json)
                .collect::<Result<Vec<_>, _>>()
                .or_else(|e| fail("the document", format!("its key: {e}")))?;
            let row_key = row_state_key(&checked.contract, contract, table, &values)
                .or_else(|e| fail("the state key", e.to_string()))?;
            let value = proven(row_entry, 1, &row_key, &root)?;
            let decoded: Option<serde_json::Map<String, serde_json::Value>> = match &value {
                Some(bytes) => Some(
                    row_columns(&checked.contract, table, bytes)
                        .or_else(|e| fail("the value", e.to_string()))?
                        .into_iter()
                        .map(|(c, v)| (c, aergo_sql::json::to_json(&v)))
                        .collect(),
                ),
                None => None,
            };
            if &decoded != row {
                return fail("the value", "the document's row is not what the proven value decodes to");
            }
            let key_text = serde_json::to_string(key).unwrap_or_default();
            Ok(match decoded {
                Some(r) => format!(
                    "row {key_text} of {table} in contract {contract} {at}: {}",
                    serde_json::Value::Object(r)
                ),
                None => format!("row {key_text} of {table} in contract {contract} {at} is absent"),
            })
        }
    }
}
