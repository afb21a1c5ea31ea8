//! Views: the JSON Schema of exactly what a recipient receives, derived from the schema of the
//! version it receives (dereferenced) and its field list.
//!
//! A recipient's body is a projection (`policy::FieldList::project`): it keeps the record's
//! nesting and holds only the selected subtrees. Its view is the projection of the schema along
//! the same [`Selection`]:
//!
//! - A field selected whole keeps its schema as it is.
//! - An object on the way to a selected field keeps only the selected properties, and closes
//!   (`additionalProperties: false`): a projection never holds anything else. A property stays
//!   in `required` only if the source requires it **and** its projection is present whenever it
//!   is: a projection leaves out an object in which nothing selected was present, so an object
//!   required by the source but whose selected fields are all optional is optional here.
//! - An array under `*` keeps its length bounds and projects its `items` (and `prefixItems`);
//!   an element in which nothing selected was present is sent as `{}` (or `[]`), which the
//!   element's view accepts. An array under indices (`/a/0`) is sent padded with `null`.
//! - `allOf` branches are projected each; `anyOf` and `oneOf` become `anyOf` of the projected
//!   branches (two projections may no longer tell branches apart), `if`/`then`/`else` the
//!   `anyOf` of `then` and `else`. What a projection cannot be held to (`not`, `enum` and
//!   `const` of objects, `minProperties`, `uniqueItems`, `dependentRequired`...) is left out.
//! - `title` and `description` are kept at every level; the root's are the view's own.
//!
//! The view is draft 2020-12 and self-contained: the schema it is made from has its `$ref`s
//! inlined already, and a `$ref` left there (a recursive schema) is dropped, which only loosens
//! the view. **Invariant:** every projection of a record valid under the schema is valid under
//! the view (`tests/it/views.rs` holds every shipped recipient to it); the view errs on the
//! loose side wherever the schema cannot tell.

use serde_json::{Map, Value, json};

use super::producible::regex_matches;
use crate::pointer::{FieldPointer, Selection, array_index};

/// The dialect of every view.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// Keywords that describe and never constrain, kept wherever the schema has them.
const ANNOTATIONS: [&str; 6] = ["title", "description", "deprecated", "readOnly", "writeOnly", "$comment"];

/// The view of `schema` (dereferenced) for the fields `fields`, titled `title` and described by
/// `description`.
pub fn view(schema: &Value, fields: &[FieldPointer], title: &str, description: &str) -> Value {
    let selection = Selection::of(fields);
    let mut root = partial(schema, &selection);
    // A record in which nothing selected is present is projected as `{}`.
    if !guaranteed(schema, &selection) {
        root = accepting(root, &[json!({})]);
    }
    let mut out = Map::new();
    out.insert("$schema".to_owned(), json!(DIALECT));
    out.insert("title".to_owned(), json!(title));
    out.insert("description".to_owned(), json!(description));
    match root {
        Value::Object(fields) => {
            out.extend(fields.into_iter().filter(|(k, _)| k != "title" && k != "description"));
        }
        other => {
            out.insert("allOf".to_owned(), json!([other]));
        }
    }
    Value::Object(out)
}

/// The types `obj` declares, if it declares any.
fn declared_types(obj: &Map<String, Value>) -> Option<Vec<&str>> {
    match obj.get("type")? {
        Value::String(t) => Some(vec![t.as_str()]),
        Value::Array(list) => Some(list.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

/// Whether `obj` declares exactly the one type `t`.
fn only(obj: &Map<String, Value>, t: &str) -> bool {
    declared_types(obj).is_some_and(|types| types == [t])
}

fn branches<'s>(obj: &'s Map<String, Value>, keyword: &str) -> &'s [Value] {
    obj.get(keyword).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// The subschemas of this level of `obj` (not of its branches) that hold the member `key`: its
/// property and the patterns it matches, or else `additionalProperties`. `None` when this level
/// forbids the member; empty when it allows anything.
fn member_schemas<'s>(obj: &'s Map<String, Value>, key: &str) -> Option<Vec<&'s Value>> {
    let mut found: Vec<&Value> = obj.get("properties").and_then(|p| p.get(key)).into_iter().collect();
    if let Some(Value::Object(patterns)) = obj.get("patternProperties") {
        found.extend(patterns.iter().filter(|(pattern, _)| regex_matches(pattern, key)).map(|(_, s)| s));
    }
    if !found.is_empty() {
        return Some(found);
    }
    match obj.get("additionalProperties") {
        Some(Value::Bool(false)) => None,
        Some(sub @ Value::Object(_)) => Some(vec![sub]),
        _ => Some(Vec::new()),
    }
}

