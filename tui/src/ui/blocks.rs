//! Blocks: the recent blocks, live, newest first; Enter shows one's header and transactions.

use super::{age, fit, panel, short, Theme};
use crate::app::App;
use aergo_api::{BlockTxs, BlockView};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

pub fn draw(frame: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    let (list, detail) = if area.width >= 110 {
        let [l, d] = Layout::horizontal([Constraint::Length(58), Constraint::Min(40)]).areas(area);
        (l, d)
    } else {
        let [l, d] = Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area);
        (l, d)
    };
    draw_list(frame, app, theme, list);
    draw_detail(frame, app, theme, detail);
}

fn draw_list(frame: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    let follow = if app.block_selected.is_none() { "following" } else { "f: follow" };
    let branches = if app.held_branches.is_empty() { "" } else { ", b: branch" };
    let title =
        format!("Blocks of {} ({}) — ↑↓ Enter, {follow}{branches}", app.shown_branch, app.blocks.len());
    if app.blocks.is_empty() {
        let text = if app.node.error.is_some() { "the node is unreachable" } else { "no blocks yet" };
        frame.render_widget(Paragraph::new(Line::styled(text, theme.dim())).block(panel(&title)), area);
        return;
    }
    let rows = app.blocks.iter().rev().map(|b| {
        Row::new(vec![
            Cell::from(b.height.to_string()),
            Cell::from(age(app.now_ms.saturating_sub(b.header.timestamp_ms))),
            Cell::from(b.header.tx_count.to_string()),
            Cell::from(short(&b.hash.to_string(), 8)),
            Cell::from(short(&b.header.producer.to_string(), 10)),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(6),
            Constraint::Length(14),
            Constraint::Min(10),
        ],
    )
    .header(Row::new(vec!["Height", "Age", "Txs", "Hash", "Producer"]).style(theme.title()))
    .row_highlight_style(theme.selected())
    .highlight_symbol("›")
    .block(panel(&title));
    let mut state = TableState::default().with_selected(Some(app.block_selected.unwrap_or(0)));
    frame.render_stateful_widget(table, area, &mut state);
}

fn draw_detail(frame: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    let width = area.width.saturating_sub(2) as usize;
    let selected = app.selected_block();
    let (title, lines) = match (selected, &app.block_detail) {
        (None, _) => ("Block".to_string(), vec![Line::styled("select a block", theme.dim())]),
        (Some(b), Some((h, Ok(full)))) if *h == b.height => {
            (format!("Block {}", b.height), block_lines(full, width, theme))
        }
        (Some(b), Some((h, Err(e)))) if *h == b.height => (
            format!("Block {}", b.height),
            vec![Line::styled(fit(&format!("cannot load: {e}"), width), theme.bad())],
        ),
        (Some(b), _) => {
            let mut lines = block_lines(b, width, theme);
            lines.push(Line::styled("Enter: load its transactions", theme.dim()));
            (format!("Block {}", b.height), lines)
        }
    };
    frame.render_widget(Paragraph::new(lines).block(panel(&title)), area);
}

fn block_lines(b: &BlockView, width: usize, theme: Theme) -> Vec<Line<'static>> {
    let h = &b.header;
    let id = width.saturating_sub(11);
    let field = |name: &str, value: String| Line::raw(fit(&format!("{name:<11}{value}"), width));
    let mut lines = vec![
        field("Hash", fit(&b.hash.to_string(), id)),
        field("Previous", fit(&h.prev_hash.to_string(), id)),
        field(
            "Time",
            humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(h.timestamp_ms),
            )
            .to_string(),
        ),
        field("Branch", h.branch.clone()),
        field("Producer", fit(&h.producer.to_string(), id)),
        field("State root", fit(&h.state_root.to_string(), id)),
        field("Tx root", fit(&h.tx_root.to_string(), id)),
        field("Txs", h.tx_count.to_string()),
    ];
    if let BlockTxs::Full(txs) = &b.transactions {
        if txs.is_empty() {
            lines.push(Line::styled("no transactions", theme.dim()));
        }
        for tx in txs {
            lines.push(Line::raw(fit(
                &format!(
                    "{} {} → {} {} (nonce {})",
                    short(&tx.hash.to_string(), 6),
                    short(&tx.sender.to_string(), 8),
                    short(&tx.recipient.to_string(), 8),
                    tx.amount,
                    tx.nonce
                ),
                width,
            )));
        }
    }
    lines
}
