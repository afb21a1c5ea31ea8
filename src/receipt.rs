//! The receipt a sender gets for an accepted record.
//!
//! A JSON object that grows by adding fields, never by changing them: later releases add the
//! audit entry's `seq` and `hash` and the gateway's signature beside these fields.

use serde::Serialize;

/// One delivery created by the record, as listed on its receipt.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptDelivery<'a> {
    pub recipient: &'a str,
    pub agreement: &'a str,
    pub status: &'static str,
}

/// The receipt's fields.
#[derive(Debug, Clone, Serialize)]
pub struct Receipt<'a> {
    pub record_id: &'a str,
    pub record_type: &'a str,
    pub schema_version: String,
    pub sender: &'a str,
    pub received_at: String,
    pub deliveries: Vec<ReceiptDelivery<'a>>,
}

impl Receipt<'_> {
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
