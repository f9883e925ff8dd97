"""Shared fixtures: the EventBridge emulator and fault proxy (tests/support),
the real cloud-init harness (tests/harness), and bosky's own state dirs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
from hypothesis import HealthCheck, settings

# Generated-input tests check behaviour, never speed: no per-example deadline
# and no "too slow" health check, which a loaded machine would trip.
settings.register_profile("bosky", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("bosky")

pytest_plugins = ["tests.support.fixtures", "tests.harness.fixtures"]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(aws_env: Dict[str, str], tmp_path: Path) -> Dict[str, str]:
    """aws_env plus spool and run dirs of this test's own: nothing on the host is touched."""
    return {
        **aws_env,
        "BOSKY_SPOOL_DIR": str(tmp_path / "spool"),
        "BOSKY_RUN_DIR": str(tmp_path / "run"),
    }


@pytest.fixture(scope="session")
def detail_validator() -> Iterator[Any]:
    """The shipped detail schema, checked with the real jsonschema (draft 4)."""
    import jsonschema

    schema = json.loads((REPO / "cc_bosky/schemas/detail.schema.json").read_text())
    jsonschema.Draft4Validator.check_schema(schema)
    yield jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())


def assert_valid_event(envelope: Dict[str, Any], validator: Any) -> Dict[str, Any]:
    """The envelope's detail, after checking it against the shipped schema."""
    detail: Dict[str, Any] = envelope["detail"]
    errors = sorted(validator.iter_errors(detail), key=str)
    assert not errors, [e.message for e in errors]
    return detail
