//! The status view of a saga, `sagas/{uuid}`: where it stands, why it stopped, and when each
//! step happened.
//!
//! Each step writes its stage in the same commit as its record ([`record_step`]): the stage
//! of the message it publishes, and that of the message it read (so the first step records
//! `received` too). The view is there exactly when the record is, without a push of its own.
//! Each write is blind (no read, no precondition) and its parts commute: a stage's time goes
//! in with Firestore's `minimum` transform (so the first time is kept however often, and in
//! whatever order, stages are written), and every other field it sets is the same in every
//! write of that stage. So order and repetition do not matter, by construction, and the
//! writes of one saga's steps never conflict. The status itself is
//! not stored but derived from the stages seen ([`StatusDoc::status`]): a late "order
//! created" after "failed" adds its time to the timeline and never moves the status back.

use crate::gcp::store::{DocPath, Transform, WriteSet};
use crate::wire::message::SagaMessage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::contract::{Service, Topic};
use crate::domain::Stage;
use crate::wire::envelope::Push;
use crate::wire::trace::TraceContext;

/// `sagas/{uuid}`, as stored. Times are microseconds since the Unix epoch, integers because
/// Firestore's `minimum` transform works on numbers only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusDoc {
    /// The saga.
    pub uuid: String,
    /// Who ordered.
    pub user: String,
    /// What.
    pub item: String,
    /// How many.
    pub quantity: u32,
    /// When each stage first happened (publish time of its first message).
    #[serde(default)]
    pub timeline: BTreeMap<Stage, i64>,
    /// The human-readable text of each stage's message.
    #[serde(default)]
    pub texts: BTreeMap<Stage, String>,
    /// The step that failed, once one did.
    #[serde(default)]
    pub failed_step: Option<String>,
    /// Why (machine-readable), once a step failed.
    #[serde(default)]
    pub reason: Option<String>,
    /// The invoice, once paid.
    #[serde(default)]
    pub total_invoice: Option<u64>,
    /// When the saga was first seen (its earliest stage): recent sagas sort by it.
    #[serde(default)]
    pub created: i64,
    /// When nothing was left to do for it, 0 until then: when its last message (`payment-
    /// created` or `compensated`) was confirmed published ([`mark_ended`]). The sweep looks
    /// for open sagas by it. Every step writes 0 with Firestore's `maximum`, which creates
    /// the field and never lowers it, so no late write reopens a saga.
    #[serde(default)]
    pub ended: i64,
}

impl StatusDoc {
    /// Where the saga stands. A failed saga stays failed (then compensated); a paid one is
    /// completed even if a stray failure arrives for it, because the janitor never
    /// compensates a paid saga.
    pub fn status(&self) -> Stage {
        let has = |s| self.timeline.contains_key(&s);
        if has(Stage::Completed) {
            Stage::Completed
        } else if has(Stage::Compensated) {
            Stage::Compensated
        } else if has(Stage::Failed) {
            Stage::Failed
        } else {
            self.timeline.keys().copied().max().unwrap_or(Stage::Received)
        }
    }

    /// Whether the saga has ended: paid, or failed and compensated.
    pub fn finished(&self) -> bool {
        matches!(self.status(), Stage::Completed | Stage::Compensated)
    }

    /// The text that explains the saga best: its failure's, or else its furthest stage's.
    pub fn status_text(&self) -> Option<&str> {
        let status = self.status();
        let stage = if status != Stage::Completed && self.texts.contains_key(&Stage::Failed) {
            Stage::Failed
        } else {
            status
        };
        self.texts.get(&stage).map(String::as_str)
    }

    /// The document after `event` was written to it, as Firestore computes it: the pure
    /// model of [`StatusEvent::write`], for tests.
    #[must_use]
    pub fn apply(mut self, event: &StatusEvent) -> StatusDoc {
        if let Some((stage, at, text)) = &event.arrival {
            let earlier = StatusEvent {
                stage: *stage,
                at: *at,
                arrival: None,
                text: text.clone(),
                failed_step: None,
                reason: None,
                total_invoice: None,
                ..event.clone()
            };
            self = self.apply(&earlier);
        }
        let first = self.timeline.is_empty();
        self.uuid.clone_from(&event.uuid);
        self.user.clone_from(&event.user);
        self.item.clone_from(&event.item);
        self.quantity = event.quantity;
        let at = self.timeline.entry(event.stage).or_insert(event.at);
        *at = (*at).min(event.at);
        self.created = if first {
            event.at
        } else {
            self.created.min(event.at)
        };
        if let Some(text) = &event.text {
            self.texts.insert(event.stage, text.clone());
        }
        if event.failed_step.is_some() {
            self.failed_step.clone_from(&event.failed_step);
        }
        if event.reason.is_some() {
            self.reason.clone_from(&event.reason);
        }
        if event.total_invoice.is_some() {
            self.total_invoice = event.total_invoice;
        }
        self
    }
}

