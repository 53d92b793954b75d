//! The binary's commands, over the library.

use std::io::Write;
use std::path::Path;

use crate::plugin::{loader::host_api_version, scan_dir};

/// `love-host plugins --plugin-dir DIR`: list what a directory offers, without connecting
/// anywhere. Returns the text printed.
pub fn list_plugins(dir: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let report = scan_dir(dir)?;
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
    Ok(())
}

/// Run the producers (the default command).
pub fn run(_args: crate::cli::RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("run is being wired up")
}
