//! AergoSQL under libFuzzer: any bytes as a contract script through parse → check → JIT → calls
//! (`aergo_sql::fuzz::fuzz_one`). Seeds: `examples/contracts/*.sql` (see `scripts/fuzz.sh`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(script) = std::str::from_utf8(data) {
        aergo_sql::fuzz::fuzz_one(script);
    }
});
