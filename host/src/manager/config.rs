//! Link configuration: where the manager is, how to reach it, and the link's timings.
//!
//! The manager URL comes from `--manager-url ws[s]://host[:port]/path` or, as in the original
//! LOVE-producer, from `WEBSOCKET_HOST` (`host[:port]/path`) plus `PROCESS_CONNECTION_PASS`.
//! Unlike the original (spec quirk 20), the password is percent-encoded in the query, and it
//! never appears in `Display`/`Debug` output or in error messages.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tokio_tungstenite::tungstenite::http::Uri;

/// Environment variable with the manager's `host[:port]/path` (as the original).
pub const ENV_WEBSOCKET_HOST: &str = "WEBSOCKET_HOST";
/// Environment variable with the manager's password (as the original; default empty).
pub const ENV_PASSWORD: &str = "PROCESS_CONNECTION_PASS";

/// Where the messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkKind {
    /// The LOVE-manager websocket.
    Websocket,
    /// JSON lines on standard output.
    Stdout,
}

/// Configuration errors (fatal: the binary exits non-zero).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The URL does not parse or is not a websocket URL. `url` is already redacted.
    #[error("invalid manager URL {url}: {reason}")]
    InvalidUrl {
        /// The URL as given, with any query and user info removed.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// `--sink websocket` without a manager URL.
    #[error("the websocket sink needs a manager URL: give --manager-url or set {ENV_WEBSOCKET_HOST}")]
    NoManagerUrl,
}

/// Websocket scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain `ws://`.
    Ws,
    /// `wss://` (TLS through rustls).
    Wss,
}

/// The manager's URL with its password kept apart, so that it can be shown without it.
#[derive(Clone, PartialEq, Eq)]
pub struct ManagerUrl {
    scheme: Scheme,
    /// `host[:port]` (IPv6 hosts in brackets).
    authority: String,
    /// The path, starting with `/`.
    path: String,
    /// Other query parameters given in the URL, already encoded (without `password`).
    extra_query: Option<String>,
    /// The password (not encoded).
    password: String,
}

/// Characters left as they are by [`percent_encode`]: RFC 3986 "unreserved".
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Percent-encode every byte except RFC 3986 unreserved characters. The manager decodes the
/// query with Python's `parse_qs`, which turns `%XX` back into the UTF-8 bytes.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if is_unreserved(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A user-given URL string made safe to show: no query, no user info.
fn redact_raw(raw: &str) -> String {
    let mut s = raw.split(['?', '#']).next().unwrap_or("").to_string();
    if raw.contains('?') {
        s.push_str("?<query removed>");
    }
    // Drop user info (`scheme://user:pass@host`).
    if let Some(scheme_end) = s.find("://") {
        let rest = &s[scheme_end + 3..];
        let auth_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..auth_end].rfind('@') {
            s = format!("{}://<user info removed>@{}", &s[..scheme_end], &rest[at + 1..]);
        }
    }
    s
}

impl ManagerUrl {
    /// Parse `ws[s]://host[:port]/path[?query]`. A `password` query parameter, if present,
    /// overrides `password`. User info (`user:pass@`) is refused.
    pub fn parse(url: &str, password: &str) -> Result<ManagerUrl, ConfigError> {
        let invalid = |reason: &str| ConfigError::InvalidUrl { url: redact_raw(url), reason: reason.to_string() };
        let uri: Uri = url
            .trim()
            .parse()
            .map_err(|e: tokio_tungstenite::tungstenite::http::uri::InvalidUri| invalid(&e.to_string()))?;
        let scheme = match uri.scheme_str().map(|s| s.to_ascii_lowercase()) {
            Some(s) if s == "ws" => Scheme::Ws,
            Some(s) if s == "wss" => Scheme::Wss,
            Some(_) => return Err(invalid("the scheme must be ws:// or wss://")),
            None => return Err(invalid("missing scheme: expected ws://host[:port]/path or wss://…")),
        };
        let authority = uri.authority().ok_or_else(|| invalid("missing host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("user info in the URL is not supported; give the password separately"));
        }
        if authority.host().is_empty() {
            return Err(invalid("missing host"));
        }
        let path = if uri.path().is_empty() { "/".to_string() } else { uri.path().to_string() };
        let mut password = password.to_string();
        let mut extra = Vec::new();
        if let Some(q) = uri.query() {
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                if percent_decode(k) == "password" {
                    password = percent_decode(v);
                } else {
                    extra.push(pair.to_string());
                }
            }
        }
        // Whatever logs the URL (a library at trace level), the password never shows.
        super::redact::register_secret(&password);
        Ok(ManagerUrl {
            scheme,
            authority: authority.as_str().to_string(),
            path,
            extra_query: (!extra.is_empty()).then(|| extra.join("&")),
            password,
        })
    }

