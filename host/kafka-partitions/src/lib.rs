//! The librdkafka consumers of every topic the host reads.
//!
//! librdkafka fetches all the partitions a client consumes from one broker in one Fetch request
//! on one connection, which is what salobj's readers get from it too. Partitions are started at
//! explicit offsets with librdkafka's partition consumer (`rd_kafka_consume_start_queue`) and
//! forwarded to the client's queue: no consumer group (`assign` needs a `group.id`, and a group
//! costs a connection to its coordinator and a join), nothing committed. librdkafka resolves
//! `Tail(n)` itself (high watermark - n), which is the late-joiner read.
//!
//! One client serves at most `topics_per_client` topics; more topics get more clients. librdkafka
//! (2.12) finds the topic of each partition in a Fetch response by a linear scan of the client's
//! topics, so one Fetch costs a client the square of its topic count: at the summit's 2,200
//! topics on one client that was ~28 ms of a core per Fetch, most of the idle host's CPU. The
//! clients' queues all signal one pipe, so one thread waits on every client at once.
//!
//! A crate of its own because the partition consumer is not wrapped by the rdkafka crate: this
//! is the only `unsafe` code of love-host's Kafka reading, and the host library forbids it.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, Statistics, TopicPartitionList};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// A setting librdkafka refused.
    #[error("{0}")]
    Config(String),
    /// The broker or the client.
    #[error("{0}")]
    Kafka(String),
}

/// Where a partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest record kept.
    Beginning,
    /// The next record published.
    End,
    /// `n` records before the end (or the beginning if there are fewer).
    Tail(i64),
    /// An explicit offset.
    Offset(i64),
}

impl StartAt {
    fn raw(self) -> i64 {
        match self {
            StartAt::Beginning => rd::RD_KAFKA_OFFSET_BEGINNING as i64,
            StartAt::End => rd::RD_KAFKA_OFFSET_END as i64,
            StartAt::Tail(0) => rd::RD_KAFKA_OFFSET_END as i64,
            StartAt::Tail(n) => rd::RD_KAFKA_OFFSET_TAIL_BASE as i64 - n.clamp(1, i32::MAX as i64),
            StartAt::Offset(o) => o.max(0),
        }
    }
}

/// What one poll of the queue yields.
#[derive(Debug)]
pub enum Polled<'a> {
    /// A record of `topic` at `offset` (no value: a tombstone).
    Record { topic: &'a str, offset: i64, value: Option<&'a [u8]> },
    /// `topic` has been read up to its end (the late-joiner read is complete).
    End { topic: &'a str },
    /// An error about `topic` (or about the client, with an empty topic).
    Error { topic: &'a str, error: String },
}

/// Broker figures read from librdkafka's statistics (`statistics.interval.ms`).
#[derive(Debug, Default)]
pub struct BrokerFigures {
    /// Fetch requests sent, summed over the brokers and the clients.
    pub fetch_requests: AtomicU64,
    /// Broker connections up (the bootstrap entries excepted), summed over the clients.
    pub connections: AtomicU64,
    /// Topics being read.
    pub topics: AtomicU64,
    /// Whether librdkafka's statistics are on (`statistics.interval.ms` > 0), without which
    /// `fetch_requests` and `connections` are not known and stay 0.
    pub statistics: std::sync::atomic::AtomicBool,
}

/// The consumer's context: librdkafka's statistics into [`BrokerFigures`]; its errors logged
/// at most once per minute per kind (a broker down is retried by librdkafka forever).
pub struct ReadContext {
    figures: Arc<BrokerFigures>,
    /// This client's share of the totals in `figures` (fetches, connections), last reported.
    reported: std::sync::Mutex<(u64, u64)>,
    errors: std::sync::Mutex<HashMap<String, std::time::Instant>>,
}

impl ClientContext for ReadContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", "{fac}: {message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "{fac}: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(target: "librdkafka", "{fac}: {message}"),
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", "{fac}: {message}"),
        }
    }

    fn stats(&self, statistics: Statistics) {
        let mut fetches = 0u64;
        let mut up = 0u64;
        for b in statistics.brokers.values() {
            fetches += b.req.get("Fetch").copied().unwrap_or(0).max(0) as u64;
            if b.state == "UP" && b.nodeid >= 0 {
                up += 1;
            }
        }
        // The totals are shared by every client: each adds the change of its own figures.
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        let (last_fetches, last_up) = *reported;
        self.figures.fetch_requests.fetch_add(fetches.wrapping_sub(last_fetches), Ordering::Relaxed);
        self.figures.connections.fetch_add(up.wrapping_sub(last_up), Ordering::Relaxed);
        *reported = (fetches, up);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        let kind = format!("{error}");
        // A panic elsewhere while the map was held leaves it usable.
        let mut seen = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if seen.get(&kind).is_some_and(|t| now.duration_since(*t) < Duration::from_secs(60)) {
            tracing::debug!("kafka client: {kind}: {reason}");
            return;
        }
        seen.insert(kind.clone(), now);
        tracing::warn!("kafka client: {kind}: {reason} (the client retries; said at most once a minute)");
    }
}

