//! `sagactl show UUID`: one saga as Firestore holds it: its status view (`sagas/{uuid}`:
//! where it stands, and when each stage happened), each step's record
//! (`sagas/{uuid}/steps/{step}`: its state and reason), whether the message each step stored
//! went out, and those messages.

use crate::format;
use saga::contract::{Service, consumer_step};
use saga::domain::SagaId;
use saga::engine::records::{self, StepRecord, StepState};
use saga::engine::status::StatusDoc;
use saga::gcp::bus::Outgoing;
use saga::gcp::store::{Snapshot, Store};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The steps that keep a record, in saga order (the frontend keeps none).
pub const STEPS: [Service; 4] = [
    Service::Orders,
    Service::Inventory,
    Service::Payments,
    Service::Janitor,
];

/// Whether the message a step stored (its outbox) went out, as its records can tell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Sent {
    /// The step stored no message: it never ran (a tombstone).
    Nothing,
    /// Pub/Sub confirmed it: the record's `published` mark, which only the messages no
    /// later step reads get (`payment-created`, `compensated`).
    Published {
        /// When it was marked, if the record says.
        at: Option<String>,
    },
    /// The step that reads it has a record, which proves it was delivered (or, if that
    /// record is a tombstone, that it is no longer needed).
    Delivered {
        /// The step that read it.
        #[serde(serialize_with = "format::service")]
        to: Service,
    },
    /// Nothing shows yet that it went out: it is being published (under the lease), or the
    /// publish failed and a redelivery of the step's input (or the janitor, once Pub/Sub
    /// gives up on it) will publish it.
    NotShown {
        /// Until when the delivery that stored it is presumed to be publishing it.
        lease_until: Option<String>,
    },
}

impl Sent {
    /// What `record` tells of its message, given which steps have a record
    /// (`has_record`): the same evidence the engine trusts before it publishes a stored
    /// message again (see `saga::engine::run`).
    pub fn of(
        record: &StepRecord,
        published_at: Option<String>,
        has_record: impl Fn(Service) -> bool,
    ) -> Self {
        let Some(outbox) = &record.outbox else {
            return Sent::Nothing;
        };
        if record.published {
            return Sent::Published { at: published_at };
        }
        match consumer_step(outbox.topic) {
            Some(reader) if has_record(reader) => Sent::Delivered { to: reader },
            _ => Sent::NotShown {
                lease_until: record.lease_until.map(|t| format::timestamp(t.0)),
            },
        }
    }
}

impl fmt::Display for Sent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sent::Nothing => f.write_str("no message"),
            Sent::Published { at: Some(at) } => write!(f, "published {at}"),
            Sent::Published { at: None } => f.write_str("published"),
            Sent::Delivered { to } => write!(f, "delivered ({to} ran)"),
            Sent::NotShown {
                lease_until: Some(until),
            } => {
                write!(f, "NOT KNOWN TO BE OUT yet (publish lease until {until})")
            }
            Sent::NotShown { lease_until: None } => f.write_str("NOT KNOWN TO BE OUT yet"),
        }
    }
}

/// A message as a step stored it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Message {
    /// The topic it goes to.
    pub topic: String,
    /// The payload: its JSON, or the text if it is not JSON.
    pub data: serde_json::Value,
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
}

impl From<&Outgoing> for Message {
    fn from(out: &Outgoing) -> Self {
        Message {
            topic: out.topic.name().to_owned(),
            data: serde_json::from_str(&out.data).unwrap_or_else(|_| out.data.clone().into()),
            attributes: out.attributes.clone(),
        }
    }
}

/// One step's record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// The step.
    #[serde(serialize_with = "format::service")]
    pub step: Service,
    /// What happened; `None` if the step has no record.
    pub state: Option<StepState>,
    /// Why it failed, or why it was closed.
    pub reason: Option<String>,
    /// When the record was written.
    pub created: Option<String>,
    /// When it last changed.
    pub updated: Option<String>,
    /// The message it stored.
    pub message: Option<Message>,
    /// Whether that message went out; `None` if the step has no record.
    pub sent: Option<Sent>,
    /// Why the record could not be read, if it could not.
    pub unreadable: Option<String>,
}

/// A time in the status view's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// The stage.
    pub stage: &'static str,
    /// When it first happened.
    pub at: String,
    /// The text of its message.
    pub text: Option<String>,
}

/// The order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Order {
    /// Who.
    pub user: String,
    /// What.
    pub item: String,
    /// How many.
    pub quantity: u32,
}

/// Everything `show` found of one saga.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Shown {
    /// The saga.
    pub uuid: String,
    /// Whether anything of it exists.
    pub found: bool,
    /// Where it stands (the status view's status), if it has a view.
    pub status: Option<&'static str>,
    /// Whether it has ended (paid, or failed and compensated).
    pub finished: Option<bool>,
    /// The text that explains it best.
    pub status_text: Option<String>,
    /// The order.
    pub order: Option<Order>,
    /// The step that failed.
    pub failed_step: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// The invoice, once paid.
    pub total_invoice: Option<u64>,
    /// When it began.
    pub created: Option<String>,
    /// When each stage first happened, in order.
    pub timeline: Vec<Stage>,
    /// Each step's record, in saga order.
    pub steps: Vec<Step>,
    /// Why the status view could not be read, if it could not.
    pub unreadable: Option<String>,
}

