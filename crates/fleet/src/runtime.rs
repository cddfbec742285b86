//! The inference runtimes a worker can run. What differs between them on the wire is the
//! gateway's runtime adapters' (`switchyard_gateway::upstream::adapter`); here is only what
//! the fleet itself needs: the path its health checks use.

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

impl RuntimeKind {
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
