//! The binary's commands, over the library.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use love_plugin_api::sdk::ProducerConfig;
use tracing::{error, info, warn};

use crate::cli::{LogFormat, RunArgs, SalArg, SinkArg};
use crate::component::ComponentName;
use crate::deploy::{Deployer, FactoryInputs, ManagedProducer};
use crate::factory::{assign, parse_overrides, Assignment, ProducerSource};
use crate::manager::config::{LinkConfig, SinkKind};
use crate::plugin::{loader::host_api_version, quarantine, scan_dir_checked, scan_dir_private, PluginRegistry};
use crate::runtime::{spawn_producer, CreateFn, ProducerSpec, RuntimeContext, RuntimeSettings};
use crate::sal::catalog::TopicCatalog;
use crate::sal::SalSource;
use crate::shutdown;

/// `love-host plugins --plugin-dir DIR [--clear-quarantine]`: forget the crash records of the
/// directory's files if asked, then list what it offers.
pub fn plugins_command(
    dir: &Path,
    state_dir: Option<&Path>,
    clear_quarantine: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let state_dir = state_dir.map(Path::to_path_buf).unwrap_or_else(quarantine::default_state_dir);
    if clear_quarantine {
        let cleared = quarantine::Quarantine::clear(&state_dir, dir)
            .with_context(|| format!("clearing the quarantine in {}", state_dir.display()))?;
        for e in &cleared {
            writeln!(out, "cleared quarantine of {}: {}", e.file.display(), e.describe())?;
        }
        if cleared.is_empty() {
            writeln!(out, "no quarantined file in {} (state directory {})", dir.display(), state_dir.display())?;
        }
    }
    let (q, warnings) = quarantine::Quarantine::load(&state_dir);
    for w in warnings {
        writeln!(out, "warning: {w}")?;
    }
    list_plugins_checked(dir, &q, out)
}

/// `love-host plugins --plugin-dir DIR`: list what a directory offers, without connecting
/// anywhere. Returns the text printed.
pub fn list_plugins(dir: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    list_plugins_checked(dir, &quarantine::Quarantine::default(), out)
}

fn list_plugins_checked(dir: &Path, q: &quarantine::Quarantine, out: &mut dyn Write) -> anyhow::Result<()> {
    let report = scan_dir_checked(dir, q)?;
    writeln!(out, "plugin directory {} (host interface love-plugin-api {})", dir.display(), host_api_version())?;
    if report.loaded.is_empty() && report.refused.is_empty() {
        writeln!(out, "no plugins (*.so) found")?;
    }
    if !report.loaded.is_empty() {
        writeln!(out, "{:<16} {:<10} {:<14} {:<24} {:<9} FILE", "NAME", "VERSION", "TYPE", "CLAIMS", "API")?;
    }
    for p in &report.loaded {
        let d = &p.descriptor;
        let claims = if d.claims.is_empty() { "-".to_string() } else { d.claims.join(",") };
        writeln!(
            out,
            "{:<16} {:<10} {:<14} {:<24} {:<9} {}",
            d.name,
            d.version,
            d.producer_type,
            claims,
            d.api_version,
            p.path.display()
        )?;
    }
    for e in &report.refused {
        writeln!(out, "REFUSED {e}")?;
    }
    for (file, e) in &report.quarantined {
        writeln!(
            out,
            "QUARANTINED {}: {} (love-host plugins --clear-quarantine --plugin-dir {})",
            file.display(),
            e.describe(),
            dir.display()
        )?;
    }
    Ok(())
}

/// Set up logging on standard error (standard output may carry the messages).
pub fn init_logging(args: &RunArgs) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOVE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(args.log_level.directive()));
    let colour = log_colour(args.log_format, std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR"));
    // Redacted whatever the filter lets through (tungstenite logs the handshake at trace).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::manager::redact::RedactingStderr)
        .with_ansi(colour);
    let _ = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    std::panic::set_hook(Box::new(log_panic));
}

