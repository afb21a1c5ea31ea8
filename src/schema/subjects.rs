//! Subject identifiers: the fields a record schema marks `"x-passerelle-subject": true`, which
//! identify a person the record is about (a SIN, a registration number, a health card number).
//!
//! The catalog collects, for each schema, the pointers of its marked fields by walking the
//! dereferenced document through `properties` (a key) and `items` (`*`), and through `allOf`,
//! `anyOf`, `oneOf`, `then` and `else` in place. What a record holds there is what the gateway
//! keys its access record by (`audit::subject`): a person's disclosures are found by these
//! values, digested, never by the values themselves.
//!
//! A mark is refused, and the schema with it, where it could not do its work: on a field that
//! is not a string or a number (an object or an array is not one identifier), somewhere no field
//! pointer reaches (under `additionalProperties`, `patternProperties`, `prefixItems`, `not`,
//! `if`...), or with another value than `true` or `false`.

use serde_json::Value;

use crate::pointer::{FieldPointer, Segment};

/// The keyword that marks a field as a subject identifier.
pub const KEYWORD: &str = "x-passerelle-subject";

/// Nesting walked at most: the dereferenced documents are finite, and a recursive `$ref` left in
/// place is not followed.
const MAX_DEPTH: usize = 64;

/// The pointers of every field `schema` (dereferenced) marks as a subject identifier, in the
/// order the walk finds them, or what is wrong with the marks.
pub(super) fn subjects(schema: &Value) -> Result<Vec<FieldPointer>, Vec<String>> {
    let mut walk = Walk::default();
    walk.schema(schema, Some(&mut Vec::new()), 0);
    if walk.problems.is_empty() { Ok(walk.found) } else { Err(walk.problems) }
}

#[derive(Default)]
struct Walk {
    found: Vec<FieldPointer>,
    problems: Vec<String>,
}

impl Walk {
    /// Visits one schema; `at` is its field's path, `None` where no field pointer reaches.
    fn schema(&mut self, schema: &Value, mut at: Option<&mut Vec<Segment>>, depth: usize) {
        let Value::Object(obj) = schema else { return };
        if depth > MAX_DEPTH {
            return;
        }
        if let Some(mark) = obj.get(KEYWORD) {
            self.mark(obj, mark, at.as_deref());
        }
        for (keyword, sub) in obj {
            match keyword.as_str() {
                "properties" => {
                    for (name, property) in sub.as_object().into_iter().flatten() {
                        self.below(property, at.as_deref_mut(), Segment::Key(name.clone()), depth);
                    }
                }
                "items" => self.below(sub, at.as_deref_mut(), Segment::Every, depth),
                "allOf" | "anyOf" | "oneOf" => {
                    for branch in sub.as_array().into_iter().flatten() {
                        self.schema(branch, at.as_deref_mut(), depth + 1);
                    }
                }
                "then" | "else" => self.schema(sub, at.as_deref_mut(), depth + 1),
                // Schemas no field pointer reaches: a mark in them is refused.
                "additionalProperties"
                | "unevaluatedProperties"
                | "propertyNames"
                | "not"
                | "if"
                | "contains"
                | "unevaluatedItems" => self.schema(sub, None, depth + 1),
                "patternProperties" | "dependentSchemas" => {
                    for s in sub.as_object().into_iter().flatten().map(|(_, s)| s) {
                        self.schema(s, None, depth + 1);
                    }
                }
                "prefixItems" => {
                    for s in sub.as_array().into_iter().flatten() {
                        self.schema(s, None, depth + 1);
                    }
                }
                // Everything else is data (`enum`, `const`, `examples`, `default`) or an
                // annotation, and `$defs` is reached through the references already inlined.
                _ => {}
            }
        }
    }

    /// Visits the schema of what sits under `segment`.
    fn below(&mut self, schema: &Value, at: Option<&mut Vec<Segment>>, segment: Segment, depth: usize) {
        match at {
            Some(path) => {
                path.push(segment);
                self.schema(schema, Some(path), depth + 1);
                path.pop();
            }
            None => self.schema(schema, None, depth + 1),
        }
    }

