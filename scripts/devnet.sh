#!/usr/bin/env bash
# Builds the node and runs a single-producer local devnet on the default RPC port (7845).
# Data lives in $AERGO_DEVNET_DIR (default ~/.local/share/aergo-devnet); restarting continues the chain.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
. scripts/env.sh
cargo build --release -p aergo-node --bins
dir="${AERGO_DEVNET_DIR:-$HOME/.local/share/aergo-devnet}"
echo "devnet data in $dir; dev key: $dir/dev.key; CLI: $CARGO_TARGET_DIR/release/aergo"
exec "$CARGO_TARGET_DIR/release/aergo-node" --dev --data-dir "$dir" "$@"
