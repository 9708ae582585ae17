//! The janitor: compensates failed sagas.
//!
//! It reads two subscriptions (the status view, `sagas/{uuid}`, is written by each step in
//! its own commit, the janitor's included: see [`saga::engine::status`]):
//! - `error-sub`: a step failed. The janitor undoes every earlier step in one atomic commit,
//!   from the last step back: the payment step is closed, reserved stock goes back (the
//!   reservation turns from `reserved` to `released` in the same commit as the stock's new
//!   level, so it happens exactly once), the user's order is marked `cancelled`. The
//!   compensation is a step of the saga's engine ([`Compensation`]) that shares the item's
//!   stock with inventory's sales: the returns of one item are batched and keep to its
//!   write gap, as its sales do. Steps
//!   that never ran get tombstones, so a forward message still in flight can never run them
//!   later. The commit also records the compensation with its `compensated` message, which is
//!   then published.
//! - `dead-letter-janitor-sub`: a saga message was dead-lettered, by Pub/Sub (it gave up
//!   after the step kept failing) or by a step that could never read it (poison: too large,
//!   malformed). Either way the saga must still end, so no stock is held for ever. If it was
//!   a forward message, the janitor fails that step on its behalf (`retries_exhausted`, or
//!   `undeliverable` for poison: the same record and `error` message the step would have
//!   written, without the passed-through fields if they would not fit), and the error then
//!   flows back here to be compensated; if the step had already committed its record but its
//!   message never got out, the janitor publishes that stored message instead (through the
//!   same engine, under the same lease), since the step's work is done and undoing it would
//!   waste it. If it was an `error` message, the janitor compensates it directly. A message whose order cannot be read stands for
//!   its `uuid`'s saga with the order its records hold. Left on `dead-letter-sub` for people:
//!   messages with no readable `uuid` (or no saga behind it), and messages that do not match
//!   their saga's records (`unmatched_record`: a forgery must not end a saga that is fine).
//!
//! Only the saga's records can say it failed. A compensation, whoever asks for it, takes
//! the failure a forward step's record holds and compensates with it, not with the message
//! that asked; a message no record backs is `unmatched_record`. A dead letter of a forward
//! message fails its step only if it is, byte for byte, the message the step before stored
//! as published (for the first step, whose message no record stores: only for a saga the
//! frontend recorded, with the same order). The sweep, which finds a saga stuck from its
//! records and its age, fails the step that timed out on its record first ([`sweep`]).

pub mod sweep;

use axum::Router;
use firestore::FirestoreTimestamp;
use saga::contract::{Delivery, Purpose, Service, Subscription, Topic};
use saga::domain::Reason;
use saga::engine::records::{self, DocStatus, StateChange, StatusChange, StepRecord, StepState};
use saga::engine::{self, Deadline, Decision, Handled, Inbound, Step, StepError, UNMATCHED};
use saga::gcp::Clients;
use saga::gcp::store::{DocPath, Precondition, Snapshot, WriteSet};
use saga::runtime::config::Config;
use saga::runtime::push_route::{Poison, dead_letter_attributes, parse_message, push_route, push_route_with};
use saga::wire::envelope::{MAX_PUSH_BYTES, Push};
use saga::wire::message::SagaMessage;

/// The attribute Pub/Sub puts on a dead-lettered message: the subscription that gave up.
pub const SOURCE_SUBSCRIPTION_ATTRIBUTE: &str = dead_letter_attributes::PUBSUB_SOURCE_SUBSCRIPTION;

/// The forward steps, last first: the order compensation undoes them in.
const UNDO_ORDER: [Service; 3] = [Service::Payments, Service::Inventory, Service::Orders];

/// What compensation found and did, for the log and the `compensated` message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Units that go back to stock (0 if none were reserved).
    pub released: u32,
    /// Whether the user's order is cancelled (it existed).
    pub cancelled: bool,
    /// Steps that had not run and get tombstones.
    pub tombstoned: Vec<Service>,
}

/// Which of the saga's domain documents compensation changes were there when read: a
/// document written only if it exists must be known to, or one that was deleted (a restore,
/// a user's data removed) would fail the commit of every return batched with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OnFile {
    /// `inventory/{item}/orders/{uuid}`.
    pub reservation: bool,
    /// `users/{user}/orders/{uuid}`.
    pub user_order: bool,
}

