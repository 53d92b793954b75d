//! The producer runtime: one OS thread per producer.
//!
//! Each producer's task runs on a thread of its own (a single-threaded tokio runtime): it owns
//! its producer and calls it synchronously with one input at a time (a SAL sample, a link
//! event, a tick, a command ack), then carries out the returned actions. A producer that panics
//! (caught by the SDK and returned as an error) is rebuilt from its last snapshot after a
//! backoff; inputs that arrive meanwhile wait in its inbox.
//!
//! A call into a plugin that never returns blocks that thread and nothing else: the manager
//! link, the SAL sources, the admin endpoint and the other producers run on the shared async
//! runtime or on their own threads. A supervisor task on the shared runtime stands in front of
//! each producer: it forwards its SAL samples into the bounded inbox and watches its calls
//! ([`crate::watchdog`]). A call running longer than `call_timeout` is reported (log,
//! `/metrics`, `/readyz`, `/producers`); while it runs, the producer's samples are dropped and
//! counted rather than queued, and if it returns at last the producer takes inputs again.
//! Around every call the thread also names the plugin for the crash handler ([`crate::crash`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::{RResult, RStr};
use love_plugin_api::abi::{InputKind, InputMsg, ProducerBox, TopicKind};
use love_plugin_api::catalog::ComponentCatalog;
use love_plugin_api::sdk::{Action, ProducerConfig, PANIC_PREFIX};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::clock::unix_now;
use crate::component::ComponentName;
use crate::crash::{CrashRecord, PluginOrigin};
use crate::locks::lock;
use crate::manager::{LinkEvent, Outbox, Outgoing};
use crate::sal::{SalCommand, SalSource};
use crate::shutdown::Shutdown;
use crate::watchdog::{check_period, mono_ns, CallClock, CallKind};

/// Capacity of a producer's intake (the channel its SAL subscriptions write to, in front of its
/// inbox): small, the inbox holds the backlog.
const INTAKE_CAPACITY: usize = 64;

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
#[derive(Debug, Clone, thiserror::Error)]
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

/// How a call into a producer failed, decoded once from the error the boundary returns.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CallError {
    /// The producer panicked (caught by the SDK's guard).
    Panicked(String),
    /// The producer returned an error.
    Failed(String),
}

impl CallError {
    fn from_abi(e: &abi_stable::std_types::RBoxError) -> CallError {
        let text = e.to_string();
        // The SDK marks a caught panic with this prefix; every plugin since ABI v1 does.
        if text.starts_with(PANIC_PREFIX) {
            CallError::Panicked(text)
        } else {
            CallError::Failed(text)
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Panicked(t) | CallError::Failed(t) => f.write_str(t),
        }
    }
}

/// How long a tick waits for the fresh telemetry it asked the source for.
const FRESH_TELEMETRY_WAIT: Duration = Duration::from_millis(50);

/// A request to a running producer task, carried out between two inputs.
pub enum Control {
    /// Replace the producer with one built by `create` (hot deployment). With `keep_state` the
    /// old producer's snapshot is restored into the new one (an upgrade of the same plugin);
    /// without, the new one starts fresh (a component moving to another plugin). If any step
    /// fails the old producer keeps running and the error is returned.
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

/// Create the producer on a thread of its own and start it there (creation errors are reported
/// to the caller before anything runs; a `create` that does not return within the call timeout
/// is an error too, and its thread is abandoned). Must be called within a tokio runtime: the
/// producer's supervisor, its SAL subscriptions and its commands run on it.
pub fn spawn_producer(spec: ProducerSpec, ctx: RuntimeContext) -> Result<ProducerHandle, String> {
    let config_json = serde_json::to_string(&spec.config).map_err(|e| e.to_string())?;
    let main = tokio::runtime::Handle::try_current()
        .map_err(|_| format!("{}: producers must be started within a tokio runtime", spec.component))?;
    let status = Arc::new(ProducerStatus::new());
    let crash = spec.origin.as_ref().map(|o| CrashRecord::new(o, &spec.component));
    let (intake_tx, intake_rx) = mpsc::channel(INTAKE_CAPACITY);
    let (inbox_tx, inbox_rx) = mpsc::channel(ctx.settings.inbox_capacity);
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let events = ctx.outbox.events();
    let (control_tx, control_rx) = mpsc::channel(4);
    let current = Arc::new(std::sync::Mutex::new(Serving {
        producer_type: spec.producer_type.clone(),
        label: spec.label.clone(),
    }));
    let (created_tx, created_rx) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let component = spec.component.clone();
    let thread = {
        let (status, current, ctx, main) = (status.clone(), current.clone(), ctx.clone(), main.clone());
        let component = component.clone();
        let (producer_type, create, subscribe_own) =
            (spec.producer_type.clone(), spec.create.clone(), spec.subscribe_own);
        move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
                Ok(r) => r,
                Err(e) => {
                    let _ = created_tx.send(Err(format!("{component}: cannot start its runtime: {e}")));
                    return;
                }
            };
            let mut task_state = ProducerTask {
                current,
                component: component.clone(),
                producer_type,
                create,
                config_json,
                producer: None,
                crash,
                ctx,
                main,
                status,
                intake_tx,
                ack_tx,
                subscribed: HashSet::new(),
                wake: None,
                last_snapshot: None,
                consecutive_panics: 0,
                last_panic: None,
                panicked: false,
                latest_events: HashMap::new(),
                subscribe_own,
                initialized_for: 0,
            };
            task_state.call_begin(CallKind::Create, task_state.crash.clone().as_ref());
            let created = (task_state.create)(&task_state.config_json);
            task_state.call_end();
            match created {
                Ok(p) => task_state.producer = Some(p),
                Err(e) => {
                    let _ = created_tx.send(Err(format!("{component}: cannot create producer: {e}")));
                    return;
                }
            }
            if created_tx.send(Ok(())).is_err() {
                // The caller gave up waiting: nobody runs this producer.
                return;
            }
            runtime.block_on(task_state.run(inbox_rx, ack_rx, events, control_rx));
            debug!(component = %component.name, index = component.index, "producer thread ended");
            let _ = done_tx.send(());
        }
    };
    std::thread::Builder::new()
        .name(format!("p:{}", spec.component))
        .spawn(thread)
        .map_err(|e| format!("{}: cannot start its thread: {e}", spec.component))?;
    match created_rx.recv_timeout(ctx.settings.call_timeout) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            return Err(format!(
                "{}: creating the producer ({}) did not return within {:.1} s; abandoned",
                spec.component,
                spec.label,
                ctx.settings.call_timeout.as_secs_f64()
            ))
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            return Err(format!("{}: the producer's thread ended while creating it", spec.component))
        }
    }
    let supervisor = Supervisor {
        component: component.clone(),
        status: status.clone(),
        current: current.clone(),
        bound: ctx.settings.call_timeout,
    };
    main.spawn(supervisor.run(intake_rx, inbox_tx, ctx.shutdown.clone()));
    let task = main.spawn(async move {
        let _ = done_rx.await;
    });
    Ok(ProducerHandle {
        component: spec.component,
        producer_type: spec.producer_type,
        label: spec.label,
        current,
        status,
        control: control_tx,
        task,
    })
}

