# The saga's topology, as data. It mirrors functions/saga/src/contract.rs, which the local
# stack and the tests read directly; tools/infra/tests/drift.rs evaluates these locals and
# the resources built from them, and fails on any difference from the contract. Change
# both together.

locals {
  # Every Cloud Run service. `public`: reachable from the internet (only the frontend, which
  # takes orders over HTTP). `takes_pushes`: a push subscription delivers to it, so it must
  # verify push tokens and only the push account may invoke it.
  services = {
    frontend  = { public = true, takes_pushes = false }
    orders    = { public = false, takes_pushes = true }
    inventory = { public = false, takes_pushes = true }
    payments  = { public = false, takes_pushes = true }
    janitor   = { public = false, takes_pushes = true }
  }

  topics            = ["frontend", "order-created", "inventory-updated", "payment-created", "error", "compensated", "dead-letter"]
  dead_letter_topic = "dead-letter"

  # The topics each service publishes to, and only those (Service::publishes()). The
  # workers publish to dead-letter themselves when a message is poison. The janitor also
  # publishes a step's stored message when Pub/Sub gave up on a step that had already
  # committed it, so that the saga goes on instead of stalling with stock reserved.
  publishes = {
    frontend  = ["frontend"]
    orders    = ["order-created", "error", "dead-letter"]
    inventory = ["inventory-updated", "error", "dead-letter"]
    payments  = ["payment-created", "error", "dead-letter"]
    janitor   = ["order-created", "inventory-updated", "payment-created", "error", "compensated", "dead-letter"]
  }

  # Subscription name => the topic it reads, the service it pushes to, the path, and whether
  # failed deliveries move to the dead-letter topic (not for the reader of that topic itself).
  push_subscriptions = {
    "frontend-sub"            = { topic = "frontend", service = "orders", path = "/push/frontend", dead_letter = true }
    "order-created-sub"       = { topic = "order-created", service = "inventory", path = "/push/order-created", dead_letter = true }
    "inventory-updated-sub"   = { topic = "inventory-updated", service = "payments", path = "/push/inventory-updated", dead_letter = true }
    "error-sub"               = { topic = "error", service = "janitor", path = "/push/error", dead_letter = true }
    "dead-letter-janitor-sub" = { topic = "dead-letter", service = "janitor", path = "/push/dead-letter", dead_letter = false }
  }

  # Subscriptions people read with `gcloud pubsub subscriptions pull`.
  pull_subscriptions = {
    "payment-created-sub" = { topic = "payment-created" }
    "error-cli-sub"       = { topic = "error" }
    "compensated-sub"     = { topic = "compensated" }
    "dead-letter-sub"     = { topic = "dead-letter" }
  }

  # Delivery policy of every push subscription (PUSH_POLICY). The ack deadline outlasts the
  # services' 20 s handler timeout, so a slow delivery is answered 503 before Pub/Sub
  # redelivers it.
  push_policy = {
    ack_deadline_seconds  = 30
    minimum_backoff       = "1s"
    maximum_backoff       = "60s"
    max_delivery_attempts = 5
  }

  # How long every subscription keeps messages nobody has acked (RETENTION: 7 days).
  retention = "604800s"
}
