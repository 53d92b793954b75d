//! The link to the LOVE-manager (or to standard output).
//!
//! Producers hand their messages to a [`ManagerHandle`]; link events (connected, disconnected,
//! time to re-subscribe, an initial_state request) come back on a broadcast channel.
//!
//! [`start`] runs one of two sinks behind the same handle:
//! - the websocket link ([`SinkKind::Websocket`]): one connection to the manager, reconnected
//!   forever with a bounded, jittered wait; keepalive pings; a bounded outgoing queue (see
//!   `queue.rs` for the coalescing rules);
//! - standard output ([`SinkKind::Stdout`]): each message as one JSON line.
//!
//! Differences from the original LOVE-producer (spec `love-protocol.md`, section h):
//! - no ghost connection after a disconnect (quirk 4);
//! - [`LinkEvent::Connected`] on every connection makes the producers send their initial data
//!   *and* their subscriptions at once (quirk 5), then [`LinkEvent::Resubscribe`] every
//!   `resubscribe_period` while connected;
//! - messages produced while the link is down are not all dropped (quirk 6): telemetry and
//!   events wait in the queue, telemetry coalesced to the latest per stream, events coalesced
//!   to the latest per stream once the queue is over capacity; subscriptions and other
//!   messages are dropped while disconnected (they are re-sent on connect);
//! - malformed or unexpected frames from the manager are logged (rate-limited) and dropped
//!   (quirks 1-3);
//! - every message is checked to be JSON the manager's `json.loads` accepts before it is
//!   queued: a producer's invalid message is dropped and counted, never sent (the manager drops
//!   the connection on a frame it cannot parse, and the message would be re-sent forever);
//! - the password is percent-encoded (quirk 20) and never shown;
//! - a fatal error ends the link task with `Err`, so the binary exits non-zero (quirk 25).

pub mod config;
mod limit;
mod queue;
pub mod redact;
mod stdout;
mod ws;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use love_plugin_api::abi::Category;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::AsyncWrite;
use tokio::sync::{broadcast, Notify};
use tokio::task::JoinHandle;

pub use config::{ConfigError, LinkConfig, ManagerUrl, Scheme, SinkKind, ENV_PASSWORD, ENV_WEBSOCKET_HOST};
pub use ws::{classify_frame, Frame};

use crate::shutdown::Shutdown;
use queue::{OutQueue, Pushed};

/// One message for the manager, with the stream it is about.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Coalescing category (event, telemetry, other).
    pub category: Category,
    /// Envelope `csc`.
    pub csc: String,
    /// Envelope `salindex`.
    pub salindex: i64,
    /// Stream name.
    pub stream: String,
    /// The JSON text.
    pub text: String,
    /// When the sample behind it was received (Unix seconds), 0 when not applicable.
    pub created: f64,
}

/// What the link tells the producers.
#[derive(Debug, Clone)]
pub enum LinkEvent {
    /// A (real) connection is up: send initial data, then subscriptions.
    Connected,
    /// The connection is down.
    Disconnected,
    /// Time to re-send the initial_state subscriptions (periodic).
    Resubscribe,
    /// An initial_state request from the manager (the JSON text, already checked to parse and
    /// to have `category == "initial_state"`).
    Request(Arc<str>),
}