impl ConsumerContext for ReadContext {}

struct Started {
    handle: *mut rd::rd_kafka_topic_t,
    client: usize,
}

/// One librdkafka client and the queue its partitions are forwarded to.
struct Client {
    consumer: BaseConsumer<ReadContext>,
    queue: *mut rd::rd_kafka_queue_t,
    topics: usize,
}

impl Drop for Client {
    fn drop(&mut self) {
        // Messages still queued are destroyed with the queue.
        // SAFETY: created in `TopicConsumer::client`, destroyed once, before the consumer.
        unsafe { rd::rd_kafka_queue_destroy(self.queue) };
    }
}

/// The partition consumer of every topic read (partition 0, as salobj's topics have one).
pub struct TopicConsumer {
    config: ClientConfig,
    figures: Arc<BrokerFigures>,
    topics_per_client: usize,
    clients: Vec<Client>,
    started: HashMap<String, Started>,
    batch: Vec<*mut rd::rd_kafka_message_t>,
    wake: Wake,
}

// The raw handles are librdkafka's thread-safe objects, owned by this value alone.
unsafe impl Send for TopicConsumer {}

/// Settings the reading needs whatever the configuration says.
const FORCED: &[(&str, &str)] = &[
    // The end of a partition marks the end of its late-joiner read.
    ("enable.partition.eof", "true"),
    // Nothing is committed: offsets are chosen by the host.
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
];

/// Defaults a configuration file may change.
const DEFAULTS: &[(&str, &str)] = &[
    ("client.id", "love-host"),
    // No statistics unless a configuration file asks for them (the broker figures of
    // [`BrokerFigures`] then stay 0). With statistics on, librdkafka keeps two HDR histograms
    // for every topic handle (producer batch sizes and counts, unused by a consumer): 22 KB a
    // topic, 50 MB of the heap at the summit's 2,200 topics. And each statistics report covers
    // every partition, about 0.1 s of a core at that count.
    ("statistics.interval.ms", "0"),
    // How long a Fetch waits for data at the broker: one request per broker per wait when idle.
    ("fetch.wait.max.ms", "500"),
];

