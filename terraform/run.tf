# The five services, one Cloud Run service (a container) each.

locals {
  # saga::server::HEALTH_PATH, on the port Cloud Run sends requests to (it sets PORT to it).
  health_path    = "/healthz"
  container_port = 8080

  # Exactly the variables each service reads that a deployment must set (the `Deployment`
  # ones of saga::config::reads). Cloud Run sets PORT and K_SERVICE itself; LOG_FORMAT and
  # RUST_LOG keep their defaults (JSON logs at INFO on Cloud Run).
  base_env = { PROJECT_ID = var.project_id }
  # PUSH_AUTH must match the service's invoker IAM setting: behind Cloud Run's check the
  # workers take only the tokens it stripped; without it they verify signatures themselves.
  push_env = {
    for name, audience in local.push_audience : name => {
      PUSH_AUTH            = var.invoker_iam_disabled ? "signature" : "cloud-run-iam"
      PUSH_AUDIENCE        = audience
      PUSH_SERVICE_ACCOUNT = google_service_account.push.email
    }
  }
  # GET /orders lists every user's orders to anyone: only when asked for.
  frontend_env = { ORDER_LIST = var.order_list_enabled ? "on" : "off" }
  # The sweep: how long a saga may run, and who may call it (sweep.tf).
  janitor_env = {
    SAGA_DEADLINE         = var.saga_deadline
    SWEEP_SERVICE_ACCOUNT = google_service_account.sweep.email
  }
  service_env = {
    frontend  = merge(local.base_env, local.frontend_env)
    orders    = merge(local.base_env, local.push_env["orders"])
    inventory = merge(local.base_env, local.push_env["inventory"])
    payments  = merge(local.base_env, local.push_env["payments"])
    janitor   = merge(local.base_env, local.push_env["janitor"], local.janitor_env)
  }
}

resource "google_cloud_run_v2_service" "service" {
  for_each = local.services

  name     = each.key
  location = var.region
  # Pub/Sub push from the same project counts as internal traffic, so the workers need no
  # public ingress; their run.invoker check then admits only the push account's tokens.
  ingress          = each.value.public ? "INGRESS_TRAFFIC_ALL" : "INGRESS_TRAFFIC_INTERNAL_ONLY"
  custom_audiences = [for name, audience in local.push_audience : audience if name == each.key]
  # The frontend is public through its allUsers grant; only the workers may opt out.
  invoker_iam_disabled = each.value.takes_pushes ? var.invoker_iam_disabled : false
  # A sample: `terraform destroy` should be able to remove it.
  deletion_protection = false

  template {
    service_account = google_service_account.service[each.key].email
    # No request is worth more than Pub/Sub waits for its answer.
    timeout                          = "${local.push_policy.ack_deadline_seconds}s"
    max_instance_request_concurrency = var.concurrency

    scaling {
      min_instance_count = 0
      max_instance_count = var.max_instances
    }

    containers {
      image = "${local.image_base}/${each.key}:${var.image_tag}"

      ports {
        container_port = local.container_port
      }

      dynamic "env" {
        for_each = local.service_env[each.key]
        content {
          name  = env.key
          value = env.value
        }
      }

      resources {
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
        # CPU only while a request is in flight: every step finishes its work, publishing
        # included, before it answers.
        cpu_idle          = true
        startup_cpu_boost = true
      }

      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = 2
        timeout_seconds       = 1
        failure_threshold     = 30
        http_get {
          path = local.health_path
          port = local.container_port
        }
      }

      liveness_probe {
        period_seconds    = 30
        timeout_seconds   = 5
        failure_threshold = 3
        http_get {
          path = local.health_path
          port = local.container_port
        }
      }
    }
  }

  # Start serving only once the service can do its work.
  depends_on = [
    google_firestore_database.default,
    google_project_iam_member.firestore,
    google_pubsub_topic_iam_member.publisher,
  ]
}

# The frontend takes orders from anyone, as the original did.
resource "google_cloud_run_v2_service_iam_member" "public" {
  for_each = { for name, service in local.services : name => service if service.public }

  name     = google_cloud_run_v2_service.service[each.key].name
  location = google_cloud_run_v2_service.service[each.key].location
  role     = "roles/run.invoker"
  member   = "allUsers"
}
