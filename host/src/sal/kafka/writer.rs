//! A salobj-style writer: publishes SAL samples to Kafka exactly as ts_salobj does.
//!
//! For each topic it builds salobj's Avro schema from the topic catalog, registers it under the
//! subject `<topic>-value`, creates the topic if missing (one partition), and writes one record
//! per produce request (salobj flushes each write) with the key JSON salobj uses
//! (`{"name": "ATDome", "topic": "logevent_heartbeat"}`, plus `"index"` for indexed
//! components; telemetry keys are empty) and the value in Confluent wire format. The private
//! fields are filled as salobj's `WriteTopic` does: `private_sndStamp` and
//! `private_kafkaStamp` (TAI), `private_efdStamp` (UTC), `private_rcvStamp` 0 (the reader sets
//! it), `private_seqNum` from the topic's own counter, `private_revCode`, `private_identity`
//! and `private_origin`.
//!
//! Records are written by librdkafka with salobj's producer settings ([`producer`]). Topics
//! are created on first write only by a writer given an admin client (`love-sal-writer`, the
//! tests); the Kafka source's command writer has none: a controller creates its own topics.
//!
//! Used by the Kafka source to send commands, by the `love-sal-writer` binary, and by tests.

use crate::clock::unix_now;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use apache_avro::schema::Schema;
use love_plugin_api::abi::{Field, PrivateStamps, TopicKind};
use love_plugin_api::catalog::{FieldInfo, TopicInfo};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rskafka::client::Client;
use tokio::sync::Mutex as AsyncMutex;

use super::avro::{ackcmd_topic, confluent, encode, rev_code, topic_schema};
use super::registry::RegistryClient;
use super::{KafkaConfig, KafkaError};
use crate::sal::catalog::TopicCatalog;

/// TAI - UTC, seconds (valid since 2017).
pub const TAI_OFFSET: f64 = 37.0;

/// TAI now, as salobj's `current_tai()`.
pub fn current_tai() -> f64 {
    unix_now() + TAI_OFFSET
}

/// The SAL topic name of a topic: `logevent_<name>`, `command_<name>`, the telemetry name, or
/// `ackcmd`.
pub fn sal_name(kind: TopicKind, topic: &str) -> String {
    match kind {
        TopicKind::EVENT => format!("logevent_{topic}"),
        TopicKind::COMMAND => format!("command_{topic}"),
        TopicKind::ACK => "ackcmd".to_string(),
        _ => topic.to_string(),
    }
}

/// The key salobj writes: empty for telemetry, else
/// `{"name": "<Component>", "index": <i>, "topic": "<sal_name>"}` (no index when not indexed),
/// formatted as Python's `json.dumps`.
pub fn record_key(component: &str, index: Option<i64>, sal_name: &str, kind: TopicKind) -> Vec<u8> {
    if kind == TopicKind::TELEMETRY {
        return Vec::new();
    }
    let name = serde_json::to_string(component).unwrap_or_default();
    let topic = serde_json::to_string(sal_name).unwrap_or_default();
    match index {
        Some(i) => format!("{{\"name\": {name}, \"index\": {i}, \"topic\": {topic}}}").into_bytes(),
        None => format!("{{\"name\": {name}, \"topic\": {topic}}}").into_bytes(),
    }
}

/// Overrides of what the writer fills in by itself (tests use them to write out-of-order or
/// foreign samples).
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `private_sndStamp` (default: TAI now).
    pub snd_stamp: Option<f64>,
    /// `private_seqNum` (default: the topic's next number).
    pub seq_num: Option<i64>,
    /// `private_identity` (default: the writer's identity).
    pub identity: Option<String>,
    /// `private_origin` (default: the writer's origin).
    pub origin: Option<i64>,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The record's offset.
    pub offset: i64,
    /// The private fields written.
    pub stamps: PrivateStamps,
}

/// The librdkafka producer records are written with (shared by the writers of one process).
pub type Producer = Arc<FutureProducer>;

/// How long a write waits for the broker's acknowledgement (librdkafka retries meanwhile).
pub const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A producer with salobj's producer settings (`LSST_KAFKA_*`: the broker, SASL, `acks`,
/// `queue.buffering.max.ms` 0, the producer and broker client configuration files).
pub fn producer(config: &KafkaConfig) -> Result<Producer, KafkaError> {
    let mut c = rdkafka::ClientConfig::new();
    // A write is one record, acknowledged before the next (salobj flushes each write); the
    // delivery wait is bounded by WRITE_TIMEOUT.
    c.set("message.timeout.ms", WRITE_TIMEOUT.as_millis().to_string());
    for (k, v) in config.producer_settings() {
        c.set(k, v);
    }
    c.create().map(Arc::new).map_err(|e| KafkaError::Config(format!("kafka producer: {e}")))
}

