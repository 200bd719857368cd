//! A misbehaving peer on purpose (`aergo-node net-probe`): connects to a node with a fresh identity,
//! sends what a node must refuse, and reports what the node did about it. The hostile-peer tests use
//! it; an operator can point it at a node of their own.

use super::{build_swarm, identity, topics, BehaviourEvent, SyncRequest, SyncResponse};
use aergo_primitives::crypto::Keypair;
use aergo_primitives::types::{Block, Payload, Signature, TxBody, ENCODING_VERSION};
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
/// The address type `--target` takes.
pub use libp2p::Multiaddr;
use libp2p::{gossipsub, request_response};
use serde::Serialize;
use std::time::{Duration, Instant};

/// What the probe sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Attack {
    /// Random bytes on the blocks topic.
    Malformed,
    /// A 9 MiB message on the blocks topic (beyond the 8 MiB limit).
    Oversized,
    /// A real block with one byte of its producer signature flipped.
    BadSignature,
    /// A real block moved off its slot and signed by a key that is not the slot's producer.
    WrongSlot,
    /// A transaction whose signature does not verify, on the transactions topic.
    BadTx,
    /// A batch on the transaction-batch topic: a well-signed transaction, then one whose
    /// signature does not verify. The whole message is refused and costs the peer once.
    BadBatch,
    /// A well-signed transaction for another chain id, on the transactions topic.
    WrongChain,
    /// The same in a batch, on the transaction-batch topic.
    WrongChainBatch,
    /// 200 sync requests at once (beyond the per-second allowance).
    SyncFlood,
    /// Requests for zero blocks and for blocks from height 0 (edge cases that must just be answered).
    ZeroRequest,
    /// A Raft heartbeat, as the leader of term 1 000 000, from a node outside the group (a chain
    /// agreed by Raft must not take it: it would move every member to that term and follow it).
    RaftHijack,
    /// `branch-sync` requests about the branch `--branch` (status, blocks, a block
    /// announcement), answered in `branch_answers`: a private branch's nodes answer a
    /// non-member as for a branch they do not hold.
    BranchSync,
    /// Only connect: a private repository's swarm refuses a peer not on its allowlist right
    /// after the handshake (`refused` in the report).
    Connect,
    /// A compact block naming transactions nobody has, on the compact-blocks topic; the node's
    /// requests for them (and for the whole block) are never answered. The node asks for the
    /// whole block after its fill timeout and gives the block up; silence is not penalized.
    CompactSilent,
    /// The same compact block, and an answer to the node's request for its transactions that
    /// holds other transactions: penalized.
    CompactLie,
    /// Not an attack: a peer of an earlier version, subscribed to single transactions and not to
    /// batches, listening 8 s. The node must send it its transactions one by one
    /// (`txs_heard` in the report).
    Legacy,
}

#[derive(Debug, Serialize)]
pub struct ProbeReport {
    pub peer_id: String,
    /// The attacks sent while the node still had the probe connected.
    pub sent: Vec<String>,
    /// The node closed the connection.
    pub disconnected: bool,
    /// A new connection was refused (the probe is banned).
    pub redial_refused: bool,
    /// With `connect`: the node closed the connection at once, before any exchange (not on a
    /// private repository's allowlist).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<bool>,
    /// With `branch-sync`: what the node answered to each request, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub branch_answers: Vec<String>,
    /// With the compact attacks: what the node asked the probe for, in order (`transactions N`,
    /// `block`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub asked: Vec<String>,
    /// With `legacy`: the transactions heard on the single-transaction topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txs_heard: Option<u64>,
}

type ProbeSwarm = libp2p::Swarm<super::Behaviour>;

