//! Hot deployment: plugins added, upgraded and removed while the host runs.
//!
//! The plugin directory is watched (and rescanned on SIGHUP). A deploy is a rename into the
//! directory; files are only looked at once they stop changing, and only files named `*.so`
//! (not hidden) are considered, so a copy in progress under a temporary name is never loaded.
//! Every file is loaded from a private copy with a unique name ([`crate::plugin::copies`]): the
//! dynamic loader caches libraries by path and by inode, so loading a new version from the
//! deployed path could hand back the old one. Libraries are never unloaded (abi_stable's
//! design): each upgrade keeps one more copy mapped until the process exits.
//!
//! - `scan`: the directory's changes turned into [`DeployAction`]s;
//! - `apply`: an action carried out on the registry and the running producers;
//! - `watch`: the loop that watches, waits for quiet, applies and undoes.

mod apply;
mod scan;
mod watch;

pub use apply::{apply, report, FactoryInputs};
pub use scan::{log_action, DeployAction, Deployer};
pub use watch::{start, DeployError, Deployment, WatchedDir};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::component::ComponentName;
use crate::plugin::LoadedPlugin;
use crate::runtime::Serving;

/// Deployment outcomes and what is loaded and serving, as metrics ([`crate::metrics`]
/// registers them).
#[derive(Debug, Default)]
pub struct DeployStats {
    /// New plugins registered.
    pub added: Counter,
    /// Upgrades registered.
    pub upgraded: Counter,
    /// Files refused (load failure, layout, not newer).
    pub refused: Counter,
    /// Plugins removed.
    pub removed: Counter,
    /// Producer swaps that succeeded.
    pub swaps_ok: Counter,
    /// Producer swaps that failed (old producer kept).
    pub swaps_failed: Counter,
    /// Plugin library copies mapped in the process (never unloaded).
    pub library_copies: Gauge,
    /// The loaded plugins (value 1).
    pub loaded: Family<PluginLabels, Gauge>,
    /// Which producer type and plugin serve each component (value 1).
    pub serving: Family<ServingLabels, Gauge>,
    /// The producers running now, for the admin endpoint and the metrics.
    pub running: crate::producers::RunningProducers,
}

/// A loaded plugin, as its metric names it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    plugin: String,
    version: String,
    producer_type: String,
}

/// What serves a component, as its metric names it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServingLabels {
    component: String,
    index: String,
    producer_type: String,
    plugin: String,
}

impl DeployStats {
    /// The plugins loaded now.
    pub fn plugins_loaded(&self, plugins: &[std::sync::Arc<LoadedPlugin>]) {
        self.loaded.clear();
        for p in plugins {
            let d = &p.descriptor;
            let labels = PluginLabels {
                plugin: d.name.clone(),
                version: d.version.clone(),
                producer_type: d.producer_type.clone(),
            };
            self.loaded.get_or_create(&labels).set(1);
        }
    }

    /// What serves each component now.
    pub fn serving(&self, serving: &[(ComponentName, Serving)]) {
        self.serving.clear();
        for (c, s) in serving {
            let labels = ServingLabels {
                component: c.name.clone(),
                index: c.index.to_string(),
                producer_type: s.producer_type.clone(),
                plugin: s.label.clone(),
            };
            self.serving.get_or_create(&labels).set(1);
        }
    }
}
