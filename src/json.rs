//! Strict JSON intake and canonical output.
//!
//! A record body is parsed once, here: duplicate object keys are refused and nesting deeper than
//! the configured limit stops the parse before it recurses any further, so a hostile body can
//! neither smuggle a second value for a field past the schema nor exhaust the stack. The
//! canonical serialisation (sorted keys, no insignificant whitespace, in the style of RFC 8785)
//! is what the gateway sends, hashes and stores for each delivery.
//!
//! A partner's number is also read as written. The parsed value holds each number as a 64-bit
//! integer or as a double, and the validator, the projection and the canonical writer all see
//! that value; [`parse_exact`] reads every number literal of the text once more and reports
//! each one whose written decimal value the parsed value does not carry exactly (see
//! [`InexactNumber`] for the rule and `src/schema.rs` for why it makes validation exact).
//!
//! **Invariant:** no error produced here contains any part of the parsed document.

use std::cell::Cell;
use std::fmt;
use std::ops::Range;

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
/// How serde_json's message for a number beyond a double's range begins.
const OUT_OF_RANGE: &str = "number out of range";

/// `key` as one token of a JSON Pointer (RFC 6901): `~` as `~0`, `/` as `~1`.
pub fn pointer_token(key: &str) -> std::borrow::Cow<'_, str> {
    if key.contains(['~', '/']) {
        std::borrow::Cow::Owned(key.replace('~', "~0").replace('/', "~1"))
    } else {
        std::borrow::Cow::Borrowed(key)
    }
}

/// Parses `bytes` as one JSON document, refusing duplicate keys and nesting deeper than
/// `max_depth` (a scalar at the top is depth 0, `[]` is depth 1).
pub fn parse_strict(bytes: &[u8], max_depth: usize) -> Result<Value, JsonError> {
    let text = std::str::from_utf8(bytes).map_err(|_| JsonError::NotUtf8)?;
    parse_text(text, max_depth, &Cell::new(false)).map_err(|e| classify(&e, max_depth))
}

/// Why a number literal is not carried exactly by the value parsed from it.
///
/// A literal is carried exactly when serde_json holds it as a 64-bit integer (an integer
/// literal within `i64` or `u64`), or when it holds it as a finite double of which the literal
/// is a shortest round-trip form: the form the canonical writer prints, or the other of two such
/// forms when the double lies exactly half-way between them (what any language's shortest
/// printing gives, whichever way it breaks that tie); and, for magnitudes from 2^53 to 2^64,
/// where 64-bit integers are finer than doubles, when that double is the literal's value itself.
/// So `0.1`, `1.0`, `90e-1`, `-0` and `1e20` are carried exactly; `9.0000000000000000001` (whose
/// double is 9), `-15978736368576.065` (as short as the double's form `-15978736368576.064`,
/// but another decimal), `18446744073709551616` and `9007199254740993.0` (whose double is 2^53)
/// are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InexactNumber {
    /// Beyond the range of a double (`1e400`).
    OutOfRange,
    /// More precise than the double that stands for it (`9.0000000000000000001`, `1e-400`).
    TooPrecise,
}

