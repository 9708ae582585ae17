//! The original's seed data, written without clobbering documents that already exist.

use saga::contract::collections;
use saga::gcp::store::{CommitError, DocPath, Store, WriteSet};
use serde_json::{Value, json};

/// The documents the original's data-initialisation script wrote.
pub fn seed_documents() -> Vec<(DocPath, Value)> {
    vec![
        (
            DocPath::new([collections::USERS, "jack"]),
            json!({ "address": "123 fake street" }),
        ),
        (
            DocPath::new([collections::USERS, "jill"]),
            json!({ "address": "456 other street" }),
        ),
        (
            DocPath::new([collections::INVENTORY, "widget"]),
            json!({ "quantity": 10_000, "price_per_unit": 10 }),
        ),
        (
            DocPath::new([collections::INVENTORY, "wotsit"]),
            json!({ "quantity": 20_000, "price_per_unit": 15 }),
        ),
    ]
}

/// What seeding did to each document.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Documents written.
    pub created: Vec<String>,
    /// Documents that existed and were left as they were.
    pub kept: Vec<String>,
}

/// Writes `docs`, each only if it does not exist yet.
pub async fn seed(store: &Store, docs: &[(DocPath, Value)]) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for (path, fields) in docs {
        let mut writes = WriteSet::new();
        writes.create(path.clone(), fields);
        match store.commit(writes).await {
            Ok(_) => report.created.push(path.to_string()),
            Err(CommitError::Conflict(_)) => report.kept.push(path.to_string()),
            Err(CommitError::Unavailable(e)) => return Err(e),
        }
    }
    Ok(report)
}
