"""``bosky schema FILE``: check a cloud-config file before it ships, bosky's stanza included."""

from __future__ import annotations

import argparse
import sys
from typing import List, Mapping

from .. import config
from ..boot.cloudconfig import problems
from ..errors import EXIT_OK, ConfigError, UsageError
from .cli import _Parser


def schema_command(argv: List[str], environ: Mapping[str, str]) -> int:
    """``bosky schema FILE``: check a cloud-config file, bosky's stanza included."""
    p = _Parser(prog="bosky schema", description="Validate a cloud-config file against "
                "cloud-init's schema extended with bosky's stanza.")
    p.add_argument("file", help="a #cloud-config file, or a /etc/cloud/cloud.cfg.d/ file")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        with open(args.file, "rb") as f:
            raw = f.read(16 * 1024 * 1024)
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    except ValueError:  # a NUL or an unencodable character in the path
        raise UsageError(f"cannot read {args.file!r}: not a valid path") from None
    data = config.parse_yaml(raw, args.file)
    if "bosky" in data and data["bosky"] is None:
        data["bosky"] = {}  # `bosky:` with nothing under it: the boot reads it as {}
    found, with_cloud_init = problems(data)
    if found:
        raise ConfigError(f"{args.file}: " + "; ".join(found))
    scope = "cloud-init's schema with bosky's stanza" if with_cloud_init else \
        "bosky's stanza only (cloud-init is not installed for this Python)"
    print(f"{args.file}: valid ({scope})")
    if "bosky" not in data:
        # Older cloud-init schemas accept unknown top-level keys, so a typo
        # such as 'boksy:' passes them; without the key the module never runs.
        print(f"bosky: warning: {args.file} has no 'bosky' key: the module will not run "
              "with this file alone", file=sys.stderr)
    return EXIT_OK
