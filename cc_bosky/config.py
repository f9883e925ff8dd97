"""bosky's settings: one schema, read from defaults, a file, the environment and flags.

The same keys make up ``/etc/bosky/config.yaml`` and the ``bosky:`` stanza of
cloud-config, so both are described by ``schemas/config.schema.json`` and
turned into one :class:`Settings`. Later layers win: defaults, then the file,
then the environment, then flags (or, at boot, the cloud-config stanza). Each
layer is read and checked in :mod:`cc_bosky.layers` (re-exported here).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

from .layers import (
    DEFAULT_CONFIG_FILE,
    checked,
    env_typos,
    from_env,
    keys,
    lenient,
    parse_yaml,
    problems,
    read_file,
    schema,
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every key of the config schema, with the schema's defaults."""

    project: str = "unknown"
    event_bus: Optional[str] = None
    region: Optional[str] = None
    endpoint_url: Optional[str] = None
    detail_type: str = "User Data"
    send_timeout: float = 30
    deadline: int = 1800
    log_lines: int = 50
    send: Tuple[str, ...] = ("pass", "fail", "degraded", "timeout")
    degraded_is: str = "degraded"
    flush_window: int = 600
    spool_dir: str = "/var/lib/bosky/spool"
    spool_max_events: int = 1000
    spool_max_bytes: int = 16 * 1024 * 1024
    run_dir: str = "/run/bosky"
    # Acting on the verdict (cc_bosky.actions): a hook name or {name, group, ...};
    # true or {stack, resource, ...}.
    lifecycle_hook: Any = None
    cfn_signal: Any = None
    autoscaling_endpoint_url: Optional[str] = None
    cloudformation_endpoint_url: Optional[str] = None

    def endpoints(self) -> Dict[str, Optional[str]]:
        """The configured endpoint of each service bosky calls (None: the regional one)."""
        return {"events": self.endpoint_url, "autoscaling": self.autoscaling_endpoint_url,
                "cloudformation": self.cloudformation_endpoint_url}

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def build(*layers: Mapping[str, Any]) -> Settings:
    """Settings from already-validated layers, later layers winning."""
    merged: Dict[str, Any] = {}
    for layer in layers:
        merged.update({k: v for k, v in layer.items() if v is not None})
    if "send" in merged:
        merged["send"] = tuple(merged["send"])
    return Settings(**merged)


def resolve(
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    config_file: Optional[str] = None,
) -> Settings:
    """Settings for the command: flags, then environment, then file, then defaults."""
    path = config_file or environ.get("BOSKY_CONFIG") or DEFAULT_CONFIG_FILE
    explicit = config_file is not None or "BOSKY_CONFIG" in environ
    from_file = checked(read_file(path, required=explicit), path)
    env = checked(from_env(environ), "environment")
    given = checked({k: v for k, v in flags.items() if v is not None}, "flags")
    return build(from_file, env, given)


__all__ = ["DEFAULT_CONFIG_FILE", "Settings", "build", "checked", "env_typos", "from_env", "keys",
           "lenient", "parse_yaml", "problems", "read_file", "resolve", "schema"]
