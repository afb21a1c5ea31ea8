//! What a record breaks: each violation's pointer, keyword and the schema's limit (never the
//! instance's value), listed up to a limit and counted by keyword.

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

use crate::json::InexactNumber;

/// What a violation breaks, with the schema's limits (never the instance's value).
#[derive(Debug, Clone, PartialEq)]
pub enum ViolationDetail {
    Required {
        property: String,
    },
    Type {
        expected: String,
    },
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
    /// A number literal the validated value does not carry exactly.
    NumberPrecision(InexactNumber),
    /// A value a declared translation has no rule for (a value table without it, or not a
    /// string where a rule joins or splits strings).
    Untranslatable,
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

/// The keyword of a number a double does not carry exactly: not a JSON Schema keyword, but
/// the gateway's own rule (see the module docs).
pub const NUMBER_PRECISION: &str = "numberPrecision";

/// How many violations a 422 lists; the rest are counted.
pub const LISTED_VIOLATIONS: usize = 100;

/// The violations of one document: the first ones in full, up to a limit, and how many were
/// found in all.
#[derive(Debug, Clone, PartialEq)]
pub struct Violations {
    listed: Vec<Violation>,
    total: usize,
    limit: usize,
    /// Every violation (listed or not) by keyword: a fixed set of keywords, so a short list.
    by_keyword: Vec<(&'static str, usize)>,
}

impl Violations {
    pub(super) fn with_limit(limit: usize) -> Violations {
        Violations { listed: Vec::new(), total: 0, limit, by_keyword: Vec::new() }
    }

    /// How many violations of each keyword were found, listed or not (for the metrics).
    pub fn by_keyword(&self) -> &[(&'static str, usize)] {
        &self.by_keyword
    }

    fn count(&mut self, keyword: &'static str, n: usize) {
        self.total += n;
        match self.by_keyword.iter_mut().find(|(k, _)| *k == keyword) {
            Some((_, count)) => *count += n,
            None => self.by_keyword.push((keyword, n)),
        }
    }

    /// Whether the document is valid.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// How many violations were found, listed or not.
    pub fn total(&self) -> usize {
        self.total
    }

    /// The listed violations, owned.
    pub(super) fn into_listed(self) -> Vec<Violation> {
        self.listed
    }

    /// The violations listed in full, in the order found (numbers first).
    pub fn listed(&self) -> &[Violation] {
        &self.listed
    }

    /// Counts one violation of `keyword`, and builds it only while the list has room.
    pub(super) fn push(&mut self, keyword: &'static str, violation: impl FnOnce() -> Violation) {
        if self.listed.len() < self.limit {
            self.listed.push(violation());
        }
        self.count(keyword, 1);
    }

    /// Counts `n` violations of `keyword` built by `violation(i)`, building only those the list
    /// has room for.
    pub(super) fn push_many(&mut self, keyword: &'static str, n: usize, mut violation: impl FnMut(usize) -> Violation) {
        let room = self.limit.saturating_sub(self.listed.len()).min(n);
        self.listed.extend((0..room).map(&mut violation));
        self.count(keyword, n);
    }
}

/// Counts the violations of one validator error, building those `out` lists.
pub(super) fn push_violation(out: &mut Violations, pointer: &str, kind: &ValidationErrorKind) {
    use ValidationErrorKind as K;
    match kind {
        K::Required { property } => out.push("required", || {
            let name = property.as_str().unwrap_or_default().to_owned();
            let pointer = format!("{pointer}/{}", crate::json::pointer_token(&name));
            Violation { pointer, keyword: "required", detail: ViolationDetail::Required { property: name } }
        }),
        K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
            let keyword = if matches!(kind, K::AdditionalProperties { .. }) {
                "additionalProperties"
            } else {
                "unevaluatedProperties"
            };
            out.push_many(keyword, unexpected.len(), |i| Violation {
                pointer: format!("{pointer}/{}", crate::json::pointer_token(&unexpected[i])),
                keyword,
                detail: ViolationDetail::AdditionalProperty,
            });
        }
        _ => {
            let keyword = keyword_of(kind);
            out.push(keyword, || Violation { pointer: pointer.to_owned(), keyword, detail: detail_of(kind) });
        }
    }
}

/// What a validator error breaks, with the schema's limits.
fn detail_of(kind: &ValidationErrorKind) -> ViolationDetail {
    use ValidationErrorKind as K;
    let number = |v: &Value| v.to_string();
    match kind {
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
    }
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
