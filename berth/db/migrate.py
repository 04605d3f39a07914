"""Run Alembic migrations programmatically (on start and from `berth db upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

_HERE = Path(__file__).parent


def sqlalchemy_url(database_url: str, sqlite_path: Path) -> str:
    if not database_url or database_url.startswith("sqlite"):
        return f"sqlite:///{sqlite_path}"
    return "postgresql+asyncpg://" + database_url.split("://", 1)[1]


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    command.upgrade(alembic_config(url), "head")
