//! Validation as written: numbers are checked on the decimal the partner wrote, never on a
//! rounded stand-in, and a record with thousands of violations gets a bounded answer.
//!
//! Bodies here are raw text, never a re-serialised `Value`: the digits of a number literal are
//! what is under test.

use std::cmp::Ordering;
use std::path::Path;

use http::StatusCode;
use passerelle::schema::{CompiledSchema, SchemaCatalog};
use proptest::prelude::*;
use serde_json::Value;

use crate::support::*;

const RECORDS: &str = "/v1/records/birth-registration";
const DRY_RUN: &str = "/v1/validate/birth-registration";
const ORDER: &str = "/child/multiple_birth_order";

/// The shipped 1.1 birth record as written, with `multiple_birth_order` written as `literal`.
fn birth_with_order(literal: &str) -> String {
    let text = std::fs::read_to_string(repo().join("tests/data/records/birth-registration-1.1.json")).unwrap();
    let field = "\"multiple_birth_order\": 2,";
    assert!(text.contains(field));
    text.replacen(field, &format!("\"multiple_birth_order\": {literal},"), 1)
}

async fn post(gw: &TestGateway, path: &str, body: String) -> TestResponse {
    gw.post_as("on-vital-stats", path).header("schema-version", "1.1").json_bytes(body).send().await
}

/// Issue 18: `9.0000000000000000001` (maximum 9), `0.99999999999999999999` (minimum 1) and
/// `1.0000000000000000001` (type integer) were accepted and stored, because the validator saw
/// the double each rounds to. Each is now one `numberPrecision` violation at its pointer, on
/// both the record route and the dry run, and nothing is stored.
#[tokio::test]
async fn numbers_a_double_cannot_hold_exactly_are_refused_at_their_pointer() {
    let gw = Setup::new().start().await;
    for literal in [
        "9.0000000000000000001",
        "0.99999999999999999999",
        "1.0000000000000000001",
        "1e400",
        "-1e400",
        "1e-400",
        "18446744073709551616",
        "9007199254740993.0",
        "10.000000000000000000001",
    ] {
        for route in [RECORDS, DRY_RUN] {
            let r = post(&gw, route, birth_with_order(literal)).await;
            let doc = r.problem(422, "schema-violation");
            // Only the precision violation: what the validator said of the rounded stand-in
            // (`maximum` for 10.000…1) is not about the partner's number.
            assert_eq!(
                violations(&doc),
                vec![(ORDER.to_owned(), "numberPrecision".to_owned())],
                "{literal} on {route}"
            );
            assert_eq!(doc["violations_total"], 1);
            let message = doc["violations"][0]["message"].as_str().unwrap();
            assert!(message.contains("IEEE 754"), "{message}");
            assert!(!r.text().contains(literal), "the answer echoes {literal}");
        }
    }
    let fr = gw
        .post_as("on-vital-stats", DRY_RUN)
        .header("accept-language", "fr-CA")
        .json_bytes(birth_with_order("1e400"))
        .send()
        .await;
    let doc = fr.problem(422, "schema-violation");
    assert!(doc["violations"][0]["message"].as_str().unwrap().starts_with("Le nombre dépasse"), "{doc}");
    let page = gw.metrics().await;
    assert_eq!(
        metric(
            &page,
            "passerelle_validation_violations_total",
            &[("record_type", "birth-registration"), ("keyword", "numberPrecision")]
        ),
        19.0
    );
    gw.assert_nothing_stored_or_delivered().await;
}

