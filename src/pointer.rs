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
}