/// The host's panic hook: the panic through the logger (one JSON line under `--log-format
/// json`), not raw text on standard error. A backtrace only when `RUST_BACKTRACE` asks for one:
/// symbolizing it keeps the debug information in memory for the rest of the run. Panics inside
/// producers are caught by the SDK's own quiet hook and reported by the runtime instead.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let message = love_plugin_api::sdk::panic_text(info.payload());
    let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())).unwrap_or_default();
    let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
    let backtrace = std::backtrace::Backtrace::capture();
    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        error!(target: "love_host::panic", thread, location, "panic: {message}\n{backtrace}");
    } else {
        error!(target: "love_host::panic", thread, location, "panic: {message}");
    }
}

/// Whether log lines get ANSI colours: only text lines for a person at a terminal, so a file,
/// a pipe or the journal never gets escape sequences; `NO_COLOR` set to anything but the empty
/// string turns them off (no-color.org).
pub fn log_colour(format: LogFormat, stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    format == LogFormat::Text && stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Everything decided before anything starts: the place where bad configuration is refused.
pub struct Plan {
    /// Components and the producer serving each.
    pub assignments: Vec<Assignment>,
    /// The topic catalog.
    pub catalog: Arc<TopicCatalog>,
    /// Loaded plugins.
    pub registry: PluginRegistry,
}

/// The SAL source `args` select (`--sal`, else replay with `--replay`, Kafka when
/// `LSST_KAFKA_BROKER_ADDR` is set, else the simulator).
fn sal_kind(args: &RunArgs) -> SalArg {
    match args.sal {
        Some(k) => k,
        None if args.replay.is_some() => SalArg::Replay,
        None if std::env::var_os("LSST_KAFKA_BROKER_ADDR").is_some() => SalArg::Kafka,
        None => SalArg::Sim,
    }
}

/// In Kafka mode the served components' topics come from their writer schemas in the registry
/// (what the CSCs really publish); ts_xml keeps what schemas lack. A registry that does not
/// answer leaves the catalog as loaded (the source reports the registry later).
fn catalog_from_registry(catalog: &mut TopicCatalog, components: &[ComponentName]) {
    let Ok(config) = crate::sal::kafka::KafkaConfig::from_env() else { return };
    let mut names: Vec<String> = components.iter().map(|c| c.name.clone()).collect();
    names.dedup();
    match crate::sal::kafka::schema_catalog::enrich_at_start(catalog, &config, &names, Duration::from_secs(15)) {
        Ok(r) => {
            info!(
                topics = r.topics,
                "topic catalog: {} topics of {} from their writer schemas in the schema registry {}",
                r.topics,
                if r.components.is_empty() { "no component".to_string() } else { r.components.join(", ") },
                config.schema_registry_url
            );
            for p in r.problems {
                warn!("topic catalog: schema of {p}; the topic keeps its ts_xml entry");
            }
        }
        Err(e) => warn!(
            "topic catalog: the schema registry {} could not be read ({e}); the topics are described by the \
             ts_xml catalog",
            config.schema_registry_url
        ),
    }
}

/// Parse components, load plugins and the catalog, and choose a producer for each component.
pub fn plan(args: &RunArgs) -> anyhow::Result<Plan> {
    let names = args.component_args();
    let components = ComponentName::parse_list(&names)?;
    if components.is_empty() {
        bail!("At least one component must be provided (positional, --components, or LOVE_CSC_PRODUCER)");
    }
    let mut seen = std::collections::HashSet::new();
    for c in &components {
        if !seen.insert(c.clone()) {
            bail!("component {c} is listed twice");
        }
    }
    let overrides = parse_overrides(&args.producer_type)?;
    for kv in &args.settings {
        if !kv.split_once('=').is_some_and(|(k, _)| !k.trim().is_empty()) {
            bail!("--setting {kv:?} is not of the form NAME=VALUE");
        }
    }
    let registry = match &args.plugin_dir {
        Some(dir) => {
            let copies = plugin_copies_dir(args);
            crate::deploy::prepare_copies_dir(&copies)
                .with_context(|| format!("preparing the private plugin copy directory {}", copies.display()))?;
            let (q, warnings) = quarantine::Quarantine::load(&state_dir(args));
            for w in warnings {
                warn!("plugin quarantine: {w}");
            }
            let report = scan_dir_private(dir, &copies, &q)?;
            for (file, e) in &report.quarantined {
                warn!(
                    file = %file.display(), plugin = %e.plugin, version = %e.version,
                    "plugin file {} is quarantined and not loaded: {}; its components are served by \
                     another version or the fallback producer until it is replaced by a new build or cleared \
                     (love-host plugins --clear-quarantine --plugin-dir {})",
                    file.display(), e.describe(), dir.display()
                );
            }
            if report.loaded.is_empty() && report.refused.is_empty() {
                warn!(
                    "plugin directory {} holds no plugins (*.so); only the built-in base producer is available",
                    dir.display()
                );
            }
            for p in &report.loaded {
                let d = &p.descriptor;
                info!(
                    plugin = %d.name, version = %d.version, producer_type = %d.producer_type,
                    claims = ?d.claims, api = %d.api_version, file = %p.path.display(),
                    "loaded plugin {} {}", d.name, d.version
                );
            }
            for e in &report.refused {
                error!(file = %e.path().display(), "plugin refused: {e}");
            }
            PluginRegistry::new(report.loaded)
        }
        None => {
            info!("no --plugin-dir given: only the built-in base producer is available");
            PluginRegistry::default()
        }
    };
    let loaded = crate::topics::load(args.xml_dir.as_deref())?;
    for e in &loaded.problems {
        warn!("topic catalog: {e}");
    }
    let mut catalog = loaded.catalog;
    info!(catalog = %loaded.source, "topic catalog: {} ({} components)", loaded.source, catalog.len());
    if sal_kind(args) == SalArg::Kafka {
        catalog_from_registry(&mut catalog, &components);
    }
    let mut assignments = Vec::new();
    for c in &components {
        let a = assign(c, &overrides, &registry, catalog.component(&c.name))?;
        info!(
            component = %c.name, index = c.index, producer_type = %a.producer_type, plugin = %a.source.label(),
            "{c} served by {} ({}): {}", a.producer_type, a.source.label(), a.reason
        );
        assignments.push(a);
    }
    Ok(Plan { assignments, catalog: Arc::new(catalog), registry })
}

/// Settings handed to every producer (the original's environment variables included).
fn producer_settings(args: &RunArgs) -> BTreeMap<String, String> {
    let mut settings = BTreeMap::new();
    settings.insert("telemetry_period".into(), args.telemetry_period.to_string());
    settings.insert("telemetry_stale_after".into(), args.telemetry_stale_after.to_string());
    settings.insert("heartbeat_timeout".into(), "2.0".into());
    for var in ["FINISHED_SCRIPTS_LIST_SIZE", "UPDATE_SCRIPTS_SCHEMA_ON_START"] {
        if let Ok(v) = std::env::var(var) {
            settings.insert(var.into(), v);
        }
    }
    for kv in &args.settings {
        // Validated in `plan`.
        if let Some((k, v)) = kv.split_once('=') {
            settings.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    settings
}

pub fn create_fn(source: &ProducerSource) -> CreateFn {
    match source {
        ProducerSource::Base => Arc::new(|config: &str| {
            let cfg: ProducerConfig = serde_json::from_str(config).map_err(|e| e.to_string())?;
            let p = crate::base::create(cfg).map_err(|e| e.to_string())?;
            Ok(love_plugin_api::sdk::into_producer_box(p))
        }),
        ProducerSource::Plugin(p) => {
            let p = p.clone();
            Arc::new(move |config: &str| p.create(config))
        }
    }
}

/// The state directory (`--state-dir`, else [`quarantine::default_state_dir`]).
fn state_dir(args: &RunArgs) -> PathBuf {
    args.state_dir.clone().unwrap_or_else(quarantine::default_state_dir)
}

/// Install the crash handler, recording into the state directory's quarantine file (without
/// one, if the directory cannot be made: crashes are then only reported on standard error).
fn install_crash_handler(args: &RunArgs) {
    let dir = state_dir(args);
    match quarantine::prepare_state_dir(&dir) {
        Ok(file) => {
            info!("state directory {} (crash quarantine: {})", dir.display(), file.display());
            crate::crash::install(Some(&file));
        }
        Err(e) => {
            warn!(
                "state directory {}: {e}; a plugin that crashes the process will not be quarantined (set --state-dir)",
                dir.display()
            );
            crate::crash::install(None);
        }
    }
}

/// The manager links to open and which components use each.
pub struct LinkPlan {
    /// (name, configuration, components) per link; `default` takes every component not listed
    /// in a `[[links]]` table.
    pub links: Vec<(String, LinkConfig, Vec<ComponentName>)>,
}

impl LinkPlan {
    /// Index of the link serving `c`.
    pub fn link_of(&self, c: &ComponentName) -> usize {
        self.links.iter().position(|(_, _, cs)| cs.contains(c)).unwrap_or(0)
    }
}

/// Build the link plan from the options, the environment and the configuration file's
/// `[[links]]`.
pub fn link_plan(args: &RunArgs, components: &[ComponentName]) -> anyhow::Result<LinkPlan> {
    let mut links: Vec<(String, LinkConfig, Vec<ComponentName>)> = Vec::new();
    let mut claimed: Vec<ComponentName> = Vec::new();
    let mut grouped = Vec::new();
    for (i, spec) in args.links.iter().enumerate() {
        // The name labels the link's metrics and logs: it must tell the links apart.
        if spec.name.trim().is_empty() || spec.name == "default" {
            bail!(
                "[[links]] {:?}: a link needs a name other than \"default\" (the link of the other components)",
                spec.name
            );
        }
        if args.links[..i].iter().any(|other| other.name == spec.name) {
            bail!("[[links]] {}: two links have this name", spec.name);
        }
        let members = ComponentName::parse_list(&spec.components)
            .with_context(|| format!("[[links]] {}: components", spec.name))?;
        for m in &members {
            if !components.contains(m) {
                bail!("[[links]] {}: component {m} is not among the configured components", spec.name);
            }
            if claimed.contains(m) {
                bail!("[[links]] {}: component {m} is already sent to another link", spec.name);
            }
            claimed.push(m.clone());
        }
        let password_var = spec.password_env.clone().unwrap_or_else(|| "PROCESS_CONNECTION_PASS".into());
        let mut cfg = LinkConfig::from_lookup(Some(&spec.url), Some(SinkKind::Websocket), args.ca_file.clone(), |k| {
            if k == "PROCESS_CONNECTION_PASS" {
                std::env::var(&password_var).ok()
            } else {
                std::env::var(k).ok()
            }
        })
        .with_context(|| format!("[[links]] {}: url", spec.name))?;
        cfg.reconnect_wait = secs(args.reconnect_wait, "--reconnect-wait")?;
        cfg.resubscribe_period = secs(args.resubscribe_period, "--resubscribe-period")?;
        grouped.push((spec.name.clone(), cfg, members));
    }
    let rest: Vec<ComponentName> = components.iter().filter(|c| !claimed.contains(c)).cloned().collect();
    if !rest.is_empty() || grouped.is_empty() {
        links.push(("default".to_string(), link_config(args)?, rest));
    }
    links.extend(grouped);
    Ok(LinkPlan { links })
}

fn link_config(args: &RunArgs) -> anyhow::Result<LinkConfig> {
    let sink = match args.sink {
        SinkArg::Auto => None,
        SinkArg::Websocket => Some(SinkKind::Websocket),
        SinkArg::Stdout => Some(SinkKind::Stdout),
    };
    let mut cfg = LinkConfig::from_env_and_args(args.manager_url.as_deref(), sink, args.ca_file.clone())?;
    cfg.reconnect_wait = secs(args.reconnect_wait, "--reconnect-wait")?;
    cfg.resubscribe_period = secs(args.resubscribe_period, "--resubscribe-period")?;
    Ok(cfg)
}

fn secs(v: f64, what: &str) -> anyhow::Result<Duration> {
    if !(v.is_finite() && v > 0.0) {
        bail!("{what} must be a positive number of seconds, got {v}");
    }
    Duration::try_from_secs_f64(v).map_err(|_| anyhow::anyhow!("{what} is too large: {v} seconds"))
}

/// Run the producers (the default command) until SIGINT or SIGTERM.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(&args);
    crate::plugin::loader::set_max_plugin_size(args.max_plugin_size);
    // Removes this process's plugin copies on every way out of this function, errors included.
    let _copies = args.plugin_dir.as_ref().map(|_| {
        let copies = plugin_copies_dir(&args);
        crate::deploy::remove_stale_copies(&std::env::temp_dir(), &copies);
        crate::deploy::CopiesGuard::new(&copies)
    });
    install_crash_handler(&args);
    let plan = plan(&args)?;
    let components: Vec<ComponentName> = plan.assignments.iter().map(|a| a.component.clone()).collect();
    let link_cfg = link_plan(&args, &components)?;
    secs(args.telemetry_period, "--telemetry-period")?;
    secs(args.producer_call_timeout, "--producer-call-timeout")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("love-host")
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(run_async(args, plan, link_cfg))
}

async fn run_async(args: RunArgs, plan: Plan, link_plan: LinkPlan) -> anyhow::Result<()> {
    let (trigger, shutdown) = shutdown::channel();
    let trigger = Arc::new(trigger);
    spawn_signal_handlers(trigger.clone())?;

    let (sal, recorder) = open_source(&args, plan.catalog.clone(), shutdown.clone()).await?;
    info!(source = sal.name(), "SAL source: {}", sal.name());
    let mut links = Vec::new();
    let mut link_tasks = Vec::new();
    for (name, cfg, members) in link_plan.links.iter() {
        let target = match &cfg.url {
            Some(u) => u.to_string(),
            None => "standard output".to_string(),
        };
        info!(link = %name, "manager link {name}: {target} for {}", if members.is_empty() { "every component".to_string() } else { members.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ") });
        let (handle, task) = crate::manager::start(cfg.clone(), shutdown.clone());
        links.push((name.clone(), handle));
        link_tasks.push(task);
    }
    let catalog = plan.catalog.clone();
    let base_ctx = RuntimeContext {
        outbox: Arc::new(links[0].1.clone()),
        sal: sal.clone(),
        catalog: Arc::new(move |name: &str| catalog.component(name).cloned()),
        settings: RuntimeSettings {
            call_timeout: secs(args.producer_call_timeout, "--producer-call-timeout")?,
            ..RuntimeSettings::default()
        },
        shutdown: shutdown.clone(),
    };
    let settings = producer_settings(&args);
    let mut managed: Vec<ManagedProducer> = Vec::new();
    for a in &plan.assignments {
        let config = ProducerConfig {
            component: a.component.name.clone(),
            index: a.component.index,
            producer_type: a.producer_type.clone(),
            periodic_data: args.periodic_data.clone(),
            asynchronous_data: args.asynchronous_data.clone(),
            settings: settings.clone(),
            catalog: plan.catalog.component(&a.component.name).cloned(),
        };
        let spec = ProducerSpec {
            component: a.component.clone(),
            producer_type: a.producer_type.clone(),
            label: a.source.label(),
            create: create_fn(&a.source),
            origin: crate::crash::PluginOrigin::of(&a.source),
            subscribe_own: config.catalog.is_some() && !matches!(a.source, ProducerSource::Base),
            config,
        };
        let ctx =
            RuntimeContext { outbox: Arc::new(links[link_plan.link_of(&a.component)].1.clone()), ..base_ctx.clone() };
        match spawn_producer(spec, ctx) {
            Ok(handle) => {
                let plugin = match &a.source {
                    ProducerSource::Plugin(p) => Some(p.clone()),
                    ProducerSource::Base => None,
                };
                managed.push(ManagedProducer { handle, plugin });
            }
            Err(e) => {
                trigger.trigger();
                bail!("{e}");
            }
        }
    }
    info!("love-host running: {} producer(s); stop with SIGINT or SIGTERM", managed.len());

    let registry = Arc::new(std::sync::Mutex::new(plan.registry.clone()));
    let plugins_expected = args.plugin_dir.is_some();
    let views: Vec<crate::admin::ProducerView> = managed
        .iter()
        .map(|m| crate::admin::ProducerView {
            component: m.handle.component.clone(),
            current: m.handle.current.clone(),
            status: m.handle.status.clone(),
        })
        .collect();
    let (deploy_task, deploy_stats) = start_deployment(&args, plan, managed, registry.clone(), shutdown.clone())?;
    if let Some(addr) = args.admin_addr {
        let state = crate::admin::AdminState {
            producers: views,
            links: links.clone(),
            sal: sal.clone(),
            registry,
            deploy: deploy_stats,
            plugins_expected,
            pulse: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        };
        crate::admin::serve(addr, state, shutdown.clone())
            .await
            .with_context(|| format!("starting the admin endpoint on {addr}"))?;
    }

    // Run until a signal, or until a link fails fatally. Each link task reports its end on a
    // channel, so every task is awaited exactly once.
    let links_total = link_tasks.len();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for ((name, _), task) in links.iter().zip(link_tasks) {
        let (name, tx) = (name.clone(), done_tx.clone());
        tokio::spawn(async move {
            let _ = tx.send((name, task.await));
        });
    }
    drop(done_tx);
    let link_outcome = |name: String, r: Result<Result<(), crate::manager::LinkError>, tokio::task::JoinError>| match r
    {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(anyhow::Error::new(e).context(format!("manager link {name} failed"))),
        Err(e) => Some(anyhow::anyhow!("manager link {name} task failed: {e}")),
    };
    let mut finished = 0;
    let mut wait = shutdown.clone();
    let failure = loop {
        tokio::select! {
            _ = wait.wait() => break None,
            Some((name, r)) = done_rx.recv() => {
                finished += 1;
                if let Some(e) = link_outcome(name, r) {
                    break Some(e);
                }
            }
        }
    };
    trigger.trigger();
    let managed = deploy_task.await.unwrap_or_default();
    stop_producers(managed, Duration::from_secs(5)).await;
    if let Some(r) = &recorder {
        r.finish();
    }
    if args.plugin_dir.is_some() {
        crate::deploy::remove_private_copies(&plugin_copies_dir(&args));
    }
    if let Some(e) = failure {
        return Err(e);
    }
    while finished < links_total {
        match tokio::time::timeout(Duration::from_secs(10), done_rx.recv()).await {
            Err(_) => bail!("a manager link did not stop within 10 s"),
            Ok(None) => break,
            Ok(Some((name, r))) => {
                finished += 1;
                if let Some(e) = link_outcome(name, r) {
                    return Err(e);
                }
            }
        }
    }
    info!("love-host stopped");
    Ok(())
}

/// Wait for the producers' threads to end, all within one `bound`; a producer stuck in a call
/// is abandoned (its thread ends with the process), and the log says which.
async fn stop_producers(managed: Vec<ManagedProducer>, bound: Duration) {
    let deadline = tokio::time::Instant::now() + bound;
    for mut m in managed {
        if tokio::time::timeout_at(deadline, &mut m.handle.task).await.is_err() {
            let label = m.handle.current.lock().map(|c| c.label.clone()).unwrap_or_default();
            let stuck = m.handle.status.clock.stuck_call(crate::watchdog::mono_ns());
            let call = stuck.map(|s| format!(" (stuck in {} for {:.1} s)", s.call.describe(), s.elapsed.as_secs_f64()));
            warn!(
                component = %m.handle.component.name, index = m.handle.component.index, plugin = %label,
                "producer {} ({label}) did not stop within {:.0} s{}; abandoned",
                m.handle.component, bound.as_secs_f64(), call.unwrap_or_default()
            );
        }
    }
}

/// Watch the plugin directory (and SIGHUP) and apply deployments until shutdown. The task
/// owns the running producers and hands them back when it ends.
type DeployTask = (tokio::task::JoinHandle<Vec<ManagedProducer>>, Arc<crate::deploy::DeployStats>);

/// Where the plugins' private copies go (`--plugin-copies-dir`, else a directory of this
/// process under the temporary directory).
fn plugin_copies_dir(args: &RunArgs) -> PathBuf {
    args.plugin_copies_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("love-host-{}-plugins", std::process::id())))
}

/// Whether a watcher event can mean a deployment. Opens and reads are not: the rescan itself
/// opens the directory and its files (inotify reports `IN_OPEN` on the watched directory), and
/// reacting to those would rescan forever. A file closed after writing is.
fn is_deploy_event(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        notify::EventKind::Access(_) => false,
        _ => true,
    }
}

fn start_deployment(
    args: &RunArgs,
    plan: Plan,
    mut managed: Vec<ManagedProducer>,
    shared_registry: Arc<std::sync::Mutex<PluginRegistry>>,
    mut shutdown: shutdown::Shutdown,
) -> anyhow::Result<DeployTask> {
    use tokio::signal::unix::{signal, SignalKind};
    let Some(dir) = args.plugin_dir.clone() else {
        let stats = Arc::new(crate::deploy::DeployStats::default());
        crate::deploy::log_report(&plan.registry, &managed, &stats);
        let task = tokio::spawn(async move {
            shutdown.wait().await;
            managed
        });
        return Ok((task, stats));
    };
    let copies = plugin_copies_dir(args);
    let deployer = Deployer::new(&dir, &copies, args.allow_downgrade, plan.registry.plugins())
        .with_context(|| format!("preparing the private plugin copy directory {}", copies.display()))?
        .with_quarantine(quarantine::Quarantine::load(&state_dir(args)).0);
    let stats = deployer.stats.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let fs_tx = tx.clone();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if ev.is_ok_and(|e| is_deploy_event(&e.kind)) {
            let _ = fs_tx.send("file change");
        }
    })
    .context("starting the plugin directory watcher")?;
    use notify::Watcher;
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive).with_context(|| format!("watching {}", dir.display()))?;
    // A file deployed between the start-up load and the watch is found by one scan now.
    let _ = tx.send("start");
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            info!("SIGHUP received: rescanning the plugin directory");
            if tx.send("SIGHUP").is_err() {
                break;
            }
        }
    });
    let mut registry = plan.registry;
    let inputs = FactoryInputs { overrides: parse_overrides(&args.producer_type)?, catalog: plan.catalog };
    crate::deploy::log_report(&registry, &managed, &stats);
    info!("watching {} for plugin deployments (rename a file into it; SIGHUP forces a rescan)", dir.display());
    let deployer = Arc::new(std::sync::Mutex::new(deployer));
    let task_stats = stats.clone();
    let task = tokio::spawn(async move {
        let stats = task_stats;
        let _watcher = watcher;
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                Some(_) = rx.recv() => {
                    // Debounce: wait for the directory to be quiet.
                    loop {
                        match tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
                            Ok(Some(_)) => continue,
                            _ => break,
                        }
                    }
                    let d = deployer.clone();
                    let actions = tokio::task::spawn_blocking(move || crate::locks::lock(&d).rescan())
                        .await
                        .unwrap_or_default();
                    if actions.is_empty() {
                        continue;
                    }
                    for a in &actions {
                        let ok = crate::deploy::apply(a, &mut managed, &mut registry, &inputs, &stats).await;
                        if let (false, crate::deploy::DeployAction::Upgraded { old, new }) = (ok, a) {
                            // Keep serving and offering the version that works.
                            warn!(
                                plugin = %old.descriptor.name,
                                "deploy: {} {} failed; {} stays the active version",
                                new.descriptor.name, new.descriptor.version, old.descriptor.version
                            );
                            registry.replace(old.clone());
                            crate::locks::lock(&deployer).revert(old.clone());
                        }
                    }
                    *crate::locks::lock(&shared_registry) = registry.clone();
                    crate::deploy::log_report(&registry, &managed, &stats);
                }
            }
        }
        managed
    });
    Ok((task, stats))
}

