//! RAUC bundles and update media.
//!
//! `aergo-image bundle` signs a root slot image (`rootfs.squashfs` of a build) into a verity-format
//! RAUC bundle, and writes an update medium beside it: a FAT image labelled `AERGOUPDATE` holding the
//! bundle, which the box installs when it sees it (a USB stick, or a second disk of a VM).
//!
//! Without `--key`/`--cert`, a development key pair made once in `~/.cache/aergo-os/rauc` is used, and
//! `aergo-image build` puts the same certificate into the image's keyring; a release uses its own.

use crate::tools::{self, run};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const COMPATIBLE: &str = "aergo-os-x86_64";

/// The development signing pair (created on first use).
pub fn dev_keys() -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = tools::cache_dir().parent().map(|p| p.join("rauc")).context("cache directory")?;
    let (key, cert) = (dir.join("dev.key.pem"), dir.join("dev.cert.pem"));
    if !key.exists() || !cert.exists() {
        std::fs::create_dir_all(&dir)?;
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:4096", "-nodes", "-days", "3650", "-subj"])
            .arg("/O=AERGO OS/CN=AERGO OS development update signing")
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert))?;
    }
    Ok((key, cert))
}

pub struct BundleOptions {
    pub rootfs: PathBuf,
    pub key: PathBuf,
    pub cert: PathBuf,
    pub version: String,
    pub out: PathBuf,
}

/// Writes `<out>/aergo-os-<version>.raucb` and `<out>/update-media.img`; returns both.
pub fn bundle(o: &BundleOptions) -> anyhow::Result<(PathBuf, PathBuf)> {
    tools::ensure_host_tools()?;
    anyhow::ensure!(
        o.rootfs.exists(),
        "{} does not exist: run `aergo-image build` first",
        o.rootfs.display()
    );
    std::fs::create_dir_all(&o.out)?;
    let work = tempfile::Builder::new().prefix("aergo-bundle-").tempdir_in(&o.out)?;
    let content = work.path().join("content");
    std::fs::create_dir_all(&content)?;
    std::fs::copy(&o.rootfs, content.join("rootfs.squashfs"))?;
    std::fs::write(
        content.join("manifest.raucm"),
        format!(
            "[update]\ncompatible={COMPATIBLE}\nversion={}\n\n[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=rootfs.squashfs\n",
            o.version
        ),
    )?;
    let bundle = o.out.join(format!("aergo-os-{}.raucb", o.version));
    let _ = std::fs::remove_file(&bundle);
    run(Command::new("rauc")
        .arg("bundle")
        .arg(format!("--cert={}", o.cert.display()))
        .arg(format!("--key={}", o.key.display()))
        .arg(&content)
        .arg(&bundle))?;
    let media = o.out.join("update-media.img");
    write_media(&bundle, &media)?;
    Ok((bundle, media))
}

/// A FAT file system image labelled AERGOUPDATE with `bundle` in its root.
pub fn write_media(bundle: &Path, media: &Path) -> anyhow::Result<()> {
    let size_mib = std::fs::metadata(bundle)?.len() / (1 << 20) + 16;
    let _ = std::fs::remove_file(media);
    run(Command::new("mkfs.vfat")
        .args(["-n", "AERGOUPDATE", "-C"])
        .arg(media)
        .arg((size_mib * 1024).to_string()))?;
    let name = bundle.file_name().and_then(|n| n.to_str()).context("bundle name")?;
    run(Command::new("mcopy").arg("-i").arg(media).arg(bundle).arg(format!("::/{name}")))?;
    Ok(())
}
