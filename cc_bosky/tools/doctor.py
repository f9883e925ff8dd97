"""``bosky doctor``: is this machine (or an image, with ``--root``) ready to report its boots?

A checklist, one line per check (the checks are in :mod:`cc_bosky.checks`).
The checks look where cloud-init looks: at the Python named by the
``cloud-init`` script's shebang (the interpreter that will import
``cc_bosky``), at the effective module lists (through the same reader as
``bosky install``, so both agree on what "registered" means), and at the
config files and environment bosky itself reads.

With ``--root`` the machine inspected is an image, not this one: nothing of
the image is executed (its Python may not run here), so the cloud-init
version and the packages are found on disk. With ``--root`` or ``--image``
(an image being built, checked from inside) the instance-only checks --
region from the instance identity, credentials, endpoint -- are not made:
they belong to the instances that will boot the image.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, List, Mapping, Optional

from ..checks import FAIL, WARN, Check
from ..checks.aws import check_credentials, check_endpoint, check_send_test, endpoint_url
from ..checks.cloudinit import (
    check_cloud_init,
    check_dropin,
    check_imports,
    check_registered,
    check_units,
    check_version,
)
from ..checks.settings import ConfigView, check_config, check_region, load_config, resolve_region
from ..errors import EXIT_NOT_DELIVERED, EXIT_OK, BoskyError, UsageError
from ..host.python import find_cloud_init, probe_for
from ..host.root import in_root, is_live
from .args import PROFILE_HELP, add_config, subcommand


def _guarded(name: str, run: Callable[[], Check]) -> Check:
    """One check's unexpected error is that check's failure, not the end of the list."""
    try:
        return run()
    except BoskyError as exc:
        return Check(name, FAIL, str(exc))
    except Exception as exc:
        return Check(name, FAIL, f"internal error: {type(exc).__name__}: {exc}",
                     "report this as a bosky bug")


def run_checks(root: Path, environ: Mapping[str, str], config_file: Optional[str] = None,
               send_test: bool = False, image: bool = False,
               profile: Optional[str] = None) -> List[Check]:
    """Every check; ``image``: skip what belongs to the instances (implied by a root);
    ``profile``: ``--profile``, read with the environment as the command reads it."""
    from .. import awsconfig
    from ..identity import INSTANCE_DATA, Identity, resolve

    live = is_live(root)
    instance = live and not image
    found = find_cloud_init(root, environ)
    probe = probe_for(found, root, environ)
    python = found.python if found else ()
    version = (probe.get("cloudinit") or {}).get("version") if "error" not in probe else None
    view = load_config(root, environ, config_file)
    # An image's identity is the future instance's, unknown here.
    ident = resolve(None, environ, str(in_root(root, INSTANCE_DATA))) if instance else Identity()
    # The AWS profile and its region, and the sender's environment, as the
    # command has them; an image's instances have no ~/.aws of this machine.
    chosen = awsconfig.profile(profile, environ) if instance else None
    if chosen:
        environ = awsconfig.sending_environ(chosen, environ)
    region, source = resolve_region(view, ident.region, chosen)
    # No cloud-init at all (a workstation): the cloud-init check says so once;
    # its configuration and the reporter's units are not there to check, and
    # a FAIL or warning about each would only repeat it.
    absent = found is None and not in_root(root, "/etc/cloud/cloud.cfg").exists()
    checks = [
        _guarded("cloud-init", lambda: check_cloud_init(found, probe)),
        _guarded("cloud-init version", lambda: check_version(version)),
        _guarded("imports", lambda: check_imports(probe, python, environ, live)),
        *([] if absent else [_guarded("registered", lambda: check_registered(root)),
                             _guarded("drop-in", lambda: check_dropin(root)),
                             _guarded("reporter unit", lambda: check_units(root))]),
        _guarded("config", lambda: check_config(view)),
        _guarded("region", lambda: check_region(region, source, instance)),
        _guarded("credentials", lambda: check_credentials(environ, instance, chosen)),
        _guarded("endpoint",
                 lambda: check_endpoint(endpoint_url(view, region), environ, instance)),
    ]
    checks += _action_checks(view, ident, environ, instance, str(in_root(root, INSTANCE_DATA)))
    if send_test:
        checks.append(_guarded("send test",
                               lambda: check_send_test(view, region, ident, environ)))
    return checks


def _action_checks(view: ConfigView, ident: Any, environ: Mapping[str, str], instance: bool,
                   instance_data: str) -> List[Check]:
    """The lifecycle hook and stack signal checks, for what is configured."""
    from ..checks.actions import action_checks

    try:
        return action_checks(view.settings, ident, environ, instance, instance_data)
    except Exception as exc:
        return [Check("actions", FAIL, f"internal error: {type(exc).__name__}: {exc}",
                      "report this as a bosky bug")]


def doctor_command(argv: List[str], environ: Mapping[str, str]) -> int:
    p = subcommand("doctor", "Check that cloud-init will run bosky and that its events can "
                   "reach EventBridge. Exit 0 when no check failed.", config=False)
    p.add_argument("--root", default="/", metavar="DIR",
                   help="inspect the system under DIR (an image being built); default /")
    p.add_argument("--image", action="store_true",
                   help="check only what belongs to the image (while baking it): skip the "
                   "region lookup, credentials and endpoint checks")
    add_config(p)
    p.add_argument("--profile", metavar="NAME", help=PROFILE_HELP)
    p.add_argument("--send-test", action="store_true",
                   help="send an event with Status 'test' (not spooled) and report the answer")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    args = p.parse_args(argv)
    root = Path(args.root)
    if not root.is_dir():
        raise UsageError(f"--root {root}: not a directory")
    from .. import awsconfig

    awsconfig.check(awsconfig.profile(args.profile, environ))  # a missing profile: exit 2
    checks = run_checks(root, environ, args.config, args.send_test, args.image, args.profile)
    failed = sum(c.status == FAIL for c in checks)
    if args.json:
        print(json.dumps({"root": str(root), "ok": not failed,
                          "checks": [dataclasses.asdict(c) for c in checks]}, indent=2))
    else:
        for check in checks:
            print(check.line())
        warned = sum(c.status == WARN for c in checks)
        print(f"{len(checks)} checks: {failed} failed, {warned} warnings")
    return EXIT_NOT_DELIVERED if failed else EXIT_OK
