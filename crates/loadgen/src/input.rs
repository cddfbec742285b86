//! What each request asks: one fixed prompt, a prompt of a drawn length, or conversations from
//! a dataset file, in turn.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::schedule::draw_stream;

/// Separates the prompt-length draws from the other draws of one seed.
const INPUT_WORDS: u64 = 0x696e_7075_745f_776f; // "input_wo"

/// Short common words a prompt of a drawn length is made of: most are one token in every
/// tokenizer, so N words are about N tokens (the report counts the real prompt tokens from
/// the responses' usage).
const WORDS: [&str; 48] = [
    "the", "train", "yard", "runs", "at", "night", "and", "each", "car", "is", "sorted", "by",
    "its", "track", "to", "a", "new", "line", "where", "crews", "wait", "for", "signal", "green",
    "then", "move", "slow", "past", "old", "station", "lights", "under", "rain", "while", "bells",
    "ring", "far", "away", "on", "hill", "near", "river", "bridge", "with", "steel", "rails", "in",
    "fog",
];

/// The prompts of a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The same prompt every time (a user message, or the completion prompt).
    Fixed(String),
    /// About N words per request, N drawn uniformly from `lo..=hi` (from the seed and the
    /// request's number).
    Words { lo: u32, hi: u32 },
    /// Conversations from a file: request `i` sends entry `i` mod their number.
    Dataset(Arc<Vec<Vec<Value>>>),
}

impl Input {
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Input::Words { lo, hi } if *lo == 0 || lo > hi => Err(format!(
                "the input length range {lo}-{hi} must be at least 1 and low to high"
            )),
            Input::Dataset(d) if d.is_empty() => Err("the dataset holds no conversation".into()),
            _ => Ok(()),
        }
    }

    /// The chat messages of request `i`.
    pub fn messages(&self, seed: u64, i: u64) -> Vec<Value> {
        match self {
            Input::Fixed(prompt) => vec![json!({"role": "user", "content": prompt})],
            Input::Words { lo, hi } => {
                let n = draw_stream(seed, INPUT_WORDS, i, *lo, *hi);
                vec![json!({"role": "user", "content": words(seed, i, n)})]
            }
            Input::Dataset(d) => {
                let at = usize::try_from(i % d.len() as u64).unwrap_or(0);
                d[at].clone()
            }
        }
    }

    /// The completion prompt of request `i`: the messages' texts, one per line.
    pub fn prompt(&self, seed: u64, i: u64) -> String {
        match self {
            Input::Fixed(prompt) => prompt.clone(),
            _ => self
                .messages(seed, i)
                .iter()
                .filter_map(|m| m.get("content").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// How the report names it.
    pub fn describe(&self) -> String {
        match self {
            Input::Fixed(_) => "fixed prompt".into(),
            Input::Words { lo, hi } if lo == hi => format!("{lo}-word prompts"),
            Input::Words { lo, hi } => format!("{lo}-{hi}-word prompts"),
            Input::Dataset(d) => format!("dataset of {} conversations", d.len()),
        }
    }
}

/// `n` words for request `i`, the same for the same seed.
fn words(seed: u64, i: u64, n: u32) -> String {
    let mut out = String::with_capacity(n as usize * 6);
    for k in 0..u64::from(n) {
        if k > 0 {
            out.push(' ');
        }
        let last = WORDS.len() as u32 - 1;
        let w = draw_stream(seed ^ i.rotate_left(17), INPUT_WORDS, k, 0, last);
        out.push_str(WORDS[w as usize]);
    }
    out
}

/// Reads a dataset: JSON Lines, each line a conversation as OpenAI chat messages
/// (`{"messages": [{"role", "content"}, ...]}`), a ShareGPT entry (`{"conversations":
/// [{"from": "human"|"gpt"|"system", "value"}, ...]}`) or a bare prompt (`{"prompt": "..."}`).
/// Answers at the end of a conversation are dropped: the model is to write the next one. A
/// line that is none of these is refused with its number.
pub fn load_dataset(path: &Path) -> Result<Input, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut conversations = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{} line {}", path.display(), n + 1);
        let v: Value = serde_json::from_str(line).map_err(|e| format!("{}: {e}", at()))?;
        let messages = conversation(&v).map_err(|why| format!("{}: {why}", at()))?;
        conversations.push(messages);
    }
    let input = Input::Dataset(Arc::new(conversations));
    input
        .validate()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(input)
}

