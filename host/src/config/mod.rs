//! The configuration in force, resolved once from the command line ([`crate::cli`]), the
//! environment and the `--config` file into one [`Config`]: everything the host refuses as
//! bad configuration is refused here, before anything starts, and no field is filled in later.

mod error;
mod file;
mod links;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use error::ConfigError;
pub use file::{ConfigFileError, LinkSpec};
pub use links::{link_of, LinkPlan};

use crate::cli::{Cli, Command, LogFormat, LogLevel, RunArgs, SalArg};
use crate::component::ComponentName;
use crate::factory::{parse_overrides, ProducerDefaults};
use crate::plugin::quarantine;
use crate::sal::replay::ReplayOptions;
use crate::sal::sim::HeartbeatStop;

/// What the binary is asked to do.
#[derive(Debug)]
pub enum Config {
    /// Run the producers (the default command).
    Run(Box<RunConfig>),
    /// `love-host plugins`: list a plugin directory.
    Plugins(PluginsConfig),
    /// `love-host catalog`: show the topic catalog.
    Catalog(CatalogConfig),
}

/// `love-host plugins --plugin-dir DIR [--clear-quarantine]`.
#[derive(Debug, Clone)]
pub struct PluginsConfig {
    /// The directory listed.
    pub plugin_dir: PathBuf,
    /// The state directory holding the crash quarantine.
    pub state_dir: PathBuf,
    /// Forget the directory's crash records first.
    pub clear_quarantine: bool,
    /// Largest plugin file accepted, in bytes.
    pub max_plugin_size: u64,
}

/// `love-host catalog [COMPONENT [TOPIC]]`.
#[derive(Debug, Clone)]
pub struct CatalogConfig {
    /// A component to show.
    pub component: Option<String>,
    /// A topic of it to show.
    pub topic: Option<String>,
    /// The ts_xml directory read instead of the built-in catalog.
    pub xml_dir: Option<PathBuf>,
}

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The components served, each once.
    pub components: Vec<ComponentName>,
    /// `--producer-type NAME=TYPE`.
    pub overrides: BTreeMap<String, String>,
    /// What every producer is configured with.
    pub producers: ProducerDefaults,
    /// The plugin directory and its hot deployment (`None`: only the built-in producer).
    pub plugins: Option<PluginDirConfig>,
    /// Largest plugin file accepted, in bytes.
    pub max_plugin_size: u64,
    /// State kept across restarts (the crash quarantine).
    pub state_dir: PathBuf,
    /// The manager links, `default` first.
    pub links: Vec<LinkPlan>,
    /// The SAL source.
    pub sal: SalChoice,
    /// Record every SAL sample to this file.
    pub record: Option<PathBuf>,
    /// ts_xml directory for the topic catalog (`None`: the built-in one).
    pub xml_dir: Option<PathBuf>,
    /// The admin endpoint's address.
    pub admin_addr: Option<SocketAddr>,
    /// `--group`: the components are shared with the other hosts of this group.
    pub group: Option<String>,
    /// Log level.
    pub log_level: LogLevel,
    /// Log line format.
    pub log_format: LogFormat,
}

/// The plugin directory of a run.
#[derive(Debug, Clone)]
pub struct PluginDirConfig {
    /// Where the plugins are deployed.
    pub dir: PathBuf,
    /// Where their private copies are loaded from.
    pub copies_dir: PathBuf,
    /// Accept a deployed version that is not newer.
    pub allow_downgrade: bool,
}

/// The SAL source of a run.
#[derive(Debug, Clone)]
pub enum SalChoice {
    /// The built-in simulator.
    Sim {
        /// `--sim-seed`.
        seed: Option<u64>,
        /// Rate factor, positive.
        rate: f64,
        /// Heartbeats to stop.
        heartbeat_stops: Vec<HeartbeatStop>,
    },
    /// A recorded file.
    Replay {
        /// The file.
        path: PathBuf,
        /// Speed and strictness.
        options: ReplayOptions,
    },
    /// Kafka (its settings are salobj's environment variables, read by the source).
    Kafka,
}

impl Config {
    /// The configuration of this process: its arguments, its environment, the file they name.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_args(std::env::args_os().collect())
    }

    /// The configuration `argv` (and the environment) give.
    pub fn from_args(argv: Vec<OsString>) -> Result<Config, ConfigError> {
        let (cli, links) = file::parse_command_line(argv, |name| std::env::var_os(name))?;
        resolve(cli, &links)
    }
}

fn resolve(cli: Cli, links: &[LinkSpec]) -> Result<Config, ConfigError> {
    Ok(match cli.command {
        Some(Command::Catalog { component, topic, xml_dir }) => {
            Config::Catalog(CatalogConfig { component, topic, xml_dir })
        }
        Some(Command::Plugins { plugin_dir, state_dir, clear_quarantine, max_plugin_size }) => {
            Config::Plugins(PluginsConfig {
                plugin_dir,
                state_dir: state_dir.unwrap_or_else(quarantine::default_state_dir),
                clear_quarantine,
                max_plugin_size,
            })
        }
        None => Config::Run(Box::new(RunConfig::resolve(&cli.run, links)?)),
    })
}

