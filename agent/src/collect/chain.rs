//! Chain figures from the node's JSON-RPC (`chain_info`, `node_info`, `node_metrics`, `peers`), each call bounded
//! by a timeout so that a hung node never stalls a sample.

use aergo_api::{AergoApiClient, NodeInfo};
use aergo_telemetry::ChainSample;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use std::time::Duration;

pub struct ChainCollector {
    client: HttpClient,
    url: String,
    /// The last `node_info`, kept while the node is unreachable (its pid and data dir).
    pub last_info: Option<NodeInfo>,
}

/// One reading: the sample part, or why there is none.
pub struct ChainReading {
    pub chain: Option<ChainSample>,
    pub error: Option<String>,
}

impl ChainCollector {
    pub fn new(url: &str, timeout: Duration) -> anyhow::Result<ChainCollector> {
        let client = HttpClientBuilder::default()
            .request_timeout(timeout)
            .max_response_size(16 << 20)
            .build(url)
            .map_err(|e| anyhow::anyhow!("node URL {url}: {e}"))?;
        Ok(ChainCollector { client, url: url.to_string(), last_info: None })
    }

    pub async fn collect(&mut self, now_ms: u64) -> ChainReading {
        let (chain, info, metrics, peers, repositories) = tokio::join!(
            self.client.chain_info(None),
            self.client.node_info(),
            self.client.node_metrics(),
            self.client.peers(),
            self.client.repositories()
        );
        let (chain, info, metrics) = match (chain, info, metrics) {
            (Ok(c), Ok(i), Ok(m)) => (c, i, m),
            (c, i, m) => {
                let e = [c.err(), i.err(), m.err()].into_iter().flatten().next();
                let reason = e.map(|e| e.to_string()).unwrap_or_default();
                return ChainReading {
                    chain: None,
                    error: Some(format!("node RPC at {} not answering: {reason}", self.url)),
                };
            }
        };
        let producer = info.role == "producer";
        let sample = ChainSample {
            chain_id: chain.chain_id,
            role: info.role.clone(),
            producer_address: info.producer_address.map(|a| a.to_string()),
            node_version: info.version.clone(),
            peer_id: info.peer_id.clone(),
            height: chain.height,
            best_hash: chain.best_hash.to_string(),
            best_timestamp_ms: chain.best_timestamp_ms,
            last_block_age_ms: now_ms.saturating_sub(chain.best_timestamp_ms),
            finalized_height: chain.lib_height,
            producer_count: chain.producer_count,
            consensus: chain.consensus.clone(),
            raft: chain.raft.clone(),
            block_interval_ms: chain.block_interval_ms,
            blocks_produced: producer.then_some(metrics.blocks_produced_total),
            producer_blocked: metrics.producer_blocked.clone(),
            slots_missed: producer.then_some(metrics.slots_missed_total),
            peers: chain.peers,
            // A node without the peer list (older than the agent) still gives a sample.
            peer_list: peers.unwrap_or_default(),
            bootstrap: info.bootstrap.clone(),
            mempool_txs: metrics.mempool_txs,
            mempool_bytes: metrics.mempool_bytes,
            syncing: chain.syncing,
            best_known_height: chain.best_known_height.max(chain.height),
            behind_blocks: chain.best_known_height.saturating_sub(chain.height),
            stages: metrics.stages,
            state_cache: metrics.state_cache,
            queries: metrics.queries,
            // A node older than hosting has none.
            repositories: repositories.unwrap_or_default(),
        };
        self.last_info = Some(info);
        ChainReading { chain: Some(sample), error: None }
    }
}
