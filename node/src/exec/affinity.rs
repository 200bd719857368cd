//! Pinning worker threads to cores, and the `cores = "2-7"` syntax that names them.

use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// Parses a core list such as `"0-3"`, `"2,4,6-7"`.
pub fn parse_cores(spec: &str) -> Result<Vec<usize>, String> {
    let mut cores = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("core list {spec:?}: {part:?} is not a core number or range like 2-7");
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi): (usize, usize) =
                    (lo.trim().parse().map_err(|_| bad())?, hi.trim().parse().map_err(|_| bad())?);
                if lo > hi {
                    return Err(bad());
                }
                cores.extend(lo..=hi);
            }
            None => cores.push(part.parse().map_err(|_| bad())?),
        }
    }
    cores.sort_unstable();
    cores.dedup();
    if cores.is_empty() {
        return Err(format!("core list {spec:?} names no core"));
    }
    if let Some(&c) = cores.iter().find(|&&c| c >= CpuSet::count()) {
        return Err(format!("core list {spec:?}: core {c} is beyond what this kernel supports"));
    }
    Ok(cores)
}

/// The cores this process may run on.
pub fn available_cores() -> Vec<usize> {
    match nix::sched::sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false)).collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

/// The default execution cores: the cores the kernel isolated (`isolcpus=`, as the appliance reserves
/// them for this), else all this process may use but the first (left to networking and RPC), and at
/// least one.
pub fn default_cores() -> Vec<usize> {
    let isolated = std::fs::read_to_string("/sys/devices/system/cpu/isolated").unwrap_or_default();
    default_cores_from(&isolated, available_cores())
}

fn default_cores_from(isolated: &str, available: Vec<usize>) -> Vec<usize> {
    match parse_cores(isolated.trim()) {
        Ok(cores) if !cores.is_empty() => cores,
        _ if available.len() > 1 => available[1..].to_vec(),
        _ => available,
    }
}

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
    fn isolated_cores_are_the_default_when_the_kernel_reserved_some() {
        assert_eq!(default_cores_from("1-3\n", vec![0]), vec![1, 2, 3]);
        assert_eq!(default_cores_from("\n", vec![0, 1, 2]), vec![1, 2]);
        assert_eq!(default_cores_from("", vec![0]), vec![0]);
    }

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
    fn core_lists() {
        assert_eq!(parse_cores("2-4").unwrap(), vec![2, 3, 4]);
        assert_eq!(parse_cores("0, 3,1-2,3").unwrap(), vec![0, 1, 2, 3]);
        assert!(parse_cores("").is_err());
        assert!(parse_cores("4-2").is_err());
        assert!(parse_cores("x").is_err());
        assert!(parse_cores("99999").is_err());
        assert!(!default_cores().is_empty());
    }
}
