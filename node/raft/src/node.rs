//! One member of a Raft group: raft-rs's `RawNode` over the durable [`RaftLog`], and the ready
//! step (`docs/repositories.md`): persist, then send, then hand over what is committed.

use crate::log::{LogError, RaftLog};
use protobuf::Message as _;
use raft::eraftpb::{ConfChangeV2, ConfState, Entry, EntryType, Message, Snapshot};
use raft::{RawNode, StateRole, Storage};

/// The timing and flow settings of a member (ticks are the caller's, 100 ms in the node).
#[derive(Clone, Debug)]
pub struct RaftConfig {
    /// A follower that hears no leader for this many ticks (randomized up to twice) campaigns.
    pub election_ticks: usize,
    /// A leader sends heartbeats every this many ticks.
    pub heartbeat_ticks: usize,
    /// Most bytes of entries in one append message.
    pub max_append_bytes: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig { election_ticks: 10, heartbeat_ticks: 2, max_append_bytes: 4 << 20 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("this member is not the leader (the leader is {leader:?})")]
    NotLeader { leader: Option<u64> },
    #[error("a committed entry {index} does not decode: {why}")]
    BadEntry { index: u64, why: String },
}

/// What a committed entry asks of the application, in log order.
#[derive(Clone, Debug, PartialEq)]
pub enum Committed {
    /// Data the leader proposed (a block): apply it.
    Data { index: u64, term: u64, data: Vec<u8> },
    /// The group's configuration changed (already applied to Raft and recorded).
    Conf { index: u64, conf: ConfState },
}

impl Committed {
    pub fn index(&self) -> u64 {
        match self {
            Committed::Data { index, .. } | Committed::Conf { index, .. } => *index,
        }
    }
}

/// What one [`RaftNode::ready`] step produced.
#[derive(Debug, Default)]
pub struct Output {
    /// To send to the other members (every one already safe to send: its entries and votes are
    /// on disk).
    pub messages: Vec<Message>,
    /// A snapshot the leader sent, now the log's base: restore the application from its data
    /// before applying what follows.
    pub snapshot: Option<Snapshot>,
    /// Committed entries to apply, in order.
    pub committed: Vec<Committed>,
    /// The index of the last committed entry handed over in this step, no-ops included (a new
    /// leader's empty entry is committed but has nothing to apply): once `committed` is applied,
    /// the application has applied up to here.
    pub last_committed: Option<u64>,
}

/// One member (see the module's notes).
pub struct RaftNode {
    id: u64,
    raw: RawNode<RaftLog>,
    log: RaftLog,
}

impl RaftNode {
    /// A member with id `id` over `log`; `applied` is the last index the application has applied
    /// (what it recorded durably), from which committed entries are handed over again after a
    /// restart.
    pub fn open(id: u64, log: RaftLog, config: &RaftConfig, applied: u64) -> Result<RaftNode, NodeError> {
        let mut c = raft::Config::new(id);
        c.election_tick = config.election_ticks;
        c.heartbeat_tick = config.heartbeat_ticks;
        c.max_size_per_msg = config.max_append_bytes;
        c.max_inflight_msgs = 256;
        c.check_quorum = true;
        c.pre_vote = true;
        c.applied = applied.max(log.snapshot_data().0);
        c.validate()?;
        let raw = RawNode::new(&c, log.clone(), &crate::logger(id))?;
        Ok(RaftNode { id, raw, log })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn log(&self) -> &RaftLog {
        &self.log
    }

    /// One tick of the clock (the node ticks every 100 ms).
    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// A message from another member.
    pub fn step(&mut self, m: Message) -> Result<(), NodeError> {
        Ok(self.raw.step(m)?)
    }

    pub fn role(&self) -> StateRole {
        self.raw.raft.state
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// The leader this member knows of.
    pub fn leader(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|&l| l != 0)
    }

    pub fn is_leader(&self) -> bool {
        self.role() == StateRole::Leader
    }

    /// The voters of the current configuration (the incoming ones during a joint change).
    pub fn voters(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.raw.raft.prs().conf().voters().ids().iter().collect();
        v.sort_unstable();
        v
    }

    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    pub fn last_index(&self) -> u64 {
        self.log.last_index().unwrap_or(0)
    }

    /// Proposes `data` (a block) on the leader.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(), NodeError> {
        if !self.is_leader() {
            return Err(NodeError::NotLeader { leader: self.leader() });
        }
        Ok(self.raw.propose(Vec::new(), data)?)
    }

