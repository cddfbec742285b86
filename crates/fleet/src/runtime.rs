//! The inference runtimes a worker can run, and what differs between them on the wire.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    /// Any server that implements the OpenAI API faithfully.
    Openai,
    Vllm,
    Sglang,
    /// llama.cpp's server, or llama-cpp-python's `llama_cpp.server`.
    Llamacpp,
    /// Text Generation Inference through its OpenAI-compatible Messages API.
    Tgi,
    /// Text Generation Inference through its native `/generate` and `/generate_stream`.
    TgiNative,
}

/// The protocol spoken on the wire to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireApi {
    OpenAi,
    TgiNative,
}

impl RuntimeKind {
    pub fn wire_api(self) -> WireApi {
        match self {
            RuntimeKind::TgiNative => WireApi::TgiNative,
            _ => WireApi::OpenAi,
        }
    }

    /// Path answered with 2xx when the server is up and its model loaded. llama-cpp-python has
    /// no `/health`, and `/v1/models` is what every OpenAI-compatible server has.
    pub fn health_path(self) -> &'static str {
        match self {
            RuntimeKind::Vllm | RuntimeKind::Sglang | RuntimeKind::Tgi | RuntimeKind::TgiNative => {
                "/health"
            }
            RuntimeKind::Openai | RuntimeKind::Llamacpp => "/v1/models",
        }
    }

    /// llama.cpp's server ignores `max_completion_tokens`; it only reads `max_tokens`.
    pub fn wants_legacy_max_tokens(self) -> bool {
        matches!(self, RuntimeKind::Llamacpp)
    }

    /// Whether a chat request can end with a partial assistant message for the model to go on
    /// from (`continue_final_message`, vLLM's and SGLang's extension): what resuming a broken
    /// stream on another worker needs.
    pub fn continues_final_message(self) -> bool {
        matches!(self, RuntimeKind::Vllm | RuntimeKind::Sglang)
    }

    /// Whether the runtime honours `stream_options.include_usage`. Where it does, the gateway
    /// always asks for it, so streamed usage is the runtime's own count, not an estimate.
    pub fn streams_usage(self) -> bool {
        matches!(
            self,
            RuntimeKind::Openai | RuntimeKind::Vllm | RuntimeKind::Sglang | RuntimeKind::Tgi
        )
    }
}

/// How chat messages become one prompt string for a runtime that only takes text
/// (TGI's native API). OpenAI-compatible runtimes apply the model's own template instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromptFormat {
    #[default]
    Chatml,
    Llama3,
    Gemma,
}
