//! The policy of one producer's life as a sans-IO state machine, in the manner of quinn-proto's
//! `Connection`: the producer's thread feeds it what happened (inputs, link changes, a panic,
//! the outcome of a step it asked for) with `now`, and carries out the [`Effect`]s it returns
//! from [`Supervisor::poll`]. It never calls a producer, reads a clock or touches a channel, so
//! every decision is testable with plain values:
//! - restarts: a panicked producer takes no inputs until it is rebuilt after a backoff
//!   that doubles for panics in a row;
//! - swaps (hot upgrade): snapshot, create, restore, install, start, then commit, or undo if
//!   the new producer panics while starting; a refused snapshot starts the new one fresh;
//! - connect de-duplication: a producer sends its initial data once per link connection;
//! - the latest events of the component, replayed to a producer that starts without the old
//!   one's state;
//! - the producer's wake-up request.
//!
//! `now` is monotonic time from any fixed origin (the thread's start; a test's zero).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use love_plugin_api::abi::{InputKind, InputMsg};
use tracing::warn;

use super::backoff::RestartBackoff;
use super::latest_events::LatestEvents;
use super::{StateTransfer, SwapError};
use crate::component::ComponentName;

/// The longest wake-up delay a producer can ask for (a day): keeps every timer finite.
const MAX_WAKE_DELAY: f64 = 86_400.0;

/// What the supervisor asks the producer's thread to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Subscribe the producer to its own component's SAL samples (history first).
    SubscribeOwn,
    /// Hand this input to the producer and carry out its actions; report a panic with
    /// [`Supervisor::panicked`].
    Deliver(Arc<InputMsg>),
    /// The producer's wake-up is due: read in the fresh telemetry the source holds (each
    /// through [`Supervisor::sample`]), then [`Supervisor::input`] a tick.
    Tick,
    /// Snapshot the producer and keep it as the state to rebuild from.
    KeepSnapshot,
    /// Rebuild the panicked producer from its kept snapshot (it waited `after`); report with
    /// [`Supervisor::rebuilt`].
    Rebuild {
        /// The backoff it waited, for the log.
        after: Duration,
    },
    /// Snapshot the running producer for the swap; report with [`Supervisor::swap_snapshot`].
    SnapshotForSwap,
    /// Create the replacement, restoring the swap's snapshot into it when `restore`; report
    /// with [`Supervisor::replacement`].
    CreateReplacement {
        /// Whether the old producer's snapshot goes into it.
        restore: bool,
    },
    /// Put the replacement in place, keeping the old producer for an undo.
    Install,
    /// The replacement started well: drop the old producer.
    Commit,
    /// The replacement panicked while starting: drop it and put the old producer back.
    Undo,
    /// The swap is over: answer the request.
    SwapDone(Result<SwapOutcome, SwapError>),
}

/// How a swap that succeeded went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapOutcome {
    /// The replacement refused the old producer's snapshot and started fresh.
    pub started_fresh: bool,
}

/// What the manager link looks like at the moment of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkState {
    /// The link is up.
    pub connected: bool,
    /// How many connections it has made (0: the link does not count them).
    pub connection: u64,
}

/// How creating a replacement went (see [`Effect::CreateReplacement`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replacement {
    /// Created (and restored, if asked).
    Ready,
    /// `create` failed.
    CreateFailed(String),
    /// It panicked restoring the snapshot: a broken build, not a state it cannot read.
    RestorePanicked(String),
    /// It refused the snapshot (a format it cannot read): it may start fresh.
    RestoreRefused(String),
}

/// Where the producer is in its life.
#[derive(Debug)]
enum Phase {
    /// Taking inputs.
    Serving,
    /// Panicked: rebuilt at `rebuild_at`, no inputs until then.
    Down { rebuild_at: Duration, backoff: Duration },
    /// [`Effect::Rebuild`] is out.
    Rebuilding,
    /// A swap is under way.
    Swapping(Swap),
}

#[derive(Debug)]
struct Swap {
    state: StateTransfer,
    subscribe_own: bool,
    link: LinkState,
    started_fresh: bool,
    /// Installed: a panic now undoes the swap.
    installed: bool,
    /// The old producer's wake-up, put back by an undo.
    old_wake: Option<Duration>,
}

