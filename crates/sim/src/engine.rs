//! The request lifecycle shared by all four generation endpoints: fault fate, KV
//! admission, prefill, and decode steps paced by the timing model. The API modules
//! only parse requests and format what a [`Generation`] produces.

use crate::error::SimError;
use crate::faults::{Fate, FaultPlan};
use crate::kv::Reservation;
use crate::state::SimState;
use crate::stats::RequestGuard;
use crate::text::{ChoiceGen, Emitted, Limits};
use crate::timing;
use std::sync::Arc;
use tokio::time::Instant;

/// What a parsed request asks the engine for.
#[derive(Debug, Clone)]
pub(crate) struct GenParams {
    pub(crate) prompt_tokens: u32,
    pub(crate) max_tokens: u32,
    pub(crate) n: u32,
    pub(crate) stop: Vec<String>,
    pub(crate) seed: Option<u64>,
    pub(crate) truncate_at_stop: bool,
}

/// An admitted request: holds its KV space and request guard until dropped, and
/// knows when its next token is due.
#[derive(Debug)]
pub(crate) struct Generation {
    pub(crate) guard: RequestGuard,
    _kv: Reservation,
    state: Arc<SimState>,
    pub(crate) fate: Fate,
    slow: f64,
    pub(crate) prompt_tokens: u32,
    /// The seed the request asked for, which TGI echoes in its details.
    pub(crate) requested_seed: Option<u64>,
    pub(crate) choices: Vec<ChoiceGen>,
    due: Instant,
    steps: u32,
}

/// Rolls the request's fate, waits for KV space and, for an injected 500, for the
/// prefill. On success the first token is due after the prefill time.
pub(crate) async fn admit(
    state: &Arc<SimState>,
    guard: RequestGuard,
    p: GenParams,
) -> Result<Generation, SimError> {
    state.pass_gate().await;
    let FaultPlan { fate, slow } = state.roll_faults();
    match fate {
        Fate::Refuse => {
            return Err(SimError::Unavailable {
                message: "switchyard-sim: simulated overload (fault injection: refuse)",
                code: "overloaded",
            })
        }
        // The guard stays alive in this future until the client goes away and the
        // connection drops it, so the hung request shows as in flight.
        Fate::Hang => std::future::pending::<()>().await,
        _ => {}
    }
    let seqs = u64::from(p.n);
    let need = (u64::from(p.prompt_tokens) + u64::from(p.max_tokens)) * seqs;
    let capacity = state.kv.capacity();
    if need > capacity {
        return Err(SimError::ContextTooLong {
            need,
            capacity,
            prompt: p.prompt_tokens,
            completion: u64::from(p.max_tokens) * seqs,
        });
    }
    let kv = state.kv.reserve(need, seqs).await?;
    guard
        .counters()
        .add_prompt_tokens(u64::from(p.prompt_tokens));
    let prefill = timing::prefill(&state.cfg, p.prompt_tokens, slow);
    if fate == Fate::Error500 {
        tokio::time::sleep(prefill).await;
        return Err(SimError::Internal);
    }
    let seed = p.seed.unwrap_or_else(|| state.next_seed());
    let limits = Limits {
        max_tokens: p.max_tokens,
        natural_tokens: state.cfg.natural_tokens,
        stop: p.stop.into(),
        truncate_at_stop: p.truncate_at_stop,
    };
    let choices = (0..p.n)
        .map(|i| ChoiceGen::new(seed, i, limits.clone()))
        .collect();
    Ok(Generation {
        guard,
        _kv: kv,
        state: Arc::clone(state),
        fate,
        slow,
        prompt_tokens: p.prompt_tokens,
        requested_seed: p.seed,
        choices,
        due: Instant::now() + prefill,
        steps: 0,
    })
}

impl Generation {
    /// When the next decode step is due (the first one right after prefill).
    pub(crate) fn due(&self) -> Instant {
        self.due
    }

    /// Decode steps taken so far.
    pub(crate) fn steps(&self) -> u32 {
        self.steps
    }

    pub(crate) fn is_done(&self) -> bool {
        self.choices.iter().all(ChoiceGen::is_finished)
    }

    /// Decode steps after which a cut or stall fault strikes, if any.
    pub(crate) fn fault_after(&self) -> Option<u32> {
        match self.fate {
            Fate::Cut(k) | Fate::Stall(k) => Some(k),
            _ => None,
        }
    }

    /// One decode step: a token for every unfinished choice. Schedules the next step
    /// from the number of sequences running at this moment.
    pub(crate) fn step(&mut self) -> Vec<(u32, Emitted)> {
        let out: Vec<(u32, Emitted)> = self
            .choices
            .iter_mut()
            .zip(0u32..)
            .filter_map(|(c, i)| c.next_token().map(|e| (i, e)))
            .collect();
        self.steps += 1;
        let itl = timing::inter_token(&self.state.cfg, self.state.kv.running_seqs(), self.slow);
        // From the previous deadline, not from now, so pacing does not drift with the
        // time spent writing (split writes pause inside this budget).
        self.due += itl;
        out
    }

    /// Completion tokens generated over all choices.
    pub(crate) fn completion_tokens(&self) -> u32 {
        self.choices.iter().map(ChoiceGen::generated).sum()
    }

    pub(crate) fn add_sent_tokens(&self, n: u64) {
        self.guard.counters().add_completion_tokens(n);
    }
}

/// How a non-streamed generation ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    Done,
    /// A cut fault struck: abort the connection.
    Cut,
    /// A stall fault struck: never answer.
    Stall,
}

/// Runs a non-streamed generation to its end in real time, handing each step's tokens
/// to `on_step`.
pub(crate) async fn run_to_end(
    g: &mut Generation,
    mut on_step: impl FnMut(&[(u32, Emitted)]),
) -> Ending {
    loop {
        if g.is_done() {
            return Ending::Done;
        }
        if g.fault_after() == Some(g.steps()) {
            tokio::time::sleep_until(g.due()).await;
            return match g.fate {
                Fate::Cut(_) => Ending::Cut,
                _ => Ending::Stall,
            };
        }
        tokio::time::sleep_until(g.due()).await;
        let events = g.step();
        on_step(&events);
    }
}
