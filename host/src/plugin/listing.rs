//! `love-host plugins --plugin-dir DIR [--clear-quarantine]`: what a plugin directory offers,
//! without connecting anywhere.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::loader::host_api_version;
use super::quarantine::Quarantine;
use super::{scan_dir_checked, PluginDirError};

/// Why the listing could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    /// The directory cannot be listed.
    #[error(transparent)]
    Dir(#[from] PluginDirError),
    /// The crash records could not be cleared.
    #[error("clearing the quarantine in {state_dir}")]
    Clear {
        /// The state directory.
        state_dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing the listing failed (a closed pipe).
    #[error("writing the plugin listing")]
    Write(#[from] std::io::Error),
}

/// Forget the crash records of `dir`'s files if asked, then list what it offers.
pub fn plugins_command(
    dir: &Path,
    state_dir: &Path,
    clear_quarantine: bool,
    out: &mut dyn Write,
) -> Result<(), ListingError> {
    if clear_quarantine {
        let cleared = Quarantine::clear(state_dir, dir)
            .map_err(|source| ListingError::Clear { state_dir: state_dir.to_path_buf(), source })?;
        for e in &cleared {
            writeln!(out, "cleared quarantine of {}: {}", e.file.display(), e.describe())?;
        }
        if cleared.is_empty() {
            writeln!(out, "no quarantined file in {} (state directory {})", dir.display(), state_dir.display())?;
        }
    }
    let (q, warnings) = Quarantine::load(state_dir);
    for w in warnings {
        writeln!(out, "warning: {w}")?;
    }
    list_plugins_checked(dir, &q, out)
}

/// List what `dir` offers, crash records aside.
pub fn list_plugins(dir: &Path, out: &mut dyn Write) -> Result<(), ListingError> {
    list_plugins_checked(dir, &Quarantine::default(), out)
}

fn list_plugins_checked(dir: &Path, q: &Quarantine, out: &mut dyn Write) -> Result<(), ListingError> {
    let report = scan_dir_checked(dir, q)?;
    writeln!(out, "plugin directory {} (host interface love-plugin-api {})", dir.display(), host_api_version())?;
    if report.loaded.is_empty() && report.refused.is_empty() {
        writeln!(out, "no plugins (*.so) found")?;
    }
    if !report.loaded.is_empty() {
        writeln!(out, "{:<16} {:<10} {:<14} {:<24} {:<9} FILE", "NAME", "VERSION", "TYPE", "CLAIMS", "API")?;
    }
    for p in &report.loaded {
        let d = &p.descriptor;
        let claims = if d.claims.is_empty() { "-".to_string() } else { d.claims.join(",") };
        writeln!(
            out,
            "{:<16} {:<10} {:<14} {:<24} {:<9} {}",
            d.name,
            d.version,
            d.producer_type,
            claims,
            d.api_version,
            p.path.display()
        )?;
    }
    for e in &report.refused {
        writeln!(out, "REFUSED {e}")?;
    }
    for (file, e) in &report.quarantined {
        writeln!(
            out,
            "QUARANTINED {}: {} (love-host plugins --clear-quarantine --plugin-dir {})",
            file.display(),
            e.describe(),
            dir.display()
        )?;
    }
    Ok(())
}
