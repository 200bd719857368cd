//! Settings into files under `--root`, applied atomically, with the last good copy kept for revert.
//!
//! The files a [`Settings`] owns (paths relative to the root; `/` on the box):
//!
//! | file | contents |
//! |---|---|
//! | `etc/hostname`, `etc/hosts` | the hostname |
//! | `etc/network/interfaces` | ifupdown: `lo`, and the interface by DHCP or static address |
//! | `etc/resolv.conf` | static setups only (DHCP's client writes it itself) |
//! | `etc/aergo/node.toml` | the node's config: data dir of the chain, producer key, RPC, p2p (listen, bootstrap peers, external address; the firewall opens the p2p port when p2p is on) |
//! | `etc/aergo/agent.token` | Horde's bearer token (0600) |
//! | `etc/aergo/ntp-servers` | the NTP servers of `[time]`, one per line (empty: DHCP's, else the pool) |
//! | `etc/aergo/settings.toml` | the settings themselves, without the token |
//! | `root/.ssh/authorized_keys` | SSH keys allowed to log in |
//!
//! Applying copies the current versions of all of them (or notes their absence) into
//! `etc/aergo/last-good/`, then writes each new file atomically (temporary file, fsync, rename, fsync
//! of the directory). Revert writes the saved copies back the same way and moves the rejected ones'
//! record to `etc/aergo/reverted/`.
//!
//! Chain data and keys are never reverted or deleted: each chain lives in its own directory under
//! `/var/lib/aergo` (`devnet-<producer>`, the genesis' chain id, or `peer-<genesis hash prefix>` for a
//! genesis taken from the peers), and producer keys in
//! `/var/lib/aergo/keys/producer-<address>.key`, so going back to an earlier config finds its chain and
//! key where they were.

use crate::settings::{
    parse_cidr, validate_authorized_keys, Network, Role, RpcAccess, Settings, SettingsError, SshSettings,
    DEVNET, PEER,
};
use aergo_config::genesis::{ConsensusParams, Genesis, GenesisBalance, GenesisProducer};
use aergo_config::NodeConfig;
use aergo_primitives::crypto::KeyFile;
use aergo_primitives::crypto::Keypair;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The data directory on the box (the data partition).
pub const DATA_DIR: &str = "/var/lib/aergo";
pub const SETTINGS_FILE: &str = "etc/aergo/settings.toml";
pub const NODE_CONFIG_FILE: &str = "etc/aergo/node.toml";
pub const TOKEN_FILE: &str = "etc/aergo/agent.token";
/// The agent's admin token (actions), from `[agent] admin_token`.
pub const ADMIN_TOKEN_FILE: &str = "etc/aergo/agent-admin.token";
/// The agent's settings from `[agent]` (`plain_http`, the certificate it serves HTTPS with).
pub const AGENT_CONFIG_FILE: &str = "etc/aergo/agent.toml";
/// A certificate and key given by provisioning (`[agent] tls_cert`, `tls_key`).
pub const AGENT_TLS_CERT: &str = "etc/aergo/agent-tls/cert.pem";
pub const AGENT_TLS_KEY: &str = "etc/aergo/agent-tls/key.pem";
/// The NTP servers of `[time]`, one per line (the time service reads it when chrony starts).
pub const NTP_SERVERS_FILE: &str = "etc/aergo/ntp-servers";
pub const LAST_GOOD_DIR: &str = "etc/aergo/last-good";
pub const REVERTED_DIR: &str = "etc/aergo/reverted";
const MANIFEST: &str = "manifest.toml";

/// Every file the settings own, for the last-good copy.
pub const MANAGED: [&str; 11] = [
    "etc/hostname",
    "etc/hosts",
    "etc/network/interfaces",
    "etc/resolv.conf",
    NODE_CONFIG_FILE,
    TOKEN_FILE,
    ADMIN_TOKEN_FILE,
    SETTINGS_FILE,
    "root/.ssh/authorized_keys",
    NTP_SERVERS_FILE,
    AGENT_CONFIG_FILE,
];

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("genesis file {path}: {reason}")]
    Genesis { path: String, reason: String },
    #[error("{path} already holds chain {existing:?}, not {wanted:?}; move it away to start over")]
    AnotherChain { path: String, existing: String, wanted: String },
    #[error("producer key: {0}")]
    Key(String),
    /// A key of provisioning other than the producer's; the message names the setting.
    #[error("{0}")]
    OtherKey(String),
    #[error("no last good configuration to revert to ({0} does not exist)")]
    NoLastGood(String),
    #[error("{path} is damaged: {reason}")]
    Damaged { path: String, reason: String },
    /// A file Setup writes cannot be put in TOML (a path that is not UTF-8).
    #[error("cannot write {file}: {reason}")]
    Render { file: &'static str, reason: String },
}

/// Key and token created by the Setup screen for this apply (written once, never reverted).
#[derive(Default)]
pub struct Material {
    /// A new producer key (generated or imported).
    pub producer_key: Option<Keypair>,
    /// The node's identity key from provisioning (`[identity]`), for `<data_dir>/node.key`.
    pub identity_key: Option<Keypair>,
    /// Member keys from provisioning, by repository name (`member_keystore`).
    pub member_keys: Vec<(String, Keypair)>,
    /// The agent's certificate and key (PEM) from provisioning.
    pub agent_tls: Option<(Vec<u8>, Vec<u8>)>,
}

/// What [`apply`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Files written, relative to the root.
    pub written: Vec<String>,
    /// The node's data directory on the box.
    pub data_dir: String,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    files: Vec<ManifestEntry>,
}

#[derive(Serialize, Deserialize)]
struct ManifestEntry {
    path: String,
    present: bool,
    mode: u32,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ApplyError + '_ {
    move |source| ApplyError::Io { path: path.display().to_string(), source }
}

/// A box path (`/boot/genesis.toml`) under `root`; a relative one is on the boot partition.
pub fn box_path(root: &Path, path: &str) -> PathBuf {
    match path.strip_prefix('/') {
        Some(rel) => root.join(rel),
        None => root.join("boot").join(path),
    }
}

