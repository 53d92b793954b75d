//! Kafka source configuration, from the same environment variables as ts_salobj.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::KafkaError;

/// SASL settings (`LSST_KAFKA_SECURITY_*`).
#[derive(Clone, PartialEq)]
pub struct SaslSettings {
    /// `LSST_KAFKA_SECURITY_USERNAME`.
    pub username: String,
    /// `LSST_KAFKA_SECURITY_PASSWORD`.
    pub password: String,
    /// `LSST_KAFKA_SECURITY_MECHANISM`: `SCRAM-SHA-512` (default), `SCRAM-SHA-256` or `PLAIN`.
    pub mechanism: String,
}

impl std::fmt::Debug for SaslSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslSettings")
            .field("username", &self.username)
            .field("password", &"***")
            .field("mechanism", &self.mechanism)
            .finish()
    }
}

/// Everything the Kafka source needs.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `LSST_TOPIC_SUBNAME` (required): topics are `lsst.<subname>.<Component>.<sal_name>`.
    pub topic_subname: String,
    /// `LSST_KAFKA_BROKER_ADDR`, comma-separated `host:port` list (default `broker:29092`, as
    /// salobj).
    pub brokers: Vec<String>,
    /// `LSST_SCHEMA_REGISTRY_URL` (default `http://schema-registry:8081`, as salobj).
    pub schema_registry_url: String,
    /// `LSST_KAFKA_SECURITY_PROTOCOL`: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` (the default when a
    /// username is set) or `SASL_SSL`.
    pub security_protocol: String,
    /// SASL, when `LSST_KAFKA_SECURITY_USERNAME` is set.
    pub sasl: Option<SaslSettings>,
    /// `LSST_MAX_HISTORY_READ` (default 500): how far back the late-joiner read of an indexed
    /// component's event topic goes to find the newest sample of each salIndex.
    pub max_history_read: i64,
    /// `LSST_HISTORY_READ_CONFIG`: per-component overrides of [`KafkaConfig::max_history_read`].
    pub history_read: BTreeMap<String, i64>,
    /// `LSST_KAFKA_PRODUCER_WAIT_ACKS` (default `1`): the producer's `acks`.
    pub producer_wait_acks: String,
    /// Client settings from salobj's configuration files, passed to librdkafka as they are.
    pub files: ClientFiles,
    /// `LOVE_KAFKA_TELEMETRY_INTERVAL_MS` (default 1000): telemetry is delivered to subscribers
    /// at most once per topic and salIndex per interval (the latest sample; see the module docs).
    pub telemetry_interval: Duration,
    /// `LOVE_KAFKA_TOPIC_REFRESH_MS` (default 30000): the longest wait between two reads of the
    /// broker's topic list, which picks up topics created later (read after 1 s, 2 s, 4 s...
    /// after a subscription or a new topic).
    pub topic_refresh: Duration,
    /// `LOVE_KAFKA_TOPICS_PER_CLIENT` (default 500): topics read by one librdkafka client (one
    /// connection per broker each); more topics get more clients, see love-kafka-partitions.
    pub topics_per_client: usize,
    /// The `private_identity` written on commands (default `LSST_IDENTITY`, else `user@host`, as
    /// salobj's default identity).
    pub identity: String,
    /// The `private_origin` written on commands (the process id, as salobj).
    pub origin: i64,
    /// `LSST_KAFKA_REPLICATION_FACTOR` for topics the writer creates (default 1).
    pub replication_factor: i16,
    /// Client id sent to the broker (`client.id`, default `love-host`).
    pub client_id: String,
    /// Largest message accepted by the tools' admin client (`message.max.bytes`, default 100 MB).
    pub max_message_size: usize,
    /// PEM file of CA certificates for TLS (`ssl.ca.location`); the system roots otherwise.
    pub ssl_ca_location: Option<String>,
}

/// librdkafka settings (`key: value`), in the order they are applied.
pub type Settings = Vec<(String, String)>;

