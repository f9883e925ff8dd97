"""`bosky schema` reads user data the way cloud-init reads it.

A platform engineer checks what they are about to hand to EC2: a
`#cloud-config` file, what `cloud-init devel make-mime` built, the gzip and
base64 forms Terraform's `base64gzip` and CloudFormation's `Fn::Base64`
produce, a jinja template. Every MIME file here is built by the real
make-mime of each release the harness provides; what bosky says it read (the
parts, their names and types, the merged cloud-config) is compared with what
that release's own code (`cloudinit.user_data`, the cloud-config handler's
merge) makes of the same bytes; and an instance booted with real cloud-init
checks its own user data with `bosky schema --instance`.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest
import yaml

from cc_bosky.errors import EXIT_OK, EXIT_USAGE
from cc_bosky.tools import userdata
from tests.harness.boot import Instance
from tests.harness.fixtures import selected_releases
from tests.harness.releases import Release, ensure_release, release_key

REPO = Path(__file__).resolve().parents[1]
VALID = "valid (cloud-init's schema with bosky's stanza)"

CLOUD_CONFIG = """#cloud-config
bosky:
  project: web
  deadline: 600
runcmd:
  - [echo, from the cloud-config part]
"""
SCRIPT = "#!/bin/bash\necho 'bootstrap: done'\n"
TEMPLATE = """## template: jinja
#cloud-config
{% if v1.region == 'eu-west-1' %}
hostname: {{ v1.local_hostname }}
{% endif %}
bosky:
  project: web
  deadline: {{ 300 * 2 }}
"""


@pytest.fixture(scope="session", params=selected_releases())
def release(request: pytest.FixtureRequest) -> Release:
    """A provisioned cloud-init release: its Python, its site-packages (no boot)."""
    return ensure_release(request.param)


def run(release: Release, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` with the release's cloud-init and this checkout's cc_bosky."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BOSKY_"))}
    env["PYTHONPATH"] = release.pythonpath()
    return subprocess.run([str(release.python), *args], env=env, cwd=str(cwd),
                          capture_output=True, text=True, timeout=120, check=False)


def make_mime(release: Release, where: Path, **files: Tuple[str, str]) -> bytes:
    """`cloud-init devel make-mime -a NAME:TYPE ...` of this release, for
    files given as name=(content, type)."""
    args: List[str] = []
    for name, (content, kind) in files.items():
        (where / name).write_text(content)
        args += ["-a", f"{name}:{kind}"]
    built = run(release, "-m", "cloudinit.cmd.main", "devel", "make-mime", *args, cwd=where)
    assert built.returncode == 0, built.stderr
    return built.stdout.encode()


def bosky_schema(release: Release, path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return run(release, "-m", "cc_bosky", "schema", *flags, str(path), cwd=path.parent)


def assert_problem_lines(done: subprocess.CompletedProcess[str]) -> List[str]:
    """The report's problem lines (on stdout, with the rest of the report);
    nothing on stderr, which is for a file that cannot be read."""
    assert done.stderr == "", done.stderr
    assert "Traceback" not in done.stdout
    return [line for line in done.stdout.splitlines() if line.startswith("problem: ")]


def verdict(done: subprocess.CompletedProcess[str]) -> str:
    """The report's last summary line (before its findings)."""
    return [line for line in done.stdout.splitlines()
            if not line.startswith(("problem: ", "warning: ", "not checked: "))][-1]


# -- what make-mime builds, checked under the release that built it -------------


def test_make_mime_user_data_is_valid_part_by_part_and_merged(release: Release,
                                                               tmp_path: Path) -> None:
    mime = tmp_path / "user-data"
    mime.write_bytes(make_mime(release, tmp_path, **{
        "cloud-config.yaml": (CLOUD_CONFIG, "cloud-config"),
        "bootstrap.sh": (SCRIPT, "x-shellscript"),
        "hostname.yaml.j2": (TEMPLATE, "jinja2"),
    }))
    done = bosky_schema(release, mime)
    assert done.returncode == EXIT_OK, done.stderr
    assert assert_problem_lines(done) == []
    lines = done.stdout.splitlines()
    assert lines[0] == f"{mime}: MIME multipart, 3 parts"
    assert lines[1] == "  cloud-config.yaml (text/cloud-config): valid"
    assert lines[2].startswith("  bootstrap.sh (text/x-shellscript): a script")
    assert lines[2].endswith("not validated")
    assert lines[3] == "  hostname.yaml.j2 (text/jinja2): jinja template, unrendered: valid"
    assert lines[4] == (f"{mime}: merged cloud-config of cloud-config.yaml, hostname.yaml.j2: "
                        f"{VALID}")
    # What went unchecked, each with how to get it checked.
    assert lines[6:] == [
        f"not checked: {mime}: bootstrap.sh: a script, run once per instance: check it with "
        "shellcheck",
        f"not checked: {mime}: hostname.yaml.j2: the values of its {{{{ }}}} (a jinja template "
        "cannot be rendered offline): on a booted instance, sudo cloud-init schema --system"]


