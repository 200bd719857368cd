#!/usr/bin/env bash
# The lints CI runs (`cargo clippy` with `-D warnings`), into a build cache of their own
# (the build cache's path with `-clippy` appended, ~/.cache/aergo-os/target-clippy by default):
# `scripts/test.sh` runs this in the background beside the build and the tests, and two cargo
# commands on one target directory wait for each other's lock.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR%/}-clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The node as a release build has it: without the test hooks (the line above lints the test build).
cargo clippy -p aergo-node --lib --bins --locked -- -D warnings
# `--all-targets` leaves out the targets marked `test = false` (the QEMU tests, tests/Cargo.toml).
cargo clippy --workspace --test appliance --test fleet_boxes --locked -- -D warnings
echo "clippy.sh: no warnings"
