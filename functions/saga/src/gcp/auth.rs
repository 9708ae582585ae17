//! Push authentication: only Pub/Sub may drive the workers.
//!
//! Pub/Sub signs each push with a Google OIDC token (`Authorization: Bearer ...`) issued to
//! the subscription's push service account, for the audience the subscription names. What
//! reaches the worker depends on how it is deployed ([`PushAuth`]):
//!
//! - **Behind Cloud Run's invoker IAM** (`cloud-run-iam`, as `terraform/` deploys it), Cloud
//!   Run's front end verifies the token's signature, audience and expiry and the caller's
//!   `run.invoker` role, then replaces the signature with `SIGNATURE_REMOVED_BY_GOOGLE`
//!   before the request reaches the container (Cloud Run "Troubleshooting", section
//!   "signature-removed"). No signature check can pass on such a token, so the worker accepts
//!   only the stripped form and checks every claim itself: issuer, audience, expiry, and the
//!   push account's verified email. A token that still carries a signature did not come
//!   through Cloud Run's check and is refused, as is any stripped token outside Cloud Run
//!   (`K_SERVICE` unset). When a request carries `X-Serverless-Authorization`, Cloud Run
//!   checks and strips that header instead and passes `Authorization` through untouched; the
//!   worker then reads the token Cloud Run checked, never the other one.
//! - **Invoker IAM disabled** (`signature`): nothing checked the token before the worker,
//!   which verifies the signature against Google's published keys, then every claim.
//!
//! Either way the claims are checked by [`check_claims`], a pure function. The signature
//! check is google-cloud-auth's ID-token verifier, around which this module adds what that
//! verifier leaves out or gets wrong in version 1.19: it accepts tokens without `iss` or
//! `aud`, and IAP's issuer; its email check panics when a claim is missing (so the email is
//! checked here); its key cache fails concurrent calls instead of waiting (so calls are
//! serialised); its key download has no timeout (so one is added); and it downloads the
//! keys again for every token whose key id it does not hold, so that a flood of made-up key
//! ids would make one download each, every push queued behind them (so, once a token has
//! verified, a key id not seen in a valid token makes at most one look-up per
//! [`KEY_LOOKUP_EVERY`]; see `KeyIds`).

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use google_cloud_auth::credentials::idtoken::verifier::{Builder, Map, Value, Verifier};
use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Who a push token must name: the audience the subscription mints it for and the account
/// it is issued to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushIdentity {
    /// The expected `aud` claim.
    pub audience: String,
    /// The expected `email` claim (with `email_verified`).
    pub service_account: String,
}

/// How a push worker checks that a push really comes from Pub/Sub: the value of
/// `PUSH_AUTH` ([`crate::runtime::config::env::PUSH_AUTH`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushAuth {
    /// `cloud-run-iam`, the deployment of `terraform/`: Cloud Run's front end has verified
    /// the token's signature and the caller's `run.invoker` role, and replaced the signature
    /// with `SIGNATURE_REMOVED_BY_GOOGLE`. The worker accepts only such stripped tokens and
    /// checks every claim; a token that still carries a signature did not come through that
    /// check.
    CloudRunIam {
        /// The claims every token must carry.
        expected: PushIdentity,
        /// `K_SERVICE`, which Cloud Run sets: without it this is not Cloud Run, and no
        /// stripped token is accepted, whatever the configuration says.
        k_service: Option<String>,
    },
    /// `signature`, for a service with invoker IAM disabled (or run outside Cloud Run): the
    /// worker verifies the signature itself, against Google's keys, and every claim.
    Signature {
        /// The claims every token must carry.
        expected: PushIdentity,
        /// Where to fetch the signing keys; `None` for Google's (tests serve their own).
        jwks_url: Option<String>,
    },
    /// `off`: no check, for the emulators, which send no token.
    Off,
}

impl PushAuth {
    /// The same check for tokens issued to `account` instead of the push account: for a
    /// caller other than Pub/Sub on the same service (Cloud Scheduler calling the sweep).
    #[must_use]
    pub fn for_account(&self, account: &str) -> PushAuth {
        let mut auth = self.clone();
        if let PushAuth::CloudRunIam { expected, .. } | PushAuth::Signature { expected, .. } = &mut auth {
            account.clone_into(&mut expected.service_account);
        }
        auth
    }

