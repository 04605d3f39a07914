"""replication: configuration per registry, status per image and destination, peers, back-fills

Revision ID: 0008
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def _name(length: int) -> sa.String:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")  # type: ignore[return-value]


def upgrade() -> None:
    op.create_table(
        "replication_configs",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "replication_status",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("repository", _name(256), primary_key=True),
        sa.Column("digest", sa.String(160), primary_key=True),
        sa.Column("dest_account", sa.String(12), primary_key=True),
        sa.Column("dest_region", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure_code", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "replication_peers",
        sa.Column("name", _name(64), primary_key=True),
        sa.Column("endpoint", sa.String(1024), nullable=False),
        sa.Column("access_key_id", sa.String(128), nullable=False),
        sa.Column("secret_access_key", sa.Text, nullable=False),
        sa.Column("regions", sa.Text, nullable=False),
        sa.Column("accounts", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "replication_backfills",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("dest_account", sa.String(12), nullable=False),
        sa.Column("dest_region", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure_code", sa.Text, nullable=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=True),
    )
    op.create_index("ix_replication_backfills_registry", "replication_backfills",
                    ["account_id", "region", "started_at"])
    op.create_table(
        "replication_backfill_items",
        sa.Column("backfill_id", sa.String(36), primary_key=True),
        sa.Column("repository", _name(256), primary_key=True),
        sa.Column("digest", sa.String(160), primary_key=True),
        sa.Column("tag", sa.String(300), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure_code", sa.Text, nullable=True),
    )


def downgrade() -> None:
    for table in ("replication_backfill_items", "replication_backfills", "replication_peers", "replication_status",
                  "replication_configs"):
        op.drop_table(table)
