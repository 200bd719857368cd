//! The distribution's tools and packages the offline build uses: host tools are installed with apt-get
//! when missing; the kernel and BusyBox are downloaded as packages and unpacked into the cache (never
//! installed on the build machine).

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Host programs the build and the checks run or copy into the image, and the Debian packages that
/// provide them. Every program this crate runs by name (`Command::new` of a string literal) and every entry of [`IMAGE_TOOLS`] is
/// here or in [`BASE_TOOLS`] (a test reads the sources), so that a fresh machine gets them all on
/// the first run.
const HOST_TOOLS: [(&str, &str); 26] = [
    ("sfdisk", "fdisk"),
    ("partx", "util-linux"),
    ("resize2fs", "e2fsprogs"),
    ("dumpe2fs", "e2fsprogs"),
    ("dropbear", "dropbear-bin"),
    ("nft", "nftables"),
    ("dbus-daemon", "dbus-daemon"),
    ("openssl", "openssl"),
    ("genimage", "genimage"),
    ("mcopy", "mtools"),
    ("mkfs.vfat", "dosfstools"),
    ("mke2fs", "e2fsprogs"),
    ("mksquashfs", "squashfs-tools"),
    ("unsquashfs", "squashfs-tools"),
    ("grub-mkimage", "grub-common"),
    ("grub-editenv", "grub-common"),
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-img", "qemu-utils"),
    ("cpio", "cpio"),
    ("strip", "binutils"),
    ("rauc", "rauc"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("timeout", "coreutils"),
    ("ip", "iproute2"),
    ("prometheus", "prometheus"),
];

/// Programs of the distribution's essential packages (on every Debian system, never installed).
pub const BASE_TOOLS: [&str; 6] = ["apt-cache", "apt-get", "cp", "dpkg-deb", "ldd", "sh"];

/// Host programs copied into the image's root file system (with the libraries they load).
pub const IMAGE_TOOLS: [&str; 10] = [
    "/usr/bin/rauc",
    "/usr/bin/grub-editenv",
    "/usr/bin/unsquashfs",
    "/usr/bin/dbus-daemon",
    "/usr/sbin/nft",
    "/usr/sbin/dropbear",
    "/usr/sbin/sfdisk",
    "/usr/bin/partx",
    "/usr/sbin/resize2fs",
    "/usr/sbin/dumpe2fs",
];

/// Files from packages that are not programs: GRUB's EFI modules, the firmware, and the libraries
/// of chrony (unpacked from its package into the image, with the libraries from this machine).
const HOST_FILES: [(&str, &str); 7] = [
    ("/usr/lib/grub/x86_64-efi/linux.mod", "grub-efi-amd64-bin"),
    ("/usr/share/ovmf/OVMF.fd", "ovmf"),
    ("/usr/lib/x86_64-linux-gnu/libgnutls.so.30", "libgnutls30"),
    ("/usr/lib/x86_64-linux-gnu/libedit.so.2", "libedit2"),
    ("/usr/lib/x86_64-linux-gnu/libnettle.so.8", "libnettle8"),
    ("/usr/lib/x86_64-linux-gnu/libseccomp.so.2", "libseccomp2"),
    ("/usr/lib/x86_64-linux-gnu/libcap.so.2", "libcap2"),
];

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

/// `apt-get update`, waiting (up to 10 minutes) while another program holds apt's lock: our
/// own builds take [`package_lock`] first, but the system's apt timers or an operator's apt do
/// not, and apt-get fails at once on a held lists lock.
fn apt_update() -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        match run(Command::new("apt-get").args(["-o", "DPkg::Lock::Timeout=300", "update", "-qq"])) {
            Ok(_) => return Ok(()),
            Err(e)
                if e.to_string().contains("Could not get lock") && std::time::Instant::now() < deadline =>
            {
                eprintln!("apt's lock is held by another program; waiting");
                std::thread::sleep(std::time::Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    eprintln!("installing {}", packages.join(" "));
    run(Command::new("apt-get")
        .args(["-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(())
}

/// Installs the host tools that are missing (apt-get, as root), and checks that they all are there
/// afterwards.
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
    apt_update()?;
    apt_install(&missing)?;
    // apt removes a package when that satisfies another's versioned dependencies: a newer
    // qemu-utils (from backports) goes when the distribution's qemu-system-x86 comes in, and
    // qemu-img with it. What went missing is installed once more, now in the matching version.
    let removed = missing_host_packages();
    if !removed.is_empty() {
        eprintln!("apt-get removed {} while installing the others", removed.join(" "));
        apt_install(&removed)?;
    }
    let left = missing_host_packages();
    if !left.is_empty() {
        bail!(
            "the host tools of {} are still missing after apt-get install: install them by hand",
            left.join(" ")
        );
    }
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
        apt_update()?;
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
        apt_update()?;
        deps = run(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
    }
    deps.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && !p.contains('<'))
        .map(str::to_string)
        .context("apt-cache depends linux-image-amd64 names no kernel package (run apt-get update)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every program this crate runs by name (`Command::new` of a string literal) or copies into the image is installed by
    /// [`ensure_host_tools`] or is part of every Debian system: a tool added without its package
    /// would otherwise fail only on a fresh machine, on a new user's first run.
    #[test]
    fn every_program_the_build_runs_is_in_the_install_list() {
        let dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("src");
        let mut programs = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for piece in text.split("Command::new(\"").skip(1) {
                programs.insert(piece.split('"').next().unwrap().to_string());
            }
        }
        assert!(programs.contains("qemu-img") && programs.len() > 10, "the scan found {programs:?}");
        programs.extend(IMAGE_TOOLS.iter().map(|p| p.rsplit('/').next().unwrap().to_string()));
        let known: Vec<&str> = HOST_TOOLS.iter().map(|(p, _)| *p).chain(BASE_TOOLS).collect();
        let unlisted: Vec<&String> = programs.iter().filter(|p| !known.contains(&p.as_str())).collect();
        assert!(unlisted.is_empty(), "not in HOST_TOOLS (with their package) nor BASE_TOOLS: {unlisted:?}");
    }
}
