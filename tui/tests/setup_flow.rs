//! The Setup screen driven by key events against a temporary `--root`: the files it writes are
//! checked field by field, the shown-once token and the forced key backup are enforced, and revert
//! restores the previous files.

use aergo_config::NodeConfig;
use aergo_console::app::{App, Event, Settings, Tab};
use aergo_console::ops::ConsoleConfig;
use aergo_console::setup::files::{self, NODE_CONFIG_FILE, SETTINGS_FILE, TOKEN_FILE};
use aergo_console::setup::flow::{Field, Step};
use aergo_console::setup::Role;
use aergo_primitives::crypto::KeyFile;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use std::path::{Path, PathBuf};

fn console(root: &Path) -> App {
    let settings = Settings {
        node_url: "http://127.0.0.1:1".into(),
        agent_url: "http://127.0.0.1:1".into(),
        kiosk: true,
        color: false,
        root: root.to_path_buf(),
    };
    let mut app = App::new(settings, ConsoleConfig::default(), 1_795_608_000_000);
    app.setup.backup_log_n = 4;
    app
}

fn press(app: &mut App, code: KeyCode) {
    app.handle(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

fn ctrl(app: &mut App, c: char) {
    app.handle(Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)));
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, KeyCode::Char(c));
    }
}

/// Moves the focus to `field` on the current step.
fn focus(app: &mut App, field: Field) {
    for _ in 0..20 {
        press(app, KeyCode::Up);
    }
    for _ in 0..20 {
        if app.setup.focused() == Some(field) {
            return;
        }
        press(app, KeyCode::Down);
    }
    panic!("{field:?} is not on step {:?}: {:?}", app.setup.step, app.setup.fields());
}

/// Replaces a text field's value through the keyboard.
fn set(app: &mut App, field: Field, value: &str) {
    focus(app, field);
    press(app, KeyCode::Enter);
    ctrl(app, 'u');
    type_text(app, value);
    press(app, KeyCode::Enter);
}

fn next(app: &mut App, expected: Step) {
    press(app, KeyCode::Char('n'));
    assert_eq!(app.setup.step, expected, "{:?}", app.setup.message);
}

