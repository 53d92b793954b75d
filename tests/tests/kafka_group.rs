//! `--group`: two built love-host processes in one group on the Kafka test broker share six
//! components, the survivor takes over a `kill -9`'d host's, and they share again when it comes
//! back. What each host serves is counted at a manager peer (its websocket connection), and set
//! up as salobj users set it up (LSST_* variables, a consumer configuration file).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use love_host_tests::kafka_broker::Broker;
use love_host_tests::registry::Registry;
use love_host_tests::FakeManager;
use serde_json::Value;

const COMPONENTS: [&str; 6] = ["ATDome", "ATDomeTrajectory", "ATAOS", "ATPneumatics", "ATHexapod", "ATMCS"];
const PASSWORD: &str = "group-pass";
/// A component is served by a connection that sent its data within this window.
const WINDOW: Duration = Duration::from_secs(6);
/// Generous: the documented gap after a kill is session.timeout.ms (10 s) plus a rebalance.
const T: Duration = Duration::from_secs(90);

/// The component a data message is about (Heartbeat messages name it in their stream).
fn component_of(m: &Value) -> Option<String> {
    if m["category"] != "event" && m["category"] != "telemetry" {
        return None;
    }
    let d = &m["data"][0];
    let csc = d["csc"].as_str()?;
    let csc = if csc == "Heartbeat" { d["data"]["stream"]["csc"].as_str()? } else { csc };
    COMPONENTS.contains(&csc).then(|| csc.to_string())
}

