//! Text Generation Inference through its native API (`/generate_stream`): requests are
//! rewritten to TGI's shape and its events translated back (see `upstream::tgi`).

use switchyard_fleet::WorkerSpec;
use switchyard_protocol::InferenceRequest;

use super::{Adapter, Capabilities, WorkerRequest};
use crate::error::GatewayError;
use crate::upstream::tgi;
use crate::upstream::translate::StreamTranslator;

pub struct TgiNative;

impl Adapter for TgiNative {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Its prompt is rendered by the gateway from a chat template; a partial answer
            // cannot be handed to it to go on from.
            continues_chat: false,
            continues_completion: false,
            // Exact counts come in its final event (`details`), not as an OpenAI usage chunk.
            streams_usage: false,
            tokenize_path: None,
            exposes_metrics: true,
        }
    }

    fn request(
        &self,
        req: &InferenceRequest,
        worker: &WorkerSpec,
    ) -> Result<WorkerRequest, GatewayError> {
        let body = serde_json::to_vec(&tgi::request_body(req, worker)?)
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        Ok(WorkerRequest {
            path: tgi::path(req),
            body,
            prompt_to_count: None,
        })
    }

    fn translator(&self, req: &InferenceRequest, _whole: bool) -> Box<dyn StreamTranslator> {
        Box::new(tgi::TgiStream::new(req))
    }
}
