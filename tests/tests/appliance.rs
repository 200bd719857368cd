//! The appliance from the outside: the kernel-config check, and the offline image built by
//! `aergo-image build`, booted in QEMU (KVM when it works here, software emulation otherwise) and
//! reached only through the ports QEMU forwards to loopback — the agent's `/readyz`, the node's height,
//! the OS version and booted slot the agent reports, the console's first screen on the serial port,
//! and a hard reset (power loss) after which the same chain continues with the same node key.

use aergo_tests::{binary, http_get, wait_for};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

#[test]
fn kernel_config_fragments_survive_and_a_bogus_one_is_named() -> anyhow::Result<()> {
    let check = workspace().join("kernel-config/check.sh");
    let out = Command::new(&check).output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("requested options survived"), "{text}");

    let dir = tempfile::tempdir()?;
    let bogus = dir.path().join("bogus.config");
    std::fs::write(&bogus, "CONFIG_AERGO_DOES_NOT_EXIST=y\nCONFIG_NO_HZ_FULL=y\n")?;
    let out = Command::new(&check).arg(&bogus).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("bogus.config: requested 'CONFIG_AERGO_DOES_NOT_EXIST=y', got '<absent>'"),
        "{text}"
    );
    assert!(!text.contains("CONFIG_NO_HZ_FULL"), "options that survive are not named: {text}");
    Ok(())
}

/// A QEMU run of the image, stopped when dropped.
struct Vm {
    pidfile: PathBuf,
    monitor: PathBuf,
    serial: PathBuf,
    rpc: String,
    agent: String,
}

impl Vm {
    fn serial_text(&self) -> String {
        let bytes = std::fs::read(&self.serial).unwrap_or_default();
        String::from_utf8_lossy(&bytes).to_string()
    }

    fn monitor(&self, command: &str) -> anyhow::Result<()> {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&self.monitor)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        s.write_all(format!("{command}\n").as_bytes())?;
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    }

    fn rpc(&self, method: &str) -> anyhow::Result<Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method}).to_string();
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))).build().into();
        let mut resp = agent.post(&self.rpc).header("content-type", "application/json").send(body)?;
        let v: Value = serde_json::from_str(&resp.body_mut().read_to_string()?)?;
        Ok(v["result"].clone())
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pidfile) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

fn field(out: &str, name: &str) -> anyhow::Result<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("{name}= missing from:\n{out}"))
}

#[test]
fn image_boots_provisions_and_survives_a_hard_reset() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let token = "5a".repeat(32);
    let provision = dir.path().join("provision.toml");
    std::fs::write(
        &provision,
        format!("hostname = \"aergo-qemu\"\n[network]\ndhcp = true\n[node]\nrole = \"producer\"\nchain = \"devnet\"\n[agent]\ntoken = \"{token}\"\n"),
    )?;
    let out_dir = dir.path().join("image");
    let build = Command::new(binary("aergo-image"))
        .current_dir(workspace())
        .args(["build", "--serial-console", "--out"])
        .arg(&out_dir)
        .arg("--provision")
        .arg(&provision)
        .output()?;
    let text =
        format!("{}{}", String::from_utf8_lossy(&build.stdout), String::from_utf8_lossy(&build.stderr));
    anyhow::ensure!(build.status.success(), "aergo-image build failed:\n{text}");
    let qcow2 = PathBuf::from(field(&text, "QCOW2")?);

    let (serial, pidfile, monitor) =
        (dir.path().join("serial.log"), dir.path().join("qemu.pid"), dir.path().join("monitor.sock"));
    let run = Command::new(binary("aergo-image"))
        .current_dir(workspace())
        .args(["run", "--detach", "--memory-mib", "1536", "--image"])
        .arg(&qcow2)
        .arg("--serial-log")
        .arg(&serial)
        .arg("--pidfile")
        .arg(&pidfile)
        .arg("--monitor")
        .arg(&monitor)
        .output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    anyhow::ensure!(run.status.success(), "aergo-image run failed:\n{text}");
    let vm =
        Vm { pidfile, monitor, serial, rpc: field(&text, "AERGO_RPC")?, agent: field(&text, "AERGO_AGENT")? };
    let boot_limit = Duration::from_secs(300);

    // The agent answers and is ready; the node produces blocks.
    wait_for(boot_limit, "the agent's /readyz through the forwarded port", || {
        http_get(&format!("{}/readyz", vm.agent), None).ok().filter(|a| a.status == 200)
    })
    .map_err(|e| anyhow::anyhow!("{e}\nserial:\n{}", vm.serial_text()))?;
    let first = wait_for(boot_limit, "a height of at least 3", || {
        vm.rpc("chain_info").ok().and_then(|c| c["height"].as_u64()).filter(|h| *h >= 3)
    })?;
    let key = vm.rpc("node_info")?["node_key"].as_str().unwrap_or_default().to_string();
    assert_eq!(key.len(), 64);
    // Long enough up that the new boot's node is younger.
    std::thread::sleep(Duration::from_secs(5));

    // The agent reports the OS version and the booted slot, with the provisioned hostname and token.
    let telemetry = http_get(&format!("{}/v1/telemetry", vm.agent), Some(&token))?;
    assert_eq!(telemetry.status, 200, "{}", telemetry.body);
    let t = telemetry.json()?;
    assert_eq!(t["host"]["boot_slot"], "A");
    assert!(t["host"]["os"].as_str().unwrap_or_default().starts_with("AERGO OS "), "{}", t["host"]);
    assert_eq!(t["host"]["hostname"], "aergo-qemu");
    assert_eq!(http_get(&format!("{}/v1/telemetry", vm.agent), Some("wrong"))?.status, 401);

    // First boot applied provision.toml; the console's first screen is on the serial port.
    let serial_text = vm.serial_text();
    assert!(serial_text.contains("aergo: applied /boot/provision.toml"), "{serial_text}");
    assert!(
        serial_text.contains("Dashboard") && serial_text.contains("AERGO"),
        "no console on the serial port"
    );

    // Power loss: the same chain continues, with the same node key.
    let uptime = vm.rpc("node_info")?["uptime_s"].as_u64().unwrap_or(0);
    vm.monitor("system_reset")?;
    wait_for(boot_limit, "the node of the new boot to answer", || {
        vm.rpc("node_info").ok().filter(|i| i["uptime_s"].as_u64().is_some_and(|u| u < uptime))
    })?;
    let after = wait_for(boot_limit, "the chain to go on past its height before the reset", || {
        vm.rpc("chain_info").ok().and_then(|c| c["height"].as_u64()).filter(|h| *h > first)
    })?;
    assert!(after > first);
    assert_eq!(vm.rpc("node_info")?["node_key"].as_str().unwrap_or_default(), key, "the node key changed");
    let _ = vm.monitor("quit");
    Ok(())
}
