//! The `kafka` SAL source: today's SAL transport (ts_salobj 7 and later), read and command.
//!
//! # Wire format (as salobj writes it)
//! - One topic per SAL topic, one partition: `lsst.<LSST_TOPIC_SUBNAME>.<Component>.<sal_name>`
//!   with sal_name `logevent_<name>`, `command_<name>`, the telemetry name, or `ackcmd`.
//! - Values in Confluent wire format (byte 0, a 4-byte big-endian schema id, Avro binary); the
//!   writer schema comes from the schema registry (`GET /schemas/ids/{id}`, cached, see
//!   [`registry`]). Record fields: `salIndex` (indexed components), the eight private fields,
//!   then the topic's fields in ts_xml order ([`avro`]).
//! - Keys: `""` for telemetry, `{"name": ..., "index": ..., "topic": ...}` otherwise
//!   ([`writer::record_key`]).
//!
//! # Reading
//! One [`consumer`] reads every topic: one librdkafka client per
//! [`KafkaConfig::topics_per_client`] topics, each with one connection and one Fetch request per
//! broker for all its partitions, as salobj's readers. Partitions are started at
//! explicit offsets (no consumer group: nothing to join, nothing to commit). When a component is
//! first subscribed, the broker's topic list is read and every existing `lsst.<sub>.<Component>.*`
//! topic (commands and `ackcmd` excepted) is started; the list is read again every
//! [`KafkaConfig::topic_refresh`], so topics created later are picked up. One thread runs the
//! read loop ([`read`]).
//! - Events are decoded as they arrive. Each event topic starts with salobj's late-joiner read:
//!   the last record, or for indexed components the last `LSST_MAX_HISTORY_READ`, keeping the
//!   newest sample of each salIndex (only those are decoded, at the end of the partition). The
//!   latest event of each (topic, salIndex) is kept, so a later subscriber gets the current
//!   state first.
//! - **Telemetry is fresh and decoded at a bounded rate.** A sample of a (topic, salIndex) is
//!   decoded and delivered at once when the last one went out at least
//!   [`KafkaConfig::telemetry_interval`] ago (default 200 ms, `LOVE_KAFKA_TELEMETRY_INTERVAL_MS`);
//!   one arriving sooner waits as raw bytes (a newer one replaces it) and goes out at the next
//!   interval. So a 1 Hz topic is delivered as it arrives, a 50 Hz topic costs at most about two
//!   decodes per interval, and what a producer holds at its send tick is never older than the
//!   interval behind the newest sample published.
//! - Out-of-order samples (a `private_sndStamp` older than the last delivered one of the same
//!   topic and salIndex) are dropped, as salobj does.
//! - Index 0 on an indexed component means every index. A subscription without history (the
//!   scriptqueue's to every `Script`) gets neither the late-joiner read nor the kept events.
//! - What is kept per salIndex (the latest events, the last `private_sndStamp` of each topic) is
//!   forgotten once the index has been silent for [`INDEX_TTL`], and at most [`MAX_INDICES`]
//!   indices are kept per component: `Script` gets a new salIndex for every run.
//! - Each subscriber has a bounded queue ([`SUB_QUEUE`]) in front of its [`SampleTx`]; for one
//!   that does not keep up (a producer in restart backoff), telemetry is dropped first
//!   ([`TELEMETRY_BACKLOG`]), events only when the queue is full (counted as `dropped_lagging`).
//! - Bad data is never fatal: an unknown schema id, a value that does not decode, a value that
//!   is not Confluent wire format are logged (with topic and offset, rate-limited per topic) and
//!   skipped. A record whose schema cannot be fetched because the registry is unreachable is not
//!   skipped: it and the records after it on its topic wait (at most [`HELD_MAX`]) and are read
//!   once the registry answers, retried with a backoff up to [`REGISTRY_RETRY_MAX`]; the other
//!   topics go on.
//!
//! # Commands
//! [`SalSource::command`] writes `..command_<name>` as a salobj remote does (its own
//! `private_seqNum` range per command topic, `private_identity`, `private_origin`), then reads
//! the component's `..ackcmd` through the same consumer (started at its high watermark before
//! the first command is written) and
//! matches acks on (`private_seqNum`, `identity`, `origin`). 301 INPROGRESS extends the wait by
//! the ack's `timeout`; the final ack (303 COMPLETE or a negative code) is returned, or -304
//! TIMEOUT when the wait ends.
//!
//! # Client
//! Reading: librdkafka through the rdkafka crate, with salobj's librdkafka settings. Commands
//! are written with rskafka (pure Rust, tokio-native; SASL PLAIN / SCRAM and TLS through
//! rustls), which also checks at start that the broker can be reached.

