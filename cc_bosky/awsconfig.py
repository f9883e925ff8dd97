"""AWS's own settings as the AWS CLI reads them: the profile, its region, and
whether any credential source could answer at all.

The profile is ``--profile``, then ``AWS_PROFILE`` (then botocore's older
``AWS_DEFAULT_PROFILE``), then ``default``. Its region is the ``region`` of
that profile in the config file (``AWS_CONFIG_FILE``, else
``~/.aws/config``); the files are read with botocore's own config loader
(imported only when a file exists), so ``[profile NAME]`` and ``[default]``
mean what they mean to the AWS CLI.

:func:`no_credentials` answers, before anything is sent, the one question the
command must not spend its whole send timeout on: can any link of botocore's
credential chain ever answer here? On a workstation with no keys, no profile
and no instance metadata service, none can, and the command says so at once.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional

from .errors import UsageError

#: The environment's credentials, which an explicit ``--profile`` sets aside
#: (botocore: an explicitly given profile negates the environment provider).
ENV_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN")
# Profile keys that can produce credentials: static keys, roles, SSO, a
# credential process, web identity, console login. Anything else (region,
# output, retry settings) cannot.
_CREDENTIAL_KEY_PREFIXES = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token",
                            "role_arn", "source_profile", "credential_", "sso_",
                            "web_identity_token_file", "login_session")


@dataclasses.dataclass(frozen=True)
class Profile:
    """The AWS profile in effect and the two files it may live in."""

    name: str
    explicit: bool  # named by --profile or AWS_PROFILE, not the implicit 'default'
    flag: bool  # named by --profile
    config_file: str
    credentials_file: str


def profile(flag: Optional[str], environ: Mapping[str, str]) -> Profile:
    """The profile for ``--profile`` (``flag``) and the environment."""
    named = flag or environ.get("AWS_PROFILE") or environ.get("AWS_DEFAULT_PROFILE") or None
    home = environ.get("HOME") or os.path.expanduser("~")
    return Profile(
        name=named or "default",
        explicit=named is not None,
        flag=bool(flag),
        config_file=os.path.expanduser(environ.get("AWS_CONFIG_FILE")
                                       or os.path.join(home, ".aws", "config")),
        credentials_file=os.path.expanduser(environ.get("AWS_SHARED_CREDENTIALS_FILE")
                                            or os.path.join(home, ".aws", "credentials")),
    )


def sending_environ(chosen: Profile, environ: Mapping[str, str]) -> Mapping[str, str]:
    """The environment the sender's credential chain sees: ``--profile`` is
    AWS_PROFILE, and, as in the AWS CLI, wins over keys in the environment."""
    if not chosen.flag:
        return environ
    changed = {k: v for k, v in environ.items() if k not in ENV_KEYS}
    changed["AWS_PROFILE"] = chosen.name
    return changed


def region(chosen: Profile) -> Optional[str]:
    """The profile's ``region`` in the config file, or None."""
    value = _section(chosen.config_file, chosen.name, config=True).get("region")
    return value.strip() or None if isinstance(value, str) else None


def check(chosen: Profile) -> None:
    """UsageError (exit 2) for a profile named explicitly that neither file
    has, in the AWS CLI's words."""
    if not chosen.explicit:
        return
    if _has_section(chosen.config_file, chosen.name, True) or \
            _has_section(chosen.credentials_file, chosen.name, False):
        return
    raise UsageError(f"the config profile ({chosen.name}) could not be found in "
                     f"{chosen.config_file} or {chosen.credentials_file}")


def no_credentials(chosen: Profile, environ: Mapping[str, str]) -> Optional[str]:
    """None when some credential source may answer; else one line naming
    every place looked in, for the user to put credentials in one of them."""
    looked: List[str] = []
    if not chosen.flag:
        if environ.get("AWS_ACCESS_KEY_ID") or environ.get("AWS_SECRET_ACCESS_KEY"):
            return None
        looked.append("the environment (AWS_ACCESS_KEY_ID)")
    if environ.get("AWS_WEB_IDENTITY_TOKEN_FILE") and environ.get("AWS_ROLE_ARN"):
        return None
    for path, config in ((chosen.credentials_file, False), (chosen.config_file, True)):
        section = _section(path, chosen.name, config)
        if any(k.startswith(_CREDENTIAL_KEY_PREFIXES) for k in section):
            return None
        where = "no credentials in it" if section else (
            "no such profile" if os.path.exists(path) else "no such file")
        looked.append(f"profile '{chosen.name}' in {path} ({where})")
    if environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or \
            environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        return None
    looked.append("the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI)")
    from .identity import imds_never

    imds = imds_never(environ)
    if imds is None:
        return None
    looked.append(f"the instance metadata service ({imds})")
    return "no AWS credentials: looked in " + ", ".join(looked)


def _section(path: str, name: str, config: bool) -> Dict[str, Any]:
    """Profile ``name``'s keys in a config (``config``) or credentials file; {} if none."""
    found = _profiles(path, config).get(name)
    return found if isinstance(found, dict) else {}


def _has_section(path: str, name: str, config: bool) -> bool:
    return name in _profiles(path, config)


def _profiles(path: str, config: bool) -> Dict[str, Any]:
    """Every profile in a config file (``[profile NAME]``, ``[default]``) or
    a credentials file (``[NAME]``), as botocore reads them."""
    if not os.path.isfile(path):
        return {}
    from botocore import configloader
    from botocore.exceptions import BotoCoreError

    try:
        if config:
            profiles: Dict[str, Any] = configloader.load_config(path).get("profiles", {})
            return profiles
        return dict(configloader.raw_config_parse(path))
    except (BotoCoreError, OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the AWS {'config' if config else 'credentials'} "
                         f"file {path}: {exc}") from None