def test_a_broken_part_is_named_with_its_key_and_the_others_still_checked(
        release: Release, tmp_path: Path) -> None:
    broken = CLOUD_CONFIG.replace("  project:", "  projcet:").replace("600", "soon")
    mime = tmp_path / "user-data"
    mime.write_bytes(make_mime(release, tmp_path, **{
        "base.yaml": ("#cloud-config\npackages: [nginx]\n", "cloud-config"),
        "bosky.yaml": (broken, "cloud-config"),
        "bootstrap.sh": (SCRIPT, "x-shellscript"),
    }))
    done = bosky_schema(release, mime)
    assert done.returncode == EXIT_USAGE, done.stdout
    problems = assert_problem_lines(done)
    assert len(problems) == 2, problems  # one line each, not repeated for the merge
    assert all(p.startswith(f"problem: {mime}: bosky.yaml: bosky") for p in problems), problems
    assert any("'projcet'" in p for p in problems) and any("'soon'" in p for p in problems)
    assert "  base.yaml (text/cloud-config): valid" in done.stdout
    assert "  bosky.yaml (text/cloud-config): 2 problem(s)" in done.stdout
    assert VALID not in done.stdout


def test_a_jinja_template_is_checked_as_far_as_it_can_be_offline(release: Release,
                                                                 tmp_path: Path) -> None:
    template = tmp_path / "user-data.j2"
    template.write_text(TEMPLATE.replace("  project: web", "  project: web\n  log_lines: lots"))
    done = bosky_schema(release, template)
    assert done.returncode == EXIT_USAGE
    (problem,) = assert_problem_lines(done)
    assert "bosky.log_lines: 'lots' is not of type 'integer'" in problem
    # The placeholder for {{ 300 * 2 }} is not blamed for not being an integer.
    assert "deadline" not in done.stdout
    unclosed = tmp_path / "unclosed.j2"
    unclosed.write_text("## template: jinja\n#cloud-config\nbosky: {{ oops\n")
    done = bosky_schema(release, unclosed)
    assert done.returncode == EXIT_USAGE
    (problem,) = assert_problem_lines(done)
    assert "jinja: line 3" in problem and "cloud-init skips this part" in problem


# -- the same bytes, read by bosky and by the release's own code -------------------

#: Runs under a release's Python: its UserDataProcessor reads the blob, its
#: cloud-config handler merges the cloud-config parts; prints what they made.
CLOUD_INIT_READS = r"""
import json, sys
from cloudinit import handlers, helpers, user_data, util
from cloudinit.handlers.cloud_config import CloudConfigPartHandler

paths = helpers.Paths({"cloud_dir": sys.argv[2], "run_dir": sys.argv[2]})
message = user_data.UserDataProcessor(paths).process(open(sys.argv[1], "rb").read())
handler = CloudConfigPartHandler(paths)
handler.handle_part(None, handlers.CONTENT_START, None, None, None, None)
parts = []
for part in message.walk():
    if part.get_content_maintype() == "multipart":
        continue
    parts.append([part.get_filename(), part.get_content_type()])
    if part.get_content_type() == "text/cloud-config":
        handler.handle_part(None, "text/cloud-config", part.get_filename(),
                            util.fully_decoded_payload(part), None, part)
print(json.dumps({"parts": parts, "merged": handler.cloud_buf}))
"""

MERGE_HOW = """#cloud-config
merge_how:
  - name: list
    settings: [append]
  - name: dict
    settings: [no_replace, recurse_list]
bosky:
  project: api
  log_lines: 20
runcmd:
  - [echo, appended]
"""


