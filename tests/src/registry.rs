//! A small Confluent-compatible schema registry for tests, on `127.0.0.1`.
//!
//! The subset salobj and love-host use:
//! - `POST /subjects/{subject}/versions` `{"schema": "..."}` registers a schema (an identical
//!   schema, compared as parsed JSON, keeps its id; a subject's identical version is not added
//!   twice) and answers `{"id": N}`;
//! - `POST /subjects/{subject}` looks a schema up: `{"subject", "id", "version", "schema"}`, or
//!   404 with `error_code` 40403;
//! - `GET /schemas/ids/{id}`: `{"schema": "..."}`, or 404 with `error_code` 40403;
//! - `GET /subjects/{subject}/versions/latest` (and `/versions/{n}`): `{"subject", "id",
//!   "version", "schema"}`, or 404 with `error_code` 40401;
//! - `GET /subjects/{subject}/versions`: the version numbers; `GET /subjects`: the subjects.
//!
//! Ids are global and start at 1. HTTP/1.1 with `Connection: close`. Every request is counted
//! ([`Registry::requests`]) so tests can check a client's cache.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Default)]
struct State {
    /// id -> (schema text, parsed)
    schemas: BTreeMap<i64, (String, Value)>,
    /// subject -> ids by version (version = position + 1)
    subjects: BTreeMap<String, Vec<i64>>,
    /// (method, path) of every request
    requests: Vec<(String, String)>,
}

/// A running registry. Stops when dropped.
pub struct Registry {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(s: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// Start on `127.0.0.1:0`.
    pub async fn start() -> Registry {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("registry: bind");
        let addr = listener.local_addr().expect("registry: addr");
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { continue };
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, st).await;
                });
            }
        });
        Registry { addr, state, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, as (method, path).
    pub fn requests(&self) -> Vec<(String, String)> {
        lock(&self.state).requests.clone()
    }

    /// How many `GET /schemas/ids/{id}` requests were answered.
    pub fn id_lookups(&self) -> usize {
        lock(&self.state).requests.iter().filter(|(m, p)| m == "GET" && p.starts_with("/schemas/ids/")).count()
    }

    /// Register directly (no HTTP); returns the id.
    pub fn register(&self, subject: &str, schema: &str) -> i64 {
        register(&mut lock(&self.state), subject, schema).expect("registry: schema is not JSON")
    }

    /// The subjects.
    pub fn subjects(&self) -> Vec<String> {
        lock(&self.state).subjects.keys().cloned().collect()
    }
}

fn register(st: &mut State, subject: &str, schema: &str) -> Result<i64, String> {
    let parsed: Value = serde_json::from_str(schema).map_err(|e| e.to_string())?;
    let id = match st.schemas.iter().find(|(_, (_, v))| *v == parsed) {
        Some((id, _)) => *id,
        None => {
            let id = st.schemas.keys().next_back().copied().unwrap_or(0) + 1;
            st.schemas.insert(id, (schema.to_string(), parsed));
            id
        }
    };
    let versions = st.subjects.entry(subject.to_string()).or_default();
    if !versions.contains(&id) {
        versions.push(id);
    }
    Ok(id)
}

fn version_answer(st: &State, subject: &str, version: usize) -> Value {
    let id = st.subjects[subject][version - 1];
    json!({"subject": subject, "id": id, "version": version, "schema": st.schemas[&id].0})
}

