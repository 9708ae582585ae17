//! The saga message: the JSON object that travels from topic to topic.
//!
//! The format is the original's public interface: a flat object with `item`, `quantity`,
//! `user`, `uuid`, whatever the step adds (`price_per_unit`, `total_invoice`, the
//! human-readable `status`), and every field the client sent that the saga does not know,
//! passed through unchanged. The bookkeeping fields added here (`status_code`, `step`,
//! `reason`) are optional on input, so messages from other producers still parse. Each step
//! writes its message with the builders of [`SagaMessage`], which derive every text, so the
//! largest message a saga can carry is known ([`SagaMessage::largest_successor_len`]).

use crate::contract::Service;
use crate::domain::{
    DUPLICATE_KEY, FieldError, ItemName, JsonProblem, Money, Order, Quantity, Reason, SagaId, Stage, UserName,
};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap as _, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// Most bytes an order (the body of `POST /order`) may have.
pub const MAX_ORDER_BYTES: usize = 64 * 1024;

/// Most bytes a saga message may have: the largest order plus what the saga adds to it
/// (uuid, price, invoice, status texts quoting names, step, reason), with room to spare. It
/// must be larger than [`MAX_ORDER_BYTES`], or an order the frontend accepted could be
/// refused by the next step.
pub const MAX_MESSAGE_BYTES: usize = MAX_ORDER_BYTES + 8 * 1024;

/// The fields that the saga itself sets; a client may not send them.
pub const RESERVED_FIELDS: [&str; 7] = [
    "uuid",
    "price_per_unit",
    "total_invoice",
    "status",
    "status_code",
    "step",
    "reason",
];

/// The key that asks payments to fail, as in the original (any value).
pub const PAYMENT_ERROR_FIELD: &str = "payment-error";

/// The fields of a saga message that the saga itself writes.
const SAGA_FIELDS: [&str; 10] = [
    "item",
    "quantity",
    "user",
    "uuid",
    "price_per_unit",
    "total_invoice",
    "status",
    "status_code",
    "step",
    "reason",
];

/// Whether the saga reads or sets the field `key`: the only keys an error may name.
fn known_field(key: &str) -> Option<&'static str> {
    SAGA_FIELDS
        .into_iter()
        .chain([PAYMENT_ERROR_FIELD])
        .find(|field| *field == key)
}

/// A saga message, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct SagaMessage {
    /// The saga.
    pub uuid: SagaId,
    /// The order.
    pub order: Order,
    /// Set by inventory.
    pub price_per_unit: Option<Money>,
    /// Set by payments.
    pub total_invoice: Option<Money>,
    /// Human-readable status text.
    pub status: Option<String>,
    /// Machine-readable status.
    pub status_code: Option<Stage>,
    /// The step that produced the message.
    pub step: Option<Service>,
    /// Why the saga failed, on `error` messages.
    pub reason: Option<Reason>,
    /// Every other field, passed through unchanged.
    pub extra: Map<String, Value>,
}

