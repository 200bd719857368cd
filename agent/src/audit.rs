//! The audit log: one durable record per action Horde asked for (who, from where, what, with which
//! arguments, and what came of it), in a spool of its own with the same checksummed, fsynced
//! records as the telemetry spool. A record is durable before the action's answer is sent, so an
//! answered action is in the log after `kill -9` or power loss. Request ids make actions
//! idempotent: an id already in the log is answered with its record and nothing is done again.

use crate::spool::{Spool, SpoolError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Most bytes the audit log keeps (oldest records go first).
pub const AUDIT_MAX_BYTES: u64 = 64 << 20;
/// Oldest record kept.
pub const AUDIT_MAX_AGE_MS: u64 = 400 * 24 * 3600 * 1000;

/// One action, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at_ms: u64,
    pub request_id: String,
    pub action: String,
    pub args: serde_json::Value,
    /// The scope of the token used (`admin`).
    pub token: String,
    /// The first 8 bytes of the token's SHA-256, hex.
    pub token_fingerprint: String,
    pub client: String,
    /// `ok`, `accepted` (the action follows the answer: a restart of the agent, a reboot) or
    /// `failed`.
    pub result: String,
    pub message: String,
}

pub struct Audit {
    spool: Spool,
    by_request: HashMap<String, AuditEntry>,
}

impl Audit {
    /// Opens (or creates) the log in `dir` and reads what it holds.
    pub fn open(dir: &Path) -> Result<Audit, SpoolError> {
        let (spool, recovery) = Spool::open(dir, AUDIT_MAX_BYTES, AUDIT_MAX_AGE_MS)?;
        for c in &recovery.corrupt {
            tracing::warn!(file = %c, "unreadable audit data set aside");
        }
        let mut by_request = HashMap::new();
        for (_, payload) in spool.plan(0, usize::MAX).read()? {
            match serde_json::from_slice::<AuditEntry>(&payload) {
                Ok(entry) => {
                    by_request.insert(entry.request_id.clone(), entry);
                }
                Err(e) => tracing::warn!(error = %e, "an audit record is not an entry; skipped"),
            }
        }
        Ok(Audit { spool, by_request })
    }

    /// The record of an earlier action with this request id.
    pub fn find(&self, request_id: &str) -> Option<&AuditEntry> {
        self.by_request.get(request_id)
    }

    /// Appends `entry` (its `seq` is assigned here) durably; returns it as recorded.
    pub fn append(&mut self, mut entry: AuditEntry) -> Result<AuditEntry, SpoolError> {
        entry.seq = self.spool.last_seq() + 1;
        let payload = serde_json::to_vec(&entry).unwrap_or_default();
        self.spool.append(entry.seq, entry.at_ms, &payload)?;
        self.by_request.insert(entry.request_id.clone(), entry.clone());
        Ok(entry)
    }

    /// Up to `limit` records after `since`, oldest first, and whether more follow.
    pub fn since(&self, since: u64, limit: usize) -> Result<(Vec<AuditEntry>, bool), SpoolError> {
        let mut out = Vec::new();
        for (_, payload) in self.spool.plan(since, limit + 1).read()? {
            if let Ok(entry) = serde_json::from_slice::<AuditEntry>(&payload) {
                out.push(entry);
            }
        }
        let more = out.len() > limit;
        out.truncate(limit);
        Ok((out, more))
    }

    pub fn last_seq(&self) -> u64 {
        self.spool.last_seq()
    }
}