/// Parses like [`parse_strict`], and calls `inexact` with the location of every number literal
/// the parsed value does not carry exactly, in document order.
///
/// A literal beyond a double's range stops serde_json; it is parsed as `0` instead (and
/// reported), so the rest of the document is still checked for what row 11 and 12 of the check
/// table refuse, and still validated.
pub fn parse_exact(
    bytes: &[u8],
    max_depth: usize,
    mut inexact: impl FnMut(InexactNumber, &NumberLocation<'_>),
) -> Result<Value, JsonError> {
    let text = std::str::from_utf8(bytes).map_err(|_| JsonError::NotUtf8)?;
    // Set by the parser when it makes a double: without one, every number was an integer
    // within 64 bits, held exactly, and the text need not be read again.
    let saw_double = Cell::new(false);
    let value = match parse_text(text, max_depth, &saw_double) {
        Ok(value) => value,
        Err(e) if e.to_string().starts_with(OUT_OF_RANGE) => {
            saw_double.set(true);
            parse_text(&with_zero_for_out_of_range(text, max_depth), max_depth, &saw_double)
                .map_err(|e| classify(&e, max_depth))?
        }
        Err(e) => return Err(classify(&e, max_depth)),
    };
    if saw_double.get() {
        for_each_number(text, max_depth, |range, location| {
            if let Err(why) = exactness(&text[range]) {
                inexact(why, location);
            }
        });
    }
    Ok(value)
}

fn parse_text(text: &str, max_depth: usize, saw_double: &Cell<bool>) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    // serde_json's own recursion guard (128) is a backstop; ours is lower and reported as such.
    let seed = StrictValue { depth: 0, max_depth, saw_double };
    let value = seed.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// `text` with each number literal beyond a double's range replaced by `0` and spaces, so the
/// document keeps its length and every other error its line and column.
fn with_zero_for_out_of_range(text: &str, max_depth: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for_each_number(text, max_depth, |range, _| {
        if exactness(&text[range.clone()]) == Err(InexactNumber::OutOfRange) {
            bytes[range.start] = b'0';
            bytes[range.start + 1..range.end].fill(b' ');
        }
    });
    // Only ASCII bytes were replaced by ASCII bytes.
    String::from_utf8(bytes).unwrap_or_else(|_| text.to_owned())
}

/// Whether the number `literal` is carried exactly by what serde_json parses it into; the
/// rule is [`InexactNumber`]'s.
fn exactness(literal: &str) -> Result<(), InexactNumber> {
    if !literal.contains(['.', 'e', 'E']) && (literal.parse::<u64>().is_ok() || literal.parse::<i64>().is_ok()) {
        return Ok(());
    }
    if !is_number_literal(literal) {
        // Not a number at all: the parser refuses the text, which is its report to make.
        return Ok(());
    }
    // The same parser as the document's, so the same double; a number literal it refuses is
    // beyond a double's range.
    let double: f64 = serde_json::from_str(literal).map_err(|_| InexactNumber::OutOfRange)?;
    let printed = Number::from_f64(double).ok_or(InexactNumber::OutOfRange)?;
    // A shortest round-trip form of the double: no more significant digits than the shortest
    // form serde_json prints. Two shortest forms can stand for one double when it lies half-way
    // between them (`-1676939070918890.2` and `.3` for `...890.25`); whichever the partner's
    // system printed is what it holds, and both are taken.
    let written = Decimal::parse(literal);
    let shortest = Decimal::parse(&printed.to_string());
    if written.digits.len() > shortest.digits.len() {
        return Err(InexactNumber::TooPrecise);
    }
    // As many digits but other ones: another decimal of that length that rounds to the same
    // double (`-15978736368576.065` is the double `...576.064453125`, printed `.064`). What the
    // double holds is the printed one, and the validator reads that, so the literal is not carried
    // exactly; unless the double lies exactly half-way between the two, where both are its
    // shortest forms.
    if written != shortest && !half_way(double, &written, &shortest) {
        return Err(InexactNumber::TooPrecise);
    }
    const TWO_TO_53: f64 = 9_007_199_254_740_992.0;
    const TWO_TO_64: f64 = 18_446_744_073_709_551_616.0;
    let magnitude = double.abs();
    if (TWO_TO_53..=TWO_TO_64).contains(&magnitude) {
        // Whole at this magnitude, and below 2^65, so `u128` holds it exactly.
        let exact = format!("{}{}", if double < 0.0 { "-" } else { "" }, magnitude as u128);
        if written != Decimal::parse(&exact) {
            return Err(InexactNumber::TooPrecise);
        }
    }
    Ok(())
}

/// Whether `double` is exactly half-way between the decimals `a` and `b`, computed on integers
/// (`false` when they do not fit, which only very large or very small magnitudes reach, and there
/// two decimals of a double's shortest length are never both its shortest forms anyway).
fn half_way(double: f64, a: &Decimal, b: &Decimal) -> bool {
    if a.negative != b.negative || a.negative != (double < 0.0) {
        return false;
    }
    // Both as integers times 10^q.
    let q = a.exponent.min(b.exponent);
    let integer = |d: &Decimal| -> Option<i128> {
        let value =
            d.digits.iter().try_fold(0i128, |n, &digit| n.checked_mul(10)?.checked_add(i128::from(digit - b'0')))?;
        value.checked_mul(10i128.checked_pow(u32::try_from(d.exponent - q).ok()?)?)
    };
    let (Some(a), Some(b)) = (integer(a), integer(b)) else { return false };
    let Some(sum) = a.checked_add(b) else { return false };
    // |double| = m × 2^e exactly; half-way means m × 2^(e + 1) = sum × 10^q.
    let bits = double.abs().to_bits();
    let (biased, fraction) = ((bits >> 52) as i64, (bits & ((1 << 52) - 1)) as i128);
    let (m, e) = if biased == 0 { (fraction, -1074) } else { (fraction | (1 << 52), biased - 1075) };
    // Multiply out the powers of five and two onto the side that has them.
    let (mut left, mut right) = (m, sum);
    let fives = u32::try_from(q.unsigned_abs()).ok().and_then(|n| 5i128.checked_pow(n));
    let Some(fives) = fives else { return false };
    let product = if q < 0 { left.checked_mul(fives) } else { right.checked_mul(fives) };
    let Some(product) = product else { return false };
    if q < 0 {
        left = product
    } else {
        right = product
    }
    // Powers of two: 2^(e + 1) on the left, 2^q on the right.
    let twos = e + 1 - q;
    let shifted = u32::try_from(twos.unsigned_abs()).ok().filter(|n| *n < 126).and_then(|n| {
        let side = if twos >= 0 { left } else { right };
        side.checked_mul(1i128 << n)
    });
    let Some(shifted) = shifted else { return false };
    if twos >= 0 { shifted == right } else { left == shifted }
}

/// Whether `text` is one number of JSON's grammar: `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_number_literal(text: &str) -> bool {
    let digits = |s: &str| s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let rest = text.strip_prefix('-').unwrap_or(text);
    let integer = digits(rest);
    if integer == 0 || (integer > 1 && rest.starts_with('0')) {
        return false;
    }
    let mut rest = &rest[integer..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = digits(fraction);
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    if let Some(exponent) = rest.strip_prefix(['e', 'E']) {
        let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        let n = digits(exponent);
        if n == 0 {
            return false;
        }
        rest = &exponent[n..];
    }
    rest.is_empty()
}

/// The value of a JSON number literal, exactly: `digits × 10^exponent`, with no leading or
/// trailing zero in `digits` (none at all for zero, which then has no sign).
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    exponent: i64,
}

