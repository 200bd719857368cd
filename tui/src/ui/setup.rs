//! Setup: the steps, the focused step's fields, and the review of current against new settings.

use super::{draw_confirm, fit, panel, Theme};
use crate::app::App;
use crate::setup::flow::{Confirm, Field, FieldKind, SetupState, Step, TokenChoice};
use crate::setup::Settings;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

pub fn draw(frame: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    let s = &app.setup;
    let [steps, body, message, hints] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let width = area.width as usize;

    let mut spans = Vec::new();
    for (i, step) in Step::ALL.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" › ", theme.dim()));
        }
        let skipped = *step == Step::Key && s.draft.role != crate::setup::Role::Producer;
        let style = if *step == s.step {
            theme.selected()
        } else if skipped {
            theme.dim().add_modifier(ratatui::style::Modifier::CROSSED_OUT)
        } else {
            ratatui::style::Style::new()
        };
        spans.push(Span::styled(step.title(), style));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), steps);

    let inner = body.width.saturating_sub(2) as usize;
    let mut lines = Vec::new();
    if s.first_boot() {
        lines.push(Line::styled(
            "This box has not been set up yet. Fill in each step, then apply.",
            theme.warn(),
        ));
    }
    if let Some(e) = &s.current_error {
        lines.push(Line::styled(fit(&format!("current settings unreadable: {e}"), inner), theme.bad()));
    }
    if s.step == Step::Review {
        review_lines(s, inner, theme, &mut lines);
    }
    let fields = s.fields();
    for (i, field) in fields.iter().enumerate() {
        lines.push(field_line(s, *field, i == s.focus, inner, theme));
    }
    step_info(s, inner, theme, &mut lines);
    frame.render_widget(Paragraph::new(lines).block(panel(s.step.title())), body);

    let msg = match &s.message {
        Some(Ok(t)) => Line::styled(fit(t, width), theme.ok()),
        Some(Err(e)) => Line::styled(fit(e, width), theme.bad()),
        None => Line::raw(""),
    };
    frame.render_widget(Paragraph::new(msg), message);
    let hint = if s.editing {
        "typing: Enter or Esc done, Backspace deletes, Ctrl-U clears"
    } else {
        "↑↓ field  Enter edit/choose/press  ←→ choose  n next step  p back  R revert"
    };
    frame.render_widget(Paragraph::new(Line::styled(fit(hint, width), theme.dim())), hints);

    match s.confirm {
        Some(Confirm::Apply) => draw_confirm(
            frame,
            theme,
            area,
            "Apply these settings?",
            "The current files are kept as the last good copy; revert brings them back.",
        ),
        Some(Confirm::Revert) => draw_confirm(
            frame,
            theme,
            area,
            "Revert to the last good configuration?",
            "The files written by the last apply are replaced by the ones before it.",
        ),
        None => {}
    }
}

fn field_line(s: &SetupState, field: Field, focused: bool, width: usize, theme: Theme) -> Line<'static> {
    let marker = if focused { "› " } else { "  " };
    let label = SetupState::label(field);
    let style = if focused { theme.selected() } else { ratatui::style::Style::new() };
    match SetupState::kind(field) {
        FieldKind::Button => Line::from(vec![Span::raw(marker), Span::styled(format!("[ {label} ]"), style)]),
        FieldKind::Choice => {
            let value = fit(&s.value(field), width.saturating_sub(28));
            Line::from(vec![
                Span::raw(format!("{marker}{label:<24}")),
                Span::styled(format!("‹ {value} ›"), style),
            ])
        }
        FieldKind::Text { .. } => {
            let cursor = if focused && s.editing { "_" } else { "" };
            let value = fit(&s.value(field), width.saturating_sub(28));
            Line::from(vec![
                Span::raw(format!("{marker}{label:<24}")),
                Span::styled(format!("{value}{cursor}"), style),
            ])
        }
    }
}

