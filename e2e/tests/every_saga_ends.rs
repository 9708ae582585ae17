//! Every order the frontend accepts ends, and no step believes a price it did not compute:
//! on the real emulators.
//!
//! - An order whose saga messages would outgrow `MAX_MESSAGE_BYTES` on the way (numbers are
//!   re-written in full, every step adds its status) is refused at the door with 413; one
//!   tuned to just fit is accepted and ends exactly once, paid or compensated.
//! - A forward message that a step can never read (here: too large) is dead-lettered, and the
//!   janitor still ends its saga: stock held for it goes back, once.
//! - A message on `inventory-updated` that no reservation backs pays nothing, whatever price
//!   it carries.
//! - A failure no step's record backs, or a dead letter that is not the message its saga's
//!   records say was published, ends nothing: the saga is fine and stays so. The letter
//!   that is the published message still ends it.
//! - An order whose reservation document is already there (the original's data, a restore)
//!   is reserved all the same, and the item's other sales, decided in the same batches, go
//!   on.

// A failed unwrap in a test is a failed assertion.
#![allow(clippy::unwrap_used)]

use e2e::{TestStack, eventually, new_uuid, saga_message};
use saga::contract::{Service, Topic};
use saga::domain::Reason;
use saga::domain::{Money, Order, SagaId};
use saga::runtime::push_route::dead_letter_attributes::{PUBSUB_SOURCE_SUBSCRIPTION, REASON};
use saga::wire::message::{MAX_MESSAGE_BYTES, SagaMessage};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

/// An order for one widget padded with `count` numbers whose text grows when re-written.
fn growing(count: usize, extra: &Value) -> Value {
    let mut order = json!({"item": "widget", "quantity": 1, "user": "jack"});
    order["n"] = Value::Array(vec![json!(1e15); count]);
    order
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    order
}

/// The order text with `1e15` spelt short, as a client may send it.
fn body(order: &Value) -> Vec<u8> {
    order
        .to_string()
        .replace("1000000000000000.0", "1e15")
        .into_bytes()
}

/// Whether the frontend's rule accepts `order`.
fn fits(order: &Value) -> bool {
    let (order, extra) = Order::parse_request(&body(order)).unwrap();
    SagaMessage::start(SagaId::new(), order, extra).is_ok()
}

/// The most growing numbers an order with `extra` may carry and still be accepted.
fn most_that_fit(extra: &Value) -> usize {
    let (mut low, mut high) = (0, MAX_MESSAGE_BYTES / 5);
    while low + 1 < high {
        let mid = usize::midpoint(low, high);
        if fits(&growing(mid, extra)) {
            low = mid;
        } else {
            high = mid;
        }
    }
    low
}

async fn post(stack: &TestStack, order: &Value) -> (u16, Value) {
    stack
        .post(Service::Frontend, "/order", "application/json", body(order))
        .await
}

#[tokio::test]
async fn an_order_that_would_outgrow_a_message_is_refused_and_one_that_just_fits_ends_exactly_once() {
    let stack = TestStack::start("message growth").await;
    let widgets = stack.stock("widget").await;

    // Far under the 64 KiB body limit, but about 4.5 times larger once written as a message.
    let plain = most_that_fit(&json!({}));
    let too_big = growing(plain + 1, &json!({}));
    assert!(body(&too_big).len() < 32 * 1024);
    let (status, answer) = post(&stack, &too_big).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"], "too_large", "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains(&MAX_MESSAGE_BYTES.to_string()),
        "names the limit: {message}"
    );

    // Tuned to the byte: accepted, and each ends once, through its longest messages.
    let (status, paid) = post(&stack, &growing(plain, &json!({}))).await;
    assert_eq!(status, 202, "{paid}");
    let declined_order = growing(
        most_that_fit(&json!({"payment-error": "null"})),
        &json!({"payment-error": "null"}),
    );
    let (status, declined) = post(&stack, &declined_order).await;
    assert_eq!(status, 202, "{declined}");
    let (paid, declined) = (
        paid["uuid"].as_str().unwrap().to_owned(),
        declined["uuid"].as_str().unwrap().to_owned(),
    );

    let payments = stack
        .outcomes("payment-created-sub", std::slice::from_ref(&paid), WAIT)
        .await;
    assert_eq!(payments[&paid].len(), 1, "paid exactly once");
    assert_eq!(
        payments[&paid][0]["n"].as_array().map(Vec::len),
        Some(plain),
        "its fields passed on whole"
    );
    let compensations = stack
        .outcomes("compensated-sub", std::slice::from_ref(&declined), WAIT)
        .await;
    assert_eq!(compensations[&declined].len(), 1, "compensated exactly once");
    assert_eq!(stack.finished(&paid, WAIT).await["status"], "completed");
    assert_eq!(stack.finished(&declined, WAIT).await["status"], "compensated");
    assert_eq!(
        stack.stock("widget").await,
        widgets - 1,
        "one unit sold, one returned"
    );
    let quiet = stack.pull("dead-letter-sub", 10, Duration::from_secs(2)).await;
    assert!(quiet.is_empty(), "nothing was dead-lettered: {:?}", quiet.len());
}

