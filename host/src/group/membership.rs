//! Components moving in and out of this host (a `--group` rebalance): the producers of the
//! components taken away are stopped first, and the stop is confirmed to the group member
//! waiting in its revoke callback; the producers of the components given are started.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{info, warn};

use super::member::Request;
use super::GroupStatus;
use crate::producers::{stop_some, ManagedProducer};

/// How long the producers of the components taken away may take to stop, all together.
const STOP_BOUND: Duration = Duration::from_secs(5);

/// Starts the producer of a component named as `--components` names it (`ScriptQueue:1`).
pub type StartFn = Box<dyn Fn(&str) -> Result<ManagedProducer, String> + Send + Sync>;

/// The group member's requests and how to start a producer.
pub struct Membership {
    /// From the group member's rebalance callbacks.
    pub requests: UnboundedReceiver<Request>,
    /// Starts a producer.
    pub start: StartFn,
    /// What the group says about this host.
    pub status: Arc<GroupStatus>,
}

impl Membership {
    /// The next request (never, without a group).
    pub async fn next(membership: &mut Option<Membership>) -> Option<Request> {
        match membership {
            Some(m) => m.requests.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Stop then start what `request` says; the stops are confirmed before the starts.
    pub async fn carry_out(&self, request: Request, managed: &mut Vec<ManagedProducer>) {
        let leaving: Vec<ManagedProducer> = {
            let (out, keep) = std::mem::take(managed)
                .into_iter()
                .partition(|m| request.moves.stop.contains(&m.handle.component.to_string()));
            *managed = keep;
            out
        };
        for name in &request.moves.stop {
            self.status.set_unstarted(name, None);
        }
        let stopped = leaving.len();
        stop_some(leaving, STOP_BOUND).await;
        if let Some(done) = request.done {
            let _ = done.send(());
        }
        for name in &request.moves.start {
            if managed.iter().any(|m| &m.handle.component.to_string() == name) {
                continue;
            }
            match (self.start)(name) {
                Ok(mut m) => {
                    m.why = format!("assigned to this host by group {}", self.status.group);
                    managed.push(m);
                    self.status.set_unstarted(name, None);
                }
                Err(e) => {
                    warn!(component = %name, "group: cannot start the producer of {name}: {e}");
                    self.status.set_unstarted(name, Some(&e));
                }
            }
        }
        let took = request.at.elapsed();
        self.status.on_carried_out(request.change, took);
        let serving: Vec<String> = managed.iter().map(|m| m.handle.component.to_string()).collect();
        info!(
            change = ?request.change, stopped, started = ?request.moves.start, took_ms = took.as_millis() as u64,
            "group {}: rebalance ({:?}) carried out in {took:.1?}: {stopped} producer(s) stopped, {} started; \
             serving {} of the group's components: [{}]",
            self.status.group,
            request.change,
            request.moves.start.len(),
            serving.len(),
            serving.join(", ")
        );
    }
}
