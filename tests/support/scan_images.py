"""Real package data for the scanner's tests, built once per session: this machine's dpkg status (trimmed),
old Python releases installed with `pip install --target`, npm packages installed with `npm install`,
a Go binary and a Rust binary (with cargo-auditable's section) built here by the real toolchains, put in an
image with umoci (whiteouts included)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.images import OciLayout, run
from tests.support.servers import require_tool, unavailable

# The old releases planted in the image, and the fixed versions OSV records for them.
PY_PACKAGES = ("requests==2.19.1", "urllib3==1.24.1", "Jinja2==2.10")
NPM_PACKAGES = ("lodash@4.17.15", "minimist@1.2.5")
DPKG_KEEP = ("libc6", "zlib1g", "tar", "openssl", "libssl3", "bash", "coreutils", "gzip", "dpkg", "base-files",
             "perl-base", "libsystemd0", "libudev1", "curl", "libcurl4")
JAR = Path("/usr/share/java/commons-io-2.11.0.jar")  # Debian's libcommons-io-java: a real Maven jar
GO_TEXT_VERSION = "v0.3.7"  # golang.org/x/text before 0.3.8: GO-2022-1059 / CVE-2022-32149
# The dependency list a cargo-auditable build of a program using smallvec 1.6.0 and time 0.1.44 embeds, in
# auditable-serde's format: the root (local), two crates.io runtime dependencies with advisories
# (RUSTSEC-2021-0003, RUSTSEC-2020-0071), a build-only dependency (not linked in) and a git one.
RUST_AUDIT = {"packages": [
    {"name": "hello", "version": "0.1.0", "source": "local", "dependencies": [1, 2, 3, 4], "root": True},
    {"name": "smallvec", "version": "1.6.0", "source": "crates.io"},
    {"name": "time", "version": "0.1.44", "source": "crates.io", "dependencies": [5]},
    {"name": "cc", "version": "1.0.83", "source": "crates.io", "kind": "build"},
    {"name": "forked", "version": "0.2.0", "source": "git"},
    {"name": "libc", "version": "0.2.150", "source": "crates.io"},
]}


def trimmed_status(keep: tuple[str, ...] = DPKG_KEEP) -> bytes:
    """The machine's real /var/lib/dpkg/status, only the stanzas of `keep` (those installed here)."""
    text = Path("/var/lib/dpkg/status").read_text()
    stanzas = [s for s in text.split("\n\n") if s.strip()]
    kept = [s for s in stanzas if s.split("\n", 1)[0].removeprefix("Package: ").strip() in keep]
    return ("\n\n".join(kept) + "\n").encode()


def dpkg_versions(status: bytes) -> dict[str, str]:
    out = {}
    for s in status.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in s.splitlines() if ": " in line and not line.startswith(" "))
        if "Package" in fields:
            out[fields["Package"]] = fields["Version"]
    return out


def tree(root: Path, prefix: str) -> dict[str, bytes]:
    out = {}
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            out[f"{prefix}/{p.relative_to(root)}"] = p.read_bytes()
    return out


def pip_target(work: Path) -> Path:
    target = work / "site-packages"
    if not target.exists():
        run([os.environ.get("BERTH_PIP", "/work/main/.venv/bin/pip"), "install", "--quiet", "--no-deps",
             "--no-compile", "--target", target, *PY_PACKAGES], timeout=300)
    return target


def npm_tree(work: Path) -> Path:
    require_tool("npm")
    root = work / "npmapp"
    if not (root / "node_modules").exists():
        root.mkdir(parents=True, exist_ok=True)
        (root / "package.json").write_text('{"name": "app", "version": "1.0.0", "private": true}')
        run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", root, *NPM_PACKAGES],
            timeout=300)
    return root / "node_modules"


def fat_jar(inner: Path) -> bytes:
    """A Spring Boot style archive carrying the real jar under BOOT-INF/lib (a nested archive)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nMain-Class: org.springframework.boot.loader."
                                           "JarLauncher\nImplementation-Title: app\n")
        z.writestr(f"BOOT-INF/lib/{inner.name}", inner.read_bytes())
    return buf.getvalue()


def _zip_module(proxy: Path, module: str, version: str, files: dict[str, str]) -> None:
    base = proxy / module / "@v"
    base.mkdir(parents=True, exist_ok=True)
    (base / "list").write_text(version + "\n")
    (base / f"{version}.info").write_text(f'{{"Version": "{version}"}}')
    (base / f"{version}.mod").write_text(f"module {module}\n")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"{module}@{version}/go.mod", f"module {module}\n")
        for name, text in files.items():
            z.writestr(f"{module}@{version}/{name}", text)
    (base / f"{version}.zip").write_bytes(buf.getvalue())


def go_binary(work: Path) -> Path:
    """A Go program built here with the real toolchain, depending on golang.org/x/text v0.3.7 served from a
    local file:// module proxy (no network: the module's content is a stand-in, its path and version real)."""
    require_tool("go")
    out = work / "gohello"
    if out.exists():
        return out
    proxy, src = work / "goproxy", work / "gosrc"
    _zip_module(proxy, "golang.org/x/text", GO_TEXT_VERSION,
                {"language/language.go": "package language\n\nfunc Tag() string { return \"en\" }\n"})
    src.mkdir(parents=True, exist_ok=True)
    (src / "go.mod").write_text(f"module example.com/hello\n\ngo 1.19\n\nrequire golang.org/x/text {GO_TEXT_VERSION}\n")
    (src / "main.go").write_text('package main\n\nimport (\n\t"fmt"\n\t"golang.org/x/text/language"\n)\n\n'
                                 'func main() { fmt.Println(language.Tag()) }\n')
    env = {**os.environ, "GOPROXY": f"file://{proxy}", "GOSUMDB": "off", "GOFLAGS": "-mod=mod",
           "GOPATH": str(work / "gopath"), "GOCACHE": str(work / "gocache"), "CGO_ENABLED": "0"}
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=src, env=env, check=True, capture_output=True,
                   timeout=300)
    return out


