//! Host resources from procfs (CPU, load, memory, disks, network, uptime, processes), `statvfs` for
//! filesystems, and sysinfo for hardware temperatures. Rates are differences between two readings, so
//! the first sample after start reports zero rates.

use aergo_telemetry::{
    ClockSample, CoreSample, CpuSample, CpuSeconds, Disk, Filesystem, Host, Interface, Memory, ProcessInfo,
    Temperature,
};
use procfs::{Current, CurrentSI};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Filesystem types that hold no data of the box (kernel and virtual filesystems).
const PSEUDO_FS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "proc",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "sysfs",
    "tracefs",
    "ramfs",
    "fuse.lxcfs",
    "overlay",
    "squashfs",
    "tmpfs",
    "iso9660",
];

/// Two decimals are plenty for a percentage or a rate, and keep the JSON short.
fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Keeps the previous readings that rates are computed from.
pub struct HostCollector {
    ticks_per_s: f64,
    page_size: u64,
    prev_at: Option<Instant>,
    prev_cores: Vec<CpuSeconds>,
    prev_disks: HashMap<String, (u64, u64)>,
    prev_net: HashMap<String, (u64, u64)>,
    prev_proc: HashMap<u32, f64>,
    components: sysinfo::Components,
}

#[derive(Debug, thiserror::Error)]
#[error("reading {what}: {source}")]
pub struct HostError {
    what: &'static str,
    source: procfs::ProcError,
}

fn err(what: &'static str) -> impl FnOnce(procfs::ProcError) -> HostError {
    move |source| HostError { what, source }
}

impl Default for HostCollector {
    fn default() -> Self {
        HostCollector::new()
    }
}

impl HostCollector {
    pub fn new() -> HostCollector {
        HostCollector {
            ticks_per_s: procfs::ticks_per_second() as f64,
            page_size: procfs::page_size(),
            prev_at: None,
            prev_cores: Vec::new(),
            prev_disks: HashMap::new(),
            prev_net: HashMap::new(),
            prev_proc: HashMap::new(),
            components: sysinfo::Components::new_with_refreshed_list(),
        }
    }

    fn seconds(&self, t: &procfs::CpuTime) -> CpuSeconds {
        let s = |ticks: u64| ticks as f64 / self.ticks_per_s;
        CpuSeconds {
            user: s(t.user),
            nice: s(t.nice),
            system: s(t.system),
            idle: s(t.idle),
            iowait: s(t.iowait.unwrap_or(0)),
            irq: s(t.irq.unwrap_or(0)),
            softirq: s(t.softirq.unwrap_or(0)),
            steal: s(t.steal.unwrap_or(0)),
        }
    }

    /// Reads everything; `data_dir` names the data filesystem.
    pub fn collect(&mut self, data_dir: Option<&Path>) -> Result<Host, HostError> {
        let now = Instant::now();
        let elapsed = self.prev_at.map(|t| now.duration_since(t).as_secs_f64()).filter(|s| *s > 0.0);
        self.prev_at = Some(now);

        let stat = procfs::KernelStats::current().map_err(err("/proc/stat"))?;
        let cores: Vec<CpuSeconds> = stat.cpu_time.iter().map(|t| self.seconds(t)).collect();
        let mut cpu = CpuSample::default();
        let (mut busy_all, mut total_all) = (0.0f64, 0.0f64);
        for (i, now_s) in cores.iter().enumerate() {
            let mut core = CoreSample { cpu: i as u32, seconds: *now_s, ..CoreSample::default() };
            if let Some(prev) = self.prev_cores.get(i) {
                let total = now_s.total() - prev.total();
                if total > 0.0 {
                    let pct = |a: f64, b: f64| round2(((a - b) / total * 100.0).clamp(0.0, 100.0));
                    let idle = now_s.idle_total() - prev.idle_total();
                    core.busy_pct = round2(((total - idle) / total * 100.0).clamp(0.0, 100.0));
                    core.user_pct = pct(now_s.user + now_s.nice, prev.user + prev.nice);
                    core.system_pct =
                        pct(now_s.system + now_s.irq + now_s.softirq, prev.system + prev.irq + prev.softirq);
                    core.iowait_pct = pct(now_s.iowait, prev.iowait);
                    busy_all += total - idle;
                    total_all += total;
                }
            }
            cpu.cores.push(core);
        }
        if total_all > 0.0 {
            cpu.busy_pct = round2((busy_all / total_all * 100.0).clamp(0.0, 100.0));
        }
        self.prev_cores = cores;

        let mem = procfs::Meminfo::current().map_err(err("/proc/meminfo"))?;
        let memory = Memory {
            total_bytes: mem.mem_total,
            available_bytes: mem.mem_available.unwrap_or(mem.mem_free + mem.cached),
            free_bytes: mem.mem_free,
            buffers_bytes: mem.buffers,
            cached_bytes: mem.cached,
            swap_total_bytes: mem.swap_total,
            swap_free_bytes: mem.swap_free,
        };
        let load = procfs::LoadAverage::current().map_err(err("/proc/loadavg"))?;
        let uptime = procfs::Uptime::current().map_err(err("/proc/uptime"))?;

        let disks = self.disks(elapsed)?;
        let network = self.network(elapsed)?;
        let filesystems = filesystems(data_dir)?;
        Ok(Host {
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            os: os_name(),
            boot_slot: boot_slot(),
            uptime_s: uptime.uptime,
            boot_time_s: stat.btime,
            load: [round2(load.one as f64), round2(load.five as f64), round2(load.fifteen as f64)],
            cpu,
            memory,
            filesystems,
            disks,
            network,
            temperatures: self.temperatures(),
            clock: Some(clock()),
        })
    }

