"""`pip install .` gives a working bosky, on the oldest Python cloud-init runs on too."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(REPO)], check=True, timeout=300)
    (found,) = out.glob("bosky-*.whl")
    return found


def test_wheel_holds_the_package_schemas_and_console_script(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "cc_bosky/__init__.py" in names and "cc_bosky/py.typed" in names
    assert "cc_bosky/schemas/config.schema.json" in names
    assert "cc_bosky/schemas/detail.schema.json" in names
    assert not [n for n in names if n.startswith("tests/")]
    meta = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "Requires-Python: >=3.9" in text
    requires = [ln for ln in text.splitlines() if ln.startswith("Requires-Dist")]
    assert sorted(r.split()[1].split(">")[0] for r in requires) == ["PyYAML", "boto3"]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "bosky = cc_bosky.tools.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.cloudinit
def test_installed_wheel_runs_on_python_3_9(wheel: Path, tmp_path: Path) -> None:
    """20.4.1's Python (3.9) with boto3 and PyYAML: the oldest place bosky must import."""
    from tests.harness.releases import ensure_release

    release = ensure_release("20.4.1")
    target = tmp_path / "site"
    subprocess.run([str(release.python), "-m", "pip", "install", "--no-deps", "-q",
                    "--target", str(target), str(wheel)], check=True, timeout=300)
    done = subprocess.run([str(release.python), "-c",
                           "import sys; sys.path.insert(0, sys.argv[1]); "
                           "import cc_bosky, cc_bosky.tools.cli as c; "
                           "assert 'boto3' not in sys.modules; sys.exit(c.main(['--version']))",
                           str(target)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("bosky ")


def test_importing_cc_bosky_loads_nothing_heavy() -> None:
    code = ("import sys, cc_bosky; heavy = [m for m in ('boto3', 'botocore', 'yaml', "
            "'jsonschema', 'urllib.request', 'cc_bosky.delivery.sender') if m in sys.modules]; "
            "print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_what_runs_inside_cloud_inits_stage_imports_little() -> None:
    """The stage checks the config and spawns the reporter; it builds no Settings
    (a dataclass: dataclasses is not loaded by cloud-init 20.x) and needs no YAML
    unless /etc/bosky/config.yaml exists."""
    code = ("import sys, cc_bosky.boot.launcher; print(sorted(m for m in ('dataclasses', "
            "'cc_bosky.config', 'yaml', 'boto3') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
