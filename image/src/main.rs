//! `aergo-image`: the appliance image builder and QEMU runner.
//!
//! This crate is part of the workspace so that it builds and its dependencies are fixed early; its
//! behaviour arrives with issue #8. Until then the binary says so and exits with status 2, so that
//! nothing mistakes it for a working aergo-image.

fn main() {
    if std::env::args().any(|a| a == "--version" || a == "-V") {
        println!("aergo-image {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    eprintln!("aergo-image {}: the appliance image builder and QEMU runner is not part of this build yet (issue #8)", env!("CARGO_PKG_VERSION"));
    std::process::exit(2);
}
