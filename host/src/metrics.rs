//! The metrics `/metrics` serves, registered once at start under the names the README
//! documents.
//!
//! Each owner keeps its metrics in prometheus-client's own types and updates them where the
//! events happen: a producer's [`ProducerStatus`], a link's [`LinkMetrics`], deployment's
//! [`DeployStats`]. This module owns the registry and registers them. Only what is a function
//! of the present is read at the scrape: sample ages, calls stuck now, whether the SAL source is
//! ready, and the SAL source's own counters.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::clock::unix_now;
use crate::component::ComponentName;
use crate::deploy::DeployStats;
use crate::group::GroupStatus;
use crate::manager::{LinkMetrics, ManagerHandle};
use crate::producers::{ProducerView, RunningProducers};
use crate::runtime::ProducerStatus;
use crate::sal::SalSource;

/// The registry of every metric of the host.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
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
struct SourceLabels {
    source: String,
    counter: String,
}

/// A family whose members their owners made (a prometheus-client `Family` makes its own).
#[derive(Debug)]
struct Members<L, M>(Vec<(L, M)>);

impl<L: EncodeLabelSet, M: EncodeMetric + TypedMetric> EncodeMetric for Members<L, M> {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (labels, metric) in &self.0 {
            metric.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

/// A producer's members of a family.
type MembersOf<L, M> = Box<dyn Fn(&ProducerView) -> Vec<(L, M)> + Send + Sync>;

/// A family with a member per producer running at the scrape (with `--group` they come and go).
struct PerProducer<L, M> {
    running: RunningProducers,
    members: MembersOf<L, M>,
}

impl<L, M> PerProducer<L, M> {
    fn new(running: &RunningProducers, members: impl Fn(&ProducerView) -> Vec<(L, M)> + Send + Sync + 'static) -> Self {
        PerProducer { running: running.clone(), members: Box::new(members) }
    }
}

impl<L, M> fmt::Debug for PerProducer<L, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PerProducer").field(&self.running).finish()
    }
}

