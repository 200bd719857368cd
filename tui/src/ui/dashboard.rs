//! Dashboard: the chain at a glance, health with reasons, rates, and the host's resources.

use super::{age, bar, bytes, fit, panel, short, Theme};
use crate::app::App;
use aergo_telemetry::{Sample, Status};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};
use ratatui::Frame;

pub fn draw(frame: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    // A taller screen shows every health check (nine today) and taller sparklines.
    let (top_rows, rate_rows) = if area.height >= 32 { (11, 6) } else { (9, 4) };
    // The hosted repositories, one line each, when there are any (at most 6 shown).
    let repo_rows = if app.repositories.is_empty() { 0 } else { app.repositories.len().min(6) as u16 + 2 };
    let [top, rates, repos, host] = Layout::vertical([
        Constraint::Length(top_rows),
        Constraint::Length(rate_rows),
        Constraint::Length(repo_rows),
        Constraint::Min(4),
    ])
    .areas(area);
    let [chain, health] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
    draw_chain(frame, app, theme, chain);
    draw_health(frame, app, theme, health);
    draw_rates(frame, app, theme, rates);
    if repo_rows > 0 {
        draw_repositories(frame, app, theme, repos);
    }
    draw_host(frame, app, theme, host);
}

/// The hosted repositories: name, chain, consensus, height, final height, peers, this node's
/// role and health (with why, in the warning colour, when not ok).
fn draw_repositories(frame: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    let width = area.width.saturating_sub(2) as usize;
    let lines: Vec<Line<'_>> = app
        .repositories
        .iter()
        .take(6)
        .map(|r| {
            let text = if width >= 100 {
                format!(
                    "{:<12} {:<16} {:<5} height {:<8} final {:<8} peers {:<3} {:<9} ",
                    short(&r.name, 12),
                    short(&r.chain_id, 16),
                    r.consensus,
                    r.height,
                    r.lib_height,
                    r.peers,
                    r.role
                )
            } else {
                // Narrow: without the chain id and the words, so that the health still shows.
                format!(
                    "{:<10} {:<4} {:>7}/{:<7} p{:<3} {:<9} ",
                    short(&r.name, 10),
                    r.consensus,
                    r.height,
                    r.lib_height,
                    r.peers,
                    r.role
                )
            };
            let health = match &r.reason {
                Some(why) => format!("{}: {why}", r.health),
                None => r.health.clone(),
            };
            let style = if r.health == "ok" { theme.ok() } else { theme.warn() };
            let rest = width.saturating_sub(text.chars().count());
            Line::from(vec![Span::raw(fit(&text, width)), Span::styled(fit(&health, rest), style)])
        })
        .collect();
    let title = format!("Repositories · {} hosted", app.repositories.len());
    frame.render_widget(Paragraph::new(lines).block(panel(&title)), area);
}

fn label(text: &str) -> Span<'static> {
    Span::raw(format!("{text:<10}"))
}

fn status_style(status: Status, theme: Theme) -> Style {
    match status {
        Status::Ok => theme.ok(),
        Status::Degraded => theme.warn(),
        Status::Down => theme.bad(),
    }
}

