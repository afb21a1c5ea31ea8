//! The schema catalog: every record type's JSON Schemas, compiled once at load.
//!
//! Layout on disk: `schemas/<record-type>/<MAJOR.MINOR>.json`, with the answer of a request
//! agreement in `<MAJOR.MINOR>.response.json`. Every `.json` file under the directory is
//! registered under its `file://` URI, so a relative `$ref` (for example
//! `../common/definitions.json#/$defs/address`) resolves to a file of the catalog and nothing
//! else: the validator is built offline and never fetches.
//!
//! **Invariant:** validation does no I/O and never reports the instance's values, only where a
//! value is wrong and which keyword it breaks.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{Draft, Validator};
use serde_json::Value;

use crate::config::Problem;
use crate::policy::{FieldPointer, Segment};

/// A schema version, `MAJOR.MINOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
}

/// Why a text is not a [`Version`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionError {
    /// Not `MAJOR.MINOR` in digits without leading zeros (`01.1` is not another spelling of `1.1`).
    Syntax,
    /// Well formed, but a number is too large to be a version of any schema.
    OutOfRange,
}

impl FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, VersionError> {
        let (major, minor) = s.split_once('.').ok_or(VersionError::Syntax)?;
        let number = |t: &str| -> Result<u16, VersionError> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) || (t.len() > 1 && t.starts_with('0')) {
                return Err(VersionError::Syntax);
            }
            t.parse().map_err(|_| VersionError::OutOfRange)
        };
        let (major, minor) = (number(major), number(minor));
        Ok(Version { major: major?, minor: minor? })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One compiled schema document.
pub struct CompiledSchema {
    /// The file it came from.
    pub file: PathBuf,
    /// The file's path inside the schemas directory, `/`-separated (`birth-registration/1.1.json`).
    pub path: String,
    /// The document as written, served to partners.
    pub document: Arc<Value>,
    /// The document with every `$ref` inlined, walked to check field pointers.
    dereferenced: Value,
    validator: Validator,
}

impl fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledSchema").field("file", &self.file).finish_non_exhaustive()
    }
}

/// The request schema of one version and, for request/response types, its answer's schema.
#[derive(Debug)]
pub struct SchemaVersion {
    pub version: Version,
    pub request: CompiledSchema,
    pub response: Option<CompiledSchema>,
}

impl std::ops::Deref for SchemaVersion {
    type Target = CompiledSchema;
    fn deref(&self) -> &CompiledSchema {
        &self.request
    }
}

/// Every version of one record type.
#[derive(Debug)]
pub struct RecordType {
    pub name: Arc<str>,
    pub versions: BTreeMap<Version, SchemaVersion>,
}

impl RecordType {
    pub fn version(&self, version: Version) -> Option<&SchemaVersion> {
        self.versions.get(&version)
    }
}

/// What a violation breaks, with the schema's limits (never the instance's value).
#[derive(Debug, Clone, PartialEq)]
pub enum ViolationDetail {
    Required { property: String },
    Type { expected: String },
    MinLength(u64),
    MaxLength(u64),
    Pattern,
    Format(String),
    Enum(Vec<String>),
    Const,
    Minimum(String),
    Maximum(String),
    ExclusiveMinimum(String),
    ExclusiveMaximum(String),
    MultipleOf(String),
    MinItems(u64),
    MaxItems(u64),
    UniqueItems,
    MinProperties(u64),
    MaxProperties(u64),
    AdditionalProperty,
    Combination,
    Other,
}

/// One place where a record breaks its schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// JSON Pointer to the offending value (for `required`, to the missing property).
    pub pointer: String,
    /// The JSON Schema keyword that failed.
    pub keyword: &'static str,
    pub detail: ViolationDetail,
}