/// The settings of salobj's three client configuration files, each a path to a YAML mapping of
/// librdkafka keys (`LSST_KAFKA_BROKER_CLIENT_CONFIGURATION`, `..._CONSUMER_...`,
/// `..._PRODUCER_...`). Empty when the variable is not set.
#[derive(Debug, Clone, Default)]
pub struct ClientFiles {
    /// Merged into the consumer's and the producer's settings, last.
    pub broker_client: Settings,
    /// Merged into the consumer's settings.
    pub consumer: Settings,
    /// Merged into the producer's settings.
    pub producer: Settings,
    /// `(variable, path)` of each file read, for error messages.
    pub paths: Vec<(String, String)>,
}

impl ClientFiles {
    /// ` (settings from VAR=path, ...)`, or nothing when no file was read.
    pub fn note(&self) -> String {
        if self.paths.is_empty() {
            return String::new();
        }
        let list: Vec<String> = self.paths.iter().map(|(v, p)| format!("{v}={p}")).collect();
        format!(" (settings from {})", list.join(", "))
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn default_identity() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "love".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

impl KafkaConfig {
    /// A configuration for `brokers` and `registry` with salobj's defaults otherwise.
    pub fn new(topic_subname: &str, brokers: &str, schema_registry_url: &str) -> KafkaConfig {
        KafkaConfig {
            topic_subname: topic_subname.to_string(),
            brokers: brokers.split(',').map(|b| b.trim().to_string()).filter(|b| !b.is_empty()).collect(),
            schema_registry_url: schema_registry_url.trim_end_matches('/').to_string(),
            security_protocol: "PLAINTEXT".into(),
            sasl: None,
            max_history_read: 500,
            history_read: BTreeMap::new(),
            producer_wait_acks: "1".into(),
            files: ClientFiles::default(),
            telemetry_interval: Duration::from_millis(200),
            topic_refresh: Duration::from_millis(30_000),
            topics_per_client: 500,
            identity: default_identity(),
            origin: std::process::id() as i64,
            replication_factor: 1,
            client_id: "love-host".into(),
            max_message_size: 100 * 1024 * 1024,
            ssl_ca_location: None,
        }
    }

    /// Read the configuration from the environment, as ts_salobj does.
    pub fn from_env() -> Result<KafkaConfig, KafkaError> {
        KafkaConfig::from_vars(env)
    }

    /// The configuration from variables looked up by `var` (a blank value counts as unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<KafkaConfig, KafkaError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let sub = var("LSST_TOPIC_SUBNAME").ok_or_else(|| {
            KafkaError::Config("LSST_TOPIC_SUBNAME must be set (the topic sub-namespace, e.g. `sal`)".into())
        })?;
        if sub.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(KafkaError::Config(format!("LSST_TOPIC_SUBNAME={sub:?} is not a valid topic name part")));
        }
        let brokers = var("LSST_KAFKA_BROKER_ADDR").unwrap_or_else(|| "broker:29092".into());
        let registry = var("LSST_SCHEMA_REGISTRY_URL").unwrap_or_else(|| "http://schema-registry:8081".into());
        let mut c = KafkaConfig::new(&sub, &brokers, &registry);
        c.read_security(&var)?;
        if let Some(h) = var("LSST_MAX_HISTORY_READ") {
            c.max_history_read = h
                .trim()
                .parse()
                .map_err(|_| KafkaError::Config(format!("LSST_MAX_HISTORY_READ={h:?} is not an integer")))?;
        }
        if let Some(path) = var("LSST_HISTORY_READ_CONFIG") {
            c.history_read = read_history_config(Path::new(&path))
                .map_err(|e| KafkaError::Config(format!("LSST_HISTORY_READ_CONFIG={path}: {e}")))?;
        }
        if let Some(acks) = var("LSST_KAFKA_PRODUCER_WAIT_ACKS") {
            c.producer_wait_acks = acks.trim().to_string();
        }
        if let Some(r) = var("LSST_KAFKA_REPLICATION_FACTOR") {
            c.replication_factor = r
                .trim()
                .parse()
                .map_err(|_| KafkaError::Config(format!("LSST_KAFKA_REPLICATION_FACTOR={r:?} is not an integer")))?;
        }
        if let Some(id) = var("LSST_IDENTITY") {
            c.identity = id;
        }
        for (name, which) in
            [("LOVE_KAFKA_TELEMETRY_INTERVAL_MS", "telemetry"), ("LOVE_KAFKA_TOPIC_REFRESH_MS", "refresh")]
        {
            if let Some(v) = var(name) {
                let ms: u64 = v
                    .trim()
                    .parse()
                    .map_err(|_| KafkaError::Config(format!("{name}={v:?} is not a number of milliseconds")))?;
                let d = Duration::from_millis(ms.max(1));
                if which == "telemetry" {
                    c.telemetry_interval = d;
                } else {
                    c.topic_refresh = d;
                }
            }
        }
        if let Some(v) = var("LOVE_KAFKA_TOPICS_PER_CLIENT") {
            c.topics_per_client = v.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                KafkaError::Config(format!("LOVE_KAFKA_TOPICS_PER_CLIENT={v:?} is not a positive number of topics"))
            })?;
        }
        let file = |name: &str| -> Result<Settings, KafkaError> {
            match var(name) {
                Some(path) => {
                    read_settings_file(Path::new(&path)).map_err(|e| KafkaError::Config(format!("{name}={path}: {e}")))
                }
                None => Ok(Settings::new()),
            }
        };
        let vars = [
            "LSST_KAFKA_BROKER_CLIENT_CONFIGURATION",
            "LSST_KAFKA_CONSUMER_CONFIGURATION",
            "LSST_KAFKA_PRODUCER_CONFIGURATION",
        ];
        c.files = ClientFiles {
            broker_client: file(vars[0])?,
            consumer: file(vars[1])?,
            producer: file(vars[2])?,
            paths: vars.iter().filter_map(|v| var(v).map(|p| (v.to_string(), p))).collect(),
        };
        c.adopt_admin_settings();
        Ok(c)
    }

    /// The SASL and TLS choice from `LSST_KAFKA_SECURITY_*`, checked as salobj would use it.
    fn read_security(&mut self, var: &impl Fn(&str) -> Option<String>) -> Result<(), KafkaError> {
        if let Some(username) = var("LSST_KAFKA_SECURITY_USERNAME") {
            let password = var("LSST_KAFKA_SECURITY_PASSWORD").ok_or_else(|| {
                KafkaError::Config("LSST_KAFKA_SECURITY_USERNAME is set but LSST_KAFKA_SECURITY_PASSWORD is not".into())
            })?;
            let mechanism = var("LSST_KAFKA_SECURITY_MECHANISM").unwrap_or_else(|| "SCRAM-SHA-512".into());
            self.sasl = Some(SaslSettings { username, password, mechanism });
            self.security_protocol = var("LSST_KAFKA_SECURITY_PROTOCOL").unwrap_or_else(|| "SASL_PLAINTEXT".into());
        } else if let Some(p) = var("LSST_KAFKA_SECURITY_PROTOCOL") {
            self.security_protocol = p;
        }
        self.security_protocol = self.security_protocol.to_ascii_uppercase();
        if !["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"].contains(&self.security_protocol.as_str()) {
            return Err(KafkaError::Config(format!(
                "LSST_KAFKA_SECURITY_PROTOCOL={} is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
                self.security_protocol
            )));
        }
        if self.security_protocol.starts_with("SASL") && self.sasl.is_none() {
            return Err(KafkaError::Config(format!(
                "LSST_KAFKA_SECURITY_PROTOCOL={} needs LSST_KAFKA_SECURITY_USERNAME and _PASSWORD",
                self.security_protocol
            )));
        }
        if let Some(s) = &self.sasl {
            if !["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"].contains(&s.mechanism.to_ascii_uppercase().as_str()) {
                return Err(KafkaError::Config(format!(
                    "LSST_KAFKA_SECURITY_MECHANISM={} is not supported (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN)",
                    s.mechanism
                )));
            }
        }
        Ok(())
    }

    /// The settings salobj builds for every client: the brokers, the security protocol and the
    /// SASL credentials from `LSST_KAFKA_SECURITY_*`.
    fn common_settings(&self) -> Settings {
        let mut v = vec![
            ("bootstrap.servers".to_string(), self.brokers.join(",")),
            ("security.protocol".to_string(), self.security_protocol.clone()),
            ("client.id".to_string(), self.client_id.clone()),
        ];
        if let Some(s) = &self.sasl {
            v.push(("sasl.mechanism".into(), s.mechanism.clone()));
            v.push(("sasl.username".into(), s.username.clone()));
            v.push(("sasl.password".into(), s.password.clone()));
        }
        if let Some(ca) = &self.ssl_ca_location {
            v.push(("ssl.ca.location".into(), ca.clone()));
        }
        v
    }

    /// The consumer's librdkafka settings, in salobj's order: the common settings, the consumer
    /// configuration file, then the broker client configuration file (later entries win).
    pub fn consumer_settings(&self) -> Settings {
        let mut v = self.common_settings();
        v.extend(self.files.consumer.iter().cloned());
        v.extend(self.files.broker_client.iter().cloned());
        v
    }

    /// The producer's librdkafka settings, in salobj's order: the common settings, `acks`
    /// (`LSST_KAFKA_PRODUCER_WAIT_ACKS`) and `queue.buffering.max.ms` 0, the producer
    /// configuration file, then the broker client configuration file (later entries win).
    pub fn producer_settings(&self) -> Settings {
        let mut v = self.common_settings();
        v.push(("acks".into(), self.producer_wait_acks.clone()));
        v.push(("queue.buffering.max.ms".into(), "0".into()));
        v.extend(self.files.producer.iter().cloned());
        v.extend(self.files.broker_client.iter().cloned());
        v
    }

    /// How far back the late-joiner read of `component` goes (`LSST_HISTORY_READ_CONFIG`'s
    /// entry for it, else `LSST_MAX_HISTORY_READ`).
    pub fn max_history_read_of(&self, component: &str) -> i64 {
        self.history_read.get(component).copied().unwrap_or(self.max_history_read)
    }

    /// Take the keys of the configuration files that the tools' pure-Rust admin client (topic
    /// creation in `love-sal-writer` and the tests) also needs: `client.id`,
    /// `message.max.bytes`, `ssl.ca.location` and the security keys. The host's own reading and
    /// writing pass every key to librdkafka unchanged.
    pub fn adopt_admin_settings(&mut self) {
        let files = [&self.files.consumer, &self.files.producer, &self.files.broker_client];
        let entries: Settings = files.into_iter().flatten().cloned().collect();
        for (k, v) in entries {
            match k.as_str() {
                "client.id" => self.client_id = v,
                "message.max.bytes" | "fetch.max.bytes" | "receive.message.max.bytes" => {
                    if let Ok(n) = v.parse() {
                        self.max_message_size = n;
                    }
                }
                "ssl.ca.location" => self.ssl_ca_location = Some(v),
                "security.protocol" => self.security_protocol = v.to_ascii_uppercase(),
                "sasl.mechanism" | "sasl.mechanisms" => {
                    if let Some(s) = &mut self.sasl {
                        s.mechanism = v;
                    }
                }
                "sasl.username" | "sasl.password" => {
                    let s = self.sasl.get_or_insert_with(|| SaslSettings {
                        username: String::new(),
                        password: String::new(),
                        mechanism: "SCRAM-SHA-512".into(),
                    });
                    if k == "sasl.username" {
                        s.username = v;
                    } else {
                        s.password = v;
                    }
                }
                _ => {}
            }
        }
    }

    /// `lsst.<subname>.<component>.<sal_name>`.
    pub fn topic_name(&self, component: &str, sal_name: &str) -> String {
        format!("lsst.{}.{}.{}", self.topic_subname, component, sal_name)
    }
}

