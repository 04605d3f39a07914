"""The composition root: the only place that names concrete classes and wires them together."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from berth.api.auth import Authenticator, IamAuthenticator, OpenAuthenticator
from berth.api.control import ControlPlane
from berth.api.ecr import ops_images, ops_layers, ops_registry, ops_repositories
from berth.api.ecr.app import EcrApi, Handler, Services
from berth.api.iam import operations as iam_operations
from berth.api.iam.app import IamQueryApi
from berth.api.oci.app import OciApi
from berth.api.oci.http import Receive, Scope, Send
from berth.config import Settings
from berth.db.store import Backend
from berth.iam.authorizer import PolicyAuthorizer
from berth.iam.authz import Authorizer, OpenAuthorizer
from berth.iam.resources import ResourcePolicies
from berth.iam.service import IdentityService
from berth.registry.images import Images
from berth.registry.repositories import RepositoryAdmin
from berth.registry.service import RegistryService
from berth.registry.uploads import Uploads
from berth.storage.filesystem import FilesystemBlobStore

log = logging.getLogger("berth")


async def open_backend(settings: Settings) -> Backend:
    if settings.uses_postgres:
        from berth.db.postgres import PostgresBackend

        return await PostgresBackend.connect(settings.database_url)
    from berth.db.sqlite import SqliteBackend

    return SqliteBackend(settings.sqlite_path)


class BerthApp:
    """One ASGI app, one port: /v2 goes straight to the OCI edge; everything else to Starlette."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.oci: OciApi | None = None
        self.control: ControlPlane | None = None
        self.db: Backend | None = None
        self.uploads: Uploads | None = None
        self.web = Starlette(routes=[
            Route("/healthz", self._healthz),
            Route("/readyz", self._readyz),
        ])

    async def startup(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = await open_backend(s)
        blobs = FilesystemBlobStore(s.data_dir)
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
        self.oci = OciApi(registry, authn, authz, s.default_account, s.default_region, s.registry_domain)
        operations: dict[str, Handler] = {**ops_registry.OPERATIONS, **ops_repositories.OPERATIONS,
                                          **ops_images.OPERATIONS, **ops_layers.OPERATIONS}
        services = Services(registry, identity, ResourcePolicies(self.db), authz, s.registry_domain,
                            Images(registry), RepositoryAdmin(self.db))
        self.control = ControlPlane(EcrApi(services, authn, operations, s.default_region),
                                    IamQueryApi(identity, authn, authz, iam_operations.OPERATIONS))
        purged = await self.uploads.purge()
        if purged:
            log.warning("purged %d abandoned uploads", purged)

    async def shutdown(self) -> None:
        if self.uploads is not None:
            self.uploads.close()
        if self.db is not None:
            await self.db.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            if path.startswith("/v2") and (len(path) == 3 or path[3] == "/"):
                if self.oci is None:
                    await self.startup()
                assert self.oci is not None
                await self.oci(scope, receive, send)
                return
            if path == "/" and (scope["method"] == "POST" or b"Action=" in scope.get("query_string", b"")):
                # the AWS control plane; a GET with Action= is a presigned IAM/STS query request
                if self.control is None:
                    await self.startup()
                assert self.control is not None
                await self.control(scope, receive, send)
                return
            await self.web(scope, receive, send)  # type: ignore[arg-type]
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    if self.oci is None:
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
        return JSONResponse({"ready": self.oci is not None})


def create_app(settings: Settings) -> BerthApp:
    return BerthApp(settings)


async def bootstrap_account(settings: Settings, account: str, key_id: str | None = None,
                            secret: str | None = None) -> tuple[str, str] | None:
    """Ensure `account` and its administrator exist; the credentials created now, if any."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = await open_backend(settings)
    try:
        identity = IdentityService(db)
        await identity.ensure_signing_key()
        return await identity.bootstrap(account, key_id or None, secret or None)
    finally:
        await db.close()
