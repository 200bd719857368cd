//! Peers: each connected peer's id, address, best height and how far it is from ours; below, the
//! bootstrap addresses of the node's config and whether the node reaches them (an unreachable one
//! with the reason of its last failed dial).

use super::{fit, panel, Theme};
use crate::app::App;
use aergo_api::BootstrapView;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Row, Table};
use ratatui::Frame;

pub fn draw(frame: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    let bootstrap = app.node.value.as_ref().map(|s| s.info.bootstrap.as_slice()).unwrap_or_default();
    let area = if bootstrap.is_empty() {
        area
    } else {
        let rows = (bootstrap.len() as u16 + 2).min(area.height / 2);
        let [peers, boot] = Layout::vertical([Constraint::Min(4), Constraint::Length(rows)]).areas(area);
        draw_bootstrap(frame, bootstrap, theme, boot);
        peers
    };
    let width = area.width.saturating_sub(2) as usize;
    let Some(snapshot) = &app.node.value else {
        let text =
            if app.node.error.is_some() { "the node is unreachable" } else { "waiting for the node…" };
        frame.render_widget(Paragraph::new(Line::styled(text, theme.dim())).block(panel("Peers")), area);
        return;
    };
    let ours = snapshot.chain.height;
    let own_id = snapshot.info.peer_id.clone().unwrap_or_else(|| "none (not on a p2p network)".into());
    let title =
        format!("Peers ({}) — this node: {}", snapshot.peers.len(), fit(&own_id, width.saturating_sub(30)));
    if snapshot.peers.is_empty() {
        let mut lines = vec![Line::raw("No peers connected.")];
        if app.node.error.is_some() {
            lines.push(Line::styled("(as last seen: the node is not answering now)", theme.warn()));
        }
        if snapshot.info.peer_id.is_none() {
            lines.push(Line::styled(
                fit("This node runs without a p2p network: it is the only producer of its chain.", width),
                theme.dim(),
            ));
        }
        frame.render_widget(Paragraph::new(lines).block(panel(&title)), area);
        return;
    }
    let rows = snapshot.peers.iter().map(|p| {
        let lag = match ours.cmp(&p.best_height) {
            std::cmp::Ordering::Greater => format!("{} behind", ours - p.best_height),
            std::cmp::Ordering::Less => format!("{} ahead", p.best_height - ours),
            std::cmp::Ordering::Equal => "in step".into(),
        };
        Row::new(vec![p.peer_id.clone(), p.address.clone(), p.best_height.to_string(), lag])
    });
    let table = Table::new(
        rows,
        [Constraint::Percentage(35), Constraint::Percentage(35), Constraint::Length(10), Constraint::Min(10)],
    )
    .header(Row::new(vec!["Peer id", "Address", "Best", "Lag"]).style(theme.title()))
    .block(panel(&title));
    frame.render_widget(table, area);
}

fn draw_bootstrap(frame: &mut Frame<'_>, bootstrap: &[BootstrapView], theme: Theme, area: Rect) {
    let width = area.width.saturating_sub(2) as usize;
    let lines: Vec<Line<'_>> = bootstrap
        .iter()
        .map(|b| {
            let (state, style) = if b.is_self {
                ("this node".to_string(), theme.dim())
            } else if b.connected {
                ("connected".to_string(), theme.ok())
            } else if b.failures > 0 {
                let why = b.last_error.as_deref().unwrap_or("no answer");
                (format!("unreachable ({} tries): {why}", b.failures), theme.warn())
            } else {
                ("dialling".to_string(), theme.dim())
            };
            Line::styled(fit(&format!("{:<28} {state}", b.address), width), style)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(panel("Bootstrap peers")), area);
}
