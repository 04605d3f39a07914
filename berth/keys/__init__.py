"""Secrets at rest: a master key kept outside the database seals every secret the database holds.

A sealed value is ``enc1:<key id>:<base64url(nonce | AES-256-GCM ciphertext and tag)>``. The
associated data names what the value belongs to (e.g. ``access_keys:AKIA…``), so a ciphertext copied
into another row does not open. The master key file holds the current key and, during a rotation,
the retired ones; a node that meets a sealed value under a key id it does not hold re-reads the file
once (another node or `berth admin rotate-master-key` may have written a new one).

Other packages use `MasterKey.seal` / `MasterKey.open` (and `open_bytes`/`seal_bytes`) and list the
columns they seal in `SEALED`, so that rotation re-encrypts them too.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from berth.keys.files import write_private

PREFIX = "enc1:"
FILE_VERSION = 1


class KeyError_(Exception):  # noqa: N801 - not the builtin KeyError
    """A sealed value cannot be opened, or the master key file is unusable. Never carries a secret."""


@dataclass(frozen=True)
class Sealed:
    """A column of sealed values: rotation and the plain-text migration walk these."""

    table: str
    id_column: str
    value_column: str

    def context(self, row_id: str) -> str:
        return f"{self.table}:{row_id}"


# Every sealed column. Another package that seals values adds its column here.
SEALED: list[Sealed] = [
    Sealed("access_keys", "id", "secret"),
    Sealed("signing_keys", "id", "secret"),
    Sealed("secrets", "arn", "sealed"),  # Secrets Manager values (berth/secrets/box.py)
    Sealed("replication_peers", "name", "secret_access_key"),  # peers' credentials (berth/replication/peers.py)
    Sealed("signing_profiles", "account_id || '/' || name", "private_key"),  # berth/scanning/signing.py
]


def sealed_column(table: str) -> Sealed:
    """The sealed column of `table`, as SEALED lists it (its sealing code and rotation share one definition)."""
    return next(c for c in SEALED if c.table == table)


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_key_id() -> str:
    return "m" + secrets.token_hex(4)


class MasterKey:
    """The master key ring: seal with the current key, open with any key the file holds."""

    def __init__(self, keys: dict[str, bytes], current: str, path: Path | None = None) -> None:
        if current not in keys:
            raise KeyError_("the master key file names a current key it does not hold")
        self.path = path
        self.current = current
        self._keys = {k: AESGCM(v) for k, v in keys.items()}
        self._raw = dict(keys)

    # files

    @classmethod
    def ephemeral(cls) -> MasterKey:
        """A key that lives in memory only (tests, benchmarks)."""
        kid = new_key_id()
        return cls({kid: AESGCM.generate_key(256)}, kid)

    @classmethod
    def load(cls, path: Path) -> MasterKey:
        try:
            doc = json.loads(Path(path).read_text())
            if doc.get("version") != FILE_VERSION:
                raise KeyError_(f"master key file {path}: unknown version {doc.get('version')!r}")
            keys = {str(k): _b64d(str(v)) for k, v in doc["keys"].items()}
            current = str(doc["current"])
        except KeyError_:
            raise
        except FileNotFoundError:
            raise KeyError_(f"master key file {path} does not exist") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise KeyError_(f"master key file {path} is unreadable or malformed ({type(e).__name__})") from None
        if any(len(v) != 32 for v in keys.values()):
            raise KeyError_(f"master key file {path}: every key must be 32 bytes")
        return cls(keys, current, Path(path))

    @classmethod
    def load_or_create(cls, path: Path) -> MasterKey:
        """The key in `path`, or a new one written there (0600, its directory 0700) if there is none."""
        path = Path(path)
        if not path.exists():
            kid = new_key_id()
            key = cls({kid: AESGCM.generate_key(256)}, kid, path)
            try:
                key.save(exclusive=True)
            except FileExistsError:  # another process made it first: use theirs
                pass
            else:
                return key
        return cls.load(path)

    def save(self, exclusive: bool = False) -> None:
        if self.path is None:
            raise KeyError_("an ephemeral master key has no file")
        doc = {"version": FILE_VERSION, "current": self.current,
               "keys": {k: _b64e(v) for k, v in self._raw.items()}}
        write_private(self.path, (json.dumps(doc, indent=1) + "\n").encode(), exclusive=exclusive)

    def reload(self) -> bool:
        """Re-read the file (a rotation elsewhere); True if it changed what this ring holds."""
        if self.path is None or not self.path.exists():
            return False
        fresh = MasterKey.load(self.path)
        if fresh._raw == self._raw and fresh.current == self.current:
            return False
        self.current, self._keys, self._raw = fresh.current, fresh._keys, fresh._raw
        return True

    # rotation

    def with_new_key(self) -> MasterKey:
        """A ring whose current key is new and which still holds the old ones (to open what they sealed)."""
        kid = new_key_id()
        return MasterKey({**self._raw, kid: AESGCM.generate_key(256)}, kid, self.path)

    def merged(self, newer: MasterKey, path: Path | None = None) -> MasterKey:
        """Every key of both rings, `newer`'s current (a backup taken across a rotation opens every value)."""
        return MasterKey({**self._raw, **newer._raw}, newer.current, path)

    def only_current(self) -> MasterKey:
        return MasterKey({self.current: self._raw[self.current]}, self.current, self.path)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._raw)

    # values

    def seal_bytes(self, plaintext: bytes, context: str) -> str:
        nonce = os.urandom(12)
        ct = self._keys[self.current].encrypt(nonce, plaintext, context.encode())
        return f"{PREFIX}{self.current}:{_b64e(nonce + ct)}"

    def open_bytes(self, value: str, context: str) -> bytes:
        if not is_sealed(value):
            raise KeyError_(f"the value of {context} is not sealed")
        try:
            kid, body = value[len(PREFIX):].split(":", 1)
            raw = _b64d(body)
        except ValueError:
            raise KeyError_(f"the sealed value of {context} is malformed") from None
        if kid not in self._keys:
            self.reload()
        aead = self._keys.get(kid)
        if aead is None:
            where = f" ({self.path})" if self.path else ""
            raise KeyError_(f"the value of {context} is sealed with master key {kid}, which the master key "
                            f"file{where} does not hold: give the file this database was sealed with "
                            "(BERTH_MASTER_KEY_FILE)")
        try:
            return aead.decrypt(raw[:12], raw[12:], context.encode())
        except (InvalidTag, ValueError):
            raise KeyError_(f"the sealed value of {context} does not open with master key {kid}") from None

    def seal(self, plaintext: str, context: str) -> str:
        return self.seal_bytes(plaintext.encode("utf-8"), context)

    def open(self, value: str, context: str) -> str:
        """The plain text of a sealed value; a legacy plain-text value (written before sealing existed,
        e.g. by an older node in a rolling upgrade) is returned as it is and sealed on the next start."""
        if not is_sealed(value):
            return value
        return self.open_bytes(value, context).decode("utf-8")
