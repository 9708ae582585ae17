terraform {
  required_version = ">= 1.5"

  required_providers {
    # Exactly the range whose ends this configuration has been checked against: tools/infra's
    # schema-check (run by .ci/infra) finds every resource, data source, argument and block
    # used here, and every required one set, in the schemas of hashicorp/google 6.50.0 and
    # 8.7.0, as the CDK provider packages cdktf-cdktf-provider-google 16.12.1 and
    # cdktn-provider-google 21.1.0 ship them. To allow a newer provider, check its package
    # there first.
    google = {
      source  = "hashicorp/google"
      version = ">= 6.50.0, <= 8.7.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

# The project number names the Pub/Sub service agent, which dead-letters messages and signs
# push tokens on the saga's behalf.
data "google_project" "this" {
  project_id = var.project_id
}
