# The sweep (saga::contract::sweep): every minute Cloud Scheduler calls the janitor's
# /sweep, which ends the sagas that passed their deadline (SAGA_DEADLINE) and that no retry
# or dead letter will end. Cloud Scheduler in the same project counts as internal traffic
# for the janitor's internal-only ingress (Cloud Run "Restricting ingress"), and it calls
# with an OIDC token of its own account, which alone besides the push account may invoke
# the janitor, and which the janitor alone accepts on /sweep (SWEEP_SERVICE_ACCOUNT).

locals {
  sweep_path     = "/sweep"
  sweep_schedule = "* * * * *"
  # The fields of sagas/{uuid} the sweep's query filters (ended == 0) and orders by.
  sweep_index_fields = ["ended", "created"]
}

resource "google_service_account" "sweep" {
  account_id   = "saga-sweep"
  display_name = "saga sweep"
  description  = "Identity in the OIDC tokens of the Cloud Scheduler job that calls the janitor's sweep."

  depends_on = [google_project_service.api]
}

resource "google_cloud_run_v2_service_iam_member" "sweep" {
  name     = google_cloud_run_v2_service.service["janitor"].name
  location = google_cloud_run_v2_service.service["janitor"].location
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.sweep.email}"
}

resource "google_cloud_scheduler_job" "sweep" {
  name        = "saga-sweep"
  region      = var.region
  description = "Ends the sagas past their deadline (the janitor's ${local.sweep_path})."
  schedule    = local.sweep_schedule
  time_zone   = "Etc/UTC"
  # The janitor answers within its 20 s handler timeout; a sweep cut short is finished by
  # the next one, a minute later, so a failed run is not retried.
  attempt_deadline = "30s"

  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = "${google_cloud_run_v2_service.service["janitor"].uri}${local.sweep_path}"
    oidc_token {
      service_account_email = google_service_account.sweep.email
      audience              = local.push_audience["janitor"]
    }
  }

  depends_on = [
    google_project_service.api,
    google_cloud_run_v2_service_iam_member.sweep,
  ]
}

# The sweep's query: sagas with ended == 0, oldest created first.
resource "google_firestore_index" "open_sagas" {
  database    = google_firestore_database.default.name
  collection  = "sagas"
  query_scope = "COLLECTION"

  dynamic "fields" {
    for_each = local.sweep_index_fields
    content {
      field_path = fields.value
      order      = "ASCENDING"
    }
  }
}
