variable "project_id" {
  description = "The Google Cloud project to deploy the saga into."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run services, the Artifact Registry repository and the build bucket."
  type        = string
  default     = "europe-west1"
}

variable "firestore_location" {
  description = "Location of the Firestore database (a region such as europe-west1, or a multi-region such as eur3 or nam5). Defaults to var.region. Cannot be changed once the database exists."
  type        = string
  default     = null
}

variable "firestore_protection" {
  description = "Keep the Firestore database recoverable: point-in-time recovery (any minute of the last 7 days can be read and exported as it was; billed as storage of the versions kept) and delete protection (the database cannot be deleted until this is false). Set false for a throwaway project; on an imported database, false turns off protection someone may have set on purpose."
  type        = bool
  default     = true
}

variable "image_tag" {
  description = "Tag of the five service images in the Artifact Registry repository, as pushed by cloudbuild.yaml (the commit's short SHA, or the _MANUAL_TAG of a manual build)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag must be a Docker tag: letters, digits, '_', '.' and '-', at most 128 characters."
  }
}

variable "repository" {
  description = "Artifact Registry repository id that holds the images."
  type        = string
  default     = "saga"
}

variable "max_instances" {
  description = "Most instances each service may scale out to; caps the cost of a runaway load."
  type        = number
  default     = 3
}

variable "concurrency" {
  description = "Most requests one instance serves at once. The handlers are async and mostly wait on Firestore and Pub/Sub, so one CPU serves many."
  type        = number
  default     = 80
}

variable "invoker_iam_disabled" {
  description = "Turn off Cloud Run's invoker IAM check on the four push workers. Off (false) by default: Cloud Run then verifies each push token and the push account's run.invoker role, strips the token's signature, and the workers check its claims (PUSH_AUTH=cloud-run-iam). When true, nothing checks the token before the workers, which then verify its signature themselves (PUSH_AUTH=signature)."
  type        = bool
  default     = false
}

variable "order_list_enabled" {
  description = "Let anyone list the latest orders of every user with GET /orders on the frontend (ORDER_LIST=on). Off (false) by default: that list shows everyone's names, items and totals, and the uuids that otherwise keep GET /orders/{uuid} unguessable. With it off, GET /orders answers 404 and the page follows only the orders placed from the browser and the uuids pasted into it."
  type        = bool
  default     = false
}

variable "saga_deadline" {
  description = "How long a saga may run, from when the frontend accepted it, before the sweep (Cloud Scheduler, every minute) ends it: relaying a message that never got out, or else compensating it as timed_out. A whole number of seconds, minutes or hours such as 10m or 600s, at least 8m: no shorter than Pub/Sub's retries of one message, its push backoff included (SAGA_DEADLINE). Pub/Sub gives up on a failing message within about 3 minutes (8 at most with its push backoff), and the janitor then ends its saga; the sweep is for what they cannot (and for a backlog still waiting after an outage longer than the deadline)."
  type        = string
  default     = "10m"
  validation {
    condition     = can(regex("^((4[89][0-9]|[5-9][0-9]{2}|[1-9][0-9]{3,})s|([89]|[1-9][0-9]+)m|[1-9][0-9]*h)$", var.saga_deadline))
    error_message = "saga_deadline is a whole number followed by s, m or h, at least 8m (480s), such as 10m."
  }
}

variable "alert_emails" {
  description = "E-mail addresses the alerting policies of monitoring.tf notify: the frontend not answering its uptime check, dead letters arriving, a push subscription not being delivered, a saga the sweep cannot end. Empty by default: the policies exist all the same, and their incidents show on the console's Monitoring > Alerting page."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for email in var.alert_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", email))])
    error_message = "alert_emails holds e-mail addresses, such as ops@example.com."
  }
}
