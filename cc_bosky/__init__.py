"""cc_bosky: report each boot's cloud-init verdict as an Amazon EventBridge event.

This is the cloud-init entry point and nothing more. Listed as ``bosky`` in
``cloud_final_modules`` (and, to catch boots that hang, in
``cloud_init_modules``), it starts a small background reporter that waits for
cloud-init's ``result.json`` and sends one verdict per boot. Configuration is
the ``bosky:`` cloud-config stanza (see README.md). Importing this package
loads nothing heavy: boto3/botocore are imported only where an event is sent.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from .version import __version__

# cloud-init reads this to decide when to run the module (22.x and later);
# "always" because every boot needs its verdict. No ``schema`` attribute:
# cloud-init rejects custom modules that define one.
meta: Dict[str, Any] = {
    "id": "cc_bosky",
    "name": "bosky",
    "title": "Report the boot's verdict to Amazon EventBridge",
    "description": "Sends one EventBridge event per boot: pass, fail, degraded or timeout.",
    "distros": ["all"],
    "frequency": "always",
    "activate_by_schema_keys": ["bosky"],
    "examples": [],
}
# cloud-init before 22.x reads the frequency from this attribute instead, and
# would otherwise run the module once per instance.
frequency = meta["frequency"]


def handle(name: str, cfg: Dict[str, Any], cloud: Any, *legacy: Any,
           args: Optional[list] = None, **_unused: Any) -> None:  # type: ignore[type-arg]
    """Start this boot's reporter; never raise into cloud-init.

    cloud-init up to 23.1 calls ``handle(name, cfg, cloud, log, args)``; 23.2
    and later call it with keywords and, for a handler of exactly five
    parameters, pass ``log=`` and log a deprecation. This signature takes both
    calls and has six parameters.
    """
    import logging  # here, not at import: the `bosky` command has no use for it
    import time

    # CPU time too: on a busy machine cloud-init's "took" is mostly waiting for a core.
    began, began_cpu = time.perf_counter(), time.process_time()
    log = logging.getLogger(__name__)
    if "bosky" not in cfg:  # cloud-init before 22.x ignores activate_by_schema_keys
        log.debug("bosky: no 'bosky' key in cloud-config, nothing to report")
        return
    try:
        from .boot.launcher import start_reporter

        run_dir, cloud_dir = _cloud_paths(cloud)
        how = start_reporter(cfg.get("bosky"), run_dir, cloud_dir,
                             cloud_init_version=_cloud_init_version())
        if how:
            log.debug("bosky: reporter started %s in %.1f ms (%.1f ms CPU)", how,
                      1000 * (time.perf_counter() - began),
                      1000 * (time.process_time() - began_cpu))
    except Exception as exc:  # a reporting tool must never break the boot it reports
        log.warning("bosky: could not start the boot reporter: %s", exc)


def _cloud_paths(cloud: Any) -> Tuple[str, str]:
    paths = getattr(cloud, "paths", None)
    run_dir = getattr(paths, "run_dir", None) or "/run/cloud-init"
    cloud_dir = getattr(paths, "cloud_dir", None) or "/var/lib/cloud"
    return str(run_dir), str(cloud_dir)


def _cloud_init_version() -> Optional[str]:
    try:
        from cloudinit import version  # already imported by cloud-init itself

        return str(version.version_string())
    except Exception:
        return None


__all__ = ["__version__", "frequency", "handle", "meta"]
