#!/usr/bin/env bash
# Installs the system packages the build and tests need (Debian), only when missing.
# librocksdb-dev: the node links the distribution's RocksDB instead of compiling it (about 20 minutes).
# libclang-dev, clang: bindgen, for the RocksDB bindings. tmux: the console's end-to-end tests.
# prometheus: a real Prometheus and promtool for the agent's tests.
# With "test" (scripts/test.sh), also what only the tests need: chromium, for the browser test of the
# JavaScript client (clients/js drives it with playwright-core), and Node.js 20 or later with npm,
# which builds and tests clients/js (the machine's own when it has one, else Debian's).
set -euo pipefail
packages=(librocksdb-dev libclang-dev clang pkg-config tmux iproute2 prometheus)
tests="${1:-}"
if [ "$tests" = test ]; then
  packages+=(chromium)
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    packages+=(nodejs npm)
  fi
fi
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
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$tests" = test ] && [ "$major" -lt 20 ]; then
  echo "clients/js needs Node.js 20 or later; this machine has $(node --version 2>/dev/null || echo none)" >&2
  exit 1
fi
