//! The Setup screen's flow: steps of fields, edited with the keyboard, checked step by step, then
//! reviewed side by side with the current settings and applied.
//!
//! Steps: Hostname → Network → Node → Producer key (producers only) → Horde → Repositories →
//! Review. Keys: Up/Down
//! move between fields; Enter edits a text field (Enter or Esc ends the edit), changes a choice, or
//! presses a button; Left/Right/Space change a choice; PageDown or `n` goes on (after checking the
//! step), PageUp or `p` back; `R` reverts to the last good configuration. A generated producer key must
//! be backed up — written as an encrypted keystore or copied from the screen and confirmed — before the
//! flow goes on. A generated agent token is shown on its step only. The Repositories step lists
//! the repositories the box hosts beside the public chain (`docs/repositories.md`): one is chosen,
//! its fields edited and saved, or it is removed; a new one is added the same way.
//! A member key is not entered here: it comes with a provision file, or `aergo --member-key`.

use super::files::{self, box_path, ApplyError, Material};
use super::settings::{
    validate_hostname, Network, P2pSettings, RepositoryP2p, RepositorySettings, Role, Settings,
    DEFAULT_P2P_LISTEN, DEVNET,
};
use aergo_config::genesis::Genesis;
use aergo_primitives::crypto::KeyFile;
use aergo_primitives::crypto::Keypair;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Hostname,
    Network,
    Node,
    Key,
    Horde,
    Repositories,
    Review,
}

impl Step {
    pub const ALL: [Step; 7] =
        [Step::Hostname, Step::Network, Step::Node, Step::Key, Step::Horde, Step::Repositories, Step::Review];

