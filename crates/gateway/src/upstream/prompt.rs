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

fn role(m: &Value) -> &str {
    m.get("role").and_then(Value::as_str).unwrap_or("user")
}

/// Rewrites chat messages into what a text-templating runtime handles: content parts become
/// one string (llama-cpp-python drops array content), `developer` becomes `system` (it refuses
/// the role with a 500), and for Gemma, which has no system turn (llama-cpp-python drops system
/// messages silently), system text is folded into the first user turn as Gemma's own template
/// does. The worker then sees what the client sent, and a prompt count sees what the worker sees.
pub fn normalize_messages(messages: &mut Vec<Value>, format: PromptFormat) {
    for m in messages.iter_mut() {
        if let Value::Object(obj) = m {
            if obj.get("role").and_then(Value::as_str) == Some("developer") {
                obj.insert("role".into(), Value::from("system"));
            }
            if matches!(obj.get("content"), Some(Value::Array(_))) {
                let text = message_text(obj.get("content"));
                obj.insert("content".into(), Value::from(text));
            }
        }
    }
    if format == PromptFormat::Gemma {
        let system: Vec<String> = messages
            .iter()
            .filter(|m| role(m) == "system")
            .map(|m| message_text(m.get("content")))
            .filter(|t| !t.is_empty())
            .collect();
        messages.retain(|m| role(m) != "system");
        if !system.is_empty() {
            let prefix = system.join("\n\n");
            match messages.iter_mut().find(|m| role(m) == "user") {
                Some(Value::Object(user)) => {
                    let text = message_text(user.get("content"));
                    user.insert("content".into(), Value::from(format!("{prefix}\n\n{text}")));
                }
                _ => messages.insert(0, serde_json::json!({"role": "user", "content": prefix})),
            }
        }
    }
}

/// Renders chat messages into the prompt format the model was trained on. Gemma follows
/// llama-cpp-python's `format_gemma` exactly (user and model turns only; an empty turn is its
/// header alone), so that a count of this text equals the worker's own prompt count.
pub fn render_chat(messages: &[Value], format: PromptFormat) -> String {
    let mut out = String::new();
    for m in messages {
        let role = role(m);
        let text = message_text(m.get("content"));
        match format {
            PromptFormat::Chatml => {
                out.push_str(&format!("<|im_start|>{role}\n{text}<|im_end|>\n"))
            }
            PromptFormat::Llama3 => out.push_str(&format!(
                "<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>"
            )),
            PromptFormat::Gemma => {
                let turn = match role {
                    "user" => "<start_of_turn>user\n",
                    "assistant" => "<start_of_turn>model\n",
                    _ => continue,
                };
                out.push_str(turn);
                if !text.is_empty() {
                    out.push_str(&text);
                    out.push_str("<end_of_turn>\n");
                }
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

/// The chat messages of a request, normalized for a text-templating runtime.
pub fn chat_messages(body: &serde_json::Map<String, Value>, format: PromptFormat) -> Vec<Value> {
    let mut messages = body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    normalize_messages(&mut messages, format);
    messages
}

/// The prompt of a request body as sent to the worker, rendered as the worker will tokenize
/// it (for a tokenizer count, see `prompt_count`); `None` if it cannot be rendered.
pub fn rendered_for_count(
    endpoint: switchyard_protocol::Endpoint,
    body: &super::edited_body::EditedBody<'_>,
    worker: &switchyard_fleet::WorkerSpec,
) -> Option<String> {
    match endpoint {
        switchyard_protocol::Endpoint::Chat => {
            let messages = body.get("messages").and_then(Value::as_array)?;
            Some(render_chat(messages, worker.prompt_format))
        }
        switchyard_protocol::Endpoint::Completions => match body.get("prompt")? {
            Value::String(s) => Some(s.clone()),
            _ => None,
        },
    }
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
        assert!(render_chat(
            &chat_messages(&r.body, PromptFormat::Chatml),
            PromptFormat::Chatml
        )
        .ends_with("<|im_start|>assistant\n"));
        assert!(render_chat(
            &chat_messages(&r.body, PromptFormat::Gemma),
            PromptFormat::Gemma
        )
        .ends_with("<start_of_turn>model\n"));
        assert!(render_chat(
            &chat_messages(&r.body, PromptFormat::Llama3),
            PromptFormat::Llama3
        )
        .starts_with("<|begin_of_text|>"));
    }

    #[test]
    fn gemma_folds_system_into_the_first_user_turn_and_flattens_parts() {
        let r = req(json!({"model":"m","messages":[
            {"role":"developer","content":"Be brief."},
            {"role":"user","content":[{"type":"text","text":"Hi "},{"type":"text","text":"there"}]},
            {"role":"assistant","content":""}
        ]}));
        let messages = chat_messages(&r.body, PromptFormat::Gemma);
        assert_eq!(
            messages[0],
            json!({"role":"user","content":"Be brief.\n\nHi there"})
        );
        assert_eq!(
            render_chat(&messages, PromptFormat::Gemma),
            "<start_of_turn>user\nBe brief.\n\nHi there<end_of_turn>\n<start_of_turn>model\n<start_of_turn>model\n"
        );
        let chatml = chat_messages(&r.body, PromptFormat::Chatml);
        assert_eq!(chatml[0]["role"], "system", "developer becomes system");
    }
}
