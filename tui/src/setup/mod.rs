//! First-boot and on-demand setup: the settings, the files they become, and the Setup screen's flow.

pub mod files;
pub mod flow;
pub mod settings;

pub use files::{apply, revert, Applied, ApplyError, Material};
pub use settings::{Role, Settings, SettingsError};
