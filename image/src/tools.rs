//! The distribution's tools and packages the offline build uses: host tools are installed with apt-get
//! when missing; the kernel and BusyBox are downloaded as packages and unpacked into the cache (never
//! installed on the build machine).

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Host programs and the Debian packages that provide them.
const HOST_TOOLS: [(&str, &str); 19] = [
    ("sfdisk", "fdisk"),
    ("partx", "util-linux"),
    ("resize2fs", "e2fsprogs"),
    ("dropbear", "dropbear-bin"),
    ("nft", "nftables"),
    ("dbus-daemon", "dbus-daemon"),
    ("openssl", "openssl"),
    ("genimage", "genimage"),
    ("mcopy", "mtools"),
    ("mkfs.vfat", "dosfstools"),
    ("mke2fs", "e2fsprogs"),
    ("mksquashfs", "squashfs-tools"),
    ("grub-mkimage", "grub-common"),
    ("grub-editenv", "grub-common"),
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-img", "qemu-utils"),
    ("cpio", "cpio"),
    ("strip", "binutils"),
    ("rauc", "rauc"),
];

/// Files from packages that are not programs.
const HOST_FILES: [(&str, &str); 2] =
    [("/usr/lib/grub/x86_64-efi/linux.mod", "grub-efi-amd64-bin"), ("/usr/share/ovmf/OVMF.fd", "ovmf")];

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(program).is_file()
        || Path::new("/sbin").join(program).is_file()
}

/// Runs a command, failing with its output when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("cannot run {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Serializes the package work of builds running at the same time (the tests build two images
/// at once): apt-get fails at once, rather than waits, when another apt-get holds dpkg's or the
/// package lists' lock, and two builds unpacking into one cache would race. Held until dropped.
fn package_lock() -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("cannot lock {}: {e}", path.display()))
}

fn missing_host_packages() -> Vec<&'static str> {
    let mut missing: Vec<&str> =
        HOST_TOOLS.iter().filter(|(p, _)| !on_path(p)).map(|(_, pkg)| *pkg).collect();
    missing.extend(HOST_FILES.iter().filter(|(f, _)| !Path::new(f).exists()).map(|(_, pkg)| *pkg));
    missing.sort();
    missing.dedup();
    missing
}

/// Installs the host tools that are missing (apt-get, as root).
pub fn ensure_host_tools() -> anyhow::Result<()> {
    if missing_host_packages().is_empty() {
        return Ok(());
    }
    let _lock = package_lock()?;
    // Another build may have installed them while this one waited for the lock.
    let missing = missing_host_packages();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing {}", missing.join(" "));
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(())
}

/// The cache of downloaded packages and unpacked trees.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
    });
    base.join("aergo-os/debs")
}

/// Downloads `package` (once) and unpacks it into the cache; returns the unpacked tree.
pub fn unpacked(package: &str) -> anyhow::Result<PathBuf> {
    let cache = cache_dir();
    let tree = cache.join(format!("{package}.tree"));
    if tree.join(".done").exists() {
        return Ok(tree);
    }
    let _lock = package_lock()?;
    if tree.join(".done").exists() {
        return Ok(tree);
    }
    // apt-get download drops privileges to _apt for the download: let it write here.
    let _ = std::fs::set_permissions(&cache, std::os::unix::fs::PermissionsExt::from_mode(0o777));
    let download = || run(Command::new("apt-get").args(["download", "-q", package]).current_dir(&cache));
    if download().is_err() {
        run(Command::new("apt-get").arg("update").arg("-qq"))?;
        download()?;
    }
    let deb = std::fs::read_dir(&cache)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .max()
        .with_context(|| format!("apt-get download {package} left no .deb in {}", cache.display()))?;
    if tree.exists() {
        std::fs::remove_dir_all(&tree)?;
    }
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
    std::fs::write(tree.join(".done"), deb.display().to_string())?;
    Ok(tree)
}

/// The kernel package the distribution's `linux-image-amd64` currently depends on.
pub fn kernel_package() -> anyhow::Result<String> {
    let mut deps = run(Command::new("apt-cache").args(["depends", "linux-image-amd64"])).unwrap_or_default();
    if !deps.contains("Depends: linux-image-") {
        let _lock = package_lock()?;
        run(Command::new("apt-get").arg("update").arg("-qq"))?;
        deps = run(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
    }
    deps.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && !p.contains('<'))
        .map(str::to_string)
        .context("apt-cache depends linux-image-amd64 names no kernel package (run apt-get update)")
}
