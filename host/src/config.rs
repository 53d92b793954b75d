//! The configuration file (`--config love-host.toml`).
//!
//! It holds everything the command line holds, under the long option names (`plugin_dir` or
//! `plugin-dir`, `components = [...]`, `manager_url`, …), plus `[[links]]` tables that send
//! groups of components to their own LOVE-manager endpoints. Precedence: command line, then
//! environment variables, then the file. File values go through the same parser as the command
//! line, so they are validated the same way, and every error names the file and the key.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;

use crate::cli::Cli;

/// A manager link for a group of components.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// A name for logs and metrics (`producers`, `queue`, `m1m3`).
    pub name: String,
    /// `ws[s]://host[:port]/path` of the manager endpoint.
    pub url: String,
    /// The components whose messages go there (`Name` or `Name:index`).
    pub components: Vec<String>,
    /// The environment variable holding this endpoint's password (default
    /// `PROCESS_CONNECTION_PASS`).
    #[serde(default)]
    pub password_env: Option<String>,
}

/// Errors in the configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// Unreadable file.
    #[error("{path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Not TOML.
    #[error("{path}: not valid TOML: {reason}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        reason: String,
    },
    /// A key that is not an option.
    #[error("{path}: unknown key `{key}` (keys are the long command-line options, e.g. plugin_dir, components, manager_url, or [[links]])")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A value of the wrong kind.
    #[error("{path}: key `{key}`: {reason}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// Parse the command line, then fill what it and the environment left unset from the file
/// named by `--config` (if any). Returns the parsed CLI and the file's `[[links]]`.
pub fn parse_with_config(argv: Vec<OsString>) -> Result<(Cli, Vec<LinkSpec>), anyhow::Error> {
    parse_with_config_env(argv, |name| std::env::var_os(name))
}

/// [`parse_with_config`] with the environment variables that clap does not read itself
/// (`WEBSOCKET_HOST`) looked up through `env`.
fn parse_with_config_env(
    argv: Vec<OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<(Cli, Vec<LinkSpec>), anyhow::Error> {
    let cmd = Cli::command();
    let matches = match cmd.clone().try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) => e.exit(),
    };
    // `love-host --xml-dir D catalog ATDome` would otherwise serve a component named `catalog`:
    // once an option is given, clap reads a subcommand's name as a positional component.
    let positional = matches.get_many::<String>("positional").into_iter().flatten();
    if let Some(sub) = positional.into_iter().find(|v| cmd.find_subcommand(v.as_str()).is_some()) {
        anyhow::bail!("`{sub}` is a subcommand: give it first, before any option (love-host {sub} --help)");
    }
    let Some(path) = matches.get_one::<PathBuf>("config").cloned() else {
        return Ok((Cli::from_arg_matches(&matches)?, Vec::new()));
    };
    let given = |id: &str| !matches!(matches.value_source(id), None | Some(ValueSource::DefaultValue));
    let (extra, links) = file_arguments(&path, &cmd, |id| match id {
        // One list of components, whichever way it was given: the command line's replaces the file's.
        "components" => !given("components") && !given("positional"),
        // The original's variable is the environment's way to name the manager.
        "manager_url" => !given("manager_url") && env(crate::manager::ENV_WEBSOCKET_HOST).is_none_or(|h| h.is_empty()),
        id => !given(id),
    })?;
    let mut full = argv;
    full.extend(extra);
    let cli = match Cli::try_parse_from(&full) {
        Ok(c) => c,
        Err(e) => anyhow::bail!("{}: {}", path.display(), e.to_string().trim_start_matches("error: ").trim()),
    };
    Ok((cli, links))
}

