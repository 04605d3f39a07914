"""The one authorization seam: (principal, action, resource ARN, context) -> allow or deny.

Every request on every face carries a Principal and is authorized through `Authorizer.authorize`.
`--auth none` wires `OpenAuthorizer`; `--auth iam` (control-plane issue) wires policy evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from berth.iam.policy import Decision


def principal_arn(account: str, user: str | None = None, path: str = "/") -> str:
    """THE ARN of a principal, as IAM, STS (GetCallerIdentity), tokens and the authorizer all name it:
    `arn:aws:iam::<account>:root` for the account, `arn:aws:iam::<account>:user<path><name>` for a user."""
    if user is None:
        return f"arn:aws:iam::{account}:root"
    return f"arn:aws:iam::{account}:user{path}{user}"


def role_arn(account: str, role: str, path: str = "/") -> str:
    return f"arn:aws:iam::{account}:role{path}{role}"


def assumed_role_arn(account: str, role: str, session: str) -> str:
    return f"arn:aws:sts::{account}:assumed-role/{role}/{session}"


@dataclass(frozen=True, slots=True)
class Principal:
    account: str
    arn: str
    user: str | None = None  # the IAM user name; None for the account root
    access_key_id: str | None = None
    user_id: str | None = None  # IAM's unique id (AIDA…): a user made again under the same name is another
    role: str | None = None  # an assumed-role session: the role's name, path and unique id, the session name
    role_path: str = "/"
    role_id: str | None = None
    session: str | None = None
    session_policy: str | None = None  # the session policy that narrows the role, as sent to AssumeRole
    expires_at: float | None = None  # temporary credentials: when they end (a registry token ends no later)
    session_tags: tuple[tuple[str, str], ...] = ()  # AssumeRole's Tags: aws:PrincipalTag/<key>

    @property
    def kind(self) -> str:
        """aws:PrincipalType: "Account" (root), "User" or "AssumedRole"."""
        return "AssumedRole" if self.role else "User" if self.user else "Account"

    @property
    def base_arn(self) -> str:
        """The ARN aws:PrincipalArn names: the role's own for a role session, else the principal's."""
        return role_arn(self.account, self.role, self.role_path) if self.role else self.arn

    @classmethod
    def account_admin(cls, account: str) -> Principal:
        return cls(account=account, arn=principal_arn(account))

    @classmethod
    def iam_user(cls, account: str, user: str, access_key_id: str | None = None, path: str = "/",
                 user_id: str | None = None) -> Principal:
        return cls(account=account, arn=principal_arn(account, user, path), user=user,
                   access_key_id=access_key_id, user_id=user_id)

    def claims(self) -> dict[str, str]:
        """What a token must carry besides the ARN to stand for this principal again (from_claims)."""
        if self.role:
            out = {"rid": self.role_id or "", "rpath": self.role_path}
            if self.session_policy:
                out["pol"] = self.session_policy
            if self.session_tags:
                out["tags"] = json.dumps(dict(self.session_tags), separators=(",", ":"), sort_keys=True)
            return out
        return {"uid": self.user_id} if self.user_id else {}

    @classmethod
    def from_claims(cls, arn: str, account: str, claims: Mapping[str, str]) -> Principal | None:
        """The principal a token names; None for an ARN that names no principal Berth knows."""
        prefix = f"arn:aws:iam::{account}:"
        if arn == prefix + "root":
            return cls.account_admin(account)
        if arn.startswith(prefix + "user/"):
            return cls(account=account, arn=arn, user=arn.rsplit("/", 1)[-1], user_id=claims.get("uid"))
        session_prefix = f"arn:aws:sts::{account}:assumed-role/"
        if arn.startswith(session_prefix) and arn.count("/") == 2 and claims.get("rid"):
            role, session = arn[len(session_prefix):].split("/")
            tags = json.loads(claims["tags"]) if "tags" in claims else {}
            return cls(account=account, arn=arn, role=role, role_path=claims.get("rpath", "/"),
                       role_id=claims["rid"], session=session, session_policy=claims.get("pol"),
                       session_tags=tuple(sorted(tags.items())))
        return None

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
    extra: Mapping[str, str | list[str]] = field(default_factory=dict)
    # Decide as if this repository policy text were stored in place of the repository's own:
    # SetRepositoryPolicy's "would the new policy lock the caller out" check, through the same seam.
    proposed_repository_policy: str | None = None


ECR_SERVICE = "ecr.amazonaws.com"


def called_via(context: Context, service: str = ECR_SERVICE) -> Context:
    """The context of a call Berth makes itself on behalf of the request's principal (a repository made
    for a push, an image imported for a pull-through cache miss): aws:CalledVia names the service, as AWS
    names a service that acts with the caller's credentials, with aws:CalledViaFirst/Last and
    aws:ViaAWSService true. One service deep: Berth's own calls never chain."""
    return replace(context, extra={**context.extra, "aws:CalledVia": [service], "aws:CalledViaFirst": service,
                                   "aws:CalledViaLast": service, "aws:ViaAWSService": "true"})


def request_tag_context(params: Mapping[str, object]) -> dict[str, str | list[str]]:
    """aws:RequestTag/<key> and aws:TagKeys of an ECR request that carries tags (CreateRepository,
    TagResource: `tags`; UntagResource: `tagKeys`), as ECR's condition keys document them."""
    out: dict[str, str | list[str]] = {}
    tags = params.get("tags")
    keys: list[str] = []
    if isinstance(tags, list):
        for tag in tags:
            if isinstance(tag, Mapping) and isinstance(tag.get("Key"), str):
                out[f"aws:RequestTag/{tag['Key']}"] = str(tag.get("Value", ""))
                keys.append(tag["Key"])
    tag_keys = params.get("tagKeys")
    if isinstance(tag_keys, list):
        keys += [k for k in tag_keys if isinstance(k, str)]
    if keys:
        out["aws:TagKeys"] = keys
    return out


def repository_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:ecr:{region}:{account}:repository/{name}"


class Authorizer(Protocol):
    async def authorize(self, principal: Principal, action: str, resource: str, context: Context) -> Decision: ...

    async def authorize_trust(self, principal: Principal, action: str, role: str, trust_policy: str,
                              context: Context, extra: Mapping[str, str]) -> Decision:
        """May `principal` assume the role `role` (its ARN) whose trust policy is `trust_policy`?"""


class OpenAuthorizer:
    """--auth none: every request acts as the default account's administrator and is allowed."""

    async def authorize(self, principal: Principal, action: str, resource: str, context: Context) -> Decision:
        return Decision(True, "auth disabled")

    async def authorize_trust(self, principal: Principal, action: str, role: str, trust_policy: str,
                              context: Context, extra: Mapping[str, str]) -> Decision:
        return Decision(True, "auth disabled")
