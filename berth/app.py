"""The composition root: the only place that names concrete classes and wires them together."""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import AbstractAsyncContextManager, nullcontext
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from berth.api import control
from berth.api.auth import Authenticator, IamAuthenticator, OpenAuthenticator
from berth.api.control import ControlPlane
from berth.api.ecr import operations as ecr_operations
from berth.api.ecr.app import EcrApi, Services
from berth.api.iam import operations as iam_operations
from berth.api.iam.app import IamQueryApi
from berth.api.oci import app as oci
from berth.api.oci.app import OciApi
from berth.api.oci.http import Receive, Scope, Send
from berth.config import Settings
from berth.db.migrate import BOOTSTRAP_LOCK
from berth.db.store import Backend, ping
from berth.iam.authorizer import PolicyAuthorizer
from berth.iam.authz import Authorizer, OpenAuthorizer
from berth.iam.resources import ResourcePolicies
from berth.iam.service import IdentityService
from berth.jobs import Handlers, JobQueue, Worker, tasks
from berth.registry.images import Images
from berth.registry.repositories import RepositoryAdmin
from berth.registry.service import PULL_TIME_JOB, RegistryService
from berth.registry.uploads import Uploads
from berth.storage import BlobStore
from berth.storage.filesystem import FilesystemBlobStore
from berth.storage.urls import S3Storage

log = logging.getLogger("berth")


async def open_backend(settings: Settings) -> Backend:
    if settings.uses_postgres:
        from berth.db.postgres import PostgresBackend

        return await PostgresBackend.connect(settings.database_url, settings.db_pool_min_size,
                                             settings.db_pool_max_size, settings.db_connect_timeout)
    from berth.db.sqlite import SqliteBackend

    return SqliteBackend(settings.sqlite_path)


async def open_blob_store(settings: Settings) -> BlobStore:
    """The BlobStore the storage URL names; an S3 bucket is checked (exists, credentials work) first."""
    storage = settings.storage
    if isinstance(storage, S3Storage):
        from berth.storage.s3 import S3BlobStore

        store = S3BlobStore(storage.bucket, storage.prefix, endpoint=storage.endpoint, region=storage.region,
                            addressing=storage.addressing, access_key=storage.access_key,
                            secret_key=storage.secret_key, profile=storage.profile)
        await asyncio.get_running_loop().run_in_executor(None, store.check)
        return store
    return FilesystemBlobStore(storage.root)


