//! `[models.NAME]`: what a worker must be to serve a model, checked when a worker registers
//! (`switchyard agent`): enough VRAM, a recent enough GPU, an allowed quantization, and the
//! expected weights (the sha256 of the model file the agent reports). Workers from the config
//! file are the operator's word and are not checked.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelRequirements {
    pub min_vram_gb: Option<f64>,
    /// CUDA compute capability as "major.minor" ("8.0": Ampere and later).
    pub min_compute_capability: Option<String>,
    /// Allowed quantizations as agents report them (compared case-insensitively); empty: any.
    pub quantizations: Vec<String>,
    /// The model file's sha256 (64 hex digits); a worker reporting another, or none, is
    /// refused.
    pub weights_sha256: Option<String>,
}

/// "8.9" → (8, 9).
pub fn parse_capability(s: &str) -> Option<(u32, u32)> {
    let (major, minor) = s.trim().split_once('.').unwrap_or((s.trim(), "0"));
    Some((major.parse().ok()?, minor.parse().ok()?))
}

pub fn validate(models: &BTreeMap<String, ModelRequirements>) -> Result<(), String> {
    for (model, r) in models {
        if r.min_vram_gb.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
            return Err(format!("models.{model}.min_vram_gb must be positive"));
        }
        if let Some(cc) = &r.min_compute_capability {
            if parse_capability(cc).is_none() {
                return Err(format!(
                    "models.{model}.min_compute_capability '{cc}' is not like \"8.0\""
                ));
            }
        }
        if let Some(digest) = &r.weights_sha256 {
            if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "models.{model}.weights_sha256 must be 64 hex digits (a sha256)"
                ));
            }
        }
    }
    Ok(())
}
