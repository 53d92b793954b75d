//! The built host run as an operator runs it: on the simulator, messages on stdout.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

fn three_plugins() -> std::path::PathBuf {
    plugin_dir("run", &[plugin_so("csc"), plugin_so("scriptqueue"), plugin_so("watcher")])
}

#[test]
fn runs_watcher_scriptqueue_atdome_on_the_simulator_and_stops_on_sigterm() {
    let dir = three_plugins();
    let mut host = HostProcess::start(&[
        "--plugin-dir",
        dir.to_str().unwrap(),
        "--components",
        "Watcher",
        "ScriptQueue:1",
        "ATDome",
        "--sim-seed",
        "7",
    ]);
    // The log says which type serves each component and why.
    assert!(host.wait_log(T, "ATDome:0 served by csc").contains("known CSC"));
    assert!(host.wait_log(T, "Watcher:0 served by watcher").contains("claims Watcher"));
    assert!(host.wait_log(T, "ScriptQueue:1 served by scriptqueue").contains("claims ScriptQueue"));
    host.wait_stdout(T, "ATDome summaryState, Watcher stream, ScriptQueueState streams, heartbeats", |msgs| {
        let atdome = streams_of(msgs, "ATDome");
        let sq = streams_of(msgs, "ScriptQueueState");
        atdome.iter().any(|s| s == "summaryState")
            && streams_of(msgs, "Watcher").iter().any(|s| s == "stream")
            && sq.iter().any(|s| s == "stateStream")
            && sq.iter().any(|s| s == "scriptsStream")
            && msgs
                .iter()
                .any(|m| m["data"][0]["csc"] == "Heartbeat" && m["data"][0]["data"]["stream"]["csc"] == "ATDome")
            && msgs.iter().any(|m| m["category"] == "telemetry" && m["data"][0]["csc"] == "ATDome")
    });
    // Subscriptions go out too (the stdout sink counts as connected).
    let subs: Vec<_> = host
        .stdout()
        .iter()
        .filter_map(|l| love_plugin_api::json::parse_lenient(l).ok())
        .filter(|m| m["option"] == "subscribe")
        .map(|m| m["csc"].as_str().unwrap_or("").to_string())
        .collect();
    for csc in ["all", "ATDome", "Watcher", "ScriptQueue", "ScriptQueueState", "Script"] {
        assert!(subs.iter().any(|s| s == csc), "no subscription for {csc}: {subs:?}");
    }
    host.signal("TERM");
    let st = host.wait_exit(Duration::from_secs(15));
    assert!(st.success(), "exit status {st:?}\n{}", host.stderr().join("\n"));
    assert!(host.stderr().iter().any(|l| l.contains("SIGTERM")));
}

#[test]
fn stops_cleanly_on_sigint_and_every_stdout_line_is_one_json_message() {
    let dir = three_plugins();
    let mut host = HostProcess::start(&["--plugin-dir", dir.to_str().unwrap(), "ATDome"]);
    host.wait_stdout(T, "ATDome events", |msgs| streams_of(msgs, "ATDome").len() >= 2);
    host.signal("INT");
    let st = host.wait_exit(Duration::from_secs(15));
    assert!(st.success(), "exit status {st:?}");
    for line in host.stdout() {
        let v = love_plugin_api::json::parse_lenient(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
        assert!(v.is_object(), "{line}");
    }
}

#[test]
fn a_plugin_built_against_the_first_interface_revision_runs_under_this_host() {
    let dir = plugin_dir("v1run", &[plugin_so("csc"), fixture_so("v1")]);
    let mut host = HostProcess::start(&[
        "--plugin-dir",
        dir.to_str().unwrap(),
        "--producer-type",
        "ATDome=fixture-v1",
        "--components",
        "ATDome",
        "FixtureV1",
    ]);
    host.wait_log(T, "ATDome:0 served by fixture-v1");
    host.wait_log(T, "FixtureV1:0 served by fixture-v1");
    // It receives ATDome's simulated samples through the v1 ABI and answers with its messages.
    host.wait_stdout(T, "fixture-v1 echoes of ATDome samples", |msgs| {
        msgs.iter()
            .filter(|m| {
                m["data"][0]["data"]
                    .as_object()
                    .and_then(|o| o.values().next())
                    .map(|v| v[0]["plugin"] == "fixture-v1")
                    .unwrap_or(false)
            })
            .count()
            >= 3
    });
    assert!(host.stdout().iter().any(|l| l.contains("\"csc\": \"FixtureV1\"") && l.contains("subscribe")));
    host.signal("TERM");
    assert!(host.wait_exit(Duration::from_secs(15)).success());
}

#[test]
fn sets_the_allocator_defaults_unless_the_environment_chose_and_says_which() {
    let dir = three_plugins();
    let args = ["--plugin-dir", dir.to_str().unwrap(), "ATDome"];
    let host = HostProcess::start(&args);
    let line = host.wait_log(T, "allocators:");
    assert!(
        line.contains("arena limit 2 (love-host's default)") && line.contains("purge delay 0 ms (love-host's default)"),
        "{line}"
    );
    drop(host);
    // As an operator's EnvironmentFile sets them: glibc and mimalloc read them, the host leaves them.
    let host = HostProcess::start_with_env(
        &args,
        &[("GLIBC_TUNABLES", "glibc.malloc.arena_max=4"), ("MIMALLOC_PURGE_DELAY", "250")],
    );
    let line = host.wait_log(T, "allocators:");
    assert!(
        line.contains("arena limit as GLIBC_TUNABLES sets it")
            && line.contains("purge delay as MIMALLOC_PURGE_DELAY sets it"),
        "{line}"
    );
    host.wait_stdout(T, "ATDome events", |msgs| streams_of(msgs, "ATDome").len() >= 2);
}
