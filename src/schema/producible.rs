//! Whether a schema can produce a field: how `check` knows an agreement's field list names
//! fields the record schema has.

use serde_json::Value;

use crate::pointer::Segment;

pub(super) fn producible(schema: &Value, segments: &[Segment]) -> bool {
    let Some((first, rest)) = segments.split_first() else {
        return schema != &Value::Bool(false);
    };
    let Value::Object(obj) = schema else {
        return false;
    };
    // Subschemas combined in place can each contribute the field.
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = obj.get(key)
            && branches.iter().any(|b| producible(b, segments))
        {
            return true;
        }
    }
    for key in ["then", "else"] {
        if obj.get(key).is_some_and(|b| producible(b, segments)) {
            return true;
        }
    }
    match first {
        Segment::Key(name) => {
            if let Some(sub) = obj.get("properties").and_then(|p| p.get(name.as_str())) {
                return producible(sub, rest);
            }
            if let Some(Value::Object(patterns)) = obj.get("patternProperties") {
                for (pattern, sub) in patterns {
                    if regex_matches(pattern, name) && producible(sub, rest) {
                        return true;
                    }
                }
            }
            // Only an explicit schema for additional properties counts, so a typo in a field
            // list is caught even when the schema leaves additionalProperties open.
            match obj.get("additionalProperties") {
                Some(sub @ Value::Object(_)) => producible(sub, rest),
                _ => {
                    // A numeric key may also index an array.
                    crate::pointer::array_index(name).is_some() && array_item_producible(obj, rest)
                }
            }
        }
        Segment::Every => array_item_producible(obj, rest),
    }
}

fn array_item_producible(obj: &serde_json::Map<String, Value>, rest: &[Segment]) -> bool {
    if obj.get("items").is_some_and(|items| items != &Value::Bool(false) && producible(items, rest)) {
        return true;
    }
    matches!(obj.get("prefixItems"), Some(Value::Array(items)) if items.iter().any(|i| producible(i, rest)))
}

pub(super) fn regex_matches(pattern: &str, name: &str) -> bool {
    // The catalog compiled every pattern already; compiling a throwaway validator keeps one
    // regex dialect for both.
    jsonschema::options()
        .build(&serde_json::json!({"pattern": pattern}))
        .is_ok_and(|v| v.is_valid(&Value::String(name.to_owned())))
}
