"""Scanning's metadata on both backends: vulndb import (idempotent, newer replaces, bad files named and
skipped), the candidate look-up, scan rows and the basic quota, and re-matching of stored inventories."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from berth.db import scanning as qs
from berth.db.events import Event, read_events
from berth.db.store import Backend
from berth.scanning.model import Inventory, OsRelease, Package
from berth.scanning.service import ScanService
from berth.scanning.vulndb import import_paths
from tests.contract import test_metadata as metadata_contract
from tests.contract.test_metadata import Harness
from tests.support import osv_fixtures as fx

db = metadata_contract.db
postgres_url = metadata_contract.postgres_url
sqlite_template = metadata_contract.sqlite_template
NOW = 1_700_000_000.0


def test_import_is_idempotent_and_newer_replaces(db: Harness, tmp_path: Path) -> None:
    root = fx.write_tree(tmp_path / "osv")
    total = len(fx.DEBIAN) + len(fx.PYPI) + len(fx.NPM) + len(fx.GO) + len(fx.MAVEN) + len(fx.CRATES)

    async def body(b: Backend) -> None:
        first = await import_paths(b, [root], clock=lambda: NOW)
        assert (first.read, first.new, first.replaced, first.unchanged) == (total, total, 0, 0)
        assert sorted(Path(n).name for n, _ in first.errors) == ["broken.json", "no-id.json"]
        gen = await b.read(qs.generation)
        again = await import_paths(b, [root], clock=lambda: NOW + 1)
        assert (again.new, again.replaced, again.unchanged) == (0, 0, total)
        assert await b.read(qs.generation) == gen  # nothing changed: no re-match either
        newer = copy.deepcopy(fx.PYPI[2])
        newer["modified"] = "2025-01-01T00:00:00Z"
        newer["affected"][0]["ranges"][0]["events"][1] = {"fixed": "2.31.1"}
        older = copy.deepcopy(fx.PYPI[3])
        older["modified"] = "2020-01-01T00:00:00Z"
        older["affected"] = []
        (tmp_path / "upd").mkdir()
        (tmp_path / "upd" / "a.json").write_text(json.dumps(newer))
        (tmp_path / "upd" / "b.json").write_text(json.dumps(older))
        upd = await import_paths(b, [tmp_path / "upd"], clock=lambda: NOW + 2)
        assert (upd.new, upd.replaced, upd.unchanged) == (0, 1, 1)
        assert await b.read(qs.generation) == gen + 1
        rows = await b.read(qs.affected_for, [("PyPI", "requests"), ("PyPI", "jinja2")])
        by_id = {r.record_id: r for r in rows}
        assert by_id["GHSA-j8r2-6x86-q33q"].data["ranges"][0]["events"][1] == {"fixed": "2.31.1"}
        assert "GHSA-462w-v97r-4m45" in by_id  # the older copy did not replace it
        st = await b.read(qs.status)
        assert st.records == total and st.by_ecosystem["PyPI"] == len(fx.PYPI)
        assert {Path(s[0]).name for s in st.sources} == {"osv", "upd"}

    db.run(body)


def _inventory() -> dict[str, Any]:
    return Inventory(OsRelease("debian", "12"), [
        Package("dpkg", "tar", "1.34+dfsg-1.2+deb12u1", "var/lib/dpkg/status", "sha256:" + "1" * 64, "tar",
                "1.34+dfsg-1.2+deb12u1"),
        Package("dpkg", "zlib1g", "1:1.2.13.dfsg-1", "var/lib/dpkg/status", "sha256:" + "1" * 64, "zlib",
                "1:1.2.13.dfsg-1"),
    ]).to_json()


def test_quota_and_rematch_events(db: Harness, tmp_path: Path) -> None:
    root = fx.write_tree(tmp_path / "osv")

    async def body(b: Backend) -> None:
        await import_paths(b, [root], clock=lambda: NOW)
        from berth.db import registry as qr

        repo, _ = await b.write(qr.create_repository, "123456789012", "us-east-1", "team/app", NOW)
        digest = "sha256:" + "a" * 64
        first = await b.write(qs.request_scan, repo.id, "123456789012", "us-east-1", "team/app", digest, "BASIC",
                              True, NOW, 86400.0)
        assert first is not None and first.status == "IN_PROGRESS"
        assert await b.write(qs.request_scan, repo.id, "123456789012", "us-east-1", "team/app", digest, "BASIC",
                             True, NOW + 3600, 86400.0) is None  # within the quota
        # no manifest: finishing records nothing (the image is gone)
        assert not await b.write(qs.finish_scan, repo.id, digest, "COMPLETE", "", NOW, 1, _inventory(), [])
        # store a manifest so that the row counts, then the scan result
        await b.write(_manifest, repo.id, digest)
        gen = await b.read(qs.generation)
        assert await b.write(qs.finish_scan, repo.id, digest, "COMPLETE", "done", NOW, gen, _inventory(), [])
        svc = ScanService(b, None, clock=lambda: NOW + 10)  # type: ignore[arg-type]
        assert await svc.rematch() == 0  # already at this generation
        (tmp_path / "tar").mkdir()
        (tmp_path / "tar" / "t.json").write_text(json.dumps(fx.TAR_LATER))
        await import_paths(b, [tmp_path / "tar"], clock=lambda: NOW + 20)
        assert await svc.rematch() == 1
        got = await b.read(qs.get_scan, repo.id, digest)
        assert got is not None and {f["name"] for f in got.findings or []} == {"CVE-2005-2541", "CVE-2023-45853"}
        events = [e for e in await b.read(read_events, 0, 100) if e.kind is Event.SCAN_FINDINGS_CHANGED]
        assert len(events) == 1 and events[0].payload is not None
        assert events[0].payload["added"] == ["DEBIAN-CVE-2005-2541", "DEBIAN-CVE-2023-45853"]
        assert await svc.rematch() == 0

    db.run(body)


def _manifest(repo_id: int, digest: str) -> Any:
    from berth.db.store import Q

    yield Q("INSERT INTO manifests (repository_id, digest, media_type, body, image_size, pushed_at) "
            "VALUES (?, ?, ?, ?, ?, ?)", (repo_id, digest, "application/vnd.oci.image.manifest.v1+json", b"{}", 2,
                                          NOW))


def test_one_first_basic_scan_per_image_under_concurrent_starts(db: Harness, tmp_path: Path) -> None:
    """StartImageScan decides the once-per-24-h quota on the image's locked row: of 8 first starts of one
    image at once, exactly one is accepted (each caller on its own backend, 20 rounds)."""
    from berth.scanning.errors import ScanQuotaExceeded
    from tests.contract import test_concurrency as cc

    async def body(ws: list[cc.World]) -> None:
        repo = await ws[0].repos.create(cc.ACCOUNT, cc.REGION, "scanned")
        config = cc.digest_of(b"config")
        await cc.link(ws[0], repo.id, config)
        services = [ScanService(w.db, None, clock=lambda: NOW) for w in ws]  # type: ignore[arg-type]

        async def one_round(r: int) -> None:
            m = await ws[0].registry.put_manifest(repo, f"v{r}", cc.image_manifest(str(r), config), cc.OCI_MANIFEST)
            results = await cc.at_once([s.start(repo, m.digest, cc.OCI_MANIFEST) for s in services])
            assert not cc.unexpected(results, ScanQuotaExceeded), results
            accepted = [x for x in results if not isinstance(x, BaseException)]
            assert len(accepted) == 1, f"{len(accepted)} of {cc.N} first scans of one image accepted"

        await cc.every_round(one_round)

    cc.run_many(db, tmp_path, body)
