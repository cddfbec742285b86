//! The body of `POST /fleet/v1/workers`, checked field by field so that every refusal names
//! the field (`param`), as the inference API's validation does.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use switchyard_fleet::{HopTrust, Pool, PromptFormat, RuntimeKind, WorkerSpec};

use switchyard_gateway::error::GatewayError;

/// Labels with a meaning of their own, set from top-level fields; the free-form `labels`
/// object may not redefine them.
const KNOWN_LABELS: [&str; 5] = [
    "network",
    "vram_gb",
    "compute_capability",
    "quantization",
    "weights_sha256",
];
const MAX_LABELS: usize = 32;
const MAX_LABEL_VALUE: usize = 256;

/// A registration as the fleet takes it.
#[derive(Debug)]
pub struct Registration {
    pub spec: WorkerSpec,
    pub labels: BTreeMap<String, String>,
}

fn invalid(param: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidRequest {
        message: message.into(),
        param: Some(param.to_string()),
    }
}

/// Takes `name` out of the body, typed; `None` when absent or null.
fn take<T: DeserializeOwned>(
    body: &mut Map<String, Value>,
    name: &str,
    expected: &str,
) -> Result<Option<T>, GatewayError> {
    match body.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|_| {
            invalid(
                name,
                format!("Invalid '{name}': expected {expected}, got {v}."),
            )
        }),
    }
}

fn required<T: DeserializeOwned>(
    body: &mut Map<String, Value>,
    name: &str,
    expected: &str,
) -> Result<T, GatewayError> {
    take(body, name, expected)?.ok_or_else(|| {
        invalid(
            name,
            format!("Missing required field '{name}' ({expected})."),
        )
    })
}

fn text(body: &mut Map<String, Value>, name: &str) -> Result<String, GatewayError> {
    let v: String = required(body, name, "a string")?;
    if v.trim().is_empty() || v.len() > MAX_LABEL_VALUE {
        return Err(invalid(
            name,
            format!("Invalid '{name}': must be 1 to {MAX_LABEL_VALUE} characters."),
        ));
    }
    Ok(v)
}

pub use switchyard_fleet::worker::valid_name;

fn valid_label_key(key: &str) -> bool {
    let b = key.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'-')
        })
}

