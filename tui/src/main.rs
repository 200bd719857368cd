//! `aergo-console`: the operator console (see the library's documentation for how it is built).

use aergo_console::app::{App, Effect, Event, Settings};
use aergo_console::collect::{self, Endpoints, Request};
use aergo_console::logs::{self, LogSource};
use aergo_console::ops::{self, ConsoleConfig};
use clap::{Parser, Subcommand};
use ratatui::crossterm::event as term;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// The operator console of an AERGO OS box: dashboard, blocks, peers, logs, setup and operations.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The node's JSON-RPC address.
    #[arg(long, default_value = "http://127.0.0.1:7845")]
    node: String,
    /// The agent's HTTP address.
    #[arg(long, default_value = "https://127.0.0.1:7850")]
    agent: String,
    /// File holding the agent's bearer token (default: `<root>/etc/aergo/agent.token`).
    #[arg(long)]
    agent_token_file: Option<PathBuf>,
    /// The agent's TLS certificate, which an `https://` agent is pinned to (default:
    /// `<root>/var/lib/aergo/agent-tls/cert.pem`).
    #[arg(long)]
    agent_cert: Option<PathBuf>,
    /// Where setup reads and writes its files: `/` on the box.
    #[arg(long, default_value = "/", global = true)]
    root: PathBuf,
    /// Cannot be quit, only locked (for tty1).
    #[arg(long)]
    kiosk: bool,
    /// The node's log file.
    #[arg(long, default_value = "/var/log/aergo/node.log")]
    node_log: PathBuf,
    /// The agent's log file.
    #[arg(long, default_value = "/var/log/aergo/agent.log")]
    agent_log: PathBuf,
    /// No colours (also with NO_COLOR set or TERM=vt100/vt102/dumb).
    #[arg(long)]
    no_color: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Applies a provision.toml under --root, as first boot does: writes the files Setup would,
    /// generating the producer key (and the agent token when the file has none).
    Provision { file: PathBuf },
    /// Prints the TCP ports the firewall opens for peers, one a line: the public chain's p2p
    /// port (when on) and each hosted repository's (when its swarm is on), from the node's
    /// config under --root and its data directory.
    P2pPorts,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

fn color_wanted(cli: &Cli) -> bool {
    let term = std::env::var("TERM").unwrap_or_default();
    !cli.no_color
        && std::env::var_os("NO_COLOR").is_none()
        && !matches!(term.as_str(), "vt100" | "vt102" | "dumb")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if !cli.root.is_dir() {
        anyhow::bail!("--root {} is not a directory", cli.root.display());
    }
    if let Some(Command::P2pPorts) = &cli.command {
        let path = cli.root.join(aergo_settings::files::NODE_CONFIG_FILE);
        let mut node = aergo_config::NodeConfig::load(&path)?;
        node.data_dir = aergo_settings::files::box_path(&cli.root, &node.data_dir.display().to_string());
        for port in aergo_config::repos::p2p_ports(&node) {
            println!("{port}");
        }
        return Ok(());
    }
    if let Some(Command::Provision { file }) = &cli.command {
        let (applied, token) = match aergo_console::setup::provision(&cli.root, file) {
            Ok(done) => done,
            Err(e) => {
                // Nothing of the file was applied. Its network and SSH keys still are, when valid
                // on their own, so that the box can be reached to fix it (the reason is the last
                // line: first boot logs it).
                let access = aergo_settings::provision_access(&cli.root, file);
                if !access.is_empty() {
                    println!(
                        "{} was not applied; so that the box can be reached to fix it, wrote {}",
                        file.display(),
                        access.join(", ")
                    );
                }
                return Err(e.into());
            }
        };
        println!(
            "applied {}: {} files, chain data in {}",
            file.display(),
            applied.written.len(),
            applied.data_dir
        );
        if let Some(t) = token {
            println!("generated agent token (give it to Horde): {t}");
        }
        return Ok(());
    }
    let console = ConsoleConfig::load(&cli.root)?;
    let token_file = cli.agent_token_file.clone().unwrap_or_else(|| cli.root.join("etc/aergo/agent.token"));
    let settings = Settings {
        node_url: cli.node.clone(),
        agent_url: cli.agent.clone(),
        kiosk: cli.kiosk,
        color: color_wanted(&cli),
        root: cli.root.clone(),
    };
    let mut app = App::new(settings, console, aergo_console::now_ms());
    app.logs.paths = vec![(LogSource::Node, cli.node_log.clone()), (LogSource::Agent, cli.agent_log.clone())];

    let (tx, rx) = mpsc::channel::<Event>();
    let stop = Arc::new(AtomicBool::new(false));
    let collector = collect::spawn(
        Endpoints {
            node_url: cli.node.clone(),
            agent_url: cli.agent.clone(),
            agent_token_file: Some(token_file),
            agent_cert_file: Some(
                cli.agent_cert.clone().unwrap_or_else(|| cli.root.join("var/lib/aergo/agent-tls/cert.pem")),
            ),
        },
        tx.clone(),
    )?;
    for (source, path) in &app.logs.paths {
        logs::spawn_tailer(*source, path.clone(), tx.clone(), stop.clone())?;
    }
    spawn_ticker(tx.clone(), stop.clone())?;

    let mut terminal = open_terminal()?;
    // Input on its own thread: `read` blocks, and the loop below must not.
    spawn_input(tx.clone(), stop.clone())?;
    let result = event_loop(&mut terminal, &mut app, &rx, &collector, &tx);
    stop.store(true, Ordering::Relaxed);
    ratatui::restore();
    result
}

