//! Gas: what a call may spend, charged at the same points by every engine.
//!
//! Costs are in gas units; a call's limit comes from its transaction's fee (1 unit of the chain's
//! smallest amount per gas) capped at [`MAX_CALL_GAS`]. The figures are sized so that a token
//! transfer (two point reads, two row writes, a few dozen expression nodes) costs about 1 000.

use super::SqlError;

/// Most gas one call or deploy may use.
pub const MAX_CALL_GAS: u64 = 50_000_000;
/// Every call and deploy.
pub const CALL: u64 = 200;
/// Each byte of a deployed script.
pub const DEPLOY_BYTE: u64 = 10;
/// Each statement executed.
pub const STATEMENT: u64 = 5;
/// Each expression node evaluated.
pub const NODE: u64 = 1;
/// Each row or index entry read, plus [`READ_BYTES_PER_GAS`].
pub const ROW_READ: u64 = 20;
pub const READ_BYTES_PER_GAS: u64 = 64;
/// Each lookup or scan started.
pub const SEEK: u64 = 30;
/// Each row written or deleted, plus [`WRITE_BYTES_PER_GAS`].
pub const ROW_WRITE: u64 = 100;
pub const WRITE_BYTES_PER_GAS: u64 = 8;
/// Each index entry written or deleted.
pub const INDEX_WRITE: u64 = 50;
/// Each row sorted or grouped.
pub const SORT_ROW: u64 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gas {
    pub used: u64,
    pub limit: u64,
}

impl Gas {
    pub fn new(limit: u64) -> Gas {
        Gas { used: 0, limit: limit.min(MAX_CALL_GAS) }
    }

    #[inline]
    pub fn charge(&mut self, n: u64) -> Result<(), SqlError> {
        let used = self.used.saturating_add(n);
        if used > self.limit {
            self.used = self.limit;
            return Err(SqlError::OutOfGas(self.limit));
        }
        self.used = used;
        Ok(())
    }
}
