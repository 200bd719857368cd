#!/usr/bin/env bash
# Opens aergo-console against the devnet of ./scripts/devnet.sh (run that first, in another terminal).
# Setup writes its files under $dir/console-root, not into this machine's /etc. Extra arguments go to
# aergo-console (e.g. --no-color, --kiosk).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo build --release -p aergo-console --bins
dir="${AERGO_DEVNET_DIR:-$HOME/.local/share/aergo-devnet}"
mkdir -p "$dir/console-root"
exec "$CARGO_TARGET_DIR/release/aergo-console" --node http://127.0.0.1:7845 --agent https://127.0.0.1:7850 \
  --agent-token-file "$dir/agent.token" --agent-cert "$dir/agent-tls/cert.pem" --root "$dir/console-root" \
  --node-log "$dir/node.log" --agent-log "$dir/agent.log" "$@"