/// Every subschema the member `key` of a value valid under `schema` is valid under: this
/// level's and its `allOf` branches'.
fn all_member_schemas<'s>(schema: &'s Value, key: &str, out: &mut Vec<&'s Value>) {
    let Value::Object(obj) = schema else { return };
    out.extend(member_schemas(obj, key).into_iter().flatten());
    for branch in branches(obj, "allOf") {
        all_member_schemas(branch, key, out);
    }
}

/// The schema of the element at `index` of an array valid under `obj`.
fn element_schema(obj: &Map<String, Value>, index: usize) -> Option<&Value> {
    match obj.get("prefixItems").and_then(Value::as_array).and_then(|p| p.get(index)) {
        Some(item) => Some(item),
        None => obj.get("items"),
    }
}

/// Whether the projection under `node` of every value valid under `schema` is present (holds
/// something), so that what holds it may stay required. `false` whenever the schema cannot
/// tell: that only makes the view looser.
fn guaranteed(schema: &Value, node: &Selection) -> bool {
    if node.whole {
        return true;
    }
    let Value::Object(obj) = schema else { return false };
    if branches(obj, "allOf").iter().any(|b| guaranteed(b, node)) {
        return true;
    }
    for keyword in ["anyOf", "oneOf"] {
        let list = branches(obj, keyword);
        if !list.is_empty() && list.iter().all(|b| guaranteed(b, node)) {
            return true;
        }
    }
    if only(obj, "object") {
        let required = obj.get("required").and_then(Value::as_array);
        for (key, child) in &node.keys {
            if !required.is_some_and(|r| r.iter().any(|k| k == key)) {
                continue;
            }
            let mut subs = Vec::new();
            all_member_schemas(schema, key, &mut subs);
            if child.whole || subs.iter().any(|s| guaranteed(s, child)) {
                return true;
            }
        }
    }
    if only(obj, "array") {
        let min_items = obj.get("minItems").and_then(Value::as_u64).unwrap_or(0);
        if node.every.is_some() {
            // Every element is sent, as a placeholder if nothing of it is selected.
            return min_items >= 1;
        }
        for (key, child) in &node.keys {
            let Some(i) = array_index(key) else { continue };
            if (i as u64) < min_items && (child.whole || element_schema(obj, i).is_some_and(|s| guaranteed(s, child))) {
                return true;
            }
        }
    }
    false
}

/// `view`, also accepting each of `placeholders` it does not accept already.
fn accepting(view: Value, placeholders: &[Value]) -> Value {
    let validator = jsonschema::options().with_draft(jsonschema::Draft::Draft202012).build(&view).ok();
    let missing: Vec<Value> = placeholders
        .iter()
        .filter(|p| !validator.as_ref().is_some_and(|v| v.is_valid(p)))
        .map(|p| json!({"const": p}))
        .collect();
    if missing.is_empty() {
        return view;
    }
    let mut any = vec![view];
    any.extend(missing);
    json!({"anyOf": any})
}

/// A schema selected whole, as it is but for any `$ref` left in it (a recursive schema's), which
/// is dropped: it could not resolve in the view.
fn whole(schema: &Value) -> Value {
    let mut schema = schema.clone();
    drop_refs(&mut schema);
    schema
}

