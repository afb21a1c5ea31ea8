//! The schema catalog: every record type's JSON Schemas, compiled once at load.
//!
//! Layout on disk: `schemas/<record-type>/<MAJOR.MINOR>.json`, with the answer of a request
//! agreement in `<MAJOR.MINOR>.response.json`. Every `.json` file under the directory is
//! registered under its `file://` URI, so a relative `$ref` (for example
//! `../common/definitions.json#/$defs/address`) resolves to a file of the catalog and nothing
//! else: the validator is built offline and never fetches.
//!
//! # Numbers are validated as written
//!
//! The validator compares doubles and 64-bit integers, while a partner writes decimals:
//! `9.0000000000000000001` parses to the double 9 and would pass `"maximum": 9`. So a body is
//! parsed with [`crate::json::parse_exact`], and every number literal the parsed value does not
//! carry exactly is refused as a [`NUMBER_PRECISION`] violation at its pointer. The rule is
//! [`crate::json::InexactNumber`]'s: a 64-bit integer, or a double of which the literal is a shortest
//! round-trip form (and which, between 2^53 and 2^64, is that value itself). serde_json parses
//! with `float_roundtrip`, so that double is the correctly rounded one, and whatever a partner's
//! system prints from a double is accepted; `0.1` is carried exactly in this sense. The schema
//! files are held to the same rule when they load, so every limit is carried exactly too.
//!
//! Then the validator's verdict is the verdict on the written decimals:
//!
//! - two doubles compare as their shortest forms do, since distinct doubles have distinct
//!   shortest forms in the same order (the one exception: a double half-way between two
//!   shortest forms, such as `...890.25` for `-1676939070918890.2` and `.3`, possible only
//!   past 2^49 with a fraction, stands for both, so a limit written as one of them and an
//!   instance written as the other compare equal);
//! - a double and a 64-bit integer (compared exactly by the crate) compare as the written
//!   values do: below 2^53 every integer is itself a double, so none lies between a double and
//!   its shortest form, and from 2^53 to 2^64 an accepted double is its written value;
//! - `type: integer` (a double with no fraction) agrees, since a double below 2^53 is whole
//!   exactly when its shortest form is, and every double above is whole;
//! - the crate reads `multipleOf` on the shortest forms of both operands, the written ones.
//!
//! What the validator says about a number not carried exactly is about a rounded stand-in
//! (`9.0000000000000000001` passes `maximum: 9`, `9007199254740993.0` is not a multiple of 3),
//! so it is dropped: that number's one violation is `numberPrecision`. `1.0` is an integer, as
//! JSON Schema 2020-12 says; `-0` is zero; `1e400` is valid JSON, so it is a `numberPrecision`
//! violation (422, with the rest of the record still validated), not a 400.
//!
//! Why this and not the alternatives (issue 18):
//!
//! - the `jsonschema` crate's `arbitrary-precision` feature cannot be resolved at 0.61.2 (it
//!   names `jsonschema-macros` 0.61.2, which the registry does not have). It would turn on
//!   `serde_json/arbitrary_precision` for the whole build; built with that alone, the canonical
//!   bytes of ordinary numbers change (`1e2` from `100.0` to `1e+2`, `2.50` from `2.5` to
//!   `2.50`), a partner's object `{"$serde_json::private::Number": "9"}` parses as the number
//!   9, and the crate without its own feature still compares `as_f64()`. RFC 8785 canonical
//!   bodies carry doubles anyway: a recipient could not be sent a number a double does not hold.
//! - checking each literal against the keywords that apply at its location would re-implement
//!   the evaluation of `$ref`, `allOf`, `if` and the rest.
//! - refusing every number a double does not hold exactly would refuse `0.1`.
//!
//! Cost (criterion, `cargo bench --bench hot_paths -- validation`, 1.2 KB birth record, against
//! the path before: `parse_strict` then `validate`): none measurable when every number is an
//! integer, as the text is read again only when the parser made a double (7.2 µs against
//! 7.5 µs); 1.4 µs when it did (8.2 µs against 6.9 µs with `"multiple_birth_order": 2.0`);
//! 12.0 µs against 11.3 µs for a record with 8 violations. Two shared cores, so ±5%.
//!
//! # Bounded answers
//!
//! [`CompiledSchema::check_body`] lists at most [`LISTED_VIOLATIONS`] violations and counts the
//! rest without building their pointers or messages, so a 110 KB body with 10,000 unknown keys
//! gets a 422 of about 11 KB. The validator itself still builds every error it finds (its API
//! has no limit), which the body limit bounds. Every violation, listed or not, is counted by
//! keyword for `passerelle_validation_violations_total`.
//!
//! **Invariant:** validation does no I/O and never reports the instance's values, only where a
//! value is wrong and which keyword it breaks.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use jsonschema::{Draft, Validator};
use serde_json::Value;

