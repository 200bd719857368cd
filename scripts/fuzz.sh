#!/usr/bin/env bash
# Coverage-guided fuzzing of AergoSQL (parse → check → JIT → calls) with cargo fuzz / libFuzzer.
# Usage: scripts/fuzz.sh [SECONDS]   (default 60). Needs a nightly toolchain; installs cargo-fuzz
# from crates.io when it is missing. Seeds the corpus with the example contracts. Bounded: stops
# after SECONDS, with at most 4 GiB RSS per input run and 10 s per input.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
source scripts/env.sh
if ! rustup toolchain list 2>/dev/null | grep -q nightly; then
  if [ "${CI:-}" = "true" ]; then
    # A CI that silently stopped fuzzing would look green: fail so that it is seen.
    echo "fuzz.sh: no nightly toolchain on this CI machine: cargo fuzz needs one (rustup toolchain install nightly)" >&2
    exit 1
  fi
  echo "fuzz.sh: skipped: no nightly toolchain here (cargo fuzz needs one); the bounded stable fuzz test runs in ./scripts/test.sh" >&2
  exit 0
fi
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
mkdir -p fuzz/corpus/sql
cp examples/contracts/*.sql fuzz/corpus/sql/
export CARGO_TARGET_DIR="$HOME/.cache/aergo-os/fuzz-target"
cd fuzz
cargo +nightly fuzz run sql corpus/sql -- -max_total_time="$secs" -rss_limit_mb=4096 -timeout=10 -max_len=65536
