"""The boot's verdict from cloud-init's own records, whatever state they are in.

The samples are what cloud-init 20.4.1, 22.4.2 and 25.1.4 wrote in the boot
tests (tests/test_boot.py); the properties feed it everything else: missing,
truncated, non-UTF-8, huge files, JSON of the wrong shape. Whatever is on
disk, the reporter gets a verdict to send, never an exception.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cc_bosky.boot import verdict
from cc_bosky.event import make_event
from cc_bosky.schemas import load

# The error a failing user-data script leaves, byte for byte the same in
# every release the boot tests run (and "(runcmd)" for a failing runcmd).
SCRIPT_FAILED = ("('scripts_user', RuntimeError('Runparts: 1 failures (part-001) "
                 "in 1 attempted commands'))")
RUNCMD_FAILED = ("('scripts_user', RuntimeError('Runparts: 1 failures (runcmd) "
                 "in 1 attempted commands'))")
SCHEMA_WARNING = ("cloud-config failed schema validation! You may run 'sudo cloud-init "
                  "schema --system' to check the details.")

DETAIL = jsonschema.Draft4Validator(load("detail"))


def epoch_status(final_errors: Optional[list] = None) -> Dict[str, Any]:  # type: ignore[type-arg]
    """status.json as 20.4.1 and 22.4.2 write it: epoch seconds, a stage that never runs."""
    def stage(start: float, end: float, errors: Optional[list] = None) -> Dict[str, Any]:  # type: ignore[type-arg]
        return {"errors": errors or [], "start": start, "finished": end}
    return {"v1": {
        "datasource": "DataSourceEc2",
        "init-local": stage(1795776592.2651532, 1795776592.5636528),
        "init": stage(1795776595.2366352, 1795776596.814452),
        "modules-config": stage(1795776599.2265346, 1795776599.4321935),
        "modules-final": stage(1795776601.200187, 1795776601.27862, final_errors),
        "modules-init": {"errors": [], "finished": None, "start": None},
        "stage": None,
    }}


def uptime_status(final_errors: Optional[list] = None,  # type: ignore[type-arg]
                  warnings: Optional[list] = None) -> Dict[str, Any]:  # type: ignore[type-arg]
    """status.json as 25.1.4 writes it: seconds of uptime, recoverable_errors per stage."""
    return {"v1": {
        "datasource": "DataSourceEc2Local",
        "init-local": {"errors": [], "finished": 919.74, "recoverable_errors": {},
                       "start": 919.45},
        "init": {"errors": [], "finished": 920.71, "start": 920.57,
                 "recoverable_errors": {"WARNING": warnings} if warnings else {}},
        "modules-config": {"errors": [], "finished": 921.52, "recoverable_errors": {},
                           "start": 921.47},
        "modules-final": {"errors": final_errors or [], "finished": 922.73, "start": 922.66,
                          "recoverable_errors": {}},
        "stage": None,
    }}


def result(errors: list, datasource: str = "DataSourceEc2") -> Dict[str, Any]:  # type: ignore[type-arg]
    return {"v1": {"datasource": datasource, "errors": errors}}


def records_of(tmp_path: Path, status: Any = None, result_: Any = None) -> verdict.Records:
    for name, data in (("status.json", status), ("result.json", result_)):
        if data is not None:
            raw = data if isinstance(data, bytes) else json.dumps(data).encode()
            (tmp_path / name).write_bytes(raw)
    return verdict.read_records(str(tmp_path))


def as_event_detail(found: verdict.Verdict) -> Dict[str, Any]:
    """The verdict as the reporter sends it, checked against the shipped schema."""
    event = make_event(source="fleet", detail_type="User Data", status=found.status,
                       message=found.message, identity={"InstanceId": "i-0abc"},
                       origin="boot", extra=found.fields)
    detail: Dict[str, Any] = json.loads(event.entry()["Detail"], parse_constant=_not_json)
    errors = [e.message for e in DETAIL.iter_errors(detail)]
    assert not errors, errors
    return detail


def _not_json(name: str) -> None:
    raise AssertionError(f"{name} is not JSON: EventBridge would answer MalformedDetail")


# -- what real releases write -------------------------------------------


@pytest.mark.parametrize("status", [epoch_status([SCRIPT_FAILED]),
                                    uptime_status([SCRIPT_FAILED])], ids=["22.4.2", "25.1.4"])
def test_a_failing_user_data_script_fails_in_scripts_user(tmp_path: Path, status: Any) -> None:
    found = verdict.final_verdict(records_of(tmp_path, status, result([SCRIPT_FAILED])))
    assert found.status == "fail"
    assert found.fields["FailedModules"] == ["scripts_user"]
    assert found.fields["Errors"] == [SCRIPT_FAILED]
    assert found.message == "cloud-init recorded 1 error in scripts_user"
    as_event_detail(found)


def test_debian_cloud_cfg_spelling_scripts_user_gives_the_same_module_name(
        tmp_path: Path) -> None:
    # Seen on every Debian suite booted under systemd (tests/vm): Debian's
    # cloud.cfg lists `scripts-user`, and the error string follows the list.
    dashed = SCRIPT_FAILED.replace("'scripts_user'", "'scripts-user'")
    found = verdict.final_verdict(records_of(tmp_path, epoch_status([dashed]), result([dashed])))
    assert found.fields["FailedModules"] == ["scripts_user"]
    assert found.message == "cloud-init recorded 1 error in scripts_user"
    assert found.fields["Errors"] == [dashed]  # cloud-init's own words stay as they were


def test_a_failing_runcmd_also_fails_in_scripts_user(tmp_path: Path) -> None:
    found = verdict.final_verdict(records_of(tmp_path, epoch_status([RUNCMD_FAILED]),
                                             result([RUNCMD_FAILED])))
    assert (found.status, found.fields["FailedModules"]) == ("fail", ["scripts_user"])


def test_a_stage_that_exited_fails_without_a_module_name(tmp_path: Path) -> None:
    # 25.x records a stage's own failure as "sys.exit(1) called": no module.
    found = verdict.final_verdict(records_of(tmp_path, uptime_status(),
                                             result(["sys.exit(1) called", SCRIPT_FAILED])))
    assert found.fields["FailedModules"] == ["scripts_user"]
    assert found.message == "cloud-init recorded 2 errors in scripts_user"


def test_a_clean_boot_passes_with_stage_times(tmp_path: Path) -> None:
    found = verdict.final_verdict(records_of(tmp_path, epoch_status(), result([])))
    assert (found.status, found.message) == ("pass", "cloud-init finished with no errors")
    assert set(found.fields["Stages"]) == set(verdict.STAGES)
    assert found.fields["Datasource"] == "DataSourceEc2"
    as_event_detail(found)


def test_uptime_stage_times_of_25x_give_durations(tmp_path: Path) -> None:
    found = verdict.final_verdict(records_of(tmp_path, uptime_status(), result([])))
    assert found.fields["Stages"] == {"init-local": 0.29, "init": 0.14,
                                      "modules-config": 0.05, "modules-final": 0.07}


def test_recoverable_errors_make_a_degraded_boot(tmp_path: Path) -> None:
    records = records_of(tmp_path, uptime_status(warnings=[SCHEMA_WARNING]), result([]))
    found = verdict.final_verdict(records)
    assert found.status == "degraded"
    assert found.message == "cloud-init finished with 1 recoverable error (WARNING)"
    assert found.fields["RecoverableErrors"] == {"WARNING": [SCHEMA_WARNING]}
    as_event_detail(found)


def test_degraded_is_pass_reports_pass_and_keeps_the_warnings(tmp_path: Path) -> None:
    records = records_of(tmp_path, uptime_status(warnings=[SCHEMA_WARNING]), result([]))
    found = verdict.final_verdict(records, degraded_is="pass")
    assert found.status == "pass"
    assert found.fields["RecoverableErrors"] == {"WARNING": [SCHEMA_WARNING]}


def test_an_ignored_warning_is_not_a_degraded_boot(tmp_path: Path) -> None:
    # The reporter ignores cloud-init's warning about the bosky key itself.
    records = records_of(tmp_path, uptime_status(warnings=[SCHEMA_WARNING]), result([]))
    found = verdict.final_verdict(records, ignore_recoverable=lambda level, msg: "schema" in msg)
    assert found.status == "pass" and "RecoverableErrors" not in found.fields


def test_the_same_long_warning_from_two_stages_is_listed_once(tmp_path: Path) -> None:
    long = "W" * 5000
    status = uptime_status(warnings=[long])
    status["v1"]["modules-final"]["recoverable_errors"] = {"WARNING": [long]}
    found = verdict.final_verdict(records_of(tmp_path, status, result([])))
    assert found.fields["RecoverableErrors"]["WARNING"] == ["W" * 2045 + "..."]


# -- elapsed time: epoch seconds before 23.x, uptime after -----------------


def test_elapsed_from_epoch_stage_times() -> None:
    status = epoch_status()["v1"]
    assert verdict.elapsed(status, now=1795776592.2651532 + 100, uptime=5.0) == \
        pytest.approx(100)


def test_elapsed_from_uptime_stage_times() -> None:
    status = uptime_status()["v1"]
    assert verdict.elapsed(status, now=1795776592.0, uptime=919.45 + 42) == pytest.approx(42)
    assert verdict.elapsed(status, now=1795776592.0, uptime=None) is None
    assert verdict.elapsed(status, now=1795776592.0, uptime=100.0) == 0.0  # never negative


@pytest.mark.parametrize("status", [None, {}, {"init": "x"}, {"init": {"start": "919.74"}},
                                    {"init": {"start": True}}, {"init": {"start": -5}},
                                    {"init": {"start": float("inf")}},
                                    {"init": {"start": 10 ** 400}}])
def test_elapsed_is_unknown_without_a_usable_start(status: Any) -> None:
    assert verdict.elapsed(status, now=1e9 + 5, uptime=5.0) is None


# -- records that cannot be read ----------------------------------------


@pytest.mark.parametrize("content, problem", [
    (b'{"v1": {"datasource": "DataSourceEc2", "err', "result.json is not valid JSON"),
    (b"", "result.json is not valid JSON"),
    (b'{"v1": {"errors": ["\xff\xfe"]}}', "result.json is not UTF-8"),
    (b"[1, 2, 3]", "result.json has no 'v1' object"),
    (b'"v1"', "result.json has no 'v1' object"),
    (b'{"v1": ["errors"]}', "result.json has no 'v1' object"),
    (b'{"v2": {}}', "result.json has no 'v1' object"),
    (b"[" * 5000 + b"]" * 5000, "result.json is not valid JSON"),
])
def test_a_malformed_result_is_a_fail_saying_the_record_is_unreadable(
        tmp_path: Path, content: bytes, problem: str) -> None:
    found = verdict.final_verdict(records_of(tmp_path, epoch_status(), content))
    assert found.status == "fail"
    assert found.message.startswith("cloud-init's record is unreadable: " + problem)
    as_event_detail(found)


def test_a_huge_result_is_unreadable_not_read_into_memory(tmp_path: Path) -> None:
    (tmp_path / "result.json").write_bytes(b" " * (8 * 1024 * 1024 + 1))
    found = verdict.final_verdict(verdict.read_records(str(tmp_path)))
    assert found.status == "fail" and "larger than 8 MiB" in found.message


def test_a_result_that_is_a_directory_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "result.json").mkdir()
    records = verdict.read_records(str(tmp_path))
    assert records.finished
    found = verdict.final_verdict(records)
    assert found.status == "fail" and "result.json cannot be read" in found.message


def test_no_result_yet_means_not_finished(tmp_path: Path) -> None:
    records = records_of(tmp_path, epoch_status())
    assert not records.finished
    assert verdict.final_verdict(records).status == "fail"  # asked anyway: says so


def test_thousands_of_errors_keep_fifty_and_still_fit(tmp_path: Path) -> None:
    errors = [f"('cc_mod{i}', ValueError('{'x' * 3000}'))" for i in range(2000)]
    found = verdict.final_verdict(records_of(tmp_path, epoch_status(), result(errors)))
    assert found.message.startswith("cloud-init recorded 2000 errors in cc_mod0, cc_mod1")
    assert len(found.fields["Errors"]) == 50
    assert all(len(e) <= 2048 for e in found.fields["Errors"])
    detail = as_event_detail(found)
    assert detail["Truncated"] is True


@pytest.mark.parametrize("status, result_", [
    ({"v1": {"stage": "s" * 200_000}}, None),
    (None, {"v1": {"errors": [f"('cc_mod{i}', E())" for i in range(100_000)]}}),
    (None, {"v1": {"errors": ["('" + "m" * 1_000_000 + "', E())"]}}),
    (None, {"v1": {"errors": [], "datasource": "d" * 1_000_000}}),
    ({"v1": {"init": {"recoverable_errors": {f"L{i}": ["w"] for i in range(50_000)}}}},
     {"v1": {"errors": []}}),
], ids=["stage", "many-modules", "long-module", "datasource", "many-levels"])
def test_no_record_can_make_an_event_too_big_to_send(tmp_path: Path, status: Any,
                                                    result_: Any) -> None:
    # fit() can shorten the log tail, errors and the message, not every
    # field: the verdict must keep the others bounded, or the reporter would
    # fail to build the one event that says the boot went wrong.
    records = records_of(tmp_path, status, result_)
    as_event_detail(verdict.timeout_verdict(records, 1800, 1900.0))
    as_event_detail(verdict.vanished_verdict(records, "gone"))
    if records.finished:
        detail = as_event_detail(verdict.final_verdict(records))
        assert len(detail.get("FailedModules", [])) <= 50


@pytest.mark.parametrize("errors, expected", [
    ("one error as a string", ["one error as a string"]),
    ([42, None, {"module": "x"}, ["nested"]], ["42", "null", '{"module": "x"}', '["nested"]']),
    (7, ["7"]),
])
def test_errors_of_the_wrong_type_are_still_reported(tmp_path: Path, errors: Any,
                                                     expected: list) -> None:  # type: ignore[type-arg]
    found = verdict.final_verdict(records_of(tmp_path, epoch_status(),
                                             {"v1": {"errors": errors}}))
    assert found.status == "fail" and found.fields["Errors"] == expected


def test_an_error_nested_as_deep_as_json_allows_still_gives_a_verdict(tmp_path: Path) -> None:
    nested = b"[" * 990 + b"]" * 990  # json.loads accepts it; dumping it back may not
    raw = b'{"v1": {"errors": [' + nested + b"]}}"
    found = verdict.final_verdict(records_of(tmp_path, epoch_status(), raw))
    assert found.status == "fail"
    as_event_detail(found)


def test_infinite_and_huge_stage_times_are_left_out(tmp_path: Path) -> None:
    # Python's json reads Infinity; a duration of inf would be written back
    # as Infinity, which is not JSON, and EventBridge rejects the event.
    raw = (b'{"v1": {"init": {"start": 1, "finished": Infinity}, '
           b'"init-local": {"start": 1, "finished": ' + b"9" * 400 + b'}, '
           b'"modules-config": {"start": NaN, "finished": 3}, '
           b'"modules-final": {"start": 2.5, "finished": 3.0}}}')
    found = verdict.final_verdict(records_of(tmp_path, raw, result([])))
    assert found.fields["Stages"] == {"modules-final": 0.5}
    as_event_detail(found)


def test_an_unreadable_status_is_reported_beside_a_good_result(tmp_path: Path) -> None:
    found = verdict.final_verdict(records_of(tmp_path, b"{trunc", result([])))
    assert found.status == "pass"
    assert found.fields["Errors"] == ["status.json is not valid JSON (truncated or corrupted)"]


def test_lone_surrogate_escapes_in_records_still_make_a_sendable_event(tmp_path: Path) -> None:
    raw = b'{"v1": {"datasource": "\\udc80", "errors": ["(\'x\', E(\'\\ud800\'))"]}}'
    detail = as_event_detail(verdict.final_verdict(records_of(tmp_path, epoch_status(), raw)))
    assert detail["FailedModules"] == ["x"]


# -- anything at all on disk ----------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
    | st.integers(min_value=10 ** 300, max_value=10 ** 310),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=12)
_STAGE = st.fixed_dictionaries({}, optional={
    "start": _JSON | st.floats(min_value=0, max_value=2e9),
    "finished": _JSON | st.floats(min_value=0, max_value=2e9),
    "errors": _JSON | st.lists(st.sampled_from([SCRIPT_FAILED, RUNCMD_FAILED, "boom"])),
    "recoverable_errors": _JSON | st.dictionaries(
        st.sampled_from(["WARNING", "DEPRECATED", "ERROR"]),
        st.lists(st.text(max_size=20), max_size=3) | _JSON, max_size=3),
})
_V1 = st.fixed_dictionaries({}, optional={
    **{name: _STAGE | _JSON for name in verdict.STAGES},
    "errors": _JSON | st.lists(st.sampled_from([SCRIPT_FAILED, "x"]) | _JSON, max_size=5),
    "recoverable_errors": _JSON | st.dictionaries(st.text(max_size=8), _JSON, max_size=3),
    "datasource": _JSON | st.sampled_from(["DataSourceEc2", ""]),
    "stage": _JSON | st.sampled_from([*verdict.STAGES, ""]),
})


def _encoded(value: Any) -> bytes:
    return json.dumps(value).encode()


# Missing, arbitrary bytes, cut-off JSON, JSON of any shape, or a plausible
# record with wrong types in it.
_RECORD = st.one_of(
    st.none(),
    st.binary(max_size=200),
    st.builds(_encoded, _JSON),
    st.builds(lambda v1: _encoded({"v1": v1}), _V1),
    st.builds(lambda v1, cut: _encoded({"v1": v1})[:cut], _V1, st.integers(0, 200)),
    st.builds(lambda v1: _encoded({"v1": v1}).decode().encode("utf-16"), _V1),
)


@settings(max_examples=250, deadline=None)
@given(status=_RECORD, result_=_RECORD, degraded_is=st.sampled_from(["degraded", "pass"]))
def test_any_records_give_a_verdict_that_can_be_sent(status: Optional[bytes],
                                                     result_: Optional[bytes],
                                                     degraded_is: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        records = records_of(Path(tmp), status, result_)
    found = verdict.final_verdict(records, degraded_is)
    assert isinstance(found, verdict.Verdict)
    assert found.status in ("pass", "fail", "degraded")
    if records.result is None:
        assert found.status == "fail" and "unreadable" in found.message
    if degraded_is == "pass":
        assert found.status != "degraded"
    as_event_detail(found)
    # What the reporter asks while it waits must not raise either.
    as_event_detail(verdict.timeout_verdict(records, 1800, 1900.5))
    as_event_detail(verdict.vanished_verdict(records, "the final stage exited"))
    for uptime in (None, 30.0):
        seconds = verdict.elapsed(records.status, 1795776600.0, uptime)
        assert seconds is None or seconds >= 0
    verdict.current_stage(records.status)


# -- the user-data stanza's schema check runs in a child that takes its memory with it -----


def test_the_schema_check_runs_in_a_child_and_its_answer_comes_back(
        caplog: pytest.LogCaptureFixture) -> None:
    import os

    from cc_bosky.boot import cloudconfig

    parent = os.getpid()
    with caplog.at_level("INFO", logger="bosky.reporter"):
        assert cloudconfig._in_child(lambda: os.getpid() != parent) is True
        assert cloudconfig._in_child(lambda: False) is False
    assert "schema check in a child process: valid apart from the bosky key" in caplog.text


def test_a_schema_check_that_fails_in_the_child_is_done_in_the_reporter_instead() -> None:
    from cc_bosky.boot import cloudconfig

    def broken() -> bool:
        raise RuntimeError("cloud-init's schema would not load")

    assert cloudconfig._in_child(broken) is None  # the caller then checks in process


def test_the_reporter_wakes_within_a_poll_of_result_json_while_it_polls_slowly(
        tmp_path: Path) -> None:
    """Early in the boot the reporter polls cloud-init's records once a second;
    where the config and final stages take less than that, result.json must
    still be seen within 0.1 s, not at the next whole poll."""
    import types

    from cc_bosky.boot import reporter

    naps: list = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 3:  # cloud-init finishes 0.3 s into the 1 s wait
            (tmp_path / "result.json").write_text("{}")

    fake = types.SimpleNamespace(cloud_run_dir=str(tmp_path), sleep=sleep)
    reporter.Reporter._sleep_unless_finished(fake, reporter.EARLY_POLL)  # type: ignore[arg-type]
    assert naps == [reporter.POLL] * 3