fn step_info(s: &SetupState, width: usize, theme: Theme, lines: &mut Vec<Line<'static>>) {
    let d = &s.draft;
    let mut info = |text: String, style| lines.push(Line::styled(fit(&text, width), style));
    match s.step {
        Step::Hostname => info("The name this box has on the network and in Horde.".into(), theme.dim()),
        Step::Network if d.dhcp => {
            info("The address comes from the network's DHCP server.".into(), theme.dim())
        }
        Step::Network => info("DNS servers: separated by commas.".into(), theme.dim()),
        Step::Node if d.devnet => {
            info("A local devnet: a chain of its own with this box as its only producer.".into(), theme.dim())
        }
        Step::Node => {
            info(
                "Join a network: the genesis file it was started from (path on the box).".into(),
                theme.dim(),
            );
            info(
                "Bootstrap peers: /ip4/ADDR/tcp/PORT (add /p2p/PEER_ID if known), separated by commas."
                    .into(),
                theme.dim(),
            );
        }
        Step::Key => {
            match s.producer_address() {
                Some(a) => info(format!("Address: {a}"), theme.title()),
                None => info("No key loaded yet.".into(), theme.dim()),
            }
            if let Some(secret) = s.visible_secret() {
                info("SECRET KEY — write it down, then type its first 8 characters:".into(), theme.warn());
                info(secret, theme.warn());
            } else if d.key_choice == crate::setup::flow::KeyChoice::Generate {
                if d.backed_up {
                    info("Backed up. You can go on (n).".into(), theme.ok());
                } else {
                    info("Back this key up before going on: it cannot be recovered.".into(), theme.warn());
                }
            }
        }
        Step::Horde => match (s.visible_token(), d.token_choice) {
            (Some(token), _) => {
                info("New token — copy it into Horde now; it is shown only here:".into(), theme.warn());
                info(token.to_string(), theme.warn());
            }
            (None, TokenChoice::Generate) if d.new_token.is_some() => {
                info("A new token was made (shown once). Choose again to make another.".into(), theme.dim())
            }
            (None, _) => info("Horde polls the agent with this bearer token.".into(), theme.dim()),
        },
        Step::Repositories => {
            if d.repositories.is_empty() {
                info("No repository besides the public chain.".into(), theme.dim());
            }
            for r in &d.repositories {
                let p2p = match &r.p2p.listen {
                    Some(l) => format!("swarm {l}, {} bootstrap", r.p2p.bootstrap.len()),
                    None => "no swarm of its own".into(),
                };
                info(format!("{:<14}{}  {p2p}", r.name, r.genesis), ratatui::style::Style::new());
            }
            info(
                "Choose one (←→) to edit or remove it, or \"add a new repository\"; save, then apply on Review."
                    .into(),
                theme.dim(),
            );
            info(
                "Genesis: a path on the box (relative: the boot partition). A member key comes with a \
                 provision file."
                    .into(),
                theme.dim(),
            );
        }
        Step::Review => {}
    }
}

fn review_lines(s: &SetupState, width: usize, theme: Theme, lines: &mut Vec<Line<'static>>) {
    let new = s.draft_settings();
    let col = width.saturating_sub(16) / 2;
    let row = |name: &str, cur: String, new: String, theme: Theme| {
        let style = if cur == new { ratatui::style::Style::new() } else { theme.warn() };
        Line::from(vec![
            Span::raw(format!("{name:<14}")),
            Span::raw(format!("{:<col$}  ", fit(&cur, col))),
            Span::styled(fit(&new, col), style),
        ])
    };
    lines.push(Line::styled(format!("{:<14}{:<col$}  {}", "", "Current", "New"), theme.title()));
    let cur = s.current.as_ref();
    let get = |f: &dyn Fn(&Settings) -> String| cur.map(f).unwrap_or_else(|| "–".into());
    lines.push(row("Hostname", get(&|c| c.hostname.clone()), new.hostname.clone(), theme));
    lines.push(row("Network", get(&|c| c.network_summary()), new.network_summary(), theme));
    if !new.network.dhcp {
        let gw = |n: &crate::setup::settings::Network| {
            format!("gw {} dns {}", n.gateway.clone().unwrap_or_default(), n.dns.join(","))
        };
        lines.push(row(
            "",
            get(&|c| if c.network.dhcp { String::new() } else { gw(&c.network) }),
            gw(&new.network),
            theme,
        ));
    }
    lines.push(row(
        "Role",
        get(&|c| c.node.role.name().to_string()),
        new.node.role.name().to_string(),
        theme,
    ));
    lines.push(row("Chain", get(&|c| c.node.chain.clone()), new.node.chain.clone(), theme));
    let p2p = |c: &Settings| {
        if !c.p2p_enabled() {
            return "off".to_string();
        }
        let peers = match c.p2p.bootstrap.len() {
            0 => "no bootstrap peers".to_string(),
            1 => "1 bootstrap peer".to_string(),
            n => format!("{n} bootstrap peers"),
        };
        format!("{}, {peers}", c.p2p.listen)
    };
    lines.push(row("P2p", get(&p2p), p2p(&new), theme));
    let addr = |a: Option<&String>| a.cloned().unwrap_or_else(|| "–".into());
    lines.push(row(
        "Producer key",
        get(&|c| addr(c.node.producer_address.as_ref())),
        addr(new.node.producer_address.as_ref()),
        theme,
    ));
    let repos = |c: &Settings| {
        if c.repositories.is_empty() {
            return "none".to_string();
        }
        c.repositories.iter().map(|r| r.name.clone()).collect::<Vec<_>>().join(", ")
    };
    lines.push(row("Repositories", get(&repos), repos(&new), theme));
    let token_now = if s.has_token { "set" } else { "none" };
    let token_new = if new.agent.token.is_some() { "new (hidden)" } else { token_now };
    lines.push(row("Agent token", token_now.into(), token_new.into(), theme));
    lines.push(Line::raw(""));
}
