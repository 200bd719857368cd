//! `/metrics`: the latest sample in Prometheus's text exposition format (version 0.0.4, the `prometheus`
//! crate's encoder): host figures under node_exporter's names (`node_cpu_seconds_total`,
//! `node_filesystem_avail_bytes`, …; memory as `node_memory_*_bytes` in snake case, which is what
//! `promtool check metrics` accepts) and chain figures under `aergo_*`.

use aergo_telemetry::Sample;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::Encoder;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Actions done since the agent started, by action and result (`aergo_agent_actions_total`).
static ACTIONS: std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Counts an action in `aergo_agent_actions_total` (shown from the next sample on).
pub fn count_action(action: &str, result: &str) {
    if let Ok(mut counts) = ACTIONS.lock() {
        *counts.entry((action.to_string(), result.to_string())).or_default() += 1;
    }
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// Collects metric families in order.
#[derive(Default)]
struct Enc {
    families: Vec<MetricFamily>,
}

fn metric(labels: &[(&str, &str)]) -> Metric {
    let mut m = Metric::default();
    m.set_label(
        labels
            .iter()
            .map(|(k, v)| {
                let mut l = LabelPair::default();
                l.set_name(k.to_string());
                l.set_value(v.to_string());
                l
            })
            .collect(),
    );
    m
}

impl Enc {
    /// One family of gauges or counters, a metric per row; nothing when there are no rows.
    fn family(&mut self, name: &str, help: &str, kind: MetricType, rows: Vec<(Labels<'_>, f64)>) {
        if rows.is_empty() {
            return;
        }
        let mut f = MetricFamily::default();
        f.set_name(name.to_string());
        f.set_help(help.to_string());
        f.set_field_type(kind);
        for (labels, v) in rows {
            let mut m = metric(&labels);
            if kind == MetricType::COUNTER {
                let mut c = Counter::default();
                c.set_value(v);
                m.set_counter(c);
            } else {
                let mut g = Gauge::default();
                g.set_value(v);
                m.set_gauge(g);
            }
            f.mut_metric().push(m);
        }
        self.families.push(f);
    }

    fn gauges(&mut self, name: &str, help: &str, rows: Vec<(Labels<'_>, f64)>) {
        self.family(name, help, MetricType::GAUGE, rows);
    }

    /// Counters; `_total` is appended to `name`.
    fn counters(&mut self, name: &str, help: &str, rows: Vec<(Labels<'_>, f64)>) {
        self.family(&format!("{name}_total"), help, MetricType::COUNTER, rows);
    }

    fn gauge(&mut self, name: &str, help: &str, v: f64) -> Result<(), Error> {
        self.gauges(name, help, vec![(vec![], v)]);
        Ok(())
    }

    fn gauge_int(&mut self, name: &str, help: &str, v: i64) -> Result<(), Error> {
        self.gauge(name, help, v as f64)
    }

    fn counter(&mut self, name: &str, help: &str, v: f64) -> Result<(), Error> {
        self.counters(name, help, vec![(vec![], v)]);
        Ok(())
    }
}

/// Building families cannot fail; the `Result` keeps the `?` chains below short.
type Error = std::convert::Infallible;

fn families(s: &Sample) -> Result<Vec<MetricFamily>, Error> {
    {
        let h = &s.host;
        let mut e = Enc::default();
        let cpu_ids: Vec<String> = h.cpu.cores.iter().map(|c| c.cpu.to_string()).collect();
        let mut cpu_rows = Vec::new();
        for (core, id) in h.cpu.cores.iter().zip(&cpu_ids) {
            for (mode, v) in core.seconds.modes() {
                cpu_rows.push((vec![("cpu", id.as_str()), ("mode", mode)], v));
            }
        }
        e.counters("node_cpu_seconds", "Seconds the CPUs spent in each mode.", cpu_rows);
        e.gauge("node_load1", "1m load average.", h.load[0])?;
        e.gauge("node_load5", "5m load average.", h.load[1])?;
        e.gauge("node_load15", "15m load average.", h.load[2])?;
        let m = &h.memory;
        e.gauge("node_memory_total_bytes", "Memory information field MemTotal_bytes.", m.total_bytes as f64)?;
        e.gauge(
            "node_memory_available_bytes",
            "Memory information field MemAvailable_bytes.",
            m.available_bytes as f64,
        )?;
        e.gauge("node_memory_free_bytes", "Memory information field MemFree_bytes.", m.free_bytes as f64)?;
        e.gauge(
            "node_memory_Buffers_bytes",
            "Memory information field Buffers_bytes.",
            m.buffers_bytes as f64,
        )?;
        e.gauge("node_memory_cached_bytes", "Memory information field Cached_bytes.", m.cached_bytes as f64)?;
        e.gauge(
            "node_memory_swap_total_bytes",
            "Memory information field SwapTotal_bytes.",
            m.swap_total_bytes as f64,
        )?;
        e.gauge(
            "node_memory_swap_free_bytes",
            "Memory information field SwapFree_bytes.",
            m.swap_free_bytes as f64,
        )?;
        let fs_labels = |f: &'_ aergo_telemetry::Filesystem| -> Vec<(&'static str, String)> {
            vec![
                ("device", f.device.clone()),
                ("fstype", f.fs_type.clone()),
                ("mountpoint", f.mount_point.clone()),
                ("role", f.role.clone().unwrap_or_default()),
            ]
        };
        let fs: Vec<_> = h.filesystems.iter().map(|f| (fs_labels(f), f)).collect();
        let rows = |get: &dyn Fn(&aergo_telemetry::Filesystem) -> f64| -> Vec<(Labels<'_>, f64)> {
            fs.iter().map(|(l, f)| (l.iter().map(|(k, v)| (*k, v.as_str())).collect(), get(f))).collect()
        };
        e.gauges("node_filesystem_size_bytes", "Filesystem size in bytes.", rows(&|f| f.size_bytes as f64));
        e.gauges(
            "node_filesystem_free_bytes",
            "Filesystem free space in bytes.",
            rows(&|f| f.free_bytes as f64),
        );
        e.gauges(
            "node_filesystem_avail_bytes",
            "Filesystem space available to non-root users in bytes.",
            rows(&|f| f.avail_bytes as f64),
        );
        e.gauges(
            "node_filesystem_readonly",
            "Filesystem read-only status.",
            rows(&|f| if f.read_only { 1.0 } else { 0.0 }),
        );
        let disk = |get: &dyn Fn(&aergo_telemetry::Disk) -> f64| -> Vec<(Labels<'_>, f64)> {
            h.disks.iter().map(|d| (vec![("device", d.device.as_str())], get(d))).collect()
        };
        e.counters(
            "node_disk_read_bytes",
            "The total number of bytes read successfully.",
            disk(&|d| d.read_bytes_total as f64),
        );
        e.counters(
            "node_disk_written_bytes",
            "The total number of bytes written successfully.",
            disk(&|d| d.written_bytes_total as f64),
        );
        e.counters(
            "node_disk_reads_completed",
            "The total number of reads completed successfully.",
            disk(&|d| d.reads_completed_total as f64),
        );
        e.counters(
            "node_disk_writes_completed",
            "The total number of writes completed successfully.",
            disk(&|d| d.writes_completed_total as f64),
        );
        e.counters(
            "node_disk_io_time_seconds",
            "Total seconds spent doing I/Os.",
            disk(&|d| d.io_time_ms_total as f64 / 1000.0),
        );
        let net = |get: &dyn Fn(&aergo_telemetry::Interface) -> f64| -> Vec<(Labels<'_>, f64)> {
            h.network.iter().map(|i| (vec![("device", i.interface.as_str())], get(i))).collect()
        };
        e.counters(
            "node_network_receive_bytes",
            "Network device statistic receive_bytes.",
            net(&|i| i.rx_bytes_total as f64),
        );
        e.counters(
            "node_network_transmit_bytes",
            "Network device statistic transmit_bytes.",
            net(&|i| i.tx_bytes_total as f64),
        );
        e.counters(
            "node_network_receive_packets",
            "Network device statistic receive_packets.",
            net(&|i| i.rx_packets_total as f64),
        );
        e.counters(
            "node_network_transmit_packets",
            "Network device statistic transmit_packets.",
            net(&|i| i.tx_packets_total as f64),
        );
        e.counters(
            "node_network_receive_errs",
            "Network device statistic receive_errs.",
            net(&|i| i.rx_errors_total as f64),
        );
        e.counters(
            "node_network_transmit_errs",
            "Network device statistic transmit_errs.",
            net(&|i| i.tx_errors_total as f64),
        );
        e.counters(
            "node_network_receive_drop",
            "Network device statistic receive_drop.",
            net(&|i| i.rx_dropped_total as f64),
        );
        e.counters(
            "node_network_transmit_drop",
            "Network device statistic transmit_drop.",
            net(&|i| i.tx_dropped_total as f64),
        );
        e.gauges(
            "node_hwmon_temp_celsius",
            "Hardware monitor for temperature (input).",
            h.temperatures.iter().map(|t| (vec![("sensor", t.sensor.as_str())], t.celsius)).collect(),
        );
        e.gauge("node_boot_time_seconds", "Node boot time, in unixtime.", h.boot_time_s as f64)?;
        if let Some(c) = &h.clock {
            e.gauge_int(
                "aergo_clock_synchronized",
                "1 when the system clock is synchronized (chrony, else the kernel's state), else 0.",
                i64::from(c.synchronized),
            )?;
            if let Some(offset) = c.offset_seconds {
                e.gauge(
                    "aergo_clock_offset_seconds",
                    "How far the system clock is from NTP time (positive: ahead), per chrony.",
                    offset,
                )?;
            }
        }
        e.gauge(
            "node_time_seconds",
            "System time in seconds since epoch (1970).",
            s.collected_at_ms as f64 / 1000.0,
        )?;

        if let Some(p) = &s.node_process {
            e.counter(
                "aergo_node_process_cpu_seconds",
                "CPU time of the node process.",
                p.cpu_seconds_total,
            )?;
            e.gauge(
                "aergo_node_process_resident_memory_bytes",
                "Resident memory of the node process.",
                p.rss_bytes as f64,
            )?;
            e.gauge(
                "aergo_node_process_open_fds",
                "Open file descriptors of the node process.",
                p.open_fds as f64,
            )?;
            e.gauge("aergo_node_process_threads", "Threads of the node process.", p.threads as f64)?;
            e.gauge(
                "aergo_node_process_start_time_seconds",
                "Start time of the node process, unixtime.",
                p.start_time_s as f64,
            )?;
        }
        e.gauge_int(
            "aergo_node_up",
            "1 when the node's RPC answered the last sample.",
            i64::from(s.chain.is_some()),
        )?;
        if let Some(c) = &s.chain {
            let labels = vec![
                ("chain_id", c.chain_id.as_str()),
                ("role", c.role.as_str()),
                ("version", c.node_version.as_str()),
            ];
            e.gauges("aergo_node_info", "What the node is (always 1).", vec![(labels, 1.0)]);
            e.gauge_int("aergo_chain_height", "Height of the best block.", c.height as i64)?;
            e.gauge_int(
                "aergo_chain_finalized_height",
                "Height of the last irreversible block.",
                c.finalized_height as i64,
            )?;
            e.gauge(
                "aergo_chain_last_block_age_seconds",
                "Age of the best block.",
                c.last_block_age_ms as f64 / 1000.0,
            )?;
            e.gauge_int(
                "aergo_chain_best_known_height",
                "Highest block height the node has heard of.",
                c.best_known_height as i64,
            )?;
            e.gauge_int(
                "aergo_chain_syncing",
                "1 while the node catches up with its peers.",
                i64::from(c.syncing),
            )?;
            e.gauge_int(
                "aergo_chain_producers",
                "Block producers in the current set.",
                i64::from(c.producer_count),
            )?;
            e.gauge_int("aergo_peers", "Connected peers.", i64::from(c.peers))?;
            if let Some(r) = &c.raft {
                e.gauge_int("aergo_raft_term", "The Raft term this member is in.", r.term as i64)?;
                e.gauge_int(
                    "aergo_raft_leader",
                    "1 while this member leads its Raft group.",
                    i64::from(r.role == "leader"),
                )?;
                e.gauge_int(
                    "aergo_raft_has_leader",
                    "1 while this member knows a leader (0: no quorum on its side, or an election).",
                    i64::from(r.leader.is_some()),
                )?;
                e.gauge_int("aergo_raft_voters", "Voters of the Raft group.", r.voters.len() as i64)?;
                e.gauge_int(
                    "aergo_raft_commit_index",
                    "The last Raft log index a majority holds.",
                    r.commit_index as i64,
                )?;
                e.gauge_int(
                    "aergo_raft_applied_index",
                    "The last Raft log index this member applied.",
                    r.applied_index as i64,
                )?;
            }
            let repos = &c.repositories;
            let rows = |f: &dyn Fn(&aergo_api::RepositoryView) -> f64| -> Vec<(Labels<'_>, f64)> {
                repos.iter().map(|r| (vec![("repo", r.name.as_str())], f(r))).collect()
            };
            e.gauges(
                "aergo_repo_height",
                "Height of a hosted repository's best block.",
                rows(&|r| r.height as f64),
            );
            e.gauges(
                "aergo_repo_final_height",
                "Height of a hosted repository's last final block.",
                rows(&|r| r.lib_height as f64),
            );
            e.gauges(
                "aergo_repo_peers",
                "Peers of a hosted repository's own swarm.",
                rows(&|r| f64::from(r.peers)),
            );
            e.gauges(
                "aergo_repo_up",
                "1 while a hosted repository is healthy (its health is ok).",
                rows(&|r| f64::from(u8::from(r.health == "ok"))),
            );
            e.gauge_int("aergo_mempool_txs", "Transactions waiting in the pool.", c.mempool_txs as i64)?;
            e.gauge_int(
                "aergo_mempool_bytes",
                "Bytes of transactions waiting in the pool.",
                c.mempool_bytes as i64,
            )?;
            e.gauge_int(
                "aergo_state_cache_values",
                "Values in the node's cache of recently written state.",
                c.state_cache.state_cache_values as i64,
            )?;
            e.gauge_int(
                "aergo_state_cache_bytes",
                "Bytes held by the node's cache of recently written state.",
                c.state_cache.state_cache_bytes as i64,
            )?;
            e.gauge_int(
                "aergo_state_cache_capacity_bytes",
                "Capacity of the node's cache of recently written state ([storage] state_cache_mb).",
                c.state_cache.state_cache_capacity_bytes as i64,
            )?;
            let q = &c.queries;
            e.counter(
                "aergo_queries_run",
                "Read-only queries the node ran (the query RPC).",
                q.queries_run_total as f64,
            )?;
            e.counter(
                "aergo_queries_rejected",
                "Queries answered busy (queue full, a connection over its share, or waited too long).",
                q.queries_rejected_total as f64,
            )?;
            e.counter(
                "aergo_queries_stopped",
                "Queries stopped at their gas ([rpc] query_gas) or deadline ([rpc] query_timeout_ms).",
                q.queries_stopped_total as f64,
            )?;
            e.gauge_int("aergo_queries_running", "Queries running now.", q.queries_running as i64)?;
            e.gauge_int(
                "aergo_queries_waiting",
                "Queries waiting for a query thread.",
                q.queries_waiting as i64,
            )?;
            if let (Some(p), Some(m)) = (c.blocks_produced, c.slots_missed) {
                e.counter("aergo_blocks_produced", "Blocks this producer made.", p as f64)?;
                e.counter("aergo_slots_missed", "Slots this producer missed.", m as f64)?;
            }
            let stage = |get: &dyn Fn(&aergo_api::StageMetrics) -> f64| -> Vec<(Labels<'_>, f64)> {
                c.stages.iter().map(|st| (vec![("stage", st.name.as_str())], get(st))).collect()
            };
            e.gauges(
                "aergo_stage_queue_depth",
                "Work waiting in a pipeline stage's queue.",
                stage(&|s| s.queue_depth as f64),
            );
            e.gauges(
                "aergo_stage_queue_capacity",
                "Capacity of a pipeline stage's queue.",
                stage(&|s| s.queue_capacity as f64),
            );
            e.counters(
                "aergo_stage_processed",
                "Items a pipeline stage finished.",
                stage(&|s| s.processed_total as f64),
            );
            e.counters(
                "aergo_stage_busy_rejections",
                "Items refused because a stage's queue was full.",
                stage(&|s| s.busy_rejections_total as f64),
            );
            e.counters(
                "aergo_stage_busy_seconds",
                "Time a stage's threads spent working.",
                stage(&|s| s.busy_ms_total as f64 / 1000.0),
            );
        }
        e.gauge_int(
            "aergo_health_status",
            "Overall health: 0 ok, 1 degraded, 2 down.",
            s.health.status.code(),
        )?;
        e.gauges(
            "aergo_health_check_status",
            "Each health check: 0 ok, 1 degraded, 2 down.",
            s.health
                .checks
                .iter()
                .map(|c| (vec![("check", c.name.as_str())], c.status.code() as f64))
                .collect(),
        );
        e.gauge_int("aergo_agent_sample_seq", "Sequence number of the latest sample.", s.seq as i64)?;
        e.gauge_int("aergo_agent_spool_samples", "Samples kept in the spool.", s.agent.spool.samples as i64)?;
        e.gauge_int("aergo_agent_spool_bytes", "Bytes of the spool.", s.agent.spool.bytes as i64)?;
        e.gauge_int(
            "aergo_agent_spool_ok",
            "1 while samples are kept.",
            i64::from(s.agent.spool.state == "ok"),
        )?;
        e.gauge_int(
            "aergo_agent_resident_memory_bytes",
            "Resident memory of the agent.",
            s.agent.rss_bytes as i64,
        )?;
        let actions: Vec<((String, String), u64)> =
            ACTIONS.lock().map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect()).unwrap_or_default();
        e.counters(
            "aergo_agent_actions",
            "Actions Horde asked for since the agent started, by action and result.",
            actions
                .iter()
                .map(|((a, r), n)| (vec![("action", a.as_str()), ("result", r.as_str())], *n as f64))
                .collect(),
        );
        Ok(e.families)
    }
}

/// Renders a sample as Prometheus text.
pub fn render(sample: &Sample) -> String {
    let Ok(families) = families(sample);
    let mut out = Vec::with_capacity(16 << 10);
    // Every family built above has a name and at least one metric, which is all the encoder checks.
    if let Err(e) = prometheus::TextEncoder::new().encode(&families, &mut out) {
        tracing::error!(error = %e, "metrics encoding failed");
    }
    String::from_utf8(out).unwrap_or_default()
}
