//! The AERGO Chain node: storage, the pool, execution, consensus, the network and the RPC server.
//!
//! # Bird's-eye view
//! A transaction arrives over JSON-RPC ([`rpc`]) as borsh bytes in hex, is decoded
//! ([`aergo_primitives::types`]), queued to the [`admission`] stage (signatures checked on a thread
//! pool, [`aergo_primitives::crypto`]), admitted to the [`mempool`] with its place in the pool order,
//! taken by the producer thread ([`node`]) at the next slot, executed ([`exec`], contracts through
//! [`sql`]) and committed by the [`chain`]: first appended to the block log (io_uring, fsynced), then
//! one atomic RocksDB batch with the new state (versioned by height, Jellyfish Merkle root), the index
//! and the receipts ([`storage`]). Producers agree on the chain through [`consensus`] over [`net`].
//! Clients read any height, receipts and blocks back through the same RPC, described once in the
//! `aergo-api` crate.
//!
//! What this crate does not hold: the chain's vocabulary (`aergo-primitives`), the RPC interface
//! (`aergo-api`), the configuration and genesis files (`aergo-config`), the CLI (`aergo-cli`) and the
//! benchmarks (`aergo-bench`) — see `docs/crates.md` for the layers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use aergo_config::NodeConfig;
//! use aergo_node::node::{prepare_devnet, RunningNode};
//! let config: NodeConfig = prepare_devnet(std::path::Path::new("/tmp/devnet"))?;
//! let node = RunningNode::start(config).await?;
//! println!("RPC on {}", node.rpc_addr);
//! node.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod alloc;
pub mod chain;
pub mod consensus;

pub mod net;
pub mod node;
pub mod rpc;

pub mod testnet;
pub mod view;
