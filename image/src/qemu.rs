//! `aergo-image run`: boots the image in QEMU under UEFI (OVMF), with KVM when `/dev/kvm` is usable,
//! the serial console on the terminal (or in a file when detached), and the node's RPC and the agent
//! forwarded to loopback ports. The guest's network is QEMU's user network with `restrict=on`: the
//! guest reaches nothing outside QEMU; only the forwarded ports come in. With a tap device instead
//! (`--tap`, run inside a network namespace the caller made: the fleet tests), the box is on that
//! L2 network only and nothing is forwarded.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

pub struct RunOptions {
    pub image: PathBuf,
    pub rpc_port: u16,
    pub agent_port: u16,
    /// Loopback port for the box's SSH (22).
    pub ssh_port: u16,
    pub memory_mib: u32,
    /// Detach: serial output to this file, pid to `pidfile`.
    pub detach: Option<(PathBuf, PathBuf)>,
    /// A QEMU monitor on this UNIX socket (reset, quit) when detached.
    pub monitor: Option<PathBuf>,
    /// Extra disks, read-only (update media).
    pub drives: Vec<PathBuf>,
    /// The box's NIC on this tap device with this MAC instead of the user network.
    pub tap: Option<Tap>,
    /// Virtual CPUs.
    pub smp: u32,
    /// The RTC's start (`-rtc base=`: `utc`, or `2026-12-05T07:00:00` for a box whose clock is off).
    pub rtc_base: Option<String>,
    /// The files of this directory served to the guest at `http://10.0.2.100/NAME` (user network
    /// only): each connection the guest opens runs `aergo-image http-stdio` on it, so nothing
    /// listens on the host and `restrict=on` still keeps the guest from everything else.
    pub guest_http: Option<PathBuf>,
}

/// Where a guest on the user network reaches `--guest-http`.
pub const GUEST_HTTP: &str = "http://10.0.2.100";

/// A tap NIC: the device's name (it must exist, up, in QEMU's network namespace) and the MAC.
pub struct Tap {
    pub name: String,
    pub mac: String,
}

/// A free loopback TCP port (bound and released; the caller uses it right away).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Whether KVM can boot firmware here: `/dev/kvm` opens and a short QEMU run under OVMF neither
/// crashes nor reports a KVM error (some hosts expose a KVM that cannot run real-mode firmware, e.g.
/// a paravirtual one). `AERGO_QEMU_ACCEL=kvm|tcg` decides without probing.
pub fn kvm_usable() -> bool {
    match std::env::var("AERGO_QEMU_ACCEL").as_deref() {
        Ok("kvm") => return true,
        Ok("tcg") => return false,
        _ => {}
    }
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return false;
    }
    let probe = Command::new("timeout")
        .args(["4", "qemu-system-x86_64", "-machine", "q35,accel=kvm", "-cpu", "host", "-m", "128"])
        .args(["-display", "none", "-serial", "none", "-monitor", "none", "-bios", OVMF])
        .output();
    match probe {
        // Still running after 4 s (timeout's 124) and silent: KVM works.
        Ok(out) => out.status.code() == Some(124) && !String::from_utf8_lossy(&out.stderr).contains("KVM"),
        Err(_) => false,
    }
}

