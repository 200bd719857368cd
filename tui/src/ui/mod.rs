//! Drawing: a pure function of [`App`]. The frame is a tab bar, the current screen, and a status line.
//!
//! Usable at 80×24 and on a serial console without colours: every state is also written as a word
//! (`UP`, `DOWN`, `ok`, `degraded`), selection uses reverse video, and the block characters are those
//! of the PC console font (`█ ░ ▄`), so nothing depends on colour or on a rich font.

mod blocks;
mod dashboard;
mod logs;
mod ops;
mod peers;
mod setup;

use crate::app::{App, Tab};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

/// Styles for colour and monochrome terminals.
#[derive(Clone, Copy)]
pub struct Theme {
    color: bool,
}

impl Theme {
    pub fn new(color: bool) -> Theme {
        Theme { color }
    }

    pub fn ok(self) -> Style {
        if self.color {
            Style::new().fg(Color::Green)
        } else {
            Style::new()
        }
    }

    pub fn warn(self) -> Style {
        if self.color {
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        }
    }

    pub fn bad(self) -> Style {
        if self.color {
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        }
    }

    pub fn dim(self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new()
        }
    }

    pub fn title(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    pub fn accent(self) -> Style {
        if self.color {
            Style::new().fg(Color::Cyan)
        } else {
            Style::new()
        }
    }
}

/// Draws the whole console.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let theme = Theme::new(app.settings.color);
    let area = frame.area();
    if area.width < 20 || area.height < 5 {
        frame.render_widget(Paragraph::new("window too small"), area);
        return;
    }
    if app.locked {
        draw_locked(frame, app, theme, area);
        return;
    }
    let [tabs, body, status] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1), Constraint::Length(1)]).areas(area);
    draw_tabs(frame, app, theme, tabs);
    match app.tab {
        Tab::Dashboard => dashboard::draw(frame, app, theme, body),
        Tab::Blocks => blocks::draw(frame, app, theme, body),
        Tab::Peers => peers::draw(frame, app, theme, body),
        Tab::Logs => logs::draw(frame, app, theme, body),
        Tab::Setup => setup::draw(frame, app, theme, body),
        Tab::Operations => ops::draw(frame, app, theme, body),
    }
    draw_status(frame, app, theme, status);
}

fn draw_tabs(frame: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    let mut spans =
        vec![Span::styled(" AERGO ", theme.title().add_modifier(Modifier::REVERSED)), Span::raw(" ")];
    for (i, tab) in Tab::ALL.iter().enumerate() {
        let text = format!("{} {}", i + 1, tab.title());
        if *tab == app.tab {
            spans.push(Span::styled(format!("[{text}]"), theme.title().add_modifier(Modifier::REVERSED)));
        } else {
            spans.push(Span::raw(format!(" {text} ")));
        }
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn up_down(up: bool, theme: Theme) -> Span<'static> {
    if up {
        Span::styled("UP", theme.ok())
    } else {
        Span::styled("DOWN", theme.bad())
    }
}

fn draw_status(frame: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    let mut spans = vec![
        Span::raw(" node "),
        up_down(app.node.up(), theme),
        Span::raw("  agent "),
        up_down(app.agent.up(), theme),
        Span::raw("  "),
    ];
    if let Some(note) = &app.note {
        spans.push(Span::styled(note.clone(), theme.warn()));
    } else {
        let quit = if app.settings.kiosk { "" } else { "  q quit" };
        spans.push(Span::styled(format!("Tab/1-6 screens  Ctrl-L lock{quit}"), theme.dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_locked(frame: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    let height = app.node.value.as_ref().map(|n| n.chain.height.to_string()).unwrap_or_else(|| "?".into());
    let health = app.agent.value.as_ref().map(|s| s.health.status.as_str()).unwrap_or("unknown");
    let host = app.agent.value.as_ref().map(|s| s.host.hostname.clone()).unwrap_or_default();
    let lines = vec![
        Line::styled("AERGO OS — console locked", theme.title()),
        Line::raw(""),
        Line::from(vec![
            Span::raw(format!("{host}  height {height}  health {health}  node ")),
            up_down(app.node.up(), theme),
        ]),
        Line::raw(""),
        Line::styled("Press Enter to unlock", theme.dim()),
    ];
    let box_area = centered(area, 60.min(area.width), 7.min(area.height));
    frame.render_widget(
        Paragraph::new(lines).alignment(ratatui::layout::Alignment::Center).block(Block::bordered()),
        box_area,
    );
}

/// A rectangle of `w`×`h` in the middle of `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

/// A confirmation box over the screen.
pub fn draw_confirm(frame: &mut Frame<'_>, theme: Theme, area: Rect, question: &str, detail: &str) {
    let r = centered(area, 64, 7);
    frame.render_widget(Clear, r);
    let text = vec![
        Line::styled(question.to_string(), theme.title()),
        Line::raw(detail.to_string()),
        Line::raw(""),
        Line::styled("y: yes, any other key: no", theme.warn()),
    ];
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: true }).block(Block::bordered().title(" Confirm ")),
        r,
    );
}

/// A titled, bordered block.
pub fn panel(title: &str) -> Block<'_> {
    Block::default().borders(Borders::ALL).title(format!(" {title} "))
}

/// `0.4 s`, `12 s`, `3 min`, `2 h 5 min`, `3 d`.
pub fn age(ms: u64) -> String {
    match ms {
        0..=9_999 => format!("{:.1} s", ms as f64 / 1000.0),
        10_000..=119_999 => format!("{} s", ms / 1000),
        120_000..=7_199_999 => format!("{} min", ms / 60_000),
        7_200_000..=172_799_999 => format!("{} h {} min", ms / 3_600_000, ms / 60_000 % 60),
        _ => format!("{} d", ms / 86_400_000),
    }
}

/// `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The first and last characters of a long identifier: `1a2b3c4d…9f8e`.
pub fn short(id: &str, head: usize) -> String {
    let n = id.chars().count();
    if n <= head + 5 {
        return id.to_string();
    }
    let start: String = id.chars().take(head).collect();
    let end: String = id.chars().skip(n - 4).collect();
    format!("{start}…{end}")
}

/// A text bar: `████░░░░░░`, `width` cells for `ratio` (clamped to 0..=1).
pub fn bar(ratio: f64, width: usize) -> (String, String) {
    let ratio = if ratio.is_finite() { ratio.clamp(0.0, 1.0) } else { 0.0 };
    let filled = (ratio * width as f64).round() as usize;
    ("█".repeat(filled), "░".repeat(width - filled.min(width)))
}

/// Cuts `text` to `width` characters, marking the cut.
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else if width == 0 {
        String::new()
    } else {
        let mut s: String = text.chars().take(width - 1).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(age(400), "0.4 s");
        assert_eq!(age(65_000), "65 s");
        assert_eq!(age(7_500_000), "2 h 5 min");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(short(&"ab".repeat(32), 8), "abababab…abab");
        assert_eq!(bar(0.5, 4), ("██".to_string(), "░░".to_string()));
        assert_eq!(bar(f64::NAN, 2).1, "░░");
        assert_eq!(fit("abcdef", 4), "abc…");
    }
}
