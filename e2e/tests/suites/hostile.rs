//! Hostile input on the real emulators, at both doors: the frontend's `POST /order`, and
//! the workers' push endpoints, reached directly or through messages that another producer
//! publishes to a saga topic.
//!
//! Each hostile input is answered with a 4xx naming the problem (frontend) or acked and
//! copied once to `dead-letter` with its reason (workers), nothing else is published, and
//! the saga keeps serving: every test ends by placing a valid order and seeing it paid.

// A failed unwrap in a test is a failed assertion.
#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use e2e::{Refused, TestStack, new_uuid, refused, saga_message};
use saga::contract::{Service, Topic, push_path};
use saga::wire::envelope::MAX_PUSH_BYTES;
use saga::wire::message::{MAX_MESSAGE_BYTES, MAX_ORDER_BYTES};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const QUIET: Duration = Duration::from_secs(3);

/// The dead-letter attributes a service adds (see `saga::runtime::push_route::dead_letter_attributes`).
const REASON: &str = "saga_dead_letter_reason";
const DETAIL: &str = "saga_dead_letter_detail";
const SERVICE: &str = "saga_dead_letter_service";
const ENCODING: &str = "saga_dead_letter_encoding";

/// Stands for anything secret in a message: no answer, log line or dead-letter attribute
/// may quote it, since none may quote a message.
const SECRET: &str = e2e::SECRET;

/// Deeper than `serde_json`'s recursion limit (128) by far, and still well under 64 KiB.
const DEEP: usize = 10_000;

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Proves the saga still serves: a valid order placed now is paid.
async fn a_valid_order_still_completes(stack: &TestStack) {
    let uuid = stack
        .place(&json!({"item": "widget", "quantity": 1, "user": "jack"}))
        .await;
    let paid = stack
        .outcomes("payment-created-sub", std::slice::from_ref(&uuid), WAIT)
        .await;
    assert_eq!(
        paid.get(&uuid).map(Vec::len),
        Some(1),
        "a valid order placed after the hostile input is paid"
    );
}

/// Asserts that no service published anything to the saga's outcome subscriptions or to
/// the extra ones named. Messages the test published itself carry a `case` attribute
/// (services never copy attributes forward) and are left out.
async fn nothing_published(stack: &TestStack, also: &[&str]) {
    for sub in ["payment-created-sub", "error-cli-sub", "compensated-sub"]
        .iter()
        .chain(also)
    {
        let got: Vec<Value> = stack
            .pull(sub, 100, Duration::from_millis(500))
            .await
            .into_iter()
            .filter(|m| !m.attributes.contains_key("case"))
            .map(|m| m.json())
            .collect();
        assert!(got.is_empty(), "{sub} got {got:?}");
    }
}