    pub fn title(self) -> &'static str {
        match self {
            Step::Hostname => "Hostname",
            Step::Network => "Network",
            Step::Node => "Node",
            Step::Key => "Producer key",
            Step::Horde => "Horde access",
            Step::Repositories => "Repositories",
            Step::Review => "Review",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Hostname,
    Interface,
    Dhcp,
    Address,
    Gateway,
    Dns,
    Role,
    Chain,
    GenesisPath,
    P2pListen,
    Bootstrap,
    ExternalAddress,
    KeyChoice,
    ImportPath,
    ImportPass,
    ImportLoad,
    BackupPath,
    BackupPass,
    BackupPass2,
    BackupWrite,
    ShowSecret,
    SecretConfirm,
    TokenChoice,
    RepoChoice,
    RepoName,
    RepoGenesis,
    RepoListen,
    RepoBootstrap,
    RepoSave,
    RepoRemove,
    Apply,
    Revert,
}

pub enum FieldKind {
    Text { secret: bool },
    Choice,
    Button,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyChoice {
    Keep,
    Generate,
    Import,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenChoice {
    Keep,
    Generate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirm {
    Apply,
    Revert,
}

/// What the operator is entering.
#[derive(Clone, Debug)]
pub struct Draft {
    pub hostname: String,
    pub interface: String,
    pub dhcp: bool,
    pub address: String,
    pub gateway: String,
    pub dns: String,
    pub role: Role,
    pub devnet: bool,
    pub genesis_path: String,
    /// The p2p listen multiaddr.
    pub p2p_listen: String,
    /// Bootstrap peers, separated by commas or spaces.
    pub bootstrap: String,
    pub external_address: String,
    pub key_choice: KeyChoice,
    pub new_key: Option<Keypair>,
    pub import_path: String,
    pub import_pass: String,
    pub backup_path: String,
    pub backup_pass: String,
    pub backup_pass2: String,
    pub backed_up: bool,
    pub secret_visible: bool,
    pub secret_confirm: String,
    pub token_choice: TokenChoice,
    pub new_token: Option<String>,
    /// The new token is on screen (only on the Horde step, until the operator leaves it).
    pub token_visible: bool,
    /// The hosted repositories the settings will list.
    pub repositories: Vec<RepositorySettings>,
    /// Which one the fields show: an index into `repositories`, or its length for a new one.
    pub repo_selected: usize,
    pub repo_name: String,
    /// Its genesis file on the box (relative: on the boot partition).
    pub repo_genesis: String,
    /// Its swarm's listen multiaddr (empty: no swarm of its own).
    pub repo_listen: String,
    pub repo_bootstrap: String,
}

pub struct SetupState {
    pub root: PathBuf,
    pub step: Step,
    pub focus: usize,
    pub editing: bool,
    pub current: Option<Settings>,
    pub current_error: Option<String>,
    pub has_token: bool,
    pub has_last_good: bool,
    pub draft: Draft,
    pub confirm: Option<Confirm>,
    /// The outcome of the last action: `Ok` text or `Err` text.
    pub message: Option<Result<String, String>>,
    /// scrypt cost of the backup keystore (2^15 on the box; tests use less).
    pub backup_log_n: u8,
}

const MAX_TEXT: usize = 512;

/// A list typed as one line, separated by commas or spaces.
fn list(text: &str) -> Vec<String> {
    text.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

impl Draft {
    fn from_settings(current: Option<&Settings>, has_token: bool) -> Draft {
        let s = current;
        let net = s.map(|s| s.network.clone()).unwrap_or_default();
        let chain = s.map(|s| s.node.chain.clone()).unwrap_or_else(|| DEVNET.into());
        let has_key = s.and_then(|s| s.node.producer_address.as_ref()).is_some();
        let mut draft = Draft {
            hostname: s.map(|s| s.hostname.clone()).unwrap_or_else(|| "aergo-1".into()),
            interface: net.interface,
            dhcp: net.dhcp,
            address: net.address.unwrap_or_default(),
            gateway: net.gateway.unwrap_or_default(),
            dns: net.dns.join(", "),
            role: s.map(|s| s.node.role).unwrap_or(Role::Producer),
            devnet: chain == DEVNET,
            genesis_path: if chain == DEVNET { "/boot/genesis.toml".into() } else { chain },
            p2p_listen: s.map(|s| s.p2p.listen.clone()).unwrap_or_else(|| DEFAULT_P2P_LISTEN.into()),
            bootstrap: s.map(|s| s.p2p.bootstrap.join(", ")).unwrap_or_default(),
            external_address: s.and_then(|s| s.p2p.external_address.clone()).unwrap_or_default(),
            key_choice: if has_key { KeyChoice::Keep } else { KeyChoice::Generate },
            new_key: (!has_key).then(Keypair::generate),
            import_path: String::new(),
            import_pass: String::new(),
            backup_path: "/media/usb/aergo-producer-key.json".into(),
            backup_pass: String::new(),
            backup_pass2: String::new(),
            backed_up: false,
            secret_visible: false,
            secret_confirm: String::new(),
            token_choice: if has_token { TokenChoice::Keep } else { TokenChoice::Generate },
            new_token: (!has_token).then(new_token),
            token_visible: !has_token,
            repositories: s.map(|s| s.repositories.clone()).unwrap_or_default(),
            repo_selected: 0,
            repo_name: String::new(),
            repo_genesis: String::new(),
            repo_listen: String::new(),
            repo_bootstrap: String::new(),
        };
        draft.load_repo_fields();
        draft
    }

    /// The fields show the chosen repository (empty for a new one).
    fn load_repo_fields(&mut self) {
        let chosen = self.repositories.get(self.repo_selected).cloned();
        let r = chosen.unwrap_or_else(|| RepositorySettings {
            name: String::new(),
            genesis: String::new(),
            p2p: RepositoryP2p::default(),
            member_keystore: None,
            member_passphrase_file: None,
        });
        self.repo_name = r.name;
        self.repo_genesis = r.genesis;
        self.repo_listen = r.p2p.listen.unwrap_or_default();
        self.repo_bootstrap = r.p2p.bootstrap.join(", ");
    }
}

impl SetupState {
    pub fn new(root: PathBuf) -> SetupState {
        let mut s = SetupState {
            root,
            step: Step::Hostname,
            focus: 0,
            editing: false,
            current: None,
            current_error: None,
            has_token: false,
            has_last_good: false,
            draft: Draft::from_settings(None, false),
            confirm: None,
            message: None,
            backup_log_n: 15,
        };
        s.reload();
        s
    }

    /// Reads the settings on disk and starts a new draft from them.
    pub fn reload(&mut self) {
        match files::current(&self.root) {
            Ok(c) => {
                self.current = c;
                self.current_error = None;
            }
            Err(e) => {
                self.current = None;
                self.current_error = Some(e.to_string());
            }
        }
        self.has_token = files::has_token(&self.root);
        self.has_last_good = files::has_last_good(&self.root);
        self.draft = Draft::from_settings(self.current.as_ref(), self.has_token);
        self.editing = false;
        self.confirm = None;
    }

    /// No settings were ever applied: the box needs setting up.
    pub fn first_boot(&self) -> bool {
        self.current.is_none()
    }

    pub fn current_producer(&self) -> Option<&str> {
        self.current.as_ref().and_then(|c| c.node.producer_address.as_deref())
    }

    fn steps(&self) -> Vec<Step> {
        Step::ALL.into_iter().filter(|s| *s != Step::Key || self.draft.role == Role::Producer).collect()
    }

    pub fn fields(&self) -> Vec<Field> {
        let d = &self.draft;
        match self.step {
            Step::Hostname => vec![Field::Hostname],
            Step::Network if d.dhcp => vec![Field::Interface, Field::Dhcp],
            Step::Network => vec![Field::Interface, Field::Dhcp, Field::Address, Field::Gateway, Field::Dns],
            Step::Node if d.devnet => vec![Field::Role, Field::Chain],
            Step::Node => vec![
                Field::Role,
                Field::Chain,
                Field::GenesisPath,
                Field::P2pListen,
                Field::Bootstrap,
                Field::ExternalAddress,
            ],
            Step::Key => {
                let mut f = vec![Field::KeyChoice];
                match d.key_choice {
                    KeyChoice::Keep => {}
                    KeyChoice::Import => f.extend([Field::ImportPath, Field::ImportPass, Field::ImportLoad]),
                    KeyChoice::Generate => {
                        f.extend([
                            Field::BackupPath,
                            Field::BackupPass,
                            Field::BackupPass2,
                            Field::BackupWrite,
                        ]);
                        f.push(Field::ShowSecret);
                        if d.secret_visible {
                            f.push(Field::SecretConfirm);
                        }
                    }
                }
                f
            }
            Step::Horde => vec![Field::TokenChoice],
            Step::Repositories => {
                let mut f = vec![
                    Field::RepoChoice,
                    Field::RepoName,
                    Field::RepoGenesis,
                    Field::RepoListen,
                    Field::RepoBootstrap,
                    Field::RepoSave,
                ];
                if d.repo_selected < d.repositories.len() {
                    f.push(Field::RepoRemove);
                }
                f
            }
            Step::Review => vec![Field::Apply, Field::Revert],
        }
    }

    pub fn focused(&self) -> Option<Field> {
        self.fields().get(self.focus).copied()
    }

    pub fn kind(field: Field) -> FieldKind {
        match field {
            Field::Dhcp
            | Field::Role
            | Field::Chain
            | Field::KeyChoice
            | Field::TokenChoice
            | Field::RepoChoice => FieldKind::Choice,
            Field::ImportLoad
            | Field::BackupWrite
            | Field::ShowSecret
            | Field::RepoSave
            | Field::RepoRemove
            | Field::Apply
            | Field::Revert => FieldKind::Button,
            Field::ImportPass | Field::BackupPass | Field::BackupPass2 => FieldKind::Text { secret: true },
            _ => FieldKind::Text { secret: false },
        }
    }

    pub fn label(field: Field) -> &'static str {
        match field {
            Field::Hostname => "Hostname",
            Field::Interface => "Interface",
            Field::Dhcp => "Addressing",
            Field::Address => "Address (ip/prefix)",
            Field::Gateway => "Gateway",
            Field::Dns => "DNS servers",
            Field::Role => "Role",
            Field::Chain => "Chain",
            Field::GenesisPath => "Genesis file",
            Field::P2pListen => "P2p listen address",
            Field::Bootstrap => "Bootstrap peers",
            Field::ExternalAddress => "External address (optional)",
            Field::KeyChoice => "Key",
            Field::ImportPath => "Keystore file",
            Field::ImportPass => "Passphrase",
            Field::ImportLoad => "Load the keystore",
            Field::BackupPath => "Backup file",
            Field::BackupPass => "Passphrase",
            Field::BackupPass2 => "Repeat passphrase",
            Field::BackupWrite => "Write the encrypted backup",
            Field::ShowSecret => "Show the secret key to copy it",
            Field::SecretConfirm => "Type its first 8 characters",
            Field::TokenChoice => "Agent token",
            Field::RepoChoice => "Repository",
            Field::RepoName => "Name",
            Field::RepoGenesis => "Genesis file",
            Field::RepoListen => "P2p listen (optional)",
            Field::RepoBootstrap => "Bootstrap peers",
            Field::RepoSave => "Save this repository",
            Field::RepoRemove => "Remove it from this box",
            Field::Apply => "Apply these settings",
            Field::Revert => "Revert to the last good config",
        }
    }

    /// The value as shown: secrets masked, choices spelled out.
    pub fn value(&self, field: Field) -> String {
        let d = &self.draft;
        let mask = |s: &str| "*".repeat(s.chars().count());
        match field {
            Field::Hostname => d.hostname.clone(),
            Field::Interface => d.interface.clone(),
            Field::Dhcp => if d.dhcp { "DHCP" } else { "static" }.into(),
            Field::Address => d.address.clone(),
            Field::Gateway => d.gateway.clone(),
            Field::Dns => d.dns.clone(),
            Field::Role => match d.role {
                Role::Producer => "producer (builds blocks in its slots)".into(),
                Role::Full => "full node (follows the chain)".into(),
            },
            Field::Chain => if d.devnet { "local devnet" } else { "join from a genesis file" }.into(),
            Field::GenesisPath => d.genesis_path.clone(),
            Field::P2pListen => d.p2p_listen.clone(),
            Field::Bootstrap => d.bootstrap.clone(),
            Field::ExternalAddress => d.external_address.clone(),
            Field::KeyChoice => match d.key_choice {
                KeyChoice::Keep => "keep the current key".into(),
                KeyChoice::Generate => "generate a new key".into(),
                KeyChoice::Import => "import a keystore".into(),
            },
            Field::ImportPath => d.import_path.clone(),
            Field::BackupPath => d.backup_path.clone(),
            Field::ImportPass => mask(&d.import_pass),
            Field::BackupPass => mask(&d.backup_pass),
            Field::BackupPass2 => mask(&d.backup_pass2),
            Field::SecretConfirm => d.secret_confirm.clone(),
            Field::TokenChoice => match d.token_choice {
                TokenChoice::Keep => "keep the current token".into(),
                TokenChoice::Generate => "generate a new token".into(),
            },
            Field::RepoChoice => match d.repositories.get(d.repo_selected) {
                Some(r) => format!("{} ({} of {})", r.name, d.repo_selected + 1, d.repositories.len()),
                None => "add a new repository".into(),
            },
            Field::RepoName => d.repo_name.clone(),
            Field::RepoGenesis => d.repo_genesis.clone(),
            Field::RepoListen => d.repo_listen.clone(),
            Field::RepoBootstrap => d.repo_bootstrap.clone(),
            // Buttons show their label alone.
            _ => String::new(),
        }
    }

    fn text_mut(&mut self, field: Field) -> Option<&mut String> {
        let d = &mut self.draft;
        Some(match field {
            Field::Hostname => &mut d.hostname,
            Field::Interface => &mut d.interface,
            Field::Address => &mut d.address,
            Field::Gateway => &mut d.gateway,
            Field::Dns => &mut d.dns,
            Field::GenesisPath => &mut d.genesis_path,
            Field::P2pListen => &mut d.p2p_listen,
            Field::Bootstrap => &mut d.bootstrap,
            Field::ExternalAddress => &mut d.external_address,
            Field::ImportPath => &mut d.import_path,
            Field::ImportPass => &mut d.import_pass,
            Field::BackupPath => &mut d.backup_path,
            Field::BackupPass => &mut d.backup_pass,
            Field::BackupPass2 => &mut d.backup_pass2,
            Field::SecretConfirm => &mut d.secret_confirm,
            Field::RepoName => &mut d.repo_name,
            Field::RepoGenesis => &mut d.repo_genesis,
            Field::RepoListen => &mut d.repo_listen,
            Field::RepoBootstrap => &mut d.repo_bootstrap,
            _ => return None,
        })
    }

    /// The key this draft will use, if one is known.
    pub fn producer_address(&self) -> Option<String> {
        if self.draft.role != Role::Producer {
            return None;
        }
        match self.draft.key_choice {
            KeyChoice::Keep => self.current_producer().map(str::to_string),
            _ => self.draft.new_key.as_ref().map(|k| k.address().to_string()),
        }
    }

    /// The secret key in hex, while the operator asked to see it.
    pub fn visible_secret(&self) -> Option<String> {
        match (&self.draft.new_key, self.draft.secret_visible) {
            (Some(k), true) => Some(hex::encode(k.secret_bytes())),
            _ => None,
        }
    }

    /// The new token, while it may be shown.
    pub fn visible_token(&self) -> Option<&str> {
        if self.step == Step::Horde && self.draft.token_visible {
            self.draft.new_token.as_deref()
        } else {
            None
        }
    }

    /// The settings the draft describes (not yet checked).
    pub fn draft_settings(&self) -> Settings {
        let d = &self.draft;
        let opt = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let mut s = Settings {
            hostname: d.hostname.trim().to_string(),
            network: Network {
                interface: d.interface.trim().to_string(),
                dhcp: d.dhcp,
                address: if d.dhcp { None } else { opt(&d.address) },
                gateway: if d.dhcp { None } else { opt(&d.gateway) },
                dns: if d.dhcp { Vec::new() } else { list(&d.dns) },
            },
            node: super::settings::NodeSettings {
                role: d.role,
                chain: if d.devnet { DEVNET.into() } else { d.genesis_path.trim().to_string() },
                producer_address: self.producer_address(),
                rpc: self.current.as_ref().map(|c| c.node.rpc).unwrap_or_default(),
                // Kept from the provisioned settings while the chain stays the same.
                genesis_hash: self
                    .current
                    .as_ref()
                    .filter(|c| c.node.chain == d.genesis_path.trim() && !d.devnet)
                    .and_then(|c| c.node.genesis_hash.clone()),
            },
            agent: Default::default(),
            ssh: self.current.as_ref().map(|c| c.ssh.clone()).unwrap_or_default(),
            p2p: P2pSettings {
                // As provisioned (an explicit on or off), else the default for the chain.
                enabled: self.current.as_ref().and_then(|c| c.p2p.enabled),
                listen: d.p2p_listen.trim().to_string(),
                bootstrap: list(&d.bootstrap),
                external_address: opt(&d.external_address),
                // As provisioned: not a field of the Setup screen.
                snapshot_after_blocks: self.current.as_ref().and_then(|c| c.p2p.snapshot_after_blocks),
            },
            time: self.current.as_ref().map(|c| c.time.clone()).unwrap_or_default(),
            update: self.current.as_ref().map(|c| c.update.clone()).unwrap_or_default(),
            producer: Default::default(),
            identity: Default::default(),
            repositories: d.repositories.clone(),
        };
        if d.token_choice == TokenChoice::Generate {
            s.agent.token = d.new_token.clone();
        }
        s
    }

    /// Handles a key; `false` when the key is not the Setup screen's (tab switching and the like).
    pub fn handle_key(&mut self, key: KeyEvent) -> bool {
        if let Some(confirm) = self.confirm.take() {
            if matches!(key.code, KeyCode::Char('y') | KeyCode::Char('Y')) {
                match confirm {
                    Confirm::Apply => self.apply(),
                    Confirm::Revert => self.revert(),
                }
            } else {
                self.message = Some(Ok("cancelled".into()));
            }
            return true;
        }
        if self.editing {
            self.edit_key(key);
            return true;
        }
        let fields = self.fields();
        match key.code {
            KeyCode::Up => self.focus = self.focus.saturating_sub(1),
            KeyCode::Down => self.focus = (self.focus + 1).min(fields.len().saturating_sub(1)),
            KeyCode::PageDown | KeyCode::Char('n') => self.next_step(),
            KeyCode::PageUp | KeyCode::Char('p') => self.prev_step(),
            KeyCode::Char('R') => self.ask(Confirm::Revert),
            KeyCode::Enter | KeyCode::Char(' ') | KeyCode::Left | KeyCode::Right => {
                let Some(field) = self.focused() else { return true };
                match Self::kind(field) {
                    FieldKind::Text { .. } if key.code == KeyCode::Enter => self.editing = true,
                    FieldKind::Text { .. } => return false,
                    FieldKind::Choice => self.cycle(field, key.code == KeyCode::Left),
                    FieldKind::Button if matches!(key.code, KeyCode::Enter | KeyCode::Char(' ')) => {
                        self.press(field)
                    }
                    FieldKind::Button => return false,
                }
            }
            _ => return false,
        }
        true
    }

    fn edit_key(&mut self, key: KeyEvent) {
        let Some(field) = self.focused() else {
            self.editing = false;
            return;
        };
        match key.code {
            KeyCode::Enter | KeyCode::Esc | KeyCode::Tab => {
                self.editing = false;
                if field == Field::SecretConfirm && key.code == KeyCode::Enter {
                    self.check_secret_confirm();
                }
            }
            KeyCode::Backspace => {
                if let Some(t) = self.text_mut(field) {
                    t.pop();
                }
            }
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                if let Some(t) = self.text_mut(field) {
                    t.clear();
                }
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                if let Some(t) = self.text_mut(field) {
                    if t.len() < MAX_TEXT {
                        t.push(c);
                    }
                }
            }
            _ => {}
        }
    }

    fn ask(&mut self, confirm: Confirm) {
        if confirm == Confirm::Revert && !self.has_last_good {
            self.message = Some(Err("there is no last good configuration to revert to".into()));
            return;
        }
        self.confirm = Some(confirm);
    }

    fn cycle(&mut self, field: Field, back: bool) {
        let d = &mut self.draft;
        match field {
            Field::Dhcp => d.dhcp = !d.dhcp,
            Field::Role => d.role = if d.role == Role::Producer { Role::Full } else { Role::Producer },
            Field::Chain => d.devnet = !d.devnet,
            Field::KeyChoice => {
                let mut order = vec![KeyChoice::Generate, KeyChoice::Import];
                if self.current.as_ref().and_then(|c| c.node.producer_address.as_ref()).is_some() {
                    order.insert(0, KeyChoice::Keep);
                }
                let at = order.iter().position(|c| *c == d.key_choice).unwrap_or(0);
                let next = if back { at + order.len() - 1 } else { at + 1 } % order.len();
                d.key_choice = order[next];
                d.new_key = None;
                d.backed_up = false;
                d.secret_visible = false;
                d.secret_confirm.clear();
                if d.key_choice == KeyChoice::Generate {
                    d.new_key = Some(Keypair::generate());
                }
            }
            Field::RepoChoice => {
                // The repositories, then "a new one".
                let n = d.repositories.len() + 1;
                d.repo_selected = if back { d.repo_selected + n - 1 } else { d.repo_selected + 1 } % n;
                d.load_repo_fields();
            }
            Field::TokenChoice => {
                if d.token_choice == TokenChoice::Generate && self.has_token {
                    d.token_choice = TokenChoice::Keep;
                    d.new_token = None;
                    d.token_visible = false;
                } else {
                    d.token_choice = TokenChoice::Generate;
                    d.new_token = Some(new_token());
                    d.token_visible = true;
                }
            }
            _ => {}
        }
    }

    fn press(&mut self, field: Field) {
        match field {
            Field::ImportLoad => self.import_key(),
            Field::BackupWrite => self.write_backup(),
            Field::ShowSecret => {
                self.draft.secret_visible = !self.draft.secret_visible;
                self.draft.secret_confirm.clear();
            }
            Field::Apply => match self.check_all() {
                Ok(()) => self.ask(Confirm::Apply),
                Err(e) => self.message = Some(Err(e)),
            },
            Field::Revert => self.ask(Confirm::Revert),
            Field::RepoSave => self.save_repository(),
            Field::RepoRemove => self.remove_repository(),
            _ => {}
        }
    }

    /// Puts the fields' repository into the draft (replacing the chosen one, or added), once it
    /// checks: its name, its genesis file (readable, another chain than the public one and the
    /// others'), its swarm's addresses and ports (`Settings::validate`).
    fn save_repository(&mut self) {
        let d = &self.draft;
        let opt = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let chosen = d.repositories.get(d.repo_selected);
        let repo = RepositorySettings {
            name: d.repo_name.trim().to_string(),
            genesis: d.repo_genesis.trim().to_string(),
            p2p: RepositoryP2p {
                listen: opt(&d.repo_listen),
                bootstrap: list(&d.repo_bootstrap),
                external_address: chosen.and_then(|r| r.p2p.external_address.clone()),
            },
            // A provisioned member key stays where provisioning put it.
            member_keystore: None,
            member_passphrase_file: None,
        };
        let mut repositories = d.repositories.clone();
        let at = match repositories.iter().position(|r| r.name == repo.name) {
            Some(i) if i != d.repo_selected => {
                self.message =
                    Some(Err(format!("a repository named {:?} is in the list already", repo.name)));
                return;
            }
            Some(i) => i,
            None if d.repo_selected < repositories.len() => d.repo_selected,
            None => {
                repositories.push(repo.clone());
                repositories.len() - 1
            }
        };
        repositories[at] = repo.clone();
        let mut settings = self.draft_settings();
        settings.repositories = repositories.clone();
        if let Err(e) = settings.validate() {
            self.message = Some(Err(e.to_string()));
            return;
        }
        match Genesis::load(&box_path(&self.root, &repo.genesis)) {
            Ok(g) if !self.draft.devnet && self.public_chain_id().as_deref() == Some(g.chain_id.as_str()) => {
                self.message = Some(Err(format!(
                    "{} is the public chain's genesis ({}): a repository is another chain",
                    repo.genesis, g.chain_id
                )));
                return;
            }
            Ok(_) => {}
            Err(e) => {
                self.message = Some(Err(format!("{}: {e}", repo.genesis)));
                return;
            }
        }
        self.draft.repositories = repositories;
        self.draft.repo_selected = at;
        self.message = Some(Ok(format!("repository {} saved: apply the settings on Review", repo.name)));
    }

    fn remove_repository(&mut self) {
        let d = &mut self.draft;
        if d.repo_selected >= d.repositories.len() {
            return;
        }
        let gone = d.repositories.remove(d.repo_selected);
        d.repo_selected = d.repo_selected.min(d.repositories.len());
        d.load_repo_fields();
        self.focus = 0;
        self.message = Some(Ok(format!(
            "repository {} taken off the list (its data stays on the box): apply on Review",
            gone.name
        )));
    }

    /// The chain id of the public chain the draft joins (none for a devnet, or unreadable).
    fn public_chain_id(&self) -> Option<String> {
        Genesis::load(&box_path(&self.root, self.draft.genesis_path.trim())).ok().map(|g| g.chain_id)
    }

    fn import_key(&mut self) {
        let path = box_path(&self.root, self.draft.import_path.trim());
        let pass = Some(self.draft.import_pass.as_str()).filter(|p| !p.is_empty());
        match KeyFile::read(&path).and_then(|f| f.unlock(pass)) {
            Ok(key) => {
                self.message = Some(Ok(format!("loaded key {}", key.address())));
                self.draft.new_key = Some(key);
                self.draft.import_pass.clear();
            }
            Err(e) => self.message = Some(Err(e.to_string())),
        }
    }

    fn write_backup(&mut self) {
        let d = &self.draft;
        let Some(key) = d.new_key.clone() else { return };
        if d.backup_pass.chars().count() < 8 {
            self.message = Some(Err("use a passphrase of at least 8 characters".into()));
            return;
        }
        if d.backup_pass != d.backup_pass2 {
            self.message = Some(Err("the two passphrases differ".into()));
            return;
        }
        let shown_path = d.backup_path.trim().to_string();
        let path = box_path(&self.root, &shown_path);
        let written = match path.parent() {
            Some(dir) if !dir.is_dir() => {
                Err(format!("{} does not exist (is the USB stick mounted?)", dir.display()))
            }
            _ => KeyFile::write_encrypted_with(&path, &key, &d.backup_pass, self.backup_log_n)
                .map_err(|e| e.to_string()),
        };
        match written {
            Ok(()) => {
                self.draft.backed_up = true;
                self.draft.secret_visible = false;
                self.draft.secret_confirm.clear();
                self.draft.backup_pass.clear();
                self.draft.backup_pass2.clear();
                self.message = Some(Ok(format!("backup written to {shown_path}")));
            }
            Err(e) => self.message = Some(Err(e)),
        }
    }

    fn check_secret_confirm(&mut self) {
        let Some(secret) = self.visible_secret() else { return };
        if self.draft.secret_confirm.trim().eq_ignore_ascii_case(&secret[..8]) {
            self.draft.backed_up = true;
            self.draft.secret_visible = false;
            self.draft.secret_confirm.clear();
            self.message = Some(Ok("backup confirmed; the secret is hidden again".into()));
            self.focus = 0;
        } else {
            self.message = Some(Err("that is not how the secret key begins; look again".into()));
        }
    }

    /// Checks one step before going on.
    fn check_step(&self, step: Step) -> Result<(), String> {
        let s = self.draft_settings();
        match step {
            Step::Hostname => validate_hostname(&s.hostname).map_err(|e| e.to_string()),
            Step::Network => s.network.validate(),
            Step::Node => {
                if s.node.chain == DEVNET {
                    if s.node.role != Role::Producer {
                        return Err("a local devnet needs this box as its producer".into());
                    }
                    return Ok(());
                }
                Genesis::load(&box_path(&self.root, &s.node.chain)).map_err(|e| e.to_string())?;
                s.p2p_config().map(|_| ()).map_err(|e| e.to_string())
            }
            Step::Key => match self.draft.key_choice {
                KeyChoice::Keep if self.current_producer().is_none() => Err("there is no current key".into()),
                KeyChoice::Keep => Ok(()),
                KeyChoice::Import if self.draft.new_key.is_none() => Err("load the keystore first".into()),
                KeyChoice::Import => Ok(()),
                KeyChoice::Generate if !self.draft.backed_up => Err(
                    "back the new key up first: write the encrypted backup, or show and confirm the secret"
                        .into(),
                ),
                KeyChoice::Generate => Ok(()),
            },
            Step::Horde if self.draft.token_choice == TokenChoice::Keep && !self.has_token => {
                Err("the agent needs a token: generate one".into())
            }
            Step::Repositories => {
                for r in &s.repositories {
                    Genesis::load(&box_path(&self.root, &r.genesis))
                        .map_err(|e| format!("repository {}: {}: {e}", r.name, r.genesis))?;
                }
                s.validate().map_err(|e| e.to_string())
            }
            Step::Horde | Step::Review => Ok(()),
        }
    }

    fn check_all(&self) -> Result<(), String> {
        for step in self.steps() {
            self.check_step(step).map_err(|e| format!("{}: {e}", step.title()))?;
        }
        self.draft_settings().validate().map_err(|e| e.to_string())
    }

    fn next_step(&mut self) {
        if let Err(e) = self.check_step(self.step) {
            self.message = Some(Err(e));
            return;
        }
        let steps = self.steps();
        if let Some(i) = steps.iter().position(|s| *s == self.step) {
            if let Some(next) = steps.get(i + 1) {
                self.leave_step();
                self.step = *next;
                self.focus = 0;
                self.message = None;
            }
        }
    }

    fn prev_step(&mut self) {
        let steps = self.steps();
        if let Some(i) = steps.iter().position(|s| *s == self.step).filter(|i| *i > 0) {
            self.leave_step();
            self.step = steps[i - 1];
            self.focus = 0;
            self.message = None;
        }
    }

    fn leave_step(&mut self) {
        // Shown once: leaving the Horde step hides the token for good.
        if self.step == Step::Horde {
            self.draft.token_visible = false;
        }
        self.draft.secret_visible = false;
    }

    fn apply(&mut self) {
        let settings = self.draft_settings();
        let material = Material {
            producer_key: match self.draft.key_choice {
                KeyChoice::Keep => None,
                _ if settings.node.role == Role::Producer => self.draft.new_key.clone(),
                _ => None,
            },
            ..Material::default()
        };
        match files::apply(&self.root, &settings, &material) {
            Ok(applied) => {
                let n = applied.written.len();
                self.reload();
                self.step = Step::Review;
                self.message = Some(Ok(format!(
                    "applied: {n} files written, chain data in {}; restart the node and the agent (Operations) to use them",
                    applied.data_dir
                )));
            }
            Err(e) => self.message = Some(Err(apply_error_text(&e))),
        }
    }

    fn revert(&mut self) {
        match files::revert(&self.root) {
            Ok(changed) => {
                self.reload();
                self.message = Some(Ok(format!(
                    "reverted {} files to the last good config; restart the node and the agent to use them",
                    changed.len()
                )));
            }
            Err(e) => self.message = Some(Err(apply_error_text(&e))),
        }
    }
}

fn apply_error_text(e: &ApplyError) -> String {
    format!("apply failed: {e}")
}

/// A new random bearer token for the agent: 32 random bytes, hex.
pub use aergo_settings::new_token;
