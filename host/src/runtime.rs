//! The producer runtime: one OS thread per producer.
//!
//! Each producer's task runs on a thread of its own (a single-threaded tokio runtime): it owns
//! its producer and calls it synchronously with one input at a time (a SAL sample, a link
//! event, a tick, a command ack), then carries out the returned actions. A producer that panics
//! (caught by the SDK and returned as an error) is rebuilt from its last snapshot after a
//! backoff; inputs that arrive meanwhile wait in its inbox.
//!
//! What to do, and when, is decided by the producer's [`Supervisor`], a sans-IO state machine
//! (restarts and their backoff, swaps and their undo, initial data once per connection, the
//! latest events replayed to a replacement); the producer's thread only feeds it what happens
//! and carries out its effects.
//!
//! A call into a plugin that never returns blocks that thread and nothing else: the manager
//! link, the SAL sources, the admin endpoint and the other producers run on the shared async
//! runtime or on their own threads. An intake task on the shared runtime stands in front of
//! each producer: it forwards its SAL samples into the bounded inbox and watches its calls
//! ([`crate::watchdog`]). A call running longer than `call_timeout` is reported (log,
//! `/metrics`, `/readyz`, `/producers`); while it runs, the producer's samples are dropped and
//! counted rather than queued, and if it returns at last the producer takes inputs again.
//! Around every call the thread also names the plugin for the crash handler ([`crate::crash`]).

mod backoff;
mod call_error;
mod intake;
mod latest_events;
mod spawn;
pub mod supervisor;
mod task;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use love_plugin_api::abi::ProducerBox;
use love_plugin_api::catalog::ComponentCatalog;
use love_plugin_api::sdk::ProducerConfig;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{mpsc, oneshot};

pub use spawn::spawn_producer;
pub use supervisor::Supervisor;

use crate::component::ComponentName;
use crate::crash::PluginOrigin;
use crate::manager::Outbox;
use crate::sal::SalSource;
use crate::shutdown::Shutdown;
use crate::watchdog::{mono_ns, CallClock};

/// Builds a producer from its configuration JSON.
pub type CreateFn = Arc<dyn Fn(&str) -> Result<ProducerBox, String> + Send + Sync>;

/// Looks up a component's catalog.
pub type CatalogFn = Arc<dyn Fn(&str) -> Option<ComponentCatalog> + Send + Sync>;

/// Everything needed to run one producer.
#[derive(Clone)]
pub struct ProducerSpec {
    /// The component it serves.
    pub component: ComponentName,
    /// Its producer type.
    pub producer_type: String,
    /// `plugin version` or `built-in`, for logs.
    pub label: String,
    /// How to build it.
    pub create: CreateFn,
    /// Its configuration.
    pub config: ProducerConfig,
    /// Whether to subscribe it to its own component's SAL samples.
    pub subscribe_own: bool,
    /// The plugin file it comes from (`None`: built in), named if its code crashes the process.
    pub origin: Option<PluginOrigin>,
}

/// Runtime settings shared by every producer.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// How often a producer's state is snapshotted (for restarts after a panic).
    pub snapshot_interval: Duration,
    /// Upper bound of the restart backoff.
    pub max_restart_backoff: Duration,
    /// Capacity of each producer's sample inbox.
    pub inbox_capacity: usize,
    /// A call into a producer running longer than this is reported stuck (the watchdog).
    pub call_timeout: Duration,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            snapshot_interval: Duration::from_secs(10),
            max_restart_backoff: Duration::from_secs(30),
            inbox_capacity: 4096,
            call_timeout: Duration::from_secs(5),
        }
    }
}

/// What every producer task shares.
#[derive(Clone)]
pub struct RuntimeContext {
    /// The manager link.
    pub outbox: Arc<dyn Outbox>,
    /// The SAL source.
    pub sal: Arc<dyn SalSource>,
    /// Catalog lookups for SAL subscriptions.
    pub catalog: CatalogFn,
    /// Settings.
    pub settings: RuntimeSettings,
    /// Stop signal.
    pub shutdown: Shutdown,
}

/// Live counters of one producer, in prometheus-client's types ([`crate::metrics`] registers
/// them; the admin endpoint and tests read them).
#[derive(Debug, Default)]
pub struct ProducerStatus {
    /// Inputs handled.
    pub inputs: Counter,
    /// Messages sent.
    pub sent: Counter,
    /// Panics caught.
    pub panics: Counter,
    /// Restarts done.
    pub restarts: Counter,
    /// Errors returned (not panics).
    pub errors: Counter,
    /// Time of the last SAL sample (f64 bits of Unix seconds).
    pub last_sample: AtomicU64,
    /// SAL samples received.
    pub samples: Counter,
    /// Event messages sent.
    pub sent_event: Counter,
    /// Telemetry messages sent.
    pub sent_telemetry: Counter,
    /// Other messages sent (subscriptions, replies).
    pub sent_other: Counter,
    /// initial_state requests handed to the producer.
    pub requests: Counter,
    /// Messages sent in answer to initial_state requests.
    pub replies: Counter,
    /// The `lost` count of the producer's latest Heartbeat message, as the producer reports it
    /// (-1: none yet).
    pub heartbeat_lost: Gauge,
    /// The call into the plugin in progress, for the watchdog.
    pub clock: CallClock,
    /// Inputs dropped because the producer was not taking them (stuck in a call).
    pub inputs_dropped: Counter,
}

