//! The stream relay: upstream bytes in, client frames out, one event at a time as the worker
//! produces them. It owns the stall timer, turns a broken or stalled upstream into a single SSE
//! error event, and holds the request's settlement and worker lease, so that whichever way the
//! stream ends (completion, failure, or the client going away and dropping it) the worker is
//! released, the upstream connection is closed and the request is settled exactly once.
//!
//! For runtimes whose streams carry no usage, a lazy prompt count is polled when the final
//! event arrives, and that event waits for it (bounded by `COUNT_DEADLINE`).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use std::sync::Arc;

use switchyard_fleet::{Worker, WorkerLease};
use switchyard_protocol::{SseItem, SseParser};
use tokio::time::{Instant, Sleep};

use super::frames::Frames;
use super::translate::{Flow, StreamTranslator};
use crate::error::GatewayError;
use crate::settle::{Outcome, Settlement};

/// How a relay goes on on another worker when its stream breaks mid-way (implemented by
/// `crate::dispatch::resume`, which knows how workers are chosen).
pub trait Continuation: Send {
    /// A future that finds another worker and opens the continuation of the stream after
    /// `text` (`tokens` of it relayed); `None` when resuming is spent or not allowed now.
    fn continuation(
        &mut self,
        text: &str,
        tokens: u64,
    ) -> Option<BoxFuture<'static, Result<(Upstream, WorkerLease), GatewayError>>>;
    /// The worker a continuation went to, so a second resumption avoids it too.
    fn tried(&mut self, worker: &Arc<Worker>);
}

pub type Upstream = BoxStream<'static, Result<Bytes, hyper::Error>>;

/// How long the end of a stream may wait for the worker's prompt count.
const COUNT_DEADLINE: Duration = Duration::from_secs(2);

enum State {
    Streaming,
    Finished,
    /// The worker failed; failures before the first frame are retried on another worker.
    Failed(GatewayError),
}

pub struct Relay {
    upstream: Upstream,
    upstream_done: bool,
    parser: SseParser,
    parsed: Vec<SseItem>,
    /// Parsed events not yet translated: the final one waits here for the prompt count.
    pending: VecDeque<SseItem>,
    translator: Box<dyn StreamTranslator>,
    prompt_count: Option<BoxFuture<'static, Option<u64>>>,
    count_deadline: Option<Pin<Box<Sleep>>>,
    frames: Frames,
    frames_sent: u64,
    first_frame_at: Option<std::time::Instant>,
    state: State,
    stall_timeout: Duration,
    stall: Pin<Box<Sleep>>,
    eject_after: u32,
    // Attached once the first frame is in hand; dropped with the relay.
    lease: Option<WorkerLease>,
    settlement: Option<Settlement>,
    /// Set for streams that may go on on another worker if this one breaks.
    resume: Option<Box<dyn Continuation>>,
    /// The continuation being opened (see [`super::resume`]).
    resuming: Option<BoxFuture<'static, Result<(Upstream, WorkerLease), GatewayError>>>,
    /// What broke the stream, while a continuation is being opened.
    broken: Option<GatewayError>,
    /// The client asked for one whole answer (see [`super::collect`]): a failure is then an
    /// error response, settled as a failed request, not a stream cut after its 200.
    collected: bool,
    /// How often the settlement hears what was relayed (crash accounting), and when it last
    /// did.
    checkpoint_every: Duration,
    last_checkpoint: Option<std::time::Instant>,
    /// The worker answered whole: its first frame is not a first token (no TTFT).
    no_first_token: bool,
    /// The tier whose output filters watch this stream (for the metric).
    filtered_tier: Option<String>,
}

impl Relay {
    pub fn new(
        upstream: Upstream,
        translator: Box<dyn StreamTranslator>,
        prompt_count: Option<BoxFuture<'static, Option<u64>>>,
        stall_timeout: Duration,
        eject_after: u32,
    ) -> Self {
        Self {
            upstream,
            upstream_done: false,
            parser: SseParser::new(),
            parsed: Vec::new(),
            pending: VecDeque::new(),
            translator,
            prompt_count,
            count_deadline: None,
            frames: Frames::default(),
            frames_sent: 0,
            first_frame_at: None,
            state: State::Streaming,
            stall_timeout,
            stall: Box::pin(tokio::time::sleep(stall_timeout)),
            eject_after,
            lease: None,
            settlement: None,
            resume: None,
            resuming: None,
            broken: None,
            collected: false,
            checkpoint_every: Duration::from_secs(2),
            last_checkpoint: None,
            no_first_token: false,
            filtered_tier: None,
        }
    }

