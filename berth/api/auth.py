"""Who is calling: request credentials -> Principal.

Control plane: AWS Signature Version 4 against the access key's secret. Registry: the token from
GetAuthorizationToken as HTTP Basic `AWS:<token>`, checked without a database call.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol

from berth.iam import sigv4, tokens
from berth.iam.authz import Principal
from berth.iam.service import IdentityService


class UnknownAccessKey(sigv4.SigV4Error):
    """The access key id is not known or not active (AWS: UnrecognizedClientException)."""


class Authenticator(Protocol):
    def registry_principal(self, authorization: str | None) -> Principal | None:
        """The caller of a /v2 request, or None (answer 401 with a challenge)."""

    async def aws_principal(self, method: str, raw_path: str, query: str, headers: object,
                            body: bytes) -> tuple[Principal, sigv4.SigV4Request | None]:
        """The signer of a control-plane request; raises sigv4.SigV4Error."""


class OpenAuthenticator:
    """--auth none: everyone is the default account's administrator."""

    def __init__(self, account: str) -> None:
        self._admin = Principal.account_admin(account)

    def registry_principal(self, authorization: str | None) -> Principal | None:
        return self._admin

    async def aws_principal(self, method: str, raw_path: str, query: str, headers: object,
                            body: bytes) -> tuple[Principal, sigv4.SigV4Request | None]:
        try:
            return self._admin, sigv4.parse_authorization(method, raw_path, query, headers)  # type: ignore[arg-type]
        except sigv4.SigV4Error:
            return self._admin, None


def principal_from_arn(arn: str, account: str) -> Principal:
    user = arn.split(":user/", 1)[1].rsplit("/", 1)[-1] if ":user/" in arn else None
    return Principal(account=account, arn=arn, user=user)


class IamAuthenticator:
    def __init__(self, identity: IdentityService) -> None:
        self.identity = identity
        self._tokens: dict[str, tuple[Principal, float]] = {}

    def registry_principal(self, authorization: str | None) -> Principal | None:
        if not authorization:
            return None
        hit = self._tokens.get(authorization)
        if hit is not None and hit[1] > time.time():
            return hit[0]
        try:
            claims = self.identity.verify_token(tokens.parse_basic_auth(authorization))
        except tokens.TokenError:
            return None
        principal = principal_from_arn(claims.principal_arn, claims.account)
        if len(self._tokens) > 10_000:
            self._tokens.clear()
        self._tokens[authorization] = (principal, claims.expires_at.timestamp())
        return principal

    async def aws_principal(self, method: str, raw_path: str, query: str, headers: object,
                            body: bytes) -> tuple[Principal, sigv4.SigV4Request | None]:
        req = sigv4.parse_authorization(method, raw_path, query, headers)  # type: ignore[arg-type]
        key = await self.identity.active_key(req.access_key_id)
        if key is None:
            raise UnknownAccessKey("The security token included in the request is invalid.")
        sigv4.verify(req, key.secret, hashlib.sha256(body).hexdigest(), datetime.now(UTC))
        return Principal.iam_user(key.account_id, key.user_name, key.id), req


def challenge(realm_host: str, scheme: str = "https") -> Mapping[str, str]:
    return {"WWW-Authenticate": f'Basic realm="{scheme}://{realm_host}/",service="ecr.amazonaws.com"'}
