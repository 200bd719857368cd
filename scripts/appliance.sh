#!/usr/bin/env bash
# Builds the AERGO OS image offline (the distribution's kernel and BusyBox, this workspace's binaries)
# and boots it in QEMU with the serial console on this terminal: the operator console appears there
# once the box is up (Ctrl-A X quits QEMU). The image is provisioned as a local devnet producer;
# RPC and the agent are forwarded to the loopback ports printed first. Put your own provision.toml in
# $AERGO_IMAGE_DIR (default ~/.cache/aergo-os/image) to change that. Every run builds a fresh disk.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
. scripts/env.sh
cargo build --release --bins
bin="$CARGO_TARGET_DIR/release"
out="${AERGO_IMAGE_DIR:-$HOME/.cache/aergo-os/image}"
mkdir -p "$out"
if [ ! -f "$out/provision.toml" ]; then
  token="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  cat > "$out/provision.toml" <<EOP
hostname = "aergo-1"
[network]
dhcp = true
[node]
role = "producer"
chain = "devnet"
[agent]
token = "$token"
EOP
  chmod 0600 "$out/provision.toml"
fi
"$bin/aergo-image" build --out "$out" --serial-console --provision "$out/provision.toml"
echo "agent token: $(sed -n 's/^token = "\(.*\)"/\1/p' "$out/provision.toml")"
exec "$bin/aergo-image" run --image "$out/aergo-os-x86_64.qcow2"
