//! The agreed schemas as components of the partner document: each file and each `$defs` entry
//! it needs becomes a component, every `$ref` between files is rewritten to point inside the
//! document, and components nothing leads to are dropped.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::schema::{CompiledSchema, SchemaCatalog};

/// The component that holds the schema file at `path` (inside the schemas directory).
pub fn component_name(path: &str) -> String {
    path.trim_end_matches(".json").replace('/', ".")
}

pub(super) fn component_ref(path: &str) -> String {
    format!("#/components/schemas/{}", component_name(path))
}

/// What a `$ref` between schema files names, as a component of the document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// A whole file (inside the schemas directory), without its `$defs`.
    File(String),
    /// One `$defs` entry of a file.
    Definition(String, String),
}

impl Target {
    /// The component's name: the file's, and the definition's after it.
    fn component(&self) -> String {
        match self {
            Target::File(path) => component_name(path),
            Target::Definition(path, name) => format!("{}.{name}", component_name(path)),
        }
    }

    fn file(&self) -> &str {
        match self {
            Target::File(path) | Target::Definition(path, _) => path,
        }
    }

    /// The schema as written in its file: a whole file loses `$schema` (the document's
    /// `jsonSchemaDialect` says the same) and `$defs` (each entry in use is a component).
    fn schema(&self, catalog: &SchemaCatalog) -> Option<Value> {
        let document = catalog.document(self.file())?;
        match self {
            Target::File(_) => {
                let mut schema = Value::clone(document);
                if let Value::Object(o) = &mut schema {
                    o.remove("$schema");
                    o.remove("$defs");
                }
                Some(schema)
            }
            Target::Definition(_, name) => document.get("$defs")?.get(name).cloned(),
        }
    }
}

/// The component and the JSON Pointer inside it that a `$ref` of `file` names. A pointer into
/// `$defs` names the definition's own component; anything else, the file's.
fn target(file: &str, reference: &str) -> Option<(Target, String)> {
    let (path, fragment) = resolve(file, reference)?;
    let Some(rest) = fragment.strip_prefix("/$defs") else {
        return Some((Target::File(path), fragment));
    };
    let rest = rest.strip_prefix('/')?;
    let (name, inside) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if name.is_empty() {
        return None;
    }
    Some((Target::Definition(path, name.to_owned()), inside.to_owned()))
}

/// Adds the request schema `schema` to `components`: its file and every component its
/// references need, or, if a reference cannot be rewritten into the document (an `$id`, an
/// anchor, a URI outside the schemas directory, a name that collides), the file with every
/// `$ref` inlined, as the validator sees it.
pub(super) fn add_schema_file(catalog: &SchemaCatalog, schema: &CompiledSchema, components: &mut Map<String, Value>) {
    let root = Target::File(schema.path.clone());
    let bundled = root.schema(catalog).and_then(|value| embed(catalog, &value, &schema.path, components));
    let value = bundled.unwrap_or_else(|| {
        let mut value = schema.dereferenced().clone();
        if let Value::Object(o) = &mut value {
            o.remove("$schema");
        }
        value
    });
    components.insert(root.component(), value);
}

/// `schema` (found in the file at `file`) with its references rewritten to point inside the
/// document; the components they need are added to `components`. `None`, and `components`
/// unchanged, if a reference cannot be rewritten or a component's name is taken by another.
pub(super) fn embed(
    catalog: &SchemaCatalog,
    schema: &Value,
    file: &str,
    components: &mut Map<String, Value>,
) -> Option<Value> {
    let mut schema = schema.clone();
    let mut queue = Vec::new();
    rewrite_refs(&mut schema, file, &mut queue)?;
    let mut added = Map::new();
    let mut seen = BTreeSet::new();
    while let Some(target) = queue.pop() {
        if !seen.insert(target.clone()) {
            continue;
        }
        let name = target.component();
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            return None;
        }
        let mut value = target.schema(catalog)?;
        rewrite_refs(&mut value, target.file(), &mut queue)?;
        if components.get(&name).is_some_and(|existing| *existing != value) {
            return None;
        }
        added.insert(name, value);
    }
    components.extend(added);
    Some(schema)
}

