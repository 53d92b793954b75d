//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Host LOVE producers as plugins and stream SAL data to the LOVE-manager.
///
/// With no manager URL (neither --manager-url nor WEBSOCKET_HOST), messages go to standard
/// output as JSON lines. With no Kafka broker (LSST_KAFKA_BROKER_ADDR), the built-in SAL
/// simulator provides the data.
#[derive(Debug, Parser)]
#[command(name = "love-host", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do (default: run the producers).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Options of the default `run` mode.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the plugins a directory offers (name, version, type, claims, interface, file)
    /// without connecting anywhere.
    Plugins {
        /// Directory of plugin `.so` files.
        #[arg(long, env = "LOVE_PLUGIN_DIR")]
        plugin_dir: PathBuf,
        /// State directory holding the crash quarantine (default as for running).
        #[arg(long, env = "LOVE_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// Forget the crash records of this directory's files: a quarantined file loads again.
        #[arg(long)]
        clear_quarantine: bool,
        /// Largest plugin file accepted, in bytes (as for running, so the listing agrees with it).
        #[arg(long, default_value_t = crate::plugin::loader::DEFAULT_MAX_PLUGIN_SIZE)]
        max_plugin_size: u64,
    },
    /// Show the topic catalog in force: its components; a component's topics; a topic's fields
    /// with types, array lengths and units.
    Catalog {
        /// A component (`ATDome`); without it, every component is listed.
        component: Option<String>,
        /// A topic of the component (`position`; `evt_`, `tel_` or `cmd_` picks the kind when
        /// a name is both an event and a telemetry topic); without it, the component's topics.
        topic: Option<String>,
        /// ts_xml interface directory (`sal_interfaces`) to read instead of the built-in
        /// catalog.
        #[arg(long, env = "TS_XML_DIR")]
        xml_dir: Option<PathBuf>,
    },
}

/// Log levels by name or by the original's numbers (10 debug, 20 info, 30 warning, 40 error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// 10
    Debug,
    /// 20
    Info,
    /// 30
    Warning,
    /// 40
    Error,
}

impl std::str::FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "debug" | "trace" | "10" => Ok(LogLevel::Debug),
            "info" | "20" => Ok(LogLevel::Info),
            "warning" | "warn" | "30" => Ok(LogLevel::Warning),
            "error" | "critical" | "40" | "50" => Ok(LogLevel::Error),
            other => match other.parse::<i64>() {
                Ok(n) if n < 20 => Ok(LogLevel::Debug),
                Ok(n) if n < 30 => Ok(LogLevel::Info),
                Ok(n) if n < 40 => Ok(LogLevel::Warning),
                Ok(_) => Ok(LogLevel::Error),
                Err(_) => Err(format!("unknown log level {s:?} (use debug, info, warning, error or 10/20/30/40)")),
            },
        }
    }
}

impl LogLevel {
    /// The tracing filter directive.
    pub fn directive(self) -> String {
        let level = match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warn",
            LogLevel::Error => "error",
        };
        // Other crates (the Kafka client, HTTP, websocket) say only what is wrong unless
        // LOVE_LOG asks for more: at info they would log every connection and topic.
        let others = if self == LogLevel::Error { "error" } else { "warn" };
        format!("{others},love_host={level},love_catalog={level},love_plugin_api={level}")
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Where messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SinkArg {
    /// The manager when one is configured, else standard output.
    Auto,
    /// The LOVE-manager websocket (a URL is required).
    Websocket,
    /// Standard output, one JSON message per line.
    Stdout,
}

/// Which SAL source to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SalArg {
    /// The built-in simulator.
    Sim,
    /// A recorded JSON-lines file (--replay FILE).
    Replay,
    /// Kafka + Avro (salobj 7+).
    Kafka,
}

