//! The producer runtime: one tokio task per producer.
//!
//! Each task owns its producer and calls it synchronously with one input at a time (a SAL
//! sample, a link event, a tick, a command ack), then carries out the returned actions. A
//! producer that panics (caught by the SDK and returned as an error) is rebuilt from its last
//! snapshot after a backoff; inputs that arrive meanwhile wait in its inbox.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use abi_stable::std_types::{RResult, RStr};
use love_plugin_api::abi::{InputKind, InputMsg, ProducerBox, TopicKind};
use love_plugin_api::catalog::ComponentCatalog;
use love_plugin_api::sdk::{Action, ProducerConfig, PANIC_PREFIX};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::component::ComponentName;
use crate::manager::{LinkEvent, Outgoing};
use crate::sal::{SalCommand, SalSource};
use crate::shutdown::Shutdown;

/// Where producers' messages go and where link events come from.
pub trait Outbox: Send + Sync + 'static {
    /// Queue a message for the manager (never blocks).
    fn send(&self, msg: Outgoing);
    /// A receiver of link events.
    fn events(&self) -> broadcast::Receiver<LinkEvent>;
    /// Whether the link is up now.
    fn is_connected(&self) -> bool;
    /// How many connections the link has made so far (the current one included): lets a
    /// producer that started while the link was already up tell whether a `Connected` event
    /// it receives is about a connection it has already sent initial data for.
    fn connection_count(&self) -> u64 {
        0
    }
}

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
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            snapshot_interval: Duration::from_secs(10),
            max_restart_backoff: Duration::from_secs(30),
            inbox_capacity: 4096,
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

/// Live counters of one producer (read by the admin endpoint and tests).
#[derive(Debug, Default)]
pub struct ProducerStatus {
    /// Inputs handled.
    pub inputs: AtomicU64,
    /// Messages sent.
    pub sent: AtomicU64,
    /// Panics caught.
    pub panics: AtomicU64,
    /// Restarts done.
    pub restarts: AtomicU64,
    /// Errors returned (not panics).
    pub errors: AtomicU64,
    /// Time of the last SAL sample (f64 bits of Unix seconds).
    pub last_sample: AtomicU64,
    /// SAL samples received.
    pub samples: AtomicU64,
    /// Event messages sent.
    pub sent_event: AtomicU64,
    /// Telemetry messages sent.
    pub sent_telemetry: AtomicU64,
    /// initial_state requests handed to the producer.
    pub requests: AtomicU64,
    /// Messages sent in answer to initial_state requests.
    pub replies: AtomicU64,
    /// The `lost` count of the producer's latest Heartbeat message (`u64::MAX`: none yet).
    pub heartbeat_lost: AtomicU64,
}

impl ProducerStatus {
    /// A fresh status.
    pub fn new() -> Self {
        ProducerStatus { heartbeat_lost: AtomicU64::new(u64::MAX), ..Default::default() }
    }

    /// The `lost` count of the latest Heartbeat message, if any was sent.
    pub fn heartbeat_lost(&self) -> Option<u64> {
        let v = self.heartbeat_lost.load(Ordering::Relaxed);
        (v != u64::MAX).then_some(v)
    }

    /// Time of the last SAL sample, if any.
    pub fn last_sample_time(&self) -> Option<f64> {
        let bits = self.last_sample.load(Ordering::Relaxed);
        (bits != 0).then(|| f64::from_bits(bits))
    }
}