fn screen(app: &App) -> String {
    let mut t = Terminal::new(TestBackend::new(120, 40)).unwrap();
    t.draw(|f| aergo_console::ui::draw(f, app)).unwrap();
    format!("{}", t.backend())
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn message(app: &App) -> String {
    format!("{:?}", app.setup.message)
}

#[test]
fn first_boot_setup_writes_every_file_and_revert_restores_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("media/usb")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "buildroot\n").unwrap();
    let mut app = console(root);
    assert_eq!(app.tab, Tab::Setup);
    assert!(app.setup.first_boot());

    // Hostname: a bad one is refused with its reason.
    set(&mut app, Field::Hostname, "-bad-");
    press(&mut app, KeyCode::Char('n'));
    assert_eq!(app.setup.step, Step::Hostname);
    assert!(message(&app).contains("not valid"), "{}", message(&app));
    set(&mut app, Field::Hostname, "aergo-7");
    next(&mut app, Step::Network);

    // Network: static, with each part checked.
    focus(&mut app, Field::Dhcp);
    press(&mut app, KeyCode::Enter);
    set(&mut app, Field::Address, "192.0.2.10");
    press(&mut app, KeyCode::Char('n'));
    assert!(message(&app).contains("ip/prefix"), "{}", message(&app));
    set(&mut app, Field::Address, "192.0.2.10/24");
    set(&mut app, Field::Gateway, "192.0.2.1");
    set(&mut app, Field::Dns, "192.0.2.53, 9.9.9.9");
    next(&mut app, Step::Node);

    // Node: a producer on a local devnet (the defaults); a full node cannot run a devnet.
    focus(&mut app, Field::Role);
    press(&mut app, KeyCode::Right);
    press(&mut app, KeyCode::Char('n'));
    assert!(message(&app).contains("devnet needs this box"), "{}", message(&app));
    press(&mut app, KeyCode::Right);
    assert_eq!(app.setup.draft.role, Role::Producer);
    next(&mut app, Step::Key);

    // Producer key: a new one, which must be backed up before going on.
    let address = app.setup.producer_address().expect("a key is generated on first boot");
    assert!(screen(&app).contains(&address));
    press(&mut app, KeyCode::Char('n'));
    assert!(message(&app).contains("back the new key up first"), "{}", message(&app));
    // Show the secret, get its confirmation wrong, then write an encrypted backup instead.
    focus(&mut app, Field::ShowSecret);
    press(&mut app, KeyCode::Enter);
    let secret = app.setup.visible_secret().unwrap();
    assert!(screen(&app).contains(&secret), "the secret is on screen once asked for");
    set(&mut app, Field::SecretConfirm, "00000000");
    assert!(message(&app).contains("not how the secret key begins"));
    set(&mut app, Field::BackupPass, "correct horse");
    set(&mut app, Field::BackupPass2, "correct horsf");
    focus(&mut app, Field::BackupWrite);
    press(&mut app, KeyCode::Enter);
    assert!(message(&app).contains("differ"), "{}", message(&app));
    set(&mut app, Field::BackupPath, "/media/usb/producer.json");
    set(&mut app, Field::BackupPass, "correct horse");
    set(&mut app, Field::BackupPass2, "correct horse");
    assert!(!screen(&app).contains("correct horse"), "passphrases are masked");
    focus(&mut app, Field::BackupWrite);
    press(&mut app, KeyCode::Enter);
    assert!(message(&app).contains("backup written"), "{}", message(&app));
    let backup = KeyFile::read(&root.join("media/usb/producer.json")).unwrap();
    assert!(backup.is_encrypted());
    assert_eq!(backup.unlock(Some("correct horse")).unwrap().address().to_string(), address);
    assert!(!screen(&app).contains(&secret), "the secret is hidden again");
    next(&mut app, Step::Horde);

    // Looking at another screen keeps the draft (the key, its backup).
    press(&mut app, KeyCode::Char('1'));
    press(&mut app, KeyCode::Char('5'));
    assert_eq!(app.setup.producer_address().as_deref(), Some(address.as_str()));
    assert_eq!(app.setup.step, Step::Horde);

    // Horde: the new token is shown on this step and never again.
    let token = app.setup.draft.new_token.clone().unwrap();
    assert!(screen(&app).contains(&token));
    next(&mut app, Step::Repositories);
    assert!(!screen(&app).contains(&token), "the token is shown on its step only");
    next(&mut app, Step::Review);
    let review = screen(&app);
    assert!(!review.contains(&token), "the token is shown once");
    assert!(review.contains("aergo-7") && review.contains("new (hidden)"), "{review}");
    press(&mut app, KeyCode::Char('p'));
    assert!(!screen(&app).contains(&token), "not even on going back");
    press(&mut app, KeyCode::Char('n'));

    // Apply, after a confirmation; "no" changes nothing.
    focus(&mut app, Field::Apply);
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Char('x'));
    assert!(!root.join(SETTINGS_FILE).exists());
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Char('y'));
    assert!(message(&app).contains("applied"), "{}", message(&app));

    // Every file, field by field.
    assert_eq!(read(root, "etc/hostname"), "aergo-7\n");
    assert!(read(root, "etc/hosts").contains("127.0.1.1\taergo-7"));
    let interfaces = read(root, "etc/network/interfaces");
    for line in [
        "auto eth0",
        "iface eth0 inet static",
        "address 192.0.2.10",
        "netmask 255.255.255.0",
        "gateway 192.0.2.1",
    ] {
        assert!(interfaces.contains(line), "{line:?} missing from:\n{interfaces}");
    }
    assert_eq!(read(root, "etc/resolv.conf"), "nameserver 192.0.2.53\nnameserver 9.9.9.9\n");
    assert_eq!(read(root, TOKEN_FILE).trim(), token);
    let node = NodeConfig::load(&root.join(NODE_CONFIG_FILE)).unwrap();
    assert!(node.producer.enabled && node.producer.empty_blocks);
    assert_eq!(node.producer.key_file, PathBuf::from(files::key_path(&address)));
    let short: String = address.trim_start_matches("aergo1").chars().take(10).collect();
    assert_eq!(node.data_dir, PathBuf::from(format!("/var/lib/aergo/devnet-{short}")));
    assert_eq!(node.rpc.listen.to_string(), "0.0.0.0:7845");
    let key = KeyFile::read(&files::box_path(root, &files::key_path(&address))).unwrap();
    assert_eq!(key.unlock(None).unwrap().address().to_string(), address);
    let genesis = aergo_config::genesis::Genesis::load(&files::box_path(
        root,
        &format!("{}/genesis.toml", node.data_dir.display()),
    ))
    .unwrap();
    assert_eq!(genesis.producers.len(), 1);
    let settings = files::current(root).unwrap().unwrap();
    assert_eq!(settings.hostname, "aergo-7");
    assert!(!settings.network.dhcp);
    assert_eq!(settings.network.address.as_deref(), Some("192.0.2.10/24"));
    assert_eq!(settings.network.dns, ["192.0.2.53", "9.9.9.9"]);
    assert_eq!(settings.node.role, Role::Producer);
    assert_eq!(settings.node.chain, "devnet");
    assert_eq!(settings.node.producer_address.as_deref(), Some(address.as_str()));
    assert!(!read(root, SETTINGS_FILE).contains(&token), "the token stays out of settings.toml");

    // A second round: new hostname, DHCP, keep key and token.
    assert!(!app.setup.first_boot());
    for _ in 0..6 {
        press(&mut app, KeyCode::Char('p'));
    }
    assert_eq!(app.setup.step, Step::Hostname);
    set(&mut app, Field::Hostname, "aergo-8");
    next(&mut app, Step::Network);
    focus(&mut app, Field::Dhcp);
    press(&mut app, KeyCode::Enter);
    next(&mut app, Step::Node);
    next(&mut app, Step::Key);
    assert_eq!(app.setup.producer_address().as_deref(), Some(address.as_str()), "keeps the key");
    next(&mut app, Step::Horde);
    assert!(!screen(&app).contains(&token));
    next(&mut app, Step::Repositories);
    next(&mut app, Step::Review);
    focus(&mut app, Field::Apply);
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Char('y'));
    assert!(message(&app).contains("applied"), "{}", message(&app));
    assert_eq!(read(root, "etc/hostname"), "aergo-8\n");
    assert!(read(root, "etc/network/interfaces").contains("iface eth0 inet dhcp"));
    assert_eq!(read(root, TOKEN_FILE).trim(), token, "the token was kept");

    // Revert: the first round's files come back.
    press(&mut app, KeyCode::Char('R'));
    press(&mut app, KeyCode::Char('y'));
    assert!(message(&app).contains("reverted"), "{}", message(&app));
    assert_eq!(read(root, "etc/hostname"), "aergo-7\n");
    assert!(read(root, "etc/network/interfaces").contains("address 192.0.2.10"));
    assert_eq!(files::current(root).unwrap().unwrap().hostname, "aergo-7");
    assert_eq!(app.setup.draft.hostname, "aergo-7", "the screen shows the restored settings");
    // Nothing more to revert to.
    press(&mut app, KeyCode::Char('R'));
    assert!(message(&app).contains("no last good"), "{}", message(&app));

    // The kiosk console cannot be quit.
    press(&mut app, KeyCode::Char('1'));
    assert!(app.handle(Event::Key(KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE))).is_empty());
    assert!(app.note.as_deref().unwrap_or_default().contains("kiosk"));
}