impl Decimal {
    /// Reads a literal of JSON's number grammar (serde_json's `1e+20` included).
    fn parse(literal: &str) -> Decimal {
        let (mantissa, exponent) = match literal.split_once(['e', 'E']) {
            Some((mantissa, exponent)) => {
                let negative = exponent.starts_with('-');
                // Saturates: a literal's exponent past `i64` is out of a double's reach either way.
                let magnitude = exponent
                    .bytes()
                    .filter(u8::is_ascii_digit)
                    .fold(0i64, |e, d| e.saturating_mul(10).saturating_add(i64::from(d - b'0')));
                (mantissa, if negative { -magnitude } else { magnitude })
            }
            None => (literal, 0),
        };
        let negative = mantissa.starts_with('-');
        let mantissa = mantissa.trim_start_matches('-');
        let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let mut digits: Vec<u8> = integer.bytes().chain(fraction.bytes()).skip_while(|&d| d == b'0').collect();
        let trailing = digits.iter().rev().take_while(|&&d| d == b'0').count();
        digits.truncate(digits.len() - trailing);
        if digits.is_empty() {
            return Decimal { negative: false, digits, exponent: 0 };
        }
        let exponent = exponent.saturating_sub(fraction.len() as i64).saturating_add(trailing as i64);
        Decimal { negative, digits, exponent }
    }
}

/// One level of nesting around a number, while the text is read again.
enum Frame {
    /// In an array, at this element.
    Element(usize),
    /// In an object, under this key (the range of its quoted text), once it is read.
    Member(Option<Range<usize>>),
}

/// Where a number literal sits, written as a JSON Pointer on demand (only a number that is
/// reported needs one).
pub struct NumberLocation<'a> {
    text: &'a str,
    frames: &'a [Frame],
}

impl fmt::Display for NumberLocation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for frame in self.frames {
            f.write_str("/")?;
            match frame {
                Frame::Element(index) => write!(f, "{index}")?,
                Frame::Member(Some(key)) => {
                    let raw = &self.text[key.clone()];
                    let key = serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw.to_owned());
                    f.write_str(&pointer_token(&key))?;
                }
                Frame::Member(None) => {}
            }
        }
        Ok(())
    }
}

