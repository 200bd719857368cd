//! Pinning worker threads to cores (which cores: [`aergo_config::cores`]), and asking the
//! kernel to run latency-sensitive threads soon after they wake ([`prefer_latency`]).

pub use aergo_config::cores::{available_cores, default_cores, parse_cores};

use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// Pins the calling thread to `core`.
pub fn pin_current_thread(core: usize) -> Result<(), String> {
    let mut set = CpuSet::new();
    set.set(core).map_err(|e| format!("core {core}: {e}"))?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|e| format!("pinning to core {core}: {e}"))
}

/// The calling thread pinned to one core until this is dropped; then it may run where it could
/// before. For a thread that works beside the pinned workers for a while and has other work after.
pub struct PinnedForNow(Option<CpuSet>);

/// Pins the calling thread to `core` for as long as the answer lives.
pub fn pin_current_thread_for_now(core: usize) -> Result<PinnedForNow, String> {
    let before =
        nix::sched::sched_getaffinity(Pid::from_raw(0)).map_err(|e| format!("reading affinity: {e}"))?;
    pin_current_thread(core)?;
    Ok(PinnedForNow(Some(before)))
}

impl Drop for PinnedForNow {
    fn drop(&mut self) {
        if let Some(before) = self.0.take() {
            if let Err(e) = sched_setaffinity(Pid::from_raw(0), &before) {
                tracing::warn!(error = %e, "cannot give the execution thread its cores back");
            }
        }
    }
}

/// The time slice [`prefer_latency`] asks for: the shortest the kernel grants (0.1 ms).
pub const LATENCY_SLICE_NS: u64 = 100_000;

/// Asks the kernel to give the calling thread short time slices ([`LATENCY_SLICE_NS`]) when
/// `short`, or the default ones again: for a thread that answers someone and, while lightly
/// loaded, works in short bursts (the admission stage). The scheduler (EEVDF, Linux 6.12 and
/// later) gives a thread of shorter slices an earlier deadline and lets it preempt one of longer
/// slices, so when it wakes it runs before threads that work in long stretches (a block's import
/// and execution) instead of queueing behind them. Its share of the CPU stays what its nice value
/// gives it. The thread keeps its policy and nice value; threads it starts get the default slice
/// (`RESET_ON_FORK`). Older kernels accept and ignore the slice; `Err` only when the call itself
/// is refused (e.g. by a seccomp filter), and the thread runs as before.
pub fn prefer_latency(short: bool) -> Result<(), String> {
    // SAFETY: gettid and getpriority take no pointers; getpriority's answer for a thread id is
    // that thread's nice value (a thread has its own on Linux).
    let tid = unsafe { libc::gettid() };
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
    // `sched_setattr(2)`'s first version of the struct (48 bytes), which every kernel takes.
    let attr = libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: libc::SCHED_OTHER as u32,
        // Threads this one starts get the default scheduling again.
        sched_flags: libc::SCHED_FLAG_RESET_ON_FORK as u64,
        sched_nice: nice,
        sched_priority: 0,
        // 0: the default slice.
        sched_runtime: if short { LATENCY_SLICE_NS } else { 0 },
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: `attr` is a valid `sched_attr` of the size it declares, alive for the call; pid 0
    // is the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const libc::sched_attr, 0u32) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("sched_setattr: {}", std::io::Error::last_os_error()))
    }
}

/// The calling thread's time slice in ns, as `/proc/thread-self/sched` reports it (`se.slice`);
/// `None` where the kernel does not say.
#[cfg(test)]
pub(crate) fn current_slice_ns() -> Option<u64> {
    let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
    sched.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "se.slice").then(|| v.trim().parse().ok())?
    })
}

/// The calling thread's `Cpus_allowed_list` as the kernel reports it (`/proc/thread-self/status`).
#[cfg(test)]
pub(crate) fn allowed_cpus() -> String {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap_or_default().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_pinned_for_now_gets_its_cores_back() {
        let cores = available_cores();
        let before = allowed_cpus();
        {
            let _pin = pin_current_thread_for_now(cores[cores.len() - 1]).unwrap();
            assert_eq!(allowed_cpus(), cores[cores.len() - 1].to_string());
        }
        assert_eq!(allowed_cpus(), before);
    }

    #[test]
    fn a_latency_thread_gets_short_slices_and_keeps_its_nice_value() {
        std::thread::spawn(|| {
            // SAFETY: no pointers; raises this thread's own nice value, which needs no privilege.
            let tid = unsafe { libc::gettid() } as libc::id_t;
            assert_eq!(unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, 3) }, 0);
            let before = current_slice_ns();
            prefer_latency(true).unwrap();
            assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) }, 3, "nice kept");
            // Kernels before custom slices (6.12) do not report `se.slice` or ignore the request.
            if let (Some(before), Some(after)) = (before, current_slice_ns()) {
                if before > LATENCY_SLICE_NS {
                    assert_eq!(after, LATENCY_SLICE_NS, "slice {before} -> {after}");
                    // A thread it starts works with the default slice again.
                    let child = std::thread::spawn(current_slice_ns).join().unwrap();
                    assert_eq!(child, Some(before), "a child thread's slice");
                    prefer_latency(false).unwrap();
                    assert_eq!(current_slice_ns(), Some(before), "the default slice again");
                    assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) }, 3, "nice kept");
                }
            }
        })
        .join()
        .unwrap();
    }
}