/// Fatal link errors: the link task ends with one of these and the binary should exit non-zero.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS could not be set up (`wss://`).
    #[error("cannot set up TLS for the LOVE-manager at {url}: {reason}")]
    Tls {
        /// The manager URL, redacted.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A connection error that retrying cannot fix.
    #[error("cannot connect to the LOVE-manager at {url}: {reason}")]
    Fatal {
        /// The manager URL, redacted.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Writing to standard output failed (for example a closed pipe).
    #[error("cannot write the messages to standard output: {0}")]
    Stdout(#[source] std::io::Error),
}

/// Counters of the link, for metrics and tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkStats {
    /// Whether the link is up now.
    pub connected: bool,
    /// Connections made (including the first).
    pub connections: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Of those, handshakes rejected with HTTP 403 (wrong password).
    pub password_rejections: u64,
    /// Established connections that were lost (closed, reset, keepalive timeout).
    pub disconnections: u64,
    /// Event messages written.
    pub sent_event: u64,
    /// Telemetry messages written.
    pub sent_telemetry: u64,
    /// Other messages (subscriptions, replies) written.
    pub sent_other: u64,
    /// Messages replaced in the queue by a newer one of the same stream.
    pub coalesced: u64,
    /// Messages dropped because the queue was full.
    pub dropped_overflow: u64,
    /// Other messages (subscriptions) dropped because the link was down.
    pub dropped_disconnected: u64,
    /// Messages dropped because they are not JSON the manager can parse (a producer's fault).
    pub dropped_invalid: u64,
    /// Frames from the manager ignored as malformed or unexpected.
    pub bad_frames: u64,
    /// Messages waiting now.
    pub queue_depth: usize,
    /// Bytes of text waiting now.
    pub queue_bytes: usize,
    /// The most messages ever waiting at once.
    pub queue_high_water: usize,
    /// The last connection error (password redacted), if any since the last connection.
    pub last_error: Option<String>,
}

impl LinkStats {
    /// Reconnections: connections after the first.
    pub fn reconnects(&self) -> u64 {
        self.connections.saturating_sub(1)
    }

    /// Messages written, all categories.
    pub fn sent(&self) -> u64 {
        self.sent_event + self.sent_telemetry + self.sent_other
    }
}

/// The link's metrics, in prometheus-client's types, updated where the events happen
/// ([`crate::metrics`] registers them).
#[derive(Debug, Default)]
pub struct LinkMetrics {
    /// 1 while the link is up.
    pub connected: Gauge,
    /// Connections made (including the first).
    pub connections: Counter,
    /// Handshakes rejected with HTTP 403 (wrong password).
    pub password_rejections: Counter,
    /// Other failed connection attempts.
    pub other_connect_failures: Counter,
    /// Established connections that were lost.
    pub disconnections: Counter,
    /// Event messages written.
    pub sent_event: Counter,
    /// Telemetry messages written.
    pub sent_telemetry: Counter,
    /// Other messages written.
    pub sent_other: Counter,
    /// Messages replaced in the queue by a newer one of the same stream.
    pub coalesced: Counter,
    /// Messages dropped because the queue was full.
    pub dropped_overflow: Counter,
    /// Other messages dropped because the link was down.
    pub dropped_disconnected: Counter,
    /// Messages dropped because they are not JSON the manager can parse.
    pub dropped_invalid: Counter,
    /// Frames from the manager ignored as malformed or unexpected.
    pub bad_frames: Counter,
    /// Messages waiting now.
    pub queue_depth: Gauge,
    /// Bytes of text waiting now.
    pub queue_bytes: Gauge,
}

/// The queue, locked; its size goes to the metrics when the lock is released.
struct QueueGuard<'a> {
    queue: std::sync::MutexGuard<'a, OutQueue>,
    metrics: &'a LinkMetrics,
}

impl std::ops::Deref for QueueGuard<'_> {
    type Target = OutQueue;
    fn deref(&self) -> &OutQueue {
        &self.queue
    }
}

impl std::ops::DerefMut for QueueGuard<'_> {
    fn deref_mut(&mut self) -> &mut OutQueue {
        &mut self.queue
    }
}

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        self.metrics.queue_depth.set(self.queue.len() as i64);
        self.metrics.queue_bytes.set(self.queue.bytes() as i64);
    }
}

/// State shared by the handle and the sink task.
struct Shared {
    queue: Mutex<OutQueue>,
    notify: Notify,
    events: broadcast::Sender<LinkEvent>,
    connected: AtomicBool,
    metrics: Arc<LinkMetrics>,
    last_error: Mutex<Option<String>>,
    /// Warnings about bad frames from the manager.
    bad_frame_log: limit::LogLimit,
    /// Errors about invalid messages from producers.
    invalid_log: limit::LogLimit,
}

impl Shared {
    fn new(config: &LinkConfig) -> Shared {
        let (events, _) = broadcast::channel(1024);
        Shared {
            queue: Mutex::new(OutQueue::new(config.queue_capacity, config.queue_max_bytes)),
            notify: Notify::new(),
            events,
            connected: AtomicBool::new(false),
            metrics: Arc::default(),
            last_error: Mutex::new(None),
            bad_frame_log: limit::LogLimit::default(),
            invalid_log: limit::LogLimit::default(),
        }
    }

    fn queue(&self) -> QueueGuard<'_> {
        QueueGuard { queue: crate::locks::lock(&self.queue), metrics: &self.metrics }
    }

    fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::SeqCst);
        self.metrics.connected.set(up as i64);
    }

    fn pop(&self) -> Option<Outgoing> {
        self.queue().pop()
    }

    fn emit(&self, ev: LinkEvent) {
        // No receiver is not an error: nobody listens yet.
        let _ = self.events.send(ev);
    }

    fn count_sent(&self, category: Category) {
        let m = &self.metrics;
        let counter = match category {
            Category::EVENT => &m.sent_event,
            Category::TELEMETRY => &m.sent_telemetry,
            _ => &m.sent_other,
        };
        counter.inc();
    }

    fn set_error(&self, e: Option<String>) {
        *crate::locks::lock(&self.last_error) = e;
    }

    /// The link is up: count it, tell the producers.
    fn up(&self) {
        self.metrics.connections.inc();
        self.set_error(None);
        self.set_connected(true);
        self.emit(LinkEvent::Connected);
    }

    /// The link is down: purge what need not wait, tell the producers.
    fn down(&self) {
        self.set_connected(false);
        let purged = self.queue().purge(Category::OTHER);
        self.metrics.dropped_disconnected.inc_by(purged);
        self.emit(LinkEvent::Disconnected);
    }
}