pub mod avro;
mod commands;
pub mod config;
/// The partition consumer, in a crate of its own (its librdkafka calls are unsafe code).
pub use love_kafka_partitions as consumer;
mod read;
pub mod registry;
pub mod schema_catalog;
pub mod writer;

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use love_plugin_api::abi::{Field, InputKind, InputMsg, Sample, TopicKind, Value};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use tracing::{debug, info, warn};

pub use config::{KafkaConfig, SaslSettings};
pub use registry::RegistryClient;
pub use rskafka::client::Client as KafkaClient;
pub use writer::{create_component_topics, current_tai, record_key, sal_name, SalWriter, WriteOptions, Written};

use self::avro::{split_confluent, DecodePlan, Decoded};
use self::commands::AckWaiters;
pub use self::commands::DEFAULT_COMMAND_TIMEOUT;
use super::catalog::TopicCatalog;
use super::router::ComponentRouter;
pub use super::router::{INDEX_TTL, MAX_INDICES, SUB_QUEUE, TELEMETRY_BACKLOG};
use super::{CommandAck, SalCommand, SalError, SalSource, SampleTx};
use crate::locks::lock;
use crate::shutdown::Shutdown;

/// Errors of the Kafka source.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KafkaError {
    /// Bad or missing configuration.
    #[error("kafka configuration: {0}")]
    Config(String),
    /// The broker or the client.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The schema registry answered, but not with what was needed.
    #[error("schema registry: {0}")]
    Registry(String),
    /// The schema registry could not be reached.
    #[error("schema registry unreachable: {0}")]
    RegistryUnavailable(String),
    /// A value could not be encoded.
    #[error("encode: {0}")]
    Encode(String),
    /// TLS setup.
    #[error("kafka TLS: {0}")]
    Tls(String),
}

impl From<consumer::KafkaError> for KafkaError {
    fn from(e: consumer::KafkaError) -> KafkaError {
        match e {
            consumer::KafkaError::Config(m) => KafkaError::Config(m),
            consumer::KafkaError::Kafka(m) => KafkaError::Kafka(m),
        }
    }
}

impl KafkaError {
    /// The same error with `note` appended to its text.
    pub(crate) fn with_note(self, note: &str) -> KafkaError {
        match self {
            KafkaError::Config(m) => KafkaError::Config(m + note),
            KafkaError::Kafka(m) => KafkaError::Kafka(m + note),
            other => other,
        }
    }
}

