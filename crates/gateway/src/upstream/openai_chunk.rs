//! A worker's OpenAI stream chunk read where it lies: the fields the account needs, borrowed
//! from the event's text, and where its `id` and `model` values sit, so that the relay can
//! forward the worker's own bytes with only those values changed. Relaying a token is then
//! one pass of the JSON parser over the chunk and one copy, rather than a `Value` tree built,
//! edited and serialized again (about 30,000 instructions a token before, measured with
//! `bench/gateway/profile.sh`).
//!
//! The reading is strict where the general path (`openai::OpenAiStream`, on a `Value`) is
//! lenient: a chunk this module does not read exactly (a text that is not a string, choices
//! that are not a list, a duplicated key, an error, a usage report, a line break inside the
//! data, nesting deeper than the general path reads, an object given as an array) is left to
//! the general path, which decides what it means. Both describe each choice to the account in
//! the same [`ChoiceFacts`], so they cannot count differently. Fields the gateway does not read
//! go to the client as the worker wrote them, as through any proxy.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// What one choice of a chunk says, however it was read.
#[derive(Debug, Default, PartialEq)]
pub struct ChoiceFacts<'t> {
    pub index: u64,
    /// The answer's text: `delta.content` for chat, `text` for completions.
    pub text: Option<&'t str>,
    pub has_tool_call: bool,
    pub has_reasoning: bool,
    /// Tokens at four characters a token over every text the choice carries (see
    /// `OpenAiStream::count_by_characters`).
    pub tokens_by_characters: u64,
    /// Every text the output filter must see, in this order: the answer, the completion text,
    /// reasoning, a refusal, tool-call arguments. Filled only when asked for.
    pub watched: Vec<&'t str>,
    pub finish_reason: Option<&'t str>,
}

/// A chunk read in place. `None` from [`Chunk::read`] sends it down the general path.
#[derive(Deserialize)]
pub struct Chunk<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    created: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    choices: Option<Vec<Obj<ChoiceIn<'a>>>>,
    #[serde(borrow, default, deserialize_with = "present")]
    usage: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ChoiceIn<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    delta: Option<Obj<Delta<'a>>>,
    #[serde(borrow, default)]
    text: Text<'a>,
    #[serde(borrow, default)]
    finish_reason: Text<'a>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Text<'a>,
    #[serde(borrow, default)]
    reasoning_content: Text<'a>,
    #[serde(borrow, default)]
    reasoning: Text<'a>,
    #[serde(borrow, default)]
    refusal: Text<'a>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<Obj<ToolCallIn<'a>>>>,
}

#[derive(Deserialize)]
struct ToolCallIn<'a> {
    #[serde(borrow, default)]
    function: Option<Obj<FunctionIn<'a>>>,
}

#[derive(Deserialize)]
struct FunctionIn<'a> {
    #[serde(borrow, default)]
    name: Text<'a>,
    #[serde(borrow, default)]
    arguments: Text<'a>,
}

/// A struct read from a JSON object only: serde's derive reads a struct from an array too, by
/// position, which no worker means and the general path does not do.
pub(super) struct Obj<T>(T);

impl<T> std::ops::Deref for Obj<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(ObjVisitor(std::marker::PhantomData))
            .map(Obj)
    }
}

/// Nesting deeper than the general path reads: serde_json refuses 128 levels. Brackets inside
/// strings count too, which only sends a chunk the slow way.
pub(super) fn too_deep(json: &[u8]) -> bool {
    json.iter().filter(|&&b| b == b'[' || b == b'{').count() > 100
}

/// Forwarded as written, a line break would end the SSE event early.
fn has_line_break(json: &[u8]) -> bool {
    json.iter().any(|&b| b == b'\n' || b == b'\r')
}

/// A field that is absent, `null`, or a string (borrowed unless it has escapes). Anything else
/// fails the reading, and the chunk takes the general path.
#[derive(Default)]
pub(super) enum Text<'a> {
    #[default]
    Absent,
    Null,
    Str(Cow<'a, str>),
}

impl Text<'_> {
    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Text::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or null")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text::Null)
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text::Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

/// A field that is there, `null` included (serde's `Option` would read `null` as absent, and
/// the relay must not add a second `id` beside a `null` one).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(deserializer).map(Some)
}

impl<'a> Chunk<'a> {
    /// Reads `data` in place, or `None` when the general path must decide (see the module's
    /// doc): a usage report or an error, a line break, anything not read exactly.
    pub fn read(data: &'a str) -> Option<Self> {
        if has_line_break(data.as_bytes()) || too_deep(data.as_bytes()) {
            return None;
        }
        // serde reads a struct from a JSON array too: only an object is a chunk.
        if !data.trim_start().starts_with('{') {
            return None;
        }
        let chunk: Chunk = serde_json::from_str(data).ok()?;
        if chunk.usage.is_some() || chunk.error.is_some() {
            return None;
        }
        Some(chunk)
    }

