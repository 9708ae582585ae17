//! The deployment in `terraform/` against the saga's contract: the topology, the
//! environment each service reads, and who may publish where. The local stack and the
//! end-to-end tests build everything from `saga::contract`; Terraform cannot, so these
//! tests evaluate its configuration and fail on any difference.

use anyhow::{Context as _, Result, ensure};
use hcl::Value;
use infra::{Instance, Terraform, address, reference, terraform_dir};
use saga::contract::{
    Delivery, HANDLER_TIMEOUT, PUSH_POLICY, RETENTION, SUBSCRIPTIONS, Service, Topic, sweep,
};
use saga::runtime::config;
use saga::runtime::config::Provider;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const PROJECT: &str = "drift-test";
const IMAGE_TAG: &str = "drift-tag";

fn terraform() -> Terraform {
    terraform_with(&[])
}

/// The configuration with the test's project and tag, and `vars` besides.
fn terraform_with(vars: &[(&str, Value)]) -> Terraform {
    let mut all = vec![
        ("project_id", Value::from(PROJECT)),
        ("image_tag", Value::from(IMAGE_TAG)),
    ];
    all.extend(vars.iter().cloned());
    Terraform::load(&terraform_dir(), &all).expect("terraform/*.tf cannot be read")
}

fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// The placeholder of an attribute of a resource instance.
fn attr(kind: &str, name: &str, key: Option<&str>, attribute: &str) -> String {
    reference(&address(kind, name, key), attribute)
}

fn topic_id(topic: Topic) -> String {
    attr("google_pubsub_topic", "topic", Some(topic.name()), "id")
}

fn service_uri(service: Service) -> String {
    attr(
        "google_cloud_run_v2_service",
        "service",
        Some(service.name()),
        "uri",
    )
}

fn service_account_email(service: Service) -> String {
    attr("google_service_account", "service", Some(service.name()), "email")
}

fn push_account_email() -> String {
    attr("google_service_account", "push", None, "email")
}

fn sweep_account_email() -> String {
    attr("google_service_account", "sweep", None, "email")
}

fn pubsub_agent() -> String {
    format!(
        "serviceAccount:service-{}@gcp-sa-pubsub.iam.gserviceaccount.com",
        reference("data.google_project.this", "number")
    )
}

fn by_name(instances: Vec<Instance>) -> Result<BTreeMap<String, Instance>> {
    let mut out = BTreeMap::new();
    for instance in instances {
        let name = instance.str("name")?.to_owned();
        ensure!(
            out.insert(name.clone(), instance).is_none(),
            "two resources are named {name}"
        );
    }
    Ok(out)
}

fn cloud_run(tf: &Terraform) -> Result<BTreeMap<String, Instance>> {
    tf.instances("google_cloud_run_v2_service", "service")
}

/// The name => value pairs of a Cloud Run service's container environment.
fn env_of(run: &Instance) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Some(Value::Array(vars)) = infra::lookup(&run.body, "template.0.containers.0.env") else {
        return Ok(out);
    };
    for var in vars {
        let name = infra::lookup(var, "name")
            .and_then(Value::as_str)
            .context("env without name")?;
        let value = infra::lookup(var, "value")
            .and_then(Value::as_str)
            .unwrap_or_default();
        ensure!(
            out.insert(name.to_owned(), value.to_owned()).is_none(),
            "{}: {name} is set twice",
            run.address
        );
    }
    Ok(out)
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn every_local_of_the_configuration_evaluates() {
    let tf = terraform();
    assert!(
        tf.unresolved_locals().is_empty(),
        "locals the drift tests cannot evaluate (use only the functions in infra::FUNCTIONS, or add one): {:#?}",
        tf.unresolved_locals()
    );
}