/// Numbers a double holds exactly keep their ordinary verdicts: `-0` is zero (below the minimum
/// of 1), `9.5` is not an integer and over the maximum, and an overflow among other mistakes
/// still leaves every other violation listed.
#[tokio::test]
async fn exact_numbers_get_the_schema_verdict_of_their_written_value() {
    let gw = Setup::new().start().await;
    for (literal, expected) in
        [("-0", vec!["minimum"]), ("0", vec!["minimum"]), ("9.5", vec!["type", "maximum"]), ("10", vec!["maximum"])]
    {
        let doc = post(&gw, DRY_RUN, birth_with_order(literal)).await.problem(422, "schema-violation");
        let mut found: Vec<String> = violations(&doc)
            .into_iter()
            .map(|(p, k)| {
                assert_eq!(p, ORDER);
                k
            })
            .collect();
        found.sort();
        let mut expected: Vec<String> = expected.into_iter().map(str::to_owned).collect();
        expected.sort();
        assert_eq!(found, expected, "{literal}");
    }
    let both = birth_with_order("1e400").replacen("\"sex_at_birth\": \"M\"", "\"sex_at_birth\": \"Male\"", 1);
    let doc = post(&gw, DRY_RUN, both).await.problem(422, "schema-violation");
    assert_eq!(
        violations(&doc),
        vec![(ORDER.to_owned(), "numberPrecision".to_owned()), ("/child/sex_at_birth".to_owned(), "enum".to_owned())]
    );
    // A malformed body stays a 400 even when it also holds a number out of range (11 before 13).
    let malformed = format!("{} trailing", birth_with_order("1e400"));
    post(&gw, DRY_RUN, malformed).await.problem(400, "malformed-json");
    let duplicate = birth_with_order("1e400").replacen(
        "\"sin_application\": true",
        "\"sin_application\": true, \"sin_application\": true",
        1,
    );
    post(&gw, DRY_RUN, duplicate).await.problem(400, "malformed-json");
    gw.assert_nothing_stored_or_delivered().await;
}

/// JSON Schema 2020-12 counts a number with a zero fractional part as an integer, so `1.0`,
/// `9.000000000000000000000` and `90e-1` are the integers 1 and 9: accepted, and stored.
#[tokio::test]
async fn integral_numbers_written_as_decimals_are_integers() {
    let gw = Setup::new().start().await;
    for literal in ["1.0", "9.000000000000000000000", "90e-1", "2E0"] {
        let dry = post(&gw, DRY_RUN, birth_with_order(literal)).await;
        assert_eq!(dry.status, StatusCode::OK, "{literal}: {}", dry.text());
        let r = post(&gw, RECORDS, birth_with_order(literal)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{literal}: {}", r.text());
    }
    assert_eq!(gw.count("records"), 4);
}

/// Issue 18: a 110 KB object with 10,000 unknown keys got a 1 MB answer. At most 100 violations
/// are listed now, `violations_total` counts them all, and the answer is smaller than the
/// request.
#[tokio::test]
async fn ten_thousand_unknown_keys_get_a_bounded_answer() {
    let gw = Setup::new().start().await;
    let record = std::fs::read_to_string(repo().join("tests/data/records/birth-registration-1.1.json")).unwrap();
    let extra: Vec<String> = (0..10_000).map(|i| format!("\"unknown_{i:05}\": 0")).collect();
    let body = format!("{{{}, {}", extra.join(", "), record.trim_start().trim_start_matches('{'));
    assert!(body.len() > 100_000, "{}", body.len());
    for route in [RECORDS, DRY_RUN] {
        let r = post(&gw, route, body.clone()).await;
        let doc = r.problem(422, "schema-violation");
        let listed = violations(&doc);
        assert_eq!(listed.len(), 100);
        assert!(listed.iter().all(|(p, k)| p.starts_with("/unknown_") && k == "additionalProperties"));
        assert_eq!(doc["violations_total"], 10_000);
        assert!(doc["detail"].as_str().unwrap().contains("10000"), "{doc}");
        assert!(r.body.len() < body.len() / 5, "a {} byte answer to a {} byte request", r.body.len(), body.len());
    }
    // The metric counts every violation by keyword, listed or not.
    let page = gw.metrics().await;
    assert_eq!(
        metric(
            &page,
            "passerelle_validation_violations_total",
            &[("record_type", "birth-registration"), ("keyword", "additionalProperties")]
        ),
        20_000.0
    );
    gw.assert_nothing_stored_or_delivered().await;
}

// The property: literals near every numeric bound of the schemas get the exact verdict.

/// A decimal number exactly as written: `digits × 10^exponent`, without leading or trailing
/// zeros in `digits` (empty for zero, which has no sign).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Exact {
    negative: bool,
    digits: Vec<u8>,
    exponent: i64,
}

