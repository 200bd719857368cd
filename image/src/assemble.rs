//! `aergo-image build`: the offline image from the distribution's kernel and BusyBox, our binaries,
//! and the Buildroot tree's shared board files (overlay, post-build script, GRUB config, genimage
//! layout). See `docs/appliance.md`.

use crate::tools::{self, run};
use anyhow::{bail, Context};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Our programs in the image.
const BINARIES: [&str; 4] = ["aergo-node", "aergo", "aergo-agent", "aergo-console"];

/// Modules the initramfs loads to reach the root slot, dependencies first (resolved from modules.dep).
const INITRAMFS_MODULES: [&str; 9] = [
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "nvme",
    "ahci",
    "sd_mod",
    "squashfs",
    "ext4",
    "crc32c_generic",
];

/// Modules the running system may load (rcS, modprobe).
const ROOTFS_MODULES: [&str; 24] = [
    "xhci_pci",
    "usb_storage",
    "loop",
    "dm_mod",
    "virtio_net",
    "virtio_console",
    "virtio_rng",
    "e1000",
    "e1000e",
    "igb",
    "i6300esb",
    "softdog",
    "vfat",
    "nls_cp437",
    "nls_iso8859_1",
    "nls_ascii",
    "nf_tables",
    "nft_ct",
    "nft_reject_inet",
    "nf_conntrack",
    "nft_chain_nat",
    "dm_verity",
    "veth",
    "efivarfs",
];

pub struct BuildOptions {
    /// The workspace (for `buildroot/board/aergo`).
    pub workspace: PathBuf,
    /// Where our binaries are (a cargo target profile directory).
    pub bin_dir: PathBuf,
    pub out: PathBuf,
    /// Copied to the boot partition as `provision.toml`.
    pub provision: Option<PathBuf>,
    /// Extra kernel arguments kept in grubenv (`aergo.console=ttyS0`).
    pub extra_args: String,
    pub version: String,
    /// The certificate(s) RAUC accepts bundles from (`/etc/rauc/keyring.pem`).
    pub keyring: PathBuf,
    /// Accept an `aergo-node` built with the `test-hooks` feature (the test suite's images only).
    pub allow_test_hooks: bool,
}

/// What a node built with the `test-hooks` feature carries and a release node never does: the
/// equivocation switch's config key, the attack subcommand and the SQL engine switch.
const TEST_HOOK_MARKERS: [&str; 3] = ["equivocate_for_tests", "net-probe", "AERGO_SQL_ENGINE"];

/// The test-hook markers found in a program's bytes.
pub fn test_hooks_in(program: &[u8]) -> Vec<&'static str> {
    TEST_HOOK_MARKERS.into_iter().filter(|m| program.windows(m.len()).any(|w| w == m.as_bytes())).collect()
}

pub struct Built {
    pub raw: PathBuf,
    pub qcow2: PathBuf,
    pub rootfs: PathBuf,
}

fn board(o: &BuildOptions) -> PathBuf {
    o.workspace.join("buildroot/board/aergo")
}

/// A module's name as modprobe spells it.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.trim_end_matches(".ko").replace('-', "_")
}

/// `modules.dep` as name → (path, dependency paths).
fn modules_dep(moddir: &Path) -> anyhow::Result<HashMap<String, (String, Vec<String>)>> {
    let text = std::fs::read_to_string(moddir.join("modules.dep")).context("modules.dep")?;
    let mut map = HashMap::new();
    for line in text.lines() {
        let Some((path, deps)) = line.split_once(':') else { continue };
        map.insert(
            module_name(path),
            (path.to_string(), deps.split_whitespace().map(String::from).collect()),
        );
    }
    Ok(map)
}