/// Decides the compensation of a saga from its step records (in [`UNDO_ORDER`]) and queues
/// the writes; `stock` is the stock of the saga's item (its reservation's, which
/// `Compensation::decide` checks first) as the returns before this one in the batch left it.
/// `Err` names why there is nothing to compensate.
pub fn plan(
    stock: Option<&Snapshot>,
    records: &[(Service, Option<(StepRecord, Snapshot)>)],
    on_file: OnFile,
    writes: &mut WriteSet,
    uuid: saga::domain::SagaId,
    fallback: &SagaMessage,
) -> Result<Plan, &'static str> {
    let mut plan = Plan::default();
    for (service, record) in records {
        let path = records::step(uuid, *service);
        match record {
            None => {
                let mut tombstone = StepRecord::new(*service, uuid, &fallback.order, StepState::Tombstone);
                tombstone.reason = Some("compensated before this step ran".to_owned());
                writes.create(path, &tombstone);
                plan.tombstoned.push(*service);
            }
            Some((record, _)) if *service == Service::Payments && record.state == StepState::Done => {
                return Err("the saga completed: its payment was made, so there is nothing to compensate");
            }
            Some((record, snapshot)) if record.state == StepState::Done => {
                let domain = Domain { stock, on_file };
                undo(*service, record, snapshot, domain, uuid, writes, &mut plan)?;
            }
            // Failed, rejected, compensated or tombstoned: nothing of this step to undo.
            Some(_) => {}
        }
    }
    Ok(plan)
}

/// The domain documents a compensation changes, as read: the stock of the saga's item, and
/// which of the others are there.
struct Domain<'a> {
    stock: Option<&'a Snapshot>,
    on_file: OnFile,
}

/// Queues the undoing of `service`'s completed step: its record becomes compensated (only as
/// it was read, so two compensations never both undo it), and the stock or the user's order
/// goes back in the same commit.
fn undo(
    service: Service,
    record: &StepRecord,
    snapshot: &Snapshot,
    Domain { stock, on_file }: Domain<'_>,
    uuid: saga::domain::SagaId,
    writes: &mut WriteSet,
    plan: &mut Plan,
) -> Result<(), &'static str> {
    let order = record.order().ok_or("a step record is unreadable")?;
    writes.update(
        records::step(uuid, service),
        &StateChange {
            state: StepState::Compensated,
            updated: FirestoreTimestamp::now(),
        },
        Some(StateChange::MASK),
        Some(Precondition::Unchanged(snapshot.update_time())),
    );
    match service {
        Service::Inventory => {
            // The record proves the units were taken; a reservation document that is gone
            // (a restore) is not made again, and its units still go back.
            if on_file.reservation {
                writes.update(
                    records::reservation(&order.item, uuid),
                    &StatusChange::now(DocStatus::Released),
                    Some(StatusChange::MASK),
                    Some(Precondition::Exists),
                );
            }
            // The stock the batch shares (`Compensation::decide` refuses any other first):
            // the level written as sales write it, only if unchanged since read, and
            // counting against the item's write gap. Every member of a batch writes the
            // whole level, so the last one written holds them all.
            let (stock, level) = stock
                .and_then(|stock| Some((stock, stock.integer(records::inventory_fields::QUANTITY)?)))
                .ok_or("the reservation's stock cannot take its units back")?;
            records::set_stock_level(writes, &order.item, stock, level + i64::from(order.quantity));
            plan.released = order.quantity.get();
        }
        // A user's order that is gone (deleted with the user's data) is not made again.
        Service::Orders if on_file.user_order => {
            writes.update(
                records::user_order(&order.user, uuid),
                &StatusChange::now(DocStatus::Cancelled),
                Some(StatusChange::MASK),
                Some(Precondition::Exists),
            );
            plan.cancelled = true;
        }
        _ => {}
    }
    Ok(())
}

/// The compensation of a failed saga, as a step of the engine: its record is the janitor's
/// own (`sagas/{uuid}/steps/janitor`), made once, with the `compensated` message as its
/// outbox; it reads the item's stock and the forward steps' records, and it shares the stock
/// with inventory's sales. So the returns of one item that arrive together are decided one
/// after the other and written in one commit, and every write of the stock, a sale's or a
/// return's, keeps to the item's write gap (`saga::engine`'s batches).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compensation {
    /// The least time between two writes of an item's stock (`SHARED_WRITE_GAP`).
    pub write_gap: std::time::Duration,
}

impl Default for Compensation {
    fn default() -> Self {
        Compensation {
            write_gap: engine::SHARED_WRITE_GAP,
        }
    }
}

impl Compensation {
    /// As `config` sets it.
    pub fn configured(config: &Config) -> Self {
        Compensation {
            write_gap: config.shared_write_gap,
        }
    }
}

/// The `error` message a forward step's record holds: the failure of a rejected or failed
/// step, as that step (or the janitor on its behalf) published it.
fn recorded_failure(
    records: &[(Service, Option<(StepRecord, Snapshot)>)],
    uuid: saga::domain::SagaId,
) -> Option<SagaMessage> {
    records.iter().find_map(|(_, record)| {
        let (record, _) = record.as_ref()?;
        record.outbox.as_ref().filter(|out| out.topic == Topic::Error)?;
        let failed = record.stored_message(uuid)?;
        (record.state.is_failure() && failed.reason.is_some()).then_some(failed)
    })
}

