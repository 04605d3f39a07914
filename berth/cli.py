"""The `berth` command: serve, worker, jobs, db upgrade, admin."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import typer

from berth.cli_common import migrate as _migrate
from berth.cli_common import run_on_db
from berth.cli_common import settings as _settings
from berth.config import Settings
from berth.config_cli import config_cli
from berth.lifecycle.cli import app as lifecycle_cli
from berth.storage.urls import FileStorage, S3Storage

cli = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Berth: a registry that speaks ECR.")
db_cli = typer.Typer(no_args_is_help=True, help="Metadata database.")
cli.add_typer(db_cli, name="db")
admin_cli = typer.Typer(no_args_is_help=True, help="Accounts and administrators.")
cli.add_typer(admin_cli, name="admin")
jobs_cli = typer.Typer(no_args_is_help=True, help="The background jobs queue.")
cli.add_typer(jobs_cli, name="jobs")
cli.add_typer(lifecycle_cli, name="lifecycle")
from berth.replication.cli import peers_cli  # noqa: E402 - the sub-app of `berth peers`

cli.add_typer(peers_cli, name="peers")
from berth.scanning import cli as scanning_cli  # noqa: E402 - the scanning sub-app and `berth sbom`
from berth.scanning.cli import vulndb_cli  # noqa: E402

cli.add_typer(vulndb_cli, name="vulndb")
cli.command("sbom")(scanning_cli.sbom)
cli.add_typer(scanning_cli.signing_cli, name="signing")
cli.add_typer(config_cli, name="config")

DataDir = typer.Option(None, "--data-dir", help="Data directory (env BERTH_DATA_DIR).",
                       show_default=str(Settings.data_dir))
DatabaseUrl = typer.Option(None, "--database-url", help="postgresql://… (env BERTH_DATABASE_URL).",
                           show_default="SQLite in the data dir")
JobWorkers = typer.Option(None, "--job-workers", help="Jobs run at once per process; 0: none in serve "
                          "(env BERTH_JOB_WORKERS).", show_default=str(Settings.job_workers))


def _opt(name: str, help: str, *flags: str, shown: str | None = None) -> Any:
    """An option of a Settings field: flag --name-with-dashes, env BERTH_NAME, its default shown in --help."""
    default = getattr(Settings, name)
    if shown is None:
        shown = ("on" if default else "off") if isinstance(default, bool) else (str(default) or '""')
    return typer.Option(None, *(flags or ("--" + name.replace("_", "-"),)), help=f"{help} (env BERTH_{name.upper()}).",
                        show_default=shown)


@cli.command()
def serve(
    config: Path = typer.Option(None, "--config", help="TOML config file (env BERTH_CONFIG): flags beat "
                                "environment beat file.", show_default="none"),
    host: str = _opt("host", "Address to listen on"),
    port: int = _opt("port", "Port"),
    data_dir: Path = _opt("data_dir", "Data directory"),
    database_url: str = _opt("database_url", "postgresql://user@host:port/db; empty: SQLite in the data dir",
                             shown="SQLite"),
    database_wait_seconds: int = _opt("database_wait_seconds", "How long to wait for PostgreSQL to answer at "
                                      "start"),
    tls_cert: str = _opt("tls_cert", "PEM certificate", shown="plain HTTP"),
    tls_key: str = _opt("tls_key", "PEM private key", shown="none"),
    workers: int = _opt("workers", "Worker processes"),
    auth: str = _opt("auth", "none | iam"),
    job_workers: int = _opt("job_workers", "Jobs run at once per process; 0: none in serve"),
    storage_url: str = _opt("storage_url", "Blob storage: file:///path or s3://bucket/prefix?endpoint=…&region=…"
                            "&addressing=path|virtual", shown="the data dir"),
    storage_redirect: bool = _opt("storage_redirect", "Answer blob GETs with 307 to a presigned storage URL when "
                                  "the storage has them (S3)", "--storage-redirect/--no-storage-redirect"),
    archive_storage_url: str = _opt("archive_storage_url", "Where blobs only archived images use are moved, as "
                                    "--storage-url", shown="none"),
    log_level: str = _opt("log_level", "debug | info | warning | error"),
    log_format: str = _opt("log_format", "Access and error log lines: json | text (common log format)"),
    access_log: bool = _opt("access_log", "One line per request on stderr", "--access-log/--no-access-log"),
    metrics_public: bool = _opt("metrics_public", "Serve /metrics without authentication (else IAM action "
                                "berth:GetMetrics)", "--metrics-public/--no-metrics-public"),
) -> None:
    """Serve the registry and the API on one port."""
    import time

    from berth import startup

    s = _settings(config, host=host, port=port, data_dir=data_dir, database_url=database_url,
                  database_wait_seconds=database_wait_seconds, tls_cert=tls_cert, tls_key=tls_key, workers=workers,
                  auth=auth, job_workers=job_workers, storage_url=storage_url, storage_redirect=storage_redirect,
                  archive_storage_url=archive_storage_url, log_level=log_level, log_format=log_format,
                  access_log=access_log, metrics_public=metrics_public)
    try:
        startup.check_all(s.host, s.port, s.data_dir, s.tls_cert, s.tls_key)
        if s.uses_postgres:
            startup.wait_for_postgres(s.database_url, s.database_wait_seconds, lambda line: typer.echo(line, err=True))
    except startup.StartupError as e:
        typer.echo(f"berth: {e}", err=True)
        raise typer.Exit(2) from None
    _prepare(s)  # the data dir's modes and the master key
    _migrate(s)  # in its own process, so the serving processes never load Alembic
    if s.auth == "iam":
        _bootstrap(s, s.default_account, s.admin_access_key_id, s.admin_secret_access_key)
    from berth.replication.cli import sync_config_peers

    sync_config_peers(s, config or (Path(os.environ["BERTH_CONFIG"]) if os.environ.get("BERTH_CONFIG") else None))
    os.environ.update(s.to_env())
    if s.workers > 1:  # the workers' metrics snapshots, summed by whichever answers a scrape
        from berth.observe.metrics import prepare_directory

        prepare_directory(s.data_dir / "metrics")

    from granian import Granian
    from granian.constants import Interfaces, Loops

    scheme = "https" if s.tls_cert else "http"
    default_port = 443 if scheme == "https" else 80
    where = "" if s.port == default_port else f":{s.port}"
    metadata = f"PostgreSQL {startup.masked_url(s.database_url)}" if s.uses_postgres else f"SQLite {s.sqlite_path}"
    typer.echo(f"berth: serving {scheme}://{s.host}:{s.port} (data {s.data_dir}, {metadata}, blobs {_describe(s)}, "
               f"auth {s.auth}, registry hosts <account>.dkr.ecr.<region>.{s.registry_domain}{where} or "
               f"{s.host}{where} for {s.default_account}/{s.default_region}, {s.workers} worker(s))", err=True)
    try:
        startup.check_port(s.host, s.port)  # again: a server started meanwhile (migrations take a while)
    except startup.StartupError as e:
        typer.echo(f"berth: {e}", err=True)
        raise typer.Exit(2) from None
    started = time.monotonic()
    Granian(
        "berth.asgi:app",
        factory=True,
        address=s.host,
        port=s.port,
        interface=Interfaces.ASGI,
        workers=s.workers,
        loop=Loops.uvloop,
        log_level=s.log_level,  # type: ignore[arg-type]
        log_access=False,
        ssl_cert=Path(s.tls_cert) if s.tls_cert else None,
        ssl_key=Path(s.tls_key) if s.tls_key else None,
    ).serve()
    typer.echo(startup.stop_line(started), err=True)


@cli.command()
def worker(data_dir: Path = DataDir, database_url: str = DatabaseUrl, job_workers: int = JobWorkers,
           storage_url: str = typer.Option(None, "--storage-url", help="Blob storage, as for serve "
                                           "(env BERTH_STORAGE_URL)."),
           archive_storage_url: str = typer.Option(None, "--archive-storage-url", help="The archive store, as "
                                                   "for serve (env BERTH_ARCHIVE_STORAGE_URL).")) -> None:
    """Run the background job workers alone (for deployments that split them from `serve`)."""
    import asyncio

    from berth.app import run_worker

    s = _settings(data_dir=data_dir, database_url=database_url, job_workers=job_workers, storage_url=storage_url,
                  archive_storage_url=archive_storage_url)
    _prepare(s)
    _migrate(s)
    import logging

    logging.basicConfig(level=s.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    typer.echo(f"berth: job worker on {'PostgreSQL' if s.uses_postgres else 'SQLite'} (data {s.data_dir}, "
               f"blobs {_describe(s)})", err=True)
    asyncio.run(run_worker(s))
def _prepare(s: Settings) -> None:
    """The data dir 0700, the database 0600, the master key: before anything (a migration) writes them."""
    from berth.keys import KeyError_
    from berth.keys.files import prepare_data_dir

    try:
        for warning in prepare_data_dir(s)[1]:
            typer.echo(f"berth: warning: {warning}", err=True)
    except (KeyError_, OSError) as e:
        typer.echo(f"berth: {e}", err=True)
        raise typer.Exit(2) from None


def _describe(s: Settings) -> str:
    st = s.storage
    if isinstance(st, S3Storage):
        where = f"s3://{st.bucket}/{st.prefix}" + (f" at {st.endpoint}" if st.endpoint else "")
        return where + (", redirects" if s.storage_redirect else "")
    return str(st.root)


@cli.command("gc")
def gc_command(
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what a collection would free; change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (no progress bar)."),
    grace: float = typer.Option(None, "--grace", help="Seconds since its last link after which an unreferenced "
                                "blob is collected (env BERTH_GC_GRACE_SECONDS, default 3600)."),
    data_dir: Path = DataDir,
    database_url: str = DatabaseUrl,
    storage_url: str = typer.Option(None, "--storage-url", help="Blob storage, as for serve (env BERTH_STORAGE_URL)."),
    archive_storage_url: str = typer.Option(None, "--archive-storage-url", help="The archive store, as for serve "
                                            "(env BERTH_ARCHIVE_STORAGE_URL): collected too."),
) -> None:
    """Garbage-collect now: unreferenced blobs, unrecorded objects, abandoned uploads (safe while serving)."""
    import asyncio

    from berth.app import open_collector
    from berth.lifecycle import gc_cli

    if grace is not None and grace < 0:
        typer.echo("berth: --grace must be 0 or more", err=True)
        raise typer.Exit(2)
    s = _settings(data_dir=data_dir, database_url=database_url, storage_url=storage_url,
                  archive_storage_url=archive_storage_url)
    s.data_dir.mkdir(parents=True, exist_ok=True)
    _migrate(s)
    asyncio.run(gc_cli.run(open_collector(s), dry_run, grace, as_json))


@db_cli.command("upgrade")
def db_upgrade(data_dir: Path = DataDir, database_url: str = DatabaseUrl) -> None:
    """Apply every pending migration."""
    from berth.db.migrate import sqlalchemy_url, upgrade

    s = _settings(data_dir=data_dir, database_url=database_url)
    _prepare(s)
    upgrade(sqlalchemy_url(s.database_url, s.sqlite_path))


def _bootstrap(s: Settings, account: str, key_id: str | None, secret: str | None) -> bool:
    """Create the account's administrator if missing; print new credentials once. True if created."""
    import asyncio

    from berth.app import bootstrap_account
    from berth.iam.errors import IamError
    from berth.keys import KeyError_

    try:
        created = asyncio.run(bootstrap_account(s, account, key_id, secret))
    except IamError as e:
        typer.echo(f"berth: {e.message}", err=True)
        raise typer.Exit(1) from None
    except KeyError_ as e:  # the master key does not open this database's secrets
        typer.echo(f"berth: {e}", err=True)
        raise typer.Exit(2) from None
    if created is None:
        return False
    if secret:  # a secret given to Berth is never printed back
        typer.echo(f"berth: account {account}: administrator 'admin' created with access key {created[0]} "
                   "and the secret access key given", err=True)
        return True
    typer.echo(f"berth: account {account}: administrator 'admin' created; its credentials (shown once):", err=True)
    typer.echo(f"export AWS_ACCESS_KEY_ID={created[0]} AWS_SECRET_ACCESS_KEY={created[1]} "
               f"AWS_DEFAULT_REGION={s.default_region}")
    return True


