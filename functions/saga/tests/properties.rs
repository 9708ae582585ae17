//! Property tests of the three parsers that read bytes from outside: the client's order
//! (`Order::parse_request`), a saga message from any producer (`SagaMessage::parse`) and a
//! push envelope (`parse_envelope`).
//!
//! Whatever the bytes, each parser answers `Ok` or `Err` and never panics, and what it
//! accepts is what the rest of the saga can read back. The generators build JSON-shaped
//! input around the saga's own fields (then break it: truncation, stray bytes, duplicate
//! keys, deep nesting, odd number spellings), because uniformly random bytes almost never
//! get past the first character of a JSON parser.

use proptest::prelude::*;
use proptest::sample::Index;
use saga::contract::Service;
use saga::domain::{FieldError, MAX_NAME_CHARS, MAX_QUANTITY, Money, Order, Reason, SagaId};
use saga::wire::envelope::{EnvelopeError, envelope, parse_envelope};
use saga::wire::message::{MAX_MESSAGE_BYTES, MAX_ORDER_BYTES, RESERVED_FIELDS, SagaMessage};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt;

/// Bytes under test. Its `Debug` (what proptest prints for a failing case) shows the size
/// and the start only: inputs near the size limit are 64 KiB long.
#[derive(Clone)]
struct Input(Vec<u8>);

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = String::from_utf8_lossy(&self.0);
        let head: String = text.chars().take(300).collect();
        let more = if head.len() < text.len() { "…" } else { "" };
        write!(f, "{} bytes: {head:?}{more}", self.0.len())
    }
}

/// Names worth trying as `user` and `item`: valid ones (ASCII and not), and each kind that
/// must be refused because it would be a bad Firestore document id.
fn names() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["widget", "wotsit", "jack", "jill", "jürgen", "🙂", "名前"])
            .prop_map(str::to_owned),
        2 => "[a-z]{1,12}",
        1 => prop::sample::select(vec![
            "", " ", "a/b", "/", ".", "..", "__x__", "__", "a\u{0}b", "tab\there", "\u{202e}rtl",
        ])
        .prop_map(str::to_owned),
        1 => Just("é".repeat(MAX_NAME_CHARS)),
        1 => Just("é".repeat(MAX_NAME_CHARS + 1)),
        1 => any::<String>(),
    ]
}

/// Numbers as JSON text, including the spellings that are not plain integers.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (1..=20u32).prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|f| f.to_string()),
        2 => prop::sample::select(vec![
            "0", "-1", "-0", "1e3", "1E3", "10.0", "1.5", "1000000", "1000001",
            "9223372036854775807", "9223372036854775808", "18446744073709551615",
            "18446744073709551616", "1e999", "-1e999", "0x10", "01", "NaN", "Infinity", "1_000", "+1",
        ])
        .prop_map(str::to_owned),
    ]
}

fn uuid_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).hyphenated().to_string()),
        1 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).simple().to_string().to_uppercase()),
        1 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).braced().to_string()),
        1 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).urn().to_string()),
        1 => "[0-9a-f-]{0,40}",
    ]
}