impl Exact {
    fn parse(literal: &str) -> Exact {
        let (mantissa, exponent) = match literal.find(['e', 'E']) {
            Some(i) => (&literal[..i], literal[i + 1..].parse::<i64>().unwrap()),
            None => (literal, 0),
        };
        let negative = mantissa.starts_with('-');
        let mantissa = mantissa.trim_start_matches('-');
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').skip_while(|&d| d == 0).collect();
        let trailing = digits.iter().rev().take_while(|&&d| d == 0).count();
        digits.truncate(digits.len() - trailing);
        if digits.is_empty() {
            return Exact { negative: false, digits, exponent: 0 };
        }
        Exact { negative, digits, exponent: exponent - frac.len() as i64 + trailing as i64 }
    }

    fn is_integer(&self) -> bool {
        self.exponent >= 0
    }

    fn cmp_magnitude(&self, other: &Exact) -> Ordering {
        if self.digits.is_empty() || other.digits.is_empty() {
            return self.digits.len().min(1).cmp(&other.digits.len().min(1));
        }
        // Compare the position of the leading digit, then the digits themselves.
        let lead = |e: &Exact| e.digits.len() as i64 + e.exponent;
        lead(self).cmp(&lead(other)).then_with(|| {
            let n = self.digits.len().max(other.digits.len());
            let at = |e: &Exact, i: usize| e.digits.get(i).copied().unwrap_or(0);
            (0..n).map(|i| at(self, i).cmp(&at(other, i))).find(|o| o.is_ne()).unwrap_or(Ordering::Equal)
        })
    }

    fn cmp(&self, other: &Exact) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }

    /// Whether `self / divisor` is an integer; `None` when the arithmetic leaves `u128`.
    fn is_multiple_of(&self, divisor: &Exact) -> Option<bool> {
        if self.digits.is_empty() {
            return Some(true);
        }
        let shift = self.exponent - divisor.exponent;
        let mut modulus: u128 =
            divisor.digits.iter().try_fold(0u128, |m, &d| m.checked_mul(10)?.checked_add(d.into()))?;
        if shift < 0 {
            modulus = modulus.checked_mul(10u128.checked_pow(u32::try_from(-shift).ok()?)?)?;
        }
        let zeros = shift.max(0) as usize;
        let mut remainder = 0u128;
        for d in self.digits.iter().copied().chain(std::iter::repeat_n(0, zeros)) {
            remainder = (remainder.checked_mul(10)?.checked_add(d.into())?) % modulus;
        }
        Some(remainder == 0)
    }
}

/// Whether a double holds `literal` exactly in the sense the gateway promises, computed apart
/// from the gateway's code: an integer literal within 64 bits, or a literal equal to the
/// shortest form of its correctly rounded double (and, between 2^53 and 2^64, to that double).
fn carried_exactly(literal: &str) -> bool {
    if !literal.contains(['.', 'e', 'E']) && (literal.parse::<u64>().is_ok() || literal.parse::<i64>().is_ok()) {
        return true;
    }
    let double: f64 = literal.parse().unwrap();
    if !double.is_finite() {
        return false;
    }
    // A shortest round-trip form: no more significant digits than std's shortest printing
    // (`-1676939070918890.2` and `.3` are both shortest forms of the double `...890.25`).
    let written = Exact::parse(literal);
    let printed = Exact::parse(&format!("{double:e}"));
    if written.digits.len() > printed.digits.len() {
        return false;
    }
    // As many digits but others (`-15978736368576.065` for the double printed `.064`): the
    // literal is another decimal, unless the double is exactly half-way between the two.
    if written != printed && !half_way(double, &written, &printed) {
        return false;
    }
    let magnitude = double.abs();
    if (9_007_199_254_740_992.0..=18_446_744_073_709_551_616.0).contains(&magnitude) {
        let exact = format!("{}{}", if double < 0.0 { "-" } else { "" }, magnitude as u128);
        return written == Exact::parse(&exact);
    }
    true
}

