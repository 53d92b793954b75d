//! The read loop: one thread, one [`TopicConsumer`] for every topic of every served component.
//!
//! The loop finds the topics (the broker's topic list, read again every
//! [`KafkaConfig::topic_refresh`](super::KafkaConfig::topic_refresh) and when a component is
//! first subscribed), starts each at its late-joiner offset, and hands each record to its
//! topic's [`TopicRead`]: events are decoded and routed at once (the late-joiner part kept
//! raw until the end of the partition, newest per salIndex only), telemetry is throttled to
//! one decode per topic, salIndex and interval ([`Telemetry`]), acks go to the commands
//! waiting for them. Schemas are fetched from the registry off the loop; the records of a topic
//! whose schema is not available yet wait, in order, while the other topics go on.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use love_plugin_api::abi::{TopicKind, Value};
use tracing::{debug, error, info, warn};

use super::avro::{split_confluent, DecodePlan};
use super::commands::{AckMsg, AckWaiters};
use super::consumer::{Polled, StartAt, TopicConsumer};
use super::registry::RegistryClient;
use super::{classify, lock, parse_topic, Arrival, Comp, Inner, KafkaError, Pending, Warner};

/// The longest wait between two attempts to fetch a schema while the registry is unreachable.
pub const REGISTRY_RETRY_MAX: Duration = Duration::from_secs(30);

/// The first wait before fetching a schema again after the registry was unreachable.
const REGISTRY_RETRY_MIN: Duration = Duration::from_millis(500);

/// Records of one topic waiting for their schema: beyond this many the oldest are dropped
/// (counted as skipped), so a registry down for long does not hold memory without bound.
pub const HELD_MAX: usize = 10_000;

/// How long a poll of the consumer waits for records (and so how soon a request is seen).
const POLL: Duration = Duration::from_millis(100);

/// When the read loop next reads the broker's topic list. Soon after a subscription or after
/// new topics were found (a CSC creates all its topics when it starts), then less and less often
/// up to [`KafkaConfig::topic_refresh`](super::KafkaConfig::topic_refresh): a full topic list
/// costs the client tens of milliseconds at the summit's thousands of topics. Every half second
/// while a command waits for its `ackcmd` topic to appear.
#[derive(Debug)]
struct Discovery {
    next: Option<Instant>,
    wait: Duration,
    max: Duration,
}

impl Discovery {
    const FIRST: Duration = Duration::from_secs(1);
    const ACKS: Duration = Duration::from_millis(500);

    fn new(max: Duration) -> Discovery {
        Discovery { next: None, wait: Discovery::FIRST.min(max), max }
    }

    /// A component was subscribed: read the list now and soon again.
    fn wanted(&mut self, now: Instant) {
        self.next = Some(now);
        self.wait = Discovery::FIRST.min(self.max);
    }

    fn due(&self, now: Instant) -> bool {
        self.next.is_some_and(|t| now >= t)
    }

    /// The list was read at `now` (or could not be); `found_new` if it started topics.
    fn done(&mut self, now: Instant, found_new: bool, acks_waiting: bool) {
        if found_new {
            self.wait = Discovery::FIRST.min(self.max);
        }
        let wait = if acks_waiting { self.wait.min(Discovery::ACKS) } else { self.wait };
        self.next = Some(now + wait);
        self.wait = (self.wait * 2).min(self.max);
    }

    /// A command waits for an `ackcmd` topic that does not exist yet.
    fn acks_waiting(&mut self, now: Instant) {
        let soon = now + Discovery::ACKS;
        self.next = Some(self.next.map_or(soon, |t| t.min(soon)));
    }
}

/// Asked of the read loop.
pub(super) enum Control {
    /// A component was subscribed: read the topic list now.
    Discover,
    /// Read `comp`'s `ackcmd` from its end now (from its beginning once it exists, if it does
    /// not yet); `done` is sent when a command written after it cannot be missed.
    Acks { comp: Arc<Comp>, waiters: Arc<AckWaiters>, done: tokio::sync::oneshot::Sender<()> },
}

enum Role {
    Event,
    Telemetry,
    Ack(Arc<AckWaiters>),
}

