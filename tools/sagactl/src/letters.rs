//! `sagactl dead-letters`: what waits on the pull subscription of the dead-letter topic,
//! read without taking it (each letter is put back at once), and where each came from:
//! which subscription, why, which saga, and the topic `redrive` would send it back to (or
//! why it would not).
//!
//! A letter comes from one of two places ([`dead_letter_attributes::origin`], which the
//! janitor reads the same way): Pub/Sub gave up delivering it (it names the subscription in
//! `CloudPubSubDeadLetterSourceSubscription`), or a service copied it there because it can
//! never be processed (`saga_dead_letter_*`: the reason, the service, the subscription).

use crate::format;
use devstack::pubsub::{Puller, Received};
use saga::contract::{Delivery, SUBSCRIPTIONS, Subscription, Topic};
use saga::domain::Reason;
use saga::runtime::push_route::dead_letter_attributes::{self as attr, origin};
use saga::wire::message::SagaMessage;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

/// The pull subscription on the dead-letter topic: where letters wait for people.
pub fn subscription() -> &'static str {
    SUBSCRIPTIONS
        .iter()
        .find(|s| s.topic == Topic::DeadLetter && s.delivery == Delivery::Pull)
        .map_or("dead-letter-sub", |s| s.name)
}

/// The attribute Pub/Sub adds to a letter with the project of the subscription that gave up.
const PUBSUB_SOURCE_PROJECT: &str = "CloudPubSubDeadLetterSourceSubscriptionProject";

/// How to read the letters.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// At most this many.
    pub limit: usize,
    /// Stop when none came for this long.
    pub wait: Duration,
}

/// Why a letter cannot be sent back where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its attributes name no subscription: it was not read from one (a service's copy of
    /// a request that was no push at all), or it was published here by hand.
    NoSource,
    /// It names a subscription the saga does not have.
    UnknownSubscription(String),
    /// It names a subscription that never dead-letters, so it cannot have come from there.
    DoesNotDeadLetter(String),
    /// It came from another project's subscription.
    OtherProject(String),
    /// It says a service refused it that the subscription it names does not deliver to.
    Inconsistent {
        /// The service it names.
        service: String,
        /// The subscription it names.
        subscription: String,
    },
    /// Its payload is not UTF-8 text, which no step can ever read.
    NotText,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoSource => f.write_str("it does not say which subscription it came from"),
            Refusal::UnknownSubscription(name) => {
                write!(f, "it names `{name}`, which is not a subscription of the saga")
            }
            Refusal::DoesNotDeadLetter(name) => {
                write!(
                    f,
                    "it names `{name}`, which never dead-letters, so it cannot come from there"
                )
            }
            Refusal::OtherProject(project) => write!(f, "it came from project `{project}`, not this one"),
            Refusal::Inconsistent {
                service,
                subscription,
            } => write!(
                f,
                "it says {service} refused it, but `{subscription}` does not deliver to {service}"
            ),
            Refusal::NotText => f.write_str(
                "its payload is not UTF-8 text (stored as base64), which no step can read: it would only \
                 be dead-lettered again",
            ),
        }
    }
}

/// The topic a letter with `attributes` and `data`, read in `project`, goes back to: that of
/// the subscription it came from. Only subscriptions that dead-letter count, and a letter
/// that says which service refused it must name a subscription of that service.
pub fn redrive_topic(
    attributes: &BTreeMap<String, String>,
    data: &[u8],
    project: &str,
) -> Result<Topic, Refusal> {
    let origin = origin(attributes);
    let name = origin
        .subscription
        .filter(|n| !n.is_empty())
        .ok_or(Refusal::NoSource)?;
    let named_project = match name.strip_prefix("projects/") {
        Some(rest) => rest.split('/').next(),
        None => attributes.get(PUBSUB_SOURCE_PROJECT).map(String::as_str),
    };
    if let Some(other) = named_project.filter(|p| *p != project) {
        return Err(Refusal::OtherProject(other.to_owned()));
    }
    let subscription =
        Subscription::find(name).ok_or_else(|| Refusal::UnknownSubscription(name.to_owned()))?;
    let Delivery::Push {
        service,
        dead_letter: true,
        ..
    } = subscription.delivery
    else {
        return Err(Refusal::DoesNotDeadLetter(name.to_owned()));
    };
    if origin.poison.is_some()
        && let Some(named) = attributes.get(attr::SERVICE)
        && named != service.name()
    {
        return Err(Refusal::Inconsistent {
            service: named.clone(),
            subscription: subscription.name.to_owned(),
        });
    }
    if attributes.get(attr::ENCODING).is_some() || std::str::from_utf8(data).is_err() {
        return Err(Refusal::NotText);
    }
    Ok(subscription.topic)
}