/// Whether `double` is exactly half-way between `a` and `b` (of its sign), on exact digits.
fn half_way(double: f64, a: &Exact, b: &Exact) -> bool {
    let times = |digits: &[u8], k: u8| -> Vec<u8> {
        let mut out = Vec::with_capacity(digits.len() + 1);
        let mut carry = 0;
        for &d in digits.iter().rev() {
            let v = d * k + carry;
            out.push(v % 10);
            carry = v / 10;
        }
        if carry > 0 {
            out.push(carry);
        }
        out.reverse();
        out
    };
    // The double's exact value: m × 2^e, written as digits × 10^exponent.
    let bits = double.abs().to_bits();
    let (biased, fraction) = ((bits >> 52) as i64, bits & ((1 << 52) - 1));
    let (m, e) = if biased == 0 { (fraction, -1074) } else { (fraction | (1 << 52), biased - 1075) };
    let mut exact: Vec<u8> = m.to_string().bytes().map(|b| b - b'0').collect();
    let factor = if e >= 0 { 2 } else { 5 };
    for _ in 0..e.abs() {
        exact = times(&exact, factor);
    }
    let exact_exponent = e.min(0);
    // All three over the smallest exponent, then the two distances.
    let low = a.exponent.min(b.exponent).min(exact_exponent);
    let aligned = |digits: &[u8], exponent: i64| {
        let mut d = digits.to_vec();
        d.extend(std::iter::repeat_n(0, (exponent - low) as usize));
        d
    };
    let x = aligned(&exact, exact_exponent);
    let distance = |v: &Exact| {
        let v = aligned(&v.digits, v.exponent);
        if compare_digits(&v, &x).is_ge() { subtract(&v, &x) } else { subtract(&x, &v) }
    };
    a.negative == b.negative && compare_digits(&distance(a), &distance(b)).is_eq()
}

/// The numeric keywords that apply at one instance location.
#[derive(Debug, Clone)]
struct Bound {
    pointer: String,
    integer: bool,
    keywords: Vec<(&'static str, Exact)>,
}

impl Bound {
    /// The keywords `literal` breaks, read exactly (`None` when `multipleOf` cannot be decided).
    fn broken_by(&self, literal: &str) -> Option<Vec<&'static str>> {
        let value = Exact::parse(literal);
        let mut broken = Vec::new();
        if self.integer && !value.is_integer() {
            broken.push("type");
        }
        for (keyword, limit) in &self.keywords {
            let ok = match *keyword {
                "minimum" => value.cmp(limit).is_ge(),
                "maximum" => value.cmp(limit).is_le(),
                "exclusiveMinimum" => value.cmp(limit).is_gt(),
                "exclusiveMaximum" => value.cmp(limit).is_lt(),
                "multipleOf" => value.is_multiple_of(limit)?,
                _ => unreachable!(),
            };
            if !ok {
                broken.push(keyword);
            }
        }
        Some(broken)
    }
}

/// Every location of `schema` (a dereferenced document) that carries a numeric keyword,
/// following `properties`, `items` (as element 0) and `allOf`.
fn bounds(schema: &Value, pointer: &str, out: &mut Vec<Bound>) {
    let Value::Object(obj) = schema else { return };
    let mut keywords = Vec::new();
    for keyword in ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"] {
        if let Some(limit) = obj.get(keyword) {
            keywords.push((keyword, Exact::parse(&limit.to_string())));
        }
    }
    let integer = obj.get("type").is_some_and(|t| t == "integer");
    if !keywords.is_empty() {
        out.push(Bound { pointer: pointer.to_owned(), integer, keywords });
    }
    if let Some(Value::Object(properties)) = obj.get("properties") {
        for (name, sub) in properties {
            bounds(sub, &format!("{pointer}/{}", name.replace('~', "~0").replace('/', "~1")), out);
        }
    }
    if let Some(items) = obj.get("items") {
        bounds(items, &format!("{pointer}/0"), out);
    }
    if let Some(Value::Array(all)) = obj.get("allOf") {
        for sub in all {
            bounds(sub, pointer, out);
        }
    }
}

