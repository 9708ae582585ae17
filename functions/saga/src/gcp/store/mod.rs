//! Firestore access as the saga needs it: read several documents in one round trip, and
//! commit several writes atomically, each guarded by a precondition.
//!
//! No read-write transactions: they lock pessimistically (badly so on the emulator, where 50
//! concurrent transactions on one document took 100 s). A step instead reads without
//! locks, decides, and commits with preconditions on what it read (`exists = false`, or
//! "unchanged since update time T"). If anything it read changed in between, the commit fails
//! as a whole with [`CommitError::Conflict`] and the step reads and decides again.

mod grouping;

use anyhow::Context as _;
use firestore::gcloud_sdk::google::firestore::v1 as fs;
use firestore::gcloud_sdk::google_cloud_auth::credentials::{
    CacheableResource, Credentials, CredentialsProvider, EntityTag,
};
use firestore::gcloud_sdk::google_cloud_auth::errors::CredentialsError;
use firestore::gcloud_sdk::prost_types::Timestamp;
use firestore::{FirestoreDb, FirestoreDbOptions};
use grouping::Grouper;
pub use grouping::{CALL_TIMEOUT, CommitError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt;

/// Where a service's Firestore client connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirestoreTarget {
    /// The project.
    pub project: String,
    /// `host:port` of the emulator, or `None` for Google Cloud.
    pub emulator_host: Option<String>,
}

/// A document path relative to the database root, such as `users/jack`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocPath(String);

impl DocPath {
    /// Joins collection and document ids. Every id comes from a type that has already
    /// refused `/` and the names Firestore reserves, so the joined path means what it says.
    pub fn new<I, S>(segments: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let parts: Vec<String> = segments.into_iter().map(|s| s.as_ref().to_owned()).collect();
        debug_assert!(
            parts.len().is_multiple_of(2),
            "a document path has an even number of segments"
        );
        DocPath(parts.join("/"))
    }

    /// The relative path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The document this one's collection belongs to: `sagas/u` for `sagas/u/steps/s`.
    pub fn parent(&self) -> Option<DocPath> {
        let mut parts: Vec<&str> = self.0.split('/').collect();
        parts.truncate(parts.len().checked_sub(2)?);
        (!parts.is_empty()).then(|| DocPath(parts.join("/")))
    }
}

impl fmt::Display for DocPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Firestore timestamp as a clock time; `None` before the epoch.
fn system_time(t: Timestamp) -> Option<std::time::SystemTime> {
    let secs = u64::try_from(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanos).ok()?;
    Some(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::new(secs, nanos))
}

/// A document as read, with the update time that a later write can be conditioned on.
#[derive(Clone, Debug)]
pub struct Snapshot {
    doc: fs::Document,
}

impl Snapshot {
    /// A document at `path` holding `fields`, as a read would return it, last changed at
    /// `update_time` (seconds): so that the pure decisions, which take snapshots, can be
    /// tested without Firestore.
    pub fn of<T: Serialize>(path: &DocPath, fields: &T, update_time: i64) -> anyhow::Result<Self> {
        let mut doc = FirestoreDb::serialize_to_doc(path.as_str(), fields)
            .with_context(|| format!("serialising a document for {path}"))?;
        doc.update_time = Some(Timestamp {
            seconds: update_time,
            nanos: 0,
        });
        Ok(Snapshot { doc })
    }

