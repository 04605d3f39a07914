from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from berth.iam.tokens import (
    DEFAULT_TTL,
    TokenClaims,
    TokenExpired,
    TokenInvalid,
    basic_auth_token,
    issue,
    parse_basic_auth,
    verify,
)

ARN = "arn:aws:iam::123456789012:user/alice"
ACCOUNT = "123456789012"
OLD = b"old-secret-0123456789abcdef"
NEW = b"new-secret-0123456789abcdef"
NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_round_trip() -> None:
    token, expires_at = issue(ARN, ACCOUNT, NEW, NOW, key_id="k2")
    assert expires_at == NOW + DEFAULT_TTL == datetime(2026, 11, 27, 22, 0, 0, tzinfo=UTC)
    claims = verify(token, {"k2": NEW}, NOW + timedelta(hours=11, minutes=59))
    assert claims == TokenClaims(ARN, ACCOUNT, NOW, expires_at, "k2")


def test_token_is_compact_and_url_safe() -> None:
    token, _ = issue(ARN, ACCOUNT, NEW, NOW)
    assert token.count(".") == 2 and all(c.isalnum() or c in "._-" for c in token)
    assert len(token) < 300


def test_custom_ttl_and_naive_now() -> None:
    token, expires_at = issue(ARN, ACCOUNT, NEW, NOW.replace(tzinfo=None), ttl=timedelta(minutes=5))
    assert expires_at == NOW + timedelta(minutes=5)
    verify(token, {"k1": NEW}, NOW.replace(tzinfo=None))


def test_expired() -> None:
    token, expires_at = issue(ARN, ACCOUNT, NEW, NOW)
    with pytest.raises(TokenExpired):
        verify(token, {"k1": NEW}, expires_at)
    with pytest.raises(TokenExpired):
        verify(token, {"k1": NEW}, NOW + timedelta(days=3))


def test_altered_payload() -> None:
    token, _ = issue(ARN, ACCOUNT, NEW, NOW)
    kid, payload, mac = token.split(".")
    claims = json.loads(_unb64(payload))
    claims["sub"] = "arn:aws:iam::123456789012:user/mallory"
    with pytest.raises(TokenInvalid, match="signature"):
        verify(f"{kid}.{_b64(json.dumps(claims).encode())}.{mac}", {"k1": NEW}, NOW)
    claims = json.loads(_unb64(payload))
    claims["exp"] += 86400
    with pytest.raises(TokenInvalid):
        verify(f"{kid}.{_b64(json.dumps(claims).encode())}.{mac}", {"k1": NEW}, NOW)


def test_altered_mac() -> None:
    token, _ = issue(ARN, ACCOUNT, NEW, NOW)
    kid, payload, mac = token.split(".")
    flipped = bytearray(_unb64(mac))
    flipped[0] ^= 1
    with pytest.raises(TokenInvalid):
        verify(f"{kid}.{payload}.{_b64(bytes(flipped))}", {"k1": NEW}, NOW)
    with pytest.raises(TokenInvalid):
        verify(f"{kid}.{payload}.{mac[:-2]}", {"k1": NEW}, NOW)


def test_key_id_cannot_be_swapped() -> None:
    token, _ = issue(ARN, ACCOUNT, NEW, NOW, key_id="a")
    _, payload, mac = token.split(".")
    with pytest.raises(TokenInvalid):
        verify(f"b.{payload}.{mac}", {"a": NEW, "b": NEW}, NOW)


def test_wrong_key() -> None:
    token, _ = issue(ARN, ACCOUNT, NEW, NOW)
    with pytest.raises(TokenInvalid, match="signature"):
        verify(token, {"k1": OLD}, NOW)
    with pytest.raises(TokenInvalid, match="unknown key"):
        verify(token, {"k9": NEW}, NOW)


