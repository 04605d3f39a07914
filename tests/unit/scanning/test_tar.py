"""The layer tar reader against real writers: GNU tar (gnu, posix/pax, ustar and v7 formats, long names and
links, sparse files) and Python's tarfile (every format, base-256 sizes), with tarfile's own reading of each
archive as the oracle; and the dpkg status parser against python-debian's Deb822 on real status files."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from debian.deb822 import Deb822

from berth.scanning.readers import dpkg
from berth.scanning.tar import Body, Member, TarError, TarStream
from tests.support.servers import require_tool


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def kind_of(m: tarfile.TarInfo | Member) -> str:
    return "reg" if m.isreg() else "dir" if m.isdir() else "sym" if m.issym() else "lnk" if m.islnk() else "other"


def ours(data: bytes, size: int = 7919) -> list[tuple[str, int, int, str, str, bytes]]:
    """(name, size, mode, kind, link, body) of each member, the body read in odd-sized pieces."""
    stream = TarStream(iter(chunks(data, size)))
    out = []
    for m, end in stream.members():
        kind = kind_of(m)
        body = b""
        if m.isreg():
            b = Body(stream, end, m.size)
            while piece := b.read(1000):
                body += piece
        out.append((m.name.rstrip("/"), m.size, m.mode & 0o7777, kind, m.linkname, body))
    return out


def oracle(data: bytes) -> list[tuple[str, int, int, str, str, bytes]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as t:
        for m in t:
            kind = kind_of(m)
            f = t.extractfile(m) if m.isreg() else None
            out.append((m.name, m.size, m.mode & 0o7777, kind, m.linkname, f.read() if f else b""))
    return out


def tree(root: Path) -> Path:
    long_dir = root / ("d" * 90) / ("e" * 90)
    long_dir.mkdir(parents=True)
    (long_dir / ("f" * 120)).write_bytes(os.urandom(3000))
    (root / "exact512").write_bytes(b"x" * 512)
    (root / "empty").write_bytes(b"")
    (root / "bin").write_bytes(os.urandom(70_000))
    (root / "bin").chmod(0o755)
    (root / "ünïcode-naмe").write_bytes(b"unicode")
    os.symlink("../" + "t" * 150, root / "longlink")
    os.symlink("bin", root / "short")
    os.link(root / "bin", root / "hard")
    with open(root / "sparse", "wb") as f:
        f.write(b"head")
        f.seek(5 << 20)
        f.write(b"tail")
    return root


@pytest.mark.parametrize("fmt", ["gnu", "posix", "ustar", "v7"])
def test_gnu_tar_archives_read_as_tarfile_reads_them(fmt: str, tmp_path: Path) -> None:
    require_tool("tar")
    src = tree(tmp_path / "src")
    names = sorted(p.name for p in src.iterdir())
    if fmt in ("ustar", "v7"):  # names and links these formats cannot hold
        shutil.rmtree(src / ("d" * 90))
        (src / "longlink").unlink()
        names = sorted(p.name for p in src.iterdir())
    args = ["--sparse"] if fmt in ("gnu", "posix") else []
    data = subprocess.run(["tar", "-c", f"--format={fmt}", *args, "-C", str(src), *names], check=True,
                          capture_output=True).stdout
    got, want = ours(data), oracle(data)
    if fmt in ("gnu", "posix"):  # tarfile expands sparse members; this reader skips them as not regular
        want = [w for w in want if w[0] != "sparse"]
        assert [g for g in got if g[0] == "sparse"][0][3] == "other"
        got = [g for g in got if g[0] != "sparse"]
    assert got == want
    assert len(got) >= 7


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_tarfile_archives_every_chunking(fmt: int) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for i, size in enumerate([0, 1, 511, 512, 513, 4096, 100_000]):
            long = "p" * 80 + "/" + "n" * 60 if fmt == tarfile.USTAR_FORMAT else "n" * 200  # ustar: prefix + name
            info = tarfile.TarInfo(f"dir{i}/{long}{i}")
            info.size, info.mode, info.mtime = size, 0o640 + i, 1_700_000_000.5
            t.addfile(info, io.BytesIO(bytes([i]) * size))
        d = tarfile.TarInfo("a/dir/")
        d.type = tarfile.DIRTYPE
        t.addfile(d)
    data = buf.getvalue()
    for size in (1, 100, 512, 7919, 1 << 20):
        assert ours(data, size) == oracle(data)


def test_base256_size_and_old_directories() -> None:
    info = tarfile.TarInfo("big")
    info.size = 9
    hdr = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    hdr[124:136] = b"\x80" + (9).to_bytes(11, "big")  # base-256, as GNU tar writes sizes >= 8 GiB
    hdr[148:156] = b"        "
    hdr[148:156] = f"{sum(hdr):06o}\x00 ".encode()
    old = tarfile.TarInfo("olddir/")
    old.type = tarfile.AREGTYPE
    data = bytes(hdr) + b"123456789".ljust(512, b"\x00") + old.tobuf(tarfile.USTAR_FORMAT) + bytes(1024)
    got = ours(data)
    assert [(g[0], g[1], g[3], g[5]) for g in got] == [("big", 9, "reg", b"123456789"), ("olddir", 0, "dir", b"")]


@pytest.mark.parametrize("data", [b"", b"x" * 100, b"not a tar archive at all" * 100, bytes(1024)])
def test_not_a_tar(data: bytes) -> None:
    with pytest.raises(TarError):
        ours(data)


def test_truncated_body_is_an_error() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("f")
        info.size = 5000
        t.addfile(info, io.BytesIO(b"z" * 5000))
    with pytest.raises(TarError):
        ours(buf.getvalue()[:2048])


def test_dpkg_fields_as_deb822_reads_them() -> None:
    text = Path("/var/lib/dpkg/status").read_text("utf-8", "replace")
    text += "\n\nPackage: odd\nversion:  1.0 \n \nPACKAGE: next\nVersion: 2\n"
    want = [{k.lower(): v for k, v in p.items() if k.lower() in ("package", "status", "version", "source")}
            for p in Deb822.iter_paragraphs(text.splitlines(keepends=True), use_apt_pkg=False)]
    got = [f for f in dpkg.fields(text) if f]
    assert got == want
    assert len(got) > 100
