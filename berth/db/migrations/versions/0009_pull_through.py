"""pull-through cache rules, repository creation templates, Secrets Manager secrets

Revision ID: 0009
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def _name(length: int) -> sa.String:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")  # type: ignore[return-value]


def upgrade() -> None:
    op.create_table(
        "repository_creation_templates",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("prefix", _name(256), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("applied_for", sa.Text, nullable=False),
        sa.Column("tag_mutability", sa.String(32), nullable=False, server_default="MUTABLE"),
        sa.Column("tag_mutability_filters", sa.Text, nullable=False, server_default="[]"),
        sa.Column("encryption", sa.Text, nullable=False, server_default='{"encryptionType": "AES256"}'),
        sa.Column("resource_tags", sa.Text, nullable=False, server_default="[]"),
        sa.Column("repository_policy", sa.Text, nullable=True),
        sa.Column("lifecycle_policy", sa.Text, nullable=True),
        sa.Column("custom_role_arn", sa.String(2048), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "pull_through_rules",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("prefix", _name(30), primary_key=True),
        sa.Column("upstream_url", sa.String(1024), nullable=False),
        sa.Column("upstream_registry", sa.String(64), nullable=True),
        sa.Column("upstream_prefix", sa.String(30), nullable=False, server_default="ROOT"),
        sa.Column("credential_arn", sa.String(612), nullable=True),
        sa.Column("custom_role_arn", sa.String(2048), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "pull_through_checks",
        sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("tag", _name(300), primary_key=True),
        sa.Column("checked_at", sa.Float, nullable=False),
    )
    op.create_table(
        "secrets",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("name", _name(512), primary_key=True),
        sa.Column("arn", sa.String(2048), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("kms_key_id", sa.String(2048), nullable=True),
        sa.Column("sealed", sa.Text, nullable=False),
        sa.Column("version_id", sa.String(64), nullable=False),
        sa.Column("tags", sa.Text, nullable=False, server_default="[]"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("deleted_at", sa.Float, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("secrets")
    op.drop_table("pull_through_checks")
    op.drop_table("pull_through_rules")
    op.drop_table("repository_creation_templates")
