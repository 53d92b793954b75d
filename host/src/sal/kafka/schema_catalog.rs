//! The topic catalog from the writer schemas in the registry.
//!
//! ts_xml's `make_avro_schema` puts every field of a topic in its Avro schema, in order, with
//! its type, its array length (the default's length), `units` and `description`. What a CSC
//! really publishes is therefore in the registry, whatever ts_xml version the host was built
//! with: each topic of a served component that has a schema gets its catalog entry from the
//! latest schema of its subject (`lsst.<sub>.<Component>.<sal_name>-value`). ts_xml (built in or
//! `--xml-dir`) still gives what schemas lack: the enumerations, and the topics no CSC has
//! registered yet.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use love_plugin_api::catalog::{ComponentCatalog, FieldInfo, TopicInfo};
use serde_json::Value as Json;

use super::{KafkaConfig, KafkaError, RegistryClient};
use crate::sal::catalog::TopicCatalog;

/// Schemas fetched at once.
const CONCURRENT_FETCHES: usize = 16;

/// What [`enrich`] did, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SchemaCatalogReport {
    /// Topics whose entry now comes from the registry.
    pub topics: usize,
    /// Components the registry knows (at least one schema).
    pub components: Vec<String>,
    /// Schemas that could not be read (subject: why); their topics keep the ts_xml entry.
    pub problems: Vec<String>,
}

/// One topic of a schema: (kind, name without prefix). `None` for `ackcmd`.
fn classify(sal_name: &str) -> Option<(&'static str, &str)> {
    if sal_name == "ackcmd" {
        None
    } else if let Some(n) = sal_name.strip_prefix("logevent_") {
        Some(("event", n))
    } else if let Some(n) = sal_name.strip_prefix("command_") {
        Some(("command", n))
    } else {
        Some(("telemetry", sal_name))
    }
}

/// The IDL type recorded for an Avro primitive (the catalog's types are ts_xml's names).
fn idl_type_of_avro(avro: &str) -> Option<&'static str> {
    Some(match avro {
        "boolean" => "boolean",
        "int" => "int",
        "long" => "long long",
        "float" => "float",
        "double" => "double",
        "string" => "string",
        _ => return None,
    })
}

/// The (IDL type, count) of an Avro field type: a primitive, an array of one, or a union with
/// `null`.
fn field_type(ty: &Json, default: Option<&Json>) -> Option<(&'static str, Option<u32>)> {
    match ty {
        Json::String(p) => Some((idl_type_of_avro(p)?, Some(1))),
        Json::Array(union) => union.iter().filter(|t| *t != "null").find_map(|t| field_type(t, default)),
        Json::Object(o) => match o.get("type").and_then(Json::as_str) {
            Some("array") => {
                let (idl, _) = field_type(o.get("items")?, None)?;
                let count = default.and_then(Json::as_array).map(|d| d.len() as u32).filter(|n| *n > 0);
                Some((idl, count))
            }
            Some(p) => Some((idl_type_of_avro(p)?, Some(1))),
            None => None,
        },
        _ => None,
    }
}

/// A topic's entry from its writer schema; fields ts_xml knows keep their enumeration (and
/// their array length, when the schema carries no default to read it from).
pub fn topic_from_schema(name: &str, schema: &Json, known: Option<&TopicInfo>) -> Result<TopicInfo, String> {
    let fields = schema.get("fields").and_then(Json::as_array).ok_or("not an Avro record schema")?;
    let mut out = Vec::with_capacity(fields.len());
    for f in fields {
        let Some(fname) = f.get("name").and_then(Json::as_str) else { return Err("a field has no name".into()) };
        if fname == "salIndex" || fname.starts_with("private_") {
            continue;
        }
        let ty = f.get("type").ok_or_else(|| format!("field {fname} has no type"))?;
        let (idl, count) = field_type(ty, f.get("default"))
            .ok_or_else(|| format!("field {fname}: type {ty} is not one salobj writes"))?;
        let xml = known.and_then(|t| t.fields.iter().find(|k| k.name == fname));
        let count = count.or(xml.map(|k| k.count)).unwrap_or(2);
        let text = |key: &str| f.get(key).and_then(Json::as_str).map(str::to_string);
        out.push(FieldInfo {
            name: fname.to_string(),
            idl_type: idl.to_string(),
            count,
            units: text("units").filter(|u| !u.is_empty()).unwrap_or_else(|| "unitless".into()),
            description: text("description").unwrap_or_default(),
            enumeration: xml.and_then(|k| k.enumeration.clone()),
        });
    }
    Ok(TopicInfo { name: name.to_string(), fields: out, rate_hz: known.and_then(|t| t.rate_hz) })
}

