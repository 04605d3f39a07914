"""The composition root: the only place that names concrete classes and wires them together."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from berth import audit
from berth.api import control
from berth.api.auth import Authenticator, IamAuthenticator, OpenAuthenticator
from berth.api.control import ControlPlane
from berth.api.ecr import operations as ecr_operations
from berth.api.ecr.app import EcrApi, Services
from berth.api.iam import operations as iam_operations
from berth.api.iam.app import IamQueryApi
from berth.api.limits import Limits, Rate, send_oci_throttled
from berth.api.oci import app as oci
from berth.api.oci.app import OciApi
from berth.api.oci.http import Receive, Scope, Send
from berth.api.oci.http import header as oci_header
from berth.api.registry_audit import AuditedWrites
from berth.api.secrets.app import SecretsApi
from berth.audit import AuditTrail
from berth.audit.journal import Journal
from berth.config import Settings
from berth.db import archive as qa
from berth.db.migrate import BOOTSTRAP_LOCK
from berth.db.observe import store_counts
from berth.db.scanning import REMATCH_JOB, SCAN_JOB, SIGN_JOB
from berth.db.store import Backend, ping
from berth.iam.authorizer import PolicyAuthorizer
from berth.iam.authz import Authorizer, Context, OpenAuthorizer
from berth.iam.resources import ResourcePolicies
from berth.iam.service import IdentityService
from berth.jobs import Handlers, JobQueue, Worker, tasks
from berth.keys.files import prepare_data_dir, secure_sqlite
from berth.lifecycle import gc
from berth.lifecycle import jobs as lifecycle_jobs
from berth.lifecycle.archive import PLACE_JOB, Archiver, TieredBlobStore, place_job
from berth.lifecycle.service import LifecycleService
from berth.observe.access import Observe
from berth.observe.metrics import Metrics
from berth.observe.metrics import Sources as MetricsSources
from berth.registry.images import Images
from berth.registry.repositories import RepositoryAdmin
from berth.registry.service import PULL_TIME_JOB, RegistryService
from berth.registry.templates import Templates
from berth.registry.uploads import Uploads
from berth.replication import outbox as replication_outbox
from berth.replication.peers import PeerDirectory
from berth.replication.pullthrough import PullThroughCache
from berth.replication.pullthrough_rules import PullThroughRules
from berth.replication.service import ReplicationService, Replicator
from berth.scanning.service import ScanService
from berth.scanning.signing import SigningService
from berth.secrets.box import MasterKeyBox
from berth.secrets.service import Secrets
from berth.storage import BlobStore
from berth.storage.filesystem import FilesystemBlobStore
from berth.storage.urls import FileStorage, S3Storage

log = logging.getLogger("berth")
METRICS_ACTION = "berth:GetMetrics"


async def open_backend(settings: Settings) -> Backend:
    if settings.uses_postgres:
        from berth.db.postgres import PostgresBackend

        return await PostgresBackend.connect(settings.database_url, settings.db_pool_min_size,
                                             settings.db_pool_max_size, settings.db_connect_timeout)
    from berth.db.sqlite import SqliteBackend

    secure_sqlite(settings.sqlite_path)
    return SqliteBackend(settings.sqlite_path)


async def open_blob_store(settings: Settings) -> BlobStore:
    """The BlobStore the storage URL names; an S3 bucket is checked (exists, credentials work) first. With an
    archive store (BERTH_ARCHIVE_STORAGE_URL), the two as one TieredBlobStore (berth/lifecycle/archive.py)."""
    main = await open_store(settings.storage)
    archive = settings.archive_storage
    if archive is None:
        return main
    return TieredBlobStore(main, await open_store(archive))


async def open_store(storage: FileStorage | S3Storage) -> BlobStore:
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
        self.pull_through: PullThroughCache | None = None
        self.metrics: Metrics | None = None  # set by create_app; /metrics answers 404 without it
        self._metrics_sources: MetricsSources | None = None
        self._authn: Authenticator | None = None
        self._authz: Authorizer | None = None
        self.audited_writes: AuditedWrites | None = None
        self.trail: AuditTrail | None = None
        self.limits: Limits | None = None
        self.blobs: BlobStore | None = None
        self.web = Starlette(routes=[
            Route("/healthz", self._healthz),
            Route("/readyz", self._readyz),
            Route("/metrics", self._metrics),
        ])

    async def startup(self) -> None:
        s = self.settings
        master, _ = prepare_data_dir(s)
        self.db = await open_backend(s)
        self.blobs = blobs = await open_blob_store(s)
        self.uploads = Uploads(self.db, blobs, max_age_hours=s.upload_max_age_hours, keys=master)
        registry = RegistryService(self.db, blobs, self.uploads, create_on_push=s.create_on_push,
                                   refresh_after=s.gc_grace_seconds / 2)
        templates = Templates(self.db)
        registry.templates = templates
        lifecycle = LifecycleService(self.db, preview_retention=s.lifecycle_preview_retention_seconds,
                                     archive_store=isinstance(blobs, TieredBlobStore))
        registry.archive_store = isinstance(blobs, TieredBlobStore)
        if not isinstance(blobs, TieredBlobStore) and (archived := (await self.db.read(qa.archived_total))[0]):
            log.error("%d blobs live in the archive store, but no BERTH_ARCHIVE_STORAGE_URL is set: images that use "
                      "them cannot be restored or pulled", archived)
        secrets = Secrets(self.db, MasterKeyBox(master))
        insecure = [h.strip() for h in s.pull_through_insecure.split(",") if h.strip()]
        rules = PullThroughRules(self.db, secrets, insecure)
        self.pull_through = PullThroughCache(registry, rules, templates, s.data_dir / "pullthrough-spool",
                                             staleness=s.pull_through_staleness_hours * 3600.0)
        registry.pull_through = self.pull_through
        identity = IdentityService(self.db, jwks_dir=Path(s.oidc_jwks_dir) if s.oidc_jwks_dir else None,
                                   keys=master)
        await identity.seal_plaintext()  # rows an older Berth wrote in plain text
        await identity.ensure_signing_key()
        await identity.ensure_account(s.default_account)
        authn: Authenticator
        authz: Authorizer
        if s.auth == "iam":
            authn = IamAuthenticator(identity, s.served_regions)
            authz = PolicyAuthorizer(self.db, identity, registry.resource_tags)
        else:
            authn, authz = OpenAuthenticator(s.default_account, s.served_regions), OpenAuthorizer()
        self._authn, self._authz = authn, authz
        db = self.db
        self._metrics_sources = MetricsSources(lambda: db.read(store_counts), JobQueue(db).stats)
        self.oci = OciApi(registry, authn, authz, s.default_account, s.default_region, s.registry_domain,
                          blob_url=blobs.url_for if s.storage_redirect else None, regions=s.served_regions)
        services = Services(registry, identity, ResourcePolicies(self.db), authz, s.registry_domain,
                            Images(registry), RepositoryAdmin(self.db), lifecycle,
                            ReplicationService(self.db), templates, rules, ScanService(self.db, blobs),
                            SigningService(self.db, keys=master), default_account=s.default_account,
                            default_region=s.default_region)
        trail = None
        if s.audit:  # the embedded default journals its records (berth/audit/journal.py); PostgreSQL waits
            journal = None if s.uses_postgres else Journal(s.data_dir / "audit-journal")
            trail = AuditTrail(self.db, s.default_account, journal=journal)
            await trail.recover()
            self.trail = trail
        if trail is not None:
            self.audited_writes = AuditedWrites(trail, authn, s.default_account, s.default_region)
        else:
            log.warning("audit trail off (BERTH_AUDIT=0)")
        limits = Limits(Rate.of(s.rate_limit_account, s.rate_limit_account_burst),
                        Rate.of(s.rate_limit_principal, s.rate_limit_principal_burst),
                        shared=s.data_dir / "run" / "rate-limits")  # shared by this node's workers
        self.limits = limits if limits.on else None
        self.control = ControlPlane(EcrApi(services, authn, ecr_operations.OPERATIONS, s.default_region, audit=trail,
                                           limits=self.limits),
                                    IamQueryApi(identity, authn, authz, iam_operations.OPERATIONS, audit=trail,
                                                limits=self.limits),
                                    SecretsApi(secrets, authn, authz, s.default_region))
        if s.job_workers > 0:
            self.worker = await start_worker(s, self.db, self.uploads, s.job_workers, blobs)
        else:
            log.warning("job workers off (--job-workers 0): run `berth worker` for background jobs")

    async def shutdown(self) -> None:
        self.oci = self.control = None  # from here on, requests are answered 503
        if self.worker is not None:
            await self.worker.stop()
        if self.uploads is not None:
            self.uploads.close()
        if self.pull_through is not None:
            self.pull_through.close()
        if self.trail is not None:
            await self.trail.close()
        if self.db is not None:
            await self.db.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            if path.startswith("/v2") and (len(path) == 3 or path[3] == "/"):
                face = self.oci  # started by the lifespan protocol only, never by a request
                if face is not None and self.limits is not None and await self._throttled(scope, send):
                    return
                if face is not None and self.audited_writes is not None:
                    await self.audited_writes(face, scope, receive, send)
                    return
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

    async def _throttled(self, scope: Scope, send: Send) -> bool:
        """A /v2 request over its caller's rate (berth/api/limits.py): answered 429 here."""
        assert self.limits is not None and self._authn is not None
        principal = self._authn.registry_principal(oci_header(scope, b"authorization"))
        if principal is None or not (wait := self.limits.check(principal)):
            return False
        await send_oci_throttled(send, wait)
        return True

    async def _healthz(self, request: Request) -> Any:
        return PlainTextResponse("ok")

    async def _metrics(self, request: Request) -> Any:
        """Prometheus text; IAM action berth:GetMetrics (registry credentials: Basic AWS:<token>) unless
        --metrics-public."""
        if self.metrics is None or self._authn is None or self._authz is None:
            return PlainTextResponse("not serving", status_code=503, headers={"Retry-After": "1"})
        if not self.settings.metrics_public:
            principal = self._authn.registry_principal(request.headers.get("authorization"))
            if principal is None:
                return PlainTextResponse("authentication required: registry credentials (user AWS, password from "
                                         "GetAuthorizationToken) of a principal allowed berth:GetMetrics\n",
                                         status_code=401, headers={"WWW-Authenticate": 'Basic realm="berth"'})
            context = Context(source_ip=request.client.host if request.client else "",
                              secure_transport=request.url.scheme == "https")
            decision = await self._authz.authorize(principal, METRICS_ACTION, "*", context)
            if not decision.allowed:
                note = request.scope.get("berth")
                if note is not None:
                    note["denied"] = METRICS_ACTION
                return PlainTextResponse(f"{principal.arn} is not authorized to perform {METRICS_ACTION}\n",
                                         status_code=403)
        body, content_type = await self.metrics.render(self._metrics_sources)
        return Response(body, media_type=content_type)

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


