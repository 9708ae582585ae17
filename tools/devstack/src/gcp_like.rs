//! GCP-like push delivery for a stack on the emulators: the chain a deployment has, run
//! locally with the models of `gcp_models`.
//!
//! ```text
//! emulator subscription ──pull──▶ Deliverer ──POST + OIDC token──▶ Cloud Run front end ──▶ worker
//! (no endpoint; retry and         (many in flight,   (minted by      (verifies, checks the
//!  dead-letter policies kept)      duplicates, …)     the Issuer)     invoker, strips the
//!                                                                      signature)
//! ```
//!
//! The workers run as on Cloud Run behind invoker IAM (`PUSH_AUTH=cloud-run-iam`, with
//! `K_SERVICE` set), each behind its own front end, which admits only the push account. The
//! caller gives each worker's instances: the end-to-end tests and the bench run
//! [`INSTANCES`] of each, as Cloud Run may; the devstack runs one process that stands for
//! all of them (and takes all their requests), which hides what differs between instances.
//! What this models and what it does not is said in the docs of
//! `gcp_models::pubsub_push` and `gcp_models::cloud_run`.

use crate::pubsub::{Pusher, provision_for};
use anyhow::Context as _;
use gcp_models::cloud_run::{self, FrontEnd};
use gcp_models::oidc::Issuer;
use gcp_models::pubsub_push::{Deliverer, Route, Settings};
use jsonwebtoken::jwk::JwkSet;
use saga::contract::{Delivery, PushPolicy, SUBSCRIPTIONS, Service};
use saga::gcp::auth::{PushAuth, PushIdentity};
use saga::runtime::config::env;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The push service account of the local deployment.
pub const PUSH_ACCOUNT: &str = "saga-push@saga-local.iam.gserviceaccount.com";

/// The service account Cloud Scheduler calls the janitor's sweep as, locally.
pub const SCHEDULER_ACCOUNT: &str = "saga-sweep@saga-local.iam.gserviceaccount.com";

/// Terraform's `max_instance_count` for each worker.
pub const INSTANCES: usize = 3;

/// Terraform's default per-service limit: [`INSTANCES`] × 80 requests
/// (`max_instance_request_concurrency`).
pub const MAX_CONCURRENT_REQUESTS: usize = INSTANCES * 80;

/// What each worker's Cloud Run service takes at once, and how long a request that finds
/// every instance busy waits before Cloud Run refuses it with 429.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Requests in flight per service, shared evenly over its instances: each takes this
    /// divided by their number, rounded down, and at least one.
    pub requests: usize,
    /// How long a request waits for a free slot.
    pub pending_timeout: std::time::Duration,
}

impl Capacity {
    /// Terraform's default deployment: [`MAX_CONCURRENT_REQUESTS`], and Cloud Run's 10 s.
    pub const DEPLOYED: Capacity = Capacity {
        requests: MAX_CONCURRENT_REQUESTS,
        pending_timeout: cloud_run::PENDING_TIMEOUT,
    };
}

/// The audience of `service`'s push tokens, as Terraform names it (a custom audience).
pub fn audience(project: &str, service: Service) -> String {
    format!("//run.googleapis.com/projects/{project}/locations/local/services/{service}")
}

/// What a worker checks its push tokens against.
pub fn identity(project: &str, service: Service) -> PushIdentity {
    PushIdentity {
        audience: audience(project, service),
        service_account: PUSH_ACCOUNT.to_owned(),
    }
}

/// The push auth of a worker behind its front end, for workers run in-process.
pub fn push_auth(project: &str, service: Service) -> PushAuth {
    PushAuth::CloudRunIam {
        expected: identity(project, service),
        k_service: Some(service.name().to_owned()),
    }
}

/// The environment of a worker process behind its front end, as Terraform sets it on Cloud
/// Run (and `K_SERVICE`, which Cloud Run sets).
pub fn worker_env(project: &str, service: Service) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        (env::K_SERVICE, service.name().to_owned()),
        (env::PUSH_AUTH, "cloud-run-iam".to_owned()),
        (env::PUSH_AUDIENCE, audience(project, service)),
        (env::PUSH_SERVICE_ACCOUNT, PUSH_ACCOUNT.to_owned()),
    ];
    if service == Service::Janitor {
        vars.push((env::SWEEP_SERVICE_ACCOUNT, SCHEDULER_ACCOUNT.to_owned()));
    }
    vars
}

/// Who may invoke `service` through its front end: the push account, and for the janitor
/// Cloud Scheduler's, as Terraform grants `run.invoker`.
fn invokers(service: Service) -> Vec<String> {
    let mut invokers = vec![PUSH_ACCOUNT.to_owned()];
    if service == Service::Janitor {
        invokers.push(SCHEDULER_ACCOUNT.to_owned());
    }
    invokers
}