impl RunConfig {
    fn resolve(args: &RunArgs, links: &[LinkSpec]) -> Result<RunConfig, ConfigError> {
        let components = components(args)?;
        let overrides = parse_overrides(&args.producer_type)?;
        let settings = producer_settings(args)?;
        let links = links::resolve(args, links, &components)?;
        positive_secs(args.telemetry_period, "--telemetry-period")?;
        let call_timeout = positive_secs(args.producer_call_timeout, "--producer-call-timeout")?;
        let plugins = args.plugin_dir.clone().map(|dir| PluginDirConfig {
            dir,
            copies_dir: args
                .plugin_copies_dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join(format!("love-host-{}-plugins", std::process::id()))),
            allow_downgrade: args.allow_downgrade,
        });
        Ok(RunConfig {
            components,
            overrides,
            producers: ProducerDefaults {
                periodic_data: args.periodic_data.clone(),
                asynchronous_data: args.asynchronous_data.clone(),
                settings,
                call_timeout,
            },
            plugins,
            max_plugin_size: args.max_plugin_size,
            state_dir: args.state_dir.clone().unwrap_or_else(quarantine::default_state_dir),
            links,
            sal: sal_choice(args)?,
            record: args.record.clone(),
            xml_dir: args.xml_dir.clone(),
            admin_addr: args.admin_addr,
            group: group(args)?,
            log_level: args.log_level,
            log_format: args.log_format,
        })
    }
}

fn components(args: &RunArgs) -> Result<Vec<ComponentName>, ConfigError> {
    let components = ComponentName::parse_list(&args.component_args())?;
    if components.is_empty() {
        return Err(ConfigError::NoComponents);
    }
    for (i, c) in components.iter().enumerate() {
        if components[..i].contains(c) {
            return Err(ConfigError::ComponentTwice(c.clone()));
        }
    }
    Ok(components)
}

/// Settings handed to every producer (the original's environment variables included).
fn producer_settings(args: &RunArgs) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut settings = BTreeMap::new();
    settings.insert("telemetry_period".into(), args.telemetry_period.to_string());
    settings.insert("telemetry_stale_after".into(), args.telemetry_stale_after.to_string());
    settings.insert("heartbeat_timeout".into(), "2.0".into());
    for var in ["FINISHED_SCRIPTS_LIST_SIZE", "UPDATE_SCRIPTS_SCHEMA_ON_START"] {
        if let Ok(v) = std::env::var(var) {
            settings.insert(var.into(), v);
        }
    }
    for kv in &args.settings {
        match kv.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => settings.insert(k.trim().to_string(), v.trim().to_string()),
            _ => return Err(ConfigError::Setting(kv.clone())),
        };
    }
    Ok(settings)
}

/// `--group`, which needs the Kafka source.
fn group(args: &RunArgs) -> Result<Option<String>, ConfigError> {
    let Some(g) = args.group.clone() else { return Ok(None) };
    if !matches!(sal_choice(args)?, SalChoice::Kafka) {
        return Err(ConfigError::CommandLine(format!(
            "--group {g}: hosts share components through Kafka's group coordinator, so --group needs the Kafka source (--sal kafka)"
        )));
    }
    Ok(Some(g))
}

/// The SAL source `args` select (`--sal`, else replay with `--replay`, Kafka when
/// `LSST_KAFKA_BROKER_ADDR` is set, else the simulator).
fn sal_choice(args: &RunArgs) -> Result<SalChoice, ConfigError> {
    let kind = match args.sal {
        Some(k) => k,
        None if args.replay.is_some() => SalArg::Replay,
        None if std::env::var_os("LSST_KAFKA_BROKER_ADDR").is_some() => SalArg::Kafka,
        None => SalArg::Sim,
    };
    Ok(match kind {
        SalArg::Kafka => SalChoice::Kafka,
        SalArg::Replay => {
            let path = args.replay.clone().ok_or(ConfigError::ReplayWithoutFile)?;
            let speed = args.replay_speed;
            if !(speed.is_finite() && speed >= 0.0) {
                return Err(ConfigError::ReplaySpeed(speed));
            }
            // Playback starts 2 s after the first subscription, so that every producer (and the SAL
            // subscriptions they make at start, like scriptqueue's Script:0) is subscribed before
            // the first sample: a late subscriber would get only the latest sample of each event.
            let options = ReplayOptions { speed, strict: args.replay_strict, start_delay: 2.0 };
            SalChoice::Replay { path, options }
        }
        SalArg::Sim => {
            if !(args.sim_rate.is_finite() && args.sim_rate > 0.0) {
                return Err(ConfigError::SimRate(args.sim_rate));
            }
            let heartbeat_stops = match &args.sim_stop_heartbeat {
                Some(spec) => HeartbeatStop::parse_list(spec).map_err(ConfigError::HeartbeatStop)?,
                None => Vec::new(),
            };
            SalChoice::Sim { seed: args.sim_seed, rate: args.sim_rate, heartbeat_stops }
        }
    })
}

