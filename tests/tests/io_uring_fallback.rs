//! With io_uring disabled by the kernel (`kernel.io_uring_disabled = 2`) the node still starts, writes
//! its block log with pwrite + fdatasync, says so once in its log and in `node_info`.
//!
//! The sysctl is machine-wide, so this test lives in its own test binary (nothing else runs beside it)
//! and restores the previous value when it ends, even on failure.

use aergo_tests::{cli_json, NodeProcess};

const SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";

struct Restore(String);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, &self.0);
    }
}

#[test]
fn block_log_falls_back_to_pwrite_when_io_uring_is_disabled() -> anyhow::Result<()> {
    let Ok(previous) = std::fs::read_to_string(SYSCTL) else {
        eprintln!("this kernel has no {SYSCTL}; the fallback cannot be forced here");
        return Ok(());
    };
    if std::fs::write(SYSCTL, "2").is_err() {
        eprintln!("cannot write {SYSCTL} (not root?); the fallback cannot be forced here");
        return Ok(());
    }
    let _restore = Restore(previous.trim().to_string());
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::start_dev(dir.path(), &[])?;
    let info = cli_json(&node.rpc, &["node"])?;
    assert_eq!(info["block_log_io_uring"], false, "{info}");
    let key = dir.path().join("dev.key");
    let me = cli_json(&node.rpc, &["account", "show", key.to_str().unwrap()])?;
    let addr = me["address"].as_str().unwrap().to_string();
    let sent = cli_json(
        &node.rpc,
        &["send", "--key", key.to_str().unwrap(), "--to", &addr, "--amount", "1", "--wait"],
    )?;
    assert_eq!(sent["receipt"]["status"], "success");
    let log = node.log();
    assert_eq!(log.matches("io_uring is not available").count(), 1, "said once: {log}");
    node.stop()?;
    Ok(())
}