/// Calls `each` with the range and the location of every number literal of `text` outside
/// strings, in document order, reading no deeper than `max_depth` containers.
///
/// `text` is JSON that serde_json accepted, except for a number beyond a double's range, or
/// (in [`with_zero_for_out_of_range`]) text not yet known to be JSON: then the ranges only need
/// to be right where the text is JSON, and reading stops at `max_depth`, past which the parse
/// that follows fails first anyway.
fn for_each_number(text: &str, max_depth: usize, mut each: impl FnMut(Range<usize>, &NumberLocation<'_>)) {
    let bytes = text.as_bytes();
    let mut frames: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(bytes.len());
                if let Some(Frame::Member(key @ None)) = frames.last_mut() {
                    *key = Some(start..i);
                }
            }
            b'[' | b'{' => {
                if frames.len() >= max_depth {
                    return;
                }
                frames.push(if bytes[i] == b'[' { Frame::Element(0) } else { Frame::Member(None) });
                i += 1;
            }
            b']' | b'}' => {
                frames.pop();
                i += 1;
            }
            b',' => {
                match frames.last_mut() {
                    Some(Frame::Element(index)) => *index += 1,
                    Some(Frame::Member(key)) => *key = None,
                    None => {}
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len() && matches!(bytes[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                    i += 1;
                }
                each(start..i, &NumberLocation { text, frames: &frames });
            }
            _ => i += 1,
        }
    }
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
struct StrictValue<'a> {
    depth: usize,
    max_depth: usize,
    /// Set when a number is parsed into a double.
    saw_double: &'a Cell<bool>,
}