/// What one message tells the status view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusEvent {
    /// The stage the message reports.
    pub stage: Stage,
    /// When it was published, in microseconds since the Unix epoch.
    pub at: i64,
    /// The stage of the message the step read, when it was published, and its text: written
    /// with this event, so that a saga's first stage is recorded by its first step.
    pub arrival: Option<(Stage, i64, Option<String>)>,
    uuid: String,
    user: String,
    item: String,
    quantity: u32,
    text: Option<String>,
    failed_step: Option<String>,
    reason: Option<String>,
    total_invoice: Option<u64>,
}

/// The fields a [`StatusEvent`] sets; those it does not set stay out of the write's mask.
#[derive(Serialize)]
struct EventFields<'a> {
    uuid: &'a str,
    user: &'a str,
    item: &'a str,
    quantity: u32,
    texts: BTreeMap<Stage, &'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_step: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_invoice: Option<u64>,
}

impl StatusEvent {
    /// What `msg`, published at `at` (microseconds) on the topic of `stage`, reports.
    pub fn new(stage: Stage, at: i64, msg: &SagaMessage) -> Self {
        let reason = match stage {
            Stage::Failed | Stage::Compensated => msg.reason.map(|r| r.as_str().to_owned()),
            _ => None,
        };
        StatusEvent {
            stage,
            at,
            arrival: None,
            uuid: msg.uuid.to_string(),
            user: msg.order.user.as_str().to_owned(),
            item: msg.order.item.as_str().to_owned(),
            quantity: msg.order.quantity.get(),
            text: clipped(msg.status.as_deref()),
            failed_step: match stage {
                Stage::Failed => msg.step.map(|s| s.name().to_owned()),
                _ => None,
            },
            reason,
            total_invoice: match stage {
                Stage::Completed => msg.total_invoice.map(crate::domain::Money::get),
                _ => None,
            },
        }
    }

    /// This event, with the stage of the message the step read (`msg`, published at `at`).
    #[must_use]
    pub fn after(mut self, stage: Stage, at: i64, msg: &SagaMessage) -> Self {
        self.arrival = Some((stage, at, clipped(msg.status.as_deref())));
        if stage == Stage::Failed {
            // The same value the failing step wrote, so the order of the writes is moot; it
            // is the only one when the janitor failed the step itself (the sweep).
            self.failed_step = msg.step.map(|s| s.name().to_owned());
        }
        self
    }

    /// Queues the write of this event to the view at `path`: one write, whatever it holds.
    pub fn write(&self, path: DocPath, writes: &mut WriteSet) {
        let mut mask: Vec<String> = ["uuid", "user", "item", "quantity"].map(str::to_owned).into();
        let mut texts = BTreeMap::new();
        let mut transforms = Vec::new();
        let arrival = self
            .arrival
            .as_ref()
            .map(|(stage, at, text)| (*stage, *at, text.as_ref()));
        for (stage, at, text) in arrival
            .into_iter()
            .chain([(self.stage, self.at, self.text.as_ref())])
        {
            if let Some(text) = text {
                texts.insert(stage, text.as_str());
                mask.push(format!("texts.{}", stage.as_str()));
            }
            transforms.push((format!("timeline.{}", stage.as_str()), Transform::Minimum(at)));
        }
        let earliest = self
            .arrival
            .as_ref()
            .map_or(self.at, |(_, at, _)| self.at.min(*at));
        transforms.push(("created".to_owned(), Transform::Minimum(earliest)));
        transforms.push((ENDED.to_owned(), Transform::Maximum(0)));
        let fields = EventFields {
            uuid: &self.uuid,
            user: &self.user,
            item: &self.item,
            quantity: self.quantity,
            texts,
            failed_step: self.failed_step.as_deref(),
            reason: self.reason.as_deref(),
            total_invoice: self.total_invoice,
        };
        if fields.failed_step.is_some() {
            mask.push("failed_step".to_owned());
        }
        if fields.reason.is_some() {
            mask.push("reason".to_owned());
        }
        if fields.total_invoice.is_some() {
            mask.push("total_invoice".to_owned());
        }
        writes.upsert(path, &fields, mask, transforms);
    }
}

