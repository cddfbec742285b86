//! Deterministic "language model": a prompt-token estimate and a word generator.
//!
//! * Prompt tokens are estimated as ceil(chars / 4) (Unicode scalar values), the usual
//!   rule of thumb for English BPE vocabularies; chat adds 3 tokens of role/format
//!   overhead per message (see `openai::chat_prompt_tokens`).
//! * Completion tokens are whole words from a small fixed vocabulary, each with a leading
//!   space (" sim", " token", " alpha", ...), so one token is one word and token counts can
//!   be checked by splitting the text on spaces. The words are drawn from an RNG seeded by
//!   the request's `seed` (or by the worker's seeded RNG) and the choice index, so the same
//!   request with the same seed yields the same text.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

/// The words the simulated model speaks.
pub(crate) const VOCAB: [&str; 32] = [
    "sim",
    "token",
    "alpha",
    "beta",
    "gamma",
    "delta",
    "switchyard",
    "worker",
    "signal",
    "rail",
    "yard",
    "switch",
    "engine",
    "cargo",
    "route",
    "track",
    "freight",
    "junction",
    "platform",
    "timetable",
    "lantern",
    "semaphore",
    "siding",
    "ballast",
    "coupler",
    "depot",
    "gauge",
    "points",
    "shunt",
    "whistle",
    "caboose",
    "boxcar",
];

/// Token ids of generated words start here (ids below are "prompt pieces").
const WORD_ID_BASE: u32 = 1000;

/// ceil(chars / 4): the documented prompt-token estimate.
pub(crate) fn estimate_tokens(text: &str) -> u32 {
    let chars = text.chars().count();
    u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX)
}

/// The prompt cut into the pieces the estimate counts (4 characters each), with stable
/// ids, for TGI's `decoder_input_details` prefill list.
pub(crate) fn prompt_pieces(text: &str) -> Vec<(u32, String)> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(4)
        .map(|c| {
            let piece: String = c.iter().collect();
            let id = c.iter().fold(17u32, |h, ch| {
                h.wrapping_mul(31).wrapping_add(u32::from(*ch))
            }) % WORD_ID_BASE;
            (id, piece)
        })
        .collect()
}

/// Why a choice ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finish {
    /// max tokens reached.
    Length,
    /// The model ended by itself after `natural_tokens`.
    Natural,
    /// A stop string appeared; holds the matched stop string.
    StopSequence(String),
}

impl Finish {
    /// OpenAI / vLLM `finish_reason`.
    pub(crate) fn openai(&self) -> &'static str {
        match self {
            Finish::Length => "length",
            Finish::Natural | Finish::StopSequence(_) => "stop",
        }
    }

    /// TGI `finish_reason`.
    pub(crate) fn tgi(&self) -> &'static str {
        match self {
            Finish::Length => "length",
            Finish::Natural => "eos_token",
            Finish::StopSequence(_) => "stop_sequence",
        }
    }

    /// vLLM's `stop_reason`: the stop string that matched, else null.
    pub(crate) fn stop_reason(&self) -> Option<&str> {
        match self {
            Finish::StopSequence(s) => Some(s),
            _ => None,
        }
    }
}

/// One generated token of one choice.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Emitted {
    /// Text this token adds to the visible output (may be shorter than the word, or
    /// empty, when an OpenAI stop string cut it).
    pub(crate) text: String,
    /// The full word as generated (what TGI reports as the token text).
    pub(crate) word: String,
    pub(crate) id: u32,
    pub(crate) logprob: f32,
    pub(crate) finish: Option<Finish>,
}

/// Shared per-request generation limits.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) max_tokens: u32,
    /// 0 means the model never stops by itself.
    pub(crate) natural_tokens: u32,
    pub(crate) stop: Arc<[String]>,
    /// OpenAI servers cut the output before the stop string; TGI keeps it.
    pub(crate) truncate_at_stop: bool,
}

/// Generates the tokens of one choice.
#[derive(Debug)]
pub(crate) struct ChoiceGen {
    rng: StdRng,
    limits: Limits,
    text: String,
    generated: u32,
    finish: Option<Finish>,
}

impl ChoiceGen {
    pub(crate) fn new(seed: u64, choice: u32, limits: Limits) -> Self {
        let mixed = seed ^ u64::from(choice).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Self {
            rng: StdRng::seed_from_u64(mixed),
            limits,
            text: String::new(),
            generated: 0,
            finish: None,
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finish.is_some()
    }

    /// Tokens generated so far (including one whose text a stop string cut away).
    pub(crate) fn generated(&self) -> u32 {
        self.generated
    }

    /// The visible output so far.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    pub(crate) fn finish(&self) -> Option<&Finish> {
        self.finish.as_ref()
    }

