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
/// Each event emitted, plus [`EVENT_BYTES_PER_GAS`] of its encoded arguments.
pub const EVENT: u64 = 100;
pub const EVENT_BYTES_PER_GAS: u64 = 8;
/// Most events one call emits, and most bytes of one event's encoded arguments.
pub const MAX_EVENTS_PER_CALL: usize = 64;
pub const MAX_EVENT_BYTES: usize = 4096;

/// Charges between two looks at the clock of a [`Gas::with_deadline`] budget: a look costs about as
/// much as a few dozen charges, and no charge point is far from the next one (the JIT's native code
/// has no loops: it returns to the engine, which charges, within one expression or body).
pub const DEADLINE_CHECK_EVERY: u32 = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gas {
    pub used: u64,
    pub limit: u64,
    /// A wall-clock limit (read-only queries); `None` for transactions, whose gas alone bounds them.
    deadline: Option<Deadline>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Deadline {
    at: std::time::Instant,
    ms: u64,
    countdown: u32,
}

impl Gas {
    pub fn new(limit: u64) -> Gas {
        Gas { used: 0, limit: limit.min(MAX_CALL_GAS), deadline: None }
    }

    /// No limit at all (benchmarks and tests that measure what a query costs).
    pub fn unlimited() -> Gas {
        Gas { used: 0, limit: u64::MAX, deadline: None }
    }

    /// This budget, and a wall-clock deadline `within` from now: a charge after it fails with
    /// [`SqlError::Deadline`] (checked every [`DEADLINE_CHECK_EVERY`] charges).
    pub fn with_deadline(mut self, within: std::time::Duration) -> Gas {
        self.deadline = Some(Deadline {
            at: std::time::Instant::now() + within,
            ms: within.as_millis() as u64,
            countdown: DEADLINE_CHECK_EVERY,
        });
        self
    }

    #[inline]
    pub fn charge(&mut self, n: u64) -> Result<(), SqlError> {
        let used = self.used.saturating_add(n);
        if used > self.limit {
            self.used = self.limit;
            return Err(SqlError::OutOfGas(self.limit));
        }
        self.used = used;
        if let Some(d) = &mut self.deadline {
            d.countdown -= 1;
            if d.countdown == 0 {
                return d.check();
            }
        }
        Ok(())
    }
}

impl Deadline {
    #[cold]
    fn check(&mut self) -> Result<(), SqlError> {
        self.countdown = DEADLINE_CHECK_EVERY;
        if std::time::Instant::now() >= self.at {
            // Every later charge fails too (a JIT hand-back retries the same work interpreted).
            self.countdown = 1;
            return Err(SqlError::Deadline(self.ms));
        }
        Ok(())
    }
}
