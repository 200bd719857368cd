//! The AERGO Chain node.
//!
//! # Bird's-eye view
//! A transaction arrives over JSON-RPC ([`rpc`]) as borsh bytes in hex, is decoded ([`types`]), queued
//! to the [`admission`] stage (signatures checked on a thread pool, [`crypto`]), admitted to the [`mempool`] with its place in the pool order, taken by the
//! producer thread ([`node`]) at the next slot, executed ([`exec`]) and committed by the [`chain`]: first
//! appended to the block log (io_uring, fsynced), then one atomic RocksDB batch with the new state
//! (versioned by height, Jellyfish Merkle root), the index and the receipts ([`storage`]). Clients read
//! any height, receipts and blocks back through the same RPC, described once in [`api`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use aergo_node::{config::NodeConfig, node::{prepare_devnet, RunningNode}};
//! let config: NodeConfig = prepare_devnet(std::path::Path::new("/tmp/devnet"))?;
//! let node = RunningNode::start(config).await?;
//! println!("RPC on {}", node.rpc_addr);
//! node.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod admission;
pub mod alloc;
pub mod api;
pub mod chain;
pub mod config;
pub mod consensus;
pub mod crypto;
pub mod exec;
pub mod genesis;
pub mod mempool;
pub mod net;
pub mod node;
pub mod rpc;
pub mod sql;
pub mod storage;
pub mod testnet;
pub mod types;
