//! The floor: the saga's topology with handlers that do nothing but re-publish, so that
//! the same load measures what the emulators themselves allow. Capacity is then reported
//! as a share of it.
//!
//! It runs inside the bench process, in a project of its own: `POST /order` publishes the
//! body with a fresh uuid to `frontend`; the pushes of `frontend`, `order-created` and
//! `inventory-updated` re-publish their data unchanged to the next topic and answer 200
//! once Pub/Sub accepted it; every other push (status view, errors, dead letters) is
//! answered 200 at once. Each hop publishes with its own connection and the services'
//! own publisher settings (`saga::gcp::bus::Bus`), as the real services do.
//!
//! Its pushes are delivered as the saga's are (`--push`, see [`crate::delivery`]): under
//! GCP-like delivery each worker service of the contract gets its own Cloud Run front end,
//! all of them in front of the floor's one listener, so that the floor and the saga are
//! compared under one delivery. The handlers read no token: the front ends check them, and
//! what a worker then does with a checked token (decoding claims, no signature) is part of
//! the saga's cost, not of the floor's.

use crate::delivery::{self, Push};
use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use devstack::gcp_like::GcpLike;
use saga::contract::{PUSH_POLICY, Service, Topic, push_path};
use saga::gcp::bus::PubSubTarget;
use saga::gcp::bus::{Bus, Outgoing};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone)]
struct Hops {
    /// A publisher per hop, keyed by the topic it publishes to.
    buses: Arc<Vec<(Topic, Bus)>>,
    /// How long each publish took, for the report.
    publishes: Arc<Mutex<Vec<Duration>>>,
}

impl Hops {
    async fn publish(&self, topic: Topic, data: String) -> anyhow::Result<()> {
        let bus = self
            .buses
            .iter()
            .find(|(t, _)| *t == topic)
            .map(|(_, b)| b)
            .ok_or_else(|| anyhow::anyhow!("no publisher for {topic}"))?;
        let started = Instant::now();
        bus.publish(&Outgoing::new(topic, data)).await?;
        if let Ok(mut publishes) = self.publishes.lock() {
            publishes.push(started.elapsed());
        }
        Ok(())
    }
}

/// The running floor.
#[derive(Debug)]
pub struct Floor {
    /// Its project on the emulators.
    pub project: String,
    addr: std::net::SocketAddr,
    publishes: Arc<Mutex<Vec<Duration>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The GCP-like delivery, unless the emulator pushes.
    pub gcp: Option<GcpLike>,
}

impl Floor {
    /// Starts the floor on a free loopback port and provisions its project, its pushes
    /// delivered as `push` says (`seed`: see [`delivery::settings`]).
    pub async fn start(pubsub_endpoint: &str, push: Push, seed: u64) -> anyhow::Result<Self> {
        let project = crate::stack::fresh_project("floor");
        let target = PubSubTarget {
            project: project.clone(),
            emulator_endpoint: Some(pubsub_endpoint.to_owned()),
        };
        let mut buses = Vec::new();
        for (service, topic) in [
            (Service::Frontend, Topic::Frontend),
            (Service::Orders, Topic::OrderCreated),
            (Service::Inventory, Topic::InventoryUpdated),
            (Service::Payments, Topic::PaymentCreated),
        ] {
            buses.push((topic, Bus::connect(&target, service).await?));
        }
        let publishes = Arc::new(Mutex::new(Vec::new()));
        let hops = Hops {
            buses: Arc::new(buses),
            publishes: publishes.clone(),
        };
        let router = Router::new()
            .route("/order", post(order))
            .route(
                push_path(Topic::Frontend),
                post(|s: State<Hops>, b: Bytes| hop(s, b, Topic::OrderCreated)),
            )
            .route(
                push_path(Topic::OrderCreated),
                post(|s: State<Hops>, b: Bytes| hop(s, b, Topic::InventoryUpdated)),
            )
            .route(
                push_path(Topic::InventoryUpdated),
                post(|s: State<Hops>, b: Bytes| hop(s, b, Topic::PaymentCreated)),
            )
            .fallback(|| async { StatusCode::OK })
            .with_state(hops);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        let worker_url = |_: Service| format!("http://{addr}");
        let gcp = match push {
            Push::Gcp => Some(
                GcpLike::start(
                    pubsub_endpoint,
                    &project,
                    |s| vec![worker_url(s)],
                    &PUSH_POLICY,
                    delivery::settings(seed),
                )
                .await
                .context("starting the floor's GCP-like delivery")?,
            ),
            Push::Emulator => {
                devstack::pubsub::provision(pubsub_endpoint, &project, worker_url, &PUSH_POLICY).await?;
                None
            }
        };
        Ok(Floor {
            project,
            addr,
            publishes,
            stop: Some(stop),
            gcp,
        })
    }

    /// `http://…/order`.
    pub fn order_url(&self) -> String {
        format!("http://{}/order", self.addr)
    }

    /// The publish times measured since the last call.
    pub fn take_publishes(&self) -> Vec<Duration> {
        self.publishes
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }

    /// Stops delivering, then serving.
    pub async fn stop(mut self) {
        if let Some(gcp) = self.gcp.take() {
            gcp.stop().await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn order(State(hops): State<Hops>, body: Bytes) -> axum::response::Response {
    let Ok(serde_json::Value::Object(mut order)) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let uuid = uuid::Uuid::new_v4().to_string();
    order.insert("uuid".to_owned(), uuid.clone().into());
    match hops
        .publish(Topic::Frontend, serde_json::Value::Object(order).to_string())
        .await
    {
        Ok(()) => (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({ "uuid": uuid })),
        )
            .into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// Re-publishes a pushed message's data to `next`.
async fn hop(State(hops): State<Hops>, body: Bytes, next: Topic) -> StatusCode {
    // A push that cannot be read would be just as unreadable when redelivered.
    let Ok(push) = saga::wire::envelope::parse_envelope(&body) else {
        return StatusCode::OK;
    };
    let Ok(data) = String::from_utf8(push.data) else {
        return StatusCode::OK;
    };
    match hops.publish(next, data).await {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}
