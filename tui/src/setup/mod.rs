//! First-boot and on-demand setup: the settings and the files they become (`aergo-settings`, shared
//! with the agent), and the Setup screen's flow.

pub mod flow;

pub use aergo_settings::{
    apply, files, provision, revert, settings, Applied, ApplyError, Material, Role, Settings, SettingsError,
};