/// Options of the default mode: run producers.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Components to serve: `Name` or `Name:index`, space- or comma-separated.
    #[arg(value_name = "COMPONENT")]
    pub positional: Vec<String>,

    /// Components to serve (same as the positional list; the original's container read them
    /// from LOVE_CSC_PRODUCER).
    #[arg(long, num_args = 1.., value_name = "COMPONENT", env = "LOVE_CSC_PRODUCER")]
    pub components: Vec<String>,

    /// Configuration file (TOML) holding any of these options under their long names, plus
    /// `[[links]]` for several manager endpoints. Command line and environment win over it.
    #[arg(long, env = "LOVE_HOST_CONFIG")]
    pub config: Option<PathBuf>,

    /// Directory of producer plugins (`*.so`). Without it only the built-in `base` producer is
    /// available.
    #[arg(long, env = "LOVE_PLUGIN_DIR")]
    pub plugin_dir: Option<PathBuf>,

    /// Log level: debug, info, warning, error, or the original's 10/20/30/40.
    #[arg(long, default_value = "info", env = "LOVE_LOG_LEVEL")]
    pub log_level: LogLevel,

    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Telemetry topics to poll (`tel_`/`evt_` prefixes), for every component.
    #[arg(long, num_args = 1.., value_name = "NAME")]
    pub periodic_data: Option<Vec<String>>,

    /// Event topics to forward (`evt_`/`tel_` prefixes), for every component.
    #[arg(long, num_args = 1.., value_name = "NAME")]
    pub asynchronous_data: Option<Vec<String>>,

    /// Share the components with every host started with this group name and the same
    /// component list, through a Kafka consumer group (needs the Kafka source); each component
    /// is served by one live host. See the README's "Running several hosts".
    #[arg(long, env = "LOVE_GROUP", value_name = "NAME")]
    pub group: Option<String>,

    /// Serve /healthz, /readyz, /metrics and /producers on this address (e.g. 127.0.0.1:9100).
    #[arg(long, env = "LOVE_ADMIN_ADDR")]
    pub admin_addr: Option<std::net::SocketAddr>,

    /// Accept a hot-deployed plugin whose version is not newer than the loaded one.
    #[arg(long)]
    pub allow_downgrade: bool,

    /// Where private copies of hot-deployed plugins are loaded from (default: a directory under
    /// the system temporary directory). Each deployment adds one copy; they are never unloaded.
    #[arg(long)]
    pub plugin_copies_dir: Option<PathBuf>,

    /// Largest plugin file accepted, in bytes; a larger `*.so` is refused before it is read or
    /// copied.
    #[arg(long, default_value_t = crate::plugin::loader::DEFAULT_MAX_PLUGIN_SIZE)]
    pub max_plugin_size: u64,

    /// Where love-host keeps state across restarts: the quarantine of plugin files that crashed
    /// the process. Default: $STATE_DIRECTORY (systemd), /var/lib/love-host for root, else
    /// ~/.local/state/love-host.
    #[arg(long, env = "LOVE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Seconds a call into a producer may run before the watchdog reports it stuck (its inputs
    /// are then dropped until it returns; the other producers keep running).
    #[arg(long, default_value_t = 5.0)]
    pub producer_call_timeout: f64,

    /// A producer setting handed to every producer: NAME=VALUE (repeatable), e.g.
    /// `FINISHED_SCRIPTS_LIST_SIZE=20` or a third-party plugin's own settings.
    #[arg(long = "setting", value_name = "NAME=VALUE")]
    pub settings: Vec<String>,

    /// Force a producer type for a component: NAME=TYPE (repeatable).
    #[arg(long, value_name = "NAME=TYPE")]
    pub producer_type: Vec<String>,

    /// LOVE-manager URL, ws[s]://host[:port]/path. Default: from WEBSOCKET_HOST and
    /// PROCESS_CONNECTION_PASS, as the original.
    #[arg(long, env = "LOVE_MANAGER_URL")]
    pub manager_url: Option<String>,

    /// Where messages go.
    #[arg(long, value_enum, default_value = "auto")]
    pub sink: SinkArg,

    /// Extra CA certificates (PEM) for wss:// manager URLs.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,

    /// SAL source. Default: kafka when LSST_KAFKA_BROKER_ADDR is set, replay when --replay is
    /// given, else sim.
    #[arg(long, value_enum)]
    pub sal: Option<SalArg>,

    /// ts_xml interface directory (`sal_interfaces`) for the topic catalog. Default: the
    /// built-in catalog, every component of the ts_xml release it was generated from.
    #[arg(long, env = "TS_XML_DIR")]
    pub xml_dir: Option<PathBuf>,

    /// Seed of the simulator (reproducible runs).
    #[arg(long)]
    pub sim_seed: Option<u64>,

    /// Scale the simulator's publication rates.
    #[arg(long, default_value_t = 1.0)]
    pub sim_rate: f64,

    /// Stop simulated heartbeats: `NAME[:index]@SECONDS`, comma-separated (also
    /// LOVE_SIM_STOP_HEARTBEAT), to see the Heartbeat stream's lost count grow.
    #[arg(long, value_name = "NAME[:i]@S")]
    pub sim_stop_heartbeat: Option<String>,

    /// Replay this recorded file (implies --sal replay).
    #[arg(long)]
    pub replay: Option<PathBuf>,

    /// Replay speed factor (1 = recorded speed, 0 = as fast as possible).
    #[arg(long, default_value_t = 1.0)]
    pub replay_speed: f64,

    /// Stop replaying at the first bad line (default: skip it with a warning).
    #[arg(long)]
    pub replay_strict: bool,

    /// Record every SAL sample to this JSON-lines file.
    #[arg(long)]
    pub record: Option<PathBuf>,

    /// Telemetry send period in seconds (the original's 2 s).
    #[arg(long, default_value_t = 2.0)]
    pub telemetry_period: f64,

    /// Stop re-sending a telemetry topic after this many seconds without a new sample.
    #[arg(long, default_value_t = 30.0)]
    pub telemetry_stale_after: f64,

    /// Subscription re-send period in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub resubscribe_period: f64,

    /// Wait between reconnection attempts, in seconds (jittered).
    #[arg(long, default_value_t = 3.0)]
    pub reconnect_wait: f64,
}

impl RunArgs {
    /// All component names given, positional and --components.
    pub fn component_args(&self) -> Vec<String> {
        self.positional.iter().chain(self.components.iter()).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_components_and_levels() {
        let cli = Cli::try_parse_from([
            "love-host",
            "--log-level",
            "30",
            "--components",
            "Watcher",
            "ScriptQueue:1",
            "ATDome",
        ])
        .unwrap();
        assert_eq!(cli.run.log_level, LogLevel::Warning);
        assert_eq!(cli.run.component_args(), ["Watcher", "ScriptQueue:1", "ATDome"]);
        let cli = Cli::try_parse_from(["love-host", "ATDome", "Watcher"]).unwrap();
        assert_eq!(cli.run.component_args(), ["ATDome", "Watcher"]);
        let cli = Cli::try_parse_from(["love-host", "plugins", "--plugin-dir", "/tmp"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Plugins { .. })));
        let cli = Cli::try_parse_from(["love-host", "catalog", "ATDome", "position", "--xml-dir", "/x"]).unwrap();
        match cli.command {
            Some(Command::Catalog { component, topic, xml_dir }) => {
                assert_eq!((component.as_deref(), topic.as_deref()), (Some("ATDome"), Some("position")));
                assert_eq!(xml_dir, Some(PathBuf::from("/x")));
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["love-host", "--log-level", "loud"]).is_err());
    }
}