/// The attributes a letter goes back with: its own, without those that say it was
/// dead-lettered (the janitor would take it for poison if dead-lettered again) and those
/// Pub/Sub reserves.
pub fn redriven_attributes(attributes: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    attributes
        .iter()
        .filter(|(key, _)| {
            !(key.starts_with("saga_dead_letter_")
                || key.starts_with("CloudPubSubDeadLetter")
                || key.starts_with("goog"))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Which of the letters read a command acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// These, by message id.
    Ids(Vec<String>),
    /// Every letter read.
    All,
}

/// The letters `selection` picks out of `letters`, and the ids it names that are not there.
pub fn select<'a>(letters: &'a [Letter], selection: &Selection) -> (Vec<&'a Letter>, Vec<String>) {
    match selection {
        Selection::All => (letters.iter().collect(), Vec::new()),
        Selection::Ids(ids) => {
            let chosen = letters.iter().filter(|l| ids.contains(&l.message_id)).collect();
            let mut missing: Vec<String> = Vec::new();
            for id in ids {
                if !letters.iter().any(|l| &l.message_id == id) && !missing.contains(id) {
                    missing.push(id.clone());
                }
            }
            (chosen, missing)
        }
    }
}

/// One letter, as `dead-letters` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Letter {
    /// Its Pub/Sub message id on the dead-letter topic.
    pub message_id: String,
    /// Why it is here: the poison code a service gave, or `retries_exhausted` when Pub/Sub
    /// gave up on it.
    pub reason: String,
    /// What a service said was wrong with it.
    pub detail: Option<String>,
    /// How many of its own attributes the service's copy left out (Pub/Sub's limit of 100
    /// left no room for them and the copy's); a redrive sends it without them.
    pub attributes_dropped: Option<u64>,
    /// The service that refused it.
    pub service: Option<String>,
    /// The subscription it came from, as its attributes name it.
    pub source_subscription: Option<String>,
    /// Its saga, if its payload is JSON with a readable `uuid`.
    pub uuid: Option<String>,
    /// When it was put on the dead-letter topic.
    pub dead_lettered: Option<String>,
    /// How long ago, in seconds.
    pub age_seconds: Option<u64>,
    /// The payload's size.
    pub bytes: usize,
    /// Where `redrive` would send it.
    pub redrive_to: Option<Topic>,
    /// Why `redrive` would not.
    pub refused: Option<String>,
}

impl Letter {
    /// A letter with the message id `id`, from inventory's subscription, for tests.
    #[cfg(test)]
    pub(crate) fn sample(id: &str) -> Letter {
        Letter {
            message_id: id.to_owned(),
            reason: "retries_exhausted".to_owned(),
            detail: None,
            attributes_dropped: None,
            service: None,
            source_subscription: Some("order-created-sub".to_owned()),
            uuid: None,
            dead_lettered: None,
            age_seconds: None,
            bytes: 2,
            redrive_to: Some(Topic::OrderCreated),
            refused: None,
        }
    }

    /// What `received`, read in `project` at `now`, is.
    pub fn of(received: &Received, project: &str, now: SystemTime) -> Self {
        let attributes = &received.attributes;
        let origin = origin(attributes);
        let reason = match origin.poison {
            Some(code) => code.to_owned(),
            None if origin.subscription.is_some() => Reason::RetriesExhausted.as_str().to_owned(),
            None => "unknown".to_owned(),
        };
        let target = redrive_topic(attributes, &received.data, project);
        let encoded = attributes.contains_key(attr::ENCODING);
        Letter {
            message_id: received.message_id.clone(),
            reason,
            detail: attributes.get(attr::DETAIL).cloned(),
            attributes_dropped: attributes.get(attr::DROPPED).and_then(|n| n.parse().ok()),
            service: attributes.get(attr::SERVICE).cloned(),
            source_subscription: origin
                .subscription
                .filter(|name| !name.is_empty())
                .map(str::to_owned),
            uuid: (!encoded)
                .then(|| SagaMessage::uuid_of(&received.data))
                .flatten()
                .map(|u| u.to_string()),
            dead_lettered: received
                .publish_time
                .map(|t| format::timestamp(firestore::jiff::Timestamp::try_from(t).unwrap_or_default())),
            age_seconds: received
                .publish_time
                .map(|t| now.duration_since(t).unwrap_or_default().as_secs()),
            bytes: received.data.len(),
            redrive_to: target.as_ref().ok().copied(),
            refused: target.err().map(|r| r.to_string()),
        }
    }
}

