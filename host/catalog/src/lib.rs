//! The SAL topic catalog of love-host: which topics each SAL component has, their fields,
//! types, array lengths, units and enumerations.
//!
//! Two sources:
//! - built in ([`TopicCatalog::builtin`]): every component of the ts_xml release the data was
//!   generated from ([`BUILTIN_TS_XML_VERSION`]), compiled into the binary so that a bare
//!   clone knows every CSC of the observatory. Facts only: no description texts (in Kafka mode
//!   they come with the registry's schemas). `love-catalog generate` regenerates it;
//! - a ts_xml `sal_interfaces` directory ([`TopicCatalog::load_dir`], `--xml-dir`), for a newer
//!   ts_xml than the built-in one.
//!
//! Producers receive a component's entry as [`ComponentCatalog`] (the plugin API's type). This
//! crate is separate from the host so that the plugins' tests can depend on it (and on
//! `love-plugin-api`) without pulling in the host's runtime, Kafka client and HTTP stacks.

mod builtin;
pub mod compact;
pub mod testing;
mod xml;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use builtin::BUILTIN_TS_XML_VERSION;
pub use love_plugin_api::catalog::{ComponentCatalog, EnumInfo, FieldInfo, TopicInfo};
pub use xml::{parse_enumeration, python_name, ts_xml_version_of};

/// Why (part of) a catalog could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The interface directory itself is missing or unreadable.
    #[error("ts_xml interface directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not well-formed XML, or a definition in it is invalid.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong, naming the component/topic/field.
        message: String,
    },
}

/// All known components' topic catalogs.
///
/// Components are shared (`Arc`): the built-in catalog is decoded once per process and every
/// [`TopicCatalog::builtin`] shares it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopicCatalog {
    components: BTreeMap<String, Arc<ComponentCatalog>>,
}

