//! `sagactl stock ITEM`: an item's stock level, and the safe way to change it by hand while
//! sales go on (`--add N`, `--remove N`).
//!
//! The saga writes `inventory/{item}.quantity` as an absolute level, guarded by the update
//! time of the document it read (`saga::engine::records::set_stock_level`): a sale decided on
//! a level that changed meanwhile loses its commit and decides again. A level typed into the
//! Firestore console is guarded by nothing: a sale committed between the moment a person
//! read the level and the moment they saved theirs is undone, and its units are sold again.
//!
//! A change here is one of the saga's own read-decide-commit rounds
//! ([`saga::engine::retry::until_committed`]): read the level, decide ([`plan`], pure: a
//! removal never takes the level below zero), and commit the difference as an increment
//! guarded by the update time read; if a sale wrote the level in between, nothing is
//! written, and the round reads again. Either way a sale decided on the old level fails its
//! own precondition and decides again on the new one, so neither side's change is lost.
//!
//! The same commit creates `inventory/{item}/stock-changes/{id}` (levels, reason, time),
//! only if it does not exist: who looks at a stock later sees each change made by hand,
//! and a change whose commit failed without saying whether it applied can be run again
//! with its id (`--change-id`): a round that finds its record reports it made, and changes
//! nothing.
//!
//! The change leaves `written_at` alone, the mark the stock's write gap counts from. It is
//! one write, not a sustained rate; a sale's write may wait for it by at most one gap.

use crate::format;
use saga::contract::collections;
use saga::domain::ItemName;
use saga::engine::records::{self, inventory_fields};
use saga::engine::retry::{Contention, until_committed};
use saga::gcp::store::{CommitError, DocPath, Precondition, Snapshot, Store, WriteSet};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// Longest reason a change may carry, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// A change to an item's stock level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Units that arrived.
    Add(u32),
    /// Units that went (written off, counted short); never more than are there.
    Remove(u32),
}

impl Change {
    /// The change to the level, signed.
    fn delta(self) -> i64 {
        match self {
            Change::Add(n) => i64::from(n),
            Change::Remove(n) => -i64::from(n),
        }
    }
}

/// Why a change was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Fewer units are there than a removal asks for.
    NotEnough {
        /// The level.
        level: i64,
        /// The units asked for.
        asked: u32,
    },
    /// The document's `quantity` is missing or not an integer: no step can sell it either.
    NoLevel,
    /// The level would not fit Firestore's 64-bit integer.
    TooLarge,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotEnough { level, asked } => {
                write!(f, "only {level} in stock, cannot remove {asked}")
            }
            Refusal::NoLevel => f.write_str(
                "its `quantity` is missing or not an integer; set it in the console while no order for it runs",
            ),
            Refusal::TooLarge => f.write_str("the level would not fit a 64-bit integer"),
        }
    }
}

/// The level `change` takes a stock at `level` (as read: `None` if it has none) to.
///
/// # Errors
/// When the change cannot be made: see [`Refusal`].
pub fn plan(level: Option<i64>, change: Change) -> Result<i64, Refusal> {
    let level = level.ok_or(Refusal::NoLevel)?;
    let to = level.checked_add(change.delta()).ok_or(Refusal::TooLarge)?;
    match change {
        Change::Remove(asked) if to < 0 => Err(Refusal::NotEnough { level, asked }),
        _ => Ok(to),
    }
}

/// `inventory/{item}/stock-changes/{id}`: the record of the change `id` of `item`'s stock.
pub fn record_path(item: &ItemName, id: Uuid) -> DocPath {
    DocPath::new([
        collections::INVENTORY,
        item.as_str(),
        collections::STOCK_CHANGES,
        &id.to_string(),
    ])
}

/// The record of a change made by hand ([`record_path`]); `at`, Firestore's time of the
/// commit, is set by the commit itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// The level it changed.
    pub from: i64,
    /// The level it left.
    pub to: i64,
    /// Why, as the person said.
    pub reason: Option<String>,
}

/// The field of a [`ChangeRecord`] that holds when it was made.
const AT: &str = "at";