fn tls_config(config: &KafkaConfig) -> Result<rustls::ClientConfig, KafkaError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = &config.ssl_ca_location {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| KafkaError::Tls(format!("cannot read CA certificates from {path}: {e}")))?;
        for cert in certs {
            roots.add(cert).map_err(|e| KafkaError::Tls(format!("invalid certificate in {path}: {e}")))?;
        }
    } else {
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
    }
    if roots.is_empty() {
        return Err(KafkaError::Tls("no CA certificate (system roots empty and no ssl.ca.location)".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| KafkaError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Connect a Kafka client as `config` says (brokers, TLS, SASL).
pub async fn connect(config: &KafkaConfig) -> Result<Client, KafkaError> {
    if config.brokers.is_empty() {
        return Err(KafkaError::Config("no broker address (LSST_KAFKA_BROKER_ADDR)".into()));
    }
    let mut builder = ClientBuilder::new(config.brokers.clone())
        .client_id(config.client_id.clone())
        .max_message_size(config.max_message_size)
        .backoff_config(rskafka::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
            deadline: Some(Duration::from_secs(30)),
        });
    if config.security_protocol.ends_with("SSL") {
        builder = builder.tls_config(Arc::new(tls_config(config)?));
    }
    if config.security_protocol.starts_with("SASL") {
        let s = config.sasl.as_ref().ok_or_else(|| KafkaError::Config("SASL protocol without credentials".into()))?;
        let creds = Credentials::new(s.username.clone(), s.password.clone());
        builder = builder.sasl_config(match s.mechanism.to_ascii_uppercase().as_str() {
            "PLAIN" => SaslConfig::Plain(creds),
            "SCRAM-SHA-256" => SaslConfig::ScramSha256(creds),
            _ => SaslConfig::ScramSha512(creds),
        });
    }
    builder.build().await.map_err(|e| KafkaError::Kafka(format!("connect to {}: {e}", config.brokers.join(","))))
}

/// Counters, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KafkaStats {
    /// Event samples decoded.
    pub events_decoded: u64,
    /// Telemetry messages received (raw, not decoded).
    pub telemetry_received: u64,
    /// Telemetry samples decoded (at most one per topic, salIndex and interval).
    pub telemetry_decoded: u64,
    /// Samples delivered to at least one subscriber queue.
    pub delivered: u64,
    /// Samples dropped as out of order.
    pub out_of_order: u64,
    /// Records skipped (bad header, unknown schema, undecodable).
    pub skipped: u64,
    /// Samples not queued to a subscriber that is not keeping up (one per subscriber).
    pub dropped_lagging: u64,
    /// Fetch requests the reading sent, over all brokers (librdkafka's statistics, updated
    /// every `statistics.interval.ms`; 0 when a configuration file does not turn them on).
    pub fetch_requests: u64,
    /// Brokers the reading holds a connection to (same source).
    pub broker_connections: u64,
    /// Topics being read.
    pub topics_read: u64,
}

#[derive(Default)]
struct Counters {
    events_decoded: AtomicU64,
    telemetry_received: AtomicU64,
    telemetry_decoded: AtomicU64,
    delivered: AtomicU64,
    out_of_order: AtomicU64,
    skipped: AtomicU64,
    dropped_lagging: AtomicU64,
}

pub use read::{HELD_MAX, REGISTRY_RETRY_MAX};

/// When and how a sample arrived.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    /// Unix time.
    received: f64,
    /// TAI, the sample's `private_rcvStamp`.
    rcv_tai: f64,
    /// Whether it comes from the late-joiner read (history), not live.
    historical: bool,
}

impl Arrival {
    fn now(historical: bool) -> Arrival {
        Arrival { received: crate::clock::unix_now(), rcv_tai: current_tai(), historical }
    }
}

/// The latest raw telemetry message of one (topic, salIndex), not decoded yet.
struct Pending {
    plan: Arc<DecodePlan>,
    value: Vec<u8>,
    offset: i64,
    at: Arrival,
}

#[derive(Default)]
struct CompState {
    /// Subscribers, history and the out-of-order check.
    routes: ComponentRouter,
    /// The newest telemetry of each (topic, salIndex) not delivered yet.
    telemetry: HashMap<(String, i64), Pending>,
    /// When telemetry of each (topic, salIndex) was last decoded and routed.
    telemetry_sent: HashMap<(String, i64), Instant>,
}

