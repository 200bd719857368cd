//! `aergo-image`: builds the AERGO OS appliance image offline and boots it in QEMU.
//! See `docs/appliance.md` and the library's modules.

use aergo_image::{assemble, bundle, check, qemu};
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
        /// More kernel arguments (kept in grubenv), e.g. aergo.health_deadline=120.
        #[arg(long, default_value = "")]
        kernel_args: String,
        /// The release name in /etc/os-release.
        #[arg(long, default_value = concat!(env!("CARGO_PKG_VERSION"), "-dev"))]
        os_version: String,
        /// Certificate RAUC accepts bundles from (default: the development one, made once).
        #[arg(long)]
        keyring: Option<PathBuf>,
        /// Take an aergo-node built with the `test-hooks` feature (refused otherwise): test images.
        #[arg(long)]
        allow_test_hooks: bool,
    },
    /// Signs a root slot image into a RAUC bundle and writes update media (FAT, label AERGOUPDATE)
    /// that the box installs from.
    Bundle {
        /// The root slot image (rootfs.squashfs of a build).
        #[arg(long, default_value = "target/image/rootfs.squashfs")]
        rootfs: PathBuf,
        /// Signing key and certificate (default: the development pair).
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        #[arg(long, default_value = concat!(env!("CARGO_PKG_VERSION"), "-dev"))]
        bundle_version: String,
        #[arg(long, default_value = "target/image")]
        out: PathBuf,
    },
    /// Runs the appliance checks: the kernel-config check, boot + hard reset, and signed update,
    /// tampered bundle and rollback — each in QEMU, through the forwarded ports only.
    Test,
    /// Boots a three-box network (and a producer process) on a virtual network and prints the time
    /// from power-on to each box's kernel, services, first peer and first final block.
    BenchBoot,
    /// Writes update media (FAT, label AERGOUPDATE) holding a bundle.
    Media {
        #[arg(long)]
        bundle: PathBuf,
        #[arg(long, default_value = "target/image/update-media.img")]
        out: PathBuf,
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
        /// Loopback port for the box's SSH (default: a free one).
        #[arg(long)]
        ssh_port: Option<u16>,
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
        /// An extra read-only disk, e.g. update media (repeatable).
        #[arg(long)]
        drive: Vec<PathBuf>,
        /// The box's NIC on this existing tap device (run inside the network namespace that holds
        /// it) instead of QEMU's user network; nothing is forwarded then.
        #[arg(long)]
        tap: Option<String>,
        /// The NIC's MAC address (with --tap).
        #[arg(long, default_value = "52:54:00:12:34:56", requires = "tap")]
        mac: String,
        #[arg(long, default_value_t = 2)]
        smp: u32,
        /// Where the box's RTC starts: `utc` (now), or a UTC time such as 2026-12-05T07:00:00.
        #[arg(long)]
        rtc_base: Option<String>,
        /// Serve this directory's files to the box at http://10.0.2.100/NAME (user network only).
        #[arg(long, conflicts_with = "tap")]
        guest_http: Option<PathBuf>,
    },
    /// Answers one HTTP GET on stdin/stdout from the files of --dir (what `run --guest-http` runs
    /// for each connection the box opens).
    #[command(hide = true)]
    HttpStdio {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Writes a provision.toml, and files it names (genesis, keystore, passphrase file), onto the
    /// boot partition of a built raw image (or a copy of it): one image flashed onto many boxes,
    /// each with its own provisioning.
    Provision {
        /// The raw image (aergo-os-x86_64.img of a build).
        #[arg(long)]
        image: PathBuf,
        /// Write into a sparse copy of the image here instead of into the image.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The provision.toml.
        #[arg(long)]
        provision: Option<PathBuf>,
        /// Another file for the boot partition, under its own name (repeatable).
        #[arg(long)]
        boot_file: Vec<PathBuf>,
    },
}