/// The terminal in raw mode on the alternate screen. A serial console reports a size of 0×0 (the
/// kernel does not know the far end's size): then the console draws at `COLUMNS`×`LINES` from the
/// environment, or 80×24.
fn open_terminal() -> anyhow::Result<ratatui::DefaultTerminal> {
    let size = ratatui::crossterm::terminal::size().unwrap_or((0, 0));
    if size.0 > 0 && size.1 > 0 {
        return Ok(ratatui::init());
    }
    let env = |name: &str, default: u16| {
        std::env::var(name).ok().and_then(|v| v.parse::<u16>().ok()).filter(|v| *v > 0).unwrap_or(default)
    };
    let area = ratatui::layout::Rect::new(0, 0, env("COLUMNS", 80), env("LINES", 24));
    // As ratatui::init does: put the terminal back before a panic message is printed.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        ratatui::restore();
        hook(info);
    }));
    ratatui::crossterm::terminal::enable_raw_mode()?;
    ratatui::crossterm::execute!(std::io::stdout(), ratatui::crossterm::terminal::EnterAlternateScreen)?;
    let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
    Ok(ratatui::Terminal::with_options(
        backend,
        ratatui::TerminalOptions { viewport: ratatui::Viewport::Fixed(area) },
    )?)
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    rx: &mpsc::Receiver<Event>,
    collector: &collect::Collector,
    tx: &mpsc::Sender<Event>,
) -> anyhow::Result<()> {
    terminal.draw(|f| aergo_console::ui::draw(f, app))?;
    loop {
        let Ok(first) = rx.recv() else { return Ok(()) };
        // Take everything already queued before drawing once: a burst of log lines is one frame.
        let mut batch = vec![first];
        batch.extend(rx.try_iter().take(1000));
        for event in batch {
            for effect in app.handle(event) {
                match effect {
                    Effect::Quit => return Ok(()),
                    Effect::FetchBlock(h) => collector.request(Request::Block(app.shown_branch.clone(), h)),
                    Effect::ShowBranch(b) => collector.request(Request::ShowBranch(b)),
                    Effect::RunOp(op) => ops::run(op, app.console.command(op).to_vec(), tx.clone()),
                }
            }
        }
        terminal.draw(|f| aergo_console::ui::draw(f, app))?;
    }
}

fn spawn_ticker(tx: mpsc::Sender<Event>, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    std::thread::Builder::new().name("ticker".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1000));
            if tx.send(Event::Tick(aergo_console::now_ms())).is_err() {
                return;
            }
        }
    })?;
    Ok(())
}

fn spawn_input(tx: mpsc::Sender<Event>, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    std::thread::Builder::new().name("input".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            // Poll with a timeout so that the thread notices the end.
            match term::poll(Duration::from_millis(500)) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => return,
            }
            let event = match term::read() {
                Ok(term::Event::Key(k)) => Event::Key(k),
                Ok(term::Event::Resize(..)) => Event::Resize,
                Ok(_) => continue,
                Err(_) => return,
            };
            if tx.send(event).is_err() {
                return;
            }
        }
    })?;
    Ok(())
}
