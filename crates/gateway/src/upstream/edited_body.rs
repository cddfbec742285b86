//! A request body as sent to a worker: the client's parsed body with a few top-level fields
//! replaced, added or left out, serialized straight from the client's map.
//!
//! Cloning the map to edit two or three fields copied every message string of every request
//! and cost more than the rest of the request path's JSON work; this borrows the map instead.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

pub struct EditedBody<'a> {
    base: &'a Map<String, Value>,
    /// Fields replaced (in their place) or added (at the end).
    set: Vec<(&'static str, Value)>,
    /// Fields of `base` left out.
    skip: Vec<&'static str>,
}

impl<'a> EditedBody<'a> {
    pub fn new(base: &'a Map<String, Value>) -> Self {
        Self {
            base,
            set: Vec::new(),
            skip: Vec::new(),
        }
    }

    /// Sets `key` to `value`, replacing any earlier value.
    pub fn set(&mut self, key: &'static str, value: Value) {
        self.skip.retain(|k| *k != key);
        match self.set.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.set.push((key, value)),
        }
    }

    /// Leaves `key` out.
    pub fn remove(&mut self, key: &'static str) {
        self.set.retain(|(k, _)| *k != key);
        if !self.skip.contains(&key) {
            self.skip.push(key);
        }
    }

    /// The value `key` will be sent with, if any.
    pub fn get(&self, key: &str) -> Option<&Value> {
        if self.skip.contains(&key) {
            return None;
        }
        match self.set.iter().find(|(k, _)| *k == key) {
            Some((_, v)) => Some(v),
            None => self.base.get(key),
        }
    }

    pub fn to_vec(&self) -> Vec<u8> {
        // Serializing a `Value` map into memory has no failure mode: its keys are strings.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Serialize for EditedBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        let mut written = vec![false; self.set.len()];
        for (key, value) in self.base {
            if self.skip.iter().any(|k| k == key) {
                continue;
            }
            match self.set.iter().position(|(k, _)| k == key) {
                Some(i) => {
                    written[i] = true;
                    map.serialize_entry(key, &self.set[i].1)?;
                }
                None => map.serialize_entry(key, value)?,
            }
        }
        for ((key, value), done) in self.set.iter().zip(written) {
            if !done {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn replaced_fields_keep_their_place_and_new_ones_come_last() {
        let base =
            json!({"model": "a", "messages": [1], "max_completion_tokens": 5, "x": {"y": 1}});
        let base = base.as_object().unwrap();
        let mut body = EditedBody::new(base);
        body.set("model", json!("b"));
        body.remove("max_completion_tokens");
        body.set("max_tokens", json!(5));
        assert_eq!(
            String::from_utf8(body.to_vec()).unwrap(),
            r#"{"model":"b","messages":[1],"x":{"y":1},"max_tokens":5}"#
        );
        assert_eq!(body.get("model"), Some(&json!("b")));
        assert_eq!(body.get("max_completion_tokens"), None);
        assert_eq!(body.get("x"), Some(&json!({"y": 1})));
    }

    const KEYS: [&str; 4] = ["model", "stream_options", "max_tokens", "messages"];

    proptest! {
        /// Whatever the edits, the result is what editing a clone of the map would give.
        #[test]
        fn equals_editing_a_clone(
            base in proptest::collection::vec((prop::sample::select(&KEYS[..]), any::<i32>()), 0..6),
            edits in proptest::collection::vec((prop::sample::select(&KEYS[..]), prop::option::of(any::<i32>())), 0..6),
        ) {
            let base: Map<String, Value> = base.into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            let mut expected = base.clone();
            let mut body = EditedBody::new(&base);
            for (key, value) in edits {
                match value {
                    Some(v) => {
                        expected.insert(key.to_string(), json!(v));
                        body.set(key, json!(v));
                    }
                    None => {
                        expected.shift_remove(key);
                        body.remove(key);
                    }
                }
            }
            let sent: Value = serde_json::from_slice(&body.to_vec()).unwrap();
            prop_assert_eq!(sent, Value::Object(expected.clone()));
            for key in KEYS {
                prop_assert_eq!(body.get(key), expected.get(key));
            }
        }
    }
}
