//! Hot deployment: plugins added, upgraded and removed while the host runs.
//!
//! The plugin directory is watched (and rescanned on SIGHUP). A deploy is a rename into the
//! directory; files are only looked at once they stop changing, and only files named `*.so`
//! (not hidden) are considered, so a copy in progress under a temporary name is never loaded.
//! Every file is loaded from a private copy with a unique name: the dynamic loader caches
//! libraries by path and by inode, so loading a new version from the deployed path could hand
//! back the old one. Libraries are never unloaded (abi_stable's design): each upgrade keeps one
//! more copy mapped until the process exits.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::plugin::loader::load_plugin_copy;
use crate::plugin::{compare_versions, is_plugin_file_name, note_skipped, screen_entry, Entry, LoadedPlugin};
use crate::runtime::{ReplaceRequest, Serving, StateTransfer};

/// Identity of a file's current contents as far as deployment cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    if !m.is_file() {
        return None;
    }
    Some(FileStamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
    })
}

/// What a rescan found.
#[derive(Debug, Clone)]
pub enum DeployAction {
    /// A plugin with a name not loaded before.
    Added(Arc<LoadedPlugin>),
    /// A newer version of a loaded plugin (or an older one with `--allow-downgrade`).
    Upgraded {
        /// The version being replaced.
        old: Arc<LoadedPlugin>,
        /// The new one.
        new: Arc<LoadedPlugin>,
    },
    /// A file that was not deployed, and why.
    Refused {
        /// The deployed file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A plugin whose file left the directory: no new producers of it.
    Removed(Arc<LoadedPlugin>),
}

/// Counters of deployment outcomes (for logs and metrics).
#[derive(Debug, Default)]
pub struct DeployStats {
    /// New plugins registered.
    pub added: AtomicU64,
    /// Upgrades registered.
    pub upgraded: AtomicU64,
    /// Files refused (load failure, layout, not newer).
    pub refused: AtomicU64,
    /// Plugins removed.
    pub removed: AtomicU64,
    /// Producer swaps that succeeded.
    pub swaps_ok: AtomicU64,
    /// Producer swaps that failed (old producer kept).
    pub swaps_failed: AtomicU64,
    /// Plugin library copies mapped in the process (never unloaded).
    pub library_copies: AtomicU64,
}

/// Tracks the plugin directory and turns its changes into [`DeployAction`]s.
pub struct Deployer {
    dir: PathBuf,
    copies_dir: PathBuf,
    allow_downgrade: bool,
    seen: HashMap<PathBuf, FileStamp>,
    /// Active plugin per name, with the deployed file it came from.
    active: HashMap<String, (Arc<LoadedPlugin>, PathBuf)>,
    next_copy: u64,
    /// Files that crashed the process before, not loaded again.
    quarantine: crate::plugin::quarantine::Quarantine,
    /// Outcome counters.
    pub stats: Arc<DeployStats>,
}

/// Create the private copy directory, readable by this user only.
pub fn prepare_copies_dir(copies_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(copies_dir)?;
    std::fs::set_permissions(copies_dir, std::fs::Permissions::from_mode(0o700))
}

/// At exit: remove this process's private copies (named `<pid>-…`), and the directory when
/// nothing else is left in it. The libraries stay mapped until the process ends anyway.
pub fn remove_private_copies(copies_dir: &Path) {
    let prefix = format!("{}-", std::process::id());
    if let Ok(entries) = std::fs::read_dir(copies_dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(copies_dir);
}

/// This process's private copies, removed when dropped: on a normal exit, a fatal start-up
/// error returned from anywhere after the copies were made, and a panic that unwinds to `main`.
/// A crash or SIGKILL leaves them; [`remove_stale_copies`] clears those at the next start.
pub struct CopiesGuard {
    dir: PathBuf,
}

impl CopiesGuard {
    /// Guard the copies this process will make in `copies_dir`.
    pub fn new(copies_dir: &Path) -> CopiesGuard {
        CopiesGuard { dir: copies_dir.to_path_buf() }
    }
}

impl Drop for CopiesGuard {
    fn drop(&mut self) {
        remove_private_copies(&self.dir);
    }
}

/// Whether process `pid` is alive (or exists but belongs to someone else).
fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return true; // not a process id: never treat as dead
    }
    // Signal 0 checks existence only.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// At start: remove what processes that no longer run left behind (a crash or SIGKILL skips
/// every exit path): the default copy directories `love-host-<pid>-plugins` under `tmp`, and
/// the `<pid>-…` copies in `copies_dir` (a `--plugin-copies-dir` shared across runs). Only
/// entries of this user whose pid is not alive (or is this process's: it must run before the
/// first copy is made) are touched. Returns how many were removed.
pub fn remove_stale_copies(tmp: &Path, copies_dir: &Path) -> usize {
    let uid = unsafe { libc::geteuid() };
    let mine = |m: &std::fs::Metadata| m.uid() == uid;
    // This process's own pid counts as dead: it has made no copies yet, so any are a previous
    // process's (in a container every start has the same pid).
    let me = std::process::id() as i32;
    let dead = |pid: &str| pid.parse::<i32>().is_ok_and(|p| p == me || !pid_alive(p));
    let mut removed = 0;
    if let Ok(entries) = std::fs::read_dir(tmp) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(pid) = name.strip_prefix("love-host-").and_then(|r| r.strip_suffix("-plugins")) else { continue };
            let is_own_dir = std::fs::symlink_metadata(e.path()).is_ok_and(|m| m.is_dir() && mine(&m));
            if is_own_dir && dead(pid) && std::fs::remove_dir_all(e.path()).is_ok() {
                info!("removed {}, the plugin copies of process {pid}, which no longer runs", e.path().display());
                removed += 1;
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(copies_dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some((pid, _)) = name.split_once('-') else { continue };
            let is_own_file = std::fs::symlink_metadata(e.path()).is_ok_and(|m| m.is_file() && mine(&m));
            if is_own_file && dead(pid) && std::fs::remove_file(e.path()).is_ok() {
                info!("removed {}, a plugin copy of process {pid}, which no longer runs", e.path().display());
                removed += 1;
            }
        }
    }
    removed
}

impl Deployer {
    /// Start tracking `dir`, whose plugins were already loaded at start-up (`initial`, loaded
    /// from their deployed paths).
    pub fn new(
        dir: &Path,
        copies_dir: &Path,
        allow_downgrade: bool,
        initial: &[Arc<LoadedPlugin>],
    ) -> std::io::Result<Self> {
        prepare_copies_dir(copies_dir)?;
        let mut seen = HashMap::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let p = e.path();
                if is_plugin_file_name(&p) {
                    if let Some(s) = stamp(&p) {
                        seen.insert(p, s);
                    }
                }
            }
        }
        let stats = Arc::new(DeployStats::default());
        stats.library_copies.store(initial.len() as u64, Ordering::Relaxed);
        let active = initial.iter().map(|p| (p.descriptor.name.clone(), (p.clone(), p.path.clone()))).collect();
        Ok(Deployer {
            dir: dir.to_path_buf(),
            copies_dir: copies_dir.to_path_buf(),
            allow_downgrade,
            seen,
            active,
            next_copy: 0,
            quarantine: Default::default(),
            stats,
        })
    }

    /// Refuse the files `quarantine` keeps out (they crashed the process before).
    pub fn with_quarantine(self, quarantine: crate::plugin::quarantine::Quarantine) -> Self {
        Deployer { quarantine, ..self }
    }

    /// The directory watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Look at the directory again; load what is new or changed (from private copies).
    pub fn rescan(&mut self) -> Vec<DeployAction> {
        let mut actions = Vec::new();
        // Checked again at every look: a directory opened to others since the start must not
        // become a way in.
        if let Err(e) = crate::plugin::check_plugin_dir(&self.dir) {
            warn!("deploy: nothing loaded from the plugin directory: {e}");
            return actions;
        }
        let mut present: Vec<(PathBuf, FileStamp)> = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| is_plugin_file_name(p))
                .filter_map(|p| match stamp(&p) {
                    Some(s) => Some((p, s)),
                    None => {
                        if let Entry::NotAFile(what) = screen_entry(&self.dir, &p) {
                            note_skipped(&p, &what);
                        }
                        None
                    }
                })
                .collect(),
            Err(e) => {
                warn!("cannot read plugin directory {}: {e}", self.dir.display());
                return actions;
            }
        };
        present.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, st) in &present {
            if self.seen.get(path) == Some(st) {
                continue;
            }
            // A file still being written changes between two looks: leave it for the next scan.
            std::thread::sleep(Duration::from_millis(50));
            if stamp(path) != Some(*st) {
                continue;
            }
            self.seen.insert(path.clone(), *st);
            actions.push(self.load_new(path));
        }
        let gone: Vec<PathBuf> = self.seen.keys().filter(|p| !present.iter().any(|(q, _)| q == *p)).cloned().collect();
        for path in gone {
            self.seen.remove(&path);
            let name = self.active.iter().find(|(_, (_, src))| *src == path).map(|(n, _)| n.clone());
            if let Some(name) = name {
                let (plugin, _) = self.active.remove(&name).expect("active plugin");
                self.stats.removed.fetch_add(1, Ordering::Relaxed);
                actions.push(DeployAction::Removed(plugin));
            }
        }
        actions
    }

    fn load_new(&mut self, path: &Path) -> DeployAction {
        let refuse = |this: &Self, reason: String| {
            this.stats.refused.fetch_add(1, Ordering::Relaxed);
            DeployAction::Refused { path: path.to_path_buf(), reason }
        };
        if let Entry::Refused(reason) = screen_entry(&self.dir, path) {
            return refuse(self, reason);
        }
        if let Some(e) = self.quarantine.check(path) {
            let reason = format!("quarantined: {} (love-host plugins --clear-quarantine to load it)", e.describe());
            return refuse(self, reason);
        }
        self.next_copy += 1;
        let file_name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let copy = self.copies_dir.join(format!("{}-{}-{}", std::process::id(), self.next_copy, file_name));
        let loaded = match load_plugin_copy(path, &copy) {
            Ok(p) => p,
            Err(e) => {
                let reason = e.to_string().replacen(&path.display().to_string(), "", 1);
                return refuse(self, reason.trim_start_matches(": ").to_string());
            }
        };
        self.stats.library_copies.fetch_add(1, Ordering::Relaxed);
        let new = Arc::new(loaded);
        let name = new.descriptor.name.clone();
        match self.active.get(&name) {
            None => {
                self.active.insert(name, (new.clone(), path.to_path_buf()));
                self.stats.added.fetch_add(1, Ordering::Relaxed);
                DeployAction::Added(new)
            }
            Some((old, _)) => {
                let ord = compare_versions(&new.descriptor.version, &old.descriptor.version);
                if ord.is_le() && !self.allow_downgrade {
                    return refuse(
                        self,
                        format!(
                            "plugin {name} version {} is not newer than the loaded {} (use --allow-downgrade to permit it)",
                            new.descriptor.version, old.descriptor.version
                        ),
                    );
                }
                let old = old.clone();
                self.active.insert(name, (new.clone(), path.to_path_buf()));
                self.stats.upgraded.fetch_add(1, Ordering::Relaxed);
                DeployAction::Upgraded { old, new }
            }
        }
    }

    /// Make `plugin` the active version of its name again (after an upgrade whose swaps failed).
    pub fn revert(&mut self, plugin: Arc<LoadedPlugin>) {
        let path = plugin.path.clone();
        self.active.insert(plugin.descriptor.name.clone(), (plugin, path));
    }

    /// The active plugins.
    pub fn active(&self) -> Vec<Arc<LoadedPlugin>> {
        let mut v: Vec<_> = self.active.values().map(|(p, _)| p.clone()).collect();
        v.sort_by(|a, b| a.descriptor.name.cmp(&b.descriptor.name));
        v
    }
}

