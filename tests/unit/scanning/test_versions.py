"""Version order per ecosystem, against the real implementations: `dpkg --compare-versions` as the oracle
for thousands of generated pairs; packaging for PEP 440; the others against their documented examples."""

from __future__ import annotations

import random
import subprocess

import pytest

from berth.scanning import versions
from tests.support.servers import require_tool

PIECES = ["0", "1", "2", "10", "01", "a", "b", "z", "~", "~~", "~rc1", "+", ".", "+dfsg", "+b1", "+deb12u1",
          "ubuntu1", "~bpo11", ".0", "9", "99", "1a", "a1"]


def gen_version(rng: random.Random) -> str:
    upstream = rng.choice("0123456789") + "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 4)))
    v = upstream
    if rng.random() < 0.6:
        v += "-" + rng.choice(["0", "1", "2", "10"]) + "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 2)))
    if rng.random() < 0.2:
        v = f"{rng.randint(0, 2)}:{v}"
    return v


def dpkg_order(a: str, b: str) -> int:
    for op, result in (("lt", -1), ("eq", 0)):
        if subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0:
            return result
    return 1


def test_dpkg_against_dpkg_compare_versions() -> None:
    require_tool("dpkg")
    rng = random.Random(20261201)
    pairs = []
    for _ in range(1500):
        a = gen_version(rng)
        # near neighbours exercise the interesting cases: a shared prefix with one piece changed
        b = a + rng.choice(PIECES) if rng.random() < 0.5 else gen_version(rng)
        pairs.append((a, b) if rng.random() < 0.5 else (b, a))
    pairs += [("1.0~rc1-1", "1.0-1"), ("1:0.9", "2.0"), ("1.0-1", "1.0-1+b1"), ("2.36-9+deb12u4", "2.36-9+deb12u10"),
              ("1.2.13.dfsg-1", "1.2.13.dfsg-1~bpo11+1"), ("0", "0~")]
    wrong = [(a, b, versions.compare("Debian:12", a, b), dpkg_order(a, b)) for a, b in pairs
             if versions.compare("Debian:12", a, b) != dpkg_order(a, b)]
    assert wrong == [], wrong[:10]
    assert len(pairs) > 1500


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("1.0", "1.0.0", 0), ("1.0a1", "1.0", -1), ("1.0.post1", "1.0", 1), ("1.0.dev1", "1.0a1", -1),
    ("2.19.1", "2.20.0", -1), ("1!0.1", "2.0", 1), ("1.0+local", "1.0", 1),
])
def test_pep440(a: str, b: str, expected: int) -> None:
    assert versions.compare("PyPI", a, b) == expected


@pytest.mark.parametrize(("eco", "a", "b", "expected"), [
    ("Alpine:v3.18", "1.2.3-r4", "1.2.3-r10", -1),  # apk-tools: revisions compare numerically
    ("Alpine:v3.18", "1.2.3_rc1", "1.2.3", -1),  # _rc is a pre-release suffix
    ("Alpine:v3.18", "1.2.3_p1", "1.2.3", 1),  # _p is a patch level
    ("Alpine:v3.18", "3.1.0-r1", "3.1.4-r0", -1),
    ("npm", "1.2.3-beta.2", "1.2.3-beta.11", -1),  # semver.org §11
    ("npm", "1.0.0-alpha", "1.0.0", -1),
    ("npm", "4.17.15", "4.17.21", -1),
    ("Go", "v0.3.7", "0.3.8", -1),
    ("Go", "v0.0.0-20210101000000-abcdefabcdef", "0.0.1", -1),  # a pseudo-version is a pre-release
    ("Maven", "1.0-SNAPSHOT", "1.0", -1), ("Maven", "1.0-alpha-1", "1.0", -1), ("Maven", "2.0", "2.0.0", 0),
    ("Red Hat", "1:1.0-1", "2.0-1", 1), ("Red Hat", "1.0~rc1-1", "1.0-1", -1),
])
def test_documented_examples(eco: str, a: str, b: str, expected: int) -> None:
    assert versions.compare(eco, a, b) == expected


def test_unknown_ecosystem_is_an_error() -> None:
    with pytest.raises(versions.InvalidVersion):
        versions.key("Nonesuch", "1.0")
