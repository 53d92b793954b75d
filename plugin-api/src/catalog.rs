//! The topic catalog of a component, as handed to a producer when it is created.
//!
//! It crosses the plugin boundary once per producer, as JSON text inside the producer's
//! configuration, so it can gain fields without changing the ABI: unknown fields are ignored by
//! older plugins and missing ones take their defaults.

use serde::{Deserialize, Serialize};

/// Everything a producer needs to know about one SAL component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ComponentCatalog {
    /// Component name (`ATDome`).
    pub name: String,
    /// Whether the component is indexed (`IndexEnumeration` other than `no`).
    #[serde(default)]
    pub indexed: bool,
    /// Event topics, without the `logevent_` prefix, in ts_xml order.
    #[serde(default)]
    pub events: Vec<TopicInfo>,
    /// Telemetry topics, in ts_xml order.
    #[serde(default)]
    pub telemetry: Vec<TopicInfo>,
    /// Commands, without the `command_` prefix.
    #[serde(default)]
    pub commands: Vec<TopicInfo>,
    /// Enumerations declared by the component (`ScriptState`, `ScriptProcessState`…).
    #[serde(default)]
    pub enums: Vec<EnumInfo>,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TopicInfo {
    /// Topic name without prefix (`summaryState`).
    pub name: String,
    /// Its fields in ts_xml order (without salIndex and the private fields).
    #[serde(default)]
    pub fields: Vec<FieldInfo>,
    /// Nominal publication rate in Hz for telemetry, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_hz: Option<f64>,
}

/// One field of a topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FieldInfo {
    /// `EFDB_Name`.
    pub name: String,
    /// `IDL_Type` (`boolean`, `long long`, `float`, `string`…).
    pub idl_type: String,
    /// `Count` (1 for scalars; ignored for strings).
    #[serde(default = "one")]
    pub count: u32,
    /// `Units`, `unitless` when absent.
    #[serde(default = "unitless")]
    pub units: String,
    /// `Description`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The enumeration this field's values come from, when the catalog knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enumeration: Option<String>,
}

fn one() -> u32 {
    1
}

fn unitless() -> String {
    "unitless".to_string()
}

/// A named enumeration: its values and their names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EnumInfo {
    /// Enumeration name (`ScriptState`).
    pub name: String,
    /// (value, name) pairs; names as the Python enums spell them (`CONFIGURE_FAILED`).
    pub values: Vec<(i64, String)>,
}

/// The scalar kind of a declared field, which decides the `dataType` shown to the frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    /// boolean
    Bool,
    /// any integer type
    Int,
    /// float or double
    Float,
    /// string
    Str,
    /// anything else
    Other,
}

impl FieldInfo {
    /// Build a field description (used by catalogs written in code).
    pub fn new(name: &str, idl_type: &str, count: u32, units: &str) -> Self {
        FieldInfo {
            name: name.to_string(),
            idl_type: idl_type.to_string(),
            count,
            units: units.to_string(),
            description: String::new(),
            enumeration: None,
        }
    }

    /// The scalar kind of the declared IDL type.
    pub fn scalar_kind(&self) -> ScalarKind {
        match self.idl_type.as_str() {
            "boolean" | "bool" => ScalarKind::Bool,
            "byte" | "octet" | "short" | "int" | "long" | "long long" | "unsigned short" | "unsigned int"
            | "unsigned long" | "unsigned long long" | "int8" | "int16" | "int32" | "int64" | "uint8" | "uint16"
            | "uint32" | "uint64" => ScalarKind::Int,
            "float" | "double" => ScalarKind::Float,
            "string" => ScalarKind::Str,
            _ => ScalarKind::Other,
        }
    }

    /// Whether the field is an array (strings never are).
    pub fn is_array(&self) -> bool {
        self.count > 1 && self.scalar_kind() != ScalarKind::Str
    }

    /// The reference's `dataType` label for this declared field (booleans are `"Int"`, sic).
    pub fn data_type(&self) -> &'static str {
        match (self.scalar_kind(), self.is_array()) {
            (ScalarKind::Bool | ScalarKind::Int, false) => "Int",
            (ScalarKind::Bool | ScalarKind::Int, true) => "Array<Int>",
            (ScalarKind::Float, false) => "Float",
            (ScalarKind::Float, true) => "Array<Float>",
            (ScalarKind::Str, _) => "String",
            (ScalarKind::Other, _) => "None",
        }
    }
}

impl ComponentCatalog {
    /// An event topic by name.
    pub fn event(&self, name: &str) -> Option<&TopicInfo> {
        self.events.iter().find(|t| t.name == name)
    }

    /// A telemetry topic by name.
    pub fn telemetry_topic(&self, name: &str) -> Option<&TopicInfo> {
        self.telemetry.iter().find(|t| t.name == name)
    }

    /// A command by name.
    pub fn command(&self, name: &str) -> Option<&TopicInfo> {
        self.commands.iter().find(|t| t.name == name)
    }

    /// An enumeration by name.
    pub fn enumeration(&self, name: &str) -> Option<&EnumInfo> {
        self.enums.iter().find(|e| e.name == name)
    }
}

impl EnumInfo {
    /// The name of `value`, if the enumeration has it.
    pub fn name_of(&self, value: i64) -> Option<&str> {
        self.values.iter().find(|(v, _)| *v == value).map(|(_, n)| n.as_str())
    }
}