    /// The document as `writes` (to this document) would leave it: the fields they set
    /// (all, or those of their masks) and their increments. Its update time stays the one read,
    /// which is what a later write's precondition must name.
    #[must_use]
    pub fn after(&self, writes: &WriteSet) -> Snapshot {
        let mut doc = self.doc.clone();
        for write in &writes.writes {
            if let Some(fields) = &write.fields {
                match &write.mask {
                    None => doc.fields.clone_from(fields),
                    Some(mask) => {
                        for field in mask {
                            match fields.get(field) {
                                Some(value) => doc.fields.insert(field.clone(), value.clone()),
                                None => doc.fields.remove(field),
                            };
                        }
                    }
                }
            }
            for (field, transform) in &write.transforms {
                if matches!(transform, Transform::RequestTime) {
                    let now = firestore::jiff::Timestamp::now();
                    doc.fields.insert(
                        field.clone(),
                        fs::Value {
                            value_type: Some(fs::value::ValueType::TimestampValue(Timestamp {
                                seconds: now.as_second(),
                                nanos: now.subsec_nanosecond(),
                            })),
                        },
                    );
                }
                if let Transform::Increment(by) = transform {
                    // As Firestore does it: a double stays a double (the console stores
                    // numbers typed by hand as doubles); anything else counts as 0.
                    let value = match doc.fields.get(field).and_then(|v| v.value_type.as_ref()) {
                        #[allow(clippy::cast_precision_loss)]
                        Some(fs::value::ValueType::DoubleValue(d)) => {
                            fs::value::ValueType::DoubleValue(d + *by as f64)
                        }
                        Some(fs::value::ValueType::IntegerValue(n)) => {
                            fs::value::ValueType::IntegerValue(n.saturating_add(*by))
                        }
                        _ => fs::value::ValueType::IntegerValue(*by),
                    };
                    doc.fields.insert(
                        field.clone(),
                        fs::Value {
                            value_type: Some(value),
                        },
                    );
                }
            }
        }
        Snapshot { doc }
    }

    /// The document's full resource name, for logs.
    pub fn name(&self) -> &str {
        &self.doc.name
    }

    /// When the document last changed.
    pub fn update_time(&self) -> Timestamp {
        self.doc.update_time.unwrap_or_default()
    }

    /// [`Snapshot::update_time`] as a clock time.
    pub fn updated_at(&self) -> Option<std::time::SystemTime> {
        system_time(self.update_time())
    }

    /// [`Snapshot::timestamp`] as a clock time.
    pub fn time(&self, field: &str) -> Option<std::time::SystemTime> {
        system_time(self.timestamp(field)?)
    }

    /// The document's fields as `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        FirestoreDb::deserialize_doc_to(&self.doc)
            .with_context(|| format!("decoding document {}", self.doc.name))
    }

    /// A timestamp field, if it holds one.
    pub fn timestamp(&self, field: &str) -> Option<Timestamp> {
        match self.doc.fields.get(field)?.value_type.as_ref()? {
            fs::value::ValueType::TimestampValue(t) => Some(*t),
            _ => None,
        }
    }

    /// An integer field, also accepting a double that holds a whole number (the console
    /// stores numbers typed by hand as doubles).
    pub fn integer(&self, field: &str) -> Option<i64> {
        match self.doc.fields.get(field)?.value_type.as_ref()? {
            fs::value::ValueType::IntegerValue(n) => Some(*n),
            #[allow(clippy::cast_possible_truncation, clippy::float_cmp)]
            fs::value::ValueType::DoubleValue(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => Some(*d as i64),
            _ => None,
        }
    }
}

/// What must hold for a write to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// The document does not exist yet.
    Absent,
    /// The document exists.
    Exists,
    /// The document has not changed since it was read.
    Unchanged(Timestamp),
}

impl From<Precondition> for fs::Precondition {
    fn from(p: Precondition) -> Self {
        use fs::precondition::ConditionType;
        fs::Precondition {
            condition_type: Some(match p {
                Precondition::Absent => ConditionType::Exists(false),
                Precondition::Exists => ConditionType::Exists(true),
                Precondition::Unchanged(t) => ConditionType::UpdateTime(t),
            }),
        }
    }
}

/// Writes that commit together or not at all.
#[derive(Debug, Default)]
pub struct WriteSet {
    writes: Vec<PendingWrite>,
}

#[derive(Debug)]
struct PendingWrite {
    path: DocPath,
    fields: Option<HashMap<String, fs::Value>>,
    mask: Option<Vec<String>>,
    transforms: Vec<(String, Transform)>,
    precondition: Option<Precondition>,
}

