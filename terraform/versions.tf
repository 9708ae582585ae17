terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
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