    /// As the original: `ws://` + `WEBSOCKET_HOST` + `/?password=` + password (percent-encoded
    /// here). `host` is `host[:port]/path`; a `ws://`/`wss://` prefix is also accepted.
    pub fn from_websocket_host(host: &str, password: &str) -> Result<ManagerUrl, ConfigError> {
        let host = host.trim();
        let lower = host.to_ascii_lowercase();
        let with_scheme = if lower.starts_with("ws://") || lower.starts_with("wss://") {
            host.to_string()
        } else {
            format!("ws://{host}")
        };
        // The original appends "/?password=": keep exactly one slash before the query.
        let base = with_scheme.trim_end_matches('/');
        let url = format!("{base}/");
        ManagerUrl::parse(&url, password).map_err(|e| match e {
            ConfigError::InvalidUrl { reason, .. } => {
                ConfigError::InvalidUrl { url: format!("{ENV_WEBSOCKET_HOST}={}", redact_raw(host)), reason }
            }
            other => other,
        })
    }

    /// `ws` or `wss`.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// `host[:port]`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether a (non-empty) password is set.
    pub fn has_password(&self) -> bool {
        !self.password.is_empty()
    }

    fn scheme_str(&self) -> &'static str {
        match self.scheme {
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }

    fn render(&self, password: &str) -> String {
        let mut s = format!("{}://{}{}?", self.scheme_str(), self.authority, self.path);
        if let Some(extra) = &self.extra_query {
            s.push_str(extra);
            s.push('&');
        }
        s.push_str("password=");
        s.push_str(password);
        s
    }

    /// The full URL with the percent-encoded password. Secret: give it only to the websocket
    /// client, never to a log line or an error.
    pub fn expose_secret_url(&self) -> String {
        self.render(&percent_encode(&self.password))
    }
}

/// Shows the URL with the password replaced by `***` (left empty when there is none).
impl fmt::Display for ManagerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(if self.password.is_empty() { "" } else { "***" }))
    }
}

impl fmt::Debug for ManagerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManagerUrl({self})")
    }
}

/// Everything the link needs.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The manager, if any.
    pub url: Option<ManagerUrl>,
    /// Where messages go.
    pub sink: SinkKind,
    /// Wait between connection attempts (jittered by ±20 %).
    pub reconnect_wait: Duration,
    /// Period of [`LinkEvent::Resubscribe`](super::LinkEvent::Resubscribe) while connected.
    pub resubscribe_period: Duration,
    /// Send a ping when nothing was received for this long.
    pub ping_interval: Duration,
    /// Reconnect when nothing (pong or other) arrives this long after a ping was due.
    pub pong_timeout: Duration,
    /// Queue length above which events are coalesced too (telemetry always is while queued);
    /// the queue never holds more than twice this many messages.
    pub queue_capacity: usize,
    /// Upper bound of the bytes held in the queue (oldest messages dropped beyond it).
    pub queue_max_bytes: usize,
    /// How long shutdown may spend flushing the queue.
    pub shutdown_flush: Duration,
    /// Bound on one connection attempt (TCP + TLS + websocket handshake).
    pub connect_timeout: Duration,
    /// Extra PEM CA certificates for `wss://` (added to the system roots).
    pub ca_file: Option<PathBuf>,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            url: None,
            sink: SinkKind::Stdout,
            reconnect_wait: Duration::from_secs(3),
            resubscribe_period: Duration::from_secs(60),
            ping_interval: Duration::from_secs(5),
            pong_timeout: Duration::from_secs(10),
            queue_capacity: 4096,
            queue_max_bytes: 64 * 1024 * 1024,
            shutdown_flush: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(10),
            ca_file: None,
        }
    }
}

impl LinkConfig {
    /// The configuration the CLI builds, reading `WEBSOCKET_HOST` and `PROCESS_CONNECTION_PASS`
    /// from the process environment. See [`LinkConfig::from_lookup`].
    pub fn from_env_and_args(
        manager_url: Option<&str>,
        sink: Option<SinkKind>,
        ca_file: Option<PathBuf>,
    ) -> Result<LinkConfig, ConfigError> {
        LinkConfig::from_lookup(manager_url, sink, ca_file, |k| std::env::var(k).ok())
    }

