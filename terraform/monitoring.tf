# Alerting: what a person has to look at. The saga ends every order by itself (Pub/Sub's
# retries, dead letters, the sweep); these policies fire when it cannot, or when something
# arrived that no code can judge. Each notifies the e-mail addresses in var.alert_emails;
# with none, their incidents show only on the console's Monitoring > Alerting page.
# tools/infra/tests/drift.rs checks them against the saga's contract.

locals {
  # The janitor's warnings when a sweep cannot do its work (saga::contract::sweep): once
  # for each saga past its deadline that it could not end (each sweep tries again, so such
  # a saga logs it every minute until a person acts), and once for a sweep that could not
  # list the open sagas at all. /sweep answers 200 to the first, so Cloud Scheduler's runs
  # look fine: these lines are the signal.
  sweep_not_ended_message  = "the sweep could not end a saga; the next sweep tries again"
  sweep_not_listed_message = "the sweep could not list open sagas"

  # A push subscription whose oldest message has waited this long is stuck: Pub/Sub gives a
  # message at most about 8 minutes of retries, push backoff included, before it
  # dead-letters it (PUSH_POLICY's retry horizon), so only a backlog the workers cannot drain, or the janitor failing on
  # its dead letters (which are never dead-lettered again), keeps one waiting longer.
  stuck_push_seconds = 600

  # The uptime check's request and the answer it looks for (saga::contract::uptime): a
  # status lookup of the nil uuid, which no saga has, so the frontend answers 404 "no saga
  # with uuid" once Firestore said so. Not /healthz, which answers without Firestore and is
  # among the paths ending in "z" that Cloud Run keeps for itself on a service's URL.
  uptime_path      = "/orders/00000000-0000-0000-0000-000000000000"
  uptime_status    = 404
  uptime_not_found = "no saga with uuid"

  # Every policy notifies every address in var.alert_emails.
  alert_channels = [for channel in google_monitoring_notification_channel.email : channel.id]
}

