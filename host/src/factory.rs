//! The factory: which producer type serves each configured component, and why, and how that
//! producer is made.
//!
//! Order (DESIGN.md): an explicit `--producer-type NAME=TYPE`, a plugin that claims the name,
//! `csc` when the topic catalog knows the component, else the built-in `base`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use love_plugin_api::catalog::ComponentCatalog;
use love_plugin_api::sdk::ProducerConfig;

use crate::component::ComponentName;
use crate::crash::PluginOrigin;
use crate::plugin::quarantine::file_identity_cached;
use crate::plugin::{LoadedPlugin, PluginRegistry};
use crate::runtime::{CreateFn, ProducerSpec};
use crate::sal::catalog::TopicCatalog;

/// The built-in producer type.
pub const BASE_TYPE: &str = "base";

/// What will create a component's producer.
#[derive(Debug, Clone)]
pub enum ProducerSource {
    /// The built-in `base` producer.
    Base,
    /// A loaded plugin.
    Plugin(Arc<LoadedPlugin>),
}

impl ProducerSource {
    /// `name version` of the plugin, or `built-in`.
    pub fn label(&self) -> String {
        match self {
            ProducerSource::Base => "built-in".to_string(),
            ProducerSource::Plugin(p) => format!("{} {}", p.descriptor.name, p.descriptor.version),
        }
    }

    /// What builds the producer from its configuration JSON.
    pub fn create_fn(&self) -> CreateFn {
        match self {
            ProducerSource::Base => Arc::new(|config: &str| {
                let cfg: ProducerConfig = serde_json::from_str(config).map_err(|e| e.to_string())?;
                let p = crate::base::create(cfg).map_err(|e| e.to_string())?;
                Ok(love_plugin_api::sdk::into_producer_box(p))
            }),
            ProducerSource::Plugin(p) => {
                let p = p.clone();
                Arc::new(move |config: &str| p.create(config))
            }
        }
    }

    /// The plugin file the producer's code comes from, for crash records (`None`: built in).
    pub fn origin(&self) -> Option<PluginOrigin> {
        match self {
            ProducerSource::Base => None,
            ProducerSource::Plugin(p) => Some(PluginOrigin {
                name: p.descriptor.name.clone(),
                version: p.descriptor.version.clone(),
                file: p.path.clone(),
                identity: file_identity_cached(&p.path).ok(),
            }),
        }
    }
}

/// What every producer is started with.
#[derive(Debug, Clone)]
pub struct ProducerDefaults {
    /// `--periodic-data`.
    pub periodic_data: Option<Vec<String>>,
    /// `--asynchronous-data`.
    pub asynchronous_data: Option<Vec<String>>,
    /// Settings (the original's environment variables and `--setting NAME=VALUE` included).
    pub settings: BTreeMap<String, String>,
    /// A call into a producer running longer is reported stuck.
    pub call_timeout: Duration,
}

impl Assignment {
    /// How the runtime starts the producer this assignment chose.
    pub fn producer_spec(&self, defaults: &ProducerDefaults, catalog: &TopicCatalog) -> ProducerSpec {
        let config = ProducerConfig {
            component: self.component.name.clone(),
            index: self.component.index,
            producer_type: self.producer_type.clone(),
            periodic_data: defaults.periodic_data.clone(),
            asynchronous_data: defaults.asynchronous_data.clone(),
            settings: defaults.settings.clone(),
            catalog: catalog.component(&self.component.name).cloned(),
        };
        ProducerSpec {
            component: self.component.clone(),
            producer_type: self.producer_type.clone(),
            label: self.source.label(),
            create: self.source.create_fn(),
            origin: self.source.origin(),
            subscribe_own: config.catalog.is_some() && !matches!(self.source, ProducerSource::Base),
            config,
        }
    }
}

/// The factory's decision for one component.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// The component.
    pub component: ComponentName,
    /// The producer type.
    pub producer_type: String,
    /// What creates it.
    pub source: ProducerSource,
    /// Why this type was chosen (for the log).
    pub reason: String,
}

/// A configuration the factory refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FactoryError {
    /// `--producer-type` names a type nothing provides.
    #[error("component {component}: producer type {producer_type:?} given with --producer-type is not provided by any loaded plugin (available: {available})")]
    UnknownType {
        /// The component.
        component: String,
        /// The type asked for.
        producer_type: String,
        /// What is available.
        available: String,
    },
    /// A non-zero index on a component that is not indexed.
    #[error("component {component}: index {index} must be 0; {component} is not an indexed SAL component")]
    NotIndexed {
        /// The component.
        component: String,
        /// The index given.
        index: i64,
    },
    /// A malformed `--producer-type` argument.
    #[error("--producer-type {0:?} is not of the form NAME=TYPE")]
    BadOverride(String),
}