#[test]
fn terraform_declares_the_contracts_topics_and_subscriptions_with_their_delivery_policy() -> Result<()> {
    let tf = terraform();

    let topics = tf.instances("google_pubsub_topic", "topic")?;
    for (key, topic) in &topics {
        // Subscriptions and grants find a topic by its key: it must be the topic's name.
        assert_eq!(topic.str("name")?, key, "{}", topic.address);
    }
    let topic_names: BTreeSet<&str> = topics.keys().map(String::as_str).collect();
    let contract_topics: BTreeSet<&str> = Topic::ALL.iter().map(|t| t.name()).collect();
    assert_eq!(topic_names, contract_topics, "topics");
    assert_eq!(
        tf.all("google_pubsub_topic")?.len(),
        Topic::ALL.len(),
        "topic resources"
    );

    let subscriptions = by_name(tf.all("google_pubsub_subscription")?)?;
    let declared: BTreeSet<&str> = subscriptions.keys().map(String::as_str).collect();
    let contract: BTreeSet<&str> = SUBSCRIPTIONS.iter().map(|s| s.name).collect();
    assert_eq!(declared, contract, "subscriptions");

    for sub in SUBSCRIPTIONS {
        let tf_sub = &subscriptions[sub.name];
        let at = &tf_sub.address;
        assert_eq!(tf_sub.str("topic")?, topic_id(sub.topic), "{at}: topic");
        assert_eq!(
            tf_sub.str("message_retention_duration")?,
            seconds(RETENTION),
            "{at}: retention"
        );
        assert_eq!(
            tf_sub.str("expiration_policy.0.ttl")?,
            "",
            "{at}: must never expire"
        );
        match sub.delivery {
            Delivery::Pull => {
                for block in ["push_config", "retry_policy", "dead_letter_policy"] {
                    assert!(!tf_sub.has(block), "{at}: a pull subscription has {block}");
                }
            }
            Delivery::Push {
                service,
                path,
                dead_letter,
                ..
            } => {
                assert_eq!(
                    tf_sub.str("push_config.0.push_endpoint")?,
                    format!("{}{path}", service_uri(service)),
                    "{at}: must push to {service} on {path}"
                );
                assert_eq!(
                    tf_sub.get("ack_deadline_seconds")?.as_u64(),
                    Some(PUSH_POLICY.ack_deadline.as_secs()),
                    "{at}: ack deadline"
                );
                assert_eq!(
                    tf_sub.str("retry_policy.0.minimum_backoff")?,
                    seconds(PUSH_POLICY.min_backoff),
                    "{at}: minimum backoff"
                );
                assert_eq!(
                    tf_sub.str("retry_policy.0.maximum_backoff")?,
                    seconds(PUSH_POLICY.max_backoff),
                    "{at}: maximum backoff"
                );
                assert_eq!(
                    tf_sub.has("dead_letter_policy.0"),
                    dead_letter,
                    "{at}: dead-lettering"
                );
                if dead_letter {
                    assert_eq!(
                        tf_sub.str("dead_letter_policy.0.dead_letter_topic")?,
                        topic_id(Topic::DeadLetter),
                        "{at}: dead-letter topic"
                    );
                    assert_eq!(
                        tf_sub.get("dead_letter_policy.0.max_delivery_attempts")?.as_u64(),
                        Some(u64::from(PUSH_POLICY.max_delivery_attempts)),
                        "{at}: delivery attempts"
                    );
                }
            }
        }
    }

    // No request may outlive Pub/Sub's wait for its answer, nor be cut before the handler's.
    for (name, run) in cloud_run(&tf)? {
        let timeout = run.str("template.0.timeout")?;
        assert_eq!(
            timeout,
            seconds(PUSH_POLICY.ack_deadline),
            "{name}: request timeout"
        );
        assert!(PUSH_POLICY.ack_deadline > HANDLER_TIMEOUT);
    }
    Ok(())
}

#[test]
fn the_pubsub_agent_may_dead_letter_exactly_the_subscriptions_that_dead_letter() -> Result<()> {
    let tf = terraform();
    let agent = pubsub_agent();

    let publishes: Vec<String> = tf
        .all("google_pubsub_topic_iam_member")?
        .iter()
        .filter(|grant| grant.str("member").is_ok_and(|m| m == agent))
        .map(|grant| Ok(format!("{} {}", grant.str("role")?, grant.str("topic")?)))
        .collect::<Result<_>>()?;
    assert_eq!(
        publishes,
        vec![format!("roles/pubsub.publisher {}", topic_id(Topic::DeadLetter))],
        "the agent's topic grants"
    );

    let subscriptions = by_name(tf.all("google_pubsub_subscription")?)?;
    let name_of_id: BTreeMap<String, &str> = subscriptions
        .iter()
        .map(|(name, sub)| (reference(&sub.address, "id"), name.as_str()))
        .collect();
    let mut acks = BTreeSet::new();
    for grant in tf.all("google_pubsub_subscription_iam_member")? {
        if grant.str("member")? == agent {
            assert_eq!(grant.str("role")?, "roles/pubsub.subscriber", "{}", grant.address);
            let id = grant.str("subscription")?;
            acks.insert(
                *name_of_id
                    .get(id)
                    .with_context(|| format!("{}: {id}", grant.address))?,
            );
        }
    }
    let dead_lettering: BTreeSet<&str> = SUBSCRIPTIONS
        .iter()
        .filter(|s| s.dead_letters())
        .map(|s| s.name)
        .collect();
    assert_eq!(acks, dead_lettering, "subscriptions the agent may ack on");
    Ok(())
}