/// The settings last applied, if any.
pub fn current(root: &Path) -> Result<Option<Settings>, ApplyError> {
    let path = root.join(SETTINGS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    toml::from_str(&text)
        .map(Some)
        .map_err(|e| ApplyError::Damaged { path: path.display().to_string(), reason: e.to_string() })
}

/// Whether an agent token is in place.
pub fn has_token(root: &Path) -> bool {
    root.join(TOKEN_FILE).exists()
}

pub fn has_last_good(root: &Path) -> bool {
    root.join(LAST_GOOD_DIR).join(MANIFEST).exists()
}

/// Where a producer key with `address` lives on the box.
pub fn key_path(address: &str) -> String {
    format!("{DATA_DIR}/keys/producer-{address}.key")
}

/// Where the member key of repository `name` lives on the box (the CLI's default for `--repo
/// NAME`).
pub fn member_key_path(name: &str) -> String {
    format!("{DATA_DIR}/keys/member-{name}.key")
}

/// The node identity key's file in a data directory (the node's `node.key`).
pub const NODE_KEY_FILE: &str = "node.key";

/// Whether a path of a last-good manifest is a repository file the settings write: a data
/// directory's `repos/hosted` or a repository's `repo.toml`.
fn is_repo_file(rel: &str) -> bool {
    let Some(rest) = rel.strip_prefix(DATA_DIR.trim_start_matches('/')).and_then(|r| r.strip_prefix('/'))
    else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let plain = parts.iter().all(|p| !p.is_empty() && *p != "." && *p != "..");
    plain
        && match parts.as_slice() {
            [_, "repos", "hosted"] => true,
            [_, "repos", name, "repo.toml"] => aergo_config::repos::name_problem(name).is_none(),
            _ => false,
        }
}

/// The repository files of a data directory for `names`, relative to the root: `hosted` and
/// each `repo.toml`.
fn repo_files(data_dir: &str, names: &[String]) -> Vec<String> {
    let base = format!("{}/repos", data_dir.trim_start_matches('/'));
    std::iter::once(format!("{base}/hosted"))
        .chain(names.iter().map(|n| format!("{base}/{n}/repo.toml")))
        .collect()
}

/// A repository of the settings, checked against the box: its genesis (from the file given, or
/// the one its directory already holds) and whether that file is to be written.
struct PlannedRepo {
    name: String,
    genesis: Genesis,
    write_genesis: bool,
    repo_toml: String,
}

/// Checks the repositories of `settings` for the chain in `data_dir` (whose genesis is
/// `public`, none when it comes from the peers): each genesis readable and its own chain, the
/// same chain as a directory already holds. Nothing is written.
fn plan_repositories(
    root: &Path,
    settings: &Settings,
    data_dir: &str,
    public: Option<&Genesis>,
) -> Result<Vec<PlannedRepo>, ApplyError> {
    let mut planned: Vec<PlannedRepo> = Vec::new();
    for (i, r) in settings.repositories.iter().enumerate() {
        let setting = format!("repositories[{i}].genesis {}", r.genesis);
        let dir = box_path(root, &format!("{data_dir}/repos/{}", r.name));
        let held = dir.join(aergo_config::repos::GENESIS_FILE);
        let given = box_path(root, &r.genesis);
        let (genesis, write_genesis) = match std::fs::read_to_string(&given) {
            Ok(text) => {
                let genesis = Genesis::parse(&text)
                    .map_err(|e| ApplyError::Genesis { path: setting.clone(), reason: e.to_string() })?;
                match Genesis::load(&held) {
                    Ok(existing) if existing != genesis => {
                        return Err(ApplyError::AnotherChain {
                            path: dir.display().to_string(),
                            existing: existing.chain_id,
                            wanted: genesis.chain_id,
                        })
                    }
                    Ok(_) => (genesis, false),
                    Err(_) if held.exists() => {
                        return Err(ApplyError::Damaged {
                            path: held.display().to_string(),
                            reason: "not a readable genesis file".into(),
                        })
                    }
                    Err(_) => (genesis, true),
                }
            }
            // Applied again after the boot partition's file is gone: the directory has it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && held.exists() => {
                let genesis = Genesis::load(&held).map_err(|e| ApplyError::Damaged {
                    path: held.display().to_string(),
                    reason: e.to_string(),
                })?;
                (genesis, false)
            }
            Err(source) => return Err(ApplyError::Io { path: setting, source }),
        };
        if let Some(public) = public.filter(|p| p.chain_id == genesis.chain_id) {
            return Err(ApplyError::Genesis {
                path: setting,
                reason: format!("chain id {:?} is the public chain's", public.chain_id),
            });
        }
        if let Some(other) = planned.iter().find(|p| p.genesis.chain_id == genesis.chain_id) {
            return Err(ApplyError::Genesis {
                path: setting,
                reason: format!("chain id {:?} is repository {:?}'s too", genesis.chain_id, other.name),
            });
        }
        let repo_toml = toml::to_string(&r.repo_settings())
            .map_err(|e| ApplyError::Render { file: "repo.toml", reason: e.to_string() })?;
        planned.push(PlannedRepo {
            name: r.name.clone(),
            genesis,
            write_genesis,
            repo_toml: format!("# Written by aergo-console setup (repository {}).\n{repo_toml}", r.name),
        });
    }
    Ok(planned)
}

/// Fails when `path` holds a key other than `key` (named by `clash`) or no key file at all; the
/// file holding `key` or no file at all passes. Nothing is written.
fn check_key_once(path: &Path, key: &Keypair, clash: &str) -> Result<(), ApplyError> {
    match KeyFile::read(path) {
        Ok(existing) if existing.address() != key.address() => Err(ApplyError::OtherKey(format!(
            "{clash}: {} holds another key (address {}); move it away to import this one",
            path.display(),
            existing.address()
        ))),
        Err(_) if path.exists() => {
            Err(ApplyError::Damaged { path: path.display().to_string(), reason: "not a key file".into() })
        }
        _ => Ok(()),
    }
}

/// Writes `key` to `path` (0600, in a 0700 directory) unless the file holds it already; a file
/// holding another key is refused ([`check_key_once`]), never overwritten.
fn write_key_once(path: &Path, key: &Keypair, clash: &str) -> Result<(), ApplyError> {
    check_key_once(path, key, clash)?;
    if path.exists() {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    KeyFile::write_plain(path, key).map_err(|e| ApplyError::OtherKey(format!("{clash}: {e}")))?;
    sync_dir(dir)
}

/// The producer key of an encrypted keystore on the boot partition, unlocked with the passphrase
/// in `passphrase_file` (its first line). Errors name the setting and the file.
pub fn import_keystore(root: &Path, keystore: &str, passphrase_file: &str) -> Result<Keypair, ApplyError> {
    unlock_keystore(root, "producer.keystore", keystore, "producer.passphrase_file", passphrase_file)
        .map_err(ApplyError::Key)
}

/// A key of an encrypted keystore on the boot partition, unlocked with the passphrase in
/// `passphrase_file` (its first line); errors name the setting (`keystore_setting`,
/// `pass_setting`) and the file.
pub fn unlock_keystore(
    root: &Path,
    keystore_setting: &str,
    keystore: &str,
    pass_setting: &str,
    passphrase_file: &str,
) -> Result<Keypair, String> {
    let pass_path = box_path(root, passphrase_file);
    let text = std::fs::read_to_string(&pass_path)
        .map_err(|e| format!("{pass_setting} {}: {e}", pass_path.display()))?;
    let passphrase = text.lines().next().unwrap_or_default();
    let path = box_path(root, keystore);
    let file = KeyFile::read(&path).map_err(|e| format!("{keystore_setting}: {e}"))?;
    file.unlock(Some(passphrase)).map_err(|e| format!("{keystore_setting}: {e}"))
}

/// Deletes a file and syncs its directory, so that it is gone after a power cut too. A file that is
/// already gone is fine.
pub fn remove_synced(path: &Path) -> Result<(), ApplyError> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("/"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Writes `contents` to `path` so that readers see the old or the new file, even after a crash.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), ApplyError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    aergo_primitives::file::write_atomic_mode(path, contents, mode).map_err(io_err(path))
}

