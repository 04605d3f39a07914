"""identity depth: groups, roles, customer managed policies and versions, attachments, OIDC providers

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _name(length: int) -> sa.String:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")  # type: ignore[return-value]


def upgrade() -> None:
    op.create_table(
        "iam_groups",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("name", _name(128), primary_key=True),
        sa.Column("group_id", sa.String(32), nullable=False, unique=True),
        sa.Column("path", sa.String(512), nullable=False, server_default="/"),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "group_members",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("group_name", sa.String(128), primary_key=True),
        sa.Column("user_name", sa.String(64), primary_key=True),
    )
    op.create_index("ix_group_members_user", "group_members", ["account_id", "user_name"])
    op.create_table(
        "iam_roles",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("name", _name(64), primary_key=True),
        sa.Column("role_id", sa.String(32), nullable=False, unique=True),
        sa.Column("path", sa.String(512), nullable=False, server_default="/"),
        sa.Column("trust_policy", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("max_session_duration", sa.Integer, nullable=False, server_default="3600"),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "entity_policies",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("entity_name", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
    )
    op.create_table(
        "managed_policies",
        sa.Column("arn", sa.String(2048), primary_key=True),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("name", _name(128), nullable=False),
        sa.Column("path", sa.String(512), nullable=False, server_default="/"),
        sa.Column("policy_id", sa.String(32), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("default_version", sa.String(16), nullable=False),
        sa.Column("next_version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("account_id", "name", name="uq_managed_policies_name"),
    )
    op.create_table(
        "policy_versions",
        sa.Column("policy_arn", sa.String(2048), primary_key=True),
        sa.Column("version_id", sa.String(16), primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "policy_attachments",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("entity_name", sa.String(128), primary_key=True),
        sa.Column("policy_arn", sa.String(2048), primary_key=True),
    )
    op.create_index("ix_policy_attachments_policy", "policy_attachments", ["policy_arn"])
    op.create_table(
        "oidc_providers",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("url", sa.String(1024), primary_key=True),
        sa.Column("issuer", sa.String(1024), nullable=False),
        sa.Column("client_ids", sa.Text, nullable=False),
        sa.Column("thumbprints", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for name in ("oidc_providers", "policy_attachments", "policy_versions", "managed_policies", "entity_policies",
                 "iam_roles", "group_members", "iam_groups"):
        op.drop_table(name)
