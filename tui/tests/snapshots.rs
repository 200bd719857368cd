//! Every screen drawn into ratatui's `TestBackend` from fixture data, at 80×24 and 120×40, compared
//! with the snapshots in `tests/snapshots/` (insta). The fixture is deterministic: a fixed clock, a
//! seeded producer key, and telemetry from `fixtures/telemetry.json` (a real agent sample with its
//! varying figures fixed).

use aergo_api::{BlockTxs, PeerView, TxView};
use aergo_console::app::{App, Effect, Event, Tab, Update};
use aergo_console::fixture::{app, block, hash, producer, snapshot, HEIGHT, NOW};
use aergo_console::logs::LogSource;
use aergo_console::ops::ConsoleConfig;
use aergo_console::setup::{self, Material, Role};
use aergo_primitives::crypto::Keypair;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use std::path::PathBuf;

const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

fn key(app: &mut App, code: KeyCode) {
    app.handle(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

fn render(app: &App, (w, h): (u16, u16)) -> TestBackend {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|f| aergo_console::ui::draw(f, app)).unwrap();
    terminal.backend().clone()
}

/// `tests/snapshots/` of the clone being tested, read when the test runs (`cargo test` sets
/// `CARGO_MANIFEST_DIR` for the test process). insta's default is the compile-time path, which names
/// the clone the executable was first built in when clones share the build cache (`scripts/env.sh`).
fn snapshot_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("tests/snapshots")
}

fn check(name: &str, app: &App) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(snapshot_dir());
    settings.bind(|| {
        for size in SIZES {
            insta::assert_snapshot!(format!("{name}_{}x{}", size.0, size.1), render(app, size));
        }
    });
}

/// A root with settings applied, so that the console does not open on first-boot Setup.
fn configured_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let settings: setup::Settings = toml::from_str(
        "hostname = \"aergo-1\"\n[node]\nrole = \"producer\"\nchain = \"devnet\"\n[agent]\ntoken = \"0123456789abcdef0123456789abcdef\"\n",
    )
    .unwrap();
    setup::apply(dir.path(), &settings, &Material { producer_key: Some(producer()), ..Default::default() })
        .unwrap();
    dir
}

#[test]
fn dashboard() {
    let root = configured_root();
    let app = app(root.path());
    assert_eq!(app.tab, Tab::Dashboard);
    check("dashboard", &app);
}

/// A voter of a chain agreed by Raft: its role, term and leader where a producer's next slot is.
#[test]
fn dashboard_raft_follower() {
    let root = configured_root();
    let mut app = app(root.path());
    let mut s = snapshot(vec![]);
    s.chain.consensus = "raft".into();
    s.chain.raft = Some(aergo_api::RaftView {
        id: 7,
        role: "follower".into(),
        term: 3,
        leader: Some("9c1f2e4b7a".repeat(6) + "9c1f"),
        voters: vec!["a".repeat(64), "b".repeat(64), "c".repeat(64)],
        commit_index: 120,
        applied_index: 120,
        leaderless_since_ms: 0,
    });
    app.handle(Event::Update(Update::Node(Ok(Box::new(s)))));
    check("dashboard_raft", &app);
}

/// A node hosting two repositories beside its public chain: one line each, the one without a
/// quorum in the warning colour with why.
#[test]
fn dashboard_repositories() {
    let root = configured_root();
    let mut app = app(root.path());
    app.handle(Event::Update(Update::Node(Ok(Box::new(snapshot(vec![]))))));
    let repo = |name: &str, consensus: &str, role: &str, health: &str, reason: Option<&str>| {
        aergo_api::RepositoryView {
            name: name.into(),
            chain_id: format!("{name}-chain"),
            consensus: consensus.into(),
            height: 1_204,
            lib_height: 1_204,
            peers: 2,
            role: role.into(),
            health: health.into(),
            reason: reason.map(String::from),
            p2p_listen: vec!["/ip4/10.0.0.5/tcp/7946".into()],
            peers_refused: 0,
        }
    };
    app.handle(Event::Update(Update::Repositories(vec![
        repo("lab", "dpos", "producer", "ok", None),
        repo("acme", "raft", "follower", "no quorum", Some("no Raft leader for 12 s")),
    ])));
    check("dashboard_repositories", &app);
}