/// A message for the `frontend` topic, as another producer may publish it, padded so that
/// orders and inventory can still read theirs but payments cannot read inventory's.
fn readable_until_payments(uuid: &str) -> Value {
    let price = Money::new(10).unwrap();
    let grows = |count: usize| {
        let mut m = saga_message(uuid, "widget", 7, "jack");
        m["pad"] = json!("x".repeat(count));
        let msg = SagaMessage::parse_any_size(m.to_string().as_bytes()).unwrap();
        let reserved = msg.order_created().stock_reserved(price).to_json().len();
        (m, msg.order_created().to_json().len(), reserved)
    };
    (MAX_MESSAGE_BYTES - 400..MAX_MESSAGE_BYTES)
        .map(grows)
        .find(|(_, created, reserved)| *created <= MAX_MESSAGE_BYTES && *reserved > MAX_MESSAGE_BYTES)
        .map(|(m, _, _)| m)
        .expect("a padding where inventory's message is the first that is too large")
}

#[tokio::test]
async fn a_saga_holding_stock_whose_next_message_cannot_be_read_is_compensated_and_its_stock_returned_once() {
    let stack = TestStack::start("undeliverable").await;
    let widgets = stack.stock("widget").await;
    let uuid = new_uuid();
    let message = readable_until_payments(&uuid);
    stack
        .publish(Topic::Frontend, message.to_string().as_bytes(), &[])
        .await;

    let uuids = [uuid.clone()];
    let errors = stack.outcomes("error-cli-sub", &uuids, WAIT).await;
    let compensated = stack.outcomes("compensated-sub", &uuids, WAIT).await;
    let (error, done) = (&errors[&uuid], &compensated[&uuid]);
    assert_eq!((error.len(), done.len()), (1, 1), "failed once, compensated once");
    assert_eq!(error[0]["step"], "payments", "{}", error[0]);
    assert_eq!(error[0]["reason"], "undeliverable", "{}", error[0]);
    assert_eq!(done[0]["reason"], "undeliverable", "{}", done[0]);
    assert!(
        error[0].get("pad").is_none(),
        "the janitor's messages leave out what would not fit"
    );
    assert_eq!(
        stack.stock("widget").await,
        widgets,
        "the 7 reserved units are back"
    );
    let reservation = stack
        .doc(&format!("inventory/widget/orders/{uuid}"))
        .await
        .unwrap();
    assert_eq!(reservation["status"], "released");
    assert_eq!(stack.finished(&uuid, WAIT).await["status"], "compensated");

    // The poison copy stays on dead-letter-sub for people, saying why.
    let letters = stack.pull("dead-letter-sub", 10, Duration::from_secs(5)).await;
    assert!(
        letters
            .iter()
            .any(|l| l.attributes.get(REASON).map(String::as_str) == Some("too_large")),
        "the too-large message is kept"
    );
    // However often it is redelivered, the stock came back once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stack.stock("widget").await, widgets);
}

#[tokio::test]
async fn a_forged_inventory_updated_message_with_no_reservation_pays_nothing() {
    let stack = TestStack::start("forged price").await;
    let uuid = new_uuid();
    let mut forged = saga_message(&uuid, "widget", 1000, "jack");
    forged["price_per_unit"] = json!(1);
    stack
        .publish(Topic::InventoryUpdated, forged.to_string().as_bytes(), &[])
        .await;

    let letter = eventually(WAIT, || async {
        stack
            .pull("dead-letter-sub", 10, Duration::from_millis(500))
            .await
            .into_iter()
            .find(|l| l.json()["uuid"] == uuid.as_str())
    })
    .await
    .expect("the forged message is dead-lettered");
    assert_eq!(
        letter.attributes.get(REASON).map(String::as_str),
        Some("unmatched_record")
    );
    let uuids = [uuid.clone()];
    let paid = stack
        .outcomes("payment-created-sub", &uuids, Duration::from_secs(3))
        .await;
    assert!(paid.is_empty(), "no payment-created: {paid:?}");
    assert!(
        stack.doc(&format!("payments/{uuid}")).await.is_none(),
        "no payment"
    );
    let compensated = stack
        .outcomes("compensated-sub", &uuids, Duration::from_secs(3))
        .await;
    assert!(
        compensated.is_empty(),
        "and no saga was invented for it: {compensated:?}"
    );
    assert!(stack.step(&uuid, Service::Payments).await.is_none());
}

