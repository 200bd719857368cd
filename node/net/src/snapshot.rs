//! Fetching a snapshot from peers, for a node that starts with no chain (design: `docs/fleet.md`,
//! "Faster joining"). Runs before the node opens its chain, on a swarm of its own that only asks:
//! it dials the bootstrap peers, asks each for its status, and when the best final height among
//! those on this node's genesis is at least `after_blocks`, takes the snapshot at that height from
//! one of them — the opening frames, then the leaves and the rows page by page — through the same
//! importer a snapshot file goes through (every page checked against the state root as it comes).
//! A peer whose answer does not check out is dropped and the next one asked; the data directory is
//! left with no chain unless the import completed. [`fetch_genesis`] takes the genesis itself the
//! same way, for a node that was given only its hash.

use super::{build_swarm, identity, BehaviourEvent, NetError};
use aergo_config::genesis::Genesis;
use aergo_primitives::types::Hash;
use aergo_protocol::{check_response, Answer, SnapshotPart, Status, SyncRequest, SyncResponse};
use aergo_storage::snapshot::{Frame, ImportReport, Importer};
use borsh::BorshDeserialize;
use futures::StreamExt;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// What to fetch, from whom.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    pub bootstrap: Vec<Multiaddr>,
    /// Fetch only when a peer's final height is at least this (smaller chains sync block by block).
    pub after_blocks: u64,
    /// How long to wait for the bootstrap peers' statuses.
    pub connect_timeout: Duration,
    /// How long one page may take.
    pub page_timeout: Duration,
    /// The node's identity key (its secret) to dial with, so that a private repository's
    /// allowlist lets the fetch in; none: a fresh identity.
    pub identity: Option<[u8; 32]>,
}

/// What [`fetch`] did.
#[derive(Debug)]
pub enum Fetched {
    Imported {
        report: ImportReport,
        peer: String,
        pages: u64,
        bytes: u64,
        secs: f64,
    },
    /// The best final height among the peers on this genesis is below `after_blocks`.
    NotNeeded {
        best_final: u64,
    },
    /// No bootstrap peer on this genesis answered in time.
    NoPeers,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Chain(#[from] aergo_chain::ChainError),
    #[error("no peer gave a snapshot that checks out: {0}")]
    AllFailed(String),
    #[error("no bootstrap peer on genesis {0} answered")]
    NoPeers(aergo_primitives::types::Hash),
    #[error("no peer gave a genesis file that makes block {expected}: {failures}")]
    NoGenesis { expected: aergo_primitives::types::Hash, failures: String },
}

type FetchSwarm = Swarm<super::Behaviour>;

/// Pumps the swarm until the request `id` is answered (answering requests made to this node with a
/// refusal meanwhile: it serves nothing yet).
async fn answer_of(
    swarm: &mut FetchSwarm,
    id: request_response::OutboundRequestId,
    limit: Duration,
) -> Result<SyncResponse, String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .map_err(|_| format!("no answer within {} s", limit.as_secs()))?;
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                message, ..
            })) => match message {
                request_response::Message::Response { request_id, response } if request_id == id => {
                    return Ok(response)
                }
                request_response::Message::Request { channel, .. } => refuse(swarm, channel),
                request_response::Message::Response { .. } => {}
            },
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::OutboundFailure {
                request_id,
                error,
                ..
            })) if request_id == id => return Err(error.to_string()),
            _ => {}
        }
    }
}

fn refuse(swarm: &mut FetchSwarm, channel: request_response::ResponseChannel<SyncResponse>) {
    let refused = SyncResponse::Refused("this node is starting: it serves nothing yet".into());
    let _ = swarm.behaviour_mut().sync.send_response(channel, refused);
}

/// The least time between two requests to the same peer: below a node's allowance of
/// [`super::MAX_REQUESTS_PER_SEC`].
const REQUEST_SPACING: Duration = Duration::from_millis(1000 / (super::MAX_REQUESTS_PER_SEC as u64 / 2));

/// Asks `peer` for a snapshot part; the frames of a well-formed answer.
async fn part(
    swarm: &mut FetchSwarm,
    peer: PeerId,
    part: SnapshotPart,
    limit: Duration,
) -> Result<Vec<Frame>, String> {
    tokio::time::sleep(REQUEST_SPACING).await;
    let request = SyncRequest::Snapshot(part);
    let id = swarm.behaviour_mut().sync.send_request(&peer, request.clone());
    let response = answer_of(swarm, id, limit).await?;
    match check_response(Some(&request), response)? {
        Answer::Snapshot(frames) => frames
            .iter()
            .map(|bytes| {
                Frame::try_from_slice(bytes).map_err(|e| format!("a snapshot frame cannot be decoded: {e}"))
            })
            .collect(),
        Answer::Refused(reason) => Err(format!("refused: {reason}")),
        _ => Err("answered something else".into()),
    }
}

