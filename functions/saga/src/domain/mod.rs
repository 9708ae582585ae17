//! The saga's domain values, each parsed into its own type at the edge: who orders what and
//! how many ([`Order`]), the saga's id, money, where a saga stands ([`Stage`]) and why it
//! failed ([`Reason`]). Nothing here knows about JSON, Pub/Sub or Firestore.

mod error;

pub(crate) use error::DUPLICATE_KEY;
pub use error::{FieldError, JsonProblem};

use crate::contract::Service;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// Longest user or item name, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// Largest quantity one order may ask for.
pub const MAX_QUANTITY: u32 = 1_000_000;

/// The id of one saga: a UUID, carried as the `uuid` field and used as document id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SagaId(Uuid);

impl SagaId {
    /// A fresh random id.
    pub fn new() -> Self {
        SagaId(Uuid::new_v4())
    }

    /// Parses the text form (any case, hyphenated or not).
    pub fn parse(s: &str) -> Option<Self> {
        Uuid::try_parse(s).ok().map(SagaId)
    }
}

impl Default for SagaId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SagaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Checks a name that becomes a Firestore document id: non-empty, at most
/// [`MAX_NAME_CHARS`] characters, and nothing that Firestore gives a meaning in a path.
fn check_name(field: &'static str, s: &str) -> Result<(), FieldError> {
    let invalid = |problem: &str| FieldError::Invalid {
        field,
        problem: problem.to_owned(),
    };
    if s.trim().is_empty() {
        return Err(invalid("must not be empty"));
    }
    if s.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(&format!("must be at most {MAX_NAME_CHARS} characters")));
    }
    if s.chars().any(|c| c == '/' || c.is_control()) {
        return Err(invalid("must not contain `/` or control characters"));
    }
    if s == "." || s == ".." || (s.starts_with("__") && s.ends_with("__")) {
        return Err(invalid("is a name Firestore reserves"));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses and checks a name.
            pub fn parse(s: &str) -> Result<Self, FieldError> {
                check_name($field, s)?;
                Ok(Self(s.to_owned()))
            }

            /// The name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A user name: the id of a `users/{user}` document.
    UserName,
    "user"
);
name_type!(
    /// An item name: the id of an `inventory/{item}` document.
    ItemName,
    "item"
);

/// How many units an order asks for: from 1 to [`MAX_QUANTITY`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Quantity(u32);

impl Quantity {
    /// Checks the range.
    pub fn new(n: u64) -> Result<Self, FieldError> {
        match u32::try_from(n) {
            Ok(n) if (1..=MAX_QUANTITY).contains(&n) => Ok(Quantity(n)),
            _ => Err(FieldError::Invalid {
                field: "quantity",
                problem: format!("must be an integer from 1 to {MAX_QUANTITY}"),
            }),
        }
    }

    /// The count.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u64> for Quantity {
    type Error = FieldError;
    fn try_from(n: u64) -> Result<Self, FieldError> {
        Quantity::new(n)
    }
}

impl From<Quantity> for u64 {
    fn from(q: Quantity) -> u64 {
        u64::from(q.0)
    }
}

