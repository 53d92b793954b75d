//! Test support for love-host: a fake LOVE-manager.
//!
//! [`FakeManager`] listens on `127.0.0.1` and behaves as the LOVE-manager does towards a
//! producer (spec `love-protocol.md` sections a and d):
//! - websocket path matching `^manager(.*?)/ws/subscription/?$` (after the leading `/`), else
//!   HTTP 404;
//! - the `password` query parameter, read with form decoding, must equal its password, else the
//!   handshake is refused with HTTP 403;
//! - each `{"option": "subscribe", "category": ..., "csc": ..., "salindex": ..., "stream": ...}`
//!   adds the connection to the group `<category>-<csc>-<salindex>-<stream>` and is confirmed
//!   with `{"data": "Successfully subscribed to <group>"}`;
//! - [`FakeManager::send_initial_state_request`] sends the manager's real initial_state request
//!   (with `subscription` and `tracing`) to the connections in `initial_state-<csc>-all-all`, as
//!   the manager does when a browser subscribes to `event-<csc>-<salindex>-<event>`.
//!
//! Every frame received is recorded with its time and connection number. The fake can close
//! its connections, stop and restart on the same port, change its password, and stop reading
//! (to exercise back-pressure). It stops when dropped.

pub mod kafka_broker;
pub mod registry;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// What a received frame was.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameKind {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
    /// A ping.
    Ping,
    /// A close frame.
    Close,
}

/// One frame received from a producer.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Connection number (1, 2, … in order of accepted connections).
    pub conn: u64,
    /// When it arrived, since the fake started.
    pub at: Duration,
    /// What it was.
    pub kind: FrameKind,
}

impl Frame {
    /// The text, if a text frame.
    pub fn text(&self) -> Option<&str> {
        match &self.kind {
            FrameKind::Text(t) => Some(t),
            _ => None,
        }
    }

    /// The parsed JSON, if a text frame that parses.
    pub fn json(&self) -> Option<Value> {
        self.text().and_then(|t| serde_json::from_str(t).ok())
    }
}

/// One websocket handshake attempt.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// When, since the fake started.
    pub at: Duration,
    /// The request path and query, as received.
    pub path_qs: String,
    /// The `password` query parameter, form-decoded.
    pub password: Option<String>,
    /// The HTTP status answered (101 accepted, 403 wrong password, 404 wrong path).
    pub status: u16,
    /// The connection number when accepted.
    pub conn: Option<u64>,
}

enum Cmd {
    Send(Message),
    Close,
}

struct Conn {
    tx: mpsc::UnboundedSender<Cmd>,
    groups: BTreeSet<String>,
    open: bool,
}

#[derive(Default)]
struct State {
    frames: Vec<Frame>,
    handshakes: Vec<Handshake>,
    conns: BTreeMap<u64, Conn>,
}

struct Inner {
    start: Instant,
    password: Mutex<String>,
    legacy: Mutex<bool>,
    strict: std::sync::atomic::AtomicBool,
    state: Mutex<State>,
    next_conn: AtomicU64,
    reading: watch::Sender<bool>,
    /// Every connection task (to abort them on stop).
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// TLS (`wss://`), when started with [`FakeManager::start_tls`].
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, conn: u64, kind: FrameKind) {
        let at = self.start.elapsed();
        self.state().frames.push(Frame { conn, at, kind });
    }
}

/// The manager's path rule: `^manager(.*?)/ws/subscription/?$` on the path without its leading
/// `/`.
pub fn manager_path_matches(path: &str) -> bool {
    let Some(p) = path.strip_prefix('/') else { return false };
    let p = p.strip_suffix('/').unwrap_or(p);
    p.len() >= "manager".len() + "/ws/subscription".len() && p.starts_with("manager") && p.ends_with("/ws/subscription")
}

/// The `password` parameter of a query string, with standard form decoding (`+` and `%XX`).
pub fn query_password(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "password").map(|(_, v)| v.into_owned())
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// A fake LOVE-manager on `127.0.0.1`. Stopped when dropped.
pub struct FakeManager {
    inner: Arc<Inner>,
    addr: SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
    ca_pem: Option<String>,
}

impl Drop for FakeManager {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

impl FakeManager {
    /// Start listening on `127.0.0.1:0` with this password.
    pub async fn start(password: &str) -> FakeManager {
        FakeManager::start_with(password, None).await
    }

