//! What the group says about this host, for `/readyz` and `/metrics`: whether it holds an
//! assignment, and each rebalance with its duration.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::plan::Change;

/// A rebalance's kind, as its metric names it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChangeLabels {
    change: String,
}

/// This host's standing in its group.
#[derive(Debug)]
pub struct GroupStatus {
    /// The group name given to `--group`.
    pub group: String,
    /// The coordination topic.
    pub topic: String,
    /// 1 while this host holds an assignment (0 until the first, and after one is lost).
    pub holding: Gauge,
    /// Rebalances that changed what this host serves, by change.
    pub rebalances: Family<ChangeLabels, Counter>,
    /// From the rebalance callback to the producers stopped and started, in seconds.
    pub rebalance_seconds: Histogram,
    /// Components assigned here whose producer could not start, and why.
    unstarted: Mutex<BTreeMap<String, String>>,
}

impl GroupStatus {
    /// A member of `group` through `topic` that holds nothing yet.
    pub fn new(group: &str, topic: &str) -> GroupStatus {
        GroupStatus {
            group: group.to_string(),
            topic: topic.to_string(),
            holding: Gauge::default(),
            rebalances: Family::default(),
            // 1 ms to 16 s: a revoke is bounded at 10 s.
            rebalance_seconds: Histogram::new([0.001, 0.004, 0.016, 0.064, 0.25, 1.0, 4.0, 16.0]),
            unstarted: Mutex::default(),
        }
    }

    /// A rebalance callback: an assignment is held after `Assigned` (even an empty one: there
    /// may be more hosts than components), none after `Lost`.
    pub fn on_callback(&self, change: Change) {
        match change {
            Change::Assigned => self.holding.set(1),
            Change::Lost => self.holding.set(0),
            Change::Revoked => 0,
        };
    }

    /// A rebalance carried out (producers stopped and started) `took` after its callback.
    pub fn on_carried_out(&self, change: Change, took: Duration) {
        let labels = ChangeLabels { change: format!("{change:?}").to_lowercase() };
        self.rebalances.get_or_create(&labels).inc();
        self.rebalance_seconds.observe(took.as_secs_f64());
    }

    /// The producer of `component`, assigned here, could not start (`Some(why)`), or it
    /// started or moved away (`None`).
    pub fn set_unstarted(&self, component: &str, why: Option<&str>) {
        let mut unstarted = self.unstarted.lock().unwrap_or_else(|p| p.into_inner());
        match why {
            None => unstarted.remove(component),
            Some(e) => unstarted.insert(component.to_string(), e.to_string()),
        };
    }

    /// Why the host is not ready, if the group is the reason.
    pub fn not_ready(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.holding.get() == 0 {
            let topic = &self.topic;
            reasons.push(format!(
                "group {}: no assignment held (joining through {topic}, or the last was lost)",
                self.group
            ));
        }
        for (c, e) in self.unstarted.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            reasons.push(format!(
                "group {}: {c} is assigned to this host but its producer could not start: {e}",
                self.group
            ));
        }
        reasons
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_assigned_even_nothing_and_not_after_a_loss() {
        let s = GroupStatus::new("summit", "lsst.t.love-host.summit");
        assert!(s.not_ready()[0].contains("lsst.t.love-host.summit"));
        s.on_callback(Change::Assigned);
        assert!(s.not_ready().is_empty());
        s.on_callback(Change::Revoked);
        assert!(s.not_ready().is_empty(), "a revoke leaves the rest of the assignment held");
        s.set_unstarted("ATDome:0", Some("no such producer type"));
        assert_eq!(
            s.not_ready(),
            ["group summit: ATDome:0 is assigned to this host but its producer could not start: no such producer type"]
        );
        s.set_unstarted("ATDome:0", None);
        assert!(s.not_ready().is_empty());
        s.on_callback(Change::Lost);
        assert_eq!(s.not_ready().len(), 1);
        s.on_carried_out(Change::Lost, Duration::from_millis(3));
        assert_eq!(s.rebalances.get_or_create(&ChangeLabels { change: "lost".into() }).get(), 1);
    }
}