/// All compiled schemas, by record type.
#[derive(Debug, Default)]
pub struct SchemaCatalog {
    types: BTreeMap<Arc<str>, RecordType>,
    /// Every document of the directory as written (record schemas and shared definitions), by
    /// its `/`-separated path inside the directory: what a `$ref` between files points at.
    documents: BTreeMap<String, Arc<Value>>,
    /// Record types with a file that did not load; their problems are reported once, by the
    /// catalog, and agreements naming them do not repeat it.
    broken: std::collections::BTreeSet<String>,
}

fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file://");
    for part in path.to_string_lossy().split('/') {
        if !uri.ends_with('/') {
            uri.push('/');
        }
        for b in part.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                uri.push(b as char);
            } else {
                uri.push_str(&format!("%{b:02X}"));
            }
        }
    }
    uri
}

fn collect_json_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_json_files(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "json") {
            out.push(path);
        }
    }
    Ok(())
}

impl SchemaCatalog {
    /// Loads and compiles every schema under `dir`, or reports every problem found.
    pub fn load(dir: &Path) -> Result<Self, Vec<Problem>> {
        let (catalog, problems) = Self::load_partial(dir);
        if problems.is_empty() { Ok(catalog) } else { Err(problems) }
    }

    /// Loads what compiles and reports the rest, so one broken file does not hide the others.
    pub fn load_partial(dir: &Path) -> (Self, Vec<Problem>) {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mut problems = Vec::new();
        let mut report =
            |file: &Path, message: String| problems.push(Problem { file: file.to_path_buf(), message, fix: None });
        let mut files = Vec::new();
        if let Err(e) = collect_json_files(&dir, &mut files) {
            report(&dir, format!("the schemas directory cannot be read: {e}"));
            return (SchemaCatalog::default(), problems);
        }
        files.sort();

        let mut documents: BTreeMap<PathBuf, Value> = BTreeMap::new();
        for file in &files {
            match std::fs::read(file)
                .map_err(|e| e.to_string())
                .and_then(|bytes| crate::json::parse_strict(&bytes, 128).map_err(|e| e.to_string()))
            {
                Ok(value) => {
                    documents.insert(file.clone(), value);
                }
                Err(e) => report(file, format!("is not a JSON document: {e}")),
            }
        }
        let registry = jsonschema::Registry::new()
            .draft(Draft::Draft202012)
            .extend(documents.iter().map(|(path, value)| (file_uri(path), value)))
            .and_then(|b| b.prepare());
        let registry = match registry {
            Ok(r) => r,
            Err(e) => {
                report(&dir, format!("the schemas cannot be indexed: {e}"));
                return (SchemaCatalog::default(), problems);
            }
        };
        let mut broken = std::collections::BTreeSet::new();
        let relative_path = |path: &Path| -> Option<String> {
            let parts: Vec<&str> = path.strip_prefix(&dir).ok()?.iter().map(|p| p.to_str()).collect::<Option<_>>()?;
            Some(parts.join("/"))
        };
        let shared_documents: BTreeMap<String, Arc<Value>> = documents
            .iter()
            .filter_map(|(path, value)| Some((relative_path(path)?, Arc::new(value.clone()))))
            .collect();

        let mut types: BTreeMap<Arc<str>, RecordType> = BTreeMap::new();
        for (path, document) in &documents {
            let Ok(relative) = path.strip_prefix(&dir) else {
                continue;
            };
            let parts: Vec<&str> = relative.iter().filter_map(|p| p.to_str()).collect();
            // Shared definitions live in `common/` (or any directory not shaped like a type).
            let [type_name, file_name] = parts.as_slice() else {
                continue;
            };
            if *type_name == "common" {
                continue;
            }
            let (stem, is_response) = match file_name.strip_suffix(".response.json") {
                Some(stem) => (stem, true),
                None => (file_name.trim_end_matches(".json"), false),
            };
            let Ok(version) = stem.parse::<Version>() else {
                report(path, "schema files are named MAJOR.MINOR.json or MAJOR.MINOR.response.json".to_owned());
                continue;
            };
            let compiled = match compile(path, &parts.join("/"), document, &registry) {
                Ok(c) => c,
                Err(message) => {
                    report(path, message);
                    broken.insert(type_name.to_string());
                    continue;
                }
            };
            let record_type = types
                .entry(Arc::from(*type_name))
                .or_insert_with(|| RecordType { name: Arc::from(*type_name), versions: BTreeMap::new() });
            if is_response {
                match record_type.versions.get_mut(&version) {
                    Some(v) => v.response = Some(compiled),
                    None => {
                        report(path, format!("a response schema needs the request schema {version}.json beside it"))
                    }
                }
            } else {
                record_type.versions.insert(version, SchemaVersion { version, request: compiled, response: None });
            }
        }
        (SchemaCatalog { types, documents: shared_documents, broken }, problems)
    }

