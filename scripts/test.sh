#!/usr/bin/env bash
# Every check CI runs: formatting, lints, unit/property/integration tests and the end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh test
. scripts/env.sh
start=$(date +%s)
step() { echo "test.sh: $1 ($(( $(date +%s) - start )) s)"; }
cargo fmt --all -- --check
# The agent, the console and the interface crates link no engine; every crate depends downward.
./scripts/check-layers.sh
step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The node as a release build has it: without the test hooks (the line above lints the test build).
cargo clippy -p aergo-node --lib --bins --locked -- -D warnings
# `--all-targets` leaves out the targets marked `test = false` (the QEMU tests, tests/Cargo.toml).
cargo clippy -p aergo-tests --test appliance --test fleet_boxes --locked -- -D warnings
# The end-to-end tests run the real binaries; build them first, with the test hooks the tests drive
# (an equivocating producer, `net-probe`), and with the features the tests' dev-dependencies turn on
# (aergo-storage's test support): the same features `cargo test` resolves, so the test step reuses
# these libraries and binaries instead of compiling the upper crates a second time.
step "build"
cargo build --workspace --bins --locked --features aergo-node/test-hooks,aergo-storage/test-support
# Every test executable, the QEMU ones too, before anything runs: the runs below only run.
step "build the tests"
cargo test --workspace --locked --no-run
cargo test -p aergo-tests --locked --test appliance --test fleet_boxes --no-run
# The appliance tests (the image booted in QEMU, updated, rolled back; `test = false` in
# tests/Cargo.toml, so `cargo test --workspace` leaves them out) mostly wait for the emulated box,
# and the rest of the suite mostly for block slots: neither keeps two cores busy, so they run side
# by side (docs/crates.md, "Where CI's time goes"). The appliance tests' output follows the suite's.
step "the suite, and beside it the appliance tests"
appliance_log=$(mktemp)
appliance=""
trap '[ -n "$appliance" ] && kill "$appliance" 2>/dev/null; rm -f "$appliance_log"' EXIT
cargo test -p aergo-tests --locked --test appliance > "$appliance_log" 2>&1 &
appliance=$!
suite=0
cargo test --workspace --locked || suite=$?
step "the suite ended (exit $suite); waiting for the appliance tests"
appliance_status=0
wait "$appliance" || appliance_status=$?
appliance=""
echo "----- the appliance tests (tests/tests/appliance.rs), run beside the suite -----"
cat "$appliance_log"
if [ "$suite" != 0 ] || [ "$appliance_status" != 0 ]; then
  echo "test.sh: failed: the suite exited $suite, the appliance tests $appliance_status" >&2
  exit 1
fi
# A fleet of QEMU boxes and a producer process on one virtual network: with the two cores to
# itself (its clocks, slots and finality are timed).
step "the fleet of boxes"
cargo test -p aergo-tests --locked --test fleet_boxes
# Coverage-guided fuzzing (cargo fuzz, libFuzzer), 30 s per target: AergoSQL's interpreter against its
# JIT, transaction and block decoding, JSON-RPC parameters, the p2p protocol. Without a nightly toolchain it fails under
# CI=true (a CI that stopped fuzzing must be seen) and is skipped with a message elsewhere; the bounded
# stable fuzz test in `cargo test` runs the same SQL step there.
step "fuzzing"
./scripts/fuzz.sh 30
echo "all checks passed in $(( $(date +%s) - start )) s"
