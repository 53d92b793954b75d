//! The manager link against a fake LOVE-manager on 127.0.0.1 (library level).
//!
//! Timings are generous and every wait polls for a condition, so these tests do not depend on
//! the machine's speed.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use love_host::manager::{self, LinkConfig, LinkError, LinkEvent, ManagerHandle, ManagerUrl, Outgoing, SinkKind};
use love_host::shutdown;
use love_host_tests::{eventually, query_password, FakeManager, FrameKind};
use love_plugin_api::abi::Category;
use serde_json::{json, Value};
use tokio::sync::broadcast;

const WAIT: Duration = Duration::from_secs(20);
/// A password that breaks the original's URL (quirk 20).
const NASTY: &str = "p@ss w&rd#+%=?";

fn config(url: &str, password: &str) -> LinkConfig {
    LinkConfig {
        url: Some(ManagerUrl::parse(url, password).expect("url")),
        sink: SinkKind::Websocket,
        reconnect_wait: Duration::from_millis(100),
        ping_interval: Duration::from_secs(5),
        pong_timeout: Duration::from_secs(10),
        queue_capacity: 256,
        shutdown_flush: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        ..LinkConfig::default()
    }
}

fn msg(category: Category, csc: &str, stream: &str, payload: Value) -> Outgoing {
    let cat = match category {
        Category::TELEMETRY => "telemetry",
        _ => "event",
    };
    let text =
        json!({"category": cat, "data": [{"csc": csc, "salindex": 0, "data": {stream: payload}}], "producer_snd": 1.5})
            .to_string();
    Outgoing { category, csc: csc.into(), salindex: 0, stream: stream.into(), text, created: 0.0 }
}

fn tel(stream: &str, v: i64) -> Outgoing {
    msg(Category::TELEMETRY, "ATDome", stream, json!({"v": v}))
}

fn evt(stream: &str, v: i64) -> Outgoing {
    msg(Category::EVENT, "ATDome", stream, json!([{"v": v}]))
}

fn subscription(csc: &str) -> Outgoing {
    let text = json!({"option": "subscribe", "category": "initial_state", "csc": csc, "salindex": "all", "stream": "all", "producer_snd": 1.5}).to_string();
    Outgoing { category: Category::OTHER, csc: csc.into(), salindex: 0, stream: "all".into(), text, created: 0.0 }
}

