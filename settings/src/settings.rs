//! What a box is configured with. The same shape as the appliance's `provision.toml`, so that first-boot
//! provisioning and the Setup screen produce the same files.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The chain value that means "a local devnet with this box as its only producer".
pub const DEVNET: &str = "devnet";
/// The chain value that means "the bootstrap peers' genesis, checked against `genesis_hash`": the
/// node takes the genesis file from them on its first start.
pub const PEER: &str = "peer";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub hostname: String,
    #[serde(default)]
    pub network: Network,
    pub node: NodeSettings,
    #[serde(default)]
    pub agent: AgentSettings,
    #[serde(default)]
    pub ssh: SshSettings,
    #[serde(default)]
    pub p2p: P2pSettings,
    #[serde(default)]
    pub time: TimeSettings,
    #[serde(default)]
    pub update: UpdateSettings,
    /// Where a producer key to import comes from (`provision.toml` only: never written back).
    #[serde(default, skip_serializing)]
    pub producer: ProducerImport,
    /// The node's identity key to import (`provision.toml` only: never written back).
    #[serde(default, skip_serializing)]
    pub identity: KeyImport,
    /// Repositories the box hosts beside its public chain (`docs/repositories.md`,
    /// "Provisioning a box for a repository").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<RepositorySettings>,
}

/// A key handed to the box in an encrypted keystore with its passphrase file, both on the boot
/// partition when relative (the passphrase file is deleted once the key is imported).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct KeyImport {
    pub keystore: Option<String>,
    pub passphrase_file: Option<String>,
}

/// A repository the box hosts (`[[repositories]]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RepositorySettings {
    /// Its name on the box (`/repo/<name>`, `aergo --repo <name>`).
    pub name: String,
    /// Its genesis file (on the boot partition when relative).
    pub genesis: String,
    /// Its own swarm: off unless a listen address is given.
    #[serde(default)]
    pub p2p: RepositoryP2p,
    /// The member key requests on the box sign with (`provision.toml` only: imported to
    /// `/var/lib/aergo/keys/member-<name>.key`).
    #[serde(default, skip_serializing)]
    pub member_keystore: Option<String>,
    #[serde(default, skip_serializing)]
    pub member_passphrase_file: Option<String>,
}

/// A hosted repository's swarm (`[repositories.p2p]`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RepositoryP2p {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    pub bootstrap: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_address: Option<String>,
}

impl RepositorySettings {
    /// The repository's `[p2p]` as the node runs it (`repo.toml`).
    pub fn p2p_config(&self) -> aergo_config::P2pConfig {
        let p2p = &self.p2p;
        aergo_config::P2pConfig {
            enabled: p2p.listen.is_some(),
            listen: p2p.listen.iter().map(|l| l.trim().to_string()).collect(),
            bootstrap: p2p.bootstrap.iter().map(|b| b.trim().to_string()).collect(),
            external_address: p2p.external_address.as_ref().map(|a| a.trim().to_string()),
            ..aergo_config::P2pConfig::default()
        }
    }

    /// Its `repo.toml`: the node's defaults for a repository, with its swarm.
    pub fn repo_settings(&self) -> aergo_config::RepoSettings {
        aergo_config::RepoSettings { p2p: self.p2p_config(), ..aergo_config::RepoSettings::default() }
    }
}

/// The default p2p listen address (port 7846 on every interface).
pub const DEFAULT_P2P_LISTEN: &str = "/ip4/0.0.0.0/tcp/7846";

/// How the box takes part in the chain's p2p network (`[p2p]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct P2pSettings {
    /// Unset: on for every chain but a local devnet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The multiaddr to listen on.
    pub listen: String,
    /// Peers to dial: `/ip4/ADDR/tcp/PORT`, with `/p2p/PEER_ID` when known.
    pub bootstrap: Vec<String>,
    /// What peers are told to dial this box at (NAT, port forwarding).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_address: Option<String>,
    /// A box that starts with no chain takes a snapshot from its peers when their final height is
    /// at least this (0: always replay from genesis). Unset: the node's default (10 000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_after_blocks: Option<u64>,
}

impl Default for P2pSettings {
    fn default() -> Self {
        P2pSettings {
            enabled: None,
            listen: DEFAULT_P2P_LISTEN.into(),
            bootstrap: Vec::new(),
            external_address: None,
            snapshot_after_blocks: None,
        }
    }
}

