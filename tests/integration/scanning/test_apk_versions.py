"""apk version ordering against apk-tools' own test data: test/version.data of apk-tools (every pair with
its expected order), as Debian 13 ships it inside golang-github-knqyf263-go-apk-version-dev (Trivy's apk
version library, whose tests replay it). apk-tools itself is in no Debian release (12, 13 or sid) and no
Alpine mirror is reachable, so this file is the closest real oracle on the machine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from berth.scanning.versions import InvalidVersion, compare

CASES = "usr/share/gocode/src/github.com/knqyf263/go-apk-version/version_testcase.go"
# versions univers' AlpineLinuxVersion refuses (leading zeros, letters apk-tools only string-sorts): such a
# package's version matches no advisory (osv.affects answers not affected) rather than a guessed order
REFUSED = {"23_foo", "4_beta", "1.0bc", "006", "021109-r3", "02.08.01b", "013", "014-r1", "1.0.0bc",
           "087-r1"}


@pytest.fixture(scope="module")
def cases(trixie_root: Path) -> list[tuple[str, str, str]]:
    text = (trixie_root / CASES).read_text()  # the package unpacked by the scanning tests' shared trixie root
    return re.findall(r'\{"([^"]*)", "([<>=])", "([^"]*)"\}', text)


def test_apk_tools_version_data(cases: list[tuple[str, str, str]]) -> None:
    assert len(cases) > 700
    want = {"<": -1, "=": 0, ">": 1}
    wrong, refused = [], set()
    for a, op, b in cases:
        try:
            got = compare("Alpine:v3.20", a, b)
        except InvalidVersion:
            refused |= {v for v in (a, b) if _refuses(v)}
            continue
        if got != want[op]:
            wrong.append((a, op, b, got))
    assert not wrong, wrong
    assert refused <= REFUSED, refused - REFUSED


def _refuses(v: str) -> bool:
    try:
        compare("Alpine:v3.20", v, v)
        return False
    except InvalidVersion:
        return True


def test_refused_versions_match_nothing() -> None:
    from berth.scanning import osv

    a = osv.Affected("Alpine:v3.20", "x", ({"type": "ECOSYSTEM", "events": [{"introduced": "0"}]},), (), None)
    assert osv.affects(a, "006") == (False, None)
    assert osv.affects(a, "1.0-r0")[0]
