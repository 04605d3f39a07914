"""Identities: accounts, users, access keys, inline policies, registry tokens.

Lookups on the request path (a key's secret, a user's parsed policies, token keys) are cached
in-process and dropped whenever any writer commits (db.version()), or after a second where the
backend cannot tell (PostgreSQL).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import string
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from berth.db import iam as q
from berth.db import sealed as qs
from berth.db.iam import KeyRow, UserOutcome, UserRow
from berth.db.store import Backend
from berth.iam import sessions, tokens
from berth.iam.authz import Principal
from berth.iam.entities import IamEntities
from berth.iam.errors import (
    DeleteConflict,
    EntityAlreadyExists,
    InvalidInput,
    LimitExceeded,
    MalformedPolicyDocument,
    NoSuchEntity,
)
from berth.iam.model import AccessKey, Role, User
from berth.iam.oidc import IssuerKeys
from berth.iam.policy import Policy, parse_policy
from berth.iam.sessions import SessionClaims
from berth.keys import SEALED, MasterKey

ADMIN_USER = "admin"
ADMIN_POLICY_NAME = "AdministratorAccess"
ADMIN_POLICY = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'
MAX_KEYS_PER_USER = 2  # as in IAM
_USER_NAME = re.compile(r"[\w+=,.@-]{1,64}")
_ACCOUNT = re.compile(r"\d{12}")
_KEY_ID = re.compile(r"[A-Z0-9]{16,128}")


def _new_key_id() -> str:
    return "AKIA" + "".join(secrets.choice(string.ascii_uppercase + "234567") for _ in range(16))


def _new_secret() -> str:
    return secrets.token_urlsafe(30)[:40]


TOKEN_KEYS_REFRESH = 5.0  # seconds: how often a node re-reads the token keys (a rotation elsewhere)
TOKEN_KEY_RETIRE_HOURS = 192  # a superseded token key still verifies this long: longer than any token,
# session (36 h) or upload id (upload_max_age_hours, 168 by default) it signed


def _key_context(key_id: str) -> str:
    return f"access_keys:{key_id}"


def _signing_context(key_id: str) -> str:
    return f"signing_keys:{key_id}"


class IdentityService:
    def __init__(self, db: Backend, clock: Callable[[], float] = time.time, jwks_dir: Path | None = None,
                 keys: MasterKey | None = None) -> None:
        self.db = db
        self.keys = keys if keys is not None else MasterKey.ephemeral()  # seals secrets at rest
        self._token_keys_loaded = 0.0
        self._reload: asyncio.Task[None] | None = None
        self.clock = clock
        self._version: int | None = None
        self._checked = 0.0
        self._keys: dict[str, AccessKey | None] = {}
        self._policies: dict[tuple[str, str], tuple[Policy, ...]] = {}
        self._users: dict[tuple[str, str], UserRow | None] = {}
        self._token_keys: dict[str, bytes] = {}
        self.entities = IamEntities(db, clock)
        self.issuer_keys = IssuerKeys(jwks_dir=jwks_dir)
        self._roles: dict[tuple[str, str], Role | None] = {}

    def _fresh(self) -> None:
        v = self.db.version()
        now = time.monotonic()
        if v is None:
            if now - self._checked < 1.0:
                return
            self._checked = now
        elif v == self._version:
            return
        self._version = v
        self._keys.clear()
        self._policies.clear()
        self._users.clear()
        self._roles.clear()

    # bootstrap

    async def bootstrap(self, account: str, key_id: str | None = None,
                        secret: str | None = None) -> tuple[str, str] | None:
        """Make sure `account` exists with an administrator. Returns the credentials it created, if any."""
        if not _ACCOUNT.fullmatch(account):
            raise InvalidInput(f"account id must be 12 digits: {account!r}")
        await self.db.write(q.ensure_account, account, self.clock())
        if await self.db.read(q.get_user, account, ADMIN_USER) is None:
            await self.create_user(account, ADMIN_USER)
            await self.put_user_policy(account, ADMIN_USER, ADMIN_POLICY_NAME, ADMIN_POLICY)
        if key_id:
            existing = await self.db.read(q.get_access_key, key_id)
            if existing is not None:
                if existing.account_id != account:
                    raise EntityAlreadyExists(f"access key {key_id} belongs to another account")
                return None
        elif await self.db.read(q.list_access_keys, account, ADMIN_USER):
            return None
        key = await self.create_access_key(account, ADMIN_USER, key_id, secret)
        return key.id, key.secret

    async def ensure_account(self, account: str) -> None:
        await self.db.write(q.ensure_account, account, self.clock())

    async def ensure_signing_key(self) -> None:
        if not await self.db.read(q.signing_keys):
            # A fixed first id: nodes starting together on an empty store all keep the one that won.
            await self.db.write(q.add_signing_key, "k1", self.keys.seal(secrets.token_hex(32), _signing_context("k1")),
                                self.clock())
        await self._load_token_keys()

    async def _load_token_keys(self) -> None:
        rows = await self.db.read(q.signing_keys)
        self._token_keys = {k: bytes.fromhex(self.keys.open(v, _signing_context(k))) for k, v in rows.items()}
        self._token_keys_loaded = time.monotonic()

    async def refresh_token_keys(self) -> None:
        """Re-read the token keys when they were read more than a few seconds ago (a rotation elsewhere)."""
        if time.monotonic() - self._token_keys_loaded > TOKEN_KEYS_REFRESH:
            await self._load_token_keys()

    async def rotate_token_key(self, retire_hours: float = TOKEN_KEY_RETIRE_HOURS) -> tuple[str, list[str]]:
        """A new token key that signs from now on; the old ones keep verifying what they signed until
        `retire_hours` after they were superseded, then go. Returns (new id, ids removed)."""
        now = self.clock()
        key_id = f"k{int(now * 1000):x}{secrets.token_hex(2)}"
        await self.db.write(q.add_signing_key, key_id, self.keys.seal(secrets.token_hex(32), _signing_context(key_id)),
                            now)
        removed = await self.db.write(q.retire_signing_keys, now - retire_hours * 3600)
        await self._load_token_keys()
        return key_id, removed

    async def seal_plaintext(self) -> int:
        """Seal every sealed column's values still in plain text (rows written by an older Berth)."""
        n = 0
        for col in SEALED:
            values = await self.db.read(qs.values, col.table, col.id_column, col.value_column)
            if all(v.startswith("enc1:") for _, v in values):
                continue  # the usual start: nothing to lock or write
            def change(row_id: str, value: str, col: Any = col) -> str | None:
                return None if value.startswith("enc1:") else self.keys.seal(value, col.context(row_id))
            n += await self.db.write(qs.rewrite, col.table, col.id_column, col.value_column, change)
        return n

    # users

    async def create_user(self, account: str, name: str, path: str = "/",
                          tags: tuple[tuple[str, str], ...] = ()) -> User:
        if not _USER_NAME.fullmatch(name):
            raise InvalidInput(f"invalid user name {name!r}")
        user_id = "AIDA" + "".join(secrets.choice(string.ascii_uppercase + "234567") for _ in range(17))
        row = await self.db.write(q.create_user, account, name, user_id, path, self.clock(), tags)
        if row is None:
            raise EntityAlreadyExists(f"User with name {name} already exists.")
        return User.from_row(row)

    async def get_user(self, account: str, name: str) -> User:
        row = await self.db.read(q.get_user, account, name)
        if row is None:
            raise NoSuchEntity(f"The user with name {name} cannot be found.")
        return User.from_row(row)

    async def list_users(self, account: str, after: str = "", limit: int = 100) -> list[User]:
        return [User.from_row(r) for r in await self.db.read(q.list_users, account, after, limit)]

    async def delete_user(self, account: str, name: str) -> None:
        result = await self.db.write(q.delete_user, account, name)
        if result is UserOutcome.NO_USER:
            raise NoSuchEntity(f"The user with name {name} cannot be found.")
        if result is UserOutcome.CONFLICT:
            raise DeleteConflict("Cannot delete entity, must delete access keys and policies first.")
        if result is UserOutcome.TIED:  # as IAM: leave its groups, detach its policies first
            raise DeleteConflict("Cannot delete entity, must remove from groups and detach policies first.")

    # access keys

    async def create_access_key(self, account: str, user: str, key_id: str | None = None,
                                secret: str | None = None) -> AccessKey:
        await self.get_user(account, user)
        if len(await self.db.read(q.list_access_keys, account, user)) >= MAX_KEYS_PER_USER:
            raise LimitExceeded(f"Cannot exceed quota for AccessKeysPerUser: {MAX_KEYS_PER_USER}")
        if key_id is not None and not _KEY_ID.fullmatch(key_id):
            raise InvalidInput("access key id must be 16-128 upper-case letters or digits")
        key_id = key_id or _new_key_id()
        plain = secret or _new_secret()
        key = KeyRow(key_id, account, user, self.keys.seal(plain, _key_context(key_id)), "Active", self.clock())
        if await self.db.read(q.get_access_key, key.id) is not None:
            raise EntityAlreadyExists(f"access key {key.id} already exists")
        # The user's existence, the key limit and the id are checked again where the key is written.
        outcome = await self.db.write(q.create_access_key, key, MAX_KEYS_PER_USER)
        if outcome is UserOutcome.NO_USER:
            raise NoSuchEntity(f"The user with name {user} cannot be found.")
        if outcome is UserOutcome.LIMIT:
            raise LimitExceeded(f"Cannot exceed quota for AccessKeysPerUser: {MAX_KEYS_PER_USER}")
        if outcome is UserOutcome.KEY_EXISTS:
            raise EntityAlreadyExists(f"access key {key.id} already exists")
        return AccessKey(key.id, key.account_id, key.user_name, plain, key.status, key.created_at)

    async def list_access_keys(self, account: str, user: str) -> list[AccessKey]:
        await self.get_user(account, user)
        # without the secret: IAM shows it only once, from CreateAccessKey
        return [AccessKey(k.id, k.account_id, k.user_name, "", k.status, k.created_at)
                for k in await self.db.read(q.list_access_keys, account, user)]

    async def update_access_key(self, account: str, user: str, key_id: str, status: str) -> None:
        if status not in ("Active", "Inactive"):
            raise InvalidInput("Status must be Active or Inactive")
        if not await self.db.write(q.update_access_key, account, user, key_id, status):
            raise NoSuchEntity(f"The Access Key with id {key_id} cannot be found.")

    async def delete_access_key(self, account: str, user: str, key_id: str) -> None:
        if not await self.db.write(q.delete_access_key, account, user, key_id):
            raise NoSuchEntity(f"The Access Key with id {key_id} cannot be found.")

    async def active_key(self, key_id: str) -> AccessKey | None:
        """The key if it exists and is active: the request path's lookup, cached."""
        self._fresh()
        if key_id in self._keys:
            key = self._keys[key_id]
        else:
            row = await self.db.read(q.get_access_key, key_id)
            key = None if row is None else AccessKey(row.id, row.account_id, row.user_name,
                                                     self.keys.open(row.secret, _key_context(row.id)),
                                                     row.status, row.created_at)
            if len(self._keys) < 100_000:
                self._keys[key_id] = key
        return key if key is not None and key.status == "Active" else None

    async def _current_user(self, account: str, name: str) -> UserRow | None:
        """The user as it stands (request path: cached until a writer commits)."""
        self._fresh()
        key = (account, name)
        if key in self._users:
            return self._users[key]
        row = await self.db.read(q.get_user, account, name)
        if len(self._users) < 100_000:
            self._users[key] = row
        return row

    async def key_principal(self, key_id: str) -> tuple[Principal, str] | None:
        """The principal signing with an active key, and the key's secret; None for an unknown or
        inactive key. The principal's ARN carries the user's path, as IAM reports it."""
        await self.refresh_token_keys()  # the control plane issues tokens: with the newest key
        key = await self.active_key(key_id)
        if key is None:
            return None
        user = await self._current_user(key.account_id, key.user_name)
        if user is None:
            return None
        return Principal.iam_user(key.account_id, user.name, key.id, user.path, user.user_id), key.secret

    async def _current_role(self, account: str, name: str) -> Role | None:
        self._fresh()
        key = (account, name)
        if key not in self._roles:
            row = await self.entities.find_role(account, name)
            if len(self._roles) >= 100_000:
                return row
            self._roles[key] = row
        return self._roles[key]

    async def principal_exists(self, principal: Principal) -> bool:
        """Whether the principal a credential names still exists: the same user or role (same unique
        id and path), not merely one of the same name made again."""
        if principal.role:
            role = await self._current_role(principal.account, principal.role)
            return role is not None and role.role_id == principal.role_id and role.path == principal.role_path
        if principal.user is None:
            return True
        user = await self._current_user(principal.account, principal.user)
        if user is None or user.path != principal.path:
            return False
        return principal.user_id is None or principal.user_id == user.user_id

    # inline policies

    async def put_user_policy(self, account: str, user: str, name: str, document: str) -> None:
        await self.get_user(account, user)
        try:
            parse_policy(document, "identity")
        except ValueError as e:
            raise MalformedPolicyDocument(str(e)) from None
        if await self.db.write(q.put_user_policy, account, user, name, document) is UserOutcome.NO_USER:
            raise NoSuchEntity(f"The user with name {user} cannot be found.")

    async def get_user_policy(self, account: str, user: str, name: str) -> str:
        doc = await self.db.read(q.get_user_policy, account, user, name)
        if doc is None:
            raise NoSuchEntity(f"The user policy with name {name} cannot be found.")
        return doc

    async def list_user_policies(self, account: str, user: str) -> list[str]:
        await self.get_user(account, user)
        return [n for n, _ in await self.db.read(q.user_policies, account, user)]

    async def delete_user_policy(self, account: str, user: str, name: str) -> None:
        if not await self.db.write(q.delete_user_policy, account, user, name):
            raise NoSuchEntity(f"The user policy with name {name} cannot be found.")

    async def identity_policies(self, principal: Principal) -> tuple[Policy, ...]:
        """Every identity policy of the principal: a user's inline and attached policies and its
        groups' inline and attached ones; a role session's role's inline and attached policies."""
        if principal.user is None and principal.role is None:  # the account root: all of its own account
            return (parse_policy(ADMIN_POLICY, "identity"),)
        key = (principal.account, f"role/{principal.role}" if principal.role else f"user/{principal.user}")
        self._fresh()
        cached = self._policies.get(key)
        if cached is None:
            docs = [] if principal.user is None else \
                [d for _, d in await self.db.read(q.user_policies, principal.account, principal.user)]
            docs += await self.entities.extra_documents(principal)
            cached = tuple(parse_policy(d, "identity") for d in docs)
            if len(self._policies) < 100_000:
                self._policies[key] = cached
        return cached

    # temporary credentials (STS)

    def _session_key(self) -> tuple[str, bytes]:
        key_id = next(reversed(self._token_keys))
        return key_id, self._token_keys[key_id]

    def issue_session(self, claims: SessionClaims) -> tuple[str, str]:
        """(session token, secret access key) for `claims` (sessions.issue)."""
        key_id, secret = self._session_key()
        return sessions.issue(claims, secret, key_id)

    def session_principal(self, access_key_id: str, token: str | None) -> tuple[Principal, str]:
        """The principal and secret of temporary credentials; tokens.TokenError when invalid or expired."""
        if not token:
            raise tokens.TokenInvalid("The security token included in the request is invalid.")
        self._unknown_key(token.split(".", 1)[0])
        claims = sessions.verify(token, self._token_keys, datetime.fromtimestamp(self.clock(), UTC))
        if claims.access_key_id != access_key_id:
            raise tokens.TokenInvalid("The security token included in the request is invalid.")
        key_id = token.split(".", 1)[0]
        secret = sessions.secret_for(token, self._token_keys[key_id])
        if claims.role:
            principal = Principal(account=claims.account, arn=claims.arn, access_key_id=access_key_id,
                                  role=claims.role, role_path=claims.role_path, role_id=claims.role_id,
                                  session=claims.session, session_policy=claims.policy,
                                  expires_at=claims.expires_at.timestamp(), session_tags=claims.tags)
        else:
            principal = Principal(account=claims.account, arn=claims.arn, user=claims.user,
                                  access_key_id=access_key_id, user_id=claims.user_id,
                                  expires_at=claims.expires_at.timestamp())
        return principal, secret

    # registry tokens

    def issue_token(self, principal: Principal, ttl: timedelta = tokens.DEFAULT_TTL) -> tuple[str, datetime]:
        """A registry token for `principal`: 12 hours, or until its temporary credentials end if sooner."""
        key_id = next(reversed(self._token_keys))
        now = self.clock()
        if principal.expires_at is not None:
            ttl = min(ttl, timedelta(seconds=max(int(principal.expires_at - now), 1)))
        return tokens.issue(principal.arn, principal.account, self._token_keys[key_id],
                            datetime.fromtimestamp(now, UTC), ttl, key_id=key_id,
                            extra=principal.claims())

    def download_query(self, principal: Principal, host: str, path: str, ttl: timedelta) -> str:
        """The query string of a GetDownloadUrlForLayer URL for `host` + `path` (tokens.sign_download)."""
        key_id = next(reversed(self._token_keys))
        expires = datetime.fromtimestamp(self.clock(), UTC) + ttl
        if principal.expires_at is not None:
            expires = min(expires, datetime.fromtimestamp(principal.expires_at, UTC))
        return tokens.sign_download(self._token_keys[key_id], key_id, host, path, principal.arn, principal.claims(),
                                    expires)

    def _unknown_key(self, key_id: str) -> None:
        """A token signed with a key this node does not hold yet (a rotation elsewhere): re-read the keys
        in the background, at most every few seconds; this token is refused, its retry passes."""
        if key_id in self._token_keys or time.monotonic() - self._token_keys_loaded <= TOKEN_KEYS_REFRESH:
            return
        self._token_keys_loaded = time.monotonic()
        try:
            self._reload = asyncio.get_running_loop().create_task(self._load_token_keys())
        except RuntimeError:  # no loop: nothing to schedule on
            pass

    def verify_download(self, credentials: str) -> tokens.TokenClaims:
        for part in credentials.rsplit("\n", 1)[-1].split("&"):
            if part.startswith("X-Berth-Key="):
                self._unknown_key(part[len("X-Berth-Key="):])
        return tokens.verify_download(credentials, self._token_keys, datetime.fromtimestamp(self.clock(), UTC))

    def verify_token(self, token: str) -> Any:
        """Claims of a valid token (no database call); raises tokens.TokenError otherwise."""
        self._unknown_key(token.split(".", 1)[0])
        return tokens.verify(token, self._token_keys, datetime.fromtimestamp(self.clock(), UTC))
