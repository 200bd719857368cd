//! The AERGO Chain node daemon: it wires the crates below into one running node and writes testnets.
//!
//! # Bird's-eye view
//! A transaction arrives over JSON-RPC (`aergo-rpc`) or gossip (`aergo-net`) as borsh bytes, is
//! decoded (`aergo_primitives::types`), checked and admitted to the pool by the admission stage
//! (`aergo-mempool`, signatures on a thread pool) with its place in the pool order, taken by the
//! chain thread (`aergo_consensus::Driver`) in this producer's slots (`aergo_chain::schedule`),
//! executed (`aergo-exec`, contracts through `aergo-sql`) and committed by the chain (`aergo-chain`):
//! first appended to the block log (io_uring, fsynced), then one atomic RocksDB batch with the new
//! state (versioned by height, Jellyfish Merkle root), the index and the receipts (`aergo-storage`).
//! The chain thread publishes what it did in a `ChainView` (`aergo_chain::view`), which the RPC
//! server and the network read; they reach the pool through a `PoolHandle`. [`node`] wires these
//! together: it opens the chain, starts the network task, the chain thread and the RPC server, and
//! stops them in order. [`testnet`] writes an N-node network's keys, genesis and configs;
//! [`producer_key`] moves a producer key between nodes with its slashing-protection record.
//!
//! This crate owns no chain logic of its own; it never reads the store or the network directly.
//! The crate layers are in `docs/crates.md`.
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
pub mod branches;
pub mod node;
pub mod producer_key;
pub mod repos;
pub mod testnet;
