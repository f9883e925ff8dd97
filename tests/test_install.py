"""``bosky install`` / ``bosky uninstall`` against realistic cloud-init configurations.

The configurations are Debian's own ``/etc/cloud`` from the cloud-init
packages the harness unpacked (20.4.1, 22.4.2, 25.1.4, 26.2), when they are in the
cache, and an embedded Debian-like one otherwise. The last test boots real
cloud-init with the drop-in ``bosky install`` wrote.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
import yaml

from cc_bosky.host.cloudcfg import (
    FINAL_KEY,
    INIT_KEY,
    effective_lists,
    item_name,
    names_at,
    read_system,
)
from cc_bosky.host.dropin import CONFIG_NAME, DROPIN_NAME, dropin_state
from cc_bosky.host.marked import MARKER
from cc_bosky.tools import cli
from tests.harness.releases import RELEASE_IDS, cache_dir
from tests.support.bounds import ARRIVAL
from tests.support.fixtures import run_bosky

#: A Debian-like cloud.cfg (trimmed from Debian 12's) for when no package is unpacked.
EMBEDDED_CLOUD_CFG = """\
# The top level settings are used as module
# and system configuration.
users:
   - default
disable_root: true
preserve_hostname: false
apt:
   preserve_sources_list: true

# The modules that run in the 'init' stage
cloud_init_modules:
 - migrator
 - seed_random
 - bootcmd
 - write-files
 - growpart
 - resizefs
 - [set_hostname, always]
 - update_hostname
 - users-groups
 - ssh

# The modules that run in the 'config' stage
cloud_config_modules:
 - locale
 - set-passwords
 - apt-configure
 - ntp
 - timezone
 - runcmd

# The modules that run in the 'final' stage
cloud_final_modules:
 - package-update-upgrade-install
 - write-files-deferred
 - scripts-vendor
 - scripts-per-once
 - scripts-per-boot
 - scripts-per-instance
 - [scripts-user, always]
 - ssh-authkey-fingerprints
 - keys-to-console
 - phone-home
 - final-message
 - power-state-change

system_info:
   distro: debian
   default_user:
     name: debian
     lock_passwd: True
   paths:
      cloud_dir: /var/lib/cloud/
      templates_dir: /etc/cloud/templates/
