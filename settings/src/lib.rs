//! The box's settings: what `provision.toml` and the console's Setup screen say, checked, and the
//! files they become — written atomically with a last-good copy to revert to. The console (Setup,
//! first-boot provisioning) and the agent (Horde's apply-settings and revert-settings actions) use
//! this one crate, so a setting means the same thing whichever way it reaches the box.
//!
//! It knows the node's config and genesis formats (`aergo-config`) and keys (`aergo-primitives`),
//! and nothing of the node's engine.

pub mod files;
pub mod settings;

pub use files::{apply, provision_access, revert, Applied, ApplyError, Material};
pub use settings::{Role, Settings, SettingsError};

/// A new random agent token: 32 bytes in hex.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A PEM file of provisioning that must hold `marker` (`-----BEGIN … {marker}`).
fn read_pem(root: &std::path::Path, setting: &str, path: &str, marker: &str) -> Result<Vec<u8>, ApplyError> {
    let file = files::box_path(root, path);
    let bytes = std::fs::read(&file)
        .map_err(|source| ApplyError::Io { path: format!("{setting} {}", file.display()), source })?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.lines().any(|l| l.starts_with("-----BEGIN ") && l.ends_with(marker)) {
        return Err(ApplyError::Damaged {
            path: format!("{setting} {}", file.display()),
            reason: format!("not a PEM file with a {}", marker.trim_end_matches('-')),
        });
    }
    Ok(bytes)
}

/// First-boot provisioning: applies a `provision.toml` (the appliance's boot partition) under `root`.
/// The producer key is imported from `[producer] keystore` with its `passphrase_file` (whose file
/// is deleted once the key is safely on the data partition), or generated on the box; the agent
/// token is generated when the file has none. A relative path (`chain`, the keystore, the
/// passphrase file) names a file on the boot partition. Returns what was applied and the new token
/// if one was generated. On any error nothing is applied and nothing is deleted.
pub fn provision(
    root: &std::path::Path,
    file: &std::path::Path,
) -> Result<(Applied, Option<String>), ApplyError> {
    let text = std::fs::read_to_string(file)
        .map_err(|source| ApplyError::Io { path: file.display().to_string(), source })?;
    let mut settings: Settings = toml::from_str(&text)
        .map_err(|e| ApplyError::Damaged { path: file.display().to_string(), reason: e.to_string() })?;
    settings.validate()?;
    if settings.node.chain != settings::DEVNET
        && settings.node.chain != settings::PEER
        && !settings.node.chain.starts_with('/')
    {
        settings.node.chain = format!("/boot/{}", settings.node.chain);
    }
    for r in &mut settings.repositories {
        if !r.genesis.starts_with('/') {
            r.genesis = format!("/boot/{}", r.genesis);
        }
    }
    let generated = match settings.agent.token {
        Some(_) => None,
        None => {
            let token = new_token();
            settings.agent.token = Some(token.clone());
            Some(token)
        }
    };
    let import = settings.producer.clone();
    let producer_key = match (&import.keystore, &import.passphrase_file) {
        (Some(keystore), Some(pass_file)) => Some(files::import_keystore(root, keystore, pass_file)?),
        _ => (settings.node.role == Role::Producer).then(aergo_primitives::crypto::Keypair::generate),
    };
    settings.node.producer_address = None;
    // The node's identity and the repositories' member keys, each from its keystore.
    let identity_key = match (&settings.identity.keystore, &settings.identity.passphrase_file) {
        (Some(keystore), Some(pass)) => Some(
            files::unlock_keystore(root, "identity.keystore", keystore, "identity.passphrase_file", pass)
                .map_err(ApplyError::OtherKey)?,
        ),
        _ => None,
    };
    let mut member_keys = Vec::new();
    for (i, r) in settings.repositories.iter().enumerate() {
        if let (Some(keystore), Some(pass)) = (&r.member_keystore, &r.member_passphrase_file) {
            let key = files::unlock_keystore(
                root,
                &format!("repositories[{i}].member_keystore"),
                keystore,
                &format!("repositories[{i}].member_passphrase_file"),
                pass,
            )
            .map_err(ApplyError::OtherKey)?;
            member_keys.push((r.name.clone(), key));
        }
    }
    // The agent's own certificate: both PEM files read now, the key removed from the boot
    // partition once it is on the box.
    let agent_tls = match (&settings.agent.tls_cert, &settings.agent.tls_key) {
        (Some(cert), Some(key)) => Some((
            read_pem(root, "agent.tls_cert", cert, "CERTIFICATE-----")?,
            read_pem(root, "agent.tls_key", key, "PRIVATE KEY-----")?,
        )),
        _ => None,
    };
    let applied = apply(root, &settings, &Material { producer_key, identity_key, member_keys, agent_tls })?;
    if let Some(key) = &settings.agent.tls_key {
        files::remove_synced(&files::box_path(root, key))?;
    }
    // The keys are on the data partition now (written and synced by `apply`): their passphrases
    // leave the boot partition, which anyone holding the disk can read.
    let pass_files = import
        .passphrase_file
        .iter()
        .chain(&settings.identity.passphrase_file)
        .chain(settings.repositories.iter().filter_map(|r| r.member_passphrase_file.as_ref()));
    for pass_file in pass_files {
        files::remove_synced(&files::box_path(root, pass_file))?;
    }
    Ok((applied, generated))
}
