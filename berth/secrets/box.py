"""Encryption of secret values at rest, behind one small interface (seal/unseal) so that the master key
of berth/keys can replace the key file here without touching the callers.

Today: AES-256-GCM with a random 256-bit key in `<data dir>/secrets.key` (mode 0600), made on first use.
A sealed value is "v1:" + base64(nonce || ciphertext+tag); the secret's ARN is the associated data, so a
sealed value copied onto another secret does not open.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "v1:"


class CannotDecrypt(Exception):
    """The sealed value does not open with this key (Secrets Manager: DecryptionFailure)."""


class Sealer(Protocol):
    def seal(self, plaintext: bytes, context: str) -> str: ...

    def unseal(self, sealed: str, context: str) -> bytes: ...


class KeyFileBox:
    def __init__(self, key_path: Path) -> None:
        self.key_path = key_path
        self._key: bytes | None = None

    def _aead(self) -> AESGCM:
        if self._key is None:
            if not self.key_path.exists():
                self.key_path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.key_path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.write(fd, AESGCM.generate_key(bit_length=256))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                try:  # another process may have made one first: theirs wins
                    os.link(self.key_path.with_suffix(".tmp"), self.key_path)
                except FileExistsError:
                    pass
                os.unlink(self.key_path.with_suffix(".tmp"))
            self._key = self.key_path.read_bytes()
        return AESGCM(self._key)

    def seal(self, plaintext: bytes, context: str) -> str:
        nonce = os.urandom(12)
        return PREFIX + base64.b64encode(nonce + self._aead().encrypt(nonce, plaintext, context.encode())).decode()

    def unseal(self, sealed: str, context: str) -> bytes:
        if not sealed.startswith(PREFIX):
            raise CannotDecrypt("unknown sealed-value format")
        raw = base64.b64decode(sealed[len(PREFIX):])
        try:
            return self._aead().decrypt(raw[:12], raw[12:], context.encode())
        except InvalidTag:
            raise CannotDecrypt("the secret value does not decrypt with this deployment's key") from None
