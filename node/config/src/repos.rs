//! Where a node keeps the repositories it hosts beside its public chain, and the list of their
//! names (`docs/repositories.md`, "Hosting"): the node reads them at start and changes them
//! (`aergo-node repo add|remove`, the admin RPC), and provisioning writes them
//! (`docs/repositories.md`, "Provisioning a box for a repository"), so both use these functions.
//!
//! ```text
//!  data_dir/repos/hosted            the names, one a line, in the order added (written atomically)
//!  data_dir/repos/<name>/genesis.toml, repo.toml, state/, blocks/, raft/, branches/
//! ```

use crate::{NodeConfig, P2pConfig, RepoSettings};
use std::path::{Path, PathBuf};

/// Where the hosted repositories live in a node's data directory.
pub const REPOS_DIR: &str = "repos";
/// The list of hosted repositories' names.
pub const HOSTED_FILE: &str = "hosted";
/// A repository's own settings in its directory.
pub const SETTINGS_FILE: &str = "repo.toml";
/// A repository's genesis in its directory.
pub const GENESIS_FILE: &str = "genesis.toml";

/// Why `name` cannot name a repository: `[a-z0-9][a-z0-9-]{0,31}`.
pub fn name_problem(name: &str) -> Option<String> {
    let ok_first = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok_rest = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty() || name.len() > 32 || !ok_first || !ok_rest {
        return Some(format!(
            "repository name {name:?}: 1 to 32 of a-z, 0-9 and '-', starting with a letter or digit"
        ));
    }
    None
}

/// The repositories directory of a node's data directory.
pub fn repos_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(REPOS_DIR)
}

/// The names in `data_dir/repos/hosted` (none when the file does not exist). A line that is
/// no repository name is an error naming the file and the line.
pub fn read_hosted(data_dir: &Path) -> Result<Vec<String>, String> {
    let path = repos_dir(data_dir).join(HOSTED_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut names = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let name = line.trim();
        if name.is_empty() {
            continue;
        }
        if let Some(why) = name_problem(name) {
            return Err(format!("{} line {}: {why}", path.display(), i + 1));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// The text of a `hosted` file listing `names`.
pub fn hosted_text(names: &[String]) -> String {
    names.iter().map(|n| format!("{n}\n")).collect()
}

/// Writes `data_dir/repos/hosted` atomically (a crash leaves the old list or the new).
pub fn write_hosted(data_dir: &Path, names: &[String]) -> Result<(), String> {
    let dir = repos_dir(data_dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(HOSTED_FILE);
    aergo_primitives::file::write_atomic_mode(&path, hosted_text(names).as_bytes(), 0o644)
        .map_err(|e| format!("{}: {e}", path.display()))
}

impl P2pConfig {
    /// The TCP ports of the listen addresses when the swarm is on (none when it is off; a port
    /// 0, chosen by the system, is no port of its own).
    pub fn tcp_ports(&self) -> Vec<u16> {
        if !self.enabled {
            return Vec::new();
        }
        self.listen
            .iter()
            .filter_map(|a| a.parse::<multiaddr::Multiaddr>().ok())
            .flat_map(|a| {
                a.iter()
                    .filter_map(|p| match p {
                        multiaddr::Protocol::Tcp(port) if port != 0 => Some(port),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// A repository's config as the node runs it: the node's, with the repository's directory,
/// genesis and `repo.toml` (defaults without one).
pub fn repo_config(node: &NodeConfig, name: &str) -> Result<NodeConfig, String> {
    let dir = repos_dir(&node.data_dir).join(name);
    let path = dir.join(SETTINGS_FILE);
    let settings = match std::fs::read_to_string(&path) {
        Ok(text) => RepoSettings::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => RepoSettings::default(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let config = settings.apply(node, &dir);
    config.validate().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(config)
}

/// The TCP ports a node's firewall opens for it: its public chain's p2p port (when on) and each
/// hosted repository's (when its swarm is on). A repository whose settings cannot be read is
/// left out; its node refuses to start it and says why.
pub fn p2p_ports(node: &NodeConfig) -> Vec<u16> {
    let mut ports = node.p2p.tcp_ports();
    for name in read_hosted(&node.data_dir).unwrap_or_default() {
        if let Ok(config) = repo_config(node, &name) {
            ports.extend(config.p2p.tcp_ports());
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosted_list_and_the_ports_of_a_node() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = NodeConfig { data_dir: dir.path().to_path_buf(), ..NodeConfig::default() };
        node.p2p.enabled = true;
        node.p2p.listen = vec!["/ip4/0.0.0.0/tcp/7846".into()];
        assert_eq!(read_hosted(dir.path()).unwrap(), Vec::<String>::new());
        write_hosted(dir.path(), &["acme".into(), "lab".into()]).unwrap();
        assert_eq!(read_hosted(dir.path()).unwrap(), ["acme", "lab"]);
        let acme = repos_dir(dir.path()).join("acme");
        std::fs::create_dir_all(&acme).unwrap();
        std::fs::write(
            acme.join(SETTINGS_FILE),
            "[p2p]\nenabled = true\nlisten = [\"/ip4/0.0.0.0/tcp/7850\"]\n",
        )
        .unwrap();
        // "lab" has no repo.toml: no swarm, no port.
        assert_eq!(p2p_ports(&node), [7846, 7850]);
        node.p2p.enabled = false;
        assert_eq!(p2p_ports(&node), [7850]);
        std::fs::write(repos_dir(dir.path()).join(HOSTED_FILE), "acme\nNot A Name\n").unwrap();
        let e = read_hosted(dir.path()).unwrap_err();
        assert!(e.contains("line 2") && e.contains("repository name"), "{e}");
        assert!(name_problem("-x").is_some() && name_problem(&"a".repeat(33)).is_some());
        assert!(name_problem("acme-2").is_none());
    }
}