/// The stock and the forward steps' records, from the documents [`Compensation`] reads.
type Read = (
    Option<Snapshot>,
    Vec<(Service, Option<(StepRecord, Snapshot)>)>,
    OnFile,
);

fn found(docs: &[Option<Snapshot>]) -> Result<Read, StepError> {
    let [stock, steps @ .., reservation, user_order] = docs else {
        return Err(anyhow::anyhow!("compensation reads the stock, the records, then two documents").into());
    };
    let mut found = Vec::with_capacity(UNDO_ORDER.len());
    for (service, doc) in UNDO_ORDER.iter().zip(steps) {
        let record = match doc {
            Some(snapshot) => Some((snapshot.decode::<StepRecord>()?, snapshot.clone())),
            None => None,
        };
        found.push((*service, record));
    }
    let on_file = OnFile {
        reservation: reservation.is_some(),
        user_order: user_order.is_some(),
    };
    Ok((stock.clone(), found, on_file))
}

impl Step for Compensation {
    fn service(&self) -> Service {
        Service::Janitor
    }

    /// The item's stock, the forward steps' records (last step first), the reservation and
    /// the user's order.
    fn reads(&self, msg: &SagaMessage) -> Vec<DocPath> {
        std::iter::once(records::item(&msg.order.item))
            .chain(UNDO_ORDER.iter().map(|s| records::step(msg.uuid, *s)))
            .chain([
                records::reservation(&msg.order.item, msg.uuid),
                records::user_order(&msg.order.user, msg.uuid),
            ])
            .collect()
    }

    fn shared_document(&self, msg: &SagaMessage) -> Option<DocPath> {
        Some(records::item(&msg.order.item))
    }

    fn shared_write_gap(&self) -> std::time::Duration {
        self.write_gap
    }

    fn shared_written_at(&self, shared: &Snapshot) -> Option<std::time::SystemTime> {
        records::stock_gap_start(shared)
    }

    /// A paid saga is never compensated; nor is one whose records cannot be read.
    fn nothing_to_do(&self, msg: &SagaMessage, docs: &[Option<Snapshot>]) -> Option<&'static str> {
        let (stock, records, on_file) = found(docs).ok()?;
        // What `decide` refuses, it refuses itself.
        can_return(stock.as_ref(), &records, msg).ok()?;
        let why = plan(
            stock.as_ref(),
            &records,
            on_file,
            &mut WriteSet::new(),
            msg.uuid,
            msg,
        )
        .err()?;
        tracing::warn!(uuid = %msg.uuid, why, "not compensating");
        Some(why)
    }

    fn decide(&self, msg: &SagaMessage, docs: &[Option<Snapshot>]) -> Result<Decision, StepError> {
        let (stock, records, on_file) = found(docs)?;
        can_return(stock.as_ref(), &records, msg)?;
        // Only the records can say the saga failed, and how: a message no record backs is
        // not the saga's (a forgery, another producer's slip), and never ends a saga that is
        // fine. Whoever finds a saga stuck (the sweep) fails its step on its record first.
        let failure = recorded_failure(&records, msg.uuid)
            .ok_or_else(|| StepError::unmatched(Service::Janitor, msg.uuid, "no step of this saga failed"))?;
        let msg = &failure;
        let mut writes = WriteSet::new();
        let plan = plan(stock.as_ref(), &records, on_file, &mut writes, msg.uuid, msg)
            .map_err(|why| anyhow::anyhow!(why))?;
        tracing::debug!(
            uuid = %msg.uuid,
            released = plan.released,
            cancelled = plan.cancelled,
            tombstoned = ?plan.tombstoned,
            "compensation decided"
        );
        let message = msg.compensated(plan.released, plan.cancelled).fitted();
        Ok(Decision::done(Topic::Compensated, message, writes).going_on_with(failure))
    }
}

/// Whether the units the saga reserved, if it holds any, can go back to the stock this
/// batch read (`stock`, the item of the failure message `msg`). A message naming another
/// item than the reservation's is not the saga's (a forgery, or another producer's slip):
/// it is dead-lettered as unmatched, and the saga, if it really failed, is ended by the
/// sweep from its own records. A stock that is gone or holds no integer level needs a
/// person: the message is retried, and no units are lost meanwhile.
fn can_return(
    stock: Option<&Snapshot>,
    records: &[(Service, Option<(StepRecord, Snapshot)>)],
    msg: &SagaMessage,
) -> Result<(), StepError> {
    let done = |step: Service| {
        records.iter().find_map(|(service, record)| match record {
            Some((record, _)) if *service == step && record.state == StepState::Done => record.order(),
            _ => None,
        })
    };
    // The user's order is read at the message's user: another user is not this saga's.
    if done(Service::Orders).is_some_and(|order| order.user != msg.order.user) {
        return Err(StepError::unmatched(
            Service::Orders,
            msg.uuid,
            "the failure names another user than the order",
        ));
    }
    let Some(order) = done(Service::Inventory) else {
        return Ok(());
    };
    if order.item != msg.order.item {
        return Err(StepError::unmatched(
            Service::Inventory,
            msg.uuid,
            "the failure names another item than the reservation",
        ));
    }
    match stock.and_then(|s| s.integer(records::inventory_fields::QUANTITY)) {
        Some(_) => Ok(()),
        None => Err(anyhow::anyhow!(
            "inventory/{} is gone or has no integer quantity: the units reserved for saga {} cannot go back",
            order.item.as_str(),
            msg.uuid
        )
        .into()),
    }
}