def test_rotation() -> None:
    old_token, _ = issue(ARN, ACCOUNT, OLD, NOW, key_id="2026-10")
    new_token, _ = issue(ARN, ACCOUNT, NEW, NOW, key_id="2026-11")
    during = {"2026-10": OLD, "2026-11": NEW}
    assert verify(old_token, during, NOW).key_id == "2026-10"
    assert verify(new_token, during, NOW).key_id == "2026-11"
    after = {"2026-11": NEW}
    with pytest.raises(TokenInvalid):
        verify(old_token, after, NOW)
    assert verify(new_token, after, NOW).principal_arn == ARN


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c.d", "k1..x", "k1.é.x", "k1.a b.c", "k1.a.b=", "k1." + "A" * 5000 + ".x"],
)
def test_malformed(token: str) -> None:
    with pytest.raises(TokenInvalid):
        verify(token, {"k1": NEW}, NOW)


def test_validly_signed_but_malformed_claims_are_invalid() -> None:
    from berth.iam import tokens

    for claims in (
        b"not json",
        b"[]",
        b'{"sub": "x"}',
        b'{"sub": 1, "acct": "a", "iat": 1, "exp": 9999999999}',
        b'{"sub": "x", "acct": "a", "iat": 1, "exp": "9999999999"}',
    ):
        payload = _b64(claims)
        mac = _b64(tokens._mac(NEW, f"k1.{payload}"))
        with pytest.raises(TokenInvalid, match="malformed"):
            verify(f"k1.{payload}.{mac}", {"k1": NEW}, NOW)


def test_issue_refuses_weak_inputs() -> None:
    with pytest.raises(ValueError):
        issue(ARN, ACCOUNT, b"short", NOW)
    with pytest.raises(ValueError):
        issue(ARN, ACCOUNT, NEW, NOW, key_id="has.dot")
    with pytest.raises(ValueError):
        issue(ARN, ACCOUNT, NEW, NOW, ttl=timedelta(0))


def test_basic_auth_round_trip() -> None:
    token, _ = issue(ARN, ACCOUNT, NEW, NOW)
    field = basic_auth_token(token)
    assert base64.b64decode(field).decode() == f"AWS:{token}"
    # docker sends back exactly base64(user:password), the same string
    assert parse_basic_auth(f"Basic {field}") == token
    assert parse_basic_auth(f"basic   {field} ") == token
    verify(parse_basic_auth(f"Basic {field}"), {"k1": NEW}, NOW)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer abc",
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"alice:token").decode(),
        "Basic " + base64.b64encode(b"aws:token").decode(),
        "Basic " + base64.b64encode(b"AWS").decode(),
        "Basic " + base64.b64encode(b"AWS:").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
    ],
)
def test_parse_basic_auth_rejects(header: str) -> None:
    with pytest.raises(TokenInvalid):
        parse_basic_auth(header)


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def test_only_the_canonical_spelling_is_accepted() -> None:
    """Changing a part's last character within its unused bits decodes to the same bytes: refused."""
    for n in range(40):  # enough tokens that both parts end with unused bits in some of them
        token, _ = issue(f"{ARN}{n}", ACCOUNT, NEW, NOW)
        parts = token.split(".")
        for i in (1, 2):
            part = parts[i]
            unused = {2: 4, 3: 2}.get(len(part) % 4, 0)
            for bits in range(1, 1 << unused):
                twin = part[:-1] + _ALPHABET[_ALPHABET.index(part[-1]) ^ bits]
                assert _unb64(twin) == _unb64(part)
                with pytest.raises(TokenInvalid):
                    verify(".".join([*parts[:i], twin, *parts[i + 1:]]), {"k1": NEW}, NOW)
        verify(token, {"k1": NEW}, NOW)


