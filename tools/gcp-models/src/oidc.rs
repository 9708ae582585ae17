//! A stand-in for Google's OIDC issuer, as far as push tokens go.
//!
//! Follows Pub/Sub "Authentication for push subscriptions" (the token Pub/Sub puts in
//! `Authorization: Bearer` of each push: issued by `https://accounts.google.com` to the
//! subscription's push service account, for the audience the subscription names, with
//! `email` and `email_verified`, valid for an hour) and Google's "Verify a Google ID token"
//! (RS256 signatures whose public keys are published as a JWKS, each key named by `kid`).
//!
//! What it leaves out: key rotation, the discovery document, and `azp`/`sub` values that
//! mean anything (they are fixed placeholders).

use anyhow::Context as _;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::RsaKeyPair;
use axum::Json;
use axum::routing::get;
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The issuer Google puts in the ID tokens it signs.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// How long a token Pub/Sub mints is valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_hours(1);

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// One signing key of the issuer, as Google's would be.
pub struct Issuer {
    key: EncodingKey,
    kid: String,
    name: String,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("kid", &self.kid)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl Issuer {
    /// A new issuer for Google's issuer name, with a fresh 2048-bit RSA key.
    ///
    /// # Panics
    /// If the key cannot be generated (the system's random source failed).
    pub fn generate() -> Issuer {
        Self::generate_for(GOOGLE_ISSUER)
    }

    /// A new issuer that signs as `issuer` (tests use another name to play an impostor).
    ///
    /// # Panics
    /// If the key cannot be generated.
    pub fn generate_for(issuer: &str) -> Issuer {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("generating an RSA key");
        let der = pair.as_der().expect("a fresh key encodes as PKCS#8");
        // jsonwebtoken's aws-lc backend takes a PKCS#8 key as PEM, not as raw DER.
        let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        );
        Issuer {
            key: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("a PKCS#8 RSA key in PEM"),
            kid: format!("local-key-{}", NEXT_KEY.fetch_add(1, Ordering::Relaxed)),
            name: issuer.to_owned(),
        }
    }

    /// The public half of the key, as a JWK.
    ///
    /// # Panics
    /// Never for an RSA key.
    pub fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.key, Algorithm::RS256).expect("an RSA key has a JWK");
        jwk.common.key_id = Some(self.kid.clone());
        jwk
    }

    /// Signs `claims` as they are.
    ///
    /// # Panics
    /// Never for a JSON object of claims.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).expect("signing claims")
    }

    /// The claims of the token Pub/Sub mints for a push to `audience` as `push_account`.
    pub fn push_claims(&self, audience: &str, push_account: &str) -> Value {
        let now = now();
        json!({
            "iss": self.name,
            "aud": audience,
            "azp": "113774264463038321964",
            "sub": "113774264463038321964",
            "email": push_account,
            "email_verified": true,
            "iat": now,
            "exp": now + TOKEN_LIFETIME.as_secs(),
        })
    }

    /// A signed push token, as Pub/Sub puts in `Authorization: Bearer`.
    pub fn push_token(&self, audience: &str, push_account: &str) -> String {
        self.sign(&self.push_claims(audience, push_account))
    }
}

/// A JWKS served on loopback, as Google serves its signing keys.
#[derive(Debug)]
pub struct JwksServer {
    /// The URL of the key set.
    pub url: String,
    fetches: std::sync::Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    /// Serves `keys` at `http://127.0.0.1:PORT/certs`.
    pub async fn start(keys: Vec<Jwk>) -> anyhow::Result<Self> {
        let set = serde_json::to_value(JwkSet { keys })?;
        let fetches = std::sync::Arc::new(AtomicU64::new(0));
        let counted = fetches.clone();
        let app = axum::Router::new().route(
            "/certs",
            get(move || async move {
                counted.fetch_add(1, Ordering::Relaxed);
                Json(set.clone())
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the JWKS port")?;
        let url = format!("http://{}/certs", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(JwksServer { url, fetches, task })
    }

    /// How many times the key set was downloaded.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_token_carries_what_pubsub_puts_in_one_and_verifies_with_the_jwk() {
        let issuer = Issuer::generate();
        let token = issuer.push_token("aud-1", "push@p.iam.gserviceaccount.com");
        let key = jsonwebtoken::DecodingKey::from_jwk(&issuer.jwk()).expect("a usable JWK");
        let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
        validation.set_audience(&["aud-1"]);
        validation.set_issuer(&[GOOGLE_ISSUER]);
        let data = jsonwebtoken::decode::<Value>(&token, &key, &validation).expect("it verifies");
        assert_eq!(data.claims["email"], "push@p.iam.gserviceaccount.com");
        assert_eq!(data.claims["email_verified"], true);
        assert_eq!(data.header.kid, issuer.jwk().common.key_id);
        let other = Issuer::generate();
        assert_ne!(other.jwk().common.key_id, issuer.jwk().common.key_id);
    }
}
