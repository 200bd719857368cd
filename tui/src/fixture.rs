//! A deterministic console state — a producer at height 1234, sixty recent blocks, a real agent sample
//! with its varying figures fixed, log lines — for the screen snapshots and the frame-time benchmark.

use crate::app::{App, Event, NodeSnapshot, Settings, Update};
use crate::logs::LogSource;
use crate::ops::ConsoleConfig;
use aergo_api::{
    BlockTxs, BlockView, BootstrapView, ChainInfo, HeaderView, NodeInfo, NodeMetrics, PeerView, StageMetrics,
};
use aergo_primitives::crypto::Keypair;
use aergo_primitives::types::Hash;
use aergo_telemetry::Sample;
use std::path::Path;

pub const NOW: u64 = 1_795_608_000_000;
pub const HEIGHT: u64 = 1234;

pub fn hash(n: u64) -> Hash {
    Hash::domain("fixture", &n.to_le_bytes())
}

pub fn producer() -> Keypair {
    Keypair::from_seed("console-fixture-producer")
}

pub fn header(height: u64) -> HeaderView {
    HeaderView {
        chain_id: "aergo-devnet".into(),
        branch: "main".into(),
        height,
        prev_hash: hash(height - 1),
        timestamp_ms: NOW + height * 1000 - HEIGHT * 1000 - 600,
        producer: producer().address(),
        tx_root: hash(height + 1_000_000),
        state_root: hash(height + 2_000_000),
        receipts_root: hash(height + 3_000_000),
        tx_count: ((height * 37) % 50) as u32,
        producer_key: None,
    }
}

pub fn block(height: u64) -> BlockView {
    BlockView { hash: hash(height), height, header: header(height), transactions: BlockTxs::Hashes(vec![]) }
}

pub fn snapshot(peers: Vec<PeerView>) -> NodeSnapshot {
    NodeSnapshot {
        chain: ChainInfo {
            chain_id: "aergo-devnet".into(),
            branch: "main".into(),
            genesis_hash: hash(0),
            height: HEIGHT,
            best_hash: hash(HEIGHT),
            best_timestamp_ms: NOW - 600,
            lib_height: HEIGHT - 2,
            producer_count: 1,
            block_interval_ms: 1000,
            mempool_txs: 17,
            syncing: false,
            peers: peers.len() as u32,
            best_known_height: HEIGHT,
            consensus: "dpos".into(),
            raft: None,
        },
        info: NodeInfo {
            version: "0.1.0".into(),
            peer_id: (!peers.is_empty()).then(|| "12D3KooWAergoFixtureNodePeerIdentity".into()),
            role: "producer".into(),
            producer_address: Some(producer().address()),
            data_dir: "/var/lib/aergo/devnet".into(),
            uptime_s: 3 * 3600 + 25 * 60,
            block_log_io_uring: true,
            exec_cores: vec![1],
            pid: 321,
            node_key: hex::encode([7u8; 32]),
            p2p_listen: if peers.is_empty() { vec![] } else { vec!["/ip4/192.0.2.10/tcp/7846".into()] },
            bootstrap: if peers.is_empty() {
                vec![]
            } else {
                vec![
                    BootstrapView {
                        address: "/ip4/192.0.2.11/tcp/7846".into(),
                        peer_id: Some("12D3KooWFixturePeerOne".into()),
                        connected: true,
                        ..BootstrapView::default()
                    },
                    BootstrapView {
                        address: "/ip4/192.0.2.99/tcp/7846".into(),
                        failures: 12,
                        last_error: Some(
                            "Failed to negotiate transport protocol(s): Connection refused".into(),
                        ),
                        ..BootstrapView::default()
                    },
                ]
            },
        },
        metrics: NodeMetrics {
            stages: vec![StageMetrics {
                name: "admission".into(),
                queue_depth: 0,
                queue_capacity: 4096,
                processed_total: 50_000,
                busy_rejections_total: 0,
                busy_ms_total: 1200,
            }],
            mempool_txs: 17,
            mempool_bytes: 4_250,
            blocks_produced_total: HEIGHT,
            slots_missed_total: 0,
            producer_blocked: None,
            slots_skipped_total: 0,
            reorgs_total: 0,
            peers_banned_total: 0,
            equivocations_total: 0,
            gossip_bytes_out_total: 0,
            gossip_block_bytes_in_total: 0,
            gossip_tx_bytes_in_total: 0,
            gossip_topics: Default::default(),
            private_block_announcements_total: 0,
            signatures_skipped_total: 0,
            compact_blocks_in_total: 0,
            compact_txs_missing_total: 0,
            compact_fallbacks_total: 0,
            compact_fill_bytes_in_total: 0,
            last_block_ms: 3,
            next_slot_ms: Some(NOW + 400),
            state_cache: aergo_api::StateCacheUsage {
                state_cache_values: 52_000,
                state_cache_bytes: 6_900_000,
                state_cache_capacity_bytes: 128 << 20,
            },
            queries: aergo_api::QueryUsage { queries_run_total: 310, query_threads: 2, ..Default::default() },
            rpc_rate_limited_total: 0,
            rpc_origin_refused_total: 0,
        },
        peers,
        lib_timestamp_ms: Some(NOW - 2600),
    }
}

