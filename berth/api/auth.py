"""Who is calling: request credentials -> Principal.

Control plane: AWS Signature Version 4 against the access key's secret. Registry: the token from
GetAuthorizationToken as HTTP Basic `AWS:<token>`, checked without a database call.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Protocol

from berth.iam import sigv4, tokens
from berth.iam.authz import Principal
from berth.iam.service import IdentityService

GLOBAL_SIGNING_REGION = "us-east-1"  # IAM's and STS's global endpoint sign for it, whatever the deployment
GLOBAL_SERVICES = frozenset({"iam", "sts"})
AUTH_REQUIRED = "authentication required"
TOKEN_EXPIRED = "Your authorization token has expired. Reauthenticate and try again."  # ECR's words
BAD_CREDENTIALS = "authentication required: the registry token is not valid"


class UnknownAccessKey(sigv4.SigV4Error):
    """The access key id is not known or not active (AWS: UnrecognizedClientException)."""


class Authenticator(Protocol):
    def registry_principal(self, authorization: str | None) -> Principal | None:
        """The caller of a /v2 request, or None (answer 401 with a challenge)."""

    def registry_refusal(self, authorization: str | None) -> str:
        """The message of that 401: what was wrong with the credentials (an expired token says so)."""

    async def aws_principal(self, method: str, raw_path: str, query: str, headers: object,
                            body: bytes, *, service: str) -> tuple[Principal, sigv4.SigV4Request | None]:
        """The signer of a control-plane request to the face of `service` (ecr, iam, sts);
        raises sigv4.SigV4Error, also when the credential scope names another service or a region
        this deployment does not serve."""


class _Scope:
    def __init__(self, regions: Collection[str]) -> None:
        self.regions = frozenset(regions)
        self.global_regions = self.regions | {GLOBAL_SIGNING_REGION}

    def check(self, req: sigv4.SigV4Request, service: str) -> None:
        sigv4.check_scope(req, service, self.global_regions if service in GLOBAL_SERVICES else self.regions)


class OpenAuthenticator(_Scope):
    """--auth none: everyone is the default account's administrator (a signed request's scope still
    has to name the face and a served region: the region selects the namespace)."""

    def __init__(self, account: str, regions: Collection[str]) -> None:
        super().__init__(regions)
        self._admin = Principal.account_admin(account)

    def registry_principal(self, authorization: str | None) -> Principal | None:
        return self._admin

    def registry_refusal(self, authorization: str | None) -> str:
        return AUTH_REQUIRED

    async def aws_principal(self, method: str, raw_path: str, query: str, headers: object,
                            body: bytes, *, service: str) -> tuple[Principal, sigv4.SigV4Request | None]:
        try:
            req = sigv4.parse_authorization(method, raw_path, query, headers)  # type: ignore[arg-type]
        except sigv4.SigV4Error:
            return self._admin, None
        self.check(req, service)
        return self._admin, req


class IamAuthenticator(_Scope):
    def __init__(self, identity: IdentityService, regions: Collection[str]) -> None:
        super().__init__(regions)
        self.identity = identity
        self._tokens: dict[str, tuple[Principal, float]] = {}

    def registry_principal(self, authorization: str | None) -> Principal | None:
        if not authorization:
            return None
        if authorization.startswith(tokens.DOWNLOAD_SCHEME + "\n"):  # a download URL: never cached
            try:
                claims = self.identity.verify_download(authorization)
            except tokens.TokenError:
                return None
            return Principal.from_claims(claims.principal_arn, claims.account, claims.extra)
        hit = self._tokens.get(authorization)
        if hit is not None and hit[1] > time.time():
            return hit[0]
        try:
            claims = self.identity.verify_token(tokens.parse_basic_auth(authorization))
        except tokens.TokenError:
            return None
        principal = Principal.from_claims(claims.principal_arn, claims.account, claims.extra)
        if principal is None:
            return None
        if len(self._tokens) > 10_000:
            self._tokens.clear()
        self._tokens[authorization] = (principal, claims.expires_at.timestamp())
        return principal

    def registry_refusal(self, authorization: str | None) -> str:
        if not authorization:
            return AUTH_REQUIRED
        try:
            if authorization.startswith(tokens.DOWNLOAD_SCHEME + "\n"):
                self.identity.verify_download(authorization)
            else:
                self.identity.verify_token(tokens.parse_basic_auth(authorization))
        except tokens.TokenExpired:
            return TOKEN_EXPIRED
        except tokens.TokenError:
            return BAD_CREDENTIALS
        return AUTH_REQUIRED

    async def aws_principal(self, method: str, raw_path: str, query: str, headers: object,
                            body: bytes, *, service: str) -> tuple[Principal, sigv4.SigV4Request | None]:
        req = sigv4.parse_authorization(method, raw_path, query, headers)  # type: ignore[arg-type]
        self.check(req, service)
        if req.access_key_id.startswith("ASIA"):  # temporary credentials: the session token says who
            try:
                principal, secret = self.identity.session_principal(req.access_key_id, req.security_token)
            except tokens.TokenExpired as e:
                raise sigv4.ExpiredToken(str(e)) from None
            except tokens.TokenError:
                raise UnknownAccessKey("The security token included in the request is invalid.") from None
        else:
            found = await self.identity.key_principal(req.access_key_id)
            if found is None:
                raise UnknownAccessKey("The security token included in the request is invalid.")
            principal, secret = found
        sigv4.verify(req, secret, hashlib.sha256(body).hexdigest(), datetime.now(UTC))
        return principal, req


def challenge(realm_host: str, scheme: str = "https") -> Mapping[str, str]:
    return {"WWW-Authenticate": f'Basic realm="{scheme}://{realm_host}/",service="ecr.amazonaws.com"'}
