//! Declared translations between two versions of one record type
//! (`schemas/<type>/<from>-to-<to>.toml`): how a record sent in one version is given to a
//! recipient pinned to another, and what `check` proves about it before it ever runs.
//!
//! The format is a small declarative mapping over JSON Pointers (with `*` for every array
//! element), chosen over JSON Patch (whose operations address single array indices, so they
//! cannot say "every parent") and over an expression language (no Rust implementation of
//! JSONata is mature, and an expression cannot be checked against two schemas at load):
//!
//! - **Same pointer, same field.** Every field of the record that the target version also
//!   defines (a property, or an array's items, at the same place) is copied as it is. Nothing
//!   needs declaring for a field that did not change.
//! - `[[map]]` `from`, `to` (and optionally `values`, a table from each source string to its
//!   target value): a renamed or moved field. A source value `values` does not list fails the
//!   translation. Its `from` is then not copied by the rule above.
//! - `[[constant]]` `to`, `value`: a field the target requires that the source cannot supply.
//! - `[[default]]` `to`, `value`: the same, written only where the record left it empty.
//! - `[[join]]` `from` (a list), `to`, `separator`: strings joined, absent ones skipped.
//! - `[[split]]` `from`, `to` (a list), `separator`: a string cut in at most `to.len()` parts.
//!
//! `from` and `to` of one rule hold the same number of `*`: the n-th `*` of `to` takes the
//! index the n-th `*` of `from` matched.
//!
//! What `check` proves, per pinned recipient ([`Translation::unproduced`],
//! [`Translation::losses`]): every field the recipient selects in the target version is
//! produced from fields the source version defines or by a constant, and no data the source
//! holds inside a selected field is dropped, unless the agreement accepts that loss. At run
//! time the translated record is validated against the target version's schema before
//! projection.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::Version;
use super::producible::producible;
use crate::pointer::{FieldPointer, Segment};

