//! Secrets out of every log line, whatever the log filter lets through.
//!
//! The manager's password travels in the websocket URL's query. love-host's own lines show the
//! URL redacted, but libraries log what they send: tungstenite's handshake logs the request
//! line, `GET /manager/ws/subscription?password=… HTTP/1.1`, at trace level, so
//! `LOVE_LOG=trace` used to print it. Every log line therefore goes through [`redact`] on its
//! way out ([`RedactingStderr`]): `password=<value>` query parameters and every password the
//! process was given (as is and percent-encoded) become `***`.

use std::borrow::Cow;
use std::io::Write;
use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Shorter secrets are only caught as `password=` values: replacing every occurrence of one
/// or two characters would garble every line.
const MIN_SECRET_LEN: usize = 4;

/// Remember a secret to take out of every later log line (with its percent-encoded form).
pub fn register_secret(secret: &str) {
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    let mut secrets = crate::locks::write(&SECRETS);
    for s in [secret.to_string(), super::config::percent_encode(secret)] {
        if !secrets.contains(&s) {
            secrets.push(s);
        }
    }
    // Longest first, so that a secret containing another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` without secrets: every `password=` value (up to the next `&`, space, quote,
/// backslash or `#`) and every registered secret replaced by `***`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let secrets = crate::locks::read(&SECRETS);
    let has_secret = secrets.iter().any(|s| text.contains(s.as_str()));
    if !has_secret && !contains_ignore_case(text, "password=") && !contains_ignore_case(text, "password%3d") {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    for key in ["password=", "password%3d"] {
        out = redact_values(&out, key);
    }
    Cow::Owned(out)
}

fn contains_ignore_case(text: &str, needle: &str) -> bool {
    text.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Replace the value after each (case-insensitive) `key` with `***`.
fn redact_values(text: &str, key: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find(key) {
        let value_start = pos + found + key.len();
        out.push_str(&text[pos..value_start]);
        let value_len = text[value_start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '&' | '"' | '\'' | '\\' | '#' | ';' | ',' | ')'))
            .unwrap_or(text.len() - value_start);
        if value_len > 0 {
            out.push_str("***");
        }
        pos = value_start + value_len;
    }
    out.push_str(&text[pos..]);
    out
}

/// Standard error, with every write redacted (for `tracing_subscriber::fmt().with_writer`).
/// The formatter writes each event with one `write_all`, so a secret is never split between
/// two writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedactingStderr;

/// The writer [`RedactingStderr`] makes.
#[derive(Debug)]
pub struct RedactingWriter(std::io::Stderr);

impl Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(redact(text).as_bytes())?,
            Err(_) => self.0.write_all(redact(&String::from_utf8_lossy(buf)).as_bytes())?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(std::io::stderr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_values_and_registered_secrets_are_redacted() {
        let line = r#"TRACE tungstenite::handshake::client: Request: "GET /manager/ws/subscription?a=1&password=p%40ss%20w&x=2 HTTP/1.1\r\nHost: h""#;
        let out = redact(line);
        assert!(!out.contains("p%40ss"), "{out}");
        assert!(out.contains("password=***&x=2 HTTP/1.1"), "{out}");
        assert!(redact("PASSWORD=abc def").contains("PASSWORD=*** def"));
        register_secret("s3cr3t v@lue");
        let out = redact("header: s3cr3t v@lue and s3cr3t%20v%40lue? no: s3cr3t v@lue");
        assert!(!out.contains("s3cr3t"), "{out}");
        assert!(matches!(redact("nothing to see"), Cow::Borrowed(_)));
        register_secret("ab");
        assert_eq!(redact("abba"), "abba", "short secrets are not replaced everywhere");
    }
}
