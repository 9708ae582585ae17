//! `sagactl` on the real emulators, each test with a whole saga in its own project
//! ([`e2e::TestStack`]): the commands' library functions in-process, and the binary itself
//! for its command line, its JSON and its exit codes.
//!
//! No test here reads `dead-letter-sub` with `TestStack::pull`: that stream acks all it
//! reads, and would take the letters `sagactl` must leave in place.

// A failed unwrap in a test is a failed assertion.
#![allow(clippy::unwrap_used)]

use e2e::{TestStack, eventually, new_uuid, saga_message};
use saga::contract::{PUSH_POLICY, PushPolicy, Service, Topic};
use saga::domain::{ItemName, SagaId, Stage};
use saga::engine::records;
use saga::engine::records::StepState;
use saga::engine::status::{self, StatusEvent, now_micros};
use saga::gcp::store::WriteSet;
use saga::runtime::config::{Config, env};
use saga::wire::message::SagaMessage;
use sagactl::letters::{self, Letter, Selection};
use sagactl::redrive::{self, Action};
use sagactl::show::Sent;
use sagactl::stock::{self, Change, Outcome, Request};
use sagactl::{connect, discard, show, stuck};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const QUIET: Duration = Duration::from_secs(3);

/// Short back-off, so that Pub/Sub gives up on a failing step within seconds.
const QUICK: PushPolicy = PushPolicy {
    min_backoff: Duration::from_secs(1),
    max_backoff: Duration::from_secs(2),
    ..PUSH_POLICY
};