class BerthApp:
    """One ASGI app, one port: /v2 goes straight to the OCI edge; everything else to Starlette."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.oci: OciApi | None = None
        self.control: ControlPlane | None = None
        self.db: Backend | None = None
        self.uploads: Uploads | None = None
        self.worker: Worker | None = None
        self.blobs: BlobStore | None = None
        self.web = Starlette(routes=[
            Route("/healthz", self._healthz),
            Route("/readyz", self._readyz),
        ])

    async def startup(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = await open_backend(s)
        self.blobs = blobs = await open_blob_store(s)
        self.uploads = Uploads(self.db, blobs, max_age_hours=s.upload_max_age_hours)
        registry = RegistryService(self.db, blobs, self.uploads, create_on_push=s.create_on_push)
        identity = IdentityService(self.db, jwks_dir=Path(s.oidc_jwks_dir) if s.oidc_jwks_dir else None)
        await identity.ensure_signing_key()
        await identity.ensure_account(s.default_account)
        authn: Authenticator
        authz: Authorizer
        if s.auth == "iam":
            authn = IamAuthenticator(identity, s.served_regions)
            authz = PolicyAuthorizer(self.db, identity, registry.resource_tags)
        else:
            authn, authz = OpenAuthenticator(s.default_account, s.served_regions), OpenAuthorizer()
        self.oci = OciApi(registry, authn, authz, s.default_account, s.default_region, s.registry_domain,
                          blob_url=blobs.url_for if s.storage_redirect else None)
        services = Services(registry, identity, ResourcePolicies(self.db), authz, s.registry_domain,
                            Images(registry), RepositoryAdmin(self.db))
        self.control = ControlPlane(EcrApi(services, authn, ecr_operations.OPERATIONS, s.default_region),
                                    IamQueryApi(identity, authn, authz, iam_operations.OPERATIONS))
        if s.job_workers > 0:
            self.worker = await start_worker(s, self.db, self.uploads, s.job_workers)
        else:
            log.warning("job workers off (--job-workers 0): run `berth worker` for background jobs")

    async def shutdown(self) -> None:
        self.oci = self.control = None  # from here on, requests are answered 503
        if self.worker is not None:
            await self.worker.stop()
        if self.uploads is not None:
            self.uploads.close()
        if self.db is not None:
            await self.db.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            if path.startswith("/v2") and (len(path) == 3 or path[3] == "/"):
                face = self.oci  # started by the lifespan protocol only, never by a request
                await (oci.unavailable(scope, send) if face is None else face(scope, receive, send))
                return
            if path == "/" and (scope["method"] == "POST" or b"Action=" in scope.get("query_string", b"")):
                # the AWS control plane; a GET with Action= is a presigned IAM/STS query request
                plane = self.control
                await (control.unavailable(scope, send) if plane is None else plane(scope, receive, send))
                return
            await self.web(scope, receive, send)  # type: ignore[arg-type]
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as e:  # report to the server, which then refuses to start
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _healthz(self, request: Request) -> Any:
        return PlainTextResponse("ok")

    async def _readyz(self, request: Request) -> Any:
        """Ready: started (and not shutting down), the database answers and the blob store answers."""
        if self.oci is None or self.db is None or self.blobs is None:
            return JSONResponse({"ready": False, "reason": "not started, or shutting down"}, status_code=503)
        loop = asyncio.get_running_loop()
        probes = {"database": self.db.read(ping),
                  "storage": loop.run_in_executor(None, _probe_storage, self.blobs, self.settings)}
        reasons = []
        for what, probe in probes.items():
            try:
                await asyncio.wait_for(probe, READY_TIMEOUT)
            except Exception as e:  # noqa: BLE001 - any failure is a reason not to send traffic here
                reasons.append(f"{what}: {type(e).__name__}: {e}" if str(e) else f"{what}: {type(e).__name__}")
        if reasons:
            return JSONResponse({"ready": False, "reason": "; ".join(reasons)}, status_code=503)
        return JSONResponse({"ready": True})


READY_TIMEOUT = 3.0  # seconds per probe of /readyz


def _probe_storage(blobs: BlobStore, settings: Settings) -> None:
    storage = settings.storage
    if isinstance(blobs, FilesystemBlobStore) and not isinstance(storage, S3Storage):
        root = Path(storage.root)
        if not os.access(root, os.W_OK | os.X_OK):
            raise OSError(f"{root} is not a writable directory")
        return
    check = getattr(blobs, "check", None)
    if check is not None:
        check()


def job_handlers(db: Backend, uploads: Uploads) -> Handlers:
    """Every job kind Berth runs, and its handler."""
    handlers = Handlers()
    handlers.register(PULL_TIME_JOB, tasks.record_pull_time(db))
    handlers.periodic(tasks.PURGE_UPLOADS, tasks.PURGE_UPLOADS_EVERY, tasks.purge_uploads(uploads))
    handlers.periodic(tasks.PRUNE_JOBS, tasks.PRUNE_JOBS_EVERY, tasks.prune_jobs(JobQueue(db)))
    return handlers


async def start_worker(s: Settings, db: Backend, uploads: Uploads, concurrency: int) -> Worker:
    worker = Worker(db, job_handlers(db, uploads), concurrency=concurrency, lease=s.job_lease_seconds)
    await worker.start()
    return worker


async def run_worker(settings: Settings) -> None:
    """`berth worker`: the job workers alone, until SIGTERM or SIGINT (then a graceful stop)."""
    import asyncio
    import signal

    s = settings
    s.data_dir.mkdir(parents=True, exist_ok=True)
    db = await open_backend(s)
    uploads = Uploads(db, await open_blob_store(s), max_age_hours=s.upload_max_age_hours)
    try:
        # a split deployment runs `serve --job-workers 0`; the same settings here still run jobs
        worker = await start_worker(s, db, uploads, s.job_workers or Settings.job_workers)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await worker.stop()
    finally:
        uploads.close()
        await db.close()


def create_app(settings: Settings) -> BerthApp:
    return BerthApp(settings)


async def bootstrap_account(settings: Settings, account: str, key_id: str | None = None,
                            secret: str | None = None) -> tuple[str, str] | None:
    """Ensure `account` and its administrator exist; the credentials created now, if any."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = await open_backend(settings)
    try:
        identity = IdentityService(db)
        async with _exclusive(settings, BOOTSTRAP_LOCK):  # nodes starting together: one creates, others see it
            await identity.ensure_signing_key()
            return await identity.bootstrap(account, key_id or None, secret or None)
    finally:
        await db.close()


def _exclusive(settings: Settings, key: int) -> AbstractAsyncContextManager[None]:
    if settings.uses_postgres:
        from berth.db.postgres import advisory_lock

        return advisory_lock(settings.database_url, key, settings.db_connect_timeout)
    return nullcontext()
