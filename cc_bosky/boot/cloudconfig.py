"""bosky's stanza within cloud-init's own cloud-config schema.

cloud-init validates user data against a schema with
``additionalProperties: false`` and warns about the unknown ``bosky`` key
(from 23.4 that warning makes the boot "degraded"; canonical/cloud-init#5558:
custom modules cannot register keys). Here the schema is extended with
bosky's stanza, to check a file (``bosky schema FILE``) and to tell whether a
boot's schema warning was about nothing but the ``bosky`` key. ``merge``
combines cloud-config parts with cloud-init's own mergers, for
``bosky schema`` on multipart user data.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import re
import signal
from functools import cache
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .. import config, files, schemas
from ..errors import ConfigError

LOG = logging.getLogger("bosky.reporter")

_SCHEMA_WARNING = re.compile(r"schema|invalid cloud-config", re.IGNORECASE)
_CLOUD_CONFIG_FILES = ("cloud-config.txt", "vendor-cloud-config.txt", "vendor2-cloud-config.txt")
#: cloud-init's merge when a part names none (handlers/cloud_config.py, 20.4.1 to 25.1.4):
#: a later part's top-level key replaces an earlier part's whole.
DEFAULT_MERGE = "dict(replace)+list()+str()"


def stanza_schema() -> Dict[str, Any]:
    schema = copy.deepcopy(schemas.load("config"))
    for key in ("$schema", "id", "title"):
        schema.pop(key, None)
    return schema


def extended_schema() -> Dict[str, Any]:
    """cloud-init's cloud-config schema with ``bosky`` as a known key."""
    from cloudinit.config.schema import get_schema

    schema: Dict[str, Any] = copy.deepcopy(get_schema())
    schema.setdefault("properties", {})["bosky"] = stanza_schema()
    return schema


def problems(cloud_config: Any) -> Tuple[List[str], bool]:
    """Schema errors in a cloud-config mapping, and whether cloud-init's own
    schema was used (False where cloud-init is not installed)."""
    if not isinstance(cloud_config, dict):
        return ["(top level): a cloud-config file must be a mapping of keys"], False
    try:
        schema = extended_schema()
    except Exception:  # no cloud-init here: check what bosky owns
        return config.problems(cloud_config.get("bosky", {}), "bosky"), False
    return _validate(cloud_config, schema), True


def _validate(cloud_config: Dict[str, Any], schema: Dict[str, Any]) -> List[str]:
    try:  # 22.x and later: cloud-init's validator, deprecations are not errors
        from cloudinit.config.schema import SchemaDeprecationError, get_jsonschema_validator

        validator_cls, format_checker = get_jsonschema_validator()
        validator = validator_cls(schema, format_checker=format_checker())
        return [
            f"{'.'.join(str(p) for p in e.path) or '(top level)'}: {e.message}"
            for e in sorted(validator.iter_errors(cloud_config), key=lambda e: list(e.path))
            if not isinstance(e, SchemaDeprecationError)
        ]
    except ImportError:  # 20.x
        from cloudinit.config.schema import SchemaValidationError, validate_cloudconfig_schema

        try:
            validate_cloudconfig_schema(cloud_config, schema, strict=True)
        except SchemaValidationError as exc:
            return [f"{path or '(top level)'}: {msg}" for path, msg in exc.schema_errors]
        return []


@dataclasses.dataclass(frozen=True)
class MergedPart:
    """What merging one cloud-config part did."""

    name: str
    problem: str = ""  # why cloud-init skips the part ("" when merged)
    replaced: Tuple[str, ...] = ()  # top-level mappings and lists of earlier parts it replaced


def merge(parts: Sequence[Tuple[str, Mapping[str, Any], str]]
          ) -> Tuple[Dict[str, Any], List[MergedPart], bool]:
    """Merge (name, cloud-config, Merge-Type header) parts in order, as
    cloud-init's cloud-config handler does: each part's ``merge_how`` (or
    ``merge_type``), else its header, else :data:`DEFAULT_MERGE`. Returns the
    merged config, what happened to each part, and whether cloud-init's own
    mergers did it (without cloud-init only the default merge can be applied;
    a part asking for another one is reported as not merged)."""
    try:
        from cloudinit import mergers
    except ImportError:
        mergers = None
    merged: Dict[str, Any] = {}
    report: List[MergedPart] = []
    for name, part, header in parts:
        payload = copy.deepcopy(dict(part))
        try:
            if mergers is None:
                if payload.pop("merge_how", payload.pop("merge_type", None)) or header:
                    raise ValueError("merge_how/Merge-Type needs cloud-init's mergers "
                                     "(not installed for this Python)")
                result = {**merged, **payload}
            else:
                how = mergers.dict_extract_mergers(payload) + \
                    mergers.string_extract_mergers(header)
                merger = mergers.construct(how or mergers.string_extract_mergers(DEFAULT_MERGE))
                result = merger.merge(merged, payload)
        except Exception as exc:  # cloud-init logs it and leaves the part out
            report.append(MergedPart(name, f"not merged, cloud-init skips it: {exc}"))
            continue
        replaced = tuple(k for k, v in merged.items() if isinstance(v, (dict, list))
                         and k in payload and result.get(k) == payload[k] != v)
        report.append(MergedPart(name, replaced=replaced))
        merged = result
    return merged, report, mergers is not None