@admin_cli.command("rotate-master-key")
def rotate_master_key(data_dir: Path = DataDir, database_url: str = DatabaseUrl) -> None:
    """Seal every secret in the database with a new master key (safe while Berth serves)."""
    from berth.keys.rotate import rotate_master_key as rotate

    s = _settings(data_dir=data_dir, database_url=database_url)
    _prepare(s)
    _migrate(s)
    old, new, n = _run_db(s, lambda db: rotate(db, s.master_key_path))
    typer.echo(f"berth: master key {', '.join(old)} -> {new}: {n} secrets sealed again ({s.master_key_path})",
               err=True)


@admin_cli.command("rotate-token-key")
def rotate_token_key(
    retire_hours: float = typer.Option(192, "--retire-hours", help="Remove keys superseded longer ago than this "
                                       "(longer than any token, session or upload id they signed)."),
    data_dir: Path = DataDir, database_url: str = DatabaseUrl,
) -> None:
    """A new registry token key: new tokens use it, tokens signed before keep working until they expire."""
    from berth.iam.service import IdentityService

    s = _settings(data_dir=data_dir, database_url=database_url)
    _prepare(s)
    _migrate(s)
    master = _master(s)

    async def rotate(db: object) -> tuple[str, list[str]]:
        identity = IdentityService(db, keys=master)  # type: ignore[arg-type]
        await identity.ensure_signing_key()
        return await identity.rotate_token_key(retire_hours)

    new, removed = _run_db(s, rotate)
    typer.echo(f"berth: token key {new} signs from now on" + (f"; removed {', '.join(removed)}" if removed else ""),
               err=True)


