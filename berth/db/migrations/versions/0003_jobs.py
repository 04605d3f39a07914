"""jobs queue (transactional outbox), periodic schedules, events

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

LIVE = "state IN ('queued', 'running')"


def _id() -> sa.Column:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True)


def _name(length: int) -> sa.String:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")  # type: ignore[return-value]


def upgrade() -> None:
    op.create_table(
        "jobs",
        _id(),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("key", sa.String(512), nullable=True),
        sa.Column("payload", sa.Text, nullable=False, server_default="{}"),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("rerun", sa.Integer, nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("run_at", sa.Float, nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_jobs_claim", "jobs", ["state", "run_at"])
    op.create_index("ix_jobs_live_key", "jobs", ["kind", "key"], unique=True,
                    sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE))
    op.create_table(
        "periodic",
        sa.Column("kind", sa.String(64), primary_key=True),
        sa.Column("interval_seconds", sa.Float, nullable=False),
        sa.Column("next_run", sa.Float, nullable=False),
        sa.Column("last_owner", sa.String(128), nullable=True),
        sa.Column("last_run", sa.Float, nullable=True),
    )
    op.create_table(
        "events",
        _id(),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("repository", _name(256), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("digest", sa.String(160), nullable=True),
        sa.Column("tag", _name(300), nullable=True),
        sa.Column("payload", sa.Text, nullable=True),
    )
    op.create_index("ix_events_account", "events", ["account_id", "region", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_account", "events")
    op.drop_table("events")
    op.drop_table("periodic")
    op.drop_index("ix_jobs_live_key", "jobs")
    op.drop_index("ix_jobs_claim", "jobs")
    op.drop_table("jobs")
