"""bosky's one config definition, checked two ways, fed anything a user can write.

jsonschema is not a runtime dependency, so the schema is enforced by the
small interpreter in cc_bosky/validation.py. Here the real jsonschema
(Draft 4, the draft the schema declares) judges the same mappings, generated
from the schema itself, and the two must agree. Then config files, the
environment and cloud-config stanzas of every shape go through the command
and the boot path: a config error is exit 2 and one line naming the key, and
at boot nothing raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import math
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Sequence, Tuple

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st

from cc_bosky import config, validation
from cc_bosky.boot import launcher
from cc_bosky.schemas import load
from cc_bosky.text import printable
from cc_bosky.tools import cli

SCHEMA = load("config")
PROPS: Dict[str, Dict[str, Any]] = SCHEMA["properties"]
DRAFT4 = jsonschema.Draft4Validator(SCHEMA)


@pytest.mark.parametrize("name", ["config", "detail"])
def test_shipped_schemas_are_valid_draft4(name: str) -> None:
    jsonschema.Draft4Validator.check_schema(load(name))


# -- strategies built from the schema -------------------------------------

_WRONG = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False),
    st.text(max_size=5), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _strings(spec: Mapping[str, Any]) -> st.SearchStrategy[str]:
    options: List[st.SearchStrategy[str]] = [
        st.text(max_size=12),
        st.sampled_from(["", " ", "aws.ec2", "x\n", "\x00", "\u2028", "é", "/", "a" * 300]),
    ]
    if "enum" in spec:
        options.append(st.sampled_from(spec["enum"]))
    if "pattern" in spec:
        # Matching (and, with a character added, mostly not matching) the pattern.
        matching = st.from_regex(spec["pattern"])
        options += [matching, st.builds(lambda s, c: s + c, matching,
                                        st.sampled_from(["\n", " ", "\x7f", "A", ""]))]
    for bound in ("minLength", "maxLength"):
        if bound in spec:
            n = spec[bound]
            options.append(st.text(st.characters(min_codepoint=0x61, max_codepoint=0x7A),
                                   min_size=max(0, n - 1), max_size=n + 1))
    return st.one_of(options)


def _numbers(spec: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    low, high = spec.get("minimum", -100), spec.get("maximum", 100)
    edges = [low - 1, low, low + 1, high - 1, high, high + 1]
    options = [st.sampled_from(edges), st.sampled_from([float(e) for e in edges]),
               st.sampled_from([low - 0.5, low + 0.5, high - 0.5, high + 0.5]),
               st.integers(low - 5, high + 5), st.floats(low - 1, high + 1),
               st.sampled_from([math.inf, -math.inf, 10**400])]
    return st.one_of(options)


def values_for(spec: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    kind = spec["type"]
    if isinstance(kind, list):  # e.g. lifecycle_hook: a name or its full form
        return st.one_of([values_for({**spec, "type": k}) for k in kind])
    if kind == "boolean":
        right: st.SearchStrategy[Any] = st.booleans()
    elif kind == "object":
        props = spec.get("properties", {})
        right = st.fixed_dictionaries({}, optional={k: values_for(v) for k, v in props.items()})
        right = right | st.builds(lambda a, b: {**a, **b}, right,
                                  st.dictionaries(st.text(max_size=6), _WRONG, max_size=2))
    elif kind == "string":
        right = _strings(spec)
    elif kind in ("integer", "number"):
        right = _numbers(spec)
    elif kind == "array":
        item = spec["items"]
        choices = st.sampled_from(item["enum"]) | values_for(item)
        right = st.lists(choices, max_size=6) | st.lists(st.sampled_from(item["enum"]),
                                                         max_size=4, unique=True)
    else:
        raise AssertionError(f"the strategies do not know type {kind}: extend them")
    return st.one_of(right, _WRONG)


def valid_values(spec: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Values the schema accepts (so that mappings are not almost all invalid)."""
    kind = spec["type"]
    if isinstance(kind, list):
        return st.one_of([valid_values({**spec, "type": k}) for k in kind])
    if kind == "boolean":
        return st.booleans()
    if kind == "object":
        props = spec.get("properties", {})
        required = set(spec.get("required", ()))
        return st.fixed_dictionaries(
            {k: valid_values(v) for k, v in props.items() if k in required},
            optional={k: valid_values(v) for k, v in props.items() if k not in required})
    if "enum" in spec:
        return st.sampled_from(spec["enum"])
    if kind == "string":
        text = st.from_regex(spec["pattern"], fullmatch=True) if "pattern" in spec else \
            st.text(min_size=spec.get("minLength", 0))
        return text.filter(lambda s: spec.get("minLength", 0) <= len(s)
                           <= spec.get("maxLength", len(s)))
    if kind in ("integer", "number"):
        low, high = spec["minimum"], spec["maximum"]
        ints = st.integers(low, high) | st.sampled_from([low, high])
        return ints if kind == "integer" else ints | st.floats(low, high)
    if kind == "array":
        return st.lists(st.sampled_from(spec["items"]["enum"]), unique=True)
    raise AssertionError(f"the strategies do not know type {kind}: extend them")


