//! What a response consumed. Workers run on strangers' machines, so what a worker reports is
//! evidence, checked against bounds derived from the request before anything is billed or shown
//! to the client:
//!
//! - prompt tokens at most the prompt's upper bound (its text bytes, token ids and per-item
//!   costs; see [`switchyard_protocol::PromptSize`]), and never above
//!   [`MAX_BILLED_PROMPT_TOKENS`];
//! - completion tokens at most `max_tokens` for each choice generated: `n` per prompt, and a
//!   completions request may carry a batch of prompts (the tier's cap was written into the
//!   request).
//!
//! Within bounds the worker's figures are billed. Out of bounds, or malformed, they are not: the
//! gateway's own count is (its prompt estimate and the tokens it relayed), and the result says
//! what the worker claimed so the settlement can mark the row and count it against the worker.
//! Where the worker reported nothing, the gateway's count is used too, without blame.

use switchyard_metering::money::{MAX_BILLED_COMPLETION_TOKENS, MAX_BILLED_PROMPT_TOKENS};
use switchyard_metering::UsageSource;
use switchyard_protocol::{InferenceRequest, Reported, Usage};

/// The most a worker may report for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageBounds {
    pub prompt: u64,
    pub completion: u64,
}

impl UsageBounds {
    pub fn of(req: &InferenceRequest) -> Self {
        let completion = req
            .max_tokens
            .map(|m| u64::from(m).saturating_mul(req.choices()))
            .unwrap_or(MAX_BILLED_COMPLETION_TOKENS);
        Self {
            prompt: req
                .prompt_size()
                .upper_bound()
                .min(MAX_BILLED_PROMPT_TOKENS),
            completion: completion.min(MAX_BILLED_COMPLETION_TOKENS),
        }
    }

    /// Why `u` is out of bounds, if it is.
    fn check(&self, u: &Usage) -> Option<String> {
        if u.prompt_tokens > self.prompt {
            return Some(format!(
                "worker reported prompt_tokens {} above the prompt's bound {}",
                u.prompt_tokens, self.prompt
            ));
        }
        if u.completion_tokens > self.completion {
            return Some(format!(
                "worker reported completion_tokens {} above max_tokens × choices = {}",
                u.completion_tokens, self.completion
            ));
        }
        None
    }
}

/// The gateway's own figures for a response.
#[derive(Debug, Clone, Copy)]
pub struct OwnCount {
    pub prompt_estimate: u64,
    /// The prompt counted by the worker's tokenizer endpoint (llama.cpp), when asked.
    pub counted_prompt: Option<u64>,
    /// Completion tokens relayed (one per content-bearing chunk), or estimated from the text.
    pub completion: u64,
}

/// Usage as billed and shown to the client, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metered {
    pub usage: Usage,
    pub source: UsageSource,
    /// Whether the counts are the gateway's estimate rather than a tokenizer's.
    pub estimated: bool,
    /// What the worker claimed, when its report was refused: the row is marked with it and
    /// the worker is held to account.
    pub rejected: Option<String>,
}

impl Metered {
    /// What a request that reached a worker and ended before any answer is billed: the
    /// prompt estimate, no completion.
    pub fn prompt_only(prompt_estimate: u64) -> Self {
        Self {
            usage: Usage::new(prompt_estimate, 0),
            source: UsageSource::Gateway,
            estimated: true,
            rejected: None,
        }
    }
}

/// Judges a worker's report against the bounds (see the module's docs).
pub fn meter(reported: &Reported, own: OwnCount, bounds: UsageBounds) -> Metered {
    match reported {
        Reported::Counts(u) => match bounds.check(u) {
            None => Metered {
                usage: *u,
                source: UsageSource::Worker,
                estimated: false,
                rejected: None,
            },
            Some(why) => own_count(own, bounds, Some(why)),
        },
        Reported::Malformed(why) => own_count(own, bounds, Some(format!("worker sent {why}"))),
        Reported::Absent => own_count(own, bounds, None),
    }
}

