//! The topic catalog in force (`--xml-dir`'s, else the built-in one) and `love-host catalog`,
//! which shows it: components, a component's topics, a topic's fields.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use love_plugin_api::catalog::{ComponentCatalog, EnumInfo, TopicInfo};
use tracing::{info, warn};

use crate::component::ComponentName;

use crate::sal::catalog::{ts_xml_version_of, CatalogError, TopicCatalog, BUILTIN_TS_XML_VERSION};

/// Why the catalog could not be loaded or shown.
#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    /// The `--xml-dir` could not be read (the text holds its cause).
    #[error("loading the topic catalog: {0}")]
    Load(CatalogError),
    /// `love-host catalog NAME` for a component the catalog lacks.
    #[error(
        "component {name:?} is not in the topic catalog ({catalog}){hint}; `love-host catalog` lists its {count} components"
    )]
    UnknownComponent {
        /// The name asked for.
        name: String,
        /// Which catalog.
        catalog: String,
        /// ` (did you mean …?)`, or nothing.
        hint: String,
        /// How many components it has.
        count: usize,
    },
    /// `love-host catalog NAME TOPIC` for a topic the component lacks.
    #[error(
        "{component} has no topic {topic:?} (among its events, telemetry and commands; {catalog}); `love-host catalog \
         {component}` lists them"
    )]
    UnknownTopic {
        /// The component.
        component: String,
        /// The topic asked for.
        topic: String,
        /// Which catalog.
        catalog: String,
    },
    /// Writing the listing failed (a closed pipe).
    #[error("writing the catalog")]
    Write(#[from] std::io::Error),
}

/// A loaded catalog, where it came from, and the problems met loading it.
pub struct LoadedCatalog {
    /// The catalog.
    pub catalog: TopicCatalog,
    /// Which catalog and ts_xml version, for logs: `built-in ts_xml 28.0.1`,
    /// `ts_xml 29.0.0 from /opt/ts_xml/...`.
    pub source: String,
    /// Files of the `--xml-dir` that could not be read (the rest loaded).
    pub problems: Vec<CatalogError>,
}

/// The catalog of `xml_dir`, else the built-in one.
pub fn load(xml_dir: Option<&Path>) -> Result<LoadedCatalog, TopicsError> {
    match xml_dir {
        Some(dir) => {
            // The error's text already holds its cause: `{e}`, not a context chain repeating it.
            let (catalog, problems) = TopicCatalog::load_dir(dir).map_err(TopicsError::Load)?;
            let version = match ts_xml_version_of(dir) {
                Some(v) => format!("ts_xml {v}"),
                None => "ts_xml (version not recorded)".to_string(),
            };
            Ok(LoadedCatalog { catalog, source: format!("{version} from {}", dir.display()), problems })
        }
        None => Ok(LoadedCatalog {
            catalog: TopicCatalog::builtin(),
            source: format!("built-in ts_xml {BUILTIN_TS_XML_VERSION}"),
            problems: Vec::new(),
        }),
    }
}

/// The catalog of a run, logged: `xml_dir`'s or the built-in one and, reading from Kafka, the
/// served components' topics from their writer schemas in the registry (what the CSCs really
/// publish; ts_xml keeps what schemas lack).
pub fn for_run(xml_dir: Option<&Path>, components: &[ComponentName], kafka: bool) -> Result<TopicCatalog, TopicsError> {
    let loaded = load(xml_dir)?;
    for e in &loaded.problems {
        warn!("topic catalog: {e}");
    }
    let mut catalog = loaded.catalog;
    info!(catalog = %loaded.source, "topic catalog: {} ({} components)", loaded.source, catalog.len());
    if kafka {
        from_schema_registry(&mut catalog, components);
    }
    Ok(catalog)
}