impl CompState {
    /// Whether a telemetry sample of `key` arriving at `now` is decoded and routed at once: when
    /// none is waiting and the last went out at least `interval` ago (then it counts as sent
    /// now). Otherwise it waits for the next telemetry tick, replacing any older one waiting.
    fn telemetry_due(&mut self, key: &(String, i64), now: Instant, interval: Duration) -> bool {
        if self.telemetry.contains_key(key) {
            return false;
        }
        match self.telemetry_sent.get_mut(key) {
            Some(last) if now.saturating_duration_since(*last) < interval => false,
            Some(last) => {
                *last = now;
                true
            }
            None => {
                self.telemetry_sent.insert(key.clone(), now);
                true
            }
        }
    }

    /// The telemetry of `index` (0: every index) waiting, taken to be sent at `now` (a
    /// producer's send tick is due).
    fn take_telemetry_of(&mut self, index: i64, now: Instant) -> Vec<((String, i64), Pending)> {
        let keys: Vec<(String, i64)> =
            self.telemetry.keys().filter(|(_, i)| index == 0 || *i == index).cloned().collect();
        let mut v = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(p) = self.telemetry.remove(&key) {
                self.telemetry_sent.insert(key.clone(), now);
                v.push((key, p));
            }
        }
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The telemetry waiting, taken to be sent at `now`; what went out long ago is forgotten.
    fn take_telemetry(&mut self, now: Instant, interval: Duration) -> Vec<((String, i64), Pending)> {
        let pending = std::mem::take(&mut self.telemetry);
        self.telemetry_sent.retain(|_, t| now.saturating_duration_since(*t) < interval * 4);
        for key in pending.keys() {
            self.telemetry_sent.insert(key.clone(), now);
        }
        let mut v: Vec<_> = pending.into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

struct Comp {
    name: String,
    /// Whether the late-joiner read must go back further than one record.
    history_indexed: bool,
    subscribed: AtomicBool,
    state: Mutex<CompState>,
    started: Mutex<HashSet<String>>,
    acks: tokio::sync::OnceCell<Arc<AckWaiters>>,
}

struct Inner {
    config: KafkaConfig,
    registry: Arc<RegistryClient>,
    catalog: Arc<TopicCatalog>,
    shutdown: Shutdown,
    runtime: tokio::runtime::Handle,
    comps: Mutex<HashMap<String, Arc<Comp>>>,
    /// Requests to the read loop.
    control: Mutex<std::sync::mpsc::Sender<read::Control>>,
    /// librdkafka's broker figures for the reading.
    figures: Arc<consumer::BrokerFigures>,
    ready: AtomicBool,
    counters: Counters,
    writer: SalWriter,
    cmd_seq: Mutex<HashMap<String, i64>>,
    /// Rate-limited warnings of the telemetry decoded on a producer's flush.
    flush_warners: Mutex<HashMap<String, Warner>>,
}

/// The Kafka SAL source.
pub struct KafkaSource {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource").field("brokers", &self.inner.config.brokers).finish()
    }
}

impl KafkaSource {
    /// Connect to the broker and start the background tasks (topic discovery, telemetry
    /// delivery). Must be called inside a tokio runtime. Fails only on configuration or when
    /// the broker cannot be reached at all; the registry is contacted lazily.
    pub async fn start(
        config: KafkaConfig,
        catalog: Arc<TopicCatalog>,
        shutdown: Shutdown,
    ) -> Result<Arc<KafkaSource>, KafkaError> {
        let registry = Arc::new(RegistryClient::new(&config.schema_registry_url)?);
        // The producer's settings are checked now (librdkafka refuses a key it does not know);
        // the producer itself is made at the first command.
        drop(writer::producer(&config).map_err(|e| e.with_note(&config.files.note()))?);
        let writer = SalWriter::new(None, None, registry.clone(), config.clone(), catalog.clone());
        let figures = Arc::new(consumer::BrokerFigures::default());
        let topics =
            consumer::TopicConsumer::new(&config.consumer_settings(), figures.clone(), config.topics_per_client)
                .map_err(|e| KafkaError::from(e).with_note(&config.files.note()))?;
        // The broker must answer once at start: a wrong address is a start-up error, not a host
        // that looks healthy and reads nothing.
        let topics = tokio::task::spawn_blocking(move || topics.topic_names(Duration::from_secs(10)).map(|_| topics))
            .await
            .map_err(|e| KafkaError::Kafka(format!("broker check: {e}")))?
            .map_err(|e| KafkaError::Kafka(format!("cannot reach the broker at {}: {e}", config.brokers.join(","))))?;
        let (control, requests) = std::sync::mpsc::channel();
        info!(brokers = %config.brokers.join(","), registry = %config.schema_registry_url, subname = %config.topic_subname, "kafka SAL source connected");
        let inner = Arc::new(Inner {
            config,
            registry,
            catalog,
            shutdown,
            runtime: tokio::runtime::Handle::current(),
            comps: Mutex::new(HashMap::new()),
            control: Mutex::new(control),
            figures,
            ready: AtomicBool::new(true),
            counters: Counters::default(),
            writer,
            cmd_seq: Mutex::new(HashMap::new()),
            flush_warners: Mutex::new(HashMap::new()),
        });
        read::ReadLoop::new(inner.clone(), topics, requests)
            .spawn()
            .map_err(|e| KafkaError::Kafka(format!("cannot start the read thread: {e}")))?;
        inner.runtime.spawn(telemetry_loop(inner.clone()));
        Ok(Arc::new(KafkaSource { inner }))
    }