/// Keys of extra fields: ordinary ones, the saga's own, and names that mean something
/// elsewhere (Firestore field paths, other spellings of reserved names).
fn keys() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "payment-error", "note", "gift-wrap", "UUID", "Status", "", "__name__", "a.b", "`x`",
            "quantity ", "item\u{0}",
        ])
        .prop_map(str::to_owned),
        2 => prop::sample::select(RESERVED_FIELDS.to_vec()).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        names().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec((keys(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn json_text(v: &Value) -> String {
    serde_json::to_string(v).expect("a JSON value always serialises")
}

/// The value of a saga field as JSON text: usually valid, often merely plausible (the
/// edge cases of its type), sometimes anything at all.
fn field_text(key: &'static str) -> BoxedStrategy<String> {
    let quote = |s: &str| json_text(&Value::from(s));
    let (valid, plausible): (BoxedStrategy<String>, BoxedStrategy<String>) = match key {
        "item" | "user" => (
            prop::sample::select(vec!["widget", "jack", "jürgen", "🙂", "名前"])
                .prop_map(quote)
                .boxed(),
            names().prop_map(move |n| quote(&n)).boxed(),
        ),
        "quantity" | "price_per_unit" | "total_invoice" => (
            (1..=1000u32).prop_map(|n| n.to_string()).boxed(),
            number_text().boxed(),
        ),
        "uuid" => (
            any::<u128>()
                .prop_map(move |n| quote(&uuid::Uuid::from_u128(n).hyphenated().to_string()))
                .boxed(),
            uuid_text().prop_map(move |u| quote(&u)).boxed(),
        ),
        "status_code" => (
            Just(quote("received")).boxed(),
            prop::sample::select(vec!["\"completed\"", "\"weird\"", "7"])
                .prop_map(str::to_owned)
                .boxed(),
        ),
        "step" => (
            Just(quote("orders")).boxed(),
            prop::sample::select(vec!["\"payments\"", "\"nowhere\"", "null"])
                .prop_map(str::to_owned)
                .boxed(),
        ),
        "reason" => (
            Just(quote("unknown_user")).boxed(),
            prop::sample::select(vec!["\"retries_exhausted\"", "\"x\"", "[]"])
                .prop_map(str::to_owned)
                .boxed(),
        ),
        _ => (
            names().prop_map(move |n| quote(&n)).boxed(),
            json_value().prop_map(|v| json_text(&v)).boxed(),
        ),
    };
    prop_oneof![12 => valid, 2 => plausible, 1 => json_value().prop_map(|v| json_text(&v))].boxed()
}

/// A JSON object with the saga's fields (each usually present and usually valid), a few
/// extra fields, in any order, written as text so that keys may repeat and numbers may be
/// spelled in ways no `serde_json::Value` can hold.
fn saga_object_text() -> impl Strategy<Value = String> {
    let required = ["item", "quantity", "user", "uuid"]
        .map(|key| prop::option::weighted(0.95, field_text(key).prop_map(move |v| (key.to_owned(), v))));
    // The saga's own fields besides `uuid` (a required field above), which producers send
    // too, in every spelling.
    let bookkeeping: Vec<_> = RESERVED_FIELDS
        .into_iter()
        .filter(|&key| key != "uuid")
        .map(|key| prop::option::weighted(0.2, field_text(key).prop_map(move |v| (key.to_owned(), v))))
        .collect();
    let extras = prop::collection::vec((keys(), json_value().prop_map(|v| json_text(&v))), 0..3);
    (required, bookkeeping, extras)
        .prop_map(|(required, bookkeeping, extras)| {
            let mut fields: Vec<(String, String)> = required.into_iter().flatten().collect();
            fields.extend(bookkeeping.into_iter().flatten());
            fields.extend(extras);
            fields
        })
        .prop_shuffle()
        .prop_map(|fields| {
            let body: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{}:{v}", json_text(&Value::from(k.as_str()))))
                .collect();
            format!("{{{}}}", body.join(","))
        })
}

/// Breaks well-formed input the ways a hostile or broken producer would.
fn mutated(text: impl Strategy<Value = String>) -> impl Strategy<Value = Input> {
    let mutation = prop_oneof![
        10 => Just(Mutation::None),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Overwrite(i, b)),
        1 => (any::<Index>(), prop::sample::select(vec![0xffu8, 0xc3, 0x80, 0x00]))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        // Either side of serde_json's recursion limit of 128.
        1 => (0..300usize).prop_map(Mutation::Nest),
        1 => prop::sample::select(vec!["item", "quantity", "user", "uuid"]).prop_map(Mutation::Repeat),
    ];
    (text, mutation).prop_map(|(text, mutation)| Input(mutation.apply(text.into_bytes())))
}

#[derive(Clone, Debug)]
enum Mutation {
    None,
    Truncate(Index),
    Overwrite(Index, u8),
    Insert(Index, u8),
    Nest(usize),
    Repeat(&'static str),
}

impl Mutation {
    fn apply(self, mut bytes: Vec<u8>) -> Vec<u8> {
        // Fields are added just before the object's closing brace.
        let add_field = |mut bytes: Vec<u8>, field: String| {
            if bytes.last() == Some(&b'}') {
                bytes.pop();
                let sep = if bytes.len() > 1 { "," } else { "" };
                bytes.extend_from_slice(format!("{sep}{field}}}").as_bytes());
            }
            bytes
        };
        match self {
            Mutation::None => bytes,
            Mutation::Truncate(i) => {
                bytes.truncate(i.index(bytes.len() + 1));
                bytes
            }
            Mutation::Overwrite(i, b) => {
                if !bytes.is_empty() {
                    let at = i.index(bytes.len());
                    bytes[at] = b;
                }
                bytes
            }
            Mutation::Insert(i, b) => {
                bytes.insert(i.index(bytes.len() + 1), b);
                bytes
            }
            Mutation::Nest(depth) => add_field(
                bytes,
                format!("\"deep\":{}{}", "[".repeat(depth), "]".repeat(depth)),
            ),
            Mutation::Repeat(key) => add_field(bytes, format!("\"{key}\":5")),
        }
    }
}

/// Input for the message parsers: mostly broken-or-not saga objects, some arbitrary JSON,
/// some arbitrary bytes.
fn hostile_bytes() -> impl Strategy<Value = Input> {
    prop_oneof![
        6 => mutated(saga_object_text()),
        1 => mutated(json_value().prop_map(|v| json_text(&v))),
        1 => random_bytes(),
    ]
}

fn random_bytes() -> impl Strategy<Value = Input> {
    prop::collection::vec(any::<u8>(), 0..256).prop_map(Input)
}

/// Input for the order parser: client orders (which carry no `uuid`), broken or not, and
/// everything [`hostile_bytes`] makes.
fn order_bytes() -> impl Strategy<Value = Input> {
    prop_oneof![3 => mutated(request_text().prop_map(|r| r.0)), 2 => hostile_bytes()]
}

/// A push envelope as text, its fields plausible or not.
fn envelope_text() -> impl Strategy<Value = String> {
    let data = prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..512).prop_map(|d| {
            use base64::Engine as _;
            Value::from(base64::engine::general_purpose::STANDARD.encode(d))
        }),
        1 => prop::sample::select(vec!["", "%%%", "QQ", "QQ=", " QQ== ", "QUJD\nREVG", "===="])
            .prop_map(Value::from),
        1 => json_value(),
    ];
    let attributes = prop_oneof![
        3 => prop::collection::btree_map(keys(), names(), 0..4).prop_map(|m| json!(m)),
        1 => Just(json!({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})),
        1 => "[0-9a-f-]{0,60}".prop_map(|t| json!({ "traceparent": t })),
        1 => json_value(),
    ];
    let id = prop_oneof![3 => names().prop_map(Value::from), 1 => json_value()];
    let attempt = prop_oneof![
        3 => (0..10u32).prop_map(Value::from),
        1 => Just(json!(-1)),
        1 => Just(json!(u64::from(u32::MAX) + 1)),
        1 => json_value(),
    ];
    (data, attributes, id, names(), attempt, any::<[bool; 5]>()).prop_map(
        |(data, attributes, id, subscription, attempt, present)| {
            let mut message = Map::new();
            let mut env = Map::new();
            if present[0] {
                message.insert("data".into(), data);
            }
            if present[1] {
                message.insert("attributes".into(), attributes);
            }
            if present[2] {
                message.insert("messageId".into(), id.clone());
                message.insert("message_id".into(), id);
            }
            if present[3] {
                env.insert("deliveryAttempt".into(), attempt);
            }
            env.insert("message".into(), Value::Object(message));
            if present[4] {
                env.insert("subscription".into(), subscription.into());
            }
            json_text(&Value::Object(env))
        },
    )
}

/// Checks what every refusal must do: name its field in its text, so that the client (or
/// the dead-letter reader) can tell what to fix.
fn check_refusal(e: &FieldError) -> Result<(), TestCaseError> {
    let text = e.to_string();
    prop_assert!(!text.is_empty());
    prop_assert!(!e.code().is_empty());
    if let Some(field) = e.field() {
        prop_assert!(text.contains(field), "{text} does not name {field}");
    }
    Ok(())
}

/// Checks that an accepted order obeys every rule of the contract.
fn check_order(order: &Order) -> Result<(), TestCaseError> {
    prop_assert!((1..=MAX_QUANTITY).contains(&order.quantity.get()));
    for name in [order.user.as_str(), order.item.as_str()] {
        prop_assert!(!name.trim().is_empty());
        prop_assert!(name.chars().count() <= MAX_NAME_CHARS);
        prop_assert!(
            !name.contains('/') && !name.chars().any(char::is_control),
            "{name:?}"
        );
        prop_assert!(name != "." && name != "..");
        prop_assert!(!(name.starts_with("__") && name.ends_with("__")), "{name:?}");
    }
    Ok(())
}

/// The messages the saga of `first` goes through, each as its step would publish it, with
/// the largest numbers a step can add, and every failure with its compensation.
fn saga_of(first: &SagaMessage) -> Vec<SagaMessage> {
    let max = Money::new(Money::MAX).expect("MAX is a valid amount");
    let created = first.order_created();
    let reserved = created.stock_reserved(max);
    let mut all = vec![first.clone(), created, reserved.clone(), reserved.paid(max, max)];
    for step in [Service::Orders, Service::Inventory, Service::Payments] {
        for reason in Reason::ALL {
            let failed = reserved.fail(step, reason);
            all.push(failed.compensated(first.order.quantity.get(), true));
            all.push(failed);
        }
    }
    all
}

/// An order's JSON text, printed like [`Input`].
#[derive(Clone)]
struct Request(String);

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Input(self.0.clone().into_bytes()).fmt(f)
    }
}

