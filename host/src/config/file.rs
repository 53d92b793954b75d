//! The configuration file (`--config love-host.toml`), merged into the command line.
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

use super::ConfigError;
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
    /// Values the command line's parser refuses.
    #[error("{path}: {reason}")]
    BadArguments {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
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
/// named by `--config` (if any). Returns the parsed command line and the file's `[[links]]`.
/// The environment variables that clap does not read itself (`WEBSOCKET_HOST`) are looked up
/// through `env`.
pub(super) fn parse_command_line(
    argv: Vec<OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<(Cli, Vec<LinkSpec>), ConfigError> {
    let cmd = Cli::command();
    let matches = match cmd.clone().try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) => e.exit(),
    };
    // `love-host --xml-dir D catalog ATDome` would otherwise serve a component named `catalog`:
    // once an option is given, clap reads a subcommand's name as a positional component.
    let positional = matches.get_many::<String>("positional").into_iter().flatten();
    if let Some(sub) = positional.into_iter().find(|v| cmd.find_subcommand(v.as_str()).is_some()) {
        return Err(ConfigError::SubcommandAfterOption(sub.clone()));
    }
    let Some(path) = matches.get_one::<PathBuf>("config").cloned() else {
        let cli = Cli::from_arg_matches(&matches).map_err(|e| ConfigError::CommandLine(e.to_string()))?;
        return Ok((cli, Vec::new()));
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
    let cli = Cli::try_parse_from(&full).map_err(|e| ConfigFileError::BadArguments {
        path: path.clone(),
        reason: e.to_string().trim_start_matches("error: ").trim().to_string(),
    })?;
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
