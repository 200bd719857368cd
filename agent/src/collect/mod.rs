//! What a sample is made of: host resources ([`host`]) and the node's view of the chain ([`chain`]).

pub mod chain;
pub mod host;
