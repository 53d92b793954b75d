//! A deployment carried out: the registry updated and every running producer the factory now
//! gives to the deployed plugin swapped to it, state kept when it stays with the same plugin.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use super::scan::{log_action, DeployAction};
use super::DeployStats;
use crate::component::ComponentName;
use crate::factory::{assign, ProducerSource};
use crate::plugin::PluginRegistry;
use crate::producers::ManagedProducer;
use crate::runtime::{ReplaceRequest, Serving, StateTransfer};
use crate::sal::catalog::TopicCatalog;

/// What the factory needs to re-decide assignments.
pub struct FactoryInputs {
    /// `--producer-type` overrides.
    pub overrides: BTreeMap<String, String>,
    /// The topic catalog.
    pub catalog: Arc<TopicCatalog>,
}

/// Carry out one deployment action on the registry and the running producers. Returns false
/// when a producer could not be moved to the new plugin (it keeps its old one).
pub async fn apply(
    action: &DeployAction,
    managed: &mut [ManagedProducer],
    registry: &mut PluginRegistry,
    inputs: &FactoryInputs,
    stats: &DeployStats,
) -> bool {
    log_action(action);
    let plugin = match action {
        DeployAction::Added(p) | DeployAction::Upgraded { new: p, .. } => p.clone(),
        DeployAction::Removed(p) => {
            registry.remove(&p.descriptor.name);
            return true;
        }
        DeployAction::Refused { .. } => return true,
    };
    let mut all_ok = true;
    registry.replace(plugin.clone());
    let name = plugin.descriptor.name.clone();
    let mut total = Duration::ZERO;
    let mut swapped = 0usize;
    for m in managed.iter_mut() {
        let component = m.handle.component.clone();
        let known = inputs.catalog.component(&component.name);
        let a = match assign(&component, &inputs.overrides, registry, known) {
            Ok(a) => a,
            Err(e) => {
                warn!(component = %component.name, index = component.index, "deploy: {e}");
                continue;
            }
        };
        let ProducerSource::Plugin(target) = &a.source else { continue };
        if target.descriptor.name != name {
            continue;
        }
        let same_plugin = m.plugin.as_ref().is_some_and(|p| p.descriptor.name == name);
        let label = a.source.label();
        let request = ReplaceRequest {
            create: a.source.create_fn(),
            origin: a.source.origin(),
            serving: Serving { producer_type: a.producer_type.clone(), label: label.clone() },
            state: if same_plugin { StateTransfer::Keep } else { StateTransfer::Fresh },
            subscribe_own: known.is_some(),
        };
        match m.handle.replace(request).await {
            Ok(report) => {
                stats.swaps_ok.inc();
                total += report.duration;
                swapped += 1;
                info!(
                    component = %component.name, index = component.index, plugin = %label,
                    swap_us = report.duration.as_micros() as u64, snapshot_bytes = report.snapshot_bytes,
                    "deploy: {component} moved to {label} ({})", a.reason
                );
                m.plugin = Some(target.clone());
            }
            Err(e) => {
                all_ok = false;
                stats.swaps_failed.inc();
                error!(
                    component = %component.name, index = component.index, file = %plugin.path.display(),
                    "deploy: {component} stays on {}: {e}", m.handle.current.lock().map(|c| c.label.clone()).unwrap_or_default()
                );
            }
        }
    }
    if swapped > 0 {
        info!("deploy: {swapped} producer(s) swapped to {name} {} in {:?} in all", plugin.descriptor.version, total);
    }
    all_ok
}

/// Log what is loaded and who serves what, and say it in the metrics and the admin endpoint's
/// list (after start-up, every deployment and every group rebalance).
pub fn report(registry: &PluginRegistry, managed: &[ManagedProducer], stats: &DeployStats) {
    stats.plugins_loaded(registry.plugins());
    let serving: Vec<(ComponentName, Serving)> = managed
        .iter()
        .map(|m| (m.handle.component.clone(), m.handle.current.lock().map(|c| c.clone()).unwrap_or_default()))
        .collect();
    stats.serving(&serving);
    stats.running.set(managed);
    let plugins: Vec<String> =
        registry.plugins().iter().map(|p| format!("{} {}", p.descriptor.name, p.descriptor.version)).collect();
    let serving: Vec<String> = serving.iter().map(|(c, s)| format!("{c}={} ({})", s.producer_type, s.label)).collect();
    info!(
        library_copies = stats.library_copies.get(),
        "plugins loaded: [{}]; library copies mapped: {}; serving: [{}]",
        plugins.join(", "),
        stats.library_copies.get(),
        serving.join(", ")
    );
}
