"""The one argument parser every ``bosky`` command is built on.

Each command (the event sender, ``flush``, ``status``, ``schema``,
``install``, ``doctor``, ``fleet``) makes a :class:`Parser`, so a bad flag is
the same one-line usage error (exit 2) everywhere, ``--debug`` is shown the
same way everywhere, and the flags several commands share (``--config``,
``--region``, ``--endpoint-url``, ``--profile``) have one wording.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from ..errors import UsageError
from ..layers import DEFAULT_CONFIG_FILE

CONFIG_HELP = f"bosky config file (env BOSKY_CONFIG; default {DEFAULT_CONFIG_FILE})"
PROFILE_HELP = ("AWS profile for credentials and region, as the AWS CLI reads it "
                "(env AWS_PROFILE; default 'default')")


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (``cli.main`` prints
    it, exit 2), and gives every command ``--debug``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true",
                          help="show a traceback for an internal error")

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def subcommand(name: str, description: str, *, config: bool = True) -> Parser:
    """The parser of ``bosky NAME``, with ``--config FILE`` unless ``config`` is False."""
    p = Parser(prog=f"bosky {name}", description=description)
    if config:
        add_config(p)
    return p


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)


def add_connection(p: argparse.ArgumentParser, region_help: str, endpoint_help: str) -> None:
    """--region, --endpoint-url and --profile: the same names and meaning on every command."""
    p.add_argument("--region", help=region_help)
    p.add_argument("--endpoint-url", metavar="URL", help=endpoint_help)
    p.add_argument("--profile", metavar="NAME", help=PROFILE_HELP)


__all__ = ["CONFIG_HELP", "PROFILE_HELP", "Parser", "add_config", "add_connection", "subcommand"]
