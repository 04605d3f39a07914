"""A local journal of audit rows not yet in the database (the embedded default, SQLite).

`AuditTrail.record` appends its row here (one write(2), no fsync: it survives a process crash, as a
commit without fsync does) and returns; the rows reach the database in batches, one transaction
each. Each batch has a file of its own, deleted once the batch is committed. A process keeps its
files in a directory it holds an flock on; a directory whose lock is free belongs to a process that
died, and the next start (any worker) takes the lock and puts its rows in the database.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from berth.db.audit import AuditRow

LOCK = "lock"


def _line(row: AuditRow) -> bytes:
    return json.dumps([row.event_time, row.account_id, row.event_source, row.event_name, row.principal,
                       row.error_code, row.record], separators=(",", ":")).encode() + b"\n"


def read_rows(path: Path) -> list[AuditRow]:
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            rows.append(AuditRow(*json.loads(line)))
        except (ValueError, TypeError):  # a line cut short by the crash: its call was not answered
            continue
    return rows


class Journal:
    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root = root
        name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        making = root / f".{name}"  # locked before it has the name another start would take for a dead one's
        making.mkdir(mode=0o700)
        self._lock = os.open(making / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.dir = root / name
        making.rename(self.dir)
        self._gen = 0
        self._fd = -1
        self._open()

    def _open(self) -> None:
        self._gen += 1
        self._fd = os.open(self.dir / f"{self._gen:012d}", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def append(self, row: AuditRow) -> None:
        os.write(self._fd, _line(row))

    def cut(self) -> Path:
        """Close the current file (the rows of the batch being taken) and start the next; its path."""
        path = self.dir / f"{self._gen:012d}"
        os.close(self._fd)
        self._open()
        return path

    @staticmethod
    def done(path: Path) -> None:
        """The batch of this file is committed."""
        path.unlink(missing_ok=True)

    def orphans(self) -> Iterable[tuple[Path, list[Path]]]:
        """(directory, its batch files) of every process that died with rows not committed; each one
        yielded is locked by this process until it is removed (`release`)."""
        for d in sorted(self.root.iterdir()):
            if d == self.dir or d.name.startswith(".") or not d.is_dir():
                continue
            try:
                fd = os.open(d / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a live process's
                os.close(fd)
                continue
            try:
                yield d, sorted(p for p in d.iterdir() if p.name != LOCK)
            finally:
                os.close(fd)

    @staticmethod
    def release(d: Path) -> None:
        shutil.rmtree(d, ignore_errors=True)

    def close(self) -> None:
        os.close(self._fd)
        shutil.rmtree(self.dir, ignore_errors=True)  # called once everything is committed
        os.close(self._lock)