/// A change Firestore makes to a field itself, from the field's current value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    /// Adds to the integer.
    Increment(i64),
    /// Keeps the smaller of the current value and this one (sets it if absent).
    Minimum(i64),
    /// Keeps the larger of the current value and this one (sets it if absent).
    Maximum(i64),
    /// Sets a timestamp: the time Firestore processes the commit (its request time), the
    /// clock every instance's reads share, as the document's update time does.
    RequestTime,
}

impl WriteSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// How many writes are queued: what Firestore counts against its 500 a commit.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// The documents written, in order, each with the precondition that guards it: what a
    /// decision's tests look at.
    pub fn documents(&self) -> Vec<(&str, Option<Precondition>)> {
        self.writes
            .iter()
            .map(|w| (w.path.as_str(), w.precondition))
            .collect()
    }

    /// Creates `path` with `obj`; fails the commit if it exists.
    pub fn create<T: Serialize>(&mut self, path: DocPath, obj: &T) -> &mut Self {
        self.put(path, obj, None, Some(Precondition::Absent))
    }

    /// Replaces the fields named in `mask` (all of them if `None`) with those of `obj`.
    pub fn update<T: Serialize>(
        &mut self,
        path: DocPath,
        obj: &T,
        mask: Option<&[&str]>,
        precondition: Option<Precondition>,
    ) -> &mut Self {
        let mask = mask.map(|m| m.iter().map(|s| (*s).to_owned()).collect());
        self.put(path, obj, mask, precondition)
    }

    /// Adds `by` to the integer `field` of the existing document `path`, server side.
    pub fn increment(
        &mut self,
        path: DocPath,
        field: &str,
        by: i64,
        precondition: Option<Precondition>,
    ) -> &mut Self {
        self.writes.push(PendingWrite {
            path,
            fields: None,
            mask: Some(Vec::new()),
            transforms: vec![(field.to_owned(), Transform::Increment(by))],
            precondition: Some(precondition.unwrap_or(Precondition::Exists)),
        });
        self
    }

    /// Sets the fields named in `mask` (dotted paths reach into maps) from `obj` and applies
    /// `transforms`, creating the document if it does not exist. With no precondition and
    /// no read, such writes from concurrent writers never conflict.
    pub fn upsert<T: Serialize>(
        &mut self,
        path: DocPath,
        obj: &T,
        mask: Vec<String>,
        transforms: Vec<(String, Transform)>,
    ) -> &mut Self {
        self.put(path, obj, Some(mask), None);
        if let Some(last) = self.writes.last_mut() {
            last.transforms = transforms;
        }
        self
    }

    /// Also sets `field` of the document the last queued write changes to the time
    /// Firestore processes the commit ([`Transform::RequestTime`]).
    pub fn and_request_time(&mut self, field: &str) -> &mut Self {
        if let Some(last) = self.writes.last_mut() {
            last.transforms.push((field.to_owned(), Transform::RequestTime));
        }
        self
    }

    /// Takes the writes to `path` out of this set, in order, and returns them as a set.
    #[must_use]
    pub fn split_off_document(&mut self, path: &DocPath) -> WriteSet {
        let (mine, rest) = std::mem::take(&mut self.writes)
            .into_iter()
            .partition(|w| &w.path == path);
        self.writes = rest;
        WriteSet { writes: mine }
    }

    /// Appends every write of `other`.
    pub fn extend(&mut self, other: WriteSet) -> &mut Self {
        self.writes.extend(other.writes);
        self
    }

    fn put<T: Serialize>(
        &mut self,
        path: DocPath,
        obj: &T,
        mask: Option<Vec<String>>,
        precondition: Option<Precondition>,
    ) -> &mut Self {
        self.writes.push(PendingWrite {
            path,
            // Encoded now, with Firestore's own serializer, so that timestamps stay timestamps.
            fields: Some(
                FirestoreDb::serialize_to_doc("", obj)
                    .expect("document types serialise")
                    .fields,
            ),
            mask,
            transforms: Vec::new(),
            precondition,
        });
        self
    }
}

/// Serves the emulator's conventional owner token, so that no Google credentials are
/// looked up and the emulator's security rules do not apply.
#[derive(Debug)]
struct EmulatorOwner(EntityTag);

