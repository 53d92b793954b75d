//! The topic catalog: which topics each SAL component has, their fields, types and units.
//!
//! Loaded from a ts_xml interface directory (`sal_interfaces`, with `SALSubsystems.xml`,
//! `SALGenerics.xml` and one `<Component>/<Component>_{Commands,Events,Telemetry}.xml` set per
//! component), or built in ([`TopicCatalog::builtin`]) so the simulator runs on a fresh clone.
//! Producers receive a component's entry as [`ComponentCatalog`] (the plugin API's type).
//!
//! Rules, as ts_xml/salobj apply them:
//! - indexed: `IndexEnumeration` in `SALSubsystems.xml` is anything but `no`;
//! - generic topics (from `SALGenerics.xml`): every component gets the `mandatory` ones
//!   (heartbeat, logLevel, logMessage, softwareVersions); a component gets the generics of each
//!   category its `AddedGenerics` lists (`csc`: summaryState, errorCode, simulationMode, the
//!   state commands, setLogLevel; `configurable`: configurationApplied, configurationsAvailable)
//!   and each generic it names by its full name (`logevent_largeFileObjectAvailable`,
//!   `command_enterControl`). Component topics come first (XML order), then generics (XML order);
//! - topic names drop `<Component>_logevent_`, `<Component>_command_` or `<Component>_`;
//! - fields keep XML order; units are `unitless` when absent or empty; `Count` defaults to 1;
//! - enumerations: see [`parse_enumeration`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use love_plugin_api::catalog::{ComponentCatalog, EnumInfo, FieldInfo, TopicInfo};
use quick_xml::events::Event;
use quick_xml::Reader;

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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopicCatalog {
    components: BTreeMap<String, ComponentCatalog>,
}

/// Which kind of topic an XML element defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Command,
    Event,
    Telemetry,
}

/// A generic topic with the category that selects it.
#[derive(Debug, Clone)]
struct Generic {
    kind: Kind,
    /// `command_enable`, `logevent_heartbeat`: how AddedGenerics names it.
    full_name: String,
    category: Option<String>,
    topic: TopicInfo,
}

/// One `SALSubsystem` entry.
#[derive(Debug, Clone, Default)]
struct Subsystem {
    indexed: bool,
    added_generics: Vec<String>,
}

impl TopicCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Load a ts_xml `sal_interfaces` directory. Problems in single files are returned in the
    /// list (with file and line) and the rest still loads; a missing directory is an error.
    pub fn load_dir(path: &Path) -> Result<(TopicCatalog, Vec<CatalogError>), CatalogError> {
        let entries =
            std::fs::read_dir(path).map_err(|source| CatalogError::Dir { path: path.to_path_buf(), source })?;
        let mut errors = Vec::new();

        let subsystems = {
            let file = path.join("SALSubsystems.xml");
            match read_xml(&file) {
                Ok(root) => parse_subsystems(&file, &root, &mut errors),
                Err(e) => {
                    errors.push(e);
                    BTreeMap::new()
                }
            }
        };
        let generics = {
            let file = path.join("SALGenerics.xml");
            match read_xml(&file) {
                Ok(root) => parse_generics(&file, &root, &mut errors),
                Err(e) => {
                    errors.push(e);
                    Vec::new()
                }
            }
        };

        let mut names: BTreeSet<String> = subsystems.keys().cloned().collect();
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if let Some(name) = entry.file_name().to_str() {
                    if !name.starts_with('.') {
                        names.insert(name.to_string());
                    }
                }
            }
        }

        let mut catalog = TopicCatalog::new();
        for name in names {
            let sub = subsystems.get(&name).cloned().unwrap_or_default();
            let mut comp = ComponentCatalog { name: name.clone(), indexed: sub.indexed, ..Default::default() };
            let mut enums = Vec::new();
            for (suffix, kind) in [("Commands", Kind::Command), ("Events", Kind::Event), ("Telemetry", Kind::Telemetry)]
            {
                let file = path.join(&name).join(format!("{name}_{suffix}.xml"));
                if !file.exists() {
                    continue;
                }
                match read_xml(&file) {
                    Ok(root) => {
                        let parsed = parse_topic_file(&file, &root, &name, &mut enums, &mut errors);
                        for (k, topic) in parsed {
                            if k != kind {
                                errors.push(CatalogError::Parse {
                                    path: file.clone(),
                                    line: 1,
                                    message: format!("{name}: topic {} is not a {suffix} topic", topic.name),
                                });
                            }
                            push_topic(&mut comp, k, topic);
                        }
                    }
                    Err(e) => errors.push(e),
                }
            }
            for g in &generics {
                let wanted = match &g.category {
                    Some(c) if c == "mandatory" => true,
                    Some(c) => sub.added_generics.iter().any(|a| a == c),
                    None => false,
                } || sub.added_generics.contains(&g.full_name);
                let exists = match g.kind {
                    Kind::Command => comp.command(&g.topic.name).is_some(),
                    Kind::Event => comp.event(&g.topic.name).is_some(),
                    Kind::Telemetry => comp.telemetry_topic(&g.topic.name).is_some(),
                };
                if wanted && !exists {
                    push_topic(&mut comp, g.kind, g.topic.clone());
                }
            }
            comp.enums = enums;
            catalog.components.insert(name, comp);
        }
        Ok((catalog, errors))
    }

    /// Add or replace a component.
    pub fn insert(&mut self, component: ComponentCatalog) {
        self.components.insert(component.name.clone(), component);
    }

    /// Add every component of `other` that this catalog does not have.
    pub fn merge_missing(&mut self, other: TopicCatalog) {
        for (name, comp) in other.components {
            self.components.entry(name).or_insert(comp);
        }
    }

    /// A component's catalog.
    pub fn component(&self, name: &str) -> Option<&ComponentCatalog> {
        self.components.get(name)
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
}

