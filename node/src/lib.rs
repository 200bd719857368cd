//! The AERGO Chain node: the chain, consensus, the network, the RPC server and the daemon's wiring.
//!
//! # Bird's-eye view
//! A transaction arrives over JSON-RPC ([`rpc`]) or gossip ([`net`]) as borsh bytes, is decoded
//! (`aergo_primitives::types`), checked and admitted to the pool by the admission stage
//! (`aergo-mempool`, signatures on a thread pool) with its place in the pool order, taken by the
//! chain thread ([`consensus::Driver`]) in this producer's slots ([`schedule`]), executed
//! (`aergo-exec`, contracts through `aergo-sql`) and committed by the [`chain`]: first appended to
//! the block log (io_uring, fsynced), then one atomic RocksDB batch with the new state (versioned by
//! height, Jellyfish Merkle root), the index and the receipts (`aergo-storage`). The chain thread
//! publishes what it did in a [`view::ChainView`], which the RPC server and the network read; they
//! reach the pool through a [`view::PoolHandle`]. [`node`] wires these together.
//!
//! Modules depend downward only: `schedule` ← `chain` ← `view` ← `net` ← `consensus`, and `rpc`
//! on `view` and `net`; the crates below are in `docs/crates.md`.
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
pub mod schedule;

pub mod testnet;
pub mod view;
