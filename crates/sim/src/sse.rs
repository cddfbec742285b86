//! Turns a [`Generation`] into a paced SSE body: one event per token, flushed as it is
//! decoded, with the optional wire quirks (keep-alive comments, events split across
//! writes) and stream faults (cut: the body errors so the connection is aborted without
//! a terminating chunk; stall: the body stops producing but the connection stays open).
//! The body owns the generation, so when the client goes away and the connection drops
//! the body, the KV reservation and request guard are released at once.

use crate::engine::Generation;
use crate::text::Emitted;
use bytes::Bytes;
use futures::Stream;
use std::collections::VecDeque;
use std::time::Duration;

/// Formats events of one API family.
pub(crate) trait Framer: Send + 'static {
    /// Events for one decode step. `events` holds a token for every choice that was still
    /// running; `g` already reflects the step (texts, finish reasons).
    fn step(&mut self, g: &Generation, events: &[(u32, Emitted)], out: &mut Vec<Bytes>);
    /// Events after the last step (usage chunk, `[DONE]`).
    fn finish(&mut self, g: &Generation, out: &mut Vec<Bytes>);
}

/// Wire quirks of this worker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quirks {
    pub(crate) keepalive_comments: bool,
    pub(crate) split_writes: bool,
}

/// Keep-alive comment, sent before the first token and after every `PING_EVERY` steps.
const PING: &[u8] = b": ping\n\n";
const PING_EVERY: u32 = 5;
/// Gap between the pieces of a split event: long enough that they leave in separate
/// writes, short enough to fit inside any sane inter-token latency.
const SPLIT_GAP: Duration = Duration::from_millis(1);

enum Piece {
    Data(Bytes),
    Pause(Duration),
    /// Count tokens as sent when the next piece (their event) is handed over.
    Count(u64),
    Complete,
}

struct Run<F> {
    g: Generation,
    framer: F,
    quirks: Quirks,
    queue: VecDeque<Piece>,
    ended: bool,
}

/// The SSE body of a streamed generation.
pub(crate) fn body<F: Framer>(
    g: Generation,
    framer: F,
    quirks: Quirks,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let mut run = Run {
        g,
        framer,
        quirks,
        queue: VecDeque::new(),
        ended: false,
    };
    if quirks.keepalive_comments {
        run.push_frame(Bytes::from_static(PING));
    }
    futures::stream::unfold(run, |mut run| async move {
        loop {
            if let Some(piece) = run.queue.pop_front() {
                match piece {
                    Piece::Data(b) => return Some((Ok(b), run)),
                    Piece::Pause(d) => tokio::time::sleep(d).await,
                    Piece::Count(n) => run.g.add_sent_tokens(n),
                    Piece::Complete => run.g.guard.complete(),
                }
                continue;
            }
            if run.ended {
                return None;
            }
            if let Some(err) = run.refill().await {
                run.ended = true;
                return Some((Err(err), run));
            }
        }
    })
}

impl<F: Framer> Run<F> {
    /// Queues the pieces of the next step (waiting until it is due), or the closing
    /// events; returns an error when a cut fault strikes.
    async fn refill(&mut self) -> Option<std::io::Error> {
        if self.g.is_done() {
            let mut frames = Vec::new();
            self.framer.finish(&self.g, &mut frames);
            for f in frames {
                self.push_frame(f);
            }
            self.queue.push_back(Piece::Complete);
            self.ended = true;
            return None;
        }
        if self.g.fault_after() == Some(self.g.steps()) {
            // The node dies while decoding the next token.
            tokio::time::sleep_until(self.g.due()).await;
            if matches!(self.g.fate, crate::faults::Fate::Cut(_)) {
                // hyper discards bytes it has buffered but not yet written when the body
                // fails, and under load the deadline above may already have passed (no
                // await point since the last token). Returning Pending once makes hyper
                // flush what we handed it, so the client gets every token we counted.
                tokio::task::yield_now().await;
                return Some(std::io::Error::other(
                    "switchyard-sim: stream cut (fault injection)",
                ));
            }
            // Stall: nothing more, ever; the connection stays open until the client leaves.
            std::future::pending::<()>().await;
        }
        tokio::time::sleep_until(self.g.due()).await;
        let events = self.g.step();
        let mut frames = Vec::new();
        self.framer.step(&self.g, &events, &mut frames);
        self.queue.push_back(Piece::Count(events.len() as u64));
        for f in frames {
            self.push_frame(f);
        }
        if self.quirks.keepalive_comments && self.g.steps() % PING_EVERY == 0 {
            self.push_frame(Bytes::from_static(PING));
        }
        None
    }

    fn push_frame(&mut self, frame: Bytes) {
        if !self.quirks.split_writes {
            self.queue.push_back(Piece::Data(frame));
            return;
        }
        for (i, part) in split_points(&frame).into_iter().enumerate() {
            if i > 0 {
                self.queue.push_back(Piece::Pause(SPLIT_GAP));
            }
            self.queue.push_back(Piece::Data(part));
        }
    }
}

/// Splits an event at an odd offset about a third in (inside the JSON for data events)
/// and between its two final newlines.
fn split_points(frame: &Bytes) -> Vec<Bytes> {
    let len = frame.len();
    if len < 4 {
        return vec![frame.clone()];
    }
    let first = (len / 3) | 1;
    let last = len - 1;
    if first >= last {
        return vec![frame.slice(..last), frame.slice(last..)];
    }
    vec![
        frame.slice(..first),
        frame.slice(first..last),
        frame.slice(last..),
    ]
}

/// `data: {json}\n\n` (OpenAI servers put a space after the colon).
pub(crate) fn data_event(json: &serde_json::Value) -> Bytes {
    let mut v = b"data: ".to_vec();
    // Serializing a Value cannot fail.
    v.extend_from_slice(&serde_json::to_vec(json).unwrap_or_default());
    v.extend_from_slice(b"\n\n");
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_all_bytes_and_cuts_between_newlines() {
        let f = Bytes::from_static(b"data: {\"a\":1}\n\n");
        let parts = split_points(&f);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.concat(), f.to_vec());
        assert_eq!(parts[2].as_ref(), b"\n");
        assert_eq!(parts[0].len() % 2, 1);
        assert_eq!(
            split_points(&Bytes::from_static(PING)).concat(),
            PING.to_vec()
        );
    }
}
