"""The one authorization seam: (principal, action, resource ARN, context) -> allow or deny.

Every request on every face carries a Principal and is authorized through `Authorizer.authorize`.
`--auth none` wires `OpenAuthorizer`; `--auth iam` (control-plane issue) wires policy evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from berth.iam.policy import Decision


def principal_arn(account: str, user: str | None = None, path: str = "/") -> str:
    """THE ARN of a principal, as IAM, STS (GetCallerIdentity), tokens and the authorizer all name it:
    `arn:aws:iam::<account>:root` for the account, `arn:aws:iam::<account>:user<path><name>` for a user."""
    if user is None:
        return f"arn:aws:iam::{account}:root"
    return f"arn:aws:iam::{account}:user{path}{user}"


@dataclass(frozen=True, slots=True)
class Principal:
    account: str
    arn: str
    user: str | None = None  # the IAM user name; None for the account root
    access_key_id: str | None = None
    user_id: str | None = None  # IAM's unique id (AIDA…): a user made again under the same name is another

    @classmethod
    def account_admin(cls, account: str) -> Principal:
        return cls(account=account, arn=principal_arn(account))

    @classmethod
    def iam_user(cls, account: str, user: str, access_key_id: str | None = None, path: str = "/",
                 user_id: str | None = None) -> Principal:
        return cls(account=account, arn=principal_arn(account, user, path), user=user,
                   access_key_id=access_key_id, user_id=user_id)

    @property
    def path(self) -> str:
        """The user's IAM path ("/ci/team/"), read back from the ARN."""
        if self.user is None:
            return "/"
        rest = self.arn.split(":user", 1)[1] if ":user/" in self.arn else "/"
        return rest[: len(rest) - len(self.user)] or "/"


@dataclass(frozen=True, slots=True)
class Context:
    source_ip: str = ""
    secure_transport: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)


def repository_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:ecr:{region}:{account}:repository/{name}"


class Authorizer(Protocol):
    async def authorize(self, principal: Principal, action: str, resource: str, context: Context) -> Decision: ...


class OpenAuthorizer:
    """--auth none: every request acts as the default account's administrator and is allowed."""

    async def authorize(self, principal: Principal, action: str, resource: str, context: Context) -> Decision:
        return Decision(True, "auth disabled")