    /// Like [`FakeManager::start`] but speaking `wss://`, with a fresh self-signed certificate
    /// for `127.0.0.1` and `localhost` (see [`FakeManager::ca_pem`]).
    pub async fn start_tls(password: &str) -> FakeManager {
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("certificate");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .expect("server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let mut fake = FakeManager::start_with(password, Some(acceptor)).await;
        fake.ca_pem = Some(cert.pem());
        fake
    }

    /// The PEM certificate to trust (a `--ca-file`) when started with TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    async fn start_with(password: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> FakeManager {
        let listener = bind("127.0.0.1:0".parse().expect("address")).expect("fake manager: bind");
        let addr = listener.local_addr().expect("local addr");
        let (reading, _) = watch::channel(true);
        let inner = Arc::new(Inner {
            start: Instant::now(),
            password: Mutex::new(password.to_string()),
            legacy: Mutex::new(false),
            strict: std::sync::atomic::AtomicBool::new(false),
            state: Mutex::new(State::default()),
            next_conn: AtomicU64::new(1),
            reading,
            tasks: Mutex::new(Vec::new()),
            tls,
        });
        let accept = tokio::spawn(accept_loop(listener, inner.clone()));
        FakeManager { inner, addr, accept: Mutex::new(Some(accept)), ca_pem: None }
    }

    /// The port it listens on (the same after [`FakeManager::restart`]).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `ws://127.0.0.1:PORT/manager/ws/subscription` (`wss://` with TLS; no password).
    pub fn url(&self) -> String {
        let scheme = if self.inner.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}/manager/ws/subscription", self.port())
    }

    /// `127.0.0.1:PORT/manager/ws/subscription`, a `WEBSOCKET_HOST` value.
    pub fn websocket_host(&self) -> String {
        format!("127.0.0.1:{}/manager/ws/subscription", self.port())
    }

    /// Change the password accepted from now on.
    pub fn set_password(&self, password: &str) {
        *self.inner.password.lock().unwrap_or_else(|p| p.into_inner()) = password.to_string();
    }

    /// Legacy mode (`LOVE_PRODUCER_LEGACY`): requests go to `initial_state-all-all-all`.
    pub fn set_legacy(&self, legacy: bool) {
        *self.inner.legacy.lock().unwrap_or_else(|p| p.into_inner()) = legacy;
    }

    /// Strict mode: a text frame that is not JSON ends its connection (close code 1011), as the
    /// real LOVE-manager's consumer does when `json.loads` raises (it then drops the
    /// connection). Parsed with serde_json after the reference's `NaN`/`Infinity` tokens are
    /// patched ([`love_plugin_api::json::parse_lenient`]), independently of the host's own
    /// check; serde_json's nesting limit (128) is below Python's.
    pub fn set_strict(&self, strict: bool) {
        self.inner.strict.store(strict, Ordering::SeqCst);
    }

    /// Every frame received so far.
    pub fn frames(&self) -> Vec<Frame> {
        self.inner.state().frames.clone()
    }

    /// The text frames received so far, parsed (frames that do not parse are skipped).
    pub fn json_frames(&self) -> Vec<(u64, Value)> {
        self.inner.state().frames.iter().filter_map(|f| f.json().map(|v| (f.conn, v))).collect()
    }