/// What `dead-letters` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The subscription read.
    pub subscription: &'static str,
    /// The most that were read.
    pub limit: usize,
    /// The letters, in the order Pub/Sub gave them.
    pub letters: Vec<Letter>,
}

impl Report {
    /// Whether there may be more letters than were read.
    pub fn limit_reached(&self) -> bool {
        self.letters.len() >= self.limit
    }
}

/// Lists the letters on [`subscription`] as `options` say, and leaves them there.
pub async fn list(puller: &Puller, project: &str, options: Options) -> anyhow::Result<Report> {
    let held = puller.hold(subscription(), options.limit, options.wait).await?;
    let now = SystemTime::now();
    let letters = held
        .messages()
        .iter()
        .map(|m| Letter::of(m, project, now))
        .collect();
    held.release().await;
    Ok(Report {
        subscription: subscription(),
        limit: options.limit,
        letters,
    })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.letters.len();
        writeln!(
            f,
            "{n} dead letter{} on {} (left there)",
            if n == 1 { "" } else { "s" },
            self.subscription
        )?;
        if self.limit_reached() {
            writeln!(
                f,
                "only the first {} were read: there may be more (raise --limit)",
                self.limit
            )?;
        }
        for letter in &self.letters {
            write_letter(f, letter)?;
        }
        Ok(())
    }
}