/// (arrival, connection, component, stream names) of every data message about a component.
fn data_frames(mgr: &FakeManager) -> Vec<(Duration, u64, String, Vec<String>)> {
    mgr.frames()
        .iter()
        .filter_map(|f| {
            let m = f.json()?;
            let c = component_of(&m)?;
            let streams = m["data"][0]["data"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
            Some((f.at, f.conn, c, streams))
        })
        .collect()
}

/// Which connections sent each component's data since `since`.
fn served_since(mgr: &FakeManager, since: Duration) -> BTreeMap<String, BTreeSet<u64>> {
    let mut by = BTreeMap::new();
    for (at, conn, c, _) in data_frames(mgr) {
        if at >= since {
            by.entry(c).or_insert_with(BTreeSet::new).insert(conn);
        }
    }
    by
}

/// Every component served by exactly one connection lately, by `hosts` connections in all.
fn shared_once(mgr: &FakeManager, hosts: usize, since: Duration) -> bool {
    let now = mgr.frames().last().map(|f| f.at).unwrap_or_default();
    let by = served_since(mgr, since.max(now.saturating_sub(WINDOW)));
    let conns: BTreeSet<u64> = by.values().flatten().copied().collect();
    by.len() == COMPONENTS.len() && by.values().all(|s| s.len() == 1) && conns.len() == hosts
}

/// Stretches of time each connection served each component (frames less than WINDOW apart),
/// and the pairs of stretches of one component by two connections that overlap.
fn overlaps(mgr: &FakeManager) -> Vec<String> {
    let mut runs: BTreeMap<(String, u64), Vec<(Duration, Duration)>> = BTreeMap::new();
    for (at, conn, c, _) in data_frames(mgr) {
        let r = runs.entry((c, conn)).or_default();
        match r.last_mut() {
            Some((_, end)) if at - *end < WINDOW => *end = at,
            _ => r.push((at, at)),
        }
    }
    let mut found = Vec::new();
    for ((c1, n1), r1) in &runs {
        for ((c2, n2), r2) in &runs {
            if c1 != c2 || n1 >= n2 {
                continue;
            }
            for a in r1 {
                for b in r2 {
                    if a.0 < b.1 && b.0 < a.1 {
                        found.push(format!("{c1}: connection {n1} {a:?} and connection {n2} {b:?}"));
                    }
                }
            }
        }
    }
    found
}

/// Each time a component's data changed connection since `since`: (component, gap between the
/// last message of the old connection and the first of the new).
fn moves(mgr: &FakeManager, since: Duration) -> Vec<(String, Duration)> {
    let mut last: BTreeMap<String, (Duration, u64)> = BTreeMap::new();
    let mut found = Vec::new();
    for (at, conn, c, _) in data_frames(mgr) {
        if let Some((prev_at, prev_conn)) = last.insert(c.clone(), (at, conn)) {
            if prev_conn != conn && at >= since {
                found.push((c, at.saturating_sub(prev_at)));
            }
        }
    }
    found
}

struct Site {
    broker: Option<Broker>,
    _registry: Registry,
    mgr: FakeManager,
    env: Vec<(String, String)>,
    plugins: std::path::PathBuf,
    conf: std::path::PathBuf,
    writer: std::process::Child,
}

impl Site {
    async fn start() -> Site {
        let broker = Broker::start().await;
        let registry = Registry::start().await;
        let conf = std::env::temp_dir().join(format!("love-host-group-{}", std::process::id()));
        std::fs::create_dir_all(&conf).unwrap();
        // As salobj deployments are set up: the consumer configuration is a YAML file of
        // librdkafka settings, used by the group member too (its session timeout here: 6 s
        // rather than love-host's 10, which shortens the test by about 10 s).
        let consumer = conf.join("consumer.yaml");
        std::fs::write(&consumer, "socket.keepalive.enable: true\nfetch.wait.max.ms: 250\nsession.timeout.ms: 6000\n")
            .unwrap();
        let env = vec![
            ("LSST_TOPIC_SUBNAME".to_string(), "group".to_string()),
            ("LSST_KAFKA_BROKER_ADDR".to_string(), broker.addr()),
            ("LSST_SCHEMA_REGISTRY_URL".to_string(), registry.url()),
            ("LSST_KAFKA_CONSUMER_CONFIGURATION".to_string(), consumer.display().to_string()),
            ("PROCESS_CONNECTION_PASS".to_string(), PASSWORD.to_string()),
        ];
        let mut args = vec!["--sim-seed", "3", "--sim-rate", "2", "--components"];
        args.extend(COMPONENTS);
        let writer = std::process::Command::new(built().profile_dir.join("love-sal-writer"))
            .args(&args)
            .envs(env.iter().cloned())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start love-sal-writer");
        let plugins = plugin_dir("group", &[plugin_so("csc")]);
        let mgr = FakeManager::start(PASSWORD).await;
        Site { broker: Some(broker), _registry: registry, mgr, env, plugins, conf, writer }
    }

    fn host(&self) -> HostProcess {
        let url = self.mgr.url();
        let mut args = vec!["--sal", "kafka", "--group", "site", "--plugin-dir", self.plugins.to_str().unwrap()];
        args.extend(["--manager-url", url.as_str(), "--admin-addr", "127.0.0.1:0", "--components"]);
        args.extend(COMPONENTS);
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        HostProcess::start_with_env(&args, &env)
    }

    async fn wait(&self, what: &str, hosts: &[&HostProcess], cond: impl Fn(&FakeManager) -> bool) -> Duration {
        let t = Instant::now();
        if !self.mgr.wait_until(T, |m| cond(m)).await {
            let logs: Vec<String> = hosts.iter().map(|h| h.stderr().join("\n")).collect();
            panic!(
                "timed out waiting for {what}: {:?}\n--- logs ---\n{}",
                served_since(&self.mgr, Duration::ZERO),
                logs.join("\n---\n")
            );
        }
        t.elapsed()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.writer.kill();
        let _ = self.writer.wait();
        let _ = std::fs::remove_dir_all(&self.conf);
    }
}

/// The components a host lists in `/producers`, each with why it serves it.
fn producers_of(host: &HostProcess) -> BTreeMap<String, String> {
    let (status, body) = http_get(&admin_addr(host), "/producers");
    assert_eq!(status, 200, "{body}");
    let list: Vec<Value> = serde_json::from_str(&body).unwrap();
    list.iter()
        .map(|p| (p["component"].as_str().unwrap().to_string(), p["serving_because"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hosts_share_six_components_take_over_a_killed_ones_and_share_again() {
    let t0 = Instant::now();
    let mut site = Site::start().await;
    eprintln!("site up in {:.1?}", t0.elapsed());
    let a = site.host();
    let mut b = site.host();
    let took =
        site.wait("the six components shared by two hosts", &[&a, &b], |m| shared_once(m, 2, Duration::ZERO)).await;
    eprintln!("shared by two hosts {took:.1?} after they started");
    // What each host says it serves agrees with what the manager receives.
    let (pa, pb) = (producers_of(&a), producers_of(&b));
    let mut all: Vec<&String> = pa.keys().chain(pb.keys()).collect();
    all.sort();
    let mut expected: Vec<String> = COMPONENTS.map(String::from).to_vec();
    expected.sort();
    assert_eq!(all, expected.iter().collect::<Vec<_>>(), "each component in one host's /producers: {pa:?} {pb:?}");
    assert!(pa.values().chain(pb.values()).all(|why| why.contains("group site")), "{pa:?} {pb:?}");
    for h in [&a, &b] {
        let (status, body) = http_get(&admin_addr(h), "/readyz");
        assert_eq!(status, 200, "a host holding its assignment is ready: {body}");
        let (_, metrics) = http_get(&admin_addr(h), "/metrics");
        assert!(metrics.contains("love_host_group_holding_assignment 1"), "{metrics}");
        assert!(metrics.contains("love_host_group_rebalances_total{change=\"assigned\"}"), "{metrics}");
    }

    // kill -9: no goodbye to the group; the broker expires the session.
    let moved: BTreeSet<String> = pb.keys().cloned().collect();
    let killed_at = site.mgr.frames().last().map(|f| f.at).unwrap_or_default();
    b.signal("KILL");
    let _ = b.wait_exit(Duration::from_secs(10));
    let took = site
        .wait("the killed host's components served by the survivor, summaryState sent again", &[&a], |m| {
            let frames = data_frames(m);
            moved.iter().all(|c| {
                frames.iter().any(|(at, _, fc, streams)| {
                    *at > killed_at && fc == c && streams.iter().any(|s| s == "summaryState")
                })
            }) && shared_once(m, 1, killed_at)
        })
        .await;
    eprintln!("after kill -9: the survivor served {moved:?}; gaps at the manager: {:.1?}", moves(&site.mgr, killed_at));
    eprintln!("  (condition met {took:.1?} after the kill)");
    assert_eq!(producers_of(&a).len(), 6);

    // Back again: shared by two hosts again.
    let back_at = site.mgr.frames().last().map(|f| f.at).unwrap_or_default();
    let c = site.host();
    let took = site.wait("the components shared again", &[&a, &c], |m| shared_once(m, 2, back_at)).await;
    eprintln!("shared again ({took:.1?} after the restart); gaps at the manager: {:.1?}", moves(&site.mgr, back_at));
    let (pa, pc) = (producers_of(&a), producers_of(&c));
    assert_eq!(pa.len() + pc.len(), 6, "{pa:?} {pc:?}");
    assert!(pa.keys().all(|k| !pc.contains_key(k)), "{pa:?} {pc:?}");
    let (status, body) = http_get(&admin_addr(&c), "/readyz");
    assert_eq!(status, 200, "{body}");

    // A clean stop (SIGTERM) leaves the group after its producers stopped: the survivor takes
    // them in one rebalance, without waiting out the session.
    let mut c = c;
    let term_at = site.mgr.frames().last().map(|f| f.at).unwrap_or_default();
    c.signal("TERM");
    assert!(c.wait_exit(Duration::from_secs(30)).success(), "{}", c.stderr().join("\n"));
    assert!(c.stderr().iter().any(|l| l.contains("group: left the group")), "{}", c.stderr().join("\n"));
    site.wait("the stopped host's components served by the survivor", &[&a], |m| shared_once(m, 1, term_at)).await;
    eprintln!("after SIGTERM: gaps at the manager: {:.1?}", moves(&site.mgr, term_at));

    // Never two hosts at once for one component.
    let found = overlaps(&site.mgr);
    assert!(found.is_empty(), "components served by two hosts at once: {found:#?}");

    // Cut off from the broker, a host stops serving once librdkafka declares the session lost,
    // and is not ready.
    let cut = Instant::now();
    drop(site.broker.take());
    let deadline = cut + Duration::from_secs(60);
    while !producers_of(&a).is_empty() {
        assert!(Instant::now() < deadline, "still serving 60 s after the broker went away: {}", a.stderr().join("\n"));
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("broker gone: the host stopped serving {:.1?} later", cut.elapsed());
    let (status, body) = http_get(&admin_addr(&a), "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("group site: no assignment held"), "{body}");
}

/// Partition N must be one component to every host: a host whose list differs from the one the
/// group's first host recorded is refused, naming the topic and both lists; the same list in
/// another order joins.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_with_another_component_list_is_refused_and_the_order_does_not_matter() {
    let broker = Broker::start().await;
    let registry = Registry::start().await;
    let env = [
        ("LSST_TOPIC_SUBNAME", "lists".to_string()),
        ("LSST_KAFKA_BROKER_ADDR", broker.addr()),
        ("LSST_SCHEMA_REGISTRY_URL", registry.url()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let host = |components: &[&str]| {
        let mut args = vec!["--sal", "kafka", "--group", "g", "--components"];
        args.extend(components);
        HostProcess::start_with_env(&args, &env)
    };
    let first = host(&["ATDome", "ATMCS", "Watcher"]);
    first.wait_log(T, "group g: joining through lsst.lists.love-host.g");
    let mut other = host(&["ATDome", "ATMCS", "ATPneumatics"]);
    let status = other.wait_exit(Duration::from_secs(60));
    assert!(!status.success());
    let log = other.stderr().join("\n");
    assert!(
        log.contains("coordination topic lsst.lists.love-host.g was set up for the components ATDome:0 ATMCS:0 Watcher:0 but this host is configured with ATDome:0 ATMCS:0 ATPneumatics:0"),
        "{log}"
    );
    let reordered = host(&["Watcher", "ATMCS", "ATDome"]);
    reordered.wait_log(T, "group g: joining through lsst.lists.love-host.g");
}
