//! `sagactl discard`: takes dead letters off the dead-letter subscription, by message id,
//! once a person has read them and decided that nothing should be done with them: a
//! forgery (`unmatched_record`), a letter published there by hand, a payload whose producer
//! has since been fixed.
//!
//! Taking a letter off `dead-letter-sub` changes no saga: the janitor was pushed its own
//! copy (on `dead-letter-janitor-sub`) and acted on that one. What is lost is the letter
//! itself, and with it `sagactl redrive`; so a discard names each letter (there is no
//! `--all`), reads before it acks, and says what it would do on a dry run. The ack goes
//! with the same unary pull that read the letter, so it takes the letter read and nothing
//! else (`gcloud pubsub subscriptions pull --auto-ack` acks whatever it happens to pull).

use crate::acting::{self, count};
use crate::letters::Selection;
use devstack::pubsub::Puller;
use serde::Serialize;
use std::time::Duration;

/// Which letters to discard, and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// The letters, by message id (as `dead-letters` lists them).
    pub message_ids: Vec<String>,
    /// Say what would be done, and do nothing.
    pub dry_run: bool,
    /// Read at most this many letters.
    pub limit: usize,
    /// Stop reading when none came for this long.
    pub wait: Duration,
}

/// What became of one named letter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Acked: Pub/Sub dropped it.
    Discarded,
    /// Would be acked (a dry run).
    WouldDiscard,
    /// Left on the subscription: the ack failed.
    Failed {
        /// Why.
        why: String,
    },
}

impl acting::Action for Action {
    fn failed(&self) -> bool {
        matches!(self, Action::Failed { .. })
    }

    fn refused(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        match self {
            Action::Discarded => "discarded, taken off dead-letter-sub".to_owned(),
            Action::WouldDiscard => "would be discarded".to_owned(),
            Action::Failed { why } => format!("FAILED, left there: {why}"),
        }
    }

    fn summary(outcomes: &[acting::Outcome<Self>], dry_run: bool) -> String {
        let done = if dry_run {
            format!(
                "dry run, nothing changed: {} would be discarded",
                count(outcomes, |a| matches!(a, Action::WouldDiscard))
            )
        } else {
            format!(
                "{} discarded",
                count(outcomes, |a| matches!(a, Action::Discarded))
            )
        };
        format!(
            "{done}, {} failed",
            count(outcomes, |a| matches!(a, Action::Failed { .. }))
        )
    }
}

/// One named letter and what became of it.
pub type Outcome = acting::Outcome<Action>;

/// What `discard` did.
pub type Report = acting::Report<Action>;

/// Discards the letters of `project` that `options` name.
///
/// # Errors
/// When the letters cannot be read.
pub async fn discard(puller: &Puller, project: &str, options: &Options) -> anyhow::Result<Report> {
    let options = acting::Options {
        selection: Selection::Ids(options.message_ids.clone()),
        dry_run: options.dry_run,
        limit: options.limit,
        wait: options.wait,
    };
    let dry_run = options.dry_run;
    acting::act_on(puller, project, &options, async |held, _, letter| {
        if dry_run {
            return Action::WouldDiscard;
        }
        match held.ack(&letter.message_id).await {
            Ok(true) => Action::Discarded,
            Ok(false) => Action::Failed {
                why: "it was read but is no longer held".to_owned(),
            },
            Err(e) => Action::Failed {
                why: format!("{e:#}"),
            },
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::letters::Letter;

    /// A report of one letter among 3 read, with `--limit 3` on a dry run and 100 otherwise.
    fn report(action: Action, not_found: &[&str], dry_run: bool) -> Report {
        Report {
            dry_run,
            read: 3,
            limit: if dry_run { 3 } else { 100 },
            outcomes: vec![Outcome {
                letter: Letter::sample("12"),
                action,
            }],
            not_found: not_found.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn a_discard_fails_on_a_failed_ack_and_needs_a_person_when_a_letter_was_not_found() {
        // (report, failed, left for people)
        let cases = [
            (report(Action::Discarded, &[], false), false, false),
            (report(Action::WouldDiscard, &[], true), false, false),
            (report(Action::Discarded, &["9"], false), false, true),
            (
                report(Action::Failed { why: "x".into() }, &[], false),
                true,
                false,
            ),
        ];
        for (report, failed, left) in cases {
            assert_eq!(
                (report.failed(), report.left_for_people()),
                (failed, left),
                "{report:?}"
            );
        }
    }

    #[test]
    fn the_report_says_what_went_what_would_and_what_was_not_found() {
        let cases = [
            (
                report(Action::Discarded, &[], false),
                "1 discarded, 0 failed, 0 not found (3 letters read)\n\
                 12 (retries_exhausted, saga no readable uuid): discarded, taken off dead-letter-sub\n",
            ),
            (
                report(Action::WouldDiscard, &["9"], true),
                "dry run, nothing changed: 1 would be discarded, 0 failed, 1 not found (3 letters read)\n\
                 only the first 3 letters were read (raise --limit)\n\
                 12 (retries_exhausted, saga no readable uuid): would be discarded\n\
                 9: not found among the letters read\n",
            ),
        ];
        for (report, text) in cases {
            assert_eq!(report.to_string(), text);
        }
    }
}