/// Log what a deployment action means.
pub fn log_action(a: &DeployAction) {
    match a {
        DeployAction::Added(p) => info!(
            plugin = %p.descriptor.name, version = %p.descriptor.version, file = %p.path.display(),
            "deploy: new plugin {} {} (type {}, claims {:?})", p.descriptor.name, p.descriptor.version,
            p.descriptor.producer_type, p.descriptor.claims
        ),
        DeployAction::Upgraded { old, new } => info!(
            plugin = %new.descriptor.name, version = %new.descriptor.version, file = %new.path.display(),
            "deploy: plugin {} {} -> {}", new.descriptor.name, old.descriptor.version, new.descriptor.version
        ),
        DeployAction::Refused { path, reason } => {
            error!(file = %path.display(), "deploy refused: {}: {reason}", path.display())
        }
        DeployAction::Removed(p) => warn!(
            plugin = %p.descriptor.name, file = %p.path.display(),
            "deploy: plugin {} {} removed: no new producers of it start; running ones keep running (its library stays mapped)",
            p.descriptor.name, p.descriptor.version
        ),
    }
}

/// A running producer as the host manages it.
pub struct ManagedProducer {
    /// The running producer.
    pub handle: crate::runtime::ProducerHandle,
    /// The plugin serving it (`None`: built-in base).
    pub plugin: Option<Arc<LoadedPlugin>>,
}

