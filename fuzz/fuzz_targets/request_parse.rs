//! A client's request body: parsing and validation never panic, and what they accept has
//! sane bounds (the worst case a request may be billed for is finite and what the bounds say).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_gateway::upstream::account::UsageBounds;
use switchyard_protocol::{Endpoint, InferenceRequest};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let endpoint = if which % 2 == 0 {
        Endpoint::Chat
    } else {
        Endpoint::Completions
    };
    if let Ok(req) = InferenceRequest::parse(endpoint, body) {
        let bounds = UsageBounds::of(&req);
        let _ = req.prompt_size().upper_bound();
        assert!(req.choices() >= 1, "an accepted request asks for no choice");
        let streamed = req.as_streamed();
        assert_eq!(UsageBounds::of(&streamed), bounds);
    }
});