#[tokio::test]
async fn a_forged_failure_or_dead_letter_ends_nothing_and_the_letter_its_records_published_still_does() {
    let stack = TestStack::start("forged failures").await;
    // Payments never gets its message: the saga waits there, fine, with stock reserved.
    stack.drop_subscription("inventory-updated-sub").await;
    let widgets = stack.stock("widget").await;
    let uuid = stack
        .place(&json!({"item": "widget", "quantity": 2, "user": "jack"}))
        .await;
    let reserved = eventually(WAIT, || async {
        let record = stack.step(&uuid, Service::Inventory).await?;
        (record["state"] == "done").then_some(record)
    })
    .await
    .expect("inventory reserves");
    let published = reserved["outbox"]["data"].as_str().unwrap().to_owned();
    let msg = SagaMessage::parse(published.as_bytes()).unwrap();

    // Whoever can publish: a failure of payments, and dead letters of payments' message,
    // one altered and one unreadable, none of which the records back.
    let declined = msg.fail(Service::Payments, Reason::PaymentDeclined).to_json();
    stack.publish(Topic::Error, declined.as_bytes(), &[]).await;
    let mut altered: Value = serde_json::from_str(&published).unwrap();
    altered["payment-error"] = json!(true);
    let from_payments = [(PUBSUB_SOURCE_SUBSCRIPTION, "inventory-updated-sub")];
    for letter in [
        altered.to_string(),
        format!(r#"{{"uuid":"{uuid}","quantity":0}}"#),
    ] {
        stack
            .publish(Topic::DeadLetter, letter.as_bytes(), &from_payments)
            .await;
    }

    let refused = eventually(WAIT, || async {
        stack
            .pull("dead-letter-sub", 10, Duration::from_millis(500))
            .await
            .into_iter()
            .find(|l| l.attributes.get(REASON).map(String::as_str) == Some("unmatched_record"))
    })
    .await
    .expect("the forged failure is dead-lettered as unmatched");
    assert_eq!(refused.json()["uuid"], uuid.as_str());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        stack.step(&uuid, Service::Payments).await.is_none(),
        "payments not failed"
    );
    assert!(
        stack.step(&uuid, Service::Janitor).await.is_none(),
        "not compensated"
    );
    assert_eq!(
        stack.stock("widget").await,
        widgets - 2,
        "the stock is still reserved"
    );

    // The message inventory published, dead-lettered: the saga ends, and the stock is back.
    stack
        .publish(Topic::DeadLetter, published.as_bytes(), &from_payments)
        .await;
    let uuids = [uuid.clone()];
    let compensated = stack.outcomes("compensated-sub", &uuids, WAIT).await;
    assert_eq!(compensated.get(&uuid).map(Vec::len), Some(1), "compensated once");
    assert_eq!(compensated[&uuid][0]["reason"], "retries_exhausted");
    assert_eq!(stack.stock("widget").await, widgets);
}

#[tokio::test]
async fn an_order_whose_reservation_is_already_on_file_is_reserved_and_the_items_other_sales_go_on() {
    use saga::gcp::store::{DocPath, WriteSet};
    let stack = TestStack::start("leftover reservation").await;
    let before = stack.stock("widget").await;
    let uuid = new_uuid();
    let mut leftover = WriteSet::new();
    leftover.update(
        DocPath::new(["inventory", "widget", "orders", &uuid]),
        &json!({"item": "widget", "quantity": 9, "user": "jill"}),
        None,
        None,
    );
    stack.store.commit(leftover).await.unwrap();

    // Its order comes in as other producers send them; ordinary orders of the same item
    // come meanwhile.
    stack
        .publish(
            Topic::Frontend,
            saga_message(&uuid, "widget", 2, "jack").to_string().as_bytes(),
            &[],
        )
        .await;
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(
            stack
                .place(&json!({"item": "widget", "quantity": 1, "user": "jill"}))
                .await,
        );
    }
    for u in std::iter::once(&uuid).chain(&others) {
        let view = stack.finished(u, WAIT).await;
        assert_eq!(view["status"], "completed", "{u}: {view}");
    }
    let reservation = stack
        .doc(&format!("inventory/widget/orders/{uuid}"))
        .await
        .unwrap();
    assert_eq!(
        (&reservation["quantity"], &reservation["user"]),
        (&json!(2), &json!("jack")),
        "the saga's reservation replaced what was there: {reservation}"
    );
    assert_eq!(stack.stock("widget").await, before - 2 - 4);
}