fn draw_chain(frame: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    let now = app.now_ms;
    let width = area.width.saturating_sub(2) as usize;
    let mut lines = Vec::new();
    match (&app.node.value, &app.node.error) {
        (snapshot, Some(error)) => {
            let since = app.node.failing_since_ms.map(|t| age(now.saturating_sub(t))).unwrap_or_default();
            lines.push(Line::styled("NODE UNREACHABLE", theme.bad()));
            lines.push(Line::raw(fit(&app.settings.node_url, width)));
            for part in textwrap(error, width).into_iter().take(2) {
                lines.push(Line::styled(part, theme.dim()));
            }
            if let Some(s) = snapshot {
                lines.push(Line::raw(format!("last seen at height {}", s.chain.height)));
            }
            lines.push(Line::raw(fit(&format!("down for {since}; retrying"), width)));
        }
        (None, None) => lines.push(Line::styled("waiting for the node…", theme.dim())),
        (Some(s), None) => {
            let c = &s.chain;
            lines.push(Line::from(vec![
                label("Chain"),
                Span::styled(fit(&c.chain_id, width.saturating_sub(22)), theme.title()),
                Span::raw(format!(" ({})", s.info.role)),
            ]));
            lines.push(Line::from(vec![
                label("Height"),
                Span::styled(format!("{:<10}", c.height), theme.title()),
                Span::raw(format!("{} ago", age(now.saturating_sub(c.best_timestamp_ms)))),
            ]));
            let lib_age =
                s.lib_timestamp_ms.map(|t| format!("{} ago", age(now.saturating_sub(t)))).unwrap_or_default();
            lines.push(Line::from(vec![
                label("Finalized"),
                Span::raw(format!("{:<10}", c.lib_height)),
                Span::raw(lib_age),
            ]));
            match &c.raft {
                // A chain agreed by Raft has no slots: the member's role and its leader instead.
                Some(r) => {
                    let (text, bad) = raft_line(r, now);
                    let style = if bad { theme.warn() } else { ratatui::style::Style::default() };
                    lines.push(Line::from(vec![
                        label("Raft"),
                        Span::styled(fit(&text, width.saturating_sub(12)), style),
                    ]));
                }
                None => {
                    let slot = match s.metrics.next_slot_ms {
                        Some(t) if t > now => format!("in {}", age(t - now)),
                        Some(_) => "now".to_string(),
                        None if s.info.role == "producer" => "not scheduled".to_string(),
                        None => "– (full node)".to_string(),
                    };
                    lines.push(Line::from(vec![label("Next slot"), Span::raw(slot)]));
                }
            }
            let sync =
                if c.syncing { format!("syncing to {}", c.best_known_height) } else { "in sync".into() };
            lines.push(Line::from(vec![label("Peers"), Span::raw(format!("{:<10}{sync}", c.peers))]));
            lines.push(Line::from(vec![
                label("Mempool"),
                Span::raw(format!(
                    "{:<10}{}",
                    format!("{} tx", s.metrics.mempool_txs),
                    bytes(s.metrics.mempool_bytes)
                )),
            ]));
            let producer =
                s.info.producer_address.map(|a| short(&a.to_string(), 12)).unwrap_or_else(|| "–".into());
            lines.push(Line::from(vec![label("Producer"), Span::raw(producer)]));
            if let Some(why) = &s.metrics.producer_blocked {
                lines.push(Line::styled(fit(&format!("NOT PRODUCING: {why}"), width), theme.warn()));
            }
        }
    }
    let title = match &app.node.value {
        Some(s) => format!("Chain · node v{} up {}", s.info.version, age(s.info.uptime_s * 1000)),
        None => "Chain".to_string(),
    };
    frame.render_widget(Paragraph::new(lines).block(panel(&fit(&title, width))), area);
}

/// The Raft member in one line: its role and term and the leader it follows, and whether that
/// needs the operator's eye (no leader: a majority of the voters is out of reach).
pub fn raft_line(r: &aergo_api::RaftView, now_ms: u64) -> (String, bool) {
    let voters = format!("{} voters", r.voters.len());
    match (r.role.as_str(), &r.leader) {
        ("full", _) => (format!("full node, not a voter ({voters}): follows their blocks"), false),
        ("leader", _) => (format!("leader, term {} · {voters}", r.term), false),
        (role, Some(leader)) => {
            (format!("{role}, term {} · leader {} · {voters}", r.term, short(leader, 8)), false)
        }
        (role, None) => (
            format!(
                "{role}: NO LEADER for {} · {voters} (no quorum?)",
                age(now_ms.saturating_sub(r.leaderless_since_ms))
            ),
            true,
        ),
    }
}

/// Splits `text` into lines of at most `width` characters, at spaces where possible.
fn textwrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(8);
    let mut out = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let extra = if line.is_empty() { 0 } else { 1 };
        if line.chars().count() + extra + word.chars().count() > width && !line.is_empty() {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&fit(word, width));
    }
    if !line.is_empty() {
        out.push(line);
    }
    out
}

