//! Routing of samples to subscribers, shared by every SAL source (sim, replay, Kafka): per
//! component, the subscribers with their bounded queues (telemetry dropped first for one that
//! does not keep up), the latest event of each topic and salIndex for later subscribers, and the
//! out-of-order check. Pure state: the sources call it under their own lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use love_plugin_api::abi::{InputMsg, TopicKind};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::SampleTx;

/// A salIndex silent this long (no sample on any topic of its component) is forgotten: its
/// latest events (replayed to later subscribers) and the `private_sndStamp`s of the
/// out-of-order check. `Script` gets a new salIndex for every run, so without this the
/// per-index state of a long-running host grows without bound. A running CSC or script sends a
/// heartbeat every second, so a live index is never forgotten (its out-of-order check stays
/// exact); a sample of a forgotten index that arrives later is accepted as new. Non-indexed
/// components (one index only) forget nothing.
pub const INDEX_TTL: Duration = Duration::from_secs(3600);

/// At most this many salIndex values are kept per component: when a new one would exceed it,
/// the least recently seen is forgotten (a bound for indices coming faster than [`INDEX_TTL`]
/// forgets them; a live index is only lost if this many others are more recent).
pub const MAX_INDICES: usize = 1000;

/// How often silent indices are looked for (on an accepted sample).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Each subscriber's queue in front of its [`SampleTx`] holds at most this many samples (on top
/// of the late-joiner history queued when it subscribes). When it is full (the subscriber is not
/// reading: a producer in restart backoff, say) further samples are dropped and counted.
pub const SUB_QUEUE: usize = 8192;

/// Telemetry is not queued to a subscriber that already has this many samples waiting: it would
/// be stale when read, and the newest one comes again at the next telemetry interval. The rest
/// of the queue stays free for events.
pub const TELEMETRY_BACKLOG: usize = 1024;

struct Sub {
    index: i64,
    /// Whether samples from the late-joiner read and the kept events are delivered (the
    /// subscriber asked for history).
    history: bool,
    queue: mpsc::Sender<Arc<InputMsg>>,
    /// Whether samples are being dropped for it now (logged once per episode).
    lagging: bool,
}

impl Sub {
    /// Samples waiting in the queue, less the room made for the history when it subscribed (so
    /// a long history does not count as lagging).
    fn backlog(&self) -> usize {
        let max = self.queue.max_capacity();
        (max - self.queue.capacity()).saturating_sub(max.saturating_sub(SUB_QUEUE))
    }
}

/// What is kept of one salIndex of a component.
struct IndexState {
    /// When a sample of this index was last accepted (any topic).
    seen: Instant,
    /// The `private_sndStamp` of the last accepted sample, per topic (the out-of-order check).
    last_snd: HashMap<String, f64>,
    /// The latest event, per topic (for later subscribers).
    latest_events: HashMap<String, Arc<InputMsg>>,
}

/// What [`ComponentRouter::route`] did with a sample.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Routed {
    /// Queued to at least one subscriber.
    pub delivered: bool,
    /// Subscribers it was not queued to because they are not keeping up.
    pub dropped: u64,
}

/// One component's subscribers and what is kept of its samples.
#[derive(Default)]
pub struct ComponentRouter {
    /// Whether the component is indexed (only then are silent indices forgotten).
    pub indexed: bool,
    subs: Vec<Sub>,
    indices: HashMap<i64, IndexState>,
    /// When silent indices were last looked for.
    pruned: Option<Instant>,
}

/// What [`ComponentRouter::publish`] did with a sample.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// Dropped: older than the last sample of its topic and index.
    pub out_of_order: bool,
    /// What routing did.
    pub routed: Routed,
}

impl ComponentRouter {
    /// A router for an indexed component or not.
    pub fn new(indexed: bool) -> ComponentRouter {
        ComponentRouter { indexed, ..Default::default() }
    }

