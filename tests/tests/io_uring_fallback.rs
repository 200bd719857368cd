//! With io_uring refused by the kernel the node still starts, writes its block log with pwrite +
//! fdatasync, says so once in its log and in `node_info`.
//!
//! The refusal is made for the node process alone: a seccomp filter installed in the child before it
//! runs `aergo-node` makes `io_uring_setup` fail with `EPERM`, which is what the kernel answers
//! everyone once `kernel.io_uring_disabled = 2`. So the test needs no root, never skips, and cannot
//! disturb the other tests' nodes, which keep io_uring whatever runs beside them (the machine-wide
//! sysctl could not promise either).

use aergo_tests::{binary, cli_json, NodeProcess};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// `io_uring_setup` in the syscall tables of x86_64 and aarch64 alike.
const SYS_IO_URING_SETUP: u32 = 425;
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

/// Classic BPF over `struct seccomp_data` (`nr` at offset 0, `arch` at 4): another architecture's
/// calls and every other call pass; `io_uring_setup` fails with EPERM.
static FILTER: [libc::sock_filter; 6] = [
    libc::sock_filter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: 4 },
    libc::sock_filter { code: BPF_JEQ_K, jt: 0, jf: 3, k: AUDIT_ARCH },
    libc::sock_filter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: 0 },
    libc::sock_filter { code: BPF_JEQ_K, jt: 0, jf: 1, k: SYS_IO_URING_SETUP },
    libc::sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ERRNO | libc::EPERM as u32 },
    libc::sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ALLOW },
];

/// Runs in the forked child before exec: only async-signal-safe calls (two prctl).
fn refuse_io_uring() -> std::io::Result<()> {
    let prog =
        libc::sock_fprog { len: FILTER.len() as u16, filter: FILTER.as_ptr() as *mut libc::sock_filter };
    // SAFETY: plain prctl calls with a filter that lives for the whole program (a static).
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[test]
fn block_log_falls_back_to_pwrite_when_io_uring_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cmd = Command::new(binary("aergo-node"));
    cmd.args(["--dev", "--data-dir", dir.path().to_str().unwrap(), "--rpc-listen", "127.0.0.1:0"]);
    // SAFETY: the hook makes only async-signal-safe calls (see `refuse_io_uring`).
    unsafe { cmd.pre_exec(refuse_io_uring) };
    let node = NodeProcess::start_command(dir.path(), cmd)?;
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

/// The same node without the filter writes through io_uring: the fallback above is the filter's doing.
#[test]
fn without_the_filter_the_block_log_uses_io_uring() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::start_dev(dir.path(), &[])?;
    let info = cli_json(&node.rpc, &["node"])?;
    assert_eq!(info["block_log_io_uring"], true, "{info}");
    node.stop()?;
    Ok(())
}