def mappings() -> st.SearchStrategy[Dict[Any, Any]]:
    valid = st.fixed_dictionaries({}, optional={k: valid_values(v) for k, v in PROPS.items()})
    anything = st.fixed_dictionaries({}, optional={k: values_for(v) for k, v in PROPS.items()})
    unknown = st.dictionaries(st.text(max_size=8) | st.integers() | st.none(), _WRONG,
                              min_size=1, max_size=2)
    one_key = st.sampled_from(sorted(PROPS)).flatmap(
        lambda k: st.fixed_dictionaries({k: values_for(PROPS[k])}))
    return st.one_of(
        valid,  # mostly accepted
        st.builds(lambda a, b: {**a, **b}, valid, one_key),  # one key possibly wrong
        st.builds(lambda a, b: {**b, **a}, valid, unknown),  # an unknown key
        anything,  # anything goes
    )


@settings(max_examples=500, deadline=None)
@given(st.one_of(mappings(), _WRONG))
def test_the_mini_validator_and_jsonschema_agree(value: Any) -> None:
    found = validation.errors(value, SCHEMA)
    note_event("invalid" if found else "valid")
    assert (not found) == DRAFT4.is_valid(value), (found, list(DRAFT4.iter_errors(value)))


def test_every_schema_key_is_covered_by_the_strategies() -> None:
    # A new key with a new type fails here first, not silently in the
    # property above.
    for spec in PROPS.values():
        values_for(spec)
        valid_values(spec)


@pytest.mark.parametrize("mapping, message", [
    ({"region": ""}, "region: '' does not match"),
    ({"spool_dir": ""}, "spool_dir: '' does not match ^/"),
    ({"project": ""}, "project: must not be empty"),
    ({"project": "aws.ec2"}, "project: 'aws.ec2' does not match"),
    ({"deadline": 5.0}, "deadline: expected integer, got number"),
    ({"log_lines": True}, "log_lines: expected integer, got boolean"),
    ({"send": ["pass", "pass"]}, "send: 'pass' is listed twice"),
    ({"send": ["pass", "nope"]}, "send[1]: 'nope' is not one of: pass, fail, degraded, timeout"),
    ({"flush_window": -1}, "flush_window: -1 is less than 0"),
    ({"spool_max_bytes": 10**20}, "spool_max_bytes: 100000000000000000000 is more than"),
    ({"colour": "blue"}, "colour: unknown key"),
    ([], "(top level): expected object, got array"),
])
def test_each_problem_names_its_key(mapping: Any, message: str) -> None:
    assert any(m.startswith(message) for m in validation.errors(mapping, SCHEMA)), \
        validation.errors(mapping, SCHEMA)