def job_handlers(db: Backend, uploads: Uploads, settings: Settings | None = None,
                 blobs: BlobStore | None = None) -> Handlers:
    """Every job kind Berth runs, and its handler."""
    s = settings or Settings()
    handlers = Handlers()
    retention = s.audit_retention_days if settings is not None and s.audit else 0
    if retention > 0:
        handlers.periodic(audit.PRUNE_JOB, audit.PRUNE_EVERY, audit.prune_job(AuditTrail(db, ""), retention))
    handlers.register(PULL_TIME_JOB, tasks.record_pull_time(db))
    registry = RegistryService(db, uploads.blobs, uploads)
    registry.templates = Templates(db)  # repositories created by replication take REPLICATION templates
    replicator = Replicator(db, registry, s.served_regions,
                            peers=PeerDirectory(db, registry, keys=uploads.master_key).target)
    for kind, run in ((replication_outbox.COPY_JOB, replicator.run_copy),
                      (replication_outbox.DELETE_JOB, replicator.run_delete),
                      (replication_outbox.BACKFILL_JOB, replicator.run_backfill)):
        handlers.register(kind, run, max_attempts=replication_outbox.MAX_ATTEMPTS,
                          backoff=replication_outbox.BACKOFF, max_backoff=replication_outbox.MAX_BACKOFF)
    if blobs is not None:  # scanning: scan on push / StartImageScan, and re-matching when the vulndb changes
        scans = ScanService(db, blobs, registry=RegistryService(db, blobs, uploads))
        handlers.register(SCAN_JOB, scans.run_scan, max_attempts=3)
        handlers.register(REMATCH_JOB, scans.rematch_job, max_attempts=3)
        # managed signing: the signature is pushed through the registry's own rules, as any push
        signer = SigningService(db, RegistryService(db, blobs, uploads), f"{s.host}:{s.port}", keys=uploads.master_key)
        handlers.register(SIGN_JOB, signer.run_sign, max_attempts=5)
    handlers.periodic(tasks.PURGE_UPLOADS, tasks.PURGE_UPLOADS_EVERY, tasks.purge_uploads(uploads))
    handlers.periodic(tasks.PRUNE_JOBS, tasks.PRUNE_JOBS_EVERY, tasks.prune_jobs(JobQueue(db)))
    tiered = uploads.blobs if isinstance(uploads.blobs, TieredBlobStore) else None
    archiver = None if tiered is None else Archiver(db, tiered, uploads.pool)
    lifecycle = LifecycleService(db, preview_retention=s.lifecycle_preview_retention_seconds,
                                 archive_store=tiered is not None)
    handlers.register(lifecycle_jobs.PREVIEW_JOB, lifecycle_jobs.run_preview(db, lifecycle))
    handlers.register(lifecycle_jobs.RUN_JOB, lifecycle_jobs.run_repository(db, lifecycle))
    handlers.register(lifecycle_jobs.ACTIVATE_JOB, lifecycle_jobs.activate(db, lifecycle, archiver))
    if archiver is not None:  # the archive storage location: blobs moved between the two stores
        handlers.register(PLACE_JOB, place_job(archiver))
    handlers.periodic(lifecycle_jobs.SCHEDULE_JOB, s.lifecycle_interval_hours * 3600,
                      lifecycle_jobs.schedule(lifecycle, JobQueue(db)))
    if settings is not None and s.gc_interval_seconds > 0:  # a collection needs the storage settings of serve
        handlers.periodic(gc.GC_JOB, s.gc_interval_seconds, gc.collect_job(collector(s, db, uploads)), max_attempts=1)
    return handlers


