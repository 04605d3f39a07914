"""lifecycle policies, previews and history; the archive storage class; pull-time exclusions

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _name(length: int) -> sa.String:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")  # type: ignore[return-value]


def upgrade() -> None:
    with op.batch_alter_table("manifests") as batch:
        batch.add_column(sa.Column("image_status", sa.String(16), nullable=False, server_default="ACTIVE"))
        batch.add_column(sa.Column("archived_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("activated_at", sa.Float, nullable=True))
    op.create_table(
        "lifecycle_policies",
        sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("policy_text", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("last_evaluated_at", sa.Float, nullable=True),
    )
    op.create_table(
        "lifecycle_previews",
        sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("policy_text", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("results", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_table(
        "lifecycle_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("repository", _name(256), nullable=False),
        sa.Column("digest", sa.String(160), nullable=False),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("rule_priority", sa.Integer, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_lifecycle_history_repository", "lifecycle_history",
                    ["account_id", "region", "repository", "id"])
    op.create_table(
        "pull_time_exclusions",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("principal_arn", sa.String(2048), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pull_time_exclusions")
    op.drop_index("ix_lifecycle_history_repository", "lifecycle_history")
    op.drop_table("lifecycle_history")
    op.drop_table("lifecycle_previews")
    op.drop_table("lifecycle_policies")
    with op.batch_alter_table("manifests") as batch:
        batch.drop_column("activated_at")
        batch.drop_column("archived_at")
        batch.drop_column("image_status")
