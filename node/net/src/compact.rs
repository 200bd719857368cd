//! Compact blocks on the net task (`docs/consensus.md`, "Compact blocks").
//!
//! ```text
//! producer ── CompactBlock {header, tx hashes, signature} on /aergo/<chain>/cblocks ──► peer
//! peer: hashes give the header's transactions root? no ─► reject, penalize
//!       fill each place from the pool ─► all there? ─► the block goes to the chain thread as
//!       a gossiped block (its verdict forwards the compact message)
//!       else ─► Transactions {block, indices} to the peer it came from (which has the block:
//!       it forwarded it after importing it) ─► filled? ─► as above
//!       a wrong answer (penalized), a refusal, a failure, or no answer within FILL_TIMEOUT
//!       ─► Block {hash} from another peer (or the same) ─► the block; else dropped (sync
//!       fetches it from a peer's status)
//! ```

use super::{Inbound, NetTask, Penalty};
use aergo_chain::view::ChainView;
use aergo_primitives::types::{Block, Hash};
use aergo_protocol::{Answer, CompactBlock, Filling, SyncRequest, SyncResponse, MAX_ASKED_TXS};
use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::request_response::OutboundRequestId;
use libp2p::PeerId;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// How long a peer has to send the transactions asked for before the whole block is asked for
/// (about two slots: past it the block would be late anyway).
pub(crate) const FILL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a block may stay unfilled in all before it is given up (sync fetches it).
const GIVE_UP: Duration = Duration::from_secs(20);
/// Blocks of ours kept to answer peers filling them, beside what the chain holds.
pub(crate) const PUBLISHED_KEPT: usize = 8;
/// Compact blocks filled at once; more are ignored (not forwarded, the peer not penalized).
const MAX_FILLING: usize = 16;

/// A compact block waiting for transactions.
pub(crate) struct Fill {
    filling: Filling,
    /// The peer it came from (whose verdict it is), and its gossip message.
    from: PeerId,
    id: MessageId,
    received: Instant,
    /// The request in flight, when it was sent, and whether it asks for the whole block.
    request: Option<OutboundRequestId>,
    asked_at: Instant,
    whole: bool,
}

impl NetTask {
    /// A compact block from gossip.
    pub(crate) fn compact_block(&mut self, from: PeerId, id: MessageId, data: &[u8]) {
        self.state.gossip_blocks_in.fetch_add(data.len() as u64, Relaxed);
        let compact = aergo_protocol::decode_gossip_compact(data).map_err(|e| e.to_string()).and_then(|c| {
            match c.header.branch == self.view.branch {
                true => Ok(c),
                false => Err(format!("a compact block of branch {:?} on main's topic", c.header.branch)),
            }
        });
        let compact = match compact {
            Ok(c) => c,
            Err(reason) => {
                self.validate(&id, &from, MessageAcceptance::Reject);
                return self.penalize(from, Penalty::Malformed, &reason);
            }
        };
        let hash = compact.hash();
        if self.filling.contains_key(&hash) || self.filling.len() >= MAX_FILLING || import_full(&self.view) {
            return self.validate(&id, &from, MessageAcceptance::Ignore);
        }
        let filling = {
            let pool = self.pool.mempool.lock();
            Filling::new(compact, |h| pool.get(h))
        };
        self.state.compact_blocks_in.fetch_add(1, Relaxed);
        let now = Instant::now();
        let mut fill = Fill { filling, from, id, received: now, request: None, asked_at: now, whole: false };
        let missing = fill.filling.missing();
        self.state.compact_txs_missing.fetch_add(missing.len() as u64, Relaxed);
        if missing.is_empty() {
            return self.complete(fill);
        }
        self.ask(&mut fill, from, missing);
        self.filling.insert(hash, fill);
    }

    /// Asks `peer` for the places `missing` of the block (the whole block when they are many).
    fn ask(&mut self, fill: &mut Fill, peer: PeerId, missing: Vec<u32>) {
        let block = fill.filling.compact.hash();
        let request = if missing.len() > MAX_ASKED_TXS || fill.whole {
            fill.whole = true;
            SyncRequest::Block { hash: block }
        } else {
            SyncRequest::Transactions { block, indices: missing }
        };
        let id = self.swarm.behaviour_mut().sync.send_request(&peer, request.clone());
        self.pending.insert(id, request);
        fill.request = Some(id);
        fill.asked_at = Instant::now();
    }