#[test]
fn dashboard_node_and_agent_down() {
    let root = configured_root();
    let mut app = app(root.path());
    app.handle(Event::Tick(NOW + 5_000));
    app.handle(Event::Update(Update::Node(Err("Connection refused (os error 111)".into()))));
    app.handle(Event::Update(Update::Agent(Err(
        "http://127.0.0.1:7850/v1/telemetry: Connection refused (os error 111)".into(),
    ))));
    app.handle(Event::Tick(NOW + 17_000));
    check("dashboard_down", &app);
}

#[test]
fn dashboard_before_any_answer() {
    let root = configured_root();
    let settings = app(root.path()).settings.clone();
    let app = App::new(settings, ConsoleConfig::default(), NOW);
    check("dashboard_waiting", &app);
}

#[test]
fn blocks_with_details() {
    let root = configured_root();
    let mut app = app(root.path());
    key(&mut app, KeyCode::Char('2'));
    key(&mut app, KeyCode::Up);
    key(&mut app, KeyCode::Up);
    let selected = app.selected_block().unwrap().height;
    assert_eq!(selected, HEIGHT - 2);
    check("blocks_selected", &app);
    let mut full = block(selected);
    let sender = Keypair::from_seed("alice").address();
    let recipient = Keypair::from_seed("bob").address();
    full.transactions = BlockTxs::Full(
        (0..3)
            .map(|i| TxView {
                hash: hash(10_000 + i),
                chain_id: "aergo-devnet".into(),
                kind: "transfer".into(),
                nonce: i,
                sender,
                recipient,
                amount: 1_000_000 * (i as u128 + 1),
                fee: 1,
                state: "included".into(),
                block_height: Some(selected),
                block_hash: Some(hash(selected)),
                index: Some(i as u32),
                contract: None,
                function: None,
            })
            .collect(),
    );
    app.handle(Event::Update(Update::BlockDetail(selected, Ok(Box::new(full)))));
    check("blocks_detail", &app);
    // New blocks keep the same block selected.
    app.handle(Event::Update(Update::Blocks("main".into(), vec![block(HEIGHT + 1)])));
    assert_eq!(app.selected_block().unwrap().height, selected);
}

/// `b` on the Blocks screen cycles through main and the branches the node holds: the list is the
/// shown branch's (its blocks say their branch; at and below its base they are main's), blocks of
/// another branch arriving late are ignored, and with no branch held `b` says why it does nothing.
#[test]
fn blocks_of_a_branch() {
    let root = configured_root();
    let mut app = app(root.path());
    key(&mut app, KeyCode::Char('2'));
    key(&mut app, KeyCode::Char('b'));
    assert_eq!(app.shown_branch, "main");
    assert!(app.note.as_deref().unwrap_or_default().contains("aergo branch track"), "{:?}", app.note);
    app.handle(Event::Update(Update::Branches(vec!["feature".into()])));
    let effects = app.handle(Event::Key(KeyEvent::new(KeyCode::Char('b'), KeyModifiers::NONE)));
    assert!(matches!(effects.as_slice(), [Effect::ShowBranch(b)] if b == "feature"), "{effects:?}");
    assert!(app.blocks.is_empty(), "main's blocks are not the branch's");
    let base = HEIGHT - 3;
    let on_branch = |height: u64| {
        let mut b = block(height);
        if height > base {
            b.header.branch = "feature".into();
        }
        b
    };
    app.handle(Event::Update(Update::Blocks("main".into(), vec![block(HEIGHT + 1)])));
    assert!(app.blocks.is_empty(), "a late round of main's blocks is not shown");
    app.handle(Event::Update(Update::Blocks("feature".into(), (base - 2..=HEIGHT).map(on_branch).collect())));
    key(&mut app, KeyCode::Up);
    check("blocks_branch", &app);
    key(&mut app, KeyCode::Char('b'));
    assert_eq!(app.shown_branch, "main");
}

