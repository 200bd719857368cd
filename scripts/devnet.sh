#!/usr/bin/env bash
# Builds the node, the agent and the console and runs a single-producer local devnet: the node's RPC on 127.0.0.1:7845
# (a block every 1 s slot, empty ones included, as a producer on a network does) and aergo-agent beside it
# on 127.0.0.1:7850 (bearer token in $dir/agent.token). Data lives in $AERGO_DEVNET_DIR (default
# ~/.local/share/aergo-devnet); restarting continues the chain and the agent's sample history.
# The node's log is also kept in $dir/node.log. Open the operator console in another terminal with
# ./scripts/console.sh. Extra arguments go to aergo-node. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
. scripts/env.sh
cargo build --release -p aergo-node -p aergo-cli -p aergo-agent -p aergo-console --bins
bin="$CARGO_TARGET_DIR/release"
dir="${AERGO_DEVNET_DIR:-$HOME/.local/share/aergo-devnet}"
mkdir -p "$dir"
[ -f "$dir/agent.token" ] || "$bin/aergo-agent" gen-token "$dir/agent.token" >/dev/null
echo "devnet data in $dir; dev key: $dir/dev.key; CLI: $bin/aergo"
echo "agent: curl -H \"Authorization: Bearer \$(cat $dir/agent.token)\" http://127.0.0.1:7850/v1/telemetry (log: $dir/agent.log)"
echo "console: ./scripts/console.sh (in another terminal)"
"$bin/aergo-node" --dev --empty-blocks --data-dir "$dir" "$@" > >(tee -a "$dir/node.log") 2>&1 &
node=$!
agent=""
trap 'kill $node $agent 2>/dev/null || true; wait' EXIT INT TERM
# The node creates its identity key on first start; the agent signs with it.
for _ in $(seq 300); do [ -f "$dir/node.key" ] && break; sleep 0.1; done
# HTTPS, as on the box: the certificate is made in $dir/agent-tls at the first start.
"$bin/aergo-agent" --node http://127.0.0.1:7845 --listen 127.0.0.1:7850 --token-file "$dir/agent.token" \
  --spool "$dir/agent-spool" --audit "$dir/agent-audit" --key-file "$dir/node.key" --data-dir "$dir" \
  --tls-cert "$dir/agent-tls/cert.pem" --tls-key "$dir/agent-tls/key.pem" >/dev/null 2>>"$dir/agent.log" &
agent=$!
wait $node
