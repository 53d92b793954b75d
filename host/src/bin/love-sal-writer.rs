//! `love-sal-writer`: publish the built-in simulator's SAL data to Kafka exactly as ts_salobj
//! writes it, and answer commands through `ackcmd`, so a whole LOVE stack (love-host
//! `--sal kafka`, or the original LOVE-producer) can be demonstrated and tested without real
//! CSCs.
//!
//!     LSST_TOPIC_SUBNAME=sal LSST_KAFKA_BROKER_ADDR=127.0.0.1:9092 \
//!     LSST_SCHEMA_REGISTRY_URL=http://127.0.0.1:8081 \
//!     love-sal-writer --components ATDome Watcher ScriptQueue:1 [--sim-seed N] [--sim-rate R]
//!
//! Kafka settings come from the environment, as for salobj (see `KafkaConfig::from_env`). Each
//! sample of the simulator is written with the writer's own private stamps (sndStamp = now) and
//! the component's identity (`ATDome`, `ScriptQueue:1`). Commands written to
//! `..command_<name>` of a simulated component are passed to the simulator and its answer
//! written to `..ackcmd` (an INPROGRESS first, then the final ack), copying the command's
//! `private_seqNum`, `private_identity` and `private_origin`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use love_host::component::ComponentName;
use love_host::sal::catalog::TopicCatalog;
use love_host::sal::kafka::{self, KafkaConfig, RegistryClient, SalWriter, TopicReader, WriteOptions};
use love_host::sal::sim::SimSource;
use love_host::sal::{ack, SalCommand, SalSource};
use love_plugin_api::abi::{TopicKind, Value};
use tokio::sync::mpsc;
use tracing::{info, warn};

#[derive(Parser, Debug)]
#[command(name = "love-sal-writer", about = "Publish simulated SAL data to Kafka as ts_salobj does")]
struct Args {
    /// Components to simulate (`ATDome`, `ScriptQueue:1`…).
    #[arg(long, num_args = 1.., required = true)]
    components: Vec<String>,
    /// Simulator seed (reproducible runs).
    #[arg(long)]
    sim_seed: Option<u64>,
    /// Simulator rate factor.
    #[arg(long, default_value_t = 1.0)]
    sim_rate: f64,
    /// A ts_xml `sal_interfaces` directory (default: the built-in catalog).
    #[arg(long, env = "TS_XML_DIR")]
    xml_dir: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let colour = love_host::logging::log_colour(
        love_host::cli::LogFormat::Text,
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR"),
    );
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,love_sal_writer=info".into()),
        )
        .with_ansi(colour)
        .init();
    let args = Args::parse();
    let comps = ComponentName::parse_list(&args.components)?;
    let mut catalog = match &args.xml_dir {
        Some(dir) => {
            let (c, errors) = TopicCatalog::load_dir(dir)?;
            for e in errors {
                warn!("{e}");
            }
            c
        }
        None => TopicCatalog::new(),
    };
    catalog.merge_missing(TopicCatalog::builtin());
    let catalog = Arc::new(catalog);
    let config = KafkaConfig::from_env()?;
    let (trigger, shutdown) = love_host::shutdown::channel();
    let sim = Arc::new(SimSource::new(catalog.clone(), args.sim_seed, args.sim_rate, shutdown.clone()));
    info!(seed = sim.seed(), "simulator started");
    let client = Arc::new(kafka::connect(&config).await?);
    let registry = Arc::new(RegistryClient::new(&config.schema_registry_url)?);
    let producer = kafka::writer::producer(&config)?;

    // Every topic of each component exists from the start, as salobj's controllers create them.
    let mut created = 0;
    for c in &comps {
        created += kafka::create_component_topics(&client, &config, &catalog, &c.name)
            .await
            .with_context(|| format!("creating the topics of {}", c.name))?;
    }
    info!(created, "topics of the components created");

    let mut tasks = Vec::new();
    for c in &comps {
        let identity = if catalog.is_indexed(&c.name) {
            format!("{}:{}", c.name, sim.sim_index(&c.name, c.index))
        } else {
            c.name.clone()
        };
        let writer = Arc::new(
            SalWriter::new(
                Some(producer.clone()),
                Some(client.clone()),
                registry.clone(),
                config.clone(),
                catalog.clone(),
            )
            .with_identity(&identity),
        );
        let (tx, mut rx) = mpsc::channel(10_000);
        sim.subscribe(&c.name, c.index, true, tx)?;
        let w = writer.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                let s = &m.sample;
                if let Err(e) = w.write(&s.component, s.sal_index, s.kind, &s.topic, &s.fields).await {
                    warn!(component = %s.component, topic = %s.topic, "not written: {e}");
                }
            }
        }));
        if let Some(cc) = catalog.component(&c.name) {
            for cmd in &cc.commands {
                tasks.push(tokio::spawn(answer_commands(
                    client.clone(),
                    registry.clone(),
                    config.clone(),
                    sim.clone(),
                    writer.clone(),
                    c.name.clone(),
                    sim.sim_index(&c.name, c.index),
                    cmd.name.clone(),
                )));
            }
        }
    }
    info!(components = ?args.components, subname = %config.topic_subname, "writing to Kafka; Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    trigger.trigger();
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// Read `..command_<name>` of a simulated component and answer each command on `ackcmd`.
#[allow(clippy::too_many_arguments)]
async fn answer_commands(
    client: Arc<kafka::KafkaClient>,
    registry: Arc<RegistryClient>,
    config: KafkaConfig,
    sim: Arc<SimSource>,
    writer: Arc<SalWriter>,
    component: String,
    index: i64,
    command: String,
) {
    let topic = config.topic_name(&component, &format!("command_{command}"));
    // Commands written before the writer started are old: start at the end if the topic
    // exists, else from its beginning when it appears.
    let mut reader = match TopicReader::new(&client, registry.clone(), &topic, None).await {
        Ok(r) => r,
        Err(_) => loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if let Ok(r) = TopicReader::new(&client, registry.clone(), &topic, Some(0)).await {
                break r;
            }
        },
    };
    loop {
        let batch = match reader.next_batch(1000).await {
            Ok(b) => b,
            Err(e) => {
                warn!(topic, "{e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for (offset, d) in batch {
            let d = match d {
                Ok(d) => d,
                Err(e) => {
                    warn!(topic, offset, "command skipped: {e}");
                    continue;
                }
            };
            if d.sal_index != 0 && d.sal_index != index {
                continue;
            }
            let ackcmd = |code: i64, result: &str, timeout: f64| {
                kafka::fields(&[
                    ("ack", Value::Int(code)),
                    ("error", Value::Int(0)),
                    ("result", Value::Str(result.into())),
                    ("identity", Value::Str(d.stamps.identity.clone())),
                    ("origin", Value::Int(d.stamps.origin)),
                    ("cmdtype", Value::Int(0)),
                    ("timeout", Value::Float(timeout)),
                ])
            };
            let opts = || WriteOptions { seq_num: Some(d.stamps.seq_num), ..Default::default() };
            let _ = writer
                .write_with(&component, index, TopicKind::ACK, "ackcmd", &ackcmd(ack::INPROGRESS, "", 60.0), opts())
                .await;
            let a = sim
                .command(SalCommand {
                    component: component.clone(),
                    index,
                    name: command.clone(),
                    fields: d.fields.to_vec(),
                    timeout: 60.0,
                })
                .await;
            if let Err(e) = writer
                .write_with(&component, index, TopicKind::ACK, "ackcmd", &ackcmd(a.code, &a.result, 0.0), opts())
                .await
            {
                warn!(topic, "ack not written: {e}");
            }
        }
    }
}
