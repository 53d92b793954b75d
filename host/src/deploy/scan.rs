//! The plugin directory's changes, turned into deployment actions: files are looked at once
//! they stop changing, and each is loaded from a private copy of its own.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use super::DeployStats;
use crate::plugin::loader::load_plugin_copy;
use crate::plugin::{compare_versions, is_plugin_file_name, note_skipped, screen_entry, Entry, LoadedPlugin};

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

impl Deployer {
    /// Start tracking `dir`, whose plugins were already loaded at start-up (`initial`, loaded
    /// from their deployed paths).
    pub fn new(
        dir: &Path,
        copies_dir: &Path,
        allow_downgrade: bool,
        initial: &[Arc<LoadedPlugin>],
        stats: Arc<DeployStats>,
    ) -> std::io::Result<Self> {
        crate::plugin::copies::prepare_copies_dir(copies_dir)?;
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
        stats.library_copies.set(initial.len() as i64);
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
                self.stats.removed.inc();
                actions.push(DeployAction::Removed(plugin));
            }
        }
        actions
    }

    fn load_new(&mut self, path: &Path) -> DeployAction {
        let refuse = |this: &Self, reason: String| {
            this.stats.refused.inc();
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
        self.stats.library_copies.inc();
        let new = Arc::new(loaded);
        let name = new.descriptor.name.clone();
        match self.active.get(&name) {
            None => {
                self.active.insert(name, (new.clone(), path.to_path_buf()));
                self.stats.added.inc();
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
                self.stats.upgraded.inc();
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
