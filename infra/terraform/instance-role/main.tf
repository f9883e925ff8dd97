# bosky's instance role, as infra/instance-role.yaml: exactly the statements
# `bosky --permissions` prints (tests/test_fleet_terraform.py compares them):
# PutEvents on one bus for bosky's Source and DetailType only, and, when
# named, the lifecycle hook's group and the stack to signal.

terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

variable "project" {
  type        = string
  description = "bosky's project setting (the events' Source)."
}

variable "event_bus_name" {
  type        = string
  default     = "default"
  description = "The event bus name, or the ARN of a bus in another account."
}

variable "detail_type" {
  type    = string
  default = "User Data"
}

variable "auto_scaling_group_name" {
  type        = string
  default     = ""
  description = "The group whose lifecycle hook bosky completes; empty: none."
}

variable "stack_name" {
  type        = string
  default     = ""
  description = "The stack bosky signals (cfn_signal); empty: none."
}

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  bus_arn = startswith(var.event_bus_name, "arn:") ? var.event_bus_name : "arn:${data.aws_partition.current.partition}:events:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:event-bus/${var.event_bus_name}"
}

data "aws_iam_policy_document" "assume" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "bosky" {
  # Without the conditions an instance could put any other source's events
  # on the bus; the original bosky granted Resource "*".
  statement {
    sid       = "BoskyPutEvents"
    effect    = "Allow"
    actions   = ["events:PutEvents"]
    resources = [local.bus_arn]
    condition {
      test     = "StringEquals"
      variable = "events:source"
      values   = [var.project]
    }
    condition {
      test     = "StringEquals"
      variable = "events:detail-type"
      values   = [var.detail_type]
    }
  }

  dynamic "statement" {
    for_each = var.auto_scaling_group_name == "" ? [] : [var.auto_scaling_group_name]
    content {
      sid       = "BoskyLifecycleHook"
      effect    = "Allow"
      actions   = ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"]
      resources = ["arn:${data.aws_partition.current.partition}:autoscaling:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:autoScalingGroup:*:autoScalingGroupName/${statement.value}"]
    }
  }

  dynamic "statement" {
    for_each = var.stack_name == "" ? [] : [var.stack_name]
    content {
      sid       = "BoskySignalStack"
      effect    = "Allow"
      actions   = ["cloudformation:SignalResource"]
      resources = ["arn:${data.aws_partition.current.partition}:cloudformation:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:stack/${statement.value}/*"]
    }
  }
}

resource "aws_iam_role" "bosky" {
  name_prefix        = "bosky-"
  description        = "EC2 instances reporting boot verdicts as ${var.project}"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

resource "aws_iam_role_policy" "bosky" {
  name   = "bosky"
  role   = aws_iam_role.bosky.id
  policy = data.aws_iam_policy_document.bosky.json
}

resource "aws_iam_instance_profile" "bosky" {
  name_prefix = "bosky-"
  role        = aws_iam_role.bosky.name
}

output "role_arn" {
  value = aws_iam_role.bosky.arn
}

output "instance_profile_name" {
  description = "Use as the instances' iam_instance_profile."
  value       = aws_iam_instance_profile.bosky.name
}

output "instance_profile_arn" {
  value = aws_iam_instance_profile.bosky.arn
}
