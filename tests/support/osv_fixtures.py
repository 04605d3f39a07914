"""OSV records for the scanner's tests. Real advisories (ids, aliases, affected and fixed versions as OSV
publishes them, trimmed to the fields the matcher reads) for the old versions the test image holds;
records whose id starts with BERTH-TEST are made up to test one rule (another release, last_affected)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

MOD = "2024-06-01T00:00:00Z"
CRIT = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
HIGH = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"  # 7.5
SEMVER = ("npm", "Go", "crates.io")  # the ecosystems whose OSV ranges are SEMVER


def rec(id: str, eco: str, name: str, events: list[dict[str, str]], aliases: list[str] = (),  # type: ignore[assignment]
        vector: str | None = None, modified: str = MOD, summary: str = "", **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"schema_version": "1.6.0", "id": id, "modified": modified, "aliases": list(aliases),
                           "summary": summary or f"{id} in {name}",
                           "affected": [{"package": {"ecosystem": eco, "name": name},
                                         "ranges": [{"type": "SEMVER" if eco in SEMVER else "ECOSYSTEM",
                                                     "events": events}]}],
                           "references": [{"type": "ADVISORY", "url": f"https://osv.dev/vulnerability/{id}"}]}
    if vector:
        doc["severity"] = [{"type": "CVSS_V3", "score": vector}]
    doc.update(extra)
    return doc


DEBIAN = [
    rec("DSA-5514-1", "Debian:12", "glibc", [{"introduced": "0"}, {"fixed": "2.36-9+deb12u3"}],
        upstream=["CVE-2023-4911"], vector="CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"),
    rec("DEBIAN-CVE-2023-45853", "Debian:12", "zlib", [{"introduced": "0"}], upstream=["CVE-2023-45853"],
        vector=CRIT),
    rec("DSA-5764-1", "Debian:12", "openssl", [{"introduced": "0"}, {"fixed": "3.0.14-1~deb12u2"}],
        upstream=["CVE-2024-5535"]),
    rec("BERTH-TEST-0001", "Debian:11", "zlib", [{"introduced": "0"}], vector=CRIT),  # another release
    rec("BERTH-TEST-0002", "Debian:12", "curl", [{"introduced": "0"}, {"last_affected": "7.88.1-10+deb12u5"}]),
]
TAR_LATER = rec("DEBIAN-CVE-2005-2541", "Debian:12", "tar", [{"introduced": "0"}], upstream=["CVE-2005-2541"],
                database_specific={"urgency": "unimportant"})

PYPI = [
    rec("GHSA-x84v-xcm2-53pg", "PyPI", "requests", [{"introduced": "0"}, {"fixed": "2.20.0"}],
        ["CVE-2018-18074", "PYSEC-2018-28"], HIGH),
    rec("PYSEC-2018-28", "PyPI", "requests", [{"introduced": "0"}, {"fixed": "2.20.0"}],
        ["CVE-2018-18074", "GHSA-x84v-xcm2-53pg"]),
    rec("GHSA-j8r2-6x86-q33q", "PyPI", "requests", [{"introduced": "2.3.0"}, {"fixed": "2.31.0"}],
        ["CVE-2023-32681", "PYSEC-2023-74"], "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:C/C:H/I:N/A:N"),
    rec("GHSA-462w-v97r-4m45", "PyPI", "Jinja2", [{"introduced": "0"}, {"fixed": "2.10.1"}],
        ["CVE-2019-10906", "PYSEC-2019-217"], "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:N/A:N"),
    rec("GHSA-mh33-7rrq-662w", "PyPI", "urllib3", [{"introduced": "0"}, {"fixed": "1.24.2"}],
        ["CVE-2019-11324"], HIGH),  # whited out in the image
]
NPM = [
    rec("GHSA-p6mc-m468-83gw", "npm", "lodash", [{"introduced": "3.7.0"}, {"fixed": "4.17.19"}],
        ["CVE-2020-8203"], "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:H/A:H"),  # deleted in the image
    rec("GHSA-xvch-5gv4-984h", "npm", "minimist", [{"introduced": "0"}, {"fixed": "0.2.4"}, {"introduced": "1.0.0"},
                                                   {"fixed": "1.2.6"}], ["CVE-2021-44906"], CRIT),
]
# modelled on RLSA-2023:7877 (openssl for Rocky Linux 9, fixed in 1:3.0.7-25.el9_3); the other is made up
RPM = [
    rec("RLSA-2023:7877", "Rocky Linux:9", "openssl", [{"introduced": "0"}, {"fixed": "1:3.0.7-25.el9_3"}],
        ["CVE-2023-5678"], database_specific={"severity": "MODERATE"}),
    rec("BERTH-TEST-0003", "Rocky Linux:8", "openssl", [{"introduced": "0"}]),
]
MAVEN = [
    rec("GHSA-78wr-2p64-hpwj", "Maven", "commons-io:commons-io", [{"introduced": "2.0"}, {"fixed": "2.14.0"}],
        ["CVE-2024-47554"], database_specific={"severity": "MODERATE"}),
]
GO = [
    rec("GO-2022-1059", "Go", "golang.org/x/text", [{"introduced": "0"}, {"fixed": "0.3.8"}],
        ["CVE-2022-32149", "GHSA-69ch-w2m2-3vjp"], HIGH),
    rec("GO-2023-1840", "Go", "stdlib", [{"introduced": "0"}, {"fixed": "1.19.10"}, {"introduced": "1.20.0-0"},
                                         {"fixed": "1.20.5"}], ["CVE-2023-29403"]),
]
# crates.io (RustSec): smallvec 1.6.0 and time 0.1.44 are in the Rust binary's cargo-auditable data; the 2018
# smallvec advisory is fixed in 0.6.3 (no finding for 1.6.0); cc is only a build dependency (not linked in)
CRATES = [
    rec("RUSTSEC-2021-0003", "crates.io", "smallvec", [{"introduced": "0.6.3"}, {"fixed": "0.6.14"},
                                                         {"introduced": "1.0.0"}, {"fixed": "1.6.1"}],
        ["CVE-2021-25900", "GHSA-43w2-9j62-hq99"], CRIT),
    rec("RUSTSEC-2020-0071", "crates.io", "time", [{"introduced": "0.0.0-0"}, {"fixed": "0.2.0"},
                                                     {"introduced": "0.2.7"}, {"fixed": "0.2.23"}],
        ["CVE-2020-26235", "GHSA-wcg3-cvx6-7396"], "CVSS:3.1/AV:L/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"),
    rec("RUSTSEC-2018-0003", "crates.io", "smallvec", [{"introduced": "0.3.0"}, {"fixed": "0.6.3"}],
        ["CVE-2018-20991"]),
    rec("BERTH-TEST-0004", "crates.io", "cc", [{"introduced": "0"}]),
]

# What the test image must show, by finding name (ECR names by CVE): BASIC (OS) and ENHANCED (all).
EXPECTED_OS = {("CVE-2023-45853", "zlib1g")}
EXPECTED_LANG = {("CVE-2018-18074", "requests"), ("CVE-2023-32681", "requests"), ("CVE-2019-10906", "jinja2"),
                 ("CVE-2021-44906", "minimist"), ("CVE-2022-32149", "golang.org/x/text"),
                 ("CVE-2023-29403", "stdlib"), ("CVE-2024-47554", "commons-io:commons-io"),
                 ("CVE-2021-25900", "smallvec"), ("CVE-2020-26235", "time")}


def write_tree(root: Path) -> Path:
    """Debian records as single files, PyPI as a directory (with one broken file), npm and Go as OSV-style
    per-ecosystem zip archives. Returns `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for r in DEBIAN:
        (root / f"{r['id']}.json").write_text(json.dumps(r))
    pypi = root / "PyPI"
    pypi.mkdir(exist_ok=True)
    for r in PYPI:
        (pypi / f"{r['id']}.json").write_text(json.dumps(r))
    (pypi / "broken.json").write_text('{"id": "PYSEC-BROKEN", "modified": ')
    (pypi / "no-id.json").write_text('{"modified": "2024-01-01T00:00:00Z"}')
    for eco, records in (("npm", NPM), ("Go", GO), ("Maven", MAVEN), ("crates.io", CRATES)):
        with zipfile.ZipFile(root / f"{eco}-all.zip", "w") as z:
            for r in records:
                z.writestr(f"{r['id']}.json", json.dumps(r))
    return root
