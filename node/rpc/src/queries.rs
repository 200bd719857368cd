//! Where `query` runs: a few threads of their own at a lower CPU priority, never tokio's workers or
//! the chain thread, with a bounded, fair queue in front (design: `docs/aergosql.md`, "Queries on a
//! public RPC").
//!
//! ```text
//!  query RPC ─► admit: queue full, or the connection over its share ─► -32011 busy
//!                 │
//!                 ▼
//!  waiting (≤ query_queue) ─► a free thread takes a light query first (the oldest), else a heavy
//!                 │           one while fewer than all threads but one run heavy ones: of those,
//!                 │           the one whose connection has the fewest running, then waiting, then
//!                 │           the oldest; one that waited longer than query_queue_ms, or whose
//!                 │           client went away, is dropped (busy)
//!                 ▼
//!  run: gas ≤ query_gas, deadline query_timeout_ms ─► rows | -32013 (which limit) | error
//! ```
//!
//! A query is *light* when the plan reads no table whole (every table it reads is found by its
//! primary key or an index; a function whose access set has no whole-table read), else *heavy*. A
//! flood of heavy queries therefore never holds the last thread, so light ones (a balance, a name)
//! are answered at their usual speed during it; a connection that floods holds at most
//! `query_per_connection` of the queue.

use aergo_api::QueryUsage;
use aergo_config::RpcConfig;
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the query threads did, for `node_metrics`.
#[derive(Default)]
pub struct QueryStats {
    pub run: AtomicU64,
    pub rejected: AtomicU64,
    pub stopped: AtomicU64,
    pub busy_ns: AtomicU64,
}

/// The answer to a query that was not run.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Too many waiting, the connection over its share, or waited too long.
    Busy(String),
}

type Work = Box<dyn FnOnce() + Send>;

struct Job {
    conn: usize,
    heavy: bool,
    queued: Instant,
    work: Work,
    /// Dropped (the client went away or the RPC gave up): skip the work.
    abandoned: Arc<AtomicBool>,
    on_busy: Box<dyn FnOnce(Refused) + Send>,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Job>,
    /// Queries running or waiting, per connection.
    held: HashMap<usize, usize>,
    running: HashMap<usize, usize>,
    running_total: usize,
    heavy_running: usize,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    queue: usize,
    per_connection: usize,
    queue_wait: Duration,
    /// Threads that may run heavy queries at once: all but one (at least one).
    heavy_threads: usize,
    stats: QueryStats,
}

/// The query threads and their queue. Dropping it lets the threads finish the query in hand and end.
pub struct QueryPool {
    shared: Arc<Shared>,
    pub gas: u64,
    pub timeout: Duration,
    threads: usize,
}

impl QueryPool {
    pub fn start(config: &RpcConfig) -> std::io::Result<QueryPool> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            queue: config.query_queue as usize,
            per_connection: config.query_per_connection as usize,
            queue_wait: Duration::from_millis(config.query_queue_ms),
            heavy_threads: config.query_thread_count().saturating_sub(1).max(1),
            stats: QueryStats::default(),
        });
        let threads = config.query_thread_count();
        for i in 0..threads {
            let shared = shared.clone();
            let nice = config.query_nice;
            std::thread::Builder::new().name(format!("aergo-query-{i}")).spawn(move || {
                lower_priority(nice);
                worker(&shared)
            })?;
        }
        Ok(QueryPool {
            shared,
            gas: config.query_gas,
            timeout: Duration::from_millis(config.query_timeout_ms),
            threads,
        })
    }

    /// Queues `work` for connection `conn` (`heavy`: it reads some table whole). It runs on a query thread unless it is refused now
    /// (`Err`) or later (`on_busy`: it waited too long). Dropping the returned guard before the
    /// work starts skips it.
    pub fn submit(
        &self,
        conn: usize,
        heavy: bool,
        work: Work,
        on_busy: Box<dyn FnOnce(Refused) + Send>,
    ) -> Result<AbandonOnDrop, Refused> {
        let s = &self.shared;
        let mut st = s.state.lock();
        let refuse = |why: String| {
            s.stats.rejected.fetch_add(1, Relaxed);
            Err(Refused::Busy(why))
        };
        if st.waiting.len() >= s.queue {
            return refuse(format!(
                "{} queries are waiting for a query thread ([rpc] query_queue); retry later",
                st.waiting.len()
            ));
        }
        let held = st.held.get(&conn).copied().unwrap_or(0);
        if held >= s.per_connection {
            return refuse(format!(
                "this connection has {held} queries running or waiting ([rpc] query_per_connection); wait for their answers"
            ));
        }
        *st.held.entry(conn).or_default() += 1;
        let abandoned = Arc::new(AtomicBool::new(false));
        st.waiting.push_back(Job {
            conn,
            heavy,
            queued: Instant::now(),
            work,
            abandoned: abandoned.clone(),
            on_busy,
        });
        drop(st);
        s.ready.notify_one();
        Ok(AbandonOnDrop(abandoned))
    }

    pub fn stats(&self) -> &QueryStats {
        &self.shared.stats
    }

    /// Counts a query stopped at its gas or its deadline.
    pub fn count_stopped(&self) {
        self.shared.stats.stopped.fetch_add(1, Relaxed);
    }

    pub fn usage(&self) -> QueryUsage {
        let st = self.shared.state.lock();
        let s = &self.shared.stats;
        QueryUsage {
            queries_run_total: s.run.load(Relaxed),
            queries_rejected_total: s.rejected.load(Relaxed),
            queries_stopped_total: s.stopped.load(Relaxed),
            queries_running: st.running_total as u64,
            queries_waiting: st.waiting.len() as u64,
            query_threads: self.threads as u64,
        }
    }

    /// `(queue depth, capacity, busy milliseconds)` for the `query` stage of `node_metrics`.
    pub fn stage(&self) -> (u64, u64, u64) {
        let waiting = self.shared.state.lock().waiting.len() as u64;
        (waiting, self.shared.queue as u64, self.shared.stats.busy_ns.load(Relaxed) / 1_000_000)
    }
}

