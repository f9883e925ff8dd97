"""``bosky doctor``: each check on good and bad fixtures, then whole runs.

cloud-init's Python is stood in for by a wrapper script that runs this
interpreter with ``-S`` (no site-packages) and a fake package directory, so a
test decides exactly what that Python can import. Where the harness has
unpacked Debian's cloud-init, the real one is probed too.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import pytest

from cc_bosky.checks import FAIL, OK, WARN, Check
from cc_bosky.checks.aws import (
    check_credentials,
    check_endpoint,
    check_send_test,
    endpoint_url,
    proxy_for,
    tcp_connect,
)
from cc_bosky.checks.cloudinit import (
    check_cloud_init,
    check_dropin,
    check_imports,
    check_registered,
    check_version,
    install_hint,
)
from cc_bosky.checks.settings import check_config, check_region, load_config, resolve_region
from cc_bosky.host.python import (
    CloudInit,
    find_cloud_init,
    probe_for,
    probe_python,
    shebang_command,
)
from cc_bosky.identity import Identity
from cc_bosky.tools import doctor, install
from tests.harness.releases import ensure_release
from tests.support.bounds import SLACK
from tests.support.emulator import DUMMY_SECRET_KEY
from tests.support.fixtures import REPO_ROOT, run_bosky
from tests.test_install import cfg_d, make_root


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def fake_site(directory: Path, cloud_init: Optional[str] = "22.4.2", bosky: str = "module",
              botocore: bool = True) -> Path:
    """Packages for a fake cloud-init Python: cloudinit, cc_bosky, botocore as asked."""
    if cloud_init:
        write(directory / "cloudinit" / "__init__.py", "")
        write(directory / "cloudinit" / "version.py",
              f'__VERSION__ = "{cloud_init}"\n_PACKAGED_VERSION = "@@PACKAGED_VERSION@@"\n\n'
              "def version_string():\n    return __VERSION__\n")
    if bosky == "module":
        write(directory / "cc_bosky" / "__init__.py", "def handle(*a, **k):\n    pass\n")
        write(directory / "cc_bosky" / "version.py", '__version__ = "0.1.0"\n')
    elif bosky == "impostor":
        write(directory / "cc_bosky.py", "X = 1\n")
    if botocore:
        write(directory / "botocore" / "__init__.py", '__version__ = "1.99.0"\n')
    return directory


def wrapper_python(path: Path, site: Path, before: str = "") -> Path:
    """An interpreter that sees only ``site`` (and the standard library)."""
    return write(path, f"#!/bin/sh\n{before}PYTHONPATH={site} exec {sys.executable} -S \"$@\"\n",
                 0o755)


def cloud_init_script(directory: Path, shebang: str) -> Path:
    return write(directory / "cloud-init", f"#!{shebang}\nimport sys\n", 0o755)


@pytest.fixture
def live(tmp_path: Path) -> Dict[str, Any]:
    """A PATH with cloud-init whose Python can import everything bosky needs."""
    bindir = tmp_path / "bin"
    python = wrapper_python(bindir / "python3", fake_site(tmp_path / "site"))
    cloud_init_script(bindir, str(python))
    return {"PATH": f"{bindir}:/usr/bin:/bin", "bindir": bindir, "python": python}


def probe_live(environ: Dict[str, str]) -> Any:
    found = find_cloud_init(Path("/"), environ)
    return found, probe_for(found, Path("/"), environ)


# -- cloud-init and its Python -----------------------------------------------------------------


def test_shebang_forms(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    real = write(bindir / "python3.42", "", 0o755)
    env = {"PATH": str(bindir)}
    cases = {
        "/usr/bin/python3": ("/usr/bin/python3",),
        "/usr/bin/python3 -s": ("/usr/bin/python3", "-s"),
        "/usr/bin/env python3.42": (str(real),),
        "/usr/bin/env -S python3.42 -I": (str(real), "-I"),
        "/usr/bin/env": (),
        "/usr/bin/env nonesuch": (),
    }
    for shebang, expected in cases.items():
        script = cloud_init_script(tmp_path, shebang)
        assert shebang_command(script, Path("/"), env) == expected, shebang
    write(tmp_path / "cloud-init", "import sys\n")
    assert shebang_command(tmp_path / "cloud-init", Path("/"), env) == ()
    image = tmp_path / "image"
    script = cloud_init_script(image / "usr" / "bin", "/usr/bin/python3")
    assert shebang_command(script, image, env) == (str(image / "usr/bin/python3"),)


def test_a_good_cloud_init_python(live: Dict[str, Any]) -> None:
    found, probe = probe_live({"PATH": live["PATH"]})
    assert found.script == live["bindir"] / "cloud-init"
    checks = [check_cloud_init(found, probe), check_version("22.4.2"),
              check_imports(probe, found.python, {"PATH": live["PATH"]})]
    assert [c.status for c in checks] == [OK, OK, OK], checks
    assert checks[0].detail.startswith(f"22.4.2 at {found.script}, Python ")
    assert "botocore 1.99.0" in checks[2].detail


def test_cloud_init_not_found() -> None:
    empty: Dict[str, str] = {"PATH": "/nonexistent"}
    found = find_cloud_init(Path("/nonexistent-root"), empty)
    check = check_cloud_init(found, probe_for(found, Path("/"), empty))
    assert check.status == FAIL and "install cloud-init" in check.fix


@pytest.mark.parametrize(("version", "status"), [
    ("20.4", OK), ("20.4.1", OK), ("25.1.4-0ubuntu1", OK), ("20.3.1", FAIL), ("19.4", FAIL),
    ("banana", WARN), (None, WARN)])
def test_cloud_init_version_gate(version: Optional[str], status: str) -> None:
    check = check_version(version)
    assert check.status == status, check
    if status == FAIL:
        assert "older than 20.4" in check.detail and "20.4 or later" in check.fix


def test_an_old_cloud_init_is_reported_from_its_own_version_module(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    python = wrapper_python(bindir / "py", fake_site(tmp_path / "site", cloud_init="19.4"))
    cloud_init_script(bindir, str(python))
    _, probe = probe_live({"PATH": str(bindir)})
    assert probe["cloudinit"]["version"] == "19.4"
    assert check_version(probe["cloudinit"]["version"]).status == FAIL


@pytest.mark.parametrize(("bosky", "botocore", "says"), [
    ("none", True, "cannot import cc_bosky: ModuleNotFoundError"),
    ("module", False, "cannot import botocore: ModuleNotFoundError"),
    ("impostor", True, "is not bosky's cloud-init module"),
])
def test_imports_fail_with_what_to_do(tmp_path: Path, bosky: str, botocore: bool,
                                      says: str) -> None:
    bindir = tmp_path / "bin"
    python = wrapper_python(bindir / "py", fake_site(tmp_path / "site", bosky=bosky,
                                                     botocore=botocore))
    cloud_init_script(bindir, str(python))
    found, probe = probe_live({"PATH": str(bindir)})
    check = check_imports(probe, found.python, {})
    assert check.status == FAIL and says in check.detail, check
    assert check.fix in (install_hint(str(python)), "remove the other cc_bosky; reinstall bosky")
    assert "pip install bosky" not in check.fix and "--require-hashes" in install_hint("py")


def test_imports_only_through_pythonpath_is_a_warning(live: Dict[str, Any]) -> None:
    env = {"PATH": live["PATH"], "PYTHONPATH": "/somewhere"}
    found, probe = probe_live(env)
    check = check_imports(probe, found.python, env)
    assert check.status == WARN and "PYTHONPATH" in check.detail


def test_a_hanging_or_broken_interpreter_is_bounded_and_reported(tmp_path: Path) -> None:
    hang = write(tmp_path / "hang", "#!/bin/sh\nsleep 30\n", 0o755)
    started = time.monotonic()
    probe = probe_python([str(hang)], {}, timeout=0.5)
    assert time.monotonic() - started < 0.5 + SLACK  # bounded by its timeout, not by the 30 s
    assert probe == {"error": f"{hang} did not answer within 0.5 s"}
    broken = write(tmp_path / "broken", "#!/bin/sh\necho 'no python here' >&2\nexit 3\n", 0o755)
    assert probe_python([str(broken)], {}) == {
        "error": f"{broken} exited with 3: no python here"}
    missing = probe_python([str(tmp_path / "absent")], {})
    assert missing["error"].startswith(f"cannot run {tmp_path / 'absent'}")
    found = CloudInit(tmp_path / "cloud-init", (str(broken),))
    check = check_cloud_init(found, probe_python([str(broken)], {}))
    assert check.status == FAIL and "first line" in check.fix


def test_the_real_debian_cloud_init_is_probed(tmp_path: Path) -> None:
    """Debian's cloud-init from the harness cache, through its own venv Python."""
    release = ensure_release("22.4.2").root.parent
    site = release / "root" / "usr" / "lib" / "python3" / "dist-packages"
    venv_python = release / "venv" / "bin" / "python3"
    bindir = tmp_path / "bin"
    python = write(bindir / "python3", f"#!/bin/sh\nPYTHONPATH={site}:{REPO_ROOT} "
                   f"exec {venv_python} \"$@\"\n", 0o755)
    cloud_init_script(bindir, str(python))
    found, probe = probe_live({"PATH": str(bindir)})
    checks = [check_cloud_init(found, probe),
              check_version(probe["cloudinit"]["version"]),
              check_imports(probe, found.python, {})]
    assert [c.status for c in checks] == [OK, OK, OK], checks
    assert probe["cloudinit"]["version"] == "22.4.2"
    assert probe["cc_bosky"]["where"] == str(REPO_ROOT / "cc_bosky" / "__init__.py")


