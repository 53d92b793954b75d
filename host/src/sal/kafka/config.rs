//! Kafka source configuration, from the same environment variables as ts_salobj.

use std::collections::BTreeMap;
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
    /// Extra client settings: `LSST_KAFKA_BROKER_CLIENT_CONFIGURATION`, then
    /// `LSST_KAFKA_CONSUMER_CONFIGURATION` and `LSST_KAFKA_PRODUCER_CONFIGURATION` (YAML
    /// mappings of librdkafka-style keys). See [`KafkaConfig::apply_extra`] for the keys this
    /// client understands; others are logged and ignored.
    pub extra: BTreeMap<String, String>,
    /// `LOVE_KAFKA_TELEMETRY_INTERVAL_MS` (default 1000): telemetry is delivered to subscribers
    /// at most once per topic and salIndex per interval (the latest sample; see the module docs).
    pub telemetry_interval: Duration,
    /// `LOVE_KAFKA_TOPIC_REFRESH_MS` (default 5000): how often the broker's topic list is read to
    /// pick up topics created later.
    pub topic_refresh: Duration,
    /// The `private_identity` written on commands (default `LSST_IDENTITY`, else `user@host`, as
    /// salobj's default identity).
    pub identity: String,
    /// The `private_origin` written on commands (the process id, as salobj).
    pub origin: i64,
    /// `LSST_KAFKA_REPLICATION_FACTOR` for topics the writer creates (default 1).
    pub replication_factor: i16,
    /// Client id sent to the broker (`client.id`, default `love-host`).
    pub client_id: String,
    /// Largest message accepted (`message.max.bytes`, default 100 MB).
    pub max_message_size: usize,
    /// PEM file of CA certificates for TLS (`ssl.ca.location`); the system roots otherwise.
    pub ssl_ca_location: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
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
            extra: BTreeMap::new(),
            telemetry_interval: Duration::from_millis(1000),
            topic_refresh: Duration::from_millis(5000),
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
        let sub = env("LSST_TOPIC_SUBNAME").ok_or_else(|| {
            KafkaError::Config("LSST_TOPIC_SUBNAME must be set (the topic sub-namespace, e.g. `sal`)".into())
        })?;
        if sub.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(KafkaError::Config(format!("LSST_TOPIC_SUBNAME={sub:?} is not a valid topic name part")));
        }
        let brokers = env("LSST_KAFKA_BROKER_ADDR").unwrap_or_else(|| "broker:29092".into());
        let registry = env("LSST_SCHEMA_REGISTRY_URL").unwrap_or_else(|| "http://schema-registry:8081".into());
        let mut c = KafkaConfig::new(&sub, &brokers, &registry);
        if let Some(username) = env("LSST_KAFKA_SECURITY_USERNAME") {
            let password = std::env::var("LSST_KAFKA_SECURITY_PASSWORD").map_err(|_| {
                KafkaError::Config("LSST_KAFKA_SECURITY_USERNAME is set but LSST_KAFKA_SECURITY_PASSWORD is not".into())
            })?;
            let mechanism = env("LSST_KAFKA_SECURITY_MECHANISM").unwrap_or_else(|| "SCRAM-SHA-512".into());
            c.sasl = Some(SaslSettings { username, password, mechanism });
            c.security_protocol = env("LSST_KAFKA_SECURITY_PROTOCOL").unwrap_or_else(|| "SASL_PLAINTEXT".into());
        } else if let Some(p) = env("LSST_KAFKA_SECURITY_PROTOCOL") {
            c.security_protocol = p;
        }
        c.security_protocol = c.security_protocol.to_ascii_uppercase();
        if !["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"].contains(&c.security_protocol.as_str()) {
            return Err(KafkaError::Config(format!(
                "LSST_KAFKA_SECURITY_PROTOCOL={} is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
                c.security_protocol
            )));
        }
        if c.security_protocol.starts_with("SASL") && c.sasl.is_none() {
            return Err(KafkaError::Config(format!(
                "LSST_KAFKA_SECURITY_PROTOCOL={} needs LSST_KAFKA_SECURITY_USERNAME and _PASSWORD",
                c.security_protocol
            )));
        }
        if let Some(s) = &c.sasl {
            if !["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"].contains(&s.mechanism.to_ascii_uppercase().as_str()) {
                return Err(KafkaError::Config(format!(
                    "LSST_KAFKA_SECURITY_MECHANISM={} is not supported (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN)",
                    s.mechanism
                )));
            }
        }
        if let Some(h) = env("LSST_MAX_HISTORY_READ") {
            c.max_history_read = h
                .trim()
                .parse()
                .map_err(|_| KafkaError::Config(format!("LSST_MAX_HISTORY_READ={h:?} is not an integer")))?;
        }
        if let Some(r) = env("LSST_KAFKA_REPLICATION_FACTOR") {
            c.replication_factor = r
                .trim()
                .parse()
                .map_err(|_| KafkaError::Config(format!("LSST_KAFKA_REPLICATION_FACTOR={r:?} is not an integer")))?;
        }
        if let Some(id) = env("LSST_IDENTITY") {
            c.identity = id;
        }
        for (var, name) in
            [("LOVE_KAFKA_TELEMETRY_INTERVAL_MS", "telemetry"), ("LOVE_KAFKA_TOPIC_REFRESH_MS", "refresh")]
        {
            if let Some(v) = env(var) {
                let ms: u64 = v
                    .trim()
                    .parse()
                    .map_err(|_| KafkaError::Config(format!("{var}={v:?} is not a number of milliseconds")))?;
                let d = Duration::from_millis(ms.max(1));
                if name == "telemetry" {
                    c.telemetry_interval = d;
                } else {
                    c.topic_refresh = d;
                }
            }
        }
        for var in [
            "LSST_KAFKA_BROKER_CLIENT_CONFIGURATION",
            "LSST_KAFKA_CONSUMER_CONFIGURATION",
            "LSST_KAFKA_PRODUCER_CONFIGURATION",
        ] {
            if let Some(text) = env(var) {
                let map = parse_extra(&text).map_err(|e| KafkaError::Config(format!("{var}: {e}")))?;
                c.extra.extend(map);
            }
        }
        c.apply_extra();
        Ok(c)
    }

    /// Apply the extra settings this client understands: `client.id`, `message.max.bytes`
    /// (or `fetch.max.bytes`), `ssl.ca.location`,
    /// `security.protocol`, `sasl.mechanism(s)`, `sasl.username`, `sasl.password`. Others are
    /// librdkafka tuning knobs with no equivalent here: they are logged once and ignored.
    pub fn apply_extra(&mut self) {
        for (k, v) in self.extra.clone() {
            match k.as_str() {
                "client.id" => self.client_id = v,
                "message.max.bytes" | "fetch.max.bytes" | "receive.message.max.bytes" => {
                    if let Ok(n) = v.parse() {
                        self.max_message_size = n;
                    }
                }
                "ssl.ca.location" => self.ssl_ca_location = Some(v),
                "enable.ssl.certificate.verification"
                    if matches!(v.to_ascii_lowercase().as_str(), "false" | "0" | "no") =>
                {
                    tracing::warn!(
                        "kafka: enable.ssl.certificate.verification=false is not supported; certificates are verified"
                    )
                }
                "security.protocol" => self.security_protocol = v.to_ascii_uppercase(),
                "sasl.mechanism" | "sasl.mechanisms" => {
                    if let Some(s) = &mut self.sasl {
                        s.mechanism = v;
                    }
                }
                "sasl.username" => {
                    let s = self.sasl.get_or_insert_with(|| SaslSettings {
                        username: String::new(),
                        password: String::new(),
                        mechanism: "SCRAM-SHA-512".into(),
                    });
                    s.username = v;
                }
                "sasl.password" => {
                    let s = self.sasl.get_or_insert_with(|| SaslSettings {
                        username: String::new(),
                        password: String::new(),
                        mechanism: "SCRAM-SHA-512".into(),
                    });
                    s.password = v;
                }
                other => {
                    tracing::info!(setting = other, "kafka: extra client setting not used by this client, ignored")
                }
            }
        }
    }

    /// `lsst.<subname>.<component>.<sal_name>`.
    pub fn topic_name(&self, component: &str, sal_name: &str) -> String {
        format!("lsst.{}.{}.{}", self.topic_subname, component, sal_name)
    }
}