    /// Deliver the samples of `index` (0: every index) to `tx` from now on, with `history` the
    /// latest event of each topic first. A task (on `runtime`) forwards the subscriber's
    /// bounded queue to `tx`, so publishing never waits on a subscriber.
    pub fn subscribe(&mut self, index: i64, history: bool, tx: SampleTx, runtime: &tokio::runtime::Handle) {
        let cached = if history { self.history(index) } else { Vec::new() };
        // Room for the history on top of the live samples.
        let (queue, mut rx) = mpsc::channel::<Arc<InputMsg>>(cached.len() + SUB_QUEUE);
        for m in cached {
            let _ = queue.try_send(m);
        }
        self.subs.push(Sub { index, history, queue, lagging: false });
        runtime.spawn(async move {
            while let Some(m) = rx.recv().await {
                if tx.send(m).await.is_err() {
                    break;
                }
            }
        });
    }

    /// Route one sample (seen at `now`): with `check_order`, one older than the last of its
    /// topic and index is dropped; an event becomes its topic's latest for later subscribers;
    /// `historical` (from a late-joiner read) goes only to subscribers that asked for history.
    pub fn publish(
        &mut self,
        comp: &str,
        msg: &Arc<InputMsg>,
        historical: bool,
        check_order: bool,
        now: Instant,
    ) -> Published {
        let s = &msg.sample;
        if !self.admit(&s.topic, s.sal_index, check_order.then_some(s.stamps.snd_stamp), now) {
            return Published { out_of_order: true, routed: Routed::default() };
        }
        if s.kind == TopicKind::EVENT {
            self.keep_event(msg);
        }
        Published { out_of_order: false, routed: self.route(comp, msg, historical) }
    }

    /// Forget what is kept of `index` (a script that has finished).
    pub fn forget(&mut self, index: i64) {
        self.indices.remove(&index);
    }

    /// Live subscribers.
    pub fn subscriber_count(&mut self) -> usize {
        self.subs.retain(|s| !s.queue.is_closed());
        self.subs.len()
    }

    /// The out-of-order check of a sample of `topic`:`index` sent at `snd` (None: not
    /// checked) and seen at `now`. If it passes, `snd` becomes the topic's last stamp for the
    /// index and the index is marked seen; false means the sample is older than the last one and
    /// must be dropped.
    fn admit(&mut self, topic: &str, index: i64, snd: Option<f64>, now: Instant) -> bool {
        self.prune(now);
        if let Some(st) = self.indices.get_mut(&index) {
            st.seen = st.seen.max(now);
            let Some(snd) = snd else { return true };
            if st.last_snd.get(topic).is_some_and(|last| snd < *last) {
                return false;
            }
            st.last_snd.insert(topic.to_string(), snd);
            return true;
        }
        if self.indices.len() >= MAX_INDICES {
            if let Some(oldest) = self.indices.iter().min_by_key(|(_, s)| s.seen).map(|(i, _)| *i) {
                debug!(sal_index = oldest, "sal: too many indices; forgetting the least recently seen");
                self.indices.remove(&oldest);
            }
        }
        let st = IndexState {
            seen: now,
            last_snd: snd.map(|snd| HashMap::from([(topic.to_string(), snd)])).unwrap_or_default(),
            latest_events: HashMap::new(),
        };
        self.indices.insert(index, st);
        true
    }

    /// Forget the indices silent for [`INDEX_TTL`] (at most once per [`PRUNE_EVERY`]).
    fn prune(&mut self, now: Instant) {
        if !self.indexed || self.pruned.is_some_and(|t| now.saturating_duration_since(t) < PRUNE_EVERY) {
            return;
        }
        self.pruned = Some(now);
        self.indices.retain(|_, s| now.saturating_duration_since(s.seen) < INDEX_TTL);
    }

    /// Keep `msg` as the latest event of its topic and index (after [`ComponentRouter::admit`]).
    fn keep_event(&mut self, msg: &Arc<InputMsg>) {
        if let Some(st) = self.indices.get_mut(&msg.sample.sal_index) {
            st.latest_events.insert(msg.sample.topic.to_string(), msg.clone());
        }
    }