/// One raw record waiting for the end of the late-joiner read.
struct HistoryEntry {
    offset: i64,
    plan: Arc<DecodePlan>,
    value: Vec<u8>,
}

/// The reading of one topic.
struct TopicRead {
    comp: Arc<Comp>,
    /// The short name (`summaryState`, `position`, `ackcmd`).
    topic: String,
    role: Role,
    /// The late-joiner read, until the end of the partition: the newest record per salIndex.
    history: Option<HashMap<i64, HistoryEntry>>,
    /// The offset where the late-joiner read ends (the high watermark when reading started;
    /// unknown: the end of the partition marks it).
    history_end: i64,
    /// Records waiting for their schema, in order, and where the end of the partition came
    /// among them.
    held: VecDeque<Held>,
    warner: Warner,
}

/// What waits behind a record whose schema is not available yet.
enum Held {
    Record(i64, Vec<u8>),
    /// The end of the partition was reached here (the end of the late-joiner read).
    End,
}

/// What a schema lookup found.
enum Lookup {
    Ready(Arc<DecodePlan>),
    /// Not yet: the registry is being asked, or could not be reached (why, when known).
    Wait(Option<String>),
    /// Bad value or schema id: skip the record.
    Bad(String),
}

enum Asked {
    InFlight,
    Unavailable { retry_at: Instant, wait: Duration, why: String },
    Bad { until: Instant, why: String },
}

/// Schemas fetched from the registry on the runtime, so the loop never waits on HTTP.
struct Schemas {
    registry: Arc<RegistryClient>,
    runtime: tokio::runtime::Handle,
    asked: Arc<Mutex<HashMap<i32, Asked>>>,
}

impl Schemas {
    fn lookup(&self, value: &[u8]) -> Lookup {
        let id = match split_confluent(value) {
            Ok((id, _)) => id,
            Err(e) => return Lookup::Bad(e.to_string()),
        };
        if let Some(p) = self.registry.cached(id) {
            return Lookup::Ready(p);
        }
        let now = Instant::now();
        let mut asked = lock(&self.asked);
        let wait = match asked.get(&id) {
            Some(Asked::InFlight) => return Lookup::Wait(None),
            Some(Asked::Unavailable { retry_at, why, .. }) if now < *retry_at => {
                return Lookup::Wait(Some(why.clone()))
            }
            Some(Asked::Bad { until, why }) if now < *until => return Lookup::Bad(why.clone()),
            Some(Asked::Unavailable { wait, .. }) => *wait,
            _ => REGISTRY_RETRY_MIN,
        };
        asked.insert(id, Asked::InFlight);
        let (registry, book) = (self.registry.clone(), self.asked.clone());
        self.runtime.spawn(async move {
            let outcome = registry.plan(id).await;
            let mut asked = lock(&book);
            match outcome {
                Ok(_) => {
                    asked.remove(&id);
                }
                Err(KafkaError::RegistryUnavailable(why)) => {
                    let next = (wait * 2).clamp(REGISTRY_RETRY_MIN, REGISTRY_RETRY_MAX);
                    asked.insert(id, Asked::Unavailable { retry_at: Instant::now() + wait, wait: next, why });
                }
                Err(e) => {
                    let until = Instant::now() + super::registry::NEGATIVE_TTL;
                    asked.insert(id, Asked::Bad { until, why: e.to_string() });
                }
            }
        });
        Lookup::Wait(None)
    }
}

/// The read loop's state.
pub(super) struct ReadLoop {
    inner: Arc<Inner>,
    consumer: TopicConsumer,
    control: Receiver<Control>,
    reads: HashMap<String, TopicRead>,
    /// Topics with records waiting for a schema.
    holding: HashSet<String>,
    /// `ackcmd` topics to read from their beginning once they exist.
    acks_wanted: HashMap<String, (Arc<Comp>, Arc<AckWaiters>)>,
    schemas: Schemas,
    discovery: Discovery,
    discovery_failed: bool,
    stopping: Arc<AtomicBool>,
}

