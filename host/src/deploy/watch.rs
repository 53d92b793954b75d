//! The deployment loop: the plugin directory watched (and SIGHUP), a burst of changes waited
//! out, each rescan's actions applied, and an upgrade that could not move every producer undone.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::apply::{apply, report, FactoryInputs};
use super::scan::{DeployAction, Deployer};
use super::DeployStats;
use crate::group::member::Request;
use crate::group::Membership;
use crate::locks::lock;
use crate::plugin::quarantine::Quarantine;
use crate::plugin::{LoadedPlugin, PluginRegistry};
use crate::producers::ManagedProducer;
use crate::shutdown::Shutdown;

/// How long the directory must be quiet before it is rescanned.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Why hot deployment could not start.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The private copy directory.
    #[error("preparing the private plugin copy directory {dir}")]
    CopiesDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The directory watcher.
    #[error("{what}")]
    Watch {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: notify::Error,
    },
    /// The SIGHUP handler.
    #[error("installing the SIGHUP handler")]
    Signal(#[source] std::io::Error),
}

/// The plugin directory a deployment watches.
pub struct WatchedDir<'a> {
    /// The directory.
    pub dir: &'a Path,
    /// Where the private copies go.
    pub copies_dir: &'a Path,
    /// Accept versions that are not newer.
    pub allow_downgrade: bool,
    /// The state directory (its crash quarantine keeps files out).
    pub state_dir: &'a Path,
}

/// The running deployment: it owns the running producers and hands them back at the end.
pub struct Deployment {
    task: JoinHandle<Vec<ManagedProducer>>,
}

impl Deployment {
    /// Wait for the deployment to stop (at shutdown) and take the producers back.
    pub async fn finish(self) -> Vec<ManagedProducer> {
        self.task.await.unwrap_or_default()
    }
}

/// What the deployment loop keeps between rounds.
struct Rounds {
    deployer: Arc<Mutex<Deployer>>,
    registry: PluginRegistry,
    /// The registry the admin endpoint reads.
    shared: Arc<Mutex<PluginRegistry>>,
    inputs: FactoryInputs,
    stats: Arc<DeployStats>,
    managed: Vec<ManagedProducer>,
    membership: Option<Membership>,
}

/// Start deploying into `watched` (without a directory: only hold the producers until
/// shutdown). `registry` is what was loaded at start.
#[allow(clippy::too_many_arguments)] // the run's parts the deployment owns, each named
pub fn start(
    watched: Option<WatchedDir<'_>>,
    registry: PluginRegistry,
    shared: Arc<Mutex<PluginRegistry>>,
    inputs: FactoryInputs,
    managed: Vec<ManagedProducer>,
    stats: Arc<DeployStats>,
    membership: Option<Membership>,
    mut shutdown: Shutdown,
) -> Result<Deployment, DeployError> {
    let Some(w) = watched else {
        report(&registry, &managed, &stats);
        let task = tokio::spawn(async move {
            let (mut managed, mut membership) = (managed, membership);
            loop {
                tokio::select! {
                    _ = shutdown.wait() => break,
                    Some(r) = Membership::next(&mut membership) => {
                        rebalance(&membership, r, &mut managed, &registry, &stats).await;
                    }
                }
            }
            managed
        });
        return Ok(Deployment { task });
    };
    let deployer = Deployer::new(w.dir, w.copies_dir, w.allow_downgrade, registry.plugins(), stats.clone())
        .map_err(|source| DeployError::CopiesDir { dir: w.copies_dir.to_path_buf(), source })?
        .with_quarantine(Quarantine::load(w.state_dir).0);
    report(&registry, &managed, &stats);
    let (tx, rx) = mpsc::unbounded_channel::<&'static str>();
    let watcher = watch(w.dir, tx.clone())?;
    // A file deployed between the start-up load and the watch is found by one scan now.
    let _ = tx.send("start");
    forward_sighup(tx)?;
    info!("watching {} for plugin deployments (rename a file into it; SIGHUP forces a rescan)", w.dir.display());
    let rounds =
        Rounds { deployer: Arc::new(Mutex::new(deployer)), registry, shared, inputs, stats, managed, membership };
    let task = tokio::spawn(async move {
        let _watcher = watcher;
        rounds.run(rx, shutdown).await
    });
    Ok(Deployment { task })
}

/// A group rebalance carried out on the producers, then reported.
async fn rebalance(
    membership: &Option<Membership>,
    request: Request,
    managed: &mut Vec<ManagedProducer>,
    registry: &PluginRegistry,
    stats: &DeployStats,
) {
    if let Some(m) = membership {
        m.carry_out(request, managed).await;
        report(registry, managed, stats);
    }
}

/// Whether a watcher event can mean a deployment. Opens and reads are not: the rescan itself
/// opens the directory and its files (inotify reports `IN_OPEN` on the watched directory), and
/// reacting to those would rescan forever. A file closed after writing is.
fn is_deploy_event(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        notify::EventKind::Access(_) => false,
        _ => true,
    }
}

fn watch(dir: &Path, tx: mpsc::UnboundedSender<&'static str>) -> Result<notify::RecommendedWatcher, DeployError> {
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if ev.is_ok_and(|e| is_deploy_event(&e.kind)) {
            let _ = tx.send("file change");
        }
    })
    .map_err(|source| DeployError::Watch { what: "starting the plugin directory watcher".into(), source })?;
    watcher
        .watch(dir, notify::RecursiveMode::NonRecursive)
        .map_err(|source| DeployError::Watch { what: format!("watching {}", dir.display()), source })?;
    Ok(watcher)
}

fn forward_sighup(tx: mpsc::UnboundedSender<&'static str>) -> Result<(), DeployError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).map_err(DeployError::Signal)?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            info!("SIGHUP received: rescanning the plugin directory");
            if tx.send("SIGHUP").is_err() {
                break;
            }
        }
    });
    Ok(())
}

impl Rounds {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<&'static str>,
        mut shutdown: Shutdown,
    ) -> Vec<ManagedProducer> {
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                Some(_) = rx.recv() => {
                    while let Ok(Some(_)) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
                    self.round().await;
                }
                Some(r) = Membership::next(&mut self.membership) => {
                    rebalance(&self.membership, r, &mut self.managed, &self.registry, &self.stats).await;
                }
            }
        }
        self.managed
    }

    /// One rescan and the deployments it found.
    async fn round(&mut self) {
        let d = self.deployer.clone();
        let actions = tokio::task::spawn_blocking(move || lock(&d).rescan()).await.unwrap_or_default();
        if actions.is_empty() {
            return;
        }
        for a in &actions {
            let ok = apply(a, &mut self.managed, &mut self.registry, &self.inputs, &self.stats).await;
            if let (false, DeployAction::Upgraded { old, new }) = (ok, a) {
                self.undo(old, new);
            }
        }
        *lock(&self.shared) = self.registry.clone();
        report(&self.registry, &self.managed, &self.stats);
    }

    /// Keep serving and offering the version that works.
    fn undo(&mut self, old: &Arc<LoadedPlugin>, new: &LoadedPlugin) {
        warn!(
            plugin = %old.descriptor.name,
            "deploy: {} {} failed; {} stays the active version",
            new.descriptor.name, new.descriptor.version, old.descriptor.version
        );
        self.registry.replace(old.clone());
        lock(&self.deployer).revert(old.clone());
    }
}
