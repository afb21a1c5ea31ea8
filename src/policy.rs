//! Who may send what to whom, and which fields each recipient receives.
//!
//! [`route`] finds, for an authenticated sender and a record type, the agreements in force and
//! the recipients they name. [`FieldList::project`] cuts a record down to a recipient's fields:
//! JSON Pointers, with `*` standing for every element of an array; the projection keeps the
//! original nesting and holds exactly the selected subtrees; [`Agreement::view`] is the JSON
//! Schema of exactly that projection, for the version a recipient receives.
//!
//! **Invariant:** a recipient never receives a value outside its field list; the projection
//! builds a new document from the selected paths instead of deleting from the original.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::ids::{AgreementId, PartnerId};
use crate::pointer::{FieldPointer, Segment, Selection};
use crate::schema::{SchemaCatalog, Version};

/// Whether an agreement is store-and-forward or synchronous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Push,
    Request,
}

/// What a delivery discloses and why, fixed at acceptance: a later configuration never changes
/// what the access record says was given.
#[derive(Debug, Clone)]
pub struct DisclosureTerms {
    /// The agreement's purpose, as it read when the record was accepted.
    purpose: String,
    /// The fields the recipient receives: its agreement's pointers, never values.
    fields: Vec<String>,
    /// `fields` as the store's column holds them, written once here rather than by the store's
    /// writer for every delivery it inserts ([`DisclosureTerms::fields_column`]). Derived from
    /// `fields` in [`DisclosureTerms::new`], the only way to make terms, so it never disagrees.
    column: String,
    /// A hash of `purpose` and `column`, made once with them: the store's writer names the stored
    /// terms of every delivery it inserts by looking them up (`store::terms`), and hashing the
    /// terms whole each time cost 160 ns a lookup.
    hash: u64,
}

impl DisclosureTerms {
    /// The terms of a purpose and the fields it discloses.
    pub fn new(purpose: String, fields: Vec<String>) -> Self {
        let column = column_of(&fields);
        let mut hasher = std::hash::DefaultHasher::new();
        (&purpose, &column).hash(&mut hasher);
        DisclosureTerms { hash: hasher.finish(), purpose, fields, column }
    }

    /// The agreement's purpose, as it read when the record was accepted.
    pub fn purpose(&self) -> &str {
        &self.purpose
    }

    /// The fields the recipient receives: its agreement's pointers, never values.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// The store's `fields` column: the pointers as a JSON array.
    pub fn fields_column(&self) -> &str {
        &self.column
    }
}

/// Terms are equal when their purposes and fields are (`column` is `fields`, written one way).
impl PartialEq for DisclosureTerms {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.purpose == other.purpose && self.column == other.column
    }
}

impl Eq for DisclosureTerms {}

impl Hash for DisclosureTerms {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The pointers as a JSON array, written directly (through a `serde_json::Value` it was 4 % of the
/// store writer's time at the acceptance burst, when the writer made one per delivery; made per
/// delivery even directly, it was still 1.2 % of the writer's samples).
fn column_of(fields: &[String]) -> String {
    let mut out = Vec::with_capacity(2 + fields.iter().map(|f| f.len() + 3).sum::<usize>());
    out.push(b'[');
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        crate::json::write_string(field, &mut out);
    }
    out.push(b']');
    // invariant: only UTF-8 strings and ASCII punctuation were written
    String::from_utf8(out).unwrap_or_default()
}

/// One recipient of an agreement and the fields it may receive.
#[derive(Debug, Clone)]
pub struct AgreementRecipient {
    pub partner: PartnerId,
    /// What it may receive, in the terms of the version it receives.
    pub fields: FieldList,
    /// One delivery in flight at a time, in acceptance order.
    pub ordered: bool,
    /// The schema version it receives (pinned); `None` receives each record as it was sent.
    pub version: Option<Version>,
    /// Fields of a sent version its translation may drop, as the agreement accepts.
    pub accept_loss: Vec<FieldPointer>,
    /// What each delivery to it discloses and why (the agreement's purpose, `fields`), made
    /// once per configuration and kept by every delivery it receives.
    pub terms: Arc<DisclosureTerms>,
}

impl AgreementRecipient {
    /// The version this recipient receives a record sent in `sent` as.
    pub fn receives(&self, sent: Version) -> Version {
        self.version.unwrap_or(sent)
    }

