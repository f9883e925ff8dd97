"""The three ways bosky can end, and the exit code each one means.

Kept apart from the CLI so the cloud-init module and the background reporter
can raise the same errors without importing argparse.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_NOT_DELIVERED = 1
EXIT_USAGE = 2
# As a shell reports a command ended by SIGINT (128 + 2): Ctrl-C.
EXIT_INTERRUPTED = 130


class BoskyError(Exception):
    """An expected failure with a one-line reason for the user."""

    exit_code = EXIT_NOT_DELIVERED


class UsageError(BoskyError):
    """Bad flags, bad config, or a setting that is missing (exit 2)."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A config file or stanza that does not match the schema (exit 2)."""


class DeliveryError(BoskyError):
    """The event did not reach EventBridge (exit 1)."""