impl TopicConsumer {
    /// A consumer with `settings` (librdkafka keys, later entries win), with one client per
    /// `topics_per_client` topics read (at least one client, made now so that a bad setting is
    /// refused here).
    pub fn new(
        settings: &[(String, String)],
        figures: Arc<BrokerFigures>,
        topics_per_client: usize,
    ) -> Result<TopicConsumer, KafkaError> {
        let mut config = ClientConfig::new();
        for (k, v) in DEFAULTS {
            config.set(*k, *v);
        }
        for (k, v) in settings {
            if k == "group.id" {
                // A group would cost a coordinator connection and a join, and reading needs none.
                tracing::debug!(
                    "kafka: group.id={v} is not used for reading (partitions are read at explicit offsets)"
                );
                continue;
            }
            config.set(k, v);
        }
        for (k, v) in FORCED {
            if let Some((_, given)) = settings.iter().rev().find(|(key, _)| key == k).filter(|(_, given)| given != v) {
                tracing::warn!(
                    "kafka: {k}={given} from the configuration is replaced by {k}={v}, which the reading needs"
                );
            }
            config.set(*k, *v);
        }
        let statistics = config.get("statistics.interval.ms").is_some_and(|v| v.trim().parse::<i64>().unwrap_or(0) > 0);
        figures.statistics.store(statistics, Ordering::Relaxed);
        let wake =
            Wake::new().map_err(|e| KafkaError::Kafka(format!("cannot create the consumer's wake-up pipe: {e}")))?;
        let mut consumer = TopicConsumer {
            config,
            figures,
            topics_per_client: topics_per_client.max(1),
            clients: Vec::new(),
            started: HashMap::new(),
            batch: Vec::with_capacity(1024),
            wake,
        };
        consumer.add_client()?;
        Ok(consumer)
    }

    fn add_client(&mut self) -> Result<usize, KafkaError> {
        let context =
            ReadContext { figures: self.figures.clone(), reported: Default::default(), errors: Default::default() };
        let consumer: BaseConsumer<ReadContext> =
            self.config.create_with_context(context).map_err(|e| KafkaError::Config(format!("kafka consumer: {e}")))?;
        // SAFETY: the client pointer is valid while `consumer` lives; the queue is destroyed in
        // Client's Drop before the consumer.
        let queue = unsafe { rd::rd_kafka_queue_new(consumer.client().native_ptr()) };
        if queue.is_null() {
            return Err(KafkaError::Kafka("cannot create the consumer's queue".into()));
        }
        // librdkafka writes the byte when the queue goes from empty to not empty.
        // SAFETY: valid queue; the pipe outlives every client (dropped after them).
        unsafe { rd::rd_kafka_queue_io_event_enable(queue, self.wake.write_fd, b"w".as_ptr().cast(), 1) };
        self.clients.push(Client { consumer, queue, topics: 0 });
        if self.clients.len() > 1 {
            tracing::info!(
                "kafka: reading with {} clients of at most {} topics each",
                self.clients.len(),
                self.topics_per_client
            );
        }
        Ok(self.clients.len() - 1)
    }

