"""Every event fits one 64 KiB billing unit, is valid JSON and says when it was cut.

The size is checked against AWS's documented formula, computed here on its
own: the UTF-8 bytes of Source, DetailType, Detail and each of Resources,
plus 14 when the entry has a Time.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping

import jsonschema
import pytest
from hypothesis import event as event_note
from hypothesis import given, settings
from hypothesis import strategies as st

from cc_bosky.event import (
    MAX_EVENT_BYTES,
    Event,
    billing_units,
    clean_text,
    entry_size,
    fit,
    make_event,
    stable_event_id,
)
from cc_bosky.schemas import load

DETAIL = jsonschema.Draft4Validator(load("detail"), format_checker=jsonschema.FormatChecker())
IDENTITY = {"InstanceId": "i-0abcdef1234567890", "AccountId": "123456789012",
            "Region": "eu-west-1", "AvailabilityZone": "eu-west-1a", "BootId": "b-1"}
ARN = "arn:aws:ec2:eu-west-1:123456789012:instance/i-0abcdef1234567890"


def aws_entry_size(entry: Mapping[str, Any]) -> int:
    """PutEvents entry size, as AWS documents it (not bosky's code)."""
    size = len(entry["Source"].encode("utf-8")) + len(entry["DetailType"].encode("utf-8"))
    size += len(entry["Detail"].encode("utf-8"))
    for resource in entry.get("Resources", []):
        size += len(resource.encode("utf-8"))
    if entry.get("Time") is not None:
        size += 14
    return size


def strict_json(text: str) -> Any:
    def reject(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")
    return json.loads(text, parse_constant=reject)


def assert_sendable(event: Event) -> Dict[str, Any]:
    entry = event.entry()
    assert aws_entry_size(entry) == entry_size(entry) == event.size() <= MAX_EVENT_BYTES
    detail: Dict[str, Any] = strict_json(entry["Detail"])
    problems = [e.message for e in DETAIL.iter_errors(detail)]
    assert not problems, problems
    return detail


def test_entry_size_follows_the_documented_formula() -> None:
    entry = {"Source": "fleet-é", "DetailType": "User Data", "Detail": '{"Message":"✓ 🚀"}',
             "Resources": [ARN, "i-1"]}
    assert entry_size(entry) == aws_entry_size(entry) == 8 + 9 + 22 + len(ARN) + 3
    assert entry_size({**entry, "Time": "2025-01-01T00:00:00Z"}) == aws_entry_size(entry) + 14


def test_billing_units_are_started_64_kib_chunks() -> None:
    assert [billing_units(n) for n in (0, 1, 65536, 65537, 262144)] == [1, 1, 1, 2, 4]


def test_a_small_event_is_not_marked_truncated() -> None:
    event = make_event(source="fleet", detail_type="User Data", status="pass", message="ok",
                       identity=IDENTITY, origin="command", resources=(ARN,))
    detail = assert_sendable(event)
    assert "Truncated" not in detail and detail["Message"] == "ok"


def test_a_long_message_of_four_byte_characters_is_cut_to_one_unit() -> None:
    message = "🚀" * 40_000  # 160 kB of UTF-8
    detail = assert_sendable(make_event(source="fleet", detail_type="User Data", status="fail",
                                        message=message, identity=IDENTITY, origin="command",
                                        resources=(ARN,)))
    assert detail["Truncated"] is True
    assert message.startswith(detail["Message"]) and len(detail["Message"]) > 15_000


def test_the_oldest_log_lines_go_first_and_the_message_stays() -> None:
    tail = [f"line {i:05d} " + "." * 200 for i in range(1000)]  # about 210 kB
    detail = assert_sendable(make_event(
        source="fleet", detail_type="User Data", status="fail", message="deploy failed",
        identity=IDENTITY, origin="boot", extra={"LogTail": tail, "Errors": ["e"]}))
    assert detail["Message"] == "deploy failed" and detail["Errors"] == ["e"]
    assert detail["LogTail"] == tail[-len(detail["LogTail"]):]  # the newest ones are kept
    assert detail["Truncated"] is True


def test_a_stanza_with_thousands_of_bad_keys_still_fits() -> None:
    warnings = [f"bosky: key{i}: unknown key" for i in range(20_000)]
    detail = assert_sendable(make_event(
        source="fleet", detail_type="User Data", status="pass", message="ok",
        identity=IDENTITY, origin="boot", extra={"ConfigWarnings": warnings}))
    assert detail["Message"] == "ok" and detail["Truncated"] is True
    assert detail["ConfigWarnings"] == warnings[:len(detail["ConfigWarnings"])]


def test_a_lone_surrogate_anywhere_in_the_entry_is_made_valid() -> None:
    # A non-UTF-8 argument arrives as a lone surrogate; cloud-init's JSON can
    # hold "\ud800" escapes. Neither may make the entry unencodable.
    event = make_event(source="fleet\udcff", detail_type="User\udc80Data", status="s\ud800",
                       message="m\udcc3", identity={**IDENTITY, "Hostname": "h\udfff"},
                       origin="command", resources=("i-\ud800",),
                       extra={"Errors": ["\ud83d"], "RecoverableErrors": {"W\udc00": ["x"]}})
    detail = assert_sendable(event)
    assert "\ufffd" in event.source and "\ufffd" in event.resources[0]
    assert set(detail["Hostname"][1:]) == {"\ufffd"} and set(detail["Errors"][0]) == {"\ufffd"}


def test_clean_text_restores_utf8_that_arrived_as_escaped_bytes() -> None:
    # "é" passed as bytes in a C locale arrives as two surrogate escapes.
    assert clean_text("caf\udcc3\udca9") == "café"
    assert clean_text("bad \udcff byte") == "bad \ufffd byte"
    assert clean_text("\ud800") == "\ufffd" * 3


@given(st.text())  # no surrogates: valid text comes through unchanged
def test_clean_text_leaves_valid_text_alone(text: str) -> None:
    assert clean_text(text) == text


@given(st.text(st.characters(blacklist_categories=())))
def test_clean_text_always_gives_encodable_text(text: str) -> None:
    clean_text(text).encode("utf-8")


def test_a_spooled_entry_reads_back_as_the_same_event() -> None:
    event = make_event(source="fleet", detail_type="User Data", status="info", message="é\x00",
                       identity=IDENTITY, origin="command", resources=(ARN,), event_bus="ops")
    assert Event.from_entry(json.loads(json.dumps(event.entry()))) == event


def test_stable_ids_repeat_for_the_same_boot_and_kind() -> None:
    assert stable_event_id("i-1", "boot", "final") == stable_event_id("i-1", "boot", "final")
    assert stable_event_id("i-1", "boot", "final") != stable_event_id("i-1", "boot", "timeout")


def test_a_detail_that_cannot_fit_even_empty_is_refused() -> None:
    # Only the command can ask for this (a 70 kB --status); it must check
    # lengths first. fit() refuses rather than send an oversized event.
    with pytest.raises(ValueError):
        make_event(source="fleet", detail_type="User Data", status="x" * 70_000, message="",
                   identity={}, origin="command")


# -- fitting, for any sizes and any Unicode ---------------------------------

_ANY_CHAR = st.characters(blacklist_categories=())  # surrogates included
# Sizes around and past the limit, not just the small ones hypothesis favours.
_COUNT = st.one_of(st.integers(0, 100), st.integers(5_000, 80_000))
_BIG_TEXT = st.one_of(
    st.text(_ANY_CHAR, max_size=50),
    # A short piece repeated: big texts without generating each character.
    st.builds(lambda piece, n: piece * n, st.text(_ANY_CHAR, min_size=1, max_size=4), _COUNT),
)
_LINES = st.one_of(st.lists(st.text(_ANY_CHAR, max_size=80), max_size=20),
                   st.builds(lambda line, n: [line] * (n // 50), st.text(_ANY_CHAR, max_size=300),
                             _COUNT))


@settings(max_examples=150, deadline=None)
@given(message=_BIG_TEXT, status=st.text(_ANY_CHAR.filter(lambda c: not c.isspace()),
                                         min_size=1, max_size=80),
       log_tail=st.none() | _LINES, errors=st.none() | _LINES,
       recoverable=st.none() | st.dictionaries(st.sampled_from(["WARNING", "DEPRECATED"]),
                                               _LINES, max_size=2),
       warnings=st.none() | _LINES)
def test_any_event_fits_and_says_whether_it_was_cut(
        message: str, status: str, log_tail: Any, errors: Any, recoverable: Any,
        warnings: Any) -> None:
    extra: Dict[str, Any] = {}
    for key, value in (("LogTail", log_tail), ("Errors", errors),
                       ("RecoverableErrors", recoverable), ("ConfigWarnings", warnings)):
        if value is not None:
            extra[key] = value
    event = make_event(source="fleet", detail_type="User Data", status=status, message=message,
                       identity=IDENTITY, origin="boot", resources=(ARN,), extra=extra)
    detail = assert_sendable(event)

    full = _cleaned({**detail, "Message": message, **extra})
    full.pop("Truncated", None)
    cut = {k: v for k, v in detail.items() if k != "Truncated"}
    assert ("Truncated" in detail) == (cut != full)
    event_note("truncated" if "Truncated" in detail else "whole")
    assert full["Message"].startswith(detail["Message"])
    if detail["Message"] != full["Message"]:
        # The message is cut last: by then everything cheaper is gone.
        assert not detail.get("LogTail") and not detail.get("Errors")
        assert not detail.get("ConfigWarnings") and "RecoverableErrors" not in detail
    if "Truncated" in detail:  # and nothing was cut that did not have to be
        assert len(json.dumps(full, ensure_ascii=False, separators=(",", ":")).encode()) + \
            len("fleet") + len("User Data") + len(ARN) > MAX_EVENT_BYTES


def _cleaned(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k): _cleaned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cleaned(v) for v in value]
    return value


@settings(max_examples=50, deadline=None)
@given(st.integers(400, 70_000), st.text(_ANY_CHAR, min_size=1, max_size=3))
def test_fit_to_any_limit_stays_within_it(limit: int, piece: str) -> None:
    # 400 bytes hold the fixed fields (ids, time, versions) with room to spare.
    event = make_event(source="fleet", detail_type="User Data", status="fail",
                       message=piece * 30_000, identity={}, origin="command")
    fitted = fit(event, limit)
    assert fitted.size() <= limit
    assert event.detail["Message"].startswith(fitted.detail["Message"])