/// Read `path` as salobj does (`yaml.safe_load` of the file): a YAML mapping, or an empty file.
fn read_yaml_mapping(path: &Path) -> Result<serde_yaml::Mapping, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let v: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| format!("not YAML: {e}"))?;
    match v {
        serde_yaml::Value::Mapping(m) => Ok(m),
        serde_yaml::Value::Null => Ok(serde_yaml::Mapping::new()),
        _ => Err("not a YAML mapping of settings".into()),
    }
}

/// A client configuration file: a YAML mapping of librdkafka keys to scalars, in file order.
fn read_settings_file(path: &Path) -> Result<Settings, String> {
    let mut out = Settings::new();
    for (k, v) in read_yaml_mapping(path)? {
        let key = match k {
            serde_yaml::Value::String(s) => s,
            other => return Err(format!("key {other:?} is not a string")),
        };
        let value = match v {
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Bool(b) => b.to_string(),
            serde_yaml::Value::Number(n) => n.to_string(),
            other => return Err(format!("{key}: value {other:?} is not a string, number or boolean")),
        };
        out.push((key, value));
    }
    Ok(out)
}

/// `LSST_HISTORY_READ_CONFIG`: a YAML mapping `Component: max history`. A missing file is no
/// override at all, as salobj.
fn read_history_config(path: &Path) -> Result<BTreeMap<String, i64>, String> {
    if !path.exists() {
        tracing::info!(file = %path.display(), "kafka: LSST_HISTORY_READ_CONFIG names no file; LSST_MAX_HISTORY_READ applies");
        return Ok(BTreeMap::new());
    }
    let mut out = BTreeMap::new();
    for (k, v) in read_yaml_mapping(path)? {
        let component = match k {
            serde_yaml::Value::String(s) => s,
            other => return Err(format!("key {other:?} is not a component name")),
        };
        let n = v.as_i64().ok_or_else(|| format!("{component}: {v:?} is not an integer"))?;
        out.insert(component, n);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashMap;

    fn write(dir: &Path, name: &str, text: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn config(vars: &[(&str, &str)]) -> Result<KafkaConfig, KafkaError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        KafkaConfig::from_vars(|k| vars.get(k).cloned())
    }

    fn get<'a>(settings: &'a Settings, key: &str) -> Option<&'a str> {
        settings.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_configuration_variables_are_paths_to_yaml_files_merged_in_salobjs_order() {
        let dir = tempfile::tempdir().unwrap();
        let broker = write(
            dir.path(),
            "broker.yaml",
            "ssl.endpoint.identification.algorithm: none\nsocket.keepalive.enable: true\nfetch.wait.max.ms: 100\n",
        );
        let consumer = write(
            dir.path(),
            "consumer.yaml",
            "fetch.wait.max.ms: 50\nauto.offset.reset: earliest\nclient.id: from-consumer-file\n",
        );
        let producer = write(dir.path(), "producer.yaml", "acks: all\nlinger.ms: 5\n");
        let c = config(&[
            ("LSST_TOPIC_SUBNAME", "sal"),
            ("LSST_KAFKA_BROKER_ADDR", "k1:9092,k2:9092"),
            ("LSST_KAFKA_SECURITY_USERNAME", "love"),
            ("LSST_KAFKA_SECURITY_PASSWORD", "secret"),
            ("LSST_KAFKA_BROKER_CLIENT_CONFIGURATION", &broker),
            ("LSST_KAFKA_CONSUMER_CONFIGURATION", &consumer),
            ("LSST_KAFKA_PRODUCER_CONFIGURATION", &producer),
        ])
        .unwrap();
        let cs = c.consumer_settings();
        assert_eq!(get(&cs, "bootstrap.servers"), Some("k1:9092,k2:9092"));
        assert_eq!(get(&cs, "security.protocol"), Some("SASL_PLAINTEXT"));
        assert_eq!(get(&cs, "sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(get(&cs, "sasl.username"), Some("love"));
        // Every key reaches the client; the broker client file is merged last and wins.
        assert_eq!(get(&cs, "auto.offset.reset"), Some("earliest"));
        assert_eq!(get(&cs, "socket.keepalive.enable"), Some("true"));
        assert_eq!(get(&cs, "ssl.endpoint.identification.algorithm"), Some("none"));
        assert_eq!(get(&cs, "fetch.wait.max.ms"), Some("100"));
        assert_eq!(get(&cs, "client.id"), Some("from-consumer-file"));
        assert_eq!(get(&cs, "acks"), None, "producer settings stay out of the consumer");
        let ps = c.producer_settings();
        assert_eq!(get(&ps, "acks"), Some("all"), "the producer file comes after LSST_KAFKA_PRODUCER_WAIT_ACKS");
        assert_eq!(get(&ps, "queue.buffering.max.ms"), Some("0"));
        assert_eq!(get(&ps, "linger.ms"), Some("5"));
        assert_eq!(get(&ps, "socket.keepalive.enable"), Some("true"));
        assert_eq!(get(&ps, "auto.offset.reset"), None, "consumer settings stay out of the producer");
        // Without files: salobj's producer defaults.
        let plain = config(&[("LSST_TOPIC_SUBNAME", "sal"), ("LSST_KAFKA_PRODUCER_WAIT_ACKS", "0")]).unwrap();
        assert_eq!(get(&plain.producer_settings(), "acks"), Some("0"));
        assert_eq!(get(&plain.producer_settings(), "queue.buffering.max.ms"), Some("0"));
        assert_eq!(get(&config(&[("LSST_TOPIC_SUBNAME", "sal")]).unwrap().producer_settings(), "acks"), Some("1"));
    }

    #[test]
    fn a_bad_configuration_file_is_an_error_naming_the_variable_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let list = write(dir.path(), "list.yaml", "- a\n- b\n");
        let nested = write(dir.path(), "nested.yaml", "sasl:\n  username: x\n");
        let broken = write(dir.path(), "broken.yaml", "a: [\n");
        let missing = dir.path().join("absent.yaml").display().to_string();
        for (file, why) in [
            (&list, "not a YAML mapping"),
            (&nested, "sasl: value"),
            (&broken, "not YAML"),
            (&missing, "cannot read the file"),
        ] {
            let e = config(&[("LSST_TOPIC_SUBNAME", "sal"), ("LSST_KAFKA_CONSUMER_CONFIGURATION", file)])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("LSST_KAFKA_CONSUMER_CONFIGURATION") && e.contains(file.as_str()) && e.contains(why),
                "{e}"
            );
        }
        // An empty file is an empty mapping, as yaml.safe_load gives None and salobj merges nothing.
        let empty = write(dir.path(), "empty.yaml", "");
        let c = config(&[("LSST_TOPIC_SUBNAME", "sal"), ("LSST_KAFKA_PRODUCER_CONFIGURATION", &empty)]).unwrap();
        assert!(c.files.producer.is_empty());
    }

    #[test]
    fn history_read_config_overrides_the_max_history_of_the_components_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let h = write(dir.path(), "history.yaml", "Script: 5\nMTM1M3: 0\n");
        let c =
            config(&[("LSST_TOPIC_SUBNAME", "sal"), ("LSST_MAX_HISTORY_READ", "77"), ("LSST_HISTORY_READ_CONFIG", &h)])
                .unwrap();
        assert_eq!(c.max_history_read_of("Script"), 5);
        assert_eq!(c.max_history_read_of("MTM1M3"), 0);
        assert_eq!(c.max_history_read_of("ATDome"), 77);
        // A missing file is ignored, as salobj does.
        let absent = dir.path().join("none.yaml").display().to_string();
        let c = config(&[("LSST_TOPIC_SUBNAME", "sal"), ("LSST_HISTORY_READ_CONFIG", &absent)]).unwrap();
        assert_eq!(c.max_history_read_of("Script"), 500);
        let bad = write(dir.path(), "bad.yaml", "Script: many\n");
        let e = config(&[("LSST_TOPIC_SUBNAME", "sal"), ("LSST_HISTORY_READ_CONFIG", &bad)]).unwrap_err().to_string();
        assert!(e.contains("LSST_HISTORY_READ_CONFIG") && e.contains("bad.yaml") && e.contains("Script"), "{e}");
    }

    #[test]
    fn admin_settings_are_taken_from_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "c.yaml", "client.id: abc\nmessage.max.bytes: 1000\n");
        let c = config(&[("LSST_TOPIC_SUBNAME", "sal"), ("LSST_KAFKA_BROKER_CLIENT_CONFIGURATION", &f)]).unwrap();
        assert_eq!(c.client_id, "abc");
        assert_eq!(c.max_message_size, 1000);
        let c = KafkaConfig::new("sal", "a:1, b:2", "http://r:8081/");
        assert_eq!(c.brokers, vec!["a:1", "b:2"]);
        assert_eq!(c.schema_registry_url, "http://r:8081");
        assert_eq!(c.topic_name("ATDome", "logevent_heartbeat"), "lsst.sal.ATDome.logevent_heartbeat");
    }
}