/// The writes of change `id`, taking `stock` from `from` to `to`: the difference, as
/// Firestore's own increment of the level alone, only if the document is still as read;
/// and the change's record, only if there is none yet.
pub fn write(item: &ItemName, stock: &Snapshot, id: Uuid, record: &ChangeRecord) -> WriteSet {
    let mut writes = WriteSet::new();
    writes.increment(
        records::item(item),
        inventory_fields::QUANTITY,
        record.to - record.from,
        Some(Precondition::Unchanged(stock.update_time())),
    );
    writes.create(record_path(item, id), record).and_request_time(AT);
    writes
}

/// What became of the item's stock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// There is no `inventory/{item}`.
    NotFound,
    /// Read, nothing asked to change.
    Shown {
        /// The level, if it is an integer.
        quantity: Option<i64>,
    },
    /// Changed.
    Changed {
        /// The level it was changed from (as read in the round that committed).
        from: i64,
        /// The level it was changed to.
        to: i64,
    },
    /// Made before, by an earlier run with the same `--change-id`: nothing changed now.
    AlreadyMade {
        /// The level that change changed.
        from: i64,
        /// The level it left.
        to: i64,
    },
    /// Would be changed (a dry run).
    WouldChange {
        /// The level now.
        from: i64,
        /// The level it would be changed to.
        to: i64,
    },
    /// Not changed.
    Refused {
        /// The level, if it is an integer.
        quantity: Option<i64>,
        /// Why.
        why: String,
    },
}

/// What `stock` found and did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The item.
    pub item: String,
    /// What became of its stock.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The price of one unit, if it is an integer.
    pub price_per_unit: Option<i64>,
    /// When a sale or a return last wrote the level (what the write gap counts from).
    pub saga_last_wrote: Option<String>,
    /// The id of the change made (or made before): its record's, and what `--change-id`
    /// takes.
    pub change_id: Option<String>,
}

impl Report {
    /// Whether a person must look: the change was refused, or the stock has no level that
    /// a sale could be decided on.
    pub fn needs_a_person(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Refused { .. } | Outcome::Shown { quantity: None }
        )
    }

    /// The report of `outcome` for the item of `request`, whose document read `stock`.
    fn of(request: &Request, stock: Option<&Snapshot>, outcome: Outcome) -> Self {
        Report {
            item: request.item.to_string(),
            change_id: matches!(outcome, Outcome::Changed { .. } | Outcome::AlreadyMade { .. })
                .then(|| request.id.to_string()),
            outcome,
            price_per_unit: stock.and_then(|s| s.integer(inventory_fields::PRICE_PER_UNIT)),
            saga_last_wrote: stock
                .and_then(|s| s.time(inventory_fields::WRITTEN_AT))
                .and_then(|t| firestore::jiff::Timestamp::try_from(t).ok())
                .map(format::timestamp),
        }
    }
}

/// What to do to a stock.
#[derive(Clone, Debug)]
pub struct Request {
    /// The item.
    pub item: ItemName,
    /// The change, if any (none: show the stock).
    pub change: Option<Change>,
    /// Why, for the change's record.
    pub reason: Option<String>,
    /// The change's id: new for a new change, or that of a change to run again.
    pub id: Uuid,
    /// Say what the change would do, and do nothing.
    pub dry_run: bool,
}

/// Reads the stock `request` names and makes its change, if any (unless a dry run).
///
/// # Errors
/// When Firestore cannot be reached or refuses a call, or sales wrote the level in every
/// round. If a commit failed so, it may or may not have applied: the error says to run the
/// change again with its id, which makes it at most once.
pub async fn stock(store: &Store, request: &Request) -> anyhow::Result<Report> {
    stock_between(store, request, |_| async {}).await
}

