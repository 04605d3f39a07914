"""The master key (berth.keys): sealing, its file, and migration 0011 sealing plain-text rows on SQLite
and PostgreSQL, then the identity service opening them."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command

from berth.db.migrate import alembic_config, sqlalchemy_url
from berth.db.postgres import PostgresBackend
from berth.db.sqlite import SqliteBackend
from berth.iam.service import IdentityService
from berth.keys import KeyError_, MasterKey, is_sealed
from berth.keys.rotate import rotate_master_key


def test_seal_and_open(tmp_path: Path) -> None:
    key = MasterKey.load_or_create(tmp_path / "keys" / "master.key")
    sealed = key.seal("s3cret", "access_keys:AKIA1")
    assert is_sealed(sealed) and "s3cret" not in sealed
    assert key.seal("s3cret", "access_keys:AKIA1") != sealed  # a fresh nonce every time
    assert key.open(sealed, "access_keys:AKIA1") == "s3cret"
    with pytest.raises(KeyError_):  # bound to its row: moved to another, it does not open
        key.open(sealed, "access_keys:AKIA2")
    with pytest.raises(KeyError_, match="does not hold"):
        MasterKey.ephemeral().open(sealed, "access_keys:AKIA1")
    assert key.open("legacy-plain", "access_keys:AKIA1") == "legacy-plain"


def test_key_file_is_private_and_made_once(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "d" / "keys" / "master.key"
        a = MasterKey.load_or_create(path)
        b = MasterKey.load_or_create(path)
    finally:
        os.umask(old)
    assert a.current == b.current
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    doc = json.loads(path.read_text())
    assert doc["version"] == 1 and list(doc["keys"]) == [a.current]


def test_a_damaged_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text("not json")
    with pytest.raises(KeyError_, match="malformed"):
        MasterKey.load(path)


def _plain_rows_sql() -> list[str]:
    return ["INSERT INTO accounts (id, created_at) VALUES ('123456789012', 0)",
            "INSERT INTO iam_users (account_id, name, user_id, path, created_at) "
            "VALUES ('123456789012', 'admin', 'AIDAOLD', '/', 0)",
            "INSERT INTO access_keys (id, account_id, user_name, secret, status, created_at) "
            "VALUES ('AKIAOLDPLAINTEXT01', '123456789012', 'admin', 'old-plain-secret-0123456789', 'Active', 0)",
            f"INSERT INTO signing_keys (id, secret, created_at) VALUES ('k1', '{'ab' * 32}', 0)"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migration_seals_plain_rows(backend: str, tmp_path: Path, request: pytest.FixtureRequest,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("BERTH_DATA_DIR", str(data))
    if backend == "sqlite":
        url = sqlalchemy_url("", data / "berth.db")
        raw = ""
    else:
        raw = request.getfixturevalue("postgres").new_database()
        url = sqlalchemy_url(raw, Path("unused"))
    command.upgrade(alembic_config(url), "0005")  # a database of the previous release, secrets in plain text

    async def seed_and_check() -> tuple[list[Any], str, bytes]:
        if backend == "sqlite":
            import sqlite3

            with sqlite3.connect(data / "berth.db") as conn:
                for sql in _plain_rows_sql():
                    conn.execute(sql)
        else:
            conn2 = await asyncpg.connect(raw)
            for sql in _plain_rows_sql():
                await conn2.execute(sql)
            await conn2.close()
        await asyncio.get_running_loop().run_in_executor(None, command.upgrade, alembic_config(url), "head")
        master = MasterKey.load(data / "keys" / "master.key")
        db: Any = SqliteBackend(data / "berth.db") if backend == "sqlite" else await PostgresBackend.connect(raw)
        try:
            from berth.db import sealed as qs

            rows = await db.read(qs.values, "access_keys", "id", "secret")
            rows += await db.read(qs.values, "signing_keys", "id", "secret")
            identity = IdentityService(db, keys=master)
            await identity.ensure_signing_key()
            found = await identity.key_principal("AKIAOLDPLAINTEXT01")
            assert found is not None
            secret = found[1]
            tokens_ok = identity._token_keys["k1"]
            from berth.scanning.signing import SigningService

            await SigningService(db, keys=master).ensure_key("123456789012", "release")  # a sealed private key
            # rotation: every value sealed again under a new key, still opening to the same plain text
            old_copy = tmp_path / "old.key"
            old_copy.write_bytes((data / "keys" / "master.key").read_bytes())
            old_ids, new_id, n = await rotate_master_key(db, master.path)  # type: ignore[arg-type]
            assert n == 3 and new_id not in old_ids
            new_master = MasterKey.load(data / "keys" / "master.key")
            (_, private), = await db.read(qs.values, "signing_profiles", "account_id || '/' || name", "private_key")
            assert is_sealed(private)
            assert "PRIVATE KEY" in SigningService(db, keys=new_master)._open("123456789012", "release", private)
            rotated = IdentityService(db, keys=new_master)
            await rotated.ensure_signing_key()
            again = await rotated.key_principal("AKIAOLDPLAINTEXT01")
            assert again is not None and again[1] == secret
            assert rotated._token_keys["k1"] == tokens_ok
            with pytest.raises(KeyError_, match="does not hold"):  # a copy of the old key opens nothing now
                await IdentityService(db, keys=MasterKey.load(old_copy)).ensure_signing_key()
        finally:
            await db.close()
        return rows, secret, tokens_ok

    rows, secret, token_key = asyncio.run(seed_and_check())
    assert all(is_sealed(v) for _, v in rows) and len(rows) == 2
    assert secret == "old-plain-secret-0123456789"
    assert token_key == bytes.fromhex("ab" * 32)


def test_audit_prune_is_a_periodic_job_when_retention_is_set(tmp_path: Path) -> None:
    from berth.app import job_handlers
    from berth.audit import PRUNE_EVERY, PRUNE_JOB
    from berth.config import Settings
    from berth.registry.uploads import Uploads
    from berth.storage.filesystem import FilesystemBlobStore

    async def kinds(days: int) -> list[str]:
        db = SqliteBackend(tmp_path / "x.db")
        uploads = Uploads(db, FilesystemBlobStore(tmp_path / "blobs"))
        try:
            h = job_handlers(db, uploads, Settings(data_dir=tmp_path, audit_retention_days=days, gc_interval_seconds=0))
            kind = h.get(PRUNE_JOB)
            assert kind is None or kind.interval == PRUNE_EVERY
            return h.kinds()
        finally:
            uploads.close()
            await db.close()

    assert PRUNE_JOB in asyncio.run(kinds(30))
    assert PRUNE_JOB not in asyncio.run(kinds(0))