    /// The mode's name, as `PUSH_AUTH` ([`crate::runtime::config::env::PUSH_AUTH`]) spells it.
    pub fn name(&self) -> &'static str {
        match self {
            PushAuth::CloudRunIam { .. } => "cloud-run-iam",
            PushAuth::Signature { .. } => "signature",
            PushAuth::Off => "off",
        }
    }
}

/// Longest a verification may take, key download included.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// Least time between two key look-ups for tokens whose key id no valid token carried yet
/// (see `KeyIds`). Issuers publish a key before they sign with it (the usual rotation; no
/// Google page found states Google's schedule, and the local JWKS model serves one key, so
/// rotation is not modelled), so a genuine push meets this only once Google signs with a
/// new key: as a 503 that Pub/Sub retries, or,
/// during a flood of made-up key ids, as retries until its own look-up gets the slot.
pub const KEY_LOOKUP_EVERY: Duration = Duration::from_secs(10);

/// What Cloud Run's front end puts in place of a token's signature once it has verified it.
pub const SIGNATURE_REMOVED: &str = "SIGNATURE_REMOVED_BY_GOOGLE";

/// The header Cloud Run checks instead of `Authorization` when a request carries it.
pub const X_SERVERLESS_AUTHORIZATION: &str = "x-serverless-authorization";

/// How far past its `exp` a stripped token is still taken: Cloud Run checked the expiry when
/// the request arrived, moments before, on a clock that may differ slightly from this one.
pub const EXPIRY_LEEWAY: Duration = Duration::from_secs(30);

/// The issuers of Google's OIDC tokens.
const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// Why a push was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No usable bearer token, or one that is not a valid Google token for this audience
    /// (malformed, bad signature, expired, wrong audience or issuer, a signed token where
    /// Cloud Run should have stripped it): 401.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A valid token, but not the push service account's: 403.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The keys could not be fetched: 503, and Pub/Sub retries.
    #[error("cannot verify push tokens right now: {0}")]
    Unavailable(String),
}

fn unauthenticated(why: impl Into<String>) -> AuthError {
    AuthError::Unauthenticated(why.into())
}

/// Checks push tokens as the worker's [`PushAuth`] mode says.
pub struct PushVerifier {
    expected: PushIdentity,
    check: Check,
}

enum Check {
    /// Cloud Run verified the signature; `on_cloud_run` is whether `K_SERVICE` is set.
    Stripped { on_cloud_run: bool },
    /// The worker verifies the signature, one call at a time (see the module doc): the
    /// lock on the key ids is that gate.
    Signed {
        verifier: Box<Verifier>,
        key_ids: tokio::sync::Mutex<KeyIds>,
    },
}

/// The key ids of the tokens that verified, and when a token with another key id last made
/// the verifier look for its key. A pure rule, [`KeyIds::may_look_up`], decides whether a
/// token may reach the verifier.
#[derive(Debug, Default)]
struct KeyIds {
    verified: HashSet<String>,
    last_lookup: Option<Instant>,
}

impl KeyIds {
    /// Whether a token signed with key id `kid` may be verified at `now` (and if that may
    /// download keys, the look-up is recorded). Yes for a key id a valid token carried
    /// before, and for any token until one has verified (a worker that just started holds
    /// no keys, and must not refuse Google's while it learns them). Otherwise only if no
    /// such look-up was made in the last [`KEY_LOOKUP_EVERY`].
    fn may_look_up(&mut self, kid: &str, now: Instant) -> bool {
        if self.verified.is_empty() || self.verified.contains(kid) {
            return true;
        }
        if self
            .last_lookup
            .is_some_and(|at| now.saturating_duration_since(at) < KEY_LOOKUP_EVERY)
        {
            return false;
        }
        self.last_lookup = Some(now);
        true
    }

    /// A token signed with `kid` verified: its key is Google's.
    fn verified(&mut self, kid: String) {
        self.verified.insert(kid);
    }
}