    /// The counters so far.
    pub fn stats(&self) -> KafkaStats {
        let c = &self.inner.counters;
        KafkaStats {
            events_decoded: c.events_decoded.load(Ordering::Relaxed),
            telemetry_received: c.telemetry_received.load(Ordering::Relaxed),
            telemetry_decoded: c.telemetry_decoded.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            out_of_order: c.out_of_order.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            dropped_lagging: c.dropped_lagging.load(Ordering::Relaxed),
            fetch_requests: self.inner.figures.fetch_requests.load(Ordering::Relaxed),
            broker_connections: self.inner.figures.connections.load(Ordering::Relaxed),
            topics_read: self.inner.figures.topics.load(Ordering::Relaxed),
        }
    }

    /// The topics (full names) being read for `component`.
    pub fn reading(&self, component: &str) -> Vec<String> {
        let comp = lock(&self.inner.comps).get(component).cloned();
        let mut v: Vec<String> = comp
            .map(|c| lock(&c.started).iter().map(|s| self.inner.config.topic_name(component, s)).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The registry client (shared cache).
    pub fn registry(&self) -> &Arc<RegistryClient> {
        &self.inner.registry
    }
}

impl Inner {
    fn comp(&self, name: &str) -> Arc<Comp> {
        lock(&self.comps)
            .entry(name.to_string())
            .or_insert_with(|| {
                let indexed = self.catalog.component(name).map(|c| c.indexed).unwrap_or(true);
                Arc::new(Comp {
                    name: name.to_string(),
                    history_indexed: indexed,
                    subscribed: AtomicBool::new(false),
                    state: Mutex::new(CompState { routes: ComponentRouter::new(indexed), ..Default::default() }),
                    started: Mutex::new(HashSet::new()),
                    acks: tokio::sync::OnceCell::new(),
                })
            })
            .clone()
    }

    fn make_msg(&self, comp: &str, topic: &str, kind: TopicKind, d: Decoded, at: Arrival) -> Arc<InputMsg> {
        let mut stamps = d.stamps;
        stamps.rcv_stamp = at.rcv_tai;
        Arc::new(InputMsg {
            kind: InputKind::SAMPLE,
            sample: Sample {
                component: comp.into(),
                sal_index: d.sal_index,
                topic: topic.into(),
                kind,
                stamps,
                fields: d.fields,
                received: at.received,
                seq: super::next_seq(),
            },
            ..Default::default()
        })
    }

    /// Order check, event cache and routing of one decoded sample.
    /// Route a decoded sample; its `seq` unless it was dropped as out of order.
    fn accept(&self, comp: &Comp, topic: &str, kind: TopicKind, d: Decoded, at: Arrival) -> Option<u64> {
        let (snd, sal_index) = (d.stamps.snd_stamp, d.sal_index);
        let msg = self.make_msg(&comp.name, topic, kind, d, at);
        let published = lock(&comp.state).routes.publish(&comp.name, &msg, at.historical, true, Instant::now());
        if published.out_of_order {
            self.counters.out_of_order.fetch_add(1, Ordering::Relaxed);
            debug!(component = %comp.name, topic, sal_index, snd, "kafka: out-of-order sample dropped");
            return None;
        }
        let routed = published.routed;
        if routed.delivered {
            self.counters.delivered.fetch_add(1, Ordering::Relaxed);
        }
        if routed.dropped > 0 {
            self.counters.dropped_lagging.fetch_add(routed.dropped, Ordering::Relaxed);
        }
        Some(msg.sample.seq)
    }

    /// Decode and route held-back telemetry (`pending`); the highest `seq` routed.
    fn send_pending(
        &self,
        comp: &Comp,
        pending: Vec<((String, i64), Pending)>,
        warners: &mut HashMap<String, Warner>,
    ) -> Option<u64> {
        let mut top = None;
        for ((topic, _), p) in pending {
            match p.plan.decode(&p.value[5..]) {
                Ok(d) => {
                    self.counters.telemetry_decoded.fetch_add(1, Ordering::Relaxed);
                    top = top.max(self.accept(comp, &topic, TopicKind::TELEMETRY, d, p.at));
                }
                Err(e) => {
                    self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                    let full = self.config.topic_name(&comp.name, &topic);
                    warners.entry(full.clone()).or_insert_with(Warner::new).warn(&full, p.offset, &e.to_string());
                }
            }
        }
        top
    }

    fn next_cmd_seq(&self, topic: &str) -> i64 {
        let mut m = lock(&self.cmd_seq);
        let v = m.entry(topic.to_string()).or_insert_with(|| {
            use rand::Rng;
            rand::thread_rng().gen_range(1..i32::MAX as i64 / 2)
        });
        let seq = *v;
        *v = if seq >= i32::MAX as i64 { 1 } else { seq + 1 };
        seq
    }
}

/// A rate-limited warning per reader.
struct Warner {
    last: Option<Instant>,
    suppressed: u64,
}

impl Warner {
    fn new() -> Self {
        Warner { last: None, suppressed: 0 }
    }

    fn warn(&mut self, topic: &str, offset: i64, what: &str) {
        if self.limited() {
            return;
        }
        let suppressed = std::mem::take(&mut self.suppressed);
        warn!(topic, offset, suppressed, "kafka: record skipped: {what}");
    }

    /// A record that is not skipped but read again after `wait`.
    fn retry(&mut self, topic: &str, offset: i64, what: &str, wait: Duration) {
        if self.limited() {
            return;
        }
        let suppressed = std::mem::take(&mut self.suppressed);
        warn!(topic, offset, suppressed, retry_in = ?wait, "kafka: record not read yet: {what}");
    }

    /// An error the client reported about a topic.
    fn note(&mut self, topic: &str, error: &str) {
        if self.limited() {
            return;
        }
        let suppressed = std::mem::take(&mut self.suppressed);
        warn!(topic, suppressed, "kafka: {error}");
    }

    /// Whether this message is suppressed (counted); if not, the limit restarts now.
    fn limited(&mut self) -> bool {
        if self.last.map(|t| t.elapsed() < Duration::from_secs(10)).unwrap_or(false) {
            self.suppressed += 1;
            return true;
        }
        self.last = Some(Instant::now());
        false
    }
}

/// Split a `lsst.<sub>.<Component>.<sal_name>` topic name.
fn parse_topic<'a>(prefix: &str, name: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = name.strip_prefix(prefix)?;
    let (comp, sal) = rest.split_once('.')?;
    (!comp.is_empty() && !sal.is_empty()).then_some((comp, sal))
}

/// The kind and short name of a topic a reader serves (None: not read as samples).
fn classify(sal: &str) -> Option<(TopicKind, &str)> {
    if sal == "ackcmd" || sal.starts_with("command_") {
        None
    } else if let Some(ev) = sal.strip_prefix("logevent_") {
        Some((TopicKind::EVENT, ev))
    } else {
        Some((TopicKind::TELEMETRY, sal))
    }
}

async fn telemetry_loop(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.clone();
    let mut tick = tokio::time::interval(inner.config.telemetry_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warners: HashMap<String, Warner> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        let comps: Vec<Arc<Comp>> = lock(&inner.comps).values().cloned().collect();
        for comp in comps {
            let pending = lock(&comp.state).take_telemetry(Instant::now(), inner.config.telemetry_interval);
            inner.send_pending(&comp, pending, &mut warners);
        }
    }
}

impl SalSource for KafkaSource {
    fn name(&self) -> &str {
        "kafka"
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = self.stats();
        let mut v = vec![
            ("events_decoded", s.events_decoded),
            ("telemetry_received", s.telemetry_received),
            ("telemetry_decoded", s.telemetry_decoded),
            ("delivered", s.delivered),
            ("out_of_order_dropped", s.out_of_order),
            ("skipped_undecodable", s.skipped),
            ("dropped_lagging", s.dropped_lagging),
        ];
        // Known only from librdkafka's statistics, off by default (see love-kafka-partitions).
        if self.inner.figures.statistics.load(Ordering::Relaxed) {
            v.push(("fetch_requests", s.fetch_requests));
        }
        v
    }

