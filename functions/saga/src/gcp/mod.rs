//! The Google Cloud clients a service uses, each built once at start-up: Firestore
//! ([`store`], with group commit), Pub/Sub publishing ([`bus`]), and the check of push
//! tokens ([`auth`]); [`Clients`] holds them for every request.

pub mod auth;
pub mod bus;
pub mod store;

use crate::contract::Service;
#[cfg(feature = "test-hooks")]
use crate::faults::Faults;
use auth::{PushAuth, PushVerifier};
use bus::{Bus, PubSubTarget};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use store::{FirestoreTarget, Store};

/// The clients a service uses, built once at start-up and shared by every request.
#[derive(Clone, Debug)]
pub struct Clients {
    /// Which service this is.
    pub service: Service,
    /// The project.
    pub project: String,
    /// Firestore.
    pub store: Store,
    /// Publishers for the service's topics.
    pub bus: Bus,
    /// Test hooks (inert unless a test sets them).
    #[cfg(feature = "test-hooks")]
    pub faults: Faults,
    /// Checks that pushes come from Pub/Sub; `None` when verification is off.
    pub push_verifier: Option<Arc<PushVerifier>>,
    /// Which instance of the service these clients serve, unique in the process: what one
    /// instance keeps in memory (an item's batch, see `engine::batch`) is its own, as on
    /// Cloud Run, also when a test runs several instances in one process.
    pub instance: u64,
}

/// How many [`Clients`] this process built, which numbers each one's instance.
static INSTANCES: AtomicU64 = AtomicU64::new(0);

impl Clients {
    /// Connects to Pub/Sub and Firestore as the targets say, and prepares the push-token
    /// check of `push_auth`.
    pub async fn connect(
        service: Service,
        pubsub: &PubSubTarget,
        firestore: &FirestoreTarget,
        push_auth: &PushAuth,
    ) -> anyhow::Result<Self> {
        let push_verifier = PushVerifier::from_config(push_auth).map(Arc::new);
        match (push_auth, service.takes_pushes()) {
            (_, false) => {}
            (PushAuth::Off, true) => tracing::warn!(
                push_auth = "off",
                "push token verification is OFF: any caller can drive this service. Fine for the local \
                 emulators, which send no tokens; on Cloud Run set PUSH_AUTH, PUSH_AUDIENCE and \
                 PUSH_SERVICE_ACCOUNT"
            ),
            (PushAuth::CloudRunIam { expected, .. }, true) => tracing::info!(
                push_auth = "cloud-run-iam",
                audience = %expected.audience,
                service_account = %expected.service_account,
                "push tokens: Cloud Run checks their signature and run.invoker; this worker takes only \
                 tokens Cloud Run stripped, and checks their claims"
            ),
            (PushAuth::Signature { expected, .. }, true) => tracing::info!(
                push_auth = "signature",
                audience = %expected.audience,
                service_account = %expected.service_account,
                "push tokens: this worker verifies their signature against Google's keys, and their claims"
            ),
        }
        let bus = Bus::connect(pubsub, service).await?;
        #[cfg(feature = "test-hooks")]
        let bus = bus.with_faults(Faults::of(&pubsub.project, service));
        Ok(Clients {
            push_verifier,
            service,
            project: pubsub.project.clone(),
            store: Store::connect(firestore).await?,
            #[cfg(feature = "test-hooks")]
            faults: bus.faults().clone(),
            bus,
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
        })
    }
}
