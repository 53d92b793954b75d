//! A Confluent schema registry client with a schema cache.
//!
//! Readers resolve a value's schema id with `GET /schemas/ids/{id}` once and keep the compiled
//! [`DecodePlan`]; an id the registry does not know is remembered for a while
//! ([`NEGATIVE_TTL`]) so a topic full of bad ids does not hammer the registry. Writers register
//! with `POST /subjects/{subject}/versions` (an identical schema gets its existing id back).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::avro::DecodePlan;
use super::KafkaError;

/// How long an unknown or broken schema id is not asked for again.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(10);

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// The registry client.
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
    plans: Mutex<HashMap<i32, Arc<DecodePlan>>>,
    failed: Mutex<HashMap<i32, (Instant, String)>>,
    fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient").field("base", &self.base).finish()
    }
}

impl RegistryClient {
    /// A client for the registry at `base` (`http://host:8081`).
    pub fn new(base: &str) -> Result<RegistryClient, KafkaError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| KafkaError::Registry(format!("HTTP client: {e}")))?;
        Ok(RegistryClient {
            base: base.trim_end_matches('/').to_string(),
            http,
            plans: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            fetches: Default::default(),
        })
    }

    /// The registry's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// How many times a schema was fetched by id (the cache's misses).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The cached plan for `id`, if any (no I/O).
    pub fn cached(&self, id: i32) -> Option<Arc<DecodePlan>> {
        self.plans.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }

    /// The decode plan for schema `id`: from the cache, else fetched and compiled.
    pub async fn plan(&self, id: i32) -> Result<Arc<DecodePlan>, KafkaError> {
        if let Some(p) = self.cached(id) {
            return Ok(p);
        }
        if let Some((at, why)) = self.failed.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            if at.elapsed() < NEGATIVE_TTL {
                return Err(KafkaError::Registry(why.clone()));
            }
        }
        self.fetches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = async {
            let (status, body) = self.get(&format!("/schemas/ids/{id}")).await?;
            if status == 404 {
                return Err(KafkaError::Registry(format!("schema id {id} is not known to the registry")));
            }
            if status != 200 {
                // Not remembered: the registry may come back.
                return Err(KafkaError::RegistryUnavailable(format!("GET /schemas/ids/{id}: HTTP {status}: {body}")));
            }
            let schema = body
                .get("schema")
                .and_then(Json::as_str)
                .ok_or_else(|| KafkaError::Registry(format!("GET /schemas/ids/{id}: no schema in the answer")))?;
            let plan = DecodePlan::from_schema_text(schema)
                .map_err(|e| KafkaError::Registry(format!("schema id {id}: {e}")))?;
            Ok(Arc::new(plan))
        }
        .await;
        match result {
            Ok(plan) => {
                self.plans.lock().unwrap_or_else(|p| p.into_inner()).insert(id, plan.clone());
                Ok(plan)
            }
            Err(KafkaError::Registry(why)) => {
                self.failed.lock().unwrap_or_else(|p| p.into_inner()).insert(id, (Instant::now(), why.clone()));
                Err(KafkaError::Registry(why))
            }
            Err(e) => Err(e),
        }
    }

    /// Register `schema` (JSON text) under `subject`; returns its id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<i32, KafkaError> {
        let body = serde_json::json!({ "schema": schema }).to_string();
        let url = format!("{}/subjects/{}/versions", self.base, subject);
        let resp = self
            .http
            .post(&url)
            .header("Content-Type", CONTENT_TYPE)
            .body(body)
            .send()
            .await
            .map_err(|e| KafkaError::RegistryUnavailable(format!("POST {url}: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if status != 200 {
            return Err(KafkaError::Registry(format!("POST /subjects/{subject}/versions: HTTP {status}: {text}")));
        }
        let v: Json = serde_json::from_str(&text)
            .map_err(|e| KafkaError::Registry(format!("POST /subjects/{subject}/versions: {e}")))?;
        let id = v
            .get("id")
            .and_then(Json::as_i64)
            .ok_or_else(|| KafkaError::Registry(format!("POST /subjects/{subject}/versions: no id in {text}")))?;
        let id = id as i32;
        if let Ok(plan) = DecodePlan::from_schema_text(schema) {
            self.plans.lock().unwrap_or_else(|p| p.into_inner()).entry(id).or_insert_with(|| Arc::new(plan));
        }
        Ok(id)
    }

    /// The latest version of `subject`: (id, schema text), or None if the subject is unknown.
    pub async fn latest(&self, subject: &str) -> Result<Option<(i32, String)>, KafkaError> {
        let (status, body) = self.get(&format!("/subjects/{subject}/versions/latest")).await?;
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            return Err(KafkaError::Registry(format!(
                "GET /subjects/{subject}/versions/latest: HTTP {status}: {body}"
            )));
        }
        let id = body
            .get("id")
            .and_then(Json::as_i64)
            .ok_or_else(|| KafkaError::Registry(format!("latest {subject}: no id")))?;
        let schema = body
            .get("schema")
            .and_then(Json::as_str)
            .ok_or_else(|| KafkaError::Registry(format!("latest {subject}: no schema")))?;
        Ok(Some((id as i32, schema.to_string())))
    }

    /// Every subject.
    pub async fn subjects(&self) -> Result<Vec<String>, KafkaError> {
        let (status, body) = self.get("/subjects").await?;
        if status != 200 {
            return Err(KafkaError::Registry(format!("GET /subjects: HTTP {status}")));
        }
        Ok(body.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default())
    }

    async fn get(&self, path: &str) -> Result<(u16, Json), KafkaError> {
        let url = format!("{}{}", self.base, path);
        let resp = self
            .http
            .get(&url)
            .header("Accept", CONTENT_TYPE)
            .send()
            .await
            .map_err(|e| KafkaError::RegistryUnavailable(format!("GET {url}: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| KafkaError::RegistryUnavailable(format!("GET {url}: {e}")))?;
        let json = serde_json::from_str(&text).unwrap_or(Json::String(text));
        Ok((status, json))
    }
}
