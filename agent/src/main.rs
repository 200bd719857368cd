//! `aergo-agent`: the telemetry agent Horde polls (resources, chain, health).
//!
//! This crate is part of the workspace so that it builds and its dependencies are fixed early; its
//! behaviour arrives with issue #6. Until then the binary says so and exits with status 2, so that
//! nothing mistakes it for a working aergo-agent.

fn main() {
    if std::env::args().any(|a| a == "--version" || a == "-V") {
        println!("aergo-agent {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    eprintln!("aergo-agent {}: the telemetry agent Horde polls (resources, chain, health) is not part of this build yet (issue #6)", env!("CARGO_PKG_VERSION"));
    std::process::exit(2);
}