def test_nan_is_not_a_number_although_jsonschema_lets_it_pass() -> None:
    # NaN is not a JSON value; YAML's .nan is. Every comparison with it is
    # false, so without a check of its own it passes minimum and maximum.
    assert validation.errors({"send_timeout": math.nan}, SCHEMA) == \
        ["send_timeout: NaN is not a number"]


@pytest.mark.parametrize("key, value", [("project", "fleet\n"), ("region", "us-east-1\n"),
                                        ("detail_type", "User Data\n"),
                                        ("endpoint_url", "https://vpce.example\n"),
                                        ("event_bus", "ops\n")])
def test_a_trailing_newline_is_refused(key: str, value: str) -> None:
    assert validation.errors({key: value}, SCHEMA)
    assert not DRAFT4.is_valid({key: value})


def test_a_huge_list_is_checked_quickly_and_briefly() -> None:
    # 200,000 items fit in a 1 MiB file; the error must not list each one.
    found = validation.errors({"send": ["pass"] * 100_000 + list(range(100_000))}, SCHEMA)
    assert len(found) <= 6 and found[-1] == "send: 99995 more bad items"


# -- the command: config files, environment ---------------------------------


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def bosky_env(workdir: Path, **extra: str) -> Dict[str, str]:
    """Nothing can be sent: --dry-run, no IMDS, spool and run dirs in a temp dir."""
    return {"AWS_REGION": "eu-west-1", "AWS_EC2_METADATA_DISABLED": "true",
            "BOSKY_SPOOL_DIR": str(workdir / "spool"), "BOSKY_RUN_DIR": str(workdir / "run"),
            **extra}


def run(argv: Sequence[str], environ: Mapping[str, str]) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(argv), environ)
        except SystemExit as exc:  # argparse's --help and --version
            code = exc.code if isinstance(exc.code, int) else 0
    return code, out.getvalue(), err.getvalue()


VALID_PREFIX = ": valid ("


def assert_one_line_error(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("bosky: ")
    assert "Traceback" not in err
    return err


def offending_keys(mapping: Mapping[Any, Any]) -> List[str]:
    keys = []
    for error in DRAFT4.iter_errors(mapping):
        if error.path:
            keys.append(printable(str(error.path[0])))
        elif error.validator == "additionalProperties":
            keys += [printable(str(k)) for k in mapping if k not in PROPS]
    return keys


def _yaml_of(value: Any) -> bytes:
    return yaml.safe_dump(value, allow_unicode=True).encode()


# Deep enough to exhaust PyYAML's recursion, not so deep that parsing is slow.
_NESTED = st.sampled_from([1, 10, 100, 1000, 5000]).map(lambda n: b"send: " + b"[" * n + b"]" * n)
_LAUGHS = b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n".encode()
    for i in range(8)) + b"send: [*i, *i]\n"
_SPECIAL = st.sampled_from([
    b"", b"~", b"---\n...\n", b"- a\n- b\n", b"just a string", b"42", b"\t\tproject: x",
    b"project: x\nproject: y\n", b"project: !!python/object:os.system x",
    b"send_timeout: .nan", b"send_timeout: .inf", b"deadline: 1e3", b"deadline: 0x10",
    b"deadline: 2025-01-01", b"send: !!set {pass: null}", b"project: !!binary aGk=",
    b"? [a, b]\n: c", b"\xff\xfe\x00p\x00", b"\xef\xbb\xbfproject: bom", b"project: \xff",
    b"project: 'x\n", b"{" * 10, b"project: *nope",
    b"region: ''", b"spool_dir: ''", b"project:\n  nested: map",
])
_CONFIG_FILES = st.one_of(
    st.builds(_yaml_of, mappings()),
    st.builds(_yaml_of, _WRONG),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=300),
    _SPECIAL,
    _NESTED,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_CONFIG_FILES)
