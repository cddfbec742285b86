//! One worker as the admin and registration APIs show it. The runtime's `api_key` is never
//! part of it.

use serde_json::{json, Value};
use switchyard_fleet::Worker;

use crate::admin::format_rfc3339;

pub fn worker_json(w: &Worker) -> Value {
    let health = w.health_view();
    let spec = &w.spec;
    json!({
        "name": spec.name,
        "model": spec.model,
        "upstream_model": spec.upstream_model,
        "url": spec.url,
        "runtime": spec.runtime,
        "provider": spec.provider,
        "region": spec.region,
        "gpu": spec.gpu,
        "price_per_hour": spec.price_per_hour,
        "max_concurrency": spec.max_concurrency,
        "source": w.source,
        "state": health.state,
        "reason": health.reason,
        "since": format_rfc3339(health.since_unix_ms),
        "outstanding": w.outstanding(),
        "ttft_ewma_ms": health.ttft_ewma_ms,
        "ttft_samples": health.ttft_samples,
        "ejections": health.ejections,
        "ejected_for_ms": health.ejected_for_ms,
        "consecutive_failures": health.consecutive_failures,
        "usage_rejected": health.usage_rejected.map(|r| json!({
            "count": r.count,
            "last_at": format_rfc3339(r.at_unix_ms),
            "last_claim": r.claim,
        })),
        "lease_left_ms": w.lease_left_ms(),
        "labels": w.labels,
    })
}
