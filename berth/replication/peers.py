"""Another Berth deployment as a replication destination, over the OCI Distribution API.

A peer is an endpoint URL with credentials (an access key of the destination account), and the regions
(and optionally accounts) it serves as destinations. Its registry token comes from GetAuthorizationToken,
signed with SigV4 by botocore; the Host header `<account>.dkr.ecr.<region>.<domain>` it names in
`proxyEndpoint` selects the destination registry there. A blob the peer already holds is skipped (HEAD),
one it holds in another repository of this registry's replicas is mounted (`?mount=&from=`), any other is
streamed from the blob store (never read whole).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from berth.db import replication as q
from berth.db.store import Backend
from berth.keys import MasterKey, sealed_column
from berth.registry.model import Repository
from berth.registry.service import RegistryService
from berth.replication.rules import Destination
from berth.replication.service import ACCESS_DENIED, DESTINATION_UNAVAILABLE, REPLICATION_ERROR, Permanent, Retryable

if TYPE_CHECKING:  # imported where used: httpx loads click, rich and pygments (~9 MiB per process)
    import httpx

PEERS_TTL = 5.0  # the peer list is re-read at most this often
TOKEN_MARGIN = 600.0  # a registry token is renewed this long before it expires
ACCEPT = ", ".join(["application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json"])


def _ecr_client(endpoint: str, key: str, secret: str, region: str) -> Any:
    import botocore.session
    from botocore.config import Config

    return botocore.session.get_session().create_client(
        "ecr", region_name=region, endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=60))


def _unavailable(e: Exception) -> Retryable:
    return Retryable(DESTINATION_UNAVAILABLE, f"{type(e).__name__}: {e}")


class PeerClient:
    """One peer: its registry tokens per destination registry, and one HTTP connection pool."""

    def __init__(self, peer: q.PeerRow) -> None:
        import httpx

        self.peer = peer
        self.http = httpx.AsyncClient(base_url=peer.endpoint.rstrip("/"), timeout=httpx.Timeout(60.0, connect=10.0))
        self._tokens: dict[Destination, tuple[str, str, float]] = {}  # -> (Authorization, Host, renew at)
        self._clients: dict[str, Any] = {}  # region -> a botocore ECR client (building one costs ~0.1-1 s)

    async def close(self) -> None:
        await self.http.aclose()

    def _aws_call(self, region: str, op: str, **params: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._clients.get(region)
        if client is None:
            client = self._clients[region] = _ecr_client(self.peer.endpoint, self.peer.access_key_id,
                                                         self.peer.secret_access_key, region)
        try:
            return getattr(client, op)(**params)
        except ClientError as e:
            code = e.response["Error"]["Code"]
            if code in ("AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException"):
                raise Permanent(ACCESS_DENIED, f"the peer {self.peer.name} refused {op}: {e}") from None
            if code == "RepositoryAlreadyExistsException":
                return None
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
            if status >= 500:
                raise Retryable(DESTINATION_UNAVAILABLE, f"the peer {self.peer.name} answered {code}") from None
            raise Permanent(REPLICATION_ERROR, f"the peer {self.peer.name} refused {op}: {e}") from None
        except BotoCoreError as e:
            raise _unavailable(e) from None

    async def aws(self, region: str, op: str, **params: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, lambda: self._aws_call(region, op, **params))

    async def credentials(self, dest: Destination) -> tuple[str, str]:
        """(Authorization header, Host header) for the destination registry at the peer."""
        hit = self._tokens.get(dest)
        if hit is not None and hit[2] > time.time():
            return hit[0], hit[1]
        out = await self.aws(dest.region, "get_authorization_token", registryIds=[dest.registry_id])
        data = out["authorizationData"][0]
        auth = "Basic " + data["authorizationToken"]  # already base64("AWS:" + token)
        base64.b64decode(data["authorizationToken"], validate=True)
        host = urlsplit(data["proxyEndpoint"]).netloc
        expires = data["expiresAt"].timestamp() if hasattr(data["expiresAt"], "timestamp") else float(data["expiresAt"])
        self._tokens[dest] = (auth, host, expires - TOKEN_MARGIN)
        return auth, host

    def forget(self, dest: Destination) -> None:
        self._tokens.pop(dest, None)

    async def request(self, dest: Destination, method: str, path: str, **kw: Any) -> httpx.Response:
        import httpx

        auth, host = await self.credentials(dest)
        headers = {"Authorization": auth, "Host": host, **kw.pop("headers", {})}
        try:
            r = await self.http.request(method, path, headers=headers, **kw)
        except httpx.HTTPError as e:
            raise _unavailable(e) from None
        if r.status_code == 401:
            self.forget(dest)  # expired or revoked: the next attempt asks for a new token
            raise Retryable(ACCESS_DENIED, f"the peer {self.peer.name} answered 401 to {method} {path}")
        if r.status_code == 403:
            raise Permanent(ACCESS_DENIED, f"the peer {self.peer.name} denied {method} {path}: {r.text[:300]}")
        if r.status_code >= 500:
            raise Retryable(DESTINATION_UNAVAILABLE, f"the peer {self.peer.name} answered {r.status_code} to "
                                                     f"{method} {path}")
        return r


def _codes(r: httpx.Response) -> list[str]:
    try:
        return [e.get("code", "") for e in r.json().get("errors", [])]
    except ValueError:
        return []


class PeerTarget:
    """The Target (berth.replication.service) of one destination registry at a peer."""

    def __init__(self, client: PeerClient, registry: RegistryService, db: Backend, dest: Destination) -> None:
        self.c = client
        self.registry = registry
        self.db = db
        self.dest = dest

    async def _req(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return await self.c.request(self.dest, method, path, **kw)

    async def prepare(self, name: str) -> str:
        r = await self._req("GET", f"/v2/{name}/tags/list", params={"n": "1"})
        if r.status_code == 404:
            await create_repository_at_peer(self.c, self.dest, name)
        elif r.status_code != 200:
            raise Permanent(REPLICATION_ERROR, f"the peer answered {r.status_code} for {name}: {r.text[:300]}")
        return name

    async def has_manifest(self, name: str, digest: str) -> bool:
        r = await self._req("HEAD", f"/v2/{name}/manifests/{digest}", headers={"Accept": ACCEPT})
        return r.status_code == 200

    async def put_blob(self, name: str, source: Repository, digest: str, size: int) -> str:
        if (await self._req("HEAD", f"/v2/{name}/blobs/{digest}")).status_code == 200:
            return "present"
        other = await self.db.read(q.completed_elsewhere, source.account_id, source.region, source.name, digest,
                                   self.dest.registry_id, self.dest.region)
        params = {"mount": digest, "from": other} if other else {}
        r = await self._req("POST", f"/v2/{name}/blobs/uploads/", params=params)
        if r.status_code == 201:
            return "mounted"  # nothing sent
        if r.status_code != 202:
            raise Permanent(REPLICATION_ERROR, f"the peer refused an upload to {name}: {r.status_code} {r.text[:300]}")
        where = urlsplit(r.headers["Location"])  # a path, or an absolute URL naming the registry host
        location = where.path + (f"?{where.query}" if where.query else "")
        r = await self._req("PUT", location, params={"digest": digest}, content=self._stream(digest, size),
                            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
        if r.status_code != 201:
            raise Retryable(REPLICATION_ERROR, f"the peer did not take blob {digest}: {r.status_code} {r.text[:300]}")
        return "sent"

    async def _stream(self, digest: str, size: int) -> AsyncIterator[bytes]:
        async for chunk in self.registry.read_blob(digest, 0, size):
            yield chunk

    async def put_manifest(self, name: str, reference: str, body: bytes, media_type: str) -> bool:
        r = await self._req("PUT", f"/v2/{name}/manifests/{reference}", content=body,
                            headers={"Content-Type": media_type})
        if r.status_code == 201:
            return True
        if not reference.startswith("sha256:") and "TAG_INVALID" in _codes(r):
            return False  # an immutable tag there that names another image
        raise Permanent(REPLICATION_ERROR, f"the peer refused manifest {name}:{reference}: {r.status_code} "
                                           f"{r.text[:300]}")

    async def delete(self, name: str, digest: str, tags: Sequence[str], image: bool) -> None:
        for ref in [digest] if image else list(tags):
            r = await self._req("DELETE", f"/v2/{name}/manifests/{ref}")
            if r.status_code not in (202, 404):
                raise Retryable(REPLICATION_ERROR, f"the peer did not delete {name}:{ref}: {r.status_code}")


async def create_repository_at_peer(client: PeerClient, dest: Destination, name: str) -> None:
    """Replication creates a missing repository at a peer with CreateRepository (default settings there;
    the peer's own creation templates are its business)."""
    await client.aws(dest.region, "create_repository", registryId=dest.registry_id, repositoryName=name)


PEER_SECRETS = sealed_column("replication_peers")  # the peers' secret access keys, sealed with the master key


class PeerDirectory:
    """The peers stored in the database, re-read every few seconds; one PeerClient each."""

    def __init__(self, db: Backend, registry: RegistryService, clock: Callable[[], float] = time.monotonic,
                 keys: MasterKey | None = None) -> None:
        self.db = db
        self.registry = registry
        self.clock = clock
        self.keys = keys  # opens the peers' sealed secrets (None: plain-text ones only, in tests)
        self._peers: list[q.PeerRow] = []
        self._read_at = -PEERS_TTL
        self._clients: dict[q.PeerRow, PeerClient] = {}

    async def target(self, source_account: str, dest: Destination) -> PeerTarget | None:
        if self.clock() - self._read_at >= PEERS_TTL:
            self._peers = [self._opened(p) for p in await self.db.read(q.list_peers)]
            self._read_at = self.clock()
        for peer in self._peers:
            if peer.serves(dest.registry_id, dest.region):
                client = self._clients.get(peer)
                if client is None:
                    client = self._clients[peer] = PeerClient(peer)
                return PeerTarget(client, self.registry, self.db, dest)
        return None

    def _opened(self, peer: q.PeerRow) -> q.PeerRow:
        if self.keys is None:
            return peer
        return replace(peer, secret_access_key=self.keys.open(peer.secret_access_key, PEER_SECRETS.context(peer.name)))

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
