#!/usr/bin/env bash
# Coverage-guided fuzzing with cargo fuzz / libFuzzer, each target for SECONDS:
#  - sql: AergoSQL (parse → check → deploy and calls) on the interpreter and the JIT, which must agree
#    on every result, error, gas figure and state;
#  - decode: transaction and block decoding (what decodes encodes back to the same bytes);
#  - rpc_params: JSON-RPC parameters (request types, addresses, hashes, amounts, transaction hex);
#  - p2p: the p2p protocol (sync requests and responses, gossiped blocks and transactions).
# Usage: scripts/fuzz.sh [SECONDS | --runs]   (default 60 s). With --runs (what scripts/test.sh
# runs, in the background, where the CPU it gets varies) each target runs a fixed number of inputs
# instead, about 30 s of one core of the 2-core development VM each (counted from its CI runs of
# 2026-12-07), so that a busy machine fuzzes as much, only later; at most 10 minutes a target.
# Needs a nightly toolchain; installs cargo-fuzz from crates.io when it is missing. Bounded: at
# most 4 GiB RSS per input run and 10 s per input.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
declare -A runs=([sql]=30000 [decode]=350000 [rpc_params]=1000000 [p2p]=170000)
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
export CARGO_TARGET_DIR="$HOME/.cache/aergo-os/fuzz-target"
# Each target starts from the seeds kept in the repo (for `sql` the example contracts too) plus what
# earlier runs on this machine found (fuzz/corpus/, not tracked).
run_target() {
  local target=$1 corpus="fuzz/corpus/$1" bound
  mkdir -p "$corpus"
  if [ "$target" = sql ]; then
    cp examples/contracts/*.sql fuzz/seeds/sql/*.sql "$corpus/"
  else
    cp "fuzz/seeds/$target/"* "$corpus/"
  fi
  if [ "$secs" = --runs ]; then
    bound=(-runs="${runs[$target]}" -max_total_time=600)
    echo "fuzz.sh: $target for ${runs[$target]} inputs from $(ls "$corpus" | wc -l) inputs"
  else
    bound=(-max_total_time="$secs")
    echo "fuzz.sh: $target for ${secs} s from $(ls "$corpus" | wc -l) inputs"
  fi
  (cd fuzz && cargo +nightly fuzz run "$target" "corpus/$target" -- "${bound[@]}" \
    -rss_limit_mb=4096 -timeout=10 -max_len=65536 -print_final_stats=1)
  echo "fuzz.sh: $target: corpus now $(ls "$corpus" | wc -l) inputs"
}
if [ "$secs" != --runs ]; then
  for target in sql decode rpc_params p2p; do run_target "$target"; done
  exit 0
fi
# With --runs: every target built once, then run in two lanes of about the same length (a libFuzzer
# run is one thread; when the CI's other steps have ended, one lane would leave a core idle). Each
# lane's output is printed whole when both have ended. The lanes are in this script's process
# group, which scripts/test.sh stops as a whole on a failure (as a terminal's Ctrl-C does).
(cd fuzz && cargo +nightly fuzz build)
lane_a=$(mktemp)
lane_b=$(mktemp)
trap 'rm -f "$lane_a" "$lane_b"' EXIT
(run_target sql; run_target p2p) > "$lane_a" 2>&1 &
a=$!
(run_target decode; run_target rpc_params) > "$lane_b" 2>&1 &
b=$!
status_a=0
wait "$a" || status_a=$?
status_b=0
wait "$b" || status_b=$?
cat "$lane_a" "$lane_b"
if [ "$status_a" != 0 ] || [ "$status_b" != 0 ]; then
  echo "fuzz.sh: failed: the lane of sql and p2p exited $status_a, the lane of decode and rpc_params $status_b" >&2
  exit 1
fi