/// A request to a running producer task, carried out between two inputs.
pub enum Control {
    /// Replace the producer with one built by `create` (hot deployment). With `keep_state` the
    /// old producer's snapshot is restored into the new one (an upgrade of the same plugin);
    /// without, the new one starts fresh (a component moving to another plugin). If any step
    /// fails the old producer keeps running and the error is returned.
    Replace {
        /// Builds the new producer.
        create: CreateFn,
        /// Its producer type.
        producer_type: String,
        /// Its plugin label.
        label: String,
        /// Restore the old producer's snapshot into the new one.
        keep_state: bool,
        /// Whether the new producer reads its own component's SAL samples.
        subscribe_own: bool,
        /// The outcome.
        reply: oneshot::Sender<Result<SwapReport, String>>,
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
    pub current: Arc<std::sync::Mutex<(String, String)>>,
    /// Its counters.
    pub status: Arc<ProducerStatus>,
    /// Requests to the task.
    pub control: mpsc::Sender<Control>,
    /// Its task.
    pub task: tokio::task::JoinHandle<()>,
}

impl ProducerHandle {
    /// Replace the producer (see [`Control::Replace`]) and wait for the outcome.
    pub async fn replace(
        &self,
        create: CreateFn,
        producer_type: &str,
        label: &str,
        keep_state: bool,
        subscribe_own: bool,
    ) -> Result<SwapReport, String> {
        let (reply, rx) = oneshot::channel();
        let req = Control::Replace {
            create,
            producer_type: producer_type.to_string(),
            label: label.to_string(),
            keep_state,
            subscribe_own,
            reply,
        };
        self.control.send(req).await.map_err(|_| "producer task has stopped".to_string())?;
        rx.await.map_err(|_| "producer task has stopped".to_string())?
    }
}

/// Unix time now, as the producers see it.
pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Create the producer (errors are reported to the caller before anything runs) and spawn its
/// task.
pub fn spawn_producer(spec: ProducerSpec, ctx: RuntimeContext) -> Result<ProducerHandle, String> {
    let config_json = serde_json::to_string(&spec.config).map_err(|e| e.to_string())?;
    let producer =
        (spec.create)(&config_json).map_err(|e| format!("{}: cannot create producer: {e}", spec.component))?;
    let status = Arc::new(ProducerStatus::new());
    let (sample_tx, sample_rx) = mpsc::channel(ctx.settings.inbox_capacity);
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let events = ctx.outbox.events();
    let (control_tx, control_rx) = mpsc::channel(4);
    let current = Arc::new(std::sync::Mutex::new((spec.producer_type.clone(), spec.label.clone())));
    let task_state = ProducerTask {
        current: current.clone(),
        component: spec.component.clone(),
        producer_type: spec.producer_type.clone(),
        create: spec.create.clone(),
        config_json,
        producer,
        ctx: ctx.clone(),
        status: status.clone(),
        sample_tx,
        ack_tx,
        subscribed: HashSet::new(),
        wake: None,
        last_snapshot: None,
        consecutive_panics: 0,
        last_panic: None,
        panicked: false,
        latest_events: HashMap::new(),
        subscribe_own: spec.subscribe_own,
        initialized_for: 0,
    };
    let component = spec.component.clone();
    let task = tokio::spawn(async move {
        task_state.run(sample_rx, ack_rx, events, control_rx).await;
        debug!(component = %component.name, index = component.index, "producer task ended");
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

struct ProducerTask {
    current: Arc<std::sync::Mutex<(String, String)>>,
    component: ComponentName,
    producer_type: String,
    create: CreateFn,
    config_json: String,
    producer: ProducerBox,
    ctx: RuntimeContext,
    status: Arc<ProducerStatus>,
    sample_tx: mpsc::Sender<Arc<InputMsg>>,
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
                Some(sample) = samples.recv() => {
                    self.status.last_sample.store(unix_now().to_bits(), Ordering::Relaxed);
                    self.status.samples.fetch_add(1, Ordering::Relaxed);
                    self.deliver(&sample).await;
                    self.keep_latest_event(sample);
                }
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
                        self.status.requests.fetch_add(1, Ordering::Relaxed);
                        let msg = InputMsg { kind: InputKind::MANAGER_MESSAGE, text: text.as_ref().into(), ..Default::default() };
                        self.deliver(&msg).await;
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
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
                    self.deliver(&simple(InputKind::TICK)).await;
                }
                _ = snapshot_timer.tick() => self.take_snapshot(),
                Some(ctrl) = control.recv() => self.control(ctrl).await,
            }
            self.recover(&mut shutdown).await;
        }
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
        match self.producer.snapshot() {
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
            self.status.inputs.fetch_add(1, Ordering::Relaxed);
            match self.producer.handle(input, now) {
                RResult::ROk(actions) => {
                    let created = if input.kind == InputKind::SAMPLE { input.sample.received } else { 0.0 };
                    let is_request = input.kind == InputKind::MANAGER_MESSAGE;
                    for a in actions.iter() {
                        if is_request && a.kind == love_plugin_api::abi::ActionKind::SEND {
                            self.status.replies.fetch_add(1, Ordering::Relaxed);
                        }
                        self.execute(Action::decode(a), now, created, &mut follow_ups);
                    }
                }
                RResult::RErr(e) => {
                    let text = e.to_string();
                    if text.starts_with(PANIC_PREFIX) {
                        self.status.panics.fetch_add(1, Ordering::Relaxed);
                        error!(
                            component = %self.component.name,
                            index = self.component.index,
                            producer_type = %self.producer_type,
                            "{text}; restarting the producer from its last snapshot"
                        );
                        self.panicked = true;
                        return;
                    }
                    self.status.errors.fetch_add(1, Ordering::Relaxed);
                    warn!(component = %self.component.name, index = self.component.index, "producer error: {text}");
                }
            }
        }
    }

