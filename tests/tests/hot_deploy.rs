//! Hot deployment on the built host: plugins added, upgraded, refused while it runs, with the
//! simulator as SAL source and a fake LOVE-manager as the peer.

mod common;

use std::time::Duration;

use common::*;
use love_host_tests::FakeManager;
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

/// ATDome `position` samples the manager received (forwarded on arrival with
/// `--asynchronous-data tel_position`, as the reference does; with no `--periodic-data` the
/// topic is also periodic, so it goes out as a bare object, and the tests set a telemetry period
/// longer than themselves so that only the forwards arrive), as (private_seqNum, deployed
/// marker). Only the live forwards (category telemetry): the stored copy also goes out as an
/// event in each connection's initial data, as in the reference.
const FORWARDS_ONLY: [&str; 2] = ["--telemetry-period", "3600"];

fn positions(mgr: &FakeManager) -> Vec<(i64, Option<String>)> {
    mgr.json_frames()
        .into_iter()
        .filter(|(_, m)| m["category"] == "telemetry" && m["data"][0]["csc"] == "ATDome")
        .filter_map(|(_, m)| {
            let hb = &m["data"][0]["data"]["position"];
            let seq = hb["private_seqNum"]["value"].as_i64()?;
            Some((seq, m["deployed"].as_str().map(str::to_string)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrading_csc_during_a_steady_stream_loses_nothing_and_keeps_the_stored_state() {
    let mgr = FakeManager::start("pw").await;
    let dir = plugin_dir("upgrade", &[plugin_so("csc")]);
    let v2 = csc_next_so(None);
    let mut host = start_host_with_manager(
        &mgr,
        &dir,
        "pw",
        &[
            "--components",
            "ATDome",
            "--asynchronous-data",
            "tel_position",
            "evt_summaryState",
            "--sim-rate",
            "10",
            "--sim-seed",
            "3",
            FORWARDS_ONLY[0],
            FORWARDS_ONLY[1],
        ],
    );
    wait_manager(&mgr, &host, "20 position samples from csc 1.0.0", |m| positions(m).len() >= 20).await;
    deploy(&dir, &v2, "liblove_plugin_csc_v2.so");
    host.wait_log(T, "deploy: plugin csc 1.0.0 -> 2.0.0");
    host.wait_log(T, "ATDome:0 moved to csc 2.0.0");
    wait_manager(&mgr, &host, "20 position samples from csc 2.0.0", |m| {
        positions(m).iter().filter(|(_, d)| d.as_deref() == Some("2.0.0")).count() >= 20
    })
    .await;
    // The summaryState stored by 1.0.0 (the simulator sends it once, at start) is answered by 2.0.0.
    mgr.send_initial_state_request("ATDome", 0, "summaryState");
    wait_manager(&mgr, &host, "the summaryState reply from csc 2.0.0", |m| {
        m.json_frames()
            .iter()
            .any(|(_, f)| f["deployed"] == "2.0.0" && f["data"][0]["data"].get("summaryState").is_some())
    })
    .await;
    // What the manager has, then the counters that explain it: read after, so that every
    // replacement in the link's queue behind a gap in `hb` is already counted.
    let admin = admin_addr(&host);
    let hb = positions(&mgr);
    let (code, metrics) = http_get(&admin, "/metrics");
    assert_eq!(code, 200);
    host.signal("TERM");
    assert!(host.wait_exit(Duration::from_secs(20)).success());

    let seqs: Vec<i64> = hb.iter().map(|(s, _)| *s).collect();
    let first_v2 = hb.iter().position(|(_, d)| d.is_some()).unwrap();
    assert!(first_v2 > 0 && hb[first_v2..].iter().all(|(_, d)| d.as_deref() == Some("2.0.0")), "versions interleaved");
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "a sample was repeated or reordered across the swap: {seqs:?}");
    // The producers took every sample: none dropped by the watchdog, none by a full queue.
    let dropped = metric(&metrics, "love_host_producer_inputs_dropped_total{component=\"ATDome\"");
    assert_eq!(dropped, 0, "inputs dropped while the producer was stuck: {seqs:?}");
    assert_eq!(metric(&metrics, "love_host_queue_dropped_total{link=\"default\",reason=\"overflow\"}"), 0);
    // A gap can only be the link's documented coalescing: a telemetry forward still queued
    // when the next one of its stream is sent is replaced by it (manager/queue.rs; README,
    // "Differences", 6), counted as `coalesced`. Under CPU load the producer's thread or the
    // link's writer can be kept off a core for a sample period, and two forwards then meet in
    // the queue. Without a coalescing the stream is contiguous, the swap included.
    let missing: Vec<i64> = seqs.windows(2).flat_map(|w| w[0] + 1..w[1]).collect();
    let coalesced = metric(&metrics, "love_host_queue_dropped_total{link=\"default\",reason=\"coalesced\"}");
    assert!(
        missing.len() as u64 <= coalesced,
        "a sample was lost across the swap: {missing:?} missing (the swap at seq {}), {coalesced} coalesced by the \
         link: {seqs:?}",
        seqs[first_v2]
    );
    if !missing.is_empty() {
        eprintln!(
            "note: seqs {missing:?} replaced in the link's queue (coalesced {coalesced}); the swap at seq {}",
            seqs[first_v2]
        );
    }
    drop(host);
}

/// The value of the first `/metrics` line starting with `prefix`.
fn metric(metrics: &str, prefix: &str) -> u64 {
    let line = metrics.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"));
    line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("not a count: {line}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_deploy_never_takes_a_producer_down() {
    let mgr = FakeManager::start("pw").await;
    let dir = plugin_dir("baddeploy", &[plugin_so("csc")]);
    let restore_fails = csc_next_so(Some("restore-fails"));
    let create_panics = csc_next_so(Some("create-panics"));
    let skewed = fixture_so("skewed");
    let host = start_host_with_manager(
        &mgr,
        &dir,
        "pw",
        &[
            "--components",
            "ATDome",
            "--asynchronous-data",
            "tel_position",
            "--sim-rate",
            "10",
            FORWARDS_ONLY[0],
            FORWARDS_ONLY[1],
        ],
    );
    let admin = admin_addr(&host);
    wait_manager(&mgr, &host, "samples", |m| positions(m).len() >= 5).await;

    deploy(&dir, &restore_fails, "liblove_plugin_csc_restore_fails.so");
    assert!(host.wait_log(T, "deploy: ATDome:0 stays on").contains("panic in restore"));
    deploy(&dir, &create_panics, "liblove_plugin_csc_create_panics.so");
    let line = host.wait_log(T, "creating the new producer failed");
    assert!(line.contains("panic"), "{line}");
    deploy(&dir, &skewed, "liblove_fixture_skewed.so");
    let line = host.wait_log(T, "deploy refused");
    assert!(line.contains("liblove_fixture_skewed.so") && line.contains("layout of InputMsg differs"), "{line}");

    // Still serving, from the original csc (unmarked messages keep coming).
    let before = positions(&mgr).len();
    wait_manager(&mgr, &host, "samples after the bad deploys", |m| positions(m).len() >= before + 10).await;
    assert!(positions(&mgr).iter().all(|(_, d)| d.is_none()));
    let (code, metrics) = http_get(&admin, "/metrics");
    assert_eq!(code, 200);
    let failed = metrics
        .lines()
        .find(|l| l.starts_with("love_host_deploy_attempts_total") && l.contains("swap_failed"))
        .unwrap();
    assert!(failed.ends_with(" 2"), "{failed}");
    let refused = metrics
        .lines()
        .find(|l| l.starts_with("love_host_deploy_attempts_total") && l.contains("\"refused\""))
        .unwrap();
    assert!(refused.ends_with(" 1"), "{refused}");

    // The start-up plugin overwritten in place, not renamed, and left half-written: the host
    // maps a private copy, so it keeps serving (mapping the deployed file, it would fault), and
    // the half file is refused.
    let deployed = dir.join(plugin_so("csc").file_name().unwrap());
    let bytes = std::fs::read(&deployed).unwrap();
    std::fs::write(&deployed, &bytes[..bytes.len() / 2]).unwrap();
    host.wait_log(T, "truncated ELF file");
    let before = positions(&mgr).len();
    wait_manager(&mgr, &host, "samples after the overwrite", |m| positions(m).len() >= before + 10).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_third_party_plugin_takes_over_a_base_component_and_half_written_files_are_never_loaded() {
    let mgr = FakeManager::start("pw").await;
    let dir = plugin_dir("newplugin", &[plugin_so("csc")]);
    let host = start_host_with_manager(&mgr, &dir, "pw", &["--components", "ATDome", "FixtureV1"]);
    host.wait_log(T, "FixtureV1:0 served by base");

    // A file written in place, in two halves: the first half is never loaded as a plugin.
    let v1 = std::fs::read(fixture_so("v1")).unwrap();
    let target = dir.join("liblove_fixture_v1.so");
    std::fs::write(&target, &v1[..v1.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(!host.stderr().iter().any(|l| l.contains("moved to fixture-v1")), "half a file was loaded");
    // A temporary name is never looked at.
    std::fs::write(dir.join(".incoming.so.part"), &v1).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(!host.stderr().iter().any(|l| l.contains(".incoming")));
    // Completed: it loads and FixtureV1 moves from base to it.
    std::fs::write(&target, &v1).unwrap();
    host.wait_log(T, "FixtureV1:0 moved to fixture-v1 1.0.0");
    wait_manager(&mgr, &host, "fixture-v1's subscription", |m| {
        m.json_frames().iter().any(|(_, f): &(u64, Value)| f["option"] == "subscribe" && f["csc"] == "FixtureV1")
    })
    .await;
}