impl fmt::Debug for PushVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushVerifier")
            .field("mode", &self.mode())
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl PushVerifier {
    /// A verifier for `auth`, or `None` if verification is off.
    pub fn from_config(auth: &PushAuth) -> Option<Self> {
        match auth {
            PushAuth::Off => None,
            PushAuth::CloudRunIam { expected, k_service } => Some(PushVerifier {
                expected: expected.clone(),
                check: Check::Stripped {
                    on_cloud_run: k_service.is_some(),
                },
            }),
            PushAuth::Signature { expected, jwks_url } => {
                let mut builder = Builder::new([expected.audience.clone()]);
                if let Some(url) = jwks_url {
                    builder = builder.with_jwks_url(url.clone());
                }
                Some(PushVerifier {
                    expected: expected.clone(),
                    check: Check::Signed {
                        verifier: Box::new(builder.build()),
                        key_ids: tokio::sync::Mutex::new(KeyIds::default()),
                    },
                })
            }
        }
    }

    /// The mode, as `PUSH_AUTH` names it.
    pub fn mode(&self) -> &'static str {
        match self.check {
            Check::Stripped { .. } => "cloud-run-iam",
            Check::Signed { .. } => "signature",
        }
    }

    /// Checks the token of a push request, given its headers.
    pub async fn verify(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        let claims = match &self.check {
            Check::Stripped { on_cloud_run } => {
                // The header Cloud Run checked: X-Serverless-Authorization when present.
                let header = match single(headers, X_SERVERLESS_AUTHORIZATION)? {
                    Some(header) => Some(header),
                    None => single(headers, AUTHORIZATION.as_str())?,
                };
                stripped_claims(bearer(header)?, *on_cloud_run)?
            }
            Check::Signed { verifier, key_ids } => {
                let token = bearer(single(headers, AUTHORIZATION.as_str())?)?;
                // A token whose header cannot be read has no key id to look up: the
                // verifier refuses it without downloading anything.
                let kid = jsonwebtoken::decode_header(token)
                    .ok()
                    .and_then(|header| header.kid);
                // The wait for the gate counts too: requests that make the verifier fetch
                // keys must not hold the others past the timeout.
                let verified = async {
                    let mut key_ids = key_ids.lock().await;
                    if let Some(kid) = &kid
                        && !key_ids.may_look_up(kid, Instant::now())
                    {
                        return Err(AuthError::Unavailable(format!(
                            "the token's key is not one this worker holds, and it looked for \
                             new keys less than {} s ago",
                            KEY_LOOKUP_EVERY.as_secs()
                        )));
                    }
                    let claims = verifier.verify(token).await.map_err(|e| {
                        if e.is_load_cert() && key_fetch_is_transient(&e) {
                            AuthError::Unavailable(e.to_string())
                        } else {
                            unauthenticated(e.to_string())
                        }
                    })?;
                    if let Some(kid) = kid {
                        key_ids.verified(kid);
                    }
                    Ok(claims)
                };
                tokio::time::timeout(VERIFY_TIMEOUT, verified)
                    .await
                    .map_err(|_| AuthError::Unavailable("verification timed out".to_owned()))??
            }
        };
        check_claims(&claims, &self.expected, SystemTime::now())
    }
}

/// Whether a failure to find the token's key may pass: a key download that failed (503, and
/// Pub/Sub retries), rather than a key id that Google does not publish, which google-cloud-auth
/// also reports as a key-loading failure but which no retry mends (401).
fn key_fetch_is_transient(e: &google_cloud_auth::credentials::idtoken::verifier::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|source| source.downcast_ref::<google_cloud_auth::errors::CredentialsError>())
        .is_none_or(google_cloud_auth::errors::CredentialsError::is_transient)
}

/// The one value of header `name`, if any. Two are refused: which of them the front end
/// checked is not known, so neither can be trusted.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a axum::http::HeaderValue>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(unauthenticated(format!("more than one {name} header")));
    }
    Ok(first)
}

/// The token of an `Authorization`-style header value.
fn bearer(header: Option<&axum::http::HeaderValue>) -> Result<&str, AuthError> {
    header
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthenticated("no bearer token"))
}

