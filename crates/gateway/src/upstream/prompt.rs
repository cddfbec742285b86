//! Prompts as one text: chat messages rendered in the model's own format, for runtimes that
//! take only text (TGI's native API) and for counting prompt tokens with a worker's tokenizer.

use serde_json::Value;
use switchyard_fleet::PromptFormat;
use switchyard_protocol::InferenceRequest;

use crate::error::GatewayError;

pub fn completion_text(req: &InferenceRequest) -> Result<String, GatewayError> {
    match req.body.get("prompt") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(items)) if items.len() == 1 && items[0].is_string() => {
            Ok(items[0].as_str().unwrap_or_default().to_string())
        }
        _ => Err(GatewayError::InvalidRequest {
            message: format!(
                "Model '{}' takes a single text prompt (its runtime cannot take token ids or batches).",
                req.model
            ),
            param: Some("prompt".into()),
        }),
    }
}

fn message_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// Renders chat messages into the prompt format the model was trained on.
pub fn render_chat(req: &InferenceRequest, format: PromptFormat) -> String {
    let mut out = String::new();
    let messages = req
        .body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for m in &messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let text = message_text(m.get("content"));
        match format {
            PromptFormat::Chatml => {
                out.push_str(&format!("<|im_start|>{role}\n{text}<|im_end|>\n"))
            }
            PromptFormat::Llama3 => out.push_str(&format!(
                "<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>"
            )),
            PromptFormat::Gemma => {
                let role = if role == "assistant" { "model" } else { "user" };
                out.push_str(&format!("<start_of_turn>{role}\n{text}<end_of_turn>\n"));
            }
        }
    }
    match format {
        PromptFormat::Chatml => out.push_str("<|im_start|>assistant\n"),
        PromptFormat::Llama3 => {
            out.insert_str(0, "<|begin_of_text|>");
            out.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
        }
        PromptFormat::Gemma => out.push_str("<start_of_turn>model\n"),
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchyard_protocol::Endpoint;

    fn req(body: Value) -> InferenceRequest {
        InferenceRequest::from_map(Endpoint::Chat, body.as_object().unwrap().clone()).unwrap()
    }

    #[test]
    fn chat_templates_end_with_the_assistant_turn() {
        let r = req(
            json!({"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"u"}]}),
        );
        assert!(render_chat(&r, PromptFormat::Chatml).ends_with("<|im_start|>assistant\n"));
        assert!(render_chat(&r, PromptFormat::Gemma).ends_with("<start_of_turn>model\n"));
        assert!(render_chat(&r, PromptFormat::Llama3).starts_with("<|begin_of_text|>"));
    }
}
