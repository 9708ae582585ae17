//! Push authentication on the real emulators: a worker configured with a push audience and
//! service account takes only pushes that carry a valid Google-style OIDC token for them.
//! The test plays Google: it generates a key pair, serves its JWKS on loopback and signs
//! tokens; each bad token is refused and leaves no trace in Firestore.

// A failed unwrap in a test is a failed assertion.
#![allow(clippy::unwrap_used)]

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::RsaKeyPair;
use axum::Json;
use axum::routing::get;
use base64::Engine as _;
use e2e::{TestStack, new_uuid, saga_message};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use saga::config::{Config, PushAuth};
use saga::contract::Service;
use saga::service::Running;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

const AUDIENCE: &str = "https://orders-123456789.europe-west1.run.app";
const PUSH_ACCOUNT: &str = "saga-push@my-project.iam.gserviceaccount.com";
const KID: &str = "test-key-1";

/// A signing key, as Google's would be.
struct Key(EncodingKey);

impl Key {
    fn generate() -> Key {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let der = pair.as_der().unwrap();
        // jsonwebtoken's aws-lc backend takes a PKCS#8 key as PEM, not as raw DER.
        let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        );
        Key(EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap())
    }

    fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.0, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some(KID.to_owned());
        jwk
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(KID.to_owned());
        jsonwebtoken::encode(&header, claims, &self.0).unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The claims of a real Pub/Sub push token.
fn push_claims() -> Value {
    json!({
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "email": PUSH_ACCOUNT,
        "email_verified": true,
        "iat": now(),
        "exp": now() + 3600,
        "sub": "113774264463038321964",
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

/// Serves `keys` as a JWKS on loopback and returns its URL.
async fn serve_jwks(keys: Vec<Jwk>) -> String {
    let set = serde_json::to_value(JwkSet { keys }).unwrap();
    let app = axum::Router::new().route("/certs", get(move || async move { Json(set.clone()) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/certs", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn only_pushes_with_a_valid_token_of_the_push_account_are_processed() {
    let stack = TestStack::start("push auth").await;
    let google = Key::generate();
    let impostor = Key::generate();
    let jwks_url = serve_jwks(vec![google.jwk()]).await;

    // An orders worker that verifies tokens, on the test's project and emulators.
    let emulators = e2e::shared_emulators();
    let mut config = Config::for_emulators(
        Service::Orders,
        &stack.project,
        &emulators.pubsub,
        &emulators.firestore,
    );
    config.push_auth = PushAuth::Verify {
        audience: AUDIENCE.to_owned(),
        service_account: PUSH_ACCOUNT.to_owned(),
        jwks_url: Some(jwks_url),
    };
    let orders = Running::start(&config, devstack::router_of(Service::Orders))
        .await
        .unwrap();

    let push = |authorization: Option<String>| {
        let stack = &stack;
        let url = format!("{}/push/frontend", orders.url());
        async move {
            let uuid = new_uuid();
            let data = saga_message(&uuid, "widget", 1, "jack").to_string();
            let body = saga::push::envelope(
                "projects/p/subscriptions/frontend-sub",
                "1",
                data.as_bytes(),
                &BTreeMap::new(),
            );
            let mut request = stack
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body);
            if let Some(a) = authorization {
                request = request.header("authorization", a);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body, uuid)
        }
    };
    let bearer = |token: String| Some(format!("Bearer {token}"));

    let (status, body, uuid) = push(bearer(google.sign(&push_claims()))).await;
    assert_eq!(status, 200, "a good token is accepted: {body}");
    assert!(
        stack.step(&uuid, Service::Orders).await.is_some(),
        "and the step ran"
    );

    for (what, authorization, expected) in bad_tokens(&google, &impostor) {
        let (status, body, uuid) = push(authorization).await;
        assert_eq!(status, expected, "{what}: {body}");
        assert!(body["error"].is_string(), "{what}: {body}");
        assert!(
            stack.step(&uuid, Service::Orders).await.is_none(),
            "{what}: nothing was written"
        );
        assert!(
            stack.doc(&format!("users/jack/orders/{uuid}")).await.is_none(),
            "{what}: no order"
        );
    }
    orders.stop().await.unwrap();
}

/// Each way a push can be refused, with the status it must get.
fn bad_tokens(google: &Key, impostor: &Key) -> Vec<(&'static str, Option<String>, u16)> {
    let bearer = |token: String| Some(format!("Bearer {token}"));
    let expired = with(
        with(push_claims(), "exp", json!(now() - 3600)),
        "iat",
        json!(now() - 7200),
    );
    let tampered = {
        let token = google.sign(&push_claims());
        let (rest, _) = token.rsplit_once('.').unwrap();
        format!(
            "{rest}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 256])
        )
    };
    vec![
        ("missing header", None, 401),
        ("not a bearer token", Some("Basic dXNlcjpwYXNz".to_owned()), 401),
        ("malformed token", bearer("not-a-jwt".to_owned()), 401),
        (
            "wrong audience",
            bearer(google.sign(&with(push_claims(), "aud", json!("https://other.run.app")))),
            401,
        ),
        (
            "wrong issuer",
            bearer(google.sign(&with(push_claims(), "iss", json!("https://evil.example.com")))),
            401,
        ),
        (
            "no issuer",
            bearer(google.sign(&without(push_claims(), "iss"))),
            401,
        ),
        ("expired", bearer(google.sign(&expired)), 401),
        (
            "signed by another key",
            bearer(impostor.sign(&push_claims())),
            401,
        ),
        ("bad signature", bearer(tampered), 401),
        (
            "wrong email",
            bearer(google.sign(&with(push_claims(), "email", json!("someone@else.com")))),
            403,
        ),
        (
            "unverified email",
            bearer(google.sign(&with(push_claims(), "email_verified", json!(false)))),
            403,
        ),
        (
            "no email_verified claim",
            bearer(google.sign(&without(push_claims(), "email_verified"))),
            403,
        ),
    ]
}
