//! Where `sagactl` connects, and the clients it uses there: the emulators when
//! `PUBSUB_EMULATOR_HOST` and `FIRESTORE_EMULATOR_HOST` are set, Google Cloud with
//! Application Default Credentials otherwise; the same rules, and the same clients, as the
//! services' own ([`saga::runtime::config`], [`saga::gcp`], [`devstack::pubsub`]).

use devstack::pubsub::Puller;
use saga::contract::{SUBSCRIPTIONS, Service, Topic};
use saga::gcp::Clients;
use saga::gcp::auth::PushAuth;
use saga::gcp::bus::Bus;
use saga::gcp::store::Store;
use saga::runtime::config::{Config, env};

/// The configuration `sagactl` connects with, for `project`, reading the emulator hosts
/// through `lookup` (the process environment, in the binary). Only the project and the two
/// emulator variables count: `sagactl` is no service, so nothing else of a service's
/// configuration applies. Set one emulator and not the other, and half of what `sagactl`
/// reads would come from another place than the rest: that is refused.
pub fn config(project: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
    let set = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
    if set(env::PUBSUB_EMULATOR_HOST).is_some() != set(env::FIRESTORE_EMULATOR_HOST).is_some() {
        return Err(format!(
            "set both {} and {} (the emulators), or neither (Google Cloud)",
            env::PUBSUB_EMULATOR_HOST,
            env::FIRESTORE_EMULATOR_HOST
        ));
    }
    // The janitor's configuration: the service whose work `sagactl` does by hand. Without
    // K_SERVICE and the push variables it checks no push tokens, which `sagactl` never gets.
    Config::from_lookup(Service::Janitor, |key| match key {
        env::PROJECT_ID => Some(project.to_owned()),
        env::PUBSUB_EMULATOR_HOST | env::FIRESTORE_EMULATOR_HOST => set(key),
        _ => None,
    })
    .map_err(|e| e.to_string())
}

/// Where `config` points, in words: for the first line of errors.
pub fn describe(config: &Config) -> String {
    match (&config.pubsub.emulator_endpoint, &config.firestore.emulator_host) {
        (Some(pubsub), Some(firestore)) => format!(
            "project {} on the emulators (Pub/Sub {pubsub}, Firestore {firestore})",
            config.project()
        ),
        _ => format!(
            "project {} on Google Cloud (Application Default Credentials)",
            config.project()
        ),
    }
}

/// Firestore.
pub async fn store(config: &Config) -> anyhow::Result<Store> {
    Store::connect(&config.firestore).await
}

/// A reader of pull subscriptions.
pub async fn puller(config: &Config) -> anyhow::Result<Puller> {
    Puller::connect_to(&config.pubsub).await
}

/// Publishers for every topic a dead letter can be sent back to ([`redrive_topics`]).
pub async fn bus(config: &Config) -> anyhow::Result<Bus> {
    Bus::connect_topics(&config.pubsub, &redrive_topics()).await
}

/// The janitor's clients: what the sweep works with.
pub async fn clients(config: &Config) -> anyhow::Result<Clients> {
    Clients::connect(
        Service::Janitor,
        &config.pubsub,
        &config.firestore,
        &PushAuth::Off,
    )
    .await
}

/// The topics of the subscriptions that dead-letter: the only places a dead letter comes
/// from, and so the only ones `redrive` publishes to.
pub fn redrive_topics() -> Vec<Topic> {
    let mut topics: Vec<Topic> = SUBSCRIPTIONS
        .iter()
        .filter(|s| s.dead_letters())
        .map(|s| s.topic)
        .collect();
    topics.dedup();
    topics
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emulators_are_used_when_both_are_named_and_google_cloud_when_neither_is() {
        // (the environment, the emulators used: Pub/Sub's endpoint and Firestore's host)
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            Result<(Option<&'a str>, Option<&'a str>), ()>,
        );
        let cases: &[Case] = &[
            (&[], Ok((None, None))),
            (
                &[
                    (env::PUBSUB_EMULATOR_HOST, "127.0.0.1:8085"),
                    (env::FIRESTORE_EMULATOR_HOST, "127.0.0.1:8086"),
                ],
                Ok((Some("http://127.0.0.1:8085"), Some("127.0.0.1:8086"))),
            ),
            (&[(env::PUBSUB_EMULATOR_HOST, "127.0.0.1:8085")], Err(())),
            (&[(env::FIRESTORE_EMULATOR_HOST, "127.0.0.1:8086")], Err(())),
            (
                &[
                    (env::PUBSUB_EMULATOR_HOST, " "),
                    (env::FIRESTORE_EMULATOR_HOST, ""),
                ],
                Ok((None, None)),
            ),
            // What would change a service's configuration does not change sagactl's.
            (
                &[("K_SERVICE", "janitor"), ("PUSH_AUTH", "nonsense"), ("PORT", "x")],
                Ok((None, None)),
            ),
        ];
        for (vars, expected) in cases {
            let lookup = |key: &str| vars.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned());
            let got = config("p", lookup).map(|c| {
                assert_eq!(c.project(), "p");
                (c.pubsub.emulator_endpoint, c.firestore.emulator_host)
            });
            let expected = expected.map(|(p, f)| (p.map(str::to_owned), f.map(str::to_owned)));
            assert_eq!(got.map_err(|_| ()), expected, "{vars:?}");
        }
    }

    #[test]
    fn a_project_id_with_a_slash_is_refused() {
        assert!(config("a/b", |_| None).is_err());
    }

    #[test]
    fn letters_are_only_sent_back_to_the_topics_of_subscriptions_that_dead_letter() {
        assert_eq!(
            redrive_topics(),
            [
                Topic::Frontend,
                Topic::OrderCreated,
                Topic::InventoryUpdated,
                Topic::Error
            ]
        );
    }
}