fn push_topic(comp: &mut ComponentCatalog, kind: Kind, topic: TopicInfo) {
    match kind {
        Kind::Command => comp.commands.push(topic),
        Kind::Event => comp.events.push(topic),
        Kind::Telemetry => comp.telemetry.push(topic),
    }
}

/// A minimal element tree: enough for ts_xml, and it keeps each element's line for errors.
#[derive(Debug, Default)]
struct Node {
    name: String,
    text: String,
    line: usize,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

/// Turns byte offsets into line numbers; offsets come in increasing order, so counting is
/// incremental (a naive count per element is quadratic on the big MTM1M3 files).
struct Lines<'a> {
    text: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines { text: text.as_bytes(), pos: 0, line: 1 }
    }

    fn at(&mut self, pos: u64) -> usize {
        let pos = (pos as usize).min(self.text.len());
        if pos < self.pos {
            self.pos = 0;
            self.line = 1;
        }
        self.line += self.text[self.pos..pos].iter().filter(|&&b| b == b'\n').count();
        self.pos = pos;
        self.line
    }
}

fn read_xml(path: &Path) -> Result<Node, CatalogError> {
    let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Io { path: path.to_path_buf(), source })?;
    parse_xml(&text).map_err(|(line, message)| CatalogError::Parse { path: path.to_path_buf(), line, message })
}