#[test]
fn every_service_is_given_exactly_the_env_vars_it_reads_from_its_deployment() -> Result<()> {
    let tf = terraform();
    let runs = cloud_run(&tf)?;
    let names: BTreeSet<&str> = runs.keys().map(String::as_str).collect();
    let services: BTreeSet<&str> = Service::ALL.iter().map(|s| s.name()).collect();
    assert_eq!(names, services, "Cloud Run services");

    let subscriptions = by_name(tf.all("google_pubsub_subscription")?)?;
    for service in Service::ALL {
        let run = &runs[service.name()];
        let env = env_of(run)?;
        let reads = config::reads(service);
        let set: BTreeSet<&str> = env.keys().map(String::as_str).collect();
        let needed: BTreeSet<&str> = reads
            .iter()
            .filter(|v| v.provider == Provider::Deployment)
            .map(|v| v.name)
            .collect();
        let missing: Vec<_> = needed.difference(&set).collect();
        let unread: Vec<_> = set.difference(&needed).collect();
        assert!(
            missing.is_empty() && unread.is_empty(),
            "{service}: Terraform does not set {missing:?}, which the service reads; and sets {unread:?}, \
             which it does not read from a deployment (see saga::runtime::config::reads)"
        );

        assert_eq!(
            env.get(config::env::PROJECT_ID).map(String::as_str),
            Some(PROJECT)
        );
        if let Some(account) = env.get(config::env::PUSH_SERVICE_ACCOUNT) {
            assert_eq!(*account, push_account_email(), "{service}: push account");
        }
        if let Some(audience) = env.get(config::env::PUSH_AUDIENCE) {
            assert!(
                strings(run.get("custom_audiences")?).contains(&audience.as_str()),
                "{service}: Cloud Run must accept tokens for its PUSH_AUDIENCE {audience}"
            );
            for sub in service.push_subscriptions() {
                let tf_sub = &subscriptions[sub.name];
                assert_eq!(
                    tf_sub.str("push_config.0.oidc_token.0.audience")?,
                    audience,
                    "{}: token audience",
                    sub.name
                );
                assert_eq!(
                    tf_sub.str("push_config.0.oidc_token.0.service_account_email")?,
                    push_account_email(),
                    "{}: token identity",
                    sub.name
                );
            }
        }
    }
    Ok(())
}

#[test]
fn each_service_account_may_publish_exactly_to_the_topics_its_service_publishes_to() -> Result<()> {
    let tf = terraform();
    let runs = cloud_run(&tf)?;
    let topic_of_id: BTreeMap<String, &str> = Topic::ALL.iter().map(|t| (topic_id(*t), t.name())).collect();

    let mut published: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for grant in tf.all("google_pubsub_topic_iam_member")? {
        let member = grant.str("member")?;
        if member == pubsub_agent() {
            continue;
        }
        assert_eq!(grant.str("role")?, "roles/pubsub.publisher", "{}", grant.address);
        let topic = grant.str("topic")?;
        let name = topic_of_id
            .get(topic)
            .with_context(|| format!("{}: {topic}", grant.address))?;
        published.entry(member.to_owned()).or_default().insert(name);
    }

    let mut members = BTreeSet::new();
    for service in Service::ALL {
        assert_eq!(
            runs[service.name()].str("template.0.service_account")?,
            service_account_email(service),
            "{service} must run as its own account, or its grants mean nothing"
        );
        let member = format!("serviceAccount:{}", service_account_email(service));
        let expected: BTreeSet<&str> = service.publishes().iter().map(|t| t.name()).collect();
        assert_eq!(
            published.get(&member).cloned().unwrap_or_default(),
            expected,
            "{service} may publish to"
        );
        members.insert(member);
    }
    let strangers: Vec<_> = published.keys().filter(|m| !members.contains(*m)).collect();
    assert!(
        strangers.is_empty(),
        "publishers outside the contract: {strangers:?}"
    );

    // Firestore has no finer grant than the project's: exactly read-write, for each.
    let mut firestore = BTreeSet::new();
    for grant in tf.all("google_project_iam_member")? {
        let member = grant.str("member")?;
        if members.contains(member) {
            assert_eq!(grant.str("role")?, "roles/datastore.user", "{}", grant.address);
            firestore.insert(member.to_owned());
        }
    }
    assert_eq!(firestore, members, "services with Firestore access");
    Ok(())
}

