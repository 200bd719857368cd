//! `aergo-image`: builds the AERGO OS appliance image offline and boots it in QEMU.
//! See `docs/appliance.md` and the library's modules.

use aergo_image::{assemble, qemu};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "Builds the AERGO OS image offline and boots it in QEMU")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Builds aergo-os-x86_64.img (raw, UEFI-bootable) and .qcow2 from the distribution's kernel and
    /// BusyBox and this workspace's binaries.
    Build {
        /// Output directory.
        #[arg(long, default_value = "target/image")]
        out: PathBuf,
        /// A provision.toml for the boot partition (applied once at first boot).
        #[arg(long)]
        provision: Option<PathBuf>,
        /// Where the workspace binaries are (default: beside this program).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Run the console on the serial port too (kernel argument aergo.console=ttyS0).
        #[arg(long)]
        serial_console: bool,
        /// The release name in /etc/os-release.
        #[arg(long, default_value = concat!(env!("CARGO_PKG_VERSION"), "-dev"))]
        os_version: String,
    },
    /// Boots the image in QEMU (KVM when usable) with RPC and the agent on loopback ports it prints.
    Run {
        #[arg(long, default_value = "target/image/aergo-os-x86_64.qcow2")]
        image: PathBuf,
        /// Loopback port for the node's RPC (default: a free one).
        #[arg(long)]
        rpc_port: Option<u16>,
        /// Loopback port for the agent (default: a free one).
        #[arg(long)]
        agent_port: Option<u16>,
        #[arg(long, default_value_t = 2048)]
        memory_mib: u32,
        /// Run in the background: serial output to --serial-log, pid to --pidfile.
        #[arg(long)]
        detach: bool,
        #[arg(long, default_value = "target/image/serial.log")]
        serial_log: PathBuf,
        #[arg(long, default_value = "target/image/qemu.pid")]
        pidfile: PathBuf,
        /// A QEMU monitor socket (detached runs).
        #[arg(long)]
        monitor: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

fn workspace() -> anyhow::Result<PathBuf> {
    // Run from anywhere inside the workspace: look upwards for buildroot/board/aergo.
    let mut dir = std::env::current_dir()?;
    loop {
        if dir.join("buildroot/board/aergo/genimage.cfg").exists() {
            return Ok(dir);
        }
        if !dir.pop() {
            anyhow::bail!("run aergo-image inside the AERGO OS workspace (buildroot/board/aergo not found)");
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Build { out, provision, bin_dir, serial_console, os_version } => {
            let exe_dir = std::env::current_exe()?.parent().map(PathBuf::from).unwrap_or_default();
            let started = std::time::Instant::now();
            let built = assemble::build(&assemble::BuildOptions {
                workspace: workspace()?,
                bin_dir: bin_dir.unwrap_or(exe_dir),
                out,
                provision,
                extra_args: if serial_console { "aergo.console=ttyS0".into() } else { String::new() },
                version: os_version,
            })?;
            let size = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) >> 20;
            println!("IMAGE={}", built.raw.display());
            println!("QCOW2={}", built.qcow2.display());
            println!(
                "built in {:.1} s: raw {} MiB, qcow2 {} MiB, root slot {} MiB",
                started.elapsed().as_secs_f64(),
                size(&built.raw),
                size(&built.qcow2),
                size(&built.rootfs)
            );
            Ok(())
        }
        Cmd::Run { image, rpc_port, agent_port, memory_mib, detach, serial_log, pidfile, monitor } => {
            let rpc_port = match rpc_port {
                Some(p) => p,
                None => qemu::free_port()?,
            };
            let agent_port = match agent_port {
                Some(p) => p,
                None => qemu::free_port()?,
            };
            qemu::run(&qemu::RunOptions {
                image,
                rpc_port,
                agent_port,
                memory_mib,
                detach: detach.then_some((serial_log, pidfile)),
                monitor,
            })
        }
    }
}