    fn disks(&mut self, elapsed: Option<f64>) -> Result<Vec<Disk>, HostError> {
        let mut out = Vec::new();
        let mut seen = HashMap::new();
        for d in procfs::diskstats().map_err(err("/proc/diskstats"))? {
            // Whole devices only (partitions are in their disk's figures); no RAM or loop devices.
            let whole = Path::new("/sys/block").join(&d.name).exists();
            if !whole || d.name.starts_with("loop") || d.name.starts_with("ram") || d.name.starts_with("zram")
            {
                continue;
            }
            let read = d.sectors_read * 512;
            let written = d.sectors_written * 512;
            let mut disk = Disk {
                device: d.name.clone(),
                read_bytes_total: read,
                written_bytes_total: written,
                reads_completed_total: d.reads,
                writes_completed_total: d.writes,
                io_time_ms_total: d.time_in_progress,
                ..Disk::default()
            };
            if let (Some(secs), Some((r0, w0))) = (elapsed, self.prev_disks.get(&d.name)) {
                disk.read_bytes_per_s = round2(read.saturating_sub(*r0) as f64 / secs);
                disk.write_bytes_per_s = round2(written.saturating_sub(*w0) as f64 / secs);
            }
            seen.insert(d.name, (read, written));
            out.push(disk);
        }
        self.prev_disks = seen;
        Ok(out)
    }

    fn network(&mut self, elapsed: Option<f64>) -> Result<Vec<Interface>, HostError> {
        let dev = procfs::net::dev_status().map_err(err("/proc/net/dev"))?;
        let mut names: Vec<&String> = dev.keys().collect();
        names.sort();
        let mut out = Vec::new();
        let mut seen = HashMap::new();
        for name in names {
            let d = &dev[name];
            let mut i = Interface {
                interface: name.clone(),
                rx_bytes_total: d.recv_bytes,
                tx_bytes_total: d.sent_bytes,
                rx_packets_total: d.recv_packets,
                tx_packets_total: d.sent_packets,
                rx_errors_total: d.recv_errs,
                tx_errors_total: d.sent_errs,
                rx_dropped_total: d.recv_drop,
                tx_dropped_total: d.sent_drop,
                ..Interface::default()
            };
            if let (Some(secs), Some((r0, t0))) = (elapsed, self.prev_net.get(name)) {
                i.rx_bytes_per_s = round2(d.recv_bytes.saturating_sub(*r0) as f64 / secs);
                i.tx_bytes_per_s = round2(d.sent_bytes.saturating_sub(*t0) as f64 / secs);
            }
            seen.insert(name.clone(), (d.recv_bytes, d.sent_bytes));
            out.push(i);
        }
        self.prev_net = seen;
        Ok(out)
    }

    fn temperatures(&mut self) -> Vec<Temperature> {
        self.components.refresh(false);
        self.components
            .iter()
            .filter_map(|c| {
                let t = c.temperature()?;
                t.is_finite().then(|| Temperature {
                    sensor: c.label().to_string(),
                    celsius: t as f64,
                    critical_celsius: c.critical().filter(|v| v.is_finite()).map(f64::from),
                })
            })
            .collect()
    }