impl<L: EncodeLabelSet, M: EncodeMetric + TypedMetric> EncodeMetric for PerProducer<L, M> {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for p in self.running.list() {
            for (labels, metric) in (self.members)(&p) {
                metric.encode(encoder.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

/// A gauge of the present, read at the scrape (an age, a call stuck now).
struct Present(Box<dyn Fn() -> i64 + Send + Sync>);

impl fmt::Debug for Present {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Present")
    }
}

impl TypedMetric for Present {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for Present {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        encoder.encode_gauge(&(self.0)())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// The SAL source's own counters, read at the scrape through [`SalSource::counters`].
struct SalRecords(Arc<dyn SalSource>);

impl fmt::Debug for SalRecords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SalRecords").field(&self.0.name()).finish()
    }
}

impl Collector for SalRecords {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let help = "The SAL source's own counters (Kafka: decoded, delivered, out_of_order_dropped, \
                    skipped_undecodable...).";
        let mut family = encoder.encode_descriptor("sal_source_records", help, None, MetricType::Counter)?;
        let source = self.0.name().to_string();
        for (counter, v) in self.0.counters() {
            let labels = SourceLabels { source: source.clone(), counter: counter.to_string() };
            ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// Register the metrics of the running producers (`deploy.running`), links, deployment, SAL
    /// source and group.
    pub fn new(
        links: &[(String, ManagerHandle)],
        deploy: &DeployStats,
        sal: Arc<dyn SalSource>,
        group: Option<&GroupStatus>,
    ) -> Metrics {
        let mut registry = Registry::with_prefix("love_host");
        register_producers(&mut registry, &deploy.running);
        if let Some(g) = group {
            register_group(&mut registry, g);
        }
        let help = "Which producer type and plugin serve each component (value 1)";
        registry.register("producer_info", help, deploy.serving.clone());
        let links: Vec<(String, Arc<LinkMetrics>)> = links.iter().map(|(n, h)| (n.clone(), h.metrics())).collect();
        register_links(&mut registry, &links);
        register_deploy(&mut registry, deploy);
        registry.register_collector(Box::new(SalRecords(sal.clone())));
        let ready = Present(Box::new(move || sal.is_ready() as i64));
        registry.register("sal_ready", "1 while the SAL source is connected and delivering", ready);
        Metrics { registry }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn register_producers(registry: &mut Registry, producers: &RunningProducers) {
    let labels = |c: &ComponentName| ComponentLabels { component: c.name.clone(), index: c.index.to_string() };
    let each = |of: fn(&ProducerStatus) -> &Counter| {
        PerProducer::new(producers, move |p| vec![(labels(&p.component), of(&p.status).clone())])
    };
    let sent = PerProducer::new(producers, move |p| {
        let (c, st) = (&p.component, &p.status);
        [("event", &st.sent_event), ("telemetry", &st.sent_telemetry), ("other", &st.sent_other)]
            .map(|(cat, v)| {
                let l = CategoryLabels { component: c.name.clone(), index: c.index.to_string(), category: cat.into() };
                (l, v.clone())
            })
            .to_vec()
    });
    registry.register("messages_sent", "Messages producers sent, by component and category", sent);
    registry.register("sal_samples_received", "SAL samples delivered to each producer", each(|s| &s.samples));
    registry.register("producer_restarts", "Producer restarts after a panic", each(|s| &s.restarts));
    registry.register("producer_panics", "Panics caught inside producers", each(|s| &s.panics));
    registry.register("producer_errors", "Errors returned by producers (not panics)", each(|s| &s.errors));
    let help = "initial_state requests handed to each producer";
    registry.register("initial_state_requests", help, each(|s| &s.requests));
    let help = "Messages sent in answer to initial_state requests";
    registry.register("initial_state_replies", help, each(|s| &s.replies));
    let present = |of: fn(&ProducerStatus) -> i64| {
        PerProducer::new(producers, move |p| {
            let st = p.status.clone();
            vec![(labels(&p.component), Present(Box::new(move || of(&st))))]
        })
    };
    let help = "Seconds since each producer's last SAL sample (-1: none yet)";
    registry.register("last_sample_age_seconds", help, present(sample_age));
    let lost = PerProducer::new(producers, move |p| vec![(labels(&p.component), p.status.heartbeat_lost.clone())]);
    let help = "Lost heartbeats in each producer's latest Heartbeat message (-1: none yet)";
    registry.register("heartbeat_lost", help, lost);
    let help = "1 while a call into the producer has run longer than --producer-call-timeout";
    registry.register("producer_stuck", help, present(|s| s.clock.is_stuck() as i64));
    let help = "Calls into each producer found stuck by the watchdog";
    registry.register("producer_stuck_calls", help, each(|s| &s.clock.stuck_total));
    let help = "Inputs dropped because the producer was stuck in a call";
    registry.register("producer_inputs_dropped", help, each(|s| &s.inputs_dropped));
}

fn register_group(registry: &mut Registry, group: &GroupStatus) {
    let help = "1 while this host holds an assignment from its --group (0 while joining or after a loss)";
    registry.register("group_holding_assignment", help, group.holding.clone());
    let help = "Group rebalances that moved components in or out of this host, by change";
    registry.register("group_rebalances", help, group.rebalances.clone());
    let help = "Seconds from a rebalance callback to its producers stopped and started";
    registry.register("group_rebalance_seconds", help, group.rebalance_seconds.clone());
}

fn sample_age(status: &ProducerStatus) -> i64 {
    status.last_sample_time().map(|t| (unix_now() - t).max(0.0).round() as i64).unwrap_or(-1)
}

/// One of a link's counters.
type LinkCounter = fn(&LinkMetrics) -> &Counter;

fn register_links(registry: &mut Registry, links: &[(String, Arc<LinkMetrics>)]) {
    let gauge = |of: fn(&LinkMetrics) -> &Gauge| {
        Members(links.iter().map(|(n, m)| (LinkLabels { link: n.clone() }, of(m).clone())).collect())
    };
    let counter = |of: fn(&LinkMetrics) -> &Counter| {
        Members(links.iter().map(|(n, m)| (LinkLabels { link: n.clone() }, of(m).clone())).collect())
    };
    let by_reason = |of: &[(&str, LinkCounter)]| {
        let members = links.iter().flat_map(|(n, m)| {
            of.iter().map(move |(reason, c)| {
                (LinkReasonLabels { link: n.clone(), reason: reason.to_string() }, c(m).clone())
            })
        });
        Members(members.collect())
    };
    registry.register("manager_connected", "1 while the manager link is up", gauge(|m| &m.connected));
    let help = "Successful manager connections (the first and every reconnection)";
    registry.register("manager_connections", help, counter(|m| &m.connections));
    let failures = by_reason(&[("password", |m| &m.password_rejections), ("other", |m| &m.other_connect_failures)]);
    registry.register("manager_connect_failures", "Failed manager connection attempts", failures);
    registry.register("manager_disconnections", "Manager connections lost", counter(|m| &m.disconnections));
    let sent =
        by_reason(&[("event", |m| &m.sent_event), ("telemetry", |m| &m.sent_telemetry), ("other", |m| &m.sent_other)]);
    registry.register("link_frames_sent", "Frames written to the manager socket, by category (in reason)", sent);
    let dropped = by_reason(&[
        ("coalesced", |m| &m.coalesced),
        ("overflow", |m| &m.dropped_overflow),
        ("disconnected", |m| &m.dropped_disconnected),
        ("invalid", |m| &m.dropped_invalid),
    ]);
    registry.register("queue_dropped", "Messages not sent as queued, by reason", dropped);
    registry.register("queue_depth", "Messages waiting for the manager link", gauge(|m| &m.queue_depth));
    registry.register("queue_bytes", "Bytes waiting for the manager link", gauge(|m| &m.queue_bytes));
}

fn register_deploy(registry: &mut Registry, deploy: &DeployStats) {
    registry.register("plugin_loaded", "Loaded plugins (value 1)", deploy.loaded.clone());
    let help = "Plugin library copies mapped in the process (never unloaded)";
    registry.register("plugin_library_copies", help, deploy.library_copies.clone());
    let outcomes = [
        ("added", &deploy.added),
        ("upgraded", &deploy.upgraded),
        ("refused", &deploy.refused),
        ("removed", &deploy.removed),
        ("swap_ok", &deploy.swaps_ok),
        ("swap_failed", &deploy.swaps_failed),
    ]
    .map(|(outcome, c)| (OutcomeLabels { outcome: outcome.into() }, c.clone()));
    registry.register("deploy_attempts", "Hot deployments by outcome", Members(outcomes.to_vec()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sal::{CommandAck, SalCommand, SalError, SampleTx};

    struct Counting;

    impl SalSource for Counting {
        fn name(&self) -> &str {
            "test"
        }

        fn subscribe(&self, _: &str, _: i64, _: bool, _: SampleTx) -> Result<(), SalError> {
            Ok(())
        }

        fn command(
            &self,
            _: SalCommand,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = CommandAck> + Send + 'static>> {
            Box::pin(async { CommandAck { code: 0, result: String::new() } })
        }

        fn counters(&self) -> Vec<(&'static str, u64)> {
            vec![("delivered", 7)]
        }
    }

    #[test]
    fn registered_once_the_owners_updates_show_at_each_scrape() {
        let status = Arc::new(ProducerStatus::new());
        let component = ComponentName { name: "ATDome".into(), index: 0 };
        let deploy = DeployStats::default();
        let metrics = Metrics::new(&[], &deploy, Arc::new(Counting), None);
        assert!(!metrics.encode().contains("ATDome"), "no producer running yet");
        let view = |component: ComponentName, status: &Arc<ProducerStatus>| ProducerView {
            component,
            current: Arc::default(),
            status: status.clone(),
            why: "configured".into(),
            since: 0.0,
        };
        // Producers started after the registration (a group's assignment) are in the next scrape.
        deploy.running.replace(vec![view(component.clone(), &status)]);
        let text = metrics.encode();
        let line = |name: &str| text.lines().find(|l| l.starts_with(name)).map(str::to_string);
        assert_eq!(
            line("love_host_heartbeat_lost{").as_deref(),
            Some(r#"love_host_heartbeat_lost{component="ATDome",index="0"} -1"#)
        );
        assert_eq!(
            line("love_host_last_sample_age_seconds{").as_deref(),
            Some(r#"love_host_last_sample_age_seconds{component="ATDome",index="0"} -1"#)
        );
        assert!(text.contains("# HELP love_host_messages_sent Messages producers sent, by component and category.\n"));
        assert!(text.contains(r#"love_host_sal_source_records_total{source="test",counter="delivered"} 7"#), "{text}");
        assert!(text.contains("# HELP love_host_sal_source_records The SAL source's own counters (Kafka: decoded, delivered, out_of_order_dropped, skipped_undecodable...).\n"));
        assert!(text.contains("love_host_sal_ready 1\n"));
        status.sent_other.inc();
        status.panics.inc_by(2);
        status.heartbeat_lost.set(3);
        deploy.swaps_ok.inc();
        deploy.library_copies.set(4);
        let text = metrics.encode();
        for expected in [
            r#"love_host_messages_sent_total{component="ATDome",index="0",category="other"} 1"#,
            r#"love_host_producer_panics_total{component="ATDome",index="0"} 2"#,
            r#"love_host_heartbeat_lost{component="ATDome",index="0"} 3"#,
            r#"love_host_deploy_attempts_total{outcome="swap_ok"} 1"#,
            "love_host_plugin_library_copies 4",
        ] {
            assert!(text.lines().any(|l| l == expected), "{expected} in\n{text}");
        }
        // A component moved away is no longer listed.
        let other = Arc::new(ProducerStatus::new());
        deploy.running.replace(vec![view(ComponentName { name: "Watcher".into(), index: 0 }, &other)]);
        let text = metrics.encode();
        assert!(!text.contains(r#"component="ATDome""#), "{text}");
        assert!(text.contains(r#"love_host_heartbeat_lost{component="Watcher",index="0"} -1"#), "{text}");
    }

    #[test]
    fn a_group_member_reports_its_assignment_and_its_rebalances() {
        let deploy = DeployStats::default();
        let group = GroupStatus::new("summit", "lsst.t.love-host.summit");
        let metrics = Metrics::new(&[], &deploy, Arc::new(Counting), Some(&group));
        assert!(metrics.encode().contains("love_host_group_holding_assignment 0\n"));
        group.on_callback(crate::group::plan::Change::Assigned);
        group.on_carried_out(crate::group::plan::Change::Assigned, std::time::Duration::from_millis(20));
        let text = metrics.encode();
        assert!(text.contains("love_host_group_holding_assignment 1\n"), "{text}");
        assert!(text.contains(r#"love_host_group_rebalances_total{change="assigned"} 1"#), "{text}");
        assert!(text.contains("love_host_group_rebalance_seconds_count 1\n"), "{text}");
    }
}
