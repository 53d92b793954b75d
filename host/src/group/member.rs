//! Group membership through librdkafka's group coordinator client: a consumer subscribed to
//! the coordination topic with cooperative-sticky assignment, whose rebalance callbacks turn
//! Assign / Revoke / lost into start and stop requests. A revoke waits (bounded) until the
//! stops are done before it returns, so the next owner starts only after this host stopped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, TopicPartitionList};

use super::plan::{Change, Moves, Serving};
use super::GroupStatus;

/// A request to the owner of the producers; `done` is answered once the stops are done.
#[derive(Debug)]
pub struct Request {
    pub change: Change,
    pub moves: Moves,
    pub done: Option<mpsc::Sender<()>>,
    /// When the rebalance callback made it.
    pub at: Instant,
}

/// How long a revoke waits for its stops before it lets the rebalance go on anyway.
pub const STOP_BOUND: Duration = Duration::from_secs(10);

/// The rebalance callbacks' context.
pub struct Member {
    group: String,
    serving: Mutex<Serving>,
    requests: tokio::sync::mpsc::UnboundedSender<Request>,
    status: Arc<GroupStatus>,
    /// The host is stopping: the revoke of the leave asks for nothing (every producer is
    /// stopped already).
    leaving: AtomicBool,
}

impl ClientContext for Member {}

impl ConsumerContext for Member {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = r {
            let change = if consumer.assignment_lost() { Change::Lost } else { Change::Revoked };
            self.apply(change, list, true);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            Rebalance::Assign(list) => self.apply(Change::Assigned, list, false),
            Rebalance::Error(e) => tracing::warn!(group = %self.group, "group rebalance error: {e}"),
            Rebalance::Revoke(_) => {}
        }
    }
}

impl Member {
    fn apply(&self, change: Change, list: &TopicPartitionList, wait: bool) {
        let parts: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
        let moves = self.serving.lock().unwrap_or_else(|p| p.into_inner()).apply(change, &parts);
        self.status.on_callback(change);
        if moves.start.is_empty() && moves.stop.is_empty() || self.leaving.load(Ordering::Relaxed) {
            return;
        }
        tracing::info!(group = %self.group, ?change, start = ?moves.start, stop = ?moves.stop, "group rebalance");
        let (tx, rx) = mpsc::channel();
        let done = wait.then_some(tx);
        let t = Instant::now();
        if self.requests.send(Request { change, moves, done, at: t }).is_err() || !wait {
            return;
        }
        match rx.recv_timeout(STOP_BOUND) {
            Ok(()) => tracing::info!(group = %self.group, "stopped in {:?}", t.elapsed()),
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!(group = %self.group, "stops not done within {STOP_BOUND:?}; the rebalance goes on")
            }
            Err(RecvTimeoutError::Disconnected) => {}
        }
    }

    /// Stop asking for moves: the host is leaving the group.
    pub fn leave(&self) {
        self.leaving.store(true, Ordering::Relaxed);
    }
}

/// Joins `group` through `topic`: `settings` are the host's Kafka consumer settings (salobj's
/// configuration); the group's own settings are added unless the configuration sets them.
/// The caller polls the returned consumer (the callbacks run inside `poll`).
pub fn join(
    settings: &[(String, String)],
    group: &str,
    topic: &str,
    components: Vec<String>,
    requests: tokio::sync::mpsc::UnboundedSender<Request>,
    status: Arc<GroupStatus>,
) -> Result<BaseConsumer<Member>, String> {
    let mut cfg = ClientConfig::new();
    // A dead host's components move after the session timeout: 10 s rather than librdkafka's
    // 45 s (measured on tansu: 68 s from kill -9 to takeover with the defaults). The consumer
    // configuration file may set others.
    cfg.set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "2000");
    for (k, v) in settings {
        cfg.set(k, v);
    }
    cfg.set("group.id", format!("love-host.{group}"));
    let member = Member {
        group: group.to_string(),
        serving: Mutex::new(Serving::new(components)),
        requests,
        status,
        leaving: AtomicBool::new(false),
    };
    let consumer: BaseConsumer<Member> = cfg
        .create_with_context(member)
        .map_err(|e| format!("group {group}: creating the group consumer for topic {topic}: {e}"))?;
    consumer.subscribe(&[topic]).map_err(|e| format!("group {group}: subscribing to {topic}: {e}"))?;
    Ok(consumer)
}