    /// Every version this recipient receives records in, under an agreement that accepts
    /// `accepted`: its pin, or each accepted version; oldest first.
    pub fn versions_received(&self, accepted: &[Version]) -> Vec<Version> {
        let mut versions: Vec<Version> = accepted.iter().map(|v| self.receives(*v)).collect();
        versions.sort();
        versions.dedup();
        versions
    }
}

/// A data-sharing agreement.
#[derive(Debug, Clone)]
pub struct Agreement {
    pub id: AgreementId,
    pub title_en: String,
    pub title_fr: String,
    pub sender: PartnerId,
    pub record_type: Arc<str>,
    /// Accepted schema versions, oldest first.
    pub versions: Vec<Version>,
    /// Sunset instants of deprecated versions.
    pub sunset: BTreeMap<Version, OffsetDateTime>,
    pub purpose: String,
    pub valid_from: OffsetDateTime,
    pub valid_until: Option<OffsetDateTime>,
    pub mode: Mode,
    pub recipients: Vec<AgreementRecipient>,
    pub response_fields: Option<FieldList>,
    pub file: PathBuf,
}

impl Agreement {
    /// Whether the agreement is in force at `now` (`valid_from` inclusive, `valid_until` exclusive).
    pub fn in_force(&self, now: OffsetDateTime) -> bool {
        self.valid_from <= now && self.valid_until.is_none_or(|until| now < until)
    }

    /// Whether the two agreements are in force together at some moment.
    pub fn overlaps(&self, other: &Agreement) -> bool {
        let ends_before = |a: &Agreement, b: &Agreement| a.valid_until.is_some_and(|u| u <= b.valid_from);
        !ends_before(self, other) && !ends_before(other, self)
    }

    /// Whether `partner` is the sender or one of the recipients.
    pub fn is_party(&self, partner: &str) -> bool {
        &*self.sender == partner || self.recipients.iter().any(|r| &*r.partner == partner)
    }

    /// The recipient `partner`, if it is one.
    pub fn recipient(&self, partner: &str) -> Option<&AgreementRecipient> {
        self.recipients.iter().find(|r| &*r.partner == partner)
    }

    /// The view of what `recipient` receives under this agreement in `version`: the JSON Schema
    /// of exactly its projection ([`crate::schema::view`]), or `None` if it does not receive
    /// that version (or the catalog has no such schema).
    pub fn view(&self, catalog: &SchemaCatalog, recipient: &AgreementRecipient, version: Version) -> Option<Value> {
        if !recipient.versions_received(&self.versions).contains(&version) {
            return None;
        }
        let schema = catalog.record_type(&self.record_type)?.version(version)?;
        let (record_type, partner, id) = (&*self.record_type, &*recipient.partner, &*self.id);
        let title = format!("{record_type} {version} as {partner} receives it under {id}");
        let fields: Vec<String> = recipient.fields.pointers().iter().map(|p| format!("`{p}`")).collect();
        let mut description = format!(
            "What {partner} receives of a {record_type} record, in version {version}, under the agreement {id} ({}): \
             only {}, cut out of the record with the nesting kept. A field the schema requires stays required \
             where it is always sent.",
            self.title_en,
            fields.join(", ")
        );
        if let Some(source) = schema.document.get("title").and_then(Value::as_str) {
            description.push_str(&format!(" From the schema \"{source}\"."));
        }
        Some(crate::schema::view::view(schema.dereferenced(), recipient.fields.pointers(), &title, &description))
    }
}

/// A recipient's fields, held as a tree of selected paths.
#[derive(Debug, Clone, Default)]
pub struct FieldList {
    pointers: Vec<FieldPointer>,
    root: Selection,
    /// Some key has a character above U+FFFF, where canonical order differs from the tree's.
    non_bmp_keys: bool,
}

impl FieldList {
    pub fn new(pointers: Vec<FieldPointer>) -> Self {
        let root = Selection::of(&pointers);
        let non_bmp_keys = pointers
            .iter()
            .flat_map(|p| p.segments())
            .any(|s| matches!(s, Segment::Key(k) if k.chars().any(|c| c as u32 > 0xFFFF)));
        FieldList { pointers, root, non_bmp_keys }
    }