/// The modules `names` need, dependencies before dependants.
fn closure(dep: &HashMap<String, (String, Vec<String>)>, names: &[&str]) -> anyhow::Result<Vec<String>> {
    fn visit(
        dep: &HashMap<String, (String, Vec<String>)>,
        path: &str,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        if !seen.insert(path.to_string()) {
            return;
        }
        if let Some((_, deps)) = dep.get(&module_name(path)) {
            for d in deps.iter().rev() {
                visit(dep, d, seen, out);
            }
        }
        out.push(path.to_string());
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for name in names {
        match dep.get(*name) {
            Some((path, _)) => visit(dep, path, &mut seen, &mut out),
            // Built into this kernel: nothing to load.
            None => continue,
        }
    }
    Ok(out)
}

fn copy_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Never through a link (an applet link would overwrite BusyBox).
    if to.symlink_metadata().is_ok() {
        std::fs::remove_file(to)?;
    }
    std::fs::copy(from, to).with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Copies `tree` into `dest` (files, directories, symlinks, modes), as `cp -a` does.
fn copy_tree(tree: &Path, dest: &Path) -> anyhow::Result<()> {
    run(Command::new("cp").arg("-a").arg(format!("{}/.", tree.display())).arg(dest))?;
    Ok(())
}

/// The shared libraries a program loads, from `ldd`.
fn libraries(program: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = run(Command::new("ldd").arg(program))?;
    let mut libs = Vec::new();
    for line in out.lines() {
        let line = line.trim();
        if line.ends_with("not found") {
            // A program unpacked from a package (chrony) whose library this machine lacks: the
            // image would carry a program that cannot start.
            bail!("{} needs {line}: install the library's package on this machine", program.display());
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next().filter(|p| p.starts_with('/')),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// Stages the root file system in `root`.
fn stage_rootfs(o: &BuildOptions, root: &Path, kernel: &Path, busybox: &Path) -> anyhow::Result<String> {
    for d in ["bin", "sbin", "usr/bin", "usr/sbin", "lib", "lib64", "etc", "var"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    // BusyBox and its applets.
    copy_file(&busybox.join("bin/busybox"), &root.join("bin/busybox"))?;
    let applets = run(Command::new(root.join("bin/busybox")).arg("--list-full"))?;
    for applet in applets.lines().filter(|a| !a.is_empty()) {
        let link = root.join(applet);
        if link.exists() || link.is_symlink() {
            continue;
        }
        if let Some(dir) = link.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let depth = applet.matches('/').count();
        let target = format!("{}bin/busybox", "../".repeat(depth));
        std::os::unix::fs::symlink(target, &link)?;
    }
    // Our programs, without debug information, and every library they and the tools load.
    let mut programs: Vec<PathBuf> = Vec::new();
    for name in BINARIES {
        let from = o.bin_dir.join(name);
        if !from.exists() {
            bail!("{} is missing: build the workspace binaries first (cargo build --bins)", from.display());
        }
        if name == "aergo-node" && !o.allow_test_hooks {
            let hooks = test_hooks_in(&std::fs::read(&from)?);
            if !hooks.is_empty() {
                bail!(
                    "{} was built with the test-hooks feature ({}): an image takes a release build \
                     (cargo build --release --bins), or pass --allow-test-hooks for a test image",
                    from.display(),
                    hooks.join(", ")
                );
            }
        }
        let to = root.join("usr/bin").join(name);
        run(Command::new("strip").arg("--strip-debug").arg(&from).arg("-o").arg(&to))?;
        programs.push(from);
    }
    for tool in tools::IMAGE_TOOLS {
        // Installed by ensure_host_tools: a missing one is a broken build machine, not optional.
        let from = Path::new(tool);
        anyhow::ensure!(from.exists(), "{tool} is missing on the build machine");
        copy_file(from, &root.join(tool.trim_start_matches('/')))?;
        programs.push(from.to_path_buf());
    }
    // chrony from the distribution's package, unpacked (never installed on the build machine,
    // whose clock it would take over); its libraries come from this machine like the tools'.
    let chrony = tools::unpacked("chrony")?;
    for program in ["usr/sbin/chronyd", "usr/bin/chronyc"] {
        copy_file(&chrony.join(program), &root.join(program))?;
        programs.push(chrony.join(program));
    }
    let mut libs = BTreeSet::new();
    for p in &programs {
        libs.extend(libraries(p)?);
    }
    for lib in libs {
        let real = std::fs::canonicalize(&lib)?;
        let to = root.join(lib.strip_prefix("/").unwrap_or(&lib));
        copy_file(&real, &to)?;
    }
    // The kernel's modules that the system and the initramfs need.
    let version = std::fs::read_dir(kernel.join("lib/modules"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .next()
        .context("the kernel package has no lib/modules")?;
    let moddir = kernel.join("lib/modules").join(&version);
    if !moddir.join("modules.dep").exists() {
        // The package leaves modules.dep to depmod at install time; BusyBox's depmod makes it here.
        run(Command::new(busybox.join("bin/busybox")).args(["depmod", "-b"]).arg(kernel).arg(&version))?;
    }
    let dep = modules_dep(&moddir)?;
    let wanted: Vec<&str> = INITRAMFS_MODULES.iter().chain(ROOTFS_MODULES.iter()).copied().collect();
    let target_mods = root.join("lib/modules").join(&version);
    for rel in closure(&dep, &wanted)? {
        copy_file(&moddir.join(&rel), &target_mods.join(&rel))?;
    }
    for f in ["modules.order", "modules.builtin", "modules.builtin.modinfo"] {
        if moddir.join(f).exists() {
            copy_file(&moddir.join(f), &target_mods.join(f))?;
        }
    }
    run(Command::new(root.join("bin/busybox")).args(["depmod", "-b"]).arg(root).arg(&version))?;
    let initramfs: Vec<String> =
        closure(&dep, &INITRAMFS_MODULES)?.into_iter().map(|rel| format!("{version}/{rel}")).collect();
    std::fs::write(root.join("lib/modules/initramfs.list"), initramfs.join("\n") + "\n")?;
    copy_file(&kernel.join(format!("boot/vmlinuz-{version}")), &root.join("boot/vmlinuz"))?;

    // The system bus and RAUC's D-Bus policy (the distribution's RAUC installs through its service).
    let dbus = tools::unpacked("dbus-system-bus-common")?;
    copy_file(&dbus.join("usr/share/dbus-1/system.conf"), &root.join("usr/share/dbus-1/system.conf"))?;
    let rauc = tools::unpacked("rauc-service")?;
    let policy = "usr/share/dbus-1/system.d/de.pengutronix.rauc.conf";
    copy_file(&rauc.join(policy), &root.join(policy))?;

    // The shared overlay and post-build script: the same as Buildroot's.
    copy_tree(&board(o).join("rootfs-overlay"), root)?;
    copy_file(&o.keyring, &root.join("etc/rauc/keyring.pem"))?;
    run(Command::new("sh").arg(board(o).join("post-build.sh")).arg(root).env("AERGO_VERSION", &o.version))?;
    Ok(version)
}

pub fn build(o: &BuildOptions) -> anyhow::Result<Built> {
    tools::ensure_host_tools()?;
    let kernel = tools::unpacked(&tools::kernel_package()?)?;
    let busybox = tools::unpacked("busybox-static")?;
    std::fs::create_dir_all(&o.out)?;
    let work = tempfile::Builder::new().prefix("aergo-image-").tempdir_in(&o.out)?;
    let root = work.path().join("rootfs");
    std::fs::create_dir_all(&root)?;
    let version = stage_rootfs(o, &root, &kernel, &busybox)?;
    eprintln!("rootfs staged (kernel {version})");

    let images = work.path().join("images");
    std::fs::create_dir_all(images.join("efi-part/EFI/BOOT"))?;
    let rootfs = images.join("rootfs.squashfs");
    run(Command::new("mksquashfs").arg(&root).arg(&rootfs).args([
        "-comp",
        "xz",
        "-all-root",
        "-noappend",
        "-quiet",
        "-no-progress",
    ]))?;

    // GRUB for UEFI with an embedded config that hands over to grub.cfg beside it on the ESP.
    let efi = images.join("efi-part/EFI/BOOT");
    let early = work.path().join("grub-early.cfg");
    std::fs::write(&early, "search --no-floppy --set=root --label AERGO-BOOT\nset prefix=($root)/EFI/BOOT\nconfigfile $prefix/grub.cfg\n")?;
    run(Command::new("grub-mkimage")
        .args(["-O", "x86_64-efi", "-p", "/EFI/BOOT", "-c"])
        .arg(&early)
        .arg("-o")
        .arg(efi.join("BOOTX64.EFI"))
        .args([
            "part_gpt",
            "fat",
            "squash4",
            "ext2",
            "normal",
            "linux",
            "configfile",
            "search",
            "search_label",
            "regexp",
            "loadenv",
            "test",
            "echo",
            "gzio",
            "xzio",
            "all_video",
            "efi_gop",
            "serial",
            "terminal",
            "boot",
            "sleep",
            "reboot",
            "halt",
        ]))?;
    copy_file(&board(o).join("grub.cfg"), &efi.join("grub.cfg"))?;
    let grubenv = efi.join("grubenv");
    run(Command::new("grub-editenv").arg(&grubenv).arg("create"))?;
    let mut set = Command::new("grub-editenv");
    set.arg(&grubenv).args(["set", "ORDER=A B", "A_OK=1", "A_TRY=0", "B_OK=0", "B_TRY=0"]);
    set.arg(format!("EXTRA_ARGS={}", o.extra_args));
    run(&mut set)?;
    if let Some(p) = &o.provision {
        copy_file(p, &images.join("efi-part/provision.toml"))?;
    }

    // The shared genimage layout; the provision file goes on the boot partition too.
    let mut cfg = std::fs::read_to_string(board(o).join("genimage.cfg"))?;
    if o.provision.is_some() {
        cfg = cfg.replace(
            "\t\tfile EFI {\n\t\t\timage = \"efi-part/EFI\"\n\t\t}\n",
            "\t\tfile EFI {\n\t\t\timage = \"efi-part/EFI\"\n\t\t}\n\t\tfile provision.toml {\n\t\t\timage = \"efi-part/provision.toml\"\n\t\t}\n",
        );
    }
    let cfg_path = work.path().join("genimage.cfg");
    std::fs::write(&cfg_path, cfg)?;
    let tmp = work.path().join("genimage-tmp");
    run(Command::new("genimage")
        .arg("--config")
        .arg(&cfg_path)
        .arg("--rootpath")
        .arg(&root)
        .arg("--tmppath")
        .arg(&tmp)
        .arg("--inputpath")
        .arg(&images)
        .arg("--outputpath")
        .arg(&images))?;
    let raw = o.out.join("aergo-os-x86_64.img");
    std::fs::rename(images.join("aergo-os-x86_64.img"), &raw)?;
    let kept_rootfs = o.out.join("rootfs.squashfs");
    std::fs::rename(&rootfs, &kept_rootfs)?;
    let qcow2 = o.out.join("aergo-os-x86_64.qcow2");
    run(Command::new("qemu-img").args(["convert", "-f", "raw", "-O", "qcow2"]).arg(&raw).arg(&qcow2))?;
    Ok(Built { raw, qcow2, rootfs: kept_rootfs })
}

/// A sparse copy of a raw image (`cp --sparse=always`: the empty partitions take no space).
pub fn sparse_copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    run(Command::new("cp").arg("--sparse=always").arg(from).arg(to))?;
    Ok(())
}

/// The EFI system partition type in a GPT (`sfdisk --json` spells it in capitals).
const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

/// The byte offset of the boot (EFI system) partition of a raw image, from its partition table.
pub fn boot_partition_offset(image: &Path) -> anyhow::Result<u64> {
    let text = run(Command::new("sfdisk").arg("--json").arg(image))
        .with_context(|| format!("{} has no partition table that sfdisk reads", image.display()))?;
    let table: serde_json::Value =
        serde_json::from_str(&text).context("sfdisk --json gave something that is not JSON")?;
    let sector = table["partitiontable"]["sectorsize"].as_u64().unwrap_or(512);
    let parts = table["partitiontable"]["partitions"].as_array().cloned().unwrap_or_default();
    let esp = parts
        .iter()
        .find(|p| p["type"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(ESP_TYPE)))
        .ok_or_else(|| anyhow::anyhow!("{} has no EFI system (boot) partition", image.display()))?;
    let start = esp["start"].as_u64().ok_or_else(|| anyhow::anyhow!("sfdisk gave no start sector"))?;
    Ok(start * sector)
}

/// Copies `files` (source, name on the partition) onto the boot partition of the raw `image`,
/// replacing files of the same name. A qcow2 is refused (convert it with `qemu-img convert -O raw`).
pub fn write_boot_files(image: &Path, files: &[(PathBuf, String)]) -> anyhow::Result<()> {
    anyhow::ensure!(
        image.extension().is_none_or(|e| e != "qcow2"),
        "{}: write provisioning into the raw image (aergo-os-x86_64.img), not the qcow2",
        image.display()
    );
    let offset = boot_partition_offset(image)?;
    for (source, name) in files {
        anyhow::ensure!(source.is_file(), "{} is not a file", source.display());
        anyhow::ensure!(
            !name.is_empty() && !name.contains('/') && name.len() <= 64,
            "{name:?} is not a file name for the boot partition"
        );
        run(Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-o")
            .arg("-i")
            .arg(format!("{}@@{offset}", image.display()))
            .arg(source)
            .arg(format!("::/{name}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_with_test_hooks_is_told_from_a_release_node() {
        let release = b"\x7fELF ... producer.key_file ... verify ... run --config ...".to_vec();
        assert!(test_hooks_in(&release).is_empty());
        let mut hooked = release.clone();
        hooked.extend_from_slice(b"\0equivocate_for_tests\0net-probe\0");
        assert_eq!(test_hooks_in(&hooked), ["equivocate_for_tests", "net-probe"]);
    }

    #[test]
    fn module_closure_puts_dependencies_first() {
        let mut dep = HashMap::new();
        dep.insert(
            "ext4".into(),
            (
                "kernel/fs/ext4/ext4.ko".into(),
                vec!["kernel/fs/jbd2/jbd2.ko".into(), "kernel/lib/crc16.ko".into()],
            ),
        );
        dep.insert("jbd2".into(), ("kernel/fs/jbd2/jbd2.ko".into(), vec!["kernel/lib/crc16.ko".into()]));
        dep.insert("crc16".into(), ("kernel/lib/crc16.ko".into(), vec![]));
        let order = closure(&dep, &["ext4", "builtin_thing"]).unwrap();
        assert_eq!(order, ["kernel/lib/crc16.ko", "kernel/fs/jbd2/jbd2.ko", "kernel/fs/ext4/ext4.ko"]);
        assert_eq!(module_name("kernel/drivers/nvme/host/nvme-core.ko"), "nvme_core");
    }
}