impl ProducerStatus {
    /// A fresh status.
    pub fn new() -> Self {
        let status = ProducerStatus::default();
        status.heartbeat_lost.set(-1);
        status
    }

    /// The `lost` count of the latest Heartbeat message, if any was sent.
    pub fn heartbeat_lost(&self) -> Option<u64> {
        u64::try_from(self.heartbeat_lost.get()).ok()
    }

    /// Time of the last SAL sample, if any.
    pub fn last_sample_time(&self) -> Option<f64> {
        let bits = self.last_sample.load(Ordering::Relaxed);
        (bits != 0).then(|| f64::from_bits(bits))
    }
}

/// The producer type and plugin label serving a component (changes on hot deployment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Serving {
    /// The producer type (`csc`).
    pub producer_type: String,
    /// The plugin's label (`csc 1.0.0`).
    pub label: String,
}

/// What a replacement does with the old producer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateTransfer {
    /// The old producer's snapshot is restored into the new one (an upgrade of the same plugin).
    Keep,
    /// The new producer starts fresh and gets the latest events again (a component moving to
    /// another plugin).
    Fresh,
}

/// A request to replace a running producer.
pub struct ReplaceRequest {
    /// Builds the new producer.
    pub create: CreateFn,
    /// The new producer's plugin file (named in the crash record if it crashes).
    pub origin: Option<PluginOrigin>,
    /// What will serve the component.
    pub serving: Serving,
    /// The old producer's state.
    pub state: StateTransfer,
    /// Whether the new producer reads its own component's SAL samples.
    pub subscribe_own: bool,
}

/// Why a replacement did not happen (the old producer keeps serving).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SwapError {
    /// A call into the producer has not returned.
    #[error("the producer is stuck in {call} (for {secs:.1} s); it cannot be replaced until the call returns")]
    Stuck {
        /// The call.
        call: String,
        /// For how long.
        secs: f64,
    },
    /// The producer's task has ended.
    #[error("producer task has stopped")]
    Stopped,
    /// A step of the replacement failed (the text says which).
    #[error("{0}")]
    Failed(String),
}

/// How long a tick waits for the fresh telemetry it asked the source for.
const FRESH_TELEMETRY_WAIT: Duration = Duration::from_millis(50);

/// A request to a running producer task, carried out between two inputs.
pub enum Control {
    /// Replace the producer (hot deployment), its state carried over or not as the request's
    /// [`StateTransfer`] says. If any step fails the old producer keeps running and the error
    /// is returned.
    Replace {
        /// What replaces it.
        request: ReplaceRequest,
        /// The outcome.
        reply: oneshot::Sender<Result<SwapReport, SwapError>>,
    },
}

/// What a replacement took.
#[derive(Debug, Clone)]
pub struct SwapReport {
    /// Time from the request being picked up to the new producer serving (snapshot, create,
    /// restore, start).
    pub duration: Duration,
    /// Size of the snapshot moved.
    pub snapshot_bytes: usize,
    /// The new producer refused the old one's snapshot (a state it cannot read) and started
    /// fresh.
    pub started_fresh: bool,
}

/// A running producer.
pub struct ProducerHandle {
    /// The component it serves.
    pub component: ComponentName,
    /// Its type (as started; see `current` for the live value).
    pub producer_type: String,
    /// Its plugin label (as started).
    pub label: String,
    /// The type and label serving it now (changes on hot deployment).
    pub current: Arc<std::sync::Mutex<Serving>>,
    /// Its counters.
    pub status: Arc<ProducerStatus>,
    /// Requests to the task.
    pub control: mpsc::Sender<Control>,
    /// Ends when the producer's thread has ended (never, for a thread stuck in a call).
    pub task: tokio::task::JoinHandle<()>,
}

impl ProducerHandle {
    /// Replace the producer (see [`Control::Replace`]) and wait for the outcome. A producer
    /// stuck in a call cannot be replaced: the request fails at once, or as soon as the
    /// watchdog finds the producer stuck while it waits.
    pub async fn replace(&self, request: ReplaceRequest) -> Result<SwapReport, SwapError> {
        let stuck_error = |s: crate::watchdog::Stuck| SwapError::Stuck {
            call: s.call.describe().to_string(),
            secs: s.elapsed.as_secs_f64(),
        };
        if let Some(s) = self.status.clock.stuck_call(mono_ns()) {
            return Err(stuck_error(s));
        }
        let (reply, rx) = oneshot::channel();
        let swap = async {
            self.control.send(Control::Replace { request, reply }).await.map_err(|_| SwapError::Stopped)?;
            rx.await.map_err(|_| SwapError::Stopped)?
        };
        let stuck = async {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Some(s) = self.status.clock.stuck_call(mono_ns()) {
                    return s;
                }
            }
        };
        tokio::select! {
            r = swap => r,
            s = stuck => Err(stuck_error(s)),
        }
    }
}
