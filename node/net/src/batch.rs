//! A node's own transactions gossiped in batches (`docs/consensus.md`, "Transaction batches on
//! gossip"): the net task buffers what the pool hands it and publishes the buffer as one message
//! on `/aergo/<chain>/txbatch` when it is full or [`FLUSH_AFTER`] after its first transaction.

use aergo_protocol::{BATCH_FRAMING_BYTES, MAX_BATCH_BYTES, MAX_BATCH_TXS};
use std::time::Duration;
use tokio::time::Instant;

/// How long a transaction waits in the buffer at most.
pub const FLUSH_AFTER: Duration = Duration::from_millis(15);

/// The borsh count in front of the frames.
const COUNT_BYTES: usize = 4;

#[derive(Default)]
pub struct TxBatcher {
    txs: Vec<Vec<u8>>,
    /// The encoded size of the buffer as a batch.
    bytes: usize,
    /// When the first transaction of the buffer came.
    since: Option<Instant>,
}

impl TxBatcher {
    /// Adds a transaction; returns the batch to publish first when it would not fit beside what
    /// is buffered, and the buffer itself when it is full.
    pub fn push(&mut self, tx: Vec<u8>, now: Instant) -> Vec<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let size = BATCH_FRAMING_BYTES + tx.len();
        if !self.txs.is_empty() && self.bytes + size > MAX_BATCH_BYTES {
            out.push(self.take());
        }
        if self.txs.is_empty() {
            self.bytes = COUNT_BYTES;
            self.since = Some(now);
        }
        self.bytes += size;
        self.txs.push(tx);
        if self.txs.len() >= MAX_BATCH_TXS || self.bytes >= MAX_BATCH_BYTES {
            out.push(self.take());
        }
        out
    }

    /// When the buffer must go out; `None` while it is empty.
    pub fn due(&self) -> Option<Instant> {
        self.since.map(|t| t + FLUSH_AFTER)
    }

    /// Empties the buffer.
    pub fn take(&mut self) -> Vec<Vec<u8>> {
        self.since = None;
        self.bytes = 0;
        std::mem::take(&mut self.txs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_goes_out_full_by_count_or_bytes_and_never_over_the_limit() {
        let now = Instant::now();
        let mut b = TxBatcher::default();
        assert_eq!(b.due(), None);
        for i in 0..MAX_BATCH_TXS - 1 {
            assert!(b.push(vec![i as u8; 100], now).is_empty());
        }
        assert_eq!(b.due(), Some(now + FLUSH_AFTER));
        let full = b.push(vec![1; 100], now);
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].len(), MAX_BATCH_TXS);
        assert_eq!(b.due(), None, "a full batch leaves the buffer empty");

        // Large transactions: the one that does not fit goes into the next batch.
        let big = aergo_primitives::types::MAX_TX_BYTES;
        let mut sent = Vec::new();
        for _ in 0..10 {
            sent.extend(b.push(vec![0; big], now));
        }
        sent.push(b.take());
        assert_eq!(sent.iter().map(Vec::len).sum::<usize>(), 10);
        for batch in &sent {
            let encoded = aergo_protocol::encode_tx_batch(batch);
            assert!(encoded.len() <= MAX_BATCH_BYTES, "{} bytes", encoded.len());
        }
    }
}
