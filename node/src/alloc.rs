//! The process allocator: mimalloc (the binaries declare it as `#[global_allocator]`), and how the
//! node tunes it.
//!
//! A block's execution allocates a few megabytes of short-lived memory (the outcomes, the overlay,
//! the change set) once a second. mimalloc gives freed memory back to the OS after `purge_delay`
//! (1 s by default), so a node at one block a second took all of it back from the kernel every
//! block: fresh pages, each zeroed on first touch (a 2 MiB huge page at a time with THP). That was a
//! quarter of the sequential executor's time in the benchmark. Keeping freed memory ten seconds
//! lets each block reuse the last one's; an idle node still hands it back.
//!
//! Transparent huge pages are off for the node's process (`prctl(PR_SET_THP_DISABLE)`, and
//! mimalloc's `allow_thp` for the arenas it maps later). mimalloc asks for huge pages on its
//! arenas, so each page it touches afresh — a new page of a size class, memory purged and taken
//! again — faulted in and zeroed 2 MiB where 4 KiB were wanted. With four producers on one 2-core
//! box at 5 000 transfers/s that zeroing was 14 % of all CPU time (`perf`, `clear_page_erms` under
//! `mi_page_free_list_extend`, 2026-12-07), and turning it off took the p99 to inclusion from
//! 4.1 s to 2.2 s, and one devnet node took 1.16–1.22× the transfers per second (`docs/exec.md`,
//! "Transaction batches on gossip, huge pages off"). The execution stage alone runs 10–15 %
//! slower without huge pages: `MIMALLOC_ALLOW_THP=1` in the node's environment keeps them.

/// `mi_option_purge_delay` in mimalloc.h (the `extended` bindings do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// `mi_option_allow_thp` in mimalloc.h (v3).
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

/// How long freed memory stays with the process before it is returned to the OS.
pub const PURGE_DELAY_MS: i64 = 10_000;

/// Sets the node's allocator options; call once at the start of `main`.
pub fn tune() {
    // SAFETY: mi_option_set only stores an integer option, read by the allocator when it purges.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as _) }
    // An operator's own `MIMALLOC_ALLOW_THP` (mimalloc reads it at start) is left as it is.
    if std::env::var_os(ALLOW_THP_ENV).is_none() {
        // SAFETY: as above.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, 0) }
        // SAFETY: a plain prctl on this process with integer arguments. It fails only on kernels
        // without the option, where there is nothing to turn off.
        let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

/// The environment variable that keeps mimalloc's own choice of transparent huge pages.
pub const ALLOW_THP_ENV: &str = "MIMALLOC_ALLOW_THP";

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_is_set() {
        super::tune();
        // SAFETY: reads an integer option.
        let got = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(got as i64, super::PURGE_DELAY_MS);
        // SAFETY: reads an integer option; a plain prctl.
        if std::env::var_os(super::ALLOW_THP_ENV).is_none() {
            assert_eq!(unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_ALLOW_THP) }, 0);
            assert_eq!(unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) }, 1);
        }
    }
}
