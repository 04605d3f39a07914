"""A rule's customRoleArn: the role assumed on an ECR-compatible upstream (another Berth) to pull from it.

In ECR the role lets ECR pull from an upstream ECR registry of another account. Here the upstream serves STS
on its registry port: the rule's secret holds the caller's long-term access key (`username`: the key id,
`accessToken`: the secret key), AssumeRole gives temporary credentials, and those get the upstream's ECR
authorization token, the Basic credentials of the pulls. Blocking (botocore): run on a worker thread.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from berth.replication.pullthrough_client import UpstreamError

ROLE_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:iam::\d{12}:role/(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}")
SESSION_NAME = "berth-pull-through"
ECR_HOST = re.compile(r"(?:^|//)\d{12}\.dkr\.ecr\.([a-z0-9-]+)\.")


def upstream_region(url: str, default: str) -> str:
    """The region an upstream's STS and ECR are signed for: an ECR-style host names it
    (`<account>.dkr.ecr.<region>.<domain>`), else the rule's own region."""
    m = ECR_HOST.search(url)
    return m.group(1) if m else default


def valid_role_arn(arn: str) -> bool:
    return len(arn) <= 2048 and ROLE_ARN.fullmatch(arn) is not None


def _client(service: str, base_url: str, region: str, key: str, secret: str, token: str | None = None) -> Any:
    import botocore.session
    from botocore.config import Config

    return botocore.session.get_session().create_client(
        service, region_name=region, endpoint_url=base_url, aws_access_key_id=key, aws_secret_access_key=secret,
        aws_session_token=token, config=Config(retries={"total_max_attempts": 1}, connect_timeout=10,
                                               read_timeout=30))


def registry_credentials(base_url: str, region: str, key: str, secret: str, role_arn: str) -> tuple[str, str]:
    """(user, password) for the upstream's registry, through the role; UpstreamError (credentials) otherwise."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        found = _client("sts", base_url, region, key, secret).assume_role(
            RoleArn=role_arn, RoleSessionName=SESSION_NAME)["Credentials"]
        token = _client("ecr", base_url, region, found["AccessKeyId"], found["SecretAccessKey"],
                        found["SessionToken"]).get_authorization_token()["authorizationData"][0]
        user, _, password = base64.b64decode(token["authorizationToken"]).decode().partition(":")
    except ClientError as e:
        err = e.response.get("Error", {})
        raise UpstreamError("UpstreamAccessDenied", f"the upstream refused {e.operation_name} for the role "
                                                    f"{role_arn}: {err.get('Code')}: {err.get('Message')}",
                            credentials=True) from None
    except (BotoCoreError, KeyError, IndexError, ValueError) as e:
        raise UpstreamError("UpstreamUnavailable", f"the role {role_arn} could not be assumed on the upstream: "
                                                   f"{e}", credentials=True) from None
    return user, password