/// Compensates the saga of the failure message `msg` (delivered as `inbound`), before
/// `deadline`.
pub async fn compensate(
    clients: &Clients,
    step: Compensation,
    msg: &SagaMessage,
    inbound: &Inbound,
    deadline: Deadline,
) -> Result<Handled, StepError> {
    let handled = engine::run(std::sync::Arc::new(step), clients, msg, inbound, deadline).await?;
    if handled == Handled::Published(Topic::Compensated) {
        tracing::info!(uuid = %msg.uuid, reason = ?msg.reason, "saga compensated");
    }
    Ok(handled)
}

/// Fails a forward step on its behalf: Pub/Sub gave up delivering its message
/// ([`Reason::RetriesExhausted`]), or the step could never read it
/// ([`Reason::Undeliverable`]).
struct GiveUp {
    service: Service,
    reason: Reason,
}

impl Step for GiveUp {
    fn service(&self) -> Service {
        self.service
    }

    fn reads(&self, _msg: &SagaMessage) -> Vec<DocPath> {
        Vec::new()
    }

    fn decide(&self, msg: &SagaMessage, _docs: &[Option<Snapshot>]) -> Result<Decision, StepError> {
        Ok(Decision::failed(self.service, msg, self.reason))
    }
}

/// Fails `step` of `msg`'s saga on its behalf for `reason`: its record, `Failed`, with the
/// `error` message it stores and publishes. A step that has its record already keeps it,
/// and what it stored is published instead if nothing shows it delivered.
pub(crate) async fn give_up(
    clients: &Clients,
    step: Service,
    reason: Reason,
    msg: &SagaMessage,
    inbound: &Inbound,
    deadline: Deadline,
) -> Result<Handled, StepError> {
    let give_up = GiveUp {
        service: step,
        reason,
    };
    engine::run(std::sync::Arc::new(give_up), clients, msg, inbound, deadline).await
}

/// Handles a message that Pub/Sub (or a service) moved to the dead-letter topic, before
/// `deadline`.
pub async fn dead_lettered(
    clients: &Clients,
    compensation: Compensation,
    push: &Push,
    deadline: Deadline,
) -> Result<Handled, StepError> {
    let origin = dead_letter_attributes::origin(&push.attributes);
    let poison = origin.poison;
    if poison == Some(UNMATCHED) {
        tracing::warn!("a message that does not match its saga's records; kept on dead-letter-sub");
        return Ok(Handled::Ignored(
            "not the saga's message (it does not match its records); kept on dead-letter-sub",
        ));
    }
    let source_name = origin.subscription;
    let Some(Subscription {
        topic,
        delivery: Delivery::Push { service, purpose, .. },
        ..
    }) = source_name.and_then(Subscription::find)
    else {
        tracing::error!(source = ?source_name, "dead letter from an unknown subscription; kept on dead-letter-sub");
        return Ok(Handled::Ignored(
            "not from a saga subscription; kept on dead-letter-sub",
        ));
    };
    let Some(msg) = saga_of_dead_letter(clients, push, poison.is_some()).await? else {
        return Ok(Handled::Ignored(
            "no saga can be read from it; kept on dead-letter-sub",
        ));
    };
    let reason = if poison.is_some() {
        Reason::Undeliverable
    } else {
        Reason::RetriesExhausted
    };
    tracing::error!(step = %service, ?purpose, reason = reason.as_str(), "a saga message was dead-lettered; ending its saga");
    match purpose {
        Purpose::Step => {
            if !as_published(clients, *topic, msg.uuid, &push.data).await? {
                tracing::warn!(
                    uuid = %msg.uuid,
                    %topic,
                    "a dead letter that is not the message its saga's records say was published; kept on dead-letter-sub"
                );
                return Ok(Handled::Ignored(
                    "not the message the saga's records say was published; kept on dead-letter-sub",
                ));
            }
            give_up(clients, *service, reason, &msg, &Inbound::of(push), deadline).await
        }
        Purpose::Compensation => compensate(clients, compensation, &msg, &Inbound::of(push), deadline).await,
        Purpose::DeadLetters => Ok(Handled::Ignored(
            "a dead letter that could not be processed; kept on dead-letter-sub",
        )),
    }
}

