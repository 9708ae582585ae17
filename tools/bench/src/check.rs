//! The correctness check of a run: a pure function of what was placed, what came out on
//! the pull subscriptions and the stock before and after.
//!
//! A run passes only if
//! - every accepted order ended exactly once: one outcome, `payment-created` xor `error`
//!   (an identical copy of the same message is Pub/Sub's at-least-once delivery, counted
//!   but allowed; two different outcomes for one saga are not);
//! - every failure was compensated, and no success was;
//! - nothing was sold that was not in stock: per item, the units sold never exceed the
//!   stock at the start, and the final stock is exactly the initial stock minus the units of
//!   every successful order (which also proves that compensations gave back exactly what
//!   failed orders had reserved);
//! - orders that must fail (payment error, unknown user) did, valid orders were not refused
//!   for lack of stock when the stock covered every order of the run, invoices are
//!   quantity × price, and each outcome is about the order that was placed.
//!
//! Speed never enters here: a slow run that passes is a slow run, a fast one that fails
//! counts for nothing.

use crate::orders::{Expect, OrderSpec};
use saga::domain::Reason;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::SystemTime;

/// Which pull subscription a message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `payment-created-sub`: the saga succeeded.
    Completed,
    /// `error-cli-sub`: the saga failed.
    Failed,
    /// `compensated-sub`: a failed saga was undone.
    Compensated,
    /// `dead-letter-sub`: something could not be processed.
    DeadLetter,
}

/// A message read from one of the pull subscriptions.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Where it came from.
    pub kind: Kind,
    /// Its `uuid`, if it has one.
    pub uuid: Option<String>,
    /// Its `item`.
    pub item: Option<String>,
    /// Its `quantity`.
    pub quantity: Option<u64>,
    /// Its `user`.
    pub user: Option<String>,
    /// Its `reason`, on failures.
    pub reason: Option<String>,
    /// Its `total_invoice`, on successes.
    pub total_invoice: Option<u64>,
    /// When Pub/Sub accepted it.
    pub publish_time: Option<SystemTime>,
    /// The payload, to tell an identical redelivery from a different outcome.
    pub data: Vec<u8>,
}

impl Outcome {
    /// Reads a message's payload.
    pub fn new(kind: Kind, data: Vec<u8>, publish_time: Option<SystemTime>) -> Self {
        let json: Value = serde_json::from_slice(&data).unwrap_or(Value::Null);
        let text = |k: &str| json.get(k).and_then(Value::as_str).map(str::to_owned);
        let number = |k: &str| json.get(k).and_then(Value::as_u64);
        Outcome {
            kind,
            uuid: text("uuid"),
            item: text("item"),
            quantity: number("quantity"),
            user: text("user"),
            reason: text("reason"),
            total_invoice: number("total_invoice"),
            publish_time,
            data,
        }
    }
}

/// An order the frontend accepted.
#[derive(Clone, Debug)]
pub struct Placed {
    /// The saga id it answered with.
    pub uuid: String,
    /// What was ordered.
    pub spec: OrderSpec,
}

/// Stock of one item around a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Stock {
    /// Before the first order.
    pub initial: i64,
    /// After every saga and compensation ended.
    #[serde(rename = "final")]
    pub after: i64,
}

/// Everything the check looks at.
#[derive(Debug)]
pub struct Input<'a> {
    /// Accepted orders.
    pub placed: &'a [Placed],
    /// Orders the frontend did not accept, with why.
    pub refused: &'a [String],
    /// Every message read during the run.
    pub outcomes: &'a [Outcome],
    /// Stock per item; empty when the run has none (the floor).
    pub stock: &'a BTreeMap<String, Stock>,
    /// Price per item; items without one get no invoice check.
    pub prices: &'a BTreeMap<String, u64>,
}

/// How a saga ended, for latency figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    /// Success or failure.
    pub kind: Kind,
    /// Publish time of its (first) terminal message.
    pub at: Option<SystemTime>,
}