struct WriterTopic {
    full: String,
    schema: Schema,
    schema_id: i32,
    rev_code: String,
    seq: AtomicI64,
    kind: TopicKind,
    indexed: bool,
}

/// A salobj-style writer.
pub struct SalWriter {
    /// The producer, created at the first write when the writer was made without one: an idle
    /// librdkafka producer holds a broker connection and a polling thread (measured: 0.9 % of a
    /// core), and the host writes only the scriptqueue's commands.
    producer: std::sync::OnceLock<Producer>,
    /// Creates topics on first write when set.
    admin: Option<Arc<Client>>,
    registry: Arc<RegistryClient>,
    config: KafkaConfig,
    catalog: Arc<TopicCatalog>,
    topics: AsyncMutex<HashMap<String, Arc<WriterTopic>>>,
    identity: String,
    origin: i64,
}

impl std::fmt::Debug for SalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalWriter").field("identity", &self.identity).finish()
    }
}

impl SalWriter {
    /// A writer on `producer` (`None`: one is created at the first write); with `admin`,
    /// topics missing on first write are created.
    pub fn new(
        producer: Option<Producer>,
        admin: Option<Arc<Client>>,
        registry: Arc<RegistryClient>,
        config: KafkaConfig,
        catalog: Arc<TopicCatalog>,
    ) -> SalWriter {
        let identity = config.identity.clone();
        let origin = config.origin;
        SalWriter {
            producer: producer.map(std::sync::OnceLock::from).unwrap_or_default(),
            admin,
            registry,
            config,
            catalog,
            topics: AsyncMutex::new(HashMap::new()),
            identity,
            origin,
        }
    }

    /// Connect a writer with its own producer and admin client (it creates missing topics).
    pub async fn connect(config: KafkaConfig, catalog: Arc<TopicCatalog>) -> Result<SalWriter, KafkaError> {
        let admin = Arc::new(super::connect(&config).await?);
        let registry = Arc::new(RegistryClient::new(&config.schema_registry_url)?);
        Ok(SalWriter::new(Some(producer(&config)?), Some(admin), registry, config, catalog))
    }

    /// Write with this identity (salobj: the CSC name, `ATDome` or `ScriptQueue:1`, for a
    /// controller; `user@host` for a remote).
    pub fn with_identity(mut self, identity: &str) -> SalWriter {
        self.identity = identity.to_string();
        self
    }

    /// The identity written.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The origin written.
    pub fn origin(&self) -> i64 {
        self.origin
    }

    /// The catalog's definition of a topic (the generic `ackcmd` is built in).
    fn topic_info(&self, component: &str, kind: TopicKind, topic: &str) -> Option<(TopicInfo, bool)> {
        if kind == TopicKind::ACK {
            return Some((ackcmd_topic(), self.catalog.is_indexed(component)));
        }
        let comp = self.catalog.component(component)?;
        let t = match kind {
            TopicKind::EVENT => comp.event(topic),
            TopicKind::TELEMETRY => comp.telemetry_topic(topic),
            TopicKind::COMMAND => comp.command(topic),
            _ => None,
        }?;
        Some((t.clone(), comp.indexed))
    }

    async fn topic(
        &self,
        component: &str,
        kind: TopicKind,
        topic: &str,
        fields: &[Field],
    ) -> Result<Arc<WriterTopic>, KafkaError> {
        let sal = sal_name(kind, topic);
        let full = self.config.topic_name(component, &sal);
        let mut topics = self.topics.lock().await;
        if let Some(t) = topics.get(&full) {
            return Ok(t.clone());
        }
        let subject = format!("{full}-value");
        // The schema: from the catalog as salobj builds it from ts_xml; else the registry's latest
        // (a topic someone else defined); else inferred from the values given.
        let (schema_text, indexed) = match self.topic_info(component, kind, topic) {
            Some((info, indexed)) => (topic_schema(component, &sal, indexed, &info.fields).to_string(), indexed),
            None => match self.registry.latest(&subject).await? {
                Some((_, text)) => {
                    let plan = super::avro::DecodePlan::from_schema_text(&text)
                        .map_err(|e| KafkaError::Registry(format!("{subject}: {e}")))?;
                    (text, plan.has_sal_index())
                }
                None => {
                    let inferred: Vec<FieldInfo> = fields.iter().map(infer_field).collect();
                    let indexed = self.catalog.is_indexed(component);
                    (topic_schema(component, &sal, indexed, &inferred).to_string(), indexed)
                }
            },
        };
        let schema = Schema::parse_str(&schema_text)
            .map_err(|e| KafkaError::Registry(format!("{subject}: schema does not parse: {e}")))?;
        let schema_id = self.registry.register(&subject, &schema_text).await?;
        if let Some(admin) = &self.admin {
            ensure_topic(admin, &full, 1, self.config.replication_factor).await?;
        }
        let t = Arc::new(WriterTopic {
            full: full.clone(),
            schema,
            schema_id,
            rev_code: rev_code(&schema_text),
            seq: AtomicI64::new(initial_seq(kind)),
            kind,
            indexed,
        });
        topics.insert(full, t.clone());
        Ok(t)
    }