/// The fields of a step record that [`StepRecord`] leaves out.
#[derive(Deserialize)]
struct Marks {
    #[serde(default)]
    published_at: Option<firestore::FirestoreTimestamp>,
}

/// Reads saga `uuid`: its view and its four step records, in one round trip.
pub async fn show(store: &Store, uuid: SagaId) -> anyhow::Result<Shown> {
    let mut paths = vec![records::saga(uuid)];
    paths.extend(STEPS.iter().map(|s| records::step(uuid, *s)));
    let mut docs = store.get_all(&paths).await?;
    let view = docs.remove(0);
    Ok(assemble(uuid, view.as_ref(), &docs))
}

/// What `show` tells of saga `uuid`, from its view and its records (in [`STEPS`] order).
pub fn assemble(uuid: SagaId, view: Option<&Snapshot>, records: &[Option<Snapshot>]) -> Shown {
    let has_record = |service: Service| {
        STEPS
            .iter()
            .zip(records)
            .any(|(s, doc)| *s == service && doc.is_some())
    };
    let steps: Vec<Step> = STEPS
        .iter()
        .zip(records)
        .map(|(service, doc)| step(*service, doc.as_ref(), has_record))
        .collect();
    let (doc, unreadable) = match view.map(Snapshot::decode::<StatusDoc>) {
        None => (None, None),
        Some(Ok(doc)) => (Some(doc), None),
        Some(Err(e)) => (None, Some(format!("{e:#}"))),
    };
    let found = view.is_some() || records.iter().any(Option::is_some);
    let mut shown = Shown {
        uuid: uuid.to_string(),
        found,
        status: None,
        finished: None,
        status_text: None,
        order: None,
        failed_step: None,
        reason: None,
        total_invoice: None,
        created: None,
        timeline: Vec::new(),
        steps,
        unreadable,
    };
    if let Some(doc) = doc {
        shown.status = Some(doc.status().as_str());
        shown.finished = Some(doc.finished());
        shown.status_text = doc.status_text().map(str::to_owned);
        shown.created = Some(format::time(doc.created));
        let mut timeline: Vec<Stage> = doc
            .timeline
            .iter()
            .map(|(stage, at)| Stage {
                stage: stage.as_str(),
                at: format::time(*at),
                text: doc.texts.get(stage).cloned(),
            })
            .collect();
        // By time, which is the order they happened in; the stage order breaks ties.
        timeline.sort_by(|a, b| a.at.cmp(&b.at));
        shown.timeline = timeline;
        shown.order = Some(Order {
            user: doc.user,
            item: doc.item,
            quantity: doc.quantity,
        });
        shown.failed_step = doc.failed_step;
        shown.reason = doc.reason;
        shown.total_invoice = doc.total_invoice;
    }
    shown
}

fn step(service: Service, doc: Option<&Snapshot>, has_record: impl Fn(Service) -> bool) -> Step {
    let mut step = Step {
        step: service,
        state: None,
        reason: None,
        created: None,
        updated: None,
        message: None,
        sent: None,
        unreadable: None,
    };
    let Some(doc) = doc else {
        return step;
    };
    let record = match doc.decode::<StepRecord>() {
        Ok(record) => record,
        Err(e) => {
            step.unreadable = Some(format!("{e:#}"));
            return step;
        }
    };
    let published_at = doc
        .decode::<Marks>()
        .ok()
        .and_then(|m| m.published_at)
        .map(|t| format::timestamp(t.0));
    step.sent = Some(Sent::of(&record, published_at, has_record));
    step.state = Some(record.state);
    step.reason = record.reason;
    step.created = Some(format::timestamp(record.created.0));
    step.updated = Some(format::timestamp(record.updated.0));
    step.message = record.outbox.as_ref().map(Message::from);
    step
}

