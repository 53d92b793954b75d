//! The running producers: started from the factory's decisions, each on the manager link of
//! its component, and stopped together within one bound.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tracing::warn;

use crate::clock::unix_now;
use crate::component::ComponentName;
use crate::factory::{Assignment, ProducerDefaults, ProducerSource};
use crate::manager::Outbox;
use crate::plugin::LoadedPlugin;
use crate::runtime::{spawn_producer, ProducerHandle, ProducerStatus, RuntimeContext, Serving};
use crate::sal::catalog::TopicCatalog;

/// A running producer as the host manages it.
pub struct ManagedProducer {
    /// The running producer.
    pub handle: ProducerHandle,
    /// The plugin serving it (`None`: built-in base).
    pub plugin: Option<Arc<LoadedPlugin>>,
    /// Stops this producer alone (a component moved to another host); `None`: it stops only
    /// with the host.
    pub stop: Option<crate::shutdown::ShutdownTrigger>,
    /// Why this host serves the component (configured; given by the group).
    pub why: String,
    /// When it started (Unix seconds).
    pub since: f64,
}

impl ManagedProducer {
    fn view(&self) -> ProducerView {
        ProducerView {
            component: self.handle.component.clone(),
            current: self.handle.current.clone(),
            status: self.handle.status.clone(),
            why: self.why.as_str().into(),
            since: self.since,
        }
    }
}

/// A running producer as the admin endpoint and the metrics see it.
#[derive(Clone)]
pub struct ProducerView {
    /// The component.
    pub component: ComponentName,
    /// (type, plugin label) serving it now.
    pub current: Arc<Mutex<Serving>>,
    /// Its counters.
    pub status: Arc<ProducerStatus>,
    /// Why this host serves it.
    pub why: Arc<str>,
    /// Since when (Unix seconds).
    pub since: f64,
}

/// The producers running now, for the admin endpoint and the metrics: with `--group` the set
/// changes at every rebalance, so they read it at each request rather than once at start.
#[derive(Clone, Default)]
pub struct RunningProducers(Arc<RwLock<Vec<ProducerView>>>);

impl std::fmt::Debug for RunningProducers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RunningProducers").field(&self.list().len()).finish()
    }
}

impl RunningProducers {
    /// The producers running now are `managed`.
    pub fn set(&self, managed: &[ManagedProducer]) {
        self.replace(managed.iter().map(ManagedProducer::view).collect());
    }

    /// The producers running now are `views`.
    pub fn replace(&self, views: Vec<ProducerView>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = views;
    }

    /// The producers running now.
    pub fn list(&self) -> Vec<ProducerView> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Start the producer of every assignment, with the outbox `outbox_of` gives its component.
/// The first that cannot start is an error (the caller stops the others).
pub fn start_all(
    assignments: &[Assignment],
    defaults: &ProducerDefaults,
    catalog: &TopicCatalog,
    ctx: &RuntimeContext,
    outbox_of: impl Fn(&Assignment) -> Arc<dyn Outbox>,
) -> Result<Vec<ManagedProducer>, String> {
    let mut managed = Vec::with_capacity(assignments.len());
    for a in assignments {
        let ctx = RuntimeContext { outbox: outbox_of(a), ..ctx.clone() };
        managed.push(start_one(a, defaults, catalog, ctx, false)?);
    }
    Ok(managed)
}

/// Start the producer of `a`; `alone`: with a stop trigger of its own (see
/// [`ManagedProducer::stop`]).
pub fn start_one(
    a: &Assignment,
    defaults: &ProducerDefaults,
    catalog: &TopicCatalog,
    ctx: RuntimeContext,
    alone: bool,
) -> Result<ManagedProducer, String> {
    let (stop, ctx) = if alone {
        let (trigger, shutdown) = ctx.shutdown.child();
        (Some(trigger), RuntimeContext { shutdown, ..ctx })
    } else {
        (None, ctx)
    };
    let handle = spawn_producer(a.producer_spec(defaults, catalog), ctx)?;
    let plugin = match &a.source {
        ProducerSource::Plugin(p) => Some(p.clone()),
        ProducerSource::Base => None,
    };
    let why = if alone { "assigned to this host by the group" } else { "configured" };
    Ok(ManagedProducer { handle, plugin, stop, why: why.into(), since: unix_now() })
}

/// Stop `some` producers (each with its own trigger; the others are left running), all
/// together within `bound`.
pub async fn stop_some(some: Vec<ManagedProducer>, bound: Duration) {
    for m in &some {
        if let Some(t) = &m.stop {
            t.trigger();
        }
    }
    stop_all(some, bound).await;
}

/// Wait for the producers' threads to end, all together, within one `bound`; a producer stuck
/// in a call is abandoned (its thread ends with the process), and the log says which.
pub async fn stop_all(managed: Vec<ManagedProducer>, bound: Duration) {
    let deadline = tokio::time::Instant::now() + bound;
    let waits = managed.into_iter().map(|mut m| async move {
        if tokio::time::timeout_at(deadline, &mut m.handle.task).await.is_err() {
            abandoned(&m.handle, bound);
        }
    });
    futures_util::future::join_all(waits).await;
}

fn abandoned(handle: &ProducerHandle, bound: Duration) {
    let label = handle.current.lock().map(|c| c.label.clone()).unwrap_or_default();
    let stuck = handle.status.clock.stuck_call(crate::watchdog::mono_ns());
    let call = stuck.map(|s| format!(" (stuck in {} for {:.1} s)", s.call.describe(), s.elapsed.as_secs_f64()));
    warn!(
        component = %handle.component.name, index = handle.component.index, plugin = %label,
        "producer {} ({label}) did not stop within {:.0} s{}; abandoned",
        handle.component, bound.as_secs_f64(), call.unwrap_or_default()
    );
}