    /// The worker answered whole (see `upstream::whole`): no first token was seen, so the
    /// request has no TTFT; it counts for errors only, never its whole length as a TTFT.
    pub fn no_first_token(&mut self) {
        self.no_first_token = true;
    }

    /// Workers the request has been sent to, over every attempt (see `Settlement::attempts`).
    pub fn attempts(&self) -> u32 {
        self.settlement.as_ref().map_or(0, Settlement::attempts)
    }

    /// What failed the answer, once something has: the error as classified where it
    /// happened (a stall is a timeout, a worker's refusal keeps its status), for a caller that
    /// reads the relay to its end rather than passing its frames on.
    pub fn failure(&self) -> Option<&GatewayError> {
        match &self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the answer's first token was observed (not a whole answer at once).
    pub fn saw_first_token(&self) -> bool {
        !self.no_first_token
    }

    /// How often a long answer's progress is checkpointed to the ledger (see
    /// `switchyard_metering::open`).
    pub fn checkpoint_every(&mut self, every: Duration) {
        self.checkpoint_every = every;
    }

    /// Tells the settlement what has reached the client so far: the tokens translated, less
    /// the frames not yet handed on (those queued and the one in hand). Never more than the
    /// client was sent, so a crash never bills a token it did not receive.
    fn checkpoint(&mut self) {
        if let Some(settlement) = &self.settlement {
            let account = self.translator.account();
            let unsent = u64::try_from(self.frames.len()).unwrap_or(u64::MAX) + 1;
            let sent = account.content_chunks.saturating_sub(unsent);
            settlement.checkpoint(sent.min(account.bounds.completion));
            self.last_checkpoint = Some(std::time::Instant::now());
        }
    }

    /// Takes the request's settlement back (and the worker's lease, released): the caller
    /// will settle the request some other way. For an unstreamed answer that failed before
    /// any of it reached the client, which can still start over on another worker.
    pub fn detach(&mut self) -> Option<Settlement> {
        self.lease = None;
        self.settlement.take()
    }

    /// The usage to bill so far (all of it, once the stream has ended).
    pub fn metered(&self) -> super::account::Metered {
        self.translator.account().usage()
    }

    /// The frames go to [`super::collect`], not to the client (an unstreamed request).
    pub fn for_unstreamed_client(&mut self) {
        self.collected = true;
    }

    /// Ends the stream as failed with `error` (the collector gave up waiting): it settles as
    /// that failure, not as a client that went away.
    pub fn abort(&mut self, error: GatewayError) {
        if matches!(self.state, State::Streaming) {
            self.state = State::Failed(error);
        }
    }

    /// Keeps the relayed text, so that the stream can be resumed (see [`super::resume`]).
    pub fn keep_text_for_resume(&mut self) {
        self.translator.account_mut().resume_text = Some(String::new());
    }

    /// Whether the stream keeps what a resumption needs (see [`Self::keep_text_for_resume`]).
    pub fn resumable(&self) -> bool {
        self.translator.account().resume_text.is_some()
    }

    /// Lets a mid-stream failure go on on another worker instead of ending the stream.
    pub fn enable_resume(&mut self, resume: Box<dyn Continuation>) {
        if self.resumable() {
            self.resume = Some(resume);
        }
    }

    /// Keeps the completion's text as it is relayed, for the content log. Called before the
    /// first frame, and only for tenants who log content: others buffer nothing.
    pub fn capture_content(&mut self) {
        self.translator.account_mut().completion = Some(Default::default());
    }

    /// Watches the relayed text with the tier's output filters. Called before the first frame.
    pub fn watch_output(&mut self, watch: crate::filter::OutputWatch, tier: &str) {
        self.translator.account_mut().output_watch = Some(watch);
        self.filtered_tier = Some(tier.to_string());
    }

    /// The text matched an output pattern: what the matching event made is taken back (the
    /// rest of the text before it has reached the client), the answer ends with
    /// `finish_reason: "content_filter"` and, on a stream, one error event; the worker's
    /// request is cancelled when the relay is dropped. Billed for what was generated.
    fn end_filtered(&mut self, before: usize, pattern: &str) {
        self.frames.truncate(before);
        let error =
            GatewayError::ContentFilter("The answer was stopped by the content filter.".into());
        let body = (!self.collected).then(|| error.body());
        self.translator
            .end_filtered(&mut self.frames, body.as_ref());
        self.state = State::Finished;
        let tier = self.filtered_tier.as_deref().unwrap_or("");
        crate::metrics::content_filtered("output", tier, "configured");
        tracing::warn!(tier, pattern, "answer stopped by the output filter");
    }

    /// Waits for the first frame for the client. A failure before it is returned as an error,
    /// so the caller can still try another worker: nothing has reached the client yet.
    pub async fn first_frame(&mut self) -> Result<Bytes, GatewayError> {
        match self.next().await {
            Some(Ok(frame)) => Ok(frame),
            _ => Err(match std::mem::replace(&mut self.state, State::Finished) {
                State::Failed(e) => e,
                _ => GatewayError::UpstreamFailed(
                    "the worker closed the stream before the first token".into(),
                ),
            }),
        }
    }

    pub fn attach(&mut self, lease: WorkerLease, mut settlement: Settlement) {
        if let (Some(at), false) = (self.first_frame_at, self.no_first_token) {
            settlement.first_token_at(at);
        }
        self.lease = Some(lease);
        self.settlement = Some(settlement);
        // The worker is known now: from here a crash bills the prompt and what was relayed.
        self.checkpoint();
    }

    /// Whether the next event must wait for the prompt count; polls the count meanwhile.
    fn waiting_for_count(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(count) = self.prompt_count.as_mut() else {
            return false;
        };
        let at_end = match self.pending.front() {
            Some(SseItem::Event { data, .. }) => self.translator.is_final(data),
            Some(SseItem::Comment(_)) => false,
            None => self.upstream_done,
        };
        if !at_end {
            return false;
        }
        if let Poll::Ready(tokens) = count.poll_unpin(cx) {
            self.translator.set_counted_prompt(tokens);
            self.prompt_count = None;
            return false;
        }
        let deadline = self
            .count_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(COUNT_DEADLINE)));
        if deadline.poll_unpin(cx).is_ready() {
            tracing::warn!("the worker did not count the prompt in time; usage is estimated");
            self.prompt_count = None;
            return false;
        }
        true
    }

    fn translate_pending(&mut self, cx: &mut Context<'_>) {
        while matches!(self.state, State::Streaming) && !self.waiting_for_count(cx) {
            let Some(item) = self.pending.pop_front() else {
                return;
            };
            match item {
                // Keep-alives mean something only once the client's stream has started.
                SseItem::Comment(text) => {
                    if self.frames_sent > 0 || !self.frames.is_empty() {
                        self.frames.push_comment(&text);
                    }
                }
                SseItem::Event { data, .. } => {
                    let before = self.frames.len();
                    match self.translator.on_event(&data, &mut self.frames) {
                        Ok(_) if self.translator.account().filtered.is_some() => {
                            let pattern = self
                                .translator
                                .account()
                                .filtered
                                .clone()
                                .unwrap_or_default();
                            self.end_filtered(before, &pattern);
                        }
                        Ok(Flow::Continue) => {}
                        Ok(Flow::Done) => self.state = State::Finished,
                        Err(e) => self.fail(e),
                    }
                }
            }
        }
    }

    fn fail(&mut self, error: GatewayError) {
        if let Some(lease) = &self.lease {
            lease
                .worker()
                .record_failure_because(self.eject_after, &error.to_string());
        }
        // Mid-stream, on a stream that may be resumed: go on on another worker.
        let error = if self.frames_sent > 0 && error.is_retryable() {
            match self.try_resume(error) {
                Ok(()) => return,
                Err(error) => error,
            }
        } else {
            error
        };
        // After the first frame the only honest thing left is one error event, then the end.
        if self.frames_sent > 0 || !self.frames.is_empty() {
            self.frames.push_error(&error.body());
        }
        self.state = State::Failed(error);
    }

    /// Starts opening the continuation; gives the error back when the stream cannot be
    /// resumed.
    fn try_resume(&mut self, error: GatewayError) -> Result<(), GatewayError> {
        let account = self.translator.account();
        let (Some(resume), Some(text)) = (self.resume.as_mut(), account.resume_text.as_deref())
        else {
            return Err(error);
        };
        let tokens = account.content_chunks;
        let Some(next) = resume.continuation(text, tokens) else {
            return Err(error);
        };
        self.translator.account_mut().resuming();
        // Whatever the broken connection left half-parsed is dropped with it.
        self.parser = SseParser::new();
        self.pending.clear();
        self.upstream_done = false;
        self.prompt_count = None;
        self.resuming = Some(next);
        self.broken = Some(error);
        Ok(())
    }

    /// Polls the continuation being opened; `true` while it is still pending.
    fn poll_resuming(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(opening) = self.resuming.as_mut() else {
            return false;
        };
        match opening.poll_unpin(cx) {
            Poll::Pending => true,
            Poll::Ready(result) => {
                self.resuming = None;
                match result {
                    Ok((upstream, lease)) => {
                        self.broken = None;
                        if let Some(resume) = self.resume.as_mut() {
                            resume.tried(lease.worker());
                        }
                        self.upstream = upstream;
                        // The broken worker's lease goes; the new one is held to the end.
                        self.lease = Some(lease);
                        let deadline = Instant::now() + self.stall_timeout;
                        self.stall.as_mut().reset(deadline);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not resume the stream on another worker");
                        self.resume = None; // no second try after the first could not open
                                            // The client hears what broke the stream, not why it could not go on.
                        let broken = self.broken.take().unwrap_or(e);
                        self.fail(broken);
                    }
                }
                false
            }
        }
    }

    fn settle(&mut self) {
        if let Some(mut settlement) = self.settlement.take() {
            let account = self.translator.account();
            let outcome = match &self.state {
                State::Finished => Outcome::Completed,
                // An unstreamed answer that failed is an error response, billed nothing: the
                // client got none of it.
                State::Failed(e) if self.collected => return settlement.failed(e),
                State::Failed(_) => Outcome::FailedMidStream,
                State::Streaming => Outcome::ClientDisconnected,
            };
            // A stream whose usage is refused is not a success (the settlement records it).
            if matches!(self.state, State::Finished) && account.usage().rejected.is_none() {
                if let Some(lease) = &self.lease {
                    lease.worker().record_success();
                }
            }
            // A client that left before its unstreamed answer was whole never got a 200.
            let http_status = match outcome {
                Outcome::ClientDisconnected if self.collected => 499,
                _ => 200,
            };
            settlement.stream_ended(account, outcome, http_status);
        }
    }
}