impl StrictValue<'_> {
    fn nested<E: de::Error>(&self) -> Result<Self, E> {
        if self.depth >= self.max_depth {
            return Err(E::custom(TOO_DEEP));
        }
        Ok(StrictValue { depth: self.depth + 1, ..*self })
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
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
        self.saw_double.set(true);
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom(OUT_OF_RANGE))
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
    // Most strings need no escape: one pass that does not stop early, so the compiler can check
    // many bytes at once, then one copy.
    if !bytes.iter().fold(false, |escape, &b| escape | (b < 0x20) | (b == b'"') | (b == b'\\')) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
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

    /// The canonical bytes of ordinary numbers, as they were before numbers were read as
    /// written: projected bodies are hashed and stored, so these must never change.
    #[test]
    fn ordinary_numbers_keep_their_canonical_bytes() {
        for (literal, canonical) in [
            ("0", "0"),
            ("-0", "-0.0"),
            ("-0.0", "-0.0"),
            ("1", "1"),
            ("-17", "-17"),
            ("1.0", "1.0"),
            ("2.50", "2.5"),
            ("0.1", "0.1"),
            ("1e2", "100.0"),
            ("1E-7", "1e-7"),
            ("1e20", "1e+20"),
            ("0.30000000000000004", "0.30000000000000004"),
            ("18446744073709551615", "18446744073709551615"),
            ("-9223372036854775808", "-9223372036854775808"),
            ("1070468.14", "1070468.14"),
        ] {
            let mut reported = 0;
            let value = parse_exact(literal.as_bytes(), 64, |_, _| reported += 1).unwrap();
            assert_eq!(String::from_utf8(to_canonical_vec(&value)).unwrap(), canonical, "{literal}");
            assert_eq!(reported, 0, "{literal} is carried exactly");
        }
    }

    #[test]
    fn numbers_are_carried_exactly_or_reported() {
        use InexactNumber::*;
        for (literal, expected) in [
            ("0.1", Ok(())),
            ("90e-1", Ok(())),
            ("1E+2", Ok(())),
            ("100000000000000000000", Ok(())),
            ("1.7976931348623157e308", Ok(())),
            ("5e-324", Ok(())),
            ("9007199254740992.0", Ok(())),
            ("9.000000000000000000000", Ok(())),
            ("9.0000000000000000001", Err(TooPrecise)),
            ("0.99999999999999999999", Err(TooPrecise)),
            ("1.0000000000000000001", Err(TooPrecise)),
            ("1e-400", Err(TooPrecise)),
            ("18446744073709551616", Err(TooPrecise)),
            ("-9223372036854775809", Err(TooPrecise)),
            ("9007199254740993.0", Err(TooPrecise)),
            ("1152921504606846976.0", Err(TooPrecise)),
            ("1.152921504606847e18", Err(TooPrecise)),
            ("0.1000000000000000055511151231257827", Err(TooPrecise)),
            // As many digits as the double's shortest form, but not it: `...576.064453125` is
            // printed `.064`, and `.065` reads as another decimal.
            ("-15978736368576.065", Err(TooPrecise)),
            ("-15978736368576.064", Ok(())),
            ("21201222403149.854", Err(TooPrecise)),
            ("21201222403149.855", Ok(())),
            // Exactly half-way between two shortest forms: both are taken.
            ("-1676939070918890.2", Ok(())),
            ("-1676939070918890.3", Ok(())),
            ("1070468.14", Ok(())),
            ("0.30000000000000004", Ok(())),
            ("1e400", Err(OutOfRange)),
            ("-1.8e308", Err(OutOfRange)),
        ] {
            assert_eq!(exactness(literal), expected, "{literal}");
        }
    }

    #[test]
    fn inexact_numbers_are_reported_at_their_pointer() {
        let body = br#"{"a": [1, {"b/c~": 1e400, "s": "1e400"}], "\u0064": 0.99999999999999999999, "e": 2.5}"#;
        let mut found = Vec::new();
        let value = parse_exact(body, 64, |why, at| found.push((at.to_string(), why))).unwrap();
        assert_eq!(
            found,
            vec![("/a/1/b~1c~0".to_owned(), InexactNumber::OutOfRange), ("/d".to_owned(), InexactNumber::TooPrecise)]
        );
        // The number out of range stands as 0, so the rest can be validated.
        assert_eq!(value["a"][1]["b/c~"], 0);
        assert_eq!(value["e"], 2.5);
        let mut root = Vec::new();
        parse_exact(b"1e400", 64, |_, at| root.push(at.to_string())).unwrap();
        assert_eq!(root, vec![String::new()]);
    }

    #[test]
    fn a_number_out_of_range_does_not_hide_other_errors() {
        let ignore = |_: InexactNumber, _: &NumberLocation<'_>| {};
        assert!(matches!(
            parse_exact(br#"[1e400, {"a": 1, "a": 2}]"#, 64, ignore),
            Err(JsonError::DuplicateKey { .. })
        ));
        assert!(matches!(parse_exact(b"[1e400] x", 64, ignore), Err(JsonError::Syntax { .. })));
        assert!(matches!(parse_exact(b"[1e400-5]", 64, ignore), Err(JsonError::Syntax { .. })));
        assert!(matches!(parse_exact(b"[1e400, 1-2]", 64, ignore), Err(JsonError::Syntax { .. })));
        assert_eq!(parse_exact(b"[1e400, [[[1]]]]", 2, ignore).unwrap_err(), JsonError::TooDeep { limit: 2 });
        // The column of a later error is the one in the body as sent.
        assert_eq!(parse_exact(b"[1e400, x]", 64, ignore).unwrap_err(), JsonError::Syntax { line: 1, column: 9 });
        assert!(matches!(parse_strict(b"[1e400, x]", 64), Err(JsonError::Syntax { .. })));
    }

    proptest::proptest! {
        /// Whatever double a partner's system holds, the way it prints it (shortest round-trip
        /// form, in either notation) is carried exactly: no ordinary number is refused.
        #[test]
        fn every_double_as_printed_is_carried_exactly(bits in proptest::prelude::any::<u64>()) {
            let double = f64::from_bits(bits);
            proptest::prop_assume!(double.is_finite());
            for printed in [format!("{double:e}"), format!("{double:?}"), serde_json::to_string(&double).unwrap()] {
                let mut reported = Vec::new();
                let value = parse_exact(printed.as_bytes(), 64, |why, _| reported.push(why)).unwrap();
                let big = (9_007_199_254_740_992.0..=18_446_744_073_709_551_616.0).contains(&double.abs());
                if !big {
                    proptest::prop_assert!(reported.is_empty(), "{} refused: {:?}", printed, reported);
                    proptest::prop_assert_eq!(value.as_f64(), Some(double));
                }
            }
        }

        /// Any string, with or without characters to escape (the copy in one piece and the
        /// escaping loop), is written as serde_json writes it.
        #[test]
        fn any_string_is_escaped_as_serde_json_does(s in "(\\PC|[\\x00-\\x1f\"\\\\])*") {
            let mut out = b"x".to_vec();
            write_string(&s, &mut out);
            let expected = serde_json::to_string(&s).unwrap();
            proptest::prop_assert_eq!(&out[1..], expected.as_bytes());
        }
    }

    #[test]
    fn canonical_form_sorts_keys_and_drops_whitespace() {
        let v = parse_strict(br#"{ "b": [1, 2.5, "\u00e9"], "a": {"z": null, "y": true} }"#, 64).unwrap();
        assert_eq!(String::from_utf8(to_canonical_vec(&v)).unwrap(), r#"{"a":{"y":true,"z":null},"b":[1,2.5,"é"]}"#);
    }
}