def _master(s: Settings):  # type: ignore[no-untyped-def]
    from berth.keys import MasterKey

    return MasterKey.load(s.master_key_path)


def _run_db(s: Settings, fn: Callable[..., Awaitable[object]]) -> Any:
    import asyncio

    from berth.app import open_backend
    from berth.keys import KeyError_

    async def main() -> object:
        db = await open_backend(s)
        try:
            return await fn(db)
        finally:
            await db.close()

    try:
        return asyncio.run(main())
    except KeyError_ as e:
        typer.echo(f"berth: {e}", err=True)
        raise typer.Exit(2) from None


@admin_cli.command("create-account")
def create_account(
    account_id: str = typer.Argument(..., help="12-digit account id."),
    access_key_id: str = typer.Option(None, "--access-key-id", help="Use this access key id."),
    secret_access_key: str = typer.Option(None, "--secret-access-key", help="Use this secret."),
    data_dir: Path = DataDir,
    database_url: str = DatabaseUrl,
) -> None:
    """Create an account with its first administrator and print its credentials."""
    s = _settings(data_dir=data_dir, database_url=database_url)
    _prepare(s)
    _migrate(s)
    if not _bootstrap(s, account_id, access_key_id, secret_access_key):
        typer.echo(f"berth: account {account_id} already has an administrator key", err=True)


