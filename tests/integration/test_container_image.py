"""The Containerfile builds with `buildah bud`, the image is pushed into a Berth under test (the registry
stores its own image), pulled back from it, and the pulled image runs `berth serve`, which answers /readyz.

No registry of base images answers here, so the base is a real Debian bookworm root with python3 (the
Containerfile's BASE argument; its default is the official Python image): on a bookworm machine, assembled
in seconds from the machine's own installed packages (tests/support/debian_root.py: minbase's packages plus
python3, python3-venv and ca-certificates, with their dpkg database); elsewhere made by debootstrap from the
Debian archive and cached (~3 min the first time, then reused).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import debian_root
from tests.support.images import ContainerTool, run
from tests.support.servers import BerthServer, free_port, require_tool, unavailable, wait_http

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("BERTH_TEST_CACHE", "/var/tmp/berth-test-cache"))
BASE = "localhost/berth-base:bookworm"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def _debian_mirror() -> str:
    """The Debian archive this machine's apt uses (the only one that answers here)."""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            m = re.match(r"\s*(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+/debian)/?\s*", line)
            if m and "security" not in line:
                return m.group(1)
    return "http://deb.debian.org/debian"


EXTRA = ("python3", "python3-venv", "ca-certificates")


def _debootstrap_root() -> Path:
    root = CACHE / "debian-bookworm-python3"
    if not (root / ".complete").exists():
        require_tool("debootstrap")
        subprocess.run(["rm", "-rf", str(root)], check=True)
        root.parent.mkdir(parents=True, exist_ok=True)
        run(["debootstrap", "--variant=minbase", f"--include={','.join(EXTRA)}", "bookworm",
             root, _debian_mirror()], timeout=1200)
        (root / ".complete").write_text("")
    return root


@pytest.fixture(scope="module")
def buildah(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerTool]:
    require_tool("buildah")
    if os.geteuid() != 0:
        unavailable("debootstrap and chroot isolation need root")  # skips locally, fails under CI
    tool = ContainerTool("buildah", tmp_path_factory.mktemp("image-build"))
    ctr = tool("from", "scratch")
    packages = debian_root.closure(EXTRA) if debian_root.host_release() == "bookworm" else None
    if packages is not None:  # assembled straight into the container's root (no second copy)
        debian_root.assemble(Path(tool("mount", ctr)), packages)
        tool("umount", ctr)
    else:
        tool("copy", ctr, _debootstrap_root(), "/", timeout=600)
    tool("commit", "-q", ctr, BASE, timeout=600)
    tool("rm", ctr)
    try:
        yield tool
    finally:
        tool.close()


def test_the_containerfile_builds_and_the_image_berth_stores_runs(buildah: ContainerTool, tmp_path: Path) -> None:
    args = ["bud", "--isolation", "chroot", "--build-arg", f"BASE={BASE}", "-t", "localhost/berth:test",
            "-f", ROOT / "Containerfile"]
    if HOST_CA.exists():  # a TLS-intercepting proxy between here and PyPI: its CA is in the host's bundle
        args += ["--volume", f"{HOST_CA}:/run/host-ca.crt:ro", "--build-arg", "PIP_CERT=/run/host-ca.crt"]
    buildah(*args, ROOT, timeout=1200)

    server = BerthServer(tmp_path / "registry").start()
    try:
        ref = f"{server.host}/berth/berth:0.1.0"
        buildah("push", "--tls-verify=false", "localhost/berth:test", f"docker://{ref}", timeout=600)
        r = httpx.get(f"{server.url}/v2/berth/berth/tags/list", timeout=30)
        assert r.json()["tags"] == ["0.1.0"]
        buildah("rmi", "localhost/berth:test")
        buildah("pull", "--tls-verify=false", f"docker://{ref}", timeout=600)  # back from Berth
        config = buildah("inspect", "--format", "{{.OCIv1.Config.Entrypoint}} {{.OCIv1.Config.Cmd}} "
                                                "{{.OCIv1.Config.User}} {{.OCIv1.Config.ExposedPorts}}", ref)
        assert config.startswith("[berth] [serve] 10001"), config
        assert "5000/tcp" in config
    finally:
        server.stop()

    # the image pulled from Berth runs Berth (chroot isolation: the host's network, so loopback is shared)
    ctr = buildah("from", ref)
    port = free_port()
    cmd = buildah.argv("run", "--isolation", "chroot", "--user", "10001", ctr, "--",
                       "berth", "serve", "--host", "127.0.0.1", "--port", str(port), "--auth", "none")
    log = tmp_path / "in-container.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 60, proc)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json() == {"ready": True}, ready.text
        assert httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=10).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        buildah("rm", ctr)
    assert "serving http://127.0.0.1" in log.read_text(errors="replace")