/// The running front ends and deliverer of one stack.
#[derive(Debug)]
pub struct GcpLike {
    project: String,
    issuer: Arc<Issuer>,
    front_ends: BTreeMap<Service, FrontEnd>,
    deliverer: Deliverer,
    settings: Settings,
}

impl GcpLike {
    /// Provisions `project`'s topology on the emulator at `pubsub_endpoint` for pulled
    /// delivery with `policy`, puts a front end before each worker's instances
    /// (`instances(service)`, their URLs), and starts delivering with `settings`.
    ///
    /// The front end shares the service's [`MAX_CONCURRENT_REQUESTS`] over the instances
    /// given: [`INSTANCES`] of them take 80 each, as on Cloud Run; one process standing for
    /// all of them takes all.
    pub async fn start(
        pubsub_endpoint: &str,
        project: &str,
        instances: impl Fn(Service) -> Vec<String>,
        policy: &PushPolicy,
        settings: Settings,
    ) -> anyhow::Result<Self> {
        Self::start_with(
            pubsub_endpoint,
            project,
            instances,
            policy,
            settings,
            Capacity::DEPLOYED,
        )
        .await
    }

    /// [`GcpLike::start`], with services that take `capacity` instead of the deployment's:
    /// less than the push window lets Pub/Sub send, as a deployment under more load than it
    /// was sized for.
    pub async fn start_with(
        pubsub_endpoint: &str,
        project: &str,
        instances: impl Fn(Service) -> Vec<String>,
        policy: &PushPolicy,
        settings: Settings,
        capacity: Capacity,
    ) -> anyhow::Result<Self> {
        let first = |service| instances(service).into_iter().next().unwrap_or_default();
        provision_for(pubsub_endpoint, project, &first, policy, Pusher::Pulled).await?;
        let issuer = Arc::new(Issuer::generate());
        let mut front_ends = BTreeMap::new();
        for service in Service::ALL.into_iter().filter(|s| s.takes_pushes()) {
            let instances = instances(service);
            let requests_per_instance = (capacity.requests / instances.len().max(1)).max(1);
            let front_end = FrontEnd::start(cloud_run::Settings {
                instances,
                audiences: vec![audience(project, service)],
                invokers: invokers(service),
                jwks: JwkSet {
                    keys: vec![issuer.jwk()],
                },
                request_timeout: policy.ack_deadline,
                requests_per_instance,
                pending_timeout: capacity.pending_timeout,
            })
            .await
            .with_context(|| format!("starting {service}'s front end"))?;
            front_ends.insert(service, front_end);
        }
        let routes = SUBSCRIPTIONS
            .iter()
            .filter_map(|sub| match sub.delivery {
                Delivery::Push { service, path, .. } => Some(Route {
                    subscription: sub.path(project),
                    endpoint: format!("{}{path}", front_ends[&service].url()),
                    audience: audience(project, service),
                    push_account: PUSH_ACCOUNT.to_owned(),
                }),
                Delivery::Pull => None,
            })
            .collect();
        let deliverer = Deliverer::start(pubsub_endpoint, issuer.clone(), routes, &settings).await?;
        Ok(GcpLike {
            project: project.to_owned(),
            issuer,
            front_ends,
            deliverer,
            settings,
        })
    }

    /// The front end of `service` (a worker), which the deliverer pushes to.
    pub fn front_end(&self, service: Service) -> Option<&FrontEnd> {
        self.front_ends.get(&service)
    }

    /// An `Authorization` header that `service`'s front end admits: a push token as Pub/Sub
    /// would mint it, for a test that plays Pub/Sub itself.
    pub fn authorization(&self, service: Service) -> String {
        format!(
            "Bearer {}",
            self.issuer
                .push_token(&audience(&self.project, service), PUSH_ACCOUNT)
        )
    }

    /// An `Authorization` header for the janitor's sweep as Cloud Scheduler sends it: a
    /// token of the scheduler's account for the janitor's audience.
    pub fn sweep_authorization(&self) -> String {
        (self.sweep_authorizer())()
    }

    /// Mints [`GcpLike::sweep_authorization`] anew on each call, as Cloud Scheduler mints
    /// a token per call: one kept would expire after the issuer's token lifetime.
    pub fn sweep_authorizer(&self) -> impl Fn() -> String + Send + Sync + 'static {
        let issuer = self.issuer.clone();
        let audience = audience(&self.project, Service::Janitor);
        move || format!("Bearer {}", issuer.push_token(&audience, SCHEDULER_ACCOUNT))
    }

    /// The deliverer.
    pub fn deliverer(&self) -> &Deliverer {
        &self.deliverer
    }

    /// How it delivers (the seed, to replay a run).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Stops delivering; the front ends stop when dropped.
    pub async fn stop(self) {
        self.deliverer.stop().await;
    }
}
