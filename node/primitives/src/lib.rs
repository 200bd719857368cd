//! The AERGO Chain's vocabulary: what every other crate speaks and none of them owns.
//!
//! # Bird's-eye view
//! - [`types`]: transactions, blocks, receipts, accounts, addresses (bech32m) and hashes (blake3),
//!   with their one borsh encoding ([`types::ENCODING_VERSION`]); what goes on the wire and into
//!   the block log is exactly these bytes.
//! - [`crypto`]: ed25519 keys and signatures under one verification rule (ZIP-215, single and batch
//!   alike), transaction signing, and the password-encrypted key file.
//! - [`value`]: AergoSQL's values (integers, decimals, text, booleans, bytes, NULL), their row and
//!   key encodings and their JSON form, shared by the SQL engine, the RPC and the CLI.
//! - [`file`]: writing a file so that a crash leaves the old or the new contents.
//! - [`proof`]: the state's sparse Merkle proofs, read and checked with no node.
//!
//! This crate never touches RocksDB, the network, the SQL parser or a compiler: the API crate, the
//! agent and the console depend on it and must stay small.
//!
//! ```
//! use aergo_primitives::crypto::Keypair;
//! let key = Keypair::generate();
//! println!("{}", key.address());
//! ```

pub mod clock;
pub mod crypto;
pub mod file;
pub mod proof;
pub mod refs;
pub mod types;
pub mod value;
