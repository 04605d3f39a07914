"""cargo-auditable's `.dep-v0` section read from a forward-only layer stream: a real ELF executable of this
machine with the section added by objcopy (as a linker would place a non-allocated section: after the
program's sections), read through the tar reader in small chunks and from an ordinary file; bad data is
nothing, never an error. The binary rustc links is tested in tests/integration/scanning."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest

from berth.scanning.readers import rust
from berth.scanning.readers.golang import HEAD
from berth.scanning.tar import Body, TarStream
from tests.support.scan_images import RUST_AUDIT
from tests.support.servers import require_tool

BIG, SMALL = "bash", "true"  # an ELF larger than the reader's first read, and one smaller


def audited(tmp_path: Path, section: bytes, tool: str = BIG) -> bytes:
    require_tool("objcopy", tool)
    src = Path(shutil.which(tool) or f"/bin/{tool}")
    assert (src.stat().st_size > HEAD) == (tool == BIG)
    (tmp_path / "dep").write_bytes(section)
    subprocess.run(["objcopy", "--add-section", f".dep-v0={tmp_path / 'dep'}", "--set-section-flags",
                    ".dep-v0=contents,readonly", str(src), str(tmp_path / "out")], check=True)
    return (tmp_path / "out").read_bytes()


def through_tar(binary: bytes, chunk: int) -> list[tuple[str, str]] | None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("usr/bin/app")
        info.size, info.mode = len(binary), 0o755
        t.addfile(info, io.BytesIO(binary))
        t.addfile(tarfile.TarInfo("after"), io.BytesIO(b""))
    data = buf.getvalue()
    stream = TarStream(iter([data[i:i + chunk] for i in range(0, len(data), chunk)]))
    got = None
    names = []
    for m, end in stream.members():
        names.append(m.name)
        if m.name == "usr/bin/app":
            f = Body(stream, end, m.size)
            found = rust.read(f.read(HEAD), f, m.size, m.name)  # type: ignore[arg-type]
            got = None if found is None else sorted((p.name, p.version) for p in found)
    assert names == ["usr/bin/app", "after"]  # the stream is intact after the reader's skip
    return got


WANT = [("libc", "0.2.150"), ("smallvec", "1.6.0"), ("time", "0.1.44")]


def test_section_found_in_a_stream_and_a_file(tmp_path: Path) -> None:
    for tool in (BIG, SMALL):
        binary = audited(tmp_path, zlib.compress(json.dumps(RUST_AUDIT).encode(), 7), tool)
        for chunk in (997, 64 * 1024, 1 << 20):
            assert through_tar(binary, chunk) == WANT, (tool, chunk)
        f = io.BytesIO(binary)
        found = rust.read(f.read(HEAD), f, len(binary), "app")
        assert found is not None and sorted((p.name, p.version) for p in found) == WANT


def test_section_before_the_window_is_not_guessed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = audited(tmp_path, zlib.compress(json.dumps(RUST_AUDIT).encode(), 7))
    monkeypatch.setattr(rust, "WINDOW", 64)  # the names table and the section are further back than this
    assert through_tar(binary, 4096) is None


def test_bad_sections_are_nothing(tmp_path: Path) -> None:
    bomb = zlib.compress(b'{"packages": ["' + b"a" * (rust.JSON_CAP + 10) + b'"]}', 9)
    for section in (b"not zlib", zlib.compress(b"not json"), zlib.compress(b'{"other": 1}'), bomb):
        assert through_tar(audited(tmp_path, section), 65536) is None
    plain = Path(shutil.which(BIG) or f"/bin/{BIG}").read_bytes()  # an ELF without the section
    assert through_tar(plain, 65536) is None