impl ReadLoop {
    pub(super) fn new(inner: Arc<Inner>, consumer: TopicConsumer, control: Receiver<Control>) -> ReadLoop {
        let stopping = Arc::new(AtomicBool::new(false));
        let flag = stopping.clone();
        let mut shutdown = inner.shutdown.clone();
        inner.runtime.spawn(async move {
            shutdown.wait().await;
            flag.store(true, Ordering::SeqCst);
        });
        let schemas =
            Schemas { registry: inner.registry.clone(), runtime: inner.runtime.clone(), asked: Default::default() };
        let discovery = Discovery::new(inner.config.topic_refresh);
        ReadLoop {
            inner,
            consumer,
            control,
            reads: HashMap::new(),
            holding: HashSet::new(),
            acks_wanted: HashMap::new(),
            schemas,
            discovery,
            discovery_failed: false,
            stopping,
        }
    }

    /// Run on a thread of its own until the host stops.
    pub(super) fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new().name("kafka-read".into()).spawn(move || self.run())
    }

    fn run(mut self) {
        while !self.stopping.load(Ordering::Relaxed) {
            // A bug in the handling of one batch must not stop every stream: it is logged and
            // the loop goes on with the next.
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.step()));
            if step.is_err() {
                error!("kafka: the read loop panicked on a batch; going on with the next");
            }
        }
        debug!("kafka: read loop stopped");
    }

    fn step(&mut self) {
        loop {
            match self.control.try_recv() {
                Ok(Control::Discover) => self.discovery.wanted(Instant::now()),
                Ok(Control::Acks { comp, waiters, done }) => {
                    self.start_acks(comp, waiters);
                    let _ = done.send(());
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.stopping.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
        if self.discovery.due(Instant::now()) {
            let found_new = self.discover();
            self.discovery.done(Instant::now(), found_new, !self.acks_wanted.is_empty());
        }
        let ReadLoop { consumer, reads, holding, schemas, inner, .. } = self;
        consumer.poll(POLL, |p| match p {
            Polled::Record { topic, offset, value } => {
                if let Some(r) = reads.get_mut(topic) {
                    r.record(inner, schemas, holding, topic, offset, value);
                }
            }
            Polled::End { topic } => {
                if let Some(r) = reads.get_mut(topic) {
                    r.end(inner, topic);
                }
            }
            Polled::Error { topic, error } => match reads.get_mut(topic) {
                Some(r) => r.warner.note(topic, &error),
                None => debug!(topic, "kafka: {error}"),
            },
        });
        self.release_held();
    }

    /// Read the broker's topic list and start the topics of the subscribed components; whether
    /// any was started.
    fn discover(&mut self) -> bool {
        let wanted: Vec<Arc<Comp>> =
            lock(&self.inner.comps).values().filter(|c| c.subscribed.load(Ordering::Relaxed)).cloned().collect();
        if wanted.is_empty() && self.acks_wanted.is_empty() {
            return false;
        }
        let names = match self.consumer.topic_names(Duration::from_secs(5)) {
            Ok(n) => {
                if std::mem::take(&mut self.discovery_failed) {
                    info!("kafka: broker reachable again");
                }
                self.inner.ready.store(true, Ordering::Relaxed);
                n
            }
            Err(e) => {
                if !std::mem::replace(&mut self.discovery_failed, true) {
                    warn!("kafka: cannot list topics: {e}");
                }
                self.inner.ready.store(false, Ordering::Relaxed);
                return false;
            }
        };
        let prefix = format!("lsst.{}.", self.inner.config.topic_subname);
        let mut new = Vec::new();
        let mut started_any = false;
        for full in names {
            if let Some((comp, waiters)) = self.acks_wanted.remove(&full) {
                started_any |= self.start(&full, StartAt::Beginning, comp, "ackcmd", Role::Ack(waiters), i64::MAX);
                continue;
            }
            let Some((cname, sal)) = parse_topic(&prefix, &full) else { continue };
            let Some(comp) = wanted.iter().find(|c| c.name == cname) else { continue };
            let Some((kind, short)) = classify(sal) else { continue };
            if !self.consumer.is_reading(&full) {
                new.push((full.clone(), comp.clone(), kind, short.to_string(), sal.to_string()));
            }
        }
        // Where each event topic's late-joiner read starts and ends, for all of them at once.
        let events: Vec<&str> = new.iter().filter(|n| n.2 == TopicKind::EVENT).map(|n| n.0.as_str()).collect();
        let marks = if events.is_empty() {
            HashMap::new()
        } else {
            self.consumer.watermarks(&events, Duration::from_secs(10)).unwrap_or_else(|e| {
                warn!("kafka: {e}; the late-joiner reads end where the partitions end");
                HashMap::new()
            })
        };
        for (full, comp, kind, short, sal) in new {
            let (at, role, end) = if kind == TopicKind::EVENT {
                let back =
                    if comp.history_indexed { self.inner.config.max_history_read_of(&comp.name).max(1) } else { 1 };
                match marks.get(&full) {
                    Some(&(low, high)) => (StartAt::Offset((high - back).max(low)), Role::Event, high),
                    None => (StartAt::Tail(back), Role::Event, i64::MAX),
                }
            } else {
                (StartAt::End, Role::Telemetry, 0)
            };
            if self.start(&full, at, comp.clone(), &short, role, end) {
                lock(&comp.started).insert(sal);
                started_any = true;
            }
        }
        started_any
    }

    fn start(&mut self, full: &str, at: StartAt, comp: Arc<Comp>, topic: &str, role: Role, history_end: i64) -> bool {
        if let Err(e) = self.consumer.start(full, at) {
            warn!(topic = full, "kafka: {e}");
            return false;
        }
        debug!(topic = full, ?at, "kafka: reading");
        let history = match at {
            StartAt::Offset(o) => matches!(role, Role::Event) && o < history_end,
            StartAt::Tail(_) => matches!(role, Role::Event),
            StartAt::Beginning | StartAt::End => false,
        }
        .then(HashMap::new);
        let read = TopicRead {
            comp,
            topic: topic.to_string(),
            role,
            history,
            history_end,
            held: VecDeque::new(),
            warner: Warner::new(),
        };
        self.reads.insert(full.to_string(), read);
        true
    }

    fn start_acks(&mut self, comp: Arc<Comp>, waiters: Arc<AckWaiters>) {
        let full = self.inner.config.topic_name(&comp.name, "ackcmd");
        if self.consumer.is_reading(&full) {
            return;
        }
        match self.consumer.high_watermark(&full, Duration::from_secs(5)) {
            Ok(high) => {
                self.start(&full, StartAt::Offset(high), comp, "ackcmd", Role::Ack(waiters), 0);
            }
            Err(e) => {
                // Created by the controller's first ack: read it all once it appears.
                debug!(topic = %full, "kafka: ackcmd not readable yet ({e}); read from its beginning once it exists");
                self.acks_wanted.insert(full, (comp, waiters));
                self.discovery.acks_waiting(Instant::now());
            }
        }
    }

    /// Hand over the held records whose schema has come (or proved bad).
    fn release_held(&mut self) {
        if self.holding.is_empty() {
            return;
        }
        let topics: Vec<String> = self.holding.iter().cloned().collect();
        for full in topics {
            let Some(r) = self.reads.get_mut(&full) else {
                self.holding.remove(&full);
                continue;
            };
            while let Some(front) = r.held.front() {
                let lookup = match front {
                    Held::Record(_, value) => self.schemas.lookup(value),
                    Held::End => Lookup::Wait(None),
                };
                match (r.held.pop_front(), lookup) {
                    (Some(Held::End), _) => r.flush_history(&self.inner, &full),
                    (Some(Held::Record(offset, value)), Lookup::Wait(_)) => {
                        r.held.push_front(Held::Record(offset, value));
                        break;
                    }
                    (Some(Held::Record(offset, _)), Lookup::Bad(why)) => r.skip(&self.inner, &full, offset, &why),
                    (Some(Held::Record(offset, value)), Lookup::Ready(plan)) => {
                        r.process(&self.inner, &full, offset, plan, &value)
                    }
                    (None, _) => break,
                }
            }
            if r.held.is_empty() {
                self.holding.remove(&full);
            }
        }
    }
}

impl TopicRead {
    fn record(
        &mut self,
        inner: &Inner,
        schemas: &Schemas,
        holding: &mut HashSet<String>,
        full: &str,
        offset: i64,
        value: Option<&[u8]>,
    ) {
        let Some(value) = value else {
            self.skip(inner, full, offset, "record has no value");
            return;
        };
        if !self.held.is_empty() {
            self.hold(inner, full, offset, value);
            return;
        }
        match schemas.lookup(value) {
            Lookup::Ready(plan) => self.process(inner, full, offset, plan, value),
            Lookup::Bad(why) => self.skip(inner, full, offset, &why),
            Lookup::Wait(why) => {
                if let Some(why) = why {
                    self.warner.retry(full, offset, &why, REGISTRY_RETRY_MIN);
                }
                holding.insert(full.to_string());
                self.hold(inner, full, offset, value);
            }
        }
    }

    fn hold(&mut self, inner: &Inner, full: &str, offset: i64, value: &[u8]) {
        if self.held.len() >= HELD_MAX {
            let oldest = self.held.iter().position(|h| matches!(h, Held::Record(..)));
            if let Some(Held::Record(old, _)) = oldest.and_then(|i| self.held.remove(i)) {
                self.skip(inner, full, old, "too many records waiting for the schema registry");
            }
        }
        self.held.push_back(Held::Record(offset, value.to_vec()));
    }

    fn skip(&mut self, inner: &Inner, full: &str, offset: i64, why: &str) {
        inner.counters.skipped.fetch_add(1, Ordering::Relaxed);
        self.warner.warn(full, offset, why);
    }

    fn process(&mut self, inner: &Inner, full: &str, offset: i64, plan: Arc<DecodePlan>, value: &[u8]) {
        let body = &value[5..];
        match &self.role {
            Role::Event => {
                if offset >= self.history_end {
                    self.flush_history(inner, full);
                }
                if let Some(h) = self.history.as_mut() {
                    match plan.peek_sal_index(body) {
                        Ok(idx) => {
                            h.insert(idx, HistoryEntry { offset, plan, value: value.to_vec() });
                        }
                        Err(e) => self.skip(inner, full, offset, &e.to_string()),
                    }
                    if offset + 1 >= self.history_end {
                        self.flush_history(inner, full);
                    }
                    return;
                }
                match plan.decode(body) {
                    Ok(d) => {
                        inner.counters.events_decoded.fetch_add(1, Ordering::Relaxed);
                        inner.accept(&self.comp, &self.topic, TopicKind::EVENT, d, Arrival::now(false));
                    }
                    Err(e) => self.skip(inner, full, offset, &e.to_string()),
                }
            }
            Role::Telemetry => {
                inner.counters.telemetry_received.fetch_add(1, Ordering::Relaxed);
                let idx = match plan.peek_sal_index(body) {
                    Ok(i) => i,
                    Err(e) => return self.skip(inner, full, offset, &e.to_string()),
                };
                let at = Arrival::now(false);
                let now = Instant::now();
                let due = {
                    let mut st = lock(&self.comp.state);
                    let key = (self.topic.clone(), idx);
                    st.telemetry_due(&key, now, inner.config.telemetry_interval) || {
                        st.telemetry.insert(key, Pending { plan: plan.clone(), value: value.to_vec(), offset, at });
                        false
                    }
                };
                if due {
                    match plan.decode(body) {
                        Ok(d) => {
                            inner.counters.telemetry_decoded.fetch_add(1, Ordering::Relaxed);
                            inner.accept(&self.comp, &self.topic, TopicKind::TELEMETRY, d, at);
                        }
                        Err(e) => self.skip(inner, full, offset, &e.to_string()),
                    }
                }
            }
            Role::Ack(waiters) => {
                let d = match plan.decode(body) {
                    Ok(d) => d,
                    Err(e) => return self.warner.warn(full, offset, &e.to_string()),
                };
                let get = |name: &str| d.fields.iter().find(|f| f.name.as_str() == name).map(|f| &f.value);
                let int = |name: &str| match get(name) {
                    Some(Value::Int(i)) => *i,
                    _ => 0,
                };
                let text = |name: &str| match get(name) {
                    Some(Value::Str(s)) => s.to_string(),
                    _ => String::new(),
                };
                let key = (d.stamps.seq_num, text("identity"), int("origin"));
                let msg = AckMsg {
                    code: int("ack"),
                    result: text("result"),
                    timeout: match get("timeout") {
                        Some(Value::Float(f)) => *f,
                        _ => 0.0,
                    },
                };
                if let Some(tx) = lock(&waiters.map).get(&key) {
                    let _ = tx.send(msg);
                }
            }
        }
    }

    /// The end of the partition: the late-joiner read is complete, its newest record of each
    /// salIndex is decoded and routed (oldest first), as history.
    fn end(&mut self, inner: &Inner, full: &str) {
        if self.history.is_none() {
            return;
        }
        if self.held.is_empty() {
            self.flush_history(inner, full);
        } else {
            self.held.push_back(Held::End);
        }
    }

    fn flush_history(&mut self, inner: &Inner, full: &str) {
        let Some(h) = self.history.take() else { return };
        let mut entries: Vec<HistoryEntry> = h.into_values().collect();
        entries.sort_by_key(|e| e.offset);
        let at = Arrival::now(true);
        for e in entries {
            match e.plan.decode(&e.value[5..]) {
                Ok(d) => {
                    inner.counters.events_decoded.fetch_add(1, Ordering::Relaxed);
                    inner.accept(&self.comp, &self.topic, TopicKind::EVENT, d, at);
                }
                Err(err) => self.skip(inner, full, e.offset, &err.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_topic_list_is_read_soon_after_a_subscription_then_less_often_up_to_the_refresh() {
        let t0 = Instant::now();
        let mut d = Discovery::new(Duration::from_secs(30));
        assert!(!d.due(t0), "nothing is read before a component is subscribed");
        d.wanted(t0);
        assert!(d.due(t0));
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..7 {
            d.done(now, false, false);
            let next = d.next.unwrap();
            assert!(!d.due(next - Duration::from_millis(1)) && d.due(next));
            waits.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        // New topics found: a CSC is creating its topics, look again soon.
        d.done(now, true, false);
        assert_eq!(d.next.unwrap() - now, Duration::from_secs(1));
        // A new subscription starts over.
        d.done(now, false, false);
        d.wanted(now);
        assert!(d.due(now));
    }

    #[test]
    fn while_a_command_waits_for_its_ackcmd_topic_the_list_is_read_every_half_second() {
        let t0 = Instant::now();
        let mut d = Discovery::new(Duration::from_secs(30));
        d.wanted(t0);
        d.done(t0, false, false);
        d.done(t0, false, false);
        let late = d.next.unwrap();
        assert!(late - t0 >= Duration::from_secs(2));
        d.acks_waiting(t0);
        assert_eq!(d.next.unwrap() - t0, Discovery::ACKS);
        d.done(t0, false, true);
        assert_eq!(d.next.unwrap() - t0, Discovery::ACKS);
        // A refresh shorter than the first wait is kept.
        let mut short = Discovery::new(Duration::from_millis(250));
        short.wanted(t0);
        short.done(t0, false, false);
        assert_eq!(short.next.unwrap() - t0, Duration::from_millis(250));
    }

    use super::*;

    #[test]
    fn the_registry_wait_doubles_up_to_its_bound() {
        let mut w = REGISTRY_RETRY_MIN;
        for _ in 0..20 {
            let next = (w * 2).clamp(REGISTRY_RETRY_MIN, REGISTRY_RETRY_MAX);
            assert!(next >= w && next <= REGISTRY_RETRY_MAX);
            w = next;
        }
        assert_eq!(w, REGISTRY_RETRY_MAX);
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_waited_for_a_bad_value_skipped() {
        let registry = Arc::new(RegistryClient::new("http://127.0.0.1:1").unwrap());
        let schemas = Schemas { registry, runtime: tokio::runtime::Handle::current(), asked: Default::default() };
        let value = [0u8, 0, 0, 0, 7, 1, 2];
        assert!(matches!(schemas.lookup(&value), Lookup::Wait(None)));
        let mut why = None;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Lookup::Wait(Some(w)) = schemas.lookup(&value) {
                why = Some(w);
                break;
            }
        }
        assert!(why.is_some(), "the unreachable registry is said");
        assert!(matches!(schemas.lookup(b"{}"), Lookup::Bad(_)));
    }
}
