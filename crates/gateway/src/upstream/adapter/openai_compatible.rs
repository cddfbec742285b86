//! Runtimes that speak the OpenAI API (vLLM, SGLang, llama.cpp's server, TGI's Messages API, any
//! faithful server): the body goes through as the client sent it with the runtime's quirks
//! absorbed (see `upstream::openai`), and a whole answer to a stream request is read too.

use bytes::Bytes;
use switchyard_fleet::WorkerSpec;
use switchyard_protocol::{Endpoint, InferenceRequest};

use super::{Adapter, Capabilities, WorkerRequest};
use crate::error::GatewayError;
use crate::upstream::translate::StreamTranslator;
use crate::upstream::{openai, prompt, whole};

/// One OpenAI-compatible runtime: what it supports and which quirks it needs absorbed.
#[derive(Debug, Clone, Copy)]
pub struct OpenAiCompatible {
    pub capabilities: Capabilities,
    /// Reads only `max_tokens`, not `max_completion_tokens`.
    pub legacy_max_tokens: bool,
    /// Templates chats itself from plain-string messages only (see `prompt::chat_messages`).
    pub plain_string_messages: bool,
}

const NOTHING_EXTRA: Capabilities = Capabilities {
    continues_chat: false,
    continues_completion: true,
    streams_usage: true,
    tokenize_path: None,
    exposes_metrics: false,
};

/// Any server that implements the OpenAI API faithfully.
pub const OPENAI: OpenAiCompatible = OpenAiCompatible {
    capabilities: NOTHING_EXTRA,
    legacy_max_tokens: false,
    plain_string_messages: false,
};

pub const VLLM: OpenAiCompatible = OpenAiCompatible {
    capabilities: Capabilities {
        continues_chat: true,
        exposes_metrics: true,
        ..NOTHING_EXTRA
    },
    legacy_max_tokens: false,
    plain_string_messages: false,
};

pub const SGLANG: OpenAiCompatible = VLLM;

/// llama.cpp's server, or llama-cpp-python's `llama_cpp.server`: no usage in streams (it
/// ignores `include_usage`), a tokenizer endpoint to count the prompt with instead.
pub const LLAMACPP: OpenAiCompatible = OpenAiCompatible {
    capabilities: Capabilities {
        streams_usage: false,
        tokenize_path: Some("/extras/tokenize/count"),
        ..NOTHING_EXTRA
    },
    legacy_max_tokens: true,
    plain_string_messages: true,
};

/// Text Generation Inference through its OpenAI-compatible Messages API.
pub const TGI_MESSAGES: OpenAiCompatible = OpenAiCompatible {
    capabilities: Capabilities {
        exposes_metrics: true,
        ..NOTHING_EXTRA
    },
    legacy_max_tokens: false,
    plain_string_messages: false,
};

impl Adapter for OpenAiCompatible {
    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn request(
        &self,
        req: &InferenceRequest,
        worker: &WorkerSpec,
    ) -> Result<WorkerRequest, GatewayError> {
        let body = openai::request_body(req, worker, self);
        let prompt_to_count = match self.capabilities.tokenize_path {
            Some(_) if req.stream => prompt::rendered_for_count(req.endpoint, &body, worker),
            _ => None,
        };
        Ok(WorkerRequest {
            path: req.endpoint.path(),
            body: body.to_vec(),
            prompt_to_count,
        })
    }

    fn is_whole_answer(&self, content_type: &str) -> bool {
        content_type.starts_with("application/json")
    }

    fn whole_as_events(&self, endpoint: Endpoint, body: &[u8]) -> Result<Bytes, GatewayError> {
        whole::as_events(endpoint, body)
    }

    fn translator(&self, req: &InferenceRequest, whole: bool) -> Box<dyn StreamTranslator> {
        let stream = openai::OpenAiStream::new(req);
        if whole {
            Box::new(stream.count_by_characters())
        } else {
            Box::new(stream)
        }
    }
}