/// A step state as its records spell it.
pub fn state_word(state: StepState) -> &'static str {
    match state {
        StepState::Done => "done",
        StepState::Rejected => "rejected",
        StepState::Failed => "failed",
        StepState::Compensated => "compensated",
        StepState::Tombstone => "tombstone",
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.found {
            return writeln!(
                f,
                "saga {}: not found (no status view, no step record)",
                self.uuid
            );
        }
        let finished = match self.finished {
            Some(true) => " (finished)",
            Some(false) => " (NOT finished)",
            None => "",
        };
        writeln!(
            f,
            "saga {}: {}{finished}",
            self.uuid,
            self.status.unwrap_or("no status view")
        )?;
        if let Some(order) = &self.order {
            writeln!(
                f,
                "  order    {} × {} for {}",
                order.quantity, order.item, order.user
            )?;
        }
        if let Some(step) = &self.failed_step {
            let reason = self.reason.as_deref().unwrap_or("no reason given");
            writeln!(f, "  failed   at {step}: {reason}")?;
        }
        if let Some(invoice) = self.total_invoice {
            writeln!(f, "  invoice  {invoice}")?;
        }
        if let Some(text) = &self.status_text {
            writeln!(f, "  says     {text}")?;
        }
        if let Some(why) = &self.unreadable {
            writeln!(f, "  the status view is unreadable: {why}")?;
        }
        if !self.timeline.is_empty() {
            writeln!(f, "\ntimeline")?;
            for stage in &self.timeline {
                let text = stage.text.as_deref().unwrap_or("");
                writeln!(f, "  {}  {:<15} {text}", stage.at, stage.stage)?;
            }
        }
        writeln!(f, "\nsteps")?;
        for step in &self.steps {
            write_step(f, step)?;
        }
        let messages: Vec<(&Step, &Message)> = self
            .steps
            .iter()
            .filter_map(|s| s.message.as_ref().map(|m| (s, m)))
            .collect();
        if !messages.is_empty() {
            writeln!(f, "\nstored messages")?;
            for (step, message) in messages {
                writeln!(f, "  {} → {}: {}", step.step, message.topic, message.data)?;
                for (key, value) in &message.attributes {
                    writeln!(f, "      {key}={value}")?;
                }
            }
        }
        Ok(())
    }
}

fn write_step(f: &mut fmt::Formatter<'_>, step: &Step) -> fmt::Result {
    let name = step.step.name();
    if let Some(why) = &step.unreadable {
        return writeln!(f, "  {name:<10} unreadable record: {why}");
    }
    let Some(state) = step.state else {
        return writeln!(f, "  {name:<10} -");
    };
    let reason = step
        .reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    let message = match (&step.message, &step.sent) {
        (Some(message), Some(sent)) => format!("{} message {sent}", message.topic),
        (_, Some(sent)) => sent.to_string(),
        _ => String::new(),
    };
    let updated = step.updated.as_deref().unwrap_or("?");
    // The state and its reason in one column, so that the messages line up.
    let state = format!("{}{reason}", state_word(state));
    writeln!(f, "  {name:<10} {state:<12} {message}  [updated {updated}]")
}

#[cfg(test)]
mod tests {
    // A failed unwrap in a test is a failed assertion.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use saga::contract::Topic;
    use saga::domain::{ItemName, Order as DomainOrder, Quantity, UserName};

    fn record(service: Service, outbox: Option<Topic>, published: bool) -> StepRecord {
        let order = DomainOrder {
            user: UserName::parse("jack").unwrap(),
            item: ItemName::parse("widget").unwrap(),
            quantity: Quantity::new(2).unwrap(),
        };
        let mut record = StepRecord::new(service, SagaId::new(), &order, StepState::Done);
        record.outbox = outbox.map(|t| Outgoing::new(t, "{}".to_owned()));
        record.published = published;
        record
    }

    #[test]
    fn a_message_is_shown_sent_by_its_mark_or_by_the_record_of_the_step_that_reads_it() {
        type Case = (Service, Option<Topic>, bool, Vec<Service>, Sent);
        use Service::{Inventory, Janitor, Orders, Payments};
        let at = Some("2026-01-01T00:00:00.000Z".to_owned());
        // (the record's step, its outbox topic, its published mark, the steps with a record,
        // what is shown)
        let cases: Vec<Case> = vec![
            (
                Orders,
                Some(Topic::OrderCreated),
                false,
                vec![Orders, Inventory],
                Sent::Delivered { to: Inventory },
            ),
            (
                Orders,
                Some(Topic::OrderCreated),
                false,
                vec![Orders],
                Sent::NotShown { lease_until: None },
            ),
            (
                Payments,
                Some(Topic::PaymentCreated),
                true,
                vec![Orders, Inventory, Payments],
                Sent::Published { at: at.clone() },
            ),
            // No step reads `payment-created`: only the mark can tell.
            (
                Payments,
                Some(Topic::PaymentCreated),
                false,
                vec![Orders, Inventory, Payments],
                Sent::NotShown { lease_until: None },
            ),
            (
                Inventory,
                Some(Topic::Error),
                false,
                vec![Orders, Inventory, Janitor],
                Sent::Delivered { to: Janitor },
            ),
            (Payments, None, false, vec![Payments], Sent::Nothing),
        ];
        for (service, topic, published, present, expected) in cases {
            let r = record(service, topic, published);
            let got = Sent::of(&r, at.clone(), |s| present.contains(&s));
            assert_eq!(got, expected, "{service} {topic:?} {published} {present:?}");
        }
    }

    #[test]
    fn a_saga_with_neither_view_nor_records_is_not_found() {
        let shown = assemble(SagaId::new(), None, &[None, None, None, None]);
        assert!(!shown.found);
        assert!(shown.to_string().contains("not found"));
        assert_eq!(shown.steps.len(), 4);
    }
}
