//! What each write changes and records, written once so both engines write the same rows and
//! the same audit entries: a record's acceptance entry, how an attempt's result changes its
//! delivery row and the entry it gets, a replay's and a purge's entries, and how a delivery's
//! disclosure terms are kept in its row.

use super::*;
use crate::audit::AuditEvent;

impl NewRecord {
    /// The record's audit entry, written in its own transaction. A completion notice the gateway
    /// issues is `notice.issued`, its reason the record it reports on and the kind (its
    /// idempotency key), so the trail tells notices from the records partners sent.
    pub fn accepted_event(&self) -> AuditEvent {
        let notice = self.sender == crate::audit::notice::SENDER;
        let (kind, outcome) = if notice {
            (crate::audit::kind::NOTICE_ISSUED, "issued")
        } else {
            (crate::audit::kind::RECORD_ACCEPTED, "accepted")
        };
        let mut event = AuditEvent::new(self.received_at, kind, &self.sender, outcome);
        event.record_id = Some(self.record_id.clone());
        event.body_digest = Some(self.audit_digest);
        event.reason = match (&self.idempotency_key, notice) {
            (Some(key), true) => Some(key.clone()),
            _ => Some(format!("{}/{}", self.record_type, self.schema_version)),
        };
        event
    }
}

/// How an attempt's result changes its delivery row.
#[derive(Debug, Clone, Copy)]
pub struct AttemptEffect<'a> {
    pub status: DeliveryStatus,
    pub http_status: Option<u16>,
    pub error: Option<&'a str>,
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
}

impl AttemptUpdate {
    /// The delivery row's new state.
    pub fn effect(&self) -> AttemptEffect<'_> {
        let (status, http_status, error, next_attempt_at, delivered_at) = match &self.result {
            AttemptResult::Delivered { status } => (DeliveryStatus::Delivered, *status, None, self.at, Some(self.at)),
            AttemptResult::Retry { next_attempt_at, status, error } => {
                (DeliveryStatus::Retrying, *status, Some(error.as_str()), *next_attempt_at, None)
            }
            AttemptResult::Dead { status, error } => {
                (DeliveryStatus::Dead, *status, Some(error.as_str()), self.at, None)
            }
        };
        AttemptEffect { status, http_status, error, next_attempt_at, delivered_at }
    }

    /// What kind of failure the attempt met, from the recipient's status, or the error when it
    /// did not answer; `None` once delivered.
    pub fn error_class(&self) -> Option<ErrorClass> {
        let (status, error) = match &self.result {
            AttemptResult::Delivered { .. } => return None,
            AttemptResult::Retry { status, error, .. } | AttemptResult::Dead { status, error } => (*status, error),
        };
        Some(match status {
            Some(429) => ErrorClass::RateLimited,
            Some(408 | 425) => ErrorClass::Timeout,
            Some(500..) => ErrorClass::ServerError,
            Some(_) => ErrorClass::Refused,
            None if error.contains("timed out") => ErrorClass::Timeout,
            None => ErrorClass::Unreachable,
        })
    }

    /// The attempt's audit entry (written only if the worker still held the lease). A pull
    /// recipient's acknowledgement has no HTTP status: its reason says it came from the mailbox.
    pub fn event(&self) -> AuditEvent {
        use crate::audit::kind;
        let (kind, outcome) = match self.result {
            AttemptResult::Delivered { .. } => (kind::DELIVERY_DELIVERED, "delivered"),
            AttemptResult::Retry { .. } => (kind::DELIVERY_RETRIED, "retry"),
            AttemptResult::Dead { .. } => (kind::DELIVERY_DEAD, "dead"),
        };
        let effect = self.effect();
        let mut event = AuditEvent::new(self.at, kind, "gateway", outcome);
        event.record_id = Some(self.record_id.clone());
        event.agreement = Some(self.agreement.clone());
        event.recipient = Some(self.recipient.clone());
        event.body_digest = Some(self.body_digest);
        event.reason = match (&self.result, effect.http_status) {
            (_, Some(c)) => Some(format!("HTTP {c}")),
            (AttemptResult::Delivered { .. }, None) => Some("acknowledged from the mailbox".to_owned()),
            _ => effect.error.map(str::to_owned),
        };
        event
    }
}

impl ReplayRequest {
    /// The audit entry of one replayed delivery.
    pub fn event(&self, record_id: String, agreement: &str, recipient: &str, body_digest: [u8; 32]) -> AuditEvent {
        let mut event = AuditEvent::new(self.now, crate::audit::kind::DELIVERY_REPLAYED, &self.actor, "replayed");
        event.record_id = Some(record_id);
        event.agreement = Some(agreement.to_owned());
        event.recipient = Some(recipient.to_owned());
        event.body_digest = Some(body_digest);
        event
    }
}

impl DisclosureTerms {
    /// The terms of the `purpose` and `fields` columns, if the delivery has them.
    pub fn from_columns(purpose: Option<String>, fields: Option<String>) -> Result<Option<Self>, StoreError> {
        let (Some(purpose), Some(column)) = (purpose, fields) else { return Ok(None) };
        let fields = serde_json::from_str(&column)
            .map_err(|e| StoreError::corrupt("a delivery's fields are not a list of pointers").caused_by(e))?;
        Ok(Some(DisclosureTerms::new(purpose, fields)))
    }
}

impl PurgeReport {
    /// The purge's audit entries: the bodies it deleted, the data keys it destroyed, and the
    /// record subjects past the access record's retention.
    pub fn events(&self, at: i64) -> Vec<AuditEvent> {
        let mut events = Vec::new();
        let total = self.record_bodies + self.delivery_bodies;
        if total > 0 {
            let mut event = AuditEvent::new(at, crate::audit::kind::BODIES_PURGED, "gateway", "purged");
            event.count = total as i64;
            event.reason =
                Some(format!("{} record bodies, {} delivery bodies", self.record_bodies, self.delivery_bodies));
            events.push(event);
        }
        if !self.keys_destroyed.is_empty() {
            let mut event = AuditEvent::new(at, crate::audit::kind::KEYS_DESTROYED, "gateway", "destroyed");
            event.count = self.keys_destroyed.len() as i64;
            event.reason = Some(self.keys_destroyed.join(", "));
            events.push(event);
        }
        if self.subjects > 0 {
            let mut event = AuditEvent::new(at, crate::audit::kind::ACCESS_PURGED, "gateway", "purged");
            event.count = self.subjects as i64;
            event.reason = Some("record subjects past the access record's retention".to_owned());
            events.push(event);
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_column_is_the_json_list_its_reader_parses() {
        let fields = vec!["/child/given_name".to_owned(), "/a~1b/\"q\"\\\u{1}é".to_owned()];
        let terms = DisclosureTerms::new("p".into(), fields.clone());
        let column = terms.fields_column();
        assert_eq!(column, serde_json::Value::from(fields).to_string());
        assert_eq!(DisclosureTerms::from_columns(Some("p".into()), Some(column.to_owned())).unwrap(), Some(terms));
        let none = DisclosureTerms::new("p".into(), Vec::new());
        assert_eq!(none.fields_column(), "[]");
    }
}
