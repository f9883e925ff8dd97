# bosky's consumer, as infra/consumer.yaml: a rule delivering the chosen
# verdicts of one project to an SNS topic (a readable e-mail) and an SQS
# queue; a rule keeping every event in a log group, with metric filters, an
# alarm, a dashboard and the saved queries `bosky fleet` runs. Each pattern,
# filter, alarm, dashboard body, query and the e-mail's transformer equals
# its CloudFormation counterpart: tests/test_fleet_terraform.py compares them.

terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

data "aws_region" "current" {}

locals {
  dead_letter_arn = var.create_dead_letter_queue ? aws_sqs_queue.dead_letters[0].arn : null
}

# -- EventBridge rules -------------------------------------------------------------------

resource "aws_cloudwatch_event_rule" "verdicts" {
  name_prefix    = "bosky-verdicts-"
  description    = "bosky boot verdicts of ${var.project}"
  event_bus_name = var.event_bus_name
  # The field is "detail-type": "detailType" matches no event at all.
  event_pattern = <<-EOT
    {"detail-type": [${jsonencode(var.detail_type)}], "source": [${jsonencode(var.project)}], "detail": {"Status": ${jsonencode(var.statuses)}}}
  EOT
}

resource "aws_cloudwatch_event_rule" "history" {
  name_prefix    = "bosky-history-"
  description    = "bosky history of ${var.project}: every event, for metrics and bosky fleet"
  event_bus_name = var.event_bus_name
  event_pattern  = <<-EOT
    {"detail-type": [${jsonencode(var.detail_type)}], "source": [${jsonencode(var.project)}]}
  EOT
}

# The e-mail is the event in short (Detail "Alert"); the queue and the log
# group keep the whole event.
resource "aws_cloudwatch_event_target" "alerts" {
  rule           = aws_cloudwatch_event_rule.verdicts.name
  event_bus_name = var.event_bus_name
  target_id      = "alert-topic"
  arn            = aws_sns_topic.alerts.arn
  input_transformer {
    input_paths = {
      headline = "$.detail.Alert.Headline"
      message  = "$.detail.Alert.Message"
      modules  = "$.detail.Alert.Modules"
      lines    = "$.detail.Alert.LastLines"
      console  = "$.detail.Alert.Console"
      time     = "$.time"
      event    = "$.detail.EventId"
    }
    input_template = <<-EOT
      <headline>

      Message: <message>
      Failed modules: <modules>
      Last log lines: <lines>
      Instance: <console>

      Sent <time>, event <event>. The queue and the log group keep the whole event.
    EOT
  }
  dynamic "dead_letter_config" {
    for_each = var.create_dead_letter_queue ? [1] : []
    content {
      arn = local.dead_letter_arn
    }
  }
}

resource "aws_cloudwatch_event_target" "queue" {
  rule           = aws_cloudwatch_event_rule.verdicts.name
  event_bus_name = var.event_bus_name
  target_id      = "verdict-queue"
  arn            = aws_sqs_queue.verdicts.arn
  dynamic "dead_letter_config" {
    for_each = var.create_dead_letter_queue ? [1] : []
    content {
      arn = local.dead_letter_arn
    }
  }
}

resource "aws_cloudwatch_event_target" "log" {
  rule           = aws_cloudwatch_event_rule.history.name
  event_bus_name = var.event_bus_name
  target_id      = "verdict-log"
  # The log group's ARN without the ":*" its arn attribute ends with.
  arn = trimsuffix(aws_cloudwatch_log_group.verdicts.arn, ":*")
  dynamic "dead_letter_config" {
    for_each = var.create_dead_letter_queue ? [1] : []
    content {
      arn = local.dead_letter_arn
    }
  }
}

# -- SNS: e-mail alerts ---------------------------------------------------------------------

resource "aws_sns_topic" "alerts" {
  name_prefix  = "bosky-alerts-"
  display_name = "bosky ${var.project}"
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.alert_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = var.alert_email
}