/// The statuses of the bootstrap peers that answer within `limit`.
async fn statuses(swarm: &mut FetchSwarm, dialled: usize, limit: Duration) -> HashMap<PeerId, Status> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut asked: HashMap<request_response::OutboundRequestId, PeerId> = HashMap::new();
    let mut out = HashMap::new();
    let mut done = 0usize;
    while done < dialled {
        let Ok(event) = tokio::time::timeout_at(deadline, swarm.select_next_some()).await else { break };
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if !asked.values().any(|p| *p == peer_id) => {
                let id = swarm.behaviour_mut().sync.send_request(&peer_id, SyncRequest::Status);
                asked.insert(id, peer_id);
            }
            SwarmEvent::OutgoingConnectionError { .. } => done += 1,
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                message, ..
            })) => match message {
                request_response::Message::Response { request_id, response } => {
                    if let Some(peer) = asked.remove(&request_id) {
                        done += 1;
                        if let Ok(Answer::Status(status)) =
                            check_response(Some(&SyncRequest::Status), response)
                        {
                            out.insert(peer, status);
                        }
                    }
                }
                request_response::Message::Request { channel, .. } => refuse(swarm, channel),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::OutboundFailure {
                request_id,
                ..
            })) if asked.remove(&request_id).is_some() => done += 1,
            _ => {}
        }
    }
    out
}

