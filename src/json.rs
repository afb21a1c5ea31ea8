//! Strict JSON intake and canonical output.
//!
//! A record body is parsed once, here: duplicate object keys are refused and nesting deeper than
//! the configured limit stops the parse before it recurses any further, so a hostile body can
//! neither smuggle a second value for a field past the schema nor exhaust the stack. The
//! canonical serialisation (sorted keys, no insignificant whitespace, in the style of RFC 8785)
//! is what the gateway sends, hashes and stores for each delivery.
//!
//! **Invariant:** no error produced here contains any part of the parsed document.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body is not acceptable JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The bytes are not UTF-8.
    #[error("the body is not valid UTF-8")]
    NotUtf8,
    /// The text is not JSON; `line` and `column` locate the problem (never its content).
    #[error("the body is not valid JSON (line {line}, column {column})")]
    Syntax { line: usize, column: usize },
    /// An object has the same key twice.
    #[error("an object has a duplicate key (line {line}, column {column})")]
    DuplicateKey { line: usize, column: usize },
    /// Arrays and objects nest deeper than allowed.
    #[error("the document nests deeper than {limit} levels")]
    TooDeep { limit: usize },
}

const DUPLICATE: &str = "passerelle:duplicate-key";
const TOO_DEEP: &str = "passerelle:too-deep";

/// Parses `bytes` as one JSON document, refusing duplicate keys and nesting deeper than
/// `max_depth` (a scalar at the top is depth 0, `[]` is depth 1).
pub fn parse_strict(bytes: &[u8], max_depth: usize) -> Result<Value, JsonError> {
    let text = std::str::from_utf8(bytes).map_err(|_| JsonError::NotUtf8)?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    // serde_json's own recursion guard (128) is a backstop; ours is lower and reported as such.
    let seed = StrictValue { depth: 0, max_depth };
    let value = seed.deserialize(&mut deserializer).map_err(|e| classify(&e, max_depth))?;
    deserializer.end().map_err(|e| classify(&e, max_depth))?;
    Ok(value)
}

fn classify(error: &serde_json::Error, max_depth: usize) -> JsonError {
    let (line, column) = (error.line(), error.column());
    // Custom errors carry only our marker text; never the document's content.
    let text = error.to_string();
    if text.starts_with(TOO_DEEP) || text.starts_with("recursion limit exceeded") {
        JsonError::TooDeep { limit: max_depth }
    } else if text.starts_with(DUPLICATE) {
        JsonError::DuplicateKey { line, column }
    } else {
        JsonError::Syntax { line, column }
    }
}

#[derive(Clone, Copy)]
struct StrictValue {
    depth: usize,
    max_depth: usize,
}

impl StrictValue {
    fn nested<E: de::Error>(&self) -> Result<StrictValue, E> {
        if self.depth >= self.max_depth {
            return Err(E::custom(TOO_DEEP));
        }
        Ok(StrictValue { depth: self.depth + 1, max_depth: self.max_depth })
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(DUPLICATE));
            }
            let value = map.next_value_seed(inner)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Serialises `value` canonically: object keys sorted by their UTF-16 code units (RFC 8785),
/// no whitespace, strings escaped minimally, integers as integers.
pub fn to_canonical_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    out
}

/// Appends the canonical form of `value` to `out`.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            out.push(b'{');
            let mut keys: Vec<&String> = map.keys().collect();
            // serde_json's map is ordered by UTF-8 bytes, which differs from UTF-16 order only
            // when a key holds characters above U+FFFF next to U+E000..U+FFFF; sort only then.
            if keys.iter().any(|k| k.chars().any(|c| c as u32 > 0xFFFF)) {
                keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            }
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_canonical(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::String(s) => write_string(s, out),
        // serde_json prints integers exactly and finite floats in shortest round-trip form.
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

/// Appends `s` as a JSON string, escaping exactly what RFC 8785 requires: the quote, the
/// backslash, and control characters (as `\b \t \n \f \r` or `\u00XX`).
pub fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let err = parse_strict(br#"{"a":{"b":1,"b":2}}"#, 64).unwrap_err();
        assert!(matches!(err, JsonError::DuplicateKey { .. }), "{err:?}");
    }

    #[test]
    fn depth_limit_counts_containers() {
        assert!(parse_strict(b"[[1]]", 2).is_ok());
        assert_eq!(parse_strict(b"[[[1]]]", 2).unwrap_err(), JsonError::TooDeep { limit: 2 });
    }

    #[test]
    fn hundred_thousand_nested_arrays_do_not_recurse() {
        let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse_strict(body.as_bytes(), 64).unwrap_err(), JsonError::TooDeep { limit: 64 });
    }

    #[test]
    fn syntax_errors_do_not_echo_content() {
        let err = parse_strict(br#"{"sin": 123456789"#, 64).unwrap_err();
        assert!(!err.to_string().contains("123456789"));
        assert!(matches!(err, JsonError::Syntax { .. }));
        assert_eq!(parse_strict(&[0xff, 0xfe], 64).unwrap_err(), JsonError::NotUtf8);
    }

    #[test]
    fn lone_surrogates_and_trailing_garbage_are_syntax_errors() {
        assert!(matches!(parse_strict(br#""\ud800""#, 64), Err(JsonError::Syntax { .. })));
        assert!(matches!(parse_strict(b"{} {}", 64), Err(JsonError::Syntax { .. })));
        assert!(matches!(parse_strict(b"1e400", 64), Err(JsonError::Syntax { .. })));
    }

    #[test]
    fn strings_are_escaped_as_serde_json_does() {
        for s in ["plain", "quo\"te", "back\\slash", "line\nbreak\r\t", "\u{0}\u{1f}\u{8}\u{c}", "é ☃ 😀", "</script>"]
        {
            let mut out = Vec::new();
            write_string(s, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(s).unwrap());
        }
    }

    #[test]
    fn canonical_form_sorts_keys_and_drops_whitespace() {
        let v = parse_strict(br#"{ "b": [1, 2.5, "\u00e9"], "a": {"z": null, "y": true} }"#, 64).unwrap();
        assert_eq!(String::from_utf8(to_canonical_vec(&v)).unwrap(), r#"{"a":{"y":true,"z":null},"b":[1,2.5,"é"]}"#);
    }
}
