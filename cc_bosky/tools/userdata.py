"""User data as cloud-init reads it: the layers taken off, the parts left.

EC2 takes user data base64-encoded (what ``Fn::Base64`` and Terraform's
``base64gzip`` produce) and serves it decoded; cloud-init then gunzips the
whole blob, reads it as MIME multipart when ``MIME-Version:`` appears in its
first 4096 bytes (else as one part), gunzips gzip-typed parts and types
``text/plain``, ``text/x-shellscript`` and un-typed parts by their first line
and expands ``#cloud-config-archive`` parts (``cloudinit.user_data``'s
``convert_string``, ``_process_msg`` and ``_explode_archive``, the same in
20.4.1, 22.4.2 and 25.1.4). This module does the same with the standard
library only, and names each part the way cloud-init does: its attachment's
file name, else ``part-NNN``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import email
import email.message
import gzip
import io
import re
import zlib
from typing import Any, Callable, List, Optional, Tuple

#: The most bytes any layer may expand to (a gzip bomb ends here).
MAX_BYTES = 16 * 1024 * 1024
#: EC2 refuses more user data than this, counted before base64.
EC2_MAX_BYTES = 16 * 1024

CLOUD_CONFIG = "text/cloud-config"
JSON_PATCH = "text/cloud-config-jsonp"
JINJA = "text/jinja2"
ARCHIVE = "text/cloud-config-archive"
NOT_MULTIPART = "text/x-not-multipart"

# cloudinit.handlers.INCLUSION_TYPES_MAP: a payload's first line -> its type.
_STARTS_WITH = {
    "#include": "text/x-include-url",
    "#include-once": "text/x-include-once-url",
    "#!": "text/x-shellscript",
    "#cloud-config": CLOUD_CONFIG,
    "#part-handler": "text/part-handler",
    "#cloud-boothook": "text/cloud-boothook",
    "#cloud-config-archive": ARCHIVE,
    "#cloud-config-jsonp": JSON_PATCH,
    "## template: jinja": JINJA,
}
_LONGEST_FIRST = sorted(_STARTS_WITH, key=len, reverse=True)
# Types cloud-init looks into to find the real one (user_data.TYPE_NEEDED + x-shellscript).
_SNIFFED = ("text/plain", NOT_MULTIPART, "text/x-shellscript")
_GZIP_TYPES = frozenset({
    "application/gzip", "application/gzip-compressed", "application/gzipped",
    "application/x-compress", "application/x-compressed", "application/x-gunzip",
    "application/x-gzip", "application/x-gzip-compressed",
})
#: What cloud-init does with each type it handles; any other type it ignores.
HANDLED = {
    CLOUD_CONFIG: "cloud-config",
    JSON_PATCH: "a JSON patch applied to the merged cloud-config",
    JINJA: "a jinja template, rendered at boot with the instance's data",
    ARCHIVE: "a cloud-config archive, expanded at boot",
    "text/x-shellscript": "a script, run once per instance",
    "text/x-shellscript-per-boot": "a script, run every boot",
    "text/x-shellscript-per-instance": "a script, run once per instance",
    "text/x-shellscript-per-once": "a script, run once ever",
    "text/cloud-boothook": "a boothook, run early every boot",
    "text/part-handler": "a part handler",
    "text/upstart-job": "an upstart job",
    "text/x-include-url": "URLs fetched at boot",
    "text/x-include-once-url": "URLs fetched at boot, once",
}
_BASE64 = re.compile(rb"[A-Za-z0-9+/=\s]+")


@dataclasses.dataclass(frozen=True)
class Part:
    """One part as cloud-init hands it to a handler."""

    name: str
    content_type: str
    text: str
    merge_type: str = ""  # the Merge-Type (or X-Merge-Type) header


@dataclasses.dataclass(frozen=True)
class UserData:
    layers: Tuple[str, ...]  # what was taken off, outermost first
    parts: Tuple[Part, ...]
    problems: Tuple[str, ...]  # what cloud-init could not read (the part is skipped)
    size: int  # bytes as EC2 stores them (after base64)


def read(raw: bytes, ec2_decodes_base64: bool = True,
         load_yaml: Optional[Callable[[str], Any]] = None) -> UserData:
    """``raw`` as cloud-init reads it. ``ec2_decodes_base64``: the bytes are
    what is handed to EC2 (a file), not what cloud-init got (the instance's
    ``user-data.txt``, where base64 is left as text, as cloud-init leaves it).
    ``load_yaml``: how to read a ``#cloud-config-archive`` (YAML) to expand it
    into its parts, as cloud-init does; without it an archive stays one part."""
    layers: List[str] = []
    problems: List[str] = []
    data = raw
    if ec2_decodes_base64:
        decoded = _base64(data)
        if decoded is not None:
            layers.append("base64 (EC2 decodes it)")
            data = decoded
    size = len(data)
    if _base64(data, again=False) is not None:  # cloud-init never decodes base64
        problems.append("base64 of user data, as cloud-init gets it: encoded once too often "
                        "(boto3's run_instances and the console encode user data themselves)")
    unzipped, error = _gunzip(data)
    if error:
        problems.append(f"gzip: {error}")
    elif unzipped is not None:
        layers.append("gzip")
        data = unzipped
    if b"mime-version:" in data[:4096].lower():
        try:
            message = email.message_from_string(data.decode("utf-8"))
        except UnicodeDecodeError as exc:  # cloud-init stops at this too
            problems.append(f"MIME multipart: not UTF-8 (byte {exc.start})")
            return UserData(tuple(layers), (), tuple(problems), size)
        layers.append("MIME multipart")
        parts = _parts(message, problems, load_yaml)
    else:
        text = data.decode("utf-8", "surrogateescape")
        parts = []
        _add(parts, Part("part-001", sniff(text) or NOT_MULTIPART, text), load_yaml, problems)
        if data.lstrip()[:13].lower().startswith(b"content-type:"):
            problems.append("looks like MIME but has no MIME-Version header in its first "
                            "4096 bytes: cloud-init reads it as one unknown part")
    return UserData(tuple(layers), tuple(parts), tuple(problems), size)


def sniff(text: str) -> Optional[str]:
    """The type cloud-init gives a payload by its first characters, if any."""
    start = text.lstrip().lower()
    return next((_STARTS_WITH[p] for p in _LONGEST_FIRST if start.startswith(p)), None)


def _base64(data: bytes, again: bool = True) -> Optional[bytes]:
    """Decoded bytes if ``data`` is base64 of user data cloud-init would know
    (gzip, MIME or a typed first line) or, with ``again``, of such base64;
    None otherwise, so that text which merely looks like base64 is read as it is."""
    if not data.strip() or not _BASE64.fullmatch(data):
        return None
    try:
        decoded = base64.b64decode(b"".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    head = decoded[:4096]
    if head[:2] == b"\x1f\x8b" or b"mime-version:" in head.lower() or \
            sniff(head.decode("utf-8", "replace")):
        return decoded
    return decoded if again and _base64(decoded, again=False) is not None else None


def _gunzip(data: bytes) -> Tuple[Optional[bytes], str]:
    """(decompressed, "") for gzip data, (None, "") for anything else, and
    (None, why) for gzip that does not decompress or is too big."""
    if data[:2] != b"\x1f\x8b":
        return None, ""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = f.read(MAX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        return None, f"does not decompress ({exc})"
    if len(out) > MAX_BYTES:
        return None, f"decompresses to more than {MAX_BYTES} bytes"
    return out, ""


def _parts(message: email.message.Message, problems: List[str],
           load_yaml: Optional[Callable[[str], Any]]) -> List[Part]:
    parts: List[Part] = []
    for part in message.walk():
        if part.get_content_maintype().lower() == "multipart":
            continue
        name = str(part.get_filename() or f"part-{len(parts) + 1:03d}")
        declared = part.get_content_type()
        payload = _payload(part)
        if declared in _GZIP_TYPES:
            unzipped, error = _gunzip(payload)
            if unzipped is None:
                problems.append(f"{name}: {declared} part skipped: "
                                f"{error or 'not gzip data'}")
                continue
            payload, declared = unzipped, "text/plain"
        text = payload.decode("utf-8", "surrogateescape")
        kind = (sniff(text) if declared in _SNIFFED else None) or declared
        merge_type = str(part.get("Merge-Type") or part.get("X-Merge-Type") or "")
        _add(parts, Part(name, kind, text, merge_type), load_yaml, problems)
    return parts


def _add(parts: List[Part], part: Part, load_yaml: Optional[Callable[[str], Any]],
         problems: List[str]) -> None:
    """Append ``part``, or the entries of an archive in its place
    (user_data._explode_archive: each a string or a mapping of content, type
    and filename; the type defaults by the first line, else cloud-config)."""
    if part.content_type != ARCHIVE or load_yaml is None:
        parts.append(part)
        return
    try:
        entries = load_yaml(part.text)
    except Exception as exc:  # cloud-init reads an unreadable archive as empty
        problems.append(f"{part.name}: cloud-config archive not read, cloud-init skips it: "
                        f"{exc}")
        return
    if not isinstance(entries, list):
        problems.append(f"{part.name}: a cloud-config archive must be a YAML list; "
                        "cloud-init skips it")
        return
    for entry in entries:
        if isinstance(entry, str):
            entry = {"content": entry}
        if not isinstance(entry, dict):
            continue  # cloud-init skips such an entry too
        content = entry.get("content", "")
        text = content.decode("utf-8", "surrogateescape") if isinstance(content, bytes) \
            else str(content)
        kind = str(entry.get("type") or sniff(text) or CLOUD_CONFIG)
        name = str(entry.get("filename") or f"part-{len(parts) + 1:03d}")
        parts.append(Part(name, kind, text, str(entry.get("Merge-Type") or "")))


def _payload(part: email.message.Message) -> bytes:
    """The part's bytes after its Content-Transfer-Encoding (base64, quoted-printable)."""
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""