/// [`stock`], awaiting `between(round)` after each round's read and before its commit: the
/// seam through which a test has a sale write the level in between.
///
/// # Errors
/// As [`stock`].
pub async fn stock_between<F, Fut>(store: &Store, request: &Request, mut between: F) -> anyhow::Result<Report>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = ()>,
{
    let (item, id) = (&request.item, request.id);
    // The change's record only when there is a change: looking reads the stock alone.
    let mut paths = vec![records::item(item)];
    if request.change.is_some() {
        paths.push(record_path(item, id));
    }
    until_committed(|round| {
        let (paths, pause) = (&paths, between(round));
        async move {
            let mut read = store.get_all(paths).await?.into_iter();
            let (stock, made) = (read.next().flatten(), read.next().flatten());
            let Some(stock) = stock else {
                return Ok(Some(Report::of(request, None, Outcome::NotFound)));
            };
            let report = |outcome| Some(Report::of(request, Some(&stock), outcome));
            if let Some(made) = made {
                let ChangeRecord { from, to, .. } = made.decode()?;
                return Ok(report(Outcome::AlreadyMade { from, to }));
            }
            let level = stock.integer(inventory_fields::QUANTITY);
            let Some(change) = request.change else {
                return Ok(report(Outcome::Shown { quantity: level }));
            };
            let to = match plan(level, change) {
                Ok(to) => to,
                Err(why) => {
                    return Ok(report(Outcome::Refused {
                        quantity: level,
                        why: why.to_string(),
                    }));
                }
            };
            // `plan` refuses a stock without a level.
            let from = level.unwrap_or_default();
            if request.dry_run {
                return Ok(report(Outcome::WouldChange { from, to }));
            }
            pause.await;
            let record = ChangeRecord {
                from,
                to,
                reason: request.reason.clone(),
            };
            match store.commit(write(item, &stock, id, &record)).await {
                Ok(_) => Ok(report(Outcome::Changed { from, to })),
                Err(CommitError::Conflict(_)) => Ok(None),
                Err(CommitError::Unavailable(e)) => Err(e.context(format!(
                    "the change of {item}'s stock may or may not have been made: run the same \
                     command again with `--change-id {id}`, which makes it only if it was not"
                ))),
            }
        }
    })
    .await
    .map_err(|e: anyhow::Error| {
        if e.is::<Contention>() {
            e.context("nothing was changed: sales wrote the level in every round; try again")
        } else {
            e
        }
    })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let item = &self.item;
        let signed = |from: i64, to: i64| format!("{:+}", to - from);
        match &self.outcome {
            Outcome::NotFound => {
                return writeln!(f, "{item}: no such item (inventory/{item} does not exist)");
            }
            Outcome::Shown { quantity: Some(q) } => writeln!(f, "{item}: {q} in stock")?,
            Outcome::Shown { quantity: None } => {
                writeln!(f, "{item}: no stock level (its `quantity` is not an integer)")?;
            }
            Outcome::Changed { from, to } => {
                writeln!(f, "{item}: {from} -> {to} ({})", signed(*from, *to))?;
            }
            Outcome::AlreadyMade { from, to } => writeln!(
                f,
                "{item}: change already made by an earlier run, nothing changed now: {from} -> {to} ({})",
                signed(*from, *to)
            )?,
            Outcome::WouldChange { from, to } => writeln!(
                f,
                "dry run, nothing changed: {item} would go from {from} to {to} ({})",
                signed(*from, *to)
            )?,
            Outcome::Refused { why, .. } => writeln!(f, "{item}: nothing changed: {why}")?,
        }
        let price = self
            .price_per_unit
            .map_or_else(|| "no integer price".to_owned(), |p| format!("{p} a unit"));
        match &self.saga_last_wrote {
            Some(at) => writeln!(f, "{price}; a sale or return last wrote the level at {at}")?,
            None => writeln!(f, "{price}; no sale or return has written the level yet")?,
        }
        if let Some(id) = &self.change_id {
            writeln!(f, "change id {id}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_change_is_planned_from_the_level_read_and_a_removal_never_goes_below_zero() {
        let cases: &[(Option<i64>, Change, Result<i64, Refusal>)] = &[
            (Some(10), Change::Add(5), Ok(15)),
            (Some(0), Change::Add(1), Ok(1)),
            (Some(10), Change::Remove(4), Ok(6)),
            (Some(10), Change::Remove(10), Ok(0)),
            (
                Some(10),
                Change::Remove(11),
                Err(Refusal::NotEnough { level: 10, asked: 11 }),
            ),
            (None, Change::Add(1), Err(Refusal::NoLevel)),
            (None, Change::Remove(1), Err(Refusal::NoLevel)),
            (Some(i64::MAX - 1), Change::Add(2), Err(Refusal::TooLarge)),
            (Some(i64::MAX - 1), Change::Add(1), Ok(i64::MAX)),
        ];
        for (level, change, want) in cases {
            assert_eq!(plan(*level, *change), *want, "{level:?} {change:?}");
        }
    }

    #[test]
    fn the_change_is_an_increment_of_the_level_alone_guarded_by_the_update_time_read_and_recorded_once() {
        let item = ItemName::parse("widget").unwrap();
        let read = Snapshot::of(&records::item(&item), &json!({"quantity": 10}), 7).unwrap();
        let id = Uuid::new_v4();
        let record = ChangeRecord {
            from: 10,
            to: 6,
            reason: Some("counted short".into()),
        };
        let mut writes = write(&item, &read, id, &record);
        let record_at = format!("inventory/widget/stock-changes/{id}");
        assert_eq!(
            writes.documents(),
            [
                (
                    "inventory/widget",
                    Some(Precondition::Unchanged(read.update_time()))
                ),
                (record_at.as_str(), Some(Precondition::Absent)),
            ]
        );
        let recorded = Snapshot::of(&record_path(&item, id), &json!({}), 7)
            .unwrap()
            .after(&writes.split_off_document(&record_path(&item, id)));
        assert_eq!(recorded.decode::<ChangeRecord>().unwrap(), record);
        assert!(recorded.time(AT).is_some(), "stamped with the commit's time");
        let after = read.after(&writes);
        assert_eq!(after.integer(inventory_fields::QUANTITY), Some(6));
        assert_eq!(
            records::stock_gap_start(&after),
            None,
            "the saga's write-gap mark does not move"
        );

        // A level typed in the console is a double, and stays one.
        let typed = Snapshot::of(&records::item(&item), &json!({"quantity": 10.0}), 7).unwrap();
        let record = ChangeRecord {
            from: 10,
            to: 13,
            reason: None,
        };
        let mut writes = write(&item, &typed, id, &record);
        let _ = writes.split_off_document(&record_path(&item, id));
        assert_eq!(typed.after(&writes).integer(inventory_fields::QUANTITY), Some(13));
    }

    #[test]
    fn the_report_says_the_level_and_what_changed() {
        let report = |outcome| Report {
            item: "widget".into(),
            outcome,
            price_per_unit: Some(10),
            saga_last_wrote: None,
            change_id: None,
        };
        let cases = [
            (
                report(Outcome::Shown { quantity: Some(9) }),
                "widget: 9 in stock\n10 a unit; no sale or return has written the level yet\n",
            ),
            (
                report(Outcome::Changed { from: 9, to: 59 }),
                "widget: 9 -> 59 (+50)\n10 a unit; no sale or return has written the level yet\n",
            ),
            (
                report(Outcome::WouldChange { from: 9, to: 2 }),
                "dry run, nothing changed: widget would go from 9 to 2 (-7)\n10 a unit; no sale or return has written the level yet\n",
            ),
            (
                report(Outcome::Refused {
                    quantity: Some(9),
                    why: Refusal::NotEnough { level: 9, asked: 10 }.to_string(),
                }),
                "widget: nothing changed: only 9 in stock, cannot remove 10\n10 a unit; no sale or return has written the level yet\n",
            ),
            (
                report(Outcome::AlreadyMade { from: 9, to: 59 }),
                "widget: change already made by an earlier run, nothing changed now: 9 -> 59 (+50)\n10 a unit; no sale or return has written the level yet\n",
            ),
            (
                report(Outcome::NotFound),
                "widget: no such item (inventory/widget does not exist)\n",
            ),
        ];
        for (report, text) in cases {
            assert_eq!(report.to_string(), text);
        }
    }
}
