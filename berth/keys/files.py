"""File modes for what holds secrets: the data dir 0700, the database and key files 0600, whatever the umask."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from berth.config import Settings
    from berth.keys import MasterKey

log = logging.getLogger("berth")

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> list[str]:
    """Create `path` (and its parents) 0700 if missing; return warnings about an existing looser one."""
    path = Path(path)
    if not path.exists():
        path.mkdir(parents=True, mode=DIR_MODE, exist_ok=True)
        os.chmod(path, DIR_MODE)  # mkdir's mode is masked by the umask
        return []
    mode = stat.S_IMODE(path.stat().st_mode)
    if path.is_dir() and mode & 0o077:
        return [f"data dir {path} is open to other users (mode {mode:04o}): it holds the database and the "
                f"master key; run `chmod 700 {path}`"]
    return []


def private_file(path: Path) -> None:
    """Make sure `path` exists with mode 0600 (create it empty if missing), before anything writes it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes, exclusive: bool = False) -> None:
    """Write `path` atomically, mode 0600 from the start, in a 0700 directory.
    exclusive: FileExistsError if it already exists (two first starts at once keep one key)."""
    path = Path(path)
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if exclusive:
            os.link(tmp, path)  # fails if it exists
        else:
            os.replace(tmp, path)
    finally:
        if exclusive:
            tmp.unlink(missing_ok=True)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def secure_sqlite(db_path: Path) -> None:
    """The SQLite file and its WAL/SHM companions 0600 (SQLite gives the companions the file's mode)."""
    private_file(db_path)
    for suffix in ("-wal", "-shm", "-journal"):
        p = db_path.with_name(db_path.name + suffix)
        if p.exists():
            os.chmod(p, FILE_MODE)


def prepare_data_dir(settings: Settings) -> tuple[MasterKey, list[str]]:
    """The data dir made 0700 and the SQLite file 0600 whatever the umask, the master key (made on first
    start, 0600); warnings about an existing data dir open to other users (the CLI prints them)."""
    from berth.keys import MasterKey

    warnings = private_dir(settings.data_dir)
    if not settings.uses_postgres:
        secure_sqlite(settings.sqlite_path)
    return MasterKey.load_or_create(settings.master_key_path), warnings
