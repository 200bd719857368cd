//! The process allocator: mimalloc (the binaries declare it as `#[global_allocator]`), and how the
//! node tunes it.
//!
//! A block's execution allocates a few megabytes of short-lived memory (the outcomes, the overlay,
//! the change set) once a second. mimalloc gives freed memory back to the OS after `purge_delay`
//! (1 s by default), so a node at one block a second took all of it back from the kernel every
//! block: fresh pages, each zeroed on first touch (a 2 MiB huge page at a time with THP). That was a
//! quarter of the sequential executor's time in the benchmark. Keeping freed memory ten seconds
//! lets each block reuse the last one's; an idle node still hands it back.

/// `mi_option_purge_delay` in mimalloc.h (the `extended` bindings do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays with the process before it is returned to the OS.
pub const PURGE_DELAY_MS: i64 = 10_000;

/// Sets the node's allocator options; call once at the start of `main`.
pub fn tune() {
    // SAFETY: mi_option_set only stores an integer option, read by the allocator when it purges.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as _) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_is_set() {
        super::tune();
        // SAFETY: reads an integer option.
        let got = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(got as i64, super::PURGE_DELAY_MS);
    }
}