use crate::json::JsonError;
use crate::pointer::{FieldPointer, Selection};
use crate::problem::Problem;

mod producible;
pub mod subjects;
pub mod translation;
pub mod view;
mod violations;

use producible::producible;
use violations::push_violation;
pub use violations::{LISTED_VIOLATIONS, NUMBER_PRECISION, Violation, ViolationDetail, Violations};

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
    /// The fields it marks as subject identifiers ([`subjects`]), as written and as a tree.
    subject_fields: Vec<FieldPointer>,
    subjects: Selection,
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

/// A body read as the partner API reads it: the parsed value, and what is wrong with it.
#[derive(Debug)]
pub struct CheckedBody {
    pub value: Value,
    pub violations: Violations,
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
    /// Declared translations between versions, by record type, source and target version.
    translations: BTreeMap<(Arc<str>, Version, Version), translation::Translation>,
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

fn collect_files(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, extension, out)?;
        } else if path.extension().is_some_and(|x| x == extension) {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads every translation file (`<type>/<from>-to-<to>.toml`) and checks it against the two
/// versions' schemas; a file named otherwise, or for a version that does not exist, is a problem.
fn load_translations(
    dir: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
    types: &BTreeMap<Arc<str>, RecordType>,
    report: &mut impl FnMut(&Path, String),
) -> BTreeMap<(Arc<str>, Version, Version), translation::Translation> {
    let mut files = Vec::new();
    if collect_files(dir, "toml", &mut files).is_err() {
        return BTreeMap::new();
    }
    files.sort();
    let mut translations = BTreeMap::new();
    for file in files {
        let (Some(type_name), Some(file_name)) = (
            file.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()),
            file.file_name().and_then(|n| n.to_str()),
        ) else {
            continue;
        };
        let Some((from, to)) = translation::versions_of(file_name) else {
            report(&file, "translation files are named FROM-to-TO.toml, such as 1.1-to-1.0.toml".to_owned());
            continue;
        };
        let Some(t) = types.get(type_name) else {
            report(&file, format!("`{type_name}` is not a record type of the schemas directory"));
            continue;
        };
        let (Some(source), Some(target)) = (t.version(from), t.version(to)) else {
            report(&file, format!("`{type_name}` has no schema version {from} or no version {to}"));
            continue;
        };
        let text = match read(&file) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                report(&file, format!("cannot be read: {e}"));
                continue;
            }
        };
        match translation::Translation::parse(
            file.clone(),
            from,
            to,
            &text,
            source.dereferenced(),
            target.dereferenced(),
        ) {
            Ok(parsed) => {
                translations.insert((t.name.clone(), from, to), parsed);
            }
            Err(problems) => {
                for message in problems {
                    report(&file, message);
                }
            }
        }
    }
    translations
}

impl SchemaCatalog {
    /// Loads and compiles every schema under `dir`, or reports every problem found.
    pub fn load(dir: &Path) -> Result<Self, Vec<Problem>> {
        let (catalog, problems) = Self::load_partial(dir, &|file| std::fs::read(file));
        if problems.is_empty() { Ok(catalog) } else { Err(problems) }
    }