    fn flush_telemetry(&self, component: &str, index: i64) -> Option<u64> {
        let comp = lock(&self.inner.comps).get(component).cloned()?;
        let pending = lock(&comp.state).take_telemetry_of(index, Instant::now());
        if pending.is_empty() {
            return None;
        }
        self.inner.send_pending(&comp, pending, &mut lock(&self.inner.flush_warners))
    }

    fn subscribe(&self, component: &str, index: i64, history: bool, tx: SampleTx) -> Result<(), SalError> {
        let inner = &self.inner;
        let comp = inner.comp(component);
        lock(&comp.state).routes.subscribe(index, history, tx, &inner.runtime);
        if !comp.subscribed.swap(true, Ordering::SeqCst) {
            let _ = lock(&inner.control).send(read::Control::Discover);
        }
        Ok(())
    }

    fn command(&self, cmd: SalCommand) -> Pin<Box<dyn std::future::Future<Output = CommandAck> + Send + 'static>> {
        Box::pin(commands::run_command(self.inner.clone(), cmd))
    }

    fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed)
    }
}

/// A plain reader of one topic from a given offset, decoding every record (for tools and
/// tests: a fake controller reading commands, a writer answering them).
pub struct TopicReader {
    partition: PartitionClient,
    registry: Arc<RegistryClient>,
    offset: i64,
}