/// A JSON object whose top level may not repeat a key: `{"quantity":1,"quantity":900}` is
/// ambiguous, and silently taking either value would be a guess.
struct UniqueKeys(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
                let mut out = Map::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    if out.contains_key(&k) {
                        // Named only if it is one of the saga's fields: any other key is
                        // input, which errors must not quote.
                        return Err(match known_field(&k) {
                            Some(field) => de::Error::custom(format_args!("{DUPLICATE_KEY} `{field}`")),
                            None => de::Error::custom(format_args!(
                                "{DUPLICATE_KEY} ({} bytes long, not a field of the saga)",
                                k.len()
                            )),
                        });
                    }
                    out.insert(k, v);
                }
                Ok(UniqueKeys(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses bytes as one JSON object with unique top-level keys.
pub fn parse_object(bytes: &[u8], limit: usize) -> Result<Map<String, Value>, FieldError> {
    if bytes.len() > limit {
        return Err(FieldError::TooLarge(limit));
    }
    serde_json::from_slice::<UniqueKeys>(bytes)
        .map(|o| o.0)
        .map_err(|e| FieldError::NotJson(JsonProblem::of(&e)))
}

fn take_str(obj: &mut Map<String, Value>, field: &'static str) -> Result<String, FieldError> {
    match obj.shift_remove(field) {
        None | Some(Value::Null) => Err(FieldError::Missing(field)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(FieldError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

fn take_integer(obj: &mut Map<String, Value>, field: &'static str) -> Result<Option<u64>, FieldError> {
    match obj.shift_remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) => Ok(Some(n)),
            // Negative integers are the right type with a wrong value; fractions and
            // exponent forms (`10.0`, `1e3`) are not integers at all.
            None if n.is_i64() => Err(FieldError::Invalid {
                field,
                problem: "must not be negative".to_owned(),
            }),
            None => Err(FieldError::WrongType {
                field,
                expected: "an integer",
            }),
        },
        Some(_) => Err(FieldError::WrongType {
            field,
            expected: "an integer",
        }),
    }
}

/// Takes an optional bookkeeping field, ignoring a value this version does not understand:
/// these fields are rewritten by every step, so a foreign value must not stop a saga.
fn take_lenient<T: for<'de> Deserialize<'de>>(obj: &mut Map<String, Value>, field: &str) -> Option<T> {
    obj.shift_remove(field)
        .and_then(|v| serde_json::from_value(v).ok())
}

impl Order {
    /// Takes `user`, `item` and `quantity` out of `obj`.
    fn take(obj: &mut Map<String, Value>) -> Result<Order, FieldError> {
        let item = ItemName::parse(&take_str(obj, "item")?)?;
        let quantity = Quantity::new(take_integer(obj, "quantity")?.ok_or(FieldError::Missing("quantity"))?)?;
        let user = UserName::parse(&take_str(obj, "user")?)?;
        Ok(Order { user, item, quantity })
    }

    /// Parses a client's order: `item`, `quantity`, `user`, plus extra fields that are kept,
    /// except those in [`RESERVED_FIELDS`], which are refused.
    pub fn parse_request(bytes: &[u8]) -> Result<(Order, Map<String, Value>), FieldError> {
        let mut obj = parse_object(bytes, MAX_ORDER_BYTES)?;
        if let Some(field) = RESERVED_FIELDS.iter().find(|f| obj.contains_key(**f)) {
            return Err(FieldError::Reserved((*field).to_owned()));
        }
        let order = Order::take(&mut obj)?;
        Ok((order, obj))
    }
}

impl SagaMessage {
    /// The message the frontend publishes for a new order: received, by the frontend.
    pub fn new(uuid: SagaId, order: Order, extra: Map<String, Value>) -> Self {
        SagaMessage {
            uuid,
            order,
            price_per_unit: None,
            total_invoice: None,
            status: Some("Order received".to_owned()),
            status_code: Some(Stage::Received),
            step: Some(Service::Frontend),
            reason: None,
            extra,
        }
    }

    /// The message that starts a saga for a client's order, if every message of that saga
    /// will fit [`MAX_MESSAGE_BYTES`] (see [`SagaMessage::largest_successor_len`]). The
    /// frontend accepts exactly the orders this accepts.
    pub fn start(uuid: SagaId, order: Order, extra: Map<String, Value>) -> Result<Self, FieldError> {
        let message = SagaMessage::new(uuid, order, extra);
        let would_be = message.largest_successor_len();
        if would_be > MAX_MESSAGE_BYTES {
            return Err(FieldError::WouldGrowTooLarge {
                would_be,
                limit: MAX_MESSAGE_BYTES,
            });
        }
        Ok(message)
    }

    /// Parses a message as published by a saga step or by any other producer.
    pub fn parse(bytes: &[u8]) -> Result<Self, FieldError> {
        Self::parse_within(bytes, MAX_MESSAGE_BYTES)
    }

    /// Parses a message whatever its size (the caller bounds it): for dead letters, which may
    /// have been refused for their size alone, and whose saga must still end.
    pub fn parse_any_size(bytes: &[u8]) -> Result<Self, FieldError> {
        Self::parse_within(bytes, usize::MAX)
    }

    /// The saga id of a message that may be unreadable otherwise.
    pub fn uuid_of(bytes: &[u8]) -> Option<SagaId> {
        let obj = parse_object(bytes, usize::MAX).ok()?;
        obj.get("uuid").and_then(Value::as_str).and_then(SagaId::parse)
    }

    /// This message, without its passed-through fields if it would not fit
    /// [`MAX_MESSAGE_BYTES`] with them: for the janitor's messages about a saga whose own
    /// message could not be delivered, so that the saga's end can be.
    #[must_use]
    pub fn fitted(self) -> SagaMessage {
        if self.json_len() <= MAX_MESSAGE_BYTES {
            return self;
        }
        tracing::warn!(
            uuid = %self.uuid,
            fields = self.extra.len(),
            "the message is too large with its passed-through fields; sending it without them"
        );
        SagaMessage {
            extra: Map::new(),
            ..self
        }
    }

    fn parse_within(bytes: &[u8], limit: usize) -> Result<Self, FieldError> {
        let mut obj = parse_object(bytes, limit)?;
        let uuid_text = take_str(&mut obj, "uuid")?;
        let uuid = SagaId::parse(&uuid_text).ok_or(FieldError::Invalid {
            field: "uuid",
            problem: "must be a UUID".to_owned(),
        })?;
        let order = Order::take(&mut obj)?;
        let price_per_unit = take_integer(&mut obj, "price_per_unit")?
            .map(|n| {
                Money::new(n).ok_or(FieldError::Invalid {
                    field: "price_per_unit",
                    problem: "is too large".to_owned(),
                })
            })
            .transpose()?;
        // Read for the status view; payments always computes its own.
        let total_invoice = take_lenient::<u64>(&mut obj, "total_invoice").and_then(Money::new);
        let status = match obj.shift_remove("status") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        Ok(SagaMessage {
            uuid,
            order,
            price_per_unit,
            total_invoice,
            status,
            status_code: take_lenient(&mut obj, "status_code"),
            step: take_lenient::<String>(&mut obj, "step").and_then(|s| Service::from_name(&s)),
            reason: take_lenient(&mut obj, "reason"),
            extra: obj,
        })
    }

    /// Whether the client asked payments to fail.
    pub fn wants_payment_error(&self) -> bool {
        self.extra.contains_key(PAYMENT_ERROR_FIELD)
    }

    /// The next message of the saga: this one, stamped by `step` with a status.
    fn advance(&self, step: Service, code: Stage, status: String) -> SagaMessage {
        SagaMessage {
            step: Some(step),
            status_code: Some(code),
            status: Some(status),
            reason: None,
            ..self.clone()
        }
    }

    /// The message orders publishes once the order is recorded.
    #[must_use]
    pub fn order_created(&self) -> SagaMessage {
        let text = format!("Order created for user '{}'", self.order.user);
        self.advance(Service::Orders, Stage::OrderCreated, text)
    }

    /// The message inventory publishes once stock is reserved at `price` a unit.
    #[must_use]
    pub fn stock_reserved(&self, price: Money) -> SagaMessage {
        let Order { item, quantity, .. } = &self.order;
        let text = format!("Stock reserved: {quantity} '{item}' at {price} each");
        SagaMessage {
            price_per_unit: Some(price),
            ..self.advance(Service::Inventory, Stage::StockReserved, text)
        }
    }

    /// The message payments publishes once `price × quantity = total` is paid.
    #[must_use]
    pub fn paid(&self, price: Money, total: Money) -> SagaMessage {
        let text = format!("Payment processed: total invoice {total}");
        SagaMessage {
            price_per_unit: Some(price),
            total_invoice: Some(total),
            ..self.advance(Service::Payments, Stage::Completed, text)
        }
    }

    /// The `error` message for this saga failing at `step`, with the text of `reason`.
    #[must_use]
    pub fn fail(&self, step: Service, reason: Reason) -> SagaMessage {
        SagaMessage {
            reason: Some(reason),
            ..self.advance(step, Stage::Failed, reason.text(&self.order, step))
        }
    }

    /// The janitor's `compensated` message for this failure: `released` units went back to
    /// stock, and the user's order was `cancelled` if it existed. It still says why the saga
    /// failed.
    #[must_use]
    pub fn compensated(&self, released: u32, cancelled: bool) -> SagaMessage {
        let stock = if released > 0 {
            format!("{released} units back in stock")
        } else {
            "no stock was held".to_owned()
        };
        let order = if cancelled {
            "order cancelled"
        } else {
            "no order to cancel"
        };
        SagaMessage {
            reason: self.reason,
            ..self.advance(
                Service::Janitor,
                Stage::Compensated,
                format!("Compensated: {stock}, {order}"),
            )
        }
    }

    /// The largest JSON text, in bytes, of any message a later step can publish for the saga
    /// this message starts: the largest price and invoice, every failure of every step with
    /// every reason, and their compensation. Every step builds its messages with the
    /// builders above, so this is derived from the code rather than guessed: the frontend
    /// refuses an order whose saga could outgrow [`MAX_MESSAGE_BYTES`] on the way.
    ///
    /// The passed-through fields serialise the same in every message, so the growth is
    /// measured on a copy without them and added to this message's own length.
    pub fn largest_successor_len(&self) -> usize {
        let bare = SagaMessage {
            extra: Map::new(),
            ..self.clone()
        };
        let max = Money::new(Money::MAX).expect("Money::MAX is a valid amount");
        let created = bare.order_created();
        // A price is set from the reservation on, so every later message carries one.
        let reserved = created.stock_reserved(max);
        let mut successors = vec![created.clone(), reserved.clone(), reserved.paid(max, max)];
        for step in [Service::Orders, Service::Inventory, Service::Payments] {
            for reason in Reason::ALL {
                let failed = reserved.fail(step, reason);
                successors.push(failed.compensated(self.order.quantity.get(), true));
                successors.push(failed);
            }
        }
        let bare_len = bare.json_len();
        let growth = successors
            .iter()
            .map(|m| m.json_len().saturating_sub(bare_len))
            .max()
            .unwrap_or_default();
        self.json_len() + growth
    }

    /// The JSON text, in the original's flat format (see the [`Serialize`] impl).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a saga message serialises: its keys are strings")
    }

    /// The length of [`SagaMessage::to_json`]'s text, counted without building it.
    pub(crate) fn json_len(&self) -> usize {
        let mut count = ByteCount(0);
        serde_json::to_writer(&mut count, self).expect("a saga message serialises: its keys are strings");
        count.0
    }

    /// The JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_json().into_bytes()
    }
}

/// The saga's fields in the original's flat format: the order and its uuid, then every
/// passed-through field in the order it came, then the fields the saga adds, those it has.
impl Serialize for SagaMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("item", self.order.item.as_str())?;
        map.serialize_entry("quantity", &self.order.quantity.get())?;
        map.serialize_entry("user", self.order.user.as_str())?;
        map.serialize_entry("uuid", &format_args!("{}", self.uuid))?;
        // Parsing takes the saga's own fields out of what it passes through, and a client may
        // not send them; should one be there anyway, it is skipped: those keys are written
        // only from the message's own values, and never twice.
        for (key, value) in self
            .extra
            .iter()
            .filter(|(key, _)| !SAGA_FIELDS.contains(&key.as_str()))
        {
            map.serialize_entry(key, value)?;
        }
        if let Some(price) = self.price_per_unit {
            map.serialize_entry("price_per_unit", &price.get())?;
        }
        if let Some(total) = self.total_invoice {
            map.serialize_entry("total_invoice", &total.get())?;
        }
        if let Some(status) = &self.status {
            map.serialize_entry("status", status)?;
        }
        if let Some(code) = self.status_code {
            map.serialize_entry("status_code", code.as_str())?;
        }
        if let Some(step) = self.step {
            map.serialize_entry("step", step.name())?;
        }
        if let Some(reason) = self.reason {
            map.serialize_entry("reason", reason.as_str())?;
        }
        map.end()
    }
}