/// The result of the check.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verdict {
    /// What broke the rules; the run fails if this is not empty.
    pub violations: Vec<String>,
    /// Worth knowing, but not wrong.
    pub notes: Vec<String>,
    /// Sagas that completed.
    pub completed: usize,
    /// Sagas that failed, by reason.
    pub failed: BTreeMap<String, usize>,
    /// Failed sagas that were compensated.
    pub compensated: usize,
    /// Extra identical copies of messages already seen.
    pub duplicates: usize,
    /// Messages about sagas this run did not place.
    pub strays: usize,
    /// Messages on the dead-letter subscription.
    pub dead_letters: usize,
    /// Units sold per item, by successful sagas.
    pub sold: BTreeMap<String, u64>,
    /// How each accepted saga ended.
    #[serde(skip)]
    pub ended: HashMap<String, Ended>,
}

impl Verdict {
    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// The most violations listed one by one; a broken run would otherwise print thousands.
const MAX_LISTED: usize = 20;

/// Messages of one saga, by subscription, each payload once.
#[derive(Default)]
struct Seen<'a> {
    by_kind: HashMap<Kind, Vec<&'a Outcome>>,
}

impl<'a> Seen<'a> {
    fn first(&self, kind: Kind) -> Option<&'a Outcome> {
        self.by_kind.get(&kind).and_then(|v| v.first().copied())
    }
    fn distinct(&self, kind: Kind) -> usize {
        self.by_kind.get(&kind).map_or(0, Vec::len)
    }
}

/// Checks a run.
pub fn check(input: &Input<'_>) -> Verdict {
    let mut verdict = Verdict::default();
    let mut violations = Vec::new();
    for refused in input.refused {
        violations.push(format!("an order was not accepted: {refused}"));
    }

    // Group messages by saga, keeping each distinct payload once per subscription.
    let mut sagas: HashMap<&str, Seen<'_>> = HashMap::new();
    let mut payloads: HashSet<(Kind, &[u8])> = HashSet::new();
    for outcome in input.outcomes {
        if outcome.kind == Kind::DeadLetter {
            verdict.dead_letters += 1;
            continue;
        }
        if !payloads.insert((outcome.kind, &outcome.data)) {
            verdict.duplicates += 1;
            continue;
        }
        let Some(uuid) = outcome.uuid.as_deref() else {
            violations.push(format!(
                "a {:?} message without a uuid: {}",
                outcome.kind,
                String::from_utf8_lossy(&outcome.data)
            ));
            continue;
        };
        sagas
            .entry(uuid)
            .or_default()
            .by_kind
            .entry(outcome.kind)
            .or_default()
            .push(outcome);
    }

    let placed: HashMap<&str, &OrderSpec> = input.placed.iter().map(|p| (p.uuid.as_str(), &p.spec)).collect();
    if placed.len() != input.placed.len() {
        violations.push("the frontend gave the same uuid to two orders".to_owned());
    }
    let demand = crate::orders::demand(&input.placed.iter().map(|p| p.spec.clone()).collect::<Vec<_>>());

    for p in input.placed {
        let seen = sagas.remove(p.uuid.as_str()).unwrap_or_default();
        check_saga(p, &seen, input, &demand, &mut verdict, &mut violations);
    }

    // Sagas nobody here placed: left over from an earlier run, or started by a POST whose
    // answer was lost. Their sales still count against the stock.
    for (uuid, seen) in &sagas {
        verdict.strays += seen.by_kind.values().map(Vec::len).sum::<usize>();
        if let Some(success) = seen.first(Kind::Completed)
            && let (Some(item), Some(quantity)) = (&success.item, success.quantity)
        {
            *verdict.sold.entry(item.clone()).or_insert(0) += quantity;
            verdict.notes.push(format!(
                "saga {uuid}, not placed by this run, sold {quantity} {item}"
            ));
        }
    }

    for (item, stock) in input.stock {
        let sold = verdict.sold.get(item).copied().unwrap_or(0);
        let sold = i64::try_from(sold).unwrap_or(i64::MAX);
        if sold > stock.initial {
            violations.push(format!(
                "{item}: {sold} units sold but only {} were in stock",
                stock.initial
            ));
        }
        if stock.after < 0 {
            violations.push(format!("{item}: stock went negative ({})", stock.after));
        }
        let expected = stock.initial - sold;
        if stock.after != expected {
            violations.push(format!(
                "{item}: final stock {} is not initial {} − sold {sold} = {expected}",
                stock.after, stock.initial
            ));
        }
    }

    if verdict.duplicates > 0 {
        verdict.notes.push(format!(
            "{} identical copies of messages already read (at-least-once delivery)",
            verdict.duplicates
        ));
    }
    if verdict.dead_letters > 0 {
        verdict.notes.push(format!(
            "{} messages reached the dead-letter subscription",
            verdict.dead_letters
        ));
    }
    let total = violations.len();
    if total > MAX_LISTED {
        violations.truncate(MAX_LISTED);
        violations.push(format!("… and {} more", total - MAX_LISTED));
    }
    verdict.violations = violations;
    verdict
}