/// The forward step whose record stores what it published on `topic` (its outbox): none
/// for the frontend's topic, whose messages no step record holds, and for `error`, which
/// compensation checks against the records itself.
fn producer_step(topic: Topic) -> Option<Service> {
    if matches!(topic, Topic::Error | Topic::DeadLetter) {
        return None;
    }
    UNDO_ORDER
        .into_iter()
        .find(|step| step.publishes().contains(&topic))
}

/// Whether the dead letter `data` from `topic` is, byte for byte, the message the saga's
/// records say was published there. A step publishes only what its record stores, and the
/// janitor's relays publish that same stored message, so a letter that differs is not the
/// saga's (a forgery, another producer's slip) and must not fail a step of a saga that is
/// fine. A letter of a version the reader cannot read (poison) that its producer did
/// publish still ends its saga. The frontend's letters are checked against the saga it
/// recorded instead.
async fn as_published(
    clients: &Clients,
    topic: Topic,
    uuid: saga::domain::SagaId,
    data: &[u8],
) -> Result<bool, StepError> {
    let Some(producer) = producer_step(topic) else {
        return if topic == Topic::Frontend {
            started_by_the_frontend(clients, uuid, data).await
        } else {
            Ok(true)
        };
    };
    let record = clients
        .store
        .get(&records::step(uuid, producer))
        .await?
        .and_then(|doc| doc.decode::<StepRecord>().ok());
    Ok(record
        .and_then(|record| record.outbox)
        .is_some_and(|out| out.topic == topic && out.data.as_bytes() == data))
}

/// Whether the frontend started the saga of the dead letter `data` from its own topic, with
/// the same order: it stores no message, but it records every saga it starts in the status
/// view, with the order, before it publishes.
async fn started_by_the_frontend(
    clients: &Clients,
    uuid: saga::domain::SagaId,
    data: &[u8],
) -> Result<bool, StepError> {
    let Ok(letter) = SagaMessage::parse_any_size(data) else {
        return Ok(false);
    };
    let view = sweep::view(clients, uuid).await?;
    Ok(view.and_then(|view| sweep::order_of(&view)) == Some(letter.order))
}

/// The saga message of a dead letter, read whatever its size (it may have been refused for
/// its size alone). For a poison message, and for one whose order cannot be read, the saga's
/// step records decide: with none, no step ever ran for that `uuid` and nothing is held, so
/// there is no saga to end (and a stray message must not invent one); otherwise a message
/// whose order cannot be read stands for its saga with the order the records hold. `None`
/// means the dead letter stays on `dead-letter-sub` for people.
async fn saga_of_dead_letter(
    clients: &Clients,
    push: &Push,
    poison: bool,
) -> Result<Option<SagaMessage>, StepError> {
    let parsed = SagaMessage::parse_any_size(&push.data);
    let uuid = match &parsed {
        Ok(msg) => Some(msg.uuid),
        Err(e) => {
            tracing::warn!(
                code = e.code(),
                field = e.field(),
                "the dead letter is not a whole saga message"
            );
            SagaMessage::uuid_of(&push.data)
        }
    };
    let Some(uuid) = uuid else {
        tracing::error!("a dead letter without a readable uuid; kept on dead-letter-sub");
        return Ok(None);
    };
    tracing::Span::current().record("uuid", tracing::field::display(uuid));
    if let Ok(msg) = &parsed
        && !poison
    {
        return Ok(Some(msg.clone()));
    }
    let paths: Vec<_> = UNDO_ORDER.iter().map(|s| records::step(uuid, *s)).collect();
    let recorded = clients
        .store
        .get_all(&paths)
        .await?
        .into_iter()
        .flatten()
        .find_map(|doc| doc.decode::<StepRecord>().ok()?.order());
    match (parsed, recorded) {
        (_, None) => {
            tracing::error!(
                "a dead letter of a saga with no step record: nothing is held; kept on dead-letter-sub"
            );
            Ok(None)
        }
        (Ok(msg), Some(_)) => Ok(Some(msg)),
        (Err(_), Some(order)) => Ok(Some(SagaMessage::new(uuid, order, serde_json::Map::new()))),
    }
}

/// The janitor's routes: one per push subscription the contract gives it.
pub fn router(clients: Clients, config: &Config) -> Router {
    let compensation = Compensation::configured(config);
    let mut routes = Router::new().route(saga::contract::sweep::PATH, sweep::route(config));
    for subscription in Service::Janitor.push_subscriptions() {
        let Delivery::Push { purpose, path, .. } = subscription.delivery else {
            continue;
        };
        let route = match purpose {
            Purpose::Compensation => push_route(move |clients, push, deadline| async move {
                let msg = parse_message(&push)?;
                compensate(&clients, compensation, &msg, &Inbound::of(&push), deadline).await
            }),
            Purpose::DeadLetters => {
                push_route_with(Poison::Keep, move |clients, push, deadline| async move {
                    dead_lettered(&clients, compensation, &push, deadline).await
                })
            }
            Purpose::Step => continue,
        };
        routes = routes.route(path, route);
    }
    let routes = routes.with_state(clients);
    saga::runtime::server::standard(routes, MAX_PUSH_BYTES)
}

