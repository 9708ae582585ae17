//! The `devstack` binary as a user runs it: inventory killed with SIGKILL in the middle of a
//! burst of orders is started again on its port, while the emulators and the other services
//! run on; every saga still ends exactly once; SIGTERM then stops everything it started.

// A failed unwrap in a test is a failed assertion.
#![allow(clippy::unwrap_used)]

mod common;

use common::{emulators, free_port, project};
use devstack::process::{Child, Output, Spec};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use saga::contract::Service;
use saga::gcp::store::{DocPath, FirestoreTarget, Store, WriteSet};
use saga::runtime::config::env;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// The line the devstack prints once its stack runs.
const READY: &str = "stop everything with Ctrl-C";

/// How long a devstack may take to start: its own emulators, on a busy machine.
const START: Duration = Duration::from_mins(3);

/// A running `devstack`, its services on five ports from `base`, and what it printed.
struct Devstack {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    base: u16,
}

impl Devstack {
    /// Starts `devstack ARGS` with `env` set, and waits until its stack runs.
    async fn start(args: &[String], env: &[(&str, String)]) -> Self {
        let base = free_port_range();
        let mut spec = Spec::new(env!("CARGO_BIN_EXE_devstack"))
            .args(args)
            .args(["--port-base".to_owned(), base.to_string()])
            .env(env::RUST_LOG, "info")
            .stdout(Output::Null)
            .stderr(Output::Piped);
        for (key, value) in env {
            spec = spec.env(key, value);
        }
        let mut child = spec.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = tokio::process::ChildStderr::from_std(child.take_stderr().unwrap()).unwrap();
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        let devstack = Devstack { child, lines, base };
        devstack.line(|l| l.ends_with(READY), START).await;
        devstack
    }