    /// Every schema file in the catalog, in a stable order.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self
            .types
            .values()
            .flat_map(|t| t.versions.values())
            .flat_map(|v| std::iter::once(v.request.file.clone()).chain(v.response.as_ref().map(|r| r.file.clone())))
            .collect();
        files.sort();
        files
    }

    /// Whether a file of `record_type` failed to load (its problem is already reported).
    pub fn is_broken(&self, record_type: &str) -> bool {
        self.broken.contains(record_type)
    }

    pub fn record_type(&self, name: &str) -> Option<&RecordType> {
        self.types.get(name)
    }

    pub fn types(&self) -> impl Iterator<Item = &RecordType> {
        self.types.values()
    }

    /// A document of the directory as written, by its `/`-separated path inside it (the
    /// target of a `$ref` such as `../common/definitions.json`).
    pub fn document(&self, path: &str) -> Option<&Arc<Value>> {
        self.documents.get(path)
    }
}

fn compile(
    path: &Path,
    relative: &str,
    document: &Value,
    registry: &jsonschema::Registry<'_>,
) -> Result<CompiledSchema, String> {
    let base = file_uri(path);
    if document.get("$schema").and_then(Value::as_str).is_some_and(|s| !s.contains("2020-12")) {
        return Err("declares a `$schema` other than draft 2020-12".to_owned());
    }
    let options = || {
        jsonschema::options()
            .with_draft(Draft::Draft202012)
            .with_base_uri(base.clone())
            .with_registry(registry)
            .should_validate_formats(true)
            .offline()
    };
    let validator = options().build(document).map_err(|e| format!("does not compile: {e}"))?;
    let dereferenced = options()
        .dereference(document)
        .map_err(|e| format!("has a `$ref` that cannot be resolved inside the schemas directory: {e}"))?;
    Ok(CompiledSchema {
        file: path.to_path_buf(),
        path: relative.to_owned(),
        document: Arc::new(document.clone()),
        dereferenced,
        validator,
    })
}

impl CompiledSchema {
    /// Checks `instance`, returning every violation (empty when valid).
    pub fn validate(&self, instance: &Value) -> Vec<Violation> {
        if self.validator.is_valid(instance) {
            return Vec::new();
        }
        let mut violations = Vec::new();
        for error in self.validator.iter_errors(instance) {
            let pointer = error.instance_path().as_str().to_owned();
            push_violation(&mut violations, pointer, error.kind());
        }
        violations
    }

    /// Whether some instance valid under this schema can hold a value at `field`: every segment
    /// must be a declared property (or allowed by `patternProperties` or an explicit
    /// `additionalProperties` schema), and `*` needs `items` or `prefixItems`.
    pub fn can_produce(&self, field: &FieldPointer) -> bool {
        producible(&self.dereferenced, field.segments())
    }

    /// The document with every `$ref` inlined: self-contained, as the validator sees it.
    pub fn dereferenced(&self) -> &Value {
        &self.dereferenced
    }
}