/// `component`'s catalog with the topics of `schemas` ((sal_name, schema) pairs) taken from
/// them; `known` is ts_xml's entry, if any.
pub fn component_from_schemas(
    component: &str,
    schemas: &[(String, Json)],
    known: Option<&ComponentCatalog>,
) -> (ComponentCatalog, Vec<String>) {
    let mut c =
        known.cloned().unwrap_or_else(|| ComponentCatalog { name: component.to_string(), ..Default::default() });
    let mut problems = Vec::new();
    let mut indexed = None;
    for (sal, schema) in schemas {
        let Some((kind, name)) = classify(sal) else { continue };
        let list = match kind {
            "event" => &mut c.events,
            "command" => &mut c.commands,
            _ => &mut c.telemetry,
        };
        let pos = list.iter().position(|t| t.name == name);
        match topic_from_schema(name, schema, pos.map(|p| &list[p])) {
            Ok(t) => {
                if let Some(fields) = schema.get("fields").and_then(Json::as_array) {
                    indexed = Some(indexed.unwrap_or(false) || fields.iter().any(|f| f["name"] == "salIndex"));
                }
                match pos {
                    Some(p) => list[p] = t,
                    None => list.push(t),
                }
            }
            Err(e) => problems.push(format!("{component} {sal}: {e}")),
        }
    }
    if known.is_none() {
        c.indexed = indexed.unwrap_or(false);
    }
    (c, problems)
}

/// Replace the catalog entries of `components`' topics by their writer schemas in the registry.
/// A registry that cannot be reached leaves the catalog as it is (the report says why).
pub async fn enrich(
    catalog: &mut TopicCatalog,
    registry: &RegistryClient,
    config: &KafkaConfig,
    components: &[String],
) -> Result<SchemaCatalogReport, KafkaError> {
    let subjects = registry.subjects().await?;
    let mut wanted: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    for comp in components {
        let prefix = format!("lsst.{}.{comp}.", config.topic_subname);
        for s in &subjects {
            if let Some(sal) = s.strip_prefix(&prefix).and_then(|r| r.strip_suffix("-value")) {
                wanted.entry(comp.as_str()).or_default().push((sal.to_string(), s.clone()));
            }
        }
    }
    let jobs: Vec<(&str, String, String)> =
        wanted.iter().flat_map(|(c, v)| v.iter().map(move |(sal, s)| (*c, sal.clone(), s.clone()))).collect();
    let fetched: Vec<(&str, String, Result<Option<(i32, String)>, KafkaError>)> = stream::iter(jobs)
        .map(|(c, sal, subject)| async move { (c, sal, registry.latest(&subject).await) })
        .buffer_unordered(CONCURRENT_FETCHES)
        .collect()
        .await;
    let mut report = SchemaCatalogReport::default();
    let mut by_comp: BTreeMap<&str, Vec<(String, Json)>> = BTreeMap::new();
    for (c, sal, r) in fetched {
        match r {
            Ok(Some((_, text))) => match serde_json::from_str::<Json>(&text) {
                Ok(schema) => by_comp.entry(c).or_default().push((sal, schema)),
                Err(e) => report.problems.push(format!("{c} {sal}: the schema is not JSON: {e}")),
            },
            Ok(None) => {}
            Err(e) => report.problems.push(format!("{c} {sal}: {e}")),
        }
    }
    for (comp, mut schemas) in by_comp {
        schemas.sort_by(|a, b| a.0.cmp(&b.0));
        let (entry, problems) = component_from_schemas(comp, &schemas, catalog.component(comp));
        report.topics += schemas.len() - problems.len();
        report.problems.extend(problems);
        report.components.push(comp.to_string());
        catalog.insert(entry);
    }
    Ok(report)
}

