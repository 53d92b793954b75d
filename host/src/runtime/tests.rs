//! The runtime driven end to end: real producer threads with a fake link and source.

use super::*;
use crate::manager::{LinkEvent, Outgoing};
use crate::sal::SalCommand;
use crate::watchdog::CallKind;
use love_plugin_api::abi::{InputKind, InputMsg, TopicKind};
use tokio::sync::broadcast;

fn request(create: CreateFn, producer_type: &str, label: &str, keep: bool, subscribe_own: bool) -> ReplaceRequest {
    ReplaceRequest {
        create,
        origin: None,
        serving: Serving { producer_type: producer_type.into(), label: label.into() },
        state: if keep { StateTransfer::Keep } else { StateTransfer::Fresh },
        subscribe_own,
    }
}
use love_plugin_api::message::subscription;
use love_plugin_api::sdk::{into_producer_box, Actions, Input, PluginError, ProducerLogic};
use std::sync::Mutex;

/// Counts samples; panics on a sample of topic `boom`; snapshot = count. `tag` marks the
/// stream name of its messages (to tell versions apart).
struct Counter {
    count: u64,
    tag: &'static str,
}

impl ProducerLogic for Counter {
    fn handle(&mut self, input: Input<'_>, now: f64, out: &mut Actions) -> Result<(), PluginError> {
        match input {
            Input::Sample(s) if s.topic.as_str() == "boom" => panic!("boom sample"),
            Input::Sample(_) => {
                self.count += 1;
                out.send(love_plugin_api::message::event("Counter", 0, self.tag, &self.count.to_string(), now));
            }
            Input::Register => out.send(subscription("Counter", now)),
            _ => {}
        }
        Ok(())
    }
    fn snapshot(&self) -> Result<String, PluginError> {
        Ok(self.count.to_string())
    }
    fn restore(&mut self, s: &str) -> Result<(), PluginError> {
        if self.tag == "restore-panics" {
            panic!("cannot restore");
        }
        if s == "refuse" || self.tag == "refuses" {
            return Err(PluginError::new("refusing this snapshot"));
        }
        self.count = s.parse().map_err(|_| PluginError::new("bad snapshot"))?;
        Ok(())
    }
}

struct FakeOutbox {
    sent: Mutex<Vec<Outgoing>>,
    events: broadcast::Sender<LinkEvent>,
    connections: std::sync::atomic::AtomicU64,
}

