//! A run of the producers, wired together: the configuration in, then the plugins, the topic
//! catalog, the SAL source, the manager links, the producers, hot deployment and the admin
//! endpoint started in that order, and stopped together at the end.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::info;

use crate::admin::AdminState;
use crate::config::{RunConfig, SalChoice};
use crate::deploy::{DeployError, DeployStats, FactoryInputs, WatchedDir};
use crate::factory::{assign, Assignment, FactoryError};
use crate::links::{Links, LinksError};
use crate::metrics::Metrics;
use crate::plugin::copies::{remove_private_copies, remove_stale_copies, CopiesGuard};
use crate::plugin::startup::StartupError;
use crate::plugin::PluginRegistry;
use crate::producers::ManagedProducer;
use crate::runtime::{RuntimeContext, RuntimeSettings};
use crate::sal::catalog::TopicCatalog;
use crate::sal::SalSource;
use crate::shutdown::{self, Shutdown};
use crate::source::SourceError;
use crate::topics::TopicsError;

/// How long the producers may take to stop, all together.
const PRODUCERS_STOP_BOUND: Duration = Duration::from_secs(5);

/// Why a run could not start, or ended badly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The plugin directory.
    #[error(transparent)]
    Plugins(#[from] StartupError),
    /// The topic catalog.
    #[error(transparent)]
    Catalog(#[from] TopicsError),
    /// The factory's choice for a component.
    #[error(transparent)]
    Factory(#[from] FactoryError),
    /// The async runtime.
    #[error("starting the tokio runtime")]
    Runtime(#[source] std::io::Error),
    /// The signal handlers.
    #[error("installing the SIGTERM and SIGINT handlers")]
    Signals(#[source] std::io::Error),
    /// The SAL source.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A producer that could not start.
    #[error("{0}")]
    Producer(String),
    /// Hot deployment.
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// The admin endpoint.
    #[error("starting the admin endpoint on {addr}")]
    Admin {
        /// Its address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A manager link.
    #[error(transparent)]
    Links(#[from] LinksError),
    /// `--group`: the coordination topic or the group.
    #[error("{0}")]
    Group(String),
}

/// Everything decided before anything starts.
pub struct Plan {
    /// Components and the producer serving each.
    pub assignments: Vec<Assignment>,
    /// The topic catalog.
    pub catalog: Arc<TopicCatalog>,
    /// Loaded plugins.
    pub registry: PluginRegistry,
}

/// Run the producers (the default command) until SIGINT or SIGTERM.
pub fn run(config: RunConfig) -> Result<(), RunError> {
    crate::logging::init(config.log_level, config.log_format);
    crate::memory::apply_allocator_defaults();
    crate::plugin::loader::set_max_plugin_size(config.max_plugin_size);
    // Removes this process's plugin copies on every way out of this function, errors included.
    let _copies = config.plugins.as_ref().map(|p| {
        remove_stale_copies(&std::env::temp_dir(), &p.copies_dir);
        CopiesGuard::new(&p.copies_dir)
    });
    crate::crash::install_in(&config.state_dir);
    let plan = plan(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("love-host")
        .build()
        .map_err(RunError::Runtime)?;
    runtime.block_on(run_async(config, plan))
}

/// Load the plugins and the catalog, and choose a producer for each component.
pub fn plan(config: &RunConfig) -> Result<Plan, RunError> {
    let registry = match &config.plugins {
        Some(p) => crate::plugin::startup::load_registry(&p.dir, &p.copies_dir, &config.state_dir)?,
        None => {
            info!("no --plugin-dir given: only the built-in base producer is available");
            PluginRegistry::default()
        }
    };
    let kafka = matches!(config.sal, SalChoice::Kafka);
    let catalog = crate::topics::for_run(config.xml_dir.as_deref(), &config.components, kafka)?;
    let mut assignments = Vec::new();
    for c in &config.components {
        let a = assign(c, &config.overrides, &registry, catalog.component(&c.name))?;
        info!(
            component = %c.name, index = c.index, producer_type = %a.producer_type, plugin = %a.source.label(),
            "{c} served by {} ({}): {}", a.producer_type, a.source.label(), a.reason
        );
        assignments.push(a);
    }
    Ok(Plan { assignments, catalog: Arc::new(catalog), registry })
}

async fn run_async(config: RunConfig, plan: Plan) -> Result<(), RunError> {
    let (trigger, shutdown) = shutdown::channel();
    let trigger = Arc::new(trigger);
    shutdown::on_signals(trigger.clone()).map_err(RunError::Signals)?;
    let sal =
        crate::source::open(&config.sal, config.record.as_deref(), plan.catalog.clone(), shutdown.clone()).await?;
    let mut links = Links::start(&config.links, &shutdown);
    let (membership, group_thread) = match &config.group {
        Some(g) => {
            let ctx = runtime_context(&config, &plan, &sal.source, &links, &shutdown);
            let (m, t) =
                crate::group::session::join_group(g, &config.producers, &plan.assignments, &plan.catalog, &links, ctx)
                    .await
                    .map_err(RunError::Group)?;
            (Some(m), Some(t))
        }
        None => (None, None),
    };
    // With a group, the producers start as the group assigns their components.
    let managed = match start_producers(&config, &plan, &sal.source, &links, &shutdown, membership.is_none()) {
        Ok(m) => m,
        Err(e) => {
            trigger.trigger();
            return Err(RunError::Producer(e));
        }
    };
    match &config.group {
        Some(g) => info!("love-host running in group {g}: its producers start as the group assigns components"),
        None => info!("love-host running: {} producer(s); stop with SIGINT or SIGTERM", managed.len()),
    }
    let group = membership.as_ref().map(|m| m.status.clone());
    let deploy_stats = Arc::new(DeployStats::default());
    let metrics = Arc::new(Metrics::new(&links.handles, &deploy_stats, sal.source.clone(), group.as_deref()));
    let registry = Arc::new(Mutex::new(plan.registry.clone()));
    let watched = config.plugins.as_ref().map(|p| WatchedDir {
        dir: &p.dir,
        copies_dir: &p.copies_dir,
        allow_downgrade: p.allow_downgrade,
        state_dir: &config.state_dir,
    });
    let inputs = FactoryInputs { overrides: config.overrides.clone(), catalog: plan.catalog.clone() };
    let running = deploy_stats.running.clone();
    let deployment = crate::deploy::start(
        watched,
        plan.registry,
        registry.clone(),
        inputs,
        managed,
        deploy_stats,
        membership,
        shutdown.clone(),
    )?;
    if let Some(addr) = config.admin_addr {
        let state = AdminState {
            producers: running,
            group,
            links: links.handles.clone(),
            sal: sal.source.clone(),
            registry,
            metrics,
            plugins_expected: config.plugins.is_some(),
            pulse: Arc::default(),
        };
        crate::admin::serve(addr, state, shutdown.clone()).await.map_err(|source| RunError::Admin { addr, source })?;
    }

    // Run until a signal, or until a link fails fatally.
    let failure = links.until_failure(shutdown.clone()).await;
    trigger.trigger();
    crate::producers::stop_all(deployment.finish().await, PRODUCERS_STOP_BOUND).await;
    if let Some(t) = group_thread {
        crate::group::session::leave(t).await;
    }
    if let Some(r) = &sal.recorder {
        r.finish();
    }
    if let Some(p) = &config.plugins {
        remove_private_copies(&p.copies_dir);
    }
    failure?;
    links.stopped().await?;
    info!("love-host stopped");
    Ok(())
}

fn runtime_context(
    config: &RunConfig,
    plan: &Plan,
    sal: &Arc<dyn SalSource>,
    links: &Links,
    shutdown: &Shutdown,
) -> RuntimeContext {
    let catalog = plan.catalog.clone();
    RuntimeContext {
        outbox: Arc::new(links.handles[0].1.clone()),
        sal: sal.clone(),
        catalog: Arc::new(move |name: &str| catalog.component(name).cloned()),
        settings: RuntimeSettings { call_timeout: config.producers.call_timeout, ..RuntimeSettings::default() },
        shutdown: shutdown.clone(),
    }
}

/// Start every assigned producer on its component's link (`all` false: none; with a group the
/// deployment starts them as the group assigns their components).
fn start_producers(
    config: &RunConfig,
    plan: &Plan,
    sal: &Arc<dyn SalSource>,
    links: &Links,
    shutdown: &Shutdown,
    all: bool,
) -> Result<Vec<ManagedProducer>, String> {
    let ctx = runtime_context(config, plan, sal, links, shutdown);
    let assignments = if all { &plan.assignments[..] } else { &[] };
    crate::producers::start_all(assignments, &config.producers, &plan.catalog, &ctx, |a| links.outbox_of(&a.component))
}
