"""`berth lifecycle run|history`: apply the lifecycle policies now, or show what they did (Rich tables)."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from berth.cli_common import DatabaseUrl, DataDir, run_on_db, settings
from berth.config import Settings
from berth.db.store import Backend
from berth.lifecycle.service import LifecycleService

app = typer.Typer(no_args_is_help=True, help="Lifecycle policies: run them now, show their history.")

RepositoryName = typer.Option(None, "--repository", help="Only this repository (every account and region).")


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


@app.command("run")
def run(repository: str = RepositoryName, dry_run: bool = typer.Option(False, "--dry-run",
                                                                        help="Say what would be done; do nothing."),
        data_dir: Path = DataDir, database_url: str = DatabaseUrl) -> None:
    """Evaluate every repository's lifecycle policy now and apply it; print what was done."""

    async def main(db: Backend, s: Settings) -> int:
        # with an archive store, what it archives is moved by the placement jobs of serve's workers
        life = LifecycleService(db, archive_store=s.archive_storage is not None)
        outcomes = await life.run_all(repository, dry_run)
        table = Table("repository", "digest", "tags", "pushed (UTC)", "rule", "action", "result",
                      title=f"lifecycle {'dry run' if dry_run else 'run'}: {len(outcomes)} actions")
        for o in outcomes:
            a = o.action
            table.add_row(o.repository, a.digest, ",".join(a.tags), _when(a.pushed_at), str(a.rule_priority),
                          a.kind if a.target_storage_class is None else f"{a.kind} -> {a.target_storage_class}",
                          o.result)
        Console(width=220).print(table)
        return 0

    s = settings(data_dir=data_dir, database_url=database_url)
    run_on_db(s, main, s)


@app.command("history")
def history(repository: str = RepositoryName, limit: int = typer.Option(100, "--limit", help="Newest first."),
            data_dir: Path = DataDir, database_url: str = DatabaseUrl) -> None:
    """The actions lifecycle runs took, newest first."""

    async def main(db: Backend, s: Settings) -> int:
        rows = await LifecycleService(db).history(repository, limit)
        table = Table("when (UTC)", "repository", "digest", "tags", "rule", "action",
                      title=f"lifecycle history ({len(rows)} shown, newest first)")
        for h in rows:
            table.add_row(_when(h.at), h.repository, h.digest, ",".join(h.tags), str(h.rule_priority), h.action)
        Console(width=220).print(table)
        return 0

    s = settings(data_dir=data_dir, database_url=database_url)
    run_on_db(s, main, s)