/// Rewrites every `$ref` of the schema `value` (found in the file at `file`) to point inside the
/// document, and queues the components they point at.
fn rewrite_refs(value: &mut Value, file: &str, targets: &mut Vec<Target>) -> Option<()> {
    let Value::Object(map) = value else {
        return Some(());
    };
    if ["$id", "$anchor", "$dynamicRef", "$dynamicAnchor"].iter().any(|k| map.contains_key(*k)) {
        return None;
    }
    for (key, child) in map.iter_mut() {
        match key.as_str() {
            "$ref" => {
                let Value::String(reference) = child else { return None };
                let (target, pointer) = target(file, reference)?;
                *reference = format!("#/components/schemas/{}{pointer}", target.component());
                targets.push(target);
            }
            // Instances, not schemas: a `$ref` in there is data.
            "enum" | "const" | "default" | "examples" => {}
            // Maps from names to schemas.
            "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas" => {
                if let Value::Object(named) = child {
                    for schema in named.values_mut() {
                        rewrite_refs(schema, file, targets)?;
                    }
                }
            }
            _ => match child {
                Value::Array(items) => {
                    for item in items {
                        rewrite_refs(item, file, targets)?;
                    }
                }
                other => rewrite_refs(other, file, targets)?,
            },
        }
    }
    Some(())
}

/// The file and JSON Pointer fragment a `$ref` of `file` names: a path relative to the file's
/// directory that stays inside the schemas directory, and a pointer or nothing.
fn resolve(file: &str, reference: &str) -> Option<(String, String)> {
    let (uri, fragment) = reference.split_once('#').unwrap_or((reference, ""));
    if !(fragment.is_empty() || fragment.starts_with('/')) || fragment.contains('%') {
        return None;
    }
    if uri.is_empty() {
        return Some((file.to_owned(), fragment.to_owned()));
    }
    if uri.starts_with('/') || uri.contains([':', '?', '%', '\\']) {
        return None;
    }
    let mut parts: Vec<&str> = file.split('/').collect();
    parts.pop();
    for segment in uri.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    Some((parts.join("/"), fragment.to_owned()))
}