    pub fn pointers(&self) -> &[FieldPointer] {
        &self.pointers
    }

    /// The part of `record` this list selects. A selected path absent from the record is
    /// simply absent from the projection.
    pub fn project(&self, record: &Value) -> Value {
        select(&self.root, record).unwrap_or_else(|| Value::Object(Map::new()))
    }

    /// `project(record)` in canonical form, written straight from `record` without building the
    /// projected document: the bytes a recipient receives (the hot path of intake).
    pub fn project_canonical(&self, record: &Value) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        if self.non_bmp_keys || !write_selected(&self.root, record, &mut out) {
            // Rare key orders (characters above U+FFFF) and empty projections take the slow path.
            return crate::json::to_canonical_vec(&self.project(record));
        }
        out
    }
}

/// Writes the canonical projection of `value` under `node`; false (and nothing written) when
/// the selection holds nothing.
fn write_selected(node: &Selection, value: &Value, out: &mut Vec<u8>) -> bool {
    if node.whole {
        crate::json::write_canonical(value, out);
        return true;
    }
    let start = out.len();
    match value {
        Value::Object(map) => {
            out.push(b'{');
            let mut any = false;
            for (key, child) in &node.keys {
                let Some(v) = map.get(key) else { continue };
                let mark = out.len();
                if any {
                    out.push(b',');
                }
                crate::json::write_string(key, out);
                out.push(b':');
                if write_selected(child, v, out) {
                    any = true;
                } else {
                    out.truncate(mark);
                }
            }
            if !any {
                out.truncate(start);
                return false;
            }
            out.push(b'}');
            true
        }
        Value::Array(items) => {
            if let Some(every) = node.every.as_ref().filter(|_| node.keys.is_empty()) {
                if items.is_empty() {
                    return false;
                }
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    if !write_selected(every, item, out) {
                        out.extend_from_slice(if matches!(item, Value::Array(_)) { b"[]" } else { b"{}" });
                    }
                }
                out.push(b']');
                return true;
            }
            // Index selections are rare: the slow path builds them exactly.
            match select(node, value) {
                Some(v) => {
                    crate::json::write_canonical(&v, out);
                    true
                }
                None => false,
            }
        }
        _ => false,
    }
}

fn select(node: &Selection, value: &Value) -> Option<Value> {
    if node.whole {
        return Some(value.clone());
    }
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, child) in &node.keys {
                if let Some(v) = map.get(key).and_then(|v| select(child, v)) {
                    out.insert(key.clone(), v);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(items) => {
            if let (Some(every), Some(indexed)) = (&node.every, node.indexed_with_every()) {
                // Elements keep their positions; one with nothing selected becomes empty. An
                // element that its index selects too gets what either selects.
                let out = (items.iter().enumerate())
                    .map(|(i, item)| select(indexed.get(&i).unwrap_or(every), item).unwrap_or_else(|| empty_like(item)))
                    .collect::<Vec<_>>();
                return (!out.is_empty()).then_some(Value::Array(out));
            }
            // Numeric keys pick single elements; the others in between become null so that
            // indices keep their meaning.
            let picked: Vec<(usize, Value)> = node
                .keys
                .iter()
                .filter_map(|(k, child)| {
                    let i: usize = k.parse().ok()?;
                    Some((i, select(child, items.get(i)?)?))
                })
                .collect();
            let last = picked.iter().map(|(i, _)| *i).max()?;
            let mut out = vec![Value::Null; last + 1];
            for (i, v) in picked {
                out[i] = v;
            }
            Some(Value::Array(out))
        }
        _ => None,
    }
}

fn empty_like(value: &Value) -> Value {
    match value {
        Value::Array(_) => Value::Array(Vec::new()),
        _ => Value::Object(Map::new()),
    }
}

/// One recipient's share of a record, fixed at acceptance.
#[derive(Debug, Clone)]
pub struct Share {
    pub recipient: Arc<str>,
    pub agreement: Arc<str>,
    pub ordered: bool,
}

/// Why a sender may not send a record type now, in the order the checks run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No agreement names this sender for this type (or the type does not exist).
    NoAgreement,
    /// Agreements exist, but none is in force at this moment.
    NotInForce,
}

