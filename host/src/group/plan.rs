//! The pure part of group membership: the coordination topic (one partition per configured
//! component, partition index = the component's position in the configured list, so hosts
//! with the same list agree), and what each rebalance callback means for the serving set.

use std::collections::BTreeSet;

/// Why a rebalance callback changes what this host serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The group coordinator gave these partitions to this host (cooperative: incremental).
    Assigned,
    /// The coordinator took them away; this host stops them before the callback returns.
    Revoked,
    /// librdkafka says the assignment was lost (session timed out, broker unreachable):
    /// another host may already serve them.
    Lost,
}

/// The components this host must start and stop for one rebalance callback.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Moves {
    pub start: Vec<String>,
    pub stop: Vec<String>,
}

/// The coordination topic of `group`: `lsst.<subname>.love-host.<group>`.
pub fn topic_name(subname: &str, group: &str) -> Result<String, String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if group.is_empty() || !group.chars().all(legal) {
        return Err(format!(
            "group name {group:?}: a Kafka topic name is made of it, so it must be non-empty and use only letters, digits, '.', '_' and '-'"
        ));
    }
    let name = format!("lsst.{subname}.love-host.{group}");
    if name.len() > 249 {
        return Err(format!(
            "group {group:?}: the coordination topic name {name:?} is longer than Kafka's 249 characters"
        ));
    }
    Ok(name)
}

/// Checks an existing coordination topic against the configured components.
pub fn check_partition_count(topic: &str, existing: usize, components: &[String]) -> Result<(), String> {
    if existing == components.len() {
        return Ok(());
    }
    Err(format!(
        "coordination topic {topic} has {existing} partitions but this host is configured with {} components ({}): \
         every host of a group must be started with the same component list; delete the topic or use another --group",
        components.len(),
        components.join(" ")
    ))
}

/// Checks the component list the group's first host recorded (`recorded`, one per line)
/// against this host's `components`.
pub fn check_components(topic: &str, recorded: &str, components: &[String]) -> Result<(), String> {
    let recorded: Vec<&str> = recorded.lines().collect();
    if recorded == components {
        return Ok(());
    }
    Err(format!(
        "coordination topic {topic} was set up for the components {} but this host is configured with {}: \
         every host of a group must be started with the same component list; delete the topic or use another --group",
        recorded.join(" "),
        components.join(" ")
    ))
}

/// Partition index -> component and the serving set that follows the rebalances.
#[derive(Debug)]
pub struct Serving {
    components: Vec<String>,
    served: BTreeSet<usize>,
}

impl Serving {
    pub fn new(components: Vec<String>) -> Serving {
        Serving { components, served: BTreeSet::new() }
    }

    /// The components served now, in partition order.
    pub fn served(&self) -> Vec<&str> {
        self.served.iter().map(|&i| self.components[i].as_str()).collect()
    }

    /// Applies one rebalance callback; partitions outside the component list are ignored.
    /// Starting what is served, or stopping what is not, is not asked for: the callbacks may
    /// repeat a partition.
    pub fn apply(&mut self, change: Change, partitions: &[i32]) -> Moves {
        let mut moves = Moves::default();
        for &p in partitions {
            let Some(i) = usize::try_from(p).ok().filter(|&i| i < self.components.len()) else { continue };
            let name = self.components[i].clone();
            match change {
                Change::Assigned if self.served.insert(i) => moves.start.push(name),
                Change::Revoked | Change::Lost if self.served.remove(&i) => moves.stop.push(name),
                _ => {}
            }
        }
        moves
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn six() -> Vec<String> {
        ["ATDome", "ATMCS", "MTMount", "Watcher", "ScriptQueue:1", "ScriptQueue:2"].map(String::from).to_vec()
    }

    #[test]
    fn topic_name_from_subname_and_group() {
        assert_eq!(topic_name("summit", "love-a").unwrap(), "lsst.summit.love-host.love-a");
        assert!(topic_name("summit", "").unwrap_err().contains("group name"));
        assert!(topic_name("summit", "a b").unwrap_err().contains("\"a b\""));
        assert!(topic_name("s", &"g".repeat(250)).unwrap_err().contains("249"));
    }

    #[test]
    fn partition_count_must_match_the_component_list() {
        assert!(check_partition_count("t", 6, &six()).is_ok());
        let e = check_partition_count("lsst.x.love-host.g", 5, &six()).unwrap_err();
        assert!(e.contains("lsst.x.love-host.g has 5 partitions") && e.contains("6 components"), "{e}");
    }

    #[test]
    fn the_recorded_component_list_must_be_this_hosts() {
        assert!(check_components("t", &six().join("\n"), &six()).is_ok());
        let mut other = six();
        other[1] = "ATPneumatics".into();
        let e = check_components("lsst.x.love-host.g", &six().join("\n"), &other).unwrap_err();
        assert!(e.contains("lsst.x.love-host.g was set up for the components ATDome ATMCS"), "{e}");
        assert!(e.contains("configured with ATDome ATPneumatics"), "{e}");
    }

    #[test]
    fn incremental_assign_and_revoke_start_and_stop_only_what_moves() {
        let mut s = Serving::new(six());
        let m = s.apply(Change::Assigned, &[0, 2, 4]);
        assert_eq!(m.start, ["ATDome", "MTMount", "ScriptQueue:1"]);
        assert!(m.stop.is_empty());
        // A repeated partition is not started twice; an unknown one is ignored.
        let m = s.apply(Change::Assigned, &[2, 5, 9, -1]);
        assert_eq!(m.start, ["ScriptQueue:2"]);
        let m = s.apply(Change::Revoked, &[0, 1]);
        assert_eq!(m.stop, ["ATDome"]);
        assert_eq!(s.served(), ["MTMount", "ScriptQueue:1", "ScriptQueue:2"]);
        let m = s.apply(Change::Lost, &[4]);
        assert_eq!(m.stop, ["ScriptQueue:1"]);
        assert_eq!(s.served(), ["MTMount", "ScriptQueue:2"]);
    }
}