/// What the factory needs to re-decide assignments.
pub struct FactoryInputs {
    /// `--producer-type` overrides.
    pub overrides: std::collections::BTreeMap<String, String>,
    /// The topic catalog.
    pub catalog: Arc<crate::sal::catalog::TopicCatalog>,
}

/// Carry out one deployment action on the registry and the running producers. Returns false
/// when a producer could not be moved to the new plugin (it keeps its old one).
pub async fn apply(
    action: &DeployAction,
    managed: &mut [ManagedProducer],
    registry: &mut crate::plugin::PluginRegistry,
    inputs: &FactoryInputs,
    stats: &DeployStats,
) -> bool {
    use crate::factory::{assign, ProducerSource};
    log_action(action);
    let plugin = match action {
        DeployAction::Added(p) | DeployAction::Upgraded { new: p, .. } => p.clone(),
        DeployAction::Removed(p) => {
            registry.remove(&p.descriptor.name);
            return true;
        }
        DeployAction::Refused { .. } => return true,
    };
    let mut all_ok = true;
    registry.replace(plugin.clone());
    let name = plugin.descriptor.name.clone();
    let mut total = Duration::ZERO;
    let mut swapped = 0usize;
    for m in managed.iter_mut() {
        let component = m.handle.component.clone();
        let known = inputs.catalog.component(&component.name);
        let a = match assign(&component, &inputs.overrides, registry, known) {
            Ok(a) => a,
            Err(e) => {
                warn!(component = %component.name, index = component.index, "deploy: {e}");
                continue;
            }
        };
        let ProducerSource::Plugin(target) = &a.source else { continue };
        if target.descriptor.name != name {
            continue;
        }
        let same_plugin = m.plugin.as_ref().is_some_and(|p| p.descriptor.name == name);
        let create = crate::app::create_fn(&a.source);
        let label = a.source.label();
        let origin = crate::crash::PluginOrigin::of(&a.source);
        let request = ReplaceRequest {
            create,
            origin,
            serving: Serving { producer_type: a.producer_type.clone(), label: label.clone() },
            state: if same_plugin { StateTransfer::Keep } else { StateTransfer::Fresh },
            subscribe_own: known.is_some(),
        };
        match m.handle.replace(request).await {
            Ok(report) => {
                stats.swaps_ok.fetch_add(1, Ordering::Relaxed);
                total += report.duration;
                swapped += 1;
                info!(
                    component = %component.name, index = component.index, plugin = %label,
                    swap_us = report.duration.as_micros() as u64, snapshot_bytes = report.snapshot_bytes,
                    "deploy: {component} moved to {label} ({})", a.reason
                );
                m.plugin = Some(target.clone());
            }
            Err(e) => {
                all_ok = false;
                stats.swaps_failed.fetch_add(1, Ordering::Relaxed);
                error!(
                    component = %component.name, index = component.index, file = %plugin.path.display(),
                    "deploy: {component} stays on {}: {e}", m.handle.current.lock().map(|c| c.label.clone()).unwrap_or_default()
                );
            }
        }
    }
    if swapped > 0 {
        info!("deploy: {swapped} producer(s) swapped to {name} {} in {:?} in all", plugin.descriptor.version, total);
    }
    all_ok
}