    /// Proposes a configuration change (joint consensus when it changes more than one voter, or
    /// when asked to).
    pub fn propose_conf_change(&mut self, change: ConfChangeV2) -> Result<(), NodeError> {
        if !self.is_leader() {
            return Err(NodeError::NotLeader { leader: self.leader() });
        }
        Ok(self.raw.propose_conf_change(Vec::new(), change)?)
    }

    /// Asks `to` to take over as leader.
    pub fn transfer_leader(&mut self, to: u64) {
        self.raw.transfer_leader(to);
    }

    /// `to` could not be reached (its messages are dropped until it answers again).
    pub fn report_unreachable(&mut self, to: u64) {
        self.raw.report_unreachable(to);
    }

    /// Whether a member needs a snapshot newer than the last: the application should call
    /// [`RaftNode::compact`] at what it has applied.
    pub fn snapshot_wanted(&self) -> bool {
        self.log.snapshot_wanted()
    }

    /// The application has applied everything up to `index` and `data` restores it: the log is
    /// compacted there (a member that needs older entries gets this snapshot instead).
    pub fn compact(&mut self, index: u64, data: Vec<u8>) -> Result<(), NodeError> {
        Ok(self.log.compact(index, data)?)
    }

    /// One ready step: persists what Raft asks to (entries, hard state, a received snapshot),
    /// applies committed configuration changes to Raft, and returns what to send and what to
    /// apply. Call it after every tick, step or proposal.
    pub fn ready(&mut self) -> Result<Output, NodeError> {
        let mut out = Output::default();
        if !self.raw.has_ready() {
            return Ok(out);
        }
        let mut rd = self.raw.ready();
        // A leader's messages may go before its own entries are durable (Raft's rule: the leader
        // counts its own append only once persisted).
        out.messages.extend(rd.take_messages());
        if !rd.snapshot().is_empty() {
            self.log.apply_snapshot(rd.snapshot())?;
            out.snapshot = Some(rd.snapshot().clone());
        }
        let committed = rd.take_committed_entries();
        self.log.persist(rd.entries(), rd.hs())?;
        self.hand_over(committed, &mut out)?;
        // Votes and a follower's acknowledgements only after the write above.
        out.messages.extend(rd.take_persisted_messages());
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.log.set_commit(commit)?;
        }
        out.messages.extend(light.take_messages());
        self.hand_over(light.take_committed_entries(), &mut out)?;
        self.raw.advance_apply();
        Ok(out)
    }

    fn hand_over(&mut self, entries: Vec<Entry>, out: &mut Output) -> Result<(), NodeError> {
        for e in entries {
            out.last_committed = Some(e.index);
            match e.get_entry_type() {
                EntryType::EntryNormal => {
                    // An empty entry is a new leader's no-op: nothing to apply.
                    if !e.get_data().is_empty() {
                        out.committed.push(Committed::Data {
                            index: e.index,
                            term: e.term,
                            data: e.get_data().to_vec(),
                        });
                    }
                }
                EntryType::EntryConfChangeV2 | EntryType::EntryConfChange => {
                    let bad = |why: protobuf::ProtobufError| NodeError::BadEntry {
                        index: e.index,
                        why: why.to_string(),
                    };
                    let conf = if e.get_entry_type() == EntryType::EntryConfChangeV2 {
                        self.raw
                            .apply_conf_change(&ConfChangeV2::parse_from_bytes(e.get_data()).map_err(bad)?)?
                    } else {
                        let v1 = raft::eraftpb::ConfChange::parse_from_bytes(e.get_data()).map_err(bad)?;
                        self.raw.apply_conf_change(&v1)?
                    };
                    self.log.set_conf_state(&conf)?;
                    out.committed.push(Committed::Conf { index: e.index, conf });
                }
            }
        }
        Ok(())
    }
}

/// A change that adds `add` as voters and removes `remove`; more than one change at once goes
/// through joint consensus, which leaves the joint state by itself once it is committed.
pub fn voters_change(add: &[u64], remove: &[u64]) -> ConfChangeV2 {
    use raft::eraftpb::{ConfChangeSingle, ConfChangeTransition, ConfChangeType};
    let mut cc = ConfChangeV2::default();
    let mut changes = Vec::new();
    for &id in add {
        let mut s = ConfChangeSingle::default();
        s.set_change_type(ConfChangeType::AddNode);
        s.node_id = id;
        changes.push(s);
    }
    for &id in remove {
        let mut s = ConfChangeSingle::default();
        s.set_change_type(ConfChangeType::RemoveNode);
        s.node_id = id;
        changes.push(s);
    }
    cc.set_changes(changes.into());
    cc.set_transition(ConfChangeTransition::Auto);
    cc
}

#[cfg(test)]
mod tests;
