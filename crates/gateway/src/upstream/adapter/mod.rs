//! Runtime adapters: what differs between inference runtimes on the wire, behind one trait.
//! The rest of the request path (dispatch, relay, resume, settle) knows runtimes only through
//! an [`Adapter`] and its [`Capabilities`], chosen once per attempt by the worker's
//! `runtime` ([`for_runtime`]: the registration).
//!
//! Adding a runtime: a runtime that speaks the OpenAI API with its own quirks is one more
//! [`openai_compatible::OpenAiCompatible`] entry; a runtime with its own protocol is one new
//! file here implementing [`Adapter`] (see [`tgi_native`]), its `RuntimeKind` variant in
//! `switchyard-fleet` (with the path its health checks use) and its arm in [`for_runtime`].

pub mod openai_compatible;
pub mod tgi_native;

use bytes::Bytes;
use switchyard_fleet::{RuntimeKind, WorkerSpec};
use switchyard_protocol::{Endpoint, InferenceRequest};

use super::translate::StreamTranslator;
use crate::error::GatewayError;

/// What a runtime can do that the gateway relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// A chat request may end with a partial assistant message to go on from
    /// (`continue_final_message`): a broken chat stream can be resumed on another worker.
    pub continues_chat: bool,
    /// A completion's string prompt with the text so far appended goes on from there: a broken
    /// completion stream can be resumed.
    pub continues_completion: bool,
    /// Honours `stream_options.include_usage`: streamed usage is the runtime's own count.
    pub streams_usage: bool,
    /// A tokenizer endpoint that counts a rendered prompt, asked when a stream carried no usage.
    pub tokenize_path: Option<&'static str>,
    /// Serves Prometheus metrics on `/metrics` (KV cache, running and waiting requests).
    pub exposes_metrics: bool,
}

/// The call to make on a worker.
pub struct WorkerRequest {
    pub path: &'static str,
    pub body: Vec<u8>,
    /// The prompt as the worker will tokenize it, when its streams carry no usage and it has a
    /// [`Capabilities::tokenize_path`] to count it with.
    pub prompt_to_count: Option<String>,
}

pub trait Adapter: Send + Sync + 'static {
    fn capabilities(&self) -> Capabilities;

    /// The call for `req`, which is always a stream (unstreamed requests are assembled by the
    /// gateway, see `collect`).
    fn request(
        &self,
        req: &InferenceRequest,
        worker: &WorkerSpec,
    ) -> Result<WorkerRequest, GatewayError>;

    /// Whether a response with this `Content-Type` is one whole answer instead of the stream
    /// asked for (a server that ignores `stream: true`), which [`Adapter::whole_as_events`]
    /// can read.
    fn is_whole_answer(&self, _content_type: &str) -> bool {
        false
    }

    /// A whole answer as the events a stream of it would have been.
    fn whole_as_events(&self, _endpoint: Endpoint, _body: &[u8]) -> Result<Bytes, GatewayError> {
        Err(GatewayError::UpstreamFailed(
            "the worker answered whole to a stream request".into(),
        ))
    }

    /// The translator of the worker's events into OpenAI chunks; `whole` when the events came
    /// from [`Adapter::whole_as_events`].
    fn translator(&self, req: &InferenceRequest, whole: bool) -> Box<dyn StreamTranslator>;
}

/// The adapter of a worker's runtime: the one place runtimes are registered.
pub fn for_runtime(runtime: RuntimeKind) -> &'static dyn Adapter {
    use openai_compatible as oa;
    match runtime {
        RuntimeKind::Openai => &oa::OPENAI,
        RuntimeKind::Vllm => &oa::VLLM,
        RuntimeKind::Sglang => &oa::SGLANG,
        RuntimeKind::Llamacpp => &oa::LLAMACPP,
        RuntimeKind::Tgi => &oa::TGI_MESSAGES,
        RuntimeKind::TgiNative => &tgi_native::TgiNative,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_follow_what_each_runtime_supports() {
        let caps = |r| for_runtime(r).capabilities();
        // Resuming a chat needs continue_final_message: vLLM and SGLang only.
        assert!(caps(RuntimeKind::Vllm).continues_chat);
        assert!(caps(RuntimeKind::Sglang).continues_chat);
        assert!(!caps(RuntimeKind::Llamacpp).continues_chat);
        assert!(!caps(RuntimeKind::TgiNative).continues_completion);
        // llama-cpp-python's streams carry no usage: it is counted with its tokenizer.
        assert!(!caps(RuntimeKind::Llamacpp).streams_usage);
        assert_eq!(
            caps(RuntimeKind::Llamacpp).tokenize_path,
            Some("/extras/tokenize/count")
        );
        assert!(caps(RuntimeKind::Vllm).exposes_metrics);
        assert!(!caps(RuntimeKind::Openai).exposes_metrics);
    }
}