fn own_count(own: OwnCount, bounds: UsageBounds, mut rejected: Option<String>) -> Metered {
    let completion = own.completion.min(bounds.completion);
    let counted = match own.counted_prompt {
        Some(p) if p <= bounds.prompt => Some(p),
        Some(p) => {
            rejected.get_or_insert_with(|| {
                format!(
                    "worker's tokenizer counted {p} prompt tokens, above the prompt's bound {}",
                    bounds.prompt
                )
            });
            None
        }
        None => None,
    };
    let (prompt, source, estimated) = match (counted, &rejected) {
        (Some(p), None) => (p, UsageSource::WorkerTokenizer, false),
        (Some(p), Some(_)) => (p, UsageSource::GatewayRejected, false),
        (None, None) => (
            own.prompt_estimate.min(bounds.prompt),
            UsageSource::Gateway,
            true,
        ),
        (None, Some(_)) => (
            own.prompt_estimate.min(bounds.prompt),
            UsageSource::GatewayRejected,
            true,
        ),
    };
    Metered {
        usage: Usage::new(prompt, completion),
        source,
        estimated,
        rejected,
    }
}

#[derive(Debug, Clone)]
pub struct StreamAccount {
    /// Usage as the worker reported it (its last report).
    pub reported: Reported,
    /// Prompt tokens counted by the worker's own tokenizer, for runtimes that stream no usage.
    pub counted_prompt: Option<u64>,
    /// Our estimate, the last resort.
    pub prompt_estimate: u64,
    pub bounds: UsageBounds,
    /// Content-bearing chunks relayed: runtimes stream one token per chunk, so this counts
    /// completion tokens when the worker reports no usage.
    pub content_chunks: u64,
    pub finish_reason: Option<String>,
    /// The completion's text as relayed, only when the tenant logs content.
    pub completion: Option<crate::content_log::capture::Capture>,
    /// The text relayed so far, kept only for streams that can be resumed on another worker
    /// (see `relay::Resume`).
    pub resume_text: Option<String>,
    /// Completion tokens relayed before the stream was resumed on another worker: the new
    /// worker's usage counts from the resumption, with that text in its prompt.
    pub resumed_after: u64,
    /// The tier's output filters, watching the text as it is relayed.
    pub output_watch: Option<crate::filter::OutputWatch>,
    /// The output pattern the text matched: the stream ends (see `relay`).
    pub filtered: Option<String>,
}

impl StreamAccount {
    pub fn new(req: &InferenceRequest) -> Self {
        Self {
            reported: Reported::Absent,
            counted_prompt: None,
            prompt_estimate: req.prompt_size().estimate(),
            bounds: UsageBounds::of(req),
            content_chunks: 0,
            finish_reason: None,
            completion: None,
            resume_text: None,
            resumed_after: 0,
            output_watch: None,
            filtered: None,
        }
    }

    /// Shows generated text of choice `index` to the output filter, when the tier has one:
    /// the answer, and what else the model writes (reasoning, refusals, tool arguments).
    pub fn watch(&mut self, index: u64, text: &str) {
        if let (Some(watch), None) = (&mut self.output_watch, &self.filtered) {
            self.filtered = watch.push(index, text);
        }
    }

    /// Notes relayed completion text, for the content log and resumption when they keep it.
    pub fn relayed(&mut self, text: &str) {
        if let Some(c) = &mut self.completion {
            c.push(text);
        }
        if let Some(t) = &mut self.resume_text {
            t.push_str(text);
        }
    }

    /// The stream is being resumed on another worker: what came before stays counted, the
    /// new worker's report will cover only what follows.
    pub fn resuming(&mut self) {
        // A report from the broken worker (rare: usage comes last) is not its last word.
        self.reported = Reported::Absent;
        self.resumed_after = self.content_chunks;
        self.finish_reason = None;
    }