/// Pumps the swarm until `done` says so or `limit` passes.
async fn pump(
    swarm: &mut ProbeSwarm,
    limit: Duration,
    mut done: impl FnMut(&SwarmEvent<BehaviourEvent>) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            Ok(event) => {
                if done(&event) {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
}

pub async fn probe(
    target: Multiaddr,
    chain_id: &str,
    attacks: &[Attack],
    branch: Option<&str>,
    limit: Duration,
) -> anyhow::Result<ProbeReport> {
    let peer = super::peer_of(&target).ok_or_else(|| anyhow::anyhow!("{target} has no /p2p/<peer id>"))?;
    let mut swarm = build_swarm(identity::Keypair::generate_ed25519(), 8, 16 * 1024 * 1024, false)?;
    let me = *swarm.local_peer_id();
    let (blocks_topic, txs_topic) = topics(chain_id);
    let cblocks_topic = super::compact_topic(chain_id);
    swarm.behaviour_mut().gossipsub.subscribe(&blocks_topic)?;
    swarm.behaviour_mut().gossipsub.subscribe(&txs_topic)?;
    swarm.behaviour_mut().gossipsub.subscribe(&cblocks_topic)?;
    let txbatch_topic = super::batch_topic(chain_id);
    if !attacks.contains(&Attack::Legacy) {
        swarm.behaviour_mut().gossipsub.subscribe(&txbatch_topic)?;
    }
    swarm.dial(target.clone())?;
    if attacks.contains(&Attack::Connect) {
        // Refused: the connection closes at once (or the dial fails) before the node says
        // anything; served: its gossip subscription comes.
        let mut closed = false;
        pump(&mut swarm, limit, |e| match e {
            SwarmEvent::ConnectionClosed { peer_id, .. } if *peer_id == peer => {
                closed = true;
                true
            }
            SwarmEvent::OutgoingConnectionError { .. } => {
                closed = true;
                true
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed {
                peer_id,
                ..
            })) => *peer_id == peer,
            _ => false,
        })
        .await;
        return Ok(ProbeReport {
            peer_id: me.to_string(),
            sent: vec![format!("{:?}", Attack::Connect)],
            disconnected: closed,
            redial_refused: false,
            refused: Some(closed),
            branch_answers: Vec::new(),
            asked: Vec::new(),
            txs_heard: None,
        });
    }
    if attacks.contains(&Attack::BranchSync) {
        let branch = branch.ok_or_else(|| anyhow::anyhow!("branch-sync needs --branch"))?;
        let connected = pump(
            &mut swarm,
            limit,
            |e| matches!(e, SwarmEvent::ConnectionEstablished { peer_id, .. } if *peer_id == peer),
        )
        .await;
        anyhow::ensure!(connected, "no connection to {peer} within {limit:?}");
        let requests = [
            SyncRequest::Status,
            SyncRequest::Blocks { from: 1, count: 8 },
            SyncRequest::NewBlock { hash: aergo_primitives::types::Hash([0; 32]) },
        ];
        let mut answers = Vec::new();
        for request in requests {
            let asked = super::BranchRequest { branch: branch.to_string(), request };
            swarm.behaviour_mut().branch_sync.send_request(&peer, asked);
            let mut answer = None;
            pump(&mut swarm, limit, |e| match e {
                SwarmEvent::Behaviour(BehaviourEvent::BranchSync(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                })) => {
                    answer = Some(match response {
                        SyncResponse::Refused(why) => format!("refused: {why}"),
                        SyncResponse::Status(s) => format!("status: height {}", s.height),
                        SyncResponse::Blocks(b) => format!("blocks: {}", b.len()),
                        SyncResponse::Block(b) => format!("block: {}", b.is_some()),
                        other => format!("{other:?}"),
                    });
                    true
                }
                SwarmEvent::Behaviour(BehaviourEvent::BranchSync(
                    request_response::Event::OutboundFailure { error, .. },
                )) => {
                    answer = Some(format!("failed: {error}"));
                    true
                }
                _ => false,
            })
            .await;
            answers.push(answer.unwrap_or_else(|| "no answer".into()));
        }
        return Ok(ProbeReport {
            peer_id: me.to_string(),
            sent: vec![format!("{:?}", Attack::BranchSync)],
            disconnected: !swarm.is_connected(&peer),
            redial_refused: false,
            refused: None,
            branch_answers: answers,
            asked: Vec::new(),
            txs_heard: None,
        });
    }
    // Connected, and the node's subscription to the blocks topic seen (gossip needs it).
    let subscribed = pump(&mut swarm, limit, |e| {
        matches!(e, SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic, .. }))
            if *peer_id == peer && *topic == blocks_topic.hash())
    })
    .await;
    anyhow::ensure!(subscribed, "no gossip subscription from {peer} within {limit:?}");

    // A real block to tamper with.
    swarm.behaviour_mut().sync.send_request(&peer, SyncRequest::Blocks { from: 1, count: 1 });
    let mut sample: Option<Block> = None;
    pump(&mut swarm, limit, |e| match e {
        SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
            message: request_response::Message::Response { response: SyncResponse::Blocks(blocks), .. },
            ..
        })) => {
            sample = blocks.first().and_then(|b| Block::decode(b).ok());
            true
        }
        _ => false,
    })
    .await;

    let mut sent = Vec::new();
    let mut asked = Vec::new();
    let mut txs_heard = None;
    let mut disconnected = false;
    for attack in attacks {
        if !swarm.is_connected(&peer) {
            disconnected = true;
            break;
        }
        if *attack == Attack::Legacy {
            let mut heard = 0;
            let txs = txs_topic.hash();
            pump(&mut swarm, Duration::from_secs(8), |e| {
                if let SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                    message,
                    ..
                })) = e
                {
                    heard += u64::from(
                        message.topic == txs && aergo_protocol::decode_gossip_tx(&message.data).is_ok(),
                    );
                }
                false
            })
            .await;
            txs_heard = Some(heard);
            sent.push(format!("{attack:?}"));
            continue;
        }
        if matches!(attack, Attack::CompactSilent | Attack::CompactLie) {
            let lie = *attack == Attack::CompactLie;
            swarm
                .behaviour_mut()
                .gossipsub
                .publish(cblocks_topic.clone(), fake_compact(chain_id).encode())?;
            sent.push(format!("{attack:?}"));
            // Past the node's fill timeout, so that its request for the whole block comes too.
            let wait = super::compact::FILL_TIMEOUT + Duration::from_secs(if lie { 1 } else { 3 });
            asked.extend(answer_fills(&mut swarm, peer, chain_id, lie, wait).await);
            continue;
        }
        if *attack == Attack::ZeroRequest {
            for (from, count) in [(5, 0), (0, 0), (0, 3), (u64::MAX, 256)] {
                swarm.behaviour_mut().sync.send_request(&peer, SyncRequest::Blocks { from, count });
            }
            let mut answered = 0;
            pump(&mut swarm, Duration::from_secs(5), |e| {
                if matches!(
                    e,
                    SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                        message: request_response::Message::Response { .. },
                        ..
                    }))
                ) {
                    answered += 1;
                }
                answered == 4
            })
            .await;
            anyhow::ensure!(answered == 4, "the node answered {answered} of 4 edge-case requests");
            sent.push(format!("{attack:?}"));
            continue;
        }
        if *attack == Attack::RaftHijack {
            let target_key = super::public_of_peer(&peer)
                .ok_or_else(|| anyhow::anyhow!("{peer} carries no ed25519 key"))?;
            let own_key =
                super::public_of_peer(&me).ok_or_else(|| anyhow::anyhow!("the probe's id carries no key"))?;
            let mut m = aergo_raft::Message::default();
            m.set_msg_type(aergo_raft::MessageType::MsgHeartbeat);
            m.to = aergo_raft::raft_id(&target_key.0);
            m.from = aergo_raft::raft_id(&own_key.0);
            m.term = 1_000_000;
            swarm.behaviour_mut().raft.send_request(&peer, aergo_raft::encode_message(&m));
            sent.push(format!("{attack:?}"));
            pump(&mut swarm, Duration::from_millis(800), |e| {
                matches!(e, SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } if *peer_id == peer)
            })
            .await;
            continue;
        }
        if *attack == Attack::SyncFlood {
            for _ in 0..200 {
                swarm.behaviour_mut().sync.send_request(&peer, SyncRequest::Status);
            }
            sent.push(format!("{attack:?}"));
            pump(&mut swarm, Duration::from_secs(2), |e| {
                matches!(e, SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } if *peer_id == peer)
            })
            .await;
            continue;
        }
        let (topic, bytes) = match attack {
            Attack::Malformed => {
                // The right version byte, then bytes that do not decode as a block.
                let mut bytes = vec![0u8; 1024];
                rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
                bytes[0] = ENCODING_VERSION;
                (blocks_topic.clone(), bytes)
            }
            Attack::Oversized => (blocks_topic.clone(), vec![0x42; 9 * 1024 * 1024]),
            Attack::BadSignature | Attack::WrongSlot => {
                let mut block =
                    sample.clone().ok_or_else(|| anyhow::anyhow!("the node sent no block to tamper with"))?;
                if *attack == Attack::BadSignature {
                    // A different flip each time: gossip drops a message it has seen before.
                    let at = rand::Rng::gen_range(&mut rand::thread_rng(), 0..64);
                    block.signature.0[at] ^= 1 << rand::Rng::gen_range(&mut rand::thread_rng(), 0..8);
                } else {
                    block.header.timestamp_ms += 1;
                    block.signature = Keypair::generate().sign(&block.hash());
                }
                (blocks_topic.clone(), block.encode())
            }
            Attack::SyncFlood
            | Attack::ZeroRequest
            | Attack::RaftHijack
            | Attack::Connect
            | Attack::BranchSync
            | Attack::CompactSilent
            | Attack::CompactLie
            | Attack::Legacy => {
                unreachable!("sent above")
            }
            Attack::BadTx | Attack::BadBatch | Attack::WrongChain | Attack::WrongChainBatch => {
                let key = Keypair::generate();
                let foreign = matches!(attack, Attack::WrongChain | Attack::WrongChainBatch);
                let mut tx = key.sign_tx(TxBody {
                    version: ENCODING_VERSION,
                    chain_id: if foreign { format!("{chain_id}-other") } else { chain_id.to_string() },
                    branch: aergo_primitives::types::MAIN_BRANCH.into(),
                    nonce: 0,
                    sender: key.public(),
                    recipient: key.address(),
                    amount: 1,
                    fee: 1,
                    payload: Payload::Transfer,
                });
                let good = tx.encode();
                tx.signature = Signature([7; 64]);
                match attack {
                    Attack::BadBatch => {
                        (txbatch_topic.clone(), aergo_protocol::encode_tx_batch(&[good, tx.encode()]))
                    }
                    Attack::WrongChain => (txs_topic.clone(), good),
                    Attack::WrongChainBatch => {
                        (txbatch_topic.clone(), aergo_protocol::encode_tx_batch(&[good]))
                    }
                    _ => (txs_topic.clone(), tx.encode()),
                }
            }
        };
        if let Err(e) = swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            anyhow::bail!("cannot send {attack:?}: {e}");
        }
        sent.push(format!("{attack:?}"));
        // Let it go out and the node answer.
        pump(&mut swarm, Duration::from_millis(800), |e| {
            matches!(e, SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } if *peer_id == peer)
        })
        .await;
    }
    if !disconnected {
        disconnected = !swarm.is_connected(&peer)
            || pump(&mut swarm, Duration::from_secs(3), |e| {
                matches!(e, SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } if *peer_id == peer)
            })
            .await;
    }
    // A banned probe's new connection is closed at once (or never established).
    let mut redial_refused = false;
    if disconnected {
        swarm.dial(target)?;
        let started = Instant::now();
        let mut up_since: Option<Instant> = None;
        pump(&mut swarm, Duration::from_secs(6), |e| {
            match e {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if *peer_id == peer => {
                    up_since = Some(Instant::now())
                }
                SwarmEvent::ConnectionClosed { peer_id, .. } if *peer_id == peer => up_since = None,
                _ => {}
            }
            started.elapsed() > Duration::from_secs(5)
        })
        .await;
        redial_refused = up_since.is_none_or(|t| t.elapsed() < Duration::from_secs(2));
    }
    Ok(ProbeReport {
        peer_id: me.to_string(),
        sent,
        disconnected,
        redial_refused,
        refused: None,
        branch_answers: Vec::new(),
        asked,
        txs_heard,
    })
}