    fn execute(&mut self, action: Action, now: f64, created: f64, follow_ups: &mut VecDeque<InputMsg>) {
        match action {
            Action::Send(m) => {
                self.status.sent.fetch_add(1, Ordering::Relaxed);
                match m.category {
                    love_plugin_api::abi::Category::EVENT => self.status.sent_event.fetch_add(1, Ordering::Relaxed),
                    love_plugin_api::abi::Category::TELEMETRY => {
                        self.status.sent_telemetry.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => 0,
                };
                if m.csc == "Heartbeat" {
                    if let Some(lost) = heartbeat_lost_of(&m.text) {
                        self.status.heartbeat_lost.store(lost, Ordering::Relaxed);
                    }
                }
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
                tokio::spawn(async move {
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
            Action::Unknown(kind) => {
                debug!(component = %self.component.name, index = self.component.index, "ignoring action of unknown kind {kind}");
            }
        }
    }

    fn subscribe_sal(&mut self, component: String, index: i64, history: bool) {
        if !self.subscribed.insert((component.clone(), index)) {
            return;
        }
        if let Err(e) = self.ctx.sal.subscribe(&component, index, history, self.sample_tx.clone()) {
            warn!(
                component = %self.component.name,
                index = self.component.index,
                "cannot subscribe to SAL {component}:{index}: {e}"
            );
        }
    }

    async fn control(&mut self, ctrl: Control) {
        match ctrl {
            Control::Replace { create, producer_type, label, keep_state, subscribe_own, reply } => {
                let outcome = self.replace(create, producer_type, label, keep_state, subscribe_own).await;
                let _ = reply.send(outcome);
            }
        }
    }

    /// Swap in a new producer between two inputs: snapshot, create, restore, start. The old
    /// producer stays in place until every step has succeeded.
    async fn replace(
        &mut self,
        create: CreateFn,
        producer_type: String,
        label: String,
        keep_state: bool,
        subscribe_own: bool,
    ) -> Result<SwapReport, String> {
        let began = Instant::now();
        let (c, i) = (self.component.name.clone(), self.component.index);
        let snapshot = if keep_state {
            match self.producer.snapshot() {
                RResult::ROk(s) => Some(String::from(s)),
                RResult::RErr(e) => return Err(format!("{c}:{i}: snapshot of the running producer failed: {e}")),
            }
        } else {
            None
        };
        let mut config: ProducerConfig = serde_json::from_str(&self.config_json).map_err(|e| e.to_string())?;
        config.producer_type = producer_type.clone();
        let config_json = serde_json::to_string(&config).map_err(|e| e.to_string())?;
        let build = || (create)(&config_json).map_err(|e| format!("{c}:{i}: creating the new producer failed: {e}"));
        let mut fresh = build()?;
        let mut started_fresh = false;
        if let Some(snap) = &snapshot {
            if let RResult::RErr(e) = fresh.restore(RStr::from(snap.as_str())) {
                let text = e.to_string();
                if text.starts_with(PANIC_PREFIX) {
                    return Err(format!("{c}:{i}: the new producer failed restoring the old one's snapshot: {text}"));
                }
                // A state it cannot read (a format the new version dropped): the upgrade goes
                // on with a clean instance, which sends its initial data afresh.
                warn!(component = %c, index = i, "{c}:{i}: the new producer refused the old one's snapshot ({text}); it starts fresh");
                fresh = build()?;
                started_fresh = true;
            }
        }
        // Install the new producer, keeping the old one until the new one has started: a panic
        // while starting puts the old one back, as any other failed step does.
        let old = Undo {
            producer: std::mem::replace(&mut self.producer, fresh),
            producer_type: std::mem::replace(&mut self.producer_type, producer_type.clone()),
            create: std::mem::replace(&mut self.create, create),
            config_json: std::mem::replace(&mut self.config_json, config_json),
            wake: self.wake.take(),
        };
        if keep_state && !started_fresh {
            self.deliver(&simple(InputKind::START)).await;
        } else {
            self.start().await;
            self.replay_latest_events().await;
        }
        if self.panicked {
            self.panicked = false;
            self.producer = old.producer;
            self.producer_type = old.producer_type;
            self.create = old.create;
            self.config_json = old.config_json;
            self.wake = old.wake;
            return Err(format!("{c}:{i}: the new producer panicked while starting; the old one keeps serving"));
        }
        self.consecutive_panics = 0;
        self.take_snapshot();
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = (producer_type.clone(), label.clone());
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
        let mut fresh = match (self.create)(&self.config_json) {
            Ok(p) => p,
            Err(e) => {
                error!(component = %c, index = i, "cannot re-create the producer after a panic: {e}; keeping the old instance");
                self.panicked = false;
                return;
            }
        };
        if let Some(snap) = &self.last_snapshot {
            if let RResult::RErr(e) = fresh.restore(RStr::from(snap.as_str())) {
                warn!(component = %c, index = i, "restoring the last snapshot failed ({e}); starting fresh");
            }
        }
        self.producer = fresh;
        self.panicked = false;
        self.wake = None;
        self.status.restarts.fetch_add(1, Ordering::Relaxed);
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
}

/// The `lost` count of a Heartbeat stream message.
fn heartbeat_lost_of(text: &str) -> Option<u64> {
    let v: serde_json::Value = love_plugin_api::json::parse_lenient(text).ok()?;
    v["data"][0]["data"]["stream"]["lost"].as_u64()
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
        wait_for(|| !sal.subs.lock().unwrap().is_empty()).await;
        let subscriptions = || outbox.sent.lock().unwrap().iter().filter(|m| m.stream == "initial_state").count();
        assert_eq!(subscriptions(), 1, "initial data and subscriptions at start");
        // A new connection, and more link events than the producer's channel holds before it
        // runs again: the `Connected` among them is lost to the lag.
        outbox.connections.store(1, Ordering::Relaxed);
        let _ = outbox.events.send(LinkEvent::Connected);
        for _ in 0..40 {
            let _ = outbox.events.send(LinkEvent::Disconnected);
        }
        wait_for(|| subscriptions() == 2).await;
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
        let report = handle.replace(refuses, "counter", "counter 3.0.0", true, true).await.unwrap();
        assert!(report.started_fresh);
        assert_eq!(handle.current.lock().unwrap().1, "counter 3.0.0");
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
        handle.replace(other, "other", "other 1.0.0", false, true).await.unwrap();
        wait_for(|| counts(&outbox).len() == 6).await;
        assert_eq!(
            counts(&outbox)[4..],
            [("count-v2".to_string(), "1".to_string()), ("count-v2".to_string(), "2".to_string())]
        );
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
        wait_for(|| handle.status.restarts.load(Ordering::Relaxed) >= 2).await;
        assert!(handle.status.panics.load(Ordering::Relaxed) >= 2);
        // The next backoff is a second or more: shutdown does not wait for it.
        trigger.trigger();
        tokio::time::timeout(Duration::from_millis(500), handle.task).await.expect("task ends at shutdown").unwrap();
    }

    fn setup() -> (crate::shutdown::ShutdownTrigger, Arc<FakeOutbox>, Arc<FakeSal>, ProducerHandle) {
        setup_with(Arc::new(|_| Ok(into_producer_box(Counter { count: 0, tag: "count" }))))
    }

    /// A producer of `create` serving `Counter` with fake link and source (snapshots every
    /// 20 ms, default restart backoff).
    fn setup_with(
        create: CreateFn,
    ) -> (crate::shutdown::ShutdownTrigger, Arc<FakeOutbox>, Arc<FakeSal>, ProducerHandle) {
        let (trigger, shutdown) = crate::shutdown::channel();
        let (events, _) = broadcast::channel(16);
        let outbox = Arc::new(FakeOutbox { sent: Mutex::new(Vec::new()), events, connections: Default::default() });
        let sal = Arc::new(FakeSal::default());
        let ctx = RuntimeContext {
            outbox: outbox.clone(),
            sal: sal.clone(),
            catalog: Arc::new(|_| None),
            settings: RuntimeSettings { snapshot_interval: Duration::from_millis(20), ..Default::default() },
            shutdown,
        };
        let spec = ProducerSpec {
            component: ComponentName { name: "Counter".into(), index: 0 },
            producer_type: "counter".into(),
            label: "counter 1.0.0".into(),
            create,
            config: ProducerConfig::default(),
            subscribe_own: true,
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
        let feeder = tokio::spawn(async move {
            for _ in 0..200 {
                tx.send(sample("a")).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        tokio::time::sleep(Duration::from_millis(2)).await;
        let v2: CreateFn = Arc::new(|_| Ok(into_producer_box(Counter { count: 0, tag: "count-v2" })));
        let report = handle.replace(v2, "counter", "counter 2.0.0", true, true).await.unwrap();
        assert!(report.snapshot_bytes > 0);
        feeder.await.unwrap();
        wait_for(|| counts(&outbox).len() == 200).await;
        let got = counts(&outbox);
        let numbers: Vec<u64> = got.iter().map(|(_, n)| n.parse().unwrap()).collect();
        assert_eq!(numbers, (1..=200).collect::<Vec<u64>>(), "every input handled exactly once, state carried over");
        assert!(got.iter().any(|(s, _)| s == "count") && got.last().unwrap().0 == "count-v2");
        assert_eq!(handle.current.lock().unwrap().1, "counter 2.0.0");
        trigger.trigger();
    }

    #[tokio::test]
    async fn a_failed_replacement_keeps_the_old_producer_serving() {
        let (trigger, outbox, sal, handle) = setup();
        wait_for(|| !sal.subs.lock().unwrap().is_empty()).await;
        let tx = sal.subs.lock().unwrap()[0].2.clone();
        tx.send(sample("a")).await.unwrap();
        let fails: CreateFn = Arc::new(|_| Err("cannot build".to_string()));
        let err = handle.replace(fails, "counter", "bad 2.0.0", true, true).await.unwrap_err();
        assert!(err.contains("creating the new producer failed"), "{err}");
        let restore_panics: CreateFn = Arc::new(|_| Ok(into_producer_box(Counter { count: 0, tag: "restore-panics" })));
        let err = handle.replace(restore_panics, "counter", "bad 2.0.1", true, true).await.unwrap_err();
        assert!(err.contains("failed restoring the old one's snapshot") && err.contains("cannot restore"), "{err}");
        let panics: CreateFn = Arc::new(|_| {
            love_plugin_api::sdk::create_guarded::<Counter>(r#"{"component": "Counter"}"#.into(), |_| {
                panic!("panic in create")
            })
            .into_result()
            .map_err(|e| e.to_string())
        });
        let err = handle.replace(panics, "counter", "bad 2.0.2", true, true).await.unwrap_err();
        assert!(err.contains("panic"), "{err}");
        let panics_on_start: CreateFn = Arc::new(|_| Ok(into_producer_box(PanicsOnStart)));
        let err = handle.replace(panics_on_start, "counter", "bad 2.0.3", false, true).await.unwrap_err();
        assert!(err.contains("panicked while starting"), "{err}");
        assert_eq!(handle.status.restarts.load(Ordering::Relaxed), 0, "the old producer was not restarted");
        tx.send(sample("a")).await.unwrap();
        wait_for(|| counts(&outbox).len() == 2).await;
        assert_eq!(counts(&outbox), [("count".to_string(), "1".to_string()), ("count".to_string(), "2".to_string())]);
        assert_eq!(handle.current.lock().unwrap().1, "counter 1.0.0");
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
        assert_eq!(handle.status.panics.load(Ordering::Relaxed), 1);
        assert_eq!(handle.status.restarts.load(Ordering::Relaxed), 1);
        // The same SAL subscription is kept across the restart.
        assert_eq!(sal.subs.lock().unwrap().len(), 1);
        drop(sent);
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(5), handle.task).await.unwrap().unwrap();
    }
}
