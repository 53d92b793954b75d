//! The admin HTTP endpoint: `/healthz`, `/readyz`, `/metrics` (Prometheus text format, from
//! [`crate::metrics`]) and `/producers` (JSON). Off unless `--admin-addr` is given.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::clock::unix_now;
use crate::group::GroupStatus;
use crate::manager::ManagerHandle;
use crate::metrics::Metrics;
use crate::plugin::PluginRegistry;
use crate::producers::RunningProducers;
use crate::sal::SalSource;
use crate::shutdown::Shutdown;

/// Everything the endpoint reports on.
#[derive(Clone)]
pub struct AdminState {
    /// The producers running now.
    pub producers: RunningProducers,
    /// With `--group`: the host's standing in its group.
    pub group: Option<Arc<GroupStatus>>,
    /// The manager links, by name.
    pub links: Vec<(String, ManagerHandle)>,
    /// The SAL source.
    pub sal: Arc<dyn SalSource>,
    /// Loaded plugins (updated by hot deployment).
    pub registry: Arc<Mutex<PluginRegistry>>,
    /// The metrics `/metrics` serves.
    pub metrics: Arc<Metrics>,
    /// Whether a plugin directory was given (then at least one plugin must be loaded).
    pub plugins_expected: bool,
    /// Updated every second by a task on the runtime: proof that the runtime is responsive.
    pub pulse: Arc<AtomicU64>,
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
    if let Some(g) = &state.group {
        reasons.extend(g.not_ready());
    }
    let now = crate::watchdog::mono_ns();
    for p in &state.producers.list() {
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
        .list()
        .iter()
        .map(|p| {
            let crate::runtime::Serving { producer_type: ty, label } =
                p.current.lock().map(|g| g.clone()).unwrap_or_default();
            let st = &p.status;
            let stuck = st.clock.stuck_call(crate::watchdog::mono_ns());
            let run_state = if stuck.is_some() {
                "stuck"
            } else if st.panics.get() > st.restarts.get() {
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
                "serving_because": &*p.why,
                "serving_since": p.since,
                "stuck_call": stuck.map(|s| s.call.describe()),
                "stuck_seconds": stuck.map(|s| s.elapsed.as_secs_f64()),
                "inputs_dropped": st.inputs_dropped.get(),
                "last_sample_time": st.last_sample_time(),
                "samples": st.samples.get(),
                "messages_sent": st.sent.get(),
                "heartbeat_lost": st.heartbeat_lost(),
                "restarts": st.restarts.get(),
                "panics": st.panics.get(),
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
    let body = state.metrics.encode();
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
