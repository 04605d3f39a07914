"""Import OSV advisories into the metadata store: single JSON files, directories of them, and the
per-ecosystem zip archives OSV publishes (`<Ecosystem>/all.zip`). Idempotent: a record is written only
when it is new or its `modified` is newer than the stored one. A bad file is reported by name and
skipped; the import goes on."""

from __future__ import annotations

import json
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berth.db import scanning as qs
from berth.db.store import Backend
from berth.scanning import osv
from berth.scanning.readers.python import normalise

BATCH = 500
MAX_RECORD = 16 * 1024 * 1024  # one OSV record; the largest real ones are a few MB (Linux kernel)


@dataclass
class ImportReport:
    read: int = 0
    new: int = 0
    replaced: int = 0
    unchanged: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file name, why)


def _records_in(path: Path) -> Iterator[tuple[str, bytes | Exception]]:
    """(name, raw JSON or the error reading it) for every record under `path`."""
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for f in sorted(files):
                p = Path(root) / f
                if f.endswith(".json"):
                    yield from _records_in(p)
                elif f.endswith(".zip"):
                    yield from _records_in(p)
    elif path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    if info.is_dir() or not info.filename.endswith(".json"):
                        continue
                    name = f"{path}:{info.filename}"
                    if info.file_size > MAX_RECORD:
                        yield name, ValueError(f"larger than {MAX_RECORD} bytes")
                        continue
                    try:
                        yield name, z.read(info)
                    except (zipfile.BadZipFile, OSError, RuntimeError) as e:
                        yield name, e
        except (zipfile.BadZipFile, OSError) as e:
            yield str(path), e
    else:
        try:
            if path.stat().st_size > MAX_RECORD:
                yield str(path), ValueError(f"larger than {MAX_RECORD} bytes")
                return
            yield str(path), path.read_bytes()
        except OSError as e:
            yield str(path), e


def count(paths: list[Path]) -> int:
    """Roughly how many records the paths hold (for a progress bar)."""
    n = 0
    for p in paths:
        if p.is_dir():
            n += sum(1 for _, _, fs in os.walk(p) for f in fs if f.endswith(".json"))
        elif p.suffix == ".zip":
            try:
                with zipfile.ZipFile(p) as z:
                    n += sum(1 for i in z.infolist() if i.filename.endswith(".json"))
            except (zipfile.BadZipFile, OSError):
                n += 1
        else:
            n += 1
    return n


def package_name(ecosystem: str, name: str) -> str:
    """The name as the readers report it: PyPI names PEP 503-normalised."""
    return normalise(name) if ecosystem == "PyPI" else name


def to_new(r: osv.Record) -> qs.NewRecord:
    body: dict[str, Any] = {"summary": r.summary, "details": r.details[:4000], "aliases": list(r.aliases),
                            "references": list(r.references[:20]), "vector": r.vector}
    affected = [(a.ecosystem, package_name(a.ecosystem, a.name),
                 {"ranges": list(a.ranges), "versions": list(a.versions),
                  **({"severity": a.severity} if a.severity else {})}) for a in r.affected]
    return qs.NewRecord(r.id, r.modified, osv.parse_time(r.modified).timestamp(), r.severity, r.score, body, affected)


def _parse(raw: bytes) -> list[osv.Record]:
    doc = json.loads(raw)
    docs = doc if isinstance(doc, list) else [doc]  # some exports put several records in one file
    return [osv.parse(d) for d in docs]


async def import_paths(db: Backend, paths: list[Path], progress: Callable[[int], None] = lambda n: None,
                       clock: Callable[[], float] = time.time) -> ImportReport:
    report = ImportReport()
    for path in paths:
        source = str(path)
        batch: list[qs.NewRecord] = []
        got = ImportReport()

        async def flush(batch: list[qs.NewRecord] = batch, got: ImportReport = got, source: str = source) -> None:
            if batch:
                u = await db.write(qs.upsert_records, list(batch), source, clock())
                got.new, got.replaced, got.unchanged = got.new + u.new, got.replaced + u.replaced, \
                    got.unchanged + u.unchanged
                progress(len(batch))
                batch.clear()

        if not path.exists():
            report.errors.append((source, "no such file or directory"))
            continue
        for name, raw in _records_in(path):
            if isinstance(raw, Exception):
                got.errors.append((name, f"{type(raw).__name__}: {raw}"))
                progress(1)
                continue
            try:
                records = _parse(raw)
            except (ValueError, UnicodeDecodeError, osv.BadRecord) as e:
                got.errors.append((name, str(e) or type(e).__name__))
                progress(1)
                continue
            for r in records:
                batch.append(to_new(r))
                got.read += 1
            if len(batch) >= BATCH:
                await flush()
        await flush()
        await db.write(qs.record_source, source, clock(), got.read, got.new + got.replaced, len(got.errors))
        report.read += got.read
        report.new += got.new
        report.replaced += got.replaced
        report.unchanged += got.unchanged
        report.errors += got.errors
    return report