#[test]
fn importing_a_keystore_needs_the_right_passphrase_and_no_backup() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let key = aergo_primitives::crypto::Keypair::generate();
    std::fs::create_dir_all(root.join("boot")).unwrap();
    KeyFile::write_encrypted_with(&root.join("boot/producer.json"), &key, "s3cret-pass", 4).unwrap();
    let mut app = console(root);
    next(&mut app, Step::Network);
    next(&mut app, Step::Node);
    next(&mut app, Step::Key);
    focus(&mut app, Field::KeyChoice);
    press(&mut app, KeyCode::Right);
    assert_eq!(app.setup.fields()[1], Field::ImportPath);
    set(&mut app, Field::ImportPath, "producer.json");
    set(&mut app, Field::ImportPass, "wrong");
    focus(&mut app, Field::ImportLoad);
    press(&mut app, KeyCode::Enter);
    assert!(message(&app).to_lowercase().contains("password"), "{}", message(&app));
    set(&mut app, Field::ImportPass, "s3cret-pass");
    focus(&mut app, Field::ImportLoad);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.setup.producer_address(), Some(key.address().to_string()));
    next(&mut app, Step::Horde);
    next(&mut app, Step::Repositories);
    next(&mut app, Step::Review);
    focus(&mut app, Field::Apply);
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Char('y'));
    let node = NodeConfig::load(&root.join(NODE_CONFIG_FILE)).unwrap();
    assert_eq!(node.producer.key_file, PathBuf::from(files::key_path(&key.address().to_string())));
}

