#!/usr/bin/env bash
# Merges every fragment here onto x86_64_defconfig of the distribution's kernel source (the
# linux-source package) with merge_config.sh, runs olddefconfig, and fails naming every requested
# option that did not survive (a missing dependency, a typo, an option that no longer exists).
#
#   kernel-config/check.sh [--keep DIR] [EXTRA.config ...]
#
# The source is unpacked once into ~/.cache/aergo-os/linux (LINUX_SRC overrides the tree). The final
# .config is left in DIR with --keep (the Buildroot defconfig uses the same fragments).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
keep=""
if [ "${1:-}" = "--keep" ]; then keep="${2:?--keep needs a directory}"; shift 2; fi
extra=("$@")

need=()
for tool in make gcc flex bison bc; do command -v "$tool" >/dev/null || need+=("$tool"); done
[ -f /usr/src/linux-source-6.1.tar.xz ] || [ -n "${LINUX_SRC:-}" ] || need+=(linux-source)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # The image builds of the same test run use apt too: take their lock (aergo-image's
  # package lock), so that two apt-gets never meet (apt fails at once on a held lists lock).
  lockdir="${XDG_CACHE_HOME:-$HOME/.cache}/aergo-os/debs"
  mkdir -p "$lockdir"
  (
    flock -w 900 9 || { echo "check.sh: waited 15 min for $lockdir/.lock" >&2; exit 1; }
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
      make gcc libc6-dev flex bison bc linux-source >/dev/null
  ) 9> "$lockdir/.lock"
fi

src="${LINUX_SRC:-}"
if [ -z "$src" ]; then
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/aergo-os/linux"
  tarball="$(ls /usr/src/linux-source-*.tar.xz | sort -V | tail -1)"
  name="$(basename "$tarball" .tar.xz)"
  src="$cache/$name"
  if [ ! -f "$src/.unpacked" ]; then
    echo "unpacking $tarball into $cache (once)"
    rm -rf "$src"; mkdir -p "$cache"
    tar -xJf "$tarball" -C "$cache"
    touch "$src/.unpacked"
  fi
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
fragments=("$here"/*.config "${extra[@]}")
make -s -C "$src" O="$out" x86_64_defconfig >/dev/null
"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "${fragments[@]}" >"$out/merge.log"
make -s -C "$src" O="$out" olddefconfig >>"$out/merge.log" 2>&1

failed=0
requested=0
for fragment in "${fragments[@]}"; do
  while IFS= read -r line; do
    case "$line" in
      CONFIG_*=*) opt="${line%%=*}"; want="$line" ;;
      "# CONFIG_"*" is not set") opt="${line#\# }"; opt="${opt%% *}"; want="$line" ;;
      *) continue ;;
    esac
    requested=$((requested + 1))
    got="$(grep -E "^(${opt}=|# ${opt} is not set)" "$out/.config" || true)"
    if [ -z "$got" ] && [[ "$want" == "# "* ]]; then continue; fi
    if [ "$got" != "$want" ]; then
      echo "$(basename "$fragment"): requested '$want', got '${got:-<absent>}'"
      failed=$((failed + 1))
    fi
  done < "$fragment"
done
version="$(make -s -C "$src" kernelversion)"
if [ -n "$keep" ]; then mkdir -p "$keep"; cp "$out/.config" "$keep/.config"; fi
if [ "$failed" -gt 0 ]; then
  echo "kernel-config: $failed of $requested requested options did not survive on Linux $version"
  exit 1
fi
echo "kernel-config: all $requested requested options survived merge_config.sh + olddefconfig on Linux $version (${#fragments[@]} fragments)"