    /// Asks for the whole block instead, from a peer other than the one it came from if there is one.
    fn ask_whole(&mut self, mut fill: Fill) {
        self.state.compact_fallbacks.fetch_add(1, Relaxed);
        let other = self.swarm.connected_peers().find(|p| **p != fill.from).copied();
        let peer = other.unwrap_or(fill.from);
        fill.whole = true;
        self.ask(&mut fill, peer, Vec::new());
        self.filling.insert(fill.filling.compact.hash(), fill);
    }

    /// Gives a block up: its message is neither forwarded nor held against its peer.
    fn give_up(&mut self, fill: Fill, why: &str) {
        tracing::debug!(block = %fill.filling.compact.hash(), %why, "a compact block was not filled");
        self.validate(&fill.id, &fill.from, MessageAcceptance::Ignore);
    }

    /// The filled block goes to the chain thread, whose verdict forwards the compact message.
    fn complete(&mut self, fill: Fill) {
        let Fill { filling, from, id, .. } = fill;
        match filling.block() {
            Ok(block) => self.deliver(block, from, id),
            Err(_) => self.validate(&id, &from, MessageAcceptance::Ignore),
        }
    }

    fn deliver(&mut self, block: Block, from: PeerId, id: MessageId) {
        deliver(&self.view, &self.inbound, block, from, id);
    }

    pub(crate) fn validate(&mut self, id: &MessageId, from: &PeerId, acceptance: MessageAcceptance) {
        self.swarm.behaviour_mut().gossipsub.report_message_validation_result(id, from, acceptance);
    }

    /// The fill a request of ours is for, taken out (`None`: not one of the fills', or one a
    /// later request replaced).
    fn take_fill(&mut self, block: &Hash, request: OutboundRequestId) -> Option<Fill> {
        match self.filling.get(block) {
            Some(f) if f.request == Some(request) => self.filling.remove(block),
            _ => None,
        }
    }

    /// A peer's answer to a request made for a fill; the response back when the request was
    /// not one.
    pub(crate) fn fill_answered(
        &mut self,
        peer: PeerId,
        request: OutboundRequestId,
        asked: &SyncRequest,
        response: SyncResponse,
    ) -> Option<SyncResponse> {
        let (block, whole) = match asked {
            SyncRequest::Transactions { block, .. } => (*block, false),
            SyncRequest::Block { hash } if self.filling.contains_key(hash) => (*hash, true),
            _ => return Some(response),
        };
        let Some(mut fill) = self.take_fill(&block, request) else {
            // Answered after a later request replaced it (or the block was given up): its
            // transactions are of no use now; a malformed answer still counts against the peer.
            if let Err(reason) = aergo_protocol::check_response(Some(asked), response) {
                self.penalize(peer, Penalty::Malformed, &reason);
            }
            return None;
        };
        if let SyncResponse::Transactions(txs) = &response {
            let bytes: usize = txs.iter().map(|t| t.len()).sum();
            self.state.compact_fill_bytes_in.fetch_add(bytes as u64, Relaxed);
        }
        match (aergo_protocol::check_response(Some(asked), response), asked) {
            (Ok(Answer::Transactions(txs)), SyncRequest::Transactions { indices, .. }) => {
                match fill.filling.fill(indices, txs) {
                    Ok(()) if fill.filling.missing().is_empty() => self.complete(fill),
                    Ok(()) => self.ask_whole(fill),
                    Err(reason) => {
                        self.penalize(
                            peer,
                            Penalty::Invalid,
                            &format!("transactions of a compact block: {reason}"),
                        );
                        self.ask_whole(fill);
                    }
                }
            }
            (Ok(Answer::Blocks(mut blocks)), _) if whole && blocks.len() == 1 => {
                let block = blocks.remove(0);
                self.state.compact_fill_bytes_in.fetch_add(block.encode().len() as u64, Relaxed);
                let (from, id) = (fill.from, fill.id.clone());
                self.deliver(block, from, id);
            }
            (Err(reason), _) => {
                self.penalize(peer, Penalty::Malformed, &reason);
                self.retry_or_give_up(fill, whole, "a malformed answer");
            }
            // Refused (the peer does not have it), or nothing.
            _ => self.retry_or_give_up(fill, whole, "the peer did not have it"),
        }
        None
    }