/// A registry that does not answer leaves the catalog as loaded (the source reports the
/// registry later).
fn from_schema_registry(catalog: &mut TopicCatalog, components: &[ComponentName]) {
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

/// `love-host catalog [COMPONENT [TOPIC]]`: print to `out`; problems loading an `--xml-dir`
/// go to `err`. An unknown component or topic is an error naming it.
pub fn show(
    xml_dir: Option<&Path>,
    component: Option<&str>,
    topic: Option<&str>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), TopicsError> {
    let loaded = load(xml_dir)?;
    for p in &loaded.problems {
        writeln!(err, "love-host: warning: topic catalog: {p}")?;
    }
    let cat = &loaded.catalog;
    let Some(name) = component else {
        return show_components(&loaded, out);
    };
    let Some(comp) = cat.component(name) else {
        let hint = cat
            .names()
            .into_iter()
            .find(|n| n.eq_ignore_ascii_case(name))
            .map(|n| format!(" (did you mean {n}?)"))
            .unwrap_or_default();
        let (name, catalog, count) = (name.to_string(), loaded.source.clone(), cat.len());
        return Err(TopicsError::UnknownComponent { name, catalog, hint, count });
    };
    match topic {
        None => show_component(comp, &loaded.source, out),
        Some(topic) => show_topic(comp, topic, &loaded.source, out),
    }
}

/// Every component, with its topic counts.
fn show_components(loaded: &LoadedCatalog, out: &mut dyn Write) -> Result<(), TopicsError> {
    let cat = &loaded.catalog;
    writeln!(out, "topic catalog: {}, {} components", loaded.source, cat.len())?;
    let rows = cat.names().into_iter().filter_map(|n| cat.component(n)).map(|c| {
        vec![
            c.name.clone(),
            yes_no(c.indexed).to_string(),
            c.events.len().to_string(),
            c.telemetry.len().to_string(),
            c.commands.len().to_string(),
        ]
    });
    Ok(table(out, &["COMPONENT", "INDEXED", "EVENTS", "TELEMETRY", "COMMANDS"], rows.collect())?)
}

/// A component's topics and enumerations.
fn show_component(comp: &ComponentCatalog, source: &str, out: &mut dyn Write) -> Result<(), TopicsError> {
    writeln!(
        out,
        "{} ({}indexed), {}: {} events, {} telemetry topics, {} commands",
        comp.name,
        if comp.indexed { "" } else { "not " },
        source,
        comp.events.len(),
        comp.telemetry.len(),
        comp.commands.len()
    )?;
    let rows = kinds(comp)
        .into_iter()
        .flat_map(|(kind, topics)| topics.iter().map(move |t| (kind, t)))
        .map(|(kind, t)| vec![kind.to_string(), t.name.clone(), t.fields.len().to_string()])
        .collect();
    table(out, &["KIND", "TOPIC", "FIELDS"], rows)?;
    if !comp.enums.is_empty() {
        writeln!(out, "\nenumerations:")?;
        for e in &comp.enums {
            write_enum(out, e)?;
        }
    }
    Ok(())
}

/// A topic's fields (each kind it is, when a name is both an event and a telemetry topic).
fn show_topic(comp: &ComponentCatalog, topic: &str, source: &str, out: &mut dyn Write) -> Result<(), TopicsError> {
    let found = find_topics(comp, topic);
    if found.is_empty() {
        let (component, topic, catalog) = (comp.name.clone(), topic.to_string(), source.to_string());
        return Err(TopicsError::UnknownTopic { component, topic, catalog });
    }
    for (i, (kind, t)) in found.into_iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(out, "{} {kind} {}: {} fields", comp.name, t.name, t.fields.len())?;
        let rows = t
            .fields
            .iter()
            .map(|f| {
                vec![
                    f.name.clone(),
                    f.idl_type.clone(),
                    f.count.to_string(),
                    f.units.clone(),
                    f.enumeration.clone().unwrap_or_default(),
                ]
            })
            .collect();
        table(out, &["FIELD", "TYPE", "COUNT", "UNITS", "ENUMERATION"], rows)?;
        let mut shown = Vec::new();
        for e in t.fields.iter().filter_map(|f| f.enumeration.as_deref()) {
            if shown.contains(&e) {
                continue;
            }
            shown.push(e);
            if let Some(info) = comp.enumeration(e) {
                write_enum(out, info)?;
            }
        }
    }
    Ok(())
}