# EventBridge and CloudWatch publish with the topic's resource policy, each
# limited to its own rule or alarm.
resource "aws_sns_topic_policy" "alerts" {
  arn = aws_sns_topic.alerts.arn
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AllowTheVerdictRule"
        Effect    = "Allow"
        Principal = { Service = "events.amazonaws.com" }
        Action    = "sns:Publish"
        Resource  = aws_sns_topic.alerts.arn
        Condition = { ArnEquals = { "aws:SourceArn" = aws_cloudwatch_event_rule.verdicts.arn } }
      },
      {
        Sid       = "AllowTheFailedBootsAlarm"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = "sns:Publish"
        Resource  = aws_sns_topic.alerts.arn
        Condition = { ArnEquals = { "aws:SourceArn" = aws_cloudwatch_metric_alarm.failed_boots.arn } }
      },
    ]
  })
}

# -- SQS: a queue for automation, and the dead-letter queue --------------------------------

resource "aws_sqs_queue" "verdicts" {
  name_prefix               = "bosky-verdicts-"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue_policy" "verdicts" {
  queue_url = aws_sqs_queue.verdicts.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AllowTheVerdictRule"
      Effect    = "Allow"
      Principal = { Service = "events.amazonaws.com" }
      Action    = "sqs:SendMessage"
      Resource  = aws_sqs_queue.verdicts.arn
      Condition = { ArnEquals = { "aws:SourceArn" = aws_cloudwatch_event_rule.verdicts.arn } }
    }]
  })
}

resource "aws_sqs_queue" "dead_letters" {
  count                     = var.create_dead_letter_queue ? 1 : 0
  name_prefix               = "bosky-dead-letters-"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue_policy" "dead_letters" {
  count     = var.create_dead_letter_queue ? 1 : 0
  queue_url = aws_sqs_queue.dead_letters[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AllowTheVerdictRuleDeadLetters"
      Effect    = "Allow"
      Principal = { Service = "events.amazonaws.com" }
      Action    = "sqs:SendMessage"
      Resource  = aws_sqs_queue.dead_letters[0].arn
      Condition = { ArnEquals = { "aws:SourceArn" = [aws_cloudwatch_event_rule.verdicts.arn,
      aws_cloudwatch_event_rule.history.arn] } }
    }]
  })
}

# -- CloudWatch Logs: the history, its policy, metrics, alarm, dashboard, queries ---------

resource "aws_cloudwatch_log_group" "verdicts" {
  # EventBridge's documentation and console expect /aws/events/ names.
  name              = "/aws/events/bosky/${var.project}"
  retention_in_days = var.log_retention_days
}

# A CloudWatch Logs target takes no role: EventBridge writes with this policy.
resource "aws_cloudwatch_log_resource_policy" "verdicts" {
  policy_name = "bosky-${var.project}"
  policy_document = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "TrustEventsToStoreLogEvent"
      Effect    = "Allow"
      Principal = { Service = ["events.amazonaws.com", "delivery.logs.amazonaws.com"] }
      Action    = ["logs:CreateLogStream", "logs:PutLogEvents"]
      Resource  = aws_cloudwatch_log_group.verdicts.arn
    }]
  })
}

resource "aws_cloudwatch_log_metric_filter" "verdicts" {
  name           = "bosky-verdicts"
  log_group_name = aws_cloudwatch_log_group.verdicts.name
  pattern        = "{ $.detail.Origin = \"boot\" }"
  metric_transformation {
    namespace = var.metric_namespace
    name      = "Verdicts"
    value     = "1"
    unit      = "Count"
    dimensions = {
      Project = "$.source"
      Status  = "$.detail.Status"
    }
  }
}

resource "aws_cloudwatch_log_metric_filter" "failed_boots" {
  name           = "bosky-failed-boots"
  log_group_name = aws_cloudwatch_log_group.verdicts.name
  pattern        = "{ ($.detail.Origin = \"boot\") && (($.detail.Status = \"fail\") || ($.detail.Status = \"timeout\")) }"
  metric_transformation {
    namespace     = var.metric_namespace
    name          = "FailedBoots"
    value         = "1"
    default_value = "0"
    unit          = "Count"
  }
}