/// The agreements that let a sender send one record type now.
#[derive(Debug, Clone)]
pub struct Route {
    pub agreements: Vec<Arc<Agreement>>,
}

impl Route {
    /// Versions accepted by at least one agreement of the route, oldest first.
    pub fn accepted_versions(&self) -> Vec<Version> {
        let mut versions: Vec<Version> = self.agreements.iter().flat_map(|a| a.versions.iter().copied()).collect();
        versions.sort();
        versions.dedup();
        versions
    }

    /// The newest accepted version: the default when the sender names none.
    pub fn default_version(&self) -> Option<Version> {
        self.accepted_versions().pop()
    }

    /// The earliest sunset announced for `version` by the route's agreements.
    pub fn sunset(&self, version: Version) -> Option<OffsetDateTime> {
        self.agreements.iter().filter_map(|a| a.sunset.get(&version).copied()).min()
    }

    /// The agreement and the one responder that a request sent with schema `version` goes to
    /// (request agreements have one recipient, checked at load).
    pub fn responder(&self, version: Version) -> Option<(&Arc<Agreement>, &AgreementRecipient)> {
        self.agreements
            .iter()
            .filter(|a| a.versions.contains(&version))
            .find_map(|a| a.recipients.first().map(|r| (a, r)))
    }

    pub fn mode(&self) -> Mode {
        self.agreements.first().map(|a| a.mode).unwrap_or(Mode::Push)
    }

    /// Each recipient's projection of `record` sent with schema `version`, in a stable order
    /// (agreement, then recipient as configured). Agreements that do not accept `version`
    /// contribute nothing.
    pub fn shares<'a>(&'a self, version: Version) -> impl Iterator<Item = (Share, &'a AgreementRecipient)> + 'a {
        self.agreements.iter().filter(move |a| a.versions.contains(&version)).flat_map(|a| {
            a.recipients
                .iter()
                .map(move |r| (Share { recipient: r.partner.clone(), agreement: a.id.clone(), ordered: r.ordered }, r))
        })
    }
}

/// Finds, among `agreements`, those in force at `now` that let `sender` send `record_type`.
pub fn route(
    agreements: &[Arc<Agreement>],
    sender: &str,
    record_type: &str,
    now: OffsetDateTime,
) -> Result<Route, RouteError> {
    let mut any = false;
    let mut in_force = Vec::new();
    for a in agreements.iter().filter(|a| &*a.sender == sender && &*a.record_type == record_type) {
        any = true;
        if a.in_force(now) {
            in_force.push(a.clone());
        }
    }
    match (any, in_force.is_empty()) {
        (false, _) => Err(RouteError::NoAgreement),
        (true, true) => Err(RouteError::NotInForce),
        (true, false) => Ok(Route { agreements: in_force }),
    }
}

/// Two agreements for one sender and type that would be in force together at some moment (their
/// validity periods overlap), in a way the design does not allow.
#[derive(Debug)]
pub enum Conflict<'a> {
    /// A recipient in both: it would get the record twice.
    RecipientTwice { recipient: &'a PartnerId, earlier: &'a Agreement, later: &'a Agreement },
    /// A request agreement must be the only one in force: a request has one responder.
    RequestNotAlone { earlier: &'a Agreement, later: &'a Agreement },
}