/// The supervisor of one producer (see the module's documentation).
#[derive(Debug)]
pub struct Supervisor {
    component: ComponentName,
    subscribe_own: bool,
    phase: Phase,
    backoff: RestartBackoff,
    /// The link connection the producer last sent its initial data for.
    initialized_for: u64,
    latest_events: LatestEvents,
    /// When the producer asked to be woken.
    wake: Option<Duration>,
    effects: VecDeque<Effect>,
}

impl Supervisor {
    /// A supervisor for the producer of `component`, reading its own component's samples if
    /// `subscribe_own`, restarting with at most `max_restart_backoff` between attempts.
    pub fn new(component: ComponentName, subscribe_own: bool, max_restart_backoff: Duration) -> Self {
        Supervisor {
            latest_events: LatestEvents::new(&component.name),
            component,
            subscribe_own,
            phase: Phase::Serving,
            backoff: RestartBackoff::new(max_restart_backoff),
            initialized_for: 0,
            wake: None,
            effects: VecDeque::new(),
        }
    }

    /// The next thing to do.
    pub fn poll(&mut self) -> Option<Effect> {
        let effect = self.effects.pop_front()?;
        if matches!(effect, Effect::Commit) {
            if let Phase::Swapping(swap) = std::mem::replace(&mut self.phase, Phase::Serving) {
                self.backoff.forgive();
                if swap.subscribe_own && !self.subscribe_own {
                    self.subscribe_own = true;
                    self.effects.push_front(Effect::SubscribeOwn);
                }
            }
        }
        Some(effect)
    }

    /// Whether the producer takes inputs now (not while it waits to be rebuilt).
    pub fn takes_inputs(&self) -> bool {
        matches!(self.phase, Phase::Serving)
    }

    /// Whether the producer reads its own component's samples.
    pub fn subscribes_own(&self) -> bool {
        self.subscribe_own
    }

    /// When [`Supervisor::handle_timeout`] is next due.
    pub fn next_timeout(&self) -> Option<Duration> {
        match self.phase {
            Phase::Down { rebuild_at, .. } => Some(rebuild_at),
            Phase::Serving => self.wake,
            Phase::Rebuilding | Phase::Swapping(_) => None,
        }
    }

    /// Time has reached `now`: a due rebuild or wake-up is started.
    pub fn handle_timeout(&mut self, now: Duration) {
        match self.phase {
            Phase::Down { rebuild_at, backoff } if now >= rebuild_at => {
                self.phase = Phase::Rebuilding;
                self.effects.push_back(Effect::Rebuild { after: backoff });
            }
            Phase::Serving if self.wake.is_some_and(|w| now >= w) => {
                self.wake = None;
                self.effects.push_back(Effect::Tick);
            }
            _ => {}
        }
    }

    /// The producer has been created: subscribe it and start it.
    pub fn start(&mut self, link: LinkState) {
        if self.subscribe_own {
            self.effects.push_back(Effect::SubscribeOwn);
        }
        self.queue_start(link);
    }

    /// A SAL sample for the producer.
    pub fn sample(&mut self, msg: Arc<InputMsg>) {
        self.latest_events.record(&msg);
        self.input(msg);
    }

    /// Any other input for the producer (a manager request, a command ack, a tick, a link
    /// event that needs no de-duplication).
    pub fn input(&mut self, msg: Arc<InputMsg>) {
        self.effects.push_back(Effect::Deliver(msg));
    }

    /// The link came up (a `Connected` event): initial data, unless already sent for this
    /// connection (a producer started while the link was up sees its `Connected` too).
    pub fn link_up(&mut self, link: LinkState) {
        if link.connection == 0 || link.connection != self.initialized_for {
            self.send_initial_data(link.connection);
        }
    }

    /// Link events were lost to a lag: a `Connected` among them would leave this connection
    /// without the producer's initial data until the next resubscription.
    pub fn link_events_missed(&mut self, link: LinkState) {
        if link.connected && link.connection != self.initialized_for {
            self.send_initial_data(link.connection);
        }
    }

    /// The producer asked for a tick at `at` (Unix seconds) while it handled an input at
    /// `now_unix`, monotonic time `now`. The latest request replaces earlier ones.
    pub fn wake_requested(&mut self, at: f64, now_unix: f64, now: Duration) {
        let delay = (at - now_unix).max(0.0);
        let delay = if delay.is_finite() { delay.min(MAX_WAKE_DELAY) } else { MAX_WAKE_DELAY };
        self.wake = Some(now + Duration::from_secs_f64(delay));
    }

