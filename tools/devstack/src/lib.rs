//! Tools for running the saga on Google's emulators: start or reuse the emulators,
//! provision the topology of [`saga::contract`], seed the original's data, pull outcomes.
//! The `devstack` binary runs the whole system with them; the end-to-end tests use them to
//! build an isolated stack per test. [`gcp_like`] delivers pushes as Google Cloud would,
//! through models of Pub/Sub push and Cloud Run's front end, instead of the emulator's push.

pub mod emulators;
pub mod gcp_like;
pub mod held;
pub mod process;
pub mod pubsub;
pub mod seed;

use saga::contract::Service;

/// Each service's router, by service.
pub fn router_of(service: Service) -> saga::runtime::service::RouterFn {
    match service {
        Service::Frontend => frontend::router,
        Service::Orders => orders::router,
        Service::Inventory => inventory::router,
        Service::Payments => payments::router,
        Service::Janitor => janitor::router,
    }
}
