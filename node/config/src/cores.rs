//! Which cores the execution workers run on: the `cores = "2-7"` syntax and the default.

use nix::sched::CpuSet;
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
