//! The admin HTTP endpoint: `/healthz`, `/readyz`, `/metrics` (Prometheus text format) and
//! `/producers` (JSON). Off unless `--admin-addr` is given.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::json;

use crate::clock::unix_now;
use crate::component::ComponentName;
use crate::deploy::DeployStats;
use crate::manager::ManagerHandle;
use crate::plugin::PluginRegistry;
use crate::runtime::ProducerStatus;
use crate::sal::SalSource;
use crate::shutdown::Shutdown;

/// One producer as the admin endpoint sees it.
#[derive(Clone)]
pub struct ProducerView {
    /// The component.
    pub component: ComponentName,
    /// (type, plugin label) serving it now.
    pub current: Arc<Mutex<crate::runtime::Serving>>,
    /// Its counters.
    pub status: Arc<ProducerStatus>,
}

/// Everything the endpoint reports on.
#[derive(Clone)]
pub struct AdminState {
    /// The producers.
    pub producers: Vec<ProducerView>,
    /// The manager links, by name.
    pub links: Vec<(String, ManagerHandle)>,
    /// The SAL source.
    pub sal: Arc<dyn SalSource>,
    /// Loaded plugins (updated by hot deployment).
    pub registry: Arc<Mutex<PluginRegistry>>,
    /// Deployment counters.
    pub deploy: Arc<DeployStats>,
    /// Whether a plugin directory was given (then at least one plugin must be loaded).
    pub plugins_expected: bool,
    /// Updated every second by a task on the runtime: proof that the runtime is responsive.
    pub pulse: Arc<AtomicU64>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabels {
    component: String,
    index: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabels {
    component: String,
    index: String,
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
    counter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LinkLabels {
    link: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LinkReasonLabels {
    link: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
    version: String,
    producer_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServingLabels {
    component: String,
    index: String,
    producer_type: String,
    plugin: String,
}

fn counter_family<L>(reg: &mut Registry, name: &str, help: &str) -> Family<L, Counter>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let f = Family::<L, Counter>::default();
    reg.register(name, help, f.clone());
    f
}

fn gauge_family<L>(reg: &mut Registry, name: &str, help: &str) -> Family<L, Gauge>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let f = Family::<L, Gauge>::default();
    reg.register(name, help, f.clone());
    f
}

fn set_counter(c: &Counter, v: u64) {
    c.inner().store(v, Ordering::Relaxed);
}

/// The metrics text, built from the live counters at scrape time.
pub fn render_metrics(state: &AdminState) -> String {
    let mut reg = Registry::with_prefix("love_host");
    let sent = counter_family::<CategoryLabels>(
        &mut reg,
        "messages_sent",
        "Messages producers sent, by component and category",
    );
    let samples =
        counter_family::<ComponentLabels>(&mut reg, "sal_samples_received", "SAL samples delivered to each producer");
    let restarts = counter_family::<ComponentLabels>(&mut reg, "producer_restarts", "Producer restarts after a panic");
    let panics = counter_family::<ComponentLabels>(&mut reg, "producer_panics", "Panics caught inside producers");
    let errors =
        counter_family::<ComponentLabels>(&mut reg, "producer_errors", "Errors returned by producers (not panics)");
    let requests = counter_family::<ComponentLabels>(
        &mut reg,
        "initial_state_requests",
        "initial_state requests handed to each producer",
    );
    let replies = counter_family::<ComponentLabels>(
        &mut reg,
        "initial_state_replies",
        "Messages sent in answer to initial_state requests",
    );
    let last_sample = gauge_family::<ComponentLabels>(
        &mut reg,
        "last_sample_age_seconds",
        "Seconds since each producer's last SAL sample (-1: none yet)",
    );
    let hb_lost = gauge_family::<ComponentLabels>(
        &mut reg,
        "heartbeat_lost",
        "Lost heartbeats in each producer's latest Heartbeat message (-1: none yet)",
    );
    let stuck = gauge_family::<ComponentLabels>(
        &mut reg,
        "producer_stuck",
        "1 while a call into the producer has run longer than --producer-call-timeout",
    );
    let stuck_total = counter_family::<ComponentLabels>(
        &mut reg,
        "producer_stuck_calls",
        "Calls into each producer found stuck by the watchdog",
    );
    let dropped = counter_family::<ComponentLabels>(
        &mut reg,
        "producer_inputs_dropped",
        "Inputs dropped because the producer was stuck in a call",
    );
    let serving = gauge_family::<ServingLabels>(
        &mut reg,
        "producer_info",
        "Which producer type and plugin serve each component (value 1)",
    );
    let now = unix_now();
    for p in &state.producers {
        let c = ComponentLabels { component: p.component.name.clone(), index: p.component.index.to_string() };
        let st = &p.status;
        for (cat, v) in [("event", &st.sent_event), ("telemetry", &st.sent_telemetry)] {
            let l = CategoryLabels { component: c.component.clone(), index: c.index.clone(), category: cat.into() };
            set_counter(&sent.get_or_create(&l), v.load(Ordering::Relaxed));
        }
        let other = st
            .sent
            .load(Ordering::Relaxed)
            .saturating_sub(st.sent_event.load(Ordering::Relaxed) + st.sent_telemetry.load(Ordering::Relaxed));
        let l = CategoryLabels { component: c.component.clone(), index: c.index.clone(), category: "other".into() };
        set_counter(&sent.get_or_create(&l), other);
        set_counter(&samples.get_or_create(&c), st.samples.load(Ordering::Relaxed));
        set_counter(&restarts.get_or_create(&c), st.restarts.load(Ordering::Relaxed));
        set_counter(&panics.get_or_create(&c), st.panics.load(Ordering::Relaxed));
        set_counter(&errors.get_or_create(&c), st.errors.load(Ordering::Relaxed));
        stuck.get_or_create(&c).set(st.clock.is_stuck() as i64);
        set_counter(&stuck_total.get_or_create(&c), st.clock.stuck_total.load(Ordering::Relaxed));
        set_counter(&dropped.get_or_create(&c), st.inputs_dropped.load(Ordering::Relaxed));
        set_counter(&requests.get_or_create(&c), st.requests.load(Ordering::Relaxed));
        set_counter(&replies.get_or_create(&c), st.replies.load(Ordering::Relaxed));
        let age = st.last_sample_time().map(|t| (now - t).max(0.0).round() as i64).unwrap_or(-1);
        last_sample.get_or_create(&c).set(age);
        hb_lost.get_or_create(&c).set(st.heartbeat_lost().map(|v| v as i64).unwrap_or(-1));
        let crate::runtime::Serving { producer_type: ty, label } =
            p.current.lock().map(|g| g.clone()).unwrap_or_default();
        serving
            .get_or_create(&ServingLabels {
                component: c.component.clone(),
                index: c.index.clone(),
                producer_type: ty,
                plugin: label,
            })
            .set(1);
    }

    let connected = gauge_family::<LinkLabels>(&mut reg, "manager_connected", "1 while the manager link is up");
    let connections = counter_family::<LinkLabels>(
        &mut reg,
        "manager_connections",
        "Successful manager connections (the first and every reconnection)",
    );
    let failures =
        counter_family::<LinkReasonLabels>(&mut reg, "manager_connect_failures", "Failed manager connection attempts");
    let disconnections = counter_family::<LinkLabels>(&mut reg, "manager_disconnections", "Manager connections lost");
    let link_sent = counter_family::<LinkReasonLabels>(
        &mut reg,
        "link_frames_sent",
        "Frames written to the manager socket, by category (in reason)",
    );
    let drops = counter_family::<LinkReasonLabels>(&mut reg, "queue_dropped", "Messages not sent as queued, by reason");
    let depth = gauge_family::<LinkLabels>(&mut reg, "queue_depth", "Messages waiting for the manager link");
    let qbytes = gauge_family::<LinkLabels>(&mut reg, "queue_bytes", "Bytes waiting for the manager link");
    for (name, link) in &state.links {
        let ls = link.stats();
        let l = LinkLabels { link: name.clone() };
        let lr = |reason: &str| LinkReasonLabels { link: name.clone(), reason: reason.into() };
        connected.get_or_create(&l).set(ls.connected as i64);
        set_counter(&connections.get_or_create(&l), ls.connections);
        set_counter(&failures.get_or_create(&lr("password")), ls.password_rejections);
        set_counter(&failures.get_or_create(&lr("other")), ls.connect_failures.saturating_sub(ls.password_rejections));
        set_counter(&disconnections.get_or_create(&l), ls.disconnections);
        for (cat, v) in [("event", ls.sent_event), ("telemetry", ls.sent_telemetry), ("other", ls.sent_other)] {
            set_counter(&link_sent.get_or_create(&lr(cat)), v);
        }
        for (reason, v) in [
            ("coalesced", ls.coalesced),
            ("overflow", ls.dropped_overflow),
            ("disconnected", ls.dropped_disconnected),
            ("invalid", ls.dropped_invalid),
        ] {
            set_counter(&drops.get_or_create(&lr(reason)), v);
        }
        depth.get_or_create(&l).set(ls.queue_depth as i64);
        qbytes.get_or_create(&l).set(ls.queue_bytes as i64);
    }

    let plugins = gauge_family::<PluginLabels>(&mut reg, "plugin_loaded", "Loaded plugins (value 1)");
    if let Ok(r) = state.registry.lock() {
        for p in r.plugins() {
            let d = &p.descriptor;
            plugins
                .get_or_create(&PluginLabels {
                    plugin: d.name.clone(),
                    version: d.version.clone(),
                    producer_type: d.producer_type.clone(),
                })
                .set(1);
        }
    }
    let copies = Gauge::<i64>::default();
    copies.set(state.deploy.library_copies.load(Ordering::Relaxed) as i64);
    reg.register("plugin_library_copies", "Plugin library copies mapped in the process (never unloaded)", copies);
    let deploys = counter_family::<OutcomeLabels>(&mut reg, "deploy_attempts", "Hot deployments by outcome");
    let d = &state.deploy;
    for (outcome, v) in [
        ("added", &d.added),
        ("upgraded", &d.upgraded),
        ("refused", &d.refused),
        ("removed", &d.removed),
        ("swap_ok", &d.swaps_ok),
        ("swap_failed", &d.swaps_failed),
    ] {
        set_counter(&deploys.get_or_create(&OutcomeLabels { outcome: outcome.into() }), v.load(Ordering::Relaxed));
    }
    let sal_counters = counter_family::<SourceLabels>(
        &mut reg,
        "sal_source_records",
        "The SAL source's own counters (Kafka: decoded, delivered, out_of_order_dropped, skipped_undecodable...)",
    );
    for (what, v) in state.sal.counters() {
        set_counter(
            &sal_counters
                .get_or_create(&SourceLabels { source: state.sal.name().to_string(), counter: what.to_string() }),
            v,
        );
    }
    let sal_ready = Gauge::<i64>::default();
    sal_ready.set(state.sal.is_ready() as i64);
    reg.register("sal_ready", "1 while the SAL source is connected and delivering", sal_ready);

    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
    out
}

/// Why the host is not ready, if it is not.
pub fn not_ready_reasons(state: &AdminState) -> Vec<String> {
    let mut reasons = Vec::new();
    for (name, link) in &state.links {
        if !link.is_connected() {
            let why = link.stats().last_error.unwrap_or_else(|| "not connected yet".into());
            reasons.push(format!("manager link {name} down: {why}"));
        }
    }
    if !state.sal.is_ready() {
        reasons.push(format!("SAL source {} not ready", state.sal.name()));
    }
    let now = crate::watchdog::mono_ns();
    for p in &state.producers {
        if let Some(s) = p.status.clock.stuck_call(now) {
            let label = p.current.lock().map(|g| g.label.clone()).unwrap_or_default();
            reasons.push(format!(
                "producer {} ({label}) stuck in {} for {:.0} s; its inputs are dropped",
                p.component,
                s.call.describe(),
                s.elapsed.as_secs_f64()
            ));
        }
    }
    if state.plugins_expected && state.registry.lock().map(|r| r.plugins().is_empty()).unwrap_or(true) {
        reasons.push("no plugin loaded from the plugin directory".into());
    }
    reasons
}

fn producers_json(state: &AdminState) -> serde_json::Value {
    let list: Vec<serde_json::Value> = state
        .producers
        .iter()
        .map(|p| {
            let crate::runtime::Serving { producer_type: ty, label } =
                p.current.lock().map(|g| g.clone()).unwrap_or_default();
            let st = &p.status;
            let stuck = st.clock.stuck_call(crate::watchdog::mono_ns());
            let run_state = if stuck.is_some() {
                "stuck"
            } else if st.panics.load(Ordering::Relaxed) > st.restarts.load(Ordering::Relaxed) {
                "restarting"
            } else {
                "running"
            };
            json!({
                "component": p.component.name,
                "index": p.component.index,
                "producer_type": ty,
                "plugin": label,
                "state": run_state,
                "stuck_call": stuck.map(|s| s.call.describe()),
                "stuck_seconds": stuck.map(|s| s.elapsed.as_secs_f64()),
                "inputs_dropped": st.inputs_dropped.load(Ordering::Relaxed),
                "last_sample_time": st.last_sample_time(),
                "samples": st.samples.load(Ordering::Relaxed),
                "messages_sent": st.sent.load(Ordering::Relaxed),
                "heartbeat_lost": st.heartbeat_lost(),
                "restarts": st.restarts.load(Ordering::Relaxed),
                "panics": st.panics.load(Ordering::Relaxed),
            })
        })
        .collect();
    json!(list)
}

async fn healthz(State(state): State<AdminState>) -> Response {
    let pulse = f64::from_bits(state.pulse.load(Ordering::Relaxed));
    let age = unix_now() - pulse;
    if age < 5.0 {
        (StatusCode::OK, Json(json!({"status": "ok"}))).into_response()
    } else {
        let body = json!({"status": "stalled", "reason": format!("runtime pulse is {age:.1} s old")});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let reasons = not_ready_reasons(&state);
    if reasons.is_empty() {
        (StatusCode::OK, Json(json!({"ready": true}))).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"ready": false, "reasons": reasons}))).into_response()
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let body = render_metrics(&state);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}

async fn producers(State(state): State<AdminState>) -> Response {
    Json(producers_json(&state)).into_response()
}

/// Serve the admin endpoint on `addr` until shutdown. Returns the bound address.
pub async fn serve(addr: SocketAddr, state: AdminState, mut shutdown: Shutdown) -> std::io::Result<SocketAddr> {
    let pulse = state.pulse.clone();
    pulse.store(unix_now().to_bits(), Ordering::Relaxed);
    let mut pulse_stop = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = pulse_stop.wait() => break,
                _ = tick.tick() => pulse.store(unix_now().to_bits(), Ordering::Relaxed),
            }
        }
    });
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/producers", get(producers))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!("admin endpoint on http://{bound} (/healthz /readyz /metrics /producers)");
    tokio::spawn(async move {
        let stop = async move { shutdown.wait().await };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            tracing::error!("admin endpoint failed: {e}");
        }
    });
    Ok(bound)
}