def test_basic_credentials_have_one_spelling() -> None:
    token, _ = issue(ARN, ACCOUNT, NEW, NOW)
    encoded = basic_auth_token(token)
    assert parse_basic_auth(f"Basic {encoded}") == token
    std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    stripped = encoded.rstrip("=")
    for bits in range(1, 1 << {2: 4, 3: 2}.get(len(stripped) % 4, 0)):
        twin = stripped[:-1] + std[std.index(stripped[-1]) ^ bits] + encoded[len(stripped):]
        with pytest.raises(TokenInvalid):
            parse_basic_auth(f"Basic {twin}")


def test_the_user_id_travels_in_the_token() -> None:
    token, _ = issue(ARN, ACCOUNT, NEW, NOW, extra={"uid": "AIDAEXAMPLEUSERID0001"})
    assert verify(token, {"k1": NEW}, NOW).user_id == "AIDAEXAMPLEUSERID0001"
    assert verify(issue(ARN, ACCOUNT, NEW, NOW)[0], {"k1": NEW}, NOW).user_id is None


def test_download_url_is_bound_to_host_path_principal_and_expiry() -> None:
    from berth.iam.tokens import download_credentials, sign_download, verify_download

    host, path = "123456789012.dkr.ecr.us-east-1.localhost:5000", "/v2/app/blobs/sha256:" + "a" * 64
    query = sign_download(NEW, "k1", host, path, ARN, {"uid": "AIDAX"}, NOW + timedelta(hours=1))
    creds = download_credentials(host, path, query)
    assert creds is not None
    claims = verify_download(creds, {"k1": NEW}, NOW)
    assert (claims.principal_arn, claims.account, claims.user_id) == (ARN, ACCOUNT, "AIDAX")
    assert verify_download(download_credentials(host.upper(), path, query) or "", {"k1": NEW}, NOW)
    for h, p, q in ((host.replace("5000", "5001"), path, query), (host, path.replace("a", "b"), query),
                    (host, "/v2/other/blobs/sha256:" + "a" * 64, query),
                    (host, path, query.replace("X-Berth-Expires=", "X-Berth-Expires=1")),
                    (host, path, query + "&X-Berth-Key=k1"),
                    (host, path, query.replace("user%2Falice", "user%2Fbob")),
                    (host, path, query.replace("X-Berth-Claims=", "X-Berth-Claims=e30&x="))):
        with pytest.raises(TokenInvalid):
            verify_download(download_credentials(h, p, q) or "", {"k1": NEW}, NOW)
    with pytest.raises(TokenExpired):
        verify_download(creds, {"k1": NEW}, NOW + timedelta(hours=1))
    with pytest.raises(TokenInvalid):
        verify_download(creds, {"k2": NEW}, NOW)
    assert download_credentials(host, path, "X-Berth-Token=x") is None


def test_a_token_names_a_known_kind_of_principal_or_none() -> None:
    from berth.iam.authz import Principal

    assert Principal.from_claims(f"arn:aws:iam::{ACCOUNT}:root", ACCOUNT, {}) == Principal.account_admin(ACCOUNT)
    user = Principal.from_claims(f"arn:aws:iam::{ACCOUNT}:user/ci/bob", ACCOUNT, {"uid": "AIDAX"})
    assert user is not None and (user.user, user.path, user.user_id) == ("bob", "/ci/", "AIDAX")
    session = Principal.from_claims(f"arn:aws:sts::{ACCOUNT}:assumed-role/deploy/run-1", ACCOUNT,
                                    {"rid": "AROAX", "rpath": "/ecs/", "pol": "{}"})
    assert session is not None and (session.role, session.session, session.role_path, session.role_id,
                                    session.session_policy, session.user) == ("deploy", "run-1", "/ecs/", "AROAX",
                                                                              "{}", None)
    assert Principal.from_claims(session.arn, ACCOUNT, session.claims()) == session
    for arn in (f"arn:aws:iam::{ACCOUNT}:role/deploy", "arn:aws:iam::111122223333:root", "anything",
                f"arn:aws:sts::{ACCOUNT}:assumed-role/deploy/run-1"):  # the last: no role id
        assert Principal.from_claims(arn, ACCOUNT, {}) is None
