//! The appliance from the outside (see `aergo_image::check`, which `aergo-image test` runs too): the
//! kernel-config check; the offline image booted in QEMU — provisioning, agent, RPC, SSH, the console
//! on the serial port, a hard reset; and updates — a signed bundle, a tampered one, a rollback.

use aergo_image::check::{self, Env};
use aergo_tests::{binary, workspace};

fn env() -> Env {
    Env { workspace: workspace(), program: binary("aergo-image") }
}

#[test]
fn kernel_config_fragments_survive_and_a_bogus_one_is_named() -> anyhow::Result<()> {
    check::kernel_config(&env())
}

#[test]
fn image_boots_provisions_and_survives_a_hard_reset() -> anyhow::Result<()> {
    check::boot_and_hard_reset(&env())
}

#[test]
fn signed_update_boots_the_other_slot_and_a_bad_one_rolls_back() -> anyhow::Result<()> {
    check::update_tamper_rollback(&env())
}
