//! Push authentication as a deployment runs it, on the real emulators: a token minted as
//! Pub/Sub mints it (by a local issuer whose keys the test serves as a JWKS), sent through
//! a model of Cloud Run's front end (`gcp_models::cloud_run`), to the worker.
//!
//! Behind invoker IAM, Cloud Run verifies the token and strips its signature; the worker
//! takes only such stripped tokens and checks their claims. With invoker IAM disabled, the
//! worker verifies the signature itself. Every refused push leaves no trace in Firestore.

// A failed unwrap in a test is a failed assertion.
#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use e2e::{PushAnswer, TestStack, new_uuid, saga_message};
use gcp_models::cloud_run::{self, FrontEnd, SIGNATURE_REMOVED, X_SERVERLESS_AUTHORIZATION};
use gcp_models::oidc::{Issuer, JwksServer, now};
use jsonwebtoken::jwk::JwkSet;
use saga::contract::Service;
use saga::gcp::auth::{PushAuth, PushIdentity};
use saga::runtime::config::Config;
use saga::runtime::service::Running;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

const AUDIENCE: &str = "//run.googleapis.com/projects/p/locations/europe-west1/services/orders";
const PUSH_ACCOUNT: &str = "saga-push@my-project.iam.gserviceaccount.com";
const OPERATOR: &str = "operator@my-project.iam.gserviceaccount.com";

fn identity() -> PushIdentity {
    PushIdentity {
        audience: AUDIENCE.to_owned(),
        service_account: PUSH_ACCOUNT.to_owned(),
    }
}

/// An orders worker with `push_auth`, on the test's project and emulators.
async fn worker(stack: &TestStack, push_auth: PushAuth) -> Running {
    let emulators = e2e::shared_emulators();
    let mut config = Config::for_emulators(
        Service::Orders,
        &stack.project,
        &emulators.pubsub,
        &emulators.firestore,
    );
    config.push_auth = push_auth;
    Running::start(&config, devstack::router_of(Service::Orders))
        .await
        .unwrap()
}

/// An orders worker that verifies signatures itself (invoker IAM disabled), against the
/// keys of `google` served as a JWKS, which is returned to keep it serving.
async fn signature_worker(stack: &TestStack, google: &Issuer) -> (Running, JwksServer) {
    let jwks = JwksServer::start(vec![google.jwk()]).await.unwrap();
    let auth = PushAuth::Signature {
        expected: identity(),
        jwks_url: Some(jwks.url.clone()),
    };
    (worker(stack, auth).await, jwks)
}

/// Cloud Run's front end for `worker`, as Terraform sets the service up.
async fn front_end(google: &Issuer, worker: &Running) -> FrontEnd {
    FrontEnd::start(cloud_run::Settings {
        instances: vec![worker.url()],
        audiences: vec![AUDIENCE.to_owned()],
        invokers: vec![PUSH_ACCOUNT.to_owned(), OPERATOR.to_owned()],
        jwks: JwkSet {
            keys: vec![google.jwk()],
        },
        request_timeout: saga::contract::PUSH_POLICY.ack_deadline,
        requests_per_instance: 240,
        pending_timeout: cloud_run::PENDING_TIMEOUT,
    })
    .await
    .unwrap()
}

/// The outcome of one push of a fresh saga's `frontend` message to `base`.
struct Pushed {
    answer: PushAnswer,
    uuid: String,
}

async fn push(stack: &TestStack, base: &str, headers: &[(&str, String)]) -> Pushed {
    let uuid = new_uuid();
    let data = saga_message(&uuid, "widget", 1, "jack").to_string();
    let body = saga::wire::envelope::envelope(
        &format!("projects/{}/subscriptions/frontend-sub", stack.project),
        "1",
        data.as_bytes(),
        &BTreeMap::new(),
    );
    let mut request = stack
        .http
        .post(format!("{base}/push/frontend"))
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    Pushed {
        answer: PushAnswer::read(request.send().await.unwrap()).await,
        uuid,
    }
}