/// The producers' side of the link. Cheap to clone.
#[derive(Clone)]
pub struct ManagerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ManagerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerHandle").field("connected", &self.is_connected()).finish()
    }
}

impl ManagerHandle {
    /// Queue a message. Never blocks, never fails: the queue is bounded by coalescing and, as a
    /// last resort, by dropping its oldest messages (counted in [`LinkStats`]). A message that
    /// is not JSON the manager can parse is dropped here, logged with its component and counted
    /// (`dropped_invalid`): checked once, as it enters, not at every (re)send.
    pub fn send(&self, msg: Outgoing) {
        let s = &self.shared;
        if let Err(e) = love_plugin_api::json::validate(&msg.text) {
            s.metrics.dropped_invalid.inc();
            if let Some(note) = s.invalid_log.admit() {
                tracing::error!(
                    component = %msg.csc,
                    index = msg.salindex,
                    stream = %msg.stream,
                    "producer error: a message for the LOVE-manager is not valid JSON ({e}); dropped, not sent{note}"
                );
            }
            return;
        }
        if msg.category == Category::OTHER && !s.connected.load(Ordering::SeqCst) {
            s.metrics.dropped_disconnected.inc();
            return;
        }
        match s.queue().push(msg) {
            Pushed::Appended => {}
            Pushed::Coalesced => {
                s.metrics.coalesced.inc();
            }
            Pushed::AppendedDropping(n) => {
                s.metrics.dropped_overflow.inc_by(n);
            }
        }
        s.notify.notify_one();
    }

    /// A receiver of link events from now on.
    pub fn events(&self) -> broadcast::Receiver<LinkEvent> {
        self.shared.events.subscribe()
    }

    /// Whether the link is up now (always true for the stdout sink once started).
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// The link's metrics.
    pub fn metrics(&self) -> Arc<LinkMetrics> {
        self.shared.metrics.clone()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LinkStats {
        let s = &self.shared;
        let m = &s.metrics;
        let (queue_depth, queue_bytes, queue_high_water) = {
            let q = s.queue();
            (q.len(), q.bytes(), q.high_water())
        };
        LinkStats {
            connected: self.is_connected(),
            connections: m.connections.get(),
            connect_failures: m.password_rejections.get() + m.other_connect_failures.get(),
            password_rejections: m.password_rejections.get(),
            disconnections: m.disconnections.get(),
            sent_event: m.sent_event.get(),
            sent_telemetry: m.sent_telemetry.get(),
            sent_other: m.sent_other.get(),
            coalesced: m.coalesced.get(),
            dropped_overflow: m.dropped_overflow.get(),
            dropped_disconnected: m.dropped_disconnected.get(),
            dropped_invalid: m.dropped_invalid.get(),
            bad_frames: m.bad_frames.get(),
            queue_depth,
            queue_bytes,
            queue_high_water,
            last_error: crate::locks::lock(&s.last_error).clone(),
        }
    }
}

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

impl Outbox for ManagerHandle {
    fn send(&self, msg: Outgoing) {
        ManagerHandle::send(self, msg)
    }

    fn events(&self) -> broadcast::Receiver<LinkEvent> {
        ManagerHandle::events(self)
    }

    fn is_connected(&self) -> bool {
        ManagerHandle::is_connected(self)
    }

    fn connection_count(&self) -> u64 {
        self.shared.metrics.connections.get()
    }
}

/// Start the link (or the stdout sink) chosen by `config.sink`. Must be called inside a tokio
/// runtime. The task ends `Ok` after a graceful shutdown (queue flushed within
/// `config.shutdown_flush`, close frame sent) and `Err` on a fatal error.
///
/// Events are broadcast: subscribe with [`ManagerHandle::events`] before the first `.await`
/// after `start` to be sure to see the first [`LinkEvent::Connected`], or check
/// [`ManagerHandle::is_connected`].
pub fn start(config: LinkConfig, shutdown: Shutdown) -> (ManagerHandle, JoinHandle<Result<(), LinkError>>) {
    match config.sink {
        SinkKind::Stdout => start_with_writer(config, shutdown, tokio::io::stdout()),
        SinkKind::Websocket => {
            let shared = Arc::new(Shared::new(&config));
            let task = tokio::spawn(ws::run(config, shared.clone(), shutdown));
            (ManagerHandle { shared }, task)
        }
    }
}

/// The stdout sink writing to any writer (tests, or a file). Ignores `config.sink` and
/// `config.url`.
pub fn start_with_writer<W>(
    config: LinkConfig,
    shutdown: Shutdown,
    writer: W,
) -> (ManagerHandle, JoinHandle<Result<(), LinkError>>)
where
    W: AsyncWrite + Send + Unpin + 'static,
{
    let shared = Arc::new(Shared::new(&config));
    // Up at once, so that producers that check `is_connected` send their initial data.
    shared.set_connected(true);
    let task = tokio::spawn(stdout::run(writer, config, shared.clone(), shutdown));
    (ManagerHandle { shared }, task)
}