impl Outbox for FakeOutbox {
    fn send(&self, msg: Outgoing) {
        self.sent.lock().unwrap().push(msg);
    }
    fn events(&self) -> broadcast::Receiver<LinkEvent> {
        self.events.subscribe()
    }
    fn is_connected(&self) -> bool {
        true
    }
    fn connection_count(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
struct FakeSal {
    subs: Mutex<Vec<(String, i64, crate::sal::SampleTx)>>,
}

impl SalSource for FakeSal {
    fn name(&self) -> &str {
        "fake"
    }
    fn subscribe(
        &self,
        component: &str,
        index: i64,
        _history: bool,
        tx: crate::sal::SampleTx,
    ) -> Result<(), crate::sal::SalError> {
        self.subs.lock().unwrap().push((component.to_string(), index, tx));
        Ok(())
    }
    fn command(
        &self,
        _cmd: SalCommand,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = crate::sal::CommandAck> + Send + 'static>> {
        Box::pin(async { crate::sal::CommandAck { code: crate::sal::ack::COMPLETE, result: String::new() } })
    }
}

fn sample(topic: &str) -> Arc<InputMsg> {
    let mut m = InputMsg { kind: InputKind::SAMPLE, ..Default::default() };
    m.sample.component = "Counter".into();
    m.sample.topic = topic.into();
    Arc::new(m)
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached");
}

#[tokio::test]
async fn a_producer_that_missed_the_connected_event_still_sends_its_initial_data() {
    let (trigger, outbox, sal, handle) = setup();
    let subscriptions = || outbox.sent.lock().unwrap().iter().filter(|m| m.stream == "initial_state").count();
    wait_for(|| subscriptions() == 1).await;
    // Hold the producer inside a call (it blocks on the outbox while sending its answer
    // to a sample), then a new connection and more link events than its channel holds:
    // the `Connected` among them is lost to the lag.
    let tx = sal.subs.lock().unwrap()[0].2.clone();
    let held = outbox.sent.lock().unwrap();
    tx.send(sample("a")).await.unwrap();
    wait_for(|| handle.status.samples.get() == 1).await;
    outbox.connections.store(1, Ordering::Relaxed);
    let _ = outbox.events.send(LinkEvent::Connected);
    for _ in 0..40 {
        let _ = outbox.events.send(LinkEvent::Disconnected);
    }
    drop(held);
    wait_for(|| subscriptions() == 2).await;
    assert!(handle.status.inputs_dropped.get() >= 25, "the lost link events are counted");
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(5), handle.task).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_new_producer_that_refuses_the_old_state_starts_fresh() {
    let (trigger, outbox, sal, handle) = setup();
    wait_for(|| !sal.subs.lock().unwrap().is_empty()).await;
    let tx = sal.subs.lock().unwrap()[0].2.clone();
    tx.send(sample("a")).await.unwrap();
    tx.send(sample("a")).await.unwrap();
    wait_for(|| counts(&outbox).len() == 2).await;
    let subscriptions = || outbox.sent.lock().unwrap().iter().filter(|m| m.stream == "initial_state").count();
    let before = subscriptions();
    let refuses: CreateFn = Arc::new(|_| Ok(into_producer_box(Counter { count: 0, tag: "refuses" })));
    let report = handle.replace(request(refuses, "counter", "counter 3.0.0", true, true)).await.unwrap();
    assert!(report.started_fresh);
    assert_eq!(handle.current.lock().unwrap().label, "counter 3.0.0");
    assert_eq!(subscriptions(), before + 1, "a fresh producer sends its initial data and subscriptions");
    tx.send(sample("a")).await.unwrap();
    wait_for(|| counts(&outbox).len() == 3).await;
    assert_eq!(counts(&outbox)[2], ("refuses".to_string(), "1".to_string()), "counting from a clean state");
    trigger.trigger();
}

#[tokio::test]
async fn a_component_moving_to_another_plugin_gets_the_latest_events_again() {
    let (trigger, outbox, sal, handle) = setup();
    wait_for(|| !sal.subs.lock().unwrap().is_empty()).await;
    let tx = sal.subs.lock().unwrap()[0].2.clone();
    let event = |topic: &str, seq: u64| {
        let mut m = (*sample(topic)).clone();
        m.sample.kind = TopicKind::EVENT;
        m.sample.seq = seq;
        Arc::new(m)
    };
    for (i, topic) in ["summaryState", "logLevel", "summaryState"].into_iter().enumerate() {
        tx.send(event(topic, i as u64)).await.unwrap();
    }
    tx.send(sample("telemetry-like")).await.unwrap();
    wait_for(|| counts(&outbox).len() == 4).await;
    // Another plugin, no state carried: it gets the latest of each event (2), in order.
    let other: CreateFn = Arc::new(|_| Ok(into_producer_box(Counter { count: 0, tag: "count-v2" })));
    handle.replace(request(other, "other", "other 1.0.0", false, true)).await.unwrap();
    wait_for(|| counts(&outbox).len() == 6).await;
    assert_eq!(
        counts(&outbox)[4..],
        [("count-v2".to_string(), "1".to_string()), ("count-v2".to_string(), "2".to_string())]
    );
    trigger.trigger();
}

/// A producer without state that does what its function says with each input.
struct Stateless(fn(Input<'_>, f64, &mut Actions));

impl ProducerLogic for Stateless {
    fn handle(&mut self, input: Input<'_>, now: f64, out: &mut Actions) -> Result<(), PluginError> {
        (self.0)(input, now, out);
        Ok(())
    }
    fn snapshot(&self) -> Result<String, PluginError> {
        Ok(String::new())
    }
    fn restore(&mut self, _: &str) -> Result<(), PluginError> {
        Ok(())
    }
}

/// Sends a Heartbeat message saying 7 lost on each sample and reports 3 lost through the
/// typed action, so that a test can tell which of the two the host reads.
fn reports_heartbeat(input: Input<'_>, now: f64, out: &mut Actions) {
    if let Input::Sample(_) = input {
        out.send(love_plugin_api::message::heartbeat("Counter", 0, 7, None, now));
        out.push_raw(love_plugin_api::abi::ActionMsg {
            kind: love_plugin_api::abi::ActionKind::HEARTBEAT_LOST,
            code: 3,
            component: "Counter".into(),
            ..Default::default()
        });
    }
}

/// Panics on every start.
fn panics_on_start(input: Input<'_>, _: f64, _: &mut Actions) {
    if matches!(input, Input::Start) {
        panic!("cannot start");
    }
}

#[tokio::test]
async fn the_heartbeat_lost_count_is_the_one_the_producer_reports_not_read_from_its_json() {
    let (trigger, outbox, sal, handle) = setup_with(Arc::new(|_| Ok(into_producer_box(Stateless(reports_heartbeat)))));
    assert_eq!(handle.status.heartbeat_lost(), None);
    wait_for(|| !sal.subs.lock().unwrap().is_empty()).await;
    let tx = sal.subs.lock().unwrap()[0].2.clone();
    tx.send(sample("a")).await.unwrap();
    wait_for(|| outbox.sent.lock().unwrap().iter().any(|m| m.csc == "Heartbeat")).await;
    wait_for(|| handle.status.heartbeat_lost().is_some()).await;
    assert_eq!(handle.status.heartbeat_lost(), Some(3));
    trigger.trigger();
}

#[tokio::test]
async fn a_producer_that_panics_on_every_start_keeps_restarting_and_stops_at_shutdown() {
    let (trigger, _, _, handle) = setup_with(Arc::new(|_| Ok(into_producer_box(Stateless(panics_on_start)))));
    wait_for(|| handle.status.restarts.get() >= 2).await;
    assert!(handle.status.panics.get() >= 2);
    // The next backoff is a second or more: shutdown does not wait for it.
    trigger.trigger();
    tokio::time::timeout(Duration::from_millis(500), handle.task).await.expect("task ends at shutdown").unwrap();
}

/// Counts samples as `Counter` does; blocks in `handle` on a sample of topic `hang` until
/// its gate opens.
struct Hangs {
    count: u64,
    gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl ProducerLogic for Hangs {
    fn handle(&mut self, input: Input<'_>, now: f64, out: &mut Actions) -> Result<(), PluginError> {
        match input {
            Input::Sample(s) if s.topic.as_str() == "hang" => {
                let (open, cv) = &*self.gate;
                let mut open = open.lock().unwrap();
                while !*open {
                    open = cv.wait(open).unwrap();
                }
            }
            Input::Sample(_) => {
                self.count += 1;
                out.send(love_plugin_api::message::event("Counter", 0, "count", &self.count.to_string(), now));
            }
            _ => {}
        }
        Ok(())
    }
    fn snapshot(&self) -> Result<String, PluginError> {
        Ok(self.count.to_string())
    }
    fn restore(&mut self, s: &str) -> Result<(), PluginError> {
        self.count = s.parse().map_err(|_| PluginError::new("bad snapshot"))?;
        Ok(())
    }
}

#[tokio::test]
async fn a_stuck_producer_is_reported_its_samples_dropped_and_it_recovers_when_the_call_returns() {
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let g = gate.clone();
    let settings =
        RuntimeSettings { call_timeout: Duration::from_millis(200), inbox_capacity: 8, ..Default::default() };
    let create: CreateFn = Arc::new(move |_| Ok(into_producer_box(Hangs { count: 0, gate: g.clone() })));
    let (trigger, outbox, sal, handle) = setup_with_settings(create, settings);
    wait_for(|| !sal.subs.lock().unwrap().is_empty()).await;
    let tx = sal.subs.lock().unwrap()[0].2.clone();
    tx.send(sample("a")).await.unwrap();
    wait_for(|| counts(&outbox).len() == 1).await;
    tx.send(sample("hang")).await.unwrap();
    wait_for(|| handle.status.clock.is_stuck()).await;
    let stuck = handle.status.clock.stuck_call(mono_ns()).unwrap();
    assert_eq!(stuck.call, CallKind::Handle(InputKind::SAMPLE));
    assert!(stuck.elapsed >= Duration::from_millis(200));
    // While it is stuck its samples are dropped and counted, not queued.
    for _ in 0..100 {
        tx.send(sample("a")).await.unwrap();
    }
    wait_for(|| handle.status.inputs_dropped.get() == 100).await;
    // A deployment cannot swap it.
    let v2: CreateFn = Arc::new(|_| Ok(into_producer_box(Counter { count: 0, tag: "count-v2" })));
    let err = handle.replace(request(v2, "counter", "counter 2.0.0", true, true)).await.unwrap_err();
    assert!(matches!(&err, SwapError::Stuck { call, .. } if call == "handle(SAL sample)"), "{err}");
    // The call returns: the producer takes inputs again, its state intact.
    {
        let (open, cv) = &*gate;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
    wait_for(|| !handle.status.clock.is_stuck()).await;
    tx.send(sample("a")).await.unwrap();
    wait_for(|| counts(&outbox).len() == 2).await;
    assert_eq!(counts(&outbox)[1], ("count".to_string(), "2".to_string()));
    assert_eq!(handle.status.clock.stuck_total.get(), 1);
    assert_eq!(handle.current.lock().unwrap().label, "counter 1.0.0", "the swap refused while stuck never happened");
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(5), handle.task).await.unwrap().unwrap();
}

fn setup() -> (crate::shutdown::ShutdownTrigger, Arc<FakeOutbox>, Arc<FakeSal>, ProducerHandle) {
    setup_with(Arc::new(|_| Ok(into_producer_box(Counter { count: 0, tag: "count" }))))
}

/// A producer of `create` serving `Counter` with fake link and source (snapshots every
/// 20 ms, default restart backoff).
fn setup_with(create: CreateFn) -> (crate::shutdown::ShutdownTrigger, Arc<FakeOutbox>, Arc<FakeSal>, ProducerHandle) {
    setup_with_settings(create, RuntimeSettings { snapshot_interval: Duration::from_millis(20), ..Default::default() })
}

fn setup_with_settings(
    create: CreateFn,
    settings: RuntimeSettings,
) -> (crate::shutdown::ShutdownTrigger, Arc<FakeOutbox>, Arc<FakeSal>, ProducerHandle) {
    let (trigger, shutdown) = crate::shutdown::channel();
    let (events, _) = broadcast::channel(16);
    let outbox = Arc::new(FakeOutbox { sent: Mutex::new(Vec::new()), events, connections: Default::default() });
    let sal = Arc::new(FakeSal::default());
    let ctx =
        RuntimeContext { outbox: outbox.clone(), sal: sal.clone(), catalog: Arc::new(|_| None), settings, shutdown };
    let spec = ProducerSpec {
        component: ComponentName { name: "Counter".into(), index: 0 },
        producer_type: "counter".into(),
        label: "counter 1.0.0".into(),
        create,
        config: ProducerConfig::default(),
        subscribe_own: true,
        origin: None,
    };
    let handle = spawn_producer(spec, ctx).unwrap();
    (trigger, outbox, sal, handle)
}

fn counts(outbox: &FakeOutbox) -> Vec<(String, String)> {
    outbox
        .sent
        .lock()
        .unwrap()
        .iter()
        .filter(|m| ["count", "count-v2", "refuses"].contains(&m.stream.as_str()))
        .map(|m| {
            let v: serde_json::Value = serde_json::from_str(&m.text).unwrap();
            (m.stream.clone(), v["data"][0]["data"][&m.stream][0].to_string())
        })
        .collect()
}

#[tokio::test]
async fn replacing_a_producer_mid_stream_loses_and_repeats_nothing() {
    let (trigger, outbox, sal, handle) = setup();
    wait_for(|| !sal.subs.lock().unwrap().is_empty()).await;
    let tx = sal.subs.lock().unwrap()[0].2.clone();
    for _ in 0..100 {
        tx.send(sample("a")).await.unwrap();
    }
    wait_for(|| counts(&outbox).len() == 100).await;
    // The swap is requested before the next samples are fed: it happens between two of them.
    let v2: CreateFn = Arc::new(|_| Ok(into_producer_box(Counter { count: 0, tag: "count-v2" })));
    let feeder = async {
        for _ in 0..100 {
            tx.send(sample("a")).await.unwrap();
            tokio::task::yield_now().await;
        }
    };
    let (report, ()) = tokio::join!(handle.replace(request(v2, "counter", "counter 2.0.0", true, true)), feeder);
    assert!(report.unwrap().snapshot_bytes > 0);
    wait_for(|| counts(&outbox).len() == 200).await;
    let got = counts(&outbox);
    let numbers: Vec<u64> = got.iter().map(|(_, n)| n.parse().unwrap()).collect();
    assert_eq!(numbers, (1..=200).collect::<Vec<u64>>(), "every input handled exactly once, state carried over");
    assert!(got.iter().any(|(s, _)| s == "count") && got.last().unwrap().0 == "count-v2");
    assert_eq!(handle.current.lock().unwrap().label, "counter 2.0.0");
    trigger.trigger();
}

#[tokio::test]
async fn a_failed_replacement_keeps_the_old_producer_serving() {
    let (trigger, outbox, sal, handle) = setup();
    wait_for(|| !sal.subs.lock().unwrap().is_empty()).await;
    let tx = sal.subs.lock().unwrap()[0].2.clone();
    tx.send(sample("a")).await.unwrap();
    let fails: CreateFn = Arc::new(|_| Err("cannot build".to_string()));
    let err = handle.replace(request(fails, "counter", "bad 2.0.0", true, true)).await.unwrap_err().to_string();
    assert!(err.contains("creating the new producer failed"), "{err}");
    let restore_panics: CreateFn = Arc::new(|_| Ok(into_producer_box(Counter { count: 0, tag: "restore-panics" })));
    let err =
        handle.replace(request(restore_panics, "counter", "bad 2.0.1", true, true)).await.unwrap_err().to_string();
    assert!(err.contains("failed restoring the old one's snapshot") && err.contains("cannot restore"), "{err}");
    let panics: CreateFn = Arc::new(|_| {
        love_plugin_api::sdk::create_guarded::<Counter>(r#"{"component": "Counter"}"#.into(), |_| {
            panic!("panic in create")
        })
        .into_result()
        .map_err(|e| e.to_string())
    });
    let err = handle.replace(request(panics, "counter", "bad 2.0.2", true, true)).await.unwrap_err().to_string();
    assert!(err.contains("panic"), "{err}");
    let panics_on_start: CreateFn = Arc::new(|_| Ok(into_producer_box(Stateless(panics_on_start))));
    let err =
        handle.replace(request(panics_on_start, "counter", "bad 2.0.3", false, true)).await.unwrap_err().to_string();
    assert!(err.contains("panicked while starting"), "{err}");
    assert_eq!(handle.status.restarts.get(), 0, "the old producer was not restarted");
    tx.send(sample("a")).await.unwrap();
    wait_for(|| counts(&outbox).len() == 2).await;
    assert_eq!(counts(&outbox), [("count".to_string(), "1".to_string()), ("count".to_string(), "2".to_string())]);
    assert_eq!(handle.current.lock().unwrap().label, "counter 1.0.0");
    trigger.trigger();
}

#[tokio::test]
async fn a_panicking_producer_restarts_from_its_snapshot_and_loses_no_input() {
    let (trigger, outbox, sal, handle) = setup();
    wait_for(|| !sal.subs.lock().unwrap().is_empty()).await;
    let tx = sal.subs.lock().unwrap()[0].2.clone();
    for _ in 0..3 {
        tx.send(sample("a")).await.unwrap();
    }
    wait_for(|| outbox.sent.lock().unwrap().iter().filter(|m| m.stream == "count").count() == 3).await;
    // Let a snapshot (count = 3) be taken, then panic and keep sending.
    tokio::time::sleep(Duration::from_millis(60)).await;
    tx.send(sample("boom")).await.unwrap();
    tx.send(sample("a")).await.unwrap();
    tx.send(sample("a")).await.unwrap();
    wait_for(|| outbox.sent.lock().unwrap().iter().filter(|m| m.stream == "count").count() == 5).await;
    let sent = outbox.sent.lock().unwrap();
    let counts: Vec<String> = sent
        .iter()
        .filter(|m| m.stream == "count")
        .map(|m| serde_json::from_str::<serde_json::Value>(&m.text).unwrap()["data"][0]["data"]["count"][0].to_string())
        .collect();
    // The restored producer continues from the snapshot: 4 and 5, nothing lost.
    assert_eq!(counts, ["1", "2", "3", "4", "5"]);
    assert_eq!(handle.status.panics.get(), 1);
    assert_eq!(handle.status.restarts.get(), 1);
    // The same SAL subscription is kept across the restart.
    assert_eq!(sal.subs.lock().unwrap().len(), 1);
    drop(sent);
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(5), handle.task).await.unwrap().unwrap();
}
