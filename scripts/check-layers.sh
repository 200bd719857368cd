#!/usr/bin/env bash
# The crates' layering, checked on Cargo's own dependency graph (normal dependencies only: what a
# program links). Fails, naming the crate and the dependency, when
#  - the agent, the console or one of the interface crates they build on reaches a heavy engine
#    (RocksDB, libp2p, cranelift, SQLite, the SQL parser);
#  - the node's library links SQLite or HDR histograms (the benchmarks' and tests' business);
#  - a crate depends on a workspace crate above its layer.
set -euo pipefail
cd "$(dirname "$0")/.."
failed=0

deps_of() { # the crates in the normal dependency tree of package $1, one name per line
  cargo tree --locked -e normal -p "$1" --prefix none --format '{p}' | awk '{print $1}' | sort -u
}

# forbid PATTERN WHY CRATE...: none of the crates may have a dependency matching PATTERN.
forbid() {
  local pattern=$1 why=$2 crate found
  shift 2
  for crate in "$@"; do
    found=$(deps_of "$crate" | grep -E "$pattern" || true)
    if [ -n "$found" ]; then
      echo "check-layers: $crate depends on $(echo $found | tr ' ' ','): $why" >&2
      failed=1
    fi
  done
}

forbid '^(librocksdb-sys|rocksdb|libp2p|cranelift-codegen|libsqlite3-sys|rusqlite|sqlparser)$' \
  "the programs beside the node and the interface crates they use link no engine" \
  aergo-primitives aergo-api aergo-config aergo-protocol aergo-telemetry aergo-settings aergo-agent aergo-console
forbid '^(libsqlite3-sys|rusqlite|hdrhistogram)$' "SQLite and HDR histograms are for benchmarks and tests" \
  aergo-node aergo-sql aergo-storage aergo-exec aergo-mempool aergo-chain aergo-net aergo-consensus aergo-rpc aergo-cli
forbid '^libp2p$' "only the network layer (aergo-net) and the layers above it speak to peers" \
  aergo-storage aergo-exec aergo-mempool aergo-chain
forbid '^(librocksdb-sys|rocksdb|libp2p)$' "the SQL engine runs over its Host trait" aergo-sql
forbid '^libp2p$' "Raft's messages are carried by its caller" aergo-raft

# Each crate and the workspace crates it may use (directly or not); anything else is upward.
declare -A allowed=(
  [aergo-primitives]=""
  [aergo-api]="aergo-primitives"
  [aergo-config]="aergo-primitives"
  [aergo-telemetry]="aergo-api aergo-primitives"
  [aergo-agent]="aergo-api aergo-config aergo-primitives aergo-settings aergo-telemetry"
  [aergo-settings]="aergo-config aergo-primitives"
  [aergo-console]="aergo-api aergo-config aergo-primitives aergo-settings aergo-telemetry"
  [aergo-protocol]="aergo-api aergo-primitives"
  [aergo-sql]="aergo-primitives"
  [aergo-storage]="aergo-config aergo-primitives"
  [aergo-raft]=""
  [aergo-exec]="aergo-config aergo-primitives aergo-sql aergo-storage"
  [aergo-mempool]="aergo-api aergo-config aergo-exec aergo-primitives aergo-sql aergo-storage"
  [aergo-chain]="aergo-protocol aergo-api aergo-config aergo-exec aergo-mempool aergo-primitives aergo-sql aergo-storage"
  [aergo-net]="aergo-protocol aergo-api aergo-chain aergo-config aergo-exec aergo-mempool aergo-primitives aergo-raft aergo-sql aergo-storage"
  [aergo-consensus]="aergo-protocol aergo-api aergo-chain aergo-config aergo-exec aergo-mempool aergo-net aergo-primitives aergo-raft aergo-sql aergo-storage"
  [aergo-rpc]="aergo-protocol aergo-api aergo-chain aergo-config aergo-exec aergo-mempool aergo-net aergo-primitives aergo-raft aergo-sql aergo-storage"
  [aergo-node]="aergo-protocol aergo-api aergo-chain aergo-config aergo-consensus aergo-exec aergo-mempool aergo-net aergo-primitives aergo-raft aergo-rpc aergo-sql aergo-storage"
  [aergo-cli]="aergo-api aergo-primitives aergo-sql"
)
for crate in "${!allowed[@]}"; do
  for dep in $(deps_of "$crate" | grep -E '^aergo-' | grep -vx "$crate" || true); do
    case " ${allowed[$crate]} " in
      *" $dep "*) ;;
      *) echo "check-layers: $crate depends on $dep, which is not below it" >&2; failed=1 ;;
    esac
  done
done

if [ "$failed" -ne 0 ]; then
  exit 1
fi
echo "check-layers: the agent, the console and the interface crates link no engine; every crate depends downward only"