/// A number literal near `limit`: `limit ± offset × 10^-places` (or `limit` itself for
/// `side == 0`), written with optional extra zeros or as an integer mantissa with an exponent.
fn literal_near(limit: &Exact, side: i8, offset: u64, places: u32, zeros: usize, scientific: bool) -> String {
    // The limit as an integer count of 10^-scale.
    let scale = i64::from(places).max(-limit.exponent).max(0);
    let mut digits: Vec<u8> = limit.digits.clone();
    digits.extend(std::iter::repeat_n(0, (limit.exponent + scale) as usize));
    let mut magnitude = digits;
    let offset_digits: Vec<u8> = if side == 0 {
        vec![0]
    } else {
        let mut d: Vec<u8> = offset.to_string().bytes().map(|b| b - b'0').collect();
        d.extend(std::iter::repeat_n(0, (scale - i64::from(places)) as usize));
        d
    };
    // Move away from zero for `side` matching the limit's sign, towards it otherwise.
    let away = (side > 0) != limit.negative;
    let mut negative = limit.negative;
    if away {
        magnitude = add(&magnitude, &offset_digits);
    } else if compare_digits(&magnitude, &offset_digits).is_ge() {
        magnitude = subtract(&magnitude, &offset_digits);
    } else {
        magnitude = subtract(&offset_digits, &magnitude);
        negative = !negative;
    }
    let text: String = magnitude.iter().map(|d| char::from(b'0' + d)).collect();
    let text = text.trim_start_matches('0');
    let text = if text.is_empty() { "0" } else { text };
    let sign = if negative && text != "0" { "-" } else { "" };
    if scientific {
        // Extra zeros multiply an integer mantissa by ten each, so the exponent takes them back.
        let zeros = if text == "0" { 0 } else { zeros };
        return format!("{sign}{text}{}e-{}", "0".repeat(zeros), scale as usize + zeros);
    }
    let scale = scale as usize;
    let padded = format!("{text:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    if frac.is_empty() && zeros == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}{}", "0".repeat(zeros))
    }
}

fn compare_digits(a: &[u8], b: &[u8]) -> Ordering {
    let trim = |d: &[u8]| d.iter().position(|&x| x != 0).map_or(Vec::new(), |i| d[i..].to_vec());
    let (a, b) = (trim(a), trim(b));
    a.len().cmp(&b.len()).then_with(|| a.cmp(&b))
}

fn add(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut carry = 0;
    for i in 0..a.len().max(b.len()) {
        let x = if i < a.len() { a[a.len() - 1 - i] } else { 0 };
        let y = if i < b.len() { b[b.len() - 1 - i] } else { 0 };
        let s = x + y + carry;
        out.push(s % 10);
        carry = s / 10;
    }
    if carry > 0 {
        out.push(carry);
    }
    out.reverse();
    out
}

/// `a - b` for `a >= b`.
fn subtract(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut borrow = 0i8;
    for i in 0..a.len() {
        let x = a[a.len() - 1 - i] as i8;
        let y = if i < b.len() { b[b.len() - 1 - i] as i8 } else { 0 };
        let mut d = x - y - borrow;
        borrow = 0;
        if d < 0 {
            d += 10;
            borrow = 1;
        }
        out.push(d as u8);
    }
    out.reverse();
    out
}

/// A schema and a valid instance of it, with every numeric location found.
struct Subject {
    name: String,
    schema: &'static CompiledSchema,
    sample: Value,
    bounds: Vec<Bound>,
}

/// Sets the number at `pointer` of `sample` to a placeholder and writes it out, so the
/// placeholder can be replaced by a literal in the text; `None` when the parent is absent.
fn template(sample: &Value, pointer: &str) -> Option<String> {
    let (parent, last) = pointer.rsplit_once('/')?;
    let mut value = sample.clone();
    match value.pointer_mut(parent)? {
        Value::Object(map) => {
            map.insert(last.replace("~1", "/").replace("~0", "~"), Value::from(7_777_777_777_777_777_u64));
        }
        Value::Array(items) => *items.get_mut(last.parse::<usize>().ok()?)? = Value::from(7_777_777_777_777_777_u64),
        _ => return None,
    }
    Some(serde_json::to_string_pretty(&value).unwrap())
}