#[cfg(test)]
mod tests {
    // A failed unwrap in a test is a failed assertion.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use saga::domain::SagaId;

    /// Both domain documents there, as they are unless someone deleted them.
    const ON_FILE: OnFile = OnFile {
        reservation: true,
        user_order: true,
    };

    fn message(uuid: SagaId) -> SagaMessage {
        let obj =
            serde_json::json!({"item": "widget", "quantity": 4, "user": "jack", "uuid": uuid.to_string()});
        SagaMessage::parse(obj.to_string().as_bytes()).unwrap()
    }

    /// The records of the three forward steps, in undo order, each in the state given or
    /// absent.
    fn records_in(
        msg: &SagaMessage,
        states: [Option<StepState>; 3],
    ) -> Vec<(Service, Option<(StepRecord, Snapshot)>)> {
        UNDO_ORDER
            .iter()
            .zip(states)
            .map(|(service, state)| {
                let record = state.map(|state| {
                    let mut record = StepRecord::new(*service, msg.uuid, &msg.order, state);
                    // A step that refused or failed stored its `error` message.
                    if state.is_failure() {
                        let failed = msg.fail(*service, Reason::RetriesExhausted);
                        record.outbox = Some(saga::gcp::bus::Outgoing::new(Topic::Error, failed.to_json()));
                    }
                    let snapshot = Snapshot::of(&records::step(msg.uuid, *service), &record, 5).unwrap();
                    (record, snapshot)
                });
                (*service, record)
            })
            .collect()
    }

    #[test]
    fn a_forward_topics_letters_are_checked_against_the_step_that_published_them() {
        for (topic, producer) in [
            (Topic::Frontend, None),
            (Topic::OrderCreated, Some(Service::Orders)),
            (Topic::InventoryUpdated, Some(Service::Inventory)),
            (Topic::PaymentCreated, Some(Service::Payments)),
            (Topic::Error, None),
            (Topic::DeadLetter, None),
            (Topic::Compensated, None),
        ] {
            assert_eq!(producer_step(topic), producer, "{topic}");
        }
    }

    #[test]
    fn compensation_undoes_what_ran_and_tombstones_what_did_not() {
        use StepState::{Compensated, Done, Failed, Rejected, Tombstone};
        let uuid = SagaId::new();
        let msg = message(uuid);
        let (reservation, user_order) = (
            format!("inventory/widget/orders/{uuid}"),
            format!("users/jack/orders/{uuid}"),
        );
        let step = |s: Service| format!("sagas/{uuid}/steps/{s}");
        // [payments, inventory, orders] → the plan, and the documents it writes.
        let cases: Vec<([Option<StepState>; 3], Plan, Vec<String>)> = vec![
            (
                [Some(Rejected), Some(Done), Some(Done)],
                Plan {
                    released: 4,
                    cancelled: true,
                    tombstoned: vec![],
                },
                vec![
                    step(Service::Inventory),
                    reservation.clone(),
                    "inventory/widget".into(),
                    step(Service::Orders),
                    user_order.clone(),
                ],
            ),
            (
                [None, Some(Rejected), Some(Done)],
                Plan {
                    released: 0,
                    cancelled: true,
                    tombstoned: vec![Service::Payments],
                },
                vec![step(Service::Payments), step(Service::Orders), user_order.clone()],
            ),
            (
                [None, None, Some(Rejected)],
                Plan {
                    released: 0,
                    cancelled: false,
                    tombstoned: vec![Service::Payments, Service::Inventory],
                },
                vec![step(Service::Payments), step(Service::Inventory)],
            ),
            (
                [None, None, None],
                Plan {
                    released: 0,
                    cancelled: false,
                    tombstoned: vec![Service::Payments, Service::Inventory, Service::Orders],
                },
                vec![
                    step(Service::Payments),
                    step(Service::Inventory),
                    step(Service::Orders),
                ],
            ),
            (
                [Some(Failed), Some(Done), Some(Done)],
                Plan {
                    released: 4,
                    cancelled: true,
                    tombstoned: vec![],
                },
                vec![
                    step(Service::Inventory),
                    reservation.clone(),
                    "inventory/widget".into(),
                    step(Service::Orders),
                    user_order.clone(),
                ],
            ),
            (
                [Some(Tombstone), Some(Compensated), Some(Compensated)],
                Plan::default(),
                vec![],
            ),
        ];
        for (states, expected, documents) in cases {
            let mut writes = WriteSet::new();
            let got = plan(
                Some(&stock(9)),
                &records_in(&msg, states),
                ON_FILE,
                &mut writes,
                uuid,
                &msg,
            )
            .unwrap();
            assert_eq!(got, expected, "{states:?}");
            let written: Vec<&str> = writes.documents().into_iter().map(|(path, _)| path).collect();
            assert_eq!(written, documents, "{states:?}");
        }
    }