def test_any_config_file_is_accepted_or_one_line_naming_the_key(workdir: Path,
                                                               raw: bytes) -> None:
    path = workdir / "config.yaml"
    path.write_bytes(raw)
    code, _, err = run(["--dry-run", "--pass", "--config", str(path), "deployed"],
                       bosky_env(workdir))
    parsed = _safe_load(raw)
    if code == 0:
        assert err == "" and isinstance(parsed, (dict, type(None)))
        assert parsed is None or DRAFT4.is_valid(parsed)
        return
    assert code == 2, (code, err)
    assert_one_line_error(err)
    assert str(path) in err
    if f"{path}: refused: " in err:  # past YAML's bounds (layers.load_yaml): not read at all
        return
    if isinstance(parsed, dict) and not DRAFT4.is_valid(parsed):
        assert any(key in err for key in offending_keys(parsed)), err


def test_a_yaml_alias_bomb_is_refused_at_once(workdir: Path) -> None:
    # Nine levels of nine aliases: a few hundred bytes, 9**9 items when
    # expanded. Not in the property above: jsonschema's messages repr the
    # expansion and never finish. Refused as it is read, before any check.
    path = workdir / "laughs.yaml"
    path.write_bytes(_LAUGHS)
    code, _, err = run(["--dry-run", "--pass", "--config", str(path), "m"], bosky_env(workdir))
    assert code == 2 and assert_one_line_error(err) == (
        f"bosky: {path}: refused: more than 100000 values once its YAML aliases are expanded "
        "(an alias bomb?)\n")
    good, bad = config.lenient(yaml.safe_load(_LAUGHS), "bosky")
    assert good == {} and len(bad) == 11


def _safe_load(raw: bytes) -> Any:
    try:
        return yaml.safe_load(raw)
    except (yaml.YAMLError, ValueError, RecursionError):
        return "not YAML"


def test_a_config_file_over_1_mib_is_refused_unread(workdir: Path) -> None:
    path = workdir / "big.yaml"
    path.write_bytes(b"# " + b"x" * (1024 * 1024) + b"\n")
    code, _, err = run(["--dry-run", "--pass", "--config", str(path), "m"], bosky_env(workdir))
    assert code == 2 and err == f"bosky: config file {path} is larger than 1 MiB\n"


@pytest.mark.parametrize("name", ["nope.yaml", "dir"])
def test_a_missing_or_unreadable_config_file_is_one_line(workdir: Path, name: str) -> None:
    (workdir / "dir").mkdir(exist_ok=True)
    code, _, err = run(["--dry-run", "--pass", "--config", str(workdir / name), "m"],
                       bosky_env(workdir))
    assert code == 2 and str(workdir / name) in assert_one_line_error(err)


@pytest.mark.parametrize("argv", [["--dry-run", "--pass", "--config", "/tmp/a\x00b", "m"],
                                  ["--dry-run", "--pass", "--config", "/tmp/a\ud800", "m"],
                                  ["schema", "/tmp/a\x00b"]])
def test_an_impossible_config_path_is_a_usage_error(workdir: Path, argv: List[str]) -> None:
    code, _, err = run(argv, bosky_env(workdir))
    assert code == 2
    assert_one_line_error(err)


_ENV_VALUES = st.one_of(st.text(max_size=20), st.sampled_from(
    ["nan", "NaN", "inf", "-inf", "1e999", "0", "-1", "1.5", "10", " 7 ", "pass,,fail",
     "pass,pass", "us-east-1", "/x", "", "0x10", "١٢"]))


@settings(max_examples=200, deadline=None)
@given(values=st.dictionaries(st.sampled_from(sorted(PROPS)), _ENV_VALUES, max_size=4))
def test_any_bosky_environment_is_accepted_or_one_line(workdir: Path,
                                                      values: Dict[str, str]) -> None:
    env = bosky_env(workdir, **{f"BOSKY_{k.upper()}": v.replace("\x00", "")
                                for k, v in values.items()})
    code, _, err = run(["--dry-run", "--pass", "m"], env)
    assert code in (0, 2), err
    if code == 2:
        assert_one_line_error(err)


