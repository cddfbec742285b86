//! A registering worker's identity (what its agent reports: VRAM, compute capability,
//! quantization, the weights' sha256) against its model's requirements (`[models.NAME]`), and
//! the rule that a worker's identity does not change under a live lease: a node swapped under
//! the same name, or re-pulled weights, is taken out and must register anew.

use std::collections::BTreeMap;

use switchyard_config::models::parse_capability;
use switchyard_config::ModelRequirements;
use switchyard_gateway::error::GatewayError;

/// The labels that make a worker's identity.
pub const IDENTITY_LABELS: [&str; 4] = [
    "vram_gb",
    "compute_capability",
    "quantization",
    "weights_sha256",
];

fn refused(param: &str, message: String) -> GatewayError {
    GatewayError::InvalidRequest {
        message,
        param: Some(param.to_string()),
    }
}

/// Refuses a worker that does not meet `model`'s requirements, naming what is missing.
pub fn check(
    model: &str,
    needs: &ModelRequirements,
    labels: &BTreeMap<String, String>,
) -> Result<(), GatewayError> {
    if let Some(min) = needs.min_vram_gb {
        let has = labels.get("vram_gb").and_then(|v| v.parse::<f64>().ok());
        if has.is_none_or(|has| has < min) {
            return Err(refused(
                "vram_gb",
                format!(
                    "Model '{model}' needs at least {min} GB of VRAM; this worker reports {}.",
                    has.map_or("none".to_string(), |h| format!("{h} GB"))
                ),
            ));
        }
    }
    if let Some(min) = needs.min_compute_capability.as_deref() {
        let has = labels.get("compute_capability");
        let ok = match (has.and_then(|h| parse_capability(h)), parse_capability(min)) {
            (Some(has), Some(min)) => has >= min,
            _ => false,
        };
        if !ok {
            return Err(refused(
                "compute_capability",
                format!(
                    "Model '{model}' needs compute capability {min} or later; this worker reports {}.",
                    has.map_or("none", String::as_str)
                ),
            ));
        }
    }
    if !needs.quantizations.is_empty() {
        let has = labels.get("quantization");
        if !has.is_some_and(|q| {
            needs
                .quantizations
                .iter()
                .any(|a| a.eq_ignore_ascii_case(q))
        }) {
            return Err(refused(
                "quantization",
                format!(
                    "Model '{model}' is served only as {}; this worker reports {}.",
                    needs.quantizations.join(", "),
                    has.map_or("none", String::as_str)
                ),
            ));
        }
    }
    if let Some(want) = needs.weights_sha256.as_deref() {
        let has = labels.get("weights_sha256");
        if !has.is_some_and(|h| h.eq_ignore_ascii_case(want)) {
            return Err(refused(
                "weights_sha256",
                format!(
                    "Model '{model}' expects weights with sha256 {want}; this worker reports {}. Re-pull the model file.",
                    has.map_or("none", String::as_str)
                ),
            ));
        }
    }
    Ok(())
}

/// The first identity label that differs between a live registration and a new one.
pub fn changed<'a>(
    live: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Option<&'a str> {
    IDENTITY_LABELS
        .into_iter()
        .find(|label| live.get(*label) != new.get(*label))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn each_requirement_refuses_naming_the_field() {
        let needs = ModelRequirements {
            min_vram_gb: Some(24.0),
            min_compute_capability: Some("8.0".into()),
            quantizations: vec!["fp16".into(), "Q4_K_M".into()],
            weights_sha256: Some("ab".repeat(32)),
        };
        let digest = "AB".repeat(32);
        let good = labels(&[
            ("vram_gb", "24"),
            ("compute_capability", "8.9"),
            ("quantization", "q4_k_m"),
            ("weights_sha256", &digest),
        ]);
        assert!(check("m", &needs, &good).is_ok());
        for (label, value, param) in [
            ("vram_gb", "16", "vram_gb"),
            ("compute_capability", "7.5", "compute_capability"),
            ("quantization", "int8", "quantization"),
            ("weights_sha256", &"cd".repeat(32), "weights_sha256"),
        ] {
            let mut bad = good.clone();
            bad.insert(label.to_string(), value.to_string());
            let err = check("m", &needs, &bad).unwrap_err();
            assert!(
                matches!(&err, GatewayError::InvalidRequest { param: Some(p), .. } if p == param),
                "{err:?}"
            );
            bad.remove(label);
            assert!(check("m", &needs, &bad).is_err(), "{label} missing");
        }
        assert!(check("m", &ModelRequirements::default(), &BTreeMap::new()).is_ok());
    }

    #[test]
    fn an_identity_change_is_named() {
        let a = labels(&[("vram_gb", "24"), ("weights_sha256", "aa"), ("rack", "1")]);
        let mut b = a.clone();
        b.insert("rack".into(), "2".into());
        assert_eq!(changed(&a, &b), None, "other labels may change");
        b.insert("weights_sha256".into(), "bb".into());
        assert_eq!(changed(&a, &b), Some("weights_sha256"));
    }
}