def cloud_init_reads(release: Release, blob: Path, tmp_path: Path) -> Dict[str, Any]:
    done = run(release, "-c", CLOUD_INIT_READS, str(blob), str(tmp_path / "cloud"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found: Dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return found


def mime_with_a_merge_header_and_a_gzip_part() -> bytes:
    """What make-mime cannot build: a Merge-Type header, a gzip part, an
    un-typed text/plain part that is a cloud-config by its first line."""
    message = MIMEMultipart()
    first = MIMEText(CLOUD_CONFIG, "cloud-config")
    first.add_header("Content-Disposition", "attachment", filename="first.yaml")
    message.attach(first)
    header = MIMEText("#cloud-config\nruncmd:\n  - [echo, from the header part]\n",
                      "cloud-config")
    header.add_header("Merge-Type", "list(append)+dict(recurse_array)+str()")
    message.attach(header)
    zipped = MIMEApplication(gzip.compress(b"#cloud-config\npackages: [jq]\n"), "x-gzip")
    zipped.add_header("Content-Disposition", "attachment", filename="packages.yaml.gz")
    message.attach(zipped)
    message.attach(MIMEText("#cloud-config\ntimezone: UTC\n", "plain"))
    return message.as_bytes()


ARCHIVE = """#cloud-config-archive
- "#cloud-config\\nruncmd: [[echo, from the archive]]\\n"
- filename: archived-bosky.yaml
  content: "#cloud-config\\nbosky: {project: archived}\\n"
- type: text/x-shellscript
  content: "#!/bin/sh\\necho archived script\\n"
"""


@pytest.mark.parametrize("case", ["default-merge", "merge_how", "header-gzip-plain", "archive"])
def test_parts_and_merge_are_what_the_releases_own_code_makes(release: Release, case: str,
                                                              tmp_path: Path) -> None:
    blob = tmp_path / "user-data"
    if case == "header-gzip-plain":
        blob.write_bytes(mime_with_a_merge_header_and_a_gzip_part())
    elif case == "archive":
        blob.write_bytes(make_mime(release, tmp_path, **{
            "first.yaml": (CLOUD_CONFIG, "cloud-config"),
            "archive.yaml": (ARCHIVE, "cloud-config-archive")}))
    else:
        second = MERGE_HOW if case == "merge_how" else \
            "#cloud-config\nbosky:\n  project: api\nruncmd: [[echo, second]]\n"
        blob.write_bytes(make_mime(release, tmp_path, **{
            "first.yaml": (CLOUD_CONFIG, "cloud-config"),
            "run.sh": (SCRIPT, "x-shellscript"),
            "second.yaml": (second, "cloud-config"),
        }))
    theirs = cloud_init_reads(release, blob, tmp_path)
    ours = userdata.read(blob.read_bytes(), load_yaml=yaml.safe_load)
    assert [[p.name, p.content_type] for p in ours.parts] == theirs["parts"]
    merged = bosky_schema(release, blob, "--merged")
    assert yaml.safe_load(merged.stdout) == theirs["merged"], merged.stderr
    if case == "default-merge":  # the trap: the second part's bosky replaces the first's
        assert theirs["merged"]["bosky"] == {"project": "api"}
        assert "second.yaml replaces the whole 'bosky'" in merged.stderr
        assert "'runcmd'" in merged.stderr
    if case == "archive":  # expanded into its entries, each checked under its own name
        assert theirs["merged"]["bosky"] == {"project": "archived"}
        assert "  archived-bosky.yaml (text/cloud-config): valid" in \
            bosky_schema(release, blob).stdout
    if case == "merge_how":  # asked for: combined
        assert theirs["merged"]["bosky"] == {"project": "web", "deadline": 600, "log_lines": 20}


# -- the forms EC2 is handed ----------------------------------------------------------


def terraform_base64gzip(data: bytes) -> bytes:
    return base64.b64encode(gzip.compress(data))


def fn_base64(data: bytes) -> bytes:
    return base64.b64encode(data)


FORMS: Dict[str, Tuple[Callable[[bytes], bytes], str]] = {
    "gzip": (gzip.compress, "gzip, MIME multipart, 2 parts"),
    "Fn::Base64": (fn_base64, "base64 (EC2 decodes it), MIME multipart, 2 parts"),
    "base64gzip": (terraform_base64gzip,
                   "base64 (EC2 decodes it), gzip, MIME multipart, 2 parts"),
    "base64 with line breaks": (lambda d: base64.encodebytes(gzip.compress(d)),
                                "base64 (EC2 decodes it), gzip, MIME multipart, 2 parts"),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_gzip_and_base64_forms_read_like_the_mime_they_carry(release: Release, form: str,
                                                             tmp_path: Path) -> None:
    encode, layers = FORMS[form]
    mime = make_mime(release, tmp_path, **{"cloud-config.yaml": (CLOUD_CONFIG, "cloud-config"),
                                           "bootstrap.sh": (SCRIPT, "x-shellscript")})
    blob = tmp_path / "user-data.bin"
    blob.write_bytes(encode(mime))
    done = bosky_schema(release, blob)
    assert done.returncode == EXIT_OK, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{blob}: {layers}"
    assert lines[1] == "  cloud-config.yaml (text/cloud-config): valid"
    assert verdict(done).endswith(VALID)


def test_a_plain_cloud_config_in_base64_and_gzip(release: Release, tmp_path: Path) -> None:
    for name, blob in (("b64", fn_base64(CLOUD_CONFIG.encode())),
                       ("gz", gzip.compress(CLOUD_CONFIG.encode()))):
        path = tmp_path / name
        path.write_bytes(blob)
        done = bosky_schema(release, path)
        assert done.returncode == EXIT_OK, done.stderr
        assert "  part-001 (text/cloud-config): valid" in done.stdout


def test_base64_encoded_twice_is_named(release: Release, tmp_path: Path) -> None:
    """boto3's run_instances encodes UserData itself: given base64, the
    instance gets base64 text, which cloud-init does not decode."""
    path = tmp_path / "twice"
    path.write_bytes(fn_base64(fn_base64(CLOUD_CONFIG.encode())))
    done = bosky_schema(release, path)
    assert done.returncode == EXIT_USAGE
    (problem,) = assert_problem_lines(done)
    assert "encoded once too often" in problem


def test_hand_written_mime_without_mime_version_is_caught(release: Release,
                                                         tmp_path: Path) -> None:
    mime = make_mime(release, tmp_path, **{"c.yaml": (CLOUD_CONFIG, "cloud-config")})
    path = tmp_path / "no-version"
    path.write_bytes(b"".join(line for line in mime.splitlines(keepends=True)
                              if not line.lower().startswith(b"mime-version:")))
    done = bosky_schema(release, path)
    assert done.returncode == EXIT_USAGE
    assert "no MIME-Version header" in done.stdout


# -- --instance, on an instance booted by real cloud-init -----------------------------


def _newest() -> str:
    return max(selected_releases(), key=release_key)


@pytest.mark.parametrize("cloudinit_release", [_newest()], indirect=True)
def test_instance_checks_its_own_user_data_and_merges_it_as_its_cloud_init_did(
        instance: Callable[..., Instance], cloudinit_release: Release, tmp_path: Path) -> None:
    """Booted with base64gzip'd MIME of two cloud-config parts: the instance's
    user-data.txt is the gzip EC2 served; what `bosky schema --instance
    --merged` makes of it is what this boot's cloud-init wrote to
    cloud-config.txt."""
    mime = make_mime(cloudinit_release, tmp_path, **{
        "first.yaml": (CLOUD_CONFIG.replace("web", "schema-instance"), "cloud-config"),
        "second.yaml": ("#cloud-config\nruncmd: [[echo, second]]\n", "cloud-config"),
        "bootstrap.sh": (SCRIPT, "x-shellscript")})
    inst = instance()
    boot = inst.boot(user_data=gzip.compress(mime))
    root = tmp_path / "root"
    (root / "var/lib").mkdir(parents=True)
    (root / "var/lib/cloud").symlink_to(boot.paths.var_lib_cloud)

    done = run(cloudinit_release, "-m", "cc_bosky", "schema", "--instance", "--root", str(root),
               cwd=tmp_path)
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout.splitlines()[0].endswith("user-data.txt: gzip, MIME multipart, 3 parts")
    assert verdict(done).endswith(VALID)

    merged = run(cloudinit_release, "-m", "cc_bosky", "schema", "--instance", "--merged",
                 "--root", str(root), cwd=tmp_path)
    written = boot.ns_path("/var/lib/cloud/instance/cloud-config.txt")
    assert written is not None and written.is_file()
    assert yaml.safe_load(merged.stdout) == yaml.safe_load(written.read_text())


def test_instance_without_user_data_says_so_in_one_line(release: Release,
                                                       tmp_path: Path) -> None:
    done = run(release, "-m", "cc_bosky", "schema", "--instance", "--root", str(tmp_path),
               cwd=tmp_path)
    assert done.returncode == EXIT_USAGE
    assert done.stderr.count("\n") == 1 and "cloud-init has not run" in done.stderr


def test_the_readme_example_is_what_bosky_schema_says(release: Release, tmp_path: Path) -> None:
    """README's `bosky schema user-data.b64` example, built and run: the same lines."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("$ bosky schema user-data.b64\n", 1)[1].split("$ echo $?", 1)[0]
    mime = make_mime(release, tmp_path, **{
        "base.yaml": ("#cloud-config\npackages: [nginx]\nbosky:\n  project: web\n",
                      "cloud-config"),
        "bosky.yaml": ("#cloud-config\nbosky:\n  project: web\n  deadline: soon\n",
                       "cloud-config"),
        "bootstrap.sh": (SCRIPT, "x-shellscript")})
    (tmp_path / "user-data.b64").write_bytes(base64.b64encode(gzip.compress(mime)))
    done = run(release, "-m", "cc_bosky", "schema", "user-data.b64", cwd=tmp_path)
    assert done.returncode == EXIT_USAGE and done.stderr == ""
    assert done.stdout == block