    /// The client a new topic goes to: the least loaded, or a new one when all are full.
    fn client_for_new_topic(&mut self) -> Result<usize, KafkaError> {
        let (i, least) = self
            .clients
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| c.topics)
            .map(|(i, c)| (i, c.topics))
            .unwrap_or((0, usize::MAX));
        if least < self.topics_per_client {
            Ok(i)
        } else {
            self.add_client()
        }
    }

    /// Start reading partition 0 of `topic` at `at` (nothing if it is already read).
    pub fn start(&mut self, topic: &str, at: StartAt) -> Result<(), KafkaError> {
        if self.started.contains_key(topic) {
            return Ok(());
        }
        let name = CString::new(topic).map_err(|_| KafkaError::Kafka(format!("{topic:?}: not a topic name")))?;
        let client = self.client_for_new_topic()?;
        let c = &mut self.clients[client];
        // SAFETY: valid client pointer and NUL-terminated name; a null conf means defaults.
        let handle =
            unsafe { rd::rd_kafka_topic_new(c.consumer.client().native_ptr(), name.as_ptr(), std::ptr::null_mut()) };
        if handle.is_null() {
            return Err(KafkaError::Kafka(format!("{topic}: cannot create the topic handle")));
        }
        // SAFETY: handle and queue are valid.
        let rc = unsafe { rd::rd_kafka_consume_start_queue(handle, 0, at.raw(), c.queue) };
        if rc != 0 {
            // SAFETY: the handle is ours and not started.
            unsafe { rd::rd_kafka_topic_destroy(handle) };
            return Err(KafkaError::Kafka(format!("{topic}: cannot start reading ({})", last_error())));
        }
        c.topics += 1;
        self.started.insert(topic.to_string(), Started { handle, client });
        self.figures.topics.store(self.started.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Stop reading `topic`.
    pub fn stop(&mut self, topic: &str) {
        if let Some(s) = self.started.remove(topic) {
            // SAFETY: the handle was started by `start` and is destroyed once.
            unsafe {
                rd::rd_kafka_consume_stop(s.handle, 0);
                rd::rd_kafka_topic_destroy(s.handle);
            }
            self.clients[s.client].topics -= 1;
            self.figures.topics.store(self.started.len() as u64, Ordering::Relaxed);
        }
    }

    /// Whether `topic` is being read.
    pub fn is_reading(&self, topic: &str) -> bool {
        self.started.contains_key(topic)
    }

    /// How many topics are read.
    pub fn reading_count(&self) -> usize {
        self.started.len()
    }

    /// How many librdkafka clients read them.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Wait up to `timeout` for records and hand each to `f` (in order per topic). Also serves
    /// the clients' callbacks (statistics, errors). Returns how many were handed over.
    pub fn poll(&mut self, timeout: Duration, mut f: impl FnMut(Polled<'_>)) -> usize {
        for c in &self.clients {
            // Statistics and errors arrive on the main queue, which a consumer without a group
            // does not forward anywhere.
            let _ = c.consumer.poll(Duration::ZERO);
        }
        // The pipe is emptied before the queues are read: a queue filled after its read writes
        // to the pipe again, so the wait below cannot miss it.
        self.wake.drain();
        let mut n = self.consume(&mut f);
        if n == 0 && self.wake.wait(timeout) {
            self.wake.drain();
            n = self.consume(&mut f);
        }
        n
    }

    /// Hand over what the clients' queues hold now (up to the batch's capacity in all).
    fn consume(&mut self, f: &mut impl FnMut(Polled<'_>)) -> usize {
        let mut total = 0;
        for c in &self.clients {
            let room = self.batch.capacity() - total;
            if room == 0 {
                break;
            }
            // SAFETY: the buffer has room for `room` more pointers after the `total` held;
            // librdkafka writes `got` of them.
            unsafe {
                let got = rd::rd_kafka_consume_batch_queue(c.queue, 0, self.batch.as_mut_ptr().add(total), room);
                if got > 0 {
                    total += got as usize;
                    self.batch.set_len(total);
                }
            }
        }
        for &m in &self.batch {
            // SAFETY: librdkafka handed over `m`; it is read here and destroyed below.
            unsafe {
                hand_over(&*m, f);
                rd::rd_kafka_message_destroy(m);
            }
        }
        // SAFETY: the messages were destroyed above.
        unsafe { self.batch.set_len(0) };
        total
    }

    /// The names of the broker's topics (a metadata request; blocks up to `timeout`).
    pub fn topic_names(&self, timeout: Duration) -> Result<Vec<String>, KafkaError> {
        let md = self.clients[0]
            .consumer
            .fetch_metadata(None, timeout)
            .map_err(|e| KafkaError::Kafka(format!("metadata: {e}")))?;
        Ok(md.topics().iter().filter(|t| t.error().is_none()).map(|t| t.name().to_string()).collect())
    }

    /// The (low, high) watermarks of partition 0 of each of `topics`, asked in one request per
    /// broker for all of them (blocks up to `timeout` for each of the two). A topic the broker
    /// did not answer for is left out.
    pub fn watermarks(&self, topics: &[&str], timeout: Duration) -> Result<HashMap<String, (i64, i64)>, KafkaError> {
        // ListOffsets by timestamp: -2 is the earliest offset, -1 the latest.
        let ask = |at: Offset| -> Result<HashMap<String, i64>, KafkaError> {
            let mut tpl = TopicPartitionList::with_capacity(topics.len());
            for t in topics {
                tpl.add_partition_offset(t, 0, at).map_err(|e| KafkaError::Kafka(format!("{t}: {e}")))?;
            }
            let got = self.clients[0]
                .consumer
                .offsets_for_times(tpl, timeout)
                .map_err(|e| KafkaError::Kafka(format!("offsets: {e}")))?;
            Ok(got
                .elements()
                .iter()
                .filter(|e| e.error().is_ok())
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.topic().to_string(), o)),
                    _ => None,
                })
                .collect())
        };
        let high = ask(Offset::End)?;
        let low = ask(Offset::Beginning)?;
        Ok(high.into_iter().filter_map(|(t, h)| low.get(&t).map(|l| (t.clone(), (*l, h)))).collect())
    }

    /// The high watermark of `topic` asked of the broker (blocks up to `timeout`).
    pub fn high_watermark(&self, topic: &str, timeout: Duration) -> Result<i64, KafkaError> {
        self.clients[0]
            .consumer
            .fetch_watermarks(topic, 0, timeout)
            .map(|(_, high)| high)
            .map_err(|e| KafkaError::Kafka(format!("{topic}: {e}")))
    }
}

