"""`berth backup DEST` and `berth restore SRC --data-dir DIR` for the embedded default (SQLite + files).

A backup is consistent without stopping the registry: SQLite's online backup API copies the database
as of one moment (WAL readers never block the writer), then every blob that snapshot names is
hard-linked (same filesystem) or copied. Blobs are immutable and appear under blobs/ by an atomic
rename before any row names them, so each one the snapshot names is complete on disk. `backup.json`
records what was copied: the database's size and sha256, every blob with its size, and every image
(repository, tag or digest) the snapshot holds, which is what a restore brings back.
The master key is copied too (without it no sealed secret opens), unless --no-master-key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth.keys import MasterKey
from berth.keys.files import FILE_MODE, private_dir

MANIFEST = "backup.json"
FORMAT = 1
DB_NAME = "berth.db"
KEY_PATH = Path("keys") / "master.key"


class BackupError(Exception):
    pass


@dataclass
class Summary:
    blobs: int = 0
    linked: int = 0
    bytes: int = 0
    images: int = 0
    seconds: float = 0.0


def blob_relpath(digest: str) -> Path:
    alg, _, hexpart = digest.partition(":")
    if alg not in ("sha256", "sha512") or not hexpart.isalnum() or len(hexpart) < 3:
        raise BackupError(f"not a blob digest: {digest!r}")
    return Path("blobs") / alg / hexpart[:2] / hexpart


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _place(src: Path, dst: Path, link: bool) -> bool:
    """Hard-link (True) or copy (False) `src` to `dst`, creating directories; a copy is fsynced."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return True
        except FileExistsError:
            return True
        except OSError:  # another filesystem, or links refused: copy
            pass
    tmp = dst.with_name(dst.name + ".part")
    shutil.copyfile(src, tmp)
    _fsync(tmp)
    os.replace(tmp, dst)
    return False


def _empty_dir(path: Path, what: str) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(f"{what} {path} exists and is not an empty directory")
    private_dir(path)


def _images(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT r.account_id, r.region, r.name, m.digest, m.media_type, "
        "(SELECT group_concat(t.name, char(10)) FROM tags t WHERE t.repository_id = m.repository_id "
        " AND t.digest = m.digest) FROM manifests m JOIN repositories r ON r.id = m.repository_id "
        "ORDER BY r.account_id, r.region, r.name, m.digest").fetchall()
    return [{"account": a, "region": reg, "repository": name, "digest": d, "mediaType": mt,
             "tags": sorted(t.split("\n")) if t else []} for a, reg, name, d, mt, t in rows]


def backup(db_path: Path, storage_root: Path, master_key: Path | None, dest: Path, link: bool = False) -> Summary:
    """Copy a running (or stopped) embedded registry into `dest`, which must be new or empty."""
    started = time.monotonic()
    if not db_path.exists():
        raise BackupError(f"no database at {db_path}")
    dest = Path(dest)
    _empty_dir(dest, "backup destination")
    key_before = MasterKey.load(master_key) if master_key is not None else None
    out_db = dest / DB_NAME
    fd = os.open(out_db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    os.close(fd)
    src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(out_db)
    try:
        src.backup(dst)  # one step: the database as of one moment
    finally:
        src.close()
    try:
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        blobs = [(str(d), int(s)) for d, s in dst.execute("SELECT digest, size FROM blobs ORDER BY digest")]
        images = _images(dst)
        version = dst.execute("SELECT version_num FROM alembic_version").fetchone()
    finally:
        dst.close()
    _fsync(out_db)
    summary = Summary(images=len(images))
    missing = []
    for digest, size in blobs:
        rel = blob_relpath(digest)
        source = storage_root / rel
        try:
            linked = _place(source, dest / rel, link)
        except FileNotFoundError:
            missing.append(digest)  # deleted since the snapshot (garbage collection): nothing names it now
            continue
        summary.blobs += 1
        summary.linked += linked
        summary.bytes += size
    if master_key is not None and key_before is not None:
        # read before and after the snapshot: a rotation in between leaves values under either key
        key_before.merged(MasterKey.load(master_key), dest / KEY_PATH).save()
    summary.seconds = time.monotonic() - started
    manifest = {
        "format": FORMAT, "createdAt": time.time(), "source": str(db_path.parent),
        "schema": version[0] if version else None,
        "database": {"file": DB_NAME, "size": out_db.stat().st_size, "sha256": _sha256_file(out_db)},
        "masterKey": str(KEY_PATH) if master_key is not None else None,
        "blobs": [{"digest": d, "size": s} for d, s in blobs if d not in missing],
        "missingBlobs": missing,
        "images": images,
    }
    tmp = dest / (MANIFEST + ".part")
    tmp.write_bytes(json.dumps(manifest, indent=1).encode())
    os.chmod(tmp, FILE_MODE)
    _fsync(tmp)
    os.replace(tmp, dest / MANIFEST)  # last: a backup without its manifest is incomplete
    return summary


def read_manifest(src: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((Path(src) / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{src} holds no {MANIFEST}: not a backup, or an incomplete one") from None
    except ValueError:
        raise BackupError(f"{src}/{MANIFEST} is not valid JSON") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{src}/{MANIFEST}: unknown backup format {manifest.get('format')!r}")
    return manifest


def restore(src: Path, data_dir: Path, link: bool = False, verify: bool = False) -> Summary:
    """Bring a backup back into a new (or empty) data dir, checking it against its manifest first."""
    started = time.monotonic()
    src = Path(src)
    manifest = read_manifest(src)
    db = src / manifest["database"]["file"]
    if not db.exists() or _sha256_file(db) != manifest["database"]["sha256"]:
        raise BackupError(f"{db} is missing or does not match the backup's manifest")
    for blob in manifest["blobs"]:
        path = src / blob_relpath(blob["digest"])
        if not path.exists() or path.stat().st_size != blob["size"]:
            raise BackupError(f"blob {blob['digest']} is missing from the backup or has the wrong size")
        if verify and "sha256:" + _sha256_file(path) != blob["digest"]:
            raise BackupError(f"blob {blob['digest']} does not match its digest")
    _empty_dir(Path(data_dir), "data dir")
    summary = Summary(images=len(manifest["images"]))
    _place(db, data_dir / DB_NAME, link=False)  # the database is written to: never a link into the backup
    os.chmod(data_dir / DB_NAME, FILE_MODE)
    for blob in manifest["blobs"]:
        rel = blob_relpath(blob["digest"])
        summary.linked += _place(src / rel, data_dir / rel, link)
        summary.blobs += 1
        summary.bytes += blob["size"]
    if manifest.get("masterKey"):
        private_dir(data_dir / "keys")
        _place(src / manifest["masterKey"], data_dir / KEY_PATH, link=False)
        os.chmod(data_dir / KEY_PATH, FILE_MODE)
    summary.seconds = time.monotonic() - started
    return summary