/// An order with `field` set to the JSON text `value` (which may be no valid JSON value).
fn order_with(field: &str, value: &str) -> Vec<u8> {
    let mut fields = vec![
        ("item", r#""widget""#.to_owned()),
        ("quantity", "1".to_owned()),
        ("user", r#""jack""#.to_owned()),
    ];
    match fields.iter_mut().find(|(k, _)| *k == field) {
        Some((_, v)) => value.clone_into(v),
        None => fields.push((field, value.to_owned())),
    }
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(",")).into_bytes()
}

#[allow(clippy::too_many_lines, reason = "a table of cases")]
fn hostile_orders() -> Vec<Refused> {
    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain(
            r#"{"item":"widget","quantity":1,"user":"jack"}"#
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        )
        .collect();
    let mut cases = vec![
        Refused {
            mentions: Some("recursion limit"),
            ..refused(
                "deeply nested field",
                order_with("x", &nested(DEEP)),
                400,
                "malformed_json",
                None,
            )
        },
        Refused {
            mentions: Some("recursion limit"),
            ..refused(
                "deeply nested body",
                format!("{}1{}", r#"{"a":"#.repeat(DEEP), "}".repeat(DEEP)),
                400,
                "malformed_json",
                None,
            )
        },
        Refused {
            mentions: Some("JSON object"),
            ..refused("deeply nested array", nested(DEEP), 400, "malformed_json", None)
        },
        refused(
            "huge string field",
            order_with("item", &format!("\"{}\"", "w".repeat(1_000_000))),
            413,
            "payload_too_large",
            None,
        ),
        refused(
            "long name under the body limit",
            order_with("item", &format!("\"{}\"", "w".repeat(10_000))),
            422,
            "invalid_value",
            Some("item"),
        ),
        refused(
            "non-UTF-8 byte in a string",
            &b"{\"item\":\"wid\xffget\",\"quantity\":1,\"user\":\"jack\"}"[..],
            400,
            "malformed_json",
            None,
        ),
        refused(
            "non-UTF-8 body",
            &b"\xff\xfe\xfd\x00\x80"[..],
            400,
            "malformed_json",
            None,
        ),
        refused("UTF-16 body", utf16, 400, "malformed_json", None),
        refused(
            "lone surrogate escape",
            order_with("user", r#""\ud800""#),
            400,
            "malformed_json",
            None,
        ),
        refused(
            "unicode name with a slash",
            order_with("user", r#""jürgen/admin""#),
            422,
            "invalid_value",
            Some("user"),
        ),
        refused(
            "name ..",
            order_with("item", r#""..""#),
            422,
            "invalid_value",
            Some("item"),
        ),
        refused(
            "name __x__",
            order_with("user", r#""__x__""#),
            422,
            "invalid_value",
            Some("user"),
        ),
        refused(
            "name with a NUL",
            order_with("user", r#""ja\u0000ck""#),
            422,
            "invalid_value",
            Some("user"),
        ),
        Refused {
            mentions: Some("duplicate key `quantity`"),
            ..refused(
                "duplicate key",
                &br#"{"item":"widget","quantity":1,"user":"jack","quantity":900}"#[..],
                400,
                "malformed_json",
                None,
            )
        },
        Refused {
            mentions: Some("JSON object"),
            ..refused(
                "a string quoting a secret",
                format!("\"{SECRET}\""),
                400,
                "malformed_json",
                None,
            )
        },
        refused(
            "quantity 1e3",
            order_with("quantity", "1e3"),
            422,
            "wrong_type",
            Some("quantity"),
        ),
        refused(
            "quantity 10.0",
            order_with("quantity", "10.0"),
            422,
            "wrong_type",
            Some("quantity"),
        ),
        refused(
            "quantity 2^63",
            order_with("quantity", "9223372036854775808"),
            422,
            "invalid_value",
            Some("quantity"),
        ),
        refused(
            "quantity 2^64",
            order_with("quantity", "18446744073709551616"),
            422,
            "wrong_type",
            Some("quantity"),
        ),
        Refused {
            mentions: Some("number out of range"),
            ..refused(
                "quantity 1e999",
                order_with("quantity", "1e999"),
                400,
                "malformed_json",
                None,
            )
        },
    ];
    for (field, value) in [
        ("uuid", format!("\"{}\"", new_uuid())),
        ("status", r#""paid""#.to_owned()),
        ("total_invoice", "1".to_owned()),
        ("price_per_unit", "0".to_owned()),
        ("status_code", r#""completed""#.to_owned()),
        ("step", r#""payments""#.to_owned()),
        ("reason", "null".to_owned()),
    ] {
        cases.push(refused(
            "a field the saga sets",
            order_with(field, &value),
            422,
            "reserved_field",
            Some(field),
        ));
    }
    cases
}

#[tokio::test]
async fn hostile_orders_get_a_4xx_naming_the_problem_and_the_frontend_keeps_serving() {
    let stack = TestStack::start_in(super::DELIVERY, "hostile orders").await;
    stack.tap(Topic::Frontend, "frontend-tap").await;

    for case in hostile_orders() {
        case.assert_refused_by(&stack).await;
    }
    assert!(
        stack.pull("frontend-tap", 10, QUIET).await.is_empty(),
        "no hostile order reached the frontend topic"
    );
    a_valid_order_still_completes(&stack).await;
}

#[tokio::test]
async fn unicode_names_are_accepted_and_end_as_a_normal_business_failure() {
    let stack = TestStack::start_in(super::DELIVERY, "unicode names").await;
    let stranger = stack
        .place(&json!({"item": "widget", "quantity": 1, "user": "jürgen"}))
        .await;
    let smiley = stack
        .place(&json!({"item": "🙂", "quantity": 1, "user": "jack"}))
        .await;
    let uuids = [stranger.clone(), smiley.clone()];
    let errors = stack.outcomes("error-cli-sub", &uuids, WAIT).await;
    let compensated = stack.outcomes("compensated-sub", &uuids, WAIT).await;
    for (uuid, step, reason, user, item) in [
        (&stranger, "orders", "unknown_user", "jürgen", "widget"),
        (&smiley, "inventory", "unknown_item", "jack", "🙂"),
    ] {
        let error = &errors.get(uuid).unwrap_or_else(|| panic!("{user}/{item} failed"))[0];
        assert_eq!(
            (&error["step"], &error["reason"]),
            (&json!(step), &json!(reason)),
            "{error}"
        );
        assert_eq!((&error["user"], &error["item"]), (&json!(user), &json!(item)));
        assert_eq!(
            compensated.get(uuid).map(Vec::len),
            Some(1),
            "{user}/{item} compensated"
        );
    }
    assert!(
        stack
            .doc(&format!("users/jürgen/orders/{stranger}"))
            .await
            .is_none()
    );
    assert_eq!(
        stack.doc(&format!("users/jack/orders/{smiley}")).await.unwrap()["status"],
        "cancelled"
    );
    a_valid_order_still_completes(&stack).await;
}

#[tokio::test]
async fn strange_but_valid_extra_fields_pass_through_the_whole_saga_unchanged() {
    let stack = TestStack::start_in(super::DELIVERY, "strange extras").await;
    // Nesting under serde_json's limit, keys that mean something to Firestore or that
    // differ from the saga's own only in case, and unicode everywhere.
    let deep: Value = serde_json::from_str(&nested(100)).unwrap();
    let extras = json!({
        "deep": deep,
        "__name__": "x", "a.b": 1, "": "empty key", "UUID": "not mine", "Status": "mine",
        "note": "ünïcödé 🙂 \u{202e}", "big": 18_446_744_073_709_551_615_u64, "neg": -1.5,
    });
    let mut order = json!({"item": "widget", "quantity": 2, "user": "jack"});
    order
        .as_object_mut()
        .unwrap()
        .extend(extras.as_object().unwrap().clone());
    let uuid = stack.place(&order).await;

    let paid = stack
        .outcomes("payment-created-sub", std::slice::from_ref(&uuid), WAIT)
        .await;
    let paid = &paid.get(&uuid).expect("the order is paid")[0];
    for (key, value) in extras.as_object().unwrap() {
        assert_eq!(&paid[key], value, "{key} passed through");
    }
    assert_eq!(
        paid["uuid"],
        uuid.as_str(),
        "the saga's uuid, not the client's `UUID`"
    );
    assert_eq!(paid["total_invoice"], 20);
}

#[tokio::test]
async fn the_largest_order_the_frontend_accepts_is_paid_and_one_byte_more_is_refused() {
    let stack = TestStack::start_in(super::DELIVERY, "order at the size limit").await;
    let empty = r#"{"item":"widget","quantity":1,"user":"jack","pad":""}"#;
    let filler = "x".repeat(MAX_ORDER_BYTES - empty.len());
    let body = format!(r#"{{"item":"widget","quantity":1,"user":"jack","pad":"{filler}"}}"#);
    assert_eq!(body.len(), MAX_ORDER_BYTES);

    let over = format!(r#"{{"item":"widget","quantity":1,"user":"jack","pad":"{filler}x"}}"#);
    let (status, answer) = stack
        .post(Service::Frontend, "/order", "application/json", over.into_bytes())
        .await;
    assert_eq!(
        (status, &answer["error"]),
        (413, &json!("payload_too_large")),
        "{answer}"
    );

    let (status, answer) = stack
        .post(Service::Frontend, "/order", "application/json", body.into_bytes())
        .await;
    assert_eq!(status, 202, "{answer}");
    let uuid = answer["uuid"].as_str().unwrap().to_owned();
    let paid = stack
        .outcomes("payment-created-sub", std::slice::from_ref(&uuid), WAIT)
        .await;
    // If it is not paid, the dead letters say which step refused it.
    let letters: Vec<_> = stack
        .pull("dead-letter-sub", 10, Duration::from_millis(500))
        .await
        .into_iter()
        .map(|m| {
            (
                m.attributes.get(SERVICE).cloned(),
                m.attributes.get(REASON).cloned(),
            )
        })
        .collect();
    assert!(
        paid.contains_key(&uuid) && letters.is_empty(),
        "a {MAX_ORDER_BYTES}-byte order was accepted but not paid; dead letters (service, reason): {letters:?}"
    );
    a_valid_order_still_completes(&stack).await;
}

/// A message another producer publishes, and the dead letter it must become.
struct Poison {
    case: &'static str,
    topic: Topic,
    data: Vec<u8>,
    service: &'static str,
    reason: &'static str,
    /// A word the detail must contain (the field at fault).
    detail: Option<&'static str>,
}

fn poison(
    case: &'static str,
    topic: Topic,
    data: impl Into<Vec<u8>>,
    service: &'static str,
    reason: &'static str,
    detail: Option<&'static str>,
) -> Poison {
    Poison {
        case,
        topic,
        data: data.into(),
        service,
        reason,
        detail,
    }
}

/// A saga message with `field` set to the JSON text `value`.
fn message_with(field: &str, value: &str) -> Vec<u8> {
    let mut text = String::from_utf8(order_with(field, value)).unwrap();
    text.pop();
    text.push_str(r#","uuid":""#);
    text.push_str(&new_uuid());
    text.push_str(r#""}"#);
    text.into_bytes()
}

#[allow(clippy::too_many_lines, reason = "a table of cases")]
fn poison_messages() -> Vec<Poison> {
    let uuid = new_uuid();
    let non_utf8 = [
        &b"{\"item\":\"wid\xffget\",\"quantity\":1,\"user\":\"jack\",\"uuid\":\""[..],
        uuid.as_bytes(),
        b"\"}",
    ]
    .concat();
    let mut duplicate = String::from_utf8(message_with("quantity", "1")).unwrap();
    duplicate.pop();
    duplicate.push_str(r#","quantity":900}"#);
    vec![
        poison(
            "deep",
            Topic::Frontend,
            message_with("x", &nested(DEEP)),
            "orders",
            "malformed_json",
            Some("recursion limit"),
        ),
        poison(
            "non-utf8",
            Topic::Frontend,
            non_utf8,
            "orders",
            "malformed_json",
            None,
        ),
        poison(
            "duplicate",
            Topic::Frontend,
            duplicate,
            "orders",
            "malformed_json",
            Some("duplicate key `quantity`"),
        ),
        poison(
            "a string quoting a secret",
            Topic::Frontend,
            format!("\"{SECRET}\""),
            "orders",
            "malformed_json",
            Some("JSON object"),
        ),
        poison(
            "a secret key given twice",
            Topic::Frontend,
            format!(r#"{{"{SECRET}":1,"{SECRET}":2}}"#),
            "orders",
            "malformed_json",
            Some("duplicate key"),
        ),
        poison(
            "1e3",
            Topic::Frontend,
            message_with("quantity", "1e3"),
            "orders",
            "wrong_type",
            Some("quantity"),
        ),
        poison(
            "10.0",
            Topic::Frontend,
            message_with("quantity", "10.0"),
            "orders",
            "wrong_type",
            Some("quantity"),
        ),
        poison(
            "2^63",
            Topic::Frontend,
            message_with("quantity", "9223372036854775808"),
            "orders",
            "invalid_value",
            Some("quantity"),
        ),
        poison(
            "slash",
            Topic::Frontend,
            message_with("user", r#""jürgen/admin""#),
            "orders",
            "invalid_value",
            Some("user"),
        ),
        poison(
            "dotdot",
            Topic::Frontend,
            message_with("item", r#""..""#),
            "orders",
            "invalid_value",
            Some("item"),
        ),
        poison(
            "__x__",
            Topic::Frontend,
            message_with("user", r#""__x__""#),
            "orders",
            "invalid_value",
            Some("user"),
        ),
        poison(
            "string quantity to inventory",
            Topic::OrderCreated,
            message_with("quantity", r#""ten""#),
            "inventory",
            "wrong_type",
            Some("quantity"),
        ),
        poison(
            "price 2^63 to payments",
            Topic::InventoryUpdated,
            message_with("price_per_unit", "9223372036854775808"),
            "payments",
            "invalid_value",
            Some("price_per_unit"),
        ),
        poison(
            "uuid not a uuid to the janitor",
            Topic::Error,
            order_with("uuid", r#""../../etc""#),
            "janitor",
            "invalid_value",
            Some("uuid"),
        ),
    ]
}

fn describe(letters: &[e2e::pubsub::Received]) -> Vec<BTreeMap<String, String>> {
    letters
        .iter()
        .map(|m| {
            let mut a = m.attributes.clone();
            a.remove(DETAIL);
            a.insert("bytes".into(), m.data.len().to_string());
            a
        })
        .collect()
}

#[tokio::test]
async fn hostile_messages_from_other_producers_are_dead_lettered_once_with_a_reason_and_nothing_else_is_published()
 {
    let stack = TestStack::start_in(super::DELIVERY, "hostile messages").await;
    stack.tap(Topic::OrderCreated, "order-created-tap").await;
    stack.tap(Topic::InventoryUpdated, "inventory-updated-tap").await;
    let cases = poison_messages();
    for case in &cases {
        stack
            .publish(case.topic, &case.data, &[("case", case.case)])
            .await;
    }

    let letters = stack.dead_letters(cases.len(), WAIT, QUIET).await;
    let mut by_case: HashMap<&str, Vec<&e2e::pubsub::Received>> = HashMap::new();
    for letter in &letters {
        let case = letter.attributes.get("case").map_or("(none)", String::as_str);
        by_case.entry(case).or_default().push(letter);
    }
    for case in &cases {
        let name = case.case;
        let found = by_case.remove(name).unwrap_or_default();
        assert_eq!(
            found.len(),
            1,
            "{name}: one dead letter, got {:?}",
            describe(&letters)
        );
        let letter = found[0];
        let detail = &letter.attributes[DETAIL];
        assert_eq!(letter.attributes[SERVICE], case.service, "{name}: {detail}");
        assert_eq!(letter.attributes[REASON], case.reason, "{name}: {detail}");
        if let Some(words) = case.detail {
            assert!(detail.contains(words), "{name}: {detail}");
        }
        assert!(
            !detail.contains(SECRET),
            "{name}: the detail quotes the message: {detail}"
        );
        // The payload is kept, base64-encoded only when it is not UTF-8.
        if letter.attributes.get(ENCODING).map(String::as_str) == Some("base64") {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(&letter.data)
                .unwrap();
            assert_eq!(raw, case.data, "{name}");
        } else {
            assert_eq!(letter.data, case.data, "{name}");
        }
    }
    assert!(
        by_case.is_empty(),
        "unexpected dead letters: {:?}",
        describe(&letters)
    );
    assert_eq!(
        letters
            .iter()
            .find(|l| l.attributes["case"] == "non-utf8")
            .and_then(|l| l.attributes.get(ENCODING))
            .map(String::as_str),
        Some("base64")
    );
    nothing_published(&stack, &["order-created-tap", "inventory-updated-tap"]).await;
    a_valid_order_still_completes(&stack).await;
}

/// Push bodies a worker can never process: what each tries, the body, and the reason its
/// dead letter must give.
#[allow(clippy::too_many_lines, reason = "a table of cases")]
fn hostile_pushes() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let b64 = |data: &[u8]| base64::engine::general_purpose::STANDARD.encode(data);
    let sub = "projects/p/subscriptions/frontend-sub";
    let envelope = |extra: &str| {
        format!(
            r#"{{"message":{{"data":"{}","messageId":"h1"{extra}}},"subscription":"{sub}"}}"#,
            b64(b"{}")
        )
        .into_bytes()
    };
    vec![
        (
            "deeply nested envelope",
            nested(DEEP).into_bytes(),
            "bad_envelope",
        ),
        (
            "non-UTF-8 envelope",
            b"{\"message\":{\"data\":\"\xff\xfe\"}}".to_vec(),
            "bad_envelope",
        ),
        (
            "duplicate message key",
            format!(
                r#"{{"message":{{"data":""}},"message":{{"data":"{}"}}}}"#,
                b64(b"{}")
            )
            .into_bytes(),
            "bad_envelope",
        ),
        (
            "attribute that is a number",
            envelope(r#","attributes":{"a":1}"#),
            "bad_envelope",
        ),
        (
            "messageId that is a number",
            br#"{"message":{"data":"","messageId":7}}"#.to_vec(),
            "bad_envelope",
        ),
        (
            "deliveryAttempt 1e3",
            br#"{"message":{"data":""},"deliveryAttempt":1e3}"#.to_vec(),
            "bad_envelope",
        ),
        (
            "deliveryAttempt 2^63",
            br#"{"message":{"data":""},"deliveryAttempt":9223372036854775808}"#.to_vec(),
            "bad_envelope",
        ),
        (
            "attributes that are a string quoting a secret",
            format!(r#"{{"message":{{"data":"","attributes":"{SECRET}"}}}}"#).into_bytes(),
            "bad_envelope",
        ),
        (
            "data that is not UTF-8",
            format!(r#"{{"message":{{"data":"{}"}}}}"#, b64(b"\xff\xfe{")).into_bytes(),
            "malformed_json",
        ),
        (
            "data nested too deep",
            format!(r#"{{"message":{{"data":"{}"}}}}"#, b64(nested(DEEP).as_bytes())).into_bytes(),
            "malformed_json",
        ),
    ]
}

#[tokio::test]
async fn hostile_pushes_are_acked_dead_lettered_once_and_nothing_else_is_published() {
    let stack = TestStack::start_in(super::DELIVERY, "hostile pushes").await;
    stack.tap(Topic::OrderCreated, "order-created-tap").await;
    let cases = hostile_pushes();
    let mut want: BTreeMap<&str, usize> = BTreeMap::new();
    for (what, body, reason) in &cases {
        let (status, outcome, answer) = stack
            .post_for_outcome(
                Service::Orders,
                push_path(Topic::Frontend),
                "application/json",
                body.clone(),
            )
            .await;
        assert_eq!(status, 200, "{what}: acked, {answer}");
        assert_eq!(answer["result"], "dead_lettered", "{what}: {answer}");
        assert_eq!(
            outcome.as_deref(),
            Some("dead_lettered"),
            "{what}: the ack names its outcome in saga-outcome"
        );
        assert_eq!(answer["reason"], *reason, "{what}: {answer}");
        assert!(
            answer["detail"]
                .as_str()
                .is_some_and(|d| !d.is_empty() && !d.contains(SECRET)),
            "{what}: {answer}"
        );
        *want.entry(reason).or_default() += 1;
    }

    let letters = stack.dead_letters(cases.len(), WAIT, QUIET).await;
    let mut got: BTreeMap<&str, usize> = BTreeMap::new();
    for letter in &letters {
        *got.entry(letter.attributes.get(REASON).map_or("(none)", String::as_str))
            .or_default() += 1;
        assert!(
            !letter.attributes.get(DETAIL).is_some_and(|d| d.contains(SECRET)),
            "the detail quotes the push: {:?}",
            letter.attributes
        );
        assert_eq!(
            letter.attributes.get(SERVICE).map(String::as_str),
            Some("orders"),
            "{:?}",
            describe(&letters)
        );
    }
    assert_eq!(got, want, "one dead letter per push: {:?}", describe(&letters));
    nothing_published(&stack, &["order-created-tap"]).await;
    a_valid_order_still_completes(&stack).await;
}

#[tokio::test]
async fn a_push_whose_data_exceeds_the_limit_is_dead_lettered_once_and_nothing_else_is_published() {
    let stack = TestStack::start_in(super::DELIVERY, "push over the data limit").await;
    let mut big = saga_message(&new_uuid(), "widget", 1, "jack");
    big["pad"] = json!("x".repeat(MAX_MESSAGE_BYTES + 10_000));
    let data = base64::engine::general_purpose::STANDARD.encode(big.to_string());
    let body = format!(r#"{{"message":{{"data":"{data}","messageId":"big1"}},"subscription":"s"}}"#);
    assert!(
        body.len() < MAX_PUSH_BYTES,
        "inside the HTTP limit, over the data limit"
    );

    let (status, answer) = stack
        .post(
            Service::Orders,
            push_path(Topic::Frontend),
            "application/json",
            body.into_bytes(),
        )
        .await;
    assert_eq!(
        (status, answer["reason"].as_str()),
        (200, Some("too_large")),
        "{answer}"
    );
    let letters = stack.dead_letters(1, WAIT, QUIET).await;
    assert_eq!(
        describe(&letters)
            .iter()
            .map(|a| (a.get(SERVICE).cloned(), a.get(REASON).cloned()))
            .collect::<Vec<_>>(),
        vec![(Some("orders".to_owned()), Some("too_large".to_owned()))],
        "exactly one dead letter, from orders: {:?}",
        describe(&letters)
    );
    nothing_published(&stack, &[]).await;
    a_valid_order_still_completes(&stack).await;
}

#[tokio::test]
async fn a_message_too_large_for_a_push_request_is_acked_and_dead_lettered_with_a_reason() {
    let stack = TestStack::start_in(super::DELIVERY, "message over the push limit").await;
    // Pub/Sub takes messages up to 10 MB; this one is far over the saga's message limit.
    let mut big = saga_message(&new_uuid(), "widget", 1, "jack");
    big["pad"] = json!("x".repeat(1024 * 1024));
    stack
        .publish(Topic::Frontend, big.to_string().as_bytes(), &[("case", "huge")])
        .await;

    let letter = e2e::eventually(Duration::from_secs(90), || async {
        stack
            .pull("dead-letter-sub", 1, Duration::from_millis(500))
            .await
            .pop()
    })
    .await
    .expect("the message ends on dead-letter-sub");
    assert_eq!(letter.attributes.get("case").map(String::as_str), Some("huge"));
    assert_eq!(
        letter.attributes.get(REASON).map(String::as_str),
        Some("too_large"),
        "dead-lettered by a service that says why, not by Pub/Sub after retries: {:?}",
        describe(std::slice::from_ref(&letter))
    );
    a_valid_order_still_completes(&stack).await;
}

#[tokio::test]
async fn a_producers_own_total_invoice_price_and_status_never_override_the_sagas() {
    let stack = TestStack::start_in(super::DELIVERY, "colliding fields").await;
    let forged = json!({
        "total_invoice": 1, "price_per_unit": 1, "status": "paid",
        "status_code": "completed", "step": "payments", "reason": "payment_declined",
    });
    let with_forged = |uuid: &str| {
        let mut message = saga_message(uuid, "widget", 3, "jack");
        message
            .as_object_mut()
            .unwrap()
            .extend(forged.as_object().unwrap().clone());
        message
    };
    // A saga started by another producer: every step rewrites what it sets.
    let uuid = new_uuid();
    stack
        .publish(Topic::Frontend, with_forged(&uuid).to_string().as_bytes(), &[])
        .await;
    let paid = stack
        .outcomes("payment-created-sub", std::slice::from_ref(&uuid), WAIT)
        .await;
    let paid = &paid.get(&uuid).expect("paid")[0];
    assert_eq!(paid["total_invoice"], 30, "payments' own total: {paid}");
    assert_eq!(paid["price_per_unit"], 10, "inventory's price: {paid}");
    assert_eq!(paid["status_code"], "completed", "{paid}");
    assert_eq!(paid["step"], "payments", "{paid}");
    assert_eq!(paid["status"], "Payment processed: total invoice 30", "{paid}");
    assert!(paid.get("reason").is_none(), "{paid}");
    let payment = stack.doc(&format!("payments/{uuid}")).await.unwrap();
    assert_eq!(payment["total_invoice"], 30);

    // The same on a later topic, with no earlier step behind it: not the saga's message, so
    // it takes no stock and pays nothing.
    let stray = new_uuid();
    let widgets = stack.stock("widget").await;
    stack
        .publish(
            Topic::OrderCreated,
            with_forged(&stray).to_string().as_bytes(),
            &[],
        )
        .await;
    let letters = stack.dead_letters(1, WAIT, QUIET).await;
    assert_eq!(letters.len(), 1, "{:?}", describe(&letters));
    let attribute = |name: &str| letters[0].attributes.get(name).map(String::as_str);
    assert_eq!(
        (attribute(REASON), attribute("saga_dead_letter_service")),
        (Some("unmatched_record"), Some("inventory")),
        "dead-lettered by inventory as not matching the saga's records"
    );
    assert!(stack.step(&stray, Service::Inventory).await.is_none());
    assert_eq!(stack.stock("widget").await, widgets, "no stock taken");
    nothing_published(&stack, &[]).await;
    a_valid_order_still_completes(&stack).await;
}