/// Counts the bytes written to it: the length of a text without building it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bytes(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    #[test]
    fn a_valid_request_parses_and_keeps_extra_fields() {
        let (order, extra) =
            Order::parse_request(br#"{"item":"widget","quantity":50,"user":"jack","payment-error":"null"}"#)
                .unwrap();
        assert_eq!(order.item.as_str(), "widget");
        assert_eq!(order.quantity.get(), 50);
        assert_eq!(order.user.as_str(), "jack");
        assert_eq!(extra.get("payment-error"), Some(&json!("null")));
    }

    #[test]
    fn each_bad_request_names_its_field() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"quantity":1,"user":"jack"}"#, "item"),
            (br#"{"item":"w","user":"jack"}"#, "quantity"),
            (br#"{"item":"w","quantity":1}"#, "user"),
            (br#"{"item":"w","quantity":"ten","user":"jack"}"#, "quantity"),
            (br#"{"item":"w","quantity":0,"user":"jack"}"#, "quantity"),
            (br#"{"item":"w","quantity":-5,"user":"jack"}"#, "quantity"),
            (br#"{"item":"w","quantity":1000001,"user":"jack"}"#, "quantity"),
            (br#"{"item":"w","quantity":10.0,"user":"jack"}"#, "quantity"),
            (br#"{"item":"w","quantity":1e3,"user":"jack"}"#, "quantity"),
            (
                br#"{"item":"w","quantity":9223372036854775808,"user":"jack"}"#,
                "quantity",
            ),
            (br#"{"item":"","quantity":1,"user":"jack"}"#, "item"),
            (br#"{"item":"a/b","quantity":1,"user":"jack"}"#, "item"),
            (br#"{"item":"w","quantity":1,"user":42}"#, "user"),
            (br#"{"item":"w","quantity":1,"user":".."}"#, "user"),
            (br#"{"item":"w","quantity":1,"user":"__x__"}"#, "user"),
            (br#"{"item":"w","quantity":1,"user":"jack","uuid":"x"}"#, "uuid"),
            (
                br#"{"item":"w","quantity":1,"user":"jack","total_invoice":1}"#,
                "total_invoice",
            ),
            (
                br#"{"item":"w","quantity":1,"user":"jack","status":"paid"}"#,
                "status",
            ),
        ];
        for (body, field) in cases {
            let err = Order::parse_request(body).unwrap_err();
            assert_eq!(
                err.field(),
                Some(*field),
                "{}: {err}",
                String::from_utf8_lossy(body)
            );
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn a_name_of_128_characters_is_accepted_and_129_refused() {
        let ok = "é".repeat(128);
        assert!(UserName::parse(&ok).is_ok());
        assert!(UserName::parse(&format!("{ok}x")).is_err());
    }

    #[test]
    fn malformed_and_ambiguous_json_is_refused() {
        for body in [
            &b"not json"[..],
            b"[1,2]",
            b"\"s\"",
            br#"{"item":"w","quantity":1,"user":"jack","quantity":900}"#,
            b"{\"item\":\"w\xff\",\"quantity\":1,\"user\":\"jack\"}",
        ] {
            assert!(
                matches!(Order::parse_request(body), Err(FieldError::NotJson(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let body = format!(r#"{{"item":"w","quantity":1,"user":"jack","x":{deep}}}"#);
        assert!(Order::parse_request(body.as_bytes()).is_err());
    }

    #[test]
    fn a_message_round_trips_with_its_extra_fields() {
        let id = SagaId::new();
        let m = SagaMessage::parse(&bytes(&json!({
            "item": "widget", "quantity": 5, "user": "jack", "uuid": id.to_string(),
            "payment-error": {"nested": [1, 2]}, "note": "hi"
        })))
        .unwrap();
        assert_eq!(m.uuid, id);
        assert!(m.wants_payment_error());
        let next = m.order_created();
        let again = SagaMessage::parse(&next.to_bytes()).unwrap();
        assert_eq!(again.extra, m.extra);
        assert_eq!(again.step, Some(Service::Orders));
        assert_eq!(again.status_code, Some(Stage::OrderCreated));
        assert_eq!(again.status.as_deref(), Some("Order created for user 'jack'"));
    }

    #[test]
    fn bookkeeping_fields_are_optional_and_foreign_values_are_ignored() {
        let id = SagaId::new();
        let m = SagaMessage::parse(&bytes(&json!({
            "item": "widget", "quantity": 5, "user": "jack", "uuid": id.to_string(),
            "status": 7, "status_code": "weird", "step": "somewhere", "reason": ["x"]
        })))
        .unwrap();
        assert_eq!(
            (m.status, m.status_code, m.step, m.reason),
            (None, None, None, None)
        );
        assert!(m.extra.is_empty());
    }

    #[test]
    fn a_message_without_a_valid_uuid_is_refused() {
        for uuid in [json!(null), json!(12), json!("not-a-uuid")] {
            let err = SagaMessage::parse(&bytes(&json!({
                "item": "widget", "quantity": 5, "user": "jack", "uuid": uuid
            })))
            .unwrap_err();
            assert_eq!(err.field(), Some("uuid"));
        }
    }

    #[test]
    fn the_invoice_overflows_cleanly() {
        let q = Quantity::new(1_000_000).unwrap();
        assert_eq!(Money::new(10).unwrap().times(q), Money::new(10_000_000));
        assert_eq!(Money::new(Money::MAX).unwrap().times(q), None);
        assert_eq!(Money::new(Money::MAX + 1), None);
    }

    /// A string no error about a message may contain: it stands for anything secret in one.
    const SECRET: &str = "hunter2-s3cr3t-token";

    #[test]
    fn a_parse_error_never_quotes_the_message_even_where_serde_json_would() {
        let uuid = SagaId::new();
        let long = SECRET.repeat(3000);
        let cases = [
            format!("\"{SECRET}\""),
            format!("[\"{SECRET}\"]"),
            format!("{{\"{SECRET}\":1,\"{SECRET}\":2}}"),
            format!("{{\"item\":\"{SECRET}\" x}}"),
            format!("{{\"item\":\"w\"}} {SECRET}"),
            format!("{{\"item\":\"{SECRET}\u{1}\"}}"),
            format!("{{\"item\":\"w\",\"quantity\":\"{SECRET}\",\"user\":\"jack\",\"uuid\":\"{uuid}\"}}"),
            format!("{{\"item\":\"w\",\"quantity\":1,\"user\":\"jack\",\"uuid\":\"{SECRET}\"}}"),
            format!("{{\"item\":\"{SECRET}/x\",\"quantity\":1,\"user\":\"jack\",\"uuid\":\"{uuid}\"}}"),
            format!("\"{long}\""),
            format!("{{\"{long}\":1,\"{long}\":2}}"),
        ];
        for body in &cases {
            let e = SagaMessage::parse(body.as_bytes()).unwrap_err();
            let said = crate::engine::PoisonDetail::from(&e).to_string();
            assert!(!said.contains(SECRET), "{said}");
            assert!(!said.contains("s3cr3t"), "{said}");
            assert!(said.len() < 300, "{} characters: {said}", said.len());
            assert!(!said.is_empty());
        }
    }

    #[test]
    fn a_parse_error_still_says_what_and_where() {
        let said = |body: &str| Order::parse_request(body.as_bytes()).unwrap_err().to_string();
        assert_eq!(
            said(&format!("\"{SECRET}\"")),
            "body is not a JSON object: invalid type: string, expected a JSON object at line 1 column 22"
        );
        assert_eq!(
            said("{\"item\": x}"),
            "body is not a JSON object: expected value at line 1 column 10"
        );
        assert!(said(r#"{"quantity":1,"quantity":2}"#).contains("duplicate key `quantity`"));
        let other = said(&format!(r#"{{"{SECRET}":1,"{SECRET}":2}}"#));
        assert!(other.contains("duplicate key (20 bytes long"), "{other}");
    }

    #[test]
    fn every_field_the_saga_sets_may_be_named_in_an_error() {
        for field in RESERVED_FIELDS
            .into_iter()
            .chain(["item", "quantity", "user", PAYMENT_ERROR_FIELD])
        {
            assert_eq!(known_field(field), Some(field));
        }
        assert_eq!(known_field("address"), None);
    }

    fn every_kind_of_message() -> Vec<SagaMessage> {
        let (order, extra) = Order::parse_request(
            r#"{"note":"caf\u00e9 \"quoted\" \u0001","item":"w\u00efdget","quantity":7,"user":"jack","payment-error":null,"n":[1.5,{"k":true}]}"#
                .as_bytes(),
        )
        .unwrap();
        let received = SagaMessage::new(SagaId::new(), order, extra);
        let created = received.order_created();
        let reserved = created.stock_reserved(Money::new(10).unwrap());
        let failed = reserved.fail(Service::Payments, Reason::PaymentDeclined);
        vec![
            received,
            created,
            reserved.paid(Money::new(10).unwrap(), Money::new(70).unwrap()),
            failed.compensated(7, true),
            failed,
            reserved,
        ]
    }

    #[test]
    fn a_message_is_written_in_the_original_flat_layout_with_passed_through_fields_in_their_order() {
        let message = every_kind_of_message().remove(2);
        let uuid = message.uuid;
        assert_eq!(
            message.to_json(),
            format!(
                r#"{{"item":"wïdget","quantity":7,"user":"jack","uuid":"{uuid}","note":"café \"quoted\" \u0001","payment-error":null,"n":[1.5,{{"k":true}}],"price_per_unit":10,"total_invoice":70,"status":"Payment processed: total invoice 70","status_code":"completed","step":"payments"}}"#
            )
        );
        assert_eq!(SagaMessage::parse(message.to_json().as_bytes()).unwrap(), message);
    }

    #[test]
    fn every_hop_keeps_the_passed_through_fields_in_the_order_the_client_sent_them() {
        for message in every_kind_of_message() {
            let text = message.to_json();
            let reparsed = SagaMessage::parse(text.as_bytes()).unwrap();
            assert_eq!(reparsed.to_json(), text);
            let keys: Vec<&str> = reparsed.extra.keys().map(String::as_str).collect();
            assert_eq!(keys, ["note", "payment-error", "n"], "{text}");
        }
    }

    /// The layout as it was built before `SagaMessage` implemented `Serialize`: a
    /// `serde_json::Map` (insertion order kept) written as a `Value`.
    fn as_a_map_would_write_it(m: &SagaMessage) -> String {
        let mut obj = Map::new();
        obj.insert("item".into(), m.order.item.as_str().into());
        obj.insert("quantity".into(), m.order.quantity.get().into());
        obj.insert("user".into(), m.order.user.as_str().into());
        obj.insert("uuid".into(), m.uuid.to_string().into());
        for (k, v) in &m.extra {
            obj.insert(k.clone(), v.clone());
        }
        let optional = [
            ("price_per_unit", m.price_per_unit.map(|p| p.get().into())),
            ("total_invoice", m.total_invoice.map(|t| t.get().into())),
            ("status", m.status.clone().map(Value::from)),
            ("status_code", m.status_code.map(|c| c.as_str().into())),
            ("step", m.step.map(|s| s.name().into())),
            ("reason", m.reason.map(|r| r.as_str().into())),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                obj.insert(key.into(), value);
            }
        }
        Value::Object(obj).to_string()
    }

    #[test]
    fn every_kind_of_message_is_written_byte_for_byte_as_the_map_it_used_to_be_built_as() {
        for message in every_kind_of_message() {
            assert_eq!(message.to_json(), as_a_map_would_write_it(&message));
        }
    }

    #[test]
    fn the_counted_length_of_every_kind_of_message_is_that_of_its_text() {
        for message in every_kind_of_message() {
            assert_eq!(
                message.json_len(),
                message.to_json().len(),
                "{}",
                message.to_json()
            );
        }
    }

    #[test]
    fn a_passed_through_field_named_like_a_saga_field_never_makes_a_key_appear_twice() {
        let mut message = every_kind_of_message().remove(0);
        message.extra.insert("item".to_owned(), json!("forged"));
        message.extra.insert("status".to_owned(), json!("forged"));
        let text = message.to_json();
        assert_eq!(text.matches(r#""item":"#).count(), 1, "{text}");
        assert_eq!(text.matches(r#""status":"#).count(), 1, "{text}");
        assert!(!text.contains("forged"), "{text}");
    }
}
