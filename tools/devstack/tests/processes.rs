//! The services as real processes (`devstack serve SERVICE`), as Cloud Run runs them: their
//! JSON logs tie a saga together across all five, and SIGTERM stops them cleanly.

// A failed unwrap in a test is a failed assertion.
#![allow(clippy::unwrap_used)]

mod common;

use common::{emulators, free_port, project};
use devstack::process::{Child, Output, Probe, STOP_DEADLINE, Spec};
use devstack::pubsub::Puller;
use saga::contract::{PUSH_POLICY, Service};
use saga::gcp::store::FirestoreTarget;
use saga::gcp::store::Store;
use saga::runtime::config::env;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// A service process and the lines it printed.
struct Process {
    service: Service,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    port: u16,
}

fn spawn(service: Service, project: &str, port: u16, pubsub: &str, firestore: &str) -> Process {
    let mut child = Spec::new(env!("CARGO_BIN_EXE_devstack"))
        .args(["serve", service.name()])
        .env(env::PORT, port.to_string())
        .env(env::PROJECT_ID, project)
        .env(env::PUBSUB_EMULATOR_HOST, pubsub)
        .env(env::FIRESTORE_EMULATOR_HOST, firestore)
        .env(env::LOG_FORMAT, "json")
        .env(env::RUST_LOG, "info")
        .stdout(Output::Piped)
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stdout = tokio::process::ChildStdout::from_std(child.take_stdout().unwrap()).unwrap();
    let sink = lines.clone();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    Process {
        service,
        child,
        lines,
        port,
    }
}

async fn wait_healthy(p: &Process) {
    let probe = Probe::new(format!(
        "http://127.0.0.1:{}{}",
        p.port,
        saga::runtime::server::HEALTH_PATH
    ))
    .unwrap()
    .every(Duration::from_millis(50))
    .timeout(Duration::from_secs(10));
    p.child
        .wait_healthy(&probe)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", p.service));
}

async fn seed(project: &str, firestore: &str) {
    let store = Store::connect(&FirestoreTarget {
        project: project.to_owned(),
        emulator_host: Some(firestore.to_owned()),
    })
    .await
    .unwrap();
    devstack::seed::seed(&store, &devstack::seed::seed_documents())
        .await
        .unwrap();
}

#[tokio::test]
async fn json_logs_of_a_saga_carry_its_uuid_and_the_clients_trace_in_every_service() {
    let emulators = tokio::task::spawn_blocking(emulators).await.unwrap();
    let project = project("json-logs");
    let ports: HashMap<Service, u16> = Service::ALL.iter().map(|s| (*s, free_port())).collect();
    devstack::pubsub::provision(
        &emulators.pubsub_endpoint(),
        &project,
        |s| format!("http://127.0.0.1:{}", ports[&s]),
        &PUSH_POLICY,
    )
    .await
    .unwrap();
    seed(&project, &emulators.firestore).await;
    let processes: Vec<Process> = Service::ALL
        .iter()
        .map(|s| spawn(*s, &project, ports[s], &emulators.pubsub, &emulators.firestore))
        .collect();
    for p in &processes {
        wait_healthy(p).await;
    }
    let http = reqwest::Client::new();

    // A failing order, so that all five services take part (the janitor compensates).
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let answer: Value = http
        .post(format!("http://127.0.0.1:{}/order", ports[&Service::Frontend]))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&json!({"item":"wotsit","quantity":2,"user":"jill","payment-error":"null"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let uuid = answer["uuid"].as_str().unwrap().to_owned();
    assert_eq!(
        answer["trace_id"], trace,
        "the answer names the trace to search the logs by"
    );
    let puller = Puller::connect(&emulators.pubsub_endpoint(), &project)
        .await
        .unwrap();
    let compensated = puller
        .pull("compensated-sub", 1, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(compensated[0].json()["uuid"], uuid.as_str());
    assert_eq!(
        compensated[0].attributes["traceparent"].split('-').nth(1),
        Some(trace),
        "messages carry the trace"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    // SIGTERM, as Cloud Run stops a container; a service still running at the deadline
    // would be killed, and fail the assertion.
    let statuses = futures::future::join_all(processes.iter().map(|p| p.child.stop(STOP_DEADLINE))).await;
    for (p, status) in processes.iter().zip(statuses) {
        let status = status.unwrap();
        assert!(status.success(), "{} exited with {status}", p.service);
    }

    let expected_trace = format!("projects/{project}/traces/{trace}");
    for p in &processes {
        let lines = p.lines.lock().unwrap();
        assert!(!lines.is_empty(), "{} logged nothing", p.service);
        let mut saga_lines = 0;
        for line in lines.iter() {
            let entry: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", p.service));
            assert!(
                entry["severity"].is_string(),
                "{}: no severity: {line}",
                p.service
            );
            assert_eq!(entry["service"], p.service.name(), "{line}");
            let has_trace = entry.get("logging.googleapis.com/trace").is_some();
            let has_uuid = entry["uuid"] == uuid.as_str();
            if has_trace || has_uuid {
                assert!(has_uuid, "{}: a saga line without the uuid: {line}", p.service);
                assert_eq!(
                    entry["logging.googleapis.com/trace"],
                    expected_trace.as_str(),
                    "{line}"
                );
                let span = entry["logging.googleapis.com/spanId"]
                    .as_str()
                    .unwrap_or_default();
                assert_eq!(span.len(), 16, "{line}");
                saga_lines += 1;
            }
        }
        assert!(
            saga_lines > 0,
            "{} logged no line about the saga: {lines:?}",
            p.service
        );
    }
}

#[tokio::test]
async fn sigterm_during_an_in_flight_push_answers_503_and_exits_0() {
    let emulators = tokio::task::spawn_blocking(emulators).await.unwrap();
    let project = project("sigterm");
    seed(&project, &emulators.firestore).await;
    // A Pub/Sub that accepts connections and never answers, so the push hangs in its
    // publish until the shutdown cuts it off.
    let blackhole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let blackhole_addr = blackhole.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = blackhole.accept().await {
            held.push(socket);
        }
    });
    let port = free_port();
    let orders = spawn(
        Service::Orders,
        &project,
        port,
        &blackhole_addr,
        &emulators.firestore,
    );
    wait_healthy(&orders).await;
    let http = reqwest::Client::new();

    let uuid = uuid::Uuid::new_v4().to_string();
    let message = json!({"item":"widget","quantity":1,"user":"jack","uuid": uuid}).to_string();
    let body = saga::wire::envelope::envelope(
        "projects/p/subscriptions/frontend-sub",
        "m1",
        message.as_bytes(),
        &std::collections::BTreeMap::new(),
    );
    let push = tokio::spawn({
        let http = http.clone();
        async move {
            http.post(format!("http://127.0.0.1:{port}/push/frontend"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!push.is_finished(), "the push is in flight");
    let signalled = tokio::time::Instant::now();
    orders.child.terminate().unwrap();

    let response = tokio::time::timeout(Duration::from_secs(10), push)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 503, "cut off, so that Pub/Sub redelivers");
    let status = tokio::time::timeout(Duration::from_secs(10), orders.child.exited())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exited with {status}");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "within Cloud Run's 10 s"
    );
    let lines = orders.lines.lock().unwrap();
    assert!(lines.iter().any(|l| l.contains("shutting down")), "{lines:?}");
}
