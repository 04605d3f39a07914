"""Layer streams: gzip, zstd and plain tar; whiteouts and opaque directories across layers; caps."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import pytest
import zstandard

from berth.scanning.inventory import read_inventory
from berth.scanning.layers import LayerFormatError

STATUS = b"""Package: libc6
Status: install ok installed
Version: 2.36-9+deb12u4
Source: glibc

Package: gone
Status: deinstall ok config-files
Version: 1.0

Package: zlib1g
Status: install ok installed
Version: 1:1.2.13.dfsg-1
Source: zlib (1.2.13.dfsg-1)
"""


def tar(entries: list[tuple[str, bytes | None, str]]) -> bytes:
    """(name, data, kind) with kind file | dir | sym:<target> | link:<target>."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            elif kind.startswith("sym:"):
                info.type, info.linkname = tarfile.SYMTYPE, kind[4:]
                t.addfile(info)
            elif kind.startswith("link:"):
                info.type, info.linkname = tarfile.LNKTYPE, kind[5:]
                t.addfile(info)
            else:
                data = data or b""
                info.size, info.mode = len(data), 0o644
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Blobs:
    def __init__(self, layers: list[bytes]) -> None:
        self.layers = {f"sha256:{i:064x}": b for i, b in enumerate(layers)}

    def digests(self) -> list[str]:
        return list(self.layers)

    def open(self, digest: str) -> io.BytesIO:
        return io.BytesIO(self.layers[digest])


def dist_info(name: str, version: str) -> bytes:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nLong description\nName: not-this\n".encode()


BASE = [
    ("etc", None, "dir"),
    ("etc/os-release", None, "sym:../usr/lib/os-release"),
    ("usr/lib/os-release", b'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n', "file"),
    ("./var/lib/dpkg/status", STATUS, "file"),
    ("usr/lib/python3/dist-packages/urllib3-1.24.1.dist-info/METADATA", dist_info("urllib3", "1.24.1"), "file"),
    ("usr/lib/python3/dist-packages/Jinja2-2.10.dist-info/METADATA", dist_info("Jinja2", "2.10"), "file"),
    ("app/node_modules/lodash/package.json", b'{"name": "lodash", "version": "4.17.15"}', "file"),
    ("app/node_modules/@babel/core/package.json", b'{"name": "@babel/core", "version": "7.0.0"}', "file"),
    ("app/node_modules/lodash/test/package.json", b'{"name": "fixture", "version": "0.0.1"}', "file"),
    ("app/node_modules/hard/package.json", None, "link:app/node_modules/lodash/package.json"),
]


@pytest.mark.parametrize("compress", ["none", "gzip", "zstd"])
def test_inventory_across_layers_and_compressions(compress: str) -> None:
    pack = {"none": lambda b: b, "gzip": gzip.compress, "zstd": zstandard.ZstdCompressor().compress}[compress]
    top = [
        ("usr/lib/python3/dist-packages/urllib3-1.24.1.dist-info/.wh.METADATA", b"", "file"),  # file whiteout
        ("app/node_modules/.wh..wh..opq", b"", "file"),  # opaque: lodash and @babel hidden
        ("app/node_modules/express/package.json", b'{"name": "express", "version": "4.16.0"}', "file"),
        ("usr/lib/python3/dist-packages/.wh.Jinja2-2.10.dist-info", b"", "file"),  # directory whiteout
        ("usr/lib/python3/dist-packages/Jinja2-2.11.3.dist-info/METADATA", dist_info("Jinja2", "2.11.3"), "file"),
    ]
    blobs = Blobs([pack(tar(BASE)), pack(tar(top))])
    inv = read_inventory(blobs.digests(), blobs.open)
    assert inv.os is not None and (inv.os.id, inv.os.version_id) == ("debian", "12")
    got = {(p.kind, p.name, p.version, p.source, p.source_version) for p in inv.packages}
    assert got == {
        ("dpkg", "libc6", "2.36-9+deb12u4", "glibc", "2.36-9+deb12u4"),
        ("dpkg", "zlib1g", "1:1.2.13.dfsg-1", "zlib", "1.2.13.dfsg-1"),
        ("python", "jinja2", "2.11.3", None, None),
        ("npm", "express", "4.16.0", None, None),
    }
    layer_of = {p.name: p.layer for p in inv.packages}
    assert layer_of["libc6"] == blobs.digests()[0] and layer_of["express"] == blobs.digests()[1]


def test_hard_link_and_scoped_npm_in_one_layer() -> None:
    blobs = Blobs([gzip.compress(tar(BASE))])
    inv = read_inventory(blobs.digests(), blobs.open)
    npm = sorted((p.name, p.path) for p in inv.packages if p.kind == "npm")
    assert npm == [("@babel/core", "app/node_modules/@babel/core/package.json"),
                   ("lodash", "app/node_modules/hard/package.json"),
                   ("lodash", "app/node_modules/lodash/package.json")]


def test_whiteout_in_same_layer_does_not_hide_that_layer() -> None:
    # the OCI rule: a whiteout hides lower layers only, whatever the order inside its own layer
    layer = tar([("var/lib/dpkg/status", STATUS, "file"), ("var/lib/dpkg/.wh.status", b"", "file")])
    blobs = Blobs([layer])
    assert {p.name for p in read_inventory(blobs.digests(), blobs.open).packages} == {"libc6", "zlib1g"}


