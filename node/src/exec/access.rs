//! Access sets: what each transaction may read and write, declared before it runs.
//!
//! A transfer touches its sender and its recipient (both read and written). Staking and voting touch
//! the sender and system keys (stakes, votes, candidates), which the executor does not schedule:
//! blocks holding them run in order. Contract calls will declare their tables as AergoSQL's analysis
//! reports them. The parallel executor trusts the declaration for scheduling and checks it
//! during execution: an access outside the set is caught and re-executed in order.

use crate::types::{Address, Payload, Transaction};
use smallvec::SmallVec;

/// The accounts a transaction may touch; every access is treated as a read and a write. Inline for
/// the common case of two, so building a block's sets allocates nothing per transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessSet {
    pub accounts: SmallVec<[Address; 2]>,
}

impl AccessSet {
    pub fn contains(&self, a: &Address) -> bool {
        self.accounts.contains(a)
    }
}

/// The declared access set of `tx`.
pub fn declared(tx: &Transaction) -> AccessSet {
    let sender = tx.sender();
    let mut accounts = SmallVec::new();
    accounts.push(sender);
    match tx.body.payload {
        Payload::Transfer => {
            if tx.body.recipient != sender {
                accounts.push(tx.body.recipient);
            }
        }
        // Staking and voting touch system keys too; the executor runs blocks holding them in order.
        Payload::Stake
        | Payload::Unstake
        | Payload::Vote { .. }
        | Payload::RegisterBp { .. }
        | Payload::ReportEquivocation(_)
        | Payload::Deploy { .. }
        | Payload::Call { .. } => {}
    }
    AccessSet { accounts }
}
