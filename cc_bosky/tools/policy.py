"""The least-privilege IAM policy an instance needs to send bosky's events."""

from __future__ import annotations

from typing import Any, Dict, Optional

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