    /// `inventory/widget` holding `quantity`, as read at time 3.
    fn stock(quantity: i64) -> Snapshot {
        let path = records::item(&saga::domain::ItemName::parse("widget").unwrap());
        Snapshot::of(
            &path,
            &serde_json::json!({"quantity": quantity, "price_per_unit": 10}),
            3,
        )
        .unwrap()
    }

    #[test]
    fn a_released_reservation_and_its_stock_come_back_in_one_guarded_commit() {
        let uuid = SagaId::new();
        let msg = message(uuid);
        let mut writes = WriteSet::new();
        let records = records_in(
            &msg,
            [
                Some(StepState::Rejected),
                Some(StepState::Done),
                Some(StepState::Done),
            ],
        );
        let read = stock(9);
        plan(Some(&read), &records, ON_FILE, &mut writes, uuid, &msg).unwrap();
        let guards: Vec<Option<Precondition>> = writes.documents().into_iter().map(|(_, p)| p).collect();
        let read_at = records[1].1.as_ref().unwrap().1.update_time();
        // The inventory record changes only as it was read, so a second compensation racing
        // this one fails its commit instead of returning the stock again.
        assert_eq!(guards[0], Some(Precondition::Unchanged(read_at)));
        assert_eq!(guards[1], Some(Precondition::Exists), "the reservation");
        // The level, written as sales write it: only if the stock is still as read, and
        // marked, so that the item's write gap counts this write too.
        assert_eq!(
            guards[2],
            Some(Precondition::Unchanged(read.update_time())),
            "the stock"
        );
        let item = records::item(&msg.order.item);
        let after = read.after(&writes.split_off_document(&item));
        assert_eq!(after.integer(records::inventory_fields::QUANTITY), Some(9 + 4));
        assert!(records::stock_gap_start(&after).is_some(), "marked");
    }

    #[test]
    fn returns_in_one_batch_add_up() {
        let records = |msg: &SagaMessage| {
            records_in(
                msg,
                [
                    Some(StepState::Rejected),
                    Some(StepState::Done),
                    Some(StepState::Done),
                ],
            )
        };
        let item = records::item(&message(SagaId::new()).order.item);
        // Two returns decided one after the other, the second on the stock as the first
        // left it: the last level written holds both.
        let mut state = stock(9);
        for _ in 0..2 {
            let uuid = SagaId::new();
            let msg = message(uuid);
            let mut writes = WriteSet::new();
            plan(Some(&state), &records(&msg), ON_FILE, &mut writes, uuid, &msg).unwrap();
            state = state.after(&writes.split_off_document(&item));
        }
        assert_eq!(
            state.integer(records::inventory_fields::QUANTITY),
            Some(9 + 4 + 4)
        );
    }

    /// What compensation reads for `msg`'s saga with its forward records in `states`: a
    /// stock of 9, the records, both domain documents.
    fn docs_of(msg: &SagaMessage, states: [Option<StepState>; 3]) -> Vec<Option<Snapshot>> {
        let on_file = |path: DocPath| Snapshot::of(&path, &serde_json::json!({"status": "x"}), 1).ok();
        std::iter::once(Some(stock(9)))
            .chain(
                records_in(msg, states)
                    .into_iter()
                    .map(|(_, r)| r.map(|(_, snapshot)| snapshot)),
            )
            .chain([
                on_file(records::reservation(&msg.order.item, msg.uuid)),
                on_file(records::user_order(&msg.order.user, msg.uuid)),
            ])
            .collect()
    }

    #[test]
    fn only_a_failure_a_steps_record_holds_is_compensated_and_with_that_record_s_reason() {
        use StepState::{Done, Rejected};
        let msg = message(SagaId::new());
        let step = Compensation::default();
        // Payments has not run; inventory and orders are done: the saga is fine.
        let fine = docs_of(&msg, [None, Some(Done), Some(Done)]);
        for forged in [
            msg.fail(Service::Payments, Reason::PaymentDeclined),
            msg.fail(Service::Payments, Reason::TimedOut),
        ] {
            assert_eq!(step.nothing_to_do(&forged, &fine), None, "decide says");
            match step.decide(&forged, &fine) {
                Err(StepError::Poison { code, .. }) => assert_eq!(code, UNMATCHED),
                other => panic!("a failure no record backs must not compensate: {other:?}"),
            }
        }
        // A step refused the order: whatever the message says, its record's failure is
        // the one compensated.
        let refused = docs_of(&msg, [None, Some(Rejected), Some(Done)]);
        let d = step
            .decide(&msg.fail(Service::Payments, Reason::TimedOut), &refused)
            .unwrap();
        assert_eq!(
            (d.topic, d.message.reason),
            (Topic::Compensated, Some(Reason::RetriesExhausted)),
            "the record's reason, not the message's"
        );
    }