/// The claims of a token whose signature Cloud Run replaced, read without a signature check
/// (there is none left to make): only in the stripped form, and only on Cloud Run.
fn stripped_claims(token: &str, on_cloud_run: bool) -> Result<Map<String, Value>, AuthError> {
    let signature = token.rsplit('.').next().unwrap_or_default();
    if token.split('.').count() != 3 || signature != SIGNATURE_REMOVED {
        return Err(unauthenticated(format!(
            "the token is not in the form Cloud Run forwards once it has verified it (its signature \
             replaced by {SIGNATURE_REMOVED}): it did not come through Cloud Run's invoker check"
        )));
    }
    if !on_cloud_run {
        return Err(unauthenticated(
            "a token without a signature outside Cloud Run (K_SERVICE is unset): nothing verified it",
        ));
    }
    jsonwebtoken::dangerous::insecure_decode::<Map<String, Value>>(token)
        .map(|data| data.claims)
        .map_err(|e| unauthenticated(format!("the token cannot be read: {e}")))
}

/// Every check of a push token's claims, whoever verified its signature: the issuer is
/// Google's, the audience is the worker's, it has not expired, and it belongs to the push
/// account, whose email is verified. `now` is the time to check the expiry against.
pub fn check_claims(
    claims: &Map<String, Value>,
    expected: &PushIdentity,
    now: SystemTime,
) -> Result<(), AuthError> {
    let iss = claims.get("iss").and_then(Value::as_str);
    if !iss.is_some_and(|iss| GOOGLE_ISSUERS.contains(&iss)) {
        return Err(unauthenticated(format!("issuer {iss:?} is not Google's")));
    }
    let audience_matches = match claims.get("aud") {
        Some(Value::String(aud)) => *aud == expected.audience,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&expected.audience)),
        _ => false,
    };
    if !audience_matches {
        return Err(unauthenticated(format!(
            "the audience {:?} is not this worker's",
            claims.get("aud")
        )));
    }
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    match claims.get("exp").and_then(Value::as_u64) {
        Some(exp) if exp.saturating_add(EXPIRY_LEEWAY.as_secs()) > now => {}
        Some(_) => return Err(unauthenticated("the token has expired")),
        None => return Err(unauthenticated("the token has no expiry")),
    }
    if claims.get("email_verified").and_then(Value::as_bool) != Some(true) {
        return Err(AuthError::Forbidden(
            "the token's email is not verified".to_owned(),
        ));
    }
    match claims.get("email").and_then(Value::as_str) {
        Some(email) if email == expected.service_account => Ok(()),
        other => Err(AuthError::Forbidden(format!(
            "the token belongs to {other:?}, not the push service account"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn expected() -> PushIdentity {
        PushIdentity {
            audience: "a".into(),
            service_account: "push@p".into(),
        }
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn good() -> Value {
        json!({"iss": "https://accounts.google.com", "aud": "a", "email": "push@p",
               "email_verified": true, "exp": NOW + 3600, "iat": NOW})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut c = good();
        c[key] = value;
        c
    }

    fn without(key: &str) -> Value {
        let mut c = good();
        c.as_object_mut().unwrap().remove(key);
        c
    }

    fn check(c: &Value) -> Result<(), AuthError> {
        check_claims(c.as_object().unwrap(), &expected(), now())
    }

    #[test]
    fn claims_of_the_push_service_account_pass() {
        assert_eq!(check(&good()), Ok(()));
        assert_eq!(check(&with("iss", json!("accounts.google.com"))), Ok(()));
        assert_eq!(check(&with("aud", json!(["x", "a"]))), Ok(()));
        assert_eq!(check(&with("exp", json!(NOW - 10))), Ok(()), "within the leeway");
    }

    #[test]
    fn missing_or_wrong_claims_are_refused_without_panicking() {
        let cases = [
            (without("iss"), "iss"),
            (with("iss", json!("https://cloud.google.com/iap")), "iss"),
            (without("aud"), "audience"),
            (with("aud", json!("b")), "audience"),
            (with("aud", json!(["b"])), "audience"),
            (with("exp", json!(NOW - 3600)), "expired"),
            (with("exp", json!("soon")), "expiry"),
            (without("exp"), "expiry"),
            (without("email_verified"), "verified"),
            (with("email_verified", json!("true")), "verified"),
            (with("email_verified", json!(false)), "verified"),
            (without("email"), "push service account"),
            (with("email", json!("other@p")), "push service account"),
        ];
        for (c, what) in cases {
            let err = check(&c).unwrap_err();
            assert!(err.to_string().contains(what), "{c}: {err}");
        }
    }

    #[test]
    fn a_wrong_account_is_forbidden_and_a_bad_token_unauthenticated() {
        assert!(matches!(
            check(&with("email", json!("o@p"))),
            Err(AuthError::Forbidden(_))
        ));
        assert!(matches!(
            check(&with("aud", json!("b"))),
            Err(AuthError::Unauthenticated(_))
        ));
    }

    #[test]
    fn an_unseen_key_id_makes_at_most_one_look_up_per_interval_once_a_token_verified() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut keys = KeyIds::default();
        // Until a token verifies, every key id may be looked up, Google's included.
        assert!(keys.may_look_up("made-up-1", at(0)));
        assert!(keys.may_look_up("made-up-2", at(0)));
        keys.verified("google".into());
        let cases = [
            ("google", 1, true, "a key id a valid token carried"),
            ("made-up-3", 1, true, "the first look-up since a token verified"),
            ("made-up-4", 2, false, "another within the interval"),
            ("google", 2, true, "a known key id is never held back"),
            ("made-up-3", 10, false, "the same id again, one second short"),
            ("made-up-5", 11, true, "the interval after the last look-up"),
            ("made-up-6", 11, false, "which starts the next interval"),
        ];
        for (kid, secs, may, why) in cases {
            assert_eq!(keys.may_look_up(kid, at(secs)), may, "{kid} at {secs} s: {why}");
        }
    }

    fn part(v: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn token(claims: &Value, signature: &str) -> String {
        format!(
            "{}.{}.{signature}",
            part(&json!({"alg": "RS256", "kid": "k"})),
            part(claims)
        )
    }

    #[test]
    fn only_a_stripped_token_on_cloud_run_is_read() {
        let stripped = token(&good(), SIGNATURE_REMOVED);
        let claims = stripped_claims(&stripped, true).unwrap();
        assert_eq!(claims.get("email"), Some(&json!("push@p")));

        let refused = [
            (token(&good(), "c2lnbmF0dXJl"), true, "did not come through"),
            (token(&good(), ""), true, "did not come through"),
            (format!("{stripped}.x"), true, "did not come through"),
            (SIGNATURE_REMOVED.to_owned(), true, "did not come through"),
            (stripped.clone(), false, "K_SERVICE"),
            (format!("!!.!!.{SIGNATURE_REMOVED}"), true, "cannot be read"),
        ];
        for (t, on_cloud_run, what) in refused {
            let err = stripped_claims(&t, on_cloud_run).unwrap_err();
            assert!(err.to_string().contains(what), "{t}: {err}");
        }
    }

    #[tokio::test]
    async fn behind_invoker_iam_the_header_cloud_run_checked_is_the_one_read() {
        let verifier = PushVerifier::from_config(&PushAuth::CloudRunIam {
            expected: expected(),
            k_service: Some("orders".into()),
        })
        .unwrap();
        let fresh = |email: &str| {
            let mut c = good();
            c["email"] = json!(email);
            c["exp"] = json!(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600);
            format!("Bearer {}", token(&c, SIGNATURE_REMOVED))
        };
        let headers = |pairs: &[(&'static str, String)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        assert_eq!(
            verifier
                .verify(&headers(&[("authorization", fresh("push@p"))]))
                .await,
            Ok(())
        );
        // A forged stripped Authorization beside a token Cloud Run checked for someone else.
        let forged = headers(&[
            ("authorization", fresh("push@p")),
            (X_SERVERLESS_AUTHORIZATION, fresh("operator@p")),
        ]);
        assert!(matches!(
            verifier.verify(&forged).await,
            Err(AuthError::Forbidden(_))
        ));
        assert!(matches!(
            verifier.verify(&HeaderMap::new()).await,
            Err(AuthError::Unauthenticated(_))
        ));
        // Two of a header: which one the front end checked is not known.
        for name in [X_SERVERLESS_AUTHORIZATION, "authorization"] {
            let mut twice = HeaderMap::new();
            twice.append(name, fresh("push@p").parse().unwrap());
            twice.append(name, fresh("push@p").parse().unwrap());
            let refused = verifier.verify(&twice).await;
            assert!(
                matches!(&refused, Err(AuthError::Unauthenticated(why)) if why.contains("more than one")),
                "{name} twice: {refused:?}"
            );
        }
    }
}