#[test]
fn peers() {
    let root = configured_root();
    let mut app = app(root.path());
    key(&mut app, KeyCode::Char('3'));
    check("peers_none", &app);
    let peers = vec![
        PeerView {
            peer_id: "12D3KooWPeerOne".into(),
            address: "/ip4/192.0.2.21/tcp/7846".into(),
            best_height: HEIGHT,
        },
        PeerView {
            peer_id: "12D3KooWPeerTwo".into(),
            address: "/ip4/192.0.2.22/tcp/7846".into(),
            best_height: HEIGHT - 40,
        },
        PeerView {
            peer_id: "12D3KooWPeerThree".into(),
            address: "/ip6/2001:db8::23/tcp/7846".into(),
            best_height: HEIGHT + 2,
        },
    ];
    app.handle(Event::Update(Update::Node(Ok(Box::new(snapshot(peers))))));
    check("peers_three", &app);
}

#[test]
fn logs_filtered_and_searched() {
    let root = configured_root();
    let mut app = app(root.path());
    key(&mut app, KeyCode::Char('4'));
    check("logs_all", &app);
    key(&mut app, KeyCode::Char('l'));
    assert_eq!(app.logs.visible().len(), 5, "warnings and errors");
    key(&mut app, KeyCode::Char('l'));
    key(&mut app, KeyCode::Char('l'));
    key(&mut app, KeyCode::Char('l'));
    key(&mut app, KeyCode::Char('/'));
    for c in "height=12".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.logs.visible().len(), 27, "heights 1200-1233 at DEBUG and above");
    check("logs_search", &app);
}

#[test]
fn setup_first_boot_and_review() {
    let root = tempfile::tempdir().unwrap();
    let mut app = app(root.path());
    assert_eq!(app.tab, Tab::Setup, "an unconfigured box opens on Setup");
    check("setup_first_boot", &app);

    let root = configured_root();
    let mut app2 = self::app(root.path());
    key(&mut app2, KeyCode::Char('5'));
    key(&mut app2, KeyCode::Enter);
    for _ in 0..7 {
        key(&mut app2, KeyCode::Backspace);
    }
    for c in "aergo-9".chars() {
        key(&mut app2, KeyCode::Char(c));
    }
    key(&mut app2, KeyCode::Enter);
    for _ in 0..6 {
        key(&mut app2, KeyCode::Char('n'));
    }
    assert_eq!(app2.setup.step, aergo_console::setup::flow::Step::Review, "{:?}", app2.setup.message);
    check("setup_review", &app2);
    key(&mut app2, KeyCode::Enter);
    check("setup_confirm_apply", &app2);
    // The setup screen keeps its state when the operator looks elsewhere.
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.setup.draft.role, Role::Producer);
}

#[test]
fn operations_and_lock() {
    let root = configured_root();
    let mut app = app(root.path());
    key(&mut app, KeyCode::Char('6'));
    key(&mut app, KeyCode::Down);
    check("operations", &app);
    key(&mut app, KeyCode::Enter);
    check("operations_confirm", &app);
    key(&mut app, KeyCode::Char('n'));
    assert!(app.ops.confirming.is_none());
    app.handle(Event::Key(KeyEvent::new(KeyCode::Char('l'), KeyModifiers::CONTROL)));
    check("locked", &app);
}

#[test]
fn odd_sizes_and_odd_data_do_not_panic() {
    let root = configured_root();
    let mut app = app(root.path());
    let mut odd = snapshot(vec![]);
    odd.chain.chain_id = "x".repeat(500);
    odd.chain.best_timestamp_ms = u64::MAX;
    odd.chain.lib_height = u64::MAX;
    odd.metrics.next_slot_ms = Some(0);
    app.handle(Event::Update(Update::Node(Ok(Box::new(odd)))));
    app.handle(Event::Update(Update::Log(LogSource::Node, vec!["\u{1b}[31m".repeat(100), "é".repeat(5000)])));
    for tab in ['1', '2', '3', '4', '5', '6'] {
        key(&mut app, KeyCode::Char(tab));
        for (w, h) in [(1, 1), (10, 3), (20, 5), (33, 9), (80, 24), (300, 100)] {
            render(&app, (w, h));
        }
    }
}