/// What the engine needs of the delivery it serves, besides the message: the trace to carry
/// on, and when the message was published (the time of its stage in the view).
#[derive(Clone, Debug, Default)]
pub struct Inbound {
    /// The span of this delivery.
    pub trace: TraceContext,
    /// When Pub/Sub accepted the message, in microseconds since the Unix epoch.
    pub published_at: Option<i64>,
}

impl Inbound {
    /// What `push` tells the engine.
    pub fn of(push: &Push) -> Self {
        Inbound {
            trace: push.trace,
            published_at: push
                .publish_time
                .as_deref()
                .and_then(|t| t.parse::<firestore::jiff::Timestamp>().ok())
                .map(firestore::jiff::Timestamp::as_microsecond),
        }
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    firestore::jiff::Timestamp::now().as_microsecond()
}

/// The field of [`StatusDoc::ended`].
pub const ENDED: &str = "ended";

/// Most bytes of a message's status text the view keeps. The steps' own texts are far
/// shorter; a foreign message's (on `error`, or dead-lettered) is bounded only by Pub/Sub's
/// 10 MB, and a view over Firestore's 1 MiB document limit (Firestore "Usage and limits";
/// the emulator does not enforce it) would fail its commit, and every commit grouped with it, on each redelivery.
pub const MAX_TEXT_BYTES: usize = 1024;

/// `text`, cut to [`MAX_TEXT_BYTES`] at a character boundary, marked with `…` if cut.
fn clipped(text: Option<&str>) -> Option<String> {
    let text = text?;
    if text.len() <= MAX_TEXT_BYTES {
        return Some(text.to_owned());
    }
    let mut end = MAX_TEXT_BYTES - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(format!("{}…", &text[..end]))
}

/// Queues the write that closes the saga of the view at `view`: its last message is out.
/// The sweep looks no more at a saga so marked.
pub fn mark_ended(writes: &mut WriteSet, view: DocPath) {
    writes.upsert(
        view,
        &serde_json::Map::new(),
        Vec::new(),
        vec![(ENDED.to_owned(), Transform::Maximum(now_micros()))],
    );
}

/// Queues the view's first write, `received`, for the saga that `msg` starts: the frontend
/// commits it before it publishes `msg`, so that every accepted saga is in the view, and the
/// sweep finds it if it stops before its first step.
pub fn record_received(writes: &mut WriteSet, msg: &SagaMessage) {
    StatusEvent::new(Stage::Received, now_micros(), msg).write(super::records::saga(msg.uuid), writes);
}

/// Queues the view's write for `service`, which read `msg` (delivered as `inbound`) and
/// publishes `out` on `topic`, into the same commit as its record: so a step's stage is in
/// the view exactly when its record is, with no message of its own to carry it there.
pub fn record_step(
    writes: &mut WriteSet,
    service: Service,
    msg: &SagaMessage,
    inbound: &Inbound,
    topic: Topic,
    out: &SagaMessage,
) {
    let Some(stage) = Stage::of_topic(topic) else {
        return;
    };
    let now = now_micros();
    let mut event = StatusEvent::new(stage, now, out);
    if let Some(arrived) = service.consumes().and_then(Stage::of_topic) {
        event = event.after(arrived, inbound.published_at.unwrap_or(now), msg);
    }
    event.write(super::records::saga(msg.uuid), writes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Service;
    use crate::domain::{Money, Order, Quantity, Reason, SagaId, UserName};

    fn msg() -> SagaMessage {
        SagaMessage::new(
            SagaId::parse("1b4e28ba-2fa1-11d2-883f-0016d3cca427").unwrap(),
            Order {
                user: UserName::parse("jack").unwrap(),
                item: crate::domain::ItemName::parse("widget").unwrap(),
                quantity: Quantity::new(5).unwrap(),
            },
            serde_json::Map::new(),
        )
    }

    fn event(stage: Stage, at: i64, m: &SagaMessage) -> StatusEvent {
        let message = match stage {
            Stage::Failed => m.fail(Service::Inventory, Reason::InsufficientStock),
            Stage::Compensated => m
                .fail(Service::Inventory, Reason::InsufficientStock)
                .compensated(0, true),
            Stage::Completed => m.paid(Money::new(10).unwrap(), Money::new(50).unwrap()),
            Stage::StockReserved => m.stock_reserved(Money::new(10).unwrap()),
            _ => m.order_created(),
        };
        StatusEvent::new(stage, at, &message)
    }

    /// Applies `stages` in order, the i-th published at time 100 × its position in
    /// `canonical` (so each stage has one true time, whatever the delivery order).
    fn apply(stages: &[Stage]) -> StatusDoc {
        let m = msg();
        stages.iter().fold(StatusDoc::default(), |doc, stage| {
            let at = i64::try_from(*stage as usize).unwrap() * 100;
            doc.apply(&event(*stage, at, &m))
        })
    }

    fn permutations(items: &[Stage]) -> Vec<Vec<Stage>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        let mut out = Vec::new();
        for i in 0..items.len() {
            let mut rest = items.to_vec();
            let first = rest.remove(i);
            for mut tail in permutations(&rest) {
                tail.insert(0, first);
                out.push(tail);
            }
        }
        out
    }

    #[test]
    fn a_status_text_is_kept_whole_up_to_the_limit_and_cut_at_a_character_after_it() {
        let at_limit = "a".repeat(MAX_TEXT_BYTES);
        let cut = clipped(Some(&"é".repeat(MAX_TEXT_BYTES))).unwrap();
        assert!(cut.len() <= MAX_TEXT_BYTES && cut.ends_with('…'), "{}", cut.len());
        assert!(cut.trim_end_matches('…').chars().all(|c| c == 'é'));
        for (what, text, want) in [
            ("none", None, None),
            ("short", Some("Order received"), Some("Order received".to_owned())),
            ("at the limit", Some(at_limit.as_str()), Some(at_limit.clone())),
        ] {
            assert_eq!(clipped(text), want, "{what}");
        }

        // A foreign failure with a 2 MB status: the view keeps a kilobyte of it.
        let mut failure = msg().fail(Service::Inventory, Reason::InsufficientStock);
        failure.status = Some("x".repeat(2_000_000));
        let doc = StatusDoc::default().apply(&StatusEvent::new(Stage::Failed, 100, &failure));
        let kept = doc.texts.get(&Stage::Failed).unwrap();
        assert_eq!(kept.len(), MAX_TEXT_BYTES);
        let later = StatusEvent::new(Stage::Compensated, 200, &msg().compensated(0, true)).after(
            Stage::Failed,
            100,
            &failure,
        );
        let doc = StatusDoc::default().apply(&later);
        assert!(doc.texts.get(&Stage::Failed).unwrap().len() <= MAX_TEXT_BYTES);
    }

    #[test]
    fn every_delivery_order_of_a_successful_saga_ends_completed() {
        use Stage::*;
        let expected = apply(&[Received, OrderCreated, StockReserved, Completed]);
        for order in permutations(&[Received, OrderCreated, StockReserved, Completed]) {
            let doc = apply(&order);
            assert_eq!(doc, expected, "{order:?}");
            assert_eq!(doc.status(), Completed, "{order:?}");
            assert!(doc.finished());
            assert_eq!(doc.timeline.len(), 4, "{order:?}");
            assert_eq!(doc.total_invoice, Some(50), "{order:?}");
            assert_eq!(doc.created, 0, "{order:?}");
        }
    }

    #[test]
    fn every_delivery_order_of_a_failed_saga_ends_compensated_with_its_reason() {
        use Stage::*;
        for order in permutations(&[Received, OrderCreated, Failed, Compensated]) {
            let doc = apply(&order);
            assert_eq!(doc.status(), Compensated, "{order:?}");
            assert_eq!(doc.reason.as_deref(), Some("insufficient_stock"), "{order:?}");
            assert_eq!(doc.failed_step.as_deref(), Some("inventory"), "{order:?}");
            assert_eq!(
                doc.status_text(),
                Some("Order failed: not enough 'widget' in stock for 5"),
                "{order:?}"
            );
        }
    }

    #[test]
    fn every_step_opens_the_saga_and_only_the_mark_of_its_last_message_closes_it() {
        let m = msg();
        for stage in [
            Stage::Received,
            Stage::OrderCreated,
            Stage::Completed,
            Stage::Compensated,
        ] {
            let mut writes = WriteSet::new();
            event(stage, 5, &m).write(DocPath::new(["sagas", "x"]), &mut writes);
            let debug = format!("{writes:?}");
            assert!(debug.contains("\"ended\", Maximum(0)"), "{stage:?}: {debug}");
        }
        let mut writes = WriteSet::new();
        mark_ended(&mut writes, DocPath::new(["sagas", "x"]));
        let debug = format!("{writes:?}");
        assert!(
            debug.contains("\"ended\", Maximum(") && !debug.contains("Maximum(0)"),
            "{debug}"
        );
        assert_eq!(
            writes.documents(),
            [("sagas/x", None)],
            "blind: no read, no precondition"
        );
    }

    #[test]
    fn a_failed_saga_is_failed_until_compensated() {
        use Stage::*;
        let doc = apply(&[Received, OrderCreated, Failed]);
        assert_eq!(doc.status(), Failed);
        assert!(!doc.finished());
    }

    #[test]
    fn a_late_order_created_never_moves_a_failed_saga_back() {
        use Stage::*;
        assert_eq!(apply(&[Received, Failed, OrderCreated]).status(), Failed);
        assert_eq!(
            apply(&[Failed, Compensated, OrderCreated, StockReserved]).status(),
            Compensated
        );
    }

    #[test]
    fn duplicates_change_nothing_and_the_timeline_keeps_each_step_once_at_its_first_time() {
        use Stage::*;
        let m = msg();
        let once = StatusDoc::default().apply(&event(Received, 10, &m));
        assert_eq!(
            once.clone().apply(&event(Received, 10, &m)),
            once,
            "an exact duplicate"
        );
        let republished = once.clone().apply(&event(Received, 99, &m));
        assert_eq!(republished, once, "a later copy keeps the first time");
        let doc = apply(&[
            Received,
            OrderCreated,
            OrderCreated,
            Received,
            StockReserved,
            StockReserved,
        ]);
        assert_eq!(doc.timeline.len(), 3);
        assert_eq!(doc.status(), StockReserved);
    }

    #[test]
    fn the_view_remembers_when_the_saga_began_even_if_that_arrives_last() {
        use Stage::*;
        let doc = apply(&[StockReserved, OrderCreated, Received]);
        assert_eq!(doc.created, 0);
        assert_eq!(doc.timeline[&Received], 0);
    }

    #[test]
    fn a_stray_failure_does_not_undo_a_paid_saga() {
        use Stage::*;
        assert_eq!(apply(&[Received, Completed, Failed]).status(), Completed);
        assert_eq!(
            apply(&[Received, Completed, Failed]).status_text(),
            Some("Payment processed: total invoice 50")
        );
    }

    #[test]
    fn the_write_sets_only_the_fields_its_message_knows() {
        let m = msg();
        let mut writes = WriteSet::new();
        event(Stage::Received, 5, &m).write(DocPath::new(["sagas", "x"]), &mut writes);
        let debug = format!("{writes:?}");
        assert!(
            debug.contains("texts.received") && debug.contains("timeline.received"),
            "{debug}"
        );
        assert!(
            !debug.contains("\"failed_step\"") && !debug.contains("\"total_invoice\""),
            "{debug}"
        );
    }

    #[test]
    fn a_step_records_the_stage_it_read_and_the_one_it_publishes_in_one_write() {
        let m = msg();
        let created = m.order_created();
        let inbound = Inbound {
            published_at: Some(100),
            ..Inbound::default()
        };
        let mut writes = WriteSet::new();
        record_step(
            &mut writes,
            Service::Orders,
            &m,
            &inbound,
            Topic::OrderCreated,
            &created,
        );
        assert_eq!(writes.documents().len(), 1, "one write to sagas/{{uuid}}");

        let event = StatusEvent::new(Stage::OrderCreated, 200, &created).after(Stage::Received, 100, &m);
        let doc = StatusDoc::default().apply(&event);
        assert_eq!(doc.timeline.get(&Stage::Received), Some(&100));
        assert_eq!(doc.timeline.get(&Stage::OrderCreated), Some(&200));
        assert_eq!(doc.created, 100, "the saga began when it was received");
        assert_eq!(
            doc.texts.get(&Stage::Received).map(String::as_str),
            Some("Order received")
        );
        // The next step writes `order_created` again as what it read, later: nothing moves.
        let reserved = created.stock_reserved(Money::new(3).unwrap());
        let next =
            StatusEvent::new(Stage::StockReserved, 300, &reserved).after(Stage::OrderCreated, 250, &created);
        let doc = doc.apply(&next);
        assert_eq!(doc.timeline.get(&Stage::OrderCreated), Some(&200));
        assert_eq!(doc.status(), Stage::StockReserved);
    }
}