    /// The usage to bill and show: the worker's report if it gave one within bounds, else the
    /// worker's prompt count (or our estimate) and the chunks we relayed.
    pub fn usage(&self) -> Metered {
        let own = OwnCount {
            prompt_estimate: self.prompt_estimate,
            counted_prompt: self.counted_prompt,
            completion: self.content_chunks,
        };
        if self.resumed_after == 0 {
            return meter(&self.reported, own, self.bounds);
        }
        // The resumed worker's prompt held the text streamed before (about one token per
        // chunk): subtract it there, add it to the completion. An estimate, and marked so.
        let reported = match &self.reported {
            Reported::Counts(u) => Reported::Counts(Usage::new(
                u.prompt_tokens.saturating_sub(self.resumed_after),
                u.completion_tokens.saturating_add(self.resumed_after),
            )),
            other => other.clone(),
        };
        let mut metered = meter(
            &reported,
            OwnCount {
                counted_prompt: None,
                ..own
            },
            self.bounds,
        );
        metered.estimated = true;
        metered
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchyard_protocol::Endpoint;

    fn req(max_tokens: u32, n: u32) -> InferenceRequest {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": max_tokens, "n": n});
        InferenceRequest::from_map(Endpoint::Chat, body.as_object().unwrap().clone()).unwrap()
    }

    fn own() -> OwnCount {
        OwnCount {
            prompt_estimate: 7,
            counted_prompt: None,
            completion: 3,
        }
    }

    #[test]
    fn honest_reports_are_billed_as_reported() {
        let bounds = UsageBounds::of(&req(3, 1));
        let m = meter(&Reported::Counts(Usage::new(9, 3)), own(), bounds);
        assert_eq!(m.usage, Usage::new(9, 3));
        assert_eq!(
            (m.source, m.estimated, m.rejected),
            (UsageSource::Worker, false, None)
        );
    }

    #[test]
    fn absurd_reports_are_refused_and_the_gateway_s_count_is_billed() {
        let bounds = UsageBounds::of(&req(3, 1));
        for lie in [
            Usage::new(1 << 63, 3),
            Usage::new(3_000_000_000_000_000, 3),
            Usage::new(9, 100_000),
            Usage::new(u64::MAX, u64::MAX),
        ] {
            let m = meter(&Reported::Counts(lie), own(), bounds);
            assert_eq!(m.usage, Usage::new(7, 3), "{lie:?}");
            assert_eq!(m.source, UsageSource::GatewayRejected);
            assert!(m.rejected.is_some() && m.estimated);
        }
        let m = meter(&Reported::Malformed("negative".into()), own(), bounds);
        assert_eq!(
            (m.usage, m.source),
            (Usage::new(7, 3), UsageSource::GatewayRejected)
        );
    }

    #[test]
    fn the_completion_bound_is_max_tokens_times_n() {
        let bounds = UsageBounds::of(&req(3, 2));
        assert_eq!(bounds.completion, 6);
        let m = meter(&Reported::Counts(Usage::new(9, 6)), own(), bounds);
        assert_eq!(m.source, UsageSource::Worker);
        // Our own count is held to the same bound.
        let relayed_too_much = OwnCount {
            completion: 50,
            ..own()
        };
        let m = meter(&Reported::Absent, relayed_too_much, bounds);
        assert_eq!(
            (m.usage.completion_tokens, m.source),
            (6, UsageSource::Gateway)
        );
    }

    /// A completions batch of three prompts with `n: 2` generates six choices, each up to
    /// `max_tokens`: an honest worker's count for all of them is within the bound.
    #[test]
    fn the_completion_bound_counts_every_prompt_of_a_batch() {
        let body = json!({"model": "m", "prompt": ["a", "b", "c"], "max_tokens": 5, "n": 2});
        let req =
            InferenceRequest::from_map(Endpoint::Completions, body.as_object().unwrap().clone())
                .unwrap();
        let bounds = UsageBounds::of(&req);
        assert_eq!(bounds.completion, 30);
        let m = meter(&Reported::Counts(Usage::new(6, 30)), own(), bounds);
        assert_eq!(m.source, UsageSource::Worker);
        let m = meter(&Reported::Counts(Usage::new(6, 31)), own(), bounds);
        assert_eq!(m.source, UsageSource::GatewayRejected);
    }

    #[test]
    fn a_tokenizer_count_is_checked_too() {
        let bounds = UsageBounds::of(&req(3, 1));
        let counted = |p| OwnCount {
            counted_prompt: Some(p),
            ..own()
        };
        let m = meter(&Reported::Absent, counted(8), bounds);
        assert_eq!(
            (m.usage.prompt_tokens, m.source),
            (8, UsageSource::WorkerTokenizer)
        );
        let m = meter(&Reported::Absent, counted(1 << 40), bounds);
        assert_eq!(
            (m.usage.prompt_tokens, m.source),
            (7, UsageSource::GatewayRejected)
        );
    }
}