"""


def debian_etc_clouds() -> Dict[str, Path]:
    """Unpacked Debian /etc/cloud directories, by cloud-init version."""
    releases = cache_dir() / "releases"
    found = {}
    for cfg in sorted(releases.glob("*/root/etc/cloud/cloud.cfg")):
        if cfg.parents[3].name in RELEASE_IDS:  # the other builds: tests/test_distros.py
            found[f"debian-{cfg.parents[3].name}"] = cfg.parent
    return found


SOURCES = [*debian_etc_clouds(), "embedded"]


def make_root(tmp_path: Path, source: str = "embedded") -> Path:
    """A system root holding /etc/cloud from ``source``."""
    root = tmp_path / "root"
    etc = root / "etc" / "cloud"
    (etc / "cloud.cfg.d").mkdir(parents=True)
    if source == "embedded":
        (etc / "cloud.cfg").write_text(EMBEDDED_CLOUD_CFG)
    else:
        origin = debian_etc_clouds()[source]
        shutil.copy(origin / "cloud.cfg", etc / "cloud.cfg")
        for cfg in sorted((origin / "cloud.cfg.d").glob("*.cfg")):
            shutil.copy(cfg, etc / "cloud.cfg.d" / cfg.name)
    return root


def cfg_d(root: Path) -> Path:
    return root / "etc" / "cloud" / "cloud.cfg.d"


def lists_of(root: Path) -> Dict[str, List[Any]]:
    return effective_lists(read_system(root)).values


def snapshot(root: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture
def bosky_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Any]:
    """Run ``bosky ARGS`` in-process through cli.main; returns (code, stdout lines, stderr)."""

    def run(*args: str) -> Any:
        code = cli.main(list(args), environ={})
        out, err = capsys.readouterr()
        return code, out.splitlines(), err

    return run


def expected_final(items: List[Any]) -> List[Any]:
    at = names_at(items, "power_state_change")
    if at is None:
        return [*items, "bosky"]
    return [*items[:at], "bosky", *items[at:]]


# -- placing bosky ---------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_install_restates_the_effective_lists_with_bosky(tmp_path: Path, source: str,
                                                          bosky_cli: Any) -> None:
    root = make_root(tmp_path, source)
    before = lists_of(root)
    code, out, err = bosky_cli("install", "--root", str(root))
    assert (code, err) == (0, "")
    dropin = cfg_d(root) / DROPIN_NAME
    assert out == [f"{dropin}: written (cloud_init_modules: bosky appended; "
                   "cloud_final_modules: bosky before power_state_change)"]
    after = lists_of(root)
    assert after[INIT_KEY] == [*before[INIT_KEY], "bosky"]
    assert after[FINAL_KEY] == expected_final(before[FINAL_KEY])
    assert after[FINAL_KEY][-2:] == ["bosky", "power-state-change"]
    assert after["cloud_config_modules"] == before["cloud_config_modules"]
    data = yaml.safe_load(dropin.read_text())
    assert set(data) == {INIT_KEY, FINAL_KEY}  # the config list is not pinned
    assert stat.S_IMODE(dropin.stat().st_mode) == 0o644
    header = dropin.read_text().splitlines()[0]
    assert header.startswith(MARKER)
    assert "bosky install" in header and "bosky uninstall" in header
    assert "bosky doctor" in dropin.read_text()  # the pinning and its check are documented


def test_both_item_forms_and_a_cfg_d_override(tmp_path: Path, bosky_cli: Any) -> None:
    root = make_root(tmp_path)
    override = [
        "scripts-per-once",
        ["scripts_user", "always"],
        {"name": "phone_home", "frequency": "once-per-instance"},
        ["final_message", "always", "arg one", 2],
        "power_state_change",
        "cc_rightscale_userdata.py",
    ]
    (cfg_d(root) / "50_site.cfg").write_text(yaml.safe_dump({FINAL_KEY: override}))
    (cfg_d(root) / "60_other.cfg").write_text("datasource_list: [Ec2, None]\n")
    (cfg_d(root) / "70_notes.txt").write_text("cloud_init_modules: [ignored]\n")  # not .cfg
    code, _, _ = bosky_cli("install", "--root", str(root))
    assert code == 0
    lists = effective_lists(read_system(root))
    assert lists.values[FINAL_KEY] == [*override[:4], "bosky", *override[4:]]
    assert lists.origin[FINAL_KEY] == "/etc/cloud/cloud.cfg.d/99_bosky.cfg"
    text = (cfg_d(root) / DROPIN_NAME).read_text()
    assert "# cloud_final_modules from /etc/cloud/cloud.cfg.d/50_site.cfg" in text
    assert "# cloud_init_modules from /etc/cloud/cloud.cfg," in text
    assert " - [final_message, always, arg one, 2]" in text  # one item, one line


def test_later_file_replaces_a_list_whole_and_null_empties_it(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (cfg_d(root) / "10_a.cfg").write_text("cloud_init_modules: [a, b]\n")
    (cfg_d(root) / "20_b.cfg").write_text("cloud_init_modules: [c]\ncloud_final_modules:\n")
    lists = effective_lists(read_system(root))
    assert lists.values[INIT_KEY] == ["c"]
    assert lists.values[FINAL_KEY] == []
    assert lists.origin[INIT_KEY] == "/etc/cloud/cloud.cfg.d/20_b.cfg"


def test_module_names_as_cloud_init_resolves_them() -> None:
    for spelled in ("bosky", "cc_bosky", " bosky.py ", "cc-bosky", ["bosky", "always"],
                    {"name": "bosky"}):
        assert item_name(spelled) == "bosky", spelled
    assert item_name("power-state-change") == "power_state_change"
    assert item_name([]) is None and item_name({"frequency": "x"}) is None


@pytest.mark.parametrize("spelling", ["bosky", "cc_bosky", "[bosky, always]"])
def test_a_list_already_naming_bosky_is_left_alone(tmp_path: Path, spelling: str,
                                                   bosky_cli: Any) -> None:
    root = make_root(tmp_path)
    (cfg_d(root) / "10_init.cfg").write_text(f"cloud_init_modules: [bootcmd, {spelling}]\n")
    code, out, _ = bosky_cli("install", "--root", str(root))
    assert code == 0
    assert out == [f"{cfg_d(root) / DROPIN_NAME}: written (cloud_final_modules: bosky before "
                   "power_state_change)"]
    assert set(yaml.safe_load((cfg_d(root) / DROPIN_NAME).read_text())) == {FINAL_KEY}


def test_no_drop_in_when_both_lists_already_name_bosky(tmp_path: Path, bosky_cli: Any) -> None:
    root = make_root(tmp_path)
    (cfg_d(root) / "10_mine.cfg").write_text(
        "cloud_init_modules: [bootcmd, bosky]\ncloud_final_modules: [bosky, final-message]\n")
    code, out, _ = bosky_cli("install", "--root", str(root))
    assert code == 0
    assert out[0].endswith("not needed (bosky is already listed by "
                           "/etc/cloud/cloud.cfg.d/10_mine.cfg)")
    assert out[1] == "nothing changed: bosky was already installed"
    assert not (cfg_d(root) / DROPIN_NAME).exists()


def test_without_power_state_change_bosky_is_appended(tmp_path: Path, bosky_cli: Any) -> None:
    root = make_root(tmp_path)
    (cfg_d(root) / "10_final.cfg").write_text(
        "cloud_final_modules: [scripts-user, final-message]\n")
    code, out, _ = bosky_cli("install", "--root", str(root))
    assert code == 0 and "cloud_final_modules: bosky appended" in out[0]
    assert lists_of(root)[FINAL_KEY] == ["scripts-user", "final-message", "bosky"]


def test_conf_d_named_by_cloud_cfg_is_used(tmp_path: Path, bosky_cli: Any) -> None:
    root = make_root(tmp_path)
    cloud_cfg = root / "etc" / "cloud" / "cloud.cfg"
    cloud_cfg.write_text(cloud_cfg.read_text() + "conf_d: /etc/cloud/site.d\n")
    code, _, _ = bosky_cli("install", "--root", str(root))
    assert code == 0
    assert (root / "etc" / "cloud" / "site.d" / DROPIN_NAME).is_file()
    assert not (cfg_d(root) / DROPIN_NAME).exists()
    assert "bosky" in lists_of(root)[INIT_KEY]


# -- idempotence and removal -----------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_second_install_changes_nothing_and_says_so(tmp_path: Path, source: str,
                                                    bosky_cli: Any) -> None:
    root = make_root(tmp_path, source)
    assert bosky_cli("install", "--root", str(root), "--config", "--project", "fleet")[0] == 0
    first = snapshot(root)
    mtimes = {p: p.stat().st_mtime_ns for p in cfg_d(root).iterdir()}
    code, out, _ = bosky_cli("install", "--root", str(root), "--config", "--project", "fleet")
    assert code == 0
    assert out == [f"{cfg_d(root) / DROPIN_NAME}: unchanged (already up to date)",
                   f"{cfg_d(root) / CONFIG_NAME}: unchanged (already up to date)",
                   "nothing changed: bosky was already installed"]
    assert snapshot(root) == first
    assert {p: p.stat().st_mtime_ns for p in cfg_d(root).iterdir()} == mtimes


@pytest.mark.parametrize("source", SOURCES)
def test_uninstall_restores_exactly(tmp_path: Path, source: str, bosky_cli: Any) -> None:
    root = make_root(tmp_path, source)
    before, lists = snapshot(root), lists_of(root)
    assert bosky_cli("install", "--root", str(root), "--config", "--project", "p")[0] == 0
    code, out, _ = bosky_cli("uninstall", "--root", str(root))
    assert code == 0
    assert out == [f"{cfg_d(root) / DROPIN_NAME}: removed", f"{cfg_d(root) / CONFIG_NAME}: removed"]
    assert snapshot(root) == before
    assert lists_of(root) == lists
    code, out, _ = bosky_cli("uninstall", "--root", str(root))
    assert code == 0 and all(line.endswith(": not present") for line in out)


def test_foreign_files_are_neither_overwritten_nor_deleted(tmp_path: Path,
                                                           bosky_cli: Any) -> None:
    root = make_root(tmp_path)
    foreign = cfg_d(root) / DROPIN_NAME
    foreign.write_text("# my own file\ncloud_final_modules: [bosky]\n")
    code, out, err = bosky_cli("install", "--root", str(root))
    assert code == 2 and out == []
    assert err == f"bosky: {foreign} exists and was not written by bosky install; " \
                  "move it away first\n"
    code, out, _ = bosky_cli("uninstall", "--root", str(root))
    assert code == 0
    assert out[0] == f"{foreign}: kept, it was not written by bosky install"
    assert foreign.read_text().startswith("# my own file")
    assert "note: bosky is still listed in cloud_final_modules" in out[-1]


def test_stale_drop_in_is_rewritten_and_unneeded_one_removed(tmp_path: Path,
                                                             bosky_cli: Any) -> None:
    root = make_root(tmp_path)
    bosky_cli("install", "--root", str(root))
    cloud_cfg = root / "etc" / "cloud" / "cloud.cfg"
    # A package upgrade adds a module to cloud.cfg's init list.
    cloud_cfg.write_text(cloud_cfg.read_text().replace(" - ssh\n", " - ssh\n - new_module\n", 1))
    state = dropin_state(read_system(root))
    assert state.stale
    assert state.drift() == ["cloud_init_modules: /etc/cloud/cloud.cfg now also lists "
                             "new_module, which the drop-in hides"]
    code, out, _ = bosky_cli("install", "--root", str(root))
    assert code == 0 and ": written (cloud_init_modules" in out[0]
    assert lists_of(root)[INIT_KEY][-2:] == ["new_module", "bosky"]
    assert not dropin_state(read_system(root)).stale
    # Later the distribution lists bosky itself: the drop-in has no reason left.
    (cfg_d(root) / "50_vendor.cfg").write_text(
        "cloud_init_modules: [bosky]\ncloud_final_modules: [bosky]\n")
    code, out, _ = bosky_cli("install", "--root", str(root))
    assert code == 0 and "removed, no longer needed" in out[0]
    assert not (cfg_d(root) / DROPIN_NAME).exists()


def test_files_are_0644_whatever_the_umask_and_no_temp_file_remains(tmp_path: Path,
                                                                    bosky_cli: Any) -> None:
    root = make_root(tmp_path)
    old = os.umask(0o077)
    try:
        assert bosky_cli("install", "--root", str(root), "--config", "--project", "p")[0] == 0
    finally:
        os.umask(old)
    names = sorted(p.name for p in cfg_d(root).iterdir())
    assert names == [CONFIG_NAME, DROPIN_NAME]
    for name in names:
        assert stat.S_IMODE((cfg_d(root) / name).stat().st_mode) == 0o644


# -- the config stanza ---------------------------------------------------------------------------


def test_config_writes_a_valid_stanza_and_replaces_its_own(tmp_path: Path,
                                                           bosky_cli: Any) -> None:
    from cc_bosky import config

    root = make_root(tmp_path)
    code, out, _ = bosky_cli("install", "--root", str(root), "--config", "--project", "web: fleet",
                             "--region", "eu-west-1", "--event-bus", "ops")
    assert code == 0
    path = cfg_d(root) / CONFIG_NAME
    assert out[1] == f"{path}: written (bosky: project: web: fleet, region: eu-west-1, " \
                     "event_bus: ops)"
    stanza = yaml.safe_load(path.read_text())["bosky"]
    assert stanza == {"project": "web: fleet", "region": "eu-west-1", "event_bus": "ops"}
    assert config.problems(stanza, "stanza") == []
    assert path.read_text().startswith(MARKER)
    code, out, _ = bosky_cli("install", "--root", str(root), "--config", "--project", "other")
    assert code == 0 and out[1].startswith(f"{path}: replaced")
    assert yaml.safe_load(path.read_text()) == {"bosky": {"project": "other"}}


# -- refusals: exit 2, one line ----------------------------------------------------------------


@pytest.mark.parametrize(("args", "says"), [
    (["--config"], "--config needs --project NAME"),
    (["--project", "p"], "--project, --region and --event-bus go with --config"),
    (["--config", "--project", "aws.ec2"], "--config: project: 'aws.ec2' does not match"),
    (["--config", "--project", "p", "--region", "moon"], "--config: region: 'moon'"),
    (["--config", "--project", "p", "--event-bus", "a b"], "--config: event_bus: 'a b'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_flags_exit_2_with_one_line(tmp_path: Path, bosky_cli: Any, args: List[str],
                                        says: str) -> None:
    root = make_root(tmp_path)
    before = snapshot(root)
    code, out, err = bosky_cli("install", "--root", str(root), *args)
    assert code == 2 and out == []
    assert err.count("\n") == 1 and err.startswith("bosky: ") and says in err, err
    assert snapshot(root) == before


@pytest.mark.parametrize(("cloud_cfg", "says"), [
    (None, "cloud.cfg not found: is cloud-init installed in this root?"),
    ("cloud_init_modules: [a\n", "cloud.cfg: not valid YAML (line 2)"),
    ("- just\n- a list\n", "cloud.cfg: expected a mapping of keys, got list"),
    ("cloud_final_modules: scripts-user\n", "cloud.cfg: cloud_final_modules must be a list"),
    ("conf_d: relative/dir\n", "conf_d must be an absolute path"),
    ("conf_d:\n", "sets conf_d to nothing, so no drop-in is read"),
])
def test_missing_or_unparseable_cloud_cfg_exits_2(tmp_path: Path, bosky_cli: Any,
                                                  cloud_cfg: Any, says: str) -> None:
    root = make_root(tmp_path)
    path = root / "etc" / "cloud" / "cloud.cfg"
    if cloud_cfg is None:
        path.unlink()
    else:
        path.write_text(cloud_cfg)
    code, out, err = bosky_cli("install", "--root", str(root))
    assert code == 2 and out == []
    assert err.count("\n") == 1 and says in err, err


@pytest.mark.parametrize(("name", "content", "says"), [
    ("99_zz_site.cfg", "cloud_final_modules: [final-message]\n",
     "sets cloud_final_modules and is read after 99_bosky.cfg"),
    ("50_merge.cfg", "merge_how: 'list(append)+dict()'\ncloud_init_modules: [x]\n",
     "sets merge_how and a module list"),
    ("50_tmpl.cfg", "## template: jinja\n{% if true %}\ncloud_init_modules: [x]\n{% endif %}\n",
     "is a jinja template that sets cloud_init_modules"),
])
def test_lists_bosky_cannot_compute_are_refused(tmp_path: Path, bosky_cli: Any, name: str,
                                                content: str, says: str) -> None:
    root = make_root(tmp_path)
    (cfg_d(root) / name).write_text(content)
    code, _, err = bosky_cli("install", "--root", str(root))
    assert code == 2 and says in err and err.count("\n") == 1, err


def test_a_jinja_template_without_module_lists_is_harmless(tmp_path: Path,
                                                           bosky_cli: Any) -> None:
    root = make_root(tmp_path)
    (cfg_d(root) / "50_tmpl.cfg").write_text("## template: jinja\nhostname: {{ v1.region }}\n")
    assert bosky_cli("install", "--root", str(root))[0] == 0


def test_the_installed_command_reports_errors_in_one_line(tmp_path: Path) -> None:
    """Through the real console entry point, as an image build runs it."""
    proc = run_bosky(["install", "--root", str(tmp_path / "nowhere")])
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"bosky: --root {tmp_path / 'nowhere'}: not a directory\n"
    root = make_root(tmp_path)
    proc = run_bosky(["install", "--root", str(root)])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1


# -- against real cloud-init ------------------------------------------------------------


INIT_MODULES = ("bootcmd", ["write-files", "once-per-instance"])
CONFIG_MODULES = ("runcmd",)
FINAL_MODULES = ("scripts-per-once", ["scripts_user", "always"], "final-message",
                 "power-state-change")


@pytest.mark.cloudinit
def test_real_cloud_init_runs_bosky_in_init_and_final_from_the_drop_in(
        instance: Callable[..., Any], imds: Any, eventbridge: Any, consumer: Any,
        tmp_path: Path) -> None:
    """A boot whose cloud.cfg does not name bosky: install's drop-in alone registers it."""
    import dataclasses
    import json

    from tests.harness.boot import parse_module_timings

    imds.metadata = dataclasses.replace(imds.metadata, region="us-east-1")
    inst = instance(env={"AWS_ENDPOINT_URL_EVENTS": eventbridge.url,
                         "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url})
    staging = tmp_path / "staging"
    (staging / "etc" / "cloud" / "cloud.cfg.d").mkdir(parents=True)
    cloud_cfg = inst.cloud_cfg(INIT_MODULES, CONFIG_MODULES, FINAL_MODULES)
    (staging / "etc" / "cloud" / "cloud.cfg").write_text(json.dumps(cloud_cfg, indent=2))
    proc = run_bosky(["install", "--root", str(staging), "--config", "--project",
                      consumer.project, "--region", "us-east-1"])
    assert proc.returncode == 0, proc.stderr
    written = {p.name: p.read_text() for p in cfg_d(staging).glob("*.cfg")}
    assert set(written) == {DROPIN_NAME, CONFIG_NAME}

    boot = inst.boot(user_data="#!/bin/sh\necho hello\n", cloud_cfg_d=written,
                     init_modules=INIT_MODULES, config_modules=CONFIG_MODULES,
                     final_modules=FINAL_MODULES, wait_reporter=60)
    timings = parse_module_timings(boot.cloud_init_log)
    assert {"init-network", "modules-final"} <= set(timings), boot.describe()
    assert all(t.result == "SUCCESS" for t in timings.values()), timings
    # The stanza file reached the module too: the boot's verdict arrives.
    events = consumer.receive(expected=1, timeout=ARRIVAL)
    assert [e["detail"]["Status"] for e in events] == ["pass"], boot.describe()