fn subjects(dir: &Path, samples: &[(&str, &str, &str)]) -> Vec<Subject> {
    let catalog: &'static SchemaCatalog =
        Box::leak(Box::new(SchemaCatalog::load(dir).unwrap_or_else(|p| panic!("{p:?}"))));
    let mut out = Vec::new();
    for (record_type, version, sample) in samples {
        let schema = &catalog.record_type(record_type).unwrap().version(version.parse().unwrap()).unwrap().request;
        let sample: Value = serde_json::from_str(sample).unwrap();
        assert!(schema.validate(&sample).is_empty(), "the sample of {record_type} {version} is valid");
        let mut found = Vec::new();
        bounds(schema.dereferenced(), "", &mut found);
        out.push(Subject { name: format!("{record_type} {version}"), schema, sample, bounds: found });
    }
    out
}

/// Every request schema of `schemas/` with its sample record.
fn shipped() -> &'static [Subject] {
    static SUBJECTS: std::sync::OnceLock<Vec<Subject>> = std::sync::OnceLock::new();
    SUBJECTS.get_or_init(|| {
        let read = |f: &str| std::fs::read_to_string(repo().join("tests/data/records").join(f)).unwrap();
        let samples = [
            ("birth-registration", "1.0", read("birth-registration-1.0.json")),
            ("birth-registration", "1.1", read("birth-registration-1.1.json")),
            ("address-change", "1.0", read("address-change-1.0.json")),
            ("sin-validation", "1.0", read("sin-validation-1.0.json")),
        ];
        let samples: Vec<(&str, &str, &str)> = samples.iter().map(|(t, v, s)| (*t, *v, s.as_str())).collect();
        let subjects = subjects(&repo().join("schemas"), &samples);
        let catalog = SchemaCatalog::load(&repo().join("schemas")).unwrap();
        let request_schemas: usize = catalog.types().map(|t| t.versions.len()).sum();
        assert_eq!(subjects.len(), request_schemas, "every request schema has a sample here");
        assert!(subjects.iter().any(|s| !s.bounds.is_empty()), "the shipped schemas have numeric bounds");
        subjects
    })
}

/// A schema with every numeric keyword, including bounds a double does not hold exactly
/// (`0.1`) and integers past 2^53, for the keywords `schemas/` does not use yet.
fn fixture() -> &'static [Subject] {
    static SUBJECTS: std::sync::OnceLock<(tempfile::TempDir, Vec<Subject>)> = std::sync::OnceLock::new();
    &SUBJECTS
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("measure")).unwrap();
            std::fs::write(
                dir.path().join("measure/1.0.json"),
                r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "count": {"type": "integer", "minimum": 1, "maximum": 9},
    "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    "dose": {"type": "number", "minimum": 0.1, "exclusiveMaximum": 2.675, "multipleOf": 0.005},
    "amount": {"type": "number", "minimum": -1000.5, "multipleOf": 0.01},
    "temperature": {"type": "number", "exclusiveMinimum": -273.15},
    "serial": {"type": "integer", "maximum": 9007199254740993, "multipleOf": 3},
    "tally": {"type": "integer", "minimum": -9223372036854775808, "maximum": 18446744073709551615}
  }
}"#,
            )
            .unwrap();
            let sample = r#"{"count": 5, "ratio": 0.5, "dose": 1.25, "amount": 12.34, "temperature": 20.5, "serial": 9, "tally": 0}"#;
            let subjects = subjects(dir.path(), &[("measure", "1.0", sample)]);
            assert_eq!(subjects[0].bounds.len(), 7);
            (dir, subjects)
        })
        .1
}