/// A YAML mapping of settings (`key: value`) as strings.
fn parse_extra(text: &str) -> Result<BTreeMap<String, String>, String> {
    let v: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let map = match v {
        serde_yaml::Value::Mapping(m) => m,
        serde_yaml::Value::Null => return Ok(BTreeMap::new()),
        _ => return Err("not a YAML mapping of settings".into()),
    };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let key = match k {
            serde_yaml::Value::String(s) => s,
            other => return Err(format!("key {other:?} is not a string")),
        };
        let value = match v {
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Bool(b) => b.to_string(),
            serde_yaml::Value::Number(n) => n.to_string(),
            other => return Err(format!("{key}: value {other:?} is not a scalar")),
        };
        out.insert(key, value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_yaml() {
        let m = parse_extra("client.id: abc\nmessage.max.bytes: 1000\nenable.ssl.certificate.verification: false\n")
            .unwrap();
        assert_eq!(m["client.id"], "abc");
        assert_eq!(m["message.max.bytes"], "1000");
        let mut c = KafkaConfig::new("sal", "a:1, b:2", "http://r:8081/");
        assert_eq!(c.brokers, vec!["a:1", "b:2"]);
        assert_eq!(c.schema_registry_url, "http://r:8081");
        c.extra = m;
        c.apply_extra();
        assert_eq!(c.client_id, "abc");
        assert_eq!(c.max_message_size, 1000);
        assert!(parse_extra("- a\n- b").is_err());
        assert_eq!(c.topic_name("ATDome", "logevent_heartbeat"), "lsst.sal.ATDome.logevent_heartbeat");
    }
}
