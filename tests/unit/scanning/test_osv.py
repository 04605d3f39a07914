"""OSV rules: ranges, last_affected, explicit versions, severity from CVSS vectors and words, aliases."""

from __future__ import annotations

from berth.db.scanning import AffectedRow
from berth.scanning import matching, osv
from berth.scanning.model import Inventory, OsRelease, Package
from berth.scanning.vulndb import to_new
from tests.support import osv_fixtures as fx


def rows(records: list[dict]) -> list[AffectedRow]:
    out = []
    for doc in records:
        n = to_new(osv.parse(doc))
        out += [AffectedRow(eco, name, data, n.id, n.severity, n.score, n.body) for eco, name, data in n.affected]
    return out


def test_ranges() -> None:
    a = osv.parse(fx.NPM[1]).affected[0]
    assert osv.affects(a, "0.2.3") == (True, "0.2.4")
    assert osv.affects(a, "0.2.4") == (False, None)
    assert osv.affects(a, "1.2.5") == (True, "1.2.6")
    assert osv.affects(a, "1.2.6")[0] is False
    la = osv.parse(fx.DEBIAN[4]).affected[0]
    assert osv.affects(la, "7.88.1-10+deb12u5")[0] and not osv.affects(la, "7.88.1-10+deb12u6")[0]
    explicit = osv.Affected("PyPI", "x", (), ("1.0", "1.1"), None)
    assert osv.affects(explicit, "1.1")[0] and not osv.affects(explicit, "1.2")[0]


def test_severity() -> None:
    assert osv.parse(fx.NPM[1]).severity == "CRITICAL" and osv.parse(fx.NPM[1]).score == 9.8
    assert osv.parse(fx.PYPI[2]).severity == "MEDIUM"
    assert osv.parse(fx.TAR_LATER).severity == "INFORMATIONAL"  # Debian's "unimportant"
    assert osv.parse(fx.PYPI[1]).severity == "UNDEFINED"
    assert osv.parse({**fx.PYPI[1], "database_specific": {"severity": "MODERATE"}}).severity == "MEDIUM"


def test_release_isolation_and_aliases_once() -> None:
    inv = Inventory(OsRelease("debian", "12"), [
        Package("dpkg", "zlib1g", "1:1.2.13.dfsg-1", "var/lib/dpkg/status", source="zlib",
                source_version="1:1.2.13.dfsg-1"),
        Package("dpkg", "libc6", "2.36-9+deb12u14", "var/lib/dpkg/status", source="glibc",
                source_version="2.36-9+deb12u14"),
        Package("python", "requests", "2.19.1", "x/requests-2.19.1.dist-info/METADATA"),
        Package("python", "jinja2", "2.10", "x/Jinja2-2.10.dist-info/METADATA"),
    ])
    found = matching.find(inv, rows(fx.DEBIAN + fx.PYPI), enhanced=True)
    names = sorted((f["name"], f["package"]["name"]) for f in found)
    assert names == [("CVE-2018-18074", "requests"), ("CVE-2019-10906", "jinja2"), ("CVE-2023-32681", "requests"),
                     ("CVE-2023-45853", "zlib1g")]
    assert found[0]["severity"] == "CRITICAL"  # worst first
    req = next(f for f in found if f["name"] == "CVE-2018-18074")
    assert req["fixedIn"] == "2.20.0" and req["severity"] == "HIGH"
    assert [f["name"] for f in matching.find(inv, rows(fx.DEBIAN + fx.PYPI), enhanced=False)] == ["CVE-2023-45853"]
    bullseye = Inventory(OsRelease("debian", "11"), inv.packages[:1])
    assert [f["id"] for f in matching.find(bullseye, rows(fx.DEBIAN), enhanced=False)] == ["BERTH-TEST-0001"]
