//! `sagactl redrive`: sends dead letters back to the topic they came from (see
//! [`letters::redrive_topic`]), then takes them off the dead-letter subscription. A letter
//! whose origin cannot be told is refused and left where it is.
//!
//! Safe to repeat: every step is idempotent, so a letter whose saga has moved on since (the
//! janitor ended it, or an earlier redrive went through but its ack was lost) changes
//! nothing. Each letter is acked only once its copy is published, so a failure leaves it on
//! the subscription.

use crate::acting::{self, count};
use crate::letters::redriven_attributes;
use devstack::pubsub::Puller;
use saga::contract::Topic;
use saga::gcp::bus::{Bus, Outgoing};
use serde::Serialize;

pub use crate::acting::Options;

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
    /// Left on the subscription: the publish failed (or the copy went out, but the letter
    /// could not be taken off).
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
        matches!(self, Action::Refused { .. })
    }

    fn describe(&self) -> String {
        match self {
            Action::Redriven { to, new_message_id } => {
                format!("redriven to {to} as {new_message_id}, and taken off")
            }
            Action::WouldRedrive { to } => format!("would be redriven to {to}"),
            Action::Refused { why } => format!("refused, left there: {why}"),
            Action::Failed { why } => format!("FAILED, left there: {why}"),
        }
    }

    fn summary(outcomes: &[acting::Outcome<Self>], dry_run: bool) -> String {
        let moved = if dry_run {
            format!(
                "dry run, nothing changed: {} would be redriven",
                count(outcomes, |a| matches!(a, Action::WouldRedrive { .. }))
            )
        } else {
            format!(
                "{} redriven",
                count(outcomes, |a| matches!(a, Action::Redriven { .. }))
            )
        };
        format!(
            "{moved}, {} refused, {} failed",
            count(outcomes, |a| matches!(a, Action::Refused { .. })),
            count(outcomes, |a| matches!(a, Action::Failed { .. }))
        )
    }
}

/// One selected letter and what became of it.
pub type Outcome = acting::Outcome<Action>;

/// What `redrive` did.
pub type Report = acting::Report<Action>;

/// Redrives the letters of `project` that `options` select, publishing with `bus`.
///
/// # Errors
/// When the letters cannot be read.
pub async fn redrive(puller: &Puller, bus: &Bus, project: &str, options: &Options) -> anyhow::Result<Report> {
    acting::act_on(puller, project, options, async |held, received, letter| {
        let to = match (letter.redrive_to, &letter.refused) {
            (None, why) => {
                return Action::Refused {
                    why: why.clone().unwrap_or_default(),
                };
            }
            (Some(to), _) if options.dry_run => return Action::WouldRedrive { to },
            (Some(to), _) => to,
        };
        // `redrive_topic` refused every payload that is not UTF-8.
        let Ok(data) = String::from_utf8(received.data.clone()) else {
            return Action::Failed {
                why: "the letter's payload is not UTF-8".to_owned(),
            };
        };
        let copy = Outgoing {
            topic: to,
            data,
            attributes: redriven_attributes(&received.attributes),
        };
        match bus.publish(&copy).await {
            Ok(new_message_id) => match held.ack(&letter.message_id).await {
                Ok(true) => Action::Redriven { to, new_message_id },
                // Sent again, and still there: the next redrive sends it once more, which
                // every step takes as a duplicate.
                Ok(false) => Action::Failed {
                    why: format!(
                        "published again to {to} as {new_message_id}, but no longer held, so not taken off dead-letter-sub"
                    ),
                },
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
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::letters::Letter;

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
