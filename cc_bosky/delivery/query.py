"""The wire format of AWS's Query APIs (Auto Scaling, CloudFormation).

A request is a form-encoded POST of ``Action``, ``Version`` and the
parameters; an answer is XML, an error ``<ErrorResponse><Error><Code>``. Only
what bosky's few calls need: no client object, no service model.
"""

from __future__ import annotations

import urllib.parse
import xml.etree.ElementTree as ET
from typing import List, Mapping, Tuple

# The API version each service's Query endpoint expects (botocore's models say the same).
VERSIONS = {"autoscaling": "2011-01-01", "cloudformation": "2010-05-15"}
CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"


def encode(service: str, operation: str, params: Mapping[str, str]) -> bytes:
    fields = [("Action", operation), ("Version", VERSIONS[service]), *sorted(params.items())]
    return urllib.parse.urlencode(fields).encode("utf-8")


def texts(payload: bytes, tag: str) -> List[str]:
    """The text of every element named ``tag`` in an answer, in document order."""
    try:
        root = ET.fromstring(payload)
    except ET.ParseError:
        return []
    return [(e.text or "").strip() for e in root.iter() if e.tag.rsplit("}", 1)[-1] == tag]


def error_fields(payload: bytes) -> Tuple[str, str]:
    """(code, message) of a Query error answer; empty strings if it is none."""
    codes, messages = texts(payload, "Code"), texts(payload, "Message")
    return (codes[0] if codes else ""), (messages[0] if messages else "")