/// Parse `--producer-type NAME=TYPE` arguments.
pub fn parse_overrides(args: &[String]) -> Result<BTreeMap<String, String>, FactoryError> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((n, t)) if !n.trim().is_empty() && !t.trim().is_empty() => {
                Ok((n.trim().to_string(), t.trim().to_string()))
            }
            _ => Err(FactoryError::BadOverride(a.clone())),
        })
        .collect()
}

/// Choose the producer for `component`. `known` is the component's catalog entry, if any.
pub fn assign(
    component: &ComponentName,
    overrides: &BTreeMap<String, String>,
    registry: &PluginRegistry,
    known: Option<&ComponentCatalog>,
) -> Result<Assignment, FactoryError> {
    if let Some(cat) = known {
        if !cat.indexed && component.index != 0 {
            return Err(FactoryError::NotIndexed { component: component.name.clone(), index: component.index });
        }
    }
    let make = |producer_type: &str, source: ProducerSource, reason: String| Assignment {
        component: component.clone(),
        producer_type: producer_type.to_string(),
        source,
        reason,
    };
    if let Some(ty) = overrides.get(&component.name) {
        if ty == BASE_TYPE {
            return Ok(make(BASE_TYPE, ProducerSource::Base, "--producer-type override".into()));
        }
        return match registry.by_type(ty) {
            Some(p) => {
                let reason = format!("--producer-type override ({})", p.path.display());
                Ok(make(ty, ProducerSource::Plugin(p), reason))
            }
            None => Err(FactoryError::UnknownType {
                component: component.name.clone(),
                producer_type: ty.clone(),
                available: available_types(registry),
            }),
        };
    }
    if let Some(p) = registry.claimant(&component.name) {
        let reason = format!("plugin {} claims {} ({})", p.descriptor.name, component.name, p.path.display());
        let ty = p.descriptor.producer_type.clone();
        return Ok(make(&ty, ProducerSource::Plugin(p), reason));
    }
    if known.is_some() {
        if let Some(p) = registry.by_type("csc") {
            let reason = format!("{} is a known CSC in the topic catalog", component.name);
            return Ok(make("csc", ProducerSource::Plugin(p), reason));
        }
        let reason = format!("{} is a known CSC but no plugin provides type csc; falling back to base", component.name);
        return Ok(make(BASE_TYPE, ProducerSource::Base, reason));
    }
    Ok(make(
        BASE_TYPE,
        ProducerSource::Base,
        format!("{} is not in the topic catalog and no plugin claims it", component.name),
    ))
}

fn available_types(registry: &PluginRegistry) -> String {
    let mut types: Vec<String> = registry.plugins().iter().map(|p| p.descriptor.producer_type.clone()).collect();
    types.push(BASE_TYPE.to_string());
    types.sort();
    types.dedup();
    types.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(name: &str, indexed: bool) -> ComponentCatalog {
        ComponentCatalog { name: name.into(), indexed, ..Default::default() }
    }

    #[test]
    fn unknown_component_is_base_and_known_without_csc_plugin_falls_back() {
        let reg = PluginRegistry::default();
        let a = assign(&ComponentName::parse("UnitTest1").unwrap(), &BTreeMap::new(), &reg, None).unwrap();
        assert_eq!(a.producer_type, "base");
        let a = assign(&ComponentName::parse("ATDome").unwrap(), &BTreeMap::new(), &reg, Some(&cat("ATDome", false)))
            .unwrap();
        assert_eq!(a.producer_type, "base");
        assert!(a.reason.contains("no plugin provides type csc"));
    }

    #[test]
    fn index_on_non_indexed_component_is_refused() {
        let reg = PluginRegistry::default();
        let err =
            assign(&ComponentName::parse("Watcher:1").unwrap(), &BTreeMap::new(), &reg, Some(&cat("Watcher", false)))
                .unwrap_err();
        assert_eq!(err.to_string(), "component Watcher: index 1 must be 0; Watcher is not an indexed SAL component");
    }

    #[test]
    fn overrides() {
        let reg = PluginRegistry::default();
        let ov = parse_overrides(&["ATDome=base".into(), "MTM1M3=m1m3".into()]).unwrap();
        let a = assign(&ComponentName::parse("ATDome").unwrap(), &ov, &reg, Some(&cat("ATDome", false))).unwrap();
        assert_eq!(a.producer_type, "base");
        let err = assign(&ComponentName::parse("MTM1M3").unwrap(), &ov, &reg, None).unwrap_err();
        assert!(err.to_string().contains("\"m1m3\""), "{err}");
        assert!(parse_overrides(&["nonsense".into()]).is_err());
    }
}