impl Drop for QueryPool {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.ready.notify_all();
    }
}

/// Marks a queued query abandoned when the RPC call that waits for it ends (answered, or dropped
/// because the client went away).
pub struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}

fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: setpriority on this thread's id (Linux: per-thread nice), no memory involved.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
    if r != 0 {
        tracing::warn!(nice, error = %std::io::Error::last_os_error(), "query thread keeps the normal CPU priority");
    }
}

fn release(st: &mut State, conn: usize) {
    if let Some(n) = st.held.get_mut(&conn) {
        *n -= 1;
        if *n == 0 {
            st.held.remove(&conn);
        }
    }
}

fn worker(s: &Shared) {
    loop {
        let job = {
            let mut st = s.state.lock();
            loop {
                if st.stop {
                    return;
                }
                // Drop what nobody waits for any more, and what waited too long.
                let mut expired = Vec::new();
                let mut i = 0;
                while i < st.waiting.len() {
                    let j = &st.waiting[i];
                    if j.abandoned.load(Relaxed) || j.queued.elapsed() > s.queue_wait {
                        if let Some(j) = st.waiting.remove(i) {
                            release(&mut st, j.conn);
                            expired.push(j);
                        }
                    } else {
                        i += 1;
                    }
                }
                if !expired.is_empty() {
                    drop(st);
                    for j in expired {
                        if !j.abandoned.load(Relaxed) {
                            s.stats.rejected.fetch_add(1, Relaxed);
                            (j.on_busy)(Refused::Busy(format!(
                                "the query waited {} ms for a query thread ([rpc] query_queue_ms); retry later",
                                j.queued.elapsed().as_millis()
                            )));
                        }
                    }
                    st = s.state.lock();
                    continue;
                }
                // Light first; a heavy one only while a thread stays for light ones. Then the
                // connection with the fewest running, then the fewest running or waiting (a flood
                // waits behind a single question), then the oldest.
                let heavy_ok = st.heavy_running < s.heavy_threads;
                let pick =
                    (0..st.waiting.len()).filter(|&i| heavy_ok || !st.waiting[i].heavy).min_by_key(|&i| {
                        let j = &st.waiting[i];
                        let c = j.conn;
                        (
                            j.heavy,
                            st.running.get(&c).copied().unwrap_or(0),
                            st.held.get(&c).copied().unwrap_or(0),
                            i,
                        )
                    });
                if let Some(i) = pick {
                    let job = st.waiting.remove(i).expect("index in range");
                    *st.running.entry(job.conn).or_default() += 1;
                    st.running_total += 1;
                    st.heavy_running += job.heavy as usize;
                    break job;
                }
                s.ready.wait_for(&mut st, s.queue_wait);
            }
        };
        let started = Instant::now();
        let (conn, heavy) = (job.conn, job.heavy);
        (job.work)();
        s.stats.run.fetch_add(1, Relaxed);
        s.stats.busy_ns.fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
        let mut st = s.state.lock();
        st.running_total -= 1;
        st.heavy_running -= heavy as usize;
        if let Some(n) = st.running.get_mut(&conn) {
            *n -= 1;
            if *n == 0 {
                st.running.remove(&conn);
            }
        }
        release(&mut st, conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn config(threads: u32, queue: u32, per_connection: u32, queue_ms: u64) -> RpcConfig {
        RpcConfig {
            query_threads: threads,
            query_queue: queue,
            query_per_connection: per_connection,
            query_queue_ms: queue_ms,
            query_nice: 0,
            ..RpcConfig::default()
        }
    }

    /// A job that blocks until `gate` says go, then reports `tag`.
    fn gated(
        gate: &Arc<(Mutex<bool>, Condvar)>,
        done: &mpsc::Sender<&'static str>,
        tag: &'static str,
    ) -> Work {
        let (gate, done) = (gate.clone(), done.clone());
        Box::new(move || {
            let mut open = gate.0.lock();
            while !*open {
                gate.1.wait_for(&mut open, Duration::from_millis(50));
            }
            done.send(tag).unwrap();
        })
    }

    fn no_busy() -> Box<dyn FnOnce(Refused) + Send> {
        Box::new(|r| panic!("unexpected {r:?}"))
    }

    #[test]
    fn a_connection_over_its_share_and_a_full_queue_are_busy_and_a_quiet_connection_goes_first() {
        let pool = QueryPool::start(&config(1, 4, 3, 60_000)).unwrap();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let (tx, rx) = mpsc::channel();
        // Connection 1 floods: three queries (its share), the fourth is refused at once.
        let mut guards = Vec::new();
        for tag in ["flood-1", "flood-2", "flood-3"] {
            guards.push(pool.submit(1, false, gated(&gate, &tx, tag), no_busy()).unwrap());
        }
        let Err(Refused::Busy(why)) = pool.submit(1, false, gated(&gate, &tx, "flood-4"), no_busy()) else {
            panic!("a fourth query of connection 1 was taken")
        };
        assert!(why.contains("query_per_connection"), "{why}");
        // Connection 2 asks once: it runs before connection 1's queued queries.
        std::thread::sleep(Duration::from_millis(100)); // flood-1 is running
        guards.push(pool.submit(2, false, gated(&gate, &tx, "quiet"), no_busy()).unwrap());
        // The queue holds 2 of connection 1 and 1 of connection 2; one more fits, then it is full.
        guards.push(pool.submit(3, false, gated(&gate, &tx, "other"), no_busy()).unwrap());
        let Err(Refused::Busy(why)) = pool.submit(4, false, gated(&gate, &tx, "late"), no_busy()) else {
            panic!("the queue took more than its capacity")
        };
        assert!(why.contains("query_queue"), "{why}");
        *gate.0.lock() = true;
        gate.1.notify_all();
        let order: Vec<&str> = (0..5).map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        assert_eq!(order[0], "flood-1");
        // Connections 2 and 3 have nothing running: they go before connection 1's second query.
        assert_eq!(&order[1..3], ["quiet", "other"], "{order:?}");
        // A query counts as run once its job returned, just after it reported: the last one may
        // not be counted yet (wait at most 5 s).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while pool.usage().queries_run_total < 5 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let u = pool.usage();
        assert_eq!((u.queries_run_total, u.queries_rejected_total), (5, 2));
    }

    #[test]
    fn heavy_queries_never_hold_the_last_thread() {
        let pool = QueryPool::start(&config(2, 16, 16, 60_000)).unwrap();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let (tx, rx) = mpsc::channel();
        let mut guards = Vec::new();
        for (conn, tag) in [(1, "heavy-1"), (2, "heavy-2"), (3, "heavy-3")] {
            guards.push(pool.submit(conn, true, gated(&gate, &tx, tag), no_busy()).unwrap());
        }
        // Two threads: one runs heavy-1, the other stays free for light queries.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(pool.usage().queries_running, 1);
        let light = tx.clone();
        guards
            .push(pool.submit(4, false, Box::new(move || light.send("light").unwrap()), no_busy()).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "light", "the light query waited");
        *gate.0.lock() = true;
        gate.1.notify_all();
        let rest: Vec<&str> = (0..3).map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        assert_eq!(rest, ["heavy-1", "heavy-2", "heavy-3"]);
    }

    #[test]
    fn a_query_that_waits_too_long_is_answered_busy_and_an_abandoned_one_never_runs() {
        let pool = QueryPool::start(&config(1, 8, 8, 200)).unwrap();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let (tx, rx) = mpsc::channel();
        let _first = pool.submit(1, false, gated(&gate, &tx, "first"), no_busy()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let (busy_tx, busy_rx) = mpsc::channel();
        let _waits = pool
            .submit(2, false, gated(&gate, &tx, "waits"), Box::new(move |r| busy_tx.send(r).unwrap()))
            .unwrap();
        let abandoned = pool.submit(3, false, gated(&gate, &tx, "abandoned"), no_busy()).unwrap();
        drop(abandoned);
        std::thread::sleep(Duration::from_millis(400));
        *gate.0.lock() = true;
        gate.1.notify_all();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "first");
        let Refused::Busy(why) = busy_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(why.contains("query_queue_ms"), "{why}");
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "a dropped or late query ran");
    }
}
