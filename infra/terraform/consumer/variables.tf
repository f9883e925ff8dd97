# The same parameters as infra/consumer.yaml, with the same defaults.

variable "project" {
  type        = string
  description = "bosky's \"project\" setting: the Source of its events."
  validation {
    condition     = length(var.project) >= 1 && length(var.project) <= 256 && !startswith(var.project, "aws.")
    error_message = "1 to 256 characters, not starting with \"aws.\" (EventBridge reserves it)."
  }
}

variable "event_bus_name" {
  type        = string
  default     = "default"
  description = "Name of the event bus bosky sends to (its event_bus setting)."
}

variable "detail_type" {
  type        = string
  default     = "User Data"
  description = "bosky's detail_type setting."
}

variable "alert_email" {
  type        = string
  default     = ""
  description = "Address subscribed to the alert topic (it must confirm); empty: none."
}

variable "statuses" {
  type        = list(string)
  default     = ["fail", "timeout", "degraded"]
  description = "Verdicts to deliver to the topic and the queue."
}

variable "create_dead_letter_queue" {
  type    = bool
  default = true
}

variable "log_retention_days" {
  type    = number
  default = 30
}

variable "failed_boots_threshold" {
  type        = number
  default     = 3
  description = "The alarm fires when at least this many boots fail or time out within 5 minutes."
}

variable "slow_boot_seconds" {
  type        = number
  default     = 300
  description = "A line on the dashboard's boot seconds graph."
}

variable "metric_namespace" {
  type    = string
  default = "bosky"
}
