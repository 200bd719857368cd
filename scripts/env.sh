# Sourced by the scripts: one build cache outside the clone, so repeat runs (and CI) are incremental.
# Every clone shares it, and cargo reuses a test executable built in another clone: tests find the
# clone's files from `CARGO_MANIFEST_DIR` at run time, never from the compile-time `env!` value.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/aergo-os/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