    /// Each choice's facts; `watched` filled only when `watch` is set.
    pub fn choices(&self, watch: bool) -> impl Iterator<Item = ChoiceFacts<'_>> {
        self.choices.iter().flatten().map(move |c| {
            let delta = c.delta.as_ref();
            let content = delta.and_then(|d| d.content.as_str());
            let refusal = delta.and_then(|d| d.refusal.as_str());
            // `delta.content` when the delta has that key (even `null`), else `text`.
            let text = match delta.map(|d| &d.content) {
                Some(Text::Absent) | None => c.text.as_str(),
                Some(content) => content.as_str(),
            };
            let calls = delta.and_then(|d| d.tool_calls.as_deref());
            let functions = || {
                calls
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.function.as_ref())
            };
            let reasoning = [
                delta.and_then(|d| d.reasoning_content.as_str()),
                delta.and_then(|d| d.reasoning.as_str()),
            ];
            let mut characters = 0u64;
            for s in [content, c.text.as_str()]
                .into_iter()
                .chain(reasoning)
                .chain([refusal])
                .flatten()
                .chain(
                    functions()
                        .flat_map(|f| [f.name.as_str(), f.arguments.as_str()])
                        .flatten(),
                )
            {
                characters = characters.saturating_add(chars(s));
            }
            let watched = if watch {
                [content, c.text.as_str()]
                    .into_iter()
                    .chain(reasoning)
                    .chain([refusal])
                    .flatten()
                    .chain(functions().filter_map(|f| f.arguments.as_str()))
                    .collect()
            } else {
                Vec::new()
            };
            ChoiceFacts {
                index: c.index.unwrap_or(0),
                text,
                has_tool_call: calls.is_some(),
                has_reasoning: reasoning.iter().flatten().any(|r| !r.is_empty()),
                tokens_by_characters: characters.div_ceil(4),
                watched,
                finish_reason: c.finish_reason.as_str(),
            }
        })
    }

    /// The `id`, `created` and `model` values as the worker wrote them, if it did.
    pub fn id(&self) -> Option<&'a str> {
        self.id.map(RawValue::get)
    }

    pub fn created(&self) -> Option<&'a str> {
        self.created.map(RawValue::get)
    }

    pub fn model(&self) -> Option<&'a str> {
        self.model.map(RawValue::get)
    }
}

/// The same facts from a chunk's choice as a `Value` (the general path), field for field.
pub fn facts_of_value(choice: &Value, watch: bool) -> ChoiceFacts<'_> {
    let delta = choice.get("delta");
    let field = |key: &str| delta.and_then(|d| d.get(key)).and_then(Value::as_str);
    let text = match delta.and_then(|d| d.get("content")) {
        Some(content) => content.as_str(),
        None => choice.get("text").and_then(Value::as_str),
    };
    let calls = delta
        .and_then(|d| d.get("tool_calls"))
        .filter(|t| !t.is_null());
    let functions = || {
        calls
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("function"))
    };
    let reasoning = [field("reasoning_content"), field("reasoning")];
    let plain = [field("content"), choice.get("text").and_then(Value::as_str)]
        .into_iter()
        .chain(reasoning)
        .chain([field("refusal")]);
    let characters = plain
        .clone()
        .flatten()
        .chain(functions().flat_map(name_and_arguments).flatten())
        .fold(0u64, |n, s| n.saturating_add(chars(s)));
    let watched = if watch {
        plain
            .flatten()
            .chain(functions().filter_map(|f| f.get("arguments").and_then(Value::as_str)))
            .collect()
    } else {
        Vec::new()
    };
    ChoiceFacts {
        index: choice.get("index").and_then(Value::as_u64).unwrap_or(0),
        text,
        has_tool_call: calls.is_some(),
        has_reasoning: reasoning.iter().flatten().any(|r| !r.is_empty()),
        tokens_by_characters: characters.div_ceil(4),
        watched,
        finish_reason: choice.get("finish_reason").and_then(Value::as_str),
    }
}

fn name_and_arguments(function: &Value) -> [Option<&str>; 2] {
    [
        function.get("name").and_then(Value::as_str),
        function.get("arguments").and_then(Value::as_str),
    ]
}

fn chars(s: &str) -> u64 {
    u64::try_from(s.chars().count()).unwrap_or(u64::MAX)
}

/// The worker's chunk with some values replaced and some keys added at its end, written as one
/// SSE frame. `replace` holds (a value as the worker wrote it, the value to put instead);
/// `append` holds (key, value as JSON) pairs for keys the chunk lacks. `None` if a value is not
/// a part of `data` or the chunk does not end its object where expected.
pub fn edited_frame(
    data: &str,
    replace: &[(&str, &str)],
    append: &[(&str, &str)],
) -> Option<Vec<u8>> {
    let mut cuts: Vec<(Range<usize>, &str)> = Vec::with_capacity(replace.len() + 1);
    for (old, new) in replace {
        cuts.push((span_in(data, old)?, new));
    }
    let body = data.trim_end();
    let close = body
        .len()
        .checked_sub(1)
        .filter(|&i| body.as_bytes()[i] == b'}')?;
    let mut appended = String::new();
    let mut empty = body[..close].trim_end().ends_with('{');
    for (key, value) in append {
        if !empty {
            appended.push(',');
        }
        empty = false;
        appended.push('"');
        appended.push_str(key);
        appended.push_str("\":");
        appended.push_str(value);
    }
    if !appended.is_empty() {
        cuts.push((close..close, &appended));
    }
    cuts.sort_by_key(|(r, _)| r.start);
    let mut frame = Vec::with_capacity(data.len() + appended.len() + 64);
    frame.extend_from_slice(b"data: ");
    let mut at = 0;
    for (range, new) in &cuts {
        if range.start < at {
            return None; // overlapping: cannot happen for two distinct keys' values
        }
        frame.extend_from_slice(&data.as_bytes()[at..range.start]);
        frame.extend_from_slice(new.as_bytes());
        at = range.end;
    }
    frame.extend_from_slice(&data.as_bytes()[at..]);
    frame.extend_from_slice(b"\n\n");
    Some(frame)
}

/// Where `part`, a slice of `whole`, lies in it.
fn span_in(whole: &str, part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}