    /// One process's figures; `None` when it does not exist (or is a zombie).
    pub fn process(&mut self, pid: u32, elapsed_s: f64, boot_time_s: u64) -> Option<ProcessInfo> {
        let p = procfs::process::Process::new(pid as i32).ok()?;
        let stat = p.stat().ok()?;
        if stat.state == 'Z' || stat.state == 'X' {
            return None;
        }
        let cpu_s = (stat.utime + stat.stime) as f64 / self.ticks_per_s;
        let cpu_pct = match self.prev_proc.insert(pid, cpu_s) {
            Some(prev) if elapsed_s > 0.0 => round2(((cpu_s - prev) / elapsed_s * 100.0).max(0.0)),
            _ => 0.0,
        };
        Some(ProcessInfo {
            pid,
            cpu_pct,
            cpu_seconds_total: cpu_s,
            rss_bytes: stat.rss * self.page_size,
            virtual_bytes: stat.vsize,
            open_fds: p.fd_count().map(|n| n as u64).unwrap_or(0),
            threads: stat.num_threads.max(0) as u64,
            start_time_s: boot_time_s + (stat.starttime as f64 / self.ticks_per_s) as u64,
        })
    }
}

/// The pid of a running process named `name` (its `comm`) that holds a file open under `data_dir` when
/// that is known (the node keeps its database lock and block log open; this tells our node from another
/// one on the same box); the oldest when several match.
pub fn find_process(name: &str, data_dir: Option<&Path>) -> Option<u32> {
    let data_dir = data_dir.map(|d| d.canonicalize().unwrap_or_else(|_| d.to_path_buf()));
    let mut found: Option<(u64, u32)> = None;
    for p in procfs::process::all_processes().ok()?.flatten() {
        let Ok(stat) = p.stat() else { continue };
        if stat.comm != name || stat.state == 'Z' || found.is_some_and(|(start, _)| stat.starttime >= start) {
            continue;
        }
        if let Some(dir) = &data_dir {
            let holds = p.fd().map(|fds| {
                fds.flatten().any(
                    |fd| matches!(&fd.target, procfs::process::FDTarget::Path(path) if path.starts_with(dir)),
                )
            });
            if !holds.unwrap_or(false) {
                continue;
            }
        }
        found = Some((stat.starttime, p.pid as u32));
    }
    found.map(|(_, pid)| pid)
}

/// Mounted filesystems that hold data, plus `/` and the one holding `data_dir` whatever their type.
fn filesystems(data_dir: Option<&Path>) -> Result<Vec<Filesystem>, HostError> {
    let mounts = procfs::process::Process::myself()
        .and_then(|p| p.mountinfo())
        .map_err(err("/proc/self/mountinfo"))?;
    let data_dir: Option<PathBuf> = data_dir.map(|d| d.canonicalize().unwrap_or_else(|_| d.to_path_buf()));
    // The data filesystem is the mount with the longest mount point that contains the data dir.
    let data_mount = data_dir.as_ref().and_then(|d| {
        mounts
            .0
            .iter()
            .filter(|m| d.starts_with(&m.mount_point))
            .map(|m| m.mount_point.clone())
            .max_by_key(|p| p.as_os_str().len())
    });
    let mut out: Vec<Filesystem> = Vec::new();
    for m in &mounts.0 {
        let mp = &m.mount_point;
        let role = if Some(mp) == data_mount.as_ref() {
            Some("data")
        } else if mp == Path::new("/") {
            Some("root")
        } else {
            None
        };
        let wanted = role.is_some()
            || (!PSEUDO_FS.contains(&m.fs_type.as_str())
                && !mp.starts_with("/proc")
                && !mp.starts_with("/sys")
                && !mp.starts_with("/dev")
                && mp.is_dir());
        if !wanted || out.iter().any(|f| Path::new(&f.mount_point) == mp) {
            continue;
        }
        let Ok(vfs) = nix::sys::statvfs::statvfs(mp) else { continue };
        let frag = vfs.fragment_size();
        out.push(Filesystem {
            mount_point: mp.display().to_string(),
            device: m.mount_source.clone().unwrap_or_default(),
            fs_type: m.fs_type.clone(),
            size_bytes: vfs.blocks() * frag,
            free_bytes: vfs.blocks_free() * frag,
            avail_bytes: vfs.blocks_available() * frag,
            read_only: vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
            role: role.map(str::to_string),
        });
    }
    Ok(out)
}

/// `PRETTY_NAME` from `/etc/os-release`.
fn os_name() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// Where chronyd answers its local clients (chronyc) on the appliance and on Debian.
const CHRONY_SOCKET: &str = "/run/chrony/chronyd.sock";

