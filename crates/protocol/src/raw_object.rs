//! A JSON object read one level deep: each top-level value is kept as its raw text.
//!
//! The gateway changes a handful of top-level fields of the bodies it relays (`model`,
//! `usage`, ...) and must pass every other field through untouched. Parsing the whole body
//! into a `serde_json::Value` and writing it back costs more CPU than the rest of the request
//! path; reading one level and copying the untouched values' bytes costs a fraction of it,
//! and keeps their exact text (number formatting, key order, escapes) as the worker sent it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The top-level fields of a JSON object, in their original order, borrowing from the input.
#[derive(Debug)]
pub struct RawObject<'a> {
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> RawObject<'a> {
    /// Parses `bytes` as a JSON object. Anything else (an array, invalid JSON) is an error.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The raw value of the last field named `key` (JSON parsers keep the last duplicate).
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
    }

    /// The field `key` parsed as `T`; `None` when absent, `null` or not a `T`.
    pub fn get_as<T: Deserialize<'a>>(&self, key: &str) -> Option<T> {
        let raw = self.get(key)?;
        if raw.get() == "null" {
            return None;
        }
        serde_json::from_str(raw.get()).ok()
    }

    /// Writes the object with `replace` applied: a field named in it gets the given JSON text
    /// (or is dropped when it is `None`) where it stood, and those not present are appended
    /// at the end. Every other field is copied byte for byte.
    pub fn write_with(&self, replace: &[(&str, Option<&str>)]) -> Vec<u8> {
        let size = self
            .fields
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum::<usize>()
            + replace
                .iter()
                .map(|(k, v)| k.len() + v.map_or(0, str::len) + 4)
                .sum::<usize>()
            + 2;
        let mut out = Vec::with_capacity(size);
        out.push(b'{');
        let mut first = true;
        let mut push = |out: &mut Vec<u8>, key: &str, value: &str| {
            if !first {
                out.push(b',');
            }
            first = false;
            write_key(out, key);
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        };
        let mut done = vec![false; replace.len()];
        for (key, value) in &self.fields {
            match replace.iter().position(|(k, _)| *k == key.as_ref()) {
                Some(i) => {
                    // Duplicate keys: the replacement is written once, where the first stood.
                    if !done[i] {
                        done[i] = true;
                        if let Some(v) = replace[i].1 {
                            push(&mut out, key, v);
                        }
                    }
                }
                None => push(&mut out, key, value.get()),
            }
        }
        for (i, (key, value)) in replace.iter().enumerate() {
            if let (false, Some(v)) = (done[i], value) {
                push(&mut out, key, v);
            }
        }
        out.push(b'}');
        out
    }
}

/// A key as a JSON string: keys come from a parsed document or from our own code, so
/// serializing a `&str` cannot fail; escaping is serde_json's.
fn write_key(out: &mut Vec<u8>, key: &str) {
    if key
        .bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, key).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawObject<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = RawObject<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            fields.push((key.0, value));
        }
        Ok(RawObject { fields })
    }
}

/// A key borrowed from the input when it has no escapes, owned otherwise.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    #[test]
    fn untouched_fields_keep_their_exact_text_and_order() {
        let body =
            br#"{"id":"x","created":1.50e3,"choices":[{"text":"a\u00e9"}],"model":"m","z":null}"#;
        let obj = RawObject::parse(body).unwrap();
        let out = obj.write_with(&[("model", Some("\"client-name\""))]);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"id":"x","created":1.50e3,"choices":[{"text":"a\u00e9"}],"model":"client-name","z":null}"#
        );
    }

    #[test]
    fn absent_fields_are_appended_and_none_removes() {
        let obj = RawObject::parse(br#"{"a":1,"b":2}"#).unwrap();
        let out = obj.write_with(&[("b", None), ("usage", Some(r#"{"n":3}"#))]);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"a":1,"usage":{"n":3}}"#
        );
    }

    #[test]
    fn duplicate_keys_read_the_last_and_write_one() {
        let obj = RawObject::parse(br#"{"model":"a","x":1,"model":"b"}"#).unwrap();
        assert_eq!(obj.get("model").unwrap().get(), "\"b\"");
        let out = obj.write_with(&[("model", Some("\"c\""))]);
        assert_eq!(std::str::from_utf8(&out).unwrap(), r#"{"model":"c","x":1}"#);
    }

    #[test]
    fn escaped_keys_survive() {
        let obj = RawObject::parse(br#"{"a\"b":1,"\u0041":2}"#).unwrap();
        let out: Value = serde_json::from_slice(&obj.write_with(&[])).unwrap();
        assert_eq!(out, json!({"a\"b": 1, "A": 2}));
    }

    #[test]
    fn non_objects_are_errors() {
        assert!(RawObject::parse(b"[1,2]").is_err());
        assert!(RawObject::parse(b"{\"a\":}").is_err());
        assert!(RawObject::parse(b"\"s\"").is_err());
        assert!(RawObject::parse(b"{} trailing").is_err());
    }

    #[test]
    fn get_as_treats_null_as_absent() {
        let obj = RawObject::parse(br#"{"error":null,"n":3}"#).unwrap();
        assert_eq!(obj.get_as::<Value>("error"), None);
        assert_eq!(obj.get_as::<u64>("n"), Some(3));
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Replacing fields through the raw object gives the same document as editing the
        /// parsed `Value`, for any object and any keys.
        #[test]
        fn write_with_matches_editing_the_value(
            fields in prop::collection::btree_map(".{0,6}", json_value(), 0..6),
            model in ".{0,8}",
            drop_key in ".{0,6}",
        ) {
            let original = Value::Object(fields.into_iter().collect());
            let text = serde_json::to_vec(&original).unwrap();
            let obj = RawObject::parse(&text).unwrap();
            let model_json = serde_json::to_string(&model).unwrap();
            let out = obj.write_with(&[("model", Some(&model_json)), (drop_key.as_str(), None)]);
            let got: Value = serde_json::from_slice(&out).unwrap();

            let mut expected = original.clone();
            let map = expected.as_object_mut().unwrap();
            map.insert("model".into(), Value::String(model.clone()));
            if drop_key != "model" {
                map.shift_remove(&drop_key);
            }
            prop_assert_eq!(got, expected);
        }
    }
}
