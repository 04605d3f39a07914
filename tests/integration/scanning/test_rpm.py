"""The RPM reader on a real sqlite rpmdb: packages built with rpmbuild and recorded by `rpm --justdb` into a
private database, put in a layer beside a Rocky Linux os-release; matched per release."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

from berth.db.scanning import AffectedRow
from berth.scanning import matching, osv
from berth.scanning.inventory import read_inventory
from berth.scanning.vulndb import to_new
from tests.support import osv_fixtures as fx
from tests.support.servers import require_tool
from tests.unit.scanning.test_layers import Blobs, tar

SPEC = """Name: openssl
Version: 3.0.7
Release: 24.el9
Epoch: 1
Summary: test package
License: ASL 2.0
BuildArch: noarch
%description
test
%package libs
Summary: libraries
%description libs
libraries
%files libs
"""


def rpmdb(work: Path) -> bytes:
    require_tool("rpm", "rpmbuild")
    top = work / "rpm"
    for d in ("SPECS", "BUILD", "RPMS", "SOURCES", "SRPMS", "db"):
        (top / d).mkdir(parents=True, exist_ok=True)
    (top / "SPECS" / "openssl.spec").write_text(SPEC)
    subprocess.run(["rpmbuild", "--define", f"_topdir {top}", "-bb", str(top / "SPECS" / "openssl.spec")],
                   check=True, capture_output=True, timeout=120)
    db = top / "db"
    subprocess.run(["rpm", "--dbpath", str(db), "--initdb"], check=True, capture_output=True)
    rpms = [str(p) for p in (top / "RPMS").rglob("*.rpm")]
    subprocess.run(["rpm", "--dbpath", str(db), "-i", "--nodeps", "--justdb", "--ignoreos", *rpms], check=True,
                   capture_output=True, timeout=120)
    out = subprocess.run(["rpm", "--dbpath", str(db), "-qa"], check=True, capture_output=True, text=True).stdout
    assert "openssl-libs-3.0.7-24.el9" in out
    return (db / "rpmdb.sqlite").read_bytes()


def test_rpmdb_sqlite(tmp_path: Path) -> None:
    db = rpmdb(tmp_path)
    os_release = b'NAME="Rocky Linux"\nVERSION="9.2 (Blue Onyx)"\nID="rocky"\nVERSION_ID="9.2"\n'
    blobs = Blobs([gzip.compress(tar([("etc/os-release", os_release, "file"),
                                      ("var/lib/rpm/rpmdb.sqlite", db, "file")]))])
    inv = read_inventory(blobs.digests(), blobs.open)
    assert inv.os is not None and inv.os.id == "rocky"
    assert [(p.name, p.version, p.source) for p in inv.packages] == [("openssl-libs", "1:3.0.7-24.el9", "openssl")]
    rows = []
    for doc in fx.RPM:
        n = to_new(osv.parse(doc))
        rows += [AffectedRow(e, name, d, n.id, n.severity, n.score, n.body) for e, name, d in n.affected]
    found = matching.find(inv, rows, enhanced=False)
    assert [(f["id"], f["fixedIn"]) for f in found] == [("RLSA-2023:7877", "1:3.0.7-25.el9_3")]
