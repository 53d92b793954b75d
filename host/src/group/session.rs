//! A host's membership of its group for the whole run: the coordination topic made sure of,
//! the group joined, and the member polled on a thread of its own until the host leaves (the rebalance
//! callbacks run inside that poll).

use std::collections::HashMap;
use std::sync::mpsc::TryRecvError;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::client::Client;
use rskafka::record::Record;
use tokio::sync::mpsc::UnboundedSender;
use tracing::info;

use super::member::{self, Request};
use super::plan;
use super::{GroupStatus, Membership, StartFn};
use crate::factory::{Assignment, ProducerDefaults};
use crate::links::Links;
use crate::manager::Outbox;
use crate::producers::start_one;
use crate::runtime::RuntimeContext;
use crate::sal::catalog::TopicCatalog;
use crate::sal::kafka::KafkaConfig;

/// Make sure the coordination `topic` exists with one partition per component (created when
/// missing), and join. Errors name the group and the topic.
pub async fn start(
    config: &KafkaConfig,
    client: &Client,
    group: &str,
    components: Vec<String>,
    requests: UnboundedSender<Request>,
) -> Result<(GroupThread, Arc<GroupStatus>), String> {
    let topic = plan::topic_name(&config.topic_subname, group)?;
    ensure_topic(client, &topic, &components, config.replication_factor).await?;
    agree_on_components(client, &topic, &components).await?;
    let status = Arc::new(GroupStatus::new(group, &topic));
    let consumer =
        member::join(&config.consumer_settings(), group, &topic, components.clone(), requests, status.clone())?;
    info!(group, topic = %topic, "group {group}: joining through {topic} ({} components to share)", components.len());
    let (leave, leave_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("love-group".into())
        .spawn(move || {
            // Polled until told to leave (or the run ended without saying so).
            while let Err(TryRecvError::Empty) = leave_rx.try_recv() {
                if let Some(Err(e)) = consumer.poll(Duration::from_millis(200)) {
                    tracing::debug!("group: {e}");
                }
            }
            // Closing the consumer leaves the group, so the others take this host's components
            // at once rather than after the session timeout.
            consumer.context().leave();
            drop(consumer);
            info!("group: left the group");
        })
        .map_err(|e| format!("group {group}: starting its thread: {e}"))?;
    Ok((GroupThread { thread, leave }, status))
}

/// The thread polling the group member, and how to tell it to leave.
pub struct GroupThread {
    thread: std::thread::JoinHandle<()>,
    leave: std::sync::mpsc::Sender<()>,
}

async fn ensure_topic(client: &Client, topic: &str, components: &[String], replication: i16) -> Result<(), String> {
    let partitions = components.len() as i32;
    match crate::sal::kafka::writer::ensure_topic(client, topic, partitions, replication).await {
        Ok(Some(existing)) => plan::check_partition_count(topic, existing, components),
        Ok(None) => {
            info!(topic, "group: the coordination topic {topic} created with {partitions} partitions");
            Ok(())
        }
        Err(e) => Err(format!("coordination topic {topic}: {e}")),
    }
}

/// The first host of the group records its component list (one per line) on partition 0 of
/// the coordination topic; every host compares its own with the record at the earliest offset
/// and refuses to start on a difference, since partition N must mean one component to all.
async fn agree_on_components(client: &Client, topic: &str, components: &[String]) -> Result<(), String> {
    let err = |what: &str, e: rskafka::client::error::Error| format!("coordination topic {topic}: {what}: {e}");
    let partition = client
        .partition_client(topic.to_string(), 0, UnknownTopicHandling::Retry)
        .await
        .map_err(|e| err("partition 0", e))?;
    for attempt in 0..2 {
        let earliest = partition.get_offset(OffsetAt::Earliest).await.map_err(|e| err("earliest offset", e))?;
        let (records, _) =
            partition.fetch_records(earliest, 1..1_000_000, 200).await.map_err(|e| err("reading partition 0", e))?;
        if let Some(r) = records.into_iter().find(|r| r.offset >= earliest) {
            let recorded = String::from_utf8_lossy(r.record.value.as_deref().unwrap_or_default()).into_owned();
            return plan::check_components(topic, &recorded, components);
        }
        if attempt == 0 {
            // Two hosts may both find it empty: the record at the earliest offset wins for both.
            let record = Record {
                key: Some(b"components".to_vec()),
                value: Some(components.join("\n").into_bytes()),
                headers: Default::default(),
                timestamp: chrono::DateTime::from_timestamp_millis((crate::clock::unix_now() * 1000.0) as i64)
                    .unwrap_or_default(),
            };
            partition
                .produce(vec![record], Compression::NoCompression)
                .await
                .map_err(|e| err("recording the component list", e))?;
            info!(topic, "group: the component list recorded on {topic}");
        }
    }
    Err(format!("coordination topic {topic}: the component list recorded on partition 0 cannot be read back"))
}

/// Leave the group at the end of a run, once the producers have stopped, so that no other
/// host starts one before this one has stopped it (bounded: a broker that does not answer must
/// not hold the exit).
pub async fn leave(group: GroupThread) {
    let _ = group.leave.send(());
    let joined = tokio::task::spawn_blocking(move || group.thread.join());
    if tokio::time::timeout(Duration::from_secs(5), joined).await.is_err() {
        tracing::warn!("group: leaving the group took more than 5 s; exiting without waiting");
    }
}

/// Join `group` for a run: the deployment then starts and stops the producers of `assignments`
/// as the group gives their components to this host or takes them away.
pub async fn join_group(
    group: &str,
    defaults: &ProducerDefaults,
    assignments: &[Assignment],
    catalog: &Arc<TopicCatalog>,
    links: &Links,
    ctx: RuntimeContext,
) -> Result<(Membership, GroupThread), String> {
    let kafka = KafkaConfig::from_env().map_err(|e| format!("group {group}: {e}"))?;
    let client = crate::sal::kafka::connect(&kafka).await.map_err(|e| format!("group {group}: {e}"))?;
    let by_name: HashMap<String, (Assignment, Arc<dyn Outbox>)> =
        assignments.iter().map(|a| (a.component.to_string(), (a.clone(), links.outbox_of(&a.component)))).collect();
    // Sorted, so that partition N is one component for every host whatever the order of
    // their lists.
    let mut names: Vec<String> = assignments.iter().map(|a| a.component.to_string()).collect();
    names.sort();
    let (defaults, catalog) = (defaults.clone(), catalog.clone());
    let start_producer: StartFn = Box::new(move |name: &str| {
        let (a, outbox) = by_name.get(name).ok_or_else(|| format!("{name} is not a configured component"))?;
        start_one(a, &defaults, &catalog, RuntimeContext { outbox: outbox.clone(), ..ctx.clone() }, true)
    });
    let (tx, requests) = tokio::sync::mpsc::unbounded_channel();
    let (thread, status) = start(&kafka, &client, group, names, tx).await?;
    Ok((Membership { requests, start: start_producer, status }, thread))
}