#[test]
fn the_frontend_alone_is_public_and_the_workers_admit_only_the_push_account_and_the_janitor_the_sweeps_too()
-> Result<()> {
    let tf = terraform();
    let runs = cloud_run(&tf)?;
    for service in Service::ALL {
        let expected = if service.takes_pushes() {
            "INGRESS_TRAFFIC_INTERNAL_ONLY"
        } else {
            "INGRESS_TRAFFIC_ALL"
        };
        assert_eq!(
            runs[service.name()].str("ingress")?,
            expected,
            "{service}: ingress"
        );
    }

    let mut invokers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for grant in tf.all("google_cloud_run_v2_service_iam_member")? {
        assert_eq!(grant.str("role")?, "roles/run.invoker", "{}", grant.address);
        invokers
            .entry(grant.str("name")?.to_owned())
            .or_default()
            .insert(grant.str("member")?.to_owned());
    }
    for service in Service::ALL {
        let name = attr(
            "google_cloud_run_v2_service",
            "service",
            Some(service.name()),
            "name",
        );
        let mut expected = BTreeSet::from([if service.takes_pushes() {
            format!("serviceAccount:{}", push_account_email())
        } else {
            "allUsers".to_owned()
        }]);
        if service == Service::Janitor {
            expected.insert(format!("serviceAccount:{}", sweep_account_email()));
        }
        assert_eq!(
            invokers.remove(&name).unwrap_or_default(),
            expected,
            "{service}: who may invoke it"
        );
    }
    assert!(
        invokers.is_empty(),
        "invoker grants on other services: {invokers:?}"
    );
    Ok(())
}

#[test]
fn every_service_runs_its_own_image_and_is_probed_on_the_health_path() -> Result<()> {
    let tf = terraform();
    for (name, run) in cloud_run(&tf)? {
        assert!(
            run.str("template.0.containers.0.image")?
                .ends_with(&format!("/{name}:{IMAGE_TAG}")),
            "{name}: image"
        );
        let port = run
            .get("template.0.containers.0.ports.0.container_port")?
            .as_u64();
        assert_eq!(port, Some(u64::from(config::DEFAULT_PORT)), "{name}: port");
        for probe in ["startup_probe", "liveness_probe"] {
            let get = format!("template.0.containers.0.{probe}.0.http_get.0");
            assert_eq!(
                run.str(&format!("{get}.path"))?,
                saga::runtime::server::HEALTH_PATH,
                "{name}: {probe}"
            );
            assert_eq!(
                run.get(&format!("{get}.port"))?.as_u64(),
                port,
                "{name}: {probe} port"
            );
        }
        let max = run.get("template.0.scaling.0.max_instance_count")?;
        assert!(max.is_number(), "{name}: scaling must be capped");
    }
    Ok(())
}

