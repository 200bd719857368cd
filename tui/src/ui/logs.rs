//! Logs: the node's and the agent's log lines, follow mode, level filter, search.

use super::{fit, panel, Theme};
use crate::app::App;
use crate::logs::{Level, Shown};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

pub fn draw(frame: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    let logs = &app.logs;
    let [head, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    let shown = match logs.shown {
        Shown::Both => "node+agent",
        Shown::Only(s) => s.name(),
    };
    let search = if logs.editing_search {
        format!("/{}_", logs.search)
    } else if logs.search.is_empty() {
        "/ search".to_string()
    } else {
        format!("/{} (Esc clears)", logs.search)
    };
    let visible = logs.visible();
    let follow = if logs.follow { "follow on" } else { "follow off" };
    let head_text = format!(
        " s {shown} | l level≥{} | f {follow} | {search} | {} of {} lines",
        logs.min_level.name(),
        visible.len(),
        logs.total()
    );
    frame.render_widget(
        Paragraph::new(Line::styled(fit(&head_text, head.width as usize), theme.title())),
        head,
    );

    let width = body.width.saturating_sub(2) as usize;
    let rows = body.height.saturating_sub(2) as usize;
    let mut lines: Vec<Line<'_>> = Vec::new();
    for (source, error) in &logs.errors {
        lines.push(Line::styled(fit(&format!("{}: {error}", source.name()), width), theme.bad()));
    }
    let room = rows.saturating_sub(lines.len());
    let scroll = if logs.follow { 0 } else { logs.scroll.min(visible.len().saturating_sub(room)) };
    let end = visible.len().saturating_sub(scroll);
    let start = end.saturating_sub(room);
    let tag_both = logs.shown == Shown::Both;
    for line in &visible[start..end] {
        let style = match line.level {
            Level::Error => theme.bad(),
            Level::Warn => theme.warn(),
            Level::Debug | Level::Trace => theme.dim(),
            Level::Info => ratatui::style::Style::new(),
        };
        let mut spans = Vec::new();
        let mut room = width;
        if tag_both {
            let tag = format!("{:<6}", line.source.name());
            room = room.saturating_sub(tag.len());
            spans.push(Span::styled(tag, theme.accent()));
        }
        spans.push(Span::styled(fit(&line.text, room), style));
        lines.push(Line::from(spans));
    }
    if visible.is_empty() && logs.errors.is_empty() {
        lines.push(Line::styled("no log lines (yet) match", theme.dim()));
    }
    let paths: Vec<String> =
        logs.paths.iter().map(|(s, p)| format!("{}: {}", s.name(), p.display())).collect();
    let title = if scroll > 0 {
        format!("Logs — {scroll} lines up, End follows")
    } else {
        format!("Logs — {}", paths.join("  "))
    };
    frame.render_widget(Paragraph::new(lines).block(panel(&fit(&title, width.saturating_sub(2)))), body);
}