    /// Loads what compiles and reports the rest, so one broken file does not hide the others.
    /// Files are listed from `dir` and read with `read` (the configuration loader keeps what it
    /// read for its fingerprint).
    pub fn load_partial(dir: &Path, read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>) -> (Self, Vec<Problem>) {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mut problems = Vec::new();
        let mut report =
            |file: &Path, message: String| problems.push(Problem { file: file.to_path_buf(), message, fix: None });
        let mut files = Vec::new();
        if let Err(e) = collect_files(&dir, "json", &mut files) {
            report(&dir, format!("the schemas directory cannot be read: {e}"));
            return (SchemaCatalog::default(), problems);
        }
        files.sort();

        let mut documents: BTreeMap<PathBuf, Value> = BTreeMap::new();
        for file in &files {
            // A limit the validator would hold as a rounded stand-in would make its verdicts
            // inexact: schema numbers follow the rule record numbers do.
            let mut inexact = Vec::new();
            match read(file).map_err(|e| e.to_string()).and_then(|bytes| {
                crate::json::parse_exact(&bytes, 128, |_, at| inexact.push(at.to_string())).map_err(|e| e.to_string())
            }) {
                Ok(_) if !inexact.is_empty() => {
                    for at in inexact {
                        report(
                            file,
                            format!(
                                "has a number at `{at}` that a double (IEEE 754) does not hold exactly: write it as a double prints it"
                            ),
                        );
                    }
                }
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
            // `/v1/records/{x}` is a record id when `x` is a UUID, a record type otherwise.
            if uuid::Uuid::try_parse(type_name).is_ok() {
                if broken.insert(type_name.to_string()) {
                    report(path, format!("the record type `{type_name}` is named like a record id (a UUID)"));
                }
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
        let translations = load_translations(&dir, read, &types, &mut report);
        (SchemaCatalog { types, documents: shared_documents, broken, translations }, problems)
    }

    /// Every declared translation: record type, and the translation.
    pub fn translations(&self) -> impl Iterator<Item = (&str, &translation::Translation)> {
        self.translations.iter().map(|((t, _, _), translation)| (&**t, translation))
    }

    /// The declared translation of `record_type` from version `from` to `to`, if there is one.
    pub fn translation(&self, record_type: &str, from: Version, to: Version) -> Option<&translation::Translation> {
        self.translations.get(&(Arc::from(record_type), from, to))
    }

    /// Every schema file in the catalog, in a stable order.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self
            .types
            .values()
            .flat_map(|t| t.versions.values())
            .flat_map(|v| std::iter::once(v.request.file.clone()).chain(v.response.as_ref().map(|r| r.file.clone())))
            .chain(self.translations.values().map(|t| t.file.clone()))
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
    let subject_fields = subjects::subjects(&dereferenced).map_err(|problems| problems.join("; "))?;
    Ok(CompiledSchema {
        file: path.to_path_buf(),
        path: relative.to_owned(),
        document: Arc::new(document.clone()),
        dereferenced,
        validator,
        subjects: Selection::of(&subject_fields),
        subject_fields,
    })
}

impl CompiledSchema {
    /// Checks `instance`, returning every violation (empty when valid). The value's numbers
    /// are taken as they are: [`CompiledSchema::check_body`] also checks them as written.
    pub fn validate(&self, instance: &Value) -> Vec<Violation> {
        let mut violations = Violations::with_limit(usize::MAX);
        self.collect(instance, &HashSet::new(), &mut violations);
        violations.into_listed()
    }

    /// Parses `body` strictly (see [`crate::json::parse_exact`]) and checks it as the partner
    /// API does: every number as written, then the schema, listing at most
    /// [`LISTED_VIOLATIONS`] violations and counting the rest.
    pub fn check_body(&self, body: &[u8], max_depth: usize) -> Result<CheckedBody, JsonError> {
        let mut violations = Violations::with_limit(LISTED_VIOLATIONS);
        // Every inexact number's pointer, listed or not, so that what the validator says about
        // its stand-in is dropped even past the list's end.
        let mut inexact_at = HashSet::new();
        let value = crate::json::parse_exact(body, max_depth, |why, at| {
            let pointer = at.to_string();
            inexact_at.insert(pointer.clone());
            violations.push(NUMBER_PRECISION, || Violation {
                pointer,
                keyword: NUMBER_PRECISION,
                detail: ViolationDetail::NumberPrecision(why),
            });
        })?;
        self.collect(&value, &inexact_at, &mut violations);
        Ok(CheckedBody { value, violations })
    }

    /// Adds the validator's findings about `instance`, except those about a value at one of
    /// the `skipped` pointers.
    fn collect(&self, instance: &Value, skipped: &HashSet<String>, out: &mut Violations) {
        if self.validator.is_valid(instance) {
            return;
        }
        for error in self.validator.iter_errors(instance) {
            let pointer = error.instance_path().as_str();
            if skipped.contains(pointer) {
                continue;
            }
            push_violation(out, pointer, error.kind());
        }
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

    /// The fields this schema marks as subject identifiers (`x-passerelle-subject`).
    pub fn subject_fields(&self) -> &[FieldPointer] {
        &self.subject_fields
    }

    /// What `record` holds at the subject identifier fields: the values the access record keys
    /// its disclosures by (once digested), each field once per value it has.
    pub fn subject_values<'v>(&self, record: &'v Value) -> Vec<&'v Value> {
        self.subjects.values(record)
    }
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
        let mut found: Vec<(String, String)> =
            schema.validate(&value).into_iter().map(|v| (v.pointer, v.keyword.to_owned())).collect();
        // The same list the integration tests hold the partner API's 422 to.
        let expected: Vec<Value> =
            serde_json::from_slice(&std::fs::read(dir.join("birth-registration-1.1-invalid.expected.json")).unwrap())
                .unwrap();
        let mut expected: Vec<(String, String)> = expected
            .iter()
            .map(|v| (v["pointer"].as_str().unwrap().to_owned(), v["keyword"].as_str().unwrap().to_owned()))
            .collect();
        found.sort();
        expected.sort();
        assert_eq!(found, expected);
        assert_eq!(found.len(), 8);
    }

    #[test]
    fn a_limit_a_double_does_not_hold_stops_the_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("measure")).unwrap();
        std::fs::write(
            dir.path().join("measure/1.0.json"),
            r#"{"properties": {"count": {"maximum": 9.0000000000000000001}, "ratio": {"minimum": 0.1}}}"#,
        )
        .unwrap();
        let problems = SchemaCatalog::load(dir.path()).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].message.contains("`/properties/count/maximum`"), "{}", problems[0].message);
    }

    #[test]
    fn past_the_listed_violations_the_rest_are_only_counted() {
        let catalog = catalog();
        let schema = catalog.record_type("birth-registration").unwrap().version("1.1".parse().unwrap()).unwrap();
        let unknown: Vec<String> = (0..250).map(|i| format!("\"x{i}\": 1e-400")).collect();
        let body = format!("{{{}}}", unknown.join(","));
        let checked = schema.check_body(body.as_bytes(), 64).unwrap();
        // 250 numbers held by stand-ins, the 250 unknown keys they sit under (a finding about
        // the key, not the number, so it stays) and 4 missing fields; the numbers come first.
        assert_eq!(checked.violations.listed().len(), LISTED_VIOLATIONS);
        assert!(checked.violations.listed().iter().all(|v| v.keyword == NUMBER_PRECISION));
        assert_eq!(checked.violations.total(), 250 + 250 + 4);
        let all = schema.validate(&checked.value);
        assert_eq!(all.len(), 250 + 4);
    }

    #[test]
    fn the_shipped_schemas_mark_their_subject_identifiers() {
        let catalog = catalog();
        for (ty, v, expected) in [
            ("birth-registration", "1.0", &["/registration_number"][..]),
            ("birth-registration", "1.1", &["/parents/*/sin", "/registration_number"]),
            ("address-change", "1.0", &["/person/health_card_number", "/person/sin"]),
            ("sin-validation", "1.0", &["/sin"]),
        ] {
            let schema = catalog.record_type(ty).unwrap().version(v.parse().unwrap()).unwrap();
            let mut found: Vec<String> = schema.subject_fields().iter().map(ToString::to_string).collect();
            found.sort();
            assert_eq!(found, expected, "{ty} {v}");
        }
        let schema = catalog.record_type("birth-registration").unwrap().version("1.1".parse().unwrap()).unwrap();
        let mut record: Value = serde_json::from_slice(
            &std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/records/birth-registration-1.1.json"),
            )
            .unwrap(),
        )
        .unwrap();
        record["parents"][1]["sin"] = Value::from("046454286");
        let values: Vec<&Value> = schema.subject_values(&record);
        assert_eq!(values, [&Value::from("046454286"), &Value::from("QC-2026-018355")]);
    }

    #[test]
    fn a_subject_mark_that_cannot_work_stops_the_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("common")).unwrap();
        std::fs::create_dir_all(dir.path().join("person")).unwrap();
        std::fs::write(
            dir.path().join("common/definitions.json"),
            r#"{"$defs": {"sin": {"type": "string", "x-passerelle-subject": true}}}"#,
        )
        .unwrap();
        // A mark reached through a `$ref` counts where the reference is used.
        std::fs::write(
            dir.path().join("person/1.0.json"),
            r#"{"properties": {"sin": {"$ref": "../common/definitions.json#/$defs/sin"}}}"#,
        )
        .unwrap();
        let catalog = SchemaCatalog::load(dir.path()).unwrap();
        let schema = catalog.record_type("person").unwrap().version("1.0".parse().unwrap()).unwrap();
        assert_eq!(schema.subject_fields().iter().map(ToString::to_string).collect::<Vec<_>>(), ["/sin"]);

        std::fs::write(
            dir.path().join("person/1.1.json"),
            r#"{"properties": {"names": {"type": "array", "x-passerelle-subject": true}}}"#,
        )
        .unwrap();
        let problems = SchemaCatalog::load(dir.path()).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].file.ends_with("person/1.1.json"));
        assert!(problems[0].message.contains("`/names`") && problems[0].message.contains("not an object or an array"));
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
