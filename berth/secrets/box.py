"""Encryption of secret values at rest, behind one small interface (seal/unseal).

The values are sealed with the deployment's master key (berth/keys: AES-256-GCM, the key outside the
database, rotated by `berth admin rotate-master-key`, which re-seals the `secrets` column too). The
secret's ARN is the associated data, so a sealed value copied onto another secret does not open.
"""

from __future__ import annotations

from typing import Protocol

from berth.keys import KeyError_, MasterKey, sealed_column

COLUMN = sealed_column("secrets")


class CannotDecrypt(Exception):
    """The sealed value does not open with this key (Secrets Manager: DecryptionFailure)."""


class Sealer(Protocol):
    def seal(self, plaintext: bytes, context: str) -> str: ...

    def unseal(self, sealed: str, context: str) -> bytes: ...


class MasterKeyBox:
    def __init__(self, master: MasterKey) -> None:
        self.master = master

    def seal(self, plaintext: bytes, context: str) -> str:
        return self.master.seal_bytes(plaintext, COLUMN.context(context))

    def unseal(self, sealed: str, context: str) -> bytes:
        try:
            return self.master.open_bytes(sealed, COLUMN.context(context))
        except KeyError_ as e:
            raise CannotDecrypt(str(e)) from None
