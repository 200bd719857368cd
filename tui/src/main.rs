//! `aergo-console`: the operator console on the box's screen.
//!
//! This crate is part of the workspace so that it builds and its dependencies are fixed early; its
//! behaviour arrives with issue #7. Until then the binary says so and exits with status 2, so that
//! nothing mistakes it for a working aergo-console.

fn main() {
    if std::env::args().any(|a| a == "--version" || a == "-V") {
        println!("aergo-console {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    eprintln!(
        "aergo-console {}: the operator console on the box's screen is not part of this build yet (issue #7)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