impl Drop for TopicConsumer {
    fn drop(&mut self) {
        let topics: Vec<String> = self.started.keys().cloned().collect();
        for t in topics {
            self.stop(&t);
        }
        // The clients (and their queues) before the pipe they write to.
        self.clients.clear();
    }
}

/// One message of a queue to `f`.
///
/// # Safety
/// `msg` is a message librdkafka handed over and not yet destroyed.
unsafe fn hand_over(msg: &rd::rd_kafka_message_t, f: &mut impl FnMut(Polled<'_>)) {
    let topic =
        if msg.rkt.is_null() { "" } else { CStr::from_ptr(rd::rd_kafka_topic_name(msg.rkt)).to_str().unwrap_or("") };
    if msg.err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF {
        f(Polled::End { topic });
    } else if msg.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        let text = CStr::from_ptr(rd::rd_kafka_err2str(msg.err)).to_string_lossy();
        let detail = if msg.payload.is_null() || msg.len == 0 {
            String::new()
        } else {
            format!(": {}", String::from_utf8_lossy(std::slice::from_raw_parts(msg.payload as *const u8, msg.len)))
        };
        f(Polled::Error { topic, error: format!("{text}{detail}") });
    } else {
        let value = (!msg.payload.is_null()).then(|| std::slice::from_raw_parts(msg.payload as *const u8, msg.len));
        f(Polled::Record { topic, offset: msg.offset, value });
    }
}

/// A non-blocking pipe the clients' queues write a byte to when they get messages.
struct Wake {
    read_fd: libc::c_int,
    write_fd: libc::c_int,
}

