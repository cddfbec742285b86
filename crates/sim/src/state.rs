//! State shared by every connection of one simulated worker. Locks here are std
//! Mutex/RwLock held for a clone or a single RNG draw, never across an await.

use crate::config::{FaultConfig, SimConfig};
use crate::faults::{self, FaultPlan};
use crate::kv::KvCache;
use crate::stats::Counters;
use axum::http::HeaderMap;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub(crate) struct SimState {
    pub(crate) cfg: SimConfig,
    faults: RwLock<FaultConfig>,
    rng: Mutex<StdRng>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) kv: Arc<KvCache>,
    last_request: Mutex<Option<LastRequest>>,
    /// Unix time the worker started; reported as the model's `created`.
    pub(crate) created: u64,
    /// While `true`, generation requests wait before admission (see `SimHandle::hold`).
    pub(crate) gate: tokio::sync::watch::Sender<bool>,
}

impl SimState {
    pub(crate) fn new(cfg: SimConfig) -> Self {
        let counters = Arc::new(Counters::default());
        let kv = Arc::new(KvCache::new(
            cfg.kv_capacity_tokens,
            cfg.max_queue,
            Duration::from_millis(cfg.queue_timeout_ms),
            Arc::clone(&counters),
        ));
        Self {
            faults: RwLock::new(cfg.faults.clone()),
            rng: Mutex::new(StdRng::seed_from_u64(cfg.seed)),
            counters,
            kv,
            last_request: Mutex::new(None),
            created: unix_now(),
            gate: tokio::sync::watch::Sender::new(false),
            cfg,
        }
    }

    /// Returns once the gate is open (at once unless a test holds it).
    pub(crate) async fn pass_gate(&self) {
        let mut open = self.gate.subscribe();
        // The sender lives as long as this state, so the wait cannot fail while we hold it.
        let _ = open.wait_for(|held| !held).await;
    }

    pub(crate) fn faults(&self) -> FaultConfig {
        self.faults
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_faults(&self, f: FaultConfig) {
        *self.faults.write().unwrap_or_else(PoisonError::into_inner) = f;
    }

    /// Decides the fate of a new request from the faults in force right now.
    pub(crate) fn roll_faults(&self) -> FaultPlan {
        let f = self.faults();
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        faults::roll(&f, &mut *rng)
    }

    /// Text seed for a request that brought none.
    pub(crate) fn next_seed(&self) -> u64 {
        self.rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random()
    }

    /// Remembers a generation request for `GET /sim/last_request`. Only cheap clones
    /// here (the body is reference-counted); rendering happens when someone asks.
    pub(crate) fn record_request(&self, path: &str, headers: &HeaderMap, body: &Bytes) {
        let rec = LastRequest {
            path: path.to_owned(),
            headers: headers.clone(),
            body: body.clone(),
        };
        *self
            .last_request
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(rec);
    }

    /// `{"path", "headers": {name: value}, "body": <the JSON received, verbatim>}`; a body
    /// that was not JSON is given as a string.
    pub(crate) fn last_request(&self) -> Value {
        let rec = self
            .last_request
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(rec) = rec else {
            return json!({"path": null, "headers": {}, "body": null});
        };
        let mut map = Map::new();
        for (name, value) in &rec.headers {
            let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
            match map.get_mut(name.as_str()) {
                Some(Value::String(prev)) => {
                    prev.push_str(", ");
                    prev.push_str(&v);
                }
                _ => {
                    map.insert(name.as_str().to_owned(), Value::String(v));
                }
            }
        }
        let body = serde_json::from_slice::<Value>(&rec.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&rec.body).into_owned()));
        json!({"path": rec.path, "headers": map, "body": body})
    }
}

#[derive(Debug, Clone)]
struct LastRequest {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
