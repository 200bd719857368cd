//! `aergo-console-bench`: how long a frame takes and how much CPU the console uses while idle.
//!
//! 1. Frame time: every screen with the full fixture state (`aergo_console::fixture`) drawn at 120×40
//!    through ratatui's crossterm backend into memory — layout, widgets, the diff against the previous
//!    frame and the escape sequences, everything but the terminal's own work. Each frame advances the
//!    clock so that ages and sparklines change, as they do live. Target: p99 under 5 ms.
//! 2. Idle CPU: the real `aergo-console` in a 120×40 tmux pane, on the dashboard, against a devnet
//!    node and agent this program starts (binaries beside this one), measured from `/proc/PID/stat`
//!    over `--idle-secs`. Target: under 2 % of one core.

use aergo_console::app::{Event, Tab};
use aergo_console::fixture::{self, NOW};
use clap::Parser;
use ratatui::backend::CrosstermBackend;
use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Cli {
    /// Frames drawn per screen.
    #[arg(long, default_value_t = 2000)]
    frames: usize,
    /// Seconds of idle measurement (0 skips it).
    #[arg(long, default_value_t = 30)]
    idle_secs: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// Where the frames go: counts the bytes, keeps nothing.
struct CountingSink(std::rc::Rc<std::cell::Cell<usize>>);

impl std::io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.set(self.0.get() + buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn frame_times(frames: usize) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let mut app = fixture::app(root.path());
    let area = Rect::new(0, 0, 120, 40);
    let counter = std::rc::Rc::new(std::cell::Cell::new(0usize));
    let mut terminal = Terminal::with_options(
        CrosstermBackend::new(CountingSink(counter.clone())),
        TerminalOptions { viewport: Viewport::Fixed(area) },
    )?;
    println!("Frame time at 120×40, full data, {frames} frames per screen (target: p99 < 5 ms)");
    println!("| screen | p50 µs | p99 µs | max µs | bytes/frame | p99 / target |");
    println!("|---|---|---|---|---|---|");
    let mut all = Vec::new();
    for tab in Tab::ALL {
        app.tab = tab;
        let mut times = Vec::with_capacity(frames);
        counter.set(0);
        for i in 0..frames {
            app.handle(Event::Tick(NOW + (i as u64 % 50) * 200));
            let started = Instant::now();
            terminal.draw(|f| aergo_console::ui::draw(f, &app))?;
            times.push(started.elapsed());
        }
        times.sort();
        let p99 = percentile(&times, 0.99);
        println!(
            "| {} | {} | {} | {} | {} | {:.3} |",
            tab.title(),
            percentile(&times, 0.5).as_micros(),
            p99.as_micros(),
            times.last().copied().unwrap_or_default().as_micros(),
            counter.get() / frames.max(1),
            p99.as_secs_f64() / 0.005
        );
        all.extend(times);
    }
    all.sort();
    println!(
        "| all | {} | {} | {} | | {:.3} |",
        percentile(&all, 0.5).as_micros(),
        percentile(&all, 0.99).as_micros(),
        all.last().copied().unwrap_or_default().as_micros(),
        percentile(&all, 0.99).as_secs_f64() / 0.005
    );
    Ok(())
}

/// utime + stime of a process, in clock ticks, and its resident set.
fn cpu_ticks(pid: u32) -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let rss_pages = f.get(21).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Ok((ticks, rss_pages * 4096))
}

