"""A small OCI distribution client for pull-through upstreams: manifests and blobs, with the token (Bearer)
and Basic challenges registries answer 401 with. Blocking (httpx.Client): callers run it on worker threads,
where a blob is read, hashed and written without a hop per chunk.

How an upstream URL is written (upstreamRegistryUrl):
- `host[:port]` (ECR's own form): HTTPS. For a loopback host or one listed as insecure, HTTPS is tried first
  and plain HTTP used when the host does not speak TLS (as Docker treats insecure registries). This is the
  form for the aws CLI v1, which fetches any parameter value starting with http:// or https://.
- `https://host[:port]`: HTTPS only. `http://host[:port]`: plain HTTP, refused unless the host is loopback
  or listed as insecure (BERTH_PULL_THROUGH_INSECURE).
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import re
import sys
import threading
import time
import types
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import urllib3

if TYPE_CHECKING:  # imported where used: httpx loads click, rich and pygments (~9 MiB per process)
    import httpx

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_URL = re.compile(r"(?:(https?)://)?((?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]*"
                  r"[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?/?")
_PARAM = re.compile(r'(\w+)="([^"]*)"')
MAX_MANIFEST = 4 * 1024 * 1024


class UpstreamError(Exception):
    """`kind`: ECR's ImageFailureCode vocabulary (UpstreamAccessDenied, UpstreamTooManyRequests,
    UpstreamUnavailable) or NotFound. `credentials`: the rule's own credentials could not be had (its secret,
    its role), so nothing can be pulled through it."""

    def __init__(self, kind: str, message: str, credentials: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.credentials = credentials


class BadUpstreamUrl(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str  # host[:port]
    schemes: tuple[str, ...]  # tried in order


def is_loopback(host: str) -> bool:
    bare = host.strip("[]")
    if bare == "localhost" or bare.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def endpoint(url: str, insecure: Collection[str] = ()) -> Endpoint:
    """How to reach the upstream `url` (see the module text); BadUpstreamUrl when it is not one."""
    m = _URL.fullmatch(url.strip())
    if m is None:
        raise BadUpstreamUrl(f"'{url}' is not a registry address: host[:port], https://host[:port] or, for a "
                             "loopback or insecure host, http://host[:port]")
    scheme, host, port = m.groups()
    if port is not None and not 0 < int(port) < 65536:
        raise BadUpstreamUrl(f"invalid port in '{url}'")
    address = host + (f":{port}" if port else "")
    lax = is_loopback(host) or host in insecure or address in insecure
    if scheme == "http" and not lax:
        raise BadUpstreamUrl(f"plain http is allowed only for a loopback or explicitly insecure upstream, not "
                             f"'{address}' (set BERTH_PULL_THROUGH_INSECURE={address} to allow it)")
    if scheme is not None:
        return Endpoint(address, (scheme,))
    return Endpoint(address, ("https", "http") if lax else ("https",))


def import_httpx() -> types.ModuleType:
    """httpx, without its command line: `import httpx` loads httpx._main, and with it click, rich and pygments
    (0.2 s of the 0.3 s import, and most of its ~9 MiB), which a client never uses. Where httpx is loaded
    already (peers.py), that one is used."""
    if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
        cli = types.ModuleType("httpx._main")

        def main() -> None:
            raise RuntimeError("httpx's command line is not loaded in Berth")

        cli.main = main  # type: ignore[attr-defined]
        sys.modules["httpx._main"] = cli
    import httpx

    return httpx


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_PARAM.findall(rest))


def _failure(resp: httpx.Response, what: str) -> UpstreamError:
    if resp.status_code in (401, 403):
        return UpstreamError("UpstreamAccessDenied", f"the upstream refused {what} ({resp.status_code})")
    if resp.status_code == 429:
        return UpstreamError("UpstreamTooManyRequests", f"the upstream throttled {what} (429)")
    if resp.status_code == 404:
        return UpstreamError("NotFound", f"the upstream has no {what}")
    return UpstreamError("UpstreamUnavailable", f"the upstream answered {resp.status_code} for {what}")


def _index_entries(body: bytes) -> list[dict[str, object]]:
    try:
        doc = json.loads(body)
    except ValueError:
        raise UpstreamError("UpstreamUnavailable", "the upstream's referrers are not JSON") from None
    entries = doc.get("manifests") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise UpstreamError("UpstreamUnavailable", "the upstream's referrers are not an image index")
    return [e for e in entries if isinstance(e, dict)]


class UpstreamClient:
    def __init__(self, url: str, credentials: tuple[str, str] | None = None, insecure: Collection[str] = (),
                 timeout: float = 30.0) -> None:
        self.endpoint = endpoint(url, insecure)
        self.credentials = credentials
        self._timeout = timeout
        self._http: httpx.Client | None = None  # made on first use, on a worker thread (see `http`)
        self._pool = urllib3.PoolManager(num_pools=4, maxsize=8)  # blob bodies (see blob())
        self._base: str | None = None
        self._auth: dict[str, tuple[str, float]] = {}  # scope -> (Authorization value, expiry)
        self._lock = threading.Lock()

    @property
    def http(self) -> httpx.Client:
        """The httpx client, made when first needed: importing httpx and loading the CA bundle take 0.3-1 s
        under load, which must not block the event loop (the cache calls this client on worker threads)."""
        with self._lock:
            if self._http is None:
                httpx = import_httpx()
                self._http = httpx.Client(timeout=httpx.Timeout(self._timeout, read=300.0), follow_redirects=True,
                                          verify=True)
            return self._http

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
        self._pool.clear()

    def base(self) -> str:
        """The scheme://host that answers (the first of the endpoint's schemes that does)."""
        httpx = import_httpx()

        if self._base is not None:
            return self._base
        last: Exception | None = None
        for scheme in self.endpoint.schemes:
            candidate = f"{scheme}://{self.endpoint.host}"
            try:
                self.http.get(candidate + "/v2/", timeout=10.0)
            except httpx.HTTPError as e:
                last = e
                continue
            self._base = candidate
            return candidate
        raise UpstreamError("UpstreamUnavailable", f"the upstream {self.endpoint.host} cannot be reached: {last}")

    def _authorize(self, header: str, scope: str) -> str | None:
        """The Authorization value answering a challenge, or None when we have nothing to answer with."""
        httpx = import_httpx()

        scheme, params = _challenge(header)
        if scheme == "basic":
            if self.credentials is None:
                return None
            user, password = self.credentials
            return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if scheme != "bearer" or "realm" not in params:
            return None
        query = {"service": params["service"]} if "service" in params else {}
        query["scope"] = scope
        auth = httpx.BasicAuth(*self.credentials) if self.credentials else None
        try:
            resp = self.http.get(params["realm"], params=query, auth=auth, timeout=30.0)
        except httpx.HTTPError as e:
            raise UpstreamError("UpstreamUnavailable", f"the upstream's token service cannot be reached: {e}") \
                from None
        if resp.status_code != 200:
            raise _failure(resp, "a token")
        doc = resp.json()
        token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str):
            raise UpstreamError("UpstreamAccessDenied", "the upstream's token service gave no token")
        ttl = doc.get("expires_in") if isinstance(doc.get("expires_in"), int) else 60
        with self._lock:
            self._auth[scope] = (f"Bearer {token}", time.monotonic() + max(ttl - 10, 10))
        return f"Bearer {token}"

    def _send(self, method: str, path: str, scope: str, headers: dict[str, str], stream: bool) -> httpx.Response:
        httpx = import_httpx()

        url = self.base() + path
        with self._lock:
            cached = self._auth.get(scope)
        sent = dict(headers)
        if cached is not None and cached[1] > time.monotonic():
            sent["Authorization"] = cached[0]
        for attempt in (0, 1):
            try:
                req = self.http.build_request(method, url, headers=sent)
                resp = self.http.send(req, stream=stream)
            except httpx.HTTPError as e:
                raise UpstreamError("UpstreamUnavailable", f"the upstream {self.endpoint.host} failed: {e}") \
                    from None
            challenge = resp.headers.get("www-authenticate")
            if resp.status_code != 401 or attempt == 1 or challenge is None:
                return resp
            resp.close()
            value = self._authorize(challenge, scope)
            if value is None:
                raise UpstreamError("UpstreamAccessDenied", f"the upstream {self.endpoint.host} requires "
                                                            "credentials (set credentialArn on the rule)")
            if challenge.lower().startswith("basic"):
                with self._lock:
                    self._auth[scope] = (value, time.monotonic() + 3600)
            sent["Authorization"] = value
        raise AssertionError("unreachable")

    def ping(self, repository: str = "") -> None:
        """Reach the upstream and authenticate (for `repository` when given); UpstreamError otherwise."""
        scope = f"repository:{repository}:pull" if repository else "registry:catalog:*"
        resp = self._send("GET", "/v2/", scope, {}, False)
        if resp.status_code not in (200, 404) and not (resp.status_code == 401 and not repository):
            raise _failure(resp, "the registry API")

    def manifest(self, repository: str, reference: str, head: bool = False) -> tuple[bytes, str, str | None]:
        """(body, media type, the digest the upstream names) of a manifest; `head`: no body."""
        resp = self._send("HEAD" if head else "GET", f"/v2/{repository}/manifests/{reference}",
                          f"repository:{repository}:pull", {"Accept": ", ".join(MANIFEST_TYPES)}, False)
        if resp.status_code != 200:
            raise _failure(resp, f"manifest {repository}:{reference}")
        if len(resp.content) > MAX_MANIFEST:
            raise UpstreamError("UpstreamUnavailable", "the upstream manifest is larger than 4 MiB")
        media_type = resp.headers.get("content-type", "").split(";")[0].strip()
        return resp.content, media_type, resp.headers.get("docker-content-digest")

    def referrers(self, repository: str, digest: str) -> list[dict[str, object]]:
        """The descriptors of the manifests whose subject is `digest`: the OCI 1.1 referrers API, or, where
        the upstream answers 404 (no such API: distribution 2.8), the index tagged `sha256-<hex>` (the
        spec's tag-schema fallback; none: no referrers)."""
        resp = self._send("GET", f"/v2/{repository}/referrers/{digest}", f"repository:{repository}:pull",
                          {"Accept": MANIFEST_TYPES[0]}, False)
        if resp.status_code == 200:
            return _index_entries(resp.content)
        if resp.status_code != 404:
            raise _failure(resp, f"the referrers of {digest}")
        try:
            body, _, _ = self.manifest(repository, digest.replace(":", "-", 1))
        except UpstreamError as e:
            if e.kind == "NotFound":
                return []
            raise
        return _index_entries(body)

    def blob_size(self, repository: str, digest: str) -> int:
        """The size of a blob the upstream holds (a HEAD); UpstreamError otherwise."""
        resp = self._send("HEAD", f"/v2/{repository}/blobs/{digest}", f"repository:{repository}:pull", {}, False)
        length = resp.headers.get("content-length", "")
        if resp.status_code != 200 or not length.isdigit():
            raise _failure(resp, f"blob {digest}") if resp.status_code != 200 else \
                UpstreamError("UpstreamUnavailable", f"the upstream gave no size for {digest}")
        return int(length)

    @contextmanager
    def blob(self, repository: str, digest: str) -> Iterator[Iterator[memoryview]]:
        """The body of a blob GET (status 200 checked), as chunks of up to 1 MiB, each valid until the next.

        The body is read with urllib3 (http.client underneath), not httpx: httpx's streamed reads cost ~3 s
        of CPU per GiB here (0.81 s for 256 MiB, against 0.07 s), which made a first pull 7x slower than a
        direct one. httpx still answers the challenge (a HEAD, when no Authorization is cached for the
        scope); a 401 to the GET (a token expired) asks again once."""
        httpx = import_httpx()

        path = f"/v2/{repository}/blobs/{digest}"
        scope = f"repository:{repository}:pull"
        for attempt in (0, 1):
            with self._lock:
                cached = self._auth.get(scope)
            if attempt == 1 or cached is None or cached[1] <= time.monotonic():
                head = self._send("HEAD", path, scope, {}, False)
                if head.status_code != 200:
                    raise _failure(head, f"blob {digest}")
                sent = head.request.headers.get("authorization")
            else:
                sent = cached[0]
            try:
                resp = self._pool.request("GET", self.base() + path, headers={"Authorization": sent} if sent else {},
                                          preload_content=False, decode_content=False, redirect=True,
                                          timeout=urllib3.Timeout(connect=30.0, read=300.0))
            except urllib3.exceptions.HTTPError as e:
                raise UpstreamError("UpstreamUnavailable", f"the upstream {self.endpoint.host} failed: {e}") from None
            if resp.status != 200:
                resp.drain_conn()  # a small error body: the connection stays usable
                resp.release_conn()
                if resp.status == 401 and attempt == 0:
                    with self._lock:
                        self._auth.pop(scope, None)
                    continue
                raise _failure(httpx.Response(resp.status), f"blob {digest}")
            try:
                yield self._chunks(resp)
            except BaseException:
                resp.close()  # part of the body unread: this connection is not reused
                raise
            finally:
                resp.release_conn()
            return
        raise UpstreamError("UpstreamAccessDenied", f"the upstream {self.endpoint.host} refused blob {digest}")

    def _chunks(self, resp: urllib3.BaseHTTPResponse) -> Iterator[memoryview]:
        """The body in chunks of up to 1 MiB read straight into one buffer by http.client's readinto (under
        urllib3's response): no copy and no allocation per chunk. Each chunk is valid until the next."""
        fp = getattr(resp, "_fp", None)
        buf = memoryview(bytearray(1 << 20))
        try:
            if fp is None or not hasattr(fp, "readinto"):
                while chunk := resp.read(1 << 20):
                    yield memoryview(chunk)
                return
            while n := fp.readinto(buf):
                yield buf[:n]
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as e:
            raise UpstreamError("UpstreamUnavailable", f"the upstream {self.endpoint.host} failed: {e}") from None