/// Removes the components nothing in the document leads to (through `$ref`s from the paths, or
/// from components that are themselves in use): a caller without request agreements has no use
/// for the upstream answers, and one whose schemas use no address no use for its definition.
/// Security schemes are named, not referenced, and stay.
pub(super) fn drop_unused_components(document: &mut Value) {
    const SECTIONS: [&str; 6] = ["schemas", "responses", "parameters", "headers", "examples", "requestBodies"];
    /// The (section, name) of every component a `$ref` under `value` points into.
    fn referenced(value: &Value, out: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref")
                    && let Some(rest) = reference.strip_prefix("#/components/")
                {
                    let mut parts = rest.splitn(3, '/');
                    if let (Some(section), Some(name)) = (parts.next(), parts.next()) {
                        out.push((section.to_owned(), name.replace("~1", "/").replace("~0", "~")));
                    }
                }
                map.values().for_each(|v| referenced(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| referenced(v, out)),
            _ => {}
        }
    }
    let mut queue = Vec::new();
    if let Value::Object(top) = &*document {
        for (_, value) in top.iter().filter(|(key, _)| *key != "components") {
            referenced(value, &mut queue);
        }
    }
    let mut used = BTreeSet::new();
    while let Some((section, name)) = queue.pop() {
        if let Some(component) =
            document.pointer(&format!("/components/{section}/{}", crate::json::pointer_token(&name)))
            && used.insert((section, name))
        {
            referenced(component, &mut queue);
        }
    }
    for section in SECTIONS {
        if let Some(Value::Object(components)) = document.pointer_mut(&format!("/components/{section}")) {
            components.retain(|name, _| used.contains(&(section.to_owned(), name.clone())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_resolve_inside_the_schemas_directory_only() {
        let r = |reference| resolve("birth-registration/1.1.json", reference);
        assert_eq!(
            r("../common/definitions.json#/$defs/address"),
            Some(("common/definitions.json".to_owned(), "/$defs/address".to_owned()))
        );
        assert_eq!(r("#/$defs/x"), Some(("birth-registration/1.1.json".to_owned(), "/$defs/x".to_owned())));
        assert_eq!(r("./1.0.json"), Some(("birth-registration/1.0.json".to_owned(), String::new())));
        assert_eq!(r("../../etc/passwd"), None);
        assert_eq!(r("https://example.org/s.json"), None);
        assert_eq!(r("#anchor"), None);
        assert_eq!(r("/abs.json"), None);
    }

    #[test]
    fn references_are_rewritten_in_schemas_and_left_alone_in_instances() {
        let mut schema = json!({
            "properties": {
                "a": {"$ref": "../common/definitions.json#/$defs/address"},
                "b": {"$ref": "../common/definitions.json#/$defs/address/properties/street"},
                "enum": {"items": [{"$ref": "#/$defs/x"}]},
                "c": {"$ref": "./1.1.json#/properties/c"}
            },
            "const": {"$ref": "not a reference"},
            "$defs": {"x": {"type": "string"}}
        });
        let mut targets = Vec::new();
        rewrite_refs(&mut schema, "t/1.0.json", &mut targets).unwrap();
        assert_eq!(schema["properties"]["a"]["$ref"], "#/components/schemas/common.definitions.address");
        assert_eq!(
            schema["properties"]["b"]["$ref"],
            "#/components/schemas/common.definitions.address/properties/street"
        );
        assert_eq!(schema["properties"]["enum"]["items"][0]["$ref"], "#/components/schemas/t.1.0.x");
        assert_eq!(schema["properties"]["c"]["$ref"], "#/components/schemas/t.1.1/properties/c");
        assert_eq!(schema["const"]["$ref"], "not a reference");
        let definition = |file: &str, name: &str| Target::Definition(file.to_owned(), name.to_owned());
        targets.sort();
        assert_eq!(
            targets,
            [
                Target::File("t/1.1.json".to_owned()),
                definition("common/definitions.json", "address"),
                definition("common/definitions.json", "address"),
                definition("t/1.0.json", "x"),
            ]
        );
        assert!(rewrite_refs(&mut json!({"$id": "x", "type": "string"}), "t/1.0.json", &mut targets).is_none());
        // `$defs` itself, or an entry without a name, is not a component.
        assert!(rewrite_refs(&mut json!({"$ref": "#/$defs"}), "t/1.0.json", &mut targets).is_none());
        assert!(rewrite_refs(&mut json!({"$ref": "#/$defs/"}), "t/1.0.json", &mut targets).is_none());
    }

    #[test]
    fn components_nothing_leads_to_are_dropped() {
        let mut document = json!({
            "paths": {"/a": {"get": {"responses": {"200": {"$ref": "#/components/responses/Used"}}}}},
            "components": {
                "responses": {
                    "Used": {"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/A/properties/x"}}}},
                    "Unused": {"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/B"}}}}
                },
                "schemas": {"A": {"properties": {"x": {"$ref": "#/components/schemas/C~1D"}}}, "B": {}, "C/D": {}},
                "securitySchemes": {"key": {"type": "http", "scheme": "bearer"}}
            }
        });
        drop_unused_components(&mut document);
        let names = |section: &str| -> Vec<String> {
            document["components"][section].as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(names("responses"), ["Used"]);
        assert_eq!(names("schemas"), ["A", "C/D"]);
        assert_eq!(names("securitySchemes"), ["key"]);
    }
}