    /// The producer panicked at `now`. Serving, it is rebuilt after a backoff; starting as a
    /// replacement, the swap is undone.
    pub fn panicked(&mut self, now: Duration) {
        self.effects.clear();
        match std::mem::replace(&mut self.phase, Phase::Serving) {
            Phase::Swapping(swap) if swap.installed => {
                self.wake = swap.old_wake;
                self.effects.push_back(Effect::Undo);
                let text =
                    format!("{}: the new producer panicked while starting; the old one keeps serving", self.component);
                self.effects.push_back(Effect::SwapDone(Err(SwapError::Failed(text))));
            }
            _ => {
                let backoff = self.backoff.on_panic(now);
                self.wake = None;
                self.phase = Phase::Down { rebuild_at: now + backoff, backoff };
            }
        }
    }

    /// How [`Effect::Rebuild`] went: `created` or not (the old instance then keeps serving, as
    /// it is); the rebuilt producer starts with the link as it is now.
    pub fn rebuilt(&mut self, created: bool, link: LinkState) {
        self.phase = Phase::Serving;
        if created {
            self.wake = None;
            self.queue_start(link);
        }
    }

    /// Replace the producer (hot deployment). `subscribe_own`: the replacement reads its own
    /// component's samples.
    pub fn swap(&mut self, state: StateTransfer, subscribe_own: bool, link: LinkState) {
        if !self.takes_inputs() {
            let text = format!("{}: the producer is restarting; it cannot be replaced now", self.component);
            self.effects.push_back(Effect::SwapDone(Err(SwapError::Failed(text))));
            return;
        }
        self.phase = Phase::Swapping(Swap {
            state,
            subscribe_own,
            link,
            started_fresh: false,
            installed: false,
            old_wake: None,
        });
        self.effects.push_back(match state {
            StateTransfer::Keep => Effect::SnapshotForSwap,
            StateTransfer::Fresh => Effect::CreateReplacement { restore: false },
        });
    }

    /// How [`Effect::SnapshotForSwap`] went (`Err`: the call's error text).
    pub fn swap_snapshot(&mut self, result: Result<(), String>) {
        match result {
            Ok(()) => self.effects.push_back(Effect::CreateReplacement { restore: true }),
            Err(e) => self.abort_swap(format!("snapshot of the running producer failed: {e}")),
        }
    }

    /// How [`Effect::CreateReplacement`] went.
    pub fn replacement(&mut self, outcome: Replacement) {
        let Phase::Swapping(swap) = &mut self.phase else { return };
        match outcome {
            Replacement::Ready => {
                swap.installed = true;
                swap.old_wake = self.wake.take();
                let (keep, link) = (swap.state == StateTransfer::Keep && !swap.started_fresh, swap.link);
                let outcome = SwapOutcome { started_fresh: swap.started_fresh };
                self.effects.push_back(Effect::Install);
                if keep {
                    self.input(Arc::new(simple(InputKind::START)));
                } else {
                    self.queue_start(link);
                    for msg in self.latest_events.in_arrival_order() {
                        self.effects.push_back(Effect::Deliver(msg));
                    }
                }
                self.effects.extend([Effect::Commit, Effect::KeepSnapshot, Effect::SwapDone(Ok(outcome))]);
            }
            Replacement::CreateFailed(e) => self.abort_swap(format!("creating the new producer failed: {e}")),
            Replacement::RestorePanicked(e) => {
                self.abort_swap(format!("the new producer failed restoring the old one's snapshot: {e}"))
            }
            Replacement::RestoreRefused(e) => {
                // A state it cannot read (a format the new version dropped): the upgrade goes
                // on with a clean instance, which sends its initial data afresh.
                let c = &self.component;
                warn!(component = %c.name, index = c.index, "{c}: the new producer refused the old one's snapshot ({e}); it starts fresh");
                swap.started_fresh = true;
                self.effects.push_back(Effect::CreateReplacement { restore: false });
            }
        }
    }

    fn abort_swap(&mut self, why: String) {
        self.phase = Phase::Serving;
        let text = format!("{}: {why}", self.component);
        self.effects.push_back(Effect::SwapDone(Err(SwapError::Failed(text))));
    }

    /// A producer's start: `START`, its initial data if the link is up, a first snapshot.
    fn queue_start(&mut self, link: LinkState) {
        self.input(Arc::new(simple(InputKind::START)));
        if link.connected {
            self.send_initial_data(link.connection);
        }
        self.effects.push_back(Effect::KeepSnapshot);
    }