    /// Checks a mark, and records its field if it is one.
    fn mark(&mut self, obj: &serde_json::Map<String, Value>, mark: &Value, at: Option<&Vec<Segment>>) {
        let Some(marked) = mark.as_bool() else {
            self.problems.push(format!("`{KEYWORD}` is true or false"));
            return;
        };
        if !marked {
            return;
        }
        let Some(path) = at else {
            self.problems.push(format!(
                "marks `{KEYWORD}` where no field pointer reaches (only fields under `properties` and `items` are \
                 subject identifiers)"
            ));
            return;
        };
        let pointer = to_pointer(path);
        if !is_scalar(obj) {
            self.problems.push(format!(
                "marks `{pointer}` as `{KEYWORD}`, but a subject identifier is one string or number: give it \
                 `\"type\": \"string\"` (or integer, number), not an object or an array"
            ));
            return;
        }
        if !self.found.contains(&pointer) {
            self.found.push(pointer);
        }
    }
}

/// Whether the schema holds one string or number and nothing else.
fn is_scalar(obj: &serde_json::Map<String, Value>) -> bool {
    let scalar = |t: &Value| matches!(t.as_str(), Some("string" | "integer" | "number"));
    let typed = match obj.get("type") {
        Some(Value::Array(types)) => !types.is_empty() && types.iter().all(scalar),
        Some(t) => scalar(t),
        None => false,
    };
    typed && !["properties", "items", "prefixItems"].iter().any(|k| obj.contains_key(*k))
}

/// The pointer of a path (keys escaped as RFC 6901 says, `*` for every element).
fn to_pointer(path: &[Segment]) -> FieldPointer {
    let text: String = path
        .iter()
        .map(|s| match s {
            Segment::Key(k) => format!("/{}", k.replace('~', "~0").replace('/', "~1")),
            Segment::Every => "/*".to_owned(),
        })
        .collect();
    // invariant: every segment was escaped above, so the text parses back to the same path.
    text.parse().unwrap_or_else(|_| unreachable!("an escaped path is a pointer"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pointers(schema: Value) -> Result<Vec<String>, Vec<String>> {
        subjects(&schema).map(|found| {
            let mut found: Vec<String> = found.iter().map(ToString::to_string).collect();
            found.sort();
            found
        })
    }

    #[test]
    fn marked_fields_are_found_through_properties_items_and_combinators() {
        let schema = json!({
            "type": "object",
            "properties": {
                "number": {"type": "string", "x-passerelle-subject": true},
                "people": {"type": "array", "items": {"type": "object", "properties": {
                    "sin": {"type": "string", "x-passerelle-subject": true},
                    "name": {"type": "string", "x-passerelle-subject": false}
                }}},
                "a/b": {"allOf": [{"type": ["integer", "string"], "x-passerelle-subject": true}]},
                "unmarked": {"type": "string", "enum": [{"x-passerelle-subject": "data, not a schema"}]}
            }
        });
        assert_eq!(pointers(schema).unwrap(), ["/a~1b", "/number", "/people/*/sin"]);
    }

    #[test]
    fn a_mark_on_a_non_scalar_where_no_pointer_reaches_or_not_a_boolean_is_refused() {
        for (schema, says) in [
            (json!({"properties": {"p": {"type": "object", "x-passerelle-subject": true}}}), "`/p`"),
            (json!({"properties": {"p": {"type": "array", "x-passerelle-subject": true}}}), "not an object"),
            (json!({"properties": {"p": {"x-passerelle-subject": true}}}), "one string or number"),
            (json!({"additionalProperties": {"type": "string", "x-passerelle-subject": true}}), "no field pointer"),
            (json!({"prefixItems": [{"type": "string", "x-passerelle-subject": true}]}), "no field pointer"),
            (json!({"properties": {"p": {"type": "string", "x-passerelle-subject": "yes"}}}), "true or false"),
        ] {
            let problems = pointers(schema.clone()).unwrap_err();
            assert!(problems.len() == 1 && problems[0].contains(says), "{schema}: {problems:?}");
        }
    }
}