#[test]
fn each_worker_checks_push_tokens_as_its_invoker_iam_setting_requires() -> Result<()> {
    // Unset, the variable keeps invoker IAM on: the deployment of the README.
    for (vars, iam_disabled, mode) in [
        (vec![], false, "cloud-run-iam"),
        (
            vec![("invoker_iam_disabled", Value::from(false))],
            false,
            "cloud-run-iam",
        ),
        (
            vec![("invoker_iam_disabled", Value::from(true))],
            true,
            "signature",
        ),
    ] {
        let tf = terraform_with(&vars);
        for (name, run) in cloud_run(&tf)? {
            let service = Service::from_name(&name).context("a contract service")?;
            let env = env_of(&run)?;
            let disabled = run.get("invoker_iam_disabled")?.as_bool();
            if service.takes_pushes() {
                assert_eq!(disabled, Some(iam_disabled), "{name}: invoker_iam_disabled");
                assert_eq!(
                    env.get(config::env::PUSH_AUTH).map(String::as_str),
                    Some(mode),
                    "{name}: PUSH_AUTH with invoker_iam_disabled = {iam_disabled}"
                );
                // The mode the worker would start in from exactly this environment, on
                // Cloud Run, is the one Terraform meant, and expects the subscription's token.
                let mut on_cloud_run = env.clone();
                on_cloud_run.insert(config::env::K_SERVICE.to_owned(), name.clone());
                let parsed = config::Config::from_lookup(service, |k| on_cloud_run.get(k).cloned())
                    .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
                assert_eq!(
                    parsed.push_auth.name(),
                    mode,
                    "{name}: the mode the worker starts in"
                );
            } else {
                assert_eq!(
                    disabled,
                    Some(false),
                    "{name}: the public frontend keeps invoker IAM"
                );
                assert!(
                    !env.contains_key(config::env::PUSH_AUTH),
                    "{name}: takes no pushes"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn the_frontend_lists_everyones_orders_only_when_order_list_enabled_says_so() -> Result<()> {
    // Unset, the variable keeps the list off: it shows anyone everyone's orders.
    for (vars, value, list) in [
        (vec![], "off", config::OrderList::Off),
        (
            vec![("order_list_enabled", Value::from(false))],
            "off",
            config::OrderList::Off,
        ),
        (
            vec![("order_list_enabled", Value::from(true))],
            "on",
            config::OrderList::On,
        ),
    ] {
        let tf = terraform_with(&vars);
        for (name, run) in cloud_run(&tf)? {
            let env = env_of(&run)?;
            let set = env.get(config::env::ORDER_LIST).map(String::as_str);
            if name != Service::Frontend.name() {
                assert_eq!(set, None, "{name} lists no orders");
                continue;
            }
            assert_eq!(set, Some(value), "{name}: ORDER_LIST with {vars:?}");
            // What the frontend makes of exactly this environment, on Cloud Run.
            let mut on_cloud_run = env.clone();
            on_cloud_run.insert(config::env::K_SERVICE.to_owned(), name.clone());
            let parsed = config::Config::from_lookup(Service::Frontend, |k| on_cloud_run.get(k).cloned())
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            assert_eq!(parsed.order_list, list, "{name}: with {vars:?}");
        }
    }
    Ok(())
}

#[test]
fn the_scheduler_sweeps_the_janitor_on_the_contracts_schedule_as_the_one_account_it_accepts() -> Result<()> {
    let tf = terraform();
    let job = tf.resource("google_cloud_scheduler_job", "sweep")?;
    assert_eq!(job.str("schedule")?, sweep::SCHEDULE);
    assert_eq!(job.str("http_target.0.http_method")?, "POST");
    assert_eq!(
        job.str("http_target.0.uri")?,
        format!("{}{}", service_uri(Service::Janitor), sweep::PATH)
    );
    assert_eq!(
        job.str("http_target.0.oidc_token.0.service_account_email")?,
        sweep_account_email()
    );
    let janitor = env_of(&cloud_run(&tf)?[Service::Janitor.name()])?;
    assert_eq!(
        job.str("http_target.0.oidc_token.0.audience")?,
        janitor[config::env::PUSH_AUDIENCE],
        "the token is for the audience the janitor checks"
    );
    assert_eq!(
        janitor[config::env::SWEEP_SERVICE_ACCOUNT],
        sweep_account_email(),
        "the janitor accepts the scheduler's account on the sweep"
    );
    let attempt = seconds_of(&job, "attempt_deadline")?;
    assert!(
        Duration::from_secs(attempt) > HANDLER_TIMEOUT,
        "the scheduler waits for the janitor's answer ({attempt}s)"
    );
    Ok(())
}

#[test]
fn the_stocks_write_mark_is_not_indexed() -> Result<()> {
    let tf = terraform();
    let field = tf.resource("google_firestore_field", "inventory_written_at")?;
    assert_eq!(field.str("collection")?, saga::contract::collections::INVENTORY);
    assert_eq!(
        field.str("field")?,
        saga::engine::records::inventory_fields::WRITTEN_AT
    );
    // An empty block is what turns a field's single-field indexes off.
    match field.get("index_config")? {
        Value::Array(blocks) => assert!(
            matches!(blocks.as_slice(), [Value::Object(fields)] if fields.is_empty()),
            "index_config is {blocks:?}"
        ),
        other => anyhow::bail!("index_config is {other:?}"),
    }
    Ok(())
}

#[test]
fn the_database_keeps_a_week_of_versions_and_resists_deletion_unless_told_otherwise() -> Result<()> {
    // (firestore_protection, or the default; PITR; delete protection)
    let cases = [
        (
            None,
            "POINT_IN_TIME_RECOVERY_ENABLED",
            "DELETE_PROTECTION_ENABLED",
        ),
        (
            Some(true),
            "POINT_IN_TIME_RECOVERY_ENABLED",
            "DELETE_PROTECTION_ENABLED",
        ),
        (
            Some(false),
            "POINT_IN_TIME_RECOVERY_DISABLED",
            "DELETE_PROTECTION_DISABLED",
        ),
    ];
    for (protection, pitr, delete) in cases {
        let vars: Vec<(&str, Value)> = protection
            .map(|p| ("firestore_protection", Value::Bool(p)))
            .into_iter()
            .collect();
        let tf = terraform_with(&vars);
        let db = tf.resource("google_firestore_database", "default")?;
        assert_eq!(
            (
                db.str("point_in_time_recovery_enablement")?,
                db.str("delete_protection_state")?
            ),
            (pitr, delete),
            "firestore_protection = {protection:?}"
        );
        assert_eq!(
            db.str("deletion_policy")?,
            "ABANDON",
            "terraform destroy never deletes the data"
        );
    }
    Ok(())
}

#[test]
fn the_sweeps_query_has_its_index_and_the_deadline_is_one_the_janitor_reads() -> Result<()> {
    let tf = terraform();
    let index = tf.resource("google_firestore_index", "open_sagas")?;
    assert_eq!(index.str("collection")?, saga::contract::collections::SAGAS);
    assert_eq!(index.str("query_scope")?, "COLLECTION");
    let fields: Vec<(&str, &str)> = match index.get("fields")? {
        Value::Array(fields) => fields
            .iter()
            .map(|f| {
                (
                    infra::lookup(f, "field_path")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                    infra::lookup(f, "order")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                )
            })
            .collect(),
        other => anyhow::bail!("fields is {other:?}"),
    };
    let expected: Vec<(&str, &str)> = sweep::INDEX_FIELDS.iter().map(|f| (*f, "ASCENDING")).collect();
    assert_eq!(fields, expected);

    // Every value the variable's validation accepts, the janitor reads as the same
    // duration; the shortest it accepts is the janitor's shortest.
    let variables = std::fs::read_to_string(terraform_dir().join("variables.tf"))?;
    let pattern = regex::Regex::new(r#"regex\("([^"]+)", var\.saga_deadline\)"#)?
        .captures(&variables)
        .context("saga_deadline's validation is a regex")?[1]
        .to_owned();
    let accepts = regex::Regex::new(&pattern)?;
    let mut shortest = None::<Duration>;
    for deadline in [
        "0s", "59s", "60s", "180s", "300s", "420s", "479s", "480s", "481s", "489s", "490s", "499s", "500s",
        "999s", "1000s", "0m", "1m", "3m", "7m", "8m", "9m", "10m", "90m", "0h", "1h", "24h", "08m", "10 m",
        "600", "10min",
    ] {
        if !accepts.is_match(deadline) {
            continue;
        }
        let tf = terraform_with(&[("saga_deadline", Value::from(deadline))]);
        let env = env_of(&cloud_run(&tf)?[Service::Janitor.name()])?;
        // As Cloud Run runs it: with K_SERVICE, which it sets itself.
        let parsed = config::Config::from_lookup(Service::Janitor, |k| match k {
            "K_SERVICE" => Some("janitor".to_owned()),
            k => env.get(k).cloned(),
        })
        .map_err(|e| anyhow::anyhow!("Terraform accepts {deadline}, the janitor does not: {e}"))?;
        let seconds: u64 = deadline[..deadline.len() - 1].parse()?;
        let unit = match deadline.as_bytes()[deadline.len() - 1] {
            b's' => 1,
            b'm' => 60,
            _ => 3600,
        };
        assert_eq!(
            parsed.saga_deadline,
            Duration::from_secs(seconds * unit),
            "{deadline}"
        );
        shortest = Some(shortest.map_or(parsed.saga_deadline, |s| s.min(parsed.saga_deadline)));
    }
    assert_eq!(shortest, Some(sweep::MIN_DEADLINE), "{pattern}");
    for refused in ["479s", "7m", "0h", "10 m", "600"] {
        assert!(!accepts.is_match(refused), "{refused} passes {pattern}");
    }
    let default = env_of(&cloud_run(&tf)?[Service::Janitor.name()])?;
    assert_eq!(default[config::env::SAGA_DEADLINE], "10m");
    assert_eq!(sweep::DEFAULT_DEADLINE, Duration::from_mins(10));
    Ok(())
}

/// The filter of an alerting policy's first condition.
fn condition_filter(policy: &Instance) -> Result<&str> {
    policy.str("conditions.0.condition_threshold.0.filter")
}

/// The threshold of an alerting policy's first condition.
fn threshold(policy: &Instance) -> Result<f64> {
    policy
        .get("conditions.0.condition_threshold.0.threshold_value")?
        .as_f64()
        .with_context(|| format!("{}: threshold_value is not a number", policy.address))
}

/// The contract's push subscriptions.
fn push_subscriptions() -> impl Iterator<Item = &'static saga::contract::Subscription> {
    SUBSCRIPTIONS
        .iter()
        .filter(|s| matches!(s.delivery, Delivery::Push { .. }))
}

/// The seconds of a duration written as Terraform's `"300s"`.
fn seconds_of(instance: &Instance, path: &str) -> Result<u64> {
    instance
        .str(path)?
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("{}: `{path}` is not in whole seconds", instance.address))
}

#[test]
fn dead_letters_raise_an_alert_as_they_arrive_whoever_dead_lettered_them() -> Result<()> {
    let tf = terraform();
    // Every letter, from Pub/Sub or from a worker, is pushed to the janitor.
    let pushed: Vec<&str> = push_subscriptions()
        .filter(|s| s.topic == Topic::DeadLetter)
        .map(|s| s.name)
        .collect();
    let [pushed] = pushed.as_slice() else {
        anyhow::bail!("the contract pushes dead letters to one subscription, not {pushed:?}");
    };
    let policy = tf.resource("google_monitoring_alert_policy", "dead_letters")?;
    let filter = condition_filter(&policy)?;
    let subscription = attr("google_pubsub_subscription", "push", Some(pushed), "name");
    for clause in [
        "resource.type = \"pubsub_subscription\"".to_owned(),
        format!("resource.labels.subscription_id = \"{subscription}\""),
        // Arrivals, each once: the backlog of dead-letter-sub holds every letter for days,
        // and a letter the janitor fails is pushed again and again.
        "metric.type = \"pubsub.googleapis.com/subscription/push_request_count\"".to_owned(),
        "metric.labels.response_class = \"ack\"".to_owned(),
    ] {
        assert!(filter.contains(&clause), "{filter} misses {clause}");
    }
    assert_eq!(
        policy.str("conditions.0.condition_threshold.0.comparison")?,
        "COMPARISON_GT"
    );
    assert_eq!(
        policy.str("conditions.0.condition_threshold.0.aggregations.0.per_series_aligner")?,
        "ALIGN_SUM",
        "a count of letters in each period"
    );
    assert_eq!(Some(threshold(&policy)?), Some(0.0), "one letter is enough");
    // Counts write no point when nothing happens; without this the incident would stay
    // open through quiet windows and the next letter would notify no one.
    assert_eq!(
        policy.str("conditions.0.condition_threshold.0.evaluation_missing_data")?,
        "EVALUATION_MISSING_DATA_INACTIVE"
    );
    Ok(())
}

#[test]
fn every_push_subscription_alerts_once_its_oldest_message_outlasts_pubsubs_retries() -> Result<()> {
    let tf = terraform();
    let policies = tf.instances("google_monitoring_alert_policy", "stuck_push")?;
    let push: BTreeSet<&str> = push_subscriptions().map(|s| s.name).collect();
    assert_eq!(policies.keys().map(String::as_str).collect::<BTreeSet<_>>(), push);
    for (name, policy) in &policies {
        let filter = condition_filter(policy)?;
        let subscription = attr("google_pubsub_subscription", "push", Some(name), "name");
        assert!(
            filter.contains(&format!("resource.labels.subscription_id = \"{subscription}\"")),
            "{name}: {filter}"
        );
        assert!(
            filter
                .contains("metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""),
            "{name}: {filter}"
        );
        assert_eq!(
            policy.str("conditions.0.condition_threshold.0.comparison")?,
            "COMPARISON_GT"
        );
        assert_eq!(
            policy.str("conditions.0.condition_threshold.0.aggregations.0.per_series_aligner")?,
            "ALIGN_MAX",
            "{name}: the oldest message's age, not an average"
        );
        let seconds = threshold(policy)?;
        // Until then a message may be in its retries, and nothing is wrong.
        assert!(
            Duration::from_secs_f64(seconds) > PUSH_POLICY.retry_horizon(),
            "{name}: {seconds}s is within Pub/Sub's retries of one message ({:?})",
            PUSH_POLICY.retry_horizon()
        );
    }
    Ok(())
}

#[test]
fn the_sweeps_alert_counts_the_janitors_own_warning_lines() -> Result<()> {
    let tf = terraform();
    let metric = tf.resource("google_logging_metric", "sweep_not_ended")?;
    let filter = metric.str("filter")?;
    // The janitor logs them as `message` at WARNING (saga::runtime::telemetry's tests).
    let lines = format!(
        "jsonPayload.message = (\"{}\" OR \"{}\")",
        sweep::NOT_ENDED,
        sweep::NOT_LISTED
    );
    assert!(filter.contains(&lines), "{filter} misses {lines}");
    assert!(filter.contains("severity = WARNING"), "{filter}");
    let janitor = attr(
        "google_cloud_run_v2_service",
        "service",
        Some(Service::Janitor.name()),
        "name",
    );
    assert!(
        filter.contains(&format!("resource.labels.service_name = \"{janitor}\"")),
        "{filter}"
    );
    let policy = tf.resource("google_monitoring_alert_policy", "sweep_not_ended")?;
    let counted = format!(
        "metric.type = \"logging.googleapis.com/user/{}\"",
        attr("google_logging_metric", "sweep_not_ended", None, "name")
    );
    assert!(condition_filter(&policy)?.contains(&counted), "{policy:?}");
    // A sweep warns again every minute about what persists; one that failed once (a
    // Firestore blip) must not page anyone.
    let most = threshold(&policy)?;
    assert!(most >= 1.0, "one warning fires it ({most})");
    let window = seconds_of(
        &policy,
        "conditions.0.condition_threshold.0.aggregations.0.alignment_period",
    )?;
    let held = seconds_of(&policy, "conditions.0.condition_threshold.0.duration")?;
    assert!(
        held > window,
        "a burst of warnings within one {window}s window fires it (held for {held}s)"
    );
    assert_eq!(
        policy.str("conditions.0.condition_threshold.0.evaluation_missing_data")?,
        "EVALUATION_MISSING_DATA_INACTIVE",
        "a sweep that stopped warning closes the incident"
    );
    Ok(())
}

#[test]
fn an_uptime_check_asks_the_public_frontend_what_only_its_firestore_can_answer_and_alerts_when_it_fails()
-> Result<()> {
    use saga::contract::uptime;
    let tf = terraform();
    let check = tf.resource("google_monitoring_uptime_check_config", "frontend")?;
    assert_eq!(
        (
            check.str("http_check.0.request_method")?,
            check.str("http_check.0.path")?,
            check.get("http_check.0.port")?,
            check.get("http_check.0.use_ssl")?,
            check.get("http_check.0.validate_ssl")?,
            check.get("http_check.0.accepted_response_status_codes.0.status_value")?,
        ),
        (
            "GET",
            uptime::PATH,
            &Value::from(443),
            &Value::Bool(true),
            &Value::Bool(true),
            &Value::from(uptime::STATUS),
        )
    );
    assert_eq!(
        (
            check.str("content_matchers.0.content")?,
            check.str("content_matchers.0.matcher")?
        ),
        (uptime::NOT_FOUND, "CONTAINS_STRING")
    );
    assert_eq!(check.str("monitored_resource.0.type")?, "uptime_url");
    assert_eq!(check.str("monitored_resource.0.labels.project_id")?, PROJECT);
    // The frontend's own URL, once known, without its scheme: a host.
    let uri = attr("google_cloud_run_v2_service", "service", Some("frontend"), "uri");
    let reference = uri.trim_start_matches("${").trim_end_matches('}');
    assert_eq!(
        check.str("monitored_resource.0.labels.host")?,
        format!("${{trimprefix({reference}, \"https://\")}}")
    );
    let frontend = &cloud_run(&tf)?[Service::Frontend.name()];
    assert_eq!(
        frontend.str("ingress")?,
        "INGRESS_TRAFFIC_ALL",
        "Google's checkers reach it from outside"
    );

    let policy = tf.resource("google_monitoring_alert_policy", "frontend_down")?;
    let filter = condition_filter(&policy)?;
    let check_id = attr(
        "google_monitoring_uptime_check_config",
        "frontend",
        None,
        "uptime_check_id",
    );
    for part in [
        "resource.type = \"uptime_url\"",
        "metric.type = \"monitoring.googleapis.com/uptime_check/check_passed\"",
        &format!("metric.labels.check_id = \"{check_id}\""),
    ] {
        assert!(filter.contains(part), "{part} in {filter}");
    }
    let condition = "conditions.0.condition_threshold.0";
    assert_eq!(
        (
            policy.str(&format!("{condition}.comparison"))?,
            threshold(&policy)?,
            policy.str(&format!("{condition}.aggregations.0.per_series_aligner"))?,
            policy.str(&format!("{condition}.aggregations.0.cross_series_reducer"))?,
        ),
        ("COMPARISON_GT", 1.0, "ALIGN_NEXT_OLDER", "REDUCE_COUNT_FALSE"),
        "more than one checker location failing"
    );
    assert_eq!(
        (
            seconds_of(&policy, &format!("{condition}.duration"))?,
            seconds_of(&policy, &format!("{condition}.aggregations.0.alignment_period"))?,
            strings(policy.get(&format!("{condition}.aggregations.0.group_by_fields"))?),
        ),
        (300, 300, vec!["resource.label.host"]),
        "for 5 minutes, each check's locations counted together"
    );
    Ok(())
}

#[test]
fn every_alert_notifies_every_address_in_alert_emails_and_none_is_needed() -> Result<()> {
    for emails in [vec![], vec!["ops@example.com", "oncall@example.com"]] {
        let value = Value::Array(emails.iter().map(|e| Value::from(*e)).collect());
        let tf = terraform_with(&[("alert_emails", value)]);
        let channels = tf.instances("google_monitoring_notification_channel", "email")?;
        assert_eq!(
            channels.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            emails.iter().copied().collect::<BTreeSet<_>>()
        );
        for (email, channel) in &channels {
            assert_eq!(channel.str("type")?, "email");
            assert_eq!(channel.str("labels.email_address")?, email);
        }
        let ids: BTreeSet<String> = emails
            .iter()
            .map(|e| attr("google_monitoring_notification_channel", "email", Some(e), "id"))
            .collect();
        let policies = tf.all("google_monitoring_alert_policy")?;
        let mut expected: BTreeSet<String> = push_subscriptions()
            .map(|s| address("google_monitoring_alert_policy", "stuck_push", Some(s.name)))
            .collect();
        expected.insert(address("google_monitoring_alert_policy", "dead_letters", None));
        expected.insert(address("google_monitoring_alert_policy", "sweep_not_ended", None));
        expected.insert(address("google_monitoring_alert_policy", "frontend_down", None));
        assert_eq!(
            policies
                .iter()
                .map(|p| p.address.clone())
                .collect::<BTreeSet<_>>(),
            expected
        );
        for policy in policies {
            let notified: BTreeSet<String> = strings(policy.get("notification_channels")?)
                .into_iter()
                .map(str::to_owned)
                .collect();
            assert_eq!(notified, ids, "{}", policy.address);
        }
    }
    Ok(())
}
