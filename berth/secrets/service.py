"""The few Secrets Manager operations the pull-through cache needs, with Secrets Manager's rules: a secret
has one current version (AWSCURRENT); DeleteSecret schedules the deletion (7-30 days, default 30) and the
secret is unreadable from then on, or deletes at once with ForceDeleteWithoutRecovery."""

from __future__ import annotations

import base64
import json
import re
import secrets as rnd
import string
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from berth.db import secrets as q
from berth.db.secrets import SecretRow
from berth.db.store import Backend
from berth.secrets.box import CannotDecrypt, Sealer

NAME_RE = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
MAX_VALUE = 65536
DAY = 86400.0


class SecretsError(Exception):
    """`kind` is the Secrets Manager exception name (ResourceNotFoundException, ...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class Secret:
    name: str
    arn: str
    description: str
    kms_key_id: str | None
    version_id: str
    tags: list[dict[str, str]]
    created_at: float
    updated_at: float
    deleted_at: float | None

    @classmethod
    def from_row(cls, r: SecretRow) -> Secret:
        return cls(r.name, r.arn, r.description, r.kms_key_id, r.version_id, json.loads(r.tags), r.created_at,
                   r.updated_at, r.deleted_at)


@dataclass(frozen=True, slots=True)
class SecretValue:
    secret: Secret
    string: str | None
    binary: bytes | None


def _suffix() -> str:
    return "".join(rnd.choice(string.ascii_letters) for _ in range(6))


def _not_found() -> SecretsError:
    return SecretsError("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")


def parse_secret_arn(arn: str) -> tuple[str, str, str] | None:
    """(region, account, rest after "secret:") of a Secrets Manager ARN, or None."""
    parts = arn.split(":", 6)
    if len(parts) != 7 or parts[0] != "arn" or not parts[1].startswith("aws") or parts[2] != "secretsmanager" \
            or parts[5] != "secret":
        return None
    return parts[3], parts[4], parts[6]


class Secrets:
    def __init__(self, db: Backend, box: Sealer, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.box = box
        self.clock = clock

    @staticmethod
    def _value(string_value: str | None, binary: bytes | None) -> bytes:
        if (string_value is None) == (binary is None):
            raise SecretsError("InvalidParameterException", "You must provide either SecretString or SecretBinary.")
        doc = {"s": string_value} if string_value is not None else {"b": base64.b64encode(binary or b"").decode()}
        raw = json.dumps(doc).encode()
        if len(string_value.encode() if string_value is not None else binary or b"") > MAX_VALUE:
            raise SecretsError("InvalidParameterException", f"The secret value is longer than {MAX_VALUE} bytes.")
        return raw

    async def create(self, account: str, region: str, name: str, description: str = "",
                     kms_key_id: str | None = None, string_value: str | None = None, binary: bytes | None = None,
                     tags: list[dict[str, str]] | None = None) -> Secret:
        if not NAME_RE.fullmatch(name):
            raise SecretsError("InvalidParameterException",
                               "Invalid name. Must be a valid name containing alphanumeric characters, or any of "
                               "the following: -/_+=.@!")
        await self.db.write(q.purge_due, account, region, self.clock())
        existing = await self.db.read(q.secret_by_name, account, region, name)
        if existing is not None:
            if existing.deleted_at is not None:
                raise SecretsError("InvalidRequestException", "You can't create this secret because a secret with "
                                                              "this name is already scheduled for deletion.")
            raise SecretsError("ResourceExistsException", f"The operation failed because the secret {name} "
                                                          "already exists.")
        arn = f"arn:aws:secretsmanager:{region}:{account}:secret:{name}-{_suffix()}"
        now = self.clock()
        version = str(uuid.uuid4())
        sealed = self.box.seal(self._value(string_value, binary), arn) if (string_value, binary) != (None, None) \
            else self.box.seal(b"{}", arn)
        row = SecretRow(name, arn, description, kms_key_id, sealed, version, json.dumps(tags or []), now, now, None)
        if not await self.db.write(q.create_secret, account, region, row):
            raise SecretsError("ResourceExistsException", f"The operation failed because the secret {name} "
                                                          "already exists.")
        return Secret.from_row(row)

    async def _find(self, account: str, region: str, secret_id: str) -> SecretRow:
        """By name, full ARN, or partial ARN (without the random suffix)."""
        row: SecretRow | None
        parsed = parse_secret_arn(secret_id)
        if parsed is not None:
            arn_region, arn_account, rest = parsed
            if (arn_region, arn_account) != (region, account):
                raise _not_found()
            row = await self.db.read(q.secret_by_arn, account, region, secret_id)
            if row is None:
                row = await self.db.read(q.secret_by_name, account, region, rest)
        else:
            row = await self.db.read(q.secret_by_name, account, region, secret_id)
        if row is None or (row.deleted_at is not None and row.deleted_at <= self.clock()):
            raise _not_found()
        return row

    async def describe(self, account: str, region: str, secret_id: str) -> Secret:
        return Secret.from_row(await self._find(account, region, secret_id))

    async def get_value(self, account: str, region: str, secret_id: str) -> SecretValue:
        row = await self._find(account, region, secret_id)
        if row.deleted_at is not None:
            raise SecretsError("InvalidRequestException", "You can't perform this operation on the secret because "
                                                          "it was marked for deletion.")
        try:
            doc = json.loads(self.box.unseal(row.sealed, row.arn))
        except CannotDecrypt as e:
            raise SecretsError("DecryptionFailure", str(e)) from None
        if "s" not in doc and "b" not in doc:
            raise SecretsError("ResourceNotFoundException", "Secrets Manager can't find the specified secret value "
                                                            "for staging label: AWSCURRENT")
        return SecretValue(Secret.from_row(row), doc.get("s"), base64.b64decode(doc["b"]) if "b" in doc else None)

    async def put_value(self, account: str, region: str, secret_id: str, string_value: str | None,
                        binary: bytes | None) -> Secret:
        row = await self._find(account, region, secret_id)
        if row.deleted_at is not None:
            raise SecretsError("InvalidRequestException", "You can't perform this operation on the secret because "
                                                          "it was marked for deletion.")
        sealed = self.box.seal(self._value(string_value, binary), row.arn)
        updated = await self.db.write(q.put_value, account, region, row.name, sealed, str(uuid.uuid4()), self.clock())
        if updated is None:
            raise _not_found()
        return Secret.from_row(updated)

    async def delete(self, account: str, region: str, secret_id: str, window_days: int | None,
                     force: bool) -> tuple[Secret, float]:
        row = await self._find(account, region, secret_id)
        if force and window_days is not None:
            raise SecretsError("InvalidParameterException", "You can't use ForceDeleteWithoutRecovery in "
                                                            "conjunction with RecoveryWindowInDays.")
        now = self.clock()
        if force:
            gone = await self.db.write(q.delete_secret, account, region, row.name)
            if gone is None:
                raise _not_found()
            return Secret.from_row(gone), now
        days = 30 if window_days is None else window_days
        if not 7 <= days <= 30:
            raise SecretsError("InvalidParameterException", "The RecoveryWindowInDays value must be between 7 and "
                                                            "30 days (inclusive).")
        if row.deleted_at is not None:
            raise SecretsError("InvalidRequestException", "You can't perform this operation on the secret because "
                                                          "it was already scheduled for deletion.")
        done = await self.db.write(q.schedule_deletion, account, region, row.name, now + days * DAY)
        if done is None:
            raise _not_found()
        return Secret.from_row(done), now + days * DAY

    async def list(self, account: str, region: str, after: str, limit: int,
                   include_deleted: bool = False) -> list[Secret]:
        await self.db.write(q.purge_due, account, region, self.clock())
        return [Secret.from_row(r) for r in await self.db.read(q.list_secrets, account, region, after, limit,
                                                                include_deleted)]