impl std::fmt::Debug for TopicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TopicReader({}@{})", self.partition.topic(), self.offset)
    }
}

impl TopicReader {
    /// Read `full_topic` from `offset` (None: from its high watermark now). Fails if the topic
    /// does not exist.
    pub async fn new(
        client: &Client,
        registry: Arc<RegistryClient>,
        full_topic: &str,
        offset: Option<i64>,
    ) -> Result<TopicReader, KafkaError> {
        let partition = client
            .partition_client(full_topic.to_string(), 0, UnknownTopicHandling::Error)
            .await
            .map_err(|e| KafkaError::Kafka(format!("{full_topic}: {e}")))?;
        let offset = match offset {
            Some(o) => o,
            None => partition
                .get_offset(OffsetAt::Latest)
                .await
                .map_err(|e| KafkaError::Kafka(format!("{full_topic}: {e}")))?,
        };
        Ok(TopicReader { partition, registry, offset })
    }

    /// The next records (waits up to `max_wait_ms` for some): (offset, decoded or why not).
    pub async fn next_batch(&mut self, max_wait_ms: i32) -> Result<Vec<(i64, Result<Decoded, String>)>, KafkaError> {
        let (records, _) = self
            .partition
            .fetch_records(self.offset, 1..50_000_000, max_wait_ms)
            .await
            .map_err(|e| KafkaError::Kafka(format!("{}: {e}", self.partition.topic())))?;
        let mut out = Vec::new();
        for r in records {
            if r.offset < self.offset {
                continue;
            }
            self.offset = r.offset + 1;
            let decoded = match r.record.value {
                None => Err("no value".to_string()),
                Some(v) => match split_confluent(&v) {
                    Err(e) => Err(e.to_string()),
                    Ok((id, body)) => match self.registry.plan(id).await {
                        Err(e) => Err(e.to_string()),
                        Ok(plan) => plan.decode(body).map_err(|e| e.to_string()),
                    },
                },
            };
            out.push((r.offset, decoded));
        }
        Ok(out)
    }
}

