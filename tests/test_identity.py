"""Where an event's identity comes from, and the ARNs built from it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cc_bosky import arns, identity
from tests.support.bounds import SLACK

INSTANCE_DATA = {
    "v1": {"instance_id": "i-0abc", "region": "cn-north-1", "availability_zone": "cn-north-1a",
           "local_hostname": "ip-10-0-0-1", "cloud_name": "aws"},
    "ds": {"meta_data": {"instance-type": "m7g.large", "ami-id": "ami-1"},
           "dynamic": {"instance-identity": {"document": {"accountId": "111122223333"}}}},
}


@pytest.mark.parametrize("region, partition", [
    ("us-east-1", "aws"), ("eu-central-2", "aws"), ("cn-north-1", "aws-cn"),
    ("cn-northwest-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov"), ("us-iso-east-1", "aws-iso"),
    ("us-isob-east-1", "aws-iso-b"), (None, "aws"),
])
def test_partition_follows_the_region(region, partition) -> None:
    assert arns.partition(region) == partition


def test_instance_arn_in_china_and_govcloud() -> None:
    assert arns.instance_arn("i-1", "cn-north-1", "111122223333") == \
        "arn:aws-cn:ec2:cn-north-1:111122223333:instance/i-1"
    assert arns.instance_arn("i-1", "us-gov-east-1", "111122223333") == \
        "arn:aws-us-gov:ec2:us-gov-east-1:111122223333:instance/i-1"
    assert arns.instance_arn("i-1", "us-east-1", None) == "i-1"  # never a guessed account


def test_regional_endpoints() -> None:
    assert arns.events_endpoint("eu-west-1") == "https://events.eu-west-1.amazonaws.com"
    assert arns.events_endpoint("cn-north-1") == "https://events.cn-north-1.amazonaws.com.cn"


def test_cloud_init_record_gives_identity_without_network(tmp_path: Path) -> None:
    path = tmp_path / "instance-data.json"
    path.write_text(json.dumps(INSTANCE_DATA))
    found = identity.resolve(None, {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9"},
                             instance_data=str(path))
    assert (found.instance_id, found.account_id, found.region, found.instance_type,
            found.image_id, found.hostname) == (
        "i-0abc", "111122223333", "cn-north-1", "m7g.large", "ami-1", "ip-10-0-0-1")


def test_explicit_instance_id_for_another_instance_keeps_nothing_local(tmp_path: Path) -> None:
    path = tmp_path / "instance-data.json"
    path.write_text(json.dumps(INSTANCE_DATA))
    found = identity.resolve("i-other", {}, instance_data=str(path))
    assert found.instance_id == "i-other" and found.account_id is None
    assert "AccountId" not in found.detail_fields()


@pytest.mark.parametrize("content", ["", "{", "[]", '{"v1": "x"}', '{"v1": {"instance_id": 7}}'])
def test_unreadable_record_is_no_identity(tmp_path: Path, content: str) -> None:
    path = tmp_path / "instance-data.json"
    path.write_text(content)
    assert identity.from_instance_data(str(path)).instance_id is None


def test_imds_v2_when_cloud_init_left_no_record(imds, tmp_path: Path) -> None:
    found = identity.resolve(None, {"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url},
                             instance_data=str(tmp_path / "missing.json"))
    doc = imds.metadata.identity_document()
    assert found.instance_id == doc["instanceId"] and found.account_id == doc["accountId"]
    assert "PUT" in {r.method for r in imds.requests}  # a token first: IMDSv2


def test_imds_disabled_is_not_asked(imds, tmp_path: Path) -> None:
    found = identity.resolve(None, {"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
                                    "AWS_EC2_METADATA_DISABLED": "true"},
                             instance_data=str(tmp_path / "missing.json"))
    assert found.instance_id is None and imds.requests == []


def test_off_ec2_the_lookup_gives_up_quickly(tmp_path: Path) -> None:
    """A laptop: nothing listens where IMDS would be."""
    began = time.monotonic()
    found = identity.resolve(None, {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9"},
                             instance_data=str(tmp_path / "missing.json"))
    assert found.instance_id is None
    assert time.monotonic() - began < 2 * identity.IMDS_TIMEOUT + SLACK


def test_a_bus_given_by_arn_is_sent_to_in_its_own_region() -> None:
    bus = "arn:aws:events:us-east-1:111122223333:event-bus/platform"
    assert arns.send_region(bus, "eu-west-1", "ap-south-1") == "us-east-1"
    assert arns.send_region("platform", "eu-west-1", "ap-south-1") == "eu-west-1"
    assert arns.send_region(None, None, "ap-south-1") == "ap-south-1"