impl TopicCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add or replace a component.
    pub fn insert(&mut self, component: ComponentCatalog) {
        self.components.insert(component.name.clone(), Arc::new(component));
    }

    /// Add every component of `other` that this catalog does not have.
    pub fn merge_missing(&mut self, other: TopicCatalog) {
        for (name, comp) in other.components {
            self.components.entry(name).or_insert(comp);
        }
    }

    /// A component's catalog.
    pub fn component(&self, name: &str) -> Option<&ComponentCatalog> {
        self.components.get(name).map(|c| &**c)
    }

    /// All component names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.components.keys().map(String::as_str).collect()
    }

    /// Whether `name` is a known, indexed component.
    pub fn is_indexed(&self, name: &str) -> bool {
        self.components.get(name).map(|c| c.indexed).unwrap_or(false)
    }

    /// Number of components.
    pub fn len(&self) -> usize {
        self.components.len()
    }

    /// Whether the catalog has no component.
    pub fn is_empty(&self) -> bool {
        self.components.is_empty()
    }

    /// The same catalog without description texts: what the built-in catalog holds, so a
    /// catalog read from ts_xml can be compared with it.
    pub fn without_descriptions(&self) -> TopicCatalog {
        let mut out = TopicCatalog::new();
        for comp in self.components.values() {
            let mut comp = (**comp).clone();
            for topic in comp.events.iter_mut().chain(&mut comp.telemetry).chain(&mut comp.commands) {
                for field in &mut topic.fields {
                    field.description.clear();
                }
            }
            out.insert(comp);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    //! What the producers and the simulator rely on, checked on the built-in catalog (the
    //! catalog a bare clone runs with). `xml::tests::builtin_matches_ts_xml` checks that the
    //! ts_xml parser gives the same catalog, when a ts_xml directory is available.
    use super::*;

    #[test]
    fn every_component_has_the_mandatory_generics() {
        let cat = TopicCatalog::builtin();
        assert!(cat.len() > 50, "only {} components", cat.len());
        for name in cat.names() {
            let c = cat.component(name).unwrap();
            assert_eq!(c.name, name);
            for t in ["heartbeat", "logLevel", "logMessage", "softwareVersions"] {
                assert!(c.event(t).is_some(), "{name} has no {t}");
            }
        }
    }

    #[test]
    fn watcher_alarm_fields_and_units() {
        let cat = TopicCatalog::builtin();
        let w = cat.component("Watcher").unwrap();
        assert!(!w.indexed);
        let alarm = w.event("alarm").unwrap();
        let names: Vec<&str> = alarm.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "name",
                "severity",
                "reason",
                "maxSeverity",
                "acknowledged",
                "acknowledgedBy",
                "escalatedId",
                "escalateTo",
                "mutedSeverity",
                "mutedBy",
                "timestampSeverityOldest",
                "timestampSeverityNewest",
                "timestampMaxSeverity",
                "timestampAcknowledged",
                "timestampAutoAcknowledge",
                "timestampAutoUnacknowledge",
                "timestampEscalate",
                "timestampUnmute",
            ]
        );
        let f = |n: &str| alarm.fields.iter().find(|f| f.name == n).unwrap();
        assert_eq!(f("severity").idl_type, "int");
        assert_eq!(f("acknowledged").idl_type, "boolean");
        assert_eq!(f("acknowledged").data_type(), "Int");
        assert_eq!(f("timestampSeverityOldest").units, "second");
        assert_eq!(f("timestampSeverityOldest").idl_type, "double");
        assert_eq!(f("name").units, "unitless");
        assert!(alarm.fields.iter().all(|f| f.description.is_empty()), "descriptions are not built in");
        let sev = w.enumeration("AlarmSeverity").unwrap();
        assert_eq!(
            sev.values,
            vec![(1, "NONE".into()), (2, "WARNING".into()), (3, "SERIOUS".into()), (4, "CRITICAL".into())]
        );
        // csc generics, not configurable ones
        assert!(w.event("summaryState").is_some());
        assert!(w.command("setLogLevel").is_some());
    }

    #[test]
    fn atdome_telemetry_and_generics() {
        let cat = TopicCatalog::builtin();
        let d = cat.component("ATDome").unwrap();
        let pos = d.telemetry_topic("position").unwrap();
        let az = pos.fields.iter().find(|f| f.name == "azimuthPosition").unwrap();
        assert_eq!((az.idl_type.as_str(), az.units.as_str()), ("double", "deg"));
        assert!(d.event("azimuthState").is_some());
        assert!(d.event("summaryState").is_some());
        assert!(d.command("enable").is_some());
        assert!(d.command("moveAzimuth").is_some());
        // generics follow the component's own topics
        assert_eq!(d.events.last().map(|t| t.name.as_str()), Some("heartbeat"));
        let hb = d.event("heartbeat").unwrap();
        assert_eq!(hb.fields.len(), 1);
        assert_eq!(hb.fields[0].name, "heartbeat");
        assert!(!d.indexed);
        // configurable, and largeFileObjectAvailable only where AddedGenerics names it
        assert!(d.event("configurationApplied").is_some());
        assert!(d.event("largeFileObjectAvailable").is_none());
    }

    #[test]
    fn indexed_components() {
        let cat = TopicCatalog::builtin();
        for name in ["ScriptQueue", "Script", "MTHexapod", "Test"] {
            assert!(cat.is_indexed(name), "{name}");
        }
        for name in ["Watcher", "ATDome", "MTMount", "MTM1M3", "NoSuchThing"] {
            assert!(!cat.is_indexed(name), "{name}");
        }
    }

    #[test]
    fn script_generics_follow_added_generics() {
        // Script: AddedGenerics command_setLogLevel, logevent_largeFileObjectAvailable.
        let cat = TopicCatalog::builtin();
        let s = cat.component("Script").unwrap();
        assert!(s.event("summaryState").is_none());
        assert!(s.command("setLogLevel").is_some());
        assert!(s.command("enable").is_none());
        assert!(s.event("logMessage").is_some());
        assert!(s.event("largeFileObjectAvailable").is_some());
    }

    #[test]
    fn script_enums_match_the_spec() {
        let cat = TopicCatalog::builtin();
        let sq = cat.component("ScriptQueue").unwrap();
        let ps = sq.enumeration("ScriptProcessState").unwrap();
        let want: Vec<(i64, String)> =
            ["UNKNOWN", "LOADING", "CONFIGURED", "RUNNING", "DONE", "LOADFAILED", "CONFIGURE_FAILED", "TERMINATED"]
                .iter()
                .enumerate()
                .map(|(i, n)| (i as i64, n.to_string()))
                .collect();
        assert_eq!(ps.values, want);
        let s = cat.component("Script").unwrap();
        let st = s.enumeration("ScriptState").unwrap();
        let want: Vec<(i64, String)> = [
            "UNKNOWN",
            "UNCONFIGURED",
            "CONFIGURED",
            "RUNNING",
            "PAUSED",
            "ENDING",
            "STOPPING",
            "FAILING",
            "DONE",
            "STOPPED",
            "FAILED",
            "CONFIGURE_FAILED",
        ]
        .iter()
        .enumerate()
        .map(|(i, n)| (i as i64, n.to_string()))
        .collect();
        assert_eq!(st.values, want);
    }

    #[test]
    fn field_order_counts_units_and_enumerations() {
        let cat = TopicCatalog::builtin();
        let t = cat.component("Test").unwrap();
        let arrays = t.telemetry_topic("arrays").unwrap();
        assert_eq!(arrays.fields[0].name, "boolean0");
        assert!(arrays.fields.iter().all(|f| f.count == 5 || f.idl_type == "string"));
        let sq = cat.component("ScriptQueue").unwrap();
        let q = sq.event("queue").unwrap();
        let names: Vec<&str> = q.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(&names[..4], ["enabled", "running", "currentSalIndex", "length"]);
        let schema = sq.command("showSchema").unwrap();
        let names: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["isStandard", "path"]);
        // the big ones, which only the full catalog has
        let m1m3 = cat.component("MTM1M3").unwrap();
        assert!(m1m3.telemetry.len() > 10 && m1m3.events.len() > 50, "MTM1M3 topics");
        let mount = cat.component("MTMount").unwrap();
        let az = mount.telemetry_topic("azimuth").unwrap();
        let pos = az.fields.iter().find(|f| f.name == "actualPosition").unwrap();
        assert_eq!((pos.idl_type.as_str(), pos.units.as_str()), ("double", "deg"));
    }

    #[test]
    fn builtin_is_shared_and_versioned() {
        let a = TopicCatalog::builtin();
        let b = TopicCatalog::builtin();
        assert_eq!(a, b);
        assert!(std::ptr::eq(a.component("MTM1M3").unwrap(), b.component("MTM1M3").unwrap()));
        assert_eq!(BUILTIN_TS_XML_VERSION, "28.0.1");
    }

    #[test]
    fn insert_and_merge_missing() {
        let mut cat = TopicCatalog::new();
        assert!(cat.is_empty());
        cat.insert(ComponentCatalog { name: "ATDome".into(), indexed: true, ..Default::default() });
        cat.merge_missing(TopicCatalog::builtin());
        assert!(cat.is_indexed("ATDome"), "merge_missing keeps what is there");
        assert!(cat.component("ATDome").unwrap().events.is_empty());
        assert!(cat.component("MTMount").is_some());
        assert_eq!(cat.len(), TopicCatalog::builtin().len());
    }
}
