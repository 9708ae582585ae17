output "frontend_url" {
  description = "Public URL of the frontend: its page at /, POST /order, GET /orders/{uuid}, and GET /orders if order_list_enabled."
  value       = google_cloud_run_v2_service.service["frontend"].uri
}

output "try_it" {
  description = "The original's examples against the deployed frontend, ready to paste."
  value       = <<-EOT
    # a saga that succeeds
    curl -X POST ${google_cloud_run_v2_service.service["frontend"].uri}/order -H 'Content-Type: application/json' -d '{"item":"widget","quantity":50,"user":"jack"}'
    # payment failure -> compensation upstream
    curl -X POST ${google_cloud_run_v2_service.service["frontend"].uri}/order -H 'Content-Type: application/json' -d '{"item":"wotsit","quantity":80,"user":"jill","payment-error":"null"}'
    # inventory failure -> compensation upstream
    curl -X POST ${google_cloud_run_v2_service.service["frontend"].uri}/order -H 'Content-Type: application/json' -d '{"item":"wotsit","quantity":500000,"user":"jill"}'
    # orders failure (unknown user) -> nothing to compensate
    curl -X POST ${google_cloud_run_v2_service.service["frontend"].uri}/order -H 'Content-Type: application/json' -d '{"item":"widget","quantity":25,"user":"jimbo"}'
    # one saga's status (UUID from the POST's answer)
    curl ${google_cloud_run_v2_service.service["frontend"].uri}/orders/UUID
    # the latest sagas of everyone: only with order_list_enabled = true (else 404)
    curl '${google_cloud_run_v2_service.service["frontend"].uri}/orders?limit=20'
    # or place orders and watch them in a browser: ${google_cloud_run_v2_service.service["frontend"].uri}/
  EOT
}

output "pull_outcomes" {
  description = "Read the outcomes from the pull subscriptions."
  value       = <<-EOT
    gcloud pubsub subscriptions pull payment-created-sub --auto-ack --limit=10 --project=${var.project_id}
    gcloud pubsub subscriptions pull error-cli-sub --auto-ack --limit=10 --project=${var.project_id}
    gcloud pubsub subscriptions pull compensated-sub --auto-ack --limit=10 --project=${var.project_id}
    gcloud pubsub subscriptions pull dead-letter-sub --limit=10 --format=json --project=${var.project_id}  # no --auto-ack: an acked letter is gone
  EOT
}

output "saga_logs" {
  description = "Every log line of one saga, across the five services, oldest first: by the trace_id or the uuid that POST /order answered with."
  value       = <<-EOT
    gcloud logging read 'trace="projects/${var.project_id}/traces/TRACE_ID"' --project=${var.project_id} --freshness=1d --order=asc --format='table(timestamp, resource.labels.service_name, severity, jsonPayload.message)'
    gcloud logging read 'resource.type="cloud_run_revision" AND jsonPayload.uuid="UUID"' --project=${var.project_id} --freshness=1d --order=asc --format='table(timestamp, resource.labels.service_name, severity, jsonPayload.message)'
  EOT
}

output "build_command" {
  description = "Builds and pushes the five images as the builder account (run from the repository root); TAG is the image tag to pass to terraform as image_tag."
  value       = "gcloud builds submit --project=${var.project_id} --region=${var.region} --config=cloudbuild.yaml --service-account=${google_service_account.builder.id} --gcs-source-staging-dir=gs://${google_storage_bucket.build_sources.name}/source --substitutions=_REGION=${var.region},_REPOSITORY=${var.repository},_MANUAL_TAG=TAG ."
}

output "images" {
  description = "The images the services run."
  value       = { for name, service in google_cloud_run_v2_service.service : name => service.template[0].containers[0].image }
}
