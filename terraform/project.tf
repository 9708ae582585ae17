locals {
  apis = [
    "run.googleapis.com",
    "pubsub.googleapis.com",
    "firestore.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "storage.googleapis.com",
    "cloudscheduler.googleapis.com",
  ]

  image_base = "${var.region}-docker.pkg.dev/${var.project_id}/${var.repository}"
}

resource "google_project_service" "api" {
  for_each = toset(local.apis)

  service = each.value
  # Other things in the project may use these APIs too: destroying the saga leaves them on.
  disable_on_destroy = false
}

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:The images hold only the saga's open-source binaries; Google-managed encryption at rest is enough, and a customer-managed key would add a KMS key ring to a sample deployment.
  location      = var.region
  repository_id = var.repository
  format        = "DOCKER"
  description   = "Images of the five saga services, pushed by cloudbuild.yaml."

  # Every build pushes five new images; keep the recent ones and drop untagged leftovers.
  cleanup_policies {
    id     = "delete-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "604800s"
    }
  }
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }

  depends_on = [google_project_service.api]
}

# Native mode: the services use the Firestore API (documents, preconditions, atomic
# commits), which a Datastore-mode database does not serve.
resource "google_firestore_database" "default" {
  name        = "(default)"
  location_id = coalesce(var.firestore_location, var.region)
  type        = "FIRESTORE_NATIVE"

  # The orders, the stock and every saga's records are the product's data: with
  # firestore_protection, any minute of the last 7 days can be read and exported as it was
  # (a stock level typed wrong, a bug's writes), and the database cannot be deleted until
  # the protection is turned off. `terraform destroy` leaves it in place either way.
  point_in_time_recovery_enablement = var.firestore_protection ? "POINT_IN_TIME_RECOVERY_ENABLED" : "POINT_IN_TIME_RECOVERY_DISABLED"
  delete_protection_state           = var.firestore_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = "ABANDON"

  depends_on = [google_project_service.api]
}

# Idempotency keys of POST /order are honoured for 24 hours (their expires_at); the TTL
# policy then deletes them, so the collection does not grow for ever. TTL deletion runs
# within about a day after expiry; the frontend treats an expired key as free meanwhile.
resource "google_firestore_field" "idempotency_key_ttl" {
  database   = google_firestore_database.default.name
  collection = "idempotency-keys"
  field      = "expires_at"

  ttl_config {}
  # Nothing queries by this field: no index to maintain.
  index_config {}
}

# Each write of an item's stock by the saga (a batch of sales or of returns) stamps it with
# the commit's time (written_at), which the stock's write gap counts from. Firestore indexes every field unless told otherwise, and an
# indexed field whose value only grows, written across a collection at a high rate, makes
# a hotspot in its index ("Best practices", "Index exemptions"). Nothing queries by it.
resource "google_firestore_field" "inventory_written_at" {
  database   = google_firestore_database.default.name
  collection = "inventory"
  field      = "written_at"

  index_config {}
}
