//! First-boot and on-demand setup: the settings, the files they become, and the Setup screen's flow.

pub mod files;
pub mod flow;
pub mod settings;

pub use files::{apply, revert, Applied, ApplyError, Material};
pub use settings::{Role, Settings, SettingsError};

/// First-boot provisioning: applies a `provision.toml` (the appliance's boot partition) under `root`,
/// generating the producer key on the box and, when the file has none, the agent token. A relative
/// `chain` names a genesis file on the boot partition. Returns what was applied and the new token if
/// one was generated.
pub fn provision(
    root: &std::path::Path,
    file: &std::path::Path,
) -> Result<(Applied, Option<String>), ApplyError> {
    let text = std::fs::read_to_string(file)
        .map_err(|source| ApplyError::Io { path: file.display().to_string(), source })?;
    let mut settings: Settings = toml::from_str(&text)
        .map_err(|e| ApplyError::Damaged { path: file.display().to_string(), reason: e.to_string() })?;
    if settings.node.chain != settings::DEVNET && !settings.node.chain.starts_with('/') {
        settings.node.chain = format!("/boot/{}", settings.node.chain);
    }
    let generated = match settings.agent.token {
        Some(_) => None,
        None => {
            let token = flow::new_token();
            settings.agent.token = Some(token.clone());
            Some(token)
        }
    };
    let material = Material {
        producer_key: (settings.node.role == Role::Producer)
            .then(aergo_primitives::crypto::Keypair::generate),
    };
    settings.node.producer_address = None;
    let applied = apply(root, &settings, &material)?;
    Ok((applied, generated))
}
