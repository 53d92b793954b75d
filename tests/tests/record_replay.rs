//! A recorded run replays to identical producer output.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// The event messages per (envelope csc, stream), without their send times. Left out:
/// telemetry and the Heartbeat streams, which follow wall-clock cadence rather than samples, and
/// ScriptQueueState's scriptsStream, whose intermediate states depend on how Script and
/// ScriptQueue samples interleave: the simulator publishes them from concurrent tasks, so the
/// interleaving the producer saw live is not fixed by the recording's order.
fn events_by_csc(msgs: &[Value]) -> std::collections::BTreeMap<(String, String), Vec<Value>> {
    let mut out: std::collections::BTreeMap<(String, String), Vec<Value>> = Default::default();
    for m in msgs {
        if m["category"] != "event" {
            continue;
        }
        let csc = m["data"][0]["csc"].as_str().unwrap_or("").to_string();
        let stream = m["data"][0]["data"].as_object().and_then(|o| o.keys().next().cloned()).unwrap_or_default();
        if csc == "Heartbeat" || csc == "ScriptHeartbeats" || stream == "scriptsStream" {
            continue;
        }
        out.entry((csc, stream)).or_default().push(m["data"].clone());
    }
    out
}

#[test]
fn a_recorded_run_replays_to_identical_producer_output() {
    let dir = plugin_dir("replay", &[plugin_so("csc"), plugin_so("watcher"), plugin_so("scriptqueue")]);
    let rec = std::env::temp_dir().join(format!("love-host-rec-{}.jsonl", std::process::id()));
    let mut host = HostProcess::start(&[
        "--plugin-dir",
        dir.to_str().unwrap(),
        "--components",
        "ATDome",
        "Watcher",
        "ScriptQueue:1",
        "--sim-seed",
        "11",
        "--sim-rate",
        "4",
        "--record",
        rec.to_str().unwrap(),
    ]);
    host.wait_stdout(Duration::from_secs(60), "a few seconds of events", |msgs| {
        let e = events_by_csc(msgs);
        let n = |csc: &str| e.iter().filter(|((c, _), _)| c == csc).map(|(_, v)| v.len()).sum::<usize>();
        n("Watcher") >= 4 && n("Script") >= 4 && n("ScriptQueueState") >= 3
    });
    host.signal("TERM");
    assert!(host.wait_exit(Duration::from_secs(20)).success());
    let recorded: Vec<Value> =
        host.stdout().iter().filter_map(|l| love_plugin_api::json::parse_lenient(l).ok()).collect();
    let expected = events_by_csc(&recorded);
    let lines = std::fs::read_to_string(&rec).unwrap().lines().count();
    assert!(lines > 10, "recording has {lines} lines");

    let mut replay = HostProcess::start(&[
        "--plugin-dir",
        dir.to_str().unwrap(),
        "--components",
        "ATDome",
        "Watcher",
        "ScriptQueue:1",
        "--replay",
        rec.to_str().unwrap(),
        "--replay-speed",
        "1",
    ]);
    let total: usize = expected.values().map(Vec::len).sum();
    replay.wait_stdout(Duration::from_secs(60), "the replayed events", |msgs| {
        events_by_csc(msgs).values().map(Vec::len).sum::<usize>() >= total
    });
    std::thread::sleep(Duration::from_millis(500));
    replay.signal("TERM");
    assert!(replay.wait_exit(Duration::from_secs(20)).success());
    let replayed: Vec<Value> =
        replay.stdout().iter().filter_map(|l| love_plugin_api::json::parse_lenient(l).ok()).collect();
    // The recording may hold a few samples more than the recorded run's producers handled (they
    // stop at SIGTERM while the recorder has already written what was in flight): the replay must
    // reproduce every message of the recorded run, in order, per csc.
    let got = events_by_csc(&replayed);
    for (csc, want) in &expected {
        let have = got.get(csc).map(Vec::as_slice).unwrap_or(&[]);
        assert!(have.len() >= want.len(), "{csc:?}: {} replayed, {} recorded", have.len(), want.len());
        assert_eq!(&have[..want.len()], want.as_slice(), "{csc:?} differs");
    }
    let _ = std::fs::remove_file(&rec);
}
