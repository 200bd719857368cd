//! aergo-console from the outside: the real binary in a tmux pane against a devnet node and the agent,
//! its screen read back with `capture-pane`. The height shown rises, the tabs switch, logs arrive, an
//! operation runs its configured command after a confirmation, a killed node shows as unreachable while
//! the console keeps running, and the kiosk console — here on a simulated serial line, which reports no
//! size — cannot be quit, only locked.

use aergo_tests::{binary, cli_json, wait_for, AgentProcess, NodeProcess};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A console in its own tmux server, killed with it when dropped.
struct Console {
    socket: String,
}

impl Console {
    /// `serial`: as on a serial port — the terminal reports no size and TERM is vt100 (no colours).
    fn start(name: &str, args: &[String], serial: bool) -> anyhow::Result<Console> {
        let socket = format!("aergo-test-{}-{name}", std::process::id());
        let mut command = vec![binary("aergo-console").display().to_string()];
        command.extend(args.iter().cloned());
        let mut command = command.join(" ");
        if serial {
            command = format!("sh -c 'stty rows 0 cols 0; TERM=vt100 exec {command}'");
        }
        let status = Command::new("tmux")
            .args(["-L", &socket, "new-session", "-d", "-s", "console", "-x", "100", "-y", "30"])
            .arg(command)
            .status()?;
        anyhow::ensure!(status.success(), "tmux new-session failed");
        Ok(Console { socket })
    }

