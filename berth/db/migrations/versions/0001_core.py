"""core registry: repositories, blobs, manifests, tags, uploads

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _name(length: int) -> sa.types.TypeEngine:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "repositories",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("name", _name(256), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("tag_mutability", sa.String(32), nullable=False, server_default="MUTABLE"),
        sa.Column("tag_mutability_filters", sa.Text, nullable=False, server_default="[]"),
        sa.Column("scan_on_push", sa.Integer, nullable=False, server_default="0"),
        sa.Column("encryption", sa.Text, nullable=False, server_default='{"encryptionType": "AES256"}'),
        sa.UniqueConstraint("account_id", "region", "name", name="uq_repositories_name"),
    )
    op.create_table(
        "blobs",
        sa.Column("digest", sa.String(160), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "repository_blobs",
        sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("digest", sa.String(160), sa.ForeignKey("blobs.digest"), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "manifests",
        sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("digest", sa.String(160), primary_key=True),
        sa.Column("media_type", sa.String(255), nullable=False),
        sa.Column("artifact_type", sa.String(255), nullable=True),
        sa.Column("subject_digest", sa.String(160), nullable=True),
        sa.Column("annotations", sa.Text, nullable=True),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("image_size", sa.BigInteger, nullable=False),
        sa.Column("pushed_at", sa.Float, nullable=False),
        sa.Column("last_pulled_at", sa.Float, nullable=True),
    )
    op.create_index("ix_manifests_subject", "manifests", ["repository_id", "subject_digest"])
    op.create_table(
        "manifest_refs",
        sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("manifest_digest", sa.String(160), primary_key=True),
        sa.Column("child_digest", sa.String(160), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
    )
    op.create_index("ix_manifest_refs_child", "manifest_refs", ["repository_id", "child_digest"])
    op.create_table(
        "tags",
        sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("name", _name(300), primary_key=True),
        sa.Column("digest", sa.String(160), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_tags_digest", "tags", ["repository_id", "digest"])
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for name in ("uploads", "tags", "manifest_refs", "manifests", "repository_blobs", "blobs", "repositories"):
        op.drop_table(name)