/// The emulators' hosts, as the environment would name them.
fn emulator_env() -> [(&'static str, String); 2] {
    let emulators = e2e::shared_emulators();
    [
        (env::PUBSUB_EMULATOR_HOST, emulators.pubsub.clone()),
        (env::FIRESTORE_EMULATOR_HOST, emulators.firestore.clone()),
    ]
}

/// `sagactl`'s configuration for the project of `stack`, on the emulators.
fn config(stack: &TestStack) -> Config {
    let vars = emulator_env();
    connect::config(&stack.project, |key| {
        vars.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
    })
    .unwrap()
}

/// What `dead-letters` reads now, quickly.
async fn letters_now(stack: &TestStack) -> Vec<Letter> {
    let puller = connect::puller(&config(stack)).await.unwrap();
    let options = letters::Options {
        limit: 100,
        wait: Duration::from_secs(1),
    };
    letters::list(&puller, &stack.project, options)
        .await
        .unwrap()
        .letters
}

/// Writes the status view of a saga that reached `stages`, the first `minutes_ago` minutes
/// ago, as its steps would: through `StatusEvent`.
async fn write_view(stack: &TestStack, stages: &[Stage], minutes_ago: i64) -> String {
    let uuid = new_uuid();
    let msg = SagaMessage::parse(saga_message(&uuid, "widget", 2, "jack").to_string().as_bytes()).unwrap();
    let start = now_micros() - minutes_ago * 60_000_000;
    let mut writes = WriteSet::new();
    for (i, stage) in (0..).zip(stages) {
        StatusEvent::new(*stage, start + i * 1_000_000, &msg).write(records::saga(msg.uuid), &mut writes);
    }
    stack.store.commit(writes).await.unwrap();
    uuid
}

#[tokio::test]
async fn a_dead_letter_is_listed_left_in_place_then_redriven_and_its_saga_ends_exactly_once() {
    let stack = TestStack::start_with("sagactl redrive", &QUICK).await;
    let before = stack.stock("widget").await;
    // Inventory fails every delivery, so Pub/Sub dead-letters its message; the janitor is
    // down too, so nothing ends the saga: it is stranded until someone redrives the letter.
    stack.faults(Service::Inventory).fail_all_pushes(true);
    stack.faults(Service::Janitor).fail_all_pushes(true);
    let uuid = stack
        .place(&json!({"item":"widget","quantity":4,"user":"jack"}))
        .await;

    let letter = eventually(Duration::from_secs(90), || async {
        letters_now(&stack)
            .await
            .into_iter()
            .find(|l| l.uuid.as_deref() == Some(uuid.as_str()))
    })
    .await
    .expect("Pub/Sub dead-letters the message inventory never took");
    assert_eq!(letter.reason, "retries_exhausted");
    assert_eq!(letter.source_subscription.as_deref(), Some("order-created-sub"));
    assert_eq!(letter.redrive_to, Some(Topic::OrderCreated));
    assert!(letter.age_seconds.is_some());
    let again = letters_now(&stack).await;
    assert!(
        again.iter().any(|l| l.message_id == letter.message_id),
        "listing leaves the letter where it was: {again:?}"
    );

    let store = connect::store(&config(&stack)).await.unwrap();
    let options = stuck::Options {
        older_than: Duration::ZERO,
        limit: 100,
    };
    let report = stuck::stuck(&store, options, now_micros()).await.unwrap();
    let stranded = report.stuck.iter().find(|s| s.uuid == uuid).unwrap();
    assert_eq!(stranded.stage, "order_created");
    assert_eq!(stranded.waiting_on, Some(Service::Inventory));
    let last = stranded.last_step.as_ref().unwrap();
    assert_eq!((last.step, last.state), (Service::Orders, StepState::Done));
    assert!(
        matches!(last.sent, Sent::NotShown { .. }),
        "inventory never took it: {:?}",
        last.sent
    );

    stack.faults(Service::Inventory).fail_all_pushes(false);
    let (puller, bus) = (
        connect::puller(&config(&stack)).await.unwrap(),
        connect::bus(&config(&stack)).await.unwrap(),
    );
    let options = redrive::Options {
        selection: Selection::Ids(vec![letter.message_id.clone(), "no-such-letter".into()]),
        dry_run: false,
        limit: 100,
        wait: Duration::from_secs(1),
    };
    let report = redrive::redrive(&puller, &bus, &stack.project, &options)
        .await
        .unwrap();
    assert_eq!(report.outcomes.len(), 1, "{report:?}");
    assert!(
        matches!(
            report.outcomes[0].action,
            Action::Redriven {
                to: Topic::OrderCreated,
                ..
            }
        ),
        "{report:?}"
    );
    assert_eq!(report.not_found, ["no-such-letter"]);
    assert!(report.left_for_people() && !report.failed());

    let paid = stack
        .outcomes("payment-created-sub", std::slice::from_ref(&uuid), WAIT)
        .await;
    assert_eq!(paid[&uuid].len(), 1, "the redriven saga is paid");
    assert!(
        !letters_now(&stack)
            .await
            .iter()
            .any(|l| l.message_id == letter.message_id),
        "the redriven letter is taken off dead-letter-sub"
    );

    // The janitor comes back and gets its own copy of the letter: the step it would fail
    // has done its work since, so nothing happens.
    stack.faults(Service::Janitor).fail_all_pushes(false);
    tokio::time::sleep(QUIET + QUICK.max_backoff).await;
    assert!(
        stack.pull("payment-created-sub", 5, QUIET).await.is_empty(),
        "paid once"
    );
    assert!(
        stack
            .pull("error-cli-sub", 5, Duration::from_millis(500))
            .await
            .is_empty(),
        "never failed"
    );
    assert!(
        stack.step(&uuid, Service::Janitor).await.is_none(),
        "never compensated"
    );
    assert_eq!(stack.stock("widget").await, before - 4, "stock taken once");
    assert_eq!(stack.finished(&uuid, WAIT).await["status"], "completed");
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_a_letter_of_unknown_origin_is_refused_and_left() {
    let stack = TestStack::start("sagactl dry run").await;
    stack.tap(Topic::Frontend, "frontend-tap").await;
    // Poison: orders copies it to the dead-letter topic, naming its subscription.
    let poison = br#"{"item":"widget","quantity":1,"user":"jack"}"#;
    stack
        .publish(Topic::Frontend, poison, &[("origin", "test")])
        .await;
    // Published to the dead-letter topic by hand: it names no origin.
    stack.publish(Topic::DeadLetter, b"{}", &[]).await;
    assert_eq!(
        stack.pull("frontend-tap", 5, QUIET).await.len(),
        1,
        "the test's own message"
    );
    let read = eventually(WAIT, || async {
        let read = letters_now(&stack).await;
        (read.len() == 2).then_some(read)
    })
    .await
    .expect("both letters wait on dead-letter-sub");
    let copied = read.iter().find(|l| l.reason == "missing_field").unwrap();
    assert_eq!(copied.service.as_deref(), Some("orders"));
    assert_eq!(copied.redrive_to, Some(Topic::Frontend));
    let by_hand = read.iter().find(|l| l.reason == "unknown").unwrap();
    assert!(by_hand.refused.is_some());

    let (puller, bus) = (
        connect::puller(&config(&stack)).await.unwrap(),
        connect::bus(&config(&stack)).await.unwrap(),
    );
    let mut options = redrive::Options {
        selection: Selection::All,
        dry_run: true,
        limit: 100,
        wait: Duration::from_secs(1),
    };
    let dry = redrive::redrive(&puller, &bus, &stack.project, &options)
        .await
        .unwrap();
    let action_of = |report: &redrive::Report, id: &str| {
        report
            .outcomes
            .iter()
            .find(|o| o.letter.message_id == id)
            .map(|o| o.action.clone())
            .unwrap()
    };
    assert_eq!(
        action_of(&dry, &copied.message_id),
        Action::WouldRedrive { to: Topic::Frontend }
    );
    assert!(matches!(
        action_of(&dry, &by_hand.message_id),
        Action::Refused { .. }
    ));
    assert!(
        stack.pull("frontend-tap", 5, QUIET).await.is_empty(),
        "a dry run publishes nothing"
    );
    let mut ids: Vec<String> = letters_now(&stack)
        .await
        .into_iter()
        .map(|l| l.message_id)
        .collect();
    ids.sort();
    let mut expected = vec![copied.message_id.clone(), by_hand.message_id.clone()];
    expected.sort();
    assert_eq!(ids, expected, "a dry run takes no letter");

    options.dry_run = false;
    let done = redrive::redrive(&puller, &bus, &stack.project, &options)
        .await
        .unwrap();
    assert!(matches!(
        action_of(&done, &copied.message_id),
        Action::Redriven { .. }
    ));
    assert!(matches!(
        action_of(&done, &by_hand.message_id),
        Action::Refused { .. }
    ));
    let sent = stack.pull("frontend-tap", 5, WAIT).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].data, poison, "the payload goes back as it came");
    assert_eq!(
        sent[0].attributes.keys().collect::<Vec<_>>(),
        ["origin"],
        "with its own attributes, not those of its dead-lettering"
    );
    let left = letters_now(&stack).await;
    assert!(
        left.iter().any(|l| l.message_id == by_hand.message_id),
        "the refused letter stays"
    );
    assert!(
        !left.iter().any(|l| l.message_id == copied.message_id),
        "the redriven one is taken"
    );
}