struct Killed(Vec<Child>, String);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.1, "kill-server"]).status();
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn idle_cpu(secs: u64) -> anyhow::Result<()> {
    let bin_dir: PathBuf = std::env::current_exe()?.parent().map(Path::to_path_buf).unwrap_or_default();
    let bin = |name: &str| bin_dir.join(name);
    for name in ["aergo-node", "aergo-agent", "aergo-console"] {
        anyhow::ensure!(bin(name).exists(), "{} is missing: build all binaries first", bin(name).display());
    }
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    std::fs::create_dir_all(d.join("root/etc/aergo"))?;
    let port = |base: u16| base + (std::process::id() % 1000) as u16;
    let (rpc_port, agent_port) = (port(41000), port(42000));
    let socket = format!("aergo-console-bench-{}", std::process::id());
    let mut guard = Killed(Vec::new(), socket.clone());
    let node_log = std::fs::File::create(d.join("node.log"))?;
    guard.0.push(
        Command::new(bin("aergo-node"))
            .args(["--dev", "--empty-blocks", "--data-dir"])
            .arg(d.join("node"))
            .args(["--rpc-listen", &format!("127.0.0.1:{rpc_port}")])
            .stdout(node_log.try_clone()?)
            .stderr(node_log)
            .spawn()?,
    );
    anyhow::ensure!(
        wait_until(Duration::from_secs(30), || d.join("node/node.key").exists()),
        "the node did not start"
    );
    let token = d.join("root/etc/aergo/agent.token");
    Command::new(bin("aergo-agent")).arg("gen-token").arg(&token).stdout(Stdio::null()).status()?;
    let agent_log = std::fs::File::create(d.join("agent.log"))?;
    guard.0.push(
        Command::new(bin("aergo-agent"))
            .args(["--node", &format!("http://127.0.0.1:{rpc_port}")])
            .args(["--listen", &format!("127.0.0.1:{agent_port}")])
            .arg("--token-file")
            .arg(&token)
            .arg("--spool")
            .arg(d.join("spool"))
            .arg("--key-file")
            .arg(d.join("node/node.key"))
            .arg("--data-dir")
            .arg(d.join("node"))
            .stdout(Stdio::null())
            .stderr(agent_log)
            .spawn()?,
    );
    let console = format!(
        "{} --node http://127.0.0.1:{rpc_port} --agent http://127.0.0.1:{agent_port} --root {} --node-log {} --agent-log {}",
        bin("aergo-console").display(),
        d.join("root").display(),
        d.join("node.log").display(),
        d.join("agent.log").display()
    );
    let status = Command::new("tmux")
        .args(["-L", &socket, "new-session", "-d", "-x", "120", "-y", "40", &console])
        .status()?;
    anyhow::ensure!(status.success(), "tmux could not start the console (is tmux installed?)");
    let mut pid = 0;
    wait_until(Duration::from_secs(10), || {
        let out = Command::new("tmux").args(["-L", &socket, "list-panes", "-F", "#{pane_pid}"]).output();
        pid = out.ok().and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(0);
        pid != 0
    });
    anyhow::ensure!(pid != 0, "no console process in the tmux pane");
    // Settle: first data, first frames; the console opens on Setup (no settings): go to the dashboard.
    std::thread::sleep(Duration::from_secs(3));
    Command::new("tmux").args(["-L", &socket, "send-keys", "1"]).status()?;
    std::thread::sleep(Duration::from_secs(2));
    let ticks_per_s =
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    let (t0, _) = cpu_ticks(pid)?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let (t1, rss) = cpu_ticks(pid)?;
    let pct = (t1 - t0) as f64 / ticks_per_s / started.elapsed().as_secs_f64() * 100.0;
    let screen = Command::new("tmux").args(["-L", &socket, "capture-pane", "-p"]).output()?;
    let on_dashboard = String::from_utf8_lossy(&screen.stdout).contains("Health: ");
    println!();
    println!("Idle on the dashboard at 120×40 against a live devnet (1 block/s), {secs} s (target: < 2 % of a core)");
    println!("| measure | value | / target |");
    println!("|---|---|---|");
    println!("| CPU, % of one core | {pct:.2} | {:.3} |", pct / 2.0);
    println!("| RSS | {:.1} MiB | |", rss as f64 / (1 << 20) as f64);
    println!("| dashboard shown | {on_dashboard} | |");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    frame_times(cli.frames)?;
    if cli.idle_secs > 0 {
        idle_cpu(cli.idle_secs)?;
    }
    Ok(())
}
