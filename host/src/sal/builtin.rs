//! The built-in topic catalog: a few components written out in code, so that the simulator
//! runs on a fresh clone without a ts_xml checkout. Each topic here is a subset of the real
//! component's topics with the real fields (a test checks them against ts_xml so they never
//! drift); `--xml-dir` gives the full set.

use love_plugin_api::catalog::{ComponentCatalog, EnumInfo, FieldInfo, TopicInfo};

use super::catalog::TopicCatalog;

/// (name, IDL type, count, units).
type F = (&'static str, &'static str, u32, &'static str);

const U: &str = "unitless";
const S: &str = "second";

fn topic(name: &str, fields: &[F]) -> TopicInfo {
    TopicInfo {
        name: name.to_string(),
        fields: fields.iter().map(|(n, t, c, u)| FieldInfo::new(n, t, *c, u)).collect(),
        rate_hz: None,
    }
}

fn enumeration(name: &str, values: &[(i64, &str)]) -> EnumInfo {
    EnumInfo { name: name.to_string(), values: values.iter().map(|(v, n)| (*v, n.to_string())).collect() }
}

/// Which generic topics a component adds (`AddedGenerics`).
#[derive(Clone, Copy)]
struct Generics {
    csc: bool,
    configurable: bool,
    /// `command_setLogLevel` (part of `csc`, or named explicitly).
    set_log_level: bool,
    /// `logevent_largeFileObjectAvailable` named explicitly.
    large_file: bool,
}

/// Append the generic topics in SALGenerics.xml order, after the component's own.
fn add_generics(c: &mut ComponentCatalog, g: Generics) {
    if g.csc {
        for name in ["enable", "disable", "standby", "exitControl"] {
            c.commands.push(topic(name, &[]));
        }
        c.commands.push(topic("start", &[("configurationOverride", "string", 1, U)]));
    }
    if g.csc || g.set_log_level {
        c.commands.push(topic("setLogLevel", &[("level", "int", 1, U), ("subsystem", "string", 1, U)]));
    }
    if g.configurable {
        c.events.push(topic(
            "configurationApplied",
            &[
                ("configurations", "string", 1, U),
                ("version", "string", 1, U),
                ("url", "string", 1, U),
                ("schemaVersion", "string", 1, U),
                ("otherInfo", "string", 1, U),
            ],
        ));
        c.events.push(topic(
            "configurationsAvailable",
            &[
                ("overrides", "string", 1, U),
                ("version", "string", 1, U),
                ("url", "string", 1, U),
                ("schemaVersion", "string", 1, U),
            ],
        ));
    }
    if g.csc {
        c.events.push(topic(
            "errorCode",
            &[("errorCode", "long", 1, U), ("errorReport", "string", 1, U), ("traceback", "string", 1, U)],
        ));
        c.events.push(topic("summaryState", &[("summaryState", "long", 1, U)]));
    }
    c.events.push(topic("logLevel", &[("level", "int", 1, U), ("subsystem", "string", 1, U)]));
    c.events.push(topic(
        "logMessage",
        &[
            ("name", "string", 1, U),
            ("level", "int", 1, U),
            ("message", "string", 1, U),
            ("traceback", "string", 1, U),
            ("filePath", "string", 1, U),
            ("functionName", "string", 1, U),
            ("lineNumber", "long", 1, U),
            ("process", "long", 1, U),
            ("timestamp", "double", 1, S),
        ],
    ));
    if g.csc {
        c.events.push(topic("simulationMode", &[("mode", "int", 1, U)]));
    }
    c.events.push(topic(
        "softwareVersions",
        &[
            ("salVersion", "string", 1, U),
            ("xmlVersion", "string", 1, U),
            ("cscVersion", "string", 1, U),
            ("subsystemVersions", "string", 1, U),
        ],
    ));
    c.events.push(topic("heartbeat", &[("heartbeat", "boolean", 1, U)]));
    if g.large_file {
        c.events.push(topic(
            "largeFileObjectAvailable",
            &[
                ("url", "string", 1, U),
                ("generator", "string", 1, U),
                ("version", "float", 1, U),
                ("byteSize", "long", 1, U),
                ("checkSum", "string", 1, U),
                ("mimeType", "string", 1, U),
                ("id", "string", 1, U),
            ],
        ));
    }
}

const CSC: Generics = Generics { csc: true, configurable: true, set_log_level: true, large_file: false };

fn component(name: &str, indexed: bool) -> ComponentCatalog {
    ComponentCatalog { name: name.to_string(), indexed, ..Default::default() }
}

fn atdome() -> ComponentCatalog {
    let mut c = component("ATDome", false);
    c.commands = vec![
        topic("moveAzimuth", &[("azimuth", "float", 1, "deg")]),
        topic("closeShutter", &[]),
        topic("openShutter", &[]),
        topic("stopMotion", &[]),
        topic("homeAzimuth", &[]),
    ];
    c.events = vec![
        topic("azimuthCommandedState", &[("commandedState", "long", 1, U), ("azimuth", "float", 1, "deg")]),
        topic(
            "azimuthState",
            &[
                ("state", "long", 1, U),
                ("homing", "boolean", 1, U),
                ("homed", "boolean", 1, U),
                ("homeSwitch", "boolean", 1, U),
            ],
        ),
        topic("dropoutDoorState", &[("state", "long", 1, U)]),
        topic("mainDoorState", &[("state", "long", 1, U)]),
        topic("azimuthInPosition", &[("inPosition", "boolean", 1, U)]),
        topic("shutterInPosition", &[("inPosition", "boolean", 1, U)]),
        topic("emergencyStop", &[("active", "boolean", 1, U)]),
    ];
    c.telemetry = vec![topic(
        "position",
        &[
            ("dropoutDoorOpeningPercentage", "float", 1, U),
            ("mainDoorOpeningPercentage", "float", 1, U),
            ("azimuthPosition", "double", 1, "deg"),
            ("azimuthEncoderPosition", "long long", 1, U),
        ],
    )];
    c.enums = vec![
        enumeration("AzimuthCommandedState", &[(1, "UNKNOWN"), (2, "GOTOPOSITION"), (3, "HOME"), (4, "STOP")]),
        enumeration("AzimuthState", &[(1, "NOTINMOTION"), (2, "MOVINGCW"), (3, "MOVINGCCW")]),
        enumeration(
            "ShutterDoorState",
            &[(1, "CLOSED"), (2, "OPENED"), (3, "PARTIALLYOPENED"), (4, "OPENING"), (5, "CLOSING")],
        ),
    ];
    add_generics(&mut c, CSC);
    c
}

fn watcher() -> ComponentCatalog {
    let mut c = component("Watcher", false);
    c.commands = vec![
        topic(
            "acknowledge",
            &[("name", "string", 1, U), ("severity", "int", 1, U), ("acknowledgedBy", "string", 1, U)],
        ),
        topic(
            "mute",
            &[
                ("name", "string", 1, U),
                ("duration", "float", 1, S),
                ("severity", "int", 1, U),
                ("mutedBy", "string", 1, U),
            ],
        ),
        topic("showAlarms", &[]),
        topic("unacknowledge", &[("name", "string", 1, U)]),
        topic("unmute", &[("name", "string", 1, U)]),
    ];
    c.events = vec![topic(
        "alarm",
        &[
            ("name", "string", 1, U),
            ("severity", "int", 1, U),
            ("reason", "string", 1, U),
            ("maxSeverity", "int", 1, U),
            ("acknowledged", "boolean", 1, U),
            ("acknowledgedBy", "string", 1, U),
            ("escalatedId", "string", 1, U),
            ("escalateTo", "string", 1, U),
            ("mutedSeverity", "long", 1, U),
            ("mutedBy", "string", 1, U),
            ("timestampSeverityOldest", "double", 1, S),
            ("timestampSeverityNewest", "double", 1, S),
            ("timestampMaxSeverity", "double", 1, S),
            ("timestampAcknowledged", "double", 1, S),
            ("timestampAutoAcknowledge", "double", 1, S),
            ("timestampAutoUnacknowledge", "double", 1, S),
            ("timestampEscalate", "double", 1, S),
            ("timestampUnmute", "double", 1, S),
        ],
    )];
    c.enums = vec![enumeration("AlarmSeverity", &[(1, "NONE"), (2, "WARNING"), (3, "SERIOUS"), (4, "CRITICAL")])];
    add_generics(&mut c, CSC);
    c
}

fn script_queue() -> ComponentCatalog {
    let mut c = component("ScriptQueue", true);
    c.commands = vec![
        topic("showAvailableScripts", &[]),
        topic("showSchema", &[("isStandard", "boolean", 1, U), ("path", "string", 1, U)]),
        topic("showQueue", &[]),
        topic("pause", &[]),
        topic("resume", &[]),
    ];
    c.events = vec![
        topic("availableScripts", &[("standard", "string", 1, U), ("external", "string", 1, U)]),
        topic(
            "configSchema",
            &[("isStandard", "boolean", 1, U), ("path", "string", 1, U), ("configSchema", "string", 1, U)],
        ),
        topic(
            "script",
            &[
                ("cmdId", "int", 1, U),
                ("scriptSalIndex", "int", 1, U),
                ("isStandard", "boolean", 1, U),
                ("path", "string", 1, U),
                ("timestampProcessStart", "double", 1, S),
                ("timestampConfigureStart", "double", 1, S),
                ("timestampConfigureEnd", "double", 1, S),
                ("timestampRunStart", "double", 1, S),
                ("timestampProcessEnd", "double", 1, S),
                ("processState", "byte", 1, U),
                ("scriptState", "byte", 1, U),
                ("blockId", "string", 1, U),
                ("scriptBlockIndex", "int", 1, U),
                ("blockSize", "int", 1, U),
                ("executionId", "string", 1, U),
            ],
        ),
        topic(
            "queue",
            &[
                ("enabled", "boolean", 1, U),
                ("running", "boolean", 1, U),
                ("currentSalIndex", "int", 1, U),
                ("length", "int", 1, U),
                ("salIndices", "int", 400, U),
                ("pastLength", "int", 1, U),
                ("pastSalIndices", "int", 400, U),
            ],
        ),
    ];
    c.enums = vec![enumeration(
        "ScriptProcessState",
        &[
            (0, "UNKNOWN"),
            (1, "LOADING"),
            (2, "CONFIGURED"),
            (3, "RUNNING"),
            (4, "DONE"),
            (5, "LOADFAILED"),
            (6, "CONFIGURE_FAILED"),
            (7, "TERMINATED"),
        ],
    )];
    add_generics(&mut c, Generics { csc: true, configurable: false, set_log_level: true, large_file: false });
    c
}

fn script() -> ComponentCatalog {
    let mut c = component("Script", true);
    c.commands = vec![
        topic(
            "configure",
            &[
                ("config", "string", 1, U),
                ("logLevel", "int", 1, U),
                ("pauseCheckpoint", "string", 1, U),
                ("stopCheckpoint", "string", 1, U),
                ("blockId", "string", 1, U),
                ("executionId", "string", 1, U),
            ],
        ),
        topic("run", &[]),
        topic("resume", &[]),
        topic("setCheckpoints", &[("pause", "string", 1, U), ("stop", "string", 1, U)]),
        topic("stop", &[]),
    ];
    c.events = vec![
        topic("checkpoints", &[("pause", "string", 1, U), ("stop", "string", 1, U)]),
        topic(
            "description",
            &[
                ("classname", "string", 1, U),
                ("description", "string", 1, U),
                ("help", "string", 1, U),
                ("remotes", "string", 1, U),
            ],
        ),
        topic(
            "metadata",
            &[
                ("coordinateSystem", "short", 1, U),
                ("position", "double", 2, "degree"),
                ("rotationSystem", "short", 1, U),
                ("cameraAngle", "double", 1, "degree"),
                ("filters", "string", 1, U),
                ("dome", "short", 1, U),
                ("duration", "double", 1, S),
                ("nimages", "int", 1, U),
                ("instrument", "string", 1, U),
                ("survey", "string", 1, U),
                ("totalCheckpoints", "int", 1, U),
            ],
        ),
        topic(
            "state",
            &[
                ("state", "byte", 1, U),
                ("reason", "string", 1, U),
                ("groupId", "string", 1, U),
                ("lastCheckpoint", "string", 1, U),
                ("numCheckpoints", "int", 1, U),
                ("blockId", "string", 1, U),
                ("dayObs", "int", 1, U),
                ("blockExecution", "int", 1, U),
                ("executionId", "string", 1, U),
            ],
        ),
    ];
    c.enums = vec![enumeration(
        "ScriptState",
        &[
            (0, "UNKNOWN"),
            (1, "UNCONFIGURED"),
            (2, "CONFIGURED"),
            (3, "RUNNING"),
            (4, "PAUSED"),
            (5, "ENDING"),
            (6, "STOPPING"),
            (7, "FAILING"),
            (8, "DONE"),
            (9, "STOPPED"),
            (10, "FAILED"),
            (11, "CONFIGURE_FAILED"),
        ],
    )];
    // AddedGenerics: command_setLogLevel, logevent_largeFileObjectAvailable.
    add_generics(&mut c, Generics { csc: false, configurable: false, set_log_level: true, large_file: true });
    c
}

fn test_component() -> ComponentCatalog {
    let mut c = component("Test", true);
    const TYPES: [(&str, &str); 10] = [
        ("boolean0", "boolean"),
        ("byte0", "byte"),
        ("short0", "short"),
        ("int0", "int"),
        ("long0", "long"),
        ("longLong0", "long long"),
        ("unsignedShort0", "unsigned short"),
        ("unsignedInt0", "unsigned int"),
        ("float0", "float"),
        ("double0", "double"),
    ];
    let scalars: Vec<F> = TYPES.iter().map(|(n, t)| (*n, *t, 1, U)).chain([("string0", "string", 1, U)]).collect();
    let arrays: Vec<F> = TYPES.iter().map(|(n, t)| (*n, *t, 5, U)).collect();
    c.commands = vec![topic("setScalars", &scalars), topic("setArrays", &arrays)];
    c.events = vec![topic("scalars", &scalars), topic("arrays", &arrays)];
    c.telemetry = vec![topic("scalars", &scalars), topic("arrays", &arrays)];
    add_generics(&mut c, CSC);
    c
}

fn mthexapod() -> ComponentCatalog {
    let mut c = component("MTHexapod", true);
    let xyzuvw: &[F] = &[
        ("x", "double", 1, "um"),
        ("y", "double", 1, "um"),
        ("z", "double", 1, "um"),
        ("u", "double", 1, "deg"),
        ("v", "double", 1, "deg"),
        ("w", "double", 1, "deg"),
    ];
    c.events = vec![
        topic("compensationMode", &[("enabled", "boolean", 1, U)]),
        topic("connected", &[("connected", "boolean", 1, U)]),
        topic(
            "controllerState",
            &[
                ("controllerState", "long", 1, U),
                ("enabledSubstate", "long", 1, U),
                ("applicationStatus", "long", 1, U),
            ],
        ),
        topic("inPosition", &[("inPosition", "boolean", 1, U)]),
        topic("interlock", &[("engaged", "boolean", 1, U)]),
        topic("uncompensatedPosition", xyzuvw),
        topic("compensatedPosition", xyzuvw),
    ];
    c.telemetry = vec![
        topic(
            "actuators",
            &[
                ("calibrated", "double", 6, "um"),
                ("raw", "double", 6, U),
                ("positionError", "double", 6, "micron"),
                ("timestamp", "double", 1, S),
            ],
        ),
        topic("application", &[("demand", "double", 6, U), ("position", "double", 6, U), ("error", "double", 6, U)]),
        topic(
            "electrical",
            &[
                ("copleyStatusWordDrive", "unsigned short", 6, U),
                ("copleyLatchingFaultStatus", "unsigned short", 6, U),
                ("copleyFaultStatus", "unsigned int", 6, U),
                ("motorCurrent", "double", 6, "A"),
                ("busVoltage", "double", 3, "V"),
            ],
        ),
    ];
    add_generics(&mut c, CSC);
    c
}

impl TopicCatalog {
    /// The built-in catalog: ATDome, Watcher, ScriptQueue, Script, Test and MTHexapod, each with
    /// its generic topics and a few of its real topics.
    pub fn builtin() -> TopicCatalog {
        let mut cat = TopicCatalog::new();
        for c in [atdome(), watcher(), script_queue(), script(), test_component(), mthexapod()] {
            cat.insert(c);
        }
        cat
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sal::catalog::test_xml_dir;

    fn same_fields(what: &str, a: &TopicInfo, b: &TopicInfo) {
        let key = |t: &TopicInfo| -> Vec<(String, String, u32, String)> {
            t.fields.iter().map(|f| (f.name.clone(), f.idl_type.clone(), f.count, f.units.clone())).collect()
        };
        assert_eq!(key(a), key(b), "{what}: built-in fields differ from ts_xml");
    }

    #[test]
    fn builtin_matches_ts_xml() {
        let (xml, errors) = TopicCatalog::load_dir(&test_xml_dir()).unwrap();
        assert!(errors.is_empty());
        let builtin = TopicCatalog::builtin();
        assert_eq!(builtin.names(), ["ATDome", "MTHexapod", "Script", "ScriptQueue", "Test", "Watcher"]);
        for name in builtin.names() {
            let b = builtin.component(name).unwrap();
            let x = xml.component(name).unwrap();
            assert_eq!(b.indexed, x.indexed, "{name} indexed");
            for (kind, bt, xt) in [
                ("event", &b.events, &x.events),
                ("telemetry", &b.telemetry, &x.telemetry),
                ("command", &b.commands, &x.commands),
            ] {
                let mut last = None;
                for t in bt {
                    let pos = xt.iter().position(|x| x.name == t.name);
                    let Some(pos) = pos else { panic!("{name} {kind} {} not in ts_xml", t.name) };
                    same_fields(&format!("{name} {kind} {}", t.name), t, &xt[pos]);
                    // the same relative order as ts_xml
                    assert!(last.map(|l| l < pos).unwrap_or(true), "{name} {kind} {} out of order", t.name);
                    last = Some(pos);
                }
                // every generic of the real component is in the built-in one
                for g in [
                    "heartbeat",
                    "logLevel",
                    "logMessage",
                    "softwareVersions",
                    "summaryState",
                    "configurationApplied",
                    "errorCode",
                ] {
                    if kind == "event" && xt.iter().any(|t| t.name == g) {
                        assert!(bt.iter().any(|t| t.name == g), "{name} built-in lacks {g}");
                    }
                }
            }
            for e in &b.enums {
                assert_eq!(Some(e), x.enumeration(&e.name), "{name} enum {}", e.name);
            }
        }
    }

    #[test]
    fn builtin_has_what_the_producers_need() {
        let cat = TopicCatalog::builtin();
        let sq = cat.component("ScriptQueue").unwrap();
        for t in ["queue", "script", "availableScripts", "configSchema", "summaryState", "heartbeat"] {
            assert!(sq.event(t).is_some(), "ScriptQueue {t}");
        }
        assert!(sq.command("showSchema").is_some());
        let s = cat.component("Script").unwrap();
        for t in ["state", "metadata", "description", "checkpoints", "logLevel", "heartbeat", "logMessage"] {
            assert!(s.event(t).is_some(), "Script {t}");
        }
        assert_eq!(s.enumeration("ScriptState").unwrap().name_of(11), Some("CONFIGURE_FAILED"));
        assert_eq!(sq.enumeration("ScriptProcessState").unwrap().name_of(5), Some("LOADFAILED"));
        assert!(cat.component("Watcher").unwrap().event("alarm").is_some());
        assert!(cat.component("ATDome").unwrap().telemetry_topic("position").is_some());
        assert!(cat.is_indexed("ScriptQueue") && !cat.is_indexed("Watcher"));
    }
}
