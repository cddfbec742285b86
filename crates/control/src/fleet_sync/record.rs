//! A registration as the shared store holds it: the worker's spec and labels as one JSON
//! document, which the store compares as text (the same registration again is a renewal), and
//! the drain targets as the store names them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchyard_fleet::{DrainTarget, WorkerSpec};
use switchyard_metering::store::{DrainKind, DrainRecord};

#[derive(Serialize)]
struct Written<'a> {
    spec: &'a WorkerSpec,
    labels: &'a BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Read {
    spec: WorkerSpec,
    labels: BTreeMap<String, String>,
}

/// The same spec and labels always give the same text (fields in declaration order, labels
/// sorted), so an unchanged registration compares equal in the store.
pub fn encode(spec: &WorkerSpec, labels: &BTreeMap<String, String>) -> Result<String, String> {
    serde_json::to_string(&Written { spec, labels })
        .map_err(|e| format!("worker '{}': cannot be stored: {e}", spec.name))
}

/// A stored registration, checked as a registration through the API would be. A document
/// this version cannot read (written by a newer replica) is an error, never a guess.
pub fn decode(stored: &str) -> Result<(WorkerSpec, BTreeMap<String, String>), String> {
    let Read { spec, labels } = serde_json::from_str(stored).map_err(|e| e.to_string())?;
    spec.validate()?;
    Ok((spec, labels))
}

/// How the store names a drain target.
pub fn kind_of(target: &DrainTarget) -> (DrainKind, &str) {
    match target {
        DrainTarget::Worker(n) => (DrainKind::Worker, n),
        DrainTarget::Provider(p) => (DrainKind::Provider, p),
        DrainTarget::Region(r) => (DrainKind::Region, r),
    }
}

/// The target a stored drain record applies to.
pub fn target_of(record: &DrainRecord) -> DrainTarget {
    let value = record.value.clone();
    match record.kind {
        DrainKind::Worker => DrainTarget::Worker(value),
        DrainKind::Provider => DrainTarget::Provider(value),
        DrainKind::Region => DrainTarget::Region(value),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use switchyard_fleet::{PromptFormat, RuntimeKind};

    #[test]
    fn a_registration_round_trips_and_encodes_the_same_every_time() {
        let spec = WorkerSpec {
            name: "gpu-7".into(),
            url: "http://10.0.0.7:8000".into(),
            runtime: RuntimeKind::TgiNative,
            model: "m".into(),
            upstream_model: Some("/models/m.gguf".into()),
            provider: "p".into(),
            region: "eu".into(),
            gpu: "rtx4090".into(),
            price_per_hour: 0.45,
            max_concurrency: 8,
            api_key: Some("runtime-secret".into()),
            prompt_format: PromptFormat::Llama3,
            tiers: vec!["business".into()],
            pool: switchyard_fleet::Pool::Canary,
            trust: Default::default(),
        };
        let labels = BTreeMap::from([
            ("vram_gb".to_string(), "24".to_string()),
            ("rack".to_string(), "b2".to_string()),
        ]);
        let text = encode(&spec, &labels).unwrap();
        assert_eq!(text, encode(&spec.clone(), &labels.clone()).unwrap());
        let (back, back_labels) = decode(&text).unwrap();
        assert_eq!(back_labels, labels);
        assert_eq!(format!("{back:?}"), format!("{spec:?}"));
        assert_eq!(
            back.api_key.as_deref(),
            Some("runtime-secret"),
            "other replicas need it"
        );
        assert_eq!(back.price_per_hour, 0.45);
        assert!(decode(r#"{"spec": {}, "labels": {}}"#).is_err());
    }
}
