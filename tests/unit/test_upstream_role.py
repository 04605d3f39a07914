"""A pull-through rule's customRoleArn: the ARN's shape, and the region the upstream's STS is signed for."""

from __future__ import annotations

import pytest

from berth.replication.upstream_role import upstream_region, valid_role_arn


@pytest.mark.parametrize("arn, ok", [
    ("arn:aws:iam::123456789012:role/ptc", True),
    ("arn:aws:iam::123456789012:role/service-role/ecr/ptc-puller", True),
    ("arn:aws-cn:iam::123456789012:role/ptc", True),
    ("arn:aws:iam::12:role/ptc", False),
    ("arn:aws:iam::123456789012:user/ptc", False),
    ("arn:aws:sts::123456789012:assumed-role/ptc/s", False),
    ("arn:aws:iam::123456789012:role/", False),
    ("arn:aws:iam::123456789012:role/" + "x" * 65, False),
])
def test_role_arn_shape(arn: str, ok: bool) -> None:
    assert valid_role_arn(arn) is ok


def test_the_region_comes_from_an_ecr_host_else_the_rule() -> None:
    assert upstream_region("111122223333.dkr.ecr.eu-west-1.amazonaws.com", "us-east-1") == "eu-west-1"
    assert upstream_region("https://111122223333.dkr.ecr.ap-south-1.localhost:5000", "us-east-1") == "ap-south-1"
    assert upstream_region("127.0.0.1:5000", "us-west-2") == "us-west-2"