/// A translation file as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTranslation {
    #[serde(default)]
    map: Vec<RawMap>,
    #[serde(default)]
    constant: Vec<RawConstant>,
    #[serde(default)]
    default: Vec<RawConstant>,
    #[serde(default)]
    join: Vec<RawJoin>,
    #[serde(default)]
    split: Vec<RawSplit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    from: String,
    to: String,
    values: Option<BTreeMap<String, toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConstant {
    to: String,
    value: toml::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJoin {
    from: Vec<String>,
    to: String,
    separator: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSplit {
    from: String,
    to: Vec<String>,
    separator: String,
}

/// One rule of a translation.
#[derive(Debug, Clone)]
enum Rule {
    Map {
        from: FieldPointer,
        to: FieldPointer,
        values: Option<BTreeMap<String, Value>>,
    },
    Constant {
        to: FieldPointer,
        value: Value,
    },
    /// A constant written only where nothing else was.
    Default {
        to: FieldPointer,
        value: Value,
    },
    Join {
        from: Vec<FieldPointer>,
        to: FieldPointer,
        separator: String,
    },
    Split {
        from: FieldPointer,
        to: Vec<FieldPointer>,
        separator: String,
    },
}

impl Rule {
    fn sources(&self) -> Vec<&FieldPointer> {
        match self {
            Rule::Map { from, .. } | Rule::Split { from, .. } => vec![from],
            Rule::Join { from, .. } => from.iter().collect(),
            Rule::Constant { .. } | Rule::Default { .. } => Vec::new(),
        }
    }

    fn targets(&self) -> Vec<&FieldPointer> {
        match self {
            Rule::Map { to, .. } | Rule::Constant { to, .. } | Rule::Default { to, .. } | Rule::Join { to, .. } => {
                vec![to]
            }
            Rule::Split { to, .. } => to.iter().collect(),
        }
    }
}

/// Why a record could not be translated (the translated record's own violations come from
/// validating it against the target schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslationError {
    /// Where in the source record (a concrete JSON Pointer), and why; never the value.
    pub pointer: String,
    pub reason: &'static str,
}

/// A translation from one version of a record type to another.
#[derive(Debug, Clone)]
pub struct Translation {
    pub from: Version,
    pub to: Version,
    pub file: PathBuf,
    rules: Vec<Rule>,
    /// The target schema's shapes, resolved once at load: what `copy` consults per record.
    /// Never empty: `shape` pushes the target schema's own shape last, after its subschemas'.
    shapes: Vec<Shape>,
    /// The fields a rule moves, as a tree of segments, so `copy` leaves them out.
    moved: MovedFields,
}

/// What the target version holds at one place of a record: the subschema (as an index into
/// [`Translation::shapes`]) that each key or the items fall under, as [`child`] finds it.
/// Resolving this per record was a tenth of the gateway's time at the acceptance burst with a
/// pinned recipient: several map lookups and an allocation per field of the record.
#[derive(Debug, Clone, Default)]
struct Shape {
    /// Each key some `properties` names, here or in a branch (`allOf`, `then`, ...).
    properties: BTreeMap<String, usize>,
    /// Any other key: the first object `additionalProperties`, if one.
    other: Option<usize>,
    /// An array's items.
    items: Option<usize>,
}

/// The source fields the rules move, by segment: `here` marks a moved field.
#[derive(Debug, Clone, Default)]
struct MovedFields {
    here: bool,
    keys: BTreeMap<String, MovedFields>,
    every: Option<Box<MovedFields>>,
}

impl MovedFields {
    fn new(rules: &[Rule]) -> Self {
        let mut root = MovedFields::default();
        for source in rules.iter().flat_map(Rule::sources) {
            let mut at = &mut root;
            for segment in source.segments() {
                at = match segment {
                    Segment::Key(k) => at.keys.entry(k.clone()).or_default(),
                    Segment::Every => at.every.get_or_insert_default(),
                };
            }
            at.here = true;
        }
        root
    }
}

/// Resolves the shape of `schema` and of every subschema a record's field can fall under,
/// appending them to `shapes`; each schema node once (`seen`, by address: the schema is a tree
/// that outlives the call, and every step goes to a strict descendant, so this ends).
fn shape(schema: &Value, shapes: &mut Vec<Shape>, seen: &mut HashMap<*const Value, usize>) -> usize {
    if let Some(&index) = seen.get(&std::ptr::from_ref(schema)) {
        return index;
    }
    let mut keys = Vec::new();
    collect_keys(schema, &mut keys);
    let mut resolved = Shape::default();
    for key in keys {
        if let Some(sub) = child(schema, &Segment::Key(key.clone())) {
            resolved.properties.insert(key, shape(sub, shapes, seen));
        }
    }
    resolved.other = additional(schema).map(|sub| shape(sub, shapes, seen));
    resolved.items = child(schema, &Segment::Every).map(|sub| shape(sub, shapes, seen));
    shapes.push(resolved);
    seen.insert(std::ptr::from_ref(schema), shapes.len() - 1);
    shapes.len() - 1
}

/// The version pair a translation file's name declares: `1.1-to-1.0.toml`.
pub fn versions_of(file_name: &str) -> Option<(Version, Version)> {
    let (from, to) = file_name.strip_suffix(".toml")?.split_once("-to-")?;
    Some((from.parse().ok()?, to.parse().ok()?))
}

fn pointer(text: &str, problems: &mut Vec<String>) -> Option<FieldPointer> {
    text.parse().map_err(|e| problems.push(format!("`{text}` is not a field pointer: {e}"))).ok()
}

fn stars(p: &FieldPointer) -> usize {
    p.segments().iter().filter(|s| **s == Segment::Every).count()
}

fn json(value: &toml::Value) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

impl Translation {
    /// Reads a translation file, checking each rule's pointers against the source schema
    /// (`from`s) and the target schema (`to`s), both dereferenced. Problems are returned as
    /// messages for the file.
    pub fn parse(
        file: PathBuf,
        from: Version,
        to: Version,
        text: &str,
        source: &Value,
        target: &Value,
    ) -> Result<Translation, Vec<String>> {
        let raw: RawTranslation = toml::from_str(text).map_err(|e| vec![format!("is not a valid translation: {e}")])?;
        let mut problems = Vec::new();
        let mut rules = Vec::new();
        for m in &raw.map {
            if let (Some(f), Some(t)) = (pointer(&m.from, &mut problems), pointer(&m.to, &mut problems)) {
                let values = m.values.as_ref().map(|v| v.iter().map(|(k, v)| (k.clone(), json(v))).collect());
                rules.push(Rule::Map { from: f, to: t, values });
            }
        }
        for c in &raw.constant {
            if let Some(t) = pointer(&c.to, &mut problems) {
                rules.push(Rule::Constant { to: t, value: json(&c.value) });
            }
        }
        for d in &raw.default {
            if let Some(t) = pointer(&d.to, &mut problems) {
                rules.push(Rule::Default { to: t, value: json(&d.value) });
            }
        }
        for j in &raw.join {
            let from: Vec<_> = j.from.iter().filter_map(|f| pointer(f, &mut problems)).collect();
            if let Some(t) = pointer(&j.to, &mut problems) {
                rules.push(Rule::Join { from, to: t, separator: j.separator.clone() });
            }
        }
        for s in &raw.split {
            let to: Vec<_> = s.to.iter().filter_map(|t| pointer(t, &mut problems)).collect();
            if let Some(f) = pointer(&s.from, &mut problems) {
                rules.push(Rule::Split { from: f, to, separator: s.separator.clone() });
            }
        }
        for rule in &rules {
            for f in rule.sources() {
                if !producible(source, f.segments()) {
                    problems.push(format!("`{f}` is not a field of version {from}"));
                }
            }
            for t in rule.targets() {
                if !producible(target, t.segments()) {
                    problems.push(format!("`{t}` is not a field of version {to}"));
                }
                if t.segments().is_empty() {
                    problems.push("a rule cannot write the whole record".to_owned());
                }
            }
            let wanted = rule.sources().first().map_or(0, |f| stars(f));
            if rule.sources().iter().chain(rule.targets().iter()).any(|p| stars(p) != wanted) {
                problems.push(format!(
                    "the pointers of a rule hold the same number of `*`: {}",
                    rule.sources()
                        .iter()
                        .chain(rule.targets().iter())
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut shapes = Vec::new();
        shape(target, &mut shapes, &mut HashMap::new());
        let moved = MovedFields::new(&rules);
        Ok(Translation { from, to, file, rules, shapes, moved })
    }

    /// Whether a rule reads `field` or something inside it (so the field is not copied as is).
    fn moved(&self, segments: &[Segment]) -> bool {
        self.rules.iter().flat_map(Rule::sources).any(|f| f.segments() == segments)
    }

    /// `record` (valid under the source version) in the target version's shape.
    pub fn apply(&self, record: &Value) -> Result<Value, TranslationError> {
        let root = self.shapes.len() - 1;
        let mut out = self.copy(record, root, Some(&self.moved)).unwrap_or(Value::Object(Map::new()));
        for rule in &self.rules {
            match rule {
                Rule::Map { from, to, values } => {
                    for (indices, at, value) in matches(record, from.segments()) {
                        let value = match values {
                            None => value.clone(),
                            Some(table) => match value.as_str().and_then(|s| table.get(s)) {
                                Some(mapped) => mapped.clone(),
                                None => return Err(TranslationError { pointer: at, reason: "no-mapping" }),
                            },
                        };
                        set(&mut out, to.segments(), &indices, value);
                    }
                }
                Rule::Constant { to, value } => set(&mut out, to.segments(), &[], value.clone()),
                Rule::Default { to, value } => {
                    if get(&out, to.segments()).is_none_or(Value::is_null) {
                        set(&mut out, to.segments(), &[], value.clone());
                    }
                }
                Rule::Join { from, to, separator } => {
                    // Joined per index of the first source's `*`s (all share them).
                    let mut joined: BTreeMap<Vec<usize>, Vec<String>> = BTreeMap::new();
                    for f in from {
                        for (indices, at, value) in matches(record, f.segments()) {
                            let Some(text) = value.as_str() else {
                                return Err(TranslationError { pointer: at, reason: "not-a-string" });
                            };
                            joined.entry(indices).or_default().push(text.to_owned());
                        }
                    }
                    for (indices, parts) in joined {
                        set(&mut out, to.segments(), &indices, Value::String(parts.join(separator)));
                    }
                }
                Rule::Split { from, to, separator } => {
                    for (indices, at, value) in matches(record, from.segments()) {
                        let Some(text) = value.as_str() else {
                            return Err(TranslationError { pointer: at, reason: "not-a-string" });
                        };
                        for (part, t) in text.splitn(to.len(), separator.as_str()).zip(to) {
                            set(&mut out, t.segments(), &indices, Value::String(part.to_owned()));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// The part of `value` that the target schema can hold at the same place (`shape`), less
    /// what a rule moves (`moved`: the rules' fields under this place); `None` if nothing of it
    /// is kept.
    fn copy(&self, value: &Value, shape: usize, moved: Option<&MovedFields>) -> Option<Value> {
        if moved.is_some_and(|m| m.here) {
            return None;
        }
        let shape = &self.shapes[shape];
        match value {
            Value::Object(fields) => {
                let mut kept = Map::new();
                for (key, v) in fields {
                    let Some(&sub) = shape.properties.get(key.as_str()).or(shape.other.as_ref()) else { continue };
                    if let Some(copied) = self.copy(v, sub, moved.and_then(|m| m.keys.get(key.as_str()))) {
                        kept.insert(key.clone(), copied);
                    }
                }
                (!kept.is_empty() || fields.is_empty()).then_some(Value::Object(kept))
            }
            Value::Array(items) => {
                let moved = moved.and_then(|m| m.every.as_deref());
                let kept: Vec<Value> = match shape.items {
                    Some(sub) => items.iter().map(|v| self.copy(v, sub, moved).unwrap_or(Value::Null)).collect(),
                    None => Vec::new(),
                };
                Some(Value::Array(kept))
            }
            scalar => Some(scalar.clone()),
        }
    }

    /// Whether the target field `field` is produced: copied from the same field of the source,
    /// or written (whole or in part) by a rule.
    fn produces(&self, field: &FieldPointer, source: &Value) -> bool {
        let by_rule = self.rules.iter().flat_map(Rule::targets).any(|t| related(t.segments(), field.segments()));
        by_rule || (producible(source, field.segments()) && !self.moved(field.segments()))
    }

    /// The fields of `selected` (in the target's terms) that nothing produces from the source.
    pub fn unproduced<'a>(&self, selected: &'a [FieldPointer], source: &Value) -> Vec<&'a FieldPointer> {
        selected.iter().filter(|f| !self.produces(f, source)).collect()
    }

    /// The source fields (in the source's terms) that flow into the target field `field`.
    pub fn sources_of(&self, field: &FieldPointer, source: &Value) -> Vec<String> {
        let mut found = Vec::new();
        if producible(source, field.segments()) && !self.moved(field.segments()) {
            found.push(field.to_string());
        }
        for rule in &self.rules {
            if rule.targets().iter().any(|t| related(t.segments(), field.segments())) {
                match rule {
                    Rule::Constant { .. } => found.push("(a constant)".to_owned()),
                    Rule::Default { .. } => {
                        found.push("(a default where the record has none)".to_owned());
                        if producible(source, field.segments()) {
                            found.push(field.to_string());
                        }
                    }
                    _ => found.extend(rule.sources().iter().map(|s| s.to_string())),
                }
            }
        }
        found
    }

    /// The leaves of the source that a recipient selecting `selected` (target terms) is allowed
    /// but would not receive: data the translation drops inside a selected field.
    pub fn losses(&self, selected: &[FieldPointer], source: &Value, target: &Value) -> Vec<String> {
        let is_selected = |segments: &[Segment]| selected.iter().any(|f| segments.starts_with(f.segments()));
        let mut lost = Vec::new();
        for f in selected {
            if !producible(source, f.segments()) {
                continue;
            }
            for leaf in leaves(source, f.segments()) {
                let carried_as_is = !self.moved_within(&leaf) && producible(target, &leaf);
                let carried_by_rule = self.rules.iter().any(|r| {
                    r.sources().iter().any(|s| leaf.starts_with(s.segments()))
                        && r.targets().iter().any(|t| is_selected(t.segments()))
                });
                if !carried_as_is && !carried_by_rule {
                    lost.push(display(&leaf));
                }
            }
        }
        lost.sort();
        lost.dedup();
        lost
    }

    /// Whether a rule moves `leaf` or one of its ancestors.
    fn moved_within(&self, leaf: &[Segment]) -> bool {
        self.rules.iter().flat_map(Rule::sources).any(|s| leaf.starts_with(s.segments()))
    }
}

/// Whether one pointer is the other or inside it.
fn related(a: &[Segment], b: &[Segment]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn display(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| match s {
            Segment::Key(k) => format!("/{}", k.replace('~', "~0").replace('/', "~1")),
            Segment::Every => "/*".to_owned(),
        })
        .collect()
}

/// The branches of a schema object whose instances are also instances of it, in the order
/// every walk here takes them: `allOf`, `anyOf`, `oneOf`, `then`, `else`.
fn branches(obj: &Map<String, Value>) -> impl Iterator<Item = &Value> {
    let listed = ["allOf", "anyOf", "oneOf"].into_iter().filter_map(|key| match obj.get(key) {
        Some(Value::Array(branches)) => Some(branches.iter()),
        _ => None,
    });
    listed.flatten().chain(["then", "else"].into_iter().filter_map(|key| obj.get(key)))
}

/// The subschemas that hold what sits under `segment` in an instance of `schema`.
fn children<'s>(schema: &'s Value, segment: &Segment, out: &mut Vec<&'s Value>) {
    let Value::Object(obj) = schema else { return };
    for b in branches(obj) {
        children(b, segment, out);
    }
    match segment {
        Segment::Key(name) => {
            if let Some(sub) = obj.get("properties").and_then(|p| p.get(name.as_str())) {
                out.push(sub);
            } else if let Some(sub @ Value::Object(_)) = obj.get("additionalProperties") {
                out.push(sub);
            }
        }
        Segment::Every => {
            if let Some(items @ Value::Object(_)) = obj.get("items") {
                out.push(items);
            }
        }
    }
}

/// The first subschema that holds what sits under `segment` (for copying: any will do, the
/// result is validated against the whole target schema afterwards).
fn child<'s>(schema: &'s Value, segment: &Segment) -> Option<&'s Value> {
    let mut found = Vec::new();
    children(schema, segment, &mut found);
    found.into_iter().next()
}

/// The first subschema that holds a key no `properties` names: what [`child`] finds for it.
fn additional(schema: &Value) -> Option<&Value> {
    let Value::Object(obj) = schema else { return None };
    branches(obj).find_map(additional).or(match obj.get("additionalProperties") {
        Some(sub @ Value::Object(_)) => Some(sub),
        _ => None,
    })
}

/// The leaves of `schema` under `prefix`: every path to a value that is not an object with
/// properties or an array with items, with `*` for array items. Bounded in depth.
fn leaves(schema: &Value, prefix: &[Segment]) -> Vec<Vec<Segment>> {
    let mut at = vec![schema];
    for segment in prefix {
        let mut next = Vec::new();
        for s in at {
            children(s, segment, &mut next);
        }
        at = next;
    }
    let mut out = Vec::new();
    for s in at {
        walk(s, &mut prefix.to_vec(), &mut out, 0);
    }
    out.sort();
    out.dedup();
    out
}

fn walk(schema: &Value, path: &mut Vec<Segment>, out: &mut Vec<Vec<Segment>>, depth: usize) {
    let mut keys: Vec<String> = Vec::new();
    collect_keys(schema, &mut keys);
    let has_items = {
        let mut items = Vec::new();
        children(schema, &Segment::Every, &mut items);
        !items.is_empty()
    };
    if depth > 32 || (keys.is_empty() && !has_items) {
        out.push(path.clone());
        return;
    }
    for key in keys {
        let segment = Segment::Key(key);
        let mut subs = Vec::new();
        children(schema, &segment, &mut subs);
        path.push(segment);
        for sub in subs {
            walk(sub, path, out, depth + 1);
        }
        path.pop();
    }
    if has_items {
        let mut subs = Vec::new();
        children(schema, &Segment::Every, &mut subs);
        path.push(Segment::Every);
        for sub in subs {
            walk(sub, path, out, depth + 1);
        }
        path.pop();
    }
}

fn collect_keys(schema: &Value, keys: &mut Vec<String>) {
    let Value::Object(obj) = schema else { return };
    if let Some(Value::Object(props)) = obj.get("properties") {
        for k in props.keys() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    for b in branches(obj) {
        collect_keys(b, keys);
    }
}

/// Every value of `record` at `pointer`: the indices its `*`s matched, the concrete pointer,
/// and the value.
fn matches<'v>(record: &'v Value, pointer: &[Segment]) -> Vec<(Vec<usize>, String, &'v Value)> {
    let mut out = Vec::new();
    fn go<'v>(
        value: &'v Value,
        rest: &[Segment],
        indices: &mut Vec<usize>,
        at: &mut String,
        out: &mut Vec<(Vec<usize>, String, &'v Value)>,
    ) {
        let Some((first, rest)) = rest.split_first() else {
            out.push((indices.clone(), at.clone(), value));
            return;
        };
        let len = at.len();
        match (first, value) {
            (Segment::Every, Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    indices.push(i);
                    at.push_str(&format!("/{i}"));
                    go(item, rest, indices, at, out);
                    at.truncate(len);
                    indices.pop();
                }
            }
            (Segment::Key(k), Value::Object(fields)) => {
                if let Some(v) = fields.get(k) {
                    at.push_str(&display(&[Segment::Key(k.clone())]));
                    go(v, rest, indices, at, out);
                    at.truncate(len);
                }
            }
            (Segment::Key(k), Value::Array(items)) => {
                if let Some(v) = crate::pointer::array_index(k).and_then(|i| items.get(i)) {
                    at.push_str(&format!("/{k}"));
                    go(v, rest, indices, at, out);
                    at.truncate(len);
                }
            }
            _ => {}
        }
    }
    go(record, pointer, &mut Vec::new(), &mut String::new(), &mut out);
    out
}

/// The value at a pointer without `*`, if there is one.
fn get<'v>(value: &'v Value, pointer: &[Segment]) -> Option<&'v Value> {
    pointer.iter().try_fold(value, |v, segment| match (segment, v) {
        (Segment::Key(k), Value::Object(fields)) => fields.get(k),
        (Segment::Key(k), Value::Array(items)) => crate::pointer::array_index(k).and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Writes `value` at `pointer` in `out`, its `*`s taking `indices` in order, making the objects
/// and array elements on the way.
fn set(out: &mut Value, pointer: &[Segment], indices: &[usize], value: Value) {
    let Some((first, rest)) = pointer.split_first() else {
        *out = value;
        return;
    };
    match first {
        Segment::Key(k) => {
            if !out.is_object() {
                *out = Value::Object(Map::new());
            }
            if let Value::Object(fields) = out {
                let next = fields.entry(k.clone()).or_insert(Value::Null);
                set(next, rest, indices, value);
            }
        }
        Segment::Every => {
            let Some((&i, more)) = indices.split_first() else { return };
            if !out.is_array() {
                *out = Value::Array(Vec::new());
            }
            if let Value::Array(items) = out {
                while items.len() <= i {
                    items.push(Value::Null);
                }
                set(&mut items[i], rest, more, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn source() -> Value {
        json!({"type": "object", "properties": {
            "child": {"type": "object", "properties": {
                "name": {"type": "string"}, "born": {"type": "string"}, "time": {"type": "string"}}},
            "parents": {"type": "array", "items": {"type": "object", "properties": {
                "lang": {"type": "string"}, "postal": {"type": "string"}}}}}})
    }

    fn target() -> Value {
        json!({"type": "object", "properties": {
            "child": {"type": "object", "properties": {
                "given": {"type": "string"}, "family": {"type": "string"}, "born": {"type": "string"}}},
            "parents": {"type": "array", "items": {"type": "object", "properties": {
                "language": {"type": "string"}, "postal": {"type": "string"}}}},
            "origin": {"type": "string"}}})
    }

    const RULES: &str = r#"
[[map]]
from = "/parents/*/lang"
to = "/parents/*/language"
values = { en = "E", fr = "F" }

[[split]]
from = "/child/name"
to = ["/child/given", "/child/family"]
separator = " "

[[constant]]
to = "/origin"
value = "passerelle"

[[default]]
to = "/child/born"
value = "1970-01-01"
"#;

    fn translation() -> Translation {
        Translation::parse(
            PathBuf::from("t.toml"),
            "1.1".parse().unwrap(),
            "1.0".parse().unwrap(),
            RULES,
            &source(),
            &target(),
        )
        .unwrap()
    }

    fn fields(list: &[&str]) -> Vec<FieldPointer> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    #[test]
    fn a_record_is_copied_where_both_versions_agree_and_the_rules_do_the_rest() {
        let record = json!({"child": {"name": "Liam Gagnon", "born": "2026-03-28", "time": "06:41:00Z"},
                            "parents": [{"lang": "fr", "postal": "H2H 2B4"}, {"lang": "en"}]});
        let out = translation().apply(&record).unwrap();
        assert_eq!(
            out,
            json!({"child": {"given": "Liam", "family": "Gagnon", "born": "2026-03-28"},
                   "parents": [{"language": "F", "postal": "H2H 2B4"}, {"language": "E"}], "origin": "passerelle"})
        );
        // A default fills only what the record left empty.
        let without_birth = translation().apply(&json!({"child": {"name": "Noor"}})).unwrap();
        assert_eq!(without_birth["child"]["born"], "1970-01-01");
        let unmapped = json!({"parents": [{"lang": "de"}]});
        assert_eq!(
            translation().apply(&unmapped),
            Err(TranslationError { pointer: "/parents/0/lang".into(), reason: "no-mapping" })
        );
    }

    /// The per-record schema walk that `copy` did before its shapes were resolved at load,
    /// kept as the oracle they must agree with.
    fn copy_by_walk(t: &Translation, value: &Value, schema: &Value, path: &mut Vec<Segment>) -> Option<Value> {
        if t.moved(path) {
            return None;
        }
        match value {
            Value::Object(fields) => {
                let mut kept = Map::new();
                for (key, v) in fields {
                    let segment = Segment::Key(key.clone());
                    let sub = child(schema, &segment);
                    path.push(segment);
                    if let Some(sub) = sub
                        && let Some(copied) = copy_by_walk(t, v, sub, path)
                    {
                        kept.insert(key.clone(), copied);
                    }
                    path.pop();
                }
                (!kept.is_empty() || fields.is_empty()).then_some(Value::Object(kept))
            }
            Value::Array(items) => {
                path.push(Segment::Every);
                let kept = match child(schema, &Segment::Every) {
                    Some(sub) => items.iter().map(|v| copy_by_walk(t, v, sub, path).unwrap_or(Value::Null)).collect(),
                    None => Vec::new(),
                };
                path.pop();
                Some(Value::Array(kept))
            }
            scalar => Some(scalar.clone()),
        }
    }

    /// A target whose fields fall under branches, `additionalProperties` and items, several
    /// of them naming the same key: where the first subschema found decides.
    fn branching() -> Value {
        json!({"type": "object",
            "allOf": [{"properties": {"b": {"type": "object", "properties": {"x": {}}}}}],
            "anyOf": [{"properties": {"k": {"type": "array", "items": {"properties": {"x": {}}}}}}],
            "then": {"properties": {"a": {"type": "object", "properties": {"x": {}}}, "c": {}}},
            "properties": {
                "a": {"type": "string"},
                "c": {"type": "object"},
                "o": {"type": "object",
                    "allOf": [{"properties": {"y": {"type": "array", "items": {"type": "object", "properties": {"z": {}},
                                  "additionalProperties": {"type": "object", "properties": {"w": {}}}}}}},
                              {"additionalProperties": {"type": "object", "properties": {"z": {}}}}],
                    "properties": {"x": {}},
                    "additionalProperties": {"type": "object", "properties": {"w": {}}}}}})
    }

    /// Records of objects and arrays over the keys the schemas above name, and one other; the
    /// top always an object with an object at `/o`, where most of the branching is.
    fn record() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let key =
            || prop::sample::select(vec!["a", "b", "c", "k", "o", "x", "y", "z", "w", "other"]).prop_map(str::to_owned);
        let leaf =
            prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::Bool), "[a-z]{0,3}".prop_map(Value::String)];
        let value = leaf.prop_recursive(3, 48, 5, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        });
        let object = move || prop::collection::btree_map(key(), value.clone(), 0..6);
        (object(), object()).prop_map(|(mut top, o)| {
            top.insert("o".to_owned(), Value::Object(o.into_iter().collect()));
            Value::Object(top.into_iter().collect())
        })
    }

    proptest::proptest! {
        #[test]
        fn shapes_resolved_at_load_copy_what_the_schema_walk_copied(record in record()) {
            let rules = "[[map]]\nfrom = \"/b/x\"\nto = \"/c\"\n[[map]]\nfrom = \"/o/y/*/z\"\nto = \"/o/y/*/k\"\n";
            let schema = branching();
            let t = Translation::parse(PathBuf::new(), "1.1".parse().unwrap(), "1.0".parse().unwrap(), rules, &schema, &schema)
                .unwrap();
            let root = t.shapes.len() - 1;
            proptest::prop_assert_eq!(t.copy(&record, root, Some(&t.moved)), copy_by_walk(&t, &record, &schema, &mut Vec::new()));
            let plain = translation();
            let root = plain.shapes.len() - 1;
            proptest::prop_assert_eq!(
                plain.copy(&record, root, Some(&plain.moved)),
                copy_by_walk(&plain, &record, &target(), &mut Vec::new())
            );
        }
    }

    #[test]
    fn check_names_what_nothing_produces_and_what_a_selected_field_loses() {
        let t = translation();
        let wanted = fields(&["/child/given", "/child/born", "/parents/*/language", "/origin", "/parents/*/nope"]);
        let missing: Vec<String> = t.unproduced(&wanted, &source()).iter().map(|f| f.to_string()).collect();
        assert_eq!(missing, ["/parents/*/nope"]);
        // Selecting the whole child loses its time of birth, which 1.0 has no place for.
        assert_eq!(t.losses(&fields(&["/child"]), &source(), &target()), ["/child/time"]);
        // Selecting only the birth date loses nothing.
        assert!(t.losses(&fields(&["/child/born"]), &source(), &target()).is_empty());
        // The renamed language is carried when its new place is selected...
        assert!(t.losses(&fields(&["/parents"]), &source(), &target()).is_empty());
        assert_eq!(t.sources_of(&"/parents/*/language".parse().unwrap(), &source()), ["/parents/*/lang"]);
        assert_eq!(t.sources_of(&"/origin".parse().unwrap(), &source()), ["(a constant)"]);
    }

    #[test]
    fn rules_must_name_fields_of_their_versions_with_matching_stars() {
        let bad = r#"
[[map]]
from = "/child/nope"
to = "/parents/*/language"
"#;
        let problems = Translation::parse(
            PathBuf::new(),
            "1.1".parse().unwrap(),
            "1.0".parse().unwrap(),
            bad,
            &source(),
            &target(),
        )
        .unwrap_err();
        assert!(problems.iter().any(|p| p.contains("`/child/nope` is not a field of version 1.1")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("same number of `*`")), "{problems:?}");
        assert_eq!(versions_of("1.1-to-1.0.toml"), Some(("1.1".parse().unwrap(), "1.0".parse().unwrap())));
        assert_eq!(versions_of("1.1.json"), None);
    }
}
