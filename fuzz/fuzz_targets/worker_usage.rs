//! A worker's usage report (evidence, not truth): judging it never panics, and what is billed
//! never exceeds the request's bounds, whatever the worker claims.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_gateway::upstream::account::{meter, OwnCount, UsageBounds};
use switchyard_protocol::Reported;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let (head, report) = data.split_at(16);
    let n = |i: usize| {
        u64::from(u32::from_le_bytes([
            head[i],
            head[i + 1],
            head[i + 2],
            head[i + 3],
        ]))
    };
    let bounds = UsageBounds {
        prompt: n(0),
        completion: n(4),
    };
    let own = OwnCount {
        prompt_estimate: n(8),
        counted_prompt: (head[12] % 2 == 0).then(|| n(12) ^ 0x5555),
        completion: n(8).rotate_left(7),
    };
    let value: Option<serde_json::Value> = serde_json::from_slice(report).ok();
    let reported = Reported::from_field(value.as_ref());
    let billed = meter(&reported, own, bounds);
    assert!(
        billed.usage.prompt_tokens <= bounds.prompt,
        "{billed:?} over {bounds:?}"
    );
    assert!(
        billed.usage.completion_tokens <= bounds.completion,
        "{billed:?} over {bounds:?}"
    );
    assert_eq!(
        billed.usage.total_tokens,
        billed.usage.prompt_tokens + billed.usage.completion_tokens
    );
});