/// Build a field list (helper for callers writing commands or samples).
pub fn fields(items: &[(&str, Value)]) -> Vec<Field> {
    items.iter().map(|(n, v)| Field { name: (*n).into(), value: v.clone() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert_eq!(
            parse_topic("lsst.sal.", "lsst.sal.ATDome.logevent_heartbeat"),
            Some(("ATDome", "logevent_heartbeat"))
        );
        assert_eq!(parse_topic("lsst.sal.", "lsst.other.ATDome.position"), None);
        assert_eq!(classify("logevent_heartbeat"), Some((TopicKind::EVENT, "heartbeat")));
        assert_eq!(classify("position"), Some((TopicKind::TELEMETRY, "position")));
        assert_eq!(classify("command_start"), None);
        assert_eq!(classify("ackcmd"), None);
    }

    #[test]
    fn telemetry_goes_out_at_once_when_due_else_the_newest_at_the_next_interval() {
        let mut st = CompState::default();
        let key = ("position".to_string(), 0);
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let interval = ms(200);
        // The first sample and one arriving an interval after the last: at once.
        assert!(st.telemetry_due(&key, t0, interval));
        assert!(!st.telemetry_due(&key, t0 + ms(50), interval));
        assert!(st.telemetry_due(&key, t0 + ms(200), interval));
        // Sooner: it waits, and a newer one replaces it; the tick sends the newest.
        assert!(!st.telemetry_due(&key, t0 + ms(220), interval));
        let pending = |v: u8| Pending {
            plan: Arc::new(avro::DecodePlan::from_schema_text(r#"{"type":"record","name":"x","fields":[]}"#).unwrap()),
            value: vec![v],
            offset: v as i64,
            at: Arrival::now(false),
        };
        st.telemetry.insert(key.clone(), pending(1));
        assert!(!st.telemetry_due(&key, t0 + ms(500), interval), "one is waiting: it goes at the tick");
        st.telemetry.insert(key.clone(), pending(2));
        let sent = st.take_telemetry(t0 + ms(400), interval);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1.value, vec![2]);
        // The tick counts as the last send.
        assert!(!st.telemetry_due(&key, t0 + ms(450), interval));
        assert!(st.telemetry_due(&key, t0 + ms(600), interval));
        // What has been quiet for long is forgotten.
        st.take_telemetry(t0 + ms(5000), interval);
        assert!(st.telemetry_sent.is_empty());
    }
}