#[tokio::test]
async fn a_discard_takes_only_the_letters_it_names_and_a_dry_run_takes_none() {
    let stack = TestStack::start("sagactl discard").await;
    // Two letters published to the dead-letter topic by hand, which `redrive` refuses.
    stack.publish(Topic::DeadLetter, br#"{"n":1}"#, &[]).await;
    stack.publish(Topic::DeadLetter, br#"{"n":2}"#, &[]).await;
    let read = eventually(WAIT, || async {
        let read = letters_now(&stack).await;
        (read.len() == 2).then_some(read)
    })
    .await
    .expect("both letters wait on dead-letter-sub");
    let (gone, kept) = (read[0].message_id.clone(), read[1].message_id.clone());
    let ids_now = || async {
        let mut ids: Vec<String> = letters_now(&stack)
            .await
            .into_iter()
            .map(|l| l.message_id)
            .collect();
        ids.sort();
        ids
    };
    let mut both = vec![gone.clone(), kept.clone()];
    both.sort();

    let puller = connect::puller(&config(&stack)).await.unwrap();
    let mut options = discard::Options {
        message_ids: vec![gone.clone(), "no-such-letter".into()],
        dry_run: true,
        limit: 100,
        wait: Duration::from_secs(1),
    };
    let dry = discard::discard(&puller, &stack.project, &options).await.unwrap();
    let actions = |report: &discard::Report| -> Vec<(String, discard::Action)> {
        report
            .outcomes
            .iter()
            .map(|o| (o.letter.message_id.clone(), o.action.clone()))
            .collect()
    };
    assert_eq!(actions(&dry), [(gone.clone(), discard::Action::WouldDiscard)]);
    assert_eq!(dry.not_found, ["no-such-letter"]);
    assert_eq!(ids_now().await, both, "a dry run takes no letter");

    options.dry_run = false;
    let done = discard::discard(&puller, &stack.project, &options).await.unwrap();
    assert_eq!(actions(&done), [(gone.clone(), discard::Action::Discarded)]);
    assert!(done.left_for_people() && !done.failed(), "{done:?}");
    assert_eq!(
        ids_now().await,
        std::slice::from_ref(&kept),
        "only the named letter is taken"
    );

    options.message_ids = vec![gone.clone()];
    let again = discard::discard(&puller, &stack.project, &options).await.unwrap();
    assert!(again.outcomes.is_empty(), "{again:?}");
    assert_eq!(again.not_found, [gone], "a letter discarded is gone for good");
    assert_eq!(ids_now().await, [kept], "and the other one stays");
}

/// A request for `change` of widget's stock, with a new id.
fn widget(change: Option<Change>) -> Request {
    Request {
        item: ItemName::parse("widget").unwrap(),
        change,
        reason: Some("a test".into()),
        id: uuid::Uuid::new_v4(),
        dry_run: false,
    }
}

#[tokio::test]
async fn stock_changed_by_hand_while_orders_sell_loses_no_sale_and_no_change() {
    let stack = TestStack::start("sagactl stock").await;
    let store = connect::store(&config(&stack)).await.unwrap();
    let before = stack.stock("widget").await;

    let shown = stock::stock(&store, &widget(None)).await.unwrap();
    assert_eq!(
        (shown.outcome, shown.price_per_unit),
        (
            Outcome::Shown {
                quantity: Some(before)
            },
            Some(10)
        )
    );
    let dry = stock::stock(
        &store,
        &Request {
            dry_run: true,
            ..widget(Some(Change::Add(5)))
        },
    )
    .await
    .unwrap();
    assert_eq!(
        dry.outcome,
        Outcome::WouldChange {
            from: before,
            to: before + 5
        }
    );
    assert_eq!(stack.stock("widget").await, before, "a dry run changes nothing");

    // Changes by hand, one after another, while a burst of orders sells the item.
    let quantities: Vec<i64> = (0..24).map(|i| 1 + i % 3).collect();
    let stack = &stack;
    let placing = futures::future::join_all(quantities.iter().map(|q| {
        let order = json!({"item": "widget", "quantity": q, "user": "jack"});
        async move { stack.place(&order).await }
    }));
    let changing = async {
        let mut made = Vec::new();
        for change in [Change::Add(5), Change::Remove(2)].repeat(5) {
            made.push(stock::stock(&store, &widget(Some(change))).await.unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        made
    };
    let (uuids, made) = tokio::join!(placing, changing);
    for report in made {
        let Outcome::Changed { from, to } = report.outcome else {
            panic!("every change is made: {report:?}");
        };
        assert!(to - from == 5 || to - from == -2, "{report:?}");
    }
    for uuid in &uuids {
        assert_eq!(stack.finished(uuid, WAIT).await["status"], "completed");
    }
    let sold: i64 = quantities.iter().sum();
    assert_eq!(
        stack.stock("widget").await,
        before - sold + 5 * 5 - 5 * 2,
        "every sale and every change counted once"
    );

    let level = stack.stock("widget").await;
    let more = u32::try_from(level + 1).unwrap();
    let refused = stock::stock(&store, &widget(Some(Change::Remove(more))))
        .await
        .unwrap();
    assert!(
        matches!(refused.outcome, Outcome::Refused { quantity: Some(q), .. } if q == level),
        "{refused:?}"
    );
    let all = u32::try_from(level).unwrap();
    let emptied = stock::stock(&store, &widget(Some(Change::Remove(all))))
        .await
        .unwrap();
    assert_eq!(emptied.outcome, Outcome::Changed { from: level, to: 0 });
    assert_eq!(stack.stock("widget").await, 0, "down to zero, and no further");

    let missing = stock::stock(
        &store,
        &Request {
            item: ItemName::parse("no-such-item").unwrap(),
            ..widget(Some(Change::Add(1)))
        },
    )
    .await
    .unwrap();
    assert_eq!(missing.outcome, Outcome::NotFound);
    assert!(
        stack.doc("inventory/no-such-item").await.is_none(),
        "a change creates no item"
    );
}

#[tokio::test]
async fn a_stock_change_whose_level_a_sale_wrote_meanwhile_decides_again_and_is_made_once() {
    let stack = TestStack::start("sagactl stock race").await;
    let store = connect::store(&config(&stack)).await.unwrap();
    let before = stack.stock("widget").await;
    let request = widget(Some(Change::Add(5)));
    let item = request.item.clone();

    // Between the first round's read and its commit, a sale of 3 writes the level as the
    // saga writes it: guarded by the update time it read.
    let rounds = std::sync::Mutex::new(Vec::new());
    let report = stock::stock_between(&store, &request, |round| {
        rounds.lock().unwrap().push(round);
        let (store, item) = (stack.store.clone(), item.clone());
        async move {
            if round == 0 {
                let read = store.get(&records::item(&item)).await.unwrap().unwrap();
                let level = read.integer("quantity").unwrap();
                let mut sale = WriteSet::new();
                records::set_stock_level(&mut sale, &item, &read, level - 3);
                store.commit(sale).await.unwrap();
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        *rounds.lock().unwrap(),
        [0, 1],
        "the first commit lost to the sale"
    );
    assert_eq!(
        report.outcome,
        Outcome::Changed {
            from: before - 3,
            to: before + 2
        },
        "decided again on the level the sale left"
    );
    assert_eq!(
        stack.stock("widget").await,
        before + 2,
        "the sale and the change both count"
    );
    let record = stack
        .doc(stock::record_path(&item, request.id).as_str())
        .await
        .expect("the change is recorded");
    assert_eq!(
        (&record["from"], &record["to"], &record["reason"]),
        (&json!(before - 3), &json!(before + 2), &json!("a test"))
    );

    // Run again with its id (as after a commit that failed without saying whether it
    // applied): it is made only once.
    let again = stock::stock(&store, &request).await.unwrap();
    assert_eq!(
        again.outcome,
        Outcome::AlreadyMade {
            from: before - 3,
            to: before + 2
        }
    );
    assert_eq!(stack.stock("widget").await, before + 2, "not made twice");
}

#[tokio::test]
async fn show_tells_each_step_of_a_compensated_saga_and_whether_its_message_went_out() {
    type Summary<'a> = (Service, Option<StepState>, Option<&'a str>, Option<&'a Sent>);
    let stack = TestStack::start("sagactl show").await;
    let uuid = stack
        .place(&json!({"item":"wotsit","quantity":3,"user":"jill","payment-error":true}))
        .await;
    stack.finished(&uuid, WAIT).await;
    // The janitor marks its message published just after it answers.
    let store = connect::store(&config(&stack)).await.unwrap();
    let id = SagaId::parse(&uuid).unwrap();
    let shown = eventually(WAIT, || async {
        let shown = show::show(&store, id).await.unwrap();
        matches!(shown.steps[3].sent, Some(Sent::Published { .. })).then_some(shown)
    })
    .await
    .unwrap();

    assert!(shown.found);
    assert_eq!(shown.status, Some("compensated"));
    assert_eq!(shown.finished, Some(true));
    assert_eq!(shown.failed_step.as_deref(), Some("payments"));
    assert_eq!(shown.reason.as_deref(), Some("payment_declined"));
    let stages: Vec<&str> = shown.timeline.iter().map(|s| s.stage).collect();
    assert_eq!(
        stages,
        [
            "received",
            "order_created",
            "stock_reserved",
            "failed",
            "compensated"
        ]
    );
    // Each step: its state, the topic of its message, and whether that went out.
    let steps: Vec<Summary> = shown
        .steps
        .iter()
        .map(|s| {
            (
                s.step,
                s.state,
                s.message.as_ref().map(|m| m.topic.as_str()),
                s.sent.as_ref(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            (
                Service::Orders,
                Some(StepState::Compensated),
                Some("order-created"),
                Some(&Sent::Delivered {
                    to: Service::Inventory
                })
            ),
            (
                Service::Inventory,
                Some(StepState::Compensated),
                Some("inventory-updated"),
                Some(&Sent::Delivered {
                    to: Service::Payments
                })
            ),
            (
                Service::Payments,
                Some(StepState::Rejected),
                Some("error"),
                Some(&Sent::Delivered { to: Service::Janitor })
            ),
            (
                Service::Janitor,
                Some(StepState::Done),
                Some("compensated"),
                shown.steps[3].sent.as_ref()
            ),
        ]
    );
    assert_eq!(shown.steps[2].reason.as_deref(), Some("payment_declined"));
    assert_eq!(
        shown.steps[0].message.as_ref().unwrap().data["uuid"],
        uuid.as_str(),
        "the stored message, as JSON"
    );
    let text = shown.to_string();
    for words in [
        "compensated (finished)",
        "failed   at payments: payment_declined",
        "payments   rejected",
        "stored messages",
        "janitor → compensated",
    ] {
        assert!(text.contains(words), "{words:?} in:\n{text}");
    }
}

#[tokio::test]
async fn stuck_lists_only_unfinished_sagas_begun_before_the_cutoff() {
    let stack = TestStack::start("sagactl stuck").await;
    let stranded = write_view(&stack, &[Stage::Received, Stage::OrderCreated], 10).await;
    let failed = write_view(&stack, &[Stage::Received, Stage::Failed], 20).await;
    let finished = write_view(
        &stack,
        &[
            Stage::Received,
            Stage::OrderCreated,
            Stage::StockReserved,
            Stage::Completed,
        ],
        30,
    )
    .await;
    let recent = write_view(&stack, &[Stage::Received], 1).await;

    let store = connect::store(&config(&stack)).await.unwrap();
    let options = stuck::Options {
        older_than: Duration::from_mins(5),
        limit: 100,
    };
    let report = stuck::stuck(&store, options, now_micros()).await.unwrap();
    let found: Vec<(&str, &str, Option<Service>)> = report
        .stuck
        .iter()
        .map(|s| (s.uuid.as_str(), s.stage, s.waiting_on))
        .collect();
    assert_eq!(
        found,
        [
            (failed.as_str(), "failed", Some(Service::Janitor)),
            (stranded.as_str(), "order_created", Some(Service::Inventory)),
        ],
        "oldest first; not {finished} (finished) nor {recent} (too young)"
    );
    assert_eq!(report.scanned, 3, "the three open ones begun before the cutoff");
    assert!(report.stuck[1].stopped_for_seconds >= 9 * 60);
    assert!(
        report.stuck[1].last_step.is_none(),
        "a view written by hand has no record"
    );

    // The oldest two open views: the finished one (its `ended` not set yet) and the failed.
    let limited = stuck::Options { limit: 2, ..options };
    let report = stuck::stuck(&store, limited, now_micros()).await.unwrap();
    assert_eq!(report.stuck.len(), 1, "{report:?}");
    assert_eq!(report.stuck[0].uuid, failed);
    assert!(report.limit_reached());

    // A view whose saga the sweep marked ended is no longer looked at.
    let mut writes = WriteSet::new();
    status::mark_ended(&mut writes, records::saga(SagaId::parse(&failed).unwrap()));
    stack.store.commit(writes).await.unwrap();
    let report = stuck::stuck(&store, options, now_micros()).await.unwrap();
    assert_eq!(report.scanned, 2, "{report:?}");
    assert_eq!(report.stuck.len(), 1);
    assert_eq!(report.stuck[0].uuid, stranded);
}

/// The sweep's options with a saga deadline of `deadline`.
fn sweep_options(deadline: Duration, dry_run: bool) -> janitor::sweep::Options {
    janitor::sweep::Options {
        dry_run,
        ..janitor::sweep::Options::new(deadline)
    }
}

#[tokio::test]
async fn a_sweep_on_demand_changes_nothing_on_a_dry_run_and_then_compensates_a_stranded_saga_once() {
    const DEADLINE: Duration = Duration::from_secs(2);
    let stack = TestStack::start("sagactl sweep").await;
    let before = stack.stock("widget").await;
    // Stock reserved, and then the message that would pay for it is lost with its
    // subscription: only a sweep can end this saga.
    stack.drop_subscription("inventory-updated-sub").await;
    let uuid = stack
        .place(&json!({"item":"widget","quantity":4,"user":"jack"}))
        .await;
    eventually(WAIT, || async { stack.step(&uuid, Service::Inventory).await })
        .await
        .unwrap();
    assert_eq!(stack.stock("widget").await, before - 4);
    // Past twice the deadline the sweep compensates rather than relays.
    tokio::time::sleep(DEADLINE * 2).await;
    let clients = connect::clients(&config(&stack)).await.unwrap();

    let dry = sagactl::sweep::sweep(&clients, &sweep_options(DEADLINE, true))
        .await
        .unwrap();
    assert!(dry.dry_run);
    let planned = dry.sagas.iter().find(|s| s.uuid == uuid).unwrap();
    assert_eq!(planned.outcome, "dry_run", "{dry}");
    assert_eq!(
        planned.action,
        Some(janitor::sweep::Action::Compensate {
            step: Service::Payments,
            reason: saga::domain::Reason::TimedOut
        }),
        "{dry}"
    );
    assert!(!sagactl::sweep::needs_attention(&dry));
    assert_eq!(
        stack.stock("widget").await,
        before - 4,
        "a dry run changes nothing"
    );
    assert!(
        stack.step(&uuid, Service::Janitor).await.is_none(),
        "a dry run compensates nothing"
    );
    assert!(
        stack.step(&uuid, Service::Payments).await.is_none(),
        "a dry run tombstones nothing"
    );
    let (_, view) = stack.get(&format!("/orders/{uuid}")).await;
    assert_eq!(view["status"], "stock_reserved", "{view}");

    let swept = sagactl::sweep::sweep(&clients, &sweep_options(DEADLINE, false))
        .await
        .unwrap();
    let done = swept.sagas.iter().find(|s| s.uuid == uuid).unwrap();
    assert_eq!(done.outcome, "done", "{swept}");
    assert!(swept.to_string().contains(&uuid), "{swept}");
    assert_eq!(stack.finished(&uuid, WAIT).await["status"], "compensated");
    let compensated = stack
        .outcomes("compensated-sub", std::slice::from_ref(&uuid), WAIT)
        .await;
    assert_eq!(compensated[&uuid].len(), 1, "compensated once");
    assert_eq!(stack.stock("widget").await, before, "the stock came back once");

    // Ended, and marked so: a second sweep leaves it alone.
    let again = eventually(WAIT, || async {
        let again = sagactl::sweep::sweep(&clients, &sweep_options(DEADLINE, false))
            .await
            .unwrap();
        again.sagas.iter().all(|s| s.uuid != uuid).then_some(again)
    })
    .await;
    assert!(again.is_some(), "the next sweep does not look at it again");
    assert_eq!(stack.stock("widget").await, before);
}

/// Runs the `sagactl` binary with `args` for `project` on the emulators; its exit code and
/// its standard output.
async fn sagactl(project: Option<&str>, args: &[&str]) -> (i32, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sagactl"));
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove(env::PROJECT_ID);
    for (key, value) in emulator_env() {
        command.env(key, value);
    }
    if let Some(project) = project {
        command.env(env::PROJECT_ID, project);
    }
    let output = command.output().await.unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    (output.status.code().unwrap_or(-1), stdout)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn the_binary_answers_in_json_and_exits_with_the_documented_codes() {
    let stack = TestStack::start("sagactl binary").await;
    let uuid = stack
        .place(&json!({"item":"widget","quantity":1,"user":"jack"}))
        .await;
    stack.finished(&uuid, WAIT).await;
    let stranded = write_view(&stack, &[Stage::Received, Stage::OrderCreated], 25).await;
    let project = Some(stack.project.as_str());

    let (code, out) = sagactl(project, &["--json", "show", &uuid]).await;
    assert_eq!(code, 0, "{out}");
    let shown = json(&out);
    assert_eq!(shown["status"], "completed");
    assert_eq!(shown["steps"][2]["step"], "payments");
    assert_eq!(shown["steps"][2]["state"], "done");
    assert_eq!(shown["steps"][3]["state"], Value::Null, "the janitor never ran");

    let (code, out) = sagactl(project, &["show", "1b4e28ba-2fa1-11d2-883f-0016d3cca427"]).await;
    assert_eq!(code, 4, "no such saga: {out}");
    assert!(out.contains("not found"), "{out}");

    let (code, out) = sagactl(project, &["stuck", "--json"]).await;
    assert_eq!(code, 3, "a stuck saga: {out}");
    let report = json(&out);
    assert_eq!(report["stuck"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["stuck"][0]["uuid"], stranded.as_str());
    assert_eq!(report["stuck"][0]["waiting_on"], "inventory");

    let (code, out) = sagactl(project, &["stuck", "--older-than", "1h"]).await;
    assert_eq!(code, 0, "nothing that old: {out}");
    assert!(out.starts_with("0 unfinished sagas"), "{out}");

    let (code, out) = sagactl(project, &["dead-letters", "--json", "--wait", "1s"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(json(&out)["letters"], json!([]));

    let (code, out) = sagactl(
        project,
        &["redrive", "--all", "--dry-run", "--wait", "1s", "--json"],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(json(&out)["dry_run"], true);

    // Begun 25 minutes ago, the stranded saga is past the default deadline (10m): a dry
    // run finds it, and says what it would do.
    let (code, out) = sagactl(project, &["sweep", "--dry-run", "--json"]).await;
    assert_eq!(code, 0, "{out}");
    let report = json(&out);
    assert_eq!(
        (&report["dry_run"], &report["examined"]),
        (&json!(true), &json!(1)),
        "{report}"
    );
    let planned = &report["sagas"][0];
    assert_eq!(planned["uuid"], stranded.as_str(), "{report}");
    assert_eq!(
        (
            &planned["action"],
            &planned["step"],
            &planned["reason"],
            &planned["outcome"]
        ),
        (
            &json!("compensate"),
            &json!("orders"),
            &json!("timed_out"),
            &json!("dry_run")
        ),
        "{report}"
    );
    let (code, out) = sagactl(project, &["sweep", "--dry-run", "--deadline", "1h"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("0 open saga(s) past the deadline; would end 0"),
        "{out}"
    );
    let (code, out) = sagactl(project, &["stuck", "--json"]).await;
    assert_eq!(code, 3, "still stuck after the dry run: {out}");

    for (args, why) in [
        (&["show", "not-a-uuid"][..], "a bad uuid"),
        (&["redrive"][..], "neither --message-id nor --all"),
        (&["stuck", "--older-than", "soon"][..], "a bad duration"),
        (
            &["sweep", "--deadline", "2m"][..],
            "a deadline shorter than Pub/Sub's retries",
        ),
    ] {
        assert_eq!(sagactl(project, args).await.0, 2, "{why}");
    }
    assert_eq!(sagactl(None, &["stuck"]).await.0, 2, "no project");
}

#[tokio::test]
async fn the_binary_changes_stock_and_discards_letters_with_the_documented_codes() {
    let stack = TestStack::start("sagactl binary changes").await;
    let project = Some(stack.project.as_str());
    let (code, out) = sagactl(
        project,
        &[
            "discard",
            "--message-id",
            "no-such-letter",
            "--wait",
            "1s",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 3, "a letter asked for and not found: {out}");
    assert_eq!(json(&out)["not_found"], json!(["no-such-letter"]));

    let (code, out) = sagactl(project, &["stock", "widget", "--json"]).await;
    assert_eq!(code, 0, "{out}");
    let level = json(&out)["quantity"].as_i64().unwrap();
    assert_eq!(json(&out)["outcome"], "shown", "{out}");
    let (code, out) = sagactl(project, &["stock", "widget", "--add", "3"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(&format!("widget: {level} -> {}", level + 3)),
        "{out}"
    );
    let too_many = (level + 4).to_string();
    let (code, out) = sagactl(project, &["stock", "widget", "--remove", &too_many, "--json"]).await;
    assert_eq!(code, 3, "a removal of more than is there is refused: {out}");
    assert_eq!(json(&out)["outcome"], "refused", "{out}");
    let (code, out) = sagactl(project, &["stock", "no-such-item"]).await;
    assert_eq!(code, 4, "no such item: {out}");

    for (args, why) in [
        (&["discard", "--all"][..], "a discard names its letters"),
        (&["stock", "widget", "--add", "0"][..], "a change of nothing"),
    ] {
        assert_eq!(sagactl(project, args).await.0, 2, "{why}");
    }
}