    /// After a failed request for a fill: the whole block from another peer, or, when that was
    /// what failed, nothing more (sync fetches the block from a peer's status).
    fn retry_or_give_up(&mut self, fill: Fill, whole: bool, why: &str) {
        if whole {
            self.give_up(fill, why);
        } else {
            self.ask_whole(fill);
        }
    }

    /// A request for a fill that failed (the peer went away, or did not answer in time).
    pub(crate) fn fill_failed(&mut self, request: OutboundRequestId, asked: &SyncRequest) -> bool {
        let (block, whole) = match asked {
            SyncRequest::Transactions { block, .. } => (*block, false),
            SyncRequest::Block { hash } if self.filling.contains_key(hash) => (*hash, true),
            _ => return false,
        };
        if let Some(fill) = self.take_fill(&block, request) {
            self.retry_or_give_up(fill, whole, "the request failed");
        }
        true
    }

    /// Fills whose peer is slow: the whole block is asked for elsewhere; those waiting too long
    /// in all are given up.
    pub(crate) fn sweep_fills(&mut self) {
        let now = Instant::now();
        let late: Vec<Hash> = self
            .filling
            .iter()
            .filter(|(_, f)| {
                now.duration_since(f.received) > GIVE_UP
                    || (!f.whole && now.duration_since(f.asked_at) > FILL_TIMEOUT)
            })
            .map(|(h, _)| *h)
            .collect();
        for hash in late {
            let Some(fill) = self.filling.remove(&hash) else { continue };
            if now.duration_since(fill.received) > GIVE_UP {
                self.give_up(fill, "no answer");
            } else {
                self.ask_whole(fill);
            }
        }
    }
}

impl NetTask {
    /// Answers a peer's sync request about `main`: a block of ours just published from memory
    /// (its transactions or itself), everything else from the chain (`answer_soon`).
    pub(crate) fn answer_main(
        &mut self,
        request: SyncRequest,
        channel: libp2p::request_response::ResponseChannel<SyncResponse>,
    ) {
        let hash = match &request {
            SyncRequest::Transactions { block, .. } => Some(*block),
            SyncRequest::Block { hash } => Some(*hash),
            _ => None,
        };
        match hash.and_then(|h| self.published.iter().rev().find(|b| b.hash() == h)) {
            Some(block) => {
                let response = super::answer_from(block, request);
                let _ = self.swarm.behaviour_mut().sync.send_response(channel, response);
            }
            None => self.answer_soon(self.view.clone(), request, channel, None),
        }
    }
}

/// A gossiped block (whole, or a compact one filled) for the chain thread of `view`, whose
/// verdict forwards its message.
pub(crate) fn deliver(
    view: &ChainView,
    inbound: &std::sync::mpsc::Sender<Inbound>,
    block: Block,
    from: PeerId,
    id: MessageId,
) {
    view.import.depth.fetch_add(1, Relaxed);
    let _ = inbound.send(Inbound::GossipBlock { block: Box::new(block), from, id });
}

/// Whether the chain thread's import queue is full: a gossiped block is then ignored (not
/// forwarded, the peer not penalized), and sync fetches it if it joins the chain.
pub(crate) fn import_full(view: &ChainView) -> bool {
    let import = &view.import;
    if import.depth.load(Relaxed) >= aergo_chain::view::IMPORT_QUEUE {
        import.busy_rejections.fetch_add(1, Relaxed);
        return true;
    }
    false
}

/// The compact form of a block of ours, for gossip.
pub(crate) fn compact_bytes(block: &Block) -> Vec<u8> {
    CompactBlock::of(block).encode()
}
