//! Where a saga's time goes, hop by hop: for one run, extra pull subscriptions on the
//! topics between the steps (`frontend`, `order-created`, `inventory-updated`) see every
//! intermediate message with its publish time. The gap between two consecutive publish
//! times is one hop: push delivery (and queueing) plus the next step's work and publish.
//!
//! They exist only for the run they measure and are deleted after it: every subscription
//! is another copy of each message for the emulator to keep and deliver, which the
//! capacity runs should not pay for.

use anyhow::Context as _;
use devstack::pubsub::Puller;
use google_cloud_auth::credentials::anonymous::Builder as Anonymous;
use google_cloud_pubsub::client::SubscriptionAdmin;
use saga::contract::Topic;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// The topics tapped, in saga order.
pub const TAPPED: [Topic; 3] = [Topic::Frontend, Topic::OrderCreated, Topic::InventoryUpdated];

type Seen = Arc<Mutex<HashMap<String, SystemTime>>>;

/// Readers of the tap subscriptions.
#[derive(Debug)]
pub struct Taps {
    admin: SubscriptionAdmin,
    project: String,
    seen: Vec<(Topic, Seen)>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn name(topic: Topic) -> String {
    format!("bench-tap-{}", topic.name())
}

impl Taps {
    /// Creates the tap subscriptions in `project` and starts reading them.
    pub async fn start(endpoint: &str, project: &str) -> anyhow::Result<Self> {
        let admin = SubscriptionAdmin::builder()
            .with_endpoint(endpoint)
            .with_credentials(Anonymous::new().build())
            .build()
            .await
            .context("building the subscription admin client")?;
        let (stop, stopped) = watch::channel(false);
        let mut seen = Vec::new();
        let mut tasks = Vec::new();
        for topic in TAPPED {
            let subscription = name(topic);
            admin
                .create_subscription()
                .set_name(format!("projects/{project}/subscriptions/{subscription}"))
                .set_topic(topic.path(project))
                .send()
                .await
                .with_context(|| format!("creating {subscription}"))?;
            let puller = Puller::connect(endpoint, project).await?;
            let map: Seen = Arc::default();
            seen.push((topic, map.clone()));
            let stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                while !*stopped.borrow() {
                    let Ok(messages) = puller.pull(&subscription, 1000, Duration::from_millis(250)).await
                    else {
                        break;
                    };
                    let Ok(mut map) = map.lock() else { break };
                    for m in messages {
                        let uuid = m.json().get("uuid").and_then(|u| u.as_str()).map(str::to_owned);
                        if let (Some(uuid), Some(at)) = (uuid, m.publish_time) {
                            // The first publish is the hop's end; a republish is a retry.
                            map.entry(uuid).or_insert(at);
                        }
                    }
                }
                puller.close().await;
            }));
        }
        Ok(Taps {
            admin,
            project: project.to_owned(),
            seen,
            stop,
            tasks,
        })
    }

    /// Waits (at most `wait`) until every tap saw each of `uuids`, stops reading, deletes
    /// the subscriptions, and returns the publish time of each saga's message per topic.
    pub async fn finish(
        self,
        uuids: &[String],
        wait: Duration,
    ) -> HashMap<Topic, HashMap<String, SystemTime>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let all = self
                .seen
                .iter()
                .all(|(_, map)| map.lock().is_ok_and(|m| uuids.iter().all(|u| m.contains_key(u))));
            if all || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        for topic in TAPPED {
            let _ = self
                .admin
                .delete_subscription()
                .set_subscription(format!("projects/{}/subscriptions/{}", self.project, name(topic)))
                .send()
                .await;
        }
        self.seen
            .into_iter()
            .map(|(topic, map)| (topic, map.lock().map(|m| m.clone()).unwrap_or_default()))
            .collect()
    }
}