fn conversation(v: &Value) -> Result<Vec<Value>, String> {
    let mut messages: Vec<Value> = if let Some(m) = v.get("messages").and_then(Value::as_array) {
        m.iter()
            .map(|m| {
                let role = m.get("role").and_then(Value::as_str);
                let content = m.get("content").and_then(Value::as_str);
                match (role, content) {
                    (Some(r), Some(c)) => Ok(json!({"role": r, "content": c})),
                    _ => Err("a message needs a string role and content".to_string()),
                }
            })
            .collect::<Result<_, _>>()?
    } else if let Some(turns) = v.get("conversations").and_then(Value::as_array) {
        turns
            .iter()
            .map(|t| {
                let from = t.get("from").and_then(Value::as_str);
                let value = t.get("value").and_then(Value::as_str);
                let role = match from {
                    Some("human" | "user") => "user",
                    Some("gpt" | "assistant" | "chatgpt" | "bard") => "assistant",
                    Some("system") => "system",
                    _ => return Err(format!("unknown speaker {from:?}")),
                };
                value
                    .map(|c| json!({"role": role, "content": c}))
                    .ok_or_else(|| "a turn needs a string value".to_string())
            })
            .collect::<Result<_, _>>()?
    } else if let Some(p) = v.get("prompt").and_then(Value::as_str) {
        vec![json!({"role": "user", "content": p})]
    } else {
        return Err("expected \"messages\", \"conversations\" (ShareGPT) or \"prompt\"".into());
    };
    while messages.last().is_some_and(|m| m["role"] == "assistant") {
        messages.pop();
    }
    if !messages.iter().any(|m| m["role"] == "user") {
        return Err("the conversation has no user turn to answer".into());
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_prompts_have_their_length_and_repeat_with_the_seed() {
        let input = Input::Words { lo: 5, hi: 40 };
        let lens: Vec<usize> = (0..500)
            .map(|i| {
                input.messages(7, i)[0]["content"]
                    .as_str()
                    .unwrap()
                    .split(' ')
                    .count()
            })
            .collect();
        assert!(lens.iter().all(|n| (5..=40).contains(n)), "{lens:?}");
        assert!(lens.contains(&5) && lens.contains(&40));
        assert_eq!(input.messages(7, 3), input.messages(7, 3));
        assert_ne!(input.messages(7, 3), input.messages(8, 3));
        assert!(Input::Words { lo: 0, hi: 4 }.validate().is_err());
        assert!(Input::Words { lo: 5, hi: 4 }.validate().is_err());
    }

    #[test]
    fn datasets_take_chat_messages_sharegpt_and_prompts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]}"#,
                "\n\n",
                r#"{"conversations":[{"from":"human","value":"Q1"},{"from":"gpt","value":"A1"},{"from":"human","value":"Q2"},{"from":"gpt","value":"A2"}]}"#,
                "\n",
                r#"{"prompt":"Once upon a time"}"#,
                "\n"
            ),
        )
        .unwrap();
        let input = load_dataset(&path).unwrap();
        assert_eq!(input.describe(), "dataset of 3 conversations");
        assert_eq!(input.messages(1, 0).len(), 2);
        let sharegpt = input.messages(1, 1);
        assert_eq!(
            sharegpt.len(),
            3,
            "the last answer is dropped: {sharegpt:?}"
        );
        assert_eq!(sharegpt[2], json!({"role": "user", "content": "Q2"}));
        assert_eq!(input.messages(1, 5), input.messages(1, 2), "in turn");
        assert_eq!(input.prompt(1, 1), "Q1\nA1\nQ2");

        std::fs::write(&path, "{\"prompt\":\"ok\"}\n{\"text\":\"what\"}\n").unwrap();
        let err = load_dataset(&path).unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        std::fs::write(&path, "\n").unwrap();
        assert!(load_dataset(&path).unwrap_err().contains("no conversation"));
    }
}
