//! Frames of the event stream sent to the client, each ready to be written as it is.

use std::collections::VecDeque;

use bytes::Bytes;
use serde_json::Value;
use switchyard_protocol::ErrorBody;

#[derive(Debug, Default)]
pub struct Frames(VecDeque<Bytes>);

impl Frames {
    pub fn push_json(&mut self, value: &Value) {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(b"data: ");
        // Serializing a `Value` to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut buf, value);
        buf.extend_from_slice(b"\n\n");
        self.0.push_back(Bytes::from(buf));
    }

    /// A frame already written (`data: …` and its blank line).
    pub fn push_frame(&mut self, frame: Vec<u8>) {
        self.0.push_back(Bytes::from(frame));
    }

    pub fn push_error(&mut self, body: &ErrorBody) {
        let mut buf = b"data: ".to_vec();
        buf.extend_from_slice(&body.to_json());
        buf.extend_from_slice(b"\n\n");
        self.0.push_back(Bytes::from(buf));
    }

    pub fn push_done(&mut self) {
        self.0.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
    }

    pub fn push_comment(&mut self, text: &str) {
        self.0.push_back(Bytes::from(format!(":{text}\n\n")));
    }

    pub fn pop(&mut self) -> Option<Bytes> {
        self.0.pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Frames waiting to be handed on.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Drops the frames after the first `len` (what one event made, taken back).
    pub fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }
}