/// Translate the file into extra command-line arguments for the options `unset(id)` says are
/// not given on the command line or in the environment.
fn file_arguments(
    path: &Path,
    cmd: &clap::Command,
    unset: impl Fn(&str) -> bool,
) -> Result<(Vec<OsString>, Vec<LinkSpec>), ConfigFileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigFileError::Read { path: path.to_path_buf(), reason: e.to_string() })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigFileError::Syntax { path: path.to_path_buf(), reason: e.to_string() })?;
    let mut extra: Vec<OsString> = Vec::new();
    let mut links = Vec::new();
    for (key, value) in &table {
        if key == "links" {
            links = value.clone().try_into::<Vec<LinkSpec>>().map_err(|e| ConfigFileError::BadValue {
                path: path.to_path_buf(),
                key: key.clone(),
                reason: e.to_string(),
            })?;
            continue;
        }
        let id = key.replace('-', "_");
        if id == "config" || id == "positional" {
            return Err(ConfigFileError::UnknownKey { path: path.to_path_buf(), key: key.clone() });
        }
        let Some(arg) = cmd.get_arguments().find(|a| a.get_id().as_str() == id && a.get_long().is_some()) else {
            return Err(ConfigFileError::UnknownKey { path: path.to_path_buf(), key: key.clone() });
        };
        if !unset(&id) {
            continue;
        }
        let flag = format!("--{}", arg.get_long().expect("long"));
        let bad = |reason: &str| ConfigFileError::BadValue {
            path: path.to_path_buf(),
            key: key.clone(),
            reason: reason.to_string(),
        };
        let takes_value = arg.get_action().takes_values();
        match value {
            toml::Value::Boolean(b) if !takes_value => {
                if *b {
                    extra.push(flag.into());
                }
            }
            toml::Value::Boolean(_) => return Err(bad("expected a value, not a boolean")),
            _ if !takes_value => return Err(bad("expected true or false")),
            toml::Value::Array(items) => {
                // `--flag=item` once per item: options taking one value per occurrence then
                // collect them all, and no item can be mistaken for a positional argument.
                for item in items {
                    let v = scalar(item).ok_or_else(|| bad("array items must be strings or numbers"))?;
                    extra.push(format!("{flag}={v}").into());
                }
            }
            other => {
                let v = scalar(other).ok_or_else(|| bad("expected a string, number or array"))?;
                extra.push(format!("{flag}={v}").into());
            }
        }
    }
    Ok((extra, links))
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("love-host-cfg-{}-{name}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn parse(args: &[&str]) -> Result<(Cli, Vec<LinkSpec>), anyhow::Error> {
        parse_with_config(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn file_fills_what_the_command_line_leaves_unset() {
        let p = write(
            "fill",
            r#"
components = ["Watcher", "ScriptQueue:1"]
plugin_dir = "/opt/love/plugins"
telemetry-period = 5
log_level = "30"
allow_downgrade = true
[[links]]
name = "queue"
url = "ws://love-nginx/manager/queue/ws/subscription"
components = ["ScriptQueue:1"]
"#,
        );
        let (cli, links) = parse(&["love-host", "--config", p.to_str().unwrap(), "--telemetry-period", "3"]).unwrap();
        assert_eq!(cli.run.component_args(), ["Watcher", "ScriptQueue:1"]);
        assert_eq!(cli.run.plugin_dir.as_deref(), Some(Path::new("/opt/love/plugins")));
        assert_eq!(cli.run.telemetry_period, 3.0, "command line wins over the file");
        assert_eq!(cli.run.log_level, crate::cli::LogLevel::Warning);
        assert!(cli.run.allow_downgrade);
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].components, ["ScriptQueue:1"]);
    }

    #[test]
    fn command_line_and_environment_lists_replace_the_files() {
        let p = write(
            "lists",
            r#"
components = ["Watcher"]
manager_url = "ws://from-file/manager/ws/subscription"
settings = ["FINISHED_SCRIPTS_LIST_SIZE=20", "UPDATE_SCRIPTS_SCHEMA_ON_START=false"]
"#,
        );
        let no_env = |_: &str| None;
        let args = |extra: &[&str]| {
            let mut v: Vec<OsString> = ["love-host", "--config", p.to_str().unwrap()].map(OsString::from).to_vec();
            v.extend(extra.iter().map(OsString::from));
            v
        };
        let (cli, _) = parse_with_config_env(args(&[]), no_env).unwrap();
        assert_eq!(cli.run.component_args(), ["Watcher"]);
        assert_eq!(cli.run.settings, ["FINISHED_SCRIPTS_LIST_SIZE=20", "UPDATE_SCRIPTS_SCHEMA_ON_START=false"]);
        assert!(cli.run.positional.is_empty(), "array items never become positional components");
        assert!(cli.run.manager_url.is_some());
        // Components on the command line, positional or not, replace the file's list.
        let (cli, _) = parse_with_config_env(args(&["ATDome"]), no_env).unwrap();
        assert_eq!(cli.run.component_args(), ["ATDome"]);
        let (cli, _) = parse_with_config_env(args(&["--components", "ATDome", "Test:1"]), no_env).unwrap();
        assert_eq!(cli.run.component_args(), ["ATDome", "Test:1"]);
        // The original's WEBSOCKET_HOST in the environment wins over the file's manager_url.
        let env = |name: &str| (name == "WEBSOCKET_HOST").then(|| OsString::from("love-nginx/manager/ws/subscription"));
        let (cli, _) = parse_with_config_env(args(&[]), env).unwrap();
        assert!(cli.run.manager_url.is_none(), "left to WEBSOCKET_HOST");
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/love-host.toml");
        let (cli, links) = parse(&["love-host", "--config", p.to_str().unwrap()]).unwrap();
        assert_eq!(cli.run.component_args().len(), 5);
        assert_eq!(links.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["queue", "m1m3"]);
        let components = crate::component::ComponentName::parse_list(&cli.run.component_args()).unwrap();
        let mut run = cli.run.clone();
        run.links = links;
        let plan = crate::app::link_plan(&run, &components).unwrap();
        assert_eq!(plan.links.len(), 3);
        assert_eq!(plan.links[0].2.len(), 2, "Watcher and ATDome on the default link");
        // Names label the links' metrics: duplicates and "default" are refused.
        let mut twice = run.clone();
        twice.links[1].name = "queue".into();
        let e = crate::app::link_plan(&twice, &components).err().expect("refused").to_string();
        assert!(e.contains("[[links]] queue: two links have this name"), "{e}");
        twice.links[1].name = "default".into();
        assert!(crate::app::link_plan(&twice, &components).is_err());
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let p = write("unknown", "plugin_dri = \"/x\"\n");
        let e = parse(&["love-host", "--config", p.to_str().unwrap()]).unwrap_err().to_string();
        assert!(e.contains("unknown key `plugin_dri`") && e.contains(p.to_str().unwrap()), "{e}");
        let p = write("badval", "telemetry_period = \"soon\"\n");
        let e = parse(&["love-host", "--config", p.to_str().unwrap()]).unwrap_err().to_string();
        assert!(e.contains("telemetry-period") && e.contains("soon"), "{e}");
        let p = write("syntax", "components = [\n");
        let e = parse(&["love-host", "--config", p.to_str().unwrap()]).unwrap_err().to_string();
        assert!(e.contains("not valid TOML") && e.contains("line"), "{e}");
        let p = write("links", "[[links]]\nname = \"q\"\nurl = \"ws://x/manager/ws/subscription\"\n");
        let e = parse(&["love-host", "--config", p.to_str().unwrap()]).unwrap_err().to_string();
        assert!(e.contains("key `links`") && e.contains("components"), "{e}");
    }

    #[test]
    fn a_subcommand_after_an_option_is_an_error_not_a_component() {
        let argv = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let err = parse_with_config(argv(&["love-host", "--xml-dir", "/x", "catalog", "ATDome"])).unwrap_err();
        assert!(err.to_string().contains("`catalog` is a subcommand"), "{err}");
        let err = parse_with_config(argv(&["love-host", "--plugin-dir", "/x", "plugins"])).unwrap_err();
        assert!(err.to_string().contains("`plugins` is a subcommand"), "{err}");
        assert!(parse_with_config(argv(&["love-host", "catalog", "ATDome"])).is_ok());
    }
}