    fn tmux(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        Ok(Command::new("tmux").args(["-L", &self.socket]).args(args).output()?)
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "console"])
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
    }

    fn alive(&self) -> bool {
        self.tmux(&["has-session", "-t", "console"]).map(|o| o.status.success()).unwrap_or(false)
    }

    fn keys(&self, keys: &[&str]) -> anyhow::Result<()> {
        let mut args = vec!["send-keys", "-t", "console"];
        args.extend_from_slice(keys);
        anyhow::ensure!(self.tmux(&args)?.status.success(), "send-keys {keys:?} failed");
        Ok(())
    }

    /// Waits until the screen contains `text`; the error shows the last screen.
    fn wait_text(&self, text: &str, limit: Duration) -> anyhow::Result<String> {
        wait_for(limit, &format!("{text:?} on the console"), || {
            let s = self.screen();
            s.contains(text).then_some(s)
        })
        .map_err(|e| anyhow::anyhow!("{e}\nlast screen:\n{}", self.screen()))
    }

    /// The height on the dashboard's `Height` line.
    fn height(&self) -> Option<u64> {
        let screen = self.screen();
        let line = screen.lines().find(|l| l.contains("│Height"))?;
        line.split("│Height").nth(1)?.split_whitespace().next()?.parse().ok()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

fn write_console_config(root: &Path, marker: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(root.join("etc/aergo"))?;
    let cmd = |what: &str| {
        format!("[\"sh\", \"-c\", \"echo {what} >> {}; echo {what} requested\"]", marker.display())
    };
    std::fs::write(
        root.join("etc/aergo/console.toml"),
        format!(
            "[commands]\nrestart_node = {}\nrestart_agent = {}\nreboot = {}\npoweroff = {}\n",
            cmd("restart-node"),
            cmd("restart-agent"),
            cmd("reboot"),
            cmd("poweroff")
        ),
    )?;
    Ok(())
}

#[test]
fn console_follows_the_chain_switches_tabs_runs_operations_and_survives_a_dead_node() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::start_dev(&dir.path().join("node"), &["--empty-blocks"])?;
    // The dashboard must read "Health: OK" whatever the host's disk and memory look like: the test
    // machine's own fill level is not what is under test, so the agent's thresholds are set low.
    let agent_config = dir.path().join("agent.toml");
    std::fs::write(&agent_config, "[health]\ndisk_free_min_pct = 0.5\nmemory_available_min_pct = 0.5\n")?;
    let agent_config = agent_config.display().to_string();
    let agent = AgentProcess::start(
        &node.rpc,
        &node.data_dir,
        &dir.path().join("agent"),
        &["--config", &agent_config],
    )?;
    let root = dir.path().join("root");
    let marker = dir.path().join("operations.txt");
    write_console_config(&root, &marker)?;
    let args = vec![
        "--node".into(),
        node.rpc.clone(),
        "--agent".into(),
        agent.url.clone(),
        "--agent-token-file".into(),
        agent.dir.join("token").display().to_string(),
        "--root".into(),
        root.display().to_string(),
        "--node-log".into(),
        node.data_dir.join("node.log").display().to_string(),
        "--agent-log".into(),
        agent.dir.join("agent.log").display().to_string(),
    ];
    let console = Console::start("main", &args, false)?;

    // A box without settings opens on Setup.
    console.wait_text("This box has not been set up yet", Duration::from_secs(15))?;

    // Dashboard: live height from the node, health from the agent.
    console.keys(&["1"])?;
    console.wait_text("Health: OK", Duration::from_secs(15))?;
    let first = wait_for(Duration::from_secs(10), "a height on the dashboard", || console.height())?;
    let later = wait_for(Duration::from_secs(15), "the height to rise", || {
        console.height().filter(|h| *h >= first + 2)
    })?;
    assert!(later > first);

    // Tabs switch; the Blocks screen lists the blocks the node made.
    console.keys(&["2"])?;
    let blocks = console.wait_text("Blocks of main", Duration::from_secs(5))?;
    assert!(blocks.contains(&format!("{later} ")) || blocks.contains(&format!("{} ", later + 1)), "{blocks}");
    console.keys(&["Enter"])?;
    console.wait_text("Tx root", Duration::from_secs(5))?;

    // A branch the node holds: `b` shows its blocks, which say their branch.
    let key = node.data_dir.join("dev.key").display().to_string();
    let me =
        cli_json(&node.rpc, &["account", "show", &key])?["address"].as_str().unwrap_or_default().to_string();
    cli_json(&node.rpc, &["branch", "create", "feature", "--key", &key, "--wait"])?;
    cli_json(&node.rpc, &["branch", "track", "feature"])?;
    wait_for(Duration::from_secs(20), "the branch open", || {
        cli_json(&node.rpc, &["--branch", "feature", "chain"]).ok()
    })?;
    let sent = cli_json(
        &node.rpc,
        &["--branch", "feature", "send", "--to", &me, "--amount", "5", "--key", &key, "--wait"],
    )?;
    let height = sent["receipt"]["block_height"].as_u64().unwrap_or(0);
    console.keys(&["Esc"])?;
    wait_for(Duration::from_secs(15), "b: branch in the Blocks screen's title", || {
        console.keys(&["f"]).ok()?;
        Some(console.screen()).filter(|s| s.contains("b: branch"))
    })?;
    console.keys(&["b"])?;
    let blocks = console.wait_text("Blocks of feature", Duration::from_secs(10))?;
    let blocks = wait_for(Duration::from_secs(10), "the branch's block in the list", || {
        Some(console.screen()).filter(|s| s.contains(&format!("{height} ")))
    })
    .unwrap_or(blocks);
    assert!(blocks.contains(&format!("{height} ")), "{blocks}");
    console.keys(&["Enter"])?;
    console.wait_text("Branch     feature", Duration::from_secs(5))?;
    console.keys(&["b"])?;
    console.wait_text("Blocks of main", Duration::from_secs(5))?;
    console.keys(&["3"])?;
    console.wait_text("No peers connected", Duration::from_secs(5))?;
    console.keys(&["4"])?;
    console.wait_text("produced block", Duration::from_secs(10))?;

    // Operations: confirmation, then the configured command, and its result on screen.
    console.keys(&["6", "Down"])?;
    console.wait_text("› Restart the agent", Duration::from_secs(5))?;
    console.keys(&["Enter"])?;
    console.wait_text("Restart the agent?", Duration::from_secs(5))?;
    console.keys(&["n"])?;
    std::thread::sleep(Duration::from_millis(500));
    assert!(!marker.exists(), "a declined operation runs nothing");
    console.keys(&["Enter"])?;
    console.wait_text("Restart the agent?", Duration::from_secs(5))?;
    console.keys(&["y"])?;
    console.wait_text("Restart the agent: done", Duration::from_secs(10))?;
    assert_eq!(std::fs::read_to_string(&marker)?, "restart-agent\n");

    // What Horde does to the box is on the same screen: the agent's audit log. An action whose
    // command does not exist on this machine is recorded as failed, and shown so.
    console.wait_text("none yet: Horde has asked for nothing", Duration::from_secs(10))?;
    let answer = agent.action("restart-node", r#"{"request_id": "console-1"}"#)?;
    assert_eq!(answer.status, 500, "{}", answer.body);
    let shown = console.wait_text("restart-node   failed", Duration::from_secs(10))?;
    let fingerprint = answer.json()?["token_fingerprint"].as_str().unwrap_or_default().to_string();
    assert!(shown.contains(&format!("token {fingerprint}")), "{shown}");

    // The node dies: the dashboard says so, the console keeps running and keeps retrying.
    node.kill9();
    console.keys(&["1"])?;
    let down = console.wait_text("NODE UNREACHABLE", Duration::from_secs(15))?;
    assert!(down.contains("last seen at height"), "{down}");
    let since = |s: &str| s.lines().find(|l| l.contains("down for")).map(str::to_string);
    let before = since(&down);
    std::thread::sleep(Duration::from_secs(3));
    let after = console.screen();
    assert!(console.alive(), "the console died with the node");
    assert_ne!(since(&after), before, "the screen stopped updating:\n{after}");
    assert!(after.contains("node DOWN"), "{after}");

    // q quits an ordinary console.
    console.keys(&["q"])?;
    wait_for(Duration::from_secs(10), "the console to exit", || (!console.alive()).then_some(()))?;
    drop(agent);
    Ok(())
}

#[test]
fn kiosk_console_cannot_be_quit_only_locked() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root)?;
    // Nothing listens on these ports: the console must show both as down and keep going.
    let args: Vec<String> =
        ["--kiosk", "--node", "http://127.0.0.1:9", "--agent", "http://127.0.0.1:9", "--root"]
            .iter()
            .map(|s| s.to_string())
            .chain([root.display().to_string()])
            .collect();
    let console = Console::start("kiosk", &args, true)?;
    let screen = console.wait_text("node DOWN  agent DOWN", Duration::from_secs(15))?;
    // A serial line reports no size: the console draws at 80×24.
    let width = screen.lines().map(|l| l.trim_end().chars().count()).max().unwrap_or(0);
    assert_eq!(width, 80, "{screen}");
    console.keys(&["1"])?;
    console.wait_text("NODE UNREACHABLE", Duration::from_secs(10))?;
    console.keys(&["q"])?;
    console.wait_text("kiosk mode", Duration::from_secs(5))?;
    console.keys(&["C-c"])?;
    std::thread::sleep(Duration::from_millis(500));
    assert!(console.alive(), "Ctrl-C ended the kiosk console");
    console.keys(&["C-l"])?;
    console.wait_text("console locked", Duration::from_secs(5))?;
    console.keys(&["2"])?;
    std::thread::sleep(Duration::from_millis(300));
    assert!(console.screen().contains("console locked"), "keys other than Enter do nothing while locked");
    console.keys(&["Enter"])?;
    console.wait_text("NODE UNREACHABLE", Duration::from_secs(5))?;
    // SIGTERM (as init sends at shutdown) ends it cleanly.
    let pid = String::from_utf8_lossy(&console.tmux(&["list-panes", "-F", "#{pane_pid}"])?.stdout)
        .trim()
        .to_string();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid.parse()?), nix::sys::signal::Signal::SIGTERM)?;
    wait_for(Duration::from_secs(10), "the console to end on SIGTERM", || (!console.alive()).then_some(()))?;
    Ok(())
}