/// Parse XML text into a tree; an error is (line, message).
fn parse_xml(text: &str) -> Result<Node, (usize, String)> {
    let mut reader = Reader::from_str(text);
    let mut lines = Lines::new(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Node> = vec![Node { name: String::new(), line: 1, ..Default::default() }];
    loop {
        let before = reader.buffer_position();
        let ev = reader.read_event().map_err(|e| (lines.at(reader.error_position()), format!("XML error: {e}")))?;
        match ev {
            Event::Start(s) => {
                let name = String::from_utf8_lossy(s.name().as_ref()).into_owned();
                stack.push(Node { name, line: lines.at(before), ..Default::default() });
            }
            Event::Empty(s) => {
                let name = String::from_utf8_lossy(s.name().as_ref()).into_owned();
                let node = Node { name, line: lines.at(before), ..Default::default() };
                stack.last_mut().expect("root").children.push(node);
            }
            Event::End(_) => {
                let node = stack.pop().expect("balanced");
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Err((lines.at(before), "unbalanced end tag".into())),
                }
            }
            Event::Text(t) => {
                let s = t.unescape().map_err(|e| (lines.at(before), format!("XML error: {e}")))?;
                stack.last_mut().expect("root").text.push_str(&s);
            }
            Event::CData(c) => {
                stack.last_mut().expect("root").text.push_str(&String::from_utf8_lossy(&c));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        let open = stack.last().expect("non-empty");
        return Err((
            lines.at(text.len() as u64),
            format!("unexpected end of file: <{}> (line {}) is not closed", open.name, open.line),
        ));
    }
    let root = stack.pop().expect("root");
    if root.children.is_empty() {
        return Err((1, "no root element".into()));
    }
    Ok(root)
}

fn parse_subsystems(path: &Path, doc: &Node, errors: &mut Vec<CatalogError>) -> BTreeMap<String, Subsystem> {
    let mut out = BTreeMap::new();
    for set in &doc.children {
        for s in set.all("SALSubsystem") {
            let Some(name) = s.child_text("Name").filter(|n| !n.is_empty()) else {
                errors.push(CatalogError::Parse {
                    path: path.to_path_buf(),
                    line: s.line,
                    message: "SALSubsystem without <Name>".into(),
                });
                continue;
            };
            let index = s.child_text("IndexEnumeration").unwrap_or("no");
            let added = s
                .child_text("AddedGenerics")
                .unwrap_or("")
                .split(',')
                .map(|g| g.trim().to_string())
                .filter(|g| !g.is_empty())
                .collect();
            out.insert(
                name.to_string(),
                Subsystem { indexed: !index.eq_ignore_ascii_case("no"), added_generics: added },
            );
        }
    }
    out
}

fn parse_generics(path: &Path, doc: &Node, errors: &mut Vec<CatalogError>) -> Vec<Generic> {
    let mut out = Vec::new();
    let mut enums = Vec::new();
    for set in &doc.children {
        // SALObjects > SAL*Set > SAL*; accept the sets at top level too.
        let sets: Vec<&Node> = if set.name == "SALObjects" { set.children.iter().collect() } else { vec![set] };
        for s in sets {
            for (kind, topic) in parse_topics(path, s, "SALGeneric", &mut enums, errors) {
                let el = s
                    .children
                    .iter()
                    .find(|c| c.child_text("EFDB_Topic").map(|t| topic_matches(t, &topic.name)).unwrap_or(false));
                let category = el.and_then(|e| e.child_text("Category")).map(str::to_string);
                let full_name = match kind {
                    Kind::Command => format!("command_{}", topic.name),
                    Kind::Event => format!("logevent_{}", topic.name),
                    Kind::Telemetry => topic.name.clone(),
                };
                out.push(Generic { kind, full_name, category, topic });
            }
        }
    }
    out
}

fn topic_matches(efdb_topic: &str, name: &str) -> bool {
    efdb_topic.ends_with(&format!("_{name}"))
}

/// Parse one `<Component>_{Commands,Events,Telemetry}.xml`.
fn parse_topic_file(
    path: &Path,
    doc: &Node,
    component: &str,
    enums: &mut Vec<EnumInfo>,
    errors: &mut Vec<CatalogError>,
) -> Vec<(Kind, TopicInfo)> {
    let mut out = Vec::new();
    for set in &doc.children {
        out.extend(parse_topics(path, set, component, enums, errors));
    }
    out
}

/// Parse the topics of one `SAL*Set` element (and its file-level enumerations).
fn parse_topics(
    path: &Path,
    set: &Node,
    component: &str,
    enums: &mut Vec<EnumInfo>,
    errors: &mut Vec<CatalogError>,
) -> Vec<(Kind, TopicInfo)> {
    let mut out = Vec::new();
    for el in &set.children {
        let kind = match el.name.as_str() {
            "SALCommand" => Kind::Command,
            "SALEvent" => Kind::Event,
            "SALTelemetry" => Kind::Telemetry,
            "Enumeration" => {
                add_enums(enums, parse_enumeration(&el.text, component));
                continue;
            }
            _ => continue,
        };
        let perr = |line: usize, message: String| CatalogError::Parse { path: path.to_path_buf(), line, message };
        let Some(efdb) = el.child_text("EFDB_Topic").filter(|t| !t.is_empty()) else {
            errors.push(perr(el.line, format!("{component}: <{}> without <EFDB_Topic>", el.name)));
            continue;
        };
        let name = topic_name(efdb, component);
        if name.is_empty() || name == efdb {
            errors.push(perr(el.line, format!("{component}: topic {efdb} does not start with {component}_")));
            continue;
        }
        let mut topic = TopicInfo { name: name.to_string(), fields: Vec::new(), rate_hz: None };
        let mut ok = true;
        for item in el.all("item") {
            match parse_field(item, component, &topic.name, enums) {
                Ok(f) => topic.fields.push(f),
                Err(m) => {
                    errors.push(perr(item.line, m));
                    ok = false;
                }
            }
        }
        if ok {
            out.push((kind, topic));
        }
    }
    out
}

/// `ATDome_logevent_azimuthState` -> `azimuthState`; `ATDome_position` -> `position`.
fn topic_name<'a>(efdb: &'a str, component: &str) -> &'a str {
    for prefix in [format!("{component}_logevent_"), format!("{component}_command_"), format!("{component}_")] {
        if let Some(rest) = efdb.strip_prefix(&prefix) {
            return rest;
        }
    }
    efdb
}

