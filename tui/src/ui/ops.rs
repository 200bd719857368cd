//! Operations: restart the node or the agent, reboot, shut down — each after a confirmation.

use super::{draw_confirm, fit, panel, Theme};
use crate::app::App;
use crate::ops::Op;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState, Paragraph};
use ratatui::Frame;

pub fn draw(frame: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    let width = area.width.saturating_sub(2) as usize;
    // Every record the console keeps when the screen is tall enough, else the newest few.
    let audit_rows = if area.height >= 30 { crate::collect::AUDIT_SHOWN as u16 + 2 } else { 6 };
    let [list, info, audit] =
        Layout::vertical([Constraint::Length(6), Constraint::Min(3), Constraint::Length(audit_rows)])
            .areas(area);
    let items: Vec<ListItem<'_>> =
        Op::ALL.iter().map(|op| ListItem::new(format!(" {}", op.label()))).collect();
    let mut state = ListState::default().with_selected(Some(app.ops.selected));
    frame.render_stateful_widget(
        List::new(items)
            .highlight_style(theme.selected())
            .highlight_symbol("›")
            .block(panel("Operations — ↑↓ choose, Enter run")),
        list,
        &mut state,
    );
    let op = Op::ALL.get(app.ops.selected).copied().unwrap_or(Op::RestartNode);
    let mut lines = vec![
        Line::raw(fit(op.consequence(), width)),
        Line::styled(fit(&format!("runs: {}", app.console.command(op).join(" ")), width), theme.dim()),
        Line::raw(""),
    ];
    if let Some(running) = app.ops.running {
        lines.push(Line::styled(format!("{}: running…", running.label()), theme.warn()));
    }
    match &app.ops.last {
        Some((done, Ok(text))) => lines.push(Line::from(vec![
            Span::styled(format!("{}: done", done.label()), theme.ok()),
            Span::raw(fit(&format!(" — {text}"), width.saturating_sub(30))),
        ])),
        Some((done, Err(e))) => {
            lines.push(Line::styled(fit(&format!("{}: FAILED — {e}", done.label()), width), theme.bad()))
        }
        None => {}
    }
    // What Horde pins the agent by.
    if let Some(agent) = app.agent.value.as_ref().map(|s| &s.agent) {
        let tls = match &agent.tls_fingerprint {
            Some(f) => format!("Agent certificate (Horde pins it): SHA-256 {f}"),
            None => "Agent: plain HTTP (provision.toml [agent] plain_http)".to_string(),
        };
        lines.push(Line::styled(fit(&tls, width), theme.dim()));
    }
    // An update Horde asked for (install-update), as the agent carries it out.
    if let Some(u) = app.agent.value.as_ref().and_then(|s| s.update.as_ref()) {
        lines.push(Line::raw(""));
        lines.push(Line::from(vec![
            Span::raw("Update: "),
            Span::styled(update_line(u), update_style(theme, &u.phase)),
        ]));
        lines.push(Line::styled(fit(&format!("  {} — {}", u.url, u.message), width), theme.dim()));
    }
    if let Some(c) = app.agent.value.as_ref().and_then(|s| s.update_channel.as_ref()) {
        let (text, style) = match (&c.error, &c.offered_version) {
            (Some(e), _) => (format!("Update channel {}: {e}", c.url), theme.bad()),
            (None, Some(v)) => (
                format!(
                    "Update channel {}: offers {v}, read {} ago",
                    c.url,
                    super::age(app.now_ms.saturating_sub(c.checked_ms))
                ),
                theme.dim(),
            ),
            (None, None) => (format!("Update channel {}: not read yet", c.url), theme.dim()),
        };
        lines.push(Line::styled(fit(&text, width), style));
    }
    frame.render_widget(Paragraph::new(lines).block(panel(op.label())), info);
    let rows = audit.height.saturating_sub(2) as usize;
    let lines: Vec<Line<'_>> = match &app.ops.audit {
        None => vec![Line::styled("waiting for the agent", theme.dim())],
        Some(Err(e)) => vec![Line::styled(fit(&format!("cannot read it: {e}"), width), theme.bad())],
        Some(Ok(entries)) if entries.is_empty() => {
            vec![Line::styled("none yet: Horde has asked for nothing", theme.dim())]
        }
        Some(Ok(entries)) => entries
            .iter()
            .take(rows)
            .map(|e| {
                let style = match e.result.as_str() {
                    "failed" => theme.bad(),
                    "refused" | "cancelled" => theme.warn(),
                    _ => theme.ok(),
                };
                Line::from(vec![
                    Span::raw(format!(
                        "{:>14}  ",
                        format!("{} ago", super::age(app.now_ms.saturating_sub(e.at_ms)))
                    )),
                    Span::styled(format!("{:<14} {:<8}", e.action, e.result), style),
                    Span::raw(fit(
                        &format!(" token {} from {} — {}", e.token_fingerprint, e.client, e.message),
                        width.saturating_sub(40),
                    )),
                ])
            })
            .collect(),
    };
    frame.render_widget(Paragraph::new(lines).block(panel("Horde's actions (the agent's audit log)")), audit);
    if let Some(op) = app.ops.confirming {
        draw_confirm(frame, theme, area, &format!("{}?", op.label()), op.consequence());
    }
}

/// `0.1.0-b: installing 40 % (from 0.1.0-a on slot A)`.
pub fn update_line(u: &aergo_telemetry::UpdateStatus) -> String {
    let version = u.version.as_deref().unwrap_or("(version not read yet)");
    let progress = u.progress_pct.map(|p| format!(" {p} %")).unwrap_or_default();
    let from = match (&u.from_version, &u.from_slot) {
        (Some(v), Some(s)) => format!(" (from {v} on slot {s})"),
        (Some(v), None) => format!(" (from {v})"),
        _ => String::new(),
    };
    format!("{version}: {}{progress}{from}", u.phase)
}

fn update_style(theme: Theme, phase: &str) -> ratatui::style::Style {
    match phase {
        "failed" | "rolled-back" => theme.bad(),
        "refused" | "cancelled" => theme.warn(),
        "marked-good" => theme.ok(),
        _ => theme.dim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_reads_as_its_version_phase_progress_and_origin() {
        let u = aergo_telemetry::UpdateStatus {
            phase: "installing".into(),
            progress_pct: Some(40),
            version: Some("0.1.0-b".into()),
            from_version: Some("0.1.0-a".into()),
            from_slot: Some("A".into()),
            ..Default::default()
        };
        assert_eq!(update_line(&u), "0.1.0-b: installing 40 % (from 0.1.0-a on slot A)");
        let early = aergo_telemetry::UpdateStatus { phase: "downloading".into(), ..Default::default() };
        assert_eq!(update_line(&early), "(version not read yet): downloading");
    }
}
