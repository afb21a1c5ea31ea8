//! JSON Pointers with one extension, a segment `*` for every element of an array: how field
//! lists name what a recipient may receive, and what the schemas are asked whether they can
//! produce. A leaf every other module may use.
//!
//! A list of pointers is also a tree ([`Selection`]): the shape by which a record is cut down
//! to a recipient's fields (`policy::FieldList::project`), and by which a schema is cut down to
//! the schema of what that recipient receives (`schema::view`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// An object key read as an array index, as every part of the gateway reads one: a decimal
/// number, so `1`, `01` and `+1` all name element 1, and `-1` or `x` no element.
pub fn array_index(key: &str) -> Option<usize> {
    key.parse().ok()
}

/// One segment of a field pointer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Segment {
    /// An object key (or, on an array, an index).
    Key(String),
    /// `*`: every element of an array.
    Every,
}

/// A JSON Pointer with the `*` extension, such as `/parents/*/address/postal_code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPointer {
    text: String,
    segments: Vec<Segment>,
}

impl FieldPointer {
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

impl fmt::Display for FieldPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for FieldPointer {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err("a field pointer starts with `/`".to_owned());
        };
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            if raw.is_empty() {
                return Err("a field pointer has no empty segment".to_owned());
            }
            if raw == "*" {
                segments.push(Segment::Every);
                continue;
            }
            let mut key = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => key.push('~'),
                        Some('1') => key.push('/'),
                        _ => return Err("`~` must be followed by 0 or 1".to_owned()),
                    }
                } else {
                    key.push(c);
                }
            }
            segments.push(Segment::Key(key));
        }
        Ok(FieldPointer { text: text.to_owned(), segments })
    }
}

/// Field pointers held as a tree of selected paths: one node per segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// The whole subtree at this point is selected.
    pub whole: bool,
    /// The object keys (or, on an array, the indices) selected below this point.
    pub keys: BTreeMap<String, Selection>,
    /// `*`: what is selected in every element of an array at this point.
    pub every: Option<Box<Selection>>,
}

impl Selection {
    /// The tree of `pointers`.
    pub fn of(pointers: &[FieldPointer]) -> Selection {
        let mut root = Selection::default();
        for p in pointers {
            let mut node = &mut root;
            for segment in p.segments() {
                node = match segment {
                    Segment::Key(k) => node.keys.entry(k.clone()).or_default(),
                    Segment::Every => node.every.get_or_insert_with(Default::default),
                };
            }
            node.whole = true;
        }
        root
    }

    /// What `self` or `other` selects: for an array element that both a `*` and its index
    /// select.
    pub fn union(&self, other: &Selection) -> Selection {
        let mut keys = self.keys.clone();
        for (key, child) in &other.keys {
            let merged = match keys.get(key) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            keys.insert(key.clone(), merged);
        }
        let every = match (&self.every, &other.every) {
            (Some(a), Some(b)) => Some(Box::new(a.union(b))),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        Selection { whole: self.whole || other.whole, keys, every }
    }

    /// On an array under `*`, what each element that an index also selects gets: `*`'s selection
    /// together with every index key naming that element (`1` and `01` name the same one).
    /// Elements not in the map get `*`'s alone. `None` without a `*`.
    pub fn indexed_with_every(&self) -> Option<BTreeMap<usize, Selection>> {
        let every = self.every.as_deref()?;
        let mut elements: BTreeMap<usize, Selection> = BTreeMap::new();
        for (key, child) in &self.keys {
            let Some(i) = array_index(key) else { continue };
            let merged = elements.get(&i).unwrap_or(every).union(child);
            elements.insert(i, merged);
        }
        Some(elements)
    }

    /// Every value of `value` at a selected point (keys in sorted order, array elements in
    /// theirs): what a record holds at the selected fields, a `*` matching each element of an
    /// array and a numeric key one element.
    pub fn values<'v>(&self, value: &'v Value) -> Vec<&'v Value> {
        let mut out = Vec::new();
        self.collect(value, &mut out);
        out
    }

    fn collect<'v>(&self, value: &'v Value, out: &mut Vec<&'v Value>) {
        if self.whole {
            out.push(value);
            return;
        }
        for (key, child) in &self.keys {
            let found = match value {
                Value::Object(map) => map.get(key),
                Value::Array(items) => array_index(key).and_then(|i| items.get(i)),
                _ => None,
            };
            if let Some(found) = found {
                child.collect(found, out);
            }
        }
        if let (Some(every), Value::Array(items)) = (&self.every, value) {
            for item in items {
                every.collect(item, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_pointer_segments() {
        let p: FieldPointer = "/a~1b/c~0d".parse().unwrap();
        assert_eq!(p.segments(), &[Segment::Key("a/b".into()), Segment::Key("c~d".into())]);
        assert!("a/b".parse::<FieldPointer>().is_err());
        assert!("/a//b".parse::<FieldPointer>().is_err());
        assert!("/a~2".parse::<FieldPointer>().is_err());
    }

    #[test]
    fn the_values_at_selected_points() {
        let pointers: Vec<FieldPointer> =
            ["/id", "/people/*/sin", "/pair/1", "/absent/x"].iter().map(|p| p.parse().unwrap()).collect();
        let doc = serde_json::json!({
            "id": "A-1",
            "people": [{"sin": "1"}, {"name": "no sin"}, {"sin": 2}],
            "pair": ["first", "second"],
            "absent": "a scalar has no key x"
        });
        let found: Vec<&Value> = Selection::of(&pointers).values(&doc);
        assert_eq!(found, [&doc["id"], &doc["pair"][1], &doc["people"][0]["sin"], &doc["people"][2]["sin"]]);
    }
}