/// Every conflict among `agreements`, each pair in the agreements' order.
pub fn conflicts(agreements: &[Agreement]) -> Vec<Conflict<'_>> {
    let mut found = Vec::new();
    for (i, a) in agreements.iter().enumerate() {
        for b in &agreements[i + 1..] {
            if a.sender != b.sender || a.record_type != b.record_type || !a.overlaps(b) {
                continue;
            }
            for r in &a.recipients {
                if b.recipients.iter().any(|s| s.partner == r.partner) {
                    found.push(Conflict::RecipientTwice { recipient: &r.partner, earlier: a, later: b });
                }
            }
            if a.mode == Mode::Request || b.mode == Mode::Request {
                found.push(Conflict::RequestNotAlone { earlier: a, later: b });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    /// Terms are the same terms when their purpose and fields are, whichever value holds them,
    /// and the hash made once at construction agrees.
    #[test]
    fn terms_are_equal_and_hash_alike_exactly_when_purpose_and_fields_are() {
        let hash = |t: &DisclosureTerms| {
            let mut h = std::hash::DefaultHasher::new();
            t.hash(&mut h);
            h.finish()
        };
        let terms = |purpose: &str, fields: &[&str]| {
            DisclosureTerms::new(purpose.into(), fields.iter().map(|f| f.to_string()).collect())
        };
        let a = terms("Pay", &["/a", "/b"]);
        assert_eq!(a, terms("Pay", &["/a", "/b"]));
        assert_eq!(hash(&a), hash(&terms("Pay", &["/a", "/b"])));
        for other in [terms("Plan", &["/a", "/b"]), terms("Pay", &["/a"]), terms("Pay", &["/a,/b"]), terms("Pay", &[])]
        {
            assert_ne!(a, other);
            assert_ne!(hash(&a), hash(&other), "{other:?}");
        }
    }

    /// An agreement `id` from `sender` for `birth`, valid from `from` until `until`, to
    /// `recipients` (each receiving `/a`).
    fn agreement(
        id: &str,
        sender: &str,
        from: OffsetDateTime,
        until: Option<OffsetDateTime>,
        recipients: &[&str],
    ) -> Agreement {
        Agreement {
            id: id.into(),
            title_en: id.into(),
            title_fr: id.into(),
            sender: sender.into(),
            record_type: "birth".into(),
            versions: vec![Version { major: 1, minor: 0 }],
            sunset: BTreeMap::new(),
            purpose: "test".into(),
            valid_from: from,
            valid_until: until,
            mode: Mode::Push,
            recipients: recipients
                .iter()
                .map(|r| AgreementRecipient {
                    partner: (*r).into(),
                    fields: fields(&["/a"]),
                    ordered: false,
                    version: None,
                    accept_loss: Vec::new(),
                    terms: Arc::new(DisclosureTerms::new("test".into(), vec!["/a".into()])),
                })
                .collect(),
            response_fields: None,
            file: PathBuf::from(format!("{id}.toml")),
        }
    }

    const FROM: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);
    const UNTIL: OffsetDateTime = datetime!(2027-01-01 0:00 UTC);

    fn recipients_of(route: &Route) -> Vec<String> {
        let mut r: Vec<String> =
            route.shares(Version { major: 1, minor: 0 }).map(|(s, _)| s.recipient.to_string()).collect();
        r.sort();
        r
    }

    #[test]
    fn validity_is_inclusive_from_and_exclusive_until() {
        let table = vec![Arc::new(agreement("a", "on", FROM, Some(UNTIL), &["city"]))];
        let at = |t| route(&table, "on", "birth", t);
        assert_eq!(at(FROM - time::Duration::milliseconds(1)).unwrap_err(), RouteError::NotInForce);
        assert!(at(FROM).is_ok(), "valid_from is in force");
        assert!(at(UNTIL - time::Duration::milliseconds(1)).is_ok());
        assert_eq!(at(UNTIL).unwrap_err(), RouteError::NotInForce, "valid_until is not");
    }

    #[test]
    fn no_agreement_for_the_sender_or_type_is_not_the_same_as_none_in_force() {
        let table = vec![Arc::new(agreement("a", "on", FROM, Some(UNTIL), &["city"]))];
        assert_eq!(route(&table, "nt", "birth", FROM).unwrap_err(), RouteError::NoAgreement);
        assert_eq!(route(&table, "on", "death", FROM).unwrap_err(), RouteError::NoAgreement);
        assert_eq!(route(&table, "on", "birth", UNTIL).unwrap_err(), RouteError::NotInForce);
    }

    #[test]
    fn several_agreements_in_force_send_to_the_union_of_their_recipients() {
        let table = vec![
            Arc::new(agreement("federal", "on", FROM, None, &["registry", "benefit"])),
            Arc::new(agreement("city", "on", FROM, Some(UNTIL), &["city"])),
            // Another sender's agreement is not part of the route.
            Arc::new(agreement("nt", "nt", FROM, None, &["registry"])),
        ];
        let now = route(&table, "on", "birth", FROM).unwrap();
        assert_eq!(recipients_of(&now), ["benefit", "city", "registry"]);
        // Once the city's agreement ends, the federal one alone is in force.
        let later = route(&table, "on", "birth", UNTIL).unwrap();
        assert_eq!(recipients_of(&later), ["benefit", "registry"]);
        assert_eq!(later.agreements.len(), 1);
    }

    #[test]
    fn a_recipient_in_two_agreements_in_force_together_is_a_conflict() {
        let first = agreement("first", "on", FROM, Some(UNTIL), &["city", "registry"]);
        // Overlapping: a conflict on the recipient both name.
        let overlapping = agreement("second", "on", UNTIL - time::Duration::days(1), None, &["city"]);
        // Starting when the first ends: never in force together, no conflict.
        let following = agreement("third", "on", UNTIL, None, &["city"]);
        // Another sender: not the same route.
        let other = agreement("fourth", "nt", FROM, None, &["city"]);
        let table = vec![first, overlapping, following, other];
        let found = conflicts(&table);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().any(|c| matches!(c,
            Conflict::RecipientTwice { recipient, earlier, later }
                if &***recipient == "city" && &*earlier.id == "first" && &*later.id == "second")));
        // The second and third overlap too (both open-ended): the city is in both.
        assert!(found.iter().any(|c| matches!(c,
            Conflict::RecipientTwice { earlier, later, .. } if &*earlier.id == "second" && &*later.id == "third")));
    }

    #[test]
    fn a_request_agreement_must_be_the_only_one_in_force() {
        let mut request = agreement("request", "on", FROM, None, &["registry"]);
        request.mode = Mode::Request;
        let push = agreement("push", "on", FROM, None, &["city"]);
        let table = vec![request, push];
        let found = conflicts(&table);
        assert!(
            matches!(found.as_slice(), [Conflict::RequestNotAlone { earlier, later }]
            if &*earlier.id == "request" && &*later.id == "push"),
            "{found:?}"
        );
    }

    #[test]
    fn a_recipient_receives_each_accepted_version_or_its_pin_alone() {
        let (v10, v11) = (Version { major: 1, minor: 0 }, Version { major: 1, minor: 1 });
        let mut a = agreement("a", "on", FROM, None, &["city"]);
        a.versions = vec![v10, v11];
        assert_eq!(a.recipient("city").unwrap().versions_received(&a.versions), [v10, v11]);
        a.recipients[0].version = Some(v10);
        assert_eq!(a.recipient("city").unwrap().versions_received(&a.versions), [v10]);
        // A pin outside the accepted versions is what it receives all the same.
        a.recipients[0].version = Some(Version { major: 2, minor: 0 });
        assert_eq!(a.recipients[0].versions_received(&a.versions), [Version { major: 2, minor: 0 }]);
        assert!(a.recipient("on").is_none(), "the sender is no recipient");
    }

    fn fields(list: &[&str]) -> FieldList {
        FieldList::new(list.iter().map(|s| s.parse().unwrap()).collect())
    }

    #[test]
    fn projection_keeps_nesting_and_only_selected_subtrees() {
        let record = json!({
            "registration_number": "ON-2026-000001",
            "child": {"surname": "Roy", "given_names": ["Léa"], "sex_at_birth": "F"},
            "parents": [
                {"surname": "Roy", "address": {"postal_code": "K1A 0B1", "street": "1 Main"}},
                {"surname": "Diallo"}
            ]
        });
        let projected = fields(&["/child/surname", "/parents/*/address/postal_code"]).project(&record);
        assert_eq!(
            projected,
            json!({"child": {"surname": "Roy"}, "parents": [{"address": {"postal_code": "K1A 0B1"}}, {}]})
        );
    }

    /// An element that both `*` and its index select gets what either selects (found by the
    /// property below: `/0` was dropped beside `/*/1`, and the recipient got `null` for `false`).
    #[test]
    fn an_element_selected_by_every_and_by_its_index_gets_both() {
        let record = json!([[false, null], [true, 7]]);
        let list = fields(&["/*/1", "/0"]);
        let expected = json!([[false, null], [null, 7]]);
        assert_eq!(list.project(&record), expected);
        assert_eq!(list.project_canonical(&record), crate::json::to_canonical_vec(&expected));
        let parents = json!({"parents": [{"sin": "1", "surname": "Roy"}, {"sin": "2", "surname": "Diallo"}]});
        let list = fields(&["/parents/*/surname", "/parents/1/sin", "/parents/01/sin"]);
        let expected = json!({"parents": [{"surname": "Roy"}, {"sin": "2", "surname": "Diallo"}]});
        assert_eq!(list.project(&parents), expected);
        assert_eq!(list.project_canonical(&parents), crate::json::to_canonical_vec(&expected));
    }

    #[test]
    fn whole_subtrees_and_indices() {
        let record = json!({"a": {"b": [1, 2, 3], "c": true}, "d": [{"e": 1}, {"e": 2}]});
        assert_eq!(fields(&["/a/b"]).project(&record), json!({"a": {"b": [1, 2, 3]}}));
        assert_eq!(fields(&["/d/1/e"]).project(&record), json!({"d": [null, {"e": 2}]}));
        assert_eq!(fields(&["/missing"]).project(&record), json!({}));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Small JSON documents over a few keys, so generated pointers often hit something.
    fn document() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(Value::from),
            "[a-z]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[abc]", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn pointer() -> impl Strategy<Value = FieldPointer> {
        prop::collection::vec(prop_oneof![Just("a"), Just("b"), Just("c"), Just("*"), Just("0"), Just("1")], 1..4)
            .prop_map(|segments| format!("/{}", segments.join("/")).parse().unwrap())
    }

    /// Whether `path` (concrete keys and indices) is selected by some pointer of `list`, or lies
    /// under one.
    fn allowed(list: &[FieldPointer], path: &[String]) -> bool {
        list.iter().any(|p| {
            p.segments().len() <= path.len()
                && p.segments().iter().zip(path).all(|(s, k)| match s {
                    Segment::Every => k.parse::<usize>().is_ok(),
                    Segment::Key(key) => key == k,
                })
        })
    }

    /// Every scalar of `projected` with its path; nulls that only fill array gaps are skipped.
    fn scalars(v: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, v)| {
                path.push(k.clone());
                scalars(v, path, out);
                path.pop();
            }),
            Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| {
                path.push(i.to_string());
                scalars(v, path, out);
                path.pop();
            }),
            other => out.push((path.clone(), other.clone())),
        }
    }

    fn at<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
        path.iter().try_fold(v, |v, k| match v {
            Value::Object(m) => m.get(k),
            Value::Array(a) => a.get(k.parse::<usize>().ok()?),
            _ => None,
        })
    }

    proptest! {
        /// A projection holds only original values, at their original paths, under a selected
        /// pointer: no field outside the list can ever leak to a recipient.
        #[test]
        fn projections_only_hold_selected_original_values(doc in document(), list in prop::collection::vec(pointer(), 1..4)) {
            let projected = FieldList::new(list.clone()).project(&doc);
            let mut found = Vec::new();
            scalars(&projected, &mut Vec::new(), &mut found);
            for (path, value) in found {
                let original = at(&doc, &path);
                // Index-selected arrays pad skipped positions with null.
                if value.is_null() && !allowed(&list, &path) {
                    continue;
                }
                prop_assert_eq!(original, Some(&value), "{:?} is not the original value", path);
                prop_assert!(allowed(&list, &path), "{:?} is outside {:?}", path, list);
            }
        }

        /// The direct canonical writer gives exactly the bytes of projecting then serialising.
        #[test]
        fn canonical_projection_matches_the_slow_path(doc in document(), list in prop::collection::vec(pointer(), 1..4)) {
            let fields = FieldList::new(list);
            prop_assert_eq!(fields.project_canonical(&doc), crate::json::to_canonical_vec(&fields.project(&doc)));
        }

        /// Selecting a whole document's top-level keys gives the document back.
        #[test]
        fn selecting_every_top_level_key_is_the_identity(doc in document()) {
            if let Value::Object(m) = &doc
                && !m.is_empty() {
                    let list: Vec<FieldPointer> = m.keys().map(|k| format!("/{k}").parse().unwrap()).collect();
                    prop_assert_eq!(FieldList::new(list).project(&doc), doc.clone());
                }
        }
    }
}
