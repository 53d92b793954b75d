//! What the configuration can be refused for; every message names the option, the file or
//! the `[[links]]` table at fault.

use super::ConfigFileError;
use crate::component::{ComponentName, NameError};
use crate::factory::FactoryError;
use crate::manager::ConfigError as LinkConfigError;
use crate::sal::SalError;

/// Configuration the host refuses.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file.
    #[error(transparent)]
    File(#[from] ConfigFileError),
    /// The command line's parser refused the arguments.
    #[error("{0}")]
    CommandLine(String),
    /// A subcommand named after an option.
    #[error("`{0}` is a subcommand: give it first, before any option (love-host {0} --help)")]
    SubcommandAfterOption(String),
    /// A malformed component name.
    #[error(transparent)]
    Component(#[from] NameError),
    /// No component.
    #[error("At least one component must be provided (positional, --components, or LOVE_CSC_PRODUCER)")]
    NoComponents,
    /// A component given twice.
    #[error("component {0} is listed twice")]
    ComponentTwice(ComponentName),
    /// A malformed `--producer-type`.
    #[error(transparent)]
    Factory(#[from] FactoryError),
    /// A malformed `--setting`.
    #[error("--setting {0:?} is not of the form NAME=VALUE")]
    Setting(String),
    /// A duration that is not a positive number of seconds.
    #[error("{what} must be a positive number of seconds, got {value}")]
    NotPositive {
        /// The option.
        what: &'static str,
        /// Its value.
        value: f64,
    },
    /// A duration too large to represent.
    #[error("{what} is too large: {value} seconds")]
    TooLarge {
        /// The option.
        what: &'static str,
        /// Its value.
        value: f64,
    },
    /// The default manager link.
    #[error(transparent)]
    Link(#[from] LinkConfigError),
    /// A `[[links]]` table without a usable name.
    #[error("[[links]] {0:?}: a link needs a name other than \"default\" (the link of the other components)")]
    LinkName(String),
    /// Two `[[links]]` tables with one name.
    #[error("[[links]] {0}: two links have this name")]
    LinkTwice(String),
    /// A `[[links]]` table's components.
    #[error("[[links]] {link}: components")]
    LinkComponents {
        /// The link.
        link: String,
        /// Why.
        #[source]
        source: NameError,
    },
    /// A `[[links]]` component that is not served.
    #[error("[[links]] {link}: component {component} is not among the configured components")]
    LinkUnknownComponent {
        /// The link.
        link: String,
        /// The component.
        component: ComponentName,
    },
    /// A component on two links.
    #[error("[[links]] {link}: component {component} is already sent to another link")]
    LinkComponentTaken {
        /// The link.
        link: String,
        /// The component.
        component: ComponentName,
    },
    /// A `[[links]]` table's URL.
    #[error("[[links]] {link}: url")]
    LinkUrl {
        /// The link.
        link: String,
        /// Why.
        #[source]
        source: LinkConfigError,
    },
    /// `--sim-rate`.
    #[error("--sim-rate must be a positive number, got {0}")]
    SimRate(f64),
    /// `--sim-stop-heartbeat`.
    #[error("--sim-stop-heartbeat")]
    HeartbeatStop(#[source] SalError),
    /// `--sal replay` without a file.
    #[error("--sal replay needs --replay FILE")]
    ReplayWithoutFile,
    /// `--replay-speed`.
    #[error("--replay-speed must be 0 (as fast as possible) or a positive factor, got {0}")]
    ReplaySpeed(f64),
}