/// Where the box takes its time from (`[time]`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TimeSettings {
    /// NTP servers (names or addresses). None: those of the DHCP lease (option 42), else the public
    /// pool (`pool.ntp.org`).
    pub servers: Vec<String>,
}

/// Updates the box looks for on its own (`[update]`): a channel the agent reads every
/// `check_interval` and installs a newer release from (`docs/agent.md`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct UpdateSettings {
    /// The channel's URL (`http://` or `https://`); none: updates only when Horde asks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// `1h`, `30m`, …; none: the agent's default (an hour).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_interval: Option<String>,
}

/// A producer key handed to the box in an encrypted keystore (`[producer]` of `provision.toml`).
/// Both paths are on the boot partition when relative; the passphrase file is deleted once the
/// key is imported.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerImport {
    pub keystore: Option<String>,
    pub passphrase_file: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    pub interface: String,
    pub dhcp: bool,
    /// `ip/prefix`, for a static address.
    pub address: Option<String>,
    pub gateway: Option<String>,
    pub dns: Vec<String>,
}

impl Default for Network {
    fn default() -> Self {
        Network { interface: "eth0".into(), dhcp: true, address: None, gateway: None, dns: Vec::new() }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Producer,
    Full,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Full => "full",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    pub role: Role,
    /// [`DEVNET`], or the path of a genesis file to join.
    pub chain: String,
    /// The producer key's address (informational: the key itself is a file the Setup screen writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_address: Option<String>,
    /// Who reaches the node's RPC: `public` (every interface; the firewall opens 7845) or
    /// `loopback` (only programs on the box: the agent, the console, the health check).
    #[serde(default)]
    pub rpc: RpcAccess,
    /// The hash of the chain's genesis block (hex), when known: the node refuses to start on a
    /// genesis file that makes another one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_hash: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RpcAccess {
    #[default]
    Public,
    Loopback,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSettings {
    /// What Horde sends as its bearer token. Written to the agent's token file, never to
    /// `settings.toml`.
    #[serde(skip_serializing)]
    pub token: Option<String>,
    /// The admin token (also the agent's actions: restarts, settings, updates). Written to the
    /// agent's admin token file, never to `settings.toml`; unset: no actions on this box.
    #[serde(default, skip_serializing)]
    pub admin_token: Option<String>,
    /// Plain HTTP instead of HTTPS for the agent (a network the provider trusts only).
    pub plain_http: bool,
    /// The agent's own certificate and key (PEM files; a relative path is on the boot partition,
    /// whose key file is removed once copied to the box). Unset: the agent makes a self-signed
    /// certificate at its first start. Never written to `settings.toml`.
    #[serde(default, skip_serializing)]
    pub tls_cert: Option<String>,
    #[serde(default, skip_serializing)]
    pub tls_key: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SshSettings {
    pub authorized_keys: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("hostname {0:?} is not valid: use 1-63 letters, digits and '-' per label, not starting or ending with '-'")]
    Hostname(String),
    #[error("network: {0}")]
    Network(String),
    #[error("node: {0}")]
    Node(String),
    #[error("agent token: {0}")]
    Token(String),
    /// The message names the setting (`agent.tls_key: …`).
    #[error("{0}")]
    Agent(String),
    #[error("ssh: {0}")]
    Ssh(String),
    /// The message names the setting (`p2p.bootstrap[1]: …`).
    #[error("{0}")]
    P2p(String),
    #[error("producer: {0}")]
    Producer(String),
    /// The message names the setting (`repositories[1].p2p.listen: …`, `identity: …`).
    #[error("{0}")]
    Repository(String),
    /// The message names the setting (`time.servers[0]: …`).
    #[error("{0}")]
    Time(String),
}

impl Settings {
    /// Checks everything that can be checked without the file system.
    pub fn validate(&self) -> Result<(), SettingsError> {
        validate_hostname(&self.hostname)?;
        self.network.validate().map_err(SettingsError::Network)?;
        if self.node.chain.trim().is_empty() {
            return Err(SettingsError::Node("chain is empty: use \"devnet\" or a genesis file".into()));
        }
        if self.node.chain == DEVNET && self.node.role != Role::Producer {
            return Err(SettingsError::Node(
                "a local devnet needs this box as its producer: choose role \"producer\"".into(),
            ));
        }
        for (name, token) in [("token", &self.agent.token), ("admin_token", &self.agent.admin_token)] {
            if let Some(token) = token {
                if token.len() < 32 || !token.chars().all(|c| c.is_ascii_graphic()) {
                    return Err(SettingsError::Token(format!(
                        "agent.{name}: use at least 32 printable characters without spaces (aergo-agent \
                         gen-token makes one)"
                    )));
                }
            }
        }
        if self.agent.admin_token.is_some() && self.agent.admin_token == self.agent.token {
            return Err(SettingsError::Token("agent.admin_token must differ from agent.token".into()));
        }
        match (&self.agent.tls_cert, &self.agent.tls_key) {
            (Some(_), None) => {
                return Err(SettingsError::Agent(
                    "agent.tls_cert needs agent.tls_key, the certificate's key".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(SettingsError::Agent("agent.tls_key is given without agent.tls_cert".into()))
            }
            (Some(_), Some(_)) if self.agent.plain_http => {
                return Err(SettingsError::Agent(
                    "agent.plain_http with agent.tls_cert: choose HTTPS with the certificate or plain HTTP"
                        .into(),
                ))
            }
            _ => {}
        }
        if let Some(c) = &self.update.channel {
            if !(c.starts_with("http://") || c.starts_with("https://"))
                || c.chars().any(char::is_whitespace)
                || c.contains('"')
            {
                return Err(SettingsError::Agent(format!(
                    "update.channel {c:?}: an http:// or https:// URL"
                )));
            }
        }
        if let Some(i) = &self.update.check_interval {
            let ok = i.len() > 1
                && i.ends_with(['s', 'm', 'h', 'd'])
                && i[..i.len() - 1].parse::<u32>().is_ok_and(|n| n > 0);
            if !ok {
                return Err(SettingsError::Agent(format!(
                    "update.check_interval {i:?}: a number and a unit, s, m, h or d (\"1h\", \"30m\")"
                )));
            }
        }
        validate_authorized_keys(&self.ssh)?;
        if self.node.chain == PEER
            && (self.node.genesis_hash.is_none() || !self.p2p_enabled() || self.p2p.bootstrap.is_empty())
        {
            return Err(SettingsError::Node(
                "chain = \"peer\" takes the genesis from the bootstrap peers: it needs genesis_hash \
                 and p2p on with at least one bootstrap address"
                    .into(),
            ));
        }
        if let Some(hash) = &self.node.genesis_hash {
            if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(SettingsError::Node(format!(
                    "genesis_hash {hash:?} is not a block hash: 64 hexadecimal digits"
                )));
            }
        }
        self.p2p_addresses()?;
        for (i, server) in self.time.servers.iter().enumerate() {
            let ok = !server.is_empty()
                && server.len() <= 253
                && server.chars().all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
            if !ok {
                return Err(SettingsError::Time(format!(
                    "time.servers[{i}]: {server:?} is not a host name or an IP address"
                )));
            }
        }
        let import = &self.producer;
        match (&import.keystore, &import.passphrase_file) {
            (None, None) => {}
            (Some(_), Some(_)) if self.node.role == Role::Producer => {}
            (Some(_), Some(_)) => {
                return Err(SettingsError::Producer("a keystore is for role \"producer\" only".into()))
            }
            (Some(_), None) => {
                return Err(SettingsError::Producer(
                    "keystore needs passphrase_file, the file holding its passphrase".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(SettingsError::Producer("passphrase_file is given without a keystore".into()))
            }
        }
        key_pair(
            "identity.keystore",
            "identity.passphrase_file",
            &self.identity.keystore,
            &self.identity.passphrase_file,
        )?;
        self.validate_repositories()
    }

    /// Each repository on its own (name, genesis, addresses, member key) and against the others
    /// and the public chain (names, p2p ports); errors name the setting.
    fn validate_repositories(&self) -> Result<(), SettingsError> {
        let err = |i: usize, what: String| SettingsError::Repository(format!("repositories[{i}].{what}"));
        let public_ports = self.p2p_config().map(|c| c.tcp_ports()).unwrap_or_default();
        // The box's own services, then the public chain's p2p port.
        let mut ports: Vec<(u16, String)> =
            vec![(22, "SSH".into()), (7845, "the RPC".into()), (7850, "the agent".into())];
        ports.extend(public_ports.into_iter().map(|p| (p, "the public chain".into())));
        for (i, r) in self.repositories.iter().enumerate() {
            if let Some(why) = aergo_config::repos::name_problem(&r.name) {
                return Err(err(i, format!("name: {why}")));
            }
            if let Some(j) = self.repositories[..i].iter().position(|o| o.name == r.name) {
                return Err(err(i, format!("name: {:?} is repositories[{j}]'s too", r.name)));
            }
            if r.genesis.trim().is_empty() {
                return Err(err(i, "genesis: the path of the repository's genesis file".into()));
            }
            if r.p2p.listen.is_none() && (!r.p2p.bootstrap.is_empty() || r.p2p.external_address.is_some()) {
                return Err(err(
                    i,
                    "p2p: bootstrap and external_address need a listen address (the repository's own port)"
                        .into(),
                ));
            }
            let config = r.p2p_config();
            config.addresses().map_err(|e| err(i, e.replacen("p2p.listen[0]", "p2p.listen", 1)))?;
            for port in config.tcp_ports() {
                if let Some((_, who)) = ports.iter().find(|(p, _)| *p == port) {
                    return Err(err(
                        i,
                        format!("p2p.listen: port {port} is {who}'s; give the repository its own port"),
                    ));
                }
                ports.push((port, format!("repository {:?}", r.name)));
            }
            key_pair(
                &format!("repositories[{i}].member_keystore"),
                &format!("repositories[{i}].member_passphrase_file"),
                &r.member_keystore,
                &r.member_passphrase_file,
            )?;
        }
        Ok(())
    }

    /// Whether the node joins a p2p network: as set, else on for every chain but a devnet.
    pub fn p2p_enabled(&self) -> bool {
        self.p2p.enabled.unwrap_or(self.node.chain != DEVNET)
    }

    /// The node's `[p2p]` section for these settings, its addresses checked (errors name the key).
    pub fn p2p_config(&self) -> Result<aergo_config::P2pConfig, SettingsError> {
        self.p2p_addresses()?;
        Ok(aergo_config::P2pConfig {
            enabled: self.p2p_enabled(),
            listen: vec![self.p2p.listen.trim().to_string()],
            bootstrap: self.p2p.bootstrap.iter().map(|b| b.trim().to_string()).collect(),
            external_address: self.p2p.external_address.as_ref().map(|a| a.trim().to_string()),
            snapshot_after_blocks: self
                .p2p
                .snapshot_after_blocks
                .unwrap_or(aergo_config::P2pConfig::default().snapshot_after_blocks),
            ..aergo_config::P2pConfig::default()
        })
    }

    fn p2p_addresses(&self) -> Result<aergo_config::P2pAddresses, SettingsError> {
        let config = aergo_config::P2pConfig {
            listen: vec![self.p2p.listen.clone()],
            bootstrap: self.p2p.bootstrap.clone(),
            external_address: self.p2p.external_address.clone(),
            ..aergo_config::P2pConfig::default()
        };
        // One listen address here: say `p2p.listen`, not `p2p.listen[0]`.
        config.addresses().map_err(|e| SettingsError::P2p(e.replacen("p2p.listen[0]", "p2p.listen", 1)))
    }

    /// The TCP port the node listens on for peers, for the firewall.
    pub fn p2p_port(&self) -> Option<u16> {
        self.p2p_addresses().ok()?.listen.first()?.iter().find_map(|p| match p {
            aergo_config::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
    }

    /// A readable one-line summary of the network settings.
    pub fn network_summary(&self) -> String {
        let n = &self.network;
        if n.dhcp {
            format!("{} DHCP", n.interface)
        } else {
            format!("{} {}", n.interface, n.address.as_deref().unwrap_or("?"))
        }
    }
}

/// A keystore and its passphrase file come together or not at all.
fn key_pair(
    keystore_name: &str,
    pass_name: &str,
    keystore: &Option<String>,
    pass: &Option<String>,
) -> Result<(), SettingsError> {
    match (keystore, pass) {
        (Some(_), None) => Err(SettingsError::Repository(format!(
            "{keystore_name} needs {pass_name}, the file holding its passphrase"
        ))),
        (None, Some(_)) => {
            Err(SettingsError::Repository(format!("{pass_name} is given without {keystore_name}")))
        }
        _ => Ok(()),
    }
}

pub fn validate_hostname(name: &str) -> Result<(), SettingsError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(SettingsError::Hostname(name.to_string()))
    }
}

/// `ip/prefix` into its parts.
pub fn parse_cidr(text: &str) -> Result<(IpAddr, u8), String> {
    let (ip, prefix) = text
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("{text:?}: write the address as ip/prefix, e.g. 192.0.2.10/24"))?;
    let ip: IpAddr = ip.parse().map_err(|_| format!("{ip:?} is not an IP address"))?;
    let prefix: u8 = prefix.parse().map_err(|_| format!("{prefix:?} is not a prefix length"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if prefix == 0 || prefix > max {
        return Err(format!("prefix /{prefix} is out of range 1-{max}"));
    }
    Ok((ip, prefix))
}

/// Each key is one `authorized_keys` line (type and key at least).
pub fn validate_authorized_keys(ssh: &SshSettings) -> Result<(), SettingsError> {
    for key in &ssh.authorized_keys {
        if key.contains('\n') || key.split_whitespace().count() < 2 {
            return Err(SettingsError::Ssh(format!("{key:?} is not one authorized_keys line")));
        }
    }
    Ok(())
}

impl Network {
    pub fn validate(&self) -> Result<(), String> {
        if self.interface.is_empty()
            || self.interface.len() > 15
            || !self.interface.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!("interface {:?} is not a valid interface name", self.interface));
        }
        if self.dhcp {
            return Ok(());
        }
        let address = self.address.as_deref().ok_or("a static setup needs an address (ip/prefix)")?;
        let (ip, _) = parse_cidr(address)?;
        let gateway = self.gateway.as_deref().ok_or("a static setup needs a gateway")?;
        let gw: IpAddr =
            gateway.trim().parse().map_err(|_| format!("gateway {gateway:?} is not an IP address"))?;
        if gw.is_ipv4() != ip.is_ipv4() {
            return Err("the gateway and the address are of different IP versions".into());
        }
        if self.dns.is_empty() {
            return Err("a static setup needs at least one DNS server".into());
        }
        for d in &self.dns {
            d.trim().parse::<IpAddr>().map_err(|_| format!("DNS server {d:?} is not an IP address"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Settings {
        Settings {
            hostname: "aergo-1".into(),
            network: Network::default(),
            node: NodeSettings {
                role: Role::Producer,
                chain: DEVNET.into(),
                producer_address: None,
                rpc: RpcAccess::Public,
                genesis_hash: None,
            },
            agent: AgentSettings::default(),
            ssh: SshSettings::default(),
            p2p: P2pSettings::default(),
            time: TimeSettings::default(),
            update: UpdateSettings::default(),
            producer: ProducerImport::default(),
            identity: KeyImport::default(),
            repositories: Vec::new(),
        }
    }

    #[test]
    fn provision_toml_of_the_appliance_parses() {
        let text = r#"
hostname = "aergo-1"
[network]
dhcp = true
[node]
role = "producer"
chain = "devnet"
[agent]
token = "0123456789abcdef0123456789abcdef"
[ssh]
authorized_keys = []
"#;
        let s: Settings = toml::from_str(text).unwrap();
        s.validate().unwrap();
        assert_eq!(s.agent.token.as_deref(), Some("0123456789abcdef0123456789abcdef"));
        // The token never goes back out into settings.toml.
        assert!(!toml::to_string(&s).unwrap().contains("0123456789abcdef"));
    }

    #[test]
    fn bad_values_are_refused_with_reasons() {
        let mut s = base();
        s.hostname = "-bad".into();
        assert!(matches!(s.validate(), Err(SettingsError::Hostname(_))));
        let mut s = base();
        s.network.dhcp = false;
        assert!(s.validate().unwrap_err().to_string().contains("needs an address"));
        s.network.address = Some("10.0.0.5".into());
        assert!(s.validate().unwrap_err().to_string().contains("ip/prefix"));
        s.network.address = Some("10.0.0.5/33".into());
        assert!(s.validate().unwrap_err().to_string().contains("out of range"));
        s.network.address = Some("10.0.0.5/24".into());
        s.network.gateway = Some("fe80::1".into());
        assert!(s.validate().unwrap_err().to_string().contains("different IP versions"));
        s.network.gateway = Some("10.0.0.1".into());
        s.network.dns = vec!["one.one".into()];
        assert!(s.validate().unwrap_err().to_string().contains("DNS server"));
        s.network.dns = vec!["10.0.0.1".into()];
        s.validate().unwrap();
        let mut s = base();
        s.node.role = Role::Full;
        assert!(s.validate().unwrap_err().to_string().contains("devnet needs this box"));
        let mut s = base();
        s.agent.token = Some("short".into());
        assert!(matches!(s.validate(), Err(SettingsError::Token(_))));
    }

    #[test]
    fn joining_a_network_is_checked_with_the_key_named() {
        let text = r#"
hostname = "box-2"
[node]
role = "producer"
chain = "genesis.toml"
genesis_hash = "9f00000000000000000000000000000000000000000000000000000000000001"
[p2p]
bootstrap = ["/ip4/10.77.0.11/tcp/7846", "/ip4/10.77.0.12/tcp/7846/p2p/12D3KooWLebXpVqwmgSYtdmHykdcJGXa78M2WigewjW4496GfCQg"]
external_address = "/ip4/203.0.113.7/tcp/7846"
[producer]
keystore = "producer.keystore"
passphrase_file = "producer.pass"
"#;
        let s: Settings = toml::from_str(text).unwrap();
        s.validate().unwrap();
        assert!(s.p2p_enabled(), "p2p is on for a chain from a genesis file");
        assert_eq!(s.p2p_port(), Some(7846));
        let config = s.p2p_config().unwrap();
        assert_eq!(config.listen, [DEFAULT_P2P_LISTEN]);
        assert_eq!(config.bootstrap.len(), 2);
        // The keystore's paths stay out of settings.toml; the p2p settings go in.
        let written = toml::to_string(&s).unwrap();
        assert!(!written.contains("producer.pass") && written.contains("10.77.0.11"), "{written}");

        let mut bad = s.clone();
        bad.p2p.bootstrap[1] = "10.77.0.12:7846".into();
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.starts_with("p2p.bootstrap[1]: \"10.77.0.12:7846\" is not a multiaddr"), "{e}");
        let mut bad = s.clone();
        bad.p2p.listen = "/ip4/0.0.0.0/udp/7846".into();
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.starts_with("p2p.listen: ") && e.contains("not a TCP address"), "{e}");
        let mut bad = s.clone();
        bad.p2p.external_address = Some("somewhere".into());
        assert!(bad.validate().unwrap_err().to_string().starts_with("p2p.external_address: "));
        let mut bad = s.clone();
        bad.time.servers = vec!["10.77.0.1".into(), "ntp one".into()];
        assert!(bad.validate().unwrap_err().to_string().starts_with("time.servers[1]: "));
        // The genesis from the peers: only with its hash and a bootstrap peer to take it from.
        let mut peer = s.clone();
        peer.node.chain = PEER.into();
        peer.validate().unwrap();
        let mut bad = peer.clone();
        bad.node.genesis_hash = None;
        assert!(bad.validate().unwrap_err().to_string().contains("needs genesis_hash"));
        let mut bad = peer.clone();
        bad.p2p.bootstrap.clear();
        assert!(bad.validate().unwrap_err().to_string().contains("bootstrap address"));
        let mut bad = s.clone();
        bad.node.genesis_hash = Some("9f".into());
        assert!(bad.validate().unwrap_err().to_string().contains("genesis_hash"));
        let mut bad = s.clone();
        bad.producer.passphrase_file = None;
        assert!(bad.validate().unwrap_err().to_string().contains("keystore needs passphrase_file"));
        let mut bad = s.clone();
        bad.node.role = Role::Full;
        assert!(bad.validate().unwrap_err().to_string().contains("producer\" only"));
        assert!(toml::from_str::<Settings>(&text.replace("external_address", "external")).is_err());
        // A devnet stays off the network unless asked.
        assert!(!base().p2p_enabled());
    }
}