fn sync_dir(dir: &Path) -> Result<(), ApplyError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Chain directory name and genesis for the settings (none yet for a genesis taken from peers:
/// the node fetches it on its first start).
fn chain_for(
    root: &Path,
    settings: &Settings,
    producer: Option<&Keypair>,
) -> Result<(String, Option<Genesis>), ApplyError> {
    if settings.node.chain == PEER {
        let hash = settings.node.genesis_hash.as_deref().unwrap_or_default().to_lowercase();
        return Ok((format!("peer-{}", &hash[..hash.len().min(16)]), None));
    }
    if settings.node.chain == DEVNET {
        let key = producer.ok_or_else(|| ApplyError::Key("a devnet needs a producer key".into()))?;
        let address = key.address().to_string();
        let short: String = address.trim_start_matches("aergo1").chars().take(10).collect();
        let genesis = Genesis {
            chain_id: format!("aergo-devnet-{short}"),
            timestamp_ms: crate::now_ms() / 1000 * 1000,
            consensus: ConsensusParams::default(),
            balances: vec![GenesisBalance {
                address: key.address(),
                amount: 1_000_000_000u128 * 10u128.pow(18),
            }],
            producers: vec![GenesisProducer { public_key: hex::encode(key.public().0) }],
            access: None,
        };
        return Ok((format!("devnet-{short}"), Some(genesis)));
    }
    let path = box_path(root, &settings.node.chain);
    let genesis = Genesis::load(&path)
        .map_err(|e| ApplyError::Genesis { path: settings.node.chain.clone(), reason: e.to_string() })?;
    let dir: String = genesis
        .chain_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    Ok((dir, Some(genesis)))
}

/// The producer key the settings use: the new one, or the one already on the box.
fn producer_key(
    root: &Path,
    settings: &Settings,
    material: &Material,
) -> Result<Option<Keypair>, ApplyError> {
    if settings.node.role != Role::Producer {
        return Ok(None);
    }
    if let Some(k) = &material.producer_key {
        return Ok(Some(k.clone()));
    }
    let address = settings
        .node
        .producer_address
        .as_deref()
        .ok_or_else(|| ApplyError::Key("a producer needs a key: generate or import one".into()))?;
    let path = box_path(root, &key_path(address));
    let file = KeyFile::read(&path).map_err(|e| ApplyError::Key(e.to_string()))?;
    file.unlock(None).map(Some).map_err(|e| ApplyError::Key(e.to_string()))
}

fn interfaces(n: &Network) -> String {
    let mut text = String::from("# Written by aergo-console setup.\nauto lo\niface lo inet loopback\n\n");
    text.push_str(&format!("auto {}\n", n.interface));
    if n.dhcp {
        text.push_str(&format!("iface {} inet dhcp\n", n.interface));
        return text;
    }
    let address = n.address.as_deref().unwrap_or_default();
    if let Ok((ip, prefix)) = parse_cidr(address) {
        let family = if ip.is_ipv4() { "inet" } else { "inet6" };
        let netmask = if ip.is_ipv4() {
            let bits = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            std::net::Ipv4Addr::from(bits).to_string()
        } else {
            prefix.to_string()
        };
        text.push_str(&format!(
            "iface {} {family} static\n    address {ip}\n    netmask {netmask}\n",
            n.interface
        ));
        if let Some(gw) = &n.gateway {
            text.push_str(&format!("    gateway {}\n", gw.trim()));
        }
    }
    text
}

/// `etc/network/interfaces`, and `etc/resolv.conf` for a static setup (DHCP's client writes it).
fn network_files(n: &Network) -> Vec<RenderedFile> {
    let mut files = vec![("etc/network/interfaces", interfaces(n).into_bytes(), 0o644)];
    if !n.dhcp {
        let dns: String = n.dns.iter().map(|d| format!("nameserver {}\n", d.trim())).collect();
        files.push(("etc/resolv.conf", dns.into_bytes(), 0o644));
    }
    files
}

/// The file of the SSH keys allowed to log in as root.
const AUTHORIZED_KEYS_FILE: &str = "root/.ssh/authorized_keys";

fn authorized_keys(ssh: &SshSettings) -> RenderedFile {
    let keys: String = ssh.authorized_keys.iter().map(|k| format!("{}\n", k.trim())).collect();
    (AUTHORIZED_KEYS_FILE, keys.into_bytes(), 0o600)
}

/// What a provision file that could not be applied still sets up, so that the provider can reach
/// the box and fix the file: its `[network]` and its `[ssh] authorized_keys`, each only when it is
/// valid on its own (nothing of the node, the keys or the tokens). Returns the files written; an
/// unreadable file, or one whose sections are wrong too, writes nothing.
pub fn provision_access(root: &Path, file: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(file) else { return Vec::new() };
    let Ok(table) = toml::from_str::<toml::Table>(&text) else { return Vec::new() };
    let mut files: Vec<RenderedFile> = Vec::new();
    if let Some(network) = table.get("network").and_then(|n| n.clone().try_into::<Network>().ok()) {
        if network.validate().is_ok() {
            files.extend(network_files(&network));
        }
    }
    if let Some(ssh) = table.get("ssh").and_then(|s| s.clone().try_into::<SshSettings>().ok()) {
        if !ssh.authorized_keys.is_empty() && validate_authorized_keys(&ssh).is_ok() {
            files.push(authorized_keys(&ssh));
        }
    }
    files
        .into_iter()
        .filter_map(|(rel, contents, mode)| {
            write_file(&root.join(rel), &contents, mode).ok().map(|()| rel.to_string())
        })
        .collect()
}

/// The files the settings turn into (contents and mode), relative to the root.
/// A file Setup writes: its path under the root, its contents and its mode.
type RenderedFile = (&'static str, Vec<u8>, u32);

fn render(
    settings: &Settings,
    data_dir: &str,
    key: Option<&Keypair>,
    own_tls: bool,
) -> Result<Vec<RenderedFile>, ApplyError> {
    let mut files = Vec::new();
    let host = &settings.hostname;
    files.push(("etc/hostname", format!("{host}\n").into_bytes(), 0o644));
    files.push((
        "etc/hosts",
        format!("127.0.0.1\tlocalhost\n127.0.1.1\t{host}\n::1\tlocalhost\n").into_bytes(),
        0o644,
    ));
    files.extend(network_files(&settings.network));
    let mut node = NodeConfig { data_dir: PathBuf::from(data_dir), ..NodeConfig::default() };
    // Public: every interface, the firewall decides who reaches it; loopback: the box only.
    node.rpc.listen = match settings.node.rpc {
        RpcAccess::Public => std::net::SocketAddr::from(([0, 0, 0, 0], 7845)),
        RpcAccess::Loopback => std::net::SocketAddr::from(([127, 0, 0, 1], 7845)),
    };
    node.producer.enabled = settings.node.role == Role::Producer;
    node.p2p = settings.p2p_config()?;
    // A producer on a network must not sign with a clock its peers would refuse; a devnet has no
    // peers to refuse anything.
    node.producer.require_clock_sync = node.producer.enabled && node.p2p.enabled;
    node.genesis_hash = settings.node.genesis_hash.as_ref().map(|h| h.to_lowercase());
    node.genesis_from_peers = settings.node.chain == PEER;
    if let Some(k) = key {
        node.producer.key_file = PathBuf::from(key_path(&k.address().to_string()));
        // A producer on a chain fills every slot, empty or not.
        node.producer.empty_blocks = true;
    }
    let node_toml =
        node.to_toml().map_err(|e| ApplyError::Render { file: NODE_CONFIG_FILE, reason: e.to_string() })?;
    files.push((NODE_CONFIG_FILE, node_toml.into_bytes(), 0o644));
    let servers: String = settings.time.servers.iter().map(|s| format!("{}\n", s.trim())).collect();
    files.push((NTP_SERVERS_FILE, servers.into_bytes(), 0o644));
    if let Some(token) = &settings.agent.token {
        files.push((TOKEN_FILE, format!("{token}\n").into_bytes(), 0o600));
    }
    if let Some(token) = &settings.agent.admin_token {
        files.push((ADMIN_TOKEN_FILE, format!("{token}\n").into_bytes(), 0o600));
    }
    let mut agent =
        format!("# Written by aergo-console setup.\nplain_http = {}\n", settings.agent.plain_http);
    if own_tls && !settings.agent.plain_http {
        agent.push_str(&format!("tls_cert = \"/{AGENT_TLS_CERT}\"\ntls_key = \"/{AGENT_TLS_KEY}\"\n"));
    }
    if settings.update.channel.is_some() || settings.update.check_interval.is_some() {
        agent.push_str("\n[update]\n");
        if let Some(c) = &settings.update.channel {
            agent.push_str(&format!("channel = \"{c}\"\n"));
        }
        if let Some(i) = &settings.update.check_interval {
            agent.push_str(&format!("check_interval = \"{i}\"\n"));
        }
    }
    files.push((AGENT_CONFIG_FILE, agent.into_bytes(), 0o644));
    let mut shown = settings.clone();
    shown.node.producer_address = key.map(|k| k.address().to_string());
    let shown = toml::to_string_pretty(&shown)
        .map_err(|e| ApplyError::Render { file: SETTINGS_FILE, reason: e.to_string() })?;
    let text = format!("# Applied by aergo-console setup.\n{shown}");
    files.push((SETTINGS_FILE, text.into_bytes(), 0o644));
    files.push(authorized_keys(&settings.ssh));
    Ok(files)
}

/// Validates `settings` and writes them (see the module documentation). A new key in `material` is
/// written first and never overwritten; an existing chain directory must hold the same chain.
pub fn apply(root: &Path, settings: &Settings, material: &Material) -> Result<Applied, ApplyError> {
    settings.validate()?;
    let key = producer_key(root, settings, material)?;
    let (chain_dir, genesis) = chain_for(root, settings, key.as_ref())?;
    let data_dir = format!("{DATA_DIR}/{chain_dir}");
    let repos = plan_repositories(root, settings, &data_dir, genesis.as_ref())?;
    // The imported identity and member keys: where each goes, checked before anything is written.
    let imported: Vec<(PathBuf, &Keypair, String)> = material
        .identity_key
        .iter()
        .map(|k| (box_path(root, &format!("{data_dir}/{NODE_KEY_FILE}")), k, "identity".to_string()))
        .chain(material.member_keys.iter().map(|(name, k)| {
            (box_path(root, &member_key_path(name)), k, format!("repository {name:?}'s member key"))
        }))
        .collect();
    for (path, k, what) in &imported {
        check_key_once(path, k, what)?;
    }
    // The hosted list: the names the last settings listed and these do not are taken off; those
    // added at run time stay.
    let box_data = box_path(root, &data_dir);
    let hosted_now = aergo_config::repos::read_hosted(&box_data).map_err(|reason| ApplyError::Damaged {
        path: box_data.join("repos/hosted").display().to_string(),
        reason,
    })?;
    let previous = current(root).ok().flatten();
    let previous_names: Vec<String> =
        previous.iter().flat_map(|p| p.repositories.iter().map(|r| r.name.clone())).collect();
    let names: Vec<String> = settings.repositories.iter().map(|r| r.name.clone()).collect();
    let mut hosted: Vec<String> =
        hosted_now.iter().filter(|n| names.contains(n) || !previous_names.contains(n)).cloned().collect();
    for n in &names {
        if !hosted.contains(n) {
            hosted.push(n.clone());
        }
    }
    let mut repo_managed = repo_files(&data_dir, &names);
    repo_managed.extend(repo_files(&data_dir, &previous_names));
    if let Ok(old) = NodeConfig::load(&root.join(NODE_CONFIG_FILE)) {
        repo_managed.extend(repo_files(&old.data_dir.display().to_string(), &previous_names));
    }
    repo_managed.sort();
    repo_managed.dedup();

    // Keys and chain data first: they are never reverted, and a failure here changes no config.
    for (path, k, what) in &imported {
        write_key_once(path, k, what)?;
    }
    if let Some(k) = &key {
        let path = box_path(root, &key_path(&k.address().to_string()));
        if !path.exists() {
            let dir = path.parent().unwrap_or(root);
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
            KeyFile::write_plain(&path, k).map_err(|e| ApplyError::Key(e.to_string()))?;
            sync_dir(dir)?;
        }
    }
    let genesis_path = box_path(root, &format!("{data_dir}/genesis.toml"));
    // From peers (`genesis` none): nothing to write; the node checks what it takes against the hash.
    if let Some(genesis) = genesis {
        match Genesis::load(&genesis_path) {
            Ok(existing) if settings.node.chain == DEVNET => {
                // The devnet of this key already exists: keep it (its timestamp is its identity).
                if existing.producer_keys() != genesis.producer_keys() {
                    return Err(ApplyError::AnotherChain {
                        path: genesis_path.display().to_string(),
                        existing: existing.chain_id,
                        wanted: genesis.chain_id,
                    });
                }
            }
            Ok(existing) if existing != genesis => {
                return Err(ApplyError::AnotherChain {
                    path: genesis_path.display().to_string(),
                    existing: existing.chain_id,
                    wanted: genesis.chain_id,
                });
            }
            Ok(_) => {}
            Err(_) if genesis_path.exists() => {
                return Err(ApplyError::Damaged {
                    path: genesis_path.display().to_string(),
                    reason: "not a readable genesis file".into(),
                });
            }
            Err(_) => write_file(&genesis_path, genesis.to_toml().as_bytes(), 0o644)?,
        }
    }

    // The agent's own certificate, like a key: written once (the key first), never reverted.
    if let Some((cert, tls_key)) = &material.agent_tls {
        write_file(&root.join(AGENT_TLS_KEY), tls_key, 0o600)?;
        write_file(&root.join(AGENT_TLS_CERT), cert, 0o644)?;
    }
    for r in repos.iter().filter(|r| r.write_genesis) {
        let path =
            box_path(root, &format!("{data_dir}/repos/{}/{}", r.name, aergo_config::repos::GENESIS_FILE));
        write_file(&path, r.genesis.to_toml().as_bytes(), 0o644)?;
    }
    let own_tls = root.join(AGENT_TLS_CERT).exists() && root.join(AGENT_TLS_KEY).exists();
    save_last_good(root, &repo_managed)?;
    let mut written = Vec::new();
    for (rel, contents, mode) in render(settings, &data_dir, key.as_ref(), own_tls)? {
        write_file(&root.join(rel), &contents, mode)?;
        written.push(rel.to_string());
    }
    // The repositories' settings, then the list that makes the node open them.
    for r in &repos {
        let rel = format!("{}/repos/{}/repo.toml", data_dir.trim_start_matches('/'), r.name);
        write_file(&root.join(&rel), r.repo_toml.as_bytes(), 0o644)?;
        written.push(rel);
    }
    if !hosted.is_empty() || !hosted_now.is_empty() {
        let rel = format!("{}/repos/hosted", data_dir.trim_start_matches('/'));
        write_file(&root.join(&rel), aergo_config::repos::hosted_text(&hosted).as_bytes(), 0o644)?;
        written.push(rel);
    }
    Ok(Applied { written, data_dir })
}

/// Copies the managed files as they are now into `last-good/`, replacing an earlier copy only once
/// the new one is complete.
fn save_last_good(root: &Path, repo_managed: &[String]) -> Result<(), ApplyError> {
    let final_dir = root.join(LAST_GOOD_DIR);
    let new_dir = root.join("etc/aergo/.last-good.new");
    if new_dir.exists() {
        std::fs::remove_dir_all(&new_dir).map_err(io_err(&new_dir))?;
    }
    let mut manifest = Manifest { files: Vec::new() };
    for rel in MANAGED.iter().copied().chain(repo_managed.iter().map(String::as_str)) {
        let path = root.join(rel);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let mode = std::fs::metadata(&path).map_err(io_err(&path))?.permissions().mode() & 0o7777;
                write_file(&new_dir.join(rel), &bytes, mode)?;
                manifest.files.push(ManifestEntry { path: rel.into(), present: true, mode });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                manifest.files.push(ManifestEntry { path: rel.into(), present: false, mode: 0 });
            }
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    let text = toml::to_string(&manifest)
        .map_err(|e| ApplyError::Render { file: MANIFEST, reason: e.to_string() })?;
    write_file(&new_dir.join(MANIFEST), text.as_bytes(), 0o600)?;
    let old_dir = root.join("etc/aergo/.last-good.old");
    if old_dir.exists() {
        std::fs::remove_dir_all(&old_dir).map_err(io_err(&old_dir))?;
    }
    if final_dir.exists() {
        std::fs::rename(&final_dir, &old_dir).map_err(io_err(&final_dir))?;
    }
    std::fs::rename(&new_dir, &final_dir).map_err(io_err(&final_dir))?;
    if old_dir.exists() {
        std::fs::remove_dir_all(&old_dir).map_err(io_err(&old_dir))?;
    }
    sync_dir(&root.join("etc/aergo"))
}

/// Puts the last good files back (and removes those that did not exist then).
pub fn revert(root: &Path) -> Result<Vec<String>, ApplyError> {
    let dir = root.join(LAST_GOOD_DIR);
    let manifest_path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&manifest_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApplyError::NoLastGood(dir.display().to_string()))
        }
        Err(e) => return Err(io_err(&manifest_path)(e)),
    };
    let manifest: Manifest = toml::from_str(&text).map_err(|e| ApplyError::Damaged {
        path: manifest_path.display().to_string(),
        reason: e.to_string(),
    })?;
    // Read every saved file before changing anything, so that a damaged copy changes nothing.
    let mut restore = Vec::new();
    for entry in &manifest.files {
        if !MANAGED.contains(&entry.path.as_str()) && !is_repo_file(&entry.path) {
            return Err(ApplyError::Damaged {
                path: manifest_path.display().to_string(),
                reason: format!("{} is not a file setup manages", entry.path),
            });
        }
        let contents = if entry.present {
            let saved = dir.join(&entry.path);
            Some(std::fs::read(&saved).map_err(io_err(&saved))?)
        } else {
            None
        };
        restore.push((entry, contents));
    }
    let mut changed = Vec::new();
    for (entry, contents) in restore {
        let path = root.join(&entry.path);
        match contents {
            Some(bytes) => write_file(&path, &bytes, entry.mode)?,
            None => match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path)(e)),
            },
        }
        changed.push(entry.path.clone());
    }
    let reverted = root.join(REVERTED_DIR);
    if reverted.exists() {
        std::fs::remove_dir_all(&reverted).map_err(io_err(&reverted))?;
    }
    std::fs::rename(&dir, &reverted).map_err(io_err(&dir))?;
    sync_dir(&root.join("etc/aergo"))?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{AgentSettings, Network, NodeSettings, SshSettings};

    fn devnet(host: &str) -> Settings {
        Settings {
            hostname: host.into(),
            network: Network::default(),
            node: NodeSettings {
                role: Role::Producer,
                chain: DEVNET.into(),
                producer_address: None,
                rpc: Default::default(),
                genesis_hash: None,
            },
            agent: AgentSettings {
                token: Some("ab".repeat(32)),
                admin_token: Some("cd".repeat(32)),
                ..AgentSettings::default()
            },
            ssh: SshSettings::default(),
            p2p: Default::default(),
            time: Default::default(),
            update: Default::default(),
            producer: Default::default(),
            identity: Default::default(),
            repositories: Vec::new(),
        }
    }

    #[test]
    fn apply_writes_every_file_and_revert_restores_the_previous_ones() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), "buildroot\n").unwrap();
        let key = Keypair::generate();
        let address = key.address().to_string();
        let applied =
            apply(root, &devnet("aergo-1"), &Material { producer_key: Some(key), ..Default::default() })
                .unwrap();
        assert_eq!(std::fs::read_to_string(root.join("etc/hostname")).unwrap(), "aergo-1\n");
        let node = NodeConfig::load(&root.join(NODE_CONFIG_FILE)).unwrap();
        assert!(node.producer.enabled);
        assert_eq!(node.data_dir, PathBuf::from(&applied.data_dir));
        assert_eq!(node.producer.key_file, PathBuf::from(key_path(&address)));
        let key_file = box_path(root, &key_path(&address));
        assert_eq!(KeyFile::read(&key_file).unwrap().address().to_string(), address);
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(root.join(TOKEN_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(box_path(root, &format!("{}/genesis.toml", applied.data_dir)).exists());
        let now = current(root).unwrap().unwrap();
        assert_eq!(now.node.producer_address.as_deref(), Some(address.as_str()));
        assert_eq!(now.agent.token, None, "the token stays out of settings.toml");

        // A second apply keeps the key (by address) and the same devnet.
        let mut second = now.clone();
        second.hostname = "aergo-2".into();
        let again = apply(root, &second, &Material::default()).unwrap();
        assert_eq!(again.data_dir, applied.data_dir);
        assert_eq!(std::fs::read_to_string(root.join("etc/hostname")).unwrap(), "aergo-2\n");
        assert!(revert(root).unwrap().contains(&"etc/hostname".to_string()));
        assert_eq!(std::fs::read_to_string(root.join("etc/hostname")).unwrap(), "aergo-1\n");
        assert!(matches!(revert(root), Err(ApplyError::NoLastGood(_))));
        assert!(key_file.exists(), "keys are never reverted");
    }

    #[test]
    fn the_agent_gets_its_own_certificate_or_plain_http_from_provisioning() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        std::fs::create_dir_all(root.join("boot")).unwrap();
        let file = root.join("boot/provision.toml");
        let base = "hostname = \"box\"\n[node]\nrole = \"producer\"\nchain = \"devnet\"\n";
        // A key that is not PEM: refused, naming the setting; nothing written, nothing removed.
        std::fs::write(
            root.join("boot/agent.pem"),
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(root.join("boot/agent.key"), "not a key\n").unwrap();
        std::fs::write(&file, format!("{base}[agent]\ntls_cert = \"agent.pem\"\ntls_key = \"agent.key\"\n"))
            .unwrap();
        let e = crate::provision(root, &file).unwrap_err().to_string();
        assert!(e.contains("agent.tls_key") && e.contains("PRIVATE KEY"), "{e}");
        assert!(!root.join(AGENT_TLS_CERT).exists() && root.join("boot/agent.key").exists());
        // A PEM pair: copied (the key 0600), named in agent.toml, the key gone from the boot partition.
        let key = "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n";
        std::fs::write(root.join("boot/agent.key"), key).unwrap();
        crate::provision(root, &file).unwrap();
        assert_eq!(std::fs::read_to_string(root.join(AGENT_TLS_KEY)).unwrap(), key);
        assert_eq!(std::fs::metadata(root.join(AGENT_TLS_KEY)).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!root.join("boot/agent.key").exists(), "the key stayed on the boot partition");
        let agent = std::fs::read_to_string(root.join(AGENT_CONFIG_FILE)).unwrap();
        assert!(
            agent.contains("plain_http = false")
                && agent.contains("tls_cert = \"/etc/aergo/agent-tls/cert.pem\""),
            "{agent}"
        );
        assert!(!std::fs::read_to_string(root.join(SETTINGS_FILE)).unwrap().contains("agent.key"));
        // Plain HTTP asked for; with a certificate as well it is refused.
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(other.path().join("boot")).unwrap();
        let plain = other.path().join("boot/provision.toml");
        std::fs::write(&plain, format!("{base}[agent]\nplain_http = true\n")).unwrap();
        crate::provision(other.path(), &plain).unwrap();
        let agent = std::fs::read_to_string(other.path().join(AGENT_CONFIG_FILE)).unwrap();
        assert!(agent.contains("plain_http = true") && !agent.contains("tls_cert"), "{agent}");
        // An update channel: into the agent's settings; a bad interval or URL is refused by name.
        let chan = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(chan.path().join("boot")).unwrap();
        let with_channel = chan.path().join("boot/provision.toml");
        let update =
            "[update]\nchannel = \"https://updates.example/aergo/stable.json\"\ncheck_interval = \"30m\"\n";
        std::fs::write(&with_channel, format!("{base}{update}")).unwrap();
        crate::provision(chan.path(), &with_channel).unwrap();
        let agent = std::fs::read_to_string(chan.path().join(AGENT_CONFIG_FILE)).unwrap();
        assert!(
            agent.contains(
                "[update]\nchannel = \"https://updates.example/aergo/stable.json\"\ncheck_interval = \"30m\""
            ),
            "{agent}"
        );
        for (bad, named) in [
            ("check_interval = \"soon\"", "update.check_interval"),
            ("channel = \"ftp://x\"", "update.channel"),
        ] {
            let s: Settings = toml::from_str(&format!("{base}[update]\n{bad}\n")).unwrap();
            assert!(s.validate().unwrap_err().to_string().contains(named), "{bad}");
        }
        let both: Settings =
            toml::from_str(&format!("{base}[agent]\nplain_http = true\ntls_cert = \"a\"\ntls_key = \"b\"\n"))
                .unwrap();
        assert!(both.validate().unwrap_err().to_string().contains("agent.plain_http"));
    }

    #[test]
    fn a_refused_provision_file_still_gives_network_and_ssh_access() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let file = root.join("provision.toml");
        let provision = |listen: &str| {
            format!(
                "hostname = \"box\"\n[network]\ndhcp = false\naddress = \"10.77.0.14/24\"\ngateway = \"10.77.0.1\"\n\
                 dns = [\"10.77.0.1\"]\n[node]\nrole = \"full\"\nchain = \"/boot/genesis.toml\"\n[p2p]\n\
                 listen = \"{listen}\"\n[ssh]\nauthorized_keys = [\"ssh-ed25519 AAAAC3Nz test\"]\n"
            )
        };
        std::fs::write(&file, provision("0.0.0.0:7846")).unwrap();
        let e = crate::provision(root, &file).unwrap_err();
        assert!(e.to_string().contains("p2p.listen"), "{e}");
        let written = provision_access(root, &file);
        assert_eq!(written, ["etc/network/interfaces", "etc/resolv.conf", AUTHORIZED_KEYS_FILE]);
        let interfaces = std::fs::read_to_string(root.join("etc/network/interfaces")).unwrap();
        assert!(interfaces.contains("address 10.77.0.14") && interfaces.contains("gateway 10.77.0.1"));
        assert_eq!(
            std::fs::read_to_string(root.join(AUTHORIZED_KEYS_FILE)).unwrap(),
            "ssh-ed25519 AAAAC3Nz test\n"
        );
        assert_eq!(
            std::fs::metadata(root.join(AUTHORIZED_KEYS_FILE)).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Nothing of the node: no settings, no node config.
        assert!(!root.join(SETTINGS_FILE).exists() && !root.join(NODE_CONFIG_FILE).exists());
        // A bad SSH line or network is not written either; a file that is not TOML writes nothing.
        let other = tempfile::tempdir().unwrap();
        std::fs::write(
            &file,
            provision("x").replace("ssh-ed25519 AAAAC3Nz test", "nonsense").replace("/24", "/99"),
        )
        .unwrap();
        assert!(provision_access(other.path(), &file).is_empty());
        std::fs::write(&file, "[network\n").unwrap();
        assert!(provision_access(other.path(), &file).is_empty());
    }

    #[test]
    fn rpc_on_loopback_only_when_asked() {
        let root = tempfile::tempdir().unwrap();
        let mut s = devnet("aergo-1");
        s.node.rpc = RpcAccess::Loopback;
        apply(root.path(), &s, &Material { producer_key: Some(Keypair::generate()), ..Default::default() })
            .unwrap();
        let node = NodeConfig::load(&root.path().join(NODE_CONFIG_FILE)).unwrap();
        assert_eq!(node.rpc.listen.to_string(), "127.0.0.1:7845");
        let parsed: Settings = toml::from_str(
            "hostname = \"a\"\n[node]\nrole = \"full\"\nchain = \"/g.toml\"\nrpc = \"loopback\"\n",
        )
        .unwrap();
        assert_eq!(parsed.node.rpc, RpcAccess::Loopback);
        assert!(toml::from_str::<Settings>(
            "hostname = \"a\"\n[node]\nrole = \"full\"\nchain = \"x\"\nrpc = \"everyone\"\n"
        )
        .is_err());
    }

    #[test]
    fn revert_of_the_first_apply_removes_what_did_not_exist() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        apply(
            root,
            &devnet("aergo-1"),
            &Material { producer_key: Some(Keypair::generate()), ..Default::default() },
        )
        .unwrap();
        revert(root).unwrap();
        assert!(!root.join("etc/hostname").exists());
        assert!(!root.join(SETTINGS_FILE).exists());
        assert!(current(root).unwrap().is_none());
    }

    #[test]
    fn a_genesis_from_the_peers_is_left_to_the_node() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let mut s = devnet("aergo-1");
        s.node.role = Role::Full;
        s.node.chain = PEER.into();
        s.node.genesis_hash = Some("9F".repeat(32));
        s.p2p.bootstrap = vec!["/ip4/10.77.0.11/tcp/7846".into()];
        let applied = apply(root, &s, &Material::default()).unwrap();
        assert_eq!(applied.data_dir, format!("{DATA_DIR}/peer-{}", "9f".repeat(8)));
        let node = NodeConfig::load(&root.join(NODE_CONFIG_FILE)).unwrap();
        assert!(node.genesis_from_peers && node.p2p.enabled);
        assert_eq!(node.genesis_hash, Some("9f".repeat(32)));
        node.validate().unwrap();
        assert!(!box_path(root, &format!("{}/genesis.toml", applied.data_dir)).exists());
    }

    #[test]
    fn a_bad_genesis_or_missing_key_changes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let mut s = devnet("aergo-1");
        s.node.chain = "/boot/genesis.toml".into();
        std::fs::create_dir_all(root.join("boot")).unwrap();
        std::fs::write(root.join("boot/genesis.toml"), "not toml [").unwrap();
        let e = apply(root, &s, &Material { producer_key: Some(Keypair::generate()), ..Default::default() })
            .unwrap_err();
        assert!(e.to_string().contains("genesis file /boot/genesis.toml"), "{e}");
        let e = apply(root, &devnet("aergo-1"), &Material::default()).unwrap_err();
        assert!(e.to_string().contains("generate or import"), "{e}");
        assert!(!root.join("etc").exists());
    }

    /// A genesis for a repository with chain id `id`, on the boot partition as `file`.
    fn repo_genesis(root: &Path, file: &str, id: &str) {
        let genesis = Genesis {
            chain_id: id.into(),
            timestamp_ms: 1_700_000_000_000,
            consensus: ConsensusParams::default(),
            balances: vec![],
            producers: vec![GenesisProducer { public_key: hex::encode(Keypair::generate().public().0) }],
            access: None,
        };
        std::fs::create_dir_all(root.join("boot")).unwrap();
        std::fs::write(root.join("boot").join(file), genesis.to_toml()).unwrap();
    }

    #[test]
    fn a_box_is_provisioned_to_host_repositories_with_its_identity_and_member_keys() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        repo_genesis(root, "acme.toml", "acme-chain");
        repo_genesis(root, "lab.toml", "lab-chain");
        let (identity, member) = (Keypair::generate(), Keypair::generate());
        let boot = root.join("boot");
        KeyFile::write_encrypted_with(&boot.join("node.keystore"), &identity, "node pass 1", 4).unwrap();
        KeyFile::write_encrypted_with(&boot.join("member.keystore"), &member, "member pass", 4).unwrap();
        std::fs::write(boot.join("node.pass"), "node pass 1\n").unwrap();
        std::fs::write(boot.join("member.pass"), "member pass\n").unwrap();
        let file = boot.join("provision.toml");
        let provision = |repos: &str| {
            format!(
                "hostname = \"box\"\n[node]\nrole = \"producer\"\nchain = \"devnet\"\n\
                 [identity]\nkeystore = \"node.keystore\"\npassphrase_file = \"node.pass\"\n{repos}"
            )
        };
        let acme = "[[repositories]]\nname = \"acme\"\ngenesis = \"acme.toml\"\n\
                    member_keystore = \"member.keystore\"\nmember_passphrase_file = \"member.pass\"\n\
                    [repositories.p2p]\nlisten = \"/ip4/0.0.0.0/tcp/7856\"\n\
                    bootstrap = [\"/ip4/10.77.0.11/tcp/7856\"]\n";
        let lab = |port: u16| {
            format!(
                "[[repositories]]\nname = \"lab\"\ngenesis = \"lab.toml\"\n\
                 [repositories.p2p]\nlisten = \"/ip4/0.0.0.0/tcp/{port}\"\n"
            )
        };
        // Refused before anything is written, the setting named.
        for (bad, named) in [
            (
                provision(&format!("{acme}{}", lab(7856))),
                "repositories[1].p2p.listen: port 7856 is repository \"acme\"'s",
            ),
            (provision(&acme.replace("\"acme\"", "\"Acme\"")), "repositories[0].name"),
            (provision(&acme.replace("0.0.0.0/tcp/7856", "0.0.0.0/tcp/7850")), "port 7850 is the agent's"),
            (
                provision(&format!("{acme}{}", lab(7857).replace("lab.toml", "acme.toml"))),
                "chain id \"acme-chain\" is repository \"acme\"'s",
            ),
            (
                provision(&acme.replace("member_passphrase_file = \"member.pass\"\n", "")),
                "repositories[0].member_keystore needs",
            ),
            (provision(&acme.replace("listen = \"/ip4/0.0.0.0/tcp/7856\"\n", "")), "need a listen address"),
            (
                provision(&acme.replace("acme.toml", "missing.toml")),
                "repositories[0].genesis /boot/missing.toml",
            ),
        ] {
            std::fs::write(&file, bad).unwrap();
            let e = crate::provision(root, &file).unwrap_err().to_string();
            assert!(e.contains(named), "{named}: {e}");
            assert!(!root.join(SETTINGS_FILE).exists() && !root.join("var").exists(), "{named}: written");
        }
        std::fs::write(boot.join("node.pass"), "wrong\n").unwrap();
        std::fs::write(&file, provision(acme)).unwrap();
        let e = crate::provision(root, &file).unwrap_err().to_string();
        assert!(e.starts_with("identity.keystore: "), "{e}");
        assert!(boot.join("node.pass").exists() && !root.join("var").exists());
        std::fs::write(boot.join("node.pass"), "node pass 1\n").unwrap();

        let (applied, _) = crate::provision(root, &file).unwrap();
        let data = box_path(root, &applied.data_dir);
        assert_eq!(KeyFile::read(&data.join(NODE_KEY_FILE)).unwrap().address(), identity.address());
        let member_file = box_path(root, &member_key_path("acme"));
        assert_eq!(KeyFile::read(&member_file).unwrap().unlock(None).unwrap().address(), member.address());
        assert_eq!(std::fs::metadata(&member_file).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!boot.join("node.pass").exists() && !boot.join("member.pass").exists());
        assert_eq!(std::fs::read_to_string(data.join("repos/hosted")).unwrap(), "acme\n");
        assert_eq!(Genesis::load(&data.join("repos/acme/genesis.toml")).unwrap().chain_id, "acme-chain");
        let repo = aergo_config::RepoSettings::parse(
            &std::fs::read_to_string(data.join("repos/acme/repo.toml")).unwrap(),
        )
        .unwrap();
        assert!(repo.p2p.enabled && repo.p2p.listen == ["/ip4/0.0.0.0/tcp/7856"], "{repo:?}");
        assert_eq!(repo.p2p.bootstrap, ["/ip4/10.77.0.11/tcp/7856"]);
        // What the node runs and the firewall opens: the devnet has no swarm, acme has.
        let mut node = NodeConfig::load(&root.join(NODE_CONFIG_FILE)).unwrap();
        node.data_dir = data.clone();
        assert_eq!(aergo_config::repos::p2p_ports(&node), [7856]);
        let now = current(root).unwrap().unwrap();
        assert_eq!(now.repositories.len(), 1);
        let written = std::fs::read_to_string(root.join(SETTINGS_FILE)).unwrap();
        assert!(!written.contains("member.keystore") && !written.contains("node.keystore"), "{written}");

        // A repository added at run time, then settings with lab as well: both kept, lab added;
        // revert takes lab back off (and its repo.toml), the runtime one stays.
        std::fs::write(data.join("repos/hosted"), "acme\nextra\n").unwrap();
        let mut more = now.clone();
        more.repositories
            .push(toml::from_str::<Settings>(&provision(&lab(7857))).unwrap().repositories[0].clone());
        more.repositories[1].genesis = "/boot/lab.toml".into();
        apply(root, &more, &Material::default()).unwrap();
        assert_eq!(std::fs::read_to_string(data.join("repos/hosted")).unwrap(), "acme\nextra\nlab\n");
        assert!(data.join("repos/lab/repo.toml").exists());
        revert(root).unwrap();
        assert_eq!(std::fs::read_to_string(data.join("repos/hosted")).unwrap(), "acme\nextra\n");
        assert!(!data.join("repos/lab/repo.toml").exists(), "revert left lab's settings");
        // Settings without acme take it off the list (its data stays); the genesis file gone from
        // the boot partition is fine for a repository the box already holds.
        std::fs::remove_file(boot.join("acme.toml")).unwrap();
        apply(root, &now, &Material::default()).unwrap();
        let mut fewer = now.clone();
        fewer.repositories.clear();
        apply(root, &fewer, &Material::default()).unwrap();
        assert_eq!(std::fs::read_to_string(data.join("repos/hosted")).unwrap(), "extra\n");
        assert!(data.join("repos/acme/genesis.toml").exists());
        // Another identity for the same chain directory: refused, the first stays.
        let e =
            apply(root, &now, &Material { identity_key: Some(Keypair::generate()), ..Default::default() })
                .unwrap_err()
                .to_string();
        assert!(e.contains("identity") && e.contains("holds another key"), "{e}");
        assert_eq!(KeyFile::read(&data.join(NODE_KEY_FILE)).unwrap().address(), identity.address());
        // A repository directory holding another chain is refused.
        repo_genesis(root, "acme.toml", "acme-other");
        let e = apply(root, &now, &Material::default()).unwrap_err().to_string();
        assert!(e.contains("already holds chain \"acme-chain\""), "{e}");
    }
}