/// Checks one literal at one bound: the answer equals the exact reading of the literal.
fn check_literal(subject: &Subject, bound: &Bound, literal: &str) -> Result<(), TestCaseError> {
    let Some(template) = template(&subject.sample, &bound.pointer) else { return Ok(()) };
    let body = template.replacen("7777777777777777", literal, 1);
    let checked =
        subject.schema.check_body(body.as_bytes(), 64).map_err(|e| TestCaseError::fail(format!("{literal}: {e}")))?;
    let found: Vec<(&str, &str)> =
        checked.violations.listed().iter().map(|v| (v.pointer.as_str(), v.keyword)).collect();
    let context = format!("{} {} = {literal}: {found:?}", subject.name, bound.pointer);
    prop_assert!(found.iter().all(|(p, _)| *p == bound.pointer), "a violation elsewhere: {}", context);
    let Some(broken) = bound.broken_by(literal) else { return Ok(()) };
    if !carried_exactly(literal) {
        prop_assert_eq!(found, vec![(bound.pointer.as_str(), "numberPrecision")], "{}", context);
        return Ok(());
    }
    let mut keywords: Vec<&str> = found.iter().map(|(_, k)| *k).collect();
    keywords.sort_unstable();
    let mut broken = broken;
    broken.sort_unstable();
    prop_assert_eq!(keywords, broken, "{}", context);
    Ok(())
}

fn literals() -> impl Strategy<Value = (usize, i8, u64, u32, usize, bool)> {
    (
        any::<prop::sample::Index>().prop_map(|i| i.index(usize::MAX)),
        -1i8..=1,
        prop_oneof![Just(1u64), Just(5), 1u64..1000, 1u64..1_000_000_000_000_000_000],
        prop_oneof![0u32..4, 14u32..20, 0u32..45],
        prop_oneof![Just(0usize), 0usize..25],
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Issue 18: decimal literals just inside, exactly at and just outside every numeric bound
    /// of `schemas/`, with up to 45 decimal places, get the verdict of the exact decimal
    /// comparison, or `numberPrecision` when a double cannot hold them.
    #[test]
    fn literals_near_every_shipped_bound_get_the_exact_verdict((pick, side, offset, places, zeros, scientific) in literals()) {
        let cases: Vec<(&Subject, &Bound)> = shipped().iter().flat_map(|s| s.bounds.iter().map(move |b| (s, b))).collect();
        let (subject, bound) = cases[pick % cases.len()];
        for (_, limit) in &bound.keywords {
            check_literal(subject, bound, &literal_near(limit, side, offset, places, zeros, scientific))?;
        }
    }

    /// The same for every numeric keyword, on a fixture schema with exclusive bounds,
    /// `multipleOf`, bounds a double does not hold exactly and integers past 2^53.
    #[test]
    fn literals_near_every_kind_of_bound_get_the_exact_verdict((pick, side, offset, places, zeros, scientific) in literals()) {
        let subject = &fixture()[0];
        let bound = &subject.bounds[pick % subject.bounds.len()];
        for (_, limit) in &bound.keywords {
            check_literal(subject, bound, &literal_near(limit, side, offset, places, zeros, scientific))?;
        }
    }
}

/// The literals of the issue, on the fixture's exclusive bounds too.
#[test]
fn the_literals_of_the_issue_get_the_exact_verdict_on_every_kind_of_bound() {
    let subject = &fixture()[0];
    for (pointer, literal) in [
        ("/count", "9.0000000000000000001"),
        ("/count", "0.99999999999999999999"),
        ("/count", "1.0000000000000000001"),
        ("/ratio", "0.99999999999999999999"),
        ("/ratio", "1.0000000000000000001"),
        ("/ratio", "1e-400"),
        ("/temperature", "-273.15000000000000000001"),
        ("/dose", "2.6749999999999999999"),
        ("/amount", "0.070000000000000000001"),
        ("/amount", "1070468.14"),
        ("/serial", "9007199254740993.0"),
        ("/serial", "9007199254740993"),
        ("/serial", "9007199254740994"),
        ("/tally", "-9223372036854775809"),
        ("/tally", "18446744073709551616"),
    ] {
        let bound = subject.bounds.iter().find(|b| b.pointer == pointer).unwrap();
        check_literal(subject, bound, literal).unwrap();
    }
}
