"""RPM packages from the sqlite rpmdb of current Fedora / RHEL-family images (/var/lib/rpm/rpmdb.sqlite,
also /usr/lib/sysimage/rpm/rpmdb.sqlite). The database is opened from memory (sqlite3 deserialize, no
temporary file); each row's blob is an RPM header: index count and data length (big-endian int32), the
index entries (tag, type, offset, count), then the data. The Berkeley DB and ndb formats of older
releases are not read."""

from __future__ import annotations

import sqlite3
import struct
from typing import IO

from berth.scanning.model import Package, read_capped
from berth.scanning.tar import Member

PATHS = ("var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite")
CAP = 128 * 1024 * 1024
NAME, VERSION, RELEASE, EPOCH, SOURCERPM = 1000, 1001, 1002, 1003, 1044
STRING, INT32, I18NSTRING = 6, 4, 9


def header(blob: bytes) -> dict[int, str | int]:
    if len(blob) < 8:
        return {}
    il, dl = struct.unpack(">ii", blob[:8])
    if il < 0 or dl < 0 or 8 + il * 16 + dl > len(blob):
        return {}
    data = blob[8 + il * 16: 8 + il * 16 + dl]
    out: dict[int, str | int] = {}
    for i in range(il):
        tag, typ, offset, count = struct.unpack(">iiii", blob[8 + i * 16: 24 + i * 16])
        if tag not in (NAME, VERSION, RELEASE, EPOCH, SOURCERPM) or not 0 <= offset < len(data):
            continue
        if typ in (STRING, I18NSTRING):
            end = data.find(b"\0", offset)
            out[tag] = data[offset:end if end >= 0 else len(data)].decode("utf-8", "replace")
        elif typ == INT32 and count >= 1 and offset + 4 <= len(data):
            out[tag] = struct.unpack(">i", data[offset:offset + 4])[0]
    return out


def source_name(srpm: str) -> str | None:
    """"openssl-3.0.7-27.el9.src.rpm" -> "openssl"."""
    base = srpm.removesuffix(".rpm").removesuffix(".src").removesuffix(".nosrc")
    parts = base.rsplit("-", 2)
    return parts[0] if len(parts) == 3 else None


def parse(db: bytes, path: str) -> list[Package]:
    if db[:16] != b"SQLite format 3\0":
        return []
    image = bytearray(db)
    image[18:20] = b"\x01\x01"  # WAL mode -> rollback journal: the copy in memory has no -wal file
    conn = sqlite3.connect(":memory:")
    out = []
    try:
        conn.deserialize(bytes(image))
        rows = conn.execute("SELECT blob FROM Packages").fetchall()
    except sqlite3.Error:
        return []
    finally:
        conn.close()
    for (blob,) in rows:
        h = header(bytes(blob))
        name, version, release = h.get(NAME), h.get(VERSION), h.get(RELEASE)
        if not isinstance(name, str) or not isinstance(version, str) or name == "gpg-pubkey":
            continue
        full = f"{version}-{release}" if isinstance(release, str) else version
        epoch = h.get(EPOCH)
        if isinstance(epoch, int) and epoch:
            full = f"{epoch}:{full}"
        srpm = h.get(SOURCERPM)
        src = source_name(srpm) if isinstance(srpm, str) else None
        out.append(Package("rpm", name, full, path, source=src or name, source_version=full))
    return out


class Reader:
    name = "rpm"

    def wants(self, path: str, member: Member) -> bool:
        return path in PATHS

    def read(self, path: str, f: IO[bytes], size: int) -> list[Package] | None:
        data = read_capped(f, CAP)
        return None if data is None else (parse(data, path) or None)
