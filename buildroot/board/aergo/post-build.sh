#!/bin/sh
# Finishes a root file system for AERGO OS; run by Buildroot (BR2_ROOTFS_POST_BUILD_SCRIPT, $1 =
# TARGET_DIR) and by `aergo-image build` on its staging tree, so both images have the same layout:
# persistent paths as symlinks into /data, mount points, /etc/os-release, and the initramfs in /boot.
# AERGO_VERSION (default: "dev") names the release.
set -eu
t="$1"
board="$(cd "$(dirname "$0")" && pwd)"
version="${AERGO_VERSION:-dev}"

for p in etc/aergo etc/hostname etc/hosts etc/network/interfaces etc/resolv.conf etc/dropbear var/lib/aergo var/log root; do
    rm -rf "${t:?}/$p"
    mkdir -p "$(dirname "$t/$p")"
    ln -s "/data/$p" "$t/$p"
done
for d in data boot run tmp proc sys dev media mnt var; do mkdir -p "$t/$d"; done
rm -rf "$t/var/run" "$t/var/tmp"
ln -s ../run "$t/var/run"
ln -s ../tmp "$t/var/tmp"
chmod 1777 "$t/tmp"
# Buildroot installs the kernel as /boot/bzImage; GRUB loads /boot/vmlinuz from the slot.
if [ -f "$t/boot/bzImage" ]; then ln -sf bzImage "$t/boot/vmlinuz"; fi

cat > "$t/etc/os-release" <<EOR
NAME="AERGO OS"
ID=aergo-os
VERSION_ID=$version
PRETTY_NAME="AERGO OS $version"
HOME_URL="https://example.invalid/aergo-os"
EOR

# The initramfs: BusyBox from the target, the init script, and the modules listed in
# $t/lib/modules/initramfs.list (none when the kernel has the drivers built in).
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/proc" "$work/sys" "$work/dev" "$work/newroot" "$work/modules"
cp "$t/bin/busybox" "$work/bin/busybox"
for applet in sh mount umount insmod sed grep cat sleep switch_root mkdir echo seq; do
    ln -sf busybox "$work/bin/$applet"
done
cp "$board/initramfs-init" "$work/init"
chmod 0755 "$work/init"
if [ -f "$t/lib/modules/initramfs.list" ]; then
    : > "$work/modules.list"
    while read -r rel; do
        cp "$t/lib/modules/$rel" "$work/modules/"
        basename "$rel" >> "$work/modules.list"
    done < "$t/lib/modules/initramfs.list"
fi
mkdir -p "$t/boot"
(cd "$work" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -9n) > "$t/boot/initrd.img"