/// Each subscription holds at most one distinct message for the saga, and every message is
/// about the order that was placed.
fn check_messages(placed: &Placed, seen: &Seen<'_>, violations: &mut Vec<String>) {
    let uuid = &placed.uuid;
    let spec = &placed.spec;
    let successes = seen.distinct(Kind::Completed);
    let failures = seen.distinct(Kind::Failed);
    let compensations = seen.distinct(Kind::Compensated);
    if successes > 1 {
        violations.push(format!(
            "order {uuid} completed {successes} times, with different messages"
        ));
    }
    if failures > 1 {
        violations.push(format!(
            "order {uuid} failed {failures} times, with different messages"
        ));
    }
    if compensations > 1 {
        violations.push(format!(
            "order {uuid} was compensated {compensations} times, with different messages"
        ));
    }
    for outcome in seen.by_kind.values().flatten() {
        let same = outcome.item.as_deref() == Some(spec.item.as_str())
            && outcome.quantity == Some(u64::from(spec.quantity))
            && outcome.user.as_deref() == Some(spec.user.as_str());
        if !same {
            violations.push(format!(
                "order {uuid} was {} {} by {}, but its {:?} message says {:?} × {:?} by {:?}",
                spec.quantity,
                spec.item,
                spec.user,
                outcome.kind,
                outcome.quantity,
                outcome.item,
                outcome.user
            ));
        }
    }
}

fn check_saga(
    placed: &Placed,
    seen: &Seen<'_>,
    input: &Input<'_>,
    demand: &BTreeMap<String, u64>,
    verdict: &mut Verdict,
    violations: &mut Vec<String>,
) {
    let uuid = &placed.uuid;
    let spec = &placed.spec;
    let compensations = seen.distinct(Kind::Compensated);
    check_messages(placed, seen, violations);

    match (seen.first(Kind::Completed), seen.first(Kind::Failed)) {
        (None, None) => violations.push(format!(
            "order {uuid} ({} {} by {}) never ended",
            spec.quantity, spec.item, spec.user
        )),
        (Some(_), Some(failure)) => violations.push(format!(
            "order {uuid} both completed and failed ({})",
            failure.reason.as_deref().unwrap_or("no reason")
        )),
        (Some(success), None) => {
            verdict.completed += 1;
            verdict.ended.insert(
                uuid.clone(),
                Ended {
                    kind: Kind::Completed,
                    at: success.publish_time,
                },
            );
            *verdict.sold.entry(spec.item.clone()).or_insert(0) += u64::from(spec.quantity);
            match spec.expect {
                Expect::Declined => {
                    violations.push(format!("order {uuid} asked for a payment error but was paid"));
                }
                Expect::UnknownUser => {
                    violations.push(format!("order {uuid} of unknown user {} was paid", spec.user));
                }
                Expect::Valid => {}
            }
            if let Some(price) = input.prices.get(&spec.item) {
                let expected = price * u64::from(spec.quantity);
                if success.total_invoice != Some(expected) {
                    violations.push(format!(
                        "order {uuid}: total_invoice {:?}, expected {} × {price} = {expected}",
                        success.total_invoice, spec.quantity
                    ));
                }
            }
            if compensations > 0 {
                violations.push(format!("order {uuid} completed but was compensated"));
            }
        }
        (None, Some(failure)) => {
            let reason = failure.reason.clone().unwrap_or_else(|| "no reason".to_owned());
            *verdict.failed.entry(reason.clone()).or_insert(0) += 1;
            verdict.ended.insert(
                uuid.clone(),
                Ended {
                    kind: Kind::Failed,
                    at: failure.publish_time,
                },
            );
            if compensations == 0 {
                violations.push(format!(
                    "order {uuid} failed ({reason}) but was never compensated"
                ));
            } else {
                verdict.compensated += 1;
            }
            let covered = input
                .stock
                .get(&spec.item)
                .is_some_and(|s| u64::try_from(s.initial).is_ok_and(|i| i >= demand[&spec.item]));
            if spec.expect == Expect::Valid && reason == Reason::InsufficientStock.as_str() && covered {
                violations.push(format!(
                    "order {uuid} was refused for lack of {} although the stock covered every order of the run",
                    spec.item
                ));
            }
        }
    }
}

