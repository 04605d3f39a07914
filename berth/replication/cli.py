"""`berth peers add|list|remove`: other Berth deployments that replication rules can name as destinations."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from berth.cli_common import DatabaseUrl, DataDir, run_on_db, settings
from berth.config import Settings
from berth.db import replication as q
from berth.db.store import Backend
from berth.keys import MasterKey

peers_cli = typer.Typer(no_args_is_help=True, help="Peer deployments: replication destinations served by "
                        "another Berth.")

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_REGION = re.compile(r"[0-9a-z-]{2,25}")
_ACCOUNT = re.compile(r"[0-9]{12}")


def _run(fn: Callable[..., Awaitable[int]], data_dir: Path | None, database_url: str | None, *args: object,
         sealing: bool = False) -> None:
    from berth.keys.files import prepare_data_dir

    s = settings(data_dir=data_dir, database_url=database_url)
    if sealing:  # the peer's secret is sealed with the deployment's master key before it is stored
        master, _ = prepare_data_dir(s)
        args = (master, *args)
    run_on_db(s, fn, *args)


async def _add(db: Backend, keys: MasterKey, name: str, endpoint: str, key: str, secret: str, regions: list[str],
               accounts: list[str]) -> int:
    from berth.replication.peers import PEER_SECRETS

    if name in await db.read(q.config_peer_names):
        typer.echo(f"berth: the peer {name!r} comes from the config file ([peers.{name}]); change it there", err=True)
        return 1
    sealed = keys.seal(secret, PEER_SECRETS.context(name))
    new = await db.write(q.add_peer, name, endpoint, key, sealed, regions, accounts, time.time())
    typer.echo(f"peer {name} {'added' if new else 'replaced'}: {endpoint}, regions {', '.join(regions)}, "
               f"accounts {', '.join(accounts) or 'any'}")
    return 0


async def _list(db: Backend) -> int:
    table = Table("name", "endpoint", "access key id", "regions", "accounts", "from", title="replication peers")
    from_file = await db.read(q.config_peer_names)
    for p in await db.read(q.list_peers):
        table.add_row(p.name, p.endpoint, p.access_key_id, ", ".join(p.regions), ", ".join(p.accounts) or "any",
                      "config file" if p.name in from_file else "cli")
    Console(width=200).print(table)
    return 0


async def _remove(db: Backend, name: str) -> int:
    if name in await db.read(q.config_peer_names):
        typer.echo(f"berth: the peer {name!r} comes from the config file ([peers.{name}]); remove it there (the "
                   "next start removes it here)", err=True)
        return 1
    if not await db.write(q.remove_peer, name):
        typer.echo(f"berth: no peer named {name!r}", err=True)
        return 1
    typer.echo(f"peer {name} removed")
    return 0


@peers_cli.command("add")
def add(
    name: str = typer.Argument(..., help="A name for the peer (lower case, digits, . _ -)."),
    endpoint: str = typer.Option(..., "--endpoint", help="The peer's URL, e.g. https://berth-eu.example:5000."),
    access_key_id: str = typer.Option(..., "--access-key-id", help="An access key of the destination account "
                                      "at the peer."),
    secret_access_key: str = typer.Option(..., "--secret-access-key", prompt=True, hide_input=True,
                                          help="Its secret (prompted for when not given)."),
    region: list[str] = typer.Option(..., "--region", help="A region the peer serves as a destination "
                                     "(repeatable)."),
    account: list[str] = typer.Option([], "--account", help="Only these destination accounts (repeatable; "
                                      "default any)."),
    data_dir: Path = DataDir,
    database_url: str = DatabaseUrl,
) -> None:
    """Add (or replace) a peer: destinations (region, registryId) it serves are copied to it over /v2."""
    if not _NAME.fullmatch(name):
        raise typer.BadParameter(f"{name!r}: lower case letters, digits, '.', '_', '-', at most 64", param_hint="NAME")
    if not re.fullmatch(r"https?://[^/\s]+/?", endpoint):
        raise typer.BadParameter(f"{endpoint!r}: expected http(s)://host[:port]", param_hint="--endpoint")
    for r in region:
        if not _REGION.fullmatch(r):
            raise typer.BadParameter(f"{r!r} is not a region name", param_hint="--region")
    for a in account:
        if not _ACCOUNT.fullmatch(a):
            raise typer.BadParameter(f"{a!r} is not a 12-digit account id", param_hint="--account")
    _run(_add, data_dir, database_url, name, endpoint.rstrip("/"), access_key_id, secret_access_key,
         list(dict.fromkeys(region)), list(dict.fromkeys(account)), sealing=True)


@peers_cli.command("list")
def list_(data_dir: Path = DataDir, database_url: str = DatabaseUrl) -> None:
    """List the peers (secrets are not shown)."""
    _run(_list, data_dir, database_url)


@peers_cli.command("remove")
def remove(name: str = typer.Argument(..., help="The peer's name."), data_dir: Path = DataDir,
           database_url: str = DatabaseUrl) -> None:
    """Remove a peer; images not yet copied to it fail with UNKNOWN_DESTINATION (or go local, if served here)."""
    _run(_remove, data_dir, database_url, name)


async def _sync(db: Backend, rows: list[tuple[str, str, str, str, tuple[str, ...], tuple[str, ...]]]) -> int:
    kept, removed = await db.write(q.sync_config_peers, rows, time.time())
    if kept or removed:
        typer.echo(f"berth: replication peers from the config file: {', '.join(kept) or 'none'}"
                   + (f" (removed: {', '.join(removed)})" if removed else ""), err=True)
    return 0


def sync_config_peers(s: Settings, config: Path | None) -> None:
    """`serve`, at start, when given a config file: its [peers.<name>] into the database (config_peers.py),
    their secrets sealed with the master key. Light imports only: this runs before every start with a file."""
    import asyncio

    from berth.config import ConfigError, read_config_peers
    from berth.keys import sealed_column
    from berth.keys.files import prepare_data_dir

    if config is None:
        return
    try:
        peers = read_config_peers(config)
        rows = []
        if peers:
            master, _ = prepare_data_dir(s)
            sealing = sealed_column("replication_peers")
            rows = [(p.name, p.endpoint, p.access_key_id, master.seal(p.secret(), sealing.context(p.name)),
                     p.regions, p.accounts) for p in peers]
    except (ConfigError, ValueError) as e:
        typer.echo(f"berth: {e}", err=True)
        raise typer.Exit(2) from None

    async def main() -> int:
        if s.uses_postgres:
            from berth.db.postgres import PostgresBackend

            db: Backend = await PostgresBackend.connect(s.database_url, 1, 1, s.db_connect_timeout)
        else:
            from berth.db.sqlite import SqliteBackend

            db = SqliteBackend(s.sqlite_path)
        try:
            return await _sync(db, rows)
        finally:
            await db.close()

    asyncio.run(main())
