"""The README is part of the feature: what it says is checked against the code."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, List

import pytest

from cc_bosky import config
from cc_bosky.tools.cli import SUBCOMMANDS, event_parser
from tests.support.emulator import make_consumer

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def section(title: str) -> str:
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ )", README, re.M | re.S)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def table_rows(text: str) -> List[List[str]]:
    rows = [ln for ln in text.splitlines() if ln.startswith("|") and not ln.startswith("|---")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in rows[1:]]


def test_readme_opens_with_the_two_setup_commands_and_ci_runs_the_second() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block
    commands = [ln.split("#")[0].strip() for ln in first_block.group(1).splitlines()
                if ln.strip() and not ln.startswith(" ")]
    assert commands == ["./dev demo", "./dev test"]
    assert "./dev test" in (REPO / ".ci/run").read_text()


def test_config_table_lists_every_schema_key_with_its_default() -> None:
    rows = {row[0].strip("`"): row for row in table_rows(section("Configure: the `bosky:` stanza"))}
    props = config.schema()["properties"]
    assert set(rows) == set(props)
    for key, spec in props.items():
        default = spec.get("default")
        if isinstance(default, (int, str)) and not isinstance(default, bool):
            assert str(default) in rows[key][1], (key, default)
        elif isinstance(default, list):
            assert rows[key][1] == f"`[{', '.join(default)}]`"


def test_cli_table_lists_every_flag_of_the_parser_and_every_subcommand() -> None:
    text = section("The command")
    for action in event_parser()._actions:
        for option in action.option_strings:
            if option != "-h" and option != "--help":
                assert f"`{option}" in text, option
    for name in SUBCOMMANDS:
        assert f"`bosky {name}" in text, name


def test_fleet_table_lists_every_flag_of_bosky_fleet() -> None:
    from cc_bosky.tools.fleet import fleet_parser

    flags = {row[0].strip("`").split()[0] for row in table_rows(section("Engines and flags"))
             if row[0].startswith("`--")}
    options = {o for a in fleet_parser()._actions if a.help != "==SUPPRESS=="
               for o in a.option_strings if o not in ("-h", "--help")}
    assert flags == options


def test_exit_code_table_matches_the_code() -> None:
    from cc_bosky import errors

    codes = [int(row[0]) for row in table_rows(section("Exit codes"))]
    assert codes == [errors.EXIT_OK, errors.EXIT_NOT_DELIVERED, errors.EXIT_USAGE,
                     errors.EXIT_INTERRUPTED]


def readme_rule_pattern() -> Any:
    blocks = re.findall(r"```json\n(\{\"detail-type\".*?)```", README, re.S)
    assert blocks, "README shows no consumer rule pattern"
    return json.loads(blocks[0])


def test_the_documented_rule_pattern_matches_and_the_originals_does_not(bosky, env,
                                                                         eventbridge) -> None:
    pattern = readme_rule_pattern()
    assert "detailType" not in json.dumps(pattern)
    pattern["source"] = [f"readme-{id(pattern)}"]
    documented = make_consumer(eventbridge, pattern=pattern)
    original = make_consumer(eventbridge, pattern={"detailType": ["User Data"],
                                                   "source": pattern["source"]})
    try:
        for flag in ("--fail", "--pass"):
            done = bosky([flag, "from the README", "--project", pattern["source"][0]], env=env)
            assert done.returncode == 0, done.stderr
        got = documented.receive(expected=1) + documented.drain(settle=0.5)
        assert [e["detail"]["Status"] for e in got] == ["fail"]  # pass is filtered out
        assert original.drain(settle=0.5) == []
    finally:
        documented.close()
        original.close()


@pytest.mark.parametrize("name", ["detail.schema.json", "config.schema.json"])
def test_readme_names_the_shipped_schemas(name: str) -> None:
    assert f"cc_bosky/schemas/{name}" in README