/// The clock's synchronization: chrony's tracking report when chronyd runs, else the kernel's
/// state (`adjtimex`).
pub fn clock() -> ClockSample {
    let kernel = aergo_primitives::clock::kernel_clock();
    let est_error_seconds = kernel.map(|k| k.est_error_us as f64 / 1e6);
    if std::path::Path::new(CHRONY_SOCKET).exists() {
        // A short timeout and no retries: a hung chronyd must not stall the sample.
        let out = std::process::Command::new("chronyc")
            .args(["-c", "-n", "-m", "timeout 300", "retries 0", "tracking"])
            .stderr(std::process::Stdio::null())
            .output();
        if let Some(mut c) = out.ok().and_then(|o| parse_chrony_tracking(&String::from_utf8_lossy(&o.stdout)))
        {
            c.est_error_seconds = est_error_seconds;
            return c;
        }
    }
    ClockSample {
        synchronized: kernel.is_some_and(|k| k.synchronized),
        source: "kernel".into(),
        est_error_seconds,
        ..ClockSample::default()
    }
}

/// The CSV line of `chronyc -c tracking`: reference id, reference name or address, stratum,
/// reference time, system time offset (positive: fast), last offset, RMS offset, frequency,
/// residual frequency, skew, root delay, root dispersion, update interval, leap status.
pub fn parse_chrony_tracking(text: &str) -> Option<ClockSample> {
    let line = text.lines().find(|l| l.split(',').count() >= 14)?;
    let f: Vec<&str> = line.split(',').collect();
    let stratum: u32 = f[2].trim().parse().ok()?;
    let offset: f64 = f[4].trim().parse().ok()?;
    let leap = f[13].trim();
    let synchronized = leap != "Not synchronised" && stratum > 0;
    let server = Some(f[1].trim().to_string()).filter(|s| !s.is_empty() && synchronized);
    Some(ClockSample {
        synchronized,
        source: "chrony".into(),
        offset_seconds: Some(offset),
        stratum: Some(stratum),
        server,
        est_error_seconds: None,
    })
}

/// The `rauc.slot=` kernel argument, if any.
fn boot_slot() -> Option<String> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").ok()?;
    cmdline.split_whitespace().find_map(|a| a.strip_prefix("rauc.slot=")).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine() {
        let mut c = HostCollector::new();
        let dir = tempfile::tempdir().unwrap();
        let first = c.collect(Some(dir.path())).unwrap();
        assert!(first.memory.total_bytes > 0);
        assert_eq!(first.cpu.cores.len(), procfs::CpuInfo::current().unwrap().num_cores());
        assert!(first.filesystems.iter().any(|f| f.role.as_deref() == Some("data")));
        assert!(first.network.iter().any(|i| i.interface == "lo"));
        std::thread::sleep(std::time::Duration::from_millis(50));
        let me = std::process::id();
        assert!(c.process(me, 0.05, first.boot_time_s).unwrap().threads >= 1);
        let second = c.collect(Some(dir.path())).unwrap();
        assert!(second.cpu.busy_pct >= 0.0 && second.cpu.busy_pct <= 100.0);
        assert!(c.process(u32::MAX - 1, 1.0, 0).is_none());
    }

    #[test]
    fn chrony_tracking_is_read() {
        let synced = "C0A80001,192.168.0.1,3,1764892800.123456789,-0.000012345,-0.000001234,0.000045678,-12.345,0.001,0.012,0.012345678,0.000987654,64.5,Normal\n";
        let c = parse_chrony_tracking(synced).unwrap();
        assert!(c.synchronized);
        assert_eq!(c.source, "chrony");
        assert_eq!(c.stratum, Some(3));
        assert_eq!(c.server.as_deref(), Some("192.168.0.1"));
        assert!((c.offset_seconds.unwrap() + 0.000012345).abs() < 1e-12);
        let unsynced = "00000000,,0,0.000000000,0.000000000,0.000000000,0.000000000,0.000,0.000,0.000,1.000000000,1.000000000,0.0,Not synchronised\n";
        let c = parse_chrony_tracking(unsynced).unwrap();
        assert!(!c.synchronized && c.server.is_none());
        assert!(parse_chrony_tracking("506 Cannot talk to daemon\n").is_none());
        // Without chronyd (this machine), the kernel's state.
        let here = clock();
        assert!(here.source == "kernel" || here.source == "chrony", "{here:?}");
    }
}
