//! The websocket link to the LOVE-manager.

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::Value;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::Connector;
use tracing::{debug, error, info, warn};

use super::{ConfigError, LinkConfig, LinkError, LinkEvent, ManagerUrl, Outgoing, Scheme, Shared};
use crate::shutdown::Shutdown;

/// Largest frame accepted from the manager (its messages are small).
const MAX_INCOMING: usize = 16 * 1024 * 1024;

/// Most messages written to the socket in one flush.
const MAX_BATCH: usize = 64;

fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::thread_rng().gen_range(0.8..=1.2))
}

/// Build the rustls configuration: the system roots plus the PEM certificates of `ca_file`.
fn tls_config(url: &ManagerUrl, ca_file: Option<&Path>) -> Result<rustls::ClientConfig, LinkError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    let tls_err = |reason: String| LinkError::Tls { url: url.to_string(), reason };
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        debug!("while loading the system CA certificates: {e}");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    debug!("{added} system CA certificates loaded ({ignored} ignored)");
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| tls_err(format!("cannot read CA certificates from {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(tls_err(format!("no PEM certificate in the CA file {}", path.display())));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| tls_err(format!("invalid certificate in the CA file {}: {e}", path.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(tls_err("no CA certificate: the system has none and no --ca-file was given".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Remove the password from a text that might (defensively) contain it.
fn scrub(url: &ManagerUrl, text: String) -> String {
    let secret = url.expose_secret_url();
    let shown = url.to_string();
    let text = text.replace(&secret, &shown);
    match secret.rsplit_once("password=") {
        Some((_, p)) if p.len() >= 4 => text.replace(p, "***"),
        _ => text,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailKind {
    Rejected,
    Refused,
    Other,
}

/// Log a connection failure: always the first of a streak or a change of kind, then every 20th,
/// the rest at debug level.
struct FailureLog {
    streak: u64,
    kind: Option<FailKind>,
}

impl FailureLog {
    fn log(&mut self, kind: FailKind, text: &str) {
        self.streak += 1;
        let loud = self.kind != Some(kind) || self.streak == 1 || matches!(self.streak % 20, 0);
        self.kind = Some(kind);
        let again = if self.streak > 1 { format!(" (attempt {})", self.streak) } else { String::new() };
        match (loud, kind) {
            (true, FailKind::Rejected) => error!("{text}{again}; retrying"),
            (true, _) => warn!("{text}{again}; retrying"),
            (false, _) => debug!("{text}{again}; retrying"),
        }
    }

    fn reset(&mut self) {
        self.streak = 0;
        self.kind = None;
    }
}

pub(super) async fn run(config: LinkConfig, shared: Arc<Shared>, mut shutdown: Shutdown) -> Result<(), LinkError> {
    let url = config.url.clone().ok_or(LinkError::Config(ConfigError::NoManagerUrl))?;
    let connector = match url.scheme() {
        Scheme::Wss => Connector::Rustls(Arc::new(tls_config(&url, config.ca_file.as_deref())?)),
        Scheme::Ws => Connector::Plain,
    };
    let ws_config = WebSocketConfig {
        max_message_size: Some(MAX_INCOMING),
        max_frame_size: Some(MAX_INCOMING),
        ..WebSocketConfig::default()
    };
    let mut failures = FailureLog { streak: 0, kind: None };
    let mut wait = Duration::ZERO;
    info!("LOVE-manager link to {url}");
    loop {
        if !wait.is_zero() {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        if shutdown.is_triggered() {
            break;
        }
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            url.expose_secret_url(),
            Some(ws_config),
            true,
            Some(connector.clone()),
        );
        let attempt = tokio::select! {
            _ = shutdown.wait() => break,
            r = tokio::time::timeout(config.connect_timeout, connect) => r,
        };
        let (kind, text) = match attempt {
            Ok(Ok((ws, _response))) => {
                failures.reset();
                info!("connected to the LOVE-manager at {url}");
                let started = Instant::now();
                let end = session(ws, &config, &shared, &mut shutdown).await;
                match end {
                    SessionEnd::Shutdown => {
                        shared.down();
                        return Ok(());
                    }
                    SessionEnd::Lost(reason) => {
                        shared.metrics.disconnections.inc();
                        let reason = scrub(&url, reason);
                        warn!("lost the connection to the LOVE-manager at {url}: {reason}; reconnecting");
                        shared.set_error(Some(format!("lost the connection to the LOVE-manager at {url}: {reason}")));
                        shared.down();
                    }
                }
                // A connection that lived long enough is retried at once (a restart of the
                // manager, a network blip); one that died young waits, so that a manager that
                // closes every connection is not hammered.
                wait = if started.elapsed() >= config.reconnect_wait {
                    config.reconnect_wait.mul_f64(rand::thread_rng().gen_range(0.0..=0.1))
                } else {
                    jittered(config.reconnect_wait)
                };
                continue;
            }
            Ok(Err(e)) => failure(e, &url, &shared)?,
            Err(_) => (
                FailKind::Other,
                format!("cannot connect to the LOVE-manager at {url}: no answer within {:?}", config.connect_timeout),
            ),
        };
        if kind != FailKind::Rejected {
            shared.metrics.other_connect_failures.inc();
        }
        failures.log(kind, &text);
        shared.set_error(Some(text));
        wait = jittered(config.reconnect_wait);
    }
    let dropped = shared.queue().clear();
    if dropped > 0 {
        info!("stopping while disconnected from the LOVE-manager: {dropped} queued messages dropped");
    }
    Ok(())
}

/// What a failed connection attempt was, and how to say it; `Err` when retrying cannot help.
fn failure(e: WsError, url: &ManagerUrl, shared: &Shared) -> Result<(FailKind, String), LinkError> {
    Ok(match e {
        WsError::Http(response) if response.status().as_u16() == 403 => {
            shared.metrics.password_rejections.inc();
            (FailKind::Rejected, format!("the LOVE-manager at {url} rejected the password (HTTP 403)"))
        }
        WsError::Http(response) => (
            FailKind::Other,
            format!("the LOVE-manager at {url} refused the websocket handshake (HTTP {})", response.status()),
        ),
        WsError::Url(e) => {
            let reason = scrub(url, e.to_string());
            error!("cannot connect to the LOVE-manager at {url}: {reason}");
            return Err(LinkError::Fatal { url: url.to_string(), reason });
        }
        WsError::Io(e) => {
            (FailKind::Refused, format!("cannot connect to the LOVE-manager at {url}: {}", scrub(url, e.to_string())))
        }
        e => (FailKind::Other, format!("cannot connect to the LOVE-manager at {url}: {}", scrub(url, e.to_string()))),
    })
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

type WsStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Milliseconds since `base`, for atomics.
fn ms_since(base: Instant) -> u64 {
    base.elapsed().as_millis() as u64
}

type WsSink = futures_util::stream::SplitSink<WsStream, Message>;
type WsSource = futures_util::stream::SplitStream<WsStream>;

/// When the manager was last heard from, for the keepalive: milliseconds since `base`.
struct Heard {
    base: Instant,
    last_rx: AtomicU64,
}

impl Heard {
    fn now(&self) {
        self.last_rx.store(ms_since(self.base), Ordering::Relaxed);
    }

    fn at(&self) -> Instant {
        self.base + Duration::from_millis(self.last_rx.load(Ordering::Relaxed))
    }
}

/// One connection, from the handshake to its end.
async fn session(ws: WsStream, config: &LinkConfig, shared: &Shared, shutdown: &mut Shutdown) -> SessionEnd {
    let (mut sink, mut stream) = ws.split();
    let heard = Heard { base: Instant::now(), last_rx: AtomicU64::new(0) };
    let ping_interval = config.ping_interval.max(Duration::from_millis(10));
    // Messages handed to the websocket but not yet flushed to the socket: on a failure they
    // are put back at the front of the queue (they may or may not have reached the manager).
    let mut inflight: Vec<Outgoing> = Vec::new();
    shared.up();
    let end = tokio::select! {
        _ = shutdown.wait() => None,
        r = write_queue(&mut sink, shared, &mut inflight, &heard, ping_interval) => Some(match r {
            Err(e) => e,
            Ok(()) => "writer ended".into(),
        }),
        reason = read_frames(&mut stream, shared, &heard) => Some(reason),
        reason = keepalive_watchdog(&heard, ping_interval + config.pong_timeout) => Some(reason),
        _ = resubscribe(shared, config.resubscribe_period.max(Duration::from_millis(10))) => None,
    };
    // They may or may not have reached the manager: send them again rather than lose them.
    for msg in inflight.drain(..).rev() {
        shared.queue().push_front(msg);
    }
    match end {
        Some(reason) => SessionEnd::Lost(reason),
        None => {
            close(&mut sink, &mut stream, config, shared).await;
            SessionEnd::Shutdown
        }
    }
}

/// Re-send the subscriptions every `period` while connected.
async fn resubscribe(shared: &Shared, period: Duration) {
    let mut timer = tokio::time::interval_at(Instant::now() + period, period);
    loop {
        timer.tick().await;
        shared.emit(LinkEvent::Resubscribe);
    }
}

/// Write what is queued, in batches, and ping when the manager has been quiet for
/// `ping_interval`. Ends only with an error.
async fn write_queue(
    sink: &mut WsSink,
    shared: &Shared,
    inflight: &mut Vec<Outgoing>,
    heard: &Heard,
    ping_interval: Duration,
) -> Result<(), String> {
    let mut last_ping = 0u64;
    let ping_due = |last_ping: u64| {
        heard.base + Duration::from_millis(heard.last_rx.load(Ordering::Relaxed).max(last_ping)) + ping_interval
    };
    loop {
        // Feed what is queued and flush once per batch: one write for many frames rather
        // than one per message (tungstenite also writes out when its buffer fills).
        while let Some(msg) = shared.pop() {
            let text = msg.text.clone();
            inflight.push(msg);
            sink.feed(Message::Text(text)).await.map_err(|e| format!("send failed: {e}"))?;
            if inflight.len() >= MAX_BATCH {
                flush(sink, shared, inflight).await?;
                // A link that always has a backlog still pings, or the watchdog would take
                // a slow but healthy connection for a dead one.
                if Instant::now() >= ping_due(last_ping) {
                    sink.send(Message::Ping(Vec::new())).await.map_err(|e| format!("ping failed: {e}"))?;
                    last_ping = ms_since(heard.base);
                }
            }
        }
        if !inflight.is_empty() {
            flush(sink, shared, inflight).await?;
        }
        let due = ping_due(last_ping);
        tokio::select! {
            _ = shared.notify.notified() => {}
            _ = tokio::time::sleep_until(due) => {
                sink.send(Message::Ping(Vec::new())).await.map_err(|e| format!("ping failed: {e}"))?;
                last_ping = ms_since(heard.base);
            }
        }
    }
}

/// Flush the frames fed and count them sent.
async fn flush(sink: &mut WsSink, shared: &Shared, inflight: &mut Vec<Outgoing>) -> Result<(), String> {
    sink.flush().await.map_err(|e| format!("send failed: {e}"))?;
    for m in inflight.drain(..) {
        shared.count_sent(m.category);
    }
    Ok(())
}

/// Read the manager's frames until the connection ends; returns why it ended.
async fn read_frames(stream: &mut WsSource, shared: &Shared, heard: &Heard) -> String {
    loop {
        let msg = match stream.next().await {
            None => return "the connection ended".to_string(),
            Some(Err(e)) => return format!("receive failed: {e}"),
            Some(Ok(msg)) => msg,
        };
        heard.now();
        match msg {
            Message::Text(text) => handle_text(shared, text),
            Message::Binary(b) => {
                bad_frame(shared, &format!("binary frame of {} bytes from the LOVE-manager ignored", b.len()))
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            Message::Close(frame) => {
                return match frame {
                    Some(f) => format!("closed by the manager ({} {})", f.code, f.reason),
                    None => "closed by the manager".to_string(),
                }
            }
        }
    }
}

/// Ends when nothing has come from the manager for `limit`.
async fn keepalive_watchdog(heard: &Heard, limit: Duration) -> String {
    loop {
        let deadline = heard.at() + limit;
        if Instant::now() >= deadline {
            return format!("no answer to keepalive pings for {limit:?}");
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// Graceful end: flush the queue (bounded by `shutdown_flush`), send a close frame and wait a
/// little for the manager's.
async fn close(sink: &mut WsSink, stream: &mut WsSource, config: &LinkConfig, shared: &Shared) {
    let flush = async {
        while let Some(msg) = shared.pop() {
            let category = msg.category;
            if sink.send(Message::Text(msg.text)).await.is_err() {
                return false;
            }
            shared.count_sent(category);
        }
        true
    };
    match tokio::time::timeout(config.shutdown_flush, flush).await {
        Ok(true) => debug!("outgoing queue flushed"),
        Ok(false) => warn!("the connection failed while flushing the queue at shutdown"),
        Err(_) => {
            let left = shared.queue().clear();
            warn!("shutdown: {left} messages not sent within {:?}", config.shutdown_flush)
        }
    }
    let frame = CloseFrame { code: CloseCode::Normal, reason: Cow::Borrowed("love-host shutting down") };
    let bye = async {
        if sink.send(Message::Close(Some(frame))).await.is_ok() {
            // Wait for the manager's close frame (or the end of the stream).
            while let Some(Ok(msg)) = stream.next().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), bye).await;
    info!("closed the connection to the LOVE-manager");
}

/// What a text frame from the manager is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// An initial_state request for the producers (`category` "initial_state", `data` a list
    /// whose first element is an object).
    Request,
    /// Harmless and not for the producers (another category, the subscription confirmation):
    /// logged at debug level.
    Ignored(String),
    /// Malformed or unexpected: logged as a warning (rate-limited) and dropped.
    Bad(String),
}

/// Classify a text frame from the manager. Never panics, whatever the text (the manager link's
/// fuzz suite checks it).
pub fn classify_frame(text: &str) -> Frame {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Frame::Bad(format!("malformed JSON from the LOVE-manager ignored ({e}): {}", preview(text))),
    };
    let Some(obj) = value.as_object() else {
        return Frame::Bad(format!(
            "unexpected message from the LOVE-manager (not an object) ignored: {}",
            preview(text)
        ));
    };
    match obj.get("category").and_then(Value::as_str) {
        Some("initial_state") => {
            let ok = obj.get("data").and_then(Value::as_array).and_then(|a| a.first()).is_some_and(Value::is_object);
            if ok {
                Frame::Request
            } else {
                Frame::Bad(format!("initial_state request without a data list of objects ignored: {}", preview(text)))
            }
        }
        Some(other) => Frame::Ignored(format!("message of category {other:?} from the LOVE-manager ignored")),
        None => match obj.get("data").and_then(Value::as_str) {
            Some(d) if d.starts_with("Successfully subscribed") => Frame::Ignored(format!("manager: {}", preview(d))),
            _ => Frame::Ignored(format!("message without a category from the LOVE-manager ignored: {}", preview(text))),
        },
    }
}

/// A text frame from the manager: only initial_state requests go to the producers.
fn handle_text(shared: &Shared, text: String) {
    match classify_frame(&text) {
        Frame::Request => {
            debug!("initial_state request from the LOVE-manager: {}", preview(&text));
            shared.emit(LinkEvent::Request(Arc::from(text)));
        }
        Frame::Ignored(why) => debug!("{why}"),
        Frame::Bad(why) => bad_frame(shared, &why),
    }
}

/// Count a bad frame and warn about it, at most a burst a minute (see `limit.rs`).
fn bad_frame(shared: &Shared, why: &str) {
    shared.metrics.bad_frames.inc();
    if let Some(note) = shared.bad_frame_log.admit() {
        warn!("{why}{note}");
    }
}

fn preview(text: &str) -> String {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}
