//! `sagactl stuck`: the sagas that began more than a given time ago and have not finished,
//! where each stopped (its furthest stage, and its last step record), and for how long.
//!
//! The candidates are the open sagas (`ended == 0`) begun before the cutoff, found by the
//! same indexed query as the sweep's ([`candidates`]; Terraform creates its index). A view
//! can lag behind the records (its `ended` is set after the last message is confirmed), so
//! the unfinished ones are picked from the views' own stages in memory ([`assess`]).

use crate::format;
use crate::show::{self, STEPS, Sent};
use saga::contract::{Service, Topic, collections, consumer_step, sweep};
use saga::domain::{SagaId, Stage};
use saga::engine::records::{self, StepRecord, StepState};
use saga::engine::status::StatusDoc;
use saga::gcp::store::{Snapshot, Store};
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// What `stuck` looks for.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// How long ago a saga must have begun to count.
    pub older_than: Duration,
    /// How many sagas to look at, at most: the oldest open ones begun before the cutoff.
    pub limit: u32,
}

/// The sagas to look at: up to `limit` open sagas (`ended == 0`) that began before `cutoff`
/// (microseconds since the epoch), oldest first, by the sweep's indexed query: the oldest
/// are the ones the sweep acts on first and the ones that need a person most. The one
/// query of `stuck`.
pub async fn candidates(store: &Store, cutoff: i64, limit: u32) -> anyhow::Result<Vec<Snapshot>> {
    let [ended, created] = sweep::INDEX_FIELDS;
    store
        .flagged_between(collections::SAGAS, (ended, 0), created, (i64::MIN, cutoff), limit)
        .await
}

/// What a saga's status view says of it, if it is stuck: unfinished, and begun before
/// `cutoff`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    /// Its furthest stage.
    pub stage: Stage,
    /// When it began (microseconds since the epoch).
    pub created: i64,
    /// When its last stage happened: the last sign of progress.
    pub last_progress: i64,
    /// The step whose turn it is: the one that reads the message of its furthest stage.
    pub waiting_on: Option<Service>,
}

/// Whether the saga of `doc` is stuck (unfinished, begun before `cutoff`), and where.
pub fn assess(doc: &StatusDoc, cutoff: i64) -> Option<Assessment> {
    if doc.finished() || doc.created >= cutoff {
        return None;
    }
    let stage = doc.status();
    Some(Assessment {
        stage,
        created: doc.created,
        last_progress: doc.timeline.values().copied().max().unwrap_or(doc.created),
        waiting_on: waiting_on(stage),
    })
}

/// The step that reads the message of `stage`: whose turn it is when a saga stands there.
pub fn waiting_on(stage: Stage) -> Option<Service> {
    Topic::ALL
        .into_iter()
        .find(|topic| Stage::of_topic(*topic) == Some(stage))
        .and_then(consumer_step)
}

/// The last record a stuck saga's steps wrote.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LastStep {
    /// The step.
    #[serde(serialize_with = "format::service")]
    pub step: Service,
    /// Its state.
    pub state: StepState,
    /// Its reason.
    pub reason: Option<String>,
    /// When it last changed.
    pub updated: String,
    /// Whether its message went out.
    pub sent: Sent,
}

/// One stuck saga.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stuck {
    /// The saga.
    pub uuid: String,
    /// Its furthest stage.
    pub stage: &'static str,
    /// The step whose turn it is.
    #[serde(serialize_with = "optional_service")]
    pub waiting_on: Option<Service>,
    /// The order.
    pub order: show::Order,
    /// When it began.
    pub created: String,
    /// How long ago, in seconds.
    pub age_seconds: u64,
    /// When its last stage happened.
    pub last_progress: String,
    /// How long ago, in seconds: how long it has stood still.
    pub stopped_for_seconds: u64,
    /// The last record its steps wrote, if any.
    pub last_step: Option<LastStep>,
}