@pytest.mark.parametrize("argv, env", [
    (["--timeout", "nan"], {}), (["--timeout", "inf"], {}), ([], {"BOSKY_SEND_TIMEOUT": "nan"}),
    ([], {"BOSKY_DEADLINE": "soon"}), ([], {"BOSKY_SPOOL_DIR": "relative/spool"}),
])
def test_a_bad_setting_from_flags_or_environment_is_exit_2(workdir: Path, argv: List[str],
                                                            env: Dict[str, str]) -> None:
    code, _, err = run(["--dry-run", "--pass", *argv, "m"], {**bosky_env(workdir), **env})
    assert code == 2, err
    assert_one_line_error(err)


# -- cloud-config stanzas at boot -------------------------------------------

_YAMLISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
    | st.dates() | st.binary(max_size=4) | st.just(datetime.datetime(2025, 1, 1)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=6) | st.integers(), inner, max_size=3)
    | st.frozensets(st.integers(), max_size=3),
    max_leaves=8)


@settings(max_examples=400, deadline=None)
@given(st.one_of(mappings(), _YAMLISH,
                 st.dictionaries(st.sampled_from(sorted(PROPS)), _YAMLISH, max_size=4)))
def test_lenient_never_raises_and_keeps_only_valid_keys(stanza: Any) -> None:
    good, bad = config.lenient(stanza, "bosky")
    assert DRAFT4.is_valid(good)
    assert all(message.startswith("bosky: ") for message in bad)
    if isinstance(stanza, dict):
        assert set(good) <= set(stanza)
        assert bool(bad) == (set(good) != set(stanza))
    config.build(good)


@settings(max_examples=200, deadline=None)
@given(stanza=st.one_of(mappings(), _YAMLISH))
def test_any_stanza_gives_boot_settings_that_match_the_schema(workdir: Path,
                                                              stanza: Any) -> None:
    settings_, problems = launcher.boot_settings(stanza, {}, base_file=str(workdir / "absent"))
    as_mapping = {k: list(v) if isinstance(v, tuple) else v
                  for k, v in dataclasses.asdict(settings_).items() if v is not None}
    assert DRAFT4.is_valid(as_mapping), list(DRAFT4.iter_errors(as_mapping))
    assert all(isinstance(p, str) and "\n" not in p for p in problems)


def test_a_stanza_with_a_typo_keeps_the_rest(workdir: Path) -> None:
    stanza = {"project": "web", "deadlin": 60, "log_lines": "many"}
    settings_, problems = launcher.boot_settings(stanza, {}, base_file=str(workdir / "absent"))
    assert settings_.project == "web" and settings_.log_lines == 50
    assert problems == ["bosky: deadlin: unknown key; did you mean 'deadline'?",
                        "bosky: log_lines: expected integer, got string"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_CONFIG_FILES)
def test_bosky_schema_on_any_cloud_config_file_is_valid_or_one_line_per_problem(
        workdir: Path, raw: bytes) -> None:
    path = workdir / "user-data.yaml"
    path.write_bytes(b"#cloud-config\nbosky:\n" + b"".join(
        b"  " + line + b"\n" for line in raw.splitlines()) if raw[:1].isalpha() else raw)
    code, out, err = run(["schema", str(path)], {})
    assert code in (0, 2), err
    assert "Traceback" not in out + err
    assert err == "", err  # the report, problems included, is on stdout
    problems = [line for line in out.splitlines() if line.startswith("problem: ")]
    if code == 2:
        assert problems and VALID_PREFIX not in out, (out, err)
    else:
        assert problems == [] and (f"{path}: valid" in out
                                   or f"{path}: bosky's stanza valid" in out), out