    #[test]
    fn units_go_back_only_to_the_reservations_own_stock_with_a_level_and_otherwise_nothing_is_written() {
        let step = Compensation::default();
        let msg = message(SagaId::new());
        let read = |stock: Option<Snapshot>| {
            let records = records_in(
                &msg,
                [
                    Some(StepState::Rejected),
                    Some(StepState::Done),
                    Some(StepState::Done),
                ],
            );
            let on_file = |path: DocPath| Snapshot::of(&path, &serde_json::json!({"status": "x"}), 1).ok();
            std::iter::once(stock)
                .chain(records.into_iter().map(|(_, r)| r.map(|(_, snapshot)| snapshot)))
                .chain([
                    on_file(records::reservation(&msg.order.item, msg.uuid)),
                    on_file(records::user_order(&msg.order.user, msg.uuid)),
                ])
                .collect::<Vec<_>>()
        };
        let no_level = Snapshot::of(
            &records::item(&msg.order.item),
            &serde_json::json!({"quantity": "nine"}),
            3,
        )
        .unwrap();
        let mut elsewhere = msg.clone();
        elsewhere.order.item = saga::domain::ItemName::parse("wotsit").unwrap();
        let cases: [(&str, &SagaMessage, Option<Snapshot>, Option<&str>); 4] = [
            ("its stock", &msg, Some(stock(9)), None),
            (
                "a failure naming another item",
                &elsewhere,
                Some(stock(9)),
                Some(UNMATCHED),
            ),
            ("a stock that is gone", &msg, None, Some("transient")),
            ("a stock with no level", &msg, Some(no_level), Some("transient")),
        ];
        for (what, msg, stock, refused) in cases {
            let docs = read(stock);
            assert_eq!(step.nothing_to_do(msg, &docs), None, "{what}: decide says");
            let got = match step.decide(msg, &docs) {
                Ok(decision) => {
                    assert_eq!(decision.topic, Topic::Compensated, "{what}");
                    None
                }
                Err(StepError::Poison { code, .. }) => Some(code),
                Err(StepError::Transient(_)) => Some("transient"),
            };
            assert_eq!(got, refused, "{what}");
        }
    }

    #[test]
    fn a_deleted_reservation_or_users_order_is_not_written_and_the_units_still_go_back() {
        let uuid = SagaId::new();
        let msg = message(uuid);
        let records = records_in(
            &msg,
            [
                Some(StepState::Rejected),
                Some(StepState::Done),
                Some(StepState::Done),
            ],
        );
        let (reservation, user_order) = (
            records::reservation(&msg.order.item, uuid),
            records::user_order(&msg.order.user, uuid),
        );
        for (on_file, writes_reservation, cancelled) in [
            (ON_FILE, true, true),
            (
                OnFile {
                    reservation: false,
                    ..ON_FILE
                },
                false,
                true,
            ),
            (
                OnFile {
                    user_order: false,
                    ..ON_FILE
                },
                true,
                false,
            ),
        ] {
            let mut writes = WriteSet::new();
            let got = plan(Some(&stock(9)), &records, on_file, &mut writes, uuid, &msg).unwrap();
            assert_eq!((got.released, got.cancelled), (4, cancelled), "{on_file:?}");
            let written: Vec<&str> = writes.documents().into_iter().map(|(p, _)| p).collect();
            assert_eq!(
                written.contains(&reservation.as_str()),
                writes_reservation,
                "{on_file:?}"
            );
            assert_eq!(written.contains(&user_order.as_str()), cancelled, "{on_file:?}");
            assert!(
                written.contains(&"inventory/widget"),
                "{on_file:?}: the units go back"
            );
        }
    }

    #[test]
    fn a_paid_saga_is_never_compensated() {
        let uuid = SagaId::new();
        let msg = message(uuid);
        let mut writes = WriteSet::new();
        let records = records_in(
            &msg,
            [
                Some(StepState::Done),
                Some(StepState::Done),
                Some(StepState::Done),
            ],
        );
        let why = plan(Some(&stock(9)), &records, ON_FILE, &mut writes, uuid, &msg).unwrap_err();
        assert!(why.contains("payment was made"), "{why}");
        assert!(writes.is_empty());
    }

    #[test]
    fn a_done_record_whose_order_is_unreadable_stops_the_compensation() {
        let uuid = SagaId::new();
        let msg = message(uuid);
        let mut records = records_in(&msg, [None, Some(StepState::Done), Some(StepState::Done)]);
        if let Some((record, _)) = records[1].1.as_mut() {
            record.item = "a/b".into();
        }
        let why = plan(None, &records, ON_FILE, &mut WriteSet::new(), uuid, &msg).unwrap_err();
        assert!(why.contains("unreadable"), "{why}");
    }
}
