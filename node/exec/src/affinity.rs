//! Pinning worker threads to cores (which cores: [`aergo_config::cores`]).

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
}