resource "aws_cloudwatch_log_metric_filter" "boot_seconds" {
  name           = "bosky-boot-seconds"
  log_group_name = aws_cloudwatch_log_group.verdicts.name
  pattern        = "{ ($.detail.Origin = \"boot\") && ($.detail.BootSeconds >= 0) }"
  metric_transformation {
    namespace = var.metric_namespace
    name      = "BootSeconds"
    value     = "$.detail.BootSeconds"
    unit      = "Seconds"
    dimensions = {
      Project = "$.source"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "failed_boots" {
  alarm_name          = "bosky-${var.project}-failed-boots"
  alarm_description   = "bosky ${var.project}: ${var.failed_boots_threshold} or more boots failed or timed out within 5 minutes (log group ${aws_cloudwatch_log_group.verdicts.name})"
  namespace           = var.metric_namespace
  metric_name         = "FailedBoots"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.failed_boots_threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  # No verdicts at all is not a failure.
  treat_missing_data = "notBreaching"
  alarm_actions      = [aws_sns_topic.alerts.arn]
}

resource "aws_cloudwatch_dashboard" "fleet" {
  dashboard_name = "bosky-${var.project}"
  dashboard_body = <<-EOT
    {
      "widgets": [
        {"type": "metric", "x": 0, "y": 0, "width": 12, "height": 6,
         "properties": {
           "title": "Boot verdicts by status (${var.project})",
           "view": "timeSeries", "stacked": true, "region": "${data.aws_region.current.name}",
           "stat": "Sum", "period": 300,
           "metrics": [
             ["${var.metric_namespace}", "Verdicts", "Project", "${var.project}", "Status", "pass"],
             ["${var.metric_namespace}", "Verdicts", "Project", "${var.project}", "Status", "degraded"],
             ["${var.metric_namespace}", "Verdicts", "Project", "${var.project}", "Status", "fail"],
             ["${var.metric_namespace}", "Verdicts", "Project", "${var.project}", "Status", "timeout"]
           ]}},
        {"type": "metric", "x": 12, "y": 0, "width": 12, "height": 6,
         "properties": {
           "title": "Boot seconds, p50 and p95 (${var.project})",
           "view": "timeSeries", "region": "${data.aws_region.current.name}", "period": 300,
           "metrics": [
             ["${var.metric_namespace}", "BootSeconds", "Project", "${var.project}", {"stat": "p50", "label": "p50"}],
             ["${var.metric_namespace}", "BootSeconds", "Project", "${var.project}", {"stat": "p95", "label": "p95"}]
           ],
           "annotations": {"horizontal": [{"label": "slow", "value": ${var.slow_boot_seconds}}]}}},
        {"type": "log", "x": 0, "y": 6, "width": 24, "height": 8,
         "properties": {
           "title": "Boots by image, instance type and status",
           "region": "${data.aws_region.current.name}", "view": "table",
           "query": "SOURCE '${aws_cloudwatch_log_group.verdicts.name}' | filter detail.Origin = \"boot\" and ispresent(detail.EventId) and detail.Status in [\"pass\", \"fail\", \"degraded\", \"timeout\"]\n| fields coalesce(detail.BootId, detail.EventId) as boot\n| stats sortsFirst(detail.Status) as status, max(detail.BootSeconds) as seconds by source as project, detail.ImageId as image, detail.InstanceType as type, detail.InstanceId as instance, boot\n| stats count(*) as boots by project, image, type, status\n| limit 10000"}},
        {"type": "log", "x": 0, "y": 14, "width": 12, "height": 6,
         "properties": {
           "title": "BootSeconds p50 and p95 by image and instance type",
           "region": "${data.aws_region.current.name}", "view": "table",
           "query": "SOURCE '${aws_cloudwatch_log_group.verdicts.name}' | filter detail.Origin = \"boot\" and ispresent(detail.EventId) and detail.Status in [\"pass\", \"fail\", \"degraded\", \"timeout\"]\n| fields coalesce(detail.BootId, detail.EventId) as boot\n| stats sortsFirst(detail.Status) as status, max(detail.BootSeconds) as seconds by source as project, detail.ImageId as image, detail.InstanceType as type, detail.InstanceId as instance, boot\n| stats pct(seconds, 50) as p50, pct(seconds, 95) as p95 by project, image, type\n| limit 10000"}},
        {"type": "log", "x": 12, "y": 14, "width": 12, "height": 6,
         "properties": {
           "title": "Top failing modules",
           "region": "${data.aws_region.current.name}", "view": "table",
           "query": "SOURCE '${aws_cloudwatch_log_group.verdicts.name}' | filter detail.Origin = \"boot\" and ispresent(detail.EventId) and detail.Status = \"fail\"\n| fields coalesce(detail.BootId, detail.EventId) as boot, jsonParse(@message) as js\n| unnest js.detail.FailedModules into module\n| stats count(*) as events by source as project, detail.InstanceId as instance, boot, module\n| stats count(*) as failures by module\n| sort failures desc\n| limit 10000"}},
        {"type": "log", "x": 0, "y": 20, "width": 24, "height": 8,
         "properties": {
           "title": "Latest failed and timed-out boots",
           "region": "${data.aws_region.current.name}", "view": "table",
           "query": "SOURCE '${aws_cloudwatch_log_group.verdicts.name}' | filter detail.Origin = \"boot\" and ispresent(detail.EventId) and detail.Status in [\"pass\", \"fail\", \"degraded\", \"timeout\"]\n| fields coalesce(detail.BootId, detail.EventId) as boot\n| stats sortsFirst(detail.Status) as status, max(@timestamp) as last, latest(@message) as message by source as project, detail.InstanceId as instance, boot\n| filter status in [\"fail\", \"timeout\"]\n| sort last desc\n| limit 10"}}
      ]
    }
  EOT
}

# -- Logs Insights: the saved queries bosky fleet runs --------------------------------

resource "aws_cloudwatch_query_definition" "groups" {
  name            = "bosky/${var.project}/groups"
  log_group_names = [aws_cloudwatch_log_group.verdicts.name]
  # cc_bosky/fleet/insights.py's query "groups" (tests/test_fleet_terraform.py holds them equal).
  query_string = <<-EOT
    filter detail.Origin = "boot" and ispresent(detail.EventId) and detail.Status in ["pass", "fail", "degraded", "timeout"]
    | fields coalesce(detail.BootId, detail.EventId) as boot
    | stats sortsFirst(detail.Status) as status, max(detail.BootSeconds) as seconds by source as project, detail.ImageId as image, detail.InstanceType as type, detail.InstanceId as instance, boot
    | stats count(*) as boots by project, image, type, status
    | limit 10000
  EOT
}

resource "aws_cloudwatch_query_definition" "seconds" {
  name            = "bosky/${var.project}/seconds"
  log_group_names = [aws_cloudwatch_log_group.verdicts.name]
  # cc_bosky/fleet/insights.py's query "seconds" (tests/test_fleet_terraform.py holds them equal).
  query_string = <<-EOT
    filter detail.Origin = "boot" and ispresent(detail.EventId) and detail.Status in ["pass", "fail", "degraded", "timeout"]
    | fields coalesce(detail.BootId, detail.EventId) as boot
    | stats sortsFirst(detail.Status) as status, max(detail.BootSeconds) as seconds by source as project, detail.ImageId as image, detail.InstanceType as type, detail.InstanceId as instance, boot
    | stats pct(seconds, 50) as p50, pct(seconds, 95) as p95 by project, image, type
    | limit 10000
  EOT
}

resource "aws_cloudwatch_query_definition" "modules" {
  name            = "bosky/${var.project}/modules"
  log_group_names = [aws_cloudwatch_log_group.verdicts.name]
  # cc_bosky/fleet/insights.py's query "modules" (tests/test_fleet_terraform.py holds them equal).
  query_string = <<-EOT
    filter detail.Origin = "boot" and ispresent(detail.EventId) and detail.Status = "fail"
    | fields coalesce(detail.BootId, detail.EventId) as boot, jsonParse(@message) as js
    | unnest js.detail.FailedModules into module
    | stats count(*) as events by source as project, detail.InstanceId as instance, boot, module
    | stats count(*) as failures by module
    | sort failures desc
    | limit 10000
  EOT
}

resource "aws_cloudwatch_query_definition" "latest" {
  name            = "bosky/${var.project}/latest"
  log_group_names = [aws_cloudwatch_log_group.verdicts.name]
  # cc_bosky/fleet/insights.py's query "latest" (tests/test_fleet_terraform.py holds them equal).
  query_string = <<-EOT
    filter detail.Origin = "boot" and ispresent(detail.EventId) and detail.Status in ["pass", "fail", "degraded", "timeout"]
    | fields coalesce(detail.BootId, detail.EventId) as boot
    | stats sortsFirst(detail.Status) as status, max(@timestamp) as last, latest(@message) as message by source as project, detail.InstanceId as instance, boot
    | filter status in ["fail", "timeout"]
    | sort last desc
    | limit 10
  EOT
}