fn push_violation(out: &mut Vec<Violation>, pointer: String, kind: &ValidationErrorKind) {
    use ValidationErrorKind as K;
    let number = |v: &Value| v.to_string();
    let detail = match kind {
        K::Required { property } => {
            let name = property.as_str().unwrap_or_default().to_owned();
            let pointer = format!("{pointer}/{}", name.replace('~', "~0").replace('/', "~1"));
            out.push(Violation { pointer, keyword: "required", detail: ViolationDetail::Required { property: name } });
            return;
        }
        K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
            let keyword = if matches!(kind, K::AdditionalProperties { .. }) {
                "additionalProperties"
            } else {
                "unevaluatedProperties"
            };
            for name in unexpected {
                let pointer = format!("{pointer}/{}", name.replace('~', "~0").replace('/', "~1"));
                out.push(Violation { pointer, keyword, detail: ViolationDetail::AdditionalProperty });
            }
            return;
        }
        K::Type { kind } => ViolationDetail::Type {
            expected: match kind {
                TypeKind::Single(t) => t.to_string(),
                TypeKind::Multiple(set) => set.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", "),
            },
        },
        K::MinLength { limit } => ViolationDetail::MinLength(*limit),
        K::MaxLength { limit } => ViolationDetail::MaxLength(*limit),
        K::Pattern { .. } => ViolationDetail::Pattern,
        K::Format { format } => ViolationDetail::Format(format.clone()),
        K::Enum { options } => ViolationDetail::Enum(
            options
                .as_array()
                .map(|a| {
                    a.iter().take(20).map(|o| o.as_str().map(str::to_owned).unwrap_or_else(|| o.to_string())).collect()
                })
                .unwrap_or_default(),
        ),
        K::Constant { .. } => ViolationDetail::Const,
        K::Minimum { limit } => ViolationDetail::Minimum(number(limit)),
        K::Maximum { limit } => ViolationDetail::Maximum(number(limit)),
        K::ExclusiveMinimum { limit } => ViolationDetail::ExclusiveMinimum(number(limit)),
        K::ExclusiveMaximum { limit } => ViolationDetail::ExclusiveMaximum(number(limit)),
        K::MultipleOf { multiple_of } => ViolationDetail::MultipleOf(multiple_of.to_string()),
        K::MinItems { limit } => ViolationDetail::MinItems(*limit),
        K::MaxItems { limit } => ViolationDetail::MaxItems(*limit),
        K::UniqueItems => ViolationDetail::UniqueItems,
        K::MinProperties { limit } => ViolationDetail::MinProperties(*limit),
        K::MaxProperties { limit } => ViolationDetail::MaxProperties(*limit),
        K::AnyOf { .. } | K::OneOfNotValid { .. } | K::OneOfMultipleValid { .. } | K::Not { .. } => {
            ViolationDetail::Combination
        }
        _ => ViolationDetail::Other,
    };
    out.push(Violation { pointer, keyword: keyword_of(kind), detail });
}

fn keyword_of(kind: &ValidationErrorKind) -> &'static str {
    use ValidationErrorKind as K;
    match kind {
        K::Type { .. } => "type",
        K::MinLength { .. } => "minLength",
        K::MaxLength { .. } => "maxLength",
        K::Pattern { .. } | K::BacktrackLimitExceeded { .. } | K::RegexEngineFailure { .. } => "pattern",
        K::Format { .. } => "format",
        K::Enum { .. } => "enum",
        K::Constant { .. } => "const",
        K::Minimum { .. } => "minimum",
        K::Maximum { .. } => "maximum",
        K::ExclusiveMinimum { .. } => "exclusiveMinimum",
        K::ExclusiveMaximum { .. } => "exclusiveMaximum",
        K::MultipleOf { .. } => "multipleOf",
        K::MinItems { .. } => "minItems",
        K::MaxItems { .. } => "maxItems",
        K::UniqueItems => "uniqueItems",
        K::MinProperties { .. } => "minProperties",
        K::MaxProperties { .. } => "maxProperties",
        K::AnyOf { .. } => "anyOf",
        K::OneOfNotValid { .. } | K::OneOfMultipleValid { .. } => "oneOf",
        K::Not { .. } => "not",
        K::Contains => "contains",
        K::FalseSchema => "false",
        K::PropertyNames { .. } => "propertyNames",
        K::UnevaluatedItems { .. } => "unevaluatedItems",
        K::AdditionalItems { .. } => "additionalItems",
        K::ContentEncoding { .. } | K::FromUtf8 { .. } => "contentEncoding",
        K::ContentMediaType { .. } => "contentMediaType",
        _ => "schema",
    }
}

