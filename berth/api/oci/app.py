"""/v2/: translate OCI Distribution requests into registry service calls and back."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote

from berth.api.auth import Authenticator, challenge
from berth.api.oci.errors import EdgeError, error_body, fault_body
from berth.api.oci.http import (
    Body,
    Chunks,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    body_chunks,
    encode_headers,
    read_body,
    respond,
    respond_encoded,
    respond_file,
    respond_stream,
)
from berth.iam import tokens
from berth.iam.authz import Authorizer, Context, Principal, called_via, repository_arn
from berth.registry import manifests
from berth.registry.errors import (
    BlobUnknown,
    Denied,
    DigestInvalid,
    FailureLog,
    ManifestUnknown,
    PaginationNumberInvalid,
    RangeInvalid,
    RegistryError,
    SizeInvalid,
    TagInvalid,
    UploadOutOfOrder,
    from_failure,
)
from berth.registry.model import Repository
from berth.registry.names import check_name, is_digest
from berth.registry.service import RegistryService

_ROUTE = re.compile(r"(.+)/(manifests|blobs|tags|referrers)/(.*)", re.S)
_HOST = re.compile(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.(.+?)(?::\d+)?")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_CONTENT_RANGE = re.compile(r"(?:bytes )?(\d+)-(\d+)(?:/\d+|/\*)?")
log = logging.getLogger("berth.oci")


def _not_found() -> EdgeError:
    return EdgeError("NOT_FOUND", "not found")


def _not_allowed(method: str) -> EdgeError:
    return EdgeError("METHOD_NOT_ALLOWED", f"{method} not allowed here")


REDIRECT_EXPIRES = 900  # seconds a presigned blob URL stays valid
# A local blob file larger than one read is streamed through one reused buffer (RegistryService.read_file), up
# to STREAMED_FILES at once per process; past that, whole ones go by granian's pathsend. Measured side by side
# (1 GiB, 6 interleaved rounds): one pull 1125 MB/s streamed against 799 by pathsend (0.58 against 0.64 CPU s
# per GiB); 8 concurrent 256 MiB pulls 1711-1793 MB/s streamed against 1200-1215, but at 142-152 MiB peak PSS
# against 112-115 and a manifest GET p99 of 82-106 ms against 34 (granian buffers a few MiB per streamed
# response; pathsend costs the event loop nothing). A range (206) is always streamed: pathsend sends whole files.
FILE_MIN = 1 << 20
STREAMED_FILES = 2


@dataclass(slots=True)
class Call:
    """One request, with what the edge worked out about it."""

    scope: Scope
    receive: Receive
    send: Send
    method: str
    principal: Principal
    account: str
    region: str
    query: dict[str, list[str]]
    headers: dict[bytes, bytes]
    _context: Context | None = None
    streaming: bool = False  # a streamed body has begun: an error can no longer be answered

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")

    @property
    def context(self) -> Context:
        if self._context is None:
            self._context = Context(source_ip=(self.scope.get("client") or ("",))[0],
                                    secure_transport=self.scope["scheme"] == "https")
        return self._context


class OciApi:
    def __init__(self, registry: RegistryService, authenticator: Authenticator, authorizer: Authorizer,
                 default_account: str, default_region: str, domain: str,
                 blob_url: Callable[[str, int], str | None] | None = None,
                 regions: Collection[str] = ()) -> None:
        self.registry = registry
        self.regions = frozenset(regions) | {default_region}  # the regions served (BERTH_REGIONS)
        self.blob_url = blob_url  # set with --storage-redirect: a presigned storage URL for a blob GET
        self.authn = authenticator
        self.authz = authorizer
        self.default = (default_account, default_region)
        self.domain = domain
        self._manifest_headers: dict[tuple[str, str], list[tuple[bytes, bytes]]] = {}
        self._failures = FailureLog(log)
        self._streamed_files = 0  # local blob files being streamed now (the event loop's thread only)

    # entry point

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        call: Call | None = None
        headers = dict(scope["headers"])
        receive = body = Body(receive, headers)
        try:
            try:
                raw_auth = headers.get(b"authorization")
                authorization = None if raw_auth is None else raw_auth.decode("latin-1")
                if authorization is None and method == "GET":
                    authorization = _download_token(scope)
                principal = self.authn.registry_principal(authorization)
                if principal is None:
                    status, payload = error_body("UNAUTHORIZED", self.authn.registry_refusal(authorization))
                    host = headers.get(b"host", b"berth").decode("latin-1")
                    realm = challenge(host, scope.get("scheme", "http"))
                    await body.drain()
                    await respond(send, status, [("Content-Type", "application/json"), *realm.items()],
                                  payload, head=method == "HEAD")
                    return
                host_header = headers.get(b"host")
                account, region = self._registry_of(None if host_header is None else host_header.decode("latin-1"))
                note = scope.get("berth")  # the access log's (berth/observe), when it runs
                if note is not None:
                    note["principal"], note["account"] = principal.arn, account
                qs = scope.get("query_string", b"")
                call = Call(scope, receive, send, method, principal, account, region,
                            parse_qs(qs.decode("latin-1"), keep_blank_values=True) if qs else {}, headers)
                await self._route(call, scope["path"])
            except (RegistryError, EdgeError) as e:
                if call is not None and call.streaming:
                    raise
                await body.drain()
                await self._error(send, e, method == "HEAD")
        except ClientDisconnected:
            if call is None or not call.streaming:
                await _cut_short(send, scope)
            return
        except Exception as exc:
            failure = from_failure(exc)
            if failure is not None and not (call is not None and call.streaming):
                self._failures.note(failure, exc, f"OCI {method} {scope.get('path')}")
                await self._error(send, failure, method == "HEAD")
                return
            request_id = str(uuid.uuid4())
            log.exception("OCI %s %s failed; request id %s", method, scope.get("path"), request_id)
            if call is not None and call.streaming:  # the status line is out: only cutting the body short is left
                raise
            status, payload = fault_body(request_id)
            await respond(send, status, [("Content-Type", "application/json"), ("X-Request-Id", request_id)],
                          payload, head=method == "HEAD")

    def _registry_of(self, host: str | None) -> tuple[str, str]:
        """`<account>.dkr.ecr.<region>.<domain>` selects account and region; any other host the default."""
        if host:
            m = _HOST.fullmatch(host)
            if m and m.group(3) == self.domain:
                if m.group(2) not in self.regions:
                    raise EdgeError("REGION_UNKNOWN", f"Credential should be scoped to a valid region, not "
                                                      f"'{m.group(2)}': this deployment does not serve it.")
                return m.group(1), m.group(2)
        return self.default

    async def _error(self, send: Send, e: RegistryError | EdgeError, head: bool) -> None:
        status, body = error_body(e.code, e.message, e.detail)
        headers = [("Content-Type", "application/json")]
        if "size" in e.extra:  # an out-of-order chunk: tell the client where the upload stands
            headers.append(("Range", f"0-{max(e.extra['size'] - 1, 0)}"))
        if "location" in e.extra:
            headers.append(("Location", e.extra["location"]))
        if "content_range" in e.extra:
            headers.append(("Content-Range", e.extra["content_range"]))
        if "retry_after" in e.extra:
            headers.append(("Retry-After", str(e.extra["retry_after"])))
        await respond(send, status, headers, body, head=head)

    async def _route(self, c: Call, path: str) -> None:
        if path in ("/v2", "/v2/"):
            return await respond(c.send, 200, [("Content-Type", "application/json")], b"{}",
                                 head=c.method == "HEAD")
        if not path.startswith("/v2/"):
            raise _not_found()
        rest = path[4:]
        if rest == "_catalog":
            return await self._only(c, ("GET",), self.catalog)
        m = _ROUTE.fullmatch(rest)
        if m is None:
            raise _not_found()
        name, kind, tail = m.groups()
        check_name(name)
        if kind == "manifests" and tail and "/" not in tail:
            return await self._manifests(c, name, tail)
        if kind == "blobs":
            if tail in ("uploads", "uploads/"):
                return await self._only(c, ("POST",), self.start_upload, name)
            if tail.startswith("uploads/") and "/" not in tail[8:]:
                return await self._upload(c, name, tail[8:])
            if tail and "/" not in tail:
                return await self._blob(c, name, tail)
        if kind == "tags" and tail == "list":
            return await self._only(c, ("GET",), self.tags_list, name)
        if kind == "referrers" and tail and "/" not in tail:
            return await self._only(c, ("GET",), self.referrers, name, tail)
        raise _not_found()

    async def _only(self, c: Call, methods: tuple[str, ...], handler: Callable[..., Any], *args: Any) -> None:
        if c.method not in methods:
            raise _not_allowed(c.method)
        await handler(c, *args)

    async def _manifests(self, c: Call, name: str, ref: str) -> None:
        handler = {"GET": self.get_manifest, "HEAD": self.get_manifest, "PUT": self.put_manifest,
                   "DELETE": self.delete_manifest}.get(c.method)
        if handler is None:
            raise _not_allowed(c.method)
        await handler(c, name, ref)

    async def _blob(self, c: Call, name: str, digest: str) -> None:
        handler = {"GET": self.get_blob, "HEAD": self.get_blob, "DELETE": self.delete_blob}.get(c.method)
        if handler is None:
            raise _not_allowed(c.method)
        await handler(c, name, digest)

    async def _upload(self, c: Call, name: str, upload_id: str) -> None:
        handler = {"GET": self.upload_status, "PATCH": self.patch_upload, "PUT": self.complete_upload,
                   "DELETE": self.cancel_upload}.get(c.method)
        if handler is None:
            raise _not_allowed(c.method)
        await handler(c, name, upload_id)

    # authorization and repositories

    async def _allow(self, c: Call, actions: tuple[str, ...], account: str, region: str, name: str,
                     via: bool = False) -> None:
        """`via`: Berth acts on the caller's behalf (aws:CalledVia ecr.amazonaws.com)."""
        resource = repository_arn(region, account, name)
        context = called_via(c.context) if via else c.context
        for action in actions:
            decision = await self.authz.authorize(c.principal, action, resource, context)
            if not decision.allowed:
                note = c.scope.get("berth")
                if note is not None:
                    note["denied"] = action
                raise Denied(f"{c.principal.arn} is not authorized to perform {action} on {resource}")

    async def _repo(self, c: Call, name: str, *actions: str, for_push: bool = False) -> Repository:
        await self._allow(c, actions, c.account, c.region, name)
        async def may_create() -> None:
            await self._allow(c, ("ecr:CreateRepository",), c.account, c.region, name, via=True)

        return await self.registry.repository(c.account, c.region, name, for_push=for_push, may_create=may_create)

    # base and catalog

    async def catalog(self, c: Call) -> None:
        await self._allow(c, ("ecr:DescribeRepositories",), c.account, c.region, "*")
        n = _page_size(c.arg("n"))
        last = _last(c)
        names = await self.registry.catalog(c.account, c.region, last, n)
        headers = [("Content-Type", "application/json")]
        if n is not None and n > 0 and len(names) == n:
            headers.append(("Link", f'</v2/_catalog?n={n}&last={quote(names[-1], safe="")}>; rel="next"'))
        await respond(c.send, 200, headers, _json({"repositories": names}))

    # manifests

    async def get_manifest(self, c: Call, name: str, ref: str) -> None:
        await self._allow(c, ("ecr:BatchGetImage",), c.account, c.region, name)

        async def may_import(creating: bool) -> None:  # a pull-through cache miss (ECR's actions for it)
            actions = ("ecr:BatchImportUpstreamImage",) + (("ecr:CreateRepository",) if creating else ())
            await self._allow(c, actions, c.account, c.region, name, via=True)

        try:
            m = await self.registry.pull_manifest(c.account, c.region, name, ref, record=c.method == "GET",
                                                  principal=c.principal.arn, may_import=may_import)
        except (TagInvalid, DigestInvalid):  # no manifest has such a name; the spec: not found MUST be 404
            raise ManifestUnknown("manifest unknown: not a valid tag or digest",
                                  detail={"digest" if is_digest(ref) else "tag": ref[:200]}) from None
        key = (m.digest, m.media_type)  # the bytes, hence every header, follow from these
        encoded = self._manifest_headers.get(key)
        if encoded is None:
            headers = [("Content-Type", m.media_type), ("Docker-Content-Digest", m.digest),
                       ("ETag", f'"{m.digest}"')]
            if m.subject:
                headers.append(("OCI-Subject", m.subject))
            encoded = encode_headers(headers, len(m.body))
            if len(self._manifest_headers) >= 10_000:
                self._manifest_headers.clear()
            self._manifest_headers[key] = encoded
        await respond_encoded(c.send, 200, encoded, m.body, head=c.method == "HEAD")

    async def put_manifest(self, c: Call, name: str, ref: str) -> None:
        await self._allow(c, ("ecr:PutImage",), c.account, c.region, name)
        body = await read_body(c.receive, manifests.MAX_MANIFEST)
        prepared = self.registry.prepare_manifest(ref, body, c.header(b"content-type"))  # before create-on-push
        repo = await self._repo(c, name, "ecr:PutImage", for_push=True)
        m = await self.registry.put_manifest(repo, prepared)
        headers = [("Location", f"/v2/{name}/manifests/{m.digest}"), ("Docker-Content-Digest", m.digest)]
        if m.subject:
            headers.append(("OCI-Subject", m.subject))
        await respond(c.send, 201, headers)

    async def delete_manifest(self, c: Call, name: str, ref: str) -> None:
        repo = await self._repo(c, name, "ecr:BatchDeleteImage")
        await self.registry.delete_manifest(repo, ref)
        await respond(c.send, 202)

    async def tags_list(self, c: Call, name: str) -> None:
        repo = await self._repo(c, name, "ecr:ListImages")
        n = _page_size(c.arg("n"))
        tags = await self.registry.list_tags(repo, _last(c), n)
        headers = [("Content-Type", "application/json")]
        if n is not None and n > 0 and len(tags) == n:
            headers.append(("Link", f'</v2/{name}/tags/list?n={n}&last={quote(tags[-1], safe="")}>; rel="next"'))
        await respond(c.send, 200, headers, _json({"name": name, "tags": tags}))

    async def referrers(self, c: Call, name: str, digest: str) -> None:
        repo = await self._repo(c, name, "ecr:BatchGetImage")
        artifact_type = c.arg("artifactType")
        entries = []

        async def may_import(creating: bool) -> None:  # a pull-through cache's upstream referrers, as a pull
            await self._allow(c, ("ecr:BatchImportUpstreamImage",), c.account, c.region, name)

        for r in await self.registry.referrers(repo, digest, None if artifact_type is None else [artifact_type],
                                               may_import):
            entry: dict[str, object] = {"mediaType": r.media_type, "digest": r.digest, "size": r.size}
            if r.artifact_type:
                entry["artifactType"] = r.artifact_type
            if r.annotations:
                entry["annotations"] = r.annotations
            entries.append(entry)
        body = _json({"schemaVersion": 2, "mediaType": manifests.OCI_INDEX, "manifests": entries})
        headers = [("Content-Type", manifests.OCI_INDEX)]
        if artifact_type is not None:
            headers.append(("OCI-Filters-Applied", "artifactType"))
        await respond(c.send, 200, headers, body)

    # blobs

    async def get_blob(self, c: Call, name: str, digest: str) -> None:
        head = c.method == "HEAD"
        action = "ecr:BatchCheckLayerAvailability" if head else "ecr:GetDownloadUrlForLayer"
        repo = await self._repo(c, name, action)
        try:
            size = await self.registry.blob_size(repo, digest)
        except DigestInvalid:  # no blob has such a name; the spec: not found MUST be 404
            raise BlobUnknown("blob unknown to registry: not a valid digest", detail={"digest": digest[:200]}) from None
        if not head and self.blob_url is not None:  # as ECR does: the client fetches from storage itself
            url = self.blob_url(digest, REDIRECT_EXPIRES)
            if url is not None:
                return await respond(c.send, 307, [("Location", url), ("Docker-Content-Digest", digest)])
        headers = [("Content-Type", "application/octet-stream"), ("Docker-Content-Digest", digest),
                   ("Accept-Ranges", "bytes"), ("ETag", f'"{digest}"')]
        start, end, status = 0, size, 200
        wanted = c.header(b"range")
        span = _byte_range(wanted, size) if wanted is not None else None
        if span is not None:
            (start, end), status = span, 206
            headers.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))
        if head:
            return await respond(c.send, status, headers, head=True, length=end - start)
        path = await self.registry.blob_file(digest, size) if end - start > FILE_MIN else None
        if path is None:  # small, or not a local file (object storage; a pull-through blob still arriving)
            return await self._stream(c, status, headers, end - start, self.registry.read_blob(digest, start, end))
        if status == 200 and self._streamed_files >= STREAMED_FILES \
                and "http.response.pathsend" in c.scope.get("extensions", ()):
            c.streaming = True  # granian reads and sends the file itself, off the event loop's thread
            return await respond_file(c.send, status, headers, size, path)
        self._streamed_files += 1
        try:
            await self._stream(c, status, headers, end - start, self.registry.read_file(path, start, end))
        finally:
            self._streamed_files -= 1

    async def _stream(self, c: Call, status: int, headers: list[tuple[str, str]], length: int,
                      chunks: Chunks) -> None:
        first: bytes | bytearray = await anext(chunks, b"")  # unreadable bytes fail here, before the status line
        c.streaming = True
        await respond_stream(c.send, status, headers, length, chunks, first)

    async def delete_blob(self, c: Call, name: str, digest: str) -> None:
        repo = await self._repo(c, name, "ecr:BatchDeleteImage")
        await self.registry.delete_blob(repo, digest)
        await respond(c.send, 202)

    # uploads

    def _upload_headers(self, name: str, upload_id: str, size: int) -> list[tuple[str, str]]:
        return [("Location", f"/v2/{name}/blobs/uploads/{upload_id}"), ("Range", f"0-{max(size - 1, 0)}"),
                ("Docker-Upload-UUID", upload_id)]

    async def start_upload(self, c: Call, name: str) -> None:
        digest, mount, source = c.arg("digest"), c.arg("mount"), c.arg("from")
        if mount is not None and source:
            repo = await self._repo(c, name, "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
                                    "ecr:CompleteLayerUpload", for_push=True)
            if await self._mount(c, repo, source, mount):
                return await respond(c.send, 201, [("Location", f"/v2/{name}/blobs/{mount}"),
                                                   ("Docker-Content-Digest", mount)])
        elif digest is not None:
            actions = ("ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload")
            await self._allow(c, actions, c.account, c.region, name)

            async def verified_into() -> int:  # the repository, created on push only once the bytes check out
                return (await self._repo(c, name, *actions, for_push=True)).id

            await self.registry.uploads.put(verified_into, digest, body_chunks(c.receive), _content_length(c))
            return await respond(c.send, 201, [("Location", f"/v2/{name}/blobs/{digest}"),
                                               ("Docker-Content-Digest", digest)])
        else:
            repo = await self._repo(c, name, "ecr:InitiateLayerUpload", for_push=True)
        upload_id = await self.registry.uploads.start(repo.id)
        await respond(c.send, 202, self._upload_headers(name, upload_id, 0))

    async def _mount(self, c: Call, repo: Repository, source: str, digest: str) -> bool:
        """Mount when the caller may pull from `source` and it holds the blob; otherwise False."""
        try:
            check_name(source)
            await self._allow(c, ("ecr:GetDownloadUrlForLayer",), c.account, c.region, source)
            src = await self.registry.repository(c.account, c.region, source)
            return await self.registry.mount_blob(repo, src, digest) is not None
        except RegistryError:
            return False

    async def upload_status(self, c: Call, name: str, upload_id: str) -> None:
        repo = await self._repo(c, name, "ecr:InitiateLayerUpload")
        size = await self.registry.uploads.status(repo.id, upload_id)
        await respond(c.send, 204, self._upload_headers(name, upload_id, size))

    async def patch_upload(self, c: Call, name: str, upload_id: str) -> None:
        repo = await self._repo(c, name, "ecr:UploadLayerPart")
        content_range = None
        raw = c.header(b"content-range")
        if raw is not None:
            m = _CONTENT_RANGE.fullmatch(raw.strip())
            if m is None:
                raise SizeInvalid(f"invalid Content-Range {raw!r}")
            first, last = _number(m.group(1)), _number(m.group(2))
            if first is None or last is None:  # beyond any upload (and int's digit limit): cannot continue it
                raise UploadOutOfOrder(f"Content-Range {raw[:64]!r} lies beyond any upload",
                                       size=await self.registry.uploads.status(repo.id, upload_id),
                                       location=f"/v2/{name}/blobs/uploads/{upload_id}")
            content_range = (first, last)
        try:
            size = await self.registry.uploads.append(repo.id, upload_id, body_chunks(c.receive), content_range,
                                                      _content_length(c))
        except RegistryError as e:
            if e.code != "BLOB_UPLOAD_UNKNOWN":  # never echo an unknown (client-chosen) id into a header
                e.extra.setdefault("location", f"/v2/{name}/blobs/uploads/{upload_id}")
            raise
        await respond(c.send, 202, self._upload_headers(name, upload_id, size))

    async def complete_upload(self, c: Call, name: str, upload_id: str) -> None:
        repo = await self._repo(c, name, "ecr:CompleteLayerUpload")
        digest = c.arg("digest")
        if not digest:
            raise DigestInvalid("digest query parameter required")
        await self.registry.uploads.complete(repo.id, upload_id, digest, body_chunks(c.receive), _content_length(c))
        await respond(c.send, 201, [("Location", f"/v2/{name}/blobs/{digest}"), ("Docker-Content-Digest", digest)])

    async def cancel_upload(self, c: Call, name: str, upload_id: str) -> None:
        repo = await self._repo(c, name, "ecr:InitiateLayerUpload")
        await self.registry.uploads.cancel(repo.id, upload_id)
        await respond(c.send, 204)


