//! Files that survive a crash whole.

/// Writes a file so that readers see the old or the new contents, never a mix, even after a crash:
/// a temporary file beside it (created with `mode`, set exactly regardless of the umask, so a secret
/// is never readable by others), fsync, rename over `path`, fsync of the directory.
pub fn write_atomic_mode(path: &std::path::Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
    f.write_all(contents)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Keeps the seed inputs of a fuzz target (`fuzz/seeds/<target>/`) equal to today's encodings of
/// `seeds` (file name, bytes): panics naming the first file that differs, or rewrites them all when
/// `AERGO_WRITE_FUZZ_SEEDS` is set (after a deliberate format change). For the crates' tests.
#[doc(hidden)]
pub fn check_fuzz_seeds(dir: &std::path::Path, seeds: &[(&str, Vec<u8>)]) {
    for (name, bytes) in seeds {
        let path = dir.join(name);
        if std::env::var_os("AERGO_WRITE_FUZZ_SEEDS").is_some() {
            std::fs::create_dir_all(dir).expect("create the seed directory");
            std::fs::write(&path, bytes).expect("write a seed");
        }
        let kept = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(&kept, bytes, "{} is not today's encoding", path.display());
    }
}