/// One appliance check of `aergo-image test`.
type Check = fn(&check::Env) -> anyhow::Result<()>;

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
        Cmd::Build {
            out,
            provision,
            bin_dir,
            serial_console,
            kernel_args,
            os_version,
            keyring,
            allow_test_hooks,
        } => {
            let keyring = match keyring {
                Some(k) => k,
                None => bundle::dev_keys()?.1,
            };
            let exe_dir = std::env::current_exe()?.parent().map(PathBuf::from).unwrap_or_default();
            let started = std::time::Instant::now();
            let built = assemble::build(&assemble::BuildOptions {
                workspace: workspace()?,
                bin_dir: bin_dir.unwrap_or(exe_dir),
                out,
                provision,
                extra_args: [if serial_console { "aergo.console=ttyS0" } else { "" }, kernel_args.as_str()]
                    .join(" ")
                    .trim()
                    .to_string(),
                version: os_version,
                keyring,
                allow_test_hooks,
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
        Cmd::Bundle { rootfs, key, cert, bundle_version, out } => {
            let (key, cert) = match (key, cert) {
                (Some(k), Some(c)) => (k, c),
                _ => bundle::dev_keys()?,
            };
            let (b, media) =
                bundle::bundle(&bundle::BundleOptions { rootfs, key, cert, version: bundle_version, out })?;
            println!("BUNDLE={}", b.display());
            println!("MEDIA={}", media.display());
            Ok(())
        }
        Cmd::Test => {
            let env = check::Env { workspace: workspace()?, program: std::env::current_exe()? };
            let checks: [(&str, Check); 4] = [
                ("kernel config fragments survive", check::kernel_config),
                ("image boots, is provisioned, survives a hard reset", check::boot_and_hard_reset),
                (
                    "signed update, tampered bundle refused, bad release rolled back",
                    check::update_tamper_rollback,
                ),
                ("a fleet of boxes on one network", aergo_image::fleet::fleet),
            ];
            let mut failed = 0;
            for (name, f) in checks {
                let started = std::time::Instant::now();
                match f(&env) {
                    Ok(()) => println!("ok      {name} ({:.0} s)", started.elapsed().as_secs_f64()),
                    Err(e) => {
                        failed += 1;
                        println!("FAILED  {name}: {e:#}");
                    }
                }
            }
            println!("{} passed, {failed} failed", checks.len() - failed);
            anyhow::ensure!(failed == 0, "{failed} appliance checks failed");
            Ok(())
        }
        Cmd::BenchBoot => {
            let env = check::Env { workspace: workspace()?, program: std::env::current_exe()? };
            let times = aergo_image::fleet::boot_benchmark(&env)?;
            println!(
                "seconds from power-on (QEMU {}, 1 vCPU and 1 GiB per box)",
                if qemu::kvm_usable() { "KVM" } else { "TCG" }
            );
            println!(
                "{:<6} {:>8} {:>16} {:>11} {:>17}",
                "box", "kernel", "system ready", "first peer", "first final block"
            );
            for t in &times {
                println!(
                    "{:<6} {:>8.1} {:>16.1} {:>11.1} {:>17.1}",
                    t.box_number, t.kernel, t.ready, t.peer, t.first_final
                );
            }
            Ok(())
        }
        Cmd::Media { bundle, out } => {
            bundle::write_media(&bundle, &out)?;
            println!("MEDIA={}", out.display());
            Ok(())
        }
        Cmd::Run {
            image,
            rpc_port,
            agent_port,
            ssh_port,
            memory_mib,
            detach,
            serial_log,
            pidfile,
            monitor,
            drive,
            tap,
            mac,
            smp,
            rtc_base,
            guest_http,
        } => {
            let rpc_port = match rpc_port {
                Some(p) => p,
                None => qemu::free_port()?,
            };
            let agent_port = match agent_port {
                Some(p) => p,
                None => qemu::free_port()?,
            };
            let ssh_port = match ssh_port {
                Some(p) => p,
                None => qemu::free_port()?,
            };
            qemu::run(&qemu::RunOptions {
                image,
                rpc_port,
                agent_port,
                ssh_port,
                memory_mib,
                detach: detach.then_some((serial_log, pidfile)),
                monitor,
                drives: drive,
                tap: tap.map(|name| qemu::Tap { name, mac }),
                smp,
                rtc_base,
                guest_http,
            })
        }
        Cmd::HttpStdio { dir } => {
            let mut io = check::Stdio;
            check::serve_request(&mut io, &dir)?;
            Ok(())
        }
        Cmd::Provision { image, out, provision, boot_file } => {
            let target = match out {
                Some(out) => {
                    assemble::sparse_copy(&image, &out)?;
                    out
                }
                None => image,
            };
            let mut files: Vec<(PathBuf, String)> = Vec::new();
            if let Some(p) = provision {
                files.push((p, "provision.toml".into()));
            }
            for f in boot_file {
                let name = f
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| anyhow::anyhow!("{} has no file name", f.display()))?
                    .to_string();
                files.push((f, name));
            }
            assemble::write_boot_files(&target, &files)?;
            println!("IMAGE={}", target.display());
            Ok(())
        }
    }
}