async def unavailable(scope: Scope, send: Send) -> None:
    """503 UNAVAILABLE: the app has not started (no lifespan startup has run) or is shutting down."""
    status, body = error_body("UNAVAILABLE", "the registry is not serving: it has not started, or is shutting down")
    await respond(send, status, [("Content-Type", "application/json"), ("Retry-After", "1")], body,
                  head=scope["method"] == "HEAD")


async def _cut_short(send: Send, scope: Scope) -> None:
    """granian hands the app `http.disconnect` both when the client has gone and when its chunked body is
    malformed (a bad chunk size, a chunk longer than announced), while the connection is still open.
    Answer 400 either way: a client still there reads why; for one that has gone, the send is dropped."""
    code = "MANIFEST_INVALID" if "/manifests/" in scope["path"] else "BLOB_UPLOAD_INVALID"
    status, body = error_body(code, "the request body ended early or its chunked encoding is malformed")
    try:
        await respond(send, status, [("Content-Type", "application/json"), ("Connection", "close")], body,
                      head=scope["method"] == "HEAD")
    except Exception:  # noqa: BLE001 - the client has really gone: nothing to tell
        log.debug("client gone before an answer to %s %s", scope["method"], scope["path"])


def _download_token(scope: Scope) -> str | None:
    """The credentials of a GetDownloadUrlForLayer URL (its signed query) with the host and path it
    is presented on: the authenticator checks they are exactly those signed. Blob GETs only."""
    qs: bytes = scope.get("query_string", b"")
    parts = scope["path"].rsplit("/", 2)
    if len(parts) != 3 or parts[1] != "blobs" or ":" not in parts[2]:
        return None
    host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
    return tokens.download_credentials(host, scope["path"], qs.decode("latin-1"))


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _page_size(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise PaginationNumberInvalid(f"invalid page size n={raw[:64]!r}")
    n = _number(raw)
    if n is None:
        raise PaginationNumberInvalid(f"page size n={raw[:64]!r} is too large")
    return n


def _last(c: Call) -> str:
    """The `last` bound of a listing. No name or tag contains NUL (and PostgreSQL text cannot)."""
    return (c.arg("last") or "").split("\x00", 1)[0]


def _content_length(c: Call) -> int | None:
    raw = c.header(b"content-length")
    if raw is None:
        return None
    n = _number(raw.strip()) if raw.strip().isdigit() else None
    if n is None:
        raise SizeInvalid(f"invalid Content-Length {raw[:64]!r}")
    return n


MAX_DIGITS = 18  # below 2**63 (every database's integer); int() itself refuses 4,300 digits


def _number(digits: str) -> int | None:
    """An ASCII decimal as an int, or None when it has more than MAX_DIGITS significant digits."""
    significant = digits.lstrip("0")
    return None if len(significant) > MAX_DIGITS else int(significant or "0")


def _byte_range(raw: str, size: int) -> tuple[int, int] | None:
    """[start, end) for a single `bytes=` range, None to ignore it (RFC 9110), 416 if unsatisfiable."""
    m = _RANGE.fullmatch(raw.strip())
    if m is None or (m.group(1) == "" and m.group(2) == ""):
        return None
    first, last = m.groups()
    unsatisfiable = RangeInvalid("range not satisfiable", content_range=f"bytes */{size}")
    huge = 1 << 63  # a number of more digits than any size: past the end (RFC 9110 clamps a last-pos)
    if first == "":  # suffix: the last N bytes
        n = _number(last)
        n = huge if n is None else n
        if n == 0 or size == 0:
            raise unsatisfiable
        return max(size - n, 0), size
    start = _number(first)
    end = None if last == "" else _number(last)
    start = huge if start is None else start
    if last != "" and end is None:
        end = huge
    if start >= size or (end is not None and end < start):
        raise unsatisfiable
    return start, size if end is None else min(end + 1, size)
