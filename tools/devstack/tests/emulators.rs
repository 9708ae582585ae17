//! The emulators as the devstack starts them: the Pub/Sub emulator's log keeps its start-up
//! lines and the errors of the requests it serves, but not the header lines it writes by
//! default for every REST call (`devstack::emulators::PUBSUB_LOGGING` says why).

// A failed unwrap in a test is a failed assertion.
#![allow(clippy::unwrap_used)]

use devstack::emulators::{Emulators, Options};
use std::time::{Duration, Instant};

#[tokio::test]
async fn the_pubsub_emulators_log_keeps_request_errors_but_not_the_headers_of_every_rest_call() {
    let dir = std::env::temp_dir().join(format!("saga-devstack-emulator-log-{}", std::process::id()));
    let options = Options {
        pubsub_port: 0,
        firestore_port: 0,
        log_dir: dir.clone(),
        progress: false,
    };
    // Emulators of its own: the log read below is theirs alone.
    let mut emulators = tokio::task::spawn_blocking(move || Emulators::start(&options))
        .await
        .unwrap()
        .unwrap_or_else(|e| {
            panic!("this test starts emulators of its own, even with PUBSUB_EMULATOR_HOST set: {e:#}")
        });

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://{}/v1/projects/t-emulator-log", emulators.pubsub);
    // Two REST calls the emulator serves (by default it writes two lines for each of their
    // headers), and one it refuses, whose error must still be logged.
    let created = http.put(format!("{base}/topics/log-topic")).send().await.unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    let listed = http.get(format!("{base}/topics")).send().await.unwrap();
    assert!(listed.status().is_success(), "{}", listed.status());
    let refused = http.put(format!("{base}/topics/t1")).send().await.unwrap();
    assert_eq!(refused.status(), 400);

    // gcloud relays the emulator's output into the log as it comes.
    // Named by its port, so that two devstacks sharing the directory keep their own.
    let port = emulators.pubsub.rsplit(':').next().unwrap();
    let log = dir.join(format!("pubsub-emulator-{port}.log"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Invalid [topics] name") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    emulators.stop();
    std::fs::remove_dir_all(&dir).unwrap();

    assert!(
        text.contains("Server started"),
        "the start-up lines stay:\n{text}"
    );
    assert!(
        text.contains("Invalid [topics] name"),
        "the refused request's error is logged:\n{text}"
    );
    assert!(
        !text.contains("Forwarding key"),
        "the REST adapter's header lines are left out:\n{text}"
    );
}
