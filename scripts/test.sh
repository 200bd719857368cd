#!/usr/bin/env bash
# Every check CI runs: formatting, lints, unit/property/integration tests and the end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
. scripts/env.sh
start=$(date +%s)
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The end-to-end tests run the real binaries; build them first.
cargo build --workspace --bins --locked
cargo test --workspace --locked
# Coverage-guided fuzzing of AergoSQL's parse → check → compile → call (cargo fuzz, libFuzzer), bounded
# to 30 s; skipped with a message on a machine without a nightly toolchain (the bounded stable fuzz
# test in `cargo test` covers the same entry point there).
./scripts/fuzz.sh 30
echo "all checks passed in $(( $(date +%s) - start )) s"
