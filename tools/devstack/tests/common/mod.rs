//! What the devstack's process tests share: the emulators of this test binary, free ports,
//! and a project id of their own for each test, so that runs on one machine do not meet.

use devstack::emulators::{Emulators, Options};
use std::sync::OnceLock;

static EMULATORS: OnceLock<Emulators> = OnceLock::new();

/// Emulators for this test binary, started once on free ports (or those the environment
/// names), stopped when it exits.
pub fn emulators() -> &'static Emulators {
    EMULATORS.get_or_init(|| {
        let options = Options {
            pubsub_port: 0,
            firestore_port: 0,
            log_dir: std::env::temp_dir().join(format!("saga-devstack-tests-{}", std::process::id())),
            progress: false,
        };
        Emulators::reuse_or_start(&options)
            .unwrap_or_else(|e| panic!("these tests need the Pub/Sub and Firestore emulators: {e:#}"))
    })
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .expect("a free port")
        .local_addr()
        .expect("a bound port")
        .port()
}

/// A project id of this test's own.
pub fn project(name: &str) -> String {
    format!("t-{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}
