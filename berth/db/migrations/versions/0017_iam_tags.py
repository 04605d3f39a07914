"""the tags of IAM users and roles, and SAML identity providers

Revision ID: 0017
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "iam_tags",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("entity_name", sa.String(128), primary_key=True),
        sa.Column("key_lower", sa.String(512), primary_key=True),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "saml_providers",
        sa.Column("account_id", sa.String(12), primary_key=True),
        sa.Column("name", sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql"),
                  primary_key=True),
        sa.Column("provider_uuid", sa.String(64), nullable=False),
        sa.Column("metadata_document", sa.Text, nullable=False),
        sa.Column("valid_until", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("saml_providers")
    op.drop_table("iam_tags")
