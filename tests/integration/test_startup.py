"""Start-up mistakes are one line and exit code 2; a clean start and stop say so (issue 11).

Drives the real `berth` command in a subprocess.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import BerthServer, free_port, unavailable

pytestmark = pytest.mark.integration


def berth(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "berth", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def one_line_error(r: subprocess.CompletedProcess[str], *words: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("berth: "), r.stderr
    assert "Traceback" not in r.stderr and "panicked" not in r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def serve(tmp: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return berth("serve", "--host", "127.0.0.1", "--auth", "none", *args, env=env)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    server = BerthServer(tmp_path_factory.mktemp("first") / "data").start()
    try:
        yield server
    finally:
        server.stop()


def test_second_berth_on_a_busy_port_refuses(running: BerthServer, tmp_path: Path) -> None:
    r = serve(tmp_path, "--port", str(running.port), "--data-dir", str(tmp_path / "other"))
    one_line_error(r, f"port {running.port}", "already in use")
    # the first keeps all the traffic
    for _ in range(20):
        assert httpx.get(running.url + "/v2/", timeout=10).status_code == 200


def test_port_held_by_another_program(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        one_line_error(serve(tmp_path, "--port", str(port), "--data-dir", str(tmp_path / "d")), "already in use")


@pytest.mark.parametrize("port", ["0", "65536", "70000"])
def test_port_out_of_range(tmp_path: Path, port: str) -> None:
    one_line_error(serve(tmp_path, "--port", port, "--data-dir", str(tmp_path / "d")), "out of range")


def test_data_dir_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    one_line_error(serve(tmp_path, "--port", str(free_port()), "--data-dir", str(f)), "not a directory")
    one_line_error(serve(tmp_path, "--port", str(free_port()), "--data-dir", str(f / "sub")), "not writable")


@pytest.fixture
def read_only_dir() -> Iterator[Path]:
    if os.geteuid() != 0:
        unavailable("mounting a read-only tmpfs needs root")
    mount = Path(tempfile.mkdtemp(prefix="berth-ro-"))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)]).returncode != 0:
        unavailable("cannot mount a tmpfs")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


def test_unwritable_data_dir(read_only_dir: Path, tmp_path: Path) -> None:
    for d in (read_only_dir, read_only_dir / "new"):
        one_line_error(serve(tmp_path, "--port", str(free_port()), "--data-dir", str(d)), "not writable", str(d))


def test_missing_or_unreadable_tls_files(tmp_path: Path) -> None:
    common = ("--port", str(free_port()), "--data-dir", str(tmp_path / "d"))
    one_line_error(serve(tmp_path, *common, "--tls-cert", str(tmp_path / "no.pem"), "--tls-key",
                         str(tmp_path / "no.key")), "TLS certificate", "No such file")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    one_line_error(serve(tmp_path, *common, "--tls-cert", str(junk), "--tls-key", str(junk)), "do not load")
    one_line_error(serve(tmp_path, *common, "--tls-cert", str(junk)), "go together")


def test_unreachable_postgres_after_a_bounded_wait(tmp_path: Path) -> None:
    dead = free_port()
    r = serve(tmp_path, "--port", str(free_port()), "--data-dir", str(tmp_path / "d"), "--database-url",
              f"postgresql://berth:hunter2@127.0.0.1:{dead}/berth", "--database-wait-seconds", "2")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert any("waiting for PostgreSQL" in ln and "attempt 1" in ln for ln in lines), r.stderr
    assert "unreachable after" in lines[-1] and "Traceback" not in r.stderr
    assert "hunter2" not in r.stderr  # the password is masked


def test_help_shows_every_default() -> None:
    r = berth("serve", "--help", env={"COLUMNS": "400"})
    assert r.returncode == 0
    options = [ln for ln in r.stdout.splitlines() if ln.lstrip("│ ").startswith("--") and "--help" not in ln]
    assert len(options) >= 15
    for ln in options:
        assert "[default:" in ln, ln
    assert "[default: (5000)]" in r.stdout and "[default: (127.0.0.1)]" in r.stdout


def test_start_and_clean_stop_lines(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "berth", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--auth", "none", "--data-dir", str(tmp_path / "d")], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        from tests.support.servers import wait_http

        wait_http(f"http://127.0.0.1:{port}/v2/", 30, proc)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    berth_lines = [ln for ln in err.splitlines() if ln.startswith("berth: ")]
    assert berth_lines[0].startswith(f"berth: serving http://127.0.0.1:{port} ")
    for part in (str(tmp_path / "d"), "SQLite", "auth none", f"<account>.dkr.ecr.<region>.localhost:{port}"):
        assert part in berth_lines[0], (part, berth_lines[0])
    assert berth_lines[-1].startswith("berth: stopped cleanly")