/// One letter, in a few lines.
pub(crate) fn write_letter(f: &mut fmt::Formatter<'_>, letter: &Letter) -> fmt::Result {
    let age = letter
        .age_seconds
        .map_or_else(|| "?".to_owned(), |s| format::human(Duration::from_secs(s)));
    writeln!(
        f,
        "\n{}  {}, {age} ago, {} bytes",
        letter.message_id, letter.reason, letter.bytes
    )?;
    let source = letter.source_subscription.as_deref().unwrap_or("(not named)");
    let service = letter
        .service
        .as_deref()
        .map(|s| format!(", refused by {s}"))
        .unwrap_or_default();
    writeln!(f, "  from    {source}{service}")?;
    writeln!(
        f,
        "  saga    {}",
        letter.uuid.as_deref().unwrap_or("(no readable uuid)")
    )?;
    if let Some(detail) = &letter.detail {
        writeln!(f, "  detail  {detail}")?;
    }
    if let Some(n) = letter.attributes_dropped {
        writeln!(
            f,
            "  note    its copy left out {n} of its attributes (Pub/Sub's limit of 100); a redrive sends it without them"
        )?;
    }
    match (&letter.redrive_to, &letter.refused) {
        (Some(topic), _) => writeln!(f, "  redrive to {topic}"),
        (None, Some(why)) => writeln!(f, "  cannot be redriven: {why}"),
        (None, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBSUB: &str = attr::PUBSUB_SOURCE_SUBSCRIPTION;

    fn attributes(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// A letter: what it is, its attributes, its payload.
    type Case = (&'static str, Vec<(&'static str, &'static str)>, &'static [u8]);

    const JSON: &[u8] = br#"{"uuid":"x"}"#;

    #[test]
    fn a_selection_picks_the_letters_it_names_and_reports_those_it_cannot_find() {
        let read = [Letter::sample("1"), Letter::sample("2"), Letter::sample("3")];
        let ids = |ids: &[&str]| Selection::Ids(ids.iter().map(|s| (*s).to_owned()).collect());
        // (selection, the ids picked, the ids not found)
        let cases: Vec<(Selection, Vec<&str>, Vec<&str>)> = vec![
            (Selection::All, vec!["1", "2", "3"], vec![]),
            (ids(&["2"]), vec!["2"], vec![]),
            (ids(&["3", "1"]), vec!["1", "3"], vec![]),
            (ids(&["2", "9"]), vec!["2"], vec!["9"]),
            (ids(&["9", "8", "9"]), vec![], vec!["9", "8"]),
        ];
        for (selection, picked, missing) in cases {
            let (chosen, not_found) = select(&read, &selection);
            let chosen: Vec<&str> = chosen.iter().map(|l| l.message_id.as_str()).collect();
            assert_eq!(
                (chosen, not_found),
                (
                    picked,
                    missing.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()
                ),
                "{selection:?}"
            );
        }
        assert!(select(&[], &Selection::All).0.is_empty());
    }

    #[test]
    fn a_letter_goes_back_to_the_topic_of_the_subscription_it_came_from() {
        let cases: Vec<(Case, Topic)> = vec![
            (
                (
                    "Pub/Sub gave up on inventory",
                    vec![(PUBSUB, "order-created-sub")],
                    JSON,
                ),
                Topic::OrderCreated,
            ),
            (
                (
                    "Pub/Sub gave up on the janitor's compensation",
                    vec![(PUBSUB, "error-sub"), (PUBSUB_SOURCE_PROJECT, "p")],
                    JSON,
                ),
                Topic::Error,
            ),
            (
                (
                    "a service's copy names its subscription in full",
                    vec![
                        (attr::REASON, "missing_field"),
                        (attr::SERVICE, "orders"),
                        (attr::SUBSCRIPTION, "projects/p/subscriptions/frontend-sub"),
                    ],
                    JSON,
                ),
                Topic::Frontend,
            ),
        ];
        for ((what, pairs, data), expected) in cases {
            assert_eq!(
                redrive_topic(&attributes(&pairs), data, "p"),
                Ok(expected),
                "{what}"
            );
        }
    }

    #[test]
    fn a_letter_that_names_no_subscription_that_dead_letters_is_refused() {
        let cases: Vec<(Case, Refusal)> = vec![
            (
                (
                    "a request that was no push names no subscription",
                    vec![
                        (attr::REASON, "bad_envelope"),
                        (attr::SERVICE, "orders"),
                        (attr::SUBSCRIPTION, ""),
                    ],
                    JSON,
                ),
                Refusal::NoSource,
            ),
            (
                ("published here by hand", vec![("origin", "someone")], JSON),
                Refusal::NoSource,
            ),
            (
                (
                    "not the saga's subscription",
                    vec![(PUBSUB, "elsewhere-sub")],
                    JSON,
                ),
                Refusal::UnknownSubscription("elsewhere-sub".into()),
            ),
            (
                (
                    "a pull subscription never dead-letters",
                    vec![(PUBSUB, "payment-created-sub")],
                    JSON,
                ),
                Refusal::DoesNotDeadLetter("payment-created-sub".into()),
            ),
            (
                (
                    "nor does the janitor's reader of this very topic",
                    vec![(PUBSUB, "dead-letter-janitor-sub")],
                    JSON,
                ),
                Refusal::DoesNotDeadLetter("dead-letter-janitor-sub".into()),
            ),
        ];
        for ((what, pairs, data), expected) in cases {
            assert_eq!(
                redrive_topic(&attributes(&pairs), data, "p"),
                Err(expected),
                "{what}"
            );
        }
    }

    #[test]
    fn a_letter_from_elsewhere_or_that_contradicts_itself_or_no_step_can_read_is_refused() {
        let cases: Vec<(Case, Refusal)> = vec![
            (
                (
                    "another project's subscription, by its full name",
                    vec![
                        (attr::REASON, "too_large"),
                        (attr::SUBSCRIPTION, "projects/q/subscriptions/frontend-sub"),
                    ],
                    JSON,
                ),
                Refusal::OtherProject("q".into()),
            ),
            (
                (
                    "another project's subscription, by Pub/Sub's attribute",
                    vec![(PUBSUB, "frontend-sub"), (PUBSUB_SOURCE_PROJECT, "q")],
                    JSON,
                ),
                Refusal::OtherProject("q".into()),
            ),
            (
                (
                    "a service that the subscription does not deliver to",
                    vec![
                        (attr::REASON, "missing_field"),
                        (attr::SERVICE, "payments"),
                        (attr::SUBSCRIPTION, "frontend-sub"),
                    ],
                    JSON,
                ),
                Refusal::Inconsistent {
                    service: "payments".into(),
                    subscription: "frontend-sub".into(),
                },
            ),
            (
                (
                    "a payload that was not UTF-8, stored as base64",
                    vec![
                        (attr::REASON, "malformed_json"),
                        (attr::SERVICE, "orders"),
                        (attr::SUBSCRIPTION, "frontend-sub"),
                        (attr::ENCODING, "base64"),
                    ],
                    b"/w==",
                ),
                Refusal::NotText,
            ),
            (
                (
                    "raw bytes that are not UTF-8",
                    vec![(PUBSUB, "frontend-sub")],
                    b"\xff\xfe",
                ),
                Refusal::NotText,
            ),
        ];
        for ((what, pairs, data), expected) in cases {
            assert_eq!(
                redrive_topic(&attributes(&pairs), data, "p"),
                Err(expected),
                "{what}"
            );
        }
    }

    #[test]
    fn a_redriven_letter_keeps_its_own_attributes_and_loses_those_of_its_dead_lettering() {
        let kept = redriven_attributes(&attributes(&[
            ("traceparent", "00-abc-def-01"),
            ("origin", "test"),
            (attr::REASON, "missing_field"),
            (attr::DETAIL, "no uuid"),
            (attr::SUBSCRIPTION, "frontend-sub"),
            (PUBSUB, "frontend-sub"),
            (PUBSUB_SOURCE_PROJECT, "p"),
            ("CloudPubSubDeadLetterSourceDeliveryCount", "5"),
            ("googclient_x", "y"),
        ]));
        assert_eq!(
            kept,
            attributes(&[("origin", "test"), ("traceparent", "00-abc-def-01")])
        );
    }

    #[test]
    fn a_letter_tells_why_it_is_here_and_which_saga_it_is_about() {
        let uuid = saga::domain::SagaId::new().to_string();
        let published = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let now = published + Duration::from_secs(90);
        let received = |pairs: &[(&str, &str)], data: &[u8]| Received {
            message_id: "42".into(),
            data: data.to_vec(),
            attributes: attributes(pairs),
            publish_time: Some(published),
        };
        let body = format!(r#"{{"uuid":"{uuid}","item":"widget"}}"#);

        let gave_up = Letter::of(
            &received(&[(PUBSUB, "order-created-sub")], body.as_bytes()),
            "p",
            now,
        );
        assert_eq!(gave_up.reason, "retries_exhausted");
        assert_eq!(gave_up.uuid.as_deref(), Some(uuid.as_str()));
        assert_eq!(gave_up.age_seconds, Some(90));
        assert_eq!(gave_up.dead_lettered.as_deref(), Some("1970-01-01T00:16:40.000Z"));
        assert_eq!(gave_up.redrive_to, Some(Topic::OrderCreated));
        assert_eq!(gave_up.refused, None);

        let poison = Letter::of(
            &received(
                &[
                    (attr::REASON, "bad_envelope"),
                    (attr::SERVICE, "orders"),
                    (attr::DETAIL, "not a Pub/Sub push envelope"),
                    // A service that could not read the envelope names no subscription.
                    (attr::SUBSCRIPTION, ""),
                ],
                b"not json",
            ),
            "p",
            now,
        );
        assert_eq!(poison.reason, "bad_envelope");
        assert_eq!(poison.attributes_dropped, None);
        assert_eq!(poison.service.as_deref(), Some("orders"));
        assert_eq!(poison.source_subscription, None, "an empty name is no name");
        assert_eq!(poison.uuid, None);
        assert_eq!(poison.redrive_to, None);
        assert!(
            poison
                .refused
                .is_some_and(|why| why.contains("which subscription"))
        );

        let by_hand = Letter::of(&received(&[], b"{}"), "p", now);
        assert_eq!(by_hand.reason, "unknown");

        let cut = Letter::of(
            &received(
                &[(attr::REASON, "missing_field"), (attr::DROPPED, "57")],
                body.as_bytes(),
            ),
            "p",
            now,
        );
        assert_eq!(cut.attributes_dropped, Some(57));
        let text = format!("{}", LetterText(&cut));
        assert!(text.contains("left out 57 of its attributes"), "{text}");
    }

    /// A letter as `dead-letters` writes it.
    struct LetterText<'a>(&'a Letter);

    impl fmt::Display for LetterText<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_letter(f, self.0)
        }
    }
}