/// Takes the snapshot at `peer`'s final height into `data_dir`.
async fn from_peer(
    swarm: &mut FetchSwarm,
    peer: PeerId,
    data_dir: &Path,
    genesis: &Genesis,
    limit: Duration,
) -> Result<(ImportReport, u64, u64), String> {
    let mut importer = aergo_chain::snapshot::importer(data_dir, genesis).map_err(|e| e.to_string())?;
    let result = pages(swarm, peer, &mut importer, limit).await;
    match result {
        Ok((pages, bytes)) => match importer.finish() {
            Ok(report) => Ok((report, pages, bytes)),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => {
            importer.abort();
            Err(e)
        }
    }
}

async fn pages(
    swarm: &mut FetchSwarm,
    peer: PeerId,
    importer: &mut Importer,
    limit: Duration,
) -> Result<(u64, u64), String> {
    let mut pages = 1u64;
    let mut bytes = 0u64;
    let size = |f: &Frame| aergo_primitives::types::to_vec_exact(f).len() as u64;
    for frame in part(swarm, peer, SnapshotPart::Head, limit).await? {
        bytes += size(&frame);
        importer.add(frame).map_err(|e| e.to_string())?;
    }
    let height = importer.manifest().map(|m| m.height).ok_or("the opening frames have no manifest")?;
    let mut after = None;
    loop {
        let Some(frame) = part(swarm, peer, SnapshotPart::Leaves { height, after }, limit).await?.pop()
        else {
            break;
        };
        if let Frame::Leaves { entries, .. } = &frame {
            after = entries.last().map(|e| Hash(e.0));
        }
        pages += 1;
        bytes += size(&frame);
        importer.add(frame).map_err(|e| e.to_string())?;
    }
    let mut after: Option<Vec<u8>> = None;
    loop {
        let request = SnapshotPart::Rows { height, after: after.clone().map(serde_bytes::ByteBuf::from) };
        let Some(frame) = part(swarm, peer, request, limit).await?.pop() else { break };
        if let Frame::Rows(rows) = &frame {
            after = rows.last().map(|r| r.0.clone());
        }
        pages += 1;
        bytes += size(&frame);
        importer.add(frame).map_err(|e| e.to_string())?;
    }
    let (leaves, rows) = importer.counts();
    importer.add(Frame::End { leaves, rows }).map_err(|e| e.to_string())?;
    Ok((pages, bytes))
}

/// A swarm of this module's own, dialled to `bootstrap`, and the statuses of the peers that
/// answered within `limit`.
async fn connect(
    bootstrap: &[Multiaddr],
    limit: Duration,
    secret: Option<[u8; 32]>,
) -> Result<(FetchSwarm, HashMap<PeerId, Status>), FetchError> {
    let id = secret.map(super::identity_of).unwrap_or_else(identity::Keypair::generate_ed25519);
    let mut swarm = build_swarm(id, 16, 1024 * 1024, false)?;
    let mut dialled = 0;
    for addr in bootstrap {
        match swarm.dial(addr.clone()) {
            Ok(()) => dialled += 1,
            Err(e) => tracing::warn!(address = %addr, error = %e, "cannot dial the bootstrap peer"),
        }
    }
    let statuses = statuses(&mut swarm, dialled, limit).await;
    Ok((swarm, statuses))
}

/// Takes the genesis from the bootstrap peers: the first genesis file, from a peer on `expected`,
/// whose genesis block hashes to `expected` (a node provisioned with the hash alone).
pub async fn fetch_genesis(
    bootstrap: &[Multiaddr],
    expected: Hash,
    limit: Duration,
) -> Result<Genesis, FetchError> {
    let (mut swarm, statuses) = connect(bootstrap, limit, None).await?;
    let peers: Vec<PeerId> =
        statuses.into_iter().filter(|(_, s)| s.genesis == expected).map(|(p, _)| p).collect();
    if peers.is_empty() {
        return Err(FetchError::NoPeers(expected));
    }
    let mut failures = Vec::new();
    for peer in peers {
        let id = swarm.behaviour_mut().sync.send_request(&peer, SyncRequest::Genesis);
        let checked: Result<(), String> = match answer_of(&mut swarm, id, limit).await {
            Ok(response) => match check_response(Some(&SyncRequest::Genesis), response) {
                Ok(Answer::Genesis(text)) => match Genesis::parse(&text) {
                    Ok(genesis) => match aergo_chain::genesis_hash(&genesis) {
                        Ok(hash) if hash == expected => return Ok(genesis),
                        Ok(hash) => Err(format!("its genesis makes block {hash}")),
                        Err(e) => Err(e.to_string()),
                    },
                    Err(e) => Err(format!("not a genesis file: {e}")),
                },
                Ok(Answer::Refused(reason)) => Err(format!("refused: {reason}")),
                Ok(_) => Err("answered something else".into()),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if let Err(reason) = checked {
            tracing::warn!(%peer, %reason, "the peer's genesis was refused");
            let _ = swarm.disconnect_peer_id(peer);
            failures.push(format!("{peer}: {reason}"));
        }
    }
    Err(FetchError::NoGenesis { expected, failures: failures.join("; ") })
}

/// Fetches a snapshot into `data_dir` (which holds no chain) when the bootstrap peers' chain is long
/// enough (see the module comment).
pub async fn fetch(opts: &FetchOptions, data_dir: &Path, genesis: &Genesis) -> Result<Fetched, FetchError> {
    let started = Instant::now();
    let genesis_hash = aergo_chain::genesis_hash(genesis)?;
    let (mut swarm, statuses) = connect(&opts.bootstrap, opts.connect_timeout, opts.identity).await?;
    let mut candidates: Vec<(PeerId, Status)> =
        statuses.into_iter().filter(|(_, s)| s.genesis == genesis_hash).collect();
    if candidates.is_empty() {
        return Ok(Fetched::NoPeers);
    }
    candidates.sort_by_key(|(_, s)| std::cmp::Reverse(s.lib_height));
    let best_final = candidates[0].1.lib_height;
    if best_final < opts.after_blocks.max(1) {
        return Ok(Fetched::NotNeeded { best_final });
    }
    let mut failures = Vec::new();
    for (peer, status) in candidates.into_iter().filter(|(_, s)| s.lib_height >= opts.after_blocks.max(1)) {
        tracing::info!(%peer, final_height = status.lib_height, "snapshot: fetching from a peer");
        match from_peer(&mut swarm, peer, data_dir, genesis, opts.page_timeout).await {
            Ok((report, pages, bytes)) => {
                return Ok(Fetched::Imported {
                    report,
                    peer: peer.to_string(),
                    pages,
                    bytes,
                    secs: started.elapsed().as_secs_f64(),
                })
            }
            Err(reason) => {
                tracing::warn!(%peer, %reason, "snapshot: the peer's snapshot was refused; trying the next");
                let _ = swarm.disconnect_peer_id(peer);
                failures.push(format!("{peer}: {reason}"));
            }
        }
    }
    Err(FetchError::AllFailed(failures.join("; ")))
}
