output "rule_arn" {
  value = aws_cloudwatch_event_rule.verdicts.arn
}

output "alert_topic_arn" {
  value = aws_sns_topic.alerts.arn
}

output "verdict_queue_url" {
  value = aws_sqs_queue.verdicts.url
}

output "verdict_queue_arn" {
  value = aws_sqs_queue.verdicts.arn
}

output "dead_letter_queue_url" {
  value = var.create_dead_letter_queue ? aws_sqs_queue.dead_letters[0].url : null
}

output "log_group_name" {
  description = "Where every event of the project is kept (bosky fleet --log-group NAME)."
  value       = aws_cloudwatch_log_group.verdicts.name
}

output "history_rule_arn" {
  value = aws_cloudwatch_event_rule.history.arn
}

output "failed_boots_alarm_name" {
  value = aws_cloudwatch_metric_alarm.failed_boots.alarm_name
}

output "dashboard_name" {
  value = aws_cloudwatch_dashboard.fleet.dashboard_name
}
