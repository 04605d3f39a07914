"""Checks `berth serve` makes before it starts the HTTP server: each failure is one line, exit code 2.

The common mistakes of a first start (a busy port, a data dir that cannot be written, TLS files that
are not there, a database that does not answer) end here, named, instead of in a traceback from
whatever layer meets them first.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


class StartupError(Exception):
    """A reason not to start, said in one line."""


def check_port(host: str, port: int) -> None:
    """The port must be free. granian binds each worker with SO_REUSEPORT, so a second server on a busy port
    would share it silently; a probe bound without SO_REUSEPORT fails while anyone listens there.
    (SO_REUSEADDR lets it through a restart's TIME_WAIT connections, never past a listener.)"""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise StartupError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(addr)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise StartupError(f"port {port} on {host} is already in use (another berth or another program "
                                   f"listens there); stop it or choose --port") from None
            raise StartupError(f"cannot listen on {host}:{port}: {e.strerror}") from None


def check_data_dir(path: Path) -> None:
    """The data dir exists (or can be made), is a directory, and takes a file."""
    if path.exists() and not path.is_dir():
        raise StartupError(f"data dir {path} is not a directory")
    try:
        if not path.exists():  # made private whatever the umask: it will hold the database and the master key
            path.mkdir(parents=True, mode=0o700, exist_ok=True)
            os.chmod(path, 0o700)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".berth-write-check-"):
            pass
    except OSError as e:
        raise StartupError(f"data dir {path} is not writable: {e.strerror or e}") from None


def check_tls(cert: str, key: str) -> None:
    """Both files exist, can be read, and are a certificate and its key."""
    for what, name in (("certificate", cert), ("key", key)):
        try:
            with open(name, "rb"):
                pass
        except OSError as e:
            raise StartupError(f"TLS {what} {name}: {e.strerror}") from None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError) as e:
        raise StartupError(f"TLS certificate {cert} and key {key} do not load: {e}") from None


def masked_url(url: str) -> str:
    """A database URL without its password, fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def wait_for_postgres(url: str, seconds: float, progress: Callable[[str], None]) -> None:
    """Connect until PostgreSQL answers, for at most `seconds`, saying each failed attempt; then give up."""
    import asyncio

    import asyncpg

    async def attempt() -> None:
        conn = await asyncpg.connect(url, timeout=5)
        await conn.close()

    deadline = time.monotonic() + seconds
    tries = 0
    while True:
        tries += 1
        try:
            asyncio.run(attempt())
            return
        except (TimeoutError, OSError, asyncpg.PostgresError) as e:
            reason = _reason(e)
            if isinstance(e, asyncpg.PostgresError) and not isinstance(e, asyncpg.CannotConnectNowError):
                # answered, and refused: waiting does not help (wrong password, no such database)
                raise StartupError(f"PostgreSQL at {masked_url(url)} refused the connection: {reason}") from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise StartupError(f"PostgreSQL at {masked_url(url)} is unreachable after {tries} attempts "
                                   f"in {seconds:g} s: {reason}") from None
            progress(f"berth: waiting for PostgreSQL at {masked_url(url)} (attempt {tries}: {reason}); "
                     f"{left:.0f} s left")
            time.sleep(min(1.0 * tries, 5.0, max(left, 0.1)))


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def check_all(host: str, port: int, data_dir: Path, tls_cert: str, tls_key: str) -> None:
    check_data_dir(data_dir)
    if tls_cert:
        check_tls(tls_cert, tls_key)
    check_port(host, port)


def stop_line(started: float) -> str:
    return f"berth: stopped cleanly after {time.monotonic() - started:.0f} s (pid {os.getpid()})"