    /// Generates the next token, or None if the choice has already finished.
    pub(crate) fn next_token(&mut self) -> Option<Emitted> {
        if self.finish.is_some() {
            return None;
        }
        let idx = self.rng.random_range(0..VOCAB.len());
        let word = format!(" {}", VOCAB[idx]);
        let before = self.text.len();
        self.text.push_str(&word);
        self.generated += 1;
        let mut visible = word.clone();

        let mut finish = None;
        if let Some((at, stop)) = self.first_stop() {
            if self.limits.truncate_at_stop {
                // A stop string that began in an earlier token cuts nothing more from
                // the stream (sent text is not retracted) but is cut from the final text.
                visible = self.text.get(before..at).unwrap_or("").to_owned();
                self.text.truncate(at);
            }
            finish = Some(Finish::StopSequence(stop));
        } else if self.generated >= self.limits.max_tokens {
            finish = Some(Finish::Length);
        } else if self.limits.natural_tokens > 0 && self.generated >= self.limits.natural_tokens {
            finish = Some(Finish::Natural);
        }
        self.finish.clone_from(&finish);
        let id = WORD_ID_BASE + u32::try_from(idx).unwrap_or(0);
        // A plausible, deterministic log-probability per word.
        #[allow(clippy::cast_precision_loss)]
        let logprob = -((idx as f32) + 1.0) / 16.0;
        Some(Emitted {
            text: visible,
            word,
            id,
            logprob,
            finish,
        })
    }

    /// Earliest occurrence of any stop string in the text. Earlier text held none (or we
    /// would have stopped), so any match overlaps the newest token.
    fn first_stop(&self) -> Option<(usize, String)> {
        self.limits
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.text.find(s.as_str()).map(|at| (at, s.clone())))
            .min_by_key(|(at, _)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: u32, natural: u32, stop: &[&str], truncate: bool) -> Limits {
        Limits {
            max_tokens: max,
            natural_tokens: natural,
            stop: stop.iter().map(|s| (*s).to_owned()).collect(),
            truncate_at_stop: truncate,
        }
    }

    fn run(mut g: ChoiceGen) -> (Vec<Emitted>, ChoiceGen) {
        let mut out = Vec::new();
        while let Some(e) = g.next_token() {
            out.push(e);
        }
        (out, g)
    }

    #[test]
    fn estimate_is_ceil_chars_over_4() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens("héllo"), 2);
        assert_eq!(prompt_pieces("abcdefghij").len(), 3);
    }

    #[test]
    fn same_seed_same_words_and_length_limit() {
        let (a, ga) = run(ChoiceGen::new(5, 0, limits(7, 64, &[], true)));
        let (b, _) = run(ChoiceGen::new(5, 0, limits(7, 64, &[], true)));
        assert_eq!(a, b);
        assert_eq!(a.len(), 7);
        assert_eq!(ga.finish(), Some(&Finish::Length));
        assert_eq!(ga.text().split(' ').filter(|w| !w.is_empty()).count(), 7);
        let (c, _) = run(ChoiceGen::new(5, 1, limits(7, 64, &[], true)));
        assert_ne!(a, c, "choices differ");
    }

    #[test]
    fn natural_end() {
        let (a, g) = run(ChoiceGen::new(1, 0, limits(100, 5, &[], true)));
        assert_eq!(a.len(), 5);
        assert_eq!(g.finish(), Some(&Finish::Natural));
        let (a, g) = run(ChoiceGen::new(1, 0, limits(5, 5, &[], true)));
        assert_eq!(a.len(), 5);
        assert_eq!(g.finish(), Some(&Finish::Length));
    }

    #[test]
    fn stop_string_truncates_for_openai_and_not_for_tgi() {
        let (all, _) = run(ChoiceGen::new(9, 0, limits(10, 0, &[], true)));
        let third = all[2].word.clone();
        let first_at = all.iter().position(|e| e.word == third).unwrap_or(2);
        let (a, g) = run(ChoiceGen::new(9, 0, limits(10, 0, &[third.as_str()], true)));
        assert_eq!(a.len(), first_at + 1);
        assert_eq!(a.last().map(|e| e.text.as_str()), Some(""));
        assert!(!g.text().contains(third.as_str()));
        assert_eq!(g.finish(), Some(&Finish::StopSequence(third.clone())));
        let (b, g) = run(ChoiceGen::new(
            9,
            0,
            limits(10, 0, &[third.as_str()], false),
        ));
        assert_eq!(b.len(), first_at + 1);
        assert!(g.text().ends_with(third.as_str()));
    }
}