impl Wake {
    fn new() -> std::io::Result<Wake> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Wake { read_fd: fds[0], write_fd: fds[1] })
    }

    /// Empty the pipe.
    fn drain(&self) {
        let mut buf = [0u8; 256];
        // SAFETY: reads into a local buffer of the given size; the descriptor is non-blocking.
        while unsafe { libc::read(self.read_fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }

    /// Wait up to `timeout` for a byte; whether one came.
    fn wait(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd { fd: self.read_fd, events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd; EINTR and errors count as no byte (the caller polls again).
        unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        // SAFETY: the descriptors are ours and closed once.
        unsafe {
            libc::close(self.read_fd);
            libc::close(self.write_fd);
        }
    }
}

fn last_error() -> String {
    // SAFETY: reads the calling thread's last error code; the description is a static string.
    unsafe { CStr::from_ptr(rd::rd_kafka_err2str(rd::rd_kafka_last_error())).to_string_lossy().into_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_offsets_are_librdkafkas_logical_offsets() {
        assert_eq!(StartAt::End.raw(), -1);
        assert_eq!(StartAt::Beginning.raw(), -2);
        assert_eq!(StartAt::Tail(1).raw(), -2001);
        assert_eq!(StartAt::Tail(500).raw(), -2500);
        assert_eq!(StartAt::Tail(0).raw(), -1);
        assert_eq!(StartAt::Offset(42).raw(), 42);
    }

    #[test]
    fn a_consumer_is_created_without_a_broker_and_reads_nothing() {
        let figures = Arc::new(BrokerFigures::default());
        let settings = vec![("bootstrap.servers".to_string(), "127.0.0.1:1".to_string())];
        let mut c = TopicConsumer::new(&settings, figures, 1000).unwrap();
        c.start("lsst.sal.Test.logevent_heartbeat", StartAt::Tail(1)).unwrap();
        assert!(c.is_reading("lsst.sal.Test.logevent_heartbeat"));
        let mut records = 0;
        c.poll(Duration::from_millis(10), |p| {
            if matches!(p, Polled::Record { .. }) {
                records += 1
            }
        });
        assert_eq!(records, 0);
        c.stop("lsst.sal.Test.logevent_heartbeat");
        assert_eq!(c.reading_count(), 0);
    }

    #[test]
    fn topics_beyond_a_clients_share_go_to_new_clients_and_stopped_ones_make_room() {
        let settings = vec![("bootstrap.servers".to_string(), "127.0.0.1:1".to_string())];
        let mut c = TopicConsumer::new(&settings, Arc::default(), 2).unwrap();
        assert_eq!(c.client_count(), 1);
        for i in 0..5 {
            c.start(&format!("lsst.sal.Test.t{i}"), StartAt::End).unwrap();
        }
        assert_eq!(c.client_count(), 3);
        assert_eq!(c.clients.iter().map(|k| k.topics).collect::<Vec<_>>(), vec![2, 2, 1]);
        c.stop("lsst.sal.Test.t0");
        c.start("lsst.sal.Test.t5", StartAt::End).unwrap();
        c.start("lsst.sal.Test.t6", StartAt::End).unwrap();
        assert_eq!(c.client_count(), 3, "the freed place and the third client's are used first");
        assert_eq!(c.reading_count(), 6);
        c.start("lsst.sal.Test.t7", StartAt::End).unwrap();
        assert_eq!(c.client_count(), 4);
        // Nothing to read: the wait ends at its timeout without records.
        assert_eq!(c.poll(Duration::from_millis(20), |_| panic!("no broker, no records")), 0);
    }

    #[test]
    fn statistics_are_off_unless_a_setting_turns_them_on() {
        let broker = ("bootstrap.servers".to_string(), "127.0.0.1:1".to_string());
        let figures = Arc::new(BrokerFigures::default());
        let c = TopicConsumer::new(&[broker.clone()], figures.clone(), 1000).unwrap();
        assert_eq!(c.config.get("statistics.interval.ms"), Some("0"));
        assert!(!figures.statistics.load(Ordering::Relaxed));
        let on = vec![broker, ("statistics.interval.ms".to_string(), "300".to_string())];
        let c = TopicConsumer::new(&on, figures.clone(), 1000).unwrap();
        assert_eq!(c.config.get("statistics.interval.ms"), Some("300"), "the configuration wins");
        assert!(figures.statistics.load(Ordering::Relaxed));
    }

    #[test]
    fn a_bad_setting_is_an_error_naming_it() {
        let settings = vec![("no.such.setting".to_string(), "1".to_string())];
        let e = TopicConsumer::new(&settings, Arc::default(), 1000).err().unwrap().to_string();
        assert!(e.contains("no.such.setting"), "{e}");
    }
}