    /// Write one sample of `component`:`index` (`kind` EVENT, TELEMETRY, COMMAND or ACK;
    /// `topic` without prefix). Fields not given take salobj's defaults.
    pub async fn write(
        &self,
        component: &str,
        index: i64,
        kind: TopicKind,
        topic: &str,
        fields: &[Field],
    ) -> Result<Written, KafkaError> {
        self.write_with(component, index, kind, topic, fields, WriteOptions::default()).await
    }

    /// [`SalWriter::write`] with overrides.
    pub async fn write_with(
        &self,
        component: &str,
        index: i64,
        kind: TopicKind,
        topic: &str,
        fields: &[Field],
        opts: WriteOptions,
    ) -> Result<Written, KafkaError> {
        let t = self.topic(component, kind, topic, fields).await?;
        let seq = opts.seq_num.unwrap_or_else(|| next_seq(&t.seq, t.kind));
        let now_tai = current_tai();
        let snd = opts.snd_stamp.unwrap_or(now_tai);
        let stamps = PrivateStamps {
            snd_stamp: snd,
            rcv_stamp: 0.0,
            efd_stamp: snd - TAI_OFFSET,
            kafka_stamp: now_tai,
            seq_num: seq,
            rev_code: t.rev_code.as_str().into(),
            identity: opts.identity.as_deref().unwrap_or(&self.identity).into(),
            origin: opts.origin.unwrap_or(self.origin),
        };
        let body = encode(&t.schema, index, &stamps, fields)
            .map_err(|e| KafkaError::Encode(format!("{component}.{topic}: {e}")))?;
        let sal = sal_name(kind, topic);
        let key = record_key(component, t.indexed.then_some(index), &sal, kind);
        let offset = self.produce(&t.full, &key, &confluent(t.schema_id, &body)).await?;
        Ok(Written { offset, stamps })
    }

    /// Write raw bytes as a value of a topic (tests: undecodable values, unknown schema ids).
    pub async fn write_raw(&self, full_topic: &str, key: Vec<u8>, value: Vec<u8>) -> Result<i64, KafkaError> {
        if let Some(admin) = &self.admin {
            ensure_topic(admin, full_topic, 1, self.config.replication_factor).await?;
        }
        self.produce(full_topic, &key, &value).await
    }

    /// One record to partition 0 of `full_topic`, acknowledged (as salobj writes); its offset.
    async fn produce(&self, full_topic: &str, key: &[u8], value: &[u8]) -> Result<i64, KafkaError> {
        let mut record =
            FutureRecord::to(full_topic).partition(0).payload(value).timestamp((unix_now() * 1000.0) as i64);
        if !key.is_empty() {
            record = record.key(key);
        }
        let producer = match self.producer.get() {
            Some(p) => p,
            None => {
                let p = producer(&self.config).map_err(|e| e.with_note(&self.config.files.note()))?;
                self.producer.get_or_init(|| p)
            }
        };
        match producer.send(record, rdkafka::util::Timeout::After(WRITE_TIMEOUT)).await {
            Ok(delivery) => Ok(delivery.offset),
            Err((e, _)) => Err(KafkaError::Kafka(format!("produce to {full_topic}: {e}"))),
        }
    }

    /// The schema id registered for a topic this writer wrote, if any.
    pub async fn schema_id(&self, component: &str, kind: TopicKind, topic: &str) -> Option<i32> {
        let full = self.config.topic_name(component, &sal_name(kind, topic));
        self.topics.lock().await.get(&full).map(|t| t.schema_id)
    }
}

/// Commands start their sequence numbers at a random point of their own range (as salobj's
/// remote commands), so two senders rarely collide; other topics count from 1.
fn initial_seq(kind: TopicKind) -> i64 {
    if kind == TopicKind::COMMAND {
        use rand::Rng;
        rand::thread_rng().gen_range(1..i32::MAX as i64 / 2)
    } else {
        1
    }
}

