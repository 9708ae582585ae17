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

/// A port free right now, for an emulator to listen on. Below Linux's ephemeral range
/// (32768 and up), where a port the kernel hands out would be taken, between this check and
/// the emulator's bind, by any of the outgoing connections that the tests running alongside
/// open; and apart from the range the devstack's services take (`free_port_range`).
pub fn free_port() -> u16 {
    loop {
        let port: u16 = rand::random_range(10_000..20_000);
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}

/// A project id of this test's own.
pub fn project(name: &str) -> String {
    format!("t-{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}
