"""Checks of bosky's own settings: the config files and environment it reads, and
the region it would send to."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .. import awsconfig, config
from ..awsconfig import Profile
from ..errors import BoskyError, UsageError
from ..host.cloudcfg import read_system
from ..host.root import in_root, is_live
from . import FAIL, OK, WARN, Check


@dataclasses.dataclass(frozen=True)
class ConfigView:
    """The settings bosky would use, where they came from, and what was wrong."""

    settings: config.Settings
    sources: Tuple[str, ...]
    problems: Tuple[str, ...]
    origin: Mapping[str, str]  # key -> the layer that set it


def load_config(root: Path, environ: Mapping[str, str],
                config_file: Optional[str] = None) -> ConfigView:
    """/etc/bosky/config.yaml, the ``bosky:`` stanzas of cloud.cfg(.d), the environment.

    At boot a stanza wins over the file; here the environment comes last, as
    for the ``bosky`` command. Invalid keys are left out and reported.
    """
    layers: List[Tuple[str, Dict[str, Any]]] = []
    problems: List[str] = []
    from_file = _file_layer(root, environ, config_file, problems)
    if from_file is not None:
        layers.append(from_file)
    layers += _stanza_layers(root, problems)
    try:
        env, bad = config.lenient(config.from_env(environ), "environment")
        problems += bad
    except BoskyError as exc:
        env = {}
        problems.append(str(exc))
    if env:
        layers.append(("environment", env))
    origin = {key: where for where, layer in layers for key in layer}
    settings = config.build(*(layer for _, layer in layers))
    return ConfigView(settings, tuple(w for w, _ in layers), tuple(problems), origin)


def _file_layer(root: Path, environ: Mapping[str, str], config_file: Optional[str],
                problems: List[str]) -> Optional[Tuple[str, Dict[str, Any]]]:
    named = config_file or (environ.get("BOSKY_CONFIG") if is_live(root) else None)
    path = Path(named) if named else in_root(root, config.DEFAULT_CONFIG_FILE)
    try:
        data = config.read_file(str(path), required=bool(named))
    except BoskyError as exc:
        problems.append(str(exc))
        return None
    if not data and not path.exists():
        return None
    good, bad = config.lenient(data, str(path))
    problems += bad
    return str(path), good


def _stanza_layers(root: Path, problems: List[str]) -> List[Tuple[str, Dict[str, Any]]]:
    try:
        files = read_system(root).files()
    except UsageError:
        return []  # the registered check reports it
    layers = []
    for cfg in files:
        if "bosky" in cfg.data:
            good, bad = config.lenient(cfg.data["bosky"], f"{cfg.shown}: bosky")
            problems += bad
            layers.append((f"{cfg.shown} (bosky:)", good))
    return layers


def check_config(view: ConfigView) -> Check:
    name = "config"
    if view.problems:
        return Check(name, FAIL, "; ".join(view.problems),
                     "correct the named keys ('bosky --generate-config' describes them)")
    s = view.settings
    where = ", ".join(view.sources) or "defaults only"
    if s.project == "unknown":
        return Check(name, WARN, f"project is not set, events will have Source 'unknown' "
                     f"({where})", "set project, e.g. 'bosky install --config --project NAME'")
    return Check(name, OK, f"project {s.project!r}, DetailType {s.detail_type!r}, bus "
                 f"{s.event_bus or 'default'} (from {where})")


def resolve_region(view: ConfigView, ident_region: Optional[str],
                   chosen: Optional[Profile] = None) -> Tuple[Optional[str], str]:
    """The command's order: bosky's own settings, the AWS profile's region
    (:mod:`cc_bosky.awsconfig`), then the instance's."""
    if view.settings.region:
        return view.settings.region, view.origin.get("region", "config")
    profile_region = awsconfig.region(chosen) if chosen else None
    if chosen and profile_region:
        return profile_region, f"profile '{chosen.name}' in {chosen.config_file}"
    if ident_region:
        return ident_region, "instance identity"
    return None, ""


def check_region(region: Optional[str], source: str, instance: bool) -> Check:
    name = "region"
    if region:
        return Check(name, OK, f"{region} (from {source})")
    if not instance:
        return Check(name, WARN, "not set in the image: looked up from the instance identity "
                     "at boot")
    return Check(name, FAIL, "no region in config, environment, AWS profile or instance "
                 "identity", "set region in /etc/bosky/config.yaml or AWS_REGION, set 'region' "
                 "for the AWS profile, or run on EC2")