fn parse_field(item: &Node, component: &str, topic: &str, enums: &mut Vec<EnumInfo>) -> Result<FieldInfo, String> {
    let name = item
        .child_text("EFDB_Name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{component}.{topic}: <item> without <EFDB_Name>"))?;
    let idl_type = item
        .child_text("IDL_Type")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{component}.{topic}.{name}: no <IDL_Type>"))?;
    let count = match item.child_text("Count") {
        None | Some("") => 1,
        Some(c) => c.parse::<u32>().map_err(|_| format!("{component}.{topic}.{name}: bad <Count> {c:?}"))?,
    };
    let units = match item.child_text("Units") {
        None | Some("") => "unitless".to_string(),
        Some(u) => u.to_string(),
    };
    let mut field = FieldInfo::new(name, idl_type, count, &units);
    field.description = item.child_text("Description").unwrap_or("").to_string();
    if let Some(e) = item.child("Enumeration") {
        let parsed = parse_enumeration(&e.text, name);
        field.enumeration = parsed.first().map(|e| e.name.clone());
        add_enums(enums, parsed);
    }
    Ok(field)
}

fn add_enums(enums: &mut Vec<EnumInfo>, new: Vec<EnumInfo>) {
    for e in new {
        if !enums.iter().any(|x| x.name == e.name) {
            enums.push(e);
        }
    }
}

/// Enums whose Python counterpart (ts_xml `enums/*.py`) has `UNKNOWN = 0` in front of the
/// values the XML declares.
const UNKNOWN_ZERO: &[&str] = &["ScriptState", "ScriptProcessState"];

/// Parse an `<Enumeration>` text into named enumerations.
///
/// The rule: entries are comma-separated `Prefix_Name` or `Prefix_Name=value`; entries with the
/// same `Prefix` (text before the first `_`) form the enumeration `Prefix`; entries without `_`
/// form one named `default_name` (the field name for a field-level list). Values are explicit
/// (decimal, `0x` hex, leading-`0` octal) or implicit: the first is 1 (SAL numbering), each next
/// one the previous plus 1. Names follow the Python enums: CamelCase upper-cased without
/// separators (`LoadFailed` -> `LOADFAILED`), except `ConfigureFailed` -> `CONFIGURE_FAILED`,
/// which the Python enums spell that way. `ScriptState` and `ScriptProcessState` get
/// `0 UNKNOWN` first, as their Python enums have it.
pub fn parse_enumeration(text: &str, default_name: &str) -> Vec<EnumInfo> {
    let mut out: Vec<(EnumInfo, i64)> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (label, explicit) = match entry.split_once('=') {
            Some((l, v)) => (l.trim(), parse_int(v.trim())),
            None => (entry, None),
        };
        let (group, value_name) = match label.split_once('_') {
            Some((g, n)) if !g.is_empty() && !n.is_empty() => (g, n),
            _ => (default_name, label),
        };
        let idx = match out.iter().position(|(e, _)| e.name == group) {
            Some(i) => i,
            None => {
                let mut info = EnumInfo { name: group.to_string(), values: Vec::new() };
                if UNKNOWN_ZERO.contains(&group) {
                    info.values.push((0, "UNKNOWN".to_string()));
                }
                out.push((info, 1));
                out.len() - 1
            }
        };
        let (info, next) = &mut out[idx];
        let value = explicit.unwrap_or(*next);
        info.values.push((value, python_name(value_name)));
        *next = value.saturating_add(1);
    }
    out.into_iter().map(|(e, _)| e).collect()
}