    fn url(&self, service: Service) -> String {
        let offset = service.local_port() - Service::Frontend.local_port();
        format!("http://127.0.0.1:{}", self.base + offset)
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits for a line that `wanted` accepts: its index.
    async fn line(&self, wanted: impl Fn(&str) -> bool, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.lines().iter().position(|l| wanted(l)) {
                return i;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader take in what the devstack said last: that is why.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let lines = self.lines();
                let last = &lines[lines.len().saturating_sub(20)..];
                panic!(
                    "the devstack exited ({status}); its last lines:\n{}",
                    last.join("\n")
                );
            }
            assert!(Instant::now() < deadline, "no such line within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The pid of the process `devstack serve SERVICE` that this devstack started.
    fn pid_of(&self, service: Service) -> u32 {
        descendants(self.child.pid().unwrap())
            .into_iter()
            .find(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                args.get(1..3) == Some(&[b"serve".as_slice(), service.name().as_bytes()][..])
            })
            .unwrap_or_else(|| panic!("no {service} process"))
    }

    /// SIGTERM, as Ctrl-C would: it exits 0 within a minute, and every process it started
    /// is gone.
    async fn stop(self) {
        let started = processes(&descendants(self.child.pid().unwrap()));
        assert!(
            started.len() >= 5 * 2,
            "five services, each in a wrapper: {started:?}"
        );
        self.child.terminate().unwrap();
        let status = tokio::time::timeout(Duration::from_mins(1), self.child.exited())
            .await
            .expect("the devstack exits within a minute of SIGTERM")
            .unwrap();
        assert!(status.success(), "the devstack exited with {status}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while started.iter().any(|p| still_runs(*p)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left: Vec<_> = started.iter().filter(|p| still_runs(**p)).collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

impl Drop for Devstack {
    fn drop(&mut self) {
        // What it printed, to see why a test failed.
        if std::thread::panicking() {
            for line in self.lines() {
                eprintln!("{line}");
            }
        }
    }
}

/// The first of five consecutive ports free right now, below Linux's ephemeral range.
fn free_port_range() -> u16 {
    loop {
        let base: u16 = rand::random_range(20_000..32_000);
        // The services listen on every address.
        let free = (base..base + 5).all(|port| std::net::TcpListener::bind(("0.0.0.0", port)).is_ok());
        if free {
            return base;
        }
    }
}

/// Every process under `pid`: its children (of every thread), theirs, and so on.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                found.push(child);
                queue.push(child);
            }
        }
    }
    found
}

/// A process: its pid and when it started, so that a pid used again is not taken for it.
type Process = (u32, u64);

/// The fields of `/proc/PID/stat` after the command name: state, ppid, pgrp, ...
fn stat(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn processes(pids: &[u32]) -> Vec<Process> {
    pids.iter()
        .filter_map(|pid| Some((*pid, stat(*pid)?.get(19)?.parse().ok()?)))
        .collect()
}

/// Whether the process still runs (and is not a zombie).
fn still_runs((pid, started): Process) -> bool {
    stat(pid).is_some_and(|fields| fields[0] != "Z" && fields[19].parse::<u64>().ok() == Some(started))
}

/// The wrapper of a program started by `devstack::process`, and everything under it.
fn with_wrapper(pid: u32) -> BTreeSet<u32> {
    let wrapper: u32 = stat(pid).unwrap()[1].parse().unwrap();
    let mut all: BTreeSet<u32> = descendants(wrapper).into_iter().collect();
    all.insert(wrapper);
    all
}

async fn store(project: &str, firestore: &str) -> Store {
    Store::connect(&FirestoreTarget {
        project: project.to_owned(),
        emulator_host: Some(firestore.to_owned()),
    })
    .await
    .unwrap()
}

async fn stock(store: &Store, item: &str) -> i64 {
    let doc = store
        .get(&DocPath::new(["inventory", item]))
        .await
        .unwrap()
        .unwrap();
    doc.decode::<Value>().unwrap()["quantity"].as_i64().unwrap()
}

/// Whether `GET url` answers 200.
async fn answers(http: &reqwest::Client, url: &str) -> bool {
    http.get(url).send().await.is_ok_and(|r| r.status() == 200)
}

/// Polls `GET /orders/{uuid}` until the saga has finished: its view.
async fn finished(http: &reqwest::Client, devstack: &Devstack, uuid: &str, deadline: Instant) -> Value {
    let url = format!("{}/orders/{uuid}", devstack.url(Service::Frontend));
    loop {
        if let Ok(response) = http.get(&url).send().await
            && response.status() == 200
        {
            let view: Value = response.json().await.unwrap();
            if view["finished"] == true {
                return view;
            }
        }
        assert!(Instant::now() < deadline, "saga {uuid} did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sets the stock of `item` to `quantity`.
async fn set_stock(store: &Store, item: &str, quantity: i64) {
    let mut writes = WriteSet::new();
    writes.update(
        DocPath::new(["inventory", item]),
        &json!({"quantity": quantity, "price_per_unit": 10}),
        None,
        None,
    );
    store.commit(writes).await.unwrap();
}

/// Places `count` orders like `order` (the `i`th for 1 + `i` % 3), every fifth with a
/// payment that fails, and kills `victim` (if any) with SIGKILL after a third of them: each
/// order's uuid and body.
async fn burst_killing(
    http: &reqwest::Client,
    devstack: &Devstack,
    victim: Option<u32>,
    order: &Value,
    count: u32,
) -> Vec<(String, Value)> {
    let mut placed = Vec::new();
    for i in 0..count {
        if i == count / 3
            && let Some(victim) = victim
        {
            kill(Pid::from_raw(i32::try_from(victim).unwrap()), Signal::SIGKILL).unwrap();
        }
        let mut order = order.clone();
        order["quantity"] = json!(1 + i % 3);
        if i % 5 == 4 {
            order["payment-error"] = json!("null");
        }
        let answer: Value = http
            .post(format!("{}/order", devstack.url(Service::Frontend)))
            .json(&order)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        placed.push((answer["uuid"].as_str().unwrap().to_owned(), order));
    }
    placed
}

/// Waits for every saga of `placed` to finish, checks that each ended once (every stage of
/// its view once; completed or compensated, and a failed payment never completed), and
/// returns how many widgets the completed ones bought.
async fn sold_once_each(http: &reqwest::Client, devstack: &Devstack, placed: &[(String, Value)]) -> i64 {
    let deadline = Instant::now() + Duration::from_mins(3);
    let mut sold = 0;
    for (uuid, order) in placed {
        let view = finished(http, devstack, uuid, deadline).await;
        let stages: Vec<&str> = view["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["stage"].as_str().unwrap())
            .collect();
        let distinct: BTreeSet<&&str> = stages.iter().collect();
        assert_eq!(distinct.len(), stages.len(), "each stage once: {view}");
        match view["status"].as_str().unwrap() {
            "completed" => {
                assert!(
                    order.get("payment-error").is_none(),
                    "a failed payment paid: {view}"
                );
                sold += order["quantity"].as_i64().unwrap();
            }
            "compensated" => {}
            other => panic!("saga {uuid} finished as {other}: {view}"),
        }
    }
    sold
}

#[tokio::test]
async fn inventory_killed_mid_burst_is_restarted_and_every_saga_ends_exactly_once_on_emulators_that_ran_on() {
    let project = project("restart");
    let (pubsub, firestore) = (free_port(), free_port());
    // Emulators of its own, so that their surviving the crash is the devstack's doing; its
    // logs of them in a directory of its own.
    let tmp = std::env::temp_dir().join(format!("saga-devstack-restart-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let args = [
        format!("--project={project}"),
        format!("--pubsub-port={pubsub}"),
        format!("--firestore-port={firestore}"),
    ];
    let devstack = Devstack::start(
        &args,
        &[
            ("TMPDIR", tmp.display().to_string()),
            (env::PUBSUB_EMULATOR_HOST, String::new()),
            (env::FIRESTORE_EMULATOR_HOST, String::new()),
            (env::LOG_FORMAT, "text".to_owned()),
        ],
    )
    .await;
    let (pubsub, firestore) = (format!("127.0.0.1:{pubsub}"), format!("127.0.0.1:{firestore}"));
    let store = store(&project, &firestore).await;
    // Less stock than the burst asks for: some orders must be refused, none oversold.
    let initial = 40;
    set_stock(&store, "widget", initial).await;
    let inventory = devstack.pid_of(Service::Inventory);
    let others: Vec<Process> = {
        let inventory_tree = with_wrapper(inventory);
        let all = descendants(devstack.child.pid().unwrap());
        processes(
            &all.into_iter()
                .filter(|p| !inventory_tree.contains(p))
                .collect::<Vec<_>>(),
        )
    };

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    // 30 orders of 1 to 3 widgets, inventory killed after the tenth.
    let order = json!({"item": "widget", "user": "jack"});
    let placed = burst_killing(&http, &devstack, Some(inventory), &order, 30).await;
    let exited = devstack
        .line(|l| l.contains("| inventory exited"), Duration::from_secs(10))
        .await;
    assert_eq!(
        devstack.lines()[exited],
        "devstack  | inventory exited (signal 9); restarting in 0.5 s"
    );
    let healthy = devstack
        .line(
            |l| l.starts_with("devstack  | inventory is healthy again (pid "),
            Duration::from_secs(30),
        )
        .await;
    assert!(healthy > exited);
    assert_ne!(devstack.pid_of(Service::Inventory), inventory);

    let sold = sold_once_each(&http, &devstack, &placed).await;
    assert!(sold > 0, "some sagas completed");
    // Nothing sold twice, and compensations gave back exactly what they took; still so a
    // moment later, when any message delivered again has been handled.
    assert_eq!(stock(&store, "widget").await, initial - sold);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stock(&store, "widget").await, initial - sold, "and it stays so");
    assert!(initial - sold >= 0, "nothing oversold");

    // Only inventory was started again: the emulators (and their data, read above) and the
    // other services are the processes they were.
    for emulator in [&pubsub, &firestore] {
        assert!(
            answers(&http, &format!("http://{emulator}/")).await,
            "{emulator} answers"
        );
    }
    let gone: Vec<_> = others.iter().filter(|p| !still_runs(**p)).collect();
    assert!(gone.is_empty(), "ended with inventory: {gone:?}");
    let lines = devstack.lines();
    let restarts: Vec<_> = lines.iter().filter(|l| l.contains(" exited (")).collect();
    assert_eq!(restarts.len(), 1, "{restarts:?}");
    assert!(
        lines[exited..]
            .iter()
            .any(|l| l.starts_with("inventory | ") && l.contains("inventory listening")),
        "the restarted inventory's lines are relayed, prefixed"
    );

    devstack.stop().await;
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[tokio::test]
async fn under_push_gcp_and_json_logs_a_restarted_worker_takes_pushes_again_and_still_logs_json() {
    let emulators = tokio::task::spawn_blocking(emulators).await.unwrap();
    let project = project("restart-json");
    let devstack = Devstack::start(
        &[format!("--project={project}"), "--push=gcp".to_owned()],
        &[
            (env::PUBSUB_EMULATOR_HOST, emulators.pubsub.clone()),
            (env::FIRESTORE_EMULATOR_HOST, emulators.firestore.clone()),
            (env::LOG_FORMAT, "json".to_owned()),
        ],
    )
    .await;
    let inventory = devstack.pid_of(Service::Inventory);
    kill(Pid::from_raw(i32::try_from(inventory).unwrap()), Signal::SIGKILL).unwrap();
    let exited = devstack
        .line(
            |l| l.contains("| inventory exited (signal 9)"),
            Duration::from_secs(10),
        )
        .await;
    let is_inventory_listening = |l: &str| {
        serde_json::from_str::<Value>(l).is_ok_and(|e| e["service"] == "inventory" && l.contains("listening"))
    };
    let healthy = devstack
        .line(
            |l| l.contains("| inventory is healthy again"),
            Duration::from_secs(30),
        )
        .await;
    assert!(healthy > exited);
    // Its first line is relayed apart from the devstack's own, so perhaps a moment later.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !devstack.lines()[exited..]
        .iter()
        .any(|l| is_inventory_listening(l))
    {
        assert!(
            Instant::now() < deadline,
            "the restarted inventory said it listens"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Behind its front end, with the environment it had: it admits the pushes' tokens.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let order = json!({"item": "wotsit", "quantity": 1, "user": "jill"});
    let placed = burst_killing(&http, &devstack, None, &order, 1).await;
    let view = finished(
        &http,
        &devstack,
        &placed[0].0,
        Instant::now() + Duration::from_mins(1),
    )
    .await;
    assert_eq!(view["status"], "completed", "{view}");

    let lines = devstack.lines();
    assert!(
        !lines.iter().any(|l| l.contains("verification is OFF")),
        "every worker, the restarted one too, checks push tokens"
    );
    for line in lines.iter().filter(|l| !l.starts_with("devstack  | ")) {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(entry["service"].is_string(), "names its service: {line}");
    }
    devstack.stop().await;
}
