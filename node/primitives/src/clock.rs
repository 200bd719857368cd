//! The wall clock, as the chain counts time: milliseconds since the Unix epoch; and whether the
//! kernel says that clock is synchronized ([`kernel_clock`]).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 for a clock set before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// What the kernel says about the system clock's synchronization (`adjtimex(2)` without changing
/// anything). An NTP daemon that disciplines the clock — chrony with `rtcsync`, as on the
/// appliance — clears the kernel's "unsynchronized" state once it has set the clock, and keeps the
/// error estimates current; the kernel sets it again when no daemon has updated it for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelClock {
    pub synchronized: bool,
    /// The estimated error of the clock, in microseconds (16 s when nobody estimates it).
    pub est_error_us: i64,
    /// The maximum error, in microseconds.
    pub max_error_us: i64,
}

/// The kernel's clock state, or `None` when `adjtimex` is refused (a seccomp filter).
pub fn kernel_clock() -> Option<KernelClock> {
    // SAFETY: `timex` is a plain C struct for which all zeroes is a valid value; `adjtimex` with
    // `modes == 0` only reads the kernel's state into it.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return None;
    }
    Some(KernelClock {
        synchronized: state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0,
        est_error_us: tx.esterror as i64,
        max_error_us: tx.maxerror as i64,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_kernel_clock_state_is_read() {
        let k = super::kernel_clock().expect("adjtimex answers outside a seccomp filter");
        // Whatever the machine's state, the errors are non-negative and an unsynchronized clock
        // has no small error estimate.
        assert!(k.est_error_us >= 0 && k.max_error_us >= 0, "{k:?}");
        if !k.synchronized {
            assert!(k.max_error_us > 0, "{k:?}");
        }
    }
}
