//! `aergo-image`: the AERGO OS appliance image, built offline and booted in QEMU.
//!
//! - [`tools`]: the distribution's host tools (installed when missing) and packages (kernel, BusyBox:
//!   downloaded and unpacked into `~/.cache/aergo-os/debs`, never installed on the build machine).
//! - [`assemble`]: stages the root file system (BusyBox, our binaries and their libraries, kernel
//!   modules, the shared `buildroot/board/aergo` overlay and post-build script), squashes it, makes the
//!   GRUB EFI image and its environment, and lays out the disk with the shared `genimage.cfg`.
//! - [`bundle`]: signed RAUC bundles of a root slot and the update media the box installs them from.
//! - [`check`]: the boot, reset and update checks of `aergo-image test` and the test suite.
//! - [`fleet`]: boxes on one virtual network in a namespace the check makes: the fleet check
//!   and the boot-to-first-final-block benchmark.
//! - [`qemu`]: boots it under OVMF with KVM, forwarding RPC and the agent to loopback ports.
//!
//! The layout and boot flow are in `docs/appliance.md`.

pub mod assemble;
pub mod bundle;
pub mod check;
pub mod fleet;
pub mod qemu;
pub mod tools;