@cli.command()
def backup(
    dest: Path = typer.Argument(..., help="A new (or empty) directory for the backup."),
    link: bool = typer.Option(False, "--link", help="Hard-link blobs instead of copying them (same filesystem: "
                              "instant, but no protection against losing the disk)."),
    master_key: bool = typer.Option(True, "--master-key/--no-master-key", help="Copy the master key into the "
                                    "backup (without it, no secret in the backup opens)."),
    data_dir: Path = DataDir,
) -> None:
    """A consistent copy of the embedded registry (SQLite + blobs), while it serves."""
    from berth.backup import BackupError
    from berth.backup import backup as run

    s = _settings(data_dir=data_dir)
    if s.uses_postgres or not isinstance(s.storage, FileStorage):
        typer.echo("berth: backup covers the embedded default (SQLite and blobs on the filesystem); for "
                   "PostgreSQL and S3, see the README's Backups section", err=True)
        raise typer.Exit(2)
    try:
        out = run(s.sqlite_path, s.storage.root, s.master_key_path if master_key else None, dest, link=link)
    except (BackupError, OSError) as e:
        typer.echo(f"berth: backup failed: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"berth: backup {dest}: {out.images} images, {out.blobs} blobs ({out.bytes} bytes, {out.linked} "
               f"linked) in {out.seconds:.1f} s", err=True)


@cli.command()
def restore(
    src: Path = typer.Argument(..., help="A directory written by `berth backup`."),
    data_dir: Path = typer.Option(..., "--data-dir", help="A new (or empty) data directory to restore into."),
    link: bool = typer.Option(False, "--link", help="Hard-link blobs from the backup instead of copying them."),
    verify: bool = typer.Option(False, "--verify", help="Check every blob's sha256 first (sizes are always checked)."),
) -> None:
    """Bring a backup back into a new data dir; then `berth serve --data-dir DIR`."""
    from berth.backup import BackupError
    from berth.backup import restore as run

    try:
        out = run(src, data_dir, link=link, verify=verify)
    except (BackupError, OSError) as e:
        typer.echo(f"berth: restore failed: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"berth: restored {out.images} images, {out.blobs} blobs ({out.bytes} bytes) into {data_dir}", err=True)


@cli.command()
def audit(
    since: str = typer.Option(None, "--since", help="From this time: ISO 8601, or an age (15m, 2h, 7d)."),
    until: str = typer.Option(None, "--until", help="Before this time (same forms)."),
    principal: str = typer.Option(None, "--principal", help="Only calls by this ARN."),
    event: str = typer.Option(None, "--event", help="Only this event name (PutImage, CreateAccessKey, …)."),
    account: str = typer.Option(None, "--account", help="Only this account."),
    limit: int = typer.Option(100, "--limit", help="The newest this many records, shown oldest first."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines: one CloudTrail-shaped record each."),
    data_dir: Path = DataDir, database_url: str = DatabaseUrl,
) -> None:
    """The audit trail: control-plane calls and registry writes, as a table or JSON lines."""
    from berth.audit.cli import parse_time, show

    try:
        start = parse_time(since) if since else None
        end = parse_time(until) if until else None
    except ValueError as e:
        typer.echo(f"berth: {e}", err=True)
        raise typer.Exit(2) from None
    s = _settings(data_dir=data_dir, database_url=database_url)
    _prepare(s)
    run_on_db(s, show, start, end, principal, event, account, limit, as_json)


cert_cli = typer.Typer(no_args_is_help=True, help="TLS certificates for the registry's host names.")
cli.add_typer(cert_cli, name="cert")


@cert_cli.command("create")
def cert_create(
    out: Path = typer.Option(Path("./berth-certs"), "--out", help="Directory for ca.crt, ca.key, server.crt, "
                             "server.key (an existing CA there is reused)."),
    domain: str = typer.Option(None, "--domain", help="The registry domain (default: BERTH_REGISTRY_DOMAIN)."),
    region: list[str] = typer.Option(None, "--region", help="A region to name (repeatable; default: the served "
                                     "regions)."),
    host: list[str] = typer.Option(None, "--host", help="Another host name or IP address (repeatable)."),
    days: int = typer.Option(825, "--days", help="Validity of the server certificate."),
) -> None:
    """A private CA and a server certificate for <id>.dkr.ecr.<region>.<domain> and api.ecr.<region>.<domain>."""
    from berth.certs import create

    s = _settings()
    issued = create(out, domain or s.registry_domain, list(region or s.served_regions), list(host or []), days)
    typer.echo(f"berth: {'new CA' if issued.new_ca else 'CA kept'} {issued.ca_cert}; server certificate "
               f"{issued.cert} (key {issued.key}) for {', '.join(issued.names)}", err=True)
    typer.echo(f"berth serve --port 443 --tls-cert {issued.cert} --tls-key {issued.key}   # clients trust "
               f"{issued.ca_cert}", err=True)


@jobs_cli.command("list")
def jobs_list(
    state: str = typer.Option(None, "--state", help="queued | running | done | dead"),
    kind: str = typer.Option(None, "--kind", help="Only jobs of this kind."),
    limit: int = typer.Option(50, "--limit", help="At most this many, newest first."),
    data_dir: Path = DataDir,
    database_url: str = DatabaseUrl,
) -> None:
    """List jobs, newest first."""
    from berth.jobs.cli import list_jobs

    if state is not None and state not in ("queued", "running", "done", "dead"):
        typer.echo(f"berth: unknown state {state!r} (queued|running|done|dead)", err=True)
        raise typer.Exit(2)
    s = _settings(data_dir=data_dir, database_url=database_url)
    run_on_db(s, list_jobs, state, kind, limit)


@jobs_cli.command("retry")
def jobs_retry(job_id: int = typer.Argument(..., help="The job's id."), data_dir: Path = DataDir,
               database_url: str = DatabaseUrl) -> None:
    """Queue a dead (or done) job again now, with its attempts reset."""
    from berth.jobs.cli import retry_job

    s = _settings(data_dir=data_dir, database_url=database_url)
    run_on_db(s, retry_job, job_id)


@jobs_cli.command("stats")
def jobs_stats(data_dir: Path = DataDir, database_url: str = DatabaseUrl) -> None:
    """Jobs per kind and state, and the age of the oldest queued job of each kind."""
    from berth.jobs.cli import job_stats

    s = _settings(data_dir=data_dir, database_url=database_url)
    run_on_db(s, job_stats)


def main() -> None:
    cli()
