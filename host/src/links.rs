//! The manager links of a run: one per [`LinkPlan`], each component's messages on its own
//! link, and the end of each link task awaited exactly once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinError;
use tracing::info;

use crate::component::ComponentName;
use crate::config::{link_of, LinkPlan};
use crate::manager::{LinkError, ManagerHandle, Outbox};
use crate::shutdown::Shutdown;

/// How long the links may take to stop once shutdown is triggered.
const STOP_BOUND: Duration = Duration::from_secs(10);

/// A link that ended badly.
#[derive(Debug, thiserror::Error)]
pub enum LinksError {
    /// It failed fatally.
    #[error("manager link {name} failed")]
    Failed {
        /// The link.
        name: String,
        /// Why.
        #[source]
        source: LinkError,
    },
    /// Its task panicked or was cancelled.
    #[error("manager link {name} task failed: {source}")]
    Task {
        /// The link.
        name: String,
        /// Why.
        source: JoinError,
    },
    /// It did not stop in time.
    #[error("a manager link did not stop within {} s", STOP_BOUND.as_secs())]
    Stuck,
}

type LinkEnd = (String, Result<Result<(), LinkError>, JoinError>);

/// The running links.
pub struct Links {
    plans: Vec<LinkPlan>,
    /// By name, in the order of the plans.
    pub handles: Vec<(String, ManagerHandle)>,
    ends: mpsc::UnboundedReceiver<LinkEnd>,
    running: usize,
}

impl Links {
    /// Start every planned link.
    pub fn start(plans: &[LinkPlan], shutdown: &Shutdown) -> Links {
        let (tx, ends) = mpsc::unbounded_channel();
        let mut handles = Vec::new();
        for plan in plans {
            let name = &plan.name;
            let target = plan.config.url.as_ref().map(|u| u.to_string()).unwrap_or_else(|| "standard output".into());
            let carried = if plan.components.is_empty() {
                "every component".to_string()
            } else {
                plan.components.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ")
            };
            info!(link = %name, "manager link {name}: {target} for {carried}");
            let (handle, task) = crate::manager::start(plan.config.clone(), shutdown.clone());
            let (name, tx) = (name.clone(), tx.clone());
            handles.push((name.clone(), handle));
            tokio::spawn(async move {
                let _ = tx.send((name, task.await));
            });
        }
        Links { plans: plans.to_vec(), running: handles.len(), handles, ends }
    }

    /// The outbox of `component`'s link.
    pub fn outbox_of(&self, component: &ComponentName) -> Arc<dyn Outbox> {
        Arc::new(self.handles[link_of(&self.plans, component)].1.clone())
    }

    /// Wait until `shutdown` is triggered (`Ok`) or a link fails fatally.
    pub async fn until_failure(&mut self, mut shutdown: Shutdown) -> Result<(), LinksError> {
        loop {
            tokio::select! {
                _ = shutdown.wait() => return Ok(()),
                Some(end) = self.ends.recv() => {
                    self.running -= 1;
                    outcome(end)?;
                }
            }
        }
    }

    /// After shutdown: wait for the links still running to stop.
    pub async fn stopped(mut self) -> Result<(), LinksError> {
        while self.running > 0 {
            match tokio::time::timeout(STOP_BOUND, self.ends.recv()).await {
                Err(_) => return Err(LinksError::Stuck),
                Ok(None) => break,
                Ok(Some(end)) => {
                    self.running -= 1;
                    outcome(end)?;
                }
            }
        }
        Ok(())
    }
}

fn outcome((name, end): LinkEnd) -> Result<(), LinksError> {
    match end {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(LinksError::Failed { name, source }),
        Err(source) => Err(LinksError::Task { name, source }),
    }
}