fn drop_refs(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    for key in ["$ref", "$dynamicRef", "$defs", "$id", "$anchor", "$dynamicAnchor", "$schema"] {
        map.remove(key);
    }
    for (key, child) in map.iter_mut() {
        match key.as_str() {
            // Instances, not schemas.
            "enum" | "const" | "default" | "examples" => {}
            // Maps from names to schemas.
            "properties" | "patternProperties" | "dependentSchemas" => {
                if let Value::Object(named) = child {
                    named.values_mut().for_each(drop_refs);
                }
            }
            _ => match child {
                Value::Array(items) => items.iter_mut().for_each(drop_refs),
                other => drop_refs(other),
            },
        }
    }
}

/// The view of a member or element held by `subs` (all of which it is valid under) and
/// selected by `node`.
fn member(subs: &[&Value], node: &Selection) -> Value {
    let project = |s: &Value| if node.whole { whole(s) } else { partial(s, node) };
    match subs {
        [] if node.whole => Value::Bool(true),
        [] => partial(&Value::Bool(true), node),
        [one] => project(one),
        many => json!({"allOf": many.iter().map(|s| project(s)).collect::<Vec<_>>()}),
    }
}

/// The view of an element of an array under `*`: an element in which nothing selected was
/// present is sent as `{}`, or `[]` if it was an array.
fn element(schema: &Value, node: &Selection) -> Value {
    if node.whole {
        return whole(schema);
    }
    let view = partial(schema, node);
    if guaranteed(schema, node) {
        return view;
    }
    let types = match schema {
        Value::Object(obj) => declared_types(obj),
        _ => None,
    };
    let mut placeholders = Vec::new();
    if types.as_ref().is_none_or(|t| t.iter().any(|t| *t != "array")) {
        placeholders.push(json!({}));
    }
    if types.as_ref().is_none_or(|t| t.contains(&"array")) {
        placeholders.push(json!([]));
    }
    accepting(view, &placeholders)
}