/// Stands in front of a producer on the shared runtime: forwards its SAL samples into its inbox
/// (waiting for room while the producer is busy, dropping and counting while it is stuck) and
/// runs its watchdog.
struct Supervisor {
    component: ComponentName,
    status: Arc<ProducerStatus>,
    current: Arc<std::sync::Mutex<Serving>>,
    bound: Duration,
}

impl Supervisor {
    async fn run(
        self,
        mut intake: mpsc::Receiver<Arc<InputMsg>>,
        inbox: mpsc::Sender<Arc<InputMsg>>,
        mut shutdown: Shutdown,
    ) {
        let mut tick = tokio::time::interval(check_period(self.bound));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A sample waiting for room in the inbox.
        let mut pending: Option<Arc<InputMsg>> = None;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                _ = tick.tick() => {
                    self.check();
                    if self.status.clock.is_stuck() && pending.take().is_some() {
                        self.status.inputs_dropped.inc();
                    }
                }
                permit = inbox.reserve(), if pending.is_some() => match permit {
                    Ok(p) => p.send(pending.take().expect("pending sample")),
                    Err(_) => break,
                },
                m = intake.recv(), if pending.is_none() => match m {
                    None => break,
                    Some(m) if self.status.clock.is_stuck() => {
                        let _ = m;
                        self.status.inputs_dropped.inc();
                    }
                    Some(m) => match inbox.try_send(m) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(m)) => pending = Some(m),
                        Err(mpsc::error::TrySendError::Closed(_)) => break,
                    },
                },
            }
        }
    }

    /// The watchdog's look at the producer's clock.
    fn check(&self) {
        let Some(stuck) = self.status.clock.check(mono_ns(), self.bound) else { return };
        let label = self.current.lock().map(|c| c.label.clone()).unwrap_or_default();
        let (c, i) = (&self.component.name, self.component.index);
        error!(
            component = %c, index = i, plugin = %label, call = stuck.call.describe(),
            "producer {} ({label}) is stuck: {} has not returned for {:.1} s (watchdog bound {:.1} s); \
             its inputs are dropped until it returns, the other producers keep running",
            self.component, stuck.call.describe(), stuck.elapsed.as_secs_f64(), self.bound.as_secs_f64()
        );
    }
}

struct ProducerTask {
    current: Arc<std::sync::Mutex<Serving>>,
    component: ComponentName,
    producer_type: String,
    create: CreateFn,
    config_json: String,
    /// Always there once created; an `Option` so that it can be dropped under the watchdog
    /// and crash record like any other call into the plugin.
    producer: Option<ProducerBox>,
    /// Names the current producer's plugin if its code crashes the process.
    crash: Option<Arc<CrashRecord>>,
    ctx: RuntimeContext,
    /// The shared runtime (SAL subscriptions and commands run there, not on this thread).
    main: tokio::runtime::Handle,
    status: Arc<ProducerStatus>,
    intake_tx: mpsc::Sender<Arc<InputMsg>>,
    ack_tx: mpsc::UnboundedSender<(u64, crate::sal::CommandAck)>,
    subscribed: HashSet<(String, i64)>,
    wake: Option<(Instant, f64)>,
    last_snapshot: Option<String>,
    consecutive_panics: u32,
    last_panic: Option<Instant>,
    /// The producer panicked: it gets no more inputs and the run loop rebuilds it.
    panicked: bool,
    /// The latest sample of each event of the producer's own component (by topic and index),
    /// handed to a producer that replaces this one without its state (a component moving to
    /// another plugin), as the source hands its history to a new subscriber.
    latest_events: HashMap<String, HashMap<i64, Arc<InputMsg>>>,
    subscribe_own: bool,
    /// The link connection the producer last sent initial data for.
    initialized_for: u64,
}

fn simple(kind: InputKind) -> InputMsg {
    InputMsg { kind, ..Default::default() }
}