/// Wait for the first event matching `pred`.
async fn wait_event(rx: &mut broadcast::Receiver<LinkEvent>, pred: impl Fn(&LinkEvent) -> bool) -> Option<LinkEvent> {
    let fut = async {
        loop {
            match rx.recv().await {
                Ok(ev) if pred(&ev) => return Some(ev),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    };
    tokio::time::timeout(WAIT, fut).await.ok().flatten()
}

fn is_connected(ev: &LinkEvent) -> bool {
    matches!(ev, LinkEvent::Connected)
}

/// What a producer does on `Connected`: its initial data, then its subscriptions.
fn answer_connected(handle: &ManagerHandle) {
    handle.send(evt("summaryState", 2));
    handle.send(subscription("all"));
    handle.send(subscription("ATDome"));
}

/// Log lines captured from `tracing` (the test runtime is single-threaded, so a thread-local
/// default subscriber sees the link task's logs).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

fn assert_no_secret(what: &str, text: &str) {
    let encoded = NASTY.replace('%', "%25").replace('@', "%40").replace(' ', "%20");
    assert!(!text.contains(NASTY), "{what} shows the password: {text}");
    assert!(!text.contains("p@ss"), "{what} shows the password: {text}");
    assert!(!text.contains(&encoded), "{what} shows the encoded password: {text}");
    assert!(!text.contains("p%40ss"), "{what} shows the encoded password: {text}");
}

#[tokio::test]
async fn wrong_password_is_logged_redacted_and_retried_until_accepted() {
    let (logs, _guard) = capture_logs();
    let fake = FakeManager::start("dev_pass").await;
    let (trigger, sd) = shutdown::channel();
    let (handle, task) = manager::start(config(&fake.url(), NASTY), sd);
    let mut events = handle.events();

    assert!(
        fake.wait_until(WAIT, |f| f.handshakes().iter().filter(|h| h.status == 403).count() >= 3).await,
        "no retries"
    );
    assert!(eventually(WAIT, || handle.stats().password_rejections >= 3).await, "{:?}", handle.stats());
    assert!(!handle.is_connected());
    let stats = handle.stats();
    let err = stats.last_error.expect("an error is visible in the stats");
    assert!(err.contains("rejected the password (HTTP 403)"), "{err}");
    assert!(err.contains(&format!("ws://127.0.0.1:{}/manager/ws/subscription?password=***", fake.port())), "{err}");
    assert_no_secret("the error", &err);
    let log_text = logs.text();
    assert!(log_text.contains("rejected the password (HTTP 403)"), "{log_text}");
    assert!(log_text.contains("ERROR"), "{log_text}");
    assert_no_secret("the log", &log_text);
    // The password went out percent-encoded and the manager's form decoding gets it back.
    let h = &fake.handshakes()[0];
    assert_eq!(h.password.as_deref(), Some(NASTY), "{h:?}");
    assert!(h.path_qs.starts_with("/manager/ws/subscription?password=p%40ss%20w%26rd%23%2B%25%3D%3F"), "{h:?}");

    // The manager now accepts it: the link connects on its next try.
    fake.set_password(NASTY);
    assert!(wait_event(&mut events, is_connected).await.is_some());
    assert!(handle.is_connected());
    assert_eq!(fake.connections(), 1);
    assert_eq!(handle.stats().last_error, None);

    trigger.trigger();
    tokio::time::timeout(WAIT, task).await.expect("link ends").expect("join").expect("graceful");
    assert_no_secret("the log", &logs.text());
}

#[tokio::test]
async fn manager_restart_reconnects_without_ghost_and_sends_latest_state() {
    let fake = FakeManager::start("dev_pass").await;
    let (trigger, sd) = shutdown::channel();
    let (handle, task) = manager::start(config(&fake.url(), "dev_pass"), sd);
    let mut events = handle.events();

    // A producer that answers every Connected as the runtime does.
    let producer = {
        let handle = handle.clone();
        let mut rx = handle.events();
        tokio::spawn(async move {
            while let Ok(ev) = rx.recv().await {
                if matches!(ev, LinkEvent::Connected) {
                    answer_connected(&handle);
                }
            }
        })
    };
    // Another stream keeps flowing the whole time.
    let flowing = {
        let handle = handle.clone();
        tokio::spawn(async move {
            for i in 0.. {
                handle.send(tel("flow", i));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    assert!(wait_event(&mut events, is_connected).await.is_some());
    assert!(fake.wait_until(WAIT, |f| f.groups(1).contains("initial_state-ATDome-all-all")).await);
    for v in 1..=5 {
        // One at a time: telemetry queued behind a newer value of its stream would be replaced.
        handle.send(tel("position", v));
        handle.send(tel("temperature", v));
        assert!(
            fake.wait_until(WAIT, |f| f.stream_values("telemetry", "ATDome", 0, "temperature").len() == v as usize)
                .await
        );
    }

    // The manager goes away; the producers keep producing.
    fake.stop().await;
    assert!(wait_event(&mut events, |e| matches!(e, LinkEvent::Disconnected)).await.is_some());
    assert!(eventually(WAIT, || !handle.is_connected()).await);
    for v in 6..=50 {
        handle.send(tel("position", v));
        handle.send(tel("temperature", v));
    }
    handle.send(evt("errorCode", 7));
    let dropped = handle.stats().dropped_disconnected;
    handle.send(subscription("while-down"));
    let stats = handle.stats();
    assert_eq!(stats.dropped_disconnected, dropped + 1, "subscriptions are not queued while down");
    assert!(stats.coalesced >= 88, "{stats:?}");
    // A few failed attempts while it is down.
    assert!(eventually(WAIT, || handle.stats().connect_failures >= 2).await);
    let attempts_before = fake.handshakes().len();
    assert_eq!(attempts_before, 1, "nothing reached the stopped manager");

    fake.restart().await;
    assert!(wait_event(&mut events, is_connected).await.is_some(), "connected again");
    // Subscriptions re-sent at once on the new connection, and the latest state delivered.
    assert!(fake.wait_until(WAIT, |f| f.groups(2).contains("initial_state-ATDome-all-all")).await);
    assert!(
        fake.wait_until(WAIT, |f| f
            .stream_values("telemetry", "ATDome", 0, "position")
            .iter()
            .any(|(c, v)| *c == 2 && v["v"] == 50))
            .await
    );
    assert!(
        fake.wait_until(WAIT, |f| f
            .stream_values("telemetry", "ATDome", 0, "temperature")
            .iter()
            .any(|(c, v)| *c == 2 && v["v"] == 50))
            .await
    );
    assert!(
        fake.wait_until(WAIT, |f| f.stream_values("event", "ATDome", 0, "errorCode").iter().any(|(c, _)| *c == 2))
            .await
    );
    assert!(
        fake.wait_until(WAIT, |f| f.stream_values("event", "ATDome", 0, "summaryState").iter().any(|(c, _)| *c == 2))
            .await
    );
    // Only the latest value per telemetry stream was kept while down.
    let positions: Vec<i64> = fake
        .stream_values("telemetry", "ATDome", 0, "position")
        .iter()
        .map(|(_, v)| v["v"].as_i64().unwrap())
        .collect();
    assert_eq!(positions, [1, 2, 3, 4, 5, 50]);
    assert!(!fake.json_frames().iter().any(|(_, v)| v["csc"] == "while-down"));

    // No ghost: exactly one new connection, and it stays the only one; every connection
    // carried data.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.connections(), 2);
    assert_eq!(fake.open_connections(), vec![2]);
    let frames = fake.frames();
    for conn in 1..=2 {
        assert!(frames.iter().any(|f| f.conn == conn && f.text().is_some()), "connection {conn} carried nothing");
    }
    let stats = handle.stats();
    assert_eq!((stats.connections, stats.disconnections, stats.reconnects()), (2, 1, 1), "{stats:?}");

    // Requests reach the producers on the new connection.
    assert_eq!(fake.send_initial_state_request("ATDome", 0, "summaryState"), 1);
    let req = wait_event(&mut events, |e| matches!(e, LinkEvent::Request(_))).await.expect("request");
    let LinkEvent::Request(text) = req else { unreachable!() };
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"][0]["data"]["event_name"], "summaryState");

    flowing.abort();
    producer.abort();
    trigger.trigger();
    tokio::time::timeout(WAIT, task).await.expect("link ends").expect("join").expect("graceful");
}

#[tokio::test]
async fn a_manager_that_stops_reading_leaves_the_queue_bounded() {
    let fake = FakeManager::start("dev_pass").await;
    let (trigger, sd) = shutdown::channel();
    let mut cfg = config(&fake.url(), "dev_pass");
    cfg.queue_capacity = 64;
    // No keepalive reconnection during this test: the stalled connection stays.
    cfg.ping_interval = Duration::from_secs(600);
    let (handle, task) = manager::start(cfg, sd);
    let mut events = handle.events();
    assert!(wait_event(&mut events, is_connected).await.is_some());
    fake.stop_reading();

    let big = "x".repeat(32 * 1024);
    // Built with format! rather than serde_json: a debug build escapes 32 KB strings slowly.
    let big_msg = |category: Category, stream: &str, v: i64| {
        let (cat, payload) = match category {
            Category::TELEMETRY => ("telemetry", format!(r#"{{"v": {v}, "pad": "{big}"}}"#)),
            _ => ("event", format!(r#"[{{"v": {v}, "pad": "{big}"}}]"#)),
        };
        let text = format!(
            r#"{{"category": "{cat}", "data": [{{"csc": "ATDome", "salindex": 0, "data": {{"{stream}": {payload}}}}}], "producer_snd": 1.5}}"#
        );
        Outgoing { category, csc: "ATDome".into(), salindex: 0, stream: stream.into(), text, created: 0.0 }
    };
    let big_tel = |stream: &str, v: i64| big_msg(Category::TELEMETRY, stream, v);
    let big_evt = |stream: &str, v: i64| big_msg(Category::EVENT, stream, v);
    let mut max_depth = 0;
    let mut max_bytes = 0;
    let total = 3000;
    for i in 0..total {
        handle.send(big_tel(&format!("t{}", i % 20), i));
        if i % 3 == 0 {
            handle.send(big_evt(&format!("e{}", i % 30), i));
        }
        if i % 10 == 0 {
            // Events of ever new streams: only the hard bound can hold these.
            handle.send(big_evt(&format!("unique{i}"), i));
        }
        tokio::task::yield_now().await;
        let s = handle.stats();
        max_depth = max_depth.max(s.queue_depth);
        max_bytes = max_bytes.max(s.queue_bytes);
    }
    let stats = handle.stats();
    assert!(stats.sent() < total as u64, "the manager was supposed to stall the link: {stats:?}");
    assert!(max_depth <= 2 * 64, "queue depth {max_depth}");
    assert!(max_bytes <= 2 * 64 * (big.len() + 200), "queue bytes {max_bytes}");
    assert!(stats.queue_high_water <= 2 * 64, "{stats:?}");
    assert!(stats.coalesced > 1000, "{stats:?}");
    assert!(stats.dropped_overflow > 0, "{stats:?}");

    // Reading again: the queue drains and the latest value of each telemetry stream arrives.
    fake.resume_reading();
    assert!(eventually(WAIT, || handle.stats().queue_depth == 0).await, "{:?}", handle.stats());
    assert!(
        fake.wait_until(WAIT, |f| f
            .stream_values("telemetry", "ATDome", 0, "t19")
            .iter()
            .any(|(_, v)| v["v"] == total - 1))
            .await
    );
    assert_eq!(fake.connections(), 1);

    trigger.trigger();
    tokio::time::timeout(WAIT, task).await.expect("link ends").expect("join").expect("graceful");
}

#[tokio::test]
async fn keepalive_notices_a_silent_manager_within_seconds() {
    let fake = FakeManager::start("dev_pass").await;
    let (trigger, sd) = shutdown::channel();
    let mut cfg = config(&fake.url(), "dev_pass");
    cfg.ping_interval = Duration::from_millis(200);
    cfg.pong_timeout = Duration::from_millis(800);
    let (handle, task) = manager::start(cfg, sd);
    let mut events = handle.events();
    assert!(wait_event(&mut events, is_connected).await.is_some());

    // An idle link that answers pings stays up.
    assert!(fake.wait_until(WAIT, |f| f.frames().iter().filter(|fr| fr.kind == FrameKind::Ping).count() >= 3).await);
    assert_eq!(fake.connections(), 1);
    assert!(handle.is_connected());

    // A manager that goes silent (no pongs, no reading) is dropped and reconnected.
    fake.stop_reading();
    assert!(wait_event(&mut events, |e| matches!(e, LinkEvent::Disconnected)).await.is_some());
    let err = handle.stats().last_error.unwrap_or_default();
    assert!(err.contains("keepalive"), "{err}");
    fake.resume_reading();
    assert!(wait_event(&mut events, is_connected).await.is_some());
    assert!(fake.connections() >= 2);

    trigger.trigger();
    tokio::time::timeout(WAIT, task).await.expect("link ends").expect("join").expect("graceful");
}

#[tokio::test]
async fn malformed_frames_are_dropped_and_the_link_survives() {
    let (logs, _guard) = capture_logs();
    let fake = FakeManager::start("dev_pass").await;
    let (trigger, sd) = shutdown::channel();
    let (handle, task) = manager::start(config(&fake.url(), "dev_pass"), sd);
    let mut events = handle.events();
    assert!(wait_event(&mut events, is_connected).await.is_some());
    answer_connected(&handle);
    assert!(fake.wait_until(WAIT, |f| f.groups(1).contains("initial_state-ATDome-all-all")).await);

    for bad in [
        "this is not JSON {",
        "",
        "[1, 2, 3]",
        "42",
        r#"{"category": "initial_state"}"#,
        r#"{"category": "initial_state", "data": "ATDome"}"#,
        r#"{"category": "initial_state", "data": []}"#,
        r#"{"category": "initial_state", "data": [3]}"#,
        r#"{"category": "event", "data": [{"csc": "ATDome"}]}"#,
        r#"{"data": "Successfully subscribed to initial_state-ATDome-all-all"}"#,
        r#"{"category": "initial_state", "data": [{"csc": "ATDome", "salindex": 0, "data": {"event_name": "summaryState"}}], "subscription": "initial_state-all-all-all", "tracing": {"manager_rcv_from_group": NaN}}"#,
    ] {
        assert_eq!(fake.send_text_to_all(bad), 1);
    }
    assert_eq!(fake.send_binary_to_all(&[0, 159, 146, 150]), 1);
    assert_eq!(fake.send_initial_state_request("ATDome", 0, "errorCode"), 1);

    // Exactly the valid request comes through.
    let req = wait_event(&mut events, |e| matches!(e, LinkEvent::Request(_))).await.expect("request");
    let LinkEvent::Request(text) = req else { unreachable!() };
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"][0]["data"]["event_name"], "errorCode", "{text}");
    assert_eq!(v["subscription"], "initial_state-all-all-all");
    assert!(v["tracing"].is_object());
    assert!(handle.is_connected());
    assert_eq!(fake.connections(), 1);
    let log_text = logs.text();
    assert!(log_text.contains("malformed JSON"), "{log_text}");
    assert!(log_text.contains("binary frame"), "{log_text}");

    // The link still delivers both ways.
    handle.send(evt("summaryState", 3));
    assert!(
        fake.wait_until(WAIT, |f| f
            .stream_values("event", "ATDome", 0, "summaryState")
            .iter()
            .any(|(_, v)| v[0]["v"] == 3))
            .await
    );
    assert_eq!(fake.send_initial_state_request("ATDome", "all", "summaryState"), 1);
    let req = wait_event(&mut events, |e| matches!(e, LinkEvent::Request(_))).await.expect("request");
    let LinkEvent::Request(text) = req else { unreachable!() };
    assert!(text.contains(r#""salindex":"all""#), "{text}");

    trigger.trigger();
    tokio::time::timeout(WAIT, task).await.expect("link ends").expect("join").expect("graceful");
}

#[tokio::test]
async fn graceful_shutdown_flushes_the_queue_and_sends_a_close_frame() {
    let fake = FakeManager::start("dev_pass").await;
    let (trigger, sd) = shutdown::channel();
    let (handle, task) = manager::start(config(&fake.url(), "dev_pass"), sd);
    let mut events = handle.events();
    assert!(wait_event(&mut events, is_connected).await.is_some());
    for v in 0..100 {
        handle.send(evt(&format!("e{v}"), v));
    }
    trigger.trigger();
    tokio::time::timeout(WAIT, task).await.expect("link ends").expect("join").expect("graceful");
    assert!(fake.wait_until(WAIT, |f| f.frames().iter().any(|fr| fr.kind == FrameKind::Close)).await);
    let events_received = fake.json_frames().iter().filter(|(_, v)| v["category"] == "event").count();
    assert_eq!(events_received, 100);
    assert_eq!(handle.stats().sent_event, 100);
}

#[tokio::test]
async fn resubscribe_is_periodic_while_connected() {
    let fake = FakeManager::start("dev_pass").await;
    let (trigger, sd) = shutdown::channel();
    let mut cfg = config(&fake.url(), "dev_pass");
    cfg.resubscribe_period = Duration::from_millis(100);
    let (handle, task) = manager::start(cfg, sd);
    let mut events = handle.events();
    assert!(wait_event(&mut events, is_connected).await.is_some());
    for _ in 0..3 {
        assert!(wait_event(&mut events, |e| matches!(e, LinkEvent::Resubscribe)).await.is_some());
    }
    trigger.trigger();
    tokio::time::timeout(WAIT, task).await.expect("link ends").expect("join").expect("graceful");
}

#[test]
fn password_is_percent_encoded_and_never_shown() {
    let from_env = ManagerUrl::from_websocket_host("love-nginx/manager/ws/subscription", NASTY).unwrap();
    let secret = from_env.expose_secret_url();
    assert_eq!(secret, "ws://love-nginx/manager/ws/subscription/?password=p%40ss%20w%26rd%23%2B%25%3D%3F");
    let query = secret.split_once('?').unwrap().1;
    assert_eq!(query_password(query).as_deref(), Some(NASTY));
    assert_eq!(from_env.to_string(), "ws://love-nginx/manager/ws/subscription/?password=***");

    let from_arg = ManagerUrl::parse("wss://example.org/manager/ws/subscription", NASTY).unwrap();
    let cfg = LinkConfig { url: Some(from_arg.clone()), ..LinkConfig::default() };
    for shown in [
        from_env.to_string(),
        format!("{from_env:?}"),
        from_arg.to_string(),
        format!("{from_arg:?}"),
        format!("{cfg:?}"),
    ] {
        assert_no_secret("Display/Debug", &shown);
    }
    // Errors about a URL carrying the password do not repeat it.
    for bad in [
        format!("http://h/manager/ws/subscription?password={NASTY}"),
        format!("ws://user:{NASTY}@h/p"),
        "ws://h/p?password=p%40ss".to_string(),
    ] {
        if let Err(e) = ManagerUrl::parse(&bad, NASTY) {
            assert_no_secret("an error", &e.to_string());
            assert_no_secret("an error", &format!("{e:?}"));
        }
    }
    let e = LinkConfig::from_lookup(None, None, None, |k| match k {
        "WEBSOCKET_HOST" => Some("bad host/?password=p@ss".into()),
        "PROCESS_CONNECTION_PASS" => Some(NASTY.into()),
        _ => None,
    })
    .unwrap_err();
    assert_no_secret("an error", &e.to_string());
}

#[tokio::test]
async fn wss_with_a_ca_file() {
    let fake = FakeManager::start_tls(NASTY).await;
    let dir = std::env::temp_dir().join(format!("love-host-link-wss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, fake.ca_pem().unwrap()).unwrap();
    let (trigger, sd) = shutdown::channel();
    let mut cfg = config(&fake.url(), NASTY);
    cfg.ca_file = Some(ca);
    let (handle, task) = manager::start(cfg, sd);
    let mut events = handle.events();
    assert!(wait_event(&mut events, is_connected).await.is_some(), "{:?}", handle.stats());
    answer_connected(&handle);
    assert!(fake.wait_until(WAIT, |f| f.groups(1).contains("initial_state-ATDome-all-all")).await);
    assert_eq!(fake.send_initial_state_request("ATDome", 0, "summaryState"), 1);
    assert!(wait_event(&mut events, |e| matches!(e, LinkEvent::Request(_))).await.is_some());
    trigger.trigger();
    tokio::time::timeout(WAIT, task).await.expect("link ends").expect("join").expect("graceful");

    // Without the CA file the certificate is not trusted: the link keeps retrying.
    let (trigger, sd) = shutdown::channel();
    let (handle, task) = manager::start(config(&fake.url(), NASTY), sd);
    assert!(eventually(WAIT, || handle.stats().connect_failures >= 2 || task.is_finished()).await);
    assert_eq!(fake.connections(), 1);
    if task.is_finished() {
        // A machine without any system CA certificate: nothing could ever be trusted.
        let err = task.await.unwrap().unwrap_err().to_string();
        assert!(err.contains("no CA certificate"), "{err}");
    } else {
        let err = handle.stats().last_error.unwrap_or_default();
        assert!(err.contains("wss://127.0.0.1") && err.contains("certificate"), "{err}");
        assert_no_secret("the error", &err);
        trigger.trigger();
        tokio::time::timeout(WAIT, task).await.expect("link ends").expect("join").expect("graceful");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn fatal_errors_end_the_link_with_err() {
    let (_t, sd) = shutdown::channel();
    let cfg = LinkConfig { url: None, sink: SinkKind::Websocket, ..LinkConfig::default() };
    let (_h, task) = manager::start(cfg, sd.clone());
    assert!(matches!(task.await.unwrap(), Err(LinkError::Config(_))));

    let dir = std::env::temp_dir().join(format!("love-host-link-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("empty.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let cfg = LinkConfig {
        url: Some(ManagerUrl::parse("wss://127.0.0.1:1/manager/ws/subscription", NASTY).unwrap()),
        sink: SinkKind::Websocket,
        ca_file: Some(ca),
        ..LinkConfig::default()
    };
    let (_h, task) = manager::start(cfg, sd);
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, LinkError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("empty.pem"), "{err}");
    assert_no_secret("an error", &err.to_string());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn stdout_sink_writes_one_line_per_message() {
    let (trigger, sd) = shutdown::channel();
    let (writer, mut reader) = tokio::io::duplex(1 << 20);
    let (handle, task) = manager::start_with_writer(LinkConfig::default(), sd, writer);
    let mut events = handle.events();
    assert!(handle.is_connected(), "the stdout sink is up at once");
    assert!(wait_event(&mut events, is_connected).await.is_some(), "Connected at start");
    let sent = [evt("summaryState", 1), subscription("ATDome"), tel("position", 4), tel("position", 5)];
    for m in &sent {
        handle.send(m.clone());
    }
    trigger.trigger();
    tokio::time::timeout(WAIT, task).await.expect("ends").expect("join").expect("graceful");
    drop(handle);
    let mut out = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut reader, &mut out).await.unwrap();
    let lines: Vec<&str> = out.lines().collect();
    // Written as they come when the sink keeps up; the last two may have been coalesced.
    assert!(lines.len() == 4 || lines.len() == 3, "{out}");
    assert_eq!(lines[0], sent[0].text);
    assert_eq!(lines[1], sent[1].text);
    assert_eq!(*lines.last().unwrap(), sent[3].text);
    assert!(out.ends_with('\n'));
    for l in lines {
        serde_json::from_str::<Value>(l).expect("each line is one JSON object");
    }
}

#[tokio::test]
async fn a_message_the_manager_cannot_parse_is_dropped_and_the_link_stays_up() {
    let (logs, _guard) = capture_logs();
    let fake = FakeManager::start("dev_pass").await;
    fake.set_strict(true);
    let (trigger, sd) = shutdown::channel();
    let (handle, task) = manager::start(config(&fake.url(), "dev_pass"), sd);
    let mut events = handle.events();
    assert!(wait_event(&mut events, is_connected).await.is_some());
    answer_connected(&handle);

    // A producer pasting a bad `Json` field into its message, as a plugin built with an older
    // SDK did: `{{{not json`, an injection that closes the value early, 5,000 levels of nesting.
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    for (n, bad) in ["{{{not json", r#"1, "injected": {}"#, deep.as_str()].into_iter().enumerate() {
        let text = format!(
            r#"{{"category": "event", "data": [{{"csc": "ATDome", "salindex": 0, "data": {{"bad{n}": [{bad}]}}}}], "producer_snd": 1.5}}"#
        );
        handle.send(Outgoing {
            category: Category::EVENT,
            csc: "ATDome".into(),
            salindex: 0,
            stream: format!("bad{n}"),
            text,
            created: 0.0,
        });
        handle.send(evt("summaryState", 10 + n as i64));
    }
    // NaN and Infinity are what the reference sends: they go through.
    handle.send(msg(Category::EVENT, "ATDome", "position", json!([{"v": 1}])));
    let nan = r#"{"category": "event", "data": [{"csc": "ATDome", "salindex": 0, "data": {"nan": [{"v": NaN, "w": -Infinity}]}}], "producer_snd": 1.5}"#;
    handle.send(Outgoing {
        category: Category::EVENT,
        csc: "ATDome".into(),
        salindex: 0,
        stream: "nan".into(),
        text: nan.into(),
        created: 0.0,
    });
    assert!(
        fake.wait_until(WAIT, |f| f.frames().iter().any(|fr| fr.text().is_some_and(|t| t.contains("\"nan\"")))).await,
        "the valid messages after the bad ones arrive"
    );
    let values: Vec<i64> = fake
        .stream_values("event", "ATDome", 0, "summaryState")
        .iter()
        .filter_map(|(_, v)| v[0]["v"].as_i64())
        .collect();
    assert!([10, 11, 12].iter().all(|v| values.contains(v)), "{values:?}");
    assert_eq!(fake.connections(), 1, "one connection: the manager never saw a frame it could not parse");
    assert!(!fake.frames().iter().any(|f| f.text().is_some_and(|t| t.contains("bad"))));
    let stats = handle.stats();
    assert_eq!(stats.dropped_invalid, 3);
    let log_text = logs.text();
    assert!(log_text.contains("not valid JSON") && log_text.contains("component=ATDome"), "{log_text}");

    trigger.trigger();
    tokio::time::timeout(WAIT, task).await.expect("link ends").expect("join").expect("graceful");
}

#[tokio::test]
async fn warnings_about_bad_frames_are_rate_limited_with_a_count() {
    let (logs, _guard) = capture_logs();
    let fake = FakeManager::start("dev_pass").await;
    let (trigger, sd) = shutdown::channel();
    let (handle, task) = manager::start(config(&fake.url(), "dev_pass"), sd);
    let mut events = handle.events();
    assert!(wait_event(&mut events, is_connected).await.is_some());
    for i in 0..500 {
        fake.send_text_to_all(&format!("not JSON {i}"));
    }
    assert!(eventually(WAIT, || handle.stats().bad_frames == 500).await, "{:?}", handle.stats());
    let text = logs.text();
    let warned = text.lines().filter(|l| l.contains("WARN") && l.contains("malformed JSON")).count();
    assert_eq!(warned, 10, "a burst of 10 warnings, the rest counted\n{text}");
    assert!(text.contains("counted, not logged"), "{text}");
    trigger.trigger();
    tokio::time::timeout(WAIT, task).await.expect("link ends").expect("join").expect("graceful");
}
