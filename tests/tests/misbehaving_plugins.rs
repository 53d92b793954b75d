//! Plugins that misbehave beyond a panic, on the built host: a handler that never returns
//! (hot-deployed while other components stream to a manager peer) and a segfault (named on
//! standard error, quarantined at the next start).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use love_host_tests::FakeManager;
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

/// Data frames the manager received for `csc`.
fn frames_of(mgr: &FakeManager, csc: &str) -> usize {
    mgr.json_frames().iter().filter(|(_, m)| m["data"][0]["csc"] == csc && m["category"] != "initial_state").count()
}

fn state_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("love-host-test-state-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_stuck_in_its_handler_starves_nothing_else_and_sigterm_still_exits_0() {
    let mgr = FakeManager::start("pw").await;
    let dir = plugin_dir("stuck", &[plugin_so("csc"), plugin_so("watcher")]);
    let hang = misbehaving_so("hang");
    let state = state_dir("stuck");
    let mut host = start_host_with_manager(
        &mgr,
        &dir,
        "pw",
        &[
            "--components",
            "ATDome",
            "MTHexapod:1",
            "Watcher",
            "--sim-rate",
            "10",
            "--telemetry-period",
            "0.5",
            "--producer-call-timeout",
            "1",
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    let admin = admin_addr(&host);
    wait_manager(&mgr, &host, "MTHexapod and ATDome streaming", |m| {
        frames_of(m, "MTHexapod") >= 3 && frames_of(m, "ATDome") >= 3
    })
    .await;

    // ATDome moves to the new plugin, whose handler never returns on its first telemetry sample.
    deploy(&dir, &hang, "liblove_fixture_misbehaving.so");
    host.wait_log(T, "ATDome:0 moved to misbehaving 1.0.0");
    let line = host.wait_log(T, "is stuck:");
    assert!(
        line.contains("ATDome:0") && line.contains("misbehaving 1.0.0") && line.contains("handle(SAL sample)"),
        "{line}"
    );

    // The other components keep streaming over the same link, on the same connection.
    let (hexapod, watcher) = (frames_of(&mgr, "MTHexapod"), frames_of(&mgr, "Watcher"));
    wait_manager(&mgr, &host, "MTHexapod and Watcher still streaming", |m| {
        frames_of(m, "MTHexapod") >= hexapod + 5 && frames_of(m, "Watcher") > watcher
    })
    .await;
    assert_eq!(mgr.connections(), 1, "the link stayed up");

    // The admin endpoint answers and says why the host is not ready.
    let (code, body) = http_get(&admin, "/readyz");
    assert_eq!(code, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let reasons: Vec<&str> = v["reasons"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(
        reasons.iter().any(|r| r.contains("producer ATDome:0 (misbehaving 1.0.0) stuck in handle(SAL sample)")),
        "{reasons:?}"
    );
    let (_, body) = http_get(&admin, "/producers");
    let producers: Value = serde_json::from_str(&body).unwrap();
    let state_of = |c: &str| {
        producers.as_array().unwrap().iter().find(|p| p["component"] == c).map(|p| p["state"].clone()).unwrap()
    };
    assert_eq!(state_of("ATDome"), "stuck");
    assert_eq!(state_of("MTHexapod"), "running");
    // Its samples are dropped and counted.
    let dropped = || {
        let (_, metrics) = http_get(&admin, "/metrics");
        let find = |name: &str| {
            metrics
                .lines()
                .find(|l| l.starts_with(name) && l.contains("component=\"ATDome\""))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(-1.0)
        };
        (find("love_host_producer_stuck{"), find("love_host_producer_inputs_dropped_total"))
    };
    assert!(
        love_host_tests::eventually(T, || dropped().1 > 0.0).await,
        "no dropped input counted\n{}",
        host.stderr().join("\n")
    );
    assert_eq!(dropped().0, 1.0, "love_host_producer_stuck");

    // SIGTERM: the stuck producer is abandoned and the process exits 0.
    host.signal("TERM");
    let status = host.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", host.stderr().join("\n"));
    let log = host.stderr().join("\n");
    assert!(
        log.lines()
            .any(|l| l.contains("producer ATDome:0 (misbehaving 1.0.0) did not stop") && l.contains("abandoned")),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn a_plugin_that_crashes_the_process_is_named_and_quarantined_at_the_next_start() {
    let crashing = misbehaving_so("segfault");
    let dir = plugin_dir("segfault", &[plugin_so("csc"), crashing.clone()]);
    let deployed = dir.join(crashing.file_name().unwrap());
    let state = state_dir("segfault");
    let args = [
        "--plugin-dir",
        dir.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--components",
        "ATDome",
        "--sink",
        "stdout",
    ];

    // The first SAL sample crashes the process; its last line names the plugin and the call.
    let mut host = HostProcess::start(&args);
    let status = host.wait_exit(T);
    assert_eq!(status.signal(), Some(libc_sigsegv()), "{status:?}\n{}", host.stderr().join("\n"));
    let log = host.stderr();
    let line = log.iter().find(|l| l.starts_with("love-host: FATAL: SIGSEGV")).unwrap_or_else(|| panic!("{log:#?}"));
    assert!(line.contains("in plugin misbehaving 1.0.0"), "{line}");
    assert!(line.contains(&deployed.display().to_string()), "{line}");
    assert!(line.contains("serving ATDome:0, during handle(SAL sample)"), "{line}");
    assert!(line.contains("quarantined at the next start"), "{line}");

    // The next start does not load it: ATDome is served by csc, and the log says why.
    let mut host = HostProcess::start(&args);
    let line = host.wait_log(T, "is quarantined and not loaded");
    assert!(line.contains(&deployed.display().to_string()) && line.contains("SIGSEGV"), "{line}");
    host.wait_log(T, "ATDome:0 served by csc (csc 1.0.0)");
    host.wait_stdout(T, "ATDome messages from csc", |msgs| msgs.iter().any(|m| m["data"][0]["csc"] == "ATDome"));
    host.signal("TERM");
    assert!(host.wait_exit(Duration::from_secs(20)).success());

    // `love-host plugins` lists it as quarantined; clearing the record lets it load again.
    let plugins = |extra: &[&str]| {
        let out = std::process::Command::new(&built().host)
            .args(["plugins", "--plugin-dir", dir.to_str().unwrap(), "--state-dir", state.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let listing = plugins(&[]);
    assert!(listing.contains("QUARANTINED") && listing.contains("misbehaving 1.0.0 crashed love-host"), "{listing}");
    let cleared = plugins(&["--clear-quarantine"]);
    assert!(cleared.contains("cleared quarantine of"), "{cleared}");
    assert!(!cleared.contains("QUARANTINED") && cleared.contains("misbehaving"), "{cleared}");
    let _ = std::fs::remove_dir_all(&state);
    let _ = std::fs::remove_dir_all(&dir);
}

fn libc_sigsegv() -> i32 {
    11
}
