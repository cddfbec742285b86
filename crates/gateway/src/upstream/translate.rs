//! The contract between the stream relay and a runtime's adapter: the relay handles bytes,
//! timing and failure; the translator turns each upstream event into client frames.

use super::account::StreamAccount;
use super::frames::Frames;
use crate::error::GatewayError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The response is complete; `[DONE]` has been emitted.
    Done,
}

pub trait StreamTranslator: Send {
    /// One upstream event's `data`. An `Err` ends the stream as a worker failure.
    fn on_event(&mut self, data: &str, out: &mut Frames) -> Result<Flow, GatewayError>;
    /// The worker closed the stream without a final event.
    fn on_eof(&mut self, out: &mut Frames) -> Result<(), GatewayError>;
    fn account(&self) -> &StreamAccount;
    fn account_mut(&mut self) -> &mut StreamAccount;
    /// The prompt's token count from the worker's tokenizer, when one was asked for.
    fn set_counted_prompt(&mut self, _tokens: Option<u64>) {}
    /// The output filter ended the answer: a last chunk with `finish_reason:
    /// "content_filter"`, then `error` as one event (streamed clients), the usage chunk if the
    /// client asked for it, and `[DONE]`.
    fn end_filtered(&mut self, out: &mut Frames, error: Option<&switchyard_protocol::ErrorBody>);
    /// Whether `data` ends the stream (the point where a prompt count must be in hand).
    fn is_final(&self, data: &str) -> bool {
        data.trim() == "[DONE]"
    }
}