/// `v` seconds as a duration, refused unless positive and finite.
fn positive_secs(v: f64, what: &'static str) -> Result<Duration, ConfigError> {
    if !(v.is_finite() && v > 0.0) {
        return Err(ConfigError::NotPositive { what, value: v });
    }
    Duration::try_from_secs_f64(v).map_err(|_| ConfigError::TooLarge { what, value: v })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("love-host-cfg-{}-{name}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn parse(args: &[&str]) -> Result<(Cli, Vec<LinkSpec>), ConfigError> {
        parse_with_config_env(args.iter().map(OsString::from).collect(), |name| std::env::var_os(name))
    }

    fn parse_with_config(argv: Vec<OsString>) -> Result<(Cli, Vec<LinkSpec>), ConfigError> {
        parse_with_config_env(argv, |name| std::env::var_os(name))
    }

    use file::parse_command_line as parse_with_config_env;
    use std::path::Path;

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
        let run = RunConfig::resolve(&cli.run, &links).unwrap();
        assert_eq!(run.links.len(), 3);
        assert_eq!(run.links[0].components.len(), 2, "Watcher and ATDome on the default link");
        // Names label the links' metrics: duplicates and "default" are refused.
        let mut twice = links.clone();
        twice[1].name = "queue".into();
        let e = RunConfig::resolve(&cli.run, &twice).expect_err("refused").to_string();
        assert!(e.contains("[[links]] queue: two links have this name"), "{e}");
        twice[1].name = "default".into();
        assert!(RunConfig::resolve(&cli.run, &twice).is_err());
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

    fn resolve_args(args: &[&str]) -> Result<RunConfig, ConfigError> {
        let (cli, links) = parse(args)?;
        RunConfig::resolve(&cli.run, &links)
    }

    #[test]
    fn a_run_is_resolved_whole_or_refused() {
        let run =
            resolve_args(&["love-host", "Watcher", "ScriptQueue:1", "--setting", "A = b", "--sink", "stdout"]).unwrap();
        assert_eq!(run.components.iter().map(|c| c.to_string()).collect::<Vec<_>>(), ["Watcher:0", "ScriptQueue:1"]);
        assert_eq!(run.producers.settings.get("A").map(String::as_str), Some("b"));
        assert_eq!(run.producers.settings.get("telemetry_period").map(String::as_str), Some("2"));
        assert_eq!(run.producers.call_timeout, std::time::Duration::from_secs(5));
        assert_eq!((run.links.len(), run.links[0].name.as_str()), (1, "default"));
        assert!(matches!(run.sal, SalChoice::Sim { rate, .. } if rate == 1.0));
        assert!(run.plugins.is_none());
        let with_dir = resolve_args(&["love-host", "ATDome", "--plugin-dir", "/opt/p", "--sink", "stdout"]).unwrap();
        let copies = with_dir.plugins.expect("a plugin directory").copies_dir;
        assert!(copies.ends_with(format!("love-host-{}-plugins", std::process::id())), "{}", copies.display());
        let refused = |args: &[&str]| resolve_args(args).expect_err("refused").to_string();
        assert!(refused(&["love-host", "--sink", "stdout"]).starts_with("At least one component"));
        assert_eq!(
            refused(&["love-host", "ATDome", "ATDome:0", "--sink", "stdout"]),
            "component ATDome:0 is listed twice"
        );
        assert_eq!(
            refused(&["love-host", "ATDome", "--setting", "=x", "--sink", "stdout"]),
            "--setting \"=x\" is not of the form NAME=VALUE"
        );
        assert!(
            refused(&["love-host", "ATDome", "--producer-type", "ATDome", "--sink", "stdout"]).contains("NAME=TYPE")
        );
        assert_eq!(
            refused(&["love-host", "ATDome", "--telemetry-period", "0", "--sink", "stdout"]),
            "--telemetry-period must be a positive number of seconds, got 0"
        );
        assert_eq!(
            refused(&["love-host", "ATDome", "--sal", "sim", "--sim-rate=-1", "--sink", "stdout"]),
            "--sim-rate must be a positive number, got -1"
        );
        assert_eq!(
            refused(&["love-host", "ATDome", "--sal", "replay", "--sink", "stdout"]),
            "--sal replay needs --replay FILE"
        );
        assert!(refused(&["love-host", "ATDome", "--manager-url", "ftp://nowhere/"]).contains("ftp://nowhere"));
    }
}
