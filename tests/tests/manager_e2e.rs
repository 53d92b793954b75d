//! The built host against a LOVE-manager peer on 127.0.0.1: subscriptions, initial_state
//! replies, a manager restart, a wrong password, and what /readyz and /metrics say meanwhile.

mod common;

use std::time::Duration;

use common::*;
use love_host_tests::FakeManager;
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn summary_state_messages(mgr: &FakeManager) -> Vec<Value> {
    mgr.json_frames()
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| {
            m["category"] == "event"
                && m["data"][0]["csc"] == "ATDome"
                && m["data"][0]["data"].get("summaryState").is_some()
        })
        .collect()
}

fn subscribed(mgr: &FakeManager) -> bool {
    mgr.open_connections().iter().any(|c| mgr.groups(*c).contains("initial_state-ATDome-all-all"))
}

/// Golden `csc.jsonl` "request summaryState": the reply's shape (envelope keys and FIELDS keys
/// with their dataType and units) must be the reference's.
fn golden_summary_state_reply() -> Value {
    let text = std::fs::read_to_string(golden_path("csc.jsonl")).unwrap();
    let rec: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["input"]["what"] == "request summaryState")
        .unwrap();
    serde_json::from_str(rec["outputs"][0].as_str().unwrap()).unwrap()
}

fn shape(fields: &Value) -> Vec<(String, Value, Value)> {
    fields.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v["dataType"].clone(), v["units"].clone())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_gets_the_last_summary_state_at_once_and_again_after_a_manager_restart() {
    let mgr = FakeManager::start("s3cret&pass").await;
    let dir = plugin_dir("mgr", &[plugin_so("csc")]);
    let host = start_host_with_manager(&mgr, &dir, "s3cret&pass", &["--components", "ATDome"]);
    let admin = admin_addr(&host);
    wait_manager(&mgr, &host, "the initial_state subscription", subscribed).await;
    wait_manager(&mgr, &host, "the summaryState event", |m| !summary_state_messages(m).is_empty()).await;
    // Telemetry and the Heartbeat stream flow too (spec sections b, c).
    wait_manager(&mgr, &host, "telemetry position and the Heartbeat stream", |m| {
        !m.stream_values("telemetry", "ATDome", 0, "position").is_empty()
            && m.json_frames()
                .iter()
                .any(|(_, f)| f["data"][0]["csc"] == "Heartbeat" && f["data"][0]["data"]["stream"]["csc"] == "ATDome")
    })
    .await;

    // A browser subscribes to event-ATDome-0-summaryState: the manager asks the producers.
    let before = summary_state_messages(&mgr).len();
    assert!(mgr.send_initial_state_request("ATDome", 0, "summaryState") > 0);
    wait_manager(&mgr, &host, "the initial_state reply", |m| summary_state_messages(m).len() > before).await;
    let reply = summary_state_messages(&mgr).pop().unwrap();
    let golden = golden_summary_state_reply();
    assert_eq!(
        reply.as_object().unwrap().keys().collect::<Vec<_>>(),
        golden.as_object().unwrap().keys().collect::<Vec<_>>()
    );
    assert_eq!(
        shape(&reply["data"][0]["data"]["summaryState"][0]),
        shape(&golden["data"][0]["data"]["summaryState"][0])
    );
    assert_eq!(reply["data"][0]["salindex"], 0);

    // The manager restarts: the host reconnects (one connection, no ghost), re-subscribes at
    // once (not after 60 s) and answers again.
    let conns = mgr.connections();
    mgr.restart().await;
    wait_manager(&mgr, &host, "re-subscription after the restart", |m| m.connections() > conns && subscribed(m)).await;
    let before = summary_state_messages(&mgr).len();
    mgr.send_initial_state_request("ATDome", 0, "summaryState");
    wait_manager(&mgr, &host, "the reply after the restart", |m| summary_state_messages(m).len() > before).await;
    assert_eq!(mgr.connections(), conns + 1, "ghost connection");

    let (code, body) = http_get(&admin, "/readyz");
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(&admin, "/producers");
    assert_eq!(code, 200);
    let producers: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(producers[0]["component"], "ATDome");
    assert_eq!(producers[0]["producer_type"], "csc");
    assert!(producers[0]["last_sample_time"].as_f64().is_some());
    // The password is never logged.
    assert!(!host.stderr().iter().any(|l| l.contains("s3cret")), "password in the log");
}

fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("metrics parse as Prometheus text");
    scrape.samples.iter().find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))).map(
        |s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        },
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_and_metrics_follow_a_manager_outage_and_recovery() {
    let mgr = FakeManager::start("right").await;
    let dir = plugin_dir("outage", &[plugin_so("csc")]);
    let host = start_host_with_manager(&mgr, &dir, "wrong", &["--components", "ATDome", "--reconnect-wait", "0.5"]);
    let admin = admin_addr(&host);
    // Wrong password: a clear error, retries, not ready, counted.
    let line = host.wait_log(T, "rejected the password");
    assert!(line.contains("403") && !line.contains("wrong"), "{line}");
    let (code, body) = http_get(&admin, "/readyz");
    assert_eq!(code, 503);
    let why: Value = serde_json::from_str(&body).unwrap();
    assert!(why["reasons"][0].as_str().unwrap().contains("manager link default down"), "{body}");
    let (_, text) = http_get(&admin, "/metrics");
    assert!(
        metric(&text, "love_host_manager_connect_failures_total", &[("reason", "password")]).unwrap() >= 1.0,
        "{text}"
    );
    assert_eq!(metric(&text, "love_host_manager_connected", &[("link", "default")]), Some(0.0));

    // The manager accepts the password now: connected, ready, data counted.
    mgr.set_password("wrong");
    wait_manager(&mgr, &host, "a connection", subscribed).await;
    let deadline = std::time::Instant::now() + T;
    loop {
        let (code, _) = http_get(&admin, "/readyz");
        if code == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, text) = http_get(&admin, "/metrics");
    assert_eq!(metric(&text, "love_host_manager_connected", &[("link", "default")]), Some(1.0));
    assert_eq!(metric(&text, "love_host_manager_connections_total", &[("link", "default")]), Some(1.0));
    let samples = metric(&text, "love_host_sal_samples_received_total", &[("component", "ATDome")]).unwrap();
    assert!(samples > 0.0);
    let sent =
        metric(&text, "love_host_messages_sent_total", &[("component", "ATDome"), ("category", "event")]).unwrap();
    assert!(sent > 0.0);

    // Outage: the manager goes away; readiness drops, then recovers with a second connection.
    mgr.stop().await;
    let deadline = std::time::Instant::now() + T;
    loop {
        let (code, _) = http_get(&admin, "/readyz");
        if code == 503 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still ready during the outage");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    mgr.restart().await;
    wait_manager(&mgr, &host, "reconnection", |m| m.connections() >= 2 && subscribed(m)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, _) = http_get(&admin, "/readyz");
    assert_eq!(code, 200);
    let (_, text) = http_get(&admin, "/metrics");
    assert_eq!(metric(&text, "love_host_manager_connections_total", &[("link", "default")]), Some(2.0));
    assert!(metric(&text, "love_host_manager_disconnections_total", &[("link", "default")]).unwrap() >= 1.0);
    assert!(metric(&text, "love_host_sal_samples_received_total", &[("component", "ATDome")]).unwrap() > samples);
}
