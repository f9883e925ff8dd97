"""The least-privilege IAM policy an instance needs: bosky's events, and the
lifecycle hook and stack signal when the verdict is configured to act."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from .. import arns


def put_events_policy(
    project: str,
    detail_type: str,
    event_bus: Optional[str],
    region: Optional[str],
    account_id: Optional[str],
) -> Dict[str, Any]:
    """PutEvents on one bus, only for bosky's Source and DetailType.

    The conditions keep a compromised instance from forging other sources'
    events on the same bus; the original bosky granted ``Resource: *``.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "BoskyPutEvents",
                "Effect": "Allow",
                "Action": "events:PutEvents",
                "Resource": arns.event_bus_arn(event_bus, region, account_id),
                "Condition": {
                    "StringEquals": {
                        "events:source": project,
                        "events:detail-type": detail_type,
                    }
                },
            }
        ],
    }


def action_statements(lifecycle_hook: Any, cfn_signal: Any, region: Optional[str],
                      account_id: Optional[str]) -> List[Dict[str, Any]]:
    """The statements the configured actions need, and nothing for what is not configured.

    The hook's calls are limited to the group when the stanza names it (else
    any group: the name is discovered on the instance), the signal to the
    stack when it is named; DescribeAutoScalingInstances, which takes no
    resource, only when the group must be discovered.
    """
    from ..actions import hook_spec, signal_spec

    hook, signal = hook_spec(lifecycle_hook), signal_spec(cfn_signal)
    found: List[Dict[str, Any]] = []
    if hook:
        found.append({
            "Sid": "BoskyLifecycleHook",
            "Effect": "Allow",
            "Action": ["autoscaling:CompleteLifecycleAction",
                       "autoscaling:RecordLifecycleActionHeartbeat"],
            "Resource": arns.autoscaling_group_arn(hook.group or "*", region, account_id),
        })
        if not hook.group:
            found.append({
                "Sid": "BoskyFindGroup",
                "Effect": "Allow",
                "Action": "autoscaling:DescribeAutoScalingInstances",
                "Resource": "*",
            })
    if signal:
        found.append({
            "Sid": "BoskySignalStack",
            "Effect": "Allow",
            "Action": "cloudformation:SignalResource",
            "Resource": arns.stack_arn(signal.stack or "*", region, account_id),
        })
    return found


def fleet_reader_policy(group: str, region: Optional[str],
                        account_id: Optional[str]) -> Dict[str, Any]:
    """What ``bosky fleet`` needs on the consumer stack's log group: FilterLogEvents
    for the scan, the Logs Insights calls for the other engine.

    It is a person's or a dashboard host's policy, never the instance role's:
    instances only send. GetQueryResults and StopQuery name a query, not a log
    group, so IAM scopes them by action only.
    """
    arn = arns.log_group_arn(group, region, account_id)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "BoskyFleetScan", "Effect": "Allow", "Action": "logs:FilterLogEvents",
             "Resource": arn},
            {"Sid": "BoskyFleetInsights", "Effect": "Allow", "Action": "logs:StartQuery",
             "Resource": arn},
            {"Sid": "BoskyFleetInsightsResults", "Effect": "Allow",
             "Action": ["logs:GetQueryResults", "logs:StopQuery"], "Resource": "*"},
        ],
    }
