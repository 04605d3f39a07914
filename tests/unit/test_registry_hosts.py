"""repositoryUri / proxyEndpoint hosts (berth/api/ecr/hosts.py): always one a client can reach."""

from __future__ import annotations

import pytest

from berth.api.ecr.hosts import registry_host

A, B, R = "123456789012", "222222222222", "us-east-1"


@pytest.mark.parametrize(("request_host", "secure", "account", "region", "domain", "want"), [
    ("127.0.0.1:5000", False, A, R, "localhost", "127.0.0.1:5000"),  # the default registry: the host called
    ("localhost:5000", False, A, R, "localhost", "localhost:5000"),
    ("registry.internal", True, A, R, "localhost", "registry.internal"),
    ("registry.internal:443", True, A, R, "localhost", "registry.internal"),  # the scheme's port is left out
    ("[::1]:5000", False, A, R, "localhost", "[::1]:5000"),
    ("127.0.0.1:5000", False, B, R, "localhost", f"{B}.dkr.ecr.{R}.localhost:5000"),  # another: its ECR name
    ("127.0.0.1:5000", False, A, "eu-west-1", "localhost", f"{A}.dkr.ecr.eu-west-1.localhost:5000"),
    ("api.ecr.us-east-1.amazonaws.com", True, A, R, "amazonaws.com", f"{A}.dkr.ecr.{R}.amazonaws.com"),
    ("api.ecr.us-east-1.example.com:8443", True, B, R, "x", f"{B}.dkr.ecr.{R}.example.com:8443"),
    (f"{A}.dkr.ecr.{R}.localhost:5000", False, B, "eu-west-1", "localhost", f"{B}.dkr.ecr.eu-west-1.localhost:5000"),
])
def test_registry_host(request_host: str, secure: bool, account: str, region: str, domain: str, want: str) -> None:
    assert registry_host(request_host, secure, account, region, domain, A, R) == want
