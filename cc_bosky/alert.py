"""The short, readable form of an event that an alert e-mail shows (Detail ``Alert``).

EventBridge's input transformer can only insert values it finds at JSON paths
(dot notation, no index, no cutting), and an event's ``Message`` can be 64 KiB
and its ``LogTail`` fifty lines of up to 1,000 characters. So the event
carries its own alert lines, each bounded, and the consumer stack's e-mail
target (infra/consumer.yaml) only arranges them. Each is one line (no
newline, whatever the log said), so the rendered mail stays under 2 KB.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional

# Bounds in UTF-8 bytes (the e-mail's size), not characters.
HEADLINE = 200
MESSAGE = 300
MODULES = 200
LINES, LINE = 3, 150
# cloud-init's own lines in cloud-init-output.log: stage banners, ci-info
# tables, and its log records echoed to the console.
CLOUD_INIT_LINE = re.compile(r"Cloud-init v\. |ci-info: |\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - "
                             r"\S+\[[A-Z]+\]: ")
_CONSOLES = {"aws": "console.aws.amazon.com", "aws-cn": "console.amazonaws.cn",
             "aws-us-gov": "console.amazonaws-us-gov.com"}
_SPACE = re.compile(r"\s+")


def own_lines(tail: Any) -> List[str]:
    """The log tail's lines that are not cloud-init's own (its "finished at"
    banner, its echoed WARNINGs): what the user's scripts said; all of them
    when cloud-init said everything."""
    lines = [line for line in (tail or []) if isinstance(line, str) and line.strip()]
    return [line for line in lines if not CLOUD_INIT_LINE.match(line)] or lines


def alert(source: str, detail: Mapping[str, Any]) -> Dict[str, str]:
    """``Headline``, ``Message``, ``Modules``, ``LastLines`` and ``Console``: one line each."""
    modules = [_line(m) for m in detail.get("FailedModules") or ()
               if isinstance(m, str) and _line(m)]
    message = _line(str(detail.get("Message") or ""))
    what = f"{', '.join(modules[:3])} failed" if modules else (message or "no message")
    head = " ".join([f"bosky {str(detail.get('Status', '')).upper()} {source}",
                     *(str(detail.get(k) or "-") for k in ("InstanceId", "ImageId",
                                                           "InstanceType"))])
    lines = [_clip(_line(line), LINE) for line in own_lines(detail.get("LogTail"))[-LINES:]]
    return {"Headline": _clip(_line(f"{head}: {what}"), HEADLINE),
            "Message": _clip(message, MESSAGE) or "-",
            "Modules": _clip(", ".join(modules), MODULES) or "none",
            "LastLines": " | ".join(lines) or "-",
            "Console": console_link(detail.get("Region"), detail.get("InstanceId")) or "-"}


def console_link(region: Any, instance_id: Any) -> Optional[str]:
    if not (isinstance(region, str) and isinstance(instance_id, str)):
        return None
    from .arns import partition

    host = _CONSOLES.get(partition(region))
    if host is None:
        return None
    return (f"https://{region}.{host}/ec2/home?region={region}"
            f"#InstanceDetails:instanceId={instance_id}")


def _line(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _clip(text: str, width: int) -> str:
    """``text`` within ``width`` UTF-8 bytes, an ellipsis where it was cut."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= width:
        return text
    return raw[: width - 3].decode("utf-8", "ignore") + "…"