/// Orders as a client sends them: usually valid, sometimes padded up to the frontend's
/// size limit, or with numbers whose text grows when the frontend writes the message (`1e15`
/// becomes `1000000000000000.0`): where the frontend and the workers disagree if they ever do.
fn request_text() -> impl Strategy<Value = Request> {
    let pad = prop_oneof![
        3 => Just(Pad::None),
        1 => (1..200usize).prop_map(Pad::Text),
        2 => ((MAX_ORDER_BYTES - 600)..=MAX_ORDER_BYTES).prop_map(Pad::Text),
        // Around the body size at which the re-written numbers reach the message limit.
        2 => (GROWING_BOUNDARY - 2_000..GROWING_BOUNDARY + 2_000).prop_map(Pad::Numbers),
    ];
    (saga_object_text(), pad).prop_map(|(text, pad)| {
        let mut obj: Map<String, Value> = match serde_json::from_str(&text) {
            Ok(obj) => obj,
            Err(_) => return Request(text),
        };
        obj.remove("uuid");
        for reserved in RESERVED_FIELDS {
            obj.remove(reserved);
        }
        Request(pad.apply(json_text(&Value::Object(obj))))
    })
}

/// Roughly the body size of an order padded with `1e15`s whose message reaches
/// `MAX_MESSAGE_BYTES`: each 5-byte `1e15,` becomes 19 bytes.
const GROWING_BOUNDARY: usize = MAX_MESSAGE_BYTES * 5 / 19;