# -- an image, read from disk ------------------------------------------------------------------


def make_image(tmp_path: Path, python_minor: str = "3.11",
               botocore_minor: str = "3.11") -> Path:
    """A system root like a Debian image with cloud-init and ``pip install bosky``."""
    root = make_root(tmp_path)
    cloud_init_script(root / "usr" / "bin", "/usr/bin/python3")
    (root / "usr" / "bin" / "python3").symlink_to(f"python{python_minor}")
    fake_site(root / "usr" / "lib" / "python3" / "dist-packages", bosky="none", botocore=False)
    local = root / "usr" / "local" / "lib"
    fake_site(local / f"python{python_minor}" / "dist-packages", cloud_init=None, botocore=False)
    fake_site(local / f"python{botocore_minor}" / "dist-packages", cloud_init=None,
              bosky="none")
    return root


def test_an_image_is_inspected_without_running_its_python(tmp_path: Path) -> None:
    root = make_image(tmp_path)
    found = find_cloud_init(root, {"PATH": "/nonexistent"})
    assert found is not None and found.python == (str(root / "usr/bin/python3"),)
    probe = probe_for(found, root, {})
    assert probe["static"] and probe["cloudinit"]["version"] == "22.4.2"
    checks = [check_cloud_init(found, probe), check_imports(probe, found.python,
                                                                          {}, live=False)]
    assert [c.status for c in checks] == [OK, OK], checks
    assert "read from the image's files" in checks[0].detail
    assert "found on disk, not imported" in checks[1].detail


