# Sourced by the scripts: one build cache outside the clone, so repeat runs (and CI) are incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/aergo-os/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
