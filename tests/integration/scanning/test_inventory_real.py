"""The readers on real package data: this machine's dpkg status, pip- and npm-installed trees, a Go binary
and a Rust binary (cargo-auditable's section) built here; umoci layers with whiteouts."""

from __future__ import annotations

from berth.scanning.inventory import read_inventory
from tests.support.scan_images import GO_TEXT_VERSION, ScanImage


def test_real_image_inventory(scan_image: ScanImage) -> None:
    inv = read_inventory(scan_image.layers(), scan_image.open)
    assert inv.os is not None and inv.os.id == "debian" and inv.os.version_id
    dpkg = {p.name: p for p in inv.packages if p.kind == "dpkg"}
    assert {n: p.version for n, p in dpkg.items()} == scan_image.dpkg
    assert dpkg["libc6"].source == "glibc" and dpkg["libssl3"].source == "openssl"
    python = {(p.name, p.version) for p in inv.packages if p.kind == "python"}
    assert python == {("requests", "2.19.1"), ("jinja2", "2.10")}  # urllib3's METADATA was whited out
    npm = {(p.name, p.version) for p in inv.packages if p.kind == "npm"}
    assert ("minimist", "1.2.5") in npm and not any(n == "lodash" for n, _ in npm)
    go = {(p.name, p.version, p.path) for p in inv.packages if p.kind == "go"}
    assert ("golang.org/x/text", GO_TEXT_VERSION, scan_image.go_binary) in go
    assert any(n == "stdlib" for n, _, _ in go)
    cargo = sorted((p.name, p.version, p.path) for p in inv.packages if p.kind == "cargo")
    assert cargo == [("libc", "0.2.150", "usr/local/bin/rusthello"), ("smallvec", "1.6.0", "usr/local/bin/rusthello"),
                     ("time", "0.1.44", "usr/local/bin/rusthello")]  # crates.io runtime ones: not cc, not git
    java = sorted((p.name, p.version, p.path) for p in inv.packages if p.kind == "maven")
    assert java == [("commons-io:commons-io", "2.11.0", "opt/app/app.jar!/BOOT-INF/lib/commons-io-2.11.0.jar"),
                    ("commons-io:commons-io", "2.11.0", "opt/app/lib/commons-io-2.11.0.jar")]
    layers = scan_image.layers()
    assert {p.layer for p in inv.packages if p.kind == "dpkg"} == {layers[0]}
    assert {p.layer for p in inv.packages if p.kind in ("python", "npm", "go", "maven", "cargo")} == {layers[1]}
