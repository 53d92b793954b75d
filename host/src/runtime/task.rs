//! The producer's thread: it owns the producer, feeds its [`Supervisor`] what happens and
//! carries out the effects it returns (calls into the plugin, sends, subscriptions, commands).
//! Every call into the plugin runs under the watchdog's clock and the crash record.

mod io;
mod swap;

use std::collections::{HashSet, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::{RBoxError, RResult, RStr, RString};
use love_plugin_api::abi::{ActionKind, Category, InputKind, InputMsg, ProducerBox};
use love_plugin_api::sdk::Action;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, error, info, warn};

use super::call_error::CallError;
use super::supervisor::{simple, Effect, LinkState, Supervisor};
use super::{Control, CreateFn, ProducerSpec, ProducerStatus, RuntimeContext, Serving};
use crate::clock::unix_now;
use crate::component::ComponentName;
use crate::crash::CrashRecord;
use crate::locks::lock;
use crate::manager::{LinkEvent, Outgoing};
use crate::sal::{CommandAck, SalCommand};
use crate::watchdog::{mono_ns, CallKind};

/// The receiving ends the producer's thread reads.
pub(super) struct Receivers {
    /// SAL samples, from the intake.
    pub(super) inbox: mpsc::Receiver<Arc<InputMsg>>,
    /// Acks of the producer's SAL commands.
    pub(super) acks: mpsc::UnboundedReceiver<(u64, CommandAck)>,
    /// Manager link events.
    pub(super) events: broadcast::Receiver<LinkEvent>,
    /// Hot-deployment requests.
    pub(super) control: mpsc::Receiver<Control>,
}

/// The sending ends the producer's thread writes (besides the outbox).
pub(super) struct Senders {
    /// Where its SAL subscriptions deliver.
    pub(super) intake: mpsc::Sender<Arc<InputMsg>>,
    /// Where its commands' acks go.
    pub(super) acks: mpsc::UnboundedSender<(u64, CommandAck)>,
}

pub(super) struct ProducerTask {
    sup: Supervisor,
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
    senders: Senders,
    subscribed: HashSet<(String, i64)>,
    /// The state a panicked producer is rebuilt from.
    last_snapshot: Option<String>,
    swap: Option<swap::SwapInProgress>,
    /// The origin of the supervisor's time.
    origin: Instant,
}

impl ProducerTask {
    /// The task of `spec`'s producer (created on its thread by [`ProducerTask::run_thread`]).
    pub(super) fn new(
        spec: &ProducerSpec,
        config_json: String,
        (ctx, main): (RuntimeContext, tokio::runtime::Handle),
        (status, current): (Arc<ProducerStatus>, Arc<std::sync::Mutex<Serving>>),
        senders: Senders,
    ) -> Self {
        let sup = Supervisor::new(spec.component.clone(), spec.subscribe_own, ctx.settings.max_restart_backoff);
        ProducerTask {
            sup,
            current,
            component: spec.component.clone(),
            producer_type: spec.producer_type.clone(),
            create: spec.create.clone(),
            config_json,
            producer: None,
            crash: spec.origin.as_ref().map(|o| CrashRecord::new(o, &spec.component)),
            ctx,
            main,
            status,
            senders,
            subscribed: HashSet::new(),
            last_snapshot: None,
            swap: None,
            origin: Instant::now(),
        }
    }