resource "google_monitoring_notification_channel" "email" {
  for_each = toset(var.alert_emails)

  display_name = "saga alerts: ${each.value}"
  type         = "email"
  labels = {
    email_address = each.value
  }

  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "dead_letters" {
  display_name          = "saga: messages were dead-lettered"
  combiner              = "OR"
  notification_channels = local.alert_channels

  # Letters arriving, not letters kept: dead-letter-sub keeps a copy of every letter for 7
  # days, so its backlog would hold an incident open for a week and hide the letters after
  # the first. Every letter, whoever dead-lettered it, is also pushed to the janitor, which
  # acks each once it has handled it (kept ones too); the pushes it fails and Pub/Sub
  # retries are not counted, and a letter it keeps failing on trips stuck_push instead.
  conditions {
    display_name = "letters the janitor took from dead-letter-janitor-sub"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${google_pubsub_subscription.push["dead-letter-janitor-sub"].name}\" AND metric.type = \"pubsub.googleapis.com/subscription/push_request_count\" AND metric.labels.response_class = \"ack\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      # No letters, no data point: the incident closes once a window holds none, so the next
      # letter notifies again.
      evaluation_missing_data = "EVALUATION_MISSING_DATA_INACTIVE"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      Messages went to the dead-letter topic in the last 5 minutes: poison messages (their
      `saga_dead_letter_reason` attribute says what is wrong, never quoting them), or
      messages Pub/Sub gave up delivering after ${local.push_policy.max_delivery_attempts}
      attempts (their `CloudPubSubDeadLetterSourceSubscription` attribute names the
      subscription): a step that fails every push shows here. The janitor has already ended
      the saga of each letter it could.

      `dead-letter-sub` keeps a copy of every letter for 7 days. `sagactl dead-letters` lists
      them with their reasons, and docs/operations.md ("What to do for each dead-letter
      reason") says what each needs: most need only a look; `sagactl redrive` sends back
      what failed for a cause since fixed.
    EOT
  }

  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "stuck_push" {
  for_each = local.push_subscriptions

  display_name          = "saga: ${each.key} is not being delivered"
  combiner              = "OR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "the oldest message of ${each.key} has waited ${local.stuck_push_seconds}s"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${google_pubsub_subscription.push[each.key].name}\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = local.stuck_push_seconds
      duration        = "60s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      Pub/Sub has held a message of `${each.key}` (pushed to the ${each.value.service}
      service's `${each.value.path}`) for more than ${local.stuck_push_seconds} seconds, longer
      than its retries of one message last: a backlog the ${each.value.service} service
      cannot drain (its instances at max_instances, or most pushes answered with an error;
      its logs at severity WARNING or above say why), or, on `dead-letter-janitor-sub`,
      letters the janitor keeps failing on (they are never dead-lettered again). A step that
      fails every push usually has its messages dead-lettered sooner, and the dead-letter
      alert fires; with a large backlog Pub/Sub slows its pushes and both can fire. Orders are not lost meanwhile: each saga is ended by its
      retries or by the sweep.
    EOT
  }

  depends_on = [google_project_service.api]
}

# Counts the janitor's warnings about a sweep that could not do its work, for the policy
# below.
resource "google_logging_metric" "sweep_not_ended" {
  name        = "saga/sweep_not_ended"
  description = "Sagas past their deadline that a sweep could not end (one count per saga per sweep), and sweeps that could not list the open sagas."
  filter      = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = \"${google_cloud_run_v2_service.service["janitor"].name}\" AND severity = WARNING AND jsonPayload.message = (\"${local.sweep_not_ended_message}\" OR \"${local.sweep_not_listed_message}\")"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }

  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "sweep_not_ended" {
  display_name          = "saga: a saga past its deadline cannot be ended"
  combiner              = "OR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "the sweep could not end a saga, or list the open ones, for 10 minutes"
    # A sweep runs every minute and warns again each time, so what persists counts 5 in
    # every 5 minutes; a blip (Firestore unavailable for one sweep, say) does not stay
    # above 2 for 10 minutes.
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.sweep_not_ended.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 2
      duration        = "600s"
      # No warnings, no data point: the incident closes once the sweep stops warning.
      evaluation_missing_data = "EVALUATION_MISSING_DATA_INACTIVE"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
        # One count across the janitor's revisions and instances.
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      A sweep found a saga past its deadline (${var.saga_deadline}) that it could neither move
      on nor compensate, most often because one of its records cannot be read as the saga's;
      it holds whatever stock it reserved until a person acts. Or a sweep could not list the
      open sagas at all (Firestore unreachable from the janitor, or the sweep's index not
      serving). The janitor's warnings name the saga's `uuid` and why:

          gcloud logging read 'resource.type="cloud_run_revision" AND severity=WARNING AND jsonPayload.message=("${local.sweep_not_ended_message}" OR "${local.sweep_not_listed_message}")' --project=${var.project_id} --freshness=1d --format='table(timestamp, jsonPayload.message, jsonPayload.uuid, jsonPayload.view, jsonPayload.action, jsonPayload.why, jsonPayload.error)'

      Then `sagactl sweep --dry-run` and `sagactl show UUID` (docs/operations.md, "The saga
      deadline and the sweep", says what each case needs).
    EOT
  }

  depends_on = [google_project_service.api]
}

# The frontend, from outside: every minute from Google's checkers in several locations. None
# of the alerts above can see a frontend that cannot answer (instances that crash or do not
# start, the public grant gone, Firestore failing from it): nothing then flows to alert on.
resource "google_monitoring_uptime_check_config" "frontend" {
  display_name = "saga: the frontend answers a status lookup"
  period       = "60s"
  timeout      = "10s"

  http_check {
    request_method = "GET"
    path           = local.uptime_path
    port           = 443
    use_ssl        = true
    validate_ssl   = true
    accepted_response_status_codes {
      status_value = local.uptime_status
    }
  }

  content_matchers {
    content = local.uptime_not_found
    matcher = "CONTAINS_STRING"
  }

  monitored_resource {
    type = "uptime_url"
    labels = {
      project_id = var.project_id
      host       = trimprefix(google_cloud_run_v2_service.service["frontend"].uri, "https://")
    }
  }

  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "frontend_down" {
  display_name          = "saga: the frontend does not answer"
  combiner              = "OR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "the uptime check fails from more than one location for 5 minutes"
    condition_threshold {
      filter          = "resource.type = \"uptime_url\" AND metric.type = \"monitoring.googleapis.com/uptime_check/check_passed\" AND metric.labels.check_id = \"${google_monitoring_uptime_check_config.frontend.uptime_check_id}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 1
      duration        = "300s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_NEXT_OLDER"
        # How many checker locations failed: one location's network trouble does not page.
        cross_series_reducer = "REDUCE_COUNT_FALSE"
        group_by_fields      = ["resource.label.host"]
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      The frontend does not answer GET ${local.uptime_path} with ${local.uptime_status} "${local.uptime_not_found}"
      from more than one of Google's checker locations: it cannot answer, or cannot read
      Firestore, so orders are most likely not being taken either. Look at the service and
      at its own warnings (the checks' 404s are in Cloud Run's request log, left out here):

          gcloud run services describe frontend --region=${var.region} --project=${var.project_id}
          gcloud logging read 'resource.type="cloud_run_revision" AND resource.labels.service_name="frontend" AND severity>=WARNING AND NOT logName:"run.googleapis.com%2Frequests"' --project=${var.project_id} --freshness=1h

      A 503 "unavailable" is Firestore failing from it (or its account without access); a 403
      is the public grant gone; no answer or 5xx without the frontend's own lines is
      instances that crash or do not start. Orders already accepted go on through the other
      services.
    EOT
  }

  depends_on = [google_project_service.api]
}