def rust_binary(work: Path) -> Path:
    """A Rust program built here with the real rustc, carrying cargo-auditable's data as cargo-auditable links
    it (cargo-auditable itself is neither in Debian nor reachable on crates.io here): an object file whose
    non-allocated (sh_flags 0) section `.dep-v0` holds the zlib-compressed JSON under the global symbol
    AUDITABLE_VERSION_INFO, passed to the linker with `--undefined=AUDITABLE_VERSION_INFO` so that it is kept."""
    import json
    import zlib

    require_tool("rustc", "as")
    out = work / "rusthello"
    if out.exists():
        return out
    src = work / "rustsrc"
    src.mkdir(parents=True, exist_ok=True)
    (src / "audit.z").write_bytes(zlib.compress(json.dumps(RUST_AUDIT, separators=(",", ":")).encode(), 7))
    (src / "dep.s").write_text(f'\t.section .dep-v0,"",@progbits\n\t.globl AUDITABLE_VERSION_INFO\n'
                               f'\t.type AUDITABLE_VERSION_INFO,@object\nAUDITABLE_VERSION_INFO:\n'
                               f'\t.incbin "{src / "audit.z"}"\n'
                               f'\t.size AUDITABLE_VERSION_INFO, .-AUDITABLE_VERSION_INFO\n')
    (src / "main.rs").write_text('fn main() { println!("hello from an audited binary"); }\n')
    run(["as", "-o", src / "dep.o", src / "dep.s"])
    run(["rustc", "-O", "-C", f"link-arg={src / 'dep.o'}", "-C", "link-arg=-Wl,--undefined=AUDITABLE_VERSION_INFO",
         "-o", out, src / "main.rs"], timeout=300)
    return out


@dataclass
class ScanImage:
    layout: OciLayout
    tag: str
    digest: str
    dpkg: dict[str, str]  # package -> version in the image
    go_binary: str  # its path in the image
    deleted: tuple[str, ...]  # paths a later layer deletes

    def layers(self) -> list[str]:
        return [d["digest"] for d in self.layout.json(self.digest)["layers"]]

    def open(self, digest: str) -> io.BufferedReader:
        return open(self.layout.path(digest), "rb")


def build_scan_image(layout: Path, work: Path, tag: str = "scan") -> ScanImage:
    """Three layers: the OS (os-release, dpkg status), the language trees and a Go binary, then a layer that
    deletes urllib3's METADATA (a whiteout) and lodash's package.json."""
    require_tool("umoci")
    status = trimmed_status()
    site = pip_target(work)
    os_layer = {"etc/os-release": Path("/etc/os-release").read_bytes(), "var/lib/dpkg/status": status}
    lang = {**tree(site, "usr/local/lib/python3.11/site-packages"), **tree(npm_tree(work), "srv/app/node_modules")}
    lang = {k: v for k, v in lang.items() if ".dist-info/" in k or k.endswith("package.json")}
    lang["usr/local/bin/gohello"] = go_binary(work).read_bytes()
    lang["usr/local/bin/rusthello"] = rust_binary(work).read_bytes()
    if not JAR.exists():
        unavailable(f"{JAR} (Debian package libcommons-io-java)")
    lang["opt/app/lib/commons-io-2.11.0.jar"] = JAR.read_bytes()
    lang["opt/app/app.jar"] = fat_jar(JAR)
    meta = next(k for k in lang if "urllib3-1.24.1.dist-info/METADATA" in k)
    lodash = "srv/app/node_modules/lodash/package.json"
    digest = umoci_image(layout, work, tag, [os_layer, lang, {meta: None, lodash: None}],
                         executables={"usr/local/bin/gohello", "usr/local/bin/rusthello"})
    return ScanImage(OciLayout(layout), tag, digest, dpkg_versions(status), "usr/local/bin/gohello",
                     (meta, lodash))


def umoci_image(layout: Path, work: Path, tag: str, layers: list[dict[str, bytes | None]],
                executables: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    """One umoci layer per mapping (path -> bytes, or None to delete it: a whiteout); its manifest digest."""
    if not (layout / "index.json").exists():
        run(["umoci", "init", "--layout", layout])
    bundle = work / f"bundle-{tag}"
    shutil.rmtree(bundle, ignore_errors=True)
    run(["umoci", "new", "--image", f"{layout}:{tag}-base"])
    run(["umoci", "unpack", "--rootless", "--image", f"{layout}:{tag}-base", bundle])
    rootfs = bundle / "rootfs"
    for i, changes in enumerate(layers):
        for rel, data in changes.items():
            p = rootfs / rel
            if data is None:
                p.unlink()
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
                p.chmod(0o755 if rel in executables else 0o644)
        run(["umoci", "repack", "--refresh-bundle", "--image", f"{layout}:{tag}-layer{i}", bundle])
    run(["umoci", "config", "--image", f"{layout}:{tag}-layer{len(layers) - 1}", "--tag", tag,
         "--architecture", "amd64", "--os", "linux"])
    return OciLayout(layout).digest(tag)