fn next_seq(counter: &AtomicI64, _kind: TopicKind) -> i64 {
    let v = counter.fetch_add(1, Ordering::Relaxed);
    if v >= i32::MAX as i64 {
        counter.store(2, Ordering::Relaxed);
        1
    } else {
        v
    }
}

/// Create every topic of `component` in `catalog` that does not exist yet (its events,
/// telemetry, commands and `ackcmd`), as a salobj controller does at start; returns how many
/// were created. The broker's topic list is read once.
pub async fn create_component_topics(
    client: &Client,
    config: &KafkaConfig,
    catalog: &TopicCatalog,
    component: &str,
) -> Result<usize, KafkaError> {
    use futures_util::StreamExt;
    let Some(comp) = catalog.component(component) else { return Ok(0) };
    let existing: std::collections::HashSet<String> = client
        .list_topics()
        .await
        .map_err(|e| KafkaError::Kafka(format!("list topics: {e}")))?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let names = comp
        .events
        .iter()
        .map(|t| sal_name(TopicKind::EVENT, &t.name))
        .chain(comp.telemetry.iter().map(|t| sal_name(TopicKind::TELEMETRY, &t.name)))
        .chain(comp.commands.iter().map(|t| sal_name(TopicKind::COMMAND, &t.name)))
        .chain(std::iter::once(sal_name(TopicKind::ACK, "ackcmd")))
        .map(|sal| config.topic_name(component, &sal))
        .filter(|full| !existing.contains(full));
    let controller = client.controller_client().map_err(|e| KafkaError::Kafka(format!("controller: {e}")))?;
    let results: Vec<Result<(), KafkaError>> = futures_util::stream::iter(names)
        .map(|full| {
            let controller = &controller;
            async move { create_topic(controller, &full, 1, config.replication_factor).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let created = results.iter().filter(|r| r.is_ok()).count();
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(created)
}

/// Create `topic` with `partitions` partitions; one that exists already is not an error.
pub async fn create_topic(
    controller: &rskafka::client::controller::ControllerClient,
    topic: &str,
    partitions: i32,
    replication: i16,
) -> Result<(), KafkaError> {
    match controller.create_topic(topic, partitions, replication.max(1), 5_000).await {
        Ok(()) => Ok(()),
        Err(rskafka::client::error::Error::ServerError {
            protocol_error: rskafka::client::error::ProtocolError::TopicAlreadyExists,
            ..
        }) => Ok(()),
        Err(e) => Err(KafkaError::Kafka(format!("create topic {topic}: {e}"))),
    }
}

/// Create `topic` with `partitions` unless it exists; returns the partition count of one that
/// existed (`None`: created).
pub async fn ensure_topic(
    client: &Client,
    topic: &str,
    partitions: i32,
    replication: i16,
) -> Result<Option<usize>, KafkaError> {
    let topics = client.list_topics().await.map_err(|e| KafkaError::Kafka(format!("list topics: {e}")))?;
    if let Some(t) = topics.iter().find(|t| t.name == topic) {
        return Ok(Some(t.partitions.len()));
    }
    let controller = client.controller_client().map_err(|e| KafkaError::Kafka(format!("controller: {e}")))?;
    create_topic(&controller, topic, partitions, replication).await.map(|()| None)
}

/// A field description inferred from a value (when no catalog or registry defines the topic).
fn infer_field(f: &Field) -> FieldInfo {
    use love_plugin_api::abi::Value;
    let (ty, count) = match &f.value {
        Value::Bool(_) => ("boolean", 1),
        Value::Int(_) => ("long long", 1),
        Value::Float(_) => ("double", 1),
        Value::Str(_) | Value::Json(_) => ("string", 1),
        Value::BoolArray(v) => ("boolean", v.len().max(2) as u32),
        Value::IntArray(v) => ("long long", v.len().max(2) as u32),
        Value::FloatArray(v) => ("double", v.len().max(2) as u32),
    };
    FieldInfo::new(&f.name, ty, count, "unitless")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_as_salobj() {
        assert_eq!(
            record_key("Test", Some(1), "logevent_heartbeat", TopicKind::EVENT),
            br#"{"name": "Test", "index": 1, "topic": "logevent_heartbeat"}"#.to_vec()
        );
        assert_eq!(
            record_key("ATDome", None, "command_start", TopicKind::COMMAND),
            br#"{"name": "ATDome", "topic": "command_start"}"#.to_vec()
        );
        assert!(record_key("ATDome", None, "position", TopicKind::TELEMETRY).is_empty());
        assert_eq!(sal_name(TopicKind::EVENT, "heartbeat"), "logevent_heartbeat");
        assert_eq!(sal_name(TopicKind::ACK, "x"), "ackcmd");
    }
}
