"""Who is calling: request credentials -> Principal. `--auth none` trusts everyone as the admin."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from berth.iam.authz import Principal


class Authenticator(Protocol):
    def registry_principal(self, authorization: str | None) -> Principal | None:
        """The caller of a /v2 request, or None (answer 401 with a challenge)."""


class OpenAuthenticator:
    def __init__(self, account: str) -> None:
        self._admin = Principal.account_admin(account)

    def registry_principal(self, authorization: str | None) -> Principal | None:
        return self._admin


def challenge(realm_host: str) -> Mapping[str, str]:
    return {"WWW-Authenticate": f'Basic realm="{realm_host}"'}