fn spawn_signal_handlers(trigger: Arc<shutdown::ShutdownTrigger>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received: stopping"),
            _ = int.recv() => info!("SIGINT received: stopping"),
        }
        trigger.trigger();
    });
    Ok(())
}

/// The SAL source the arguments ask for, wrapped in a recorder with `--record`. Returns the
/// recorder too, to be finished at shutdown.
async fn open_source(
    args: &RunArgs,
    catalog: Arc<TopicCatalog>,
    shutdown: shutdown::Shutdown,
) -> anyhow::Result<(Arc<dyn SalSource>, Option<Arc<crate::sal::replay::Recorder>>)> {
    use crate::sal::replay::{Recorder, RecordingSource, ReplayOptions, ReplaySource};
    let source: Arc<dyn SalSource> = match sal_kind(args) {
        SalArg::Kafka => {
            let config = crate::sal::kafka::KafkaConfig::from_env().context(
                "Kafka configuration (LSST_TOPIC_SUBNAME, LSST_KAFKA_BROKER_ADDR, LSST_SCHEMA_REGISTRY_URL, ...)",
            )?;
            let source = crate::sal::kafka::KafkaSource::start(config, catalog, shutdown)
                .await
                .context("starting the Kafka SAL source")?;
            source
        }
        SalArg::Replay => {
            let Some(path) = &args.replay else { bail!("--sal replay needs --replay FILE") };
            if !(args.replay_speed.is_finite() && args.replay_speed >= 0.0) {
                bail!("--replay-speed must be 0 (as fast as possible) or a positive factor, got {}", args.replay_speed);
            }
            // Playback starts 2 s after the first subscription, so that every producer (and the SAL
            // subscriptions they make at start, like scriptqueue's Script:0) is subscribed before
            // the first sample: a late subscriber would get only the latest sample of each event.
            let opts = ReplayOptions { speed: args.replay_speed, strict: args.replay_strict, start_delay: 2.0 };
            let replay = ReplaySource::open(path, opts, shutdown.clone())
                .with_context(|| format!("opening the replay file {}", path.display()))?;
            for skipped in replay.skipped() {
                warn!("replay: skipped {skipped}");
            }
            info!("replaying {} at speed {}", path.display(), args.replay_speed);
            Arc::new(replay)
        }
        SalArg::Sim => {
            if !(args.sim_rate.is_finite() && args.sim_rate > 0.0) {
                bail!("--sim-rate must be a positive number, got {}", args.sim_rate);
            }
            let mut sim = crate::sal::sim::SimSource::new(catalog, args.sim_seed, args.sim_rate, shutdown);
            if let Some(spec) = &args.sim_stop_heartbeat {
                let stops = crate::sal::sim::HeartbeatStop::parse_list(spec).context("--sim-stop-heartbeat")?;
                sim = sim.with_heartbeat_stops(stops);
            }
            info!(seed = sim.seed(), "simulator seed {} (repeat a run with --sim-seed {})", sim.seed(), sim.seed());
            Arc::new(sim)
        }
    };
    match &args.record {
        Some(path) => {
            let recorder =
                Arc::new(Recorder::create(path).with_context(|| format!("creating the recording {}", path.display()))?);
            info!("recording every SAL sample to {}", path.display());
            Ok((Arc::new(RecordingSource::new(source, recorder.clone())), Some(recorder)))
        }
        None => Ok((source, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_for_text_at_a_terminal_without_no_color() {
        assert!(log_colour(LogFormat::Text, true, None));
        assert!(log_colour(LogFormat::Text, true, Some("".into())), "an empty NO_COLOR does not count");
        assert!(!log_colour(LogFormat::Text, true, Some("1".into())));
        assert!(!log_colour(LogFormat::Text, false, None), "a pipe, file or journal");
        assert!(!log_colour(LogFormat::Json, true, None));
    }
}
