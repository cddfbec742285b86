//! The OpenAI wire protocol as Switchyard speaks it to clients and to workers.
//!
//! - [`request`]: lenient parsing of `/v1/chat/completions` and `/v1/completions` bodies. The
//!   body is kept as a JSON map so that fields we do not know pass through to the worker
//!   untouched; the fields we do know are validated with errors that name the parameter.
//! - [`prompt_size`]: what a prompt is made of, for token estimates and upper bounds.
//! - [`response`]: typed response objects, for adapters that translate from a native API.
//! - [`sse`]: an incremental server-sent-events parser that survives any chunk boundary.
//! - [`raw_object`]: a JSON object read one level deep, for relaying bodies with a few fields
//!   changed and the rest copied byte for byte.
//! - [`error`]: the OpenAI error body `{"error":{"message","type","param","code"}}`.

pub mod error;
pub mod prompt_size;
pub mod raw_object;
pub mod request;
pub mod response;
pub mod sse;

pub use error::ErrorBody;
pub use prompt_size::PromptSize;
pub use raw_object::RawObject;
pub use request::{Endpoint, InferenceRequest, InvalidRequest};
pub use response::{Reported, Usage};
pub use sse::{SseItem, SseParser};
