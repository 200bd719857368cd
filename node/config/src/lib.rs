//! The files an operator writes: the node's configuration ([`NodeConfig`], TOML) and the chain's
//! genesis ([`genesis::Genesis`]).
//!
//! # Bird's-eye view
//! Every setting has a default and unknown keys are refused, so a typo is an error rather than a
//! silently ignored line. [`NodeConfig::load`] reads and validates a file and names the file and the
//! setting in its error; `config.example.toml` beside the node documents every setting and a test
//! checks it against the defaults. The node, the CLI and the console's Setup all read and write
//! these types, so this crate depends on the primitives alone: never on storage, the network or the
//! engines, whose settings it only describes.
//!
//! ```
//! let config: aergo_config::NodeConfig = toml::from_str("[rpc]\nlisten = \"127.0.0.1:7845\"").unwrap();
//! assert!(config.validate().is_ok());
//! ```

pub mod cores;
pub mod genesis;
mod node;
pub mod repos;

/// The multiaddr crate the p2p settings are parsed with (for the Setup screen's port lookup).
pub use multiaddr;
pub use node::*;
