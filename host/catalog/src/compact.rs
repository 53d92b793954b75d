//! The compact form of a catalog that is compiled into the binary: one line per component,
//! topic, field and enumeration, tab-separated, then zlib-compressed.
//!
//! ```text
//! love-catalog 1 <TAB> ts_xml <TAB> 28.0.1          header: format revision, ts_xml version
//! C <TAB> ATDome <TAB> 0                            a component; 1 when indexed
//! E <TAB> azimuthState                              an event (T telemetry, M command) of it
//! F <TAB> state <TAB> long <TAB> 1 <TAB> unitless <TAB> AzimuthState
//!                                                   a field of that topic: name, IDL type,
//!                                                   count, units, enumeration (or empty)
//! N <TAB> AzimuthState <TAB> 1 <TAB> NOTINMOTION <TAB> 2 <TAB> MOVINGCW ...
//!                                                   an enumeration of the component
//! ```
//!
//! Topics and fields keep their order. Facts only: field descriptions are not written.
//! A line format rather than JSON because it compresses better (no repeated keys) and decodes
//! with no parser; tabs and newlines never occur in ts_xml names, types or units (the encoder
//! refuses them rather than writing a catalog that would decode differently).

use std::io::{Read, Write};

use love_plugin_api::catalog::{ComponentCatalog, EnumInfo, FieldInfo, TopicInfo};

use crate::TopicCatalog;

/// The header's first word and the format revision this code reads and writes.
const MAGIC: &str = "love-catalog 1";

