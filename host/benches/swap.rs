//! Hot-swap cost: how long replacing a running csc producer takes (snapshot, create, restore,
//! start), per producer and for 50 producers, with realistic state (every event the simulator
//! publishes at start stored). Prints figures; asserts nothing.
//!
//!     cargo bench -p love-host --bench swap [-- --quick]

use std::sync::Arc;
use std::time::{Duration, Instant};

use love_host::component::ComponentName;
use love_host::manager::Outbox;
use love_host::manager::{LinkEvent, Outgoing};
use love_host::runtime::{spawn_producer, CreateFn, ProducerSpec, RuntimeContext, RuntimeSettings};
use love_host::sal::catalog::TopicCatalog;
use love_host::sal::sim::SimSource;
use love_plugin_api::sdk::{into_producer_box, ProducerConfig};
use tokio::sync::broadcast;

/// Discards messages; always connected.
struct Discard(broadcast::Sender<LinkEvent>);

impl Outbox for Discard {
    fn send(&self, _msg: Outgoing) {}
    fn events(&self) -> broadcast::Receiver<LinkEvent> {
        self.0.subscribe()
    }
    fn is_connected(&self) -> bool {
        true
    }
}

fn csc_create() -> CreateFn {
    Arc::new(|config: &str| {
        let cfg: ProducerConfig = serde_json::from_str(config).map_err(|e| e.to_string())?;
        let p = love_plugin_csc::CscProducer::create(cfg).map_err(|e| e.to_string())?;
        Ok(into_producer_box(p))
    })
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let producers: i64 = if quick { 10 } else { 50 };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let (trigger, shutdown) = love_host::shutdown::channel();
        let catalog = Arc::new(TopicCatalog::builtin());
        let sim = Arc::new(SimSource::new(catalog.clone(), Some(1), 1.0, shutdown.clone()));
        let (events, _) = broadcast::channel(16);
        let cat = catalog.clone();
        let ctx = RuntimeContext {
            outbox: Arc::new(Discard(events)),
            sal: sim,
            catalog: Arc::new(move |n: &str| cat.component(n).cloned()),
            settings: RuntimeSettings::default(),
            shutdown,
        };
        let mut handles = Vec::new();
        for i in 1..=producers {
            let config = ProducerConfig {
                component: "MTHexapod".into(),
                index: i,
                producer_type: "csc".into(),
                catalog: catalog.component("MTHexapod").cloned(),
                ..Default::default()
            };
            let spec = ProducerSpec {
                component: ComponentName { name: "MTHexapod".into(), index: i },
                producer_type: "csc".into(),
                label: "csc 1.0.0".into(),
                create: csc_create(),
                config,
                origin: None,
                subscribe_own: true,
            };
            handles.push(spawn_producer(spec, ctx.clone()).unwrap());
        }
        // Let every producer receive its component's start-up events and some telemetry.
        tokio::time::sleep(Duration::from_secs(if quick { 1 } else { 3 })).await;
        let mut per: Vec<Duration> = Vec::new();
        let mut bytes = 0usize;
        let all = Instant::now();
        for h in &handles {
            let r = h
                .replace(love_host::runtime::ReplaceRequest {
                    create: csc_create(),
                    origin: None,
                    serving: love_host::runtime::Serving {
                        producer_type: "csc".into(),
                        label: "csc 2.0.0 (bench)".into(),
                    },
                    state: love_host::runtime::StateTransfer::Keep,
                    subscribe_own: true,
                })
                .await
                .unwrap();
            per.push(r.duration);
            bytes += r.snapshot_bytes;
        }
        let total = all.elapsed();
        per.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!("hot swap of {producers} csc producers (debug={}):", cfg!(debug_assertions));
        println!(
            "  per producer: p50 {:.0} us, p99 {:.0} us, max {:.0} us (snapshot+create+restore+start)",
            us(per[per.len() / 2]),
            us(per[per.len() * 99 / 100]),
            us(*per.last().unwrap())
        );
        println!("  all {producers}, one after the other, requests included: {:.2} ms", total.as_secs_f64() * 1e3);
        println!("  snapshot size: {} bytes on average", bytes / producers as usize);
        trigger.trigger();
        for h in handles {
            let _ = h.task.await;
        }
    });
}