    /// Every handshake attempt so far.
    pub fn handshakes(&self) -> Vec<Handshake> {
        self.inner.state().handshakes.clone()
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> u64 {
        self.inner.next_conn.load(Ordering::SeqCst) - 1
    }

    /// The numbers of the connections open now.
    pub fn open_connections(&self) -> Vec<u64> {
        self.inner.state().conns.iter().filter(|(_, c)| c.open).map(|(n, _)| *n).collect()
    }

    /// The groups a connection joined.
    pub fn groups(&self, conn: u64) -> BTreeSet<String> {
        self.inner.state().conns.get(&conn).map(|c| c.groups.clone()).unwrap_or_default()
    }

    /// The data messages the manager would forward to a browser subscribed to
    /// `<category>-<csc>-<salindex>-<stream>`: for each matching element of a message's `data`
    /// list, that element's `data[stream]`, with the connection it came on.
    pub fn stream_values(&self, category: &str, csc: &str, salindex: i64, stream: &str) -> Vec<(u64, Value)> {
        let mut out = Vec::new();
        for (conn, v) in self.json_frames() {
            if v.get("category").and_then(Value::as_str) != Some(category) {
                continue;
            }
            for el in v.get("data").and_then(Value::as_array).into_iter().flatten() {
                if el.get("csc").and_then(Value::as_str) == Some(csc)
                    && el.get("salindex").and_then(Value::as_i64) == Some(salindex)
                {
                    if let Some(d) = el.get("data").and_then(|d| d.get(stream)) {
                        out.push((conn, d.clone()));
                    }
                }
            }
        }
        out
    }

    fn send_to(&self, filter: impl Fn(&Conn) -> bool, make: impl Fn() -> Message) -> usize {
        let st = self.inner.state();
        let mut n = 0;
        for c in st.conns.values().filter(|c| c.open && filter(c)) {
            if c.tx.send(Cmd::Send(make())).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Send the manager's initial_state request for `event_name` of `csc`/`salindex` (an
    /// integer, or `"all"`) to the connections in the group `initial_state-<csc>-all-all`
    /// (`initial_state-all-all-all` in legacy mode), as the manager does when a browser
    /// subscribes to that event. Returns how many connections it was sent to.
    pub fn send_initial_state_request(&self, csc: &str, salindex: impl Into<Value>, event_name: &str) -> usize {
        let legacy = *self.inner.legacy.lock().unwrap_or_else(|p| p.into_inner());
        let group =
            if legacy { "initial_state-all-all-all".to_string() } else { format!("initial_state-{csc}-all-all") };
        let t = unix_now();
        let text = json!({
            "category": "initial_state",
            "data": [{"csc": csc, "salindex": salindex.into(), "data": {"event_name": event_name}}],
            "subscription": "initial_state-all-all-all",
            "tracing": {"manager_rcv_from_group": t, "manager_snd_to_client": t},
        })
        .to_string();
        self.send_to(|c| c.groups.contains(&group), || Message::Text(text.clone()))
    }

    /// Send a text frame to every open connection.
    pub fn send_text_to_all(&self, text: &str) -> usize {
        self.send_to(|_| true, || Message::Text(text.to_string()))
    }

    /// Send a binary frame to every open connection.
    pub fn send_binary_to_all(&self, data: &[u8]) -> usize {
        self.send_to(|_| true, || Message::Binary(data.to_vec()))
    }

    /// Close every open connection with a close frame.
    pub fn close_connections(&self) {
        let st = self.inner.state();
        for c in st.conns.values().filter(|c| c.open) {
            let _ = c.tx.send(Cmd::Close);
        }
    }

    /// Stop reading from the connections (open and future ones): their frames stay in the
    /// socket buffers, so a producer's sends eventually block. Pings are not answered either.
    pub fn stop_reading(&self) {
        self.inner.reading.send_replace(false);
    }

    /// Read again.
    pub fn resume_reading(&self) {
        self.inner.reading.send_replace(true);
    }

    fn stop_now(&self) -> Option<JoinHandle<()>> {
        let accept = self.accept.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = &accept {
            task.abort();
        }
        for t in self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            t.abort();
        }
        for c in self.inner.state().conns.values_mut() {
            c.open = false;
        }
        accept
    }

    /// Stop as a crashed manager would: stop listening and drop every connection without a
    /// close frame. Returns once the port is free.
    pub async fn stop(&self) {
        if let Some(task) = self.stop_now() {
            let _ = task.await;
        }
        // Let the aborted connection tasks drop their sockets.
        tokio::task::yield_now().await;
    }

    /// Listen again on the same port (after [`FakeManager::stop`]). Connection numbers go on.
    pub async fn restart(&self) {
        self.stop().await;
        let listener = bind(self.addr).expect("fake manager: bind again on the same port");
        let accept = tokio::spawn(accept_loop(listener, self.inner.clone()));
        *self.accept.lock().unwrap_or_else(|p| p.into_inner()) = Some(accept);
    }

    /// Poll `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
    pub async fn wait_until(&self, timeout: Duration, mut cond: impl FnMut(&FakeManager) -> bool) -> bool {
        eventually(timeout, || cond(self)).await
    }
}

/// Poll `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let task = match inner.tls.clone() {
            None => tokio::spawn(connection(stream, inner.clone())),
            Some(acceptor) => {
                let inner = inner.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        connection(tls, inner).await;
                    }
                })
            }
        };
        let mut tasks = inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task.abort_handle());
    }
}