/// [`enrich`] before the host's runtime starts (the plan is made before it), bounded in time.
pub fn enrich_at_start(
    catalog: &mut TopicCatalog,
    config: &KafkaConfig,
    components: &[String],
    bound: Duration,
) -> Result<SchemaCatalogReport, KafkaError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| KafkaError::Registry(format!("cannot start a runtime for the schema catalog: {e}")))?;
    rt.block_on(async {
        let registry = RegistryClient::new(&config.schema_registry_url)?;
        tokio::time::timeout(bound, enrich(catalog, &registry, config, components))
            .await
            .map_err(|_| KafkaError::RegistryUnavailable(format!("no answer within {} s", bound.as_secs())))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sal::kafka::avro::topic_schema;

    #[test]
    fn a_schema_written_as_salobj_does_gives_the_fields_with_units_types_and_lengths() {
        let fields = vec![
            FieldInfo::new("azimuthPosition", "float", 1, "deg"),
            FieldInfo::new("dropoutDoorOpen", "boolean", 1, "unitless"),
            FieldInfo::new("temperatures", "double", 12, "deg_C"),
            FieldInfo::new("counts", "long long", 3, "count"),
            FieldInfo::new("name", "string", 1, "unitless"),
        ];
        let schema = topic_schema("Flux", "position", true, &fields);
        let t = topic_from_schema("position", &schema, None).unwrap();
        let got: Vec<(&str, &str, u32, &str)> =
            t.fields.iter().map(|f| (f.name.as_str(), f.idl_type.as_str(), f.count, f.units.as_str())).collect();
        assert_eq!(
            got,
            [
                ("azimuthPosition", "float", 1, "deg"),
                ("dropoutDoorOpen", "boolean", 1, "unitless"),
                ("temperatures", "double", 12, "deg_C"),
                ("counts", "long long", 3, "count"),
                ("name", "string", 1, "unitless"),
            ]
        );
        assert_eq!(t.fields[2].data_type(), "Array<Float>");
        assert_eq!(t.fields[1].data_type(), "Int");
    }

    #[test]
    fn the_schema_wins_over_ts_xml_and_ts_xml_keeps_the_enumerations_and_unregistered_topics() {
        let mut state = FieldInfo::new("summaryState", "int", 1, "unitless");
        state.enumeration = Some("SummaryState".into());
        let known = ComponentCatalog {
            name: "Flux".into(),
            indexed: false,
            events: vec![
                TopicInfo { name: "summaryState".into(), fields: vec![state], rate_hz: None },
                TopicInfo { name: "heartbeat".into(), fields: vec![], rate_hz: None },
            ],
            telemetry: vec![TopicInfo {
                name: "position".into(),
                fields: vec![FieldInfo::new("old", "double", 1, "m")],
                rate_hz: Some(1.0),
            }],
            ..Default::default()
        };
        let summary = topic_schema(
            "Flux",
            "logevent_summaryState",
            false,
            &[FieldInfo::new("summaryState", "int", 1, "unitless")],
        );
        let position = topic_schema("Flux", "position", false, &[FieldInfo::new("azimuth", "double", 1, "deg")]);
        let extra = topic_schema("Flux", "logevent_newEvent", false, &[FieldInfo::new("x", "double", 1, "mm")]);
        let schemas = vec![
            ("logevent_newEvent".to_string(), extra),
            ("logevent_summaryState".to_string(), summary),
            ("position".to_string(), position),
            ("ackcmd".to_string(), json_ack()),
        ];
        let (c, problems) = component_from_schemas("Flux", &schemas, Some(&known));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(c.telemetry[0].fields[0].name, "azimuth", "the schema's fields replace ts_xml's");
        assert_eq!(c.telemetry[0].fields[0].units, "deg");
        assert_eq!(c.telemetry[0].rate_hz, Some(1.0));
        let names: Vec<&str> = c.events.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["summaryState", "heartbeat", "newEvent"], "ts_xml's order first, unregistered topics kept");
        assert_eq!(c.events[0].fields[0].enumeration.as_deref(), Some("SummaryState"));
        assert_eq!(c.events[2].fields[0].units, "mm");
    }

    #[test]
    fn a_component_no_catalog_knows_is_built_from_its_schemas_alone() {
        let pos = topic_schema("Flux", "position", true, &[FieldInfo::new("azimuth", "double", 1, "deg")]);
        let (c, problems) = component_from_schemas("Flux", &[("position".into(), pos)], None);
        assert!(problems.is_empty());
        assert!(c.indexed, "salIndex in the schema: indexed");
        assert_eq!(c.telemetry[0].fields[0].units, "deg");
        let bad = serde_json::json!({"type": "record", "name": "x", "fields": [{"name": "m", "type": {"type": "map", "values": "int"}}]});
        let (_, problems) = component_from_schemas("Flux", &[("logevent_bad".into(), bad)], None);
        assert!(problems[0].contains("Flux logevent_bad") && problems[0].contains("field m"), "{problems:?}");
    }

    fn json_ack() -> Json {
        topic_schema("Flux", "ackcmd", false, &crate::sal::kafka::avro::ackcmd_topic().fields)
    }
}