/// Log what is loaded and who serves what (after start-up and after every deployment).
pub fn log_report(registry: &crate::plugin::PluginRegistry, managed: &[ManagedProducer], stats: &DeployStats) {
    let plugins: Vec<String> =
        registry.plugins().iter().map(|p| format!("{} {}", p.descriptor.name, p.descriptor.version)).collect();
    let serving: Vec<String> = managed
        .iter()
        .map(|m| {
            let s = m.handle.current.lock().map(|c| c.clone()).unwrap_or_default();
            format!("{}={} ({})", m.handle.component, s.producer_type, s.label)
        })
        .collect();
    info!(
        library_copies = stats.library_copies.load(Ordering::Relaxed),
        "plugins loaded: [{}]; library copies mapped: {}; serving: [{}]",
        plugins.join(", "),
        stats.library_copies.load(Ordering::Relaxed),
        serving.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_copies_of_dead_processes_and_of_this_pid_are_removed() {
        let base = std::env::temp_dir().join(format!("love-host-stale-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (tmp, copies) = (base.join("tmp"), base.join("copies"));
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::create_dir_all(&copies).unwrap();
        let me = std::process::id();
        // The parent (the test runner) is alive and not this process.
        let parent = unsafe { libc::getppid() };
        for name in ["love-host-99999999-plugins".to_string(), format!("love-host-{parent}-plugins")] {
            std::fs::create_dir_all(tmp.join(&name)).unwrap();
            std::fs::write(tmp.join(&name).join("x.so"), b"copy").unwrap();
        }
        for name in
            ["99999999-1-a.so".to_string(), format!("{me}-start-0-b.so"), format!("{parent}-1-c.so"), "notes".into()]
        {
            std::fs::write(copies.join(name), b"copy").unwrap();
        }
        assert_eq!(remove_stale_copies(&tmp, &copies), 3);
        let left = |d: &Path| {
            let mut v: Vec<String> =
                std::fs::read_dir(d).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into()).collect();
            v.sort();
            v
        };
        assert_eq!(left(&tmp), vec![format!("love-host-{parent}-plugins")]);
        assert_eq!(left(&copies), vec![format!("{parent}-1-c.so"), "notes".to_string()]);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