    fn send_initial_data(&mut self, connection: u64) {
        self.initialized_for = connection;
        self.input(Arc::new(simple(InputKind::CONNECTED)));
        self.input(Arc::new(simple(InputKind::REGISTER)));
    }
}

/// An input with no payload.
pub fn simple(kind: InputKind) -> InputMsg {
    InputMsg { kind, ..Default::default() }
}

#[cfg(test)]
mod tests {
    //! Every test feeds time as plain values: no runtime, no clock, no producer.
    use super::*;
    use love_plugin_api::abi::TopicKind;

    const UP: LinkState = LinkState { connected: true, connection: 1 };
    const DOWN: LinkState = LinkState { connected: false, connection: 0 };

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn supervisor() -> Supervisor {
        Supervisor::new(ComponentName { name: "ATDome".into(), index: 0 }, true, Duration::from_secs(30))
    }

    /// The effects queued, inputs shown by kind.
    fn drain(s: &mut Supervisor) -> Vec<String> {
        std::iter::from_fn(|| s.poll()).map(|e| describe(&e)).collect()
    }

    fn describe(e: &Effect) -> String {
        match e {
            Effect::Deliver(m) if m.kind == InputKind::SAMPLE => format!("sample {}", m.sample.topic),
            Effect::Deliver(m) => crate::watchdog::CallKind::Handle(m.kind).describe().to_string(),
            Effect::SwapDone(Ok(o)) => format!("done fresh={}", o.started_fresh),
            Effect::SwapDone(Err(e)) => format!("failed: {e}"),
            other => format!("{other:?}"),
        }
    }

    fn event(topic: &str, index: i64, seq: u64) -> Arc<InputMsg> {
        let mut m = simple(InputKind::SAMPLE);
        m.sample.component = "ATDome".into();
        m.sample.topic = topic.into();
        m.sample.sal_index = index;
        m.sample.kind = TopicKind::EVENT;
        m.sample.seq = seq;
        Arc::new(m)
    }

    #[test]
    fn a_producer_starts_subscribed_with_its_initial_data_when_the_link_is_up() {
        let mut s = supervisor();
        s.start(UP);
        assert_eq!(
            drain(&mut s),
            ["SubscribeOwn", "handle(start)", "handle(connected)", "handle(register)", "KeepSnapshot"]
        );
        let mut s = Supervisor::new(ComponentName { name: "ATDome".into(), index: 0 }, false, secs(30.0));
        s.start(DOWN);
        assert_eq!(drain(&mut s), ["handle(start)", "KeepSnapshot"]);
    }

    #[test]
    fn initial_data_is_sent_once_per_connection() {
        let mut s = supervisor();
        s.start(UP);
        drain(&mut s);
        s.link_up(UP);
        assert!(drain(&mut s).is_empty(), "the Connected of the connection it started on");
        let second = LinkState { connected: true, connection: 2 };
        s.link_up(second);
        assert_eq!(drain(&mut s), ["handle(connected)", "handle(register)"]);
        s.link_events_missed(second);
        assert!(drain(&mut s).is_empty());
        s.link_events_missed(LinkState { connected: false, connection: 3 });
        assert!(drain(&mut s).is_empty(), "down: nothing to send to");
        s.link_events_missed(LinkState { connected: true, connection: 3 });
        assert_eq!(drain(&mut s), ["handle(connected)", "handle(register)"], "a missed Connected");
        // A link that does not count its connections: every Connected is a new one.
        let uncounted = LinkState { connected: true, connection: 0 };
        s.link_up(uncounted);
        s.link_up(uncounted);
        assert_eq!(drain(&mut s).len(), 4);
    }

    #[test]
    fn a_panicked_producer_takes_no_inputs_until_it_is_rebuilt_after_its_backoff() {
        let mut s = supervisor();
        s.start(UP);
        drain(&mut s);
        s.wake_requested(105.0, 100.0, secs(10.0));
        s.input(Arc::new(simple(InputKind::TICK)));
        s.panicked(secs(10.0));
        assert!(drain(&mut s).is_empty(), "what was queued behind the panic is dropped");
        assert!(!s.takes_inputs());
        assert_eq!(s.next_timeout(), Some(secs(10.25)), "the wake-up is forgotten, the rebuild is due");
        s.handle_timeout(secs(10.2));
        assert!(drain(&mut s).is_empty());
        s.handle_timeout(secs(10.25));
        assert_eq!(drain(&mut s), ["Rebuild { after: 250ms }"]);
        assert_eq!(s.next_timeout(), None);
        s.rebuilt(true, UP);
        assert!(s.takes_inputs());
        assert_eq!(drain(&mut s), ["handle(start)", "handle(connected)", "handle(register)", "KeepSnapshot"]);
    }

