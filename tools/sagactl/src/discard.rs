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

use crate::letters::{self, Letter, Selection};
use devstack::pubsub::Puller;
use serde::Serialize;
use std::fmt;
use std::time::{Duration, SystemTime};

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

/// One named letter and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The letter, as it was read before it went.
    pub letter: Letter,
    /// What became of it.
    #[serde(flatten)]
    pub action: Action,
}

/// What `discard` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Whether this was a dry run, which changed nothing.
    pub dry_run: bool,
    /// How many letters were read.
    pub read: usize,
    /// The most that would be.
    pub limit: usize,
    /// Each named letter that was read, in the order read.
    pub outcomes: Vec<Outcome>,
    /// Message ids asked for that were not among the letters read.
    pub not_found: Vec<String>,
}

impl Report {
    /// Whether an ack failed.
    pub fn failed(&self) -> bool {
        self.outcomes
            .iter()
            .any(|o| matches!(o.action, Action::Failed { .. }))
    }

    /// Whether a named letter was not found: already gone, or past `--limit`.
    pub fn left_for_people(&self) -> bool {
        !self.not_found.is_empty()
    }
}

/// Discards the letters of `project` that `options` name.
///
/// # Errors
/// When the letters cannot be read.
pub async fn discard(puller: &Puller, project: &str, options: &Options) -> anyhow::Result<Report> {
    let mut held = puller
        .hold(letters::subscription(), options.limit, options.wait)
        .await?;
    let now = SystemTime::now();
    let read: Vec<Letter> = held
        .messages()
        .iter()
        .map(|m| Letter::of(m, project, now))
        .collect();
    let (chosen, not_found) = letters::select(&read, &Selection::Ids(options.message_ids.clone()));
    let mut outcomes = Vec::with_capacity(chosen.len());
    for letter in chosen {
        let action = if options.dry_run {
            Action::WouldDiscard
        } else {
            match held.ack(&letter.message_id).await {
                Ok(true) => Action::Discarded,
                Ok(false) => Action::Failed {
                    why: "it was read but is no longer held".to_owned(),
                },
                Err(e) => Action::Failed {
                    why: format!("{e:#}"),
                },
            }
        };
        outcomes.push(Outcome {
            letter: letter.clone(),
            action,
        });
    }
    held.release().await;
    Ok(Report {
        dry_run: options.dry_run,
        read: read.len(),
        limit: options.limit,
        outcomes,
        not_found,
    })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |pick: fn(&Action) -> bool| self.outcomes.iter().filter(|o| pick(&o.action)).count();
        let done = if self.dry_run {
            format!(
                "dry run, nothing changed: {} would be discarded",
                count(|a| matches!(a, Action::WouldDiscard))
            )
        } else {
            format!("{} discarded", count(|a| matches!(a, Action::Discarded)))
        };
        writeln!(
            f,
            "{done}, {} failed, {} not found ({} {} read)",
            count(|a| matches!(a, Action::Failed { .. })),
            self.not_found.len(),
            self.read,
            if self.read == 1 { "letter" } else { "letters" }
        )?;
        if self.read >= self.limit {
            writeln!(
                f,
                "only the first {} letters were read (raise --limit)",
                self.limit
            )?;
        }
        for outcome in &self.outcomes {
            let letter = &outcome.letter;
            let uuid = letter.uuid.as_deref().unwrap_or("no readable uuid");
            let what = match &outcome.action {
                Action::Discarded => "discarded, taken off dead-letter-sub".to_owned(),
                Action::WouldDiscard => "would be discarded".to_owned(),
                Action::Failed { why } => format!("FAILED, left there: {why}"),
            };
            writeln!(
                f,
                "{} ({}, saga {uuid}): {what}",
                letter.message_id, letter.reason
            )?;
        }
        for id in &self.not_found {
            writeln!(f, "{id}: not found among the letters read")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