pub fn command(o: &RunOptions) -> anyhow::Result<Command> {
    anyhow::ensure!(o.image.exists(), "{} does not exist: run `aergo-image build` first", o.image.display());
    anyhow::ensure!(Path::new(OVMF).exists(), "{OVMF} is missing (apt-get install ovmf)");
    let format = if o.image.extension().is_some_and(|e| e == "qcow2") { "qcow2" } else { "raw" };
    let mut cmd = Command::new("qemu-system-x86_64");
    if kvm_usable() {
        cmd.args(["-machine", "q35,accel=kvm", "-cpu", "host"]);
    } else {
        eprintln!("KVM is not usable here: software emulation (slower)");
        cmd.args(["-machine", "q35,accel=tcg", "-cpu", "max"]);
    }
    cmd.args(["-smp", &o.smp.max(1).to_string(), "-m", &o.memory_mib.to_string(), "-bios", OVMF]);
    if let Some(base) = &o.rtc_base {
        cmd.arg("-rtc").arg(format!("base={base}"));
    }
    cmd.arg("-drive").arg(format!("file={},if=virtio,format={format},cache=unsafe", o.image.display()));
    // Extra disks are USB sticks on an xHCI controller (`usb0`, `usb1`, …), so that a test can swap
    // them through the monitor (device_del / drive_add / device_add) as a person swaps sticks.
    cmd.args(["-device", "qemu-xhci,id=xhci"]);
    for (i, d) in o.drives.iter().enumerate() {
        cmd.arg("-drive").arg(format!("if=none,id=stick{i},format=raw,readonly=on,file={}", d.display()));
        cmd.arg("-device").arg(format!("usb-storage,bus=xhci.0,drive=stick{i},id=usb{i}"));
    }
    match &o.tap {
        Some(tap) => {
            anyhow::ensure!(
                tap.name.len() <= 15 && tap.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "{:?} is not a network device name",
                tap.name
            );
            cmd.arg("-netdev").arg(format!("tap,id=net0,ifname={},script=no,downscript=no", tap.name));
            cmd.arg("-device").arg(format!("virtio-net-pci,netdev=net0,mac={}", tap.mac));
        }
        None => {
            let mut netdev = format!(
                "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{}-:7845,hostfwd=tcp:127.0.0.1:{}-:7850,hostfwd=tcp:127.0.0.1:{}-:22",
                o.rpc_port, o.agent_port, o.ssh_port
            );
            if let Some(dir) = &o.guest_http {
                let exe = std::env::current_exe().context("this program's path")?;
                let (exe, dir) = (exe.display().to_string(), dir.display().to_string());
                anyhow::ensure!(
                    !exe.contains([',', ' ']) && !dir.contains([',', ' ']),
                    "--guest-http: the paths of this program and of {dir} must hold no comma or space"
                );
                netdev.push_str(&format!(",guestfwd=tcp:10.0.2.100:80-cmd:{exe} http-stdio --dir {dir}"));
            }
            cmd.arg("-netdev").arg(netdev);
            cmd.args(["-device", "virtio-net-pci,netdev=net0"]);
        }
    }
    cmd.args(["-device", "i6300esb", "-device", "virtio-rng-pci", "-display", "none", "-vga", "std"]);
    match &o.detach {
        Some((serial, pidfile)) => {
            cmd.arg("-serial").arg(format!("file:{}", serial.display()));
            cmd.arg("-pidfile").arg(pidfile).arg("-daemonize");
            if let Some(m) = &o.monitor {
                cmd.arg("-monitor").arg(format!("unix:{},server,nowait", m.display()));
            }
        }
        None => {
            cmd.args(["-serial", "mon:stdio"]);
        }
    }
    Ok(cmd)
}

pub fn run(o: &RunOptions) -> anyhow::Result<()> {
    let mut cmd = command(o)?;
    if o.tap.is_none() {
        println!("AERGO_RPC=http://127.0.0.1:{}", o.rpc_port);
        println!("AERGO_AGENT=https://127.0.0.1:{}", o.agent_port);
        println!("AERGO_SSH_PORT={}", o.ssh_port);
    }
    let status = cmd.status().context("cannot start qemu-system-x86_64")?;
    anyhow::ensure!(status.success(), "qemu exited with {status}");
    if let Some((serial, pidfile)) = &o.detach {
        let pid = std::fs::read_to_string(pidfile).unwrap_or_default();
        println!("QEMU_PID={}", pid.trim());
        println!("SERIAL_LOG={}", serial.display());
    }
    Ok(())
}
