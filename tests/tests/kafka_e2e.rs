//! The built host reading SAL from Kafka (`--sal kafka`), with `love-sal-writer` publishing
//! simulated ATDome, Watcher and ScriptQueue data the way ts_salobj writes it.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use love_host_tests::kafka_broker::Broker;
use love_host_tests::registry::Registry;
use serde_json::Value;

const T: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread")]
async fn kafka_source_delivers_the_simulators_streams_and_heartbeats_go_lost_when_the_writer_stops() {
    let broker = Broker::start().await;
    let registry = Registry::start().await;
    let env = [
        ("LSST_TOPIC_SUBNAME", "e2e"),
        ("LSST_KAFKA_BROKER_ADDR", &broker.addr()),
        ("LSST_SCHEMA_REGISTRY_URL", &registry.url()),
    ];
    let writer_bin = built().profile_dir.join("love-sal-writer");
    let mut writer = Command::new(&writer_bin)
        .args(["--components", "ATDome", "Watcher", "ScriptQueue:1", "--sim-seed", "5", "--sim-rate", "4"])
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start love-sal-writer");
    let dir = plugin_dir("kafka", &[plugin_so("csc"), plugin_so("watcher"), plugin_so("scriptqueue")]);
    let host = HostProcess::start_with_env(
        &[
            "--sal",
            "kafka",
            "--plugin-dir",
            dir.to_str().unwrap(),
            "--components",
            "ATDome",
            "Watcher",
            "ScriptQueue:1",
            "--admin-addr",
            "127.0.0.1:0",
        ],
        &env,
    );
    let heartbeat_of = |msgs: &[Value], csc: &str| -> Option<Value> {
        msgs.iter()
            .rev()
            .find(|m| m["data"][0]["csc"] == "Heartbeat" && m["data"][0]["data"]["stream"]["csc"] == csc)
            .map(|m| m["data"][0]["data"]["stream"].clone())
    };
    host.wait_stdout(T, "the simulator's streams through Kafka", |msgs| {
        let atdome = streams_of(msgs, "ATDome");
        atdome.iter().any(|s| s == "summaryState")
            && msgs.iter().any(|m| m["category"] == "telemetry" && m["data"][0]["csc"] == "ATDome")
            && streams_of(msgs, "Watcher").iter().any(|s| s == "alarm")
            && streams_of(msgs, "ScriptQueueState").iter().any(|s| s == "scriptsStream")
            && heartbeat_of(msgs, "ATDome").is_some_and(|h| h["lost"] == 0 && h["last_heartbeat_timestamp"] != -1)
    });
    // The source's own counters are exported.
    let (_, metrics) = http_get(&admin_addr(&host), "/metrics");
    let decoded = metrics
        .lines()
        .find(|l| l.starts_with("love_host_sal_source_records_total") && l.contains("events_decoded"))
        .unwrap_or_else(|| panic!("no Kafka counters in /metrics:\n{metrics}"));
    assert!(!decoded.ends_with(" 0"), "{decoded}");
    let _ = writer.kill();
    let _ = writer.wait();
    host.wait_stdout(T, "ATDome's heartbeat counted lost after the writer stopped", |msgs| {
        heartbeat_of(msgs, "ATDome").is_some_and(|h| h["lost"].as_i64().unwrap_or(0) >= 2)
    });
}
