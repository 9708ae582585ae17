//! The schema check (`infra::schema`) on small configurations in `tests/fixtures/`, against
//! `tests/fixtures/provider-google.jsii`: a few types of a real provider package's jsii
//! assembly, trimmed, so these tests need no download.

use infra::schema::{Problem, Report, Schema, check};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn schema() -> Schema {
    Schema::from_jsii_file(&fixtures().join("provider-google.jsii")).expect("the fixture schema reads")
}

fn check_fixture(name: &str) -> Report {
    check(&schema(), &fixtures().join(name)).expect("the fixture configuration reads")
}

/// The one problem of a fixture that should have exactly one.
fn only_problem(name: &str) -> Problem {
    let report = check_fixture(name);
    assert_eq!(report.problems.len(), 1, "{name}: {:#?}", report.problems);
    report.problems[0].clone()
}

#[test]
fn the_jsii_reads_as_the_provider_s_schema_with_terraform_names() {
    let schema = schema();
    assert_eq!(schema.provider, "google");
    assert_eq!(schema.version, "hashicorp/google 6.50.0");
    assert_eq!(schema.package, "@cdktf/provider-google 16.12.1");
    assert_eq!(
        schema.resources.keys().collect::<Vec<_>>(),
        [
            "google_cloud_run_v2_service",
            "google_cloudbuild_trigger",
            "google_pubsub_topic"
        ]
    );
    assert!(schema.data_sources.contains_key("google_project"));
    let provider = schema.block(schema.provider_block.expect("the provider block"));
    assert_eq!(provider.arguments.get("region"), Some(&false));

    let service = schema.block(schema.resources["google_cloud_run_v2_service"]);
    assert_eq!(service.arguments.get("custom_audiences"), Some(&false));
    assert_eq!(service.arguments.get("location"), Some(&true));
    let template = &service.blocks["template"];
    assert!(template.required && template.max_one);
    let containers = &schema.block(template.block).blocks["containers"];
    assert!(
        !containers.required && !containers.max_one,
        "a list block may repeat"
    );
    let container = schema.block(containers.block);
    assert_eq!(container.arguments.get("image"), Some(&true));
    assert!(schema.block(container.blocks["env"].block).arguments["name"]);

    let trigger = schema.block(schema.resources["google_cloudbuild_trigger"]);
    assert!(
        trigger.blocks.contains_key("build"),
        "buildAttribute is `build` in Terraform"
    );
}

#[test]
fn a_good_configuration_passes_with_every_provider_block_checked() {
    let report = check_fixture("good");
    assert_eq!(report.problems, [], "{:#?}", report.problems);
    // provider, data source, two resources' declarations and the trigger; not terraform_data.
    assert_eq!(report.checked, 5);
}

#[test]
fn a_misspelt_argument_is_reported_with_its_resource_and_path() {
    let problem = only_problem("misspelt-argument");
    assert_eq!(problem.file, "main.tf");
    assert_eq!(problem.address, "google_cloud_run_v2_service.service");
    assert_eq!(problem.path, "template.service_acount");
    assert_eq!(
        problem.to_string(),
        "main.tf: google_cloud_run_v2_service.service: template.service_acount: \
         no argument `service_acount` (did you mean `service_account`?)"
    );
}

#[test]
fn an_unknown_resource_type_is_reported_with_the_provider_version() {
    let problem = only_problem("unknown-type");
    assert_eq!(problem.address, "google_pubsub_topics.topic");
    assert_eq!(
        problem.message,
        "no resource type `google_pubsub_topics` in hashicorp/google 6.50.0 (did you mean `google_pubsub_topic`?)"
    );
}

#[test]
fn a_missing_required_argument_is_reported_in_the_nested_block_that_needs_it() {
    let problem = only_problem("missing-required");
    assert_eq!(problem.path, "template.containers.image");
    assert_eq!(problem.message, "the required argument `image` is not set");
}

#[test]
fn a_misspelt_argument_inside_a_dynamic_block_is_reported_even_if_it_generates_nothing() {
    let problem = only_problem("misspelt-in-dynamic");
    assert_eq!(problem.path, "template.containers.env.valeu");
    assert_eq!(problem.message, "no argument `valeu` (did you mean `value`?)");
}

#[test]
fn blocks_and_arguments_are_told_apart_and_a_dynamic_block_may_supply_a_required_one() {
    let dir = std::env::temp_dir().join(format!("infra-schema-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    std::fs::write(
        dir.join("main.tf"),
        r#"
        resource "google_cloud_run_v2_service" "service" {
          name     = "service"
          location = "europe-west1"
          scaling  = { min_instance_count = 1 }
          dynamic "template" {
            for_each = [1]
            content {
              containers {
                image = "image"
                ports { container_port = 1 }
                ports { container_port = 2 }
                env   = []
              }
            }
          }
        }
        resource "google_pubsub_topic" "topic" {
          name = "topic"
          labels { app = "saga" }
        }
        "#,
    )
    .expect("writing the configuration");
    let report = check(&schema(), &dir).expect("the configuration reads");
    std::fs::remove_dir_all(&dir).expect("removing the temporary directory");
    let found: Vec<String> = report
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect();
    assert_eq!(
        found,
        [
            "scaling: `scaling` is a block, not an argument: write `scaling { … }`",
            "template.containers.env: `env` is a block, not an argument: write `env { … }`",
            "template.containers.ports: at most one `ports` block is allowed, found 2",
            "labels: `labels` is an argument, not a block: write `labels = …`",
        ]
    );
}
