#!/bin/sh
# Buildroot post-image: the boot partition's GRUB config and environment, the root slot with the
# kernel inside (Buildroot installs bzImage into /boot; GRUB loads /boot/vmlinuz), and the disk from
# the shared genimage.cfg — the same layout `aergo-image build` makes offline.
set -eu
board="$(cd "$(dirname "$0")" && pwd)"
efi="$BINARIES_DIR/efi-part/EFI/BOOT"
mkdir -p "$efi"
cp "$board/grub.cfg" "$efi/grub.cfg"
grub-editenv "$efi/grubenv" create
grub-editenv "$efi/grubenv" set ORDER="A B" A_OK=1 A_TRY=0 B_OK=0 B_TRY=0 EXTRA_ARGS=
support/scripts/genimage.sh -c "$board/genimage.cfg"
