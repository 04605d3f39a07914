"""The one authorization seam: (principal, action, resource ARN, context) -> allow or deny.

Every request on every face carries a Principal and is authorized through `Authorizer.authorize`.
`--auth none` wires `OpenAuthorizer`; `--auth iam` (control-plane issue) wires policy evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from berth.iam.policy import Decision


@dataclass(frozen=True, slots=True)
class Principal:
    account: str
    arn: str
    user: str | None = None  # the IAM user name; None for the account root
    access_key_id: str | None = None

    @classmethod
    def account_admin(cls, account: str) -> Principal:
        return cls(account=account, arn=f"arn:aws:iam::{account}:root")

    @classmethod
    def iam_user(cls, account: str, user: str, access_key_id: str | None = None) -> Principal:
        return cls(account=account, arn=f"arn:aws:iam::{account}:user/{user}", user=user,
                   access_key_id=access_key_id)


@dataclass(frozen=True, slots=True)
class Context:
    source_ip: str = ""
    secure_transport: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)
    # Decide as if this repository policy text were stored in place of the repository's own:
    # SetRepositoryPolicy's "would the new policy lock the caller out" check, through the same seam.
    proposed_repository_policy: str | None = None


def repository_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:ecr:{region}:{account}:repository/{name}"


class Authorizer(Protocol):
    async def authorize(self, principal: Principal, action: str, resource: str, context: Context) -> Decision: ...


class OpenAuthorizer:
    """--auth none: every request acts as the default account's administrator and is allowed."""

    async def authorize(self, principal: Principal, action: str, resource: str, context: Context) -> Decision:
        return Decision(True, "auth disabled")