/// A compact block of the chain `chain_id` naming 8 transactions nobody has (random hashes under
/// their own root), from a key that produces nothing.
fn fake_compact(chain_id: &str) -> aergo_protocol::CompactBlock {
    use aergo_primitives::types::{merkle_root, BlockHeader, Hash, MAIN_BRANCH};
    let key = Keypair::generate();
    let tx_hashes: Vec<Hash> = (0..8).map(|_| Hash(rand::random())).collect();
    let header = BlockHeader {
        version: ENCODING_VERSION,
        chain_id: chain_id.to_string(),
        branch: MAIN_BRANCH.into(),
        height: 1,
        prev_hash: Hash(rand::random()),
        timestamp_ms: aergo_primitives::clock::now_ms(),
        producer: key.public(),
        tx_root: merkle_root(&tx_hashes),
        state_root: Hash([0; 32]),
        receipts_root: Hash([0; 32]),
    };
    let signature = key.sign(&header.hash());
    aergo_protocol::CompactBlock { header, tx_hashes, signature }
}

/// Pumps the swarm for `wait`, taking the node's requests for a compact block's transactions and
/// for the whole block: answered with other transactions when `lie`, else held unanswered (the
/// node sees silence, not a closed stream). What was asked, in order.
async fn answer_fills(
    swarm: &mut ProbeSwarm,
    peer: libp2p::PeerId,
    chain_id: &str,
    lie: bool,
    wait: Duration,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut asked = Vec::new();
    let mut held = Vec::new();
    while let Ok(event) = tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
        let SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
            peer: from,
            message: request_response::Message::Request { request, channel, .. },
            ..
        })) = event
        else {
            continue;
        };
        match request {
            SyncRequest::Transactions { indices, .. } if from == peer => {
                asked.push(format!("transactions {}", indices.len()));
                if lie {
                    let key = Keypair::generate();
                    let other = |n: u64| {
                        let tx = aergo_primitives::crypto::test_tx(
                            &key,
                            chain_id,
                            n,
                            key.address(),
                            1,
                            1,
                            Payload::Transfer,
                        );
                        serde_bytes::ByteBuf::from(tx.encode())
                    };
                    let txs = (0..indices.len() as u64).map(other).collect();
                    let _ =
                        swarm.behaviour_mut().sync.send_response(channel, SyncResponse::Transactions(txs));
                } else {
                    held.push(channel);
                }
            }
            SyncRequest::Block { .. } if from == peer => {
                asked.push("block".into());
                held.push(channel);
            }
            _ => held.push(channel),
        }
    }
    drop(held);
    asked
}