    /// The thread's body: create the producer (the outcome goes to `created`), then run it
    /// until shutdown; `done` says it has ended.
    pub(super) fn run_thread(
        mut self,
        receivers: Receivers,
        created: std::sync::mpsc::SyncSender<Result<(), String>>,
        done: oneshot::Sender<()>,
    ) {
        let component = self.component.clone();
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(r) => r,
            Err(e) => {
                let _ = created.send(Err(format!("{component}: cannot start its runtime: {e}")));
                return;
            }
        };
        let record = self.crash.clone();
        self.call_begin(CallKind::Create, record.as_ref());
        let producer = (self.create)(&self.config_json);
        self.call_end();
        match producer {
            Ok(p) => self.producer = Some(p),
            Err(e) => {
                let _ = created.send(Err(format!("{component}: cannot create producer: {e}")));
                return;
            }
        }
        if created.send(Ok(())).is_err() {
            // The caller gave up waiting: nobody runs this producer.
            return;
        }
        runtime.block_on(self.run(receivers));
        debug!(component = %component.name, index = component.index, "producer thread ended");
        let _ = done.send(());
    }

    async fn run(mut self, receivers: Receivers) {
        let Receivers { mut inbox, mut acks, mut events, mut control } = receivers;
        let mut shutdown = self.ctx.shutdown.clone();
        self.sup.start(self.link());
        let mut snapshot_timer = tokio::time::interval(self.ctx.settings.snapshot_interval);
        snapshot_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.run_effects(&mut inbox).await;
            // A producer waiting to be rebuilt takes nothing: its inputs wait in their queues.
            let serving = self.sup.takes_inputs();
            let timeout = self.sup.next_timeout().map(|t| self.origin + t);
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = sleep_until_opt(timeout) => self.sup.handle_timeout(self.now()),
                Some(sample) = inbox.recv(), if serving => self.take_sample(sample),
                ev = events.recv(), if serving => if self.link_event(ev).is_break() { break },
                Some((id, ack)) = acks.recv(), if serving => {
                    let msg = InputMsg { kind: InputKind::COMMAND_ACK, id, code: ack.code, text: ack.result.into(), ..Default::default() };
                    self.sup.input(Arc::new(msg));
                }
                _ = snapshot_timer.tick(), if serving => self.take_snapshot(),
                Some(ctrl) = control.recv(), if serving => self.control(ctrl),
            }
        }
        // The producer's destructor is plugin code too.
        let record = self.crash.clone();
        if let Some(producer) = self.producer.take() {
            self.drop_producer(producer, record.as_ref());
        }
    }

    /// The supervisor's time.
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn link(&self) -> LinkState {
        LinkState { connected: self.ctx.outbox.is_connected(), connection: self.ctx.outbox.connection_count() }
    }

    /// Carry out everything the supervisor has decided, including what that leads to.
    async fn run_effects(&mut self, inbox: &mut mpsc::Receiver<Arc<InputMsg>>) {
        while let Some(effect) = self.sup.poll() {
            match effect {
                Effect::SubscribeOwn => {
                    let own = self.component.clone();
                    self.subscribe_sal(own.name, own.index, true);
                }
                Effect::Deliver(msg) => self.deliver(&msg),
                Effect::Tick => {
                    self.read_fresh_telemetry(inbox).await;
                    self.sup.input(Arc::new(simple(InputKind::TICK)));
                }
                Effect::KeepSnapshot => self.take_snapshot(),
                Effect::Rebuild { after } => self.rebuild(after),
                Effect::SnapshotForSwap => self.snapshot_for_swap(),
                Effect::CreateReplacement { restore } => self.create_replacement(restore),
                Effect::Install => self.install(),
                Effect::Commit => self.commit(),
                Effect::Undo => self.undo(),
                Effect::SwapDone(result) => self.finish_swap(result),
            }
        }
    }

    fn link_event(&mut self, event: Result<LinkEvent, broadcast::error::RecvError>) -> ControlFlow<()> {
        match event {
            Ok(LinkEvent::Connected) => self.sup.link_up(self.link()),
            Ok(LinkEvent::Resubscribe) => self.sup.input(Arc::new(simple(InputKind::REGISTER))),
            Ok(LinkEvent::Disconnected) => self.sup.input(Arc::new(simple(InputKind::DISCONNECTED))),
            Ok(LinkEvent::Request(text)) => {
                self.status.requests.inc();
                let msg =
                    InputMsg { kind: InputKind::MANAGER_MESSAGE, text: text.as_ref().into(), ..Default::default() };
                self.sup.input(Arc::new(msg));
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                self.status.inputs_dropped.inc_by(n);
                let (c, i) = (&self.component.name, self.component.index);
                warn!(component = %c, index = i, "producer fell behind and missed {n} link events");
                self.sup.link_events_missed(self.link());
            }
            Err(broadcast::error::RecvError::Closed) => return ControlFlow::Break(()),
        }
        ControlFlow::Continue(())
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
            let label = lock(&self.current).label.clone();
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
    fn snapshot_call(&mut self) -> RResult<RString, RBoxError> {
        let record = self.crash.clone();
        self.call_begin(CallKind::Snapshot, record.as_ref());
        let r = self.producer().snapshot();
        self.call_end();
        r
    }

    /// `restore` of `snapshot` into `producer`, as a call.
    fn restore_call(
        &self,
        producer: &mut ProducerBox,
        snapshot: &str,
        record: Option<&Arc<CrashRecord>>,
    ) -> RResult<(), RBoxError> {
        self.call_begin(CallKind::Restore, record);
        let r = producer.restore(RStr::from(snapshot));
        self.call_end();
        r
    }

    /// `create` through `create`, as a call of the plugin `record` names.
    fn create_call(
        &self,
        create: &CreateFn,
        config_json: &str,
        record: Option<&Arc<CrashRecord>>,
    ) -> Result<ProducerBox, String> {
        self.call_begin(CallKind::Create, record);
        let r = create(config_json);
        self.call_end();
        r
    }

    fn take_snapshot(&mut self) {
        match self.snapshot_call() {
            RResult::ROk(s) => self.last_snapshot = Some(s.into()),
            RResult::RErr(e) => {
                warn!(component = %self.component.name, index = self.component.index, "snapshot failed: {e}")
            }
        }
    }

    /// Rebuild the producer after a panic (it waited `after`): create, restore the last
    /// snapshot, then the supervisor starts it.
    fn rebuild(&mut self, after: Duration) {
        let (c, i) = (self.component.name.clone(), self.component.index);
        let record = self.crash.clone();
        let mut fresh = match self.create_call(&self.create, &self.config_json, record.as_ref()) {
            Ok(p) => p,
            Err(e) => {
                error!(component = %c, index = i, "cannot re-create the producer after a panic: {e}; keeping the old instance");
                self.sup.rebuilt(false, self.link());
                return;
            }
        };
        if let Some(snap) = &self.last_snapshot {
            if let RResult::RErr(e) = self.restore_call(&mut fresh, snap, record.as_ref()) {
                warn!(component = %c, index = i, "restoring the last snapshot failed ({e}); starting fresh");
            }
        }
        if let Some(old) = self.producer.replace(fresh) {
            self.drop_producer(old, record.as_ref());
        }
        self.status.restarts.inc();
        info!(component = %c, index = i, backoff_ms = after.as_millis() as u64, "producer restarted");
        self.sup.rebuilt(true, self.link());
    }

    /// Hand one input to the producer and carry out its actions (and the inputs they cause).
    /// A panic is reported to the supervisor and ends the delivery.
    fn deliver(&mut self, first: &InputMsg) {
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
                        if is_request && a.kind == ActionKind::SEND {
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
                        self.sup.panicked(self.now());
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
        let (c, i) = (&self.component.name, self.component.index);
        match action {
            Action::Send(m) => {
                self.status.sent.inc();
                match m.category {
                    Category::EVENT => self.status.sent_event.inc(),
                    Category::TELEMETRY => self.status.sent_telemetry.inc(),
                    _ => self.status.sent_other.inc(),
                };
                let m = Outgoing {
                    category: m.category,
                    csc: m.csc,
                    salindex: m.salindex,
                    stream: m.stream,
                    text: m.text,
                    created,
                };
                self.ctx.outbox.send(m);
            }
            Action::Log { level, text } => match level {
                0..=10 => debug!(component = %c, index = i, "{text}"),
                11..=20 => info!(component = %c, index = i, "{text}"),
                21..=30 => warn!(component = %c, index = i, "{text}"),
                _ => error!(component = %c, index = i, "{text}"),
            },
            Action::WakeAt(t) => self.sup.wake_requested(t, now, self.now()),
            Action::Command { id, component, index, name, fields, timeout } => {
                self.command(id, SalCommand { component, index, name, fields, timeout })
            }
            Action::SubscribeSal { component, index, history } => {
                if let Some(catalog) = self.catalog_input(&component, index) {
                    follow_ups.push_back(catalog);
                }
                self.subscribe_sal(component, index, history);
            }
            Action::HeartbeatLost { lost, .. } => {
                self.status.heartbeat_lost.set(i64::try_from(lost).unwrap_or(i64::MAX));
            }
            Action::Unknown(kind) => {
                debug!(component = %c, index = i, "ignoring action of unknown kind {kind}");
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