def is_only_bosky_schema_warning(level: str, message: str, cloud_data_dir: str) -> bool:
    """True when a recoverable error is cloud-init's schema warning and the
    instance's cloud-config has a ``bosky`` key and is valid without it."""
    if level.upper() != "WARNING" or not _SCHEMA_WARNING.search(message):
        return False
    return instance_config_valid(cloud_data_dir)


def schema_warning_in(status: Optional[Dict[str, Any]]) -> bool:
    """Whether status.json's ``v1`` records a schema warning in any stage yet."""
    for stage in (status or {}).values():
        found = stage.get("recoverable_errors") if isinstance(stage, dict) else None
        warnings = found.get("WARNING") if isinstance(found, dict) else None
        if isinstance(warnings, list) and any(
                isinstance(w, str) and _SCHEMA_WARNING.search(w) for w in warnings):
            return True
    return False


#: How long the reporter waits for the forked check; past it, "not checked".
CHECK_TIMEOUT = 30.0


@cache
def instance_config_valid(cloud_data_dir: str) -> bool:
    """Whether this instance's cloud-config (user and vendor data, as cloud-init
    stored them in its init stage) has a ``bosky`` stanza and, that aside, is valid.

    Cached: the reporter works it out while it waits, so the verdict does not
    wait for cloud-init's schema and jsonschema to load. Without a stanza in
    them (it is in cloud.cfg.d) the warning is not about bosky, and cloud-init's
    schema is not loaded at all. With one, the check runs in a forked child:
    cloud-init's schema and jsonschema (~15 MB) then leave with the child
    instead of staying in the reporter through its flush window.

    A child that cannot start, dies or takes longer than :data:`CHECK_TIMEOUT`
    means "not checked", so False (the warning stays the boot's own): never
    the same check in the reporter, without the limit, on user data that may
    be hostile.
    """
    found = _instance_config_files(cloud_data_dir)
    if not any("bosky" in data for data in found):
        return False
    return bool(_in_child(lambda: _valid_without_bosky(found)))


def _instance_config_files(cloud_data_dir: str) -> List[Dict[str, Any]]:
    instance = os.path.join(cloud_data_dir, "instance")
    return [data for data in (_load(os.path.join(instance, name))
                              for name in _CLOUD_CONFIG_FILES) if data is not None]


def _valid_without_bosky(found_files: Sequence[Dict[str, Any]]) -> bool:
    for data in found_files:  # the stanza's own problems are bosky's ConfigWarnings
        found, with_cloud_init = problems({k: v for k, v in data.items() if k != "bosky"})
        if found or not with_cloud_init:
            return False
    return True


def _in_child(check: Callable[[], bool]) -> Optional[bool]:
    """``check()`` in a forked child (its answer back through a pipe), or None
    (logged: not checked) when the child could not start, died or timed out."""
    import select

    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(read_end)
        os.close(write_end)
        LOG.warning("cloud-config schema not checked: cannot start its child process (%s)", exc)
        return None
    if pid == 0:  # the child: no logging, no cleanup handlers, just the answer
        code = 1
        try:
            os.close(read_end)
            shared = _status_kb("VmRSS")  # the reporter's pages, shared until written
            ok = check()
            os.write(write_end, f"{int(ok)} {max(0, _status_kb('VmHWM') - shared)}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], CHECK_TIMEOUT)
        answer = os.read(read_end, 64) if ready else b""
    finally:
        os.close(read_end)
        if not answer:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    valid, _, peak = answer.decode("ascii", "replace").partition(" ")
    if valid not in ("0", "1"):
        LOG.warning("cloud-config schema not checked: its child process %s",
                    "died" if ready else f"took over {CHECK_TIMEOUT:.0f} s and was killed")
        return None
    LOG.info("cloud-config schema check in a child process: %s; it grew by %s MB",
             "valid apart from the bosky key" if valid == "1" else "not valid",
             f"{int(peak) / 1024:.1f}" if peak.isdigit() else "unknown")
    return valid == "1"


def _status_kb(field: str) -> int:
    """A kB figure of this process's /proc status (VmRSS, VmHWM); 0 if absent."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _load(path: str) -> Optional[Dict[str, Any]]:
    try:  # read as it grows: a 16 MB buffer up front would be the reporter's peak
        raw = files.read_bytes(path, 16 * 1024 * 1024)
    except OSError:
        return None
    try:
        data = config.parse_yaml(raw, path)
    except ConfigError:
        return {"__unreadable__": path}  # not valid: keep the warning
    return data