#[allow(clippy::trivially_copy_pass_by_ref, clippy::ref_option)] // serde's signature
fn optional_service<S: serde::Serializer>(service: &Option<Service>, s: S) -> Result<S::Ok, S::Error> {
    match service {
        Some(service) => s.serialize_some(service.name()),
        None => s.serialize_none(),
    }
}

/// What `stuck` found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// How long ago a saga must have begun to count, in seconds.
    pub older_than_seconds: u64,
    /// The time that is.
    pub cutoff: String,
    /// How many sagas that began before it were looked at.
    pub scanned: usize,
    /// The most that would be.
    pub limit: u32,
    /// The stuck ones, oldest first.
    pub stuck: Vec<Stuck>,
}

impl Report {
    /// Whether older sagas were left unexamined because the limit was reached.
    pub fn limit_reached(&self) -> bool {
        u32::try_from(self.scanned).is_ok_and(|n| n >= self.limit)
    }
}

/// Finds the stuck sagas as `options` say, at `now` (microseconds since the epoch).
pub async fn stuck(store: &Store, options: Options, now: i64) -> anyhow::Result<Report> {
    let older_than = i64::try_from(options.older_than.as_micros()).unwrap_or(i64::MAX);
    let cutoff = now.saturating_sub(older_than);
    let docs = candidates(store, cutoff, options.limit).await?;
    let mut found = Vec::new();
    for snapshot in &docs {
        // A view that does not decode is no saga `stuck` can say anything of.
        let Ok(doc) = snapshot.decode::<StatusDoc>() else {
            continue;
        };
        if let (Some(assessment), Some(uuid)) = (assess(&doc, cutoff), SagaId::parse(&doc.uuid)) {
            found.push((uuid, doc, assessment));
        }
    }
    let paths: Vec<_> = found
        .iter()
        .flat_map(|(uuid, _, _)| STEPS.iter().map(|s| records::step(*uuid, *s)))
        .collect();
    let records = if paths.is_empty() {
        Vec::new()
    } else {
        store.get_all(&paths).await?
    };
    let stuck = found
        .into_iter()
        .zip(records.chunks(STEPS.len()))
        .map(|((uuid, doc, assessment), records)| Stuck {
            uuid: uuid.to_string(),
            stage: assessment.stage.as_str(),
            waiting_on: assessment.waiting_on,
            order: show::Order {
                user: doc.user,
                item: doc.item,
                quantity: doc.quantity,
            },
            created: format::time(assessment.created),
            age_seconds: format::since(assessment.created, now).as_secs(),
            last_progress: format::time(assessment.last_progress),
            stopped_for_seconds: format::since(assessment.last_progress, now).as_secs(),
            last_step: last_step(records),
        })
        .collect();
    Ok(Report {
        older_than_seconds: options.older_than.as_secs(),
        cutoff: format::time(cutoff),
        scanned: docs.len(),
        limit: options.limit,
        stuck,
    })
}