fn handle(st: &Mutex<State>, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let mut st = lock(st);
    st.requests.push((method.to_string(), path.to_string()));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let not_found = |code: i64, msg: &str| (404, json!({"error_code": code, "message": msg}));
    let schema_of = |body: &[u8]| -> Option<String> {
        let v: Value = serde_json::from_slice(body).ok()?;
        v.get("schema")?.as_str().map(String::from)
    };
    match (method, parts.as_slice()) {
        ("GET", ["subjects"]) => (200, json!(st.subjects.keys().collect::<Vec<_>>())),
        ("GET", ["schemas", "ids", id]) => match id.parse::<i64>().ok().and_then(|i| st.schemas.get(&i)) {
            Some((text, _)) => (200, json!({"schema": text})),
            None => not_found(40403, "Schema not found"),
        },
        ("GET", ["subjects", subject, "versions"]) => match st.subjects.get(*subject) {
            Some(v) => (200, json!((1..=v.len()).collect::<Vec<_>>())),
            None => not_found(40401, "Subject not found."),
        },
        ("GET", ["subjects", subject, "versions", version]) => {
            let Some(v) = st.subjects.get(*subject) else { return not_found(40401, "Subject not found.") };
            let n = if *version == "latest" { v.len() } else { version.parse().unwrap_or(0) };
            if n == 0 || n > v.len() {
                return not_found(40402, "Version not found.");
            }
            (200, version_answer(&st, subject, n))
        }
        ("POST", ["subjects", subject, "versions"]) => {
            let Some(schema) = schema_of(body) else {
                return (422, json!({"error_code": 42201, "message": "Invalid schema"}));
            };
            match register(&mut st, subject, &schema) {
                Ok(id) => (200, json!({"id": id})),
                Err(e) => (422, json!({"error_code": 42201, "message": e})),
            }
        }
        ("POST", ["subjects", subject]) => {
            let Some(schema) = schema_of(body) else {
                return (422, json!({"error_code": 42201, "message": "Invalid schema"}));
            };
            let Ok(parsed) = serde_json::from_str::<Value>(&schema) else {
                return (422, json!({"error_code": 42201, "message": "Invalid schema"}));
            };
            let Some(v) = st.subjects.get(*subject) else { return not_found(40401, "Subject not found.") };
            match v.iter().position(|id| st.schemas[id].1 == parsed) {
                Some(pos) => (200, version_answer(&st, subject, pos + 1)),
                None => not_found(40403, "Schema not found"),
            }
        }
        _ => not_found(404, "Not found"),
    }
}

async fn serve(mut sock: TcpStream, st: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > 1 << 20 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut rl = request_line.split_whitespace();
    let method = rl.next().unwrap_or_default().to_string();
    let target = rl.next().unwrap_or_default().to_string();
    let path = target.split('?').next().unwrap_or_default().to_string();
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = &buf[header_end..(header_end + length).min(buf.len())];
    let (status, answer) = handle(&st, &method, &path, body);
    let text = answer.to_string();
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Unprocessable Entity",
    };
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    sock.write_all(resp.as_bytes()).await?;
    sock.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_lookup_latest() {
        let st = Mutex::new(State::default());
        let s1 = r#"{"type": "record", "name": "a", "fields": []}"#;
        let s1b = r#"{"type":"record","name":"a","fields":[]}"#;
        let s2 = r#"{"type":"record","name":"b","fields":[]}"#;
        let body = |s: &str| json!({"schema": s}).to_string().into_bytes();
        assert_eq!(handle(&st, "POST", "/subjects/t-value/versions", &body(s1)), (200, json!({"id": 1})));
        assert_eq!(handle(&st, "POST", "/subjects/t-value/versions", &body(s1b)), (200, json!({"id": 1})));
        assert_eq!(handle(&st, "POST", "/subjects/u-value/versions", &body(s2)), (200, json!({"id": 2})));
        assert_eq!(handle(&st, "GET", "/schemas/ids/2", b"").1["schema"], s2);
        assert_eq!(handle(&st, "GET", "/schemas/ids/9", b"").0, 404);
        assert_eq!(handle(&st, "GET", "/subjects/t-value/versions/latest", b"").1["id"], 1);
        assert_eq!(handle(&st, "POST", "/subjects/t-value", &body(s1b)).1["version"], 1);
        assert_eq!(handle(&st, "POST", "/subjects/t-value", &body(s2)).0, 404);
        assert_eq!(handle(&st, "GET", "/subjects", b"").1, json!(["t-value", "u-value"]));
    }
}
