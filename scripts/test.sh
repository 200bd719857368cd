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
# Two checks run in the background from here to the end, as SCHED_IDLE (chrt --idle): on the CPU
# time the steps below leave unused (the single-crate tails of compiling, the tests waiting for
# block slots and for the emulated boxes), while a test that needs a core always gets it first
# (docs/crates.md, "Where CI's time goes"). Each builds into a cache of its own, so neither waits
# for the build's lock, and each runs in a process group of its own (job control, `set -m`), so
# that a failed step stops it and everything it started. Not in a session of its own (`setsid`): a
# new session is a new autogroup, which the kernel gives as much CPU as all the rest of the run,
# whatever the policy of the tasks within it. Their output follows the tests'.
#  - The lints: `cargo clippy -D warnings` (scripts/clippy.sh).
#  - Coverage-guided fuzzing (cargo fuzz, libFuzzer): AergoSQL's interpreter against its JIT,
#    transaction and block decoding, JSON-RPC parameters, the p2p protocol; built with nightly and
#    sanitizers. Each target runs a fixed number of inputs (about 30 s of a core each), not for a
#    time: in the background a time limit fuzzed 3 to 12 times less. The four run in two lanes.
#    Without a nightly toolchain it fails under CI=true (a CI that stopped fuzzing must be seen)
#    and is skipped with a message elsewhere; the bounded stable fuzz test in `cargo test` runs
#    the same SQL step there.
clippy_log=$(mktemp)
fuzz_log=$(mktemp)
appliance_log=$(mktemp)
artifacts=$(mktemp)
clippy=""
fuzz=""
appliance=""
stop_background() {
  [ -n "$appliance" ] && kill -- "-$appliance" 2>/dev/null
  [ -n "$clippy" ] && kill -- "-$clippy" 2>/dev/null
  [ -n "$fuzz" ] && kill -- "-$fuzz" 2>/dev/null
  rm -f "$appliance_log" "$artifacts" "$clippy_log" "$fuzz_log"
}
trap stop_background EXIT
# Waits for the background job $2 and prints its output (file $3) under the heading $1; returns its
# exit status.
collect() {
  local status=0
  wait "$2" || status=$?
  echo "----- $1 -----"
  cat "$3"
  return "$status"
}
step "in the background: clippy, fuzzing"
set -m
chrt --idle 0 ./scripts/clippy.sh < /dev/null > "$clippy_log" 2>&1 &
clippy=$!
chrt --idle 0 ./scripts/fuzz.sh --runs < /dev/null > "$fuzz_log" 2>&1 &
fuzz=$!
set +m
# The end-to-end tests run the real binaries; build them first, with the test hooks the tests drive
# (an equivocating producer, `net-probe`), and with the features the tests' dev-dependencies turn on
# (aergo-storage's test support): the same features `cargo test` resolves, so the test step reuses
# these libraries and binaries instead of compiling the upper crates a second time.
step "build"
cargo build --workspace --bins --locked --features aergo-node/test-hooks,aergo-storage/test-support
# Every test executable, the QEMU ones too, in one cargo command, before anything runs: the runs
# below only run. The selection is the suite's (`cargo test --workspace`: libraries, binaries,
# examples, every integration test) with the two QEMU targets added (`--test '*'` names every
# integration test, those marked `test = false` too; `--tests` would not). The features cargo
# resolves are then the suite's, so nothing is compiled twice: a command that names only the QEMU
# targets (`--test appliance`) turns on only aergo-tests' dev-dependencies and resolved 30 units
# differently (itertools under prost-derive, then prost, libp2p and every aergo crate above them),
# and even `-p aergo-tests` resolved mio without `log` (docs/crates.md). The QEMU executables run
# directly, from the paths cargo reports, for the same reason: `cargo test --test appliance` would
# resolve and compile its own set again.
step "build the tests"
cargo test --workspace --locked --no-run --lib --bins --examples --test '*' --message-format=json-render-diagnostics \
  > "$artifacts"
qemu_test() { # the path of the test executable of the QEMU test target $1
  grep '"reason":"compiler-artifact"' "$artifacts" | grep "\"kind\":\[\"test\"\],[^}]*\"name\":\"$1\"" \
    | grep -o '"executable":"[^"]*"' | cut -d'"' -f4
}
appliance_exe=$(qemu_test appliance)
fleet_exe=$(qemu_test fleet_boxes)
if [ ! -x "$appliance_exe" ] || [ ! -x "$fleet_exe" ]; then
  echo "test.sh: cargo reported no executable for the QEMU test targets (appliance: '$appliance_exe', fleet_boxes: '$fleet_exe')" >&2
  exit 1
fi
# Run as cargo runs a test: in its package's directory, with CARGO_MANIFEST_DIR set.
run_qemu_test() { (cd tests && CARGO_MANIFEST_DIR="$PWD" exec "$@"); }
# The appliance tests (the image booted in QEMU, updated, rolled back; `test = false` in
# tests/Cargo.toml, so `cargo test --workspace` leaves them out) mostly wait for the emulated box,
# and the rest of the suite mostly for block slots: neither keeps two cores busy, so they run side
# by side (docs/crates.md, "Where CI's time goes"). The appliance tests' output follows the suite's.
step "the suite, and beside it the appliance tests"
set -m # a process group of its own, as for clippy: a failed step stops it and the boxes it started
run_qemu_test "$appliance_exe" < /dev/null > "$appliance_log" 2>&1 &
appliance=$!
set +m
suite=0
cargo test --workspace --locked || suite=$?
step "the suite ended (exit $suite); waiting for the appliance tests"
appliance_status=0
collect "the appliance tests (tests/tests/appliance.rs), run beside the suite" "$appliance" "$appliance_log" \
  || appliance_status=$?
appliance=""
if [ "$suite" != 0 ] || [ "$appliance_status" != 0 ]; then
  echo "test.sh: failed: the suite exited $suite, the appliance tests $appliance_status" >&2
  exit 1
fi
# A fleet of QEMU boxes and a producer process on one virtual network: after the tests above, as
# its clocks, slots and finality are timed (the idle background checks take only what it leaves).
step "the fleet of boxes"
run_qemu_test "$fleet_exe"
step "the fleet ended; waiting for clippy and fuzzing"
clippy_status=0
collect "clippy (scripts/clippy.sh), run in the background" "$clippy" "$clippy_log" || clippy_status=$?
clippy=""
fuzz_status=0
collect "fuzzing (scripts/fuzz.sh --runs), run in the background" "$fuzz" "$fuzz_log" || fuzz_status=$?
fuzz=""
if [ "$clippy_status" != 0 ] || [ "$fuzz_status" != 0 ]; then
  echo "test.sh: failed: clippy exited $clippy_status, fuzzing $fuzz_status" >&2
  exit 1
fi
echo "all checks passed in $(( $(date +%s) - start )) s"