/// The view of the part of a value valid under `schema` that `node` (not selected whole)
/// keeps, when it keeps anything.
fn partial(schema: &Value, node: &Selection) -> Value {
    let empty = Map::new();
    let obj = match schema {
        Value::Bool(false) => return Value::Bool(false),
        Value::Object(obj) => obj,
        _ => &empty,
    };
    let mut out = Map::new();
    for keyword in ANNOTATIONS {
        if let Some(v) = obj.get(keyword) {
            out.insert(keyword.to_owned(), v.clone());
        }
    }
    // Only an object or an array can hold a selected field.
    let mut types = Vec::new();
    if !node.keys.is_empty() {
        types.push("object");
    }
    if node.every.is_some() || node.keys.keys().any(|k| array_index(k).is_some()) {
        types.push("array");
    }
    if let Some(declared) = declared_types(obj) {
        types.retain(|t| declared.contains(t));
    }
    match types.as_slice() {
        [] => return Value::Bool(false),
        [one] => out.insert("type".to_owned(), json!(one)),
        many => out.insert("type".to_owned(), json!(many)),
    };
    if types.contains(&"object") {
        let required = obj.get("required").and_then(Value::as_array);
        let mut properties = Map::new();
        let mut kept_required = Vec::new();
        for (key, child) in &node.keys {
            // A member this level forbids is never in a valid value, so never sent.
            let Some(subs) = member_schemas(obj, key) else { continue };
            properties.insert(key.clone(), member(&subs, child));
            if required.is_some_and(|r| r.iter().any(|k| k == key)) {
                let mut all = Vec::new();
                all_member_schemas(schema, key, &mut all);
                if child.whole || all.iter().any(|s| guaranteed(s, child)) {
                    kept_required.push(json!(key));
                }
            }
        }
        out.insert("properties".to_owned(), Value::Object(properties));
        if !kept_required.is_empty() {
            out.insert("required".to_owned(), Value::Array(kept_required));
        }
        out.insert("additionalProperties".to_owned(), Value::Bool(false));
        for keyword in ["propertyNames", "maxProperties"] {
            if let Some(v) = obj.get(keyword) {
                out.insert(keyword.to_owned(), whole(v));
            }
        }
    }
    if types.contains(&"array") {
        match &node.every {
            Some(every) => {
                // An element its index selects too gets what either selects: beside `*` alone,
                // each such union is a branch of the element's view.
                let widened: Vec<Selection> =
                    node.indexed_with_every().into_iter().flat_map(|e| e.into_values()).collect();
                let element = |schema: &Value, every: &Selection| {
                    let view = element(schema, every);
                    if widened.is_empty() {
                        return view;
                    }
                    let mut any = vec![view];
                    any.extend(widened.iter().map(|w| element(schema, w)));
                    json!({"anyOf": any})
                };
                let items = obj.get("items");
                let prefix = obj.get("prefixItems").and_then(Value::as_array);
                match items {
                    Some(items) => out.insert("items".to_owned(), element(items, every)),
                    None if prefix.is_none() => out.insert("items".to_owned(), element(&Value::Bool(true), every)),
                    None => None,
                };
                if let Some(prefix) = prefix {
                    out.insert("prefixItems".to_owned(), prefix.iter().map(|p| element(p, every)).collect());
                }
                for keyword in ["minItems", "maxItems"] {
                    if let Some(v) = obj.get(keyword) {
                        out.insert(keyword.to_owned(), v.clone());
                    }
                }
            }
            None => {
                // Picked elements keep their index; those in between are null.
                let picked: Vec<(usize, Value)> = node
                    .keys
                    .iter()
                    .filter_map(|(k, child)| {
                        let i = array_index(k)?;
                        let schema = element_schema(obj, i).unwrap_or(&Value::Bool(true));
                        Some((i, member(&[schema], child)))
                    })
                    .collect();
                let mut any = vec![json!({"type": "null"})];
                any.extend(picked.iter().map(|(_, v)| v.clone()));
                out.insert("items".to_owned(), json!({"anyOf": any}));
                let last = picked.iter().map(|(i, _)| *i as u64 + 1).max().unwrap_or(0);
                let max = obj.get("maxItems").and_then(Value::as_u64).map_or(last, |m| m.min(last));
                out.insert("maxItems".to_owned(), json!(max));
            }
        }
    }
    let mut all = Vec::new();
    for branch in branches(obj, "allOf") {
        all.push(partial(branch, node));
    }
    for keyword in ["anyOf", "oneOf"] {
        let list = branches(obj, keyword);
        if !list.is_empty() {
            all.push(json!({"anyOf": list.iter().map(|b| partial(b, node)).collect::<Vec<_>>()}));
        }
    }
    if let (Some(then), Some(otherwise)) = (obj.get("then"), obj.get("else")) {
        all.push(json!({"anyOf": [partial(then, node), partial(otherwise, node)]}));
    }
    if !all.is_empty() {
        out.insert("allOf".to_owned(), Value::Array(all));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(list: &[&str]) -> Vec<FieldPointer> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    fn validator(view: &Value) -> jsonschema::Validator {
        jsonschema::options().with_draft(jsonschema::Draft::Draft202012).build(view).unwrap()
    }

    fn person() -> Value {
        json!({
            "title": "Person",
            "description": "Someone.",
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "nickname": {"type": "string"},
                "address": {
                    "description": "Where they live.",
                    "type": "object",
                    "properties": {"street": {"type": "string"}, "unit": {"type": "string"}, "postal_code": {"type": "string", "pattern": "^[A-Z]"}},
                    "required": ["street", "postal_code"],
                    "additionalProperties": false
                },
                "children": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 3,
                    "uniqueItems": true,
                    "items": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "unit": {"type": "string"}, "born": {"type": "string"}},
                        "required": ["name", "born"]
                    }
                },
                "tags": {"type": "array", "items": {"type": "string"}}
            },
            "required": ["name", "address"],
            "minProperties": 2
        })
    }

    #[test]
    fn only_the_selected_subtrees_remain_and_required_where_always_sent() {
        let v = view(&person(), &fields(&["/name", "/address/postal_code", "/children/*/born"]), "T", "D");
        assert_eq!(v["$schema"], DIALECT);
        assert_eq!((&v["title"], &v["description"]), (&json!("T"), &json!("D")));
        assert_eq!(v["required"], json!(["address", "name"]));
        assert_eq!(v["additionalProperties"], false);
        assert!(v.get("minProperties").is_none());
        assert_eq!(v["properties"]["name"], json!({"type": "string", "minLength": 1}));
        let address = &v["properties"]["address"];
        assert_eq!(address["description"], "Where they live.");
        assert_eq!(address["required"], json!(["postal_code"]));
        assert_eq!(address["properties"].as_object().unwrap().keys().collect::<Vec<_>>(), ["postal_code"]);
        let children = &v["properties"]["children"];
        assert_eq!((&children["minItems"], &children["maxItems"]), (&json!(1), &json!(3)));
        assert!(children.get("uniqueItems").is_none(), "two projected elements may be equal");
        assert_eq!(children["items"]["required"], json!(["born"]));

        let check = validator(&v);
        let sent = json!({"name": "A", "address": {"postal_code": "K1A"}, "children": [{"born": "x"}, {"born": "x"}]});
        assert!(check.is_valid(&sent));
        // A required selected field missing, a field outside the list, or a value the schema
        // refuses: all invalid.
        assert!(!check.is_valid(&json!({"name": "A", "address": {}})));
        assert!(!check.is_valid(&json!({"name": "A", "address": {"postal_code": "K1A", "street": "1 Main"}})));
        assert!(!check.is_valid(&json!({"name": "", "address": {"postal_code": "K1A"}})));
    }

    #[test]
    fn an_object_required_but_holding_only_optional_selected_fields_is_optional() {
        // A person without a unit is sent without its address: nothing selected was in it.
        let v = view(&person(), &fields(&["/address/unit", "/children/*/unit"]), "T", "D");
        assert!(v.get("required").is_none(), "{v}");
        let check = validator(&v);
        assert!(check.is_valid(&json!({})));
        // Children without a unit are sent as empty objects, keeping their places.
        assert!(check.is_valid(&json!({"children": [{}, {"unit": "2"}]})));
        assert!(check.is_valid(&json!({"address": {"unit": "4"}})));
        assert!(!check.is_valid(&json!({"address": {}, "nickname": "x"})));
    }

    #[test]
    fn elements_that_may_be_scalars_are_sent_as_placeholders() {
        let schema = json!({"type": "object", "properties": {"list": {"type": "array", "items": {
            "type": ["object", "null"], "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}});
        let v = view(&schema, &fields(&["/list/*/a"]), "T", "D");
        let check = validator(&v);
        assert!(check.is_valid(&json!({"list": [{"a": 1}, {}]})), "{v}");
        assert!(!check.is_valid(&json!({"list": [{"a": "1"}]})));
    }

    #[test]
    fn indices_are_padded_with_null() {
        let schema = json!({"type": "object", "properties": {"d": {"type": "array", "items": {
            "type": "object", "properties": {"e": {"type": "integer"}, "f": {"type": "string"}}}}}});
        let v = view(&schema, &fields(&["/d/1/e"]), "T", "D");
        let check = validator(&v);
        assert!(check.is_valid(&json!({"d": [null, {"e": 2}]})), "{v}");
        assert!(!check.is_valid(&json!({"d": [null, {"e": 2}, null]})));
        assert!(!check.is_valid(&json!({"d": [null, {"f": "x"}]})));
    }

    /// `*` beside an index: the indexed element carries what either selects, and its
    /// projection is valid under the view.
    #[test]
    fn an_index_beside_every_element_widens_the_elements() {
        let schema = json!({"type": "object", "properties": {"d": {"type": "array", "items": {
            "type": "object", "properties": {"e": {"type": "integer"}, "f": {"type": "string"}}}}}});
        let list = crate::policy::FieldList::new(["/d/*/e", "/d/1/f"].iter().map(|p| p.parse().unwrap()).collect());
        let v = view(&schema, list.pointers(), "T", "D");
        let projected = list.project(&json!({"d": [{"e": 1, "f": "a"}, {"e": 2, "f": "b"}]}));
        assert_eq!(projected, json!({"d": [{"e": 1}, {"e": 2, "f": "b"}]}));
        let check = validator(&v);
        assert!(check.is_valid(&projected), "{v}");
        assert!(!check.is_valid(&json!({"d": [{"e": "1"}]})));
    }

    /// Two spellings of one index beside `*` (`1` and `01`): the element gets all three
    /// selections, and its view has the branch that allows them together.
    #[test]
    fn two_spellings_of_one_index_beside_every_element_make_one_branch() {
        let schema = json!({"type": "object", "properties": {"d": {"type": "array", "items": {
            "type": "object", "properties": {"e": {"type": "integer"}, "f": {"type": "string"}, "g": {"type": "string"}}}}}});
        let list =
            crate::policy::FieldList::new(["/d/*/e", "/d/1/f", "/d/01/g"].iter().map(|p| p.parse().unwrap()).collect());
        let v = view(&schema, list.pointers(), "T", "D");
        let projected = list.project(&json!({"d": [{"e": 1, "f": "a", "g": "x"}, {"e": 2, "f": "b", "g": "y"}]}));
        assert_eq!(projected, json!({"d": [{"e": 1}, {"e": 2, "f": "b", "g": "y"}]}));
        let check = validator(&v);
        assert!(check.is_valid(&projected), "{v}");
    }

    #[test]
    fn branches_are_projected_each_and_one_of_becomes_any_of() {
        let schema = json!({
            "type": "object",
            "properties": {"kind": {"enum": ["a", "b"]}},
            "required": ["kind"],
            "allOf": [{"properties": {"extra": {"type": "string"}}, "required": ["extra"]}],
            "oneOf": [
                {"properties": {"kind": {"const": "a"}, "x": {"type": "integer"}}, "required": ["x"]},
                {"properties": {"kind": {"const": "b"}, "y": {"type": "integer"}}, "required": ["y"]}
            ]
        });
        let v = view(&schema, &fields(&["/extra", "/x", "/y"]), "T", "D");
        let check = validator(&v);
        // `kind` is not sent, so nothing tells the branches apart: either may be met.
        assert!(check.is_valid(&json!({"extra": "e", "x": 1})), "{v}");
        assert!(check.is_valid(&json!({"extra": "e", "y": 1})));
        assert!(!check.is_valid(&json!({"x": 1})), "the allOf branch still requires extra");
        assert!(!check.is_valid(&json!({"extra": "e", "x": "1"})));
        assert!(!check.is_valid(&json!({"extra": "e", "kind": "a", "x": 1})), "kind is not sent");
    }

    #[test]
    fn a_whole_field_keeps_its_schema_but_any_dangling_reference() {
        let schema = json!({"type": "object", "properties": {"tree": {
            "type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/properties/tree"}}},
            "examples": [{"$ref": "data, not a reference"}]}}});
        let v = view(&schema, &fields(&["/tree"]), "T", "D");
        assert_eq!(v["properties"]["tree"]["properties"]["children"]["items"], json!({}));
        assert_eq!(v["properties"]["tree"]["examples"], json!([{"$ref": "data, not a reference"}]));
        validator(&v);
    }
}