fn write_enum(out: &mut dyn Write, e: &EnumInfo) -> std::io::Result<()> {
    let values: Vec<String> = e.values.iter().map(|(v, n)| format!("{v} {n}")).collect();
    writeln!(out, "{}: {}", e.name, values.join(", "))
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn kinds(comp: &ComponentCatalog) -> [(&'static str, &Vec<TopicInfo>); 3] {
    [("event", &comp.events), ("telemetry", &comp.telemetry), ("command", &comp.commands)]
}

/// The topics named `name` (of every kind), or of one kind with the original's prefixes
/// (`evt_`, `tel_`, `cmd_`) or ts_xml's (`logevent_`, `command_`).
fn find_topics<'a>(comp: &'a ComponentCatalog, name: &str) -> Vec<(&'static str, &'a TopicInfo)> {
    let (only, bare) = [
        ("evt_", "event"),
        ("logevent_", "event"),
        ("tel_", "telemetry"),
        ("cmd_", "command"),
        ("command_", "command"),
    ]
    .into_iter()
    .find_map(|(prefix, kind)| name.strip_prefix(prefix).map(|rest| (Some(kind), rest)))
    .unwrap_or((None, name));
    let mut found = Vec::new();
    for (kind, topics) in kinds(comp) {
        if only.is_some_and(|k| k != kind) {
            continue;
        }
        // An exact name first: a topic may itself start with a prefix-like word.
        if let Some(t) = topics.iter().find(|t| t.name == name).or_else(|| topics.iter().find(|t| t.name == bare)) {
            found.push((kind, t));
        }
    }
    found
}

/// Left-aligned columns, numbers right-aligned.
fn table(out: &mut dyn Write, header: &[&str], rows: Vec<Vec<String>>) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let numeric: Vec<bool> =
        (0..header.len()).map(|i| !rows.is_empty() && rows.iter().all(|r| r[i].parse::<u64>().is_ok())).collect();
    let mut line = |cells: Vec<&str>| -> std::io::Result<()> {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(c.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            if numeric[i] {
                s.extend(std::iter::repeat_n(' ', pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if i + 1 < cells.len() {
                    s.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(header.to_vec())?;
    for r in &rows {
        line(r.iter().map(String::as_str).collect())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(component: Option<&str>, topic: Option<&str>) -> anyhow::Result<String> {
        let mut out = Vec::new();
        let mut err = Vec::new();
        show(None, component, topic, &mut out, &mut err)?;
        assert!(err.is_empty());
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn lists_every_component() {
        let text = run(None, None).unwrap();
        let first = text.lines().next().unwrap();
        assert!(first.starts_with(&format!("topic catalog: built-in ts_xml {BUILTIN_TS_XML_VERSION}")), "{first}");
        let rows: Vec<&str> = text.lines().skip(2).collect();
        assert_eq!(rows.len(), TopicCatalog::builtin().len());
        let mount = rows.iter().find(|r| r.starts_with("MTMount ")).expect("MTMount row");
        assert!(mount.split_whitespace().nth(1) == Some("no"), "{mount}");
        let sq = rows.iter().find(|r| r.starts_with("ScriptQueue ")).expect("ScriptQueue row");
        assert!(sq.split_whitespace().nth(1) == Some("yes"), "{sq}");
    }

    #[test]
    fn lists_a_components_topics_with_their_kind() {
        let text = run(Some("MTM1M3"), None).unwrap();
        let cat = TopicCatalog::builtin();
        let m1m3 = cat.component("MTM1M3").unwrap();
        let topics = m1m3.events.len() + m1m3.telemetry.len() + m1m3.commands.len();
        assert_eq!(text.lines().take_while(|l| !l.is_empty()).count(), 2 + topics);
        let row = |kind: &str, topic: &str| {
            text.lines().any(|l| l.split_whitespace().take(2).eq([kind, topic].iter().copied()))
        };
        assert!(row("telemetry", "forceActuatorData"), "{text}");
        assert!(row("event", "heartbeat"), "{text}");
        assert!(row("command", "enable"), "{text}");
        // the component's enumerations follow its topics
        let text = run(Some("ATDome"), None).unwrap();
        assert!(text.lines().any(|l| l == "AzimuthState: 1 NOTINMOTION, 2 MOVINGCW, 3 MOVINGCCW"), "{text}");
    }

    #[test]
    fn lists_a_topics_fields_with_units() {
        let text = run(Some("ATDome"), Some("position")).unwrap();
        assert!(text.starts_with("ATDome telemetry position:"), "{text}");
        let az = text.lines().find(|l| l.starts_with("azimuthPosition ")).expect("azimuthPosition row");
        assert_eq!(az.split_whitespace().collect::<Vec<_>>(), ["azimuthPosition", "double", "1", "deg"]);
        // arrays show their length, enumerations their values
        let text = run(Some("MTHexapod"), Some("tel_actuators")).unwrap();
        let row = text.lines().find(|l| l.starts_with("calibrated ")).expect("calibrated row");
        assert_eq!(row.split_whitespace().take(3).collect::<Vec<_>>(), ["calibrated", "double", "6"]);
        let text = run(Some("DIMM"), Some("sky")).unwrap();
        let row = text.lines().find(|l| l.starts_with("status ")).expect("status row");
        assert_eq!(row.split_whitespace().last(), Some("status"), "{text}");
        assert!(text.lines().any(|l| l == "status: 0 CLEAR, 1 LIGHTCOVERAGE, 2 CLOUDY, 3 RAIN, 4 SNOW"), "{text}");
    }

    #[test]
    fn a_name_of_two_kinds_shows_both_unless_prefixed() {
        let text = run(Some("Test"), Some("scalars")).unwrap();
        assert!(text.contains("Test event scalars:") && text.contains("Test telemetry scalars:"), "{text}");
        let text = run(Some("Test"), Some("tel_scalars")).unwrap();
        assert!(!text.contains("Test event scalars:") && text.contains("Test telemetry scalars:"), "{text}");
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        let e = run(Some("NoSuchCsc"), None).unwrap_err().to_string();
        assert!(e.contains("\"NoSuchCsc\"") && e.contains("built-in ts_xml"), "{e}");
        let e = run(Some("atdome"), None).unwrap_err().to_string();
        assert!(e.contains("did you mean ATDome?"), "{e}");
        let e = run(Some("ATDome"), Some("nothing")).unwrap_err().to_string();
        assert!(e.contains("ATDome has no topic \"nothing\""), "{e}");
        let e = run(Some("ATDome"), Some("tel_azimuthState")).unwrap_err().to_string();
        assert!(e.contains("\"tel_azimuthState\""), "{e}");
    }

    #[test]
    fn xml_dir_is_read_and_named() {
        let mut out = Vec::new();
        let e = show(Some(Path::new("/nonexistent/ts_xml")), None, None, &mut out, &mut Vec::new()).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/ts_xml"), "{e:#}");
        let dir = std::env::temp_dir().join(format!("love-host-topics-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("Tiny")).unwrap();
        std::fs::write(
            dir.join("SALSubsystems.xml"),
            "<SALSubsystemSet><SALSubsystem><Name>Tiny</Name><IndexEnumeration>no</IndexEnumeration></SALSubsystem></SALSubsystemSet>",
        )
        .unwrap();
        std::fs::write(dir.join("SALGenerics.xml"), "<SALObjects></SALObjects>").unwrap();
        std::fs::write(
            dir.join("Tiny/Tiny_Telemetry.xml"),
            "<SALTelemetrySet><SALTelemetry><EFDB_Topic>Tiny_t</EFDB_Topic><item><EFDB_Name>x</EFDB_Name><IDL_Type>float</IDL_Type><Units>m</Units></item></SALTelemetry></SALTelemetrySet>",
        )
        .unwrap();
        show(Some(&dir), None, None, &mut out, &mut Vec::new()).unwrap();
        let text = String::from_utf8(std::mem::take(&mut out)).unwrap();
        assert!(text.contains(&format!("from {}, 1 components", dir.display())), "{text}");
        show(Some(&dir), Some("Tiny"), Some("t"), &mut out, &mut Vec::new()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.lines().any(|l| l.split_whitespace().eq(["x", "float", "1", "m"])), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
