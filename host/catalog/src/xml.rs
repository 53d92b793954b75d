//! Reading a ts_xml interface directory (`sal_interfaces`, with `SALSubsystems.xml`,
//! `SALGenerics.xml` and one `<Component>/<Component>_{Commands,Events,Telemetry}.xml` set per
//! component) into a [`TopicCatalog`].
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
use std::path::Path;

use crate::{CatalogError, TopicCatalog};
use love_plugin_api::catalog::{ComponentCatalog, EnumInfo, FieldInfo, TopicInfo};
use quick_xml::events::Event;
use quick_xml::Reader;

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
            catalog.insert(comp);
        }
        Ok((catalog, errors))
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

/// The ts_xml release an interface directory belongs to, when it says: an installed or checked
/// out ts_xml keeps `sal_interfaces` at `lsst/ts/xml/data/sal_interfaces` and the release in
/// `lsst/ts/xml/version.py` (`__version__ = "28.0.1"`, written by setuptools_scm).
pub fn ts_xml_version_of(sal_interfaces: &Path) -> Option<String> {
    let text = std::fs::read_to_string(sal_interfaces.join("../../version.py")).ok()?;
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("__version__")?.trim_start().strip_prefix('=')?.trim();
        let v = rest.trim_matches(|c| c == '"' || c == '\'');
        (!v.is_empty()).then(|| v.to_string())
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ts_xml_dir_or_skip;

    /// The parser reproduces the built-in catalog from the ts_xml it was generated from: the
    /// generated data is what `love-catalog generate` would write today, and the parser still
    /// reads ts_xml as it did. With another ts_xml than the built-in one's, regenerate.
    #[test]
    fn builtin_matches_ts_xml() {
        let Some(dir) = ts_xml_dir_or_skip("love-catalog builtin_matches_ts_xml") else { return };
        let (xml, errors) = TopicCatalog::load_dir(&dir).expect("ts_xml dir");
        assert!(errors.is_empty(), "errors: {errors:#?}");
        let xml = xml.without_descriptions();
        let builtin = TopicCatalog::builtin();
        assert_eq!(xml.names(), builtin.names(), "components of {} and the built-in catalog", dir.display());
        for name in xml.names() {
            assert_eq!(
                xml.component(name),
                builtin.component(name),
                "{name}: ts_xml at {} differs from the built-in catalog (ts_xml {}); regenerate it \
                 (README, \"The topic catalog\")",
                dir.display(),
                crate::BUILTIN_TS_XML_VERSION
            );
        }
    }

    #[test]
    fn every_component_parses() {
        let Some(dir) = ts_xml_dir_or_skip("love-catalog every_component_parses") else { return };
        let (cat, errors) = TopicCatalog::load_dir(&dir).expect("ts_xml dir");
        assert!(errors.is_empty(), "errors: {errors:#?}");
        let dirs = std::fs::read_dir(&dir).unwrap().flatten().filter(|e| e.file_type().unwrap().is_dir()).count();
        assert!(dirs > 50, "only {dirs} component dirs");
        assert!(cat.len() >= dirs);
        // Descriptions are read from ts_xml (the Kafka writer's schemas carry them).
        let alarm = cat.component("Watcher").unwrap().event("alarm").unwrap();
        assert!(alarm.fields.iter().any(|f| !f.description.is_empty()));
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
    fn version_from_an_installed_ts_xml() {
        let dir = std::env::temp_dir().join(format!("love-catalog-version-{}", std::process::id()));
        let interfaces = dir.join("lsst/ts/xml/data/sal_interfaces");
        std::fs::create_dir_all(&interfaces).unwrap();
        assert_eq!(ts_xml_version_of(&interfaces), None);
        write(&dir, "lsst/ts/xml/version.py", "# generated\n__version__ = \"29.1.0\"\n");
        assert_eq!(ts_xml_version_of(&interfaces).as_deref(), Some("29.1.0"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_dir_is_an_error() {
        let err = TopicCatalog::load_dir(Path::new("/nonexistent/ts_xml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ts_xml"));
    }
}