/// How a generated order is padded, to `n` bytes in all if it is not longer already.
#[derive(Clone, Debug)]
enum Pad {
    None,
    /// A string field.
    Text(usize),
    /// An array of numbers that grow when written again.
    Numbers(usize),
}

impl Pad {
    fn apply(self, mut text: String) -> String {
        match self {
            Pad::None => text,
            Pad::Text(n) => {
                let filler = n.saturating_sub(text.len() + r#","pad":"""#.len());
                text.pop();
                text.push_str(r#","pad":""#);
                text.push_str(&"x".repeat(filler));
                text.push_str(r#""}"#);
                text
            }
            Pad::Numbers(n) => {
                let count = n.saturating_sub(text.len() + r#","pad":[]"#.len()) / "1e15,".len();
                text.pop();
                text.push_str(r#","pad":["#);
                text.push_str(&vec!["1e15"; count.max(1)].join(","));
                text.push_str("]}");
                text
            }
        }
    }
}

proptest! {
    // No regression file in the source tree: a failure prints its shrunk input, and CI
    // starts from a fresh clone anyway.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_given_as_an_order_are_parsed_or_refused_never_a_panic(input in order_bytes()) {
        match Order::parse_request(&input.0) {
            Ok((order, extra)) => {
                check_order(&order)?;
                for key in RESERVED_FIELDS {
                    prop_assert!(!extra.contains_key(key), "reserved field {key} was kept");
                }
                for key in ["item", "quantity", "user"] {
                    prop_assert!(!extra.contains_key(key), "{key} was kept as an extra field");
                }
            }
            Err(e) => check_refusal(&e)?,
        }
    }

    #[test]
    fn any_bytes_given_as_a_saga_message_are_parsed_or_refused_never_a_panic(input in hostile_bytes()) {
        match SagaMessage::parse(&input.0) {
            Ok(msg) => {
                check_order(&msg.order)?;
                for key in ["item", "quantity", "user", "uuid"].iter().chain(&RESERVED_FIELDS) {
                    prop_assert!(!msg.extra.contains_key(*key), "{key} was kept as an extra field");
                }
            }
            Err(e) => check_refusal(&e)?,
        }
    }

    #[test]
    fn a_parsed_saga_message_serialised_again_parses_to_the_same_value(input in hostile_bytes()) {
        if let Ok(msg) = SagaMessage::parse(&input.0) {
            let again = SagaMessage::parse(&msg.to_bytes());
            prop_assert_eq!(again.as_ref(), Ok(&msg), "{}", msg.to_json());
        }
    }

    #[test]
    fn any_bytes_given_as_a_push_envelope_are_parsed_or_refused_never_a_panic(
        input in prop_oneof![
            4 => mutated(envelope_text()),
            1 => mutated(json_value().prop_map(|v| json_text(&v))),
            1 => random_bytes(),
        ]
    ) {
        match parse_envelope(&input.0) {
            Ok(push) => prop_assert!(push.data.len() <= MAX_MESSAGE_BYTES),
            Err(e) => prop_assert!(!e.to_string().is_empty() && !e.code().is_empty()),
        }
    }

    #[test]
    fn an_envelope_built_by_envelope_parses_back_to_its_data_and_attributes(
        subscription in any::<String>(),
        message_id in any::<String>(),
        data in prop::collection::vec(any::<u8>(), 0..2048),
        attributes in prop::collection::btree_map(any::<String>(), any::<String>(), 0..6),
    ) {
        let push = parse_envelope(&envelope(&subscription, &message_id, &data, &attributes));
        let push = push.map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
        prop_assert_eq!(push.data, data);
        prop_assert_eq!(push.attributes, attributes);
        prop_assert_eq!(push.message_id, message_id);
        prop_assert_eq!(push.subscription, subscription);
        prop_assert_eq!(push.delivery_attempt, None);
    }
}

proptest! {
    // Each case writes some sixty messages of up to 72 KiB: fewer cases keep it to seconds.
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_message_of_the_saga_of_an_order_the_frontend_accepts_fits_and_is_readable_by_the_next_step(
        request in request_text()
    ) {
        let accepted = Order::parse_request(request.0.as_bytes())
            .and_then(|(order, extra)| SagaMessage::start(SagaId::new(), order, extra));
        if let Ok(first) = accepted {
            for msg in saga_of(&first) {
                let bytes = msg.to_bytes();
                prop_assert!(
                    bytes.len() <= first.largest_successor_len(),
                    "a {}-byte {:?} message, over the bound the frontend checked",
                    bytes.len(),
                    msg.status_code
                );
                // The message itself is too long to print usefully; its size says it all.
                let problem = match SagaMessage::parse(&bytes) {
                    Ok(read) if read == msg => continue,
                    Ok(_) => "it reads back as a different message".to_owned(),
                    Err(e) => e.to_string(),
                };
                prop_assert!(
                    false,
                    "a {}-byte order became a {}-byte {:?} message that the next step cannot read: {}",
                    request.0.len(),
                    bytes.len(),
                    msg.status_code,
                    problem
                );
            }
        }
    }
}

#[test]
fn an_envelope_carries_exactly_max_message_bytes_and_not_one_more() {
    let attrs = BTreeMap::new();
    let fits = vec![b'x'; MAX_MESSAGE_BYTES];
    assert_eq!(
        parse_envelope(&envelope("s", "1", &fits, &attrs)).unwrap().data,
        fits
    );
    let over = vec![b'x'; MAX_MESSAGE_BYTES + 1];
    assert_eq!(
        parse_envelope(&envelope("s", "1", &over, &attrs)),
        Err(EnvelopeError::TooLarge)
    );
}

/// The properties above only mean something if their generators reach both sides of each
/// parser; this counts how often they do.
#[test]
fn the_generators_reach_both_accepted_and_refused_input() {
    use proptest::strategy::ValueTree as _;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let (mut requests, mut messages, mut envelopes) = ([0u32; 2], [0u32; 2], [0u32; 2]);
    let (orders, inputs, pushes) = (order_bytes(), hostile_bytes(), mutated(envelope_text()));
    for _ in 0..400 {
        let order = orders.new_tree(&mut runner).unwrap().current();
        requests[usize::from(Order::parse_request(&order.0).is_ok())] += 1;
        let message = inputs.new_tree(&mut runner).unwrap().current();
        messages[usize::from(SagaMessage::parse(&message.0).is_ok())] += 1;
        let push = pushes.new_tree(&mut runner).unwrap().current();
        envelopes[usize::from(parse_envelope(&push.0).is_ok())] += 1;
    }
    for (what, [refused, accepted]) in [
        ("orders", requests),
        ("messages", messages),
        ("envelopes", envelopes),
    ] {
        assert!(
            refused >= 20 && accepted >= 20,
            "{what}: {accepted} accepted and {refused} refused of 400"
        );
    }
}

// The two cases below are the smallest failures the properties above found, kept as plain
// tests so that they are checked on every run, not only when the generator hits them.

#[test]
fn a_float_in_an_extra_field_passes_a_hop_unchanged() {
    // serde_json without its `float_roundtrip` feature reads some decimals one unit in the
    // last place off, so each hop could change a number the saga promises to pass unchanged.
    let body = br#"{"item":"widget","quantity":1,"user":"jack","uuid":"00000000-0000-0000-0000-000000000001","weight":9.616480357881521e+272}"#;
    let first = SagaMessage::parse(body).unwrap();
    let second = SagaMessage::parse(&first.to_bytes()).unwrap();
    assert_eq!(second.extra["weight"], first.extra["weight"]);
    assert_eq!(first.extra["weight"].as_f64(), Some(9.616_480_357_881_521e272));
}

#[test]
fn the_largest_order_the_frontend_accepts_is_readable_by_every_step() {
    let empty = r#"{"item":"widget","quantity":1,"user":"jack","pad":""}"#;
    let filler = "x".repeat(MAX_ORDER_BYTES - empty.len());
    let body = format!(r#"{{"item":"widget","quantity":1,"user":"jack","pad":"{filler}"}}"#);
    assert_eq!(body.len(), MAX_ORDER_BYTES);
    let (order, extra) = Order::parse_request(body.as_bytes()).expect("the frontend accepts it");
    let first = SagaMessage::new(SagaId::new(), order, extra);
    for msg in saga_of(&first) {
        let bytes = msg.to_bytes();
        assert_eq!(
            SagaMessage::parse(&bytes).err(),
            None,
            "the frontend accepts a {}-byte order and the saga makes a {}-byte {:?} message of it",
            body.len(),
            bytes.len(),
            msg.status_code
        );
    }
    let over = format!(r#"{{"item":"widget","quantity":1,"user":"jack","pad":"{filler}x"}}"#);
    assert_eq!(
        Order::parse_request(over.as_bytes()).map(|_| ()),
        Err(FieldError::TooLarge(MAX_ORDER_BYTES))
    );
}

/// An order padded with `count` numbers that grow when the frontend writes them again.
fn growing_order(count: usize) -> String {
    format!(
        r#"{{"item":"widget","quantity":1000000,"user":"jack","n":[{}]}}"#,
        vec!["1e15"; count].join(",")
    )
}

#[test]
fn an_order_whose_numbers_grow_past_the_message_limit_is_refused_and_one_just_under_is_accepted() {
    let start = |count: usize| {
        let body = growing_order(count);
        let (order, extra) = Order::parse_request(body.as_bytes()).expect("a valid order");
        SagaMessage::start(SagaId::new(), order, extra)
    };
    // The most numbers accepted: the body is far under MAX_ORDER_BYTES, yet the message
    // would not be.
    let (mut low, mut high) = (0, MAX_ORDER_BYTES / 5);
    while low + 1 < high {
        let mid = usize::midpoint(low, high);
        if start(mid).is_ok() { low = mid } else { high = mid }
    }
    let first = start(low).expect("accepted");
    assert!(growing_order(low).len() < MAX_ORDER_BYTES / 3);
    let largest = saga_of(&first).iter().map(|m| m.to_json().len()).max().unwrap();
    assert!(
        largest <= MAX_MESSAGE_BYTES && largest + 19 > MAX_MESSAGE_BYTES,
        "{largest}"
    );
    assert!(matches!(
        start(low + 1),
        Err(FieldError::WouldGrowTooLarge { would_be, limit: MAX_MESSAGE_BYTES }) if would_be > MAX_MESSAGE_BYTES
    ));
}
