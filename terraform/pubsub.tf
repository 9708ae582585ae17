# Topics and subscriptions, built from the locals in topology.tf.

locals {
  # The audience of the push tokens for each worker, and the value of its PUSH_AUDIENCE. A
  # custom audience, not the service's run.app URL: the URL is only known once the service
  # exists, and the service's own environment would then depend on itself.
  push_audience = {
    for name, service in local.services :
    name => "//run.googleapis.com/projects/${var.project_id}/locations/${var.region}/services/${name}"
    if service.takes_pushes
  }
}

resource "google_pubsub_topic" "topic" {
  #checkov:skip=CKV_GCP_83:The messages are orders of a sample shop, kept at most 7 days; Google-managed encryption at rest is enough, and a customer-managed key would add a KMS key ring and its IAM to a sample deployment.
  for_each = toset(local.topics)

  name = each.value

  depends_on = [google_project_service.api]
}

resource "google_pubsub_subscription" "push" {
  for_each = local.push_subscriptions

  name                       = each.key
  topic                      = google_pubsub_topic.topic[each.value.topic].id
  ack_deadline_seconds       = local.push_policy.ack_deadline_seconds
  message_retention_duration = local.retention

  push_config {
    push_endpoint = "${google_cloud_run_v2_service.service[each.value.service].uri}${each.value.path}"
    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = local.push_audience[each.value.service]
    }
  }

  # A 5xx answer is a transient failure: retry with exponential backoff.
  retry_policy {
    minimum_backoff = local.push_policy.minimum_backoff
    maximum_backoff = local.push_policy.maximum_backoff
  }

  dynamic "dead_letter_policy" {
    for_each = each.value.dead_letter ? [local.dead_letter_topic] : []
    content {
      dead_letter_topic     = google_pubsub_topic.topic[dead_letter_policy.value].id
      max_delivery_attempts = local.push_policy.max_delivery_attempts
    }
  }

  # Never expire for inactivity: a quiet week must not delete the saga's wiring.
  expiration_policy {
    ttl = ""
  }

  # Pushes start as soon as the subscription exists: let them through from the start.
  depends_on = [
    google_cloud_run_v2_service_iam_member.push,
    google_service_account_iam_member.agent_signs_push_tokens,
  ]
}

resource "google_pubsub_subscription" "pull" {
  for_each = local.pull_subscriptions

  name                       = each.key
  topic                      = google_pubsub_topic.topic[each.value.topic].id
  message_retention_duration = local.retention

  expiration_policy {
    ttl = ""
  }
}
