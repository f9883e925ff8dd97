"""AWS facts bosky takes from the installed botocore's own data, not from a table.

A region in a partition bosky was never told about (the European Sovereign
Cloud's ``eusc-de-east-1``) gets its partition, its endpoint and its ARNs
right, and the config accepts it; an older botocore without partitions.json
falls back to the table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, List

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cc_bosky import arns, config
from cc_bosky.delivery.sender import Target
from cc_bosky.tools.policy import put_events_policy

PARTITIONS_JSON = arns.botocore_data("partitions.json")


def botocore_partitions() -> Dict[str, Any]:
    assert PARTITIONS_JSON, "botocore is installed with bosky"
    data: Dict[str, Any] = json.loads(Path(PARTITIONS_JSON).read_text())
    return data


def regions() -> List[str]:
    """Every region botocore lists, but the ``*-global`` pseudo-regions: no event bus
    lives there, and boto3 itself maps them to a real region."""
    return sorted(r for p in botocore_partitions()["partitions"] for r in p["regions"]
                  if not r.endswith("-global"))


def botocore_partition(region: str) -> str:
    """botocore's own answer (the ``aws.partition`` function of its endpoint rules)."""
    from botocore.endpoint_provider import RuleSetStandardLibrary

    return str(RuleSetStandardLibrary(botocore_partitions()).aws_partition(region)["name"])


@pytest.fixture
def old_botocore(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A botocore without partitions.json, as Debian 11's 1.20."""
    monkeypatch.setattr(arns, "botocore_data", lambda name: "/nonexistent/" + name)
    arns.partitions.cache_clear()
    yield
    arns.partitions.cache_clear()


def test_a_european_sovereign_cloud_region_gets_its_partition_endpoint_and_arns() -> None:
    region = "eusc-de-east-1"
    assert arns.partition(region) == "aws-eusc"
    assert Target(region).url == "https://events.eusc-de-east-1.amazonaws.eu/"
    assert arns.endpoint("autoscaling", region) == "https://autoscaling.eusc-de-east-1.amazonaws.eu"
    assert arns.instance_arn("i-0abc", region, "111122223333") == \
        "arn:aws-eusc:ec2:eusc-de-east-1:111122223333:instance/i-0abc"
    statement = put_events_policy("web", "User Data", None, region, "111122223333")["Statement"]
    assert statement[0]["Resource"] == \
        "arn:aws-eusc:events:eusc-de-east-1:111122223333:event-bus/default"
    assert config.problems({"region": region}, "config") == []


def test_the_endpoint_is_the_one_botocore_resolves() -> None:
    """One region of each partition: bosky's URL is botocore's EventBridge endpoint."""
    import botocore.session

    session = botocore.session.get_session()
    seen = set()
    for region in regions():
        name = arns.partition(region)
        if name in seen:
            continue
        seen.add(name)
        client = session.create_client("events", region_name=region, aws_access_key_id="x",
                                       aws_secret_access_key="x")
        assert Target(region).url == client.meta.endpoint_url.rstrip("/") + "/", region
    assert {"aws", "aws-cn", "aws-eusc", "aws-us-gov"} <= seen


def test_every_region_botocore_knows_is_accepted_and_placed_as_botocore_places_it() -> None:
    schema = config.schema()
    jsonschema.Draft4Validator.check_schema(schema)
    validator = jsonschema.Draft4Validator(schema)
    for region in regions():
        assert config.problems({"region": region}, "config") == [], region
        assert list(validator.iter_errors({"region": region})) == [], region  # cloud-init's view
        assert arns.partition(region) == botocore_partition(region), region


def region_like(pattern: str) -> st.SearchStrategy[str]:
    """Names matching a partition's pattern in the shape regions take (ASCII, lower case)."""
    return st.from_regex(pattern.replace(r"\w", "[a-z]").replace(r"\d", "[0-9]"), fullmatch=True)


@given(st.sampled_from([p["regionRegex"] for p in botocore_partitions()["partitions"]])
       .flatmap(region_like))
def test_a_region_botocore_does_not_list_yet_is_placed_by_its_pattern(region: str) -> None:
    assert arns.partition(region) == botocore_partition(region)
    assert config.problems({"region": region}, "config") == []


def test_an_old_botocore_without_partitions_json_uses_the_table(old_botocore: None) -> None:
    assert arns.partitions() is arns.FALLBACK
    for region in regions():
        assert arns.partition(region) == botocore_partition(region), region
    assert arns.dns_suffix("eusc-de-east-1") == "amazonaws.eu"
    assert arns.dns_suffix("cn-north-1") == "amazonaws.com.cn"
    assert arns.partition("xx-nowhere-1") == arns.partition(None) == "aws"


def test_the_table_agrees_with_the_installed_botocore() -> None:
    """Each partition the table has reads as the installed botocore has it (a newer
    botocore may know more: partitions.json is then what is used)."""
    installed = {p["id"]: (p["outputs"]["dnsSuffix"], p["regionRegex"])
                 for p in botocore_partitions()["partitions"]}
    table = {p.name: (p.dns_suffix, p.region_regex) for p in arns.FALLBACK}
    assert {name: installed.get(name) for name in table} == table