fn error_response(status: StatusCode) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(status.canonical_reason().unwrap_or("error").to_string()));
    *r.status_mut() = status;
    r
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(stream: S, inner: Arc<Inner>) {
    let hs_inner = inner.clone();
    let callback = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let path_qs = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
        let password = req.uri().query().and_then(query_password);
        let expected = hs_inner.password.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let status = if !manager_path_matches(req.uri().path()) {
            StatusCode::NOT_FOUND
        } else if password.as_deref().unwrap_or("") != expected {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::SWITCHING_PROTOCOLS
        };
        let at = hs_inner.start.elapsed();
        hs_inner.state().handshakes.push(Handshake { at, path_qs, password, status: status.as_u16(), conn: None });
        if status == StatusCode::SWITCHING_PROTOCOLS {
            Ok(resp)
        } else {
            Err(error_response(status))
        }
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else { return };
    let n = inner.next_conn.fetch_add(1, Ordering::SeqCst);
    let (tx, mut rx) = mpsc::unbounded_channel();
    {
        let mut st = inner.state();
        if let Some(h) = st.handshakes.iter_mut().rev().find(|h| h.status == 101 && h.conn.is_none()) {
            h.conn = Some(n);
        }
        st.conns.insert(n, Conn { tx, groups: BTreeSet::new(), open: true });
    }
    let (mut sink, mut stream) = ws.split();
    let mut reading = inner.reading.subscribe();
    loop {
        let can_read = *reading.borrow_and_update();
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Cmd::Send(m)) => {
                    if sink.send(m).await.is_err() {
                        break;
                    }
                }
                Some(Cmd::Close) => {
                    let frame = CloseFrame { code: CloseCode::Normal, reason: "fake manager closes".into() };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    break;
                }
                None => break,
            },
            _ = reading.changed() => {}
            msg = stream.next(), if can_read => match msg {
                None | Some(Err(_)) => break,
                Some(Ok(Message::Text(text))) => {
                    if inner.strict.load(Ordering::SeqCst) && love_plugin_api::json::parse_lenient(&text).is_err() {
                        inner.record(n, FrameKind::Text(text));
                        let frame = CloseFrame { code: CloseCode::Error, reason: "invalid JSON".into() };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        break;
                    }
                    let reply = subscription_group(&text).map(|group| {
                        if let Some(c) = inner.state().conns.get_mut(&n) {
                            c.groups.insert(group.clone());
                        }
                        json!({"data": format!("Successfully subscribed to {group}")}).to_string()
                    });
                    inner.record(n, FrameKind::Text(text));
                    if let Some(reply) = reply {
                        if sink.send(Message::Text(reply)).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Message::Binary(b))) => inner.record(n, FrameKind::Binary(b)),
                Some(Ok(Message::Ping(_))) => {
                    inner.record(n, FrameKind::Ping);
                    // tungstenite queued the pong; push it out now.
                    if sink.flush().await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    inner.record(n, FrameKind::Close);
                    let _ = sink.flush().await;
                    break;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    if let Some(c) = inner.state().conns.get_mut(&n) {
        c.open = false;
    }
}

/// The group of a subscription message, as the manager names it.
fn subscription_group(text: &str) -> Option<String> {
    let v: Value = serde_json::from_str(text).ok()?;
    if v.get("option")?.as_str()? != "subscribe" {
        return None;
    }
    let part = |k: &str| -> Option<String> {
        match v.get(k)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    Some(format!("{}-{}-{}-{}", part("category")?, part("csc")?, part("salindex")?, part("stream")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_rule() {
        for ok in ["/manager/ws/subscription", "/manager/ws/subscription/", "/manager/auxtel/ws/subscription"] {
            assert!(manager_path_matches(ok), "{ok}");
        }
        for bad in [
            "/manager/ws/subscriptionx",
            "/ws/subscription",
            "manager/ws/subscription",
            "/manager/ws/subscription//",
            "/",
        ] {
            assert!(!manager_path_matches(bad), "{bad}");
        }
    }

    #[test]
    fn password_form_decoding() {
        assert_eq!(query_password("password=p%40ss%20word").as_deref(), Some("p@ss word"));
        assert_eq!(query_password("x=1&password=a+b").as_deref(), Some("a b"));
        assert_eq!(query_password("x=1"), None);
    }

    #[test]
    fn groups() {
        let s = r#"{"option": "subscribe", "category": "initial_state", "csc": "ATDome", "salindex": "all", "stream": "all", "producer_snd": 1.5}"#;
        assert_eq!(subscription_group(s).as_deref(), Some("initial_state-ATDome-all-all"));
        assert_eq!(subscription_group(r#"{"category": "event"}"#), None);
    }
}