impl CredentialsProvider for EmulatorOwner {
    async fn headers(
        &self,
        extensions: http::Extensions,
    ) -> Result<CacheableResource<http::HeaderMap>, CredentialsError> {
        if extensions.get::<EntityTag>() == Some(&self.0) {
            return Ok(CacheableResource::NotModified);
        }
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer owner"),
        );
        Ok(CacheableResource::New {
            entity_tag: self.0.clone(),
            data: headers,
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

/// A Firestore database.
#[derive(Clone)]
pub struct Store {
    db: FirestoreDb,
    grouper: Grouper,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("database", self.db.get_database_path())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects to the database of `target`.
    pub async fn connect(target: &FirestoreTarget) -> anyhow::Result<Self> {
        let options = FirestoreDbOptions::new(target.project.clone()).with_max_retries(0);
        let db = match &target.emulator_host {
            Some(host) => {
                let options = options.with_firebase_api_url(format!("http://{host}"));
                FirestoreDb::with_options_auth(options, Credentials::from(EmulatorOwner(EntityTag::new())))
                    .await
            }
            None => FirestoreDb::with_options(options).await,
        }
        .context("connecting to Firestore")?;
        let grouper = Grouper::spawn(&db);
        Ok(Store { db, grouper })
    }

    fn full_path(&self, path: &DocPath) -> String {
        format!("{}/{}", self.db.get_documents_path(), path.0)
    }

    /// Reads `paths` in one round trip; `None` where a document does not exist.
    pub async fn get_all(&self, paths: &[DocPath]) -> anyhow::Result<Vec<Option<Snapshot>>> {
        let names: Vec<String> = paths.iter().map(|p| self.full_path(p)).collect();
        let found = self.grouper.read(names.clone()).await?;
        // For `RUST_LOG=saga::reads=debug`: what a read costs on a bill (Firestore charges
        // each document asked for, found or not, at least one per call).
        tracing::debug!(target: "saga::reads", documents = names.len(), "read");
        Ok(in_order(&names, found)
            .into_iter()
            .map(|doc| doc.map(|doc| Snapshot { doc }))
            .collect())
    }

    /// Reads one document.
    pub async fn get(&self, path: &DocPath) -> anyhow::Result<Option<Snapshot>> {
        Ok(self.get_all(std::slice::from_ref(path)).await?.pop().flatten())
    }

    /// The `limit` documents of the top-level `collection` with the largest `field`.
    pub async fn latest(&self, collection: &str, field: &str, limit: u32) -> anyhow::Result<Vec<Snapshot>> {
        let query = self
            .db
            .fluent()
            .select()
            .from(collection)
            .order(|o| o.fields([o.field(field).desc()]))
            .limit(limit)
            .query();
        let docs = tokio::time::timeout(CALL_TIMEOUT, query)
            .await
            .context("querying Firestore timed out")?
            .with_context(|| format!("querying the latest {collection} by {field}"))?;
        Ok(docs.into_iter().map(|doc| Snapshot { doc }).collect())
    }

    /// Up to `limit` documents of the top-level `collection` whose integer `flag` is
    /// `flag_value` and whose integer `field` lies in `range` (`after` < field < `before`),
    /// smallest `field` first; a caller pages by passing the last `field` it saw as `after`.
    /// Firestore needs a composite index on (`flag`, `field`) for it (Terraform creates the
    /// one the sweep uses; the emulator needs none).
    pub async fn flagged_between(
        &self,
        collection: &str,
        flag: (&str, i64),
        field: &str,
        (after, before): (i64, i64),
        limit: u32,
    ) -> anyhow::Result<Vec<Snapshot>> {
        let query = self
            .db
            .fluent()
            .select()
            .from(collection)
            .filter(|q| {
                q.for_all([
                    q.field(flag.0).eq(flag.1),
                    q.field(field).greater_than(after),
                    q.field(field).less_than(before),
                ])
            })
            .order(|o| o.fields([o.field(field).asc()]))
            .limit(limit)
            .query();
        let docs = tokio::time::timeout(CALL_TIMEOUT, query)
            .await
            .context("querying Firestore timed out")?
            .with_context(|| {
                format!(
                    "querying {collection} where {} = {} and {after} < {field} < {before}",
                    flag.0, flag.1
                )
            })?;
        tracing::debug!(target: "saga::reads", documents = docs.len().max(1), "read");
        Ok(docs.into_iter().map(|doc| Snapshot { doc }).collect())
    }

    /// Applies every write of `set` atomically, or none of them. Returns each written
    /// document's new update time, in the order the writes were queued.
    pub async fn commit(&self, set: WriteSet) -> Result<Vec<Timestamp>, CommitError> {
        // For `RUST_LOG=saga::writes=debug`: one line per document written, which the
        // benchmark counts to find the hottest shared document.
        let written = tracing::enabled!(target: "saga::writes", tracing::Level::DEBUG)
            .then(|| set.writes.iter().map(|w| w.path.clone()).collect::<Vec<_>>());
        let writes = set.writes.into_iter().map(|w| self.to_proto(w)).collect();
        let result = self.grouper.commit(writes).await;
        if let (Ok(times), Some(written)) = (&result, written) {
            let database = self.db.get_database_path().as_str();
            for (doc, at) in written.iter().zip(times) {
                // `at`: Firestore's own update time, in microseconds since the epoch.
                let at = at.seconds * 1_000_000 + i64::from(at.nanos) / 1_000;
                tracing::debug!(target: "saga::writes", doc = doc.as_str(), at, database, "written");
            }
        }
        result
    }

    fn to_proto(&self, w: PendingWrite) -> fs::Write {
        use fs::document_transform::field_transform::TransformType;
        let name = self.full_path(&w.path);
        let doc = fs::Document {
            name,
            fields: w.fields.unwrap_or_default(),
            ..Default::default()
        };
        let integer = |n: i64| fs::Value {
            value_type: Some(fs::value::ValueType::IntegerValue(n)),
        };
        let update_transforms = w
            .transforms
            .into_iter()
            .map(|(field, transform)| fs::document_transform::FieldTransform {
                field_path: field,
                transform_type: Some(match transform {
                    Transform::Increment(by) => TransformType::Increment(integer(by)),
                    Transform::Minimum(n) => TransformType::Minimum(integer(n)),
                    Transform::Maximum(n) => TransformType::Maximum(integer(n)),
                    Transform::RequestTime => TransformType::SetToServerValue(
                        fs::document_transform::field_transform::ServerValue::RequestTime.into(),
                    ),
                }),
            })
            .collect();
        fs::Write {
            operation: Some(fs::write::Operation::Update(doc)),
            update_mask: w.mask.map(|field_paths| fs::DocumentMask { field_paths }),
            update_transforms,
            current_document: w.precondition.map(Into::into),
        }
    }
}

/// `found`, keyed by name, in the order of `names`: `None` where a name was not found. A
/// name asked for more than once gets its document each time (inventory's batch asks for
/// the stock as the batch's and again among each sale's reads).
fn in_order<T: Clone>(names: &[String], mut found: HashMap<String, T>) -> Vec<Option<T>> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            if names[i + 1..].contains(name) {
                found.get(name).cloned()
            } else {
                found.remove(name)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_come_back_in_the_order_asked_and_each_time_a_name_is_asked_for() {
        // (names asked for, names found, what comes back: a found name's document is its
        // name in capitals, `-` is none)
        let cases = [
            ("a b", "b a", "A B"),
            ("a b", "b", "- B"),
            ("s a s", "s a", "S A S"),
            ("s s x s", "s", "S S - S"),
        ];
        let words = |text: &str| text.split(' ').map(str::to_owned).collect::<Vec<_>>();
        for (asked, present, want) in cases {
            let found = words(present)
                .into_iter()
                .map(|n| (n.clone(), n.to_uppercase()))
                .collect::<HashMap<_, _>>();
            let got = in_order(&words(asked), found);
            let want: Vec<Option<String>> =
                words(want).into_iter().map(|w| (w != "-").then_some(w)).collect();
            assert_eq!(got, want, "asked {asked}, found {present}");
        }
    }
}