fn parse_int(s: &str) -> Option<i64> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        i64::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

/// The Python enum member name for a ts_xml CamelCase value name.
pub fn python_name(camel: &str) -> String {
    match camel {
        "ConfigureFailed" => "CONFIGURE_FAILED".to_string(),
        other => other.to_uppercase(),
    }
}

/// The ts_xml interface directory tests use: `TS_XML_DIR`, else `<repo>/../shared/ts_xml/sal_interfaces`.
#[cfg(test)]
pub(crate) fn test_xml_dir() -> PathBuf {
    if let Ok(d) = std::env::var("TS_XML_DIR") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/ts_xml/sal_interfaces")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn xml() -> &'static TopicCatalog {
        static CAT: OnceLock<TopicCatalog> = OnceLock::new();
        CAT.get_or_init(|| {
            let (cat, errors) = TopicCatalog::load_dir(&test_xml_dir()).expect("ts_xml dir");
            assert!(errors.is_empty(), "errors: {errors:#?}");
            cat
        })
    }

    #[test]
    fn every_component_parses() {
        let cat = xml();
        let dirs =
            std::fs::read_dir(test_xml_dir()).unwrap().flatten().filter(|e| e.file_type().unwrap().is_dir()).count();
        assert!(dirs > 50, "only {dirs} component dirs");
        assert!(cat.len() >= dirs);
        for name in cat.names() {
            let c = cat.component(name).unwrap();
            assert!(c.event("heartbeat").is_some(), "{name} has no heartbeat");
            assert!(c.event("logLevel").is_some(), "{name} has no logLevel");
            assert!(c.event("softwareVersions").is_some(), "{name} has no softwareVersions");
        }
    }

    #[test]
    fn watcher_alarm_fields_and_units() {
        let w = xml().component("Watcher").unwrap();
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
        let d = xml().component("ATDome").unwrap();
        let tel: Vec<&str> = d.telemetry.iter().map(|t| t.name.as_str()).collect();
        assert!(tel.contains(&"position"), "{tel:?}");
        let pos = d.telemetry_topic("position").unwrap();
        let az = pos.fields.iter().find(|f| f.name == "azimuthPosition").unwrap();
        assert_eq!(az.units, "deg");
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
    }

    #[test]
    fn indexed_components() {
        let cat = xml();
        assert!(cat.is_indexed("ScriptQueue"));
        assert!(cat.is_indexed("Script"));
        assert!(cat.is_indexed("MTHexapod"));
        assert!(!cat.is_indexed("Watcher"));
        assert!(!cat.is_indexed("ATDome"));
        assert!(!cat.is_indexed("NoSuchThing"));
    }

    #[test]
    fn generics_follow_added_generics() {
        let cat = xml();
        // Script: AddedGenerics command_setLogLevel only -> no summaryState, but setLogLevel.
        let s = cat.component("Script").unwrap();
        assert!(s.event("summaryState").is_none());
        assert!(s.command("setLogLevel").is_some());
        assert!(s.command("enable").is_none());
        assert!(s.event("logMessage").is_some());
        // configurable
        let d = cat.component("ATDome").unwrap();
        assert!(d.event("configurationApplied").is_some());
        // not named: largeFileObjectAvailable only where listed
        assert!(d.event("largeFileObjectAvailable").is_none());
    }

    #[test]
    fn script_enums_match_the_spec() {
        let cat = xml();
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
    fn explicit_enum_values() {
        let e = parse_enumeration("ValueEnum_Zero=0, ValueEnum_Two=2, ValueEnum_Four=04, ValueEnum_Five=0x05", "x");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].name, "ValueEnum");
        assert_eq!(e[0].values, vec![(0, "ZERO".into()), (2, "TWO".into()), (4, "FOUR".into()), (5, "FIVE".into())]);
        let e = parse_enumeration("clear=0,cloudy=2,rain", "status");
        assert_eq!(e[0].name, "status");
        assert_eq!(e[0].values, vec![(0, "CLEAR".into()), (2, "CLOUDY".into()), (3, "RAIN".into())]);
    }

    #[test]
    fn field_order_counts_and_units() {
        let t = xml().component("Test").unwrap();
        let arrays = t.telemetry_topic("arrays").unwrap();
        assert_eq!(arrays.fields[0].name, "boolean0");
        assert!(arrays.fields.iter().all(|f| f.count == 5 || f.idl_type == "string"));
        let sq = xml().component("ScriptQueue").unwrap();
        let q = sq.event("queue").unwrap();
        let names: Vec<&str> = q.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(&names[..4], ["enabled", "running", "currentSalIndex", "length"]);
        let schema = sq.command("showSchema").unwrap();
        let names: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["isStandard", "path"]);
    }

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn broken_file_reports_file_and_line_and_others_load() {
        let dir = std::env::temp_dir().join(format!("love-host-catalog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write(
            &dir,
            "SALSubsystems.xml",
            "<SALSubsystemSet>\n<SALSubsystem><Name>Good</Name><IndexEnumeration>any</IndexEnumeration><AddedGenerics>csc</AddedGenerics></SALSubsystem>\n<SALSubsystem><Name>Bad</Name><IndexEnumeration>no</IndexEnumeration></SALSubsystem>\n</SALSubsystemSet>\n",
        );
        write(
            &dir,
            "SALGenerics.xml",
            "<SALObjects><SALEventSet>\n<SALEvent><Subsystem>SALGeneric</Subsystem><EFDB_Topic>SALGeneric_logevent_heartbeat</EFDB_Topic><Category>mandatory</Category>\n<item><EFDB_Name>heartbeat</EFDB_Name><IDL_Type>boolean</IDL_Type></item></SALEvent>\n<SALEvent><EFDB_Topic>SALGeneric_logevent_summaryState</EFDB_Topic><Category>csc</Category><item><EFDB_Name>summaryState</EFDB_Name><IDL_Type>long</IDL_Type></item></SALEvent>\n</SALEventSet></SALObjects>\n",
        );
        write(
            &dir,
            "Good/Good_Telemetry.xml",
            "<SALTelemetrySet>\n<SALTelemetry>\n<EFDB_Topic>Good_position</EFDB_Topic>\n<item><EFDB_Name>x</EFDB_Name><IDL_Type>float</IDL_Type><Units>m</Units></item>\n<item><EFDB_Name>y</EFDB_Name><IDL_Type>double</IDL_Type><Count>3</Count></item>\n</SALTelemetry>\n</SALTelemetrySet>\n",
        );
        write(
            &dir,
            "Bad/Bad_Events.xml",
            "<SALEventSet>\n<SALEvent>\n<EFDB_Topic>Bad_x</EFDB_Topic>\n</Oops>\n</SALEventSet>\n",
        );
        let (cat, errors) = TopicCatalog::load_dir(&dir).unwrap();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let msg = errors[0].to_string();
        assert!(msg.contains("Bad_Events.xml:4:"), "{msg}");
        let good = cat.component("Good").unwrap();
        assert!(good.indexed);
        let pos = good.telemetry_topic("position").unwrap();
        assert_eq!(pos.fields[0].units, "m");
        assert_eq!(pos.fields[1].units, "unitless");
        assert_eq!(pos.fields[1].count, 3);
        assert!(good.event("summaryState").is_some());
        assert!(good.event("heartbeat").is_some());
        // Bad still exists with its generics, without the broken file's topics.
        let bad = cat.component("Bad").unwrap();
        assert!(bad.event("heartbeat").is_some());
        assert!(bad.event("summaryState").is_none());
        assert!(bad.event("x").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_dir_is_an_error() {
        let err = TopicCatalog::load_dir(Path::new("/nonexistent/ts_xml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ts_xml"));
    }
}