def test_packages_of_another_python_version_do_not_count(tmp_path: Path) -> None:
    root = make_image(tmp_path, python_minor="3.11", botocore_minor="3.9")
    found = find_cloud_init(root, {})
    probe = probe_for(found, root, {})
    check = check_imports(probe, found.python if found else (), {}, live=False)
    assert check.status == FAIL and "botocore: not found in" in check.detail


# -- registration and the drop-in --------------------------------------------------------------


def bosky_install(root: Path, *args: str) -> None:
    assert install.install_command(["--root", str(root), *args], {}) == 0


def test_registration(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    check = check_registered(root)
    assert check.status == FAIL
    assert check.detail.startswith("bosky is not in cloud_init_modules (from /etc/cloud/cloud.cfg)")
    assert check.fix == f"run 'bosky install --root {root}'"
    bosky_install(root)
    check = check_registered(root)
    assert check.status == OK and "init and final stages" in check.detail
    write(cfg_d(root) / "99_bosky.cfg", "# mine\ncloud_init_modules: [bosky]\n"
          "cloud_final_modules: [power_state_change, bosky]\n")
    assert check_registered(root).status == WARN
    (root / "etc" / "cloud" / "cloud.cfg").unlink()
    assert check_registered(root).status == FAIL
    assert check_dropin(root).status == WARN


def test_drop_in_drift_after_a_cloud_init_upgrade(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    assert check_dropin(root).status == WARN  # not installed: registered fails
    bosky_install(root)
    assert check_dropin(root).status == OK
    cloud_cfg = root / "etc" / "cloud" / "cloud.cfg"
    upgraded = cloud_cfg.read_text().replace(" - phone-home\n", " - install-hotplug\n")
    cloud_cfg.write_text(upgraded)
    check = check_dropin(root)
    assert check.status == FAIL, check
    assert "install-hotplug" not in check.detail  # names are shown canonical
    assert ("cloud_final_modules: /etc/cloud/cloud.cfg now also lists install_hotplug, which "
            "the drop-in hides; the drop-in still lists phone_home, which /etc/cloud/cloud.cfg "
            "no longer has") in check.detail
    assert check.fix == f"run 'bosky install --root {root}' to re-state the lists"
    bosky_install(root)
    assert check_dropin(root).status == OK
    write(cfg_d(root) / "99_bosky.cfg", "cloud_final_modules: [bosky]\n")
    assert check_dropin(root).status == WARN


# -- config, region, credentials, endpoint -----------------------------------------------------


def test_config_layers_and_their_precedence(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    view = load_config(root, {})
    check = check_config(view)
    assert check.status == WARN and "Source 'unknown'" in check.detail
    write(root / "etc" / "bosky" / "config.yaml", "project: from-file\nregion: eu-west-1\n"
          "deadline: 600\n")
    bosky_install(root, "--config", "--project", "from-stanza")
    view = load_config(root, {"BOSKY_DEADLINE": "900"})
    assert check_config(view).status == OK
    assert (view.settings.project, view.settings.region, view.settings.deadline) == (
        "from-stanza", "eu-west-1", 900)
    assert view.origin["project"] == "/etc/cloud/cloud.cfg.d/98_bosky_config.cfg (bosky:)"
    assert view.origin["region"] == str(root / "etc/bosky/config.yaml")
    assert view.origin["deadline"] == "environment"


@pytest.mark.parametrize(("where", "content", "env", "says"), [
    ("etc/bosky/config.yaml", "deadline: soon\n", {}, "deadline: expected integer"),
    ("etc/bosky/config.yaml", "project: [a\n", {}, "not valid YAML"),
    ("etc/cloud/cloud.cfg.d/50_site.cfg", "bosky:\n  send: [maybe]\n", {},
     "/etc/cloud/cloud.cfg.d/50_site.cfg: bosky: send[0]"),
    ("etc/cloud/cloud.cfg.d/50_site.cfg", "bosky:\n  projct: typo\n", {}, "projct"),
    (None, None, {"BOSKY_DEADLINE": "abc"}, "BOSKY_DEADLINE: 'abc' is not a integer"),
])
def test_config_problems_fail_naming_the_key(tmp_path: Path, where: Optional[str],
                                             content: Optional[str], env: Dict[str, str],
                                             says: str) -> None:
    root = make_root(tmp_path)
    if where and content:
        write(root / where, content)
    check = check_config(load_config(root, env))
    assert check.status == FAIL and says in check.detail, check


def test_an_explicit_config_file_must_exist(tmp_path: Path) -> None:
    check = check_config(load_config(make_root(tmp_path), {},
                                                   str(tmp_path / "nope.yaml")))
    assert check.status == FAIL and "does not exist" in check.detail


def test_region_sources(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    view = load_config(root, {"AWS_REGION": "ap-south-1"})
    region, source = resolve_region(view, "us-west-2")
    assert check_region(region, source, instance=True) == Check(
        "region", OK, "ap-south-1 (from environment)")
    region, source = resolve_region(load_config(root, {}), "us-west-2")
    assert check_region(region, source, True).detail == "us-west-2 (from instance identity)"
    assert check_region(None, "", instance=True).status == FAIL
    assert check_region(None, "", instance=False).status == WARN


def test_credentials(tmp_path: Path, aws_env: Dict[str, str]) -> None:
    check = check_credentials(aws_env, instance=True)
    assert check == Check("credentials", OK, "found (provider: env)")
    assert DUMMY_SECRET_KEY not in check.line()
    bare = {"HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true"}
    check = check_credentials(bare, instance=True)
    assert check.status == FAIL and "bosky --permissions" in check.fix
    assert check_credentials(bare, instance=False).status == WARN


def test_a_credential_error_is_named_without_its_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider's error text may quote a credential_process command line: never shown."""
    from cc_bosky.delivery import sender

    def explode(environ: Any) -> Any:
        raise RuntimeError(f"credential_process 'fetch --token {DUMMY_SECRET_KEY}' failed")

    monkeypatch.setattr(sender, "load_credentials", explode)
    check = check_credentials({}, instance=True)
    assert check.detail == "loading AWS credentials failed (RuntimeError)"
    assert DUMMY_SECRET_KEY not in check.line()


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_endpoint_reachability(listener: int) -> None:
    url = f"http://127.0.0.1:{listener}"
    assert check_endpoint(url, {}) == Check(
        "endpoint", OK, f"127.0.0.1:{listener} accepts connections ({url})")
    port = closed_port()
    check = check_endpoint(f"https://127.0.0.1:{port}/", {})
    assert check.status == FAIL and "Connection refused" in check.detail
    assert "security group" in check.fix
    assert check_endpoint("not a url", {}).status == FAIL
    assert check_endpoint(None, {}).status == WARN
    assert check_endpoint(url, {}, instance=False).status == WARN


def test_endpoint_through_a_proxy(listener: int) -> None:
    env = {"https_proxy": f"http://127.0.0.1:{listener}"}
    url = "https://events.us-east-1.amazonaws.com"
    check = check_endpoint(url, env)
    assert check.status == OK and f"via proxy 127.0.0.1:{listener}" in check.detail
    assert proxy_for(url, {**env, "NO_PROXY": ".amazonaws.com"}) is None
    assert proxy_for("https://x.example", {**env, "no_proxy": "*"}) is None
    assert proxy_for("http://x.example", env) is None


def sender_uses_a_proxy(url: str, env: Dict[str, str], monkeypatch: pytest.MonkeyPatch) -> bool:
    """What the sender's urllib decides: its opener's ProxyHandler reads os.environ."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name == "REQUEST_METHOD":
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    request = urllib.request.Request(url)
    direct = request.host
    getattr(urllib.request.ProxyHandler(), f"{request.type}_open", lambda r: None)(request)
    return request.host != direct


ENDPOINTS = ["https://events.us-east-1.amazonaws.com", "https://events.eu-west-1.amazonaws.com:443",
             "https://events.cn-north-1.amazonaws.com.cn", "http://127.0.0.1:4010"]
NO_PROXY_FORMS = ["", "*", "amazonaws.com", ".amazonaws.com", "amazonaws.com:443",
                  "events.us-east-1.amazonaws.com", "events.us-east-1.amazonaws.com:443",
                  " AmazonAWS.com ", "example.com, .amazonaws.com", "*.amazonaws.com",
                  "127.0.0.1", "127.0.0.1:4010", "127.0.0.0/8", "localhost", "com", ".cn"]


@pytest.mark.parametrize("no_proxy", NO_PROXY_FORMS)
def test_doctor_and_the_sender_agree_on_what_no_proxy_bypasses(
        no_proxy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for names in ({"https_proxy": "http://proxy.test:3128", "http_proxy": "http://proxy.test:3128",
                   "no_proxy": no_proxy},
                  {"HTTPS_PROXY": "http://proxy.test:3128", "NO_PROXY": no_proxy}):
        for url in ENDPOINTS:
            doctor_says = proxy_for(url, names) is not None
            assert doctor_says == sender_uses_a_proxy(url, names, monkeypatch), (url, names)


def test_no_proxy_with_a_port_bypasses_only_that_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's case: 'amazonaws.com:443' matches no regional endpoint written without
    a port, so the sender goes through the proxy, and doctor says so."""
    env = {"HTTPS_PROXY": "http://proxy.test:3128", "NO_PROXY": "amazonaws.com:443"}
    assert proxy_for("https://events.us-east-1.amazonaws.com", env) == ("proxy.test", 3128)
    assert sender_uses_a_proxy("https://events.us-east-1.amazonaws.com", env, monkeypatch)


def test_a_hanging_connect_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    released = threading.Event()
    finished = threading.Event()

    def stuck(*args: Any, **kwargs: Any) -> Any:
        released.wait(5.0)  # a name lookup that hangs past the timeout
        finished.set()
        raise OSError("gave up late")

    monkeypatch.setattr(socket, "create_connection", stuck)
    started = time.monotonic()
    assert tcp_connect("events.example", 443, 0.3) == "no answer within 0.3 s"
    assert time.monotonic() - started < 0.3 + SLACK  # the stand-in hangs for 5 s
    released.set()  # let the abandoned attempt end while the stand-in is still in place
    assert finished.wait(5.0)


def test_the_default_endpoint_follows_the_partition(tmp_path: Path) -> None:
    view = load_config(make_root(tmp_path), {})
    assert endpoint_url(view, "cn-north-1") == "https://events.cn-north-1.amazonaws.com.cn"
    assert endpoint_url(view, None) is None


# -- the send test -----------------------------------------------------------------------------


def test_send_test_reaches_eventbridge_without_spooling(tmp_path: Path, aws_env: Dict[str, str],
                                                       consumer: Any) -> None:
    env = {**aws_env, "BOSKY_PROJECT": consumer.project,
           "BOSKY_SPOOL_DIR": str(tmp_path / "spool")}
    view = load_config(make_root(tmp_path), env)
    check = check_send_test(view, "us-east-1", Identity(instance_id="i-0123"), env)
    assert check.status == OK, check
    (event,) = consumer.receive(expected=1, timeout=10)
    assert event["detail"]["Status"] == "test"
    assert event["detail"]["EventId"] in check.detail
    assert event["resources"] == ["i-0123"]
    refused = {**env, "AWS_ENDPOINT_URL_EVENTS": f"http://127.0.0.1:{closed_port()}",
               "BOSKY_SEND_TIMEOUT": "1"}
    check = check_send_test(load_config(make_root(tmp_path / "b"), refused),
                                   "us-east-1", Identity(), refused)
    assert check.status == FAIL and "ConnectionError" in check.detail
    assert not (tmp_path / "spool").exists()
    assert check_send_test(view, None, Identity(), env).status == FAIL


# -- whole runs --------------------------------------------------------------------------------


def good_image(tmp_path: Path, project: str = "fleet") -> Path:
    root = make_image(tmp_path)
    proc = run_bosky(["install", "--root", str(root), "--config", "--project", project,
                      "--region", "us-east-1"])
    assert proc.returncode == 0, proc.stderr
    return root


def test_doctor_on_a_ready_image_exits_0(tmp_path: Path) -> None:
    root = good_image(tmp_path)
    proc = run_bosky(["doctor", "--root", str(root)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line[:6] for line in lines[:-1]] == ["[ ok ]"] * 8 + ["[warn]"] * 2
    assert lines[-1] == "10 checks: 0 failed, 2 warnings"
    assert proc.stderr == ""


def test_doctor_on_an_image_without_bosky_exits_1(tmp_path: Path) -> None:
    root = make_image(tmp_path)
    proc = run_bosky(["doctor", "--root", str(root)])
    assert proc.returncode == 1
    failed = [line for line in proc.stdout.splitlines() if line.startswith("[FAIL]")]
    assert failed == [f"[FAIL] registered: bosky is not in cloud_init_modules (from "
                      "/etc/cloud/cloud.cfg) and cloud_final_modules (from /etc/cloud/cloud.cfg)"
                      f" -- fix: run 'bosky install --root {root}'"]


def test_doctor_json(tmp_path: Path) -> None:
    root = make_image(tmp_path)
    proc = run_bosky(["doctor", "--root", str(root), "--json"])
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["ok"] is False and report["root"] == str(root)
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["registered"]["status"] == "fail"
    assert set(by_name["cloud-init"]) == {"name", "status", "detail", "fix"}


def test_doctor_usage_errors_are_one_line(tmp_path: Path) -> None:
    for args in (["--root", str(tmp_path / "nope")], ["--frobnicate"]):
        proc = run_bosky(["doctor", *args])
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("bosky: ")


def test_doctor_send_test_against_the_emulator(tmp_path: Path, aws_env: Dict[str, str],
                                              consumer: Any) -> None:
    root = good_image(tmp_path, project=consumer.project)
    env = {**aws_env, "BOSKY_SPOOL_DIR": str(tmp_path / "spool")}
    proc = run_bosky(["doctor", "--root", str(root), "--send-test"], env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-2].startswith("[ ok ] send test: EventBridge accepted")
    (event,) = consumer.receive(expected=1, timeout=10)
    assert event["source"] == consumer.project and event["detail"]["Status"] == "test"
    assert not (tmp_path / "spool").exists()


def test_image_mode_on_this_machine_skips_the_instance_checks(live: Dict[str, Any],
                                                              tmp_path: Path) -> None:
    """--image (a bake checking itself): cloud-init's Python is run, the instance's
    region, credentials and endpoint are left to the instances."""
    env = {"PATH": live["PATH"], "HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true"}
    checks = {c.name: c for c in doctor.run_checks(Path("/"), env, image=True)}
    assert checks["cloud-init"].status == OK and "read from" not in checks["cloud-init"].detail
    assert checks["imports"].status == OK
    assert [checks[n].status for n in ("region", "credentials", "endpoint")] == [WARN] * 3
