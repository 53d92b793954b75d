//! Does the test broker (tansu) run Kafka's group protocol the way `--group` needs it?
//! Two librdkafka consumers in one group with cooperative-sticky assignment on a six-partition
//! topic: both get a share; one leaves without a word (dropped without LeaveGroup is not
//! possible in-process, so the probe closes it abruptly by never polling it again): the other
//! gets every partition after the session timeout.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use love_host_tests::kafka_broker::Broker;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;

#[derive(Clone, Default)]
struct Ctx(Arc<Mutex<Vec<String>>>);
impl ClientContext for Ctx {}
impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        self.0.lock().unwrap().push(format!("pre {r:?}"));
    }
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        self.0.lock().unwrap().push(format!("post {r:?}"));
    }
}

fn consumer(addr: &str, strategy: &str, name: &str) -> (BaseConsumer<Ctx>, Ctx) {
    let ctx = Ctx::default();
    let c: BaseConsumer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "probe")
        .set("client.id", name)
        .set("partition.assignment.strategy", strategy)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("enable.auto.commit", "false")
        .create_with_context(ctx.clone())
        .expect("consumer");
    c.subscribe(&["probe"]).expect("subscribe");
    (c, ctx)
}

fn owned(c: &BaseConsumer<Ctx>) -> BTreeSet<i32> {
    c.assignment().map(|l| l.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default()
}

#[tokio::test]
#[ignore = "probe of the broker's group protocol; run by hand"]
async fn tansu_runs_consumer_groups() {
    let broker = Broker::start().await;
    let strategy = std::env::var("PROBE_STRATEGY").unwrap_or_else(|_| "cooperative-sticky".into());
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", broker.addr()).create().expect("admin");
    let r = admin
        .create_topics(&[NewTopic::new("probe", 6, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .expect("create");
    eprintln!("create: {r:?}");
    let addr = broker.addr();
    let strat = strategy.clone();
    tokio::task::spawn_blocking(move || {
        let (a, actx) = consumer(&addr, &strat, "a");
        let (b, bctx) = consumer(&addr, &strat, "b");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            let _ = a.poll(Duration::from_millis(50));
            let _ = b.poll(Duration::from_millis(50));
            let (oa, ob) = (owned(&a), owned(&b));
            if !oa.is_empty() && !ob.is_empty() && oa.len() + ob.len() == 6 && oa.is_disjoint(&ob) {
                break;
            }
        }
        eprintln!("after {:?}: a={:?} b={:?}", start.elapsed(), owned(&a), owned(&b));
        eprintln!("a events: {:?}", actx.0.lock().unwrap());
        eprintln!("b events: {:?}", bctx.0.lock().unwrap());
        drop(b);
        eprintln!("b closed (LeaveGroup), a after rebalance:");
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) && owned(&a).len() < 6 {
            let _ = a.poll(Duration::from_millis(50));
        }
        eprintln!("  {:?}: a={:?}", t.elapsed(), owned(&a));
        // A member in another process, killed with SIGKILL: no LeaveGroup, no heartbeats.
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "probe_child", "--nocapture"])
            .env("PROBE_ADDR", &addr)
            .env("PROBE_STRATEGY", &strat)
            .spawn()
            .unwrap();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) && owned(&a).len() == 6 {
            let _ = a.poll(Duration::from_millis(50));
        }
        eprintln!("child joined, {:?}: a={:?}", t.elapsed(), owned(&a));
        std::thread::sleep(Duration::from_secs(2));
        let _ = a.poll(Duration::from_millis(50));
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(40) && owned(&a).len() < 6 {
            let _ = a.poll(Duration::from_millis(50));
        }
        eprintln!("after kill -9 of the child, {:?}: a={:?}", t.elapsed(), owned(&a));
        for e in actx.0.lock().unwrap().iter() {
            let parts: Vec<&str> = e.match_indices("partition: ").map(|(i, _)| &e[i + 11..i + 12]).collect();
            eprintln!("  a {} {:?}", &e[..e.find('(').unwrap_or(e.len())], parts);
        }
    })
    .await
    .unwrap();
}

#[test]
#[ignore = "the member the probe kills"]
fn probe_child() {
    let Ok(addr) = std::env::var("PROBE_ADDR") else { return };
    let strat = std::env::var("PROBE_STRATEGY").unwrap();
    let (c, _ctx) = consumer(&addr, &strat, "child");
    loop {
        let _ = c.poll(Duration::from_millis(50));
        if !owned(&c).is_empty() {
            eprintln!("child owns {:?}", owned(&c));
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}