impl Registration {
    pub fn parse(body: Value) -> Result<Self, GatewayError> {
        let Value::Object(mut body) = body else {
            return Err(GatewayError::InvalidRequest {
                message: "The body must be a JSON object.".into(),
                param: None,
            });
        };
        let name = text(&mut body, "name")?;
        if !valid_name(&name) {
            return Err(invalid(
                "name",
                format!("Invalid 'name' '{name}': use letters, digits, '.', '_' and '-' (up to 128, starting with a letter or digit)."),
            ));
        }
        let url = text(&mut body, "url")?;
        // Kept as parsed, so that the policy check and every client read the same URL.
        let url = match reqwest::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                u.as_str().trim_end_matches('/').to_string()
            }
            _ => {
                return Err(invalid(
                    "url",
                    format!("Invalid 'url' '{url}': expected the runtime's base URL, like http://10.0.0.5:8000."),
                ))
            }
        };
        let runtime: RuntimeKind = required(
            &mut body,
            "runtime",
            "one of openai, vllm, sglang, llamacpp, tgi, tgi-native",
        )?;
        let model = text(&mut body, "model")?;
        let upstream_model: Option<String> = take(&mut body, "upstream_model", "a string")?;
        let provider = text(&mut body, "provider")?;
        let region = text(&mut body, "region")?;
        let gpu = text(&mut body, "gpu")?;
        let price_per_hour: f64 = required(&mut body, "price_per_hour", "a number of USD")?;
        if !(price_per_hour.is_finite() && price_per_hour >= 0.0) {
            return Err(invalid(
                "price_per_hour",
                "Invalid 'price_per_hour': must be a non-negative number.",
            ));
        }
        let max_concurrency: u32 = required(&mut body, "max_concurrency", "a positive integer")?;
        if max_concurrency == 0 {
            return Err(invalid(
                "max_concurrency",
                "Invalid 'max_concurrency': must be at least 1.",
            ));
        }
        let api_key: Option<String> = take(&mut body, "api_key", "a string")?;
        let prompt_format: Option<PromptFormat> =
            take(&mut body, "prompt_format", "one of chatml, llama3, gemma")?;
        let tiers: Vec<String> =
            take(&mut body, "tiers", "an array of tier names")?.unwrap_or_default();
        let pool: Pool = take(&mut body, "pool", "main or canary")?.unwrap_or_default();

        let mut labels = BTreeMap::new();
        if let Some(network) = take::<String>(&mut body, "network", "a string")? {
            labels.insert("network".to_string(), network);
        }
        if let Some(vram) = take::<f64>(&mut body, "vram_gb", "a number of GB")? {
            if !(vram.is_finite() && vram > 0.0) {
                return Err(invalid("vram_gb", "Invalid 'vram_gb': must be positive."));
            }
            labels.insert("vram_gb".to_string(), vram.to_string());
        }
        match body.remove("compute_capability") {
            None | Some(Value::Null) => {}
            // "8.9" or 8.9: both mean the same capability.
            Some(Value::String(s)) => {
                labels.insert("compute_capability".to_string(), s);
            }
            Some(Value::Number(n)) => {
                labels.insert("compute_capability".to_string(), n.to_string());
            }
            Some(other) => {
                return Err(invalid(
                    "compute_capability",
                    format!(
                    "Invalid 'compute_capability': expected a string like \"8.9\", got {other}."
                ),
                ))
            }
        }
        if let Some(q) = take::<String>(&mut body, "quantization", "a string")? {
            labels.insert("quantization".to_string(), q);
        }
        if let Some(digest) = take::<String>(&mut body, "weights_sha256", "a sha256 in hex")? {
            if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    "weights_sha256",
                    "Invalid 'weights_sha256': expected 64 hex digits (the model file's sha256).",
                ));
            }
            labels.insert("weights_sha256".to_string(), digest.to_ascii_lowercase());
        }
        let extra: BTreeMap<String, String> =
            take(&mut body, "labels", "an object of string values")?.unwrap_or_default();
        for (key, value) in extra {
            let param = format!("labels.{key}");
            if !valid_label_key(&key) {
                return Err(invalid(
                    &param,
                    format!("Invalid label '{key}': use lowercase letters, digits, '_', '.' and '-' (up to 63)."),
                ));
            }
            if key.starts_with(super::RESERVED_LABEL_PREFIX) {
                return Err(invalid(
                    &param,
                    format!(
                        "Label '{key}' is reserved: the gateway sets 'switchyard.' labels itself."
                    ),
                ));
            }
            if KNOWN_LABELS.contains(&key.as_str()) {
                return Err(invalid(
                    &param,
                    format!("Label '{key}' has its own field; set '{key}' at the top level."),
                ));
            }
            if value.len() > MAX_LABEL_VALUE {
                return Err(invalid(
                    &param,
                    format!("Label '{key}' is longer than {MAX_LABEL_VALUE} characters."),
                ));
            }
            labels.insert(key, value);
        }
        if labels.len() > MAX_LABELS {
            return Err(invalid(
                "labels",
                format!("Too many labels: at most {MAX_LABELS}."),
            ));
        }
        // Refused rather than ignored: a misspelt field ("max_concurency") must not silently
        // register a worker with the default.
        if let Some(unknown) = body.keys().next() {
            return Err(invalid(unknown, format!("Unknown field '{unknown}'.")));
        }
        let spec = WorkerSpec {
            name,
            url,
            runtime,
            model,
            upstream_model,
            provider,
            region,
            gpu,
            price_per_hour,
            max_concurrency,
            api_key,
            prompt_format: prompt_format.unwrap_or_default(),
            tiers,
            pool,
            // The registration API decides, not the agent (see `workers::register`).
            trust: HopTrust::Public,
        };
        spec.validate()
            .map_err(|message| GatewayError::InvalidRequest {
                message,
                param: None,
            })?;
        Ok(Self { spec, labels })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body() -> Value {
        json!({
            "name": "gpu-7", "url": "http://10.0.0.7:8000", "runtime": "vllm", "model": "m",
            "provider": "p", "region": "eu", "gpu": "rtx4090", "price_per_hour": 0.4,
            "max_concurrency": 8, "vram_gb": 24, "compute_capability": 8.9,
            "labels": {"rack": "b2"}
        })
    }

    fn param_of(v: Value) -> String {
        match Registration::parse(v).unwrap_err() {
            GatewayError::InvalidRequest { param, .. } => param.unwrap_or_default(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_full_registration_parses_with_its_labels() {
        let r = Registration::parse(body()).unwrap();
        assert_eq!(r.spec.name, "gpu-7");
        assert_eq!(r.labels["vram_gb"], "24");
        assert_eq!(r.labels["compute_capability"], "8.9");
        assert_eq!(r.labels["rack"], "b2");
    }

    #[test]
    fn refusals_name_the_field() {
        let with = |k: &str, v: Value| {
            let mut b = body();
            b[k] = v;
            b
        };
        let without = |k: &str| {
            let mut b = body();
            b.as_object_mut().unwrap().remove(k);
            b
        };
        assert_eq!(param_of(without("model")), "model");
        assert_eq!(param_of(with("runtime", json!("vllmm"))), "runtime");
        assert_eq!(param_of(with("url", json!("ftp://x"))), "url");
        assert_eq!(param_of(with("name", json!("a/b"))), "name");
        assert_eq!(
            param_of(with("max_concurrency", json!(0))),
            "max_concurrency"
        );
        assert_eq!(
            param_of(with("price_per_hour", json!(-1))),
            "price_per_hour"
        );
        assert_eq!(param_of(with("max_concurency", json!(4))), "max_concurency");
        assert_eq!(
            param_of(with("labels", json!({"vram_gb": "1"}))),
            "labels.vram_gb"
        );
    }
}