impl Stream for Relay {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(frame) = this.frames.pop() {
                this.frames_sent += 1;
                if this.frames_sent == 1 {
                    this.first_frame_at = Some(std::time::Instant::now());
                }
                if this
                    .last_checkpoint
                    .is_some_and(|at| at.elapsed() >= this.checkpoint_every)
                {
                    this.checkpoint();
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            if !matches!(this.state, State::Streaming) {
                this.settle();
                return Poll::Ready(None);
            }
            this.translate_pending(cx);
            if !this.frames.is_empty() || !matches!(this.state, State::Streaming) {
                continue;
            }
            if !this.pending.is_empty() {
                return Poll::Pending; // the final event waits for the prompt count
            }
            if this.upstream_done {
                if this.waiting_for_count(cx) {
                    return Poll::Pending;
                }
                match this.translator.on_eof(&mut this.frames) {
                    Ok(()) => this.state = State::Finished,
                    Err(e) => this.fail(e),
                }
                continue;
            }
            if this.poll_resuming(cx) {
                return Poll::Pending;
            }
            if !matches!(this.state, State::Streaming) {
                continue;
            }
            match this.upstream.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    let deadline = Instant::now() + this.stall_timeout;
                    this.stall.as_mut().reset(deadline);
                    this.parser.feed(&chunk, &mut this.parsed);
                    this.pending.extend(this.parsed.drain(..));
                }
                Poll::Ready(Some(Err(e))) => {
                    this.fail(GatewayError::UpstreamFailed(format!(
                        "connection to the worker broke mid-stream: {e}"
                    )));
                }
                Poll::Ready(None) => {
                    this.parser.finish(&mut this.parsed);
                    this.pending.extend(this.parsed.drain(..));
                    this.upstream_done = true;
                }
                Poll::Pending => {
                    if this.stall.poll_unpin(cx).is_ready() {
                        let secs = this.stall_timeout.as_secs_f64();
                        this.fail(GatewayError::UpstreamTimeout(format!(
                            "the stream stalled: no data from the worker for {secs:.1} s"
                        )));
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The client went away (or the stream ended): settle with what was relayed so far.
        self.settle();
    }
}