def test_later_file_replaces_earlier() -> None:
    new = STATUS.replace(b"2.36-9+deb12u4", b"2.36-9+deb12u7")
    blobs = Blobs([tar([("var/lib/dpkg/status", STATUS, "file")]), tar([("var/lib/dpkg/status", new, "file")])])
    libc = [p for p in read_inventory(blobs.digests(), blobs.open).packages if p.name == "libc6"]
    assert [p.version for p in libc] == ["2.36-9+deb12u7"]


def test_distroless_status_d() -> None:
    blobs = Blobs([tar([("var/lib/dpkg/status.d/base", b"Package: base-files\nVersion: 12.4+deb12u5\n", "file"),
                        ("var/lib/dpkg/status.d/base.md5sums", b"abc  etc/x\n", "file"),
                        ("var/lib/dpkg/status.d/tzdata", b"Package: tzdata\nVersion: 2024a-0+deb12u1\n", "file")])])
    got = {(p.name, p.version) for p in read_inventory(blobs.digests(), blobs.open).packages}
    assert got == {("base-files", "12.4+deb12u5"), ("tzdata", "2024a-0+deb12u1")}


def test_apk_installed() -> None:
    db = b"C:Q1abc=\nP:musl\nV:1.2.3-r4\no:musl\n\nP:libcrypto3\nV:3.1.0-r1\no:openssl\n"
    blobs = Blobs([gzip.compress(tar([("lib/apk/db/installed", db, "file"),
                                      ("etc/os-release", b"ID=alpine\nVERSION_ID=3.18.0\n", "file")]))])
    inv = read_inventory(blobs.digests(), blobs.open)
    assert inv.os is not None and inv.os.id == "alpine"
    assert {(p.name, p.version, p.source) for p in inv.packages} == {("musl", "1.2.3-r4", "musl"),
                                                                       ("libcrypto3", "3.1.0-r1", "openssl")}


def test_not_a_tar_is_a_clear_error() -> None:
    blobs = Blobs([gzip.compress(b"this is not a tar archive" * 100)])
    with pytest.raises(LayerFormatError):
        read_inventory(blobs.digests(), blobs.open)


def test_oversized_metadata_is_skipped_not_read_whole() -> None:
    big = b'{"name": "x", "version": "1", "pad": "' + b"a" * (5 << 20) + b'"}'
    blobs = Blobs([tar([("node_modules/x/package.json", big, "file")])])
    assert read_inventory(blobs.digests(), blobs.open).packages == []


@pytest.mark.parametrize("compress", ["none", "gzip"])
def test_members_ending_on_a_block_boundary(compress: str) -> None:
    # a wanted file of exactly 1024 bytes, read whole: tarfile then looks one byte back before the next header
    pack = {"none": lambda b: b, "gzip": gzip.compress}[compress]
    meta = dist_info("aaa", "1.0")
    meta += b"x" * (1024 - len(meta))
    pj = b'{"name": "b", "version": "2.0.0"}'
    pj += b" " * (512 - len(pj))
    layer = tar([(f"p/a{i}.dist-info/METADATA", meta, "file") for i in range(300)]
                + [("node_modules/b/package.json", pj, "file"), ("var/lib/dpkg/status", STATUS, "file")])
    blobs = Blobs([pack(layer)])
    got = read_inventory(blobs.digests(), blobs.open).packages
    assert len([p for p in got if p.kind == "python"]) == 300
    assert {p.name for p in got if p.kind != "python"} == {"b", "libc6", "zlib1g"}


def test_npm_lock_files_report_what_is_not_installed() -> None:
    lock3 = json.dumps({"name": "app", "lockfileVersion": 3, "packages": {
        "": {"name": "app", "version": "1.0.0"},
        "node_modules/lodash": {"version": "4.17.15"},
        "node_modules/minimist": {"version": "1.2.5"},
        "node_modules/a/node_modules/minimist": {"version": "0.0.8"},
        "node_modules/linked": {"link": True, "resolved": "../x"}}}).encode()
    lock1 = json.dumps({"name": "old", "lockfileVersion": 1, "dependencies": {
        "qs": {"version": "6.5.1", "dependencies": {"side": {"version": "0.1.0"}}}}}).encode()
    blobs = Blobs([tar([("srv/app/package-lock.json", lock3, "file"),
                        ("srv/app/node_modules/lodash/package.json", b'{"name": "lodash", "version": "4.17.15"}',
                         "file"),
                        ("srv/old/npm-shrinkwrap.json", lock1, "file"),
                        ("srv/app/node_modules/lodash/package-lock.json", lock1, "file")])])  # a dependency's own
    got = sorted((p.name, p.version, p.path) for p in read_inventory(blobs.digests(), blobs.open).packages)
    assert got == [("lodash", "4.17.15", "srv/app/node_modules/lodash/package.json"),  # installed: once
                   ("minimist", "0.0.8", "srv/app/package-lock.json"),
                   ("minimist", "1.2.5", "srv/app/package-lock.json"),
                   ("qs", "6.5.1", "srv/old/npm-shrinkwrap.json"),
                   ("side", "0.1.0", "srv/old/npm-shrinkwrap.json")]


def test_concatenated_gzip_members_across_read_boundaries() -> None:
    import os

    from berth.scanning.layers import READ_SIZE, inflated

    for n in range(READ_SIZE - 3000, READ_SIZE + 3000, 997):  # the first member ends at, before or after a read
        first = gzip.compress(os.urandom(n), compresslevel=1)
        out = b"".join(inflated(io.BytesIO(first + gzip.compress(b"tail" * 1000))))
        assert len(out) == n + 4000 and out.endswith(b"tail" * 1000), n
