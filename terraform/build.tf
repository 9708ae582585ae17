# What `gcloud builds submit` needs before the first image exists: a builder identity that
# may push to the repository and write build logs, and a bucket for the uploaded sources.
# A dedicated identity, because the default build account may hold no roles at all (in
# organisations that disable the automatic grants to default service accounts) or far too
# many (Editor). `terraform apply -target=terraform_data.build_prerequisites` creates just
# these, and the APIs they need.

locals {
  build_sources_bucket = "${var.project_id}-saga-build-sources"
}

resource "google_service_account" "builder" {
  account_id   = "saga-builder"
  display_name = "saga builder"
  description  = "Runs cloudbuild.yaml: builds the service images and pushes them to Artifact Registry."

  depends_on = [google_project_service.api]
}

resource "google_artifact_registry_repository_iam_member" "builder_pushes" {
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.builder.email}"
}

resource "google_project_iam_member" "builder_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.builder.email}"
}

resource "google_storage_bucket" "build_sources" {
  #checkov:skip=CKV_GCP_62:Holds only source tarballs uploaded by gcloud builds submit, deleted after 7 days; Cloud Audit Logs already record who wrote them.
  #checkov:skip=CKV_GCP_78:Each upload is a new, uniquely named object that is never overwritten; versioning would only keep deleted tarballs longer.
  name                        = local.build_sources_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # The tarballs are disposable: destroying the deployment may delete them with the bucket.
  force_destroy = true

  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.api]
}

resource "google_storage_bucket_iam_member" "builder_reads_sources" {
  bucket = google_storage_bucket.build_sources.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.builder.email}"
}

# The target of the first, partial apply: depends on everything a build needs.
resource "terraform_data" "build_prerequisites" {
  input = {
    builder = google_service_account.builder.email
    bucket  = google_storage_bucket.build_sources.name
  }

  depends_on = [
    google_project_service.api,
    google_artifact_registry_repository_iam_member.builder_pushes,
    google_project_iam_member.builder_logs,
    google_storage_bucket_iam_member.builder_reads_sources,
  ]
}