    #[test]
    fn a_producer_that_panics_on_every_start_waits_longer_each_time() {
        let mut s = Supervisor::new(ComponentName { name: "ATDome".into(), index: 0 }, false, secs(30.0));
        let mut now = Duration::ZERO;
        let mut waits = Vec::new();
        s.start(DOWN);
        for _ in 0..4 {
            assert_eq!(s.poll().map(|e| describe(&e)).as_deref(), Some("handle(start)"));
            s.panicked(now);
            now = s.next_timeout().unwrap();
            s.handle_timeout(now);
            let Some(Effect::Rebuild { after }) = s.poll() else { panic!("a rebuild") };
            waits.push(after);
            s.rebuilt(true, DOWN);
        }
        assert_eq!(waits, [secs(0.25), secs(0.5), secs(1.0), secs(2.0)]);
    }

    #[test]
    fn a_failed_rebuild_keeps_the_old_instance_serving_without_a_start() {
        let mut s = supervisor();
        s.panicked(Duration::ZERO);
        s.handle_timeout(secs(1.0));
        drain(&mut s);
        s.rebuilt(false, UP);
        assert!(s.takes_inputs());
        assert!(drain(&mut s).is_empty());
    }

    #[test]
    fn a_wake_up_is_due_at_the_time_asked_and_bounded_to_a_day() {
        let mut s = supervisor();
        s.wake_requested(1_000.5, 1_000.0, secs(3.0));
        assert_eq!(s.next_timeout(), Some(secs(3.5)));
        s.handle_timeout(secs(3.4));
        assert!(drain(&mut s).is_empty());
        s.handle_timeout(secs(3.5));
        assert_eq!(drain(&mut s), ["Tick"]);
        assert_eq!(s.next_timeout(), None, "a wake-up fires once");
        s.wake_requested(900.0, 1_000.0, secs(4.0));
        assert_eq!(s.next_timeout(), Some(secs(4.0)), "in the past: at once");
        for at in [f64::INFINITY, 1e300] {
            s.wake_requested(at, 1_000.0, secs(4.0));
            assert_eq!(s.next_timeout(), Some(secs(4.0 + 86_400.0)), "{at}");
        }
        s.wake_requested(f64::NAN, 1_000.0, secs(4.0));
        assert_eq!(s.next_timeout(), Some(secs(4.0)), "not a time: at once");
    }

    #[test]
    fn an_upgrade_carries_the_state_over_and_forgets_the_wake_up() {
        let mut s = supervisor();
        s.start(UP);
        drain(&mut s);
        s.wake_requested(2.0, 1.0, secs(1.0));
        s.swap(StateTransfer::Keep, true, UP);
        assert_eq!(drain(&mut s), ["SnapshotForSwap"]);
        s.swap_snapshot(Ok(()));
        assert_eq!(drain(&mut s), ["CreateReplacement { restore: true }"]);
        s.replacement(Replacement::Ready);
        assert_eq!(drain(&mut s), ["Install", "handle(start)", "Commit", "KeepSnapshot", "done fresh=false"]);
        assert_eq!(s.next_timeout(), None, "the new producer asks again on START");
        assert!(s.takes_inputs());
    }

    #[test]
    fn a_replacement_that_refuses_the_snapshot_starts_fresh_with_the_latest_events() {
        let mut s = supervisor();
        s.start(DOWN);
        for (seq, (topic, index)) in
            [("summaryState", 0), ("logLevel", 0), ("summaryState", 0), ("logLevel", 2)].into_iter().enumerate()
        {
            s.sample(event(topic, index, seq as u64));
        }
        let mut telemetry = (*event("position", 0, 9)).clone();
        telemetry.sample.kind = TopicKind::TELEMETRY;
        s.sample(Arc::new(telemetry));
        let mut other = (*event("summaryState", 0, 10)).clone();
        other.sample.component = "Script".into();
        s.sample(Arc::new(other));
        drain(&mut s);
        s.swap(StateTransfer::Keep, true, UP);
        s.swap_snapshot(Ok(()));
        s.replacement(Replacement::RestoreRefused("unknown version".into()));
        assert_eq!(
            drain(&mut s),
            ["SnapshotForSwap", "CreateReplacement { restore: true }", "CreateReplacement { restore: false }"]
        );
        s.replacement(Replacement::Ready);
        assert_eq!(
            drain(&mut s),
            [
                "Install",
                "handle(start)",
                "handle(connected)",
                "handle(register)",
                "KeepSnapshot",
                "sample logLevel",
                "sample summaryState",
                "sample logLevel",
                "Commit",
                "KeepSnapshot",
                "done fresh=true"
            ],
            "the latest of each event and index of its own component, in arrival order"
        );
    }

