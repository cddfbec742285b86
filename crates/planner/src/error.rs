//! The one error type of the planner: every message says which input is wrong and why.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// A preset name that does not exist; the message lists the ones that do.
    #[error("unknown {kind} '{name}'; known: {known}")]
    Unknown {
        kind: &'static str,
        name: String,
        known: String,
    },
    /// A number out of its range (a utilisation of 1.5, a negative rate, ...).
    #[error("{0}")]
    Invalid(String),
    /// The model does not fit: the message says where and by how much.
    #[error("{0}")]
    DoesNotFit(String),
}

/// `Err(Invalid)` unless `v` is finite and `> 0`.
pub fn positive(name: &str, v: f64) -> Result<f64, PlanError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(PlanError::Invalid(format!(
            "{name} must be a number > 0, got {v}"
        )))
    }
}

/// `Err(Invalid)` unless `v` is finite and `>= 0`.
pub fn non_negative(name: &str, v: f64) -> Result<f64, PlanError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(PlanError::Invalid(format!(
            "{name} must be a number >= 0, got {v}"
        )))
    }
}

/// `Err(Invalid)` unless `0 < v <= 1`.
pub fn fraction(name: &str, v: f64) -> Result<f64, PlanError> {
    if v.is_finite() && v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(PlanError::Invalid(format!(
            "{name} must be within (0, 1], got {v}"
        )))
    }
}