fn draw_health(frame: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    let width = area.width.saturating_sub(2) as usize;
    let mut lines = Vec::new();
    let title = match (&app.agent.value, &app.agent.error) {
        (_, Some(error)) => {
            let since =
                app.agent.failing_since_ms.map(|t| age(app.now_ms.saturating_sub(t))).unwrap_or_default();
            lines.push(Line::styled("AGENT UNREACHABLE", theme.bad()));
            lines.push(Line::raw(fit(&app.settings.agent_url, width)));
            for part in textwrap(error, width).into_iter().take(3) {
                lines.push(Line::styled(part, theme.dim()));
            }
            lines.push(Line::raw(format!("down for {since}; retrying")));
            "Health: unknown".to_string()
        }
        (None, None) => {
            lines.push(Line::styled("waiting for the agent…", theme.dim()));
            "Health".to_string()
        }
        (Some(sample), None) => {
            let name_width = 13;
            // Worst first; when they do not all fit, the last line counts the rest.
            let mut checks: Vec<_> = sample.health.checks.iter().collect();
            checks.sort_by_key(|c| std::cmp::Reverse(c.status));
            let rows = area.height.saturating_sub(2) as usize;
            let hidden = checks.len().saturating_sub(rows);
            let shown = if hidden > 0 { rows.saturating_sub(1) } else { checks.len() };
            for check in &checks[..shown] {
                lines.push(Line::from(vec![
                    Span::styled(format!("{:<9}", check.status.as_str()), status_style(check.status, theme)),
                    Span::raw(format!("{:<name_width$}", check.name)),
                    Span::styled(fit(&check.reason, width.saturating_sub(9 + name_width)), theme.dim()),
                ]));
            }
            if hidden > 0 {
                let more = checks.len() - shown;
                lines
                    .push(Line::styled(format!("… {more} more (all shown on a taller screen)"), theme.dim()));
            }
            format!("Health: {}", sample.health.status.as_str().to_uppercase())
        }
    };
    frame.render_widget(Paragraph::new(lines).block(panel(&title)), area);
}

fn draw_rates(frame: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let buckets = left.width.saturating_sub(2) as usize;
    let (bps, tps) = app.rates(buckets.max(1) + 1);
    // The newest second is still filling: leave it out.
    let (bps, tps) = (&bps[..bps.len() - 1], &tps[..tps.len() - 1]);
    let avg = |v: &[u64]| {
        let n = v.len().clamp(1, 10);
        v[v.len().saturating_sub(n)..].iter().sum::<u64>() as f64 / n as f64
    };
    for (area, title, data) in
        [(left, format!("Blocks/s {:.1}", avg(bps)), bps), (right, format!("Tx/s {:.1}", avg(tps)), tps)]
    {
        let data: Vec<u64> = data
            .iter()
            .copied()
            .skip(data.len().saturating_sub(area.width.saturating_sub(2) as usize))
            .collect();
        frame.render_widget(
            Sparkline::default()
                .block(panel(&title))
                .data(&data)
                .bar_set(symbols::bar::THREE_LEVELS)
                .style(theme.accent()),
            area,
        );
    }
}

fn gauge_line(name: &str, ratio: f64, text: String, width: usize, theme: Theme) -> Line<'static> {
    let bar_width = width.saturating_sub(10 + text.chars().count() + 1).clamp(4, 40);
    let (filled, empty) = bar(ratio, bar_width);
    let style = if ratio >= 0.9 {
        theme.bad()
    } else if ratio >= 0.75 {
        theme.warn()
    } else {
        theme.accent()
    };
    Line::from(vec![
        Span::raw(format!("{name:<10}")),
        Span::styled(filled, style),
        Span::styled(empty, theme.dim()),
        Span::raw(format!(" {text}")),
    ])
}