def collector(s: Settings, db: Backend, uploads: Uploads) -> gc.Collector:
    """The garbage collector of the periodic job and of `berth gc`."""
    archive = uploads.blobs.archive if isinstance(uploads.blobs, TieredBlobStore) else None
    return gc.Collector(db, uploads.blobs, uploads, grace=s.gc_grace_seconds, pin_hold=s.gc_pin_hold_seconds,
                        archive=archive)


@asynccontextmanager
async def open_collector(s: Settings) -> AsyncIterator[gc.Collector]:
    """A collector on its own backend and store (`berth gc`)."""
    db = await open_backend(s)
    uploads = Uploads(db, await open_blob_store(s), max_age_hours=s.upload_max_age_hours)
    try:
        yield collector(s, db, uploads)
    finally:
        uploads.close()
        await db.close()


async def start_worker(s: Settings, db: Backend, uploads: Uploads, concurrency: int,
                       blobs: BlobStore | None = None) -> Worker:
    worker = Worker(db, job_handlers(db, uploads, s, blobs), concurrency=concurrency, lease=s.job_lease_seconds)
    await worker.start()
    return worker


async def run_worker(settings: Settings) -> None:
    """`berth worker`: the job workers alone, until SIGTERM or SIGINT (then a graceful stop)."""
    import asyncio
    import signal

    s = settings
    master, _ = prepare_data_dir(s)
    db = await open_backend(s)
    blobs = await open_blob_store(s)
    uploads = Uploads(db, blobs, max_age_hours=s.upload_max_age_hours, keys=master)
    try:
        # a split deployment runs `serve --job-workers 0`; the same settings here still run jobs
        worker = await start_worker(s, db, uploads, s.job_workers or Settings.job_workers, blobs)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await worker.stop()
    finally:
        uploads.close()
        await db.close()


def create_app(settings: Settings) -> Observe:
    """The app, inside the request-id / access-log / metrics middleware (berth/observe)."""
    app = BerthApp(settings)
    app.metrics = Metrics()
    return Observe(app, app.metrics, settings.log_format, settings.access_log)


async def bootstrap_account(settings: Settings, account: str, key_id: str | None = None,
                            secret: str | None = None) -> tuple[str, str] | None:
    """Ensure `account` and its administrator exist; the credentials created now, if any."""
    master, _ = prepare_data_dir(settings)
    db = await open_backend(settings)
    try:
        identity = IdentityService(db, keys=master)
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
