//! Idempotent `POST /order`: a client that sends an `Idempotency-Key` header and retries
//! (after a timeout, a dropped connection, a 503) gets the same saga, never a second one.
//!
//! Each key is a Firestore document, so it holds across instances:
//! `idempotency-keys/{sha256(key)}` with the saga's uuid, a hash of the request, and whether
//! the saga's first message was published. A retry with the same key and the same body
//! answers with the same uuid; if the first attempt never got its message out, the retry
//! publishes the identical message (the saga's steps drop duplicates). The same key with
//! another body is refused with 422. Keys are honoured for [`RETENTION`], then expire (a
//! Firestore TTL policy on `expires_at` deletes them).

use crate::ApiError;
use aws_lc_rs::digest::{SHA256, digest};
use axum::http::HeaderMap;
use firestore::FirestoreTimestamp;
use saga::contract::collections;
use saga::domain::SagaId;
use saga::engine::retry::until_committed;
use saga::gcp::store::{CommitError, DocPath, Precondition, Store, WriteSet};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt::Write as _;
use std::time::Duration;

/// The request header.
pub const HEADER: &str = "idempotency-key";

/// Longest key accepted, in characters.
pub const MAX_KEY_CHARS: usize = 128;

/// How long a key is honoured: far longer than any client keeps retrying one request.
pub const RETENTION: Duration = Duration::from_hours(24);

/// A client's idempotency key, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    /// The key of a request, if it sent one.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Key>, ApiError> {
        let mut values = headers.get_all(HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        let bad = |why: &str| ApiError::BadIdempotencyKey(why.to_owned());
        // Which of several would be meant is a guess; a proxy may also join them into one.
        if values.next().is_some() {
            return Err(bad("must be sent once"));
        }
        let key = value.to_str().map_err(|_| bad("must be printable ASCII"))?;
        if key.is_empty() || key.len() > MAX_KEY_CHARS {
            return Err(bad(&format!("must be 1 to {MAX_KEY_CHARS} characters")));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("must be printable ASCII without spaces"));
        }
        Ok(Some(Key(key.to_owned())))
    }

    /// The key's document: named by a hash, since a key may hold any character.
    pub fn path(&self) -> DocPath {
        DocPath::new([collections::IDEMPOTENCY_KEYS, &hex_sha256(self.0.as_bytes())])
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    digest(&SHA256, bytes)
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A hash of what the request asks for, the same however its JSON is spelled (key order,
/// whitespace).
pub fn request_hash(body: &[u8]) -> String {
    fn canonical(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    canonical(&map[k], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = String::new();
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => canonical(&value, &mut text),
        // Only called for bodies that parsed; the raw bytes are a fine fallback anyway.
        Err(_) => text.push_str(&String::from_utf8_lossy(body)),
    }
    hex_sha256(text.as_bytes())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyDoc {
    request_hash: String,
    uuid: String,
    published: bool,
    created: FirestoreTimestamp,
    expires_at: FirestoreTimestamp,
}

/// What a key says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First use: start the saga `uuid`.
    New(SagaId),
    /// A retry of the request that started `uuid`; `published` tells whether its message
    /// went out.
    Retry {
        /// The saga.
        uuid: SagaId,
        /// Whether the saga's first message was published.
        published: bool,
    },
}

/// Claims `key` for a request whose [`request_hash`] is `hash`.
pub async fn claim(store: &Store, key: &Key, hash: &str) -> Result<Claim, ApiError> {
    let path = key.path();
    until_committed(|_| {
        let path = &path;
        async move {
            let current = store.get(path).await.map_err(ApiError::Unavailable)?;
            let now = FirestoreTimestamp::now();
            let precondition = match &current {
                None => Precondition::Absent,
                Some(snapshot) => {
                    let doc: KeyDoc = snapshot.decode().map_err(ApiError::Unavailable)?;
                    if doc.expires_at > now {
                        if doc.request_hash != hash {
                            return Err(ApiError::KeyReused);
                        }
                        let uuid = SagaId::parse(&doc.uuid).ok_or_else(|| {
                            ApiError::Unavailable(anyhow::anyhow!("key {path} holds no uuid"))
                        })?;
                        return Ok(Some(Claim::Retry {
                            uuid,
                            published: doc.published,
                        }));
                    }
                    // Expired but not yet removed by the TTL policy: the key is free again.
                    Precondition::Unchanged(snapshot.update_time())
                }
            };
            let uuid = SagaId::new();
            let expires = firestore::jiff::SignedDuration::try_from(RETENTION).unwrap_or_default();
            let doc = KeyDoc {
                request_hash: hash.to_owned(),
                uuid: uuid.to_string(),
                published: false,
                created: now,
                expires_at: FirestoreTimestamp(now.0.checked_add(expires).unwrap_or(now.0)),
            };
            let mut writes = WriteSet::new();
            writes.update(path.clone(), &doc, None, Some(precondition));
            match store.commit(writes).await {
                Ok(_) => Ok(Some(Claim::New(uuid))),
                Err(CommitError::Conflict(_)) => Ok(None),
                Err(CommitError::Unavailable(e)) => Err(ApiError::Unavailable(e)),
            }
        }
    })
    .await
}

#[derive(Serialize)]
struct Published {
    published: bool,
}

/// Records that the saga of `key` published its first message, so retries stop
/// republishing it. Best effort: if it fails, a retry only publishes a duplicate that the
/// saga drops.
pub async fn mark_published(store: &Store, key: &Key) {
    let mut writes = WriteSet::new();
    writes.update(
        key.path(),
        &Published { published: true },
        Some(&["published"]),
        Some(Precondition::Exists),
    );
    if let Err(e) = store.commit(writes).await {
        tracing::warn!(error = %e, "could not mark an idempotency key published");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_bytes(value).unwrap());
        h
    }

    #[test]
    fn keys_of_1_to_128_printable_characters_are_taken() {
        assert_eq!(Key::from_headers(&HeaderMap::new()).unwrap(), None);
        assert!(
            Key::from_headers(&headers(b"order-42/retry:a"))
                .unwrap()
                .is_some()
        );
        assert!(
            Key::from_headers(&headers("k".repeat(128).as_bytes()))
                .unwrap()
                .is_some()
        );
        for bad in [&b""[..], "k".repeat(129).as_bytes(), b"has space", b"caf\xc3\xa9"] {
            assert!(Key::from_headers(&headers(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_key_sent_twice_is_refused_even_when_both_are_valid() {
        let mut twice = headers(b"a1");
        twice.append(HEADER, HeaderValue::from_static("a1"));
        let Err(ApiError::BadIdempotencyKey(why)) = Key::from_headers(&twice) else {
            panic!("two keys are taken");
        };
        assert_eq!(why, "must be sent once");
    }

    #[test]
    fn the_request_hash_ignores_key_order_and_whitespace_but_not_values() {
        let a = request_hash(br#"{"item":"widget","quantity":5,"user":"jack","x":{"b":1,"a":2}}"#);
        let b = request_hash(
            b"{ \"user\": \"jack\", \"x\": {\"a\":2, \"b\":1}, \"quantity\": 5, \"item\": \"widget\" }",
        );
        let c = request_hash(br#"{"item":"widget","quantity":6,"user":"jack","x":{"b":1,"a":2}}"#);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn key_documents_are_named_by_hash_so_any_key_is_a_safe_id() {
        let key = Key::from_headers(&headers(b"../../users/jack")).unwrap().unwrap();
        let path = key.path();
        assert!(path.as_str().starts_with("idempotency-keys/"));
        assert_eq!(path.as_str().matches('/').count(), 1);
    }
}