impl From<Quantity> for i64 {
    fn from(q: Quantity) -> i64 {
        i64::from(q.0)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An amount of money in the store's currency unit, as the original counts it: a
/// non-negative integer that fits a Firestore integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Money(u64);

impl Money {
    /// The largest amount a Firestore integer holds.
    pub const MAX: u64 = i64::MAX as u64;

    /// Checks that `n` fits a Firestore integer.
    pub fn new(n: u64) -> Option<Self> {
        (n <= Self::MAX).then_some(Money(n))
    }

    /// The amount.
    pub fn get(self) -> u64 {
        self.0
    }

    /// `self × quantity`, or `None` if that does not fit.
    pub fn times(self, quantity: Quantity) -> Option<Money> {
        self.0.checked_mul(u64::from(quantity)).and_then(Money::new)
    }
}

impl TryFrom<u64> for Money {
    type Error = String;
    fn try_from(n: u64) -> Result<Self, String> {
        Money::new(n).ok_or_else(|| format!("{n} is larger than {}", Money::MAX))
    }
}

impl From<Money> for u64 {
    fn from(m: Money) -> u64 {
        m.0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a saga stands, in machine-readable form: the `status_code` field of messages, and
/// the stages of the status view. Ordered as a successful saga passes them (failure
/// branches off).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The frontend accepted the order.
    Received,
    /// The order is recorded for its user.
    OrderCreated,
    /// Stock is reserved.
    StockReserved,
    /// The order is paid: the saga succeeded.
    Completed,
    /// A step failed; compensation follows.
    Failed,
    /// Every earlier step was undone.
    Compensated,
}

impl Stage {
    /// The stage a message on `topic` reports.
    pub fn of_topic(topic: crate::contract::Topic) -> Option<Stage> {
        use crate::contract::Topic;
        match topic {
            Topic::Frontend => Some(Stage::Received),
            Topic::OrderCreated => Some(Stage::OrderCreated),
            Topic::InventoryUpdated => Some(Stage::StockReserved),
            Topic::PaymentCreated => Some(Stage::Completed),
            Topic::Error => Some(Stage::Failed),
            Topic::Compensated => Some(Stage::Compensated),
            Topic::DeadLetter => None,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Received => "received",
            Stage::OrderCreated => "order_created",
            Stage::StockReserved => "stock_reserved",
            Stage::Completed => "completed",
            Stage::Failed => "failed",
            Stage::Compensated => "compensated",
        }
    }
}

/// Why a saga failed, in machine-readable form: the `reason` field of an `error` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// `users/{user}` does not exist.
    UnknownUser,
    /// `inventory/{item}` does not exist.
    UnknownItem,
    /// `inventory/{item}` holds fewer units than ordered.
    InsufficientStock,
    /// `inventory/{item}` has no usable `quantity` or `price_per_unit`.
    InvalidInventoryRecord,
    /// The order asked for a payment error (the `payment-error` field).
    PaymentDeclined,
    /// `price_per_unit × quantity` does not fit.
    InvoiceOverflow,
    /// A step kept failing until Pub/Sub gave up on the message.
    RetriesExhausted,
    /// A step could never read its message (too large, or malformed), and it was
    /// dead-lettered: the janitor failed the step on its behalf.
    Undeliverable,
    /// The saga did not end by its deadline (`SAGA_DEADLINE`), and the sweep ended it.
    TimedOut,
}

impl Reason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownUser => "unknown_user",
            Reason::UnknownItem => "unknown_item",
            Reason::InsufficientStock => "insufficient_stock",
            Reason::InvalidInventoryRecord => "invalid_inventory_record",
            Reason::PaymentDeclined => "payment_declined",
            Reason::InvoiceOverflow => "invoice_overflow",
            Reason::RetriesExhausted => "retries_exhausted",
            Reason::Undeliverable => "undeliverable",
            Reason::TimedOut => "timed_out",
        }
    }

    /// Every reason.
    pub const ALL: [Reason; 9] = [
        Reason::UnknownUser,
        Reason::UnknownItem,
        Reason::InsufficientStock,
        Reason::InvalidInventoryRecord,
        Reason::PaymentDeclined,
        Reason::InvoiceOverflow,
        Reason::RetriesExhausted,
        Reason::Undeliverable,
        Reason::TimedOut,
    ];

    /// The human-readable `status` of the `error` message when `step` fails `order` for this
    /// reason. Derived here, never written at a call site, so that the longest text a saga
    /// can carry is known (see [`SagaMessage::largest_successor_len`](crate::wire::message::SagaMessage::largest_successor_len)).
    pub fn text(self, order: &Order, step: Service) -> String {
        let Order { user, item, quantity } = order;
        match self {
            Reason::UnknownUser => format!("Order failed: user '{user}' does not exist"),
            Reason::UnknownItem => format!("Order failed: item '{item}' does not exist"),
            Reason::InsufficientStock => {
                format!("Order failed: not enough '{item}' in stock for {quantity}")
            }
            Reason::InvalidInventoryRecord => {
                format!("Order failed: item '{item}' has no valid quantity and price_per_unit")
            }
            Reason::PaymentDeclined => "Order failed: payment declined".to_owned(),
            Reason::InvoiceOverflow => "Order failed: the invoice total is too large".to_owned(),
            Reason::RetriesExhausted => {
                format!("Order failed: {step} gave up after repeated delivery attempts")
            }
            Reason::Undeliverable => format!("Order failed: the message for {step} could not be delivered"),
            Reason::TimedOut => format!("Order failed: it stopped at {step} and did not end in time"),
        }
    }
}

/// What the client ordered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    /// Who orders.
    pub user: UserName,
    /// What.
    pub item: ItemName,
    /// How many.
    pub quantity: Quantity,
}