    /// Like [`LinkConfig::from_env_and_args`] with an explicit environment.
    ///
    /// - URL: `manager_url` if given (a `password` in its query wins over the environment's),
    ///   else `WEBSOCKET_HOST` as in the original, else none. An empty value counts as unset.
    /// - Password: `PROCESS_CONNECTION_PASS`, default empty.
    /// - Sink: `sink` if given, else websocket when there is a URL, else stdout.
    ///   `Some(Websocket)` without a URL is an error.
    pub fn from_lookup(
        manager_url: Option<&str>,
        sink: Option<SinkKind>,
        ca_file: Option<PathBuf>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<LinkConfig, ConfigError> {
        let password = env(ENV_PASSWORD).unwrap_or_default();
        let url = match manager_url.filter(|u| !u.trim().is_empty()) {
            Some(u) => Some(ManagerUrl::parse(u, &password)?),
            None => match env(ENV_WEBSOCKET_HOST).filter(|h| !h.trim().is_empty()) {
                Some(h) => Some(ManagerUrl::from_websocket_host(&h, &password)?),
                None => None,
            },
        };
        let sink = match (sink, &url) {
            (Some(SinkKind::Websocket), None) => return Err(ConfigError::NoManagerUrl),
            (Some(s), _) => s,
            (None, Some(_)) => SinkKind::Websocket,
            (None, None) => SinkKind::Stdout,
        };
        Ok(LinkConfig { url, sink, ca_file, ..LinkConfig::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn websocket_host_as_the_original_but_encoded() {
        let u = ManagerUrl::from_websocket_host("love-nginx/manager/ws/subscription", "p@ss word").unwrap();
        assert_eq!(u.expose_secret_url(), "ws://love-nginx/manager/ws/subscription/?password=p%40ss%20word");
        assert_eq!(u.to_string(), "ws://love-nginx/manager/ws/subscription/?password=***");
        let u = ManagerUrl::from_websocket_host("love-nginx/manager/ws/subscription", "").unwrap();
        assert_eq!(u.expose_secret_url(), "ws://love-nginx/manager/ws/subscription/?password=");
        let u = ManagerUrl::from_websocket_host("h:8000/manager/ws/subscription/", "a&b#c+d%").unwrap();
        assert_eq!(u.expose_secret_url(), "ws://h:8000/manager/ws/subscription/?password=a%26b%23c%2Bd%25");
    }

    #[test]
    fn manager_url_forms() {
        let u = ManagerUrl::parse("wss://example.org:8443/manager/ws/subscription", "pw").unwrap();
        assert_eq!(u.scheme(), Scheme::Wss);
        assert_eq!(u.expose_secret_url(), "wss://example.org:8443/manager/ws/subscription?password=pw");
        let u = ManagerUrl::parse("ws://h/manager/ws/subscription/?x=1&password=s%40cret", "env").unwrap();
        assert_eq!(u.expose_secret_url(), "ws://h/manager/ws/subscription/?x=1&password=s%40cret");
        assert!(!format!("{u} {u:?}").contains("cret"));
        let u = ManagerUrl::parse("ws://[::1]:9/p", "").unwrap();
        assert_eq!(u.to_string(), "ws://[::1]:9/p?password=");
    }

    #[test]
    fn invalid_urls_never_show_the_password() {
        for bad in [
            "http://h/p?password=topsecret",
            "h/p?password=topsecret",
            "ws://user:topsecret@h/p",
            "ws://h p/?password=topsecret",
            "ws:///?password=topsecret",
        ] {
            let e = ManagerUrl::parse(bad, "topsecret").unwrap_err().to_string();
            assert!(!e.contains("topsecret"), "{bad}: {e}");
            assert!(e.starts_with("invalid manager URL"), "{e}");
        }
    }

    #[test]
    fn config_from_lookup() {
        let c = LinkConfig::from_lookup(None, None, None, env(&[])).unwrap();
        assert_eq!(c.sink, SinkKind::Stdout);
        assert!(c.url.is_none());
        assert!(matches!(
            LinkConfig::from_lookup(None, Some(SinkKind::Websocket), None, env(&[])),
            Err(ConfigError::NoManagerUrl)
        ));
        let e = [("WEBSOCKET_HOST", "love-nginx/manager/ws/subscription"), ("PROCESS_CONNECTION_PASS", "x y")];
        let c = LinkConfig::from_lookup(None, None, None, env(&e)).unwrap();
        assert_eq!(c.sink, SinkKind::Websocket);
        assert_eq!(c.url.unwrap().expose_secret_url(), "ws://love-nginx/manager/ws/subscription/?password=x%20y");
        let c = LinkConfig::from_lookup(Some("ws://127.0.0.1:1/manager/ws/subscription"), None, None, env(&e)).unwrap();
        assert_eq!(c.url.unwrap().expose_secret_url(), "ws://127.0.0.1:1/manager/ws/subscription?password=x%20y");
        let c = LinkConfig::from_lookup(None, Some(SinkKind::Stdout), None, env(&e)).unwrap();
        assert_eq!(c.sink, SinkKind::Stdout);
    }

    #[test]
    fn decode() {
        assert_eq!(percent_decode("a%20b+c%2"), "a b c%2");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
