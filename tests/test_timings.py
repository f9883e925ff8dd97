"""Module timings in the boot verdict: BootSeconds and SlowestModules.

Real boots of each cloud-init release show what a consumer receives and that
bosky's bounded reader of cloud-init.log agrees with cloud-init's own reader
(``cloudinit.analyze.dump``, run in the release's own Python). Hostile logs
and records show that nothing on disk can keep the verdict from going out.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cc_bosky.boot import timings
from cc_bosky.event import MAX_EVENT_BYTES, make_event
from tests.test_boot import fleet, only_verdict, stanza  # noqa: F401  (fixture)
from tests.test_verdict import DETAIL, epoch_status, uptime_status

SLOW_SCRIPT = "#!/bin/sh\necho 'warming the cache'\nsleep 1.2\n"


def analyze_dump(release: Any, log: Path) -> List[Dict[str, Any]]:
    """Module timings as cloud-init's own parser reads the log (its events paired
    by name, this boot only, as bosky pairs them)."""
    code = ("import json,sys\nfrom cloudinit.analyze.dump import dump_events\n"
            "print(json.dumps(dump_events(rawdata=open(sys.argv[1]).read())[0]))")
    proc = subprocess.run([str(release.python), "-c", code, str(log)], capture_output=True,
                          text=True, timeout=120, check=True,
                          env={"PYTHONPATH": release.pythonpath(), "PATH": "/usr/bin:/bin"})
    starts: Dict[str, float] = {}
    out = []
    for event in json.loads(proc.stdout):
        stage, _, module = event["name"].partition("/config-")
        if not module:
            continue
        if event["event_type"] == "start":
            starts[event["name"]] = event["timestamp"]
        elif event["name"] in starts:
            out.append({"Module": module, "Stage": "init" if stage == "init-network" else stage,
                        "Seconds": event["timestamp"] - starts.pop(event["name"])})
    return out


@pytest.mark.cloudinit
@pytest.mark.every_build
def test_a_slow_user_data_script_leads_the_slowest_modules(fleet, consumer,  # noqa: F811
                                                            detail_validator) -> None:
    inst = fleet()
    boot = inst.boot(user_data=SLOW_SCRIPT, cloud_cfg_d={"90_bosky.cfg": stanza(consumer)},
                     wait_reporter=60)
    detail = only_verdict(consumer, detail_validator)
    assert detail["Status"] == "pass", detail
    slowest = detail["SlowestModules"]
    assert slowest[0]["Module"] == "scripts_user" and slowest[0]["Stage"] == "modules-final"
    assert slowest[0]["Seconds"] >= 1.2
    assert [m["Seconds"] for m in slowest] == sorted((m["Seconds"] for m in slowest),
                                                     reverse=True)
    assert {"Module": "bosky", "Stage": "init"} in [
        {k: m[k] for k in ("Module", "Stage")} for m in slowest]
    # The whole boot, first stage start to modules-final's end, as status.json says.
    stages = boot.status["v1"]
    first = min(stages[s]["start"] for s in ("init-local", "init", "modules-config",
                                             "modules-final"))
    assert detail["BootSeconds"] == pytest.approx(stages["modules-final"]["finished"] - first,
                                                  abs=0.002)
    assert detail["BootSeconds"] >= sum(detail["Stages"].values()) - 0.01
    # cloud-init's own reader of its log finds the same modules and the same slowest
    # (25.x's "took N seconds" is a monotonic clock, the log's stamps are wall time
    # written a moment later: equal within what a loaded machine can delay a log line).
    theirs = sorted(analyze_dump(inst.release, inst.paths.var_log / "cloud-init.log"),
                    key=lambda m: -m["Seconds"])
    assert (theirs[0]["Module"], theirs[0]["Stage"]) == ("scripts_user", "modules-final")
    assert {(m["Module"], m["Stage"]) for m in theirs} == {
        (m["Module"], m["Stage"]) for m in slowest}
    for ours, cloud in zip(slowest[:1], theirs[:1]):
        assert ours["Seconds"] == pytest.approx(cloud["Seconds"], abs=0.1)


@pytest.mark.cloudinit
def test_the_second_boot_times_only_itself(fleet, consumer, detail_validator) -> None:  # noqa: F811
    """cloud-init.log persists across reboots; the first boot's slow script is not this one's."""
    inst = fleet()
    inst.boot(user_data="#!/bin/sh\nsleep 1.2\n", cloud_cfg_d={"90_bosky.cfg": stanza(consumer)},
              wait_reporter=60)
    first = only_verdict(consumer, detail_validator)
    assert first["SlowestModules"][0]["Module"] == "scripts_user"
    inst.boot(wait_reporter=60)  # scripts_user runs once per instance
    second = only_verdict(consumer, detail_validator)
    # scripts_user ran once per instance: the first boot's 1.2 s sleep is not this boot's.
    assert not [m for m in second["SlowestModules"]
                if m["Module"] == "scripts_user" and m["Seconds"] >= 1.2], second["SlowestModules"]
    assert second["EventId"] != first["EventId"] and "BootSeconds" in second


# -- the reader, without a boot ----------------------------------------------------------------

LOG_LINE = ("2026-12-01 21:27:{s:02d},{ms:03d} - handlers.py[DEBUG]: {kind}: {stage}/config-{mod}: "
            "{rest}")


def event_lines(modules: List[tuple], stage: str = "modules-final") -> str:  # type: ignore[type-arg]
    lines = []
    for second, (name, took) in enumerate(modules):
        lines.append(LOG_LINE.format(s=second, ms=0, kind="start", stage=stage, mod=name,
                                     rest=f"running config-{name} with frequency always"))
        lines.append(LOG_LINE.format(s=second, ms=int(took * 1000), kind="finish", stage=stage,
                                     mod=name, rest=f"SUCCESS: config-{name} ran successfully"))
    return "\n".join(lines) + "\n"


def test_at_most_ten_modules_slowest_first() -> None:
    log = event_lines([(f"m{i}", i / 100) for i in range(30)])
    slowest = timings.slowest_modules(log)
    assert [m["Module"] for m in slowest] == [f"m{i}" for i in range(29, 19, -1)]
    assert slowest[0] == {"Module": "m29", "Stage": "modules-final", "Seconds": 0.29}


def test_cloud_init_25s_own_figure_wins_over_log_timestamps() -> None:
    log = event_lines([("runcmd", 0.5)]).replace("successfully", "successfully and took 0.497 "
                                                 "seconds")
    assert timings.slowest_modules(log) == [
        {"Module": "runcmd", "Stage": "modules-final", "Seconds": 0.497}]


def test_cloud_init_26s_duration_suffix_is_read_too() -> None:
    """26.1 and later end every finish line with "(duration: N.NNNs)" (source of 26.2)."""
    log = event_lines([("runcmd", 0.5), ("scripts_user", 0.2)])
    log = log.replace("runcmd ran successfully", "runcmd ran successfully and took 0.497 seconds"
                      " (duration: 0.497s)")
    log = log.replace("scripts_user ran successfully", "scripts_user ran successfully"
                      " (duration: 0.213s)")
    assert timings.slowest_modules(log) == [
        {"Module": "runcmd", "Stage": "modules-final", "Seconds": 0.497},
        {"Module": "scripts_user", "Stage": "modules-final", "Seconds": 0.213}]


def test_a_huge_log_without_this_boots_start_in_view_gives_no_field(tmp_path: Path) -> None:
    log = tmp_path / "cloud-init.log"
    log.write_text("x" * (timings.MAX_READ + 10) + "\n" + event_lines([("runcmd", 0.5)]))
    assert timings.read_log(str(log)) is None
    assert "SlowestModules" not in timings.fields(None, str(log))
    # The same boot after an earlier one in view: only this boot counts.
    log.write_text("x" * (timings.MAX_READ + 10) + "\n" + event_lines([("old", 0.9)])
                   + event_lines([("new", 0.1)], stage="init-local"))
    assert [m["Module"] for m in timings.fields(None, str(log))["SlowestModules"]] == ["new"]


def test_missing_log_and_unfinished_boot_leave_the_fields_out(tmp_path: Path) -> None:
    status = uptime_status()["v1"]
    status["modules-final"]["finished"] = None
    assert timings.fields(status, str(tmp_path / "absent.log")) == {}
    assert timings.fields(epoch_status()["v1"], str(tmp_path / "absent.log")) == {
        "BootSeconds": round(1795776601.27862 - 1795776592.2651532, 3)}
    assert timings.boot_seconds(uptime_status()["v1"]) == round(922.73 - 919.45, 3)


hostile_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=15), inner,
                                                                max_size=4),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(status=hostile_values | st.dictionaries(
    st.sampled_from(["init-local", "init", "modules-config", "modules-final", "stage"]),
    st.dictionaries(st.sampled_from(["start", "finished"]), hostile_values), max_size=5))
def test_any_status_record_gives_a_valid_boot_seconds_or_none(status: Any) -> None:
    seconds = timings.boot_seconds(status if isinstance(status, dict) else None)
    assert seconds is None or (seconds >= 0 and seconds == seconds and seconds != float("inf"))


log_lines = st.one_of(
    st.text(max_size=200),
    st.builds(lambda s, ms, kind, stage, mod, rest: LOG_LINE.format(
        s=s, ms=ms, kind=kind, stage=stage, mod=mod, rest=rest),
        st.integers(0, 99), st.integers(0, 999), st.sampled_from(["start", "finish"]),
        st.sampled_from(["init-local", "init-network", "modules-config", "modules-final",
                         "single", "init"]),
        st.text(alphabet="abcdefghij_-", min_size=1, max_size=300),
        st.text(max_size=60) | st.just("SUCCESS: ok and took 99999999.5 seconds")),
)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(log_lines, max_size=40), junk=st.binary(max_size=200))
def test_any_log_gives_schema_valid_timings_that_fit(tmp_path_factory: Any, lines: List[str],
                                                     junk: bytes) -> None:
    path = tmp_path_factory.mktemp("log") / "cloud-init.log"
    path.write_bytes(junk + "\n".join(lines).encode("utf-8", "surrogatepass"))
    found = timings.fields(uptime_status()["v1"], str(path))
    slowest = found.get("SlowestModules", [])
    assert len(slowest) <= timings.MAX_MODULES
    event = make_event(source="fleet", detail_type="User Data", status="pass", message="ok",
                       identity={}, origin="boot", extra=found)
    assert not list(DETAIL.iter_errors(dict(event.detail)))
    assert event.size() <= MAX_EVENT_BYTES


def test_slowest_modules_are_cut_after_the_log_tail_and_before_the_message() -> None:
    slowest = [{"Module": f"m{i}", "Stage": "modules-final", "Seconds": 10 - i}
               for i in range(10)]
    big = make_event(source="fleet", detail_type="User Data", status="fail", message="m" * 2000,
                     identity={}, origin="boot",
                     extra={"SlowestModules": slowest, "LogTail": ["x" * 999] * 80})
    assert big.detail["Truncated"] is True
    assert big.detail["SlowestModules"] == slowest and big.detail["Message"] == "m" * 2000
    def event(message: str, **extra: Any) -> Any:
        return make_event(source="fleet", detail_type="User Data", status="fail",
                          message=message, identity={}, origin="boot", extra=extra)

    # Measured with a message long enough that the Alert's copy of it is at its
    # cap already, so only the Message itself grows from here.
    probe = "m" * 1000
    bare = event(probe, BootSeconds=12.5)
    message = "m" * (MAX_EVENT_BYTES - bare.size() + len(probe) - 300)  # about half the modules
    huge = event(message, BootSeconds=12.5, SlowestModules=slowest)
    kept = huge.detail["SlowestModules"]
    assert kept == slowest[:len(kept)] and 0 < len(kept) < 10  # the fastest went first
    assert huge.detail["Message"] == message
    assert huge.detail["BootSeconds"] == 12.5 and huge.size() <= MAX_EVENT_BYTES