fn host_lines(sample: &Sample, width: usize, theme: Theme) -> Vec<Line<'static>> {
    let h = &sample.host;
    let mut lines = Vec::new();
    let cpu = h.cpu.busy_pct / 100.0;
    lines.push(gauge_line(
        "CPU",
        cpu,
        format!("{:>3.0}%  load {:.2} {:.2} {:.2}", h.cpu.busy_pct, h.load[0], h.load[1], h.load[2]),
        width,
        theme,
    ));
    let m = &h.memory;
    let used = m.total_bytes.saturating_sub(m.available_bytes);
    let ratio = if m.total_bytes > 0 { used as f64 / m.total_bytes as f64 } else { 0.0 };
    lines.push(gauge_line(
        "Memory",
        ratio,
        format!("{:>3.0}%  {} of {}", ratio * 100.0, bytes(used), bytes(m.total_bytes)),
        width,
        theme,
    ));
    let fs = h
        .filesystems
        .iter()
        .find(|f| f.role.as_deref() == Some("data"))
        .or_else(|| h.filesystems.iter().find(|f| f.role.as_deref() == Some("root")));
    match fs {
        Some(fs) if fs.size_bytes > 0 => {
            let used = fs.size_bytes.saturating_sub(fs.avail_bytes);
            let ratio = used as f64 / fs.size_bytes as f64;
            lines.push(gauge_line(
                "Disk",
                ratio,
                format!("{:>3.0}%  {} free on {}", ratio * 100.0, bytes(fs.avail_bytes), fs.mount_point),
                width,
                theme,
            ));
        }
        _ => lines.push(Line::raw("Disk      unknown")),
    }
    let (rx, tx) =
        h.network.iter().fold((0.0, 0.0), |(r, t), i| (r + i.rx_bytes_per_s, t + i.tx_bytes_per_s));
    lines.push(Line::raw(format!("{:<10}rx {}/s  tx {}/s", "Network", bytes(rx as u64), bytes(tx as u64))));
    lines
}

fn draw_host(frame: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    let width = area.width.saturating_sub(2) as usize;
    let mut lines = match &app.agent.value {
        Some(sample) => host_lines(sample, width, theme),
        None => vec![Line::styled("no figures from the agent yet", theme.dim())],
    };
    if app.agent.error.is_some() && app.agent.value.is_some() {
        lines.insert(
            0,
            Line::styled("figures below are from before the agent stopped answering", theme.warn()),
        );
    }
    let addresses = if app.addresses.is_empty() { "none".to_string() } else { app.addresses.join("  ") };
    lines.push(Line::raw(fit(&format!("{:<10}{addresses}", "Addresses"), width)));
    // What a taller screen has room for: processes, pipeline stages, cores.
    if let Some(sample) = &app.agent.value {
        if let Some(p) = &sample.node_process {
            lines.push(Line::raw(fit(
                &format!(
                    "{:<10}pid {}  cpu {:.1}%  rss {}  threads {}  fds {}",
                    "Node proc",
                    p.pid,
                    p.cpu_pct,
                    bytes(p.rss_bytes),
                    p.threads,
                    p.open_fds
                ),
                width,
            )));
        }
        if let Some(c) = &sample.host.clock {
            let text = if c.synchronized {
                let server = c.server.as_deref().map(|s| format!(" to {s}")).unwrap_or_default();
                let offset =
                    c.offset_seconds.map(|o| format!(", offset {:+.1} ms", o * 1000.0)).unwrap_or_default();
                let stratum = c.stratum.map(|s| format!(", stratum {s}")).unwrap_or_default();
                format!("{:<10}synchronized{server}{offset}{stratum}", "Clock")
            } else {
                format!("{:<10}NOT synchronized ({})", "Clock", c.source)
            };
            let style = if c.synchronized { ratatui::style::Style::new() } else { theme.warn() };
            lines.push(Line::styled(fit(&text, width), style));
        }
        let a = &sample.agent;
        lines.push(Line::raw(fit(
            &format!(
                "{:<10}cpu {:.1}%  rss {}  spool {} ({} samples, {})",
                "Agent",
                a.cpu_pct,
                bytes(a.rss_bytes),
                a.spool.state,
                a.spool.samples,
                bytes(a.spool.bytes)
            ),
            width,
        )));
    }
    if let Some(node) = &app.node.value {
        for stage in &node.metrics.stages {
            lines.push(Line::raw(fit(
                &format!(
                    "{:<10}queue {}/{}  processed {}  busy answers {}",
                    stage.name.chars().take(9).collect::<String>(),
                    stage.queue_depth,
                    stage.queue_capacity,
                    stage.processed_total,
                    stage.busy_rejections_total
                ),
                width,
            )));
        }
    }
    if let Some(sample) = &app.agent.value {
        for core in &sample.host.cpu.cores {
            lines.push(gauge_line(
                &format!("cpu{}", core.cpu),
                core.busy_pct / 100.0,
                format!("{:>3.0}%", core.busy_pct),
                width,
                theme,
            ));
        }
    }
    let host = app.agent.value.as_ref().map(|s| s.host.hostname.as_str()).unwrap_or("this box");
    frame.render_widget(Paragraph::new(lines).block(panel(&format!("Host {host}"))), area);
}
