//! A fleet of booted boxes on one virtual L2 network that the test makes (see
//! `aergo_image::fleet`, which `aergo-image test` runs too): three images flashed from one build,
//! each with its own provision.toml, genesis and producer keystore, and a producer process on the
//! same network; clocks synchronized by the test's NTP server; peers, finality and a transfer
//! everywhere; Prometheus scraping the agents; a power cut; a full node that joins from a snapshot.
//! In a test binary of its own: it runs with no other QEMU on this machine's two cores.

use aergo_image::check::Env;
use aergo_tests::{binary, workspace};

#[test]
fn a_fleet_of_boxes_forms_a_network_keeps_finality_through_a_power_cut_and_a_new_box_joins(
) -> anyhow::Result<()> {
    aergo_image::fleet::fleet(&Env { workspace: workspace(), program: binary("aergo-image") })
}
