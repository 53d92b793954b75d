//! The plugin directory's load at start: every file from a private copy, quarantined files
//! left out, and each outcome logged.

use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

use super::copies::prepare_copies_dir;
use super::quarantine::Quarantine;
use super::{scan_dir_private, PluginDirError, PluginRegistry};

/// Why the plugins could not be loaded at all (one file failing is not an error).
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The private copy directory.
    #[error("preparing the private plugin copy directory {dir}")]
    CopiesDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The plugin directory.
    #[error(transparent)]
    Dir(#[from] PluginDirError),
}

/// The registry of what `dir` offers (loaded from private copies in `copies_dir`), without the
/// files the quarantine in `state_dir` keeps out.
pub fn load_registry(dir: &Path, copies_dir: &Path, state_dir: &Path) -> Result<PluginRegistry, StartupError> {
    prepare_copies_dir(copies_dir)
        .map_err(|source| StartupError::CopiesDir { dir: copies_dir.to_path_buf(), source })?;
    let (q, warnings) = Quarantine::load(state_dir);
    for w in warnings {
        warn!("plugin quarantine: {w}");
    }
    let report = scan_dir_private(dir, copies_dir, &q)?;
    for (file, e) in &report.quarantined {
        warn!(
            file = %file.display(), plugin = %e.plugin, version = %e.version,
            "plugin file {} is quarantined and not loaded: {}; its components are served by \
             another version or the fallback producer until it is replaced by a new build or cleared \
             (love-host plugins --clear-quarantine --plugin-dir {})",
            file.display(), e.describe(), dir.display()
        );
    }
    if report.loaded.is_empty() && report.refused.is_empty() {
        warn!(
            "plugin directory {} holds no plugins (*.so); only the built-in base producer is available",
            dir.display()
        );
    }
    for p in &report.loaded {
        let d = &p.descriptor;
        info!(
            plugin = %d.name, version = %d.version, producer_type = %d.producer_type,
            claims = ?d.claims, api = %d.api_version, file = %p.path.display(),
            "loaded plugin {} {}", d.name, d.version
        );
    }
    for e in &report.refused {
        error!(file = %e.path().display(), "plugin refused: {e}");
    }
    Ok(PluginRegistry::new(report.loaded))
}