/// A catalog the compact form cannot hold, or compact data that is not well-formed.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// A value that cannot be written (names the component, topic and field).
    #[error("cannot encode {what}: {why}")]
    Encode {
        /// Where: `ATDome.position.azimuthPosition`.
        what: String,
        /// Why.
        why: String,
    },
    /// Malformed data (1-based line of the uncompressed text).
    #[error("compact catalog, line {line}: {message}")]
    Decode {
        /// The line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Compression or decompression failed.
    #[error("compact catalog: {0}")]
    Zlib(#[from] std::io::Error),
}

/// Encode `catalog` (from ts_xml `ts_xml_version`) as compressed bytes.
pub fn encode(catalog: &TopicCatalog, ts_xml_version: &str) -> Result<Vec<u8>, CompactError> {
    let text = encode_text(catalog, ts_xml_version)?;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(text.as_bytes())?;
    Ok(z.finish()?)
}

/// Decode compressed bytes: the catalog and the ts_xml version it was generated from.
pub fn decode(bytes: &[u8]) -> Result<(TopicCatalog, String), CompactError> {
    let mut text = String::new();
    flate2::read::ZlibDecoder::new(bytes).read_to_string(&mut text)?;
    decode_text(&text)
}

/// The uncompressed text form.
pub fn encode_text(catalog: &TopicCatalog, ts_xml_version: &str) -> Result<String, CompactError> {
    let mut out = String::new();
    check("the ts_xml version", ts_xml_version)?;
    line(&mut out, &[MAGIC, "ts_xml", ts_xml_version]);
    for name in catalog.names() {
        let comp = catalog.component(name).expect("listed");
        check(name, name)?;
        line(&mut out, &["C", name, if comp.indexed { "1" } else { "0" }]);
        for (tag, topics) in [("E", &comp.events), ("T", &comp.telemetry), ("M", &comp.commands)] {
            for topic in topics {
                encode_topic(&mut out, name, tag, topic)?;
            }
        }
        for e in &comp.enums {
            let what = format!("{name} enumeration {}", e.name);
            check(&what, &e.name)?;
            let values: Vec<String> = e.values.iter().map(|(v, _)| v.to_string()).collect();
            let mut cells = vec!["N", e.name.as_str()];
            for ((_, label), v) in e.values.iter().zip(&values) {
                check(&what, label)?;
                cells.push(v);
                cells.push(label);
            }
            line(&mut out, &cells);
        }
    }
    Ok(out)
}

fn encode_topic(out: &mut String, comp: &str, tag: &str, topic: &TopicInfo) -> Result<(), CompactError> {
    let what = format!("{comp}.{}", topic.name);
    check(&what, &topic.name)?;
    if topic.rate_hz.is_some() {
        return Err(CompactError::Encode { what, why: "a publication rate is not part of the compact form".into() });
    }
    line(out, &[tag, &topic.name]);
    for f in &topic.fields {
        let what = format!("{what}.{}", f.name);
        for v in [&f.name, &f.idl_type, &f.units] {
            check(&what, v)?;
        }
        let enumeration = f.enumeration.as_deref().unwrap_or("");
        check(&what, enumeration)?;
        line(out, &["F", &f.name, &f.idl_type, &f.count.to_string(), &f.units, enumeration]);
    }
    Ok(())
}

fn check(what: &str, value: &str) -> Result<(), CompactError> {
    if value.contains(['\t', '\n', '\r']) {
        return Err(CompactError::Encode {
            what: what.to_string(),
            why: format!("{value:?} holds a tab or a line break"),
        });
    }
    Ok(())
}

fn line(out: &mut String, cells: &[&str]) {
    out.push_str(&cells.join("\t"));
    out.push('\n');
}

/// Decode the uncompressed text form.
pub fn decode_text(text: &str) -> Result<(TopicCatalog, String), CompactError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let bad = |line: usize, message: String| CompactError::Decode { line, message };
    let version = match lines.next().map(|(n, l)| (n, l.split('\t').collect::<Vec<_>>())) {
        Some((_, h)) if h.len() == 3 && h[0] == MAGIC && h[1] == "ts_xml" => h[2].to_string(),
        _ => return Err(bad(1, format!("not a compact catalog (expected a `{MAGIC}` header)"))),
    };
    let mut catalog = TopicCatalog::new();
    let mut comp: Option<ComponentCatalog> = None;
    // Which list of `comp` the last topic line went to (0 events, 1 telemetry, 2 commands).
    let mut list: Option<usize> = None;
    for (n, l) in lines {
        let cells: Vec<&str> = l.split('\t').collect();
        match (cells[0], cells.len()) {
            ("C", 3) => {
                if let Some(c) = comp.take() {
                    catalog.insert(c);
                }
                let indexed = match cells[2] {
                    "0" => false,
                    "1" => true,
                    other => return Err(bad(n, format!("component {}: indexed is {other:?}, not 0 or 1", cells[1]))),
                };
                comp = Some(ComponentCatalog { name: cells[1].to_string(), indexed, ..Default::default() });
                list = None;
            }
            (tag @ ("E" | "T" | "M"), 2) => {
                let c = comp.as_mut().ok_or_else(|| bad(n, "a topic before any component".into()))?;
                let i = ["E", "T", "M"].iter().position(|t| *t == tag).expect("matched");
                let topic = TopicInfo { name: cells[1].to_string(), fields: Vec::new(), rate_hz: None };
                [&mut c.events, &mut c.telemetry, &mut c.commands][i].push(topic);
                list = Some(i);
            }
            ("F", 6) => {
                let c = comp.as_mut().ok_or_else(|| bad(n, "a field before any component".into()))?;
                let i = list.ok_or_else(|| bad(n, format!("{}: a field before any topic", c.name)))?;
                let topic = [&mut c.events, &mut c.telemetry, &mut c.commands][i].last_mut().expect("pushed");
                let count = cells[3]
                    .parse::<u32>()
                    .map_err(|_| bad(n, format!("{}.{}.{}: bad count {:?}", c.name, topic.name, cells[1], cells[3])))?;
                let mut field = FieldInfo::new(cells[1], cells[2], count, cells[4]);
                field.enumeration = Some(cells[5].to_string()).filter(|e| !e.is_empty());
                topic.fields.push(field);
            }
            ("N", len) if len >= 2 && len % 2 == 0 => {
                let c = comp.as_mut().ok_or_else(|| bad(n, "an enumeration before any component".into()))?;
                let mut e = EnumInfo { name: cells[1].to_string(), values: Vec::new() };
                for pair in cells[2..].chunks(2) {
                    let v = pair[0]
                        .parse::<i64>()
                        .map_err(|_| bad(n, format!("{} enumeration {}: bad value {:?}", c.name, e.name, pair[0])))?;
                    e.values.push((v, pair[1].to_string()));
                }
                c.enums.push(e);
            }
            (tag, len) => return Err(bad(n, format!("unexpected line (tag {tag:?}, {len} cells)"))),
        }
    }
    if let Some(c) = comp.take() {
        catalog.insert(c);
    }
    Ok((catalog, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TopicCatalog {
        let mut cat = TopicCatalog::new();
        let mut field = FieldInfo::new("state", "long", 1, "unitless");
        field.enumeration = Some("AzimuthState".into());
        cat.insert(ComponentCatalog {
            name: "ATDome".into(),
            indexed: false,
            events: vec![
                TopicInfo { name: "azimuthState".into(), fields: vec![field], rate_hz: None },
                TopicInfo { name: "heartbeat".into(), fields: vec![], rate_hz: None },
            ],
            telemetry: vec![TopicInfo {
                name: "position".into(),
                fields: vec![
                    FieldInfo::new("azimuthPosition", "double", 1, "deg"),
                    FieldInfo::new("encoders", "long long", 6, "arcsec / s"),
                ],
                rate_hz: None,
            }],
            commands: vec![TopicInfo { name: "moveAzimuth".into(), fields: vec![], rate_hz: None }],
            enums: vec![EnumInfo { name: "AzimuthState".into(), values: vec![(-1, "A".into()), (2, "B C".into())] }],
        });
        cat.insert(ComponentCatalog { name: "Script".into(), indexed: true, ..Default::default() });
        cat
    }

    #[test]
    fn round_trip() {
        let cat = sample();
        let bytes = encode(&cat, "28.0.1").unwrap();
        let (back, version) = decode(&bytes).unwrap();
        assert_eq!(version, "28.0.1");
        assert_eq!(back, cat);
    }

    #[test]
    fn descriptions_are_not_written() {
        let mut cat = sample();
        let mut comp = cat.component("ATDome").unwrap().clone();
        comp.telemetry[0].fields[0].description = "Azimuth position.".into();
        cat.insert(comp);
        let text = encode_text(&cat, "1").unwrap();
        assert!(!text.contains("Azimuth position."), "{text}");
        assert_eq!(decode_text(&text).unwrap().0, cat.without_descriptions());
    }

    #[test]
    fn refuses_what_it_cannot_hold() {
        let mut cat = sample();
        let mut comp = cat.component("ATDome").unwrap().clone();
        comp.telemetry[0].fields[1].units = "m\ts".into();
        cat.insert(comp);
        let err = encode(&cat, "1").unwrap_err().to_string();
        assert!(err.contains("ATDome.position.encoders"), "{err}");
    }

    #[test]
    fn malformed_text_names_the_line() {
        let err = decode_text("love-catalog 1\tts_xml\t1\nC\tX\t0\nF\ta\tlong\t1\tm\t\n").unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("before any topic"), "{err}");
        let err = decode_text("C\tX\t0\n").unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("header"), "{err}");
        let err = decode_text("love-catalog 1\tts_xml\t1\nC\tX\t0\nE\tt\nF\ta\tlong\tmany\tm\t\n").unwrap_err();
        assert!(err.to_string().contains("X.t.a: bad count"), "{err}");
        assert!(decode(b"not zlib").is_err());
    }
}
