//! Disclosure terms stored once (schema version 11): each distinct purpose and list of fields is
//! one row of `disclosure_terms`, and a delivery names its row by id instead of holding both.
//!
//! The writer remembers the id of every terms row it has stored or found, so a batch looks up
//! only terms it has not met before (its first batch, or after a configuration change), and
//! naming a delivery's terms costs a hash lookup. The table stays the truth:
//! - A terms row is never changed or deleted, so an id once remembered names the same terms for
//!   good, on every instance.
//! - An id learned in a transaction that does not commit is forgotten with it: a row it stored
//!   is gone, and a delivery must never name a row that does not exist.
//! - Terms a record's delivery carries but the writer cannot name fail the batch: a delivery is
//!   never stored without the terms it was accepted under.

use std::collections::HashMap;
use std::sync::Arc;

use super::sql::{self, Param, Sql};
use super::{NewRecord, StoreError, StoreErrorKind};
use crate::policy::DisclosureTerms;

/// Terms remembered at most; past it the writer forgets them all and looks them up again. One
/// gateway's terms are one per agreement and recipient (and per change of purpose or fields).
const REMEMBERED: usize = 4096;

/// The ids of the terms rows the writer knows (see the module's header).
#[derive(Debug, Default)]
pub(super) struct TermsIds {
    known: HashMap<Arc<DisclosureTerms>, i64>,
    /// The terms the open transaction stored or found, forgotten if it does not commit.
    uncommitted: Vec<Arc<DisclosureTerms>>,
}

impl TermsIds {
    /// Finds or stores, in the open transaction, every terms of `records`' deliveries that is
    /// not known yet.
    pub async fn resolve<'a, S: Sql>(
        &mut self,
        b: &mut S,
        records: impl Iterator<Item = &'a NewRecord>,
    ) -> Result<(), StoreError> {
        if self.known.len() >= REMEMBERED && self.uncommitted.is_empty() {
            self.known.clear();
        }
        for terms in records.flat_map(|r| r.deliveries.iter()).filter_map(|d| d.terms.as_ref()) {
            if self.known.contains_key(&**terms) {
                continue;
            }
            let params: [Param; 2] = [terms.purpose().into(), terms.fields_column().into()];
            b.execute(sql::ADD_TERMS, &params).await?;
            let found = b.query(sql::TERMS_ID, &params, |r| r.int(0)).await?;
            let id = found.first().copied().ok_or_else(|| StoreError::corrupt("terms just stored are not found"))?;
            self.known.insert(terms.clone(), id);
            self.uncommitted.push(terms.clone());
        }
        Ok(())
    }

    /// The id of each of `record`'s deliveries' terms, in order (`None`: a delivery without).
    pub fn of(&self, record: &NewRecord) -> Result<Vec<Option<i64>>, StoreError> {
        let id = |terms: &DisclosureTerms| {
            self.known.get(terms).copied().ok_or_else(|| {
                StoreError::new(StoreErrorKind::Failed, "a delivery's disclosure terms were not stored before it")
            })
        };
        record.deliveries.iter().map(|d| d.terms.as_deref().map(id).transpose()).collect()
    }

    /// The open transaction committed: what it learned holds.
    pub fn committed(&mut self) {
        self.uncommitted.clear();
    }

    /// The open transaction did not commit: what it learned is forgotten.
    pub fn rolled_back(&mut self) {
        for terms in self.uncommitted.drain(..) {
            self.known.remove(&terms);
        }
    }
}