/// Request headers of a push.
type Headers = Vec<(&'static str, String)>;

/// A push that must be refused: what it tries, its headers, the status it must get.
type Case = (&'static str, Headers, u16);

/// Who must have refused a push: Cloud Run's front end answers its own HTML page, the worker
/// its JSON.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refuser {
    FrontEnd,
    Worker,
}

/// Sends each of `cases` to `base` and asserts its status, who refused it, and that it left
/// no trace.
async fn assert_refused(stack: &TestStack, base: &str, cases: Vec<Case>, by: Refuser) {
    for (what, headers, status) in cases {
        let refused = push(stack, base, &headers).await;
        assert_eq!(refused.answer.status, status, "{what}: {}", refused.answer.body);
        let json: Value = serde_json::from_str(&refused.answer.body).unwrap_or(Value::Null);
        match by {
            Refuser::FrontEnd => assert!(
                refused.answer.body.starts_with("<html>"),
                "{what}: Cloud Run's page"
            ),
            Refuser::Worker => assert!(json["error"].is_string(), "{what}: the worker's JSON"),
        }
        assert_no_trace(stack, what, &refused.uuid).await;
    }
}

fn bearer(token: &str) -> Headers {
    vec![("authorization", format!("Bearer {token}"))]
}

/// `token` as Cloud Run forwards it once verified.
fn stripped(token: &str) -> String {
    let (signed, _) = token.rsplit_once('.').unwrap();
    format!("{signed}.{SIGNATURE_REMOVED}")
}

fn claims_with(google: &Issuer, key: &str, value: Value) -> Value {
    let mut claims = google.push_claims(AUDIENCE, PUSH_ACCOUNT);
    claims[key] = value;
    claims
}

async fn assert_no_trace(stack: &TestStack, what: &str, uuid: &str) {
    assert!(
        stack.step(uuid, Service::Orders).await.is_none(),
        "{what}: no step record"
    );
    assert!(
        stack.doc(&format!("users/jack/orders/{uuid}")).await.is_none(),
        "{what}: no order"
    );
}

#[tokio::test]
async fn behind_cloud_run_a_pubsub_token_completes_the_saga_and_every_bad_push_is_refused_at_the_right_link()
{
    let stack = TestStack::start("push auth chain").await;
    let google = Issuer::generate();
    let impostor = Issuer::generate();
    let iam = worker(
        &stack,
        PushAuth::CloudRunIam {
            expected: identity(),
            k_service: Some("orders".to_owned()),
        },
    )
    .await;
    let front = front_end(&google, &iam).await;

    // The good push: minted as Pub/Sub mints it, through the front end, to the step, and on
    // through the rest of the saga.
    let good = push(
        &stack,
        &front.url(),
        &bearer(&google.push_token(AUDIENCE, PUSH_ACCOUNT)),
    )
    .await;
    assert!(
        good.answer.published(),
        "a Pub/Sub push through Cloud Run: {:?}",
        good.answer
    );
    let paid = stack
        .outcomes(
            "payment-created-sub",
            std::slice::from_ref(&good.uuid),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(paid.get(&good.uuid).map(Vec::len), Some(1), "the saga completed");

    // Refused by Cloud Run's front end: its own HTML page, and the worker never sees them.
    let forwarded = front.counters().forwarded.load(Ordering::Relaxed);
    let at_the_front_end = refused_by_cloud_run(&google, &impostor);
    assert_refused(&stack, &front.url(), at_the_front_end, Refuser::FrontEnd).await;
    assert_eq!(
        front.counters().forwarded.load(Ordering::Relaxed),
        forwarded,
        "nothing refused reached the worker"
    );

    // Refused by the worker: what did not come through Cloud Run's check, and stripped
    // tokens whose claims are wrong. Its answers are JSON.
    let at_the_worker = refused_by_the_worker(&google);
    assert_refused(&stack, &iam.url(), at_the_worker, Refuser::Worker).await;

    // An invoker other than the push account passes Cloud Run's check with its own token in
    // X-Serverless-Authorization, beside a forged stripped push-account token in
    // Authorization. Cloud Run checks and strips only the former; so must the worker read.
    let forged = stripped(&impostor.push_token(AUDIENCE, PUSH_ACCOUNT));
    let smuggled = push(
        &stack,
        &front.url(),
        &[
            ("authorization", format!("Bearer {forged}")),
            (
                X_SERVERLESS_AUTHORIZATION,
                format!("Bearer {}", google.push_token(AUDIENCE, OPERATOR)),
            ),
        ],
    )
    .await;
    assert_eq!(
        smuggled.answer.status, 403,
        "a forged token beside another invoker's: {}",
        smuggled.answer.body
    );
    assert_no_trace(&stack, "smuggled", &smuggled.uuid).await;
    iam.stop().await.unwrap();
}

#[tokio::test]
async fn a_stripped_token_outside_cloud_run_and_a_signature_check_behind_it_are_both_refused() {
    let stack = TestStack::start("push auth modes").await;
    let google = Issuer::generate();
    let good = google.push_token(AUDIENCE, PUSH_ACCOUNT);

    // K_SERVICE unset: nothing proves Cloud Run verified the token, whatever the mode says.
    let not_cloud_run = worker(
        &stack,
        PushAuth::CloudRunIam {
            expected: identity(),
            k_service: None,
        },
    )
    .await;
    let refused = push(&stack, &not_cloud_run.url(), &bearer(&stripped(&good))).await;
    assert_eq!(
        refused.answer.status, 401,
        "a stripped token without K_SERVICE: {}",
        refused.answer.body
    );
    assert_no_trace(&stack, "without K_SERVICE", &refused.uuid).await;
    not_cloud_run.stop().await.unwrap();

    // The deployment before PUSH_AUTH existed: a worker checking signatures behind Cloud Run
    // refuses every push, good ones included, because Cloud Run stripped the signature.
    let (signature, _jwks) = signature_worker(&stack, &google).await;
    let front = front_end(&google, &signature).await;
    let refused = push(&stack, &front.url(), &bearer(&good)).await;
    assert_eq!(
        refused.answer.status, 401,
        "a signature check behind invoker IAM: {}",
        refused.answer.body
    );
    assert_no_trace(&stack, "signature mode behind Cloud Run", &refused.uuid).await;
    drop(front);

    // With invoker IAM disabled (nothing in front), the worker's own signature check admits
    // the good token, and refuses what Cloud Run would have.
    let accepted = push(&stack, &signature.url(), &bearer(&good)).await;
    assert!(
        accepted.answer.published(),
        "invoker IAM disabled, good token: {:?}",
        accepted.answer
    );
    assert!(
        stack.step(&accepted.uuid, Service::Orders).await.is_some(),
        "the step ran"
    );
    let impostor = Issuer::generate();
    let bad: Vec<Case> = vec![
        ("no token", vec![], 401),
        (
            "not a bearer token",
            vec![("authorization", "Basic dXNlcjpwYXNz".to_owned())],
            401,
        ),
        ("malformed", bearer("not-a-jwt"), 401),
        ("stripped", bearer(&stripped(&good)), 401),
        (
            "another key",
            bearer(&impostor.push_token(AUDIENCE, PUSH_ACCOUNT)),
            401,
        ),
        (
            "wrong audience",
            bearer(&google.push_token("https://other.run.app", PUSH_ACCOUNT)),
            401,
        ),
        (
            "no issuer",
            bearer(&google.sign(&{
                let mut c = google.push_claims(AUDIENCE, PUSH_ACCOUNT);
                c.as_object_mut().unwrap().remove("iss");
                c
            })),
            401,
        ),
        (
            "expired",
            bearer(&google.sign(&claims_with(&google, "exp", json!(now() - 3600)))),
            401,
        ),
        (
            "wrong account",
            bearer(&google.push_token(AUDIENCE, "someone@else.com")),
            403,
        ),
        (
            "unverified email",
            bearer(&google.sign(&claims_with(&google, "email_verified", json!(false)))),
            403,
        ),
    ];
    assert_refused(&stack, &signature.url(), bad, Refuser::Worker).await;
    signature.stop().await.unwrap();
}

#[tokio::test]
async fn made_up_key_ids_make_one_key_download_at_most_and_google_tokens_still_pass() {
    let stack = TestStack::start("push auth key ids").await;
    let google = Issuer::generate();
    let (signature, jwks) = signature_worker(&stack, &google).await;
    let good = || bearer(&google.push_token(AUDIENCE, PUSH_ACCOUNT));
    assert!(push(&stack, &signature.url(), &good()).await.answer.published());
    let downloads = jwks.fetches();

    // Google's token with its key id swapped for made-up ones, as a flood would send them:
    // the first makes the worker look for the key (401: Google has none such), the others
    // are answered 503 without a download, so the genuine pushes are not queued behind them.
    let mut statuses = Vec::new();
    for i in 0..20 {
        let token = google.push_token(AUDIENCE, PUSH_ACCOUNT);
        let (_, rest) = token.split_once('.').unwrap();
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": format!("made-up-{i}")});
        let forged = format!(
            "{}.{rest}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string())
        );
        let refused = push(&stack, &signature.url(), &bearer(&forged)).await;
        let json: Value = serde_json::from_str(&refused.answer.body).unwrap_or(Value::Null);
        assert!(
            json["error"].is_string(),
            "made-up key id {i}: {}",
            refused.answer.body
        );
        assert_no_trace(&stack, "a made-up key id", &refused.uuid).await;
        statuses.push(refused.answer.status);
    }
    let mut expected = vec![503; 20];
    expected[0] = 401;
    assert_eq!(
        statuses,
        expected,
        "one look-up, then none for {:?}",
        saga::gcp::auth::KEY_LOOKUP_EVERY
    );
    assert!(
        jwks.fetches() - downloads <= 1,
        "{} key downloads for twenty made-up key ids",
        jwks.fetches() - downloads
    );

    assert!(
        push(&stack, &signature.url(), &good()).await.answer.published(),
        "a genuine push passes at once"
    );
    signature.stop().await.unwrap();
}

/// Pushes Cloud Run's front end refuses before the worker sees them, with its statuses.
fn refused_by_cloud_run(google: &Issuer, impostor: &Issuer) -> Vec<Case> {
    let tampered = {
        let token = google.push_token(AUDIENCE, PUSH_ACCOUNT);
        let (signed, _) = token.rsplit_once('.').unwrap();
        format!(
            "{signed}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 256])
        )
    };
    vec![
        ("no token", vec![], 403),
        (
            "wrong audience",
            bearer(&google.push_token("https://other.run.app", PUSH_ACCOUNT)),
            401,
        ),
        (
            "wrong account",
            bearer(&google.push_token(AUDIENCE, "someone@else.com")),
            403,
        ),
        (
            "expired",
            bearer(&google.sign(&claims_with(google, "exp", json!(now() - 3600)))),
            401,
        ),
        ("bad signature", bearer(&tampered), 401),
        (
            "signed by another key",
            bearer(&impostor.push_token(AUDIENCE, PUSH_ACCOUNT)),
            401,
        ),
        (
            "another issuer",
            bearer(&google.sign(&claims_with(google, "iss", json!("https://issuer.example.com")))),
            401,
        ),
    ]
}

/// Pushes the worker refuses behind invoker IAM: what did not come through Cloud Run's
/// check, and stripped tokens whose claims are wrong.
fn refused_by_the_worker(google: &Issuer) -> Vec<Case> {
    let signed = google.push_token(AUDIENCE, PUSH_ACCOUNT);
    let strip = |claims: &Value| bearer(&stripped(&google.sign(claims)));
    vec![
        ("a signed token sent straight to the worker", bearer(&signed), 401),
        (
            "stripped, wrong audience",
            strip(&claims_with(google, "aud", json!("https://other.run.app"))),
            401,
        ),
        (
            "stripped, another issuer",
            strip(&claims_with(google, "iss", json!("https://issuer.example.com"))),
            401,
        ),
        (
            "stripped, expired",
            strip(&claims_with(google, "exp", json!(now() - 3600))),
            401,
        ),
        (
            "stripped, wrong account",
            strip(&claims_with(google, "email", json!("someone@else.com"))),
            403,
        ),
        (
            "stripped, unverified email",
            strip(&claims_with(google, "email_verified", json!(false))),
            403,
        ),
        ("no token", vec![], 401),
    ]
}