/// Whether every accepted saga has ended and every failure was compensated: when a run can
/// stop waiting and read the final stock.
pub fn settled(placed: &[Placed], outcomes: &[Outcome]) -> bool {
    let mut ended = HashSet::new();
    let mut failed = HashSet::new();
    let mut compensated = HashSet::new();
    for o in outcomes {
        let Some(uuid) = o.uuid.as_deref() else { continue };
        match o.kind {
            Kind::Completed => {
                ended.insert(uuid);
            }
            Kind::Failed => {
                ended.insert(uuid);
                failed.insert(uuid);
            }
            Kind::Compensated => {
                compensated.insert(uuid);
            }
            Kind::DeadLetter => {}
        }
    }
    placed.iter().all(|p| ended.contains(p.uuid.as_str())) && failed.iter().all(|u| compensated.contains(u))
}

#[cfg(test)]
// A failed unwrap in a test is a failed assertion.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(item: &str, quantity: u32, expect: Expect) -> OrderSpec {
        OrderSpec {
            item: item.to_owned(),
            quantity,
            user: "jack".to_owned(),
            expect,
        }
    }

    fn placed(uuid: &str, item: &str, quantity: u32, expect: Expect) -> Placed {
        Placed {
            uuid: uuid.to_owned(),
            spec: spec(item, quantity, expect),
        }
    }

    fn message(kind: Kind, p: &Placed, extra: &Value) -> Outcome {
        let mut body =
            json!({"uuid": p.uuid, "item": p.spec.item, "quantity": p.spec.quantity, "user": p.spec.user});
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                body[k] = v.clone();
            }
        }
        Outcome::new(kind, body.to_string().into_bytes(), Some(SystemTime::UNIX_EPOCH))
    }

    fn paid(p: &Placed, price: u64) -> Outcome {
        message(
            Kind::Completed,
            p,
            &json!({"total_invoice": price * u64::from(p.spec.quantity), "status_code": "completed"}),
        )
    }

    fn failed(p: &Placed, reason: &str) -> Outcome {
        message(Kind::Failed, p, &json!({"reason": reason}))
    }

    fn compensated(p: &Placed, reason: &str) -> Outcome {
        message(
            Kind::Compensated,
            p,
            &json!({"reason": reason, "status_code": "compensated"}),
        )
    }

    fn run(placed: &[Placed], outcomes: &[Outcome], stock: &[(&str, i64, i64)]) -> Verdict {
        let stock: BTreeMap<String, Stock> = stock
            .iter()
            .map(|(item, initial, after)| {
                (
                    (*item).to_owned(),
                    Stock {
                        initial: *initial,
                        after: *after,
                    },
                )
            })
            .collect();
        let prices = BTreeMap::from([("widget".to_owned(), 10)]);
        check(&Input {
            placed,
            refused: &[],
            outcomes,
            stock: &stock,
            prices: &prices,
        })
    }

    #[test]
    fn a_clean_run_with_a_compensated_failure_passes() {
        let a = placed("a", "widget", 3, Expect::Valid);
        let b = placed("b", "widget", 2, Expect::Declined);
        let outcomes = [
            paid(&a, 10),
            failed(&b, "payment_declined"),
            compensated(&b, "payment_declined"),
        ];
        let verdict = run(&[a.clone(), b.clone()], &outcomes, &[("widget", 100, 97)]);
        assert!(verdict.passed(), "{:?}", verdict.violations);
        assert_eq!(verdict.completed, 1);
        assert_eq!(verdict.failed["payment_declined"], 1);
        assert_eq!(verdict.compensated, 1);
        assert_eq!(verdict.sold["widget"], 3);
        assert!(settled(&[a, b], &outcomes));
    }

    #[test]
    fn an_order_without_an_outcome_never_ended() {
        let a = placed("a", "widget", 1, Expect::Valid);
        let verdict = run(std::slice::from_ref(&a), &[], &[("widget", 10, 10)]);
        assert_eq!(verdict.violations, vec!["order a (1 widget by jack) never ended"]);
        assert!(!settled(&[a], &[]));
    }

    #[test]
    fn an_order_that_both_completed_and_failed_is_a_violation() {
        let a = placed("a", "widget", 1, Expect::Valid);
        let outcomes = [
            paid(&a, 10),
            failed(&a, "insufficient_stock"),
            compensated(&a, "x"),
        ];
        let verdict = run(&[a], &outcomes, &[("widget", 10, 9)]);
        assert!(
            verdict
                .violations
                .iter()
                .any(|v| v.contains("both completed and failed"))
        );
    }

    #[test]
    fn an_identical_redelivery_is_a_duplicate_but_a_different_second_success_is_a_violation() {
        let a = placed("a", "widget", 1, Expect::Valid);
        let verdict = run(
            std::slice::from_ref(&a),
            &[paid(&a, 10), paid(&a, 10)],
            &[("widget", 10, 9)],
        );
        assert!(verdict.passed(), "{:?}", verdict.violations);
        assert_eq!(verdict.duplicates, 1);

        let other = message(
            Kind::Completed,
            &a,
            &json!({"total_invoice": 10, "status": "again"}),
        );
        let verdict = run(
            std::slice::from_ref(&a),
            &[paid(&a, 10), other],
            &[("widget", 10, 9)],
        );
        assert!(verdict.violations.iter().any(|v| v.contains("completed 2 times")));
    }

    #[test]
    fn a_failure_that_was_never_compensated_is_a_violation_and_not_settled() {
        let a = placed("a", "widget", 1, Expect::Declined);
        let outcomes = [failed(&a, "payment_declined")];
        let verdict = run(std::slice::from_ref(&a), &outcomes, &[("widget", 10, 10)]);
        assert!(verdict.violations.iter().any(|v| v.contains("never compensated")));
        assert!(!settled(&[a], &outcomes));
    }

    #[test]
    fn a_compensated_success_is_a_violation() {
        let a = placed("a", "widget", 1, Expect::Valid);
        let verdict = run(
            std::slice::from_ref(&a),
            &[paid(&a, 10), compensated(&a, "x")],
            &[("widget", 10, 9)],
        );
        assert!(
            verdict
                .violations
                .iter()
                .any(|v| v.contains("completed but was compensated"))
        );
    }

    #[test]
    fn stock_that_does_not_add_up_is_a_violation() {
        let a = placed("a", "widget", 3, Expect::Valid);
        let verdict = run(std::slice::from_ref(&a), &[paid(&a, 10)], &[("widget", 100, 96)]);
        assert_eq!(
            verdict.violations,
            vec!["widget: final stock 96 is not initial 100 − sold 3 = 97"]
        );
        // A compensation that gave stock back twice shows the same way.
        let b = placed("b", "widget", 2, Expect::Declined);
        let outcomes = [
            failed(&b, "payment_declined"),
            compensated(&b, "payment_declined"),
        ];
        let verdict = run(&[b], &outcomes, &[("widget", 100, 102)]);
        assert!(verdict.violations.iter().any(|v| v.contains("final stock 102")));
    }

    #[test]
    fn selling_more_than_was_in_stock_is_a_violation() {
        let a = placed("a", "widget", 3, Expect::Valid);
        let b = placed("b", "widget", 3, Expect::Valid);
        let verdict = run(
            &[a.clone(), b.clone()],
            &[paid(&a, 10), paid(&b, 10)],
            &[("widget", 5, -1)],
        );
        assert!(
            verdict
                .violations
                .iter()
                .any(|v| v.contains("6 units sold but only 5"))
        );
        assert!(verdict.violations.iter().any(|v| v.contains("went negative")));
    }

    #[test]
    fn orders_that_must_fail_but_were_paid_are_violations() {
        let a = placed("a", "widget", 1, Expect::Declined);
        let b = Placed {
            uuid: "b".to_owned(),
            spec: OrderSpec {
                user: "jimbo".to_owned(),
                ..spec("widget", 1, Expect::UnknownUser)
            },
        };
        let verdict = run(
            &[a.clone(), b.clone()],
            &[paid(&a, 10), paid(&b, 10)],
            &[("widget", 10, 8)],
        );
        assert!(
            verdict
                .violations
                .iter()
                .any(|v| v.contains("asked for a payment error"))
        );
        assert!(
            verdict
                .violations
                .iter()
                .any(|v| v.contains("unknown user jimbo"))
        );
    }

    #[test]
    fn running_out_of_stock_is_allowed_only_when_the_stock_did_not_cover_the_run() {
        let a = placed("a", "widget", 4, Expect::Valid);
        let b = placed("b", "widget", 4, Expect::Valid);
        let outcomes = [
            paid(&a, 10),
            failed(&b, "insufficient_stock"),
            compensated(&b, "insufficient_stock"),
        ];
        let short = run(&[a.clone(), b.clone()], &outcomes, &[("widget", 5, 1)]);
        assert!(short.passed(), "{:?}", short.violations);
        let plenty = run(&[a, b], &outcomes, &[("widget", 100, 96)]);
        assert!(
            plenty
                .violations
                .iter()
                .any(|v| v.contains("refused for lack of widget"))
        );
    }

    #[test]
    fn a_wrong_invoice_or_a_message_about_another_order_is_a_violation() {
        let a = placed("a", "widget", 2, Expect::Valid);
        let wrong_invoice = message(Kind::Completed, &a, &json!({"total_invoice": 21}));
        let verdict = run(std::slice::from_ref(&a), &[wrong_invoice], &[("widget", 10, 8)]);
        assert!(
            verdict
                .violations
                .iter()
                .any(|v| v.contains("total_invoice Some(21)"))
        );

        let mut other = paid(&a, 10);
        other = Outcome::new(
            Kind::Completed,
            String::from_utf8(other.data)
                .unwrap()
                .replace("\"quantity\":2", "\"quantity\":5")
                .into_bytes(),
            other.publish_time,
        );
        let verdict = run(&[a], &[other], &[("widget", 10, 8)]);
        assert!(verdict.violations.iter().any(|v| v.contains("message says")));
    }

    #[test]
    fn a_stray_sale_counts_against_the_stock_and_is_noted() {
        let a = placed("a", "widget", 1, Expect::Valid);
        let stray = placed("z", "widget", 2, Expect::Valid);
        let verdict = run(
            std::slice::from_ref(&a),
            &[paid(&a, 10), paid(&stray, 10)],
            &[("widget", 10, 7)],
        );
        assert!(verdict.passed(), "{:?}", verdict.violations);
        assert_eq!(verdict.strays, 1);
        assert_eq!(verdict.sold["widget"], 3);
    }

    #[test]
    fn refused_orders_are_violations_and_long_lists_are_cut() {
        let refused: Vec<String> = (0..30).map(|i| format!("order #{i}: 503")).collect();
        let verdict = check(&Input {
            placed: &[],
            refused: &refused,
            outcomes: &[],
            stock: &BTreeMap::new(),
            prices: &BTreeMap::new(),
        });
        assert_eq!(verdict.violations.len(), MAX_LISTED + 1);
        assert_eq!(verdict.violations.last().unwrap(), "… and 10 more");
    }
}