fn repo_genesis(root: &Path, file: &str, chain_id: &str) {
    use aergo_config::genesis::{ConsensusParams, Genesis, GenesisProducer};
    let genesis = Genesis {
        chain_id: chain_id.into(),
        timestamp_ms: 1_700_000_000_000,
        consensus: ConsensusParams::default(),
        balances: vec![],
        producers: vec![GenesisProducer {
            public_key: hex::encode(aergo_primitives::crypto::Keypair::generate().public().0),
        }],
        access: None,
    };
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::write(root.join("boot").join(file), genesis.to_toml()).unwrap();
}

/// The Repositories step: a repository added with its genesis and swarm, each bad entry refused
/// with its reason and nothing saved; applied, the node's files list it as `aergo-node repo add`
/// writes them (the firewall reads its port); edited and applied again; removed and applied: off
/// the hosted list, its data left on the box.
#[test]
fn repositories_are_added_edited_and_removed_on_the_setup_screen() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("media/usb")).unwrap();
    repo_genesis(root, "lab.toml", "lab-chain");
    repo_genesis(root, "acme.toml", "acme-chain");
    let mut app = console(root);
    // A devnet box, set up with a generated key confirmed from the screen.
    next(&mut app, Step::Network);
    next(&mut app, Step::Node);
    next(&mut app, Step::Key);
    focus(&mut app, Field::ShowSecret);
    press(&mut app, KeyCode::Enter);
    let secret = app.setup.visible_secret().unwrap();
    set(&mut app, Field::SecretConfirm, &secret[..8]);
    next(&mut app, Step::Horde);
    next(&mut app, Step::Repositories);
    assert!(screen(&app).contains("No repository besides the public chain"), "{}", screen(&app));
    assert_eq!(app.setup.value(Field::RepoChoice), "add a new repository");
    assert!(!app.setup.fields().contains(&Field::RepoRemove), "nothing to remove yet");

    // Refused, each with its reason, and nothing kept.
    let save = |app: &mut App, name: &str, genesis: &str, listen: &str| {
        set(app, Field::RepoName, name);
        set(app, Field::RepoGenesis, genesis);
        set(app, Field::RepoListen, listen);
        focus(app, Field::RepoSave);
        press(app, KeyCode::Enter);
        message(app)
    };
    for (name, genesis, listen, why) in [
        ("Lab", "lab.toml", "", "repositories[0].name"),
        ("lab", "", "", "repositories[0].genesis"),
        ("lab", "missing.toml", "", "missing.toml"),
        ("lab", "lab.toml", "/ip4/0.0.0.0/tcp/7845", "7845"),
        ("lab", "lab.toml", "not an address", "repositories[0].p2p.listen"),
    ] {
        let said = save(&mut app, name, genesis, listen);
        assert!(said.contains("Err") && said.contains(why), "{name} {genesis} {listen}: {said}");
        assert!(app.setup.draft.repositories.is_empty(), "{said}");
    }
    let said = save(&mut app, "lab", "lab.toml", "/ip4/0.0.0.0/tcp/7860");
    assert!(said.contains("repository lab saved"), "{said}");
    set(&mut app, Field::RepoBootstrap, "/ip4/10.0.0.2/tcp/7860");
    focus(&mut app, Field::RepoSave);
    press(&mut app, KeyCode::Enter);
    // A second one, on another port; the same name again is refused.
    focus(&mut app, Field::RepoChoice);
    press(&mut app, KeyCode::Right);
    assert_eq!(app.setup.value(Field::RepoChoice), "add a new repository");
    let said = save(&mut app, "lab", "acme.toml", "");
    assert!(said.contains("in the list already"), "{said}");
    let said = save(&mut app, "acme", "acme.toml", "/ip4/0.0.0.0/tcp/7860");
    assert!(said.contains("7860"), "the port is lab's: {said}");
    let said = save(&mut app, "acme", "acme.toml", "");
    assert!(said.contains("repository acme saved"), "{said}");
    assert!(screen(&app).contains("swarm /ip4/0.0.0.0/tcp/7860, 1 bootstrap"), "{}", screen(&app));
    next(&mut app, Step::Review);
    assert!(screen(&app).contains("lab, acme"), "{}", screen(&app));
    focus(&mut app, Field::Apply);
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Char('y'));
    assert!(message(&app).contains("applied"), "{}", message(&app));
    let node = NodeConfig::load(&root.join(NODE_CONFIG_FILE)).unwrap();
    let data = files::box_path(root, &node.data_dir.display().to_string());
    let on_box = NodeConfig { data_dir: data.clone(), ..node };
    assert_eq!(aergo_config::repos::read_hosted(&data).unwrap(), ["lab", "acme"]);
    assert_eq!(aergo_config::repos::p2p_ports(&on_box), [7860], "the firewall opens lab's port");
    let lab = aergo_config::repos::repo_config(&on_box, "lab").unwrap();
    assert_eq!(lab.p2p.bootstrap, ["/ip4/10.0.0.2/tcp/7860"]);
    assert_eq!(files::current(root).unwrap().unwrap().repositories.len(), 2);

    // Edited: lab moves to another port.
    press(&mut app, KeyCode::Char('p'));
    assert_eq!(app.setup.step, Step::Repositories);
    assert_eq!(app.setup.value(Field::RepoChoice), "lab (1 of 2)");
    set(&mut app, Field::RepoListen, "/ip4/0.0.0.0/tcp/7861");
    focus(&mut app, Field::RepoSave);
    press(&mut app, KeyCode::Enter);
    assert!(message(&app).contains("repository lab saved"), "{}", message(&app));
    assert_eq!(app.setup.draft.repositories.len(), 2, "edited in place");
    next(&mut app, Step::Review);
    focus(&mut app, Field::Apply);
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Char('y'));
    assert_eq!(aergo_config::repos::p2p_ports(&on_box), [7861]);

    // Removed: off the list, its data stays.
    press(&mut app, KeyCode::Char('p'));
    focus(&mut app, Field::RepoRemove);
    press(&mut app, KeyCode::Enter);
    assert!(message(&app).contains("repository lab taken off the list"), "{}", message(&app));
    assert_eq!(app.setup.value(Field::RepoChoice), "acme (1 of 1)");
    next(&mut app, Step::Review);
    focus(&mut app, Field::Apply);
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Char('y'));
    assert_eq!(aergo_config::repos::read_hosted(&data).unwrap(), ["acme"]);
    assert!(data.join("repos/lab/genesis.toml").exists(), "the removed repository's data stays");
    assert_eq!(aergo_config::repos::p2p_ports(&on_box), Vec::<u16>::new());
}