impl ProducerTask {
    async fn run(
        mut self,
        mut samples: mpsc::Receiver<Arc<InputMsg>>,
        mut acks: mpsc::UnboundedReceiver<(u64, crate::sal::CommandAck)>,
        mut events: broadcast::Receiver<LinkEvent>,
        mut control: mpsc::Receiver<Control>,
    ) {
        let mut shutdown = self.ctx.shutdown.clone();
        if self.subscribe_own {
            let own = (self.component.name.clone(), self.component.index);
            self.subscribe_sal(own.0, own.1, true);
        }
        self.start().await;
        self.recover(&mut shutdown).await;
        let mut snapshot_timer = tokio::time::interval(self.ctx.settings.snapshot_interval);
        snapshot_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake_at = self.wake.map(|(i, _)| i);
            tokio::select! {
                _ = shutdown.wait() => break,
                Some(sample) = samples.recv() => self.take_sample(sample).await,
                ev = events.recv() => match ev {
                    Ok(LinkEvent::Connected) => {
                        let conn = self.ctx.outbox.connection_count();
                        if conn == 0 || conn != self.initialized_for {
                            self.initialized_for = conn;
                            self.deliver(&simple(InputKind::CONNECTED)).await;
                            self.deliver(&simple(InputKind::REGISTER)).await;
                        }
                    }
                    Ok(LinkEvent::Resubscribe) => self.deliver(&simple(InputKind::REGISTER)).await,
                    Ok(LinkEvent::Disconnected) => self.deliver(&simple(InputKind::DISCONNECTED)).await,
                    Ok(LinkEvent::Request(text)) => {
                        self.status.requests.inc();
                        let msg = InputMsg { kind: InputKind::MANAGER_MESSAGE, text: text.as_ref().into(), ..Default::default() };
                        self.deliver(&msg).await;
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        self.status.inputs_dropped.inc_by(n);
                        warn!(component = %self.component.name, index = self.component.index, "producer fell behind and missed {n} link events");
                        // A missed `Connected` would leave this connection without the
                        // producer's initial data until the next resubscription.
                        let conn = self.ctx.outbox.connection_count();
                        if self.ctx.outbox.is_connected() && conn != self.initialized_for {
                            self.initialized_for = conn;
                            self.deliver(&simple(InputKind::CONNECTED)).await;
                            self.deliver(&simple(InputKind::REGISTER)).await;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some((id, ack)) = acks.recv() => {
                    let msg = InputMsg { kind: InputKind::COMMAND_ACK, id, code: ack.code, text: ack.result.into(), ..Default::default() };
                    self.deliver(&msg).await;
                }
                _ = sleep_until_opt(wake_at) => {
                    self.wake = None;
                    self.read_fresh_telemetry(&mut samples).await;
                    self.deliver(&simple(InputKind::TICK)).await;
                }
                _ = snapshot_timer.tick() => self.take_snapshot(),
                Some(ctrl) = control.recv() => self.control(ctrl).await,
            }
            self.recover(&mut shutdown).await;
        }
        // The producer's destructor is plugin code too.
        let record = self.crash.clone();
        let producer = self.producer.take();
        self.call_begin(CallKind::Drop, record.as_ref());
        drop(producer);
        self.call_end();
    }

    /// The thread enters the plugin: stamp the watchdog's clock, name the plugin for the crash
    /// handler.
    fn call_begin(&self, call: CallKind, record: Option<&Arc<CrashRecord>>) {
        crate::crash::enter(record, call);
        self.status.clock.begin(call, mono_ns());
    }

    /// The call returned (logs the recovery of a call the watchdog had found stuck).
    fn call_end(&self) {
        crate::crash::leave();
        if let Some(lasted) = self.status.clock.end(mono_ns()) {
            let label = self.current.lock().map(|c| c.label.clone()).unwrap_or_default();
            warn!(
                component = %self.component.name, index = self.component.index, plugin = %label,
                "producer {} ({label}) is no longer stuck: the call returned after {:.1} s; it takes inputs again \
                 ({} dropped so far)",
                self.component, lasted.as_secs_f64(), self.status.inputs_dropped.get()
            );
        }
    }

    /// The producer (created before the task runs; only taken at its end).
    fn producer(&mut self) -> &mut ProducerBox {
        self.producer.as_mut().expect("the producer exists while its task runs")
    }

    /// Drop a producer that is no longer used, as a call into its plugin.
    fn drop_producer(&self, producer: ProducerBox, record: Option<&Arc<CrashRecord>>) {
        self.call_begin(CallKind::Drop, record);
        drop(producer);
        self.call_end();
    }

    /// `snapshot` of the current producer, as a call.
    fn snapshot_call(&mut self) -> RResult<abi_stable::std_types::RString, abi_stable::std_types::RBoxError> {
        let record = self.crash.clone();
        self.call_begin(CallKind::Snapshot, record.as_ref());
        let r = self.producer().snapshot();
        self.call_end();
        r
    }

    fn keep_latest_event(&mut self, msg: Arc<InputMsg>) {
        let s = &msg.sample;
        if s.kind != TopicKind::EVENT || s.component.as_str() != self.component.name {
            return;
        }
        let index = s.sal_index;
        match self.latest_events.get_mut(s.topic.as_str()) {
            Some(by_index) => {
                by_index.insert(index, msg);
            }
            None => {
                let topic = s.topic.to_string();
                self.latest_events.entry(topic).or_default().insert(index, msg);
            }
        }
    }

    /// Hand the kept events to a producer that started without the old one's state, in the
    /// order they arrived.
    async fn replay_latest_events(&mut self) {
        let mut kept: Vec<Arc<InputMsg>> = self.latest_events.values().flat_map(|m| m.values().cloned()).collect();
        kept.sort_by_key(|m| m.sample.seq);
        for msg in kept {
            self.deliver(&msg).await;
        }
    }

    /// Rebuild the producer after a panic, as often as it takes (with a growing backoff),
    /// unless the host stops first. A loop rather than recursion: a producer that panics on
    /// every start must not nest restarts without end.
    async fn recover(&mut self, shutdown: &mut crate::shutdown::Shutdown) {
        while self.panicked && !shutdown.is_triggered() {
            self.restart(shutdown).await;
        }
    }

    async fn start(&mut self) {
        self.deliver(&simple(InputKind::START)).await;
        if self.panicked {
            return;
        }
        if self.ctx.outbox.is_connected() {
            self.initialized_for = self.ctx.outbox.connection_count();
            self.deliver(&simple(InputKind::CONNECTED)).await;
            self.deliver(&simple(InputKind::REGISTER)).await;
        }
        self.take_snapshot();
    }

    fn take_snapshot(&mut self) {
        match self.snapshot_call() {
            RResult::ROk(s) => self.last_snapshot = Some(s.into()),
            RResult::RErr(e) => {
                warn!(component = %self.component.name, index = self.component.index, "snapshot failed: {e}")
            }
        }
    }

    /// Hand one input to the producer and carry out its actions (and the inputs they cause).
    async fn deliver(&mut self, first: &InputMsg) {
        if self.panicked {
            return;
        }
        let mut follow_ups: VecDeque<InputMsg> = VecDeque::new();
        let mut current: Option<&InputMsg> = Some(first);
        let mut owned;
        loop {
            let input = match current.take() {
                Some(i) => i,
                None => match follow_ups.pop_front() {
                    Some(i) => {
                        owned = i;
                        &owned
                    }
                    None => return,
                },
            };
            let now = unix_now();
            self.status.inputs.inc();
            self.call_begin(CallKind::Handle(input.kind), self.crash.as_ref());
            let result = self.producer.as_mut().expect("the producer exists while its task runs").handle(input, now);
            self.call_end();
            match result {
                RResult::ROk(actions) => {
                    let created = if input.kind == InputKind::SAMPLE { input.sample.received } else { 0.0 };
                    let is_request = input.kind == InputKind::MANAGER_MESSAGE;
                    for a in actions.iter() {
                        if is_request && a.kind == love_plugin_api::abi::ActionKind::SEND {
                            self.status.replies.inc();
                        }
                        self.execute(Action::decode(a), now, created, &mut follow_ups);
                    }
                }
                RResult::RErr(e) => match CallError::from_abi(&e) {
                    CallError::Panicked(text) => {
                        self.status.panics.inc();
                        error!(
                            component = %self.component.name,
                            index = self.component.index,
                            producer_type = %self.producer_type,
                            "{text}; restarting the producer from its last snapshot"
                        );
                        self.panicked = true;
                        return;
                    }
                    CallError::Failed(text) => {
                        self.status.errors.inc();
                        warn!(component = %self.component.name, index = self.component.index, "producer error: {text}");
                    }
                },
            }
        }
    }

    fn execute(&mut self, action: Action, now: f64, created: f64, follow_ups: &mut VecDeque<InputMsg>) {
        match action {
            Action::Send(m) => {
                self.status.sent.inc();
                match m.category {
                    love_plugin_api::abi::Category::EVENT => self.status.sent_event.inc(),
                    love_plugin_api::abi::Category::TELEMETRY => self.status.sent_telemetry.inc(),
                    _ => self.status.sent_other.inc(),
                };
                self.ctx.outbox.send(Outgoing {
                    category: m.category,
                    csc: m.csc,
                    salindex: m.salindex,
                    stream: m.stream,
                    text: m.text,
                    created,
                });
            }
            Action::Log { level, text } => {
                let (c, i) = (&self.component.name, self.component.index);
                match level {
                    0..=10 => debug!(component = %c, index = i, "{text}"),
                    11..=20 => info!(component = %c, index = i, "{text}"),
                    21..=30 => warn!(component = %c, index = i, "{text}"),
                    _ => error!(component = %c, index = i, "{text}"),
                }
            }
            Action::WakeAt(t) => {
                let delay = (t - now).max(0.0);
                let delay = if delay.is_finite() { delay.min(86_400.0) } else { 86_400.0 };
                self.wake = Some((Instant::now() + Duration::from_secs_f64(delay), t));
            }
            Action::Command { id, component, index, name, fields, timeout } => {
                let sal = self.ctx.sal.clone();
                let tx = self.ack_tx.clone();
                // The plugin's number, made safe for every source's timer: finite, positive,
                // at most a day.
                let timeout = if timeout.is_finite() && timeout > 0.0 { timeout.min(86_400.0) } else { 5.0 };
                let cmd = SalCommand { component, index, name, fields, timeout };
                self.main.spawn(async move {
                    let ack = sal.command(cmd).await;
                    let _ = tx.send((id, ack));
                });
            }
            Action::SubscribeSal { component, index, history } => {
                if let Some(cat) = (self.ctx.catalog)(&component) {
                    match serde_json::to_string(&cat) {
                        Ok(json) => follow_ups.push_back(InputMsg {
                            kind: InputKind::CATALOG,
                            name: component.as_str().into(),
                            text: json.into(),
                            ..Default::default()
                        }),
                        Err(e) => {
                            warn!(component = %self.component.name, index = self.component.index, "catalog of {component}: {e}")
                        }
                    }
                } else {
                    warn!(
                        component = %self.component.name,
                        index = self.component.index,
                        "producer subscribed to {component}:{index}, which the topic catalog does not know"
                    );
                }
                self.subscribe_sal(component, index, history);
            }
            Action::HeartbeatLost { lost, .. } => {
                self.status.heartbeat_lost.set(i64::try_from(lost).unwrap_or(i64::MAX));
            }
            Action::Unknown(kind) => {
                debug!(component = %self.component.name, index = self.component.index, "ignoring action of unknown kind {kind}");
            }
        }
    }

    async fn take_sample(&mut self, sample: Arc<InputMsg>) {
        self.status.last_sample.store(unix_now().to_bits(), Ordering::Relaxed);
        self.status.samples.inc();
        self.deliver(&sample).await;
        self.keep_latest_event(sample);
    }

    /// Before a tick (when a producer sends its telemetry): the telemetry of its own component
    /// that the source holds back to bound its decoding (Kafka) is routed now and read first,
    /// so that what the producer sends is the newest sample received. Waits at most
    /// [`FRESH_TELEMETRY_WAIT`] (a sample dropped on the way must not hold the tick).
    async fn read_fresh_telemetry(&mut self, samples: &mut mpsc::Receiver<Arc<InputMsg>>) {
        if !self.subscribe_own {
            return;
        }
        let Some(newest) = self.ctx.sal.flush_telemetry(&self.component.name, self.component.index) else {
            return;
        };
        let deadline = tokio::time::Instant::now() + FRESH_TELEMETRY_WAIT;
        while let Ok(Some(sample)) = tokio::time::timeout_at(deadline, samples.recv()).await {
            let last = sample.sample.seq >= newest;
            self.take_sample(sample).await;
            if last {
                break;
            }
        }
    }

    fn subscribe_sal(&mut self, component: String, index: i64, history: bool) {
        if !self.subscribed.insert((component.clone(), index)) {
            return;
        }
        // On the shared runtime: the source's forwarding tasks must not depend on this thread.
        let _in_main = self.main.enter();
        if let Err(e) = self.ctx.sal.subscribe(&component, index, history, self.intake_tx.clone()) {
            warn!(
                component = %self.component.name,
                index = self.component.index,
                "cannot subscribe to SAL {component}:{index}: {e}"
            );
        }
    }

    async fn control(&mut self, ctrl: Control) {
        match ctrl {
            Control::Replace { request, reply } => {
                if reply.is_closed() {
                    // The deployer gave up waiting (this producer was stuck): a late swap
                    // would surprise everyone.
                    let label = &request.serving.label;
                    warn!(component = %self.component.name, index = self.component.index, "replacement by {label} abandoned by the deployer; not done");
                    return;
                }
                let outcome = self.replace(request).await;
                let _ = reply.send(outcome);
            }
        }
    }

    /// Swap in a new producer between two inputs: snapshot, create, restore, start. The old
    /// producer stays in place until every step has succeeded.
    async fn replace(&mut self, request: ReplaceRequest) -> Result<SwapReport, SwapError> {
        let ReplaceRequest { create, origin, serving, state, subscribe_own } = request;
        let keep_state = state == StateTransfer::Keep;
        let Serving { producer_type, label } = serving.clone();
        let began = Instant::now();
        let (c, i) = (self.component.name.clone(), self.component.index);
        let record = origin.as_ref().map(|o| CrashRecord::new(o, &self.component));
        let snapshot = if keep_state {
            match self.snapshot_call() {
                RResult::ROk(s) => Some(String::from(s)),
                RResult::RErr(e) => {
                    return Err(SwapError::Failed(format!(
                        "{c}:{i}: snapshot of the running producer failed: {}",
                        CallError::from_abi(&e)
                    )))
                }
            }
        } else {
            None
        };
        let failed = |e: &dyn std::fmt::Display| SwapError::Failed(format!("{c}:{i}: {e}"));
        let mut config: ProducerConfig = serde_json::from_str(&self.config_json).map_err(|e| failed(&e))?;
        config.producer_type = producer_type.clone();
        let config_json = serde_json::to_string(&config).map_err(|e| failed(&e))?;
        let build = |this: &Self| {
            this.call_begin(CallKind::Create, record.as_ref());
            let r = (create)(&config_json);
            this.call_end();
            r.map_err(|e| SwapError::Failed(format!("{c}:{i}: creating the new producer failed: {e}")))
        };
        let mut fresh = build(self)?;
        let mut started_fresh = false;
        if let Some(snap) = &snapshot {
            self.call_begin(CallKind::Restore, record.as_ref());
            let restored = fresh.restore(RStr::from(snap.as_str()));
            self.call_end();
            if let RResult::RErr(e) = restored {
                let text = match CallError::from_abi(&e) {
                    CallError::Panicked(text) => {
                        self.drop_producer(fresh, record.as_ref());
                        return Err(SwapError::Failed(format!(
                            "{c}:{i}: the new producer failed restoring the old one's snapshot: {text}"
                        )));
                    }
                    CallError::Failed(text) => text,
                };
                // A state it cannot read (a format the new version dropped): the upgrade goes
                // on with a clean instance, which sends its initial data afresh.
                warn!(component = %c, index = i, "{c}:{i}: the new producer refused the old one's snapshot ({text}); it starts fresh");
                self.drop_producer(fresh, record.as_ref());
                fresh = build(self)?;
                started_fresh = true;
            }
        }
        // Install the new producer, keeping the old one until the new one has started: a panic
        // while starting puts the old one back, as any other failed step does.
        // The watchdog and the crash handler name the new plugin from here on.
        let old_current = std::mem::replace(&mut *lock(&self.current), serving);
        let old = Undo {
            producer: self.producer.replace(fresh).expect("the producer exists while its task runs"),
            producer_type: std::mem::replace(&mut self.producer_type, producer_type.clone()),
            create: std::mem::replace(&mut self.create, create),
            config_json: std::mem::replace(&mut self.config_json, config_json),
            wake: self.wake.take(),
            crash: std::mem::replace(&mut self.crash, record),
        };
        if keep_state && !started_fresh {
            self.deliver(&simple(InputKind::START)).await;
        } else {
            self.start().await;
            self.replay_latest_events().await;
        }
        if self.panicked {
            self.panicked = false;
            let failed = self.producer.replace(old.producer);
            let failed_record = std::mem::replace(&mut self.crash, old.crash);
            self.producer_type = old.producer_type;
            self.create = old.create;
            self.config_json = old.config_json;
            self.wake = old.wake;
            *lock(&self.current) = old_current;
            if let Some(f) = failed {
                self.drop_producer(f, failed_record.as_ref());
            }
            return Err(SwapError::Failed(format!(
                "{c}:{i}: the new producer panicked while starting; the old one keeps serving"
            )));
        }
        self.drop_producer(old.producer, old.crash.as_ref());
        self.consecutive_panics = 0;
        self.take_snapshot();
        let state = if keep_state && !started_fresh { "carried over" } else { "started fresh" };
        info!(component = %c, index = i, producer_type = %producer_type, plugin = %label, "{c}:{i} now served by {producer_type} ({label}), was {}; state {state}", old.producer_type);
        if subscribe_own && !self.subscribe_own {
            self.subscribe_own = true;
            self.subscribe_sal(c.clone(), i, true);
        }
        Ok(SwapReport {
            duration: began.elapsed(),
            snapshot_bytes: snapshot.map(|s| s.len()).unwrap_or(0),
            started_fresh,
        })
    }

    /// Rebuild the producer after a panic: backoff, create, restore the last snapshot, start.
    async fn restart(&mut self, shutdown: &mut crate::shutdown::Shutdown) {
        let now = Instant::now();
        if self.last_panic.is_some_and(|t| now.duration_since(t) > Duration::from_secs(60)) {
            self.consecutive_panics = 0;
        }
        self.last_panic = Some(now);
        self.consecutive_panics += 1;
        let backoff = Duration::from_millis(250)
            .saturating_mul(1u32 << self.consecutive_panics.min(10).saturating_sub(1))
            .min(self.ctx.settings.max_restart_backoff);
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        let (c, i) = (self.component.name.clone(), self.component.index);
        let record = self.crash.clone();
        self.call_begin(CallKind::Create, record.as_ref());
        let created = (self.create)(&self.config_json);
        self.call_end();
        let mut fresh = match created {
            Ok(p) => p,
            Err(e) => {
                error!(component = %c, index = i, "cannot re-create the producer after a panic: {e}; keeping the old instance");
                self.panicked = false;
                return;
            }
        };
        if let Some(snap) = &self.last_snapshot {
            self.call_begin(CallKind::Restore, record.as_ref());
            let restored = fresh.restore(RStr::from(snap.as_str()));
            self.call_end();
            if let RResult::RErr(e) = restored {
                warn!(component = %c, index = i, "restoring the last snapshot failed ({e}); starting fresh");
            }
        }
        if let Some(old) = self.producer.replace(fresh) {
            self.drop_producer(old, record.as_ref());
        }
        self.panicked = false;
        self.wake = None;
        self.status.restarts.inc();
        info!(component = %c, index = i, backoff_ms = backoff.as_millis() as u64, "producer restarted");
        self.start().await;
    }
}

/// What a swap puts back when the new producer panics while starting.
struct Undo {
    producer: ProducerBox,
    producer_type: String,
    create: CreateFn,
    config_json: String,
    wake: Option<(Instant, f64)>,
    crash: Option<Arc<CrashRecord>>,
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(create: CreateFn, producer_type: &str, label: &str, keep: bool, subscribe_own: bool) -> ReplaceRequest {
        ReplaceRequest {
            create,
            origin: None,
            serving: Serving { producer_type: producer_type.into(), label: label.into() },
            state: if keep { StateTransfer::Keep } else { StateTransfer::Fresh },
            subscribe_own,
        }
    }
    use love_plugin_api::message::subscription;
    use love_plugin_api::sdk::{into_producer_box, Actions, Input, PluginError, ProducerLogic};
    use std::sync::Mutex;

    /// Counts samples; panics on a sample of topic `boom`; snapshot = count. `tag` marks the
    /// stream name of its messages (to tell versions apart).
    struct Counter {
        count: u64,
        tag: &'static str,
    }

    impl ProducerLogic for Counter {
        fn handle(&mut self, input: Input<'_>, now: f64, out: &mut Actions) -> Result<(), PluginError> {
            match input {
                Input::Sample(s) if s.topic.as_str() == "boom" => panic!("boom sample"),
                Input::Sample(_) => {
                    self.count += 1;
                    out.send(love_plugin_api::message::event("Counter", 0, self.tag, &self.count.to_string(), now));
                }
                Input::Register => out.send(subscription("Counter", now)),
                _ => {}
            }
            Ok(())
        }
        fn snapshot(&self) -> Result<String, PluginError> {
            Ok(self.count.to_string())
        }
        fn restore(&mut self, s: &str) -> Result<(), PluginError> {
            if self.tag == "restore-panics" {
                panic!("cannot restore");
            }
            if s == "refuse" || self.tag == "refuses" {
                return Err(PluginError::new("refusing this snapshot"));
            }
            self.count = s.parse().map_err(|_| PluginError::new("bad snapshot"))?;
            Ok(())
        }
    }

    struct FakeOutbox {
        sent: Mutex<Vec<Outgoing>>,
        events: broadcast::Sender<LinkEvent>,
        connections: std::sync::atomic::AtomicU64,
    }

    impl Outbox for FakeOutbox {
        fn send(&self, msg: Outgoing) {
            self.sent.lock().unwrap().push(msg);
        }
        fn events(&self) -> broadcast::Receiver<LinkEvent> {
            self.events.subscribe()
        }
        fn is_connected(&self) -> bool {
            true
        }
        fn connection_count(&self) -> u64 {
            self.connections.load(Ordering::Relaxed)
        }
    }

    #[derive(Default)]
    struct FakeSal {
        subs: Mutex<Vec<(String, i64, crate::sal::SampleTx)>>,
    }

    impl SalSource for FakeSal {
        fn name(&self) -> &str {
            "fake"
        }
        fn subscribe(
            &self,
            component: &str,
            index: i64,
            _history: bool,
            tx: crate::sal::SampleTx,
        ) -> Result<(), crate::sal::SalError> {
            self.subs.lock().unwrap().push((component.to_string(), index, tx));
            Ok(())
        }
        fn command(
            &self,
            _cmd: SalCommand,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = crate::sal::CommandAck> + Send + 'static>> {
            Box::pin(async { crate::sal::CommandAck { code: crate::sal::ack::COMPLETE, result: String::new() } })
        }
    }

    fn sample(topic: &str) -> Arc<InputMsg> {
        let mut m = InputMsg { kind: InputKind::SAMPLE, ..Default::default() };
        m.sample.component = "Counter".into();
        m.sample.topic = topic.into();
        Arc::new(m)
    }

    async fn wait_for(mut cond: impl FnMut() -> bool) {
        for _ in 0..500 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached");
    }

    #[tokio::test]
    async fn a_producer_that_missed_the_connected_event_still_sends_its_initial_data() {
        let (trigger, outbox, sal, handle) = setup();
        let subscriptions = || outbox.sent.lock().unwrap().iter().filter(|m| m.stream == "initial_state").count();
        wait_for(|| subscriptions() == 1).await;
        // Hold the producer inside a call (it blocks on the outbox while sending its answer
        // to a sample), then a new connection and more link events than its channel holds:
        // the `Connected` among them is lost to the lag.
        let tx = sal.subs.lock().unwrap()[0].2.clone();
        let held = outbox.sent.lock().unwrap();
        tx.send(sample("a")).await.unwrap();
        wait_for(|| handle.status.samples.get() == 1).await;
        outbox.connections.store(1, Ordering::Relaxed);
        let _ = outbox.events.send(LinkEvent::Connected);
        for _ in 0..40 {
            let _ = outbox.events.send(LinkEvent::Disconnected);
        }
        drop(held);
        wait_for(|| subscriptions() == 2).await;
        assert!(handle.status.inputs_dropped.get() >= 25, "the lost link events are counted");
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(5), handle.task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_new_producer_that_refuses_the_old_state_starts_fresh() {
        let (trigger, outbox, sal, handle) = setup();
        wait_for(|| !sal.subs.lock().unwrap().is_empty()).await;
        let tx = sal.subs.lock().unwrap()[0].2.clone();
        tx.send(sample("a")).await.unwrap();
        tx.send(sample("a")).await.unwrap();
        wait_for(|| counts(&outbox).len() == 2).await;
        let subscriptions = || outbox.sent.lock().unwrap().iter().filter(|m| m.stream == "initial_state").count();
        let before = subscriptions();
        let refuses: CreateFn = Arc::new(|_| Ok(into_producer_box(Counter { count: 0, tag: "refuses" })));
        let report = handle.replace(request(refuses, "counter", "counter 3.0.0", true, true)).await.unwrap();
        assert!(report.started_fresh);
        assert_eq!(handle.current.lock().unwrap().label, "counter 3.0.0");
        assert_eq!(subscriptions(), before + 1, "a fresh producer sends its initial data and subscriptions");
        tx.send(sample("a")).await.unwrap();
        wait_for(|| counts(&outbox).len() == 3).await;
        assert_eq!(counts(&outbox)[2], ("refuses".to_string(), "1".to_string()), "counting from a clean state");
        trigger.trigger();
    }

    #[tokio::test]
    async fn a_component_moving_to_another_plugin_gets_the_latest_events_again() {
        let (trigger, outbox, sal, handle) = setup();
        wait_for(|| !sal.subs.lock().unwrap().is_empty()).await;
        let tx = sal.subs.lock().unwrap()[0].2.clone();
        let event = |topic: &str, seq: u64| {
            let mut m = (*sample(topic)).clone();
            m.sample.kind = TopicKind::EVENT;
            m.sample.seq = seq;
            Arc::new(m)
        };
        for (i, topic) in ["summaryState", "logLevel", "summaryState"].into_iter().enumerate() {
            tx.send(event(topic, i as u64)).await.unwrap();
        }
        tx.send(sample("telemetry-like")).await.unwrap();
        wait_for(|| counts(&outbox).len() == 4).await;
        // Another plugin, no state carried: it gets the latest of each event (2), in order.
        let other: CreateFn = Arc::new(|_| Ok(into_producer_box(Counter { count: 0, tag: "count-v2" })));
        handle.replace(request(other, "other", "other 1.0.0", false, true)).await.unwrap();
        wait_for(|| counts(&outbox).len() == 6).await;
        assert_eq!(
            counts(&outbox)[4..],
            [("count-v2".to_string(), "1".to_string()), ("count-v2".to_string(), "2".to_string())]
        );
        trigger.trigger();
    }

    /// Sends a Heartbeat message saying 7 lost on its first sample and reports 3 lost through
    /// the typed action, so that a test can tell which of the two the host reads.
    struct ReportsHeartbeat;

    impl ProducerLogic for ReportsHeartbeat {
        fn handle(&mut self, input: Input<'_>, now: f64, out: &mut Actions) -> Result<(), PluginError> {
            if let Input::Sample(_) = input {
                out.send(love_plugin_api::message::heartbeat("Counter", 0, 7, None, now));
                out.push_raw(love_plugin_api::abi::ActionMsg {
                    kind: love_plugin_api::abi::ActionKind::HEARTBEAT_LOST,
                    code: 3,
                    component: "Counter".into(),
                    ..Default::default()
                });
            }
            Ok(())
        }
        fn snapshot(&self) -> Result<String, PluginError> {
            Ok(String::new())
        }
        fn restore(&mut self, _: &str) -> Result<(), PluginError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_heartbeat_lost_count_is_the_one_the_producer_reports_not_read_from_its_json() {
        let (trigger, outbox, sal, handle) = setup_with(Arc::new(|_| Ok(into_producer_box(ReportsHeartbeat))));
        assert_eq!(handle.status.heartbeat_lost(), None);
        wait_for(|| !sal.subs.lock().unwrap().is_empty()).await;
        let tx = sal.subs.lock().unwrap()[0].2.clone();
        tx.send(sample("a")).await.unwrap();
        wait_for(|| outbox.sent.lock().unwrap().iter().any(|m| m.csc == "Heartbeat")).await;
        wait_for(|| handle.status.heartbeat_lost().is_some()).await;
        assert_eq!(handle.status.heartbeat_lost(), Some(3));
        trigger.trigger();
    }

    /// Panics on every start.
    struct PanicsOnStart;

    impl ProducerLogic for PanicsOnStart {
        fn handle(&mut self, input: Input<'_>, _: f64, _: &mut Actions) -> Result<(), PluginError> {
            if matches!(input, Input::Start) {
                panic!("cannot start");
            }
            Ok(())
        }
        fn snapshot(&self) -> Result<String, PluginError> {
            Ok(String::new())
        }
        fn restore(&mut self, _: &str) -> Result<(), PluginError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_producer_that_panics_on_every_start_keeps_restarting_and_stops_at_shutdown() {
        let (trigger, _, _, handle) = setup_with(Arc::new(|_| Ok(into_producer_box(PanicsOnStart))));
        wait_for(|| handle.status.restarts.get() >= 2).await;
        assert!(handle.status.panics.get() >= 2);
        // The next backoff is a second or more: shutdown does not wait for it.
        trigger.trigger();
        tokio::time::timeout(Duration::from_millis(500), handle.task).await.expect("task ends at shutdown").unwrap();
    }

    /// Counts samples as `Counter` does; blocks in `handle` on a sample of topic `hang` until
    /// its gate opens.
    struct Hangs {
        count: u64,
        gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
    }

    impl ProducerLogic for Hangs {
        fn handle(&mut self, input: Input<'_>, now: f64, out: &mut Actions) -> Result<(), PluginError> {
            match input {
                Input::Sample(s) if s.topic.as_str() == "hang" => {
                    let (open, cv) = &*self.gate;
                    let mut open = open.lock().unwrap();
                    while !*open {
                        open = cv.wait(open).unwrap();
                    }
                }
                Input::Sample(_) => {
                    self.count += 1;
                    out.send(love_plugin_api::message::event("Counter", 0, "count", &self.count.to_string(), now));
                }
                _ => {}
            }
            Ok(())
        }
        fn snapshot(&self) -> Result<String, PluginError> {
            Ok(self.count.to_string())
        }
        fn restore(&mut self, s: &str) -> Result<(), PluginError> {
            self.count = s.parse().map_err(|_| PluginError::new("bad snapshot"))?;
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_stuck_producer_is_reported_its_samples_dropped_and_it_recovers_when_the_call_returns() {
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let g = gate.clone();
        let settings =
            RuntimeSettings { call_timeout: Duration::from_millis(200), inbox_capacity: 8, ..Default::default() };
        let create: CreateFn = Arc::new(move |_| Ok(into_producer_box(Hangs { count: 0, gate: g.clone() })));
        let (trigger, outbox, sal, handle) = setup_with_settings(create, settings);
        wait_for(|| !sal.subs.lock().unwrap().is_empty()).await;
        let tx = sal.subs.lock().unwrap()[0].2.clone();
        tx.send(sample("a")).await.unwrap();
        wait_for(|| counts(&outbox).len() == 1).await;
        tx.send(sample("hang")).await.unwrap();
        wait_for(|| handle.status.clock.is_stuck()).await;
        let stuck = handle.status.clock.stuck_call(mono_ns()).unwrap();
        assert_eq!(stuck.call, CallKind::Handle(InputKind::SAMPLE));
        assert!(stuck.elapsed >= Duration::from_millis(200));
        // While it is stuck its samples are dropped and counted, not queued.
        for _ in 0..100 {
            tx.send(sample("a")).await.unwrap();
        }
        wait_for(|| handle.status.inputs_dropped.get() == 100).await;
        // A deployment cannot swap it.
        let v2: CreateFn = Arc::new(|_| Ok(into_producer_box(Counter { count: 0, tag: "count-v2" })));
        let err = handle.replace(request(v2, "counter", "counter 2.0.0", true, true)).await.unwrap_err();
        assert!(matches!(&err, SwapError::Stuck { call, .. } if call == "handle(SAL sample)"), "{err}");
        // The call returns: the producer takes inputs again, its state intact.
        {
            let (open, cv) = &*gate;
            *open.lock().unwrap() = true;
            cv.notify_all();
        }
        wait_for(|| !handle.status.clock.is_stuck()).await;
        tx.send(sample("a")).await.unwrap();
        wait_for(|| counts(&outbox).len() == 2).await;
        assert_eq!(counts(&outbox)[1], ("count".to_string(), "2".to_string()));
        assert_eq!(handle.status.clock.stuck_total.get(), 1);
        assert_eq!(
            handle.current.lock().unwrap().label,
            "counter 1.0.0",
            "the swap refused while stuck never happened"
        );
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(5), handle.task).await.unwrap().unwrap();
    }

    fn setup() -> (crate::shutdown::ShutdownTrigger, Arc<FakeOutbox>, Arc<FakeSal>, ProducerHandle) {
        setup_with(Arc::new(|_| Ok(into_producer_box(Counter { count: 0, tag: "count" }))))
    }

    /// A producer of `create` serving `Counter` with fake link and source (snapshots every
    /// 20 ms, default restart backoff).
    fn setup_with(
        create: CreateFn,
    ) -> (crate::shutdown::ShutdownTrigger, Arc<FakeOutbox>, Arc<FakeSal>, ProducerHandle) {
        setup_with_settings(
            create,
            RuntimeSettings { snapshot_interval: Duration::from_millis(20), ..Default::default() },
        )
    }

    fn setup_with_settings(
        create: CreateFn,
        settings: RuntimeSettings,
    ) -> (crate::shutdown::ShutdownTrigger, Arc<FakeOutbox>, Arc<FakeSal>, ProducerHandle) {
        let (trigger, shutdown) = crate::shutdown::channel();
        let (events, _) = broadcast::channel(16);
        let outbox = Arc::new(FakeOutbox { sent: Mutex::new(Vec::new()), events, connections: Default::default() });
        let sal = Arc::new(FakeSal::default());
        let ctx = RuntimeContext {
            outbox: outbox.clone(),
            sal: sal.clone(),
            catalog: Arc::new(|_| None),
            settings,
            shutdown,
        };
        let spec = ProducerSpec {
            component: ComponentName { name: "Counter".into(), index: 0 },
            producer_type: "counter".into(),
            label: "counter 1.0.0".into(),
            create,
            config: ProducerConfig::default(),
            subscribe_own: true,
            origin: None,
        };
        let handle = spawn_producer(spec, ctx).unwrap();
        (trigger, outbox, sal, handle)
    }

    fn counts(outbox: &FakeOutbox) -> Vec<(String, String)> {
        outbox
            .sent
            .lock()
            .unwrap()
            .iter()
            .filter(|m| ["count", "count-v2", "refuses"].contains(&m.stream.as_str()))
            .map(|m| {
                let v: serde_json::Value = serde_json::from_str(&m.text).unwrap();
                (m.stream.clone(), v["data"][0]["data"][&m.stream][0].to_string())
            })
            .collect()
    }

    #[tokio::test]
    async fn replacing_a_producer_mid_stream_loses_and_repeats_nothing() {
        let (trigger, outbox, sal, handle) = setup();
        wait_for(|| !sal.subs.lock().unwrap().is_empty()).await;
        let tx = sal.subs.lock().unwrap()[0].2.clone();
        for _ in 0..100 {
            tx.send(sample("a")).await.unwrap();
        }
        wait_for(|| counts(&outbox).len() == 100).await;
        // The swap is requested before the next samples are fed: it happens between two of them.
        let v2: CreateFn = Arc::new(|_| Ok(into_producer_box(Counter { count: 0, tag: "count-v2" })));
        let feeder = async {
            for _ in 0..100 {
                tx.send(sample("a")).await.unwrap();
                tokio::task::yield_now().await;
            }
        };
        let (report, ()) = tokio::join!(handle.replace(request(v2, "counter", "counter 2.0.0", true, true)), feeder);
        assert!(report.unwrap().snapshot_bytes > 0);
        wait_for(|| counts(&outbox).len() == 200).await;
        let got = counts(&outbox);
        let numbers: Vec<u64> = got.iter().map(|(_, n)| n.parse().unwrap()).collect();
        assert_eq!(numbers, (1..=200).collect::<Vec<u64>>(), "every input handled exactly once, state carried over");
        assert!(got.iter().any(|(s, _)| s == "count") && got.last().unwrap().0 == "count-v2");
        assert_eq!(handle.current.lock().unwrap().label, "counter 2.0.0");
        trigger.trigger();
    }

    #[tokio::test]
    async fn a_failed_replacement_keeps_the_old_producer_serving() {
        let (trigger, outbox, sal, handle) = setup();
        wait_for(|| !sal.subs.lock().unwrap().is_empty()).await;
        let tx = sal.subs.lock().unwrap()[0].2.clone();
        tx.send(sample("a")).await.unwrap();
        let fails: CreateFn = Arc::new(|_| Err("cannot build".to_string()));
        let err = handle.replace(request(fails, "counter", "bad 2.0.0", true, true)).await.unwrap_err().to_string();
        assert!(err.contains("creating the new producer failed"), "{err}");
        let restore_panics: CreateFn = Arc::new(|_| Ok(into_producer_box(Counter { count: 0, tag: "restore-panics" })));
        let err =
            handle.replace(request(restore_panics, "counter", "bad 2.0.1", true, true)).await.unwrap_err().to_string();
        assert!(err.contains("failed restoring the old one's snapshot") && err.contains("cannot restore"), "{err}");
        let panics: CreateFn = Arc::new(|_| {
            love_plugin_api::sdk::create_guarded::<Counter>(r#"{"component": "Counter"}"#.into(), |_| {
                panic!("panic in create")
            })
            .into_result()
            .map_err(|e| e.to_string())
        });
        let err = handle.replace(request(panics, "counter", "bad 2.0.2", true, true)).await.unwrap_err().to_string();
        assert!(err.contains("panic"), "{err}");
        let panics_on_start: CreateFn = Arc::new(|_| Ok(into_producer_box(PanicsOnStart)));
        let err = handle
            .replace(request(panics_on_start, "counter", "bad 2.0.3", false, true))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("panicked while starting"), "{err}");
        assert_eq!(handle.status.restarts.get(), 0, "the old producer was not restarted");
        tx.send(sample("a")).await.unwrap();
        wait_for(|| counts(&outbox).len() == 2).await;
        assert_eq!(counts(&outbox), [("count".to_string(), "1".to_string()), ("count".to_string(), "2".to_string())]);
        assert_eq!(handle.current.lock().unwrap().label, "counter 1.0.0");
        trigger.trigger();
    }

    #[tokio::test]
    async fn a_panicking_producer_restarts_from_its_snapshot_and_loses_no_input() {
        let (trigger, outbox, sal, handle) = setup();
        wait_for(|| !sal.subs.lock().unwrap().is_empty()).await;
        let tx = sal.subs.lock().unwrap()[0].2.clone();
        for _ in 0..3 {
            tx.send(sample("a")).await.unwrap();
        }
        wait_for(|| outbox.sent.lock().unwrap().iter().filter(|m| m.stream == "count").count() == 3).await;
        // Let a snapshot (count = 3) be taken, then panic and keep sending.
        tokio::time::sleep(Duration::from_millis(60)).await;
        tx.send(sample("boom")).await.unwrap();
        tx.send(sample("a")).await.unwrap();
        tx.send(sample("a")).await.unwrap();
        wait_for(|| outbox.sent.lock().unwrap().iter().filter(|m| m.stream == "count").count() == 5).await;
        let sent = outbox.sent.lock().unwrap();
        let counts: Vec<String> = sent
            .iter()
            .filter(|m| m.stream == "count")
            .map(|m| {
                serde_json::from_str::<serde_json::Value>(&m.text).unwrap()["data"][0]["data"]["count"][0].to_string()
            })
            .collect();
        // The restored producer continues from the snapshot: 4 and 5, nothing lost.
        assert_eq!(counts, ["1", "2", "3", "4", "5"]);
        assert_eq!(handle.status.panics.get(), 1);
        assert_eq!(handle.status.restarts.get(), 1);
        // The same SAL subscription is kept across the restart.
        assert_eq!(sal.subs.lock().unwrap().len(), 1);
        drop(sent);
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(5), handle.task).await.unwrap().unwrap();
    }
}
