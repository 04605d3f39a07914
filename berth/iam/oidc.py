"""Web identity: verify an OpenID Connect JWT (a CI system's token) against its issuer's keys.

The keys come from a JWKS file (BERTH_OIDC_JWKS_DIR, for air-gapped sites), else from the issuer's
discovery document and JWKS (`<issuer>/.well-known/openid-configuration`
-> `jwks_uri`), fetched on first use and kept for ten minutes (a key id the cache does not know
refetches once, so a rotation is picked up). The signature, issuer, audience (one of the provider's
client ids) and expiry are checked by PyJWT; the trust policy then decides on `<provider>:sub` and
`<provider>:aud`.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from berth.iam.errors import ExpiredWebIdentityToken, IdpCommunicationError, InvalidIdentityToken

if TYPE_CHECKING:
    import jwt


def _jwt() -> Any:
    """PyJWT (and cryptography, ~10 MiB), loaded on the first web-identity call, not by every process."""
    import jwt

    return jwt


ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256"]
KEYS_TTL = 600.0
FETCH_TIMEOUT = 5.0
MAX_DOCUMENT = 1 << 20

Fetch = Callable[[str], Awaitable[dict[str, Any]]]


def provider_url(issuer: str) -> str:
    """IAM's name for a provider: the issuer URL without its scheme or a trailing slash."""
    return issuer.split("://", 1)[-1].rstrip("/")


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response:  # noqa: S310 - the issuer's URL
        data = json.loads(response.read(MAX_DOCUMENT))
    if not isinstance(data, dict):
        raise ValueError(f"{url} did not answer a JSON object")
    return data


async def fetch_json(url: str) -> dict[str, Any]:
    return await asyncio.to_thread(_get_json, url)


def jwks_file_name(issuer: str) -> str:
    """The file an air-gapped site puts an issuer's JWKS in: its provider URL, '/' -> '_', + .json."""
    return provider_url(issuer).replace("/", "_").replace(":", "_") + ".json"


class IssuerKeys:
    def __init__(self, fetch: Fetch = fetch_json, clock: Callable[[], float] = time.monotonic,
                 jwks_dir: Path | None = None) -> None:
        self.fetch = fetch
        self.clock = clock
        self.jwks_dir = jwks_dir  # BERTH_OIDC_JWKS_DIR: keys from files, for issuers Berth cannot reach
        self._keys: dict[str, tuple[float, jwt.PyJWKSet]] = {}

    async def _load(self, issuer: str) -> jwt.PyJWKSet:
        if self.jwks_dir is not None and (self.jwks_dir / jwks_file_name(issuer)).is_file():
            path = self.jwks_dir / jwks_file_name(issuer)
            try:
                keys = _jwt().PyJWKSet.from_dict(json.loads(path.read_text()))
            except (OSError, ValueError, _jwt().PyJWTError) as e:
                raise IdpCommunicationError(f"The JWKS file {path.name} for {issuer} is not usable: {e}") from None
            self._keys[issuer] = (self.clock() + KEYS_TTL, keys)
            return keys
        try:
            discovery = await self.fetch(issuer.rstrip("/") + "/.well-known/openid-configuration")
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise ValueError("the discovery document names no jwks_uri")
            keys = _jwt().PyJWKSet.from_dict(await self.fetch(jwks_uri))
        except (OSError, ValueError, _jwt().PyJWTError) as e:
            raise IdpCommunicationError(f"Couldn't retrieve verification key from your identity provider, "
                                        f"please reference AssumeRoleWithWebIdentity documentation for requirements "
                                        f"({e})") from None
        self._keys[issuer] = (self.clock() + KEYS_TTL, keys)
        return keys

    async def key(self, issuer: str, key_id: str | None) -> Any:
        cached = self._keys.get(issuer)
        keys = cached[1] if cached and cached[0] > self.clock() else await self._load(issuer)
        for attempt in (0, 1):
            for k in keys.keys:
                if key_id is None or k.key_id == key_id:
                    return k.key
            if attempt == 0 and cached is not None:
                keys = await self._load(issuer)  # an unknown key id: the issuer may have rotated
        raise InvalidIdentityToken("The web identity token's key id is not among the issuer's keys")

    async def verify(self, token: str, issuer: str, audiences: list[str]) -> dict[str, Any]:
        """The token's claims once its signature, issuer, audience and expiry check out."""
        try:
            header = _jwt().get_unverified_header(token)
        except _jwt().PyJWTError:
            raise InvalidIdentityToken("The web identity token is not a JWT") from None
        key = await self.key(issuer, header.get("kid"))
        try:
            return dict(_jwt().decode(token, key, algorithms=ALGORITHMS, audience=audiences, issuer=issuer,
                                   options={"require": ["exp", "iss", "sub", "aud"]}))
        except _jwt().ExpiredSignatureError:
            raise ExpiredWebIdentityToken("Token expired: current date/time must be before the expiration "
                                          "date/time") from None
        except _jwt().InvalidAudienceError:
            raise InvalidIdentityToken("Incorrect token audience") from None
        except _jwt().InvalidIssuerError:
            raise InvalidIdentityToken("Issuer not accepted") from None
        except _jwt().PyJWTError as e:
            raise InvalidIdentityToken(f"The web identity token is not valid: {e}") from None


def unverified_issuer(token: str) -> str:
    try:
        claims = _jwt().decode(token, options={"verify_signature": False})
    except _jwt().PyJWTError:
        raise InvalidIdentityToken("The web identity token is not a JWT") from None
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise InvalidIdentityToken("The web identity token names no issuer")
    return issuer
