# One identity per service, each allowed exactly what its code does.

locals {
  # Pub/Sub acts as this agent when it dead-letters a message and when it signs push tokens.
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # "service/topic" => the grant, one per topic in local.publishes.
  publisher_grants = {
    for grant in flatten([
      for service, topics in local.publishes : [
        for topic in topics : { service = service, topic = topic }
      ]
    ]) : "${grant.service}/${grant.topic}" => grant
  }
}

resource "google_service_account" "service" {
  for_each = local.services

  account_id   = "saga-${each.key}"
  display_name = "saga ${each.key}"
  description  = "Runs the ${each.key} Cloud Run service of the saga."

  depends_on = [google_project_service.api]
}

# Every service reads or writes Firestore: the four steps their records and documents, the
# frontend the status view. Firestore has no per-collection IAM: the narrowest grant is
# read-write on the project's databases.
resource "google_project_iam_member" "firestore" {
  for_each = local.services

  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.service[each.key].email}"
}

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = local.publisher_grants

  topic  = google_pubsub_topic.topic[each.value.topic].id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.service[each.value.service].email}"
}

# The identity Pub/Sub puts in push tokens. Only it may invoke the push workers.
resource "google_service_account" "push" {
  account_id   = "saga-push"
  display_name = "saga push"
  description  = "Identity in the OIDC tokens of the saga's push subscriptions."

  depends_on = [google_project_service.api]
}

resource "google_cloud_run_v2_service_iam_member" "push" {
  for_each = { for name, service in local.services : name => service if service.takes_pushes }

  name     = google_cloud_run_v2_service.service[each.key].name
  location = google_cloud_run_v2_service.service[each.key].location
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.push.email}"
}

# Pub/Sub agents created before 8 April 2021 lack the Service Agent role and need this to
# mint push tokens; for newer ones it is redundant. Granted on the push account only.
resource "google_service_account_iam_member" "agent_signs_push_tokens" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent

  depends_on = [google_project_service.api]
}

# Dead-lettering: Pub/Sub republishes the message to the dead-letter topic as its agent, and
# acks it on the source subscription; without both it neither moves messages nor counts
# delivery attempts.
resource "google_pubsub_topic_iam_member" "agent_publishes_dead_letters" {
  topic  = google_pubsub_topic.topic[local.dead_letter_topic].id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "agent_acks_dead_letters" {
  for_each = { for name, sub in local.push_subscriptions : name => sub if sub.dead_letter }

  subscription = google_pubsub_subscription.push[each.key].id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}