/// The most recently changed of a saga's step records (in [`STEPS`] order).
fn last_step(records: &[Option<Snapshot>]) -> Option<LastStep> {
    let has_record = |service: Service| {
        STEPS
            .iter()
            .zip(records)
            .any(|(s, doc)| *s == service && doc.is_some())
    };
    STEPS
        .iter()
        .zip(records)
        .filter_map(|(service, doc)| Some((*service, doc.as_ref()?.decode::<StepRecord>().ok()?)))
        .max_by_key(|(_, record)| record.updated.0)
        .map(|(step, record)| LastStep {
            step,
            sent: Sent::of(&record, None, has_record),
            state: record.state,
            reason: record.reason,
            updated: format::timestamp(record.updated.0),
        })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let older_than = format::human(Duration::from_secs(self.older_than_seconds));
        let n = self.stuck.len();
        writeln!(
            f,
            "{n} unfinished saga{} begun more than {older_than} ago (before {}); {} looked at",
            if n == 1 { "" } else { "s" },
            self.cutoff,
            self.scanned,
        )?;
        if self.limit_reached() {
            writeln!(
                f,
                "only the oldest {} open sagas were looked at: younger ones may be stuck too (raise --limit)",
                self.limit
            )?;
        }
        for stuck in &self.stuck {
            let waiting = stuck
                .waiting_on
                .map_or_else(|| "-".to_owned(), |s| s.name().to_owned());
            writeln!(
                f,
                "\n{}  at {} for {}, waiting on {waiting}; begun {} ago; {} × {} for {}",
                stuck.uuid,
                stuck.stage,
                format::human(Duration::from_secs(stuck.stopped_for_seconds)),
                format::human(Duration::from_secs(stuck.age_seconds)),
                stuck.order.quantity,
                stuck.order.item,
                stuck.order.user,
            )?;
            match &stuck.last_step {
                Some(last) => {
                    let reason = last
                        .reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default();
                    writeln!(
                        f,
                        "  last record: {} {}{reason}, {}, at {}",
                        last.step,
                        show::state_word(last.state),
                        last.sent,
                        last.updated
                    )?;
                }
                None => writeln!(f, "  no step record")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    // A failed unwrap in a test is a failed assertion.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::collections::BTreeMap;

    fn view(stages: &[(Stage, i64)]) -> StatusDoc {
        let timeline: BTreeMap<Stage, i64> = stages.iter().copied().collect();
        StatusDoc {
            created: timeline.values().copied().min().unwrap_or(0),
            timeline,
            ..StatusDoc::default()
        }
    }

    #[test]
    fn only_unfinished_sagas_begun_before_the_cutoff_are_stuck_and_they_wait_on_the_next_step() {
        type Case = (Vec<(Stage, i64)>, Option<(Stage, i64, Option<Service>)>);
        use Stage::*;
        let cutoff = 1_000;
        // (the view's stages and their times, what is stuck: (stage, last progress, waiting on))
        let cases: Vec<Case> = vec![
            (vec![(Received, 10)], Some((Received, 10, Some(Service::Orders)))),
            (
                vec![(Received, 10), (OrderCreated, 20)],
                Some((OrderCreated, 20, Some(Service::Inventory))),
            ),
            (
                vec![(Received, 10), (OrderCreated, 20), (StockReserved, 2_000)],
                Some((StockReserved, 2_000, Some(Service::Payments))),
            ),
            (
                vec![(Received, 10), (OrderCreated, 20), (Failed, 30)],
                Some((Failed, 30, Some(Service::Janitor))),
            ),
            (
                vec![
                    (Received, 10),
                    (OrderCreated, 20),
                    (StockReserved, 30),
                    (Completed, 40),
                ],
                None,
            ),
            (vec![(Received, 10), (Failed, 20), (Compensated, 30)], None),
            // Begun at the cutoff or after: too young.
            (vec![(Received, cutoff)], None),
            (vec![(Received, 5_000), (OrderCreated, 6_000)], None),
        ];
        for (stages, expected) in cases {
            let got = assess(&view(&stages), cutoff).map(|a| (a.stage, a.last_progress, a.waiting_on));
            assert_eq!(got, expected, "{stages:?}");
        }
    }

    #[test]
    fn a_finished_saga_waits_on_nobody() {
        assert_eq!(waiting_on(Stage::Completed), None);
        assert_eq!(waiting_on(Stage::Compensated), None);
    }

    #[test]
    fn the_report_says_when_older_sagas_were_not_looked_at() {
        let report = Report {
            older_than_seconds: 300,
            cutoff: "2026-01-01T00:00:00.000Z".into(),
            scanned: 100,
            limit: 100,
            stuck: Vec::new(),
        };
        assert!(report.limit_reached());
        let text = report.to_string();
        assert!(
            text.starts_with("0 unfinished sagas begun more than 5m ago"),
            "{text}"
        );
        assert!(text.contains("raise --limit"), "{text}");
        let fewer = Report {
            scanned: 99,
            ..report
        };
        assert!(!fewer.limit_reached());
        assert!(!fewer.to_string().contains("raise --limit"));
    }
}
