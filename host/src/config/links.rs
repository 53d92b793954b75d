//! The manager links to open and which components each one carries: the default link from
//! `--manager-url` (or the original's environment variables) and the configuration file's
//! `[[links]]`.

use super::{positive_secs, ConfigError, LinkSpec};
use crate::cli::{RunArgs, SinkArg};
use crate::component::ComponentName;
use crate::manager::config::{LinkConfig, SinkKind};

/// One manager link and the components whose messages it carries.
#[derive(Debug, Clone)]
pub struct LinkPlan {
    /// Labels the link's metrics and logs (`default` for the link of the unlisted components).
    pub name: String,
    /// Where it goes and how.
    pub config: LinkConfig,
    /// Its components (empty on the default link when every component is on it).
    pub components: Vec<ComponentName>,
}

/// Index of the link serving `c` in `links` (the default link, first, when none lists it).
pub fn link_of(links: &[LinkPlan], c: &ComponentName) -> usize {
    links.iter().position(|l| l.components.contains(c)).unwrap_or(0)
}

/// The links: `default` first (every component no `[[links]]` table lists), then the tables'.
pub(super) fn resolve(
    args: &RunArgs,
    specs: &[LinkSpec],
    components: &[ComponentName],
) -> Result<Vec<LinkPlan>, ConfigError> {
    let reconnect_wait = positive_secs(args.reconnect_wait, "--reconnect-wait")?;
    let resubscribe_period = positive_secs(args.resubscribe_period, "--resubscribe-period")?;
    let timing = |mut config: LinkConfig| {
        config.reconnect_wait = reconnect_wait;
        config.resubscribe_period = resubscribe_period;
        config
    };
    let mut claimed: Vec<ComponentName> = Vec::new();
    let mut grouped = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let link = spec.name.clone();
        // The name labels the link's metrics and logs: it must tell the links apart.
        if link.trim().is_empty() || link == "default" {
            return Err(ConfigError::LinkName(link));
        }
        if specs[..i].iter().any(|other| other.name == link) {
            return Err(ConfigError::LinkTwice(link));
        }
        let members = ComponentName::parse_list(&spec.components)
            .map_err(|source| ConfigError::LinkComponents { link: link.clone(), source })?;
        for m in &members {
            if !components.contains(m) {
                return Err(ConfigError::LinkUnknownComponent { link, component: m.clone() });
            }
            if claimed.contains(m) {
                return Err(ConfigError::LinkComponentTaken { link, component: m.clone() });
            }
            claimed.push(m.clone());
        }
        let password_var = spec.password_env.clone().unwrap_or_else(|| "PROCESS_CONNECTION_PASS".into());
        let config = LinkConfig::from_lookup(Some(&spec.url), Some(SinkKind::Websocket), args.ca_file.clone(), |k| {
            let var = if k == "PROCESS_CONNECTION_PASS" { password_var.as_str() } else { k };
            std::env::var(var).ok()
        })
        .map_err(|source| ConfigError::LinkUrl { link: link.clone(), source })?;
        grouped.push(LinkPlan { name: link, config: timing(config), components: members });
    }
    let mut links = Vec::new();
    let rest: Vec<ComponentName> = components.iter().filter(|c| !claimed.contains(c)).cloned().collect();
    if !rest.is_empty() || grouped.is_empty() {
        let config =
            LinkConfig::from_env_and_args(args.manager_url.as_deref(), sink_kind(args.sink), args.ca_file.clone())?;
        links.push(LinkPlan { name: "default".to_string(), config: timing(config), components: rest });
    }
    links.extend(grouped);
    Ok(links)
}

fn sink_kind(sink: SinkArg) -> Option<SinkKind> {
    match sink {
        SinkArg::Auto => None,
        SinkArg::Websocket => Some(SinkKind::Websocket),
        SinkArg::Stdout => Some(SinkKind::Stdout),
    }
}
