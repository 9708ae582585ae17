//! Push authentication: only Pub/Sub may drive the workers.
//!
//! Pub/Sub signs each push with a Google OIDC token (`Authorization: Bearer ...`) issued to
//! the subscription's push service account, for the audience the subscription names. A
//! worker configured with that audience and service account checks, before doing any work:
//! the signature against Google's published keys, the issuer, the audience, the expiry, and
//! that the token belongs to the push service account with a verified email.
//!
//! The signature, audience, issuer and expiry checks are google-cloud-auth's ID-token
//! verifier. Around it, this module adds what that verifier leaves out or gets wrong in
//! version 1.19: it accepts tokens without `iss` or `aud`, and IAP's issuer; its email
//! check panics when a claim is missing (so the email is checked here); its key cache fails
//! concurrent calls instead of waiting (so calls are serialised); and its key download has
//! no timeout (so one is added).

use crate::config::PushAuth;
use google_cloud_auth::credentials::idtoken::verifier::{Builder, Map, Value, Verifier};
use std::fmt;
use std::time::Duration;

/// Longest a verification may take, key download included.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// The issuers of Google's OIDC tokens.
const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// Why a push was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No usable bearer token, or one that is not a valid Google token for this audience
    /// (malformed, bad signature, expired, wrong audience or issuer): 401.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A valid token, but not the push service account's: 403.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The keys could not be fetched: 503, and Pub/Sub retries.
    #[error("cannot verify push tokens right now: {0}")]
    Unavailable(String),
}

/// Verifies push tokens for one audience and service account.
pub struct PushVerifier {
    verifier: Verifier,
    service_account: String,
    gate: tokio::sync::Mutex<()>,
}

impl fmt::Debug for PushVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushVerifier")
            .field("service_account", &self.service_account)
            .finish_non_exhaustive()
    }
}

impl PushVerifier {
    /// A verifier for `auth`, or `None` if verification is off.
    pub fn from_config(auth: &PushAuth) -> Option<Self> {
        match auth {
            PushAuth::Off => None,
            PushAuth::Verify {
                audience,
                service_account,
                jwks_url,
            } => {
                let mut builder = Builder::new([audience.clone()]);
                if let Some(url) = jwks_url {
                    builder = builder.with_jwks_url(url.clone());
                }
                Some(PushVerifier {
                    verifier: builder.build(),
                    service_account: service_account.clone(),
                    gate: tokio::sync::Mutex::new(()),
                })
            }
        }
    }

    /// Checks the value of an `Authorization` header.
    pub async fn verify(&self, authorization: Option<&str>) -> Result<(), AuthError> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AuthError::Unauthenticated("no bearer token".to_owned()))?;
        let claims = {
            let _one_at_a_time = self.gate.lock().await;
            tokio::time::timeout(VERIFY_TIMEOUT, self.verifier.verify(token))
                .await
                .map_err(|_| AuthError::Unavailable("verification timed out".to_owned()))?
                .map_err(|e| {
                    if e.is_load_cert() {
                        AuthError::Unavailable(e.to_string())
                    } else {
                        AuthError::Unauthenticated(e.to_string())
                    }
                })?
        };
        check_claims(&claims, &self.service_account)
    }
}

/// The checks google-cloud-auth's verifier does not make (see the module doc).
fn check_claims(claims: &Map<String, Value>, service_account: &str) -> Result<(), AuthError> {
    let iss = claims.get("iss").and_then(Value::as_str);
    if !iss.is_some_and(|iss| GOOGLE_ISSUERS.contains(&iss)) {
        return Err(AuthError::Unauthenticated(format!(
            "issuer {iss:?} is not Google's"
        )));
    }
    if claims.get("aud").is_none() {
        return Err(AuthError::Unauthenticated("no audience".to_owned()));
    }
    if claims.get("email_verified").and_then(Value::as_bool) != Some(true) {
        return Err(AuthError::Forbidden(
            "the token's email is not verified".to_owned(),
        ));
    }
    match claims.get("email").and_then(Value::as_str) {
        Some(email) if email == service_account => Ok(()),
        other => Err(AuthError::Forbidden(format!(
            "the token belongs to {other:?}, not the push service account"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: &Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn claims_of_the_push_service_account_pass() {
        let ok = json!({"iss": "https://accounts.google.com", "aud": "a", "email": "push@p", "email_verified": true});
        assert_eq!(check_claims(&claims(&ok), "push@p"), Ok(()));
    }

    #[test]
    fn missing_or_wrong_claims_are_refused_without_panicking() {
        let cases = [
            (
                json!({"aud": "a", "email": "push@p", "email_verified": true}),
                "iss",
            ),
            (
                json!({"iss": "https://cloud.google.com/iap", "aud": "a", "email": "push@p", "email_verified": true}),
                "iss",
            ),
            (
                json!({"iss": "accounts.google.com", "email": "push@p", "email_verified": true}),
                "aud",
            ),
            (
                json!({"iss": "accounts.google.com", "aud": "a", "email": "push@p"}),
                "verified",
            ),
            (
                json!({"iss": "accounts.google.com", "aud": "a", "email": "push@p", "email_verified": "true"}),
                "verified",
            ),
            (
                json!({"iss": "accounts.google.com", "aud": "a", "email_verified": true}),
                "push service account",
            ),
            (
                json!({"iss": "accounts.google.com", "aud": "a", "email": "other@p", "email_verified": true}),
                "push service account",
            ),
        ];
        for (c, what) in cases {
            let err = check_claims(&claims(&c), "push@p").unwrap_err();
            assert!(err.to_string().contains(what), "{c}: {err}");
        }
    }
}