pub fn telemetry() -> Sample {
    // The file is part of the source tree; a parse failure is a build mistake, caught by the tests.
    serde_json::from_str(include_str!("../tests/fixtures/telemetry.json"))
        .unwrap_or_else(|e| panic!("fixture telemetry: {e}"))
}

pub fn app(root: &Path) -> App {
    let settings = Settings {
        node_url: "http://127.0.0.1:7845".into(),
        agent_url: "http://127.0.0.1:7850".into(),
        kiosk: false,
        color: false,
        root: root.to_path_buf(),
    };
    let mut app = App::new(settings, ConsoleConfig::default(), NOW);
    app.handle(Event::Update(Update::Node(Ok(Box::new(snapshot(vec![]))))));
    app.handle(Event::Update(Update::Blocks("main".into(), (HEIGHT - 59..=HEIGHT).map(block).collect())));
    app.handle(Event::Update(Update::Agent(Ok(Box::new(telemetry())))));
    let entry = |seq: u64, ago_ms: u64, action: &str, result: &str, message: &str| crate::ops::AuditView {
        seq,
        at_ms: NOW - ago_ms,
        action: action.into(),
        result: result.into(),
        token_fingerprint: "3f9a0c41d2e87b56".into(),
        client: "198.51.100.7".into(),
        message: message.into(),
    };
    app.handle(Event::Update(Update::Audit(Ok(vec![
        entry(2, 95_000, "restart-node", "ok", "the node was restarted"),
        entry(1, 7_300_000, "restart-agent", "accepted", "the agent restarts after this answer"),
    ]))));
    app.handle(Event::Update(Update::Addresses(vec![
        "eth0 192.0.2.10/24".into(),
        "eth0 2001:db8::10/64".into(),
    ])));
    app.logs.paths = vec![
        (LogSource::Node, "/var/log/aergo/node.log".into()),
        (LogSource::Agent, "/var/log/aergo/agent.log".into()),
    ];
    let node_lines = (0..40)
        .map(|i| match i % 10 {
            3 => format!("2026-11-25T11:59:{i:02}.000Z  WARN aergo_consensus: slots went by while the producer was busy missed=1"),
            7 => format!("2026-11-25T11:59:{i:02}.000Z DEBUG aergo_mempool: admitted tx"),
            _ => format!(
                "2026-11-25T11:59:{i:02}.000Z  INFO aergo_consensus: produced block height={} txs={} took_ms=3",
                1194 + i,
                i % 7
            ),
        })
        .collect();
    app.handle(Event::Update(Update::Log(LogSource::Node, node_lines)));
    app.handle(Event::Update(Update::Log(
        LogSource::Agent,
        vec!["2026-11-25T11:59:58.000Z ERROR aergo_agent::collect: node RPC at http://127.0.0.1:7845 not answering".into()],
    )));
    app
}
