#!/usr/bin/env bash
# Installs the system packages the build and tests need (Debian), only when missing.
# librocksdb-dev: the node links the distribution's RocksDB instead of compiling it (about 20 minutes).
# libclang-dev, clang: bindgen, for the RocksDB bindings. tmux: the console's end-to-end tests.
# prometheus: a real Prometheus and promtool for the agent's tests.
set -euo pipefail
packages=(librocksdb-dev libclang-dev clang pkg-config tmux iproute2 prometheus)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
