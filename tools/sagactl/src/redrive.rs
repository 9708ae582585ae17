//! `sagactl redrive`: sends dead letters back to the topic they came from (see
//! [`letters::redrive_topic`]), then takes them off the dead-letter subscription. A letter
//! whose origin cannot be told is refused and left where it is.
//!
//! Safe to repeat: every step is idempotent, so a letter whose saga has moved on since (the
//! janitor ended it, or an earlier redrive went through but its ack was lost) changes
//! nothing. Each letter is acked only once its copy is published, so a failure leaves it on
//! the subscription.

use crate::letters::{self, Letter, Selection, redriven_attributes};
use devstack::pubsub::Puller;
use saga::contract::Topic;
use saga::gcp::bus::{Bus, Outgoing};
use serde::Serialize;
use std::fmt;
use std::time::{Duration, SystemTime};

/// What to redrive, and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// Which letters.
    pub selection: Selection,
    /// Say what would be done, and do nothing.
    pub dry_run: bool,
    /// Read at most this many letters.
    pub limit: usize,
    /// Stop reading when none came for this long.
    pub wait: Duration,
}

/// What became of one selected letter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Published again, and taken off the dead-letter subscription.
    Redriven {
        /// The topic it went to.
        to: Topic,
        /// The id Pub/Sub gave the new copy.
        new_message_id: String,
    },
    /// Would be published again (a dry run).
    WouldRedrive {
        /// The topic it would go to.
        to: Topic,
    },
    /// Left on the subscription: where it came from cannot be told.
    Refused {
        /// Why.
        why: String,
    },
    /// Left on the subscription: the publish failed.
    Failed {
        /// Why.
        why: String,
    },
}

/// One selected letter and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The letter.
    pub letter: Letter,
    /// What became of it.
    #[serde(flatten)]
    pub action: Action,
}

/// What `redrive` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Whether this was a dry run, which changed nothing.
    pub dry_run: bool,
    /// How many letters were read.
    pub read: usize,
    /// The most that would be.
    pub limit: usize,
    /// Each selected letter, in the order read.
    pub outcomes: Vec<Outcome>,
    /// Message ids asked for that were not among the letters read.
    pub not_found: Vec<String>,
}

impl Report {
    /// Whether a publish failed.
    pub fn failed(&self) -> bool {
        self.outcomes
            .iter()
            .any(|o| matches!(o.action, Action::Failed { .. }))
    }

    /// Whether a selected letter was left on the subscription for a person to look at:
    /// refused, or not found.
    pub fn left_for_people(&self) -> bool {
        !self.not_found.is_empty()
            || self
                .outcomes
                .iter()
                .any(|o| matches!(o.action, Action::Refused { .. }))
    }
}

/// Redrives the letters of `project` that `options` select, publishing with `bus`.
pub async fn redrive(puller: &Puller, bus: &Bus, project: &str, options: &Options) -> anyhow::Result<Report> {
    let mut held = puller
        .hold(letters::subscription(), options.limit, options.wait)
        .await?;
    let now = SystemTime::now();
    let read: Vec<Letter> = held
        .messages()
        .iter()
        .map(|m| Letter::of(m, project, now))
        .collect();
    let (chosen, not_found) = letters::select(&read, &options.selection);
    let mut outcomes = Vec::with_capacity(chosen.len());
    for letter in chosen {
        let action = match (letter.redrive_to, &letter.refused) {
            (None, why) => Action::Refused {
                why: why.clone().unwrap_or_default(),
            },
            (Some(to), _) if options.dry_run => Action::WouldRedrive { to },
            (Some(to), _) => {
                let received = held.messages().iter().find(|m| m.message_id == letter.message_id);
                // `redrive_topic` refused every payload that is not UTF-8.
                let data = received.and_then(|m| String::from_utf8(m.data.clone()).ok());
                match (received, data) {
                    (Some(received), Some(data)) => {
                        let copy = Outgoing {
                            topic: to,
                            data,
                            attributes: redriven_attributes(&received.attributes),
                        };
                        match bus.publish(&copy).await {
                            Ok(new_message_id) => match held.ack(&letter.message_id).await {
                                Ok(_) => Action::Redriven { to, new_message_id },
                                // Sent again, and still there: the next redrive sends it
                                // once more, which every step takes as a duplicate.
                                Err(e) => Action::Failed {
                                    why: format!(
                                        "published again to {to} as {new_message_id}, but not taken off dead-letter-sub: {e:#}"
                                    ),
                                },
                            },
                            Err(e) => Action::Failed {
                                why: format!("{e:#}"),
                            },
                        }
                    }
                    _ => Action::Failed {
                        why: "the letter's payload is no longer held".to_owned(),
                    },
                }
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
        let moved = if self.dry_run {
            format!(
                "dry run, nothing changed: {} would be redriven",
                count(|a| matches!(a, Action::WouldRedrive { .. }))
            )
        } else {
            format!("{} redriven", count(|a| matches!(a, Action::Redriven { .. })))
        };
        writeln!(
            f,
            "{moved}, {} refused, {} failed, {} not found ({} {} read)",
            count(|a| matches!(a, Action::Refused { .. })),
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
                Action::Redriven { to, new_message_id } => {
                    format!("redriven to {to} as {new_message_id}, and taken off")
                }
                Action::WouldRedrive { to } => format!("would be redriven to {to}"),
                Action::Refused { why } => format!("refused, left there: {why}"),
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

    #[test]
    fn a_redrive_needs_a_person_when_a_letter_was_refused_or_not_found() {
        let report = |action: Action, not_found: Vec<String>| Report {
            dry_run: false,
            read: 1,
            limit: 100,
            outcomes: vec![Outcome {
                letter: Letter::sample("1"),
                action,
            }],
            not_found,
        };
        let redriven = Action::Redriven {
            to: Topic::OrderCreated,
            new_message_id: "7".into(),
        };
        let cases = [
            (report(redriven.clone(), vec![]), false, false),
            (report(redriven, vec!["9".into()]), false, true),
            (report(Action::Refused { why: "x".into() }, vec![]), false, true),
            (report(Action::Failed { why: "x".into() }, vec![]), true, false),
            (
                report(Action::WouldRedrive { to: Topic::Frontend }, vec![]),
                false,
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
}