    /// The latest events a new subscription to `index` gets first, oldest first.
    fn history(&self, index: i64) -> Vec<Arc<InputMsg>> {
        let mut v: Vec<Arc<InputMsg>> = self
            .indices
            .iter()
            .filter(|(i, _)| index == 0 || **i == index)
            .flat_map(|(_, s)| s.latest_events.values().cloned())
            .collect();
        v.sort_by_key(|m| m.sample.seq);
        v
    }

    /// Queue `msg` to every matching subscriber (closed ones are removed). Telemetry is not
    /// queued to a subscriber with [`TELEMETRY_BACKLOG`] samples waiting, nothing to one whose
    /// queue is full.
    fn route(&mut self, comp: &str, msg: &Arc<InputMsg>, historical: bool) -> Routed {
        let idx = msg.sample.sal_index;
        let telemetry = msg.sample.kind == TopicKind::TELEMETRY;
        let mut out = Routed::default();
        self.subs.retain_mut(|s| {
            if (s.index != 0 && s.index != idx) || (historical && !s.history) {
                return !s.queue.is_closed();
            }
            let sent = if telemetry && s.backlog() >= TELEMETRY_BACKLOG {
                Err(mpsc::error::TrySendError::Full(()))
            } else {
                s.queue.try_send(msg.clone()).map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => mpsc::error::TrySendError::Full(()),
                    mpsc::error::TrySendError::Closed(_) => mpsc::error::TrySendError::Closed(()),
                })
            };
            match sent {
                Ok(()) => {
                    // Only once most of the backlog is gone, not at every event queued between
                    // two dropped telemetry samples.
                    if s.lagging && s.backlog() < TELEMETRY_BACKLOG / 2 {
                        s.lagging = false;
                        info!(component = comp, index = s.index, "sal: subscriber keeping up again");
                    }
                    out.delivered = true;
                    true
                }
                Err(mpsc::error::TrySendError::Full(())) => {
                    if !std::mem::replace(&mut s.lagging, true) {
                        warn!(
                            component = comp,
                            index = s.index,
                            backlog = s.backlog(),
                            "sal: subscriber not keeping up; dropping telemetry, and events when its queue is full"
                        );
                    }
                    out.dropped += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Closed(())) => false,
            }
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use love_plugin_api::abi::Sample;

    fn msg(index: i64, topic: &str, kind: TopicKind) -> Arc<InputMsg> {
        super::super::sample_msg(Sample {
            component: "Script".into(),
            sal_index: index,
            topic: topic.into(),
            kind,
            seq: super::super::next_seq(),
            ..Default::default()
        })
    }

    /// admit + keep_event, as `Inner::accept` does.
    fn event(st: &mut ComponentRouter, index: i64, topic: &str, snd: f64, now: Instant) -> bool {
        let ok = st.admit(topic, index, Some(snd), now);
        if ok {
            st.keep_event(&msg(index, topic, TopicKind::EVENT));
        }
        ok
    }

    fn sub(index: i64, history: bool, capacity: usize) -> (Sub, mpsc::Receiver<Arc<InputMsg>>) {
        let (queue, rx) = mpsc::channel(capacity);
        (Sub { index, history, queue, lagging: false }, rx)
    }

    #[test]
    fn silent_indices_are_forgotten_and_live_ones_keep_their_order_check() {
        let mut st = ComponentRouter { indexed: true, ..Default::default() };
        let t0 = Instant::now();
        let minutes = |m: u64| t0 + Duration::from_secs(60 * m);
        assert!(event(&mut st, 100001, "logMessage", 10.0, t0)); // a script that ends
        assert!(event(&mut st, 100002, "state", 10.0, t0)); // a script still running
        for m in (10..=130).step_by(10) {
            assert!(event(&mut st, 100002, "heartbeat", m as f64, minutes(m)));
        }
        assert!(!st.indices.contains_key(&100001), "silent for over INDEX_TTL: forgotten");
        let kept: Vec<(i64, String)> =
            st.history(0).iter().map(|m| (m.sample.sal_index, m.sample.topic.to_string())).collect();
        assert_eq!(kept, [(100002, "state".to_string()), (100002, "heartbeat".to_string())]);
        // The live index keeps its out-of-order check, including for a topic silent for long.
        assert!(!st.admit("heartbeat", 100002, Some(129.0), minutes(131)));
        assert!(!st.admit("state", 100002, Some(9.0), minutes(131)));
        // A forgotten index starts afresh.
        assert!(st.admit("logMessage", 100001, Some(5.0), minutes(131)));

        // A non-indexed component has one index: nothing is forgotten.
        let mut st = ComponentRouter { indexed: false, ..Default::default() };
        assert!(event(&mut st, 0, "summaryState", 1.0, t0));
        assert!(event(&mut st, 0, "heartbeat", 2.0, minutes(600)));
        assert_eq!(st.history(0).len(), 2);
    }

    #[test]
    fn indices_are_capped_keeping_the_most_recently_seen() {
        let mut st = ComponentRouter { indexed: true, ..Default::default() };
        let t0 = Instant::now();
        let n = MAX_INDICES as i64 + 10;
        for i in 0..n {
            assert!(event(&mut st, 100_000 + i, "state", 1.0, t0 + Duration::from_millis(i as u64)));
        }
        assert_eq!(st.indices.len(), MAX_INDICES);
        assert!((0..10).all(|i| !st.indices.contains_key(&(100_000 + i))));
        assert!(st.indices.contains_key(&(100_000 + n - 1)));
        assert_eq!(st.history(0).len(), MAX_INDICES);
    }

    #[test]
    fn a_lagging_subscriber_loses_telemetry_first_and_its_queue_stays_bounded() {
        let mut st = ComponentRouter::default();
        let (s, mut rx) = sub(0, true, SUB_QUEUE);
        st.subs.push(s);
        let tel = msg(1, "position", TopicKind::TELEMETRY);
        let ev = msg(1, "state", TopicKind::EVENT);
        for _ in 0..TELEMETRY_BACKLOG {
            assert_eq!(st.route("Script", &tel, false), Routed { delivered: true, dropped: 0 });
        }
        assert_eq!(st.route("Script", &tel, false), Routed { delivered: false, dropped: 1 });
        assert!(st.subs[0].lagging);
        // Events still fit, until the queue is full.
        for _ in TELEMETRY_BACKLOG..SUB_QUEUE {
            assert_eq!(st.route("Script", &ev, false), Routed { delivered: true, dropped: 0 });
        }
        assert_eq!(st.route("Script", &ev, false), Routed { delivered: false, dropped: 1 });
        assert_eq!(st.subs[0].backlog(), SUB_QUEUE);
        assert_eq!(st.subs[0].queue.capacity(), 0);
        // Once it reads again, it gets samples again.
        while rx.try_recv().is_ok() {}
        assert_eq!(st.route("Script", &tel, false), Routed { delivered: true, dropped: 0 });
        assert!(!st.subs[0].lagging);
        // The room made for the history does not count as a backlog.
        let (s, _history_rx) = sub(0, true, 100 + SUB_QUEUE);
        for _ in 0..100 {
            s.queue.try_send(ev.clone()).unwrap();
        }
        assert_eq!(s.backlog(), 0);
        // A closed subscriber is removed.
        drop(rx);
        assert_eq!(st.route("Script", &ev, false), Routed { delivered: false, dropped: 0 });
        assert!(st.subs.is_empty());
    }

    #[test]
    fn a_subscription_without_history_gets_only_live_samples() {
        let mut st = ComponentRouter { indexed: true, ..Default::default() };
        let (all, mut all_rx) = sub(0, false, 16);
        let (one, mut one_rx) = sub(7, true, 16);
        st.subs.push(all);
        st.subs.push(one);
        let old = msg(7, "heartbeat", TopicKind::EVENT);
        st.route("Script", &old, true);
        let live = msg(7, "heartbeat", TopicKind::EVENT);
        st.route("Script", &live, false);
        assert_eq!(all_rx.try_recv().unwrap().sample.seq, live.sample.seq);
        assert!(all_rx.try_recv().is_err());
        assert_eq!(one_rx.try_recv().unwrap().sample.seq, old.sample.seq);
        assert_eq!(one_rx.try_recv().unwrap().sample.seq, live.sample.seq);
    }
}