fn producible(schema: &Value, segments: &[Segment]) -> bool {
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
                    name.parse::<usize>().is_ok() && array_item_producible(obj, rest)
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

fn regex_matches(pattern: &str, name: &str) -> bool {
    // The catalog compiled every pattern already; compiling a throwaway validator keeps one
    // regex dialect for both.
    jsonschema::options()
        .build(&serde_json::json!({"pattern": pattern}))
        .is_ok_and(|v| v.is_valid(&Value::String(name.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> SchemaCatalog {
        SchemaCatalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")).expect("shipped schemas load")
    }

    #[test]
    fn shipped_schemas_compile_and_accept_their_examples() {
        let catalog = catalog();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/records");
        for (ty, v, file) in [
            ("birth-registration", "1.0", "birth-registration-1.0.json"),
            ("birth-registration", "1.1", "birth-registration-1.0.json"),
            ("birth-registration", "1.1", "birth-registration-1.1.json"),
            ("address-change", "1.0", "address-change-1.0.json"),
            ("sin-validation", "1.0", "sin-validation-1.0.json"),
        ] {
            let schema = catalog.record_type(ty).unwrap().version(v.parse().unwrap()).unwrap();
            let value: Value = serde_json::from_slice(&std::fs::read(dir.join(file)).unwrap()).unwrap();
            assert_eq!(schema.validate(&value), vec![], "{file} against {ty} {v}");
        }
    }

    #[test]
    fn every_violation_is_reported_with_pointer_and_keyword() {
        let catalog = catalog();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/records");
        let schema = catalog.record_type("birth-registration").unwrap().version("1.1".parse().unwrap()).unwrap();
        let value: Value =
            serde_json::from_slice(&std::fs::read(dir.join("birth-registration-1.1-invalid.json")).unwrap()).unwrap();
        let found: Vec<(String, &str)> = schema.validate(&value).into_iter().map(|v| (v.pointer, v.keyword)).collect();
        for expected in [
            ("/child/surname", "required"),
            ("/child/sex_at_birth", "enum"),
            ("/child/time_of_birth", "format"),
            ("/child/multiple_birth_order", "minimum"),
            ("/parents", "maxItems"),
            ("/parents/0/address/postal_code", "pattern"),
            ("/parents/1/email", "additionalProperties"),
            ("/parents/1/date_of_birth", "format"),
        ] {
            assert!(found.contains(&(expected.0.to_owned(), expected.1)), "missing {expected:?} in {found:?}");
        }
        assert_eq!(found.len(), 8, "{found:?}");
    }

    #[test]
    fn pointers_are_checked_against_each_version() {
        let catalog = catalog();
        let t = catalog.record_type("birth-registration").unwrap();
        let v10 = t.version("1.0".parse().unwrap()).unwrap();
        let v11 = t.version("1.1".parse().unwrap()).unwrap();
        let p = |s: &str| s.parse::<FieldPointer>().unwrap();
        assert!(v10.can_produce(&p("/parents/*/address/postal_code")));
        assert!(v10.can_produce(&p("/child/given_names")));
        assert!(!v10.can_produce(&p("/sin_application")));
        assert!(v11.can_produce(&p("/sin_application")));
        assert!(!v11.can_produce(&p("/child/nickname")));
        assert!(!v11.can_produce(&p("/child/*")));
    }
}
