//! Step "shape": the tier's caps applied to the request before anything is reserved.
//! `max_tokens` above the cap is clamped or refused (per tier); a request with none gets the
//! tier's default written into the body, so the worker cannot generate more than was reserved.
//! A prompt estimated above the tier's prompt cap is refused.

use serde_json::Value;
use switchyard_metering::{CapPolicy, Limits};
use switchyard_protocol::InferenceRequest;

use crate::error::GatewayError;

/// What shaping decided, for the reservation and the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shaped {
    /// The completion cap the worker will be held to.
    pub max_tokens: u32,
    /// Whether the client's `max_tokens` was lowered to the tier's cap.
    pub clamped: bool,
    pub prompt_estimate: u64,
}

pub fn shape(req: &mut InferenceRequest, limits: &Limits) -> Result<Shaped, GatewayError> {
    let prompt_estimate = req.prompt_size().estimate();
    if prompt_estimate > u64::from(limits.max_prompt_tokens) {
        return Err(GatewayError::PromptTooLong {
            message: format!(
                "The prompt is about {prompt_estimate} tokens; your tier allows {} prompt tokens.",
                limits.max_prompt_tokens
            ),
        });
    }
    let (max_tokens, clamped) = match req.max_tokens {
        Some(asked) if asked > limits.max_tokens => match limits.cap_policy {
            CapPolicy::Clamp => (limits.max_tokens, true),
            CapPolicy::Reject => {
                return Err(GatewayError::InvalidRequest {
                    message: format!(
                        "max_tokens is {asked}; your tier allows at most {}.",
                        limits.max_tokens
                    ),
                    param: Some("max_tokens".into()),
                })
            }
        },
        Some(asked) => (asked, false),
        None => (limits.default_max_tokens.min(limits.max_tokens), false),
    };
    if req.max_tokens != Some(max_tokens) {
        let field = if req.body.contains_key("max_completion_tokens") {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        req.body.insert(field.into(), Value::from(max_tokens));
        req.max_tokens = Some(max_tokens);
    }
    Ok(Shaped {
        max_tokens,
        clamped,
        prompt_estimate,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchyard_protocol::Endpoint;

    fn req(extra: Value) -> InferenceRequest {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        InferenceRequest::from_map(Endpoint::Chat, body.as_object().unwrap().clone()).unwrap()
    }

    fn limits(policy: CapPolicy) -> Limits {
        Limits {
            max_tokens: 100,
            default_max_tokens: 50,
            max_prompt_tokens: 20,
            cap_policy: policy,
            ..Limits::default()
        }
    }

    #[test]
    fn clamp_lowers_max_tokens_in_the_body() {
        let mut r = req(json!({"max_completion_tokens": 500}));
        let s = shape(&mut r, &limits(CapPolicy::Clamp)).unwrap();
        assert_eq!((s.max_tokens, s.clamped), (100, true));
        assert_eq!(r.body["max_completion_tokens"], 100);
    }

    #[test]
    fn reject_names_max_tokens() {
        let mut r = req(json!({"max_tokens": 500}));
        let err = shape(&mut r, &limits(CapPolicy::Reject)).unwrap_err();
        assert_eq!(err.body().error.param.as_deref(), Some("max_tokens"));
    }

    #[test]
    fn a_missing_max_tokens_gets_the_default_written() {
        let mut r = req(json!({}));
        let s = shape(&mut r, &limits(CapPolicy::Clamp)).unwrap();
        assert_eq!(s.max_tokens, 50);
        assert_eq!(r.body["max_tokens"], 50);
    }

    #[test]
    fn a_long_prompt_is_refused() {
        let mut r = req(json!({"messages": [{"role": "user", "content": "x".repeat(200)}]}));
        let err = shape(&mut r, &limits(CapPolicy::Clamp)).unwrap_err();
        assert_eq!(err.status().as_u16(), 400);
    }
}