    #[test]
    fn a_replacement_that_panics_while_starting_is_undone_and_the_old_wake_up_kept() {
        let mut s = supervisor();
        s.start(DOWN);
        drain(&mut s);
        s.wake_requested(10.0, 0.0, Duration::ZERO);
        s.swap(StateTransfer::Fresh, true, DOWN);
        assert_eq!(drain(&mut s), ["CreateReplacement { restore: false }"]);
        s.replacement(Replacement::Ready);
        assert_eq!(s.poll(), Some(Effect::Install));
        assert!(matches!(s.poll(), Some(Effect::Deliver(m)) if m.kind == InputKind::START));
        s.panicked(secs(1.0));
        assert_eq!(
            drain(&mut s),
            ["Undo", "failed: ATDome:0: the new producer panicked while starting; the old one keeps serving"]
        );
        assert!(s.takes_inputs(), "no restart: the old producer never panicked");
        assert_eq!(s.next_timeout(), Some(secs(10.0)));
    }

    #[test]
    fn a_swap_that_fails_before_the_install_changes_nothing() {
        let mut s = supervisor();
        s.swap(StateTransfer::Keep, true, UP);
        s.swap_snapshot(Err("producer panicked: snapshot".into()));
        s.swap(StateTransfer::Keep, true, UP);
        s.swap_snapshot(Ok(()));
        s.replacement(Replacement::RestorePanicked("producer panicked: restore".into()));
        s.swap(StateTransfer::Fresh, true, UP);
        s.replacement(Replacement::CreateFailed("no such file".into()));
        let failures: Vec<String> = drain(&mut s).into_iter().filter(|e| e.starts_with("failed")).collect();
        assert_eq!(
            failures,
            [
                "failed: ATDome:0: snapshot of the running producer failed: producer panicked: snapshot",
                "failed: ATDome:0: the new producer failed restoring the old one's snapshot: producer panicked: restore",
                "failed: ATDome:0: creating the new producer failed: no such file",
            ]
        );
        assert!(s.takes_inputs());
    }

    #[test]
    fn a_good_swap_forgives_earlier_panics_and_can_subscribe_the_component() {
        let mut s = Supervisor::new(ComponentName { name: "ATDome".into(), index: 0 }, false, secs(30.0));
        for i in 0..3 {
            s.panicked(secs(i as f64));
            s.handle_timeout(secs(100.0));
            drain(&mut s);
            s.rebuilt(true, DOWN);
            drain(&mut s);
        }
        s.swap(StateTransfer::Fresh, true, DOWN);
        s.replacement(Replacement::Ready);
        let effects = drain(&mut s);
        assert_eq!(effects[effects.len() - 4..], ["Commit", "SubscribeOwn", "KeepSnapshot", "done fresh=false"]);
        s.panicked(secs(4.0));
        assert_eq!(s.next_timeout(), Some(secs(4.25)), "a first panic again");
        s.handle_timeout(secs(5.0));
        drain(&mut s);
        s.rebuilt(true, DOWN);
        s.swap(StateTransfer::Fresh, true, DOWN);
        s.replacement(Replacement::Ready);
        assert!(!drain(&mut s).contains(&"SubscribeOwn".to_string()), "subscribed once");
    }

    #[test]
    fn a_producer_waiting_to_be_rebuilt_cannot_be_swapped() {
        let mut s = supervisor();
        s.panicked(Duration::ZERO);
        s.swap(StateTransfer::Keep, true, UP);
        assert_eq!(drain(&mut s), ["failed: ATDome:0: the producer is restarting; it cannot be replaced now"]);
        assert!(!s.takes_inputs());
    }
}
